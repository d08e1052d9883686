/// A tenant's anomaly policy: what the spend-velocity guard does when an account's spending
/// leaves its own baseline, and the thresholds it judges by (docs/anomaly.md).
///
/// The half-lives of the estimators are constants of `SpendVelocity` (they define what its
/// stored state means); the policy holds only the decision: a verdict needs the fast rate
/// above all three of `floorMillicreditsPerMinute`, `ratioTenths / 10 ×` the baseline and
/// the baseline plus `deviationsTenths / 10 ×` the deviation (that last bar capped at
/// `ceilingTenths / 10 ×` the baseline, so a theft of many times the baseline is caught
/// however bursty the account), on `SpendVelocity.sustainDebits` consecutive debits, after
/// `minimumHistoryMinutes` of active history.
package struct AnomalyPolicy: Sendable, Equatable, Hashable {
    /// What a verdict does.
    package enum Mode: UInt8, Sendable, Equatable, Hashable, CaseIterable {
        /// No verdicts (the account's velocity is still tracked, so switching the guard on
        /// later judges against a warm baseline).
        case off = 0
        /// A notification with the figures; spending continues.
        case alert = 1
        /// A notification, and the account is frozen (auto-refill paused) until an
        /// organisation or platform admin unfreezes it.
        case freeze = 2
    }

    package var mode: Mode
    /// The fast rate must exceed this absolute rate: spending below it is never anomalous,
    /// whatever the history (a new or quiet account's first busy hour).
    package var floorMillicreditsPerMinute: Int64
    /// The fast rate must exceed this multiple of the baseline, in tenths (170 = 17×).
    package var ratioTenths: UInt16
    /// The fast rate must exceed the baseline plus this many deviations, in tenths
    /// (400 = 40 deviations): an account whose spending is bursty by nature gets a higher
    /// bar than a smooth one.
    package var deviationsTenths: UInt16
    /// The deviation bar never rises above this multiple of the baseline, in tenths (250 =
    /// 25×): with it a bursty account's theft at 50× is still caught.
    package var ceilingTenths: UInt16
    /// Active history (idle gaps count at most `SpendVelocity.idleCapMillis`) before any
    /// verdict: before it the baseline is not yet the account's own.
    package var minimumHistoryMinutes: UInt32

    package static let floorRange: ClosedRange<Int64> = 0 ... 1_000_000_000_000 // up to a billion credits a minute
    package static let ratioTenthsRange: ClosedRange<UInt16> = 20 ... 10_000 // 2× ... 1,000×
    package static let deviationsTenthsRange: ClosedRange<UInt16> = 0 ... 1_000 // 0 ... 100 deviations
    package static let ceilingTenthsRange: ClosedRange<UInt16> = 10 ... 10_000 // 1× ... 1,000×
    package static let minimumHistoryMinutesRange: ClosedRange<UInt32> = 0 ... 43_200 // up to 30 days

    /// The defaults (docs/anomaly.md says why): 25 credits a minute, 17×, 40 deviations
    /// capped at 25×, one active hour of history.
    package static let defaultFloorMillicreditsPerMinute: Int64 = 25_000
    package static let defaultRatioTenths: UInt16 = 170
    package static let defaultDeviationsTenths: UInt16 = 400
    package static let defaultCeilingTenths: UInt16 = 250
    package static let defaultMinimumHistoryMinutes: UInt32 = 60

    /// The default thresholds under `mode`.
    package init(mode: Mode = .alert,
                 floorMillicreditsPerMinute: Int64 = AnomalyPolicy.defaultFloorMillicreditsPerMinute,
                 ratioTenths: UInt16 = AnomalyPolicy.defaultRatioTenths,
                 deviationsTenths: UInt16 = AnomalyPolicy.defaultDeviationsTenths,
                 ceilingTenths: UInt16 = AnomalyPolicy.defaultCeilingTenths,
                 minimumHistoryMinutes: UInt32 = AnomalyPolicy.defaultMinimumHistoryMinutes) {
        self.mode = mode
        self.floorMillicreditsPerMinute = floorMillicreditsPerMinute
        self.ratioTenths = ratioTenths
        self.deviationsTenths = deviationsTenths
        self.ceilingTenths = ceilingTenths
        self.minimumHistoryMinutes = minimumHistoryMinutes
    }

    package static let off = AnomalyPolicy(mode: .off)

    /// Whether every tunable is in its range (a command carrying a policy is refused
    /// otherwise; a decoded one is rejected).
    package var isValid: Bool {
        Self.floorRange.contains(floorMillicreditsPerMinute) && Self.ratioTenthsRange.contains(ratioTenths)
            && Self.deviationsTenthsRange.contains(deviationsTenths) && Self.ceilingTenthsRange.contains(ceilingTenths)
            && Self.minimumHistoryMinutesRange.contains(minimumHistoryMinutes)
    }

    /// The encoded size: mode (1), floor (8), ratio (2), deviations (2), ceiling (2),
    /// history (4).
    package static let encodedSize = 19

    /// Canonical: every field always written, little-endian, in declaration order.
    package func encode(into writer: inout ByteWriter) {
        writer.write(mode.rawValue)
        writer.write(floorMillicreditsPerMinute)
        writer.write(ratioTenths)
        writer.write(deviationsTenths)
        writer.write(ceilingTenths)
        writer.write(minimumHistoryMinutes)
    }

    /// Reads what `encode(into:)` wrote; an unknown mode or a tunable out of its range is
    /// `.invalid` at the field's offset.
    package init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        var at = reader.offset
        guard let mode = Mode(rawValue: try reader.read(UInt8.self)) else { throw .invalid(offset: at, field: "anomaly mode") }
        at = reader.offset
        let floor = try reader.read(Int64.self)
        guard Self.floorRange.contains(floor) else { throw .invalid(offset: at, field: "anomaly floor") }
        at = reader.offset
        let ratio = try reader.read(UInt16.self)
        guard Self.ratioTenthsRange.contains(ratio) else { throw .invalid(offset: at, field: "anomaly ratio") }
        at = reader.offset
        let deviations = try reader.read(UInt16.self)
        guard Self.deviationsTenthsRange.contains(deviations) else { throw .invalid(offset: at, field: "anomaly deviations") }
        at = reader.offset
        let ceiling = try reader.read(UInt16.self)
        guard Self.ceilingTenthsRange.contains(ceiling) else { throw .invalid(offset: at, field: "anomaly ceiling") }
        at = reader.offset
        let history = try reader.read(UInt32.self)
        guard Self.minimumHistoryMinutesRange.contains(history) else { throw .invalid(offset: at, field: "anomaly minimum history") }
        self.init(mode: mode, floorMillicreditsPerMinute: floor, ratioTenths: ratio, deviationsTenths: deviations,
                  ceilingTenths: ceiling, minimumHistoryMinutes: history)
    }

    /// Every field, for state digests.
    package func feed(into hasher: inout StableHasher) {
        hasher.combine(mode.rawValue); hasher.combine(floorMillicreditsPerMinute); hasher.combine(ratioTenths)
        hasher.combine(deviationsTenths); hasher.combine(ceilingTenths); hasher.combine(minimumHistoryMinutes)
    }
}
