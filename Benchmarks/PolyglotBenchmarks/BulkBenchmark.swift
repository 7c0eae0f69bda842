import Foundation
import Polyglot
import PolyglotSQLite
import VaporCSQLite

/// Benchmark 2: bulk insert of fresh documents in batches, Polyglot `putMany` against the raw C API.
///
/// Every round inserts the same `cfg.bulkDocs` documents into fresh, empty tables:
/// - Polyglot: `TypedDocumentCollection.putMany` of `cfg.bulkBatch` documents per call (one transaction each),
///   into dataset `bulk_<round>`.
/// - raw: one `BEGIN IMMEDIATE … COMMIT` per batch; per row JSONEncoder.encode, bind id/version/body,
///   step, reset; into `raw_bulk_<round>` (id TEXT PRIMARY KEY, version INTEGER, body TEXT).
/// - raw, same work: as raw, but also doing what Polyglot does per document: an outbox row holding the body
///   (its rowid becomes the version) and an upsert instead of a plain insert.
/// The order of the three sides rotates each round.
struct BulkBenchmark {
    let cfg: BenchConfig
    let db: Polyglot
    let raw: RawSQLite

    struct Result {
        var poly: [Double] = []
        var raw: [Double] = []
        var rawSameWork: [Double] = []
    }

    func batches() -> [[(id: String, value: Product)]] {
        let all = (0..<cfg.bulkDocs).map { i -> (id: String, value: Product) in
            let id = String(format: "b%07d", i)
            return (id, Product.make(i, id: id))
        }
        return stride(from: 0, to: all.count, by: cfg.bulkBatch).map { Array(all[$0..<min($0 + cfg.bulkBatch, all.count)]) }
    }

    func polyglot(_ batches: [[(id: String, value: Product)]], round: Int) async throws -> Double {
        let coll = try db.documents("bulk_\(round)", as: Product.self)
        let clock = ContinuousClock()
        let t0 = clock.now
        for batch in batches { try await coll.putMany(batch) }
        let seconds = Stats.nanoseconds(clock.now - t0) / 1e9
        let stored = try await coll.count()
        precondition(stored == cfg.bulkDocs, "bulk_\(round) holds \(stored) documents")
        return Double(cfg.bulkDocs) / seconds
    }

    func rawInsert(_ batches: [[(id: String, value: Product)]], round: Int) throws -> Double {
        let table = "raw_bulk_\(round)"
        try raw.exec("CREATE TABLE \"\(table)\" (id TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL)")
        let insert = try raw.prepare("INSERT INTO \"\(table)\"(id, version, body) VALUES (?, ?, ?)")
        defer { sqlite_nio_sqlite3_finalize(insert) }
        let clock = ContinuousClock()
        let t0 = clock.now
        var version: Int64 = 0
        for batch in batches {
            let encoder = JSONEncoder()
            try raw.exec("BEGIN IMMEDIATE")
            for (id, value) in batch {
                let body = try encoder.encode(value)
                version += 1
                sqlite_nio_sqlite3_bind_text64(insert, 1, id, UInt64(id.utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
                sqlite_nio_sqlite3_bind_int64(insert, 2, version)
                body.withUnsafeBytes {
                    _ = sqlite_nio_sqlite3_bind_text64(insert, 3, $0.baseAddress!.assumingMemoryBound(to: CChar.self), UInt64(body.count),
                                                       sqliteTransient, UInt8(SQLITE_UTF8))
                }
                guard sqlite_nio_sqlite3_step(insert) == SQLITE_DONE else { throw raw.fail("insert") }
                sqlite_nio_sqlite3_reset(insert)
            }
            try raw.exec("COMMIT")
        }
        let seconds = Stats.nanoseconds(clock.now - t0) / 1e9
        return Double(cfg.bulkDocs) / seconds
    }

    func rawSameWork(_ batches: [[(id: String, value: Product)]], round: Int) throws -> Double {
        let table = "raw_full_\(round)", outbox = "raw_outbox_\(round)"
        try raw.exec("""
            CREATE TABLE "\(table)" (id TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL);
            CREATE TABLE "\(outbox)" (position INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, key TEXT NOT NULL,
                                      op TEXT NOT NULL, payload BLOB, created_at REAL NOT NULL);
            """)
        let appendOutbox = try raw.prepare("INSERT INTO \"\(outbox)\"(dataset, key, op, payload, created_at) VALUES (?, ?, ?, ?, ?)")
        let upsert = try raw.prepare("""
            INSERT INTO "\(table)"(id, version, body) VALUES (?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET version = excluded.version, body = excluded.body
            """)
        defer { sqlite_nio_sqlite3_finalize(appendOutbox); sqlite_nio_sqlite3_finalize(upsert) }
        let clock = ContinuousClock()
        let t0 = clock.now
        for batch in batches {
            let encoder = JSONEncoder()
            try raw.exec("BEGIN IMMEDIATE")
            for (id, value) in batch {
                let body = try encoder.encode(value)
                sqlite_nio_sqlite3_bind_text64(appendOutbox, 1, table, UInt64(table.utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
                sqlite_nio_sqlite3_bind_text64(appendOutbox, 2, id, UInt64(id.utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
                sqlite_nio_sqlite3_bind_text64(appendOutbox, 3, "put", 3, sqliteTransient, UInt8(SQLITE_UTF8))
                body.withUnsafeBytes { _ = sqlite_nio_sqlite3_bind_blob64(appendOutbox, 4, $0.baseAddress!, UInt64(body.count), sqliteTransient) }
                sqlite_nio_sqlite3_bind_double(appendOutbox, 5, Date().timeIntervalSince1970)
                guard sqlite_nio_sqlite3_step(appendOutbox) == SQLITE_DONE else { throw raw.fail("outbox") }
                sqlite_nio_sqlite3_reset(appendOutbox)
                let version = sqlite_nio_sqlite3_last_insert_rowid(raw.db)

                sqlite_nio_sqlite3_bind_text64(upsert, 1, id, UInt64(id.utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
                sqlite_nio_sqlite3_bind_int64(upsert, 2, version)
                body.withUnsafeBytes {
                    _ = sqlite_nio_sqlite3_bind_text64(upsert, 3, $0.baseAddress!.assumingMemoryBound(to: CChar.self), UInt64(body.count),
                                                       sqliteTransient, UInt8(SQLITE_UTF8))
                }
                guard sqlite_nio_sqlite3_step(upsert) == SQLITE_DONE else { throw raw.fail("upsert") }
                sqlite_nio_sqlite3_reset(upsert)
            }
            try raw.exec("COMMIT")
        }
        let seconds = Stats.nanoseconds(clock.now - t0) / 1e9
        return Double(cfg.bulkDocs) / seconds
    }

    func run() async throws -> Result {
        let batches = batches()
        var r = Result()
        for round in 0..<cfg.bulkRounds {
            var p = 0.0, q = 0.0, s = 0.0
            switch round % 3 {
            case 0:
                p = try await polyglot(batches, round: round); q = try rawInsert(batches, round: round); s = try rawSameWork(batches, round: round)
            case 1:
                q = try rawInsert(batches, round: round); s = try rawSameWork(batches, round: round); p = try await polyglot(batches, round: round)
            default:
                s = try rawSameWork(batches, round: round); p = try await polyglot(batches, round: round); q = try rawInsert(batches, round: round)
            }
            r.poly.append(p); r.raw.append(q); r.rawSameWork.append(s)
            print("  round \(round + 1)/\(cfg.bulkRounds): polyglot \(Format.rate(p)), raw \(Format.rate(q)), raw same work \(Format.rate(s))")
        }
        return r
    }
}
