/// Read-only views of the ledger. They never change state.
public struct Balance: Sendable, Equatable {
    public let account: AccountID
    /// What can be spent now on an unscoped charge: active unscoped grants minus debt. For a
    /// member, the least of that on the pool and the member's and department's headroom.
    public let available: Millicredits
    /// Remaining credits of all live grants, including scoped, not yet effective and
    /// expired-but-not-yet-processed ones.
    public let remaining: Millicredits
    public let held: Millicredits
    public let debt: Millicredits
    public let granted: Millicredits
    public let consumed: Millicredits
    /// Forfeited credits (lifetime): what left the account at the end of grace.
    public let expired: Millicredits
    /// Credits in grace now: expired, not spendable, reinstated by a qualifying event
    /// before their grace ends (part of `remaining`).
    public let inGrace: Millicredits
    public let isFrozen: Bool
    /// Live grants in static burn order.
    public let grants: [GrantView]
}

public struct GrantView: Sendable, Equatable {
    public let id: GrantID
    public let kind: GrantKind
    public let original: Millicredits
    public let remaining: Millicredits
    public let held: Millicredits
    public let consumed: Millicredits
    public let effectiveAt: Timestamp
    public let expiresAt: Timestamp
    public let priority: UInt8
    public let costBasisNanoUSDPerCredit: UInt32
    public let scope: ChargeScope
    /// When its grace ends, for a grant in grace (its `effectiveAt` then reads as its
    /// expiry: the original effective time is not kept).
    public let graceEndsAt: Timestamp?
    /// Its grace ended: nothing remains; it is kept only while holds on it are open.
    public let isForfeited: Bool
}

/// An account's subscription.
public struct SubscriptionView: Sendable, Equatable {
    public let account: AccountID
    public let plan: String
    public let status: SubscriptionStatus
    public let lapseReason: LapseReason?
    public let allocation: Millicredits
    public let priceCents: Int64
    public let rollover: Bool
    public let rolloverMonths: UInt8
    public let anchor: Timestamp
    /// The current cycle, from 0 at the anchor, and its bounds.
    public let cycle: UInt32
    public let cycleStart: Timestamp
    public let cycleEnd: Timestamp
    /// The current cycle's level: the allocation and price it was granted and paid at (an
    /// upgrade is charged and granted above it; `PlanProration`).
    public let cycleAllocation: Millicredits
    public let cyclePriceCents: Int64

    /// The terms in force (what the next renewal charges and grants).
    public var terms: SubscriptionTerms {
        SubscriptionTerms(plan: plan, allocation: allocation, priceCents: priceCents, rollover: rollover,
                          rolloverMonths: rolloverMonths)
    }
}

/// An account's auto-refill and low-balance terms, and where they stand.
public struct AutoRefillView: Sendable, Equatable {
    public let account: AccountID
    public let terms: AutoRefillTerms
    /// false after the last payment attempt of a refill failed (`disabledAfter` says why).
    public let isEnabled: Bool
    public let disabledAfter: RefillStop?
    /// The refill in flight (the sequence of the entry that started it), or nil.
    public let refillInFlight: UInt64?
    /// Failed attempts of the refill in flight, and when the next is due.
    public let failedAttempts: UInt8
    public let nextAttemptAt: Timestamp?
    /// Refills started in the calendar month of the last one.
    public let refillsThisMonth: UInt16
    public let lastRefillAt: Timestamp?
}

public struct HoldView: Sendable, Equatable {
    public let id: HoldID
    public let principal: AccountID
    public let amount: Millicredits
    public let expiresAt: Timestamp
}

/// An organisation's caps and what was spent against them this billing period.
public struct OrganisationView: Sendable, Equatable {
    public struct Usage: Sendable, Equatable {
        public let cap: Millicredits?
        public let spent: Millicredits
        public let held: Millicredits
        public let overrun: Millicredits
    }
    public let tenant: TenantID
    public let periodsStarted: UInt64
    public let departments: [(id: DepartmentID, costCentre: String, usage: Usage)]
    public let members: [(account: AccountID, department: DepartmentID, usage: Usage)]

    public static func == (lhs: OrganisationView, rhs: OrganisationView) -> Bool {
        lhs.tenant == rhs.tenant && lhs.periodsStarted == rhs.periodsStarted
            && lhs.departments.elementsEqual(rhs.departments) { $0.id == $1.id && $0.costCentre == $1.costCentre && $0.usage == $1.usage }
            && lhs.members.elementsEqual(rhs.members) { $0.account == $1.account && $0.department == $1.department && $0.usage == $1.usage }
    }
}

extension Ledger {
    package var tenantCount: Int { tenants.count }
    @_spi(Plumbing) public var accountCount: Int { accounts.count }
    @_spi(Plumbing) public var openHoldCount: Int { holds.count }
    package var rememberedKeyCount: Int { idempotency.count }

    /// Every account of this ledger, in the order they were opened.
    package var accountIDs: [AccountID] {
        var ids: [AccountID] = []
        ids.reserveCapacity(accounts.count)
        accounts.forEach { _, record in ids.append(AccountID(tenant: record.tenant, number: record.number)) }
        return ids
    }

    /// The outcome remembered for idempotency key `key` of a command of `tenant` (what a
    /// retry would get), or nil when the key is not (or no longer) remembered at `time`.
    package func rememberedOutcome(of key: IdempotencyKey, tenant: TenantID, at time: Timestamp) -> Outcome? {
        idempotency.lookup(key, at: time.millisSinceEpoch)?.outcome.outcome(tenant: tenant)
    }

    package func balance(of id: AccountID, at time: Timestamp) -> Balance? {
        guard let slot = slot(of: id) else { return nil }
        let record = accounts[slot]
        let now = time.millisSinceEpoch
        var views: [GrantView] = []
        var remaining: Int64 = 0
        var held: Int64 = 0
        var inGrace: Int64 = 0
        var cursor = record.firstGrant
        while cursor != none {
            let grant = grants[cursor]
            remaining += grant.remaining
            held += grant.held
            if grant.state == .grace { inGrace += grant.remaining }
            views.append(view(of: grant, slot: cursor, tenant: id.tenant))
            cursor = grant.next
        }
        let available: Int64
        if record.flags.contains(.member) {
            available = memberAvailable(slot, organisation: tenants[id.tenant]!.organisation, scope: .unscoped, at: now)
            held = holds.values.reduce(0) { $0 + ($1.principal == slot ? $1.amount : 0) }
        } else {
            available = spendable(slot, scope: .unscoped, at: now) - record.debt
        }
        return Balance(account: id, available: Millicredits(available), remaining: Millicredits(remaining),
                       held: Millicredits(held), debt: Millicredits(record.debt), granted: Millicredits(record.granted),
                       consumed: Millicredits(record.consumed), expired: Millicredits(record.expired),
                       inGrace: Millicredits(inGrace), isFrozen: record.flags.contains(.frozen), grants: views)
    }

    package func subscription(of id: AccountID) -> SubscriptionView? {
        guard let slot = slot(of: id), accounts[slot].schedule != none else { return nil }
        let schedule = schedules[accounts[slot].schedule]
        guard let status = schedule.status else { return nil }
        return SubscriptionView(account: id, plan: schedule.plan.text, status: status, lapseReason: schedule.lapseReason,
                                allocation: Millicredits(schedule.allocation), priceCents: schedule.priceCents,
                                rollover: schedule.rollover, rolloverMonths: schedule.rolloverMonths,
                                anchor: Timestamp(millisSinceEpoch: schedule.anchor), cycle: schedule.cycle,
                                cycleStart: Timestamp(millisSinceEpoch: schedule.cycleStart(schedule.cycle)),
                                cycleEnd: Timestamp(millisSinceEpoch: schedule.cycleEnd),
                                cycleAllocation: Millicredits(schedule.cycleAllocation), cyclePriceCents: schedule.cyclePriceCents)
    }

    package func autoRefill(of id: AccountID) -> AutoRefillView? {
        guard let slot = slot(of: id), accounts[slot].schedule != none else { return nil }
        let schedule = schedules[accounts[slot].schedule]
        guard let terms = schedule.refill else { return nil }
        return AutoRefillView(
            account: id,
            terms: AutoRefillTerms(threshold: Millicredits(terms.threshold), refillCredits: terms.refillCredits,
                                   refillsPerMonthMax: terms.refillsPerMonthMax, cooldownMillis: terms.cooldownMillis,
                                   attemptsMax: terms.attemptsMax),
            isEnabled: terms.enabled, disabledAfter: schedule.disabledAfter,
            refillInFlight: schedule.inFlight == 0 ? nil : schedule.inFlight, failedAttempts: schedule.attempts,
            nextAttemptAt: schedule.inFlight == 0 ? nil : Timestamp(millisSinceEpoch: schedule.nextAttemptAt),
            refillsThisMonth: schedule.refillsThisMonth,
            lastRefillAt: schedule.lastRefillAt == .min ? nil : Timestamp(millisSinceEpoch: schedule.lastRefillAt))
    }

    /// What a charge with this scope could spend now (scoped grants included).
    package func available(of id: AccountID, scope: ChargeScope, at time: Timestamp) -> Millicredits? {
        guard let slot = slot(of: id) else { return nil }
        let record = accounts[slot]
        if record.flags.contains(.member) {
            return Millicredits(memberAvailable(slot, organisation: tenants[id.tenant]!.organisation, scope: scope,
                                                at: time.millisSinceEpoch))
        }
        return Millicredits(spendable(slot, scope: scope, at: time.millisSinceEpoch) - record.debt)
    }

    package func hold(_ id: HoldID) -> HoldView? {
        guard let hold = holds[id.number], accounts[hold.principal].tenant == id.tenant else { return nil }
        let principal = accounts[hold.principal]
        return HoldView(id: id, principal: AccountID(tenant: principal.tenant, number: principal.number),
                        amount: Millicredits(hold.amount), expiresAt: Timestamp(millisSinceEpoch: hold.expiresAt))
    }

    /// Open holds whose time-out is at or before `time`, oldest first (the scheduler releases them).
    package func holdsTimedOut(at time: Timestamp) -> [HoldID] {
        holds.filter { $0.value.expiresAt <= time.millisSinceEpoch }
            .map { HoldID(tenant: accounts[$0.value.principal].tenant, number: $0.key) }
            .sorted { $0.number < $1.number }
    }

    package func organisation(_ id: TenantID) -> OrganisationView? {
        guard let tenant = tenants[id], tenant.organisation != none else { return nil }
        let record = organisations[Int(tenant.organisation)]
        func usage(_ period: PeriodCap) -> OrganisationView.Usage {
            .init(cap: period.cap.map(Millicredits.init), spent: Millicredits(period.spent),
                  held: Millicredits(period.held), overrun: Millicredits(period.overrun))
        }
        return OrganisationView(
            tenant: id, periodsStarted: record.periodsStarted,
            departments: record.departments.map { ($0.id, $0.costCentre, usage($0.period)) },
            members: record.members.map {
                (AccountID(tenant: id, number: accounts[$0.account].number), record.departments[$0.department].id,
                 usage($0.period))
            })
    }

    func view(of grant: GrantRecord, slot: UInt32, tenant: TenantID) -> GrantView {
        GrantView(id: GrantID(tenant: tenant, number: grant.number), kind: grant.kind,
                  original: Millicredits(grant.original), remaining: Millicredits(grant.remaining),
                  held: Millicredits(grant.held), consumed: Millicredits(grant.consumed),
                  effectiveAt: Timestamp(millisSinceEpoch: grant.state == .grace ? grant.expiresAt : grant.effectiveAt),
                  expiresAt: Timestamp(millisSinceEpoch: grant.expiresAt), priority: grant.priority,
                  costBasisNanoUSDPerCredit: grant.costBasis,
                  scope: grantScopes[slot] ?? .unscoped,
                  graceEndsAt: grant.state == .grace ? Timestamp(millisSinceEpoch: grant.graceEndsAt) : nil,
                  isForfeited: grant.state == .forfeited)
    }
}
