import Polyglot
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An embedded approximate-nearest-neighbour index: a Hierarchical Navigable Small World graph
/// (Malkov & Yashunin), in pure Swift.
///
/// ```swift
/// let index = try HNSWIndex(HNSWConfiguration(dimension: 3, metric: .cosine))
/// try index.upsert("a", [1, 0, 0])
/// try index.upsert("b", [0, 1, 0])
/// let hits = try index.search([0.9, 0.1, 0], k: 1)        // [("a", 0.006...)]
/// let cheap = try index.search(q, k: 10, filter: { $0.hasPrefix("shoe-") })
/// try index.save(to: "vectors.hnsw")
/// let again = try HNSWIndex.load(from: "vectors.hnsw")
/// ```
///
/// **Distances** are "smaller is closer" for every metric and match `VectorMath.distance`:
/// `.l2` is the Euclidean distance (the square root; the graph itself works on squared distances),
/// `.cosine` is `1 - cos`, `.innerProduct` is `-dot`. Cosine rows are stored normalized, so `vector(for:)`
/// returns the stored unit row times the original length (equal to the input up to float rounding).
///
/// **Concurrency.** Any number of readers (`search`, `exactSearch`, `vector(for:)`, `save`) run in parallel;
/// writers (`upsert`, `delete`, `compact`) are serialized and exclude readers while they change the graph
/// (a batch upsert lets readers in between chunks of 64 vectors; `upsert(_:threads:)` builds with several
/// threads and holds the write lock for the whole batch). A search filter runs under the read lock:
/// it may read this index but must not write to it.
///
/// **Deletes** are tombstones: the node keeps routing searches but never appears in results. Replacing a
/// vector tombstones the old node. `compact()` rebuilds the graph without tombstones; call it when
/// `deletedCount` becomes a large fraction of `count`.
public final class HNSWIndex: Sendable {
    /// The parameters this index was built with.
    public let configuration: HNSWConfiguration

    let lock = ReadWriteLock()
    let writer = PlainMutex()
    let box: GraphBox
    let pool: ScratchPool

    /// Creates an empty index. Throws `.invalidArgument` when a parameter is out of range.
    public init(_ configuration: HNSWConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        let graph = HNSWGraph(dimension: configuration.dimension, metric: configuration.metric, m: configuration.m,
                              efConstruction: max(configuration.efConstruction, configuration.m),
                              seed: configuration.seed)
        box = GraphBox(graph)
        pool = ScratchPool(paddedDimension: graph.paddedDimension)
    }

    init(configuration: HNSWConfiguration, graph: HNSWGraph) {
        self.configuration = configuration
        box = GraphBox(graph)
        pool = ScratchPool(paddedDimension: graph.paddedDimension)
    }

    // MARK: reading

    /// Live (not deleted) vectors.
    public var count: Int { lock.withReadLock { box.graph.liveCount } }

    /// Tombstoned nodes still in the graph; `compact()` removes them.
    public var deletedCount: Int { lock.withReadLock { box.graph.deletedCount } }

    /// Bytes held by the index: vectors, links, ids and bookkeeping (capacity included).
    public var memoryFootprint: Int { lock.withReadLock { box.graph.memoryFootprint } }

    /// `memoryFootprint` divided by the number of nodes (live and tombstoned); 0 when empty.
    public var bytesPerVector: Double {
        lock.withReadLock {
            let g = box.graph
            return g.nodeCount == 0 ? 0 : Double(g.memoryFootprint) / Double(g.nodeCount)
        }
    }

    /// The stored vector for `id`, or nil. For cosine it is the input up to float rounding.
    public func vector(for id: String) -> [Float]? {
        lock.withReadLock {
            let g = box.graph
            guard let node = g.nodeOf[id] else { return nil }
            return g.originalVector(node)
        }
    }

    /// Whether `id` is present and not deleted.
    public func contains(_ id: String) -> Bool {
        lock.withReadLock { box.graph.nodeOf[id] != nil }
    }

    // MARK: writing

    /// Inserts `vector` under `id`, or replaces the vector `id` had (the old one is gone from results).
    ///
    /// Throws `.invalidVector` when the length is not `configuration.dimension` or a component is NaN or
    /// infinite; the index is unchanged then.
    public func upsert(_ id: String, _ vector: [Float]) throws {
        try validate(vector, role: "vector for id '\(id)'")
        writer.withLock {
            lock.withWriteLock { insertLocked(id, vector) }
        }
    }

    /// Upserts many vectors. All are validated first: if any is invalid, nothing is inserted.
    /// Later entries win over earlier ones with the same id.
    public func upsert(_ batch: [(id: String, vector: [Float])]) throws {
        for item in batch { try validate(item.vector, role: "vector for id '\(item.id)'") }
        writer.withLock {
            var start = 0
            while start < batch.count {
                let end = min(batch.count, start + 64)
                lock.withWriteLock {
                    for i in start..<end { insertLocked(batch[i].id, batch[i].vector) }
                }
                start = end
            }
        }
    }

    /// Inserts a batch using `threads` worker threads (default: active processor count). Same results
    /// contract as `upsert(_ batch:)`: ids already present are replaced; invalid vectors are rejected
    /// before anything changes; later entries win over earlier ones with the same id.
    ///
    /// Pass `threads: 0` (or any value below 1) for the active processor count. Unlike `upsert(_ batch:)`,
    /// readers wait for the whole batch (the write lock is held throughout), and the graph differs from
    /// a serial build of the same batch (insertion order is not deterministic), with the same recall.
    /// Duplicate ids within the batch do not leave tombstones: only the last entry for an id is inserted.
    public func upsert(_ batch: [(id: String, vector: [Float])], threads: Int) throws {
        for item in batch { try validate(item.vector, role: "vector for id '\(item.id)'") }
        let workers = threads >= 1 ? threads : HNSWIndex.activeProcessorCount
        writer.withLock {
            lock.withWriteLock {
                let g = box.graph
                // Only the last entry per id counts.
                var last: [String: Int] = [:]
                last.reserveCapacity(batch.count)
                for (i, item) in batch.enumerated() { last[item.id] = i }
                var chosen: [Int] = []
                chosen.reserveCapacity(last.count)
                for (i, item) in batch.enumerated() where last[item.id] == i {
                    if let old = g.nodeOf[item.id] {
                        if g.originalVector(old) == item.vector { continue }
                        g.markDeleted(old)
                        g.nodeOf[item.id] = nil
                    }
                    chosen.append(i)
                }
                guard !chosen.isEmpty else { return }
                let first = g.nodeCount
                g.reserve(first + chosen.count)
                g.ids.reserveCapacity(first + chosen.count)
                g.nodeOf.reserveCapacity(g.nodeOf.count + chosen.count)
                for i in chosen {
                    batch[i].vector.withUnsafeBufferPointer { g.appendUnlinked(id: batch[i].id, vector: $0) }
                }
                g.linkParallel(from: first, threads: workers, pool: pool)
            }
        }
    }

    static var activeProcessorCount: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Reserves room for `capacity` nodes (live and tombstoned), so a bulk load neither regrows nor
    /// over-allocates. Optional: the index grows by itself.
    public func reserveCapacity(_ capacity: Int) {
        writer.withLock {
            lock.withWriteLock {
                let g = box.graph
                g.reserve(capacity)
                g.ids.reserveCapacity(capacity)
                g.nodeOf.reserveCapacity(capacity)
            }
        }
    }

    /// Deletes `id`. Returns whether it was present. Deleted ids never come back in results.
    @discardableResult
    public func delete(_ id: String) -> Bool {
        writer.withLock {
            lock.withWriteLock {
                let g = box.graph
                guard let node = g.nodeOf.removeValue(forKey: id) else { return false }
                g.markDeleted(node)
                return true
            }
        }
    }

    /// Rebuilds the graph without tombstones. Readers keep searching the old graph while the new one is
    /// built; the swap itself is instant. Results afterwards are the same set of live ids.
    public func compact() throws {
        writer.withLock {
            let fresh: HNSWGraph = lock.withReadLock {
                let g = box.graph
                let h = HNSWGraph(dimension: g.dimension, metric: g.metric, m: g.m, efConstruction: g.efConstruction,
                                  seed: g.random.state, capacity: max(16, g.liveCount))
                var buffer = [Float](repeating: 0, count: g.dimension)
                for i in 0..<g.nodeCount {
                    let node = Int32(i)
                    if g.isDeleted(node) { continue }
                    let src = g.row(node).assumingMemoryBound(to: Float.self)
                    for j in 0..<g.dimension { buffer[j] = src[j] }
                    buffer.withUnsafeBufferPointer { h.insert(id: g.ids[i], vector: $0) }
                    // Keep the caller's original length for cosine rows (the row is already unit length).
                    h.norms[h.nodeCount - 1] = g.norms[i]
                }
                return h
            }
            lock.withWriteLock { box.graph = fresh }
        }
    }

    private func insertLocked(_ id: String, _ vector: [Float]) {
        let g = box.graph
        if let old = g.nodeOf[id] {
            if g.originalVector(old) == vector { return }
            g.markDeleted(old)
            g.nodeOf[id] = nil
        }
        vector.withUnsafeBufferPointer { g.insert(id: id, vector: $0) }
    }

    func validate(_ v: [Float], role: String) throws {
        let d = configuration.dimension
        if v.count != d {
            throw PolyglotError(.invalidVector, "The \(role) has \(v.count) components; this index holds \(d)-dimensional vectors.",
                                fix: "Send vectors of length \(d), or create the index with the dimension your model produces.")
        }
        for i in v.indices where !v[i].isFinite {
            throw PolyglotError(.invalidVector, "Component \(i) of the \(role) is \(v[i]); components must be finite numbers.",
                                fix: "Check the embedding model's output; replace NaN or infinite values before storing or querying.")
        }
    }

    // MARK: searching

    /// The `k` nearest live vectors to `query`, closest first (approximate).
    ///
    /// - Parameters:
    ///   - ef: candidate-list size for this query (default `configuration.efSearch`; at least `k` is used).
    ///   - filter: only ids for which it returns true are returned. Selective filters keep their recall:
    ///     the index estimates the filter's selectivity on a sample; when few ids pass (under 3% or fewer
    ///     than `2 * ef` expected matches) it answers with an exact scan of the matching ids, otherwise it
    ///     searches the graph, traversing rejected nodes until it has `ef` matches (and falls back to the
    ///     exact scan if the graph yields fewer than `k`).
    /// - Throws: `.invalidVector` for a wrong length or NaN/infinite components; `.invalidArgument` when
    ///   `k` or `ef` is below 1.
    public func search(_ query: [Float], k: Int, ef: Int? = nil,
                       filter: (@Sendable (String) -> Bool)? = nil) throws -> [(id: String, distance: Float)] {
        try validate(query, role: "query vector")
        try checkK(k)
        let efValue = ef ?? configuration.efSearch
        guard VectorIndexSpec.efRange.contains(efValue) else {
            throw PolyglotError(.invalidArgument, "ef = \(efValue); it must be 1...\(VectorIndexSpec.efRange.upperBound).",
                                fix: "Pass ef of at least k (for example 64), or omit it to use configuration.efSearch.")
        }
        return lock.withReadLock {
            let g = box.graph
            guard g.liveCount > 0 else { return [] }
            let scratch = pool.take(nodes: g.nodeCount)
            defer { pool.give(scratch) }
            query.withUnsafeBufferPointer { g.prepareQuery($0, into: scratch) }
            let efUsed = max(efValue, k)
            if let filter {
                let admit: (Int32) -> Bool = { filter(g.ids[Int($0)]) }
                if useExactScan(g, filter: admit, ef: efUsed) {
                    runExact(g, scratch: scratch, k: k, filter: admit)
                } else {
                    runSearch(g, scratch: scratch, k: k, ef: efUsed, filter: admit)
                    if scratch.sorted.count < min(k, g.liveCount) {
                        runExact(g, scratch: scratch, k: k, filter: admit)
                    }
                }
            } else {
                runSearch(g, scratch: scratch, k: k, ef: efUsed, filter: nil)
            }
            return scratch.sorted.map { (id: g.ids[Int($0.node)], distance: g.publicDistance($0.distance)) }
        }
    }

    /// The exact `k` nearest live vectors (a full scan), closest first. Use it to measure recall.
    public func exactSearch(_ query: [Float], k: Int,
                            filter: (@Sendable (String) -> Bool)? = nil) throws -> [(id: String, distance: Float)] {
        try validate(query, role: "query vector")
        try checkK(k)
        return lock.withReadLock {
            let g = box.graph
            guard g.liveCount > 0 else { return [] }
            let scratch = pool.take(nodes: g.nodeCount)
            defer { pool.give(scratch) }
            query.withUnsafeBufferPointer { g.prepareQuery($0, into: scratch) }
            if let filter {
                runExact(g, scratch: scratch, k: k, filter: { filter(g.ids[Int($0)]) })
            } else {
                runExact(g, scratch: scratch, k: k, filter: nil)
            }
            return scratch.sorted.map { (id: g.ids[Int($0.node)], distance: g.publicDistance($0.distance)) }
        }
    }

    private func checkK(_ k: Int) throws {
        guard k >= 1 else {
            throw PolyglotError(.invalidArgument, "k = \(k); a nearest-neighbour search needs k of at least 1.",
                                fix: "Ask for k >= 1 results (for example 10).")
        }
    }

    /// Selectivity below which a filtered search scans the matching ids exactly.
    static let exactSelectivity = 0.03
    static let selectivitySample = 256

    /// Estimates the filter's selectivity on an evenly spread sample of live nodes.
    private func useExactScan(_ g: HNSWGraph, filter: (Int32) -> Bool, ef: Int) -> Bool {
        if g.liveCount <= 4 * ef { return true }
        let n = g.nodeCount
        let sample = min(HNSWIndex.selectivitySample, g.liveCount)
        let step = max(1, n / sample)
        var seen = 0, passed = 0
        var i = (n / sample) / 2
        var probes = 0
        while seen < sample && probes < n {
            let node = Int32(i % n)
            if !g.isDeleted(node) {
                seen += 1
                if filter(node) { passed += 1 }
            }
            i += step
            probes += 1
            if i >= n { i = (i % n) + 1 }
        }
        guard seen > 0, passed > 0 else { return true }
        let selectivity = Double(passed) / Double(seen)
        let expected = selectivity * Double(g.liveCount)
        return selectivity < HNSWIndex.exactSelectivity || expected < Double(2 * ef)
    }

    private func runSearch(_ g: HNSWGraph, scratch: SearchScratch, k: Int, ef: Int, filter: ((Int32) -> Bool)?) {
        switch g.metric {
        case .l2: g.search(L2SquaredKernel.self, scratch: scratch, k: k, ef: ef, filter: filter)
        case .cosine, .innerProduct: g.search(NegativeDotKernel.self, scratch: scratch, k: k, ef: ef, filter: filter)
        }
    }

    private func runExact(_ g: HNSWGraph, scratch: SearchScratch, k: Int, filter: ((Int32) -> Bool)?) {
        switch g.metric {
        case .l2: g.exactSearch(L2SquaredKernel.self, scratch: scratch, k: k, filter: filter)
        case .cosine, .innerProduct: g.exactSearch(NegativeDotKernel.self, scratch: scratch, k: k, filter: filter)
        }
    }
}

/// Holds the current graph so `compact()` can swap it. Guarded by `HNSWIndex.lock`.
final class GraphBox: @unchecked Sendable {
    var graph: HNSWGraph
    init(_ graph: HNSWGraph) { self.graph = graph }
}
