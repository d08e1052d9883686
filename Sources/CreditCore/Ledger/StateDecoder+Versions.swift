// The state decoder: its entry point and the sections later versions added (2: keys and
// policies; 3: schedules; 4: cycle levels and refund provenance).

extension StateDecoder {
    // MARK: Sections

    mutating func decode() throws(BinaryDecodingError) {
        try decodeHeader()
        let (tenantCount, accountCount, grantCount, organisationCount) = try decodeCounts()
        try decodeTenants(tenantCount, accountCount: accountCount, grantCount: grantCount,
                          organisationCount: organisationCount)
        try decodeAccounts(accountCount, grantCount: grantCount)
        try decodeGrants(grantCount, accountCount: accountCount)
        try decodeFreeGrantSlots(grantCount)
        try decodeOrganisations(organisationCount, accountCount: accountCount)
        try checkTenancy()
        try checkGrantChains()
        try decodeGrantScopes()
        try decodeCreditLines()
        try decodeHolds()
        try decodeClosedHolds()
        try decodeIdempotency()
        if version >= 2 { try decodeKeys() }
        if version >= 3 { try decodeSchedules() }
        if version >= 4 { try decodeCycleLevels() } else { levelSchedulesAtTerms() }
        if version >= 4 {
            try decodeRefundSources()
            try decodeRetiredGrants()
        }
        if version >= 5 {
            try decodeRoles()
            try decodeRateLimits()
            try decodeAnomalyState()
        }
    }

    /// Version 5's roles: u32 count, then each grant (client u64, role) in strictly
    /// ascending order (client, then role), so one state has one encoding. Whether each
    /// role's tenant, department or account exists is the invariant checker's.
    mutating func decodeRoles() throws(BinaryDecodingError) {
        // At least 9 bytes per grant: the client and the role's kind byte.
        let grantCount = try count(max: Int(UInt32.max), bytesEach: 9, "role count")
        var previous: RoleGrant?
        for _ in 0 ..< grantCount {
            let at = reader.offset
            let grant = RoleGrant(client: ClientID(try reader.read(UInt64.self)), role: try Role(decoding: &reader))
            if let previous, (previous.client, previous.role.orderKey) >= (grant.client, grant.role.orderKey) {
                throw invalid(at, "role grants out of order")
            }
            previous = grant
            roleTable.insert(grant.client, grant.role)
            // The metering memo (a role naming no tenant is refused by the invariants after).
            if case .meteringService(let tenant) = grant.role, tenants[tenant] != nil {
                Ledger.noteMeteringClient(grant.client, of: tenant, tenants: &tenants, guards: &guards)
            }
        }
    }

    /// Version 4's refund sources: one per remembered key, then the lists of the charges
    /// that took from several grants. A known source belongs to a charge (a record with a
    /// principal); a list to a `several` source, of 1 to `RefundSource.listCountMax`
    /// positive amounts adding up to at most the charge.
    mutating func decodeRefundSources() throws(BinaryDecodingError) {
        previousKeys = try decodeSources(of: previousKeys)
        currentKeys = try decodeSources(of: currentKeys)
        previousSourceLists = try decodeSourceLists(previousKeys, "previous")
        currentSourceLists = try decodeSourceLists(currentKeys, "current")
    }

    mutating func decodeSources(of records: [IdempotencyTable.Record]) throws(BinaryDecodingError) -> [IdempotencyTable.Record] {
        var records = records
        for index in records.indices {
            let at = reader.offset
            let source = try reader.read(UInt64.self)
            guard source == RefundSource.unknown || records[index].remembered.principal != none else {
                throw invalid(at, "idempotency key \(records[index].key) refund source \(source) (not a charge)")
            }
            records[index].remembered.source = source
        }
        return records
    }

    mutating func decodeSourceLists(_ records: [IdempotencyTable.Record], _ generation: String) throws(BinaryDecodingError)
        -> [UInt32: [RefundSource]] {
        let expected = records.count { $0.remembered.source == RefundSource.several }
        let countAt = reader.offset
        let count = try self.count(max: records.count, bytesEach: 8 + Ledger.encodedRefundSourceBytes, "\(generation) source lists count")
        guard count == expected else { throw invalid(countAt, "\(generation) source lists count \(count) (\(expected) charges from several grants)") }
        var lists: [UInt32: [RefundSource]] = [:]
        var previousPosition: Int64 = -1
        for _ in 0 ..< count {
            let at = reader.offset
            let position = try index(below: records.count, orNone: false, "\(generation) source list position")
            let record = records[Int(position)]
            guard Int64(position) > previousPosition, record.remembered.source == RefundSource.several else {
                throw invalid(at, "\(generation) source list position \(position) (not ascending, or not a charge from several grants)")
            }
            previousPosition = Int64(position)
            let length = try self.count(max: RefundSource.listCountMax, bytesEach: Ledger.encodedRefundSourceBytes, "\(generation) source list length")
            guard length > 0 else { throw invalid(at + 4, "\(generation) source list \(position) is empty") }
            let charged = Int64(bitPattern: record.remembered.outcome.w1)
            var list: [RefundSource] = []
            var sum: Int64 = 0
            for _ in 0 ..< length {
                let grant = try reader.read(UInt64.self)
                let amount = try self.amount(in: 1 ... LedgerLimits.amountMax, "\(generation) source list \(position) amount")
                sum += amount
                list.append(RefundSource(grant: grant, amount: amount))
            }
            guard sum <= charged else { throw invalid(at, "\(generation) source list \(position) takes \(sum) of a \(charged) charge") }
            lists[position] = list
        }
        return lists
    }

    /// Version 4's retired grants, oldest first: each of an account that holds grants, empty,
    /// with values a listed grant of its state could have, retired no later than the last
    /// command, in order, and not listed in its account.
    mutating func decodeRetiredGrants() throws(BinaryDecodingError) {
        let count = try self.count(max: configuration.idempotencyKeysMax, bytesEach: Ledger.encodedRetiredGrantBytes, "retired grants count")
        var listed: Set<UInt64> = []
        grants.forEach { slot, grant in if grantUse[Int(slot)] == .live { listed.insert(grant.number) } }
        var seen: Set<UInt64> = []
        var newest = Int64.min
        for index in 0 ..< count {
            let at = reader.offset
            let name = "retired grant \(index)"
            let retiredAt = try reader.read(Int64.self)
            guard retiredAt >= newest, retiredAt <= lastTime else { throw invalid(at, "\(name) time \(retiredAt)") }
            newest = retiredAt
            let account = try self.index(below: accounts.count, orNone: false, "\(name) account")
            guard reaches[Int(account)] != .member else { throw invalid(at + 8, "\(name) account \(account) is a member") }
            let numberAt = reader.offset
            let number = try reader.read(UInt64.self)
            guard !listed.contains(number), seen.insert(number).inserted else { throw invalid(numberAt, "\(name) number \(number) (listed, or twice)") }
            let original = try amount(in: 1 ... LedgerLimits.amountMax, "\(name) original")
            let effectiveAt = try reader.read(Int64.self)
            let expiresAtAt = reader.offset
            let expiresAt = try reader.read(Int64.self)
            let costBasis = try reader.read(UInt32.self)
            let priority = try reader.read(UInt8.self)
            let kindAt = reader.offset
            guard let kind = GrantKind(rawValue: try reader.read(UInt8.self)) else { throw invalid(kindAt, "\(name) kind") }
            let stateAt = reader.offset
            guard let state = GrantState(rawValue: try reader.read(UInt8.self)) else { throw invalid(stateAt, "\(name) state") }
            guard state == .live ? effectiveAt < expiresAt : effectiveAt >= expiresAt else {
                throw invalid(expiresAtAt, "\(name) expiry \(expiresAt) for a \(state) grant effective at \(effectiveAt)")
            }
            let scope: ChargeScope? = try reader.readBool("\(name) scope presence") ? try reader.readScope() : nil
            if let scope, scope.isUnscoped { throw invalid(reader.offset - 8, "\(name) scope is empty") }
            let record = GrantRecord(number: number, original: original, remaining: 0, held: 0, effectiveAt: effectiveAt,
                                     expiresAt: expiresAt, costBasis: costBasis, account: account, next: none, priority: priority,
                                     kind: kind, isScoped: scope != nil, state: state)
            retired.append(RetiredGrants.Retired(record: record, scope: scope, retiredAtMillis: retiredAt))
        }
    }

    /// Version 4's cycle levels, one per schedule in slot order: a subscription's level is
    /// at least 0 and at most the limits its terms have; a schedule without a subscription
    /// has level 0.
    mutating func decodeCycleLevels() throws(BinaryDecodingError) {
        for index in 0 ..< schedules.count {
            let at = reader.offset
            let name = "schedule \(index)"
            let allocation = try amount(in: Self.amounts, "\(name) cycle allocation")
            let priceCents = try amount(in: 0 ... SubscriptionTerms.priceCentsMax, "\(name) cycle price")
            var schedule = schedules[UInt32(index)]
            guard schedule.status != nil || (allocation == 0 && priceCents == 0) else {
                throw invalid(at, "\(name) has a cycle level but no subscription")
            }
            schedule.cycleAllocation = allocation
            schedule.cyclePriceCents = priceCents
            schedules[UInt32(index)] = schedule
        }
    }

    /// Before version 4 a cycle had no level of its own: it was paid and granted at the terms.
    mutating func levelSchedulesAtTerms() {
        for index in 0 ..< schedules.count where schedules[UInt32(index)].status != nil {
            schedules[UInt32(index)].levelAtTerms()
        }
    }

    /// Version 2's key policies (one byte per organisation) and provider keys.
    mutating func decodeKeys() throws(BinaryDecodingError) {
        for index in organisations.indices {
            let at = reader.offset
            guard let policy = KeyPolicy(rawValue: try reader.read(UInt8.self)) else {
                throw invalid(at, "organisation \(organisations[index].tenant) key policy")
            }
            organisations[index].keyPolicy = policy
        }
        // At least 17 bytes per key: slot, three lengths, one sealed byte.
        let keyCount = try count(max: accounts.count * LedgerLimits.keysPerAccountMax, bytesEach: 17, "provider key count")
        var previous: KeyOwner?
        for _ in 0 ..< keyCount {
            let at = reader.offset
            let slot = try index(below: accounts.count, orNone: false, "provider key owner")
            let provider = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "provider key provider")
            let fingerprint = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "provider key fingerprint")
            let lengthAt = reader.offset
            let length = Int(try reader.read(UInt32.self))
            guard length >= 1, length <= LedgerLimits.sealedKeyBytesMax else { throw invalid(lengthAt, "sealed key length \(length)") }
            let sealed = Array(try reader.readBytes(length))
            let owner = KeyOwner(slot: slot, provider: provider)
            guard !provider.isEmpty, !fingerprint.isEmpty, previous.map({ Ledger.keyOrder($0, owner) }) ?? true else {
                throw invalid(at, "provider key (empty names, or out of order)")
            }
            previous = owner
            providerKeys[owner] = KeyRegistration(provider: provider, fingerprint: fingerprint, sealed: sealed)
        }
    }

    /// Version 3's schedules, in slot order: each names a grant-holding account that no other
    /// schedule names, which gets it as its `schedule` (and the `watched` flag with
    /// auto-refill terms). Every value is held to what the handlers in Ledger+Schedule.swift
    /// can produce where a later command or view computes with it (calendar months from the
    /// anchor, time since the last refill), so a decoded schedule never traps.
    mutating func decodeSchedules() throws(BinaryDecodingError) {
        let count = try self.count(max: accounts.count, bytesEach: Ledger.encodedScheduleBytesMin, "schedules count")
        for index in 0 ..< count {
            let at = reader.offset
            let name = "schedule \(index)"
            let account = try self.index(below: accounts.count, orNone: false, "\(name) account")
            guard reaches[Int(account)] != .member else {
                throw invalid(at, "\(name) account \(account) is a member (only accounts that hold grants have schedules)")
            }
            guard accounts[account].schedule == none else {
                throw invalid(at, "\(name) account \(account) already has schedule \(accounts[account].schedule)")
            }
            var schedule = AccountSchedule.empty(account: account)
            try decodeSubscription(into: &schedule, name)
            try decodeRefill(into: &schedule, name)
            accounts[account].schedule = schedules.append(schedule)
            if schedule.watched { accounts[account].flags.insert(.watched) }
        }
    }

    /// A schedule's subscription part. Without a subscription it must be `empty`'s: nothing
    /// sets those fields but `subscribe`, and a status never goes back to none.
    mutating func decodeSubscription(into schedule: inout AccountSchedule, _ name: String) throws(BinaryDecodingError) {
        let at = reader.offset
        let status = try optional(SubscriptionStatus.self, "\(name) status")
        let reasonAt = reader.offset
        let lapseReason = try optional(LapseReason.self, "\(name) lapseReason")
        let rollover = try reader.readBool("\(name) rollover")
        let monthsAt = reader.offset
        let rolloverMonths = try reader.read(UInt8.self)
        let cycleAt = reader.offset
        let cycle = try reader.read(UInt32.self)
        let planAt = reader.offset
        let plan = InternedName(try reader.readString(maxBytes: LedgerLimits.textBytesMax, "\(name) plan"))
        guard plan != .unavailable, plan != .overLong else {
            throw invalid(planAt, "\(name) plan (\(plan == .overLong ? "too long" : "this process holds the most names it may"))")
        }
        let allocation = try amount(in: Self.amounts, "\(name) allocation")
        let priceCents = try amount(in: 0 ... SubscriptionTerms.priceCentsMax, "\(name) priceCents")
        let anchorAt = reader.offset
        let anchor = try reader.read(Int64.self)
        guard let status else {
            let empty = AccountSchedule.empty(account: schedule.account)
            guard lapseReason == nil, rollover == empty.rollover, rolloverMonths == empty.rolloverMonths,
                  cycle == empty.cycle, plan == empty.plan, allocation == empty.allocation,
                  priceCents == empty.priceCents, anchor == empty.anchor else {
                throw invalid(at, "\(name) has subscription terms but no subscription")
            }
            return
        }
        // Only a lapse sets a reason, and subscribing again clears it.
        guard (lapseReason != nil) == (status == .lapsed) else { throw invalid(reasonAt, "\(name) lapseReason with status \(status)") }
        guard (1 ... SubscriptionTerms.rolloverMonthsMax).contains(rolloverMonths) else {
            throw invalid(monthsAt, "\(name) rolloverMonths \(rolloverMonths)")
        }
        guard !plan.isEmpty else { throw invalid(planAt, "\(name) plan is empty") }
        // A subscription starts no more than a month before the command that made it, and
        // commands are never applied before the epoch; the current cycle started by the last
        // command (a renewal waits for it), and its end must be a time the calendar can
        // compute. Month numbers are compared first: they never overflow.
        let anchorMonth = CalendarMonths.monthNumber(of: Timestamp(millisSinceEpoch: anchor))
        guard anchor >= Self.anchorMin, anchor <= lastTime else { throw invalid(anchorAt, "\(name) anchor \(anchor)") }
        let months = CalendarMonths.monthNumber(of: Timestamp(millisSinceEpoch: lastTime)) - anchorMonth
        guard Int64(cycle) <= months, anchorMonth + Int64(cycle) + 1 <= Self.lastCycleEndMonth else {
            throw invalid(cycleAt, "\(name) cycle \(cycle) (after the last command)")
        }
        schedule.status = status
        schedule.lapseReason = lapseReason
        schedule.rollover = rollover
        schedule.rolloverMonths = rolloverMonths
        schedule.cycle = cycle
        schedule.plan = plan
        schedule.allocation = allocation
        schedule.priceCents = priceCents
        schedule.anchor = anchor
        guard schedule.cycleStart(cycle) <= lastTime else { throw invalid(cycleAt, "\(name) cycle \(cycle) (after the last command)") }
    }

    /// The earliest anchor: a month before the epoch, the earliest time a command is applied.
    static let anchorMin: Int64 = -31 * CalendarMonths.millisPerDay
    /// The last month a cycle may end in: two before the last representable one, so adding
    /// calendar months up to it cannot overflow.
    static let lastCycleEndMonth = CalendarMonths.monthNumber(of: .never) - 2

    /// A schedule's auto-refill part (the terms as `setAutoRefill` accepts them) and the
    /// state of its refills.
    mutating func decodeRefill(into schedule: inout AccountSchedule, _ name: String) throws(BinaryDecodingError) {
        if try reader.readBool("\(name) refill present") {
            let threshold = try amount(in: Self.amounts, "\(name) refill threshold")
            let refillCredits = try amount(in: 0 ... AutoRefillTerms.refillCreditsMax, "\(name) refillCredits")
            let cooldownMillis = try amount(in: 0 ... LedgerLimits.graceMillisMax, "\(name) cooldownMillis")
            let refillsPerMonthMax = try reader.read(UInt16.self)
            let attemptsAt = reader.offset
            let attemptsMax = try reader.read(UInt8.self)
            guard (1 ... AutoRefillTerms.attemptsMaxLimit).contains(attemptsMax) else {
                throw invalid(attemptsAt, "\(name) attemptsMax \(attemptsMax)")
            }
            let enabled = try reader.readBool("\(name) refill enabled")
            schedule.refill = RefillTermsRecord(threshold: threshold, refillCredits: refillCredits, cooldownMillis: cooldownMillis,
                                                refillsPerMonthMax: refillsPerMonthMax, attemptsMax: attemptsMax, enabled: enabled)
        }
        let inFlightAt = reader.offset
        schedule.inFlight = try reader.read(UInt64.self)
        // A refill is numbered by the entry that started it.
        guard schedule.inFlight < nextSequence else { throw invalid(inFlightAt, "\(name) refill in flight \(schedule.inFlight)") }
        let attemptsAt = reader.offset
        schedule.attempts = try reader.read(UInt8.self)
        // Failed attempts count only while a refill is in flight, and one that fails its
        // terms' last attempt stops it. Not `< attemptsMax`: new terms may lower that while
        // a refill is in flight, and the next failure then stops it.
        guard schedule.inFlight == 0 ? schedule.attempts == 0 : schedule.attempts < AutoRefillTerms.attemptsMaxLimit else {
            throw invalid(attemptsAt, "\(name) attempts \(schedule.attempts)")
        }
        schedule.alerted = try reader.readBool("\(name) alerted")
        schedule.refillsThisMonth = try reader.read(UInt16.self)
        schedule.refillMonth = try reader.read(Int64.self)
        schedule.nextAttemptAt = try reader.read(Int64.self)
        let lastAt = reader.offset
        schedule.lastRefillAt = try reader.read(Int64.self)
        // Set to a command's time (a later command subtracts it), or never.
        guard schedule.lastRefillAt == .min || (0 ... lastTime).contains(schedule.lastRefillAt) else {
            throw invalid(lastAt, "\(name) lastRefillAt \(schedule.lastRefillAt)")
        }
        let stopAt = reader.offset
        schedule.disabledAfter = try optional(RefillStop.self, "\(name) disabledAfter")
        // Only the failure that stops auto-refill disables it, and says why; new terms clear both.
        if let terms = schedule.refill, terms.enabled != (schedule.disabledAfter == nil) {
            throw invalid(stopAt, "\(name) disabledAfter with refill enabled \(terms.enabled)")
        }
    }

    /// An enum stored as its raw value, 0 for none (no case has raw value 0).
    mutating func optional<Value: RawRepresentable>(_: Value.Type, _ field: @autoclosure () -> String) throws(BinaryDecodingError) -> Value?
        where Value.RawValue == UInt8 {
        let at = reader.offset
        let raw = try reader.read(UInt8.self)
        if raw == 0 { return nil }
        guard let value = Value(rawValue: raw) else { throw invalid(at, field()) }
        return value
    }
}
