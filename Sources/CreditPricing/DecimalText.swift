/// Exact decimal text to and from scaled integers (nano-dollars, millicredits, cents), with
/// no floating point: a price is what its text says, digit for digit, or it is an error.
enum DecimalProblem: Error, Equatable, Sendable {
    case malformed
    case tooManyDecimals
    case notPositive
    case tooLarge
}

/// Parses an unsigned decimal ("0.00075", "15", "1.5") into a whole number of
/// 10^-`decimals` units. A sign is only recognised to report a negative or zero value as
/// `notPositive` rather than as malformed; more than `decimals` decimals is
/// `tooManyDecimals` even when the extra digits are zeros (nothing is rounded silently).
func parsePositiveDecimal(_ text: Substring, decimals: Int, max: Int64) -> Result<Int64, DecimalProblem> {
    precondition(decimals >= 0 && decimals <= 18 && max > 0)
    var body = text
    var negative = false
    if body.first == "-" { negative = true; body = body.dropFirst() } else if body.first == "+" { body = body.dropFirst() }
    let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit) else { return .failure(.malformed) }
    let fraction = parts.count == 2 ? parts[1] : ""
    guard fraction.allSatisfy(\.isASCIIDigit), !(parts.count == 2 && fraction.isEmpty) else { return .failure(.malformed) }
    guard fraction.count <= decimals else { return .failure(.tooManyDecimals) }
    let digits = whole + fraction + String(repeating: "0", count: decimals - fraction.count)
    var value: Int64 = 0
    var overflowed = false
    for digit in digits {
        let (scaled, overflowScaling) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflowAdding) = scaled.addingReportingOverflow(Int64(digit.asciiValue! - UInt8(ascii: "0")))
        if overflowScaling || overflowAdding { overflowed = true; break }
        value = sum
    }
    // A negative or zero price is reported as such even when it is also huge.
    if negative || (!overflowed && value == 0) { return .failure(.notPositive) }
    if overflowed || value > max { return .failure(.tooLarge) }
    return .success(value)
}

/// Decimal text for the amounts pricing deals in, without Foundation's formatters.
public enum DecimalText {
    /// Nano-dollars as an exact decimal of dollars with at least two decimals:
    /// 750,000 → "0.00075", 200,000,000 → "0.20".
    public static func usd(nanos: Int64) -> String { format(nanos, decimals: 9, decimalsMin: 2) }

    /// Cents as dollars with two decimals: 8,500 → "85.00".
    public static func usd(cents: Int64) -> String { format(cents, decimals: 2, decimalsMin: 2) }

    /// Millicredits as the shortest exact decimal of credits, without a unit: 1,500 → "1.5".
    public static func credits(_ amount: Millicredits) -> String { format(amount.rawValue, decimals: 3, decimalsMin: 0) }

    /// `value` / 10^`decimals` exactly, trailing zeros dropped down to `decimalsMin` decimals.
    static func format(_ value: Int64, decimals: Int, decimalsMin: Int) -> String {
        var scale: UInt64 = 1
        for _ in 0 ..< decimals { scale *= 10 }
        let magnitude = value.magnitude
        var fraction = String(magnitude % scale)
        fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
        while fraction.count > decimalsMin && fraction.last == "0" { fraction.removeLast() }
        let whole = (value < 0 ? "-" : "") + String(magnitude / scale)
        return fraction.isEmpty ? whole : whole + "." + fraction
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
