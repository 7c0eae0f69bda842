import Foundation
import Polyglot

/// Translates a ``Filter`` to a SQLite WHERE clause. Values are always bound; field paths are validated
/// (letters, digits, `_`, `-`) before they are written into the SQL as JSON-path literals, which lets
/// SQLite match the expression indexes created for declared fields.
struct SQLFilter {
    enum Target {
        /// JSON stored in a column (documents' `body`, vectors' `metadata`), possibly behind a table alias.
        case json(column: String)
        /// Real table columns; `timestamps` hold seconds since 1970, so a time given as ISO text is compared as one.
        case columns(timestamps: Set<String>)
    }

    let target: Target
    var binds: [SQLValue] = []

    init(_ target: Target) { self.target = target }

    static func jsonPath(_ path: FieldPath) -> String {
        "$" + path.components.map { c in c.allSatisfy(\.isNumber) ? "[\(c)]" : ".\"\(c)\"" }.joined()
    }

    static func quoteIdentifier(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// The SQL expression reading a field, as used in indexes and ORDER BY.
    func expression(_ path: FieldPath) -> String {
        switch target {
        case .json(let column): "json_extract(\(column), '\(SQLFilter.jsonPath(path))')"
        case .columns: SQLFilter.quoteIdentifier(path.description)
        }
    }

    func typeExpression(_ path: FieldPath) -> String {
        switch target {
        case .json(let column): "IFNULL(json_type(\(column), '\(SQLFilter.jsonPath(path))'), 'null')"
        case .columns: "CASE WHEN \(SQLFilter.quoteIdentifier(path.description)) IS NULL THEN 'null' ELSE 'value' END"
        }
    }

    mutating func translate(_ filter: Filter) throws -> String {
        try filter.validate()
        return try clause(filter)
    }

    private mutating func bind(_ v: JSON) -> String {
        binds.append(SQLValue(v))
        return "?"
    }

    private func typeGuard(_ path: FieldPath, _ value: JSON) -> String? {
        guard case .json = target else { return nil }
        let t = typeExpression(path)
        switch value {
        case .number: return "\(t) IN ('integer','real')"
        case .string: return "\(t) = 'text'"
        case .bool: return "\(t) IN ('true','false')"
        default: return nil
        }
    }

    private mutating func equal(_ path: FieldPath, _ value: JSON) -> String {
        if value == .null { return "\(typeExpression(path)) = 'null'" }
        return comparison(path, .equal, value)
    }

    private mutating func comparison(_ path: FieldPath, _ op: Comparison, _ value: JSON) -> String {
        var value = value
        if case .columns(let timestamps) = target, timestamps.contains(path.description) {
            // Filters are checked before translation, so the operand is a time; a stray one matches nothing.
            guard let seconds = Timestamp.seconds(value) else { return "0" }
            value = .number(seconds)
        }
        let sqlOp = op.sqlOperator
        let test = "\(expression(path)) \(sqlOp) \(bind(value))"
        if let guardSQL = typeGuard(path, value) { return "(\(guardSQL) AND \(test))" }
        return "IFNULL(\(test), 0)"
    }

    private mutating func clause(_ f: Filter) throws -> String {
        switch f {
        case .all: return "1"
        case .compare(let p, let op, let v):
            if v == .null {
                return op == .equal ? "\(typeExpression(p)) = 'null'" : "\(typeExpression(p)) != 'null'"
            }
            if op == .notEqual { return "NOT \(comparison(p, .equal, v))" }
            return comparison(p, op, v)
        case .isIn(let p, let vs):
            if vs.isEmpty { return "0" }
            var parts: [String] = []
            for v in vs { parts.append(equal(p, v)) }
            return "(" + parts.joined(separator: " OR ") + ")"
        case .exists(let p):
            return "\(typeExpression(p)) != 'null'"
        case .hasPrefix(let p, let prefix):
            let guardSQL = typeGuard(p, .string(prefix)).map { "\($0) AND " } ?? ""
            let b1 = bind(.string(prefix))
            let b2 = bind(.string(prefix))
            return "(\(guardSQL)IFNULL(substr(\(expression(p)), 1, length(\(b1))) = \(b2), 0))"
        case .and(let fs):
            if fs.isEmpty { return "1" }
            var parts: [String] = []
            for f in fs { parts.append(try clause(f)) }
            return "(" + parts.joined(separator: " AND ") + ")"
        case .or(let fs):
            if fs.isEmpty { return "0" }
            var parts: [String] = []
            for f in fs { parts.append(try clause(f)) }
            return "(" + parts.joined(separator: " OR ") + ")"
        case .not(let inner):
            return "NOT \(try clause(inner))"
        }
    }

    func orderBy(_ sort: [SortKey], tiebreak: String) -> String {
        let keys = sort.map { "\(expression($0.path)) \($0.descending ? "DESC" : "ASC")" } + [tiebreak]
        return " ORDER BY " + keys.joined(separator: ", ")
    }
}

/// Translates web-search syntax (words, "phrases", OR, -excluded) to an FTS5 MATCH expression,
/// quoting every term so user input cannot inject FTS5 operators.
enum FTSQuery {
    static func translate(_ text: String) throws -> String {
        var positives: [String] = []
        var negatives: [String] = []
        var pendingOr = false
        var i = text.startIndex
        func quote(_ s: Substring) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "") + "\"" }
        while i < text.endIndex {
            let c = text[i]
            if c.isWhitespace { i = text.index(after: i); continue }
            var negate = false
            var j = i
            if c == "-" { negate = true; j = text.index(after: i) }
            guard j < text.endIndex else { break }
            let term: String
            if text[j] == "\"" {
                let start = text.index(after: j)
                let end = text[start...].firstIndex(of: "\"") ?? text.endIndex
                let words = HashingEmbedder.tokens(String(text[start..<end]))
                term = words.isEmpty ? "" : quote(Substring(words.joined(separator: " ")))
                i = end < text.endIndex ? text.index(after: end) : end
            } else {
                let end = text[j...].firstIndex(where: \.isWhitespace) ?? text.endIndex
                let word = text[j..<end]
                i = end
                if word == "OR" && !negate { pendingOr = true; continue }
                let words = HashingEmbedder.tokens(String(word))
                term = words.isEmpty ? "" : (words.count == 1 ? quote(words[0]) : quote(Substring(words.joined(separator: " "))))
            }
            if term.isEmpty { continue }
            if negate { negatives.append(term) }
            else if pendingOr, let last = positives.popLast() { positives.append("(\(last) OR \(term))"); pendingOr = false }
            else { positives.append(term) }
        }
        guard !positives.isEmpty else {
            throw PolyglotError(.invalidArgument, "The search text '\(text)' has no words to look for.",
                                fix: "Include at least one word that is not excluded with '-'.")
        }
        var q = positives.joined(separator: " AND ")
        for n in negatives { q = "(\(q)) NOT \(n)" }
        return q
    }
}
