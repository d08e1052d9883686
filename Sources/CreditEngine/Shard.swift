import CreditPersistence
#if canImport(Glibc)
import Glibc
#endif
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// CPU time of the calling thread: a turn's CPU time leaves out the time the thread was
/// preempted (on a small machine, most of a long turn's wall time).
private func threadCPUNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

private func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// One partition of the ledger, owned by an actor: commands of its tenants are applied one
/// at a time, in arrival order, so every check a debit needs is atomic without locks.
///
/// With storage, every command that changes the state is appended to the shard's
/// write-ahead log as it is applied, and its outcome is returned only once the record is
/// durable under the configured mode. The actor does not wait for the disk itself: while
/// one caller waits for its sync, the actor applies the next commands, whose records join
/// the next sync (group commit).
actor Shard {
    let index: Int
    private var ledger: Ledger
    private let clock: any LedgerClock
    private let onEntry: (@Sendable (Int, LedgerEntry) -> Void)?
    nonisolated let log: ShardLog?
    /// Single-command calls waiting to be applied (see `drain`).
    nonisolated let submissions: SubmissionQueue
    /// Buffers the drain swaps with the queue's, so neither side allocates per round.
    private var drainCommands: [Command] = []
    private var drainContinuations: [UnsafeContinuation<Outcome, Never>] = []
    /// The most commands one drain round took (at most `submissions.commandsMax`).
    private(set) var drainRoundCommandsHighWater = 0
    private let storage: StorageConfiguration?
    private var recordsSinceSnapshot = 0
    private var lastSnapshotMillis: Int64
    private var snapshotInFlight = false
    /// Callers waiting for the snapshot in flight to finish (`snapshotFinished`).
    private var snapshotWaiters: [CheckedContinuation<Void, Never>] = []
    private var lastSnapshot: SnapshotHeader?
    private var snapshotsTaken = 0
    /// Longest time one command spent in the actor (applying and appending), in ns: what a
    /// snapshot's copy-on-write costs shows up here.
    private(set) var longestTurnNanos: UInt64 = 0
    /// The CPU time of that kind of turn (the longest, measured separately).
    private(set) var longestTurnCPUNanos: UInt64 = 0
    /// The same two figures for turns while a snapshot was in flight (see `noteTurn`).
    private var longestTurnDuringSnapshotNanos: UInt64 = 0
    private var turnsStalledDuringSnapshot = 0

    /// Notes a turn that began at `started` (wall) and `startedCPU` (thread CPU time).
    private func noteTurn(started: UInt64, startedCPU: UInt64) {
        let nanos = monotonicNanos() - started
        longestTurnNanos = max(longestTurnNanos, nanos)
        longestTurnCPUNanos = max(longestTurnCPUNanos, threadCPUNanos() - startedCPU)
        // While a snapshot is in flight, the first write to each page of the state copies
        // it (the snapshot holds the old one): those turns are the snapshot's stall.
        if snapshotInFlight {
            longestTurnDuringSnapshotNanos = max(longestTurnDuringSnapshotNanos, nanos)
            if nanos > DurabilityStatistics.stallNanos { turnsStalledDuringSnapshot += 1 }
        }
    }

    /// The engine's filter of tenants that may hold keys; this shard marks its tenants.
    private let keyPresence: KeyPresence
    /// What falls due, for the scheduler (`runDue`): derived from the ledger, not state.
    private var due = DueQueue()
    private let schedulePolicy: SchedulePolicy

    init(index: Int, configuration: EngineConfiguration, clock: any LedgerClock, keyPresence: KeyPresence,
         ledger restored: Ledger? = nil, log: ShardLog? = nil) {
        self.index = index
        self.keyPresence = keyPresence
        ledger = restored ?? Ledger(configuration: configuration.shardLedgerConfiguration)
        ledger.collectsDueNotes = true
        ledger.collectsAnomalyAlerts = true
        schedulePolicy = configuration.schedule
        for tenant in ledger.tenantsWithKeys { keyPresence.mark(tenant) }
        self.clock = clock
        onEntry = configuration.onEntry
        self.log = log
        submissions = SubmissionQueue(commandsMax: configuration.submissionCommandsMax)
        storage = log == nil ? nil : configuration.storage
        lastSnapshotMillis = Int64(monotonicNanos() / 1_000_000)
        var notes: [DueNote] = []
        for note in ledger.allDueNotes() {
            notes.append(note)
            if let warning = Self.warning(before: note, millis: configuration.schedule.expiryWarningMillis) { notes.append(warning) }
        }
        due = DueQueue(notes)
    }

    /// For an expiry, the warning note before it (when the policy warns); nil otherwise.
    private static func warning(before note: DueNote, millis: Int64) -> DueNote? {
        guard note.kind == .expiry && millis > 0 else { return nil }
        return DueNote(at: note.at - min(note.at, millis), kind: .warning, slot: note.slot)
    }

    /// Moves the notes the last commands left into the due queue.
    private func absorbDueNotes() {
        // A mutating call: a non-mutating one on the stored ledger copies the whole ledger
        // value first (see `query`; reading it through `query` copied it too), 8 % of a
        // single debit call.
        guard ledger.hasDueNotes() else { return }
        let millis = schedulePolicy.expiryWarningMillis
        ledger.takeDueNotes { note in
            due.push(note)
            if let warning = Self.warning(before: note, millis: millis) { due.push(warning) }
        }
    }

    /// One turn of the scheduler on this shard: takes up to `notesPerTurn` notes due by now,
    /// in order, asks the ledger what each calls for, applies the commands as one batch
    /// (through the log, like any batch, so recovery replays them) and returns them with
    /// the payments and notices for the host side.
    func runDue() async -> DueTurn {
        var (turn, durableAt) = await runDueApplying()
        if let durableAt, let log {
            do { try await log.waitUntilDurable(durableAt) } catch { turn.applied = turn.applied.map { ($0.command, .failure(.logStopped)) } }
        }
        return turn
    }

    /// `runDue` without waiting for the log: the turn (its `applied` outcomes hold once the
    /// log is durable up to the LSN returned) and that LSN. The engine takes every shard's
    /// turn first and waits for their logs afterwards, so the syncs overlap the turns.
    func runDueApplying() async -> (turn: DueTurn, durableAt: UInt64?) {
        await waitForLogRoom()
        var turn = DueTurn()
        let started = monotonicNanos()
        let startedCPU = threadCPUNanos()
        let now = stamp()
        // Sized for the turn up front: growing the key set from empty rehashed it at every doubling.
        let most = min(schedulePolicy.notesPerTurn, due.count)
        var commands: [Command] = []
        commands.reserveCapacity(most)
        var keys = Set<IdempotencyKey>(minimumCapacity: most)
        var previous: DueNote?
        var taken = 0
        while taken < schedulePolicy.notesPerTurn, let note = due.pop(dueBy: now.millisSinceEpoch) {
            if note == previous { continue }
            previous = note
            taken += 1
            let work = query {
                $0.dueWork(note, at: now, graceMillis: schedulePolicy.graceMillis, warningMillis: schedulePolicy.expiryWarningMillis)
            }
            switch work {
            case nil: break
            case .command(let command)?: if keys.insert(command.key).inserted { commands.append(command) }
            case .notice(let notice)?: turn.notices.append(notice)
            case let payment?: turn.payments.append(payment)
            }
        }
        // The commands are applied in this turn; waiting for them to be durable is not part
        // of it (the shard serves other calls meanwhile).
        var outcomes: [Outcome] = []
        var durableAt: UInt64?
        if !commands.isEmpty { (outcomes, durableAt) = apply(commands, positions: nil) }
        // After the commands: they may have left notes due already (a catch-up renewal
        // whose next cycle has ended too).
        turn.more = due.next.map { $0.at <= now.millisSinceEpoch } ?? false
        noteTurn(started: started, startedCPU: startedCPU)
        turn.turns = [TurnTiming(wallNanos: monotonicNanos() - started, cpuNanos: threadCPUNanos() - startedCPU, notes: taken)]
        // Labelled as `applied` is: `Array(zip(...))` built unlabelled pairs and cast the
        // array, a dynamic cast per element.
        turn.applied = zip(commands, outcomes).map { (command: $0, outcome: $1) }
        return (turn, durableAt)
    }

    /// When the earliest note falls due (nil when none is queued).
    func nextDue() -> Timestamp? { due.next.map { Timestamp(millisSinceEpoch: $0.at) } }

    /// Notes queued (for statistics and tests).
    var dueCount: Int { due.count }

    /// Time for the next command: the clock, but never before the last stamp.
    private func stamp() -> Timestamp { max(clock.now(), ledger.lastTime) }

    /// Applies one command of an engine in memory (with storage, single calls go through
    /// `submissions` and `drain`).
    func execute(_ command: Command) -> Outcome {
        assert(log == nil, "a durable shard takes single calls through its submission queue")
        let registrations = ledger.keyRegistrationCount
        let (outcome, recorded) = ledger.record(command, at: stamp())
        if recorded, let onEntry, let entry = ledger.recentEntries.newest { onEntry(index, entry) }
        absorbDueNotes()
        if ledger.keyRegistrationCount != registrations { keyPresence.mark(command.tenant) }
        return outcome
    }

    /// Rounds a drain runs before it lets other calls waiting for the actor go first.
    static let drainRoundsMax = 4

    /// Applies the single-command calls queued in `submissions`, a round at a time: each
    /// round takes everything queued (at most `submissions.commandsMax`), applies it as one
    /// batch (one timestamp: the commands arrived together), appends the records, and
    /// resumes the callers once the records are durable — from the log's writer thread
    /// right after the sync in strict mode, at once otherwise. Before each round it waits
    /// for room in the log (back-pressure), meanwhile the callers wait in the queue. Ends
    /// when the queue is empty; after `drainRoundsMax` rounds it schedules its own
    /// continuation, so reads and batches are not starved.
    func drain() async {
        for _ in 0 ..< Self.drainRoundsMax {
            await waitForLogRoom()
            submissions.take(commands: &drainCommands, continuations: &drainContinuations)
            if drainCommands.isEmpty { return }
            drainRoundCommandsHighWater = max(drainRoundCommandsHighWater, drainCommands.count)
            applyDrained()
            drainCommands.removeAll(keepingCapacity: true)
            drainContinuations.removeAll(keepingCapacity: true)
        }
        Task { await self.drain() }
    }

    /// Back-pressure: suspends while the log has `pendingBytesMax` bytes or more waiting for
    /// its writer. Every path that appends (drain rounds, batches, scheduler turns) waits
    /// here first, in the same line, and appends right after without suspending again, so
    /// each append starts below the bound. A Bool read when there is room.
    private func waitForLogRoom() async {
        if let log, !log.mayAppend { await log.waitForRoom() }
    }

    private func applyDrained() {
        let continuations = drainContinuations
        let (outcomes, durableAt) = apply(drainCommands, positions: nil)
        guard let durableAt, let log else {
            for (continuation, outcome) in zip(continuations, outcomes) { continuation.resume(returning: outcome) }
            return
        }
        log.whenDurable(durableAt) { failure in
            for (continuation, outcome) in zip(continuations, outcomes) {
                continuation.resume(returning: failure == nil ? outcome : .failure(.logStopped))
            }
        }
    }

    /// Applies the commands at `positions` of a batch (all when nil). They share one
    /// timestamp (they arrived together). The batch array is shared, not copied. With
    /// storage, the outcomes come back once all their records are durable.
    func execute(batch commands: [Command], positions: [Int]? = nil) async -> [Outcome] {
        await waitForLogRoom()
        let (outcomes, durableAt) = apply(commands, positions: positions)
        if let durableAt, let log {
            do { try await log.waitUntilDurable(durableAt) } catch { return outcomes.map { _ in .failure(.logStopped) } }
        }
        return outcomes
    }

    /// `execute(batch:positions:)` without waiting for the log: the outcomes (they hold once
    /// the log is durable up to the LSN returned) and that LSN (see `CreditEngine.execute(turnsOf:)`).
    func executeApplying(batch commands: [Command], positions: [Int]) async -> (outcomes: [Outcome], durableAt: UInt64?) {
        await waitForLogRoom()
        return apply(commands, positions: positions)
    }

    /// The one way commands are applied (batches, and the drained single calls): at one
    /// timestamp, through the batch path. With storage, the commands that changed the state
    /// are appended to the log in one hand-over, and the LSN the outcomes must wait for is
    /// returned — the last appended, so a retry answered from the idempotency table waits
    /// for its original too. A command too large for a log record is refused on its own
    /// (not applied, not remembered); once the log has stopped, every command is refused.
    private func apply(_ commands: [Command], positions: [Int]?) -> (outcomes: [Outcome], durableAt: UInt64?) {
        let registrations = ledger.keyRegistrationCount
        defer {
            if ledger.keyRegistrationCount != registrations { markKeyTenants(commands, positions: positions) }
            absorbDueNotes()
        }
        guard let log else {
            let (outcomes, entries, _) = ledger.record(batch: commands, positions: positions, at: stamp(),
                                                       collectingEntries: onEntry != nil)
            if let onEntry { for entry in entries { onEntry(index, entry) } }
            return (outcomes, nil)
        }
        let count = positions?.count ?? commands.count
        if log.stoppedBecause != nil { return ([Outcome](repeating: .failure(.logStopped), count: count), nil) }
        let started = monotonicNanos()
        let startedCPU = threadCPUNanos()
        var applied = positions
        // Positions (in `positions`, or in `commands` when nil) refused before applying, with why.
        var refused: [Int: LedgerError] = [:]
        let anyRefused = positions.map { $0.contains { Self.refusal(commands[$0]) != nil } }
            ?? commands.contains { Self.refusal($0) != nil }
        if anyRefused {
            let all = positions ?? Array(commands.indices)
            for index in all.indices { refused[index] = Self.refusal(commands[all[index]]) }
            applied = all.indices.filter { refused[$0] == nil }.map { all[$0] }
        }
        let time = stamp()
        let (outcomes, entries, recorded) = ledger.record(batch: commands, positions: applied, at: time,
                                                          collectingEntries: onEntry != nil, collectingRecorded: true)
        log.append(commands, at: time, indices: applied.map { applied in recorded.map { applied[$0] } } ?? recorded)
        if let onEntry { for entry in entries { onEntry(self.index, entry) } }
        noteRecorded(recorded.count)
        noteTurn(started: started, startedCPU: startedCPU)
        guard !refused.isEmpty else { return (outcomes, log.lastAppendedLSN) }
        // Put the refusals back in their places.
        var next = outcomes.makeIterator()
        let all = (0 ..< count).map { position in refused[position].map { .failure($0) } ?? next.next()! }
        return (all, log.lastAppendedLSN)
    }

    /// Marks the tenants of the batch's key registrations in the key-presence filter (a
    /// rejected registration marks one needlessly: the filter only ever answers "maybe").
    /// Runs before the callers are resumed.
    private func markKeyTenants(_ commands: [Command], positions: [Int]?) {
        for position in positions ?? Array(commands.indices) {
            if case .registerKey = commands[position].action { keyPresence.mark(commands[position].tenant) }
        }
    }

    /// Why a command is refused before it is applied, so that it is neither logged nor
    /// remembered: its log record would exceed `WALFormat.recordSizeMax` (a text field of
    /// megabytes; the ledger's own limit is 256 bytes), or it names a model or provider this
    /// process could not keep (its name table is full: whether another process could is
    /// not the log's to decide). Nil for every other command.
    static func refusal(_ command: Command) -> LedgerError? {
        guard command.hasVariableSize else { return nil }
        if command.encodedSizeBound() + WALFormat.recordHeaderSize > WALFormat.recordSizeMax
            && command.encodedSize() + WALFormat.recordHeaderSize > WALFormat.recordSizeMax {
            return .invalidInput(.textTooLong)
        }
        return command.namesUnavailable ? .limitReached(.namesPerProcess) : nil
    }

    // MARK: Snapshots

    private func noteRecorded(_ count: Int) {
        recordsSinceSnapshot += count
        guard let storage, !snapshotInFlight else { return }
        let byCount = storage.snapshotEveryRecords.map { recordsSinceSnapshot >= $0 } ?? false
        let byTime = storage.snapshotEveryMillis.map {
            recordsSinceSnapshot > 0 && Int64(monotonicNanos() / 1_000_000) - lastSnapshotMillis >= Int64($0)
        } ?? false
        if byCount || byTime {
            snapshotInFlight = true
            Task { _ = try? await self.takeSnapshot(alreadyClaimed: true) }
        }
    }

    /// Writes a snapshot of the current state, on demand or when due. The state is taken
    /// as a copy-on-write copy (cheap: the large tables are paged); encoding, compression
    /// and the file writes run on their own thread once the log is synced up to the
    /// snapshot's LSN. Returns nil when the shard has no storage.
    func takeSnapshot(alreadyClaimed: Bool = false) async throws -> SnapshotHeader? {
        guard let log, let storage else { return nil }
        if !alreadyClaimed {
            await snapshotFinished()
            snapshotInFlight = true
        }
        defer {
            snapshotInFlight = false
            for waiter in snapshotWaiters { waiter.resume() }
            snapshotWaiters.removeAll()
        }
        let frozen = ledger
        let lsn = log.lastAppendedLSN
        let chain = log.lastAppendedChecksum
        let counted = recordsSinceSnapshot
        if let last = lastSnapshot, last.lsn == lsn { return last }
        try await log.waitUntilSynced(lsn)
        let shard = index
        let currentSegment = log.currentSegmentFirstLSN
        // A periodic snapshot is background work (the lowest priority: it must not take CPU
        // from the shards); one a caller waits for runs at normal priority, or on a busy
        // machine it would wait for the load to stop.
        let background = alreadyClaimed
        let header: SnapshotHeader = try await withUnsafeThrowingContinuation { continuation in
            let write: @Sendable () -> Void = {
                do {
                    let header = try SnapshotFile.write(frozen, shard: UInt32(shard), shardCount: log.shardCount, lsn: lsn,
                                                        chain: chain, directory: storage.snapshotDirectory(shard),
                                                        fileSystem: storage.fileSystem, keys: storage.encryption)
                    try ShardStorage.retire(shard: shard, storage: storage, currentSegmentFirstLSN: currentSegment)
                    continuation.resume(returning: header)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            if background { startBackgroundThread(write) } else { startThread(write) }
        }
        lastSnapshot = header
        snapshotsTaken += 1
        recordsSinceSnapshot -= counted
        lastSnapshotMillis = Int64(monotonicNanos() / 1_000_000)
        return header
    }

    /// Releases the holds past their time-out, as one batch of commands with keys derived
    /// from the hold ids (so a repeated sweep changes nothing twice).
    func timeOutHolds() async -> Int {
        let commands = ledger.holdsTimedOut(at: stamp()).map { hold in
            Command(key: IdempotencyKey(deriving: "hold-timeout/\(hold.tenant.rawValue)/\(hold.number)"), .timeOutHold(hold))
        }
        return await execute(batch: commands).filter { if case .success = $0 { true } else { false } }.count
    }

    /// Runs a query on the ledger where it lives. Calling a query on the stored property
    /// directly copies the whole ledger value first (retaining and releasing every table
    /// of it, about a microsecond), because the query is not inlined across the module.
    /// Through this inout access the compiler still copies it for a non-mutating call
    /// (checked in the release binary: a 1,112-byte memcpy), so what runs on every command
    /// is a `mutating` method of the ledger instead (`hasDueNotes()`); queries a caller asks
    /// for now and then go through here.
    @inline(__always)
    private func query<T>(_ body: (inout Ledger) -> T) -> T { body(&ledger) }

    func balance(of account: AccountID) -> Balance? {
        let now = stamp()
        return query { $0.balance(of: account, at: now) }
    }
    func available(of account: AccountID, scope: ChargeScope) -> Millicredits? {
        let now = stamp()
        return query { $0.available(of: account, scope: scope, at: now) }
    }
    func hold(_ id: HoldID) -> HoldView? { query { $0.hold(id) } }
    func organisation(_ id: TenantID) -> OrganisationView? { query { $0.organisation(id) } }
    func keyForCall(by account: AccountID, provider: String) -> (source: KeySource, registration: KeyRegistration?)? {
        query { $0.keyForCall(by: account, provider: provider) }
    }
    func registeredKeys(of account: AccountID) -> [KeyRegistration] { query { $0.registeredKeys(of: account) } }
    func usableKeys(for account: AccountID) -> [String: KeySource] { query { $0.usableKeys(for: account) } }
    func rememberedOutcome(of key: IdempotencyKey, tenant: TenantID) -> Outcome? {
        let now = stamp()
        return query { $0.rememberedOutcome(of: key, tenant: tenant, at: now) }
    }
    func keyPolicy(of tenant: TenantID) -> KeyPolicy? { query { $0.keyPolicy(of: tenant) } }
    func subscription(of account: AccountID) -> SubscriptionView? { query { $0.subscription(of: account) } }
    func autoRefill(of account: AccountID) -> AutoRefillView? { query { $0.autoRefill(of: account) } }

    func permits(_ principal: Principal, _ permission: Permission, _ target: PermissionTarget) -> Bool {
        query { $0.permits(principal, permission, target) }
    }
    func roles(of client: ClientID) -> [Role] { query { $0.roles(of: client) } }
    func takeAnomalyAlerts() -> [AnomalyAlert] { ledger.hasAnomalyAlerts() ? ledger.takeAnomalyAlerts() : [] }
    func anomalyMode(of tenant: TenantID) -> AnomalyMode { query { $0.anomalyMode(of: tenant) } }

    func recentStatement(of account: AccountID) -> [LedgerEntry] {
        ledger.recentEntries.filter { $0.account == account || $0.member == account }
    }

    func resetLongestTurn() {
        longestTurnNanos = 0
        longestTurnCPUNanos = 0
        longestTurnDuringSnapshotNanos = 0
        turnsStalledDuringSnapshot = 0
    }

    /// Waits for a snapshot in flight (it would still write and retire segments), then
    /// syncs and closes the log.
    func close() async {
        await snapshotFinished()
        await log?.close()
    }

    /// Suspends until no snapshot is in flight. (A loop of `Task.yield()` here kept both
    /// cores busy while the snapshot's idle-priority thread waited for a core.)
    private func snapshotFinished() async {
        while snapshotInFlight {
            await withCheckedContinuation { snapshotWaiters.append($0) }
        }
    }

    func durabilityStatistics() -> DurabilityStatistics {
        var statistics = DurabilityStatistics()
        if let log {
            let (syncs, records) = log.syncStatistics
            statistics.syncs = syncs
            statistics.syncedRecords = records
        }
        statistics.snapshots = snapshotsTaken
        statistics.longestTurnNanos = longestTurnNanos
        statistics.longestTurnCPUNanos = longestTurnCPUNanos
        statistics.longestTurnDuringSnapshotNanos = longestTurnDuringSnapshotNanos
        statistics.snapshotStalls = turnsStalledDuringSnapshot
        return statistics
    }

    func invariantViolations() -> [String] { ledger.invariantViolations().map { "shard \(index): \($0)" } }
    func stateDigest() -> UInt64 { ledger.stateDigest() }
    func stateDigestWithoutSpendVelocities() -> UInt64 { ledger.stateDigest(includingSpendVelocities: false) }

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
