@testable import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

// The state encoding (Ledger+Snapshot.swift, docs/formats-ledger-state.md): a decoded
// ledger must be the same ledger — same digest, same bytes when encoded again, and above
// all the same outcomes, entries and digests for every command applied afterwards (retries
// of keys remembered before the snapshot, refunds of old debits, settles and time-outs of
// old holds, enterprise caps). Corrupted encodings must throw or decode to a consistent
// ledger, never trap.
//
// The random tests reuse the property tests' generator (`RandomSequence`) and seed; they
// print the seed. Reproduce with CREDITS_TEST_SEED=<seed> swift test --filter SnapshotStateTests

/// The state encoding of `ledger`.
private func encoded(_ ledger: Ledger) -> [UInt8] {
    var writer = ByteWriter()
    ledger.encodeState(into: &writer)
    return writer.bytes
}

/// Decodes a whole buffer (nothing may follow the state).
private func decoded(_ bytes: [UInt8], _ configuration: LedgerConfiguration) throws(BinaryDecodingError) -> Ledger {
    var reader = ByteReader(bytes)
    let ledger = try Ledger(decodingState: &reader, configuration: configuration)
    try reader.expectEnd("ledger state")
    return ledger
}

/// What a decoded copy must agree on with the original right after the snapshot.
private func restoreProblems(original: Ledger, restored: Ledger, bytes: [UInt8]) -> [String] {
    var problems: [String] = []
    if bytes.count != original.encodedStateByteCount { problems.append("encodedStateByteCount is not the encoding's length") }
    if restored.stateDigest() != original.stateDigest() { problems.append("the restored digest differs") }
    let violations = restored.invariantViolations()
    if !violations.isEmpty { problems.append("restored invariants: \(violations)") }
    if encoded(restored) != bytes { problems.append("the restored ledger encodes to different bytes") }
    if restored.nextSequence != original.nextSequence || restored.lastTime != original.lastTime {
        problems.append("sequence or clock differs")
    }
    if restored.recentEntries.count != 0 || restored.replayCount != 0 || restored.conflictCount != 0 {
        problems.append("the entry window or statistics were restored (they are not state)")
    }
    return problems
}

/// Applies `command` at `time` to the restored copy and compares with what the original did.
private func continuationProblem(_ restored: inout Ledger, _ command: Command, at time: Timestamp,
                                 original: Ledger, outcome: Outcome, entry: LedgerEntry?) -> String? {
    let applied = restored.apply(command, at: time)
    if applied.outcome != outcome { return "outcome \(applied.outcome), the original got \(outcome)" }
    if applied.entry != entry { return "entry \(String(describing: applied.entry)), the original made \(String(describing: entry))" }
    if restored.stateDigest() != original.stateDigest() { return "digest differs after \(command.action)" }
    return nil
}

@Suite("Snapshot state: encode, decode, continue identically")
struct SnapshotStateTests {
    // MARK: A hand-built ledger with every kind of state

    /// Individuals with scoped, future, expiring and depleted (free-slot) grants, an
    /// overdraft in debt, open, settled and released holds, a refunded debit, an
    /// organisation with capped departments and members, a frozen member, a started period,
    /// and more keys than the idempotency table's current generation holds.
    static func richHarness() throws -> (LedgerHarness, [(Command, Outcome)]) {
        let configuration = LedgerConfiguration(idempotencyKeysMax: 40, idempotencyWindowMillis: 6 * hourMillis,
                                                closedHoldsRememberedMax: 3, recentEntriesMax: 64)
        var h = LedgerHarness(configuration: configuration)
        var remembered: [(Command, Outcome)] = []
        func run(_ action: Action, _ h: inout LedgerHarness) throws -> Receipt {
            let key = h.freshKey()
            let receipt = try h.succeed(action, key: key)
            remembered.append((Command(key: key, action), .success(receipt)))
            return receipt
        }
        let a = try h.openIndividual(1)
        let b = try h.openIndividual(2, overdraft: credits(20))
        let a1 = AccountID(tenant: a.tenant, number: 1)
        try h.succeed(.openAccount(a1, .standard))
        try h.succeed(.openTenant(TenantID(3), .individual)) // a tenant with no account yet
        try h.grant(a, credits(100), costBasis: 10_000_000)
        try h.grant(a, credits(30), kind: .promotional, expiresAt: h.now.plus(2 * dayMillis), priority: 10)
        try h.grant(a, credits(20), scope: ChargeScope(provider: 7))
        try h.grant(a, credits(10), effectiveAt: h.now.plus(hourMillis))
        try h.grant(a1, credits(5))
        try h.debit(a1, credits(5)) // depletes a never-expiring grant: its slot is freed
        try h.grant(b, credits(10))
        h.advance(minuteMillis)
        try h.debit(b, credits(25)) // 15 credits of debt within the overdraft
        try h.debit(a, credits(12), scope: ChargeScope(provider: 7))
        let settled = try h.reserve(a, credits(5))
        try h.succeed(.settle(settled, actual: credits(7)))
        let released = try h.reserve(a, credits(3))
        try h.succeed(.release(released))
        let org = try OrganisationFixture(in: &h, poolCredits: credits(200),
                                          departments: [(DepartmentID(1), credits(50)), (DepartmentID(2), nil)],
                                          members: [(1, DepartmentID(1), credits(20)), (2, DepartmentID(2), nil),
                                                    (3, DepartmentID(1), nil)])
        try h.debit(org.member(1), credits(10))
        let memberHold = try h.reserve(org.member(1), credits(5))
        try h.succeed(.settle(memberHold, actual: credits(9)))
        try h.succeed(.startPeriod(org.tenant))
        try h.succeed(.setMemberLimit(org.member(3), perPeriod: credits(15)))
        try h.succeed(.freeze(org.member(2)))
        h.advance(10 * minuteMillis)
        // The last commands before the snapshot: their keys are surely remembered.
        _ = try run(.debit(a, credits(8), scope: .unscoped), &h)
        _ = try run(.reserve(a, credits(6), timeoutMillis: 30 * minuteMillis, scope: .unscoped), &h)
        _ = try run(.reserve(org.member(3), credits(4), timeoutMillis: hourMillis, scope: .unscoped), &h)
        _ = try run(.debit(org.member(1), credits(3), scope: .unscoped), &h)
        _ = try run(.grant(a, GrantTerms(kind: .purchase, amount: credits(2))), &h)
        let rejected = Command(key: h.freshKey(), .debit(b, credits(500), scope: .unscoped))
        remembered.append((rejected, h.apply(rejected.action, key: rejected.key).outcome))
        #expect(h.ledger.rememberedKeyCount > 20, "both generations are in use")
        return (h, remembered)
    }

    @Test("a rich ledger round-trips: same digest, same bytes, invariants hold, nothing left over")
    func richLedgerRoundTrips() throws {
        let (h, _) = try Self.richHarness()
        let bytes = encoded(h.ledger)
        #expect(encoded(h.ledger) == bytes, "encoding is deterministic")
        var reader = ByteReader(bytes + [0xAB, 0xCD])
        let restored = try Ledger(decodingState: &reader, configuration: h.ledger.configuration)
        #expect(reader.remaining == 2, "the decoder consumes exactly the state's bytes")
        #expect(restoreProblems(original: h.ledger, restored: restored, bytes: bytes) == [])
        var copy = h
        copy.ledger = restored
        #expect(copy.observe() == h.observe(), "balances, grants, holds and organisation usage are the same")
        #expect(h.ledger.recentEntries.count > 0 && restored.recentEntries.count == 0)

        // Appended after other bytes (a file header), the state is the same bytes, and decodes
        // from where it starts.
        var writer = ByteWriter()
        writer.write(UInt32(0xFEED))
        h.ledger.encodeState(into: &writer)
        #expect(Array(writer.bytes.dropFirst(4)) == bytes)
        var framed = ByteReader(writer.bytes, from: 4)
        #expect(try Ledger(decodingState: &framed, configuration: h.ledger.configuration).stateDigest() == h.ledger.stateDigest())
        #expect(framed.isAtEnd)
    }

    @Test("after a restore, retries, refunds, settles, caps and time-outs behave exactly as without it")
    func restoredLedgerContinuesLikeTheOriginal() throws {
        let (original, remembered) = try Self.richHarness()
        let bytes = encoded(original.ledger)
        var h = original
        var r = original
        r.ledger = try decoded(bytes, original.ledger.configuration)

        // Retries of keys remembered before the snapshot return their original outcomes.
        for (command, outcome) in remembered {
            h.expectReplay(of: command, returns: outcome)
            r.expectReplay(of: command, returns: outcome)
        }
        // The same key with other content is a conflict on both.
        let (someCommand, _) = try #require(remembered.first)
        let conflicting = Command(key: someCommand.key, .freeze(AccountID(tenant: TenantID(1), number: 0)))
        #expect(h.ledger.apply(conflicting, at: h.now).outcome == r.ledger.apply(conflicting, at: r.now).outcome)

        let a = AccountID(tenant: TenantID(1), number: 0)
        let b = AccountID(tenant: TenantID(2), number: 0)
        let org = TenantID(500)
        let debitKey = try #require(remembered.first { if case .debit(a, _, _) = $0.0.action { true } else { false } }).0.key
        let holds = h.ledger.holdsTimedOut(at: .never)
        #expect(holds.count == 2)
        let later: [(Int64, Action)] = [
            (0, .refund(a, debit: debitKey, credits(3))),
            (0, .refund(a, debit: debitKey, credits(6))), // more than is left: rejected the same way
            (0, .debit(AccountID(tenant: org, number: 1), credits(30), scope: .unscoped)), // member limit
            (0, .debit(AccountID(tenant: org, number: 2), credits(1), scope: .unscoped)), // frozen member
            (0, .debit(AccountID(tenant: org, number: 3), credits(12), scope: .unscoped)),
            (0, .settle(holds[1], actual: credits(20))), // the member's hold, above its limit
            (minuteMillis, .debit(b, credits(5), scope: .unscoped)), // into the overdraft
            (0, .debit(b, credits(1), scope: .unscoped)),
            (0, .grant(AccountID(tenant: a.tenant, number: 1), GrantTerms(kind: .purchase, amount: credits(4)))), // reuses the free slot
            (0, .debit(a, credits(15), scope: ChargeScope(provider: 7))),
            (hourMillis, .debit(a, credits(40), scope: .unscoped)), // the future grant is effective now
            (0, .timeOutHold(holds[0])), // due
            (0, .settle(holds[0], actual: credits(1))), // closed: holdNotOpen
            (0, .startPeriod(org)),
            (0, .setDepartmentAllocation(org, DepartmentID(1), perPeriod: credits(5))),
            (0, .debit(AccountID(tenant: org, number: 3), credits(6), scope: .unscoped)),
            (3 * dayMillis, .debit(a, credits(1), scope: .unscoped)), // the promotional grant has expired
            (0, .refund(a, debit: debitKey, credits(1))), // beyond the key window: unknownDebit
            (0, .openAccount(AccountID(tenant: TenantID(3), number: 0), .standard)),
        ]
        for (advance, action) in later {
            h.advance(advance)
            r.advance(advance)
            let key = h.freshKey()
            #expect(r.freshKey() == key)
            let expected = h.apply(action, key: key)
            let got = r.apply(action, key: key)
            #expect(got.outcome == expected.outcome, "\(action)")
            #expect(got.entry == expected.entry, "\(action)")
            #expect(r.ledger.stateDigest() == h.ledger.stateDigest(), "\(action)")
        }
        #expect(encoded(r.ledger) == encoded(h.ledger))
        // The script exercised what it meant to: a refund, a limit, a frozen member, an expiry.
        let errors = Set(h.ledger.recentEntries.filter { $0.error != nil }.map { errorCaseName($0.error!) })
        #expect(errors.isSuperset(of: ["refundExceedsDebit", "memberLimitExceeded", "accountFrozen", "holdNotOpen",
                                       "unknownDebit"]), "\(errors)")
    }

    @Test("an empty ledger round-trips and continues identically")
    func emptyLedgerRoundTrips() throws {
        let configuration = LedgerConfiguration(idempotencyKeysMax: 4)
        let empty = Ledger(configuration: configuration)
        let bytes = encoded(empty)
        var restored = try decoded(bytes, configuration)
        #expect(restoreProblems(original: empty, restored: restored, bytes: bytes) == [])
        var original = empty
        let command = Command(key: IdempotencyKey(high: 1, low: 2), .openTenant(TenantID(9), .individual))
        let expected = original.apply(command, at: t0)
        #expect(continuationProblem(&restored, command, at: t0, original: original, outcome: expected.outcome,
                                    entry: expected.entry) == nil)
    }

    // MARK: Configuration and version

    @Test("the configuration must match the snapshot where it decides outcomes")
    func configurationMustMatch() throws {
        let (h, _) = try Self.richHarness()
        let bytes = encoded(h.ledger)
        let written = h.ledger.configuration
        let mismatches: [(LedgerConfiguration, String)] = [
            (LedgerConfiguration(idempotencyKeysMax: 64, idempotencyWindowMillis: written.idempotencyWindowMillis,
                                 closedHoldsRememberedMax: written.closedHoldsRememberedMax), "idempotencyKeysMax"),
            (LedgerConfiguration(idempotencyKeysMax: written.idempotencyKeysMax, idempotencyWindowMillis: hourMillis,
                                 closedHoldsRememberedMax: written.closedHoldsRememberedMax), "idempotencyWindowMillis"),
            (LedgerConfiguration(idempotencyKeysMax: written.idempotencyKeysMax,
                                 idempotencyWindowMillis: written.idempotencyWindowMillis,
                                 closedHoldsRememberedMax: 4), "closedHoldsRememberedMax"),
        ]
        for (configuration, field) in mismatches {
            do {
                _ = try decoded(bytes, configuration)
                Issue.record("decoding with a different \(field) succeeded")
            } catch {
                guard case .invalid(_, let named) = error, named.hasPrefix(field) else {
                    Issue.record("expected .invalid naming \(field), got \(error)")
                    continue
                }
            }
        }
        // The entry window's size is output only: it may differ.
        let resized = LedgerConfiguration(idempotencyKeysMax: written.idempotencyKeysMax,
                                          idempotencyWindowMillis: written.idempotencyWindowMillis,
                                          closedHoldsRememberedMax: written.closedHoldsRememberedMax, recentEntriesMax: 7)
        let restored = try decoded(bytes, resized)
        #expect(restored.stateDigest() == h.ledger.stateDigest())
        #expect(restored.configuration.recentEntriesMax == 7 && restored.recentEntries.capacity == 7)
    }

    @Test("an unknown format version is rejected by name")
    func unknownVersionIsRejected() throws {
        var bytes = encoded(Ledger())
        bytes[0] = 6
        #expect(throws: BinaryDecodingError.invalid(offset: 0, field: "stateFormatVersion 6 (this build reads 1...5)")) {
            _ = try decoded(bytes, LedgerConfiguration())
        }
        bytes[0] = 0
        #expect(throws: BinaryDecodingError.invalid(offset: 0, field: "stateFormatVersion 0 (this build reads 1...5)")) {
            _ = try decoded(bytes, LedgerConfiguration())
        }
        #expect(Ledger.stateFormatVersion == 5)
    }

    /// One value of every error case, every rule under each rule-carrying case.
    static func everyLedgerError() -> [LedgerError] {
        let account = AccountID(tenant: TenantID(1), number: 2)
        let hold = HoldID(tenant: TenantID(1), number: 3)
        let key = IdempotencyKey(high: 4, low: 5)
        var errors: [LedgerError] = [
            .invalidAmount(credits(1)), .amountOverflow, .tenantExists(TenantID(1)), .unknownTenant(TenantID(1)),
            .accountExists(account), .unknownAccount(account), .departmentExists(TenantID(1), DepartmentID(2)),
            .unknownDepartment(TenantID(1), DepartmentID(2)), .unknownHold(hold), .holdNotOpen(hold),
            .holdNotDue(hold, expiresAt: t0), .accountFrozen(account),
            .insufficientCredits(available: credits(1), requested: credits(2)),
            .memberLimitExceeded(remaining: credits(1), requested: credits(2)),
            .departmentAllocationExceeded(remaining: credits(1), requested: credits(2)),
            .idempotencyConflict(key), .unknownDebit(key), .refundExceedsDebit(refundable: credits(1), requested: credits(2)),
            .invalidTimeout(millis: -1), .invalidExpiry(expiresAt: t0), .logStopped,
            .notSubscribed(account), .alreadySubscribed(account), .notDue(account, dueAt: t0),
            .staleSchedule(expected: 1, requested: 2), .nothingDue(account), .planChanged(account),
            .rateLimited(retryAfterMillis: 250),
        ]
        errors += LedgerError.Rule.allCases.map { .notAllowed(account, $0) }
        errors += LedgerError.InputRule.allCases.map { .invalidInput($0) }
        errors += LedgerError.Limit.allCases.map { .limitReached($0) }
        errors += Permission.allCases.map { .forbidden($0) }
        return errors
    }

    @Test("every error has its own stable snake_case code")
    func errorCodes() {
        let errors = Self.everyLedgerError()
        let codes = errors.map(\.code)
        #expect(Set(codes).count == errors.count, "one code per error and rule")
        for code in codes {
            #expect(code.allSatisfy { $0 == "_" || $0 == "." || ("a" ... "z").contains($0) }, "\(code)")
        }
        // The names a service's clients match on (issue 15): pinned.
        #expect(LedgerError.insufficientCredits(available: .zero, requested: credits(1)).code == "insufficient_credits")
        #expect(LedgerError.memberLimitExceeded(remaining: .zero, requested: credits(1)).code == "member_limit_reached")
        #expect(LedgerError.idempotencyConflict(IdempotencyKey(high: 1, low: 1)).code == "key_conflict")
        #expect(LedgerError.notAllowed(AccountID(tenant: TenantID(1), number: 0), .membersHoldNoGrants).code
            == "not_allowed.members_hold_no_grants")
    }

    @Test("a rule, an input rule and a limit share one numbering, and a stored value of one kind never decodes as another")
    func rulePayloadsAreDistinct() {
        let rules = LedgerError.Rule.allCases.map(\.rawValue)
        let inputRules = LedgerError.InputRule.allCases.map(\.rawValue)
        let limits = LedgerError.Limit.allCases.map(\.rawValue)
        let all = rules + inputRules + limits
        #expect(Set(all).count == all.count, "a raw value names one rule of one kind")
        #expect(Set(all) == Set(1 ... 29), "the values stored before the split (1 to 27) are all still named, and 28-29 came after")
        let account = AccountID(tenant: TenantID(3), number: 4)
        for value in UInt8(0) ... UInt8(40) {
            // The codes the store writes for notAllowed (16, rule in w2), invalidInput (21)
            // and limitReached (22, both in w0), with every value in the rule's word.
            let notAllowed = StoredOutcome(w0: account.tenant.rawValue, w1: UInt64(account.number), w2: UInt64(value), code: 16)
            let invalidInput = StoredOutcome(w0: UInt64(value), w1: 0, w2: 0, code: 21)
            let limitReached = StoredOutcome(w0: UInt64(value), w1: 0, w2: 0, code: 22)
            #expect(notAllowed.decodedError == LedgerError.Rule(rawValue: value).map { .notAllowed(account, $0) }, "rule \(value)")
            #expect(invalidInput.decodedError == LedgerError.InputRule(rawValue: value).map { .invalidInput($0) }, "input rule \(value)")
            #expect(limitReached.decodedError == LedgerError.Limit(rawValue: value).map { .limitReached($0) }, "limit \(value)")
        }
        #expect(Set(LedgerError.Limit.allCases.map(\.code)).isDisjoint(with: LedgerError.InputRule.allCases.map(\.code)))
    }

    @Test("the outcome validator accepts exactly the codes the outcome store writes")
    func outcomeValidatorMatchesTheStore() {
        let errors = Self.everyLedgerError()
        let payloads = LedgerError.Rule.allCases.count + LedgerError.InputRule.allCases.count + LedgerError.Limit.allCases.count
            + Permission.allCases.count
        // Every case of the exhaustive `errorCaseName` is in the list.
        #expect(Set(errors.map(errorCaseName)).count == 28 + payloads)
        var codes: Set<UInt8> = []
        for error in errors {
            let stored = StoredOutcome(.failure(error))
            #expect(stored.isKnown && !stored.isSuccess, "\(error)")
            codes.insert(stored.code)
        }
        let routed = (0 ..< LedgerLimits.routedCandidatesMax).flatMap { candidate in
            KeySource.allCases.map { Receipt.Created.routed(candidate: candidate, keySource: $0) }
        }
        #expect(Set(routed.map(\.rawValue)).count == routed.count, "every routed choice has its own code")
        let planChanges = [PlanProration.Kind.upgrade, .deferred, .unchanged].map(Receipt.Created.planChange)
        #expect(planChanges.compactMap(\.planChange) == [.upgrade, .deferred, .unchanged])
        #expect(Set((routed + planChanges).map(\.rawValue)).count == routed.count + 3, "plan changes have codes of their own")
        for created in [Receipt.Created.nothing, .hold, .grant] + routed + planChanges {
            let receipt = Receipt(sequence: 9, amount: credits(1), availableAfter: credits(2), tenant: TenantID(1), created: created)
            let stored = StoredOutcome(.success(receipt))
            #expect(stored.isKnown && stored.isSuccess)
            codes.insert(stored.code)
        }
        // A code is accepted when some words make it known (the rule-carrying codes accept only
        // their own kind's values, so no one word value fits them all).
        func known(_ code: UInt8) -> StoredOutcome? {
            (UInt64(0) ... 40).lazy.map { StoredOutcome(w0: $0, w1: 1, w2: $0, code: code) }.first { $0.isKnown }
        }
        let accepted = Set((UInt8(0) ... UInt8.max).filter { known($0) != nil })
        #expect(accepted == codes)
        // Whatever it accepts reads back without trapping, as the same outcome.
        for code in accepted.sorted() {
            guard let stored = known(code) else { continue }
            #expect(StoredOutcome(stored.outcome(tenant: TenantID(1))).code == code)
        }
        #expect(!StoredOutcome(w0: 1, w1: 1, w2: 0, code: 16).isKnown, "a rule error with an unknown rule")
        #expect(!StoredOutcome(w0: 0x101, w1: 0, w2: 0, code: 21).isKnown)
    }

    // MARK: Random sequences

    @Test("random sequences: a restored copy gives the same outcomes, entries and digests at every step",
          arguments: 0 ..< PropertySettings.lanes)
    func restoredCopyContinuesIdentically(lane: Int) throws {
        let seed = try #require(PropertySettings.seed, "CREDITS_TEST_SEED must be a decimal or 0x-hex UInt64")
        let sequences = max(1, PropertySettings.sequences / 4)
        print("seed: \(seed) (snapshot lane \(lane) of \(PropertySettings.lanes), \(sequences) sequences; reproduce with CREDITS_TEST_SEED=\(seed))")
        var failures = 0
        var continued = 0
        for index in 0 ..< sequences {
            let sequenceSeed = StableHasher.mix(seed ^ 0x5EED_0F_5A9 ^ StableHasher.mix(UInt64(lane) << 32 | UInt64(index)))
            let result = Self.runRestoredSequence(seed: sequenceSeed)
            continued += result.continued
            if let problem = result.problem {
                failures += 1
                Issue.record("seed \(seed), lane \(lane), sequence \(index) (sequence seed \(sequenceSeed)):\n\(problem)")
                if failures >= 3 { break }
            }
        }
        #expect(continued >= sequences * 20, "commands applied after restores")
    }

    /// One sequence: the prologue and some random steps, a snapshot (sometimes of the empty
    /// ledger), then the same further commands — a few exact retries first, a final round of
    /// time-outs — on the original and the decoded copy.
    static func runRestoredSequence(seed: UInt64) -> (problem: String?, continued: Int) {
        var sequence = RandomSequence(seed: seed)
        let snapshotEmpty = sequence.rng.chance(5)
        let before = sequence.rng.below(60)
        let after = 20 + sequence.rng.below(60)
        var restored = sequence.ledger
        var continued = 0
        var replays = 0

        func snapshot(_ sequence: RandomSequence) -> (Ledger?, String?) {
            let bytes = encoded(sequence.ledger)
            do {
                let copy = try decoded(bytes, sequence.configuration)
                let problems = restoreProblems(original: sequence.ledger, restored: copy, bytes: bytes)
                return (copy, problems.isEmpty ? nil : "at the snapshot: " + problems.joined(separator: "\n"))
            } catch {
                return (nil, "decoding the snapshot failed: \(error)")
            }
        }
        /// Applies `command` to both; returns the first problem.
        func both(_ sequence: inout RandomSequence, _ restored: inout Ledger, _ command: Command) -> String? {
            if let problem = sequence.step(command) { return "original: " + problem }
            continued += 1
            if case .success = sequence.outcomes.last!, sequence.entries.last! == nil { replays += 1 }
            if let problem = continuationProblem(&restored, command, at: sequence.now, original: sequence.ledger,
                                                 outcome: sequence.outcomes.last!, entry: sequence.entries.last!) {
                return "restored copy, step \(sequence.steps.count - 1) (\(command.action)): \(problem)"
            }
            return nil
        }

        var snapshotted = false
        if snapshotEmpty {
            let (copy, problem) = snapshot(sequence)
            if let problem { return (problem, continued) }
            restored = copy!
            snapshotted = true
        }
        for action in sequence.prologue() {
            let command = Command(key: sequence.freshKey(), action)
            if snapshotted {
                if let problem = both(&sequence, &restored, command) { return (problem, continued) }
            } else if let problem = sequence.step(command) {
                return (problem, continued)
            }
        }
        if !snapshotted {
            for _ in 0 ..< before {
                sequence.advanceTime()
                if let problem = sequence.step(sequence.nextCommand()) { return (problem, continued) }
            }
            let (copy, problem) = snapshot(sequence)
            if let problem { return (problem, continued) }
            restored = copy!
        }
        // The newest command before the snapshot that succeeded and is surely still
        // remembered is retried exactly: the restored table must answer it, and it must
        // record nothing (whether random retries hit such a key is chance, so this one is not).
        if let key = sequence.usedKeys.last(where: { key in
            guard let record = sequence.keys[key], case .success = record.outcome else { return false }
            return sequence.surelyRemembered(record)
        }), let record = sequence.keys[key] {
            let before = replays
            if let problem = both(&sequence, &restored, record.command) { return (problem, continued) }
            if replays != before + 1 {
                return ("a retry of \(record.command.action) after the restore was not answered from the idempotency table",
                        continued)
            }
        }
        // Exact retries of keys used before the snapshot, straight after it.
        for _ in 0 ..< 3 where !sequence.usedKeys.isEmpty && sequence.rng.chance(60) {
            let key = sequence.rng.pick(sequence.usedKeys)
            guard let record = sequence.keys[key] else { continue }
            if let problem = both(&sequence, &restored, record.command) { return (problem, continued) }
        }
        for _ in 0 ..< after {
            sequence.advanceTime()
            if let problem = both(&sequence, &restored, sequence.nextCommand()) { return (problem, continued) }
        }
        // Time out every hold still open, past every deadline.
        sequence.now = sequence.now.plus(LedgerLimits.holdTimeoutMillisMax)
        for hold in sequence.ledger.holdsTimedOut(at: sequence.now) {
            if let problem = both(&sequence, &restored, Command(key: sequence.freshKey(), .timeOutHold(hold))) {
                return (problem, continued)
            }
        }
        if sequence.ledger.openHoldCount != 0 { return ("holds left open after timing them all out", continued) }
        if encoded(restored) != encoded(sequence.ledger) { return ("the copies encode differently at the end", continued) }
        return (nil, continued)
    }

    // MARK: Corruption

    /// A ledger from a random sequence with every kind of record, snapshotted part-way; the
    /// commands that followed, for applying to corrupted copies.
    static func corruptionFixture(seed: UInt64) -> (ledger: Ledger, bytes: [UInt8], rest: [RandomSequence.Step]) {
        var sequence = RandomSequence(seed: seed)
        for action in sequence.prologue() { _ = sequence.step(Command(key: sequence.freshKey(), action)) }
        var snapshot: (Ledger, Int)?
        for index in 0 ..< 140 {
            sequence.advanceTime()
            _ = sequence.step(sequence.nextCommand())
            if index == 100 { snapshot = (sequence.ledger, sequence.steps.count) }
        }
        let (ledger, count) = snapshot!
        return (ledger, encoded(ledger), Array(sequence.steps[count...]))
    }

    @Test("every truncation throws; every byte change throws or decodes to a consistent, usable ledger")
    func corruptedEncodingsThrowOrDecodeConsistently() throws {
        let seed = try #require(PropertySettings.seed, "CREDITS_TEST_SEED must be a decimal or 0x-hex UInt64")
        print("seed: \(seed) (snapshot corruption; reproduce with CREDITS_TEST_SEED=\(seed))")
        var rng = SplitMix64(seed: seed ^ 0xC0_22_0F7)
        // A fixture whose ledger has an organisation, open holds and closed ones.
        var fixture = Self.corruptionFixture(seed: rng.next())
        for _ in 0 ..< 20 where fixture.ledger.openHoldCount == 0 || fixture.ledger.organisation(TenantID(100)) == nil {
            fixture = Self.corruptionFixture(seed: rng.next())
        }
        let (ledger, bytes, rest) = fixture
        let configuration = ledger.configuration
        #expect(try decoded(bytes, configuration).stateDigest() == ledger.stateDigest())

        // Truncations: the decoder needs every byte.
        for length in Set((0 ..< 300).map { _ in rng.below(bytes.count) }).sorted() {
            #expect(throws: BinaryDecodingError.self, "truncated to \(length) of \(bytes.count) bytes") {
                _ = try decoded(Array(bytes[..<length]), configuration)
            }
        }

        // Byte changes: one at every position, then a few at random positions.
        var rejected = 0
        var accepted = 0
        var fields: Set<String> = []
        func check(_ corrupted: [UInt8], _ what: String) {
            do {
                var copy = try decoded(corrupted, configuration)
                accepted += 1
                // It decoded: the change hit a value, and the result is a consistent ledger...
                #expect(copy.invariantViolations().isEmpty, "\(what)")
                #expect(encoded(copy) == corrupted, "the decoded ledger encodes back to the same bytes (\(what))")
                // ... that can be used: the commands that followed the snapshot apply without trapping.
                for step in rest { _ = copy.apply(step.command, at: step.time) }
            } catch {
                rejected += 1
                if case .invalid(_, let field) = error { fields.insert(String(field.prefix(while: { $0 != " " }))) }
            }
        }
        for position in bytes.indices {
            var corrupted = bytes
            corrupted[position] ^= UInt8(1 + rng.below(255))
            check(corrupted, "byte \(position) changed")
        }
        for _ in 0 ..< 1_000 {
            var corrupted = bytes
            var positions: [Int] = []
            for _ in 0 ..< 1 + rng.below(4) {
                let position = rng.below(bytes.count)
                positions.append(position)
                corrupted[position] ^= UInt8(1 + rng.below(255))
            }
            check(corrupted, "bytes \(positions) changed")
        }
        // How many random changes hit plain values (keys, fingerprints, times) and decode is
        // chance, so it is printed, not asserted: every change either throws or decodes to a
        // consistent ledger (`check`). The cases below, and `digestCoversSchedules`, reach
        // both kinds on purpose.
        print("snapshot corruption: \(bytes.count) bytes, \(rejected) changes rejected, \(accepted) decoded; rejecting fields: \(fields.sorted())")
        // Any change to the version or the configuration it was written with is rejected by name.
        for position in 0 ..< 28 {
            var corrupted = bytes
            corrupted[position] ^= UInt8(1 + rng.below(255))
            #expect(throws: BinaryDecodingError.self) { _ = try decoded(corrupted, configuration) }
        }
    }

    @Test("structural corruption is named: a cycle, a foreign grant, an unreachable account, a bad enum")
    func structuralCorruptionIsNamed() throws {
        var h = LedgerHarness()
        let a = try h.openIndividual(1)
        let b = try h.openIndividual(2)
        try h.grant(a, credits(10))
        try h.grant(a, credits(20), priority: 200)
        try h.grant(b, credits(5))
        let bytes = encoded(h.ledger)
        let header = 4 + 8 + 8 + 8 + 8 + 8 + 32 + 16
        let tenants = header
        let accountsStart = tenants + 2 * Ledger.encodedTenantBytes
        let grantsStart = accountsStart + 2 * Ledger.encodedAccountBytes
        func corrupt(_ offset: Int, _ value: [UInt8]) -> [UInt8] {
            var copy = bytes
            copy.replaceSubrange(offset ..< offset + value.count, with: value)
            return copy
        }
        func expectInvalid(_ corrupted: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try decoded(corrupted, h.ledger.configuration)
                Issue.record("decoded; expected an error mentioning '\(fragment)'", sourceLocation: sourceLocation)
            } catch {
                #expect("\(error)".contains(fragment), "\(error)", sourceLocation: sourceLocation)
            }
        }
        // Grant slots of account a (slot 0): 0 then 1 (burn order); b's grant is slot 2.
        let nextOfSecondGrant = grantsStart + Ledger.encodedGrantBytes + 8 + 40 + 4 + 4
        expectInvalid(corrupt(nextOfSecondGrant, [0, 0, 0, 0]), "reached twice")
        expectInvalid(corrupt(nextOfSecondGrant, [2, 0, 0, 0]), "names account")
        expectInvalid(corrupt(nextOfSecondGrant, [3, 0, 0, 0]), "next")
        // Tenant 2's first account (slot 1) replaced by none: account 1 is unreachable.
        let firstAccountOfTenant2 = tenants + Ledger.encodedTenantBytes + 8
        expectInvalid(corrupt(firstAccountOfTenant2, [0xFF, 0xFF, 0xFF, 0xFF]), "reached from no tenant")
        let kindOfFirstGrant = grantsStart + 8 + 40 + 12 + 1
        expectInvalid(corrupt(kindOfFirstGrant, [99]), "kind")
        let flagsOfFirstAccount = accountsStart + 8 + 16
        expectInvalid(corrupt(flagsOfFirstAccount, [0x40]), "flags")
        // A conservation break only the invariant checker sees.
        let remainingOfFirstGrant = grantsStart + 16
        expectInvalid(corrupt(remainingOfFirstGrant, [0x00]), "invariants:")
        // Counts larger than the bytes that follow.
        expectInvalid(corrupt(header - 12, [0xFF, 0xFF, 0xFF, 0x00]), "record counts")
    }
}

// MARK: - Schedules, grace and forfeiture (state format version 3)

extension SnapshotStateTests {
    /// The accounts of `scheduledHarness`, each in one of the states version 3 added.
    enum Scheduled {
        /// Renewed once: its first allocation rolled over and waits in grace for a hold on it.
        static let active = AccountID(tenant: TenantID(11), number: 0)
        static let cancelling = AccountID(tenant: TenantID(12), number: 0)
        /// Its renewal payment was declined: its allocation is in grace.
        static let lapsed = AccountID(tenant: TenantID(13), number: 0)
        /// A purchase whose grace ended while a hold was open on it: forfeited, kept for the hold.
        static let forfeited = AccountID(tenant: TenantID(14), number: 0)
        /// Subscribed, with a refill in flight after two failed attempts, and then terms that
        /// allow fewer attempts than that.
        static let refilling = AccountID(tenant: TenantID(15), number: 0)
        /// Auto-refill disabled after its only attempt failed.
        static let disabled = AccountID(tenant: TenantID(16), number: 0)
        /// Auto-refill set, then removed: a schedule with neither part.
        static let unwatched = AccountID(tenant: TenantID(17), number: 0)
        /// An organisation's pool, subscribed and renewed (which started a period).
        static let pool = AccountID(tenant: TenantID(600), number: 0)

        static let all = [active, cancelling, lapsed, forfeited, refilling, disabled, unwatched, pool]
    }

    /// A ledger with every kind of schedule state, at 2026-02-28 01:00, and the holds still
    /// open on the active account's grace grant and the forfeited grant.
    static func scheduledHarness() throws -> (h: LedgerHarness, activeHold: HoldID, forfeitedHold: HoldID) {
        var h = LedgerHarness(start: CalendarMonths.date(2026, 1, 31))
        for account in Scheduled.all where account != Scheduled.pool { try h.openIndividual(account.tenant.rawValue) }
        let org = try OrganisationFixture(in: &h, tenant: Scheduled.pool.tenant.rawValue, poolCredits: credits(100),
                                          departments: [(DepartmentID(1), nil)], members: [(1, DepartmentID(1), nil)])
        let grace = 30 * dayMillis

        try h.succeed(.subscribe(Scheduled.active, SubscriptionTerms(plan: "Pro", allocation: credits(5_000), priceCents: 14_999)))
        try h.debit(Scheduled.active, credits(1_000))
        let activeHold = try h.reserve(Scheduled.active, credits(500), timeoutMillis: LedgerLimits.holdTimeoutMillisMax)
        try h.succeed(.subscribe(Scheduled.cancelling, SubscriptionTerms(plan: "Team", allocation: credits(2_000), priceCents: 4_900,
                                                                        rollover: false)))
        try h.succeed(.cancelSubscription(Scheduled.cancelling))
        try h.succeed(.subscribe(Scheduled.lapsed, SubscriptionTerms(plan: "Pro", allocation: credits(3_000), priceCents: 14_999,
                                                                    rolloverMonths: 6)))
        try h.debit(Scheduled.lapsed, credits(100))
        try h.grant(Scheduled.forfeited, credits(100), expiresAt: CalendarMonths.date(2026, 2, 10))
        try h.grant(Scheduled.forfeited, credits(50))
        let forfeitedHold = try h.reserve(Scheduled.forfeited, credits(30), timeoutMillis: LedgerLimits.holdTimeoutMillisMax)
        try h.succeed(.subscribe(org.pool, SubscriptionTerms(plan: "Enterprise", allocation: .zero, priceCents: 0)))

        try h.succeed(.subscribe(Scheduled.refilling, SubscriptionTerms(plan: "Starter", allocation: credits(1_000), priceCents: 0)))
        try h.succeed(.setAutoRefill(Scheduled.refilling, AutoRefillTerms(threshold: credits(500), refillCredits: 1_000, attemptsMax: 3)))
        try h.debit(Scheduled.refilling, credits(600)) // below the threshold: a refill starts
        let refill = try #require(h.ledger.autoRefill(of: Scheduled.refilling)?.refillInFlight)
        h.advance(hourMillis)
        try h.succeed(.failRefill(Scheduled.refilling, refill: refill,
                                  RefillFailure(declined: true, reason: "card declined", retryAt: h.now.plus(hourMillis))))
        h.advance(hourMillis)
        try h.succeed(.failRefill(Scheduled.refilling, refill: refill,
                                  RefillFailure(declined: false, reason: "gateway timeout", retryAt: h.now.plus(hourMillis))))
        try h.succeed(.setAutoRefill(Scheduled.refilling, AutoRefillTerms(threshold: credits(500), refillCredits: 1_000, attemptsMax: 1)))

        try h.grant(Scheduled.disabled, credits(100))
        try h.succeed(.setAutoRefill(Scheduled.disabled, AutoRefillTerms(threshold: credits(50), refillCredits: 100, attemptsMax: 1)))
        try h.debit(Scheduled.disabled, credits(60))
        let disabledRefill = try #require(h.ledger.autoRefill(of: Scheduled.disabled)?.refillInFlight)
        try h.succeed(.failRefill(Scheduled.disabled, refill: disabledRefill,
                                  RefillFailure(declined: true, reason: "card declined", retryAt: nil)))

        try h.grant(Scheduled.unwatched, credits(10))
        try h.succeed(.setAutoRefill(Scheduled.unwatched, AutoRefillTerms(threshold: credits(1), refillCredits: 0)))
        try h.succeed(.setAutoRefill(Scheduled.unwatched, nil))

        // The purchase expires into 5 days of grace with 30 credits held, then is forfeited.
        try h.succeed(.expireGrants(Scheduled.forfeited, graceMillis: 5 * dayMillis), at: CalendarMonths.date(2026, 2, 10))
        try h.succeed(.forfeitGrants(Scheduled.forfeited), at: CalendarMonths.date(2026, 2, 15))
        // The first cycles end on 28 February.
        h.move(to: CalendarMonths.date(2026, 2, 28))
        try h.succeed(.renewSubscription(Scheduled.active, cycle: 1, graceMillis: grace))
        try h.succeed(.lapseSubscription(Scheduled.lapsed, cycle: 0, reason: .paymentDeclined, graceMillis: grace))
        try h.succeed(.renewSubscription(org.pool, cycle: 1, graceMillis: grace))
        h.advance(hourMillis)
        return (h, activeHold, forfeitedHold)
    }

    @Test("the scheduled harness reaches every state version 3 added")
    func scheduledHarnessReachesEveryState() throws {
        let (h, _, _) = try Self.scheduledHarness()
        let active = try h.balance(Scheduled.active)
        #expect(active.grants.contains { $0.graceEndsAt != nil && $0.remaining == .zero && $0.held == credits(500) })
        #expect(active.grants.contains { $0.kind == .rollover && $0.remaining == credits(3_500) })
        let forfeited = try h.balance(Scheduled.forfeited)
        #expect(forfeited.grants.contains { $0.isForfeited && $0.remaining == .zero && $0.held == credits(30) })
        #expect(forfeited.expired == credits(70))
        #expect(try h.balance(Scheduled.lapsed).inGrace == credits(2_900))
        #expect(h.ledger.subscription(of: Scheduled.active)?.status == .active)
        #expect(h.ledger.subscription(of: Scheduled.active)?.cycle == 1)
        #expect(h.ledger.subscription(of: Scheduled.cancelling)?.status == .cancelling)
        #expect(h.ledger.subscription(of: Scheduled.lapsed)?.status == .lapsed)
        #expect(h.ledger.subscription(of: Scheduled.lapsed)?.lapseReason == .paymentDeclined)
        #expect(h.ledger.subscription(of: Scheduled.pool)?.cycle == 1)
        let refilling = try #require(h.ledger.autoRefill(of: Scheduled.refilling))
        #expect(refilling.refillInFlight != nil && refilling.failedAttempts == 2 && refilling.terms.attemptsMax == 1)
        let disabled = try #require(h.ledger.autoRefill(of: Scheduled.disabled))
        #expect(!disabled.isEnabled && disabled.disabledAfter == .paymentDeclined && disabled.refillInFlight == nil)
        #expect(h.ledger.autoRefill(of: Scheduled.unwatched) == nil && h.ledger.subscription(of: Scheduled.unwatched) == nil)
        let unwatched = try #require(h.ledger.slot(of: Scheduled.unwatched))
        #expect(h.ledger.accounts[unwatched].schedule != none, "removing auto-refill keeps the schedule slot")
        #expect(h.ledger.invariantViolations() == [])
    }

    @Test("subscriptions, auto-refill, grace and forfeiture round-trip: same digest, bytes, views and due notes")
    func scheduledLedgerRoundTrips() throws {
        let (h, _, _) = try Self.scheduledHarness()
        let bytes = encoded(h.ledger)
        #expect(bytes.count == h.ledger.encodedStateByteCount)
        let restored = try decoded(bytes, h.ledger.configuration)
        #expect(restoreProblems(original: h.ledger, restored: restored, bytes: bytes) == [])
        #expect(restored.stateDigest() == h.ledger.stateDigest())
        #expect(restored.invariantViolations() == [])
        var copy = h
        copy.ledger = restored
        #expect(copy.observe() == h.observe(), "balances, subscriptions and auto-refills are the same")
        for account in Scheduled.all {
            #expect(restored.balance(of: account, at: h.now) == h.ledger.balance(of: account, at: h.now), "\(account)")
            #expect(restored.subscription(of: account) == h.ledger.subscription(of: account), "\(account)")
            #expect(restored.autoRefill(of: account) == h.ledger.autoRefill(of: account), "\(account)")
        }
        // The derived links and flags are rebuilt exactly.
        #expect(restored.accounts.elements == h.ledger.accounts.elements)
        #expect(restored.schedules.elements == h.ledger.schedules.elements)
        // The scheduler rebuilds its heap from the restored ledger: the same notes, the same work.
        let notes = h.ledger.allDueNotes().sorted()
        #expect(restored.allDueNotes().sorted() == notes)
        let later = CalendarMonths.date(2026, 4, 30)
        for note in notes {
            #expect(restored.dueWork(note, at: later, graceMillis: 30 * dayMillis)
                == h.ledger.dueWork(note, at: later, graceMillis: 30 * dayMillis), "\(note)")
        }
    }

    @Test("after a restore, refills, holds on grace and forfeited grants, renewals, lapses and reactivations behave exactly as without it")
    func scheduledLedgerContinuesLikeTheOriginal() throws {
        let (original, activeHold, forfeitedHold) = try Self.scheduledHarness()
        var h = original
        var r = original
        r.ledger = try decoded(encoded(original.ledger), original.ledger.configuration)
        let grace = 30 * dayMillis
        let payment = { (now: Timestamp) in
            RefillPayment(amount: credits(1_000), expiresAt: CalendarMonths.adding(12, to: now),
                          costBasisNanoUSDPerCredit: 9_000_000, reference: "pay_1")
        }
        // Each step is made from the original's state (the refill in flight, the time), then
        // applied to both at `time`.
        let steps: [(Timestamp?, (Ledger, Timestamp) -> Action)] = [
            // What a hold gives back to a forfeited grant is forfeited at once; the grant retires.
            (nil, { _, _ in .release(forfeitedHold) }),
            // What it gives back to a grant in grace waits in grace.
            (nil, { _, _ in .settle(activeHold, actual: credits(200)) }),
            // The third failure is past the lowered terms' last attempt: auto-refill stops.
            (nil, { ledger, now in
                .failRefill(Scheduled.refilling, refill: ledger.autoRefill(of: Scheduled.refilling)?.refillInFlight ?? 0,
                            RefillFailure(declined: true, reason: "card declined", retryAt: now.plus(hourMillis))) }),
            // Enabled again below its threshold: a refill starts, and is paid.
            (nil, { _, _ in .setAutoRefill(Scheduled.disabled, AutoRefillTerms(threshold: credits(50), refillCredits: 100)) }),
            (nil, { ledger, now in
                .completeRefill(Scheduled.disabled, refill: ledger.autoRefill(of: Scheduled.disabled)?.refillInFlight ?? 0,
                                payment(now)) }),
            (nil, { _, _ in .debit(Scheduled.active, credits(100), scope: .unscoped) }),
            // Subscribing again after the lapse reinstates the credits in grace.
            (CalendarMonths.date(2026, 3, 5), { _, _ in
                .subscribe(Scheduled.lapsed, SubscriptionTerms(plan: "Pro", allocation: credits(3_000), priceCents: 14_999)) }),
            (nil, { _, _ in .lapseSubscription(Scheduled.cancelling, cycle: 0, reason: .cancelled, graceMillis: grace) }),
            (nil, { _, _ in .changePlan(Scheduled.active, PlanChangeRequest(deferring: SubscriptionTerms(
                plan: "Max", allocation: credits(9_000), priceCents: 29_999, rolloverMonths: 2))) }),
            // An upgrade paid in part: it grants its share now and raises the cycle's level.
            (nil, { _, _ in .changePlan(Scheduled.active, PlanChangeRequest(
                replacing: "Max", terms: SubscriptionTerms(plan: "Ultra", allocation: credits(12_000), priceCents: 39_999),
                paidCents: 1_000, reference: "pay_up")) }),
            // The active account's first allocation ends its grace: its 300 credits are forfeited.
            (CalendarMonths.date(2026, 3, 30), { _, _ in .forfeitGrants(Scheduled.active) }),
            (CalendarMonths.date(2026, 3, 31), { _, _ in .renewSubscription(Scheduled.active, cycle: 2, graceMillis: grace) }),
            (nil, { _, _ in .forfeitGrants(Scheduled.cancelling) }),
            // A late renewal: the allocation that ended a month ago rolls over.
            (nil, { _, _ in .renewSubscription(Scheduled.refilling, cycle: 1, graceMillis: grace) }),
            (nil, { _, _ in .debit(Scheduled.refilling, credits(1), scope: .unscoped) }),
        ]
        for (time, make) in steps {
            if let time {
                h.move(to: time)
                r.move(to: time)
            }
            let action = make(h.ledger, h.now)
            let key = h.freshKey()
            #expect(r.freshKey() == key)
            let expected = h.apply(action, key: key)
            let got = r.apply(action, key: key)
            if case .failure(let error) = expected.outcome { Issue.record("\(action) was rejected: \(error)") }
            #expect(got.outcome == expected.outcome, "\(action)")
            #expect(got.entry == expected.entry, "\(action)")
            #expect(r.ledger.stateDigest() == h.ledger.stateDigest(), "\(action)")
        }
        #expect(encoded(r.ledger) == encoded(h.ledger))
        #expect(r.observe() == h.observe())
        // The script did what it meant to.
        #expect(try h.balance(Scheduled.forfeited).grants.allSatisfy { !$0.isForfeited })
        #expect(h.ledger.autoRefill(of: Scheduled.refilling)?.disabledAfter == .paymentDeclined)
        #expect(h.ledger.subscription(of: Scheduled.lapsed)?.status == .active)
        #expect(h.ledger.subscription(of: Scheduled.cancelling)?.lapseReason == .cancelled)
    }

    @Test("a version 2 encoding (no grant states, no schedules, no refund sources) still decodes to the same ledger, its charges' sources unknown")
    func version2StillDecodes() throws {
        let (h, _) = try Self.richHarness()
        let ledger = h.ledger
        // Version 5 without its roles (none: a count of 0) and version 4's refund provenance
        // (the last parts) is version 3 with nothing after the schedules (this ledger has
        // none, so no cycle levels).
        let provenance = ledger.encodedRefundProvenanceByteCount + ledger.encodedRolesByteCount
        let full = encoded(ledger)
        let bytes = Array(full[..<(full.count - provenance)])
        // Version 2 is version 3 without each grant record's last byte and without the
        // schedules count at the end (this ledger has no schedules and only live grants).
        var old = Array(bytes[..<(Ledger.encodedHeaderBytes)])
        old.replaceSubrange(0 ..< 4, with: [2, 0, 0, 0])
        let grantsStart = Ledger.encodedHeaderBytes + ledger.tenants.count * Ledger.encodedTenantBytes
            + ledger.accounts.count * Ledger.encodedAccountBytes
        old += bytes[Ledger.encodedHeaderBytes ..< grantsStart]
        for slot in 0 ..< ledger.grants.count {
            let start = grantsStart + slot * Ledger.encodedGrantBytes
            #expect(bytes[start + 63] == GrantState.live.rawValue)
            old += bytes[start ..< start + 63]
        }
        let afterGrants = grantsStart + ledger.grants.count * Ledger.encodedGrantBytes
        #expect(Array(bytes.suffix(4)) == [0, 0, 0, 0], "no schedules")
        old += bytes[afterGrants ..< bytes.count - 4]
        let restored = try decoded(old, ledger.configuration)
        #expect(restored.invariantViolations() == [])
        let again = encoded(restored)
        #expect(Array(again[..<bytes.count]) == bytes, "re-encoded as version 4, the same up to the provenance")
        #expect(restored.idempotency.records.allSatisfy { $0.remembered.source == RefundSource.unknown },
                "a charge remembered before sources were kept is refunded the old way")
        #expect(restored.retiredGrants.count == 0)
    }

    @Test("the digest covers grant states and every schedule field, the plan by its text")
    func digestCoversSchedules() throws {
        let (h, _, _) = try Self.scheduledHarness()
        let bytes = encoded(h.ledger)
        let digest = h.ledger.stateDigest()
        // The pool's schedule ("Enterprise", no auto-refill; its plan is the only one with that
        // text): change values that stay valid, and the digest must change.
        let plan = [10, 0, 0, 0] + Array("Enterprise".utf8)
        let planAt = try #require((0 ... bytes.count - plan.count).last { Array(bytes[$0 ..< $0 + plan.count]) == plan })
        let last = planAt - 12
        let planText = last + 16
        var renamed = bytes
        renamed[planText] = UInt8(ascii: "e")
        let rolloverOff = { var copy = bytes; copy[last + 6] = 0; return copy }()
        for changed in [renamed, rolloverOff] {
            let ledger = try decoded(changed, h.ledger.configuration)
            #expect(ledger.invariantViolations() == [])
            #expect(ledger.stateDigest() != digest)
        }
    }

    /// A small ledger with two subscribed individuals (schedules 0 and 1, plan "Pro") and an
    /// organisation with a member.
    static func twoSubscriptions() throws -> (h: LedgerHarness, bytes: [UInt8], member: UInt32) {
        var h = LedgerHarness(start: CalendarMonths.date(2026, 1, 31))
        let a = try h.openIndividual(1)
        let b = try h.openIndividual(2)
        let org = try OrganisationFixture(in: &h, tenant: 3, poolCredits: credits(10), departments: [(DepartmentID(1), nil)],
                                          members: [(1, DepartmentID(1), nil)])
        try h.succeed(.subscribe(a, SubscriptionTerms(plan: "Pro", allocation: credits(100), priceCents: 0)))
        try h.succeed(.subscribe(b, SubscriptionTerms(plan: "Pro", allocation: credits(100), priceCents: 0)))
        return (h, encoded(h.ledger), try #require(h.ledger.slot(of: org.member(1))))
    }

    @Test("corrupt grant states and schedules are rejected by name")
    func corruptSchedulesAreNamed() throws {
        let (h, bytes, member) = try Self.twoSubscriptions()
        let ledger = h.ledger
        let scheduleBytes = Ledger.encodedScheduleBytesMin + 3
        // The schedules, then their cycle levels and the refund provenance (version 4).
        let levels = bytes.count - ledger.encodedRolesByteCount - ledger.encodedRefundProvenanceByteCount
            - 2 * Ledger.encodedCycleLevelBytes
        let first = levels - 2 * scheduleBytes
        let second = levels - scheduleBytes
        let grantsStart = Ledger.encodedHeaderBytes + ledger.tenants.count * Ledger.encodedTenantBytes
            + ledger.accounts.count * Ledger.encodedAccountBytes
        let firstAccount = try #require(ledger.slot(of: AccountID(tenant: TenantID(1), number: 0)))
        // Slot 0 is the pool's contract grant, live and never expiring.
        #expect(ledger.grants[0].state == .live && ledger.grants[0].remaining > 0)
        func corrupt(_ offset: Int, _ value: [UInt8]) -> [UInt8] {
            var copy = bytes
            copy.replaceSubrange(offset ..< offset + value.count, with: value)
            return copy
        }
        func slotBytes(_ slot: UInt32) -> [UInt8] { withUnsafeBytes(of: slot.littleEndian) { Array($0) } }
        func expectInvalid(_ corrupted: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try decoded(corrupted, ledger.configuration)
                Issue.record("decoded; expected an error mentioning '\(fragment)'", sourceLocation: sourceLocation)
            } catch {
                #expect("\(error)".contains(fragment), "\(error)", sourceLocation: sourceLocation)
            }
        }
        #expect(try decoded(bytes, ledger.configuration).stateDigest() == ledger.stateDigest())

        expectInvalid(corrupt(grantsStart + 63, [3]), "state")
        expectInvalid(corrupt(grantsStart + 63, [1]), "grace end") // in grace, but not yet expired
        expectInvalid(corrupt(grantsStart + 63, [2]), "is forfeited but has") // forfeited with credits remaining
        expectInvalid(corrupt(second, slotBytes(member)), "is a member")
        expectInvalid(corrupt(second, slotBytes(firstAccount)), "already has schedule")
        expectInvalid(corrupt(second, slotBytes(UInt32(ledger.accounts.count))), "schedule 1 account")
        expectInvalid(corrupt(first + 4, [9]), "schedule 0 status")
        expectInvalid(corrupt(first + 5, [1]), "schedule 0 lapseReason") // a reason on an active subscription
        expectInvalid(corrupt(first + 7, [0]), "schedule 0 rolloverMonths")
        expectInvalid(corrupt(first + 4, [0]), "subscription terms but no subscription")
        expectInvalid(corrupt(first + 8, [5, 0, 0, 0]), "schedule 0 cycle") // a cycle that has not started
        expectInvalid(corrupt(levels - 1, [3]), "schedule 1 disabledAfter")
        expectInvalid(corrupt(levels - 2 * scheduleBytes - 4, [0xFF, 0xFF, 0, 0]), "schedules count") // more schedules than accounts
        // Cycle levels: within the amounts and prices a subscription may have.
        expectInvalid(corrupt(levels, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), "schedule 0 cycle allocation")
        expectInvalid(corrupt(levels + 24, [0xFF, 0xFF, 0xFF, 0x7F]), "schedule 1 cycle price")
        // A plan whose text interns to `unavailable` (or, with a full table, any new text) is refused.
        var unavailable = Array(bytes[..<(second + 12)])
        let marker = Array(InternedName.unavailable.text.utf8)
        unavailable += slotBytes(UInt32(marker.count)) + marker
        unavailable += bytes[(second + 16 + 3)...]
        expectInvalid(unavailable, "schedule 1 plan")
    }
}
