import ArgumentParser
import CreditBilling
import CreditEngine
import CreditPricing
#if canImport(Glibc)
import Glibc
#endif

/// The load benchmark: scenarios of debits, charges and holds over pre-funded accounts.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load benchmark: debits, charges and holds over pre-funded accounts, in scenarios.",
        discussion: """
            Opens --accounts funded accounts (individuals; for --scenario enterprise, members of \
            one organisation), then runs --ops operations (or for --duration seconds) from \
            --concurrency tasks. Scenarios: uniform (random accounts), hot (Zipf-skewed accounts, \
            --zipf-s), enterprise (members debiting under member limits and department \
            allocations; their refusals are counted, not failures), reserve-settle (a reserve \
            then its settle: one operation), mixed (debits, AI calls charged through routing, \
            purchases and balance reads; single calls). With --batch 1 each command is its own \
            call; with --batch B each task sends batches of B commands through the batch entry \
            point, and the latency reported is that of a whole batch call. Latencies go into an \
            HDR histogram (3 significant digits). On a terminal a progress line shows the \
            throughput and the percentiles so far. --operation charge or charge-routing runs AI \
            calls through the billing service instead of debits; --versus OP runs a second \
            operation in alternating rounds on the same engine and reports the ratio.
            """
    )

    @Option(help: "Load scenario: uniform, hot, enterprise, reserve-settle or mixed.") var scenario = Scenario.uniform
    @Option(help: "Number of funded accounts (enterprise: members of the organisation), 1...\(OptionLimits.accountsMax).")
    var accounts = 1_000_000
    @Option(help: "Number of operations to run, 1...\(OptionLimits.opsMax) (ignored with --duration).") var ops = 10_000_000
    @Option(help: "Run for this many seconds instead of --ops operations, \(OptionLimits.durationSecondsMin)...\(OptionLimits.durationSecondsMax).")
    var duration: Double?
    @Option(help: "Concurrent tasks issuing operations, 1...\(OptionLimits.concurrencyTasksMax).") var concurrency = 64
    @Option(help: "Shard actors, 1...\(EngineConfiguration.shardCountMax) (default: 8 per core in memory, 1 per core, at least 2, with --data).")
    var shards: Int?
    @Option(help: "Commands per call, 1...\(OptionLimits.batchCommandsMax) (1 = single-command calls). Default: 1,000; 1 for mixed and the charge operations.")
    var batch: Int?
    @Option(help: "Exponent of the hot scenario's Zipf law, \(OptionLimits.zipfExponentMin)...\(OptionLimits.zipfExponentMax), not 1.") var zipfS = 1.1
    @Option(help: "Durability: memory (no log, the default), strict (ack after fsync, group commit), interval (fsync every 10 ms) or none (log written, never waited for). All but memory need --data.")
    var durability = "memory"
    @OptionGroup var keys: DataKeyOptions
    @Option(help: "Data directory for the log and snapshots (a fresh one per run is best: an existing one is recovered first).")
    var data: String?
    @Option(help: "PEM file of the Ed25519 key that signs the audit checkpoints (with --data); never inside --data.")
    var auditKey: String?
    @Option(help: "Idempotency keys each shard remembers (at least half of them are kept), \(OptionLimits.idempotencyKeysPerShardMin)...\(OptionLimits.idempotencyKeysPerShardMax); default: the engine's budget split over the shards.")
    var idempotencyKeys: Int?
    @Option(help: "Recent ledger entries each shard keeps in memory, 1...\(OptionLimits.recentEntriesPerShardMax).")
    var recentEntries = EngineConfiguration.recentEntriesPerShardDefault
    @Option(help: "Seed of the random account choice.") var seed: UInt64 = 42
    @Option(help: "With --data: snapshot a shard after this many records, 1...\(OptionLimits.snapshotEveryRecordsMax).")
    var snapshotEvery = 5_000_000
    @Option(help: "With --durability strict: how long a log writer waits for more records before a sync, 0...\(OptionLimits.commitDelayMicrosMax) µs.")
    var commitDelayUs = LogConfiguration.commitDelayMicrosDefault
    @Option(help: "With --data: log writer threads, 1...\(OptionLimits.writerThreadsMax) (default: one per shard in strict mode, one per core otherwise).")
    var writerThreads: Int?
    @Flag(help: "With --data: snapshot every shard once while the load runs, and report how long it took and the longest shard turn (the stall).")
    var snapshotDuringLoad = false
    @Flag(help: "Run the invariant checker after the load (slow for many accounts).") var check = false
    @Option(help: "What each operation of the uniform and hot scenarios is: debit (a plain debit), charge (an AI call of a named model through the billing service: key lookup, catalog price, charge command) or charge-routing (the same with routing: usable keys, route, price, charge). The charges run single calls; a tenth of the accounts get an OpenAI key first.")
    var operation = "debit"
    @Option(help: "Another operation to compare with: the load is split into --rounds rounds, and each round runs its share of --operation, then the same amount of this one, on the same engine. Alternating cancels the drift of a shared machine's speed; the report adds this operation's throughput and the ratio.")
    var versus: String?
    @Option(help: "With --versus: how many alternating rounds, 1...\(OptionLimits.roundsMax) (at most --ops).") var rounds = 10
    @Flag(help: "Governance on: every tenant gets a metering-service client (which sends the debits), rate limits high enough never to refuse (every bucket is still kept), and the anomaly guard in freeze mode (docs/security.md); the report counts the guard's alerts. Without it, debits come from the system principal and the guard runs in its default alert mode.")
    var governance = false
    @Flag(help: "Print one JSON object instead of text.") var json = false

    /// The batch size in effect.
    var callBatch: Int { batch ?? (scenario.singleCallsOnly || chargesCalls ? 1 : 1_000) }

    /// Whether --operation or --versus charges AI calls through the billing service.
    var chargesCalls: Bool { operation != "debit" || (versus ?? "debit") != "debit" }

    func validate() throws {
        typealias Limits = OptionLimits
        try checkRange("--accounts", accounts, in: 1 ... Limits.accountsMax, "accounts")
        try checkRange("--ops", ops, in: 1 ... Limits.opsMax, "operations")
        if let duration { try checkRange("--duration", duration, in: Limits.durationSecondsMin ... Limits.durationSecondsMax, "seconds") }
        try checkRange("--concurrency", concurrency, in: 1 ... Limits.concurrencyTasksMax, "tasks")
        if let shards { try checkRange("--shards", shards, in: 1 ... EngineConfiguration.shardCountMax, "shards") }
        if let batch { try checkRange("--batch", batch, in: 1 ... Limits.batchCommandsMax, "commands") }
        try checkRange("--zipf-s", zipfS, in: Limits.zipfExponentMin ... Limits.zipfExponentMax, "(the exponent)")
        guard zipfS != 1 else { throw ValidationError("--zipf-s must not be 1") }
        if let idempotencyKeys {
            try checkRange("--idempotency-keys", idempotencyKeys,
                           in: Limits.idempotencyKeysPerShardMin ... Limits.idempotencyKeysPerShardMax, "keys per shard")
        }
        try checkRange("--recent-entries", recentEntries, in: 1 ... Limits.recentEntriesPerShardMax, "entries per shard")
        try checkRange("--snapshot-every", snapshotEvery, in: 1 ... Limits.snapshotEveryRecordsMax, "records")
        try checkRange("--commit-delay-us", commitDelayUs, in: 0 ... Limits.commitDelayMicrosMax, "µs")
        if let writerThreads { try checkRange("--writer-threads", writerThreads, in: 1 ... Limits.writerThreadsMax, "threads") }
        try checkRange("--rounds", rounds, in: 1 ... min(Limits.roundsMax, ops), "rounds (and at most --ops)")
        if let data { try checkPath("--data", data) }
        guard durability == "memory" || Durability(rawValue: durability) != nil else {
            throw ValidationError("--durability must be memory, strict, interval or none, not \(durability)")
        }
        if scenario.singleCallsOnly, callBatch != 1 { throw ValidationError("--scenario \(scenario.rawValue) runs single calls: use --batch 1") }
        for (name, value) in [("--operation", operation), ("--versus", versus)] {
            guard let value else { continue }
            guard Self.operations.contains(value) else {
                throw ValidationError("\(name) must be debit, charge or charge-routing, not \(value)")
            }
            if value != "debit" && callBatch != 1 { throw ValidationError("\(name) \(value) runs single calls: use --batch 1") }
            if value != "debit" && scenario != .uniform && scenario != .hot {
                throw ValidationError("\(name) \(value) is for the uniform and hot scenarios")
            }
        }
        _ = try loadAuditKey(auditKey, data: data)
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
            var log = LogConfiguration(durability: mode, commitDelayMicros: commitDelayUs)
            log.auditSigningKey = try loadAuditKey(auditKey, data: data)
            configuration.storage = StorageConfiguration(directory: data, log: log,
                                                         snapshotEveryRecords: snapshotEvery, snapshotEveryMillis: nil)
            configuration.storage?.writerThreads = writerThreads
            configuration.storage?.encryption = try keys.ring(dataDirectory: data)
            engine = try await CreditEngine.open(configuration: configuration)
        } else {
            engine = CreditEngine(configuration: configuration)
        }
        let residentBefore = residentBytes()
        let heapBefore = heapBytesInUse()
        let setupStart = monotonicNanos()
        if scenario == .enterprise {
            try await EnterpriseSetup.open(engine, members: accounts)
        } else {
            try await fund(engine)
        }
        let billing = scenario == .mixed || chargesCalls ? try await billingWithKeys(engine) : nil
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
                let share = Share(ops: ops / rounds + (round < ops % rounds ? 1 : 0), seconds: duration.map { $0 / Double(2 * rounds) })
                result.add(await load(engine, billing: billing, operation: operation, share: share, keySpace: UInt64(2 * round + 1)))
                versusResult.add(await load(engine, billing: billing, operation: versus, share: share, keySpace: UInt64(2 * round + 2)))
            }
        } else {
            result = await load(engine, billing: billing, operation: operation, share: Share(ops: ops, seconds: duration), keySpace: 0)
        }
        let snapshot = try await snapshotTask?.value
        let bytesPerAccount = Double(heapAfter - heapBefore) / Double(accounts)
        let residentBytesPerAccount = Double(residentAfter - residentBefore) / Double(accounts)
        let statistics = await engine.statistics()
        let durabilityStatistics = await engine.durabilityStatistics()
        let anomalyAlerts = await engine.takeAnomalyAlerts().count

        var problems: [String] = []
        if check { problems = await engine.invariantViolations() }

        let latency = result.tally.latency
        func micros(_ percentile: Double) -> Double { Double(latency.valueAtPercentile(percentile)) / 1_000 }
        var report = BenchReport(
            scenario: scenario.rawValue, ops: result.tally.processed, refused: result.tally.refused, failed: result.tally.failed,
            seconds: result.seconds, p50Micros: micros(50), p99Micros: micros(99), p999Micros: micros(99.9),
            maxMicros: Double(latency.max) / 1_000, accounts: accounts, shards: shards, batch: callBatch,
            concurrency: concurrency, durability: durability, operation: operation, setupSeconds: setupSeconds,
            bytesPerAccount: bytesPerAccount, residentBytesPerAccount: residentBytesPerAccount, rememberedKeys: statistics.rememberedKeys,
            invariantsChecked: check, invariantViolations: problems.count, durabilityStatistics: durabilityStatistics,
            snapshotMillis: snapshot?.0, snapshotStateBytes: snapshot?.1.reduce(0) { $0 + Int($1.stateBytes) },
            snapshotCompressedBytes: snapshot?.1.reduce(0) { $0 + Int($1.frameBytes) },
            governance: governance, anomalyAlerts: anomalyAlerts)
        if let versus {
            report.versus = BenchReport.Versus(operation: versus, ops: versusResult.tally.processed, failed: versusResult.tally.failed,
                                               seconds: versusResult.seconds, rounds: rounds)
        }
        await engine.close()
        print(json ? report.json : report.text)
        for problem in problems.prefix(20) { printError(problem) }
        if result.tally.failed > 0 || versusResult.tally.failed > 0 || !problems.isEmpty { throw ExitCode.failure }
    }

    static let creditsPerAccount: Int64 = 1_000_000_000
    /// The client that sends the debits under --governance.
    static let meteringClient = ClientID(1)
    /// Limits far above what the bench reaches: every debit passes through the buckets.
    static let benchLimits = RateLimits(accountRequestsPerSecond: RateLimits.requestsPerSecondMax,
                                        accountCreditsPerMinute: Millicredits(RateLimits.creditsPerMinuteMax),
                                        tenantRequestsPerSecond: RateLimits.requestsPerSecondMax,
                                        tenantCreditsPerMinute: Millicredits(RateLimits.creditsPerMinuteMax))

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
                if governance {
                    commands.append(Command(key: IdempotencyKey(high: 7, low: UInt64(index)),
                                            .grantRole(Self.meteringClient, .meteringService(tenant))))
                    commands.append(Command(key: IdempotencyKey(high: 8, low: UInt64(index)), .setRateLimits(tenant, Self.benchLimits)))
                    commands.append(Command(key: IdempotencyKey(high: 9, low: UInt64(index)), .setAnomalyMode(tenant, .freeze)))
                }
            }
            for outcome in await engine.execute(batch: commands) {
                if case .failure(let error) = outcome { throw ValidationError("setup failed: \(error)") }
            }
            start = end
        }
    }

    /// How much of the load one call of `load` runs: a number of operations, or seconds.
    struct Share {
        var ops: Int
        var seconds: Double?
    }

    struct LoadResult {
        var tally = LoadMeter.Tally()
        var seconds = 0.0

        /// Adds a round's results: counts and times summed, latencies merged.
        mutating func add(_ other: LoadResult) {
            tally.add(other.tally)
            seconds += other.seconds
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

    /// Runs a share of the load from `concurrency` tasks. Idempotency keys are unique per
    /// `keySpace` (a round of a comparison), and so is the sequence of accounts.
    private func load(_ engine: CreditEngine, billing: Billing?, operation: String, share: Share, keySpace: UInt64) async -> LoadResult {
        let accounts = UInt64(self.accounts)
        let scenario = self.scenario
        let zipf = scenario == .hot ? ZipfSampler(count: accounts, exponent: zipfS) : nil
        let batch = callBatch
        let perTask = (share.ops + concurrency - 1) / concurrency
        let totalOps = share.ops
        let seed = self.seed &+ keySpace &* 0xD1B5_4A32_D192_ED03
        let meter = LoadMeter(live: ProgressLine.enabled)
        let start = monotonicNanos()
        let deadline = share.seconds.map { start + UInt64($0 * 1e9) }
        let progress = ProgressLine.enabled
            ? Task { await ProgressLine.run(meter, label: "\(scenario.rawValue) \(operation)", started: start) } : nil
        await withTaskGroup(of: Void.self) { group in
            for task in 0 ..< concurrency {
                let count = deadline == nil ? max(0, min(perTask, totalOps - task * perTask)) : Int.max
                group.addTask {
                    var source = OperationSource(scenario: scenario, accounts: accounts, zipf: zipf,
                                                 principal: governance ? .client(Self.meteringClient) : .system,
                                                 keyHigh: keySpace << 32 | 0x1000 + UInt64(task),
                                                 random: SplitMix64(seed: seed &+ UInt64(task) &* 0x9E37_79B9_7F4A_7C15))
                    var runner = TaskRunner(engine: engine, billing: billing, operation: operation, batch: batch, meter: meter)
                    var done = 0
                    var now = monotonicNanos()
                    while done < count, deadline.map({ now < $0 }) ?? true {
                        done += await runner.step(&source, upTo: count - done)
                        now = runner.lastFinished
                    }
                    runner.finish()
                }
            }
        }
        let seconds = Double(monotonicNanos() - start) / 1e9
        progress?.cancel()
        await progress?.value
        return LoadResult(tally: meter.total, seconds: seconds)
    }
}

/// One task's loop body: sends one operation (or one batch) of the scenario, records its
/// latency and outcome, and hands its tally to the meter now and then.
struct TaskRunner {
    let engine: CreditEngine
    let billing: Billing?
    let operation: String
    let batch: Int
    let meter: LoadMeter
    var tally = LoadMeter.Tally()
    var lastFlush = monotonicNanos()
    var lastFinished: UInt64 = 0
    var commands: [Command] = []

    init(engine: CreditEngine, billing: Billing?, operation: String, batch: Int, meter: LoadMeter) {
        self.engine = engine
        self.billing = billing
        self.operation = operation
        self.batch = batch
        self.meter = meter
        if operation == "debit" && batch > 1 { commands.reserveCapacity(batch) }
    }

    /// Runs one operation or a batch of at most `limit`; returns how many operations it was.
    mutating func step(_ source: inout OperationSource, upTo limit: Int) async -> Int {
        let before = monotonicNanos()
        let size = min(batch, limit)
        let count: Int
        switch source.scenario {
        case .mixed: count = await mixed(&source)
        case .reserveSettle: count = size == 1 ? await reserveSettle(&source) : await reserveSettleBatch(&source, size)
        default:
            if operation != "debit", let billing {
                await charge(&source, billing, routing: operation == "charge-routing")
                count = 1
            } else if size == 1 {
                note(await engine.execute(source.debit()), source.scenario)
                count = 1
            } else {
                commands.removeAll(keepingCapacity: true)
                for _ in 0 ..< size { commands.append(source.debit()) }
                for outcome in await engine.execute(batch: commands) { note(outcome, source.scenario) }
                count = size
            }
        }
        lastFinished = monotonicNanos()
        _ = tally.latency.record(lastFinished - before)
        if lastFinished - lastFlush >= meter.flushNanos {
            meter.flush(&tally)
            lastFlush = lastFinished
        }
        return count
    }

    mutating func finish() { meter.flush(&tally) }

    private mutating func note(_ outcome: Outcome, _ scenario: Scenario) {
        switch outcome {
        case .success: tally.succeeded += 1
        case .failure(let error) where scenario == .enterprise && isLimitRefusal(error): tally.refused += 1
        case .failure: tally.failed += 1
        }
    }

    private mutating func note(succeeded: Bool) {
        if succeeded { tally.succeeded += 1 } else { tally.failed += 1 }
    }

    /// An AI call of 1,000 tokens: GPT-4o by name, or premium text by routing.
    private mutating func charge(_ source: inout OperationSource, _ billing: Billing, routing: Bool) async {
        let account = source.account()
        let key = source.key()
        do {
            if routing {
                _ = try await billing.charge(account, routing: Self.request, usage: .tokens(input: 500, output: 500), key: key)
            } else {
                _ = try await billing.charge(account, model: "GPT-4o", usage: .tokens(input: 500, output: 500), key: key)
            }
            note(succeeded: true)
        } catch {
            note(succeeded: false)
        }
    }

    static let request = RoutingRequest(kind: .text, quality: .premium)

    /// A streaming call: reserve 1 credit (the estimate), then settle what it cost.
    private mutating func reserveSettle(_ source: inout OperationSource) async -> Int {
        let account = source.account()
        let reserved = await engine.execute(Command(key: source.key(), .reserve(account, Millicredits(1_000), timeoutMillis: 60_000,
                                                                              scope: .unscoped)))
        guard case .success(let receipt) = reserved, let hold = receipt.hold else {
            note(reserved, source.scenario)
            return 1
        }
        note(await engine.execute(Command(key: source.key(), .settle(hold, actual: source.amount()))), source.scenario)
        return 1
    }

    /// `size` streaming calls: a batch of reserves, then a batch of their settles.
    private mutating func reserveSettleBatch(_ source: inout OperationSource, _ size: Int) async -> Int {
        commands.removeAll(keepingCapacity: true)
        for _ in 0 ..< size {
            commands.append(Command(key: source.key(), .reserve(source.account(), Millicredits(1_000), timeoutMillis: 60_000,
                                                                 scope: .unscoped)))
        }
        let reserved = await engine.execute(batch: commands)
        commands.removeAll(keepingCapacity: true)
        for outcome in reserved {
            if case .success(let receipt) = outcome, let hold = receipt.hold {
                commands.append(Command(key: source.key(), .settle(hold, actual: source.amount())))
            } else {
                note(outcome, source.scenario)
            }
        }
        for outcome in await engine.execute(batch: commands) { note(outcome, source.scenario) }
        return size
    }

    /// 70 % debits, 15 % AI calls charged through routing, 10 % balance reads, 5 %
    /// purchases of 1,000 credits through the payment gateway.
    private mutating func mixed(_ source: inout OperationSource) async -> Int {
        guard let billing else { preconditionFailure("the mixed scenario needs the billing service") }
        let roll = source.percent()
        switch roll {
        case 0 ..< 70:
            note(await engine.execute(source.debit()), source.scenario)
        case 70 ..< 85:
            await charge(&source, billing, routing: true)
        case 85 ..< 95:
            note(succeeded: await engine.balance(of: source.account()) != nil)
        default:
            let account = source.account()
            let key = source.key()
            let purchase = PurchaseID("bench/\(key.high)/\(key.low)")
            do {
                _ = try await billing.purchase(1_000, for: account, purchase: purchase)
                note(succeeded: true)
            } catch {
                note(succeeded: false)
            }
        }
        return 1
    }
}

struct BenchReport {
    var scenario: String
    /// Operations processed: succeeded, refused by a limit (enterprise) or failed.
    var ops: Int
    var refused: Int
    var failed: Int
    var seconds: Double
    var p50Micros: Double
    var p99Micros: Double
    var p999Micros: Double
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
    /// Whether --governance was on, and the anomaly guard's alerts during the run.
    var governance = false
    var anomalyAlerts = 0
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
        "{\"scenario\": \"\(scenario)\", \"ops\": \(ops), \"refused\": \(refused), \"failed\": \(failed), "
            + "\"seconds\": \(fixed(seconds, 3)), "
            + "\"ops_per_sec\": \(fixed(opsPerSecond, 0)), \"p50_us\": \(fixed(p50Micros, 2)), "
            + "\"p99_us\": \(fixed(p99Micros, 2)), \"p999_us\": \(fixed(p999Micros, 2)), \"max_us\": \(fixed(maxMicros, 2)), "
            + "\"accounts\": \(accounts), \"shards\": \(shards), \"batch\": \(batch), "
            + "\"concurrency\": \(concurrency), \"durability\": \"\(durability)\", \"operation\": \"\(operation)\", "
            + "\"setup_seconds\": \(fixed(setupSeconds, 3)), \"bytes_per_account\": \(fixed(bytesPerAccount, 1)), "
            + "\"resident_bytes_per_account\": \(fixed(residentBytesPerAccount, 1)), "
            + "\"remembered_keys\": \(rememberedKeys), \"invariants_checked\": \(invariantsChecked), "
            + "\"invariant_violations\": \(invariantViolations), \"fsyncs\": \(durabilityStatistics.syncs), "
            + "\"records_per_fsync\": \(fixed(durabilityStatistics.recordsPerSync, 1)), "
            + "\"snapshots\": \(durabilityStatistics.snapshots), \"snapshot_stalls\": \(durabilityStatistics.snapshotStalls), "
            + "\"snapshot_stall_max_us\": \(fixed(Double(durabilityStatistics.longestTurnDuringSnapshotNanos) / 1_000, 1)), "
            + "\"longest_shard_turn_us\": \(fixed(Double(durabilityStatistics.longestTurnNanos) / 1_000, 1)), "
            + "\"longest_shard_turn_cpu_us\": \(fixed(Double(durabilityStatistics.longestTurnCPUNanos) / 1_000, 1)), "
            + "\"governance\": \(governance), \"anomaly_alerts\": \(anomalyAlerts)"
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
        \(scenario): \(ops) \(operation) operations in \(fixed(seconds, 3)) s: \(fixed(opsPerSecond / 1e6, 3)) M/s \
        (refused by limits \(refused), failed \(failed))\(versus.map { "\n\($0.ops) \($0.operation) operations in \(fixed($0.seconds, 3)) s: \(fixed($0.opsPerSecond / 1e6, 2)) M/s (failed \($0.failed)); \(operation) runs at \(fixed(ratioPercent ?? 0, 1)) % of \($0.operation), over \($0.rounds) alternating rounds" } ?? "")
        latency per call: p50 \(fixed(p50Micros, 1)) µs, p99 \(fixed(p99Micros, 1)) µs, p99.9 \(fixed(p999Micros, 1)) µs, max \(fixed(maxMicros, 1)) µs
        \(accounts) accounts, \(shards) shards, batch \(batch), concurrency \(concurrency), durability \(durability)
        setup \(fixed(setupSeconds, 2)) s, \(fixed(bytesPerAccount, 1)) bytes per account in use \
        (\(fixed(residentBytesPerAccount, 1)) resident), incl. \(rememberedKeys) remembered keys\(invariantsChecked ? ", invariants: \(invariantViolations) violations" : "")
        governance \(governance ? "on" : "off"), anomaly alerts \(anomalyAlerts)
        """
    }
}
