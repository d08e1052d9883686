// The state decoder: the header, the counts and the fixed-size sections (tenants, accounts,
// grants, organisations).

extension StateDecoder {
    mutating func decodeHeader() throws(BinaryDecodingError) {
        var at = reader.offset
        version = try reader.read(UInt32.self)
        guard Ledger.stateFormatVersionsReadable.contains(version) else {
            throw invalid(at, "stateFormatVersion \(version) (this build reads \(Ledger.stateFormatVersionsReadable))")
        }
        grantBytes = Ledger.encodedGrantBytes(version: version)
        at = reader.offset
        let keysMax = try reader.read(UInt64.self)
        guard keysMax == UInt64(configuration.idempotencyKeysMax) else {
            throw invalid(at, "idempotencyKeysMax \(keysMax) ≠ configured \(configuration.idempotencyKeysMax)")
        }
        at = reader.offset
        let window = try reader.read(Int64.self)
        guard window == configuration.idempotencyWindowMillis else {
            throw invalid(at, "idempotencyWindowMillis \(window) ≠ configured \(configuration.idempotencyWindowMillis)")
        }
        at = reader.offset
        let closedMax = try reader.read(UInt64.self)
        guard closedMax == UInt64(configuration.closedHoldsRememberedMax) else {
            throw invalid(at, "closedHoldsRememberedMax \(closedMax) ≠ configured \(configuration.closedHoldsRememberedMax)")
        }
        at = reader.offset
        nextSequence = try reader.read(UInt64.self)
        // Every recorded command takes a sequence: the counter cannot be near its end.
        guard nextSequence >= 1 && nextSequence < UInt64(Int64.max) else { throw invalid(at, "nextSequence") }
        lastTime = try reader.read(Int64.self)
        totals.granted = try amount(in: Self.nonNegative, "totals.granted")
        totals.consumed = try amount(in: Self.nonNegative, "totals.consumed")
        totals.expired = try amount(in: Self.nonNegative, "totals.expired")
        totals.debt = try amount(in: Self.nonNegative, "totals.debt")
    }

    mutating func decodeCounts() throws(BinaryDecodingError) -> (Int, Int, Int, Int) {
        let at = reader.offset
        // Below `none`, and `UInt32.max - 1` (the tenant table's empty marker) for organisations.
        let limit = Int(UInt32.max) - 2
        let tenantCount = Int(try reader.read(UInt32.self))
        let accountCount = Int(try reader.read(UInt32.self))
        let grantCount = Int(try reader.read(UInt32.self))
        let organisationCount = Int(try reader.read(UInt32.self))
        guard tenantCount <= limit, accountCount <= limit, grantCount <= limit, organisationCount <= limit,
              organisationCount <= tenantCount else { throw invalid(at, "record counts") }
        let needed = tenantCount * Ledger.encodedTenantBytes + accountCount * Ledger.encodedAccountBytes
            + grantCount * grantBytes + organisationCount * Ledger.encodedOrganisationBytesMin
        guard needed <= reader.remaining else { throw invalid(at, "record counts (\(needed) bytes needed, \(reader.remaining) left)") }
        return (tenantCount, accountCount, grantCount, organisationCount)
    }

    /// Checks that `bytes` follow and skips them; returns where they start.
    mutating func skip(_ bytes: Int, _ field: String) throws(BinaryDecodingError) -> Int {
        let start = reader.offset
        guard bytes <= reader.remaining else { throw invalid(start, field) }
        _ = try reader.readBytes(bytes)
        return start
    }

    /// Runs `body` with a cursor at `start` of `bytes` (whose length the caller checked).
    static func parse(_ bytes: [UInt8], from start: Int,
                      _ body: (inout FieldCursor) throws(BinaryDecodingError) -> Void) throws(BinaryDecodingError) {
        let failure = bytes.withUnsafeBytes { raw -> BinaryDecodingError? in
            var cursor = FieldCursor(raw: raw, offset: start)
            do throws(BinaryDecodingError) {
                try body(&cursor)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    mutating func decodeTenants(_ count: Int, accountCount: Int, grantCount: Int, organisationCount: Int) throws(BinaryDecodingError) {
        tenantsStart = try skip(count * Ledger.encodedTenantBytes, "tenants")
        tenantList.reserveCapacity(count)
        tenants = TenantTable(capacity: count)
        try Self.parse(reader.bytes, from: tenantsStart) { cursor throws(BinaryDecodingError) in
            var previous: UInt64?
            for index in 0 ..< count {
                let at = cursor.offset
                let id = cursor.next(UInt64.self)
                if let previous, id <= previous { throw invalid(at, "tenant \(index) id \(id) not above the previous one") }
                previous = id
                let firstAccount = try cursor.index(below: accountCount, orNone: true, "tenant \(id) firstAccount")
                let organisation = try cursor.index(below: organisationCount, orNone: true, "tenant \(id) organisation")
                let grantHint = try cursor.index(below: grantCount, orNone: true, "tenant \(id) grantHint")
                let slot = TenantSlot(firstAccount: firstAccount, organisation: organisation, grantHint: grantHint)
                tenantList.append((TenantID(id), slot))
                tenants.insert(TenantID(id), slot)
            }
        }
    }

    mutating func decodeAccounts(_ count: Int, grantCount: Int) throws(BinaryDecodingError) {
        accountsStart = try skip(count * Ledger.encodedAccountBytes, "accounts")
        let known: UInt8 = AccountRecord.Flags.stored.rawValue
        try Self.parse(reader.bytes, from: accountsStart) { cursor throws(BinaryDecodingError) in
            for slot in 0 ..< count {
                let tenant = TenantID(cursor.next(UInt64.self))
                let number = cursor.next(UInt32.self)
                let nextInTenant = try cursor.index(below: count, orNone: true, "account \(slot) nextInTenant")
                let firstGrant = try cursor.index(below: grantCount, orNone: true, "account \(slot) firstGrant")
                let link = cursor.next(UInt32.self) // checked with the account's role in checkTenancy
                let flagsAt = cursor.offset
                let flags = AccountRecord.Flags(rawValue: cursor.next(UInt8.self))
                guard flags.rawValue & ~known == 0, !flags.isSuperset(of: [.pool, .member]) else {
                    throw invalid(flagsAt, "account \(slot) flags \(flags.rawValue)")
                }
                let liveAt = cursor.offset
                let liveGrants = cursor.next(UInt16.self)
                guard Int(liveGrants) <= LedgerLimits.grantsPerAccountMax else { throw invalid(liveAt, "account \(slot) liveGrants") }
                let granted = try cursor.amount(in: Self.nonNegative, "account \(slot) granted")
                let consumed = try cursor.amount(in: Self.nonNegative, "account \(slot) consumed")
                let expired = try cursor.amount(in: Self.nonNegative, "account \(slot) expired")
                let debt = try cursor.amount(in: Self.nonNegative, "account \(slot) debt")
                accounts.append(AccountRecord(tenant: tenant, number: number, nextInTenant: nextInTenant,
                                              firstGrant: firstGrant, link: link, flags: flags, liveGrants: liveGrants,
                                              granted: granted, consumed: consumed, expired: expired, debt: debt))
            }
        }
    }

    mutating func decodeGrants(_ count: Int, accountCount: Int) throws(BinaryDecodingError) {
        grantsStart = try skip(count * grantBytes, "grants")
        let (nextSequence, hasState) = (nextSequence, version >= 3)
        try Self.parse(reader.bytes, from: grantsStart) { cursor throws(BinaryDecodingError) in
            for slot in 0 ..< count {
                let at = cursor.offset
                let number = cursor.next(UInt64.self)
                // A grant's number is the sequence of the entry that created it; the further
                // grants of one command (a renewal's rollovers) add k × 2^48 (`Ledger.grantNumber`).
                let sequence = number & (1 << 48 - 1)
                guard (number >= 1 && number < nextSequence) || (sequence >= 1 && sequence < nextSequence) else {
                    throw invalid(at, "grant slot \(slot) number \(number)")
                }
                let original = try cursor.amount(in: 1 ... LedgerLimits.amountMax, "grant \(number) original")
                let remaining = try cursor.amount(in: 0 ... original, "grant \(number) remaining")
                let held = try cursor.amount(in: 0 ... original - remaining, "grant \(number) held")
                let effectiveAt = cursor.next(Int64.self)
                let expiresAt = cursor.next(Int64.self)
                let costBasis = cursor.next(UInt32.self)
                let account = try cursor.index(below: accountCount, orNone: false, "grant \(number) account")
                let next = try cursor.index(below: count, orNone: true, "grant \(number) next")
                let priority = cursor.next(UInt8.self)
                let kindAt = cursor.offset
                guard let kind = GrantKind(rawValue: cursor.next(UInt8.self)) else { throw invalid(kindAt, "grant \(number) kind") }
                let scopedAt = cursor.offset
                let scoped = cursor.next(UInt8.self)
                guard scoped <= 1 else { throw invalid(scopedAt, "grant \(number) isScoped") }
                // Before version 3 every grant was live: grace and forfeiture did not exist.
                // Free slots' stale states are checked too: they are written and digested.
                let stateAt = cursor.offset
                guard let state = hasState ? GrantState(rawValue: cursor.next(UInt8.self)) : GrantState.live else {
                    throw invalid(stateAt, "grant \(number) state")
                }
                grants.append(GrantRecord(number: number, original: original, remaining: remaining, held: held,
                                          effectiveAt: effectiveAt, expiresAt: expiresAt, costBasis: costBasis,
                                          account: account, next: next, priority: priority, kind: kind,
                                          isScoped: scoped == 1, state: state))
            }
        }
    }

    mutating func decodeFreeGrantSlots(_ grantCount: Int) throws(BinaryDecodingError) {
        let count = try self.count(max: grantCount, bytesEach: 4, "freeGrantSlots count")
        freeGrantSlots.reserveCapacity(count)
        for _ in 0 ..< count {
            freeGrantSlots.append(try index(below: grantCount, orNone: false, "free grant slot"))
        }
    }

    mutating func decodePeriod(_ owner: @autoclosure () -> String) throws(BinaryDecodingError) -> PeriodCap {
        let at = reader.offset
        let cap: Int64? = try reader.readBool(owner() + " cap present") ? try amount(in: Self.amounts, owner() + " cap") : nil
        let spent = try amount(in: Self.nonNegative, owner() + " spent")
        let held = try amount(in: Self.nonNegative, owner() + " held")
        let overrun = try amount(in: Self.nonNegative, owner() + " overrun")
        // The sums the checker and the cap checks compute must not overflow.
        _ = try add(spent, held, at, owner() + " spent + held")
        _ = try add(cap ?? 0, overrun, at, owner() + " cap + overrun")
        return PeriodCap(cap: cap, spent: spent, held: held, overrun: overrun)
    }

    mutating func decodeOrganisations(_ count: Int, accountCount: Int) throws(BinaryDecodingError) {
        organisations.reserveCapacity(count)
        organisationStarts.reserveCapacity(count)
        for index in 0 ..< count {
            organisationStarts.append(reader.offset)
            let tenant = TenantID(try reader.read(UInt64.self))
            let pool = try self.index(below: accountCount, orNone: false, "organisation \(index) pool")
            let periodsAt = reader.offset
            let periodsStarted = try reader.read(UInt64.self)
            // Each period was started by a recorded command.
            guard periodsStarted < nextSequence else { throw invalid(periodsAt, "organisation \(tenant) periodsStarted") }
            let departmentCount = try self.count(max: LedgerLimits.departmentsPerOrganisationMax,
                                                 bytesEach: 6 + Ledger.encodedPeriodCapBytesMin,
                                                 "organisation \(tenant) department count")
            var departments: [DepartmentRecord] = []
            departments.reserveCapacity(departmentCount)
            var ids: Set<UInt16> = []
            for _ in 0 ..< departmentCount {
                let at = reader.offset
                let id = try reader.readDepartment()
                guard ids.insert(id.rawValue).inserted else { throw invalid(at, "organisation \(tenant) department \(id) repeated") }
                let costCentre = try reader.readString(maxBytes: LedgerLimits.textBytesMax, "department \(id) costCentre")
                let period = try decodePeriod("department \(tenant)/\(id)")
                departments.append(DepartmentRecord(id: id, costCentre: costCentre, period: period))
            }
            let memberCount = try self.count(max: accountCount, bytesEach: 8 + Ledger.encodedPeriodCapBytesMin,
                                             "organisation \(tenant) member count")
            var members: [MemberRecord] = []
            members.reserveCapacity(memberCount)
            for member in 0 ..< memberCount {
                let account = try self.index(below: accountCount, orNone: false, "organisation \(tenant) member \(member) account")
                let department = try self.index(below: departments.count, orNone: false,
                                                "organisation \(tenant) member \(member) department")
                let period = try decodePeriod("member \(member) of \(tenant)")
                members.append(MemberRecord(account: account, department: Int(department), period: period))
            }
            organisations.append(OrganisationRecord(tenant: tenant, pool: pool, departments: departments, members: members,
                                                    memberSlots: [:], periodsStarted: periodsStarted))
        }
    }
}
