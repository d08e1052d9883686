import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

@Suite("Tenants, accounts, departments, freezing")
struct TenancyTests {
    let d1 = DepartmentID(1)
    let d2 = DepartmentID(2)

    @Test("an individual and its standard account open with an empty balance")
    func individualAccountOpensEmpty() throws {
        var h = LedgerHarness()
        let tenant = TenantID(1)
        let opened = try h.succeedWithEntry(.openTenant(tenant, .individual))
        #expect(opened.entry.kind == .tenantOpened)
        #expect(opened.receipt.amount == .zero)
        let account = AccountID(tenant: tenant, number: 0)
        let accountOpened = try h.succeedWithEntry(.openAccount(account, .standard))
        #expect(accountOpened.entry.kind == .accountOpened)
        #expect(accountOpened.entry.account == account)
        let balance = try h.balance(account)
        #expect(balance.account == account)
        #expect(balance.available == .zero && balance.remaining == .zero && balance.debt == .zero)
        #expect(balance.grants.isEmpty && !balance.isFrozen)
        #expect(h.ledger.tenantCount == 1 && h.ledger.accountCount == 1)
        // A second account of the same individual is independent.
        let second = AccountID(tenant: tenant, number: 1)
        try h.succeed(.openAccount(second, .standard))
        try h.grant(second, credits(5))
        #expect(try h.balance(second).available == credits(5))
        #expect(try h.balance(account).available == .zero)
    }

    @Test("an organisation opens with its pool (account 0) and departments")
    func organisationOpensWithPoolAndDepartments() throws {
        var h = LedgerHarness()
        let tenant = TenantID(500)
        let receipt = try h.succeedWithEntry(.openTenant(tenant, .organisation(departments: [
            DepartmentTerms(id: d1, costCentre: "CC-ENG", allocationPerPeriod: credits(100)),
            DepartmentTerms(id: d2, costCentre: "CC-OPS"),
        ])))
        #expect(receipt.entry.account == AccountID(tenant: tenant, number: 0))
        let pool = try h.balance(AccountID(tenant: tenant, number: 0))
        #expect(pool.available == .zero)
        let view = try h.organisation(tenant)
        #expect(view.tenant == tenant && view.periodsStarted == 0)
        #expect(view.departments.map(\.id) == [d1, d2])
        #expect(view.departments.map(\.costCentre) == ["CC-ENG", "CC-OPS"])
        #expect(view.usage(of: d1)?.cap == credits(100))
        #expect(view.usage(of: d2)?.cap == nil)
        #expect(view.members.isEmpty)
        #expect(h.ledger.organisation(TenantID(999)) == nil)
    }

    @Test("departments and members can be added to an organisation later")
    func departmentsAndMembersAddedLater() throws {
        var h = LedgerHarness()
        let tenant = TenantID(500)
        try h.succeed(.openTenant(tenant, .organisation(departments: [])))
        try h.succeed(.openDepartment(tenant, DepartmentTerms(id: d2, costCentre: "CC-2", allocationPerPeriod: credits(9))))
        let member = AccountID(tenant: tenant, number: 7)
        try h.succeed(.openAccount(member, .member(department: d2, limitPerPeriod: credits(3))))
        let view = try h.organisation(tenant)
        #expect(view.departments.map(\.id) == [d2])
        #expect(view.members.count == 1)
        #expect(view.members.first?.account == member && view.members.first?.department == d2)
        #expect(view.usage(of: member)?.cap == credits(3))
        #expect(try h.balance(member).available == .zero, "an unfunded pool leaves the member nothing")
    }

    @Test("opening an existing tenant is rejected")
    func tenantExistsRejected() throws {
        var h = LedgerHarness()
        try h.succeed(.openTenant(TenantID(1), .individual))
        h.reject(.openTenant(TenantID(1), .individual), .tenantExists(TenantID(1)))
        h.reject(.openTenant(TenantID(1), .organisation(departments: [])), .tenantExists(TenantID(1)))
    }

    @Test("commands naming a tenant that was never opened are rejected")
    func unknownTenantRejected() {
        var h = LedgerHarness()
        let ghost = TenantID(404)
        h.reject(.openAccount(AccountID(tenant: ghost, number: 0), .standard), .unknownTenant(ghost))
        h.reject(.openDepartment(ghost, DepartmentTerms(id: d1, costCentre: "x")), .unknownTenant(ghost))
        h.reject(.setDepartmentAllocation(ghost, d1, perPeriod: credits(1)), .unknownTenant(ghost))
        h.reject(.startPeriod(ghost), .unknownTenant(ghost))
    }

    @Test("opening an existing account is rejected, including an organisation's pool")
    func accountExistsRejected() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.openAccount(account, .standard), .accountExists(account))
        let org = try OrganisationFixture(in: &h, poolCredits: .zero, departments: [(d1, nil)], members: [(1, d1, nil)])
        h.reject(.openAccount(org.pool, .member(department: d1, limitPerPeriod: nil)), .accountExists(org.pool))
        h.reject(.openAccount(org.member(1), .member(department: d1, limitPerPeriod: nil)), .accountExists(org.member(1)))
    }

    @Test("commands naming an account that was never opened are rejected")
    func unknownAccountRejected() throws {
        var h = LedgerHarness()
        _ = try h.openIndividual(1)
        let ghost = AccountID(tenant: TenantID(1), number: 9)
        h.reject(.debit(ghost, credits(1), scope: .unscoped), .unknownAccount(ghost))
        h.reject(.grant(ghost, GrantTerms(kind: .purchase, amount: credits(1))), .unknownAccount(ghost))
        h.reject(.reserve(ghost, credits(1), timeoutMillis: 1_000, scope: .unscoped), .unknownAccount(ghost))
        h.reject(.freeze(ghost), .unknownAccount(ghost))
        h.reject(.adjust(ghost, credits(1), reason: "fix"), .unknownAccount(ghost))
        let orgMember = AccountID(tenant: TenantID(500), number: 3)
        _ = try OrganisationFixture(in: &h, poolCredits: credits(10), departments: [(d1, nil)], members: [])
        h.reject(.debit(orgMember, credits(1), scope: .unscoped), .unknownAccount(orgMember))
        h.reject(.setMemberLimit(orgMember, perPeriod: credits(1)), .unknownAccount(orgMember))
        #expect(h.ledger.balance(of: ghost, at: h.now) == nil)
        #expect(h.ledger.available(of: ghost, scope: .unscoped, at: h.now) == nil)
    }

    @Test("duplicate departments are rejected")
    func departmentExistsRejected() throws {
        var h = LedgerHarness()
        try h.succeed(.openTenant(TenantID(500), .organisation(departments: [DepartmentTerms(id: d1, costCentre: "a")])))
        h.reject(.openDepartment(TenantID(500), DepartmentTerms(id: d1, costCentre: "b")), .departmentExists(TenantID(500), d1))
        h.reject(.openTenant(TenantID(501), .organisation(departments: [DepartmentTerms(id: d2, costCentre: "a"),
                                                                       DepartmentTerms(id: d2, costCentre: "b")])),
                 .departmentExists(TenantID(501), d2))
        #expect(h.ledger.organisation(TenantID(501)) == nil, "a rejected organisation is not half opened")
    }

    @Test("commands naming an unknown department are rejected")
    func unknownDepartmentRejected() throws {
        var h = LedgerHarness()
        try h.succeed(.openTenant(TenantID(500), .organisation(departments: [DepartmentTerms(id: d1, costCentre: "a")])))
        h.reject(.openAccount(AccountID(tenant: TenantID(500), number: 1), .member(department: d2, limitPerPeriod: nil)),
                 .unknownDepartment(TenantID(500), d2))
        h.reject(.setDepartmentAllocation(TenantID(500), d2, perPeriod: credits(5)), .unknownDepartment(TenantID(500), d2))
    }

    @Test("members exist only in organisations; standard accounts only for individuals")
    func accountKindRulesEnforced() throws {
        var h = LedgerHarness()
        try h.succeed(.openTenant(TenantID(1), .individual))
        let individualMember = AccountID(tenant: TenantID(1), number: 1)
        h.reject(.openAccount(individualMember, .member(department: d1, limitPerPeriod: nil)),
                 .notAllowed(individualMember, .onlyOrganisationsHaveMembers))
        try h.succeed(.openTenant(TenantID(500), .organisation(departments: [DepartmentTerms(id: d1, costCentre: "a")])))
        let orgStandard = AccountID(tenant: TenantID(500), number: 1)
        h.reject(.openAccount(orgStandard, .standard), .notAllowed(orgStandard, .onlyIndividualsHaveStandardAccounts))
        h.reject(.openAccount(orgStandard, .standard(overdraft: credits(5))), .notAllowed(orgStandard, .onlyIndividualsHaveStandardAccounts))
    }

    @Test("members hold no grants: grant and adjust on a member are not allowed")
    func membersHoldNoGrants() throws {
        var h = LedgerHarness()
        let org = try OrganisationFixture(in: &h, poolCredits: credits(10), departments: [(d1, nil)], members: [(1, d1, nil)])
        let member = org.member(1)
        h.reject(.grant(member, GrantTerms(kind: .promotional, amount: credits(1))), .notAllowed(member, .membersHoldNoGrants))
        h.reject(.adjust(member, credits(1), reason: "bonus"), .notAllowed(member, .membersHoldNoGrants))
        h.reject(.adjust(member, credits(-1), reason: "claw back"), .notAllowed(member, .membersHoldNoGrants))
    }

    @Test("member limits apply to member accounts only")
    func memberLimitOnNonMemberNotAllowed() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.setMemberLimit(account, perPeriod: credits(5)), .notAllowed(account, .limitsApplyToMembersOnly))
        let org = try OrganisationFixture(in: &h, poolCredits: credits(10), departments: [(d1, nil)], members: [])
        h.reject(.setMemberLimit(org.pool, perPeriod: credits(5)), .notAllowed(org.pool, .limitsApplyToMembersOnly))
    }

    @Test("individuals have no departments or billing periods")
    func individualsHaveNoDepartments() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        h.reject(.openDepartment(account.tenant, DepartmentTerms(id: d1, costCentre: "a")),
                 .notAllowed(account, .individualsHaveNoDepartments))
        h.reject(.setDepartmentAllocation(account.tenant, d1, perPeriod: credits(1)), .notAllowed(account, .individualsHaveNoDepartments))
        h.reject(.startPeriod(account.tenant), .notAllowed(account, .individualsHaveNoDepartments))
    }

    @Test("cost centres are limited to 256 UTF-8 bytes")
    func costCentreTooLongRejected() throws {
        var h = LedgerHarness()
        let longest = String(repeating: "x", count: LedgerLimits.textBytesMax)
        let tooLong = String(repeating: "é", count: 129) // 258 bytes, 129 characters
        try h.succeed(.openTenant(TenantID(500), .organisation(departments: [DepartmentTerms(id: d1, costCentre: longest)])))
        h.reject(.openDepartment(TenantID(500), DepartmentTerms(id: d2, costCentre: tooLong)), .invalidInput(.textTooLong))
        h.reject(.openTenant(TenantID(501), .organisation(departments: [DepartmentTerms(id: d1, costCentre: tooLong)])),
                 .invalidInput(.textTooLong))
        #expect(try h.organisation(TenantID(500)).departments.first?.costCentre == longest)
    }

    @Test("negative caps and overdrafts are invalid amounts; zero caps are allowed")
    func negativeCapsRejected() throws {
        var h = LedgerHarness()
        try h.succeed(.openTenant(TenantID(1), .individual))
        h.reject(.openAccount(AccountID(tenant: TenantID(1), number: 0), .standard(overdraft: Millicredits(-1))),
                 .invalidAmount(Millicredits(-1)))
        h.reject(.openTenant(TenantID(500), .organisation(departments: [DepartmentTerms(id: d1, costCentre: "a", allocationPerPeriod: Millicredits(-5))])),
                 .invalidAmount(Millicredits(-5)))
        let org = try OrganisationFixture(in: &h, tenant: 501, poolCredits: credits(10), departments: [(d1, nil)], members: [(1, d1, nil)])
        h.reject(.openDepartment(org.tenant, DepartmentTerms(id: d2, costCentre: "b", allocationPerPeriod: Millicredits(-1))),
                 .invalidAmount(Millicredits(-1)))
        h.reject(.openAccount(org.member(2), .member(department: d1, limitPerPeriod: Millicredits(-1))), .invalidAmount(Millicredits(-1)))
        h.reject(.setMemberLimit(org.member(1), perPeriod: Millicredits(-1)), .invalidAmount(Millicredits(-1)))
        h.reject(.setDepartmentAllocation(org.tenant, d1, perPeriod: Millicredits(-1)), .invalidAmount(Millicredits(-1)))
        let tooBig = Millicredits(LedgerLimits.amountMax + 1)
        h.reject(.setDepartmentAllocation(org.tenant, d1, perPeriod: tooBig), .invalidAmount(tooBig))
        try h.succeed(.setMemberLimit(org.member(1), perPeriod: .zero))
        h.reject(.debit(org.member(1), Millicredits(1), scope: .unscoped), .memberLimitExceeded(remaining: .zero, requested: Millicredits(1)))
    }

    @Test("an organisation has at most 4096 departments")
    func departmentsPerOrganisationLimit() throws {
        var h = LedgerHarness()
        let max = LedgerLimits.departmentsPerOrganisationMax
        let terms = (0 ..< max + 1).map { DepartmentTerms(id: DepartmentID(UInt16($0)), costCentre: "") }
        h.reject(.openTenant(TenantID(500), .organisation(departments: terms)), .limitReached(.departmentsPerOrganisation))
        try h.succeed(.openTenant(TenantID(500), .organisation(departments: Array(terms.prefix(max)))))
        h.reject(.openDepartment(TenantID(500), DepartmentTerms(id: DepartmentID(UInt16(max)), costCentre: "")),
                 .limitReached(.departmentsPerOrganisation))
        #expect(try h.organisation(TenantID(500)).departments.count == max)
    }

    @Test("freezing blocks debits and reserves; unfreezing restores them")
    func freezeAndUnfreeze() throws {
        var h = LedgerHarness()
        let account = try h.openIndividual(1)
        try h.grant(account, credits(10))
        let frozen = try h.succeedWithEntry(.freeze(account))
        #expect(frozen.entry.kind == .frozen)
        #expect(try h.balance(account).isFrozen)
        h.reject(.debit(account, credits(1), scope: .unscoped), .accountFrozen(account))
        h.reject(.reserve(account, credits(1), timeoutMillis: 1_000, scope: .unscoped), .accountFrozen(account))
        // Credits can still arrive while frozen.
        try h.grant(account, credits(2))
        try h.succeed(.unfreeze(account))
        #expect(try !h.balance(account).isFrozen)
        try h.debit(account, credits(12))
        #expect(try h.balance(account).available == .zero)
    }
}
