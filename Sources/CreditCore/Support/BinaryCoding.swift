/// Little-endian binary encoding for the durable formats (log records, snapshots).
///
/// Pure byte manipulation, no I/O: the core defines how its commands and state are written
/// down, the persistence layer decides where the bytes go. Every multi-byte integer is
/// little-endian; strings are a 32-bit byte count followed by UTF-8; optionals are a 0/1
/// byte followed by the value when 1. docs/formats.md lists every field.
@_spi(Plumbing) public struct ByteWriter: Sendable {
    // Inlinable (with its storage usable from inlined code): the log's record encoder in
    // another module calls these per field, and an unspecialised generic call per field
    // costs more than the encoding.
    @usableFromInline var storage: [UInt8]

    /// The bytes written so far.
    @_spi(Plumbing) @inlinable public var bytes: [UInt8] { storage }

    @inlinable
    @_spi(Plumbing) public init(capacity: Int = 64) {
        storage = []
        storage.reserveCapacity(capacity)
    }

    @_spi(Plumbing) @inlinable public var count: Int { storage.count }

    @inlinable @inline(__always)
    package mutating func write<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { storage.append(contentsOf: $0) }
    }

    @inlinable @inline(__always)
    package mutating func write(_ value: Bool) { storage.append(value ? 1 : 0) }

    @inlinable
    package mutating func write(bytes other: some Collection<UInt8>) { storage.append(contentsOf: other) }

    package mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            write(UInt32(utf8.count))
            storage.append(contentsOf: utf8)
        }
    }

    /// Overwrites 4 bytes at `offset` (for lengths and checksums known only afterwards).
    @inlinable
    package mutating func patch(_ value: UInt32, at offset: Int) {
        precondition(offset >= 0 && offset + 4 <= storage.count, "patch outside the written bytes")
        Swift.withUnsafeBytes(of: value.littleEndian) { raw in
            for index in 0 ..< 4 { storage[offset + index] = raw[index] }
        }
    }

    @inlinable
    @_spi(Plumbing) public mutating func removeAll(keepingCapacity: Bool = true) { storage.removeAll(keepingCapacity: keepingCapacity) }

    /// Calls `body` with the bytes written so far, without copying them.
    @inlinable
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes(body)
    }
}

public enum BinaryDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes end before the value does.
    case truncated(offset: Int, needed: Int)
    /// A field holds a value no writer produces (an unknown tag, an impossible amount).
    case invalid(offset: Int, field: String)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .truncated: "truncated"
        case .invalid: "invalid_field"
        }
    }

    public var description: String {
        switch self {
        case .truncated(let offset, let needed): "truncated at byte \(offset): \(needed) more bytes expected"
        case .invalid(let offset, let field): "invalid \(field) at byte \(offset)"
        }
    }
}

/// Reads what `ByteWriter` wrote. Every read checks the remaining length and throws
/// `BinaryDecodingError` instead of trapping, because the bytes come from disk.
@_spi(Plumbing) public struct ByteReader: Sendable {
    package let bytes: [UInt8]
    package private(set) var offset: Int
    package let end: Int

    @_spi(Plumbing) public init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        offset = start
        self.end = end ?? bytes.count
        precondition(start >= 0 && start <= self.end && self.end <= bytes.count, "reader range outside the bytes")
    }

    package var remaining: Int { end - offset }
    package var isAtEnd: Bool { offset == end }

    @inline(__always)
    package mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(BinaryDecodingError) -> T {
        let size = MemoryLayout<T>.size
        guard end - offset >= size else { throw .truncated(offset: offset, needed: size - (end - offset)) }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { target in
            bytes.withUnsafeBytes { source in
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset ..< offset + size]))
            }
        }
        offset += size
        return T(littleEndian: value)
    }

    package mutating func readBool(_ field: String) throws(BinaryDecodingError) -> Bool {
        let at = offset
        switch try read(UInt8.self) {
        case 0: return false
        case 1: return true
        default: throw .invalid(offset: at, field: field)
        }
    }

    package mutating func readBytes(_ count: Int) throws(BinaryDecodingError) -> ArraySlice<UInt8> {
        guard count >= 0 else { throw .invalid(offset: offset, field: "byte count") }
        guard end - offset >= count else { throw .truncated(offset: offset, needed: count - (end - offset)) }
        defer { offset += count }
        return bytes[offset ..< offset + count]
    }

    /// A string of at most `maxBytes` UTF-8 bytes.
    package mutating func readString(maxBytes: Int, _ field: String) throws(BinaryDecodingError) -> String {
        let at = offset
        let count = Int(try read(UInt32.self))
        guard count <= maxBytes else { throw .invalid(offset: at, field: field) }
        let utf8 = try readBytes(count)
        guard let string = String(validating: utf8, as: UTF8.self) else { throw .invalid(offset: at, field: field) }
        return string
    }

    /// Fails unless every byte was consumed (a record with trailing bytes is not one a
    /// writer produced).
    @_spi(Plumbing) public func expectEnd(_ what: String) throws(BinaryDecodingError) {
        guard isAtEnd else { throw .invalid(offset: offset, field: "\(remaining) trailing bytes after \(what)") }
    }
}
