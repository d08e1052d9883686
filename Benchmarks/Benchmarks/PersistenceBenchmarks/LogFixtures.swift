/// Logs, states and data directories the persistence benchmarks start from (setup only).
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence
import LedgerFixtures

enum LogFixtures {
    /// A debit as a client sends it: the record every log benchmark encodes or decodes.
    static func debit(_ key: IdempotencyKey, _ account: AccountID) -> Command {
        Command(key: key, .debit(account, Millicredits(1_500), scope: .unscoped))
    }

    /// `count` debit records back to back, as a segment holds them after its header: LSNs
    /// from `firstLSN`, chained from `previous`, each at `time` plus a millisecond per
    /// thousand records. Returns the bytes and the last record's checksum.
    static func debitRecords(_ count: Int, accounts: [AccountID], keys: inout KeySequence, firstLSN: UInt64 = 1,
                             previous: UInt32 = 0, time: Timestamp = Fixtures.now) -> (bytes: [UInt8], last: UInt32) {
        var writer = ByteWriter(capacity: count * 96)
        var checksum = previous
        for index in 0 ..< count {
            let lsn = firstLSN + UInt64(index)
            checksum = WALRecord.append(debit(keys.next(), accounts[index % accounts.count]),
                                        at: time.adding(millis: Int64(index / 1_000)), lsn: lsn, previous: checksum,
                                        syncedLSN: lsn - 1, to: &writer)
        }
        return (writer.bytes, checksum)
    }
}

/// 100,000 funded accounts, each debited once, with the idempotency table full: the ledger,
/// its encoded state and that state as an LZ4 frame — what a snapshot of a shard holds.
final class SnapshotState: Sendable {
    static let accountCount = 100_000

    let ledger: Ledger
    let state: [UInt8]
    let frame: [UInt8]

    init() {
        var keys = KeySequence(stream: 10)
        let funded = Fixtures.fundedLedger(accounts: Self.accountCount, creditsEach: 1_000, keys: &keys)
        var ledger = funded.ledger
        Fixtures.apply(funded.accounts.map { LogFixtures.debit(keys.next(), $0) }, to: &ledger)
        var writer = ByteWriter()
        ledger.encodeState(into: &writer)
        do {
            frame = try LZ4Frame.compress(writer.bytes)
            var reader = ByteReader(writer.bytes)
            let decoded = try Ledger(decodingState: &reader, configuration: ledger.configuration)
            precondition(decoded.stateDigest() == ledger.stateDigest(), "the state does not decode to the same ledger")
        } catch {
            fatalError("the snapshot state does not round-trip: \(error)")
        }
        self.ledger = ledger
        state = writer.bytes
    }
}

/// Built once per process, by the first snapshot benchmark that runs.
let snapshotState = SnapshotState()

/// A data directory of one shard in memory (`SimulatedFileSystem`, so no disk I/O in the
/// figures): a snapshot of 1,000 funded accounts, then a log segment of `recordCount` debit
/// records after it — what recovery reads at start-up.
final class LoggedDirectory: Sendable {
    static let accountCount = 1_000
    static let recordCount = 1_000_000

    let storage: StorageConfiguration
    let snapshotLSN: UInt64

    init() {
        let fileSystem = SimulatedFileSystem()
        storage = StorageConfiguration(directory: "/data", fileSystem: fileSystem)
        var keys = KeySequence(stream: 20)
        let (accounts, setup) = Fixtures.fundedAccounts(Self.accountCount, creditsEach: 1_000_000, keys: &keys)
        var ledger = Ledger()
        Fixtures.apply(setup, to: &ledger)
        // The snapshot covers the setup's records; the first record after it names the last
        // of them as its previous, so the chain is computed from the setup as it was logged.
        var setupRecords = ByteWriter(capacity: setup.count * 128)
        var chain: UInt32 = 0
        for (index, command) in setup.enumerated() {
            chain = WALRecord.append(command, at: Fixtures.now, lsn: UInt64(index + 1), previous: chain,
                                     syncedLSN: UInt64(index), to: &setupRecords)
        }
        snapshotLSN = UInt64(setup.count)
        let (records, _) = LogFixtures.debitRecords(Self.recordCount, accounts: accounts, keys: &keys,
                                                    firstLSN: snapshotLSN + 1, previous: chain)
        let header = SegmentHeader(shardIndex: 0, shardCount: 1, firstLSN: snapshotLSN + 1, previousChecksum: chain,
                                   segmentSize: UInt64(WALFormat.segmentHeaderSize + records.count),
                                   unsyncedBytesMax: UInt64(LogConfiguration.unsyncedBytesMaxDefault))
        do {
            _ = try ShardStorage.prepare(storage: storage, shardCount: 1, create: true)
            try SnapshotFile.write(ledger, shard: 0, shardCount: 1, lsn: snapshotLSN, chain: chain,
                                   directory: storage.snapshotDirectory(0), fileSystem: fileSystem)
            let file = try fileSystem.open(storage.walDirectory(0) + "/" + WALFormat.segmentName(firstLSN: snapshotLSN + 1),
                                           create: true)
            try file.write(header.encoded(), at: 0)
            try file.write(records, at: Int64(WALFormat.segmentHeaderSize))
            try file.sync()
            file.close()
            try fileSystem.syncDirectory(storage.walDirectory(0))
        } catch {
            fatalError("cannot write the data directory: \(error)")
        }
    }
}
