import Foundation
import Logging
import Polyglot
import PostgresNIO

/// putMany in batches, from one task and from 4 concurrent tasks; the documents are built before the clock starts
/// (serializing and validating them is inside putMany, so it is counted). Then two raw diagnostic peers, one writer:
/// COPY of the same documents into a twin table with the same indexes (`LIKE docs INCLUDING ALL`: primary key, GIN
/// jsonb_path_ops, the two field expression indexes) and into a plain table (primary key only). Neither writes an
/// outbox row, which putMany does in the same statement.
func bulkBenchmark(_ o: BenchOptions, _ docs: DocumentCollection, _ raw: PostgresClient) async throws {
    print("\n== bulk load: db.documents(\"docs\").putMany, \(o.bulkDocs) new documents per run, batches of \(o.batch) (one statement each)")
    print("   side                                          writers   seconds   docs/s      (target >= 50,000 docs/s)")
    func report(_ name: String, _ writers: Int, _ secs: Double, target: Bool) {
        let rate = Double(o.bulkDocs) / secs
        print("   \(pad(name, 45)) \(lpad(String(writers), 7))   \(lpad(fmt(secs, 2), 7))   \(lpad(fmt(rate), 8))    \(target ? (rate >= 50_000 ? "met" : "NOT met") : "(diagnostic)")")
    }
    func batches(_ prefix: String) -> [[(id: String, body: JSON)]] {
        stride(from: 0, to: o.bulkDocs, by: o.batch).map { b in
            (b..<min(o.bulkDocs, b + o.batch)).map { (id: prefix + String($0), body: sampleDocument($0)) }
        }
    }
    for (run, writers) in [1, 4].enumerated() {
        let work = batches("b\(run)_")
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    for i in stride(from: w, to: work.count, by: writers) { try await docs.putMany(work[i]) }
                }
            }
            try await group.waitForAll()
        }
        report("Polyglot putMany", writers, (ContinuousClock.now - start).seconds, target: true)
    }

    _ = try await raw.query("CREATE TABLE \(unescaped: benchSchema).docs_twin (LIKE \(unescaped: benchSchema).docs INCLUDING ALL)")
    _ = try await raw.query("CREATE TABLE \(unescaped: benchSchema).docs_plain (id text PRIMARY KEY, version bigint NOT NULL, body jsonb NOT NULL)")
    let logger = Logger(label: "bench-copy")
    for (table, label) in [("docs_twin", "raw COPY, same indexes, no outbox"), ("docs_plain", "raw COPY, primary key only, no outbox")] {
        let work = batches("c_")
        let start = ContinuousClock.now
        var version: Int64 = 0
        for batch in work {
            // COPY text format; the sample documents hold no tab, newline or backslash, so no escaping is needed.
            var buffer = ByteBuffer()
            for (id, body) in batch {
                version += 1
                buffer.writeString(id); buffer.writeString("\t\(version)\t")
                buffer.writeBytes(body.serialized()); buffer.writeString("\n")
            }
            let data = buffer
            try await raw.withConnection { c in
                // copyFrom quotes the table name as one identifier, so the schema comes from search_path.
                _ = try await c.query("SET search_path TO \(unescaped: benchSchema)", logger: logger)
                try await c.copyFrom(table: table, columns: ["id", "version", "body"], logger: logger) { writer in
                    try await writer.write(data)
                }
            }
        }
        report(label, 1, (ContinuousClock.now - start).seconds, target: false)
    }
}
