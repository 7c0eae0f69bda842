import Foundation
import Logging

/// One running database Polyglot talks to, named in the data map.
///
/// An engine module provides a type conforming to ``EngineFactory`` and registers it in an ``EngineRegistry``.
/// Every store accessor has a default that throws `.missingCapability`, so an engine implements only what it declares.
public protocol Engine: Sendable {
    var spec: EngineSpec { get }
    var capabilities: Set<Capability> { get }

    /// Creates or upgrades the schema of the datasets placed on this engine. Idempotent; safe when
    /// several processes start together.
    func prepare(_ datasets: [DatasetSpec]) async throws

    func documentStore(for dataset: DatasetSpec) throws -> any DocumentStore
    func keyValueStore(for dataset: DatasetSpec) throws -> any KeyValueStore
    func vectorStore(for dataset: DatasetSpec) throws -> any VectorStore
    func tableStore(for dataset: DatasetSpec) throws -> any TableStore
    func graphStore(for dataset: DatasetSpec) throws -> any GraphStore
    func timeSeriesStore(for dataset: DatasetSpec) throws -> any TimeSeriesStore
    /// The search projection of a documents dataset.
    func searchIndex(for dataset: DatasetSpec) throws -> any SearchIndex
    /// The vectors projection of a documents dataset: nearest-neighbour search over its embeddings.
    func projectedVectors(for dataset: DatasetSpec) throws -> any VectorStore
    /// The graph projection of a documents dataset.
    func projectedGraph(for dataset: DatasetSpec) throws -> any GraphStore
    func cacheBackend() throws -> any CacheBackend
    /// Where a `stream` projection publishes changes.
    func streamPublisher() throws -> any StreamPublisher
    func sqlExecutor() throws -> any SQLExecutor
    /// Where telemetry history is kept, if this engine can keep it.
    func telemetryHistory() throws -> any TelemetryHistoryStore
    /// How much a dataset placed on this engine holds (rows, bytes, vectors, index bytes), for the advisor.
    /// `nil` when the engine cannot tell cheaply.
    func size(of dataset: DatasetSpec) async throws -> DatasetSize?

    /// Runs `body` in one ACID transaction. Store calls on this engine made inside `body`, from the same task,
    /// join the transaction. A thrown error rolls everything back.
    func withTransaction<R: Sendable>(_ body: @Sendable () async throws -> R) async throws -> R

    /// Replaces the documents dataset `live` (its table and the projections this engine derives from it) by
    /// `shadow`, a copy prepared and filled alongside: `live`'s tables are dropped and `shadow`'s take their names,
    /// in one transaction (joining the caller's), so readers see the old copy or the new one, never a mix.
    /// Used by ``Relay/rebuild(_:progress:)``.
    func replaceDataset(_ live: DatasetSpec, with shadow: DatasetSpec) async throws
    /// Drops a documents dataset's tables (and derived projections) on this engine: a rebuild's abandoned shadow.
    func dropDataset(_ dataset: DatasetSpec) async throws

    /// Periodic housekeeping, called by ``Polyglot/maintain(now:)``: pruning logs, expiring data.
    func maintain(now: Date) async throws
    /// The same, told the checkpoints of the relayed copies that read this engine's outbox: an engine keeps every
    /// event one of them has not read, however old. SQLite keeps positions above the lowest `highest` (positions
    /// follow commit order there); PostgreSQL asks each reader's snapshots, since a lower position can commit after
    /// a higher one was applied. The default, for engines without an outbox, is ``maintain(now:)``.
    func maintain(now: Date, outboxReaders: [OutboxReader]) async throws

    /// The token of a write at `position` in this engine's change log. Engines with read replicas add what a
    /// replica must have replayed to serve a read that carries it.
    func consistencyToken(position: Int64) -> ConsistencyToken
    /// A token that makes a read of this engine see every commit made so far (for an engine with read replicas,
    /// the primary's current log position); nil when every read already does. A read of a relayed projection
    /// carries it once the relay's checkpoint shows the write: the checkpoint may have been read on one replica
    /// and the projection would otherwise be read on another that has not replayed the relay's commit yet.
    func readBarrier() async throws -> ConsistencyToken?

    /// A quick liveness probe.
    func ping() async throws
    func close() async throws
}

extension Engine {
    func missing(_ capability: Capability, _ dataset: String? = nil) -> PolyglotError {
        let which = dataset.map { " (dataset '\($0)')" } ?? ""
        return PolyglotError(.missingCapability, "Engine '\(spec.name)' (\(spec.kind)) has no \(capability.rawValue) capability\(which).",
                             fix: "Place this on an engine that lists \(capability.rawValue) among its capabilities.")
    }
    public func documentStore(for d: DatasetSpec) throws -> any DocumentStore { throw missing(.documents, d.name) }
    public func keyValueStore(for d: DatasetSpec) throws -> any KeyValueStore { throw missing(.keyValue, d.name) }
    public func vectorStore(for d: DatasetSpec) throws -> any VectorStore { throw missing(.vectors, d.name) }
    public func tableStore(for d: DatasetSpec) throws -> any TableStore { throw missing(.table, d.name) }
    public func graphStore(for d: DatasetSpec) throws -> any GraphStore { throw missing(.graph, d.name) }
    public func timeSeriesStore(for d: DatasetSpec) throws -> any TimeSeriesStore { throw missing(.timeSeries, d.name) }
    public func searchIndex(for d: DatasetSpec) throws -> any SearchIndex { throw missing(.search, d.name) }
    public func projectedVectors(for d: DatasetSpec) throws -> any VectorStore { throw missing(.vectors, d.name) }
    public func projectedGraph(for d: DatasetSpec) throws -> any GraphStore { throw missing(.graph, d.name) }
    public func cacheBackend() throws -> any CacheBackend { throw missing(.cache) }
    public func streamPublisher() throws -> any StreamPublisher { throw missing(.stream) }
    public func sqlExecutor() throws -> any SQLExecutor {
        throw PolyglotError(.missingCapability, "Engine '\(spec.name)' (\(spec.kind)) does not run SQL.", fix: "Run SQL on a sqlite or postgres engine.")
    }
    public func telemetryHistory() throws -> any TelemetryHistoryStore { throw missing(.telemetryHistory) }
    public func size(of dataset: DatasetSpec) async throws -> DatasetSize? { nil }
    public func withTransaction<R: Sendable>(_ body: @Sendable () async throws -> R) async throws -> R {
        throw missing(.transactions)
    }
    public func ping() async throws {}
    public func replaceDataset(_ live: DatasetSpec, with shadow: DatasetSpec) async throws {
        throw PolyglotError(.missingCapability, "Engine '\(spec.name)' (\(spec.kind)) cannot swap a rebuilt copy in.", fix: "Rebuild copies on a sqlite or postgres engine.")
    }
    public func dropDataset(_ dataset: DatasetSpec) async throws {
        throw PolyglotError(.missingCapability, "Engine '\(spec.name)' (\(spec.kind)) cannot drop a dataset.", fix: "Drop it with the engine's own tools.")
    }
    public func consistencyToken(position: Int64) -> ConsistencyToken { ConsistencyToken(engine: spec.name, position: position) }
    public func readBarrier() async throws -> ConsistencyToken? { nil }
    public func maintain(now: Date) async throws {}
    public func maintain(now: Date, outboxReaders: [OutboxReader]) async throws { try await maintain(now: now) }
}

/// What an engine is given when it opens.
public struct EngineContext: Sendable {
    public var logger: Logger
    public init(logger: Logger) { self.logger = logger }
}

/// Creates engines of one kind.
public protocol EngineFactory: Sendable {
    /// The `kind:` value in the data map, e.g. `sqlite`.
    static var kind: String { get }
    static var capabilities: Set<Capability> { get }
    static func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine
}

/// The one place engines are created by kind name. The command-line tool and the server use it;
/// applications register the engine modules they link.
///
/// ```swift
/// var registry = EngineRegistry.builtIn      // knows `memory`
/// registry.register(SQLiteEngine.self)        // from PolyglotSQLite
/// let db = try await Polyglot(map: map, registry: registry)
/// ```
public struct EngineRegistry: Sendable {
    private var factories: [String: any EngineFactory.Type] = [:]

    public init() {}

    /// The engines the core module provides itself: `memory`.
    public static var builtIn: EngineRegistry {
        var r = EngineRegistry()
        r.register(MemoryEngine.self)
        return r
    }

    public mutating func register(_ factory: any EngineFactory.Type) {
        factories[factory.kind] = factory
    }

    public var kinds: [String] { Array(factories.keys) }

    public func capabilities(ofKind kind: String) -> Set<Capability>? { factories[kind]?.capabilities }

    public func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine {
        guard let factory = factories[spec.kind] else {
            throw PolyglotError(.unknownEngineKind, "No engine of kind '\(spec.kind)' is registered (known: \(kinds.sorted().joined(separator: ", "))).",
                                fix: "Register the module that provides it, or use a known kind.")
        }
        return try await factory.open(spec, context: context)
    }
}

/// An engine whose outbox can be read in commit order (see ``ChangeFeed``).
public protocol ChangeFeedEngine: Engine {
    func changeFeed() -> any ChangeFeed
}
