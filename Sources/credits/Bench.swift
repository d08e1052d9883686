import ArgumentParser
import CreditBilling
import CreditEngine
import CreditPricing
#if canImport(Glibc)
import Glibc
#endif

/// The load benchmark: uniform random debits against pre-funded accounts, in memory.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load benchmark: uniform random debits (or charges) over pre-funded accounts.",
        discussion: """
            Opens --accounts individual tenants with one account and one grant each, then runs \
            --ops debits from --concurrency tasks. With --batch 1 each debit is its own call; with \
            --batch B each task sends batches of B debits through the batch entry point, and the \
            latency reported is that of a whole batch call. --operation charge or charge-routing \
            runs AI-call charges through the billing service instead; --versus OP runs a second \
            operation in alternating rounds on the same engine and reports the ratio.
            """
    )

    @Option(help: "Number of funded accounts.") var accounts = 1_000_000
    @Option(help: "Number of debits to run.") var ops = 10_000_000
    @Option(help: "Concurrent tasks issuing debits.") var concurrency = 64
    @Option(help: "Shard actors (default: 8 per core in memory, 1 per core, at least 2, with --data).") var shards: Int?
    @Option(help: "Debits per call (1 = single-command calls).") var batch = 1_000
    @Option(help: "Durability: memory (no log, the default), strict (ack after fsync, group commit), interval (fsync every 10 ms) or none (log written, never waited for). All but memory need --data.")
    var durability = "memory"
    @Option(help: "Data directory for the log and snapshots (a fresh one per run is best: an existing one is recovered first).")
    var data: String?
    @Option(help: "Idempotency keys each shard remembers (at least half of them are kept); default: the engine's budget split over the shards.")
    var idempotencyKeys: Int?
    @Option(help: "Recent ledger entries each shard keeps in memory.")
    var recentEntries = EngineConfiguration.recentEntriesPerShardDefault
    @Option(help: "Seed of the random account choice.") var seed: UInt64 = 42
    @Option(help: "With --data: snapshot a shard after this many records.") var snapshotEvery = 5_000_000
    @Option(help: "With --durability strict: how long a log writer waits for more records before a sync (µs).")
    var commitDelayUs = LogConfiguration.commitDelayMicrosDefault
    @Option(help: "With --data: log writer threads (default: one per shard in strict mode, one per core otherwise).")
    var writerThreads: Int?
    @Flag(help: "With --data: snapshot every shard once while the load runs, and report how long it took and the longest shard turn (the stall).")
    var snapshotDuringLoad = false
    @Flag(help: "Run the invariant checker after the load (slow for many accounts).") var check = false
    @Option(help: "What each operation is: debit (a plain debit), charge (an AI call of a named model through the billing service: key lookup, catalog price, charge command) or charge-routing (the same with routing: usable keys, route, price, charge). charge and charge-routing need --batch 1; a tenth of the accounts get an OpenAI key first.")
    var operation = "debit"
    @Option(help: "Another operation to compare with: --ops is split into --rounds rounds, and each round runs its share of --operation, then the same number of this one, on the same engine. Alternating cancels the drift of a shared machine's speed; the report adds this operation's throughput and the ratio.")
    var versus: String?
    @Option(help: "With --versus: how many alternating rounds.") var rounds = 10
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        guard accounts > 0, ops > 0, concurrency > 0, batch > 0 else {
            throw ValidationError("--accounts, --ops, --concurrency and --batch must be positive")
        }
        guard recentEntries >= 1 else { throw ValidationError("--recent-entries must be at least 1") }
        if let idempotencyKeys, idempotencyKeys < 2 { throw ValidationError("--idempotency-keys must be at least 2") }
        if let shards, shards < 1 || shards > EngineConfiguration.shardCountMax {
            throw ValidationError("--shards must be 1...\(EngineConfiguration.shardCountMax)")
        }
        guard durability == "memory" || Durability(rawValue: durability) != nil else {
            throw ValidationError("--durability must be memory, strict, interval or none, not \(durability)")
        }
        guard commitDelayUs >= 0, commitDelayUs <= 100_000 else { throw ValidationError("--commit-delay-us must be 0...100000") }
        if let writerThreads, writerThreads < 1 { throw ValidationError("--writer-threads must be at least 1") }
        for (name, value) in [("--operation", operation), ("--versus", versus)] {
            guard let value else { continue }
            guard Self.operations.contains(value) else {
                throw ValidationError("\(name) must be debit, charge or charge-routing, not \(value)")
            }
            if value != "debit" && batch != 1 { throw ValidationError("\(name) \(value) runs single calls: use --batch 1") }
        }
        guard rounds >= 1, rounds <= ops else { throw ValidationError("--rounds must be 1...--ops") }
        if durability != "memory" && data == nil {
            throw ValidationError("--durability \(durability) writes a log: give it a directory with --data DIR")
        }
    }

    static let operations = ["debit", "charge", "charge-routing"]

    func run() async throws {
        let shards = shards ?? EngineConfiguration.shardCountDefault(durable: data != nil && durability != "memory")
        var configuration = EngineConfiguration(
            shardCount: shards, ledger: idempotencyKeys.map { LedgerConfiguration(idempotencyKeysMax: $0) },
            recentEntriesPerShard: recentEntries)
        let engine: CreditEngine
        if let data, let mode = Durability(rawValue: durability) {
            // Snapshots by count only, so a run's figures include any the load triggers.
            configuration.storage = StorageConfiguration(directory: data,
                                                         log: LogConfiguration(durability: mode, commitDelayMicros: commitDelayUs),
                                                         snapshotEveryRecords: snapshotEvery, snapshotEveryMillis: nil)
            configuration.storage?.writerThreads = writerThreads
            engine = try await CreditEngine.open(configuration: configuration)
        } else {
            engine = CreditEngine(configuration: configuration)
        }
        let residentBefore = residentBytes()
        let heapBefore = heapBytesInUse()
        let setupStart = monotonicNanos()
        try await fund(engine)
        let billing = operation == "debit" && (versus ?? "debit") == "debit" ? nil : try await billingWithKeys(engine)
        let setupSeconds = Double(monotonicNanos() - setupStart) / 1e9
        let residentAfter = residentBytes()
        let heapAfter = heapBytesInUse()

        await engine.resetTurnStatistics()
        let snapshotTask: Task<(Double, [SnapshotHeader]), any Error>? = snapshotDuringLoad && data != nil ? Task {
            let started = monotonicNanos()
            let headers = try await engine.snapshot()
            return (Double(monotonicNanos() - started) / 1e6, headers)
        } : nil
        var result = LoadResult()
        var versusResult = LoadResult()
        if let versus {
            // Alternating rounds: both operations see the same machine, in the same minutes.
            for round in 0 ..< rounds {
                let share = ops / rounds + (round < ops % rounds ? 1 : 0)
                result.add(await load(engine, billing: billing, operation: operation, ops: share, keySpace: UInt64(2 * round + 1)))
                versusResult.add(await load(engine, billing: billing, operation: versus, ops: share, keySpace: UInt64(2 * round + 2)))
            }
        } else {
            result = await load(engine, billing: billing, operation: operation, ops: ops, keySpace: 0)
        }
        let snapshot = try await snapshotTask?.value
        let bytesPerAccount = Double(heapAfter - heapBefore) / Double(accounts)
        let residentBytesPerAccount = Double(residentAfter - residentBefore) / Double(accounts)
        let statistics = await engine.statistics()
        let durabilityStatistics = await engine.durabilityStatistics()

        var problems: [String] = []
        if check { problems = await engine.invariantViolations() }

        var report = BenchReport(
            ops: result.succeeded, failed: result.failed, seconds: result.seconds,
            p50Micros: result.latency.percentile(0.50) / 1_000, p99Micros: result.latency.percentile(0.99) / 1_000,
            maxMicros: result.latency.maximum / 1_000, accounts: accounts, shards: shards, batch: batch,
            concurrency: concurrency, durability: durability, operation: operation, setupSeconds: setupSeconds,
            bytesPerAccount: bytesPerAccount, residentBytesPerAccount: residentBytesPerAccount, rememberedKeys: statistics.rememberedKeys,
            invariantsChecked: check, invariantViolations: problems.count, durabilityStatistics: durabilityStatistics,
            snapshotMillis: snapshot?.0, snapshotStateBytes: snapshot?.1.reduce(0) { $0 + Int($1.stateBytes) },
            snapshotCompressedBytes: snapshot?.1.reduce(0) { $0 + Int($1.frameBytes) })
        if let versus {
            report.versus = BenchReport.Versus(operation: versus, ops: versusResult.succeeded, failed: versusResult.failed,
                                               seconds: versusResult.seconds, rounds: rounds)
        }
        await engine.close()
        print(json ? report.json : report.text)
        for problem in problems.prefix(20) { printError(problem) }
        if result.failed > 0 || versusResult.failed > 0 || !problems.isEmpty { throw ExitCode.failure }
    }

    static let creditsPerAccount: Int64 = 1_000_000_000

    /// One tenant, one account, one never-expiring grant per account, in batches.
    private func fund(_ engine: CreditEngine) async throws {
        let chunk = 8_192
        var start = 0
        while start < accounts {
            let end = min(start + chunk, accounts)
            var commands: [Command] = []
            commands.reserveCapacity((end - start) * 3)
            for index in start ..< end {
                let tenant = TenantID(UInt64(index))
                let account = AccountID(tenant: tenant, number: 0)
                commands.append(Command(key: IdempotencyKey(high: 1, low: UInt64(index)), .openTenant(tenant, .individual)))
                commands.append(Command(key: IdempotencyKey(high: 2, low: UInt64(index)), .openAccount(account, .standard)))
                commands.append(Command(key: IdempotencyKey(high: 3, low: UInt64(index)),
                                        .grant(account, GrantTerms(kind: .promotional,
                                                                   amount: try .credits(Self.creditsPerAccount)))))
            }
            for outcome in await engine.execute(batch: commands) {
                if case .failure(let error) = outcome { throw ValidationError("setup failed: \(error)") }
            }
            start = end
        }
    }

    struct LoadResult {
        var succeeded = 0
        var failed = 0
        var seconds = 0.0
        var latency = LatencyHistogram()

        /// Adds a round's results: counts and times summed, latencies merged.
        mutating func add(_ other: LoadResult) {
            succeeded += other.succeeded
            failed += other.failed
            seconds += other.seconds
            latency.merge(other.latency)
        }
    }

    /// A billing service on the engine, with an OpenAI key registered on every tenth account.
    private func billingWithKeys(_ engine: CreditEngine) async throws -> Billing {
        let billing = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()),
                              payments: InMemoryPaymentGateway())
        var index = 0
        while index < accounts {
            try await billing.registerKey("sk-bench-\(index)-0000", provider: "OpenAI",
                                          for: AccountID(tenant: TenantID(UInt64(index)), number: 0),
                                          key: IdempotencyKey(high: 4, low: UInt64(index)))
            index += 10
        }
        return billing
    }

    /// Runs `ops` operations from `concurrency` tasks. Idempotency keys are unique per
    /// `keySpace` (a round of a comparison), and so is the sequence of accounts.
    private func load(_ engine: CreditEngine, billing: Billing?, operation: String, ops: Int, keySpace: UInt64) async -> LoadResult {
        let accounts = UInt64(self.accounts)
        let routing = operation == "charge-routing"
        let billing = operation == "debit" ? nil : billing
        let request = RoutingRequest(kind: .text, quality: .premium)
        let batch = self.batch
        let perTask = (ops + concurrency - 1) / concurrency
        let totalOps = ops
        let seed = self.seed &+ keySpace &* 0xD1B5_4A32_D192_ED03
        let keyHigh = keySpace << 32 | 0x1000
        let start = monotonicNanos()
        var total = LoadResult()
        await withTaskGroup(of: LoadResult.self) { group in
            for task in 0 ..< concurrency {
                let count = max(0, min(perTask, totalOps - task * perTask))
                group.addTask {
                    var random = SplitMix64(seed: seed &+ UInt64(task) &* 0x9E37_79B9_7F4A_7C15)
                    var result = LoadResult()
                    var sequence: UInt64 = 0
                    func nextDebit() -> Command {
                        sequence += 1
                        let tenant = TenantID(random.next() % accounts)
                        let amount = Millicredits(Int64(1 + random.next() % 1_000))
                        return Command(key: IdempotencyKey(high: keyHigh + UInt64(task), low: sequence),
                                       .debit(AccountID(tenant: tenant, number: 0), amount, scope: .unscoped))
                    }
                    var done = 0
                    if let billing {
                        // An AI call of 1,000 tokens: GPT-4o by name, or premium text by routing.
                        while done < count {
                            sequence += 1
                            let account = AccountID(tenant: TenantID(random.next() % accounts), number: 0)
                            let key = IdempotencyKey(high: keyHigh + UInt64(task), low: sequence)
                            let before = monotonicNanos()
                            let succeeded: Bool
                            do {
                                if routing {
                                    _ = try await billing.charge(account, routing: request, usage: .tokens(input: 500, output: 500), key: key)
                                } else {
                                    _ = try await billing.charge(account, model: "GPT-4o", usage: .tokens(input: 500, output: 500), key: key)
                                }
                                succeeded = true
                            } catch {
                                succeeded = false
                            }
                            result.latency.record(monotonicNanos() - before)
                            if succeeded { result.succeeded += 1 } else { result.failed += 1 }
                            done += 1
                        }
                    } else if batch == 1 {
                        while done < count {
                            let command = nextDebit()
                            let before = monotonicNanos()
                            let outcome = await engine.execute(command)
                            result.latency.record(monotonicNanos() - before)
                            if case .success = outcome { result.succeeded += 1 } else { result.failed += 1 }
                            done += 1
                        }
                    } else {
                        var commands: [Command] = []
                        commands.reserveCapacity(batch)
                        while done < count {
                            commands.removeAll(keepingCapacity: true)
                            for _ in 0 ..< min(batch, count - done) { commands.append(nextDebit()) }
                            let before = monotonicNanos()
                            let outcomes = await engine.execute(batch: commands)
                            result.latency.record(monotonicNanos() - before)
                            for outcome in outcomes {
                                if case .success = outcome { result.succeeded += 1 } else { result.failed += 1 }
                            }
                            done += commands.count
                        }
                    }
                    return result
                }
            }
            for await result in group {
                total.succeeded += result.succeeded
                total.failed += result.failed
                total.latency.merge(result.latency)
            }
        }
        total.seconds = Double(monotonicNanos() - start) / 1e9
        return total
    }
}

struct BenchReport {
    var ops: Int
    var failed: Int
    var seconds: Double
    var p50Micros: Double
    var p99Micros: Double
    var maxMicros: Double
    var accounts: Int
    var shards: Int
    var batch: Int
    var concurrency: Int
    var durability: String
    var operation: String
    var setupSeconds: Double
    var bytesPerAccount: Double
    var residentBytesPerAccount: Double
    var rememberedKeys: Int
    var invariantsChecked: Bool
    var invariantViolations: Int
    var durabilityStatistics: DurabilityStatistics
    var snapshotMillis: Double?
    var snapshotStateBytes: Int?
    var snapshotCompressedBytes: Int?
    /// With `--versus`: the other operation's figures.
    var versus: Versus?

    struct Versus {
        var operation: String
        var ops: Int
        var failed: Int
        var seconds: Double
        var rounds: Int

        var opsPerSecond: Double { Double(ops) / seconds }
    }

    var opsPerSecond: Double { Double(ops) / seconds }

    /// --operation's throughput as a percentage of --versus's.
    var ratioPercent: Double? { versus.map { opsPerSecond / $0.opsPerSecond * 100 } }

    var json: String {
        "{\"ops\": \(ops), \"failed\": \(failed), \"seconds\": \(fixed(seconds, 3)), "
            + "\"ops_per_sec\": \(fixed(opsPerSecond, 0)), \"p50_us\": \(fixed(p50Micros, 2)), "
            + "\"p99_us\": \(fixed(p99Micros, 2)), \"max_us\": \(fixed(maxMicros, 2)), "
            + "\"accounts\": \(accounts), \"shards\": \(shards), \"batch\": \(batch), "
            + "\"concurrency\": \(concurrency), \"durability\": \"\(durability)\", \"operation\": \"\(operation)\", "
            + "\"setup_seconds\": \(fixed(setupSeconds, 3)), \"bytes_per_account\": \(fixed(bytesPerAccount, 1)), "
            + "\"resident_bytes_per_account\": \(fixed(residentBytesPerAccount, 1)), "
            + "\"remembered_keys\": \(rememberedKeys), \"invariants_checked\": \(invariantsChecked), "
            + "\"invariant_violations\": \(invariantViolations), \"fsyncs\": \(durabilityStatistics.syncs), "
            + "\"records_per_fsync\": \(fixed(durabilityStatistics.recordsPerSync, 1)), "
            + "\"snapshots\": \(durabilityStatistics.snapshots), "
            + "\"longest_shard_turn_us\": \(fixed(Double(durabilityStatistics.longestTurnNanos) / 1_000, 1)), "
            + "\"longest_shard_turn_cpu_us\": \(fixed(Double(durabilityStatistics.longestTurnCPUNanos) / 1_000, 1))"
            + (snapshotMillis.map { ", \"snapshot_ms\": \(fixed($0, 1))" } ?? "")
            + (snapshotStateBytes.map { ", \"snapshot_state_bytes\": \($0)" } ?? "")
            + (snapshotCompressedBytes.map { ", \"snapshot_compressed_bytes\": \($0)" } ?? "")
            + (snapshotStateBytes.flatMap { state in snapshotCompressedBytes.map { ", \"snapshot_lz4_ratio\": \(fixed(Double(state) / Double(max(1, $0)), 2))" } } ?? "")
            + (versus.map { ", \"versus\": \"\($0.operation)\", \"versus_ops\": \($0.ops), \"versus_failed\": \($0.failed), "
                + "\"versus_ops_per_sec\": \(fixed($0.opsPerSecond, 0)), \"rounds\": \($0.rounds), "
                + "\"ratio_pct\": \(fixed(ratioPercent ?? 0, 1))" } ?? "")
            + "}"
    }

    var text: String {
        """
        \(ops) \(operation) operations in \(fixed(seconds, 3)) s: \(fixed(opsPerSecond / 1e6, 2)) M/s \
        (failed \(failed))\(versus.map { "\n\($0.ops) \($0.operation) operations in \(fixed($0.seconds, 3)) s: \(fixed($0.opsPerSecond / 1e6, 2)) M/s (failed \($0.failed)); \(operation) runs at \(fixed(ratioPercent ?? 0, 1)) % of \($0.operation), over \($0.rounds) alternating rounds" } ?? "")
        latency per call: p50 \(fixed(p50Micros, 1)) µs, p99 \(fixed(p99Micros, 1)) µs, max \(fixed(maxMicros, 1)) µs
        \(accounts) accounts, \(shards) shards, batch \(batch), concurrency \(concurrency), durability \(durability)
        setup \(fixed(setupSeconds, 2)) s, \(fixed(bytesPerAccount, 1)) bytes per account in use \
        (\(fixed(residentBytesPerAccount, 1)) resident), incl. \(rememberedKeys) remembered keys\(invariantsChecked ? ", invariants: \(invariantViolations) violations" : "")
        """
    }
}
