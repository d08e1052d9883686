/// Calendar months in UTC, for billing cycles and expiries ("12 months after purchase"): the
/// same day of the month and time of day, or the month's last day when it is shorter (31
/// January + 1 month = 28 or 29 February). Always counted from the original date, so a
/// cycle anchored on the 31st comes back to the 31st after a short month. Days from civil
/// dates after Howard Hinnant's algorithm. Pure: the core uses it to place cycle ends.
public enum CalendarMonths {
    public static let millisPerDay: Int64 = 86_400_000

    /// `time` plus `months` calendar months (negative goes back); `.never` stays `.never`.
    public static func adding(_ months: Int, to time: Timestamp) -> Timestamp {
        if time == .never { return .never }
        let millis = time.millisSinceEpoch
        let days = millis >= 0 ? millis / millisPerDay : (millis - millisPerDay + 1) / millisPerDay
        let timeOfDay = millis - days * millisPerDay
        let (year, month, day) = civil(fromDays: days)
        let monthIndex = (year * 12 + (month - 1)) + Int64(months)
        let newYear = monthIndex >= 0 ? monthIndex / 12 : (monthIndex - 11) / 12
        let newMonth = monthIndex - newYear * 12 + 1
        let newDay = min(day, daysIn(year: newYear, month: newMonth))
        return Timestamp(millisSinceEpoch: Self.days(fromYear: newYear, month: newMonth, day: newDay) * millisPerDay + timeOfDay)
    }

    public static func daysIn(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    public static func days(fromYear year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    public static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

extension CalendarMonths {
    /// The month of `time` as one number (year × 12 + month − 1), for counting per calendar month.
    public static func monthNumber(of time: Timestamp) -> Int64 {
        let millis = time.millisSinceEpoch
        let days = millis >= 0 ? millis / millisPerDay : (millis - millisPerDay + 1) / millisPerDay
        let (year, month, _) = civil(fromDays: days)
        return year * 12 + month - 1
    }

    /// The time at `year`-`month`-`day` `hour`:00 UTC (for tests, tools and docs).
    public static func date(_ year: Int64, _ month: Int64, _ day: Int64, hour: Int64 = 0) -> Timestamp {
        Timestamp(millisSinceEpoch: days(fromYear: year, month: month, day: day) * millisPerDay + hour * 3_600_000)
    }
}
