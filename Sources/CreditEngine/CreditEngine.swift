// CreditEngine — the public async facade and the shard actors.
//
// What lives here: `CreditEngine`, which routes each command by a hash of its tenant id to
// one of N `Shard` actors; each shard owns one partition of the deterministic `Ledger`
// (CreditCore), stamps commands with its clock and keeps a bounded window of recent entries.
// Everything a debit checks (member limit, department allocation, pool) is in one shard,
// so it is atomic without locks.
//
// What may not live here: ledger rules (they belong to CreditCore), file I/O (persistence).
@_exported import CreditCore
@_exported import CreditPersistence
#if canImport(Glibc)
import Glibc
#endif
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The engine: N shard actors behind one Sendable facade.
public final class CreditEngine: Sendable {
    public let configuration: EngineConfiguration
    let shards: [Shard]
    /// Which tenants may hold provider keys (see `mayHaveKeys`).
    let keyPresence: KeyPresence

    /// What recovery did, per shard (empty for an in-memory engine).
    public let recoveryReports: [ShardRecoveryReport]
    /// The one clock of the engine and of the services over it: commands are stamped with
    /// it, and `Billing` and `Scheduler` read the time from it (a purchase's expiry, a due
    /// renewal), so a `ManualClock` moves them all together.
    public let clock: any LedgerClock

    /// An in-memory engine (`configuration.storage` must be nil: use `open` for storage).
    public init(configuration: EngineConfiguration = EngineConfiguration(), clock: any LedgerClock = SystemClock()) {
        precondition(configuration.shardCount >= 1 && configuration.shardCount <= EngineConfiguration.shardCountMax)
        precondition(configuration.storage == nil, "an engine with storage is opened with CreditEngine.open")
        self.configuration = configuration
        self.clock = clock
        let keyPresence = KeyPresence()
        self.keyPresence = keyPresence
        shards = (0 ..< configuration.shardCount).map { index in
            Shard(index: index, configuration: configuration, clock: clock, keyPresence: keyPresence)
        }
        recoveryReports = []
    }

    private init(configuration: EngineConfiguration, clock: any LedgerClock, shards: [Shard], keyPresence: KeyPresence,
                 reports: [ShardRecoveryReport]) {
        self.configuration = configuration
        self.clock = clock
        self.shards = shards
        self.keyPresence = keyPresence
        recoveryReports = reports
    }

    /// Whether any account of `tenant` may hold a provider key: false means it holds none,
    /// true means it may (see `KeyPresence`). No trip to the shard and no lock: callers
    /// use it to skip key work for the tenants without keys. A key registration is seen
    /// here once the call registering it has returned.
    public func mayHaveKeys(_ tenant: TenantID) -> Bool { keyPresence.mayHaveKeys(tenant) }

    /// Starts loading what `mayHaveKeys(tenant)` reads (a hint for a caller that asks it a
    /// little later, after other work).
    public func prefetchKeyPresence(_ tenant: TenantID) { keyPresence.prefetch(tenant) }

    /// Opens an engine on its data directory (`configuration.storage`), creating the
    /// directory on first use, else recovering every shard: newest verified snapshot, then
    /// the log after it (see `ShardStorage.recover`). Torn tails are cut and reported in
    /// `recoveryReports`; anything worse throws and leaves the directory as it was.
    ///
    /// The shard count of an existing directory is fixed: `configuration.shardCount` must
    /// equal it (`ShardStorage.existingShardCount` reads it).
    public static func open(configuration: EngineConfiguration, clock: any LedgerClock = SystemClock()) async throws(RecoveryError) -> CreditEngine {
        guard let storage = configuration.storage else { return CreditEngine(configuration: configuration, clock: clock) }
        precondition(configuration.shardCount >= 1 && configuration.shardCount <= EngineConfiguration.shardCountMax)
        let shardCount = try ShardStorage.prepare(storage: storage, shardCount: configuration.shardCount, create: true)
        guard shardCount == configuration.shardCount else {
            throw RecoveryError(shard: nil, .shardCountMismatch(directory: shardCount, configured: configuration.shardCount))
        }
        let ledgerConfiguration = configuration.shardLedgerConfiguration
        let recovered: [Result<(Ledger, WALReader.Report, ShardRecoveryReport), RecoveryError>] = await withTaskGroup(
            of: (Int, Result<(Ledger, WALReader.Report, ShardRecoveryReport), RecoveryError>).self
        ) { group in
            for shard in 0 ..< shardCount {
                group.addTask {
                    do throws(RecoveryError) {
                        return (shard, .success(try ShardStorage.recover(shard: shard, shardCount: shardCount, storage: storage,
                                                                           ledger: ledgerConfiguration)))
                    } catch {
                        return (shard, .failure(error))
                    }
                }
            }
            var results = [Result<(Ledger, WALReader.Report, ShardRecoveryReport), RecoveryError>?](repeating: nil, count: shardCount)
            for await (shard, result) in group { results[shard] = result }
            return results.map { $0! }
        }
        // Every shard must recover before any is prepared for appending (which zeroes torn
        // tails and sets segments aside): a refused start-up changes no file.
        for result in recovered { _ = try result.get() }
        var shards: [Shard] = []
        var reports: [ShardRecoveryReport] = []
        let keyPresence = KeyPresence()
        // Writer threads (see LogWriter): in strict mode one per shard, so the shards' syncs
        // run side by side; otherwise one per core, writing in bulk.
        let writerCount = storage.writerThreads
            ?? (storage.log.durability == .strict ? shardCount : ProcessInfoLite.activeProcessorCount)
        let writers = LogWriter.Pool(count: max(1, min(shardCount, writerCount)), commitDelayMicros: storage.log.commitDelayMicros)
        for (index, result) in recovered.enumerated() {
            let (ledger, walReport, report) = try result.get()
            let log: ShardLog
            do {
                log = try ShardLog(directory: storage.walDirectory(index), fileSystem: storage.fileSystem, shard: UInt32(index),
                                   shardCount: UInt32(shardCount), configuration: storage.log, resumingAfter: walReport,
                                   keys: storage.encryption, writer: writers.writer(for: index))
            } catch {
                throw RecoveryError(shard: index, .logOpenFailed(error.error))
            }
            do {
                try ShardStorage.startEmptyLiveSegment(shard: index, shardCount: shardCount, storage: storage, after: walReport)
            } catch {
                throw RecoveryError(shard: index, .logOpenFailed(error))
            }
            shards.append(Shard(index: index, configuration: configuration, clock: clock, keyPresence: keyPresence,
                                ledger: ledger, log: log))
            reports.append(report)
        }
        return CreditEngine(configuration: configuration, clock: clock, shards: shards, keyPresence: keyPresence, reports: reports)
    }

    /// Takes a snapshot of every shard now (each written once its log is synced up to it).
    /// Returns the headers written (empty for an in-memory engine).
    @discardableResult
    public func snapshot() async throws -> [SnapshotHeader] {
        // All shards at once: each encodes and writes on its own thread.
        try await withThrowingTaskGroup(of: SnapshotHeader?.self) { group in
            for shard in shards { group.addTask { try await shard.takeSnapshot() } }
            var headers: [SnapshotHeader] = []
            for try await header in group { if let header { headers.append(header) } }
            return headers.sorted { $0.shardIndex < $1.shardIndex }
        }
    }

    /// Syncs and closes every shard's log. The engine must not be used afterwards.
    public func close() async {
        for shard in shards { await shard.close() }
    }

    /// The shard that owns a tenant: a stable hash, so the same tenant always lands on the
    /// same shard for a given shard count.
    @inlinable
    public func shardIndex(for tenant: TenantID) -> Int {
        Self.shardIndex(for: tenant, shardCount: configuration.shardCount)
    }

    @inlinable
    public static func shardIndex(for tenant: TenantID, shardCount: Int) -> Int {
        // Lemire's multiply-shift maps the mixed 64-bit hash onto [0, shardCount) without a division.
        let hash = StableHasher.mix(tenant.rawValue)
        return Int(((hash >> 32) &* UInt64(shardCount)) >> 32)
    }

    /// Applies one command on its tenant's shard and returns its outcome (the original
    /// outcome if the key was seen before).
    public func execute(_ command: Command) async -> Outcome {
        if command.tenant == .platform { return await executeOnEveryShard(command) }
        let shard = shards[shardIndex(for: command.tenant)]
        if shard.log == nil { return await shard.execute(command) }
        // Queued for the shard's drain, which applies the calls queued together as one
        // batch and resumes each caller once its record is durable (see `Shard.drain`).
        return await withUnsafeContinuation { continuation in
            if shard.submissions.push(command, continuation) {
                Task { await shard.drain() }
            }
        }
    }

    /// A platform command (granting or revoking a platform role) on every shard, one after
    /// the other: each shard checks the principal and keeps the platform's roles itself.
    /// The outcome is the shards' common one; if they differ (a shard's log stopped), the
    /// first failure. A retry under the same key completes the shards that missed it.
    private func executeOnEveryShard(_ command: Command) async -> Outcome {
        var outcomes: [Outcome] = []
        for shard in shards {
            if shard.log == nil {
                outcomes.append(await shard.execute(command))
            } else {
                outcomes.append(await withUnsafeContinuation { continuation in
                    if shard.submissions.push(command, continuation) {
                        Task { await shard.drain() }
                    }
                })
            }
        }
        if outcomes.allSatisfy({ $0 == outcomes[0] }) { return outcomes[0] }
        return outcomes.first { if case .failure = $0 { true } else { false } } ?? outcomes[0]
    }

    /// Applies a batch that holds a platform command: one command after the other, in order
    /// (platform commands are rare; the shards' parallel path assumes one shard per command).
    private func executeOneByOne(_ commands: [Command]) async -> [Outcome] {
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(commands.count)
        for command in commands { outcomes.append(await execute(command)) }
        return outcomes
    }

    /// The positions in `commands` of each shard's commands, in order; nil when a command
    /// is a platform command (it belongs to every shard).
    private func shares(of commands: [Command]) -> [[Int]]? {
        var positions = [[Int]](repeating: [], count: shards.count)
        // Sized for an even share and a quarter more: grown from empty by appending, the
        // arrays reallocated about six times each per batch of 1,000 (1.4 % of a batch
        // run's CPU in malloc).
        let expected = commands.count / shards.count
        if expected >= 8 {
            for shard in positions.indices { positions[shard].reserveCapacity(expected + expected / 4 + 8) }
        }
        let complete = commands.withUnsafeBufferPointer { buffer in
            // Read in place: copying a Command just to see its tenant costs a copy and a destroy.
            for position in buffer.indices {
                let tenant = buffer[position].tenant
                if tenant == .platform { return false }
                positions[shardIndex(for: tenant)].append(position)
            }
            return true
        }
        return complete ? positions : nil
    }

    /// Batches at least this long are spread over the shards by parallel child tasks.
    public static let parallelBatchCommandsMin = 4_096

    /// Applies many commands: each shard applies its share in the given order (large
    /// batches on all shards at once). Outcomes come back in the order of `commands`. Commands of one tenant
    /// keep their relative order; commands of different tenants are independent.
    public func execute(batch commands: [Command]) async -> [Outcome] {
        if commands.isEmpty { return [] }
        guard let positions = shares(of: commands) else { return await executeOneByOne(commands) }
        if let only = positions.firstIndex(where: { $0.count == commands.count }) {
            return await shards[only].execute(batch: commands)
        }
        var results = [[Outcome]](repeating: [], count: shards.count)
        if commands.count < Self.parallelBatchCommandsMin {
            // Small batches visit their shards one after the other: a child task per shard
            // costs more than it saves, and concurrent callers keep the cores busy anyway.
            for (shard, share) in positions.enumerated() where !share.isEmpty {
                results[shard] = await shards[shard].execute(batch: commands, positions: share)
            }
        } else {
            await withTaskGroup(of: (Int, [Outcome]).self) { group in
                for (shard, share) in positions.enumerated() where !share.isEmpty {
                    group.addTask { (shard, await self.shards[shard].execute(batch: commands, positions: share)) }
                }
                for await (shard, outcomes) in group { results[shard] = outcomes }
            }
        }
        return Self.gathered(results, at: positions, count: commands.count)
    }

    /// The shards' outcomes put back in the order of the batch, written once each into the
    /// result (no optional per position to fill and unwrap: 1 % of a batch run). `positions`
    /// partitions `0 ..< count` by construction (`shares(of:)` puts each position in exactly
    /// one share), and every shard answers each of its positions: both are checked.
    private static func gathered(_ results: [[Outcome]], at positions: [[Int]], count: Int) -> [Outcome] {
        var total = 0
        for shard in positions.indices {
            precondition(results[shard].count == positions[shard].count,
                         "shard \(shard) answered \(results[shard].count) of its \(positions[shard].count) commands")
            total += positions[shard].count
        }
        precondition(total == count, "the shares hold \(total) positions for \(count) commands")
        assert(Set(positions.joined()) == Set(0 ..< count), "the shares are not a partition of the batch")
        return [Outcome](unsafeUninitializedCapacity: count) { buffer, initialized in
            for shard in positions.indices {
                for (position, outcome) in zip(positions[shard], results[shard]) {
                    (buffer.baseAddress! + position).initialize(to: outcome)
                }
            }
            initialized = count
        }
    }

    /// Applies a long batch of background work (the scheduler's renewals after their
    /// payments) in turns: each shard call applies at most `configuration.schedule.notesPerTurn`
    /// commands, the shards take turns one after the other, and the logs are waited for
    /// once, at the end. So other calls get the shards between turns, and the turns' records
    /// share the syncs (waiting after every turn made the syncs a month-end's bottleneck).
    /// Outcomes come back in the order of `commands`, once all are durable; commands of one
    /// tenant keep their relative order.
    public func execute(turnsOf commands: [Command]) async -> [Outcome] {
        if commands.isEmpty { return [] }
        let turn = configuration.schedule.notesPerTurn
        guard let positions = shares(of: commands) else { return await executeOneByOne(commands) }
        // Every position is filled by its shard's outcome below (`filled` checks it).
        var outcomes = [Outcome?](repeating: nil, count: commands.count)
        var durableAt = [UInt64?](repeating: nil, count: shards.count)
        var start = 0
        var more = true
        while more {
            more = false
            for (shard, share) in positions.enumerated() where start < share.count {
                let part = Array(share[start ..< min(share.count, start + turn)])
                let (results, lsn) = await shards[shard].executeApplying(batch: commands, positions: part)
                for (position, outcome) in zip(part, results) { outcomes[position] = outcome }
                if let lsn { durableAt[shard] = lsn }
                more = more || start + turn < share.count
            }
            start += turn
        }
        for (shard, lsn) in durableAt.enumerated() {
            guard let lsn, let log = shards[shard].log else { continue }
            do {
                try await log.waitUntilDurable(lsn)
            } catch {
                for position in positions[shard] { outcomes[position] = .failure(.logStopped) }
            }
        }
        return Self.filled(outcomes)
    }

    /// The outcomes of a batch shared out over the shards, every position filled (a command
    /// left without an outcome would be a bug in sharing it out).
    private static func filled(_ outcomes: [Outcome?]) -> [Outcome] {
        outcomes.map { outcome in
            guard let outcome else { preconditionFailure("a command of a batch got no outcome") }
            return outcome
        }
    }

    public func balance(of account: AccountID) async -> Balance? {
        await shards[shardIndex(for: account.tenant)].balance(of: account)
    }

    public func available(of account: AccountID, scope: ChargeScope = .unscoped) async -> Millicredits? {
        await shards[shardIndex(for: account.tenant)].available(of: account, scope: scope)
    }

    public func hold(_ id: HoldID) async -> HoldView? {
        await shards[shardIndex(for: id.tenant)].hold(id)
    }

    public func organisation(_ id: TenantID) async -> OrganisationView? {
        await shards[shardIndex(for: id)].organisation(id)
    }

    /// The key that would pay for `account`'s next call on `provider` under its key policy
    /// (with the sealed key, for the host to unseal), or `.system` and nil; nil for an
    /// unknown account.
    public func keyForCall(by account: AccountID, provider: String) async -> (source: KeySource, registration: KeyRegistration?)? {
        await shards[shardIndex(for: account.tenant)].keyForCall(by: account, provider: provider)
    }

    /// The outcome the engine remembers for a command of `tenant` with idempotency key
    /// `key` (what a retry gets), or nil if the key is not remembered (never seen, or
    /// forgotten after the idempotency window).
    public func rememberedOutcome(of key: IdempotencyKey, tenant: TenantID) async -> Outcome? {
        await shards[shardIndex(for: tenant)].rememberedOutcome(of: key, tenant: tenant)
    }

    /// Every provider whose calls by `account` a key would pay for now, with that key's
    /// source (routing prefers these providers).
    public func usableKeys(for account: AccountID) async -> [String: KeySource] {
        await shards[shardIndex(for: account.tenant)].usableKeys(for: account)
    }

    /// The provider keys registered on the account itself (an organisation's are on its pool).
    public func registeredKeys(of account: AccountID) async -> [KeyRegistration] {
        await shards[shardIndex(for: account.tenant)].registeredKeys(of: account)
    }

    /// An organisation's key policy; nil for an individual or an unknown tenant.
    public func keyPolicy(of tenant: TenantID) async -> KeyPolicy? {
        await shards[shardIndex(for: tenant)].keyPolicy(of: tenant)
    }

    /// Whether `principal` may do what `permission` covers over `account` (or, with nil, over
    /// the tenant as a whole): nil if it may, else `.forbidden(permission)`. Commands are
    /// checked by the ledger itself; a front end calls this before it answers a query
    /// (docs/security.md, the permission table).
    public func authorize(_ principal: Principal, _ permission: Permission, tenant: TenantID,
                          account: AccountID? = nil) async -> LedgerError? {
        if case .system = principal { return nil }
        let target = PermissionTarget(tenant: tenant, account: account)
        let permitted = await shards[shardIndex(for: tenant == .platform ? TenantID(0) : tenant)].permits(principal, permission, target)
        return permitted ? nil : .forbidden(permission)
    }

    /// The anomaly guard's alerts since the last call, each shard's in order (docs/security.md,
    /// "The anomaly guard"). The scheduler publishes them as `anomalyDetected` notices; a
    /// host without one calls this. At most `4,096` wait per shard (the older half is
    /// dropped beyond); the freeze they report is state and does not depend on them.
    public func takeAnomalyAlerts() async -> [AnomalyAlert] {
        var alerts: [AnomalyAlert] = []
        for shard in shards { alerts += await shard.takeAnomalyAlerts() }
        return alerts
    }

    /// The anomaly guard's mode for a tenant.
    public func anomalyMode(of tenant: TenantID) async -> AnomalyMode {
        await shards[shardIndex(for: tenant)].anomalyMode(of: tenant)
    }

    /// The roles `client` holds in `tenant` and on the platform.
    public func roles(of client: ClientID, in tenant: TenantID) async -> [Role] {
        await shards[shardIndex(for: tenant)].roles(of: client).filter { $0.tenant == nil || $0.tenant == tenant }
    }

    /// The account's entries still in its shard's recent window (`recentEntriesPerShard`),
    /// oldest first: entries where it is the account or the principal.
    public func recentStatement(of account: AccountID) async -> [LedgerEntry] {
        await shards[shardIndex(for: account.tenant)].recentStatement(of: account)
    }

    /// Releases every hold whose time-out has passed, through the command path. Returns how
    /// many were released. (The scheduler calls this; tests and tools may too.)
    @discardableResult
    public func timeOutHolds() async -> Int {
        var released = 0
        for shard in shards { released += await shard.timeOutHolds() }
        return released
    }

    public func subscription(of account: AccountID) async -> SubscriptionView? {
        await shards[shardIndex(for: account.tenant)].subscription(of: account)
    }

    public func autoRefill(of account: AccountID) async -> AutoRefillView? {
        await shards[shardIndex(for: account.tenant)].autoRefill(of: account)
    }

    /// One turn of the scheduler on each shard, one shard after the other (see
    /// `Shard.runDue`): the commands it applied, the payments and notices it leaves to the
    /// host side, and whether any shard has more due now. A scheduler calls it until nothing
    /// more is due. Each turn holds one shard for at most `configuration.schedule.notesPerTurn`
    /// notes, and only one shard at a time: scheduled work is background work, and the
    /// other cores stay free for the calls it must not stall.
    public func runDue() async -> DueTurn {
        var merged = DueTurn()
        var waits: [(shard: Shard, lsn: UInt64, applied: Range<Int>)] = []
        // Up to `roundsBeforeSync` rounds of turns before waiting for the logs: each turn is
        // short (other calls get the shard in between), and the rounds' records share the
        // syncs — with storage, one sync per turn made the syncs the month-end's bottleneck.
        var busy = Array(shards.indices)
        for _ in 0 ..< Self.roundsBeforeSync where !busy.isEmpty {
            var stillBusy: [Int] = []
            for index in busy {
                let (turn, durableAt) = await shards[index].runDueApplying()
                if let durableAt {
                    waits.append((shards[index], durableAt, merged.applied.count ..< merged.applied.count + turn.applied.count))
                }
                merged.applied += turn.applied
                merged.payments += turn.payments
                merged.notices += turn.notices
                merged.turns += turn.turns
                if turn.more { stillBusy.append(index) }
            }
            busy = stillBusy
        }
        merged.more = !busy.isEmpty
        // The shards' logs sync side by side while the turns go on; nothing is reported
        // (or paid for) before it is durable.
        for (shard, lsn, applied) in waits {
            guard let log = shard.log else { continue }
            do {
                try await log.waitUntilDurable(lsn)
            } catch {
                for index in applied { merged.applied[index].outcome = .failure(.logStopped) }
            }
        }
        return merged
    }

    /// Rounds of scheduler turns `runDue` takes before it waits for the logs.
    public static let roundsBeforeSync = 4

    /// When the earliest due note of any shard falls due (nil when none is queued).
    public func nextDueTime() async -> Timestamp? {
        var earliest: Timestamp?
        for shard in shards {
            if let next = await shard.nextDue() { earliest = min(earliest ?? next, next) }
        }
        return earliest
    }

    /// Due notes queued over all shards.
    public func dueNoteCount() async -> Int {
        var count = 0
        for shard in shards { count += await shard.dueCount }
        return count
    }

    /// Every broken invariant of every shard (empty when all hold).
    public func invariantViolations() async -> [String] {
        var problems: [String] = []
        for shard in shards { problems += await shard.invariantViolations() }
        return problems
    }

    /// One digest per shard, for comparing two engines' states.
    public func stateDigests() async -> [UInt64] {
        var digests: [UInt64] = []
        for shard in shards { digests.append(await shard.stateDigest()) }
        return digests
    }

    /// The shards' digests without the anomaly guard's spend velocities (what the golden
    /// fixtures written before the guard recorded; `Ledger.stateDigest(includingSpendVelocities:)`).
    package func stateDigestsWithoutSpendVelocities() async -> [UInt64] {
        var digests: [UInt64] = []
        for shard in shards { digests.append(await shard.stateDigestWithoutSpendVelocities()) }
        return digests
    }

    /// Log counters summed over the shards: syncs, records they made durable, and the
    /// longest time one command or batch share spent in its shard (ns).
    public func durabilityStatistics() async -> DurabilityStatistics {
        var total = DurabilityStatistics()
        for shard in shards { total.add(await shard.durabilityStatistics()) }
        return total
    }

    /// Starts measuring the longest shard turn afresh (e.g. after a benchmark's setup).
    public func resetTurnStatistics() async {
        for shard in shards { await shard.resetLongestTurn() }
    }

    public func statistics() async -> EngineStatistics {
        var total = EngineStatistics()
        for shard in shards { total.add(await shard.statistics()) }
        return total
    }
}
