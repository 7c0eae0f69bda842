import Foundation

/// A key-value dataset: byte values with TTLs, counters and prefix scans.
///
/// ```swift
/// let sessions = try db.keyValue("sessions")
/// try await sessions.set("s:42", "user-7", ttl: .seconds(1800))
/// let user = try await sessions.getString("s:42")
/// let views = try await sessions.increment("views:p1")
/// let page = try await sessions.scan(prefix: "s:", limit: 100)
/// ```
public struct KeyValueCollection: Sendable {
    let runtime: DatasetRuntime
    public var name: String { runtime.spec.name }
    var store: any KeyValueStore { runtime.keyValue! }

    public func get(_ key: String) async throws -> Data? {
        try runtime.checkKey(key, what: "key")
        let store = self.store
        return try await runtime.sampledRead(key) {
            try await runtime.measure("get", { try await store.get(key) }, size: { ($0 == nil ? 0 : 1, $0?.count ?? 0) })
        }
    }

    public func getString(_ key: String) async throws -> String? {
        try await get(key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Sets a value. `ttl` defaults to the dataset's `ttl:`; it must be positive.
    @discardableResult
    public func set(_ key: String, _ value: Data, ttl: Duration? = nil) async throws -> ConsistencyToken {
        try runtime.checkKey(key, what: "key")
        try runtime.checkValueSize(value.count, key: key)
        try runtime.checkTTL(ttl)
        try runtime.checkWrite()
        let store = self.store, ttl = ttl ?? runtime.spec.ttl
        let token = try await runtime.measure("set", { try await store.set(key, value, ttl: ttl) }, size: { _ in (1, value.count) })
        runtime.observer.recordWrites([key])
        return token
    }

    @discardableResult
    public func set(_ key: String, _ value: String, ttl: Duration? = nil) async throws -> ConsistencyToken {
        try await set(key, Data(value.utf8), ttl: ttl)
    }

    @discardableResult
    public func delete(_ key: String) async throws -> Bool {
        try runtime.checkKey(key, what: "key")
        try runtime.checkWrite()
        let store = self.store
        let deleted = try await runtime.measure("delete", { try await store.delete(key) }, size: { ($0 ? 1 : 0, 0) })
        runtime.observer.recordWrites([key])
        return deleted
    }

    /// Atomically adds `delta` to an integer value and returns the result; a missing key starts at 0.
    @discardableResult
    public func increment(_ key: String, by delta: Int64 = 1, ttl: Duration? = nil) async throws -> Int64 {
        try runtime.checkKey(key, what: "key")
        try runtime.checkTTL(ttl)
        try runtime.checkWrite()
        let store = self.store, ttl = ttl ?? runtime.spec.ttl
        let value = try await runtime.measure("increment", { try await store.increment(key, by: delta, ttl: ttl) }, size: { _ in (1, 8) })
        runtime.observer.recordWrites([key])
        return value
    }

    /// Live entries whose key starts with `prefix`, in key order; pass the last key as `after` for the next page.
    public func scan(prefix: String = "", after: String? = nil, limit: Int = 100) async throws -> [KeyValueEntry] {
        try DocumentCollection.checkLimit(limit)
        let store = self.store
        return try await runtime.measureScan("scan", filter: nil, { try await store.scan(prefix: prefix, after: after, limit: limit) },
                                             returned: { $0.count }, size: { ($0.count, $0.reduce(0) { $0 + $1.value.count }) })
    }
}

/// A vectors dataset: fixed-dimension embeddings with JSON metadata.
///
/// ```swift
/// let embeddings = try db.vectors("chunks")
/// try await embeddings.upsert("c1", vector: v, metadata: ["doc": "guide", "page": 3])
/// let hits = try await embeddings.nearest(to: q, k: 5, where: .field("doc") == "guide")
/// ```
public struct VectorCollection: Sendable {
    let runtime: DatasetRuntime
    public var name: String { runtime.spec.name }
    public var dimension: Int { runtime.spec.dimension ?? 0 }
    var store: any VectorStore { runtime.vectors! }

    @discardableResult
    public func upsert(_ id: String, vector: [Float], metadata: JSON? = nil) async throws -> ConsistencyToken {
        try await upsert([VectorRecord(id: id, vector: vector, metadata: metadata)])
    }

    /// Inserts or replaces vectors in one local transaction: all or none are stored.
    @discardableResult
    public func upsert(_ records: [VectorRecord]) async throws -> ConsistencyToken {
        guard !records.isEmpty else { throw PolyglotError(.invalidArgument, "Dataset '\(name)': upsert was given no vectors.", fix: "Pass at least one vector.") }
        for r in records {
            try runtime.checkKey(r.id)
            try VectorMath.validate(r.vector, dimension: dimension, dataset: name)
            if let m = r.metadata {
                guard case .object = m else {
                    throw PolyglotError(.invalidArgument, "Dataset '\(name)': metadata of '\(r.id)' is a JSON \(m.typeName); it must be an object.",
                                        fix: "Pass metadata as a JSON object, e.g. [\"source\": \"guide\"].")
                }
                try runtime.checkValueSize(m.serialized().count, key: r.id)
            }
        }
        try runtime.checkWrite()
        let store = self.store
        let token = try await runtime.measure(records.count == 1 ? "upsert" : "upsertMany", { try await store.upsert(records) },
                                              size: { _ in (records.count, records.count * dimension * 4) })
        runtime.observer.recordWrites(records.map(\.id), position: token.position)
        return token
    }

    @discardableResult
    public func delete(_ id: String) async throws -> Bool {
        try runtime.checkKey(id)
        try runtime.checkWrite()
        let store = self.store
        return try await runtime.measure("delete", { try await store.delete(id) }, size: { ($0 ? 1 : 0, 0) })
    }

    public func get(_ id: String) async throws -> VectorRecord? {
        try runtime.checkKey(id)
        let store = self.store
        return try await runtime.sampledRead(id) {
            try await runtime.measure("get", { try await store.get(id) }, size: { ($0 == nil ? 0 : 1, dimension * 4) })
        }
    }

    /// The `k` nearest vectors, closest first, among those whose metadata matches `filter`.
    /// Answered by the approximate (HNSW) index where the engine has one; `ef` trades speed for recall per query.
    /// `exact: true` forces a full scan, which is what recall checks compare against.
    public func nearest(to query: [Float], k: Int = 10, where filter: Filter = .all, exact: Bool = false, ef: Int? = nil) async throws -> [VectorHit] {
        if let ef, !VectorIndexSpec.efRange.contains(ef) {
            throw PolyglotError(.invalidArgument, "ef \(ef) is out of range.", fix: "Pass ef from 1 to 10000 (at least k, e.g. 64), or nil for the dataset's default.")
        }
        try VectorMath.validate(query, dimension: dimension, dataset: name)
        try DocumentCollection.checkLimit(k)
        try filter.validate()
        let store = self.store
        return try await runtime.measure("nearest", { try await store.nearest(to: query, k: k, filter: filter, exact: exact, ef: ef) }, size: { ($0.count, 0) })
    }

    public func count() async throws -> Int {
        let store = self.store
        return try await runtime.measure("count", { try await store.count() })
    }
}

/// A table dataset: rows with the columns declared in the data map.
///
/// ```swift
/// let orders = try db.table("orders")
/// try await orders.upsert(["id": 1, "customer": "ada", "total": 120.5])
/// let big = try await orders.select(.field("total") > 100, sort: [.descending("total")], limit: 20)
/// ```
public struct TableCollection: Sendable {
    let runtime: DatasetRuntime
    public var name: String { runtime.spec.name }
    var store: any TableStore { runtime.table! }

    func checkRow(_ row: Row) throws {
        let spec = runtime.spec
        for column in row.keys where spec.field(column) == nil {
            throw PolyglotError(.invalidArgument, "Table '\(name)' has no column '\(column)' (columns: \(spec.fields.map(\.name).joined(separator: ", "))).",
                                fix: "Remove '\(column)' from the row, or add it under `columns:` in the data map.")
        }
        guard let pk = spec.primaryKey, let key = row[pk], key != .null else {
            throw PolyglotError(.invalidArgument, "Table '\(name)': the row has no value for primary key '\(spec.primaryKey ?? "?")'.",
                                fix: "Set '\(spec.primaryKey ?? "?")' on every row.")
        }
        try runtime.checkKey(key.stringValue ?? key.text, what: "primary key")
        try runtime.checkFields(.object(row), key: key.stringValue ?? key.text)
        try runtime.checkValueSize(JSON.object(row).serialized().count, key: key.text)
    }

    @discardableResult
    public func upsert(_ row: Row) async throws -> ConsistencyToken { try await upsert([row]) }

    /// Full-text search over a captured table's search projection (`capture: true`; the relay copies its rows,
    /// by whoever they are written, to the projection's engine). Hits are primary keys, best first.
    public func search(_ text: String, filter: Filter = .all, limit: Int = 10) async throws -> [SearchHit] {
        try await runtime.search(text, filter: filter, limit: limit,
                                 missing: "Set `capture: true` on it and add `- { kind: search, engine: <another engine>, fields: [...] }` under its `projections:`.")
    }

    /// Inserts rows, or replaces rows with the same primary key, in one local transaction.
    @discardableResult
    public func upsert(_ rows: [Row]) async throws -> ConsistencyToken {
        guard !rows.isEmpty else { throw PolyglotError(.invalidArgument, "Table '\(name)': upsert was given no rows.", fix: "Pass at least one row.") }
        try rows.forEach(checkRow)
        try runtime.checkWrite()
        let store = self.store
        let token = try await runtime.measure(rows.count == 1 ? "upsert" : "upsertMany", { try await store.upsert(rows) }, size: { _ in (rows.count, 0) })
        let observer = runtime.observer, pk = runtime.spec.primaryKey ?? ""
        observer.recordWrites(rows.map { $0[pk].map { $0.stringValue ?? $0.text } ?? "" }, position: token.position)
        if observer.tickWrite() { observer.recordFieldPaths(.object(rows[rows.count / 2])) }
        return token
    }

    public func get(_ primaryKey: JSON) async throws -> Row? {
        let store = self.store
        return try await runtime.sampledRead(primaryKey.stringValue ?? primaryKey.text) {
            try await runtime.measure("get", { try await store.get(primaryKey) }, size: { ($0 == nil ? 0 : 1, 0) })
        }
    }

    public func select(_ filter: Filter = .all, sort: [SortKey] = [], limit: Int? = nil) async throws -> [Row] {
        try runtime.checkFilter(filter)
        try runtime.checkFilter(.and(sort.map { .exists($0.path) }))
        let store = self.store
        return try await runtime.measureScan("select", filter: sort.isEmpty ? filter : .and([filter] + sort.map { .exists($0.path) }), { try await store.select(filter, sort: sort, limit: limit) },
                                             returned: { $0.count }, size: { ($0.count, 0) })
    }

    public func count(_ filter: Filter = .all) async throws -> Int {
        try runtime.checkFilter(filter)
        let store = self.store
        return try await runtime.measureScan("count", filter: filter, { try await store.count(filter) }, returned: { _ in 1 })
    }

    @discardableResult
    public func delete(_ filter: Filter) async throws -> Int {
        try runtime.checkFilter(filter)
        try runtime.checkWrite()
        let store = self.store
        return try await runtime.measure("delete", { try await store.delete(filter) }, size: { ($0, 0) })
    }
}

/// A graph dataset: labelled, weighted edges between node ids.
///
/// ```swift
/// let together = try db.graph("bought_together")
/// try await together.addEdge(Edge(from: "p1", to: "p2", label: "bought_with"))
/// let next = try await together.neighbors(of: "p1")
/// let path = try await together.shortestPath(from: "p1", to: "p9")
/// ```
public struct GraphCollection: Sendable {
    let runtime: DatasetRuntime
    public var name: String { runtime.spec.name }
    var store: any GraphStore { runtime.graph! }

    static func checkDepth(_ depth: Int) throws {
        if !(1...32).contains(depth) {
            throw PolyglotError(.invalidArgument, "A depth of \(depth) is out of range.", fix: "Walk 1 to 32 hops.")
        }
    }

    @discardableResult
    public func addEdge(_ edge: Edge) async throws -> ConsistencyToken { try await addEdges([edge]) }

    /// Adds edges, or replaces edges with the same from, to and label, in one local transaction.
    @discardableResult
    public func addEdges(_ edges: [Edge]) async throws -> ConsistencyToken {
        guard !edges.isEmpty else { throw PolyglotError(.invalidArgument, "Graph '\(name)': addEdges was given no edges.", fix: "Pass at least one edge.") }
        for e in edges {
            try runtime.checkKey(e.from, what: "node id")
            try runtime.checkKey(e.to, what: "node id")
            if !e.weight.isFinite { throw PolyglotError(.invalidArgument, "Graph '\(name)': edge \(e.from)->\(e.to) has weight \(e.weight).", fix: "Use a finite weight.") }
        }
        try runtime.checkWrite()
        let store = self.store
        return try await runtime.measure("addEdges", { try await store.addEdges(edges) }, size: { _ in (edges.count, 0) })
    }

    @discardableResult
    public func removeEdge(from: String, to: String, label: String = "") async throws -> Bool {
        try runtime.checkWrite()
        let store = self.store
        return try await runtime.measure("removeEdge", { try await store.removeEdge(from: from, to: to, label: label) })
    }

    public func edges(of node: String, direction: EdgeDirection = .outgoing, label: String? = nil) async throws -> [Edge] {
        let store = self.store
        return try await runtime.measure("edges", { try await store.edges(of: node, direction: direction, label: label) }, size: { ($0.count, 0) })
    }

    public func neighbors(of node: String, direction: EdgeDirection = .outgoing, label: String? = nil) async throws -> [String] {
        let store = self.store
        return try await runtime.measure("neighbors", { try await store.neighbors(of: node, direction: direction, label: label) }, size: { ($0.count, 0) })
    }

    public func traverse(from node: String, depth: Int, direction: EdgeDirection = .outgoing, label: String? = nil) async throws -> [TraversalStep] {
        try Self.checkDepth(depth)
        let store = self.store
        return try await runtime.measure("traverse", { try await store.traverse(from: node, maxDepth: depth, direction: direction, label: label) },
                                         size: { ($0.count, 0) })
    }

    public func shortestPath(from: String, to: String, maxDepth: Int = 6, direction: EdgeDirection = .outgoing, label: String? = nil) async throws -> [String]? {
        try Self.checkDepth(maxDepth)
        let store = self.store
        return try await runtime.measure("shortestPath", { try await store.shortestPath(from: from, to: to, maxDepth: maxDepth, direction: direction, label: label) },
                                         size: { ($0?.count ?? 0, 0) })
    }
}

/// A time-series dataset: numeric samples per series, bucketed aggregates and retention.
///
/// ```swift
/// let views = try db.timeSeries("page_views")
/// try await views.append("home", value: 1)
/// let perMinute = try await views.aggregate("home", from: hourAgo, to: .now, bucket: .seconds(60))
/// ```
public struct TimeSeriesCollection: Sendable {
    let runtime: DatasetRuntime
    public var name: String { runtime.spec.name }
    var store: any TimeSeriesStore { runtime.timeSeries! }

    @discardableResult
    public func append(_ series: String, value: Double, at time: Date = Date()) async throws -> ConsistencyToken {
        try await append([Sample(series: series, time: time, value: value)])
    }

    @discardableResult
    public func append(_ samples: [Sample]) async throws -> ConsistencyToken {
        guard !samples.isEmpty else { throw PolyglotError(.invalidArgument, "Time series '\(name)': append was given no samples.", fix: "Pass at least one sample.") }
        for s in samples {
            try runtime.checkKey(s.series, what: "series name")
            if !s.value.isFinite {
                throw PolyglotError(.invalidArgument, "Time series '\(name)': sample of '\(s.series)' has value \(s.value).", fix: "Append finite numbers only.")
            }
            try checkTime(s.time, "the sample of '\(s.series)'")
        }
        try runtime.checkWrite()
        let store = self.store
        return try await runtime.measure("append", { try await store.append(samples) }, size: { _ in (samples.count, samples.count * 16) })
    }

    public func range(_ series: String, from: Date, to: Date, limit: Int? = nil) async throws -> [Sample] {
        try checkTime(from, "from"); try checkTime(to, "to")
        let store = self.store
        return try await runtime.measureScan("range", filter: nil, { try await store.range(series, from: from, to: to, limit: limit) },
                                             returned: { $0.count }, size: { ($0.count, 0) })
    }

    public func aggregate(_ series: String, from: Date, to: Date, bucket: Duration) async throws -> [Bucket] {
        if bucket < .milliseconds(1) {
            throw PolyglotError(.invalidArgument, "Bucket width \(bucket) is too small.", fix: "Use a bucket of at least 1ms, e.g. .seconds(60).")
        }
        if bucket > DataMap.longestDuration {
            throw PolyglotError(.invalidArgument, "Bucket width \(bucket) is longer than 100 years.", fix: "Use a bucket of at most 100 years, e.g. .seconds(86_400).")
        }
        try checkTime(from, "from"); try checkTime(to, "to")
        let store = self.store
        return try await runtime.measureScan("aggregate", filter: nil, { try await store.aggregate(series, from: from, to: to, bucket: bucket) },
                                             returned: { $0.count }, size: { ($0.count, 0) })
    }

    /// Times are seconds since 1970 within `FieldType.epochSeconds` (engines convert them to integer micro- and
    /// milliseconds, which overflow far beyond it).
    private func checkTime(_ t: Date, _ what: String) throws {
        guard FieldType.epochSeconds.contains(t.timeIntervalSince1970) else {
            throw PolyglotError(.invalidArgument, "Time series '\(name)': \(what) is at \(t.timeIntervalSince1970) s since 1970, outside the years 1 to 9999.",
                                fix: "Pass a date within a few thousand years of now (Date(timeIntervalSince1970:) takes seconds, not milliseconds).")
        }
    }

    /// Deletes samples older than the dataset's `retention:`; returns how many were deleted.
    @discardableResult
    public func applyRetention(now: Date = Date()) async throws -> Int {
        guard let retention = runtime.spec.retention else { return 0 }
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        let store = self.store
        return try await runtime.measure("retention", { try await store.deleteSamples(olderThan: now.addingTimeInterval(-seconds)) }, size: { ($0, 0) })
    }
}
