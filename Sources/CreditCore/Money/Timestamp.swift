/// A point in time: milliseconds since the Unix epoch (UTC).
///
/// The core never reads a clock. The shard stamps each command with a `Timestamp` when it
/// accepts it, strictly non-decreasing per shard, and the ledger only compares them.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var millisSinceEpoch: Int64

    @inlinable
    public init(millisSinceEpoch: Int64) { self.millisSinceEpoch = millisSinceEpoch }

    /// A grant that never expires stores this as its expiry.
    public static let never = Timestamp(millisSinceEpoch: .max)
    public static let epoch = Timestamp(millisSinceEpoch: 0)

    @inlinable
    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.millisSinceEpoch < rhs.millisSinceEpoch }

    /// Saturating: adding to `.never` stays `.never`.
    @inlinable
    public func adding(millis: Int64) -> Timestamp {
        let (value, overflow) = millisSinceEpoch.addingReportingOverflow(millis)
        return overflow ? (millis > 0 ? .never : .epoch) : Timestamp(millisSinceEpoch: value)
    }

    public var description: String { self == .never ? "never" : "\(millisSinceEpoch)ms" }
}
