import ArgumentParser
import Foundation
import Polyglot
import PolyglotSQLite

struct Quickstart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an example shop in ./polyglot-data, load a generated sample, and run every kind of operation.")

    @Option(help: "Folder for the data map and the SQLite file.") var dir = "polyglot-data"
    @Option(help: "How many products to generate.") var products = 2000
    @Flag(name: .shortAndLong, help: "Log engine activity to standard error.") var verbose = false

    static let exampleMap = """
    # Polyglot data map: an example shop on the embedded default (one SQLite file + an in-process cache).
    # Move a dataset to another engine by changing `engine:`; point an engine elsewhere with
    # POLYGLOT_ENGINE_<NAME>_PATH or POLYGLOT_ENGINE_<NAME>_URL. Paths are relative to this file.
    engines:
      primary: { kind: sqlite, path: shop.sqlite }
      cache:   { kind: memory, options: { maxEntries: 10000, maxBytes: 16MB } }

    datasets:
      products:
        model: documents
        engine: primary
        fields: { price: number, category: string, stock: integer }   # indexed, type-checked
        projections:
          - { kind: cache,   engine: cache,   ttl: 5m, jitter: 0.1 }
          - { kind: search,  engine: primary, fields: [name, description] }
          - { kind: vectors, engine: primary, fields: [name, description], dimension: 64 }

      sessions:
        model: keyValue
        engine: primary
        ttl: 30m

      orders:
        model: table
        engine: primary
        primaryKey: id
        columns: { id: integer!, customer: string!, product: string!, quantity: integer!, total: number!, created_at: timestamp! }

      page_views:
        model: timeSeries
        engine: primary
        retention: 30d

      bought_together:
        model: graph
        engine: primary

    telemetry:
      flushInterval: 30s
    """

    func run() async throws {
        ConfigOptions.bootstrapLogging(verbose: verbose)
        try await reportingErrors { try await quickstart() }
    }

    func quickstart() async throws {
        let started = ContinuousClock.now
        let mapPath = (dir as NSString).appendingPathComponent("polyglot.yml")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: mapPath) {
            say("Using the existing data map \(mapPath) (delete it to start over).")
        } else {
            try Self.exampleMap.write(toFile: mapPath, atomically: true, encoding: .utf8)
            say("Created \(mapPath): an example shop on one SQLite file plus an in-process cache.")
        }
        let db = try await Polyglot(map: DataMap(contentsOf: mapPath), registry: .cli)
        do {
            try await tour(db)
            try await db.close()
        } catch {
            try? await db.close()
            throw error
        }
        say("\nDone in \(TelemetryTable.format(.now - started)). Next: `swift run polyglot map`, `swift run polyglot stats`, and edit \(mapPath).")
    }

    func say(_ s: String) { print(s) }
    func heading(_ s: String) { print("\n== \(s)") }

    func tour(_ db: Polyglot) async throws {
        var rng = SeededRandom(seed: 7)
        let catalog = SampleShop.products(count: max(10, products), rng: &rng)

        heading("Loading a generated sample")
        let productDocs = try db.documents("products")
        var progress = Progress("products", total: catalog.count)
        for batch in stride(from: 0, to: catalog.count, by: 250) {
            let slice = catalog[batch..<min(batch + 250, catalog.count)]
            try await productDocs.putMany(slice.map { ($0.id, $0.json) })
            progress.advance(to: batch + slice.count)
        }
        let orders = SampleShop.orders(count: catalog.count / 2, products: catalog, rng: &rng)
        progress = Progress("orders", total: orders.count)
        for batch in stride(from: 0, to: orders.count, by: 250) {
            let slice = Array(orders[batch..<min(batch + 250, orders.count)])
            try await db.table("orders").upsert(slice)
            progress.advance(to: batch + slice.count)
        }
        let graph = try db.graph("bought_together")
        let edges = SampleShop.boughtTogether(orders: orders)
        progress = Progress("bought-together edges", total: edges.count)
        for batch in stride(from: 0, to: edges.count, by: 500) {
            let slice = Array(edges[batch..<min(batch + 500, edges.count)])
            try await graph.addEdges(slice)
            progress.advance(to: batch + slice.count)
        }
        let views = try db.timeSeries("page_views")
        let now = Date()
        let dayAgo = now.addingTimeInterval(-86_400)
        if try await views.range("/home", from: dayAgo, to: now.addingTimeInterval(1), limit: 1).isEmpty {
            let samples = SampleShop.pageViews(from: dayAgo, to: now, rng: &rng)
            progress = Progress("page views", total: samples.count)
            for batch in stride(from: 0, to: samples.count, by: 2000) {
                let slice = Array(samples[batch..<min(batch + 2000, samples.count)])
                try await views.append(slice)
                progress.advance(to: batch + slice.count)
            }
        } else {
            say("  page views: already loaded for the last 24 h")
        }

        heading("Documents: get through the cache, query, count")
        var reads = 0
        for _ in 0..<10_000 {
            // 80% of reads go to 10% of the products: the skew a cache is for.
            let hot = Int(rng.next() % 10) < 8
            let i = hot ? Int(rng.next() % UInt64(max(1, catalog.count / 10))) : Int(rng.next() % UInt64(catalog.count))
            if try await productDocs.get(catalog[i].id) != nil { reads += 1 }
        }
        let cache = db.telemetry.snapshot().caches["cache"] ?? CacheStats()
        say("  \(reads) product reads; cache hit rate \(String(format: "%.1f%%", (cache.hitRate ?? 0) * 100)) (\(cache.hits) hits, \(cache.misses) misses)")
        let cheapShoes = try await productDocs.query(.field("category") == "shoes" && .field("price") < 60, sort: [.ascending("price")], limit: 3)
        say("  cheapest shoes under 60: " + (try cheapShoes.map { "\(try $0.json()["name"]?.stringValue ?? $0.id) (\(try $0.json()["price"]?.doubleValue ?? 0))" }.joined(separator: ", ")))
        for category in SampleShop.categories {
            let n = try await productDocs.count(.field("category") == .string(category))
            say("  \(category): \(n) products")
        }

        heading("Search (FTS5, BM25) and vectors (built-in hashing embedder)")
        for hit in try await productDocs.search("waterproof leather boots", limit: 3) {
            say("  search  \(hit.id)  score \(String(format: "%.2f", hit.score))  \(hit.snippet)")
        }
        for hit in try await productDocs.nearest(text: "warm wool hat for winter", k: 3, where: .field("price") < 80) {
            let name = try await productDocs.get(hit.id)?.json()["name"]?.stringValue ?? hit.id
            say("  nearest \(hit.id)  distance \(String(format: "%.3f", hit.distance))  \(name)")
        }

        heading("Key-value: sessions with a 30 minute TTL")
        let sessions = try db.keyValue("sessions")
        for s in 0..<50 { try await sessions.set("session:\(s)", "customer-\(s % 17)") }
        let views1 = try await sessions.increment("session:1:views")
        let views2 = try await sessions.increment("session:1:views", by: 4)
        let page = try await sessions.scan(prefix: "session:1", limit: 5)
        say("  session:1 → \(try await sessions.getString("session:1") ?? "-"); views counter \(views1) → \(views2); scan 'session:1' → \(page.map(\.key).joined(separator: ", "))")

        heading("Table: orders, typed columns and raw SQL")
        let biggest = try await db.table("orders").select(.field("total") > 500, sort: [.descending("total")], limit: 3)
        say("  largest orders: " + biggest.map { "#\($0["id"]?.intValue ?? 0) \($0["customer"]?.stringValue ?? "") \(String(format: "%.2f", $0["total"]?.doubleValue ?? 0))" }.joined(separator: ", "))
        let top = try await db.sql(on: "primary", "SELECT customer, round(sum(total), 2) AS revenue, count(*) AS n FROM orders GROUP BY customer ORDER BY revenue DESC LIMIT ?", [3])
        say("  top customers (SQL): " + top.map { "\($0["customer"]?.stringValue ?? "") \($0["revenue"]?.doubleValue ?? 0) over \($0["n"]?.intValue ?? 0) orders" }.joined(separator: "; "))

        heading("Time series: page views per hour, last 24 h")
        let hourly = try await views.aggregate("/home", from: dayAgo, to: now, bucket: .seconds(3600))
        say("  /home " + Sparkline.render(hourly.map { Double($0.count) }) + "  (\(hourly.reduce(0) { $0 + $1.count }) views, peak \(hourly.map(\.count).max() ?? 0)/h)")
        let deleted = try await views.applyRetention()
        say("  retention (30 d) removed \(deleted) old samples")

        heading("Graph: bought together")
        let start = edges.max { $0.weight < $1.weight }?.from ?? catalog[0].id
        let neighbors = try await graph.neighbors(of: start, direction: .both)
        let twoHops = try await graph.traverse(from: start, depth: 2, direction: .both)
        say("  \(start) was bought with \(neighbors.count) products; \(twoHops.count) products within 2 hops")
        if let far = twoHops.last?.node, let path = try await graph.shortestPath(from: start, to: far, maxDepth: 4, direction: .both) {
            say("  shortest path \(start) → \(far): \(path.joined(separator: " → "))")
        }

        heading("A transaction across three datasets on one engine")
        let product = catalog[1]
        let orderID = 1_000_000 + Int(rng.next() % 1_000_000)
        let token = try await db.transaction(on: "primary") {
            let current = try await productDocs.get(product.id)?.json() ?? product.json
            let stock = (current["stock"]?.intValue ?? 0) - 1
            guard stock >= 0 else { throw PolyglotError(.conflict, "\(product.id) is out of stock.", fix: "Restock it first.") }
            var updated = current.objectValue ?? [:]
            updated["stock"] = .number(Double(stock))
            try await db.table("orders").upsert(["id": .number(Double(orderID)), "customer": "quickstart", "product": .string(product.id),
                                                 "quantity": 1, "total": .number(product.price), "created_at": .number(Date().timeIntervalSince1970)])
            try await sessions.increment("orders:quickstart")
            return try await productDocs.put(product.id, .object(updated))
        }
        say("  order \(orderID) placed, stock decremented and counter bumped in one commit (token \(token))")
        do {
            try await db.transaction(on: "primary") {
                try await productDocs.put(product.id, ["name": "half-written", "price": 1, "category": "shoes"])
                try await sessions.set("orders:quickstart", "corrupted")
                throw PolyglotError(.conflict, "simulated failure", fix: "none needed")
            }
        } catch {
            let name = try await productDocs.get(product.id)?.json()["name"]?.stringValue ?? "?"
            say("  a failing transaction rolled back: \(product.id) is still '\(name)', counter still \(try await sessions.getString("orders:quickstart") ?? "-")")
        }

        heading("Bad input gets a clear error")
        do { _ = try await productDocs.query(.field("colour") == "red") } catch { say("  \(error)") }
        do { _ = try await productDocs.nearest(to: [1, 2, 3]) } catch { say("  \(error)") }
        do { _ = try db.vectors("products") } catch { say("  \(error)") }

        try await db.flushTelemetry()
        heading("Telemetry for this run (also persisted: `polyglot stats`)")
        print(TelemetryTable.render(db.telemetry.snapshot().entries))
    }
}

/// A terminal progress line: redrawn in place on a terminal, a few plain lines otherwise.
struct Progress {
    let label: String
    let total: Int
    let tty = isatty(STDOUT_FILENO) != 0
    var lastQuarter = -1
    let started = ContinuousClock.now

    init(_ label: String, total: Int) { self.label = label; self.total = max(1, total) }

    mutating func advance(to done: Int) {
        let fraction = Double(done) / Double(total)
        if tty {
            let filled = Int(fraction * 30)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
            FileHandle.standardOutput.write(Data("\r  \(label.padding(toLength: 22, withPad: " ", startingAt: 0)) [\(bar)] \(done)/\(total)".utf8))
        } else {
            let quarter = Int(fraction * 4)
            if quarter > lastQuarter && done < total { print("  \(label): \(done)/\(total)"); lastQuarter = quarter }
        }
        if done >= total {
            if tty { FileHandle.standardOutput.write(Data("\r".utf8)) }
            print("  \(label): \(total) loaded in \(TelemetryTable.format(.now - started))")
        }
    }
}

enum Sparkline {
    static func render(_ values: [Double]) -> String {
        let bars = Array("▁▂▃▄▅▆▇█")
        guard let max = values.max(), max > 0 else { return "" }
        return String(values.map { bars[min(bars.count - 1, Int($0 / max * Double(bars.count - 1)))] })
    }
}
