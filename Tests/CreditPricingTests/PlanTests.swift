import CreditPricing
import Testing

@Suite("Plans and plan changes")
struct PlanTests {
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

    @Test("an upgrade mid-cycle grants the allocation difference now", arguments: [
        (Plan.basic, Plan.pro, 3_000), (Plan.pro, Plan.expert, 10_000), (Plan.basic, Plan.expert, 13_000),
    ] as [(Plan, Plan, Int64)])
    func upgradeGrantsDifferenceNow(from: Plan, to: Plan, credits: Int64) throws {
        #expect(PlanChange.decide(from: from, to: to) == .upgrade(grantNow: try .credits(credits)))
    }

    @Test("a downgrade takes effect next cycle and grants nothing now",
          arguments: [(Plan.pro, Plan.basic), (Plan.expert, Plan.basic), (Plan.expert, Plan.pro)])
    func downgradeNextCycle(from: Plan, to: Plan) {
        #expect(PlanChange.decide(from: from, to: to) == .downgrade)
    }

    @Test("the same plan is no change")
    func samePlanUnchanged() {
        #expect(PlanChange.decide(from: .pro, to: .pro) == .unchanged)
    }

    @Test("enterprise plans: the host's terms; same credits at a higher price upgrades with nothing to grant")
    func enterprisePlans() throws {
        let contract = try Plan.enterprise(monthlyPriceCents: 500_000, ownKeyMonthlyPriceCents: 300_000,
                                           monthlyCredits: try .credits(100_000))
        #expect(contract.name == "Enterprise")
        #expect(contract.monthlyCredits == (try .credits(100_000)))
        #expect(PlanChange.decide(from: .expert, to: contract) == .upgrade(grantNow: try .credits(85_000)))
        #expect(PlanChange.decide(from: contract, to: .expert) == .downgrade)
        let dearer = try Plan.enterprise(monthlyPriceCents: 30_000, ownKeyMonthlyPriceCents: 20_000,
                                         monthlyCredits: Plan.expert.monthlyCredits)
        #expect(PlanChange.decide(from: .expert, to: dearer) == .upgrade(grantNow: .zero))
        #expect(PlanChange.decide(from: dearer, to: .expert) == .downgrade)
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
