/// Rate limits: token buckets per account and per tenant, refilled continuously in command
/// time (docs/security.md, "Rate limits"). Integer arithmetic only, so replay and replicas
/// agree to the token.
///
/// A request bucket counts in thousandths of a request: `rate` requests per second refill
/// `rate` units per millisecond, and it holds one second (`rate × 1,000` units); a request
/// takes 1,000. A credit bucket counts in millicredits × 60,000: `rate` mc per minute refill
/// `rate` units per millisecond, and it holds one minute (`rate × 60,000`); spending `a` mc
/// takes `a × 60,000`. A bucket never seen is full.
struct TokenBucket: Sendable, Equatable {
    var tokens: Int64
    var updatedAt: Int64

    static let requestUnits: Int64 = 1_000
    static let creditUnits: Int64 = 60_000

    /// The tokens at `now` of a bucket of `capacity` refilled `rate` per millisecond.
    @inline(__always)
    func tokens(at now: Int64, rate: Int64, capacity: Int64) -> Int64 {
        let elapsed = max(0, now - updatedAt)
        // Past a full refill the bucket is full: no product can overflow.
        if elapsed >= capacity / rate + 1 { return capacity }
        return min(capacity, tokens + elapsed * rate)
    }
}

/// The buckets of one account or one tenant.
struct RateState: Sendable, Equatable, FlatMapValue {
    var requests: TokenBucket?
    var credits: TokenBucket?

    static var placeholder: RateState { RateState() }
}

extension RateLimits: FlatMapValue {
    static var placeholder: RateLimits { RateLimits() }
}

/// The limits in force and the buckets' states.
struct RateLimitTable: Sendable {
    /// Limits a tenant set for itself, by tenant.
    var byTenant = FlatMap<TenantID, RateLimits>()
    /// Limits of every subscriber of a plan, by plan name (a tenant's own limits win).
    var byPlan: [String: RateLimits] = [:]
    /// Bucket states by account slot, and by tenant.
    var accounts = FlatMap<UInt32, RateState>()
    var tenants = FlatMap<TenantID, RateState>()

    var isEmpty: Bool { byTenant.isEmpty && byPlan.isEmpty }
}

extension Ledger {
    /// The limits that apply to a spending command of `located`'s account: its tenant's own,
    /// else those of the plan its paying account subscribes to; nil when none.
    @inline(__always)
    func rateLimits(for located: Located) -> RateLimits? {
        if rateLimits.isEmpty { return nil }
        if let own = rateLimits.byTenant[located.id.tenant] { return own }
        if rateLimits.byPlan.isEmpty { return nil }
        let schedule = accounts[located.funding].schedule
        guard schedule != none, schedules[schedule].status != nil else { return nil }
        return rateLimits.byPlan[schedules[schedule].plan.text]
    }

    /// What `takeRate` changed, to put back exactly if the command then fails.
    struct RateUndo {
        var slot: UInt32
        var tenant: TenantID
        /// The states before (nil: there was none), for the parts that were changed.
        var account: RateState??
        var tenantState: RateState??
    }

    /// Checks the buckets for a spending command of `located` that spends `amount`, and
    /// takes its request and its credits. Throws `rateLimited` (changing nothing) when a
    /// bucket is short: the wait is until every short bucket holds enough. A credit bucket
    /// short of an amount above its whole capacity lets it through once full (the bucket
    /// then goes into deficit), so no amount is refused for ever. Returns what to put back
    /// if the command then fails (`undoRate`), nil when no limit applies. Each state is read
    /// once and written once: on the debit path of a limited tenant, these are its only
    /// hash lookups besides the limits'.
    @inline(never)
    mutating func takeRate(_ located: Located, amount: Int64, at now: Int64) throws(LedgerError) -> RateUndo? {
        guard let limits = rateLimits(for: located) else { return nil }
        let accountLimited = limits.accountRequestsPerSecond != nil || limits.accountCreditsPerMinute != nil
        let tenantLimited = limits.tenantRequestsPerSecond != nil || limits.tenantCreditsPerMinute != nil
        let accountBefore = accountLimited ? rateLimits.accounts[located.slot] : nil
        let tenantBefore = tenantLimited ? rateLimits.tenants[located.id.tenant] : nil
        var account = accountBefore ?? RateState()
        var tenant = tenantBefore ?? RateState()
        var wait: Int64 = 0
        Self.take(&account, requestsPerSecond: limits.accountRequestsPerSecond, creditsPerMinute: limits.accountCreditsPerMinute,
                  amount: amount, at: now, wait: &wait)
        Self.take(&tenant, requestsPerSecond: limits.tenantRequestsPerSecond, creditsPerMinute: limits.tenantCreditsPerMinute,
                  amount: amount, at: now, wait: &wait)
        if wait > 0 { throw .rateLimited(retryAfterMillis: wait) }
        var undo = RateUndo(slot: located.slot, tenant: located.id.tenant)
        if accountLimited {
            rateLimits.accounts[located.slot] = account
            undo.account = .some(accountBefore)
        }
        if tenantLimited {
            rateLimits.tenants[located.id.tenant] = tenant
            undo.tenantState = .some(tenantBefore)
        }
        return undo
    }

    /// `takeRate` when any limit is set at all (the common case, none, costs one test).
    @inline(__always)
    mutating func takeRateIfLimited(_ located: Located, amount: Int64, at now: Int64) throws(LedgerError) -> RateUndo? {
        rateLimits.isEmpty ? nil : try takeRate(located, amount: amount, at: now)
    }

    /// Puts back what `takeRate` took: the command it was for failed, so it spent nothing.
    @inline(never)
    mutating func undoRate(_ undo: RateUndo) {
        if case .some(let before) = undo.account { rateLimits.accounts[undo.slot] = before }
        if case .some(let before) = undo.tenantState { rateLimits.tenants[undo.tenant] = before }
    }

    /// Takes one request and `amount` from `state`'s buckets under the rates given (nil: no
    /// such bucket), raising `wait` to how long until they would hold enough.
    private static func take(_ state: inout RateState, requestsPerSecond: UInt32?, creditsPerMinute: Millicredits?,
                             amount: Int64, at now: Int64, wait: inout Int64) {
        if let rate = requestsPerSecond.map(Int64.init) {
            let (tokens, short) = requestBucket(state.requests, rate: rate, at: now)
            wait = max(wait, short)
            state.requests = TokenBucket(tokens: tokens - TokenBucket.requestUnits, updatedAt: now)
        }
        if let rate = creditsPerMinute?.rawValue {
            wait = max(wait, creditWait(state.credits, rate: rate, amount: amount, at: now))
            if amount > 0 { state.credits = spend(state.credits, rate: rate, spent: amount, at: now) }
        }
    }

    /// A request bucket's tokens at `now`, and how long until it holds one request (0 if it does).
    private static func requestBucket(_ bucket: TokenBucket?, rate: Int64, at now: Int64) -> (tokens: Int64, wait: Int64) {
        let capacity = rate * TokenBucket.requestUnits
        let tokens = bucket?.tokens(at: now, rate: rate, capacity: capacity) ?? capacity
        if tokens >= TokenBucket.requestUnits { return (tokens, 0) }
        return (tokens, (TokenBucket.requestUnits - tokens + rate - 1) / rate)
    }

    /// How long until a credit bucket may pay `amount` mc (at most its capacity); 0 now.
    private static func creditWait(_ bucket: TokenBucket?, rate: Int64, amount: Int64, at now: Int64) -> Int64 {
        let capacity = rate * TokenBucket.creditUnits
        let tokens = bucket?.tokens(at: now, rate: rate, capacity: capacity) ?? capacity
        // An amount above the capacity needs a full bucket (no overflow: amount ≤ amountMax).
        let needed = amount >= rate ? capacity : amount * TokenBucket.creditUnits
        if tokens >= needed { return 0 }
        return (needed - tokens + rate - 1) / rate
    }

    private static func spend(_ bucket: TokenBucket?, rate: Int64, spent: Int64, at now: Int64) -> TokenBucket {
        let capacity = rate * TokenBucket.creditUnits
        let tokens = bucket?.tokens(at: now, rate: rate, capacity: capacity) ?? capacity
        // The deficit is at most one bucket (a spend above a full bucket's worth): bounded,
        // and refilled within two minutes.
        let (cost, overflow) = spent.multipliedReportingOverflow(by: TokenBucket.creditUnits)
        return TokenBucket(tokens: tokens - min(overflow ? .max : cost, tokens + capacity), updatedAt: now)
    }

    // MARK: Handlers

    mutating func setRateLimits(_ tenant: TenantID, _ limits: RateLimits?) throws(LedgerError) {
        if tenants[tenant] == nil { throw .unknownTenant(tenant) }
        if let limits, !limits.isValid { throw .invalidInput(.rateLimits) }
        rateLimits.byTenant[tenant] = limits
    }

    mutating func setPlanRateLimits(_ plan: String, _ limits: RateLimits?) throws(LedgerError) {
        if plan.isEmpty { throw .invalidInput(.rateLimits) }
        try checkText(plan)
        if let limits, !limits.isValid { throw .invalidInput(.rateLimits) }
        rateLimits.byPlan[plan] = limits
    }
}

// MARK: - State encoding (version 5, after the roles)

extension RateState {
    func encode(into writer: inout ByteWriter) {
        for bucket in [requests, credits] {
            writer.write(bucket != nil)
            if let bucket { writer.write(bucket.tokens); writer.write(bucket.updatedAt) }
        }
    }

    var encodedByteCount: Int { 2 + (requests == nil ? 0 : 16) + (credits == nil ? 0 : 16) }

    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        func bucket(_ field: String) throws(BinaryDecodingError) -> TokenBucket? {
            try reader.readBool(field) ? TokenBucket(tokens: try reader.read(Int64.self), updatedAt: try reader.read(Int64.self)) : nil
        }
        let requests = try bucket("request bucket presence")
        self.init(requests: requests, credits: try bucket("credit bucket presence"))
    }

    func feed(into hasher: inout StableHasher) {
        for bucket in [requests, credits] {
            hasher.combine(bucket != nil); hasher.combine(bucket?.tokens ?? 0); hasher.combine(bucket?.updatedAt ?? 0)
        }
    }
}

extension RateLimitTable {
    /// Tenants' limits by tenant, plans' by name, then the buckets of accounts by slot and of
    /// tenants by id: each a u32 count and its items in ascending order.
    func encode(into writer: inout ByteWriter) {
        writer.write(UInt32(byTenant.count))
        for (tenant, limits) in byTenant.sorted(by: { $0.key < $1.key }) { writer.write(tenant); limits.encode(into: &writer) }
        writer.write(UInt32(byPlan.count))
        for (plan, limits) in byPlan.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            writer.write(plan); limits.encode(into: &writer)
        }
        writer.write(UInt32(accounts.count))
        for (slot, state) in accounts.sorted(by: { $0.key < $1.key }) { writer.write(slot); state.encode(into: &writer) }
        writer.write(UInt32(tenants.count))
        for (tenant, state) in tenants.sorted(by: { $0.key < $1.key }) { writer.write(tenant); state.encode(into: &writer) }
    }

    var encodedByteCount: Int {
        var size = 16
        byTenant.forEach { _, limits in size += 8 + limits.encodedByteCount }
        for (plan, limits) in byPlan { size += 4 + plan.utf8.count + limits.encodedByteCount }
        accounts.forEach { _, state in size += 4 + state.encodedByteCount }
        tenants.forEach { _, state in size += 8 + state.encodedByteCount }
        return size
    }

    /// Fed into the state digest only when something is set (every state before had nothing).
    func feed(into hasher: inout StableHasher) {
        guard !isEmpty || !accounts.isEmpty || !tenants.isEmpty else { return }
        hasher.combine(UInt8(0x4C))
        for (tenant, limits) in byTenant.sorted(by: { $0.key < $1.key }) { hasher.combine(tenant.rawValue); limits.feed(into: &hasher) }
        for (plan, limits) in byPlan.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            hasher.combine(plan); limits.feed(into: &hasher)
        }
        for (slot, state) in accounts.sorted(by: { $0.key < $1.key }) { hasher.combine(slot); state.feed(into: &hasher) }
        for (tenant, state) in tenants.sorted(by: { $0.key < $1.key }) { hasher.combine(tenant.rawValue); state.feed(into: &hasher) }
    }
}

extension StateDecoder {
    /// Version 5's rate limits (`RateLimitTable.encode`), strictly ascending in each part.
    mutating func decodeRateLimits() throws(BinaryDecodingError) {
        var table = RateLimitTable()
        func limits(_ at: Int) throws(BinaryDecodingError) -> RateLimits {
            let limits = try RateLimits(decoding: &reader)
            guard limits.isValid else { throw invalid(at, "rate limits out of range") }
            return limits
        }
        var previousTenant: UInt64?
        for _ in 0 ..< (try count(max: Int(UInt32.max), bytesEach: 12, "tenant rate limit count")) {
            let at = reader.offset
            let tenant = try reader.read(UInt64.self)
            guard previousTenant.map({ $0 < tenant }) ?? true, tenants[TenantID(tenant)] != nil else {
                throw invalid(at, "rate limits of tenant \(tenant) (unknown, or out of order)")
            }
            previousTenant = tenant
            table.byTenant[TenantID(tenant)] = try limits(at)
        }
        var previousPlan: String?
        for _ in 0 ..< (try count(max: Int(UInt32.max), bytesEach: 8, "plan rate limit count")) {
            let at = reader.offset
            let plan = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "plan")
            guard !plan.isEmpty, previousPlan.map({ $0.utf8.lexicographicallyPrecedes(plan.utf8) }) ?? true else {
                throw invalid(at, "rate limits of plan \(plan) (empty, or out of order)")
            }
            previousPlan = plan
            table.byPlan[plan] = try limits(at)
        }
        var previousSlot: UInt32?
        for _ in 0 ..< (try count(max: accounts.count, bytesEach: 6, "account rate bucket count")) {
            let at = reader.offset
            let slot = try reader.read(UInt32.self)
            guard Int(slot) < accounts.count, previousSlot.map({ $0 < slot }) ?? true else {
                throw invalid(at, "rate buckets of account slot \(slot) (unknown, or out of order)")
            }
            previousSlot = slot
            table.accounts[slot] = try RateState(decoding: &reader)
        }
        previousTenant = nil
        for _ in 0 ..< (try count(max: tenantList.count, bytesEach: 10, "tenant rate bucket count")) {
            let at = reader.offset
            let tenant = try reader.read(UInt64.self)
            guard previousTenant.map({ $0 < tenant }) ?? true, tenants[TenantID(tenant)] != nil else {
                throw invalid(at, "rate buckets of tenant \(tenant) (unknown, or out of order)")
            }
            previousTenant = tenant
            table.tenants[TenantID(tenant)] = try RateState(decoding: &reader)
        }
        rateLimitTable = table
    }
}
