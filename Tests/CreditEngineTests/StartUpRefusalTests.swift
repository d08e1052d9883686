#if canImport(Glibc)
import Glibc
#endif
import CreditEngine
import DurabilityTestSupport
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// A closed two-shard data directory on the real file system, written by the engine: a
/// snapshot of every shard, then more records. Removed by `deinit`.
private final class EngineDirectory {
    static let shardCount = 2
    let data: String
    let storage: StorageConfiguration
    let fileSystem = PosixFileSystem()

    init() async throws {
        data = try makeTemporaryDirectory("start-up-refusal")
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

@Suite("credits recover, wal verify, export and snapshot verify refuse damaged data: exit 1, a code, nothing changed")
struct DamagedDataCommandTests {
    /// The JSON lines `credits` printed, each with its "ok" and "code" fields.
    private func lines(_ output: String) -> [(ok: Substring?, code: Substring?)] {
        output.split(separator: "\n").map { (jsonField($0, "ok"), jsonField($0, "code")) }
    }

    @Test("a missing shard directory: recover and wal verify exit 1 with shard_missing; the directory is unchanged",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func missingShard() async throws {
        let credits = try #require(creditsExecutable)
        let directory = try await EngineDirectory()
        let errors = directory.data + ".stderr"
        defer { removeTree(errors) }
        let intact = try runToEnd(credits, ["recover", "--data", directory.data, "--json"], errors: errors)
        #expect(intact.exitCode == 0 && lines(intact.output).first?.ok == "true", "\(intact.output)")
        removeTree(directory.storage.shardDirectory(1))
        let before = directory.contents()
        let recover = try runToEnd(credits, ["recover", "--data", directory.data, "--json"], errors: errors)
        #expect(recover.exitCode == 1)
        #expect(lines(recover.output).map(\.code) == ["shard_missing"], "\(recover.output)")
        let verify = try runToEnd(credits, ["wal", "verify", directory.data, "--json"], errors: errors)
        #expect(verify.exitCode == 1)
        #expect(lines(verify.output).map(\.ok) == ["true", "false"] && lines(verify.output).last?.code == "shard_missing",
                "\(verify.output)")
        #expect(directory.contents() == before)
    }

    @Test("credits.meta with 2^63-1 shards: export and wal verify refuse at once with meta_invalid",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func absurdShardCount() async throws {
        let credits = try #require(creditsExecutable)
        let directory = try await EngineDirectory()
        let errors = directory.data + ".stderr"
        defer { removeTree(errors) }
        try directory.replaceMeta("format 1\nshards 9223372036854775807\n")
        let before = directory.contents()
        let export = try runToEnd(credits, ["export", "--data", directory.data], errors: errors)
        #expect(export.exitCode != 0 && export.output.isEmpty, "\(export.output)")
        let verify = try runToEnd(credits, ["wal", "verify", directory.data, "--json"], errors: errors)
        #expect(verify.exitCode == 1 && lines(verify.output).map(\.code) == ["meta_invalid"], "\(verify.output)")
        #expect(directory.contents() == before)
    }

    @Test("snapshot verify on a FIFO refuses without waiting for a writer",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func snapshotFIFO() throws {
        let credits = try #require(creditsExecutable)
        let directory = try makeTemporaryDirectory("snapshot-fifo")
        defer { removeTree(directory) }
        let fifo = directory + "/0000000000000001.snap"
        try #require(mkfifo(fifo, 0o600) == 0)
        let verify = try runToEnd(credits, ["snapshot", "verify", fifo, "--json"], errors: directory + "/stderr")
        #expect(verify.exitCode == 1 && lines(verify.output).map(\.code) == ["snapshot_not_regular_file"], "\(verify.output)")
    }
}
