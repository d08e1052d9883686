/// One account's spend velocity: a fast rate of spending and the account's own baseline,
/// updated in O(1) per debit with integer arithmetic only, so a replay on any machine gives
/// the same state bit for bit (docs/anomaly.md).
///
/// Three exponentially decayed sums of the amounts spent, each a rate once divided by its
/// time constant:
/// - fast: half-life 30 s, decayed over real time (what is being spent now);
/// - hour: half-life 2 h, and day: half-life 1 day, both decayed over *active* time only
///   (an idle gap counts at most `idleCapMillis`), so a night, a weekend or a holiday does
///   not erode the baseline and the first busy minutes after it are not "new";
/// and a deviation: the decayed mean of |fast − baseline| sampled at each debit (half-life
/// 1 day of active time), so a bursty account gets a higher bar than a smooth one.
/// The baseline is max(hour, day), each bias-corrected for the part of its window the
/// account has lived (a young account's baseline is its average so far, not a fraction of
/// it).
///
/// Sums are stored as a 32-bit floating format of integers (27-bit mantissa, 5-bit shift,
/// truncated, saturating at about 2^58) in 1/65,536 millicredit, so the state is 29 bytes.
package struct SpendVelocity: Sendable, Equatable, Hashable {
    /// Command time of the last observation (ms).
    package private(set) var lastMillis: Int64 = 0
    /// Active time observed (ms, idle gaps capped), saturating at UInt32.max (49.7 days).
    package private(set) var activeMillis: UInt32 = 0
    /// Decayed sums of spent amounts (packed, 1/65,536 mc).
    private var fastSum: UInt32 = 0
    private var hourSum: UInt32 = 0
    private var daySum: UInt32 = 0
    /// Decayed sum of |fast − baseline| samples (packed, 1/65,536 mc a minute, weighted).
    private var deviationSum: UInt32 = 0
    /// Bit 0: observed at least once. Bit 1: a verdict was returned and the rate has not yet
    /// come back under the threshold (one notification per episode). Bits 2–3: how many
    /// consecutive debits (saturating at 3) left the fast rate above the threshold.
    private var flags: UInt8 = 0

    package init() {}

    // MARK: The model's constants (changing one changes what stored state means)

    package static let fastHalfLifeMillis: Int64 = 30_000
    package static let hourHalfLifeMillis: Int64 = 7_200_000
    package static let dayHalfLifeMillis: Int64 = 86_400_000
    /// An idle gap longer than this counts as this much active time.
    package static let idleCapMillis: Int64 = 900_000
    /// Time constants (half-life / ln 2, ms): a steady rate r per ms makes a sum r × τ.
    static let fastTau: UInt64 = 43_281
    static let hourTau: UInt64 = 10_387_404
    static let dayTau: UInt64 = 124_648_852

    private static let started: UInt8 = 1
    private static let latched: UInt8 = 2
    private static let streakShift: UInt8 = 2
    private static let streakMask: UInt8 = 0b1100
    /// Consecutive debits above the threshold a verdict needs (one large request, or two
    /// close together, are not yet an episode).
    package static let sustainDebits: UInt8 = 3

    package var hasObserved: Bool { flags & Self.started != 0 }
    /// Whether a verdict was returned in the current episode (the last debit was over the
    /// threshold).
    package var isLatched: Bool { flags & Self.latched != 0 }

    /// What made a debit anomalous: the figures a notification carries. Rates are in
    /// millicredits per minute, rounded down.
    package struct Verdict: Sendable, Equatable, Hashable {
        /// `.alert` or `.freeze`: the policy's mode when it was judged.
        package var mode: AnomalyPolicy.Mode
        /// Command time of the debit that crossed the threshold.
        package var atMillis: Int64
        /// That debit's amount (mc).
        package var amount: Int64
        /// The fast rate, this debit included (half-life 30 s).
        package var fastRate: Int64
        /// The fast rate just before this debit: it must already be above the threshold, as it
        /// must have been after each of the `sustainDebits` debits of the episode so far (one
        /// large request alone never makes a verdict).
        package var priorFastRate: Int64
        /// max(hourRate, dayRate).
        package var baselineRate: Int64
        package var hourRate: Int64
        package var dayRate: Int64
        package var deviation: Int64
        /// max(floor, ratio × baseline, min(baseline + deviations × deviation, ceiling × baseline)).
        package var threshold: Int64
        package var floor: Int64
        package var ratioTenths: UInt16
        package var deviationsTenths: UInt16
        package var ceilingTenths: UInt16
        /// fastRate / baselineRate in tenths (nil when the baseline is 0).
        package var observedRatioTenths: Int64?
        /// Active history in minutes.
        package var historyMinutes: Int64
    }

    /// The current figures without observing anything (for a dashboard or a notification).
    package struct Figures: Sendable, Equatable {
        package var fastRate: Int64
        package var hourRate: Int64
        package var dayRate: Int64
        package var deviation: Int64
        package var baselineRate: Int64 { max(hourRate, dayRate) }
    }

    // MARK: Observation

    /// Records a debit of `spent` millicredits at command time `millis` and judges it under
    /// `policy`: the debit is over the threshold when the fast rate, this debit included,
    /// exceeds max(floor, ratio × baseline, min(baseline + deviations × deviation,
    /// ceiling × baseline)) and already did just before it. Returns a verdict on the
    /// `sustainDebits`-th consecutive debit over the threshold, once per episode (until a
    /// debit is under it again), after the policy's minimum history; nil otherwise, and
    /// always under `.off`. O(1), no allocation. Time must not go backwards (an earlier time
    /// counts as no time passing); a zero or negative amount only advances time.
    @discardableResult
    package mutating func observe(spent: Int64, at millis: Int64, policy: AnomalyPolicy) -> Verdict? {
        let gapDecay = advance(to: millis)
        let (hour, day, deviation) = estimates()
        let base = max(hour, day)
        let prior = Self.rate(Packed.unpack(fastSum), perMinute: Self.fastPerMinute)
        let amount = spent > 0 ? UInt64(spent) : 0
        let units = amount.multipliedSaturating(by: Packed.one)
        fastSum = Packed.pack(Packed.unpack(fastSum).addingSaturating(units))
        hourSum = Packed.pack(Packed.unpack(hourSum).addingSaturating(units))
        daySum = Packed.pack(Packed.unpack(daySum).addingSaturating(units))
        let fast = Self.rate(Packed.unpack(fastSum), perMinute: Self.fastPerMinute)

        // The deviation learns from this debit with the weight of the active time it covers.
        let sample = fast > base ? fast - base : base - fast
        deviationSum = Packed.pack(Fixed.scale(Packed.unpack(deviationSum), by: gapDecay)
            .addingSaturating(Fixed.scale(sample, by: Fixed.one - gapDecay)))

        // The threshold ten times over, in 128 bits: compared without a division.
        let floor = UInt64(max(0, policy.floorMillicreditsPerMinute)).multipliedSaturating(by: Packed.one)
        let base128 = UInt128(base)
        let byDeviation = min(base128 * 10 + UInt128(deviation) * UInt128(policy.deviationsTenths),
                              base128 * UInt128(policy.ceilingTenths))
        let threshold10 = max(UInt128(floor) * 10, base128 * UInt128(policy.ratioTenths), byDeviation)
        let oldEnough = UInt64(activeMillis) >= UInt64(policy.minimumHistoryMinutes) * 60_000
        guard policy.mode != .off && oldEnough && UInt128(fast) * 10 > threshold10 && UInt128(prior) * 10 >= threshold10 else {
            flags &= ~(Self.latched | Self.streakMask)
            return nil
        }
        let streak = min(((flags & Self.streakMask) >> Self.streakShift) + 1, Self.sustainDebits)
        flags = (flags & ~Self.streakMask) | (streak << Self.streakShift)
        guard streak >= Self.sustainDebits, !isLatched else { return nil }
        flags |= Self.latched
        let threshold = UInt64(clamping: threshold10 / 10)
        return Verdict(mode: policy.mode, atMillis: millis, amount: Int64(min(amount, UInt64(Int64.max))),
                       fastRate: Self.figure(fast), priorFastRate: Self.figure(prior), baselineRate: Self.figure(base),
                       hourRate: Self.figure(hour), dayRate: Self.figure(day), deviation: Self.figure(deviation),
                       threshold: Self.figure(threshold), floor: Self.figure(floor), ratioTenths: policy.ratioTenths,
                       deviationsTenths: policy.deviationsTenths, ceilingTenths: policy.ceilingTenths,
                       observedRatioTenths: base == 0 ? nil : Int64(min(Fixed.mulDiv(fast, 10, base), UInt64(Int64.max))),
                       historyMinutes: Int64(activeMillis / 60_000))
    }

    /// The figures at `millis` (time advanced on a copy: reading changes nothing).
    package func figures(at millis: Int64) -> Figures {
        var copy = self
        copy.advance(to: millis)
        let (hour, day, deviation) = copy.estimates()
        return Figures(fastRate: Self.figure(Self.rate(Packed.unpack(copy.fastSum), perMinute: Self.fastPerMinute)),
                       hourRate: Self.figure(hour), dayRate: Self.figure(day), deviation: Self.figure(deviation))
    }

    /// After an admin unfreezes the account. With `trustingCurrentRate`, the hour baseline
    /// is raised to the current fast rate (the admin vouches for this spending, so it does
    /// not freeze again at once); without it only the episode ends, and spending that is
    /// still anomalous freezes again within `sustainDebits` debits. Nothing changes on an
    /// account never observed.
    package mutating func resume(at millis: Int64, trustingCurrentRate: Bool) {
        guard hasObserved else { return }
        advance(to: millis)
        flags &= ~(Self.latched | Self.streakMask)
        guard trustingCurrentRate else { return }
        let fast = Self.rate(Packed.unpack(fastSum), perMinute: Self.fastPerMinute)
        let cold = Fixed.decay(Int64(activeMillis), halfLife: Self.hourHalfLifeMillis)
        // The hour sum whose bias-corrected rate is `fast`: fast × τ / 60,000 × (1 − cold).
        let wanted = Fixed.scale(Fixed.mulDiv(fast, Self.hourTau, 60_000), by: Fixed.one - cold)
        if wanted > Packed.unpack(hourSum) { hourSum = Packed.pack(wanted) }
    }

    /// Decays the sums to `millis` and returns the active-time decay factor of the
    /// deviation's half-life (Q32) for the gap.
    @discardableResult
    private mutating func advance(to millis: Int64) -> UInt64 {
        guard hasObserved else {
            flags |= Self.started
            lastMillis = millis
            return Fixed.one
        }
        var elapsed: Int64 = 0
        if millis > lastMillis {
            let (gap, overflow) = millis.subtractingReportingOverflow(lastMillis)
            elapsed = overflow ? Int64.max : gap
        }
        lastMillis = max(lastMillis, millis)
        guard elapsed > 0 else { return Fixed.one }
        let active = min(elapsed, Self.idleCapMillis)
        fastSum = Packed.pack(Fixed.scale(Packed.unpack(fastSum), by: Fixed.decay(elapsed, halfLife: Self.fastHalfLifeMillis)))
        hourSum = Packed.pack(Fixed.scale(Packed.unpack(hourSum), by: Fixed.decay(active, halfLife: Self.hourHalfLifeMillis)))
        let dayDecay = Fixed.decay(active, halfLife: Self.dayHalfLifeMillis)
        daySum = Packed.pack(Fixed.scale(Packed.unpack(daySum), by: dayDecay))
        activeMillis = UInt32(min(UInt64(activeMillis) + UInt64(active), UInt64(UInt32.max)))
        return dayDecay
    }

    /// The hour and day baselines and the deviation (1/65,536 mc a minute), each corrected
    /// for the part of its window the account has lived: sum / (τ × (1 − 2^(−active/half-life))).
    /// 0 before any active time; no correction (and no division) once the window is full.
    @inline(__always)
    private func estimates() -> (hour: UInt64, day: UInt64, deviation: UInt64) {
        let hourLived = Fixed.one - Fixed.decay(Int64(activeMillis), halfLife: Self.hourHalfLifeMillis)
        let dayLived = Fixed.one - Fixed.decay(Int64(activeMillis), halfLife: Self.dayHalfLifeMillis)
        let dayInverse = Self.inverse(dayLived)
        return (Self.corrected(Self.rate(Packed.unpack(hourSum), perMinute: Self.hourPerMinute), inverse: Self.inverse(hourLived)),
                Self.corrected(Self.rate(Packed.unpack(daySum), perMinute: Self.dayPerMinute), inverse: dayInverse),
                Self.corrected(Packed.unpack(deviationSum), inverse: dayInverse))
    }

    /// 1 / `lived` (a Q32 fraction in (0, 1]) in Q32, for `corrected`: one 64-bit division,
    /// none once the window is full (1) and 0 for a window not begun (0).
    @inline(__always)
    private static func inverse(_ lived: UInt64) -> UInt64 {
        if lived >= Fixed.one { return Fixed.one }
        return lived == 0 ? 0 : UInt64.max / lived
    }

    /// `value` / lived, as `value` × its `inverse`, saturating.
    @inline(__always)
    private static func corrected(_ value: UInt64, inverse: UInt64) -> UInt64 {
        inverse == Fixed.one ? value : Fixed.multiply(value, byQ32: inverse)
    }

    /// 60,000 / τ in Q32: a decayed sum times it is a rate per minute.
    static let fastPerMinute: UInt64 = (60_000 << 32) / fastTau
    static let hourPerMinute: UInt64 = (60_000 << 32) / hourTau
    static let dayPerMinute: UInt64 = (60_000 << 32) / dayTau

    /// A decayed sum (1/65,536 mc) as a rate (1/65,536 mc a minute): sum × 60,000 / τ, with
    /// the constant quotient taken once (`fastPerMinute`, …) rather than a 128-bit division
    /// per call.
    @inline(__always)
    private static func rate(_ sum: UInt64, perMinute factor: UInt64) -> UInt64 { Fixed.multiply(sum, byQ32: factor) }

    /// 1/65,536 mc a minute as whole millicredits a minute.
    private static func figure(_ units: UInt64) -> Int64 { Int64(units >> 16) }

    // MARK: Encoding

    /// The encoded size: last (8), active (4), four sums (16), flags (1).
    package static let encodedSize = 29

    package func encode(into writer: inout ByteWriter) {
        writer.write(lastMillis)
        writer.write(activeMillis)
        writer.write(fastSum)
        writer.write(hourSum)
        writer.write(daySum)
        writer.write(deviationSum)
        writer.write(flags)
    }

    /// Reads what `encode(into:)` wrote. Rejects unknown flag bits, a non-canonical packed
    /// sum, and an account never observed with anything but zeros.
    package init(decoding reader: inout ByteReader) throws(BinaryDecodingError) {
        let start = reader.offset
        lastMillis = try reader.read(Int64.self)
        activeMillis = try reader.read(UInt32.self)
        var sums: [UInt32] = []
        for field in ["fast sum", "hour sum", "day sum", "deviation sum"] {
            let at = reader.offset
            let value = try reader.read(UInt32.self)
            guard Packed.isCanonical(value) else { throw .invalid(offset: at, field: "spend velocity \(field)") }
            sums.append(value)
        }
        (fastSum, hourSum, daySum, deviationSum) = (sums[0], sums[1], sums[2], sums[3])
        let at = reader.offset
        flags = try reader.read(UInt8.self)
        guard flags & ~(Self.started | Self.latched | Self.streakMask) == 0 else { throw .invalid(offset: at, field: "spend velocity flags") }
        if flags & Self.started == 0 {
            guard flags == 0, lastMillis == 0, activeMillis == 0, sums.allSatisfy({ $0 == 0 }) else {
                throw .invalid(offset: start, field: "spend velocity never observed")
            }
        }
    }

    /// Every stored field, for state digests.
    package func feed(into hasher: inout StableHasher) {
        hasher.combine(lastMillis); hasher.combine(activeMillis)
        hasher.combine(fastSum); hasher.combine(hourSum); hasher.combine(daySum); hasher.combine(deviationSum)
        hasher.combine(flags)
    }
}

// MARK: Integer arithmetic

/// Fixed-point helpers: Q32 decay factors and 128-bit intermediate products.
enum Fixed {
    static let one: UInt64 = 1 << 32

    /// round(2^(−i/64) × 2^32) for i in 0...64 (written out, not computed, so no libm
    /// difference between machines can change it).
    static let halves: [UInt64] = [
        4_294_967_296, 4_248_701_965, 4_202_935_003, 4_157_661_043, 4_112_874_773, 4_068_570_940, 4_024_744_348,
        3_981_389_855, 3_938_502_376, 3_896_076_880, 3_854_108_391, 3_812_591_987, 3_771_522_796, 3_730_896_002,
        3_690_706_840, 3_650_950_594, 3_611_622_603, 3_572_718_252, 3_534_232_978, 3_496_162_267, 3_458_501_653,
        3_421_246_719, 3_384_393_094, 3_347_936_457, 3_311_872_529, 3_276_197_082, 3_240_905_930, 3_205_994_934,
        3_171_459_999, 3_137_297_074, 3_103_502_151, 3_070_071_267, 3_037_000_500, 3_004_285_971, 2_971_923_842,
        2_939_910_317, 2_908_241_642, 2_876_914_102, 2_845_924_021, 2_815_267_765, 2_784_941_738, 2_754_942_382,
        2_725_266_179, 2_695_909_648, 2_666_869_345, 2_638_141_863, 2_609_723_834, 2_581_611_923, 2_553_802_834,
        2_526_293_303, 2_499_080_105, 2_472_160_047, 2_445_529_972, 2_419_186_755, 2_393_127_307, 2_367_348_571,
        2_341_847_524, 2_316_621_173, 2_291_666_561, 2_266_980_759, 2_242_560_872, 2_218_404_036, 2_194_507_417,
        2_170_868_212, 2_147_483_648,
    ]

    /// 2^(−elapsed / halfLife) in Q32 (1 << 32 is 1): whole half-lives by shifting, the rest
    /// from the table with linear interpolation (relative error under 2 × 10^−5). Inlined, so
    /// the divisions by the model's constant half-lives become multiplications.
    @inline(__always)
    static func decay(_ elapsed: Int64, halfLife: Int64) -> UInt64 {
        guard elapsed > 0 else { return one }
        let whole = elapsed / halfLife
        guard whole < 40 else { return 0 }
        // The fraction of a half-life in Q26 (a day's is resolved to 1.3 ms): rest < halfLife
        // ≤ 86,400,000 < 2^27 (the model's longest half-life), so rest << 26 < 2^53.
        let fraction = (UInt64(elapsed % halfLife) << 26) / UInt64(halfLife)
        let index = Int(fraction >> 20), weight = fraction & 0xF_FFFF
        let high = halves[index], low = halves[index + 1]
        // high − low < 2^26 and weight < 2^20: the product fits easily.
        return (high - (((high - low) * weight) >> 20)) >> UInt64(whole)
    }

    /// value × factor / 2^32, for factor ≤ 2^32 (never larger than value).
    @inline(__always)
    static func scale(_ value: UInt64, by factor: UInt64) -> UInt64 {
        let (high, low) = value.multipliedFullWidth(by: factor)
        return high << 32 | low >> 32
    }

    /// value × factor / 2^32 for any factor, saturating at UInt64.max.
    @inline(__always)
    static func multiply(_ value: UInt64, byQ32 factor: UInt64) -> UInt64 {
        let (high, low) = value.multipliedFullWidth(by: factor)
        guard high >> 32 == 0 else { return .max }
        return high << 32 | low >> 32
    }

    /// a × b / c rounded down, saturating at UInt64.max; c > 0. One 128-by-64 division.
    @inline(__always)
    static func mulDiv(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
        let (high, low) = a.multipliedFullWidth(by: b)
        guard high < c else { return .max }
        return c.dividingFullWidth((high, low)).quotient
    }
}

/// A non-negative integer in 32 bits: below 2^27 as itself, above as a 27-bit mantissa
/// (top bit set) shifted left by the top 5 bits (1...31), truncated; saturates at the
/// largest, (2^27 − 1) × 2^31. One encoding per stored value (canonical).
enum Packed {
    /// One millicredit in the sums' unit.
    static let one: UInt64 = 1 << 16
    static let mantissaBits: UInt64 = 27
    static let mantissaMask: UInt32 = (1 << 27) - 1
    static let largest: UInt32 = .max

    static func pack(_ value: UInt64) -> UInt32 {
        guard value >= 1 << mantissaBits else { return UInt32(value) }
        let shift = UInt64(64 - value.leadingZeroBitCount) - mantissaBits
        guard shift <= 31 else { return largest }
        return UInt32(shift << mantissaBits) | UInt32(value >> shift)
    }

    static func unpack(_ packed: UInt32) -> UInt64 {
        UInt64(packed & mantissaMask) << UInt64(packed >> UInt32(mantissaBits))
    }

    /// With a shift, the mantissa's top bit is set (otherwise a smaller shift would hold it).
    static func isCanonical(_ packed: UInt32) -> Bool {
        packed >> UInt32(mantissaBits) == 0 || packed & (1 << 26) != 0
    }
}

extension UInt64 {
    fileprivate func addingSaturating(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }

    fileprivate func multipliedSaturating(by other: UInt64) -> UInt64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? .max : product
    }
}
