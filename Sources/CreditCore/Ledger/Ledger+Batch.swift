import CCacheHints

/// Applying a batch with the memory latency of later commands overlapped.
///
/// A debit on a large ledger waits on three dependent cache misses — tenant table, account
/// record, first grant — plus the idempotency index. While command i is applied, the batch
/// path prefetches the index slots and tenant entry of command i+8, and the account record
/// and first grant (from the tenant entry's hint) of i+4 and i+2. Prefetching is a hint:
/// results are exactly those of applying the commands one by one.
extension Ledger {
    static var tenantPrefetchDistance: Int { 12 }
    static var accountPrefetchDistance: Int { 6 }
    static var grantPrefetchDistance: Int { 6 }

    /// Applies `commands` in order at one timestamp, handing each outcome to `body` with its
    /// new entry if it made one and `passingEntries` is set (copying entries costs time).
    public mutating func record(batch commands: [Command], at time: Timestamp, passingEntries: Bool,
                                _ body: (_ outcome: Outcome, _ recorded: Bool, _ entry: LedgerEntry?) -> Void) {
        let count = commands.count
        for index in 0 ..< count {
            if index + Self.tenantPrefetchDistance < count {
                let ahead = commands[index + Self.tenantPrefetchDistance]
                cache_hints_prefetch(tenants.addressHint(ahead.tenant))
                let (current, previous) = idempotency.addressHints(ahead.key)
                cache_hints_prefetch(current)
                cache_hints_prefetch(previous)
            }
            if index + Self.accountPrefetchDistance < count {
                if let slot = firstAccountHint(commands[index + Self.accountPrefetchDistance]) {
                    cache_hints_prefetch(accounts.addressHint(slot))
                }
            }
            if index + Self.grantPrefetchDistance < count,
               let tenant = tenants[commands[index + Self.grantPrefetchDistance].tenant], tenant.grantHint != none {
                cache_hints_prefetch(grants.addressHint(tenant.grantHint))
            }
            let (outcome, recorded) = record(commands[index], at: time)
            body(outcome, recorded, passingEntries && recorded ? recentEntries.newest : nil)
        }
    }

    /// Starts loading the lines a command needs that do not depend on one another — its
    /// tenant entry and its idempotency index slots — so their misses overlap instead of
    /// following each other. (The batch path has already done this further ahead.)
    @inline(__always)
    func prefetchIndependentLines(of command: Command) {
        cache_hints_prefetch(tenants.addressHint(command.tenant))
        let (current, previous) = idempotency.addressHints(command.key)
        cache_hints_prefetch(current)
        cache_hints_prefetch(previous)
    }

    /// The first account slot of the command's tenant if it is an individual (the usual
    /// case); nil for organisations and unknown tenants.
    @inline(__always)
    private func firstAccountHint(_ command: Command) -> UInt32? {
        guard let tenant = tenants[command.tenant], tenant.organisation == none, tenant.firstAccount != none else {
            return nil
        }
        return tenant.firstAccount
    }
}
