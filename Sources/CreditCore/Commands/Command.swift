/// A request to the ledger. Every command carries the client's idempotency key and its
/// principal (who asks); the ledger stamps it with a timestamp when it applies it
/// (`Ledger.apply(_:at:)`), after checking that the principal may (docs/security.md).
public struct Command: Sendable, Equatable {
    public let key: IdempotencyKey
    public let action: Action
    /// The tenant whose shard applies this command (`action.tenant`, read once: routing
    /// and recording ask for it several times, and each ask of an indirect case loads its box).
    public let tenant: TenantID
    /// Who asks. `.system` (the default) is the engine and the host's own trusted code, which
    /// may do everything; a front end that serves clients names the client.
    public let principal: Principal

    @inlinable
    public init(key: IdempotencyKey, _ action: Action, by principal: Principal = .system) {
        self.key = key
        self.action = action
        tenant = action.tenant
        self.principal = principal
    }
}

/// What a command asks for. Amounts are positive unless a case says otherwise.
public enum Action: Sendable, Equatable {
    /// Opens an individual (accounts opened separately) or an organisation (its pool,
    /// account 0, and the given departments are opened with it).
    indirect case openTenant(TenantID, TenantKind)
    /// Adds a department to an organisation.
    indirect case openDepartment(TenantID, DepartmentTerms)
    /// Opens an account. An individual's accounts are `.standard`; an organisation's are
    /// `.member`s, which spend from the organisation's pool.
    indirect case openAccount(AccountID, AccountKind)
    /// Adds a block of credits to a standard account or an organisation pool.
    indirect case grant(AccountID, GrantTerms)
    /// Spends credits now, in burn order. Never creates debt beyond the account's overdraft.
    case debit(AccountID, Millicredits, scope: ChargeScope)
    /// Reserves credits for a call whose cost is known only afterwards. The hold times out
    /// `timeoutMillis` after the command's timestamp.
    case reserve(AccountID, Millicredits, timeoutMillis: Int64, scope: ChargeScope)
    /// Charges the actual cost of a hold (may be more or less than reserved, or zero).
    case settle(HoldID, actual: Millicredits)
    /// Cancels a hold; its credits become available again.
    case release(HoldID)
    /// Releases a hold whose time-out has passed (issued by the engine, not by clients).
    case timeOutHold(HoldID)
    /// Gives back (part of) an earlier debit of this account, named by its idempotency key.
    case refund(AccountID, debit: IdempotencyKey, Millicredits)
    /// An administrator's correction: positive adds an adjustment grant, negative removes
    /// credits in burn order. The reason is recorded in the ledger entry.
    indirect case adjust(AccountID, Millicredits, reason: String)
    case freeze(AccountID)
    case unfreeze(AccountID)
    /// Spend cap of a department per billing period; nil removes the cap.
    case setDepartmentAllocation(TenantID, DepartmentID, perPeriod: Millicredits?)
    /// Spend cap of a member per billing period; nil removes the cap.
    case setMemberLimit(AccountID, perPeriod: Millicredits?)
    /// Starts a new billing period of an organisation: department and member spend counters
    /// restart from zero (open holds stay counted).
    case startPeriod(TenantID)
    /// Charges an AI call as priced by the host's catalog: `usage.charged` credits (the list
    /// price on system keys, 0 when the caller's or the organisation's own key paid the
    /// provider), spent like a debit; the entry records the model, provider, units,
    /// provider cost, key source and list price (docs/pricing.md).
    indirect case charge(AccountID, UsageCharge, scope: ChargeScope)
    /// Settles a hold with an AI call's usage: like `settle` with `usage.charged` as the
    /// actual cost (0 when an own key paid: the hold is released), recording the usage as a
    /// charge does.
    indirect case settleCharge(HoldID, UsageCharge)
    /// Registers (or replaces) the account's own key for a provider: a user's key on a
    /// standard or member account, the organisation's key on its pool. The ledger keeps
    /// the fingerprint and the sealed key only (docs/pricing.md).
    indirect case registerKey(AccountID, KeyRegistration)
    /// Removes the account's key for a provider.
    indirect case removeKey(AccountID, provider: String)
    /// Sets an organisation's key policy; it applies from the next command on.
    case setKeyPolicy(TenantID, KeyPolicy)
    /// Charges an AI call on the first candidate whose provider a key of the account may pay
    /// for now (0 credits), else on the system-keys choice; without one (nothing within
    /// the caller's budget) it is refused. Choosing and charging in one step means the key
    /// policy and keys the choice saw are the ones the charge is recorded under. The
    /// receipt names the candidate and key source (`Receipt.routedChoice`).
    /// Not `indirect`: it fits the inline payload (as large as `refund`'s), which spares a
    /// box per charge.
    case chargeRouted(AccountID, RoutedCharge, scope: ChargeScope)

    // Time (docs/semantics.md, "Time"): the scheduler issues the renewals, lapses, expiries,
    // forfeits and refill outcomes; hosts issue the rest.

    /// Starts a subscription on a standard account or an organisation pool and grants its
    /// first cycle's allocation. On a lapsed subscription it is a reactivation: a new
    /// subscription from the new anchor, and the account's credits in grace are reinstated.
    indirect case subscribe(AccountID, SubscriptionTerms)
    /// Changes the plan in one step (docs/semantics.md, "Changing plans"): refused unless the
    /// subscription is still on `request.replacing`; an upgrade grants its share of the new
    /// allocation for the rest of the cycle now (what `request.paidCents` paid for, by
    /// `PlanProration`), and the new terms renew from the next cycle on (the anchor and
    /// cycle stay; `terms.anchor` is ignored). With `replacing` nil it is a deferred change:
    /// new terms from the next renewal, nothing charged or granted now.
    indirect case changePlan(AccountID, PlanChangeRequest)
    /// The subscription runs to the end of its cycle, then lapses.
    case cancelSubscription(AccountID)
    /// Undoes a cancellation before the cycle ends.
    case resumeSubscription(AccountID)
    /// Ends cycle `cycle − 1` and starts cycle `cycle` (numbered from 0 at the anchor): the
    /// ending cycle's allocation rolls over (or, with rollover off, goes into grace for
    /// `graceMillis`), and the new allocation is granted; an organisation's departments
    /// and members start a new period. Issued by the scheduler once the renewal is paid.
    case renewSubscription(AccountID, cycle: UInt32, graceMillis: Int64)
    /// Ends the subscription at the end of its cycle `cycle` without renewing: its
    /// allocation and rollover credits go into grace for `graceMillis`.
    case lapseSubscription(AccountID, cycle: UInt32, reason: LapseReason, graceMillis: Int64)
    /// Moves the account's grants whose expiry has passed into grace for `graceMillis`
    /// (the allocations of a subscription that has not lapsed wait for its renewal).
    case expireGrants(AccountID, graceMillis: Int64)
    /// Forfeits the account's credits whose grace has ended.
    case forfeitGrants(AccountID)
    /// Sets (or, with nil, removes) the account's auto-refill and low-balance terms.
    indirect case setAutoRefill(AccountID, AutoRefillTerms?)
    /// The refill in flight (numbered by the entry that started it) was paid: grants the
    /// purchased credits, which reinstate the account's credits in grace like a purchase.
    indirect case completeRefill(AccountID, refill: UInt64, RefillPayment)
    /// A payment attempt of the refill in flight failed: retry at `retryAt`, or (after the
    /// last attempt) give up and disable auto-refill.
    indirect case failRefill(AccountID, refill: UInt64, RefillFailure)

    // Governance (docs/security.md).

    /// Grants a role to a client. A tenant role's command goes to its tenant's shard; a
    /// platform role's (tenant `TenantID.platform`) to every shard.
    case grantRole(ClientID, Role)
    /// Revokes a role; revoking one the client does not hold changes nothing (and succeeds).
    case revokeRole(ClientID, Role)
    /// Sets (or, with nil, removes) a tenant's own rate limits; they win over its plan's.
    indirect case setRateLimits(TenantID, RateLimits?)
    /// Sets (or removes) the rate limits of every subscriber of a plan (by its name), for
    /// tenants without limits of their own. A platform command: applied on every shard.
    indirect case setPlanRateLimits(plan: String, RateLimits?)
    /// Sets what the anomaly guard does for the tenant's accounts (docs/security.md).
    case setAnomalyMode(TenantID, AnomalyMode)

    @inlinable
    public var tenant: TenantID {
        switch self {
        case .openTenant(let tenant, _), .openDepartment(let tenant, _),
             .setDepartmentAllocation(let tenant, _, _), .startPeriod(let tenant), .setKeyPolicy(let tenant, _):
            return tenant
        case .openAccount(let account, _), .grant(let account, _), .debit(let account, _, _),
             .reserve(let account, _, _, _), .refund(let account, _, _), .adjust(let account, _, _),
             .freeze(let account), .unfreeze(let account), .setMemberLimit(let account, _),
             .charge(let account, _, _), .registerKey(let account, _), .removeKey(let account, _),
             .chargeRouted(let account, _, _), .subscribe(let account, _), .changePlan(let account, _),
             .cancelSubscription(let account), .resumeSubscription(let account), .renewSubscription(let account, _, _),
             .lapseSubscription(let account, _, _, _), .expireGrants(let account, _), .forfeitGrants(let account),
             .setAutoRefill(let account, _), .completeRefill(let account, _, _), .failRefill(let account, _, _):
            return account.tenant
        case .settle(let hold, _), .release(let hold), .timeOutHold(let hold), .settleCharge(let hold, _):
            return hold.tenant
        case .grantRole(_, let role), .revokeRole(_, let role):
            return role.tenant ?? .platform
        case .setRateLimits(let tenant, _), .setAnomalyMode(let tenant, _):
            return tenant
        case .setPlanRateLimits:
            return .platform
        }
    }
}

/// Who paid the provider for an AI call.
public enum KeySource: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// The service's own provider keys: the call costs credits.
    case system = 0
    /// The member's or user's own key ("bring your own key"): 0 credits.
    case userKey = 1
    /// The organisation's key: 0 credits.
    case organisationKey = 2

    public var description: String {
        switch self {
        case .system: "system"
        case .userKey: "user_key"
        case .organisationKey: "organisation_key"
        }
    }
}

extension Command {
    /// Whether the command names a model or provider this process could not keep
    /// (`InternedName.unavailable`). The engine refuses such a command before applying it.
    public var namesUnavailable: Bool {
        switch action {
        case .charge(_, let usage, _), .settleCharge(_, let usage): usage.namesUnavailable
        case .chargeRouted(_, let routed, _): (0 ..< routed.count).contains { routed[candidate: $0].namesUnavailable }
        case .subscribe(_, let terms): terms.plan == .unavailable
        case .changePlan(_, let request): request.terms.plan == .unavailable || request.replacing == .unavailable
        default: false
        }
    }
}

/// An AI call's usage and its price, as the host's catalog computed it when charging. The
/// ledger stores it as given: a later catalog change does not reprice recorded charges.
///
/// Made of plain values: the model and provider are `InternedName`s, so commands, drafts
/// and entries copy a usage as bytes.
public struct UsageCharge: Sendable, Equatable {
    /// The model's name in the catalog ("GPT-4 Turbo"); 1 to `LedgerLimits.textBytesMax` bytes.
    public var modelName: InternedName
    /// The provider ("OpenAI"); 1 to `LedgerLimits.textBytesMax` bytes.
    public var providerName: InternedName
    /// Billing units used: tokens, images, or started 5-second clips.
    public var units: UInt64
    /// What the provider charges for the call, in nano-dollars (paid by the key's owner).
    public var providerCostNanoUSD: Int64
    /// What the call costs on system keys (rounded up once to the millicredit).
    public var listPrice: Millicredits
    public var keySource: KeySource

    public init(model: InternedName, provider: InternedName, units: UInt64, providerCostNanoUSD: Int64,
                listPrice: Millicredits, keySource: KeySource) {
        modelName = model
        providerName = provider
        self.units = units
        self.providerCostNanoUSD = providerCostNanoUSD
        self.listPrice = listPrice
        self.keySource = keySource
    }

    public init(model: String, provider: String, units: UInt64, providerCostNanoUSD: Int64,
                listPrice: Millicredits, keySource: KeySource) {
        self.init(model: InternedName(model), provider: InternedName(provider), units: units,
                  providerCostNanoUSD: providerCostNanoUSD, listPrice: listPrice, keySource: keySource)
    }

    /// A usage of nothing, naming nothing: a placeholder where a usage is stored inline.
    static let none = UsageCharge(model: InternedName.empty, provider: InternedName.empty, units: 0,
                                  providerCostNanoUSD: 0, listPrice: .zero, keySource: .system)

    /// Whether a name was not kept because the process holds the most names it may.
    public var namesUnavailable: Bool { modelName == .unavailable || providerName == .unavailable }

    /// The model's name as text.
    public var model: String {
        get { modelName.text }
        set { modelName = InternedName(newValue) }
    }

    /// The provider's name as text.
    public var provider: String {
        get { providerName.text }
        set { providerName = InternedName(newValue) }
    }

    /// Credits the account pays: the list price on system keys, nothing on an own key.
    public var charged: Millicredits { keySource == .system ? listPrice : .zero }

    /// Credits an own key saved (the list price), 0 on system keys.
    public var saved: Millicredits { keySource == .system ? .zero : listPrice }
}

/// The models a routed charge may land on, each priced on system keys: routing's answer
/// before it knows the caller's keys (docs/pricing.md, routing).
public struct RoutedCharge: Sendable, Equatable {
    // The first candidate is stored inline and the others in an array: a charge with one
    // candidate (a named model, or a tenant without keys) allocates nothing. Without
    // candidates, `first` is `UsageCharge.none` (never read).
    private var first: UsageCharge
    private var others: [UsageCharge]
    /// How many candidates there are.
    public let count: Int
    /// Index of the candidate charged on system keys when no key covers any (the cheapest);
    /// nil when none may be (all cost more than the caller allows). A byte: there are at
    /// most `LedgerLimits.routedCandidatesMax` candidates.
    public var systemChoice: UInt8?
    /// The number of the first candidate in the caller's own list (0 unless the caller sent
    /// only part of it): receipts name the candidate charged by `numberedFrom + position`,
    /// so a charge sent with the whole list and its retry sent with a part name the same
    /// model the same way.
    public var numberedFrom: UInt8
    /// What the caller asked for, as a stable hash (the billing layer hashes the model or
    /// routing request and the usage). The idempotency fingerprint of a routed charge covers
    /// this, the account and the scope — not the candidates — so a retry that is offered
    /// other candidates (the catalog or the caller's keys changed in between) is still the
    /// same request and gets the first outcome, and a different request under the same key
    /// is a conflict.
    public var request: UInt64

    /// `candidates`: in order of preference for a key-covered call (best quality first),
    /// each priced on system keys (`keySource == .system`); 1 to
    /// `LedgerLimits.routedCandidatesMax` of them. The system-keys choice is one of them too.
    public init(candidates: [UsageCharge], systemChoice: UInt8?, request: UInt64, numberedFrom: UInt8 = 0) {
        first = candidates.first ?? .none
        others = candidates.count > 1 ? Array(candidates.dropFirst()) : []
        count = candidates.count
        self.systemChoice = systemChoice
        self.request = request
        self.numberedFrom = numberedFrom
    }

    /// One candidate, charged on system keys unless a key covers its provider; number
    /// `numberedFrom` of the caller's list.
    public init(only candidate: UsageCharge, request: UInt64, numberedFrom: UInt8 = 0) {
        first = candidate
        others = []
        count = 1
        systemChoice = 0
        self.request = request
        self.numberedFrom = numberedFrom
    }

    /// The candidate at `index` (0 ..< count).
    @inline(__always)
    public subscript(candidate index: Int) -> UsageCharge {
        precondition(index >= 0 && index < count, "a candidate beyond the routed charge's")
        return index == 0 ? first : others[index - 1]
    }

    /// The candidates in order (an array made on each call).
    public var candidates: [UsageCharge] { count == 0 ? [] : [first] + others }
}

/// Whose provider keys an organisation's members may use (the seed's enterprise key
/// policies). Organisation keys (registered on the pool) apply under every policy.
public enum KeyPolicy: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// Only organisation keys; a member may not register a key. The default.
    case itControlled = 1
    /// Organisation keys for the providers they cover; members may register keys for the
    /// other providers only.
    case hybrid = 2
    /// Members' own keys first, then organisation keys; the pool pays for the rest.
    case userControlled = 3

    public var description: String {
        switch self {
        case .itControlled: "it_controlled"
        case .hybrid: "hybrid"
        case .userControlled: "user_controlled"
        }
    }
}

/// A provider key as the ledger keeps it: never the key in the clear.
public struct KeyRegistration: Sendable, Equatable {
    /// The provider the key is for ("OpenAI"); 1 to `LedgerLimits.textBytesMax` bytes.
    public var provider: String
    /// What a person may see to recognise the key (e.g. "sk-…abcd · 3f9a2c"); 1 to
    /// `LedgerLimits.textBytesMax` bytes. The host derives it; it must not reveal the key.
    public var fingerprint: String
    /// The key encrypted by the host (1 to `LedgerLimits.sealedKeyBytesMax` bytes); opaque
    /// to the ledger, returned to the host when it needs to call the provider.
    public var sealed: [UInt8]

    public init(provider: String, fingerprint: String, sealed: [UInt8]) {
        self.provider = provider
        self.fingerprint = fingerprint
        self.sealed = sealed
    }
}

public enum TenantKind: Sendable, Equatable {
    case individual
    case organisation(departments: [DepartmentTerms])
}

public struct DepartmentTerms: Sendable, Equatable {
    public var id: DepartmentID
    /// The cost centre usage of this department is billed to (free text, at most 64 bytes).
    public var costCentre: String
    /// Spend cap per billing period against the organisation pool; nil = no cap.
    public var allocationPerPeriod: Millicredits?

    public init(id: DepartmentID, costCentre: String, allocationPerPeriod: Millicredits? = nil) {
        self.id = id
        self.costCentre = costCentre
        self.allocationPerPeriod = allocationPerPeriod
    }
}

public enum AccountKind: Sendable, Equatable {
    /// Holds its own grants. `overdraft` is how far a debit may take it below zero (default 0).
    case standard(overdraft: Millicredits = .zero)
    /// A member of an organisation: spends from the pool, within its own limit and its
    /// department's allocation per period.
    case member(department: DepartmentID, limitPerPeriod: Millicredits?)

    public static let standard = AccountKind.standard(overdraft: .zero)
}

/// The kind of a grant, as the seed's credit policy names them.
public enum GrantKind: UInt8, Sendable, CaseIterable {
    case monthlyAllocation = 1
    case rollover = 2
    case purchase = 3
    case enterpriseContract = 4
    case promotional = 5
    case adjustment = 6
    /// Credits given back by a refund that no existing grant could take.
    case refund = 7
}

public struct GrantTerms: Sendable, Equatable {
    public var kind: GrantKind
    public var amount: Millicredits
    /// When the credits become spendable; nil = the command's timestamp.
    public var effectiveAt: Timestamp?
    public var expiresAt: Timestamp
    /// Lower numbers burn first. Default 100, so hosts can put grants before or after.
    public var priority: UInt8
    /// What the credits cost the holder, in nano-USD per credit: 0 for free and promotional
    /// credits, 10,000,000 for credits bought at the base rate. Cheaper credits burn first.
    public var costBasisNanoUSDPerCredit: UInt32
    /// A scoped grant pays only for charges of this provider (and model, if given).
    public var scope: ChargeScope

    public static let priorityDefault: UInt8 = 100

    public init(kind: GrantKind, amount: Millicredits, effectiveAt: Timestamp? = nil,
                expiresAt: Timestamp = .never, priority: UInt8 = priorityDefault,
                costBasisNanoUSDPerCredit: UInt32 = 0, scope: ChargeScope = .unscoped) {
        self.kind = kind
        self.amount = amount
        self.effectiveAt = effectiveAt
        self.expiresAt = expiresAt
        self.priority = priority
        self.costBasisNanoUSDPerCredit = costBasisNanoUSDPerCredit
        self.scope = scope
    }
}
