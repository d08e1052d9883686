/// The last `capacity` ledger entries of a shard, oldest overwritten first. Not part of the
/// ledger's state (the log keeps every entry; the window only serves recent statements).
///
/// Entries are stored in a compact form made of plain values only (`StoredEntry`), so
/// writing one is a copy of bytes with nothing to release (a charge's usage too: its names
/// are interned); the rare parts that need references (an adjustment's reason, movements
/// beyond the second) wait in `extras`, at the same position as their entry (a charge per call made a dictionary
/// keyed by sequence cost a hash insert and remove per charge).
/// `LedgerEntry` values are rebuilt when read.
@_spi(Plumbing) public struct EntryWindow: Sendable {
    private var ring: [StoredEntry] = []
    private var next = 0
    /// Reasons and spilled movements of the entry at the same position of `ring`.
    private var extras: [Extras?] = []
    package let capacity: Int

    struct Extras: Sendable {
        var reason: String?
        var spilled: [GrantMovement]
    }

    package init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    package var count: Int { ring.count }

    /// The entry appended last.
    @_spi(Plumbing) public var newest: LedgerEntry? { ring.isEmpty ? nil : entry(at: (next + capacity - 1) % capacity) }

    @inline(__always)
    mutating func append(_ stored: StoredEntry, extras newExtras: Extras?) {
        if ring.count < capacity {
            ring.append(stored)
            extras.append(newExtras)
        } else {
            ring[next] = stored
            if newExtras != nil || extras[next] != nil { extras[next] = newExtras }
        }
        next = next + 1 == capacity ? 0 : next + 1
    }

    /// Matching entries, oldest first.
    package func filter(_ isIncluded: (LedgerEntry) -> Bool) -> [LedgerEntry] {
        var result: [LedgerEntry] = []
        let start = ring.count < capacity ? 0 : next
        for offset in 0 ..< ring.count {
            let entry = entry(at: (start + offset) % ring.count)
            if isIncluded(entry) { result.append(entry) }
        }
        return result
    }

    private func entry(at position: Int) -> LedgerEntry {
        let stored = ring[position]
        let extra = stored.hasExtras ? extras[position] : nil
        var movements = GrantMovements()
        if stored.movementCount > 0 { movements.append(stored.movement0) }
        if stored.movementCount > 1 { movements.append(stored.movement1) }
        for movement in extra?.spilled ?? [] { movements.append(movement) }
        let tenant = TenantID(stored.tenant)
        return LedgerEntry(
            sequence: stored.sequence, time: Timestamp(millisSinceEpoch: stored.timeMillis), key: stored.key,
            kind: stored.kind,
            account: stored.flags.contains(.account) ? AccountID(tenant: tenant, number: stored.accountNumber) : nil,
            member: stored.flags.contains(.member) ? AccountID(tenant: tenant, number: stored.memberNumber) : nil,
            principal: stored.principal,
            amount: Millicredits(stored.amount), availableAfter: Millicredits(stored.availableAfter),
            debtAfter: Millicredits(stored.debtAfter), movements: movements, reason: extra?.reason,
            usage: stored.flags.contains(.usage) ? stored.usage : nil,
            error: stored.flags.contains(.error) ? stored.outcome.outcome(tenant: tenant).failure : nil,
            created: stored.created, tenant: tenant)
    }
}

/// A ledger entry in the window's compact form: plain values only.
struct StoredEntry: Sendable {
    var sequence: UInt64
    var timeMillis: Int64
    var key: IdempotencyKey
    /// The command's tenant; the account and member belong to it too.
    var tenant: UInt64
    var accountNumber: UInt32
    var memberNumber: UInt32
    /// Who asked.
    var principal: Principal
    var amount: Int64
    var availableAfter: Int64
    var debtAfter: Int64
    var movement0: GrantMovement
    var movement1: GrantMovement
    /// A charge's usage (`Flags.usage`), else `UsageCharge.none`.
    var usage: UsageCharge
    /// The command's outcome, as the idempotency table stores it (read only for errors).
    var outcome: StoredOutcome
    var kind: EntryKind
    var created: Receipt.Created
    var flags: Flags
    var movementCount: UInt8

    struct Flags: OptionSet, Sendable {
        let rawValue: UInt8
        static let account = Flags(rawValue: 1)
        static let member = Flags(rawValue: 2)
        static let error = Flags(rawValue: 4)
        static let extras = Flags(rawValue: 8)
        static let usage = Flags(rawValue: 16)
    }

    var hasExtras: Bool { flags.contains(.extras) }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
