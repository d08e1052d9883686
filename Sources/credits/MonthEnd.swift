import ArgumentParser
import CreditEngine
import CreditPricing
import CreditScheduler
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Month-end renewal: set up subscribers, run the scheduler over a cycle end (meant to be
/// killed in crash drills), and benchmark it against concurrent debits.
struct MonthEnd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "month-end",
        abstract: "Month-end renewal of many subscriptions: set-up, a run (for crash drills), a benchmark.",
        subcommands: [Setup.self, Run.self, Bench.self]
    )

    /// The cycle's anchor every subscriber shares: 31 January 2026, 00:00 UTC.
    static let anchor = CalendarMonths.date(2026, 1, 31)
    /// The first cycle's end: 28 February 2026.
    static let firstEnd = CalendarMonths.adding(1, to: anchor)

    /// Commands that open subscriber `index` (tenant `index`, account 0) on a Pro-like plan and
    /// spend part of its allocation (index % 4,000 credits, so rollovers differ). Keys derive
    /// from the index: running them again is a retry.
    static func subscriber(_ index: Int, priceCents: Int64) -> [Command] {
        let tenant = TenantID(UInt64(index))
        let account = AccountID(tenant: tenant, number: 0)
        let spent = Int64(index % 4_000)
        var commands = [
            Command(key: IdempotencyKey(deriving: "month-end/open-tenant/\(index)"), .openTenant(tenant, .individual)),
            Command(key: IdempotencyKey(deriving: "month-end/open-account/\(index)"), .openAccount(account, .standard)),
            Command(key: IdempotencyKey(deriving: "month-end/subscribe/\(index)"),
                    .subscribe(account, SubscriptionTerms(plan: "Pro", allocation: Millicredits(5_000 * Millicredits.perCredit),
                                                          priceCents: priceCents))),
        ]
        if spent > 0 {
            commands.append(Command(key: IdempotencyKey(deriving: "month-end/spend/\(index)"),
                                    .debit(account, Millicredits(spent * Millicredits.perCredit), scope: .unscoped)))
        }
        return commands
    }

    /// Runs the scheduler's passes until one applies nothing; the passes' reports summed.
    static func runUntilDone(_ scheduler: Scheduler) async -> SchedulerReport {
        var total = SchedulerReport()
        while true {
            let report = await scheduler.runDue()
            total.renewed += report.renewed
            total.lapsed += report.lapsed
            total.expired += report.expired
            total.forfeited += report.forfeited
            total.refused += report.refused
            total.payments += report.payments
            total.turns += report.turns
            total.turnTimings += report.turnTimings
            if report.renewed + report.lapsed + report.expired + report.forfeited + report.refused == 0 { return total }
        }
    }

    /// Opens `count` subscribers in batches (skipping what a killed earlier set-up did).
    static func setUp(_ engine: CreditEngine, accounts count: Int, priceCents: Int64) async throws {
        let chunk = 2_048
        var start = 0
        while start < count {
            let end = min(start + chunk, count)
            let commands = (start ..< end).flatMap { subscriber($0, priceCents: priceCents) }
            for outcome in await engine.execute(batch: commands) {
                switch outcome {
                case .success, .failure(.tenantExists), .failure(.accountExists), .failure(.alreadySubscribed): break
                case .failure(let error): throw ValidationError("set-up failed: \(error)")
                }
            }
            start = end
        }
    }

    struct Setup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Opens --accounts subscribers (anchored on 31 January 2026) in --data.")

        @OptionGroup var storage: StorageOptions
        @Option(help: "Subscribers, 1...\(OptionLimits.accountsMax).") var accounts = 100_000
        @Option(help: "Price of each renewal in cents, 0...\(OptionLimits.priceCentsMax) (0 renews without a payment).")
        var priceCents: Int64 = 14_999
        @Flag(help: "End with a snapshot of every shard, so each run starts from it instead of replaying the set-up's log.")
        var snapshot = false

        func validate() throws {
            try checkRange("--accounts", accounts, in: 1 ... OptionLimits.accountsMax, "accounts")
            try checkRange("--price-cents", priceCents, in: 0 ... OptionLimits.priceCentsMax, "cents")
        }

        func run() async throws {
            let engine = try await storage.open(clock: ManualClock(MonthEnd.anchor))
            try await MonthEnd.setUp(engine, accounts: accounts, priceCents: priceCents)
            if snapshot { try await engine.snapshot() }
            await engine.close()
            printError("month-end: \(accounts) subscribers ready in \(storage.data)")
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Runs the scheduler in --data at the first cycle end (28 February 2026) until nothing is due.",
            discussion: """
                The clock stands still at the cycle end, so two runs over the same set-up reach \
                the same state whatever happens in between (a run killed and started again \
                included). Prints one JSON line at the end: what was renewed, how long it took, \
                and the state digest of every shard. Payments go to a gateway in memory. \
                On stderr: "month-end: running" once the directory is open, then \
                "month-end: renewed N" every --progress-every renewals of this run that are \
                durable (a crash drill kills it between them).
                """
        )

        @OptionGroup var storage: StorageOptions
        @Option(help: "Renewals of this run between progress lines on stderr, 1...\(OptionLimits.accountsMax).") var progressEvery = 1_000
        @Option(help: "Payments the scheduler makes at once, 1...\(OptionLimits.paymentsInParallelMax) (see month-end bench).")
        var paymentsInParallel = 1
        @Option(help: "Take a shard snapshot after this many records, 1...\(OptionLimits.snapshotEveryRecordsMax) (the default is the engine's; small values put snapshots in a drill's way).")
        var snapshotEvery = 5_000_000

        func validate() throws {
            try checkRange("--progress-every", progressEvery, in: 1 ... OptionLimits.accountsMax, "renewals")
            try checkRange("--payments-in-parallel", paymentsInParallel, in: 1 ... OptionLimits.paymentsInParallelMax, "payments")
            try checkRange("--snapshot-every", snapshotEvery, in: 1 ... OptionLimits.snapshotEveryRecordsMax, "records")
        }

        func run() async throws {
            let clock = ManualClock(MonthEnd.firstEnd)
            let engine = try await storage.open(snapshotEveryRecords: snapshotEvery, clock: clock)
            let scheduler = Scheduler(engine: engine, payments: InMemoryPaymentGateway(),
                                      policy: SchedulerPolicy(paymentsInParallel: paymentsInParallel))
            // The scheduler announces a renewal once its record is durable, so every renewal a
            // progress line counts survives a kill after it (a drill's lower bound).
            let every = progressEvery
            let progress = Task {
                var renewed = 0
                for await notification in scheduler.notifications {
                    guard case .renewed = notification else { continue }
                    renewed += 1
                    if renewed % every == 0 { printError("month-end: renewed \(renewed)") }
                }
            }
            printError("month-end: running")
            let started = monotonicNanos()
            let total = await MonthEnd.runUntilDone(scheduler)
            let seconds = Double(monotonicNanos() - started) / 1e9
            await scheduler.finish()
            await progress.value
            let digests = await engine.stateDigests().map { "\"\($0)\"" }.joined(separator: ", ")
            let problems = await engine.invariantViolations()
            await engine.close()
            writeLine("{\"renewed\": \(total.renewed), \"refused\": \(total.refused), \"payments\": \(total.payments), "
                      + "\"seconds\": \(seconds), \"invariant_violations\": \(problems.count), \"digests\": [\(digests)]}")
        }
    }

    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Month-end renewal of --accounts subscriptions in memory, with concurrent debits; prints timings.",
            discussion: """
                Sets up the subscribers, moves the clock to the cycle end and runs the scheduler \
                until every subscription has renewed, while --concurrency tasks debit random \
                subscribers. Reports the renewal's wall time, the longest time one scheduler \
                turn held a shard, and the debits' latency (max and p99) during the renewal.
                """
        )

        @Option(help: "Subscribers, 1...\(OptionLimits.accountsMax).") var accounts = 1_000_000
        @Option(help: "Shard actors, 1...\(EngineConfiguration.shardCountMax) (default: eight per core).") var shards: Int?
        @Option(help: "Price of each renewal in cents, 0...\(OptionLimits.priceCentsMax) (0 renews without a payment).")
        var priceCents: Int64 = 14_999
        @Option(help: "Tasks debiting during the renewal, 0...\(OptionLimits.concurrencyTasksMax).") var concurrency = 8
        @Option(help: "Due notes a shard works through per turn, 1...\(OptionLimits.notesPerTurnMax).")
        var notesPerTurn = SchedulePolicy.notesPerTurnDefault
        @Option(help: "Payments the scheduler makes at once, 1...\(OptionLimits.paymentsInParallelMax): a remote gateway needs many; the one in memory here answers at once, and more workers only add task switches.")
        var paymentsInParallel = 1
        @Flag(help: "One JSON object instead of text.") var json = false
        @Option(help: "Priority of the scheduler's task: background, utility, medium or high (the debits run at medium).")
        var priority = "utility"

        static let priorities: [String: TaskPriority] = ["background": .background, "utility": .utility, "medium": .medium, "high": .high]

        var schedulerPriority: TaskPriority { Self.priorities[priority] ?? .utility }

        func validate() throws {
            try checkRange("--accounts", accounts, in: 1 ... OptionLimits.accountsMax, "accounts")
            if let shards { try checkRange("--shards", shards, in: 1 ... EngineConfiguration.shardCountMax, "shards") }
            try checkRange("--price-cents", priceCents, in: 0 ... OptionLimits.priceCentsMax, "cents")
            try checkRange("--concurrency", concurrency, in: 0 ... OptionLimits.concurrencyTasksMax, "tasks")
            try checkRange("--notes-per-turn", notesPerTurn, in: 1 ... OptionLimits.notesPerTurnMax, "notes")
            try checkRange("--payments-in-parallel", paymentsInParallel, in: 1 ... OptionLimits.paymentsInParallelMax, "payments")
            guard Self.priorities[priority] != nil else {
                throw ValidationError("--priority must be background, utility, medium or high, not \(priority)")
            }
        }

        func run() async throws {
            let clock = ManualClock(MonthEnd.anchor)
            var configuration = EngineConfiguration(shardCount: shards)
            configuration.schedule = SchedulePolicy(notesPerTurn: notesPerTurn)
            let engine = CreditEngine(configuration: configuration, clock: clock)
            let setupStarted = monotonicNanos()
            try await MonthEnd.setUp(engine, accounts: accounts, priceCents: priceCents)
            let setupSeconds = Double(monotonicNanos() - setupStarted) / 1e9
            clock.set(MonthEnd.firstEnd)
            let scheduler = Scheduler(engine: engine, payments: InMemoryPaymentGateway(),
                                      policy: SchedulerPolicy(paymentsInParallel: paymentsInParallel))
            await engine.resetTurnStatistics()

            let done = StopSignal()
            let accounts = UInt64(self.accounts)
            let debits = Task(priority: .medium) {
                await withTaskGroup(of: [UInt64].self) { group in
                    for task in 0 ..< concurrency {
                        group.addTask {
                            var random = SplitMix64(seed: UInt64(task) &* 0x9E37_79B9_7F4A_7C15)
                            var latencies: [UInt64] = []
                            var sequence: UInt64 = 0
                            while !done.isSet {
                                sequence += 1
                                let account = AccountID(tenant: TenantID(random.next() % accounts), number: 0)
                                let started = monotonicNanos()
                                _ = await engine.execute(Command(key: IdempotencyKey(high: 0xDEB1, low: UInt64(task) << 40 | sequence),
                                                                 .debit(account, Millicredits(1), scope: .unscoped)))
                                latencies.append(monotonicNanos() - started)
                            }
                            return latencies
                        }
                    }
                    var all: [UInt64] = []
                    for await latencies in group { all += latencies }
                    return all
                }
            }
            let started = monotonicNanos()
            // Scheduled work runs below the priority of the calls it must not stall.
            let total = await Task(priority: schedulerPriority) { await MonthEnd.runUntilDone(scheduler) }.value
            let seconds = Double(monotonicNanos() - started) / 1e9
            done.set()
            let latencies = await debits.value.sorted()
            let statistics = await engine.durabilityStatistics()
            let problems = await engine.invariantViolations()
            func percentile(_ p: Double) -> Double {
                latencies.isEmpty ? 0 : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1e6
            }
            let longestTurn = Double(statistics.longestTurnNanos) / 1e6
            let longestTurnCPU = Double(statistics.longestTurnCPUNanos) / 1e6
            let turnCPU = total.turnTimings.map(\.cpuNanos).sorted()
            let turnWall = total.turnTimings.map(\.wallNanos).sorted()
            func turnPercentile(_ values: [UInt64], _ p: Double) -> Double {
                values.isEmpty ? 0 : Double(values[min(values.count - 1, Int(Double(values.count) * p))]) / 1e6
            }
            let over10 = latencies.count - (latencies.firstIndex { $0 > 10_000_000 } ?? latencies.count)
            if json {
                print("{\"accounts\": \(accounts), \"shards\": \(engine.configuration.shardCount), \"renewed\": \(total.renewed), "
                      + "\"refused\": \(total.refused), \"payments\": \(total.payments), \"turns\": \(total.turns), "
                      + "\"setup_seconds\": \(setupSeconds), \"renewal_seconds\": \(seconds), "
                      + "\"longest_turn_ms\": \(longestTurn), \"longest_turn_cpu_ms\": \(longestTurnCPU), "
                      + "\"turn_wall_p50_ms\": \(turnPercentile(turnWall, 0.5)), \"turn_wall_p99_ms\": \(turnPercentile(turnWall, 0.99)), "
                      + "\"turn_cpu_p50_ms\": \(turnPercentile(turnCPU, 0.5)), \"turn_cpu_p99_ms\": \(turnPercentile(turnCPU, 0.99)), "
                      + "\"debits\": \(latencies.count), \"debits_over_10ms\": \(over10), "
                      + "\"debit_p99_ms\": \(percentile(0.99)), \"debit_max_ms\": \(percentile(1.0)), "
                      + "\"invariant_violations\": \(problems.count)}")
            } else {
                print("renewed \(total.renewed) of \(accounts) subscriptions in \(String(format3: seconds)) s "
                      + "(\(total.payments) payments, \(total.turns) turns; set-up \(String(format3: setupSeconds)) s)")
                print("longest scheduler turn on a shard: \(String(format3: longestTurn)) ms (CPU \(String(format3: longestTurnCPU)) ms); "
                      + "turns p50 \(String(format3: turnPercentile(turnWall, 0.5))) ms, p99 \(String(format3: turnPercentile(turnWall, 0.99))) ms; "
                      + "CPU p50 \(String(format3: turnPercentile(turnCPU, 0.5))) ms, p99 \(String(format3: turnPercentile(turnCPU, 0.99))) ms")
                let slowest = total.turnTimings.sorted { $0.cpuNanos > $1.cpuNanos }.prefix(5)
                print("slowest turns (CPU ms / notes): " + slowest.map { "\(String(format3: Double($0.cpuNanos) / 1e6))/\($0.notes)" }.joined(separator: ", "))
                print("\(latencies.count) concurrent debits: p99 \(String(format3: percentile(0.99))) ms, max \(String(format3: percentile(1.0))) ms, "
                      + "\(over10) over 10 ms")
                if !problems.isEmpty { print("INVARIANTS BROKEN: \(problems.prefix(5))") }
            }
            if total.renewed != self.accounts || !problems.isEmpty { throw ExitCode(1) }
        }
    }
}

/// A stop signal one task sets and others read.
private final class StopSignal: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

extension String {
    init(format3 value: Double) {
        let scaled = (value * 1_000).rounded()
        let whole = Int64(scaled) / 1_000
        let fraction = abs(Int64(scaled) % 1_000)
        self = "\(whole).\(String(repeating: "0", count: 3 - String(fraction).count))\(fraction)"
    }
}
