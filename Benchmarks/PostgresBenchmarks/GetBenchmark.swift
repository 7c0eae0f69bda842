import Foundation
import Polyglot
import PostgresNIO

/// The raw side: a named prepared statement on postgres-nio's pool, decoding the same two columns as the engine.
struct GetDocument: PostgresPreparedStatement {
    static let sql = "SELECT version, body FROM \(benchSchema).docs WHERE id = $1"
    typealias Row = (Int64, ByteBuffer)
    var id: String
    func makeBindings() -> PostgresBindings {
        var b = PostgresBindings()
        b.append(id)
        return b
    }
    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// Builds the same `Document` the facade returns, from the same bytes (JSONB binary format: a version byte, then text).
@inline(never)
func rawGet(_ client: PostgresClient, _ id: String) async throws {
    var found = false
    for try await (version, body) in try await client.execute(GetDocument(id: id)) {
        let doc = Document(id: id, version: version, data: Data(body.readableBytesView.dropFirst()))
        found = !doc.data.isEmpty
    }
    if !found { throw BenchError("raw: document \(id) not found") }
}

/// A diagnostic third side: the same SQL as an unnamed (parsed and planned per call) statement, as the engine sends it.
@inline(never)
func rawUnpreparedGet(_ client: PostgresClient, _ id: String) async throws {
    var binds = PostgresBindings()
    binds.append(id)
    var found = false
    for try await (version, body) in try await client.query(PostgresQuery(unsafeSQL: GetDocument.sql, binds: binds)).decode((Int64, ByteBuffer).self) {
        let doc = Document(id: id, version: version, data: Data(body.readableBytesView.dropFirst()))
        found = !doc.data.isEmpty
    }
    if !found { throw BenchError("raw unprepared: document \(id) not found") }
}

@inline(never)
func polyglotGet(_ docs: DocumentCollection, _ id: String) async throws {
    guard try await docs.get(id) != nil else { throw BenchError("polyglot: document \(id) not found") }
}

/// Runs `op` from `tasks` concurrent tasks for `seconds`; returns operations per second.
func throughput(tasks: Int, seconds: Double, keys: Int, _ op: @escaping @Sendable (String) async throws -> Void) async throws -> Double {
    let start = ContinuousClock.now
    let deadline = start + .milliseconds(Int(seconds * 1000))
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for t in 0..<tasks {
            group.addTask {
                var n = 0
                var k = (t * 7919) % keys
                while ContinuousClock.now < deadline {
                    for _ in 0..<8 {
                        k = (k &+ 104_729) % keys
                        try await op("d\(k)")
                        n += 1
                    }
                }
                return n
            }
        }
        return try await group.reduce(0, +)
    }
    return Double(total) / (ContinuousClock.now - start).seconds
}

func getBenchmark(_ o: BenchOptions, _ docs: DocumentCollection, _ raw: PostgresClient) async throws {
    // The documents: ids d0..d<docs-1>. The bulk benchmark loads more, under other ids; this loads its own.
    for b in stride(from: 0, to: o.docs, by: 1000) {
        try await docs.putMany((b..<min(o.docs, b + 1000)).map { (id: "d\($0)", body: sampleDocument($0)) })
    }
    _ = try await raw.query("ANALYZE \(unescaped: benchSchema).docs")
    print("\n== get by id: Polyglot db.documents(\"docs\").get(id) vs raw postgres-nio prepared statement (PostgresClient.execute)")
    print("   \(o.docs) documents, \(o.rounds) rounds x \(fmt(o.seconds, 1)) s per side, the sides rotate which goes first; medians of rounds")
    print("   diagnostic third side: raw postgres-nio with the same SQL unprepared (client.query, an unnamed statement, as the engine sends it)")
    print("   tasks   raw prepared   polyglot   ratio   per-round ratios              raw unprepared   polyglot/unprepared   (target ratio >= 0.9)")
    typealias Side = @Sendable (String) async throws -> Void
    let sides: [Side] = [{ id in try await rawGet(raw, id) }, { id in try await polyglotGet(docs, id) }, { id in try await rawUnpreparedGet(raw, id) }]
    for tasks in [1, 16] {
        // Warm every side: connections open, statement prepared, caches hot.
        for side in sides { _ = try await throughput(tasks: tasks, seconds: 0.5, keys: o.docs, side) }
        var rates: [[Double]] = [[], [], []]
        for round in 0..<o.rounds {
            for j in 0..<sides.count {
                let s = (round + j) % sides.count
                rates[s].append(try await throughput(tasks: tasks, seconds: o.seconds, keys: o.docs, sides[s]))
            }
        }
        let ratios = zip(rates[1], rates[0]).map { $0 / $1 }
        let ratio = median(ratios)
        let vsUnprepared = median(zip(rates[1], rates[2]).map { $0 / $1 })
        print("   \(lpad(String(tasks), 5))   \(lpad(fmt(median(rates[0])), 12))   \(lpad(fmt(median(rates[1])), 8))   \(fmt(ratio, 3))   \(pad(ratios.map { fmt($0, 2) }.joined(separator: " "), 29)) \(lpad(fmt(median(rates[2])), 14))   \(lpad(fmt(vsUnprepared, 3), 19))   \(ratio >= 0.9 ? "met" : "NOT met")")
    }
}

func sampleDocument(_ i: Int) -> JSON {
    ["name": .string("Product \(i)"), "price": .number(Double(i % 500) + 0.99), "category": .string(["shoes", "hats", "bags", "coats"][i % 4]),
     "tags": ["sale", .string("t\(i % 17)")], "stock": .number(Double(i % 100))]
}
