/// A key of a `FlatMap`: a plain value with a stable, well-mixed hash.
protocol FlatMapKey: Sendable, Equatable {
    var stableHash: UInt64 { get }
    /// A key no entry uses (marks an empty slot together with `occupied`).
    static var placeholder: Self { get }
}

/// A value of a `FlatMap`, with a placeholder for empty slots.
protocol FlatMapValue: Sendable, Equatable {
    static var placeholder: Self { get }
}

extension UInt32: FlatMapKey {
    var stableHash: UInt64 { StableHasher.mix(UInt64(self)) }
    static var placeholder: UInt32 { 0 }
}

extension TenantID: FlatMapKey {
    var stableHash: UInt64 { StableHasher.mix(rawValue) }
    static var placeholder: TenantID { TenantID(0) }
}

/// A dictionary over a `FlatTable`: open addressing with the core's stable hash, one probe
/// and one cache miss per lookup, for the governance tables on the debit path (roles, rate
/// limits and buckets), where Swift's `Dictionary` spent its time seeding SipHash. Order is
/// not meaningful: `sorted` gives the canonical one for snapshots and the digest.
struct FlatMap<Key: FlatMapKey, Value: FlatMapValue>: Sendable {
    struct Entry: FlatTableEntry {
        var key: Key
        var occupied: Bool
        var value: Value

        var isEmpty: Bool { !occupied }
        static var empty: Entry { Entry(key: .placeholder, occupied: false, value: .placeholder) }
        @inline(__always)
        static func hash(_ key: Key) -> UInt64 { key.stableHash }
    }

    private var table = FlatTable<Entry>()

    init() {}

    var count: Int { table.count }
    var isEmpty: Bool { table.count == 0 }

    @inline(__always)
    subscript(key: Key) -> Value? {
        get { table.count == 0 ? nil : table[key]?.value }
        set {
            if let index = table.count == 0 ? nil : table.find(key) {
                if let newValue {
                    table[slot: index] = Entry(key: key, occupied: true, value: newValue)
                } else {
                    table.remove(key)
                }
            } else if let newValue {
                table.insertNew(Entry(key: key, occupied: true, value: newValue))
            }
        }
    }

    /// Where the probe for `key` starts, for prefetching.
    func addressHint(_ key: Key) -> UnsafeRawPointer { table.addressHint(key) }

    /// Every key and value, in no meaningful order.
    func forEach(_ body: (Key, Value) throws -> Void) rethrows {
        try table.forEach { try body($0.key, $0.value) }
    }

    /// Every key and value, ordered by `areInIncreasingOrder` (as `Dictionary.sorted(by:)`).
    func sorted(by areInIncreasingOrder: ((key: Key, value: Value), (key: Key, value: Value)) -> Bool)
        -> [(key: Key, value: Value)] {
        var pairs: [(key: Key, value: Value)] = []
        pairs.reserveCapacity(count)
        forEach { pairs.append(($0, $1)) }
        return pairs.sorted(by: areInIncreasingOrder)
    }
}
