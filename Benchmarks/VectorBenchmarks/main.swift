// VectorBenchmarks: PolyglotVectorIndex (HNSW) against exact search, on files hnswlib reads too.
//
//   swift run -c release --scratch-path .build-hnsw VectorBenchmarks [--quick] [--data DIR]
//       [--only gaussian|clustered] [--efs 16,32,64,128,256] [--queries 1000] [--threads 2] [--build-only]
//
// For each dataset it writes DIR/<name>.base.f32, .query.f32 (UInt32 count, UInt32 dimension, then
// little-endian Float32 rows) and .gt.i32 (UInt32 count, UInt32 k, then Int32 row numbers of the exact
// 10 nearest), builds the index single-threaded with M=16, efConstruction=200, sweeps efSearch and prints
// one `RESULT ...` line per measurement for scripts/vector-bench to merge with hnswlib's. It then builds a
// second index with the parallel batch upsert (`--threads`, default 2) and reports its build time and its
// recall@10 at ef 64 next to the single-threaded index's. `--build-only` skips the exact-search timing and
// the ef sweep (the build lines and the two ef-64 recalls only).
import Dispatch
import Foundation
import Polyglot
import PolyglotVectorIndex

struct Options {
    var quick = false
    var dataDirectory = ".build-bench-data"
    var only: String? = nil
    var efs = [16, 32, 64, 128, 256]
    var queries = 1000
    var count: Int? = nil
    /// Each ef is timed this many times; the best (least disturbed) run counts.
    var repeats = 3
    /// When set, the built index is saved there and loaded on the next run with the same dataset
    /// (for iterating on search speed without rebuilding).
    var indexCache: String? = nil
    /// Threads of the parallel batch build measured after the single-threaded one.
    var threads = 2
    /// Only the builds (single-threaded and parallel) and their recall at ef 64; no search sweep.
    var buildOnly = false
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--quick": o.quick = true
        case "--data": o.dataDirectory = args.next() ?? o.dataDirectory
        case "--only": o.only = args.next()
        case "--efs": o.efs = (args.next() ?? "").split(separator: ",").compactMap { Int($0) }
        case "--queries": o.queries = Int(args.next() ?? "") ?? o.queries
        case "--count": o.count = Int(args.next() ?? "")
        case "--index-cache": o.indexCache = args.next()
        case "--repeat": o.repeats = max(1, Int(args.next() ?? "") ?? o.repeats)
        case "--threads": o.threads = max(1, Int(args.next() ?? "") ?? o.threads)
        case "--build-only": o.buildOnly = true
        default:
            FileHandle.standardError.write("unknown option \(a)\n".data(using: .utf8)!)
            exit(2)
        }
    }
    return o
}

struct Gaussian {
    var rng: SeededRandom
    var spare: Float? = nil
    init(seed: UInt64) { rng = SeededRandom(seed: seed) }
    mutating func next() -> Float {
        if let s = spare { spare = nil; return s }
        let u1 = Double((rng.next() >> 11) + 1) / 9_007_199_254_740_992.0
        let u2 = Double(rng.next() >> 11) / 9_007_199_254_740_992.0
        let r = (-2 * log(u1)).squareRoot()
        spare = Float(r * sin(2 * .pi * u2))
        return Float(r * cos(2 * .pi * u2))
    }
}

struct Dataset {
    var name: String
    var metric: VectorMetric
    var dimension: Int
    var base: [Float]      // count × dimension
    var queries: [Float]
    var baseCount: Int { base.count / dimension }
    var queryCount: Int { queries.count / dimension }
    func row(_ a: [Float], _ i: Int) -> [Float] { Array(a[i * dimension..<(i + 1) * dimension]) }
}

func gaussianDataset(count: Int, queries: Int) -> Dataset {
    var g = Gaussian(seed: 20_240_128)
    let d = 128
    let base = (0..<count * d).map { _ in g.next() }
    let q = (0..<queries * d).map { _ in g.next() }
    return Dataset(name: "gaussian-\(count / 1000)k-128", metric: .l2, dimension: d, base: base, queries: q)
}

/// 100 Gaussian centres; each point is a centre plus Gaussian noise of half its scale. Cosine, like text
/// embeddings of dimension 384.
func clusteredDataset(count: Int, queries: Int) -> Dataset {
    var g = Gaussian(seed: 20_240_384)
    var pick = SeededRandom(seed: 384)
    let d = 384, clusters = 100
    let centres = (0..<clusters * d).map { _ in g.next() }
    func points(_ n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            let c = Int(pick.next() % UInt64(clusters))
            for j in 0..<d { out[i * d + j] = centres[c * d + j] + 0.5 * g.next() }
        }
        return out
    }
    let base = points(count)
    return Dataset(name: "clustered-\(count / 1000)k-384", metric: .cosine, dimension: d, base: base, queries: points(queries))
}

func writeMatrix<T>(_ path: String, rows: Int, columns: Int, _ values: [T]) throws {
    var data = Data()
    withUnsafeBytes(of: UInt32(rows).littleEndian) { data.append(contentsOf: $0) }
    withUnsafeBytes(of: UInt32(columns).littleEndian) { data.append(contentsOf: $0) }
    values.withUnsafeBytes { data.append(contentsOf: $0) }
    try data.write(to: URL(fileURLWithPath: path), options: .atomic)
}

func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func f(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

func emit(_ fields: [(String, String)]) {
    print("RESULT " + fields.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
    fflush(nil)
}

func run(_ ds: Dataset, options: Options) throws {
    let clock = ContinuousClock()
    let k = 10
    let dir = options.dataDirectory
    let n = ds.baseCount, nq = ds.queryCount
    print("== \(ds.name): \(n) × \(ds.dimension), \(nq) queries, metric \(ds.metric)")
    try writeMatrix("\(dir)/\(ds.name).base.f32", rows: n, columns: ds.dimension, ds.base)
    try writeMatrix("\(dir)/\(ds.name).query.f32", rows: nq, columns: ds.dimension, ds.queries)

    // Build, single-threaded (one writer), M=16, efConstruction=200.
    let config = HNSWConfiguration(dimension: ds.dimension, metric: ds.metric, m: 16, efConstruction: 200)
    let rows = (0..<n).map { ds.row(ds.base, $0) }
    let rssBefore = residentBytes()
    let t0 = clock.now
    let index: HNSWIndex
    let cachePath = options.indexCache.map { "\($0)/\(ds.name).hnsw" }
    if let cachePath, FileManager.default.fileExists(atPath: cachePath) {
        index = try HNSWIndex.load(from: cachePath)
        print("  loaded \(cachePath) in \(f(seconds(clock.now - t0), 2)) s")
    } else {
        index = try HNSWIndex(config)
        index.reserveCapacity(n)   // like hnswlib's max_elements
        for i in 0..<n { try index.upsert(String(i), rows[i]) }
        if let cachePath {
            let ts = clock.now
            try index.save(to: cachePath)
            print("  saved \(cachePath) in \(f(seconds(clock.now - ts), 2)) s")
        }
    }
    let buildSeconds = seconds(clock.now - t0)
    let rssAfter = residentBytes()
    print("  build: \(f(buildSeconds, 2)) s; footprint \(index.memoryFootprint / 1_048_576) MiB "
          + "(\(f(index.bytesPerVector, 0)) B/vector); RSS +\((rssAfter - rssBefore) / 1_048_576) MiB")
    emit([("side", "polyglot"), ("dataset", ds.name), ("kind", "build"), ("threads", "1"),
          ("seconds", f(buildSeconds, 3)), ("bytes", "\(index.memoryFootprint)"),
          ("rss_delta", "\(rssAfter - rssBefore)")])

    // Parallel batch build of the same rows (one `upsert(_:threads:)` call), same configuration.
    let parallelRSSBefore = residentBytes()
    let tp = clock.now
    let parallel = try HNSWIndex(config)
    try parallel.upsert((0..<n).map { (id: String($0), vector: rows[$0]) }, threads: options.threads)
    let parallelSeconds = seconds(clock.now - tp)
    let parallelRSSAfter = residentBytes()
    print("  build (\(options.threads) threads, upsert(_:threads:)): \(f(parallelSeconds, 2)) s "
          + "(\(f(buildSeconds / parallelSeconds, 2))x the single-threaded build)")
    emit([("side", "polyglot"), ("dataset", ds.name), ("kind", "build"), ("threads", "\(options.threads)"),
          ("seconds", f(parallelSeconds, 3)), ("bytes", "\(parallel.memoryFootprint)"),
          ("rss_delta", "\(parallelRSSAfter - parallelRSSBefore)")])

    // Ground truth with the index's exact scan (two threads), also timed single-threaded for the QPS of
    // exact search.
    let queries = (0..<nq).map { ds.row(ds.queries, $0) }
    var truth = [Int32](repeating: 0, count: nq * k)
    let truthBox = UnsafeMutableBufferPointer<Int32>.allocate(capacity: nq * k)
    defer { truthBox.deallocate() }
    let failed = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
    failed.initialize(to: false)
    defer { failed.deallocate() }
    nonisolated(unsafe) let tb = truthBox
    nonisolated(unsafe) let fp = failed
    DispatchQueue.concurrentPerform(iterations: 2) { part in
        for qi in stride(from: part, to: nq, by: 2) {
            guard let hits = try? index.exactSearch(queries[qi], k: k) else { fp.pointee = true; return }
            for (j, h) in hits.enumerated() { tb[qi * k + j] = Int32(h.id)! }
        }
    }
    if failed.pointee { throw PolyglotError(.engineFailure, "exact search failed") }
    for i in 0..<nq * k { truth[i] = truthBox[i] }
    try writeMatrix("\(dir)/\(ds.name).gt.i32", rows: nq, columns: k, truth)

    // Quality of the parallel build: recall@10 at ef 64 of both indexes.
    func recallAt(_ idx: HNSWIndex, ef: Int) throws -> Double {
        var found = 0
        for (qi, q) in queries.enumerated() {
            let t = Set(truth[qi * k..<(qi + 1) * k])
            for h in try idx.search(q, k: k, ef: ef) where t.contains(Int32(h.id)!) { found += 1 }
        }
        return Double(found) / Double(nq * k)
    }
    let serialRecall = try recallAt(index, ef: 64), parallelRecall = try recallAt(parallel, ef: 64)
    print("  recall@10 at ef=64: single-threaded build \(f(serialRecall, 4)), "
          + "\(options.threads)-thread build \(f(parallelRecall, 4))")
    emit([("side", "polyglot-parallel"), ("dataset", ds.name), ("kind", "recall"), ("ef", "64"),
          ("threads", "\(options.threads)"), ("serial_recall", f(serialRecall, 4)),
          ("parallel_recall", f(parallelRecall, 4))])
    if options.buildOnly { return }
    let exactQueries = min(nq, 200)
    let te = clock.now
    for qi in 0..<exactQueries { _ = try index.exactSearch(queries[qi], k: k) }
    let exactQPS = Double(exactQueries) / seconds(clock.now - te)
    emit([("side", "polyglot-exact"), ("dataset", ds.name), ("kind", "search"), ("ef", "exact"),
          ("recall", "1.0000"), ("qps", f(exactQPS, 1))])

    // Sweep efSearch, one thread, queries one by one.
    for ef in options.efs {
        _ = try index.search(queries[0], k: k, ef: ef) // warm the scratch pool
        var found = 0
        var results: [[(id: String, distance: Float)]] = []
        var elapsed = Double.infinity
        for _ in 0..<options.repeats {
            results.removeAll(keepingCapacity: true)
            results.reserveCapacity(nq)
            let ts = clock.now
            for q in queries { results.append(try index.search(q, k: k, ef: ef)) }
            elapsed = min(elapsed, seconds(clock.now - ts))
        }
        for (qi, hits) in results.enumerated() {
            let t = Set(truth[qi * k..<(qi + 1) * k])
            for h in hits where t.contains(Int32(h.id)!) { found += 1 }
        }
        let recall = Double(found) / Double(nq * k)
        let qps = Double(nq) / elapsed
        print("  ef=\(ef): recall@10 \(f(recall, 4)), \(f(qps, 0)) QPS")
        emit([("side", "polyglot"), ("dataset", ds.name), ("kind", "search"), ("ef", "\(ef)"),
              ("recall", f(recall, 4)), ("qps", f(qps, 1))])
    }
}

let options = parseOptions()
try FileManager.default.createDirectory(atPath: options.dataDirectory, withIntermediateDirectories: true)
let count = options.count ?? (options.quick ? 20_000 : 100_000)
if options.only == nil || options.only == "gaussian" {
    try run(gaussianDataset(count: count, queries: options.queries), options: options)
}
if options.only == nil || options.only == "clustered" {
    try run(clusteredDataset(count: count, queries: options.queries), options: options)
}
