// Cache benchmarks (issue 5): (a) the read-through hit path against a raw GET of the same bytes through the same
// client; (b) the effect of the Redis cache on the p99 read latency of a hot-key (Zipf) document workload on
// PostgreSQL. Run by main.swift (scripts/redis-bench; `--only cache` runs only these).
//
// Own flags (others are ignored): --cache-quick, --cache-rounds R, --cache-ops N, --cache-docs N, --cache-zipf S,
// --cache-readers N, --cache-doc-bytes N, --cache-effect-ops N, --url/--redis-url URL, --pg-url URL. `--quick` also shortens these.
import Foundation
import PolyglotTesting
import Logging
import Polyglot
import PolyglotPostgres
import PolyglotRedis
import PolyglotSQLite

func runCacheBenchmarks(arguments: [String]) async throws {
    let options = CacheBench.Options(arguments)
    print("\n## Cache benchmarks (PolyglotRedis engine)\n")
    guard let redisURL = options.redisURL else {
        print("skipped: no Redis server (set POLYGLOT_BENCH_REDIS_URL or start scripts/services/up redis)")
        return
    }
    try await CacheBench.hitPath(options, redisURL: redisURL)
    if let pg = options.pgURL {
        try await CacheBench.effect(options, redisURL: redisURL, pgURL: pg)
    } else {
        print("\n(b) skipped: no PostgreSQL server (set POLYGLOT_BENCH_PG_URL or start scripts/services/up postgres)")
    }
}

enum CacheBench {
    struct Options {
        var rounds = 7
        var ops = 20_000
        var docs = 10_000
        var zipf = 1.1
        var readers = 16
        var docBytes = 1024
        var effectOps = 100_000
        var redisURL: String?
        var pgURL: String?

        init(_ args: [String]) {
            var i = 1
            func next() -> String? { i += 1; return i < args.count ? args[i] : nil }
            var quick = false
            while i < args.count {
                switch args[i] {
                case "--quick", "--cache-quick": quick = true
                case "--cache-rounds": rounds = next().flatMap { Int($0) }.map { max(1, $0) } ?? rounds
                case "--cache-ops": ops = next().flatMap { Int($0) }.map { max(100, $0) } ?? ops
                case "--cache-effect-ops": effectOps = next().flatMap { Int($0) }.map { max(1000, $0) } ?? effectOps
                case "--cache-docs": docs = next().flatMap { Int($0) }.map { max(10, $0) } ?? docs
                case "--cache-zipf": zipf = next().flatMap { Double($0) } ?? zipf
                case "--cache-readers": readers = next().flatMap { Int($0) }.map { max(1, $0) } ?? readers
                case "--cache-doc-bytes": docBytes = next().flatMap { Int($0) }.map { max(16, $0) } ?? docBytes
                case "--redis-url", "--url": redisURL = next()
                case "--pg-url": pgURL = next()
                default: break
                }
                i += 1
            }
            if quick { rounds = 3; ops = 5_000; effectOps = 20_000; docs = 2_000 }
            if redisURL == nil { redisURL = TestServers.first(["POLYGLOT_BENCH_REDIS_URL", "POLYGLOT_TEST_REDIS_URL"]) }
            if pgURL == nil { pgURL = TestServers.first(["POLYGLOT_BENCH_PG_URL", "POLYGLOT_TEST_PG18_URL", "POLYGLOT_TEST_PG15_URL"]) }
        }
    }

    static var registry: EngineRegistry {
        var r = EngineRegistry.embedded
        r.registerRedis()
        r.registerPostgres()
        return r
    }

    static func nanoseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let i = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
        return sorted[i]
    }

    static func median(_ xs: [Double]) -> Double { percentile(xs.sorted(), 50) }

    static func micros(_ ns: Double) -> String { String(format: "%.1f µs", ns / 1000) }

    static func document(_ i: Int, bytes: Int) -> JSON {
        let filler = String(repeating: "x", count: max(0, bytes - 80))
        return ["name": .string("item \(i)"), "price": .number(Double(i % 500)), "category": .string("c\(i % 20)"), "pad": .string(filler)]
    }

    // MARK: (a) hit path

    /// Polyglot read-through hits vs raw GETs of the cache entry's bytes through the engine's own client: one task
    /// (latency) and `readers` tasks (throughput), in alternating rounds; medians over rounds.
    static func hitPath(_ o: Options, redisURL: String) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("redis-cache-bench-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let prefix = "bench" + UUID().uuidString.prefix(8).lowercased() + ":"
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: folder.appendingPathComponent("db.sqlite").path),
                                    EngineSpec(name: "cache", kind: "redis", url: redisURL, options: ["keyPrefix": prefix, "poolSize": "4"])],
                          datasets: [DatasetSpec(name: "docs", model: .documents, engine: "primary",
                                                 projections: [.cache(on: "cache", ttl: .seconds(3600))])])
        var quiet = Logger(label: "bench")
        quiet.logLevel = .error
        let db = try await Polyglot(map: map, registry: registry, logger: quiet)
        defer { Task { try? await db.close() } }
        guard let redis = try db.engine("cache") as? RedisEngine else { return }
        let docs = try db.documents("docs")
        try await docs.put("hot", document(1, bytes: o.docBytes))
        guard let doc = try await docs.get("hot") else { return }
        let entryKey = prefix + "c:doc\u{1F}docs\u{1F}hot"
        guard let entryBytes = try await redis.client.send("STRLEN", entryKey).int, entryBytes > doc.data.count else {
            print("(a) the cache entry is missing; cannot compare")
            return
        }
        let client = redis.client
        // Warm both paths.
        for _ in 0..<2000 { _ = try await docs.get("hot"); _ = try await client.get(entryKey) }

        var rawSeq: [Double] = [], hitSeq: [Double] = [], rawP50: [Double] = [], hitP50: [Double] = []
        var rawPar: [Double] = [], hitPar: [Double] = []
        let n = o.ops
        for _ in 0..<o.rounds {
            // One task: per-call latency, the two paths interleaved call by call so both see the same machine.
            var rawLat: [Double] = [], hitLat: [Double] = []
            rawLat.reserveCapacity(n)
            hitLat.reserveCapacity(n)
            for _ in 0..<n {
                var s = ContinuousClock.now
                _ = try await client.get(entryKey)
                var e = ContinuousClock.now
                rawLat.append(nanoseconds(e - s))
                s = e
                _ = try await docs.get("hot")
                e = ContinuousClock.now
                hitLat.append(nanoseconds(e - s))
            }
            rawSeq.append(rawLat.reduce(0, +) / Double(n))
            hitSeq.append(hitLat.reduce(0, +) / Double(n))
            rawP50.append(median(rawLat))
            hitP50.append(median(hitLat))
            // Many tasks: throughput (automatic pipelining on the pool's connections).
            rawPar.append(try await throughput(tasks: o.readers, ops: n) { _ = try await client.get(entryKey) })
            hitPar.append(try await throughput(tasks: o.readers, ops: n) { _ = try await docs.get("hot") })
        }
        let stats = db.telemetry.snapshot().caches["cache"] ?? CacheStats()
        print("(a) cache hit path: \(doc.data.count)-byte document, cache entry \(entryBytes) bytes; \(o.rounds) rounds × \(n) reads each; medians over rounds")
        print("")
        print("| measure | raw GET (PolyglotRedis client) | Polyglot read-through hit | ratio (hit / raw) |")
        print("|---|---|---|---|")
        let ms = median(rawSeq), hs = median(hitSeq), mp = median(rawP50), hp = median(hitP50)
        print("| 1 task (calls interleaved), mean per read | \(micros(ms)) | \(micros(hs)) | \(String(format: "%.2f×", hs / ms)) |")
        print("| 1 task (calls interleaved), p50 per read | \(micros(mp)) | \(micros(hp)) | \(String(format: "%.2f×", hp / mp)) |")
        let rt = median(rawPar), ht = median(hitPar)
        print("| \(o.readers) tasks, reads/s | \(Int(rt)) | \(Int(ht)) | \(String(format: "%.2f×", rt / ht)) (time per read) |")
        print("")
        print("hit rate during the run: \(String(format: "%.4f", stats.hitRate ?? 0)) (\(stats.hits) hits, \(stats.misses) misses)")
        _ = try? await client.send("UNLINK", entryKey)
    }

    /// Reads per second of `tasks` concurrent loops sharing `ops` calls.
    static func throughput(tasks: Int, ops: Int, _ body: @escaping @Sendable () async throws -> Void) async throws -> Double {
        let each = max(1, ops / tasks)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask { for _ in 0..<each { try await body() } }
            }
            try await group.waitForAll()
        }
        return Double(each * tasks) / (nanoseconds(ContinuousClock.now - start) / 1e9)
    }

    // MARK: (b) effect of the cache

    /// Zipf-distributed ids over `n` documents (rank 1 is the hottest).
    struct Zipf {
        let cdf: [Double]
        init(n: Int, s: Double) {
            var acc = 0.0
            var c: [Double] = []
            c.reserveCapacity(n)
            for k in 1...n { acc += 1 / pow(Double(k), s); c.append(acc) }
            cdf = c.map { $0 / acc }
        }
        func sample(_ rng: inout SeededRandom) -> Int {
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            var lo = 0, hi = cdf.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
    }

    /// The same Zipf read workload (with 1% writes) on PostgreSQL alone and with the Redis cache in front; read
    /// latencies per call, p50/p99 and the hit rate.
    static func effect(_ o: Options, redisURL: String, pgURL: String) async throws {
        let schema = "bench_cache_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
        let pg = EngineSpec(name: "primary", kind: "postgres", url: pgURL, options: ["schema": schema, "poolSize": "20"])
        let prefix = "bench" + UUID().uuidString.prefix(8).lowercased() + ":"
        let cacheSpec = EngineSpec(name: "cache", kind: "redis", url: redisURL, options: ["keyPrefix": prefix, "poolSize": "4"])
        var quiet = Logger(label: "bench")
        quiet.logLevel = .error
        let plain = try await Polyglot(map: DataMap(engines: [pg], datasets: [DatasetSpec(name: "docs", model: .documents, engine: "primary")]),
                                       registry: registry, logger: quiet)
        let cached = try await Polyglot(map: DataMap(engines: [pg, cacheSpec], datasets: [
            DatasetSpec(name: "docs", model: .documents, engine: "primary", projections: [.cache(on: "cache", ttl: .seconds(300), jitter: 0.1)]),
        ]), registry: registry, logger: quiet)
        defer {
            Task {
                _ = try? await plain.sql(on: "primary", "DROP SCHEMA \(schema) CASCADE")
                try? await plain.close()
                try? await cached.close()
            }
        }
        // Load.
        let docs = try plain.documents("docs")
        var batch: [(id: String, body: JSON)] = []
        for i in 0..<o.docs {
            batch.append(("d\(i)", document(i, bytes: o.docBytes)))
            if batch.count == 500 { try await docs.putMany(batch); batch.removeAll() }
        }
        if !batch.isEmpty { try await docs.putMany(batch) }
        let zipf = Zipf(n: o.docs, s: o.zipf)

        func run(_ db: Polyglot, seed: UInt64, ops: Int) async throws -> [Double] {
            let collection = try db.documents("docs")
            let perTask = ops / o.readers
            return try await withThrowingTaskGroup(of: [Double].self) { group in
                for t in 0..<o.readers {
                    group.addTask {
                        var rng = SeededRandom(seed: seed &+ UInt64(t) &* 7919)
                        var lat: [Double] = []
                        lat.reserveCapacity(perTask)
                        for _ in 0..<perTask {
                            let id = "d\(zipf.sample(&rng))"
                            if rng.next() % 100 == 0 {
                                try await collection.put(id, document(Int(rng.next() % 1000), bytes: o.docBytes))
                                continue
                            }
                            let s = ContinuousClock.now
                            _ = try await collection.get(id)
                            lat.append(nanoseconds(ContinuousClock.now - s))
                        }
                        return lat
                    }
                }
                var all: [Double] = []
                for try await l in group { all += l }
                return all.sorted()
            }
        }
        // Warm both (connections, the cache's hot set), then measure alternately.
        _ = try await run(plain, seed: 1, ops: o.effectOps / 5)
        _ = try await run(cached, seed: 1, ops: o.effectOps / 5)
        let before = cached.telemetry.snapshot().caches["cache"] ?? CacheStats()
        let a = try await run(plain, seed: 42, ops: o.effectOps)
        let b = try await run(cached, seed: 42, ops: o.effectOps)
        let after = cached.telemetry.snapshot().caches["cache"] ?? CacheStats()
        let hits = after.hits - before.hits, misses = after.misses - before.misses
        let hitRate = Double(hits) / Double(max(1, hits + misses))
        print("\n(b) effect of the cache: \(o.docs) documents of ~\(o.docBytes) bytes on PostgreSQL, Zipf s=\(o.zipf), \(o.readers) concurrent readers, \(o.effectOps) operations (1% writes, which invalidate), same seed for both runs\n")
        print("| setup | reads | p50 | p99 | p99.9 |")
        print("|---|---|---|---|---|")
        print("| PostgreSQL alone | \(a.count) | \(micros(percentile(a, 50))) | \(micros(percentile(a, 99))) | \(micros(percentile(a, 99.9))) |")
        print("| PostgreSQL + Redis cache | \(b.count) | \(micros(percentile(b, 50))) | \(micros(percentile(b, 99))) | \(micros(percentile(b, 99.9))) |")
        print("")
        print("p99 ratio (cached / alone): \(String(format: "%.2f", percentile(b, 99) / percentile(a, 99))); p50 ratio: \(String(format: "%.2f", percentile(b, 50) / percentile(a, 50))); hit rate \(String(format: "%.1f%%", hitRate * 100)) (\(hits) hits, \(misses) misses); latency saved by hits (engine estimate): \(String(format: "%.2f s", Double(after.latencySavedNanoseconds - before.latencySavedNanoseconds) / 1e9))")
    }
}
