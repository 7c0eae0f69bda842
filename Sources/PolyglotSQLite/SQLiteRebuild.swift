import Foundation
import Polyglot

extension SQLiteEngine {
    /// The tables a documents dataset has on this engine: its own, then its search, vectors and edge tables.
    static let documentTableSuffixes = ["", "__fts", "__vectors", "__edges"]

    public func replaceDataset(_ live: DatasetSpec, with shadow: DatasetSpec) async throws {
        let q = SQLFilter.quoteIdentifier
        try await write { c, post in
            let tables = Set(try c.query("SELECT name FROM sqlite_master WHERE type = 'table'").compactMap { $0[0].string })
            guard tables.contains(shadow.name) else {
                throw PolyglotError(.notFound, "Engine '\(spec.name)' has no table '\(shadow.name)' to swap in for '\(live.name)'.", fix: "Run the rebuild again.")
            }
            for suffix in Self.documentTableSuffixes where tables.contains(live.name + suffix) {
                try c.run("DROP TABLE \(q(live.name + suffix))")
            }
            for suffix in Self.documentTableSuffixes where tables.contains(shadow.name + suffix) {
                // Indexes keep their names through a rename: drop the shadow's, the live ones are created below.
                let indexes = try c.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                                          [.text(shadow.name + suffix)]).compactMap { $0[0].string }
                for index in indexes { try c.run("DROP INDEX \(q(index))") }
                try c.run("ALTER TABLE \(q(shadow.name + suffix)) RENAME TO \(q(live.name + suffix))")
            }
            try c.script(try SQLiteSchema.script(for: live, existingColumns: try SQLiteSchema.columns(of: live.name, on: c)))
            // The in-memory vector index moves with its table; saved index files of either name are stale now.
            let liveTable = live.name + "__vectors", shadowTable = shadow.name + "__vectors"
            let files = [indexFile(liveTable), indexFile(shadowTable)]
            post.add { [vectorIndexes] in
                _ = vectorIndexes.remove(liveTable)
                if let moved = vectorIndexes.remove(shadowTable) { vectorIndexes.set(liveTable, moved, dataset: live.name) }
                for f in files { for ext in ["", ".stamp"] { try? FileManager.default.removeItem(atPath: f + ext) } }
            }
        }
    }

    public func dropDataset(_ dataset: DatasetSpec) async throws {
        let q = SQLFilter.quoteIdentifier
        try await write { c, post in
            for suffix in Self.documentTableSuffixes { try c.run("DROP TABLE IF EXISTS \(q(dataset.name + suffix))") }
            let table = dataset.name + "__vectors"
            let file = indexFile(table)
            post.add { [vectorIndexes] in
                _ = vectorIndexes.remove(table)
                for ext in ["", ".stamp"] { try? FileManager.default.removeItem(atPath: file + ext) }
            }
        }
    }
}
