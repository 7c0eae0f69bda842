import Foundation
import Polyglot
import PostgresNIO

/// Creates and upgrades Polyglot's tables. Every statement is idempotent, and a migration runs in one
/// transaction under an advisory lock on the schema, so processes that start together take turns instead of
/// racing. Each dataset's definition is recorded with a version in `_polyglot_schema`; a changed definition
/// bumps the version and applies what changed (added columns, a rebuilt search column).
struct PostgresSchema {
    let engine: PostgresEngine
    var schema: String { engine.settings.schema }
    func t(_ name: String) -> String { engine.table(name) }
    func ix(_ name: String) -> String { PGQuery.ident(name) }

    func migrate(_ datasets: [DatasetSpec], vector: Bool) async throws {
        try await engine.write { c in
            // Migrations may wait for another process's migration and build indexes over existing rows: the
            // engine's statementTimeout is for application statements, not for this transaction.
            try await engine.exec(c, "SET LOCAL statement_timeout = 0")
            var lock = PGQuery()
            // One lock for the whole server: CREATE EXTENSION and CREATE SCHEMA race across schemas too.
            lock.sql = "SELECT pg_advisory_xact_lock(hashtext(\(lock.bind("polyglot schema migration"))))"
            try await engine.execute(c, lock)
            for sql in core(vector: vector) { try await engine.exec(c, sql) }
            for ds in datasets {
                let definition = try definition(of: ds)
                var q = PGQuery()
                q.sql = "SELECT version, definition FROM \(t("_polyglot_schema")) WHERE dataset = \(q.bind(ds.name))"
                var recorded: (Int, String)?
                for try await row in try await c.query(q.query, logger: engine.logger).decode((Int, String).self) { recorded = row }
                if let recorded, recorded.1 == definition { continue }
                for sql in try statements(for: ds, previous: recorded?.1) { try await engine.exec(c, sql) }
                var w = PGQuery()
                w.sql = """
                INSERT INTO \(t("_polyglot_schema"))(dataset, model, version, definition, updated_at)
                VALUES (\(w.bind(ds.name)), \(w.bind(ds.model.rawValue)), \(w.bind((recorded?.0 ?? 0) + 1)), \(w.bind(definition)), now())
                ON CONFLICT (dataset) DO UPDATE SET model = excluded.model, version = excluded.version, definition = excluded.definition, updated_at = now()
                """
                try await engine.execute(c, w)
                engine.logger.info("schema migrated", metadata: ["dataset": "\(ds.name)", "version": "\((recorded?.0 ?? 0) + 1)"])
            }
        }
    }

    func core(vector: Bool) -> [String] {
        var s = ["CREATE SCHEMA IF NOT EXISTS \(PGQuery.ident(schema))"]
        if vector { s.append("CREATE EXTENSION IF NOT EXISTS vector") }
        s += [
            """
            CREATE TABLE IF NOT EXISTS \(t("_polyglot_outbox")) (
                position bigserial PRIMARY KEY, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                dataset text NOT NULL, key text NOT NULL, op text NOT NULL, payload jsonb,
                created_at timestamptz NOT NULL DEFAULT now())
            """,
            "CREATE INDEX IF NOT EXISTS \(ix("_polyglot_outbox_created")) ON \(t("_polyglot_outbox")) (created_at)",
            "CREATE INDEX IF NOT EXISTS \(ix("_polyglot_outbox_xid")) ON \(t("_polyglot_outbox")) (xid)",
            // Each statement that appends to the outbox notifies the relay (once per transaction and channel).
            """
            CREATE OR REPLACE FUNCTION \(t("_polyglot_outbox_notify"))() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify(\(PGQuery.literal(engine.notifyChannel)), ''); RETURN NULL; END $$
            """,
            """
            CREATE OR REPLACE TRIGGER _polyglot_outbox_notify AFTER INSERT ON \(t("_polyglot_outbox"))
            FOR EACH STATEMENT EXECUTE FUNCTION \(t("_polyglot_outbox_notify"))()
            """,
            """
            CREATE TABLE IF NOT EXISTS \(t("_polyglot_schema")) (
                dataset text PRIMARY KEY, model text NOT NULL, version int NOT NULL, definition text NOT NULL, updated_at timestamptz NOT NULL)
            """,
            """
            CREATE TABLE IF NOT EXISTS \(t("_polyglot_telemetry")) (
                interval_start double precision NOT NULL, interval_end double precision NOT NULL, dataset text NOT NULL, engine text NOT NULL,
                operation text NOT NULL, count bigint NOT NULL, errors bigint NOT NULL, rows bigint NOT NULL, bytes bigint NOT NULL, histogram text NOT NULL)
            """,
            "CREATE INDEX IF NOT EXISTS \(ix("_polyglot_telemetry_time")) ON \(t("_polyglot_telemetry")) (interval_end)",
            """
            CREATE TABLE IF NOT EXISTS \(t("_polyglot_observations")) (
                interval_start double precision NOT NULL, interval_end double precision NOT NULL, dataset text NOT NULL, engine text NOT NULL,
                body text NOT NULL)
            """,
            "CREATE INDEX IF NOT EXISTS \(ix("_polyglot_observations_time")) ON \(t("_polyglot_observations")) (interval_end)",
        ]
        return s
    }

    /// What the tables of a dataset depend on; a change here is a new schema version.
    func definition(of ds: DatasetSpec) throws -> String {
        var parts = ["model=\(ds.model.rawValue)"]
        parts.append("fields=" + ds.fields.map { "\($0.name):\($0.type.rawValue):\($0.nullable)" }.joined(separator: ","))
        if let pk = ds.primaryKey { parts.append("pk=\(pk)") }
        if let d = ds.dimension { parts.append("dim=\(d):\(ds.metric.rawValue):\(ds.index.m):\(ds.index.efConstruction)") }
        if let p = ds.projection(.search), p.engine == engine.spec.name { parts.append("search=\(p.fields.joined(separator: ",")):\(engine.settings.textSearch)") }
        if let p = ds.projection(.vectors), p.engine == engine.spec.name { parts.append("vectors=\(p.dimension ?? 0):\(p.metric.rawValue):\(p.index.m):\(p.index.efConstruction)") }
        if let p = ds.projection(.graph), p.engine == engine.spec.name { parts.append("graph=\(p.edgeField ?? "")") }
        if ds.model == .keyValue { parts.append("unlogged=\(engine.settings.unloggedKeyValue)") }
        return parts.joined(separator: ";")
    }

    static func sqlType(_ t: FieldType) -> String {
        switch t {
        case .string: "text"
        case .integer: "bigint"
        case .number: "double precision"
        case .boolean: "boolean"
        case .timestamp: "timestamptz"
        case .json: "jsonb"
        }
    }

    static func operatorClass(_ m: VectorMetric) -> String {
        switch m {
        case .cosine: "vector_cosine_ops"
        case .l2: "vector_l2_ops"
        case .innerProduct: "vector_ip_ops"
        }
    }

    func hnsw(_ table: String, column: String, metric: VectorMetric, index: VectorIndexSpec) -> String {
        "CREATE INDEX IF NOT EXISTS \(ix(table + "__hnsw")) ON \(t(table)) USING hnsw (\(column) \(PostgresSchema.operatorClass(metric))) WITH (m = \(index.m), ef_construction = \(index.efConstruction))"
    }

    func edgeTable(_ name: String) -> [String] {
        [
            "CREATE TABLE IF NOT EXISTS \(t(name)) (src text NOT NULL, dst text NOT NULL, label text NOT NULL DEFAULT '', weight double precision NOT NULL DEFAULT 1, props jsonb, version bigint NOT NULL, PRIMARY KEY (src, dst, label))",
            "CREATE INDEX IF NOT EXISTS \(ix(name + "__dst")) ON \(t(name)) (dst, src)",
        ]
    }

    /// The tsvector expression of a search projection: the first field weighs most.
    func searchExpression(_ fields: [String]) -> String {
        let config = PGQuery.literal(engine.settings.textSearch) + "::regconfig"
        let weights = ["A", "B", "C", "D"]
        return fields.enumerated().map { i, f in
            let path = "{" + FieldPath(f).components.joined(separator: ",") + "}"
            return "setweight(to_tsvector(\(config), coalesce(body #>> \(PGQuery.literal(path)), '')), '\(weights[min(i, 3)])')"
        }.joined(separator: " || ")
    }

    func statements(for ds: DatasetSpec, previous: String?) throws -> [String] {
        let name = ds.name
        var s: [String] = []
        switch ds.model {
        case .documents:
            s.append("CREATE TABLE IF NOT EXISTS \(t(name)) (id text PRIMARY KEY, version bigint NOT NULL, body jsonb NOT NULL)")
            s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__gin")) ON \(t(name)) USING gin (body jsonb_path_ops)")
            for f in ds.fields {
                s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__" + f.name)) ON \(t(name)) ((\(PGFilter.path("body", FieldPath(f.name)))))")
            }
            if let p = ds.projection(.search), p.engine == engine.spec.name {
                // A generated column cannot change its expression: drop it when the fields or configuration changed.
                if previous != nil { s.append("ALTER TABLE \(t(name)) DROP COLUMN IF EXISTS search") }
                s.append("ALTER TABLE \(t(name)) ADD COLUMN IF NOT EXISTS search tsvector GENERATED ALWAYS AS (\(searchExpression(p.fields))) STORED")
                s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__search")) ON \(t(name)) USING gin (search)")
            }
            if let p = ds.projection(.vectors), p.engine == engine.spec.name, let dim = p.dimension {
                s.append("CREATE TABLE IF NOT EXISTS \(t(name + "__vectors")) (id text PRIMARY KEY, embedding vector(\(dim)) NOT NULL)")
                s.append(hnsw(name + "__vectors", column: "embedding", metric: p.metric, index: p.index))
            }
            if let p = ds.projection(.graph), p.engine == engine.spec.name { s += edgeTable(name + "__edges") }
        case .keyValue:
            let unlogged = engine.settings.unloggedKeyValue ? "UNLOGGED " : ""
            s.append("CREATE \(unlogged)TABLE IF NOT EXISTS \(t(name)) (key text COLLATE \"C\" PRIMARY KEY, value bytea NOT NULL, expires_at timestamptz, version bigint NOT NULL)")
            s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__expiry")) ON \(t(name)) (expires_at) WHERE expires_at IS NOT NULL")
        case .vectors:
            guard let dim = ds.dimension else { return s }
            s.append("CREATE TABLE IF NOT EXISTS \(t(name)) (id text PRIMARY KEY, version bigint NOT NULL, embedding vector(\(dim)) NOT NULL, metadata jsonb)")
            s.append(hnsw(name, column: "embedding", metric: ds.metric, index: ds.index))
            s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__metadata")) ON \(t(name)) USING gin (metadata jsonb_path_ops)")
        case .table:
            let pk = ds.primaryKey ?? ""
            let cols = ds.fields.map { f in
                "\(PGQuery.ident(f.name)) \(PostgresSchema.sqlType(f.type))\(f.nullable && f.name != pk ? "" : " NOT NULL")"
            }
            s.append("CREATE TABLE IF NOT EXISTS \(t(name)) (\(cols.joined(separator: ", ")), PRIMARY KEY (\(PGQuery.ident(pk))))")
            // Columns added to the data map later; existing rows have no value, so they are nullable.
            for f in ds.fields { s.append("ALTER TABLE \(t(name)) ADD COLUMN IF NOT EXISTS \(PGQuery.ident(f.name)) \(PostgresSchema.sqlType(f.type))") }
        case .graph:
            s += edgeTable(name)
        case .timeSeries:
            s.append("CREATE TABLE IF NOT EXISTS \(t(name)) (series text NOT NULL, t timestamptz NOT NULL, value double precision NOT NULL) PARTITION BY RANGE (t)")
            s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__series_time")) ON \(t(name)) (series, t)")
            s.append("CREATE INDEX IF NOT EXISTS \(ix(name + "__brin")) ON \(t(name)) USING brin (t)")
        }
        return s
    }
}
