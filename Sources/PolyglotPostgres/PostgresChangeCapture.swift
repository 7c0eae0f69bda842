import Foundation
import Logging
import NIOCore
import Polyglot
import PostgresNIO
import Synchronization

/// Change data capture from PostgreSQL's write-ahead log (logical decoding with the built-in `pgoutput` plugin).
///
/// `capturedChanges(of:consumer:)` makes, idempotently, a publication for the datasets' tables and a logical
/// replication slot for the consumer, and returns a feed that reads the slot with the SQL interface
/// (`pg_logical_slot_peek_binary_changes`, which does not consume) and advances it only when the reader
/// acknowledges (`pg_replication_slot_advance`). So every writer's changes reach the projections: another
/// service, psql, a migration script.
///
/// ```swift
/// let engine = try db.engine("primary") as! PostgresEngine
/// let feed = try await engine.capturedChanges(of: [orders], consumer: "orders@search")
/// var cursor = ChangeCursor.start
/// let batch = try await feed.changes(after: cursor, limit: 500)
/// for event in batch.events { try await apply(event) }
/// cursor = batch.next                       // store as the checkpoint, then:
/// try await feed.acknowledge(upTo: cursor)  // the server may drop its WAL up to here
/// ```
extension PostgresEngine: ChangeCaptureEngine {
    /// The replication slot (and publication) name of a consumer: `polyglot_`, the sanitized schema and consumer,
    /// and a hash of database, schema and consumer, at most 63 characters. Slots are server-wide, so the hash
    /// keeps two databases or schemas with the same consumer apart.
    static func captureSlotName(database: String, schema: String, consumer: String) -> String {
        var hash: UInt64 = 0xcbf29ce484222325
        for b in "\(database)\u{0}\(schema)\u{0}\(consumer)".utf8 { hash = (hash ^ UInt64(b)) &* 0x100000001b3 }
        let readable = String("\(schema)_\(consumer)".lowercased().unicodeScalars.map { s -> Character in
            (s >= "a" && s <= "z") || (s >= "0" && s <= "9") ? Character(s) : "_"
        }.prefix(36))
        let hex = String(hash, radix: 16)
        return "polyglot_" + readable + "_" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The slot name of `consumer` on this engine's database and schema.
    public func captureSlotName(consumer: String) async throws -> String {
        let database = try await onPrimary("reading the database name") { c in
            try await self.fetch(c, PGQuery("SELECT current_database()::text")) { try $0.decode(String.self) }.first ?? ""
        }
        return Self.captureSlotName(database: database, schema: settings.schema, consumer: consumer)
    }

    public func capturedChanges(of datasets: [DatasetSpec], consumer: String) async throws -> any CapturedChangeFeed {
        try checkOpen()
        guard !datasets.isEmpty else {
            throw PolyglotError(.invalidArgument, "Change capture for '\(consumer)' on '\(spec.name)' was asked for no datasets.",
                                fix: "Pass the datasets (documents or tables on this engine) whose changes the consumer needs.")
        }
        for ds in datasets {
            if ds.model != .documents && ds.model != .table {
                throw PolyglotError(.wrongModel, "Dataset '\(ds.name)' is \(ds.model.rawValue); change capture reads documents and tables.",
                                    fix: "Capture only documents and table datasets.")
            }
            if ds.engine != spec.name {
                throw PolyglotError(.invalidArgument, "Dataset '\(ds.name)' lives on engine '\(ds.engine)', not '\(spec.name)'.",
                                    fix: "Ask the dataset's own engine for its captured changes.")
            }
            if ds.model == .table, (ds.primaryKey ?? "").isEmpty {
                throw PolyglotError(.invalidDataMap, "Table '\(ds.name)' has no primary key, which change capture needs for its events' keys.",
                                    fix: "Declare `primaryKey:` on the dataset.")
            }
        }
        let schema = settings.schema
        let (database, _) = try await checkCaptureRequirements()
        let slot = Self.captureSlotName(database: database, schema: schema, consumer: consumer)
        let tables = datasets.map { table($0.name) }

        // The publication (and replica identities) first, in one transaction under a lock per slot, so processes
        // that start together take turns; the slot after it, since decoding reads the publication as of each change.
        try await onPrimary("preparing the publication for '\(consumer)'") { c in
            try await self.exec(c, "BEGIN")
            do {
                var lock = PGQuery()
                lock.sql = "SELECT pg_advisory_xact_lock(hashtext(\(lock.bind("polyglot capture " + slot))))"
                try await self.execute(c, lock)
                for (ds, t) in zip(datasets, tables) {
                    var q = PGQuery()
                    q.sql = "SELECT c.relreplident::text FROM pg_class c WHERE c.oid = to_regclass(\(q.bind(t)))"
                    guard let identity = try await self.fetch(c, q, { try $0.decode(String.self) }).first else {
                        throw PolyglotError(.notFound, "Dataset '\(ds.name)' has no table \(t) on engine '\(self.spec.name)', so its changes cannot be captured.",
                                            fix: "Open Polyglot with the dataset in its data map (that creates the table), or create the table, then capture again.")
                    }
                    // Updates and deletes log the whole old row, so a large value an update did not touch (TOAST,
                    // which the log otherwise leaves out) still reaches the event.
                    if identity != "f" { try await self.exec(c, "ALTER TABLE \(t) REPLICA IDENTITY FULL") }
                }
                var existing = PGQuery()
                existing.sql = "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = \(existing.bind(slot))"
                let published = Set(try await self.fetch(c, existing) { row -> String in
                    let (s, t) = try row.decode((String, String).self)
                    return s + "." + t
                })
                let wanted = Set(datasets.map { schema + "." + $0.name })
                var exists = PGQuery()
                exists.sql = "SELECT count(*) FROM pg_publication WHERE pubname = \(exists.bind(slot))"
                let list = tables.joined(separator: ", ")
                if try await self.fetch(c, exists, { try $0.decode(Int.self) }).first == 0 {
                    // TRUNCATE is not published: it names no keys, so it cannot become events (see docs/postgres.md).
                    try await self.exec(c, "CREATE PUBLICATION \(PGQuery.ident(slot)) FOR TABLE \(list) WITH (publish = 'insert, update, delete')")
                } else if published != wanted {
                    try await self.exec(c, "ALTER PUBLICATION \(PGQuery.ident(slot)) SET TABLE \(list)")
                }
                try await self.exec(c, "COMMIT")
            } catch {
                await self.rollback(c)
                throw error
            }
        }
        try await onPrimary("creating the replication slot for '\(consumer)'") { c in
            var q = PGQuery()
            q.sql = "SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = \(q.bind(slot))"
            if let (plugin, db) = try await self.fetch(c, q, { try $0.decode((String?, String?).self) }).first {
                guard plugin == "pgoutput", db == database else {
                    throw PolyglotError(.conflict, "A replication slot named \(slot) exists but is not Polyglot's capture slot for '\(consumer)' (plugin \(plugin ?? "none"), database \(db ?? "none")).",
                                        fix: "Drop that slot (SELECT pg_drop_replication_slot('\(slot)')) or use another consumer name.")
                }
                return
            }
            var create = PGQuery()
            create.sql = "SELECT pg_create_logical_replication_slot(\(create.bind(slot))::name, 'pgoutput')"
            do {
                try await self.execute(c, create)
                self.logger.info("created a capture slot", metadata: ["slot": "\(slot)", "consumer": "\(consumer)"])
            } catch where Self.sqlState(error) == "42710" {
                // Another process created it at the same time.
            }
        }
        return PostgresCapturedFeed(engine: self, slot: slot, consumer: consumer, datasets: datasets)
    }

    public func dropCapture(consumer: String) async throws {
        try checkOpen()
        let slot = try await captureSlotName(consumer: consumer)
        try await onPrimary("dropping the capture slot of '\(consumer)'") { c in
            var q = PGQuery()
            q.sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = \(q.bind(slot))"
            try await self.execute(c, q)
            try await self.exec(c, "DROP PUBLICATION IF EXISTS \(PGQuery.ident(slot))")
        }
        logger.info("dropped a capture slot", metadata: ["slot": "\(slot)", "consumer": "\(consumer)"])
    }

    /// The capture slots of this engine's database: how far each is behind and how much WAL it keeps on the server.
    ///
    /// ```swift
    /// for slot in try await pg.captureSlots() where slot.retainedBytes > 1 << 30 {
    ///     logger.warning("capture slot \(slot.name) keeps \(slot.retainedBytes) bytes of WAL")
    /// }
    /// ```
    public func captureSlots() async throws -> [CaptureSlotStatus] {
        try await onPrimary("reading the capture slots") { c in
            let q = PGQuery("""
            SELECT slot_name::text, active, confirmed_flush_lsn::text, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::float8,
                   coalesce(wal_status, '')
            FROM pg_replication_slots WHERE slot_type = 'logical' AND plugin = 'pgoutput' AND database = current_database() AND slot_name LIKE 'polyglot\\_%'
            ORDER BY slot_name
            """)
            return try await self.fetch(c, q) { row in
                let (name, active, confirmed, retained, status) = try row.decode((String, Bool, String?, Double, String).self)
                return CaptureSlotStatus(name: name, active: active, confirmedLSN: confirmed.flatMap(LSN.parse).map { Int64(bitPattern: $0) },
                                         retainedBytes: Int64(retained), walStatus: status)
            }
        }
    }

    /// Logs a warning for every capture slot that keeps more than `threshold` bytes of WAL (its reader is down or
    /// stuck) or that the server has invalidated (`wal_status = lost`). Run by ``maintain(now:)``.
    func warnAboutCaptureSlots(threshold: Int64 = 1 << 30) async {
        guard let slots = try? await captureSlots() else { return }
        for s in slots where s.retainedBytes > threshold || s.walStatus == "lost" {
            logger.warning("a change-capture slot is stalled and keeps WAL on the server",
                           metadata: ["slot": "\(s.name)", "retainedBytes": "\(s.retainedBytes)", "active": "\(s.active)", "walStatus": "\(s.walStatus)",
                                      "fix": "start its reader (the relay), or drop it with dropCapture(consumer:) / pg_drop_replication_slot"])
        }
    }

    /// wal_level, and whether the user may use replication slots; returns the database and user names.
    func checkCaptureRequirements() async throws -> (database: String, user: String) {
        let (level, allowed, database, user) = try await onPrimary("checking the change-capture settings") { c in
            let q = PGQuery("""
            SELECT current_setting('wal_level'), coalesce((SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user), false),
                   current_database()::text, current_user::text
            """)
            return try await self.fetch(c, q) { try $0.decode((String, Bool, String, String).self) }.first ?? ("", false, "", "")
        }
        if level != "logical" {
            throw PolyglotError(.missingCapability,
                                "Engine '\(spec.name)' cannot capture changes: the server runs with wal_level = \(level), and logical decoding needs wal_level = logical.",
                                fix: "Set `wal_level = logical` in postgresql.conf (or run ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL; also make sure max_replication_slots and max_wal_senders leave one slot per capture consumer.")
        }
        if !allowed {
            throw PolyglotError(.missingCapability,
                                "Engine '\(spec.name)' cannot capture changes: the role \(user) may not use replication slots.",
                                fix: "Give the role the REPLICATION attribute (ALTER ROLE \(PGQuery.ident(user)) REPLICATION), or connect as a role that has it.")
        }
        return (database, user)
    }

    /// Runs `body` on a pooled connection of the primary (replication slots live there, never on a replica) and
    /// turns server errors about slots into errors that say what to do.
    func onPrimary<R: Sendable>(_ what: String, _ body: (PostgresConnection) async throws -> R) async throws -> R {
        try checkOpen()
        do {
            return try await primary.withConnection { c in try await body(c) }
        } catch let e as PolyglotError {
            throw e
        } catch {
            switch Self.sqlState(error) {
            case "53400":
                throw PolyglotError(.limitExceeded, "Engine '\(spec.name)' has no free replication slot for \(what): all max_replication_slots are in use.",
                                    fix: "Drop unused slots (SELECT slot_name, active FROM pg_replication_slots; then pg_drop_replication_slot(name), or dropCapture(consumer:)), or raise max_replication_slots in postgresql.conf and restart PostgreSQL.")
            case "55000" where Self.serverMessage(error).contains("wal_level"):
                throw PolyglotError(.missingCapability, "Engine '\(spec.name)' cannot capture changes during \(what): logical decoding needs wal_level = logical.",
                                    fix: "Set `wal_level = logical` in postgresql.conf and restart PostgreSQL.")
            case "42501":
                throw PolyglotError(.missingCapability, "Engine '\(spec.name)' refused \(what) for lack of privilege: \(PostgresEngine.translate(error, engine: spec.name, during: what).message)",
                                    fix: "Change capture needs a role with the REPLICATION attribute (ALTER ROLE … REPLICATION) that owns the datasets' tables and may CREATE in the database (for the publication).")
            case "55000" where Self.serverMessage(error).contains("replication slot"):
                throw PolyglotError(.engineFailure, "Engine '\(spec.name)' can no longer read a capture slot during \(what): \(Self.serverMessage(error)) (the server invalidated it, e.g. past max_slot_wal_keep_size).",
                                    fix: "Drop it (dropCapture(consumer:)), call capturedChanges(of:consumer:) again for a new slot, then repair the copies from the source (polyglot verify --repair).")
            case "42704" where Self.serverMessage(error).contains("replication slot"):
                throw PolyglotError(.notFound, "A capture slot does not exist on '\(spec.name)' (\(what)).",
                                    fix: "Call capturedChanges(of:consumer:) again to make a new slot, then repair the copies from the source (polyglot verify --repair).")
            case "55006":
                throw PolyglotError(.engineFailure, "The capture slot was busy during \(what): another session is reading or advancing it.",
                                    fix: "Retry; only one reader should use a consumer's slot at a time (the relay's lease ensures that).", retryable: true)
            default:
                throw PostgresEngine.translate(error, engine: spec.name, during: what)
            }
        }
    }

    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    static func serverMessage(_ error: any Error) -> String {
        (error as? PSQLError)?.serverInfo?[.message] ?? ""
    }
}

/// A capture slot as ``PostgresEngine/captureSlots()`` reports it.
public struct CaptureSlotStatus: Sendable, Hashable {
    public var name: String
    /// Whether a session is reading it right now.
    public var active: Bool
    /// Where its reader acknowledged up to (an LSN), nil before the first.
    public var confirmedLSN: Int64?
    /// WAL the server keeps for it: from its restart position to the current WAL position.
    public var retainedBytes: Int64
    /// `reserved`, `extended`, `unreserved` or `lost` (past max_slot_wal_keep_size: the slot can no longer be read).
    public var walStatus: String
}

/// An LSN as PostgreSQL writes it (`16/B374D848`) and back.
enum LSN {
    static func text(_ v: UInt64) -> String { String(v >> 32, radix: 16, uppercase: true) + "/" + String(v & 0xffff_ffff, radix: 16, uppercase: true) }
    static func parse(_ s: String) -> UInt64? {
        let parts = s.split(separator: "/")
        guard parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        return hi << 32 | lo
    }
}

/// Where a captured feed's reader is: after event `index` of the transaction that committed at `commitLSN`.
///
/// Text form `cdc1:<commit LSN>:<index>:<end LSN or 0>:<WAL flush position seen>`, LSNs as decimal integers.
/// `end` is set when `index` was the transaction's last event, so acknowledging can release the whole transaction.
struct CaptureCursor: Comparable {
    var commitLSN: UInt64 = 0
    var index: Int = -1
    var endLSN: UInt64 = 0
    /// The WAL flush position before the read that returned this cursor: a wait returns once the WAL passes it.
    var seenWAL: UInt64 = 0

    init(commitLSN: UInt64 = 0, index: Int = -1, endLSN: UInt64 = 0, seenWAL: UInt64 = 0) {
        self.commitLSN = commitLSN; self.index = index; self.endLSN = endLSN; self.seenWAL = seenWAL
    }

    init(_ cursor: ChangeCursor) throws {
        if cursor.state.isEmpty { return }
        let p = cursor.state.split(separator: ":").map(String.init)
        guard p.count == 5, p[0] == "cdc1", let l = UInt64(p[1]), let i = Int(p[2]), let e = UInt64(p[3]), let w = UInt64(p[4]) else {
            throw PolyglotError(.invalidArgument, "'\(cursor.state)' is not a cursor of a PostgreSQL captured change feed.",
                                fix: "Pass a cursor this feed returned (or ChangeCursor.start).")
        }
        commitLSN = l; index = i; endLSN = e; seenWAL = w
    }

    var cursor: ChangeCursor { ChangeCursor(state: "cdc1:\(commitLSN):\(index):\(endLSN):\(seenWAL)") }
    var isStart: Bool { commitLSN == 0 }

    static func < (a: CaptureCursor, b: CaptureCursor) -> Bool {
        a.commitLSN != b.commitLSN ? a.commitLSN < b.commitLSN : a.index < b.index
    }
    static func == (a: CaptureCursor, b: CaptureCursor) -> Bool { a.commitLSN == b.commitLSN && a.index == b.index }
}

/// One decoded change with its place in the log.
struct CapturedEvent: Sendable {
    var commitLSN: UInt64
    /// Its index among the transaction's event slots (deterministic: every decode of the transaction gives the same).
    var index: Int
    var isLastOfTransaction: Bool
    var endLSN: UInt64
    var event: ChangeEvent

    var after: CaptureCursor {
        CaptureCursor(commitLSN: commitLSN, index: index, endLSN: isLastOfTransaction ? endLSN : 0)
    }
}

/// A captured feed over one replication slot. See ``PostgresEngine/capturedChanges(of:consumer:)``.
///
/// - Positions are commit LSNs: every event of a transaction has its commit's LSN, and they increase strictly
///   from one transaction to the next in commit order. A key has at most one event per transaction (its last state).
/// - The cursor is (commit LSN, index of the last event returned within that transaction), so a batch limit that
///   falls inside a large transaction resumes at the next event of it.
/// - Reading peeks: it decodes from the slot's confirmed position and drops what is at or before the cursor.
///   ``acknowledge(upTo:)`` moves the confirmed position, and only then may the server recycle the WAL.
final class PostgresCapturedFeed: CapturedChangeFeed {
    let engine: PostgresEngine
    let slot: String
    let consumer: String
    /// Dataset by table name (in the engine's schema).
    let datasets: [String: DatasetSpec]
    private let lock = AsyncLock()

    private struct Cache {
        /// Relation messages seen so far (pgoutput sends them once per decoding session).
        var relations: [UInt32: PgOutputDecoder.Relation] = [:]
        /// The events after `from` in a contiguous run of whole transactions, as the last peek decoded them.
        var from = CaptureCursor()
        var events: [CapturedEvent] = []
        var seenWAL: UInt64 = 0
    }
    private let cache = Mutex(Cache())

    init(engine: PostgresEngine, slot: String, consumer: String, datasets: [DatasetSpec]) {
        self.engine = engine; self.slot = slot; self.consumer = consumer
        self.datasets = Dictionary(datasets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    func changes(after cursor: ChangeCursor, limit: Int) async throws -> (events: [ChangeEvent], next: ChangeCursor) {
        let after = try CaptureCursor(cursor)
        let limit = max(1, limit)
        if let served = fromCache(after: after, limit: limit) { return served }
        return try await lock.withLock {
        // Each peek returns whole transactions from the slot's confirmed position; events at or before the cursor
        // are read again and dropped. If the rows asked for were all old, ask for more until new ones come.
        var rowsWanted = max(limit * 2, 1_000)
        while true {
            let (rows, seenWAL) = try await peek(rowsWanted)
            let decoded = try decode(rows)
            let fresh = decoded.filter { after < $0.after }
            cache.withLock { c in c.from = after; c.events = fresh; c.seenWAL = seenWAL }
            if !fresh.isEmpty || rows.count < rowsWanted {
                return batch(fresh, after: after, limit: limit, seenWAL: seenWAL)
            }
            rowsWanted *= 4
        }
        }
    }

    /// Serves a batch from the last peek when the cursor is inside it and events after the cursor are left.
    private func fromCache(after: CaptureCursor, limit: Int) -> (events: [ChangeEvent], next: ChangeCursor)? {
        cache.withLock { c -> (events: [ChangeEvent], next: ChangeCursor)? in
            guard !(after < c.from), let last = c.events.last, after < last.after else { return nil }
            let start = c.events.firstIndex { after < $0.after } ?? c.events.count
            return batch(Array(c.events[start...]), after: after, limit: limit, seenWAL: c.seenWAL)
        }
    }

    private func batch(_ events: [CapturedEvent], after: CaptureCursor, limit: Int, seenWAL: UInt64) -> (events: [ChangeEvent], next: ChangeCursor) {
        let taken = events.prefix(limit)
        var next = taken.last?.after ?? after
        next.seenWAL = seenWAL
        return (taken.map(\.event), next.cursor)
    }

    /// Raw pgoutput messages from the slot, without consuming them, and the WAL flush position before the read.
    private func peek(_ rows: Int) async throws -> ([ByteBuffer], UInt64) {
        var attempt = 0
        while true {
            do {
                return try await engine.onPrimary("reading the capture slot \(slot)") { c in
                    try await engine.exec(c, "BEGIN")
                    do {
                        // The output functions format values by these settings; the decoder reads exactly this form.
                        let settings = PGQuery("""
                        SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), set_config('bytea_output', 'hex', true),
                               set_config('extra_float_digits', '3', true), pg_current_wal_flush_lsn()::text
                        """)
                        let flushed = try await engine.fetch(c, settings) { try $0.decode((String, String, String, String, String).self).4 }.first
                        var q = PGQuery()
                        q.sql = """
                        SELECT data FROM pg_logical_slot_peek_binary_changes(\(q.bind(slot))::name, NULL, \(q.bind(rows))::int4,
                            'proto_version', '1', 'publication_names', \(q.bind(slot)))
                        """
                        let data = try await engine.fetch(c, q) { try $0.decode(ByteBuffer.self) }
                        try await engine.exec(c, "COMMIT")
                        return (data, flushed.flatMap(LSN.parse) ?? 0)
                    } catch {
                        await engine.rollback(c)
                        throw error
                    }
                }
            } catch let e as PolyglotError where e.isRetryable && attempt < 20 && e.message.hasPrefix("The capture slot was busy") {
                attempt += 1
                try await Task.sleep(for: .milliseconds(10 * attempt))
            } catch let e as PolyglotError where e.code == .notFound {
                throw PolyglotError(.notFound, "The capture slot \(slot) of '\(consumer)' on '\(engine.spec.name)' does not exist (dropped?): changes made since it was dropped were not captured.",
                                    fix: "Call capturedChanges(of:consumer:) again to make a new slot, then repair the copies from the source (polyglot verify --repair).")
            } catch let e as PolyglotError where e.message.contains("could not map filenumber") || e.message.contains("could not map filenode") {
                // PostgreSQL's own decoding fails on a change to some table of the database (any schema) and will fail
                // the same way on every read: seen when the slot was made while other sessions created tables and
                // wrote to them (docs/postgres.md, "Limits"). Retrying cannot help; the slot must be replaced.
                throw PolyglotError(.engineFailure, "PostgreSQL cannot decode the WAL of capture slot \(slot) of '\(consumer)' on '\(engine.spec.name)' (\(e.message)); it will fail the same way on every read.",
                                    fix: "Drop the slot (dropCapture(consumer: \"\(consumer)\")), open Polyglot again (a new slot starts from now), then repair the copies from the source (polyglot verify --repair). Create capture slots while no other session is creating tables in that database.")
            }
        }
    }

    /// Decodes messages into events in commit order, each with its place (commit LSN, index).
    private func decode(_ rows: [ByteBuffer]) throws -> [CapturedEvent] {
        var decoder = PgOutputDecoder()
        decoder.relations = cache.withLock { $0.relations }
        for r in rows { try decoder.feed(r) }
        let relations = decoder.relations
        cache.withLock { $0.relations = relations }
        var out: [CapturedEvent] = []
        out.reserveCapacity(rows.count)
        for t in decoder.transactions {
            let at = Date(timeIntervalSince1970: 946_684_800 + Double(t.commitTime) / 1_000_000)
            var slotIndex = 0
            var produced: [CapturedEvent] = []
            for change in t.changes {
                let id: UInt32
                switch change {
                case .insert(let r, _), .update(let r, _, _), .delete(let r, _): id = r
                }
                guard let relation = relations[id] else { throw PgOutputDecoder.malformed("a change of relation \(id) without its Relation message") }
                let ds = relation.namespace == engine.settings.schema ? datasets[relation.name] : nil
                let made = try ds.map { try events(of: change, relation: relation, dataset: $0) } ?? []
                // An update that changed the key takes two slots (delete the old key, put the new one); a change of a
                // table this feed does not map takes one and yields nothing.
                let width = max(1, made.count)
                for (i, e) in made.enumerated() {
                    produced.append(CapturedEvent(commitLSN: t.commitLSN, index: slotIndex + i, isLastOfTransaction: false, endLSN: t.endLSN,
                                                  event: ChangeEvent(position: Int64(bitPattern: t.commitLSN), dataset: e.dataset, key: e.key,
                                                                     operation: e.operation, payload: e.payload, createdAt: at, sequence: slotIndex + i)))
                }
                slotIndex += width
            }
            if produced.isEmpty { continue }
            // Several changes of one key in one transaction become one event with the key's last state (nobody saw the
            // states in between): so a key has at most one event per position, and "apply if newer" stays exact.
            var last: [String: Int] = [:]
            for (i, e) in produced.enumerated() { last[e.event.dataset + "\u{0}" + e.event.key] = i }
            if last.count < produced.count {
                produced = produced.enumerated().filter { last[$0.element.event.dataset + "\u{0}" + $0.element.event.key] == $0.offset }.map(\.element)
            }
            produced[produced.count - 1].isLastOfTransaction = true
            out += produced
        }
        return out
    }

    private struct Made { var dataset: String; var key: String; var operation: String; var payload: Data? }

    private func events(of change: PgOutputDecoder.Change, relation: PgOutputDecoder.Relation, dataset ds: DatasetSpec) throws -> [Made] {
        let keyColumn = ds.model == .documents ? "id" : (ds.primaryKey ?? "")
        guard let keyIndex = relation.columns.firstIndex(where: { $0.name == keyColumn }) else {
            throw PolyglotError(.invalidDataMap, "The captured table \(relation.namespace).\(relation.name) has no column '\(keyColumn)' for the key of '\(ds.name)'.",
                                fix: "Keep the dataset's key column in the table.")
        }
        func key(_ values: [PgOutputDecoder.Value]) -> String? {
            guard keyIndex < values.count, case .text(let k) = values[keyIndex] else { return nil }
            return k
        }
        switch change {
        case .insert(_, let new):
            guard let k = key(new) else { return [] }
            return [Made(dataset: ds.name, key: k, operation: "put", payload: try payload(new, old: nil, relation: relation, dataset: ds))]
        case .update(_, let old, let new):
            guard let k = key(new) else { return [] }
            let put = Made(dataset: ds.name, key: k, operation: "put", payload: try payload(new, old: old, relation: relation, dataset: ds))
            if let old, let oldKey = key(old), oldKey != k {
                return [Made(dataset: ds.name, key: oldKey, operation: "delete", payload: nil), put]
            }
            return [put]
        case .delete(_, let old):
            guard let k = key(old) else { return [] }
            return [Made(dataset: ds.name, key: k, operation: "delete", payload: nil)]
        }
    }

    /// The document (documents: the `body` column) or the row as a JSON object (tables). A TOASTed value the change
    /// did not touch comes from the old row (REPLICA IDENTITY FULL logs it).
    private func payload(_ new: [PgOutputDecoder.Value], old: [PgOutputDecoder.Value]?, relation: PgOutputDecoder.Relation, dataset ds: DatasetSpec) throws -> Data? {
        func value(_ i: Int) -> PgOutputDecoder.Value {
            let v = i < new.count ? new[i] : .null
            if v == .unchangedToast, let old, i < old.count, old[i] != .unchangedToast { return old[i] }
            return v
        }
        if ds.model == .documents {
            guard let i = relation.columns.firstIndex(where: { $0.name == "body" }) else { return nil }
            switch value(i) {
            case .text(let body): return Data(body.utf8)
            case .null: return nil
            case .unchangedToast:
                engine.logger.warning("a captured update left out the unchanged document; set REPLICA IDENTITY FULL on the table",
                                      metadata: ["table": "\(relation.namespace).\(relation.name)"])
                return nil
            }
        }
        var row: Row = [:]
        for (i, column) in relation.columns.enumerated() {
            switch value(i) {
            case .null: row[column.name] = .null
            case .text(let t): row[column.name] = try PGText.json(t, typeOID: column.typeOID, fieldType: ds.field(column.name)?.type)
            case .unchangedToast:
                engine.logger.warning("a captured update left out an unchanged column; set REPLICA IDENTITY FULL on the table",
                                      metadata: ["table": "\(relation.namespace).\(relation.name)", "column": "\(column.name)"])
            }
        }
        return Data(JSON.object(row).text.utf8)
    }

    func acknowledge(upTo cursor: ChangeCursor) async throws {
        let c = try CaptureCursor(cursor)
        if c.isStart { return }
        // A whole transaction is released up to its end; one read part-way is kept (its commit record is not before
        // the confirmed position, so it is decoded again and the reader skips what its cursor covers).
        let target = c.endLSN != 0 ? c.endLSN : c.commitLSN
        let found = try await lock.withLock {
            try await engine.onPrimary("acknowledging the capture slot \(slot)") { conn in
                var q = PGQuery()
                let s = q.bind(slot), t = q.bind(LSN.text(target))
                q.sql = """
                SELECT CASE WHEN confirmed_flush_lsn < \(t)::pg_lsn THEN (pg_replication_slot_advance(\(s)::name, \(t)::pg_lsn)).end_lsn::text END
                FROM pg_replication_slots WHERE slot_name = \(s)
                """
                return try await engine.fetch(conn, q) { _ in true }.count
            }
        }
        if found == 0 {
            throw PolyglotError(.notFound, "The capture slot \(slot) of '\(consumer)' on '\(engine.spec.name)' does not exist (dropped?).",
                                fix: "Call capturedChanges(of:consumer:) again to make a new slot, then repair the copies from the source (polyglot verify --repair).")
        }
        cache.withLock { cache in
            cache.events.removeAll { !(c < $0.after) }
            if cache.from < c { cache.from = c }
        }
    }

    /// Returns once events after `cursor` have committed, or after `timeout`. Writers outside Polyglot send no
    /// NOTIFY, so it polls: every 20 ms it reads the server's WAL flush position (one cheap query), and only when
    /// that moved past what the read behind `cursor` saw does it peek the slot; the peeked batch is kept, so the
    /// caller's next ``changes(after:limit:)`` is served from memory. Writes to tables that are not captured move
    /// the WAL but wake nobody.
    func waitForChanges(after cursor: ChangeCursor, timeout: Duration) async {
        guard var seen = (try? CaptureCursor(cursor))?.seenWAL else {
            try? await Task.sleep(for: timeout)
            return
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let flushed = try? await engine.onPrimary("waiting for changes") { c in
                try await engine.fetch(c, PGQuery("SELECT pg_current_wal_flush_lsn()::text")) { try $0.decode(String.self) }.first.flatMap(LSN.parse)
            }
            guard let flushed = flushed ?? nil else { return }   // the server is unreachable: let the caller's read report it
            if flushed > seen {
                guard let batch = try? await changes(after: cursor, limit: 1) else { return }
                if !batch.events.isEmpty { return }
                seen = max(flushed, (try? CaptureCursor(batch.next))?.seenWAL ?? flushed)
            }
            try? await Task.sleep(for: min(.milliseconds(20), deadline - ContinuousClock.now))
        }
    }
}

/// A lock for async code: one holder at a time, waiters resume in order.
actor AsyncLock {
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func lock() async {
        if !held { held = true; return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func unlock() {
        if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }

    /// Runs `body` holding the lock.
    nonisolated func withLock<R: Sendable>(_ body: () async throws -> R) async throws -> R {
        await lock()
        do {
            let r = try await body()
            await unlock()
            return r
        } catch {
            await unlock()
            throw error
        }
    }
}
