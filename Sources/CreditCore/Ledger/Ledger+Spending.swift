/// Spending: debit, reserve, settle, release, refund and adjust.
extension Ledger {
    @inline(__always)
    func overdraft(of slot: UInt32) -> Int64 { creditLines[slot]?.overdraft ?? 0 }

    /// Records `amount` of new debt on an account; the part beyond its overdraft is an overrun.
    mutating func addDebt(_ amount: Int64, to slot: UInt32) {
        guard amount > 0 else { return }
        accounts[slot].debt += amount
        totals.debt += amount
        var line = creditLines[slot] ?? CreditLine(overdraft: 0, overrun: 0)
        line.overrun = max(line.overrun, accounts[slot].debt - line.overdraft)
        creditLines[slot] = line
    }

    /// Removes `amount` of an account's debt (new credits or a refund repay it); the settle
    /// overrun can never exceed what debt is left.
    mutating func repayDebt(_ amount: Int64, of slot: UInt32) {
        guard amount > 0 else { return }
        accounts[slot].debt -= amount
        totals.debt -= amount
        if var line = creditLines[slot] {
            line.overrun = min(line.overrun, accounts[slot].debt)
            creditLines[slot] = line
        }
    }

    @inline(__always)
    func checkConsumption(_ slot: UInt32, _ amount: Int64) throws(LedgerError) {
        if accounts[slot].consumed.addingReportingOverflow(amount).overflow
            || totals.consumed.addingReportingOverflow(amount).overflow
            || accounts[slot].debt.addingReportingOverflow(amount).overflow {
            throw .amountOverflow
        }
    }

    mutating func debit(_ id: AccountID, _ amount: Millicredits, _ scope: ChargeScope, at now: Int64) throws(LedgerError) {
        try checkAmount(amount)
        let located = try locate(id)
        if !guards.limitsApply {
            try debit(located, id, amount, scope, at: now)
            return
        }
        let undo = try takeRateIfLimited(located, amount: amount.rawValue, at: now)
        do {
            try debit(located, id, amount, scope, at: now)
        } catch {
            if let undo { undoRate(undo) }
            throw error
        }
    }

    /// A debit of an account already located, its amount checked.
    @inline(__always)
    private mutating func debit(_ located: Located, _ id: AccountID, _ amount: Millicredits, _ scope: ChargeScope,
                                at now: Int64) throws(LedgerError) {
        draft.note(located)
        let value = amount.rawValue
        try checkMaySpend(located, id, value)
        let funding = located.funding
        let spendable = spendable(funding, scope: scope, at: now)
        let debt = accounts[funding].debt
        guard spendable - debt + overdraft(of: funding) >= value else {
            throw .insufficientCredits(available: Millicredits(spendable - debt), requested: amount)
        }
        try checkConsumption(funding, value)

        let fromGrants = min(value, spendable)
        burn(fromGrants, from: funding, scope: scope, at: now, holding: false)
        addDebt(value - fromGrants, to: funding)
        accounts[funding].consumed += value
        totals.consumed += value
        if located.member != nil {
            accounts[located.slot].consumed += value
            updateCaps(located) { $0.spent += value }
        } else if scope.isUnscoped {
            draft.spendableAfter = spendable - fromGrants
        }
        draft.amount = value
        draft.refundable = value
    }

    /// A charge is a debit of `usage.charged` that also records the usage. A charge of 0
    /// (an own key paid the provider) moves no credits but is checked like a debit (the
    /// account exists and is not frozen) and recorded, so usage by key source and the
    /// credits saved can be read from the log.
    mutating func charge(_ id: AccountID, _ usage: UsageCharge, _ scope: ChargeScope, at now: Int64) throws(LedgerError) {
        try checkUsage(usage)
        draft.usage = usage
        if usage.charged > .zero { try checkAmount(usage.charged) }
        let located = try locate(id)
        let undo = try takeRateIfLimited(located, amount: usage.charged.rawValue, at: now)
        do {
            try chargeDrafted(located, id, usage.charged, usage.keySource, provider: usage.provider, scope, at: now)
        } catch {
            if let undo { undoRate(undo) }
            throw error
        }
    }

    /// The charge recorded in `draft.usage` (checked, and its amount), of `amount` paid by
    /// `source`, to an account already located. The usage's fields come as arguments:
    /// reading them from the draft here would make the compiler copy the whole ledger for
    /// the calls below.
    private mutating func chargeDrafted(_ located: Located, _ id: AccountID, _ amount: Millicredits, _ source: KeySource,
                                        provider: String, _ scope: ChargeScope, at now: Int64) throws(LedgerError) {
        if amount > .zero {
            try debit(located, id, amount, scope, at: now)
            return
        }
        draft.note(located)
        try checkMaySpend(located, id, 0)
        // The host says an own key paid the provider: that key must be registered and
        // allowed by the key policy now.
        guard keyUsable(source, by: located, provider: provider) else {
            throw .notAllowed(id, .keyNotUsable)
        }
    }

    /// A routed charge (`Action.chargeRouted`): the first candidate whose provider a key of
    /// the account may pay for now (the key the policy prefers, as `keyForCall` answers),
    /// else the system-keys choice; then a charge of it. The receipt names the choice.
    mutating func chargeRouted(_ id: AccountID, _ routed: RoutedCharge, _ scope: ChargeScope, at now: Int64) throws(LedgerError) {
        let count = routed.count
        guard count > 0, Int(routed.numberedFrom) + count <= LedgerLimits.routedCandidatesMax,
              routed.systemChoice.map({ Int($0) < count }) ?? true else {
            throw .invalidInput(.routedCandidates)
        }
        for index in 0 ..< count {
            guard routed[candidate: index].keySource == .system else { throw .invalidInput(.routedCandidates) }
            try checkUsage(routed[candidate: index])
        }
        let located = try locate(id)
        // The most it may spend: the system-keys choice's price (a key-paid call spends 0).
        let most = routed.systemChoice.map { routed[candidate: Int($0)].listPrice.rawValue } ?? 0
        let undo = try takeRateIfLimited(located, amount: most, at: now)
        do {
            try chargeRoutedLocated(located, id, routed, scope, at: now)
        } catch {
            if let undo { undoRate(undo) }
            throw error
        }
        // A key paid (or a cheaper choice): the buckets take what was spent, not the most.
        if let undo, draft.amount != most {
            undoRate(undo)
            _ = try? takeRate(located, amount: draft.amount, at: now)
        }
    }

    /// `chargeRouted` of an account already located, its rate limits passed.
    private mutating func chargeRoutedLocated(_ located: Located, _ id: AccountID, _ routed: RoutedCharge, _ scope: ChargeScope,
                                              at now: Int64) throws(LedgerError) {
        let count = routed.count
        var chosen = routed.systemChoice.map(Int.init)
        var source = KeySource.system
        if mayHaveKeys(located) {
            for index in 0 ..< count {
                let preferred = preferredKey(for: located, provider: routed[candidate: index].provider).source
                if preferred != .system {
                    chosen = index
                    source = preferred
                    break
                }
            }
        }
        guard let chosen else {
            draft.note(located)
            throw .notAllowed(id, .noRouteWithinBudget)
        }
        // The entry keeps the chosen candidate, with its key source: copied once, into the draft.
        draft.usage = routed[candidate: chosen]
        draft.usage!.keySource = source
        let amount = source == .system ? routed[candidate: chosen].listPrice : .zero
        if amount > .zero { try checkAmount(amount) }
        try chargeDrafted(located, id, amount, source, provider: routed[candidate: chosen].provider, scope, at: now)
        draft.created = .routed(candidate: Int(routed.numberedFrom) + chosen, keySource: source)
    }

    @inline(__always)
    func checkUsage(_ usage: UsageCharge) throws(LedgerError) {
        guard !usage.modelName.isEmpty, !usage.providerName.isEmpty else { throw .invalidInput(.usageNamesModelAndProvider) }
        if usage.namesUnavailable { throw .limitReached(.namesPerProcess) }
        if usage.modelName.utf8Count > LedgerLimits.textBytesMax || usage.providerName.utf8Count > LedgerLimits.textBytesMax {
            throw .invalidInput(.textTooLong)
        }
        guard usage.providerCostNanoUSD >= 0, usage.listPrice >= .zero else { throw .invalidInput(.usageNotNegative) }
    }

    /// A settle whose actual cost is an AI call's usage (see `charge` for own keys).
    mutating func settleCharge(_ id: HoldID, _ usage: UsageCharge, at now: Int64) throws(LedgerError) {
        try checkUsage(usage)
        if usage.keySource != .system {
            let (_, located) = try openHold(id)
            guard keyUsable(usage.keySource, by: located, provider: usage.provider) else {
                throw .notAllowed(located.id, .keyNotUsable)
            }
        }
        draft.usage = usage
        try settle(id, actual: usage.charged, at: now)
    }

    mutating func reserve(_ id: AccountID, _ amount: Millicredits, timeoutMillis: Int64, _ scope: ChargeScope,
                          at now: Int64, sequence: UInt64) throws(LedgerError) {
        try checkAmount(amount)
        guard timeoutMillis > 0 && timeoutMillis <= LedgerLimits.holdTimeoutMillisMax else {
            throw .invalidTimeout(millis: timeoutMillis)
        }
        let located = try locate(id)
        let undo = try takeRateIfLimited(located, amount: amount.rawValue, at: now)
        do {
            try reserveLocated(located, id, amount, timeoutMillis: timeoutMillis, scope, at: now, sequence: sequence)
        } catch {
            if let undo { undoRate(undo) }
            throw error
        }
    }

    private mutating func reserveLocated(_ located: Located, _ id: AccountID, _ amount: Millicredits, timeoutMillis: Int64,
                                         _ scope: ChargeScope, at now: Int64, sequence: UInt64) throws(LedgerError) {
        draft.note(located)
        let value = amount.rawValue
        try checkMaySpend(located, id, value)
        let funding = located.funding
        let available = spendable(funding, scope: scope, at: now) - accounts[funding].debt
        guard available >= value else { throw .insufficientCredits(available: Millicredits(available), requested: amount) }
        if holds.count >= LedgerLimits.openHoldsPerShardMax { throw .limitReached(.openHoldsPerShard) }

        let parts = burn(value, from: funding, scope: scope, at: now, holding: true)
        holds[sequence] = HoldRecord(account: funding, principal: located.slot, amount: value,
                                     expiresAt: now + timeoutMillis, scope: scope, parts: parts)
        updateCaps(located) { $0.held += value }
        draft.amount = value
        draft.created = .hold
    }

    /// Finds an open hold and its principal.
    func openHold(_ id: HoldID) throws(LedgerError) -> (HoldRecord, Located) {
        guard let hold = holds[id.number], accounts[hold.principal].tenant == id.tenant else {
            if closedHolds.contains(id.number) { throw .holdNotOpen(id) }
            throw .unknownHold(id)
        }
        let principal = accounts[hold.principal]
        let located = try locate(AccountID(tenant: principal.tenant, number: principal.number))
        return (hold, located)
    }

    mutating func closeHold(_ number: UInt64) {
        holds.removeValue(forKey: number)
        closedHolds.insert(number)
    }

    /// Settles a hold at its actual cost. The call has happened, so settling is allowed on a
    /// frozen account and past the hold's time-out, and a cost above the reserve is charged
    /// from the balance and, where the balance cannot cover it, recorded as debt.
    mutating func settle(_ id: HoldID, actual: Millicredits, at now: Int64) throws(LedgerError) {
        let (hold, located) = try openHold(id)
        draft.note(located)
        guard actual.rawValue >= 0 && actual.rawValue <= LedgerLimits.amountMax else { throw .invalidAmount(actual) }
        let value = actual.rawValue
        try checkConsumption(hold.account, value)

        var toConsume = min(value, hold.amount)
        for part in hold.parts {
            let consumed = min(part.amount, toConsume)
            toConsume -= consumed
            let number = grants[part.grant].number
            var grant = grants[part.grant]
            grant.held -= part.amount
            grant.remaining += part.amount - consumed
            grants[part.grant] = grant
            if part.amount > consumed && grant.expiresAt <= now { returnedToExpired(part.grant, part.amount - consumed, at: now) }
            if consumed > 0 { draft.movements.append(GrantMovement(grant: number, amount: Millicredits(consumed), change: .consumed)) }
            if part.amount > consumed {
                draft.movements.append(GrantMovement(grant: number, amount: Millicredits(part.amount - consumed), change: .unheld))
            }
        }
        let excess = value - hold.amount
        if excess > 0 {
            let fromGrants = min(excess, spendable(hold.account, scope: hold.scope, at: now))
            burn(fromGrants, from: hold.account, scope: hold.scope, at: now, holding: false)
            addDebt(excess - fromGrants, to: hold.account)
        }
        retireDepleted(hold.account, at: now)
        accounts[hold.account].consumed += value
        totals.consumed += value
        if located.member != nil { accounts[located.slot].consumed += value }
        updateCaps(located) { $0.settle(reserved: hold.amount, actual: value) }
        closeHold(id.number)
        draft.amount = value
        draft.refundable = value
    }

    mutating func timeOutHold(_ id: HoldID, at now: Int64) throws(LedgerError) {
        let (hold, located) = try openHold(id)
        draft.note(located)
        guard hold.expiresAt <= now else { throw .holdNotDue(id, expiresAt: Timestamp(millisSinceEpoch: hold.expiresAt)) }
        try release(id, at: now)
    }

    mutating func release(_ id: HoldID, at now: Int64) throws(LedgerError) {
        let (hold, located) = try openHold(id)
        draft.note(located)
        for part in hold.parts {
            var grant = grants[part.grant]
            grant.held -= part.amount
            grant.remaining += part.amount
            grants[part.grant] = grant
            draft.movements.append(GrantMovement(grant: grants[part.grant].number, amount: Millicredits(part.amount),
                                                 change: .unheld))
            if grant.expiresAt <= now { returnedToExpired(part.grant, part.amount, at: now) }
        }
        retireDepleted(hold.account, at: now)
        updateCaps(located) { $0.held -= hold.amount }
        closeHold(id.number)
        draft.amount = hold.amount
    }

    /// Gives back part or all of an earlier charge (debit or settle) of this account by
    /// reversing the charge's own movements, last taken first: the debt it ran into (as far
    /// as the account still owes it), then each grant it took from, to that grant with its
    /// expiry and cost basis (docs/semantics.md, "Refund"). Checked whole, then applied.
    /// A charge remembered before charges kept their sources is refunded as before: debt
    /// first, then the active grants in reverse burn order.
    mutating func refund(_ id: AccountID, debit key: IdempotencyKey, _ amount: Millicredits, at now: Int64,
                         sequence: UInt64) throws(LedgerError) {
        try checkAmount(amount)
        let located = try locate(id)
        draft.note(located)
        guard let original = idempotency.lookup(key, at: now), original.principal == located.slot else {
            throw .unknownDebit(key)
        }
        let value = amount.rawValue
        guard value <= original.refundable else {
            throw .refundExceedsDebit(refundable: Millicredits(original.refundable), requested: amount)
        }
        let funding = located.funding
        if let plan = refundPlan(original, key, value, funding, at: now) {
            try checkRefundPlan(plan, funding)
            applyRefundPlan(plan, funding, at: now, sequence: sequence)
        } else {
            try refundInBurnOrder(value, funding, at: now, sequence: sequence)
        }
        if let member = located.member {
            accounts[located.slot].consumed -= value
            // The refunded charge may belong to an earlier period: give back at most what the
            // member spent this period, and the same to its department so the sums agree.
            let spent = organisations[Int(located.organisation)].members[member].period.spent
            let headroomBack = min(value, spent)
            updateCaps(located) { $0.spent -= headroomBack }
        }
        idempotency.updateRefundable(key, at: now, to: original.refundable - value)
        draft.amount = value
    }

    /// Where a refund's credits go, in order. `relinks` are retired grants that come back.
    struct RefundPlan {
        enum Target {
            /// Repays the account's debt.
            case debt
            /// Back into a grant still in the account's list (live, past its expiry, in grace
            /// or forfeited: it then goes the way of the grant's other credits).
            case grant(slot: UInt32)
            /// Back into a grant that retired since: it is relinked as it was.
            case relink(number: UInt64)
            /// A grant whose memory is gone, or debt that other credits repaid since: a new
            /// refund grant, as before charges kept their sources.
            case newGrant
        }
        var placements: [(target: Target, amount: Int64)] = []
        var relinks: [RetiredGrants.Retired] = []
        var newGrant: Int64 = 0
    }

    /// The refund of `value` of a charge whose sources are known (nil when they are not):
    /// the charge's movements reversed, skipping what earlier refunds gave back.
    func refundPlan(_ original: Remembered, _ key: IdempotencyKey, _ value: Int64, _ funding: UInt32,
                    at now: Int64) -> RefundPlan? {
        let charged = Int64(bitPattern: original.outcome.w1)
        let sources: [RefundSource]
        switch original.source {
        case RefundSource.unknown: return nil
        case RefundSource.debtOnly: sources = []
        case RefundSource.several:
            guard let list = idempotency.sourceList(of: key, at: now) else { preconditionFailure("a charge from several grants without its list") }
            sources = list
        default: sources = [RefundSource(grant: original.source, amount: charged)]
        }
        let fromGrants = sources.reduce(Int64(0)) { $0 + $1.amount }
        assert(fromGrants <= charged && original.refundable <= charged)
        var plan = RefundPlan()
        var skip = charged - original.refundable
        var left = value
        var debt = accounts[funding].debt
        // Last taken, first returned: the debt part, then the grants from the last.
        let portions = [RefundSource(grant: 0, amount: charged - fromGrants)] + sources.reversed()
        for (index, portion) in portions.enumerated() where left > 0 {
            let skipped = min(skip, portion.amount)
            skip -= skipped
            let share = min(portion.amount - skipped, left)
            guard share > 0 else { continue }
            left -= share
            if index == 0 {
                let repaid = min(share, debt)
                debt -= repaid
                if repaid > 0 { plan.placements.append((.debt, repaid)) }
                if share > repaid { plan.newGrant += share - repaid }
            } else if let slot = grantSlot(numbered: portion.grant, of: funding) {
                plan.placements.append((.grant(slot: slot), share))
            } else if let retired = retiredGrants.retired(portion.grant), retired.record.account == funding {
                if !plan.relinks.contains(where: { $0.record.number == portion.grant }) { plan.relinks.append(retired) }
                plan.placements.append((.relink(number: portion.grant), share))
            } else {
                plan.newGrant += share
            }
        }
        assert(left == 0, "a refund within the refundable has a place for every credit")
        if plan.newGrant > 0 { plan.placements.append((.newGrant, plan.newGrant)) }
        return plan
    }

    /// The slot of the account's listed grant numbered `number`.
    func grantSlot(numbered number: UInt64, of slot: UInt32) -> UInt32? {
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            if grants[cursor].number == number { return cursor }
            cursor = grants[cursor].next
        }
        return nil
    }

    /// Everything that could refuse the plan, before anything changes: room for the grants
    /// it relinks or opens, and the totals a new grant adds to.
    func checkRefundPlan(_ plan: RefundPlan, _ funding: UInt32) throws(LedgerError) {
        let added = plan.relinks.count + (plan.newGrant > 0 ? 1 : 0)
        if Int(accounts[funding].liveGrants) + added > LedgerLimits.grantsPerAccountMax { throw .limitReached(.grantsPerAccount) }
        if plan.newGrant > 0 { try checkCanAddGrant(to: funding, plan.newGrant) }
    }

    /// Applies a checked plan: no failure path is left.
    mutating func applyRefundPlan(_ plan: RefundPlan, _ funding: UInt32, at now: Int64, sequence: UInt64) {
        for retired in plan.relinks { relink(retired, at: now) }
        for (target, share) in plan.placements {
            switch target {
            case .debt:
                repayDebt(share, of: funding)
            case .grant(let slot):
                giveBack(share, to: slot, at: now)
            case .relink(let number):
                guard let slot = grantSlot(numbered: number, of: funding) else { preconditionFailure("a relinked grant is listed") }
                giveBack(share, to: slot, at: now)
            case .newGrant:
                continue
            }
            accounts[funding].consumed -= share
            totals.consumed -= share
        }
        // A new refund grant adds to `granted` (as any grant does); the charge stays consumed.
        if plan.newGrant > 0 {
            insertGrant(to: funding, kind: .refund, amount: plan.newGrant, effectiveAt: now, expiresAt: Int64.max,
                        priority: GrantTerms.priorityDefault, costBasis: 0, scope: .unscoped, number: sequence)
        }
        // A relinked grant whose credits were forfeited at once leaves again.
        retireDepleted(funding, at: now)
    }

    /// Returns `share` consumed credits to a listed grant; past its expiry they go its way.
    private mutating func giveBack(_ share: Int64, to slot: UInt32, at now: Int64) {
        assert(share > 0 && share <= grants[slot].consumed, "a grant gets back at most what was taken from it")
        grants[slot].remaining += share
        draft.movements.append(GrantMovement(grant: grants[slot].number, amount: Millicredits(share), change: .refilled))
        if grants[slot].state != .live || grants[slot].expiresAt <= now { returnedToExpired(slot, share, at: now) }
    }

    /// Links a retired grant back into its account as it was, empty; a grant in grace whose
    /// grace has ended is due for forfeiture.
    private mutating func relink(_ retired: RetiredGrants.Retired, at now: Int64) {
        var record = retired.record
        record.next = none
        let slot = storeGrant(record)
        let account = record.account
        if let scope = retired.scope {
            grantScopes[slot] = scope
            accounts[account].flags.insert(.scopedGrants)
        }
        link(slot, into: account)
        accounts[account].liveGrants += 1
        retiredGrants.remove(record.number)
        if record.state == .grace { noteDue(.graceEnd, account, at: record.graceEndsAt) }
    }

    /// Before refunds kept their sources: debt first, then the account's active unscoped
    /// grants in reverse burn order (each up to what it consumed), the rest as a new refund grant.
    private mutating func refundInBurnOrder(_ value: Int64, _ funding: UInt32, at now: Int64, sequence: UInt64) throws(LedgerError) {
        let repaid = min(value, accounts[funding].debt)
        let rest = value - repaid
        let placeable = placeableRefill(funding, at: now)
        if rest > placeable { try checkCanAddGrant(to: funding, rest - placeable) }

        repayDebt(repaid, of: funding)
        accounts[funding].consumed -= repaid
        totals.consumed -= repaid
        let unplaced = refill(rest, into: funding, at: now)
        accounts[funding].consumed -= rest - unplaced
        totals.consumed -= rest - unplaced
        if unplaced > 0 {
            insertGrant(to: funding, kind: .refund, amount: unplaced, effectiveAt: now, expiresAt: Int64.max,
                        priority: GrantTerms.priorityDefault, costBasis: 0, scope: .unscoped, number: sequence)
        }
    }

    /// How much `refill` could place into the account's grants.
    func placeableRefill(_ slot: UInt32, at now: Int64) -> Int64 {
        var total: Int64 = 0
        var cursor = accounts[slot].firstGrant
        while cursor != none {
            let grant = grants[cursor]
            if grant.isActive(at: now) && !grant.isScoped { total += grant.consumed }
            cursor = grant.next
        }
        return total
    }

    mutating func adjust(_ id: AccountID, _ amount: Millicredits, reason: String, at now: Int64, sequence: UInt64) throws(LedgerError) {
        guard !reason.isEmpty else { throw .invalidInput(.reasonRequired) }
        try checkText(reason)
        guard amount.rawValue != 0, amount.rawValue.magnitude <= UInt64(LedgerLimits.amountMax) else {
            throw .invalidAmount(amount)
        }
        let located = try locate(id)
        draft.note(located)
        guard accounts[located.slot].holdsGrants else { throw .notAllowed(id, .membersHoldNoGrants) }
        draft.reason = reason
        if amount.rawValue > 0 {
            try addGrant(to: located.slot, kind: .adjustment, amount: amount.rawValue, effectiveAt: now,
                         expiresAt: Int64.max, priority: GrantTerms.priorityDefault, costBasis: 0, scope: .unscoped,
                         number: sequence)
            return
        }
        let value = -amount.rawValue
        let available = spendable(located.slot, scope: .unscoped, at: now) - accounts[located.slot].debt
        guard available >= value else { throw .insufficientCredits(available: Millicredits(available), requested: Millicredits(value)) }
        try checkConsumption(located.slot, value)
        burn(value, from: located.slot, scope: .unscoped, at: now, holding: false)
        accounts[located.slot].consumed += value
        totals.consumed += value
        draft.amount = amount.rawValue
    }
}
