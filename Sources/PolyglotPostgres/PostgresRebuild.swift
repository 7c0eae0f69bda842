import Foundation
import Polyglot
import PostgresNIO

extension PostgresEngine {
    /// The tables a documents dataset has on this engine: its own (with the search column), then its vectors and edges.
    static let documentTableSuffixes = ["", "__vectors", "__edges"]

    public func replaceDataset(_ live: DatasetSpec, with shadow: DatasetSpec) async throws {
        try await write { c in
            let existing = try await tables(c, [live.name, shadow.name].flatMap { n in Self.documentTableSuffixes.map { n + $0 } })
            guard existing.contains(shadow.name) else {
                throw PolyglotError(.notFound, "Engine '\(spec.name)' has no table '\(shadow.name)' to swap in for '\(live.name)'.", fix: "Run the rebuild again.")
            }
            for suffix in Self.documentTableSuffixes where existing.contains(live.name + suffix) {
                try await exec(c, "DROP TABLE \(table(live.name + suffix)) CASCADE")
            }
            for suffix in Self.documentTableSuffixes where existing.contains(shadow.name + suffix) {
                // Index names carry the dataset's name (the primary key's too): give them the live names.
                var q = PGQuery()
                q.sql = "SELECT indexname FROM pg_indexes WHERE schemaname = \(q.bind(settings.schema)) AND tablename = \(q.bind(shadow.name + suffix))"
                let indexes = try await fetch(c, q) { try $0.decode(String.self) }
                for index in indexes where index.hasPrefix(shadow.name) {
                    let renamed = live.name + index.dropFirst(shadow.name.count)
                    try await exec(c, "ALTER INDEX \(table(index)) RENAME TO \(PGQuery.ident(renamed))")
                }
                try await exec(c, "ALTER TABLE \(table(shadow.name + suffix)) RENAME TO \(PGQuery.ident(live.name + suffix))")
            }
            // The schema record moves with the tables, so the next start sees the new copy's definition.
            var d = PGQuery()
            d.sql = "DELETE FROM \(table("_polyglot_schema")) WHERE dataset = \(d.bind(live.name))"
            try await execute(c, d)
            var m = PGQuery()
            m.sql = "UPDATE \(table("_polyglot_schema")) SET dataset = \(m.bind(live.name)), updated_at = now() WHERE dataset = \(m.bind(shadow.name))"
            try await execute(c, m)
        }
    }

    public func dropDataset(_ dataset: DatasetSpec) async throws {
        try await write { c in
            for suffix in Self.documentTableSuffixes { try await exec(c, "DROP TABLE IF EXISTS \(table(dataset.name + suffix)) CASCADE") }
            var d = PGQuery()
            d.sql = "DELETE FROM \(table("_polyglot_schema")) WHERE dataset = \(d.bind(dataset.name))"
            try await execute(c, d)
        }
    }

    /// Which of `names` are tables in this engine's schema.
    private func tables(_ c: PostgresConnection, _ names: [String]) async throws -> Set<String> {
        var q = PGQuery()
        q.sql = "SELECT tablename FROM pg_tables WHERE schemaname = \(q.bind(settings.schema)) AND tablename = ANY(\(q.bind(names))::text[])"
        return Set(try await fetch(c, q) { try $0.decode(String.self) })
    }
}
