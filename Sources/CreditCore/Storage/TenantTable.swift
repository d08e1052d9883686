/// Tenant id → where its accounts are. A `FlatTable` of 16-byte entries.
struct TenantTable: Sendable {
    struct Entry: FlatTableEntry {
        var id: UInt64
        var slot: TenantSlot

        var key: UInt64 { id }
        /// No real organisation index reaches `UInt32.max - 1`.
        var isEmpty: Bool { slot.organisation == UInt32.max - 1 }
        static var empty: Entry { Entry(id: 0, slot: TenantSlot(firstAccount: 0, organisation: UInt32.max - 1)) }
        @inline(__always)
        static func hash(_ key: UInt64) -> UInt64 { StableHasher.mix(key) }
    }

    private var table = FlatTable<Entry>()

    init() {}

    /// An empty table sized for `capacity` tenants (restoring a state snapshot).
    init(capacity: Int) { table = FlatTable<Entry>(capacity: capacity) }

    var count: Int { table.count }

    @inline(__always)
    subscript(id: TenantID) -> TenantSlot? { table[id.rawValue]?.slot }

    func addressHint(_ id: TenantID) -> UnsafeRawPointer { table.addressHint(id.rawValue) }

    mutating func insert(_ id: TenantID, _ slot: TenantSlot) {
        table.insertNew(Entry(id: id.rawValue, slot: slot))
    }

    mutating func setFirstAccount(of id: TenantID, to account: UInt32, grantHint: UInt32) {
        let index = table.find(id.rawValue)!
        table[slot: index].slot.firstAccount = account
        table[slot: index].slot.grantHint = grantHint
    }

    mutating func setGuardIndex(of id: TenantID, to index: UInt32) {
        let found = table.find(id.rawValue)!
        table[slot: found].slot.guardIndex = index
    }

    mutating func setGrantHint(of id: TenantID, to grant: UInt32) {
        let index = table.find(id.rawValue)!
        table[slot: index].slot.grantHint = grant
    }

    /// Every tenant, in no meaningful order (the snapshot sorts them its own way).
    func forEach(_ body: (TenantID, TenantSlot) -> Void) {
        table.forEach { body(TenantID($0.id), $0.slot) }
    }

    /// All tenants in id order.
    func sorted() -> [(id: TenantID, slot: TenantSlot)] {
        var result: [(id: TenantID, slot: TenantSlot)] = []
        result.reserveCapacity(count)
        table.forEach { result.append((TenantID($0.id), $0.slot)) }
        return result.sorted { $0.id < $1.id }
    }
}
