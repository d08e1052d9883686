import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

/// A usage charge as the pricing layer would build it (GPT-4 Turbo, 1,000 tokens = 15 credits).
private func usage(_ source: KeySource, list: Millicredits = credits(15), model: String = "GPT-4 Turbo",
                   cost: Int64 = 30_000_000) -> UsageCharge {
    UsageCharge(model: model, provider: "OpenAI", units: 1_000, providerCostNanoUSD: cost, listPrice: list, keySource: source)
}

@Suite("Charges: an AI call's usage, paid in credits or by an own key, always recorded")
struct ChargeTests {
    @Test("on system keys a charge spends its list price like a debit and records the usage")
    func systemKeyChargeSpendsListPrice() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let (receipt, entry) = try h.succeedWithEntry(.charge(account, usage(.system), scope: .unscoped))
        #expect(receipt.amount == credits(15) && receipt.availableAfter == credits(85))
        #expect(entry.kind == .charged && entry.amount == credits(15))
        #expect(entry.usage == usage(.system))
        #expect(entry.usage?.saved == .zero)
        #expect(moves(entry).map(\.change) == [.consumed])
        #expect(try h.balance(account).consumed == credits(15))
    }

    @Test("with an own key a charge costs 0 credits, needs no balance, and records what it saved")
    func ownKeyChargeIsFreeAndRecorded() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1) // no credits at all
        try h.succeed(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "sk-…abcd", sealed: [1, 2, 3])))
        let source = KeySource.userKey
        let (receipt, entry) = try h.succeedWithEntry(.charge(account, usage(source), scope: .unscoped))
        #expect(receipt.amount == .zero && receipt.availableAfter == .zero)
        #expect(entry.kind == .charged && entry.amount == .zero && entry.movements.isEmpty)
        #expect(entry.usage?.keySource == source && entry.usage?.saved == credits(15))
        #expect(try h.balance(account).consumed == .zero)
    }

    @Test("a member's charge on system keys counts against its limit; an own-key charge at the limit still goes through")
    func memberLimitAppliesToPaidChargesOnly() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), credits(20))])
        let member = org.member(1)
        try h.succeed(.registerKey(org.pool, KeyRegistration(provider: "OpenAI", fingerprint: "org-…1", sealed: [9])))
        try h.succeed(.charge(member, usage(.system), scope: .unscoped))
        h.reject(.charge(member, usage(.system), scope: .unscoped),
                 .memberLimitExceeded(remaining: credits(5), requested: credits(15)))
        let (_, entry) = try h.succeedWithEntry(.charge(member, usage(.organisationKey), scope: .unscoped))
        #expect(entry.member == member && entry.account == org.pool && entry.amount == .zero)
        #expect(try h.organisation(org.tenant).members.first { $0.account == member }?.usage.spent == credits(15))
    }

    @Test("the recent-entry window keeps each charge's usage with its entry, and none on other entries, across wrap-arounds")
    func entryWindowKeepsUsagePerEntry() throws {
        var h = LedgerHarness(configuration: LedgerConfiguration(recentEntriesMax: 5))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(10_000))
        // 23 commands through a window of 5: charges of several models, debits and adjusts
        // overwrite each other's positions in every combination.
        var expected: [UInt64: (usage: UsageCharge?, reason: String?)] = [:]
        for step in 0 ..< 23 {
            let entry: LedgerEntry
            switch step % 3 {
            case 0:
                let charged = usage(.system, model: "model \(step % 4)")
                entry = try h.succeedWithEntry(.charge(account, charged, scope: .unscoped)).entry
                expected[entry.sequence] = (charged, nil)
            case 1:
                entry = try h.succeedWithEntry(.debit(account, credits(1), scope: .unscoped)).entry
                expected[entry.sequence] = (nil, nil)
            default:
                entry = try h.succeedWithEntry(.adjust(account, credits(2), reason: "step \(step)")).entry
                expected[entry.sequence] = (nil, "step \(step)")
            }
            let window = h.ledger.recentEntries.filter { _ in true }
            #expect(window.count <= 5 && window.last?.sequence == entry.sequence)
            // The window's entries from this loop (before step 4, the set-up's too).
            #expect(window.filter { expected[$0.sequence] != nil }.count == min(step + 1, 5))
            for kept in window {
                guard let want = expected[kept.sequence] else { continue }
                #expect(kept.usage == want.usage && kept.reason == want.reason, "step \(step), entry \(kept.sequence)")
            }
        }
    }

    @Test("malformed usage, a frozen account and an unknown account are refused and change nothing")
    func badChargesAreRefused() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        h.reject(.charge(account, usage(.system, model: ""), scope: .unscoped), .invalidInput(.usageNamesModelAndProvider))
        var unkept = usage(.system)
        unkept.providerName = .unavailable
        h.reject(.charge(account, unkept, scope: .unscoped), .limitReached(.namesPerProcess))
        h.reject(.charge(account, usage(.system, model: String(repeating: "m", count: LedgerLimits.textBytesMax + 1)), scope: .unscoped),
                 .invalidInput(.textTooLong))
        h.reject(.charge(account, usage(.system, cost: -1), scope: .unscoped), .invalidInput(.usageNotNegative))
        h.reject(.charge(account, usage(.userKey, list: Millicredits(-1)), scope: .unscoped), .invalidInput(.usageNotNegative))
        h.reject(.charge(AccountID(tenant: TenantID(1), number: 9), usage(.userKey), scope: .unscoped),
                 .unknownAccount(AccountID(tenant: TenantID(1), number: 9)))
        h.reject(.charge(account, usage(.system, list: credits(101)), scope: .unscoped),
                 .insufficientCredits(available: credits(100), requested: credits(101)))
        try h.succeed(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "sk-…abcd", sealed: [1])))
        try h.succeed(.freeze(account))
        h.reject(.charge(account, usage(.userKey), scope: .unscoped), .accountFrozen(account))
        h.reject(.charge(account, usage(.system), scope: .unscoped), .accountFrozen(account))
    }

    @Test("a hold settled with usage: on system keys the list price is consumed; with an own key the hold is released and nothing spent")
    func settleChargeWithUsage() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let paid = try h.reserve(account, credits(20))
        let (receipt, entry) = try h.succeedWithEntry(.settleCharge(paid, usage(.system)))
        #expect(receipt.amount == credits(15) && receipt.availableAfter == credits(85))
        #expect(entry.kind == .settled && entry.usage == usage(.system))
        // Own key: not registered yet → refused, and the hold stays open.
        let free = try h.reserve(account, credits(20))
        h.reject(.settleCharge(free, usage(.userKey)), .notAllowed(account, .keyNotUsable))
        #expect(try h.balance(account).held == credits(20))
        try h.succeed(.registerKey(account, KeyRegistration(provider: "OpenAI", fingerprint: "f", sealed: [1])))
        let (ownReceipt, ownEntry) = try h.succeedWithEntry(.settleCharge(free, usage(.userKey)))
        #expect(ownReceipt.amount == .zero && ownEntry.usage?.saved == credits(15))
        #expect(try h.balance(account).held == .zero && h.balance(account).available == credits(85))
        h.reject(.settleCharge(free, usage(.system)), .holdNotOpen(free))
        h.reject(.settleCharge(HoldID(tenant: TenantID(1), number: 999), usage(.system, model: "")), .invalidInput(.usageNamesModelAndProvider))
    }

    @Test("a retried charge returns its first outcome; the same key with other usage is a conflict; a charge is refundable by its key")
    func retriesConflictsAndRefunds() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let key = h.freshKey()
        let receipt = try h.succeed(.charge(account, usage(.system), scope: .unscoped), key: key)
        h.expectReplay(of: Command(key: key, .charge(account, usage(.system), scope: .unscoped)), returns: .success(receipt))
        h.expectReplay(of: Command(key: key, .charge(account, usage(.userKey), scope: .unscoped)),
                       returns: .failure(.idempotencyConflict(key)))
        let refund = try h.succeed(.refund(account, debit: key, credits(15)))
        #expect(refund.availableAfter == credits(100))
        h.reject(.refund(account, debit: key, Millicredits(1)), .refundExceedsDebit(refundable: .zero, requested: Millicredits(1)))
    }
}
