/// An entry of a `FlatTable`: it carries its own key and a way to mark an empty slot, so a
/// slot is one fixed-size struct with no side arrays (one cache miss per lookup).
protocol FlatTableEntry: Sendable, Equatable {
    associatedtype Key: Equatable & Sendable
    var key: Key { get }
    var isEmpty: Bool { get }
    static var empty: Self { get }
    /// A well-mixed hash of the key. Stable across runs (no per-process seed): the table's
    /// layout never affects the ledger's observable state, and keys come from the host.
    static func hash(_ key: Key) -> UInt64
}

/// A hash table with open addressing, linear probing and backward-shift deletion (no
/// tombstones), power-of-two capacity, grown at 3/4 load. Used for the tables on the debit
/// path, where Swift's `Dictionary` spent most of its time seeding SipHash. The slots are
/// paged (`PagedArray`), so a write after a snapshot copies one 4 KiB page, not the table.
struct FlatTable<Entry: FlatTableEntry>: Sendable {
    private var slots: PagedArray<Entry>
    private var mask: Int
    private(set) var count = 0

    static var capacityMin: Int { 16 }

    init(capacity: Int = capacityMin) {
        var size = Self.capacityMin
        while size * 3 < capacity * 4 { size <<= 1 }
        slots = PagedArray(repeating: .empty, count: size)
        mask = size - 1
    }

    var capacity: Int { slots.count }

    @inline(__always)
    private func home(_ key: Entry.Key) -> Int { Int(truncatingIfNeeded: Entry.hash(key)) & mask }

    /// Where the probe for `key` starts, for prefetching.
    func addressHint(_ key: Entry.Key) -> UnsafeRawPointer {
        slots.addressHint(UInt32(home(key)))
    }

    /// The slot holding `key`, or nil.
    @inline(__always)
    func find(_ key: Entry.Key) -> Int? {
        var index = home(key)
        while true {
            let slot = slots[UInt32(index)]
            if slot.isEmpty { return nil }
            if slot.key == key { return index }
            index = (index + 1) & mask
        }
    }

    @inline(__always)
    subscript(key: Entry.Key) -> Entry? {
        guard let index = find(key) else { return nil }
        return slots[UInt32(index)]
    }

    /// Read or change the entry in a slot `find` returned. Its key must not change.
    subscript(slot index: Int) -> Entry {
        get { slots[UInt32(index)] }
        set {
            assert(newValue.key == slots[UInt32(index)].key && !newValue.isEmpty)
            slots[UInt32(index)] = newValue
        }
    }

    /// Inserts an entry whose key is not in the table yet.
    mutating func insertNew(_ entry: Entry) {
        precondition(!entry.isEmpty)
        if (count + 1) * 4 > slots.count * 3 { grow() }
        var index = home(entry.key)
        while !slots[UInt32(index)].isEmpty {
            precondition(slots[UInt32(index)].key != entry.key, "FlatTable.insertNew: key already present")
            index = (index + 1) & mask
        }
        slots[UInt32(index)] = entry
        count += 1
    }

    /// Removes the entry with `key`; returns it, or nil if absent.
    @discardableResult
    mutating func remove(_ key: Entry.Key) -> Entry? {
        guard var hole = find(key) else { return nil }
        let removed = slots[UInt32(hole)]
        // Backward shift: move later entries of the probe run into the hole when their home
        // position allows it, so lookups never need tombstones.
        var index = (hole + 1) & mask
        while !slots[UInt32(index)].isEmpty {
            let wanted = home(slots[UInt32(index)].key)
            let distanceFromWanted = (index - wanted) & mask
            let distanceFromHole = (index - hole) & mask
            if distanceFromWanted >= distanceFromHole {
                slots[UInt32(hole)] = slots[UInt32(index)]
                hole = index
            }
            index = (index + 1) & mask
        }
        slots[UInt32(hole)] = .empty
        count -= 1
        return removed
    }

    private mutating func grow() {
        let old = slots
        slots = PagedArray(repeating: .empty, count: old.count * 2)
        mask = slots.count - 1
        count = 0
        old.forEach { _, entry in if !entry.isEmpty { insertNew(entry) } }
    }

    /// All entries, in slot order (not meaningful; sort if order matters).
    func forEach(_ body: (Entry) throws -> Void) rethrows {
        try slots.forEach { _, entry in if !entry.isEmpty { try body(entry) } }
    }
}
