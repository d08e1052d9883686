/// One partition of the ledger, owned by an actor: commands of its tenants are applied one
/// at a time, in arrival order, so every check a debit needs is atomic without locks.
actor Shard {
    let index: Int
    private var ledger: Ledger
    private let clock: any LedgerClock
    private let onEntry: (@Sendable (Int, LedgerEntry) -> Void)?

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
        if recorded, let onEntry, let entry = ledger.recentEntries.newest { onEntry(index, entry) }
        return outcome
    }

    /// Applies the commands at `positions` of a batch (all when nil). They share one
    /// timestamp (they arrived together). The batch array is shared, not copied.
    func execute(batch commands: [Command], positions: [Int]? = nil) -> [Outcome] {
        let (outcomes, entries) = ledger.record(batch: commands, positions: positions, at: stamp(),
                                                collectingEntries: onEntry != nil)
        if let onEntry { for entry in entries { onEntry(index, entry) } }
        return outcomes
    }

    /// Releases the holds past their time-out, as one batch of commands with keys derived
    /// from the hold ids (so a repeated sweep changes nothing twice).
    func timeOutHolds() -> Int {
        let commands = ledger.holdsTimedOut(at: stamp()).map { hold in
            Command(key: IdempotencyKey(deriving: "hold-timeout/\(hold.tenant.rawValue)/\(hold.number)"), .timeOutHold(hold))
        }
        return execute(batch: commands).filter { if case .success = $0 { true } else { false } }.count
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
        statistics.replays = ledger.replayCount
        statistics.conflicts = ledger.conflictCount
        return statistics
    }
}
