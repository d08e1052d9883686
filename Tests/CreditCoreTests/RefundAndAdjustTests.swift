import CreditCore
import Testing

@Suite("Refunds and adjustments")
struct RefundAndAdjustTests {
    // MARK: Refund

    @Test("a refund refills grants in reverse burn order, each up to what it consumed")
    func refundRefillsGrantsInReverseBurnOrder() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let first = try h.grant(account, credits(10), expiresAt: t0.plus(10 * dayMillis))
        let second = try h.grant(account, credits(10), expiresAt: t0.plus(20 * dayMillis))
        let last = try h.grant(account, credits(10))
        let debitKey = h.freshKey()
        try h.debit(account, credits(25), key: debitKey)
        var remaining = try h.remainingByGrant(account)
        #expect(remaining[first] == .zero && remaining[second] == .zero && remaining[last] == credits(5))
        let (receipt, entry) = try h.succeedWithEntry(.refund(account, debit: debitKey, credits(12)))
        #expect(entry.kind == .refunded)
        #expect(receipt.amount == credits(12) && receipt.availableAfter == credits(17))
        #expect(receipt.grant == nil, "everything fitted into existing grants")
        #expect(moves(entry) == [Move(last, credits(5), .refilled), Move(second, credits(7), .refilled)])
        remaining = try h.remainingByGrant(account)
        #expect(remaining[first] == .zero && remaining[second] == credits(7) && remaining[last] == credits(10))
        #expect(try h.grantView(last, of: account).consumed == .zero)
        #expect(try h.grantView(second, of: account).consumed == credits(3))
        #expect(try h.balance(account).consumed == credits(13))
    }

    @Test("a refund beyond what is still refundable is rejected")
    func refundBeyondRefundableRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let debitKey = h.freshKey()
        try h.debit(account, credits(25), key: debitKey)
        h.reject(.refund(account, debit: debitKey, Millicredits(25_001)),
                 .refundExceedsDebit(refundable: credits(25), requested: Millicredits(25_001)))
        try h.succeed(.refund(account, debit: debitKey, credits(12)))
        h.reject(.refund(account, debit: debitKey, credits(14)), .refundExceedsDebit(refundable: credits(13), requested: credits(14)))
        try h.succeed(.refund(account, debit: debitKey, credits(13)))
        h.reject(.refund(account, debit: debitKey, Millicredits(1)), .refundExceedsDebit(refundable: .zero, requested: Millicredits(1)))
        #expect(try h.balance(account).available == credits(100))
    }

    @Test("a refund of a charge an expiring allocation paid goes back to that allocation, not to a never-expiring promotion")
    func refundReturnsToTheChargesGrant() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let allocation = try h.grant(account, credits(10), kind: .monthlyAllocation, expiresAt: t0.plus(30 * dayMillis))
        let promotion = try h.grant(account, credits(10), kind: .promotional)
        let first = h.freshKey()
        try h.debit(account, credits(10), key: first) // all from the allocation (it expires first)
        try h.debit(account, credits(5))              // from the promotion
        let (_, entry) = try h.succeedWithEntry(.refund(account, debit: first, credits(5)))
        #expect(moves(entry) == [Move(allocation, credits(5), .refilled)])
        #expect(try h.grantView(allocation, of: account).remaining == credits(5))
        #expect(try h.grantView(promotion, of: account).remaining == credits(5), "the promotion keeps what it had")
    }

    @Test("a refund into a grant that has expired since waits for the scheduler's expiry into grace, like the grant's other credits")
    func refundIntoExpiredGrant() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        // Within the idempotency window (24 h): the refund names a remembered debit.
        let allocation = try h.grant(account, credits(10), kind: .monthlyAllocation, expiresAt: t0.plus(10 * 3_600_000))
        try h.grant(account, credits(10), kind: .promotional)
        let key = h.freshKey()
        try h.debit(account, credits(8), key: key)
        h.move(to: t0.plus(11 * 3_600_000))
        // Expired, with 2 left: into grace.
        try h.succeed(.expireGrants(account, graceMillis: 30 * dayMillis))
        #expect(try h.balance(account).inGrace == credits(2))
        let (_, entry) = try h.succeedWithEntry(.refund(account, debit: key, credits(8)))
        #expect(moves(entry) == [Move(allocation, credits(8), .refilled)])
        let balance = try h.balance(account)
        #expect(balance.inGrace == credits(10), "the refund joins the allocation in grace")
        #expect(balance.available == credits(10), "only the promotion is spendable")
    }

    @Test("a grant the charge used up and that retired since comes back as it was: kind, expiry, cost basis; last taken, first returned")
    func refundRelinksRetiredGrant() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let expiring = try h.grant(account, credits(10), expiresAt: t0.plus(10 * dayMillis))
        let paid = try h.succeed(.grant(account, GrantTerms(kind: .purchase, amount: credits(5), costBasisNanoUSDPerCredit: 10_000_000)))
        let purchase = try #require(paid.grant)
        let debitKey = h.freshKey()
        try h.debit(account, credits(15), key: debitKey)
        #expect(try h.balance(account).grants.map(\.id) == [expiring], "the used-up purchase retired")
        let (receipt, entry) = try h.succeedWithEntry(.refund(account, debit: debitKey, credits(6)))
        #expect(receipt.grant == nil, "no new grant")
        // The purchase was taken last: it gets its 5 back first, then the expiring grant 1.
        #expect(moves(entry) == [Move(purchase, credits(5), .refilled), Move(expiring, credits(1), .refilled)])
        let view = try h.grantView(purchase, of: account)
        #expect(view.kind == .purchase && view.original == credits(5) && view.remaining == credits(5) && view.expiresAt == .never)
        #expect(receipt.availableAfter == credits(6))
        let rest = try h.succeedWithEntry(.refund(account, debit: debitKey, credits(9)))
        #expect(moves(rest.entry) == [Move(expiring, credits(9), .refilled)])
        #expect(try h.grantView(expiring, of: account).remaining == credits(10))
    }

    @Test("what no grant can take back — its grant long forgotten — becomes a never-expiring refund grant")
    func refundRemainderCreatesRefundGrant() throws {
        // A small idempotency table: its retired-grant memory holds at most 64 grants.
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyKeysMax: 64))
        let other = try h.openIndividual(2)
        for _ in 0 ..< 70 { try h.grant(other, credits(1)) }
        let account = try h.openIndividual(1)
        let expiring = try h.grant(account, credits(10), expiresAt: t0.plus(10 * dayMillis))
        try h.grant(account, credits(5)) // never expires: retired once spent
        let debitKey = h.freshKey()
        try h.debit(account, credits(15), key: debitKey)
        // 70 grants retire in one debit, after the purchase: the purchase's memory goes (while
        // the debit, 2 commands ago, is still remembered).
        try h.debit(other, credits(70))
        let (receipt, entry) = try h.succeedWithEntry(.refund(account, debit: debitKey, credits(15)))
        let created = try #require(receipt.grant)
        #expect(moves(entry) == [Move(expiring, credits(10), .refilled), Move(created, credits(5), .created)])
        let view = try h.grantView(created, of: account)
        #expect(view.kind == .refund && view.original == credits(5) && view.remaining == credits(5))
        #expect(view.expiresAt == .never && view.effectiveAt == h.now)
        #expect(receipt.availableAfter == credits(15))
    }

    @Test("a refund repays debt before refilling grants")
    func refundRepaysDebtFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(20))
        let grant = try h.grant(account, credits(10), expiresAt: t0.plus(10 * dayMillis))
        let debitKey = h.freshKey()
        try h.debit(account, credits(25), key: debitKey)
        #expect(try h.balance(account).debt == credits(15))
        let (receipt, entry) = try h.succeedWithEntry(.refund(account, debit: debitKey, credits(20)))
        #expect(entry.debtAfter == .zero)
        #expect(receipt.availableAfter == credits(5))
        #expect(moves(entry) == [Move(grant, credits(5), .refilled)])
        let balance = try h.balance(account)
        #expect(balance.debt == .zero && balance.available == credits(5) && balance.consumed == credits(5))
    }

    @Test("a refund smaller than the debt only reduces the debt")
    func refundSmallerThanDebtReducesDebt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(10))
        let hold = try h.reserve(account, credits(10))
        let settleKey = h.freshKey()
        try h.succeed(.settle(hold, actual: credits(50)), key: settleKey)
        #expect(try h.balance(account).debt == credits(40))
        let receipt = try h.succeed(.refund(account, debit: settleKey, credits(30)))
        #expect(receipt.availableAfter == credits(-10))
        #expect(try h.balance(account).debt == credits(10))
        #expect(try h.balance(account).grants.isEmpty, "no grant was created or refilled")
    }

    @Test("a settle's charge can be refunded like a debit")
    func settleChargeIsRefundable() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100), expiresAt: t0.plus(dayMillis))
        let hold = try h.reserve(account, credits(30))
        let settleKey = h.freshKey()
        try h.succeed(.settle(hold, actual: credits(20)), key: settleKey)
        h.reject(.refund(account, debit: settleKey, credits(21)), .refundExceedsDebit(refundable: credits(20), requested: credits(21)))
        let receipt = try h.succeed(.refund(account, debit: settleKey, credits(20)))
        #expect(receipt.availableAfter == credits(100))
    }

    @Test("a refund must name a retained charge of the same account")
    func refundOfUnknownDebitRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let other = AccountID(tenant: account.tenant, number: 1)
        try h.succeed(.openAccount(other, .standard))
        let stranger = try h.openIndividual(2)
        for id in [account, other, stranger] { try h.grant(id, credits(100)) }

        let never = IdempotencyKey(high: 0xDEAD, low: 0xBEEF)
        h.reject(.refund(account, debit: never, credits(1)), .unknownDebit(never))

        let otherDebit = h.freshKey()
        try h.debit(other, credits(10), key: otherDebit)
        h.reject(.refund(account, debit: otherDebit, credits(1)), .unknownDebit(otherDebit))
        h.reject(.refund(stranger, debit: otherDebit, credits(1)), .unknownDebit(otherDebit))

        let grantKey = h.freshKey()
        try h.succeed(.grant(account, GrantTerms(kind: .purchase, amount: credits(1))), key: grantKey)
        h.reject(.refund(account, debit: grantKey, credits(1)), .unknownDebit(grantKey))

        let failedDebit = h.freshKey()
        h.reject(.debit(account, credits(1_000), scope: .unscoped), key: failedDebit)
        h.reject(.refund(account, debit: failedDebit, credits(1)), .unknownDebit(failedDebit))

        let reserveKey = h.freshKey()
        try h.succeed(.reserve(account, credits(5), timeoutMillis: minuteMillis, scope: .unscoped), key: reserveKey)
        h.reject(.refund(account, debit: reserveKey, credits(1)), .unknownDebit(reserveKey))

        try h.succeed(.refund(other, debit: otherDebit, credits(10)))
    }

    @Test("a debit whose key was forgotten can no longer be refunded")
    func refundOfForgottenDebitRejected() throws {
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyKeysMax: 4))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let debitKey = h.freshKey()
        try h.debit(account, credits(10), key: debitKey)
        for _ in 0 ..< 4 { try h.debit(account, credits(1)) } // idempotencyKeysMax newer keys
        h.reject(.refund(account, debit: debitKey, credits(1)), .unknownDebit(debitKey))
    }

    @Test("refund amounts must be positive and at most amountMax")
    func refundAmountValidated() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let debitKey = h.freshKey()
        try h.debit(account, credits(10), key: debitKey)
        for bad in [Millicredits.zero, Millicredits(-1), Millicredits(LedgerLimits.amountMax + 1)] {
            h.reject(.refund(account, debit: debitKey, bad), .invalidAmount(bad))
        }
    }

    @Test("a refund that needs a new grant respects the live grant limit")
    func refundGrantRespectsGrantLimit() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let filler = ChargeScope(provider: 9) // scoped grants are neither burned by nor refilled for unscoped charges
        for _ in 0 ..< LedgerLimits.grantsPerAccountMax - 1 { try h.grant(account, Millicredits(1), scope: filler) }
        try h.grant(account, credits(10))
        let debitKey = h.freshKey()
        try h.debit(account, credits(10), key: debitKey)
        try h.grant(account, Millicredits(1), scope: filler)
        #expect(try h.balance(account).grants.count == LedgerLimits.grantsPerAccountMax)
        h.reject(.refund(account, debit: debitKey, credits(10)), .limitReached(.grantsPerAccount))
        try h.debit(account, Millicredits(1), scope: filler) // frees a slot
        try h.succeed(.refund(account, debit: debitKey, credits(10)))
    }

    @Test
    func refundOverflowingLedgerTotalChangesNothing() throws {
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyKeysMax: 64))
        let most = Millicredits(LedgerLimits.amountMax)
        let whale = try h.openIndividual(1)
        try h.sparselyChecked(every: 500) { h in
            for _ in 0 ..< Int64.max / LedgerLimits.amountMax {
                try h.grant(whale, most)
                try h.debit(whale, most)
            }
        }
        let account = try h.openIndividual(2, overdraft: credits(1_000))
        try h.grant(account, credits(100))
        let debitKey = h.freshKey()
        try h.debit(account, credits(1_100), key: debitKey)
        #expect(try h.balance(account).debt == credits(1_000))
        // A purchase repays the debt: the charge's debt part can no longer go back to debt.
        try h.grant(account, credits(1_000))
        #expect(try h.balance(account).debt == .zero)
        // Top the ledger's granted total up to 50 credits below Int64.max.
        let total = try h.balance(whale).granted.rawValue + h.balance(account).granted.rawValue
        try h.grant(whale, Millicredits(Int64.max - total - 50_000))
        // Its debt part needs a 1,000-credit refund grant the total cannot hold (`reject`
        // checks that nothing changed: the first grant is not relinked either).
        h.reject(.refund(account, debit: debitKey, credits(1_100)), .amountOverflow)
    }

    // MARK: Adjust

    @Test("a positive adjustment adds an adjustment grant and records the reason")
    func positiveAdjustCreatesAdjustmentGrant() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let (receipt, entry) = try h.succeedWithEntry(.adjust(account, credits(7), reason: "goodwill for outage #12"))
        #expect(entry.kind == .adjusted)
        #expect(entry.reason == "goodwill for outage #12")
        let grant = try #require(receipt.grant)
        #expect(receipt.amount == credits(7) && receipt.availableAfter == credits(7))
        let view = try h.grantView(grant, of: account)
        #expect(view.kind == .adjustment && view.original == credits(7) && view.expiresAt == .never)
        #expect(view.priority == GrantTerms.priorityDefault && view.costBasisNanoUSDPerCredit == 0 && view.scope == .unscoped)
    }

    @Test("a positive adjustment repays debt first")
    func positiveAdjustRepaysDebt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(10))
        try h.debit(account, credits(4))
        let receipt = try h.succeed(.adjust(account, credits(10), reason: "credit note"))
        #expect(receipt.availableAfter == credits(6))
        #expect(try h.balance(account).debt == .zero)
    }

    @Test("a negative adjustment removes credits in burn order")
    func negativeAdjustRemovesInBurnOrder() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let soon = try h.grant(account, credits(10), expiresAt: t0.plus(dayMillis))
        let later = try h.grant(account, credits(10))
        let scoped = try h.grant(account, credits(10), scope: ChargeScope(provider: 7))
        let (receipt, entry) = try h.succeedWithEntry(.adjust(account, credits(-12), reason: "duplicate top-up"))
        #expect(receipt.amount == credits(-12))
        #expect(receipt.availableAfter == credits(8))
        #expect(receipt.grant == nil)
        #expect(entry.reason == "duplicate top-up")
        #expect(moves(entry) == [Move(soon, credits(10), .consumed), Move(later, credits(2), .consumed)])
        let remaining = try h.remainingByGrant(account)
        #expect(remaining[soon] == .zero && remaining[later] == credits(8) && remaining[scoped] == credits(10))
        #expect(try h.balance(account).consumed == credits(12))
    }

    @Test("a negative adjustment cannot take more than is available")
    func negativeAdjustBeyondAvailableRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(100))
        try h.grant(account, credits(10))
        try h.grant(account, credits(50), scope: ChargeScope(provider: 7))
        _ = try h.reserve(account, credits(3))
        h.reject(.adjust(account, credits(-8), reason: "claw back"), .insufficientCredits(available: credits(7), requested: credits(8)))
        try h.succeed(.adjust(account, credits(-7), reason: "claw back"))
        #expect(try h.balance(account).debt == .zero, "an adjustment never uses the overdraft")
    }

    @Test("an adjustment needs a reason of at most 256 bytes")
    func adjustReasonRequired() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(10))
        h.reject(.adjust(account, credits(1), reason: ""), .invalidInput(.reasonRequired))
        h.reject(.adjust(account, credits(-1), reason: ""), .invalidInput(.reasonRequired))
        h.reject(.adjust(account, .zero, reason: ""), .invalidInput(.reasonRequired))
        h.reject(.adjust(account, credits(1), reason: String(repeating: "r", count: LedgerLimits.textBytesMax + 1)),
                 .invalidInput(.textTooLong))
        h.reject(.adjust(account, credits(1), reason: String(repeating: "€", count: 86)), .invalidInput(.textTooLong)) // 258 bytes
        let longest = String(repeating: "r", count: LedgerLimits.textBytesMax)
        let (_, entry) = try h.succeedWithEntry(.adjust(account, credits(1), reason: longest))
        #expect(entry.reason == longest)
    }

    @Test("adjustment amounts must be non-zero and within amountMax either way")
    func adjustAmountValidated() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        for bad in [Millicredits.zero, Millicredits(LedgerLimits.amountMax + 1), Millicredits(-LedgerLimits.amountMax - 1), Millicredits(.min)] {
            h.reject(.adjust(account, bad, reason: "x"), .invalidAmount(bad))
        }
        try h.succeed(.adjust(account, Millicredits(LedgerLimits.amountMax), reason: "max"))
        try h.succeed(.adjust(account, Millicredits(-LedgerLimits.amountMax), reason: "min"))
        #expect(try h.balance(account).available == .zero)
    }
}
