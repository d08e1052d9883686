/// The ledger of one shard: a deterministic state machine.
///
/// `apply(_:at:)` is the only way to change it. Given the same commands at the same
/// timestamps, two ledgers end in the same state (`stateDigest()` equal), which is what
/// recovery by replay relies on. A rejected command changes nothing but its entry in the
/// idempotency table.
///
/// Complexity: a debit is O(live grants of the account) plus O(1) hash lookups.
@_spi(Plumbing) public struct Ledger: Sendable {
    @_spi(Plumbing) public let configuration: LedgerConfiguration

    var tenants = TenantTable()
    var accounts = PagedArray<AccountRecord>()
    var grants = PagedArray<GrantRecord>()
    /// Slots of retired grants, reused before the array grows.
    var freeGrantSlots: [UInt32] = []
    /// The scope of each scoped grant, by grant slot (scoped grants are rare).
    var grantScopes: [UInt32: ChargeScope] = [:]
    /// Open holds by hold number.
    var holds: [UInt64: HoldRecord] = [:]
    var closedHolds: ClosedHolds
    var organisations: [OrganisationRecord] = []
    /// Overdraft terms of the few accounts that have them, by account slot.
    var creditLines: [UInt32: CreditLine] = [:]
    var idempotency: IdempotencyTable
    /// Grants unlinked within the idempotency window, so a refund can relink them.
    var retiredGrants: RetiredGrants
    var totals = LedgerTotals()
    /// Who may do what (docs/security.md).
    var roles = RoleTable()
    /// Rate limits and their buckets, the anomaly guard's modes by tenant and spend
    /// velocities by account (docs/security.md), laid out for the spend path
    /// (`Ledger+Guards`).
    var guards = GuardTable()
    /// Whether verdicts are kept as alerts (`takeAnomalyAlerts`): set by a shard once it has
    /// recovered, so a replay does not alert again. Output, not state.
    package var collectsAnomalyAlerts = false
    var anomalyAlerts: [AnomalyAlert] = []
    /// Commands refused by a rate limit (not recorded, not state: statistics).
    package private(set) var rateLimitedCount: UInt64 = 0
    /// Provider keys by owner account slot and provider (rare; not on the debit path).
    var providerKeys: [KeyOwner: KeyRegistration] = [:]
    /// The providers each slot has a key for: derived from `providerKeys` (kept in step by
    /// the key handlers, rebuilt after decoding), so a lookup by account does not scan
    /// every key of the shard.
    var keyIndex: [UInt32: Set<String>] = [:]
    /// Subscriptions and auto-refills, by `AccountRecord.schedule`.
    var schedules = PagedArray<AccountSchedule>()
    /// Whether handlers note what falls due (`dueNotes`): set by a shard whose scheduler
    /// takes them. Off by default, so a ledger without a scheduler keeps no notes.
    package var collectsDueNotes = false
    /// What fell due or became due since the scheduler last took the notes
    /// (`takeDueNotes`). Output, not state: not in the digest or snapshots.
    var dueNotes: [DueNote] = []
    /// The most recent entries, newest last. Output, not state: not in the digest.
    @_spi(Plumbing) public private(set) var recentEntries: EntryWindow
    /// What the command being applied has done so far. Scratch, not state: a stored
    /// property so handlers write it in place (an inout argument of a throwing call is
    /// copied in and out, a few hundred bytes per command).
    var draft = Draft(kind: .debited)

    /// The sequence the next recorded entry gets. Sequences start at 1.
    @_spi(Plumbing) public private(set) var nextSequence: UInt64 = 1
    /// Timestamp of the last applied command; the next must not be earlier.
    package private(set) var lastTime: Timestamp = .epoch
    /// Retries answered from the idempotency table, and key conflicts. Statistics, not
    /// state: not in the digest.
    @_spi(Plumbing) public private(set) var replayCount: UInt64 = 0
    package private(set) var conflictCount: UInt64 = 0
    /// Key registrations applied by this value (not state: a restored ledger starts at 0).
    /// The engine compares it around a batch to learn whether any tenant gained a key.
    package internal(set) var keyRegistrationCount: UInt64 = 0

    struct CreditLine: Sendable, Equatable {
        /// How far debits may take the balance below zero.
        var overdraft: Int64
        /// Debt that settles put beyond the overdraft (the call had already happened).
        var overrun: Int64
    }

    @_spi(Plumbing) public init(configuration: LedgerConfiguration = LedgerConfiguration()) {
        RecordLayout.check()
        self.configuration = configuration
        idempotency = IdempotencyTable(keysMax: configuration.idempotencyKeysMax,
                                       windowMillis: configuration.idempotencyWindowMillis)
        closedHolds = ClosedHolds(rememberedMax: configuration.closedHoldsRememberedMax)
        retiredGrants = RetiredGrants(countMax: configuration.idempotencyKeysMax, windowMillis: configuration.idempotencyWindowMillis)
        recentEntries = EntryWindow(capacity: configuration.recentEntriesMax)
    }

    /// Sets the entry sequence and the clock of a ledger rebuilt from a state snapshot
    /// (`init(decodingState:configuration:)`); nothing else may set them but `apply`.
    mutating func restoreClock(nextSequence: UInt64, lastTime: Timestamp) {
        self.nextSequence = nextSequence
        self.lastTime = lastTime
    }

    /// What `apply` did: the outcome for the caller, and the new ledger entry — nil when the
    /// command was a retry (its original outcome is returned) or a key conflict.
    package struct Applied: Sendable {
        package let outcome: Outcome
        package let entry: LedgerEntry?
    }

    /// Applies one command at `time` and returns its outcome and new entry.
    /// Precondition: `time >= lastTime`.
    package mutating func apply(_ command: Command, at time: Timestamp) -> Applied {
        let (outcome, recorded) = record(command, at: time)
        return Applied(outcome: outcome, entry: recorded ? recentEntries.newest : nil)
    }

    /// Applies one command at `time`; its entry, if it made one (`recorded`), is the newest
    /// of `recentEntries`. The fast path: the entry is built once, in the window.
    /// Precondition: `time >= lastTime`.
    @_spi(Plumbing) public mutating func record(_ command: Command, at time: Timestamp) -> (outcome: Outcome, recorded: Bool) {
        prefetchIndependentLines(tenant: command.tenant, key: command.key)
        return recordPrefetched(command, at: time)
    }

    /// `record(_:at:)` for a command whose independent lines were already prefetched (the
    /// batch path does it several commands ahead).
    @inline(__always)
    mutating func recordPrefetched(_ command: Command, at time: Timestamp) -> (outcome: Outcome, recorded: Bool) {
        if case .debit(let account, let amount, let scope) = command.action {
            return recordDebit(key: command.key, account, amount, scope, by: command.principal, at: time)
        }
        if case .chargeRouted(let account, let routed, let scope) = command.action {
            return recordRoutedCharge(key: command.key, account, routed, scope, by: command.principal, at: time)
        }
        return recordPrefetched(key: command.key, tenant: command.tenant,
                                fingerprint: Self.fingerprint(command.fingerprint, by: command.principal),
                                kind: command.action.entryKind, principal: command.principal,
                                at: time) { ledger, now, sequence throws(LedgerError) in
            try ledger.authorize(command.principal, command.action)
            try ledger.execute(command.action, at: now, sequence: sequence)
        }
    }

    /// The hot command, from plain values (see `recordPrefetched(key:...)`).
    @inline(__always)
    mutating func recordDebit(key: IdempotencyKey, _ account: AccountID, _ amount: Millicredits, _ scope: ChargeScope,
                              by principal: Principal, at time: Timestamp) -> (outcome: Outcome, recorded: Bool) {
        recordPrefetched(key: key, tenant: account.tenant,
                         fingerprint: Self.fingerprint(Action.debitFingerprint(account, amount, scope), by: principal),
                         kind: .debited, principal: principal, at: time) { ledger, now, _ throws(LedgerError) in
            try ledger.authorizeSpend(principal, account)
            try ledger.debit(account, amount, scope, at: now)
        }
    }

    /// The hot command of the billing layer, from plain values (see `recordDebit`).
    @inline(__always)
    mutating func recordRoutedCharge(key: IdempotencyKey, _ account: AccountID, _ routed: RoutedCharge, _ scope: ChargeScope,
                                     by principal: Principal, at time: Timestamp) -> (outcome: Outcome, recorded: Bool) {
        recordPrefetched(key: key, tenant: account.tenant,
                         fingerprint: Self.fingerprint(Action.routedChargeFingerprint(account, request: routed.request, scope),
                                                       by: principal),
                         kind: .charged, principal: principal, at: time) { ledger, now, _ throws(LedgerError) in
            try ledger.authorizeSpend(principal, account)
            try ledger.chargeRouted(account, routed, scope, at: now)
        }
    }

    /// A command's idempotency fingerprint: its content's, and who asked unless the system
    /// did (so the fingerprints of the system's commands are those stored before principals
    /// existed). A retry is the same request from the same principal; the same key and
    /// content from another principal is a key conflict, and learns nothing of the first
    /// outcome.
    @inline(__always)
    static func fingerprint(_ content: UInt64, by principal: Principal) -> UInt64 {
        if case .system = principal { return content }
        var hasher = StableHasher(seed: content)
        principal.feed(into: &hasher)
        return hasher.finish()
    }

    /// Applies a command given by its parts: `apply` runs the action's handler (after its
    /// permission check). Taking the
    /// parts rather than the `Command` lets the batch path hand over plain values it read
    /// from the caller's buffer; holding on to a borrowed `Command` across the handler (which
    /// may release objects) makes the compiler copy the whole enum for every command.
    @inline(__always)
    mutating func recordPrefetched(key: IdempotencyKey, tenant: TenantID, fingerprint: UInt64, kind: EntryKind,
                                   principal: Principal, at time: Timestamp,
                                   _ apply: (inout Ledger, Int64, UInt64) throws(LedgerError) -> Void)
        -> (outcome: Outcome, recorded: Bool) {
        precondition(time >= lastTime, "commands must be applied in time order")
        if let remembered = idempotency.lookup(key, at: time.millisSinceEpoch) {
            if remembered.fingerprint == fingerprint {
                replayCount += 1
                return (remembered.outcome.outcome(tenant: tenant), false)
            }
            conflictCount += 1
            return (.failure(.idempotencyConflict(key)), false)
        }
        let timeBefore = lastTime
        lastTime = time
        draft.reset(kind: kind)
        do {
            try apply(&self, time.millisSinceEpoch, nextSequence)
        } catch {
            if case .rateLimited = error {
                // Not recorded, not remembered: the state is as it was (docs/security.md).
                lastTime = timeBefore
                rateLimitedCount += 1
                return (.failure(error), false)
            }
            draft.error = error
        }
        let sequence = nextSequence
        if draft.error == nil && draft.refundable > 0 {
            // A charge (debit, charge, settle): the spender's velocity, before the balance
            // watch, so a freeze pauses the refill this very spend would start.
            observeSpend(slot: draft.principalSlot, tenant: tenant, amount: draft.refundable, at: time.millisSinceEpoch,
                         key: key, sequence: sequence)
        }
        if draft.error == nil && draft.accountSlot != none && accounts[draft.accountSlot].flags.contains(.watched) {
            watchBalance(draft.accountSlot, at: time.millisSinceEpoch, sequence: sequence)
        }
        let (available, debt) = balanceAfter(at: time.millisSinceEpoch)
        let outcome: Outcome
        if let error = draft.error {
            outcome = .failure(error)
        } else {
            outcome = .success(Receipt(sequence: sequence, amount: Millicredits(draft.amount),
                                       availableAfter: Millicredits(available), tenant: tenant,
                                       created: draft.created))
        }
        let storedOutcome = StoredOutcome(outcome)
        recordEntry(sequence: sequence, time: time, key: key, tenant: tenant, principal: principal,
                    available: available, debt: debt, outcome: storedOutcome)
        nextSequence += 1
        let refundable = draft.error == nil && draft.refundable > 0
        var remembered = Remembered(fingerprint: fingerprint, outcome: storedOutcome, refundable: refundable ? draft.refundable : 0,
                                    principal: refundable ? draft.principalSlot : none)
        var sources: [RefundSource]?
        if refundable { (remembered.source, sources) = draft.refundSources() }
        idempotency.remember(key, remembered, sources: sources, at: time.millisSinceEpoch)
        return (outcome, true)
    }

    /// Stores the draft as the newest entry of the window, in its compact form.
    @inline(__always)
    private mutating func recordEntry(sequence: UInt64, time: Timestamp, key: IdempotencyKey, tenant: TenantID,
                                      principal: Principal, available: Int64, debt: Int64, outcome: StoredOutcome) {
        var flags: StoredEntry.Flags = []
        if draft.account != nil { flags.insert(.account) }
        if draft.principal != nil { flags.insert(.member) }
        if draft.error != nil { flags.insert(.error) }
        let movements = draft.movements
        let spilled = movements.count > 2 ? Array(movements.dropFirst(2)) : []
        var extras: EntryWindow.Extras?
        if draft.reason != nil || !spilled.isEmpty {
            flags.insert(.extras)
            extras = EntryWindow.Extras(reason: draft.reason, spilled: spilled)
        }
        if draft.usage != nil { flags.insert(.usage) }
        let none = GrantMovement(grant: 0, amount: .zero, change: .consumed)
        recentEntries.append(StoredEntry(
            sequence: sequence, timeMillis: time.millisSinceEpoch, key: key, tenant: tenant.rawValue,
            accountNumber: draft.account?.number ?? 0, memberNumber: draft.principal?.number ?? 0, principal: principal,
            amount: draft.amount, availableAfter: available, debtAfter: debt,
            movement0: movements.count > 0 ? movements[0] : none, movement1: movements.count > 1 ? movements[1] : none,
            usage: draft.usage ?? .none,
            outcome: outcome, kind: draft.kind, created: draft.created, flags: flags,
            movementCount: UInt8(min(movements.count, 2))), extras: extras)
    }

    /// What a handler fills in while it runs; becomes the ledger entry.
    struct Draft {
        var kind: EntryKind
        var account: AccountID?
        var principal: AccountID?
        var accountSlot = none
        var principalSlot = none
        var organisation = none
        var amount: Int64 = 0
        var movements = GrantMovements()
        var reason: String?
        var usage: UsageCharge?
        var created = Receipt.Created.nothing
        var refundable: Int64 = 0
        var error: LedgerError?
        /// Set by a handler that already knows the account's spendable balance afterwards
        /// (the debit path), so `finish` need not walk the grants again.
        var spendableAfter: Int64?

        /// Starts a new command: every field back to its initial value, field by field (a
        /// whole-value assignment runs the generic destroy of the old draft).
        @inline(__always)
        mutating func reset(kind: EntryKind) {
            self.kind = kind
            account = nil
            principal = nil
            accountSlot = none
            principalSlot = none
            organisation = none
            amount = 0
            movements.removeAll()
            if reason != nil { reason = nil }
            usage = nil
            created = .nothing
            refundable = 0
            error = nil
            spendableAfter = nil
        }

        /// Where a charge's `refundable` credits came from: the grants its `consumed`
        /// movements took from, in order (the rest is debt). One grant that paid it all is
        /// `Remembered.source` alone; several, or a grant and debt, need the list.
        /// `mutating` although it changes nothing: called on the ledger's stored draft, a
        /// non-mutating call copied the whole draft (225 bytes) for every charge.
        @inline(__always)
        mutating func refundSources() -> (source: UInt64, list: [RefundSource]?) {
            // The common charge: one grant paid it all (no walk over the movements).
            if movements.count == 1 {
                let only = movements[0]
                if only.change == .consumed && only.amount.rawValue == refundable { return (only.grant, nil) }
            }
            return refundSourcesWalked()
        }

        private func refundSourcesWalked() -> (source: UInt64, list: [RefundSource]?) {
            var count = 0
            var first = GrantMovement(grant: 0, amount: .zero, change: .consumed)
            for movement in movements where movement.change == .consumed {
                if count == 0 { first = movement }
                count += 1
            }
            if count == 0 { return (RefundSource.debtOnly, nil) }
            if count == 1 && first.amount.rawValue == refundable { return (first.grant, nil) }
            var list: [RefundSource] = []
            list.reserveCapacity(count)
            for movement in movements where movement.change == .consumed {
                list.append(RefundSource(grant: movement.grant, amount: movement.amount.rawValue))
            }
            return (RefundSource.several, list)
        }

        /// Records the account a handler found: the principal, and the account that pays.
        mutating func note(_ located: Located) {
            principal = located.id
            principalSlot = located.slot
            account = located.funding == located.slot ? located.id : AccountID(tenant: located.id.tenant, number: 0)
            accountSlot = located.funding
            organisation = located.organisation
        }
    }

    /// The spendable balance and debt of the draft's account after the command (0, 0 when
    /// the command names no account). `mutating` only so that calling it from `record`
    /// does not copy the whole ledger (a non-mutating call from a mutating context passes
    /// a copy of `self`, 480 bytes, when not inlined).
    private mutating func balanceAfter(at now: Int64) -> (available: Int64, debt: Int64) {
        var available: Int64 = 0
        var debt: Int64 = 0
        if draft.accountSlot != none {
            debt = accounts[draft.accountSlot].debt
            if draft.principalSlot != draft.accountSlot && draft.principalSlot != none {
                available = memberAvailable(draft.principalSlot, organisation: draft.organisation, scope: .unscoped, at: now)
            } else if let spendableAfter = draft.spendableAfter, draft.error == nil {
                available = spendableAfter - debt
            } else {
                available = spendable(draft.accountSlot, scope: .unscoped, at: now) - debt
            }
        }
        return (available, debt)
    }

    private mutating func execute(_ action: Action, at now: Int64, sequence: UInt64) throws(LedgerError) {
        switch action {
        case .openTenant(let tenant, let kind): try openTenant(tenant, kind)
        case .openDepartment(let tenant, let terms): try openDepartment(tenant, terms)
        case .openAccount(let account, let kind): try openAccount(account, kind)
        case .grant(let account, let terms): try grant(account, terms, at: now, sequence: sequence)
        case .debit(let account, let amount, let scope): try debit(account, amount, scope, at: now)
        case .reserve(let account, let amount, let timeout, let scope):
            try reserve(account, amount, timeoutMillis: timeout, scope, at: now, sequence: sequence)
        case .settle(let hold, let actual): try settle(hold, actual: actual, at: now)
        case .release(let hold): try release(hold, at: now)
        case .timeOutHold(let hold): try timeOutHold(hold, at: now)
        case .refund(let account, let debit, let amount):
            try refund(account, debit: debit, amount, at: now, sequence: sequence)
        case .adjust(let account, let amount, let reason):
            try adjust(account, amount, reason: reason, at: now, sequence: sequence)
        case .freeze(let account): try setFrozen(account, true)
        case .unfreeze(let account):
            try setFrozen(account, false)
            resumeVelocity(draft.principalSlot, at: now)
        case .setDepartmentAllocation(let tenant, let department, let cap):
            try setDepartmentAllocation(tenant, department, cap)
        case .setMemberLimit(let account, let cap): try setMemberLimit(account, cap)
        case .startPeriod(let tenant): try startPeriod(tenant)
        case .charge(let account, let usage, let scope): try charge(account, usage, scope, at: now)
        case .settleCharge(let hold, let usage): try settleCharge(hold, usage, at: now)
        case .registerKey(let account, let registration): try registerKey(account, registration)
        case .removeKey(let account, let provider): try removeKey(account, provider: provider)
        case .setKeyPolicy(let tenant, let policy): try setKeyPolicy(tenant, policy)
        case .chargeRouted(let account, let routed, let scope): try chargeRouted(account, routed, scope, at: now)
        case .subscribe(let account, let terms): try subscribe(account, terms, at: now, sequence: sequence)
        case .changePlan(let account, let request): try changePlan(account, request, at: now, sequence: sequence)
        case .cancelSubscription(let account): try setCancelling(account, true)
        case .resumeSubscription(let account): try setCancelling(account, false)
        case .renewSubscription(let account, let cycle, let grace):
            try renewSubscription(account, cycle: cycle, graceMillis: grace, at: now, sequence: sequence)
        case .lapseSubscription(let account, let cycle, let reason, let grace):
            try lapseSubscription(account, cycle: cycle, reason: reason, graceMillis: grace, at: now)
        case .expireGrants(let account, let grace): try expireGrants(account, graceMillis: grace, at: now)
        case .forfeitGrants(let account): try forfeitGrants(account, at: now)
        case .setAutoRefill(let account, let terms): try setAutoRefill(account, terms, at: now)
        case .completeRefill(let account, let refill, let payment):
            try completeRefill(account, refill: refill, payment, at: now, sequence: sequence)
        case .failRefill(let account, let refill, let failure): try failRefill(account, refill: refill, failure, at: now)
        case .grantRole(let client, let role): try grantRole(client, role)
        case .revokeRole(let client, let role): try revokeRole(client, role)
        case .setRateLimits(let tenant, let limits): try setRateLimits(tenant, limits)
        case .setPlanRateLimits(let plan, let limits): try setPlanRateLimits(plan, limits)
        case .setAnomalyMode(let tenant, let mode): try setAnomalyMode(tenant, mode)
        }
    }
}

extension Action {
    var entryKind: EntryKind {
        switch self {
        case .openTenant: .tenantOpened
        case .openDepartment: .departmentOpened
        case .openAccount: .accountOpened
        case .grant: .granted
        case .debit: .debited
        case .reserve: .reserved
        case .settle: .settled
        case .release: .released
        case .timeOutHold: .holdTimedOut
        case .refund: .refunded
        case .adjust: .adjusted
        case .freeze: .frozen
        case .unfreeze: .unfrozen
        case .setDepartmentAllocation: .departmentAllocationSet
        case .setMemberLimit: .memberLimitSet
        case .startPeriod: .periodStarted
        case .charge: .charged
        case .settleCharge: .settled
        case .registerKey: .keyRegistered
        case .removeKey: .keyRemoved
        case .setKeyPolicy: .keyPolicySet
        case .chargeRouted: .charged
        case .subscribe: .subscribed
        case .changePlan: .subscriptionChanged
        case .cancelSubscription: .subscriptionCancelled
        case .resumeSubscription: .subscriptionResumed
        case .renewSubscription: .renewed
        case .lapseSubscription: .lapsed
        case .expireGrants: .grantsExpired
        case .forfeitGrants: .grantsForfeited
        case .setAutoRefill: .autoRefillSet
        case .completeRefill: .refillCompleted
        case .failRefill: .refillFailed
        case .grantRole: .roleGranted
        case .revokeRole: .roleRevoked
        case .setRateLimits, .setPlanRateLimits: .rateLimitsSet
        case .setAnomalyMode: .anomalyModeSet
        }
    }
}
