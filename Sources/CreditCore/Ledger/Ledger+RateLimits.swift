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
}

/// The buckets of one account or one tenant, as the snapshot holds them.
struct RateState: Sendable, Equatable {
    var requests: TokenBucket?
    var credits: TokenBucket?
}

extension Ledger {
    /// The limits that apply to a spending command of `located`'s account: its tenant's own,
    /// else those of the plan its paying account subscribes to; nil when none.
    @inline(__always)
    func rateLimits(for located: Located) -> PackedLimits? {
        if located.tenantGuard != none, guards.tenants[located.tenantGuard].hasLimits {
            return guards.tenants[located.tenantGuard].limits
        }
        if guards.plans.isEmpty { return nil }
        let schedule = accounts[located.funding].schedule
        guard schedule != none, schedules[schedule].status != nil else { return nil }
        return guards.plans[schedules[schedule].plan.text].map(PackedLimits.init)
    }

    /// What `takeRate` changed, to put back exactly if the command then fails.
    struct RateUndo {
        var slot: UInt32
        var tenantGuard: UInt32
        /// The states before, for the parts that were changed.
        var account: (had: Bool, rates: PackedRates)?
        var tenant: (had: Bool, rates: PackedRates)?
    }

    /// Checks the buckets for a spending command of `located` that spends `amount`, and
    /// takes its request and its credits. Throws `rateLimited` (changing nothing) when a
    /// bucket is short: the wait is until every short bucket holds enough. A credit bucket
    /// short of an amount above its whole capacity lets it through once full (the bucket
    /// then goes into deficit), so no amount is refused for ever. Returns what to put back
    /// if the command then fails (`undoRate`), nil when no limit applies. The account's
    /// buckets are in its guard line, the tenant's in its own (`Ledger+Guards`).
    @inline(never)
    mutating func takeRate(_ located: Located, amount: Int64, at now: Int64) throws(LedgerError) -> RateUndo? {
        guard let limits = rateLimits(for: located) else { return nil }
        let accountLimited = limits.accountRequests != 0 || limits.accountCredits != 0
        let tenantLimited = limits.tenantRequests != 0 || limits.tenantCredits != 0
        var wait: Int64 = 0
        var account = PackedRates(), tenant = PackedRates()
        if accountLimited {
            if Int(located.slot) < guards.accounts.count { account = guards.accounts[located.slot].rates }
            Self.take(&account, requests: limits.accountRequests, credits: limits.accountCredits, amount: amount, at: now,
                      wait: &wait)
        }
        var tenantGuard = located.tenantGuard
        if tenantLimited {
            if tenantGuard != none { tenant = guards.tenants[tenantGuard].rates }
            Self.take(&tenant, requests: limits.tenantRequests, credits: limits.tenantCredits, amount: amount, at: now,
                      wait: &wait)
        }
        if wait > 0 { throw .rateLimited(retryAfterMillis: wait) }
        var undo = RateUndo(slot: located.slot, tenantGuard: tenantGuard)
        if accountLimited {
            reachAccountGuard(located.slot)
            undo.account = (guards.accounts[located.slot].hasRates, guards.accounts[located.slot].rates)
            guards.accounts[located.slot].rates = account
            guards.accounts[located.slot].hasRates = true
        }
        if tenantLimited {
            // A tenant limited by its plan only gets its line at its first spend.
            if tenantGuard == none {
                tenantGuard = makeTenantGuard(located.id.tenant)
                undo.tenantGuard = tenantGuard
            }
            undo.tenant = (guards.tenants[tenantGuard].hasRates, guards.tenants[tenantGuard].rates)
            guards.tenants[tenantGuard].rates = tenant
            guards.tenants[tenantGuard].hasRates = true
        }
        return undo
    }

    /// `takeRate` when any limit is set at all (the common case, none, costs one test).
    @inline(__always)
    mutating func takeRateIfLimited(_ located: Located, amount: Int64, at now: Int64) throws(LedgerError) -> RateUndo? {
        guards.limitsApply ? try takeRate(located, amount: amount, at: now) : nil
    }

    /// Puts back what `takeRate` took: the command it was for failed, so it spent nothing.
    @inline(never)
    mutating func undoRate(_ undo: RateUndo) {
        if let before = undo.account {
            guards.accounts[undo.slot].hasRates = before.had
            guards.accounts[undo.slot].rates = before.rates
        }
        if let before = undo.tenant {
            guards.tenants[undo.tenantGuard].hasRates = before.had
            guards.tenants[undo.tenantGuard].rates = before.rates
        }
    }

    /// Takes one request and `amount` from `rates`'s buckets under the rates given (0: no
    /// such bucket), raising `wait` to how long until they would hold enough.
    @inline(__always)
    private static func take(_ rates: inout PackedRates, requests: UInt32, credits: Int64, amount: Int64, at now: Int64,
                             wait: inout Int64) {
        if requests != 0 {
            let rate = Int64(requests)
            let tokens = level(Int64(rates.requestTokens), at: rates.requestsAt, now: now, rate: rate,
                               units: TokenBucket.requestUnits)
            if tokens < TokenBucket.requestUnits { wait = max(wait, (TokenBucket.requestUnits - tokens + rate - 1) / rate) }
            // Kept only when no bucket is short (then 0 ≤ tokens − 1,000 < capacity < 2^31).
            rates.requestTokens = Int32(truncatingIfNeeded: tokens - TokenBucket.requestUnits)
            rates.requestsAt = now
        }
        if credits != 0 {
            let rate = credits
            let capacity = rate * TokenBucket.creditUnits
            let tokens = level(rates.creditTokens, at: rates.creditsAt, now: now, rate: rate, units: TokenBucket.creditUnits)
            // An amount above the capacity needs a full bucket (no overflow: amount ≤ amountMax).
            let needed = amount >= rate ? capacity : amount * TokenBucket.creditUnits
            if tokens < needed { wait = max(wait, (needed - tokens + rate - 1) / rate) }
            if amount > 0 {
                // The deficit is at most one bucket (a spend above a full bucket's worth):
                // bounded, and refilled within two minutes.
                let (cost, overflow) = amount.multipliedReportingOverflow(by: TokenBucket.creditUnits)
                rates.creditTokens = tokens - min(overflow ? .max : cost, tokens + capacity)
                rates.creditsAt = now
            }
        }
    }

    /// A bucket's tokens at `now`: full when never taken or refilled for longer than its
    /// `units` ms (its capacity, `rate × units`, over its refill of `rate` a ms), so no
    /// product can overflow.
    @inline(__always)
    private static func level(_ tokens: Int64, at updatedAt: Int64, now: Int64, rate: Int64, units: Int64) -> Int64 {
        let capacity = rate * units
        if updatedAt == PackedRates.absent { return capacity }
        let elapsed = max(0, now - updatedAt)
        if elapsed > units { return capacity }
        return min(capacity, tokens + elapsed * rate)
    }

    // MARK: Handlers

    mutating func setRateLimits(_ tenant: TenantID, _ limits: RateLimits?) throws(LedgerError) {
        if tenants[tenant] == nil { throw .unknownTenant(tenant) }
        if let limits, !limits.isValid { throw .invalidInput(.rateLimits) }
        let index = limits == nil ? tenantGuardIndex(tenant) : makeTenantGuard(tenant)
        guard index != none else { return }
        if guards.tenants[index].hasLimits { guards.limitedTenants -= 1 }
        guards.tenants[index].hasLimits = limits != nil
        guards.tenants[index].limits = limits.map(PackedLimits.init) ?? PackedLimits()
        if limits != nil { guards.limitedTenants += 1 }
    }

    mutating func setPlanRateLimits(_ plan: String, _ limits: RateLimits?) throws(LedgerError) {
        if plan.isEmpty { throw .invalidInput(.rateLimits) }
        try checkText(plan)
        if let limits, !limits.isValid { throw .invalidInput(.rateLimits) }
        guards.plans[plan] = limits
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

    /// A bucket's time is a command time (not negative); a request bucket's tokens are
    /// within its capacity (never negative: it is kept only when it held a request), a credit
    /// bucket's within 2^62 either way (it holds at most its capacity and owes at most one),
    /// so refilling one cannot overflow.
    init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        func bucket(_ field: String, tokens range: ClosedRange<Int64>) throws(BinaryDecodingError) -> TokenBucket? {
            guard try reader.readBool(field) else { return nil }
            let at = reader.offset
            let bucket = TokenBucket(tokens: try reader.read(Int64.self), updatedAt: try reader.read(Int64.self))
            guard bucket.updatedAt >= 0, range.contains(bucket.tokens) else { throw .invalid(offset: at, field: "rate bucket") }
            return bucket
        }
        let requests = try bucket("request bucket presence",
                                  tokens: 0 ... Int64(RateLimits.requestsPerSecondMax) * TokenBucket.requestUnits)
        self.init(requests: requests, credits: try bucket("credit bucket presence", tokens: -(1 << 62) ... 1 << 62))
    }

    func feed(into hasher: inout StableHasher) {
        for bucket in [requests, credits] {
            hasher.combine(bucket != nil); hasher.combine(bucket?.tokens ?? 0); hasher.combine(bucket?.updatedAt ?? 0)
        }
    }
}

extension Ledger {
    /// Visits what the rate-limit part of a snapshot holds, in its order: tenants' own limits
    /// by tenant, plans' by name, the buckets of accounts by slot, and of tenants by id.
    private func forEachRateItem(tenantLimits: (TenantID, RateLimits) -> Void, planLimits: (String, RateLimits) -> Void,
                                 accountRates: (UInt32, RateState) -> Void, tenantRates: (TenantID, RateState) -> Void) {
        let order = guards.tenantOrder
        for index in order where guards.tenants[index].hasLimits {
            tenantLimits(guards.owners[Int(index)], guards.tenants[index].limits.limits)
        }
        for (plan, limits) in guards.plans.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            planLimits(plan, limits)
        }
        guards.accounts.forEach { slot, accountGuard in
            if accountGuard.hasRates { accountRates(slot, accountGuard.rates.state) }
        }
        for index in order where guards.tenants[index].hasRates {
            tenantRates(guards.owners[Int(index)], guards.tenants[index].rates.state)
        }
    }

    /// Each part a u32 count and its items in ascending order (`forEachRateItem`); each
    /// count is patched in once its part is written.
    func encodeRateLimits(into writer: inout ByteWriter) {
        var part = (offset: writer.count, count: UInt32(0), index: 0)
        func advance(to index: Int) {
            while part.index < index {
                writer.patch(part.count, at: part.offset)
                part = (writer.count, 0, part.index + 1)
                if part.index < 4 { writer.write(UInt32(0)) }
            }
        }
        func enter(_ index: Int) {
            advance(to: index)
            part.count += 1
        }
        writer.write(UInt32(0))
        forEachRateItem(
            tenantLimits: { tenant, limits in enter(0); writer.write(tenant); limits.encode(into: &writer) },
            planLimits: { plan, limits in enter(1); writer.write(plan); limits.encode(into: &writer) },
            accountRates: { slot, state in enter(2); writer.write(slot); state.encode(into: &writer) },
            tenantRates: { tenant, state in enter(3); writer.write(tenant); state.encode(into: &writer) })
        advance(to: 4)
    }

    var encodedRateLimitsByteCount: Int {
        var size = 16
        forEachRateItem(tenantLimits: { _, limits in size += 8 + limits.encodedByteCount },
                        planLimits: { plan, limits in size += 4 + plan.utf8.count + limits.encodedByteCount },
                        accountRates: { _, state in size += 4 + state.encodedByteCount },
                        tenantRates: { _, state in size += 8 + state.encodedByteCount })
        return size
    }

    /// Fed into the state digest only when something is set (every state before had nothing).
    func feedRateLimits(into hasher: inout StableHasher) {
        var any = false
        forEachRateItem(tenantLimits: { _, _ in any = true }, planLimits: { _, _ in any = true },
                        accountRates: { _, _ in any = true }, tenantRates: { _, _ in any = true })
        guard any else { return }
        hasher.combine(UInt8(0x4C))
        forEachRateItem(tenantLimits: { tenant, limits in hasher.combine(tenant.rawValue); limits.feed(into: &hasher) },
                        planLimits: { plan, limits in hasher.combine(plan); limits.feed(into: &hasher) },
                        accountRates: { slot, state in hasher.combine(slot); state.feed(into: &hasher) },
                        tenantRates: { tenant, state in hasher.combine(tenant.rawValue); state.feed(into: &hasher) })
    }
}

extension StateDecoder {
    /// Version 5's rate limits (`Ledger.encodeRateLimits`), strictly ascending in each part.
    mutating func decodeRateLimits() throws(BinaryDecodingError) {
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
            let index = Ledger.makeTenantGuard(TenantID(tenant), tenants: &tenants, guards: &guards)
            guards.tenants[index].limits = PackedLimits(try limits(at))
            guards.tenants[index].hasLimits = true
            guards.limitedTenants += 1
        }
        var previousPlan: String?
        for _ in 0 ..< (try count(max: Int(UInt32.max), bytesEach: 8, "plan rate limit count")) {
            let at = reader.offset
            let plan = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "plan")
            guard !plan.isEmpty, previousPlan.map({ $0.utf8.lexicographicallyPrecedes(plan.utf8) }) ?? true else {
                throw invalid(at, "rate limits of plan \(plan) (empty, or out of order)")
            }
            previousPlan = plan
            guards.plans[plan] = try limits(at)
        }
        var previousSlot: UInt32?
        for _ in 0 ..< (try count(max: accounts.count, bytesEach: 6, "account rate bucket count")) {
            let at = reader.offset
            let slot = try reader.read(UInt32.self)
            guard Int(slot) < accounts.count, previousSlot.map({ $0 < slot }) ?? true else {
                throw invalid(at, "rate buckets of account slot \(slot) (unknown, or out of order)")
            }
            previousSlot = slot
            while guards.accounts.count <= Int(slot) { _ = guards.accounts.append(AccountGuard()) }
            guards.accounts[slot].rates = PackedRates(try RateState(decoding: &reader))
            guards.accounts[slot].hasRates = true
        }
        previousTenant = nil
        for _ in 0 ..< (try count(max: tenantList.count, bytesEach: 10, "tenant rate bucket count")) {
            let at = reader.offset
            let tenant = try reader.read(UInt64.self)
            guard previousTenant.map({ $0 < tenant }) ?? true, tenants[TenantID(tenant)] != nil else {
                throw invalid(at, "rate buckets of tenant \(tenant) (unknown, or out of order)")
            }
            previousTenant = tenant
            let index = Ledger.makeTenantGuard(TenantID(tenant), tenants: &tenants, guards: &guards)
            guards.tenants[index].rates = PackedRates(try RateState(decoding: &reader))
            guards.tenants[index].hasRates = true
        }
    }
}
