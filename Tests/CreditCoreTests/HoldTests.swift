import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

@Suite("Holds: reserve, settle, release, time-out")
struct HoldTests {
    @Test("a reserve lowers the available balance and opens a hold")
    func reserveLowersAvailable() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let grant = try h.grant(account, credits(100))
        let (receipt, entry) = try h.succeedWithEntry(.reserve(account, credits(30), timeoutMillis: minuteMillis, scope: .unscoped))
        let hold = try #require(receipt.hold)
        #expect(hold == HoldID(tenant: account.tenant, number: receipt.sequence))
        #expect(receipt.grant == nil)
        #expect(receipt.amount == credits(30) && receipt.availableAfter == credits(70))
        #expect(entry.kind == .reserved)
        #expect(moves(entry) == [Move(grant, credits(30), .held)])
        let view = try #require(h.ledger.hold(hold))
        #expect(view.id == hold && view.principal == account && view.amount == credits(30))
        #expect(view.expiresAt == h.now.plus(minuteMillis))
        let balance = try h.balance(account)
        #expect(balance.available == credits(70) && balance.held == credits(30) && balance.remaining == credits(70))
        #expect(balance.consumed == .zero)
        let grantView = try h.grantView(grant, of: account)
        #expect(grantView.held == credits(30) && grantView.remaining == credits(70))
        #expect(h.ledger.openHoldCount == 1)
    }

    @Test("reserved credits cannot be debited or reserved again")
    func reservedCreditsAreNotSpendable() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        _ = try h.reserve(account, credits(80))
        h.reject(.debit(account, credits(21), scope: .unscoped), .insufficientCredits(available: credits(20), requested: credits(21)))
        h.reject(.reserve(account, credits(21), timeoutMillis: minuteMillis, scope: .unscoped),
                 .insufficientCredits(available: credits(20), requested: credits(21)))
        try h.debit(account, credits(20))
    }

    @Test("a settle below the reserve consumes the actual cost and returns the rest")
    func settleBelowReserveReturnsRest() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let grant = try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30))
        let (receipt, entry) = try h.succeedWithEntry(.settle(hold, actual: credits(20)))
        #expect(receipt.amount == credits(20) && receipt.availableAfter == credits(80))
        #expect(entry.kind == .settled)
        #expect(moves(entry) == [Move(grant, credits(20), .consumed),
                                           Move(grant, credits(10), .unheld)])
        let balance = try h.balance(account)
        #expect(balance.available == credits(80) && balance.held == .zero && balance.consumed == credits(20))
        #expect(h.ledger.hold(hold) == nil)
        #expect(h.ledger.openHoldCount == 0)
    }

    @Test("a settle at zero returns the whole reserve")
    func settleAtZeroReturnsEverything() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30))
        let receipt = try h.succeed(.settle(hold, actual: .zero))
        #expect(receipt.amount == .zero && receipt.availableAfter == credits(100))
        #expect(try h.balance(account).consumed == .zero)
    }

    @Test("a settle above the reserve charges the excess from the balance")
    func settleAboveReserveChargesExcess() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30))
        let receipt = try h.succeed(.settle(hold, actual: credits(45)))
        #expect(receipt.amount == credits(45) && receipt.availableAfter == credits(55))
        let balance = try h.balance(account)
        #expect(balance.available == credits(55) && balance.consumed == credits(45) && balance.debt == .zero)
    }

    @Test("a settle the balance cannot cover records the rest as debt, never drops it")
    func settleBeyondBalanceRecordsDebt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(50))
        let hold = try h.reserve(account, credits(40))
        let (receipt, entry) = try h.succeedWithEntry(.settle(hold, actual: credits(80)))
        #expect(receipt.amount == credits(80))
        #expect(receipt.availableAfter == credits(-30))
        #expect(entry.availableAfter == credits(-30) && entry.debtAfter == credits(30))
        var balance = try h.balance(account)
        #expect(balance.debt == credits(30) && balance.available == credits(-30) && balance.consumed == credits(80))
        // Nothing more can be spent while in debt.
        h.reject(.debit(account, Millicredits(1), scope: .unscoped), .insufficientCredits(available: credits(-30), requested: Millicredits(1)))
        h.reject(.reserve(account, Millicredits(1), timeoutMillis: minuteMillis, scope: .unscoped),
                 .insufficientCredits(available: credits(-30), requested: Millicredits(1)))
        // The next credits repay the debt first.
        let (grantReceipt, grantEntry) = try h.succeedWithEntry(.grant(account, GrantTerms(kind: .purchase, amount: credits(100))))
        let grant = try #require(grantReceipt.grant)
        #expect(moves(grantEntry).contains(Move(grant, credits(30), .repaidDebt)))
        #expect(grantReceipt.availableAfter == credits(70))
        balance = try h.balance(account)
        #expect(balance.debt == .zero && balance.available == credits(70))
    }

    @Test("a settle's excess never takes credits held by another hold")
    func settleExcessLeavesOtherHoldsAlone() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let first = try h.reserve(account, credits(50))
        let second = try h.reserve(account, credits(40))
        let receipt = try h.succeed(.settle(first, actual: credits(70)))
        #expect(receipt.availableAfter == credits(-10))
        #expect(try h.balance(account).held == credits(40))
        #expect(h.ledger.hold(second)?.amount == credits(40))
        let released = try h.succeed(.release(second))
        #expect(released.availableAfter == credits(30))
        #expect(try h.balance(account).debt == credits(10), "debt is repaid by new credits, not by released holds")
    }

    @Test("a release restores the reserved credits to the grants they came from")
    func releaseRestoresCredits() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let soon = try h.grant(account, credits(10), expiresAt: t0.plus(dayMillis))
        let later = try h.grant(account, credits(100))
        let before = try h.balance(account)
        let hold = try h.reserve(account, credits(25))
        #expect(try h.grantView(soon, of: account).held == credits(10))
        #expect(try h.grantView(later, of: account).held == credits(15))
        let (receipt, entry) = try h.succeedWithEntry(.release(hold))
        #expect(receipt.amount == credits(25) && receipt.availableAfter == credits(110))
        #expect(entry.kind == .released)
        #expect(moves(entry) == [Move(soon, credits(10), .unheld),
                                           Move(later, credits(15), .unheld)])
        #expect(try h.balance(account) == before)
        #expect(h.ledger.hold(hold) == nil)
    }

    @Test("a hold times out only at or after its deadline")
    func timeOutHoldOnlyAfterDeadline() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30), timeoutMillis: 5 * minuteMillis)
        let deadline = h.now.plus(5 * minuteMillis)
        #expect(h.ledger.holdsTimedOut(at: deadline.plus(-1)).isEmpty)
        #expect(h.ledger.holdsTimedOut(at: deadline) == [hold])
        h.reject(.timeOutHold(hold), .holdNotDue(hold, expiresAt: deadline), at: deadline.plus(-1))
        #expect(h.ledger.hold(hold) != nil)
        let (receipt, entry) = try h.succeedWithEntry(.timeOutHold(hold), at: deadline)
        #expect(entry.kind == .holdTimedOut)
        #expect(receipt.amount == credits(30) && receipt.availableAfter == credits(100))
        #expect(h.ledger.hold(hold) == nil)
        #expect(try h.balance(account).held == .zero)
        h.reject(.settle(hold, actual: credits(1)), .holdNotOpen(hold))
    }

    @Test("a hold can still be settled after its deadline until it is timed out")
    func settleAfterDeadlineAllowed() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30), timeoutMillis: minuteMillis)
        h.advance(hourMillis)
        let receipt = try h.succeed(.settle(hold, actual: credits(10)))
        #expect(receipt.availableAfter == credits(90))
        h.reject(.timeOutHold(hold), .holdNotOpen(hold))
    }

    @Test("holds time out oldest first")
    func holdsTimedOutListedOldestFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let late = try h.reserve(account, credits(1), timeoutMillis: 2 * minuteMillis)
        let early = try h.reserve(account, credits(1), timeoutMillis: minuteMillis)
        let open = try h.reserve(account, credits(1), timeoutMillis: hourMillis)
        #expect(h.ledger.holdsTimedOut(at: h.now.plus(2 * minuteMillis)) == [late, early])
        #expect(h.ledger.holdsTimedOut(at: h.now.plus(hourMillis)) == [late, early, open])
    }

    @Test("a hold on a frozen account can be settled and released")
    func settleAllowedOnFrozenAccount() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let settled = try h.reserve(account, credits(30))
        let released = try h.reserve(account, credits(20))
        try h.succeed(.freeze(account))
        let receipt = try h.succeed(.settle(settled, actual: credits(40)))
        #expect(receipt.availableAfter == credits(40))
        try h.succeed(.release(released))
        #expect(try h.balance(account).available == credits(60))
        #expect(try h.balance(account).isFrozen)
    }

    @Test("a settle or release of a closed hold is rejected as not open")
    func holdNotOpenAfterClose() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30))
        try h.succeed(.settle(hold, actual: credits(10)))
        // A second settle with a different key is a new request, not a retry.
        h.reject(.settle(hold, actual: credits(10)), .holdNotOpen(hold))
        h.reject(.settle(hold, actual: credits(25)), .holdNotOpen(hold))
        h.reject(.release(hold), .holdNotOpen(hold))
        h.reject(.timeOutHold(hold), .holdNotOpen(hold), at: h.now.plus(dayMillis))
        let releasedHold = try h.reserve(account, credits(5))
        try h.succeed(.release(releasedHold))
        h.reject(.release(releasedHold), .holdNotOpen(releasedHold))
        h.reject(.settle(releasedHold, actual: credits(5)), .holdNotOpen(releasedHold))
        #expect(try h.balance(account).available == credits(90))
    }

    @Test("a hold that was never opened is unknown, also under another tenant's id")
    func unknownHoldRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        _ = try h.openIndividual(2)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30))
        let never = HoldID(tenant: account.tenant, number: 9_999)
        h.reject(.settle(never, actual: credits(1)), .unknownHold(never))
        h.reject(.release(never), .unknownHold(never))
        h.reject(.timeOutHold(never), .unknownHold(never))
        let foreign = HoldID(tenant: TenantID(2), number: hold.number)
        h.reject(.settle(foreign, actual: credits(1)), .unknownHold(foreign))
        h.reject(.release(foreign), .unknownHold(foreign))
        #expect(h.ledger.hold(foreign) == nil)
        #expect(h.ledger.hold(hold) != nil)
    }

    @Test("a reserve never creates debt, even on an account with an overdraft")
    func reserveNeverCreatesDebt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(50))
        try h.grant(account, credits(10))
        h.reject(.reserve(account, credits(11), timeoutMillis: minuteMillis, scope: .unscoped),
                 .insufficientCredits(available: credits(10), requested: credits(11)))
        let hold = try h.reserve(account, credits(10))
        h.reject(.reserve(account, Millicredits(1), timeoutMillis: minuteMillis, scope: .unscoped),
                 .insufficientCredits(available: .zero, requested: Millicredits(1)))
        // A plain debit may still use the overdraft.
        try h.debit(account, credits(50))
        #expect(try h.balance(account).debt == credits(50))
        try h.succeed(.release(hold))
        #expect(try h.balance(account).available == credits(-40))
    }

    @Test("settle amounts must be zero or positive and at most amountMax")
    func settleAmountValidated() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(30))
        for bad in [Millicredits(-1), credits(-30), Millicredits(LedgerLimits.amountMax + 1)] {
            h.reject(.settle(hold, actual: bad), .invalidAmount(bad))
        }
        #expect(h.ledger.hold(hold)?.amount == credits(30), "the hold is still open")
        try h.succeed(.settle(hold, actual: credits(30)))
    }

    @Test("reserve amounts must be positive and at most amountMax")
    func reserveAmountValidated() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        for bad in [Millicredits.zero, Millicredits(-5), Millicredits(LedgerLimits.amountMax + 1)] {
            h.reject(.reserve(account, bad, timeoutMillis: minuteMillis, scope: .unscoped), .invalidAmount(bad))
        }
    }

    @Test("a scoped reserve holds the scoped grant first and its settle excess uses the same scope")
    func scopedReserveAndSettle() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let openAI = ChargeScope(provider: 7)
        let unscoped = try h.grant(account, credits(100))
        let scoped = try h.grant(account, credits(20), expiresAt: t0.plus(dayMillis), scope: openAI)
        let hold = try h.reserve(account, credits(15), scope: openAI)
        #expect(try h.grantView(scoped, of: account).held == credits(15))
        #expect(try h.grantView(unscoped, of: account).held == .zero)
        try h.succeed(.settle(hold, actual: credits(30)))
        // 15 from the hold, 5 more from the scoped grant, then 10 from the unscoped one.
        #expect(try h.grantView(scoped, of: account).remaining == .zero)
        #expect(try h.grantView(unscoped, of: account).remaining == credits(90))
    }
}
