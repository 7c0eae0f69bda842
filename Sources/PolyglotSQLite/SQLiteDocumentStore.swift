import Foundation
import Polyglot
import PolyglotVectorIndex

/// Documents as JSON text in `<dataset>(id, version, body)`. Search, vectors and graph projections on the
/// same engine are updated in the same transaction as the document, so they are never behind it.
struct SQLiteDocumentStore: DocumentStore {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    let table: String
    /// Built once: the hot paths only look them up in the connection's statement cache.
    let getSQL: String
    let upsertSQL: String

    init(engine: SQLiteEngine, spec: DatasetSpec) {
        self.engine = engine
        self.spec = spec
        table = SQLFilter.quoteIdentifier(spec.name)
        getSQL = "SELECT version, body FROM \(table) WHERE id = ?"
        upsertSQL = "INSERT INTO \(table)(id, version, body) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET version = excluded.version, body = excluded.body RETURNING rowid"
    }

    func put(_ documents: [(id: String, data: Data)]) async throws -> [Int64] {
        let upsert = upsertSQL
        let projections = ProjectionWriter(spec: spec, engine: engine)
        return try await engine.write { c, post in
            var versions: [Int64] = []
            versions.reserveCapacity(documents.count)
            for (id, data) in documents {
                let version = try engine.recordChange(c, spec, key: id, op: "put", payload: data)
                var rowid: Int64 = 0
                try c.each(upsert, [.text(id), .integer(version), .textBytes(data)]) { rowid = c.int64($0, 0) }
                if projections.any { try projections.apply(c, post, id: id, rowid: rowid, data: data, version: version) }
                versions.append(version)
            }
            return versions
        }
    }

    func get(_ id: String) async throws -> Document? {
        let sql = getSQL
        return try engine.read { c in
            var doc: Document?
            try c.each(sql, [.text(id)]) { stmt in
                doc = Document(id: id, version: c.int64(stmt, 0), data: c.columnData(stmt, 1))
            }
            return doc
        }
    }

    func get(_ ids: [String]) async throws -> [Document] {
        guard !ids.isEmpty else { return [] }
        let sql = "SELECT id, version, body FROM \(table) WHERE id IN (SELECT value FROM json_each(?))"
        let list = JSON.array(ids.map { .string($0) }).text
        return try engine.read { c in try rows(c, sql, [.text(list)]) }
    }

    func rows(_ c: SQLiteConnection, _ sql: String, _ binds: [SQLValue]) throws -> [Document] {
        var out: [Document] = []
        try c.each(sql, binds) { stmt in
            out.append(Document(id: c.column(stmt, 0).string ?? "", version: c.column(stmt, 1).int ?? 0, data: c.columnData(stmt, 2)))
        }
        return out
    }

    func delete(_ id: String) async throws -> ConsistencyToken? {
        let projections = ProjectionWriter(spec: spec, engine: engine)
        return try await engine.write { c, post -> ConsistencyToken? in
            let rowid = try c.query("SELECT rowid FROM \(table) WHERE id = ?", [.text(id)]).first?.first?.int
            guard let rowid else { return nil }
            let version = try engine.recordChange(c, spec, key: id, op: "delete", payload: nil)
            try projections.remove(c, post, id: id, rowid: rowid)
            try c.run("DELETE FROM \(table) WHERE id = ?", [.text(id)])
            return engine.token(version)
        }
    }

    func query(_ query: DocumentQuery) async throws -> [Document] {
        var f = SQLFilter(.json(column: "body"))
        let whereSQL = try f.translate(query.filter)
        var sql = "SELECT id, version, body FROM \(table) WHERE \(whereSQL)" + (query.after == nil ? "" : " AND id > ?") + f.orderBy(query.sort, tiebreak: "id")
        var binds = f.binds
        if let after = query.after { binds.append(.text(after)) }
        if let limit = query.limit { sql += " LIMIT ?"; binds.append(.integer(Int64(limit))) } else if query.offset > 0 { sql += " LIMIT -1" }
        if query.offset > 0 { sql += " OFFSET ?"; binds.append(.integer(Int64(query.offset))) }
        return try engine.read { c in try rows(c, sql, binds) }
    }

    func count(_ filter: Filter) async throws -> Int {
        var f = SQLFilter(.json(column: "body"))
        let whereSQL = try f.translate(filter)
        let binds = f.binds
        return try engine.read { c in Int(try c.query("SELECT count(*) FROM \(table) WHERE \(whereSQL)", binds).first?.first?.int ?? 0) }
    }
}

/// Applies a documents dataset's same-engine projections inside the write transaction.
struct ProjectionWriter {
    let spec: DatasetSpec
    let search: ProjectionSpec?
    let vectors: ProjectionSpec?
    let graph: ProjectionSpec?
    let vectorIndex: HNSWIndex?

    init(spec: DatasetSpec, engine: SQLiteEngine) {
        self.spec = spec
        vectorIndex = engine.vectorIndexes.get(spec.name + "__vectors")
        search = spec.projection(.search).flatMap { $0.engine == spec.engine ? $0 : nil }
        vectors = spec.projection(.vectors).flatMap { $0.engine == spec.engine ? $0 : nil }
        graph = spec.projection(.graph).flatMap { $0.engine == spec.engine ? $0 : nil }
    }

    var any: Bool { search != nil || vectors != nil || graph != nil }

    func apply(_ c: SQLiteConnection, _ post: PostCommit, id: String, rowid: Int64, data: Data, version: Int64) throws {
        let body = try JSON(parsing: data)
        let q = SQLFilter.quoteIdentifier
        if let search {
            try c.run("DELETE FROM \(q(spec.name + "__fts")) WHERE rowid = ?", [.integer(rowid)])
            let cols = search.fields.indices.map { "f\($0)" }.joined(separator: ", ")
            let marks = search.fields.map { _ in "?" }.joined(separator: ", ")
            try c.run("INSERT INTO \(q(spec.name + "__fts"))(rowid, \(cols)) VALUES (?, \(marks))",
                      [.integer(rowid)] + search.fields.map { .text(ProjectionSpec.text(body[FieldPath($0)])) })
        }
        // A projection embedded by the relay (a remote embedder) gets its vectors after the commit, from the relay.
        if let vectors, !vectors.isEmbeddedByRelay {
            if let vector = try vectors.embedding(of: body, id: id, dataset: spec.name) {
                try c.run("INSERT OR REPLACE INTO \(q(spec.name + "__vectors"))(id, vector) VALUES (?, ?)", [.text(id), .blob(VectorBlob.encode(vector))])
                if let vectorIndex { post.add { try vectorIndex.upsert(id, vector) } }
            } else {
                try c.run("DELETE FROM \(q(spec.name + "__vectors")) WHERE id = ?", [.text(id)])
                if let vectorIndex { post.add { vectorIndex.delete(id) } }
            }
        }
        if let graph, graph.edgeField != nil {
            let edges = q(spec.name + "__edges")
            try c.run("DELETE FROM \(edges) WHERE src = ?", [.text(id)])
            for t in graph.edgeTargets(of: body) {
                try c.run("INSERT OR REPLACE INTO \(edges)(src, dst, label, weight, version) VALUES (?, ?, ?, 1, ?)",
                          [.text(id), .text(t), .text(graph.edgeLabel ?? ""), .integer(version)])
            }
        }
    }

    func remove(_ c: SQLiteConnection, _ post: PostCommit, id: String, rowid: Int64) throws {
        let q = SQLFilter.quoteIdentifier
        if search != nil { try c.run("DELETE FROM \(q(spec.name + "__fts")) WHERE rowid = ?", [.integer(rowid)]) }
        if vectors != nil {
            try c.run("DELETE FROM \(q(spec.name + "__vectors")) WHERE id = ?", [.text(id)])
            if let vectorIndex { post.add { vectorIndex.delete(id) } }
        }
        if graph != nil { try c.run("DELETE FROM \(q(spec.name + "__edges")) WHERE src = ? OR dst = ?", [.text(id), .text(id)]) }
    }
}

/// Vectors stored as little-endian Float32 blobs.
enum VectorBlob {
    static func encode(_ v: [Float]) -> Data {
        v.withUnsafeBufferPointer { Data(buffer: $0) }
    }
    static func decode(_ d: Data) -> [Float] {
        d.withUnsafeBytes { raw in Array(raw.bindMemory(to: Float.self)) }
    }
}
