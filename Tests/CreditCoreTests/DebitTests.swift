import CreditCore
import Testing

@Suite("Debits, overdrafts and debt")
struct DebitTests {
    @Test("a debit lowers the balance and reports the amount and the balance after")
    func debitLowersBalanceAndReportsIt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let grant = try h.grant(account, credits(100))
        let (receipt, entry) = try h.succeedWithEntry(.debit(account, Millicredits(12_345), scope: .unscoped))
        #expect(receipt.amount == Millicredits(12_345))
        #expect(receipt.availableAfter == Millicredits(87_655))
        #expect(receipt.hold == nil && receipt.grant == nil)
        #expect(entry.kind == .debited && entry.account == account && entry.member == account)
        #expect(entry.availableAfter == Millicredits(87_655) && entry.debtAfter == .zero)
        #expect(moves(entry) == [Move(grant, Millicredits(12_345), .consumed)])
        let balance = try h.balance(account)
        #expect(balance.available == Millicredits(87_655))
        #expect(balance.consumed == Millicredits(12_345))
        #expect(balance.granted == credits(100))
    }

    @Test("successive debits get increasing sequences and their own receipts")
    func debitSequencesIncrease() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(10))
        let first = try h.debit(account, credits(1))
        let second = try h.debit(account, credits(2))
        #expect(second.sequence == first.sequence + 1)
        #expect(first.availableAfter == credits(9) && second.availableAfter == credits(7))
    }

    @Test("a debit of exactly the balance empties it; one more millicredit is insufficient")
    func debitNeverCreatesDebtWithoutOverdraft() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(5))
        h.reject(.debit(account, Millicredits(5_001), scope: .unscoped),
                 .insufficientCredits(available: credits(5), requested: Millicredits(5_001)))
        let receipt = try h.debit(account, credits(5))
        #expect(receipt.availableAfter == .zero)
        h.reject(.debit(account, Millicredits(1), scope: .unscoped), .insufficientCredits(available: .zero, requested: Millicredits(1)))
        let balance = try h.balance(account)
        #expect(balance.debt == .zero && balance.available == .zero)
    }

    @Test("an empty account cannot be debited")
    func debitOnEmptyAccountRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.debit(account, credits(1), scope: .unscoped), .insufficientCredits(available: .zero, requested: credits(1)))
    }

    @Test("debit amounts must be positive and at most amountMax")
    func debitAmountValidated() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, Millicredits(LedgerLimits.amountMax))
        for bad in [Millicredits.zero, Millicredits(-1), credits(-100), Millicredits(LedgerLimits.amountMax + 1), Millicredits(.max)] {
            h.reject(.debit(account, bad, scope: .unscoped), .invalidAmount(bad))
        }
        let receipt = try h.debit(account, Millicredits(LedgerLimits.amountMax))
        #expect(receipt.availableAfter == .zero)
    }

    @Test("a debit within the overdraft creates debt, recorded on the entry")
    func debitWithinOverdraftCreatesDebt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(20))
        let grant = try h.grant(account, credits(10))
        let (receipt, entry) = try h.succeedWithEntry(.debit(account, credits(25), scope: .unscoped))
        #expect(receipt.amount == credits(25))
        #expect(receipt.availableAfter == credits(-15))
        #expect(entry.debtAfter == credits(15))
        #expect(moves(entry) == [Move(grant, credits(10), .consumed)])
        var balance = try h.balance(account)
        #expect(balance.debt == credits(15) && balance.available == credits(-15) && balance.consumed == credits(25))
        // The overdraft bounds the debt exactly.
        h.reject(.debit(account, Millicredits(5_001), scope: .unscoped),
                 .insufficientCredits(available: credits(-15), requested: Millicredits(5_001)))
        try h.debit(account, credits(5))
        balance = try h.balance(account)
        #expect(balance.debt == credits(20) && balance.available == credits(-20))
        h.reject(.debit(account, Millicredits(1), scope: .unscoped), .insufficientCredits(available: credits(-20), requested: Millicredits(1)))
    }

    @Test("new credits repay debt first")
    func grantRepaysDebtFirst() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(20))
        try h.debit(account, credits(12))
        let (receipt, entry) = try h.succeedWithEntry(.grant(account, GrantTerms(kind: .purchase, amount: credits(30))))
        let grant = try #require(receipt.grant)
        #expect(moves(entry) == [Move(grant, credits(30), .created),
                                           Move(grant, credits(12), .repaidDebt)])
        #expect(receipt.availableAfter == credits(18))
        #expect(entry.debtAfter == .zero)
        let view = try h.grantView(grant, of: account)
        #expect(view.remaining == credits(18) && view.consumed == credits(12))
        let balance = try h.balance(account)
        #expect(balance.debt == .zero && balance.available == credits(18))
        // A grant smaller than the debt repays part of it and leaves nothing spendable.
        try h.debit(account, credits(38))
        let small = try h.grant(account, credits(5))
        #expect(try h.grantView(small, of: account).remaining == .zero)
        #expect(try h.balance(account).debt == credits(15))
        #expect(try h.balance(account).available == credits(-15))
    }

    @Test("a scoped grant does not repay debt")
    func scopedGrantDoesNotRepayDebt() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1, overdraft: credits(20))
        try h.debit(account, credits(10))
        let scoped = try h.grant(account, credits(30), scope: ChargeScope(provider: 7))
        #expect(try h.grantView(scoped, of: account).remaining == credits(30))
        #expect(try h.balance(account).debt == credits(10))
        #expect(try h.available(account) == credits(-10))
        #expect(try h.available(account, scope: ChargeScope(provider: 7)) == credits(20))
    }

    @Test("a debit that would overflow the 64-bit consumed total is rejected")
    func debitConsumedOverflowRejected() throws {
        // Few remembered keys keep the per-step invariant check (which walks the key table) fast.
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyKeysMax: 64))
        let most = Millicredits(LedgerLimits.amountMax)
        let account = try h.openIndividual(1, overdraft: most)
        let fits = Int64.max / LedgerLimits.amountMax
        try h.sparselyChecked(every: 500) { h in
            for _ in 0 ..< fits {
                try h.grant(account, most)
                try h.debit(account, most)
            }
        }
        // The overdraft would allow another amountMax, but the consumed total cannot hold it.
        h.reject(.debit(account, most, scope: .unscoped), .amountOverflow)
        try h.debit(account, Millicredits(Int64.max - fits * LedgerLimits.amountMax))
        #expect(try h.balance(account).consumed == Millicredits(.max))
        h.reject(.debit(account, Millicredits(1), scope: .unscoped), .amountOverflow)
    }

    @Test("debits of different accounts do not affect each other")
    func debitsAreIsolatedPerAccount() throws {
        var h = LedgerHarness()
        let alice = try h.openIndividual(1)
        let bob = try h.openIndividual(2)
        try h.grant(alice, credits(10))
        try h.grant(bob, credits(10))
        try h.debit(alice, credits(7))
        #expect(try h.balance(alice).available == credits(3))
        #expect(try h.balance(bob).available == credits(10))
        h.reject(.debit(alice, credits(4), scope: .unscoped), .insufficientCredits(available: credits(3), requested: credits(4)))
    }
}
