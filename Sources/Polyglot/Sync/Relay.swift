import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What the relay feeds from a dataset's outbox on one engine.
///
/// - A **documents copy** (`dataset@engine`) serves the dataset's search, vectors and graph projections on an
///   engine other than its own: the relay keeps a copy of the documents there, and that engine derives the
///   projections from the copy in its own transactions. One copy per (dataset, engine) serves them all.
/// - An **analytics** copy (`dataset.analytics@engine`) is an append-only table of every change, one row per
///   outbox event with the projection's `fields:` flattened into columns, so reports run there and never on the source.
/// - A **stream** (`dataset.stream@engine`) publishes every change to an event bus (a Redis Stream named after the
///   dataset); its checkpoint lives on the source engine, since a stream has no transactions.
/// - **Embeddings** (`dataset.embeddings@engine`) compute a vectors projection's embeddings with a remote embedder
///   (see ``Embedder``) after the write commits, and write them into the projection on its engine.
/// - A **cache** invalidator (`dataset.cache@engine`) drops cache entries of a dataset with `capture: true`, whose
///   writers are not all Polyglot (Polyglot's own writes invalidate before they return); its checkpoint lives on the source.
///
/// A dataset with `capture: true` feeds all of them from its engine's log (change data capture) instead of the outbox.
public struct RelayedCopy: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable { case documents, analytics, stream, embeddings, cache }

    /// The dataset as declared: its source engine and every projection.
    public let dataset: DatasetSpec
    /// The engine the copy lives on.
    public let target: String
    public let kind: Kind

    public init(dataset: DatasetSpec, target: String, kind: Kind = .documents) {
        self.dataset = dataset; self.target = target; self.kind = kind
    }

    /// A documents copy's own spec on the target: the same name and fields, placed on the target, with only
    /// the projections that live there.
    public var copySpec: DatasetSpec {
        var s = dataset
        s.engine = target
        s.capture = false
        // Nothing reads a copy's changes (its relay reads the source's), so its writes append no outbox events.
        s.changeEvents = false
        if s.model == .table {
            // A captured table's rows are copied as documents keyed by the primary key.
            s.model = .documents
            s.primaryKey = nil
            s.fields.removeAll { $0.name == "id" }
        }
        s.projections = dataset.projections.filter { $0.engine == target && $0.kind != .cache && $0.kind != .analytics }
        return s
    }

    /// An analytics copy's table: `position` (the primary key), `key`, `op` (`put` or `delete`), `at` (when the
    /// write happened, Unix seconds), then one column per projection field (`.` in a path becomes `_`), typed as
    /// the dataset declares it (else JSON), or a single `document` column when the projection names no fields.
    public var analyticsSpec: DatasetSpec {
        let p = dataset.projection(.analytics)
        var fields = [FieldSpec("position", .integer, nullable: false), FieldSpec("key", .string, nullable: false),
                      FieldSpec("op", .string, nullable: false), FieldSpec("at", .number)]
        // Captured changes share their transaction's position: they are told apart by `event` (position.sequence).
        if dataset.capture { fields.insert(FieldSpec("event", .string, nullable: false), at: 0) }
        if let p, !p.fields.isEmpty {
            fields += p.fields.map { FieldSpec(Self.column($0), dataset.field($0)?.type ?? .json) }
        } else {
            fields.append(FieldSpec("document", .json))
        }
        var spec = DatasetSpec(name: dataset.name + "_analytics", model: .table, engine: target, fields: fields, primaryKey: dataset.capture ? "event" : "position")
        // Like a documents copy: nothing reads its changes, so its rows append no outbox events.
        spec.changeEvents = false
        return spec
    }

    static func column(_ path: String) -> String { path.replacingOccurrences(of: ".", with: "_") }

    /// The name used for its checkpoint, lease and telemetry: `dataset@engine`, or `dataset.analytics@engine`.
    public var name: String { kind == .documents ? "\(dataset.name)@\(target)" : "\(dataset.name).\(kind.rawValue)@\(target)" }

    /// Where the copy's checkpoint, lease and dead letters are kept: on the target, in the transaction that
    /// applies a batch; for a stream (no transactions), on the source.
    public var stateEngine: String { kind == .stream || kind == .cache ? dataset.engine : target }
    public var description: String { name }

    /// Every relayed copy a data map needs: a documents copy per dataset and engine holding its search, vectors
    /// or graph projection away from the dataset's own engine, and an analytics copy per analytics projection.
    public static func all(in map: DataMap) -> [RelayedCopy] {
        var out: [RelayedCopy] = []
        for ds in map.datasets where ds.model == .documents || (ds.model == .table && ds.capture) {
            let targets = Set(ds.projections.filter { ![.cache, .analytics, .stream].contains($0.kind) && $0.engine != ds.engine }.map(\.engine))
            for t in targets.sorted() { out.append(RelayedCopy(dataset: ds, target: t)) }
            if let p = ds.projection(.vectors), p.isEmbeddedByRelay { out.append(RelayedCopy(dataset: ds, target: p.engine, kind: .embeddings)) }
            if let p = ds.projection(.analytics) { out.append(RelayedCopy(dataset: ds, target: p.engine, kind: .analytics)) }
            if let p = ds.projection(.stream) { out.append(RelayedCopy(dataset: ds, target: p.engine, kind: .stream)) }
            if ds.capture, let p = ds.projection(.cache) { out.append(RelayedCopy(dataset: ds, target: p.engine, kind: .cache)) }
        }
        return out
    }

    /// Where the relay keeps its checkpoints and leases on each target engine (a key-value dataset).
    public static let stateDataset = "_polyglot_relay"

    public static func stateSpec(on engine: String) -> DatasetSpec {
        var spec = DatasetSpec(name: stateDataset, model: .keyValue, engine: engine, maxKeyBytes: 4096, maxValueBytes: 1 << 16)
        spec.changeEvents = false
        return spec
    }

    /// The state key holding the source version last applied to `key` of the copy named `copy`.
    static func versionKey(_ copy: String, _ key: String) -> String { "version\u{1F}\(copy)\u{1F}\(key)" }
}

/// How a relay works through the outbox.
public struct RelayOptions: Sendable {
    /// Events read from the source's change feed per step.
    public var batchSize: Int
    /// How long an idle relay waits before reading the feed again. A commit wakes it earlier on PostgreSQL
    /// (LISTEN/NOTIFY, from any process) and on SQLite (commits of the same process), so there it is the fallback
    /// poll. A relay that another one leads waits this long between its looks at the lease.
    public var idleInterval: Duration
    /// How long a relay owns a copy after its last step; another relay may take it over once the lease expires.
    public var leaseDuration: Duration
    /// This relay's identity in leases (default: host, process id and a random suffix).
    public var holder: String
    /// Longest wait between retries after a failed step (the wait doubles from `idleInterval` up to this).
    public var maxBackoff: Duration

    public init(batchSize: Int = 500, idleInterval: Duration = .milliseconds(200), leaseDuration: Duration = .seconds(15),
                holder: String = "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UInt32.random(in: 0 ... .max))",
                maxBackoff: Duration = .seconds(10)) {
        self.batchSize = batchSize; self.idleInterval = idleInterval; self.leaseDuration = leaseDuration
        self.holder = holder; self.maxBackoff = maxBackoff
    }
}

/// Where one relayed copy stands.
public struct RelayStatus: Sendable, Hashable {
    public var copy: String
    /// The highest outbox position applied to the copy (0 before the first).
    public var appliedPosition: Int64
    /// Events applied by this relay since it started.
    public var applied: Int
    /// Events that could not be applied and were set aside (see ``Relay/deadLetters(of:)``).
    public var deadLetters: Int
    /// Whether this relay currently holds the copy's lease.
    public var leader: Bool
    /// The last error of a step, if the last step failed.
    public var lastError: String?
}

/// An event the relay could not apply (say, a document the target refuses), kept so it does not block the
/// events behind it.
public struct DeadLetter: Sendable, Hashable, Codable {
    public var position: Int64
    public var key: String
    public var operation: String
    public var error: String
}

/// Reads each source engine's outbox in commit order and applies every change to the copies that feed
/// projections on other engines. A swift-service-lifecycle `Service`.
///
/// - A step reads a batch from the copy's checkpoint, then, in ONE transaction on the target engine: checks
///   and renews the lease, applies the batch, and stores the new checkpoint. So a batch is applied exactly
///   once per copy, even across crashes, and a relay that lost its lease cannot commit anything.
/// - Several relays (processes) can run: a lease per copy decides which one applies it.
/// - An event the target refuses goes to a dead-letter list and does not block the others.
///
/// ```swift
/// let db = try await Polyglot(map: map, registry: registry)
/// let relay = db.relay()
/// let group = ServiceGroup(services: [db, relay], logger: logger)   // or: try await relay.catchUp()
/// ```
public final class Relay: Service, Sendable {
    let db: Polyglot
    public let options: RelayOptions
    let workers: [RelayWorker]

    init(db: Polyglot, options: RelayOptions) {
        self.db = db
        self.options = options
        workers = RelayedCopy.all(in: db.map).map { RelayWorker(copy: $0, db: db, options: options) }
    }

    /// The copies this relay serves.
    public var copies: [RelayedCopy] { workers.map(\.copy) }

    /// Runs until cancelled (or graceful shutdown): each copy in its own loop, sleeping when its feed is idle
    /// and backing off after failures.
    public func run() async throws {
        guard !workers.isEmpty else {
            db.logger.debug("relay: no projections on other engines; nothing to do")
            return
        }
        await withTaskGroup(of: Void.self) { group in
            for w in workers { group.addTask { await w.loop() } }
        }
        // run() usually ends because its task was cancelled, and a cancelled task's queries fail at once: the
        // release runs in a task of its own, so the lease is handed over instead of left to expire. It is waited
        // for at most `leaseDuration`: a state engine that does not answer must not hold up shutdown.
        let released = ProgressSignal<Int>()
        let releasing = Task {
            await self.release()
            released.advance(0, to: 1)
        }
        let limit = options.leaseDuration
        await Task { await released.wait(0, atLeast: 1, timeout: limit) }.value
        if released.position(0) == 0 {
            releasing.cancel()
            db.logger.warning("relay: releasing the leases took longer than the lease duration; they will expire instead",
                              metadata: ["leaseDuration": "\(limit)"])
        }
    }

    /// Gives up this relay's leases, so another relay can take its copies over at once instead of after the
    /// lease expires. `run()` does it when it stops.
    public func release() async {
        for w in workers {
            do { try await w.release() } catch {
                db.logger.warning("relay: could not release the lease", metadata: ["copy": "\(w.copy.name)", "error": "\(error)"])
            }
        }
    }

    /// Applies everything committed so far to every copy this relay can lead, then returns the number of
    /// events read, summed over the copies (each copy reads its source's whole feed, other datasets' events
    /// included; `status()` counts what was applied). For tests, scripts and `polyglot relay --once`.
    @discardableResult
    public func catchUp() async throws -> Int {
        var total = 0
        for w in workers {
            while true {
                let n = try await w.step()
                guard let n, n > 0 else { break }
                total += n
            }
        }
        return total
    }

    public func status() -> [RelayStatus] { workers.map { $0.status() } }

    /// The events of `copy` (`dataset@engine`) that could not be applied.
    public func deadLetters(of copy: String) async throws -> [DeadLetter] {
        guard let w = workers.first(where: { $0.copy.name == copy }) else {
            throw PolyglotError(.unknownDataset, "The relay has no copy named '\(copy)' (copies: \(workers.map(\.copy.name).joined(separator: ", "))).",
                                fix: "Name a copy as dataset@engine, for a projection placed on another engine than its dataset.")
        }
        return try await w.deadLetters()
    }
}

extension Polyglot {
    /// The relay that keeps this map's projections on other engines up to date. Run it as a `Service`
    /// (next to `Polyglot` in a `ServiceGroup`), or standalone with `polyglot relay`.
    public func relay(_ options: RelayOptions = RelayOptions()) -> Relay { Relay(db: self, options: options) }
}

/// One relayed copy: its feed, its target's stores, its checkpoint and lease.
final class RelayWorker: Sendable {
    let copy: RelayedCopy
    let options: RelayOptions
    let logger: Logger
    let source: any Engine
    let target: any Engine
    /// The engine keeping the checkpoint and lease, in whose transaction each step commits.
    let stateHolder: any Engine
    private let telemetry: Telemetry
    let progress: RelayProgress
    /// An embeddings copy's embedder.
    private let embedder: (any Embedder)?
    /// A captured dataset's feed over its engine's log, opened on first use (it creates the capture slot).
    private let captured = Mutex<(any CapturedChangeFeed)?>(nil)
    private struct State {
        var appliedPosition: Int64 = 0
        var applied = 0
        var deadLetters = 0
        var leader = false
        var lastError: String?
        /// The cursor the last batch read returned (what an idle wait compares against).
        var lastCursor = ""
    }
    private let state = Mutex(State())

    init(copy: RelayedCopy, db: Polyglot, options: RelayOptions) {
        self.copy = copy
        self.options = options
        self.logger = db.logger
        self.source = db.engines[copy.dataset.engine]!
        self.target = db.engines[copy.target]!
        self.stateHolder = db.engines[copy.stateEngine]!
        self.telemetry = db.telemetry
        self.progress = db.relayProgress
        self.embedder = copy.kind == .embeddings ? db.embedders[copy.dataset.name] : nil
    }

    /// Where the copy's changes come from: the dataset's engine's log for a captured dataset, else the outbox.
    func feed() async throws -> any ChangeFeed {
        if copy.dataset.capture {
            if let feed = captured.withLock({ $0 }) { return feed }
            guard let engine = source as? any ChangeCaptureEngine else {
                throw PolyglotError(.missingCapability, "Dataset '\(copy.dataset.name)' sets `capture: true`, but engine '\(copy.dataset.engine)' cannot capture changes.",
                                    fix: "Place the dataset on a postgres engine, or remove `capture:`.")
            }
            let feed = try await engine.capturedChanges(of: [copy.dataset], consumer: copy.name)
            captured.withLock { $0 = feed }
            return feed
        }
        guard let feedEngine = source as? any ChangeFeedEngine else {
            throw PolyglotError(.missingCapability, "Engine '\(copy.dataset.engine)' has no change feed, so '\(copy.dataset.name)' cannot feed projections on '\(copy.target)'.",
                                fix: "Put the dataset on a sqlite or postgres engine, or its projections on '\(copy.dataset.engine)'.")
        }
        return feedEngine.changeFeed()
    }

    var checkpointKey: String { RelayCheckpoint.key(copy) }
    var leaseKey: String { "lease\u{1F}\(copy.name)" }
    var lockKey: String { "lock\u{1F}\(copy.name)" }

    /// Writes the copy's lock row inside the caller's transaction on the state engine. The write holds the row's
    /// lock (PostgreSQL) or the write lock (SQLite) until commit, so the lease checks and checkpoint moves of
    /// concurrent relays and rebuilds on this copy run one after the other.
    func lock(_ kv: any KeyValueStore) async throws {
        // "1": a relay of an older version, which increments this row, can still run next to this one.
        _ = try await kv.set(lockKey, Data("1".utf8), ttl: nil)
    }
    var deadPrefix: String { "dead\u{1F}\(copy.name)\u{1F}" }
    /// A captured copy's initial snapshot: `<rows copied>\u{1F}<last key>` after each page, then `done` (absent
    /// before the first page). Written in the step's transaction, with the page it records.
    var snapshotKey: String { "snapshot\u{1F}\(copy.name)" }
    static let snapshotDone = "\u{1F}done"

    /// The next page of a captured copy's initial snapshot, or nil when there is none to take (not captured, a
    /// cache invalidator, already done, or the copy has applied captured changes). `progress` is what to record.
    func snapshotPage(checkpoint: RelayCheckpoint, kv: any KeyValueStore) async throws -> (events: [ChangeEvent], progress: String)? {
        guard copy.dataset.capture, copy.kind != .cache, checkpoint.cursor.isEmpty else { return nil }
        let raw = try await kv.get(snapshotKey).map { String(decoding: $0, as: UTF8.self) }
        if raw == Self.snapshotDone { return nil }
        let saved = raw?.split(separator: "\u{1F}", maxSplits: 1, omittingEmptySubsequences: false)
        // Rows copied so far number the snapshot's events, so analytics rows of different pages never collide.
        var offset = saved.flatMap { $0.first.flatMap { Int($0) } } ?? 0
        let after = saved.flatMap { $0.count > 1 ? String($0[1]) : nil }
        let limit = options.batchSize
        var events: [ChangeEvent] = []
        func event(_ key: String, _ payload: Data) -> ChangeEvent {
            offset += 1
            return ChangeEvent(position: 0, dataset: copy.dataset.name, key: key, operation: "put", payload: payload, sequence: offset)
        }
        var last: String?
        if copy.dataset.model == .documents {
            let page = try await source.documentStore(for: copy.dataset).query(DocumentQuery(limit: limit, after: after))
            events = page.map { event($0.id, $0.data) }
            last = page.last?.id
        } else if let pk = copy.dataset.primaryKey {
            let type = copy.dataset.field(pk)?.type
            let bound: JSON? = after.map { type == .integer || type == .number ? (Double($0).map(JSON.number) ?? .string($0)) : .string($0) }
            let rows = try await source.tableStore(for: copy.dataset).select(bound.map { .field(FieldPath(pk)) > $0 } ?? .all, sort: [.ascending(FieldPath(pk))], limit: limit)
            for row in rows {
                let key = row[pk]?.stringValue ?? row[pk]?.text ?? ""
                events.append(event(key, JSON.object(row).serialized()))
                last = key
            }
        }
        if events.count < limit {
            logger.info("relay: snapshot of a captured dataset copied", metadata: ["copy": "\(copy.name)", "rows": "\(offset)"])
            return (events, Self.snapshotDone)
        }
        return (events, "\(offset)\u{1F}\(last ?? "")")
    }

    func status() -> RelayStatus {
        state.withLock { RelayStatus(copy: copy.name, appliedPosition: $0.appliedPosition, applied: $0.applied,
                                     deadLetters: $0.deadLetters, leader: $0.leader, lastError: $0.lastError) }
    }

    func loop() async {
        var backoff = options.idleInterval
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let n = try await step()
                backoff = options.idleInterval
                if n == nil {
                    // Another relay leads: its progress, not new commits, decides when there is work here, and a
                    // feed wake-up would fire at every commit it has not applied yet.
                    try? await Task.sleep(for: options.idleInterval)
                } else if n == 0 {
                    await idle()
                }
            } catch {
                // A step cut short by shutdown is not a failure.
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                state.withLock { $0.lastError = "\(error)" }
                logger.warning("relay step failed; retrying", metadata: ["copy": "\(copy.name)", "error": "\(error)", "retryIn": "\(backoff)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, options.maxBackoff)
            }
        }
    }

    /// Waits for the next commit on the source after the last batch read (woken early where the engine notifies),
    /// at most `idleInterval`.
    private func idle() async {
        if let feed = try? await feed() {
            await feed.waitForChanges(after: ChangeCursor(state: state.withLock { $0.lastCursor }), timeout: options.idleInterval)
        } else {
            try? await Task.sleep(for: options.idleInterval)
        }
    }

    /// One batch: read from the checkpoint, then apply + checkpoint + lease renewal in one target transaction.
    /// Returns the number of events read (0 when idle), or nil when another relay holds the lease. A batch fenced
    /// off by a moved checkpoint counts as read (and nothing of it is applied).
    func step() async throws -> Int? {
        // On the primary: the checkpoint this step starts from must be the one the fence below compares with.
        try await ReadConsistency.$fromPrimary.withValue(true) { try await stepOnPrimary() }
    }

    private func stepOnPrimary() async throws -> Int? {
        let feed = try await feed()
        let kv = try stateHolder.keyValueStore(for: RelayedCopy.stateSpec(on: copy.stateEngine))
        let publisher = copy.kind == .stream ? try target.streamPublisher() : nil
        let docs = copy.kind == .documents ? try target.documentStore(for: copy.copySpec) : nil
        let table = copy.kind == .analytics ? try target.tableStore(for: copy.analyticsSpec) : nil
        // An embeddings copy writes the projection of the dataset as its engine holds it: the dataset itself
        // when the projection is on the dataset's engine, else the documents copy there.
        let vectors = copy.kind == .embeddings
            ? try target.projectedVectors(for: copy.target == copy.dataset.engine ? copy.dataset : copy.copySpec) : nil
        let cache = copy.kind == .cache ? try target.cacheBackend() : nil
        let analytics = copy
        let checkpoint = try await RelayCheckpoint.load(copy, from: kv)
        state.withLock { $0.appliedPosition = max($0.appliedPosition, checkpoint.position) }
        // A captured dataset's first steps copy the rows that were there before its capture slot (just created by
        // feed()) existed: a snapshot, read in key order, as puts at position 0 that any captured change overrides.
        let snapshot = try await snapshotPage(checkpoint: checkpoint, kv: kv)
        let batch: (events: [ChangeEvent], next: ChangeCursor)
        if let snapshot {
            batch = (snapshot.events, ChangeCursor(state: checkpoint.cursor))
        } else {
            batch = try await feed.changes(after: ChangeCursor(state: checkpoint.cursor), limit: options.batchSize)
        }
        let mine = batch.events.filter { $0.dataset == copy.dataset.name }
        if snapshot == nil { state.withLock { $0.lastCursor = batch.next.state } }
        // An empty batch means nothing is left (the feed's contract), so nothing is stored for it. Any other batch
        // moves the checkpoint, even one of other datasets' events or of relay state an older version wrote
        // with events: otherwise the relay would read it again forever.
        if snapshot == nil && batch.events.isEmpty { return 0 }
        let relevant = snapshot.map { _ in 1 } ?? batch.events.count
        // Embeddings are computed before the transaction: a slow model holds no lock. A failure the endpoint may
        // recover from fails the step (retried with backoff; other copies go on); a document it refuses becomes a
        // dead letter.
        var embeddings: ([String: [Float]], [String: String]) = ([:], [:])
        if let embedder, let p = copy.dataset.projection(.vectors) {
            // Embedding costs model calls: a relay that another one leads stops before it (the transaction below
            // checks the lease again, under the lock).
            if Lease.heldByAnother(try await kv.get(leaseKey), than: options.holder, at: Date()) { return nil }
            embeddings = try await embed(Self.latestPerKey(mine).filter { $0.operation == "put" }, with: embedder, projection: p)
        }
        let (embedded, refused) = embeddings
        let now = Date()
        let holder = options.holder
        let leaseSeconds = Double(options.leaseDuration.components.seconds) + Double(options.leaseDuration.components.attoseconds) / 1e18
        let copyName = copy.name, deadPrefix = self.deadPrefix, cachePrefix = ReadThroughCache.keyPrefix(copy.dataset.name)
        let (leader, dead, applied, current) = try await stateHolder.withTransaction { () async throws -> (Bool, [DeadLetter], Int, Bool) in
            try await self.lock(kv)
            let held = try await kv.getMany([self.leaseKey, self.checkpointKey])
            if Lease.heldByAnother(held[self.leaseKey], than: holder, at: now) { return (false, [], 0, true) }
            // The checkpoint fence: if the checkpoint moved since the batch was read (a rebuild swapped a new copy
            // in, or a relay with the same holder id ran a step), this batch is stale; read again.
            if try RelayCheckpoint.decode(held[self.checkpointKey], of: analytics).cursor != checkpoint.cursor {
                return (true, [], 0, false)
            }
            var dead: [DeadLetter] = []
            var applied = 0
            // The relay's own records of this step (per-key versions, checkpoint, lease), written in one call at the end.
            var records: [(key: String, value: Data)] = []
            func setAside(_ event: ChangeEvent, _ error: String) async throws {
                let letter = DeadLetter(position: event.position, key: event.key, operation: event.operation, error: error)
                dead.append(letter)
                // Position and sequence: the events of one captured transaction (or of a snapshot) share a position.
                _ = try await kv.set(deadPrefix + String(format: "%020lld.%010ld", event.position, event.sequence), try JSONEncoder().encode(letter), ttl: nil)
            }
            if let publisher, !mine.isEmpty {
                // Published inside the state transaction: if publishing fails, the checkpoint does not move and
                // the batch is published again (consumers de-duplicate by key and version).
                try await publisher.publish(mine, to: analytics.dataset.name, maxLength: nil)
                applied += mine.count
            }
            if let table {
                // Rows are keyed by position, so writing one again changes nothing.
                for event in mine {
                    do {
                        _ = try await table.upsert([try analytics.analyticsRow(event)])
                        applied += 1
                    } catch {
                        try await setAside(event, "\(error)")
                    }
                }
            }
            if let cache {
                // Another writer changed these keys: drop their entries. The tombstone's version is the change's log
                // position, above any document version, so no fill that read the old value lands for its lifetime.
                for event in mine {
                    try await cache.invalidate(cachePrefix + event.key, version: event.position, ttl: .seconds(10))
                    applied += 1
                }
            }
            if vectors != nil || docs != nil {
                // Per key, only the batch's last event is applied, and only over an older version: a replay, or a
                // repair that already wrote a newer state, leaves the copy as it is. The versions are read and
                // written once per batch, and the puts go in one call.
                let (due, held) = try await Self.newerThanHeld(Self.latestPerKey(mine), copy: copyName, in: kv)
                var done: [ChangeEvent] = []
                if let vectors {
                    var upserts: [VectorRecord] = []
                    for event in due {
                        if let error = refused[event.key] {
                            try await setAside(event, error)
                        } else if event.operation == "put", let vector = embedded[event.key], !vector.isEmpty {
                            upserts.append(VectorRecord(id: event.key, vector: vector))
                            done.append(event)
                        } else if event.operation == "put" || event.operation == "delete" {
                            // Deleted, or nothing to embed (the fields are empty): no vector.
                            _ = try await vectors.delete(event.key)
                            done.append(event)
                        }
                    }
                    if !upserts.isEmpty { _ = try await vectors.upsert(upserts) }
                }
                if let docs {
                    done += try await Self.apply(due, to: docs, setAside: setAside)
                }
                records += done.map { (RelayedCopy.versionKey(copyName, $0.key), $0.version.stored) }
                // An event overwritten by a later one of its key in this batch counts as applied with it (unless the
                // copy already held a version as new as it: a replay).
                let doneKeys = Set(done.map(\.key))
                applied += mine.count { e in doneKeys.contains(e.key) && held[e.key].map { $0 < e.version } ?? true }
            }
            let position = batch.events.map(\.position).max() ?? checkpoint.position
            if let snapshot {
                records.append((self.snapshotKey, Data(snapshot.progress.utf8)))
            } else if !batch.events.isEmpty || checkpoint.cursor != batch.next.state {
                records.append((self.checkpointKey, try JSONEncoder().encode(RelayCheckpoint(cursor: batch.next.state, position: max(position, checkpoint.position)))))
            }
            records.append((self.leaseKey, try JSONEncoder().encode(Lease(holder: holder, expires: now.timeIntervalSince1970 + leaseSeconds))))
            try await kv.setMany(records, ttl: nil)
            return (true, dead, applied, true)
        }
        // Fenced: the checkpoint moved after the batch was read (another step or a rebuild moved it; both read and
        // fence use the primary), so nothing was applied. Counting the batch as read makes catchUp and the run loop
        // step again at once from the moved checkpoint, instead of stopping or idling.
        guard current else { return batch.events.count }
        if let captured = captured.withLock({ $0 }) {
            // The batch is checkpointed on the target: the engine may now discard its log up to there. Failing to
            // say so only keeps log longer; the next step says it again.
            do { try await captured.acknowledge(upTo: batch.next) } catch {
                logger.warning("relay: could not acknowledge captured changes", metadata: ["copy": "\(copyName)", "error": "\(error)"])
            }
        }
        for letter in dead {
            logger.error("relay: event set aside as a dead letter", metadata: ["copy": "\(copyName)", "position": "\(letter.position)", "key": "\(letter.key)", "error": "\(letter.error)"])
        }
        let position = max(batch.events.map(\.position).max() ?? 0, checkpoint.position)
        state.withLock { s in
            let wasLeader = s.leader
            s.leader = leader
            if leader != wasLeader { logger.info(leader ? "relay: leading copy" : "relay: another relay leads copy", metadata: ["copy": "\(copyName)"]) }
            guard leader else { return }
            s.lastError = nil
            s.appliedPosition = max(s.appliedPosition, position)
            s.applied += applied
            s.deadLetters += dead.count
        }
        guard leader else { return nil }
        progress.advance(copy.name, to: position)
        if applied > 0 {
            telemetry.recorder(OperationKey(dataset: copy.dataset.name, engine: copy.target, operation: "relay.apply")).record(nanoseconds: 0, rows: applied, bytes: 0)
        }
        return relevant
    }

    /// The last event of each key in `events`, in their order: applying only those ends in the same state.
    static func latestPerKey(_ events: [ChangeEvent]) -> [ChangeEvent] {
        var last: [String: Int] = [:]
        for (i, e) in events.enumerated() { last[e.key] = i }
        return events.enumerated().filter { last[$0.element.key] == $0.offset }.map(\.element)
    }

    /// The events whose key the copy holds at an older version than theirs (or not at all), and the versions it
    /// holds by key, by one read of the relay's per-key versions.
    static func newerThanHeld(_ events: [ChangeEvent], copy: String, in kv: any KeyValueStore) async throws -> ([ChangeEvent], [String: EventVersion]) {
        let stored = try await kv.getMany(events.map { RelayedCopy.versionKey(copy, $0.key) })
        var held: [String: EventVersion] = [:]
        for event in events {
            if let raw = stored[RelayedCopy.versionKey(copy, event.key)], let version = EventVersion(stored: raw) { held[event.key] = version }
        }
        return (events.filter { event in held[event.key].map { $0 < event.version } ?? true }, held)
    }

    /// Applies puts and deletes (one event per key) to a documents copy: the puts in one call, and if the copy
    /// refuses that call, one by one, so only the documents it refuses become dead letters. Returns the events
    /// applied.
    static func apply(_ events: [ChangeEvent], to docs: any DocumentStore,
                      setAside: (ChangeEvent, String) async throws -> Void) async throws -> [ChangeEvent] {
        var done: [ChangeEvent] = []
        var puts: [(event: ChangeEvent, payload: Data)] = []
        for event in events {
            switch event.operation {
            case "put":
                guard let payload = event.payload else {
                    try await setAside(event, PolyglotError(.invalidArgument, "Outbox event \(event.position) (put '\(event.key)') has no payload.", fix: "Rebuild the copy.").description)
                    continue
                }
                puts.append((event, payload))
            case "delete":
                do {
                    _ = try await docs.delete(event.key)
                    done.append(event)
                } catch {
                    try await setAside(event, "\(error)")
                }
            default:
                continue
            }
        }
        guard !puts.isEmpty else { return done }
        do {
            _ = try await docs.put(puts.map { ($0.event.key, $0.payload) })
            return done + puts.map(\.event)
        } catch {
            // The failed call changed nothing (a savepoint inside the step's transaction): find the refused ones.
            for (event, payload) in puts {
                do {
                    _ = try await docs.put([(event.key, payload)])
                    done.append(event)
                } catch {
                    try await setAside(event, "\(error)")
                }
            }
            return done
        }
    }

    /// Embeddings of the puts in `events` (one event per key), by key (an empty vector when there is no text to
    /// embed), and the keys the embedder refused, with its message. Throws when the endpoint may recover (retry
    /// later). Keyed by key, not position: a snapshot's events all have position 0, and a captured transaction's
    /// events share its position.
    private func embed(_ events: [ChangeEvent], with embedder: any Embedder, projection p: ProjectionSpec) async throws -> ([String: [Float]], [String: String]) {
        var texts: [(key: String, text: String)] = []
        var refused: [String: String] = [:]
        for event in events {
            guard let payload = event.payload, let body = try? JSON(parsing: payload) else {
                refused[event.key] = "Outbox event \(event.position) (put '\(event.key)') has no readable payload to embed."
                continue
            }
            texts.append((event.key, p.embeddingText(of: body)))
        }
        var out: [String: [Float]] = [:]
        guard !texts.isEmpty else { return (out, refused) }
        let start = ContinuousClock.now
        let recorder = telemetry.recorder(OperationKey(dataset: copy.dataset.name, engine: p.embedder ?? EmbedderSpec.hashing, operation: "embed"))
        do {
            let vectors = try await embedder.embed(texts.map(\.text))
            for (t, v) in zip(texts, vectors) { out[t.key] = v }
            recorder.record(nanoseconds: Telemetry.nanoseconds(since: start), rows: texts.count, bytes: texts.reduce(0) { $0 + $1.text.utf8.count })
        } catch let error as PolyglotError where !error.isRetryable {
            recorder.record(nanoseconds: Telemetry.nanoseconds(since: start), failed: true)
            // The endpoint refused the batch: find which documents it refuses, one at a time.
            for t in texts {
                do {
                    out[t.key] = try await embedder.embed([t.text]).first ?? []
                } catch let one as PolyglotError where !one.isRetryable {
                    refused[t.key] = one.description
                }
            }
        } catch {
            recorder.record(nanoseconds: Telemetry.nanoseconds(since: start), failed: true)
            throw error
        }
        return (out, refused)
    }

    func release() async throws {
        guard state.withLock({ $0.leader }) else { return }
        let kv = try stateHolder.keyValueStore(for: RelayedCopy.stateSpec(on: copy.stateEngine))
        let holder = options.holder
        try await stateHolder.withTransaction {
            try await self.lock(kv)
            if let raw = try await kv.get(self.leaseKey), let lease = try? JSONDecoder().decode(Lease.self, from: raw), lease.holder == holder {
                _ = try await kv.delete(self.leaseKey)
            }
        }
        state.withLock { $0.leader = false }
    }

    func deadLetters() async throws -> [DeadLetter] {
        let kv = try stateHolder.keyValueStore(for: RelayedCopy.stateSpec(on: copy.stateEngine))
        var out: [DeadLetter] = []
        var after: String?
        while true {
            let page = try await kv.scan(prefix: deadPrefix, after: after, limit: 500)
            out += page.compactMap { try? JSONDecoder().decode(DeadLetter.self, from: $0.value) }
            guard page.count == 500, let last = page.last else { return out }
            after = last.key
        }
    }

    struct Lease: Codable {
        var holder: String
        var expires: Double

        /// Whether `raw` is a lease that another holder than `holder` still owns at `now`.
        static func heldByAnother(_ raw: Data?, than holder: String, at now: Date) -> Bool {
            guard let raw, let lease = try? JSONDecoder().decode(Lease.self, from: raw) else { return false }
            return lease.holder != holder && lease.expires > now.timeIntervalSince1970
        }
    }
}

/// Where a relayed copy stands, stored on its target engine in the same transaction as the batch it ends.
struct RelayCheckpoint: Codable {
    /// The change feed's cursor to continue from.
    var cursor: String = ""
    /// The highest outbox position applied.
    var position: Int64 = 0
    /// For a rebuild's hold (``rebuildKey(_:)``): which rebuild it is.
    var holder: String?

    static func key(_ copy: RelayedCopy) -> String { "checkpoint\u{1F}\(copy.name)" }
    /// Where a running rebuild of `copy` keeps its new copy's cursor, so maintenance keeps the outbox events it has
    /// not read yet (``Polyglot/maintain(now:)``). Written with a time to live (``rebuildTTL``) that each page and
    /// batch renews: a rebuild that died stops holding events back once it expires.
    static func rebuildKey(_ copy: RelayedCopy) -> String { "rebuild\u{1F}\(copy.name)" }
    static let rebuildTTL: Duration = .seconds(3600)

    /// The cursor a running rebuild of `copy` has read to, if one runs.
    static func loadRebuild(_ copy: RelayedCopy, from state: any KeyValueStore) async throws -> RelayCheckpoint? {
        guard let raw = try await state.get(rebuildKey(copy)) else { return nil }
        do { return try JSONDecoder().decode(RelayCheckpoint.self, from: raw) } catch {
            throw PolyglotError(.engineFailure, "The hold of a rebuild of '\(copy.name)' on the outbox is unreadable: \(error).",
                                fix: "Delete it (key '\(rebuildKey(copy))' of _polyglot_relay on '\(copy.target)'); it also expires within \(rebuildTTL).")
        }
    }

    static func load(_ copy: RelayedCopy, from state: any KeyValueStore) async throws -> RelayCheckpoint {
        try decode(try await state.get(key(copy)), of: copy)
    }

    /// The checkpoint stored as `raw` (none yet: the start).
    static func decode(_ raw: Data?, of copy: RelayedCopy) throws -> RelayCheckpoint {
        guard let raw else { return RelayCheckpoint() }
        do { return try JSONDecoder().decode(RelayCheckpoint.self, from: raw) } catch {
            throw PolyglotError(.engineFailure, "The relay checkpoint of '\(copy.name)' is unreadable: \(error).",
                                fix: "Delete it (key '\(key(copy))' of _polyglot_relay on '\(copy.target)') to replay the copy from the start.")
        }
    }
}

extension RelayedCopy {
    /// The analytics row of one outbox event.
    func analyticsRow(_ event: ChangeEvent) throws -> Row {
        var row: Row = ["position": .number(Double(event.position)), "key": .string(event.key), "op": .string(event.operation),
                        "at": event.createdAt.map { .number($0.timeIntervalSince1970) } ?? .null]
        if dataset.capture { row["event"] = .string("\(event.position).\(event.sequence)") }
        let body = try event.payload.map { try JSON(parsing: $0) }
        let p = dataset.projection(.analytics)
        if let p, !p.fields.isEmpty {
            for f in p.fields { row[Self.column(f)] = body?[FieldPath(f)] ?? .null }
        } else {
            row["document"] = body ?? .null
        }
        return row
    }
}
