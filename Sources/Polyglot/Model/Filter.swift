/// A dotted path into a record: `"address.city"`, `"tags.0"`.
public struct FieldPath: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var components: [String]

    public init(_ dotted: String) {
        components = dotted.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }
    public init(components: [String]) { self.components = components }
    public init(stringLiteral value: String) { self.init(value) }
    public var description: String { components.joined(separator: ".") }

    /// Checks the path is usable: non-empty components made of letters, digits, `_` and `-`.
    public func validate() throws {
        let ok = !components.isEmpty && components.allSatisfy { c in
            !c.isEmpty && c.unicodeScalars.allSatisfy { FieldNameCharacters.fieldNameScalar($0) }
        }
        if !ok {
            throw PolyglotError(.invalidFilter, "Invalid field path '\(description)'.",
                                fix: "Use dot-separated names made of letters, digits, '_' or '-', e.g. \"address.city\".")
        }
    }
}

enum FieldNameCharacters {
    static func fieldNameScalar(_ s: Unicode.Scalar) -> Bool {
        s.properties.isAlphabetic || ("0"..."9").contains(s) || s == "_" || s == "-"
    }
}

/// A comparison operator in a ``Filter``.
public enum Comparison: String, Sendable, Hashable, CaseIterable {
    case equal = "=="
    case notEqual = "!="
    case less = "<"
    case lessOrEqual = "<="
    case greater = ">"
    case greaterOrEqual = ">="
}

/// One small expression tree for every engine's queries. Engines translate it with bound parameters.
///
/// ```swift
/// let cheapRed: Filter = .field("price") < 100 && .field("color") == "red"
/// let tagged: Filter = .field("tags").contains(any: ["sale", "new"]) || .exists("discount")
/// let docs = try await products.query(cheapRed, sort: [.descending("price")], limit: 20)
/// ```
public indirect enum Filter: Sendable, Hashable {
    /// Matches everything.
    case all
    case compare(FieldPath, Comparison, JSON)
    /// The field's value is one of the listed values.
    case isIn(FieldPath, [JSON])
    /// The field is present (and not JSON null).
    case exists(FieldPath)
    /// The string field starts with the given prefix (case-sensitive).
    case hasPrefix(FieldPath, String)
    case and([Filter])
    case or([Filter])
    case not(Filter)

    /// Starts a comparison on a field: `.field("price") < 100`.
    public static func field(_ path: FieldPath) -> FieldReference { FieldReference(path: path) }

    /// Every field path the filter reads.
    public var fieldPaths: [FieldPath] {
        switch self {
        case .all: []
        case .compare(let p, _, _), .isIn(let p, _), .exists(let p), .hasPrefix(let p, _): [p]
        case .and(let fs), .or(let fs): fs.flatMap(\.fieldPaths)
        case .not(let f): f.fieldPaths
        }
    }

    /// Evaluates the filter against a JSON record, with the semantics every engine implements:
    /// - a comparison between different JSON types is false, except `!=`, which is true;
    /// - a missing field behaves as JSON null: it matches `== null`, `!=` any non-null value, and `not`;
    /// - strings compare by Unicode code points, booleans as false < true.
    public func matches(_ record: JSON) -> Bool {
        switch self {
        case .all: return true
        case .compare(let path, let op, let value):
            let field = record[path] ?? .null
            if value == .null {
                // `== null` matches a missing or null field; `!= null` matches a present, non-null one.
                return op == .equal ? field == .null : (op == .notEqual ? field != .null : false)
            }
            return Filter.compare(field, op, value)
        case .isIn(let path, let values):
            let field = record[path] ?? .null
            return values.contains { $0 == .null ? field == .null : Filter.compare(field, .equal, $0) }
        case .exists(let path):
            guard let field = record[path] else { return false }
            return field != .null
        case .hasPrefix(let path, let prefix):
            return record[path]?.stringValue?.hasPrefix(prefix) ?? false
        case .and(let fs): return fs.allSatisfy { $0.matches(record) }
        case .or(let fs): return fs.contains { $0.matches(record) }
        case .not(let f): return !f.matches(record)
        }
    }

    static func compare(_ a: JSON, _ op: Comparison, _ b: JSON) -> Bool {
        let order: Int?
        switch (a, b) {
        case (.number(let x), .number(let y)): order = x < y ? -1 : (x > y ? 1 : 0)
        case (.string(let x), .string(let y)): order = x < y ? -1 : (x > y ? 1 : 0)
        case (.bool(let x), .bool(let y)): order = x == y ? 0 : (!x ? -1 : 1)
        default: order = a == b ? 0 : nil
        }
        guard let order else { return op == .notEqual }
        switch op {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .less: return order < 0
        case .lessOrEqual: return order <= 0
        case .greater: return order > 0
        case .greaterOrEqual: return order >= 0
        }
    }

    /// Checks field paths and operand types. Comparison operands must be scalars.
    public func validate() throws {
        switch self {
        case .all: return
        case .compare(let p, let op, let v):
            try p.validate()
            switch v {
            case .array, .object:
                throw PolyglotError(.invalidFilter, "Filter on '\(p)' compares with a JSON \(v.typeName); comparisons take a string, number, boolean or null.",
                                    fix: "Use .field(\"\(p)\").isIn([...]) to match one of several values.")
            case .null where op != .equal && op != .notEqual:
                throw PolyglotError(.invalidFilter, "Filter on '\(p)' orders against null.", fix: "Use .exists(\"\(p)\") or == null.")
            default: return
            }
        case .isIn(let p, let vs):
            try p.validate()
            if vs.contains(where: { $0.arrayValue != nil || $0.objectValue != nil }) {
                throw PolyglotError(.invalidFilter, "Filter 'in' on '\(p)' lists an array or object.", fix: "List only strings, numbers, booleans or null.")
            }
        case .exists(let p), .hasPrefix(let p, _): try p.validate()
        case .and(let fs), .or(let fs): try fs.forEach { try $0.validate() }
        case .not(let f): try f.validate()
        }
    }
}

/// The left-hand side of a comparison in the ``Filter`` builder.
public struct FieldReference: Sendable {
    public let path: FieldPath
    /// Lets `.field("price") < 100` resolve where the operator expects a `FieldReference`.
    public static func field(_ path: FieldPath) -> FieldReference { FieldReference(path: path) }
    public func isIn(_ values: [JSON]) -> Filter { .isIn(path, values) }
    public func hasPrefix(_ prefix: String) -> Filter { .hasPrefix(path, prefix) }
    public var exists: Filter { .exists(path) }

    public static func == (l: FieldReference, r: JSON) -> Filter { .compare(l.path, .equal, r) }
    public static func != (l: FieldReference, r: JSON) -> Filter { .compare(l.path, .notEqual, r) }
    public static func < (l: FieldReference, r: JSON) -> Filter { .compare(l.path, .less, r) }
    public static func <= (l: FieldReference, r: JSON) -> Filter { .compare(l.path, .lessOrEqual, r) }
    public static func > (l: FieldReference, r: JSON) -> Filter { .compare(l.path, .greater, r) }
    public static func >= (l: FieldReference, r: JSON) -> Filter { .compare(l.path, .greaterOrEqual, r) }
}

extension Filter {
    public static func && (l: Filter, r: Filter) -> Filter { .and([l, r]) }
    public static func || (l: Filter, r: Filter) -> Filter { .or([l, r]) }
    public static prefix func ! (f: Filter) -> Filter { .not(f) }
}

/// One sort key for queries.
public struct SortKey: Sendable, Hashable {
    public var path: FieldPath
    public var descending: Bool
    public init(_ path: FieldPath, descending: Bool = false) { self.path = path; self.descending = descending }
    public static func ascending(_ path: FieldPath) -> SortKey { SortKey(path) }
    public static func descending(_ path: FieldPath) -> SortKey { SortKey(path, descending: true) }
}
