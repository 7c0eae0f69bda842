import Foundation
import PolyglotTesting
import NIOCore
import NIOPosix
import PolyglotRedis
import Synchronization

struct ClientBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Settings of the client benchmarks. Unknown arguments are skipped (they belong to the cache benchmarks).
struct ClientBenchOptions: Sendable {
    var url = ""
    var only: Set<String>?
    var requests = 1_000_000
    var latencyRequests = 20_000
    /// Latency rounds: more and shorter than the throughput rounds, because a round trip's time swings with what
    /// else the host runs, and many paired rounds give a steadier median ratio.
    var latencyRounds = 11
    var size = 64
    var clients = 50
    /// Connections in our client's pool for the throughput benchmark (nil: one per client, as redis-benchmark has).
    var pool: Int?
    var pipeline = 16
    var rounds = 5
    var tests = ["SET", "GET"]
    /// Whether the event-loop variant of the throughput benchmark uses every loop of NIO's group (`--loops all`)
    /// instead of one loop (the default, the same shape as redis-benchmark: one thread for all connections).
    var allLoops = false
    /// Pin the server to CPU 0 and the clients (this process, redis-benchmark) to the other CPUs (`--no-pin`: don't).
    var pin = true
    /// Set by `--nio-global-executor` (main.swift then installs NIO's loops as Swift's global executor before any task runs).
    var nioGlobalExecutor = false
    /// `--profile default|loop|raw|awaited|throughput-default|throughput-loop`: run only that latency loop or throughput run
    /// (the first of --tests), once, with no redis-benchmark and no pinning (for `perf stat` and `perf record`).
    var profile: String?

    init(_ args: [String]) throws {
        var quick = false
        var given: Set<String> = []
        var i = 1
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw ClientBenchError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        func int() throws -> Int {
            let name = args[i], text = try value()
            guard let n = Int(text.replacingOccurrences(of: "_", with: "")), n > 0 else {
                throw ClientBenchError("\(name) '\(text)' is not a positive number")
            }
            given.insert(name)
            return n
        }
        while i < args.count {
            switch args[i] {
            case "--url": url = try value()
            case "--quick": quick = true
            case "--only": only = Set(try value().split(separator: ",").map(String.init))
            case "--requests": requests = try int()
            case "--latency-requests": latencyRequests = try int()
            case "--latency-rounds": latencyRounds = try int()
            case "--size": size = try int()
            case "--clients": clients = try int()
            case "--pool": pool = try int()
            case "--pipeline": pipeline = try int()
            case "--rounds": rounds = try int()
            case "--loops":
                let v = try value()
                guard v == "1" || v == "all" else { throw ClientBenchError("--loops takes 1 or all, not '\(v)'") }
                allLoops = v == "all"
            case "--no-pin": pin = false
            case "--nio-global-executor": nioGlobalExecutor = true
            case "--profile":
                let v = try value()
                guard ["default", "loop", "raw", "awaited", "throughput-default", "throughput-loop"].contains(v) else {
                    throw ClientBenchError("--profile takes default, loop, raw, awaited, throughput-default or throughput-loop, not '\(v)'")
                }
                profile = v
            case "--tests": tests = try value().uppercased().split(separator: ",").map(String.init)
            case "--help", "-h":
                print("usage: RedisBenchmarks [--url URL] [--quick] [--only throughput,latency,cache] [--requests N] [--latency-requests N] [--size BYTES] [--clients C] [--pool N] [--pipeline P] [--rounds R] [--latency-rounds R] [--loops 1|all] [--no-pin] [--nio-global-executor] [--profile default|loop|raw|awaited|throughput-default|throughput-loop]")
                exit(0)
            default: break
            }
            i += 1
        }
        if quick {
            if !given.contains("--requests") { requests = 200_000 }
            if !given.contains("--latency-requests") { latencyRequests = 10_000 }
            if !given.contains("--latency-rounds") { latencyRounds = 1 }
            if !given.contains("--rounds") { rounds = 1 }
        }
        if url.isEmpty { url = ClientBenchOptions.defaultURL() }
    }

    func runs(_ part: String) -> Bool { only.map { $0.contains(part) } ?? true }

    static func defaultURL() -> String {
        TestServers.first(["POLYGLOT_BENCH_REDIS_URL", "POLYGLOT_TEST_REDIS_URL"]) ?? ""
    }
}

/// What redis-benchmark reported for one test (its --csv line).
struct PeerResult {
    var rps: Double
    var p50Milliseconds: Double
}

func runClientBenchmarks(_ o: ClientBenchOptions) async throws {
    guard !o.url.isEmpty else {
        throw ClientBenchError("no server URL: pass --url, set POLYGLOT_BENCH_REDIS_URL, or start the test servers with scripts/services/up redis")
    }
    let config = try RedisConfiguration(url: o.url)
    guard let peer = which("redis-benchmark") else {
        throw ClientBenchError("redis-benchmark is not installed (apt-get install redis-tools)")
    }
    if let variant = o.profile {
        if variant.hasPrefix("throughput-") {
            let test = o.tests.first ?? "GET"
            let rate = try await clientThroughput(o, test: test, onEventLoop: variant == "throughput-loop")
            print("\(variant): \(o.requests) \(test)s, \(fmt(rate)) ops/s")
            return
        }
        try await setLatencyKey(o)
        let r: LatencyResult
        switch variant {
        case "raw": r = try await rawNIOLatency(o, host: config.host, port: config.port)
        case "awaited": r = try await awaitedNIOLatency(o, host: config.host, port: config.port)
        default: r = try await clientLatency(o, onEventLoop: variant == "loop")
        }
        print("\(variant): \(o.latencyRequests) GETs one at a time, \(r)")
        return
    }
    print("Redis client benchmarks against \(config.address) (\(try await serverVersion(o.url))); redis-benchmark: \(peer)")
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; the server, redis-benchmark and this client run on it; load average \(loadAverage())")
    if o.nioGlobalExecutor {
        print("Swift's global executor: NIO's event loops (--nio-global-executor), so the \"PolyglotRedis\" (default executor) columns run their tasks on the loops")
    }
    let pinning = o.pin ? await CPUPinning.apply(url: o.url) : nil
    if !o.pin { print("CPU pinning: off (--no-pin); the server and both clients share every CPU") }
    defer { pinning?.restore() }
    print("")
    var rows: [(String, String, String, String, String, String)] = []

    if o.runs("throughput") {
        print("Throughput: \(o.clients) clients (our pool: \(o.pool ?? o.clients) connections), pipeline depth \(o.pipeline), \(o.size)-byte values, \(o.requests) requests, \(o.rounds) rounds (medians; ratio = median of the per-round ratios)")
        for test in o.tests {
            var ours: [Double] = []
            var oursLoop: [Double] = []
            var theirs: [Double] = []
            for round in 1...o.rounds {
                let t = try await peerRun(peer, config, ["-c", "\(o.clients)", "-P", "\(o.pipeline)", "-t", test.lowercased(), "-d", "\(o.size)", "-n", "\(o.requests)"])
                theirs.append(t.rps)
                let u = try await clientThroughput(o, test: test)
                ours.append(u)
                let l = try await clientThroughput(o, test: test, onEventLoop: true)
                oursLoop.append(l)
                print("  \(test) round \(round): redis-benchmark \(fmt(t.rps)) ops/s; PolyglotRedis \(fmt(u)) ops/s (ratio \(String(format: "%.2f", u / t.rps))), tasks on the event loop \(fmt(l)) ops/s (ratio \(String(format: "%.2f", l / t.rps)))")
            }
            let (u, l, t) = (median(ours), median(oursLoop), median(theirs))
            rows.append(("\(test) -c \(o.clients) -P \(o.pipeline) (ops/s)", fmt(u), fmt(l), fmt(t),
                         pairedRatio(ours, theirs, "≥ 0.80"), pairedRatio(oursLoop, theirs, "≥ 0.80")))
        }
        print("")
    }

    if o.runs("latency") {
        print("Latency: 1 connection, no pipelining, GET of a \(o.size)-byte value, \(o.latencyRequests) requests, \(o.latencyRounds) rounds (ratio = median of the per-round ratios)")
        print("  p50: redis-benchmark's comes from a histogram of 8 µs buckets, given as the bucket's top (55 µs means 48-55 µs);")
        print("  ours is exact, and in brackets as that histogram would give it. The p50 ratios compare the bracketed values.")
        print("  per request: the run's wall-clock time / requests (for redis-benchmark 1 / its rps), a round trip plus the")
        print("  client's turnaround to the next request. redis-benchmark's p50 leaves out its turnaround, during which the")
        print("  server finishes its own turn; this measure counts the whole cycle on both sides.")
        var ours: [Double] = [], oursLoop: [Double] = [], theirs: [Double] = []
        var cycle: [Double] = [], cycleLoop: [Double] = [], cycleRaw: [Double] = [], cycleC: [Double] = [], theirCycle: [Double] = []
        try await setLatencyKey(o)
        var pC: [Double] = [], pRaw: [Double] = [], pAwaited: [Double] = [], cycleAwaited: [Double] = []
        for round in 1...o.latencyRounds {
            let t = try await peerRun(peer, config, ["-c", "1", "-P", "1", "-t", "get", "-d", "\(o.size)", "-n", "\(o.latencyRequests)"])
            theirs.append(t.p50Milliseconds * 1000)
            theirCycle.append(1e6 / t.rps)
            let d = try await clientLatency(o)
            let l = try await clientLatency(o, onEventLoop: true)
            let r = try await rawNIOLatency(o, host: config.host, port: config.port)
            let a = try await awaitedNIOLatency(o, host: config.host, port: config.port)
            let c = try cFloorLatency(o, host: config.host, port: config.port)
            if let c {
                cycleC.append(c.perRequest)
                pC.append(c.p50Reported)
            }
            ours.append(d.p50Reported)
            oursLoop.append(l.p50Reported)
            cycle.append(d.perRequest)
            cycleLoop.append(l.perRequest)
            cycleRaw.append(r.perRequest)
            cycleAwaited.append(a.perRequest)
            pRaw.append(r.p50Reported)
            pAwaited.append(a.p50Reported)
            print("  round \(round): redis-benchmark p50 \(us(t.p50Milliseconds * 1000)), \(us(1e6 / t.rps)) per request; PolyglotRedis \(d); tasks on the event loop \(l); a bare NIO handler (no client code) \(r); the bare handler awaited by a task on the loop \(a)\(c.map { "; the C floor \($0)" } ?? "")")
        }
        rows.append(("GET round trip p50, -c 1 -P 1 (µs, as redis-benchmark reports it)", us(median(ours)), us(median(oursLoop)), us(median(theirs)),
                     pairedRatio(ours, theirs, "≤ 1.20"), pairedRatio(oursLoop, theirs, "≤ 1.20")))
        rows.append(("GET time per request, -c 1 -P 1 (µs)", us(median(cycle)), us(median(cycleLoop)), us(median(theirCycle)),
                     pairedRatio(cycle, theirCycle, nil), pairedRatio(cycleLoop, theirCycle, nil)))
        func ratio(_ a: [Double], _ b: [Double]) -> String { String(format: "%.2f", median(zip(a, b).map { $0 / $1 })) }
        print("  floors against redis-benchmark: a bare NIO handler's time per request \(ratio(cycleRaw, theirCycle)), its p50 \(ratio(pRaw, theirs));" +
              " awaited by a task on the loop: time per request \(ratio(cycleAwaited, theirCycle)), p50 \(ratio(pAwaited, theirs))" +
              (cycleC.isEmpty ? " (the C floor was not built: scripts/redis-bench builds it)"
                              : "; the C floor's time per request \(ratio(cycleC, theirCycle)), its p50 as redis-benchmark reports it \(ratio(pC, theirs))"))
        print("")
    }

    print("| benchmark | PolyglotRedis | PolyglotRedis, tasks on the event loop | redis-benchmark | ratio | ratio, on the event loop |")
    print("|---|---|---|---|---|---|")
    for r in rows { print("| \(r.0) | \(r.1) | \(r.2) | \(r.3) | \(r.4) | \(r.5) |") }
    print("")
}

func loadAverage() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
}

func us(_ v: Double) -> String { String(format: "%.1f µs", v) }

/// The median of the per-round ratios (each round measures both sides back to back, so a busy machine slows both).
/// `target` nil: a measure the issue sets no target for (time per request; the issue's latency target is the p50).
func pairedRatio(_ ours: [Double], _ theirs: [Double], _ target: String?) -> String {
    String(format: "%.2f", median(zip(ours, theirs).map { $0 / $1 })) + (target.map { " (target \($0))" } ?? "")
}

func fmt(_ v: Double) -> String { String(format: "%.0f", v) }

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Runs a program to its end: its exit status and standard output (standard error is dropped).
func runTool(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

func which(_ tool: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

func serverVersion(_ url: String) async throws -> String {
    let c = try RedisClient(url: url)
    let info = try await c.send(["INFO", "server"]).string ?? ""
    await c.close()
    return info.split(separator: "\r\n").first { $0.hasPrefix("redis_version:") }.map { "Redis " + $0.dropFirst("redis_version:".count) } ?? "Redis"
}

/// Runs redis-benchmark with --csv and reads its one result line.
func peerRun(_ peer: String, _ config: RedisConfiguration, _ args: [String]) async throws -> PeerResult {
    var all = ["-h", config.host, "-p", "\(config.port)", "--csv"] + args
    if let pw = config.password {
        all += ["-a", pw]
        if let u = config.username { all += ["--user", u] }
    }
    let text = try runTool(peer, all).output
    guard let line = text.split(separator: "\n").last(where: { !$0.hasPrefix("\"test\"") && $0.hasPrefix("\"") }) else {
        throw ClientBenchError("redis-benchmark \(args.joined(separator: " ")) printed no result: \(text)")
    }
    let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
    guard fields.count >= 5, let rps = Double(fields[1]), let p50 = Double(fields[4]) else {
        throw ClientBenchError("could not read redis-benchmark's line: \(line)")
    }
    return PeerResult(rps: rps, p50Milliseconds: p50)
}

/// The same work as redis-benchmark -c C -P P -t TEST: C connections, each with P commands in flight, the key
/// `key:__rand_int__`, a SIZE-byte value. Commands are built (encoded) per request, as an application would.
func clientThroughput(_ o: ClientBenchOptions, test: String, onEventLoop: Bool = false) async throws -> Double {
    var config = try RedisConfiguration(url: o.url)
    config.poolSize = o.pool ?? o.clients
    // On the event loops: connections spread over NIO's loops, each task running on one loop and using that
    // loop's connections (the pool picks a connection of the caller's loop).
    // By default on one loop: all connections and tasks on one thread, as redis-benchmark runs (--loops all: every
    // loop of NIO's group).
    var loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
    if onEventLoop, !o.allLoops {
        loops = [loops[0]]
        config.eventLoopGroup = loops[0]
    }
    let executors = loops.map { RedisEventLoopExecutor(eventLoop: $0) }
    let client = try RedisClient(configuration: config)
    let key = "key:__rand_int__"
    let value = [UInt8](repeating: UInt8(ascii: "x"), count: o.size)
    try await client.set(key, value)
    // Open every connection before timing.
    try await withThrowingTaskGroup(of: Void.self) { g in
        for _ in 0..<o.clients { g.addTask { try await client.ping() } }
        try await g.waitForAll()
    }
    let issued = BenchCounter()
    let batches = (o.requests + o.pipeline - 1) / o.pipeline
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { g in
        for t in 0..<o.clients {
            g.addTask(executorPreference: onEventLoop ? executors[t % executors.count] : nil) {
                while issued.next() <= batches {
                    var commands: [RedisCommand] = []
                    commands.reserveCapacity(o.pipeline)
                    for _ in 0..<o.pipeline {
                        commands.append(test == "SET" ? RedisCommand("SET", key, value) : RedisCommand("GET", key))
                    }
                    let replies = try await client.pipeline(commands)
                    if case .error(let e) = replies[0] { throw ClientBenchError("\(test) failed: \(e)") }
                }
            }
        }
        try await g.waitForAll()
    }
    let elapsed = ContinuousClock.now - start
    await client.close()
    return Double(batches * o.pipeline) / elapsed.seconds
}

/// The event loop the latency loops on a loop use (ours and the bare NIO handler): the same one every round, so
/// no variant is measured on a different thread than another.
let latencyLoopThread: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()

/// One connection, one GET at a time: each round trip timed; returns (p50, p99) in microseconds.
func clientLatency(_ o: ClientBenchOptions, onEventLoop: Bool = false) async throws -> LatencyResult {
    var config = try RedisConfiguration(url: o.url)
    config.poolSize = 1
    let loop = latencyLoopThread
    if onEventLoop { config.eventLoopGroup = loop }
    let executor: (any TaskExecutor)? = onEventLoop ? RedisEventLoopExecutor(eventLoop: loop) : nil
    return try await withTaskExecutorPreference(executor) {
        try await latencyLoop(o, config)
    }
}

/// The key every latency loop GETs (ours, the floors', redis-benchmark's `-t get` default key).
let latencyKey = "key:__rand_int__"

/// Sets the latency key to a value of `o.size` bytes. The floors wait for a reply of exactly that size, so they
/// would wait for ever on a server that does not hold it (a fresh one): every latency run calls this first.
func setLatencyKey(_ o: ClientBenchOptions) async throws {
    let client = try RedisClient(url: o.url)
    try await client.set(latencyKey, [UInt8](repeating: UInt8(ascii: "x"), count: o.size))
    await client.close()
}

func latencyLoop(_ o: ClientBenchOptions, _ config: RedisConfiguration) async throws -> LatencyResult {
    let client = try RedisClient(configuration: config)
    let key = latencyKey
    try await client.set(key, [UInt8](repeating: UInt8(ascii: "x"), count: o.size))
    let result = try await timedRoundTrips(o.latencyRequests) { _ = try await client.get(key) }
    await client.close()
    return result
}

/// Runs `roundTrip` 1,000 times unrecorded, then `count` times timed one by one.
func timedRoundTrips(_ count: Int, _ roundTrip: () async throws -> Void) async rethrows -> LatencyResult {
    for _ in 0..<1000 { try await roundTrip() }
    var samples: [Double] = []
    samples.reserveCapacity(count)
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<count {
        let t0 = clock.now
        try await roundTrip()
        samples.append((clock.now - t0).seconds * 1e6)
    }
    return LatencyResult(samples, elapsed: clock.now - start)
}

/// Round trips of one run, in microseconds: percentiles of the timed calls, and the whole run's time per request.
struct LatencyResult: CustomStringConvertible {
    var p50: Double
    var p99: Double
    /// Wall-clock time of the run divided by its requests: a round trip plus the client's turnaround to the next
    /// request. redis-benchmark's rps for `-c 1 -P 1` is the same measure (requests / total time).
    var perRequest: Double

    /// The p50 as redis-benchmark's histogram reports it: whole microseconds, in buckets of 8 µs (its lowest
    /// discernible value is 10 µs, so HdrHistogram's unit is 2^3 µs), given as the bucket's highest value.
    var p50Reported: Double { LatencyResult.asRedisBenchmarkReports(p50) }

    static func asRedisBenchmarkReports(_ microseconds: Double) -> Double {
        let v = Int(microseconds)
        guard v < 16_384 else { return Double(v) }   // beyond that the buckets widen; not reached here
        return Double(v / 8 * 8 + 7)
    }

    var description: String { "p50 \(us(p50)) [\(us(p50Reported))] (p99 \(us(p99))), \(us(perRequest)) per request" }
}

extension LatencyResult {
    init(_ samples: [Double], elapsed: Duration) {
        let s = samples.sorted()
        self.init(p50: s[s.count / 2], p99: s[s.count * 99 / 100], perRequest: elapsed.seconds * 1e6 / Double(samples.count))
    }
}

extension Duration {
    var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) / 1e18
    }
}

final class BenchCounter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).newValue }
}
