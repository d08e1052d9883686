import CreditEngine
import CreditPricing
import Synchronization

/// The business services a host calls, over one engine: charging AI usage through the
/// catalog and the caller's keys, routing, provider keys, purchases and subscriptions.
/// Every change goes through the engine's command path (idempotent, logged); the catalog,
/// plans and packages are CreditPricing's data (docs/pricing.md).
public final class Billing: Sendable {
    public let engine: CreditEngine
    /// The running catalog and the routing plans computed from it, replaced together.
    private let pricing: Mutex<PricingState>
    private let sealer: KeySealer
    private let payments: any PaymentGateway
    private let clock: any LedgerClock

    public init(engine: CreditEngine, catalog: Catalog = .standard, sealer: KeySealer, payments: any PaymentGateway,
                clock: any LedgerClock = SystemClock()) {
        self.engine = engine
        pricing = Mutex(PricingState(catalog: catalog))
        self.sealer = sealer
        self.payments = payments
        self.clock = clock
    }

    // MARK: Catalog

    /// The catalog charges are priced with now.
    public var catalog: Catalog { pricing.withLock { $0.catalog } }

    /// Replaces the running catalog with one parsed from `text`; on an error (which names
    /// the line and field) the running catalog stays as it was. Charges recorded earlier
    /// keep their prices (the ledger stores what each charge cost).
    public func replaceCatalog(text: String) throws(CatalogError) {
        let parsed = try Catalog.parse(text: text)
        pricing.withLock { $0 = PricingState(catalog: parsed, keeping: $0.keptPlans) }
    }

    // MARK: Provider keys

    /// Seals `secret` and registers it as `account`'s key for `provider` (an organisation's
    /// key goes on its pool, account 0). Returns the fingerprint shown for it.
    @discardableResult
    public func registerKey(_ secret: String, provider: String, for account: AccountID,
                            key: IdempotencyKey) async throws(BillingError) -> String {
        guard secret.count >= 8 else { throw .keyTooShort }
        let fingerprint = KeyFingerprint.of(secret)
        let sealed = try sealer.seal(secret, owner: account, provider: provider)
        try await succeed(Command(key: key, .registerKey(account, KeyRegistration(provider: provider, fingerprint: fingerprint,
                                                                                   sealed: sealed))))
        return fingerprint
    }

    public func removeKey(provider: String, for account: AccountID, key: IdempotencyKey) async throws(BillingError) {
        try await succeed(Command(key: key, .removeKey(account, provider: provider)))
    }

    public func setKeyPolicy(_ policy: KeyPolicy, for organisation: TenantID, key: IdempotencyKey) async throws(BillingError) {
        try await succeed(Command(key: key, .setKeyPolicy(organisation, policy)))
    }

    /// The key the host uses for `account`'s next call on `provider`, unsealed, and whose
    /// it is; `source == .system` and no secret when the service's own key applies.
    public func providerKey(for account: AccountID, provider: String) async throws(BillingError) -> (source: KeySource, secret: String?) {
        guard let (source, registration) = await engine.keyForCall(by: account, provider: provider) else {
            throw .unknownAccount(account)
        }
        guard let registration else { return (source, nil) }
        let owner = source == .organisationKey ? AccountID(tenant: account.tenant, number: 0) : account
        return (source, try sealer.unseal(registration.sealed, owner: owner, provider: provider))
    }

    // MARK: Charging and routing

    /// Charges `usage` of `model` to `account`: priced by the catalog (rounded up once to
    /// the millicredit), paid by the key the account's policy picks for the provider (0
    /// credits) or in credits, and recorded with the model, provider, units and costs. The
    /// ledger picks the key when it applies the charge (one routed charge with one
    /// candidate), so the charge and the key policy it was recorded under cannot disagree.
    public func charge(_ account: AccountID, model: String, usage: Usage, key: IdempotencyKey,
                       scope: ChargeScope = .unscoped) async throws(BillingError) -> ChargeReceipt {
        guard let entry = pricing.withLock({ $0.catalog.entry(named: model) }) else {
            throw .pricing(.unknownModel(model))
        }
        var candidate = UsageCharge(try price(entry, usage), keySource: .system)
        var hasher = StableHasher()
        hasher.combine(UInt8(1))
        hasher.combine(entry.contentHash)
        usage.feed(into: &hasher)
        let routed = RoutedCharge(only: candidate, request: hasher.finish())
        let receipt = try await succeed(Command(key: key, .chargeRouted(account, routed, scope: scope)))
        candidate.keySource = Self.choice(receipt).keySource
        return ChargeReceipt(receipt: receipt, usage: candidate, routing: nil)
    }

    /// Before a call whose cost is known only afterwards (a streaming LLM call): decides
    /// whose key pays for `model` and, when credits pay, reserves the price of `estimate`
    /// (a hold; it times out after `timeoutMillis`). With an own key nothing is reserved, so
    /// a user with a key and no credits can still make the call. Finish with `finishCall`.
    public func beginCall(_ account: AccountID, model: String, estimate: Usage, key: IdempotencyKey,
                          timeoutMillis: Int64 = 10 * 60_000, scope: ChargeScope = .unscoped) async throws(BillingError) -> CallTicket {
        let priced = try price(model, estimate)
        guard let (source, _) = await engine.keyForCall(by: account, provider: priced.provider) else {
            throw .unknownAccount(account)
        }
        guard source == .system else {
            return CallTicket(account: account, model: model, keySource: source, hold: nil, scope: scope)
        }
        let receipt = try await succeed(Command(key: key, .reserve(account, priced.charge, timeoutMillis: timeoutMillis, scope: scope)))
        return CallTicket(account: account, model: model, keySource: .system, hold: receipt.hold, scope: scope)
    }

    /// After the call: charges its actual `usage` — settling the hold (the actual price may
    /// be above or below the reserve; above it the excess is charged, and what the balance
    /// cannot cover becomes debt: the call happened), or, with an own key, recording a
    /// 0-credit charge.
    public func finishCall(_ ticket: CallTicket, usage: Usage, key: IdempotencyKey) async throws(BillingError) -> ChargeReceipt {
        let charge = UsageCharge(try price(ticket.model, usage), keySource: ticket.keySource)
        let action: Action = ticket.hold.map { .settleCharge($0, charge) } ?? .charge(ticket.account, charge, scope: ticket.scope)
        let receipt = try await succeed(Command(key: key, action))
        return ChargeReceipt(receipt: receipt, usage: charge, routing: nil)
    }

    /// Chooses the model for a request (docs/pricing.md, routing) and charges `usage` of it,
    /// in one ledger command: the command carries the candidates routing would choose from,
    /// each priced, and the ledger takes the first one a key of the caller covers, else the
    /// system-keys choice. The receipt's usage names the model charged.
    ///
    /// For a tenant that holds no key (`CreditEngine.mayHaveKeys`, most tenants) only the
    /// system-keys choice is sent: no key could cover another candidate. A key registered
    /// while such a charge is on its way may not be used by it — as when a host routes,
    /// then charges.
    public func charge(_ account: AccountID, routing request: RoutingRequest, usage: Usage, key: IdempotencyKey,
                       scope: ChargeScope = .unscoped) async throws(BillingError) -> ChargeReceipt {
        engine.prefetchKeyPresence(account.tenant)
        let lookup = try plan(for: request, withCandidates: false)
        let summary = lookup.summary
        var hasher = summary.requestHasher
        usage.feed(into: &hasher)
        let requestHash = hasher.finish()
        let routed: RoutedCharge
        let sentAlone: Bool
        if engine.mayHaveKeys(account.tenant) || summary.candidateCount > LedgerLimits.routedCandidatesMax {
            // The plan the summary belongs to (not a second lookup, which a catalog
            // replacement in between could answer with another plan).
            let full = lookup.resolved
            guard full.candidates.count <= LedgerLimits.routedCandidatesMax else {
                return try await chargeChosenFirst(account, plan: full, usage: usage, key: key, scope: scope)
            }
            var candidates: [UsageCharge] = []
            candidates.reserveCapacity(full.candidates.count)
            for index in full.candidates.indices {
                candidates.append(UsageCharge(try price(full.candidates[index], usage), keySource: .system))
            }
            routed = RoutedCharge(candidates: candidates, systemChoice: full.systemIndex.map { UInt8($0) }, request: requestHash)
            sentAlone = false
        } else {
            // No key can cover another candidate: the system choice alone, numbered as in
            // the whole list (no array to allocate).
            guard let system = summary.systemEntry, let systemIndex = summary.systemIndex else {
                throw .noRoute(summary.overBudget)
            }
            routed = RoutedCharge(only: UsageCharge(try price(system, usage), keySource: .system), request: requestHash,
                                  numberedFrom: UInt8(systemIndex))
            sentAlone = true
        }
        let receipt: Receipt
        switch await engine.execute(Command(key: key, .chargeRouted(account, routed, scope: scope))) {
        case .success(let success): receipt = success
        case .failure(.notAllowed(_, .noRouteWithinBudget)): throw .noRoute(summary.overBudget)
        case .failure(let error): throw .ledger(error)
        }
        // The receipt numbers candidates as the plan does (a retry may have been sent with
        // the other form, or answered from the first attempt: the request hash covers the
        // plan's content, so the numbers mean the same models).
        let choice = Self.choice(receipt)
        if sentAlone, choice.candidate == summary.systemIndex, let system = summary.systemEntry {
            var usage = routed[candidate: 0]
            usage.keySource = choice.keySource
            return ChargeReceipt(receipt: receipt, usage: usage, routing: RoutingContext(quality: request.quality, entry: system))
        }
        // A candidate of the whole list (or, sent alone, another one: a retry answered with
        // the first attempt's receipt). Its numbers are this summary's plan's, even if the
        // catalog was replaced meanwhile (that plan is kept: see `PricingState.keptPlans`).
        let entry = lookup.resolved.candidates[choice.candidate]
        return ChargeReceipt(receipt: receipt, usage: UsageCharge(try price(entry, usage), keySource: choice.keySource),
                             routing: RoutingContext(quality: request.quality, entry: entry))
    }

    /// A routed charge with more candidates than one command carries (a catalog with very
    /// many providers of a kind): the keys are read first, then the chosen model is charged
    /// with its key source (the ledger refuses it if that key stopped being usable between).
    private func chargeChosenFirst(_ account: AccountID, plan: CachedPlan, usage: Usage, key: IdempotencyKey,
                                   scope: ChargeScope) async throws(BillingError) -> ChargeReceipt {
        let keys = await engine.usableKeys(for: account)
        let route: Route
        do { route = try plan.route.route { keys[$0] != nil } } catch { throw .noRoute(error) }
        let charge = UsageCharge(try price(route.entry, usage), keySource: keys[route.entry.provider] ?? .system)
        let receipt = try await succeed(Command(key: key, .charge(account, charge, scope: scope)))
        return ChargeReceipt(receipt: receipt, usage: charge, routing: RoutingContext(quality: plan.route.quality, entry: route.entry))
    }

    /// The model for `request` and why: among the models of the kind and quality, one a key
    /// of the caller covers (0 credits, best quality first), else the cheapest in credits.
    public func route(_ account: AccountID, _ request: RoutingRequest) async throws(BillingError) -> RouteDecision {
        guard let plan = try plan(for: request, withCandidates: true).plan else { preconditionFailure("asked for the plan") }
        let keys = engine.mayHaveKeys(account.tenant) ? await engine.usableKeys(for: account) : [:]
        let route: Route
        do { route = try plan.route.route { keys[$0] != nil } } catch { throw .noRoute(error) }
        let source = keys[route.entry.provider] ?? .system
        return RouteDecision(model: route.entry.model, provider: route.entry.provider, kind: route.entry.kind,
                             quality: route.entry.quality, creditsPerUnit: source == .system ? route.creditsPerUnit : .zero,
                             keySource: source,
                             reason: RoutingContext(quality: request.quality, entry: route.entry)
                                 .reason(model: route.entry.model, provider: route.entry.provider, keySource: source))
    }

    /// The routing plan for `request` under the running catalog, computed once per catalog:
    /// its summary (values), and the plan itself when `withCandidates` (a reference every
    /// caller shares: a charge that needs only the summary does not touch its count).
    private func plan(for request: RoutingRequest, withCandidates: Bool) throws(BillingError) -> PlanLookup {
        let unconstrained = request.constraints.allowedProviders == nil && request.constraints.creditsPerUnitMax == nil
        let slot = PricingState.slot(request.kind, request.quality)
        let result: Result<PlanLookup, RoutingError> = pricing.withLock { state in
            // Most requests have no constraints: their plans sit in a small array, found
            // without hashing the request. A charge for a tenant without keys takes the
            // summary alone (values) and an uncounted reference to the kept plan.
            if unconstrained && !withCandidates, let (summary, kept) = state.unconstrainedSummaries[slot] {
                return .success(PlanLookup(summary: summary, plan: nil, kept: kept))
            }
            let found = unconstrained ? state.unconstrainedPlans[slot] : state.plans[request]
            let cached: Result<CachedPlan, RoutingError>
            if let found {
                cached = found
            } else {
                do throws(RoutingError) {
                    cached = .success(CachedPlan(try state.catalog.routePlan(kind: request.kind, quality: request.quality,
                                                                             constraints: request.constraints)))
                } catch {
                    cached = .failure(error)
                }
                if unconstrained {
                    state.unconstrainedPlans[slot] = cached
                    if case .success(let plan) = cached {
                        state.keptPlans.append(plan)
                        state.unconstrainedSummaries[slot] = (plan.summary, Unmanaged.passUnretained(plan))
                    }
                } else {
                    if state.plans.count >= PricingState.plansMax { state.plans.removeAll() }
                    state.plans[request] = cached
                }
            }
            switch cached {
            // With constraints the plan may leave the cache: the caller holds it counted.
            case .success(let plan):
                return .success(PlanLookup(summary: plan.summary, plan: withCandidates || !unconstrained ? plan : nil,
                                           kept: unconstrained ? Unmanaged.passUnretained(plan) : nil))
            case .failure(let error): return .failure(error)
            }
        }
        switch result {
        case .success(let found): return found
        case .failure(let error): throw .noRoute(error)
        }
    }

    /// The candidate a routed charge's receipt names.
    private static func choice(_ receipt: Receipt) -> RoutedChoice {
        guard let choice = receipt.routedChoice else { preconditionFailure("a routed charge's receipt names no candidate: \(receipt)") }
        return choice
    }

    // MARK: Purchases

    /// The cheapest way to buy at least `credits` credits.
    public func quote(credits: Int64) throws(BillingError) -> Quote {
        do { return try CreditPricing.quote(credits: credits) } catch { throw .quote(error) }
    }

    /// Buys at least `credits` credits for `account` at the quoted price: the payment first,
    /// then — only if it succeeded — a purchase grant of the quoted credits expiring 12
    /// months later. Idempotent by `purchase`: the gateway charges an id once, and the grant
    /// is keyed by it, so a retried purchase (after a crash, a time-out or on purpose, within
    /// the engine's idempotency window) grants once and returns the first grant's receipt.
    /// A failed payment grants nothing.
    public func purchase(_ credits: Int64, for account: AccountID, purchase: PurchaseID) async throws(BillingError) -> PurchaseReceipt {
        let quote = try quote(credits: credits)
        let payment: PaymentReceipt
        do {
            payment = try await payments.charge(quote.priceCents, for: purchase)
        } catch {
            throw .payment(error)
        }
        // The grant's key derives from the purchase id alone. A retry computes its expiry
        // from a later clock reading, so its command differs from the first: it is answered
        // from what the engine remembers of the first grant instead.
        let grantKey = IdempotencyKey(deriving: "purchase/\(account.tenant.rawValue)/\(purchase.rawValue)")
        if let first = await engine.rememberedOutcome(of: grantKey, tenant: account.tenant) {
            return try Self.purchaseReceipt(first, quote: quote, payment: payment)
        }
        let amount: Millicredits
        do { amount = try Millicredits.credits(quote.credits) } catch { throw .quote(.tooLarge(credits: quote.credits, max: Quote.creditsMax)) }
        let expires = CalendarMonths.adding(12, to: clock.now())
        let command = Command(key: grantKey, .grant(account, GrantTerms(kind: .purchase, amount: amount, expiresAt: expires)))
        var outcome = await engine.execute(command)
        if case .failure(.idempotencyConflict) = outcome, let first = await engine.rememberedOutcome(of: grantKey, tenant: account.tenant) {
            // A concurrent retry granted first.
            outcome = first
        }
        return try Self.purchaseReceipt(outcome, quote: quote, payment: payment)
    }

    private static func purchaseReceipt(_ outcome: Outcome, quote: Quote, payment: PaymentReceipt) throws(BillingError) -> PurchaseReceipt {
        switch outcome {
        case .success(let receipt): return PurchaseReceipt(quote: quote, payment: payment, receipt: receipt)
        case .failure(let error): throw .ledger(error)
        }
    }

    // MARK: Subscriptions

    /// Subscribes `account` to `plan` (at its own-keys price with `ownKeys`): the first
    /// cycle's payment first, then — only if it succeeded — the subscription, which grants
    /// the first allocation now and renews every calendar month from today (the scheduler
    /// charges each renewal). On a lapsed subscription this is a reactivation: credits
    /// still in grace are reinstated (docs/semantics.md, "Time"). Idempotent by `purchase`
    /// within the engine's idempotency window.
    @discardableResult
    public func subscribe(_ account: AccountID, to plan: Plan, ownKeys: Bool = false, rollover: Bool = true,
                          purchase: PurchaseID) async throws(BillingError) -> Receipt {
        let price = ownKeys ? plan.ownKeyMonthlyPriceCents : plan.monthlyPriceCents
        if price > 0 {
            do { _ = try await payments.charge(price, for: purchase) } catch { throw .payment(error) }
        }
        let key = IdempotencyKey(deriving: "subscribe/\(account.tenant.rawValue)/\(purchase.rawValue)")
        if let first = await engine.rememberedOutcome(of: key, tenant: account.tenant) {
            switch first {
            case .success(let receipt): return receipt
            case .failure(let error): throw .ledger(error)
            }
        }
        return try await succeed(Command(key: key, .subscribe(account, SubscriptionTerms(
            plan: plan.name, allocation: plan.monthlyCredits, priceCents: price, rollover: rollover))))
    }

    /// Cancels `account`'s subscription at the end of its cycle (its credits stay spendable
    /// until then). Idempotent by `key`.
    public func cancelSubscription(of account: AccountID, key: IdempotencyKey) async throws(BillingError) {
        try await succeed(Command(key: key, .cancelSubscription(account)))
    }

    /// What moving `account`'s subscription to `plan` would do now, by the rule in
    /// docs/semantics.md ("Changing plans"): upgrade, deferred or unchanged, the cents an
    /// upgrade charges for the rest of the cycle, and the credits it grants for them.
    public func planChangeQuote(of account: AccountID, to plan: Plan, ownKeys: Bool = false) async throws(BillingError)
        -> PlanChangeQuote {
        guard let current = await engine.subscription(of: account), current.status != .lapsed else {
            throw .ledger(.notSubscribed(account))
        }
        return PlanChangeQuote(current, terms(of: plan, ownKeys: ownKeys, keeping: current), at: clock.now())
    }

    /// Moves `account`'s subscription to `plan` (at its own-keys price with `ownKeys`) in one
    /// ledger command that names the plan it replaces, so a change decided on a stale read is
    /// refused (`LedgerError.planChanged`) and two concurrent changes cannot both apply.
    ///
    /// An upgrade is paid before anything is granted: the prorated price difference is
    /// charged through the gateway under a purchase id derived from `key` (so a retry never
    /// pays twice), then the command grants the credits that payment bought, until the end
    /// of the cycle. A declined payment changes nothing. If the ledger refuses the change
    /// after the payment, the payment is refunded before the error is thrown (a refund the
    /// gateway could not make is `.payment(.unavailable)`: retry with the same key). A
    /// deferred change (a downgrade) charges and grants nothing; the new terms renew from the next cycle on.
    /// Idempotent by `key` within the engine's idempotency window: a retry returns what the
    /// first call did.
    public func changeSubscription(of account: AccountID, to plan: Plan, ownKeys: Bool = false,
                                   key: IdempotencyKey) async throws(BillingError) -> PlanChange {
        if let first = await engine.rememberedOutcome(of: key, tenant: account.tenant) { return try Self.planChange(first, key) }
        guard let current = await engine.subscription(of: account), current.status != .lapsed else {
            throw .ledger(.notSubscribed(account))
        }
        let quote = PlanChangeQuote(current, terms(of: plan, ownKeys: ownKeys, keeping: current), at: clock.now())
        var payment: PaymentReceipt?
        if quote.chargeCents > 0 {
            payment = try await pay(quote.chargeCents, for: Self.planChangePurchase(account, key: key))
        }
        var request = PlanChangeRequest(replacing: current.plan, terms: quote.terms)
        if let payment {
            request.paidCents = payment.amountCents
            request.reference = payment.reference
        }
        var outcome = await engine.execute(Command(key: key, .changePlan(account, request)))
        if case .failure(.idempotencyConflict) = outcome, let first = await engine.rememberedOutcome(of: key, tenant: account.tenant) {
            // A concurrent call with the same key applied first.
            outcome = first
        }
        // Refused after the payment (a concurrent change won, or the renewal came between):
        // nothing was bought, so the money goes back.
        if case .failure = outcome, let payment {
            do { try await payments.refund(payment) } catch { throw .payment(error) }
        }
        return try Self.planChange(outcome, key)
    }

    /// The payment gateway's purchase id of the plan change with idempotency key `key`: the
    /// same for every retry, so the gateway charges it once.
    public static func planChangePurchase(_ account: AccountID, key: IdempotencyKey) -> PurchaseID {
        PurchaseID("plan-change/\(account.tenant.rawValue)/\(key.high)-\(key.low)")
    }

    /// Pays `cents` under `purchase`; when an earlier attempt under the same id paid another
    /// amount (a retry priced later in the cycle), that first payment is the one that counts.
    private func pay(_ cents: Int64, for purchase: PurchaseID) async throws(BillingError) -> PaymentReceipt {
        do {
            return try await payments.charge(cents, for: purchase)
        } catch .amountConflict(_, let first, _) {
            do { return try await payments.charge(first, for: purchase) } catch { throw .payment(error) }
        } catch {
            throw .payment(error)
        }
    }

    /// `plan`'s terms at the chosen price, keeping the subscription's rollover settings.
    private func terms(of plan: Plan, ownKeys: Bool, keeping current: SubscriptionView) -> SubscriptionTerms {
        SubscriptionTerms(plan: plan.name, allocation: plan.monthlyCredits,
                          priceCents: ownKeys ? plan.ownKeyMonthlyPriceCents : plan.monthlyPriceCents,
                          rollover: current.rollover, rolloverMonths: current.rolloverMonths)
    }

    /// What a plan change's outcome says; the outcome of another command under `key` is a
    /// conflict.
    private static func planChange(_ outcome: Outcome, _ key: IdempotencyKey) throws(BillingError) -> PlanChange {
        switch outcome {
        case .success(let receipt):
            switch receipt.planChange {
            case .upgrade: return .upgrade(grantNow: receipt.amount)
            case .unchanged: return .unchanged
            case .deferred: return .deferred
            case nil: throw .ledger(.idempotencyConflict(key))
            }
        case .failure(let error):
            throw .ledger(error)
        }
    }

    // MARK: Service status

    /// For each provider of the catalog: whose key `account`'s calls use, and what a typical
    /// operation (one unit of its cheapest and dearest model) costs — the seed's "API key
    /// status indicators" as data.
    public func serviceStatus(of account: AccountID) async -> [ProviderStatus] {
        let keys = await engine.usableKeys(for: account)
        var byProvider: [String: [CatalogEntry]] = [:]
        for entry in catalog.entries { byProvider[entry.provider, default: []].append(entry) }
        return byProvider.keys.sorted().map { provider in
            let entries = byProvider[provider]!
            let source = keys[provider] ?? .system
            let prices = entries.map(\.creditsPerUnit)
            return ProviderStatus(provider: provider, keySource: source, kinds: Set(entries.map(\.kind)),
                                  creditsPerUnitRange: source == .system ? prices.min()! ... prices.max()! : Millicredits.zero ... .zero)
        }
    }

    // MARK: Helpers

    /// `usage` of `model` priced by the running catalog.
    private func price(_ model: String, _ usage: Usage) throws(BillingError) -> PricedUsage {
        do { return try catalog.price(model: model, usage: usage) } catch { throw .pricing(error) }
    }

    private func price(_ entry: CatalogEntry, _ usage: Usage) throws(BillingError) -> PricedUsage {
        do { return try entry.price(usage) } catch { throw .pricing(error) }
    }

    @discardableResult
    private func succeed(_ command: Command) async throws(BillingError) -> Receipt {
        switch await engine.execute(command) {
        case .success(let receipt): return receipt
        case .failure(let error): throw .ledger(error)
        }
    }
}

extension Usage {
    /// Adds the usage to a routed charge's request hash.
    func feed(into hasher: inout StableHasher) {
        switch self {
        case .tokens(let input, let output): hasher.combine(UInt8(1)); hasher.combine(input); hasher.combine(output)
        case .images(let count): hasher.combine(UInt8(2)); hasher.combine(count)
        case .videoSeconds(let seconds): hasher.combine(UInt8(3)); hasher.combine(seconds)
        }
    }
}

extension UsageCharge {
    /// What the ledger records of a priced call paid by `keySource`.
    init(_ priced: PricedUsage, keySource: KeySource) {
        self.init(model: priced.modelName, provider: priced.providerName, units: UInt64(priced.units),
                  providerCostNanoUSD: priced.providerCostNanoUSD, listPrice: priced.charge, keySource: keySource)
    }
}

/// What a caller asks routing for.
public struct RoutingRequest: Sendable, Hashable {
    public var kind: ModelKind
    public var quality: QualityPreference
    public var constraints: RoutingConstraints

    public init(kind: ModelKind, quality: QualityPreference, constraints: RoutingConstraints = RoutingConstraints()) {
        self.kind = kind
        self.quality = quality
        self.constraints = constraints
    }
}

/// Routing's answer: the model, what a unit costs this caller, whose key pays, and why.
public struct RouteDecision: Sendable, Hashable {
    public let model: String
    public let provider: String
    public let kind: ModelKind
    public let quality: QualityTier
    public let creditsPerUnit: Millicredits
    public let keySource: KeySource
    public let reason: String
}

/// A call begun with `beginCall`: whose key pays and, on credits, the hold.
public struct CallTicket: Sendable, Hashable {
    public let account: AccountID
    public let model: String
    public let keySource: KeySource
    public let hold: HoldID?
    public let scope: ChargeScope
}

public struct ChargeReceipt: Sendable, Equatable {
    public let receipt: Receipt
    /// What was recorded: model, provider, units, costs, key source.
    public let usage: UsageCharge
    /// For a routed charge: the plan it was chosen from (nil when the caller named the model).
    let routing: RoutingContext?

    /// Why routing chose the model (nil when the caller named it). Put in words on demand.
    public var reason: String? { routing?.reason(model: usage.model, provider: usage.provider, keySource: usage.keySource) }
}

/// A routing choice: the quality asked for and what the chosen model's unit costs (plain
/// values; the model and provider are the usage's, and the words are made only when asked).
struct RoutingContext: Sendable, Equatable {
    let quality: QualityPreference
    let kind: ModelKind
    let creditsPerUnit: Millicredits

    init(quality: QualityPreference, entry: CatalogEntry) {
        self.quality = quality
        kind = entry.kind
        creditsPerUnit = entry.creditsPerUnit
    }

    func reason(model: String, provider: String, keySource: KeySource) -> String {
        switch keySource {
        case .userKey:
            RoutePlan.reason(model: model, provider: provider, kind: kind, creditsPerUnit: creditsPerUnit, coverage: .coveredByKey,
                             quality: quality)
        case .organisationKey: "your organisation's \(provider) key covers \(model): 0 credits"
        case .system:
            RoutePlan.reason(model: model, provider: provider, kind: kind, creditsPerUnit: creditsPerUnit, coverage: .system,
                             quality: quality)
        }
    }
}

/// What a routed charge for a tenant without keys needs of its plan, as values (copied out
/// of the cache without touching the shared plan's reference count).
struct PlanSummary: Sendable {
    /// The model charged on system keys; nil when over budget.
    let systemEntry: CatalogEntry?
    /// The request's part of the routed charge's request hash (`RoutedCharge.request`); the
    /// usage is added per charge.
    let requestHasher: StableHasher
    let kind: ModelKind
    let quality: QualityPreference
    let cheapest: Millicredits
    let creditsPerUnitMax: Millicredits?
    /// The system choice's number among the plan's candidates, and how many there are.
    let systemIndex: Int?
    let candidateCount: Int

    /// The error when no key covers a candidate and `systemEntry` is nil.
    var overBudget: RoutingError {
        RoutePlan.overBudget(kind: kind, quality: quality, cheapest: cheapest, creditsPerUnitMax: creditsPerUnitMax)
    }
}

/// The running catalog and the routing plans computed from it so far.
struct PricingState: Sendable {
    let catalog: Catalog
    /// Plans of requests with constraints.
    var plans: [RoutingRequest: Result<CachedPlan, RoutingError>] = [:]
    /// Plans of requests without constraints, at `slot(kind, quality)`.
    var unconstrainedPlans: [Result<CachedPlan, RoutingError>?] = Array(repeating: nil, count: slotCount)
    /// Their summaries, for the charges that need nothing else, with an uncounted reference
    /// to the plan (safe: `keptPlans` holds it).
    var unconstrainedSummaries: [(PlanSummary, Unmanaged<CachedPlan>)?] = Array(repeating: nil, count: slotCount)
    /// Every unconstrained plan made, of this catalog and the ones it replaced: at most one
    /// per kind and quality per catalog, kept for the service's life so that a charge that
    /// started before a replacement can still read its plan without counting references.
    var keptPlans: [CachedPlan]

    private static let qualities: [QualityPreference] = [.standard, .premium, .any]
    static let slotCount = ModelKind.allCases.count * qualities.count

    static func slot(_ kind: ModelKind, _ quality: QualityPreference) -> Int {
        ModelKind.allCases.firstIndex(of: kind)! * qualities.count + qualities.firstIndex(of: quality)!
    }

    /// Plans kept per catalog (requests with constraints vary without bound); on reaching
    /// it, the cache starts over.
    static let plansMax = 1_024

    init(catalog: Catalog, keeping keptPlans: [CachedPlan] = []) {
        self.catalog = catalog
        self.keptPlans = keptPlans
    }
}

/// A plan as a charge takes it from the cache: its summary (values), the plan counted when
/// asked for, and otherwise an uncounted reference to a kept plan (`PricingState.keptPlans`).
struct PlanLookup: @unchecked Sendable {
    let summary: PlanSummary
    let plan: CachedPlan?
    let kept: Unmanaged<CachedPlan>?

    /// The plan, counted.
    var resolved: CachedPlan { plan ?? kept!.takeUnretainedValue() }
}

/// A routing plan with the candidates a routed charge carries: the key candidates, then the
/// system-keys choice unless it is one of them. A class: every charge takes it from the
/// cache, and one reference is cheaper to hand out than the arrays it holds.
final class CachedPlan: Sendable {
    let route: RoutePlan
    let candidates: [CatalogEntry]
    let systemIndex: Int?
    let summary: PlanSummary

    init(_ route: RoutePlan) {
        self.route = route
        var candidates = route.keyCandidates
        var systemIndex: Int?
        if let system = route.systemChoice {
            systemIndex = candidates.firstIndex { $0.model == system.model }
            if systemIndex == nil {
                systemIndex = candidates.count
                candidates.append(system)
            }
        }
        self.candidates = candidates
        self.systemIndex = systemIndex
        // The request hash covers the candidates as priced by this catalog: the same hash
        // means the same numbered models at the same prices.
        var hasher = StableHasher()
        hasher.combine(UInt8(2))
        hasher.combine(route.kind.rawValue)
        hasher.combine(String(describing: route.quality))
        hasher.combine(UInt64(candidates.count))
        for entry in candidates { hasher.combine(entry.contentHash) }
        hasher.combine(systemIndex != nil)
        hasher.combine(UInt64(systemIndex ?? 0))
        summary = PlanSummary(systemEntry: route.systemChoice, requestHasher: hasher, kind: route.kind, quality: route.quality,
                              cheapest: route.cheapest, creditsPerUnitMax: route.creditsPerUnitMax, systemIndex: systemIndex,
                              candidateCount: candidates.count)
    }
}

/// What a change of plan would do at a moment (`Billing.planChangeQuote`).
public struct PlanChangeQuote: Sendable, Equatable {
    public let kind: PlanProration.Kind
    /// The new plan's terms (they renew from the next cycle on).
    public let terms: SubscriptionTerms
    /// What an upgrade charges now for the rest of the cycle; 0 otherwise.
    public let chargeCents: Int64
    /// What an upgrade grants now, until the cycle ends; 0 otherwise.
    public let grant: Millicredits
    public let cycleEnd: Timestamp

    init(_ current: SubscriptionView, _ terms: SubscriptionTerms, at time: Timestamp) {
        // A clock behind the ledger's (another clock than the engine's) reads as the cycle's start.
        let now = max(time, current.cycleStart)
        kind = PlanProration.kind(levelAllocation: current.cycleAllocation, levelPriceCents: current.cyclePriceCents,
                                  current: current.terms, new: terms)
        self.terms = terms
        cycleEnd = current.cycleEnd
        guard kind == .upgrade else {
            chargeCents = 0
            grant = .zero
            return
        }
        chargeCents = PlanProration.chargeCents(levelPriceCents: current.cyclePriceCents, newPriceCents: terms.priceCents,
                                                cycleStart: current.cycleStart, cycleEnd: current.cycleEnd, at: now)
        grant = now >= current.cycleEnd ? .zero : PlanProration.grant(
            levelAllocation: current.cycleAllocation, levelPriceCents: current.cyclePriceCents, new: terms,
            paidCents: chargeCents, cycleStart: current.cycleStart, cycleEnd: current.cycleEnd, at: now)
    }
}

public struct PurchaseReceipt: Sendable, Equatable {
    public let quote: Quote
    public let payment: PaymentReceipt
    /// The grant's receipt (the first grant's, for a retry).
    public let receipt: Receipt
}

public struct ProviderStatus: Sendable, Equatable {
    public let provider: String
    public let keySource: KeySource
    public let kinds: Set<ModelKind>
    /// Credits per unit of the provider's models for this account: 0 with a key.
    public let creditsPerUnitRange: ClosedRange<Millicredits>
}
