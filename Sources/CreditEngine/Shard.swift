/// One partition of the ledger, owned by an actor: commands of its tenants are applied one
/// at a time, in arrival order, so every check a debit needs is atomic without locks.
actor Shard {
    let index: Int
    private var ledger: Ledger
    private let clock: any LedgerClock
    private let onEntry: (@Sendable (Int, LedgerEntry) -> Void)?
    private var replays: UInt64 = 0
    private var conflicts: UInt64 = 0

    init(index: Int, configuration: EngineConfiguration, clock: any LedgerClock) {
        self.index = index
        var ledgerConfiguration = configuration.ledger
        ledgerConfiguration.recentEntriesMax = configuration.recentEntriesPerShard
        ledger = Ledger(configuration: ledgerConfiguration)
        self.clock = clock
        onEntry = configuration.onEntry
    }

    /// Time for the next command: the clock, but never before the last stamp.
    private func stamp() -> Timestamp { max(clock.now(), ledger.lastTime) }

    func execute(_ command: Command) -> Outcome {
        let (outcome, recorded) = ledger.record(command, at: stamp())
        count(outcome, recorded: recorded, entry: recorded && onEntry != nil ? ledger.recentEntries.newest : nil)
        return outcome
    }

    /// All commands of a batch share one timestamp (they arrived together).
    func execute(batch commands: [Command]) -> [Outcome] {
        let time = stamp()
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(commands.count)
        ledger.record(batch: commands, at: time, passingEntries: onEntry != nil) { outcome, recorded, entry in
            count(outcome, recorded: recorded, entry: entry)
            outcomes.append(outcome)
        }
        return outcomes
    }

    private func count(_ outcome: Outcome, recorded: Bool, entry: LedgerEntry?) {
        if recorded {
            if let onEntry, let entry { onEntry(index, entry) }
        } else if case .failure(.idempotencyConflict) = outcome {
            conflicts += 1
        } else {
            replays += 1
        }
    }

    func timeOutHolds() -> Int {
        let time = stamp()
        var released = 0
        for hold in ledger.holdsTimedOut(at: time) {
            let key = IdempotencyKey(deriving: "hold-timeout/\(hold.tenant.rawValue)/\(hold.number)")
            let (outcome, recorded) = ledger.record(Command(key: key, .timeOutHold(hold)), at: time)
            count(outcome, recorded: recorded, entry: recorded && onEntry != nil ? ledger.recentEntries.newest : nil)
            if case .success = outcome { released += 1 }
        }
        return released
    }

    func balance(of account: AccountID) -> Balance? { ledger.balance(of: account, at: stamp()) }
    func available(of account: AccountID, scope: ChargeScope) -> Millicredits? {
        ledger.available(of: account, scope: scope, at: stamp())
    }
    func hold(_ id: HoldID) -> HoldView? { ledger.hold(id) }
    func organisation(_ id: TenantID) -> OrganisationView? { ledger.organisation(id) }

    func recentStatement(of account: AccountID) -> [LedgerEntry] {
        ledger.recentEntries.filter { $0.account == account || $0.principal == account }
    }

    func invariantViolations() -> [String] { ledger.invariantViolations().map { "shard \(index): \($0)" } }
    func stateDigest() -> UInt64 { ledger.stateDigest() }

    func statistics() -> EngineStatistics {
        var statistics = EngineStatistics()
        statistics.tenants = ledger.tenantCount
        statistics.accounts = ledger.accountCount
        statistics.openHolds = ledger.openHoldCount
        statistics.rememberedKeys = ledger.rememberedKeyCount
        statistics.entries = ledger.nextSequence - 1
        statistics.replays = replays
        statistics.conflicts = conflicts
        return statistics
    }
}
