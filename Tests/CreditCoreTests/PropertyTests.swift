import CreditCore
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(Plumbing) import CreditCore

// Property test: seeded random command sequences over several tenants (individuals, one
// with an overdraft, and an organisation with departments and members), every action
// valid and invalid, random time advances, retries and key conflicts. After every step:
// the invariant checker, conservation per account, the entry's reported balance, that a
// rejection changed nothing observable, and the idempotency contract. After each
// sequence: replaying the same (command, time) list on a fresh ledger gives the same
// outcomes, the same entries and the same `stateDigest()` after every step.
//
// Reproduce a failure with the seed it prints: CREDITS_TEST_SEED=<seed> swift test --filter PropertyTests
// Run longer with CREDITS_PROPERTY_SEQUENCES=<count> (per lane; default below).



enum PropertySettings {
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    /// From CREDITS_TEST_SEED (decimal or 0x-hex) if set, else random. nil if set but unreadable.
    static let seed: UInt64? = {
        guard let text = environment("CREDITS_TEST_SEED")?.trimmingCharacters(in: " \n") else {
            var generator = SystemRandomNumberGenerator()
            return generator.next()
        }
        if text.hasPrefix("0x") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text)
    }()

    static let lanes = 4
    /// Sequences per lane.
    static let sequences = environment("CREDITS_PROPERTY_SEQUENCES").flatMap { Int($0) } ?? 500
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

/// One random sequence: generates commands from what it has seen, applies and checks them.
struct RandomSequence {
    struct Step {
        let command: Command
        let time: Timestamp
    }

    struct KeyRecord {
        let command: Command
        let outcome: Outcome
        let ordinal: Int
        let time: Timestamp
    }

    var rng: SplitMix64
    let configuration: LedgerConfiguration
    var ledger: Ledger
    var now = t0
    var steps: [Step] = []
    var outcomes: [Outcome] = []
    var entries: [LedgerEntry?] = []
    var digests: [UInt64] = []
    var finalDigest: UInt64 = 0
    var recordedCount = 0
    var keyCounter: UInt64 = 0
    let keyHigh: UInt64

    // What the generator knows.
    let individuals = [TenantID(1), TenantID(2), TenantID(3)]
    let organisation = TenantID(100)
    let departments = [DepartmentID(1), DepartmentID(2), DepartmentID(3)]
    let accountIDs: [AccountID]
    let scopes = [ChargeScope.unscoped, ChargeScope(provider: 7), ChargeScope(provider: 7, model: 3), ChargeScope(provider: 8)]
    var holds: [HoldID] = []
    var holdAmounts: [HoldID: Millicredits] = [:]
    var charges: [(key: IdempotencyKey, account: AccountID, amount: Millicredits)] = []
    var keys: [IdempotencyKey: KeyRecord] = [:]
    var usedKeys: [IdempotencyKey] = []
    var seenTenants: Set<TenantID> = []
    var seenAccounts: Set<AccountID> = []
    var seenHolds: Set<HoldID> = []

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
        if rng.chance(50) {
            configuration = LedgerConfiguration()
        } else {
            configuration = LedgerConfiguration(idempotencyKeysMax: rng.pick([2, 4, 8, 16, 32]),
                                                idempotencyWindowMillis: rng.pick([5_000, 60_000, 3_600_000]),
                                                closedHoldsRememberedMax: rng.pick([1, 4, 64]))
        }
        ledger = Ledger(configuration: configuration)
        keyHigh = rng.next()
        var ids: [AccountID] = []
        for tenant in [TenantID(1), TenantID(2), TenantID(3), TenantID(4)] {
            ids.append(AccountID(tenant: tenant, number: 0))
        }
        ids.append(AccountID(tenant: TenantID(1), number: 1))
        for number in UInt32(0) ... 5 { ids.append(AccountID(tenant: TenantID(100), number: number)) }
        accountIDs = ids
    }

    // MARK: Generating

    mutating func freshKey() -> IdempotencyKey {
        keyCounter += 1
        return IdempotencyKey(high: keyHigh, low: keyCounter)
    }

    mutating func amount(maxCredits: Int64 = 60) -> Millicredits {
        switch rng.below(100) {
        case 0 ..< 3: return .zero
        case 3 ..< 5: return Millicredits(-rng.between(1, 5_000))
        case 5 ..< 6: return Millicredits(LedgerLimits.amountMax + 1)
        case 6 ..< 16: return Millicredits(rng.between(1, 999))
        default: return Millicredits(rng.between(1, maxCredits * 1_000))
        }
    }

    mutating func account() -> AccountID { rng.pick(accountIDs) }
    mutating func tenant() -> TenantID { rng.pick(individuals + [organisation, organisation, TenantID(4)]) }
    mutating func department() -> DepartmentID { rng.chance(90) ? rng.pick(departments) : DepartmentID(9) }
    mutating func scope() -> ChargeScope { rng.chance(60) ? .unscoped : rng.pick(scopes) }

    mutating func hold() -> HoldID {
        if !holds.isEmpty, rng.chance(85) { return rng.pick(holds) }
        return HoldID(tenant: rng.pick(individuals + [organisation]), number: UInt64(rng.between(1, 80)))
    }

    mutating func text() -> String {
        switch rng.below(20) {
        case 0: return ""
        case 1: return String(repeating: "é", count: 129)
        default: return rng.pick(["goodwill", "outage credit", "duplicate top-up", "€ correction"])
        }
    }

    /// A cap, usually above what was already used this period, sometimes below it (the
    /// excess is then recorded as overrun and spending stops).
    mutating func cap(atLeast usage: OrganisationView.Usage?) -> Millicredits? {
        if rng.chance(20) { return nil }
        if rng.chance(3) { return Millicredits(-1) }
        let floor = rng.chance(25) ? 0 : usage.map { max(0, $0.spent.rawValue + $0.held.rawValue) } ?? 0
        return Millicredits(floor + rng.between(0, 80_000))
    }

    mutating func grantTerms() -> GrantTerms {
        let effective: Timestamp? = switch rng.below(10) {
        case 0: now.plus(rng.between(1, 2 * hourMillis))
        case 1: now.plus(-rng.between(1, dayMillis))
        default: nil
        }
        let base = effective ?? now
        let expires: Timestamp = switch rng.below(10) {
        case 0 ..< 4: .never
        case 4: base // invalid: expires when effective
        default: base.plus(rng.between(minuteMillis, 30 * dayMillis))
        }
        return GrantTerms(kind: rng.pick(GrantKind.allCases), amount: amount(maxCredits: 200), effectiveAt: effective,
                          expiresAt: expires, priority: rng.pick([10, 100, 100, 100, 200]),
                          costBasisNanoUSDPerCredit: rng.pick([0, 0, 8_500_000, 10_000_000]),
                          scope: rng.chance(75) ? .unscoped : rng.pick(Array(scopes.dropFirst())))
    }

    mutating func nextAction() -> Action {
        if rng.chance(8) { return scheduleAction() }
        switch rng.below(100) {
        case 0 ..< 3:
            let kind: TenantKind = rng.chance(70) ? .individual : .organisation(departments: [
                DepartmentTerms(id: DepartmentID(1), costCentre: "CC-1", allocationPerPeriod: rng.chance(50) ? nil : credits(rng.between(10, 200))),
            ])
            return .openTenant(tenant(), kind)
        case 3 ..< 5:
            return .openDepartment(tenant(), DepartmentTerms(id: department(), costCentre: text(),
                                                             allocationPerPeriod: rng.chance(50) ? nil : credits(rng.between(0, 150))))
        case 5 ..< 8:
            let id = account()
            let kind: AccountKind = rng.chance(50) ? .standard(overdraft: rng.chance(70) ? .zero : credits(rng.between(1, 50)))
                : .member(department: department(), limitPerPeriod: rng.chance(40) ? nil : credits(rng.between(0, 80)))
            return .openAccount(id, kind)
        case 8 ..< 22:
            return .grant(account(), grantTerms())
        case 22 ..< 36:
            return .debit(account(), amount(), scope: scope())
        case 36 ..< 39:
            // A routed charge (tag 22): the ledger takes the first candidate a key of the
            // account covers, else the system choice. Sometimes malformed: no candidates, too
            // many, a choice out of range, a candidate not priced on system keys.
            let count = rng.chance(4) ? rng.pick([0, LedgerLimits.routedCandidatesMax + 1]) : Int(rng.between(1, 4))
            let candidates = (0 ..< count).map { _ in
                UsageCharge(model: rng.pick(["GPT-4o", "Claude 3 Opus", "Gemini Ultra"]), provider: rng.pick(["OpenAI", "Anthropic", "Google"]),
                            units: UInt64(rng.between(1, 5_000)), providerCostNanoUSD: rng.between(0, 3_000_000_000),
                            listPrice: rng.chance(5) ? .zero : amount(), keySource: rng.chance(97) ? .system : .userKey)
            }
            let choice: UInt8? = rng.chance(15) ? nil : UInt8(rng.between(0, Int64(max(1, count)) - (rng.chance(5) ? 0 : 1)))
            // A small request space, so reused keys sometimes name the same request.
            return .chargeRouted(account(), RoutedCharge(candidates: candidates, systemChoice: choice, request: UInt64(rng.between(1, 3))),
                                 scope: scope())
        case 39 ..< 42:
            // An AI call's charge: mostly on system keys (a debit of the list price that also
            // records usage), sometimes paid by an own key (0 credits, still recorded),
            // sometimes malformed (no model, a negative cost).
            let source = rng.chance(70) ? KeySource.system : rng.pick([KeySource.userKey, .organisationKey])
            let usage = UsageCharge(model: rng.chance(95) ? rng.pick(["GPT-4o", "Claude 3 Haiku", "Sora Pro"]) : "",
                                    provider: rng.pick(["OpenAI", "Anthropic"]), units: UInt64(rng.between(1, 5_000)),
                                    providerCostNanoUSD: rng.chance(97) ? rng.between(0, 3_000_000_000) : -1,
                                    listPrice: rng.chance(5) ? .zero : amount(), keySource: source)
            return .charge(account(), usage, scope: scope())
        case 42 ..< 52:
            let timeout: Int64 = rng.chance(5) ? rng.pick([0, -1, LedgerLimits.holdTimeoutMillisMax + 1]) : rng.between(1, 2 * hourMillis)
            return .reserve(account(), amount(), timeoutMillis: timeout, scope: scope())
        case 52 ..< 60:
            let id = hold()
            let reserved = holdAmounts[id]?.rawValue ?? 10_000
            let actual: Int64 = switch rng.below(10) {
            case 0: 0
            case 1: -1
            case 2 ..< 5: reserved + rng.between(1, 40_000)
            default: rng.between(0, reserved)
            }
            if rng.chance(25) {
                // The streaming-call pattern: settle with the call's usage (own key: 0).
                let source = rng.chance(70) ? KeySource.system : rng.pick([KeySource.userKey, .organisationKey])
                return .settleCharge(id, UsageCharge(model: "GPT-4o", provider: rng.pick(["OpenAI", "Anthropic"]), units: 1_000,
                                                     providerCostNanoUSD: 15_000_000, listPrice: Millicredits(max(0, actual)),
                                                     keySource: source))
            }
            return .settle(id, actual: Millicredits(actual))
        case 60 ..< 64:
            return .release(hold())
        case 64 ..< 67:
            return .timeOutHold(hold())
        case 67 ..< 73:
            if !charges.isEmpty, rng.chance(85) {
                let charge = rng.pick(charges)
                let target = rng.chance(90) ? charge.account : account()
                let value = rng.chance(80) ? Millicredits(rng.between(1, max(1, charge.amount.rawValue))) : amount()
                return .refund(target, debit: charge.key, value)
            }
            return .refund(account(), debit: freshKey(), amount())
        case 73 ..< 78:
            let value = amount(maxCredits: 40)
            return .adjust(account(), rng.chance(50) ? value : Millicredits(-value.rawValue), reason: text())
        case 78 ..< 81:
            return .freeze(account())
        case 81 ..< 85:
            return .unfreeze(account())
        case 85 ..< 88:
            let department = department()
            let usage = ledger.organisation(organisation)?.departments.first { $0.id == department }?.usage
            return .setDepartmentAllocation(rng.chance(90) ? organisation : tenant(), department, perPeriod: cap(atLeast: usage))
        case 88 ..< 91:
            let member = account()
            let usage = ledger.organisation(member.tenant)?.members.first { $0.account == member }?.usage
            return .setMemberLimit(member, perPeriod: cap(atLeast: usage))
        case 91 ..< 94:
            let sealed = rng.chance(3) ? [] : (0 ..< Int(rng.between(1, 40))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            return .registerKey(account(), KeyRegistration(provider: rng.pick(["OpenAI", "Anthropic"]),
                                                           fingerprint: "…\(rng.between(1000, 9999))", sealed: sealed))
        case 94:
            return .removeKey(account(), provider: rng.pick(["OpenAI", "Anthropic"]))
        case 95:
            return .setKeyPolicy(rng.chance(85) ? organisation : tenant(), rng.pick(KeyPolicy.allCases))
        default:
            return .startPeriod(rng.chance(85) ? organisation : tenant())
        }
    }

    /// Subscriptions, expiry, grace and refills: the scheduler's commands with the cycle and
    /// refill the ledger is at (read from it, as the scheduler does) or off by one, and the
    /// host's, valid and not.
    mutating func scheduleAction() -> Action {
        let account = account()
        let grace = rng.pick([0, hourMillis, 30 * dayMillis])
        let subscription = ledger.subscription(of: account)
        let refill = ledger.autoRefill(of: account)?.refillInFlight ?? UInt64(rng.between(0, 50))
        switch rng.below(12) {
        case 0:
            let valid = rng.chance(85)
            return .subscribe(account, SubscriptionTerms(plan: valid ? rng.pick(["Basic", "Pro"]) : "", allocation: amount(maxCredits: 100),
                                                         priceCents: rng.pick([0, 14_999]),
                                                         anchor: rng.chance(20) ? now.plus(-rng.between(0, 40 * dayMillis)) : nil,
                                                         rollover: rng.chance(70), rolloverMonths: valid ? UInt8(rng.between(1, 3)) : 0))
        case 1:
            if rng.chance(50) {
                // A plan change naming the plan in force (or, now and then, a stale one), paying
                // up to the price difference (or, now and then, more).
                let terms = SubscriptionTerms(plan: rng.pick(["Basic", "Pro", "Expert"]), allocation: amount(maxCredits: 150),
                                              priceCents: rng.pick([0, 5_999, 14_999, 24_999]))
                let level = subscription?.cyclePriceCents ?? 0
                let paid = rng.chance(10) ? Int64(rng.between(0, 30_000)) : Int64(rng.between(0, max(0, terms.priceCents - level)))
                return .changePlan(account, PlanChangeRequest(replacing: rng.chance(85) ? subscription?.plan ?? "Pro" : "Basic",
                                                              terms: terms, paidCents: paid, reference: paid > 0 ? "pay_\(paid)" : ""))
            }
            return rng.pick([.cancelSubscription(account), .resumeSubscription(account),
                             .changePlan(account, PlanChangeRequest(deferring: SubscriptionTerms(plan: "Expert", allocation: amount(maxCredits: 150),
                                                                                                 priceCents: 0)))])
        case 2, 3:
            let cycle = (subscription?.cycle ?? 0) + UInt32(rng.below(3))
            return .renewSubscription(account, cycle: cycle, graceMillis: grace)
        case 4:
            let cycle = (subscription?.cycle ?? 0) + UInt32(rng.below(2))
            return .lapseSubscription(account, cycle: cycle, reason: rng.pick(LapseReason.allCases), graceMillis: grace)
        case 5, 6:
            return .expireGrants(account, graceMillis: grace)
        case 7:
            return .forfeitGrants(account)
        case 8:
            return .setAutoRefill(account, rng.chance(10) ? nil : AutoRefillTerms(
                threshold: credits(rng.between(0, 300)), refillCredits: rng.between(0, 200), refillsPerMonthMax: UInt16(rng.between(0, 3)),
                cooldownMillis: rng.between(0, hourMillis), attemptsMax: UInt8(rng.between(0, 3))))
        case 9, 10:
            return .completeRefill(account, refill: refill, RefillPayment(
                amount: amount(maxCredits: 200), expiresAt: now.plus(rng.between(-dayMillis, 365 * dayMillis)),
                costBasisNanoUSDPerCredit: 10_000_000, reference: rng.chance(90) ? "pay-\(rng.below(100))" : ""))
        default:
            return .failRefill(account, refill: refill, RefillFailure(declined: rng.chance(50), reason: rng.chance(90) ? "declined" : "",
                                                                     retryAt: rng.chance(70) ? now.plus(rng.between(0, hourMillis)) : nil))
        }
    }

    /// The opening commands, most of the time all of them, in an order that mostly works.
    mutating func prologue() -> [Action] {
        var actions: [Action] = [
            .openTenant(TenantID(1), .individual), .openTenant(TenantID(2), .individual), .openTenant(TenantID(3), .individual),
            .openAccount(AccountID(tenant: TenantID(1), number: 0), .standard),
            .openAccount(AccountID(tenant: TenantID(1), number: 1), .standard(overdraft: credits(30))),
            .openAccount(AccountID(tenant: TenantID(2), number: 0), .standard),
            .openAccount(AccountID(tenant: TenantID(3), number: 0), .standard(overdraft: credits(10))),
            .openTenant(organisation, .organisation(departments: [
                DepartmentTerms(id: DepartmentID(1), costCentre: "CC-ENG", allocationPerPeriod: credits(rng.between(20, 150))),
                DepartmentTerms(id: DepartmentID(2), costCentre: "CC-OPS"),
            ])),
        ]
        for number in UInt32(1) ... 5 {
            actions.append(.openAccount(AccountID(tenant: organisation, number: number),
                                        .member(department: number <= 3 ? DepartmentID(1) : DepartmentID(2),
                                                limitPerPeriod: rng.chance(30) ? nil : credits(rng.between(5, 60)))))
        }
        for id in [AccountID(tenant: TenantID(1), number: 0), AccountID(tenant: TenantID(1), number: 1),
                   AccountID(tenant: TenantID(2), number: 0), AccountID(tenant: organisation, number: 0)] {
            actions.append(.grant(id, GrantTerms(kind: .purchase, amount: credits(rng.between(20, 300)),
                                                 expiresAt: rng.chance(50) ? .never : now.plus(rng.between(hourMillis, 10 * dayMillis)))))
        }
        return actions.filter { _ in rng.chance(95) }
    }

    mutating func advanceTime() {
        switch rng.below(100) {
        case 0 ..< 40: break
        case 40 ..< 70: now = now.plus(rng.between(1, 1_000))
        case 70 ..< 90: now = now.plus(rng.between(1_000, 10 * minuteMillis))
        case 90 ..< 99: now = now.plus(rng.between(10 * minuteMillis, 2 * dayMillis))
        // Now and then weeks pass: cycles end, grants expire, grace ends.
        default: now = now.plus(rng.between(10 * dayMillis, 40 * dayMillis))
        }
    }

    /// The command of the next step: usually new, sometimes a retry or a conflicting reuse.
    mutating func nextCommand() -> Command {
        if !usedKeys.isEmpty, rng.chance(8) {
            let key = rng.pick(usedKeys)
            guard let record = keys[key] else { return Command(key: freshKey(), nextAction()) }
            if rng.chance(75) { return record.command }
            return Command(key: key, nextAction())
        }
        return Command(key: freshKey(), nextAction())
    }

    // MARK: Running and checking

    /// Runs `count` random steps after the prologue; returns the first problem found.
    mutating func run(steps count: Int) -> String? {
        for action in prologue() {
            if let problem = step(Command(key: freshKey(), action)) { return problem }
        }
        for _ in 0 ..< count {
            advanceTime()
            if let problem = step(nextCommand()) { return problem }
        }
        finalDigest = ledger.stateDigest()
        return nil
    }

    mutating func step(_ command: Command) -> String? {
        let index = steps.count
        let before = ledger
        let applied = ledger.apply(command, at: now)
        steps.append(Step(command: command, time: now))
        outcomes.append(applied.outcome)
        entries.append(applied.entry)
        // Digests are compared on replay every few steps and at the end.
        digests.append(index % 8 == 7 ? ledger.stateDigest() : 0)
        note(command.action)

        var problems = ledger.invariantViolations()
        problems += balanceProblems(in: ledger, accounts: seenAccounts, tenants: seenTenants, at: now)

        let remembered = keys[command.key]
        if let entry = applied.entry {
            problems += balanceAfterProblems(entry, in: ledger, at: now)
            if entry.sequence != UInt64(recordedCount + 1) { problems.append("entry sequence \(entry.sequence) after \(recordedCount) entries") }
            if entry.outcome != applied.outcome || entry.key != command.key || entry.time != now {
                problems.append("the entry does not match the outcome, key or time")
            }
            if let remembered, surelyRemembered(remembered) {
                problems.append("key \(command.key) was still remembered (\(recordedCount - remembered.ordinal - 1) newer keys, age \(now.millisSinceEpoch - remembered.time.millisSinceEpoch) ms) but was applied anew")
            }
            if case .failure(let error) = applied.outcome {
                if case .idempotencyConflict = error { problems.append("a conflict was recorded as an entry") }
                // Scoped availability follows from the grant views, so only unscoped is observed.
                let scopes: Set<ChargeScope> = [.unscoped]
                let observedBefore = observeLedger(before, accounts: seenAccounts, holds: seenHolds, tenants: seenTenants, scopes: scopes, at: now)
                let observedAfter = observeLedger(ledger, accounts: seenAccounts, holds: seenHolds, tenants: seenTenants, scopes: scopes, at: now)
                if observedBefore != observedAfter { problems.append("the rejection \(error) changed observable state") }
            }
            keys[command.key] = KeyRecord(command: command, outcome: applied.outcome, ordinal: recordedCount, time: now)
            if remembered == nil { usedKeys.append(command.key) }
            recordedCount += 1
            learn(from: command, entry)
        } else {
            if ledger.stateDigest() != before.stateDigest() { problems.append("a retry or conflict changed the digest") }
            if let remembered {
                if surelyForgotten(remembered) {
                    problems.append("key \(command.key) should have been forgotten (\(recordedCount - remembered.ordinal - 1) newer keys, age \(now.millisSinceEpoch - remembered.time.millisSinceEpoch) ms) but was replayed")
                }
                let expected: Outcome = remembered.command == command ? remembered.outcome : .failure(.idempotencyConflict(command.key))
                if command.fingerprint == remembered.command.fingerprint, applied.outcome != remembered.outcome {
                    problems.append("a retry returned \(applied.outcome), the original was \(remembered.outcome)")
                } else if command.fingerprint != remembered.command.fingerprint, applied.outcome != expected {
                    problems.append("a reused key returned \(applied.outcome), expected a conflict")
                }
            } else {
                problems.append("a fresh key recorded no entry")
            }
        }
        if problems.isEmpty { return nil }
        return "step \(index) at \(now): \(command.action) with key \(command.key) → \(applied.outcome)\n" + problems.joined(separator: "\n")
    }

    func surelyRemembered(_ record: KeyRecord) -> Bool {
        let newer = recordedCount - record.ordinal - 1
        return newer <= configuration.idempotencyKeysMax / 2
            && now.millisSinceEpoch - record.time.millisSinceEpoch <= configuration.idempotencyWindowMillis
    }

    func surelyForgotten(_ record: KeyRecord) -> Bool {
        let newer = recordedCount - record.ordinal - 1
        return newer >= configuration.idempotencyKeysMax
            || now.millisSinceEpoch - record.time.millisSinceEpoch > configuration.idempotencyWindowMillis
    }

    mutating func note(_ action: Action) {
        seenTenants.insert(action.tenant)
        switch action {
        case .openTenant(let tenant, _):
            seenAccounts.insert(AccountID(tenant: tenant, number: 0))
        case .openAccount(let account, _), .grant(let account, _), .debit(let account, _, _), .reserve(let account, _, _, _),
             .refund(let account, _, _), .adjust(let account, _, _), .freeze(let account), .unfreeze(let account),
             .setMemberLimit(let account, _), .charge(let account, _, _), .chargeRouted(let account, _, _), .registerKey(let account, _),
             .removeKey(let account, _), .subscribe(let account, _), .changePlan(let account, _),
             .cancelSubscription(let account), .resumeSubscription(let account), .renewSubscription(let account, _, _),
             .lapseSubscription(let account, _, _, _), .expireGrants(let account, _), .forfeitGrants(let account),
             .setAutoRefill(let account, _), .completeRefill(let account, _, _), .failRefill(let account, _, _):
            seenAccounts.insert(account)
        case .settle(let hold, _), .release(let hold), .timeOutHold(let hold), .settleCharge(let hold, _):
            seenHolds.insert(hold)
        case .openDepartment, .setDepartmentAllocation, .startPeriod, .setKeyPolicy, .grantRole, .revokeRole,
             .setRateLimits, .setPlanRateLimits, .setAnomalyMode:
            break
        }
    }

    mutating func learn(from command: Command, _ entry: LedgerEntry) {
        guard case .success(let receipt) = entry.outcome else { return }
        switch command.action {
        case .reserve(_, let amount, _, _):
            if let hold = receipt.hold {
                holds.append(hold)
                holdAmounts[hold] = amount
                seenHolds.insert(hold)
            }
        case .debit(let account, let amount, _):
            charges.append((command.key, account, amount))
        case .charge(let account, let usage, _):
            // A charge is refundable by its key like a debit (when it moved credits).
            if usage.charged > .zero { charges.append((command.key, account, usage.charged)) }
        case .chargeRouted(let account, _, _):
            if receipt.amount > .zero { charges.append((command.key, account, receipt.amount)) }
        case .settle(let hold, let actual):
            if actual > .zero, let principal = entry.member {
                charges.append((command.key, principal, actual))
            }
            holds.removeAll { $0 == hold }
        case .settleCharge(let hold, let usage):
            if usage.charged > .zero, let principal = entry.member {
                charges.append((command.key, principal, usage.charged))
            }
            holds.removeAll { $0 == hold }
        default:
            break
        }
    }
}

/// Replays `steps` on a fresh ledger and compares every outcome, entry and digest.
func replayProblems(_ sequence: RandomSequence) -> String? {
    var ledger = Ledger(configuration: sequence.configuration)
    for (index, step) in sequence.steps.enumerated() {
        let applied = ledger.apply(step.command, at: step.time)
        if applied.outcome != sequence.outcomes[index] {
            return "replay step \(index): outcome \(applied.outcome), originally \(sequence.outcomes[index])"
        }
        if applied.entry != sequence.entries[index] {
            return "replay step \(index): the entry differs"
        }
        if sequence.digests[index] != 0, ledger.stateDigest() != sequence.digests[index] {
            return "replay step \(index): digest differs"
        }
    }
    if ledger.stateDigest() != sequence.finalDigest { return "replay: the final digest differs" }
    return nil
}

@Suite("Property: random command sequences keep every invariant and replay exactly")
struct PropertyTests {
    @Test("random command sequences keep the invariants and replay to the same digest", arguments: 0 ..< PropertySettings.lanes)
    func randomSequencesKeepInvariantsAndReplay(lane: Int) throws {
        let seed = try #require(PropertySettings.seed, "CREDITS_TEST_SEED must be a decimal or 0x-hex UInt64")
        print("seed: \(seed) (lane \(lane) of \(PropertySettings.lanes), \(PropertySettings.sequences) sequences; reproduce with CREDITS_TEST_SEED=\(seed))")
        _ = Self.runLane(seed: seed, lane: lane, sequences: PropertySettings.sequences)
    }

    /// Whether the generator exercises the ledger — mostly valid commands, many kinds of
    /// rejection — depends on the seed, so it is asserted on fixed seeds (docs/testing.md);
    /// the randomized lanes assert only the invariants and the replay.
    @Test("the generator exercises the ledger: a third of its commands succeed, 20 kinds of outcome or more (fixed seeds)",
          arguments: [0x9E4E_0001 as UInt64, 0x9E4E_0002])
    func generatorExercisesTheLedger(seed: UInt64) {
        let (totalSteps, outcomes) = Self.runLane(seed: seed, lane: 0, sequences: 500)
        let successes = outcomes["success", default: 0]
        #expect(successes * 3 >= totalSteps, "too few successful commands: \(outcomes)")
        #expect(outcomes.count >= 20, "too few kinds of outcome: \(outcomes)")
    }

    /// Runs `sequences` random sequences of a lane, recording any problem as an issue; returns
    /// the steps taken and the outcomes by kind.
    static func runLane(seed: UInt64, lane: Int, sequences: Int) -> (totalSteps: Int, outcomes: [String: Int]) {
        var failures = 0
        var totalSteps = 0
        var outcomes: [String: Int] = [:]
        // CREDITS_TEST_SEQUENCE_SEED=<sequence seed> replays one failing sequence alone (in lane 0).
        let single = PropertySettings.environment("CREDITS_TEST_SEQUENCE_SEED").flatMap { UInt64($0) }
        if single != nil && lane != 0 { return (0, [:]) }
        for index in 0 ..< (single == nil ? sequences : 1) {
            let sequenceSeed = single ?? StableHasher.mix(seed ^ StableHasher.mix(UInt64(lane) << 32 | UInt64(index)))
            var sequence = RandomSequence(seed: sequenceSeed)
            let length = 10 + sequence.rng.below(50)
            var problem = sequence.run(steps: length)
            if problem == nil { problem = replayProblems(sequence) }
            totalSteps += sequence.steps.count
            for outcome in sequence.outcomes {
                switch outcome {
                case .success: outcomes["success", default: 0] += 1
                case .failure(let error): outcomes[errorCaseName(error), default: 0] += 1
                }
            }
            if let problem {
                failures += 1
                Issue.record("seed \(seed), lane \(lane), sequence \(index) (sequence seed \(sequenceSeed)):\n\(problem)")
                if failures >= 3 { break }
            }
        }
        return (totalSteps, outcomes)
    }
}
