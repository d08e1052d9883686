import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// `credits rekey --data DIR --data-key OLD --data-key NEW`: rewrites every snapshot under the
/// newest key of the ring (docs/encryption.md, "Rotation").
struct Rekey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite a data directory's snapshots under the newest data key (key rotation).",
        discussion: """
            Opens --data with the key ring (every --data-key, newest last) as start-up does, \
            takes a snapshot of every shard at its log's end under the newest key, then \
            rewrites every other snapshot sealed with an older key (or not sealed) under the \
            newest one. Log segments are not rewritten: the next start-up writes new segments \
            under the newest key, and the old key is needed only for the log records the \
            snapshots do not cover and for the audit trail (export, wal verify). Changes nothing \
            if a key the directory needs is missing (exit 1, code data_key_missing).
            """)

    @Option(help: "Data directory.") var data: String
    @OptionGroup var keys: DataKeyOptions
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        try checkPath("--data", data)
        guard !keys.dataKeys.isEmpty else { throw ValidationError("rekey needs the key ring: --data-key FILE, repeated, newest last") }
    }

    func run() async throws {
        var storage = StorageConfiguration(directory: data)
        guard let ring = try keys.ring(dataDirectory: data) else { throw ExitCode.failure }
        storage.encryption = ring
        let shardCount: Int
        let engine: CreditEngine
        do throws(RecoveryError) {
            (engine, shardCount) = try await openExistingEngine(storage)
        } catch {
            if json {
                print("{\"ok\": false, \"code\": \(jsonString(error.code)), \"problem\": \(jsonString(error.description))}")
            }
            printError("rekey refused: \(error) [\(error.code)]")
            throw ExitCode.failure
        }
        // A fresh snapshot of every shard at its log's end, under the newest key.
        let taken = try await engine.snapshot()
        await engine.close()
        // Then every older snapshot still sealed with another key (or not sealed).
        let newest = EncryptionKeyRing.describe(ring.newestID)
        var rewritten = taken.count
        var skipped: [String] = []
        for shard in 0 ..< shardCount {
            let (count, damaged) = try ShardStorage.resealSnapshots(shard: shard, storage: storage)
            rewritten += count
            for rejection in damaged {
                // Damaged: recovery already falls back past it; it is left as it is.
                skipped.append(rejection.description)
                printError("rekey: warning: \(rejection) not rewritten [\(rejection.problem.code)]")
            }
        }
        if json {
            print("{\"ok\": true, \"key_id\": \(jsonString(newest)), \"shards\": \(shardCount), "
                + "\"snapshots_written\": \(rewritten), \"snapshots_skipped\": \(skipped.count)}")
        } else {
            print("rekey: \(rewritten) snapshots written under data key \(newest) in \(shardCount) shards"
                + (skipped.isEmpty ? "" : "; \(skipped.count) damaged snapshots left as they were"))
        }
    }
}
