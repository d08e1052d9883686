import CreditEngine
import CreditPricing
import Synchronization

/// The business services a host calls, over one engine: charging AI usage through the
/// catalog and the caller's keys, routing, provider keys, purchases and subscriptions.
/// Every change goes through the engine's command path (idempotent, logged); the catalog,
/// plans and packages are CreditPricing's data (docs/pricing.md).
public final class Billing: Sendable {
    public let engine: CreditEngine
    private let catalogState: Mutex<Catalog>
    private let sealer: KeySealer
    private let payments: any PaymentGateway
    private let clock: any LedgerClock

    public init(engine: CreditEngine, catalog: Catalog = .standard, sealer: KeySealer, payments: any PaymentGateway,
                clock: any LedgerClock = SystemClock()) {
        self.engine = engine
        catalogState = Mutex(catalog)
        self.sealer = sealer
        self.payments = payments
        self.clock = clock
    }

    // MARK: Catalog

    /// The catalog charges are priced with now.
    public var catalog: Catalog { catalogState.withLock { $0 } }

    /// Replaces the running catalog with one parsed from `text`; on an error (which names
    /// the line and field) the running catalog stays as it was. Charges recorded earlier
    /// keep their prices (the ledger stores what each charge cost).
    public func replaceCatalog(text: String) throws(CatalogError) {
        let parsed = try Catalog.parse(text: text)
        catalogState.withLock { $0 = parsed }
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
    /// credits) or in credits, and recorded with the model, provider, units and costs.
    public func charge(_ account: AccountID, model: String, usage: Usage, key: IdempotencyKey,
                       scope: ChargeScope = .unscoped) async throws(BillingError) -> ChargeReceipt {
        let priced = try price(model, usage)
        guard let (source, _) = await engine.keyForCall(by: account, provider: priced.provider) else {
            throw .unknownAccount(account)
        }
        return try await record(priced, source: source, account: account, key: key, scope: scope, reason: nil)
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
        return ChargeReceipt(receipt: receipt, usage: charge, reason: nil)
    }

    /// Chooses the model for a request (docs/pricing.md, routing) and charges `usage` of it.
    public func charge(_ account: AccountID, routing request: RoutingRequest, usage: Usage, key: IdempotencyKey,
                       scope: ChargeScope = .unscoped) async throws(BillingError) -> ChargeReceipt {
        let decision = try await route(account, request)
        let priced = try price(decision.model, usage)
        return try await record(priced, source: decision.keySource, account: account, key: key, scope: scope,
                                reason: decision.reason)
    }

    /// The model for `request` and why: among the models of the kind and quality, one a key
    /// of the caller covers (0 credits, best quality first), else the cheapest in credits.
    public func route(_ account: AccountID, _ request: RoutingRequest) async throws(BillingError) -> RouteDecision {
        let keys = await engine.usableKeys(for: account)
        let route: Route
        do {
            route = try catalog.route(kind: request.kind, quality: request.quality, keyProviders: Set(keys.keys),
                                      constraints: request.constraints)
        } catch {
            throw .noRoute(error.description)
        }
        let source = keys[route.entry.provider] ?? .system
        let reason = switch source {
        case .userKey: "your \(route.entry.provider) key covers \(route.entry.model): 0 credits"
        case .organisationKey: "your organisation's \(route.entry.provider) key covers \(route.entry.model): 0 credits"
        case .system: route.reason
        }
        return RouteDecision(model: route.entry.model, provider: route.entry.provider, kind: route.entry.kind,
                             quality: route.entry.quality, creditsPerUnit: source == .system ? route.creditsPerUnit : .zero,
                             keySource: source, reason: reason)
    }

    private func record(_ priced: PricedUsage, source: KeySource, account: AccountID, key: IdempotencyKey,
                        scope: ChargeScope, reason: String?) async throws(BillingError) -> ChargeReceipt {
        let usage = UsageCharge(priced, keySource: source)
        let receipt = try await succeed(Command(key: key, .charge(account, usage, scope: scope)))
        return ChargeReceipt(receipt: receipt, usage: usage, reason: reason)
    }

    // MARK: Purchases

    /// The cheapest way to buy at least `credits` credits.
    public func quote(credits: Int64) throws(BillingError) -> Quote {
        do { return try CreditPricing.quote(credits: credits) } catch { throw .quote(error.description) }
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
        do { amount = try Millicredits.credits(quote.credits) } catch { throw .quote("\(quote.credits) credits overflow") }
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

    /// Grants a plan's monthly allocation for the cycle ending at `cycleEnd` (the scheduler
    /// issue renews it each cycle). Idempotent by `key`.
    @discardableResult
    public func grantAllocation(of plan: Plan, to account: AccountID, cycleEnd: Timestamp,
                                key: IdempotencyKey) async throws(BillingError) -> Receipt {
        try await succeed(Command(key: key, .grant(account, GrantTerms(kind: .monthlyAllocation, amount: plan.monthlyCredits,
                                                                       expiresAt: cycleEnd))))
    }

    /// A change of plan mid-cycle: an upgrade grants the allocation difference now, for the
    /// rest of the cycle (until `cycleEnd`); a downgrade grants nothing and takes effect
    /// with the next cycle's allocation. Returns the decision.
    public func changePlan(of account: AccountID, from current: Plan, to new: Plan, cycleEnd: Timestamp,
                           key: IdempotencyKey) async throws(BillingError) -> PlanChange {
        let change = PlanChange.decide(from: current, to: new)
        if case .upgrade(let difference) = change, difference > .zero {
            try await succeed(Command(key: key, .grant(account, GrantTerms(kind: .monthlyAllocation, amount: difference,
                                                                           expiresAt: cycleEnd))))
        }
        return change
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

    @discardableResult
    private func succeed(_ command: Command) async throws(BillingError) -> Receipt {
        switch await engine.execute(command) {
        case .success(let receipt): return receipt
        case .failure(let error): throw .ledger(error)
        }
    }
}

extension UsageCharge {
    /// What the ledger records of a priced call paid by `keySource`.
    init(_ priced: PricedUsage, keySource: KeySource) {
        self.init(model: priced.model, provider: priced.provider, units: UInt64(priced.units),
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
    /// Why routing chose the model (nil when the caller named it).
    public let reason: String?
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
