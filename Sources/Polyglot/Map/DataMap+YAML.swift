import Foundation
import Yams

extension DataMap {
    /// Loads a data map from a `polyglot.yml` file. Relative engine paths are resolved against the file's folder,
    /// then environment overrides are applied (see ``applyingEnvironment(_:)``).
    public init(contentsOf path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw PolyglotError(.invalidDataMap, "Cannot read data map '\(path)': \(error.localizedDescription.trimmingCharacters(in: CharacterSet(charactersIn: ". "))).",
                                fix: "Check the path, or run `polyglot quickstart` to create an example map.")
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try self.init(yaml: text, baseDirectory: folder)
        self = applyingEnvironment(environment)
    }

    /// Parses a data map from YAML text. Relative engine paths are resolved against `baseDirectory` when given.
    ///
    /// ```yaml
    /// engines:
    ///   primary: { kind: sqlite, path: app.sqlite }
    ///   cache:   { kind: memory, options: { maxEntries: 10000 } }
    /// datasets:
    ///   products:
    ///     model: documents
    ///     engine: primary
    ///     fields: { price: number, category: string }
    ///     projections:
    ///       - { kind: cache, engine: cache, ttl: 5m }
    ///       - { kind: search, engine: primary, fields: [name, description] }
    ///   sessions: { model: keyValue, engine: primary, ttl: 30m }
    /// ```
    public init(yaml: String, baseDirectory: String? = nil) throws {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw PolyglotError(.invalidDataMap, "The data map is not valid YAML: \(error).",
                                fix: "Fix the YAML syntax at the line shown (indentation and ':' are the usual causes).")
        }
        guard let root, let top = root.mapping else {
            throw PolyglotError(.invalidDataMap, "The data map must be a YAML mapping with `engines:` and `datasets:`.",
                                fix: "Start from the example that `polyglot quickstart` writes.")
        }
        let reader = YAMLReader()
        try reader.allowOnly(["engines", "datasets", "telemetry", "embedders", "advisor"], in: top, at: "the data map")
        var engines: [EngineSpec] = []
        if let node = top["engines"] {
            for (name, body) in try reader.namedEntries(node, at: "engines") {
                engines.append(try reader.engine(name: name, body, baseDirectory: baseDirectory))
            }
        }
        var datasets: [DatasetSpec] = []
        if let node = top["datasets"] {
            for (name, body) in try reader.namedEntries(node, at: "datasets") {
                datasets.append(try reader.dataset(name: name, body))
            }
        }
        var embedders: [EmbedderSpec] = []
        if let node = top["embedders"] {
            for (name, body) in try reader.namedEntries(node, at: "embedders") {
                embedders.append(try reader.embedder(name: name, body))
            }
        }
        var telemetry = TelemetrySpec()
        if let node = top["telemetry"] {
            guard let m = node.mapping else { throw reader.error("telemetry", "must be a mapping") }
            try reader.allowOnly(["flushInterval", "store"], in: m, at: "telemetry")
            if let v = m["flushInterval"] { telemetry.flushInterval = try reader.duration(v, at: "telemetry.flushInterval") }
            if let v = m["store"] { telemetry.store = try reader.string(v, at: "telemetry.store") }
        }
        let advisor = try top["advisor"].map { try reader.advisor($0) } ?? AdvisorSettings()
        self.init(engines: engines, datasets: datasets, telemetry: telemetry, embedders: embedders, advisor: advisor)
    }

    /// The longest duration `parseDuration` reads: 100 years. Longer ones (and `inf`) would overflow the nanosecond,
    /// microsecond and millisecond counts the engines convert durations to.
    public static let longestDuration: Duration = .seconds(100 * 366 * 86_400)

    /// Parses a duration such as `500ms`, `30s`, `5m`, `2h`, `7d` or `1w`; a bare number means seconds. Nil for
    /// anything else, including `inf`, `nan` and more than `longestDuration` either way.
    public static func parseDuration(_ text: String) -> Duration? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604800)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let n = Double(t.dropLast(suffix.count)) else { continue }
            return milliseconds(n * scale)
        }
        return Double(t).flatMap(milliseconds)
    }

    /// Whole milliseconds of `seconds`, or nil when it is not finite or longer than `longestDuration` (`inf`, `nan`
    /// and `1e300s` are not durations, and must not trap).
    private static func milliseconds(_ seconds: Double) -> Duration? {
        guard seconds.magnitude <= Double(longestDuration.components.seconds) else { return nil }
        return Int64(exactly: (seconds * 1000).rounded()).map { .milliseconds($0) }
    }

    /// Parses a size in bytes: a whole number, optionally with `B`, `KB`, `MB` or `GB` (binary multiples; `KiB` and
    /// so on too). With `counts`, a number of things instead, optionally with `K` or `M` (thousands, millions:
    /// `100K` entries). Nil for anything else, and when the result would not fit an `Int`.
    public static func parseSize(_ text: String, counts: Bool = false) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased().replacingOccurrences(of: "IB", with: "B")
        let scales: [(String, Int)] = counts ? [("K", 1000), ("M", 1_000_000)] : [("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("B", 1)]
        for (suffix, scale) in scales where t.hasSuffix(suffix) {
            guard let n = Int(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)) else { return nil }
            let (v, overflow) = n.multipliedReportingOverflow(by: scale)
            return overflow ? nil : v
        }
        return Int(t)
    }
}

/// Reads Yams nodes with errors that name the YAML path and line.
struct YAMLReader {
    func error(_ path: String, _ what: String, line: Mark? = nil, fix: String? = nil) -> PolyglotError {
        let at = line.map { " (line \($0.line))" } ?? ""
        return PolyglotError(.invalidDataMap, "Data map: `\(path)`\(at) \(what).", fix: fix)
    }

    func namedEntries(_ node: Node, at path: String) throws -> [(String, Node)] {
        guard let mapping = node.mapping else {
            throw error(path, "must be a mapping of names to definitions", line: node.mark,
                        fix: "Write each entry as `name:` followed by its settings, indented.")
        }
        var seen = Set<String>()
        var out: [(String, Node)] = []
        for (k, v) in mapping {
            let name = try string(k, at: path)
            if !seen.insert(name).inserted {
                throw error("\(path).\(name)", "is declared twice", line: k.mark, fix: "Give each entry a unique name.")
            }
            out.append((name, v))
        }
        return out
    }

    func allowOnly(_ keys: Set<String>, in mapping: Node.Mapping, at path: String) throws {
        for key in mapping.keys {
            let k = key.string ?? "?"
            if !keys.contains(k) {
                throw error(path, "has an unknown setting '\(k)'", line: key.mark,
                            fix: "Allowed settings here: \(keys.sorted().joined(separator: ", ")).")
            }
        }
    }

    func string(_ node: Node, at path: String) throws -> String {
        guard let s = node.scalar?.string else { throw error(path, "must be a single value", line: node.mark) }
        return s
    }

    func int(_ node: Node, at path: String) throws -> Int {
        guard let s = node.scalar?.string, let i = Int(s) else {
            throw error(path, "must be a whole number", line: node.mark)
        }
        return i
    }

    /// A number of bytes, optionally with KB, MB or GB (`DataMap.parseSize`).
    func size(_ node: Node, at path: String) throws -> Int {
        guard let s = node.scalar?.string, let n = DataMap.parseSize(s) else {
            throw error(path, "must be a number of bytes, optionally with KB, MB or GB", line: node.mark, fix: "Write it as 4096, 64KB or 1MB.")
        }
        return n
    }

    func bool(_ node: Node, at path: String) throws -> Bool {
        switch node.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(path, "must be true or false", line: node.mark)
        }
    }

    func double(_ node: Node, at path: String) throws -> Double {
        guard let s = node.scalar?.string, let d = Double(s) else { throw error(path, "must be a number", line: node.mark) }
        return d
    }

    func stringList(_ node: Node, at path: String) throws -> [String] {
        if let seq = node.sequence { return try seq.map { try string($0, at: path) } }
        return [try string(node, at: path)]
    }

    func duration(_ node: Node, at path: String) throws -> Duration {
        let s = try string(node, at: path)
        guard let d = DataMap.parseDuration(s) else {
            throw error(path, "is '\(s)', which is not a duration", line: node.mark, fix: "Write it as 500ms, 30s, 5m, 2h or 7d (at most 100 years).")
        }
        return d
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ type: T.Type, at path: String) throws -> T where T.RawValue == String {
        let s = try string(node, at: path)
        guard let v = T(rawValue: s) else {
            throw error(path, "is '\(s)'", line: node.mark, fix: "Use one of: \(T.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        return v
    }

    func engine(name: String, _ node: Node, baseDirectory: String?) throws -> EngineSpec {
        let path = "engines.\(name)"
        guard let m = node.mapping else { throw error(path, "must be a mapping with at least `kind:`", line: node.mark) }
        try allowOnly(["kind", "url", "path", "options"], in: m, at: path)
        guard let kindNode = m["kind"] else {
            throw error(path, "has no `kind:`", line: node.mark, fix: "Add `kind: sqlite` (or memory, postgres, redis).")
        }
        var spec = EngineSpec(name: name, kind: try string(kindNode, at: "\(path).kind"))
        if let v = m["url"] { spec.url = try string(v, at: "\(path).url") }
        if let v = m["path"] {
            var p = try string(v, at: "\(path).path")
            if let base = baseDirectory, !p.hasPrefix("/"), p != ":memory:" {
                p = URL(fileURLWithPath: base).appendingPathComponent(p).standardizedFileURL.path
            }
            spec.path = p
        }
        if let v = m["options"] {
            guard let om = v.mapping else { throw error("\(path).options", "must be a mapping", line: v.mark) }
            for (k, val) in om { spec.options[try string(k, at: "\(path).options")] = try string(val, at: "\(path).options") }
        }
        return spec
    }

    func fields(_ node: Node, at path: String) throws -> [FieldSpec] {
        guard let m = node.mapping else {
            throw error(path, "must map field names to types", line: node.mark, fix: "Write e.g. `{ price: number, name: string }`.")
        }
        return try m.map { k, v in
            let name = try string(k, at: path)
            var typeText = try string(v, at: "\(path).\(name)")
            var nullable = true
            if typeText.hasSuffix("!") { nullable = false; typeText.removeLast() }
            guard let type = FieldType(rawValue: typeText) else {
                throw error("\(path).\(name)", "has unknown type '\(typeText)'", line: v.mark,
                            fix: "Use one of: \(FieldType.allCases.map(\.rawValue).joined(separator: ", ")); add '!' for NOT NULL.")
            }
            return FieldSpec(name, type, nullable: nullable)
        }
    }

    func dataset(name: String, _ node: Node) throws -> DatasetSpec {
        let path = "datasets.\(name)"
        guard let m = node.mapping else { throw error(path, "must be a mapping with `model:` and `engine:`", line: node.mark) }
        try allowOnly(["model", "engine", "fields", "columns", "primaryKey", "dimension", "metric", "ttl", "retention",
                       "maxKeyBytes", "maxValueBytes", "projections", "index", "capture"], in: m, at: path)
        guard let modelNode = m["model"] else {
            throw error(path, "has no `model:`", line: node.mark, fix: "Add `model:` with one of: \(DataModel.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        guard let engineNode = m["engine"] else {
            throw error(path, "has no `engine:`", line: node.mark, fix: "Add `engine:` naming one of the engines under `engines:`.")
        }
        var spec = DatasetSpec(name: name, model: try choice(modelNode, DataModel.self, at: "\(path).model"),
                               engine: try string(engineNode, at: "\(path).engine"))
        if let v = m["fields"] { spec.fields = try fields(v, at: "\(path).fields") }
        if let v = m["columns"] { spec.fields = try fields(v, at: "\(path).columns") }
        if let v = m["primaryKey"] { spec.primaryKey = try string(v, at: "\(path).primaryKey") }
        if let v = m["dimension"] { spec.dimension = try int(v, at: "\(path).dimension") }
        if let v = m["metric"] { spec.metric = try choice(v, VectorMetric.self, at: "\(path).metric") }
        if let v = m["ttl"] { spec.ttl = try duration(v, at: "\(path).ttl") }
        if let v = m["retention"] { spec.retention = try duration(v, at: "\(path).retention") }
        if let v = m["maxKeyBytes"] { spec.maxKeyBytes = try size(v, at: "\(path).maxKeyBytes") }
        if let v = m["maxValueBytes"] { spec.maxValueBytes = try size(v, at: "\(path).maxValueBytes") }
        if let v = m["index"] { spec.index = try vectorIndex(v, at: "\(path).index") }
        if let v = m["capture"] { spec.capture = try bool(v, at: "\(path).capture") }
        if let v = m["projections"] {
            guard let seq = v.sequence else {
                throw error("\(path).projections", "must be a list", line: v.mark, fix: "Write each projection as a `- kind: ...` item.")
            }
            for (i, item) in seq.enumerated() { spec.projections.append(try projection(item, at: "\(path).projections[\(i)]")) }
        }
        return spec
    }

    func vectorIndex(_ node: Node, at path: String) throws -> VectorIndexSpec {
        guard let m = node.mapping else {
            throw error(path, "must be a mapping", line: node.mark, fix: "Write e.g. `index: { m: 16, efConstruction: 200, efSearch: 64 }`.")
        }
        try allowOnly(["m", "efConstruction", "efSearch"], in: m, at: path)
        var spec = VectorIndexSpec()
        if let v = m["m"] { spec.m = try int(v, at: "\(path).m") }
        if let v = m["efConstruction"] { spec.efConstruction = try int(v, at: "\(path).efConstruction") }
        if let v = m["efSearch"] { spec.efSearch = try int(v, at: "\(path).efSearch") }
        return spec
    }

    func projection(_ node: Node, at path: String) throws -> ProjectionSpec {
        guard let m = node.mapping else { throw error(path, "must be a mapping with `kind:` and `engine:`", line: node.mark) }
        try allowOnly(["kind", "engine", "ttl", "jitter", "fields", "vectorField", "dimension", "metric", "edgeField", "edgeLabel", "index", "embedder"],
                      in: m, at: path)
        guard let kindNode = m["kind"] else {
            throw error(path, "has no `kind:`", line: node.mark, fix: "Use one of: \(ProjectionKind.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        guard let engineNode = m["engine"] else { throw error(path, "has no `engine:`", line: node.mark, fix: "Name the engine that holds the projection.") }
        var spec = ProjectionSpec(kind: try choice(kindNode, ProjectionKind.self, at: "\(path).kind"),
                                  engine: try string(engineNode, at: "\(path).engine"))
        if let v = m["ttl"] { spec.ttl = try duration(v, at: "\(path).ttl") }
        if let v = m["jitter"] { spec.jitter = try double(v, at: "\(path).jitter") }
        if let v = m["fields"] { spec.fields = try stringList(v, at: "\(path).fields") }
        if let v = m["vectorField"] { spec.vectorField = try string(v, at: "\(path).vectorField") }
        if let v = m["dimension"] { spec.dimension = try int(v, at: "\(path).dimension") }
        if let v = m["metric"] { spec.metric = try choice(v, VectorMetric.self, at: "\(path).metric") }
        if let v = m["edgeField"] { spec.edgeField = try string(v, at: "\(path).edgeField") }
        if let v = m["edgeLabel"] { spec.edgeLabel = try string(v, at: "\(path).edgeLabel") }
        if let v = m["index"] { spec.index = try vectorIndex(v, at: "\(path).index") }
        if let v = m["embedder"] { spec.embedder = try string(v, at: "\(path).embedder") }
        return spec
    }

    func embedder(name: String, _ node: Node) throws -> EmbedderSpec {
        let path = "embedders.\(name)"
        guard let m = node.mapping else { throw error(path, "must be a mapping with `kind:`", line: node.mark) }
        try allowOnly(["kind", "url", "model", "apiKeyEnv", "requestDimensions", "batchSize", "timeout", "maxAttempts"], in: m, at: path)
        guard let kindNode = m["kind"] else {
            throw error(path, "has no `kind:`", line: node.mark, fix: "Use one of: \(EmbedderSpec.kinds.joined(separator: ", ")).")
        }
        var spec = EmbedderSpec(name: name, kind: try string(kindNode, at: "\(path).kind"))
        if let v = m["url"] { spec.url = try string(v, at: "\(path).url") }
        if let v = m["model"] { spec.model = try string(v, at: "\(path).model") }
        if let v = m["apiKeyEnv"] { spec.apiKeyEnv = try string(v, at: "\(path).apiKeyEnv") }
        if let v = m["requestDimensions"] { spec.requestDimensions = try bool(v, at: "\(path).requestDimensions") }
        if let v = m["batchSize"] { spec.batchSize = try int(v, at: "\(path).batchSize") }
        if let v = m["timeout"] { spec.timeout = try duration(v, at: "\(path).timeout") }
        if let v = m["maxAttempts"] { spec.maxAttempts = try int(v, at: "\(path).maxAttempts") }
        return spec
    }
}
