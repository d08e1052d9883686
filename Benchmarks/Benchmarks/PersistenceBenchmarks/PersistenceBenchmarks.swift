/// Micro-benchmarks of the durability layer, single-threaded and in memory: a log record's
/// encoding and decoding, CRC32C, a snapshot's state encoding, LZ4 and decoding, and
/// recovery's replay of logged debits. README.md lists what each one measures.
import Benchmark
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence
import LedgerFixtures

let benchmarks: @Sendable () -> Void = {
    Fixtures.useDefaultConfiguration()
    encodeRecord()
    decodeRecord()
    checksum(bytes: 4 << 10, name: "4 KiB")
    checksum(bytes: 64 << 10, name: "64 KiB")
    snapshotSteps()
    replayLoggedDebits()
    recoverDirectory()
}

// MARK: Log records

/// The appender's state between iterations: its reused buffer, the next LSN and the chain.
final class RecordAppender {
    /// A debit record: the header, then the key (16), tag (1), account (12), amount (8) and scope (8).
    static let debitRecordBytes = WALFormat.recordHeaderSize + 45

    let writer = Stash(ByteWriter(capacity: 128 << 10))
    let command = LogFixtures.debit(IdempotencyKey(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210),
                                    AccountID(tenant: TenantID(42), number: 0))
    var lsn: UInt64 = 1
    var previous: UInt32 = 0
}

/// One debit command as a log record (`WALRecord.append`): header, command encoding and
/// CRC32C, into the appender's reused buffer.
func encodeRecord() {
    Benchmark("WAL: encode a debit record") { benchmark, appender in
        var writer = appender.writer.take()
        writer.removeAll(keepingCapacity: true)
        let command = appender.command
        var lsn = appender.lsn
        var previous = appender.previous
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            previous = WALRecord.append(command, at: Fixtures.now, lsn: lsn, previous: previous, syncedLSN: lsn - 1,
                                        to: &writer)
            lsn += 1
        }
        benchmark.stopMeasurement()
        let recordBytes = writer.count / benchmark.scaledIterations.count
        appender.lsn = lsn
        appender.previous = previous
        appender.writer.put(writer)
        if recordBytes != RecordAppender.debitRecordBytes { benchmark.error("a debit record of \(recordBytes) bytes") }
    } setup: {
        RecordAppender()
    }
}

/// One debit record as the log reader takes it: length and CRC32C checked
/// (`WALRecord.scan`), then the command decoded from its bytes (`Command(decoding:)`).
func decodeRecord() {
    Benchmark("WAL: decode a debit record (checksum + command)") { (benchmark: Benchmark, records: [UInt8]) in
        var lsnSum: UInt64 = 0
        var amountSum: Int64 = 0
        var invalid = 0
        records.withUnsafeBytes { raw in
            var offset = 0
            for _ in benchmark.scaledIterations {
                guard case .record(let header, let length) = WALRecord.scan(raw, at: offset, end: raw.count) else {
                    invalid += 1
                    break
                }
                var reader = ByteReader(records, from: offset + WALFormat.recordHeaderSize, to: offset + length)
                do {
                    let command = try Command(decoding: &reader)
                    try reader.expectEnd("the command")
                    if case .debit(_, let amount, _) = command.action { amountSum &+= amount.rawValue }
                } catch {
                    invalid += 1
                }
                lsnSum &+= header.lsn
                offset += length
            }
        }
        benchmark.stopMeasurement()
        blackHole(lsnSum)
        blackHole(amountSum)
        if invalid > 0 { benchmark.error("\(invalid) records did not decode") }
    } setup: {
        var keys = KeySequence(stream: 30)
        return LogFixtures.debitRecords(1_000, accounts: [AccountID(tenant: TenantID(42), number: 0)], keys: &keys).bytes
    }
}

// MARK: CRC32C

/// `CRC32C.checksum` of a buffer of random bytes, each checksum continuing from the last.
func checksum(bytes count: Int, name: String) {
    // Bytes checksummed per second, from the benchmark's own clock around the loop the
    // package times (the package's throughput counts checksums).
    let bytesPerSecond = BenchmarkMetric.custom("bytes/s", polarity: .prefersLarger, useScalingFactor: false)
    Benchmark("CRC32C: \(name)",
              configuration: .init(metrics: Benchmark.defaultConfiguration.metrics + [bytesPerSecond])) { (benchmark: Benchmark, bytes: [UInt8]) in
        let clock = ContinuousClock()
        var crc: UInt32 = 0
        var elapsed = Duration.zero
        bytes.withUnsafeBytes { raw in
            benchmark.startMeasurement()
            let started = clock.now
            for _ in benchmark.scaledIterations {
                crc = CRC32C.checksum(raw, continuing: crc)
            }
            elapsed = started.duration(to: clock.now)
            benchmark.stopMeasurement()
        }
        blackHole(crc)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let checksummed = Double(bytes.count * benchmark.scaledIterations.count)
        if seconds > 0 { benchmark.measurement(bytesPerSecond, Int(checksummed / seconds)) }
    } setup: {
        var keys = KeySequence(stream: 40)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            let key = keys.next()
            withUnsafeBytes(of: (key.high, key.low)) { bytes.append(contentsOf: $0) }
        }
        return Array(bytes.prefix(count))
    }
}

// MARK: Snapshots

/// A snapshot of 100,000 accounts in its steps, each measured alone: the ledger's state
/// encoded (`Ledger.encodeState`), those bytes LZ4-compressed (`LZ4Frame.compress`) and
/// decompressed, and the state decoded into a ledger (`Ledger(decodingState:)`, which checks
/// the structure and the invariants, as recovery does). One operation is the whole state.
func snapshotSteps() {
    let whole = Benchmark.Configuration(scalingFactor: .one, maxDuration: .seconds(3))
    Benchmark("Snapshot: encode state, 100k accounts", configuration: whole) { benchmark, snapshot in
        var writer = ByteWriter(capacity: 0)
        benchmark.startMeasurement()
        snapshot.ledger.encodeState(into: &writer)
        benchmark.stopMeasurement()
        if writer.bytes != snapshot.state { benchmark.error("the state encodes to other bytes") }
    } setup: {
        snapshotState
    }
    Benchmark("Snapshot: LZ4 compress state, 100k accounts", configuration: whole) { benchmark, snapshot in
        let frame = try LZ4Frame.compress(snapshot.state)
        benchmark.stopMeasurement()
        blackHole(frame.count)
    } setup: {
        snapshotState
    }
    Benchmark("Snapshot: LZ4 decompress state, 100k accounts", configuration: whole) { benchmark, snapshot in
        let state = try LZ4Frame.decompress(snapshot.frame, maxOutputBytes: snapshot.state.count)
        benchmark.stopMeasurement()
        if state.count != snapshot.state.count { benchmark.error("the frame decompresses to \(state.count) bytes") }
    } setup: {
        snapshotState
    }
    Benchmark("Snapshot: decode state, 100k accounts", configuration: whole) { benchmark, snapshot in
        var reader = ByteReader(snapshot.state)
        let ledger = try Ledger(decodingState: &reader, configuration: snapshot.ledger.configuration)
        benchmark.stopMeasurement()
        if ledger.accountCount != SnapshotState.accountCount { benchmark.error("\(ledger.accountCount) accounts decoded") }
    } setup: {
        snapshotState
    }
}

// MARK: Recovery

/// A ledger of 1,000 funded accounts that logged debits are replayed into, the batch path
/// recovery uses (`Ledger.replay`, runs of 512 as `ShardStorage.recover` hands them over).
final class ReplayTarget {
    /// `ShardStorage.replayRunLength`.
    static let runLength = 512

    let ledger: Stash<Ledger>
    let accounts: [AccountID]
    var keys = KeySequence(stream: 51)
    var time = Fixtures.now

    init() {
        var keys = KeySequence(stream: 50)
        let funded = Fixtures.fundedLedger(accounts: 1_000, creditsEach: 1_000_000_000, keys: &keys)
        ledger = Stash(funded.ledger)
        accounts = funded.accounts
    }
}

/// One logged debit re-applied at its logged time: 1,000 new debits per iteration, built
/// before the measurement as recovery's reader hands them over (decoded commands and times).
func replayLoggedDebits() {
    Benchmark("Recovery: replay a logged debit (Ledger.replay)") { benchmark, target in
        var ledger = target.ledger.take()
        var keys = target.keys
        target.time = target.time.adding(millis: 1)
        var runs: [(commands: [Command], times: [Timestamp])] = []
        var index = 0
        while index < benchmark.scaledIterations.count {
            let count = min(ReplayTarget.runLength, benchmark.scaledIterations.count - index)
            let commands = (index ..< index + count).map { LogFixtures.debit(keys.next(), target.accounts[$0 % target.accounts.count]) }
            runs.append((commands, [Timestamp](repeating: target.time, count: count)))
            index += count
        }
        let sequenceBefore = ledger.nextSequence
        benchmark.startMeasurement()
        for run in runs {
            ledger.replay(run.commands, times: run.times)
        }
        benchmark.stopMeasurement()
        let applied = ledger.nextSequence - sequenceBefore
        let lastRejected = ledger.recentEntries.newest?.error
        withExtendedLifetime(runs) {}
        target.keys = keys
        target.ledger.put(ledger)
        if applied != UInt64(benchmark.scaledIterations.count) { benchmark.error("\(applied) debits applied") }
        if let lastRejected { benchmark.error("a replayed debit was rejected: \(lastRejected)") }
    } setup: {
        ReplayTarget()
    }
}

/// Recovery of one shard, end to end (`ShardStorage.recover`): read and verify the snapshot,
/// read the segment, check every record's CRC32C, LSN and chain link, decode the commands,
/// replay them in runs, check the invariants. One operation is one logged debit, of a log
/// of a million after the snapshot.
func recoverDirectory() {
    Benchmark("Recovery: ShardStorage.recover, per logged debit",
              configuration: .init(scalingFactor: .mega, maxDuration: .seconds(10))) { benchmark, directory in
        guard benchmark.scaledIterations.count == LoggedDirectory.recordCount else {
            benchmark.error("one logged debit per scaled iteration: \(LoggedDirectory.recordCount) records")
            return
        }
        let (ledger, _, report) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: directory.storage,
                                                           ledger: LedgerConfiguration())
        benchmark.stopMeasurement()
        if report.snapshotLSN != directory.snapshotLSN || report.recordsReplayed != LoggedDirectory.recordCount {
            benchmark.error("recovered from LSN \(report.snapshotLSN) with \(report.recordsReplayed) records replayed")
        }
        blackHole(ledger.nextSequence)
    } setup: {
        LoggedDirectory()
    }
}
