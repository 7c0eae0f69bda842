import Foundation
import Logging
import Polyglot
import PostgresNIO

/// The relay catching up a documents copy on another engine (a second schema on the same server), against a
/// hand-written relay on the raw driver doing the least the same copy needs.
///
/// - Each round writes `relayEvents` new outbox events (puts; in `--relay-rewrite` of them a key is written a
///   second time) with the relay stopped, then times `relay.catchUp()` until the copy holds them all.
/// - Then 200 single puts with the relay running, each timed until a read of the copy sees it (`relayLag`).
/// - The peer reads the same outbox in position order, 500 at a time, and upserts each page into a twin of the copy's
///   table (same columns, generated search column and indexes) with one `INSERT ... SELECT FROM unnest(...) ON
///   CONFLICT` in a transaction. It keeps no checkpoint, lease, per-key versions or snapshot windows, so it is a
///   floor, not an equal.
func relayBenchmark(_ o: BenchOptions, registry: EngineRegistry, logger: Logger, _ raw: PostgresClient) async throws {
    let source = benchSchema + "_rs", target = benchSchema + "_rt"
    let map = DataMap(engines: [EngineSpec(name: "src", kind: "postgres", url: o.url, options: ["schema": source, "poolSize": String(o.poolSize)]),
                                EngineSpec(name: "dst", kind: "postgres", url: o.url, options: ["schema": target, "poolSize": String(o.poolSize)])],
                      datasets: [DatasetSpec(name: "articles", model: .documents, engine: "src",
                                             projections: [.search(on: "dst", fields: ["title"])])])
    let db = try await Polyglot(map: map, registry: registry, logger: logger)
    do {
        try await relayRounds(o, db, raw, source: source, target: target)
    } catch {
        try? await db.close()
        _ = try? await raw.query("DROP SCHEMA IF EXISTS \(unescaped: source) CASCADE")
        _ = try? await raw.query("DROP SCHEMA IF EXISTS \(unescaped: target) CASCADE")
        throw error
    }
    try await db.close()
    _ = try await raw.query("DROP SCHEMA IF EXISTS \(unescaped: source) CASCADE")
    _ = try await raw.query("DROP SCHEMA IF EXISTS \(unescaped: target) CASCADE")
}

private func relayRounds(_ o: BenchOptions, _ db: Polyglot, _ raw: PostgresClient, source: String, target: String) async throws {
    let articles = try db.documents("articles")
    let relay = db.relay(RelayOptions(batchSize: 500, holder: "bench"))
    _ = try await raw.query("CREATE TABLE \(unescaped: target).articles_twin (LIKE \(unescaped: target).articles INCLUDING ALL)")

    print("\n== relay catch-up: \(o.relayEvents) outbox events (documents, \(o.relayRewrite) of them rewrites of a key) into a copy on another schema, with a search column")
    print("   round   relay s   relay events/s   raw s   raw events/s   relay/raw time")
    var ratios: [Double] = []
    var last: Int64 = 0
    for round in 0..<o.rounds {
        let fresh = o.relayEvents - o.relayRewrite
        var batch: [(id: String, body: JSON)] = (0..<fresh).map { i in (id: "r\(round)_\(i)", body: ["title": .string("article \(i) of round \(round) about relays"), "n": .number(Double(i))]) }
        batch += (0..<o.relayRewrite).map { i in (id: "r\(round)_\(i)", body: ["title": .string("article \(i) of round \(round), rewritten"), "n": .number(Double(i))]) }
        for chunk in stride(from: 0, to: fresh, by: 1000) { _ = try await articles.putMany(Array(batch[chunk..<min(fresh, chunk + 1000)])) }
        for chunk in stride(from: fresh, to: batch.count, by: 1000) { _ = try await articles.putMany(Array(batch[chunk..<min(batch.count, chunk + 1000)])) }

        var start = ContinuousClock.now
        let applied = try await relay.catchUp()
        let relaySeconds = (ContinuousClock.now - start).seconds
        guard applied == o.relayEvents else { throw BenchError("relay: applied \(applied) events, expected \(o.relayEvents)") }

        start = ContinuousClock.now
        let copied = try await rawRelay(raw, from: source, to: "\(target).articles_twin", after: &last)
        let rawSeconds = (ContinuousClock.now - start).seconds
        guard copied == o.relayEvents else { throw BenchError("raw relay: copied \(copied) events, expected \(o.relayEvents)") }
        ratios.append(relaySeconds / rawSeconds)
        print("   \(lpad(String(round + 1), 5))   \(lpad(fmt(relaySeconds, 3), 7))   \(lpad(fmt(Double(applied) / relaySeconds), 14))   \(lpad(fmt(rawSeconds, 3), 5))   \(lpad(fmt(Double(copied) / rawSeconds), 12))   \(lpad(fmt(relaySeconds / rawSeconds, 2), 14))")
    }
    let copies = try await raw.query("SELECT (SELECT count(*) FROM \(unescaped: target).articles)::int8, (SELECT count(*) FROM \(unescaped: target).articles_twin)::int8").collect().first?.decode((Int64, Int64).self)
    guard let copies, copies.0 == copies.1 else { throw BenchError("the copy and the twin differ: \(String(describing: copies))") }
    print("   median relay/raw time \(fmt(median(ratios), 2))x (lower is better); copy and twin both hold \(copies.0) documents")
    await relay.release()   // hand the copy over to the running relay below at once
    let lags = try await relayLag(db, articles, writes: 200).sorted()
    print("   lag with the relay running, 200 single puts: p50 \(fmt(lags[lags.count / 2], 2)) ms, p99 \(fmt(lags[lags.count * 99 / 100], 2)) ms")
}

/// The hand-written relay: pages of 500 outbox events in position order, each upserted in one statement and
/// transaction. Returns the events copied; `after` is its position cursor.
func rawRelay(_ raw: PostgresClient, from source: String, to table: String, after: inout Int64) async throws -> Int {
    var copied = 0
    let logger = Logger(label: "bench-raw-relay")
    while true {
        let from = after
        let rows = try await raw.query("SELECT position, key, payload::text FROM \(unescaped: source)._polyglot_outbox WHERE position > \(from) ORDER BY position LIMIT 500")
            .collect().map { try $0.decode((Int64, String, String).self) }
        guard let lastRow = rows.last else { return copied }
        // One row per key (its last event), as an upsert cannot touch a row twice.
        var latest: [String: (Int64, String)] = [:]
        for (p, k, body) in rows { latest[k] = (p, body) }
        let ids = Array(latest.keys), versions = ids.map { latest[$0]!.0 }, bodies = ids.map { latest[$0]!.1 }
        try await raw.withConnection { c in
            _ = try await c.query("BEGIN", logger: logger)
            _ = try await c.query("INSERT INTO \(unescaped: table)(id, version, body) SELECT * FROM unnest(\(ids)::text[], \(versions)::int8[], \(bodies)::jsonb[]) ON CONFLICT (id) DO UPDATE SET version = excluded.version, body = excluded.body", logger: logger)
            _ = try await c.query("COMMIT", logger: logger)
        }
        copied += rows.count
        after = lastRow.0
    }
}

/// Lag with the relay running in this process: one put at a time, timed from its return until a search of the copy
/// inside `db.reading(atLeast:)` answers (LISTEN/NOTIFY wakes the relay; the relay's commit wakes the read).
func relayLag(_ db: Polyglot, _ articles: DocumentCollection, writes: Int) async throws -> [Double] {
    let relay = db.relay(RelayOptions(holder: "bench-live"))
    let running = Task { try await relay.run() }
    defer { running.cancel() }
    var lags: [Double] = []
    for i in 0..<writes {
        let token = try await articles.put("lag\(i)", ["title": .string("lag probe \(i)")])
        let start = ContinuousClock.now
        _ = try await db.reading(atLeast: token, maxWait: .seconds(10)) { try await articles.search("probe", limit: 1) }
        lags.append((ContinuousClock.now - start).seconds * 1000)
    }
    return lags
}
