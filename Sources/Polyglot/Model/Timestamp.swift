import Foundation

/// What a `timestamp` field or column holds, the same on every engine: seconds since 1970 within
/// `FieldType.epochSeconds`, written as a JSON number or as ISO 8601 text (`2026-11-30T12:00:00Z`,
/// `2026-11-30T12:00:00.250+02:00`, or a date alone, `2026-11-30`, meaning its midnight UTC). Table columns store the
/// time and read it back as seconds since 1970 (as change capture's payloads give it); filters compare times,
/// whichever form each side was written in. Cells of raw SQL results read as ISO 8601 text (`text(_:)`).
public enum Timestamp {
    private static let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let whole = Date.ISO8601FormatStyle()
    private static let dateOnly = Date.ISO8601FormatStyle().year().month().day()

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
        let t = text.trimmingCharacters(in: .whitespaces)
        guard let first = t.first, first.isNumber || first == "-" || first == "+" else { return nil }
        let date = (try? Date(t, strategy: fractional)) ?? (try? Date(t, strategy: whole)) ?? (try? Date(t, strategy: dateOnly))
        guard let date, FieldType.epochSeconds.contains(date.timeIntervalSince1970) else { return nil }
        return date
    }

    /// ISO 8601 text of a time: UTC, milliseconds, e.g. `2026-11-30T12:00:00.000Z`.
    public static func text(_ date: Date) -> String { date.formatted(fractional) }

    public static func text(seconds: Double) -> String { text(Date(timeIntervalSince1970: seconds)) }
}
