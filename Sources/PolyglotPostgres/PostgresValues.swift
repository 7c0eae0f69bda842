import Foundation
import Polyglot
import PostgresNIO

/// Conversions between JSON values and PostgreSQL cells.
enum PGValue {
    /// A cell as JSON: numbers, strings, booleans, JSON; timestamps as ISO 8601 text; bytea as base64.
    static func json(_ cell: PostgresCell) throws -> JSON {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .bool: return .bool(try cell.decode(Bool.self))
        case .int2, .int4, .int8, .oid: return .number(Double(try cell.decode(Int64.self)))
        case .float4, .float8: return .number(try cell.decode(Double.self))
        case .numeric: return .number(NSDecimalNumber(decimal: try cell.decode(Decimal.self)).doubleValue)
        case .json, .jsonb: return try JSON(parsing: Data(try cell.decode(String.self).utf8))
        case .timestamptz, .timestamp, .date: return .string(Timestamp.text(try cell.decode(Date.self)))
        case .bytea: return .string(try cell.decode(Data.self).base64EncodedString())
        case .text, .varchar, .bpchar, .name, .uuid: return .string(try cell.decode(String.self))
        default:
            if let s = try? cell.decode(String.self) { return .string(s) }
            throw PolyglotError(.invalidArgument, "Column '\(cell.columnName)' has a type (oid \(cell.dataType.rawValue)) Polyglot cannot read as JSON.",
                                fix: "Cast it in the SQL, e.g. \(cell.columnName)::text.")
        }
    }

    static func row(_ r: PostgresRow) throws -> Row {
        var out: Row = [:]
        for cell in r { out[cell.columnName] = try json(cell) }
        return out
    }

    /// Binds a JSON value with the PostgreSQL type that fits it (for raw SQL parameters).
    static func bind(_ v: JSON, into q: inout PGQuery) -> String {
        switch v {
        case .null: q.bindNull()
        case .bool(let b): q.bind(b)
        case .number(let d): d.rounded() == d && abs(d) < 9e15 ? q.bind(Int64(d)) : q.bind(d)
        case .string(let s): q.bind(s)
        case .array, .object: q.bindJSON(v)
        }
    }

    /// Binds a value for a typed column, or throws when it does not fit.
    static func bind(_ v: JSON, as type: FieldType, column: String, dataset: String, into q: inout PGQuery) throws -> String {
        switch (type, v) {
        case (_, .null): return q.bindNull()
        case (.string, .string(let s)): return q.bind(s)
        // Only values an int8 holds (Int64(d) traps beyond them; 2^63 itself is out of range).
        case (.integer, .number(let d)) where d.rounded() == d && d >= -9_223_372_036_854_775_808 && d < 9_223_372_036_854_775_808: return q.bind(Int64(d))
        case (.number, .number(let d)): return q.bind(d)
        case (.boolean, .bool(let b)): return q.bind(b)
        // Seconds or ISO text within `FieldType.epochSeconds` (PostgresNIO's Date encoding traps far beyond it).
        case (.timestamp, .number), (.timestamp, .string):
            guard let seconds = Timestamp.seconds(v) else { break }
            return q.bind(Date(timeIntervalSince1970: seconds))
        case (.json, _): return q.bindJSON(v)
        default: break
        }
        throw PolyglotError(.invalidArgument, "Column '\(column)' of '\(dataset)' is \(type.rawValue), but the row gives \(v.text).",
                            fix: "Pass a \(type.rawValue) value\(type == .timestamp ? " (epoch seconds or ISO 8601 text)" : "").")
    }
}

/// Raw SQL takes `?` placeholders like SQLite (or PostgreSQL's own `$1`).
enum PGPlaceholders {
    /// Rewrites `?` placeholders to `$1, $2, …`, leaving quoted strings, identifiers and comments alone.
    /// Text that already uses `$n` is returned as is, so jsonb's `?` operators stay usable there.
    static func number(_ sql: String) -> String {
        if sql.range(of: #"\$[0-9]"#, options: .regularExpression) != nil { return sql }
        var out = ""
        var n = 0
        var quote: Character?
        var i = sql.startIndex
        while i < sql.endIndex {
            let c = sql[i]
            if let q = quote {
                out.append(c)
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                quote = c; out.append(c)
            } else if c == "-", sql.index(after: i) < sql.endIndex, sql[sql.index(after: i)] == "-" {
                let end = sql[i...].firstIndex(of: "\n") ?? sql.endIndex
                out += sql[i..<end]; i = end; continue
            } else if c == "?" {
                n += 1; out += "$\(n)"
            } else {
                out.append(c)
            }
            i = sql.index(after: i)
        }
        return out
    }
}
