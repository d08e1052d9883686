import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Recovers a data directory without changing it and prints every ledger entry and every
/// account as JSON lines, for outside verification.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print every ledger entry and account of a data directory as JSON lines (read-only).",
        discussion: """
            Replays each shard's log from its first record (archived segments included), so \
            every entry ever recorded is listed: {"type": "entry", "key", "account", \
            "amount_mc", "kind", "ok", ...; a charge adds "model", "provider", "units", \
            "provider_cost_nusd", "list_price_mc", "key_source", "saved_mc"}. Then one line per account: {"type": "account", \
            "account", "available_mc", "granted_mc", "consumed_mc", ...}, and a final \
            {"type": "summary", ...}. Nothing in the directory is changed (a torn tail is \
            skipped, not cut). If old log segments were pruned, the shard is listed from its \
            oldest usable snapshot on, with a warning on stderr.
            """
    )

    @Option(help: "Data directory.") var data: String
    @OptionGroup var keys: DataKeyOptions

    func validate() throws { try checkPath("--data", data) }

    func run() async throws {
        var storage = StorageConfiguration(directory: data)
        storage.encryption = try keys.ring(dataDirectory: data)
        let shardCount = try LogReplay.shardCount(of: storage)
        let configuration = EngineConfiguration(shardCount: shardCount, storage: storage).shardLedgerConfiguration
        let entries = Counter()
        var accounts = 0
        for shard in 0 ..< shardCount {
            let (ledger, droppedBytes, droppedBecause) = try Self.replay(shard: shard, shardCount: shardCount, storage: storage,
                                                   configuration: configuration) { lsn, entry in
                entries.value += 1
                writeLine(Self.json(entry, shard: shard, lsn: lsn))
            }
            if let because = droppedBecause {
                printError("export: shard \(shard): skipped \(droppedBytes) bytes at the tail: \(because)")
            }
            for account in ledger.accountIDs {
                guard let balance = ledger.balance(of: account, at: ledger.lastTime) else { continue }
                accounts += 1
                writeLine("{\"type\": \"account\", \"account\": \"\(account)\", \"available_mc\": \(balance.available.rawValue), "
                    + "\"granted_mc\": \(balance.granted.rawValue), \"consumed_mc\": \(balance.consumed.rawValue), "
                    + "\"remaining_mc\": \(balance.remaining.rawValue), \"held_mc\": \(balance.held.rawValue), "
                    + "\"expired_mc\": \(balance.expired.rawValue), \"debt_mc\": \(balance.debt.rawValue)}")
            }
        }
        writeLine("{\"type\": \"summary\", \"shards\": \(shardCount), \"entries\": \(entries.value), \"accounts\": \(accounts)}")
    }

    /// Rebuilds a shard read-only, handing every replayed entry to `entry`: from the log's
    /// start when it is all there (`LogReplay`, as statements do), else from the newest
    /// usable snapshot. Returns the ledger and the torn tail skipped, if any.
    static func replay(shard: Int, shardCount: Int, storage: StorageConfiguration, configuration: LedgerConfiguration,
                       entry: @escaping (UInt64, LedgerEntry) -> Void) throws -> (Ledger, droppedBytes: Int, droppedBecause: WALReader.Failure?) {
        do {
            let (ledger, report) = try LogReplay.fromLogStart(shard: shard, shardCount: shardCount, storage: storage,
                                                              configuration: configuration) { lsn, _, _, ledger in
                if let newest = ledger.recentEntries.newest { entry(lsn, newest) }
            }
            return (ledger, report.droppedBytes, report.droppedBecause)
        } catch let error as RecoveryError {
            guard error.logStartPruned else { throw error }
            printError("export: shard \(shard): the log before the oldest snapshot was pruned; listing from the snapshot on")
            let (ledger, _, report) = try ShardStorage.recover(shard: shard, shardCount: shardCount, storage: storage,
                                                               ledger: configuration) { record, ledger in
                if let newest = ledger.recentEntries.newest { entry(record.lsn, newest) }
            }
            return (ledger, report.tornBytesDropped, report.droppedBecause)
        }
    }

    static func json(_ entry: LedgerEntry, shard: Int, lsn: UInt64) -> String {
        "{\"type\": \"entry\", \"shard\": \(shard), " + entryJSONFields(entry, lsn: lsn) + "}"
    }
}

/// An entry's fields as JSON members (no braces), as `export` and `statement` print them.
/// Its principal comes from `Statement.principalText`, the one place that reads it.
func entryJSONFields(_ entry: LedgerEntry, lsn: UInt64) -> String {
    var line = "\"lsn\": \(lsn), \"sequence\": \(entry.sequence), "
    line += "\"time_ms\": \(entry.time.millisSinceEpoch), \"key\": \"\(entry.key)\", \"kind\": \"\(entry.kind)\", "
    line += "\"tenant\": \"\(entry.tenant)\", "
    line += "\"account\": " + (entry.account.map { "\"\($0)\"" } ?? "null") + ", "
    line += "\"member\": " + (entry.member.map { "\"\($0)\"" } ?? "null") + ", "
    line += "\"principal\": " + jsonString(Statement.principalText(entry)) + ", "
    line += "\"amount_mc\": \(entry.amount.rawValue), \"available_after_mc\": \(entry.availableAfter.rawValue), "
    line += "\"debt_after_mc\": \(entry.debtAfter.rawValue), \"ok\": \(entry.error == nil), "
    line += "\"error\": " + (entry.error.map { jsonString($0.description) } ?? "null")
    if let reason = entry.reason { line += ", \"reason\": " + jsonString(reason) }
    if let usage = entry.usage {
        line += ", \"model\": " + jsonString(usage.model) + ", \"provider\": " + jsonString(usage.provider)
        line += ", \"units\": \(usage.units), \"provider_cost_nusd\": \(usage.providerCostNanoUSD)"
        line += ", \"list_price_mc\": \(usage.listPrice.rawValue), \"key_source\": \"\(usage.keySource)\""
        line += ", \"saved_mc\": \(usage.saved.rawValue)"
    }
    return line
}

/// A count a non-escaping closure can add to.
final class Counter {
    var value = 0
}
