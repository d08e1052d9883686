/// Grants unlinked recently (used up, or expired and empty), as they were when they left, so
/// that a refund of a charge that took from one can give its credits back to the same grant
/// — same kind, expiry, cost basis, priority and scope — rather than to a new one
/// (docs/semantics.md, "Refund").
///
/// Bounded like the idempotency table whose charges can name them: a grant is kept for the
/// table's window of command time after it retired, and at most `countMax` are kept (the
/// oldest go first). A refund that finds neither the grant nor its memory gives the credits
/// back as a new refund grant.
struct RetiredGrants: Sendable {
    struct Retired: Sendable, Equatable {
        /// The record as it was when the grant was unlinked (its `next` is meaningless).
        var record: GrantRecord
        /// The grant's scope when `record.isScoped`.
        var scope: ChargeScope?
        var retiredAtMillis: Int64
        /// Which retirement of the grant this is (a grant a refund relinked may retire again).
        var serial: UInt64 = 0
    }

    private(set) var byNumber: [UInt64: Retired] = [:]
    /// Retirements in order; `byNumber` holds those from `oldest` on whose serial it has
    /// (the others were forgotten, taken back by a refund, or retired again since).
    private var order: [(number: UInt64, serial: UInt64)] = []
    private var oldest = 0
    private var serialNext: UInt64 = 0
    let countMax: Int
    let windowMillis: Int64

    init(countMax: Int, windowMillis: Int64) {
        precondition(countMax > 0 && windowMillis > 0)
        self.countMax = countMax
        self.windowMillis = windowMillis
    }

    var count: Int { byNumber.count }

    /// Remembers a grant that retires at `millis`, forgetting what is older than the window
    /// or beyond `countMax`. O(1) amortised.
    mutating func insert(_ record: GrantRecord, scope: ChargeScope?, at millis: Int64) {
        assert(record.remaining == 0 && record.held == 0, "only an empty grant retires")
        serialNext += 1
        byNumber[record.number] = Retired(record: record, scope: scope, retiredAtMillis: millis, serial: serialNext)
        order.append((record.number, serialNext))
        forget(before: millis - windowMillis)
        while byNumber.count > countMax { dropOldest() }
        if oldest > 1_024 && oldest * 2 > order.count {
            order.removeFirst(oldest)
            oldest = 0
        }
    }

    /// The grant's memory, if it is still kept.
    func retired(_ number: UInt64) -> Retired? { byNumber[number] }

    /// Takes a grant's memory back (a refund relinks the grant).
    mutating func remove(_ number: UInt64) { byNumber[number] = nil }

    /// Kept grants, oldest first (the state snapshot stores them in this order).
    var inOrder: [Retired] { order[oldest...].compactMap(current) }

    /// The kept grant a retirement in `order` names, unless it is stale.
    private func current(_ entry: (number: UInt64, serial: UInt64)) -> Retired? {
        guard let retired = byNumber[entry.number], retired.serial == entry.serial else { return nil }
        return retired
    }

    /// Restores kept grants, oldest first (retirement times non-decreasing, numbers distinct).
    init(countMax: Int, windowMillis: Int64, inOrder retired: [Retired]) {
        self.init(countMax: countMax, windowMillis: windowMillis)
        for var entry in retired {
            serialNext += 1
            entry.serial = serialNext
            byNumber[entry.record.number] = entry
            order.append((entry.record.number, serialNext))
        }
        precondition(byNumber.count == retired.count && retired.count <= countMax, "restored retired grants must be distinct and few enough")
    }

    private mutating func forget(before millis: Int64) {
        while oldest < order.count {
            guard let entry = current(order[oldest]) else { oldest += 1; continue }
            guard entry.retiredAtMillis < millis else { return }
            dropOldest()
        }
    }

    private mutating func dropOldest() {
        while oldest < order.count {
            let entry = order[oldest]
            oldest += 1
            if current(entry) != nil {
                byNumber[entry.number] = nil
                return
            }
        }
    }

    /// What is wrong with the structure (the invariant checker reports it).
    func consistencyProblems() -> [String] {
        var problems: [String] = []
        let kept = inOrder
        if kept.count != byNumber.count { problems.append("retired grants: \(byNumber.count) kept, \(kept.count) in order") }
        if byNumber.count > countMax { problems.append("retired grants: \(byNumber.count) kept, at most \(countMax)") }
        let times = kept.map(\.retiredAtMillis)
        if times != times.sorted() { problems.append("retired grants are not in retirement order") }
        for entry in kept where entry.record.remaining != 0 || entry.record.held != 0 || entry.record.isScoped != (entry.scope != nil) {
            problems.append("retired grant \(entry.record.number) is not empty or its scope does not match")
        }
        return problems
    }
}
