@_spi(Plumbing) import CreditCore

/// The bounds of a statement's interval as text: RFC 3339 timestamps and milliseconds since
/// 1970 in, RFC 3339 (UTC, milliseconds) out. Without Foundation: the engine has none.
extension Statement {
    /// The latest time a log record may carry (the end of year 9999, docs/formats.md).
    public static let timeMax = Timestamp(millisSinceEpoch: 253_402_300_799_999)

    /// Parses an interval bound: milliseconds since 1970 (`1765152000000`), an RFC 3339
    /// date-time (`2026-12-01T00:00:00Z`, `2026-12-01T01:00:00.250+01:00`; `t`, `z` and a space
    /// for `T` accepted as the RFC allows) or an RFC 3339 full-date (`2026-12-01`: its
    /// midnight UTC). Anything else — a leap second, a fraction finer than a millisecond, a
    /// day the month does not have, a time before 1970 or after 9999 — is an
    /// `invalidTime` error naming what is wrong.
    public static func parseTime(_ text: String) throws(StatementError) -> Timestamp {
        func refuse(_ reason: String) -> StatementError { .invalidTime(text: String(text.prefix(64)), reason: reason) }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw refuse("it is empty") }
        if bytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard bytes.count <= 15, let millis = Int64(text), millis <= timeMax.millisSinceEpoch else {
                throw refuse("milliseconds since 1970 must be at most \(timeMax.millisSinceEpoch)")
            }
            return Timestamp(millisSinceEpoch: millis)
        }
        var reader = TextCursor(bytes)
        guard let year = reader.digits(4), reader.take("-"), let month = reader.digits(2), reader.take("-"),
              let day = reader.digits(2) else {
            throw refuse("expected milliseconds since 1970 or an RFC 3339 time such as 2026-12-01T00:00:00Z")
        }
        guard (1 ... 12).contains(month) else { throw refuse("month \(month) is not 1...12") }
        guard year >= 1970 else { throw refuse("times before 1970 are not supported") }
        guard (1 ... CalendarMonths.daysIn(year: year, month: month)).contains(day) else {
            throw refuse("day \(day) is not in \(year)-\(month < 10 ? "0" : "")\(month)")
        }
        var millis = CalendarMonths.days(fromYear: year, month: month, day: day) * CalendarMonths.millisPerDay
        if reader.atEnd { return try checked(millis, refuse) }
        guard reader.take("T") || reader.take("t") || reader.take(" ") else { throw refuse("expected T after the date") }
        guard let hour = reader.digits(2), reader.take(":"), let minute = reader.digits(2), reader.take(":"),
              let second = reader.digits(2) else {
            throw refuse("expected a time of day hh:mm:ss after the date")
        }
        guard hour <= 23, minute <= 59 else { throw refuse("\(hour):\(minute) is not a time of day") }
        guard second <= 59 else { throw refuse("leap seconds (second 60) cannot be represented") }
        millis += ((hour * 60 + minute) * 60 + second) * 1_000
        if reader.take(".") {
            var digits = 0
            var fraction: Int64 = 0
            while let digit = reader.digit() {
                digits += 1
                if digits <= 3 { fraction = fraction * 10 + digit } else if digit != 0 {
                    throw refuse("a fraction of a second finer than a millisecond cannot be represented")
                }
            }
            guard digits > 0 else { throw refuse("expected digits after the decimal point") }
            for _ in Swift.min(digits, 3) ..< 3 { fraction *= 10 }
            millis += fraction
        }
        if reader.take("Z") || reader.take("z") {
        } else if let sign = reader.sign() {
            guard let hours = reader.digits(2), reader.take(":"), let minutes = reader.digits(2), hours <= 23, minutes <= 59 else {
                throw refuse("expected a UTC offset +hh:mm or -hh:mm")
            }
            millis -= sign * (hours * 60 + minutes) * 60_000
        } else {
            throw refuse("expected Z or a UTC offset (+hh:mm) after the time")
        }
        guard reader.atEnd else { throw refuse("unexpected text after the time") }
        return try checked(millis, refuse)
    }

    private static func checked(_ millis: Int64, _ refuse: (String) -> StatementError) throws(StatementError) -> Timestamp {
        guard millis >= 0, millis <= timeMax.millisSinceEpoch else { throw refuse("it is before 1970 or after 9999") }
        return Timestamp(millisSinceEpoch: millis)
    }

    /// `time` as RFC 3339 in UTC with milliseconds (`2026-12-01T00:00:00.000Z`).
    public static func formatTime(_ time: Timestamp) -> String {
        let millis = time.millisSinceEpoch
        let days = millis >= 0 ? millis / CalendarMonths.millisPerDay : (millis - CalendarMonths.millisPerDay + 1) / CalendarMonths.millisPerDay
        let (year, month, day) = CalendarMonths.civil(fromDays: days)
        var rest = millis - days * CalendarMonths.millisPerDay
        let hour = rest / 3_600_000
        rest %= 3_600_000
        let minute = rest / 60_000
        rest %= 60_000
        func pad(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: Swift.max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(rest / 1_000, 2))."
            + "\(pad(rest % 1_000, 3))Z"
    }
}

/// A cursor over ASCII text, for `Statement.parseTime`.
private struct TextCursor {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { position == bytes.count }

    mutating func take(_ character: Unicode.Scalar) -> Bool {
        guard position < bytes.count, bytes[position] == UInt8(ascii: character) else { return false }
        position += 1
        return true
    }

    mutating func digit() -> Int64? {
        guard position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") else { return nil }
        position += 1
        return Int64(bytes[position - 1] - UInt8(ascii: "0"))
    }

    /// Exactly `count` digits.
    mutating func digits(_ count: Int) -> Int64? {
        var value: Int64 = 0
        for _ in 0 ..< count {
            guard let digit = digit() else { return nil }
            value = value * 10 + digit
        }
        return value
    }

    /// +1 for "+", -1 for "-".
    mutating func sign() -> Int64? {
        if take("+") { return 1 }
        if take("-") { return -1 }
        return nil
    }
}
