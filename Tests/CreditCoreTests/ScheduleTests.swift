import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

// Time in the ledger: subscriptions, billing cycles, rollover, expiry, grace, forfeiture,
// reinstatement and auto-refill, driven by the commands the scheduler issues. Every step
// runs through the harness, which checks the invariants and conservation after it.

/// A day in 2026–2028 at midnight UTC.
func day(_ year: Int64, _ month: Int64, _ day: Int64) -> Timestamp { CalendarMonths.date(year, month, day) }

let graceMillis: Int64 = 30 * dayMillis

extension LedgerHarness {
    /// Subscribes `account` to a plan of `allocation` credits a cycle, anchored now.
    @discardableResult
    mutating func subscribe(_ account: AccountID, plan: String = "Pro", allocation: Millicredits = credits(5_000),
                            priceCents: Int64 = 14_999, rollover: Bool = true,
                            sourceLocation: SourceLocation = #_sourceLocation) throws -> Receipt {
        try succeed(.subscribe(account, SubscriptionTerms(plan: plan, allocation: allocation, priceCents: priceCents,
                                                          rollover: rollover)), sourceLocation: sourceLocation)
    }

    /// Moves to the end of the account's current cycle and renews it.
    @discardableResult
    mutating func renew(_ account: AccountID, sourceLocation: SourceLocation = #_sourceLocation) throws -> Receipt {
        let view = try #require(ledger.subscription(of: account), sourceLocation: sourceLocation)
        if now < view.cycleEnd { move(to: view.cycleEnd) }
        return try succeed(.renewSubscription(account, cycle: view.cycle + 1, graceMillis: graceMillis),
                           sourceLocation: sourceLocation)
    }

    func subscription(_ account: AccountID, sourceLocation: SourceLocation = #_sourceLocation) throws -> SubscriptionView {
        try #require(ledger.subscription(of: account), sourceLocation: sourceLocation)
    }
}

@Suite("Subscriptions and billing cycles")
struct SubscriptionTests {
    @Test("cycles are calendar months from the anchor: the 31st renews on the last day of shorter months, leap years included")
    func monthEndAnchors() throws {
        var h = LedgerHarness(start: day(2027, 1, 31))
        let account = try h.openIndividual(1)
        try h.subscribe(account)
        var ends: [Timestamp] = []
        for _ in 0 ..< 14 {
            ends.append(try h.subscription(account).cycleEnd)
            try h.renew(account)
        }
        let expected = [day(2027, 2, 28), day(2027, 3, 31), day(2027, 4, 30), day(2027, 5, 31), day(2027, 6, 30),
                        day(2027, 7, 31), day(2027, 8, 31), day(2027, 9, 30), day(2027, 10, 31), day(2027, 11, 30),
                        day(2027, 12, 31), day(2028, 1, 31), day(2028, 2, 29), day(2028, 3, 31)]
        #expect(ends == expected)
        #expect(try h.subscription(account).cycle == 14)
        #expect(try h.subscription(account).cycleStart == day(2028, 3, 31))
    }

    @Test("a renewal grants the new allocation and rolls the unused one over for 3 months; it then expires into grace and is forfeited")
    func rolloverThenExpiry() throws {
        var h = LedgerHarness(start: day(2026, 1, 31))
        let account = try h.openIndividual(1)
        try h.subscribe(account)
        try h.debit(account, credits(1_000))
        let renewal = try h.succeedWithEntry(.renewSubscription(account, cycle: 1, graceMillis: graceMillis),
                                             at: day(2026, 2, 28))
        #expect(renewal.receipt.amount == credits(5_000))
        #expect(renewal.entry.movements.contains { $0.change == .rolledOver && $0.amount == credits(4_000) })
        // The entry as the window keeps it: three movements (the third in its extras).
        #expect(renewal.entry.movements.map(\.change) == [.rolledOver, .created, .created])
        var balance = try h.balance(account)
        #expect(balance.available == credits(9_000))
        #expect(balance.granted == credits(10_000), "a rollover moves credits; it grants none")
        let rollover = try #require(balance.grants.first { $0.kind == .rollover })
        #expect(rollover.remaining == credits(4_000))
        #expect(rollover.expiresAt == day(2026, 5, 28), "3 months after the cycle it came from ended")

        // Three more renewals, nothing spent: each allocation rolls over in turn.
        try h.renew(account)
        try h.renew(account)
        #expect(try h.balance(account).available == credits(19_000))
        // The first rollover expires on 28 May, before the next renewal (31 May).
        h.move(to: day(2026, 5, 28))
        let expiry = try h.succeedWithEntry(.expireGrants(account, graceMillis: graceMillis))
        #expect(expiry.receipt.amount == credits(4_000))
        balance = try h.balance(account)
        #expect(balance.available == credits(15_000))
        #expect(balance.inGrace == credits(4_000))
        #expect(balance.grants.first { $0.id == rollover.id }?.graceEndsAt == day(2026, 6, 27))
        // Rolled-over credits never roll again: the 31 May renewal leaves the grace grant alone.
        try h.renew(account)
        #expect(try h.balance(account).inGrace == credits(4_000))
        h.reject(.forfeitGrants(account), .nothingDue(account), at: day(2026, 6, 26))
        let forfeit = try h.succeedWithEntry(.forfeitGrants(account), at: day(2026, 6, 27))
        #expect(forfeit.receipt.amount == credits(4_000))
        #expect(forfeit.entry.movements.map(\.change) == [.forfeited])
        balance = try h.balance(account)
        #expect(balance.expired == credits(4_000))
        #expect(balance.inGrace == .zero)
        #expect(!balance.grants.contains { $0.id == rollover.id }, "a forfeited grant without holds is retired")
    }

    @Test("with rollover off, the unused allocation goes into grace at renewal, and the renewal does not reinstate it")
    func rolloverOff() throws {
        var h = LedgerHarness(start: day(2026, 3, 15))
        let account = try h.openIndividual(1)
        try h.subscribe(account, allocation: credits(2_000), rollover: false)
        try h.debit(account, credits(500))
        try h.renew(account)
        let balance = try h.balance(account)
        #expect(balance.available == credits(2_000))
        #expect(balance.inGrace == credits(1_500))
        #expect(!balance.grants.contains { $0.kind == .rollover })
    }

    @Test("renewals and lapses are refused early, twice, out of order, or on the wrong subscription state")
    func renewalRefusals() throws {
        var h = LedgerHarness(start: day(2026, 1, 10))
        let account = try h.openIndividual(1)
        h.reject(.renewSubscription(account, cycle: 1, graceMillis: graceMillis), .notSubscribed(account))
        try h.subscribe(account)
        h.reject(.subscribe(account, SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: 0)), .alreadySubscribed(account))
        h.reject(.renewSubscription(account, cycle: 1, graceMillis: graceMillis), .notDue(account, dueAt: day(2026, 2, 10)))
        h.reject(.renewSubscription(account, cycle: 2, graceMillis: graceMillis), .staleSchedule(expected: 1, requested: 2))
        try h.renew(account)
        h.reject(.renewSubscription(account, cycle: 1, graceMillis: graceMillis), .staleSchedule(expected: 2, requested: 1))
        h.reject(.lapseSubscription(account, cycle: 0, reason: .cancelled, graceMillis: graceMillis),
                 .staleSchedule(expected: 1, requested: 0))
        h.reject(.renewSubscription(account, cycle: 2, graceMillis: -1), .notAllowed(account, .subscriptionTerms))
        try h.succeed(.cancelSubscription(account))
        #expect(try h.subscription(account).status == .cancelling)
        h.move(to: day(2026, 3, 10))
        h.reject(.renewSubscription(account, cycle: 2, graceMillis: graceMillis), .notSubscribed(account))
        try h.succeed(.resumeSubscription(account))
        try h.succeed(.cancelSubscription(account))
        try h.succeed(.lapseSubscription(account, cycle: 1, reason: .cancelled, graceMillis: graceMillis))
        h.reject(.cancelSubscription(account), .notSubscribed(account))
        #expect(try h.subscription(account).status == .lapsed)
        #expect(try h.subscription(account).lapseReason == .cancelled)
    }

    @Test("bad subscription terms are refused and change nothing")
    func badTerms() throws {
        var h = LedgerHarness(start: day(2026, 1, 10))
        let account = try h.openIndividual(1)
        let bad: [SubscriptionTerms] = [
            SubscriptionTerms(plan: "", allocation: credits(1), priceCents: 0),
            SubscriptionTerms(plan: String(repeating: "p", count: 300), allocation: credits(1), priceCents: 0),
            SubscriptionTerms(plan: "Pro", allocation: Millicredits(-1), priceCents: 0),
            SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: -5),
            SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: 0, rolloverMonths: 0),
            SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: 0, anchor: day(2026, 1, 11)),
            SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: 0, anchor: day(2025, 12, 10)),
        ]
        for terms in bad { h.reject(.subscribe(account, terms), .notAllowed(account, .subscriptionTerms)) }
        let org = try OrganisationFixture(in: &h, poolCredits: credits(10), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        h.reject(.subscribe(org.member(1), SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: 0)),
                 .notAllowed(org.member(1), .subscriptionsHoldGrants))
        // A backdated anchor within the month is allowed: the first cycle has not ended.
        try h.succeed(.subscribe(account, SubscriptionTerms(plan: "Pro", allocation: credits(1), priceCents: 0,
                                                            anchor: day(2025, 12, 11))))
        #expect(try h.subscription(account).cycleEnd == day(2026, 1, 11))
    }

    @Test("a lapse sends the allocation and its rollovers into grace; reactivating on day 29 reinstates them, day 31 is too late")
    func lapseGraceReactivation() throws {
        var h = LedgerHarness(start: day(2026, 1, 31))
        let early = try h.openIndividual(1)
        let late = try h.openIndividual(2)
        for account in [early, late] {
            try h.subscribe(account, allocation: credits(1_000))
            try h.debit(account, credits(400))
            try h.grant(account, credits(50), kind: .purchase, expiresAt: day(2027, 1, 31))
        }
        for account in [early, late] {
            try h.renew(account)  // 28 Feb: rollover 600
            try h.succeed(.cancelSubscription(account))
        }
        h.move(to: day(2026, 3, 31))
        for account in [early, late] {
            let lapse = try h.succeed(.lapseSubscription(account, cycle: 1, reason: .cancelled, graceMillis: graceMillis))
            #expect(lapse.amount == credits(1_600), "the allocation and the rollover")
            let balance = try h.balance(account)
            #expect(balance.available == credits(50), "purchased credits stay")
            #expect(balance.inGrace == credits(1_600))
        }
        // Grace ends on 30 April (30 days after 31 March).
        h.move(to: day(2026, 3, 31).plus(29 * dayMillis))
        try h.subscribe(early, allocation: credits(1_000))
        var balance = try h.balance(early)
        #expect(balance.inGrace == .zero)
        #expect(balance.available == credits(2_650))
        let reinstated = balance.grants.filter { $0.kind == .rollover }
        #expect(reinstated.count == 2, "the old allocation comes back as a rollover grant")
        #expect(reinstated.allSatisfy { $0.expiresAt == h.now.plus(graceMillis) }, "reinstated for as long as grace lasted")
        #expect(try h.subscription(early).anchor == h.now, "a reactivation starts new cycles")

        h.move(to: day(2026, 3, 31).plus(31 * dayMillis))
        try h.subscribe(late, allocation: credits(1_000))
        balance = try h.balance(late)
        #expect(balance.inGrace == credits(1_600), "grace ended: nothing reinstated")
        #expect(balance.available == credits(1_050))
        try h.succeed(.forfeitGrants(late))
        balance = try h.balance(late)
        #expect(balance.expired == credits(1_600))
        #expect(balance.inGrace == .zero)
    }

    @Test("purchased credits expire after 12 months into grace; a purchase during grace reinstates them")
    func purchaseExpiryAndReinstatement() throws {
        var h = LedgerHarness(start: day(2026, 2, 29 - 1))
        let account = try h.openIndividual(1)
        let bought = try h.grant(account, credits(1_000), kind: .purchase,
                                 expiresAt: CalendarMonths.adding(12, to: h.now))
        try h.debit(account, credits(100))
        h.reject(.expireGrants(account, graceMillis: graceMillis), .nothingDue(account))
        h.move(to: day(2027, 2, 28))
        try h.succeed(.expireGrants(account, graceMillis: graceMillis))
        #expect(try h.balance(account).inGrace == credits(900))
        #expect(try h.available(account) == .zero)
        h.advance(10 * dayMillis)
        try h.grant(account, credits(10), kind: .purchase, expiresAt: CalendarMonths.adding(12, to: h.now))
        let view = try h.grantView(bought, of: account)
        #expect(view.remaining == credits(900))
        #expect(view.graceEndsAt == nil)
        #expect(view.expiresAt == h.now.plus(graceMillis))
        #expect(try h.available(account) == credits(910))
    }

    @Test("credits a hold gives back after its grant expired wait in grace, or are forfeited when the grace has ended")
    func holdsAcrossExpiry() throws {
        var h = LedgerHarness(start: day(2026, 1, 1))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100), kind: .promotional, expiresAt: day(2026, 1, 2))
        let first = try h.reserve(account, credits(30), timeoutMillis: 3 * dayMillis)
        let second = try h.reserve(account, credits(20), timeoutMillis: 6 * dayMillis)
        h.move(to: day(2026, 1, 2))
        try h.succeed(.expireGrants(account, graceMillis: dayMillis))
        #expect(try h.balance(account).inGrace == credits(50))
        try h.succeed(.release(first))
        #expect(try h.balance(account).inGrace == credits(80), "released into grace")
        h.move(to: day(2026, 1, 3))
        try h.succeed(.forfeitGrants(account))
        var balance = try h.balance(account)
        #expect(balance.expired == credits(80))
        #expect(balance.grants.first?.isForfeited == true, "kept while a hold is open on it")
        try h.succeed(.settle(second, actual: credits(5)))
        balance = try h.balance(account)
        #expect(balance.consumed == credits(5))
        #expect(balance.expired == credits(95), "what the settle gave back was forfeited at once")
        #expect(balance.grants.isEmpty)
    }

    @Test("an organisation's billing period is its pool's cycle: renewal resets departments and members")
    func organisationPeriods() throws {
        var h = LedgerHarness(start: day(2026, 1, 15))
        let d1 = DepartmentID(1)
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(d1, credits(50))],
                                          members: [(1, d1, credits(20))])
        try h.subscribe(org.pool, plan: "Enterprise", allocation: credits(1_000), priceCents: 0)
        try h.debit(org.member(1), credits(20))
        h.reject(.debit(org.member(1), credits(1), scope: .unscoped))
        try h.renew(org.pool)
        let view = try h.organisation(org.tenant)
        #expect(view.periodsStarted == 1)
        #expect(view.members.first?.usage.spent == .zero)
        try h.debit(org.member(1), credits(20))
    }
}

@Suite("Changing plans: one command, compare-and-set, paid upgrades")
struct PlanChangeLedgerTests {
    static func expert(_ replacing: String = "Pro", paid: Int64 = 0, reference: String = "") -> Action.PlanChangeMaker {
        Action.PlanChangeMaker(replacing: replacing, terms: SubscriptionTerms(plan: "Expert", allocation: credits(15_000), priceCents: 24_999),
                               paid: paid, reference: reference)
    }

    @Test("an upgrade grants what its payment bought until the cycle ends and raises the cycle's level; the renewal starts the next cycle at the new terms")
    func paidUpgrade() throws {
        var h = LedgerHarness(start: day(2026, 1, 1))
        let account = try h.openIndividual(1)
        try h.subscribe(account) // Pro: 5,000 credits at 14,999 cents
        h.move(to: day(2026, 1, 11))
        // 10,000 cents of difference × 21/31 = 6,774 cents; 10,000 credits × 6,774/10,000.
        let upgrade = try h.succeedWithEntry(Self.expert(paid: 6_774, reference: "pay_1").action(account))
        #expect(upgrade.receipt.planChange == .upgrade && upgrade.receipt.amount == credits(6_774))
        #expect(upgrade.entry.reason == "pay_1")
        let grant = try #require(try h.balance(account).grants.first { $0.original == credits(6_774) })
        #expect(grant.kind == .monthlyAllocation && grant.expiresAt == day(2026, 2, 1))
        let view = try h.subscription(account)
        #expect(view.plan == "Expert" && view.cycleAllocation == credits(15_000) && view.cyclePriceCents == 24_999)
        // Paying again for what the cycle already has is refused; going back down is deferred.
        h.reject(Self.expert("Expert", paid: 1, reference: "pay_2").action(account), .notAllowed(account, .planChangePayment))
        let down = try h.succeed(.changePlan(account, PlanChangeRequest(replacing: "Expert", terms: SubscriptionTerms(
            plan: "Pro", allocation: credits(5_000), priceCents: 14_999))))
        #expect(down.planChange == .deferred && down.amount == .zero)
        let renewal = try h.renew(account)
        #expect(renewal.amount == credits(5_000), "the renewal grants the terms in force (Pro)")
        let renewed = try h.subscription(account)
        #expect(renewed.cycleAllocation == credits(5_000) && renewed.cyclePriceCents == 14_999)
    }

    @Test("a change naming another plan than the one in force is refused and changes nothing")
    func staleChangeRefused() throws {
        var h = LedgerHarness(start: day(2026, 1, 1))
        let account = try h.openIndividual(1)
        try h.subscribe(account)
        // (`reject` also checks that nothing observable changed and a retry is refused the same.)
        h.reject(Self.expert("Basic", paid: 100, reference: "pay_1").action(account), .planChanged(account))
        #expect(try h.subscription(account).plan == "Pro")
        #expect(try h.balance(account).granted == credits(5_000))
    }

    @Test("a payment beyond the price difference, or a reference without a payment, is refused")
    func paymentChecked() throws {
        var h = LedgerHarness(start: day(2026, 1, 1))
        let account = try h.openIndividual(1)
        try h.subscribe(account)
        h.reject(Self.expert(paid: 10_001, reference: "pay_1").action(account), .notAllowed(account, .planChangePayment))
        h.reject(Self.expert(paid: 0, reference: "pay_1").action(account), .notAllowed(account, .planChangePayment))
        h.reject(Self.expert(paid: 500).action(account), .notAllowed(account, .planChangePayment))
        h.reject(.changePlan(account, PlanChangeRequest(replacing: "Pro", terms: SubscriptionTerms(plan: "", allocation: .zero,
                                                                                                    priceCents: 0))),
                 .notAllowed(account, .subscriptionTerms))
        #expect(try h.subscription(account).plan == "Pro")
    }

    @Test("after the cycle's end, before its renewal, an upgrade is charged and granted nothing: the renewal charges it whole")
    func upgradeAfterCycleEnd() throws {
        var h = LedgerHarness(start: day(2026, 1, 1))
        let account = try h.openIndividual(1)
        try h.subscribe(account)
        h.move(to: day(2026, 2, 2))
        h.reject(Self.expert(paid: 1, reference: "pay_1").action(account), .notAllowed(account, .planChangePayment))
        let receipt = try h.succeed(Self.expert().action(account))
        #expect(receipt.planChange == .upgrade && receipt.amount == .zero)
        #expect(try h.renew(account).amount == credits(15_000))
    }

    @Test("a deferred change (as logs before paid changes wrote it) applies from the next renewal and names no plan")
    func deferredChange() throws {
        var h = LedgerHarness(start: day(2026, 1, 1))
        let account = try h.openIndividual(1)
        try h.subscribe(account)
        let receipt = try h.succeed(.changePlan(account, PlanChangeRequest(deferring: SubscriptionTerms(
            plan: "Max", allocation: credits(9_000), priceCents: 29_999))))
        #expect(receipt.planChange == nil && receipt.amount == .zero)
        #expect(try h.subscription(account).cycleAllocation == credits(5_000))
        var paid = PlanChangeRequest(deferring: SubscriptionTerms(plan: "Max", allocation: credits(9_000), priceCents: 29_999))
        paid.paidCents = 10
        paid.reference = "pay"
        h.reject(.changePlan(account, paid), .notAllowed(account, .planChangePayment))
        #expect(try h.renew(account).amount == credits(9_000))
    }
}

extension Action {
    /// A plan change to build per account in tests.
    struct PlanChangeMaker {
        let replacing: String
        let terms: SubscriptionTerms
        let paid: Int64
        let reference: String

        func action(_ account: AccountID) -> Action {
            .changePlan(account, PlanChangeRequest(replacing: replacing, terms: terms, paidCents: paid, reference: reference))
        }
    }
}

@Suite("Auto-refill")
struct AutoRefillTests {
    static let terms = AutoRefillTerms(threshold: credits(100), refillCredits: 1_000, refillsPerMonthMax: 2,
                                       cooldownMillis: hourMillis, attemptsMax: 3)

    func payment(_ h: LedgerHarness, _ reference: String = "pay-1") -> RefillPayment {
        RefillPayment(amount: credits(1_000), expiresAt: CalendarMonths.adding(12, to: h.now),
                      costBasisNanoUSDPerCredit: 10_000_000, reference: reference)
    }

    @Test("crossing the threshold starts one refill; more debits while it is in flight start none; the paid refill grants")
    func oneRefillPerCrossing() throws {
        var h = LedgerHarness(start: day(2026, 4, 1))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(500))
        try h.succeed(.setAutoRefill(account, Self.terms))
        try h.debit(account, credits(300))
        #expect(try #require(h.ledger.autoRefill(of: account)).refillInFlight == nil)
        let crossing = try h.debit(account, credits(150))
        let refill = try #require(h.ledger.autoRefill(of: account)?.refillInFlight)
        #expect(refill == crossing.sequence, "numbered by the entry that crossed")
        try h.debit(account, credits(10))
        try h.debit(account, credits(10))
        #expect(h.ledger.autoRefill(of: account)?.refillInFlight == refill)
        #expect(h.ledger.autoRefill(of: account)?.refillsThisMonth == 1)
        h.reject(.completeRefill(account, refill: refill + 1, payment(h)), .staleSchedule(expected: refill, requested: refill + 1))
        let paid = try h.succeedWithEntry(.completeRefill(account, refill: refill, payment(h)))
        #expect(paid.entry.reason == "pay-1")
        #expect(try h.available(account) == credits(1_030))
        #expect(h.ledger.autoRefill(of: account)?.refillInFlight == nil)
        h.reject(.completeRefill(account, refill: refill, payment(h)), .staleSchedule(expected: 0, requested: refill))
    }

    @Test("failed payments retry up to the attempts allowed, then disable auto-refill; nothing is granted")
    func failuresDisable() throws {
        var h = LedgerHarness(start: day(2026, 4, 1))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(50))
        try h.succeed(.setAutoRefill(account, Self.terms))
        let refill = try #require(h.ledger.autoRefill(of: account)?.refillInFlight, "set below the threshold: starts at once")
        for attempt in 1 ... 2 {
            try h.succeed(.failRefill(account, refill: refill, RefillFailure(declined: true, reason: "card declined",
                                                                              retryAt: h.now.plus(hourMillis))))
            let view = try #require(h.ledger.autoRefill(of: account))
            #expect(view.failedAttempts == UInt8(attempt))
            #expect(view.nextAttemptAt == h.now.plus(hourMillis))
            #expect(view.isEnabled)
            h.advance(hourMillis)
        }
        try h.succeed(.failRefill(account, refill: refill, RefillFailure(declined: true, reason: "card declined",
                                                                          retryAt: h.now.plus(hourMillis))))
        let view = try #require(h.ledger.autoRefill(of: account))
        #expect(!view.isEnabled)
        #expect(view.disabledAfter == .paymentDeclined)
        #expect(view.refillInFlight == nil)
        #expect(try h.available(account) == credits(50))
        try h.debit(account, credits(10))
        #expect(h.ledger.autoRefill(of: account)?.refillInFlight == nil, "disabled: no new refill")
        try h.succeed(.setAutoRefill(account, Self.terms))
        #expect(h.ledger.autoRefill(of: account)?.refillInFlight != nil, "set again: enabled, and still below")
    }

    @Test("the monthly cap and the cooldown hold refills back; a new month allows them again")
    func capAndCooldown() throws {
        var h = LedgerHarness(start: day(2026, 4, 1))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(150))
        try h.succeed(.setAutoRefill(account, Self.terms))
        func cross() throws -> UInt64? {
            let available = try h.available(account)
            try h.debit(account, Millicredits(available.rawValue - credits(60).rawValue))
            return h.ledger.autoRefill(of: account)?.refillInFlight
        }
        let first = try #require(try cross())
        try h.succeed(.completeRefill(account, refill: first, payment(h)))
        #expect(try cross() == nil, "within the hour's cooldown")
        h.advance(hourMillis)
        try h.debit(account, credits(1))
        let second = try #require(h.ledger.autoRefill(of: account)?.refillInFlight, "cooled down")
        try h.succeed(.completeRefill(account, refill: second, payment(h, "pay-2")))
        h.advance(2 * hourMillis)
        #expect(try cross() == nil, "2 a month at most")
        h.move(to: day(2026, 5, 1))
        try h.debit(account, credits(1))
        #expect(h.ledger.autoRefill(of: account)?.refillInFlight != nil, "a new month")
    }

    @Test("bad auto-refill terms and refill results are refused")
    func badRefillInput() throws {
        var h = LedgerHarness(start: day(2026, 4, 1))
        let account = try h.openIndividual(1)
        for terms in [AutoRefillTerms(threshold: Millicredits(-1), refillCredits: 1),
                      AutoRefillTerms(threshold: credits(1), refillCredits: -1),
                      AutoRefillTerms(threshold: credits(1), refillCredits: 1, cooldownMillis: -1),
                      AutoRefillTerms(threshold: credits(1), refillCredits: 1, attemptsMax: 0)] {
            h.reject(.setAutoRefill(account, terms), .notAllowed(account, .autoRefillTerms))
        }
        try h.succeed(.setAutoRefill(account, Self.terms))
        let refill = try #require(h.ledger.autoRefill(of: account)?.refillInFlight)
        h.reject(.completeRefill(account, refill: refill, RefillPayment(amount: .zero, expiresAt: .never, costBasisNanoUSDPerCredit: 0,
                                                                        reference: "x")),
                 .notAllowed(account, .refillPaymentTerms))
        h.reject(.completeRefill(account, refill: refill, RefillPayment(amount: credits(1), expiresAt: h.now, costBasisNanoUSDPerCredit: 0,
                                                                        reference: "x")),
                 .notAllowed(account, .refillPaymentTerms))
        h.reject(.failRefill(account, refill: refill, RefillFailure(declined: false, reason: "", retryAt: nil)),
                 .notAllowed(account, .refillPaymentTerms))
        h.reject(.failRefill(account, refill: refill, RefillFailure(declined: false, reason: "x", retryAt: h.now.plus(-1))),
                 .notAllowed(account, .refillPaymentTerms))
    }
}

@Suite("What falls due")
struct DueNoteTests {
    @Test("the notes commands leave cover every due time the state implies, and dueWork names the right command")
    func notesCoverState() throws {
        var h = LedgerHarness(start: day(2026, 1, 31))
        h.ledger.collectsDueNotes = true
        var taken: Set<DueNote> = []
        let paid = try h.openIndividual(1)
        let free = try h.openIndividual(2)
        try h.subscribe(paid, priceCents: 14_999)
        try h.subscribe(free, priceCents: 0)
        try h.grant(paid, credits(10), kind: .promotional, expiresAt: day(2026, 2, 10))
        try h.succeed(.setAutoRefill(free, AutoRefillTerms(threshold: credits(10_000), refillCredits: 1_000)))
        taken.formUnion(h.ledger.takeDueNotes())
        #expect(Set(h.ledger.allDueNotes()).isSubset(of: taken))
        #expect(taken.contains(DueNote(at: day(2026, 2, 28).millisSinceEpoch, kind: .renewal, slot: 0)))

        h.move(to: day(2026, 2, 10))
        let expiry = try #require(taken.first { $0.kind == .expiry })
        guard case .command(let expire) = h.ledger.dueWork(expiry, at: h.now, graceMillis: graceMillis) else {
            Issue.record("no expiry work")
            return
        }
        #expect(expire.action == .expireGrants(paid, graceMillis: graceMillis))
        try h.succeed(expire.action, key: expire.key)
        #expect(h.ledger.dueWork(expiry, at: h.now, graceMillis: graceMillis) == nil, "done: nothing more")
        taken.formUnion(h.ledger.takeDueNotes())

        h.move(to: day(2026, 2, 28))
        let renewals = taken.filter { $0.kind == .renewal }
        let work = renewals.map { h.ledger.dueWork($0, at: h.now, graceMillis: graceMillis) }
        #expect(work.contains(.renewalPayment(paid, anchor: day(2026, 1, 31), cycle: 1, priceCents: 14_999, plan: "Pro")))
        #expect(work.contains(.command(Command(key: Ledger.renewalKey(free, cycle: 1, lapsed: false),
                                               .renewSubscription(free, cycle: 1, graceMillis: graceMillis)))))
        let refill = try #require(taken.first { $0.kind == .refill })
        #expect(h.ledger.dueWork(refill, at: h.now, graceMillis: graceMillis)
                    == .refillPayment(free, refill: try #require(h.ledger.autoRefill(of: free)?.refillInFlight), attempt: 0, credits: 1_000))
        let low = try #require(taken.first { $0.kind == .lowBalance })
        #expect(h.ledger.dueWork(low, at: h.now, graceMillis: graceMillis)
                    == .notice(.lowBalance(free, available: .zero, threshold: credits(10_000))), "the cycle ended: its allocation is not spendable until renewed")
        try h.renew(paid)
        taken.formUnion(h.ledger.takeDueNotes())
        #expect(Set(h.ledger.allDueNotes()).isSubset(of: taken))
        let before = try #require(renewals.first { $0.slot == 0 })
        #expect(h.ledger.dueWork(before, at: h.now, graceMillis: graceMillis) == nil, "renewed: the old note is stale")
    }
}
