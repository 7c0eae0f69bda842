import Foundation
import Polyglot
import PolyglotPostgres
import PolyglotRedis
import PolyglotTesting
import Testing

/// Change capture feeding the relay: rows written by another service with plain SQL reach a search copy and an
/// analytics table on another engine, and a Redis cache of a captured dataset is invalidated. Real PostgreSQL and
/// Redis from scripts/services.
@Suite(.makesCaptureSlots) struct CaptureRelayTests {
    static func map(redis: String) -> DataMap {
        DataMap(engines: [PGServers.freshSchema(EngineSpec(name: "primary", kind: "postgres", url: PGServers.pg18Capture)),
                          PGServers.freshSchema(EngineSpec(name: "index", kind: "postgres", url: PGServers.pg18Capture)),
                          EngineSpec(name: "cache", kind: "redis", url: redis, options: ["keyPrefix": "cdc\(UInt32.random(in: 0 ... .max)):"])],
                datasets: [DatasetSpec(name: "orders", model: .table, engine: "primary",
                                       fields: [FieldSpec("id", .string, nullable: false), FieldSpec("customer", .string), FieldSpec("total", .number)],
                                       primaryKey: "id",
                                       projections: [.search(on: "index", fields: ["customer"]),
                                                     ProjectionSpec(kind: .analytics, engine: "index", fields: ["customer", "total"])],
                                       capture: true),
                           DatasetSpec(name: "products", model: .documents, engine: "primary",
                                       projections: [.cache(on: "cache", ttl: .seconds(60))], capture: true)])
    }

    /// Polls `condition` until it holds (captured changes reach the decodable log asynchronously on the test servers).
    static func eventually(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            if ContinuousClock.now > deadline { Issue.record("timed out waiting until \(what)"); return }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func rowsWrittenByAnotherServiceReachTheProjectionsAndInvalidateTheCache() async throws {
        let redis = TestServers.value("POLYGLOT_TEST_REDIS_URL")
        try #require(!redis.isEmpty, Comment(rawValue: TestServers.missing("POLYGLOT_TEST_REDIS_URL")))
        var registry = PGServers.registry
        registry.registerRedis()
        let db = try await Polyglot(map: Self.map(redis: redis), registry: registry)
        let schema = try #require(PostgresRelayTests.schemaOf(db, "primary"))
        // Rows from before capture was switched on: the relay's initial snapshot copies them, two per step.
        try await withRawPostgres(PGServers.pg18Capture) { client in
            try await rawTransaction(client, ["INSERT INTO \"\(schema)\".orders(id, customer, total) VALUES ('o0', 'Alan Turing', 1), "
                                              + (1...4).map { "('s\($0)', 'Snapshot Person \($0)', \($0))" }.joined(separator: ", ")])
        }
        let relay = db.relay(RelayOptions(batchSize: 2, idleInterval: .milliseconds(20), holder: "cdc"))
        #expect(Set(relay.copies.map(\.name)) == ["orders@index", "orders.analytics@index", "products.cache@cache"])
        let running = Task { try await relay.run() }
        let orders = try db.table("orders")
        try await Self.eventually("the snapshot copied the rows written before capture") {
            let turing = try await orders.search("turing").map(\.id), people = try await orders.search("snapshot person")
            return turing == ["o0"] && people.count == 4
        }
        // Each copy takes its own snapshot after creating its own slot; a change committed between the two would be
        // both in the snapshot and in the slot (applied twice; for analytics, two rows). Let both finish first.
        try await Self.eventually("the analytics snapshot is taken") { try await db.table("orders_analytics").count() == 5 }

        // Another service inserts, updates and deletes with plain SQL, outside Polyglot.
        try await withRawPostgres(PGServers.pg18Capture) { client in
            try await rawTransaction(client, ["INSERT INTO \"\(schema)\".orders(id, customer, total) VALUES ('o1', 'Ada Lovelace', 12.5), ('o2', 'Grace Hopper', 99)"])
        }
        try await Self.eventually("the inserted rows are searchable") { try await orders.search("lovelace").map(\.id) == ["o1"] }
        try await withRawPostgres(PGServers.pg18Capture) { client in
            try await rawTransaction(client, ["UPDATE \"\(schema)\".orders SET customer = 'Ada King' WHERE id = 'o1'",
                                              "DELETE FROM \"\(schema)\".orders WHERE id = 'o2'"])
        }
        try await Self.eventually("the update and the delete reach the search copy") {
            let gone = try await orders.search("lovelace").isEmpty, renamed = try await orders.search("king").map(\.id), deleted = try await orders.search("hopper").isEmpty
            return gone && renamed == ["o1"] && deleted
        }
        // Polyglot's own writes to the captured table take the same path.
        try await orders.upsert(["id": "o3", "customer": "Barbara Liskov", "total": 7])
        try await Self.eventually("a write through Polyglot is searchable") { try await orders.search("liskov").map(\.id) == ["o3"] }
        // The analytics table holds the snapshot's row, then one row per change, whoever made it (the update and
        // the delete of one transaction share its position and are told apart by `event`).
        try await Self.eventually("the analytics table has every change") {
            try await db.table("orders_analytics").count() == 10
        }
        let rows = try await db.table("orders_analytics").select(sort: [.ascending("position"), .ascending("event")])
        #expect(rows.map { "\($0["op"]?.stringValue ?? "?") \($0["key"]?.stringValue ?? "?")" } == ["put o0", "put s1", "put s2", "put s3", "put s4", "put o1", "put o2", "put o1", "delete o2", "put o3"], "\(rows)")

        // A cached document changed behind Polyglot's back: the relay drops the cache entry.
        let products = try db.documents("products")
        try await products.put("p1", ["name": "kettle", "price": 30])
        #expect(try await products.get("p1")?.json()["price"] == .number(30))   // a miss fills the cache
        #expect(try await products.get("p1")?.json()["price"] == .number(30))   // a hit
        try await withRawPostgres(PGServers.pg18Capture) { client in
            try await rawTransaction(client, ["UPDATE \"\(schema)\".products SET body = jsonb_set(body, '{price}', '25') WHERE id = 'p1'"])
        }
        try await Self.eventually("the cache no longer serves the old price") { try await products.get("p1")?.json()["price"] == .number(25) }

        running.cancel()
        _ = try? await running.value
        let status = relay.status()
        #expect(status.allSatisfy { $0.deadLetters == 0 && $0.lastError == nil }, "\(status)")
        for copy in relay.copies { try await (try db.engine("primary") as! PostgresEngine).dropCapture(consumer: copy.name) }
        try await db.close()
    }
}
