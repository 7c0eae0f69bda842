// The in-process half of scripts/server-bench: the same document calls the HTTP benchmark makes through
// `polyglot serve`, made directly on `Polyglot`, one at a time, so that p50 via HTTP minus p50 here is the
// HTTP overhead.
//
//   ServerBenchmarks load    MAP COUNT            puts COUNT documents into `products` (cached) and `plain`
//   ServerBenchmarks measure MAP COUNT SECONDS    p50/p99 of get (cached, warmed), get (uncached) and put
import Foundation
import Logging
import Polyglot
import PolyglotPostgres
import PolyglotRedis
import PolyglotSQLite

@main
struct ServerBenchmarks {
    static func main() async throws {
        let args = CommandLine.arguments
        guard args.count >= 4, let count = Int(args[3]) else {
            FileHandle.standardError.write(Data("usage: ServerBenchmarks load|measure MAP COUNT [SECONDS]\n".utf8))
            exit(2)
        }
        var registry = EngineRegistry.embedded
        registry.registerPostgres()
        registry.registerRedis()
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let db = try await Polyglot(map: DataMap(contentsOf: args[2]), registry: registry, logger: logger)
        switch args[1] {
        case "load":
            for name in ["products", "plain"] {
                let docs = try db.documents(name)
                for start in stride(from: 0, to: count, by: 500) {
                    try await docs.putMany((start..<min(count, start + 500)).map { i in
                        (id: "p\(i)", body: Self.body(i))
                    })
                }
            }
            print("loaded \(count) documents into products and plain")
        case "measure":
            let seconds = args.count > 4 ? Double(args[4]) ?? 5 : 5
            let cached = try db.documents("products"), plain = try db.documents("plain")
            let hot = min(count, 1000)
            for i in 0..<hot { _ = try await cached.get("p\(i)") }   // warm the cache, as the HTTP run does
            var rng = SystemRandomNumberGenerator()
            try await report("get cached", seconds) { _ = try await cached.get("p\(Int.random(in: 0..<hot, using: &rng))") }
            try await report("get uncached", seconds) { _ = try await plain.get("p\(Int.random(in: 0..<count, using: &rng))") }
            try await report("put", seconds) {
                let i = Int.random(in: 0..<count, using: &rng)
                _ = try await plain.put("p\(i)", json: Data(Self.body(i).serialized()))
            }
        default:
            FileHandle.standardError.write(Data("unknown mode \(args[1])\n".utf8))
            exit(2)
        }
        try await db.close()
    }

    static func body(_ i: Int) -> JSON {
        ["name": .string("product \(i)"), "description": .string("a generated product for the server benchmark, number \(i)"),
         "price": .number(Double(i % 500) + 0.99), "category": .string(["shoes", "hats", "bags", "socks"][i % 4]), "stock": .number(Double(i % 50))]
    }

    /// Runs `call` one at a time for `seconds` and prints calls/s, p50 and p99 in microseconds.
    @MainActor static func report(_ name: String, _ seconds: Double, _ call: () async throws -> Void) async throws {
        var samples: [Double] = []
        samples.reserveCapacity(200_000)
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let started = ContinuousClock.now
        while ContinuousClock.now < end {
            let t = ContinuousClock.now
            try await call()
            let d = ContinuousClock.now - t
            samples.append(Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12)
        }
        let elapsed = ContinuousClock.now - started
        samples.sort()
        let pct = { (p: Double) in samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
        let rate = Double(samples.count) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        print(String(format: "in-process %-13@ calls/s %9.0f  p50 %8.1f us  p99 %8.1f us  (%d calls)", name as NSString, rate, pct(0.5), pct(0.99), samples.count))
    }
}
