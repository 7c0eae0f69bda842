/// A deterministic, offline text embedder: each lower-cased word is hashed to a signed dimension
/// (the "hashing trick"), then the vector is L2-normalized. Texts that share words are close under cosine.
///
/// It needs no model and no network, so the embedded default can serve `nearest(text:)` out of the box.
/// Use a real model's embeddings (`vectorField:`) for semantic quality.
///
/// ```swift
/// let e = HashingEmbedder(dimension: 64)
/// let v = e.embed("Red running shoe")   // 64 floats, unit length
/// ```
public struct HashingEmbedder: Sendable, Hashable {
    public let dimension: Int
    public init(dimension: Int) { self.dimension = max(1, dimension) }

    public static func tokens(_ text: String) -> [Substring] {
        text.split { !($0.isLetter || $0.isNumber) }
    }

    public func embed(_ text: String) -> [Float] {
        var v = [Float](repeating: 0, count: dimension)
        for token in HashingEmbedder.tokens(text) {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in token.lowercased().utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            let i = Int(h % UInt64(dimension))
            v[i] += (h >> 63) == 0 ? 1 : -1
        }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { for i in v.indices { v[i] /= norm } }
        return v
    }
}

/// Vector checks and distances shared by engines.
public enum VectorMath {
    /// Throws `.invalidVector` when the dimension is wrong or a component is NaN or infinite.
    public static func validate(_ v: [Float], dimension: Int, dataset: String) throws {
        if v.count != dimension {
            throw PolyglotError(.invalidVector, "Dataset '\(dataset)' holds \(dimension)-dimensional vectors; this one has \(v.count) components.",
                                fix: "Send vectors of length \(dimension), or declare the dataset with the dimension your model produces.")
        }
        if let i = v.firstIndex(where: { !$0.isFinite }) {
            throw PolyglotError(.invalidVector, "Vector component \(i) is \(v[i]) in dataset '\(dataset)'; components must be finite numbers.",
                                fix: "Check the embedding model's output; replace NaN or infinite values before storing.")
        }
    }

    public static func distance(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, metric: VectorMetric) -> Float {
        var dot: Float = 0, na: Float = 0, nb: Float = 0, l2: Float = 0
        switch metric {
        case .l2:
            for i in 0..<a.count { let d = a[i] - b[i]; l2 += d * d }
            return l2.squareRoot()
        case .innerProduct:
            for i in 0..<a.count { dot += a[i] * b[i] }
            return -dot
        case .cosine:
            for i in 0..<a.count { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i] }
            let denom = (na * nb).squareRoot()
            return denom == 0 ? 1 : 1 - dot / denom
        }
    }

    public static func distance(_ a: [Float], _ b: [Float], metric: VectorMetric) -> Float {
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in distance(pa, pb, metric: metric) } }
    }
}
