#if canImport(Glibc)
import Glibc
#endif
import Crypto

/// The host's Ed25519 key that signs a data directory's audit checkpoints (docs/audit.md).
///
/// It is read from a PEM file outside the data directory — the form
/// `openssl genpkey -algorithm ed25519` writes (PKCS #8, "BEGIN PRIVATE KEY") — and set as
/// `LogConfiguration.auditSigningKey`. An auditor verifies with the public half
/// (`openssl pkey -pubout`), which cannot sign.
public struct AuditSigningKey: Sendable, Equatable {
    /// The 32-byte seed (swift-crypto's key types are not `Sendable`; the key is made from it when used).
    let raw: [UInt8]
    var key: Curve25519.Signing.PrivateKey { try! Curve25519.Signing.PrivateKey(rawRepresentation: raw) }

    /// The key in a PEM text (PKCS #8, version 1 or 2, algorithm Ed25519).
    public init(pem: String) throws(AuditKeyError) {
        let der = try PEM.decode(pem, label: "PRIVATE KEY")
        let seed: ArraySlice<UInt8>
        if der.count == 48, der.starts(with: PEM.ed25519PKCS8v1Prefix) {
            seed = der[16...]
        } else if der.count == 83, der.starts(with: PEM.ed25519PKCS8v2Prefix), der[48 ..< 51].elementsEqual([0x81, 0x21, 0x00]) {
            seed = der[16 ..< 48]
        } else {
            throw .notEd25519
        }
        do { raw = Array(try Curve25519.Signing.PrivateKey(rawRepresentation: seed).rawRepresentation) } catch { throw .notEd25519 }
    }

    /// The key in the PEM file at `path`, which must not lie inside `dataDirectory` (a key
    /// kept with the data it signs protects nothing: whoever can edit the data can sign it).
    public init(pemFile path: String, outside dataDirectory: String?) throws(AuditKeyError) {
        if let dataDirectory, AuditFiles.isInside(path, directory: dataDirectory) { throw .insideDataDirectory(path) }
        let bytes: [UInt8]
        do { bytes = try PosixFileSystem().readFile(path, bytesMax: 64 * 1_024) } catch { throw .unreadable(path, error.description) }
        try self.init(pem: String(decoding: bytes, as: UTF8.self))
    }

    /// A new random key (tests, and hosts that make their key with the library).
    package static func generate() -> AuditSigningKey { AuditSigningKey(key: Curve25519.Signing.PrivateKey()) }

    init(key: Curve25519.Signing.PrivateKey) { raw = Array(key.rawRepresentation) }

    /// The key as PEM (PKCS #8 version 1, as openssl writes it).
    package var pemRepresentation: String { PEM.encode(PEM.ed25519PKCS8v1Prefix + Array(key.rawRepresentation), label: "PRIVATE KEY") }

    /// The public half that verifies this key's signatures.
    package var publicKey: AuditPublicKey { AuditPublicKey(key: key.publicKey) }

    func sign(_ message: [UInt8]) -> [UInt8] {
        // Ed25519 signatures are deterministic; signing fails only on an invalid key, which
        // a constructed key is not.
        Array(try! key.signature(for: message))
    }

}

/// The private key never shows in a description, a dump or a debugger's mirror (a
/// configuration printed to a log must not leak it): only its public key's fingerprint.
extension AuditSigningKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "AuditSigningKey(public key SHA-256 " + publicKey.fingerprint.prefix(8).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined() + "…)"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}

/// An Ed25519 public key that verifies audit checkpoints.
@_spi(Plumbing) public struct AuditPublicKey: Sendable, Equatable {
    let raw: [UInt8]
    var key: Curve25519.Signing.PublicKey { try! Curve25519.Signing.PublicKey(rawRepresentation: raw) }

    /// The key in a PEM text ("BEGIN PUBLIC KEY", SubjectPublicKeyInfo, as `openssl pkey -pubout` writes).
    @_spi(Plumbing) public init(pem: String) throws(AuditKeyError) {
        let der = try PEM.decode(pem, label: "PUBLIC KEY")
        guard der.count == 44, der.starts(with: PEM.ed25519SPKIPrefix) else { throw .notEd25519 }
        do { raw = Array(try Curve25519.Signing.PublicKey(rawRepresentation: der[12...]).rawRepresentation) } catch { throw .notEd25519 }
    }

    @_spi(Plumbing) public init(pemFile path: String) throws(AuditKeyError) {
        let bytes: [UInt8]
        do { bytes = try PosixFileSystem().readFile(path, bytesMax: 64 * 1_024) } catch { throw .unreadable(path, error.description) }
        try self.init(pem: String(decoding: bytes, as: UTF8.self))
    }

    init(key: Curve25519.Signing.PublicKey) { raw = Array(key.rawRepresentation) }

    package var pemRepresentation: String { PEM.encode(PEM.ed25519SPKIPrefix + Array(key.rawRepresentation), label: "PUBLIC KEY") }

    /// SHA-256 of the 32-byte raw public key: what a checkpoint names its signer by.
    @_spi(Plumbing) public var fingerprint: [UInt8] { Array(SHA256.hash(data: raw)) }

    func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        key.isValidSignature(signature, for: message)
    }
}

/// Why an audit key file was not accepted.
public enum AuditKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(String, String)
    /// No PEM block with the expected label, or bad base64 in it.
    case notPEM(expectedLabel: String)
    /// A PEM block that is not an Ed25519 key of that kind.
    case notEd25519
    /// The key file lies inside the data directory it would sign.
    case insideDataDirectory(String)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .unreadable: "audit_key_unreadable"
        case .notPEM: "audit_key_not_pem"
        case .notEd25519: "audit_key_not_ed25519"
        case .insideDataDirectory: "audit_key_inside_data_directory"
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let path, let why): "cannot read the key file \(path): \(why)"
        case .notPEM(let label): "not a PEM file with a \"\(label)\" block"
        case .notEd25519: "not an Ed25519 key (expected what openssl genpkey -algorithm ed25519 / openssl pkey -pubout write)"
        case .insideDataDirectory(let path): "the key file \(path) lies inside the data directory: keep the signing key elsewhere"
        }
    }
}

/// PEM armour and the fixed DER prefixes of Ed25519 keys (RFC 8410).
enum PEM {
    /// PKCS #8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
    static let ed25519PKCS8v1Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70,
                                                0x04, 0x22, 0x04, 0x20]
    /// PKCS #8 v2 (OneAsymmetricKey with the public key attached as [1]).
    static let ed25519PKCS8v2Prefix: [UInt8] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70,
                                                0x04, 0x22, 0x04, 0x20]
    /// SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits, 32 bytes) }.
    static let ed25519SPKIPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]

    static func decode(_ text: String, label: String) throws(AuditKeyError) -> [UInt8] {
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        var inside = false
        var body = ""
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let trimmed = line.trimmingASCIIWhitespace()
            if trimmed == begin { inside = true; body = ""; continue }
            if trimmed == end, inside { return try base64(body, label: label) }
            if inside { body += trimmed }
        }
        throw .notPEM(expectedLabel: label)
    }

    static func base64(_ text: String, label: String) throws(AuditKeyError) -> [UInt8] {
        var bytes: [UInt8] = []
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for character in text.utf8 {
            let value: UInt32
            switch character {
            case UInt8(ascii: "A") ... UInt8(ascii: "Z"): value = UInt32(character - UInt8(ascii: "A"))
            case UInt8(ascii: "a") ... UInt8(ascii: "z"): value = UInt32(character - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): value = UInt32(character - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): value = 62
            case UInt8(ascii: "/"): value = 63
            case UInt8(ascii: "="): padding += 1; continue
            default: throw .notPEM(expectedLabel: label)
            }
            guard padding == 0 else { throw .notPEM(expectedLabel: label) }
            accumulator = accumulator << 6 | value
            bits += 6
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return bytes
    }

    static func encode(_ der: [UInt8], label: String) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var index = 0
        while index < der.count {
            let chunk = der[index ..< min(index + 3, der.count)]
            var value = 0
            for (offset, byte) in chunk.enumerated() { value |= Int(byte) << (16 - 8 * offset) }
            for position in 0 ..< 4 {
                out.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 63] : UInt8(ascii: "="))
            }
            index += 3
        }
        var lines = "-----BEGIN \(label)-----\n"
        var start = 0
        while start < out.count {
            lines += String(decoding: out[start ..< min(start + 64, out.count)], as: UTF8.self) + "\n"
            start += 64
        }
        return lines + "-----END \(label)-----\n"
    }
}

extension Substring {
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first ... last])
    }
}

/// Paths of the audit files, and the check that a key file is not inside a directory.
enum AuditFiles {
    /// The checkpoints of the shard whose live log is `walDirectory` (`DIR/shard-NN/wal`):
    /// `DIR/shard-NN/audit.checkpoints`, outside the log directories a truncation works on.
    static func checkpointsPath(walDirectory: String) -> String {
        (walDirectory.hasSuffix("/wal") ? String(walDirectory.dropLast(4)) : walDirectory) + "/" + checkpointsName
    }

    static let checkpointsName = "audit.checkpoints"

    /// Whether `path` resolves to a place inside `directory` (symbolic links and `..`
    /// resolved where the files exist).
    static func isInside(_ path: String, directory: String) -> Bool {
        let file = resolved(path)
        let dir = resolved(directory)
        return file == dir || file.hasPrefix(dir.hasSuffix("/") ? dir : dir + "/")
    }

    /// The canonical absolute path (realpath of the deepest existing ancestor, the rest
    /// appended).
    static func resolved(_ path: String) -> String {
        var absolute = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if getcwd(&buffer, buffer.count) != nil {
                absolute = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
            }
        }
        var head = absolute
        var tail: [String] = []
        while true {
            if let real = realpath(head, nil) {
                defer { free(real) }
                let base = String(cString: real)
                return ([base == "/" ? "" : base] + tail.reversed()).joined(separator: "/")
            }
            guard let slash = head.lastIndex(of: "/"), slash != head.startIndex else { return absolute }
            tail.append(String(head[head.index(after: slash)...]))
            head = String(head[..<slash])
        }
    }
}
