/// The scheduler's due times of one shard: a binary min-heap of `DueNote`s, so a shard of a
/// million accounts with different anchors costs nothing between due times (the next one
/// is the root) and catching up after downtime takes every missed note in order.
///
/// Derived, not state: rebuilt from the ledger on start-up (`Ledger.allDueNotes`) and fed
/// the notes each applied command leaves. Notes are never removed early; a popped note
/// that is no longer due (its work was done, or the state moved on) yields no work.
struct DueQueue: Sendable {
    private var heap: [DueNote] = []

    var count: Int { heap.count }
    var next: DueNote? { heap.first }

    /// Builds the heap from `notes` in O(n).
    init(_ notes: [DueNote] = []) {
        heap = notes
        var index = heap.count / 2
        while index > 0 {
            index -= 1
            siftDown(index)
        }
    }

    mutating func push(_ note: DueNote) {
        heap.append(note)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest note due at or before `time`.
    mutating func pop(dueBy time: Int64) -> DueNote? {
        guard let first = heap.first, first.at <= time else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return first
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let count = heap.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { return }
            var smallest = left
            if left + 1 < count && heap[left + 1] < heap[left] { smallest = left + 1 }
            guard heap[smallest] < heap[parent] else { return }
            heap.swapAt(smallest, parent)
            parent = smallest
        }
    }
}

/// How the engine's scheduler treats what falls due (`EngineConfiguration.schedule`).
public struct SchedulePolicy: Sendable, Equatable {
    /// How long expired credits stay in grace (reinstatable) before they are forfeited.
    public var graceMillis: Int64
    /// How long before an expiry the host is told (`Notice.expiringSoon`); 0 = never.
    public var expiryWarningMillis: Int64
    /// Most due notes a shard works through in one turn: the scheduler's work is chunked so
    /// it never holds a shard (and the debits waiting for it) for long.
    public var notesPerTurn: Int

    public static let graceMillisDefault: Int64 = 30 * CalendarMonths.millisPerDay
    public static let expiryWarningMillisDefault: Int64 = 7 * CalendarMonths.millisPerDay
    public static let notesPerTurnDefault = 1_024

    public init(graceMillis: Int64 = graceMillisDefault, expiryWarningMillis: Int64 = expiryWarningMillisDefault,
                notesPerTurn: Int = notesPerTurnDefault) {
        precondition((0 ... Ledger.graceMillisMax).contains(graceMillis) && expiryWarningMillis >= 0 && notesPerTurn > 0)
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
