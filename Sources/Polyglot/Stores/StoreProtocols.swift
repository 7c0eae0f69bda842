import Foundation

// One protocol per data model. An engine returns a store bound to one dataset; the `Polyglot` facade
// wraps it with validation, telemetry and caching. Engines implement these; applications use the facade.

/// Documents: JSON objects addressed by id.
public protocol DocumentStore: Sendable {
    /// Inserts or replaces documents in one local transaction; returns each document's new version,
    /// in input order. Versions are positions in the engine's change log.
    func put(_ documents: [(id: String, data: Data)]) async throws -> [Int64]
    func get(_ id: String) async throws -> Document?
    func get(_ ids: [String]) async throws -> [Document]
    /// Deletes a document; returns `nil` when there was nothing to delete.
    func delete(_ id: String) async throws -> ConsistencyToken?
    func query(_ query: DocumentQuery) async throws -> [Document]
    func count(_ filter: Filter) async throws -> Int
}

/// Keys with byte values, optional TTLs, counters and prefix scans.
public protocol KeyValueStore: Sendable {
    func get(_ key: String) async throws -> Data?
    func set(_ key: String, _ value: Data, ttl: Duration?) async throws -> ConsistencyToken
    /// Returns whether the key existed.
    func delete(_ key: String) async throws -> Bool
    /// Adds `delta` to a decimal integer value (a missing key counts as 0) and returns the new value.
    /// The key's TTL is kept; `ttl` applies when the key is created.
    func increment(_ key: String, by delta: Int64, ttl: Duration?) async throws -> Int64
    /// Live entries whose key starts with `prefix`, in key order, after `after` when given.
    func scan(prefix: String, after: String?, limit: Int) async throws -> [KeyValueEntry]
    /// The live values of `keys` (missing keys are absent), in one round trip where the engine allows.
    func getMany(_ keys: [String]) async throws -> [String: Data]
    /// Sets every entry with the same `ttl`: in one statement where the engine allows, all or nothing inside a
    /// transaction. A key given twice gets its last value.
    func setMany(_ entries: [(key: String, value: Data)], ttl: Duration?) async throws
}

extension KeyValueStore {
    /// One `get` per key.
    public func getMany(_ keys: [String]) async throws -> [String: Data] {
        var out: [String: Data] = [:]
        for key in keys where out[key] == nil {
            if let value = try await get(key) { out[key] = value }
        }
        return out
    }

    /// One `set` per entry.
    public func setMany(_ entries: [(key: String, value: Data)], ttl: Duration?) async throws {
        for (key, value) in entries { _ = try await set(key, value, ttl: ttl) }
    }
}

/// The counter rule every key-value engine shares: values are decimal integers, a missing key counts as 0.
public enum KeyValueCounter {
    /// The value after adding `delta` to `current` (nil for a missing key), or a typed error for a
    /// non-integer value or an overflow.
    public static func increment(_ current: Data?, by delta: Int64, key: String, dataset: String) throws -> Int64 {
        var value: Int64 = 0
        if let current {
            guard let n = Int64(String(decoding: current, as: UTF8.self)) else {
                throw PolyglotError(.conflict, "Key '\(key)' of '\(dataset)' holds a value that is not a decimal integer, so it cannot be incremented.",
                                    fix: "Increment only keys written by increment, or delete the key first.")
            }
            value = n
        }
        let (next, overflow) = value.addingReportingOverflow(delta)
        if overflow {
            throw PolyglotError(.invalidArgument, "Incrementing key '\(key)' of '\(dataset)' by \(delta) overflows a 64-bit integer.",
                                fix: "Use a smaller delta or reset the key.")
        }
        return next
    }
}

/// Fixed-dimension vectors with metadata and nearest-neighbour search.
public protocol VectorStore: Sendable {
    func upsert(_ records: [VectorRecord]) async throws -> ConsistencyToken
    func delete(_ id: String) async throws -> Bool
    func get(_ id: String) async throws -> VectorRecord?
    /// The `k` nearest vectors among those whose metadata matches `filter`, closest first.
    /// `exact` forces a full scan; otherwise an approximate index may answer, searching with `ef` candidates
    /// (its configured default when nil).
    func nearest(to query: [Float], k: Int, filter: Filter, exact: Bool, ef: Int?) async throws -> [VectorHit]
    func count() async throws -> Int
}

/// A full-text index of text fields, returning scored hits with snippets.
public protocol SearchIndex: Sendable {
    func index(_ id: String, fields: [String: String]) async throws
    func delete(_ id: String) async throws
    /// `query` uses web-search syntax: words, "quoted phrases", `OR`, and `-excluded`.
    func search(_ query: String, filter: Filter, limit: Int) async throws -> [SearchHit]
}

/// Edges between string node ids, with walks that are safe on cycles.
public protocol GraphStore: Sendable {
    func addEdges(_ edges: [Edge]) async throws -> ConsistencyToken
    func removeEdge(from: String, to: String, label: String) async throws -> Bool
    func edges(of node: String, direction: EdgeDirection, label: String?) async throws -> [Edge]
    func neighbors(of node: String, direction: EdgeDirection, label: String?) async throws -> [String]
    /// Every node reachable within `maxDepth` hops, each once, at its shortest depth.
    func traverse(from node: String, maxDepth: Int, direction: EdgeDirection, label: String?) async throws -> [TraversalStep]
    /// The fewest-hops path from `from` to `to` (both included), or `nil` when none exists within `maxDepth`.
    func shortestPath(from: String, to: String, maxDepth: Int, direction: EdgeDirection, label: String?) async throws -> [String]?
}

/// Timestamped numeric samples per series, with bucketed aggregates and retention.
public protocol TimeSeriesStore: Sendable {
    func append(_ samples: [Sample]) async throws -> ConsistencyToken
    /// Samples with `from <= time < to`, oldest first.
    func range(_ series: String, from: Date, to: Date, limit: Int?) async throws -> [Sample]
    /// Aggregates per bucket of width `bucket`, aligned to the Unix epoch; empty buckets are omitted.
    func aggregate(_ series: String, from: Date, to: Date, bucket: Duration) async throws -> [Bucket]
    /// Deletes samples older than `cutoff`; returns how many were deleted.
    func deleteSamples(olderThan cutoff: Date) async throws -> Int
}

/// Rows with typed columns declared in the data map, plus parameterized SQL for the rest.
public protocol TableStore: Sendable {
    /// Inserts rows, or replaces rows with the same primary key.
    func upsert(_ rows: [Row]) async throws -> ConsistencyToken
    func get(_ primaryKey: JSON) async throws -> Row?
    func select(_ filter: Filter, sort: [SortKey], limit: Int?) async throws -> [Row]
    func count(_ filter: Filter) async throws -> Int
    /// Deletes matching rows; returns how many were deleted.
    func delete(_ filter: Filter) async throws -> Int
}

/// Raw, parameterized SQL on an engine that speaks SQL. Values are bound, never pasted into the text.
public protocol SQLExecutor: Sendable {
    /// Runs one statement with `?` placeholders bound to `parameters`; returns the rows it produced.
    func execute(_ sql: String, _ parameters: [JSON]) async throws -> [Row]
}
