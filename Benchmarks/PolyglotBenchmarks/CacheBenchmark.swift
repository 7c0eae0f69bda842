import Foundation
import Polyglot

/// Benchmark 3: in-process cache hits.
///
/// Dataset `cached` lives on sqlite with a `cache` projection on the `memory` engine. After every id has
/// been read twice (a miss that fills, then a hit), random ids are read through the facade, timed in
/// batches of `cfg.batch` calls with one clock read per batch. For reference, the same `MemoryEngine`
/// (from `db.cacheBackend(for:)`) is read with `lookupNow` under the same keys, the same way.
/// `db.documents("cached").get(id)` is untyped (returns `Document`); a typed line is printed for information.
struct CacheBenchmark {
    let cfg: BenchConfig
    let db: Polyglot
    let ids: [String]

    struct Result {
        var facade: [Double] = []
        var typed: [Double] = []
        var lookupNow: [Double] = []
        var statsBefore: CacheStats?
        var statsAfter: CacheStats?
        var telemetryHit: TelemetrySnapshot.Entry?
    }

    func facadeLoop(_ coll: DocumentCollection, _ seq: [Int]) async throws -> ([Double], Int) {
        var samples: [Double] = []
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let d = try await coll.get(ids[seq[k]]) else { fatalError("missing") }
                checksum &+= d.data.count
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        return (samples, checksum)
    }

    func typedLoop(_ coll: TypedDocumentCollection<Product>, _ seq: [Int]) async throws -> ([Double], Int) {
        var samples: [Double] = []
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let p = try await coll.get(ids[seq[k]]) else { fatalError("missing") }
                checksum &+= p.tags.count
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        return (samples, checksum)
    }

    func lookupLoop(_ engine: MemoryEngine, _ keys: [String], _ seq: [Int]) -> ([Double], Int) {
        var samples: [Double] = []
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let e = engine.lookupNow(keys[seq[k]]) else { fatalError("missing") }
                checksum &+= e.data.count
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        return (samples, checksum)
    }

    func run() async throws -> Result {
        let typed = try db.documents("cached", as: Product.self)
        let coll = try db.documents("cached")
        for start in stride(from: 0, to: ids.count, by: 1000) {
            try await typed.putMany((start..<min(start + 1000, ids.count)).map { (ids[$0], Product.make($0, id: ids[$0])) })
        }
        // Fill the cache (misses), then hit every entry once.
        var reference: [String: CachedEntry] = [:]
        for id in ids { _ = try await coll.get(id) }
        for id in ids {
            guard let d = try await coll.get(id) else { fatalError("missing \(id)") }
            reference[id] = CachedEntry(version: d.version, data: d.data)
        }

        // The memory engine behind the projection, read directly under the facade's keys (see ReadThroughCache.key).
        guard let engine = try db.cacheBackend(for: "cached") as? MemoryEngine else { fatalError("the cache backend is not a MemoryEngine") }
        let keys = ids.map { "doc\u{1F}cached\u{1F}\($0)" }
        for (id, key) in zip(ids, keys) {
            guard let e = engine.lookupNow(key), e == reference[id]! else { fatalError("lookupNow(\(key)) does not return the cached document") }
        }

        var rng = SplitMix64(seed: 5)
        let warm = (0..<cfg.getWarmup).map { _ in Int(rng.next() % UInt64(ids.count)) }
        _ = try await facadeLoop(coll, warm); _ = lookupLoop(engine, keys, warm); _ = try await typedLoop(typed, warm)

        if let only = cfg.only, only != "cache" {
            // One side alone, for `perf record`.
            let seq = (0..<cfg.cacheOps).map { _ in Int(rng.next() % UInt64(ids.count)) }
            switch only {
            case "cache-facade": print("\(only): median \(Format.micros(Stats.median(try await facadeLoop(coll, seq).0)))/op")
            case "cache-typed": print("\(only): median \(Format.micros(Stats.median(try await typedLoop(typed, seq).0)))/op")
            case "cache-lookup": print("\(only): median \(Format.micros(Stats.median(lookupLoop(engine, keys, seq).0)))/op")
            default: fatalError("unknown side \(only)")
            }
            return Result()
        }

        var r = Result()
        r.statsBefore = db.telemetry.snapshot().caches["cache"]
        let perRound = cfg.cacheOps / cfg.rounds
        for round in 0..<cfg.rounds {
            let seq = (0..<perRound).map { _ in Int(rng.next() % UInt64(ids.count)) }
            let f: ([Double], Int), l: ([Double], Int)
            if round % 2 == 0 {
                f = try await facadeLoop(coll, seq); l = lookupLoop(engine, keys, seq)
            } else {
                l = lookupLoop(engine, keys, seq); f = try await facadeLoop(coll, seq)
            }
            precondition(f.1 == l.1, "checksums differ: \(f.1) vs \(l.1)")
            r.facade += f.0; r.lookupNow += l.0
            r.typed += try await typedLoop(typed, seq).0
        }
        r.statsAfter = db.telemetry.snapshot().caches["cache"]
        r.telemetryHit = db.telemetry.snapshot().entry(dataset: "cached", operation: "cache.hit")
        return r
    }
}

/// Sub-step timings of a facade cache hit, using only public API or equivalent code
/// (printed to explain the gap to `lookupNow`; not part of the targets).
struct CacheBreakdown {
    let cfg: BenchConfig
    let db: Polyglot
    let ids: [String]

    func run() -> [(String, Double)] {
        let n = cfg.cacheOps
        var rng = SplitMix64(seed: 11)
        let seq = (0..<n).map { _ in Int(rng.next() % UInt64(ids.count)) }
        let clock = ContinuousClock()
        var sink = 0

        // The cache key, built per call as ReadThroughCache.key does (prefix + id).
        let prefix = ids.isEmpty ? "" : "doc\u{1F}cached\u{1F}"
        var t0 = clock.now
        for k in seq { sink &+= (prefix + ids[k]).utf8.count }
        let key = Stats.nanoseconds(clock.now - t0) / Double(n)

        // One telemetry record (a mutex, two histogram updates, swift-metrics calls), on a private stream.
        let recorder = db.telemetry.recorder(OperationKey(dataset: "bench", engine: "bench", operation: "breakdown"))
        t0 = clock.now
        for k in seq { recorder.record(nanoseconds: UInt64(300 + k % 100), rows: 1, bytes: 120) }
        let record = Stats.nanoseconds(clock.now - t0) / Double(n)

        if sink == 42 { print("") }
        return [("cache key string (prefix + id)", key), ("Telemetry.Recorder.record", record)]
    }
}
