/// A stable 64-bit digest of the whole state, equal for two ledgers that applied the same
/// commands at the same timestamps. Tests compare digests after replay; recovery will too.
extension Ledger {
    @_spi(Plumbing) public func stateDigest() -> UInt64 { stateDigest(includingSpendVelocities: true) }

    /// The digest without the anomaly guard's spend velocities: what a state written before
    /// the guard existed recorded (the golden fixtures), since the debits a recovery replays
    /// now build velocities that state never had.
    package func stateDigest(includingSpendVelocities: Bool) -> UInt64 {
        var hasher = StableHasher()
        hasher.combine(nextSequence)
        hasher.combine(lastTime.millisSinceEpoch)
        hasher.combine(UInt64(configuration.idempotencyKeysMax))
        hasher.combine(configuration.idempotencyWindowMillis)
        for (id, slot) in tenants.sorted() {
            hasher.combine(id.rawValue); hasher.combine(slot.firstAccount); hasher.combine(slot.organisation)
            hasher.combine(slot.grantHint)
        }
        accounts.forEach { _, account in
            hasher.combine(account.tenant.rawValue); hasher.combine(account.number); hasher.combine(account.nextInTenant)
            hasher.combine(account.firstGrant); hasher.combine(account.link); hasher.combine(account.flags.intersection(.stored).rawValue)
            hasher.combine(account.liveGrants); hasher.combine(account.granted); hasher.combine(account.consumed)
            hasher.combine(account.expired); hasher.combine(account.debt)
        }
        var allGrantsLive = true
        grants.forEach { _, grant in
            allGrantsLive = allGrantsLive && grant.state == .live
            hasher.combine(grant.number); hasher.combine(grant.original); hasher.combine(grant.remaining)
            hasher.combine(grant.held); hasher.combine(grant.effectiveAt)
            hasher.combine(grant.expiresAt); hasher.combine(grant.costBasis); hasher.combine(grant.isScoped)
            hasher.combine(grant.account); hasher.combine(grant.next)
            hasher.combine(grant.priority); hasher.combine(grant.kind.rawValue)
        }
        for (slot, scope) in grantScopes.sorted(by: { $0.key < $1.key }) { hasher.combine(slot); scope.feed(into: &hasher) }
        hasher.combine(UInt64(freeGrantSlots.count))
        for slot in freeGrantSlots { hasher.combine(slot) }
        for (number, hold) in holds.sorted(by: { $0.key < $1.key }) {
            hasher.combine(number); hasher.combine(hold.account); hasher.combine(hold.principal)
            hasher.combine(hold.amount); hasher.combine(hold.expiresAt); hold.scope.feed(into: &hasher)
            for part in hold.parts { hasher.combine(part.grant); hasher.combine(part.amount) }
        }
        for number in closedHolds.inOrder { hasher.combine(number) }
        for organisation in organisations {
            hasher.combine(organisation.tenant.rawValue); hasher.combine(organisation.pool)
            hasher.combine(organisation.periodsStarted)
            for department in organisation.departments {
                hasher.combine(department.id.rawValue); hasher.combine(department.costCentre)
                department.period.feed(into: &hasher)
            }
            for member in organisation.members {
                hasher.combine(member.account); hasher.combine(UInt64(member.department)); member.period.feed(into: &hasher)
            }
        }
        for (slot, line) in creditLines.sorted(by: { $0.key < $1.key }) {
            hasher.combine(slot); hasher.combine(line.overdraft); hasher.combine(line.overrun)
        }
        for record in idempotency.records {
            let remembered = record.remembered
            hasher.combine(record.key.high); hasher.combine(record.key.low); hasher.combine(record.millis)
            hasher.combine(remembered.fingerprint); hasher.combine(remembered.principal); hasher.combine(remembered.refundable)
            hasher.combine(remembered.outcome.code); hasher.combine(remembered.outcome.w0)
            hasher.combine(remembered.outcome.w1); hasher.combine(remembered.outcome.w2)
            hasher.combine(remembered.source)
        }
        // Refund provenance (state version 4): the lists of charges from several grants, and
        // the retired grants a refund may relink.
        let lists = idempotency.sourceLists
        hasher.combine(UInt64(lists.previous.count)); hasher.combine(UInt64(lists.current.count))
        for (position, list) in lists.previous + lists.current {
            hasher.combine(position)
            for source in list { hasher.combine(source.grant); hasher.combine(source.amount) }
        }
        for retired in retiredGrants.inOrder {
            let record = retired.record
            hasher.combine(retired.retiredAtMillis); hasher.combine(record.account); hasher.combine(record.number)
            hasher.combine(record.original); hasher.combine(record.effectiveAt); hasher.combine(record.expiresAt)
            hasher.combine(record.costBasis); hasher.combine(record.priority); hasher.combine(record.kind.rawValue)
            hasher.combine(record.state.rawValue)
            if let scope = retired.scope { scope.feed(into: &hasher) }
        }
        hasher.combine(totals.granted); hasher.combine(totals.consumed); hasher.combine(totals.expired); hasher.combine(totals.debt)
        // Keys and policies only when any is set, so a state without them keeps the digest
        // it had before they existed (the golden fixtures record digests).
        if !providerKeys.isEmpty || organisations.contains(where: { $0.keyPolicy != .itControlled }) {
            hasher.combine(UInt8(0x4B))
            for organisation in organisations { hasher.combine(organisation.keyPolicy.rawValue) }
            for (owner, registration) in providerKeys.sorted(by: { Self.keyOrder($0.key, $1.key) }) {
                hasher.combine(owner.slot); hasher.combine(owner.provider); hasher.combine(registration.fingerprint)
                hasher.combine(UInt64(registration.sealed.count))
                for byte in registration.sealed { hasher.combine(byte) }
            }
        }
        // Grant states and schedules likewise only when a grant is not live or a schedule
        // exists: every state before them had only live grants and no schedules. The states
        // of every slot (free ones too, as their other fields), by slot; the plan by its
        // text, never by its process-local number.
        if !allGrantsLive || schedules.count > 0 {
            hasher.combine(UInt8(0x53))
            grants.forEach { slot, grant in
                if grant.state != .live { hasher.combine(slot); hasher.combine(grant.state.rawValue) }
            }
            hasher.combine(UInt64(schedules.count))
            schedules.forEach { _, schedule in schedule.feed(into: &hasher) }
        }
        // Roles only when some client holds one: every state before them had none.
        if !roles.isEmpty {
            hasher.combine(UInt8(0x52))
            for grant in roles.sorted { hasher.combine(grant.client.rawValue); grant.role.feed(into: &hasher) }
        }
        feedRateLimits(into: &hasher)
        feedAnomalyState(into: &hasher, includingVelocities: includingSpendVelocities)
        return hasher.finish()
    }
}

extension AccountSchedule {
    /// Every field (optional enums as their raw value or 0, as in the state encoding).
    func feed(into hasher: inout StableHasher) {
        hasher.combine(account); hasher.combine(status?.rawValue ?? 0); hasher.combine(lapseReason?.rawValue ?? 0)
        hasher.combine(rollover); hasher.combine(rolloverMonths); hasher.combine(cycle); hasher.combine(plan.text)
        hasher.combine(allocation); hasher.combine(priceCents); hasher.combine(anchor)
        hasher.combine(cycleAllocation); hasher.combine(cyclePriceCents)
        hasher.combine(refill != nil)
        if let refill {
            hasher.combine(refill.threshold); hasher.combine(refill.refillCredits); hasher.combine(refill.cooldownMillis)
            hasher.combine(refill.refillsPerMonthMax); hasher.combine(refill.attemptsMax); hasher.combine(refill.enabled)
        }
        hasher.combine(inFlight); hasher.combine(attempts); hasher.combine(alerted); hasher.combine(refillsThisMonth)
        hasher.combine(refillMonth); hasher.combine(nextAttemptAt); hasher.combine(lastRefillAt)
        hasher.combine(disabledAfter?.rawValue ?? 0)
    }
}

extension PeriodCap {
    func feed(into hasher: inout StableHasher) {
        hasher.combine(cap != nil); hasher.combine(cap ?? 0)
        hasher.combine(spent); hasher.combine(held); hasher.combine(overrun)
    }
}
