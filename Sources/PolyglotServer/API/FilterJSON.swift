import Polyglot

/// The JSON form of a ``Filter`` that the API accepts, in the style of MongoDB's query documents:
///
/// ```json
/// {"category": "shoes", "price": {"$lt": 100}, "$or": [{"stock": {"$gt": 0}}, {"preorder": true}]}
/// ```
///
/// - `{"field": value}`: equal; `{"field": {"$eq"|"$ne"|"$lt"|"$lte"|"$gt"|"$gte": value}}`
/// - `{"field": {"$in": [v1, v2]}}`, `{"field": {"$exists": true}}`, `{"field": {"$prefix": "ab"}}`
/// - `{"$and": [f1, f2]}`, `{"$or": [f1, f2]}`, `{"$not": f}`; several keys in one object are and-ed.
/// - Field paths are dotted: `"address.city"`.
enum FilterJSON {
    static func parse(_ json: JSON) throws -> Filter {
        guard case .object(let o) = json else {
            throw bad("A filter must be a JSON object; this one is \(json.typeName).")
        }
        var parts: [Filter] = []
        for key in o.keys.sorted() {
            let value = o[key]!
            switch key {
            case "$and", "$or":
                guard case .array(let items) = value, !items.isEmpty else { throw bad("'\(key)' takes a non-empty array of filters.") }
                let fs = try items.map(parse)
                parts.append(key == "$and" ? .and(fs) : .or(fs))
            case "$not":
                parts.append(.not(try parse(value)))
            default:
                if key.hasPrefix("$") { throw bad("Unknown operator '\(key)' at the top of a filter (known: $and, $or, $not).") }
                let path = FieldPath(key)
                do { try path.validate() } catch { throw bad("'\(key)' is not a field path: use dot-separated names of letters, digits, '_' or '-'.") }
                parts.append(contentsOf: try fieldConditions(path, value))
            }
        }
        return parts.isEmpty ? .all : parts.count == 1 ? parts[0] : .and(parts)
    }

    static func fieldConditions(_ path: FieldPath, _ value: JSON) throws -> [Filter] {
        guard case .object(let ops) = value, let first = ops.keys.first, first.hasPrefix("$") else {
            return [.compare(path, .equal, value)]
        }
        var out: [Filter] = []
        for (op, v) in ops.sorted(by: { $0.key < $1.key }) {
            switch op {
            case "$eq": out.append(.compare(path, .equal, v))
            case "$ne": out.append(.compare(path, .notEqual, v))
            case "$lt": out.append(.compare(path, .less, v))
            case "$lte": out.append(.compare(path, .lessOrEqual, v))
            case "$gt": out.append(.compare(path, .greater, v))
            case "$gte": out.append(.compare(path, .greaterOrEqual, v))
            case "$in":
                guard case .array(let values) = v else { throw bad("'\(path).$in' takes an array of values.") }
                out.append(.isIn(path, values))
            case "$exists":
                guard case .bool(let b) = v else { throw bad("'\(path).$exists' takes true or false.") }
                out.append(b ? .exists(path) : .not(.exists(path)))
            case "$prefix":
                guard case .string(let s) = v else { throw bad("'\(path).$prefix' takes a string.") }
                out.append(.hasPrefix(path, s))
            default:
                throw bad("Unknown operator '\(op)' on '\(path)' (known: $eq, $ne, $lt, $lte, $gt, $gte, $in, $exists, $prefix).")
            }
        }
        return out
    }

    static func bad(_ detail: String) -> Problem {
        .badRequest("bad-filter", detail, fix: #"Write filters like {"category":"shoes","price":{"$lt":100}}; see docs/server.md."#)
    }

    /// `price,-name` → ascending price, then descending name.
    static func sort(_ text: String) throws -> [SortKey] {
        try text.split(separator: ",").map { part in
            let descending = part.hasPrefix("-")
            let name = descending ? String(part.dropFirst()) : String(part)
            let path = FieldPath(name)
            do { try path.validate() } catch {
                throw Problem.badRequest("bad-sort", "'\(part)' is not a sort key.", fix: "Write sort=price,-name: field paths, '-' for descending.")
            }
            return SortKey(path, descending: descending)
        }
    }
}
