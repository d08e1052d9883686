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
    public static let magic: UInt64 = 0x4853_5041_4E53_4341
    public static let version: UInt16 = 1
    public static let size = 64

    public var version: UInt16 = Self.version
    public var stateFormatVersion: UInt32 = Ledger.stateFormatVersion
    public var shardIndex: UInt32
    public var shardCount: UInt32
    /// The last log record the state includes, and that record's checksum (the record
    /// after it must name it as its previous).
    public var lsn: UInt64
    public var chain: UInt32
    public var stateBytes: UInt64
    public var frameBytes: UInt64

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
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.size)
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
        writer.write(UInt32(0))
        writer.write(CRC32C.checksum(writer.bytes))
        assert(writer.count == Self.size)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(SnapshotProblem) {
        guard bytes.count >= Self.size else { throw .damaged(offset: 0, "file of \(bytes.count) bytes is shorter than a snapshot header") }
        var reader = ByteReader(bytes, to: Self.size)
        do {
            guard try reader.read(UInt64.self) == Self.magic else { throw SnapshotProblem.damaged(offset: 0, "not a snapshot (bad magic number)") }
            let stored = UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 60, as: UInt32.self) })
            guard CRC32C.checksum(bytes[..<60]) == stored else { throw SnapshotProblem.damaged(offset: 60, "header checksum mismatch") }
            version = try reader.read()
            guard version == Self.version else { throw SnapshotProblem.unsupported("snapshot format version \(version)") }
            _ = try reader.read(UInt16.self)
            stateFormatVersion = try reader.read()
            guard Ledger.stateFormatVersionsReadable.contains(stateFormatVersion) else {
                throw SnapshotProblem.unsupported("ledger state format version \(stateFormatVersion)")
            }
            shardIndex = try reader.read()
            shardCount = try reader.read()
            lsn = try reader.read()
            chain = try reader.read()
            _ = try reader.read(UInt32.self)
            stateBytes = try reader.read()
            frameBytes = try reader.read()
        } catch let problem as SnapshotProblem {
            throw problem
        } catch {
            throw .damaged(offset: 0, "header cut short")
        }
    }
}

public enum SnapshotProblem: Error, Sendable, Equatable, CustomStringConvertible {
    case damaged(offset: Int, String)
    case unsupported(String)
    case unreadable(String)

    public var description: String {
        switch self {
        case .damaged(let offset, let what): "damaged at byte \(offset): \(what)"
        case .unsupported(let what): "\(what) is not supported by this build"
        case .unreadable(let what): "cannot be read: \(what)"
        }
    }
}

public enum SnapshotFile {
    public static let suffix = ".snap"

    /// File name of the snapshot at `lsn`: 16 hex digits, so names sort by LSN.
    public static func name(lsn: UInt64) -> String {
        let hex = String(lsn, radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex + suffix
    }

    public static func lsn(ofNamed name: String) -> UInt64? {
        guard name.hasSuffix(suffix), name.count == 16 + suffix.count else { return nil }
        return UInt64(name.prefix(16), radix: 16)
    }

    /// Snapshot names in `directory`, newest first.
    public static func list(directory: String, fileSystem: any FileSystem) throws(FileError) -> [String] {
        guard fileSystem.fileExists(directory) else { return [] }
        return try fileSystem.contentsOfDirectory(directory).filter { lsn(ofNamed: $0) != nil }.sorted().reversed()
    }

    /// Writes a snapshot durably: temporary file, sync, rename, directory sync. Returns the
    /// header written (with the sizes).
    @discardableResult
    public static func write(_ ledger: Ledger, shard: UInt32, shardCount: UInt32, lsn: UInt64, chain: UInt32,
                             directory: String, fileSystem: any FileSystem) throws -> SnapshotHeader {
        var writer = ByteWriter(capacity: 1 << 20)
        ledger.encodeState(into: &writer)
        let frame = try LZ4Frame.compress(writer.bytes)
        let header = SnapshotHeader(shardIndex: shard, shardCount: shardCount, lsn: lsn, chain: chain,
                                    stateBytes: UInt64(writer.count), frameBytes: UInt64(frame.count))
        let final = directory + "/" + name(lsn: lsn)
        let temporary = directory + "/.tmp-" + name(lsn: lsn)
        let file = try fileSystem.open(temporary, create: true)
        do {
            try file.truncate(0)
            try file.write(header.encoded(), at: 0)
            try file.write(frame, at: Int64(SnapshotHeader.size))
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
        return header
    }

    /// Reads and fully verifies a snapshot: header checksum, LZ4 block and content
    /// checksums, the state's own structure and the ledger invariants.
    public static func read(path: String, fileSystem: any FileSystem,
                            configuration: LedgerConfiguration) throws(SnapshotProblem) -> (SnapshotHeader, Ledger) {
        let bytes: [UInt8]
        do { bytes = try fileSystem.readFile(path) } catch { throw .unreadable("\(error)") }
        let header = try SnapshotHeader(decoding: bytes)
        guard UInt64(bytes.count) == UInt64(SnapshotHeader.size) + header.frameBytes else {
            throw .damaged(offset: bytes.count, "file has \(bytes.count) bytes, the header says \(UInt64(SnapshotHeader.size) + header.frameBytes)")
        }
        guard header.stateBytes <= UInt64(Int.max / 2) else { throw .damaged(offset: 40, "impossible state size") }
        let state: [UInt8]
        do {
            state = try LZ4Frame.decompress(Array(bytes[SnapshotHeader.size...]), maxOutputBytes: Int(header.stateBytes))
        } catch {
            throw .damaged(offset: SnapshotHeader.size, "compressed state: \(error)")
        }
        guard state.count == Int(header.stateBytes) else {
            throw .damaged(offset: SnapshotHeader.size, "state is \(state.count) bytes, the header says \(header.stateBytes)")
        }
        var reader = ByteReader(state)
        do {
            let ledger = try Ledger(decodingState: &reader, configuration: configuration)
            try reader.expectEnd("the ledger state")
            return (header, ledger)
        } catch {
            throw .damaged(offset: SnapshotHeader.size, "ledger state (uncompressed byte \(reader.offset)): \(error)")
        }
    }
}
