/// An amount of credits, stored as a whole number of millicredits (1 credit = 1,000 mc).
///
/// 1 credit is worth $0.01, so 1 mc is $0.00001. Arithmetic never wraps: the checked
/// operations throw `MoneyError.overflow`, and the ledger turns that into a rejected command.
public struct Millicredits: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64

    public static let perCredit: Int64 = 1_000
    public static let zero = Millicredits(0)

    @inlinable
    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    /// Whole credits, e.g. `try .credits(500)` = 500,000 mc.
    public static func credits(_ credits: Int64) throws(MoneyError) -> Millicredits {
        let (value, overflow) = credits.multipliedReportingOverflow(by: perCredit)
        if overflow { throw .overflow }
        return Millicredits(value)
    }

    @inlinable
    public static func < (lhs: Millicredits, rhs: Millicredits) -> Bool { lhs.rawValue < rhs.rawValue }

    @inlinable
    public func adding(_ other: Millicredits) throws(MoneyError) -> Millicredits {
        let (value, overflow) = rawValue.addingReportingOverflow(other.rawValue)
        if overflow { throw .overflow }
        return Millicredits(value)
    }

    @inlinable
    public func subtracting(_ other: Millicredits) throws(MoneyError) -> Millicredits {
        let (value, overflow) = rawValue.subtractingReportingOverflow(other.rawValue)
        if overflow { throw .overflow }
        return Millicredits(value)
    }

    /// "12.5 credits", "1 credit", "-0.001 credits": the shortest exact decimal.
    public var description: String {
        let magnitude = rawValue.magnitude
        let whole = magnitude / UInt64(Self.perCredit)
        var fraction = magnitude % UInt64(Self.perCredit)
        var text = (rawValue < 0 ? "-" : "") + String(whole)
        if fraction != 0 {
            var digits = 3
            while fraction % 10 == 0 { fraction /= 10; digits -= 1 }
            let raw = String(fraction)
            text += "." + String(repeating: "0", count: digits - raw.count) + raw
        }
        return text + (rawValue == Self.perCredit ? " credit" : " credits")
    }

    /// Parses "12.5", "12.5 credits", "1 credit", "-3", "0.001". At most three decimals:
    /// a finer amount cannot be represented and is an error, never silently rounded.
    public init(parsing text: String) throws(MoneyError) {
        var body = Substring(text.trimmingSpaces)
        for suffix in [" credits", " credit", "credits", "credit"] where body.hasSuffix(suffix) {
            body = body.dropLast(suffix.count)
            break
        }
        body = Substring(String(body).trimmingSpaces)
        var negative = false
        if body.first == "-" { negative = true; body = body.dropFirst() } else if body.first == "+" { body = body.dropFirst() }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let wholeText = parts.first, !wholeText.isEmpty, wholeText.allSatisfy(\.isASCIIDigit) else {
            throw .malformed(text)
        }
        var fractionText = parts.count == 2 ? parts[1] : ""
        guard fractionText.allSatisfy(\.isASCIIDigit), !(parts.count == 2 && fractionText.isEmpty) else {
            throw .malformed(text)
        }
        guard fractionText.count <= 3 else { throw .tooPrecise(text) }
        while fractionText.count < 3 { fractionText += "0" }
        // Build the magnitude unsigned, so the most negative amount (whose magnitude is one
        // more than the largest positive) parses too.
        guard let whole = UInt64(wholeText), let fraction = UInt64(fractionText) else { throw .overflow }
        let (scaled, overflowScaling) = whole.multipliedReportingOverflow(by: UInt64(Self.perCredit))
        let (magnitude, overflowAdding) = scaled.addingReportingOverflow(fraction)
        guard !overflowScaling, !overflowAdding else { throw .overflow }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw .overflow }
            self.init(Int64(truncatingIfNeeded: 0 &- magnitude))
        } else {
            guard magnitude <= UInt64(Int64.max) else { throw .overflow }
            self.init(Int64(magnitude))
        }
    }
}

public enum MoneyError: Error, Equatable, Sendable, CustomStringConvertible {
    case overflow
    case malformed(String)
    case tooPrecise(String)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .overflow: "amount_overflow"
        case .malformed: "malformed_amount"
        case .tooPrecise: "amount_too_precise"
        }
    }

    public var description: String {
        switch self {
        case .overflow: "amount overflows 64-bit millicredits"
        case .malformed(let text): "'\(text)' is not an amount of credits (expected e.g. '12.5' or '12.5 credits')"
        case .tooPrecise(let text): "'\(text)' has more than three decimals; the smallest unit is 0.001 credit"
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars = scalars.dropFirst() }
        while scalars.last == " " { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
