import Foundation
import PolyglotTesting

/// Run settings; `--quick` scales every count down.
struct BenchOptions: Sendable {
    var url = ""
    var only: Set<String>?
    var docs = 10_000
    var bulkDocs = 100_000
    var batch = 1000
    var seconds = 2.0
    var rounds = 5
    var vectors = 100_000
    var queries = 200
    var efs = [40, 100, 400]
    var poolSize = 20
    var relayEvents = 20_000
    var relayRewrite = 2_000

    init(_ args: [String]) throws {
        var quick = false
        var set: Set<String> = []
        var i = 1
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw BenchError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        func int() throws -> Int {
            let name = args[i], text = try value()
            guard let n = Int(text.replacingOccurrences(of: "_", with: "")), n > 0 else { throw BenchError("\(name) '\(text)' is not a positive number") }
            return n
        }
        while i < args.count {
            let a = args[i]
            switch a {
            case "--url": url = try value()
            case "--quick": quick = true
            case "--only": only = Set(try value().split(separator: ",").map(String.init))
            case "--docs": docs = try int(); set.insert(a)
            case "--bulk": bulkDocs = try int(); set.insert(a)
            case "--batch": batch = try int()
            case "--seconds":
                let text = try value()
                guard let s = Double(text), s > 0 else { throw BenchError("--seconds '\(text)' is not a positive number") }
                seconds = s; set.insert(a)
            case "--rounds": rounds = try int(); set.insert(a)
            case "--vectors": vectors = try int(); set.insert(a)
            case "--queries": queries = try int(); set.insert(a)
            case "--pool": poolSize = try int()
            case "--relay-events": relayEvents = try int(); set.insert(a)
            case "--relay-rewrite": relayRewrite = try int(); set.insert(a)
            case "--ef":
                let text = try value()
                efs = text.split(separator: ",").compactMap { Int($0) }
                if efs.isEmpty || efs.contains(where: { $0 < 1 }) { throw BenchError("--ef '\(text)' is not a comma-separated list of positive numbers") }
            case "--help", "-h":
                print("usage: PostgresBenchmarks [--url URL] [--quick] [--only get|bulk|vectors|relay[,...]] [--docs N] [--bulk N] [--batch N] [--seconds S] [--rounds R] [--vectors N] [--queries Q] [--ef 40,100,400] [--pool N] [--relay-events N] [--relay-rewrite N]")
                exit(0)
            default: throw BenchError("unknown argument \(a); use --help")
            }
            i += 1
        }
        if quick {
            if !set.contains("--docs") { docs = 5_000 }
            if !set.contains("--bulk") { bulkDocs = 20_000 }
            if !set.contains("--seconds") { seconds = 1 }
            if !set.contains("--rounds") { rounds = 3 }
            if !set.contains("--vectors") { vectors = 10_000 }
            if !set.contains("--queries") { queries = 100 }
            if !set.contains("--relay-events") { relayEvents = 5_000 }
            if !set.contains("--relay-rewrite") { relayRewrite = 500 }
        }
        if let only, !only.isSubset(of: ["get", "bulk", "vectors", "relay"]) { throw BenchError("--only takes get, bulk, vectors or relay (comma-separated)") }
        if relayRewrite > relayEvents / 2 { throw BenchError("--relay-rewrite must be at most half of --relay-events") }
        if url.isEmpty { url = TestServers.first(["POLYGLOT_BENCH_PG_URL", "POLYGLOT_TEST_PG18_URL"]) ?? "" }
        if url.isEmpty {
            throw BenchError("no PostgreSQL server: pass --url postgres://user@host:port/db, or set POLYGLOT_BENCH_PG_URL (or POLYGLOT_TEST_PG18_URL, as scripts/services/up postgres writes to .services/env)")
        }
    }

    func runs(_ name: String) -> Bool { only == nil || only!.contains(name) }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A fresh schema per run, so runs never see each other's tables.
let benchSchema = "bench_" + String(UInt64.random(in: 0...UInt64.max) % 1_000_000_000_000, radix: 36)

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    if s.isEmpty { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func fmt(_ x: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", x) }
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The load average, to print next to numbers measured on a shared machine.
func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)).map { $0.split(separator: " ").prefix(3).joined(separator: " ") } ?? "?"
}
