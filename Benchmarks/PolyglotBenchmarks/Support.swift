import Foundation
import VaporCSQLite

/// The document every benchmark stores: small, five fields, one array.
struct Product: Codable, Sendable, Equatable {
    var id: String
    var name: String
    var price: Double
    var category: String
    var tags: [String]

    static let categories = ["shoes", "shirts", "hats", "bags", "socks", "coats", "belts", "gloves"]

    static func make(_ i: Int, id: String) -> Product {
        Product(id: id, name: "Product \(i)", price: Double(i % 1000) + 0.99,
                category: categories[i % categories.count], tags: ["tag\(i % 13)", "tag\(i % 7)"])
    }
}

/// Run settings; `--quick` scales every count down.
struct BenchConfig: Sendable {
    var quick = false
    /// `get`, `bulk`, `cache`, or a single side for profiling: `get-poly-typed`, `get-poly`, `get-raw-typed`, `get-raw`.
    var only: String?
    var documents = 10_000
    /// Timed lookups per side, split over `rounds`.
    var getOps = 200_000
    var getWarmup = 20_000
    var rounds = 10
    var batch = 1_000
    var bulkDocs = 100_000
    var bulkBatch = 1_000
    var bulkRounds = 3
    var cacheOps = 200_000
    /// The sqlite engine's `readers` option (reader connections); nil keeps the engine's default.
    var readers: Int?

    init(arguments: [String]) {
        var opsOverride: Int?
        var it = arguments.dropFirst().makeIterator()
        while let a = it.next() {
            switch a {
            case "--quick": quick = true
            case "--only": only = it.next()
            case "--ops": opsOverride = it.next().flatMap { Int($0) }
            case "--readers": readers = it.next().flatMap { Int($0) }
            default:
                FileHandle.standardError.write(Data("unknown argument \(a); use --quick, --only get|bulk|cache (or one side, see main.swift), --ops N, --readers N\n".utf8))
                exit(2)
            }
        }
        if quick {
            getOps = 20_000; getWarmup = 2_000; rounds = 4
            bulkDocs = 20_000; bulkRounds = 1
            cacheOps = 20_000
        }
        if let n = opsOverride { getOps = n; cacheOps = n }
    }

    func runs(_ name: String) -> Bool { only == nil || only == name || (only?.hasPrefix(name + "-") ?? false) }
}

/// Deterministic random numbers, so every run (and both sides of a comparison) look up the same ids.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Stats {
    static func nanoseconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) * 1e9 + Double(atto) / 1e9
    }

    static func median(_ xs: [Double]) -> Double { percentile(xs, 50) }

    /// Nearest-rank percentile.
    static func percentile(_ xs: [Double], _ p: Double) -> Double {
        precondition(!xs.isEmpty)
        let s = xs.sorted()
        let rank = Int((p / 100 * Double(s.count)).rounded(.up))
        return s[min(max(rank, 1), s.count) - 1]
    }

    static func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
}

enum Format {
    static func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
    /// Nanoseconds per op, shown in µs.
    static func micros(_ ns: Double) -> String { fixed(ns / 1000, ns < 10_000 ? 3 : 1) + " µs" }
    static func rate(_ perSecond: Double) -> String {
        let n = Int(perSecond.rounded())
        var s = String(n)
        var i = s.count - 3
        while i > 0 { s.insert(",", at: s.index(s.startIndex, offsetBy: i)); i -= 3 }
        return s + " docs/s"
    }
}

// MARK: - Raw SQLite C API peer

/// `SQLITE_TRANSIENT` (a C macro that does not import): SQLite copies the bound bytes.
let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

struct SQLiteFailure: Error, CustomStringConvertible {
    var description: String
}

/// What a user of the raw driver would write: one connection, statements prepared once.
/// Opened with the same flags and pragmas as Polyglot's connections (WAL, synchronous=NORMAL, no mutex).
final class RawSQLite {
    let db: OpaquePointer

    init(path: String) throws {
        var handle: OpaquePointer?
        let rc = sqlite_nio_sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let handle else { throw SQLiteFailure(description: "open \(path): rc \(rc)") }
        db = handle
        sqlite_nio_sqlite3_busy_timeout(db, 5000)
        try exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
    }

    deinit { sqlite_nio_sqlite3_close_v2(db) }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite_nio_sqlite3_exec(db, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let message = err.map { String(cString: $0) } ?? "rc \(rc)"
            sqlite_nio_sqlite3_free(err)
            throw SQLiteFailure(description: "\(message) in: \(sql)")
        }
    }

    func prepare(_ sql: String) throws -> OpaquePointer {
        var stmt: OpaquePointer?
        let rc = sqlite_nio_sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw SQLiteFailure(description: "prepare: \(String(cString: sqlite_nio_sqlite3_errmsg(db))) in: \(sql)")
        }
        return stmt
    }

    func fail(_ what: String) -> SQLiteFailure {
        SQLiteFailure(description: "\(what): \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
    }
}

/// `SELECT version, body FROM "products" WHERE id = ?`, prepared once; per lookup: bind, step, copy, reset.
final class RawGetByID {
    let conn: RawSQLite
    let stmt: OpaquePointer

    init(_ conn: RawSQLite, table: String) throws {
        self.conn = conn
        stmt = try conn.prepare("SELECT version, body FROM \"\(table)\" WHERE id = ?")
    }

    deinit { sqlite_nio_sqlite3_finalize(stmt) }

    /// Ends the read transaction the last lookup left open; call after every timed loop.
    ///
    /// After `get` the statement still sits on its row, so this connection keeps a SHARED lock and a WAL
    /// read mark. While any connection of the process holds those, SQLite skips the fcntl() lock calls
    /// when the process's other connections begin and end their reads: Polyglot's lookups, run next,
    /// would then look about 3 µs cheaper than they are on their own.
    func release() { sqlite_nio_sqlite3_reset(stmt) }

    /// The row's version and body bytes, or nil: reset, bind, step, copy.
    @inline(__always)
    func get(_ id: String) throws -> (version: Int64, body: Data)? {
        sqlite_nio_sqlite3_reset(stmt)
        var rc = sqlite_nio_sqlite3_bind_text64(stmt, 1, id, UInt64(id.utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
        guard rc == SQLITE_OK else { throw conn.fail("bind") }
        rc = sqlite_nio_sqlite3_step(stmt)
        if rc == SQLITE_DONE { return nil }
        guard rc == SQLITE_ROW else { throw conn.fail("step") }
        let version = sqlite_nio_sqlite3_column_int64(stmt, 0)
        let p = sqlite_nio_sqlite3_column_blob(stmt, 1)
        let n = Int(sqlite_nio_sqlite3_column_bytes(stmt, 1))
        let body = p.map { Data(bytes: $0, count: n) } ?? Data()
        return (version, body)
    }
}
