import Foundation
import Logging
import Polyglot
import PolyglotVectorIndex
import Synchronization

/// Actions to run after a commit, in order. Guarded by the engine's write lock, which every user holds.
final class PostCommit: @unchecked Sendable {
    private var actions: [() throws -> Void] = []
    var count: Int { actions.count }
    func add(_ action: @escaping () throws -> Void) { actions.append(action) }
    func truncate(to n: Int) { if actions.count > n { actions.removeLast(actions.count - n) } }
    func run(_ logger: Logger) {
        for action in actions {
            do { try action() } catch { logger.error("vector index update failed after commit; it will be rebuilt at next open", metadata: ["error": "\(error)"]) }
        }
        actions.removeAll()
    }
}

/// The HNSW index of each vectors table, by table name.
final class VectorIndexes: Sendable {
    private let map = Mutex<[String: (index: HNSWIndex, dataset: String)]>([:])
    func get(_ table: String) -> HNSWIndex? { map.withLock { $0[table]?.index } }
    func set(_ table: String, _ index: HNSWIndex, dataset: String) { map.withLock { $0[table] = (index, dataset) } }
    func remove(_ table: String) -> HNSWIndex? { map.withLock { $0.removeValue(forKey: table)?.index } }
    var all: [(table: String, index: HNSWIndex, dataset: String)] { map.withLock { $0.map { ($0.key, $0.value.index, $0.value.dataset) } } }
}

extension SQLiteEngine {
    func indexFile(_ table: String) -> String { path + "." + table + ".hnsw" }

    /// What an index file must have been saved with to be current: the table's row count and the last position
    /// the engine's outbox sequence handed out. Every write of documents or vectors through Polyglot moves the position,
    /// also to datasets that append no events (a relayed copy); a raw SQL insert or delete on the table moves the count. (A raw SQL
    /// UPDATE of a vector is not detected: delete the `.hnsw` file to rebuild.) Any write to the engine after the
    /// save makes the file stale, so after a crash the index is rebuilt from the table.
    func indexStamp(table: String, dataset: String, on c: SQLiteConnection, rows: Int? = nil) throws -> String {
        let count = try rows ?? Int(c.query("SELECT count(*) FROM \(SQLFilter.quoteIdentifier(table))").first?.first?.int ?? 0)
        let last = try c.query("SELECT seq FROM sqlite_sequence WHERE name = '_polyglot_outbox'").first?.first?.int ?? 0
        return "v2 rows=\(count) last=\(last)"
    }

    /// Loads the table's index from its file when the file is current, or rebuilds it from the table.
    func openVectorIndex(table: String, dataset: String, dimension: Int, metric: VectorMetric, index settings: VectorIndexSpec) async throws {
        let config = HNSWConfiguration(dimension: dimension, metric: metric, m: settings.m,
                                       efConstruction: settings.efConstruction, efSearch: settings.efSearch)
        let file = indexFile(table)
        try await write { c in
            let stamp = try indexStamp(table: table, dataset: dataset, on: c)
            if !temporary, let saved = try? String(contentsOfFile: file + ".stamp", encoding: .utf8), saved == stamp {
                do {
                    let loaded = try HNSWIndex.load(from: file)
                    if loaded.configuration.dimension == config.dimension, loaded.configuration.metric == config.metric,
                       loaded.configuration.m == config.m, loaded.configuration.efConstruction == config.efConstruction {
                        vectorIndexes.set(table, loaded, dataset: dataset)
                        logger.debug("vector index loaded", metadata: ["table": "\(table)", "vectors": "\(loaded.count)"])
                        return
                    }
                } catch {
                    logger.warning("vector index file unusable; rebuilding from SQLite", metadata: ["file": "\(file)", "error": "\(error)"])
                }
            }
            let index = try HNSWIndex(config)
            let total = Int(try c.query("SELECT count(*) FROM \(SQLFilter.quoteIdentifier(table))").first?.first?.int ?? 0)
            index.reserveCapacity(total)
            var batch: [(id: String, vector: [Float])] = []
            var done = 0
            let started = ContinuousClock.now
            try c.each("SELECT id, vector FROM \(SQLFilter.quoteIdentifier(table))") { stmt in
                batch.append((c.column(stmt, 0).string ?? "", VectorBlob.decode(c.columnData(stmt, 1))))
                if batch.count == 10_000 {
                    // A rebuild happens while the engine opens, so it may use every core.
                    try index.upsert(batch, threads: 0)
                    done += batch.count
                    batch.removeAll(keepingCapacity: true)
                    logger.info("rebuilding vector index", metadata: ["table": "\(table)", "done": "\(done)", "total": "\(total)"])
                }
            }
            if !batch.isEmpty { try index.upsert(batch, threads: 0) }
            vectorIndexes.set(table, index, dataset: dataset)
            if total > 0 {
                logger.info("vector index rebuilt", metadata: ["table": "\(table)", "vectors": "\(total)", "took": "\(ContinuousClock.now - started)"])
            }
        }
    }

    /// Saves every index beside the database with the stamp it is current at. Called under the write lock.
    func saveVectorIndexes() {
        for (table, index, dataset) in vectorIndexes.all {
            let file = indexFile(table)
            do {
                // The count is the index's own, so an index that missed a raw SQL change is saved as stale.
                let stamp = try indexStamp(table: table, dataset: dataset, on: writerConnection, rows: index.count)
                try? FileManager.default.removeItem(atPath: file + ".stamp")
                try index.save(to: file)
                try stamp.write(toFile: file + ".stamp", atomically: true, encoding: .utf8)
            } catch {
                logger.warning("could not save vector index; it will be rebuilt at next open", metadata: ["file": "\(file)", "error": "\(error)"])
            }
        }
    }
}
