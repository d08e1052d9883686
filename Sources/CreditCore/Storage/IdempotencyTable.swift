/// The keys of recent commands and their outcomes, so a retry gets the original outcome.
///
/// Bounded twice: at most `keysMax` keys, and none older than `windowMillis` of command
/// time. The oldest key is forgotten first; a retry that arrives after its key was forgotten
/// is treated as a new request, so hosts must retry within the window (docs/semantics.md).
///
/// Layout, for memory and speed: records live densely in a ring in arrival order (which is
/// also the eviction order), and an open-addressing index of 64-bit slots — ring position
/// in the low half, a hash tag in the high half — finds them. About 90 bytes per key.
struct IdempotencyTable: Sendable {
    struct Record: Sendable, Equatable {
        var key: IdempotencyKey
        var millis: Int64
        var remembered: Remembered
    }

    private var ring: [Record] = []
    /// Ring index of the oldest record (once the ring is full).
    private var oldest = 0
    private var index: [UInt64]
    private var indexMask: Int
    let keysMax: Int
    let windowMillis: Int64

    private static var emptySlot: UInt64 { .max }

    init(keysMax: Int, windowMillis: Int64) {
        precondition(keysMax > 0 && keysMax < Int(UInt32.max))
        self.keysMax = keysMax
        self.windowMillis = windowMillis
        index = [UInt64](repeating: Self.emptySlot, count: 16)
        indexMask = 15
    }

    var count: Int { ring.count - evictedInRing }
    /// Ring records forgotten by the time window but not yet overwritten: the oldest ones.
    private var evictedInRing = 0

    @inline(__always)
    private static func hash(_ key: IdempotencyKey) -> UInt64 {
        StableHasher.mix(key.high ^ StableHasher.mix(key.low))
    }

    /// Index slot and ring position of `key`, if remembered.
    @inline(__always)
    private func locate(_ key: IdempotencyKey) -> (slot: Int, position: Int)? {
        let hash = Self.hash(key)
        let tag = hash >> 32
        var slot = Int(truncatingIfNeeded: hash) & indexMask
        while true {
            let entry = index[slot]
            if entry == Self.emptySlot { return nil }
            if entry >> 32 == tag {
                let position = Int(entry & 0xFFFF_FFFF)
                if ring[position].key == key { return (slot, position) }
            }
            slot = (slot + 1) & indexMask
        }
    }

    @inline(__always)
    subscript(key: IdempotencyKey) -> Remembered? {
        guard let (_, position) = locate(key) else { return nil }
        return ring[position].remembered
    }

    mutating func updateRefundable(_ key: IdempotencyKey, to refundable: Int64) {
        let (_, position) = locate(key)!
        ring[position].remembered.refundable = refundable
    }

    /// Remembers a new key, forgetting the oldest ones beyond the bounds.
    /// Precondition: the key is not remembered yet.
    mutating func remember(_ key: IdempotencyKey, _ remembered: Remembered, at millis: Int64) {
        precondition(locate(key) == nil, "idempotency key remembered twice")
        forgetExpired(before: millis - windowMillis)
        if (count + 1) * 4 > index.count * 3 { growIndex() }
        let record = Record(key: key, millis: millis, remembered: remembered)
        let position: Int
        if ring.count < keysMax {
            position = ring.count
            ring.append(record)
        } else {
            position = oldest
            if evictedInRing > 0 { evictedInRing -= 1 } else { unindex(ring[position].key, position) }
            ring[position] = record
            oldest = (oldest + 1) % keysMax
        }
        insertIntoIndex(Self.hash(key), position)
    }

    /// Forgets records older than the window. They stay in the ring, unindexed, until
    /// overwritten. (While the ring grows, `oldest` is 0, so the same arithmetic holds.)
    private mutating func forgetExpired(before millis: Int64) {
        while evictedInRing < ring.count {
            let position = (oldest + evictedInRing) % ring.count
            guard ring[position].millis < millis else { return }
            unindex(ring[position].key, position)
            evictedInRing += 1
        }
    }

    private mutating func insertIntoIndex(_ hash: UInt64, _ position: Int) {
        var slot = Int(truncatingIfNeeded: hash) & indexMask
        while index[slot] != Self.emptySlot { slot = (slot + 1) & indexMask }
        index[slot] = (hash >> 32) << 32 | UInt64(position)
    }

    private mutating func unindex(_ key: IdempotencyKey, _ position: Int) {
        let (found, at) = locate(key)!
        precondition(at == position, "idempotency index points elsewhere")
        var hole = found
        var slot = (hole + 1) & indexMask
        while index[slot] != Self.emptySlot {
            let home = Int(truncatingIfNeeded: Self.hash(ring[Int(index[slot] & 0xFFFF_FFFF)].key)) & indexMask
            if (slot - home) & indexMask >= (slot - hole) & indexMask {
                index[hole] = index[slot]
                hole = slot
            }
            slot = (slot + 1) & indexMask
        }
        index[hole] = Self.emptySlot
    }

    private mutating func growIndex() {
        index = [UInt64](repeating: Self.emptySlot, count: index.count * 2)
        indexMask = index.count - 1
        forEachLive { position, record in insertIntoIndex(Self.hash(record.key), position) }
    }

    /// Remembered records, oldest first, with their ring positions.
    private func forEachLive(_ body: (Int, Record) -> Void) {
        guard !ring.isEmpty else { return }
        for offset in evictedInRing ..< ring.count {
            let position = (oldest + offset) % ring.count
            body(position, ring[position])
        }
    }

    /// Remembered records, oldest first.
    var records: [Record] {
        var result: [Record] = []
        result.reserveCapacity(count)
        forEachLive { _, record in result.append(record) }
        return result
    }

    /// Checks the index and the ring agree; returns what is wrong.
    func consistencyProblems() -> [String] {
        var problems: [String] = []
        var indexed = 0
        for entry in index where entry != Self.emptySlot { indexed += 1; _ = entry }
        if indexed != count { problems.append("idempotency index holds \(indexed) keys, ring \(count)") }
        if count > keysMax { problems.append("idempotency table holds \(count) keys, max \(keysMax)") }
        forEachLive { position, record in
            if locate(record.key)?.position != position { problems.append("key \(record.key) is not indexed") }
        }
        return problems
    }
}

/// Hold numbers closed recently, so settling one again says "not open" rather than "unknown".
struct ClosedHolds: Sendable, Equatable {
    private(set) var numbers: Set<UInt64> = []
    private(set) var order: [UInt64] = []
    private var oldest = 0
    let rememberedMax: Int

    init(rememberedMax: Int) { self.rememberedMax = rememberedMax }

    func contains(_ number: UInt64) -> Bool { numbers.contains(number) }

    mutating func insert(_ number: UInt64) {
        guard numbers.insert(number).inserted else { return }
        if order.count < rememberedMax {
            order.append(number)
        } else {
            numbers.remove(order[oldest])
            order[oldest] = number
            oldest = (oldest + 1) % rememberedMax
        }
    }

    /// Remembered numbers, oldest first.
    var inOrder: [UInt64] { Array(order[oldest...] + order[..<oldest]) }
}
