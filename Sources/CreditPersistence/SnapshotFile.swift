import Crypto
@_spi(Plumbing) import CreditCore
/// Snapshot files (docs/formats.md, "Snapshot", version 1): a 64-byte header, then the
/// shard's ledger state (`Ledger.encodeState`) as one LZ4 frame with block and content
/// checksums.
///
/// A snapshot is written to a temporary name, synced, renamed into place and the directory
/// synced, so a crash leaves either the old set of snapshots or the new one, never a torn
/// file under a snapshot's name. It is only written once the log is synced up to its LSN,
/// so no snapshot is ever newer than the log on disk.
public struct SnapshotHeader: Sendable, Equatable {
    /// "ACSNAPSH" — Aideon Credits snapshot.
    package static let magic: UInt64 = 0x4853_5041_4E53_4341
    package static let version: UInt16 = 1
    package static let size = 64
    /// Version 2: the frame is sealed (AES-256-GCM, in chunks); the header is 96 bytes and
    /// carries the data key's id, the snapshot's random salt and the chunk size.
    package static let sealedVersion: UInt16 = 2
    package static let sealedSize = 96
    /// Plain bytes per sealed chunk (each chunk has its own nonce and 16-byte tag).
    package static let sealedChunkBytes = 4 << 20

    public var version: UInt16 = Self.version
    public var stateFormatVersion: UInt32 = Ledger.stateFormatVersion
    public var shardIndex: UInt32
    public var shardCount: UInt32
    /// The last log record the state includes, and that record's checksum (the record
    /// after it must name it as its previous).
    public var lsn: UInt64
    public var chain: UInt32
    public var stateBytes: UInt64
    /// The bytes after the header: the LZ4 frame (version 1) or the sealed chunks (version 2).
    public var frameBytes: UInt64
    /// Version 2: the id of the data key the frame is sealed with, the snapshot's salt and
    /// the plain bytes per chunk.
    package var keyID: UInt64 = 0
    package var salt: [UInt8] = []
    package var chunkBytes: UInt32 = 0

    package var isSealed: Bool { version == Self.sealedVersion }
    /// Bytes of the header itself.
    package var headerBytes: Int { isSealed ? Self.sealedSize : Self.size }

    public init(shardIndex: UInt32, shardCount: UInt32, lsn: UInt64, chain: UInt32, stateBytes: UInt64, frameBytes: UInt64) {
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.lsn = lsn
        self.chain = chain
        self.stateBytes = stateBytes
        self.frameBytes = frameBytes
    }

    /// Layout: magic u64 | version u16 | 2 zero bytes | state format version u32 | shard
    /// index u32 | shard count u32 | LSN u64 | chain u32 | 4 zero bytes | state bytes u64 |
    /// frame bytes u64 | CRC32C of bytes 0..<60 u32 at 60 (bytes 56..<60 zero).
    package func encoded() -> [UInt8] {
        if isSealed { return encodedSealed() }
        var writer = ByteWriter(capacity: Self.size)
        writeCommonFields(to: &writer)
        writer.write(UInt32(0))
        writer.write(CRC32C.checksum(writer.bytes))
        assert(writer.count == Self.size)
        return writer.bytes
    }

    /// Bytes 0..<56, the same in both versions.
    private func writeCommonFields(to writer: inout ByteWriter) {
        writer.write(Self.magic)
        writer.write(version)
        writer.write(UInt16(0))
        writer.write(stateFormatVersion)
        writer.write(shardIndex)
        writer.write(shardCount)
        writer.write(lsn)
        writer.write(chain)
        writer.write(UInt32(0))
        writer.write(stateBytes)
        writer.write(frameBytes)
    }

    /// Version 2 (96 bytes): bytes 0..<56 as version 1 | key id u64 | salt 16 bytes | chunk
    /// bytes u32 | 8 zero bytes | CRC32C of bytes 0..<92 u32.
    private func encodedSealed() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.sealedSize)
        writeCommonFields(to: &writer)
        writer.write(keyID)
        writer.write(bytes: salt)
        writer.write(chunkBytes)
        writer.write(UInt64(0))
        writer.write(CRC32C.checksum(writer.bytes))
        assert(writer.count == Self.sealedSize)
        return writer.bytes
    }

    /// A header field whose value no writer produces.
    public enum Field: String, Sendable, Equatable {
        case shardCount = "shard count"
        case shardIndex = "shard index"
        case lsn = "LSN"
        case stateBytes = "state size"
        case frameBytes = "compressed size"
        case chunkBytes = "sealed chunk size"
    }

    /// Where the reserved (zero) bytes lie: after the version, after the chain, and before
    /// the checksum.
    static let reservedRanges = [10 ..< 12, 36 ..< 40, 56 ..< 60]
    static let sealedReservedRanges = [10 ..< 12, 36 ..< 40, 84 ..< 92]

    package init(decoding bytes: [UInt8]) throws(SnapshotProblem) {
        guard bytes.count >= Self.size else { throw .cutShort(bytes: bytes.count) }
        var reader = ByteReader(bytes, to: Self.size)
        do {
            guard try reader.read(UInt64.self) == Self.magic else { throw SnapshotProblem.badMagic }
            let sealed = bytes[8] == UInt8(Self.sealedVersion) && bytes[9] == 0
            if sealed {
                guard bytes.count >= Self.sealedSize else { throw SnapshotProblem.cutShort(bytes: bytes.count) }
                reader = ByteReader(bytes, from: 8, to: Self.sealedSize)
            }
            let crcOffset = sealed ? Self.sealedSize - 4 : 60
            let stored = UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: crcOffset, as: UInt32.self) })
            guard CRC32C.checksum(bytes[..<crcOffset]) == stored else { throw SnapshotProblem.headerChecksumMismatch }
            version = try reader.read()
            guard version == Self.version || version == Self.sealedVersion else { throw SnapshotProblem.unsupportedVersion(version) }
            _ = try reader.read(UInt16.self)
            stateFormatVersion = try reader.read()
            guard Ledger.stateFormatVersionsReadable.contains(stateFormatVersion) else {
                throw SnapshotProblem.unsupportedStateFormat(stateFormatVersion)
            }
            shardIndex = try reader.read()
            shardCount = try reader.read()
            lsn = try reader.read()
            chain = try reader.read()
            _ = try reader.read(UInt32.self)
            stateBytes = try reader.read()
            frameBytes = try reader.read()
            if sealed {
                keyID = try reader.read()
                salt = Array(bytes[64 ..< 80])
                reader = ByteReader(bytes, from: 80, to: Self.sealedSize)
                chunkBytes = try reader.read()
                guard keyID != 0, Self.sealedReservedRanges.allSatisfy({ bytes[$0].allSatisfy { $0 == 0 } }) else {
                    throw SnapshotProblem.reservedBytesSet
                }
            } else {
                guard Self.reservedRanges.allSatisfy({ bytes[$0].allSatisfy { $0 == 0 } }) else { throw SnapshotProblem.reservedBytesSet }
            }
        } catch let problem as SnapshotProblem {
            throw problem
        } catch {
            throw .cutShort(bytes: bytes.count)
        }
        try checkRanges()
    }

    /// Every field inside what a writer produces, before any is used in arithmetic.
    private func checkRanges() throws(SnapshotProblem) {
        guard shardCount >= 1, shardCount <= StorageLimits.shardCountMax else {
            throw .valueOutOfRange(.shardCount, UInt64(shardCount))
        }
        guard shardIndex < shardCount else { throw .valueOutOfRange(.shardIndex, UInt64(shardIndex)) }
        guard lsn <= StorageLimits.lsnMax else { throw .valueOutOfRange(.lsn, lsn) }
        guard stateBytes <= UInt64(StorageLimits.snapshotStateBytesMax) else { throw .valueOutOfRange(.stateBytes, stateBytes) }
        if isSealed {
            guard chunkBytes >= 4_096, chunkBytes <= 64 << 20 else { throw .valueOutOfRange(.chunkBytes, UInt64(chunkBytes)) }
        }
        let sealingBytesMax = isSealed ? (StorageLimits.snapshotFrameBytesMax / 4_096 + 1) * Sealing.tagBytes : 0
        guard frameBytes >= 1, frameBytes <= UInt64(StorageLimits.snapshotFrameBytesMax + sealingBytesMax) else {
            throw .valueOutOfRange(.frameBytes, frameBytes)
        }
    }

    /// The file's size the header promises; the fields are range-checked, so no overflow.
    package var fileBytes: Int { headerBytes + Int(frameBytes) }
}

/// Why a snapshot was not used. Recovery falls back to an older snapshot or the log's
/// start on any of them, and reports it.
public enum SnapshotProblem: Error, Sendable, Equatable, CustomStringConvertible {
    /// Missing, not a regular file, or larger than a snapshot can be.
    case unreadable(FileError)
    case cutShort(bytes: Int)
    case badMagic
    case headerChecksumMismatch
    case unsupportedVersion(UInt16)
    case unsupportedStateFormat(UInt32)
    case reservedBytesSet
    case valueOutOfRange(SnapshotHeader.Field, UInt64)
    /// The file's size is not the header's plus the frame's.
    case sizeMismatch(bytes: Int, expected: Int)
    case frameDamaged(LZ4Error)
    case stateSizeMismatch(bytes: Int, expected: UInt64)
    /// The decompressed state does not decode (`offset` into the uncompressed state).
    case stateDamaged(offset: Int, BinaryDecodingError)
    /// A valid snapshot of another shard, shard count or LSN than its place says.
    case misplaced(shard: UInt32, shardCount: UInt32, lsn: UInt64)
    /// A sealed snapshot whose data key (named by its id) is not among the keys given.
    case keyUnavailable(keyID: String)
    /// A sealed chunk (starting at file byte `offset`) does not authenticate: its bytes were
    /// changed (AES-GCM tag mismatch).
    case authenticationFailed(offset: Int)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .unreadable(let error): error.isNotRegularFile ? "snapshot_not_regular_file"
            : error.isTooLarge ? "snapshot_too_large" : "snapshot_unreadable"
        case .cutShort: "snapshot_cut_short"
        case .badMagic: "snapshot_magic_mismatch"
        case .headerChecksumMismatch: "snapshot_header_checksum_mismatch"
        case .unsupportedVersion: "snapshot_version_unsupported"
        case .unsupportedStateFormat: "state_format_unsupported"
        case .reservedBytesSet: "snapshot_header_reserved_bytes_set"
        case .valueOutOfRange: "snapshot_header_value_out_of_range"
        case .sizeMismatch: "snapshot_size_mismatch"
        case .frameDamaged: "snapshot_frame_damaged"
        case .stateSizeMismatch: "snapshot_state_size_mismatch"
        case .stateDamaged: "snapshot_state_damaged"
        case .misplaced: "snapshot_misplaced"
        case .keyUnavailable: "data_key_missing"
        case .authenticationFailed: "snapshot_authentication_failed"
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let error): "cannot be read: \(error)"
        case .cutShort(let bytes): "file of \(bytes) bytes is shorter than a snapshot header"
        case .badMagic: "not a snapshot (bad magic number)"
        case .headerChecksumMismatch: "header checksum mismatch"
        case .unsupportedVersion(let version): "snapshot format version \(version) is not supported by this build"
        case .unsupportedStateFormat(let version): "ledger state format version \(version) is not supported by this build"
        case .reservedBytesSet: "the header's reserved bytes are not zero"
        case .valueOutOfRange(let field, let value): "impossible \(field.rawValue) \(value) in the header"
        case .sizeMismatch(let bytes, let expected): "file has \(bytes) bytes, the header says \(expected)"
        case .frameDamaged(let error): "compressed state damaged: \(error)"
        case .stateSizeMismatch(let bytes, let expected): "state is \(bytes) bytes, the header says \(expected)"
        case .stateDamaged(let offset, let error): "ledger state damaged (uncompressed byte \(offset)): \(error)"
        case .misplaced(let shard, let count, let lsn): "written for shard \(shard) of \(count) at LSN \(lsn)"
        case .keyUnavailable(let keyID): "sealed with data key \(keyID), which is not among the keys given (--data-key)"
        case .authenticationFailed(let offset): "sealed bytes at \(offset) do not authenticate (AES-GCM tag mismatch): damaged"
        }
    }
}

@_spi(Plumbing) public enum SnapshotFile {
    package static let suffix = ".snap"

    /// File name of the snapshot at `lsn`: 16 hex digits, so names sort by LSN.
    package static func name(lsn: UInt64) -> String {
        let hex = String(lsn, radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex + suffix
    }

    package static func lsn(ofNamed name: String) -> UInt64? {
        guard name.hasSuffix(suffix), name.count == 16 + suffix.count else { return nil }
        return UInt64(name.prefix(16), radix: 16)
    }

    /// Snapshot names in `directory`, newest first.
    package static func list(directory: String, fileSystem: any FileSystem) throws(FileError) -> [String] {
        guard fileSystem.fileExists(directory) else { return [] }
        return try fileSystem.contentsOfDirectory(directory).filter { lsn(ofNamed: $0) != nil }.sorted().reversed()
    }

    /// Writes a snapshot durably: temporary file, sync, rename, directory sync. Returns the
    /// header written (with the sizes).
    @discardableResult
    @_spi(Plumbing) public static func write(_ ledger: Ledger, shard: UInt32, shardCount: UInt32, lsn: UInt64, chain: UInt32,
                             directory: String, fileSystem: any FileSystem, keys: EncryptionKeyRing? = nil) throws -> SnapshotHeader {
        var writer = ByteWriter(capacity: 1 << 20)
        ledger.encodeState(into: &writer)
        // Readers refuse a larger state: never write one they would refuse.
        guard writer.count <= StorageLimits.snapshotStateBytesMax else {
            throw SnapshotProblem.valueOutOfRange(.stateBytes, UInt64(writer.count))
        }
        let frame = try LZ4Frame.compress(writer.bytes)
        let (header, body) = seal(SnapshotHeader(shardIndex: shard, shardCount: shardCount, lsn: lsn, chain: chain,
                                                 stateBytes: UInt64(writer.count), frameBytes: UInt64(frame.count)),
                                  frame: frame, keys: keys)
        try store(header: header, body: body, directory: directory, fileSystem: fileSystem)
        return header
    }

    /// `header` (its frame bytes set) and the frame as they go to disk: unchanged without a
    /// key ring; sealed under the ring's newest key otherwise (compressed first, then sealed).
    package static func seal(_ header: SnapshotHeader, frame: [UInt8], keys: EncryptionKeyRing?) -> (SnapshotHeader, [UInt8]) {
        guard let keys, let key = keys.bytes(of: keys.newestID) else { return (header, frame) }
        var sealed = header
        sealed.version = SnapshotHeader.sealedVersion
        sealed.keyID = keys.newestID
        sealed.salt = Sealing.randomSalt()
        sealed.chunkBytes = UInt32(SnapshotHeader.sealedChunkBytes)
        let chunks = (frame.count + SnapshotHeader.sealedChunkBytes - 1) / SnapshotHeader.sealedChunkBytes
        sealed.frameBytes = UInt64(frame.count + chunks * Sealing.tagBytes)
        let headerBytes = sealed.encoded()
        let subkey = Sealing.snapshotKey(key, shard: header.shardIndex, salt: sealed.salt)
        var body = ByteWriter(capacity: Int(sealed.frameBytes))
        frame.withUnsafeBytes { frame in
            for chunk in 0 ..< chunks {
                let start = chunk * SnapshotHeader.sealedChunkBytes
                let end = min(frame.count, start + SnapshotHeader.sealedChunkBytes)
                let context = chunkContext(headerBytes, chunk: UInt32(chunk))
                context.withUnsafeBytes { context in
                    Sealing.seal(UnsafeRawBufferPointer(rebasing: frame[start ..< end]), key: subkey,
                                 nonce: Sealing.chunkNonce(UInt32(chunk)), authenticating: context, into: &body)
                }
            }
        }
        return (sealed, body.bytes)
    }

    /// A chunk's authenticated data: the whole header, then the chunk number.
    private static func chunkContext(_ header: [UInt8], chunk: UInt32) -> [UInt8] {
        var context = header
        withUnsafeBytes(of: chunk.littleEndian) { context.append(contentsOf: $0) }
        return context
    }

    /// Writes a snapshot file durably: temporary file, sync, rename, directory sync.
    package static func store(header: SnapshotHeader, body: [UInt8], directory: String, fileSystem: any FileSystem) throws {
        let lsn = header.lsn
        let frame = body
        let final = directory + "/" + name(lsn: lsn)
        let temporary = directory + "/.tmp-" + name(lsn: lsn)
        let file = try fileSystem.open(temporary, create: true)
        do {
            try file.truncate(0)
            try file.write(header.encoded(), at: 0)
            try file.write(frame, at: Int64(header.headerBytes))
            try file.sync()
            file.close()
        } catch {
            file.close()
            throw error
        }
        try fileSystem.rename(temporary, to: final)
        try fileSystem.syncDirectory(directory)
        // A shard writes one snapshot at a time: any other temporary file is what a crash
        // left of an earlier write. It was never a snapshot (recovery ignores it); remove it.
        if let names = try? fileSystem.contentsOfDirectory(directory) {
            for name in names where name.hasPrefix(".tmp-") && name != ".tmp-" + Self.name(lsn: lsn) {
                try? fileSystem.remove(directory + "/" + name)
            }
        }
    }

    /// Reads and fully verifies a snapshot: header checksum and fields, LZ4 block and
    /// content checksums, the state's own structure and the ledger invariants. Reads at most
    /// what a snapshot can be (`StorageLimits`), and only a regular file.
    package static func read(path: String, fileSystem: any FileSystem, configuration: LedgerConfiguration,
                            keys: EncryptionKeyRing? = nil) throws(SnapshotProblem) -> (SnapshotHeader, Ledger) {
        try decode(try readBytes(path: path, fileSystem: fileSystem), configuration: configuration, keys: keys)
    }

    /// The bytes of the snapshot file `path`, bounded by the largest snapshot the format allows.
    package static func readBytes(path: String, fileSystem: any FileSystem) throws(SnapshotProblem) -> [UInt8] {
        let sealingBytesMax = (StorageLimits.snapshotFrameBytesMax / 4_096 + 1) * Sealing.tagBytes
        do {
            return try fileSystem.readFile(path, bytesMax: SnapshotHeader.sealedSize + StorageLimits.snapshotFrameBytesMax + sealingBytesMax)
        } catch {
            throw .unreadable(error)
        }
    }

    /// The header and the LZ4 frame of a snapshot file's bytes, opened when sealed.
    package static func frame(of bytes: [UInt8], keys: EncryptionKeyRing?) throws(SnapshotProblem) -> (SnapshotHeader, [UInt8]) {
        let header = try SnapshotHeader(decoding: bytes)
        guard bytes.count == header.fileBytes else { throw .sizeMismatch(bytes: bytes.count, expected: header.fileBytes) }
        guard header.isSealed else { return (header, Array(bytes[SnapshotHeader.size...])) }
        guard let key = keys?.bytes(of: header.keyID) else {
            throw .keyUnavailable(keyID: EncryptionKeyRing.describe(header.keyID))
        }
        let subkey = Sealing.snapshotKey(key, shard: header.shardIndex, salt: header.salt)
        let headerBytes = Array(bytes[..<SnapshotHeader.sealedSize])
        let sealedChunk = Int(header.chunkBytes) + Sealing.tagBytes
        var frame: [UInt8] = []
        frame.reserveCapacity(bytes.count)
        var offset = SnapshotHeader.sealedSize
        var chunk: UInt32 = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + sealedChunk)
            let opened = bytes.withUnsafeBytes { raw in
                chunkContext(headerBytes, chunk: chunk).withUnsafeBytes { context in
                    Sealing.open(UnsafeRawBufferPointer(rebasing: raw[offset ..< end]), key: subkey,
                                 nonce: Sealing.chunkNonce(chunk), authenticating: context)
                }
            }
            guard let opened else { throw .authenticationFailed(offset: offset) }
            frame.append(contentsOf: opened)
            offset = end
            chunk += 1
        }
        return (header, frame)
    }

    /// Verifies and decodes the bytes of a snapshot file (see `read`).
    @_spi(Plumbing) public static func decode(_ bytes: [UInt8], configuration: LedgerConfiguration,
                                              keys: EncryptionKeyRing? = nil) throws(SnapshotProblem) -> (SnapshotHeader, Ledger) {
        let (header, frame) = try frame(of: bytes, keys: keys)
        let state: [UInt8]
        do {
            state = try LZ4Frame.decompress(frame, maxOutputBytes: Int(header.stateBytes))
        } catch {
            throw .frameDamaged(error)
        }
        guard state.count == Int(header.stateBytes) else { throw .stateSizeMismatch(bytes: state.count, expected: header.stateBytes) }
        var reader = ByteReader(state)
        do {
            let ledger = try Ledger(decodingState: &reader, configuration: configuration)
            try reader.expectEnd("the ledger state")
            return (header, ledger)
        } catch {
            throw .stateDamaged(offset: reader.offset, error)
        }
    }
}
