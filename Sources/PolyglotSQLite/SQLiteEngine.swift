import Foundation
import Logging
import Polyglot
import Synchronization

/// The embedded default engine (`kind: sqlite`): one SQLite file holds every data model.
///
/// WAL mode, one writer connection and a small pool of reader connections, a 5 s busy timeout,
/// and prepared statements cached per connection. Every write appends to the `_polyglot_outbox`
/// table in the same transaction (except to datasets with `changeEvents: false`, which take a position without
/// an event); its position is the write's token and the document's version.
///
/// ```yaml
/// engines:
///   primary: { kind: sqlite, path: app.sqlite, options: { readers: 4 } }
/// ```
///
/// SQLite calls are microseconds long, so they run inline on the calling task under a lock
/// rather than hopping to another thread; see the README's design notes.
public final class SQLiteEngine: Engine, EngineFactory {
    public static let kind = "sqlite"
    public static let capabilities: Set<Capability> = [
        .documents, .table, .keyValue, .vectors, .timeSeries, .graph, .search, .transactions, .telemetryHistory, .analytics,
    ]

    public let spec: EngineSpec
    public var capabilities: Set<Capability> { SQLiteEngine.capabilities }
    let path: String
    let temporary: Bool
    let logger: Logger
    private let writer: ConnectionBox
    /// The writer connection; only for code already holding the write lock.
    var writerConnection: SQLiteConnection { writer.connection }
    private let writeLock = AsyncLock()
    /// The last outbox position appended in the open write transaction (0: none).
    private let appendedInTransaction = Mutex<Int64>(0)
    /// The last outbox position this process committed; wakes its relays (``SQLiteChangeFeed``). Writes by other
    /// processes are not seen here: the relay finds them when its idle interval ends.
    let committedOutbox = ProgressSignal<Int>()
    private let readers: [ReaderSlot]
    private let nextReader = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)

    struct TxContext: Sendable {
        let engine: ObjectIdentifier
        let box: ConnectionBox
        let post: PostCommit
    }
    let vectorIndexes = VectorIndexes()
    @TaskLocal static var transaction: TxContext?

    public init(spec: EngineSpec, logger: Logger = Logger(label: "polyglot.sqlite")) throws {
        self.spec = spec
        self.logger = logger
        var path = spec.path ?? spec.url.map { $0.replacingOccurrences(of: "sqlite://", with: "") } ?? ""
        if path.isEmpty {
            throw PolyglotError(.invalidDataMap, "Engine '\(spec.name)' (sqlite) has no `path:`.",
                                fix: "Add `path: app.sqlite` (relative to the data map's folder), or `path: \":memory:\"` for a throwaway database.")
        }
        temporary = path == ":memory:"
        if temporary {
            path = NSTemporaryDirectory() + "polyglot-\(UUID().uuidString).sqlite"
        } else {
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        self.path = path
        writer = ConnectionBox(try SQLiteConnection(path: path, readOnly: false))
        let readerCount = Int(spec.options["readers"] ?? "") ?? max(2, ProcessInfo.processInfo.activeProcessorCount)
        var readers: [ReaderSlot] = []
        for _ in 0..<max(1, readerCount) {
            let c = try SQLiteConnection(path: path, readOnly: false)
            try c.run("PRAGMA query_only=1")
            readers.append(ReaderSlot(c))
        }
        self.readers = readers
        try writer.connection.script(SQLiteSchema.core)
    }

    public static func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine {
        try SQLiteEngine(spec: spec, logger: context.logger)
    }

    var currentTransaction: TxContext? {
        guard let tx = SQLiteEngine.transaction, tx.engine == ObjectIdentifier(self) else { return nil }
        return tx
    }

    func checkOpen() throws {
        if closed.load(ordering: .relaxed) {
            throw PolyglotError(.closed, "Engine '\(spec.name)' is closed.", fix: "Open a new Polyglot instance.")
        }
    }

    /// Runs a read on a reader connection, or on the transaction's connection inside a transaction.
    func read<R>(_ body: (SQLiteConnection) throws -> R) throws -> R {
        try checkOpen()
        if let tx = currentTransaction { return try body(tx.box.connection) }
        // Prefer the first free reader: a lone reader task keeps reusing one connection and its warm page cache.
        for slot in readers {
            if let result = try slot.lock.withLockIfAvailable({ try body($0.connection) }) { return result }
        }
        let i = nextReader.add(1, ordering: .relaxed).oldValue % readers.count
        return try readers[i].lock.withLock { try body($0.connection) }
    }

    /// Runs a write atomically: in its own IMMEDIATE transaction, or in a savepoint of the current transaction.
    func write<R>(_ body: (SQLiteConnection) throws -> R) async throws -> R {
        try await write { c, _ in try body(c) }
    }

    /// Runs a write atomically; actions added to `post` run after the commit, still under the write lock,
    /// so in-memory indexes follow the database in commit order. They are dropped if the write rolls back.
    func write<R>(_ body: (SQLiteConnection, PostCommit) throws -> R) async throws -> R {
        try checkOpen()
        if let tx = currentTransaction {
            let c = tx.box.connection
            let mark = tx.post.count
            let appended = appendedInTransaction.withLock { $0 }
            try c.run("SAVEPOINT polyglot_op")
            do {
                let r = try body(c, tx.post)
                try c.run("RELEASE polyglot_op")
                return r
            } catch {
                try? c.run("ROLLBACK TO polyglot_op")
                try? c.run("RELEASE polyglot_op")
                tx.post.truncate(to: mark)
                // The rolled-back events were never committed (and their positions will be handed out again).
                appendedInTransaction.withLock { $0 = appended }
                throw error
            }
        }
        let c = writer.connection
        return try await immediateTransaction { post in try body(c, post) }
    }

    public func withTransaction<R: Sendable>(_ body: @Sendable () async throws -> R) async throws -> R {
        try checkOpen()
        if currentTransaction != nil { return try await body() }
        let context = { (post: PostCommit) in TxContext(engine: ObjectIdentifier(self), box: self.writer, post: post) }
        return try await immediateTransaction { post in
            try await SQLiteEngine.$transaction.withValue(context(post)) { try await body() }
        }
    }

    /// BEGIN IMMEDIATE under the write lock, COMMIT and the post-commit actions on success, ROLLBACK on error.
    private func immediateTransaction<R>(_ body: (PostCommit) async throws -> R) async throws -> R {
        await writeLock.lock()
        defer { writeLock.unlock() }
        let c = writer.connection
        let post = PostCommit()
        appendedInTransaction.withLock { $0 = 0 }
        try c.run("BEGIN IMMEDIATE")
        do {
            let r = try await body(post)
            try c.run("COMMIT")
            post.run(logger)
            let appended = appendedInTransaction.withLock { $0 }
            if appended > 0 { committedOutbox.advance(0, to: appended) }
            return r
        } catch {
            if c.inTransaction { try? c.run("ROLLBACK") }
            throw error
        }
    }

    /// Appends a change event to the outbox and returns its position (the write's version).
    func appendOutbox(_ c: SQLiteConnection, dataset: String, key: String, op: String, payload: Data?) throws -> Int64 {
        try c.run("INSERT INTO _polyglot_outbox(dataset, key, op, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                  [.text(dataset), .text(key), .text(op), payload.map { .blob($0) } ?? .null, .real(Date().timeIntervalSince1970)])
        let position = c.lastInsertRowID
        appendedInTransaction.withLock { $0 = position }
        return position
    }

    /// The version of a write: a new outbox event's position, or for a dataset that appends no change events
    /// (`DatasetSpec.changeEvents = false`), the next position taken from the outbox's sequence without an event.
    func recordChange(_ c: SQLiteConnection, _ spec: DatasetSpec, key: String, op: String, payload: Data?) throws -> Int64 {
        if spec.changeEvents { return try appendOutbox(c, dataset: spec.name, key: key, op: op, payload: payload) }
        try c.run("INSERT INTO sqlite_sequence(name, seq) SELECT '_polyglot_outbox', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '_polyglot_outbox')")
        return try c.query("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = '_polyglot_outbox' RETURNING seq").first?.first?.int ?? 0
    }

    func token(_ position: Int64) -> ConsistencyToken { ConsistencyToken(engine: spec.name, position: position) }

    public func prepare(_ datasets: [DatasetSpec]) async throws {
        try await write { c in
            for ds in datasets {
                try c.script(try SQLiteSchema.script(for: ds, existingColumns: try SQLiteSchema.columns(of: ds.name, on: c)))
                try SQLiteSchema.storeTimestampsAsSeconds(ds, on: c)
            }
        }
        for ds in datasets {
            if ds.model == .vectors, let dim = ds.dimension {
                try await openVectorIndex(table: ds.name, dataset: ds.name, dimension: dim, metric: ds.metric, index: ds.index)
            }
            if let p = ds.projection(.vectors), p.engine == spec.name, let dim = p.dimension {
                try await openVectorIndex(table: ds.name + "__vectors", dataset: ds.name, dimension: dim, metric: p.metric, index: p.index)
            }
        }
    }

    public func ping() async throws { _ = try read { try $0.query("SELECT 1") } }

    /// How long outbox events are kept (option `outboxRetention`, default 24h). Until the relay consumes the
    /// outbox, age is the only pruning rule.
    var outboxRetention: TimeInterval {
        guard let text = spec.options["outboxRetention"], let d = DataMap.parseDuration(text) else { return 86_400 }
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    public func maintain(now: Date) async throws { try await maintain(now: now, outboxReaders: []) }

    /// Deletes outbox events older than `outboxRetention` that every reader has applied: here positions follow
    /// commit order, so those up to the lowest reader's highest position.
    public func maintain(now: Date, outboxReaders: [OutboxReader]) async throws {
        let cutoff = now.timeIntervalSince1970 - outboxRetention
        let keepAbove = outboxReaders.map(\.highest).min() ?? .max
        let pruned = try await write { c -> Int in
            try c.run("DELETE FROM _polyglot_outbox WHERE created_at < ? AND position <= ?", [.real(cutoff), .integer(keepAbove)])
            return c.changes
        }
        if pruned > 0 { logger.debug("outbox pruned", metadata: ["events": "\(pruned)"]) }
    }

    public func close() async throws {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        await writeLock.lock()
        defer { writeLock.unlock() }
        if !temporary { saveVectorIndexes() }
        try? writer.connection.run("PRAGMA wal_checkpoint(TRUNCATE)")
        if temporary {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
    }

    // MARK: Stores

    public func documentStore(for d: DatasetSpec) throws -> any DocumentStore { SQLiteDocumentStore(engine: self, spec: d) }
    public func keyValueStore(for d: DatasetSpec) throws -> any KeyValueStore { SQLiteKeyValueStore(engine: self, spec: d) }
    public func vectorStore(for d: DatasetSpec) throws -> any VectorStore { SQLiteVectorStore(engine: self, spec: d, projected: false) }
    public func projectedVectors(for d: DatasetSpec) throws -> any VectorStore { SQLiteVectorStore(engine: self, spec: d, projected: true) }
    public func tableStore(for d: DatasetSpec) throws -> any TableStore { SQLiteTableStore(engine: self, spec: d) }
    public func graphStore(for d: DatasetSpec) throws -> any GraphStore { SQLiteGraphStore(engine: self, spec: d, table: d.name) }
    public func projectedGraph(for d: DatasetSpec) throws -> any GraphStore { SQLiteGraphStore(engine: self, spec: d, table: d.name + "__edges") }
    public func timeSeriesStore(for d: DatasetSpec) throws -> any TimeSeriesStore { SQLiteTimeSeriesStore(engine: self, spec: d) }
    public func searchIndex(for d: DatasetSpec) throws -> any SearchIndex { SQLiteSearchIndex(engine: self, spec: d) }
    public func sqlExecutor() throws -> any SQLExecutor { SQLiteSQLExecutor(engine: self) }
    public func telemetryHistory() throws -> any TelemetryHistoryStore { SQLiteTelemetryHistory(engine: self) }

    /// Rows and bytes of a dataset's table (bytes from `dbstat` when SQLite has it), and for vectors their count.
    public func size(of dataset: DatasetSpec) async throws -> DatasetSize? {
        let table = SQLFilter.quoteIdentifier(dataset.name)
        return try read { c in
            var size = DatasetSize()
            size.rows = Int(try c.query("SELECT count(*) FROM \(table)").first?.first?.int ?? 0)
            if let bytes = try? c.query("SELECT sum(pgsize) FROM dbstat WHERE name = ? OR substr(name, 1, ?) = ?", [.text(dataset.name), .integer(Int64(dataset.name.utf8.count + 2)), .text(dataset.name + "__")]).first?.first?.int {
                size.bytes = Int(bytes)
            }
            if dataset.model == .vectors {
                size.vectors = size.rows
                size.dimension = dataset.dimension
            } else if let p = dataset.projection(.vectors), p.engine == spec.name {
                size.vectors = Int(try c.query("SELECT count(*) FROM \(SQLFilter.quoteIdentifier(dataset.name + "__vectors"))").first?.first?.int ?? 0)
                size.dimension = p.dimension
            }
            return size
        }
    }
}

extension EngineRegistry {
    /// The embedded default: `memory` and `sqlite`.
    public static var embedded: EngineRegistry {
        var r = EngineRegistry.builtIn
        r.register(SQLiteEngine.self)
        return r
    }
}

/// One reader connection behind its own lock.
final class ReaderSlot: Sendable {
    let lock: Mutex<ConnectionBox>
    init(_ c: SQLiteConnection) { lock = Mutex(ConnectionBox(c)) }
}
