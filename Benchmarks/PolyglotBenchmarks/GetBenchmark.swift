import Foundation
import Polyglot
import PolyglotSQLite
import VaporCSQLite

/// Benchmark 1: document get-by-id, Polyglot over SQLite against the raw SQLite C API on the same file.
///
/// Both sides look up the same pseudo-random ids. Each side is timed in batches of `cfg.batch` lookups
/// (one clock read per batch); the sides alternate, round by round, so drift (thermal, page cache,
/// neighbours on the machine) hits both alike. The figure is the median over all batches of the
/// per-lookup time.
struct GetBenchmark {
    let cfg: BenchConfig
    let typed: TypedDocumentCollection<Product>
    let untyped: DocumentCollection
    let raw: RawGetByID
    let ids: [String]
    /// The raw side's decoder, made once, as a raw-driver user would.
    let decoder = JSONDecoder()

    struct Result {
        var polyTyped: [Double] = []
        var rawTyped: [Double] = []
        var polyBytes: [Double] = []
        var rawBytes: [Double] = []
    }

    // MARK: The four timed loops. Each returns per-lookup nanoseconds of each batch and a checksum.

    func polyTypedLoop(_ seq: [Int]) async throws -> ([Double], Int) {
        var samples: [Double] = []
        samples.reserveCapacity(seq.count / cfg.batch + 1)
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let p = try await typed.get(ids[seq[k]]) else { fatalError("missing \(ids[seq[k]])") }
                checksum &+= p.name.utf8.count &+ Int(p.price) &+ p.tags.count
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        return (samples, checksum)
    }

    func rawTypedLoop(_ seq: [Int]) throws -> ([Double], Int) {
        var samples: [Double] = []
        samples.reserveCapacity(seq.count / cfg.batch + 1)
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let row = try raw.get(ids[seq[k]]) else { fatalError("missing \(ids[seq[k]])") }
                let p = try decoder.decode(Product.self, from: row.body)
                checksum &+= p.name.utf8.count &+ Int(p.price) &+ p.tags.count
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        raw.release()
        return (samples, checksum)
    }

    func polyBytesLoop(_ seq: [Int]) async throws -> ([Double], Int) {
        var samples: [Double] = []
        samples.reserveCapacity(seq.count / cfg.batch + 1)
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let d = try await untyped.get(ids[seq[k]]) else { fatalError("missing \(ids[seq[k]])") }
                checksum &+= d.data.count &+ Int(d.version & 0xFF)
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        return (samples, checksum)
    }

    func rawBytesLoop(_ seq: [Int]) throws -> ([Double], Int) {
        var samples: [Double] = []
        samples.reserveCapacity(seq.count / cfg.batch + 1)
        var checksum = 0
        let clock = ContinuousClock()
        var i = 0
        while i < seq.count {
            let end = min(i + cfg.batch, seq.count)
            let t0 = clock.now
            for k in i..<end {
                guard let row = try raw.get(ids[seq[k]]) else { fatalError("missing \(ids[seq[k]])") }
                checksum &+= row.body.count &+ Int(row.version & 0xFF)
            }
            samples.append(Stats.nanoseconds(clock.now - t0) / Double(end - i))
            i = end
        }
        raw.release()
        return (samples, checksum)
    }

    func sequence(_ n: Int, seed: UInt64) -> [Int] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in Int(rng.next() % UInt64(ids.count)) }
    }

    /// Runs one side alone (for `perf record`), then returns.
    func profileOnly(_ side: String) async throws {
        let seq = sequence(cfg.getOps, seed: 7)
        let warm = sequence(cfg.getWarmup, seed: 1)
        _ = try await polyTypedLoop(warm); _ = try rawTypedLoop(warm)
        let (samples, sum): ([Double], Int)
        switch side {
        case "get-poly-typed": (samples, sum) = try await polyTypedLoop(seq)
        case "get-raw-typed": (samples, sum) = try rawTypedLoop(seq)
        case "get-poly": (samples, sum) = try await polyBytesLoop(seq)
        case "get-raw": (samples, sum) = try rawBytesLoop(seq)
        default: fatalError("unknown side \(side)")
        }
        print("\(side): median \(Format.micros(Stats.median(samples)))/op over \(seq.count) lookups (checksum \(sum))")
    }

    func run() async throws -> Result {
        // Warm up every path: page cache, statement caches, telemetry recorders, allocator.
        let warm = sequence(cfg.getWarmup, seed: 1)
        _ = try await polyTypedLoop(warm); _ = try rawTypedLoop(warm)
        _ = try await polyBytesLoop(warm); _ = try rawBytesLoop(warm)

        var r = Result()
        let perRound = cfg.getOps / cfg.rounds
        for round in 0..<cfg.rounds {
            let seq = sequence(perRound, seed: 1000 + UInt64(round))
            let a: (([Double], Int), ([Double], Int))
            let b: (([Double], Int), ([Double], Int))
            if round % 2 == 0 {
                a = (try await polyTypedLoop(seq), try rawTypedLoop(seq))
                b = (try await polyBytesLoop(seq), try rawBytesLoop(seq))
            } else {
                let rt = try rawTypedLoop(seq)
                a = (try await polyTypedLoop(seq), rt)
                let rb = try rawBytesLoop(seq)
                b = (try await polyBytesLoop(seq), rb)
            }
            // Both sides must have read exactly the same documents.
            precondition(a.0.1 == a.1.1 && b.0.1 == b.1.1, "checksums differ: \(a.0.1) vs \(a.1.1), \(b.0.1) vs \(b.1.1)")
            r.polyTyped += a.0.0; r.rawTyped += a.1.0
            r.polyBytes += b.0.0; r.rawBytes += b.1.0
            print("  round \(round + 1)/\(cfg.rounds): typed \(Format.micros(Stats.median(a.0.0))) vs \(Format.micros(Stats.median(a.1.0))), "
                + "bytes \(Format.micros(Stats.median(b.0.0))) vs \(Format.micros(Stats.median(b.1.0)))")
        }
        return r
    }
}

/// Sub-step timings that explain where a typed get's time goes (printed, not part of the targets).
struct GetBreakdown {
    let cfg: BenchConfig
    let raw: RawGetByID
    let ids: [String]

    func run() throws -> [(String, Double)] {
        let n = cfg.getOps / 2
        var rng = SplitMix64(seed: 99)
        let seq = (0..<n).map { _ in Int(rng.next() % UInt64(ids.count)) }
        let clock = ContinuousClock()
        var sink = 0

        // 1. step + copy only.
        var t0 = clock.now
        for k in seq { sink &+= try raw.get(ids[k])!.body.count }
        let step = Stats.nanoseconds(clock.now - t0) / Double(n)
        raw.release()

        // Bodies to decode, read once.
        let bodies = try ids.map { try raw.get($0)!.body }
        raw.release()

        // 2. decode with one shared JSONDecoder.
        let shared = JSONDecoder()
        t0 = clock.now
        for k in seq { sink &+= try shared.decode(Product.self, from: bodies[k]).tags.count }
        let decodeShared = Stats.nanoseconds(clock.now - t0) / Double(n)

        // 3. ContinuousClock.now, which the facade reads twice per call for telemetry.
        t0 = clock.now
        var last = t0
        for _ in 0..<n { last = clock.now }
        let clockRead = Stats.nanoseconds(last - t0) / Double(n)

        if sink == 42 { print("") }
        return [("raw step + copy bytes", step), ("JSONDecoder.decode (one shared decoder)", decodeShared),
                ("ContinuousClock.now", clockRead)]
    }
}
