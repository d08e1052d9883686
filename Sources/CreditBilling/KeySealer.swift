import Crypto
import CreditEngine

/// Seals provider keys with a key the host supplies (AES-256-GCM), so the ledger — and
/// its log and snapshots — only ever hold ciphertext. The sealed bytes are bound to their
/// owner account and provider (authenticated data): a sealed key copied to another account
/// or provider does not open.
public struct KeySealer: Sendable {
    // The bytes, not a `SymmetricKey` (which is not Sendable); a key is made per use.
    private let keyBytes: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    /// `keyBytes`: the host's 32-byte key (keep it outside the data directory).
    public init(keyBytes: [UInt8]) throws(BillingError) {
        guard keyBytes.count == 32 else { throw .sealingKeySize(keyBytes.count) }
        self.keyBytes = keyBytes
    }

    /// A fresh random 32-byte key, for tests and demos.
    public static func randomKeyBytes() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    public func seal(_ secret: String, owner: AccountID, provider: String) throws(BillingError) -> [UInt8] {
        do {
            let box = try AES.GCM.seal(Array(secret.utf8), using: key,
                                       authenticating: Self.context(owner: owner, provider: provider))
            guard let combined = box.combined else { throw BillingError.sealFailed }
            return Array(combined)
        } catch {
            throw .sealFailed
        }
    }

    public func unseal(_ sealed: [UInt8], owner: AccountID, provider: String) throws(BillingError) -> String {
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            let bytes = try AES.GCM.open(box, using: key, authenticating: Self.context(owner: owner, provider: provider))
            return String(decoding: bytes, as: UTF8.self)
        } catch {
            throw .unsealFailed
        }
    }

    private static func context(owner: AccountID, provider: String) -> [UInt8] {
        Array("aideon-credits key v1|\(owner.tenant.rawValue)|\(owner.number)|\(provider)".utf8)
    }
}

/// What a person sees of a key: its last four characters and the start of its SHA-256,
/// e.g. "…abcd · 3f9a2c". Never enough to use the key.
public enum KeyFingerprint {
    public static func of(_ secret: String) -> String {
        let digest = SHA256.hash(data: Array(secret.utf8))
        let hex = digest.prefix(3).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
        }.joined()
        return "…" + String(secret.suffix(4)) + " · " + hex
    }
}
