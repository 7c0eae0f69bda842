import Foundation

/// What a projection derives from a document. Every engine that keeps a projection uses these, so the
/// embedding, the edges and the indexed text of a document are the same on every engine.
extension ProjectionSpec {
    /// A field's value as indexable text: strings as they are, arrays joined by spaces, numbers and booleans written out.
    public static func text(_ value: JSON?) -> String {
        switch value {
        case .string(let s): s
        case .array(let items): items.map { text($0) }.joined(separator: " ")
        case .number(let d): JSON.number(d).text
        case .bool(let b): b ? "true" : "false"
        default: ""
        }
    }

    /// The embedding a vectors projection keeps for a document: the array in `vectorField`, or the hashing
    /// embedder over `fields`. `nil` when there is nothing to embed (the field is missing, or the text is empty).
    public func embedding(of body: JSON, id: String, dataset: String) throws -> [Float]? {
        guard let dim = dimension else { return nil }
        var vector: [Float]?
        if let field = vectorField {
            if let value = body[FieldPath(field)], value != .null {
                guard let items = value.arrayValue, items.allSatisfy({ $0.doubleValue != nil }) else {
                    throw PolyglotError(.invalidVector, "Document '\(id)' of '\(dataset)': field '\(field)' must be an array of numbers for the vectors projection.",
                                        fix: "Store the embedding as a JSON array of \(dim) numbers, or remove the field.")
                }
                vector = items.map { Float($0.doubleValue!) }
            }
        } else {
            let text = fields.map { Self.text(body[FieldPath($0)]) }.joined(separator: " ")
            let v = HashingEmbedder(dimension: dim).embed(text)
            vector = v.contains { $0 != 0 } ? v : nil
        }
        if let vector { try VectorMath.validate(vector, dimension: dim, dataset: dataset) }
        return vector
    }

    /// The nodes a graph projection links a document to: the string (or strings) in `edgeField`, each once, sorted.
    public func edgeTargets(of body: JSON) -> [String] {
        guard let field = edgeField, let value = body[FieldPath(field)] else { return [] }
        return Array(Set((value.arrayValue ?? [value]).compactMap(\.stringValue))).sorted()
    }
}

extension Comparison {
    /// The SQL operator of a comparison (`!=` is written as NOT of `=` by the translators, to keep NULLs two-valued).
    public var sqlOperator: String {
        switch self {
        case .equal, .notEqual: "="
        case .less: "<"
        case .lessOrEqual: "<="
        case .greater: ">"
        case .greaterOrEqual: ">="
        }
    }
}
