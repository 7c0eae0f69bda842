import Foundation
import Logging
import NIOSSL
import Polyglot
import PostgresNIO
import Synchronization

/// The PostgreSQL engine (`kind: postgres`): JSONB documents, typed tables, key-value, full-text search,
/// pgvector, graph walks and partitioned time series, all on one server, with transactions across them.
///
/// ```yaml
/// engines:
///   primary:
///     kind: postgres
///     url: postgres://app:secret@db.internal:5432/app
///     options:
///       schema: public            # where Polyglot's tables live
///       poolSize: 20              # connections per server
///       statementTimeout: 30s
///       connectTimeout: 10s
///       tls: prefer               # disable | prefer | require
///       replicas: postgres://app:secret@replica1:5432/app,postgres://app:secret@replica2:5432/app
///       replicaWait: 2s           # how long a read with a token waits for a replica before using the primary
///       textSearch: english       # the text-search configuration of search projections
///       unloggedKeyValue: false   # keyValue tables UNLOGGED (faster, emptied after a crash)
/// ```
///
/// Every write appends to `_polyglot_outbox` in the same transaction (except to datasets with
/// `changeEvents: false`, which take a position from its sequence without an event); its position is the write's
/// token and the version of what it wrote.
public final class PostgresEngine: Engine, EngineFactory {
    public static let kind = "postgres"
    public static let capabilities: Set<Capability> = [
        .documents, .table, .keyValue, .vectors, .timeSeries, .graph, .search, .transactions, .telemetryHistory, .analytics, .changeCapture,
    ]

    public let spec: EngineSpec
    public var capabilities: Set<Capability> {
        hasVector ? PostgresEngine.capabilities : PostgresEngine.capabilities.subtracting([.vectors])
    }
    let settings: PostgresSettings
    let logger: Logger
    let primary: PostgresClient
    let replicas: [PostgresClient]
    private let runners: Mutex<[Task<Void, Never>]>
    private let closed = Atomic<Bool>(false)
    /// Whether the server has pgvector installed (or installable).
    let hasVector: Bool
    let serverVersion: Int
    /// Schema-qualified names.
    let outbox: String
    /// The SQL that takes the next outbox position. Writes take it after they hold the row's lock (in the
    /// upsert's VALUES for a new key, in `ON CONFLICT DO UPDATE` for an existing one), so for each key the
    /// positions (versions) follow commit order.
    let nextPosition: String
    let routing = ReplicaRouting()
    /// Hot single-row reads, prepared once per connection.
    let prepared = PreparedStatements()
    /// The channel the outbox trigger notifies, per schema.
    var notifyChannel: String { Self.notifyChannel(schema: settings.schema) }
    /// Channel names are identifiers (at most 63 bytes): long schema names are shortened with a hash.
    static func notifyChannel(schema: String) -> String {
        if schema.utf8.count <= 40 { return "polyglot_outbox_" + schema }
        var hash: UInt64 = 0xcbf29ce484222325
        for b in schema.utf8 { hash = (hash ^ UInt64(b)) &* 0x100000001b3 }
        return "polyglot_outbox_" + String(schema.prefix(20)) + "_" + String(hash, radix: 16)
    }
    /// Wake-ups for change-feed readers (the relay), from LISTEN on ``notifyChannel``.
    let notifications: OutboxNotifications
    /// Time-series partitions known to exist.
    let partitions = Mutex<Set<String>>([])
    /// pgvector 0.8+: iterative index scans for filtered searches.
    let iterativeScan: Bool

    struct TxContext: Sendable {
        let engine: ObjectIdentifier
        let connection: PostgresConnection
    }
    @TaskLocal static var transaction: TxContext?

    init(spec: EngineSpec, settings: PostgresSettings, logger: Logger) async throws {
        self.spec = spec
        self.settings = settings
        self.logger = logger
        // The pool's own chatter (each failed reconnect) stays below notice; failures reach callers as typed errors.
        var background = logger
        background.logLevel = max(logger.logLevel, .notice)
        primary = PostgresClient(configuration: settings.primary, backgroundLogger: background)
        replicas = settings.replicas.map { PostgresClient(configuration: $0, backgroundLogger: background) }
        var tasks: [Task<Void, Never>] = []
        for client in [primary] + replicas { tasks.append(Task { await client.run() }) }
        runners = Mutex(tasks)
        let channel = Self.notifyChannel(schema: settings.schema), client = primary, listenLogger = logger
        notifications = OutboxNotifications { notifications in
            Task {
                while !Task.isCancelled {
                    do {
                        try await client.withConnection { c in
                            try await c.listen(on: channel) { sequence in
                                notifications.bump()   // (re)connected: anything may have committed meanwhile
                                for try await _ in sequence { notifications.bump() }
                            }
                        }
                    } catch {
                        if Task.isCancelled { return }
                        listenLogger.debug("outbox LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
        }
        outbox = PGQuery.ident(settings.schema) + "._polyglot_outbox"
        nextPosition = "nextval(" + PGQuery.literal(PGQuery.ident(settings.schema) + "._polyglot_outbox_position_seq") + "::regclass)"
        do {
            let probe = try await PostgresEngine.probe(primary, settings: settings, engine: spec.name)
            hasVector = probe.vector
            serverVersion = probe.version
            iterativeScan = probe.vectorVersion.map { $0.compare("0.8", options: .numeric) != .orderedAscending } ?? false
        } catch {
            for t in tasks { t.cancel() }
            throw error
        }
    }

    public static func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine {
        let settings = try PostgresSettings(spec)
        return try await PostgresEngine(spec: spec, settings: settings, logger: context.logger)
    }

    /// Connects once, reports what the server offers, and creates the schema and Polyglot's own tables.
    private static func probe(_ client: PostgresClient, settings: PostgresSettings, engine: String) async throws -> (vector: Bool, version: Int, vectorVersion: String?) {
        do {
            return try await withTimeout(settings.connectTimeout + .seconds(1), engine: engine) {
                try await client.withConnection { c in
                    var version = 0
                    var vector: String?
                    var standby = false
                    for try await (v, available, recovery) in try await c.query("SELECT current_setting('server_version_num')::int, (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'), pg_is_in_recovery()", logger: Logger(label: "polyglot.postgres")).decode((Int, String?, Bool).self) {
                        version = v; vector = available; standby = recovery
                    }
                    if standby {
                        throw PolyglotError(.invalidDataMap, "Engine '\(engine)' points at \(settings.displayAddress), a read-only hot standby.",
                                            fix: "Set `url:` to the primary and list the standby under `options: { replicas: ... }`.")
                    }
                    return (vector != nil, version, vector)
                }
            }
        } catch let e as PolyglotError {
            throw e
        } catch {
            throw PostgresEngine.translate(error, engine: engine, during: "connecting to \(settings.displayAddress)")
        }
    }

    var currentTransaction: TxContext? {
        guard let tx = PostgresEngine.transaction, tx.engine == ObjectIdentifier(self) else { return nil }
        return tx
    }

    func checkOpen() throws {
        if closed.load(ordering: .relaxed) {
            throw PolyglotError(.closed, "Engine '\(spec.name)' is closed.", fix: "Open a new Polyglot instance.")
        }
    }

    /// Where reads went: replicas, the primary, and token reads the primary served because no replica had caught up.
    public var readRouting: ReplicaRouting.Stats { routing.stats }

    public func consistencyToken(position: Int64) -> ConsistencyToken { token(position) }

    func token(_ position: Int64) -> ConsistencyToken {
        ConsistencyToken(engine: spec.name, position: position, lsn: routing.lastCommitLSN)
    }

    /// With replicas: a token of the primary's current WAL insert position, so a read that carries it goes to a
    /// replica only once that replica has replayed every commit made so far (else, after `replicaWait`, to the
    /// primary). Without replicas nil: every read is on the primary.
    public func readBarrier() async throws -> ConsistencyToken? {
        guard !replicas.isEmpty, let lsn = try await readOnPrimary({ c in try await ReplicaRouting.insertLSN(on: c, engine: self) }) else { return nil }
        return ConsistencyToken(engine: spec.name, position: 0, lsn: lsn)
    }

    // MARK: Running statements

    /// Runs a read: inside a transaction on its connection, otherwise on a replica that has replayed the
    /// required token (see ``ReplicaRouting``) or on the primary. Reads that fail on a broken connection
    /// are retried once on a fresh one, since they change nothing.
    func read<R: Sendable>(_ body: (PostgresConnection) async throws -> R) async throws -> R {
        try checkOpen()
        if let tx = currentTransaction { try checkAlive(tx.connection); return try await run(body, on: tx.connection) }
        var client = try await routing.client(for: self)
        var attempt = 0
        while true {
            do {
                return try await client.withConnection { c in try await body(c) }
            } catch {
                // A replica that has not replayed a migration yet lacks the table, schema or column the primary has
                // (a fresh schema, the relay's state just after start): that is lag, not a wrong statement.
                if client !== primary, let state = PostgresEngine.sqlState(error), ["42P01", "3F000", "42703"].contains(state) {
                    routing.fellBackForSchema(engine: self, sqlState: state)
                    client = primary
                    continue
                }
                let mapped = PostgresEngine.mapped(error, engine: spec.name, during: "a read")
                attempt += 1
                if let e = mapped as? PolyglotError, e.isRetryable, attempt < 3 {
                    logger.debug("retrying a read after a transient error", metadata: ["error": "\(mapped)"])
                    try await Task.sleep(for: .milliseconds(50 * attempt))
                    continue
                }
                throw mapped
            }
        }
    }

    /// Runs a read on the primary, never a replica (inside the current transaction when there is one): for reads
    /// that must see the newest commits on one timeline, such as the change feed's snapshots.
    func readOnPrimary<R: Sendable>(_ body: (PostgresConnection) async throws -> R) async throws -> R {
        try await ReadConsistency.$fromPrimary.withValue(true) { try await read(body) }
    }

    /// Runs a read like ``read(_:)``; when the facade measures the rows it examines (``RowsExamined/current`` is
    /// bound, for one query in `advisor.sampleEvery`), the read runs in a transaction between two reads of
    /// `pg_stat_xact_user_tables` for `table`: the difference in tuples fetched by sequential and index scans is
    /// what this statement examined (the counters are per backend and stay unflushed inside a transaction).
    func readExamining<R: Sendable>(table: String, _ body: (PostgresConnection) async throws -> R) async throws -> R {
        guard let examined = RowsExamined.current else { return try await read(body) }
        let inTransaction = currentTransaction != nil
        return try await read { c in
            if !inTransaction { try await exec(c, "BEGIN") }
            do {
                let before = try await tuplesExamined(c, table: table)
                let result = try await body(c)
                let after = try await tuplesExamined(c, table: table)
                if !inTransaction { try await exec(c, "COMMIT") }
                examined.add(max(0, after - before))
                return result
            } catch {
                if !inTransaction { await rollback(c) }
                throw error
            }
        }
    }

    private func tuplesExamined(_ c: PostgresConnection, table: String) async throws -> Int {
        var q = PGQuery()
        q.sql = "SELECT (coalesce(sum(seq_tup_read), 0) + coalesce(sum(idx_tup_fetch), 0))::int8 FROM pg_stat_xact_user_tables WHERE relid = to_regclass(\(q.bind(table)))"
        for try await n in try await c.query(q.query, logger: logger).decode(Int64.self) { return Int(n) }
        return 0
    }

    /// Rows (the planner's estimate once the table was analyzed, else a count for tables under 256 MiB), total
    /// bytes with indexes and TOAST, index bytes, and for vectors their count and dimension.
    public func size(of dataset: DatasetSpec) async throws -> DatasetSize? {
        let vectorsTable = dataset.projection(.vectors).flatMap { $0.engine == spec.name ? table(dataset.name + "__vectors") : nil }
        var q = PGQuery()
        q.sql = "SELECT c.reltuples::int8, pg_total_relation_size(c.oid)::int8, pg_indexes_size(c.oid)::int8 FROM pg_class c WHERE c.oid = to_regclass(\(q.bind(table(dataset.name))))"
        let query = q
        return try await read { c -> DatasetSize? in
            var size = DatasetSize()
            for try await (tuples, bytes, indexBytes) in try await c.query(query.query, logger: logger).decode((Int64, Int64, Int64).self) {
                size.bytes = Int(bytes); size.indexBytes = Int(indexBytes)
                if tuples >= 0 { size.rows = Int(tuples) }
            }
            guard size.bytes != nil else { return nil }
            func count(_ t: String) async throws -> Int? {
                for try await n in try await c.query(PGQuery("SELECT count(*)::int8 FROM \(t)").query, logger: logger).decode(Int64.self) { return Int(n) }
                return nil
            }
            if size.rows == nil, (size.bytes ?? 0) < 256 << 20 { size.rows = try await count(table(dataset.name)) }
            if dataset.model == .vectors { size.vectors = size.rows; size.dimension = dataset.dimension }
            if let vt = vectorsTable { size.vectors = try await count(vt); size.dimension = dataset.projection(.vectors)?.dimension }
            return size
        }
    }

    /// ``write(singleStatement:_:)`` of a body that returns the write's outbox position, as a token made after the
    /// commit, so it carries this commit's WAL position (a token made inside the body carries the previous one's,
    /// and a replica could serve a read with it before replaying this write).
    func writeToken(singleStatement: Bool = false, _ body: (PostgresConnection) async throws -> Int64) async throws -> ConsistencyToken {
        token(try await write(singleStatement: singleStatement, body))
    }

    /// Runs a write atomically: in its own transaction, or in a savepoint of the current transaction (so a failed
    /// write leaves the transaction usable and changes nothing).
    /// `singleStatement`: the body runs one statement, which PostgreSQL makes atomic by itself, so outside a
    /// transaction it runs without BEGIN/COMMIT (one round trip instead of three).
    func write<R: Sendable>(singleStatement: Bool = false, _ body: (PostgresConnection) async throws -> R) async throws -> R {
        try checkOpen()
        if let tx = currentTransaction {
            let c = tx.connection
            try checkAlive(c)
            try await exec(c, "SAVEPOINT polyglot_op")
            do {
                let r = try await body(c)
                try await exec(c, "RELEASE SAVEPOINT polyglot_op")
                return r
            } catch {
                try? await exec(c, "ROLLBACK TO SAVEPOINT polyglot_op")
                try? await exec(c, "RELEASE SAVEPOINT polyglot_op")
                throw PostgresEngine.mapped(error, engine: spec.name, during: "a write")
            }
        }
        do {
            return try await primary.withConnection { c in
                if singleStatement {
                    let r = try await body(c)
                    await routing.committed(on: c, engine: self)
                    return r
                }
                try await exec(c, "BEGIN")
                do {
                    let r = try await body(c)
                    try await exec(c, "COMMIT")
                    await routing.committed(on: c, engine: self)
                    return r
                } catch {
                    await rollback(c)
                    throw error
                }
            }
        } catch {
            throw PostgresEngine.mapped(error, engine: spec.name, during: "a write")
        }
    }

    /// A transaction's connection that the server closed (restart, crash, admin shutdown) cannot continue.
    func checkAlive(_ c: PostgresConnection) throws {
        if c.isClosed {
            throw PolyglotError(.engineUnavailable, "The connection of the transaction on '\(spec.name)' was closed by the server; nothing in the transaction was committed.",
                                fix: "Retry the whole transaction once PostgreSQL is back.", retryable: true)
        }
    }

    private func run<R: Sendable>(_ body: (PostgresConnection) async throws -> R, on c: PostgresConnection) async throws -> R {
        do { return try await body(c) } catch { throw PostgresEngine.mapped(error, engine: spec.name, during: "a read") }
    }

    public func withTransaction<R: Sendable>(_ body: @Sendable () async throws -> R) async throws -> R {
        try checkOpen()
        if currentTransaction != nil { return try await body() }
        return try await write { c in
            try await PostgresEngine.$transaction.withValue(TxContext(engine: ObjectIdentifier(self), connection: c)) {
                try await body()
            }
        }
    }

    /// Rolls back; a connection that cannot roll back is closed, so the pool never hands out one stuck in a failed transaction.
    func rollback(_ c: PostgresConnection) async {
        guard !c.isClosed else { return }
        do { try await exec(c, "ROLLBACK") } catch {
            logger.warning("closing a connection that could not roll back", metadata: ["error": "\(error)"])
            try? await c.close()
        }
    }

    func exec(_ c: PostgresConnection, _ sql: String) async throws {
        try await execute(c, PGQuery(sql))
    }

    /// Runs a statement and reads its whole result: the driver returns from `query` once the server describes the
    /// rows, so an error raised while the statement runs (a timeout, a lock wait, a constraint) surfaces only here.
    func execute(_ c: PostgresConnection, _ q: PGQuery) async throws {
        for try await _ in try await c.query(q.query, logger: logger) {}
    }

    func rows(_ c: PostgresConnection, _ q: PGQuery) async throws -> [PostgresRow] {
        try await c.query(q.query, logger: logger).collect()
    }

    // MARK: Lifecycle

    public func prepare(_ datasets: [DatasetSpec]) async throws {
        let needsVector = datasets.contains { $0.model == .vectors || $0.projection(.vectors).map { $0.engine == spec.name } == true }
        if needsVector && !hasVector {
            let names = datasets.filter { $0.model == .vectors || $0.projection(.vectors) != nil }.map(\.name)
            throw PolyglotError(.missingCapability,
                                "Engine '\(spec.name)' (PostgreSQL \(serverVersion / 10000)) has no pgvector extension, which the vectors of \(names.map { "'\($0)'" }.joined(separator: ", ")) need.",
                                fix: "Install pgvector on the server (Debian: apt-get install postgresql-\(serverVersion / 10000)-pgvector), or place the vectors on an engine that has them (kind: sqlite).")
        }
        try await PostgresSchema(engine: self).migrate(datasets, vector: needsVector)
    }

    /// Checks the primary and every replica.
    public func ping() async throws {
        try checkOpen()
        for (i, client) in ([primary] + replicas).enumerated() {
            do {
                try await client.withConnection { c in try await self.exec(c, "SELECT 1") }
            } catch {
                let which = i == 0 ? "the primary" : "replica \(i)"
                throw PostgresEngine.translate(error, engine: spec.name, during: "a health check of \(which)")
            }
        }
    }

    /// How long outbox events are kept (option `outboxRetention`, default 24h), until the relay consumes them.
    var outboxRetention: Duration { settings.outboxRetention }

    public func maintain(now: Date) async throws { try await maintain(now: now, outboxReaders: []) }

    /// Deletes outbox rows older than `outboxRetention` that every reader has read: rows visible in the snapshots
    /// its cursor has read to (see `PostgresChangeFeed.read(by:_:)`), not just those below its highest position,
    /// since a transaction can hold a lower position open while higher ones are applied.
    public func maintain(now: Date, outboxReaders: [OutboxReader]) async throws {
        let cutoff = now.addingTimeInterval(-outboxRetention.seconds)
        try await write { c in
            var q = PGQuery()
            var conditions = ["created_at < \(q.bind(cutoff))"]
            if let lowest = outboxReaders.map(\.highest).min() { conditions.append("position <= \(q.bind(lowest))") }
            for r in outboxReaders { conditions.append(PostgresChangeFeed.read(by: PostgresChangeFeed.State(r.cursor.state), &q) ?? "false") }
            q.sql = "DELETE FROM \(self.outbox) WHERE \(conditions.joined(separator: " AND "))"
            try await self.execute(c, q)
        }
        await warnAboutCaptureSlots()
    }

    public func close() async throws {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        notifications.stop()
        for t in runners.withLock({ $0 }) { t.cancel() }
    }

    // MARK: Stores

    func checkVectors(_ d: DatasetSpec) throws {
        if !hasVector {
            throw PolyglotError(.missingCapability, "Engine '\(spec.name)' has no pgvector extension, so '\(d.name)' cannot keep vectors.",
                                fix: "Install pgvector on the server, or place the vectors on an engine that has them.")
        }
    }

    public func documentStore(for d: DatasetSpec) throws -> any DocumentStore { PostgresDocumentStore(engine: self, spec: d) }
    public func keyValueStore(for d: DatasetSpec) throws -> any KeyValueStore { PostgresKeyValueStore(engine: self, spec: d) }
    public func vectorStore(for d: DatasetSpec) throws -> any VectorStore { try checkVectors(d); return PostgresVectorStore(engine: self, spec: d, projected: false) }
    public func projectedVectors(for d: DatasetSpec) throws -> any VectorStore { try checkVectors(d); return PostgresVectorStore(engine: self, spec: d, projected: true) }
    public func tableStore(for d: DatasetSpec) throws -> any TableStore { PostgresTableStore(engine: self, spec: d) }
    public func graphStore(for d: DatasetSpec) throws -> any GraphStore { PostgresGraphStore(engine: self, spec: d, table: d.name) }
    public func projectedGraph(for d: DatasetSpec) throws -> any GraphStore { PostgresGraphStore(engine: self, spec: d, table: d.name + "__edges") }
    public func timeSeriesStore(for d: DatasetSpec) throws -> any TimeSeriesStore { PostgresTimeSeriesStore(engine: self, spec: d) }
    public func searchIndex(for d: DatasetSpec) throws -> any SearchIndex { PostgresSearchIndex(engine: self, spec: d) }
    public func sqlExecutor() throws -> any SQLExecutor { PostgresSQLExecutor(engine: self) }
    public func telemetryHistory() throws -> any TelemetryHistoryStore { PostgresTelemetryHistory(engine: self) }

    /// A schema-qualified, quoted table name.
    func table(_ name: String) -> String { PGQuery.ident(settings.schema) + "." + PGQuery.ident(name) }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Runs `body`, failing with a typed error if it takes longer than `limit`.
func withTimeout<R: Sendable>(_ limit: Duration, engine: String, _ body: @escaping @Sendable () async throws -> R) async throws -> R {
    try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { try await body() }
        group.addTask { try await Task.sleep(for: limit); return nil }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw PolyglotError(.engineUnavailable, "Engine '\(engine)' did not answer within \(limit).",
                                fix: "Check that the server is running and reachable, or raise connectTimeout.", retryable: true)
        }
        group.cancelAll()
        return value
    }
}

extension EngineRegistry {
    /// Registers the PostgreSQL engine (`kind: postgres`).
    public mutating func registerPostgres() { register(PostgresEngine.self) }
}
