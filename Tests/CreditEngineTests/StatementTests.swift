#if canImport(Glibc)
import Glibc
#endif
import CreditEngine
import DurabilityTestSupport
import Synchronization
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

// Statements from the log (issue 16 point 6; docs/statements.md): complete across snapshots,
// the archive and the live log, reconciled with the engine's live balances, the same after a
// restart, filtered by interval, per department and organisation; a pruned archive and bad
// interval bounds are typed errors. Randomized runs print their seed (CREDITS_TEST_SEED
// replays one).

/// A statement's lines, taken apart (and checked to be one header, rows, one summary).
private struct Collected: Equatable {
    var header: Statement.Header
    var rows: [Statement.Row]
    var summary: Statement.Summary
}

private func collect(_ statement: Statement, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Collected {
    var header: Statement.Header?
    var rows: [Statement.Row] = []
    var summary: Statement.Summary?
    for try await line in statement {
        switch line {
        case .header(let value):
            #expect(header == nil && rows.isEmpty && summary == nil, "a header not first", sourceLocation: sourceLocation)
            header = value
        case .entry(let row):
            #expect(header != nil && summary == nil, "an entry outside header...summary", sourceLocation: sourceLocation)
            rows.append(row)
        case .summary(let value):
            #expect(summary == nil, "two summaries", sourceLocation: sourceLocation)
            summary = value
        }
    }
    return Collected(header: try #require(header, sourceLocation: sourceLocation), rows: rows,
                     summary: try #require(summary, sourceLocation: sourceLocation))
}

/// The statement's measure of an account in the live engine: credits neither held nor in
/// grace, minus debt (docs/statements.md).
private func liveStanding(_ engine: CreditEngine, _ account: AccountID) async -> Statement.Standing {
    guard let balance = await engine.balance(of: account) else { return .zero }
    return Statement.Standing(balance: Millicredits(balance.remaining.rawValue - balance.inGrace.rawValue - balance.debt.rawValue),
                              held: balance.held, debt: balance.debt)
}

/// opening + the rows' changes to the balance account = closing, row by row when nothing
/// outside the statement moves that account.
private func expectReconciles(_ statement: Collected, othersZero: Bool, _ context: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
    let account = statement.header.balanceAccount
    var running = statement.header.opening.balance.rawValue
    var sum: Int64 = 0
    for row in statement.rows where row.entry.account == account {
        sum += row.change.rawValue
        running += row.change.rawValue
        if othersZero {
            #expect(row.balanceAfter.rawValue == running, "\(context): lsn \(row.lsn) balance after", sourceLocation: sourceLocation)
        }
        if row.entry.error != nil { #expect(row.change == .zero, "\(context): a rejected entry moved credits", sourceLocation: sourceLocation) }
    }
    #expect(sum == statement.summary.change.rawValue, "\(context): change total", sourceLocation: sourceLocation)
    #expect(statement.header.opening.balance.rawValue + sum + statement.summary.othersChange.rawValue
            == statement.summary.closing.balance.rawValue, "\(context): opening + entries + others ≠ closing",
            sourceLocation: sourceLocation)
    #expect(statement.summary.entries == statement.rows.count, "\(context): entry count", sourceLocation: sourceLocation)
    if othersZero { #expect(statement.summary.othersChange == .zero, "\(context): others", sourceLocation: sourceLocation) }
}

/// What docs/statements.md says some kinds do to the balance (the ones with no exception:
/// a release or refund onto a grant that expired meanwhile gives back less; a charge on an
/// own key records a price and moves nothing).
private func expectKindRules(_ statement: Collected, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let spending: Set<EntryKind> = [.debited, .reserved]
    let adding: Set<EntryKind> = [.granted, .adjusted]
    let none: Set<EntryKind> = [.tenantOpened, .accountOpened, .frozen, .unfrozen, .memberLimitSet, .departmentAllocationSet,
                                .periodStarted, .keyRegistered, .keyRemoved, .keyPolicySet]
    for row in statement.rows where row.entry.account == statement.header.balanceAccount && row.entry.error == nil {
        let kind = row.entry.kind
        let expected: Int64? = spending.contains(kind) ? -row.entry.amount.rawValue : adding.contains(kind) ? row.entry.amount.rawValue
            : none.contains(kind) ? 0 : nil
        if let expected {
            #expect(row.change.rawValue == expected, "\(context): lsn \(row.lsn) \(kind) of \(row.entry.amount) changed \(row.change)",
                    sourceLocation: sourceLocation)
        }
    }
}

/// A run of the durability workload (individuals and one organisation, valid and invalid
/// commands, holds, refunds, expiries, subscriptions) in a temporary data directory with
/// small segments, frequent snapshots and fillers, so the log has archived segments,
/// snapshots and a live tail. (A real directory, not the simulated disk: that one writes
/// about 0.5 µs per byte in a debug build, and the fillers write tens of MiB.)
private final class StatementRun {
    let seed: UInt64
    var random: DurabilityRandom
    let directory: String
    let clock = ManualClock(durabilityStart)
    let recorder = EntryRecorder()
    var configuration: EngineConfiguration
    var workloads: [DurabilityWorkload]
    var engine: CreditEngine?
    /// Accounts (one per shard) that only receive fillers: rejected adjustments with a 1 MiB
    /// reason, which are logged whole and roll the 8 MiB segments over.
    let fillers: [AccountID]
    static let fillerReason = String(repeating: "f", count: 1 << 20)
    /// Members of each workload's organisation and their departments (DurabilityWorkload.prologue).
    static let memberDepartments: [UInt32: DepartmentID] = [1: DepartmentID(1), 2: DepartmentID(1), 3: DepartmentID(2)]

    init(_ label: String, shards: Int = 2, archivedSegmentsKept: Int? = nil) throws {
        let seed = DurabilitySeed.make(label)
        var random = DurabilityRandom(seed: seed)
        self.seed = seed
        directory = try makeTemporaryDirectory("statements")
        let storage = StorageConfiguration(directory: directory + "/data", log: smallLog(), snapshotEveryRecords: 40,
                                           snapshotEveryMillis: nil, archivedSegmentsKept: archivedSegmentsKept)
        configuration = EngineConfiguration(shardCount: shards, ledger: LedgerConfiguration(idempotencyKeysMax: 1 << 14),
                                            recentEntriesPerShard: 8, storage: storage)
        let recorder = recorder
        configuration.onEntry = { shard, entry in recorder.record(shard, entry) }
        workloads = (0 ..< 2).map { DurabilityWorkload(seed: random.next(), tenantBase: 1 + 100 * UInt64($0)) }
        self.random = random
        var fillers: [AccountID] = []
        var tenant: UInt64 = 90_000
        while fillers.count < shards {
            if CreditEngine.shardIndex(for: TenantID(tenant), shardCount: shards) == fillers.count {
                fillers.append(AccountID(tenant: TenantID(tenant), number: 0))
            }
            tenant += 1
        }
        self.fillers = fillers
    }

    deinit { removeTree(directory) }

    func open() async throws {
        engine = try await CreditEngine.open(configuration: configuration, clock: clock)
    }

    func close() async {
        await engine?.close()
        engine = nil
    }

    /// `count` steps of the workloads, with a filler on every shard every `fillerEvery` steps.
    func run(_ count: Int, fillerEvery: Int = 12) async throws {
        let engine = try #require(engine)
        for step in 0 ..< count {
            let index = random.below(workloads.count)
            var batch: [Command] = []
            if workloads[index].issued.isEmpty {
                batch = workloads[index].prologue()
                for filler in fillers {
                    batch.append(Command(key: workloads[index].freshKey(), .openTenant(filler.tenant, .individual)))
                    batch.append(Command(key: workloads[index].freshKey(), .openAccount(filler, .standard)))
                }
            } else {
                for _ in 0 ..< (random.chance(15) ? 2 + random.below(6) : 1) { batch.append(workloads[index].next()) }
            }
            if fillerEvery < .max, step % fillerEvery == fillerEvery - 1 {
                for filler in fillers {
                    batch.append(Command(key: workloads[index].freshKey(), .adjust(filler, credits(1), reason: Self.fillerReason)))
                }
            }
            clock.advance(millis: min(workloads[index].pause(), 6 * 3_600_000))
            let outcomes = await engine.execute(batch: batch)
            for (command, outcome) in zip(batch, outcomes) { workloads[index].learn(command, outcome) }
        }
    }

    func statement(_ subject: Statement.Subject, from: Timestamp? = nil, to: Timestamp? = nil) async throws -> Collected {
        try await collect(try Statement(subject, from: from, to: to, configuration: configuration))
    }

    var organisations: [TenantID] { workloads.map(\.organisation) }
    var accounts: [AccountID] { workloads.flatMap(\.accounts) }

    /// The department a statement files an organisation's entry under.
    static func department(of entry: LedgerEntry) -> DepartmentID? {
        for account in [entry.member, entry.account] {
            if let account, account.number != 0, let department = memberDepartments[account.number] { return department }
        }
        return nil
    }

    /// The statements of the run over the whole log: each account of the first workload, the
    /// members of the second, each department, each organisation. (Each replays a shard with
    /// its fillers: about a second in a debug build, most of it hashing the fillers' text.)
    func allStatements() async throws -> [Statement.Subject: Collected] {
        var subjects: [Statement.Subject] = workloads[0].accounts.map { .account($0) }
        subjects += workloads[1].accounts.filter { $0.tenant == workloads[1].organisation && $0.number != 0 }.map { .account($0) }
        for organisation in organisations {
            subjects.append(.organisation(organisation))
            subjects += [DepartmentID(1), DepartmentID(2)].map { .department(organisation, $0) }
        }
        var statements: [Statement.Subject: Collected] = [:]
        for subject in subjects { statements[subject] = try await statement(subject) }
        return statements
    }
}

@Suite("Statements: complete from the log, reconciled, filtered by interval, per cost centre")
struct StatementTests {
    /// Checks every statement of `run` against what the live engine says and what it
    /// recorded (every entry since the start, through `onEntry`).
    private func checkAgainstLive(_ run: StatementRun, _ statements: [Statement.Subject: Collected], _ context: String) async throws {
        let engine = try #require(run.engine)
        let recorded = run.recorder.all.map(\.entry)
        for (subject, statement) in statements {
            let label = "\(context), \(subject) (seed \(run.seed))"
            switch subject {
            case .account(let account):
                let member = account.number != 0 && run.organisations.contains(account.tenant)
                expectReconciles(statement, othersZero: !member, label)
                expectKindRules(statement, label)
                let expected = recorded.filter { $0.account == account || $0.member == account }
                #expect(statement.rows.map(\.entry) == expected, "\(label): the entries are not every recorded entry")
                let balanceAccount = member ? AccountID(tenant: account.tenant, number: 0) : account
                #expect(statement.header.balanceAccount == balanceAccount, "\(label)")
                #expect(statement.summary.closing == (await liveStanding(engine, balanceAccount)), "\(label): closing ≠ live")
            case .organisation(let tenant):
                expectReconciles(statement, othersZero: true, label)
                expectKindRules(statement, label)
                let expected = recorded.filter { $0.tenant == tenant }
                #expect(statement.rows.map(\.entry) == expected, "\(label): the entries are not every recorded entry")
                let pool = AccountID(tenant: tenant, number: 0)
                #expect(statement.summary.closing == (await liveStanding(engine, pool)), "\(label): closing ≠ live")
                // Per cost centre: the departments' and the pool's own totals add up.
                #expect(statement.summary.costCentres.reduce(0) { $0 + $1.entries } == statement.rows.count, "\(label)")
                #expect(statement.summary.costCentres.reduce(0) { $0 + $1.change.rawValue } == statement.summary.change.rawValue,
                        "\(label): cost centres do not add up to the pool's change")
                #expect(statement.summary.costCentres.compactMap(\.costCentre).allSatisfy { ["CC-ENG", "CC-OPS"].contains($0) }, "\(label)")
                #expect(statement.rows.allSatisfy { $0.department == StatementRun.department(of: $0.entry) }, "\(label): departments")
            case .department(let tenant, let department):
                expectReconciles(statement, othersZero: false, label)
                let expected = recorded.filter { $0.tenant == tenant && StatementRun.department(of: $0) == department }
                #expect(statement.rows.map(\.entry) == expected, "\(label): the entries are not the department's")
                let organisation = try #require(statements[.organisation(tenant)])
                #expect(statement.header.opening == organisation.header.opening && statement.summary.closing == organisation.summary.closing,
                        "\(label): the pool's opening and closing are the organisation's")
                let centre = organisation.summary.costCentres.first { $0.department == department }
                let total = statement.summary.costCentres
                #expect(total.count == 1 && total[0].department == department && total[0].entries == (centre?.entries ?? 0)
                        && total[0].change == (centre?.change ?? .zero)
                        && total[0].costCentre == (department == DepartmentID(1) ? "CC-ENG" : "CC-OPS"),
                        "\(label): the department's total is not the organisation's line for it")
            }
        }
    }

    @Test("statements reconcile with the live balances across snapshots, the archive and the live log, and are the same after recovery")
    func reconcileAcrossSnapshotArchiveAndLiveLog() async throws {
        let run = try StatementRun("StatementTests.reconcile")
        try await run.open()
        // About 14 fillers a shard: 7 fill a segment, so the first goes to the archive once
        // two snapshots follow the second's start.
        try await run.run(400, fillerEvery: 28)
        _ = try await run.engine!.snapshot()
        try await run.run(40, fillerEvery: 1_000) // a live tail after the last snapshot
        let storage = try #require(run.configuration.storage)
        for shard in 0 ..< 2 {
            let disk = PosixFileSystem()
            let archived = try disk.contentsOfDirectory(storage.archiveDirectory(shard)).filter { $0.hasSuffix(".wal") }
            let snapshots = try disk.contentsOfDirectory(storage.snapshotDirectory(shard)).filter { $0.hasSuffix(".snap") }
            let live = try disk.contentsOfDirectory(storage.walDirectory(shard)).filter { $0.hasSuffix(".wal") }
            #expect(!archived.isEmpty && !snapshots.isEmpty && !live.isEmpty,
                    "shard \(shard): archive \(archived), snapshots \(snapshots), live \(live) (seed \(run.seed))")
        }
        let before = try await run.allStatements()
        try await checkAgainstLive(run, before, "before restart")
        #expect(before.values.contains { $0.rows.count > 20 }, "the workload made too few entries to mean anything")

        // Recovery from a snapshot: the engine's recent statement knows nothing before it,
        // the statement from the log is unchanged.
        await run.close()
        try await run.open()
        #expect(run.engine!.recoveryReports.allSatisfy { $0.snapshot != nil }, "recovery did not start from a snapshot")
        let after = try await run.allStatements()
        #expect(after == before, "statements changed across a restart (seed \(run.seed))")
        let account = run.accounts[0]
        #expect(await run.engine!.recentStatement(of: account).count < before[.account(account)]!.rows.count)

        try await run.run(60)
        try await checkAgainstLive(run, try await run.allStatements(), "after more commands")
        await run.close()
    }

    @Test("an interval holds exactly the entries in it, between the balances at its ends")
    func intervalFiltering() async throws {
        let run = try StatementRun("StatementTests.interval")
        try await run.open()
        try await run.run(250, fillerEvery: .max)
        var random = DurabilityRandom(seed: run.seed ^ 0x5EED)
        let times = run.recorder.all.map(\.entry.time)
        let subjects: [Statement.Subject] = [.account(run.accounts[0]), .account(run.accounts[4]), .organisation(run.organisations[0]),
                                             .account(AccountID(tenant: run.organisations[1], number: 2))]
        for subject in subjects {
            let whole = try await run.statement(subject)
            var isMember = false
            if case .account(let account) = subject { isMember = account.number != 0 && run.organisations.contains(account.tenant) }
            for round in 0 ..< 6 {
                var bounds = [random.pick(times), random.pick(times)].sorted()
                if round == 0 { bounds = [times[0], times[times.count - 1]] }
                if round == 1 { bounds[1] = bounds[0] } // a single instant
                let (from, to) = (bounds[0], bounds[1])
                let part = try await run.statement(subject, from: from, to: to)
                let label = "\(subject) \(from)...\(to) (seed \(run.seed))"
                #expect(part.rows == whole.rows.filter { $0.entry.time >= from && $0.entry.time <= to }, "\(label): rows")
                expectReconciles(part, othersZero: !isMember, label)
                // The balance at each end is the one after the last change before it.
                let changes = whole.rows.filter { $0.entry.account == whole.header.balanceAccount }
                if !isMember {
                    let opening = changes.last { $0.entry.time < from }?.balanceAfter ?? .zero
                    let closing = changes.last { $0.entry.time <= to }?.balanceAfter ?? .zero
                    #expect(part.header.opening.balance == opening && part.summary.closing.balance == closing, "\(label): ends")
                }
            }
            // Before the first and after the last record: no entries, both ends equal.
            let after = try await run.statement(subject, from: times[times.count - 1].adding(millis: 1))
            #expect(after.rows.isEmpty && after.header.opening == whole.summary.closing && after.summary.closing == whole.summary.closing)
            let before = try await run.statement(subject, to: Timestamp(millisSinceEpoch: times[0].millisSinceEpoch - 1))
            #expect(before.rows.isEmpty && before.header.opening == .zero && before.summary.closing == .zero)
        }
        await run.close()
    }

    @Test("a pruned archive makes no statement: statement_incomplete, with the shard and LSNs")
    func prunedArchiveIsATypedError() async throws {
        let run = try StatementRun("StatementTests.pruned", shards: 1, archivedSegmentsKept: 0)
        try await run.open()
        try await run.run(200, fillerEvery: 4)
        _ = try await run.engine!.snapshot()
        await run.close()
        do {
            _ = try await run.statement(.account(run.accounts[0]))
            Issue.record("a statement over a pruned log was made (seed \(run.seed))")
        } catch let error as StatementError {
            guard case .logStartPruned(let shard, let needed, let found, _) = error else {
                Issue.record("expected logStartPruned, got \(error)")
                return
            }
            #expect(shard == 0 && needed == 1 && found > 1 && error.code == "statement_incomplete", "\(error)")
        }
    }

    @Test("unknown subjects, an empty interval and a configuration without storage are typed errors")
    func subjectErrors() async throws {
        let run = try StatementRun("StatementTests.subjects")
        try await run.open()
        try await run.run(30, fillerEvery: .max)
        await run.close()
        let individual = run.workloads[0].individuals[0]
        let cases: [(Statement.Subject, StatementError)] = [
            (.account(AccountID(tenant: TenantID(777_777), number: 0)), .unknownAccount(AccountID(tenant: TenantID(777_777), number: 0))),
            (.organisation(individual), .notAnOrganisation(individual)),
            (.department(run.organisations[0], DepartmentID(9)), .unknownDepartment(run.organisations[0], DepartmentID(9))),
        ]
        for (subject, expected) in cases {
            await #expect(throws: expected) { _ = try await run.statement(subject) }
        }
        #expect(throws: StatementError.emptyInterval(from: Timestamp(millisSinceEpoch: 2), to: Timestamp(millisSinceEpoch: 1))) {
            _ = try Statement(.organisation(individual), from: Timestamp(millisSinceEpoch: 2), to: Timestamp(millisSinceEpoch: 1),
                              configuration: run.configuration)
        }
        #expect(throws: StatementError.noStorage) { _ = try Statement(.organisation(individual), configuration: EngineConfiguration()) }
    }

    @Test("iteration can stop early: the replay thread ends, and the next statement is whole")
    func stoppingEarly() async throws {
        let run = try StatementRun("StatementTests.early")
        try await run.open()
        try await run.run(120, fillerEvery: .max)
        await run.close()
        let subject = Statement.Subject.organisation(run.organisations[0])
        for _ in 0 ..< 3 {
            for try await line in try Statement(subject, configuration: run.configuration) {
                if case .entry = line { break }
            }
        }
        let whole = try await run.statement(subject)
        #expect(whole.rows.count == run.recorder.all.filter { $0.entry.tenant == run.organisations[0] }.count)
    }

    @Test("interval bounds: RFC 3339 and milliseconds since 1970 parse; anything else is invalid_time",
          arguments: [
            ("0", 0), ("1765152000000", 1_765_152_000_000), ("2025-12-08", 1_765_152_000_000),
            ("2025-12-08T00:00:00Z", 1_765_152_000_000), ("2025-12-08t00:00:00.5z", 1_765_152_000_500),
            ("2025-12-08 01:30:00.250+01:30", 1_765_152_000_250), ("2025-12-07T23:00:00-01:00", 1_765_152_000_000),
            ("2024-02-29T12:00:00.123000Z", 1_709_208_000_123), ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
          ] as [(String, Int64)])
    func validTimes(text: String, millis: Int64) throws {
        #expect(try Statement.parseTime(text) == Timestamp(millisSinceEpoch: millis))
    }

    @Test("bad interval bounds are refused with the reason",
          arguments: ["", "yesterday", "-5", "1e9", "253402300800000", "99999999999999999999", "2025-13-01", "2025-02-29",
                      "2025-12-08T24:00:00Z", "2025-12-08T23:59:60Z", "2025-12-08T10:00:00", "2025-12-08T10:00:00.1234Z",
                      "2025-12-08T10:00Z", "2025-12-08T10:00:00+1", "1969-12-31T23:59:59Z", "2025-12-08T10:00:00Z trailing",
                      "2025-12-08T10:00:00.Z", "١٢٣"])
    func invalidTimes(text: String) {
        do {
            let time = try Statement.parseTime(text)
            Issue.record("\(text.debugDescription) parsed as \(time)")
        } catch {
            #expect(error.code == "invalid_time", "\(error)")
        }
    }

    @Test("times print as RFC 3339 in UTC with milliseconds, and parse back")
    func formatTime() throws {
        #expect(Statement.formatTime(Timestamp(millisSinceEpoch: 1_765_152_000_250)) == "2025-12-08T00:00:00.250Z")
        var random = DurabilityRandom(seed: 16)
        for _ in 0 ..< 1_000 {
            let time = Timestamp(millisSinceEpoch: random.between(0, Statement.timeMax.millisSinceEpoch))
            #expect(try Statement.parseTime(Statement.formatTime(time)) == time)
        }
    }

    @Test("credits statement: JSON and CSV of a real data directory; bad bounds exit non-zero and write nothing",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func commandLine() async throws {
        let executable = try #require(creditsExecutable)
        let directory = try makeTemporaryDirectory("statement-cli")
        defer { removeTree(directory) }
        let data = directory + "/data"
        let errors = directory + "/stderr"
        let clock = ManualClock(engineStart)
        let keys = KeySource()
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(shardCount: 2, storage: StorageConfiguration(directory: data)),
                                                 clock: clock)
        let account = try await engine.openFunded(1, credits: credits(100), keys: keys)
        for amount in 1 ... 5 {
            clock.advance(millis: 60_000)
            // The account's holder spends (the statement names it as the principal).
            guard case .success = await engine.execute(Command(key: keys.next(), .debit(account, credits(Int64(amount)), scope: .unscoped),
                                                               by: .account(account))) else { Issue.record("debit refused"); return }
        }
        try await engine.succeed(.adjust(account, credits(2), reason: "goodwill, \"outage\""), keys: keys)
        await engine.close()

        let json = try runToEnd(executable, ["statement", "--data", data, "--account", "t1/a0"], errors: errors)
        #expect(json.exitCode == 0, "\(json.output)")
        #expect(json.output.contains("\"closing\": {\"balance_mc\": 87000, \"held_mc\": 0, \"debt_mc\": 0}"), "\(json.output)")
        #expect(json.output.contains("\"totals\": {\"entries\": 8, \"change_mc\": 87000, \"others_change_mc\": 0"), "\(json.output)")
        #expect(json.output.contains("\"principal\": \"t1/a0\""), "the holder's debits")
        #expect(json.output.contains("\"principal\": \"system\""), "the set-up and the adjustment")

        let from = Statement.formatTime(engineStart.adding(millis: 120_000))
        let csv = try runToEnd(executable, ["statement", "--data", data, "--account", "t1/a0", "--format", "csv", "--from", from,
                                         "--to", String(engineStart.millisSinceEpoch + 240_000)], errors: errors)
        #expect(csv.exitCode == 0, "\(csv.output)")
        let rows = csv.output.split(separator: "\n")
        #expect(rows.first?.hasPrefix("record,lsn,sequence,time,time_ms,kind,account,principal") == true)
        #expect(rows.filter { $0.hasPrefix("entry,") }.count == 3, "\(csv.output)")
        #expect(rows.contains { $0.hasPrefix("opening,") && $0.contains(",99000,") }, "\(csv.output)")
        #expect(rows.contains { $0.hasPrefix("closing,") && $0.contains(",-9000,") && $0.contains(",90000,") }, "\(csv.output)")

        let everything = try runToEnd(executable, ["statement", "--data", data, "--account", "t1/a0", "--format", "csv"], errors: errors)
        #expect(everything.output.contains("\"goodwill, \"\"outage\"\"\""), "a reason with a comma and quotes is quoted")

        for bad in [["--from", "yesterday"], ["--to", "2025-02-30"], ["--from", "2026-01-02", "--to", "2026-01-01"]] {
            let refused = try runToEnd(executable, ["statement", "--data", data, "--account", "t1/a0"] + bad, errors: errors)
            let message = String(decoding: (try? PosixFileSystem().readFile(errors)) ?? [], as: UTF8.self)
            #expect(refused.exitCode != 0 && refused.output.isEmpty, "\(bad): exit \(refused.exitCode.map(String.init) ?? "-")")
            #expect(message.contains("invalid_time") || message.contains("empty_interval"), "\(bad): \(message)")
        }
        let unknown = try runToEnd(executable, ["statement", "--data", data, "--account", "t9/a0"], errors: errors)
        #expect(unknown.exitCode == 1)
        let noData = try runToEnd(executable, ["statement", "--data", directory + "/nothing", "--organisation", "t1"], errors: errors)
        #expect(noData.exitCode == 1 && noData.output.isEmpty)
    }
}
