import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

/// Organisation 500: pool funded with `poolCredits`; department 1 has an allocation of 100
/// credits per period, department 2 none; member 1 (department 1) may spend 30 credits per
/// period, member 2 (department 1) has no limit, member 3 (department 2) may spend 50.
private func makeOrganisation(_ h: inout LedgerHarness, poolCredits: Int64 = 200) throws -> OrganisationFixture {
    try OrganisationFixture(in: &h, poolCredits: credits(poolCredits),
                            departments: [(DepartmentID(1), credits(100)), (DepartmentID(2), nil)],
                            members: [(1, DepartmentID(1), credits(30)), (2, DepartmentID(1), nil), (3, DepartmentID(2), credits(50))])
}

@Suite("Enterprise: pool, department allocations, member limits")
struct EnterpriseLimitTests {
    let d1 = DepartmentID(1)
    let d2 = DepartmentID(2)

    @Test("a member's debit burns the organisation pool and counts against its caps")
    func memberDebitBurnsThePool() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let member = org.member(1)
        let (receipt, entry) = try h.succeedWithEntry(.debit(member, credits(10), scope: .unscoped))
        #expect(entry.account == org.pool, "credits move on the pool")
        #expect(entry.member == member, "the member acted")
        #expect(receipt.availableAfter == credits(20), "least of pool 190, member 20, department 90")
        #expect(try h.balance(org.pool).available == credits(190))
        let memberBalance = try h.balance(member)
        #expect(memberBalance.available == credits(20))
        #expect(memberBalance.consumed == credits(10))
        #expect(memberBalance.grants.isEmpty && memberBalance.granted == .zero)
        let view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.spent == credits(10))
        #expect(view.usage(of: d1)?.spent == credits(10))
        #expect(view.usage(of: d2)?.spent == .zero)
        #expect(view.usage(of: org.member(2))?.spent == .zero)
    }

    @Test("a member cannot spend past its limit per period")
    func memberLimitEnforced() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let member = org.member(1)
        h.reject(.debit(member, credits(31), scope: .unscoped), .memberLimitExceeded(remaining: credits(30), requested: credits(31)))
        try h.debit(member, credits(30))
        h.reject(.debit(member, Millicredits(1), scope: .unscoped), .memberLimitExceeded(remaining: .zero, requested: Millicredits(1)))
        h.reject(.reserve(member, Millicredits(1), timeoutMillis: minuteMillis, scope: .unscoped),
                 .memberLimitExceeded(remaining: .zero, requested: Millicredits(1)))
        #expect(try h.balance(member).available == .zero)
        #expect(try h.balance(org.pool).available == credits(170))
        // Other members are not affected.
        try h.debit(org.member(2), credits(5))
    }

    @Test("a department's members together cannot spend past its allocation")
    func departmentAllocationEnforced() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.member(2), credits(80))
        h.reject(.debit(org.member(1), credits(25), scope: .unscoped),
                 .departmentAllocationExceeded(remaining: credits(20), requested: credits(25)))
        #expect(try h.balance(org.member(1)).available == credits(20))
        try h.debit(org.member(1), credits(20))
        h.reject(.debit(org.member(2), Millicredits(1), scope: .unscoped),
                 .departmentAllocationExceeded(remaining: .zero, requested: Millicredits(1)))
        // Department 2 has its own (absent) cap.
        try h.debit(org.member(3), credits(50))
        let view = try h.organisation(org.tenant)
        #expect(view.usage(of: d1)?.spent == credits(100))
        #expect(view.usage(of: d2)?.spent == credits(50))
    }

    @Test("members cannot spend more than the pool holds")
    func poolEnforced() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h, poolCredits: 40)
        h.reject(.debit(org.member(3), credits(41), scope: .unscoped), .insufficientCredits(available: credits(40), requested: credits(41)))
        h.reject(.reserve(org.member(3), credits(41), timeoutMillis: minuteMillis, scope: .unscoped),
                 .insufficientCredits(available: credits(40), requested: credits(41)))
        #expect(try h.balance(org.member(3)).available == credits(40))
        try h.debit(org.member(3), credits(25))
        h.reject(.debit(org.member(2), credits(16), scope: .unscoped), .insufficientCredits(available: credits(15), requested: credits(16)))
        try h.debit(org.member(2), credits(15))
        #expect(try h.balance(org.pool).available == .zero)
    }

    @Test("the member limit is checked before the department allocation")
    func memberLimitCheckedBeforeDepartment() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.member(2), credits(95))
        h.reject(.debit(org.member(1), credits(31), scope: .unscoped), .memberLimitExceeded(remaining: credits(30), requested: credits(31)))
        h.reject(.debit(org.member(1), credits(6), scope: .unscoped), .departmentAllocationExceeded(remaining: credits(5), requested: credits(6)))
    }

    @Test("a member's reserve holds pool credits and counts against its caps until closed")
    func memberReserveCountsAgainstCaps() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let member = org.member(1)
        let hold = try h.reserve(member, credits(20))
        #expect(h.ledger.hold(hold)?.principal == member)
        var view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.held == credits(20) && view.usage(of: member)?.spent == .zero)
        #expect(view.usage(of: d1)?.held == credits(20))
        #expect(try h.balance(org.pool).held == credits(20))
        #expect(try h.balance(member).held == credits(20))
        #expect(try h.balance(member).available == credits(10))
        h.reject(.debit(member, credits(11), scope: .unscoped), .memberLimitExceeded(remaining: credits(10), requested: credits(11)))
        try h.succeed(.release(hold))
        view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.held == .zero && view.usage(of: d1)?.held == .zero)
        #expect(try h.balance(member).available == credits(30))
        let second = try h.reserve(member, credits(20))
        try h.succeed(.settle(second, actual: credits(12)))
        view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.spent == credits(12) && view.usage(of: member)?.held == .zero)
        #expect(view.usage(of: d1)?.spent == credits(12))
        #expect(try h.balance(org.pool).available == credits(188))
    }

    @Test("a frozen pool stops all member spending; a frozen member stops only that member")
    func frozenPoolBlocksMemberSpending() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let hold = try h.reserve(org.member(1), credits(5))
        try h.succeed(.freeze(org.pool))
        h.reject(.debit(org.member(1), credits(1), scope: .unscoped), .accountFrozen(org.pool))
        h.reject(.reserve(org.member(3), credits(1), timeoutMillis: minuteMillis, scope: .unscoped), .accountFrozen(org.pool))
        h.reject(.debit(org.pool, credits(1), scope: .unscoped), .accountFrozen(org.pool))
        // A hold already open can still be settled: the call has happened.
        try h.succeed(.settle(hold, actual: credits(5)))
        try h.succeed(.unfreeze(org.pool))
        try h.succeed(.freeze(org.member(1)))
        #expect(try h.balance(org.member(1)).isFrozen)
        h.reject(.debit(org.member(1), credits(1), scope: .unscoped), .accountFrozen(org.member(1)))
        try h.debit(org.member(2), credits(1))
    }

    @Test("starting a period resets spent counters but keeps open holds counted")
    func startPeriodResetsSpentCounters() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.member(1), credits(25))
        let hold = try h.reserve(org.member(1), credits(5))
        try h.debit(org.member(2), credits(60))
        h.reject(.debit(org.member(2), credits(11), scope: .unscoped), .departmentAllocationExceeded(remaining: credits(10), requested: credits(11)))
        let (_, entry) = try h.succeedWithEntry(.startPeriod(org.tenant))
        #expect(entry.kind == .periodStarted)
        let view = try h.organisation(org.tenant)
        #expect(view.periodsStarted == 1)
        #expect(view.usage(of: org.member(1))?.spent == .zero)
        #expect(view.usage(of: org.member(1))?.held == credits(5))
        #expect(view.usage(of: org.member(2))?.spent == .zero)
        #expect(view.usage(of: d1)?.spent == .zero && view.usage(of: d1)?.held == credits(5))
        #expect(try h.balance(org.member(1)).available == credits(25))
        try h.debit(org.member(1), credits(25))
        try h.debit(org.member(2), credits(70))
        h.reject(.debit(org.member(2), Millicredits(1), scope: .unscoped), .departmentAllocationExceeded(remaining: .zero, requested: Millicredits(1)))
        try h.succeed(.settle(hold, actual: credits(5)))
        #expect(try h.organisation(org.tenant).usage(of: d1)?.spent == credits(100))
        #expect(try h.balance(org.pool).available == credits(15))
    }

    @Test("caps can be raised, lowered and removed")
    func capsCanBeChanged() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.member(1), credits(30))
        let (raised, _) = try h.succeedWithEntry(.setMemberLimit(org.member(1), perPeriod: credits(40)))
        #expect(raised.amount == credits(40))
        #expect(try h.organisation(org.tenant).usage(of: org.member(1))?.cap == credits(40))
        try h.debit(org.member(1), credits(10))
        try h.succeed(.setMemberLimit(org.member(1), perPeriod: nil))
        #expect(try h.organisation(org.tenant).usage(of: org.member(1))?.cap == nil)
        try h.debit(org.member(1), credits(50)) // department allocation still binds: 90 of 100 spent
        h.reject(.debit(org.member(1), credits(11), scope: .unscoped), .departmentAllocationExceeded(remaining: credits(10), requested: credits(11)))
        try h.succeed(.setDepartmentAllocation(org.tenant, d1, perPeriod: credits(150)))
        #expect(try h.organisation(org.tenant).usage(of: d1)?.cap == credits(150))
        try h.debit(org.member(1), credits(11))
        try h.succeed(.setDepartmentAllocation(org.tenant, d1, perPeriod: nil))
        try h.debit(org.member(1), credits(40))
        #expect(try h.balance(org.pool).available == credits(59))
        // Lowering a cap to exactly what was spent stops further spending.
        try h.succeed(.setMemberLimit(org.member(2), perPeriod: .zero))
        h.reject(.debit(org.member(2), Millicredits(1), scope: .unscoped), .memberLimitExceeded(remaining: .zero, requested: Millicredits(1)))
    }

    @Test
    func loweringCapBelowSpendingKeepsInvariants() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.member(2), credits(80))
        // Either outcome is defensible (reject, or record the excess as overrun), but the
        // harness's invariant check after the command must pass.
        h.apply(.setDepartmentAllocation(org.tenant, d1, perPeriod: credits(50)))
        h.apply(.setMemberLimit(org.member(2), perPeriod: credits(10)))
        h.reject(.debit(org.member(2), Millicredits(1), scope: .unscoped))
    }

    @Test("a settle above the reserve that passes a cap is recorded as overrun")
    func settleAboveCapRecordedAsOverrun() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let member = org.member(1)
        let hold = try h.reserve(member, credits(25))
        let receipt = try h.succeed(.settle(hold, actual: credits(40)))
        #expect(receipt.amount == credits(40))
        var view = try h.organisation(org.tenant)
        let usage = try #require(view.usage(of: member))
        #expect(usage.spent == credits(40) && usage.held == .zero && usage.overrun == credits(10))
        #expect(view.usage(of: d1)?.spent == credits(40) && view.usage(of: d1)?.overrun == .zero)
        #expect(try h.balance(org.pool).available == credits(160), "the whole actual cost was charged")
        h.reject(.debit(member, Millicredits(1), scope: .unscoped), .memberLimitExceeded(remaining: .zero, requested: Millicredits(1)))

        // The department can overrun too.
        let big = try h.reserve(org.member(2), credits(60))
        try h.succeed(.settle(big, actual: credits(90)))
        view = try h.organisation(org.tenant)
        #expect(view.usage(of: d1)?.spent == credits(130) && view.usage(of: d1)?.overrun == credits(30))
        h.reject(.debit(org.member(2), Millicredits(1), scope: .unscoped),
                 .departmentAllocationExceeded(remaining: .zero, requested: Millicredits(1)))

        try h.succeed(.startPeriod(org.tenant))
        view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.overrun == .zero && view.usage(of: d1)?.overrun == .zero)
        try h.debit(member, credits(30))
    }

    @Test("a member's settle the pool cannot cover leaves debt on the pool")
    func memberSettleBeyondPoolRecordsPoolDebt() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h, poolCredits: 20)
        let hold = try h.reserve(org.member(2), credits(20))
        let receipt = try h.succeed(.settle(hold, actual: credits(35)))
        #expect(receipt.availableAfter == credits(-15))
        #expect(try h.balance(org.pool).debt == credits(15))
        h.reject(.debit(org.member(3), Millicredits(1), scope: .unscoped), .insufficientCredits(available: credits(-15), requested: Millicredits(1)))
        try h.grant(org.pool, credits(100))
        #expect(try h.balance(org.pool).available == credits(85))
    }

    @Test("refunding a member's debit gives back pool credits and cap headroom")
    func memberRefundRestoresHeadroom() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let member = org.member(1)
        let debitKey = h.freshKey()
        try h.debit(member, credits(20), key: debitKey)
        h.reject(.refund(org.pool, debit: debitKey, credits(5)), .unknownDebit(debitKey))
        h.reject(.refund(org.member(2), debit: debitKey, credits(5)), .unknownDebit(debitKey))
        let (receipt, entry) = try h.succeedWithEntry(.refund(member, debit: debitKey, credits(15)))
        #expect(entry.account == org.pool && entry.member == member)
        #expect(receipt.availableAfter == credits(25))
        let view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.spent == credits(5) && view.usage(of: d1)?.spent == credits(5))
        #expect(try h.balance(org.pool).available == credits(195))
        #expect(try h.balance(member).consumed == credits(5))
    }

    @Test("refunding a previous period's charge gives back at most this period's spending")
    func memberRefundAcrossPeriods() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        let member = org.member(1)
        let debitKey = h.freshKey()
        try h.debit(member, credits(20), key: debitKey)
        try h.succeed(.startPeriod(org.tenant))
        try h.debit(member, credits(5))
        try h.succeed(.refund(member, debit: debitKey, credits(20)))
        let view = try h.organisation(org.tenant)
        #expect(view.usage(of: member)?.spent == .zero, "never below zero")
        #expect(view.usage(of: d1)?.spent == .zero)
        #expect(try h.balance(org.pool).available == credits(195))
        #expect(try h.balance(member).available == credits(30))
    }

    @Test("the organisation view reports every department and member with its usage")
    func organisationViewReportsUsage() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.member(1), credits(3))
        _ = try h.reserve(org.member(3), credits(4))
        let view = try h.organisation(org.tenant)
        #expect(view.tenant == org.tenant)
        #expect(view.departments.map(\.id) == [d1, d2])
        #expect(view.departments.map(\.costCentre) == ["CC-1", "CC-2"])
        #expect(view.members.map(\.account) == [org.member(1), org.member(2), org.member(3)])
        #expect(view.members.map(\.department) == [d1, d1, d2])
        #expect(view.members.map(\.usage.cap) == [credits(30), nil, credits(50)])
        #expect(view.members.map(\.usage.spent) == [credits(3), .zero, .zero])
        #expect(view.members.map(\.usage.held) == [.zero, .zero, credits(4)])
        #expect(view.departments.map(\.usage.spent) == [credits(3), .zero])
        #expect(view.departments.map(\.usage.held) == [.zero, credits(4)])
        #expect(view.departments.map(\.usage.cap) == [credits(100), nil])
    }

    @Test("a pool debit by the organisation itself bypasses member and department caps")
    func poolDebitBypassesCaps() throws {
        var h = LedgerHarness()
        let org = try makeOrganisation(&h)
        try h.debit(org.pool, credits(150))
        let view = try h.organisation(org.tenant)
        #expect(view.usage(of: d1)?.spent == .zero)
        #expect(try h.balance(org.member(1)).available == credits(30))
        #expect(try h.balance(org.member(3)).available == credits(50))
        #expect(try h.balance(org.member(2)).available == credits(50), "the pool is the binding cap now")
    }
}
