import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

@Suite("Idempotency: retries, conflicts, forgetting")
struct IdempotencyTests {
    @Test("a retried success returns the identical outcome and changes nothing")
    func retryOfSuccessReturnsOriginalOutcome() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let org = try OrganisationFixture(in: &h, poolCredits: credits(100), departments: [(DepartmentID(1), credits(50))],
                                          members: [(1, DepartmentID(1), credits(20))])
        try h.grant(account, credits(100))
        let hold = try h.reserve(account, credits(5))
        let debitKey = h.freshKey()
        try h.debit(account, credits(10), key: debitKey)
        let actions: [Action] = [
            .grant(account, GrantTerms(kind: .purchase, amount: credits(3))),
            .debit(account, credits(10), scope: .unscoped),
            .reserve(account, credits(5), timeoutMillis: minuteMillis, scope: .unscoped),
            .settle(hold, actual: credits(4)),
            .refund(account, debit: debitKey, credits(2)),
            .adjust(account, credits(1), reason: "goodwill"),
            .adjust(account, credits(-1), reason: "correction"),
            .debit(org.member(1), credits(2), scope: .unscoped),
            .setMemberLimit(org.member(1), perPeriod: credits(25)),
            .setDepartmentAllocation(org.tenant, DepartmentID(1), perPeriod: credits(60)),
            .startPeriod(org.tenant),
            .freeze(account), .unfreeze(account),
            .openDepartment(org.tenant, DepartmentTerms(id: DepartmentID(2), costCentre: "CC-2")),
            .openAccount(AccountID(tenant: account.tenant, number: 1), .standard),
            .openTenant(TenantID(2), .individual),
        ]
        for action in actions {
            let command = Command(key: h.freshKey(), action)
            let applied = h.apply(action, key: command.key)
            guard case .success = applied.outcome else {
                Issue.record("\(action) failed: \(applied.outcome)")
                continue
            }
            let before = h.observe()
            h.advance(secondMillis)
            h.expectReplay(of: command, returns: applied.outcome)
            h.expectReplay(of: command, returns: applied.outcome)
            #expect(h.observe() == before, "a retry of \(action) changed state")
        }
    }

    @Test("a retry returns the original receipt even after the balance moved on")
    func retryReturnsOriginalReceiptNotCurrentState() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let key = h.freshKey()
        let command = Command(key: key, .debit(account, credits(10), scope: .unscoped))
        let original = try h.debit(account, credits(10), key: key)
        #expect(original.availableAfter == credits(90))
        try h.debit(account, credits(50))
        h.expectReplay(of: command, returns: .success(original))
        #expect(try h.balance(account).available == credits(40), "charged once, not twice")
    }

    @Test("a retried reserve returns the same hold and holds nothing more")
    func retriedReserveReturnsSameHold() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let command = Command(key: h.freshKey(), .reserve(account, credits(30), timeoutMillis: minuteMillis, scope: .unscoped))
        let receipt = try h.succeed(command.action, key: command.key)
        h.expectReplay(of: command, returns: .success(receipt))
        let retry = h.ledger.apply(command, at: h.now)
        #expect(try retry.outcome.get().hold == receipt.hold)
        #expect(h.ledger.openHoldCount == 1)
        #expect(try h.balance(account).held == credits(30))
    }

    @Test("a retried rejection returns the same failure even when it would now succeed")
    func retryOfFailureReturnsOriginalFailure() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(10))
        let key = h.freshKey()
        let command = Command(key: key, .debit(account, credits(50), scope: .unscoped))
        let rejection = h.reject(command.action, .insufficientCredits(available: credits(10), requested: credits(50)), key: key)
        let failure = try #require(rejection)
        try h.grant(account, credits(100))
        h.expectReplay(of: command, returns: .failure(failure))
        #expect(try h.balance(account).available == credits(110), "the retry charged nothing")
    }

    @Test("the same key with different content is a conflict and changes nothing")
    func sameKeyDifferentContentConflicts() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let key = h.freshKey()
        let original = try h.debit(account, credits(10), key: key)
        let before = h.observe()
        let digest = h.ledger.stateDigest()
        let sequence = h.ledger.nextSequence
        for other: Action in [.debit(account, credits(11), scope: .unscoped), .debit(account, credits(10), scope: ChargeScope(provider: 1)),
                              .grant(account, GrantTerms(kind: .purchase, amount: credits(10))), .freeze(account)] {
            let applied = h.ledger.apply(Command(key: key, other), at: h.now)
            #expect(applied.outcome == .failure(.idempotencyConflict(key)))
            #expect(applied.entry == nil, "a conflict is not logged as an entry")
        }
        #expect(h.ledger.stateDigest() == digest)
        #expect(h.ledger.nextSequence == sequence)
        #expect(h.observe() == before)
        h.checkInvariants(after: "conflicts")
        // The original request's retry still gets its outcome.
        h.expectReplay(of: Command(key: key, .debit(account, credits(10), scope: .unscoped)), returns: .success(original))
    }

    @Test("a key of a rejected request also conflicts with different content")
    func rejectedKeyConflictsWithDifferentContent() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        let key = h.freshKey()
        h.reject(.debit(account, credits(5), scope: .unscoped), key: key)
        try h.grant(account, credits(10))
        let applied = h.ledger.apply(Command(key: key, .debit(account, credits(4), scope: .unscoped)), at: h.now)
        #expect(applied.outcome == .failure(.idempotencyConflict(key)))
        #expect(try h.balance(account).available == credits(10))
    }

    @Test("a key is remembered for the next idempotencyKeysMax/2 keys and forgotten after idempotencyKeysMax, then applied anew",
          arguments: 0 ..< 8)
    func keysForgottenAfterKeysMax(earlierKeys: Int) throws {
        let keysMax = 8
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyKeysMax: keysMax))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(1_000))
        // Shift where the key lands in the table's generations.
        for _ in 0 ..< earlierKeys { try h.debit(account, Millicredits(1)) }
        let command = Command(key: h.freshKey(), .debit(account, credits(10), scope: .unscoped))
        let original = try h.succeed(command.action, key: command.key)
        var newer = 0
        while newer < keysMax / 2 {
            if newer % 3 == 2 {
                h.reject(.debit(account, credits(1_000_000), scope: .unscoped)) // rejections take a key too
            } else {
                try h.debit(account, Millicredits(1))
            }
            newer += 1
            h.expectReplay(of: command, returns: .success(original))
        }
        while newer < keysMax {
            try h.debit(account, Millicredits(1))
            newer += 1
        }
        #expect(h.ledger.rememberedKeyCount <= keysMax)
        let before = try h.balance(account).available
        let again = h.apply(command.action, key: command.key)
        #expect(again.entry != nil, "the forgotten key is a new request")
        let receipt = try again.outcome.get()
        #expect(receipt.sequence != original.sequence)
        #expect(try h.balance(account).available == before.subtracting(credits(10)))
        // The new outcome is remembered in its turn.
        h.expectReplay(of: command, returns: again.outcome)
    }

    @Test("a key is forgotten once more than idempotencyWindowMillis of command time has passed")
    func keysForgottenAfterWindow() throws {
        let window: Int64 = 10_000
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyWindowMillis: window))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let command = Command(key: h.freshKey(), .debit(account, credits(10), scope: .unscoped))
        let original = try h.succeed(command.action, key: command.key)
        let stamped = h.now
        h.move(to: stamped.plus(window))
        h.expectReplay(of: command, returns: .success(original))
        try h.debit(account, credits(1))
        h.expectReplay(of: command, returns: .success(original))
        h.move(to: stamped.plus(window + 1))
        let again = h.apply(command.action, key: command.key)
        #expect(again.entry != nil, "a retry after the window is a new request")
        #expect(try again.outcome.get().availableAfter == credits(79))
        h.expectReplay(of: command, returns: again.outcome)
        // A conflicting reuse after the window is a new request too, not a conflict.
        let reused = h.freshKey()
        try h.debit(account, credits(2), key: reused)
        h.move(to: h.now.plus(window + 1))
        let other = h.apply(.debit(account, credits(3), scope: .unscoped), key: reused)
        #expect(try other.outcome.get().availableAfter == credits(74))
    }

    @Test("a key past the window is forgotten even when no other command came in between")
    func keyPastWindowIsForgottenWithoutInterveningCommand() throws {
        let window: Int64 = 10_000
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyWindowMillis: window))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let command = Command(key: h.freshKey(), .debit(account, credits(10), scope: .unscoped))
        try h.succeed(command.action, key: command.key)
        h.move(to: h.now.plus(window + 1))
        let again = h.apply(command.action, key: command.key)
        #expect(again.entry != nil, "a retry after the window is a new request")
        #expect(try h.balance(account).available == credits(80))
    }

    @Test("a debit past the window can no longer be refunded")
    func refundOfDebitPastWindowRejected() throws {
        let window: Int64 = 10_000
        var h = LedgerHarness(configuration: LedgerConfiguration(idempotencyWindowMillis: window))
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let debitKey = h.freshKey()
        try h.debit(account, credits(10), key: debitKey)
        h.move(to: h.now.plus(window))
        try h.succeed(.refund(account, debit: debitKey, credits(1)))
        h.move(to: h.now.plus(1))
        h.reject(.refund(account, debit: debitKey, credits(1)), .unknownDebit(debitKey))
    }

    @Test("a retried refund refunds once")
    func retriedRefundRefundsOnce() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(100))
        let debitKey = h.freshKey()
        try h.debit(account, credits(40), key: debitKey)
        let command = Command(key: h.freshKey(), .refund(account, debit: debitKey, credits(30)))
        let receipt = try h.succeed(command.action, key: command.key)
        h.expectReplay(of: command, returns: .success(receipt))
        #expect(try h.balance(account).available == credits(90))
        h.reject(.refund(account, debit: debitKey, credits(11)), .refundExceedsDebit(refundable: credits(10), requested: credits(11)))
    }

    @Test("replaying the same commands at the same times on a fresh ledger gives the same digest")
    func replayGivesSameDigest() throws {
        func run(delay: Int64) throws -> (digest: UInt64, hold: HoldID, outcomes: [Outcome]) {
            var h = LedgerHarness()
            var outcomes: [Outcome] = []
            let account = try h.openIndividual(1, overdraft: credits(5))
            try h.grant(account, credits(100), expiresAt: t0.plus(dayMillis))
            h.advance(minuteMillis + delay)
            let hold = try h.reserve(account, credits(30))
            outcomes.append(h.apply(.debit(account, credits(10), scope: .unscoped)).outcome)
            h.advance(minuteMillis)
            outcomes.append(h.apply(.settle(hold, actual: credits(70))).outcome)
            outcomes.append(h.apply(.debit(account, credits(500), scope: .unscoped)).outcome)
            return (h.ledger.stateDigest(), hold, outcomes)
        }
        let first = try run(delay: 0)
        let second = try run(delay: 0)
        #expect(first.digest == second.digest)
        #expect(first.hold == second.hold)
        #expect(first.outcomes == second.outcomes)
        let shifted = try run(delay: 1)
        #expect(shifted.digest != first.digest, "the digest covers when commands were applied")
    }
}
