import Foundation
import Synchronization

/// Everything the facade keeps for one dataset: its store, projections, cache and telemetry recorders.
final class DatasetRuntime: Sendable {
    let spec: DatasetSpec
    let engineName: String
    let sourceEngine: any Engine
    let telemetry: Telemetry
    let documents: (any DocumentStore)?
    let keyValue: (any KeyValueStore)?
    let vectors: (any VectorStore)?
    let table: (any TableStore)?
    let graph: (any GraphStore)?
    let timeSeries: (any TimeSeriesStore)?
    let search: (any SearchIndex)?
    let projectedVectors: (any VectorStore)?
    let projectedGraph: (any GraphStore)?
    let cache: ReadThroughCache?
    /// For projections the relay keeps on other engines: each such engine's relay state (checkpoints).
    let relayState: [String: any KeyValueStore]
    /// Those engines, for the read barrier a projection read takes after its wait (see ``readProjection(_:_:)``).
    let relayTargets: [String: any Engine]
    /// What the relays running in this process have applied (reads waiting on a copy are woken by them).
    let relayProgress: RelayProgress
    /// What embeds text for the vectors projection (the hashing embedder unless the projection names another).
    let embedder: (any Embedder)?
    /// The advisor's sampler: key accesses, rows examined, field paths, scan timings.
    let observer: DatasetObserver
    private let recorders = Mutex<[String: Telemetry.Recorder]>([:])

    init(spec: DatasetSpec, engines: [String: any Engine], telemetry: Telemetry, embedder: (any Embedder)? = nil, sampleEvery: Int = 8,
         relayProgress: RelayProgress = RelayProgress()) throws {
        self.spec = spec
        self.relayProgress = relayProgress
        self.embedder = embedder
        let cacheEntries = spec.projection(.cache).flatMap { engines[$0.engine]?.spec.options["maxEntries"] }.flatMap { Int($0) }
        observer = telemetry.observer(dataset: spec.name, engine: spec.engine, model: spec.model, sampleEvery: sampleEvery,
                                      declaredFields: spec.fields.map(\.name), cacheSizes: cacheEntries.map { [$0] } ?? [])
        self.engineName = spec.engine
        self.telemetry = telemetry
        let engine = engines[spec.engine]!
        sourceEngine = engine
        documents = spec.model == .documents ? try engine.documentStore(for: spec) : nil
        keyValue = spec.model == .keyValue ? try engine.keyValueStore(for: spec) : nil
        vectors = spec.model == .vectors ? try engine.vectorStore(for: spec) : nil
        table = spec.model == .table ? try engine.tableStore(for: spec) : nil
        graph = spec.model == .graph ? try engine.graphStore(for: spec) : nil
        timeSeries = spec.model == .timeSeries ? try engine.timeSeriesStore(for: spec) : nil
        // A captured table's projections are derived from its rows' documents copy on the projection's engine.
        let derived = { (p: ProjectionSpec) in spec.model == .table ? RelayedCopy(dataset: spec, target: p.engine).copySpec : spec }
        search = try spec.projection(.search).map { try engines[$0.engine]!.searchIndex(for: derived($0)) }
        projectedVectors = try spec.projection(.vectors).map { try engines[$0.engine]!.projectedVectors(for: derived($0)) }
        projectedGraph = try spec.projection(.graph).map { try engines[$0.engine]!.projectedGraph(for: derived($0)) }
        var relayState: [String: any KeyValueStore] = [:]
        var relayTargets: [String: any Engine] = [:]
        for p in spec.projections where (p.kind != .cache && p.engine != spec.engine) || p.isEmbeddedByRelay {
            relayState[p.engine] = try engines[p.engine]!.keyValueStore(for: RelayedCopy.stateSpec(on: p.engine))
            relayTargets[p.engine] = engines[p.engine]!
        }
        self.relayState = relayState
        self.relayTargets = relayTargets
        if let p = spec.projection(.cache) {
            cache = ReadThroughCache(backend: try engines[p.engine]!.cacheBackend(), engine: p.engine, dataset: spec.name,
                                     ttl: p.ttl ?? .seconds(300), jitter: p.jitter,
                                     hits: telemetry.recorder(OperationKey(dataset: spec.name, engine: p.engine, operation: "cache.hit")),
                                     misses: telemetry.recorder(OperationKey(dataset: spec.name, engine: p.engine, operation: "cache.miss")))
        } else {
            cache = nil
        }
    }

    /// The telemetry recorder for an operation on this dataset's source engine (or on `engine`).
    func recorder(_ operation: String, engine: String? = nil) -> Telemetry.Recorder {
        guard let engine else {
            return recorders.withLock { map in
                if let r = map[operation] { return r }
                let r = telemetry.recorder(OperationKey(dataset: spec.name, engine: engineName, operation: operation))
                map[operation] = r
                return r
            }
        }
        let name = engine + "/" + operation
        return recorders.withLock { map in
            if let r = map[name] { return r }
            let r = telemetry.recorder(OperationKey(dataset: spec.name, engine: engine, operation: operation))
            map[name] = r
            return r
        }
    }

    func measure<R>(_ operation: String, engine: String? = nil, _ body: () async throws -> R,
                    size: (R) -> (rows: Int, bytes: Int) = { _ in (0, 0) }) async throws -> R {
        try await recorder(operation, engine: engine).measure(body, size: size)
    }

    /// Measures a point read and, for one read in `sampleEvery`, records its key and timing for the advisor.
    @inline(__always)
    func sampledRead<R>(_ key: String, _ body: () async throws -> R) async throws -> R {
        observer.simulateRead(key)
        guard observer.tick() else { return try await body() }
        let start = ContinuousClock.now
        let result = try await body()
        observer.recordRead(key, start: start, nanoseconds: Telemetry.nanoseconds(since: start))
        return result
    }

    /// Measures a scan-like operation (query, count, select, aggregate): its timing feeds the advisor's interference
    /// analysis, and one in `sampleEvery` also has the rows the engine examined measured (see ``RowsExamined``).
    func measureScan<R>(_ operation: String, filter: Filter?, _ body: () async throws -> R, returned: (R) -> Int,
                        size: (R) -> (rows: Int, bytes: Int) = { _ in (0, 0) }) async throws -> R {
        try await Self.measureScan(observer: observer, recorder: recorder(operation), operation, filter: filter, body, returned: returned, size: size)
    }

    static func measureScan<R>(observer: DatasetObserver, recorder: Telemetry.Recorder, _ operation: String, filter: Filter?,
                               _ body: () async throws -> R, returned: (R) -> Int,
                               size: (R) -> (rows: Int, bytes: Int)) async throws -> R {
        let start = ContinuousClock.now
        let result: R
        if observer.tickQuery() {
            let counter = RowsExamined()
            result = try await RowsExamined.$current.withValue(counter) { try await recorder.measure(body, size: size) }
            if counter.wasReported {
                observer.recordExamined(operation, filter: filter, examined: counter.count, returned: returned(result))
            }
        } else {
            result = try await recorder.measure(body, size: size)
        }
        observer.recordScan(operation, start: start, nanoseconds: Telemetry.nanoseconds(since: start), rows: returned(result))
        return result
    }

    /// Full-text search over the search projection, best first; `missing` says how to add one.
    func search(_ text: String, filter: Filter, limit: Int, missing: String) async throws -> [SearchHit] {
        guard let index = search, let p = spec.projection(.search) else {
            throw PolyglotError(.missingCapability, "Dataset '\(spec.name)' has no search projection.", fix: missing)
        }
        try checkFilter(filter)
        try DocumentCollection.checkLimit(limit)
        return try await readProjection(p, "search") { try await index.search(text, filter: filter, limit: limit) }
    }

    /// Runs `read`, a read of projection `p` measured as `operation` on its engine, after ``awaitProjection(_:)``;
    /// when that waited for a token's write, `read` carries the projection engine's read barrier
    /// (``Engine/readBarrier()``), so a replica serves it only once it has replayed the relay's commit that the
    /// checkpoint showed.
    func readProjection<R: Collection>(_ p: ProjectionSpec, _ operation: String, _ read: () async throws -> R) async throws -> R {
        func measured() async throws -> R { try await measure(operation, engine: p.engine, read, size: { ($0.count, 0) }) }
        guard try await awaitProjection(p), let engine = relayTargets[p.engine], let barrier = try await engine.readBarrier() else {
            return try await measured()
        }
        return try await ReadConsistency.$atLeast.withValue(barrier) { try await measured() }
    }

    /// Inside ``Polyglot/reading(atLeast:maxWait:_:)`` with a token of this dataset's engine, a read of a projection
    /// the relay keeps on another engine waits until the relay has applied the token's write, for at most
    /// ``ReadConsistency/maxWait``; past that it throws `.stale`, saying how far behind the projection is.
    /// Returns whether it checked a token against the relay's checkpoint (false: the read needs no wait).
    private func awaitProjection(_ p: ProjectionSpec) async throws -> Bool {
        // A captured dataset's projections follow the engine's log, whose positions are not outbox positions.
        guard let token = ReadConsistency.atLeast, token.engine == engineName, !spec.capture, let state = relayState[p.engine] else { return false }
        var copies: [RelayedCopy] = []
        if p.engine != spec.engine { copies.append(RelayedCopy(dataset: spec, target: p.engine)) }
        if p.isEmbeddedByRelay { copies.append(RelayedCopy(dataset: spec, target: p.engine, kind: .embeddings)) }
        guard !copies.isEmpty, let feed = (sourceEngine as? any ChangeFeedEngine)?.changeFeed() else { return false }
        let deadline = ContinuousClock.now + ReadConsistency.maxWait
        var applied: Int64 = 0
        var done = false
        for copy in copies {
            done = false
            while true {
                // The checkpoint decides, read the way the projection read will be (an engine with replicas may
                // serve both from a replica that has not replayed the relay's commit yet). A relay of this
                // instance wakes the wait when it commits; one in another process is seen every 5 ms.
                let checkpoint = try await RelayCheckpoint.load(copy, from: state)
                applied = checkpoint.position
                if try await feed.hasApplied(token.position, through: ChangeCursor(state: checkpoint.cursor), highest: applied) {
                    done = true
                    break
                }
                let now = ContinuousClock.now
                if now >= deadline { break }
                let pause = min(.milliseconds(5), deadline - now)
                if relayProgress.position(copy.name) >= token.position {
                    // This instance's relay has committed it, but the checkpoint read has not seen it (a replica).
                    try await Task.sleep(for: pause)
                } else {
                    await relayProgress.wait(copy.name, atLeast: token.position, timeout: pause)
                    try Task.checkCancellation()
                }
            }
            if !done { break }
        }
        if done { return true }
        let behind = applied < token.position
            ? "has applied the outbox up to position \(applied); the read asked for at least \(token.position) (\(token.position - applied) behind)"
            : "has applied positions up to \(applied) but not \(token.position) (its transaction committed after higher positions were applied); the read asked for it"
        throw PolyglotError(.stale, "The \(p.kind.rawValue) projection of '\(spec.name)' on '\(p.engine)' \(behind) and waited \(ReadConsistency.maxWait).",
                            fix: "Make sure a relay runs (Polyglot.run(), db.relay(), or `polyglot relay`), raise maxWait, or read the source of truth with get/query.",
                            retryable: true)
    }

    // MARK: Input rules

    func checkKey(_ key: String, what: String = "id") throws {
        if key.isEmpty {
            throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': an empty \(what) is not allowed.", fix: "Use a non-empty \(what).")
        }
        let n = key.utf8.count
        if n > spec.maxKeyBytes {
            throw PolyglotError(.limitExceeded, "Dataset '\(spec.name)': the \(what) is \(n) bytes; the limit is \(spec.maxKeyBytes).",
                                fix: "Use a shorter \(what) (hash long natural keys), or raise `maxKeyBytes:` for the dataset.")
        }
    }

    func checkValueSize(_ n: Int, key: String) throws {
        if n > spec.maxValueBytes {
            throw PolyglotError(.limitExceeded, "Dataset '\(spec.name)': the value for '\(key)' is \(n) bytes; the limit is \(spec.maxValueBytes).",
                                fix: "Store large blobs elsewhere and keep a reference, or raise `maxValueBytes:` for the dataset.")
        }
    }

    func checkTTL(_ ttl: Duration?) throws {
        if let ttl, ttl <= .zero {
            throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': ttl \(ttl) is not positive.",
                                fix: "Pass a positive ttl such as .seconds(30), or nil for no expiry.")
        }
        if let ttl, ttl > DataMap.longestDuration {
            throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': ttl \(ttl) is longer than 100 years.",
                                fix: "Pass nil for no expiry, or a ttl of at most 100 years.")
        }
    }

    /// Checks a document body: a JSON object whose declared fields have their declared types.
    func checkDocument(_ json: JSON, id: String) throws {
        guard case .object = json else {
            throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': document '\(id)' is a JSON \(json.typeName); documents must be JSON objects.",
                                fix: "Wrap the value in an object, e.g. {\"value\": ...}.")
        }
        try checkFields(json, key: id)
    }

    func checkFields(_ json: JSON, key: String) throws {
        for field in spec.fields {
            let value = json[FieldPath(field.name)]
            if value == nil || value == .null {
                if !field.nullable {
                    throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': '\(key)' has no value for required field '\(field.name)'.",
                                        fix: "Set '\(field.name)' (\(field.type.rawValue)), or declare it without '!' to allow null.")
                }
                continue
            }
            if field.type == .timestamp, Timestamp.seconds(value!) == nil, value!.doubleValue != nil || value!.stringValue != nil {
                throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': field '\(field.name)' of '\(key)' is \(value!.text), which is not a timestamp: seconds since 1970 or ISO 8601 text, in the years 1 to 9999.",
                                    fix: "Send seconds since 1970 (divide milliseconds by 1000) or ISO 8601 text such as 2026-11-30T12:00:00Z.")
            }
            if !field.type.accepts(value!) {
                throw PolyglotError(.invalidArgument, "Dataset '\(spec.name)': field '\(field.name)' of '\(key)' is a JSON \(value!.typeName), but it is declared \(field.type.rawValue).",
                                    fix: "Send a \(field.type.rawValue) for '\(field.name)', or change its declared type in the data map.")
            }
        }
    }

    /// Checks a filter's paths and, where fields are declared, that it names declared fields with fitting operands.
    func checkFilter(_ filter: Filter, allowing extra: Set<String> = []) throws {
        try filter.validate()
        guard !spec.fields.isEmpty else { return }
        let declared = spec.fields.map(\.name)
        func check(_ f: Filter) throws {
            switch f {
            case .all: return
            case .and(let fs), .or(let fs): try fs.forEach(check)
            case .not(let inner): try check(inner)
            case .exists(let p): try field(p)
            case .hasPrefix(let p, _):
                if let spec = try field(p), spec.type != .string, spec.type != .json {
                    throw mismatch(p, spec, "a string prefix")
                }
            case .compare(let p, _, let v):
                if let spec = try field(p), !spec.type.accepts(v) { throw mismatch(p, spec, "a \(v.typeName)", operand: v) }
            case .isIn(let p, let vs):
                if let spec = try field(p), let bad = vs.first(where: { !spec.type.accepts($0) }) { throw mismatch(p, spec, "a \(bad.typeName)", operand: bad) }
            }
        }
        @discardableResult
        func field(_ p: FieldPath) throws -> FieldSpec? {
            let name = p.description
            if extra.contains(name) { return nil }
            if let f = spec.field(name) { return f }
            if let f = spec.fields.first(where: { name.hasPrefix($0.name + ".") }), f.type == .json { return nil }
            let word = spec.model == .table ? "column" : "field"
            throw PolyglotError(.invalidFilter, "Dataset '\(spec.name)' has no declared \(word) '\(name)' (declared: \(declared.joined(separator: ", "))).",
                                fix: spec.model == .table ? "Filter on a declared column, or add the column to `columns:`."
                                    : "Filter on a declared field, or add '\(name)' under `fields:` in the data map (that also indexes it).")
        }
        func mismatch(_ p: FieldPath, _ f: FieldSpec, _ got: String, operand: JSON? = nil) -> PolyglotError {
            // A number or text the timestamp type refused is out of range or not ISO 8601, not of the wrong type.
            if f.type == .timestamp, let operand, operand.doubleValue != nil || operand.stringValue != nil {
                return PolyglotError(.invalidFilter, "Dataset '\(spec.name)': the filter compares timestamp '\(p)' with \(got) that is not a time: seconds since 1970 or ISO 8601 text, in the years 1 to 9999.",
                                     fix: "Compare '\(p)' with seconds since 1970 (divide milliseconds by 1000) or ISO 8601 text.")
            }
            return PolyglotError(.invalidFilter, "Dataset '\(spec.name)': the filter compares '\(p)', declared \(f.type.rawValue), with \(got).",
                          fix: "Compare '\(p)' with a \(f.type.rawValue) value.")
        }
        try check(filter)
    }

    func checkWrite() throws { try TransactionScope.checkWrite(to: engineName, dataset: spec.name) }
}

/// Read-through caching for one documents dataset: single flight on concurrent misses, and fills that never
/// put an older version over a newer one or over a newer invalidation.
final class ReadThroughCache: Sendable {
    let backend: any CacheBackend
    let engine: String
    let dataset: String
    let ttl: Duration
    let jitter: Double
    let hits: Telemetry.Recorder
    let misses: Telemetry.Recorder
    private let keyPrefix: String
    private let inFlight = Mutex<[String: Task<Document?, any Error>]>([:])

    init(backend: any CacheBackend, engine: String, dataset: String, ttl: Duration, jitter: Double,
         hits: Telemetry.Recorder, misses: Telemetry.Recorder) {
        self.backend = backend; self.engine = engine; self.dataset = dataset; self.ttl = ttl; self.jitter = jitter
        self.hits = hits; self.misses = misses
        keyPrefix = Self.keyPrefix(dataset)
    }

    /// Where the cache keeps the documents of `dataset`: this prefix, then the id.
    static func keyPrefix(_ dataset: String) -> String { "doc\u{1F}\(dataset)\u{1F}" }

    func key(_ id: String) -> String { keyPrefix + id }

    /// The cached document, or nil on a miss. In-process backends answer without an async hop.
    func lookup(_ id: String) async throws -> Document? {
        let k = key(id)
        switch backend.localLookup(k) {
        case .hit(let entry): return Document(id: id, version: entry.version, data: entry.data)
        case .miss: return nil
        case .notLocal:
            guard let entry = try await backend.lookup(k) else { return nil }
            return Document(id: id, version: entry.version, data: entry.data)
        }
    }

    /// Loads a missed document once for all concurrent callers and fills the cache.
    func load(_ id: String, load: @escaping @Sendable () async throws -> Document?) async throws -> Document? {
        let k = key(id)
        let (task, leader) = inFlight.withLock { map -> (Task<Document?, any Error>, Bool) in
            if let t = map[k] { return (t, false) }
            let backend = self.backend, ttl = self.ttl, jitter = self.jitter
            let t = Task<Document?, any Error> {
                let started = ContinuousClock.now
                let doc: Document?
                do {
                    doc = try await load()
                } catch {
                    await backend.loadAbandoned(k)
                    throw error
                }
                if let doc {
                    _ = try? await backend.fill(k, CachedEntry(version: doc.version, data: doc.data), ttl: ttl, jitter: jitter, loadStartedAt: started)
                } else {
                    await backend.loadAbandoned(k)
                }
                return doc
            }
            map[k] = t
            return (t, true)
        }
        defer {
            if leader { inFlight.withLock { map in if map[k] == task { map[k] = nil } } }
        }
        return try await task.value
    }

    func invalidate(_ id: String, version: Int64) async throws {
        let k = key(id)
        // A load already in flight may have read the old version: later callers must not join it.
        inFlight.withLock { _ = $0.removeValue(forKey: k) }
        try await backend.invalidate(k, version: version, ttl: ttl)
    }
}
