import CreditPricing
import Testing

@Suite("Plans and plan changes")
struct PlanTests {
    @Test("plan errors have distinct stable snake_case codes")
    func planErrorCodes() {
        let codes = [PlanError.priceOutOfRange(cents: -1), .creditsOutOfRange(Millicredits(-1))].map(\.code)
        #expect(Set(codes).count == codes.count && codes.allSatisfy { $0.allSatisfy { $0 == "_" || ("a" ... "z").contains($0) } })
        #expect(PlanError.priceOutOfRange(cents: -1).code == "plan_price_out_of_range")
    }

    @Test("the seed's plans: price, own-key price and monthly credits", arguments: [
        (Plan.basic, "Basic", 5_999, 2_999, 2_000), (Plan.pro, "Pro", 14_999, 9_999, 5_000),
        (Plan.expert, "Expert", 24_999, 14_999, 15_000),
    ] as [(Plan, String, Int64, Int64, Int64)])
    func seedPlans(plan: Plan, name: String, priceCents: Int64, ownKeyPriceCents: Int64, credits: Int64) throws {
        #expect(plan.name == name)
        #expect(plan.monthlyPriceCents == priceCents)
        #expect(plan.ownKeyMonthlyPriceCents == ownKeyPriceCents)
        #expect(plan.monthlyCredits == (try Millicredits.credits(credits)))
    }

    @Test("the listed plans are Basic, Pro, Expert, in order of price")
    func listedPlans() {
        #expect(Plan.listed.map(\.name) == ["Basic", "Pro", "Expert"])
        #expect(Plan.listed.map(\.monthlyPriceCents) == Plan.listed.map(\.monthlyPriceCents).sorted())
    }

    // The rule is docs/semantics.md's "Changing plans"; its worked example is a 31-day cycle
    // (January 2026) with an upgrade from Basic to Expert on 11 January, 21 days left.
    static let january = (start: CalendarMonths.date(2026, 1, 1), end: CalendarMonths.date(2026, 2, 1))

    static func terms(_ plan: Plan) -> SubscriptionTerms {
        SubscriptionTerms(plan: plan.name, allocation: plan.monthlyCredits, priceCents: plan.monthlyPriceCents)
    }

    static func quote(from level: Plan, to new: Plan, at time: Timestamp) -> (kind: PlanProration.Kind, cents: Int64, grant: Millicredits) {
        let kind = PlanProration.kind(levelAllocation: level.monthlyCredits, levelPriceCents: level.monthlyPriceCents,
                                      current: terms(level), new: terms(new))
        let cents = PlanProration.chargeCents(levelPriceCents: level.monthlyPriceCents, newPriceCents: new.monthlyPriceCents,
                                              cycleStart: january.start, cycleEnd: january.end, at: time)
        let grant = PlanProration.grant(levelAllocation: level.monthlyCredits, levelPriceCents: level.monthlyPriceCents,
                                        new: terms(new), paidCents: cents, cycleStart: january.start, cycleEnd: january.end, at: time)
        return (kind, cents, grant)
    }

    @Test("an upgrade at the start of a cycle charges the whole price difference and grants the whole allocation difference",
          arguments: [(Plan.basic, Plan.pro, 9_000, 3_000), (Plan.pro, Plan.expert, 10_000, 10_000), (Plan.basic, Plan.expert, 19_000, 13_000)]
              as [(Plan, Plan, Int64, Int64)])
    func upgradeAtStart(from: Plan, to: Plan, cents: Int64, credits: Int64) throws {
        let quote = Self.quote(from: from, to: to, at: Self.january.start)
        #expect(quote.kind == .upgrade)
        #expect(quote.cents == cents)
        #expect(quote.grant == (try .credits(credits)))
    }

    @Test("the worked example: Basic to Expert with 21 of 31 days left charges $128.70 and grants 8,805.789 credits")
    func workedExample() {
        let quote = Self.quote(from: .basic, to: .expert, at: CalendarMonths.date(2026, 1, 11))
        // 19,000 × 21/31 = 12,870.97 cents, rounded down; 13,000 credits × 12,870/19,000 =
        // 8,805.789 47 credits, rounded down to the millicredit.
        #expect(quote.cents == 12_870)
        #expect(quote.grant == Millicredits(8_805_789))
        // Late in the cycle the share shrinks; at its end nothing is charged or granted.
        #expect(Self.quote(from: .basic, to: .expert, at: CalendarMonths.date(2026, 1, 31)).cents == 612) // 19,000 × 1/31
        let atEnd = Self.quote(from: .basic, to: .expert, at: Self.january.end)
        #expect(atEnd.cents == 0)
    }

    @Test("a downgrade, or a return to the plan the cycle was paid at, is deferred: nothing charged or granted")
    func deferredChanges() {
        for (from, to) in [(Plan.pro, Plan.basic), (Plan.expert, Plan.basic), (Plan.expert, Plan.pro)] {
            let quote = Self.quote(from: from, to: to, at: Self.january.start)
            #expect(quote.kind == .deferred && quote.cents == 0 && quote.grant == .zero)
        }
        // Upgraded to Expert, then down to Basic, in one cycle: going back to Expert is paid already.
        let back = PlanProration.kind(levelAllocation: Plan.expert.monthlyCredits, levelPriceCents: Plan.expert.monthlyPriceCents,
                                      current: Self.terms(.basic), new: Self.terms(.expert))
        #expect(back == .deferred)
        #expect(PlanProration.kind(levelAllocation: Plan.pro.monthlyCredits, levelPriceCents: Plan.pro.monthlyPriceCents,
                                   current: Self.terms(.pro), new: Self.terms(.pro)) == .unchanged)
    }

    @Test("enterprise plans: the same credits at a higher price charge the difference and grant nothing; more credits at the same price grant their share of the cycle")
    func enterprisePlans() throws {
        let contract = try Plan.enterprise(monthlyPriceCents: 500_000, ownKeyMonthlyPriceCents: 300_000,
                                           monthlyCredits: try .credits(100_000))
        #expect(contract.name == "Enterprise")
        #expect(contract.monthlyCredits == (try .credits(100_000)))
        let dearer = try Plan.enterprise(monthlyPriceCents: 30_000, ownKeyMonthlyPriceCents: 20_000,
                                         monthlyCredits: Plan.expert.monthlyCredits)
        let pricier = Self.quote(from: .expert, to: dearer, at: Self.january.start)
        #expect(pricier.kind == .upgrade && pricier.cents == 5_001 && pricier.grant == .zero)
        #expect(Self.quote(from: dearer, to: .expert, at: Self.january.start).kind == .deferred)
        let larger = try Plan.enterprise(monthlyPriceCents: Plan.expert.monthlyPriceCents, ownKeyMonthlyPriceCents: 0,
                                         monthlyCredits: try .credits(46_000))
        // 31,000 credits × 21/31 = 21,000 credits, free of charge: the price did not rise.
        let more = Self.quote(from: .expert, to: larger, at: CalendarMonths.date(2026, 1, 11))
        let expected = try Millicredits.credits(21_000)
        #expect(more.kind == .upgrade && more.cents == 0 && more.grant == expected)
    }

    @Test("the largest allocation and price prorate without overflow")
    func largestTermsDoNotOverflow() {
        let terms = SubscriptionTerms(plan: "Max", allocation: Millicredits(LedgerLimits.amountMax), priceCents: SubscriptionTerms.priceCentsMax)
        let now = CalendarMonths.date(2026, 1, 2)
        let cents = PlanProration.chargeCents(levelPriceCents: 0, newPriceCents: terms.priceCents, cycleStart: Self.january.start,
                                              cycleEnd: Self.january.end, at: now)
        #expect(cents == SubscriptionTerms.priceCentsMax / 31 * 30 + (SubscriptionTerms.priceCentsMax % 31) * 30 / 31)
        let grant = PlanProration.grant(levelAllocation: .zero, levelPriceCents: 0, new: terms, paidCents: cents,
                                        cycleStart: Self.january.start, cycleEnd: Self.january.end, at: now)
        #expect(grant.rawValue <= LedgerLimits.amountMax && grant.rawValue > LedgerLimits.amountMax / 31 * 29)
    }

    @Test("enterprise terms out of range are typed errors")
    func enterpriseTermsValidated() throws {
        #expect(throws: PlanError.priceOutOfRange(cents: -1)) {
            try Plan.enterprise(monthlyPriceCents: -1, ownKeyMonthlyPriceCents: 0, monthlyCredits: .zero)
        }
        #expect(throws: PlanError.priceOutOfRange(cents: Plan.monthlyPriceCentsMax + 1)) {
            try Plan.enterprise(monthlyPriceCents: 0, ownKeyMonthlyPriceCents: Plan.monthlyPriceCentsMax + 1, monthlyCredits: .zero)
        }
        #expect(throws: PlanError.creditsOutOfRange(Millicredits(-1))) {
            try Plan.enterprise(monthlyPriceCents: 0, ownKeyMonthlyPriceCents: 0, monthlyCredits: Millicredits(-1))
        }
        #expect(throws: PlanError.creditsOutOfRange(Millicredits(LedgerLimits.amountMax + 1))) {
            try Plan.enterprise(monthlyPriceCents: 0, ownKeyMonthlyPriceCents: 0, monthlyCredits: Millicredits(LedgerLimits.amountMax + 1))
        }
    }
}
