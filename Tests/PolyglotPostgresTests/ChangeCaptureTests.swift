import Foundation
import Polyglot
import PolyglotPostgres
import PolyglotTesting
import PostgresNIO
import Synchronization
import Testing

/// Change data capture from PostgreSQL logical decoding (pgoutput): writes made by anyone, with plain SQL or through
/// Polyglot, come out of a replication slot as events in commit order. Real servers from scripts/services.
let capturedItems = DatasetSpec(name: "items", model: .documents, engine: "subject", capture: true)
let capturedAccounts = DatasetSpec(name: "accounts", model: .table, engine: "subject",
                                   fields: [FieldSpec("id", .integer, nullable: false), FieldSpec("owner", .string), FieldSpec("balance", .number),
                                            FieldSpec("active", .boolean), FieldSpec("opened", .timestamp), FieldSpec("meta", .json)],
                                   primaryKey: "id", capture: true)

/// A Polyglot in a fresh schema with the captured datasets, the engine, and the schema's name.
struct CaptureFixture: Sendable {
    let db: Polyglot
    let engine: PostgresEngine
    let schema: String
    let url: String

    init(_ url: String, datasets: [DatasetSpec] = [capturedItems, capturedAccounts]) async throws {
        db = try await openPostgres(url, datasets: datasets, options: ["poolSize": "12"])
        engine = try #require(try db.engine("subject") as? PostgresEngine)
        schema = try #require(db.map.engines[0].options["schema"])
        self.url = url
    }

    func t(_ name: String) -> String { "\"\(schema)\".\"\(name)\"" }

    /// Drops the consumers' slots (they would keep WAL on the shared server) and closes.
    func close(consumers: [String]) async throws {
        try await drop(consumers)
        try await db.close()
    }

    func drop(_ consumers: [String]) async throws {
        for c in consumers { try await engine.dropCapture(consumer: c) }
    }
}

/// Another service: postgres-nio directly, no Polyglot.
func withRawPostgres<R: Sendable>(_ url: String, _ body: @Sendable (PostgresClient) async throws -> R) async throws -> R {
    let u = try #require(URLComponents(string: url))
    let database = u.path.hasPrefix("/") && u.path.count > 1 ? String(u.path.dropFirst()) : "postgres"
    let config = PostgresClient.Configuration(host: u.host ?? "127.0.0.1", port: u.port ?? 5432, username: "postgres", password: nil, database: database, tls: .disable)
    let client = PostgresClient(configuration: config)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { await client.run(); return nil }
        defer { group.cancelAll() }
        return try await body(client)
    }
}

/// Runs statements in one transaction on one connection.
func rawTransaction(_ client: PostgresClient, _ statements: [String]) async throws {
    try await client.withConnection { c in
        _ = try await c.query("BEGIN", logger: testLogger).collect()
        for s in statements { _ = try await c.query(PostgresQuery(unsafeSQL: s), logger: testLogger).collect() }
        _ = try await c.query("COMMIT", logger: testLogger).collect()
    }
}

let testLogger = Logger(label: "polyglot.tests.capture")

final class Flag: Sendable { let value = Atomic<Bool>(false) }
final class Counter: Sendable { let value = Atomic<Int>(0) }

/// Reads until `count` events arrived (the test servers commit asynchronously, so a commit reaches the decodable
/// WAL within a few hundred ms), then checks that nothing more comes.
func readEvents(_ feed: any CapturedChangeFeed, from cursor: ChangeCursor = .start, count: Int, limit: Int = 100,
                timeout: Duration = .seconds(20)) async throws -> (events: [ChangeEvent], next: ChangeCursor) {
    var events: [ChangeEvent] = []
    var cursor = cursor
    let deadline = ContinuousClock.now + timeout
    while events.count < count, ContinuousClock.now < deadline {
        let batch = try await feed.changes(after: cursor, limit: limit)
        #expect(batch.events.count <= limit)
        events += batch.events
        cursor = batch.next
        if batch.events.isEmpty { await feed.waitForChanges(after: cursor, timeout: .milliseconds(200)) }
    }
    // Nothing beyond what was expected (give late WAL a moment).
    try await Task.sleep(for: .milliseconds(300))
    let extra = try await feed.changes(after: cursor, limit: limit)
    #expect(extra.events.isEmpty, "unexpected events: \(extra.events.map { "\($0.dataset)/\($0.key)/\($0.operation)" })")
    return (events, cursor)
}

func json(_ e: ChangeEvent) throws -> JSON? { try e.payload.map { try JSON(parsing: $0) } }

func slotState(_ f: CaptureFixture, consumer: String) async throws -> (exists: Bool, confirmed: String?) {
    let slot = try await f.engine.captureSlotName(consumer: consumer)
    let rows = try await f.db.sql(on: "subject", "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ?", [.string(slot)])
    return (!rows.isEmpty, rows.first?["lsn"]?.stringValue)
}

func lsnValue(_ s: String?) -> UInt64 {
    guard let parts = s?.split(separator: "/"), parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return 0 }
    return hi << 32 | lo
}

@Suite(.makesCaptureSlots) struct PostgresChangeCapture {
    @Test(arguments: ["pg15", "pg18"])
    func writesFromPlainSQLAndThroughPolyglotArriveAsEventsInCommitOrder(_ server: String) async throws {
        let f = try await CaptureFixture(server == "pg15" ? PGServers.pg15Capture : PGServers.pg18Capture)
        let consumer = "basic"
        let feed = try await f.engine.capturedChanges(of: [capturedItems, capturedAccounts], consumer: consumer)
        #expect(f.engine.capabilities.contains(.changeCapture))
        let items = try f.db.documents("items"), accounts = try f.db.table("accounts")

        // Through Polyglot (these also write _polyglot_outbox, which must not show up).
        try await items.put("a", ["name": "A", "n": 1])
        try await accounts.upsert(["id": 1, "owner": "ann", "balance": 10.5, "active": true, "opened": 1_700_000_000, "meta": ["tags": ["x", "y"]]])
        // Another service, with plain SQL: one transaction with four changes, then a delete on its own.
        try await withRawPostgres(f.url) { client in
            try await rawTransaction(client, [
                "INSERT INTO \(f.t("items"))(id, version, body) VALUES ('b', 1, '{\"name\": \"B\", \"deep\": {\"x\": [1, 2.5, null, true]}}')",
                "UPDATE \(f.t("items")) SET body = '{\"name\": \"A2\"}', version = version + 1 WHERE id = 'a'",
                "INSERT INTO \(f.t("accounts"))(id, owner, balance, active, opened, meta) VALUES (2, 'bob', -3, false, '2024-01-02T03:04:05.5Z', NULL)",
                "DELETE FROM \(f.t("accounts")) WHERE id = 1",
            ])
            try await rawTransaction(client, ["DELETE FROM \(f.t("items")) WHERE id = 'b'"])
        }
        let bobAsRead = try await accounts.get(2)
        // Deletes through Polyglot.
        _ = try await items.delete("a")
        #expect(try await accounts.delete(.field("id") == 2) == 1)

        let (events, _) = try await readEvents(feed, count: 9)
        let summary = events.map { "\($0.dataset)/\($0.key)/\($0.operation)" }
        #expect(summary == ["items/a/put", "accounts/1/put", "items/b/put", "items/a/put", "accounts/2/put", "accounts/1/delete", "items/b/delete",
                            "items/a/delete", "accounts/2/delete"])
        guard events.count == 9 else { return }
        // Positions: one per transaction, strictly increasing in commit order.
        let p = events.map(\.position)
        #expect(p[0] < p[1] && p[1] < p[2] && p[2] == p[3] && p[3] == p[4] && p[4] == p[5] && p[5] < p[6] && p[6] < p[7] && p[7] < p[8], "\(p)")
        #expect(events.allSatisfy { $0.createdAt.map { abs($0.timeIntervalSinceNow) < 120 } == true }, "commit times: \(events.map(\.createdAt))")
        // Payloads: documents as written, rows as JSON objects with JSON types, nothing for deletes.
        #expect(try json(events[0]) == ["name": "A", "n": 1])
        #expect(try json(events[2]) == ["name": "B", "deep": ["x": [1, 2.5, .null, true]]])
        #expect(try json(events[3]) == ["name": "A2"])
        #expect(try json(events[1]) == ["id": 1, "owner": "ann", "balance": 10.5, "active": true, "opened": 1_700_000_000, "meta": ["tags": ["x", "y"]]])
        let bob = try json(events[4])
        #expect(bob == ["id": 2, "owner": "bob", "balance": -3, "active": false, "opened": .number(1_704_164_645.5), "meta": .null])
        // The same row read through Polyglot's table store: the event carries exactly what a read returns.
        #expect(bobAsRead.map(JSON.object) == bob)
        #expect(events[5...].allSatisfy { $0.payload == nil })
        #expect(!events.contains { $0.dataset.hasPrefix("_polyglot") })
        try await f.close(consumers: [consumer])
    }

    @Test func severalChangesOfOneKeyInOneTransactionArriveAsItsLastState() async throws {
        let f = try await CaptureFixture(PGServers.pg18Capture)
        let consumer = "coalesced"
        let feed = try await f.engine.capturedChanges(of: [capturedItems, capturedAccounts], consumer: consumer)
        try await withRawPostgres(f.url) { client in
            try await rawTransaction(client, [
                "INSERT INTO \(f.t("items")) VALUES ('a', 1, '{\"v\": 1}')",
                "UPDATE \(f.t("items")) SET body = '{\"v\": 2}' WHERE id = 'a'",
                "INSERT INTO \(f.t("items")) VALUES ('tmp', 1, '{\"v\": 0}')",
                "UPDATE \(f.t("items")) SET body = '{\"v\": 3}' WHERE id = 'a'",
                "DELETE FROM \(f.t("items")) WHERE id = 'tmp'",
                "INSERT INTO \(f.t("accounts"))(id, owner) VALUES (7, 'x')",
            ])
            // A key that changes: the old key is deleted, the new one put.
            try await rawTransaction(client, ["UPDATE \(f.t("accounts")) SET id = 8, owner = 'y' WHERE id = 7"])
        }
        let (events, _) = try await readEvents(feed, count: 5)
        #expect(events.map { "\($0.key)/\($0.operation)" } == ["a/put", "tmp/delete", "7/put", "7/delete", "8/put"])
        guard events.count == 5 else { return }
        #expect(try json(events[0]) == ["v": 3])
        #expect(try json(events[4])?["owner"] == "y")
        #expect(Set(events.prefix(3).map(\.position)).count == 1 && events[3].position == events[4].position && events[2].position < events[3].position)
        try await f.close(consumers: [consumer])
    }

    @Test func updatesThatLeaveALargeDocumentUntouchedStillCarryIt() async throws {
        // A large body is stored out of line (TOAST); an update of another column logs it only because capture sets
        // REPLICA IDENTITY FULL, which logs the old row.
        let f = try await CaptureFixture(PGServers.pg15Capture)
        let feed = try await f.engine.capturedChanges(of: [capturedItems], consumer: "toast")
        let big = (0..<2000).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined(separator: "-")
        try await f.db.documents("items").put("big", ["text": .string(big)])
        try await withRawPostgres(f.url) { client in
            try await rawTransaction(client, ["UPDATE \(f.t("items")) SET version = version + 1 WHERE id = 'big'"])
        }
        let (events, _) = try await readEvents(feed, count: 2)
        #expect(events.map(\.operation) == ["put", "put"])
        for e in events { #expect(try json(e) == ["text": .string(big)]) }
        try await f.close(consumers: ["toast"])
    }

    @Test func peekDoesNotConsumeAndAcknowledgeReleasesOnlyWhatWasApplied() async throws {
        let f = try await CaptureFixture(PGServers.pg18Capture)
        let consumer = "ack"
        let feed = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        let items = try f.db.documents("items")
        for i in 1...3 { try await items.put("k\(i)", ["i": .number(Double(i))]) }
        let (all, end) = try await readEvents(feed, count: 3, limit: 1)
        #expect(all.map(\.key) == ["k1", "k2", "k3"])

        // Reading again from the same cursors gives the same events: nothing was consumed.
        let again = try await feed.changes(after: .start, limit: 10)
        #expect(again.events == all)
        let first = try await feed.changes(after: .start, limit: 1)
        #expect(first.events.map(\.key) == ["k1"])
        // A reader restarting from an older checkpoint gets exactly what is after it.
        let afterFirst = try await feed.changes(after: first.next, limit: 10)
        #expect(afterFirst.events.map(\.key) == ["k2", "k3"])
        // A fresh feed (no cache in this process) reads the server's slot: still everything.
        let fresh = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        #expect(try await fresh.changes(after: .start, limit: 10).events == all)

        // Acknowledge the first two: the slot's confirmed position moves, and the server no longer returns them.
        let before = try await slotState(f, consumer: consumer).confirmed
        let two = try await feed.changes(after: first.next, limit: 1)
        #expect(two.events.map(\.key) == ["k2"])
        try await feed.acknowledge(upTo: two.next)
        let after = try await slotState(f, consumer: consumer).confirmed
        #expect(lsnValue(after) > lsnValue(before), "confirmed_flush_lsn \(before ?? "-") → \(after ?? "-")")
        #expect(lsnValue(after) > UInt64(bitPattern: all[1].position) && lsnValue(after) <= UInt64(bitPattern: all[2].position))
        let server = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        #expect(try await server.changes(after: .start, limit: 10).events.map(\.key) == ["k3"])
        #expect(try await server.changes(after: first.next, limit: 10).events.map(\.key) == ["k3"])
        #expect(try await feed.changes(after: two.next, limit: 10).events.map(\.key) == ["k3"])
        // Acknowledging an older cursor again changes nothing; acknowledging the end leaves nothing.
        try await feed.acknowledge(upTo: first.next)
        #expect(try await slotState(f, consumer: consumer).confirmed == after)
        try await feed.acknowledge(upTo: end)
        let last = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        #expect(try await last.changes(after: .start, limit: 10).events.isEmpty)
        try await f.close(consumers: [consumer])
    }

    @Test func aWaitingReaderWakesForACapturedCommitAndNotForOtherWrites() async throws {
        let plain = DatasetSpec(name: "plain", model: .documents, engine: "subject")
        let f = try await CaptureFixture(PGServers.pg15Capture, datasets: [capturedItems, plain])
        let consumer = "waiting"
        let feed = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        let first = try await feed.changes(after: .start, limit: 10)
        #expect(first.events.isEmpty)
        // Writes to a table that is not captured move the WAL, but the wait runs to its timeout.
        let others = Task {
            for i in 0..<20 { try await f.db.documents("plain").put("p\(i)", ["i": .number(Double(i))]); try await Task.sleep(for: .milliseconds(40)) }
        }
        var start = ContinuousClock.now
        await feed.waitForChanges(after: first.next, timeout: .milliseconds(1_200))
        #expect(ContinuousClock.now - start >= .milliseconds(1_150), "woke up for a write that is not captured")
        try await others.value
        // A captured commit wakes it well before a long timeout, and the next read has it.
        let writer = Task { try await Task.sleep(for: .milliseconds(200)); try await f.db.documents("items").put("woke", ["x": 1]) }
        start = ContinuousClock.now
        await feed.waitForChanges(after: first.next, timeout: .seconds(20))
        let waited = ContinuousClock.now - start
        try await writer.value
        #expect(waited < .seconds(5), "a captured commit did not wake the reader (\(waited))")
        #expect(try await feed.changes(after: first.next, limit: 10).events.map(\.key) == ["woke"])
        // The slot is listed with the WAL it keeps.
        let slots = try await f.engine.captureSlots()
        let name = try await f.engine.captureSlotName(consumer: consumer)
        let mine = try #require(slots.first { $0.name == name })
        #expect(!mine.active && mine.retainedBytes >= 0 && mine.confirmedLSN != nil, "\(mine)")
        try await f.close(consumers: [consumer])
    }

    @Test func aBatchLimitInsideATransactionDeliversEveryChangeOnce() async throws {
        let f = try await CaptureFixture(PGServers.pg15Capture)
        let consumer = "small-batches"
        let feed = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        try await withRawPostgres(f.url) { client in
            try await rawTransaction(client, ["INSERT INTO \(f.t("items")) SELECT 'a' || i, 1, jsonb_build_object('i', i) FROM generate_series(1, 25) i"])
            try await rawTransaction(client, ["INSERT INTO \(f.t("items")) SELECT 'b' || i, 1, jsonb_build_object('i', i) FROM generate_series(1, 10) i",
                                              "DELETE FROM \(f.t("items")) WHERE id = 'a3'"])
        }
        let (events, _) = try await readEvents(feed, count: 36, limit: 4)
        #expect(events.map(\.key) == (1...25).map { "a\($0)" } + (1...10).map { "b\($0)" } + ["a3"])
        #expect(Set(events.prefix(25).map(\.position)).count == 1 && Set(events.suffix(11).map(\.position)).count == 1)
        #expect(events[0].position < events[25].position)

        // Acknowledging part-way through a transaction keeps the transaction: a new reader from that cursor gets the rest.
        var cursor = ChangeCursor.start
        var got: [ChangeEvent] = []
        for _ in 0..<3 { let b = try await feed.changes(after: cursor, limit: 4); got += b.events; cursor = b.next }
        #expect(got.map(\.key) == (1...12).map { "a\($0)" })
        try await feed.acknowledge(upTo: cursor)
        let restarted = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        let (rest, _) = try await readEvents(restarted, from: cursor, count: 24, limit: 5)
        #expect(rest.map(\.key) == (13...25).map { "a\($0)" } + (1...10).map { "b\($0)" } + ["a3"])
        try await f.close(consumers: [consumer])
    }

    @Test func concurrentWritersWithTransactionsHeldOpenAreDeliveredInCommitOrderWithNothingSkipped() async throws {
        let counters = DatasetSpec(name: "counters", model: .table, engine: "subject",
                                   fields: [FieldSpec("key", .string, nullable: false), FieldSpec("n", .integer), FieldSpec("writer", .integer), FieldSpec("seq", .integer)],
                                   primaryKey: "key", capture: true)
        let f = try await CaptureFixture(PGServers.pg18Capture, datasets: [counters])
        let consumer = "concurrent"
        let feed = try await f.engine.capturedChanges(of: [counters], consumer: consumer)
        let writers = 6, transactionsPerWriter = 25, keys = 12
        let done = Flag()
        let began = Counter()   // the order in which transactions began

        // A reader polls the feed in small batches the whole time, acknowledging as it goes.
        let reader = Task { () -> [ChangeEvent] in
            var cursor = ChangeCursor.start
            var seen: [ChangeEvent] = []
            var quiet = 0
            while quiet < 30 {
                let batch = try await feed.changes(after: cursor, limit: 7)
                seen += batch.events
                cursor = batch.next
                if seen.count % 5 == 0 { try await feed.acknowledge(upTo: cursor) }
                quiet = batch.events.isEmpty && done.value.load(ordering: .relaxed) ? quiet + 1 : 0
                if batch.events.isEmpty { try await Task.sleep(for: .milliseconds(40)) }
            }
            return seen
        }
        // Writers: other services with plain SQL. Each transaction bumps 1-3 shared counters (in key order, so no
        // deadlocks); every fourth holds its transaction open while the others commit.
        let written = try await withRawPostgres(f.url) { client in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for w in 0..<writers {
                    group.addTask {
                        var statements = 0
                        for s in 0..<transactionsPerWriter {
                            let picked = Set((0..<(1 + (w + s) % 3)).map { (w * 5 + s * 7 + $0 * 3) % keys }).sorted()
                            try await client.withConnection { c in
                                _ = try await c.query("BEGIN", logger: testLogger).collect()
                                let b = began.value.add(1, ordering: .relaxed).newValue
                                for k in picked {
                                    _ = try await c.query(PostgresQuery(unsafeSQL: """
                                    INSERT INTO \(f.t("counters"))(key, n, writer, seq) VALUES ('k\(k)', 1, \(w), \(b))
                                    ON CONFLICT (key) DO UPDATE SET n = \(f.t("counters")).n + 1, writer = excluded.writer, seq = excluded.seq
                                    """), logger: testLogger).collect()
                                    if s % 4 == 0 { try await Task.sleep(for: .milliseconds(25)) }
                                }
                                _ = try await c.query("COMMIT", logger: testLogger).collect()
                            }
                            statements += picked.count
                        }
                        return statements
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        done.value.store(true, ordering: .relaxed)
        let seen = try await reader.value

        #expect(seen.count == written, "delivered \(seen.count) events for \(written) committed changes")
        // Commit order: positions never go down, and one transaction's events are contiguous.
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.position <= $1.position }, "positions went down")
        var runs: [Int64] = []
        for e in seen where runs.last != e.position { runs.append(e.position) }
        #expect(Set(runs).count == runs.count, "a transaction's events were split")
        #expect(runs.count == writers * transactionsPerWriter, "\(runs.count) transactions delivered")
        // Per key, the counter went 1, 2, 3, … with no gap and no repeat: nothing skipped, nothing twice, and the
        // order of a key's changes is their commit order. The last event is the row as it is.
        var byKey: [String: [Double]] = [:]
        for e in seen { byKey[e.key, default: []].append(try json(e)?["n"]?.doubleValue ?? -1) }
        for (key, ns) in byKey { #expect(ns == (1...ns.count).map(Double.init), "key \(key): \(ns)") }
        let rows = try await f.db.table("counters").select()
        #expect(rows.count == byKey.count)
        for r in rows { #expect(Double(byKey[r["key"]?.stringValue ?? ""]?.count ?? 0) == r["n"]?.doubleValue) }
        // Transactions committed in another order than they began (the held-open ones began before others that
        // committed ahead of them), so the run really tested late commits; the feed still followed commit order.
        let beganOrder = runs.compactMap { p in seen.first { $0.position == p }.flatMap { try? json($0) }?["seq"]?.doubleValue }
        #expect(beganOrder.count == runs.count)
        let inversions = zip(beganOrder, beganOrder.dropFirst()).filter { $0 > $1 }.count
        #expect(inversions > 0, "every transaction committed in the order it began; the test did not exercise late commits")
        try await f.close(consumers: [consumer])
    }

    @Test func aTransactionOfTenThousandRowsArrivesComplete() async throws {
        let f = try await CaptureFixture(PGServers.pg18Capture)
        let consumer = "big"
        let feed = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        try await withRawPostgres(f.url) { client in
            try await rawTransaction(client, ["INSERT INTO \(f.t("items")) SELECT 'r' || i, 1, jsonb_build_object('i', i, 'name', 'row ' || i) FROM generate_series(1, 10000) i"])
        }
        let start = ContinuousClock.now
        let (events, _) = try await readEvents(feed, count: 10_000, limit: 1_000)
        let took = ContinuousClock.now - start
        #expect(events.count == 10_000)
        #expect(Set(events.map(\.key)).count == 10_000 && Set(events.map(\.position)).count == 1)
        #expect(try json(events[9_999]) == ["i": 10_000, "name": "row 10000"])
        print("capture: read one transaction of 10,000 rows in batches of 1,000 in \(took) (including the 300 ms check for more)")
        // A fresh reader (nothing cached) in one batch.
        let fresh = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        let t0 = ContinuousClock.now
        let all = try await fresh.changes(after: .start, limit: 20_000)
        print("capture: decoded the same 10,000 rows in one batch in \(ContinuousClock.now - t0)")
        #expect(all.events.count == 10_000)
        try await f.close(consumers: [consumer])
    }

    @Test func aMissingTableIsRefusedWithTheFix() async throws {
        let f = try await CaptureFixture(PGServers.pg15Capture, datasets: [capturedItems])
        let ghost = DatasetSpec(name: "ghost", model: .documents, engine: "subject", capture: true)
        do {
            _ = try await f.engine.capturedChanges(of: [capturedItems, ghost], consumer: "ghost")
            Issue.record("capture of a dataset without a table was accepted")
        } catch let e as PolyglotError {
            #expect(e.code == .notFound && e.message.contains("'ghost'") && e.fix?.contains("create") == true, "\(e)")
        }
        #expect(try await slotState(f, consumer: "ghost").exists == false, "a slot was left behind")
        try await f.close(consumers: ["ghost"])
    }

    @Test func aServerWithoutLogicalDecodingIsRefusedWithTheSettingToChange() async throws {
        let url = PGServers.url("POLYGLOT_TEST_PG_WAL_REPLICA_URL")
        #expect(!url.isEmpty, Comment(rawValue: TestServers.missing("POLYGLOT_TEST_PG_WAL_REPLICA_URL")))
        let f = try await CaptureFixture(url, datasets: [capturedItems])
        do {
            _ = try await f.engine.capturedChanges(of: [capturedItems], consumer: "nowal")
            Issue.record("a server with wal_level = replica made a capture slot")
        } catch let e as PolyglotError {
            #expect(e.code == .missingCapability && e.message.contains("wal_level = replica"), "\(e)")
            #expect(e.fix?.contains("wal_level = logical") == true && e.fix?.contains("restart") == true, "\(e)")
        }
        try await f.db.close()
    }

    @Test func aRoleWithoutReplicationIsToldWhatToGrant() async throws {
        let role = "polyglot_norepl_" + UUID().uuidString.prefix(8).lowercased()
        try await withRawPostgres(PGServers.pg15) { client in
            try await rawTransaction(client, ["CREATE ROLE \(role) LOGIN NOREPLICATION", "GRANT CREATE ON DATABASE postgres TO \(role)"])
        }
        let url = PGServers.pg15.replacingOccurrences(of: "//postgres@", with: "//\(role)@")
        #expect(url != PGServers.pg15)
        let f = try await CaptureFixture(url, datasets: [capturedItems])
        do {
            _ = try await f.engine.capturedChanges(of: [capturedItems], consumer: "norepl")
            Issue.record("a role without REPLICATION made a capture slot")
        } catch let e as PolyglotError {
            #expect(e.code == .missingCapability && e.message.contains(role) && e.fix?.contains("REPLICATION") == true, "\(e)")
        }
        try await f.db.close()
        try await withRawPostgres(PGServers.pg15) { client in
            try await rawTransaction(client, ["DROP OWNED BY \(role)", "DROP ROLE \(role)"])
        }
    }

    @Test func aDroppedSlotIsReportedAndCapturingAgainMakesANewOne() async throws {
        let f = try await CaptureFixture(PGServers.pg15Capture, datasets: [capturedItems])
        let consumer = "dropped"
        let items = try f.db.documents("items")
        let feed = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        try await items.put("before", ["x": 1])
        let (first, cursor) = try await readEvents(feed, count: 1)
        #expect(first.map(\.key) == ["before"])
        let slot = try await f.engine.captureSlotName(consumer: consumer)
        _ = try await f.db.sql(on: "subject", "SELECT pg_drop_replication_slot(?)", [.string(slot)])
        try await items.put("lost", ["x": 2])
        do {
            _ = try await feed.changes(after: cursor, limit: 10)
            Issue.record("reading a dropped slot did not fail")
        } catch let e as PolyglotError {
            #expect(e.code == .notFound && e.message.contains(slot) && e.fix?.contains("capturedChanges") == true, "\(e)")
        }
        let again = try await f.engine.capturedChanges(of: [capturedItems], consumer: consumer)
        #expect(try await slotState(f, consumer: consumer).exists)
        try await items.put("after", ["x": 3])
        let (events, _) = try await readEvents(again, from: cursor, count: 1)
        #expect(events.map(\.key) == ["after"], "a new slot starts where it is made")
        try await f.drop([consumer])
        #expect(try await slotState(f, consumer: consumer).exists == false)
        try await f.db.close()
    }

    @Test func processesThatCaptureAtOnceShareOneSlotAndPublication() async throws {
        let f = try await CaptureFixture(PGServers.pg18Capture)
        // Four engines on the same schema (as four application processes would be) ask for the same consumer at once.
        let others = try await withThrowingTaskGroup(of: Polyglot.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    try await Polyglot(map: DataMap(engines: [f.db.map.engines[0]], datasets: [capturedItems, capturedAccounts]), registry: PGServers.registry)
                }
            }
            return try await group.reduce(into: [Polyglot]()) { $0.append($1) }
        }
        let engines = [f.engine] + (try others.map { try #require(try $0.engine("subject") as? PostgresEngine) })
        let feeds = try await withThrowingTaskGroup(of: (any CapturedChangeFeed).self) { group in
            for e in engines { group.addTask { try await e.capturedChanges(of: [capturedItems, capturedAccounts], consumer: "shared") } }
            return try await group.reduce(into: [any CapturedChangeFeed]()) { $0.append($1) }
        }
        #expect(feeds.count == 4)
        let slot = try await f.engine.captureSlotName(consumer: "shared")
        #expect(slot.count <= 63 && slot.hasPrefix("polyglot_") && slot.allSatisfy { $0 == "_" || $0.isLowercase || $0.isNumber })
        let slots = try await f.db.sql(on: "subject", "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = ?", [.string(slot)])
        #expect(slots.first?["n"]?.doubleValue == 1)
        let tables = try await f.db.sql(on: "subject", "SELECT tablename::text AS t FROM pg_publication_tables WHERE pubname = ? ORDER BY 1", [.string(slot)])
        #expect(tables.compactMap { $0["t"]?.stringValue } == ["accounts", "items"])
        // Another schema, or a long consumer name, gives another valid name.
        let other = try await CaptureFixture(PGServers.pg18Capture, datasets: [capturedItems])
        let long = String(repeating: "Consumer With Spaces & Ünïcode ", count: 5)
        let names = [try await other.engine.captureSlotName(consumer: "shared"), try await f.engine.captureSlotName(consumer: long)]
        for n in names { #expect(n != slot && n.count <= 63 && n.allSatisfy { $0 == "_" || $0.isLowercase || $0.isNumber }, "\(n)") }
        try await other.db.close()
        for o in others { try await o.close() }
        try await f.drop(["shared"])
        let left = try await f.db.sql(on: "subject", "SELECT (SELECT count(*) FROM pg_publication WHERE pubname = ?) + (SELECT count(*) FROM pg_replication_slots WHERE slot_name = ?) AS n",
                                      [.string(slot), .string(slot)])
        #expect(left.first?["n"]?.doubleValue == 0, "dropCapture left the slot or the publication")
        try await f.db.close()
    }
}
