@_spi(Plumbing) import CreditCore
/// The bytes of the write-ahead log (docs/formats.md, "Write-ahead log", versions 1 and 2).
///
/// A shard's log is a sequence of segment files of a fixed, preallocated size. Each starts
/// with a 64-byte header and holds records back to back; the unwritten rest of a segment
/// is zeros (from preallocation), so a zero length field marks the end of its records.
/// Every record carries its log sequence number (LSN, 1, 2, 3, … per shard without gaps)
/// and the checksum of the record before it, so the records form a hash chain across
/// segments: a missing, reordered or replaced record breaks the chain.
///
/// Version 2 adds the audit chain (docs/audit.md): every write batch of command records is
/// followed by a seal record holding the SHA-256 chain head over those records' bytes.
/// Version 1 segments (no seals) are still read; a writer appends only to version 2 ones.
///
/// Version 3 is a sealed segment (docs/encryption.md): its header names the data key and the
/// segment's generation, and each write batch is one sealed frame record (kind 3) holding
/// the batch's command records, compressed then encrypted (AES-256-GCM), followed by the
/// batch's audit seal as in version 2.
@_spi(Plumbing) public enum WALFormat {
    /// "ACWALSEG" — Aideon Credits write-ahead log segment.
    package static let segmentMagic: UInt64 = 0x4745_534C_4157_4341
    /// The version a writer writes.
    package static let version: UInt16 = 2
    /// The version a writer with a data key writes: sealed frames (docs/encryption.md).
    package static let sealedVersion: UInt16 = 3
    /// The versions a reader reads (1: no audit seals; 3: sealed frames).
    package static let versionsRead: ClosedRange<UInt16> = 1 ... 3
    @_spi(Plumbing) public static let segmentHeaderSize = 64
    @_spi(Plumbing) public static let recordHeaderSize = 40
    /// Where a record holds the previous record's checksum (its chain link).
    package static let previousChecksumOffset = 16
    /// The only record kind so far: one command with the timestamp it was applied at.
    package static let commandRecordKind: UInt8 = 1
    /// A seal of the audit chain (version 2): the SHA-256 head over the command records
    /// since the previous seal. It takes no LSN of its own and stays out of the CRC chain.
    package static let sealRecordKind: UInt8 = 2
    /// A seal record's size: the 40-byte header, first covered LSN u64, previous head, head.
    package static let sealRecordSize = 40 + 8 + 2 * AuditChain.headSize
    /// A sealed frame (version 3): one write batch's command records (kind 1, exactly as a
    /// version 2 log holds them) compressed with LZ4 then sealed with AES-256-GCM. Its header
    /// is in clear; its LSN is its first record's; its payload starts with `frameClearBytes`
    /// clear bytes (last LSN u64 | last record's checksum u32 | plain bytes u32), then the
    /// ciphertext and the 16-byte tag. Like a seal it stays out of the CRC chain: its previous
    /// field is the link of its first inner record, the clear last checksum the next link.
    package static let frameRecordKind: UInt8 = 3
    /// The clear fields at the start of a frame's payload (authenticated).
    package static let frameClearBytes = 16
    /// The smallest frame: header, clear fields, at least one compressed byte, tag.
    package static let frameSizeMin = 40 + 16 + 1 + 16
    /// Longest record a reader accepts (a command with a very long text field).
    package static let recordSizeMax = 4 << 20
    /// Longest frame: one record of `recordSizeMax` that LZ4 could not shrink (its bound is
    /// n + n/255 + 16) with the frame's header, clear fields and tag.
    package static let frameSizeMax = recordSizeMax + recordSizeMax / 255 + 16 + 40 + 16 + 16
    /// Plain bytes a frame holds at most: records are added while they fit, a single larger
    /// record gets a frame of its own.
    package static let framePlainBytesTarget = 256 << 10

    /// File name of the segment whose first record has `lsn`: 16 hex digits, so names
    /// sort in log order.
    @_spi(Plumbing) public static func segmentName(firstLSN lsn: UInt64) -> String {
        let hex = String(lsn, radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".wal"
    }

    /// The first LSN encoded in a segment file name, nil if the name is not a segment's.
    package static func firstLSN(ofSegmentNamed name: String) -> UInt64? {
        guard name.hasSuffix(".wal"), name.count == 20 else { return nil }
        return UInt64(name.dropLast(4), radix: 16)
    }
}

/// The 64-byte header at the start of every segment file.
public struct SegmentHeader: Sendable, Equatable {
    package var version: UInt16 = WALFormat.version
    package var commandEncodingVersion: UInt16 = Command.encodingVersion
    package var shardIndex: UInt32
    package var shardCount: UInt32
    /// LSN of the segment's first record.
    package var firstLSN: UInt64
    /// Checksum of the record before the first one (0 before LSN 1): the chain's link
    /// to the previous segment.
    package var previousChecksum: UInt32
    /// Size of the segment file (preallocated).
    package var segmentSize: UInt64
    /// The most bytes the writer ever had written but not yet synced. A crash can tear
    /// only that many bytes at the tail; bytes written beyond that distance from a bad
    /// record prove it is not a torn tail but corruption.
    package var unsyncedBytesMax: UInt64
    /// Version 3 (sealed): the id of the data key its frames are sealed with (0: not sealed).
    package var keyID: UInt64 = 0
    /// Version 3: the segment's generation, above every segment the shard made before it
    /// (the first 4 bytes of each frame's nonce; docs/encryption.md). 0 when not sealed.
    package var generation: UInt32 = 0

    package var isSealed: Bool { version == WALFormat.sealedVersion }

    @_spi(Plumbing) public init(shardIndex: UInt32, shardCount: UInt32, firstLSN: UInt64, previousChecksum: UInt32,
                segmentSize: UInt64, unsyncedBytesMax: UInt64) {
        self.init(shardIndex: shardIndex, shardCount: shardCount, firstLSN: firstLSN, previousChecksum: previousChecksum,
                  segmentSize: segmentSize, unsyncedBytesMax: unsyncedBytesMax, keyID: 0, generation: 0)
    }

    /// A sealed (version 3) segment's header when `keyID` is not 0.
    package init(shardIndex: UInt32, shardCount: UInt32, firstLSN: UInt64, previousChecksum: UInt32,
                 segmentSize: UInt64, unsyncedBytesMax: UInt64, keyID: UInt64, generation: UInt32) {
        precondition((keyID == 0) == (generation == 0), "a sealed segment has a key id and a generation")
        self.version = keyID == 0 ? WALFormat.version : WALFormat.sealedVersion
        self.keyID = keyID
        self.generation = generation
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.firstLSN = firstLSN
        self.previousChecksum = previousChecksum
        self.segmentSize = segmentSize
        self.unsyncedBytesMax = unsyncedBytesMax
    }

    /// Layout: magic u64 | version u16 | command encoding version u16 | shard index u32 |
    /// shard count u32 | previous checksum u32 | first LSN u64 | segment size u64 |
    /// unsynced bytes max u64 | 12 zero bytes (version 3: data key id u64, generation u32) |
    /// CRC32C of bytes 0..<60 u32.
    @_spi(Plumbing) public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: WALFormat.segmentHeaderSize)
        writer.write(WALFormat.segmentMagic)
        writer.write(version)
        writer.write(commandEncodingVersion)
        writer.write(shardIndex)
        writer.write(shardCount)
        writer.write(previousChecksum)
        writer.write(firstLSN)
        writer.write(segmentSize)
        writer.write(unsyncedBytesMax)
        if isSealed {
            writer.write(keyID)
            writer.write(generation)
        } else {
            writer.write(bytes: [UInt8](repeating: 0, count: 12))
        }
        writer.write(CRC32C.checksum(writer.bytes))
        assert(writer.count == WALFormat.segmentHeaderSize)
        return writer.bytes
    }

    /// A header field whose value no writer produces.
    public enum Field: String, Sendable, Equatable {
        case shardCount = "shard count"
        case shardIndex = "shard index"
        case firstLSN = "first LSN"
        case segmentSize = "segment size"
        case unsyncedBytesMax = "unsynced bytes max"
        case keyID = "data key id"
        case generation = "generation"
    }

    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case tooShort
        case allZero
        case badMagic
        case badChecksum
        case unsupportedVersion(UInt16)
        case unsupportedCommandEncoding(UInt16)
        /// The 12 reserved bytes (36..<48) are not zero.
        case reservedBytesSet
        /// A field outside the range `StorageLimits` allows (shard count 0, a shard index
        /// beyond the count, LSN 0, a segment size no writer uses, ...).
        case valueOutOfRange(Field, UInt64)

        /// A stable machine-readable name.
        public var code: String {
            switch self {
            case .tooShort: "segment_header_cut_short"
            case .allZero: "segment_header_unwritten"
            case .badMagic: "segment_magic_mismatch"
            case .badChecksum: "segment_header_checksum_mismatch"
            case .unsupportedVersion: "segment_version_unsupported"
            case .unsupportedCommandEncoding: "command_encoding_unsupported"
            case .reservedBytesSet: "segment_header_reserved_bytes_set"
            case .valueOutOfRange: "segment_header_value_out_of_range"
            }
        }

        public var description: String {
            switch self {
            case .tooShort: "segment header cut short"
            case .allZero: "segment header never written (zeros)"
            case .badMagic: "not a write-ahead log segment (bad magic number)"
            case .badChecksum: "segment header checksum mismatch"
            case .unsupportedVersion(let version): "segment format version \(version) is not supported by this build"
            case .unsupportedCommandEncoding(let version): "command encoding version \(version) is not supported by this build"
            case .reservedBytesSet: "the segment header's reserved bytes are not zero"
            case .valueOutOfRange(let field, let value): "impossible \(field.rawValue) \(value) in the segment header"
            }
        }
    }

    package init(decoding bytes: [UInt8]) throws(Problem) {
        guard bytes.count >= WALFormat.segmentHeaderSize else { throw .tooShort }
        if bytes[..<WALFormat.segmentHeaderSize].allSatisfy({ $0 == 0 }) { throw .allZero }
        var reader = ByteReader(bytes, to: WALFormat.segmentHeaderSize)
        do {
            guard try reader.read(UInt64.self) == WALFormat.segmentMagic else { throw Problem.badMagic }
            let stored = UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 60, as: UInt32.self) })
            guard CRC32C.checksum(bytes[..<60]) == stored else { throw Problem.badChecksum }
            version = try reader.read()
            guard WALFormat.versionsRead.contains(version) else { throw Problem.unsupportedVersion(version) }
            commandEncodingVersion = try reader.read()
            guard Command.encodingVersionsReadable.contains(commandEncodingVersion) else {
                throw Problem.unsupportedCommandEncoding(commandEncodingVersion)
            }
            shardIndex = try reader.read()
            shardCount = try reader.read()
            previousChecksum = try reader.read()
            firstLSN = try reader.read()
            segmentSize = try reader.read()
            unsyncedBytesMax = try reader.read()
            if version == WALFormat.sealedVersion {
                keyID = try reader.read()
                generation = try reader.read()
                guard keyID != 0 else { throw Problem.valueOutOfRange(.keyID, 0) }
                guard generation != 0 else { throw Problem.valueOutOfRange(.generation, 0) }
            } else {
                guard bytes[Self.reservedBytes].allSatisfy({ $0 == 0 }) else { throw Problem.reservedBytesSet }
            }
        } catch let problem as Problem {
            throw problem
        } catch {
            throw .tooShort
        }
        try checkRanges()
    }

    /// Where the 12 reserved bytes lie.
    static let reservedBytes = 48 ..< 60

    /// Every field inside what a writer produces, before any of them is used.
    private func checkRanges() throws(Problem) {
        guard shardCount >= 1, shardCount <= StorageLimits.shardCountMax else {
            throw .valueOutOfRange(.shardCount, UInt64(shardCount))
        }
        guard shardIndex < shardCount else { throw .valueOutOfRange(.shardIndex, UInt64(shardIndex)) }
        guard firstLSN >= 1, firstLSN <= StorageLimits.lsnMax else { throw .valueOutOfRange(.firstLSN, firstLSN) }
        guard segmentSize >= UInt64(StorageLimits.segmentBytesMin), segmentSize <= UInt64(StorageLimits.segmentBytesMax) else {
            throw .valueOutOfRange(.segmentSize, segmentSize)
        }
        guard unsyncedBytesMax >= UInt64(StorageLimits.unsyncedBytesMaxLowest),
              unsyncedBytesMax <= UInt64(StorageLimits.unsyncedBytesMaxHighest) else {
            throw .valueOutOfRange(.unsyncedBytesMax, unsyncedBytesMax)
        }
    }
}

/// One record: a command and the timestamp the shard applied it at.
///
/// Layout (40-byte header, then the payload): total length u32 (header + payload) |
/// CRC32C u32 over the length field and bytes 8..<length | LSN u64 | previous record's
/// CRC32C u32 | kind u8 | 3 zero bytes | timestamp (ms since 1970) i64 | synced LSN u64
/// (every record up to it had been synced when this one was appended) | command encoding.
///
/// The synced LSN is what tells a torn tail from corruption: a damaged record that a
/// later, valid record declares synced was on disk before the crash, so its damage is
/// not a torn write.
public enum WALRecord {
    /// Appends a command record to `writer` and returns its checksum (the next record's
    /// `previous`).
    @discardableResult
    @_spi(Plumbing) public static func append(_ command: Command, at time: Timestamp, lsn: UInt64, previous: UInt32,
                              syncedLSN: UInt64, to writer: inout ByteWriter) -> UInt32 {
        precondition(syncedLSN < lsn, "a record cannot be synced before it is written")
        precondition(time.millisSinceEpoch >= 0 && time.millisSinceEpoch <= StorageLimits.recordTimeMillisMax,
                     "readers refuse a record stamped \(time)")
        let start = writer.count
        writeHeader(length: 0, lsn: lsn, previous: previous, kind: WALFormat.commandRecordKind, time: time,
                    syncedLSN: syncedLSN, to: &writer) // length patched below
        command.encode(into: &writer)
        let length = writer.count - start
        precondition(length <= WALFormat.recordSizeMax, "a command record of \(length) bytes exceeds the log's limit")
        writer.patch(UInt32(length), at: start)
        return patchChecksum(in: &writer, start: start, length: length)
    }

    /// Writes the 40-byte header every record starts with, its checksum zero (the
    /// authenticated data of a frame has it so; `patchChecksum` sets it once the record is whole).
    package static func writeHeader(length: UInt32, lsn: UInt64, previous: UInt32, kind: UInt8, time: Timestamp,
                                    syncedLSN: UInt64, to writer: inout ByteWriter) {
        writer.write(length)
        writer.write(UInt32(0)) // checksum
        writer.write(lsn)
        writer.write(previous)
        writer.write(kind)
        writer.write(UInt8(0)) // three reserved bytes
        writer.write(UInt16(0))
        writer.write(time)
        writer.write(syncedLSN)
    }

    /// A record's checksum: CRC32C over its length field, then over bytes 8..<length (all but
    /// the checksum field itself).
    package static func checksum(_ raw: UnsafeRawBufferPointer, at start: Int, length: Int) -> UInt32 {
        let lengthCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[start ..< start + 4]))
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[start + 8 ..< start + length]), continuing: lengthCRC)
    }

    /// Computes the checksum of the whole record at `start` of `writer` and writes it into its
    /// header; returns it.
    @discardableResult
    package static func patchChecksum(in writer: inout ByteWriter, start: Int, length: Int) -> UInt32 {
        let value = writer.withUnsafeBytes { Self.checksum($0, at: start, length: length) }
        writer.patch(value, at: start + 4)
        return value
    }

    /// Appends the seal of the command records `firstLSN...lastLSN` (the last appended ones,
    /// whose checksum is `previous`): `head` = SHA-256(`previousHead` ‖ their bytes).
    ///
    /// Layout (112 bytes): the record header (its LSN field is `lastLSN`, its previous field
    /// the last covered record's checksum: a seal leaves the LSN sequence and the CRC chain
    /// as they were; kind 2) | first covered LSN u64 | previous head 32 | head 32.
    @_spi(Plumbing) public static func appendSeal(firstLSN: UInt64, lastLSN: UInt64, previous: UInt32, previousHead: [UInt8],
                                                  head: [UInt8], at time: Timestamp, syncedLSN: UInt64, to writer: inout ByteWriter) {
        precondition(previousHead.count == AuditChain.headSize && head.count == AuditChain.headSize && firstLSN <= lastLSN)
        let start = writer.count
        writeHeader(length: UInt32(WALFormat.sealRecordSize), lsn: lastLSN, previous: previous, kind: WALFormat.sealRecordKind,
                    time: time, syncedLSN: min(syncedLSN, lastLSN), to: &writer)
        writer.write(firstLSN)
        writer.write(bytes: previousHead)
        writer.write(bytes: head)
        assert(writer.count - start == WALFormat.sealRecordSize)
        patchChecksum(in: &writer, start: start, length: WALFormat.sealRecordSize)
    }

    /// A seal's fields after its header.
    @_spi(Plumbing) public struct Seal: Sendable, Equatable {
        @_spi(Plumbing) public var firstLSN: UInt64
        @_spi(Plumbing) public var previousHead: [UInt8]
        @_spi(Plumbing) public var head: [UInt8]

        /// The seal record at `offset` of `bytes` (its checksum already verified by `scan`).
        package init(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
            firstLSN = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 40, as: UInt64.self))
            previousHead = Array(bytes[offset + 48 ..< offset + 80])
            head = Array(bytes[offset + 80 ..< offset + 112])
        }
    }

    /// What a reader found at an offset.
    @_spi(Plumbing) public enum Scan: Sendable, Equatable {
        /// A record whose checksum holds.
        case record(Header, length: Int)
        /// Zeros where a length belongs: the end of the segment's records.
        case end
        /// Bytes that are not a valid record.
        case invalid(Damage)
    }

    /// Why bytes at a record's place are not a valid record.
    public enum Damage: Sendable, Equatable, CustomStringConvertible {
        /// Fewer bytes than a record header or than the record's length field says remain.
        case cutShort(length: Int, bytesLeft: Int)
        /// A length field outside the record sizes the format allows.
        case lengthOutOfRange(Int)
        case checksumMismatch
        case unknownKind(UInt8)
        /// The three reserved bytes of a checksummed record are not zero.
        case reservedBytesSet
        /// A zero length field (the end of the records) with written bytes after it.
        case dataAfterEnd
        /// A checksummed record stamped before 1970 or after `StorageLimits.recordTimeMillisMax`.
        case timeOutOfRange(millis: Int64)
        /// A seal record whose length is not `WALFormat.sealRecordSize`.
        case sealMalformed(length: Int)
        /// A seal in a version 1 segment (which has none).
        case sealInVersion1
        /// A record of a kind its segment's version does not hold: a sealed frame outside a
        /// version 3 segment, or a bare command record inside one.
        case kindOutOfPlace(kind: UInt8, version: UInt16)
        /// A frame whose clear fields are impossible (its last LSN before its first, more
        /// records than bytes, plain bytes out of range).
        case frameMalformed
        /// A frame whose checksum holds but whose AES-GCM tag does not verify under its key:
        /// its bytes were changed and the checksum recomputed.
        case authenticationFailed
        /// An authentic frame whose contents do not match its clear fields or do not
        /// decompress to command records (`reason` says which): only a writer bug makes one.
        case frameContents(String)
        /// A valid record out of place (found by the reader, not by `scan`): another LSN
        /// than the next one, or another predecessor than the record before it.
        case unexpectedLSN(found: UInt64, expected: UInt64)
        case chainBroken(found: UInt32, expected: UInt32)

        /// A stable machine-readable name.
        public var code: String {
            switch self {
            case .cutShort: "record_cut_short"
            case .lengthOutOfRange: "record_length_out_of_range"
            case .checksumMismatch: "checksum_mismatch"
            case .unknownKind: "record_kind_unknown"
            case .reservedBytesSet: "record_reserved_bytes_set"
            case .dataAfterEnd: "data_after_end_of_records"
            case .timeOutOfRange: "record_time_out_of_range"
            case .unexpectedLSN: "lsn_out_of_order"
            case .chainBroken: "chain_broken"
            case .sealMalformed: "audit_seal_malformed"
            case .sealInVersion1: "audit_seal_in_version_1"
            case .kindOutOfPlace: "record_kind_out_of_place"
            case .frameMalformed: "frame_malformed"
            case .authenticationFailed: "frame_authentication_failed"
            case .frameContents: "frame_contents_invalid"
            }
        }

        public var description: String {
            switch self {
            case .cutShort(let length, let left): "record of \(length) bytes cut short at \(left)"
            case .lengthOutOfRange(let length): "record length \(length) out of range"
            case .checksumMismatch: "record checksum mismatch"
            case .unknownKind(let kind): "unknown record kind \(kind)"
            case .reservedBytesSet: "the record's reserved bytes are not zero"
            case .dataAfterEnd: "a zero length field with data after it"
            case .timeOutOfRange(let millis): "record stamped \(millis) ms since 1970, outside 0...\(StorageLimits.recordTimeMillisMax)"
            case .unexpectedLSN(let found, let expected): "record has LSN \(found), \(expected) was expected"
            case .chainBroken(let found, let expected):
                "hash chain broken: record names \(WALReader.hex(found)) as the previous record, the log has \(WALReader.hex(expected))"
            case .sealMalformed(let length): "audit seal record of \(length) bytes (\(WALFormat.sealRecordSize) expected)"
            case .sealInVersion1: "audit seal record in a version 1 segment"
            case .kindOutOfPlace(let kind, let version): "record of kind \(kind) in a version \(version) segment"
            case .frameMalformed: "sealed frame with impossible clear fields (last LSN, checksum or plain size)"
            case .authenticationFailed: "sealed frame does not authenticate (AES-GCM tag mismatch): its bytes were changed"
            case .frameContents(let reason): "sealed frame authenticates but its contents are invalid: \(reason)"
            }
        }
    }

    @_spi(Plumbing) public struct Header: Sendable, Equatable {
        package var checksum: UInt32
        @_spi(Plumbing) public var lsn: UInt64
        package var previous: UInt32
        package var kind: UInt8
        package var time: Timestamp
        package var syncedLSN: UInt64
        /// A frame's last LSN and its last record's checksum (its clear fields); a command
        /// record's own LSN and checksum.
        package var lastLSN: UInt64
        package var lastChecksum: UInt32
        /// A frame's plain (decompressed) bytes; 0 for other kinds.
        package var plainBytes: Int = 0

        /// A seal of the audit chain, not a command.
        package var isSeal: Bool { kind == WALFormat.sealRecordKind }
        /// A sealed frame of command records.
        package var isFrame: Bool { kind == WALFormat.frameRecordKind }
        /// The command records it holds (a seal: none).
        package var recordCount: Int { isSeal ? 0 : Int(lastLSN - lsn) + 1 }
    }

    /// Looks at the record starting at `offset` of `bytes` (which ends at `end`).
    @_spi(Plumbing) public static func scan(_ bytes: UnsafeRawBufferPointer, at offset: Int, end: Int) -> Scan {
        if end - offset < 4 {
            return end == offset || bytes[offset ..< end].allSatisfy({ $0 == 0 }) ? .end : .invalid(.cutShort(length: 4, bytesLeft: end - offset))
        }
        let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        if length == 0 {
            // The preallocated zeros. (A record never has length 0, so a zero length
            // followed by anything but zeros is checked by the reader's tail rule.)
            return .end
        }
        guard length >= WALFormat.recordHeaderSize + 17, length <= WALFormat.frameSizeMax else {
            return .invalid(.lengthOutOfRange(length))
        }
        guard length <= end - offset else { return .invalid(.cutShort(length: length, bytesLeft: end - offset)) }
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        guard checksum(bytes, at: offset, length: length) == stored else { return .invalid(.checksumMismatch) }
        let kind = bytes[offset + 20]
        if kind == WALFormat.sealRecordKind {
            guard length == WALFormat.sealRecordSize else { return .invalid(.sealMalformed(length: length)) }
        } else if kind == WALFormat.frameRecordKind {
            guard length >= WALFormat.frameSizeMin else { return .invalid(.frameMalformed) }
        } else if kind != WALFormat.commandRecordKind {
            return .invalid(.unknownKind(kind))
        } else if length > WALFormat.recordSizeMax {
            return .invalid(.lengthOutOfRange(length))
        }
        guard bytes[offset + 21] == 0, bytes[offset + 22] == 0, bytes[offset + 23] == 0 else { return .invalid(.reservedBytesSet) }
        let millis = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 24, as: Int64.self))
        guard millis >= 0, millis <= StorageLimits.recordTimeMillisMax else { return .invalid(.timeOutOfRange(millis: millis)) }
        let lsn = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        var lastLSN = lsn
        var lastChecksum = stored
        var plainBytes = 0
        if kind == WALFormat.frameRecordKind {
            lastLSN = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 40, as: UInt64.self))
            lastChecksum = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 48, as: UInt32.self))
            plainBytes = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 52, as: UInt32.self)))
            // Each record has a 40-byte header and a command of at least 17 bytes.
            guard lastLSN >= lsn, lastLSN <= StorageLimits.lsnMax, plainBytes <= WALFormat.recordSizeMax + WALFormat.framePlainBytesTarget,
                  UInt64(plainBytes) / UInt64(WALFormat.recordHeaderSize + 17) >= lastLSN - lsn + 1 else {
                return .invalid(.frameMalformed)
            }
        }
        return .record(Header(checksum: stored,
                              lsn: lsn,
                              previous: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + WALFormat.previousChecksumOffset, as: UInt32.self)),
                              kind: kind,
                              time: Timestamp(millisSinceEpoch: millis),
                              syncedLSN: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 32, as: UInt64.self)),
                              lastLSN: lastLSN, lastChecksum: lastChecksum, plainBytes: plainBytes),
                       length: length)
    }
}
