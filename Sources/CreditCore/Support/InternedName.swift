import Synchronization

/// A model or provider name as a number: the same text always gets the same number within
/// a process, so a charge's usage is made of plain values (copied as bytes, with nothing to
/// retain or release) and two names compare by their numbers.
///
/// The numbers are this process's alone: the log, snapshots, fingerprints and digests hold
/// the text, never the number. Names are kept for the life of the process; a catalog names
/// a few hundred at most, and `InternedName.capacity` bounds them. Bad input keeps nothing:
/// a text longer than `LedgerLimits.textBytesMax` is `overLong` (which the ledger refuses),
/// and a new text once the table is full is `unavailable` (which the engine refuses).
public struct InternedName: Sendable, Hashable, CustomStringConvertible {
    /// The name's number in this process.
    let number: UInt32

    /// The name for `text` (made on first use; later uses are a dictionary lookup under a
    /// lock, so hot paths keep the names they use, as catalog entries do).
    public init(_ text: String) {
        number = NameTable.shared.intern(text)
    }

    private init(number: UInt32) {
        self.number = number
    }

    /// The empty name (number 0).
    public static let empty = InternedName(number: 0)

    /// Any text longer than `LedgerLimits.textBytesMax` bytes: not kept. Its own text is a
    /// fixed marker one byte over the limit, which interns to it again, so a refused
    /// command that holds it is refused the same way when its log record is replayed.
    public static let overLong = InternedName(number: 1)

    /// A new text once the process holds `capacity` names: not kept. The engine refuses a
    /// command naming it (`limitReached(.namesPerProcess)`) before applying it, so it is
    /// neither logged nor remembered; so does the ledger.
    public static let unavailable = InternedName(number: 2)

    /// Most names a process may hold, the three above included.
    public static let capacity = 262_144

    /// The text (read without a lock).
    public var text: String { NameTable.shared.slot(number).pointee.text }

    /// The text's length in UTF-8 bytes (read without a lock).
    public var utf8Count: Int { NameTable.shared.slot(number).pointee.utf8Count }

    public var isEmpty: Bool { number == 0 }

    public var description: String { text }
}

/// The process's names. Written under a lock; read without one: a slot is written before
/// its number is handed out (under the lock), and whoever reads it got the number through
/// some synchronisation after that, so the read sees the written slot. Slots live in chunks
/// that are never moved or freed.
final class NameTable: @unchecked Sendable {
    static let shared = NameTable(capacity: InternedName.capacity)

    static let chunkBits = 12

    /// `overLong`'s text: a marker one byte longer than the limit.
    static let overLongText: String = {
        let marker = "(a name longer than \(LedgerLimits.textBytesMax) bytes, not kept)"
        return marker + String(repeating: ".", count: LedgerLimits.textBytesMax + 1 - marker.utf8.count)
    }()
    static let unavailableText = "(a name not kept: the process holds the most names it may)"

    struct Slot {
        let text: String
        let utf8Count: Int
    }

    /// `chunkCount` chunk pointers, each nil until its first name.
    private let chunks: UnsafeMutablePointer<UnsafeMutablePointer<Slot>?>
    private let numbers = Mutex<[String: UInt32]>([:])
    let capacity: Int

    /// A table of at most `capacity` names (tests make small ones; the process has one).
    init(capacity: Int) {
        precondition(capacity > 3)
        self.capacity = capacity
        let chunkCount = (capacity + (1 << Self.chunkBits) - 1) >> Self.chunkBits
        chunks = .allocate(capacity: chunkCount)
        chunks.initialize(repeating: nil, count: chunkCount)
        for (number, text) in ["", Self.overLongText, Self.unavailableText].enumerated() {
            numbers.withLock { add(text, as: number, to: &$0) }
        }
    }

    func intern(_ text: String) -> UInt32 {
        if text.utf8.count > LedgerLimits.textBytesMax { return InternedName.overLong.number }
        return numbers.withLock { numbers in
            if let number = numbers[text] { return number }
            guard numbers.count < capacity else { return InternedName.unavailable.number }
            add(text, as: numbers.count, to: &numbers)
            return UInt32(numbers.count - 1)
        }
    }

    /// Writes the slot, then makes the number known (called under the lock).
    private func add(_ text: String, as number: Int, to numbers: inout [String: UInt32]) {
        let chunk = number >> Self.chunkBits
        if chunks[chunk] == nil { chunks[chunk] = .allocate(capacity: 1 << Self.chunkBits) }
        (chunks[chunk]! + (number & (1 << Self.chunkBits - 1))).initialize(to: Slot(text: text, utf8Count: text.utf8.count))
        numbers[text] = UInt32(number)
    }

    /// A table is made once per process and lives as long (tests' small ones leak).
    @inline(__always)
    func slot(_ number: UInt32) -> UnsafePointer<Slot> {
        UnsafePointer(chunks[Int(number >> UInt32(Self.chunkBits))].unsafelyUnwrapped + Int(number & (1 << UInt32(Self.chunkBits) - 1)))
    }
}
