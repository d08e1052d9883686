import ArgumentParser
import CreditEngine
#if canImport(Glibc)
import Glibc
#endif
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The recovery drill: a `load` child under strict durability is killed with SIGKILL at a
/// random moment; then the directory is recovered and every debit the child acknowledged
/// must be there exactly once, with all invariants holding.
struct Drill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Crash drill: SIGKILL a durable load at a random moment, recover, check every acknowledged debit.",
        discussion: """
            Runs `credits load --durability strict` on --data as a child process, kills it with \
            SIGKILL at a random moment within --seconds, replays the directory read-only and \
            checks that every acknowledged key is present exactly once, then opens it normally \
            (cutting any torn tail) and reports: acknowledged, recovered, lost, duplicated, \
            recovery_ms, snapshot_bytes, wal_records_replayed, torn_bytes_dropped. Exits non-zero \
            if anything acknowledged was lost or duplicated or an invariant broke.
            """
    )

    @Option(help: "Data directory (created if missing; an existing one is continued).") var data: String
    @Option(help: "Accounts the load funds and debits, 1...\(OptionLimits.accountsMax).") var accounts = 10_000
    @Option(help: "The kill comes at a random moment up to this many seconds after the first acknowledgement, \(OptionLimits.durationSecondsMin)...\(OptionLimits.durationSecondsMax).")
    var seconds = 3.0
    @Option(help: "Shard actors for a new data directory, 1...\(EngineConfiguration.shardCountMax).") var shards: Int?
    @Option(help: "Records between snapshots in the child, 1...\(OptionLimits.snapshotEveryRecordsMax) (small values put snapshots in the drill).")
    var snapshotEvery = 50_000
    @Option(help: "Seed of the kill moment (default: random).") var seed: UInt64?
    @Option(help: "PEM file of the Ed25519 key that signs the audit checkpoints (the child's and the restart's); never inside --data.")
    var auditKey: String?
    @OptionGroup var keys: DataKeyOptions
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        try checkPath("--data", data)
        _ = try loadAuditKey(auditKey, data: data)
        try checkRange("--accounts", accounts, in: 1 ... OptionLimits.accountsMax, "accounts")
        try checkRange("--seconds", seconds, in: OptionLimits.durationSecondsMin ... OptionLimits.durationSecondsMax, "seconds")
        if let shards { try checkRange("--shards", shards, in: 1 ... EngineConfiguration.shardCountMax, "shards") }
        try checkRange("--snapshot-every", snapshotEvery, in: 1 ... OptionLimits.snapshotEveryRecordsMax, "records")
    }

    /// The value of `"key": "..."` in an acknowledgement line.
    static func key(inLine line: [UInt8]) -> String? {
        let marker = Array("\"key\": \"".utf8)
        guard line.count > marker.count else { return nil }
        for start in 0 ... (line.count - marker.count) where line[start ..< start + marker.count].elementsEqual(marker) {
            let valueStart = start + marker.count
            guard let valueEnd = line[valueStart...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: line[valueStart ..< valueEnd], as: UTF8.self)
        }
        return nil
    }

    /// Starts the load child, reads its acknowledgements until the kill moment (counted
    /// from the first one, so the funding phase does not eat the window), kills it with
    /// SIGKILL and drains the pipe. Synchronous on purpose: it blocks in poll.
    func runChild(killAfterNanos: UInt64) throws -> [UInt8] {
        var arguments = ["load", "--data", data, "--accounts", String(accounts), "--durability", "strict",
                         "--snapshot-every", String(snapshotEvery)]
        if let shards { arguments += ["--shards", String(shards)] }
        if let auditKey { arguments += ["--audit-key", auditKey] }
        for key in keys.dataKeys { arguments += ["--data-key", key] }
        let child = try ChildProcess.spawn(executablePath(), arguments)
        var output: [UInt8] = []
        var firstAck: UInt64?
        var killed = false
        while true {
            var descriptor = pollfd(fd: child.output, events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 10) > 0, child.read(into: &output) == nil { break }
            if firstAck == nil, output.contains(UInt8(ascii: "\n")) { firstAck = monotonicNanos() }
            if !killed, let firstAck, monotonicNanos() - firstAck >= killAfterNanos {
                child.kill(SIGKILL)
                killed = true
            }
        }
        let status = child.wait()
        close(child.output)
        guard killed, status.signal == SIGKILL else {
            throw ValidationError("the load child ended before the kill (exit \(status.exitCode.map(String.init) ?? "?")); see its stderr")
        }
        return output
    }

    struct Check {
        var acknowledged = 0
        var recovered = 0
        var lost = 0
        var duplicated = 0
        var shardCount = 0
    }

    /// Every complete line of `output` is an acknowledged debit (each was written whole);
    /// replays the directory read-only from every log's start and counts how often each
    /// acknowledged key appears as a successful debit.
    func check(output: [UInt8]) throws -> Check {
        var acknowledged: [String] = []
        for line in output.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            if let key = Self.key(inLine: Array(line)) { acknowledged.append(key) }
        }
        if let last = output.last, last != UInt8(ascii: "\n") {
            printError("drill: ignoring a partial last line (never a complete acknowledgement)")
        }
        var storage = StorageConfiguration(directory: data)
        storage.encryption = try keys.ring(dataDirectory: data)
        guard let shardCount = try ShardStorage.existingShardCount(storage: storage) else {
            throw ValidationError("\(data) was not created by the load child")
        }
        let configuration = EngineConfiguration(shardCount: shardCount, storage: storage).shardLedgerConfiguration
        let seen = KeyCounts()
        for shard in 0 ..< shardCount {
            _ = try Export.replay(shard: shard, shardCount: shardCount, storage: storage, configuration: configuration) { _, entry in
                if entry.kind == .debited, entry.error == nil { seen.counts["\(entry.key)", default: 0] += 1 }
            }
        }
        var check = Check(acknowledged: acknowledged.count, shardCount: shardCount)
        for key in acknowledged {
            let count = seen.counts[key] ?? 0
            if count == 0 { check.lost += 1 } else { check.recovered += 1 }
            if count > 1 { check.duplicated += 1 }
        }
        return check
    }

    func run() async throws {
        var system = SystemRandomNumberGenerator()
        let seed = self.seed ?? system.next()
        var random = SplitMix64(seed: seed)
        let killAfterNanos = UInt64(Double(random.next() % 1_000_000) / 1_000_000 * seconds * 1e9)
        let output = try runChild(killAfterNanos: killAfterNanos)
        let check = try check(output: output)

        // The real start-up, as a service does it (this one cuts a torn tail).
        var log = LogConfiguration()
        log.auditSigningKey = try loadAuditKey(auditKey, data: data)
        var storage = StorageConfiguration(directory: data, log: log)
        storage.encryption = try keys.ring(dataDirectory: data)
        let started = monotonicNanos()
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(shardCount: check.shardCount, storage: storage))
        let recoveryMillis = Double(monotonicNanos() - started) / 1e6
        let violations = await engine.invariantViolations()
        let reports = engine.recoveryReports
        await engine.close()
        report(check: check, reports: reports, violations: violations, seed: seed, killAfterNanos: killAfterNanos,
               recoveryMillis: recoveryMillis)
        if check.lost > 0 || check.duplicated > 0 || !violations.isEmpty { throw ExitCode.failure }
    }

    func report(check: Check, reports: [ShardRecoveryReport], violations: [String], seed: UInt64, killAfterNanos: UInt64,
                recoveryMillis: Double) {
        let snapshotBytes = reports.reduce(0) { $0 + $1.snapshotBytes }
        let replayed = reports.reduce(0) { $0 + $1.recordsReplayed }
        let torn = reports.reduce(0) { $0 + $1.tornBytesDropped }
        let tornRecords = reports.reduce(0) { $0 + $1.tornRecordsDropped }
        let ok = check.lost == 0 && check.duplicated == 0 && violations.isEmpty
        let killedAfter = fixed(Double(killAfterNanos) / 1e6, 1)
        if json {
            print("{\"ok\": \(ok), \"seed\": \(seed), \"killed_after_ms\": \(killedAfter), "
                + "\"acknowledged\": \(check.acknowledged), \"recovered\": \(check.recovered), \"lost\": \(check.lost), "
                + "\"duplicated\": \(check.duplicated), \"recovery_ms\": \(fixed(recoveryMillis, 1)), "
                + "\"snapshot_bytes\": \(snapshotBytes), \"wal_records_replayed\": \(replayed), "
                + "\"torn_bytes_dropped\": \(torn), \"torn_records_dropped\": \(tornRecords), "
                + "\"invariant_violations\": \(violations.count), \"shards\": \(check.shardCount)}")
        } else {
            print("drill (seed \(seed)): killed \(killedAfter) ms after the first acknowledgement")
            print("acknowledged \(check.acknowledged), recovered \(check.recovered), lost \(check.lost), duplicated \(check.duplicated)")
            print("recovery \(fixed(recoveryMillis, 1)) ms: \(replayed) log records replayed after snapshots of \(snapshotBytes) bytes; "
                + "torn tail \(torn) bytes (\(tornRecords) records) dropped")
            print("invariants: " + (violations.isEmpty ? "all hold" : "\(violations.count) broken"))
        }
        for problem in violations.prefix(10) { printError(problem) }
    }
}

/// Debit keys seen in a replay, and how often.
final class KeyCounts {
    var counts: [String: Int] = [:]
}
