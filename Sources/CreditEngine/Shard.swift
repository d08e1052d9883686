/// One partition of the ledger, owned by an actor: commands of its tenants are applied one
/// at a time, in arrival order, so every check a debit needs is atomic without locks.
actor Shard {
    let index: Int
    private var ledger: Ledger
    private let clock: any LedgerClock
    private var recent: EntryWindow
    private let onEntry: (@Sendable (Int, LedgerEntry) -> Void)?
    private var replays: UInt64 = 0
    private var conflicts: UInt64 = 0

    init(index: Int, configuration: EngineConfiguration, clock: any LedgerClock) {
        self.index = index
        ledger = Ledger(configuration: configuration.ledger)
        self.clock = clock
        recent = EntryWindow(capacity: configuration.recentEntriesPerShard)
        onEntry = configuration.onEntry
    }

    /// Time for the next command: the clock, but never before the last stamp.
    private func stamp() -> Timestamp { max(clock.now(), ledger.lastTime) }

    func execute(_ command: Command) -> Outcome {
        apply(command, at: stamp())
    }

    /// All commands of a batch share one timestamp (they arrived together).
    func execute(batch commands: [Command]) -> [Outcome] {
        let time = stamp()
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(commands.count)
        for command in commands { outcomes.append(apply(command, at: time)) }
        return outcomes
    }

    private func apply(_ command: Command, at time: Timestamp) -> Outcome {
        let applied = ledger.apply(command, at: time)
        if let entry = applied.entry {
            recent.append(entry)
            onEntry?(index, entry)
        } else if case .failure(.idempotencyConflict) = applied.outcome {
            conflicts += 1
        } else {
            replays += 1
        }
        return applied.outcome
    }

    func timeOutHolds() -> Int {
        let time = stamp()
        var released = 0
        for hold in ledger.holdsTimedOut(at: time) {
            let key = IdempotencyKey(deriving: "hold-timeout/\(hold.tenant.rawValue)/\(hold.number)")
            if case .success = apply(Command(key: key, .timeOutHold(hold)), at: time) { released += 1 }
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
        recent.filter { $0.account == account || $0.principal == account }
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

/// The last `capacity` entries of a shard, oldest overwritten first.
struct EntryWindow {
    private var ring: [LedgerEntry] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    mutating func append(_ entry: LedgerEntry) {
        if ring.count < capacity {
            ring.append(entry)
        } else {
            ring[next] = entry
        }
        next = (next + 1) % capacity
    }

    /// Matching entries, oldest first.
    func filter(_ isIncluded: (LedgerEntry) -> Bool) -> [LedgerEntry] {
        let ordered = ring.count < capacity ? ring[...] + [] : ring[next...] + ring[..<next]
        return ordered.filter(isIncluded)
    }
}
