import Foundation
import Polyglot
import Synchronization
import VaporCSQLite

/// A value bound to or read from SQLite.
enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob(Data)
    /// UTF-8 text given as bytes (JSON documents), bound as TEXT without building a String.
    case textBytes(Data)

    init(_ json: JSON) {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .integer(b ? 1 : 0)
        case .number(let d): self = (d.rounded() == d && abs(d) < 9.0e15) ? .integer(Int64(d)) : .real(d)
        case .string(let s): self = .text(s)
        case .array, .object: self = .text(json.text)
        }
    }

    var json: JSON {
        switch self {
        case .null: .null
        case .integer(let i): .number(Double(i))
        case .real(let d): .number(d)
        case .text(let s): .string(s)
        case .blob(let d): .string(d.base64EncodedString())
        case .textBytes(let d): .string(String(decoding: d, as: UTF8.self))
        }
    }

    var int: Int64? {
        switch self {
        case .integer(let i): i
        case .real(let d): Int64(exactly: d.rounded(.towardZero))   // nil for NaN, ±inf and reals beyond Int64 (Int64(d) traps)
        default: nil
        }
    }
    var double: Double? {
        switch self {
        case .integer(let i): Double(i)
        case .real(let d): d
        default: nil
        }
    }
    var string: String? { if case .text(let s) = self { return s }; return nil }
    var data: Data? {
        switch self {
        case .blob(let d), .textBytes(let d): d
        case .text(let s): Data(s.utf8)
        default: nil
        }
    }
}

private let SQLITE_TRANSIENT_PTR = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

/// One SQLite connection with a prepared-statement cache. Not thread-safe: callers serialize access.
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String
    private var statements: [String: OpaquePointer] = [:]

    init(path: String, readOnly: Bool) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
        let rc = sqlite_nio_sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "code \(rc)"
            if let db { sqlite_nio_sqlite3_close(db) }
            throw PolyglotError(.engineUnavailable, "Cannot open SQLite database '\(path)': \(message).",
                                fix: "Check that the folder exists and is writable, and that the file is a SQLite database.")
        }
        handle = db
        self.path = path
        sqlite_nio_sqlite3_extended_result_codes(db, 1)
        sqlite_nio_sqlite3_busy_timeout(db, 5000)
        if !readOnly {
            _ = try query("PRAGMA journal_mode=WAL")
        }
        try run("PRAGMA synchronous=NORMAL")
        try run("PRAGMA foreign_keys=ON")
    }

    deinit {
        for stmt in statements.values { sqlite_nio_sqlite3_finalize(stmt) }
        sqlite_nio_sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, _ sql: String) -> PolyglotError {
        let message = String(cString: sqlite_nio_sqlite3_errmsg(handle))
        let primary = rc & 0xFF
        switch primary {
        case SQLITE_BUSY, SQLITE_LOCKED:
            return PolyglotError(.engineUnavailable, "SQLite database '\(path)' is locked by another writer: \(message).",
                                 fix: "Retry; if it persists, another process holds a long write transaction on the file.", retryable: true)
        case SQLITE_CONSTRAINT:
            return PolyglotError(.conflict, "SQLite refused the write: \(message).", fix: "Check required columns and unique keys.")
        case SQLITE_FULL:
            return PolyglotError(.engineFailure, "SQLite database '\(path)' is full: \(message).", fix: "Free disk space.")
        case SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_IOERR:
            return PolyglotError(.engineUnavailable, "SQLite cannot write '\(path)': \(message).", fix: "Check the file's permissions and the disk.")
        default:
            return PolyglotError(.engineFailure, "SQLite error \(rc): \(message) (in: \(sql.prefix(200))).",
                                 fix: "If this came from raw SQL, fix the statement; otherwise report it with the statement shown.")
        }
    }

    func prepare(_ sql: String) throws -> OpaquePointer {
        if let stmt = statements[sql] { return stmt }
        var stmt: OpaquePointer?
        let rc = sqlite_nio_sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql) }
        if statements.count >= 256 {
            // Keep any statement that is mid-step (an outer `each` may still be reading it).
            for (text, s) in statements where sqlite_nio_sqlite3_stmt_busy(s) == 0 {
                sqlite_nio_sqlite3_finalize(s)
                statements[text] = nil
            }
        }
        statements[sql] = stmt
        return stmt
    }

    private func bind(_ stmt: OpaquePointer, _ values: [SQLValue], _ sql: String) throws {
        let expected = Int(sqlite_nio_sqlite3_bind_parameter_count(stmt))
        if expected != values.count {
            throw PolyglotError(.invalidArgument, "The statement has \(expected) parameters but \(values.count) values were given.",
                                fix: "Pass one value per `?` placeholder.")
        }
        for (i, v) in values.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite_nio_sqlite3_bind_null(stmt, idx)
            case .integer(let n): rc = sqlite_nio_sqlite3_bind_int64(stmt, idx, n)
            case .real(let d): rc = sqlite_nio_sqlite3_bind_double(stmt, idx, d)
            case .text(let s): rc = sqlite_nio_sqlite3_bind_text64(stmt, idx, s, UInt64(s.utf8.count), SQLITE_TRANSIENT_PTR, UInt8(SQLITE_UTF8))
            case .blob(let d):
                rc = d.withUnsafeBytes { sqlite_nio_sqlite3_bind_blob64(stmt, idx, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(d.count), SQLITE_TRANSIENT_PTR) }
            case .textBytes(let d):
                rc = d.isEmpty
                    ? sqlite_nio_sqlite3_bind_text64(stmt, idx, "", 0, SQLITE_TRANSIENT_PTR, UInt8(SQLITE_UTF8))
                    : d.withUnsafeBytes {
                        sqlite_nio_sqlite3_bind_text64(stmt, idx, $0.baseAddress!.assumingMemoryBound(to: CChar.self), UInt64(d.count), SQLITE_TRANSIENT_PTR, UInt8(SQLITE_UTF8))
                    }
            }
            if rc != SQLITE_OK { throw error(rc, sql) }
        }
    }

    func column(_ stmt: OpaquePointer, _ i: Int32) -> SQLValue {
        switch sqlite_nio_sqlite3_column_type(stmt, i) {
        case SQLITE_INTEGER: return .integer(sqlite_nio_sqlite3_column_int64(stmt, i))
        case SQLITE_FLOAT: return .real(sqlite_nio_sqlite3_column_double(stmt, i))
        case SQLITE_TEXT:
            let n = Int(sqlite_nio_sqlite3_column_bytes(stmt, i))
            guard let p = sqlite_nio_sqlite3_column_text(stmt, i) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self))
        case SQLITE_BLOB:
            let n = Int(sqlite_nio_sqlite3_column_bytes(stmt, i))
            guard let p = sqlite_nio_sqlite3_column_blob(stmt, i) else { return .blob(Data()) }
            return .blob(Data(bytes: p, count: n))
        default: return .null
        }
    }

    func int64(_ stmt: OpaquePointer, _ i: Int32) -> Int64 { sqlite_nio_sqlite3_column_int64(stmt, i) }

    /// Column `i` as raw bytes (text or blob), without building a String.
    func columnData(_ stmt: OpaquePointer, _ i: Int32) -> Data {
        let n = Int(sqlite_nio_sqlite3_column_bytes(stmt, i))
        guard n > 0, let p = sqlite_nio_sqlite3_column_blob(stmt, i) else { return Data() }
        return Data(bytes: p, count: n)
    }

    /// Runs a statement and hands each row to `row`. The statement is cached and reset afterwards.
    func each(_ sql: String, _ values: [SQLValue] = [], _ row: (OpaquePointer) throws -> Void) throws {
        let stmt = try prepare(sql)
        defer { sqlite_nio_sqlite3_reset(stmt); sqlite_nio_sqlite3_clear_bindings(stmt) }
        try bind(stmt, values, sql)
        defer {
            // Rows stepped through by full table scans in this run (read and reset, so each run counts its own):
            // what the advisor compares with the rows a query returns. Index lookups step no full scan.
            let scanned = sqlite_nio_sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1)
            if let examined = RowsExamined.current { examined.add(Int(scanned)) }
        }
        while true {
            let rc = sqlite_nio_sqlite3_step(stmt)
            if rc == SQLITE_ROW { try row(stmt); continue }
            if rc == SQLITE_DONE { return }
            throw error(rc, sql)
        }
    }

    /// Runs a statement and returns its rows as arrays of values.
    func query(_ sql: String, _ values: [SQLValue] = []) throws -> [[SQLValue]] {
        var rows: [[SQLValue]] = []
        try each(sql, values) { stmt in
            let n = sqlite_nio_sqlite3_column_count(stmt)
            rows.append((0..<n).map { column(stmt, $0) })
        }
        return rows
    }

    /// Runs a statement and returns its rows keyed by column name.
    func namedQuery(_ sql: String, _ values: [SQLValue]) throws -> [[String: SQLValue]] {
        var rows: [[String: SQLValue]] = []
        try each(sql, values) { stmt in
            let n = sqlite_nio_sqlite3_column_count(stmt)
            var row: [String: SQLValue] = [:]
            for i in 0..<n { row[String(cString: sqlite_nio_sqlite3_column_name(stmt, i))] = column(stmt, i) }
            rows.append(row)
        }
        return rows
    }

    func run(_ sql: String, _ values: [SQLValue] = []) throws {
        try each(sql, values) { _ in }
    }

    /// Runs several statements with no parameters (schema scripts).
    func script(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite_nio_sqlite3_exec(handle, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let message = err.map { String(cString: $0) } ?? "code \(rc)"
            sqlite_nio_sqlite3_free(err)
            throw PolyglotError(.engineFailure, "SQLite schema statement failed: \(message).", fix: "Check the data map's dataset definitions.")
        }
    }

    /// Whether SQLite says the statement cannot change the database.
    func isReadOnly(_ sql: String) throws -> Bool {
        sqlite_nio_sqlite3_stmt_readonly(try prepare(sql)) != 0
    }

    var changes: Int { Int(sqlite_nio_sqlite3_changes64(handle)) }
    var lastInsertRowID: Int64 { sqlite_nio_sqlite3_last_insert_rowid(handle) }
    var inTransaction: Bool { sqlite_nio_sqlite3_get_autocommit(handle) == 0 }
}

/// Lets a connection cross tasks; every use is serialized by its pool.
final class ConnectionBox: @unchecked Sendable {
    let connection: SQLiteConnection
    init(_ c: SQLiteConnection) { connection = c }
}

/// A lock that waits by suspending, so holding it across `await` blocks no thread.
final class AsyncLock: Sendable {
    private struct State { var locked = false; var waiters: [CheckedContinuation<Void, Never>] = [] }
    private let state = Mutex(State())

    func lock() async {
        let acquired = state.withLock { s -> Bool in
            if !s.locked { s.locked = true; return true }
            return false
        }
        if acquired { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if !s.locked { s.locked = true; return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func unlock() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.locked = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
