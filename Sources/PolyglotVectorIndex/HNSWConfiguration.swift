import Polyglot

/// Parameters of an ``HNSWIndex``.
///
/// ```swift
/// var config = HNSWConfiguration(dimension: 384, metric: .cosine)
/// config.m = 16              // neighbours per node on upper layers (2*m on layer 0)
/// config.efConstruction = 200
/// config.efSearch = 64       // default; each search may pass its own `ef`
/// let index = try HNSWIndex(config)
/// ```
///
/// Larger `m` and `efConstruction` build a better graph (higher recall at a given `efSearch`) at the cost
/// of build time and memory; larger `efSearch` trades query speed for recall.
public struct HNSWConfiguration: Sendable, Hashable {
    /// Components per vector, 1...4096.
    public var dimension: Int
    /// The distance: `.l2` (Euclidean), `.cosine` (1 - cosine similarity) or `.innerProduct` (-dot).
    public var metric: VectorMetric
    /// Maximum neighbours per node on the upper layers; layer 0 keeps up to `2 * m`. 2...256.
    public var m: Int = 16
    /// Size of the candidate list while inserting. At least 1; values below `m` behave as `m`.
    public var efConstruction: Int = 200
    /// Default size of the candidate list while searching; `search(_:k:ef:)` can override it per query.
    public var efSearch: Int = 64
    /// Seed of the level generator, so that builds are reproducible.
    public var seed: UInt64 = 42

    public init(dimension: Int, metric: VectorMetric, m: Int = 16, efConstruction: Int = 200,
                efSearch: Int = 64, seed: UInt64 = 42) {
        self.dimension = dimension
        self.metric = metric
        self.m = m
        self.efConstruction = efConstruction
        self.efSearch = efSearch
        self.seed = seed
    }

    func validate() throws {
        guard (1...4096).contains(dimension) else {
            throw PolyglotError(.invalidArgument, "HNSW dimension \(dimension) is out of range; it must be 1...4096.",
                                fix: "Use the dimension your embedding model produces (for example 384 or 1536).")
        }
        guard (2...256).contains(m) else {
            throw PolyglotError(.invalidArgument, "HNSW m = \(m) is out of range; it must be 2...256.",
                                fix: "Use m = 16 (the usual default); 32 or 48 for high-dimensional data needing very high recall.")
        }
        guard VectorIndexSpec.efRange.contains(efConstruction) else {
            throw PolyglotError(.invalidArgument, "HNSW efConstruction = \(efConstruction); it must be 1...\(VectorIndexSpec.efRange.upperBound).",
                                fix: "Use efConstruction = 200 (the usual default).")
        }
        guard VectorIndexSpec.efRange.contains(efSearch) else {
            throw PolyglotError(.invalidArgument, "HNSW efSearch = \(efSearch); it must be 1...\(VectorIndexSpec.efRange.upperBound).",
                                fix: "Use efSearch = 64, or at least the k you query with.")
        }
    }
}
