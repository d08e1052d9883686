/// The scheduler's due times of one shard: a binary min-heap of `DueNote`s, so a shard of a
/// million accounts with different anchors costs nothing between due times (the next one
/// is the root) and catching up after downtime takes every missed note in order.
///
/// Derived, not state: rebuilt from the ledger on start-up (`Ledger.allDueNotes`) and fed
/// the notes each applied command leaves. Notes are never removed early; a popped note
/// that is no longer due (its work was done, or the state moved on) yields no work.
struct DueQueue: ~Copyable {
    /// The heap, in pages of `pageSize` notes allocated as it grows and kept while it
    /// shrinks. One contiguous array doubled as it grew: at 131,072 notes (a shard of 62,500
    /// subscribers half-way through a month-end, each renewal leaving two more notes than
    /// it takes) the doubling copied 2 MB into 4 MB of fresh memory, about 520 page faults,
    /// adding 3 ms to that one turn. Paged, the heap grows a page at a time. (Not copyable:
    /// the pages are owned by this value and freed with it.)
    private var pages: [UnsafeMutablePointer<DueNote>] = []
    private(set) var count = 0

    /// 16 KiB pages.
    static var pageShift: Int { 10 }
    static var pageSize: Int { 1 << pageShift }

    var next: DueNote? { count == 0 ? nil : pages[0][0] }

    /// Builds the heap from `notes` in O(n).
    init(_ notes: [DueNote] = []) {
        for note in notes { append(note) }
        var index = count / 2
        while index > 0 {
            index -= 1
            siftDown(from: index)
        }
    }

    deinit {
        for page in pages { page.deallocate() }
    }

    @inline(__always)
    private subscript(index: Int) -> DueNote {
        get { pages[index >> Self.pageShift][index & (Self.pageSize - 1)] }
        nonmutating set { pages[index >> Self.pageShift][index & (Self.pageSize - 1)] = newValue }
    }

    private mutating func append(_ note: DueNote) {
        if count >> Self.pageShift == pages.count { pages.append(.allocate(capacity: Self.pageSize)) }
        (pages[count >> Self.pageShift] + (count & (Self.pageSize - 1))).initialize(to: note)
        count += 1
    }

    mutating func push(_ note: DueNote) {
        append(note)
        // Moves the hole up to where the note belongs (one write per level, not a swap).
        var child = count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            let above = self[parent]
            guard note < above else { break }
            self[child] = above
            child = parent
        }
        self[child] = note
    }

    /// Removes and returns the earliest note due at or before `time`.
    mutating func pop(dueBy time: Int64) -> DueNote? {
        guard let first = next, first.at <= time else { return nil }
        count -= 1
        if count > 0 {
            self[0] = self[count]
            siftDown(from: 0)
        }
        return first
    }

    /// Moves the note at `start` down to where it belongs (one write per level).
    private mutating func siftDown(from start: Int) {
        let note = self[start]
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < count else { break }
            var smallest = left
            var candidate = self[left]
            if left + 1 < count {
                let right = self[left + 1]
                if right < candidate {
                    smallest = left + 1
                    candidate = right
                }
            }
            guard candidate < note else { break }
            self[parent] = candidate
            parent = smallest
        }
        self[parent] = note
    }
}

/// How the engine's scheduler treats what falls due (`EngineConfiguration.schedule`).
public struct SchedulePolicy: Sendable, Equatable {
    /// How long expired credits stay in grace (reinstatable) before they are forfeited.
    public var graceMillis: Int64
    /// How long before an expiry the host is told (`Notice.expiringSoon`); 0 = never.
    public var expiryWarningMillis: Int64
    /// Most due notes a shard works through in one turn: the scheduler's work is chunked so
    /// it never holds a shard (and the debits waiting for it) for long. 256 renewals take
    /// about 0.5 ms on the 2-core machine, so a turn stays well under 10 ms even through the
    /// stretches of tens of milliseconds in which a shared machine runs everything up to ten
    /// times slower (1,024 took about 2.5 ms, and 15 to 30 ms in such a stretch). The
    /// month-end takes no longer with 256.
    public var notesPerTurn: Int

    public static let graceMillisDefault: Int64 = 30 * CalendarMonths.millisPerDay
    public static let expiryWarningMillisDefault: Int64 = 7 * CalendarMonths.millisPerDay
    public static let notesPerTurnDefault = 256

    public init(graceMillis: Int64 = graceMillisDefault, expiryWarningMillis: Int64 = expiryWarningMillisDefault,
                notesPerTurn: Int = notesPerTurnDefault) {
        precondition((0 ... LedgerLimits.graceMillisMax).contains(graceMillis) && expiryWarningMillis >= 0 && notesPerTurn > 0)
        self.graceMillis = graceMillis
        self.expiryWarningMillis = expiryWarningMillis
        self.notesPerTurn = notesPerTurn
    }
}

/// What one turn of a shard's scheduler did (`CreditEngine.runDue`).
public struct DueTurn: Sendable {
    /// Commands applied (and made durable), with their outcomes, in order.
    public var applied: [(command: Command, outcome: Outcome)] = []
    /// Payments the host side must make (renewals, refills), in due order.
    public var payments: [DueWork] = []
    public var notices: [Notice] = []
    /// Whether notes due by the turn's time were left for the next turn.
    public var more = false
    /// Each shard turn's length (wall and CPU time of the shard's thread, in ns, without
    /// waiting for the log) and the notes it took: what the scheduler held shards for.
    public var turns: [TurnTiming] = []

    public init() {}
}

/// How long one scheduler turn held a shard.
public struct TurnTiming: Sendable, Equatable {
    public var wallNanos: UInt64
    /// CPU time of the shard's thread (without time it was preempted).
    public var cpuNanos: UInt64
    public var notes: Int
}

extension DueQueue {
    /// What is wrong with the heap (empty when nothing is), as swift-collections'
    /// `_checkInvariants`: every note is no earlier than its parent, and the pages hold the
    /// count. O(n); for tests.
    func invariantProblems() -> [String] {
        var problems: [String] = []
        if count > pages.count * Self.pageSize || (count > 0 && pages.isEmpty) {
            problems.append("\(count) notes in \(pages.count) pages of \(Self.pageSize)")
            return problems
        }
        for index in 1 ..< Swift.max(1, count) where self[index] < self[(index - 1) / 2] {
            problems.append("note \(index) (\(self[index])) is due before its parent \(self[(index - 1) / 2])")
        }
        return problems
    }
}
