#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CreditCore
@_spi(Plumbing) import CreditCore

// The durability tests' shared workload (CreditPersistenceTests and CreditEngineTests): seeds
// that print and replay, and a seeded random command generator.
// Randomized tests print their seed; CREDITS_TEST_SEED=<seed> replays one.

// MARK: - Seeds

/// The durability tests' generator (SplitMix64, so a seed replays).
package typealias DurabilityRandom = SplitMix64

package enum DurabilitySeed {
    /// CREDITS_TEST_SEED (decimal or 0x-hex) when set, else a random seed; printed with `label`.
    package static func make(_ label: String) -> UInt64 {
        let seed = fromEnvironment ?? UInt64.random(in: .min ... .max)
        print("\(label): seed \(seed) (replay with CREDITS_TEST_SEED=\(seed))")
        return seed
    }

    /// CREDITS_TEST_SEED when it is set. A value that is not a decimal or 0x-hex UInt64
    /// stops the test process: a sweep must never run other seeds than it asked for.
    package static let fromEnvironment: UInt64? = {
        guard let raw = getenv("CREDITS_TEST_SEED") else { return nil }
        let text = String(cString: raw).filter { !$0.isWhitespace }
        guard let seed = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text) else {
            fatalError("CREDITS_TEST_SEED=\(text) is not a decimal or 0x-hex UInt64")
        }
        return seed
    }()

    /// The `index`-th seed derived from `base` (several rounds from one printed seed).
    package static func derived(_ base: UInt64, _ index: Int) -> UInt64 {
        var random = DurabilityRandom(seed: base &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03)
        return random.next()
    }
}

// MARK: - Commands

package let durabilityStart = Timestamp(millisSinceEpoch: 1_767_225_600_000)

package func durabilityCredits(_ whole: Int64) -> Millicredits { Millicredits(whole * Millicredits.perCredit) }

/// Random commands over a few individuals and one organisation, valid and invalid (unknown
/// accounts, over-spending, bad amounts, retries, key conflicts), like the property tests'
/// generator in CreditCoreTests but smaller. It learns hold ids and debit keys from outcomes.
package struct DurabilityWorkload {
    package var random: DurabilityRandom
    /// Principals and roles (see `next()`).
    private var governance: DurabilityRandom
    package let keyHigh: UInt64
    private var keyCounter: UInt64 = 0
    package let individuals: [TenantID]
    package let organisation: TenantID
    package let accounts: [AccountID]
    private(set) var holds: [HoldID] = []
    private var debits: [(key: IdempotencyKey, account: AccountID, amount: Millicredits)] = []
    /// The auto-refill threshold of each account that has one.
    private var thresholds: [AccountID: Millicredits] = [:]
    /// The refill the workload believes in flight, by account (see `learn`).
    private var inFlight: [AccountID: UInt64] = [:]
    /// The plan of each account's last successful subscription or plan change.
    private var plans: [AccountID: String] = [:]
    /// The time the driver has moved to (the sum of `pause()`s): refill results are dated
    /// from it.
    private var clock = durabilityStart
    package private(set) var issued: [Command] = []

    package init(seed: UInt64, tenantBase: UInt64 = 1, individuals count: Int = 4) {
        random = DurabilityRandom(seed: seed)
        governance = DurabilityRandom(seed: seed ^ 0x6F76_6572_6E61_6E63)
        keyHigh = random.next()
        individuals = (0 ..< UInt64(count)).map { TenantID(tenantBase + $0) }
        organisation = TenantID(tenantBase + 1_000)
        var ids = individuals.map { AccountID(tenant: $0, number: 0) }
        ids.append(AccountID(tenant: individuals[0], number: 1))
        for number in UInt32(0) ... 3 { ids.append(AccountID(tenant: organisation, number: number)) }
        accounts = ids
    }

    package mutating func freshKey() -> IdempotencyKey {
        keyCounter += 1
        return IdempotencyKey(high: keyHigh, low: keyCounter)
    }

    /// The opening commands: tenants, accounts, first grants.
    package mutating func prologue() -> [Command] {
        var actions: [Action] = []
        for tenant in individuals {
            actions.append(.openTenant(tenant, .individual))
            actions.append(.openAccount(AccountID(tenant: tenant, number: 0), .standard))
            actions.append(.grant(AccountID(tenant: tenant, number: 0),
                                  GrantTerms(kind: .purchase, amount: durabilityCredits(random.between(200, 600)))))
        }
        actions.append(.openAccount(AccountID(tenant: individuals[0], number: 1), .standard(overdraft: durabilityCredits(25))))
        actions.append(.openTenant(organisation, .organisation(departments: [
            DepartmentTerms(id: DepartmentID(1), costCentre: "CC-ENG", allocationPerPeriod: durabilityCredits(random.between(50, 300))),
            DepartmentTerms(id: DepartmentID(2), costCentre: "CC-OPS"),
        ])))
        for number in UInt32(1) ... 3 {
            actions.append(.openAccount(AccountID(tenant: organisation, number: number),
                                        .member(department: DepartmentID(number == 3 ? 2 : 1),
                                                limitPerPeriod: random.chance(40) ? nil : durabilityCredits(random.between(10, 90)))))
        }
        actions.append(.grant(AccountID(tenant: organisation, number: 0),
                              GrantTerms(kind: .enterpriseContract, amount: durabilityCredits(random.between(500, 2_000)))))
        return actions.map { record(Command(key: freshKey(), $0)) }
    }

    private mutating func record(_ command: Command) -> Command {
        issued.append(command)
        return command
    }

    private mutating func amount(maxCredits: Int64 = 40) -> Millicredits {
        switch random.below(100) {
        case 0 ..< 2: return .zero
        case 2 ..< 4: return Millicredits(-random.between(1, 5_000))
        case 4 ..< 14: return Millicredits(random.between(1, 999))
        default: return Millicredits(random.between(1, maxCredits * 1_000))
        }
    }

    private mutating func scope() -> ChargeScope {
        random.chance(75) ? .unscoped : random.pick([ChargeScope(provider: 7), ChargeScope(provider: 7, model: 3)])
    }

    private mutating func hold() -> HoldID {
        if !holds.isEmpty, random.chance(85) { return random.pick(holds) }
        return HoldID(tenant: random.pick(individuals + [organisation]), number: UInt64(random.between(1, 500)))
    }

    /// The next command: usually new, sometimes a retry (same key and command) or a key
    /// conflict; now and then a role granted or revoked, or a command asked by a client or an
    /// account holder rather than the system (allowed or forbidden by the roles at the time).
    /// Those choices come from their own generator, so the commands of the main stream stay
    /// what they were before principals existed.
    package mutating func next() -> Command {
        if governance.chance(2) {
            let principal = governance.chance(70) ? Principal.system : governancePrincipal()
            return record(Command(key: freshKey(), roleAction(), by: principal))
        }
        if !issued.isEmpty, random.chance(6) {
            let earlier = random.pick(issued)
            if random.chance(80) { return earlier }
            // Same key, another action, same tenant (keys are remembered per shard, and a
            // tenant's shard is fixed): a key conflict.
            return Command(key: earlier.key, .freeze(AccountID(tenant: earlier.tenant, number: 0)))
        }
        let action = nextAction()
        return record(Command(key: freshKey(), action, by: governance.chance(6) ? governancePrincipal() : .system))
    }

    /// The clients roles are granted to: 1 to 4.
    private static let clients = (UInt64(1) ... 4).map(ClientID.init)

    /// A role to grant or revoke (tags 40 and 41): the organisation's and the first
    /// individual's roles, and now and then a platform role; or rate limits (42) or an
    /// anomaly mode (44) of a tenant.
    private mutating func roleAction() -> Action {
        let client = governance.pick(Self.clients)
        let member = AccountID(tenant: organisation, number: UInt32(governance.between(1, 3)))
        let role: Role = governance.pick([
            .meteringService(organisation), .organisationAdmin(organisation), .billingService(individuals[0]),
            .departmentManager(organisation, DepartmentID(1)), .member(member), .auditor(organisation),
            .meteringService(individuals[0]), .platformAdmin,
        ])
        switch governance.below(10) {
        case 0:
            // Limits high enough to bite only in a burst (a refusal is neither logged nor remembered).
            let tenant = governance.pick([organisation, individuals[0]])
            return .setRateLimits(tenant, governance.chance(30) ? nil
                : RateLimits(accountRequestsPerSecond: UInt32(governance.between(50, 500)),
                             tenantCreditsPerMinute: durabilityCredits(governance.between(500, 5_000))))
        case 1:
            return .setAnomalyMode(governance.pick([organisation, individuals[1]]), governance.pick(AnomalyMode.allCases))
        default:
            return governance.chance(70) ? .grantRole(client, role) : .revokeRole(client, role)
        }
    }

    /// Who asks, when not the system: a client or an account holder.
    private mutating func governancePrincipal() -> Principal {
        governance.chance(60) ? .client(governance.pick(Self.clients)) : .account(governance.pick(accounts))
    }

    private mutating func nextAction() -> Action {
        let account = random.pick(accounts)
        switch random.below(106) {
        case 0 ..< 14:
            let expires: Timestamp = random.chance(70) ? .never : durabilityStart.adding(millis: random.between(3_600_000, 40 * 86_400_000))
            return .grant(account, GrantTerms(kind: random.pick(GrantKind.allCases), amount: amount(maxCredits: 200),
                                              expiresAt: expires, priority: random.pick([10, 100, 200]),
                                              scope: random.chance(85) ? .unscoped : ChargeScope(provider: 7)))
        case 14 ..< 36:
            return .debit(account, amount(), scope: scope())
        case 36 ..< 40:
            // A routed charge (log tag 22): the ledger picks the first candidate a key covers,
            // else the system choice (the last), recorded with its choice.
            let candidates = (0 ..< random.between(1, 3)).map { index in
                UsageCharge(model: random.pick(["GPT-4o", "Claude 3 Opus", "Gemini Ultra"]), provider: ["OpenAI", "Anthropic", "Google"][Int(index)],
                            units: UInt64(random.between(1, 4_000)), providerCostNanoUSD: random.between(0, 2_500_000_000),
                            listPrice: amount(), keySource: .system)
            }
            return .chargeRouted(account, RoutedCharge(candidates: candidates, systemChoice: UInt8(candidates.count - 1),
                                                       request: random.next()), scope: scope())
        case 40 ..< 44:
            // An AI call's charge (log tag 17): on system keys it spends, on an own key it
            // only records.
            let source = random.chance(70) ? KeySource.system : random.pick([KeySource.userKey, .organisationKey])
            return .charge(account, UsageCharge(model: random.pick(["GPT-4o", "Sora Pro", "Mistral 7B"]),
                                                provider: random.pick(["OpenAI", "Mistral AI"]),
                                                units: UInt64(random.between(1, 4_000)),
                                                providerCostNanoUSD: random.between(0, 2_500_000_000),
                                                listPrice: amount(), keySource: source), scope: scope())
        case 44 ..< 56:
            let timeout: Int64 = random.chance(5) ? 0 : random.between(1_000, 7_200_000)
            return .reserve(account, amount(), timeoutMillis: timeout, scope: scope())
        case 56 ..< 66:
            return .settle(hold(), actual: Millicredits(random.between(0, 30_000)))
        case 66 ..< 71:
            return .release(hold())
        case 71 ..< 73:
            return .timeOutHold(hold())
        case 73 ..< 78:
            if let debit = debits.isEmpty ? nil : random.pick(debits) {
                return .refund(debit.account, debit: debit.key, Millicredits(random.between(1, max(1, debit.amount.rawValue))))
            }
            return .refund(account, debit: freshKey(), amount())
        case 78 ..< 83:
            let reason = random.chance(10) ? String(repeating: "r", count: 300) : random.pick(["goodwill", "outage credit", "€ correction"])
            let value = amount(maxCredits: 20)
            return .adjust(account, random.chance(50) ? value : Millicredits(-value.rawValue), reason: reason)
        case 83 ..< 86:
            return .freeze(account)
        case 86 ..< 90:
            return .unfreeze(account)
        case 90 ..< 93:
            return .setMemberLimit(account, perPeriod: random.chance(20) ? nil : durabilityCredits(random.between(0, 90)))
        case 93 ..< 95:
            return .setDepartmentAllocation(organisation, DepartmentID(UInt16(random.between(1, 3))),
                                            perPeriod: random.chance(20) ? nil : durabilityCredits(random.between(0, 300)))
        case 95:
            return .startPeriod(random.chance(80) ? organisation : random.pick(individuals))
        case 96:
            // Keys and policies (log tags 18-20; snapshot state version 2).
            if random.chance(25) { return .setKeyPolicy(organisation, random.pick(KeyPolicy.allCases)) }
            let provider = random.pick(["OpenAI", "Mistral AI"])
            if random.chance(25) { return .removeKey(account, provider: provider) }
            return .registerKey(account, KeyRegistration(provider: provider, fingerprint: "…\(random.between(1_000, 9_999))",
                                                         sealed: (0 ..< 24).map { _ in UInt8(truncatingIfNeeded: random.next()) }))
        case 97 ..< 100:
            return .openAccount(account, random.chance(50) ? .standard : .member(department: DepartmentID(1), limitPerPeriod: nil))
        default:
            return scheduleAction(account)
        }
    }

    /// Subscriptions, expiry, grace and auto-refill (log tags 23-34; state versions 3 and 4): the
    /// host's commands and the scheduler's, with cycle and refill numbers that are often
    /// stale, so both the applied and the refused paths are logged and replayed.
    private mutating func scheduleAction(_ account: AccountID) -> Action {
        let grace: Int64 = random.pick([0, 3_600_000, 2 * 86_400_000])
        switch random.below(13) {
        case 0:
            if random.chance(15) {
                return .subscribe(account, SubscriptionTerms(plan: random.pick(["", String(repeating: "p", count: 300)]),
                                                             allocation: amount(), priceCents: -1, rolloverMonths: 0))
            }
            return .subscribe(account, SubscriptionTerms(plan: random.pick(["Basic", "Pro"]),
                                                         allocation: durabilityCredits(random.between(0, 100)),
                                                         priceCents: random.pick([0, 5_999]), rollover: random.chance(70),
                                                         rolloverMonths: UInt8(random.between(1, 3))))
        case 1:
            if random.chance(30) {
                // A plan change (tag 34) guessing the plan in force, paying within the price
                // difference or, now and then, beyond it.
                let terms = SubscriptionTerms(plan: random.pick(["Basic", "Pro", "Expert"]),
                                              allocation: durabilityCredits(random.between(0, 150)),
                                              priceCents: random.pick([0, 5_999, 24_999]))
                let paid = random.chance(50) ? 0 : random.between(1, 20_000)
                let replacing = random.chance(85) ? plans[account] ?? "Basic" : random.pick(["Basic", "Pro", "Expert"])
                return .changePlan(account, PlanChangeRequest(replacing: replacing, terms: terms,
                                                              paidCents: paid, reference: paid > 0 ? "pay-\(paid)" : ""))
            }
            if random.chance(30) {
                // A deferred change (tag 24).
                return .changePlan(account, PlanChangeRequest(deferring: SubscriptionTerms(
                    plan: random.pick(["Expert", ""]), allocation: durabilityCredits(random.between(0, 150)),
                    priceCents: 24_999, rollover: random.chance(50))))
            }
            return random.chance(60) ? .cancelSubscription(account) : .resumeSubscription(account)
        case 2, 3:
            return .renewSubscription(account, cycle: UInt32(random.between(0, 3)), graceMillis: grace)
        case 4:
            return .lapseSubscription(account, cycle: UInt32(random.between(0, 2)), reason: random.pick(LapseReason.allCases),
                                      graceMillis: grace)
        case 5, 6:
            return .expireGrants(account, graceMillis: grace)
        case 7:
            return .forfeitGrants(account)
        case 8:
            return .setAutoRefill(account, random.chance(15) ? nil : AutoRefillTerms(
                threshold: durabilityCredits(random.between(0, 20_000)), refillCredits: random.between(0, 500),
                refillsPerMonthMax: UInt16(random.chance(90) ? random.between(1, 4) : 0), cooldownMillis: random.between(0, 3_600_000),
                attemptsMax: UInt8(random.between(0, 3))))
        case 9, 10:
            let (account, refill) = refillGuess(account)
            let valid = random.chance(85)
            return .completeRefill(account, refill: refill, RefillPayment(
                amount: valid ? durabilityCredits(random.between(1, 300)) : amount(),
                expiresAt: clock.adding(millis: (valid ? random.between(1, 400) : random.between(-5, 1)) * 86_400_000),
                costBasisNanoUSDPerCredit: 10_000_000, reference: valid ? random.pick(["pay-1", "pay-é"]) : ""))
        default:
            let (account, refill) = refillGuess(account)
            return .failRefill(account, refill: refill, RefillFailure(
                declined: random.chance(50), reason: random.chance(90) ? random.pick(["declined", "timeout"]) : "",
                retryAt: random.chance(70) ? clock.adding(millis: random.between(0, 3) * 3_600_000) : nil))
        }
    }

    /// An account and refill number: usually a recent successful spend's account and entry
    /// sequence (the entry that may have started a refill), else anything.
    private mutating func refillGuess(_ account: AccountID) -> (AccountID, UInt64) {
        let guesses = inFlight.sorted { $0.key < $1.key }
        if !guesses.isEmpty, random.chance(85) {
            let (account, refill) = random.pick(guesses)
            // The guess may be wrong (the cap or the cooldown held the refill back), or a
            // failure may have ended it: forget it now and then so a new crossing is noticed.
            if random.chance(20) { inFlight[account] = nil }
            return (account, refill)
        }
        return (account, UInt64(random.between(0, 2_000)))
    }

    /// The account a command acts on, for the commands that take one.
    static func account(of action: Action) -> AccountID? {
        switch action {
        case .grant(let account, _), .debit(let account, _, _), .reserve(let account, _, _, _), .charge(let account, _, _),
             .chargeRouted(let account, _, _), .adjust(let account, _, _), .refund(let account, _, _),
             .setAutoRefill(let account, _), .expireGrants(let account, _), .subscribe(let account, _),
             .renewSubscription(let account, _, _), .lapseSubscription(let account, _, _, _), .failRefill(let account, _, _):
            account
        default:
            nil
        }
    }

    /// Successful commands by log tag (the byte after the key and principal), so a test can check
    /// the workload still reaches what it means to.
    package private(set) var succeededByTag: [UInt8: Int] = [:]

    /// Learns hold ids and refundable debits from an outcome.
    package mutating func learn(_ command: Command, _ outcome: Outcome) {
        let receipt: Receipt
        switch outcome {
        case .success(let success):
            receipt = success
        case .failure(.staleSchedule(let expected, _)):
            // A refill result for the wrong refill is refused with the number of the one in
            // flight (0 for none): the next guess for that account is exact.
            switch command.action {
            case .completeRefill(let account, _, _), .failRefill(let account, _, _):
                inFlight[account] = expected == 0 ? nil : expected
            default:
                break
            }
            return
        case .failure:
            return
        }
        var writer = ByteWriter(capacity: 64)
        command.encode(into: &writer)
        succeededByTag[writer.bytes[command.encodedTagOffset], default: 0] += 1
        switch command.action {
        case .setAutoRefill(let account, let terms):
            thresholds[account] = terms?.threshold
        case .completeRefill(let account, _, _):
            inFlight[account] = nil
        case .subscribe(let account, let terms):
            plans[account] = terms.plan.text
        case .changePlan(let account, let request):
            plans[account] = request.terms.plan.text
        default:
            break
        }
        // A successful command that leaves an account with auto-refill below its threshold
        // may have started a refill numbered by its sequence (when none was in flight and
        // the cap and cooldown allowed): the workload's guess of what is in flight.
        if let account = Self.account(of: command.action), let threshold = thresholds[account],
           receipt.availableAfter < threshold, inFlight[account] == nil {
            inFlight[account] = receipt.sequence
        }
        switch command.action {
        case .reserve:
            if let hold = receipt.hold, !holds.contains(hold) { holds.append(hold) }
        case .debit(let account, let amount, _):
            debits.append((command.key, account, amount))
        case .settle(let hold, _), .release(let hold), .timeOutHold(let hold):
            holds.removeAll { $0 == hold }
        default:
            break
        }
    }

    /// Milliseconds to move the clock before the next command (mostly small, sometimes days,
    /// so holds time out and grants expire).
    package mutating func pause() -> Int64 {
        let pause = nextPause()
        clock = clock.adding(millis: pause)
        return pause
    }

    private mutating func nextPause() -> Int64 {
        switch random.below(100) {
        case 0 ..< 40: return 0
        case 40 ..< 80: return random.between(1, 1_000)
        case 80 ..< 96: return random.between(1_000, 600_000)
        case 96 ..< 99: return random.between(600_000, 2 * 86_400_000)
        // Now and then a month passes, so subscriptions renew and lapse, and grace ends.
        default: return random.between(20, 35) * 86_400_000
        }
    }
}

