import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The entry point: opens every engine of a data map and routes each dataset operation to its engine,
/// with validation, caching and telemetry.
///
/// ```swift
/// var registry = EngineRegistry.builtIn
/// registry.register(SQLiteEngine.self)
/// let db = try await Polyglot(map: DataMap(contentsOf: "polyglot.yml"), registry: registry)
/// let products = try db.documents("products")
/// let token = try await products.put("p1", ["name": "Red shoe", "price": 59])
/// let p = try await products.get("p1")
/// try await db.transaction(on: "primary") {
///     try await db.documents("products").put("p2", ["name": "Blue shoe", "price": 49])
///     try await db.keyValue("sessions").set("s1", "p2")
/// }
/// ```
///
/// `Polyglot` is a swift-service-lifecycle `Service`: `run()` persists telemetry every
/// `telemetry.flushInterval` until cancelled, then flushes once more.
public final class Polyglot: Service, Sendable {
    public let map: DataMap
    public let telemetry: Telemetry
    let engines: [String: any Engine]
    let runtimes: [String: DatasetRuntime]
    let logger: Logger
    let historyStore: (any TelemetryHistoryStore)?
    /// The embedder of each dataset's vectors projection, by dataset name.
    let embedders: [String: any Embedder]
    /// What this instance's relays have applied, for reads waiting on a copy.
    let relayProgress = RelayProgress()
    /// When dataset sizes were last measured for the advisor (every ``sizeInterval`` at most).
    private let lastSizes = Mutex<Date?>(nil)
    /// When the telemetry history was last pruned (``AdvisorSettings/keepHistory``).
    private let lastPrune = Mutex<Date?>(nil)
    /// How often a telemetry flush also asks the engines how much each dataset holds.
    public static let sizeInterval: TimeInterval = 600

    /// Validates the map, opens its engines and prepares every dataset's schema.
    ///
    /// `embedders` supplies embedders in code, by the name a vectors projection gives as `embedder:`; they take
    /// precedence over those the map declares under `embedders:`.
    public init(map: DataMap, registry: EngineRegistry = .builtIn, embedders custom: [String: any Embedder] = [:],
                logger: Logger = Logger(label: "polyglot")) async throws {
        try map.validate(registry: registry, embedders: Set(custom.keys))
        var embedders: [String: any Embedder] = [:]
        for ds in map.datasets {
            guard let p = ds.projection(.vectors), p.vectorField == nil, let dimension = p.dimension else { continue }
            let name = p.embedder ?? EmbedderSpec.hashing
            if let e = custom[name] {
                guard e.dimension == dimension else {
                    throw PolyglotError(.invalidDataMap, "Dataset '\(ds.name)': embedder '\(name)' returns \(e.dimension)-dimensional vectors; its vectors projection holds \(dimension).",
                                        fix: "Set the projection's `dimension:` to \(e.dimension), or pass an embedder of dimension \(dimension).")
                }
                embedders[ds.name] = e
            } else if let spec = map.embedder(named: name), spec.kind == "openai" {
                embedders[ds.name] = try OpenAIEmbedder(spec: spec, dimension: dimension, logger: logger)
            } else {
                embedders[ds.name] = HashingEmbedder(dimension: dimension)
            }
        }
        self.embedders = embedders
        self.map = map
        self.logger = logger
        let telemetry = Telemetry()
        self.telemetry = telemetry
        var engines: [String: any Engine] = [:]
        do {
            for spec in map.engines {
                engines[spec.name] = try await registry.open(spec, context: EngineContext(logger: logger))
            }
            let copies = RelayedCopy.all(in: map)
            for copy in copies where copy.dataset.capture && !(engines[copy.dataset.engine] is any ChangeCaptureEngine) {
                throw PolyglotError(.missingCapability, "Dataset '\(copy.dataset.name)' sets `capture: true`, but its engine '\(copy.dataset.engine)' cannot capture changes from its log.",
                                    fix: "Place the dataset on a postgres engine, or remove `capture:`.")
            }
            for copy in copies where !copy.dataset.capture && !(engines[copy.dataset.engine] is any ChangeFeedEngine) {
                throw PolyglotError(.missingCapability, "Dataset '\(copy.dataset.name)' has projections on engine '\(copy.target)', but its engine '\(copy.dataset.engine)' has no change feed for the relay to read.",
                                    fix: "Put the dataset on a sqlite or postgres engine, or its projections on '\(copy.dataset.engine)'.")
            }
            for (name, engine) in engines {
                var specs = map.datasets.filter { $0.engine == name }
                // Projections on another engine than their dataset's are derived from a copy the relay keeps there.
                for copy in copies where copy.target == name {
                    switch copy.kind {
                    case .documents: specs.append(copy.copySpec)
                    case .analytics: specs.append(copy.analyticsSpec)
                    case .stream, .embeddings, .cache: break
                    }
                }
                if copies.contains(where: { $0.stateEngine == name }) { specs.append(RelayedCopy.stateSpec(on: name)) }
                try await engine.prepare(specs)
                if let cache = try? engine.cacheBackend() {
                    telemetry.registerCache(name) { cache.stats() }
                }
            }
            var runtimes: [String: DatasetRuntime] = [:]
            for ds in map.datasets {
                runtimes[ds.name] = try DatasetRuntime(spec: ds, engines: engines, telemetry: telemetry, embedder: embedders[ds.name],
                                                       sampleEvery: map.advisor.sampleEvery, relayProgress: relayProgress)
            }
            // Analytics projections are read as tables: db.table("<dataset>_analytics").
            for copy in copies where copy.kind == .analytics {
                runtimes[copy.analyticsSpec.name] = try DatasetRuntime(spec: copy.analyticsSpec, engines: engines, telemetry: telemetry,
                                                                       sampleEvery: map.advisor.sampleEvery)
            }
            self.runtimes = runtimes
            let storeName = map.telemetry.store
                ?? map.engines.first { (try? engines[$0.name]?.telemetryHistory()) != nil }?.name
            historyStore = storeName.flatMap { try? engines[$0]?.telemetryHistory() }
        } catch {
            for engine in engines.values { try? await engine.close() }
            throw error
        }
        self.engines = engines
        logger.debug("polyglot opened", metadata: ["engines": "\(map.engines.count)", "datasets": "\(map.datasets.count)"])
    }

    func runtime(_ name: String, _ model: DataModel, _ operation: @autoclosure () -> String) throws -> DatasetRuntime {
        guard let rt = runtimes[name] else { throw PolyglotError.unknownDataset(name, known: Array(runtimes.keys)) }
        guard rt.spec.model == model else { throw PolyglotError.wrongModel(name, is: rt.spec.model, wanted: model, operation: operation()) }
        return rt
    }

    /// The open engine named `name` in the data map, for engine-specific features and statistics.
    ///
    /// ```swift
    /// let pg = try db.engine("primary") as? PostgresEngine
    /// ```
    public func engine(_ name: String) throws -> any Engine {
        guard let e = engines[name] else {
            throw PolyglotError(.unknownEngine, "Unknown engine '\(name)' (engines: \(engines.keys.sorted().joined(separator: ", "))).",
                                fix: "Name an engine declared under `engines:`.")
        }
        return e
    }

    /// A documents dataset as untyped JSON.
    public func documents(_ name: String) throws -> DocumentCollection {
        DocumentCollection(runtime: try runtime(name, .documents, "documents(\"\(name)\")"))
    }

    /// A documents dataset through a Codable type.
    public func documents<T: Codable & Sendable>(_ name: String, as type: T.Type) throws -> TypedDocumentCollection<T> {
        TypedDocumentCollection(base: try documents(name))
    }

    public func keyValue(_ name: String) throws -> KeyValueCollection {
        KeyValueCollection(runtime: try runtime(name, .keyValue, "keyValue(\"\(name)\")"))
    }

    public func vectors(_ name: String) throws -> VectorCollection {
        VectorCollection(runtime: try runtime(name, .vectors, "vectors(\"\(name)\")"))
    }

    public func table(_ name: String) throws -> TableCollection {
        TableCollection(runtime: try runtime(name, .table, "table(\"\(name)\")"))
    }

    public func graph(_ name: String) throws -> GraphCollection {
        GraphCollection(runtime: try runtime(name, .graph, "graph(\"\(name)\")"))
    }

    public func timeSeries(_ name: String) throws -> TimeSeriesCollection {
        TimeSeriesCollection(runtime: try runtime(name, .timeSeries, "timeSeries(\"\(name)\")"))
    }

    /// The cache backend behind a dataset's cache projection (for diagnostics and tests).
    public func cacheBackend(for dataset: String) throws -> any CacheBackend {
        guard let cache = try runtime(dataset, .documents, "cacheBackend(for:)").cache else {
            throw PolyglotError(.missingCapability, "Dataset '\(dataset)' has no cache projection.", fix: "Add `- { kind: cache, engine: cache }` under its `projections:`.")
        }
        return cache.backend
    }

    /// Parameterized SQL on a SQL engine, measured under the dataset name `sql`.
    ///
    /// ```swift
    /// let rows = try await db.sql(on: "primary", "SELECT customer, sum(total) AS t FROM orders WHERE total > ? GROUP BY customer", [100])
    /// ```
    public func sql(on engineName: String, _ statement: String, _ parameters: [JSON] = []) async throws -> [Row] {
        let executor = try engine(engineName).sqlExecutor()
        let observer = telemetry.observer(dataset: "sql", engine: engineName, sampleEvery: map.advisor.sampleEvery)
        return try await DatasetRuntime.measureScan(observer: observer, recorder: telemetry.recorder(OperationKey(dataset: "sql", engine: engineName, operation: "execute")),
                                                    "execute", filter: nil, { try await executor.execute(statement, parameters) },
                                                    returned: { $0.count }, size: { ($0.count, 0) })
    }

    /// Runs `body` as one ACID transaction on one engine. Every write that `body` makes to datasets of that
    /// engine, through this `Polyglot`, commits together or not at all. There are no cross-engine transactions:
    /// writing a dataset of another engine inside `body` throws.
    public func transaction<R: Sendable>(on engineName: String, _ body: @Sendable () async throws -> R) async throws -> R {
        let engine = try engine(engineName)
        return try await telemetry.recorder(OperationKey(dataset: "*", engine: engineName, operation: "transaction")).measure {
            try await TransactionScope.$current.withValue(engineName) {
                try await engine.withTransaction(body)
            }
        }
    }

    /// Liveness of every engine, with the time its probe took.
    public func health() async -> [(engine: String, ok: Bool, latency: Duration, error: String?)] {
        var out: [(String, Bool, Duration, String?)] = []
        for name in engines.keys.sorted() {
            let start = ContinuousClock.now
            do { try await engines[name]!.ping(); out.append((name, true, .now - start, nil)) }
            catch { out.append((name, false, .now - start, "\(error)")) }
        }
        return out
    }

    /// Persists the telemetry recorded since the previous flush into the telemetry store engine.
    ///
    /// It also persists the advisor's observations of the interval (sampled keys, rows examined, field paths, scan
    /// timings, see ``WorkloadObservation``), with each dataset's size every ``sizeInterval`` and each relayed
    /// projection's lag. `now` closes the interval; tests pass it to lay intervals on chosen days.
    public func flushTelemetry(now: Date = Date()) async throws {
        guard let historyStore else { return }
        let records = telemetry.drainInterval(now: now)
        let measureSizes = Self.isDue(lastSizes, now: now, every: Self.sizeInterval)
        var observations = telemetry.drainObservations(now: now, always: measureSizes ? Set(map.datasets.map(\.name)) : [])
        if measureSizes {
            for i in observations.indices {
                guard let spec = map.dataset(named: observations[i].dataset), spec.engine == observations[i].engine,
                      let engine = engines[spec.engine] else { continue }
                do { observations[i].size = try await engine.size(of: spec) } catch {
                    logger.debug("dataset size unavailable", metadata: ["dataset": "\(spec.name)", "error": "\(error)"])
                }
            }
        }
        for copy in RelayedCopy.all(in: map) {
            guard let i = observations.firstIndex(where: { $0.dataset == copy.dataset.name && $0.engine == copy.dataset.engine }),
                  let runtime = runtimes[copy.dataset.name], runtime.observer.lastWritePosition > 0,
                  let state = try? engines[copy.stateEngine]?.keyValueStore(for: RelayedCopy.stateSpec(on: copy.stateEngine)),
                  let checkpoint = try? await RelayCheckpoint.load(copy, from: state) else { continue }
            observations[i].projectionLag[copy.name] = max(0, runtime.observer.lastWritePosition - checkpoint.position)
        }
        if !records.isEmpty {
            do { try await historyStore.append(records) } catch {
                telemetry.restore(records)
                throw error
            }
        }
        if !observations.isEmpty {
            do { try await historyStore.appendObservations(observations) } catch {
                logger.warning("advisor observations not persisted", metadata: ["error": "\(error)"])
            }
        }
        // Keep the history bounded (advisor.keepHistory), checking at most once an hour.
        if Self.isDue(lastPrune, now: now, every: 3600) {
            let cutoff = now.addingTimeInterval(-Double(map.advisor.keepHistory.components.seconds))
            do { try await historyStore.deleteHistory(before: cutoff) } catch {
                logger.warning("old telemetry not deleted", metadata: ["error": "\(error)", "before": "\(cutoff)"])
            }
        }
    }

    /// Whether `every` seconds have passed since `last` (or it was never set, or the clock went back); if so,
    /// `last` becomes `now`.
    private static func isDue(_ last: borrowing Mutex<Date?>, now: Date, every: TimeInterval) -> Bool {
        last.withLock { last in
            if let l = last, now >= l, now.timeIntervalSince(l) < every { return false }
            last = now
            return true
        }
    }

    /// The advisor's observations persisted by this and earlier processes (see ``WorkloadObservation``).
    public func observationHistory(since: Date = .distantPast) async throws -> [WorkloadObservation] {
        guard let historyStore else {
            throw PolyglotError(.missingCapability, "No engine of this data map keeps telemetry history.",
                                fix: "Add a sqlite engine, or set `telemetry.store:` to one.")
        }
        return try await historyStore.observations(since: since)
    }

    /// Persists observations measured elsewhere (another process, an import) into the telemetry store, where the
    /// advisor reads them like its own. Tests use it for volumes a machine cannot hold.
    public func recordObservations(_ observations: [WorkloadObservation]) async throws {
        guard let historyStore else {
            throw PolyglotError(.missingCapability, "No engine of this data map keeps telemetry history.",
                                fix: "Add a sqlite engine, or set `telemetry.store:` to one.")
        }
        try await historyStore.appendObservations(observations)
    }

    /// Telemetry history persisted by this and earlier processes.
    public func telemetryHistory(since: Date = .distantPast) async throws -> [TelemetryRecord] {
        guard let historyStore else {
            throw PolyglotError(.missingCapability, "No engine of this data map keeps telemetry history.",
                                fix: "Add a sqlite engine, or set `telemetry.store:` to one.")
        }
        return try await historyStore.records(since: since)
    }

    /// Housekeeping that `run()` does every flush interval: deletes time-series samples past their dataset's
    /// `retention:` and lets each engine prune its logs: outbox events older than `outboxRetention` go, except
    /// those a relayed copy, or a rebuild of one that is running, has not read yet.
    public func maintain(now: Date = Date()) async throws {
        for ds in map.datasets where ds.model == .timeSeries && ds.retention != nil {
            try await timeSeries(ds.name).applyRetention(now: now)
        }
        // Outbox events a relayed copy has not read yet are kept, however old.
        var readers: [String: [OutboxReader]] = [:]
        // (A captured dataset's copies read the engine's own log, not the outbox.)
        for copy in RelayedCopy.all(in: map) where !copy.dataset.capture {
            let state = try engines[copy.stateEngine]!.keyValueStore(for: RelayedCopy.stateSpec(on: copy.stateEngine))
            let checkpoint = try await RelayCheckpoint.load(copy, from: state)
            readers[copy.dataset.engine, default: []].append(OutboxReader(cursor: ChangeCursor(state: checkpoint.cursor), highest: checkpoint.position))
            // A rebuild of the copy running (here or in another process) reads from its own cursor.
            if let rebuild = try await RelayCheckpoint.loadRebuild(copy, from: state) {
                readers[copy.dataset.engine, default: []].append(OutboxReader(cursor: ChangeCursor(state: rebuild.cursor), highest: rebuild.position))
            }
        }
        for name in engines.keys.sorted() { try await engines[name]!.maintain(now: now, outboxReaders: readers[name] ?? []) }
    }

    /// Until cancelled (or graceful shutdown): persists telemetry and runs ``maintain(now:)`` every flush interval,
    /// and, when the map has projections on other engines than their datasets', runs the ``Relay`` in-process
    /// (several processes may: a lease per copy decides which applies it). Pass `relay: nil` to
    /// ``run(relay:)`` when a standalone `polyglot relay` does that job instead.
    public func run() async throws { try await run(relay: RelayOptions()) }

    public func run(relay options: RelayOptions?) async throws {
        let relay = options.map { self.relay($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let relay, !relay.copies.isEmpty { group.addTask { try await relay.run() } }
            group.addTask {
                let interval = self.map.telemetry.flushInterval
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    try? await Task.sleep(for: interval)
                    do { try await self.flushTelemetry() } catch { self.logger.warning("telemetry flush failed", metadata: ["error": "\(error)"]) }
                    do { try await self.maintain() } catch { self.logger.warning("maintenance failed", metadata: ["error": "\(error)"]) }
                }
                try? await self.flushTelemetry()
            }
            try await group.waitForAll()
        }
    }

    /// Flushes telemetry and closes every engine.
    public func close() async throws {
        do { try await flushTelemetry() } catch { logger.warning("telemetry flush failed", metadata: ["error": "\(error)"]) }
        for engine in engines.values { try await engine.close() }
    }
}

/// Which engine's transaction the current task is inside.
enum TransactionScope {
    @TaskLocal static var current: String?

    static func checkWrite(to engine: String, dataset: String) throws {
        if let current, current != engine {
            throw PolyglotError(.transactionFailed,
                                "Dataset '\(dataset)' lives on engine '\(engine)', but this transaction is on '\(current)'. Polyglot has no cross-engine transactions.",
                                fix: "Write '\(dataset)' after the transaction commits; derived copies on other engines are kept in step by projections.")
        }
    }
}
