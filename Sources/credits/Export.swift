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

    func validate() throws { try checkPath("--data", data) }

    func run() async throws {
        let storage = StorageConfiguration(directory: data)
        guard let shardCount = try ShardStorage.existingShardCount(storage: storage) else {
            throw ValidationError("\(data) is not a data directory (no credits.meta)")
        }
        let configuration = EngineConfiguration(shardCount: shardCount, storage: storage).shardLedgerConfiguration
        let entries = Counter()
        var accounts = 0
        for shard in 0 ..< shardCount {
            let (ledger, report) = try Self.replay(shard: shard, shardCount: shardCount, storage: storage,
                                                   configuration: configuration) { lsn, entry in
                entries.value += 1
                writeLine(Self.json(entry, shard: shard, lsn: lsn))
            }
            if let because = report.droppedBecause {
                printError("export: shard \(shard): skipped \(report.tornBytesDropped) bytes at the tail: \(because)")
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
    /// start when it is all there, else from the newest usable snapshot.
    static func replay(shard: Int, shardCount: Int, storage: StorageConfiguration, configuration: LedgerConfiguration,
                       entry: @escaping (UInt64, LedgerEntry) -> Void) throws -> (Ledger, ShardRecoveryReport) {
        let visit: (WALReader.Entry, inout Ledger) -> Void = { record, ledger in
            if let newest = ledger.recentEntries.newest { entry(record.lsn, newest) }
        }
        do {
            let (ledger, _, report) = try ShardStorage.recover(shard: shard, shardCount: shardCount, storage: storage,
                                                               ledger: configuration, fromLogStart: true, visit: visit)
            return (ledger, report)
        } catch {
            guard error.logStartPruned else { throw error }
            printError("export: shard \(shard): the log before the oldest snapshot was pruned; listing from the snapshot on")
            let (ledger, _, report) = try ShardStorage.recover(shard: shard, shardCount: shardCount, storage: storage,
                                                               ledger: configuration, visit: visit)
            return (ledger, report)
        }
    }

    static func json(_ entry: LedgerEntry, shard: Int, lsn: UInt64) -> String {
        var line = "{\"type\": \"entry\", \"shard\": \(shard), \"lsn\": \(lsn), \"sequence\": \(entry.sequence), "
        line += "\"time_ms\": \(entry.time.millisSinceEpoch), \"key\": \"\(entry.key)\", \"kind\": \"\(entry.kind)\", "
        line += "\"tenant\": \"\(entry.tenant)\", "
        line += "\"account\": " + (entry.account.map { "\"\($0)\"" } ?? "null") + ", "
        line += "\"member\": " + (entry.member.map { "\"\($0)\"" } ?? "null") + ", "
        line += "\"principal\": \"\(entry.principal)\", "
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
        return line + "}"
    }
}

/// A count a non-escaping closure can add to.
final class Counter {
    var value = 0
}
