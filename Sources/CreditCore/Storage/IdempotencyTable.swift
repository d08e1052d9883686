/// The keys of recent commands and their outcomes, so a retry gets the original outcome.
///
/// Two generations, as a generational cache: new keys go to the current generation; when it
/// holds `keysMax / 2` keys, the previous generation is dropped whole and the current one
/// becomes the previous. So the table always remembers at least the last `keysMax / 2` keys
/// and at most `keysMax`, with no per-command eviction work. Keys older than `windowMillis`
/// of command time are forgotten too (a lookup ignores them; a generation whose keys are
/// all that old is dropped). A retry after its key was forgotten is treated as a new request,
/// so hosts must retry within the window (docs/semantics.md).
///
/// Each generation keeps its records densely in arrival order and an open-addressing index
/// of 32-bit slots, at most half full: the low `positionBits` hold the record's position,
/// the high bits a hash tag (so a probe rarely touches a record that is not the key); the
/// probe starts at the hash's low bits. About 80 bytes per key.
struct IdempotencyTable: Sendable {
    struct Record: Sendable, Equatable {
        var key: IdempotencyKey
        var millis: Int64
        var remembered: Remembered
    }

    struct Generation: Sendable {
        // Paged (4 KiB pages): a snapshot shares them, and the next debit copies the one
        // or two pages it writes instead of both whole arrays.
        var records = PagedArray<Record>()
        var index = PagedArray<UInt32>(repeating: emptySlot, count: 16)
        /// The sources of the charges that took from several grants or ran into debt
        /// (`RefundSource.several`), by record position.
        var sourceLists: [UInt32: [RefundSource]] = [:]
        /// Bits of a slot that hold a position: enough for `keysMax / 2` positions with the
        /// all-ones value left over, so an empty slot (all ones) is never a valid entry.
        let positionBits: Int
        /// The bits of a slot above `positionBits` (stored: computing it costs a variable shift on every probe).
        private let tagMask: UInt32

        init(positionsMax: Int) {
            positionBits = UInt32.bitWidth - UInt32(positionsMax).leadingZeroBitCount
            precondition(positionBits < UInt32.bitWidth, "too many idempotency keys for 32-bit slots")
            tagMask = ~UInt32(0) << UInt32(positionBits)
        }

        var mask: Int { index.count - 1 }

        @inline(__always)
        func locate(_ key: IdempotencyKey, hash: UInt32) -> Int? {
            var slot = Int(hash) & mask
            let tag = hash & tagMask
            while true {
                let entry = index[UInt32(slot)]
                if entry == emptySlot { return nil }
                if entry & tagMask == tag {
                    let position = entry & ~tagMask
                    if records[position].key == key { return Int(position) }
                }
                slot = (slot + 1) & mask
            }
        }

        mutating func append(_ record: Record, hash: UInt32) {
            if (records.count + 1) * 2 > index.count { grow() }
            insert(hash, position: records.count)
            records.append(record)
        }

        private mutating func insert(_ hash: UInt32, position: Int) {
            var slot = Int(hash) & mask
            while index[UInt32(slot)] != emptySlot { slot = (slot + 1) & mask }
            index[UInt32(slot)] = hash & tagMask | UInt32(position)
        }

        private mutating func grow() {
            index = PagedArray(repeating: emptySlot, count: index.count * 2)
            for position in 0 ..< records.count {
                insert(IdempotencyTable.hash(records[UInt32(position)].key), position: position)
            }
        }

        /// Empties the generation, keeping its storage for reuse.
        mutating func clear() {
            records.removeAll()
            index.fill(with: emptySlot)
            if !sourceLists.isEmpty { sourceLists.removeAll(keepingCapacity: true) }
        }

        func addressHint(_ hash: UInt32) -> UnsafeRawPointer {
            index.addressHint(UInt32(Int(hash) & mask))
        }
    }

    private var current: Generation
    private var previous: Generation
    let keysMax: Int
    let windowMillis: Int64

    static var emptySlot: UInt32 { .max }

    init(keysMax: Int, windowMillis: Int64) {
        precondition(keysMax >= 2 && keysMax < Int(UInt32.max))
        self.keysMax = keysMax
        self.windowMillis = windowMillis
        current = Generation(positionsMax: keysMax / 2)
        previous = Generation(positionsMax: keysMax / 2)
    }

    /// Keys held, including any older than the window not yet dropped.
    var count: Int { current.records.count + previous.records.count }

    /// A 32-bit hash of the key: its low bits pick the probe start, its high bits the tag.
    @inline(__always)
    static func hash(_ key: IdempotencyKey) -> UInt32 {
        UInt32(truncatingIfNeeded: StableHasher.mix(key.high ^ StableHasher.mix(key.low)) >> 32)
    }

    /// Where the probes for `key` start, for prefetching.
    func addressHints(_ key: IdempotencyKey) -> (UnsafeRawPointer, UnsafeRawPointer) {
        let hash = Self.hash(key)
        return (current.addressHint(hash), previous.addressHint(hash))
    }

    private enum Place { case current(Int), previous(Int) }

    @inline(__always)
    private func place(of key: IdempotencyKey, at millis: Int64) -> Place? {
        let hash = Self.hash(key)
        let oldestKept = millis - windowMillis
        if let position = current.locate(key, hash: hash) {
            return current.records[UInt32(position)].millis >= oldestKept ? .current(position) : nil
        }
        if let position = previous.locate(key, hash: hash) {
            return previous.records[UInt32(position)].millis >= oldestKept ? .previous(position) : nil
        }
        return nil
    }

    /// What is remembered of `key` at command time `millis`.
    @inline(__always)
    func lookup(_ key: IdempotencyKey, at millis: Int64) -> Remembered? {
        switch place(of: key, at: millis) {
        case .current(let position): current.records[UInt32(position)].remembered
        case .previous(let position): previous.records[UInt32(position)].remembered
        case nil: nil
        }
    }

    /// The grants a remembered charge took from, in the order it took them, when it took
    /// from several (`RefundSource.several`); nil otherwise.
    func sourceList(of key: IdempotencyKey, at millis: Int64) -> [RefundSource]? {
        switch place(of: key, at: millis) {
        case .current(let position): current.sourceLists[UInt32(position)]
        case .previous(let position): previous.sourceLists[UInt32(position)]
        case nil: nil
        }
    }

    mutating func updateRefundable(_ key: IdempotencyKey, at millis: Int64, to refundable: Int64) {
        switch place(of: key, at: millis) {
        case .current(let position): current.records[UInt32(position)].remembered.refundable = refundable
        case .previous(let position): previous.records[UInt32(position)].remembered.refundable = refundable
        case nil: preconditionFailure("updating a key that is not remembered")
        }
    }

    /// Remembers a new key (with the charge's sources when it took from several grants).
    /// Precondition: `lookup(key, at: millis)` is nil; `sources` given exactly when
    /// `remembered.source` is `RefundSource.several`.
    mutating func remember(_ key: IdempotencyKey, _ remembered: Remembered, sources: [RefundSource]? = nil, at millis: Int64) {
        assert((sources != nil) == (remembered.source == RefundSource.several), "a source list exactly for several sources")
        let oldestKept = millis - windowMillis
        if let newest = previous.records.last, newest.millis < oldestKept { previous.clear() }
        if current.records.count >= keysMax / 2 || (current.records.first.map { $0.millis < oldestKept } ?? false) {
            swap(&current, &previous)
            current.clear()
        }
        if let sources { current.sourceLists[UInt32(current.records.count)] = sources }
        current.append(Record(key: key, millis: millis, remembered: remembered), hash: Self.hash(key))
    }

    /// Held records, oldest first.
    var records: [Record] { previous.records.elements + current.records.elements }

    /// The records of each generation, oldest first (the state snapshot stores the split).
    var generations: (previous: [Record], current: [Record]) { (previous.records.elements, current.records.elements) }

    /// The source lists of each generation, by position, in position order.
    var sourceLists: (previous: [(UInt32, [RefundSource])], current: [(UInt32, [RefundSource])]) {
        (previous.sourceLists.sorted { $0.key < $1.key }, current.sourceLists.sorted { $0.key < $1.key })
    }

    /// A table holding exactly these generations, their indexes rebuilt (restoring a state
    /// snapshot). Precondition: each has at most `keysMax / 2` records, and each source list
    /// belongs to a record of its generation whose source is `several`.
    init(keysMax: Int, windowMillis: Int64, previous previousRecords: [Record], current currentRecords: [Record],
         previousSourceLists: [UInt32: [RefundSource]] = [:], currentSourceLists: [UInt32: [RefundSource]] = [:]) {
        self.init(keysMax: keysMax, windowMillis: windowMillis)
        precondition(previousRecords.count <= keysMax / 2 && currentRecords.count <= keysMax / 2)
        for record in previousRecords { previous.append(record, hash: Self.hash(record.key)) }
        for record in currentRecords { current.append(record, hash: Self.hash(record.key)) }
        previous.sourceLists = previousSourceLists
        current.sourceLists = currentSourceLists
    }

    /// Checks each index against its records; returns what is wrong.
    func consistencyProblems() -> [String] {
        var problems: [String] = []
        for (name, generation) in [("current", current), ("previous", previous)] {
            var indexed = 0
            generation.index.forEach { _, slot in if slot != Self.emptySlot { indexed += 1 } }
            if indexed != generation.records.count {
                problems.append("idempotency \(name) generation indexes \(indexed) keys, holds \(generation.records.count)")
            }
            if generation.records.count > keysMax / 2 {
                problems.append("idempotency \(name) generation holds \(generation.records.count) keys, max \(keysMax / 2)")
            }
            var several = 0
            generation.records.forEach { position, record in
                if generation.locate(record.key, hash: Self.hash(record.key)) != Int(position) {
                    problems.append("idempotency key \(record.key) is not indexed")
                }
                let source = record.remembered.source
                if source == RefundSource.several { several += 1 }
                // A charge's sources are kept while it is a charge of a principal.
                if source != RefundSource.unknown && record.remembered.principal == none {
                    problems.append("idempotency key \(record.key) has refund sources but is no charge")
                }
                if let list = generation.sourceLists[position] {
                    let sum = list.reduce(Int64(0)) { $0 &+ $1.amount }
                    let charged = Int64(bitPattern: record.remembered.outcome.w1)
                    if source != RefundSource.several || list.count < 1 || list.count > RefundSource.listCountMax
                        || list.contains(where: { $0.amount <= 0 }) || sum > charged {
                        problems.append("idempotency key \(record.key) source list \(list.count) × (sum \(sum)) does not fit its charge")
                    }
                }
            }
            if several != generation.sourceLists.count {
                problems.append("idempotency \(name) generation has \(several) charges from several grants, \(generation.sourceLists.count) source lists")
            }
        }
        let times = records.map(\.millis)
        if times != times.sorted() { problems.append("idempotency records are not in time order") }
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

    /// Remembers `numbers` (oldest first, distinct, at most `rememberedMax`) as if inserted in
    /// that order: the ring starts at the oldest, which behaves the same as any rotation.
    init(rememberedMax: Int, inOrder numbers: [UInt64]) {
        precondition(numbers.count <= rememberedMax)
        self.rememberedMax = rememberedMax
        self.numbers = Set(numbers)
        precondition(self.numbers.count == numbers.count, "closed hold numbers must be distinct")
        order = numbers
    }

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
