import Foundation
import Polyglot
import PolyglotVectorIndex

private let q = SQLFilter.quoteIdentifier

/// FTS5 over the fields of a documents dataset's search projection, ranked by BM25.
struct SQLiteSearchIndex: SearchIndex {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    var fields: [String] { spec.projection(.search)?.fields ?? [] }

    func index(_ id: String, fields values: [String: String]) async throws {
        try await engine.write { c in
            guard let rowid = try c.query("SELECT rowid FROM \(q(spec.name)) WHERE id = ?", [.text(id)]).first?.first?.int else {
                throw PolyglotError(.notFound, "Document '\(id)' does not exist in '\(spec.name)', so it cannot be indexed.", fix: "Put the document first.")
            }
            let cols = fields.indices.map { "f\($0)" }.joined(separator: ", ")
            try c.run("DELETE FROM \(q(spec.name + "__fts")) WHERE rowid = ?", [.integer(rowid)])
            try c.run("INSERT INTO \(q(spec.name + "__fts"))(rowid, \(cols)) VALUES (?, \(fields.map { _ in "?" }.joined(separator: ", ")))",
                      [.integer(rowid)] + fields.map { .text(values[$0] ?? "") })
        }
    }

    func delete(_ id: String) async throws {
        try await engine.write { c in
            try c.run("DELETE FROM \(q(spec.name + "__fts")) WHERE rowid = (SELECT rowid FROM \(q(spec.name)) WHERE id = ?)", [.text(id)])
        }
    }

    func search(_ text: String, filter: Filter, limit: Int) async throws -> [SearchHit] {
        let match = try FTSQuery.translate(text)
        var f = SQLFilter(.json(column: "d.body"))
        let whereSQL = try f.translate(filter)
        let fts = q(spec.name + "__fts")
        let sql = """
        SELECT d.id, -bm25(\(fts)), snippet(\(fts), -1, '[', ']', '…', 12)
        FROM \(fts) JOIN \(q(spec.name)) d ON d.rowid = \(fts).rowid
        WHERE \(fts) MATCH ? AND \(whereSQL) ORDER BY bm25(\(fts)) LIMIT ?
        """
        let binds: [SQLValue] = [.text(match)] + f.binds + [.integer(Int64(limit))]
        return try engine.read { c in
            try c.query(sql, binds).map { SearchHit(id: $0[0].string ?? "", score: $0[1].double ?? 0, snippet: $0[2].string ?? "") }
        }
    }
}

/// Vectors in SQLite (the durable copy) with an in-memory HNSW index for approximate search; `exact: true`,
/// and any search inside a transaction (which must see its own uncommitted writes), scan the table instead.
/// A vectors dataset keeps metadata with each vector; a documents dataset's vectors projection filters on the
/// document itself.
struct SQLiteVectorStore: VectorStore {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    let projected: Bool
    var metric: VectorMetric { projected ? (spec.projection(.vectors)?.metric ?? .cosine) : spec.metric }
    var tableName: String { projected ? spec.name + "__vectors" : spec.name }
    var table: String { q(tableName) }
    var index: HNSWIndex? { engine.vectorIndexes.get(tableName) }

    func upsert(_ records: [VectorRecord]) async throws -> ConsistencyToken {
        if projected {
            guard spec.projection(.vectors)?.isEmbeddedByRelay == true else {
                throw PolyglotError(.invalidArgument, "The vectors projection of '\(spec.name)' is derived from its documents and cannot be written directly.",
                                    fix: "Put the document; its embedding is updated in the same transaction.")
            }
            return try await upsertRelayEmbedded(records)
        }
        let index = self.index
        return try await engine.write { c, post in
            var last: Int64 = 0
            if let index { post.add { try index.upsert(records.map { ($0.id, $0.vector) }) } }
            for r in records {
                last = try engine.appendOutbox(c, dataset: spec.name, key: r.id, op: "put", payload: nil)
                try c.run("INSERT INTO \(table)(id, version, vector, metadata) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET version = excluded.version, vector = excluded.vector, metadata = excluded.metadata",
                          [.text(r.id), .integer(last), .blob(VectorBlob.encode(r.vector)), r.metadata.map { .text($0.text) } ?? .null])
            }
            return engine.token(last)
        }
    }

    /// The relay's write of a projection it embeds: the vectors only, no outbox event (the relay keeps the version).
    private func upsertRelayEmbedded(_ records: [VectorRecord]) async throws -> ConsistencyToken {
        let index = self.index
        let savedStamp = engine.indexFile(tableName) + ".stamp"
        return try await engine.write { c, post in
            for r in records {
                try c.run("INSERT OR REPLACE INTO \(table)(id, vector) VALUES (?, ?)", [.text(r.id), .blob(VectorBlob.encode(r.vector))])
            }
            if let index { post.add { try index.upsert(records.map { ($0.id, $0.vector) }) } }
            // No outbox event moves the saved index's stamp, so drop it: an index file saved before this write is
            // rebuilt at the next open unless it is saved again (at close) with the write in it.
            post.add { try? FileManager.default.removeItem(atPath: savedStamp) }
            return engine.token(0)
        }
    }

    func delete(_ id: String) async throws -> Bool {
        let index = self.index
        return try await engine.write { c, post in
            guard try !c.query("SELECT 1 FROM \(table) WHERE id = ?", [.text(id)]).isEmpty else { return false }
            if let index { post.add { index.delete(id) } }
            if !projected { _ = try engine.appendOutbox(c, dataset: spec.name, key: id, op: "delete", payload: nil) }
            try c.run("DELETE FROM \(table) WHERE id = ?", [.text(id)])
            return true
        }
    }

    func get(_ id: String) async throws -> VectorRecord? {
        let sql = projected ? "SELECT vector, NULL FROM \(table) WHERE id = ?" : "SELECT vector, metadata FROM \(table) WHERE id = ?"
        return try engine.read { c in
            guard let row = try c.query(sql, [.text(id)]).first, let blob = row[0].data else { return nil }
            return VectorRecord(id: id, vector: VectorBlob.decode(blob), metadata: try row[1].string.map { try JSON(parsing: $0) })
        }
    }

    func nearest(to query: [Float], k: Int, filter: Filter, exact: Bool, ef: Int?) async throws -> [VectorHit] {
        if !exact, engine.currentTransaction == nil, let index {
            return try approximate(index, query, k: k, filter: filter, ef: ef)
        }
        return try scan(query, k: k, filter: filter)
    }

    /// The HNSW answer. A filter is evaluated in SQLite first; the index then searches among the matching ids
    /// (falling back to an exact scan of them when they are few).
    func approximate(_ index: HNSWIndex, _ query: [Float], k: Int, filter: Filter, ef: Int?) throws -> [VectorHit] {
        var allowed: (@Sendable (String) -> Bool)?
        if filter != .all {
            let (sql, binds) = try filtered("v.id", filter)
            let ids = Set(try engine.read { c in try c.query(sql, binds).compactMap { $0[0].string } })
            if ids.isEmpty { return [] }
            allowed = { ids.contains($0) }
        }
        let hits = try index.search(query, k: k, ef: ef, filter: allowed)
        var metadata: [String: JSON] = [:]
        if !projected, !hits.isEmpty {
            let list = JSON.array(hits.map { .string($0.id) }).text
            try engine.read { c in
                for row in try c.query("SELECT id, metadata FROM \(table) WHERE id IN (SELECT value FROM json_each(?)) AND metadata IS NOT NULL", [.text(list)]) {
                    if let id = row[0].string, let m = row[1].string { metadata[id] = try JSON(parsing: m) }
                }
            }
        }
        return hits.map { VectorHit(id: $0.id, distance: $0.distance, metadata: metadata[$0.id]) }
    }

    /// A SELECT of `columns` over the vectors that match `filter`: on their metadata, or for a projection on
    /// the document they were derived from.
    func filtered(_ columns: String, _ filter: Filter) throws -> (sql: String, binds: [SQLValue]) {
        var f = SQLFilter(.json(column: projected ? "d.body" : "v.metadata"))
        let whereSQL = try f.translate(filter)
        let from = projected ? "\(table) v JOIN \(q(spec.name)) d ON d.id = v.id" : "\(table) v"
        return ("SELECT \(columns) FROM \(from) WHERE \(whereSQL)", f.binds)
    }

    /// The exact answer: a full scan of the (filtered) table.
    func scan(_ query: [Float], k: Int, filter: Filter) throws -> [VectorHit] {
        let (sql, binds) = try filtered(projected ? "v.id, v.vector, NULL" : "v.id, v.vector, v.metadata", filter)
        let metric = self.metric
        var best = TopK(k: k)
        var metadata: [String: String] = [:]
        try engine.read { c in
            try query.withUnsafeBufferPointer { qp in
                try c.each(sql, binds) { stmt in
                    let id = c.column(stmt, 0).string ?? ""
                    let blob = c.columnData(stmt, 1)
                    let d = blob.withUnsafeBytes { raw in
                        VectorMath.distance(qp, raw.bindMemory(to: Float.self), metric: metric)
                    }
                    if best.insert(id, d), case .text(let m) = c.column(stmt, 2) { metadata[id] = m }
                }
            }
        }
        return try best.sorted().map { VectorHit(id: $0.id, distance: $0.distance, metadata: try metadata[$0.id].map { try JSON(parsing: $0) }) }
    }

    func count() async throws -> Int {
        try engine.read { c in Int(try c.query("SELECT count(*) FROM \(table)").first?.first?.int ?? 0) }
    }
}

/// Keeps the k smallest distances seen.
struct TopK {
    let k: Int
    private(set) var items: [(id: String, distance: Float)] = []
    init(k: Int) { self.k = k }

    /// Returns whether the item was kept.
    mutating func insert(_ id: String, _ distance: Float) -> Bool {
        if items.count < k {
            items.append((id, distance))
            if items.count == k { items.sort { $0.distance < $1.distance } }
            return true
        }
        guard distance < items[k - 1].distance else { return false }
        var i = k - 1
        while i > 0 && items[i - 1].distance > distance { i -= 1 }
        items.removeLast()
        items.insert((id, distance), at: i)
        return true
    }

    func sorted() -> [(id: String, distance: Float)] { items.sorted { ($0.distance, $0.id) < ($1.distance, $1.id) } }
}

/// Keys with TTLs in a WITHOUT ROWID table; expired keys are invisible and swept on write.
struct SQLiteKeyValueStore: KeyValueStore {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    var table: String { q(spec.name) }
    static func now() -> Double { Date().timeIntervalSince1970 }
    static func expiry(_ ttl: Duration?) -> SQLValue {
        guard let ttl else { return .null }
        return .real(now() + Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18)
    }

    func get(_ key: String) async throws -> Data? {
        let sql = "SELECT value FROM \(table) WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
        return try engine.read { c in
            var out: Data?
            try c.each(sql, [.text(key), .real(SQLiteKeyValueStore.now())]) { stmt in out = c.columnData(stmt, 0) }
            return out
        }
    }

    func set(_ key: String, _ value: Data, ttl: Duration?) async throws -> ConsistencyToken {
        try await engine.write { c in engine.token(try put(c, key, value, expires: SQLiteKeyValueStore.expiry(ttl))) }
    }

    /// Writes one entry (and its outbox event, unless the dataset appends none); returns its version.
    private func put(_ c: SQLiteConnection, _ key: String, _ value: Data, expires: SQLValue) throws -> Int64 {
        let v = spec.changeEvents ? try engine.appendOutbox(c, dataset: spec.name, key: key, op: "put", payload: nil) : 0
        try c.run("INSERT OR REPLACE INTO \(table)(key, value, expires_at, version) VALUES (?, ?, ?, ?)",
                  [.text(key), .blob(value), expires, .integer(v)])
        return v
    }

    func delete(_ key: String) async throws -> Bool {
        try await engine.write { c in
            try c.run("DELETE FROM \(table) WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)", [.text(key), .real(SQLiteKeyValueStore.now())])
            guard c.changes > 0 else { return false }
            if spec.changeEvents { _ = try engine.appendOutbox(c, dataset: spec.name, key: key, op: "delete", payload: nil) }
            return true
        }
    }

    func increment(_ key: String, by delta: Int64, ttl: Duration?) async throws -> Int64 {
        try await engine.write { c in
            let now = SQLiteKeyValueStore.now()
            try c.run("DELETE FROM \(table) WHERE key = ? AND expires_at IS NOT NULL AND expires_at <= ?", [.text(key), .real(now)])
            let row = try c.query("SELECT value, expires_at FROM \(table) WHERE key = ?", [.text(key)]).first
            let next = try KeyValueCounter.increment(row.map { $0[0].data ?? Data() }, by: delta, key: key, dataset: spec.name)
            _ = try put(c, key, Data(String(next).utf8), expires: row?[1] ?? SQLiteKeyValueStore.expiry(ttl))
            return next
        }
    }

    func getMany(_ keys: [String]) async throws -> [String: Data] {
        guard !keys.isEmpty else { return [:] }
        // The keys as one JSON array bind, as the documents store's get(ids) does.
        let sql = "SELECT key, value FROM \(table) WHERE key IN (SELECT value FROM json_each(?)) AND (expires_at IS NULL OR expires_at > ?)"
        let list = JSON.array(keys.map { .string($0) }).text
        return try engine.read { c in
            var out: [String: Data] = [:]
            for row in try c.query(sql, [.text(list), .real(SQLiteKeyValueStore.now())]) {
                if let key = row[0].string { out[key] = row[1].data ?? Data() }
            }
            return out
        }
    }

    func setMany(_ entries: [(key: String, value: Data)], ttl: Duration?) async throws {
        guard !entries.isEmpty else { return }
        let expires = SQLiteKeyValueStore.expiry(ttl)
        try await engine.write { c in
            for (key, value) in entries { _ = try put(c, key, value, expires: expires) }
        }
    }

    func scan(prefix: String, after: String?, limit: Int) async throws -> [KeyValueEntry] {
        // Range scan on the primary key: prefix <= key < prefix + U+10FFFF.
        let sql = "SELECT key, value, expires_at FROM \(table) WHERE key >= ? AND key < ? AND key > ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?"
        let binds: [SQLValue] = [.text(prefix), .text(prefix + "\u{10FFFF}"), .text(after ?? ""), .real(SQLiteKeyValueStore.now()), .integer(Int64(limit))]
        return try engine.read { c in
            try c.query(sql, binds).map { row in
                KeyValueEntry(key: row[0].string ?? "", value: row[1].data ?? Data(), expiresAt: row[2].double.map { Date(timeIntervalSince1970: $0) })
            }
        }
    }
}

/// Rows with the declared columns; filters become column comparisons.
struct SQLiteTableStore: TableStore {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    var table: String { q(spec.name) }
    var timestamps: Set<String> { Set(spec.fields.filter { $0.type == .timestamp }.map(\.name)) }

    func decode(_ row: [String: SQLValue]) throws -> Row {
        var out: Row = [:]
        for f in spec.fields {
            let v = row[f.name] ?? .null
            switch (f.type, v) {
            case (_, .null): out[f.name] = .null
            case (.boolean, _): out[f.name] = .bool((v.int ?? 0) != 0)
            case (.json, .text(let s)): out[f.name] = try JSON(parsing: s)
            // Seconds since 1970, as PostgreSQL's tables read; ISO text stored before writes were normalized, too.
            case (.timestamp, .integer), (.timestamp, .real): out[f.name] = .number(v.double ?? 0)
            case (.timestamp, .text(let s)): out[f.name] = Timestamp.parse(s).map { .number($0.timeIntervalSince1970) } ?? .string(s)
            default: out[f.name] = v.json
            }
        }
        return out
    }

    func upsert(_ rows: [Row]) async throws -> ConsistencyToken {
        let cols = spec.fields.map(\.name)
        let sql = "INSERT OR REPLACE INTO \(table)(\(cols.map(q).joined(separator: ", "))) VALUES (\(cols.map { _ in "?" }.joined(separator: ", ")))"
        let pk = spec.primaryKey ?? ""
        return try await engine.write { c in
            var last: Int64 = 0
            for row in rows {
                // Without change events (a relayed analytics copy) no event and no position: the token is 0.
                if spec.changeEvents {
                    last = try engine.appendOutbox(c, dataset: spec.name, key: row[pk]?.stringValue ?? row[pk]?.text ?? "", op: "put", payload: JSON.object(row).serialized())
                }
                try c.run(sql, spec.fields.map { f in
                    let v = row[f.name] ?? .null
                    if v == .null { return .null }
                    switch f.type {
                    case .json: return .text(v.text)
                    // Checked before the write (`Timestamp.seconds` accepts it), so this is a time.
                    case .timestamp: return Timestamp.seconds(v).map { .real($0) } ?? SQLValue(v)
                    default: return SQLValue(v)
                    }
                })
            }
            return engine.token(last)
        }
    }

    func get(_ primaryKey: JSON) async throws -> Row? {
        let sql = "SELECT * FROM \(table) WHERE \(q(spec.primaryKey ?? "")) = ?"
        return try engine.read { c in try c.namedQuery(sql, [SQLValue(primaryKey)]).first.map(decode) }
    }

    func select(_ filter: Filter, sort: [SortKey], limit: Int?) async throws -> [Row] {
        var f = SQLFilter(.columns(timestamps: timestamps))
        var sql = "SELECT * FROM \(table) WHERE \(try f.translate(filter))" + f.orderBy(sort, tiebreak: q(spec.primaryKey ?? "rowid"))
        var binds = f.binds
        if let limit { sql += " LIMIT ?"; binds.append(.integer(Int64(limit))) }
        return try engine.read { c in try c.namedQuery(sql, binds).map(decode) }
    }

    func count(_ filter: Filter) async throws -> Int {
        var f = SQLFilter(.columns(timestamps: timestamps))
        let sql = "SELECT count(*) FROM \(table) WHERE \(try f.translate(filter))"
        let binds = f.binds
        return try engine.read { c in Int(try c.query(sql, binds).first?.first?.int ?? 0) }
    }

    func delete(_ filter: Filter) async throws -> Int {
        var f = SQLFilter(.columns(timestamps: timestamps))
        let sql = "DELETE FROM \(table) WHERE \(try f.translate(filter)) RETURNING \(q(spec.primaryKey ?? ""))"
        let binds = f.binds
        return try await engine.write { c in
            let keys = try c.query(sql, binds)
            if spec.changeEvents {
                for k in keys { _ = try engine.appendOutbox(c, dataset: spec.name, key: k.first?.json.stringValue ?? k.first?.json.text ?? "", op: "delete", payload: nil) }
            }
            return keys.count
        }
    }
}

/// Edges in a WITHOUT ROWID table keyed (src, dst, label); walks are recursive CTEs bounded by depth,
/// so cycles cannot make them run forever.
struct SQLiteGraphStore: GraphStore {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    let table: String

    func addEdges(_ edges: [Edge]) async throws -> ConsistencyToken {
        try await engine.write { c in
            var last: Int64 = 0
            for e in edges {
                last = try engine.appendOutbox(c, dataset: spec.name, key: "\(e.from)\u{1F}\(e.to)\u{1F}\(e.label)", op: "put", payload: nil)
                try c.run("INSERT OR REPLACE INTO \(q(table))(src, dst, label, weight, props, version) VALUES (?, ?, ?, ?, ?, ?)",
                          [.text(e.from), .text(e.to), .text(e.label), .real(e.weight), e.properties.map { .text($0.text) } ?? .null, .integer(last)])
            }
            return engine.token(last)
        }
    }

    func removeEdge(from: String, to: String, label: String) async throws -> Bool {
        try await engine.write { c in
            try c.run("DELETE FROM \(q(table)) WHERE src = ? AND dst = ? AND label = ?", [.text(from), .text(to), .text(label)])
            guard c.changes > 0 else { return false }
            _ = try engine.appendOutbox(c, dataset: spec.name, key: "\(from)\u{1F}\(to)\u{1F}\(label)", op: "delete", payload: nil)
            return true
        }
    }

    /// A subquery of (a, b, label) pairs oriented for the walk direction.
    func links(_ direction: EdgeDirection) -> String {
        switch direction {
        case .outgoing: "SELECT src AS a, dst AS b, label FROM \(q(table))"
        case .incoming: "SELECT dst AS a, src AS b, label FROM \(q(table))"
        case .both: "SELECT src AS a, dst AS b, label FROM \(q(table)) UNION ALL SELECT dst AS a, src AS b, label FROM \(q(table))"
        }
    }

    func edges(of node: String, direction: EdgeDirection, label: String?) async throws -> [Edge] {
        var conds: [String] = []
        var binds: [SQLValue] = []
        if direction != .incoming { conds.append("src = ?"); binds.append(.text(node)) }
        if direction != .outgoing { conds.append("dst = ?"); binds.append(.text(node)) }
        var sql = "SELECT src, dst, label, weight, props FROM \(q(table)) WHERE (\(conds.joined(separator: " OR ")))"
        if let label { sql += " AND label = ?"; binds.append(.text(label)) }
        sql += " ORDER BY src, dst, label"
        return try engine.read { c in
            try c.query(sql, binds).map { r in
                Edge(from: r[0].string ?? "", to: r[1].string ?? "", label: r[2].string ?? "", weight: r[3].double ?? 1,
                     properties: try r[4].string.map { try JSON(parsing: $0) })
            }
        }
    }

    func neighbors(of node: String, direction: EdgeDirection, label: String?) async throws -> [String] {
        var sql = "SELECT DISTINCT b FROM (\(links(direction))) WHERE a = ?"
        var binds: [SQLValue] = [.text(node)]
        if let label { sql += " AND label = ?"; binds.append(.text(label)) }
        sql += " ORDER BY b"
        return try engine.read { c in try c.query(sql, binds).compactMap { $0[0].string } }
    }

    func traverse(from node: String, maxDepth: Int, direction: EdgeDirection, label: String?) async throws -> [TraversalStep] {
        let labelCond = label == nil ? "" : " AND l.label = ?"
        let sql = """
        WITH RECURSIVE l(a, b, label) AS (\(links(direction))),
        walk(node, depth) AS (
            SELECT ?, 0
            UNION
            SELECT l.b, w.depth + 1 FROM walk w JOIN l ON l.a = w.node WHERE w.depth < ?\(labelCond)
        )
        SELECT node, min(depth) AS d FROM walk WHERE node != ? GROUP BY node ORDER BY d, node
        """
        var binds: [SQLValue] = [.text(node), .integer(Int64(maxDepth))]
        if let label { binds.append(.text(label)) }
        binds.append(.text(node))
        return try engine.read { c in
            try c.query(sql, binds).map { TraversalStep(node: $0[0].string ?? "", depth: Int($0[1].int ?? 0)) }
        }
    }

    func shortestPath(from: String, to: String, maxDepth: Int, direction: EdgeDirection, label: String?) async throws -> [String]? {
        if from == to { return [from] }
        // Breadth-first: SQLite's recursive CTE queue is FIFO, so the first row that reaches `to` has the fewest hops.
        // The path column carries visited nodes, so a walk never revisits a node (cycle-safe).
        let labelCond = label == nil ? "" : " AND l.label = ?"
        let sep = "\u{1F}"
        let sql = """
        WITH RECURSIVE l(a, b, label) AS (\(links(direction))),
        walk(node, depth, path) AS (
            SELECT ?, 0, ? || ? || ?
            UNION ALL
            SELECT l.b, w.depth + 1, w.path || l.b || ?
            FROM walk w JOIN l ON l.a = w.node
            WHERE w.depth < ? AND w.node != ? AND instr(w.path, ? || l.b || ?) = 0\(labelCond)
        )
        SELECT path FROM walk WHERE node = ? ORDER BY depth LIMIT 1
        """
        var binds: [SQLValue] = [.text(from), .text(sep), .text(from), .text(sep), .text(sep), .integer(Int64(maxDepth)), .text(to), .text(sep), .text(sep)]
        if let label { binds.append(.text(label)) }
        binds.append(.text(to))
        return try engine.read { c in
            guard let path = try c.query(sql, binds).first?.first?.string else { return nil }
            return path.split(separator: Character(sep)).map(String.init)
        }
    }
}

/// Samples in `(series, t, value)` with t in epoch milliseconds, indexed by (series, t).
struct SQLiteTimeSeriesStore: TimeSeriesStore {
    let engine: SQLiteEngine
    let spec: DatasetSpec
    var table: String { q(spec.name) }
    static func ms(_ d: Date) -> Int64 { Int64((d.timeIntervalSince1970 * 1000).rounded(.down)) }

    func append(_ samples: [Sample]) async throws -> ConsistencyToken {
        try await engine.write { c in
            let series = Set(samples.map(\.series)).sorted().joined(separator: ",")
            let v = try engine.appendOutbox(c, dataset: spec.name, key: series, op: "append", payload: nil)
            for s in samples {
                try c.run("INSERT INTO \(table)(series, t, value) VALUES (?, ?, ?)", [.text(s.series), .integer(Self.ms(s.time)), .real(s.value)])
            }
            return engine.token(v)
        }
    }

    func range(_ series: String, from: Date, to: Date, limit: Int?) async throws -> [Sample] {
        var sql = "SELECT t, value FROM \(table) WHERE series = ? AND t >= ? AND t < ? ORDER BY t"
        var binds: [SQLValue] = [.text(series), .integer(Self.ms(from)), .integer(Self.ms(to))]
        if let limit { sql += " LIMIT ?"; binds.append(.integer(Int64(limit))) }
        return try engine.read { c in
            try c.query(sql, binds).map { Sample(series: series, time: Date(timeIntervalSince1970: Double($0[0].int ?? 0) / 1000), value: $0[1].double ?? 0) }
        }
    }

    func aggregate(_ series: String, from: Date, to: Date, bucket: Duration) async throws -> [Bucket] {
        let width = max(1, bucket.components.seconds * 1000 + bucket.components.attoseconds / 1_000_000_000_000_000)
        let sql = """
        SELECT (t - (t % ?)) AS b, count(*), sum(value), min(value), max(value)
        FROM \(table) WHERE series = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b
        """
        let binds: [SQLValue] = [.integer(width), .text(series), .integer(Self.ms(from)), .integer(Self.ms(to))]
        return try engine.read { c in
            try c.query(sql, binds).map {
                Bucket(start: Date(timeIntervalSince1970: Double($0[0].int ?? 0) / 1000), count: Int($0[1].int ?? 0),
                       sum: $0[2].double ?? 0, min: $0[3].double ?? 0, max: $0[4].double ?? 0)
            }
        }
    }

    func deleteSamples(olderThan cutoff: Date) async throws -> Int {
        try await engine.write { c in
            try c.run("DELETE FROM \(table) WHERE t < ?", [.integer(Self.ms(cutoff))])
            return c.changes
        }
    }
}

/// Raw parameterized SQL: statements SQLite reports as read-only go to a reader connection, the rest run as a write.
struct SQLiteSQLExecutor: SQLExecutor {
    let engine: SQLiteEngine

    func execute(_ sql: String, _ parameters: [JSON]) async throws -> [Row] {
        let binds = parameters.map(SQLValue.init)
        let run = { (c: SQLiteConnection) throws -> [Row] in
            try c.namedQuery(sql, binds).map { $0.mapValues(\.json) }
        }
        if try engine.read({ try $0.isReadOnly(sql) }) { return try engine.read(run) }
        return try await engine.write(run)
    }
}

/// Telemetry history in `_polyglot_telemetry`, the advisor's observations in `_polyglot_observations` (JSON).
struct SQLiteTelemetryHistory: TelemetryHistoryStore {
    let engine: SQLiteEngine

    func appendObservations(_ observations: [WorkloadObservation]) async throws {
        let encoder = JSONEncoder()
        let rows = try observations.map { o in
            (o, String(decoding: try encoder.encode(o), as: UTF8.self))
        }
        try await engine.write { c in
            for (o, body) in rows {
                try c.run("INSERT INTO _polyglot_observations VALUES (?, ?, ?, ?, ?)", [
                    .real(o.intervalStart.timeIntervalSince1970), .real(o.intervalEnd.timeIntervalSince1970),
                    .text(o.dataset), .text(o.engine), .text(body),
                ])
            }
        }
    }

    func deleteHistory(before cutoff: Date) async throws {
        try await engine.write { c in
            try c.run("DELETE FROM _polyglot_telemetry WHERE interval_end < ?", [.real(cutoff.timeIntervalSince1970)])
            try c.run("DELETE FROM _polyglot_observations WHERE interval_end < ?", [.real(cutoff.timeIntervalSince1970)])
        }
    }

    func observations(since: Date) async throws -> [WorkloadObservation] {
        let bodies = try engine.read { c in
            try c.query("SELECT body FROM _polyglot_observations WHERE interval_end >= ? ORDER BY interval_end", [.real(since.timeIntervalSince1970)])
                .compactMap { $0[0].string }
        }
        let decoder = JSONDecoder()
        // An observation this version cannot read (written by a newer one) is skipped, not fatal.
        return bodies.compactMap { try? decoder.decode(WorkloadObservation.self, from: Data($0.utf8)) }
    }

    func append(_ records: [TelemetryRecord]) async throws {
        try await engine.write { c in
            for r in records {
                try c.run("INSERT INTO _polyglot_telemetry VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    .real(r.intervalStart.timeIntervalSince1970), .real(r.intervalEnd.timeIntervalSince1970),
                    .text(r.key.dataset), .text(r.key.engine), .text(r.key.operation),
                    .integer(Int64(r.stats.count)), .integer(Int64(r.stats.errors)), .integer(Int64(r.stats.rows)),
                    .integer(Int64(r.stats.bytes)), .text(r.stats.latency.encoded()),
                ])
            }
        }
    }

    func records(since: Date) async throws -> [TelemetryRecord] {
        try engine.read { c in
            try c.query("SELECT * FROM _polyglot_telemetry WHERE interval_end >= ? ORDER BY interval_end", [.real(since.timeIntervalSince1970)]).map { r in
                var stats = OperationStats()
                stats.count = UInt64(clamping: r[5].int ?? 0)
                stats.errors = UInt64(clamping: r[6].int ?? 0)
                stats.rows = UInt64(clamping: r[7].int ?? 0)
                stats.bytes = UInt64(clamping: r[8].int ?? 0)
                stats.latency = LatencyHistogram(encoded: r[9].string ?? "") ?? LatencyHistogram()
                return TelemetryRecord(intervalStart: Date(timeIntervalSince1970: r[0].double ?? 0), intervalEnd: Date(timeIntervalSince1970: r[1].double ?? 0),
                                       key: OperationKey(dataset: r[2].string ?? "", engine: r[3].string ?? "", operation: r[4].string ?? ""), stats: stats)
            }
        }
    }
}
