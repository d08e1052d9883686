@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The statement of an account, a department or a whole organisation over an interval,
/// read from a data directory's log (archive and live segments): every entry in the
/// interval with who asked, and an opening and a closing balance that reconcile with them
/// (docs/statements.md). Complete whatever snapshots exist, unlike `recentStatement`: the
/// log is replayed from its first record.
///
/// An `AsyncSequence` of lines: one `.header` (the opening balance), the `.entry` lines in
/// log order, one `.summary` (the closing balance and the totals). The work runs on a
/// thread of its own once iteration starts; it stays at most a few thousand lines ahead of
/// the consumer (it waits while they are unread), so memory is bounded by the replayed
/// shard's ledger and one log segment, whatever the log's length. Dropping the iterator or
/// cancelling its task stops the replay.
///
/// ```swift
/// let statement = try Statement(.account(account), from: start, to: end, configuration: configuration)
/// for try await line in statement { ... }
/// ```
public struct Statement: AsyncSequence, Sendable {
    public typealias Element = Line

    /// What a statement covers.
    public enum Subject: Sendable, Hashable, CustomStringConvertible {
        /// One account: a standard account, an organisation's pool or a member.
        case account(AccountID)
        /// Every member of one department of an organisation (a cost centre).
        case department(TenantID, DepartmentID)
        /// Every entry of an organisation: pool, departments, members.
        case organisation(TenantID)

        public var tenant: TenantID {
            switch self {
            case .account(let account): account.tenant
            case .department(let tenant, _), .organisation(let tenant): tenant
            }
        }

        public var description: String {
            switch self {
            case .account(let account): "account \(account)"
            case .department(let tenant, let department): "department \(tenant)/\(department)"
            case .organisation(let tenant): "organisation \(tenant)"
            }
        }
    }

    /// An account's standing at one point: `balance` is the credits of its live grants that
    /// are neither held nor in grace, minus its debt (docs/statements.md says why this and
    /// not the time-dependent `available`); `held` and `debt` are shown beside it.
    public struct Standing: Sendable, Equatable {
        public let balance: Millicredits
        public let held: Millicredits
        public let debt: Millicredits

        public static let zero = Standing(balance: .zero, held: .zero, debt: .zero)

        package init(balance: Millicredits, held: Millicredits, debt: Millicredits) {
            self.balance = balance
            self.held = held
            self.debt = debt
        }
    }

    /// The first line.
    public struct Header: Sendable, Equatable {
        public let subject: Subject
        public let from: Timestamp?
        public let to: Timestamp?
        /// The shard whose log was replayed.
        public let shard: Int
        /// The account whose balance the statement reconciles: the account itself, or for a
        /// member, a department or an organisation, the organisation's pool.
        public let balanceAccount: AccountID
        /// `balanceAccount`'s standing just before the first record at or after `from`.
        public let opening: Standing
    }

    /// One ledger entry of the statement.
    public struct Row: Sendable, Equatable {
        public let lsn: UInt64
        public let entry: LedgerEntry
        /// What the entry did to the balance of `entry.account` (zero for a rejected command or
        /// an entry without an account).
        public let change: Millicredits
        /// `entry.account`'s balance after the entry.
        public let balanceAfter: Millicredits
        /// For an organisation's entry: the department of the member who asked (or whose
        /// account it is); nil for the pool's own entries.
        public let department: DepartmentID?
        public let costCentre: String?
        /// Who asked (`Statement.principalText`).
        public var principal: String { Statement.principalText(entry) }
    }

    /// What one cost centre's entries did (department and organisation statements).
    public struct CostCentreTotal: Sendable, Equatable {
        /// nil: the pool's own entries (grants, refills, expiries...), of no department.
        public let department: DepartmentID?
        public let costCentre: String?
        public let entries: Int
        /// The sum of the rows' changes to the pool.
        public let change: Millicredits
    }

    /// The last line.
    public struct Summary: Sendable, Equatable {
        /// `balanceAccount`'s standing after the last record at or before `to`.
        public let closing: Standing
        public let entries: Int
        /// The sum of the changes of the rows whose account is `balanceAccount`.
        public let change: Millicredits
        /// What entries outside the statement did to `balanceAccount` (other members and
        /// departments spending from the pool): closing − opening − change. Always zero for
        /// an account statement of a standard account or a pool, and for an organisation.
        public let othersChange: Millicredits
        public let costCentres: [CostCentreTotal]
        /// Records of the shard replayed (all tenants).
        public let recordsReplayed: Int
    }

    public enum Line: Sendable, Equatable {
        case header(Header)
        case entry(Row)
        case summary(Summary)
    }

    public let subject: Subject
    public let from: Timestamp?
    public let to: Timestamp?
    let configuration: EngineConfiguration
    let storage: StorageConfiguration

    /// A statement of `subject` for entries at `from`...`to` (both inclusive; nil: from the
    /// log's start, to its end) of the data directory in `configuration.storage`, replayed
    /// with `configuration`'s ledger settings (the engine's own: idempotency outcomes depend
    /// on them). Throws `noStorage` and `emptyInterval` at once; everything else (an
    /// unknown subject, a pruned archive, log damage) from the sequence.
    public init(_ subject: Subject, from: Timestamp? = nil, to: Timestamp? = nil,
                configuration: EngineConfiguration) throws(StatementError) {
        guard let storage = configuration.storage else { throw .noStorage }
        if let from, let to, from > to { throw .emptyInterval(from: from, to: to) }
        self.subject = subject
        self.from = from
        self.to = to
        self.configuration = configuration
        self.storage = storage
    }

    /// Who asked for an entry, as statements and exports show it (`LedgerEntry.principal`,
    /// docs/security.md): "system", an account ("t42/a0") or a client ("c7"). The member
    /// whose spending moved a pool is the entry's `member`, shown beside it.
    public static func principalText(_ entry: LedgerEntry) -> String {
        entry.principal.description
    }

    /// Replays the subject's shard on the calling thread, handing every line to `emit` as it
    /// is made: what the sequence runs on its own thread (and the CLI could call directly).
    /// An error `emit` or `poll` (called every `pollRecords` records) throws stops the
    /// replay and is rethrown.
    package func run(emit: (Line) throws -> Void, poll: () throws -> Void = {}) throws {
        // Point-in-time reading would keep the records before damage and drop the rest
        // silently: a statement is complete or not made, so the log is read strictly.
        var storage = storage
        storage.recovery = .strict
        let shardCount: Int
        do { shardCount = try LogReplay.shardCount(of: storage) } catch { throw StatementError.recovery(error) }
        guard shardCount == configuration.shardCount else {
            throw StatementError.recovery(RecoveryError(shard: nil, .shardCountMismatch(directory: shardCount,
                                                                                          configured: configuration.shardCount)))
        }
        let shard = CreditEngine.shardIndex(for: subject.tenant, shardCount: shardCount)
        var builder = StatementBuilder(statement: self, shard: shard)
        do {
            let (ledger, report) = try LogReplay.fromLogStart(shard: shard, shardCount: shardCount, storage: storage,
                                                              configuration: configuration.shardLedgerConfiguration) {
                lsn, time, command, ledger in
                if lsn % Self.pollRecords == 0 { try poll() }
                try builder.visit(lsn: lsn, time: time, command: command, ledger: &ledger, emit: emit)
            }
            try builder.finish(ledger: ledger, recordsReplayed: report.recordsVisited, emit: emit)
        } catch let error as RecoveryError {
            if let failure = error.logFailure, case .logStartMissing(let needed, let found) = failure.problem {
                throw StatementError.logStartPruned(shard: shard, needed: needed, found: found, file: failure.file)
            }
            throw StatementError.recovery(error)
        }
    }

    static let pollRecords: UInt64 = 16_384

    public func makeAsyncIterator() -> Iterator { Iterator(statement: self) }

    /// Lines from the replay thread, a chunk at a time.
    public struct Iterator: AsyncIteratorProtocol {
        let statement: Statement
        var owner: StatementStreamOwner?
        var chunk: [Line] = []
        var position = 0

        init(statement: Statement) { self.statement = statement }

        public mutating func next() async throws -> Line? {
            if position < chunk.count {
                position += 1
                return chunk[position - 1]
            }
            if owner == nil { owner = StatementStreamOwner(statement) }
            guard let next = try await owner!.stream.receive() else { return nil }
            chunk = next
            position = 1
            return chunk[0]
        }
    }
}

/// Why a statement could not be made. `code` is stable and machine-readable.
public enum StatementError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration names no data directory.
    case noStorage
    /// An interval bound that is not a time (`Statement.parseTime`).
    case invalidTime(text: String, reason: String)
    /// `from` is after `to`.
    case emptyInterval(from: Timestamp, to: Timestamp)
    /// The shard's log no longer reaches back to LSN 1 (`archivedSegmentsKept` pruned it): the
    /// statement could not be complete, so none is made.
    case logStartPruned(shard: Int, needed: UInt64, found: UInt64, file: String)
    /// The directory could not be read, or its log is damaged (the recovery refusal).
    case recovery(RecoveryError)
    case unknownAccount(AccountID)
    /// A department or organisation statement of a tenant that is not an organisation.
    case notAnOrganisation(TenantID)
    case unknownDepartment(TenantID, DepartmentID)
    /// A total beyond Int64 millicredits.
    case overflow

    public var code: String {
        switch self {
        case .noStorage: "no_storage"
        case .invalidTime: "invalid_time"
        case .emptyInterval: "empty_interval"
        case .logStartPruned: "statement_incomplete"
        case .recovery(let error): error.code
        case .unknownAccount: "unknown_account"
        case .notAnOrganisation: "not_an_organisation"
        case .unknownDepartment: "unknown_department"
        case .overflow: "overflow"
        }
    }

    public var description: String {
        switch self {
        case .noStorage: "a statement needs an engine configuration with storage (a data directory)"
        case .invalidTime(let text, let reason): "\(text.debugDescription) is not a time: \(reason)"
        case .emptyInterval(let from, let to):
            "the interval is empty: from \(Statement.formatTime(from)) is after to \(Statement.formatTime(to))"
        case .logStartPruned(let shard, let needed, let found, let file):
            "shard \(shard): the log starts at LSN \(found) (\(file)), not \(needed): archived segments were pruned "
                + "(archivedSegmentsKept), so the statement could not be complete"
        case .recovery(let error): error.description
        case .unknownAccount(let account): "account \(account) is not in the log"
        case .notAnOrganisation(let tenant): "tenant \(tenant) is not an organisation"
        case .unknownDepartment(let tenant, let department): "organisation \(tenant) has no department \(department)"
        case .overflow: "a total exceeds the range of Int64 millicredits"
        }
    }
}
