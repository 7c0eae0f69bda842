import Foundation
import Logging
import Polyglot
import PolyglotSQLite
import PostgresNIO

/// pgvector HNSW (postgres engine) vs the embedded HNSW index (sqlite engine, PolyglotVectorIndex): the same seeded
/// vectors and queries, the same HNSW settings (L2, m = 16, ef_construction = 64), loaded through the same facade
/// call. Recall@10 is against each query's exact answer (`exact: true`, a full scan on the postgres engine).
func vectorBenchmark(_ o: BenchOptions, _ db: Polyglot, _ raw: PostgresClient, registry: EngineRegistry, logger: Logger) async throws {
    let n = o.vectors, dim = 128, k = 10, batch = 1000
    print("\n== vectors: \(n) x \(dim) random (seed 7), L2, HNSW m=16 ef_construction=64, \(o.queries) queries, k=\(k), one client, load in upserts of \(batch)")
    var rng = SeededRandom(seed: 7)
    let data = (0..<n).map { _ in (0..<dim).map { _ in rng.nextFloat() } }
    let queries = (0..<o.queries).map { _ in (0..<dim).map { _ in rng.nextFloat() } }

    let dir = NSTemporaryDirectory() + "polyglot-pgbench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let embedded = try await Polyglot(map: DataMap(engines: [EngineSpec(name: "local", kind: "sqlite", path: dir + "/v.sqlite")],
                                                   datasets: [DatasetSpec(name: "vecs", model: .vectors, engine: "local", dimension: dim, metric: .l2,
                                                                          index: VectorIndexSpec(m: 16, efConstruction: 64, efSearch: 40))]),
                                      registry: registry, logger: logger)
    let sides: [(name: String, store: VectorCollection)] = [("pgvector", try db.vectors("vecs")), ("embedded", try embedded.vectors("vecs"))]

    // Load: the index is built as the vectors arrive on both sides (pgvector's HNSW index exists from schema creation;
    // the embedded index is updated after each commit).
    var builds: [String: Double] = [:]
    for side in sides {
        let start = ContinuousClock.now
        for b in stride(from: 0, to: n, by: batch) {
            try await side.store.upsert((b..<min(n, b + batch)).map { VectorRecord(id: "v\($0)", vector: data[$0]) })
        }
        builds[side.name] = (ContinuousClock.now - start).seconds
        print("   \(side.name): loaded and indexed in \(fmt(builds[side.name]!, 1)) s (load average \(loadAverage()))")
    }

    // Ground truth: exact search on the postgres engine; the embedded engine's exact search is checked against it.
    let exactStart = ContinuousClock.now
    var truth: [Set<String>] = []
    for q in queries { truth.append(Set(try await sides[0].store.nearest(to: q, k: k, exact: true).map(\.id))) }
    let exactQPS = Double(queries.count) / (ContinuousClock.now - exactStart).seconds
    var agree = 0
    let checked = min(20, queries.count)
    let embExactStart = ContinuousClock.now
    for i in 0..<checked { agree += try await sides[1].store.nearest(to: queries[i], k: k, exact: true).filter { truth[i].contains($0.id) }.count }
    let embExactQPS = Double(checked) / (ContinuousClock.now - embExactStart).seconds
    print("   exact (full scan): pgvector \(fmt(exactQPS, 1)) QPS; embedded \(fmt(embExactQPS, 1)) QPS, agrees with pgvector's exact top-\(k) on \(agree)/\(checked * k)")

    print("   engine     load+build s   ef    recall@10   QPS      p50 ms   p99 ms")
    var table: [(String, Int, Double, Double, Double, Double)] = []
    for ef in o.efs {
        for side in sides {
            for q in queries.prefix(10) { _ = try await side.store.nearest(to: q, k: k, ef: ef) }  // warm
            var found = 0
            var latencies: [Double] = []
            latencies.reserveCapacity(queries.count)
            let start = ContinuousClock.now
            for (i, q) in queries.enumerated() {
                let t = ContinuousClock.now
                let hits = try await side.store.nearest(to: q, k: k, ef: ef)
                latencies.append((ContinuousClock.now - t).seconds * 1000)
                found += hits.filter { truth[i].contains($0.id) }.count
            }
            let qps = Double(queries.count) / (ContinuousClock.now - start).seconds
            latencies.sort()
            let p50 = latencies[latencies.count / 2], p99 = latencies[min(latencies.count - 1, latencies.count * 99 / 100)]
            let recall = Double(found) / Double(k * queries.count)
            table.append((side.name, ef, recall, qps, p50, p99))
            print("   \(pad(side.name, 10)) \(lpad(fmt(builds[side.name]!, 1), 12))   \(lpad(String(ef), 4))   \(lpad(fmt(recall, 3), 9))   \(lpad(fmt(qps), 6))   \(lpad(fmt(p50, 2), 6))   \(lpad(fmt(p99, 2), 6))")
        }
    }
    try await embedded.close()

    // For reference: pgvector's bulk build of the same index over the loaded table (raw SQL, not a Polyglot call).
    let index = try await raw.query("SELECT indexname FROM pg_indexes WHERE schemaname = \(benchSchema) AND indexdef ILIKE '%USING hnsw%'").collect()
        .first?.decode(String.self)
    if let index {
        let start = ContinuousClock.now
        try await raw.withConnection { c in
            _ = try await c.query("SET maintenance_work_mem = '1GB'", logger: c.logger)
            _ = try await c.query("REINDEX INDEX \(unescaped: benchSchema).\(unescaped: index)", logger: c.logger)
        }
        print("   reference: pgvector bulk build of the same index over the loaded table (REINDEX, maintenance_work_mem 1GB, server's default parallel workers): \(fmt((ContinuousClock.now - start).seconds, 1)) s")
    }
}
