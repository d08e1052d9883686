import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

@Suite("Grants and the burn order")
struct GrantAndBurnOrderTests {
    let openAI = ChargeScope(provider: 7)
    let gpt4 = ChargeScope(provider: 7, model: 3)
    let gpt35 = ChargeScope(provider: 7, model: 4)
    let anthropic = ChargeScope(provider: 8)

    // MARK: Granting

    @Test("a grant adds a block of credits with the given terms")
    func grantAddsBlockWithTerms() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let terms = GrantTerms(kind: .monthlyAllocation, amount: credits(500), effectiveAt: t0,
                               expiresAt: t0.plus(30 * dayMillis), priority: 50, costBasisNanoUSDPerCredit: 0)
        let (receipt, entry) = try h.succeedWithEntry(.grant(account, terms))
        let grant = try #require(receipt.grant)
        #expect(grant == GrantID(tenant: account.tenant, number: receipt.sequence))
        #expect(receipt.hold == nil)
        #expect(receipt.amount == credits(500))
        #expect(receipt.availableAfter == credits(500))
        #expect(entry.kind == .granted && entry.account == account)
        #expect(moves(entry) == [Move(grant, credits(500), .created)])
        let view = try h.grantView(grant, of: account)
        #expect(view.kind == .monthlyAllocation)
        #expect(view.original == credits(500) && view.remaining == credits(500) && view.held == .zero && view.consumed == .zero)
        #expect(view.effectiveAt == t0 && view.expiresAt == t0.plus(30 * dayMillis))
        #expect(view.priority == 50 && view.costBasisNanoUSDPerCredit == 0 && view.scope == .unscoped)
        let balance = try h.balance(account)
        #expect(balance.available == credits(500) && balance.remaining == credits(500) && balance.granted == credits(500))
    }

    @Test("a grant without effectiveAt is effective at the command's time")
    func grantDefaultsEffectiveToCommandTime() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.advance(hourMillis)
        let grant = try h.grant(account, credits(1))
        #expect(try h.grantView(grant, of: account).effectiveAt == t0.plus(hourMillis))
        #expect(try h.grantView(grant, of: account).expiresAt == .never)
    }

    @Test("grant amounts must be positive and at most amountMax")
    func grantAmountValidated() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        for bad in [Millicredits.zero, Millicredits(-1), credits(-5), Millicredits(LedgerLimits.amountMax + 1), Millicredits(.min)] {
            h.reject(.grant(account, GrantTerms(kind: .purchase, amount: bad)), .invalidAmount(bad))
        }
        try h.grant(account, Millicredits(LedgerLimits.amountMax))
        #expect(try h.balance(account).available == Millicredits(LedgerLimits.amountMax))
    }

    @Test("a grant must expire after it becomes effective and after now")
    func grantExpiryBeforeEffectiveRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.advance(dayMillis)
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: credits(1), expiresAt: h.now)), .invalidExpiry(expiresAt: h.now))
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: credits(1), expiresAt: h.now.plus(-1))), .invalidExpiry(expiresAt: h.now.plus(-1)))
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: credits(1), effectiveAt: t0.plus(5 * dayMillis),
                                            expiresAt: t0.plus(5 * dayMillis))), .invalidExpiry(expiresAt: t0.plus(5 * dayMillis)))
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: credits(1), effectiveAt: t0.plus(5 * dayMillis),
                                            expiresAt: t0.plus(4 * dayMillis))), .invalidExpiry(expiresAt: t0.plus(4 * dayMillis)))
        // A backdated grant that has already expired would never be spendable.
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: credits(1), effectiveAt: t0, expiresAt: t0.plus(hourMillis))),
                 .invalidExpiry(expiresAt: t0.plus(hourMillis)))
        // One millisecond of life is enough.
        try h.grant(account, credits(1), expiresAt: h.now.plus(1))
    }

    @Test("an account holds at most 1024 live grants")
    func grantsPerAccountLimit() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        for _ in 0 ..< LedgerLimits.grantsPerAccountMax {
            try h.grant(account, Millicredits(1))
        }
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: Millicredits(1))), .limitReached(.grantsPerAccount))
        h.reject(.adjust(account, credits(1), reason: "goodwill"), .limitReached(.grantsPerAccount))
        // Spending retires depleted never-expiring grants, which makes room again.
        try h.debit(account, Millicredits(2))
        #expect(try h.balance(account).grants.count == LedgerLimits.grantsPerAccountMax - 2)
        try h.grant(account, Millicredits(1))
    }

    @Test("a grant that would overflow the account's 64-bit total is rejected")
    func grantTotalOverflowRejected() throws {
        // Few remembered keys keep the per-step invariant check (which walks the key table) fast.
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyKeysMax: 64))
        let account = try h.openIndividual(1)
        let most = Millicredits(LedgerLimits.amountMax)
        // Lifetime totals keep growing while grants are spent and retired.
        let fits = Int64.max / LedgerLimits.amountMax
        try h.sparselyChecked(every: 500) { h in
            for _ in 0 ..< fits {
                try h.grant(account, most)
                try h.debit(account, most)
            }
        }
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: most)), .amountOverflow)
        h.reject(.adjust(account, most, reason: "one too many"), .amountOverflow)
        let headroom = Int64.max - fits * LedgerLimits.amountMax
        try h.grant(account, Millicredits(headroom))
        #expect(try h.balance(account).granted == Millicredits(.max))
        h.reject(.grant(account, GrantTerms(kind: .purchase, amount: Millicredits(1))), .amountOverflow)
    }

    @Test("every kind of grant is recorded with its kind")
    func grantKindsRecorded() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        for kind in GrantKind.allCases {
            let grant = try h.grant(account, credits(1), kind: kind)
            #expect(try h.grantView(grant, of: account).kind == kind)
        }
        #expect(try h.balance(account).available == credits(Int64(GrantKind.allCases.count)))
    }

    // MARK: Burn order

    @Test("a grant scoped to the charged provider burns first, before any unscoped grant")
    func debitBurnsScopedGrantFirstForMatchingCharge() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        // The unscoped grant would win on every other rule: priority, expiry, cost, age.
        let unscoped = try h.grant(account, credits(10), expiresAt: t0.plus(dayMillis), priority: 1)
        let scoped = try h.grant(account, credits(10), expiresAt: t0.plus(300 * dayMillis), priority: 200,
                                 costBasis: 10_000_000, scope: openAI)
        try h.debit(account, credits(4), scope: gpt4)
        var remaining = try h.remainingByGrant(account)
        #expect(remaining[scoped] == credits(6))
        #expect(remaining[unscoped] == credits(10))
        // Past the scoped grant, the charge continues on unscoped grants.
        let receipt = try h.debit(account, credits(8), scope: openAI)
        remaining = try h.remainingByGrant(account)
        #expect(remaining[scoped] == .zero)
        #expect(remaining[unscoped] == credits(8))
        #expect(receipt.availableAfter == credits(8))
    }

    @Test("a scoped grant is not used for a charge of another provider or an unscoped charge")
    func scopedGrantNotUsedForNonMatchingCharge() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let unscoped = try h.grant(account, credits(10))
        let scoped = try h.grant(account, credits(50), scope: openAI)
        #expect(try h.available(account) == credits(10))
        #expect(try h.available(account, scope: anthropic) == credits(10))
        #expect(try h.available(account, scope: gpt4) == credits(60))
        try h.debit(account, credits(3), scope: anthropic)
        try h.debit(account, credits(3))
        var remaining = try h.remainingByGrant(account)
        #expect(remaining[scoped] == credits(50))
        #expect(remaining[unscoped] == credits(4))
        h.reject(.debit(account, credits(5), scope: anthropic), .insufficientCredits(available: credits(4), requested: credits(5)))
        h.reject(.debit(account, credits(5), scope: .unscoped), .insufficientCredits(available: credits(4), requested: credits(5)))
        h.reject(.reserve(account, credits(5), timeoutMillis: minuteMillis, scope: anthropic),
                 .insufficientCredits(available: credits(4), requested: credits(5)))
        remaining = try h.remainingByGrant(account)
        #expect(remaining[scoped] == credits(50))
    }

    @Test("a grant scoped to a model pays only for that model; a provider scope pays for all its models")
    func modelScopeCoversOnlyThatModel() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let modelGrant = try h.grant(account, credits(10), expiresAt: t0.plus(dayMillis), scope: gpt4)
        let providerGrant = try h.grant(account, credits(10), expiresAt: t0.plus(dayMillis), scope: openAI)
        #expect(try h.available(account, scope: gpt4) == credits(20))
        #expect(try h.available(account, scope: gpt35) == credits(10))
        #expect(try h.available(account, scope: openAI) == credits(10), "a provider-level charge names no model")
        h.reject(.debit(account, credits(11), scope: gpt35), .insufficientCredits(available: credits(10), requested: credits(11)))
        try h.debit(account, credits(2), scope: gpt35)
        var remaining = try h.remainingByGrant(account)
        #expect(remaining[modelGrant] == credits(10))
        #expect(remaining[providerGrant] == credits(8))
        try h.debit(account, credits(18), scope: gpt4)
        remaining = try h.remainingByGrant(account)
        #expect(remaining[modelGrant] == .zero)
        #expect(remaining[providerGrant] == .zero)
    }

    @Test("a lower priority number burns first, whatever the expiry")
    func debitBurnsLowerPriorityNumberFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let expiringSoon = try h.grant(account, credits(10), expiresAt: t0.plus(dayMillis), priority: 100)
        let neverExpiring = try h.grant(account, credits(10), priority: 10)
        #expect(try h.balance(account).grants.map(\.id) == [neverExpiring, expiringSoon], "grants are listed in burn order")
        try h.debit(account, credits(12))
        let remaining = try h.remainingByGrant(account)
        #expect(remaining[neverExpiring] == nil, "the depleted never-expiring grant is retired")
        #expect(remaining[expiringSoon] == credits(8))
    }

    @Test("among equal priorities, the soonest expiry burns first and never-expiring last")
    func debitBurnsSoonestExpiringGrantFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let never = try h.grant(account, credits(10))
        let in30Days = try h.grant(account, credits(10), expiresAt: t0.plus(30 * dayMillis))
        let in10Days = try h.grant(account, credits(10), expiresAt: t0.plus(10 * dayMillis))
        #expect(try h.balance(account).grants.map(\.id) == [in10Days, in30Days, never])
        try h.debit(account, credits(4))
        var remaining = try h.remainingByGrant(account)
        #expect(remaining[in10Days] == credits(6) && remaining[in30Days] == credits(10) && remaining[never] == credits(10))
        let (_, entry) = try h.succeedWithEntry(.debit(account, credits(12), scope: .unscoped))
        remaining = try h.remainingByGrant(account)
        #expect(remaining[in10Days] == .zero && remaining[in30Days] == credits(4) && remaining[never] == credits(10))
        #expect(moves(entry) == [Move(in10Days, credits(6), .consumed),
                                           Move(in30Days, credits(6), .consumed)])
        try h.debit(account, credits(5))
        remaining = try h.remainingByGrant(account)
        #expect(remaining[in30Days] == .zero && remaining[never] == credits(9))
    }

    @Test("a debit across four grants records every movement in burn order, also when read back later")
    func debitAcrossManyGrantsKeepsEveryMovement() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let days = [40, 10, 30, 20].map { Int64($0) * dayMillis }
        let grants = try days.map { try h.grant(account, credits(5), expiresAt: t0.plus($0)) }
        let (_, entry) = try h.succeedWithEntry(.debit(account, credits(18), scope: .unscoped))
        let expected = [Move(grants[1], credits(5), .consumed), Move(grants[3], credits(5), .consumed),
                        Move(grants[2], credits(5), .consumed), Move(grants[0], credits(3), .consumed)]
        #expect(moves(entry) == expected)
        // Later commands overwrite the window's newest slot; the entry read back from the
        // window's history still has all four movements (two of them were spilled).
        try h.debit(account, credits(1))
        let history = h.ledger.recentEntries.filter { $0.sequence == entry.sequence }
        #expect(history.count == 1)
        #expect(history.first.map(moves) == expected)
    }

    @Test("among equal priority and expiry, the cheaper cost basis burns first")
    func debitBurnsCheaperCostBasisFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let expiry = t0.plus(90 * dayMillis)
        let paid = try h.grant(account, credits(10), kind: .purchase, expiresAt: expiry, costBasis: 10_000_000)
        let discounted = try h.grant(account, credits(10), kind: .purchase, expiresAt: expiry, costBasis: 8_500_000)
        let free = try h.grant(account, credits(10), kind: .promotional, expiresAt: expiry, costBasis: 0)
        #expect(try h.balance(account).grants.map(\.id) == [free, discounted, paid])
        try h.debit(account, credits(15))
        let remaining = try h.remainingByGrant(account)
        #expect(remaining[free] == .zero && remaining[discounted] == credits(5) && remaining[paid] == credits(10))
    }

    @Test("among otherwise equal grants, the older effective date burns first")
    func debitBurnsOlderGrantFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.advance(dayMillis)
        let newer = try h.grant(account, credits(10))
        // Granted later, but effective since t0: it is the older block.
        let older = try h.grant(account, credits(10), effectiveAt: t0)
        #expect(older.number > newer.number)
        #expect(try h.balance(account).grants.map(\.id) == [older, newer])
        try h.debit(account, credits(3))
        let remaining = try h.remainingByGrant(account)
        #expect(remaining[older] == credits(7) && remaining[newer] == credits(10))
    }

    @Test("among identical grants, the lower grant number burns first")
    func debitBurnsLowerGrantNumberFirstOnTies() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let first = try h.grant(account, credits(10), effectiveAt: t0, expiresAt: t0.plus(dayMillis))
        let second = try h.grant(account, credits(10), effectiveAt: t0, expiresAt: t0.plus(dayMillis))
        #expect(first.number < second.number)
        try h.debit(account, credits(13))
        let remaining = try h.remainingByGrant(account)
        #expect(remaining[first] == .zero && remaining[second] == credits(7))
    }

    @Test("all burn-order rules combined give the documented order")
    func burnOrderAllRulesCombined() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.advance(dayMillis)
        let soon = t0.plus(10 * dayMillis)
        // Created deliberately out of order; the comment gives each grant's place in the burn
        // order of a charge for provider 8.
        let g7 = try h.grant(account, credits(1), priority: 100)                                                  // never expires
        let g6 = try h.grant(account, credits(1), expiresAt: soon, priority: 100, costBasis: 9)                   // dearer
        let g4 = try h.grant(account, credits(1), expiresAt: soon, priority: 100, costBasis: 1)                   // newer than g3
        let g3 = try h.grant(account, credits(1), effectiveAt: t0, expiresAt: soon, priority: 100, costBasis: 1) // oldest
        let g2 = try h.grant(account, credits(1), expiresAt: t0.plus(20 * dayMillis), priority: 50)              // priority 50
        let g1 = try h.grant(account, credits(1), expiresAt: t0.plus(20 * dayMillis), priority: 100, scope: anthropic) // scoped
        let g5 = try h.grant(account, credits(1), effectiveAt: t0.plus(dayMillis), expiresAt: soon, priority: 100,
                             costBasis: 1)                                                                        // as old as g4, higher number
        let order = [g1, g2, g3, g4, g5, g6, g7]
        var burned: [GrantID] = []
        for _ in order {
            let (_, entry) = try h.succeedWithEntry(.debit(account, credits(1), scope: anthropic))
            #expect(entry.movements.count == 1)
            if let movement = entry.movements.first { burned.append(GrantID(tenant: account.tenant, number: movement.grant)) }
        }
        #expect(burned == order)
    }

    // MARK: Time

    @Test("a grant that is not yet effective cannot be spent until it is")
    func notYetEffectiveGrantIsNotSpendable() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let tomorrow = t0.plus(dayMillis)
        let grant = try h.grant(account, credits(10), effectiveAt: tomorrow)
        let balance = try h.balance(account)
        #expect(balance.available == .zero)
        #expect(balance.remaining == credits(10), "remaining counts the not yet effective grant")
        h.reject(.debit(account, credits(1), scope: .unscoped), .insufficientCredits(available: .zero, requested: credits(1)))
        h.reject(.reserve(account, credits(1), timeoutMillis: minuteMillis, scope: .unscoped),
                 .insufficientCredits(available: .zero, requested: credits(1)))
        h.move(to: tomorrow.plus(-1))
        #expect(try h.available(account) == .zero)
        h.move(to: tomorrow)
        #expect(try h.available(account) == credits(10))
        try h.debit(account, credits(4))
        #expect(try h.remainingByGrant(account)[grant] == credits(6))
    }

    @Test("a grant past its expiry cannot be spent")
    func expiredGrantIsNotSpendable() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let expiry = t0.plus(hourMillis)
        let expiring = try h.grant(account, credits(10), expiresAt: expiry)
        let lasting = try h.grant(account, credits(3))
        h.move(to: expiry.plus(-1))
        #expect(try h.available(account) == credits(13))
        h.move(to: expiry)
        #expect(try h.available(account) == credits(3), "a grant is spendable strictly before its expiry")
        h.reject(.debit(account, credits(4), scope: .unscoped), .insufficientCredits(available: credits(3), requested: credits(4)))
        try h.debit(account, credits(2))
        let remaining = try h.remainingByGrant(account)
        #expect(remaining[expiring] == credits(10), "the expired grant was not touched")
        #expect(remaining[lasting] == credits(1))
    }

    @Test("grants can be added to an organisation pool")
    func poolAcceptsGrants() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)], members: [])
        try h.grant(org.pool, credits(20), kind: .promotional)
        #expect(try h.balance(org.pool).available == credits(120))
    }
}
