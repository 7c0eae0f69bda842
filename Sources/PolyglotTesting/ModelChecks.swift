import Foundation
import Polyglot

extension ConformanceSuite {
    static func one(_ spec: DatasetSpec) -> @Sendable () -> [DatasetSpec] { { [spec] } }

    public static let keyValueChecks: [ConformanceCheck] = [
        ConformanceCheck(.keyValue, "set, get, overwrite, delete", datasets: one(DatasetSpec(name: "kv", model: .keyValue, engine: "subject"))) { db in
            let kv = try db.keyValue("kv")
            try await kv.set("a", "1")
            try expect(try await kv.getString("a") == "1", "get after set")
            try await kv.set("a", Data([0, 255, 7]))
            try expect(try await kv.get("a") == Data([0, 255, 7]), "binary overwrite not read back")
            try expect(try await kv.delete("a"), "delete of an existing key must return true")
            try expect(try await kv.get("a") == nil, "deleted key still readable")
            try expect(try await !kv.delete("a"), "delete of a missing key must return false")
        },
        ConformanceCheck(.keyValue, "TTL expiry, and the dataset's default TTL", datasets: one(DatasetSpec(name: "kv", model: .keyValue, engine: "subject", ttl: .milliseconds(1500)))) { db in
            let kv = try db.keyValue("kv")
            let start = ContinuousClock.now
            try await kv.set("short", "x", ttl: .milliseconds(200))
            try await kv.set("default", "y")
            let defaultWritten = ContinuousClock.now
            try await kv.set("long", "z", ttl: .seconds(60))
            let early = try await kv.getString("short")
            // Only assert liveness when the machine was fast enough for it to be guaranteed.
            if ContinuousClock.now - start < .milliseconds(150) { try expect(early == "x", "key gone before its TTL") }
            try await Task.sleep(for: .milliseconds(400))
            try expect(try await kv.get("short") == nil, "key readable after its TTL")
            let mid = try await kv.getString("default")
            if ContinuousClock.now - start < .milliseconds(1400) { try expect(mid == "y", "default-TTL key gone too early") }
            // The default TTL (1.5 s) runs from the write, which a loaded machine may finish well after `start`.
            try await Task.sleep(until: max(start + .milliseconds(1700), defaultWritten + .milliseconds(1700)))
            try expect(try await kv.get("default") == nil, "dataset default TTL not applied")
            let entries = try await kv.scan()
            try expect(entries.map(\.key) == ["long"], "scan shows expired keys: \(entries.map(\.key))")
            try expect(entries.first?.expiresAt != nil, "scan does not report the expiry")
            try await expectError(.invalidArgument, "a TTL of zero") { try await kv.set("bad", "v", ttl: .zero) }
            try await expectError(.invalidArgument, "a negative TTL") { try await kv.set("bad", "v", ttl: .seconds(-1)) }
        },
        ConformanceCheck(.keyValue, "increment is atomic under concurrency and refuses non-integers", datasets: one(DatasetSpec(name: "kv", model: .keyValue, engine: "subject"))) { db in
            let kv = try db.keyValue("kv")
            try expect(try await kv.increment("n") == 1, "increment of a missing key must give 1")
            try expect(try await kv.increment("n", by: 10) == 11, "increment by 10")
            try expect(try await kv.increment("n", by: -12) == -1, "negative increment")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 { group.addTask { _ = try await kv.increment("c") } }
                try await group.waitForAll()
            }
            let c = try await kv.getString("c")
            try expect(c == "50", "50 concurrent increments gave \(c ?? "nil")")
            try await kv.set("text", "hello")
            try await expectError(.conflict, "increment of a non-integer") { _ = try await kv.increment("text") }
            try expect(try await kv.getString("text") == "hello", "a failed increment changed the value")
        },
        ConformanceCheck(.keyValue, "scan by prefix in key order with paging", datasets: one(DatasetSpec(name: "kv", model: .keyValue, engine: "subject"))) { db in
            let kv = try db.keyValue("kv")
            for k in ["user:3", "user:1", "user:2", "usr:9", "user:10", "a"] { try await kv.set(k, k) }
            let all = try await kv.scan(prefix: "user:")
            try expect(all.map(\.key) == ["user:1", "user:10", "user:2", "user:3"], "prefix scan gave \(all.map(\.key))")
            let page1 = try await kv.scan(prefix: "user:", limit: 2)
            let page2 = try await kv.scan(prefix: "user:", after: page1.last?.key, limit: 2)
            try expect((page1 + page2).map(\.key) == all.map(\.key), "paging gave \(page1.map(\.key)) + \(page2.map(\.key))")
            try expect(String(decoding: all[0].value, as: UTF8.self) == "user:1", "scan values wrong")
        },
        ConformanceCheck(.keyValue, "getMany and setMany (the store calls the relay batches its versions with)", datasets: one(DatasetSpec(name: "kv", model: .keyValue, engine: "subject"))) { db in
            let store = try db.engine("subject").keyValueStore(for: db.map.datasets[0])
            try await store.setMany([], ttl: nil)
            try expect(try await store.getMany([]).isEmpty, "getMany of no keys")
            try await store.setMany([("a", Data([0, 255])), ("b", Data("2".utf8)), ("a", Data("last".utf8))], ttl: nil)
            try await store.setMany([("short", Data("x".utf8))], ttl: .milliseconds(150))
            let values = try await store.getMany(["a", "b", "missing", "a"])
            try expect(values == ["a": Data("last".utf8), "b": Data("2".utf8)], "getMany gave \(values.mapValues { Array($0) })")
            try expect(try await store.get("b") == Data("2".utf8), "get after setMany")
            try await Task.sleep(for: .milliseconds(400))
            try expect(try await store.getMany(["short", "b"]).keys.sorted() == ["b"], "getMany returned a key past its TTL")
        },
        ConformanceCheck(.keyValue, "size limits", datasets: one(DatasetSpec(name: "kv", model: .keyValue, engine: "subject", maxKeyBytes: 8, maxValueBytes: 16))) { db in
            let kv = try db.keyValue("kv")
            try await expectError(.limitExceeded, "a key over maxKeyBytes") { try await kv.set("123456789", "v") }
            try await expectError(.limitExceeded, "a value over maxValueBytes") { try await kv.set("k", String(repeating: "v", count: 17)) }
            try expect(try await kv.scan().isEmpty, "a refused write left a key behind")
        },
    ]

    public static let vectorChecks: [ConformanceCheck] = [
        ConformanceCheck(.vectors, "exact nearest neighbours match brute force for every metric", datasets: {
            VectorMetric.allCases.map { DatasetSpec(name: "v_\($0.rawValue)", model: .vectors, engine: "subject", dimension: 8, metric: $0) }
        }) { db in
            var rng = SeededRandom(seed: 42)
            let records = (0..<200).map { i in
                VectorRecord(id: "v\(i)", vector: (0..<8).map { _ in rng.nextFloat() }, metadata: ["group": .number(Double(i % 4))])
            }
            for metric in VectorMetric.allCases {
                let vs = try db.vectors("v_\(metric.rawValue)")
                try await vs.upsert(records)
                try expect(try await vs.count() == 200, "count after upsert")
                for _ in 0..<5 {
                    let q = (0..<8).map { _ in rng.nextFloat() }
                    let expected = records.map { ($0.id, VectorMath.distance(q, $0.vector, metric: metric)) }
                        .sorted { ($0.1, $0.0) < ($1.1, $1.0) }.prefix(10).map(\.0)
                    let got = try await vs.nearest(to: q, k: 10, exact: true)
                    try expect(got.map(\.id) == Array(expected), "\(metric): nearest gave \(got.map(\.id)), brute force \(expected)")
                    try expect(zip(got, got.dropFirst()).allSatisfy { $0.distance <= $1.distance }, "\(metric): hits not sorted by distance")
                    let filtered = try await vs.nearest(to: q, k: 5, where: .field("group") == 2, exact: true)
                    let expectedFiltered = records.filter { $0.metadata?["group"] == 2 }
                        .map { ($0.id, VectorMath.distance(q, $0.vector, metric: metric)) }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.prefix(5).map(\.0)
                    try expect(filtered.map(\.id) == Array(expectedFiltered), "\(metric): filtered nearest gave \(filtered.map(\.id))")
                }
            }
        },
        ConformanceCheck(.vectors, "approximate search keeps recall@10 of 0.9 against exact, filtered too, and never returns deleted ids", datasets: one(DatasetSpec(name: "v", model: .vectors, engine: "subject", dimension: 16))) { db in
            let vs = try db.vectors("v")
            var rng = SeededRandom(seed: 9)
            let records = (0..<3000).map { i in VectorRecord(id: "v\(i)", vector: (0..<16).map { _ in rng.nextFloat() }, metadata: ["bucket": .number(Double(i % 10))]) }
            for start in stride(from: 0, to: records.count, by: 500) { try await vs.upsert(Array(records[start..<start + 500])) }
            for i in 0..<100 { try await vs.delete("v\(i * 7)") }
            var found = 0, total = 0, foundFiltered = 0, totalFiltered = 0
            for _ in 0..<30 {
                let q = (0..<16).map { _ in rng.nextFloat() }
                let exact = Set(try await vs.nearest(to: q, k: 10, exact: true).map(\.id))
                let approx = try await vs.nearest(to: q, k: 10)
                try expect(approx.allSatisfy { id in !(0..<100).contains { "v\($0 * 7)" == id.id } }, "a deleted id came back")
                found += approx.filter { exact.contains($0.id) }.count
                total += exact.count
                let exactF = Set(try await vs.nearest(to: q, k: 10, where: .field("bucket") == 3, exact: true).map(\.id))
                let approxF = try await vs.nearest(to: q, k: 10, where: .field("bucket") == 3)
                try expect(approxF.allSatisfy { $0.metadata?["bucket"] == 3 }, "a filtered search returned a non-matching vector")
                foundFiltered += approxF.filter { exactF.contains($0.id) }.count
                totalFiltered += exactF.count
            }
            let recall = Double(found) / Double(total), recallF = Double(foundFiltered) / Double(totalFiltered)
            try expect(recall >= 0.9, "recall@10 \(recall) is below 0.9")
            try expect(recallF >= 0.9, "filtered recall@10 \(recallF) is below 0.9")
        },
        ConformanceCheck(.vectors, "upsert replaces, delete removes, get returns metadata", datasets: one(DatasetSpec(name: "v", model: .vectors, engine: "subject", dimension: 3))) { db in
            let vs = try db.vectors("v")
            try await vs.upsert("a", vector: [1, 0, 0], metadata: ["tag": "x"])
            try await vs.upsert("a", vector: [0, 1, 0], metadata: ["tag": "y"])
            let a = try await vs.get("a")
            try expect(a?.vector == [0, 1, 0] && a?.metadata == ["tag": "y"], "upsert did not replace: \(String(describing: a))")
            try expect(try await vs.count() == 1, "upsert of the same id made two vectors")
            try await vs.upsert("b", vector: [0, 0, 1])
            try expect(try await vs.delete("a"), "delete of an existing id must return true")
            let hits = try await vs.nearest(to: [0, 1, 0], k: 10, exact: true)
            try expect(hits.map(\.id) == ["b"], "deleted vector came back: \(hits.map(\.id))")
        },
        ConformanceCheck(.vectors, "bad vectors are refused: wrong dimension, NaN, infinity", datasets: one(DatasetSpec(name: "v", model: .vectors, engine: "subject", dimension: 3))) { db in
            let vs = try db.vectors("v")
            try await expectError(.invalidVector, "a 2-dimensional vector") { try await vs.upsert("a", vector: [1, 2]) }
            try await expectError(.invalidVector, "a NaN component") { try await vs.upsert("a", vector: [1, .nan, 0]) }
            try await expectError(.invalidVector, "an infinite component") { try await vs.upsert("a", vector: [1, .infinity, 0]) }
            try await expectError(.invalidVector, "a query of the wrong dimension") { _ = try await vs.nearest(to: [1, 2, 3, 4]) }
            try await expectError(.invalidVector, "one bad vector in a batch") {
                try await vs.upsert([VectorRecord(id: "ok", vector: [1, 0, 0]), VectorRecord(id: "bad", vector: [.nan, 0, 0])])
            }
            try expect(try await vs.count() == 0, "refused vectors were stored")
        },
    ]

    static func searchable() -> @Sendable () -> [DatasetSpec] {
        { [DatasetSpec(name: "articles", model: .documents, engine: "subject", fields: [FieldSpec("lang", .string)],
                       projections: [.search(on: "subject", fields: ["title", "body"])])] }
    }

    public static let searchChecks: [ConformanceCheck] = [
        ConformanceCheck(.search, "ranked hits with snippets, filters, phrases and exclusions", datasets: searchable()) { db in
            let a = try db.documents("articles")
            try await a.putMany([
                ("1", ["title": "Red shoes", "body": "Red running shoes for trail running", "lang": "en"]),
                ("2", ["title": "Blue shoes", "body": "Blue shoes with a red stripe", "lang": "en"]),
                ("3", ["title": "Hats", "body": "Woollen hats", "lang": "en"]),
                ("4", ["title": "Rote Schuhe", "body": "red shoes auf Deutsch", "lang": "de"]),
            ])
            let hits = try await a.search("red shoes")
            try expect(Set(hits.map(\.id)) == ["1", "2", "4"], "search 'red shoes' gave \(hits.map(\.id))")
            try expect(hits.first?.id == "1", "the document with the most matches should rank first: \(hits.map(\.id))")
            try expect(zip(hits, hits.dropFirst()).allSatisfy { $0.score >= $1.score }, "hits not sorted by score")
            try expect(hits.first?.snippet.contains("[") == true, "snippet does not mark matches: \(hits.first?.snippet ?? "")")
            try expect(try await a.search("red shoes", filter: .field("lang") == "de").map(\.id) == ["4"], "filtered search")
            try expect(try await a.search("shoes -blue").map(\.id).contains("2") == false, "exclusion did not exclude")
            try expect(try await a.search("\"red stripe\"").map(\.id) == ["2"], "phrase search")
            try expect(try await a.search("running").map(\.id) == ["1"], "stemmed search")
            try expect(try await a.search("hats OR stripe").count == 2, "OR search")
            try await expectError(.invalidArgument, "a search with no words") { _ = try await a.search("  -only ") }
        },
        ConformanceCheck(.search, "updates re-index and deletes leave the index", datasets: searchable()) { db in
            let a = try db.documents("articles")
            try await a.put("1", ["title": "Alpha", "body": "first"])
            try await a.put("1", ["title": "Beta", "body": "second"])
            try expect(try await a.search("alpha").isEmpty, "the old text is still indexed")
            try expect(try await a.search("beta").map(\.id) == ["1"], "the new text is not indexed")
            try await a.delete("1")
            try expect(try await a.search("beta").isEmpty, "a deleted document is still found")
        },
    ]

    public static let graphChecks: [ConformanceCheck] = [
        ConformanceCheck(.graph, "neighbors, traversal on cycles, shortest path, labels", datasets: one(DatasetSpec(name: "g", model: .graph, engine: "subject"))) { db in
            let g = try db.graph("g")
            try await g.addEdges([
                Edge(from: "a", to: "b"), Edge(from: "b", to: "c"), Edge(from: "c", to: "a"),
                Edge(from: "c", to: "d"), Edge(from: "d", to: "e"), Edge(from: "a", to: "x", label: "other"),
            ])
            try expect(try await g.neighbors(of: "a") == ["b", "x"], "outgoing neighbors")
            try expect(try await g.neighbors(of: "a", label: "") == ["b"], "label filter")
            try expect(try await g.neighbors(of: "a", direction: .incoming) == ["c"], "incoming neighbors")
            try expect(try await g.neighbors(of: "a", direction: .both) == ["b", "c", "x"], "both directions")
            let walk = try await g.traverse(from: "a", depth: 10, label: "")
            try expect(walk == [TraversalStep(node: "b", depth: 1), TraversalStep(node: "c", depth: 2), TraversalStep(node: "d", depth: 3), TraversalStep(node: "e", depth: 4)],
                       "traversal over a cycle gave \(walk)")
            try expect(try await g.traverse(from: "a", depth: 2, label: "").map(\.node) == ["b", "c"], "depth limit")
            try expect(try await g.shortestPath(from: "a", to: "e") == ["a", "b", "c", "d", "e"], "shortest path")
            try expect(try await g.shortestPath(from: "e", to: "a") == nil, "no path must be nil")
            try expect(try await g.shortestPath(from: "e", to: "a", direction: .both) == ["e", "d", "c", "a"], "undirected shortest path")
            try expect(try await g.shortestPath(from: "a", to: "e", maxDepth: 3) == nil, "path longer than maxDepth")
            try expect(try await g.removeEdge(from: "c", to: "d"), "remove existing edge")
            try expect(try await g.shortestPath(from: "a", to: "e") == nil, "removed edge still used")
            try await g.addEdge(Edge(from: "a", to: "b", weight: 5, properties: ["since": 2020]))
            let edges = try await g.edges(of: "a", label: "")
            try expect(edges.count == 1 && edges[0].weight == 5 && edges[0].properties == ["since": 2020], "edge replace with properties: \(edges)")
        },
    ]

    public static let timeSeriesChecks: [ConformanceCheck] = [
        ConformanceCheck(.timeSeries, "range, bucketed aggregates and retention", datasets: one(DatasetSpec(name: "ts", model: .timeSeries, engine: "subject", retention: .seconds(3600)))) { db in
            let ts = try db.timeSeries("ts")
            let base = Date(timeIntervalSince1970: 1_699_999_980)  // a multiple of 60 s: buckets align with it
            try await ts.append((0..<120).map { Sample(series: "cpu", time: base.addingTimeInterval(Double($0)), value: Double($0)) })
            try await ts.append(Sample(series: "mem", time: base, value: 99).series, value: 99, at: base)
            let r = try await ts.range("cpu", from: base.addingTimeInterval(10), to: base.addingTimeInterval(20))
            try expect(r.map(\.value) == (10..<20).map(Double.init), "range is half-open [from, to): \(r.map(\.value))")
            let buckets = try await ts.aggregate("cpu", from: base, to: base.addingTimeInterval(120), bucket: .seconds(60))
            try expect(buckets.count == 2, "two 60 s buckets expected, got \(buckets.count)")
            try expect(buckets[0].start == base && buckets[0].count == 60 && buckets[0].sum == 1770 && buckets[0].min == 0 && buckets[0].max == 59,
                       "first bucket \(buckets[0])")
            try expect(buckets[1].average == 89.5, "second bucket average \(buckets[1].average)")
            let deleted = try await ts.applyRetention(now: base.addingTimeInterval(3600 + 30))
            try expect(deleted == 31, "retention should delete the 31 samples older than an hour (30 cpu + 1 mem), deleted \(deleted)")
            try expect(try await ts.range("cpu", from: base, to: base.addingTimeInterval(200)).count == 90, "samples left after retention")
        },
    ]

    static func orders() -> @Sendable () -> [DatasetSpec] {
        { [DatasetSpec(name: "orders", model: .table, engine: "subject",
                       fields: [FieldSpec("id", .integer, nullable: false), FieldSpec("customer", .string, nullable: false),
                                FieldSpec("total", .number), FieldSpec("paid", .boolean), FieldSpec("meta", .json)],
                       primaryKey: "id")] }
    }

    static func events() -> @Sendable () -> [DatasetSpec] {
        { [DatasetSpec(name: "events", model: .table, engine: "subject",
                       fields: [FieldSpec("id", .integer, nullable: false), FieldSpec("at", .timestamp)], primaryKey: "id")] }
    }

    public static let tableChecks: [ConformanceCheck] = [
        ConformanceCheck(.table, "timestamp columns take seconds or ISO text, read back as seconds, and compare as times", datasets: events()) { db in
            let t = try db.table("events")
            // 1.7e9 s is 2023-11-14T22:13:20Z.
            try await t.upsert([
                ["id": 1, "at": 1.7e9],
                ["id": 2, "at": "2023-11-14T22:13:21Z"],
                ["id": 3, "at": "2023-11-15"],
                ["id": 4, "at": "2023-11-14T23:13:20.250+01:00"],
                ["id": 5],
            ])
            for (id, seconds) in [(1, 1_700_000_000), (2, 1_700_000_001), (3, 1_700_006_400), (4, 1_700_000_000.25)] as [(Int, Double)] {
                let at = try await t.get(.number(Double(id)))?["at"]
                try expect(at == .number(seconds), "row \(id) read back \(String(describing: at)), not \(seconds)")
            }
            try expect(try await t.get(5)?["at"] == .null, "a missing timestamp reads as null")
            let after = try await t.select(.field("at") > 1.7e9, sort: [.ascending("at")])
            try expect(after.map { $0["id"] } == [4, 2, 3], "at > 1.7e9 sorted by time gave \(after.map { $0["id"] })")
            let fromText = try await t.select(.field("at") >= "2023-11-14T23:13:21+01:00", sort: [.ascending("id")])
            try expect(fromText.map { $0["id"] } == [2, 3], "at >= ISO text gave \(fromText.map { $0["id"] })")
            try expect(try await t.count(.field("at") == "2023-11-14T22:13:20Z") == 1, "equality with ISO text of a row written as seconds")
            try expect(try await t.count(.field("at") == 1_700_000_001) == 1, "equality with seconds of a row written as ISO text")
            try await expectError(.invalidArgument, "a timestamp that is not ISO text") { try await t.upsert(["id": 9, "at": "yesterday"]) }
            try await expectError(.invalidArgument, "a timestamp in milliseconds") { try await t.upsert(["id": 9, "at": 1.7e12]) }
            try await expectError(.invalidFilter, "a filter with text that is not a time") { _ = try await t.select(.field("at") > "soon") }
            try expect(try await t.count() == 5, "refused rows were stored")
        },
        ConformanceCheck(.table, "upsert, get, select, count, delete with typed columns", datasets: orders()) { db in
            let t = try db.table("orders")
            try await t.upsert([
                ["id": 1, "customer": "ada", "total": 120.5, "paid": true, "meta": ["src": "web"]],
                ["id": 2, "customer": "bob", "total": 80, "paid": false],
                ["id": 3, "customer": "ada", "total": 40],
            ])
            let one = try await t.get(1)
            try expect(one?["customer"] == "ada" && one?["paid"] == true && one?["meta"] == ["src": "web"] && one?["total"] == 120.5, "get returned \(String(describing: one))")
            try await t.upsert(["id": 2, "customer": "bob", "total": 85, "paid": true])
            try expect(try await t.get(2)?["total"] == 85, "upsert did not replace")
            let ada = try await t.select(.field("customer") == "ada", sort: [.descending("total")])
            try expect(ada.map { $0["id"] } == [1, 3], "select with sort gave \(ada.map { $0["id"] })")
            try expect(try await t.count(.field("paid") == true) == 2, "count on a boolean column")
            try expect(try await t.count(.field("paid") == nil) == 1, "null comparison on a column")
            try expect(try await t.delete(.field("total") < 50) == 1, "delete by filter")
            try expect(try await t.count() == 2, "rows left after delete")
        },
        ConformanceCheck(.table, "bad rows are refused", datasets: orders()) { db in
            let t = try db.table("orders")
            try await expectError(.invalidArgument, "an unknown column") { try await t.upsert(["id": 1, "customer": "a", "colour": "red"]) }
            try await expectError(.invalidArgument, "a missing required column") { try await t.upsert(["id": 1]) }
            try await expectError(.invalidArgument, "a missing primary key") { try await t.upsert(["customer": "a"]) }
            try await expectError(.invalidArgument, "a string in a number column") { try await t.upsert(["id": 1, "customer": "a", "total": "lots"]) }
            try await expectError(.invalidFilter, "a filter on a missing column") { _ = try await t.select(.field("colour") == "red") }
            try expect(try await t.count() == 0, "refused rows were stored")
        },
    ]

    static func cached() -> @Sendable () -> [DatasetSpec] {
        { [DatasetSpec(name: "items", model: .documents, engine: "source", projections: [.cache(on: "subject", ttl: .seconds(60))])] }
    }

    public static let cacheChecks: [ConformanceCheck] = [
        ConformanceCheck(.cache, "read-through: a miss loads, then hits; writes and deletes invalidate before returning", datasets: cached()) { db in
            let items = try db.documents("items")
            try await items.put("a", ["v": 1])
            _ = try await items.get("a")
            _ = try await items.get("a")
            let stats = db.telemetry.snapshot().caches["subject"]
            try expect((stats?.hits ?? 0) >= 1 && (stats?.misses ?? 0) >= 1, "expected a miss then a hit, got \(String(describing: stats))")
            for i in 2...20 {
                try await items.put("a", ["v": .number(Double(i))])
                let v = try await items.get("a")?.json()["v"]
                try expect(v == .number(Double(i)), "read after write \(i) returned \(String(describing: v))")
            }
            try await items.delete("a")
            try expect(try await items.get("a") == nil, "read after delete returned the cached document")
        },
        ConformanceCheck(.cache, "reads inside a transaction never put uncommitted data in the cache", datasets: cached()) { db in
            struct Rollback: Error {}
            let items = try db.documents("items")
            try await items.put("a", ["v": 1])
            do {
                try await db.transaction(on: "source") {
                    try await items.put("a", ["v": 2])
                    let inside = try await items.get("a")?.json()["v"]
                    try expect(inside == 2, "a read inside the transaction must see its own write, got \(String(describing: inside))")
                    throw Rollback()
                }
            } catch is Rollback {}
            let after = try await items.get("a")?.json()["v"]
            try expect(after == 1, "after rollback the cache served \(String(describing: after))")
        },
        ConformanceCheck(.cache, "concurrent misses load the source once", datasets: cached()) { db in
            let items = try db.documents("items")
            try await items.put("hot", ["v": 1])
            let before = db.telemetry.snapshot().entry(dataset: "items", operation: "get")?.stats.count ?? 0
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<100 { group.addTask { _ = try await items.get("hot") } }
                try await group.waitForAll()
            }
            let after = db.telemetry.snapshot().entry(dataset: "items", operation: "get")?.stats.count ?? 0
            try expect(after - before <= 2, "100 concurrent cold reads loaded the source \(after - before) times")
        },
        ConformanceCheck(.cache, "a fill never writes an older version over a newer one", datasets: cached()) { db in
            let items = try db.documents("items")
            let t1 = try await items.put("a", ["v": 1])
            let old = try await items.get("a")!
            let t2 = try await items.put("a", ["v": 2])
            try expect(t2 > t1, "versions must grow")
            _ = try await items.get("a")
            // A slow reader that loaded version 1 finishes now: its fill must be refused.
            let refused = db.telemetry.snapshot().caches["subject"]?.rejectedFills ?? 0
            let backend = try db.cacheBackend(for: "items")
            let stored = try await backend.fill("doc\u{1F}items\u{1F}a", CachedEntry(version: old.version, data: old.data), ttl: .seconds(60), jitter: 0, loadStartedAt: .now)
            try expect(!stored, "an older fill overwrote a newer cached version")
            try expect((db.telemetry.snapshot().caches["subject"]?.rejectedFills ?? 0) == refused + 1, "rejected fill not counted")
            try expect(try await items.get("a")?.json()["v"] == 2, "the cache serves an older version")
        },
    ]
}

