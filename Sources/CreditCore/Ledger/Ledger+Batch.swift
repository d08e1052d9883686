import CCacheHints

/// Applying a batch with the memory latency of later commands overlapped.
///
/// A debit on a large ledger waits on three dependent cache misses — tenant table, account
/// record, first grant — plus the idempotency index. While command i is applied, the batch
/// path prefetches the index slots and tenant entry of command i+12, and the account record
/// and first grant (from the tenant entry's links) of i+6. Prefetching is a hint: results
/// are exactly those of applying the commands one by one.
extension Ledger {
    static var tenantPrefetchDistance: Int { 12 }
    /// The account record and first grant both come from the tenant entry's links.
    static var accountPrefetchDistance: Int { 6 }

    /// Applies the commands at `positions` of `commands` (all of them when nil), in that
    /// order, at one timestamp. Returns their outcomes in the same order; when
    /// `collectingEntries` is set, the entries they made (copying entries costs time); and
    /// when `collectingRecorded` is set, the indices (into the applied order) of the
    /// commands that changed the state — those the write-ahead log must hold (retries
    /// answered from the idempotency table and key conflicts change nothing).
    @_spi(Plumbing) public mutating func record(batch commands: [Command], positions: [Int]? = nil, at time: Timestamp,
                                collectingEntries: Bool, collectingRecorded: Bool = false)
        -> (outcomes: [Outcome], entries: [LedgerEntry], recorded: [Int]) {
        record(batch: commands, positions: positions, times: nil, at: time, collectingEntries: collectingEntries,
               collectingRecorded: collectingRecorded)
    }

    /// Re-applies logged commands, each at its own logged time (non-decreasing), with the
    /// batch path's prefetching: what recovery does with a log. The outcomes are those the
    /// commands had when first applied (the ledger is deterministic), so none is returned.
    @_spi(Plumbing) public mutating func replay(_ commands: [Command], times: [Timestamp]) {
        precondition(commands.count == times.count, "one time per command")
        _ = record(batch: commands, positions: nil, times: times, at: .epoch, collectingEntries: false, collectingRecorded: false)
    }

    /// The batch loop: every command at `time`, or at its own `times` entry when given.
    private mutating func record(batch commands: [Command], positions: [Int]?, times: [Timestamp]?, at time: Timestamp,
                                 collectingEntries: Bool, collectingRecorded: Bool)
        -> (outcomes: [Outcome], entries: [LedgerEntry], recorded: [Int]) {
        let count = positions?.count ?? commands.count
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(count)
        var entries: [LedgerEntry] = []
        var recordedIndices: [Int] = []
        if collectingRecorded { recordedIndices.reserveCapacity(count) }
        // Commands are read in place (borrowed), never copied: a copy of the non-trivial
        // Command enum and its destruction cost more than the prefetching saves.
        commands.withUnsafeBufferPointer { buffer in
            @inline(__always) func position(_ index: Int) -> Int { positions.map { $0[index] } ?? index }
            // Prologue: start the independent lines of the first commands at once, so a
            // short batch (a shard's share of a larger one) is not applied unprefetched.
            for index in 0 ..< min(Self.tenantPrefetchDistance, count) {
                let ahead = position(index)
                prefetchIndependentLines(tenant: buffer[ahead].tenant, key: buffer[ahead].key)
            }
            for index in 0 ..< min(Self.accountPrefetchDistance, count) {
                prefetchRecords(tenant: buffer[position(index)].tenant, principal: buffer[position(index)].principal)
            }
            for index in 0 ..< count {
                if index + Self.tenantPrefetchDistance < count {
                    let ahead = position(index + Self.tenantPrefetchDistance)
                    prefetchIndependentLines(tenant: buffer[ahead].tenant, key: buffer[ahead].key)
                }
                if index + Self.accountPrefetchDistance < count {
                    let ahead = position(index + Self.accountPrefetchDistance)
                    prefetchRecords(tenant: buffer[ahead].tenant, principal: buffer[ahead].principal)
                }
                // Matched here, through the pointer: passing `buffer[i]` as a `Command` makes
                // the compiler copy the whole enum (the buffer is memory it cannot reason about).
                let command = buffer.baseAddress! + position(index)
                let time = times?[index] ?? time
                let (outcome, recorded) = if case .debit(let account, let amount, let scope) = command.pointee.action {
                    recordDebit(key: command.pointee.key, account, amount, scope, by: command.pointee.principal, at: time)
                } else if case .chargeRouted(let account, let routed, let scope) = command.pointee.action {
                    recordRoutedCharge(key: command.pointee.key, account, routed, scope, by: command.pointee.principal, at: time)
                } else {
                    recordPrefetched(command.pointee, at: time)
                }
                outcomes.append(outcome)
                if collectingEntries && recorded, let entry = recentEntries.newest { entries.append(entry) }
                if collectingRecorded && recorded { recordedIndices.append(index) }
            }
        }
        return (outcomes, entries, recordedIndices)
    }

    /// Starts loading the account record and first grant of the command's tenant, from its
    /// tenant entry (which `prefetchIndependentLines` asked for earlier).
    @inline(__always)
    func prefetchRecords(tenant id: TenantID, principal: Principal) {
        guard let tenant = tenants[id] else { return }
        if tenant.organisation == none, tenant.firstAccount != none {
            cache_hints_prefetch(accounts.addressHint(tenant.firstAccount))
            // The account's governance line (spend velocity, rate buckets), which a
            // successful spend updates.
            if Int(tenant.firstAccount) < guards.accounts.count {
                cache_hints_prefetch(guards.accounts.addressHint(tenant.firstAccount))
            }
        }
        if tenant.guardIndex != none {
            // Its limits, buckets, mode and metering memo.
            cache_hints_prefetch(guards.tenants.addressHint(tenant.guardIndex))
        } else if case .client(let client) = principal, !roles.isEmpty {
            // No memo: a client's spend is checked in the role table.
            cache_hints_prefetch(roles.addressHint(client, .meteringService(id)))
        }
        if tenant.grantHint != none { cache_hints_prefetch(grants.addressHint(tenant.grantHint)) }
    }

    /// Starts loading the lines a command needs that do not depend on one another — its
    /// tenant entry and its idempotency index slots — so their misses overlap instead of
    /// following each other. (The batch path has already done this further ahead.)
    @inline(__always)
    func prefetchIndependentLines(tenant: TenantID, key: IdempotencyKey) {
        cache_hints_prefetch(tenants.addressHint(tenant))
        let (current, previous) = idempotency.addressHints(key)
        cache_hints_prefetch(current)
        cache_hints_prefetch(previous)
    }
}
