import Foundation

/// A documents dataset: JSON objects by id, with queries, and search, vectors and cache when projected.
///
/// ```swift
/// let products = try db.documents("products")
/// let token = try await products.put("p1", ["name": "Trail shoe", "price": 89, "category": "shoes"])
/// let shoes = try await products.query(.field("category") == "shoes" && .field("price") < 100,
///                                      sort: [.ascending("price")], limit: 10)
/// let hits = try await products.search("trail shoe", limit: 5)
/// let similar = try await products.nearest(text: "running shoe", k: 5)
/// ```
public struct DocumentCollection: Sendable {
    let runtime: DatasetRuntime
    public var name: String { runtime.spec.name }
    var store: any DocumentStore { runtime.documents! }

    /// Inserts or replaces one document.
    @discardableResult
    public func put(_ id: String, _ body: JSON) async throws -> ConsistencyToken {
        try await putMany([(id, body)])
    }

    /// Inserts or replaces one document given as UTF-8 JSON text; malformed JSON is refused.
    @discardableResult
    public func put(_ id: String, json data: Data) async throws -> ConsistencyToken {
        let parsed = try JSON(parsing: data)
        try runtime.checkKey(id)
        try runtime.checkValueSize(data.count, key: id)
        try runtime.checkDocument(parsed, id: id)
        return try await write([(id, data)])
    }

    /// Inserts or replaces many documents in one local transaction: all or none are stored.
    @discardableResult
    public func putMany(_ documents: [(id: String, body: JSON)]) async throws -> ConsistencyToken {
        var encoded: [(id: String, data: Data)] = []
        encoded.reserveCapacity(documents.count)
        for (id, body) in documents {
            try runtime.checkKey(id)
            try runtime.checkDocument(body, id: id)
            let data = body.serialized()
            try runtime.checkValueSize(data.count, key: id)
            encoded.append((id, data))
        }
        return try await write(encoded)
    }

    /// Writes pre-validated documents and invalidates their cache entries before returning.
    func write(_ documents: [(id: String, data: Data)]) async throws -> ConsistencyToken {
        guard !documents.isEmpty else {
            throw PolyglotError(.invalidArgument, "Dataset '\(name)': putMany was given no documents.", fix: "Pass at least one document.")
        }
        try runtime.checkWrite()
        let store = self.store
        let op = documents.count == 1 ? "put" : "putMany"
        let versions = try await runtime.measure(op, { try await store.put(documents) },
                                                 size: { _ in (documents.count, documents.reduce(0) { $0 + $1.data.count }) })
        if let cache = runtime.cache {
            // Invalidate at each id's new version, so no fill of an older version can land afterwards.
            for (doc, version) in zip(documents, versions) { try await cache.invalidate(doc.id, version: version) }
        }
        let observer = runtime.observer
        observer.recordWrites(documents.map(\.id), position: versions.max())
        if observer.tickWrite(), let json = try? JSON(parsing: documents[documents.count / 2].data) { observer.recordFieldPaths(json) }
        return runtime.sourceEngine.consistencyToken(position: versions.max() ?? 0)
    }

    /// The document with this id, read through the cache projection when there is one.
    public func get(_ id: String) async throws -> Document? {
        try runtime.checkKey(id)
        // Inside a transaction the source may hold uncommitted writes: read it directly and never fill the cache.
        guard let cache = runtime.cache, TransactionScope.current == nil else {
            let store = self.store
            return try await runtime.sampledRead(id) {
                try await runtime.measure("get", { try await store.get(id) }, size: { ($0 == nil ? 0 : 1, $0?.data.count ?? 0) })
            }
        }
        // One read in `sampleEvery` is recorded for the advisor (a relaxed atomic increment decides).
        let sampled = runtime.observer.tick()
        runtime.observer.simulateRead(id)
        let start = ContinuousClock.now
        if let doc = try await cache.lookup(id) {
            let ns = Telemetry.nanoseconds(since: start)
            cache.hits.record(nanoseconds: ns, rows: 1, bytes: doc.data.count)
            if sampled { runtime.observer.recordRead(id, start: start, nanoseconds: ns) }
            return doc
        }
        let store = self.store
        let doc = try await cache.load(id) { [runtime] in
            try await runtime.measure("get", { try await store.get(id) }, size: { ($0 == nil ? 0 : 1, $0?.data.count ?? 0) })
        }
        let ns = Telemetry.nanoseconds(since: start)
        cache.misses.record(nanoseconds: ns, rows: doc == nil ? 0 : 1, bytes: doc?.data.count ?? 0)
        if sampled { runtime.observer.recordRead(id, start: start, nanoseconds: ns) }
        return doc
    }

    /// The documents with these ids that exist, in no particular order.
    public func get(_ ids: [String]) async throws -> [Document] {
        try ids.forEach { try runtime.checkKey($0) }
        let store = self.store
        return try await runtime.measure("getMany", { try await store.get(ids) }, size: { ($0.count, $0.reduce(0) { $0 + $1.data.count }) })
    }

    /// Deletes a document; returns `nil` when it did not exist.
    @discardableResult
    public func delete(_ id: String) async throws -> ConsistencyToken? {
        try runtime.checkKey(id)
        try runtime.checkWrite()
        let store = self.store
        let token = try await runtime.measure("delete", { try await store.delete(id) }, size: { ($0 == nil ? 0 : 1, 0) })
        if let token, let cache = runtime.cache { try await cache.invalidate(id, version: token.position) }
        if let token { runtime.observer.recordWrites([id], position: token.position) }
        return token
    }

    /// Documents matching `filter`, sorted, paged by `limit` and `offset` — or, in id order, by `after`: the last id
    /// of the previous page (keyset paging, which concurrent inserts and deletes do not shift).
    public func query(_ filter: Filter = .all, sort: [SortKey] = [], limit: Int? = nil, offset: Int = 0, after: String? = nil) async throws -> [Document] {
        if after != nil, !sort.isEmpty || offset != 0 {
            throw PolyglotError(.invalidArgument, "Dataset '\(name)': `after:` pages in id order, so it cannot be combined with sort keys or an offset.",
                                fix: "Drop `sort:` and `offset:` when paging with `after:`, or page sorted results with `offset:`.")
        }
        try runtime.checkFilter(filter)
        try runtime.checkFilter(.and(sort.map { .exists($0.path) }))
        if let limit, limit < 0 { throw PolyglotError(.invalidArgument, "limit \(limit) is negative.", fix: "Pass a limit of 0 or more, or nil.") }
        if offset < 0 { throw PolyglotError(.invalidArgument, "offset \(offset) is negative.", fix: "Pass an offset of 0 or more.") }
        let store = self.store
        let q = DocumentQuery(filter: filter, sort: sort, limit: limit, offset: offset, after: after)
        return try await runtime.measureScan("query", filter: sort.isEmpty ? filter : .and([filter] + sort.map { .exists($0.path) }), { try await store.query(q) }, returned: { $0.count },
                                             size: { ($0.count, $0.reduce(0) { $0 + $1.data.count }) })
    }

    public func count(_ filter: Filter = .all) async throws -> Int {
        try runtime.checkFilter(filter)
        let store = self.store
        return try await runtime.measureScan("count", filter: filter, { try await store.count(filter) }, returned: { _ in 1 }, size: { _ in (1, 0) })
    }

    /// Full-text search over the fields of the search projection, best first.
    public func search(_ text: String, filter: Filter = .all, limit: Int = 10) async throws -> [SearchHit] {
        try await runtime.search(text, filter: filter, limit: limit,
                                 missing: "Add `- { kind: search, engine: \(runtime.engineName), fields: [...] }` under its `projections:`.")
    }

    /// The `k` documents whose embeddings are nearest to `vector`, optionally among those matching `filter`.
    public func nearest(to vector: [Float], k: Int = 10, where filter: Filter = .all, exact: Bool = false) async throws -> [VectorHit] {
        guard let index = runtime.projectedVectors, let p = runtime.spec.projection(.vectors) else {
            throw PolyglotError(.missingCapability, "Dataset '\(name)' has no vectors projection.",
                                fix: "Add `- { kind: vectors, engine: \(runtime.engineName), fields: [...], dimension: 64 }` under its `projections:`.")
        }
        try VectorMath.validate(vector, dimension: p.dimension ?? vector.count, dataset: name)
        try runtime.checkFilter(filter)
        try Self.checkLimit(k)
        return try await runtime.readProjection(p, "nearest") { try await index.nearest(to: vector, k: k, filter: filter, exact: exact, ef: nil) }
    }

    /// Nearest by text: embeds `text` with the projection's embedder (the built-in hashing one unless it names another).
    public func nearest(text: String, k: Int = 10, where filter: Filter = .all) async throws -> [VectorHit] {
        guard let p = runtime.spec.projection(.vectors), !p.fields.isEmpty, let embedder = runtime.embedder else {
            throw PolyglotError(.missingCapability, "Dataset '\(name)' has no vectors projection that embeds text fields.",
                                fix: "Give its vectors projection `fields:` to embed, or call nearest(to:) with your own query vector.")
        }
        let vector: [Float]
        if let hashing = embedder as? HashingEmbedder {
            vector = hashing.embed(text)
        } else {
            // A remote model: measured, as `embed` on the embedder's name.
            vector = try await runtime.measure("embed", engine: p.embedder ?? EmbedderSpec.hashing,
                                               { try await embedder.embed([text]).first ?? [] }, size: { _ in (1, text.utf8.count) })
        }
        if vector.isEmpty {
            throw PolyglotError(.invalidArgument, "Dataset '\(name)': nearest(text:) was given an empty text.", fix: "Pass some words to search for.")
        }
        return try await nearest(to: vector, k: k, where: filter)
    }

    /// Documents linked from `id` by the graph projection, within `depth` hops.
    public func related(_ id: String, depth: Int = 1) async throws -> [TraversalStep] {
        guard let graph = runtime.projectedGraph, let p = runtime.spec.projection(.graph) else {
            throw PolyglotError(.missingCapability, "Dataset '\(name)' has no graph projection.",
                                fix: "Add `- { kind: graph, engine: \(runtime.engineName), edgeField: related }` under its `projections:`.")
        }
        try GraphCollection.checkDepth(depth)
        return try await runtime.readProjection(p, "related") { try await graph.traverse(from: id, maxDepth: depth, direction: .outgoing, label: p.edgeLabel) }
    }

    static func checkLimit(_ k: Int) throws {
        if !(1...10_000).contains(k) {
            throw PolyglotError(.invalidArgument, "A limit of \(k) is out of range.", fix: "Ask for 1 to 10000 results; page through larger sets with query(offset:).")
        }
    }
}

/// A documents dataset seen through a Codable type.
///
/// ```swift
/// struct Product: Codable, Sendable { var name: String; var price: Double }
/// let products = try db.documents("products", as: Product.self)
/// try await products.put("p1", Product(name: "Trail shoe", price: 89))
/// let p: Product? = try await products.get("p1")
/// ```
public struct TypedDocumentCollection<T: Codable & Sendable>: Sendable {
    public let base: DocumentCollection
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()

    init(base: DocumentCollection) { self.base = base }

    @discardableResult
    public func put(_ id: String, _ value: T) async throws -> ConsistencyToken {
        try await putMany([(id, value)])
    }

    @discardableResult
    public func putMany(_ values: [(id: String, value: T)]) async throws -> ConsistencyToken {
        let rt = base.runtime
        var docs: [(id: String, data: Data)] = []
        docs.reserveCapacity(values.count)
        for (id, value) in values {
            try rt.checkKey(id)
            let data = try encoder.encode(value)
            try rt.checkValueSize(data.count, key: id)
            if data.first != UInt8(ascii: "{") || !rt.spec.fields.isEmpty { try rt.checkDocument(try JSON(parsing: data), id: id) }
            docs.append((id, data))
        }
        return try await base.write(docs)
    }

    public func get(_ id: String) async throws -> T? {
        try await base.get(id)?.decode(as: T.self, using: decoder)
    }

    @discardableResult
    public func delete(_ id: String) async throws -> ConsistencyToken? { try await base.delete(id) }

    public func query(_ filter: Filter = .all, sort: [SortKey] = [], limit: Int? = nil, offset: Int = 0) async throws -> [(id: String, value: T)] {
        return try await base.query(filter, sort: sort, limit: limit, offset: offset).map { ($0.id, try $0.decode(as: T.self, using: decoder)) }
    }

    public func count(_ filter: Filter = .all) async throws -> Int { try await base.count(filter) }
}
