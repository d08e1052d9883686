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
    let pricing: Mutex<PricingState>
    let sealer: KeySealer
    let payments: any PaymentGateway

    /// The service reads the time from the engine's clock (a purchase's expiry, a plan
    /// change's share of the cycle).
    public init(engine: CreditEngine, catalog: Catalog = .standard, sealer: KeySealer, payments: any PaymentGateway) {
        self.engine = engine
        pricing = Mutex(PricingState(catalog: catalog))
        self.sealer = sealer
        self.payments = payments
    }

    /// The engine's clock.
    var clock: any LedgerClock { engine.clock }

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
    func price(_ model: String, _ usage: Usage) throws(BillingError) -> PricedUsage {
        do { return try catalog.price(model: model, usage: usage) } catch { throw .pricing(error) }
    }

    func price(_ entry: CatalogEntry, _ usage: Usage) throws(BillingError) -> PricedUsage {
        do { return try entry.price(usage) } catch { throw .pricing(error) }
    }

    @discardableResult
    func succeed(_ command: Command) async throws(BillingError) -> Receipt {
        switch await engine.execute(command) {
        case .success(let receipt): return receipt
        case .failure(let error): throw .ledger(error)
        }
    }
}

public struct ProviderStatus: Sendable, Equatable {
    public let provider: String
    public let keySource: KeySource
    public let kinds: Set<ModelKind>
    /// Credits per unit of the provider's models for this account: 0 with a key.
    public let creditsPerUnitRange: ClosedRange<Millicredits>
}
