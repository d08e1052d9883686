import Synchronization

/// A model or provider name as a number: the same text always gets the same number within
/// a process, so a charge's usage is made of plain values (copied as bytes, with nothing to
/// retain or release) and two names compare by their numbers.
///
/// The numbers are this process's alone: the log, snapshots, fingerprints and digests hold
/// the text, never the number. Names are kept for the life of the process; a catalog names
/// a few hundred at most, and `InternedName.capacity` bounds them.
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

    /// Most names a process may hold: 4,194,304.
    public static let capacity = NameTable.chunkCount << NameTable.chunkBits

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
    static let shared = NameTable()

    static let chunkBits = 12
    static let chunkCount = 1_024

    struct Slot {
        let text: String
        let utf8Count: Int
    }

    /// `chunkCount` chunk pointers, each nil until its first name.
    private let chunks: UnsafeMutablePointer<UnsafeMutablePointer<Slot>?>
    private let numbers = Mutex<[String: UInt32]>([:])

    private init() {
        chunks = .allocate(capacity: Self.chunkCount)
        chunks.initialize(repeating: nil, count: Self.chunkCount)
        let empty = intern("")
        assert(empty == 0)
    }

    func intern(_ text: String) -> UInt32 {
        numbers.withLock { numbers in
            if let number = numbers[text] { return number }
            let number = numbers.count
            precondition(number < InternedName.capacity,
                         "more than \(InternedName.capacity) distinct model and provider names in one process")
            let chunk = number >> Self.chunkBits
            if chunks[chunk] == nil { chunks[chunk] = .allocate(capacity: 1 << Self.chunkBits) }
            (chunks[chunk]! + (number & (1 << Self.chunkBits - 1))).initialize(to: Slot(text: text, utf8Count: text.utf8.count))
            numbers[text] = UInt32(number)
            return UInt32(number)
        }
    }

    @inline(__always)
    func slot(_ number: UInt32) -> UnsafePointer<Slot> {
        UnsafePointer(chunks[Int(number >> UInt32(Self.chunkBits))].unsafelyUnwrapped + Int(number & (1 << UInt32(Self.chunkBits) - 1)))
    }
}
