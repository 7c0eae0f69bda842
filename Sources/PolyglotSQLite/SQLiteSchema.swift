import Foundation
import Polyglot

/// The DDL for Polyglot's own tables and for each dataset. Every statement is idempotent
/// (`IF NOT EXISTS`, added columns only), and `prepare` runs it inside one IMMEDIATE transaction,
/// so processes that start together serialize instead of racing.
enum SQLiteSchema {
    static let core = """
    CREATE TABLE IF NOT EXISTS _polyglot_outbox (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL, payload BLOB, created_at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS _polyglot_telemetry (
        interval_start REAL NOT NULL, interval_end REAL NOT NULL, dataset TEXT NOT NULL, engine TEXT NOT NULL,
        operation TEXT NOT NULL, count INTEGER NOT NULL, errors INTEGER NOT NULL, rows INTEGER NOT NULL,
        bytes INTEGER NOT NULL, histogram TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS _polyglot_telemetry_time ON _polyglot_telemetry(interval_end);
    CREATE TABLE IF NOT EXISTS _polyglot_observations (
        interval_start REAL NOT NULL, interval_end REAL NOT NULL, dataset TEXT NOT NULL, engine TEXT NOT NULL, body TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS _polyglot_observations_time ON _polyglot_observations(interval_end);
    CREATE TABLE IF NOT EXISTS _polyglot_conversions (name TEXT NOT NULL PRIMARY KEY);
    """

    /// Table timestamp columns hold seconds since 1970 (REAL), so filters and sorting compare times. Before that,
    /// text written as ISO 8601 was stored as text, which sorts above every number: once per table, such text is
    /// converted to seconds (text that is not a time is left as it is). `_polyglot_conversions` records that it ran.
    static func storeTimestampsAsSeconds(_ ds: DatasetSpec, on c: SQLiteConnection) throws {
        let columns = ds.fields.filter { $0.type == .timestamp }.map(\.name)
        guard ds.model == .table, !columns.isEmpty else { return }
        let marker = "timestamps as seconds: " + ds.name
        guard try c.query("SELECT 1 FROM _polyglot_conversions WHERE name = ?", [.text(marker)]).isEmpty else { return }
        for column in columns {
            for row in try c.query("SELECT rowid, \(q(column)) FROM \(q(ds.name)) WHERE typeof(\(q(column))) = 'text'") {
                guard let rowid = row[0].int, let text = row[1].string, let date = Timestamp.parse(text) else { continue }
                try c.run("UPDATE \(q(ds.name)) SET \(q(column)) = ? WHERE rowid = ?", [.real(date.timeIntervalSince1970), .integer(rowid)])
            }
        }
        try c.run("INSERT INTO _polyglot_conversions(name) VALUES (?)", [.text(marker)])
    }

    static func q(_ name: String) -> String { SQLFilter.quoteIdentifier(name) }

    static func columns(of table: String, on c: SQLiteConnection) throws -> Set<String> {
        Set(try c.query("SELECT name FROM pragma_table_info(?)", [.text(table)]).compactMap { $0[0].string })
    }

    static func sqlType(_ t: FieldType) -> String {
        switch t {
        case .string, .json: "TEXT"
        case .integer, .boolean: "INTEGER"
        case .number: "REAL"
        case .timestamp: "NUMERIC"
        }
    }

    static func script(for ds: DatasetSpec, existingColumns: Set<String>) throws -> String {
        let t = q(ds.name)
        var s: [String] = []
        switch ds.model {
        case .documents:
            s.append("CREATE TABLE IF NOT EXISTS \(t) (id TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL)")
            let json = SQLFilter(.json(column: "body"))
            for f in ds.fields {
                s.append("CREATE INDEX IF NOT EXISTS \(q(ds.name + "__" + f.name)) ON \(t)(\(json.expression(FieldPath(f.name))))")
            }
            if let p = ds.projection(.search) {
                let cols = p.fields.indices.map { "f\($0)" }.joined(separator: ", ")
                s.append("CREATE VIRTUAL TABLE IF NOT EXISTS \(q(ds.name + "__fts")) USING fts5(\(cols), tokenize='porter unicode61')")
            }
            if ds.projection(.vectors) != nil {
                s.append("CREATE TABLE IF NOT EXISTS \(q(ds.name + "__vectors")) (id TEXT NOT NULL PRIMARY KEY, vector BLOB NOT NULL)")
            }
            if ds.projection(.graph) != nil {
                s.append(contentsOf: edgeTable(ds.name + "__edges"))
            }
        case .keyValue:
            s.append("CREATE TABLE IF NOT EXISTS \(t) (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL, expires_at REAL, version INTEGER NOT NULL) WITHOUT ROWID")
            s.append("CREATE INDEX IF NOT EXISTS \(q(ds.name + "__expiry")) ON \(t)(expires_at) WHERE expires_at IS NOT NULL")
        case .vectors:
            s.append("CREATE TABLE IF NOT EXISTS \(t) (id TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, vector BLOB NOT NULL, metadata TEXT)")
        case .table:
            let pk = ds.primaryKey ?? ""
            if existingColumns.isEmpty {
                let cols = ds.fields.map { f in
                    "\(q(f.name)) \(sqlType(f.type))\(f.nullable && f.name != pk ? "" : " NOT NULL")"
                }
                s.append("CREATE TABLE IF NOT EXISTS \(t) (\(cols.joined(separator: ", ")), PRIMARY KEY (\(q(pk))))")
            } else {
                for f in ds.fields where !existingColumns.contains(f.name) {
                    // SQLite cannot add a NOT NULL column without a default to existing rows; new columns are nullable.
                    s.append("ALTER TABLE \(t) ADD COLUMN \(q(f.name)) \(sqlType(f.type))")
                }
            }
        case .graph:
            s.append(contentsOf: edgeTable(ds.name))
        case .timeSeries:
            s.append("CREATE TABLE IF NOT EXISTS \(t) (series TEXT NOT NULL, t INTEGER NOT NULL, value REAL NOT NULL)")
            s.append("CREATE INDEX IF NOT EXISTS \(q(ds.name + "__series_time")) ON \(t)(series, t)")
            s.append("CREATE INDEX IF NOT EXISTS \(q(ds.name + "__time")) ON \(t)(t)")
        }
        return s.map { $0 + ";" }.joined(separator: "\n")
    }

    static func edgeTable(_ name: String) -> [String] {
        [
            "CREATE TABLE IF NOT EXISTS \(q(name)) (src TEXT NOT NULL, dst TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', weight REAL NOT NULL DEFAULT 1, props TEXT, version INTEGER NOT NULL, PRIMARY KEY (src, dst, label)) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS \(q(name + "__dst")) ON \(q(name))(dst, src)",
        ]
    }
}
