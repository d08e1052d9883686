/// Grants: adding them, the burn order, and giving credits back in reverse order.
extension Ledger {
    @inline(__always)
    func checkAmount(_ amount: Millicredits) throws(LedgerError) {
        if amount.rawValue <= 0 || amount.rawValue > LedgerLimits.amountMax { throw .invalidAmount(amount) }
    }

    mutating func grant(_ id: AccountID, _ terms: GrantTerms, at now: Int64, sequence: UInt64) throws(LedgerError) {
        try checkAmount(terms.amount)
        let located = try locate(id)
        draft.note(located)
        guard accounts[located.slot].holdsGrants else { throw .notAllowed(id, .membersHoldNoGrants) }
        let effective = terms.effectiveAt?.millisSinceEpoch ?? now
        guard terms.expiresAt.millisSinceEpoch > max(effective, now) else { throw .invalidExpiry(expiresAt: terms.expiresAt) }
        try addGrant(to: located.slot, kind: terms.kind, amount: terms.amount.rawValue, effectiveAt: effective,
                     expiresAt: terms.expiresAt.millisSinceEpoch, priority: terms.priority,
                     costBasis: terms.costBasisNanoUSDPerCredit, scope: terms.scope, number: sequence)
        // Buying credits is a qualifying event: credits in grace come back.
        if terms.kind == .purchase { reinstate(located.slot, at: now) }
    }

    /// Adds a grant (validated by the caller except for limits and overflow): checks the
    /// limits, then `insertGrant`.
    mutating func addGrant(to slot: UInt32, kind: GrantKind, amount: Int64, effectiveAt: Int64, expiresAt: Int64,
                           priority: UInt8, costBasis: UInt32, scope: ChargeScope, number: UInt64,
                           transfer: Bool = false) throws(LedgerError) {
        try checkCanAddGrant(to: slot, transfer ? 0 : amount)
        insertGrant(to: slot, kind: kind, amount: amount, effectiveAt: effectiveAt, expiresAt: expiresAt, priority: priority,
                    costBasis: costBasis, scope: scope, number: number, transfer: transfer)
    }

    /// Adds a grant the caller has checked (`checkCanAddGrant` passed for it, and nothing
    /// since changed the account's grants or totals in a way that could fail it): the apply
    /// half of a command, with no failure path. Unscoped credits first repay the account's
    /// debt. A `transfer` moves credits the account already has (a rollover): it adds
    /// nothing to the granted totals and repays nothing.
    mutating func insertGrant(to slot: UInt32, kind: GrantKind, amount: Int64, effectiveAt: Int64, expiresAt: Int64,
                              priority: UInt8, costBasis: UInt32, scope: ChargeScope, number: UInt64,
                              transfer: Bool = false) {
        precondition(Int(accounts[slot].liveGrants) < LedgerLimits.grantsPerAccountMax, "a grant added past the account's limit")
        precondition(amount > 0 && (transfer || !accounts[slot].granted.addingReportingOverflow(amount).overflow
                         && !totals.granted.addingReportingOverflow(amount).overflow), "an unchecked grant amount")
        var account = accounts[slot]

        let repaid = scope.isUnscoped && !transfer ? min(account.debt, amount) : 0
        let record = GrantRecord(number: number, original: amount, remaining: amount - repaid, held: 0,
                                 effectiveAt: effectiveAt, expiresAt: expiresAt, costBasis: costBasis,
                                 account: slot, next: none, priority: priority, kind: kind, isScoped: !scope.isUnscoped)
        let grantSlot = storeGrant(record)
        if !scope.isUnscoped { grantScopes[grantSlot] = scope }
        // Insert in static burn order.
        var previous = none
        var cursor = account.firstGrant
        while cursor != none, grants[cursor].burnsBefore(record) {
            previous = cursor
            cursor = grants[cursor].next
        }
        grants[grantSlot].next = cursor
        if previous == none {
            account.firstGrant = grantSlot
            refreshGrantHint(account.tenant, slot, grantSlot)
        } else {
            grants[previous].next = grantSlot
        }

        account.liveGrants += 1
        if !transfer {
            account.granted += amount
            totals.granted += amount
        }
        if !scope.isUnscoped { account.flags.insert(.scopedGrants) }
        accounts[slot] = account
        repayDebt(repaid, of: slot)

        draft.amount = amount
        draft.created = .grant
        draft.movements.append(GrantMovement(grant: number, amount: Millicredits(amount), change: .created))
        if repaid > 0 { draft.movements.append(GrantMovement(grant: number, amount: Millicredits(repaid), change: .repaidDebt)) }
        // The scheduler expires it — except an allocation of a live subscription, which its
        // renewal ends.
        if expiresAt != .max && !(kind == .monthlyAllocation && liveSubscription(of: slot) != nil) {
            noteDue(.expiry, slot, at: expiresAt)
        }
    }

    /// Whether a grant can pay for a charge with this scope. Unscoped grants pay for
    /// anything; a scoped one only for its provider (and model, if it names one).
    @inline(__always)
    func covers(_ grant: GrantRecord, slot: UInt32, _ scope: ChargeScope) -> Bool {
        if !grant.isScoped { return true }
        let own = grantScopes[slot]!
        return own.provider == scope.provider && (own.model == 0 || own.model == scope.model)
    }

    /// Stores a grant record in a free slot (or a new one) and returns the slot; linking it
    /// into its account is the caller's.
    @inline(__always)
    mutating func storeGrant(_ record: GrantRecord) -> UInt32 {
        if let reused = freeGrantSlots.popLast() {
            grants[reused] = record
            return reused
        }
        return grants.append(record)
    }

    /// Throws what `addGrant` would: the account's live-grant limit, or an overflow of the
    /// account's or the ledger's granted total.
    @inline(__always)
    func checkCanAddGrant(to slot: UInt32, _ amount: Int64) throws(LedgerError) {
        if Int(accounts[slot].liveGrants) >= LedgerLimits.grantsPerAccountMax { throw .limitReached(.grantsPerAccount) }
        if accounts[slot].granted.addingReportingOverflow(amount).overflow
            || totals.granted.addingReportingOverflow(amount).overflow {
            throw .amountOverflow
        }
    }

    /// Credits of the account's grants that can pay for a charge with `scope` at `now`.
    @inline(__always)
    func spendable(_ slot: UInt32, scope: ChargeScope, at now: Int64) -> Int64 {
        var total: Int64 = 0
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            let grant = grants[cursor]
            if grant.isActive(at: now) && covers(grant, slot: cursor, scope) { total += grant.remaining }
            cursor = grant.next
        }
        return total
    }

    /// Takes `amount` from the account's grants in burn order: grants scoped to the charge
    /// first, then the rest in static order. With `holding`, credits move to the grants'
    /// held amounts and the parts are returned; otherwise they are consumed.
    /// Precondition: `amount <= spendable(slot, scope:, at:)`.
    @discardableResult
    mutating func burn(_ amount: Int64, from slot: UInt32, scope: ChargeScope, at now: Int64, holding: Bool) -> [HoldPart] {
        var parts: [HoldPart] = []
        var left = amount
        var depleted = false
        let scopedFirst = !scope.isUnscoped && accounts[slot].flags.contains(.scopedGrants)
        for pass in 0 ..< (scopedFirst ? 2 : 1) where left > 0 {
            var cursor = accounts[slot].firstGrant
            while cursor != none, left > 0 {
                let grant = grants[cursor]
                let eligible = grant.isActive(at: now) && grant.remaining > 0 && covers(grant, slot: cursor, scope)
                    && (!scopedFirst || grant.isScoped == (pass == 0))
                if eligible {
                    let taken = min(left, grant.remaining)
                    left -= taken
                    var updated = grant
                    updated.remaining -= taken
                    if holding {
                        updated.held += taken
                        parts.append(HoldPart(grant: cursor, amount: taken))
                    } else {
                        depleted = depleted || updated.remaining == 0
                    }
                    grants[cursor] = updated
                    draft.movements.append(GrantMovement(grant: grant.number, amount: Millicredits(taken),
                                                   change: holding ? .held : .consumed))
                }
                cursor = grant.next
            }
        }
        precondition(left == 0, "burn took more than was spendable")
        if depleted { retireDepleted(slot, at: now) }
        return parts
    }

    /// Gives `amount` back to the account's unscoped active grants in reverse burn order,
    /// each up to what it has consumed. Returns what could not be placed.
    mutating func refill(_ amount: Int64, into slot: UInt32, at now: Int64) -> Int64 {
        var candidates: [UInt32] = []
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            let grant = grants[cursor]
            if grant.isActive(at: now) && !grant.isScoped && grant.consumed > 0 { candidates.append(cursor) }
            cursor = grant.next
        }
        var left = amount
        for candidate in candidates.reversed() where left > 0 {
            let given = min(left, grants[candidate].consumed)
            grants[candidate].remaining += given
            left -= given
            draft.movements.append(GrantMovement(grant: grants[candidate].number, amount: Millicredits(given), change: .refilled))
        }
        return left
    }

    /// Keeps the tenant's grant hint equal to its first account's first grant.
    mutating func refreshGrantHint(_ tenant: TenantID, _ account: UInt32, _ firstGrant: UInt32) {
        if let entry = tenants[tenant], entry.firstAccount == account, entry.grantHint != firstGrant {
            tenants.setGrantHint(of: tenant, to: firstGrant)
        }
    }

    /// Unlinks grants that can never be spent or refilled again: nothing remaining or held,
    /// and either never expiring (a refund would open a new grant) or already expired.
    mutating func retireDepleted(_ slot: UInt32, at now: Int64) {
        var previous = none
        var cursor = accounts[slot].firstGrant
        var scoped = false
        while cursor != none {
            let grant = grants[cursor]
            let next = grant.next
            if grant.remaining == 0 && grant.held == 0
                && (grant.expiresAt == Int64.max || grant.expiresAt <= now || grant.state != .live) {
                if previous == none {
                    accounts[slot].firstGrant = next
                    refreshGrantHint(accounts[slot].tenant, slot, next)
                } else {
                    grants[previous].next = next
                }
                accounts[slot].liveGrants -= 1
                freeGrantSlots.append(cursor)
                // A refund of a charge it paid may still relink it (with its kind, expiry and cost basis).
                retiredGrants.insert(grant, scope: grant.isScoped ? grantScopes[cursor] : nil, at: now)
                if grant.isScoped { grantScopes.removeValue(forKey: cursor) }
            } else {
                scoped = scoped || grant.isScoped
                previous = cursor
            }
            cursor = next
        }
        if !scoped { accounts[slot].flags.remove(.scopedGrants) }
    }
}
