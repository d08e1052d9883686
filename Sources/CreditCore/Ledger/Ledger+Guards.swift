/// Governance state laid out for the spend path (docs/performance.md, "Governance"). What a
/// spend reads of its account's governance — the spend velocity and the rate buckets — is
/// one 64-byte line by account slot; what it reads of its tenant's — own limits, buckets and
/// anomaly mode — one 64-byte line, reached through an index in the tenant entry the spend
/// reads anyway. (In hash maps by tenant and by slot they were five probes on five lines,
/// and a spend of a tenant with limits and a mode ran at half the speed.) The snapshot
/// encoding and the digest are those of the maps: only the layout in memory changed.

/// An account's or a tenant's two token buckets in 28 bytes (a tenant's guard keeps its flags
/// in the 4 after them). A bucket never taken is full; its time is `absent`. A request
/// bucket holds at most `requestsPerSecondMax` × 1,000 < 2^31 tokens and is kept only when it
/// held a request, so its tokens fit 32 bits.
struct PackedRates: Sendable, Equatable {
    var requestsAt: Int64 = Self.absent
    var creditTokens: Int64 = 0
    var creditsAt: Int64 = Self.absent
    var requestTokens: Int32 = 0

    /// No command time is negative, so a decoded state never holds this.
    static let absent = Int64.min

    init() {}

    init(_ state: RateState) {
        if let bucket = state.requests { (requestTokens, requestsAt) = (Int32(bucket.tokens), bucket.updatedAt) }
        if let bucket = state.credits { (creditTokens, creditsAt) = (bucket.tokens, bucket.updatedAt) }
    }

    var state: RateState {
        RateState(requests: requestsAt == Self.absent ? nil : TokenBucket(tokens: Int64(requestTokens), updatedAt: requestsAt),
                  credits: creditsAt == Self.absent ? nil : TokenBucket(tokens: creditTokens, updatedAt: creditsAt))
    }
}

/// A tenant's own rate limits in 24 bytes (0: no such limit; a valid limit is at least 1).
struct PackedLimits: Sendable, Equatable {
    var accountRequests: UInt32 = 0
    var tenantRequests: UInt32 = 0
    var accountCredits: Int64 = 0
    var tenantCredits: Int64 = 0

    init() {}

    init(_ limits: RateLimits) {
        accountRequests = limits.accountRequestsPerSecond ?? 0
        tenantRequests = limits.tenantRequestsPerSecond ?? 0
        accountCredits = limits.accountCreditsPerMinute?.rawValue ?? 0
        tenantCredits = limits.tenantCreditsPerMinute?.rawValue ?? 0
    }

    var limits: RateLimits {
        RateLimits(accountRequestsPerSecond: accountRequests == 0 ? nil : accountRequests,
                   accountCreditsPerMinute: accountCredits == 0 ? nil : Millicredits(accountCredits),
                   tenantRequestsPerSecond: tenantRequests == 0 ? nil : tenantRequests,
                   tenantCreditsPerMinute: tenantCredits == 0 ? nil : Millicredits(tenantCredits))
    }
}

/// An account's governance state, by slot: one cache line.
struct AccountGuard: Sendable {
    var velocity = SpendVelocity()
    /// Whether `rates` is state: its buckets were taken at least once (even if neither bucket
    /// was then kept — the snapshot and the digest tell that apart from never).
    var hasRates = false
    var rates = PackedRates()
}

/// A tenant's governance state: one cache line (64 bytes; the flags fill the buckets' tail).
struct TenantGuard: Sendable {
    var limits = PackedLimits()
    var rates = PackedRates()
    /// Whether the tenant set limits of its own (they win over its plan's, even all empty).
    var hasLimits = false
    var hasRates = false
    var mode = AnomalyMode.alert
    /// Whether `meteringClient` holds the tenant's metering-service role: a memo of one
    /// holder (derived from the role table, not state), so the role check of a client's
    /// spend reads this line instead of probing the role table.
    var hasMeteringClient = false
    var meteringClient = ClientID(0)

    /// Whether `client` is the metering client this line remembers (then it holds the
    /// tenant's metering-service role; another holder may not be remembered).
    @inline(__always)
    func remembers(meteringClient client: ClientID) -> Bool { hasMeteringClient && meteringClient == client }
}

/// The governance state of a shard besides its roles.
struct GuardTable: Sendable {
    /// Limits of every subscriber of a plan, by plan name (a tenant's own limits win).
    var plans: [String: RateLimits] = [:]
    /// By account slot, grown as accounts first spend or are limited.
    var accounts = PagedArray<AccountGuard>()
    /// By the index in the tenant's entry (`TenantSlot.guardIndex`), made as a tenant first
    /// gets limits, a mode or buckets; `owners` names each one's tenant.
    var tenants = PagedArray<TenantGuard>()
    var owners: [TenantID] = []
    /// Tenants with limits of their own, and with a mode other than `alert`.
    var limitedTenants = 0
    var modedTenants = 0

    /// Whether any rate limit may apply (the common case, none, costs one test per spend).
    var limitsApply: Bool { limitedTenants > 0 || !plans.isEmpty }

    /// The tenant guard indices in tenant id order.
    var tenantOrder: [UInt32] {
        owners.indices.sorted { owners[$0] < owners[$1] }.map(UInt32.init)
    }
}

extension Ledger {
    /// The guard index of a tenant (`none` when it has none, or does not exist).
    @inline(__always)
    func tenantGuardIndex(_ tenant: TenantID) -> UInt32 { tenants[tenant]?.guardIndex ?? none }

    /// The guard index of an existing tenant, made when it has none.
    mutating func makeTenantGuard(_ tenant: TenantID) -> UInt32 {
        Self.makeTenantGuard(tenant, tenants: &tenants, guards: &guards)
    }

    static func makeTenantGuard(_ tenant: TenantID, tenants: inout TenantTable, guards: inout GuardTable) -> UInt32 {
        guard let slot = tenants[tenant] else { preconditionFailure("a guard for tenant \(tenant), which does not exist") }
        if slot.guardIndex != none { return slot.guardIndex }
        let index = guards.tenants.append(TenantGuard())
        guards.owners.append(tenant)
        tenants.setGuardIndex(of: tenant, to: index)
        return index
    }

    /// Grows the account guards to cover `slot`.
    @inline(__always)
    mutating func reachAccountGuard(_ slot: UInt32) {
        while guards.accounts.count <= Int(slot) { _ = guards.accounts.append(AccountGuard()) }
    }

    /// A tenant's own limits (nil: none of its own).
    func ownRateLimits(of tenant: TenantID) -> RateLimits? {
        let index = tenantGuardIndex(tenant)
        guard index != none, guards.tenants[index].hasLimits else { return nil }
        return guards.tenants[index].limits.limits
    }

    /// Where the governance lines disagree with the tenant table, or their counts with them.
    func guardViolations() -> [String] {
        var problems: [String] = []
        if guards.owners.count != guards.tenants.count { problems.append("tenant guards and their owners differ in number") }
        var limited = 0, moded = 0
        for (index, owner) in guards.owners.enumerated() {
            if tenants[owner]?.guardIndex != UInt32(index) {
                problems.append("tenant guard \(index) names tenant \(owner.rawValue), whose entry does not point back")
            }
            guard index < guards.tenants.count else { continue }
            let tenantGuard = guards.tenants[UInt32(index)]
            if tenantGuard.hasLimits {
                limited += 1
                if !tenantGuard.limits.limits.isValid { problems.append("tenant \(owner.rawValue) has rate limits out of range") }
            } else if tenantGuard.limits != PackedLimits() {
                problems.append("tenant \(owner.rawValue) keeps limits it has not set")
            }
            if tenantGuard.mode != .alert { moded += 1 }
            if !tenantGuard.hasRates && tenantGuard.rates != PackedRates() {
                problems.append("tenant \(owner.rawValue) keeps buckets it has not taken")
            }
        }
        if limited != guards.limitedTenants { problems.append("\(guards.limitedTenants) tenants counted with limits, \(limited) have them") }
        if moded != guards.modedTenants { problems.append("\(guards.modedTenants) tenants counted with a mode, \(moded) have one") }
        if guards.accounts.count > accounts.count { problems.append("more account guards than accounts") }
        // The metering memo names a holder of the role, and every tenant with a metering
        // client has one.
        for grant in roles.grants {
            guard case .meteringService(let tenant) = grant.role else { continue }
            let index = tenantGuardIndex(tenant)
            if index == none || !guards.tenants[index].hasMeteringClient {
                problems.append("tenant \(tenant.rawValue) has a metering client but no memo of one")
            }
        }
        for (index, owner) in guards.owners.enumerated() where index < guards.tenants.count {
            let tenantGuard = guards.tenants[UInt32(index)]
            if tenantGuard.hasMeteringClient && !roles.holds(tenantGuard.meteringClient, .meteringService(owner)) {
                problems.append("tenant \(owner.rawValue)'s metering memo names \(tenantGuard.meteringClient), which lacks the role")
            }
        }
        return problems
    }
}
