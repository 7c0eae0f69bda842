import Foundation
import Polyglot
import PolyglotSQLite
import Testing

func tempDir() -> String {
    let dir = NSTemporaryDirectory() + "polyglot-test-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let shopYAML = """
engines:
  primary: { kind: sqlite, path: shop.sqlite }
  cache: { kind: memory }
datasets:
  products:
    model: documents
    engine: primary
    fields: { price: number, category: string }
    projections:
      - { kind: cache, engine: cache, ttl: 5m }
      - { kind: search, engine: primary, fields: [name, description] }
      - { kind: vectors, engine: primary, fields: [name, description], dimension: 64 }
      - { kind: graph, engine: primary, edgeField: related }
  sessions: { model: keyValue, engine: primary, ttl: 30m }
  hot: { model: keyValue, engine: cache }
  embeddings: { model: vectors, engine: primary, dimension: 4 }
"""

func openShop(_ dir: String) async throws -> Polyglot {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try shopYAML.write(toFile: dir + "/polyglot.yml", atomically: true, encoding: .utf8)
    return try await Polyglot(map: DataMap(contentsOf: dir + "/polyglot.yml"), registry: .embedded)
}

struct Product: Codable, Sendable, Equatable {
    var name: String
    var description: String
    var price: Double
    var category: String
    var related: [String]?
}

@Suite struct FacadeTests {
    @Test func typedViewsAndProjectionsWorkTogether() async throws {
        let db = try await openShop(tempDir())
        let products = try db.documents("products", as: Product.self)
        try await products.put("p1", Product(name: "Trail shoe", description: "Red running shoe", price: 89, category: "shoes", related: ["p2"]))
        try await products.put("p2", Product(name: "Road shoe", description: "Light running shoe", price: 120, category: "shoes", related: ["p3"]))
        try await products.put("p3", Product(name: "Wool hat", description: "Warm winter hat", price: 25, category: "hats"))
        #expect(try await products.get("p1")?.price == 89)
        let cheap = try await products.query(.field("price") < 100, sort: [.ascending("price")])
        #expect(cheap.map(\.id) == ["p3", "p1"])
        let untyped = try db.documents("products")
        #expect(try await untyped.search("running").map(\.id).sorted() == ["p1", "p2"])
        let near = try await untyped.nearest(text: "running shoe", k: 2)
        #expect(Set(near.map(\.id)) == ["p1", "p2"])
        let filtered = try await untyped.nearest(text: "running shoe", k: 2, where: .field("price") > 100)
        #expect(filtered.map(\.id) == ["p2"])
        #expect(try await untyped.related("p1", depth: 2).map(\.node) == ["p2", "p3"])
        try await untyped.delete("p2")
        #expect(try await untyped.search("light").isEmpty, "a delete must leave the search projection")
        #expect(try await untyped.nearest(text: "light running shoe", k: 5).contains { $0.id == "p2" } == false, "a delete must leave the vectors projection")
        #expect(try await untyped.related("p1").isEmpty, "a delete must leave the graph projection")
        try await db.close()
    }

    @Test func unknownDatasetAndWrongModelSayWhatToDo() async throws {
        let db = try await openShop(tempDir())
        #expect { _ = try db.documents("prodcts") } throws: { e in
            let e = e as! PolyglotError
            return e.code == .unknownDataset && e.description.contains("products") && e.fix != nil
        }
        #expect { _ = try db.vectors("products") } throws: { e in
            let e = e as! PolyglotError
            return e.code == .wrongModel && e.description.contains("db.documents(\"products\")")
        }
        await #expect(throws: PolyglotError.self) { _ = try await db.documents("products").search("x", limit: 0) }
        try await db.close()
    }

    @Test func badInputNeverLeavesPartialState() async throws {
        let db = try await openShop(tempDir())
        let products = try db.documents("products")
        // The second document's price has the wrong type: the whole batch is refused.
        await #expect(throws: PolyglotError.self) {
            try await products.putMany([("ok", ["name": "fine", "price": 1]), ("bad", ["name": "x", "price": "free"])])
        }
        #expect(try await products.count() == 0)
        // A failure inside the engine halfway through a transaction rolls everything back.
        await #expect(throws: PolyglotError.self) {
            try await db.transaction(on: "primary") {
                try await products.put("a", ["name": "a", "price": 1])
                try await db.keyValue("sessions").set("s", "v")
                _ = try await db.sql(on: "primary", "INSERT INTO no_such_table VALUES (1)")
            }
        }
        #expect(try await products.count() == 0)
        #expect(try await db.keyValue("sessions").get("s") == nil)
        // Writing another engine's dataset inside a transaction is refused, not half-applied.
        await #expect { try await db.transaction(on: "primary") { try await db.keyValue("hot").set("k", "v") } } throws: { e in
            (e as? PolyglotError)?.code == .transactionFailed
        }
        #expect(try await db.keyValue("hot").get("k") == nil)
        let vectors = try db.vectors("embeddings")
        await #expect(throws: PolyglotError.self) { try await vectors.upsert("v", vector: [1, 2, 3]) }
        await #expect(throws: PolyglotError.self) { try await vectors.upsert("v", vector: [1, 2, 3, .nan]) }
        try await db.close()
    }

    @Test func tokensAreMonotonicAcrossConcurrentWriters() async throws {
        let db = try await openShop(tempDir())
        let sessions = try db.keyValue("sessions")
        let tokens = try await withThrowingTaskGroup(of: [ConsistencyToken].self) { group in
            for w in 0..<8 {
                group.addTask {
                    var out: [ConsistencyToken] = []
                    for i in 0..<50 { out.append(try await sessions.set("w\(w)-\(i)", "x")) }
                    return out
                }
            }
            var all: [[ConsistencyToken]] = []
            for try await t in group { all.append(t) }
            return all
        }
        for perWriter in tokens { #expect(perWriter == perWriter.sorted() && Set(perWriter).count == perWriter.count) }
        #expect(Set(tokens.flatMap { $0 }).count == 400, "every write gets its own position")
        try await db.close()
    }

    @Test func telemetryIsRecordedAndSurvivesRestart() async throws {
        let dir = tempDir()
        do {
            let db = try await openShop(dir)
            let products = try db.documents("products")
            try await products.put("p1", ["name": "x", "price": 1])
            for _ in 0..<10 { _ = try await products.get("p1") }
            _ = try? await products.query(.field("nope") == 1)
            let snap = db.telemetry.snapshot()
            #expect(snap.entry(dataset: "products", operation: "put")?.stats.count == 1)
            #expect(snap.entry(dataset: "products", operation: "cache.hit")?.stats.count == 9)
            #expect(snap.caches["cache"]?.hitRate == 0.9)
            try await db.close()
        }
        let reopened = try await openShop(dir)
        let history = Telemetry.summarize(try await reopened.telemetryHistory())
        #expect(history.first { $0.key.dataset == "products" && $0.key.operation == "put" }?.stats.count == 1)
        #expect(history.first { $0.key.operation == "cache.hit" }?.stats.count == 9)
        try await reopened.close()
    }

    @Test func schemaPreparationIsIdempotentAndTablesGainNewColumns() async throws {
        let dir = tempDir()
        let base = DatasetSpec(name: "orders", model: .table, engine: "primary", fields: [FieldSpec("id", .integer), FieldSpec("total", .number)], primaryKey: "id")
        var map = DataMap(engines: [.sqlite(path: dir + "/o.sqlite")], datasets: [base])
        let db1 = try await Polyglot(map: map, registry: .embedded)
        try await db1.table("orders").upsert(["id": 1, "total": 5])
        try await db1.close()
        map.datasets[0].fields.append(FieldSpec("note", .string))
        let db2 = try await Polyglot(map: map, registry: .embedded)
        try await db2.table("orders").upsert(["id": 2, "total": 6, "note": "new column"])
        #expect(try await db2.table("orders").count() == 2)
        let rows = try await db2.sql(on: "primary", "SELECT count(*) AS n FROM orders WHERE note IS NULL")
        #expect(rows.first?["n"] == 1)
        try await db2.close()
    }

    @Test func sqlitePathMissingIsAClearError() async throws {
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite")], datasets: [])
        await #expect { _ = try await Polyglot(map: map, registry: .embedded) } throws: { e in
            (e as? PolyglotError)?.description.contains("has no `path:`") == true
        }
    }
}

@Suite struct ServiceTests {
    @Test func runPersistsTelemetryPeriodicallyUntilCancelled() async throws {
        let dir = tempDir()
        var map = DataMap(engines: [.sqlite(path: dir + "/t.sqlite")], datasets: [DatasetSpec(name: "kv", model: .keyValue, engine: "primary")])
        map.telemetry.flushInterval = .milliseconds(50)
        let db = try await Polyglot(map: map, registry: .embedded)
        let service = Task { try await db.run() }
        try await db.keyValue("kv").set("a", "1")
        var persisted: UInt64 = 0
        for _ in 0..<100 where persisted == 0 {
            try await Task.sleep(for: .milliseconds(20))
            persisted = Telemetry.summarize(try await db.telemetryHistory()).first { $0.key.operation == "set" }?.stats.count ?? 0
        }
        #expect(persisted == 1, "run() did not persist the interval")
        service.cancel()
        _ = await service.result
        try await db.close()
    }
}

/// The README's library example, run as written against the quickstart's data map.
@Suite struct ReadmeExample {
    struct Product: Codable, Sendable { var name: String; var description: String; var price: Double; var category: String }

    @Test func runsAsWritten() async throws {
        let dir = tempDir()
        let readme = try String(contentsOfFile: #filePath.components(separatedBy: "/Tests/")[0] + "/README.md", encoding: .utf8)
        let yaml = readme.components(separatedBy: "```yaml\n")[1].components(separatedBy: "```")[0]
            .replacingOccurrences(of: "columns: { id: integer!, total: number! }",
                                  with: "columns: { id: integer!, customer: string!, product: string!, quantity: integer!, total: number!, created_at: timestamp! }")
        try yaml.write(toFile: dir + "/polyglot.yml", atomically: true, encoding: .utf8)
        let db = try await Polyglot(map: DataMap(contentsOf: dir + "/polyglot.yml"), registry: .embedded)
        let products = try db.documents("products", as: Product.self)
        let token = try await products.put("p1", Product(name: "Trail boot", description: "Waterproof leather boot", price: 89, category: "shoes"))
        #expect(token.position > 0)
        #expect(try await products.get("p1")?.name == "Trail boot")
        #expect(try await products.query(.field("category") == "shoes" && .field("price") < 100, sort: [.ascending("price")], limit: 10).count == 1)
        #expect(try await db.documents("products").search("waterproof boot", limit: 5).map(\.id) == ["p1"])
        #expect(try await db.documents("products").nearest(text: "hiking boot", k: 5, where: .field("price") < 100).map(\.id) == ["p1"])
        try await db.keyValue("sessions").set("s:42", "customer-7", ttl: .seconds(1800))
        try await db.transaction(on: "primary") {
            try await db.table("orders").upsert(["id": 1, "customer": "ada", "product": "p1", "quantity": 1, "total": 89, "created_at": 1_763_800_000])
            try await db.keyValue("sessions").increment("orders:ada")
        }
        #expect(try await db.keyValue("sessions").getString("orders:ada") == "1")
        try await db.close()
    }
}

@Suite struct VectorIndexPersistenceTests {
    func map(_ dir: String) -> DataMap {
        DataMap(engines: [.sqlite(path: dir + "/v.sqlite")],
                datasets: [DatasetSpec(name: "emb", model: .vectors, engine: "primary", dimension: 8, metric: .l2)])
    }

    @Test func theIndexIsSavedOnCloseAndRebuiltWhenStaleOrCorrupt() async throws {
        let dir = tempDir()
        var rng = SeededRandom(seed: 3)
        let records = (0..<1000).map { VectorRecord(id: "v\($0)", vector: (0..<8).map { _ in rng.nextFloat() }) }
        let q = (0..<8).map { _ in rng.nextFloat() }
        let db1 = try await Polyglot(map: map(dir), registry: .embedded)
        try await db1.vectors("emb").upsert(records)
        let before = try await db1.vectors("emb").nearest(to: q, k: 5).map(\.id)
        try await db1.close()
        #expect(FileManager.default.fileExists(atPath: dir + "/v.sqlite.emb.hnsw"))

        // Current file: loaded as saved, same answers.
        let db2 = try await Polyglot(map: map(dir), registry: .embedded)
        #expect(try await db2.vectors("emb").nearest(to: q, k: 5).map(\.id) == before)
        // A change the index file does not know about (raw SQL bypasses the index) makes it stale.
        _ = try await db2.sql(on: "primary", "DELETE FROM emb WHERE id = ?", [.string(before[0])])
        try await db2.close()

        let db3 = try await Polyglot(map: map(dir), registry: .embedded)
        let after = try await db3.vectors("emb").nearest(to: q, k: 5).map(\.id)
        #expect(!after.contains(before[0]), "a row deleted while the index file was stale came back")
        try await db3.close()

        // A corrupt file is rebuilt from SQLite, not trusted and not a crash.
        let file = dir + "/v.sqlite.emb.hnsw"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: file))
        let db4 = try await Polyglot(map: map(dir), registry: .embedded)
        #expect(try await db4.vectors("emb").nearest(to: q, k: 5).map(\.id) == after)
        #expect(try await db4.vectors("emb").count() == 999)
        try await db4.close()
    }

    @Test func aRolledBackTransactionLeavesTheIndexAlone() async throws {
        let db = try await Polyglot(map: map(tempDir()), registry: .embedded)
        let emb = try db.vectors("emb")
        try await emb.upsert("keep", vector: [1, 0, 0, 0, 0, 0, 0, 0])
        struct Rollback: Error {}
        do {
            try await db.transaction(on: "primary") {
                try await emb.upsert("ghost", vector: [0, 1, 0, 0, 0, 0, 0, 0])
                #expect(try await emb.nearest(to: [0, 1, 0, 0, 0, 0, 0, 0], k: 1).first?.id == "ghost", "a transaction sees its own vector")
                throw Rollback()
            }
        } catch is Rollback {}
        #expect(try await emb.nearest(to: [0, 1, 0, 0, 0, 0, 0, 0], k: 2).map(\.id) == ["keep"])
        try await db.close()
    }
}

@Suite struct MaintenanceTests {
    @Test func maintenancePrunesTheOutboxAndAppliesRetention() async throws {
        let dir = tempDir()
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: dir + "/m.sqlite", options: ["outboxRetention": "1h"])],
                          datasets: [DatasetSpec(name: "kv", model: .keyValue, engine: "primary"),
                                     DatasetSpec(name: "ts", model: .timeSeries, engine: "primary", retention: .seconds(60))])
        let db = try await Polyglot(map: map, registry: .embedded)
        try await db.keyValue("kv").set("a", "1")
        try await db.timeSeries("ts").append("s", value: 1, at: Date().addingTimeInterval(-120))
        try await db.timeSeries("ts").append("s", value: 2)
        let before = try await db.sql(on: "primary", "SELECT count(*) AS n FROM _polyglot_outbox").first?["n"]
        #expect(before == 3)
        try await db.maintain(now: Date())
        #expect(try await db.sql(on: "primary", "SELECT count(*) AS n FROM _polyglot_outbox").first?["n"] == 3, "recent events are kept")
        #expect(try await db.timeSeries("ts").range("s", from: .distantPast, to: .distantFuture).map(\.value) == [2], "retention ran")
        try await db.maintain(now: Date().addingTimeInterval(7200))
        #expect(try await db.sql(on: "primary", "SELECT count(*) AS n FROM _polyglot_outbox").first?["n"] == 0, "events past outboxRetention are pruned")
        try await db.close()
    }
}

@Suite struct SQLiteChangeFeedTests {
    @Test func theFeedReturnsEveryWriteOnceInCommitOrder() async throws {
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: ":memory:")],
                          datasets: [DatasetSpec(name: "docs", model: .documents, engine: "primary"), DatasetSpec(name: "kv", model: .keyValue, engine: "primary")])
        let db = try await Polyglot(map: map, registry: .embedded)
        let feed = try #require(try db.engine("primary") as? SQLiteEngine).changeFeed()
        let d = try db.documents("docs")
        var tokens: [ConsistencyToken] = []
        for i in 0..<10 { tokens.append(try await d.put("d\(i % 3)", ["i": .number(Double(i))])) }
        try await db.keyValue("kv").set("k", "v")
        _ = try await d.delete("d0")
        var cursor = ChangeCursor.start
        var seen: [ChangeEvent] = []
        while true {
            let batch = try await feed.changes(after: cursor, limit: 4)
            if batch.events.isEmpty { break }
            seen += batch.events
            cursor = batch.next
        }
        #expect(seen.count == 12)
        #expect(seen.map(\.position) == seen.map(\.position).sorted())
        #expect(Array(seen.prefix(10).map(\.position)) == tokens.map(\.position))
        #expect(seen.last?.operation == "delete" && seen.last?.key == "d0")
        #expect(try JSON(parsing: seen[0].payload ?? Data())["i"] == 0)
        try await db.close()
    }
}

/// Times and lengths far outside any calendar are refused with a message, before an engine turns them into integer
/// milli- or microseconds (which overflow and trap). `Date.distantPast`/`distantFuture` (years 1 and 4001) stay valid.
@Suite struct TimeRangeTests {
    @Test func timesBeyondTheCalendarAreRefusedAndNothingIsWritten() async throws {
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: ":memory:")],
                          datasets: [DatasetSpec(name: "ts", model: .timeSeries, engine: "primary"),
                                     DatasetSpec(name: "docs", model: .documents, engine: "primary", fields: [FieldSpec("at", .timestamp)])])
        let db = try await Polyglot(map: map, registry: .embedded)
        let ts = try db.timeSeries("ts")
        for seconds in [1e13, -1e13, 1e300] {
            await #expect(throws: PolyglotError.self, "append at \(seconds)") {
                try await ts.append([Sample(series: "s", time: Date(), value: 1), Sample(series: "s", time: Date(timeIntervalSince1970: seconds), value: 2)])
            }
            await #expect(throws: PolyglotError.self, "range to \(seconds)") { _ = try await ts.range("s", from: Date(), to: Date(timeIntervalSince1970: seconds)) }
        }
        await #expect(throws: PolyglotError.self) { _ = try await ts.aggregate("s", from: .distantPast, to: .distantFuture, bucket: .seconds(Int64.max)) }
        #expect(try await ts.range("s", from: .distantPast, to: .distantFuture).isEmpty, "a refused append wrote nothing")
        // A document's timestamp given in milliseconds, and a filter comparing with one, are told so.
        let docs = try db.documents("docs")
        do {
            _ = try await docs.put("a", ["at": .number(1.7e12)])
            Issue.record("a timestamp in milliseconds was stored")
        } catch let e as PolyglotError {
            #expect(e.code == .invalidArgument && e.fix?.contains("milliseconds") == true, "\(e)")
        }
        do {
            _ = try await docs.query(.compare(FieldPath("at"), .greater, .number(1.7e12)))
            Issue.record("a filter with a timestamp in milliseconds was accepted")
        } catch let e as PolyglotError {
            #expect(e.code == .invalidFilter && e.fix?.contains("milliseconds") == true, "\(e)")
        }
        _ = try await docs.put("b", ["at": .number(1.7e9)])
        _ = try await docs.put("c", ["at": .string("9999-12-31T23:59:59Z")])
        #expect(try await docs.count() == 2)
        try await db.close()
    }

    /// Timestamps written as ISO text before SQLite tables stored seconds stayed text, which sorts above every number:
    /// a filter `at < …` missed them. Opening converts them once.
    @Test func timestampTextStoredBeforeTablesKeptSecondsIsConvertedOnOpen() async throws {
        let path = tempDir() + "/legacy.sqlite"
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: path)],
                          datasets: [DatasetSpec(name: "events", model: .table, engine: "primary",
                                                 fields: [FieldSpec("id", .integer, nullable: false), FieldSpec("at", .timestamp)], primaryKey: "id")])
        let first = try await Polyglot(map: map, registry: .embedded)
        // What an older version left: ISO text in the column, and no record of the conversion.
        _ = try await first.sql(on: "primary", "INSERT INTO events(id, at) VALUES (1, '2023-11-14T22:13:20Z'), (2, 'not a time')")
        _ = try await first.sql(on: "primary", "DELETE FROM _polyglot_conversions")
        try await first.table("events").upsert(["id": 3, "at": 1.8e9])
        #expect(try await first.table("events").count(.field("at") < 1.75e9) == 0, "text sorts above numbers before the conversion")
        try await first.close()
        let db = try await Polyglot(map: map, registry: .embedded)
        let t = try db.table("events")
        #expect(try await t.get(1)?["at"] == 1_700_000_000)
        #expect(try await t.count(.field("at") < 1.75e9) == 1)
        #expect(try await t.get(2)?["at"] == "not a time", "text that is not a time is left as it was")
        #expect(try await db.sql(on: "primary", "SELECT count(*) AS n FROM _polyglot_conversions").first?["n"] == 1)
        try await db.close()
    }
}
