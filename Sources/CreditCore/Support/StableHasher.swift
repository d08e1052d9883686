/// A 64-bit hash that is the same in every process and on every run (Swift's `Hasher` is
/// seeded per process). Used for idempotency fingerprints and state digests, which are
/// stored and compared across runs. Not cryptographic.
@usableFromInline package struct StableHasher: Sendable {
    @usableFromInline var state: UInt64

    package init(seed: UInt64 = 0x9E37_79B9_7F4A_7C15) { state = seed }

    @inlinable @inline(__always)
    package static func mix(_ value: UInt64) -> UInt64 {
        // splitmix64's finaliser: a bijection with full avalanche.
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// One multiply per word (as in FxHash); `finish` mixes fully.
    @inlinable @inline(__always)
    package mutating func combine(_ value: UInt64) {
        state = ((state ^ value) &* 0x9E37_79B9_7F4A_7C15)
        state ^= state >> 29
    }
    package mutating func combine(_ value: Int64) { combine(UInt64(bitPattern: value)) }
    package mutating func combine(_ value: UInt32) { combine(UInt64(value)) }
    package mutating func combine(_ value: UInt16) { combine(UInt64(value)) }
    package mutating func combine(_ value: UInt8) { combine(UInt64(value)) }
    package mutating func combine(_ value: Bool) { combine(UInt64(value ? 1 : 0)) }
    package mutating func combine(_ value: String) {
        combine(UInt64(value.utf8.count))
        for byte in value.utf8 { combine(UInt64(byte)) }
    }

    package func finish() -> UInt64 { Self.mix(state) }
}
