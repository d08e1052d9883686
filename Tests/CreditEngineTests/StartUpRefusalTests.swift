import CreditEngine
import DurabilityTestSupport
import Testing

/// A closed two-shard data directory on the real file system, written by the engine: a
/// snapshot of every shard, then more records. Removed by `deinit`.
private final class EngineDirectory {
    static let shardCount = 2
    let data: String
    let storage: StorageConfiguration
    let fileSystem = PosixFileSystem()

    init() async throws {
        data = try temporaryDirectory("start-up-refusal")
        // The smallest segments the format allows: preallocating them stays cheap.
        storage = StorageConfiguration(directory: data, log: LogConfiguration(segmentSize: StorageLimits.segmentBytesMin,
                                                                               unsyncedBytesMax: StorageLimits.unsyncedBytesMaxLowest),
                                       snapshotEveryRecords: nil, snapshotEveryMillis: nil)
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(shardCount: Self.shardCount, storage: storage))
        var workload = DurabilityWorkload(seed: 0x5747_0001)
        _ = await engine.execute(batch: workload.prologue())
        for _ in 0 ..< 100 { _ = await engine.execute(workload.next()) }
        _ = try await engine.snapshot()
        for _ in 0 ..< 100 { _ = await engine.execute(workload.next()) }
        await engine.close()
    }

    deinit { removeTree(data) }

    func open(_ recovery: WALReader.Mode = .strict) async throws(RecoveryError) -> CreditEngine {
        var storage = storage
        storage.recovery = recovery
        return try await CreditEngine.open(configuration: EngineConfiguration(shardCount: Self.shardCount, storage: storage))
    }

    func segment(_ shard: Int) -> String { storage.walDirectory(shard) + "/" + WALFormat.segmentName(firstLSN: 1) }

    /// Every path under the data directory with its size and bytes.
    func contents() -> [String: [UInt8]] {
        var entries: [String: [UInt8]] = [:]
        func walk(_ path: String) {
            if let names = try? fileSystem.contentsOfDirectory(path) {
                entries[path + "/"] = []
                for name in names { walk(path + "/" + name) }
            } else {
                entries[path] = (try? fileSystem.readFile(path, bytesMax: StorageLimits.segmentBytesMax)) ?? [0xFF]
            }
        }
        walk(data)
        return entries
    }

    func replaceMeta(_ text: String) throws {
        let file = try fileSystem.open(storage.metaPath, create: false)
        defer { file.close() }
        try file.truncate(0)
        try file.write(Array(text.utf8), at: 0)
    }
}

/// One way to lose data, and the refusal `CreditEngine.open` must give.
private struct LostData: CustomTestStringConvertible, Sendable {
    let name: String
    let damage: @Sendable (EngineDirectory) throws -> Void
    let code: String
    let shard: Int?
    var testDescription: String { name }
}

@Suite("Start-up refuses a data directory that lost data, with a coded error, and changes nothing")
struct StartUpRefusalTests {
    private static let cases: [LostData] = [
        LostData(name: "a shard's only live segment deleted after its snapshot",
                 damage: { try $0.fileSystem.remove($0.segment(0)) }, code: "segment_missing", shard: 0),
        LostData(name: "a shard's only live segment emptied after its snapshot",
                 damage: { d in
                     let file = try d.fileSystem.open(d.segment(1), create: false)
                     defer { file.close() }
                     try file.truncate(0)
                 }, code: "segment_emptied", shard: 1),
        LostData(name: "a whole shard directory gone",
                 damage: { removeTree($0.storage.shardDirectory(1)) }, code: "shard_missing", shard: 1),
        LostData(name: "credits.meta naming two shard counts",
                 damage: { try $0.replaceMeta("format 1\nshards 2\nshards 4\n") }, code: "meta_invalid", shard: nil),
        LostData(name: "a preallocated segment cut short inside a record",
                 damage: { d in
                     let file = try d.fileSystem.open(d.segment(0), create: false)
                     defer { file.close() }
                     let size = try d.fileSystem.size(of: d.segment(0))
                     let bytes = try file.read(at: 0, count: Int(size))
                     // The middle of the last record: the last non-zero byte is inside it.
                     let last = bytes.lastIndex { $0 != 0 } ?? 0
                     try file.truncate(Int64(last))
                 }, code: "segment_truncated", shard: 0),
    ]

    @Test("CreditEngine.open refuses and leaves every file as it was", arguments: cases)
    private func refuses(lost: LostData) async throws {
        let directory = try await EngineDirectory()
        try lost.damage(directory)
        let before = directory.contents()
        do {
            let engine = try await directory.open()
            Issue.record("\(lost.name): start-up accepted the directory")
            await engine.close()
        } catch {
            #expect(error.code == lost.code && error.shard == lost.shard, "\(lost.name): \(error)")
        }
        #expect(directory.contents() == before, "\(lost.name): a refused start-up changed the directory")
    }

    @Test("point-in-time recovery, the operator's option, accepts a lost live segment: the shard resumes after its snapshot")
    func pointInTimeAcceptsTheLoss() async throws {
        let directory = try await EngineDirectory()
        try directory.fileSystem.remove(directory.segment(0))
        let engine = try await directory.open(.pointInTime)
        let report = engine.recoveryReports[0]
        #expect(report.droppedBecause?.code == "segment_missing")
        #expect(report.snapshot != nil && report.lastLSN == report.snapshotLSN && report.recordsReplayed == 0)
        #expect(await engine.invariantViolations().isEmpty)
        await engine.close()
        // Accepted once, the directory is consistent again: a strict start-up opens it.
        let reopened = try await directory.open()
        #expect(reopened.recoveryReports[0].lastLSN == report.snapshotLSN)
        await reopened.close()
    }
}
