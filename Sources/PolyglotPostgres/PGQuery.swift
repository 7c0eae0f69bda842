import Foundation
import Polyglot
import PostgresNIO

/// SQL text with `$n` placeholders and the values bound to them. Values are always bound, never pasted
/// into the text; identifiers are quoted with ``PGQuery/ident(_:)``.
struct PGQuery {
    var sql = ""
    var binds = PostgresBindings()
    private var count = 0
    /// The first value that could not be encoded; ``query`` throws it, so the statement is never sent.
    private var encodingError: (placeholder: Int, error: any Error)?

    init(_ sql: String = "") { self.sql = sql }

    /// Binds `value` and returns its placeholder. A value that cannot be encoded is reported when the query is
    /// taken (``query``), not silently dropped (which left the server to complain about a parameter count).
    mutating func bind(_ value: some PostgresEncodable) -> String { encode(value) }

    private mutating func encode(_ value: some PostgresEncodable) -> String {
        count += 1
        do {
            try binds.append(value)
        } catch {
            if encodingError == nil { encodingError = (count, error) }
            binds.appendNull()
        }
        return "$\(count)"
    }

    /// The dates PostgresNIO can encode without trapping (its microseconds since 2000 must fit an Int64) that a
    /// timestamptz holds (4713 BC to 294276 AD), in seconds since 1970.
    static let dateRange: ClosedRange<Double> = -210_866_803_200 ... 9_214_646_400_000

    /// Binds a date, or records an encoding error for one outside ``dateRange`` (PostgresNIO would trap on it).
    mutating func bind(_ value: Date) -> String {
        guard Self.dateRange.contains(value.timeIntervalSince1970) else { return refuse(value) }
        return encode(value)
    }

    /// Binds dates (a time series' samples) as an array, checked like one date.
    mutating func bind(_ values: [Date]) -> String {
        if let bad = values.first(where: { !Self.dateRange.contains($0.timeIntervalSince1970) }) { return refuse(bad) }
        return encode(values)
    }

    private mutating func refuse(_ date: Date) -> String {
        count += 1
        if encodingError == nil {
            encodingError = (count, PolyglotError(.invalidArgument, "the time \(date.timeIntervalSince1970) s since 1970 is outside PostgreSQL's timestamp range (4713 BC to 294276 AD)"))
        }
        binds.appendNull()
        return "$\(count)"
    }

    mutating func bindNull() -> String {
        binds.appendNull()
        count += 1
        return "$\(count)"
    }

    /// Binds a JSON value as `jsonb`.
    mutating func bindJSON(_ value: JSON) -> String { bind(value.text) + "::jsonb" }

    var query: PostgresQuery {
        get throws {
            if let (placeholder, error) = encodingError {
                throw PolyglotError(.invalidArgument, "A value for PostgreSQL could not be encoded (parameter $\(placeholder)): \(error). Nothing was sent.",
                                    fix: "Pass a value PostgreSQL can store (finite numbers, valid UTF-8 text, dates within its timestamp range).")
            }
            return PostgresQuery(unsafeSQL: sql, binds: binds)
        }
    }

    static func ident(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
    /// A string literal, for the few places SQL needs one (DDL); runtime values are always bound.
    static func literal(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
}

/// Translates a ``Filter`` to a PostgreSQL WHERE clause with the same meaning as ``Filter/matches(_:)``:
/// comparisons only match values of the same JSON type, and a missing field matches only `!=`, `== null` and `not`.
///
/// On documents it uses `jsonb` operators (`->` paths written as validated literals, so expression indexes on
/// declared fields and the GIN index on `@>` apply); on tables it compares typed columns.
struct PGFilter {
    enum Target {
        /// A jsonb column (documents' `body`, vectors' `metadata`), possibly behind an alias.
        case json(column: String)
        /// Table columns with their declared types.
        case columns([String: FieldType])
    }
    let target: Target

    static func path(_ column: String, _ p: FieldPath, text: Bool = false) -> String {
        var s = column
        for (i, c) in p.components.enumerated() {
            let op = (text && i == p.components.count - 1) ? "->>" : "->"
            s += c.allSatisfy(\.isNumber) ? "\(op)\(c)" : "\(op)\(PGQuery.literal(c))"
        }
        return s
    }

    /// The expression reading a field, as used in expression indexes and ORDER BY.
    func expression(_ p: FieldPath) -> String {
        switch target {
        case .json(let column): "(" + PGFilter.path(column, p) + ")"
        case .columns: PGQuery.ident(p.description)
        }
    }

    func translate(_ filter: Filter, into q: inout PGQuery) throws -> String {
        try filter.validate()
        if case .columns(let types) = target {
            for p in filter.paths where types[p.description] == nil {
                throw PolyglotError(.invalidFilter, "The filter names '\(p)', which is not a column (columns: \(types.keys.sorted().joined(separator: ", "))).",
                                    fix: "Filter on a declared column, or add the column to the dataset's fields.")
            }
        }
        return clause(filter, &q)
    }

    private func jsonType(_ value: JSON) -> String? {
        switch value {
        case .number: "number"
        case .string: "string"
        case .bool: "boolean"
        default: nil
        }
    }

    /// True when the field is missing or JSON null.
    private func isNull(_ p: FieldPath) -> String {
        switch target {
        case .json: "(\(expression(p)) IS NULL OR jsonb_typeof(\(expression(p))) = 'null')"
        case .columns: "\(expression(p)) IS NULL"
        }
    }

    private func comparison(_ p: FieldPath, _ op: Comparison, _ value: JSON, _ q: inout PGQuery) -> String {
        let sqlOp = op.sqlOperator
        switch target {
        case .json(let column):
            guard let type = jsonType(value) else { return "FALSE" }
            // Equality on a plain path uses containment, which the GIN index serves.
            if sqlOp == "=", !p.components.contains(where: { $0.allSatisfy(\.isNumber) }) {
                var nested = value
                for c in p.components.reversed() { nested = .object([c: nested]) }
                return "\(column) @> \(q.bindJSON(nested))"
            }
            // jsonb orders across types, so the type test keeps a string from comparing below a number.
            return "(jsonb_typeof(\(expression(p))) = '\(type)' AND \(expression(p)) \(sqlOp) \(q.bindJSON(value)))"
        case .columns(let types):
            let column = expression(p)
            switch (types[p.description] ?? .json, value) {
            case (.string, .string(let s)): return "\(column) \(sqlOp) \(q.bind(s))"
            case (.integer, .number(let d)), (.number, .number(let d)): return "\(column) \(sqlOp) \(q.bind(d))"
            case (.boolean, .bool(let b)): return "\(column) \(sqlOp) \(q.bind(b))"
            // A time as a number or ISO text, compared as a timestamptz (a float8 operand did not compare at all).
            case (.timestamp, .number), (.timestamp, .string):
                guard let seconds = Timestamp.seconds(value) else { return "FALSE" }
                return "\(column) \(sqlOp) \(q.bind(Date(timeIntervalSince1970: seconds)))"
            case (.json, _): return "\(column) \(sqlOp) \(q.bindJSON(value))"
            default: return "FALSE"
            }
        }
    }

    private func clause(_ f: Filter, _ q: inout PGQuery) -> String {
        switch f {
        case .all: return "TRUE"
        case .compare(let p, let op, let v):
            if v == .null { return op == .equal ? isNull(p) : "NOT \(isNull(p))" }
            if op == .notEqual { return "NOT COALESCE(\(comparison(p, .equal, v, &q)), FALSE)" }
            return comparison(p, op, v, &q)
        case .isIn(let p, let vs):
            if vs.isEmpty { return "FALSE" }
            return "(" + vs.map { v in v == .null ? isNull(p) : comparison(p, .equal, v, &q) }.joined(separator: " OR ") + ")"
        case .exists(let p):
            return "NOT \(isNull(p))"
        case .hasPrefix(let p, let prefix):
            switch target {
            case .json(let column):
                return "(jsonb_typeof(\(expression(p))) = 'string' AND starts_with(\(PGFilter.path(column, p, text: true)), \(q.bind(prefix))))"
            case .columns(let types):
                guard types[p.description] == .string else { return "FALSE" }
                return "starts_with(\(expression(p)), \(q.bind(prefix)))"
            }
        case .and(let fs):
            if fs.isEmpty { return "TRUE" }
            return "(" + fs.map { clause($0, &q) }.joined(separator: " AND ") + ")"
        case .or(let fs):
            if fs.isEmpty { return "FALSE" }
            return "(" + fs.map { clause($0, &q) }.joined(separator: " OR ") + ")"
        case .not(let inner):
            // SQL's NULL would make NOT unknown; the reference semantics are two-valued.
            return "NOT COALESCE(\(clause(inner, &q)), FALSE)"
        }
    }

    func orderBy(_ sort: [SortKey], tiebreak: String) -> String {
        let keys = sort.map { "\(expression($0.path)) \($0.descending ? "DESC NULLS LAST" : "ASC NULLS FIRST")" } + [tiebreak]
        return " ORDER BY " + keys.joined(separator: ", ")
    }
}

extension Filter {
    /// Every field path the filter names.
    var paths: [FieldPath] {
        switch self {
        case .all: []
        case .compare(let p, _, _), .isIn(let p, _), .exists(let p), .hasPrefix(let p, _): [p]
        case .and(let fs), .or(let fs): fs.flatMap(\.paths)
        case .not(let f): f.paths
        }
    }
}
