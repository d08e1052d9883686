import CreditCore
import Testing
@_spi(Plumbing) import CreditCore

// MARK: - Units and time

/// 2026-01-01T00:00:00Z, the start of every harness ledger.
let t0 = Timestamp(millisSinceEpoch: 1_767_225_600_000)
let secondMillis: Int64 = 1_000
let minuteMillis: Int64 = 60_000
let hourMillis: Int64 = 3_600_000
let dayMillis: Int64 = 86_400_000

/// Whole credits as millicredits (test amounts are small, so no overflow handling).
func credits(_ whole: Int64) -> Millicredits { Millicredits(whole * Millicredits.perCredit) }

extension Timestamp {
    func plus(_ millis: Int64) -> Timestamp { adding(millis: millis) }
}

/// Thrown by the harness after it has recorded an issue, to stop a test that cannot go on.
struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
}

// MARK: - What a rejection must leave unchanged

/// Everything the public API shows about the ledger, for the accounts, holds, tenants and
/// scopes a test has mentioned. A rejected command may change only its idempotency record
/// and the entry sequence; everything here must be equal before and after it.
struct Observation: Equatable {
    var balances: [AccountID: Balance] = [:]
    var scopedAvailable: [AccountID: [ChargeScope: Millicredits]] = [:]
    var holds: [HoldID: HoldView] = [:]
    var organisations: [TenantID: OrganisationView] = [:]
    var openHolds: [HoldID] = []
    var subscriptions: [AccountID: SubscriptionView] = [:]
    var autoRefills: [AccountID: AutoRefillView] = [:]
    var tenantCount = 0
    var accountCount = 0
}

// MARK: - The harness

/// Wraps a `Ledger`: applies commands at the harness's current time with fresh idempotency
/// keys, and after EVERY step runs the ledger's invariant checker plus a per-account
/// conservation check from the public `Balance`, recording an issue with the violations.
struct LedgerHarness {
    var ledger: Ledger
    private(set) var now: Timestamp
    private var keyCounter: UInt64 = 0
    private let keyPrefix: UInt64

    /// Ids mentioned by applied commands, so observations cover them.
    private(set) var accounts: Set<AccountID> = []
    private(set) var tenants: Set<TenantID> = []
    private(set) var holdIDs: Set<HoldID> = []
    private(set) var scopes: Set<ChargeScope> = [.unscoped]
    private var stepCount = 0
    /// Checks run after every step; `sparselyChecked` widens this for long set-up loops.
    private var checkInterval = 1

    init(configuration: LedgerConfiguration = LedgerConfiguration(), start: Timestamp = t0, keyPrefix: UInt64 = 0xC0FF_EE00) {
        ledger = Ledger(configuration: configuration)
        now = start
        self.keyPrefix = keyPrefix
    }

    // MARK: Time and keys

    mutating func freshKey() -> IdempotencyKey {
        keyCounter += 1
        return IdempotencyKey(high: keyPrefix, low: keyCounter)
    }

    mutating func advance(_ millis: Int64) {
        precondition(millis >= 0)
        now = now.plus(millis)
    }

    mutating func move(to time: Timestamp) {
        precondition(time >= now, "the harness never goes back in time")
        now = time
    }

    // MARK: Applying

    /// Runs `body` (a set-up loop repeating the same, already checked steps thousands of
    /// times, e.g. to push a 64-bit total near its limit) with the per-step checks run only
    /// every `interval` steps, then checks once more at the end.
    mutating func sparselyChecked(every interval: Int, sourceLocation: SourceLocation = #_sourceLocation,
                                  _ body: (inout LedgerHarness) throws -> Void) rethrows {
        checkInterval = interval
        defer {
            checkInterval = 1
            checkInvariants(after: "set-up loop", sourceLocation: sourceLocation)
        }
        try body(&self)
    }

    /// Applies `action` (with `key`, or a fresh one) at the current time (or `time`, which
    /// becomes the current time) and checks the invariants afterwards.
    @discardableResult
    mutating func apply(_ action: Action, key: IdempotencyKey? = nil, at time: Timestamp? = nil, by principal: Principal = .system,
                        sourceLocation: SourceLocation = #_sourceLocation) -> Ledger.Applied {
        if let time { move(to: time) }
        let command = Command(key: key ?? freshKey(), action, by: principal)
        note(action)
        let applied = ledger.apply(command, at: now)
        if case .success(let receipt) = applied.outcome, let hold = receipt.hold { holdIDs.insert(hold) }
        stepCount += 1
        if stepCount % checkInterval == 0 {
            checkInvariants(after: "\(action)", sourceLocation: sourceLocation)
            if let entry = applied.entry { checkBalanceAfter(entry, sourceLocation: sourceLocation) }
        }
        return applied
    }

    /// Applies `action` and requires it to succeed; returns its receipt.
    @discardableResult
    mutating func succeed(_ action: Action, key: IdempotencyKey? = nil, at time: Timestamp? = nil, by principal: Principal = .system,
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> Receipt {
        try succeedWithEntry(action, key: key, at: time, by: principal, sourceLocation: sourceLocation).receipt
    }

    /// Applies `action`, requires success, and returns the receipt and the new ledger entry.
    mutating func succeedWithEntry(_ action: Action, key: IdempotencyKey? = nil, at time: Timestamp? = nil,
                                   by principal: Principal = .system,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws -> (receipt: Receipt, entry: LedgerEntry) {
        let applied = apply(action, key: key, at: time, by: principal, sourceLocation: sourceLocation)
        switch applied.outcome {
        case .success(let receipt):
            guard let entry = applied.entry else {
                Issue.record("\(action) succeeded but recorded no entry (was its key reused?)", sourceLocation: sourceLocation)
                throw HarnessFailure(description: "no entry")
            }
            #expect(entry.error == nil && entry.outcome == applied.outcome, sourceLocation: sourceLocation)
            return (receipt, entry)
        case .failure(let error):
            Issue.record("expected \(action) to succeed, it was rejected: \(error)", sourceLocation: sourceLocation)
            throw HarnessFailure(description: "\(error)")
        }
    }

    /// Applies `action` with a fresh key (or `key`, which must be new) and requires it to be
    /// rejected, with `expected` if given. Then checks what every rejection must satisfy:
    /// - the entry is recorded with the error, and nothing observable changed
    ///   (balances, grant views, scoped availability, holds, organisation usage, counts);
    /// - the invariants hold;
    /// - retrying the same key returns the identical failure, records no entry and leaves
    ///   `stateDigest()` unchanged.
    @discardableResult
    mutating func reject(_ action: Action, _ expected: LedgerError? = nil, key: IdempotencyKey? = nil,
                         at time: Timestamp? = nil, by principal: Principal = .system,
                         sourceLocation: SourceLocation = #_sourceLocation) -> LedgerError? {
        if let time { move(to: time) }
        note(action)
        let before = observe()
        let sequenceBefore = ledger.nextSequence
        let command = Command(key: key ?? freshKey(), action, by: principal)
        let applied = apply(command.action, key: command.key, by: principal, sourceLocation: sourceLocation)
        guard case .failure(let error) = applied.outcome else {
            Issue.record("expected \(action) to be rejected\(expected.map { " with \($0)" } ?? ""), it succeeded: \(applied.outcome)",
                         sourceLocation: sourceLocation)
            return nil
        }
        if let expected {
            #expect(error == expected, "rejection of \(action)", sourceLocation: sourceLocation)
        }
        #expect(applied.entry?.error == error, "a rejection is logged with its error", sourceLocation: sourceLocation)
        #expect(ledger.nextSequence == sequenceBefore + 1, sourceLocation: sourceLocation)
        let after = observe()
        #expect(after == before, "rejected \(action) (\(error)) changed observable state", sourceLocation: sourceLocation)

        let digest = ledger.stateDigest()
        let retry = ledger.apply(command, at: now)
        #expect(retry.outcome == applied.outcome, "a retry returns the identical failure", sourceLocation: sourceLocation)
        #expect(retry.entry == nil, "a retry records no entry", sourceLocation: sourceLocation)
        #expect(ledger.stateDigest() == digest, "a retry of a rejection changes nothing", sourceLocation: sourceLocation)
        return error
    }

    /// Re-applies exactly `command` (same key, same action) now and requires the identical
    /// outcome, no new entry and an unchanged `stateDigest()`.
    mutating func expectReplay(of command: Command, returns outcome: Outcome,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        let digest = ledger.stateDigest()
        let retry = ledger.apply(command, at: now)
        #expect(retry.outcome == outcome, sourceLocation: sourceLocation)
        #expect(retry.entry == nil, sourceLocation: sourceLocation)
        #expect(ledger.stateDigest() == digest, sourceLocation: sourceLocation)
    }

    // MARK: Checking

    /// The ledger's own invariant checker plus conservation per grant-holding account:
    /// granted + debt == remaining + consumed + expired + held, from the public `Balance`.
    func checkInvariants(after context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = ledger.invariantViolations() + conservationProblems()
        if !problems.isEmpty {
            let list = problems.joined(separator: "\n")
            Issue.record("invariants broken after \(context):\n\(list)", sourceLocation: sourceLocation)
        }
    }

    /// Entries that move or guard credits report the balance after them: it must be what the
    /// ledger shows right afterwards (for a member, what the member may spend).
    func checkBalanceAfter(_ entry: LedgerEntry, sourceLocation: SourceLocation) {
        for problem in balanceAfterProblems(entry, in: ledger, at: now) {
            Issue.record(Comment(rawValue: problem), sourceLocation: sourceLocation)
        }
    }

    func conservationProblems() -> [String] {
        balanceProblems(in: ledger, accounts: accounts, tenants: tenants, at: now)
    }

    func observe() -> Observation {
        observeLedger(ledger, accounts: accounts, holds: holdIDs, tenants: tenants, scopes: scopes, at: now)
    }

    // MARK: Reading

    func balance(_ account: AccountID, sourceLocation: SourceLocation = #_sourceLocation) throws -> Balance {
        try #require(ledger.balance(of: account, at: now), "no balance for \(account)", sourceLocation: sourceLocation)
    }

    func available(_ account: AccountID, scope: ChargeScope = .unscoped,
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> Millicredits {
        try #require(ledger.available(of: account, scope: scope, at: now), sourceLocation: sourceLocation)
    }

    /// Remaining credits of each live grant, in burn order.
    func remainingByGrant(_ account: AccountID, sourceLocation: SourceLocation = #_sourceLocation) throws -> [GrantID: Millicredits] {
        let balance = try balance(account, sourceLocation: sourceLocation)
        return Dictionary(uniqueKeysWithValues: balance.grants.map { ($0.id, $0.remaining) })
    }

    func grantView(_ id: GrantID, of account: AccountID, sourceLocation: SourceLocation = #_sourceLocation) throws -> GrantView {
        let balance = try balance(account, sourceLocation: sourceLocation)
        return try #require(balance.grants.first { $0.id == id }, "grant \(id) is not live", sourceLocation: sourceLocation)
    }

    func organisation(_ tenant: TenantID, sourceLocation: SourceLocation = #_sourceLocation) throws -> OrganisationView {
        try #require(ledger.organisation(tenant), sourceLocation: sourceLocation)
    }

    // MARK: Fixtures

    /// Opens an individual tenant and its account 0.
    @discardableResult
    mutating func openIndividual(_ tenant: UInt64, overdraft: Millicredits = .zero,
                                 sourceLocation: SourceLocation = #_sourceLocation) throws -> AccountID {
        let id = TenantID(tenant)
        try succeed(.openTenant(id, .individual), sourceLocation: sourceLocation)
        let account = AccountID(tenant: id, number: 0)
        try succeed(.openAccount(account, .standard(overdraft: overdraft)), sourceLocation: sourceLocation)
        return account
    }

    /// Adds a grant and returns its id.
    @discardableResult
    mutating func grant(_ account: AccountID, _ amount: Millicredits, kind: GrantKind = .purchase,
                        effectiveAt: Timestamp? = nil, expiresAt: Timestamp = .never,
                        priority: UInt8 = GrantTerms.priorityDefault, costBasis: UInt32 = 0,
                        scope: ChargeScope = .unscoped, sourceLocation: SourceLocation = #_sourceLocation) throws -> GrantID {
        let terms = GrantTerms(kind: kind, amount: amount, effectiveAt: effectiveAt, expiresAt: expiresAt,
                               priority: priority, costBasisNanoUSDPerCredit: costBasis, scope: scope)
        let receipt = try succeed(.grant(account, terms), sourceLocation: sourceLocation)
        return try #require(receipt.grant, sourceLocation: sourceLocation)
    }

    /// Debits and returns the receipt (requires success).
    @discardableResult
    mutating func debit(_ account: AccountID, _ amount: Millicredits, scope: ChargeScope = .unscoped,
                        key: IdempotencyKey? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> Receipt {
        try succeed(.debit(account, amount, scope: scope), key: key, sourceLocation: sourceLocation)
    }

    /// Reserves and returns the hold (requires success).
    mutating func reserve(_ account: AccountID, _ amount: Millicredits, timeoutMillis: Int64 = 5 * minuteMillis,
                          scope: ChargeScope = .unscoped, sourceLocation: SourceLocation = #_sourceLocation) throws -> HoldID {
        let receipt = try succeed(.reserve(account, amount, timeoutMillis: timeoutMillis, scope: scope), sourceLocation: sourceLocation)
        return try #require(receipt.hold, sourceLocation: sourceLocation)
    }

    // MARK: Bookkeeping

    private mutating func note(_ action: Action) {
        tenants.insert(action.tenant)
        switch action {
        case .openTenant(let tenant, let kind):
            if case .organisation = kind { accounts.insert(AccountID(tenant: tenant, number: 0)) }
        case .openDepartment, .setDepartmentAllocation, .startPeriod, .setKeyPolicy, .grantRole, .revokeRole,
             .setRateLimits, .setPlanRateLimits, .setAnomalyMode:
            break
        case .openAccount(let account, _), .grant(let account, _), .refund(let account, _, _),
             .adjust(let account, _, _), .freeze(let account), .unfreeze(let account), .setMemberLimit(let account, _),
             .registerKey(let account, _), .removeKey(let account, _), .subscribe(let account, _),
             .changePlan(let account, _), .cancelSubscription(let account), .resumeSubscription(let account),
             .renewSubscription(let account, _, _), .lapseSubscription(let account, _, _, _), .expireGrants(let account, _),
             .forfeitGrants(let account), .setAutoRefill(let account, _), .completeRefill(let account, _, _),
             .failRefill(let account, _, _):
            accounts.insert(account)
        case .debit(let account, _, let scope), .reserve(let account, _, _, let scope), .charge(let account, _, let scope),
             .chargeRouted(let account, _, let scope):
            accounts.insert(account)
            scopes.insert(scope)
        case .settle(let hold, _), .release(let hold), .timeOutHold(let hold), .settleCharge(let hold, _):
            holdIDs.insert(hold)
        }
        if case .grant(_, let terms) = action { scopes.insert(terms.scope) }
    }
}

// MARK: - Checks shared with the property tests

/// Conservation per grant-holding account, from the public `Balance`:
/// granted + debt == remaining + consumed + expired + held, and the grant views sum to the
/// balance's remaining and held. (A member's balance reports its own spending and holds on
/// the pool, so the identity applies to standard accounts and pools only.)
func balanceProblems(in ledger: Ledger, accounts: Set<AccountID>, tenants: Set<TenantID>, at now: Timestamp) -> [String] {
    var members: Set<AccountID> = []
    for tenant in tenants {
        if let view = ledger.organisation(tenant) { members.formUnion(view.members.map(\.account)) }
    }
    var problems: [String] = []
    for account in accounts.sorted() where !members.contains(account) {
        guard let balance = ledger.balance(of: account, at: now) else { continue }
        let left = balance.granted.rawValue + balance.debt.rawValue
        let right = balance.remaining.rawValue + balance.consumed.rawValue + balance.expired.rawValue + balance.held.rawValue
        if left != right {
            problems.append("\(account): granted \(balance.granted) + debt \(balance.debt) ≠ remaining \(balance.remaining) + consumed \(balance.consumed) + expired \(balance.expired) + held \(balance.held)")
        }
        let grantRemaining = balance.grants.reduce(0) { $0 + $1.remaining.rawValue }
        let grantHeld = balance.grants.reduce(0) { $0 + $1.held.rawValue }
        if grantRemaining != balance.remaining.rawValue || grantHeld != balance.held.rawValue {
            problems.append("\(account): grant views do not sum to the balance")
        }
        if balance.debt < .zero || balance.held < .zero || balance.remaining < .zero {
            problems.append("\(account): negative debt, held or remaining")
        }
    }
    return problems
}

/// Everything the public API shows for the given ids (see `Observation`).
func observeLedger(_ ledger: Ledger, accounts: Set<AccountID>, holds: Set<HoldID>, tenants: Set<TenantID>,
                   scopes: Set<ChargeScope>, at now: Timestamp) -> Observation {
    var observation = Observation()
    for account in accounts {
        guard let balance = ledger.balance(of: account, at: now) else { continue }
        observation.balances[account] = balance
        observation.subscriptions[account] = ledger.subscription(of: account)
        observation.autoRefills[account] = ledger.autoRefill(of: account)
        for scope in scopes {
            observation.scopedAvailable[account, default: [:]][scope] = ledger.available(of: account, scope: scope, at: now)
        }
    }
    for hold in holds {
        if let view = ledger.hold(hold) { observation.holds[hold] = view }
    }
    for tenant in tenants {
        if let view = ledger.organisation(tenant) { observation.organisations[tenant] = view }
    }
    observation.openHolds = ledger.holdsTimedOut(at: .never)
    observation.tenantCount = ledger.tenantCount
    observation.accountCount = ledger.accountCount
    return observation
}

/// Entries that move or guard credits report the balance after them; it must be what the
/// ledger shows right afterwards (for a member, what the member may spend). Returns what is wrong.
func balanceAfterProblems(_ entry: LedgerEntry, in ledger: Ledger, at now: Timestamp) -> [String] {
    let reportsBalance: Set<EntryKind> = [.granted, .debited, .reserved, .settled, .released, .holdTimedOut,
                                          .refunded, .adjusted, .frozen, .unfrozen, .memberLimitSet,
                                          .subscribed, .subscriptionChanged, .subscriptionCancelled, .subscriptionResumed,
                                          .renewed, .lapsed, .grantsExpired, .grantsForfeited, .autoRefillSet,
                                          .refillCompleted, .refillFailed]
    guard entry.error == nil, reportsBalance.contains(entry.kind), let principal = entry.member,
          let account = entry.account else { return [] }
    var problems: [String] = []
    let available = ledger.available(of: principal, scope: .unscoped, at: now)
    if entry.availableAfter != available {
        problems.append("\(entry.kind) entry \(entry.sequence) reports availableAfter \(entry.availableAfter), the ledger shows \(available.map(\.description) ?? "nil")")
    }
    let debt = ledger.balance(of: account, at: now)?.debt
    if entry.debtAfter != debt {
        problems.append("\(entry.kind) entry \(entry.sequence) reports debtAfter \(entry.debtAfter), the ledger shows \(debt.map(\.description) ?? "nil")")
    }
    return problems
}

/// The name of an error's case (with its rule), ignoring the payload. Exhaustive on purpose:
/// a new case must be added here, and provoked in `BadInputTests.everyLedgerErrorCaseIsReachable`.
func errorCaseName(_ error: LedgerError) -> String {
    switch error {
    case .invalidAmount: "invalidAmount"
    case .amountOverflow: "amountOverflow"
    case .tenantExists: "tenantExists"
    case .unknownTenant: "unknownTenant"
    case .accountExists: "accountExists"
    case .unknownAccount: "unknownAccount"
    case .departmentExists: "departmentExists"
    case .unknownDepartment: "unknownDepartment"
    case .unknownHold: "unknownHold"
    case .holdNotOpen: "holdNotOpen"
    case .invalidExpiry: "invalidExpiry"
    case .holdNotDue: "holdNotDue"
    case .accountFrozen: "accountFrozen"
    case .insufficientCredits: "insufficientCredits"
    case .memberLimitExceeded: "memberLimitExceeded"
    case .departmentAllocationExceeded: "departmentAllocationExceeded"
    case .notAllowed(_, let rule): "notAllowed.\(rule)"
    case .idempotencyConflict: "idempotencyConflict"
    case .unknownDebit: "unknownDebit"
    case .refundExceedsDebit: "refundExceedsDebit"
    case .invalidTimeout: "invalidTimeout"
    case .invalidInput(let rule): "invalidInput.\(rule)"
    case .limitReached(let rule): "limitReached.\(rule)"
    case .logStopped: "logStopped" // the engine's, never the core's
    case .notSubscribed: "notSubscribed"
    case .alreadySubscribed: "alreadySubscribed"
    case .notDue: "notDue"
    case .staleSchedule: "staleSchedule"
    case .nothingDue: "nothingDue"
    case .planChanged: "planChanged"
    case .forbidden(let permission): "forbidden.\(permission)"
    case .rateLimited: "rateLimited"
    }
}

// MARK: - Enterprise fixture

/// An organisation with a funded pool, departments and members, for enterprise tests.
struct OrganisationFixture {
    let tenant: TenantID
    var pool: AccountID { AccountID(tenant: tenant, number: 0) }
    func member(_ number: UInt32) -> AccountID { AccountID(tenant: tenant, number: number) }

    /// Opens the organisation with `departments` (id, allocation per period), funds the pool
    /// with `poolCredits` and opens `members` (account number, department, limit per period).
    init(in harness: inout LedgerHarness, tenant: UInt64 = 500, poolCredits: Millicredits,
         departments: [(DepartmentID, Millicredits?)],
         members: [(UInt32, DepartmentID, Millicredits?)],
         sourceLocation: SourceLocation = #_sourceLocation) throws {
        self.tenant = TenantID(tenant)
        let terms = departments.map { DepartmentTerms(id: $0.0, costCentre: "CC-\($0.0.rawValue)", allocationPerPeriod: $0.1) }
        try harness.succeed(.openTenant(self.tenant, .organisation(departments: terms)), sourceLocation: sourceLocation)
        if poolCredits > .zero {
            try harness.grant(AccountID(tenant: self.tenant, number: 0), poolCredits, kind: .enterpriseContract,
                              sourceLocation: sourceLocation)
        }
        for (number, department, limit) in members {
            try harness.succeed(.openAccount(AccountID(tenant: self.tenant, number: number),
                                             .member(department: department, limitPerPeriod: limit)),
                                sourceLocation: sourceLocation)
        }
    }
}

extension OrganisationView {
    func usage(of department: DepartmentID) -> Usage? { departments.first { $0.id == department }?.usage }
    func usage(of member: AccountID) -> Usage? { members.first { $0.account == member }?.usage }
}

// MARK: - Grant movements

/// A grant movement as tests write it (`GrantMovement` has no public initialiser).
struct Move: Equatable, CustomStringConvertible {
    let grant: UInt64
    let amount: Millicredits
    let change: GrantMovement.Change

    init(_ grant: GrantID, _ amount: Millicredits, _ change: GrantMovement.Change) {
        self.grant = grant.number
        self.amount = amount
        self.change = change
    }

    init(_ movement: GrantMovement) {
        grant = movement.grant
        amount = movement.amount
        change = movement.change
    }

    var description: String { "g\(grant) \(change) \(amount)" }
}

/// The movements of an entry, in order.
func moves(_ entry: LedgerEntry) -> [Move] { entry.movements.map(Move.init) }
