import Foundation
import Polyglot

/// putMany in batches, from one task and from 4 concurrent tasks; the documents are built before the clock starts
/// (serializing and validating them is inside putMany, so it is counted).
func bulkBenchmark(_ o: BenchOptions, _ docs: DocumentCollection) async throws {
    print("\n== bulk load: db.documents(\"docs\").putMany, \(o.bulkDocs) new documents per run, batches of \(o.batch) (one statement each)")
    print("   writers   seconds   docs/s      (target >= 50,000 docs/s)")
    for (run, writers) in [1, 4].enumerated() {
        let prefix = "b\(run)_"
        let batches: [[(id: String, body: JSON)]] = stride(from: 0, to: o.bulkDocs, by: o.batch).map { b in
            (b..<min(o.bulkDocs, b + o.batch)).map { (id: prefix + String($0), body: sampleDocument($0)) }
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    for i in stride(from: w, to: batches.count, by: writers) { try await docs.putMany(batches[i]) }
                }
            }
            try await group.waitForAll()
        }
        let secs = (ContinuousClock.now - start).seconds
        let rate = Double(o.bulkDocs) / secs
        print("   \(lpad(String(writers), 7))   \(lpad(fmt(secs, 2), 7))   \(lpad(fmt(rate), 8))    \(rate >= 50_000 ? "met" : "NOT met")")
    }
}
