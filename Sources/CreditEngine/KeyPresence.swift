import CCacheHints

/// Which tenants may hold a provider key on any of their accounts: a Bloom filter over
/// tenant ids, set by a shard when it applies a key registration (and for every key a
/// recovered state holds), read by anyone without a lock and without a trip to the shard.
///
/// "No" is exact: a tenant the filter does not know has no key, so the billing layer can
/// leave the key-covered candidates out of a routed charge for it (most tenants) and send
/// only the model charged on system keys. "Maybe" may be wrong (another tenant set the same
/// bits, or the key was removed since: bits are never cleared while the engine runs); it
/// only costs the full candidate list, and the shard decides.
///
/// Both bits of a tenant lie in one 64-bit word (a blocked Bloom filter), so a lookup reads
/// one cache line.
final class KeyPresence: @unchecked Sendable {
    /// 2 Mi bits (256 KiB). With 100,000 tenants holding keys, about 6 bits of a word are
    /// set, so under 1 % of the other tenants get a "maybe".
    static let bitCount = 1 << 21
    private static let wordCount = bitCount / 64
    // Written and read only through atomic_words_or and atomic_words_load.
    private let words: UnsafeMutablePointer<UInt64>

    init() {
        words = .allocate(capacity: Self.wordCount)
        words.initialize(repeating: 0, count: Self.wordCount)
    }

    deinit { words.deallocate() }

    /// The word of a tenant and its two bits in it.
    private static func place(of tenant: TenantID) -> (word: Int, bits: UInt64) {
        let hash = StableHasher.mix(tenant.rawValue)
        let word = Int(truncatingIfNeeded: hash >> 12) & (wordCount - 1)
        return (word, 1 << (hash & 63) | 1 << ((hash >> 6) & 63))
    }

    func mark(_ tenant: TenantID) {
        let (word, bits) = Self.place(of: tenant)
        atomic_words_or(words + word, bits)
    }

    /// Starts loading the tenant's word (a hint: `mayHaveKeys` is asked a little later).
    func prefetch(_ tenant: TenantID) { atomic_words_prefetch(words + Self.place(of: tenant).word) }

    /// False only if no key was ever registered for the tenant in this engine's state.
    func mayHaveKeys(_ tenant: TenantID) -> Bool {
        let (word, bits) = Self.place(of: tenant)
        return atomic_words_load(words + word) & bits == bits
    }
}
