import Foundation
import Logging
import Polyglot
import PostgresNIO
import Synchronization

extension PostgresEngine {
    /// Runs a query on `c` and decodes every row with `decode`.
    func fetch<T>(_ c: PostgresConnection, _ q: PGQuery, _ decode: (PostgresRow) throws -> T) async throws -> [T] {
        var out: [T] = []
        for try await row in try await c.query(q.query, logger: logger) { out.append(try decode(row)) }
        return out
    }

    func appendOutboxSQL(_ q: inout PGQuery, dataset: String, key: String, op: String) -> String {
        "INSERT INTO \(outbox)(dataset, key, op) VALUES (\(q.bind(dataset)), \(q.bind(key)), \(q.bind(op))) RETURNING position"
    }
}

// MARK: Key-value

/// Keys with TTLs; expired keys are invisible to reads and are overwritten by writes. The key column uses the
/// "C" collation, so prefix scans come back in byte order on any server locale.
struct PostgresKeyValueStore: KeyValueStore {
    let engine: PostgresEngine
    let spec: DatasetSpec
    var table: String { engine.table(spec.name) }

    func expiry(_ ttl: Duration?) -> Date? { ttl.map { Date().addingTimeInterval($0.seconds) } }

    func get(_ key: String) async throws -> Data? {
        var q = PGQuery()
        q.sql = "SELECT value FROM \(table) WHERE key = \(q.bind(key)) AND (expires_at IS NULL OR expires_at > now())"
        return try await engine.read { c in try await engine.fetch(c, q) { try $0.decode(Data.self) }.first }
    }

    func set(_ key: String, _ value: Data, ttl: Duration?) async throws -> ConsistencyToken {
        var q = PGQuery()
        let k = q.bind(key)
        let exp = expiry(ttl).map { q.bind($0) } ?? q.bindNull()
        guard spec.changeEvents else {
            q.sql = """
            INSERT INTO \(table)(key, value, expires_at, version) VALUES (\(k), \(q.bind(value)), \(exp)::timestamptz, 0)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = 0
            """
            return try await engine.writeToken(singleStatement: true) { c in
                try await engine.execute(c, q)
                return 0
            }
        }
        let ev = q.bind(spec.name)
        q.sql = """
        WITH up AS (
            INSERT INTO \(table)(key, value, expires_at, version) VALUES (\(k), \(q.bind(value)), \(exp)::timestamptz, \(engine.nextPosition))
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = \(engine.nextPosition)
            RETURNING version)
        INSERT INTO \(engine.outbox)(position, dataset, key, op) SELECT version, \(ev), \(k), 'put' FROM up RETURNING position
        """
        return try await engine.writeToken(singleStatement: true) { c in
            try await engine.fetch(c, q) { try $0.decode(Int64.self) }.first ?? 0
        }
    }

    func delete(_ key: String) async throws -> Bool {
        var q = PGQuery()
        if spec.changeEvents {
            q.sql = """
            WITH gone AS (DELETE FROM \(table) WHERE key = \(q.bind(key)) RETURNING key, (expires_at IS NULL OR expires_at > now()) AS live)
            INSERT INTO \(engine.outbox)(dataset, key, op) SELECT \(q.bind(spec.name)), key, 'delete' FROM gone WHERE live RETURNING position
            """
        } else {
            q.sql = "DELETE FROM \(table) WHERE key = \(q.bind(key)) AND (expires_at IS NULL OR expires_at > now()) RETURNING 1"
        }
        return try await engine.write(singleStatement: true) { c in !(try await engine.fetch(c, q) { _ in true }.isEmpty) }
    }

    func increment(_ key: String, by delta: Int64, ttl: Duration?) async throws -> Int64 {
        try await engine.write { c in
            // Lock the row (or the key's slot, when it does not exist yet) so concurrent increments serialize.
            var lock = PGQuery()
            lock.sql = "SELECT pg_advisory_xact_lock(hashtext(\(lock.bind(spec.name + "\u{1F}" + key))))"
            try await engine.execute(c, lock)
            var read = PGQuery()
            read.sql = "SELECT value, expires_at FROM \(table) WHERE key = \(read.bind(key)) AND (expires_at IS NULL OR expires_at > now()) FOR UPDATE"
            let row = try await engine.fetch(c, read) { try $0.decode((Data, Date?).self) }.first
            let next = try KeyValueCounter.increment(row?.0, by: delta, key: key, dataset: spec.name)
            var w = PGQuery()
            let k = w.bind(key)
            let exp = (row.map { $0.1 } ?? expiry(ttl)).map { w.bind($0) } ?? w.bindNull()
            let events = spec.changeEvents
                ? "WITH ev AS (INSERT INTO \(engine.outbox)(dataset, key, op) VALUES (\(w.bind(spec.name)), \(k), 'put') RETURNING position)"
                : "WITH ev AS (SELECT 0::bigint AS position)"
            w.sql = """
            \(events)
            INSERT INTO \(table)(key, value, expires_at, version) SELECT \(k), \(w.bind(Data(String(next).utf8))), \(exp)::timestamptz, position FROM ev
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = excluded.version
            """
            try await engine.execute(c, w)
            return next
        }
    }

    func getMany(_ keys: [String]) async throws -> [String: Data] {
        guard !keys.isEmpty else { return [:] }
        var q = PGQuery()
        q.sql = "SELECT key, value FROM \(table) WHERE key = ANY(\(q.bind(keys))::text[]) AND (expires_at IS NULL OR expires_at > now())"
        let rows = try await engine.read { c in try await engine.fetch(c, q) { try $0.decode((String, Data).self) } }
        return Dictionary(rows, uniquingKeysWith: { a, _ in a })
    }

    func setMany(_ entries: [(key: String, value: Data)], ttl: Duration?) async throws {
        guard !entries.isEmpty else { return }
        var q = PGQuery()
        // Values travel as base64 text (a text[] bind), decoded to bytea by the server.
        let keys = q.bind(entries.map(\.key)), values = q.bind(entries.map { $0.value.base64EncodedString() })
        let exp = expiry(ttl).map { q.bind($0) } ?? q.bindNull()
        let version = spec.changeEvents ? engine.nextPosition : "0"
        let input = """
        WITH input AS (
            SELECT DISTINCT ON (i.key) i.key, decode(i.value, 'base64') AS value
            FROM unnest(\(keys)::text[], \(values)::text[]) WITH ORDINALITY AS i(key, value, ord) ORDER BY i.key, i.ord DESC),
        up AS (
            INSERT INTO \(table)(key, value, expires_at, version) SELECT key, value, \(exp)::timestamptz, \(version) FROM input ORDER BY key
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = \(version)
            RETURNING key, version)
        """
        q.sql = input + (spec.changeEvents
            ? "INSERT INTO \(engine.outbox)(position, dataset, key, op) SELECT version, \(q.bind(spec.name)), key, 'put' FROM up"
            : "SELECT count(*) FROM up")
        try await engine.write(singleStatement: true) { c in try await engine.execute(c, q) }
    }

    func scan(prefix: String, after: String?, limit: Int) async throws -> [KeyValueEntry] {
        var q = PGQuery()
        q.sql = """
        SELECT key, value, expires_at FROM \(table)
        WHERE key >= \(q.bind(prefix)) AND starts_with(key, \(q.bind(prefix))) AND key > \(q.bind(after ?? ""))
          AND (expires_at IS NULL OR expires_at > now())
        ORDER BY key LIMIT \(q.bind(limit))
        """
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (k, v, e) = try row.decode((String, Data, Date?).self)
                return KeyValueEntry(key: k, value: v, expiresAt: e)
            }
        }
    }
}

// MARK: Tables

/// Rows with the declared, typed columns; filters become column comparisons with bound values.
struct PostgresTableStore: TableStore {
    let engine: PostgresEngine
    let spec: DatasetSpec
    var table: String { engine.table(spec.name) }
    var types: [String: FieldType] { Dictionary(spec.fields.map { ($0.name, $0.type) }, uniquingKeysWith: { a, _ in a }) }
    var pk: String { spec.primaryKey ?? "" }

    func decode(_ row: PostgresRow) throws -> Row {
        var out: Row = [:]
        for cell in row {
            var v = try PGValue.json(cell)
            if types[cell.columnName] == .timestamp, cell.bytes != nil { v = .number(try cell.decode(Date.self).timeIntervalSince1970) }
            out[cell.columnName] = v
        }
        return out
    }

    func upsert(_ rows: [Row]) async throws -> ConsistencyToken {
        guard !rows.isEmpty else { return engine.token(0) }
        let cols = spec.fields.map(\.name)
        let updates = cols.filter { $0 != pk }.map { "\(PGQuery.ident($0)) = excluded.\(PGQuery.ident($0))" }
        var statements: [PGQuery] = []
        for row in rows {
            var q = PGQuery()
            let key = q.bind(row[pk]?.stringValue ?? row[pk]?.text ?? "")
            let ev = q.bind(spec.name)
            let payload = q.bindJSON(.object(row))
            let values = try spec.fields.map { f in try PGValue.bind(row[f.name] ?? .null, as: f.type, column: f.name, dataset: spec.name, into: &q) }
            // The row lock is taken before the position, so a key's positions follow its commit order. Without change
            // events (a relayed analytics copy) the row is written alone and the statement returns 0.
            q.sql = """
            WITH up AS (
                INSERT INTO \(table)(\(cols.map(PGQuery.ident).joined(separator: ", "))) VALUES (\(values.joined(separator: ", ")))
                ON CONFLICT (\(PGQuery.ident(pk))) DO UPDATE SET \((updates + ["\(PGQuery.ident(pk)) = excluded.\(PGQuery.ident(pk))"]).joined(separator: ", "))
                RETURNING 1)
            """ + (spec.changeEvents
                ? "INSERT INTO \(engine.outbox)(dataset, key, op, payload) SELECT \(ev), \(key), 'put', \(payload) FROM up RETURNING position"
                : "SELECT 0::int8 FROM up")
            statements.append(q)
        }
        let all = statements
        return try await engine.writeToken(singleStatement: all.count == 1) { c in
            var last: Int64 = 0
            for q in all { last = try await engine.fetch(c, q) { try $0.decode(Int64.self) }.last ?? last }
            return last
        }
    }

    func get(_ primaryKey: JSON) async throws -> Row? {
        var q = PGQuery()
        let f = PGFilter(target: .columns(types))
        let whereSQL = try f.translate(.compare(FieldPath(pk), .equal, primaryKey), into: &q)
        q.sql = "SELECT * FROM \(table) WHERE \(whereSQL)"
        return try await engine.read { c in try await engine.fetch(c, q, decode).first }
    }

    func select(_ filter: Filter, sort: [SortKey], limit: Int?) async throws -> [Row] {
        var q = PGQuery()
        let f = PGFilter(target: .columns(types))
        let whereSQL = try f.translate(filter, into: &q)
        for key in sort where types[key.path.description] == nil {
            throw PolyglotError(.invalidFilter, "The sort names '\(key.path)', which is not a column of '\(spec.name)'.", fix: "Sort on a declared column.")
        }
        q.sql = "SELECT * FROM \(table) WHERE \(whereSQL)" + f.orderBy(sort, tiebreak: PGQuery.ident(pk))
        if let limit { q.sql += " LIMIT \(q.bind(limit))" }
        return try await engine.readExamining(table: table) { c in try await engine.fetch(c, q, decode) }
    }

    func count(_ filter: Filter) async throws -> Int {
        var q = PGQuery()
        let whereSQL = try PGFilter(target: .columns(types)).translate(filter, into: &q)
        q.sql = "SELECT count(*) FROM \(table) WHERE \(whereSQL)"
        return try await engine.readExamining(table: table) { c in try await engine.fetch(c, q) { try $0.decode(Int.self) }.first ?? 0 }
    }

    func delete(_ filter: Filter) async throws -> Int {
        var q = PGQuery()
        let whereSQL = try PGFilter(target: .columns(types)).translate(filter, into: &q)
        q.sql = """
        WITH gone AS (DELETE FROM \(table) WHERE \(whereSQL) RETURNING \(PGQuery.ident(pk))::text AS k)
        """ + (spec.changeEvents
            ? "INSERT INTO \(engine.outbox)(dataset, key, op) SELECT \(q.bind(spec.name)), k, 'delete' FROM gone RETURNING position"
            : "SELECT 1 FROM gone")
        return try await engine.write(singleStatement: true) { c in try await engine.fetch(c, q) { _ in 1 }.count }
    }
}

// MARK: Search

/// Full-text search over a generated `tsvector` column (GIN-indexed): `websearch_to_tsquery` for the query,
/// `ts_rank_cd` for the score and `ts_headline` for the snippet.
struct PostgresSearchIndex: SearchIndex {
    let engine: PostgresEngine
    let spec: DatasetSpec
    var fields: [String] { spec.projection(.search)?.fields ?? [] }

    func index(_ id: String, fields: [String: String]) async throws {
        throw PolyglotError(.invalidArgument, "The search projection of '\(spec.name)' on PostgreSQL is a generated column of the documents and cannot be written directly.",
                            fix: "Put the document; its search column is recomputed in the same statement.")
    }

    func delete(_ id: String) async throws {}

    /// Refuses a query with nothing to look for (only exclusions), which would otherwise match everything.
    static func check(_ text: String) throws {
        let words = text.split(whereSeparator: \.isWhitespace).filter { $0 != "OR" && !$0.hasPrefix("-") }
        if words.allSatisfy({ HashingEmbedder.tokens(String($0)).isEmpty }) {
            throw PolyglotError(.invalidArgument, "The search text '\(text)' has no words to look for.",
                                fix: "Include at least one word that is not excluded with '-'.")
        }
    }

    func search(_ text: String, filter: Filter, limit: Int) async throws -> [SearchHit] {
        try Self.check(text)
        var q = PGQuery()
        let config = PGQuery.literal(engine.settings.textSearch) + "::regconfig"
        let query = q.bind(text)
        let whereSQL = try PGFilter(target: .json(column: "d.body")).translate(filter, into: &q)
        let doc = fields.map { "coalesce(d.body #>> \(PGQuery.literal("{" + FieldPath($0).components.joined(separator: ",") + "}")), '')" }.joined(separator: " || ' … ' || ")
        q.sql = """
        SELECT d.id, ts_rank_cd(d.search, tq)::float8 AS score,
               ts_headline(\(config), \(doc.isEmpty ? "''" : doc), tq, 'StartSel=[, StopSel=], MaxFragments=2, MaxWords=24, MinWords=6')
        FROM \(engine.table(spec.name)) d, websearch_to_tsquery(\(config), \(query)) tq
        WHERE d.search @@ tq AND \(whereSQL)
        ORDER BY score DESC, d.id LIMIT \(q.bind(limit))
        """
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (id, score, snippet) = try row.decode((String, Double, String).self)
                return SearchHit(id: id, score: score, snippet: snippet)
            }
        }
    }
}

// MARK: Vectors

/// pgvector: `vector(n)` with an HNSW index. Approximate searches set `hnsw.ef_search` per query and, on
/// pgvector 0.8+, iterative index scans so filtered searches still return k hits; `exact: true` scans.
struct PostgresVectorStore: VectorStore {
    let engine: PostgresEngine
    let spec: DatasetSpec
    let projected: Bool
    var metric: VectorMetric { projected ? (spec.projection(.vectors)?.metric ?? .cosine) : spec.metric }
    var index: VectorIndexSpec { projected ? (spec.projection(.vectors)?.index ?? VectorIndexSpec()) : spec.index }
    var table: String { engine.table(projected ? spec.name + "__vectors" : spec.name) }

    static func op(_ m: VectorMetric) -> String {
        switch m {
        case .cosine: "<=>"
        case .l2: "<->"
        case .innerProduct: "<#>"
        }
    }

    func upsert(_ records: [VectorRecord]) async throws -> ConsistencyToken {
        guard !records.isEmpty else { return engine.token(0) }
        if projected {
            guard spec.projection(.vectors)?.isEmbeddedByRelay == true else {
                throw PolyglotError(.invalidArgument, "The vectors projection of '\(spec.name)' is derived from its documents and cannot be written directly.",
                                    fix: "Put the document; its embedding is updated in the same transaction.")
            }
            // The relay's write of a projection it embeds: the vectors only, no outbox event (the relay keeps the version).
            var q = PGQuery()
            let ids = q.bind(records.map(\.id))
            let vectors = q.bind(records.map { PGVector.text($0.vector) })
            q.sql = """
            INSERT INTO \(table)(id, embedding)
            SELECT DISTINCT ON (i.id) i.id, i.v::vector FROM unnest(\(ids)::text[], \(vectors)::text[]) WITH ORDINALITY AS i(id, v, ord) ORDER BY i.id, i.ord DESC
            ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding
            """
            return try await engine.writeToken(singleStatement: true) { c in
                try await engine.execute(c, q)
                return 0
            }
        }

        var q = PGQuery()
        let ids = q.bind(records.map(\.id))
        let vectors = q.bind(records.map { PGVector.text($0.vector) })
        let metadata = q.bind(records.map { $0.metadata?.text ?? "null" })
        q.sql = """
        WITH input AS (
            SELECT DISTINCT ON (i.id) i.id, i.v::vector AS v, nullif(i.m::jsonb, 'null'::jsonb) AS m
            FROM unnest(\(ids)::text[], \(vectors)::text[], \(metadata)::text[]) WITH ORDINALITY AS i(id, v, m, ord) ORDER BY i.id, i.ord DESC),
        upserted AS (
            INSERT INTO \(table)(id, version, embedding, metadata) SELECT id, \(engine.nextPosition), v, m FROM input ORDER BY id
            ON CONFLICT (id) DO UPDATE SET version = \(engine.nextPosition), embedding = excluded.embedding, metadata = excluded.metadata
            RETURNING id, version),
        events AS (INSERT INTO \(engine.outbox)(position, dataset, key, op) SELECT version, \(q.bind(spec.name)), id, 'put' FROM upserted)
        SELECT max(version) FROM upserted
        """
        return try await engine.writeToken(singleStatement: true) { c in
            try await engine.fetch(c, q) { try $0.decode(Int64.self) }.first ?? 0
        }
    }

    func delete(_ id: String) async throws -> Bool {
        var q = PGQuery()
        if projected {
            q.sql = "DELETE FROM \(table) WHERE id = \(q.bind(id)) RETURNING 1"
        } else {
            q.sql = """
            WITH gone AS (DELETE FROM \(table) WHERE id = \(q.bind(id)) RETURNING id)
            INSERT INTO \(engine.outbox)(dataset, key, op) SELECT \(q.bind(spec.name)), id, 'delete' FROM gone RETURNING position
            """
        }
        return try await engine.write(singleStatement: true) { c in !(try await engine.fetch(c, q) { _ in 1 }.isEmpty) }
    }

    func get(_ id: String) async throws -> VectorRecord? {
        var q = PGQuery()
        q.sql = projected ? "SELECT embedding::text, NULL::text FROM \(table) WHERE id = \(q.bind(id))"
                          : "SELECT embedding::text, metadata::text FROM \(table) WHERE id = \(q.bind(id))"
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (v, m) = try row.decode((String, String?).self)
                return VectorRecord(id: id, vector: PGVector.parse(v), metadata: try m.map { try JSON(parsing: Data($0.utf8)) })
            }.first
        }
    }

    func nearest(to query: [Float], k: Int, filter: Filter, exact: Bool, ef: Int?) async throws -> [VectorHit] {
        var q = PGQuery()
        let vector = q.bind(PGVector.text(query))
        let filterTarget = projected ? "d.body" : "v.metadata"
        let whereSQL = try PGFilter(target: .json(column: filterTarget)).translate(filter, into: &q)
        let from = projected ? "\(table) v JOIN \(engine.table(spec.name)) d ON d.id = v.id" : "\(table) v"
        let distance = "(v.embedding \(Self.op(metric)) \(vector)::vector)"
        // `+ 0` hides the ordering from the index, forcing the exact scan.
        let order = exact ? "\(distance) + 0, v.id" : distance
        q.sql = """
        SELECT v.id, \(distance)::float8 AS distance, \(projected ? "NULL::text" : "v.metadata::text")
        FROM \(from) WHERE \(whereSQL) ORDER BY \(order) LIMIT \(q.bind(k))
        """
        let efSearch = max(ef ?? index.efSearch, k)
        let iterative = filter != .all
        let map = { (row: PostgresRow) throws -> VectorHit in
            let (id, d, m) = try row.decode((String, Double, String?).self)
            return VectorHit(id: id, distance: Float(d), metadata: try m.map { try JSON(parsing: Data($0.utf8)) })
        }
        if exact { return try await engine.read { c in try await engine.fetch(c, q, map) } }
        // Settings that apply to this query only: SET LOCAL inside a short transaction.
        return try await engine.read { c in
            let inTransaction = engine.currentTransaction != nil
            if !inTransaction { try await engine.exec(c, "BEGIN") }
            do {
                try await engine.exec(c, "SET LOCAL hnsw.ef_search = \(min(efSearch, 1000))")
                if iterative, engine.iterativeScan { try await engine.exec(c, "SET LOCAL hnsw.iterative_scan = relaxed_order") }
                var hits = try await engine.fetch(c, q, map)
                if !inTransaction { try await engine.exec(c, "COMMIT") }
                // relaxed_order may return hits slightly out of order; restore it.
                hits.sort { ($0.distance, $0.id) < ($1.distance, $1.id) }
                return hits
            } catch {
                if !inTransaction { await engine.rollback(c) }
                throw error
            }
        }
    }

    func count() async throws -> Int {
        var q = PGQuery()
        q.sql = "SELECT count(*) FROM \(table)"
        return try await engine.read { c in try await engine.fetch(c, q) { try $0.decode(Int.self) }.first ?? 0 }
    }
}

// MARK: Graph

/// Edges keyed (src, dst, label); walks are recursive CTEs that carry the visited path, so cycles end.
struct PostgresGraphStore: GraphStore {
    let engine: PostgresEngine
    let spec: DatasetSpec
    let table: String
    var t: String { engine.table(table) }

    func addEdges(_ edges: [Edge]) async throws -> ConsistencyToken {
        guard !edges.isEmpty else { return engine.token(0) }
        var statements: [PGQuery] = []
        for e in edges {
            var q = PGQuery()
            let props = e.properties.map { q.bindJSON($0) } ?? q.bindNull()
            q.sql = """
            WITH up AS (
                INSERT INTO \(t)(src, dst, label, weight, props, version)
                VALUES (\(q.bind(e.from)), \(q.bind(e.to)), \(q.bind(e.label)), \(q.bind(e.weight)), \(props)::jsonb, \(engine.nextPosition))
                ON CONFLICT (src, dst, label) DO UPDATE SET weight = excluded.weight, props = excluded.props, version = \(engine.nextPosition)
                RETURNING version)
            INSERT INTO \(engine.outbox)(position, dataset, key, op) SELECT version, \(q.bind(spec.name)), \(q.bind("\(e.from)\u{1F}\(e.to)\u{1F}\(e.label)")), 'put' FROM up RETURNING position
            """
            statements.append(q)
        }
        let all = statements
        return try await engine.writeToken(singleStatement: all.count == 1) { c in
            var last: Int64 = 0
            for q in all { last = try await engine.fetch(c, q) { try $0.decode(Int64.self) }.last ?? last }
            return last
        }
    }

    func removeEdge(from: String, to: String, label: String) async throws -> Bool {
        var q = PGQuery()
        q.sql = """
        WITH gone AS (DELETE FROM \(t) WHERE src = \(q.bind(from)) AND dst = \(q.bind(to)) AND label = \(q.bind(label)) RETURNING 1)
        INSERT INTO \(engine.outbox)(dataset, key, op) SELECT \(q.bind(spec.name)), \(q.bind("\(from)\u{1F}\(to)\u{1F}\(label)")), 'delete' FROM gone RETURNING position
        """
        return try await engine.write(singleStatement: true) { c in !(try await engine.fetch(c, q) { _ in 1 }.isEmpty) }
    }

    func links(_ direction: EdgeDirection) -> String {
        switch direction {
        case .outgoing: "SELECT src AS a, dst AS b, label FROM \(t)"
        case .incoming: "SELECT dst AS a, src AS b, label FROM \(t)"
        case .both: "SELECT src AS a, dst AS b, label FROM \(t) UNION ALL SELECT dst AS a, src AS b, label FROM \(t)"
        }
    }

    func edges(of node: String, direction: EdgeDirection, label: String?) async throws -> [Edge] {
        var q = PGQuery()
        let n = q.bind(node)
        var conds: [String] = []
        if direction != .incoming { conds.append("src = \(n)") }
        if direction != .outgoing { conds.append("dst = \(n)") }
        q.sql = "SELECT src, dst, label, weight, props::text FROM \(t) WHERE (\(conds.joined(separator: " OR ")))"
        if let label { q.sql += " AND label = \(q.bind(label))" }
        q.sql += " ORDER BY src, dst, label"
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (s, d, l, w, p) = try row.decode((String, String, String, Double, String?).self)
                return Edge(from: s, to: d, label: l, weight: w, properties: try p.map { try JSON(parsing: Data($0.utf8)) })
            }
        }
    }

    func neighbors(of node: String, direction: EdgeDirection, label: String?) async throws -> [String] {
        var q = PGQuery()
        q.sql = "SELECT DISTINCT b FROM (\(links(direction))) l WHERE a = \(q.bind(node))"
        if let label { q.sql += " AND label = \(q.bind(label))" }
        q.sql += " ORDER BY b"
        return try await engine.read { c in try await engine.fetch(c, q) { try $0.decode(String.self) } }
    }

    func traverse(from node: String, maxDepth: Int, direction: EdgeDirection, label: String?) async throws -> [TraversalStep] {
        var q = PGQuery()
        let start = q.bind(node)
        let depth = q.bind(maxDepth)
        let labelCond = label.map { " AND l.label = \(q.bind($0))" } ?? ""
        q.sql = """
        WITH RECURSIVE l(a, b, label) AS (\(links(direction))),
        walk(node, depth, path) AS (
            SELECT \(start)::text, 0, ARRAY[\(start)::text]
            UNION ALL
            SELECT l.b, w.depth + 1, w.path || l.b FROM walk w JOIN l ON l.a = w.node
            WHERE w.depth < \(depth) AND NOT l.b = ANY(w.path)\(labelCond)
        )
        SELECT node, min(depth)::int8 AS d FROM walk WHERE node <> \(start) GROUP BY node ORDER BY d, node
        """
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (n, d) = try row.decode((String, Int64).self)
                return TraversalStep(node: n, depth: Int(d))
            }
        }
    }

    func shortestPath(from: String, to: String, maxDepth: Int, direction: EdgeDirection, label: String?) async throws -> [String]? {
        if from == to { return [from] }
        var q = PGQuery()
        let start = q.bind(from)
        let target = q.bind(to)
        let depth = q.bind(maxDepth)
        let labelCond = label.map { " AND l.label = \(q.bind($0))" } ?? ""
        // Breadth-first: each iteration adds one hop, and the path array keeps a walk from revisiting a node.
        q.sql = """
        WITH RECURSIVE l(a, b, label) AS (\(links(direction))),
        walk(node, depth, path) AS (
            SELECT \(start)::text, 0, ARRAY[\(start)::text]
            UNION ALL
            SELECT l.b, w.depth + 1, w.path || l.b FROM walk w JOIN l ON l.a = w.node
            WHERE w.depth < \(depth) AND w.node <> \(target) AND NOT l.b = ANY(w.path)\(labelCond)
        )
        SELECT path FROM walk WHERE node = \(target) ORDER BY depth LIMIT 1
        """
        return try await engine.read { c in try await engine.fetch(c, q) { try $0.decode([String].self) }.first }
    }
}

// MARK: Time series

/// Samples in a table range-partitioned by day on `t` (partitions created as samples arrive), with a BRIN index
/// on time and a (series, t) index. Aggregates use `date_bin`; retention drops whole partitions.
struct PostgresTimeSeriesStore: TimeSeriesStore {
    let engine: PostgresEngine
    let spec: DatasetSpec
    var table: String { engine.table(spec.name) }
    static let day: TimeInterval = 86_400

    func partitionName(_ dayStart: Int64) -> String {
        let d = Date(timeIntervalSince1970: Double(dayStart) * Self.day)
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let c = cal.dateComponents([.year, .month, .day], from: d)
        return spec.name + String(format: "__p%04d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    /// Creates the daily partitions the samples fall in (under an advisory lock, so concurrent writers agree).
    func ensurePartitions(_ c: PostgresConnection, _ samples: [Sample]) async throws {
        let days = Set(samples.map { Int64(($0.time.timeIntervalSince1970 / Self.day).rounded(.down)) })
        let known = engine.partitions.withLock { $0 }
        let missing = days.filter { !known.contains(partitionName($0)) }
        guard !missing.isEmpty else { return }
        var lock = PGQuery()
        lock.sql = "SELECT pg_advisory_xact_lock(hashtext(\(lock.bind("polyglot partitions " + engine.settings.schema + "." + spec.name))))"
        try await engine.execute(c, lock)
        for day in missing.sorted() {
            let name = partitionName(day)
            var q = PGQuery()
            let from = Date(timeIntervalSince1970: Double(day) * Self.day)
            let to = Date(timeIntervalSince1970: Double(day + 1) * Self.day)
            q.sql = "CREATE TABLE IF NOT EXISTS \(engine.table(name)) PARTITION OF \(table) FOR VALUES FROM (\(PGQuery.literal(Timestamp.text(from)))) TO (\(PGQuery.literal(Timestamp.text(to))))"
            try await engine.execute(c, q)
        }
        engine.partitions.withLock { $0.formUnion(missing.map(partitionName)) }
    }

    func append(_ samples: [Sample]) async throws -> ConsistencyToken {
        guard !samples.isEmpty else { return engine.token(0) }
        let series = Set(samples.map(\.series)).sorted().joined(separator: ",")
        var q = PGQuery()
        let ev = engine.appendOutboxSQL(&q, dataset: spec.name, key: series, op: "append")
        q.sql = """
        WITH ev AS (\(ev)), ins AS (
            INSERT INTO \(table)(series, t, value)
            SELECT * FROM unnest(\(q.bind(samples.map(\.series)))::text[], \(q.bind(samples.map(\.time)))::timestamptz[], \(q.bind(samples.map(\.value)))::float8[]))
        SELECT position FROM ev
        """
        return try await engine.writeToken { c in
            try await ensurePartitions(c, samples)
            return try await engine.fetch(c, q) { try $0.decode(Int64.self) }.first ?? 0
        }
    }

    func range(_ series: String, from: Date, to: Date, limit: Int?) async throws -> [Sample] {
        var q = PGQuery()
        q.sql = "SELECT t, value FROM \(table) WHERE series = \(q.bind(series)) AND t >= \(q.bind(from)) AND t < \(q.bind(to)) ORDER BY t"
        if let limit { q.sql += " LIMIT \(q.bind(limit))" }
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (t, v) = try row.decode((Date, Double).self)
                return Sample(series: series, time: t, value: v)
            }
        }
    }

    func aggregate(_ series: String, from: Date, to: Date, bucket: Duration) async throws -> [Bucket] {
        let ms = max(1, Int64(bucket.seconds * 1000))
        var q = PGQuery()
        q.sql = """
        SELECT date_bin(make_interval(secs => \(q.bind(Double(ms) / 1000))), t, TIMESTAMPTZ 'epoch') AS b, count(*)::int8, sum(value), min(value), max(value)
        FROM \(table) WHERE series = \(q.bind(series)) AND t >= \(q.bind(from)) AND t < \(q.bind(to)) GROUP BY b ORDER BY b
        """
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (b, n, sum, mn, mx) = try row.decode((Date, Int64, Double, Double, Double).self)
                return Bucket(start: b, count: Int(n), sum: sum, min: mn, max: mx)
            }
        }
    }

    func deleteSamples(olderThan cutoff: Date) async throws -> Int {
        try await engine.write { c in
            // Whole partitions that end before the cutoff are dropped; the partition holding the cutoff is trimmed.
            var list = PGQuery()
            list.sql = """
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = \(list.bind(engine.settings.schema + "." + spec.name))::regclass
            """
            let names = try await engine.fetch(c, list) { try $0.decode(String.self) }
            let cutoffDay = Int64((cutoff.timeIntervalSince1970 / Self.day).rounded(.down))
            var deleted = 0
            for name in names where name < partitionName(cutoffDay) && name.hasPrefix(spec.name + "__p") {
                var n = PGQuery()
                n.sql = "SELECT count(*)::int8 FROM \(engine.table(name))"
                deleted += Int(try await engine.fetch(c, n) { try $0.decode(Int64.self) }.first ?? 0)
                try await engine.exec(c, "DROP TABLE \(engine.table(name))")
                _ = engine.partitions.withLock { $0.remove(name) }
            }
            var d = PGQuery()
            d.sql = "WITH gone AS (DELETE FROM \(table) WHERE t < \(d.bind(cutoff)) RETURNING 1) SELECT count(*)::int8 FROM gone"
            deleted += Int(try await engine.fetch(c, d) { try $0.decode(Int64.self) }.first ?? 0)
            return deleted
        }
    }
}

// MARK: SQL and telemetry

/// Raw parameterized SQL on the primary (or inside the current transaction). `?` or `$1` placeholders.
struct PostgresSQLExecutor: SQLExecutor {
    let engine: PostgresEngine

    func execute(_ sql: String, _ parameters: [JSON]) async throws -> [Row] {
        var q = PGQuery()
        for p in parameters { _ = PGValue.bind(p, into: &q) }
        q.sql = PGPlaceholders.number(sql)
        return try await engine.write(singleStatement: true) { c in try await engine.fetch(c, q, PGValue.row) }
    }
}

/// Telemetry history in `_polyglot_telemetry`, the advisor's observations in `_polyglot_observations` (JSON).
struct PostgresTelemetryHistory: TelemetryHistoryStore {
    let engine: PostgresEngine

    func appendObservations(_ observations: [WorkloadObservation]) async throws {
        guard !observations.isEmpty else { return }
        let encoder = JSONEncoder()
        var q = PGQuery()
        let starts = q.bind(observations.map { $0.intervalStart.timeIntervalSince1970 })
        let ends = q.bind(observations.map { $0.intervalEnd.timeIntervalSince1970 })
        let datasets = q.bind(observations.map(\.dataset))
        let engines = q.bind(observations.map(\.engine))
        let bodies = q.bind(try observations.map { String(decoding: try encoder.encode($0), as: UTF8.self) })
        q.sql = """
        INSERT INTO \(engine.table("_polyglot_observations"))
        SELECT * FROM unnest(\(starts)::float8[], \(ends)::float8[], \(datasets)::text[], \(engines)::text[], \(bodies)::text[])
        """
        let query = q
        try await engine.write(singleStatement: true) { c in try await engine.execute(c, query) }
    }

    func deleteHistory(before cutoff: Date) async throws {
        let queries = ["_polyglot_telemetry", "_polyglot_observations"].map { table in
            var q = PGQuery()
            q.sql = "DELETE FROM \(engine.table(table)) WHERE interval_end < \(q.bind(cutoff.timeIntervalSince1970))"
            return q
        }
        try await engine.write { c in
            for q in queries { try await engine.execute(c, q) }
        }
    }

    func observations(since: Date) async throws -> [WorkloadObservation] {
        var q = PGQuery()
        q.sql = "SELECT body FROM \(engine.table("_polyglot_observations")) WHERE interval_end >= \(q.bind(since.timeIntervalSince1970)) ORDER BY interval_end"
        let query = q
        let bodies = try await engine.read { c in try await engine.fetch(c, query) { try $0.decode(String.self) } }
        let decoder = JSONDecoder()
        // An observation this version cannot read (written by a newer one) is skipped, not fatal.
        return bodies.compactMap { try? decoder.decode(WorkloadObservation.self, from: Data($0.utf8)) }
    }

    func append(_ records: [TelemetryRecord]) async throws {
        guard !records.isEmpty else { return }
        try await engine.write { c in
            for r in records {
                var q = PGQuery()
                let values = [
                    q.bind(r.intervalStart.timeIntervalSince1970), q.bind(r.intervalEnd.timeIntervalSince1970),
                    q.bind(r.key.dataset), q.bind(r.key.engine), q.bind(r.key.operation),
                    q.bind(Int64(r.stats.count)), q.bind(Int64(r.stats.errors)), q.bind(Int64(r.stats.rows)),
                    q.bind(Int64(r.stats.bytes)), q.bind(r.stats.latency.encoded()),
                ]
                q.sql = "INSERT INTO \(engine.table("_polyglot_telemetry")) VALUES (\(values.joined(separator: ", ")))"
                try await engine.execute(c, q)
            }
        }
    }

    func records(since: Date) async throws -> [TelemetryRecord] {
        var q = PGQuery()
        q.sql = "SELECT * FROM \(engine.table("_polyglot_telemetry")) WHERE interval_end >= \(q.bind(since.timeIntervalSince1970)) ORDER BY interval_end"
        return try await engine.read { c in
            try await engine.fetch(c, q) { row in
                let (s, e, ds, en, op, n, err, rows, bytes, h) = try row.decode((Double, Double, String, String, String, Int64, Int64, Int64, Int64, String).self)
                var stats = OperationStats()
                stats.count = UInt64(clamping: n); stats.errors = UInt64(clamping: err); stats.rows = UInt64(clamping: rows); stats.bytes = UInt64(clamping: bytes)
                stats.latency = LatencyHistogram(encoded: h) ?? LatencyHistogram()
                return TelemetryRecord(intervalStart: Date(timeIntervalSince1970: s), intervalEnd: Date(timeIntervalSince1970: e),
                                       key: OperationKey(dataset: ds, engine: en, operation: op), stats: stats)
            }
        }
    }
}
