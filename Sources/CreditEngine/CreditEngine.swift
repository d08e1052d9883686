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

/// The engine: N shard actors behind one Sendable facade.
public final class CreditEngine: Sendable {
    public let configuration: EngineConfiguration
    let shards: [Shard]

    public init(configuration: EngineConfiguration = EngineConfiguration(), clock: any LedgerClock = SystemClock()) {
        precondition(configuration.shardCount >= 1 && configuration.shardCount <= EngineConfiguration.shardCountMax)
        self.configuration = configuration
        shards = (0 ..< configuration.shardCount).map { index in
            Shard(index: index, configuration: configuration, clock: clock)
        }
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
        await shards[shardIndex(for: command.tenant)].execute(command)
    }

    /// Batches at least this long are spread over the shards by parallel child tasks.
    public static let parallelBatchCommandsMin = 4_096

    /// Applies many commands: each shard applies its share in the given order (large
    /// batches on all shards at once). Outcomes come back in the order of `commands`. Commands of one tenant
    /// keep their relative order; commands of different tenants are independent.
    public func execute(batch commands: [Command]) async -> [Outcome] {
        if commands.isEmpty { return [] }
        let shardCount = shards.count
        var positions = [[Int]](repeating: [], count: shardCount)
        commands.withUnsafeBufferPointer { buffer in
            // Read in place: copying a Command just to see its tenant costs a copy and a destroy.
            for position in buffer.indices { positions[shardIndex(for: buffer[position].tenant)].append(position) }
        }
        if let only = positions.firstIndex(where: { $0.count == commands.count }) {
            return await shards[only].execute(batch: commands)
        }
        // A placeholder in every position; each is overwritten by its shard's outcome below.
        var outcomes = [Outcome](repeating: .failure(.amountOverflow), count: commands.count)
        if commands.count < Self.parallelBatchCommandsMin {
            // Small batches visit their shards one after the other: a child task per shard
            // costs more than it saves, and concurrent callers keep the cores busy anyway.
            for (shard, share) in positions.enumerated() where !share.isEmpty {
                let results = await shards[shard].execute(batch: commands, positions: share)
                for (position, outcome) in zip(share, results) { outcomes[position] = outcome }
            }
            return outcomes
        }
        await withTaskGroup(of: (Int, [Outcome]).self) { group in
            for (shard, share) in positions.enumerated() where !share.isEmpty {
                group.addTask { (shard, await self.shards[shard].execute(batch: commands, positions: share)) }
            }
            for await (shard, results) in group {
                for (position, outcome) in zip(positions[shard], results) { outcomes[position] = outcome }
            }
        }
        return outcomes
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

    public func statistics() async -> EngineStatistics {
        var total = EngineStatistics()
        for shard in shards { total.add(await shard.statistics()) }
        return total
    }
}
