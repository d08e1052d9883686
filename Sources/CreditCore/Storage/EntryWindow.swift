/// The last `capacity` ledger entries of a shard, oldest overwritten first. Not part of the
/// ledger's state (the log keeps every entry; the window only serves recent statements).
public struct EntryWindow: Sendable {
    private var ring: [LedgerEntry] = []
    private var next = 0
    public let capacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var count: Int { ring.count }

    /// The entry appended last.
    public var newest: LedgerEntry? { ring.isEmpty ? nil : ring[(next + capacity - 1) % capacity] }

    @inline(__always)
    mutating func append(_ entry: consuming LedgerEntry) {
        if ring.count < capacity {
            ring.append(entry)
        } else {
            ring[next] = entry
        }
        next = next + 1 == capacity ? 0 : next + 1
    }

    /// Matching entries, oldest first.
    public func filter(_ isIncluded: (LedgerEntry) -> Bool) -> [LedgerEntry] {
        var result: [LedgerEntry] = []
        let start = ring.count < capacity ? 0 : next
        for offset in 0 ..< ring.count {
            let entry = ring[(start + offset) % ring.count]
            if isIncluded(entry) { result.append(entry) }
        }
        return result
    }
}
