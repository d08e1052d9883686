import Crypto
import Foundation
@_spi(Plumbing) import CreditCore

/// The data keys a data directory's files are sealed with (docs/encryption.md): AES-256-GCM
/// over each write batch's compressed log records (a sealed frame) and over each snapshot's
/// compressed state.
///
/// A key is 32 random bytes the host keeps outside the data directory. It is named by its
/// id, the first 8 bytes of its SHA-256 (big-endian), which every sealed file's header
/// carries: the id says which key a file needs without revealing the key. The newest key
/// (the last given) seals what is written from now on; every key of the ring opens what
/// it sealed, so rotation is: add the new key last, restart, `credits rekey`, and drop the
/// old key once no file needs it.
public struct EncryptionKeyRing: Sendable, Equatable, CustomStringConvertible {
    /// The keys, oldest first (the bytes: `SymmetricKey` is not `Sendable`).
    private let keys: [(id: UInt64, bytes: [UInt8])]

    /// `keys`: 32 bytes each, oldest first; the last one seals new files. Refuses an empty
    /// ring, a key of another size, and the same key twice.
    public init(keys: [[UInt8]]) throws(EncryptionKeyError) {
        guard !keys.isEmpty else { throw .noKey }
        var seen: Set<UInt64> = []
        var ring: [(id: UInt64, bytes: [UInt8])] = []
        for key in keys {
            guard key.count == 32 else { throw .wrongSize(bytes: key.count) }
            let id = Self.id(of: key)
            guard seen.insert(id).inserted else { throw .duplicate(keyID: Self.describe(id)) }
            ring.append((id, key))
        }
        self.keys = ring
    }

    /// The id of the key sealing new files.
    package var newestID: UInt64 { keys[keys.count - 1].id }
    /// The ids of the ring, oldest first, as 16 hex digits.
    public var keyIDs: [String] { keys.map { Self.describe($0.id) } }

    package func bytes(of id: UInt64) -> [UInt8]? { keys.first { $0.id == id }?.bytes }

    /// A key's id: the first 8 bytes of its SHA-256, big-endian (never 0: a header with id 0
    /// is not sealed).
    package static func id(of key: [UInt8]) -> UInt64 {
        let digest = Array(SHA256.hash(data: key))
        let id = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return id == 0 ? 1 : id
    }

    /// 16 hex digits.
    package static func describe(_ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    public var description: String { "key ring [" + keyIDs.joined(separator: ", ") + "] (newest last)" }

    public static func == (lhs: EncryptionKeyRing, rhs: EncryptionKeyRing) -> Bool {
        lhs.keys.map(\.id) == rhs.keys.map(\.id)
    }
}

/// A key ring that cannot be built.
public enum EncryptionKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case noKey
    /// A data key must be exactly 32 bytes (AES-256).
    case wrongSize(bytes: Int)
    case duplicate(keyID: String)

    public var code: String {
        switch self {
        case .noKey: "data_key_none"
        case .wrongSize: "data_key_size"
        case .duplicate: "data_key_duplicate"
        }
    }

    public var description: String {
        switch self {
        case .noKey: "no data key given"
        case .wrongSize(let bytes): "a data key must be exactly 32 bytes, this one has \(bytes)"
        case .duplicate(let id): "data key \(id) is given twice"
        }
    }
}

/// The sealing itself. Each shard gets its own subkeys (HKDF-SHA256 of the data key, one for
/// the log and one per snapshot), so a nonce must be unique only within one shard's log, or
/// within one snapshot; docs/encryption.md has the argument.
///
/// - Log frames (`WALFrame`, one per write batch): key = HKDF(data key, info "aideon-credits
///   wal v3" + shard index); nonce = the segment's generation (u32, from the segment header)
///   then the frame's first LSN (u64), little-endian; authenticated data = the frame's
///   40-byte header with its checksum field zeroed (the CRC is computed after sealing) and
///   its 16 clear bytes.
/// - Snapshots: key = HKDF(data key, salt = the snapshot's 16 random bytes, info
///   "aideon-credits snapshot v1" + shard index); nonce = 8 zero bytes then the chunk number
///   (u32); authenticated data = the snapshot header then the chunk number.
package enum Sealing {
    package static let tagBytes = 16

    /// A shard's log subkey under `key`.
    package static func logKey(_ key: [UInt8], shard: UInt32) -> SymmetricKey {
        var info = Array("aideon-credits wal v3".utf8)
        withUnsafeBytes(of: shard.littleEndian) { info.append(contentsOf: $0) }
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: key), info: info, outputByteCount: 32)
    }

    /// A snapshot's subkey under `key`: `salt` is the snapshot's own random bytes.
    package static func snapshotKey(_ key: [UInt8], shard: UInt32, salt: [UInt8]) -> SymmetricKey {
        var info = Array("aideon-credits snapshot v1".utf8)
        withUnsafeBytes(of: shard.littleEndian) { info.append(contentsOf: $0) }
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: key), salt: salt, info: info, outputByteCount: 32)
    }

    /// The 12-byte nonce of a log frame: the segment generation u32, the frame's first LSN u64.
    package static func logNonce(generation: UInt32, lsn: UInt64) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: generation.littleEndian) { bytes.replaceSubrange(0 ..< 4, with: $0) }
        withUnsafeBytes(of: lsn.littleEndian) { bytes.replaceSubrange(4 ..< 12, with: $0) }
        return try! AES.GCM.Nonce(data: bytes) // 12 bytes: never throws
    }

    /// The 12-byte nonce of a snapshot chunk: 8 zero bytes, the chunk number u32.
    package static func chunkNonce(_ chunk: UInt32) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: chunk.littleEndian) { bytes.replaceSubrange(8 ..< 12, with: $0) }
        return try! AES.GCM.Nonce(data: bytes)
    }

    /// Seals `plain`: ciphertext then the 16-byte tag, appended to `output`.
    package static func seal(_ plain: UnsafeRawBufferPointer, key: SymmetricKey, nonce: AES.GCM.Nonce,
                             authenticating context: UnsafeRawBufferPointer, into output: inout ByteWriter) {
        // AES-GCM fails only on impossible sizes (over 64 GiB).
        let box = try! AES.GCM.seal(plain, using: key, nonce: nonce, authenticating: context)
        box.ciphertext.withUnsafeBytes { output.write(bytes: $0.bindMemory(to: UInt8.self)) }
        box.tag.withUnsafeBytes { output.write(bytes: $0.bindMemory(to: UInt8.self)) }
    }

    /// Opens ciphertext-then-tag; nil if the tag does not verify (the plain bytes as `Data`,
    /// not copied again).
    package static func openData(_ sealed: UnsafeRawBufferPointer, key: SymmetricKey, nonce: AES.GCM.Nonce,
                                 authenticating context: UnsafeRawBufferPointer) -> Data? {
        guard sealed.count >= tagBytes else { return nil }
        guard let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<(sealed.count - tagBytes)]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[(sealed.count - tagBytes)...])) else { return nil }
        return try? AES.GCM.open(box, using: key, authenticating: context)
    }

    /// Opens ciphertext-then-tag; nil if the tag does not verify.
    package static func open(_ sealed: UnsafeRawBufferPointer, key: SymmetricKey, nonce: AES.GCM.Nonce,
                             authenticating context: UnsafeRawBufferPointer) -> [UInt8]? {
        guard sealed.count >= tagBytes else { return nil }
        guard let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<(sealed.count - tagBytes)]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[(sealed.count - tagBytes)...])),
              let plain = try? AES.GCM.open(box, using: key, authenticating: context) else { return nil }
        return plain.withUnsafeBytes { Array($0) }
    }

    /// 16 random bytes (a snapshot's salt).
    package static func randomSalt() -> [UInt8] {
        SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }
    }
}
