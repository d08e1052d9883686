import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// `credits recover --data DIR`: start-up recovery on its own, with its report.
struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recover a data directory (as start-up does: cuts a torn tail) and report what it took.",
        discussion: """
            Opens the engine on --data: per shard the newest snapshot that verifies, then the log \
            after it. Prints the time taken, the records replayed, the snapshot bytes read and \
            anything dropped, then closes. Fails, changing nothing, if the directory is damaged \
            beyond a torn tail or lost data (exit 1, the refusal's code in the output); \
            --point-in-time then keeps every record before the first bad one and sets the rest \
            aside (docs/operations.md lists every refusal and what the option accepts).
            """)

    @Option(help: "Data directory.") var data: String
    @Flag(help: "Accept losing the records after corruption (like RocksDB's point-in-time recovery).")
    var pointInTime = false
    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: "PEM file of the Ed25519 key that signs the audit checkpoints (its close checkpoint); never inside --data.")
    var auditKey: String?
    @OptionGroup var keys: DataKeyOptions

    func validate() throws {
        try checkPath("--data", data)
        _ = try loadAuditKey(auditKey, data: data)
    }

    func run() async throws {
        var log = LogConfiguration()
        log.auditSigningKey = try loadAuditKey(auditKey, data: data)
        var storage = StorageConfiguration(directory: data, log: log)
        storage.encryption = try keys.ring(dataDirectory: data)
        storage.recovery = pointInTime ? .pointInTime : .strict
        let started = monotonicNanos()
        let engine: CreditEngine
        let shardCount: Int
        do throws(RecoveryError) {
            (engine, shardCount) = try await openExistingEngine(storage)
        } catch {
            if json {
                print("{\"ok\": false, \"code\": \(jsonString(error.code)), \"shard\": \(error.shard.map(String.init) ?? "null"), "
                    + "\"problem\": \(jsonString(error.description))}")
            }
            printError("recovery refused: \(error) [\(error.code)]")
            throw ExitCode.failure
        }
        let millis = Double(monotonicNanos() - started) / 1e6
        let reports = engine.recoveryReports
        let statistics = await engine.statistics()
        let violations = await engine.invariantViolations()
        await engine.close()
        let replayed = reports.reduce(0) { $0 + $1.recordsReplayed }
        let snapshotBytes = reports.reduce(0) { $0 + $1.snapshotBytes }
        let torn = reports.reduce(0) { $0 + $1.tornBytesDropped }
        let tornRecords = reports.reduce(0) { $0 + $1.tornRecordsDropped }
        let rejected = reports.flatMap(\.snapshotsRejected)
        if json {
            print("{\"ok\": \(violations.isEmpty), \"recovery_ms\": \(fixed(millis, 1)), \"shards\": \(shardCount), "
                + "\"accounts\": \(statistics.accounts), \"wal_records_replayed\": \(replayed), \"snapshot_bytes\": \(snapshotBytes), "
                + "\"torn_bytes_dropped\": \(torn), \"torn_records_dropped\": \(tornRecords), "
                + "\"snapshots_rejected\": \(rejected.count), \"segments_dropped\": \(reports.reduce(0) { $0 + $1.segmentsDropped.count }), "
                + "\"dropped_codes\": [\(reports.compactMap { $0.droppedBecause.map { jsonString($0.code) } }.joined(separator: ", "))], "
                + "\"invariant_violations\": \(violations.count)}")
        } else {
            print("recovered \(shardCount) shards in \(fixed(millis, 1)) ms: \(statistics.accounts) accounts, "
                + "\(replayed) log records replayed after \(snapshotBytes) bytes of snapshots; torn tails: \(torn) bytes, \(tornRecords) records")
            for reason in rejected { print("snapshot rejected: \(reason)") }
            for report in reports { if let because = report.droppedBecause { print("shard \(report.shard): \(because)") } }
        }
        for problem in violations.prefix(10) { printError(problem) }
        if !violations.isEmpty { throw ExitCode.failure }
    }
}
