import Foundation
import Polyglot
import PostgresNIO

/// Documents as JSONB in `<dataset>(id, version, body)`, with a GIN index for containment and an expression
/// index per declared field. A batch is one statement: the outbox events and the upserts commit together.
/// Same-engine projections (vectors, graph) are written in the same transaction; search is a generated column.
struct PostgresDocumentStore: DocumentStore {
    let engine: PostgresEngine
    let spec: DatasetSpec
    let table: String
    let getSQL: String

    init(engine: PostgresEngine, spec: DatasetSpec) {
        self.engine = engine
        self.spec = spec
        table = engine.table(spec.name)
        // Both columns as text: a prepared statement's rows come back in a format its row description does not
        // always state (postgres-nio's PreparedQuery), and text is the same bytes in either format.
        getSQL = "SELECT version::text, body::text FROM \(table) WHERE id = $1"
    }

    /// PostgreSQL's jsonb cannot hold U+0000; refuse it with a clear error instead of a server error.
    static func checkStorable(_ data: Data, id: String, dataset: String) throws {
        if data.contains(0) || data.range(of: Data("\\u0000".utf8)) != nil {
            throw PolyglotError(.malformedJSON, "Document '\(id)' of '\(dataset)' contains a NUL character (\\u0000), which PostgreSQL's JSONB cannot store.",
                                fix: "Remove NUL characters from the document's strings, or encode binary data as base64.")
        }
        if String(validating: data, as: UTF8.self) == nil {
            throw PolyglotError(.malformedJSON, "Document '\(id)' of '\(dataset)' is not valid UTF-8.", fix: "Send the document as UTF-8 JSON.")
        }
    }

    func put(_ documents: [(id: String, data: Data)]) async throws -> [Int64] {
        guard !documents.isEmpty else { return [] }
        for d in documents { try Self.checkStorable(d.data, id: d.id, dataset: spec.name) }
        var q = PGQuery()
        let ids = q.bind(documents.map(\.id))
        let bodies = q.bind(documents.map { String(decoding: $0.data, as: UTF8.self) })
        // A dataset that appends no change events (a relayed copy) writes no outbox rows.
        let events = spec.changeEvents
            ? ",\nevents AS (INSERT INTO \(engine.outbox)(position, dataset, key, op, payload) SELECT version, \(q.bind(spec.name)), id, 'put', body FROM upserted)" : ""
        // Positions are taken while the row is locked: in VALUES for a new id (a concurrent insert of the same id
        // waits on the unique index and then takes the conflict path), in DO UPDATE for an existing one. Rows go
        // in id order, so two batches lock their ids in the same order and cannot deadlock.
        q.sql = """
        WITH input AS (
            SELECT DISTINCT ON (i.id) i.id, i.body::jsonb AS body
            FROM unnest(\(ids)::text[], \(bodies)::text[]) WITH ORDINALITY AS i(id, body, ord) ORDER BY i.id, i.ord DESC),
        upserted AS (
            INSERT INTO \(table)(id, version, body) SELECT id, \(engine.nextPosition), body FROM input ORDER BY id
            ON CONFLICT (id) DO UPDATE SET version = \(engine.nextPosition), body = excluded.body
            RETURNING id, version, body)\(events)
        SELECT id, version FROM upserted
        """
        let projections = PostgresProjections(spec: spec, engine: engine)
        let query = q
        return try await engine.write(singleStatement: !projections.any) { c in
            var byID: [String: Int64] = [:]
            for try await (id, v) in try await c.query(query.query, logger: engine.logger).decode((String, Int64).self) { byID[id] = v }
            let versions = documents.map { byID[$0.id] ?? 0 }
            if projections.any { try await projections.apply(c, documents: documents, versions: versions) }
            return versions
        }
    }

    func get(_ id: String) async throws -> Document? {
        let sql = getSQL
        return try await engine.read { c in
            guard let row = try await engine.prepared.rows(sql, [PostgresData(string: id)], on: c).first else { return nil }
            let cells = row.makeRandomAccess()
            guard let v = cells[0].bytes, let version = Int64(String(buffer: v)), let body = cells[1].bytes else {
                throw PolyglotError(.engineFailure, "Document '\(id)' of '\(spec.name)' came back without a version or body.",
                                    fix: "Check that the table \(table) was created by Polyglot and not changed by hand.")
            }
            return Document(id: id, version: version, data: Data(body.readableBytesView))
        }
    }

    func get(_ ids: [String]) async throws -> [Document] {
        guard !ids.isEmpty else { return [] }
        var q = PGQuery()
        q.sql = "SELECT id, version, body FROM \(table) WHERE id = ANY(\(q.bind(ids))::text[])"
        return try await documents(q)
    }

    func documents(_ q: PGQuery) async throws -> [Document] {
        try await engine.read { c in
            var out: [Document] = []
            for try await (id, version, body) in try await c.query(q.query, logger: engine.logger).decode((String, Int64, ByteBuffer).self) {
                out.append(Document(id: id, version: version, data: Data(body.readableBytesView).jsonbText))
            }
            return out
        }
    }

    func delete(_ id: String) async throws -> ConsistencyToken? {
        var q = PGQuery()
        let idp = q.bind(id)
        q.sql = spec.changeEvents ? """
        WITH gone AS (DELETE FROM \(table) WHERE id = \(idp) RETURNING id)
        INSERT INTO \(engine.outbox)(dataset, key, op) SELECT \(q.bind(spec.name)), id, 'delete' FROM gone RETURNING position
        """ : "DELETE FROM \(table) WHERE id = \(idp) RETURNING \(engine.nextPosition)"
        let projections = PostgresProjections(spec: spec, engine: engine)
        let query = q
        // The token is made after the write returns, so it carries this commit's WAL position (for replicas).
        let position = try await engine.write(singleStatement: !projections.any) { c -> Int64? in
            var position: Int64?
            for try await p in try await c.query(query.query, logger: engine.logger).decode(Int64.self) { position = p }
            guard let position else { return nil }
            if projections.any { try await projections.remove(c, id: id) }
            return position
        }
        return position.map(engine.token)
    }

    func query(_ query: DocumentQuery) async throws -> [Document] {
        var q = PGQuery()
        let f = PGFilter(target: .json(column: "body"))
        let whereSQL = try f.translate(query.filter, into: &q)
        q.sql = "SELECT id, version, body FROM \(table) WHERE \(whereSQL)"
        if let after = query.after { q.sql += " AND id > \(q.bind(after))" }
        q.sql += f.orderBy(query.sort, tiebreak: "id")
        if let limit = query.limit { q.sql += " LIMIT \(q.bind(limit))" }
        if query.offset > 0 { q.sql += " OFFSET \(q.bind(query.offset))" }
        let final = q
        return try await engine.readExamining(table: table) { c in
            var out: [Document] = []
            for try await (id, version, body) in try await c.query(final.query, logger: engine.logger).decode((String, Int64, ByteBuffer).self) {
                out.append(Document(id: id, version: version, data: Data(body.readableBytesView).jsonbText))
            }
            return out
        }
    }

    func count(_ filter: Filter) async throws -> Int {
        var q = PGQuery()
        let whereSQL = try PGFilter(target: .json(column: "body")).translate(filter, into: &q)
        q.sql = "SELECT count(*) FROM \(table) WHERE \(whereSQL)"
        return try await engine.readExamining(table: table) { c in
            for try await n in try await c.query(q.query, logger: engine.logger).decode(Int.self) { return n }
            return 0
        }
    }
}

extension Data {
    /// A binary jsonb value is a version byte (1) followed by the JSON text.
    var jsonbText: Data { first == 1 ? dropFirst() : self }
}

/// A documents dataset's projections on the same PostgreSQL engine, written in the write's transaction.
struct PostgresProjections {
    let spec: DatasetSpec
    let engine: PostgresEngine
    let vectors: ProjectionSpec?
    let graph: ProjectionSpec?

    init(spec: DatasetSpec, engine: PostgresEngine) {
        self.spec = spec
        self.engine = engine
        vectors = spec.projection(.vectors).flatMap { $0.engine == engine.spec.name ? $0 : nil }
        graph = spec.projection(.graph).flatMap { $0.engine == engine.spec.name ? $0 : nil }
    }

    var any: Bool { vectors != nil || graph != nil }

    func apply(_ c: PostgresConnection, documents: [(id: String, data: Data)], versions: [Int64]) async throws {
        for (doc, version) in zip(documents, versions) {
            let body = try JSON(parsing: doc.data)
            // A projection embedded by the relay (a remote embedder) gets its vectors after the commit, from the relay.
            if let vectors, !vectors.isEmbeddedByRelay {
                let vector = try vectors.embedding(of: body, id: doc.id, dataset: spec.name)
                var q = PGQuery()
                if let vector {
                    q.sql = "INSERT INTO \(engine.table(spec.name + "__vectors"))(id, embedding) VALUES (\(q.bind(doc.id)), \(q.bind(PGVector.text(vector)))::vector) ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding"
                } else {
                    q.sql = "DELETE FROM \(engine.table(spec.name + "__vectors")) WHERE id = \(q.bind(doc.id))"
                }
                try await engine.execute(c, q)
            }
            if let graph, graph.edgeField != nil {
                let edges = engine.table(spec.name + "__edges")
                var del = PGQuery()
                del.sql = "DELETE FROM \(edges) WHERE src = \(del.bind(doc.id))"
                try await engine.execute(c, del)
                let targets = graph.edgeTargets(of: body)
                if !targets.isEmpty {
                    var ins = PGQuery()
                    ins.sql = "INSERT INTO \(edges)(src, dst, label, weight, version) SELECT \(ins.bind(doc.id)), d, \(ins.bind(graph.edgeLabel ?? "")), 1, \(ins.bind(version)) FROM unnest(\(ins.bind(targets))::text[]) AS d ON CONFLICT (src, dst, label) DO UPDATE SET version = excluded.version"
                    try await engine.execute(c, ins)
                }
            }
        }
    }

    func remove(_ c: PostgresConnection, id: String) async throws {
        if vectors != nil {
            var q = PGQuery()
            q.sql = "DELETE FROM \(engine.table(spec.name + "__vectors")) WHERE id = \(q.bind(id))"
            try await engine.execute(c, q)
        }
        if graph != nil {
            var q = PGQuery()
            let p = q.bind(id)
            q.sql = "DELETE FROM \(engine.table(spec.name + "__edges")) WHERE src = \(p) OR dst = \(p)"
            try await engine.execute(c, q)
        }
    }
}

/// pgvector's text form, `[1,2,3]`.
enum PGVector {
    static func text(_ v: [Float]) -> String {
        var s = "["
        s.reserveCapacity(v.count * 10)
        for (i, x) in v.enumerated() {
            if i > 0 { s += "," }
            s += "\(x)"
        }
        return s + "]"
    }

    static func parse(_ text: String) -> [Float] {
        text.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",").compactMap { Float($0) }
    }
}
