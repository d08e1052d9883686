import DequeModule

/// The keys of recent commands and their outcomes, so a retry gets the original outcome.
///
/// Bounded twice: at most `keysMax` keys, and none older than `windowMillis` of command
/// time. The oldest key is forgotten first; a retry that arrives after its key was forgotten
/// is treated as a new request, so hosts must retry within the window (docs/semantics.md).
struct IdempotencyTable: Sendable, Equatable {
    private(set) var records: [IdempotencyKey: Remembered] = [:]
    /// Keys in the order they were first seen, with their command time.
    private(set) var order: Deque<(key: IdempotencyKey, millis: Int64)> = []
    let keysMax: Int
    let windowMillis: Int64

    init(keysMax: Int, windowMillis: Int64) {
        self.keysMax = keysMax
        self.windowMillis = windowMillis
    }

    var count: Int { records.count }

    @inline(__always)
    subscript(key: IdempotencyKey) -> Remembered? {
        get { records[key] }
    }

    mutating func updateRefundable(_ key: IdempotencyKey, to refundable: Int64) {
        records[key]!.refundable = refundable
    }

    /// Remembers a new key. Precondition: the key is not remembered yet.
    mutating func remember(_ key: IdempotencyKey, _ remembered: Remembered, at millis: Int64) {
        let previous = records.updateValue(remembered, forKey: key)
        precondition(previous == nil, "idempotency key remembered twice")
        order.append((key, millis))
        forget(before: millis)
    }

    private mutating func forget(before millis: Int64) {
        let oldestKept = millis - windowMillis
        while let oldest = order.first, order.count > keysMax || oldest.millis < oldestKept {
            order.removeFirst()
            records.removeValue(forKey: oldest.key)
        }
    }

    static func == (lhs: IdempotencyTable, rhs: IdempotencyTable) -> Bool {
        lhs.records == rhs.records && lhs.keysMax == rhs.keysMax && lhs.windowMillis == rhs.windowMillis
            && lhs.order.elementsEqual(rhs.order) { $0.key == $1.key && $0.millis == $1.millis }
    }
}

/// Hold numbers closed recently, so settling one again says "not open" rather than "unknown".
struct ClosedHolds: Sendable, Equatable {
    private(set) var numbers: Set<UInt64> = []
    private(set) var order: Deque<UInt64> = []
    let rememberedMax: Int

    init(rememberedMax: Int) { self.rememberedMax = rememberedMax }

    func contains(_ number: UInt64) -> Bool { numbers.contains(number) }

    mutating func insert(_ number: UInt64) {
        guard numbers.insert(number).inserted else { return }
        order.append(number)
        while order.count > rememberedMax { numbers.remove(order.removeFirst()) }
    }
}
