/// splitmix64: a small seedable generator, the same sequence on every platform, so a
/// randomized test or benchmark replays from the seed it prints. Not for secrets.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64

    package init(seed: UInt64) { state = seed }

    /// The state advances by the golden ratio; the output is the state passed through the
    /// finaliser, which is `StableHasher.mix` (applied before the increment it adds).
    @inlinable
    package mutating func next() -> UInt64 {
        defer { state &+= 0x9E37_79B9_7F4A_7C15 }
        return StableHasher.mix(state)
    }

    /// A number in 0..<bound (slightly biased for huge bounds; fine for tests).
    package mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    package mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    package mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    package mutating func between(_ low: Int64, _ high: Int64) -> Int64 { low + Int64(next() % UInt64(high - low + 1)) }
}
