import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// A closed 200-record log with a snapshot at LSN 180, and what the tests compare against.
private struct TornTailFixture {
    static let recordCount = 200
    static let snapshotLSN = 180
    /// Zeros after the last record, as a preallocated segment has them.
    static let padding = 4_096

    let store: DurabilityStore
    let records: [LoggedRecord]
    let segmentPath: String
    let original: [UInt8]
    let spans: [RecordSpan]
    /// Reference ledgers that applied exactly the first `kept` records, for the kept counts a
    /// cut in the last three records can leave.
    let prefixLedgers: [Int: Ledger]

    init(seed: UInt64) async throws {
        store = try DurabilityStore()
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: seed)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        var prefixes: [Int: Ledger] = [:]
        while model.records.count < Self.recordCount {
            model.run(1, of: &workload, log: log)
            let count = model.records.count
            if count == Self.snapshotLSN, prefixes[count] == nil {
                try await log.waitUntilDurable(UInt64(count))
                try store.writeSnapshot(model.ledger, lsn: UInt64(count), chain: log.lastAppendedChecksum)
            }
            if count >= Self.recordCount - 3 { prefixes[count] = model.ledger }
        }
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        records = model.records
        prefixLedgers = prefixes
        segmentPath = store.segmentPath(WALFormat.segmentName(firstLSN: 1))
        // The zeros a preallocated segment has after its records.
        let end = try store.simulated.size(of: segmentPath)
        let file = try store.simulated.open(segmentPath, create: false)
        try file.write([UInt8](repeating: 0, count: Self.padding), at: end)
        try file.sync()
        file.close()
        original = try store.simulated.readFile(segmentPath)
        spans = recordSpans(of: original)
        precondition(spans.count == Self.recordCount && prefixLedgers.count == 4)
    }

    /// Byte offsets inside the last three records (a cut at the end of the last one cuts nothing).
    var tailOffsets: Range<Int> { spans[spans.count - 3].offset ..< spans[spans.count - 1].end }

    /// Puts the original segment back (content and size), durably.
    func restore() throws {
        let file = try store.simulated.open(segmentPath, create: false)
        try file.write(original, at: 0)
        try file.truncate(Int64(original.count))
        try file.sync()
        file.close()
    }

    /// Replaces the bytes from `offset` to the end of the file with zeros, durably.
    func zero(from offset: Int) throws {
        let file = try store.simulated.open(segmentPath, create: false)
        try file.write([UInt8](repeating: 0, count: original.count - offset), at: Int64(offset))
        try file.sync()
        file.close()
    }

    /// What recovery must keep and drop after the segment lost its bytes from `offset` on
    /// (`truncated`: the file ends there; else they are zeros).
    func expectation(cutAt offset: Int, truncated: Bool) -> (kept: Int, droppedBytes: Int) {
        var kept = spans.filter { $0.end <= offset }.count
        // The record or audit seal the cut falls in (each record here has a seal after it).
        guard let partial = recordSpans(of: original, includingSeals: true).first(where: { $0.end > offset }) else { return (kept, 0) }
        if !truncated, lastNonZeroByte(original, in: offset ..< partial.end) == nil {
            // Only zeros were cut: the record (or seal) is intact.
            if !partial.isSeal { kept += 1 }
            return (kept, 0)
        }
        let dropped = lastNonZeroByte(original, in: partial.offset ..< offset).map { $0 - partial.offset + 1 } ?? 0
        return (kept, dropped)
    }

    /// Recovers after a cut at `offset` and checks the result; with `append`, then opens the
    /// log (which cleans the tail), appends records, survives a power cut, and recovers again.
    func check(cutAt offset: Int, truncated: Bool, append: Bool, workload: inout DurabilityWorkload) async throws {
        let (kept, droppedBytes) = expectation(cutAt: offset, truncated: truncated)
        let mode = truncated ? "truncated" : "zeroed"
        let recovered: (ledger: Ledger, log: WALReader.Report, report: ShardRecoveryReport)
        do {
            recovered = try store.recover()
        } catch {
            Issue.record("\(mode) at byte \(offset): recovery failed: \(error)")
            return
        }
        let report = recovered.report
        #expect(report.lastLSN == UInt64(kept), "\(mode) at byte \(offset): kept \(report.lastLSN) records, expected \(kept)")
        #expect(report.tornBytesDropped == droppedBytes, "\(mode) at byte \(offset)")
        #expect(report.tornRecordsDropped == (droppedBytes > 0 ? 1 : 0), "\(mode) at byte \(offset)")
        #expect((report.droppedBecause != nil) == (droppedBytes > 0), "\(mode) at byte \(offset): \(report.droppedBecause.map(String.init(describing:)) ?? "-")")
        #expect(report.snapshot == SnapshotFile.name(lsn: UInt64(Self.snapshotLSN)))
        #expect(recovered.ledger.stateDigest() == prefixLedgers[kept]?.stateDigest(),
                "\(mode) at byte \(offset): the recovered state is not that of the first \(kept) records")
        guard append else { return }

        let log = try store.openLog(after: recovered.log)
        let start = recovered.ledger.lastTime.adding(millis: 1_000)
        var model = ShardModel(configuration: store.ledgerConfiguration, ledger: prefixLedgers[kept]!,
                               records: Array(records.prefix(kept)), now: start)
        while model.records.count < kept + 3 { model.run(1, of: &workload, log: log) }
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        store.simulated.crash(seed: UInt64(offset))
        let (entries, readReport) = try store.readLog()
        #expect(entries.map(\.command) == model.records.map(\.command), "\(mode) at byte \(offset): appended records after the cut")
        #expect(readReport.droppedBytes == 0, "\(mode) at byte \(offset): the cleaned tail still has stray bytes")
        let again = try store.recover()
        #expect(again.log.lastLSN == UInt64(kept + 3))
        #expect(again.ledger.stateDigest() == model.ledger.stateDigest(), "\(mode) at byte \(offset): second recovery")
    }
}

@Suite("Torn tail: a log cut anywhere in its last records recovers exactly the records before the cut")
struct TornTailTests {
    @Test("truncated at every byte offset of the last three records")
    func truncatedAtEveryOffset() async throws {
        let fixture = try await TornTailFixture(seed: 0x7042_0001)
        var workload = DurabilityWorkload(seed: 0x7042_1001, tenantBase: 50)
        for offset in fixture.tailOffsets {
            fixture.store.simulated.truncate(path: fixture.segmentPath, to: offset)
            try await fixture.check(cutAt: offset, truncated: true, append: offset % 4 == 0, workload: &workload)
            try fixture.restore()
        }
        // Untouched, everything is kept.
        let whole = try fixture.store.recover()
        #expect(whole.log.lastLSN == UInt64(TornTailFixture.recordCount) && whole.report.tornBytesDropped == 0)
    }

    @Test("zeroed from every byte offset of the last three records to the end (a torn preallocated segment)")
    func zeroedFromEveryOffset() async throws {
        let fixture = try await TornTailFixture(seed: 0x7042_0002)
        var workload = DurabilityWorkload(seed: 0x7042_1002, tenantBase: 50)
        for offset in fixture.tailOffsets {
            try fixture.zero(from: offset)
            try await fixture.check(cutAt: offset, truncated: false, append: offset % 4 == 1, workload: &workload)
            try fixture.restore()
        }
    }

    @Test("a last segment created but never written is set aside, and the log continues")
    func neverWrittenLastSegment() async throws {
        let store = try DurabilityStore()
        var workload = DurabilityWorkload(seed: 0x7042_0003)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        let log = try store.openLog()
        model.runPrologue(of: &workload, log: log)
        model.run(40, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        // The crash came right after the next segment's file was created (zeros, no header).
        let empty = WALFormat.segmentName(firstLSN: UInt64(model.records.count) + 1)
        let file = try store.simulated.open(store.segmentPath(empty), create: true)
        try file.write([UInt8](repeating: 0, count: 4_096), at: 0)
        try file.sync()
        file.close()
        try store.simulated.syncDirectory(store.walDirectory)

        let recovered = try store.recover()
        #expect(recovered.report.segmentsDropped == [empty])
        #expect(recovered.report.droppedBecause != nil)
        #expect(recovered.log.lastLSN == UInt64(model.records.count))
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())

        let reopened = try store.openLog(after: recovered.log)
        let before = model.records.count
        while model.records.count < before + 10 { model.run(1, of: &workload, log: reopened) }
        try await reopened.waitUntilDurable(UInt64(model.records.count))
        await reopened.close()
        #expect(try store.simulated.contentsOfDirectory(store.walDirectory).contains(empty + ".dropped"))
        let again = try store.recover()
        #expect(again.log.lastLSN == UInt64(model.records.count))
        #expect(again.report.segmentsDropped.isEmpty && again.report.tornBytesDropped == 0)
        #expect(again.ledger.stateDigest() == model.ledger.stateDigest())
    }
}
