// PostgresBenchmarks: the postgres engine against the raw postgres-nio driver and pgvector against the embedded
// HNSW index, on the same server and data, in the same run.
//
//     scripts/postgres-bench                       # builds in release, finds the test server, runs everything
//     swift run -c release PostgresBenchmarks --url postgres://postgres@127.0.0.1:5432/postgres [--only get|bulk|vectors]
//         [--docs N] [--seconds S] [--rounds R] [--vectors N] [--queries Q]
//
// The URL comes from --url, else POLYGLOT_BENCH_PG_URL, else POLYGLOT_TEST_PG18_URL (from the environment or
// .services/env, as written by scripts/services/up). It must be a PostgreSQL with pgvector for the vector part.
// Everything is created in the schema `polyglot_bench`, dropped first.
import Foundation
import Logging
import Polyglot
import PolyglotPostgres
import PolyglotSQLite
import PostgresNIO

struct Options {
    var url = ""
    var only: String?
    var docs = 10_000
    var bulkDocs = 100_000
    var seconds = 2.0
    var rounds = 5
    var vectors = 100_000
    var queries = 200

    init(_ args: [String]) throws {
        var i = 1
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw BenchError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--url": url = try value()
            case "--only": only = try value()
            case "--docs": docs = Int(try value()) ?? docs
            case "--bulk": bulkDocs = Int(try value()) ?? bulkDocs
            case "--seconds": seconds = Double(try value()) ?? seconds
            case "--rounds": rounds = Int(try value()) ?? rounds
            case "--vectors": vectors = Int(try value()) ?? vectors
            case "--queries": queries = Int(try value()) ?? queries
            default: throw BenchError("unknown argument \(args[i])")
            }
            i += 1
        }
        if url.isEmpty { url = ProcessInfo.processInfo.environment["POLYGLOT_BENCH_PG_URL"] ?? "" }
        if url.isEmpty { url = ProcessInfo.processInfo.environment["POLYGLOT_TEST_PG18_URL"] ?? "" }
        if url.isEmpty, let text = try? String(contentsOfFile: ".services/env", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.contains("POLYGLOT_TEST_PG18_URL=") {
                url = String(line.split(separator: "=", maxSplits: 1)[1])
            }
        }
        if url.isEmpty { throw BenchError("no server: pass --url, or start one with scripts/services/up postgres") }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

let schema = "polyglot_bench"

/// The raw side: a prepared statement on postgres-nio's pool, decoding the same two columns.
struct GetDocument: PostgresPreparedStatement {
    static let sql = "SELECT version, body FROM polyglot_bench.docs WHERE id = $1"
    typealias Row = (Int64, ByteBuffer)
    var id: String
    func makeBindings() -> PostgresBindings {
        var b = PostgresBindings()
        b.append(id)
        return b
    }
    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// The raw side builds the same `Document` the facade returns, from the same bytes.
@inline(never)
func rawGet(_ client: PostgresClient, _ id: String) async throws {
    for try await (version, body) in try await client.execute(GetDocument(id: id)) {
        let doc = Document(id: id, version: version, data: Data(body.readableBytesView.dropFirst()))
        if doc.data.isEmpty { throw BenchError("empty document") }
    }
}

func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }
func fmt(_ x: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", x) }

/// Runs `op` from `tasks` concurrent tasks for `seconds`; returns operations per second.
func throughput(tasks: Int, seconds: Double, keys: Int, _ op: @escaping @Sendable (String) async throws -> Void) async throws -> Double {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    let start = ContinuousClock.now
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for t in 0..<tasks {
            group.addTask {
                var n = 0
                var k = t * 7919
                while ContinuousClock.now < deadline {
                    for _ in 0..<16 {
                        k = (k &+ 104_729) % keys
                        try await op("d\(k)")
                        n += 1
                    }
                }
                return n
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    return Double(total) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

func document(_ i: Int) -> JSON {
    ["name": .string("Product \(i)"), "price": .number(Double(i % 500) + 0.99), "category": .string(["shoes", "hats", "bags", "coats"][i % 4]),
     "tags": ["sale", .string("t\(i % 17)")], "stock": .number(Double(i % 100))]
}

@main
struct PostgresBenchmarks {
    static func main() async throws {
        let o = try Options(CommandLine.arguments)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        var registry = EngineRegistry.embedded
        registry.registerPostgres()
        let u = URLComponents(string: o.url)!
        print("PostgreSQL benchmarks against \(u.host ?? ""):\(u.port ?? 5432) — \(ProcessInfo.processInfo.activeProcessorCount) cores")

        // Raw client, and a fresh schema.
        var config = PostgresClient.Configuration(host: u.host ?? "127.0.0.1", port: u.port ?? 5432, username: u.user ?? "postgres",
                                                  password: u.password, database: u.path.count > 1 ? String(u.path.dropFirst()) : nil, tls: .disable)
        config.options.maximumConnections = 20
        let raw = PostgresClient(configuration: config)
        let rawTask = Task { await raw.run() }
        defer { rawTask.cancel() }
        try await raw.query("DROP SCHEMA IF EXISTS polyglot_bench CASCADE")
        let version = try await raw.query("SHOW server_version").collect().first?.decode(String.self) ?? "?"
        print("server \(version)")

        let engine = EngineSpec(name: "pg", kind: "postgres", url: o.url, options: ["schema": schema, "poolSize": "20"])
        let withVectors = o.only == nil || o.only == "vectors"
        var datasets = [DatasetSpec(name: "docs", model: .documents, engine: "pg", fields: [FieldSpec("price", .number), FieldSpec("category", .string)])]
        if withVectors {
            datasets.append(DatasetSpec(name: "vecs", model: .vectors, engine: "pg", dimension: 128, metric: .l2,
                                        index: VectorIndexSpec(m: 16, efConstruction: 64, efSearch: 40)))
        }
        let db = try await Polyglot(map: DataMap(engines: [engine], datasets: datasets), registry: registry, logger: logger)
        let docs = try db.documents("docs")

        if o.only == nil || o.only == "bulk" || o.only == "get" {
            // Bulk load (also the data for the get benchmark).
            let count = o.only == "get" ? o.docs : max(o.bulkDocs, o.docs)
            let batch = 1000
            let start = ContinuousClock.now
            for b in stride(from: 0, to: count, by: batch) {
                try await docs.putMany((b..<min(count, b + batch)).map { (id: "d\($0)", body: document($0)) })
            }
            let elapsed = ContinuousClock.now - start
            let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("\nbulk load: \(count) documents in batches of \(batch): \(fmt(secs, 2)) s = \(fmt(Double(count) / secs)) docs/s (target ≥ 50,000)")
        }

        if o.only == nil || o.only == "get" {
            print("\nget by id: Polyglot facade vs raw postgres-nio prepared statement, \(o.docs) ids, \(o.rounds) rounds × \(fmt(o.seconds, 1)) s per side")
            print("tasks   raw ops/s   polyglot ops/s   ratio (median of rounds)")
            for tasks in [1, 16] {
                var ratios: [Double] = [], raws: [Double] = [], polys: [Double] = []
                // Warm both sides.
                _ = try await throughput(tasks: tasks, seconds: 0.3, keys: o.docs) { id in try await rawGet(raw, id) }
                _ = try await throughput(tasks: tasks, seconds: 0.3, keys: o.docs) { id in _ = try await docs.get(id) }
                for round in 0..<o.rounds {
                    // Alternate which side goes first, so drift in machine load hits both.
                    var r = 0.0, p = 0.0
                    if round % 2 == 0 {
                        r = try await throughput(tasks: tasks, seconds: o.seconds, keys: o.docs) { id in try await rawGet(raw, id) }
                        p = try await throughput(tasks: tasks, seconds: o.seconds, keys: o.docs) { id in _ = try await docs.get(id) }
                    } else {
                        p = try await throughput(tasks: tasks, seconds: o.seconds, keys: o.docs) { id in _ = try await docs.get(id) }
                        r = try await throughput(tasks: tasks, seconds: o.seconds, keys: o.docs) { id in try await rawGet(raw, id) }
                    }
                    raws.append(r); polys.append(p); ratios.append(p / r)
                }
                print("\(String(repeating: " ", count: 5 - String(tasks).count))\(tasks)   \(fmt(median(raws)).padding(toLength: 11, withPad: " ", startingAt: 0)) \(fmt(median(polys)).padding(toLength: 16, withPad: " ", startingAt: 0)) \(fmt(median(ratios), 3))   (rounds: \(ratios.map { fmt($0, 2) }.joined(separator: " ")); target ≥ 0.9)")
            }
        }

        if withVectors { try await vectorBenchmark(o, db: db, registry: registry, logger: logger) }
        try await db.close()
        try await raw.query("DROP SCHEMA IF EXISTS polyglot_bench CASCADE")
    }

    /// pgvector HNSW vs the embedded HNSW index (sqlite engine), same vectors, same queries, same HNSW settings.
    static func vectorBenchmark(_ o: Options, db: Polyglot, registry: EngineRegistry, logger: Logger) async throws {
        let n = o.vectors, dim = 128
        print("\nvectors: \(n) × \(dim), L2, HNSW m=16 ef_construction=64, \(o.queries) queries, k=10, single client")
        var rng = SeededRandom(seed: 7)
        let data = (0..<n).map { _ in (0..<dim).map { _ in rng.nextFloat() } }
        let queries = (0..<o.queries).map { _ in (0..<dim).map { _ in rng.nextFloat() } }
        // Exact answers, computed here once.
        let truth: [Set<Int>] = queries.map { q in
            Set(data.indices.map { ($0, VectorMath.distance(q, data[$0], metric: .l2)) }.sorted { $0.1 < $1.1 }.prefix(10).map(\.0))
        }
        let dir = NSTemporaryDirectory() + "polyglot-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let embedded = try await Polyglot(map: DataMap(engines: [EngineSpec(name: "local", kind: "sqlite", path: dir + "/v.sqlite")],
                                                       datasets: [DatasetSpec(name: "vecs", model: .vectors, engine: "local", dimension: dim, metric: .l2,
                                                                              index: VectorIndexSpec(m: 16, efConstruction: 64, efSearch: 40))]),
                                          registry: registry, logger: logger)
        var rows: [(String, Double, [(Int, Double, Double)])] = []
        for (name, store) in [("pgvector", try db.vectors("vecs")), ("embedded", try embedded.vectors("vecs"))] {
            let start = ContinuousClock.now
            for b in stride(from: 0, to: n, by: 2000) {
                try await store.upsert((b..<min(n, b + 2000)).map { VectorRecord(id: "v\($0)", vector: data[$0]) })
            }
            let build = ContinuousClock.now - start
            let buildSecs = Double(build.components.seconds) + Double(build.components.attoseconds) / 1e18
            var results: [(Int, Double, Double)] = []
            for ef in [40, 100, 200] {
                _ = try await store.nearest(to: queries[0], k: 10, ef: ef)
                var found = 0
                let qs = ContinuousClock.now
                for (i, q) in queries.enumerated() {
                    let hits = try await store.nearest(to: q, k: 10, ef: ef)
                    found += hits.filter { truth[i].contains(Int($0.id.dropFirst())!) }.count
                }
                let e = ContinuousClock.now - qs
                let secs = Double(e.components.seconds) + Double(e.components.attoseconds) / 1e18
                results.append((ef, Double(found) / Double(10 * queries.count), Double(queries.count) / secs))
            }
            rows.append((name, buildSecs, results))
        }
        print("engine     load+build s   ef   recall@10   QPS")
        for (name, build, results) in rows {
            for (ef, recall, qps) in results {
                print("\(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(fmt(build, 1).padding(toLength: 14, withPad: " ", startingAt: 0)) \(String(ef).padding(toLength: 4, withPad: " ", startingAt: 0)) \(fmt(recall, 3).padding(toLength: 11, withPad: " ", startingAt: 0)) \(fmt(qps))")
            }
        }
        try await embedded.close()
    }
}
