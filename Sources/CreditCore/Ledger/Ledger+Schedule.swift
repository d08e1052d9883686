/// Time: subscriptions and their billing cycles, rollover, expiry, grace, forfeiture,
/// reinstatement and auto-refill. Every step is a command (issued by the engine's scheduler
/// or by the host), so a replay reproduces it; nothing here reads a clock.
extension Ledger {
    // MARK: Subscriptions

    mutating func subscribe(_ id: AccountID, _ terms: SubscriptionTerms, at now: Int64, sequence: UInt64) throws(LedgerError) {
        try checkTerms(terms, id)
        let located = try locateGrantHolder(id)
        let slot = located.slot
        let anchor = terms.anchor?.millisSinceEpoch ?? now
        let firstEnd = CalendarMonths.adding(1, to: Timestamp(millisSinceEpoch: anchor)).millisSinceEpoch
        guard anchor <= now, now < firstEnd else { throw .notAllowed(id, .subscriptionTerms) }
        let existing = accounts[slot].schedule == none ? nil : schedules[accounts[slot].schedule]
        if let status = existing?.status, status != .lapsed { throw .alreadySubscribed(id) }
        if terms.allocation > .zero { try checkCanAddGrant(to: slot, terms.allocation.rawValue) }

        var schedule = existing ?? .empty(account: slot)
        schedule.status = .active
        schedule.lapseReason = nil
        schedule.cycle = 0
        schedule.anchor = anchor
        schedule.apply(terms)
        schedule.levelAtTerms()
        storeSchedule(schedule, of: slot)
        if terms.allocation > .zero {
            insertGrant(to: slot, kind: .monthlyAllocation, amount: terms.allocation.rawValue, effectiveAt: anchor,
                         expiresAt: firstEnd, priority: GrantTerms.priorityDefault, costBasis: 0, scope: .unscoped,
                         number: sequence)
        }
        // Subscribing again after a lapse is a reactivation: it reinstates credits in grace.
        if existing?.status == .lapsed { reinstate(slot, at: now) }
        noteDue(.renewal, slot, at: firstEnd)
        draft.amount = terms.allocation.rawValue
    }

    /// A change of plan in one step: checked whole (terms, the plan it replaces, the payment
    /// against the price difference, the grant's room), then applied without a failure path.
    mutating func changePlan(_ id: AccountID, _ request: PlanChangeRequest, at now: Int64, sequence: UInt64) throws(LedgerError) {
        let terms = request.terms
        try checkTerms(terms, id)
        if request.replacing == .unavailable { throw .limitReached(.namesPerProcess) }
        let located = try locateGrantHolder(id)
        let slot = located.slot
        guard var schedule = liveSubscription(of: slot) else { throw .notSubscribed(id) }
        guard let replacing = request.replacing else {
            // A deferred change: the terms of the next renewal, nothing else (its receipt is
            // as it was before plan changes were paid, so old logs replay to the same state).
            guard request.isDeferred else { throw .notAllowed(id, .planChangePayment) }
            schedule.apply(terms)
            schedules[accounts[slot].schedule] = schedule
            return
        }
        guard schedule.plan == replacing else { throw .planChanged(id) }
        let level = Millicredits(schedule.cycleAllocation)
        let current = SubscriptionTerms(plan: schedule.plan.text, allocation: Millicredits(schedule.allocation),
                                        priceCents: schedule.priceCents)
        let kind = PlanProration.kind(levelAllocation: level, levelPriceCents: schedule.cyclePriceCents, current: current, new: terms)
        // After the cycle's end (its renewal is due) no share of it is left: the change takes
        // effect with the renewal, which charges and grants the new terms whole, so nothing
        // may be paid or granted now.
        let start = Timestamp(millisSinceEpoch: schedule.cycleStart(schedule.cycle))
        let end = Timestamp(millisSinceEpoch: schedule.cycleEnd)
        let ended = now >= end.millisSinceEpoch
        let priceDifference = kind == .upgrade && !ended ? max(0, terms.priceCents - schedule.cyclePriceCents) : 0
        let paid = request.paidCents
        let reference = request.reference
        guard (0 ... priceDifference).contains(paid), (paid > 0) == !reference.isEmpty else {
            throw .notAllowed(id, .planChangePayment)
        }
        try checkText(reference)
        let granted = kind == .upgrade && !ended
            ? PlanProration.grant(levelAllocation: level, levelPriceCents: schedule.cyclePriceCents, new: terms, paidCents: paid,
                                  cycleStart: start, cycleEnd: end, at: Timestamp(millisSinceEpoch: now)).rawValue
            : 0
        if granted > 0 { try checkCanAddGrant(to: slot, granted) }

        schedule.apply(terms)
        if kind == .upgrade {
            schedule.cycleAllocation = max(schedule.cycleAllocation, terms.allocation.rawValue)
            schedule.cyclePriceCents = max(schedule.cyclePriceCents, terms.priceCents)
        }
        schedules[accounts[slot].schedule] = schedule
        if granted > 0 {
            insertGrant(to: slot, kind: .monthlyAllocation, amount: granted, effectiveAt: now, expiresAt: end.millisSinceEpoch,
                         priority: GrantTerms.priorityDefault, costBasis: 0, scope: .unscoped, number: sequence)
        }
        if !reference.isEmpty { draft.reason = reference }
        draft.created = .planChange(kind)
        draft.amount = granted
    }

    /// Cancels (`true`) or resumes a subscription; doing it twice changes nothing more.
    mutating func setCancelling(_ id: AccountID, _ cancelling: Bool) throws(LedgerError) {
        let located = try locateGrantHolder(id)
        guard var schedule = liveSubscription(of: located.slot) else { throw .notSubscribed(id) }
        schedule.status = cancelling ? .cancelling : .active
        schedules[accounts[located.slot].schedule] = schedule
    }

    mutating func renewSubscription(_ id: AccountID, cycle: UInt32, graceMillis: Int64, at now: Int64,
                                    sequence: UInt64) throws(LedgerError) {
        try checkGrace(graceMillis, id)
        let located = try locateGrantHolder(id)
        let slot = located.slot
        guard var schedule = liveSubscription(of: slot), schedule.status == .active else { throw .notSubscribed(id) }
        guard schedule.cycle < UInt32.max, cycle == schedule.cycle + 1 else {
            throw .staleSchedule(expected: UInt64(schedule.cycle) + 1, requested: UInt64(cycle))
        }
        let end = schedule.cycleEnd
        guard end <= now else { throw .notDue(id, dueAt: Timestamp(millisSinceEpoch: end)) }
        // Every grant this may add, checked before anything changes: a rollover grant per
        // ending allocation, and the new allocation.
        let ending = endingAllocationCount(of: slot, at: now)
        let adds = (schedule.rollover ? ending : 0) + (schedule.allocation > 0 ? 1 : 0)
        if Int(accounts[slot].liveGrants) + adds > LedgerLimits.grantsPerAccountMax { throw .limitReached(.grantsPerAccount) }
        if schedule.allocation > 0 { try checkCanAddGrant(to: slot, schedule.allocation) }
        // An organisation's billing period is its pool's subscription cycle.
        let organisation = accounts[slot].flags.contains(.pool) ? try organisationIndex(id.tenant) : nil

        // The ending allocations, walked in place (collecting their slots first cost an array
        // per renewal): what the walk changes — the allocation it is on, and the rollover
        // grant it links in — is never an ending allocation, so it meets the same ones in
        // the same order as a list taken before.
        var index = 0
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            let grantSlot = cursor
            let grant = grants[grantSlot]
            cursor = grant.next
            guard isEndingAllocation(grant, at: now) else { continue }
            index += 1
            if schedule.rollover && grant.remaining > 0 {
                let amount = grant.remaining
                grants[grantSlot].remaining = 0
                draft.movements.append(GrantMovement(grant: grant.number, amount: Millicredits(amount), change: .rolledOver))
                let expires = CalendarMonths.adding(Int(schedule.rolloverMonths), to: Timestamp(millisSinceEpoch: grant.expiresAt))
                insertGrant(to: slot, kind: .rollover, amount: amount, effectiveAt: grant.expiresAt,
                             expiresAt: expires.millisSinceEpoch, priority: grant.priority, costBasis: grant.costBasis,
                             scope: grant.isScoped ? grantScopes[grantSlot]! : .unscoped,
                             number: Self.grantNumber(sequence, extra: index), transfer: true)
            }
            // What is left (nothing after a rollover, unless holds give credits back later)
            // waits out its grace.
            if grants[grantSlot].remaining > 0 || grants[grantSlot].held > 0 {
                enterGrace(grantSlot, endsAt: grant.expiresAt.addingClamped(graceMillis))
            }
        }
        retireDepleted(slot, at: now)
        schedule.cycle = cycle
        schedule.levelAtTerms()
        schedules[accounts[slot].schedule] = schedule
        // Computed once: a calendar computation, which the allocation and the note share.
        let nextEnd = schedule.cycleEnd
        if schedule.allocation > 0 {
            insertGrant(to: slot, kind: .monthlyAllocation, amount: schedule.allocation, effectiveAt: end,
                         expiresAt: nextEnd, priority: GrantTerms.priorityDefault, costBasis: 0,
                         scope: .unscoped, number: sequence)
        }
        if let organisation { startPeriod(of: organisation, id.tenant) }
        noteDue(.renewal, slot, at: nextEnd)
        draft.amount = schedule.allocation
    }

    mutating func lapseSubscription(_ id: AccountID, cycle: UInt32, reason: LapseReason, graceMillis: Int64,
                                    at now: Int64) throws(LedgerError) {
        try checkGrace(graceMillis, id)
        let located = try locateGrantHolder(id)
        let slot = located.slot
        guard var schedule = liveSubscription(of: slot) else { throw .notSubscribed(id) }
        guard cycle == schedule.cycle else { throw .staleSchedule(expected: UInt64(schedule.cycle), requested: UInt64(cycle)) }
        let end = schedule.cycleEnd
        guard end <= now else { throw .notDue(id, dueAt: Timestamp(millisSinceEpoch: end)) }
        schedule.status = .lapsed
        schedule.lapseReason = reason
        schedules[accounts[slot].schedule] = schedule
        // The subscription's credits — its allocations and their rollovers — leave with it.
        let graceEnd = end.addingClamped(graceMillis)
        var cursor = accounts[slot].firstGrant
        var moved: Int64 = 0
        while cursor != none {
            let grant = grants[cursor]
            let next = grant.next
            if grant.state == .live && (grant.kind == .monthlyAllocation || grant.kind == .rollover)
                && (grant.remaining > 0 || grant.held > 0) {
                moved += grant.remaining
                grants[cursor].expiresAt = min(grant.expiresAt, end)
                grants[cursor].effectiveAt = min(grant.effectiveAt, end)
                enterGrace(cursor, endsAt: max(graceEnd, grants[cursor].expiresAt))
            }
            cursor = next
        }
        retireDepleted(slot, at: now)
        draft.amount = moved
    }

    /// Whether a renewal at `now` ends this grant: a live monthly allocation whose expiry has passed.
    private func isEndingAllocation(_ grant: GrantRecord, at now: Int64) -> Bool {
        grant.state == .live && grant.kind == .monthlyAllocation && grant.expiresAt <= now
    }

    /// How many allocation grants a renewal at `now` ends.
    private func endingAllocationCount(of slot: UInt32, at now: Int64) -> Int {
        var count = 0
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            let grant = grants[cursor]
            if isEndingAllocation(grant, at: now) { count += 1 }
            cursor = grant.next
        }
        return count
    }

    // MARK: Expiry, grace, forfeiture

    mutating func expireGrants(_ id: AccountID, graceMillis: Int64, at now: Int64) throws(LedgerError) {
        try checkGrace(graceMillis, id)
        let located = try locateGrantHolder(id)
        let slot = located.slot
        let subscribed = liveSubscription(of: slot) != nil
        var cursor = accounts[slot].firstGrant
        var moved: Int64 = 0
        var any = false
        while cursor != none {
            let grant = grants[cursor]
            let next = grant.next
            if expiresNow(grant, subscribed: subscribed, at: now) {
                any = true
                moved += grant.remaining
                enterGrace(cursor, endsAt: grant.expiresAt.addingClamped(graceMillis))
            }
            cursor = next
        }
        guard any else { throw .nothingDue(id) }
        retireDepleted(slot, at: now)
        draft.amount = moved
    }

    /// Whether `expireGrants` moves this grant into grace at `now`: live, past its expiry,
    /// holding credits, and its expiry not the renewal's (`renewalEnds`). The scheduler's
    /// `dueWork` asks the same question.
    func expiresNow(_ grant: GrantRecord, subscribed: Bool, at now: Int64) -> Bool {
        grant.state == .live && grant.expiresAt <= now && (grant.remaining > 0 || grant.held > 0)
            && !Self.renewalEnds(grant.kind, subscribed: subscribed)
    }

    /// Whether a grant of `kind` is ended by its account's renewal rather than expired by
    /// the scheduler: a monthly allocation while a subscription is live.
    static func renewalEnds(_ kind: GrantKind, subscribed: Bool) -> Bool {
        subscribed && kind == .monthlyAllocation
    }

    mutating func forfeitGrants(_ id: AccountID, at now: Int64) throws(LedgerError) {
        let located = try locateGrantHolder(id)
        let slot = located.slot
        var cursor = accounts[slot].firstGrant
        var lost: Int64 = 0
        var any = false
        while cursor != none {
            let grant = grants[cursor]
            if grant.state == .grace && grant.graceEndsAt <= now {
                any = true
                lost += grant.remaining
                forfeit(cursor, grant.remaining)
                grants[cursor].state = .forfeited
            }
            cursor = grant.next
        }
        guard any else { throw .nothingDue(id) }
        retireDepleted(slot, at: now)
        draft.amount = lost
    }

    /// Moves `amount` of a grant's remaining credits to its account's expired total.
    mutating func forfeit(_ grantSlot: UInt32, _ amount: Int64) {
        guard amount > 0 else { return }
        let account = grants[grantSlot].account
        grants[grantSlot].remaining -= amount
        accounts[account].expired += amount
        totals.expired += amount
        draft.movements.append(GrantMovement(grant: grants[grantSlot].number, amount: Millicredits(amount), change: .forfeited))
    }

    /// Puts a live grant (past its expiry) into grace until `endsAt`.
    private mutating func enterGrace(_ grantSlot: UInt32, endsAt: Int64) {
        var grant = grants[grantSlot]
        assert(grant.state == .live && endsAt >= grant.expiresAt)
        grant.state = .grace
        grant.effectiveAt = endsAt
        grants[grantSlot] = grant
        if grant.remaining > 0 {
            draft.movements.append(GrantMovement(grant: grant.number, amount: Millicredits(grant.remaining), change: .expired))
        }
        noteDue(.graceEnd, grant.account, at: endsAt)
    }

    /// A qualifying event (a purchase, a paid refill, a reactivation): every credit of the
    /// account still in grace at `now` is spendable again, until as long after `now` as its
    /// grace lasted (30 days by default). A reinstated allocation becomes a rollover grant:
    /// rolled-over and reinstated credits never roll over again.
    mutating func reinstate(_ slot: UInt32, at now: Int64) {
        var reinstated: [UInt32] = []
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            let grant = grants[cursor]
            if grant.state == .grace && grant.graceEndsAt > now { reinstated.append(cursor) }
            cursor = grant.next
        }
        for grantSlot in reinstated {
            var grant = grants[grantSlot]
            let lifetime = max(1, grant.graceEndsAt - grant.expiresAt)
            unlink(grantSlot, of: slot)
            grant.state = .live
            grant.effectiveAt = now
            grant.expiresAt = now.addingClamped(lifetime)
            if grant.kind == .monthlyAllocation { grant.kind = .rollover }
            grants[grantSlot] = grant
            link(grantSlot, into: slot)
            draft.movements.append(GrantMovement(grant: grant.number, amount: Millicredits(grant.remaining), change: .reinstated))
            noteDue(.expiry, slot, at: grant.expiresAt)
        }
    }

    /// Credits a hold gives back to a grant that has expired: in grace they wait with it;
    /// on a forfeited grant they are forfeited at once; on an expired grant not yet in grace
    /// the scheduler is told to expire it.
    mutating func returnedToExpired(_ grantSlot: UInt32, _ amount: Int64, at now: Int64) {
        let grant = grants[grantSlot]
        switch grant.state {
        case .live: if grant.expiresAt <= now { noteDue(.expiry, grant.account, at: now) }
        case .grace: break
        case .forfeited: forfeit(grantSlot, amount)
        }
    }

    /// Removes a grant from its account's list (it stays counted as live).
    private mutating func unlink(_ grantSlot: UInt32, of slot: UInt32) {
        var previous = none
        var cursor = accounts[slot].firstGrant
        while cursor != none && cursor != grantSlot {
            previous = cursor
            cursor = grants[cursor].next
        }
        precondition(cursor == grantSlot, "grant not in its account's list")
        let next = grants[grantSlot].next
        if previous == none {
            accounts[slot].firstGrant = next
            refreshGrantHint(accounts[slot].tenant, slot, next)
        } else {
            grants[previous].next = next
        }
    }

    /// Inserts a grant into its account's list in static burn order.
    mutating func link(_ grantSlot: UInt32, into slot: UInt32) {
        let record = grants[grantSlot]
        var previous = none
        var cursor = accounts[slot].firstGrant
        while cursor != none, grants[cursor].burnsBefore(record) {
            previous = cursor
            cursor = grants[cursor].next
        }
        grants[grantSlot].next = cursor
        if previous == none {
            accounts[slot].firstGrant = grantSlot
            refreshGrantHint(accounts[slot].tenant, slot, grantSlot)
        } else {
            grants[previous].next = grantSlot
        }
    }

    // MARK: Auto-refill

    mutating func setAutoRefill(_ id: AccountID, _ terms: AutoRefillTerms?, at now: Int64) throws(LedgerError) {
        if let terms {
            guard (0 ... LedgerLimits.amountMax).contains(terms.threshold.rawValue),
                  (0 ... AutoRefillTerms.refillCreditsMax).contains(terms.refillCredits),
                  terms.cooldownMillis >= 0, terms.cooldownMillis <= LedgerLimits.graceMillisMax,
                  (1 ... AutoRefillTerms.attemptsMaxLimit).contains(terms.attemptsMax) else {
                throw .notAllowed(id, .autoRefillTerms)
            }
        }
        let located = try locateGrantHolder(id)
        let slot = located.slot
        var schedule = accounts[slot].schedule == none ? AccountSchedule.empty(account: slot) : schedules[accounts[slot].schedule]
        schedule.refill = terms.map {
            RefillTermsRecord(threshold: $0.threshold.rawValue, refillCredits: $0.refillCredits, cooldownMillis: $0.cooldownMillis,
                              refillsPerMonthMax: $0.refillsPerMonthMax, attemptsMax: $0.attemptsMax, enabled: true)
        }
        schedule.disabledAfter = nil
        schedule.alerted = false
        storeSchedule(schedule, of: slot)
    }

    mutating func completeRefill(_ id: AccountID, refill: UInt64, _ payment: RefillPayment, at now: Int64,
                                 sequence: UInt64) throws(LedgerError) {
        guard payment.amount.rawValue > 0, payment.amount.rawValue <= LedgerLimits.amountMax,
              payment.expiresAt.millisSinceEpoch > now, !payment.reference.isEmpty,
              payment.reference.utf8.count <= LedgerLimits.textBytesMax else {
            throw .notAllowed(id, .refillPaymentTerms)
        }
        let located = try locateGrantHolder(id)
        let slot = located.slot
        var schedule = try refillInFlight(slot, refill)
        try checkCanAddGrant(to: slot, payment.amount.rawValue)
        schedule.inFlight = 0
        schedule.attempts = 0
        schedules[accounts[slot].schedule] = schedule
        insertGrant(to: slot, kind: .purchase, amount: payment.amount.rawValue, effectiveAt: now,
                     expiresAt: payment.expiresAt.millisSinceEpoch, priority: GrantTerms.priorityDefault,
                     costBasis: payment.costBasisNanoUSDPerCredit, scope: .unscoped, number: sequence)
        reinstate(slot, at: now)
        draft.reason = payment.reference
        draft.amount = payment.amount.rawValue
    }

    mutating func failRefill(_ id: AccountID, refill: UInt64, _ failure: RefillFailure, at now: Int64) throws(LedgerError) {
        guard !failure.reason.isEmpty, failure.reason.utf8.count <= LedgerLimits.textBytesMax,
              failure.retryAt.map({ $0.millisSinceEpoch >= now && $0.millisSinceEpoch - now <= LedgerLimits.graceMillisMax }) ?? true else {
            throw .notAllowed(id, .refillPaymentTerms)
        }
        let located = try locateGrantHolder(id)
        let slot = located.slot
        var schedule = try refillInFlight(slot, refill)
        schedule.attempts += 1
        if let retryAt = failure.retryAt, let terms = schedule.refill, schedule.attempts < terms.attemptsMax {
            schedule.nextAttemptAt = retryAt.millisSinceEpoch
            noteDue(.refill, slot, at: retryAt.millisSinceEpoch)
        } else if schedule.refill != nil {
            // The last attempt failed (or the scheduler gave up): no refill in flight, and
            // auto-refill stays off until the host sets it again.
            schedule.inFlight = 0
            schedule.attempts = 0
            schedule.refill?.enabled = false
            schedule.disabledAfter = failure.declined ? .paymentDeclined : .paymentUnavailable
        } else {
            // Auto-refill was removed while this refill was in flight: it just ends.
            schedule.inFlight = 0
            schedule.attempts = 0
        }
        schedules[accounts[slot].schedule] = schedule
        draft.reason = failure.reason
    }

    private func refillInFlight(_ slot: UInt32, _ refill: UInt64) throws(LedgerError) -> AccountSchedule {
        let inFlight = accounts[slot].schedule == none ? 0 : schedules[accounts[slot].schedule].inFlight
        guard refill != 0, inFlight == refill else { throw .staleSchedule(expected: inFlight, requested: refill) }
        return schedules[accounts[slot].schedule]
    }

    /// After a successful command that moved a watched account's credits: a low-balance
    /// notice once per crossing of the threshold, and a refill when none is in flight, the
    /// month's cap and the cooldown allow. Runs inside the command, so it is replayed with
    /// it; the payment happens outside (the scheduler).
    mutating func watchBalance(_ slot: UInt32, at now: Int64, sequence: UInt64) {
        let index = accounts[slot].schedule
        var schedule = schedules[index]
        guard let terms = schedule.refill else { return }
        let available = spendable(slot, scope: .unscoped, at: now) - accounts[slot].debt
        if available >= terms.threshold {
            if schedule.alerted {
                schedule.alerted = false
                schedules[index] = schedule
            }
            return
        }
        if !schedule.alerted {
            schedule.alerted = true
            noteDue(.lowBalance, slot, at: now)
        }
        // A frozen account (by an admin, or by the anomaly guard) buys nothing on its own.
        if terms.enabled && terms.refillCredits > 0 && schedule.inFlight == 0 && !accounts[slot].flags.contains(.frozen) {
            let month = CalendarMonths.monthNumber(of: Timestamp(millisSinceEpoch: now))
            if month != schedule.refillMonth {
                schedule.refillMonth = month
                schedule.refillsThisMonth = 0
            }
            let cooled = schedule.lastRefillAt == .min || now - schedule.lastRefillAt >= terms.cooldownMillis
            if schedule.refillsThisMonth < terms.refillsPerMonthMax && cooled {
                schedule.inFlight = sequence
                schedule.attempts = 0
                schedule.nextAttemptAt = now
                schedule.refillsThisMonth += 1
                schedule.lastRefillAt = now
                noteDue(.refill, slot, at: now)
            }
        }
        schedules[index] = schedule
    }

    // MARK: Helpers

    /// The number of a grant a command creates besides its first (a renewal's rollovers):
    /// the first is numbered by the command's entry sequence, the k-th extra one by the
    /// sequence plus k × 2^48, so numbers stay unique while sequences stay below 2^48.
    static func grantNumber(_ sequence: UInt64, extra: Int) -> UInt64 {
        precondition(sequence < 1 << 48 && extra >= 0 && extra < 1 << 16, "grant numbers are unique below 2^48 entries")
        return sequence + UInt64(extra) << 48
    }

    /// The account, which must hold grants (a standard account or a pool).
    private mutating func locateGrantHolder(_ id: AccountID) throws(LedgerError) -> Located {
        let located = try locate(id)
        draft.note(located)
        guard accounts[located.slot].holdsGrants else { throw .notAllowed(id, .subscriptionsHoldGrants) }
        return located
    }

    /// The account's subscription if it is active or cancelling.
    func liveSubscription(of slot: UInt32) -> AccountSchedule? {
        guard accounts[slot].schedule != none else { return nil }
        let schedule = schedules[accounts[slot].schedule]
        guard let status = schedule.status, status != .lapsed else { return nil }
        return schedule
    }

    /// Stores an account's schedule, giving it a slot on first use, and keeps the watched flag.
    private mutating func storeSchedule(_ schedule: AccountSchedule, of slot: UInt32) {
        if accounts[slot].schedule == none {
            accounts[slot].schedule = schedules.append(schedule)
        } else {
            schedules[accounts[slot].schedule] = schedule
        }
        if schedule.watched { accounts[slot].flags.insert(.watched) } else { accounts[slot].flags.remove(.watched) }
    }

    private func checkTerms(_ terms: SubscriptionTerms, _ id: AccountID) throws(LedgerError) {
        if terms.plan == .unavailable { throw .limitReached(.namesPerProcess) }
        guard !terms.plan.isEmpty, terms.plan.utf8Count <= LedgerLimits.textBytesMax,
              (0 ... LedgerLimits.amountMax).contains(terms.allocation.rawValue),
              (0 ... SubscriptionTerms.priceCentsMax).contains(terms.priceCents),
              (1 ... SubscriptionTerms.rolloverMonthsMax).contains(terms.rolloverMonths) else {
            throw .notAllowed(id, .subscriptionTerms)
        }
    }

    private func checkGrace(_ graceMillis: Int64, _ id: AccountID) throws(LedgerError) {
        guard (0 ... LedgerLimits.graceMillisMax).contains(graceMillis) else { throw .notAllowed(id, .subscriptionTerms) }
    }

    /// Tells the scheduler (when one listens: `collectsDueNotes`) that something of the
    /// account falls due at `at`. Notes are output, not state.
    @inline(__always)
    mutating func noteDue(_ kind: DueNote.Kind, _ slot: UInt32, at: Int64) {
        if collectsDueNotes { dueNotes.append(DueNote(at: at, kind: kind, slot: slot)) }
    }
}

extension AccountSchedule {
    /// Takes a subscription's terms (not its anchor or cycle).
    mutating func apply(_ terms: SubscriptionTerms) {
        plan = terms.plan
        allocation = terms.allocation.rawValue
        priceCents = terms.priceCents
        rollover = terms.rollover
        rolloverMonths = terms.rolloverMonths
    }
}

extension Int64 {
    /// Adds a non-negative duration, stopping at `Int64.max` ("never").
    func addingClamped(_ millis: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(millis)
        return overflow ? .max : sum
    }
}
