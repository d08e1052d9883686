import CreditEngine
import CreditPricing
import CreditBilling
import CreditScheduler
import Testing

// The scheduler over an engine with a manual clock: months pass in milliseconds. After
// every step the engine's invariant checker must find nothing.

func day(_ year: Int64, _ month: Int64, _ day: Int64, hour: Int64 = 0) -> Timestamp {
    CalendarMonths.date(year, month, day, hour: hour)
}

func credits(_ whole: Int64) -> Millicredits { Millicredits(whole * Millicredits.perCredit) }

let dayMillis: Int64 = 86_400_000

/// An engine, a billing service and a scheduler sharing one manual clock and one gateway.
struct World {
    let clock: ManualClock
    let engine: CreditEngine
    let gateway = InMemoryPaymentGateway()
    let billing: Billing
    let scheduler: Scheduler
    private var nextTenant: UInt64 = 1

    init(start: Timestamp, shards: Int = 4, policy: SchedulerPolicy = SchedulerPolicy(),
         schedule: SchedulePolicy = SchedulePolicy()) throws {
        clock = ManualClock(start)
        var configuration = EngineConfiguration(shardCount: shards)
        configuration.schedule = schedule
        engine = CreditEngine(configuration: configuration, clock: clock)
        billing = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()), payments: gateway)
        scheduler = Scheduler(engine: engine, payments: gateway, policy: policy)
    }

    mutating func openIndividual() async throws -> AccountID {
        let tenant = TenantID(nextTenant)
        nextTenant += 1
        let account = AccountID(tenant: tenant, number: 0)
        try await succeed(.openTenant(tenant, .individual))
        try await succeed(.openAccount(account, .standard))
        return account
    }

    @discardableResult
    func succeed(_ action: Action, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Receipt {
        let outcome = await engine.execute(Command(key: IdempotencyKey(deriving: "test/\(UInt64.random(in: 0 ... .max))"), action))
        guard case .success(let receipt) = outcome else {
            Issue.record("\(action) failed: \(outcome)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
        return receipt
    }

    /// Moves the clock to `time`, runs everything due, and checks the invariants.
    @discardableResult
    func run(to time: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) async -> SchedulerReport {
        if clock.now() < time { clock.set(time) }
        let report = await scheduler.runDue()
        let problems = await engine.invariantViolations()
        #expect(problems.isEmpty, "invariants broken at \(time): \(problems)", sourceLocation: sourceLocation)
        return report
    }

    func balance(_ account: AccountID, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Balance {
        try #require(await engine.balance(of: account), sourceLocation: sourceLocation)
    }

    /// Every notification published so far (the stream is read until it is empty).
    func drainNotifications() async -> [CreditNotification] {
        await scheduler.finish()
        var all: [CreditNotification] = []
        for await notification in scheduler.notifications { all.append(notification) }
        return all
    }
}

@Suite("Scheduler: 14 months of a Pro subscriber")
struct TimelineTests {
    /// The worked timeline of docs/semantics.md ("Time"): Pro from 31 January 2026, 3,000
    /// credits used the day after each renewal, 1,000 bought on 10 February, the renewal of
    /// 31 July declined, reactivation on day 29 of grace, then eight more months.
    @Test("rollover, expiry, grace, a declined renewal, reactivation on day 29 and forfeitures, day by day")
    func proSubscriberTimeline() async throws {
        var world = try World(start: day(2026, 1, 31))
        let user = try await world.openIndividual()
        try await world.billing.subscribe(user, to: .pro, purchase: PurchaseID("first"))
        await world.gateway.fail(PurchaseID("renewal/\(user.tenant.rawValue)/0/\(day(2026, 1, 31).millisSinceEpoch)/6"))
        let usage: Set<Timestamp> = [day(2026, 2, 1), day(2026, 3, 1), day(2026, 4, 1), day(2026, 5, 1), day(2026, 6, 1),
                                     day(2026, 7, 1), day(2026, 8, 30), day(2026, 9, 30), day(2026, 10, 30), day(2026, 11, 30),
                                     day(2026, 12, 30), day(2027, 1, 30), day(2027, 3, 1)]
        var time = day(2026, 2, 1)
        while time <= day(2027, 3, 31) {
            await world.run(to: time)
            if usage.contains(time) { try await world.succeed(.debit(user, credits(3_000), scope: .unscoped)) }
            if time == day(2026, 2, 10) { _ = try await world.billing.purchase(1_000, for: user, purchase: PurchaseID("p1")) }
            if time == day(2026, 7, 31) {
                let balance = try await world.balance(user)
                #expect(await world.engine.subscription(of: user)?.status == .lapsed)
                #expect(await world.engine.subscription(of: user)?.lapseReason == .paymentDeclined)
                #expect(balance.available == credits(1_000), "only the purchase is left to spend")
                #expect(balance.inGrace == credits(12_000), "July's allocation and the rollovers of May and June")
                #expect(balance.expired == .zero, "every earlier rollover was spent before it expired")
            }
            if time == day(2026, 8, 29) {
                await world.run(to: day(2026, 8, 29, hour: 12))
                #expect(try await world.balance(user).inGrace == credits(12_000), "grace ends tomorrow")
                try await world.billing.subscribe(user, to: .pro, purchase: PurchaseID("reactivation"))
                let balance = try await world.balance(user)
                #expect(balance.inGrace == .zero)
                #expect(balance.available == credits(18_000), "1,000 bought + 12,000 reinstated + 5,000 new")
            }
            time = time.adding(millis: dayMillis)
        }
        let balance = try await world.balance(user)
        // The purchase (expiring first) paid for half of January's usage; the rollovers of
        // January, February and March and March's allocation are left.
        #expect(balance.available == credits(19_000))
        #expect(balance.inGrace == credits(2_000), "December's rollover, expired on 29 March")
        #expect(balance.expired == credits(11_000))
        let subscription = try #require(await world.engine.subscription(of: user))
        #expect(subscription.status == .active)
        #expect(subscription.cycle == 7)
        #expect(subscription.anchor == day(2026, 8, 29, hour: 12))

        let notifications = await world.drainNotifications()
        let forfeited = notifications.compactMap { if case .forfeited(_, let amount) = $0 { amount } else { nil } }
        #expect(forfeited == [credits(9_000), credits(2_000)], "the unspent reinstated credits, September's rollover")
        let renewals = notifications.filter { if case .renewed = $0 { true } else { false } }
        #expect(renewals.count == 12)
        #expect(notifications.contains(.lapsed(user, reason: .paymentDeclined)))
        #expect(notifications.contains(.expiringSoon(user, amount: credits(9_000), expiresAt: day(2026, 9, 28, hour: 12))),
                "a week before the reinstated credits expire")
    }
}

@Suite("Scheduler: catching up and hold time-outs")
struct CatchUpTests {
    @Test("after downtime every missed renewal runs, in order, each rolling the one before over")
    func catchUpAfterDowntime() async throws {
        var world = try World(start: day(2026, 1, 15))
        let user = try await world.openIndividual()
        try await world.succeed(.subscribe(user, SubscriptionTerms(plan: "Free", allocation: credits(100), priceCents: 0)))
        let report = await world.run(to: day(2026, 6, 20))
        #expect(report.renewed == 5)
        #expect(await world.engine.subscription(of: user)?.cycle == 5)
        let balance = try await world.balance(user)
        // The rollover of the cycle ending 15 February expired on 15 May and was forfeited on
        // 14 June; that of 15 March expired on 15 June and is in grace; those of 15 April,
        // 15 May and 15 June are live, with the current allocation.
        #expect(balance.available == credits(400))
        #expect(balance.inGrace == credits(100))
        #expect(balance.expired == credits(100))
    }

    @Test("holds past their time-out are released by the scheduler")
    func holdTimeOuts() async throws {
        var world = try World(start: day(2026, 1, 15))
        let user = try await world.openIndividual()
        try await world.succeed(.grant(user, GrantTerms(kind: .purchase, amount: credits(10))))
        let hold = try #require(try await world.succeed(.reserve(user, credits(4), timeoutMillis: 60_000, scope: .unscoped)).hold)
        #expect(await world.run(to: day(2026, 1, 15).adding(millis: 59_999)).holdsTimedOut == 0)
        #expect(await world.run(to: day(2026, 1, 15).adding(millis: 60_000)).holdsTimedOut == 1)
        #expect(await world.engine.hold(hold) == nil)
        #expect(try await world.balance(user).available == credits(10))
    }
}

@Suite("Scheduler: auto-refill")
struct SchedulerRefillTests {
    static let terms = AutoRefillTerms(threshold: credits(1_000), refillCredits: 5_000, refillsPerMonthMax: 3,
                                       cooldownMillis: 0, attemptsMax: 3)

    @Test("64 concurrent debits crossing the threshold start exactly one refill, granted once after payment")
    func concurrentCrossing() async throws {
        var world = try World(start: day(2026, 4, 1))
        let user = try await world.openIndividual()
        try await world.succeed(.grant(user, GrantTerms(kind: .purchase, amount: credits(1_640))))
        try await world.succeed(.setAutoRefill(user, Self.terms))
        let engine = world.engine
        await withTaskGroup(of: Void.self) { group in
            for index in 0 ..< 64 {
                group.addTask {
                    _ = await engine.execute(Command(key: IdempotencyKey(deriving: "debit/\(index)"),
                                                           .debit(user, credits(10), scope: .unscoped)))
                }
            }
        }
        #expect(try await world.balance(user).available == credits(1_000), "all 64 debits applied")
        #expect(await world.engine.autoRefill(of: user)?.refillInFlight == nil, "1,000 is not below the threshold")
        // The 65th debit crosses.
        try await world.succeed(.debit(user, credits(10), scope: .unscoped))
        await withTaskGroup(of: Void.self) { group in
            for index in 0 ..< 64 {
                group.addTask {
                    _ = await engine.execute(Command(key: IdempotencyKey(deriving: "more/\(index)"),
                                                           .debit(user, credits(5), scope: .unscoped)))
                }
            }
        }
        #expect(await world.engine.autoRefill(of: user)?.refillsThisMonth == 1)
        let report = await world.run(to: day(2026, 4, 1))
        #expect(report.refillsPaid == 1)
        #expect(report.payments == 1)
        #expect(await world.gateway.charges.count == 1)
        #expect(await world.gateway.chargedCents == 4_500, "5,000 credits: the package")
        #expect(try await world.balance(user).available == credits(5_670))
        #expect(await world.run(to: day(2026, 4, 2)).payments == 0, "nothing more in flight")
        let notifications = await world.drainNotifications()
        #expect(notifications.filter { if case .lowBalance = $0 { true } else { false } }.count == 1)
        #expect(notifications.contains(.refillSucceeded(user, credits: credits(5_000), paymentReference: "mem-1")))
    }

    @Test("failed payments grant nothing, retry with back-off, then disable auto-refill")
    func failuresThenDisable() async throws {
        var world = try World(start: day(2026, 4, 1), policy: SchedulerPolicy(retryDelaysMillis: [60_000, 120_000]))
        let user = try await world.openIndividual()
        try await world.succeed(.grant(user, GrantTerms(kind: .purchase, amount: credits(500))))
        await world.gateway.failNext(10, with: .declined(reason: "insufficient funds"))
        try await world.succeed(.setAutoRefill(user, Self.terms))
        var report = await world.run(to: day(2026, 4, 1))
        #expect(report.refillsFailed == 1)
        #expect(await world.engine.autoRefill(of: user)?.nextAttemptAt == day(2026, 4, 1).adding(millis: 60_000))
        report = await world.run(to: day(2026, 4, 1).adding(millis: 59_999))
        #expect(report.payments == 0, "backing off")
        report = await world.run(to: day(2026, 4, 1).adding(millis: 60_000))
        #expect(report.refillsFailed == 1)
        report = await world.run(to: day(2026, 4, 1).adding(millis: 180_000))
        #expect(report.refillsFailed == 1)
        let view = try #require(await world.engine.autoRefill(of: user))
        #expect(!view.isEnabled)
        #expect(view.disabledAfter == .paymentDeclined)
        #expect(try await world.balance(user).available == credits(500), "no credits without a payment")
        #expect(await world.gateway.charges.isEmpty)
        #expect(await world.run(to: day(2026, 4, 2)).payments == 0)
        let notifications = await world.drainNotifications()
        let failures = notifications.compactMap { if case .refillFailed(_, _, _, let disabled) = $0 { disabled } else { nil } }
        #expect(failures == [false, false, true])
    }

    @Test("the monthly cap stops refills until the next month")
    func monthlyCap() async throws {
        var world = try World(start: day(2026, 4, 1))
        let user = try await world.openIndividual()
        try await world.succeed(.grant(user, GrantTerms(kind: .purchase, amount: credits(2_000))))
        try await world.succeed(.setAutoRefill(user, AutoRefillTerms(threshold: credits(1_000), refillCredits: 1_000,
                                                                   refillsPerMonthMax: 2, cooldownMillis: 0)))
        for hour in 1 ... 3 {
            let available = try await world.balance(user).available
            try await world.succeed(.debit(user, Millicredits(available.rawValue - credits(500).rawValue), scope: .unscoped))
            await world.run(to: day(2026, 4, 1, hour: Int64(hour)))
        }
        #expect(await world.gateway.charges.count == 2)
        #expect(await world.engine.autoRefill(of: user)?.refillsThisMonth == 2)
        await world.run(to: day(2026, 5, 1))
        try await world.succeed(.debit(user, credits(1), scope: .unscoped))
        await world.run(to: day(2026, 5, 1, hour: 1))
        #expect(await world.gateway.charges.count == 3, "a new month")
    }
}

@Suite("README: the scheduler example")
struct ReadmeSchedulerExampleTests {
    @Test("subscribe through Billing, set auto-refill, run the scheduler: the example's calls do what the README says")
    func readmeExample() async throws {
        let clock = ManualClock(day(2026, 3, 1))
        let engine = CreditEngine(clock: clock)
        let myGateway = InMemoryPaymentGateway()
        let alice = AccountID(tenant: TenantID(42), number: 0)
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-1"), .openTenant(alice.tenant, .individual)))
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-2"), .openAccount(alice, .standard)))
        let billing = Billing(engine: engine, sealer: try KeySealer(keyBytes: KeySealer.randomKeyBytes()), payments: myGateway)
        try await billing.subscribe(alice, to: .pro, purchase: PurchaseID("order-77"))
        #expect(await engine.balance(of: alice)?.available == credits(5_000), "pays, then grants 5,000")
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-5"),
                                         .setAutoRefill(alice, AutoRefillTerms(threshold: try .credits(500), refillCredits: 1_000))))
        let scheduler = Scheduler(engine: engine, payments: myGateway)
        _ = await engine.execute(Command(key: IdempotencyKey(deriving: "req-6"), .debit(alice, credits(4_600), scope: .unscoped)))
        clock.set(day(2026, 4, 1))
        await scheduler.runDue()
        #expect(await engine.subscription(of: alice)?.cycle == 1, "renewed")
        #expect(await engine.balance(of: alice)?.available == credits(6_400), "400 rolled over, 1,000 refilled, 5,000 new")
        await scheduler.finish()
        var notices: [CreditNotification] = []
        for await notice in scheduler.notifications { notices.append(notice) }
        #expect(notices.contains { if case .lowBalance(alice, _, credits(500)) = $0 { true } else { false } })
        #expect(notices.contains(.refillSucceeded(alice, credits: credits(1_000), paymentReference: "mem-2"))
                    || notices.contains(.refillSucceeded(alice, credits: credits(1_000), paymentReference: "mem-3")))
        // The subscription, then the refill and the renewal (paid side by side).
        #expect(await myGateway.charges.map(\.amountCents).sorted() == [1_000, 14_999, 14_999])
    }
}
