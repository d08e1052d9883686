import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

@Suite("Power loss: after a power cut recovery keeps every acknowledged record and exactly a prefix of the log")
struct PowerLossTests {
    @Test("random power cuts with torn sectors while appending, acknowledging and snapshotting")
    func randomPowerCuts() async throws {
        let seed = DurabilitySeed.make("PowerLossTests.randomPowerCuts")
        var random = DurabilityRandom(seed: seed)
        let store = try DurabilityStore()
        var workload = DurabilityWorkload(seed: random.next())
        var model = ShardModel(configuration: store.ledgerConfiguration)
        var acknowledged = 0
        var snapshots = 0
        var tornCuts = 0

        for round in 0 ..< 8 {
            let recovered = try store.recover()
            let log = try store.openLog(after: recovered.log)
            if round == 0 { model.runPrologue(of: &workload, log: log) }
            let bursts = 3 + random.below(12)
            var held: SyncGate?
            func appendBurst(_ size: Int) {
                let target = model.records.count + size
                while model.records.count < target {
                    model.now = model.now.adding(millis: workload.pause())
                    let command = workload.next()
                    let (outcome, _) = model.run(command, log: log)
                    workload.learn(command, outcome)
                }
            }
            for burst in 0 ..< bursts {
                let last = burst == bursts - 1
                if last, round > 0 || burst > 0, random.chance(75) {
                    // Cut the power while the writer syncs this last burst (written, not yet synced):
                    // hold its first sync, append more meanwhile, hold the next sync, which then
                    // covers a larger write, and cut there.
                    let segment = store.segmentPath(WALFormat.segmentName(firstLSN: log.currentSegmentFirstLSN))
                    let first = store.disk.hold(syncNumber: 1, of: segment)
                    appendBurst(1 + random.below(5))
                    try #require(first.waitUntilEntered(), "the writer never synced the last burst")
                    appendBurst(2 + random.below(20))
                    held = store.disk.hold(syncNumber: 1, of: segment)
                    first.release()
                    try #require(held!.waitUntilEntered(), "the writer never synced the rest of the last burst")
                    break
                }
                appendBurst(1 + random.below(15))
                if last { break } // the power cut comes while this burst may be in flight
                if random.chance(70) {
                    try await log.waitUntilDurable(UInt64(model.records.count))
                    acknowledged = model.records.count
                }
                if random.chance(15) {
                    let lsn = UInt64(model.records.count)
                    try await log.waitUntilSynced(lsn)
                    acknowledged = max(acknowledged, model.records.count)
                    try store.writeSnapshot(model.ledger, lsn: lsn, chain: log.lastAppendedChecksum)
                    try ShardStorage.retire(shard: 0, storage: store.storage, currentSegmentFirstLSN: log.currentSegmentFirstLSN)
                    snapshots += 1
                }
            }
            store.simulated.crash(seed: random.next())
            held?.release()
            await log.close()

            let context = "round \(round) (seed \(seed))"
            let after: (ledger: Ledger, log: WALReader.Report, report: ShardRecoveryReport)
            do {
                after = try store.recover()
            } catch {
                Issue.record("\(context): recovery after a power cut failed: \(error)")
                return
            }
            let kept = Int(after.log.lastLSN)
            #expect(kept >= acknowledged, "\(context): \(acknowledged - kept) acknowledged records lost")
            #expect(kept <= model.records.count, "\(context): more records than were appended")
            if after.report.tornBytesDropped > 0 { tornCuts += 1 }
            let (entries, _) = try store.readLog()
            #expect(entries.map(\.command) == model.records.prefix(kept).map(\.command), "\(context): not a prefix")
            #expect(entries.map(\.time) == model.records.prefix(kept).map(\.time), "\(context)")
            let reference = store.reference(model.records.prefix(kept))
            #expect(after.ledger.stateDigest() == reference.stateDigest(), "\(context): state differs from the replayed prefix")
            #expect(after.ledger.invariantViolations().isEmpty)
            // Continue from what survived, as a restarted shard does.
            model = ShardModel(configuration: store.ledgerConfiguration, ledger: reference, records: Array(model.records.prefix(kept)),
                               now: model.now)
            acknowledged = kept
        }
        print("PowerLossTests.randomPowerCuts: \(model.records.count) records survive, \(snapshots) snapshots, \(tornCuts) torn tails cut")
    }

    @Test("a power cut while one write batch spans a segment roll-over loses only unacknowledged records")
    func powerCutDuringRollOver() async throws {
        // unsyncedBytesMax above the segment size, so the rest of segment 1 and the start of
        // segment 2 go out in one batch.
        let store = try DurabilityStore(log: smallLogConfiguration(unsyncedBytesMax: 32 << 20))
        let first = store.segmentPath(WALFormat.segmentName(firstLSN: 1))
        // 1. The writer stands still in segment 1's header sync, with only record 1 in hand.
        let creating = store.disk.hold(syncNumber: 1, of: first)
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x9A7E_0002)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        let prologue = workload.prologue()
        model.run(prologue[0], log: log)
        try #require(creating.waitUntilEntered(), "the writer never synced segment 1's header")
        // 2. Meanwhile: the rest of segment 1 and the start of segment 2 are appended.
        while log.currentSegmentFirstLSN == 1 { model.run(bulkyCommand(key: workload.freshKey()), log: log) }
        for command in prologue.dropFirst().prefix(3) { model.run(command, log: log) }
        let secondSegment = store.segmentPath(WALFormat.segmentName(firstLSN: log.currentSegmentFirstLSN))
        // 3. Hold the sync of segment 1 that follows the big batch (its 3rd sync), and let the writer go.
        let syncing = store.disk.hold(syncNumber: 2, of: first)
        creating.release()
        try await log.waitUntilDurable(1) // record 1 is acknowledged
        try #require(syncing.waitUntilEntered(), "the writer never synced segment 1 again")
        // 4. The power cut: the batch's bytes in segment 1 were written but not synced.
        let secondExisted = store.simulated.durableContents(of: secondSegment) != nil
        store.simulated.crash()
        syncing.release()
        await log.close()

        let recovered: (ledger: Ledger, log: WALReader.Report, report: ShardRecoveryReport)
        do {
            recovered = try store.recover()
        } catch {
            Issue.record("""
                recovery failed after a power cut that lost only unacknowledged records \
                (segment 2 \(secondExisted ? "was already durable" : "did not exist yet")): \(error)
                """)
            return
        }
        #expect(recovered.log.lastLSN >= 1)
        let kept = Int(recovered.log.lastLSN)
        #expect(recovered.ledger.stateDigest() == store.reference(model.records.prefix(kept)).stateDigest())

        // The log continues after the cut (a segment set aside may come back under its name).
        let reopened = try store.openLog(after: recovered.log)
        var continued = ShardModel(configuration: store.ledgerConfiguration, ledger: recovered.ledger,
                                   records: Array(model.records.prefix(kept)), now: model.now.adding(millis: 1_000))
        for command in prologue.dropFirst().prefix(6) { continued.run(command, log: reopened) }
        try await reopened.waitUntilDurable(UInt64(continued.records.count))
        await reopened.close()
        store.simulated.crash()
        let again = try store.recover()
        #expect(again.log.lastLSN == UInt64(continued.records.count))
        #expect(again.ledger.stateDigest() == store.reference(continued.records).stateDigest())
        #expect(again.report.tornBytesDropped == 0 && again.report.segmentsDropped.isEmpty)
    }

    @Test("a power cut between the archive and log directory syncs of retire leaves a recoverable log")
    func powerCutDuringRetire() async throws {
        let store = try DurabilityStore()
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x9A7E_0003)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        while log.currentSegmentFirstLSN == 1 {
            model.run(3, of: &workload, log: log)
            model.run(bulkyCommand(key: workload.freshKey()), log: log)
        }
        // Two snapshots in segment 2, so segment 1 is wholly older than the oldest kept one.
        for _ in 0 ..< 2 {
            model.run(5, of: &workload, log: log)
            let lsn = UInt64(model.records.count)
            try await log.waitUntilSynced(lsn)
            try store.writeSnapshot(model.ledger, lsn: lsn, chain: log.lastAppendedChecksum)
        }
        try await log.waitUntilDurable(UInt64(model.records.count))
        let firstSegment = WALFormat.segmentName(firstLSN: 1)

        // The segment's new name in the archive is made durable, then the power fails before the
        // log directory's sync makes its removal from the log directory durable.
        store.simulated.failNextSync(path: store.walDirectory)
        #expect(throws: FileError.self) {
            try ShardStorage.retire(shard: 0, storage: store.storage, currentSegmentFirstLSN: log.currentSegmentFirstLSN)
        }
        store.simulated.crash()
        await log.close()
        let inArchive = try store.simulated.contentsOfDirectory(store.archiveDirectory).contains(firstSegment)
        let inLog = try store.simulated.contentsOfDirectory(store.walDirectory).contains(firstSegment)
        #expect(inArchive || inLog, "the segment vanished from both directories")

        for fromLogStart in [false, true] {
            do {
                let recovered = try store.recover(fromLogStart: fromLogStart)
                #expect(recovered.log.lastLSN == UInt64(model.records.count))
                #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())
            } catch {
                Issue.record("""
                    recovery\(fromLogStart ? " from the log start" : "") failed after a power cut inside retire \
                    (segment \(firstSegment) in the archive: \(inArchive), in the log directory: \(inLog)): \(error)
                    """)
                return
            }
        }

        // The log continues; the next snapshot's retire copes with the leftover name too.
        let recovered = try store.recover()
        let reopened = try store.openLog(after: recovered.log)
        model.run(20, of: &workload, log: reopened)
        let lsn = UInt64(model.records.count)
        try await reopened.waitUntilSynced(lsn)
        try store.writeSnapshot(model.ledger, lsn: lsn, chain: reopened.lastAppendedChecksum)
        try ShardStorage.retire(shard: 0, storage: store.storage, currentSegmentFirstLSN: reopened.currentSegmentFirstLSN)
        await reopened.close()
        store.simulated.crash()
        for fromLogStart in [false, true] {
            let again = try store.recover(fromLogStart: fromLogStart)
            #expect(again.log.lastLSN == lsn)
            #expect(again.ledger.stateDigest() == model.ledger.stateDigest())
        }
    }

    @Test("a power cut during a snapshot write leaves the previous set of snapshots")
    func powerCutDuringSnapshotWrite() async throws {
        let store = try DurabilityStore()
        var log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0x9A7E_0004)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        model.run(60, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        let kept = SnapshotFile.name(lsn: UInt64(model.records.count))
        try store.writeSnapshot(model.ledger, lsn: UInt64(model.records.count), chain: log.lastAppendedChecksum)

        // Twice: the fault hits the temporary file's sync, then the directory sync after the rename.
        for faultPath in [nil, store.snapshotDirectory] as [String?] {
            model.run(40, of: &workload, log: log)
            let lsn = UInt64(model.records.count)
            try await log.waitUntilDurable(lsn)
            let name = SnapshotFile.name(lsn: lsn)
            store.simulated.failNextSync(path: faultPath ?? store.snapshotDirectory + "/.tmp-" + name)
            #expect(throws: FileError.self) {
                try store.writeSnapshot(model.ledger, lsn: lsn, chain: log.lastAppendedChecksum)
            }
            store.simulated.crash(seed: lsn)
            await log.close()
            #expect(try store.simulated.contentsOfDirectory(store.snapshotDirectory) == [kept], "fault at \(faultPath ?? "the temporary file")")
            let recovered = try store.recover()
            #expect(recovered.report.snapshot == kept)
            #expect(recovered.report.snapshotsRejected.isEmpty)
            #expect(recovered.log.lastLSN == lsn)
            #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())
            log = try store.openLog(after: recovered.log)
        }
        await log.close()
    }
}
