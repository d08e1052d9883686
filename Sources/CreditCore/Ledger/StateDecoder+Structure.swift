// The state decoder: the structure checks over what was read (tenancy links, grant chains).

extension StateDecoder {
    // MARK: Structure

    func accountOffset(_ slot: UInt32) -> Int { accountsStart + Int(slot) * Ledger.encodedAccountBytes }
    func grantOffset(_ slot: UInt32) -> Int { grantsStart + Int(slot) * grantBytes }

    /// Every account is reached exactly once: from its individual tenant's chain, as an
    /// organisation's pool, or as one of its members; every organisation from exactly one
    /// tenant. Rebuilds each organisation's member index. Checks the sums of lifetime totals.
    mutating func checkTenancy() throws(BinaryDecodingError) {
        reaches = [Reach](repeating: .unreached, count: accounts.count)
        var organisationReached = [Bool](repeating: false, count: organisations.count)
        var numbers: [UInt32] = []
        for (position, (id, tenant)) in tenantList.enumerated() {
            let at = tenantsStart + position * Ledger.encodedTenantBytes
            if tenant.organisation == none {
                var cursor = tenant.firstAccount
                numbers.removeAll(keepingCapacity: true)
                while cursor != none {
                    let account = accounts[cursor]
                    guard reaches[Int(cursor)] == .unreached else {
                        throw invalid(accountOffset(cursor), "account \(cursor) reached twice (tenant \(id) chain)")
                    }
                    reaches[Int(cursor)] = .individual
                    guard account.tenant == id, account.link == none, account.flags.isDisjoint(with: [.pool, .member]) else {
                        throw invalid(accountOffset(cursor), "account \(cursor) in the chain of \(id) is not its standard account")
                    }
                    numbers.append(account.number)
                    cursor = account.nextInTenant
                }
                if numbers.count > 1 {
                    numbers.sort()
                    for index in 1 ..< numbers.count where numbers[index] == numbers[index - 1] {
                        throw invalid(at, "tenant \(id) has two accounts numbered \(numbers[index])")
                    }
                }
                continue
            }
            let index = Int(tenant.organisation)
            let start = organisationStarts[index]
            guard !organisationReached[index] else { throw invalid(at, "organisation \(index) reached from two tenants") }
            organisationReached[index] = true
            var organisation = organisations[index]
            guard organisation.tenant == id, tenant.firstAccount == organisation.pool else {
                throw invalid(start, "organisation \(index) does not belong to tenant \(id)")
            }
            let pool = accounts[organisation.pool]
            guard reaches[Int(organisation.pool)] == .unreached else {
                throw invalid(accountOffset(organisation.pool), "account \(organisation.pool) reached twice (pool of \(id))")
            }
            reaches[Int(organisation.pool)] = .pool
            guard pool.tenant == id, pool.number == 0, pool.link == UInt32(index), pool.flags.contains(.pool) else {
                throw invalid(accountOffset(organisation.pool), "account \(organisation.pool) is not the pool of \(id)")
            }
            var spent = [Int64](repeating: 0, count: organisation.departments.count)
            var held = [Int64](repeating: 0, count: organisation.departments.count)
            for (position, member) in organisation.members.enumerated() {
                let slot = member.account
                let account = accounts[slot]
                guard reaches[Int(slot)] == .unreached else {
                    throw invalid(accountOffset(slot), "account \(slot) reached twice (member of \(id))")
                }
                reaches[Int(slot)] = .member
                guard account.tenant == id, account.number != 0, account.link == UInt32(position),
                      account.flags.contains(.member), account.firstGrant == none else {
                    throw invalid(accountOffset(slot), "account \(slot) is not member \(position) of \(id)")
                }
                guard organisation.memberSlots.updateValue(slot, forKey: account.number) == nil else {
                    throw invalid(accountOffset(slot), "organisation \(id) has two members numbered \(account.number)")
                }
                spent[member.department] = try add(spent[member.department], member.period.spent, start,
                                                   "department spending of \(id)")
                held[member.department] = try add(held[member.department], member.period.held, start,
                                                  "department holds of \(id)")
            }
            organisations[index] = organisation
        }
        if let index = organisationReached.firstIndex(of: false) {
            throw invalid(organisationStarts[index], "organisation \(index) belongs to no tenant")
        }
        if let slot = reaches.firstIndex(of: .unreached) {
            throw invalid(accountOffset(UInt32(slot)), "account \(slot) is reached from no tenant")
        }
    }

    /// Every grant slot is in exactly one grant-holding account's chain or in the free list
    /// once. Checks the sums the conservation check will compute.
    mutating func checkGrantChains() throws(BinaryDecodingError) {
        grantUse = [GrantUse](repeating: .unreached, count: grants.count)
        var sums = LedgerTotals()
        var failure: BinaryDecodingError?
        accounts.forEach { slot, account in
            guard failure == nil else { return }
            do throws(BinaryDecodingError) {
                let at = accountOffset(slot)
                sums.granted = try add(sums.granted, account.granted, at, "the sum of accounts' granted")
                sums.expired = try add(sums.expired, account.expired, at, "the sum of accounts' expired")
                sums.debt = try add(sums.debt, account.debt, at, "the sum of accounts' debt")
                if reaches[Int(slot)] == .member { return }
                sums.consumed = try add(sums.consumed, account.consumed, at, "the sum of accounts' consumed")
                var remaining: Int64 = 0
                var held: Int64 = 0
                var count = 0
                var cursor = account.firstGrant
                while cursor != none {
                    guard grantUse[Int(cursor)] == .unreached else {
                        throw invalid(grantOffset(cursor), "grant slot \(cursor) reached twice (account \(slot) chain)")
                    }
                    grantUse[Int(cursor)] = .live
                    let grant = grants[cursor]
                    guard grant.account == slot else {
                        throw invalid(grantOffset(cursor), "grant slot \(cursor) in the chain of account \(slot) names account \(grant.account)")
                    }
                    try checkState(of: grant, slot: cursor)
                    remaining = try add(remaining, grant.remaining, at, "account \(slot) remaining")
                    held = try add(held, grant.held, at, "account \(slot) held")
                    count += 1
                    cursor = grant.next
                }
                guard count == Int(account.liveGrants) else {
                    throw invalid(at, "account \(slot) liveGrants \(account.liveGrants), its chain has \(count)")
                }
                _ = try add(account.granted, account.debt, at, "account \(slot) granted + debt")
                let used = try add(try add(remaining, account.consumed, at, "account \(slot) remaining + consumed"),
                                   account.expired, at, "account \(slot) remaining + consumed + expired")
                _ = try add(used, held, at, "account \(slot) remaining + consumed + expired + held")
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        for slot in freeGrantSlots {
            guard grantUse[Int(slot)] == .unreached else { throw invalid(grantOffset(slot), "grant slot \(slot) is both free and used") }
            grantUse[Int(slot)] = .free
        }
        if let slot = grantUse.firstIndex(of: .unreached) {
            throw invalid(grantOffset(UInt32(slot)), "grant slot \(slot) is neither live nor free")
        }
    }

    /// What a listed grant's stage of life requires of it (`GrantState`): a live grant
    /// expires after it is effective; a grant in grace keeps its grace end, no earlier than
    /// its expiry, in `effectiveAt`, and a reinstatement subtracts the two; a forfeited one
    /// is kept only for the holds still open on it, with nothing remaining.
    func checkState(of grant: GrantRecord, slot: UInt32) throws(BinaryDecodingError) {
        let at = grantOffset(slot)
        switch grant.state {
        case .live:
            guard grant.effectiveAt < grant.expiresAt else {
                throw invalid(at + 32, "grant \(grant.number) is live but expires before it is effective")
            }
        case .grace:
            guard grant.effectiveAt >= grant.expiresAt,
                  !grant.effectiveAt.subtractingReportingOverflow(grant.expiresAt).overflow else {
                throw invalid(at + 32, "grant \(grant.number) grace end \(grant.effectiveAt) (before its expiry, or too far after it)")
            }
        case .forfeited:
            guard grant.remaining == 0, grant.held > 0 else {
                throw invalid(at + 16, "grant \(grant.number) is forfeited but has \(grant.remaining) remaining and \(grant.held) held")
            }
        }
    }
}
