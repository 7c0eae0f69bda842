import Foundation

/// What a `timestamp` field or column holds, the same on every engine: seconds since 1970 within
/// `FieldType.epochSeconds`, written as a JSON number or as ISO 8601 text: a date and time with its zone
/// (`2026-11-30T12:00:00Z`, `2026-11-30T12:00:00.250+02:00`) or a date alone (`2026-11-30`, its midnight UTC). Text
/// must be exactly that: a time without a zone, a time out of range (`25:00`), a day the month does not have
/// (`02-30`) or anything after it is refused, never read as some nearby time. Dates are proleptic Gregorian, as in
/// PostgreSQL and SQLite. Table columns store the time and read it back as seconds since 1970 (as change capture's
/// payloads give it), and table filters compare times whichever form each side was written in.
public enum Timestamp {
    /// The time a JSON value gives, or nil when it is neither a number in range nor ISO 8601 text.
    public static func seconds(_ value: JSON) -> Double? {
        switch value {
        case .number(let d): return FieldType.epochSeconds.contains(d) ? d : nil
        case .string(let s): return parse(s)?.timeIntervalSince1970
        default: return nil
        }
    }

    /// ISO 8601 text as a date, or nil (also for dates outside `FieldType.epochSeconds`).
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        var i = 0
        /// `n` digits at `i` as a number, moving past them.
        func number(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[k]) else { return nil }
                v = v * 10 + Int(b[k] - UInt8(ascii: "0"))
            }
            i += n
            return v
        }
        func take(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue else { return false }
            i += 1
            return true
        }
        guard let year = number(4), take("-"), let month = number(2), take("-"), let day = number(2),
              (1...12).contains(month), (1...daysIn(month, of: year)).contains(day) else { return nil }
        var seconds = Double(daysSinceEpoch(year: year, month: month, day: day) * 86_400)
        if i < b.count {
            guard take("T"), let h = number(2), take(":"), let mi = number(2), take(":"), let s = number(2),
                  h < 24, mi < 60, s < 60 else { return nil }
            var fraction = 0.0
            if take(".") {
                let start = i
                while i < b.count, i - start < 9, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) { i += 1 }
                guard i > start, let f = Double("0." + String(decoding: b[start..<i], as: UTF8.self)) else { return nil }
                fraction = f
            }
            var offset = 0
            if !take("Z") {
                guard i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") else { return nil }
                let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let oh = number(2) else { return nil }
                _ = take(":")
                guard let om = number(2), oh < 24, om < 60 else { return nil }
                offset = sign * (oh * 3600 + om * 60)
            }
            seconds += Double(h * 3600 + mi * 60 + s - offset) + fraction
        }
        guard i == b.count, FieldType.epochSeconds.contains(seconds) else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }

    /// ISO 8601 text of a time: UTC, milliseconds, e.g. `2026-11-30T12:00:00.000Z` (proleptic Gregorian).
    public static func text(_ date: Date) -> String { text(seconds: date.timeIntervalSince1970) }

    public static func text(seconds: Double) -> String {
        let millis = (seconds * 1000).rounded()
        guard millis.isFinite, millis.magnitude < 9e15 else { return String(seconds) }
        let total = Int64(millis)
        let days = floorDiv(total, 86_400_000)
        let ms = total - days * 86_400_000
        let (y, mo, d) = civil(days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let digits = String(y.magnitude)
        let year = (y < 0 ? "-" : "") + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        let frac = String(ms % 1000 + 1000).dropFirst()
        return "\(year)-\(two(mo))-\(two(d))T\(two(ms / 3_600_000)):\(two(ms / 60_000 % 60)):\(two(ms / 1000 % 60)).\(frac)Z"
    }

    // MARK: Proleptic Gregorian day arithmetic (days since 1970-01-01 to and from year, month, day)

    private static func isLeap(_ y: Int) -> Bool { y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) }

    private static func daysIn(_ month: Int, of year: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Days from 1970-01-01 to the date: whole 400-year eras of 146,097 days, then the day within its era, counted
    /// from March 1 so that the leap day falls at the end of the year.
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The date of a day counted from 1970-01-01: the inverse of ``daysSinceEpoch(year:month:day:)``.
    static func civil(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
