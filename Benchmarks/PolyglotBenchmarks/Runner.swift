import Foundation
import Polyglot
import PolyglotSQLite

struct TableRow {
    var benchmark: String
    var polyglot: String
    var peer: String
    var ratio: String
    var target: String
    var met: String
}

func machineDescription() -> String {
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
        .map { $0.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
    return "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(model)"
}

/// The 1-, 5- and 15-minute load averages: other work on the machine skews every figure.
func loadAverage() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
}

/// Runs the selected benchmarks against one data map in a temporary folder and prints the results.
/// Not isolated to the main actor: Polyglot's async calls then run without an executor hop per call,
/// as they would in a server's request handler.
func runBenchmarks(_ cfg: BenchConfig) async throws {
    #if DEBUG
    print("WARNING: this is a debug build; run `swift run -c release PolyglotBenchmarks` for meaningful numbers.")
    #endif
    print("Polyglot benchmarks\(cfg.quick ? " (--quick)" : ""): \(machineDescription()), \(Date()), load average \(loadAverage())"
    + (cfg.readers.map { ", sqlite readers: \($0)" } ?? ""))

    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("polyglot-bench-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/bench.sqlite"

    var datasets = [
        DatasetSpec(name: "products", model: .documents, engine: "primary"),
        DatasetSpec(name: "cached", model: .documents, engine: "primary", projections: [.cache(on: "cache")]),
    ]
    for round in 0..<cfg.bulkRounds { datasets.append(DatasetSpec(name: "bulk_\(round)", model: .documents, engine: "primary")) }
    var sqlite = EngineSpec.sqlite(path: path)
    if let readers = cfg.readers { sqlite.options["readers"] = String(readers) }
    let map = DataMap(engines: [sqlite, .memory()], datasets: datasets)
    let db = try await Polyglot(map: map, registry: .embedded)

    let ids = (0..<cfg.documents).map { String(format: "p%06d", $0) }
    var rows: [TableRow] = []

    if cfg.runs("get") {
        let typed = try db.documents("products", as: Product.self)
        for start in stride(from: 0, to: ids.count, by: 1000) {
            try await typed.putMany((start..<min(start + 1000, ids.count)).map { (ids[$0], Product.make($0, id: ids[$0])) })
        }
        let rawConn = try RawSQLite(path: path)
        let bench = GetBenchmark(cfg: cfg, typed: typed, untyped: try db.documents("products"),
                                 raw: try RawGetByID(rawConn, table: "products"), ids: ids)
        if let only = cfg.only, only != "get" {
            try await bench.profileOnly(only)
            try await db.close()
            return
        }
        print("\n## 1. Document get-by-id (\(cfg.documents) documents, \(cfg.getOps) random lookups per side in \(cfg.rounds) alternating rounds, batches of \(cfg.batch))")
        print("  per round: median µs/op, Polyglot vs raw")
        let r = try await bench.run()
        let pt = Stats.median(r.polyTyped), rt = Stats.median(r.rawTyped)
        let pb = Stats.median(r.polyBytes), rb = Stats.median(r.rawBytes)
        print("  typed (JSONDecoder → Product): Polyglot \(Format.micros(pt)), raw \(Format.micros(rt)), ratio \(Format.fixed(pt / rt, 2))"
            + "  [means \(Format.micros(Stats.mean(r.polyTyped))) / \(Format.micros(Stats.mean(r.rawTyped)))]")
        print("  untyped (bytes):               Polyglot \(Format.micros(pb)), raw \(Format.micros(rb)), ratio \(Format.fixed(pb / rb, 2))"
            + "  [means \(Format.micros(Stats.mean(r.polyBytes))) / \(Format.micros(Stats.mean(r.rawBytes)))]")
        print("  sub-steps (µs/op, same ids):")
        for (name, ns) in try GetBreakdown(cfg: cfg, raw: bench.raw, ids: ids).run() {
            print("    \(name): \(Format.micros(ns))")
        }
        rows.append(TableRow(benchmark: "get by id, typed (`as: Product.self`, JSONDecoder)", polyglot: Format.micros(pt) + "/op",
                             peer: Format.micros(rt) + "/op", ratio: Format.fixed(pt / rt, 2), target: "ratio ≤ 1.3",
                             met: pt / rt <= 1.3 ? "yes" : "no"))
        rows.append(TableRow(benchmark: "get by id, untyped (`Document` vs step + copy bytes)", polyglot: Format.micros(pb) + "/op",
                             peer: Format.micros(rb) + "/op", ratio: Format.fixed(pb / rb, 2), target: "—", met: "—"))
    }

    if cfg.runs("bulk") {
        print("\n## 2. Bulk insert (\(cfg.bulkDocs) documents per side per round, \(cfg.bulkBatch) per batch/transaction, \(cfg.bulkRounds) rounds)")
        let rawConn = try RawSQLite(path: path)
        let r = try await BulkBenchmark(cfg: cfg, db: db, raw: rawConn).run()
        let p = Stats.median(r.poly), q = Stats.median(r.raw), s = Stats.median(r.rawSameWork)
        print("  median: Polyglot \(Format.rate(p)), raw \(Format.rate(q)) (ratio \(Format.fixed(p / q, 2))), "
            + "raw same work \(Format.rate(s)) (ratio \(Format.fixed(p / s, 2)))")
        rows.append(TableRow(benchmark: "bulk insert, `putMany` × \(cfg.bulkBatch) (typed)", polyglot: Format.rate(p),
                             peer: Format.rate(q), ratio: Format.fixed(p / q, 2) + " of raw", target: "≥ 50,000 docs/s",
                             met: p >= 50_000 ? "yes" : "no"))
        rows.append(TableRow(benchmark: "bulk insert vs raw doing the same work (outbox row + upsert)", polyglot: Format.rate(p),
                             peer: Format.rate(s), ratio: Format.fixed(p / s, 2) + " of raw", target: "—", met: "—"))
    }

    if cfg.runs("cache") {
        print("\n## 3. Cache hit (\(cfg.documents) documents cached, \(cfg.cacheOps) random hits per side in \(cfg.rounds) alternating rounds, batches of \(cfg.batch))")
        let r = try await CacheBenchmark(cfg: cfg, db: db, ids: ids).run()
        if let only = cfg.only, only != "cache" { try await db.close(); return }
        let fm = Stats.median(r.facade), f99 = Stats.percentile(r.facade, 99)
        let lm = Stats.median(r.lookupNow), l99 = Stats.percentile(r.lookupNow, 99)
        let tm = Stats.median(r.typed), t99 = Stats.percentile(r.typed, 99)
        print("  facade get (untyped): median \(Format.micros(fm)), p99 \(Format.micros(f99)) (of \(r.facade.count) batch means)")
        print("  MemoryEngine.lookupNow: median \(Format.micros(lm)), p99 \(Format.micros(l99))")
        print("  facade get (typed, decodes): median \(Format.micros(tm)), p99 \(Format.micros(t99))")
        if let e = r.telemetryHit {
            print("  telemetry's own per-call cache.hit histogram: count \(e.stats.count), p50 \(Format.micros(Stats.nanoseconds(e.p50))), p99 \(Format.micros(Stats.nanoseconds(e.p99))) (times the lookup only, excluding the recording itself)")
        }
        print("  sub-steps (µs/op) of a facade hit besides lookupNow (plus 2 × ContinuousClock.now):")
        for (name, ns) in CacheBreakdown(cfg: cfg, db: db, ids: ids).run() { print("    \(name): \(Format.micros(ns))") }
        var rateText = "n/a"
        if let after = r.statsAfter, let before = r.statsBefore {
            let hits = after.hits - before.hits, misses = after.misses - before.misses
            let timed = Double(hits) / Double(max(hits + misses, 1))
            rateText = "\(Format.fixed(timed * 100, 2))% timed phase; \(Format.fixed((after.hitRate ?? 0) * 100, 2))% overall"
            print("  cache stats (engine `cache`): hits \(after.hits), misses \(after.misses), fills \(after.fills), entries \(after.entries); "
                + "hit rate over the timed phase \(Format.fixed(timed * 100, 2))% (\(hits) hits, \(misses) misses), "
                + "overall \(Format.fixed((after.hitRate ?? 0) * 100, 2))% (the misses are the first read of each id; "
                + "the counters also include the lookupNow reference calls, all hits)")
        }
        rows.append(TableRow(benchmark: "cache hit, facade `get` median (untyped)", polyglot: Format.micros(fm),
                             peer: Format.micros(lm) + " (`lookupNow`)", ratio: Format.fixed(fm / lm, 2), target: "≤ 1 µs",
                             met: fm <= 1000 ? "yes" : "no"))
        rows.append(TableRow(benchmark: "cache hit, facade `get` p99 of \(cfg.batch)-call batch means", polyglot: Format.micros(f99),
                             peer: Format.micros(l99) + " (`lookupNow`)", ratio: Format.fixed(f99 / l99, 2), target: "—", met: "—"))
        rows.append(TableRow(benchmark: "cache hit rate (`telemetry.snapshot().caches[\"cache\"]`)", polyglot: rateText,
                             peer: "—", ratio: "—", target: "—", met: "—"))
    }

    try await db.close()

    print("\nload average at the end: \(loadAverage())")
    print("\n## Results\(cfg.quick ? " (--quick: reduced counts)" : "")\n")
    print("| benchmark | Polyglot | raw peer | ratio (Polyglot/raw) | target | met |")
    print("|---|---|---|---|---|---|")
    for r in rows { print("| \(r.benchmark) | \(r.polyglot) | \(r.peer) | \(r.ratio) | \(r.target) | \(r.met) |") }
}
