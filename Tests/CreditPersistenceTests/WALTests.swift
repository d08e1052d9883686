import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Appends fresh (never retried) workload commands until `count` more records are logged.
private func appendRecords(_ count: Int, _ model: inout ShardModel, _ workload: inout DurabilityWorkload, log: ShardLog) {
    let target = model.records.count + count
    while model.records.count < target { model.run(1, of: &workload, log: log) }
}

/// Every record of every live segment, in log order, with the segment it lies in.
private func allSpans(_ store: DurabilityStore) throws -> [(segment: String, span: RecordSpan)] {
    var spans: [(String, RecordSpan)] = []
    for name in try store.segments() {
        spans += recordSpans(of: try store.simulated.readFile(store.segmentPath(name))).map { (name, $0) }
    }
    return spans
}

@Suite("Write-ahead log: append, read back, roll over, durability modes, reopen")
struct WALTests {
    @Test("records read back in order with LSNs 1…n, the same commands and times, and an unbroken hash chain")
    func appendAndReadBack() async throws {
        let store = try DurabilityStore(preallocates: true)
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x5741_4C01)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        appendRecords(300, &model, &workload, log: log)
        let last = UInt64(model.records.count)
        #expect(log.lastAppendedLSN == last)
        try await log.waitUntilDurable(last)
        let lastChecksum = log.lastAppendedChecksum
        await log.close()

        let (entries, report) = try store.readLog()
        #expect(entries.map(\.lsn) == Array(1 ... last))
        #expect(entries.map(\.command) == model.records.map(\.command))
        #expect(entries.map(\.time) == model.records.map(\.time))
        #expect(report.lastLSN == last)
        #expect(report.lastChecksum == lastChecksum)
        #expect(report.recordsVerified == Int(last) && report.recordsVisited == Int(last))
        #expect(report.droppedBytes == 0 && report.droppedRecords == 0 && report.droppedSegments.isEmpty)
        #expect(report.droppedBecause == nil)

        // The chain as stored: each record names its predecessor's checksum, the first names 0.
        let names = try store.segments()
        #expect(names == [WALFormat.segmentName(firstLSN: 1)])
        let bytes = try store.simulated.readFile(store.segmentPath(names[0]))
        #expect(bytes.count == store.storage.log.segmentSize, "segments are preallocated")
        let header = try SegmentHeader(decoding: bytes)
        #expect(header.firstLSN == 1 && header.previousChecksum == 0 && header.shardIndex == 0 && header.shardCount == 1)
        #expect(header.unsyncedBytesMax == UInt64(store.storage.log.unsyncedBytesMax))
        let spans = recordSpans(of: bytes)
        #expect(spans.map(\.lsn) == Array(1 ... last))
        var previous: UInt32 = 0
        for span in spans {
            #expect(span.previous == previous, "record \(span.lsn) does not name its predecessor")
            previous = span.checksum
        }
        #expect(previous == lastChecksum)
        // Each append (one record here) is followed by its audit seal (docs/audit.md).
        let all = recordSpans(of: bytes, includingSeals: true)
        #expect(all.count == 2 * spans.count && all.enumerated().allSatisfy { $0.element.isSeal == ($0.offset % 2 == 1) })
        #expect(lastNonZeroByte(bytes, in: all.last!.end ..< bytes.count) == nil, "the rest of the segment is zeros")

        let recovered = try store.recover()
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())
        #expect(recovered.ledger.invariantViolations().isEmpty)
    }

    @Test("segments roll over before the configured size; the reader follows LSNs and chain across them; reopening continues")
    func segmentRollOver() async throws {
        let store = try DurabilityStore()
        let segmentSize = store.storage.log.segmentSize
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x5741_4C02)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        // About 9 MB: one roll-over (file growth is slow in the simulation, about 5 s per 8 MiB).
        for _ in 0 ..< 9 {
            appendRecords(5, &model, &workload, log: log)
            model.run(bulkyCommand(key: workload.freshKey()), log: log)
        }
        appendRecords(5, &model, &workload, log: log)
        let last = UInt64(model.records.count)
        try await log.waitUntilDurable(last)
        await log.close()

        let names = try store.segments()
        #expect(names.count == 2, "9 MB of records in 8 MiB segments")
        let spans = try allSpans(store)
        #expect(spans.map(\.span.lsn) == Array(1 ... last), "every record is in some segment, in order")
        for name in names {
            let bytes = try store.simulated.readFile(store.segmentPath(name))
            let header = try SegmentHeader(decoding: bytes)
            #expect(WALFormat.segmentName(firstLSN: header.firstLSN) == name)
            #expect(header.segmentSize == UInt64(segmentSize))
            let previous = header.firstLSN == 1 ? 0 : spans[Int(header.firstLSN) - 2].span.checksum
            #expect(header.previousChecksum == previous, "segment \(name) must link to the record before it")
            let own = spans.filter { $0.segment == name }.map(\.span)
            #expect(own.first?.lsn == header.firstLSN)
            #expect((own.last?.end ?? 0) <= segmentSize)
        }
        // A segment is only left when the next record does not fit.
        for (index, name) in names.enumerated().dropLast() {
            let used = spans.filter { $0.segment == name }.last!.span.end
            let nextLength = spans.first { $0.segment == names[index + 1] }!.span.length
            #expect(used + nextLength > segmentSize, "segment \(name) was left with room for the next record")
        }

        let (entries, report) = try store.readLog()
        #expect(entries.map(\.lsn) == Array(1 ... last))
        #expect(entries.map(\.command) == model.records.map(\.command))
        #expect(report.segments == names && report.tailSegment == names.last)

        // Reading after an LSN (as recovery after a snapshot does) verifies everything but
        // visits only the later records; the chain value must match that record's checksum.
        let after = UInt64(spans.count / 2)
        var visited: [UInt64] = []
        let partial = try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, afterLSN: after,
                                         chain: spans[Int(after) - 1].span.checksum) { visited.append($0.lsn) }
        #expect(visited == Array(after + 1 ... last))
        #expect(partial.recordsVerified == Int(last) && partial.recordsVisited == Int(last - after))
        let mismatch = expectWALFailure {
            try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, afterLSN: after,
                               chain: spans[Int(after) - 1].span.checksum ^ 1) { _ in }
        }
        let record = spans[Int(after) - 1].span.checksum
        #expect(mismatch?.problem == .snapshotMismatch(lsn: after, recordChecksum: record, snapshotChecksum: record ^ 1))

        var recovered = try store.recover()
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())

        // Reopened after recovery, the log continues in the last segment, LSNs and chain
        // unbroken; a power cut after the acknowledgement loses nothing.
        let reopened = try store.openLog(after: recovered.log)
        appendRecords(30, &model, &workload, log: reopened)
        try await reopened.waitUntilDurable(UInt64(model.records.count))
        store.simulated.crash(seed: 11)
        await reopened.close()
        #expect(try store.segments() == names, "no new segment was needed")
        let (all, _) = try store.readLog()
        #expect(all.map(\.lsn) == Array(1 ... UInt64(model.records.count)))
        #expect(all.map(\.command) == model.records.map(\.command))
        var previous: UInt32 = 0
        for (_, span) in try allSpans(store) {
            #expect(span.previous == previous, "the chain breaks at record \(span.lsn)")
            previous = span.checksum
        }
        recovered = try store.recover()
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())
    }

    @Test("strict: waitUntilDurable returns only after the record is synced; a crash then loses nothing; syncs are shared")
    func strictWaitsForSync() async throws {
        let store = try DurabilityStore()
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x5741_4C03)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        let segment = store.segmentPath(WALFormat.segmentName(firstLSN: 1))
        for _ in 0 ..< 40 {
            let syncsBefore = store.simulated.counters.fileSyncs
            appendRecords(1, &model, &workload, log: log)
            let lsn = UInt64(model.records.count)
            try await log.waitUntilDurable(lsn)
            let durable = try #require(store.simulated.durableContents(of: segment))
            #expect(recordSpans(of: durable).count == Int(lsn), "record \(lsn) acknowledged before it was synced")
            #expect(store.simulated.counters.fileSyncs > syncsBefore)
        }

        // Group commit: 400 records appended at once and waited for once need far fewer syncs.
        let syncsBefore = store.simulated.counters.fileSyncs
        let statisticsBefore = log.syncStatistics
        appendRecords(400, &model, &workload, log: log)
        let last = UInt64(model.records.count)
        try await log.waitUntilDurable(last)
        let syncs = store.simulated.counters.fileSyncs - syncsBefore
        #expect(syncs >= 1 && syncs <= 400)
        #expect(log.syncStatistics.records - statisticsBefore.records == 400)

        store.simulated.crash(seed: 7)
        await log.close()
        let (entries, report) = try store.readLog()
        #expect(entries.map(\.command) == model.records.map(\.command), "a power cut after the acknowledgement lost records")
        #expect(report.droppedBytes == 0)
    }

    @Test("interval and none acknowledge at once; waitUntilSynced makes records durable; a torn crash keeps a prefix",
          arguments: [Durability.interval, Durability.none])
    func relaxedDurability(_ durability: Durability) async throws {
        let store = try DurabilityStore(log: smallLogConfiguration(durability))
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x5741_4C04)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        appendRecords(150, &model, &workload, log: log)
        let synced = UInt64(model.records.count)
        try await log.waitUntilDurable(synced) // returns without a sync in these modes
        guard await waitUntilSynced(log, synced) else {
            Issue.record("waitUntilSynced(\(synced)) did not return within 2 s in \(durability) mode")
            return
        }
        let durable = try #require(store.simulated.durableContents(of: store.segmentPath(WALFormat.segmentName(firstLSN: 1))))
        #expect(recordSpans(of: durable).count >= Int(synced), "waitUntilSynced returned before the sync")

        appendRecords(150, &model, &workload, log: log)
        store.simulated.crash(seed: 0xC0FFEE)
        await log.close()
        let (entries, report) = try store.readLog()
        #expect(entries.count >= Int(synced), "synced records were lost")
        #expect(entries.count <= model.records.count)
        #expect(entries.map(\.command) == model.records.prefix(entries.count).map(\.command), "recovered records are not a prefix")
        #expect(report.lastLSN == UInt64(entries.count))
    }

    @Test("reopening after recovery, again and again, continues LSNs and chain, also after power cuts")
    func reopenContinuesTheChain() async throws {
        let store = try DurabilityStore()
        var workload = DurabilityWorkload(seed: 0x5741_4C05)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        var log = try store.openLog()
        model.runPrologue(of: &workload, log: log)
        appendRecords(100, &model, &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()

        for round in 0 ..< 4 {
            let recovered = try store.recover()
            #expect(recovered.log.lastLSN == UInt64(model.records.count), "round \(round)")
            #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest(), "round \(round)")
            #expect(recovered.report.tornBytesDropped == 0 && recovered.report.segmentsDropped.isEmpty)
            log = try store.openLog(after: recovered.log)
            appendRecords(60, &model, &workload, log: log)
            try await log.waitUntilDurable(UInt64(model.records.count))
            if round % 2 == 1 { store.simulated.crash(seed: UInt64(round)) }
            await log.close()
        }

        let (entries, report) = try store.readLog()
        #expect(entries.map(\.lsn) == Array(1 ... UInt64(model.records.count)))
        #expect(entries.map(\.command) == model.records.map(\.command))
        #expect(report.droppedBytes == 0 && report.droppedSegments.isEmpty)
        var previous: UInt32 = 0
        for (_, span) in try allSpans(store) {
            #expect(span.previous == previous, "the chain breaks at record \(span.lsn)")
            previous = span.checksum
        }
        let recovered = try store.recover()
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())
    }

    @Test("interval and none: waitUntilSynced returns promptly even when the writer was idle (deadline 2 s)",
          arguments: [Durability.interval, Durability.none])
    func syncRequestWakesAnIdleWriter(_ durability: Durability) async throws {
        let store = try DurabilityStore(log: smallLogConfiguration(durability))
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x5741_4C06)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        guard await waitUntilSynced(log, UInt64(model.records.count)) else {
            Issue.record("the first waitUntilSynced did not return within 2 s: the writer was never woken")
            return
        }
        // Nothing is pending or unsynced now: the writer sleeps until woken.
        appendRecords(1, &model, &workload, log: log)
        let lsn = UInt64(model.records.count)
        let syncedInTime = await waitUntilSynced(log, lsn)
        #expect(syncedInTime, "waitUntilSynced(\(lsn)) did not return within 2 s: the idle writer was never woken")
        if syncedInTime { await log.close() }
        let durable = store.simulated.durableContents(of: store.segmentPath(WALFormat.segmentName(firstLSN: 1))) ?? []
        #expect(recordSpans(of: durable).count == Int(lsn))
    }
}
