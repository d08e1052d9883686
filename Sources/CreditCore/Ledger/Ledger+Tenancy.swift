import CCacheHints

/// Tenants, accounts, departments, freezing, and the enterprise caps per billing period.
extension Ledger {
    /// An account found by id, with what spending from it involves.
    struct Located {
        var id: AccountID
        var slot: UInt32
        /// The account whose grants pay: the pool for a member, the account itself otherwise.
        var funding: UInt32
        var organisation: UInt32
        /// Index in the organisation's members, or nil.
        var member: Int?
        /// The tenant's governance line (`Ledger.guards.tenants`), or `none`.
        var tenantGuard: UInt32 = none
    }

    @inline(__always)
    func slot(of id: AccountID) -> UInt32? {
        guard let tenant = tenants[id.tenant] else { return nil }
        return slot(of: id, in: tenant)
    }

    /// The slot of an account of the tenant whose entry is `tenant`.
    @inline(__always)
    func slot(of id: AccountID, in tenant: TenantSlot) -> UInt32? {
        if tenant.grantHint != none { cache_hints_prefetch(grants.addressHint(tenant.grantHint)) }
        if tenant.organisation != none {
            let organisation = organisations[Int(tenant.organisation)]
            return id.number == 0 ? organisation.pool : organisation.memberSlots[id.number]
        }
        var slot = tenant.firstAccount
        while slot != none {
            if accounts[slot].number == id.number { return slot }
            slot = accounts[slot].nextInTenant
        }
        return nil
    }

    /// Finds an account. Throws `unknownAccount`. (It takes no draft: an inout argument of
    /// a throwing call is copied in and out, a few hundred bytes per command.)
    @inline(__always)
    func locate(_ id: AccountID) throws(LedgerError) -> Located {
        guard let tenant = tenants[id.tenant], let slot = slot(of: id, in: tenant) else { throw .unknownAccount(id) }
        // The governance lines a spend updates at its end (velocity, buckets): started now,
        // their misses overlap the account's own (a single call has no batch prefetching).
        if Int(slot) < guards.accounts.count { cache_hints_prefetch(guards.accounts.addressHint(slot)) }
        if tenant.guardIndex != none { cache_hints_prefetch(guards.tenants.addressHint(tenant.guardIndex)) }
        let record = accounts[slot]
        var located = Located(id: id, slot: slot, funding: slot, organisation: none, member: nil, tenantGuard: tenant.guardIndex)
        if record.flags.contains(.member) {
            located.organisation = tenant.organisation
            located.funding = organisations[Int(located.organisation)].pool
            located.member = Int(record.link)
        } else if record.flags.contains(.pool) {
            located.organisation = record.link
        }
        return located
    }

    func checkText(_ text: String) throws(LedgerError) {
        if text.utf8.count > LedgerLimits.textBytesMax { throw .invalidInput(.textTooLong) }
    }

    func checkCap(_ cap: Millicredits?) throws(LedgerError) {
        if let cap, cap.rawValue < 0 || cap.rawValue > LedgerLimits.amountMax { throw .invalidAmount(cap) }
    }

    mutating func openTenant(_ id: TenantID, _ kind: TenantKind) throws(LedgerError) {
        if id == .platform { throw .invalidInput(.tenantIDReserved) }
        if tenants[id] != nil { throw .tenantExists(id) }
        switch kind {
        case .individual:
            tenants.insert(id, TenantSlot(firstAccount: none, organisation: none))
        case .organisation(let terms):
            if terms.count > LedgerLimits.departmentsPerOrganisationMax { throw .limitReached(.departmentsPerOrganisation) }
            var departments: [DepartmentRecord] = []
            for department in terms {
                try checkText(department.costCentre)
                try checkCap(department.allocationPerPeriod)
                if departments.contains(where: { $0.id == department.id }) { throw .departmentExists(id, department.id) }
                departments.append(DepartmentRecord(id: department.id, costCentre: department.costCentre,
                                                    period: PeriodCap(cap: department.allocationPerPeriod?.rawValue)))
            }
            let organisation = UInt32(organisations.count)
            let pool = accounts.append(AccountRecord(tenant: id, number: 0, nextInTenant: none, firstGrant: none,
                                                     link: organisation, flags: .pool, liveGrants: 0,
                                                     granted: 0, consumed: 0, expired: 0, debt: 0))
            organisations.append(OrganisationRecord(tenant: id, pool: pool, departments: departments, members: [],
                                                    memberSlots: [:], periodsStarted: 0))
            tenants.insert(id, TenantSlot(firstAccount: pool, organisation: organisation))
            draft.account = AccountID(tenant: id, number: 0)
            draft.principal = draft.account
        }
    }

    func organisationIndex(_ id: TenantID) throws(LedgerError) -> Int {
        guard let tenant = tenants[id] else { throw .unknownTenant(id) }
        guard tenant.organisation != none else { throw .notAllowed(AccountID(tenant: id, number: 0), .individualsHaveNoDepartments) }
        return Int(tenant.organisation)
    }

    mutating func openDepartment(_ id: TenantID, _ terms: DepartmentTerms) throws(LedgerError) {
        let index = try organisationIndex(id)
        try checkText(terms.costCentre)
        try checkCap(terms.allocationPerPeriod)
        if organisations[index].departmentIndex(terms.id) != nil { throw .departmentExists(id, terms.id) }
        if organisations[index].departments.count >= LedgerLimits.departmentsPerOrganisationMax {
            throw .limitReached(.departmentsPerOrganisation)
        }
        organisations[index].departments.append(DepartmentRecord(id: terms.id, costCentre: terms.costCentre,
                                                                  period: PeriodCap(cap: terms.allocationPerPeriod?.rawValue)))
    }

    mutating func openAccount(_ id: AccountID, _ kind: AccountKind) throws(LedgerError) {
        guard let tenant = tenants[id.tenant] else { throw .unknownTenant(id.tenant) }
        if slot(of: id) != nil { throw .accountExists(id) }
        draft.account = id
        draft.principal = id
        switch kind {
        case .standard(let overdraft):
            guard tenant.organisation == none else { throw .notAllowed(id, .onlyIndividualsHaveStandardAccounts) }
            try checkCap(overdraft)
            let slot = accounts.append(AccountRecord(tenant: id.tenant, number: id.number, nextInTenant: tenant.firstAccount,
                                                     firstGrant: none, link: none, flags: [], liveGrants: 0,
                                                     granted: 0, consumed: 0, expired: 0, debt: 0))
            tenants.setFirstAccount(of: id.tenant, to: slot, grantHint: none)
            if overdraft.rawValue > 0 { creditLines[slot] = CreditLine(overdraft: overdraft.rawValue, overrun: 0) }
        case .member(let department, let limit):
            guard tenant.organisation != none else { throw .notAllowed(id, .onlyOrganisationsHaveMembers) }
            let organisation = Int(tenant.organisation)
            guard let departmentIndex = organisations[organisation].departmentIndex(department) else {
                throw .unknownDepartment(id.tenant, department)
            }
            try checkCap(limit)
            let member = UInt32(organisations[organisation].members.count)
            let slot = accounts.append(AccountRecord(tenant: id.tenant, number: id.number, nextInTenant: none,
                                                     firstGrant: none, link: member, flags: .member, liveGrants: 0,
                                                     granted: 0, consumed: 0, expired: 0, debt: 0))
            organisations[organisation].members.append(MemberRecord(account: slot, department: departmentIndex,
                                                                     period: PeriodCap(cap: limit?.rawValue)))
            organisations[organisation].memberSlots[id.number] = slot
            draft.principalSlot = slot
            draft.accountSlot = organisations[organisation].pool
            draft.organisation = tenant.organisation
        }
    }

    mutating func setFrozen(_ id: AccountID, _ frozen: Bool) throws(LedgerError) {
        let located = try locate(id)
        draft.note(located)
        if frozen { accounts[located.slot].flags.insert(.frozen) } else { accounts[located.slot].flags.remove(.frozen) }
    }

    mutating func setDepartmentAllocation(_ id: TenantID, _ department: DepartmentID, _ cap: Millicredits?) throws(LedgerError) {
        let organisation = try organisationIndex(id)
        guard let index = organisations[organisation].departmentIndex(department) else {
            throw .unknownDepartment(id, department)
        }
        try checkCap(cap)
        organisations[organisation].departments[index].period.setCap(cap?.rawValue)
        draft.amount = cap?.rawValue ?? 0
    }

    mutating func setMemberLimit(_ id: AccountID, _ cap: Millicredits?) throws(LedgerError) {
        let located = try locate(id)
        draft.note(located)
        guard let member = located.member else { throw .notAllowed(id, .limitsApplyToMembersOnly) }
        try checkCap(cap)
        organisations[Int(located.organisation)].members[member].period.setCap(cap?.rawValue)
        draft.amount = cap?.rawValue ?? 0
    }

    mutating func startPeriod(_ id: TenantID) throws(LedgerError) {
        startPeriod(of: try organisationIndex(id), id)
    }

    /// Starts a new period of the organisation at `organisation` (its tenant `id`).
    mutating func startPeriod(of organisation: Int, _ id: TenantID) {
        assert(organisations[organisation].tenant == id)
        organisations[organisation].periodsStarted += 1
        for index in organisations[organisation].departments.indices {
            organisations[organisation].departments[index].period.startPeriod()
        }
        for index in organisations[organisation].members.indices {
            organisations[organisation].members[index].period.startPeriod()
        }
        draft.account = AccountID(tenant: id, number: 0)
    }

    /// Rejects spending when the account (or, for a member, the pool) is frozen, or when a
    /// member's limit or its department's allocation has less headroom than `amount`.
    @inline(__always)
    mutating func checkMaySpend(_ located: Located, _ id: AccountID, _ amount: Int64) throws(LedgerError) {
        if accounts[located.slot].flags.contains(.frozen) { throw .accountFrozen(id) }
        guard let member = located.member else { return }
        try checkMemberMaySpend(located, member, id, amount)
    }

    /// `mutating` only so the call does not copy the whole ledger (see `balanceAfter`).
    private mutating func checkMemberMaySpend(_ located: Located, _ member: Int, _ id: AccountID,
                                              _ amount: Int64) throws(LedgerError) {
        if accounts[located.funding].flags.contains(.frozen) { throw .accountFrozen(AccountID(tenant: id.tenant, number: 0)) }
        let organisation = organisations[Int(located.organisation)]
        let record = organisation.members[member]
        if record.period.headroom < amount {
            throw .memberLimitExceeded(remaining: Millicredits(record.period.headroom), requested: Millicredits(amount))
        }
        let department = organisation.departments[record.department].period
        if department.headroom < amount {
            throw .departmentAllocationExceeded(remaining: Millicredits(department.headroom), requested: Millicredits(amount))
        }
    }

    /// Applies a change to a member's and its department's period counters.
    mutating func updateCaps(_ located: Located, _ change: (inout PeriodCap) -> Void) {
        guard let member = located.member else { return }
        let organisation = Int(located.organisation)
        change(&organisations[organisation].members[member].period)
        let department = organisations[organisation].members[member].department
        change(&organisations[organisation].departments[department].period)
    }

    /// What a member may spend now: the least of the pool's balance and the member's and
    /// department's headroom.
    func memberAvailable(_ slot: UInt32, organisation: UInt32, scope: ChargeScope, at now: Int64) -> Int64 {
        let record = organisations[Int(organisation)]
        let pool = record.pool
        let poolAvailable = spendable(pool, scope: scope, at: now) - accounts[pool].debt
        let member = record.members[Int(accounts[slot].link)]
        return min(poolAvailable, member.period.headroom, record.departments[member.department].period.headroom)
    }
}

extension PeriodCap {
    mutating func startPeriod() {
        spent = 0
        overrun = excess
    }

    /// A new cap applies to what comes next; spending already above it is recorded as overrun.
    mutating func setCap(_ newCap: Int64?) {
        cap = newCap
        overrun = excess
    }

    /// How far spent + held is above the cap now.
    private var excess: Int64 { cap.map { max(0, spent + held - $0) } ?? 0 }

    /// Records a settle's spending; any part beyond the cap is an overrun, not an error.
    mutating func settle(reserved: Int64, actual: Int64) {
        held -= reserved
        spent += actual
        overrun = max(overrun, excess)
    }
}
