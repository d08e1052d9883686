@_spi(Plumbing) import CreditCore
import Crypto

/// The audit chain (docs/audit.md): a SHA-256 hash chain over the exact bytes of a shard's
/// command records, sealed once per write batch by a seal record in the log, and Ed25519
/// signed checkpoints of it in `shard-NN/audit.checkpoints`.
///
/// `head₀ = SHA-256("ACAUDIT" ‖ shard u32 ‖ shard count u32)`; a seal covering the records
/// `first…last` holds `head = SHA-256(previous head ‖ the bytes of those records as written)`.
/// The seed binds the chain to its shard and layout, so a record moved to another shard's
/// log breaks that shard's chain even with every CRC and seal recomputed, at its next signed
/// checkpoint.
@_spi(Plumbing) public enum AuditChain {
    @_spi(Plumbing) public static let headSize = 32

    /// The head before the first sealed record of `shard` of `shardCount`.
    @_spi(Plumbing) public static func seed(shard: UInt32, shardCount: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: 15)
        writer.write(bytes: Array("ACAUDIT".utf8))
        writer.write(shard)
        writer.write(shardCount)
        return Array(SHA256.hash(data: writer.bytes))
    }

    /// `SHA-256(previous ‖ carry ‖ records)`: the head of a seal.
    static func head(previous: [UInt8], carry: [UInt8], records: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: previous)
        if !carry.isEmpty { hasher.update(data: carry) }
        hasher.update(bufferPointer: records)
        return Array(hasher.finalize())
    }
}

/// A running SHA-256 over the records since the last seal (the audit verifier's).
struct AuditHasher {
    var hasher = SHA256()

    init(previous: [UInt8]) { hasher.update(data: previous) }

    mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

    func finalize() -> [UInt8] { Array(hasher.finalize()) }
}

/// Why a checkpoint was written.
@_spi(Plumbing) public enum CheckpointReason: UInt8, Sendable, CustomStringConvertible {
    /// `LogConfiguration.auditCheckpointEveryRecords` records since the last one.
    case interval = 1
    /// A snapshot was taken (the log was synced up to it).
    case snapshot = 2
    /// The log was closed: the head of everything it holds.
    case close = 3

    @_spi(Plumbing) public var description: String {
        switch self {
        case .interval: "interval"
        case .snapshot: "snapshot"
        case .close: "close"
        }
    }
}

/// One signed checkpoint: the chain head at a sealed LSN of a shard (docs/audit.md).
///
/// Layout (184 bytes): magic "ACAUDCKP" u64 | version u16 (1) | reason u8 | zero u8 |
/// shard u32 | shard count u32 | zero u32 | sequence u64 (1, 2, … in the file) | LSN u64 |
/// time i64 (the sealed batch's command time, ms) | head 32 | signer's key fingerprint 32
/// (SHA-256 of the raw public key) | Ed25519 signature 64 over bytes 0..<112 |
/// CRC32C of bytes 0..<176 u32 | zero u32.
@_spi(Plumbing) public struct AuditCheckpoint: Sendable, Equatable {
    @_spi(Plumbing) public var reason: CheckpointReason
    @_spi(Plumbing) public var shard: UInt32
    @_spi(Plumbing) public var shardCount: UInt32
    @_spi(Plumbing) public var sequence: UInt64
    @_spi(Plumbing) public var lsn: UInt64
    @_spi(Plumbing) public var time: Timestamp
    @_spi(Plumbing) public var head: [UInt8]
    @_spi(Plumbing) public var fingerprint: [UInt8]
    @_spi(Plumbing) public var signature: [UInt8]

    /// "ACAUDCKP"
    static let magic: UInt64 = 0x504B_4344_5541_4341
    static let version: UInt16 = 1
    @_spi(Plumbing) public static let size = 184
    static let signedBytes = 112

    /// The bytes the signature covers.
    func signedPart() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.signedBytes)
        writer.write(Self.magic)
        writer.write(Self.version)
        writer.write(reason.rawValue)
        writer.write(UInt8(0))
        writer.write(shard)
        writer.write(shardCount)
        writer.write(UInt32(0))
        writer.write(sequence)
        writer.write(lsn)
        writer.write(time)
        writer.write(bytes: head)
        writer.write(bytes: fingerprint)
        assert(writer.count == Self.signedBytes)
        return writer.bytes
    }

    /// A checkpoint signed with `key`.
    static func signed(reason: CheckpointReason, shard: UInt32, shardCount: UInt32, sequence: UInt64, lsn: UInt64,
                       time: Timestamp, head: [UInt8], key: AuditSigningKey) -> AuditCheckpoint {
        var checkpoint = AuditCheckpoint(reason: reason, shard: shard, shardCount: shardCount, sequence: sequence, lsn: lsn,
                                         time: time, head: head, fingerprint: key.publicKey.fingerprint, signature: [])
        checkpoint.signature = key.sign(checkpoint.signedPart())
        return checkpoint
    }

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.size)
        writer.write(bytes: signedPart())
        writer.write(bytes: signature)
        writer.write(CRC32C.checksum(writer.bytes))
        writer.write(UInt32(0))
        assert(writer.count == Self.size)
        return writer.bytes
    }

    /// Why an entry of a checkpoints file is not a checkpoint.
    @_spi(Plumbing) public enum Defect: Error, Sendable, Equatable {
        case badMagic, badChecksum, unsupportedVersion, badReason, reservedBytesSet
    }

    /// Decodes the entry at `offset` (the structure and CRC only; the signature is the verifier's).
    init(decoding bytes: [UInt8], at offset: Int) throws(Defect) {
        let end = offset + Self.size
        precondition(end <= bytes.count)
        var reader = ByteReader(bytes, from: offset, to: end)
        do {
            guard try reader.read(UInt64.self) == Self.magic else { throw Defect.badMagic }
            let stored = UInt32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 176, as: UInt32.self) })
            guard CRC32C.checksum(bytes[offset ..< offset + 176]) == stored else { throw Defect.badChecksum }
            guard try reader.read(UInt16.self) == Self.version else { throw Defect.unsupportedVersion }
            guard let reason = CheckpointReason(rawValue: try reader.read(UInt8.self)) else { throw Defect.badReason }
            self.reason = reason
            guard try reader.read(UInt8.self) == 0 else { throw Defect.reservedBytesSet }
            shard = try reader.read()
            shardCount = try reader.read()
            guard try reader.read(UInt32.self) == 0 else { throw Defect.reservedBytesSet }
            sequence = try reader.read()
            lsn = try reader.read()
            time = Timestamp(millisSinceEpoch: try reader.read(Int64.self))
            head = Array(bytes[offset + 48 ..< offset + 80])
            fingerprint = Array(bytes[offset + 80 ..< offset + 112])
            signature = Array(bytes[offset + 112 ..< offset + 176])
            guard bytes[offset + 180 ..< end].allSatisfy({ $0 == 0 }) else { throw Defect.reservedBytesSet }
        } catch let defect as Defect {
            throw defect
        } catch {
            throw .badMagic
        }
    }

    init(reason: CheckpointReason, shard: UInt32, shardCount: UInt32, sequence: UInt64, lsn: UInt64, time: Timestamp,
         head: [UInt8], fingerprint: [UInt8], signature: [UInt8]) {
        self.reason = reason
        self.shard = shard
        self.shardCount = shardCount
        self.sequence = sequence
        self.lsn = lsn
        self.time = time
        self.head = head
        self.fingerprint = fingerprint
        self.signature = signature
    }

    /// Whether `key` made the signature.
    @_spi(Plumbing) public func isSigned(by key: AuditPublicKey) -> Bool {
        fingerprint == key.fingerprint && key.isValidSignature(signature, for: signedPart())
    }
}

/// A shard's checkpoints file, appended by the shard log's writer thread only: one entry per
/// checkpoint, written at the end and synced before the next is written.
final class AuditCheckpointFile {
    let path: String
    let directory: String
    let fileSystem: any FileSystem
    let key: AuditSigningKey
    let shard: UInt32
    let shardCount: UInt32
    private var file: (any WritableFile)?
    /// Entries in the file (the next one's sequence is this + 1).
    private(set) var count: UInt64
    /// LSN of the last checkpoint written or found (0: none).
    private(set) var lastLSN: UInt64

    /// Opens (without creating) the file of the shard whose live log is `walDirectory`: a
    /// torn last entry (a crash while it was written) is cut off so the next goes after the
    /// complete ones.
    init(walDirectory: String, fileSystem: any FileSystem, key: AuditSigningKey, shard: UInt32, shardCount: UInt32) throws(FileError) {
        path = AuditFiles.checkpointsPath(walDirectory: walDirectory)
        directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        self.fileSystem = fileSystem
        self.key = key
        self.shard = shard
        self.shardCount = shardCount
        count = 0
        lastLSN = 0
        guard fileSystem.fileExists(path) else { return }
        let bytes = try fileSystem.readFile(path, bytesMax: StorageLimits.checkpointsFileBytesMax)
        count = UInt64(bytes.count / AuditCheckpoint.size)
        if let last = count.checkedLast, let entry = try? AuditCheckpoint(decoding: bytes, at: Int(last) * AuditCheckpoint.size) {
            lastLSN = entry.lsn
        }
        if bytes.count % AuditCheckpoint.size != 0 {
            let opened = try fileSystem.open(path, create: false)
            try opened.truncate(Int64(count) * Int64(AuditCheckpoint.size))
            try opened.sync()
            file = opened
        }
    }

    /// Appends and syncs a checkpoint of `head` at `lsn`.
    func write(reason: CheckpointReason, lsn: UInt64, time: Timestamp, head: [UInt8]) throws(FileError) {
        let checkpoint = AuditCheckpoint.signed(reason: reason, shard: shard, shardCount: shardCount, sequence: count + 1,
                                                lsn: lsn, time: time, head: head, key: key)
        let opened: any WritableFile
        if let file {
            opened = file
        } else {
            let created = !fileSystem.fileExists(path)
            opened = try fileSystem.open(path, create: true)
            if created { try fileSystem.syncDirectory(directory) }
            file = opened
        }
        try opened.write(checkpoint.encoded(), at: Int64(count) * Int64(AuditCheckpoint.size))
        try opened.sync()
        count += 1
        lastLSN = lsn
    }

    func close() {
        file?.close()
        file = nil
    }
}

private extension UInt64 {
    /// self - 1, nil for 0.
    var checkedLast: UInt64? { self == 0 ? nil : self - 1 }
}
