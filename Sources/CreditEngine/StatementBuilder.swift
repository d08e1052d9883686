@_spi(Plumbing) import CreditCore

/// Makes a statement's lines while its shard is replayed (docs/statements.md): sees every
/// record after it is applied, keeps the standing of each account of the subject's tenant
/// after its last entry (so it knows what each entry changed), captures the opening at
/// the first record at or after `from` and the closing at the first record after `to`,
/// and emits the subject's entries in between. Memory: one standing per account of the
/// tenant that had an entry, and one department per member of an organisation.
struct StatementBuilder {
    let statement: Statement
    let shard: Int
    let tenant: TenantID
    let pool: AccountID
    /// Each account's standing after its last entry (an account never seen stands at zero:
    /// the replay starts from an empty ledger, and an account's first entry opens it).
    var standings: [AccountID: Statement.Standing] = [:]
    /// The subject's own and the pool's standing at the interval's start and end.
    var opening: (own: Statement.Standing, pool: Statement.Standing)?
    var closing: (own: Statement.Standing, pool: Statement.Standing)?
    var header: Statement.Header?
    /// Members' departments (nil: not a member), refreshed from the ledger when an
    /// organisation's entry names an account not seen yet.
    var departments: [UInt32: DepartmentID?] = [:]
    var costCentres: [DepartmentID: String] = [:]
    /// The subject's tenant was opened as an organisation (learnt from its `openTenant`).
    var isOrganisation = false
    var entries = 0
    var change: Int64 = 0
    /// Per department (nil: the pool's own entries): rows and their changes to the pool.
    var totals: [DepartmentID?: (entries: Int, change: Int64)] = [:]

    init(statement: Statement, shard: Int) {
        self.statement = statement
        self.shard = shard
        tenant = statement.subject.tenant
        pool = AccountID(tenant: tenant, number: 0)
    }

    private var subjectAccount: AccountID {
        if case .account(let account) = statement.subject { return account }
        return pool
    }

    private func capture() -> (own: Statement.Standing, pool: Statement.Standing) {
        (standings[subjectAccount] ?? .zero, standings[pool] ?? .zero)
    }

    mutating func visit(lsn: UInt64, time: Timestamp, command: Command, ledger: inout Ledger,
                        emit: (Statement.Line) throws -> Void) throws {
        if opening == nil, statement.from.map({ time >= $0 }) ?? true { opening = capture() }
        if closing == nil, let to = statement.to, time > to { closing = capture() }
        guard command.tenant == tenant, let entry = ledger.recentEntries.newest else { return }
        if entry.error == nil { learnOrganisation(from: command) }
        guard closing == nil else { return }
        var change: Int64 = 0
        var after = Statement.Standing.zero
        if let account = entry.account {
            let before = standings[account] ?? .zero
            after = standing(of: account, in: ledger) ?? before
            change = after.balance.rawValue - before.balance.rawValue
            standings[account] = after
        }
        guard opening != nil else { return }
        let department = isOrganisation ? department(of: entry, in: ledger) : nil
        switch statement.subject {
        case .account(let account):
            guard entry.account == account || entry.member == account else { return }
        case .department(_, let wanted):
            guard department == wanted else { return }
        case .organisation:
            break
        }
        if header == nil { try startHeader(ledger: ledger, emit: emit) }
        let balanceAccount = header!.balanceAccount
        entries += 1
        if entry.account == balanceAccount { self.change = try add(self.change, change) }
        if case .account = statement.subject {} else {
            var total = totals[department] ?? (0, 0)
            total.entries += 1
            if entry.account == balanceAccount { total.change = try add(total.change, change) }
            totals[department] = total
        }
        try emit(.entry(Statement.Row(lsn: lsn, entry: entry, change: Millicredits(change), balanceAfter: after.balance,
                                      department: department, costCentre: department.flatMap { costCentres[$0] })))
    }

    /// After the last record: the header if no entry made it, the checks of the subject, and
    /// the summary.
    mutating func finish(ledger: Ledger, recordsReplayed: Int, emit: (Statement.Line) throws -> Void) throws {
        switch statement.subject {
        case .account(let account):
            guard ledger.balance(of: account, at: ledger.lastTime) != nil else { throw StatementError.unknownAccount(account) }
        case .department(let tenant, let department):
            guard let organisation = ledger.organisation(tenant) else { throw StatementError.notAnOrganisation(tenant) }
            guard organisation.departments.contains(where: { $0.id == department }) else {
                throw StatementError.unknownDepartment(tenant, department)
            }
        case .organisation(let tenant):
            guard isOrganisation else { throw StatementError.notAnOrganisation(tenant) }
        }
        if opening == nil { opening = capture() }
        if closing == nil { closing = capture() }
        if header == nil { try startHeader(ledger: ledger, emit: emit) }
        let header = header!
        let closingStanding = header.balanceAccount == subjectAccount ? closing!.own : closing!.pool
        let others = try add(closingStanding.balance.rawValue - header.opening.balance.rawValue, -change)
        if case .department(_, let department) = statement.subject, totals[department] == nil {
            totals[department] = (0, 0)
        }
        let costCentres = totals.sorted { ($0.key?.rawValue ?? 0, $0.key == nil ? 0 : 1) < ($1.key?.rawValue ?? 0, $1.key == nil ? 0 : 1) }
            .map { department, total in
                Statement.CostCentreTotal(department: department, costCentre: department.flatMap { self.costCentres[$0] },
                                          entries: total.entries, change: Millicredits(total.change))
            }
        try emit(.summary(Statement.Summary(closing: closingStanding, entries: entries, change: Millicredits(change),
                                            othersChange: Millicredits(others), costCentres: costCentres,
                                            recordsReplayed: recordsReplayed)))
    }

    /// The header, once the subject's first entry in the interval is known (or at the end):
    /// by then the ledger knows whether an account is a member, whose balance is the pool's.
    private mutating func startHeader(ledger: Ledger, emit: (Statement.Line) throws -> Void) throws {
        let balanceAccount: AccountID
        if case .account(let account) = statement.subject, !(isOrganisation && account.number != 0) {
            balanceAccount = account
        } else {
            balanceAccount = pool
        }
        let opening = opening ?? capture()
        let header = Statement.Header(subject: statement.subject, from: statement.from, to: statement.to, shard: shard,
                                      balanceAccount: balanceAccount,
                                      opening: balanceAccount == subjectAccount ? opening.own : opening.pool)
        self.header = header
        try emit(.header(header))
    }

    /// The statement's measure of an account: its live grants' credits that are neither held
    /// nor in grace, minus its debt (time-independent, so only entries move it).
    private func standing(of account: AccountID, in ledger: Ledger) -> Statement.Standing? {
        guard let balance = ledger.balance(of: account, at: ledger.lastTime) else { return nil }
        return Statement.Standing(balance: Millicredits(balance.remaining.rawValue - balance.inGrace.rawValue - balance.debt.rawValue),
                                  held: balance.held, debt: balance.debt)
    }

    /// Departments, their cost centres and members, from the commands that open them (a
    /// lookup in the ledger's organisation view costs a walk of all its members).
    private mutating func learnOrganisation(from command: Command) {
        switch command.action {
        case .openTenant(_, .organisation(let terms)):
            isOrganisation = true
            for department in terms { costCentres[department.id] = department.costCentre }
        case .openDepartment(_, let department):
            costCentres[department.id] = department.costCentre
        case .openAccount(let account, .member(let department, _)):
            departments[account.number] = department
        default:
            break
        }
    }

    /// The department of the member who asked, else of the member whose account it is; nil
    /// for the pool's own entries.
    private mutating func department(of entry: LedgerEntry, in ledger: Ledger) -> DepartmentID? {
        for account in [entry.member, entry.account] {
            guard let account, account.tenant == tenant, account.number != 0 else { continue }
            if departments[account.number] == nil, let organisation = ledger.organisation(tenant) {
                for member in organisation.members { departments[member.account.number] = member.department }
                for department in organisation.departments { costCentres[department.id] = department.costCentre }
                if departments[account.number] == nil { departments[account.number] = .some(nil) }
            }
            if let department = departments[account.number] ?? nil { return department }
        }
        return nil
    }

    private func add(_ left: Int64, _ right: Int64) throws(StatementError) -> Int64 {
        let (sum, overflow) = left.addingReportingOverflow(right)
        if overflow { throw .overflow }
        return sum
    }
}
