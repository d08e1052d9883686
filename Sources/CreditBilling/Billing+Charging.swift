import CreditEngine
import CreditPricing
// Charging AI usage through the catalog and the caller's keys, and routing: the service's calls,
// what they take and return, and the plans routing keeps per catalog.

extension Billing {
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
