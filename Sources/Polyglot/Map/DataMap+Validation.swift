import Foundation

extension DataMap {
    /// Checks the map for mistakes, and each engine's kind against the capabilities the registry knows.
    /// Throws one ``PolyglotError`` (`.invalidDataMap`, `.unknownEngine`, `.missingCapability`) listing every problem found.
    /// `embedders` names the embedders supplied in code (`Polyglot(map:registry:embedders:)`), which vectors
    /// projections may name without declaring them.
    public func validate(registry: EngineRegistry, embedders custom: Set<String> = []) throws {
        var problems: [PolyglotError] = []
        func problem(_ code: PolyglotError.Code, _ message: String, fix: String) {
            problems.append(PolyglotError(code, message, fix: fix))
        }
        func problem(_ message: String, fix: String) { problem(.invalidDataMap, message, fix: fix) }
        let engineNames = engines.map(\.name).sorted().joined(separator: ", ")

        func checkIndex(_ i: VectorIndexSpec, at: String) {
            if !(2...128).contains(i.m) || !VectorIndexSpec.efRange.contains(i.efConstruction) || !VectorIndexSpec.efRange.contains(i.efSearch) {
                problem("\(at) has index settings m \(i.m), efConstruction \(i.efConstruction), efSearch \(i.efSearch).",
                        fix: "Use m between 2 and 128 (16 is a good default) and ef values from 1 to 10000, e.g. efConstruction 200, efSearch 64.")
            }
        }
        var seenEngines = Set<String>()
        for engine in engines {
            if !seenEngines.insert(engine.name).inserted {
                problem("Engine '\(engine.name)' is declared twice.", fix: "Give each engine a unique name.")
            }
            if registry.capabilities(ofKind: engine.kind) == nil {
                problem(.unknownEngineKind, "Engine '\(engine.name)' has kind '\(engine.kind)', which no registered engine provides (known kinds: \(registry.kinds.sorted().joined(separator: ", "))).",
                        fix: "Use a known kind, or register the engine module (e.g. `registry.register(SQLiteEngine.self)`).")
            }
        }
        var seenDatasets = Set<String>()
        for ds in datasets {
            let at = "Dataset '\(ds.name)'"
            if !seenDatasets.insert(ds.name).inserted {
                problem("\(at) is declared twice.", fix: "Give each dataset a unique name.")
            }
            if !DataMap.isValidDatasetName(ds.name) {
                problem("\(at) has a name engines cannot use as a table or key prefix.",
                        fix: "Start with a letter; use letters, digits and single underscores (no '__', no leading '_polyglot').")
            }
            guard let engine = engine(named: ds.engine) else {
                problem(.unknownEngine, "\(at) is on engine '\(ds.engine)', which is not declared (engines: \(engineNames)).",
                        fix: "Declare '\(ds.engine)' under `engines:` or point `engine:` at one of the declared engines.")
                continue
            }
            let caps = registry.capabilities(ofKind: engine.kind) ?? []
            let needed = Capability.forModel(ds.model)
            if registry.capabilities(ofKind: engine.kind) != nil, !caps.contains(needed) {
                let able = engines.filter { (registry.capabilities(ofKind: $0.kind) ?? []).contains(needed) }.map(\.name)
                problem(.missingCapability, "\(at) is a \(ds.model.rawValue) dataset, but engine '\(engine.name)' (\(engine.kind)) cannot hold \(ds.model.rawValue).",
                        fix: able.isEmpty ? "Add an engine that supports \(ds.model.rawValue), e.g. kind sqlite." : "Move it to one of: \(able.joined(separator: ", ")).")
            }
            if let ttl = ds.ttl, ttl <= .zero || ttl > DataMap.longestDuration {
                problem("\(at) has ttl \(ttl), which is not positive or is longer than 100 years.", fix: "Use a positive duration such as 30s or 15m, or remove `ttl:`.")
            }
            if let r = ds.retention, r <= .zero || r > DataMap.longestDuration {
                problem("\(at) has retention \(r), which is not positive or is longer than 100 years.", fix: "Use a positive duration such as 7d, or remove `retention:`.")
            }
            if ds.ttl != nil, ds.model != .keyValue {
                problem("\(at) sets `ttl:`, which only key-value datasets use.", fix: "Remove it, or put a cache projection with a ttl on the dataset.")
            }
            if ds.retention != nil, ds.model != .timeSeries {
                problem("\(at) sets `retention:`, which only time-series datasets use.", fix: "Remove `retention:`.")
            }
            if ds.maxKeyBytes <= 0 || ds.maxValueBytes <= 0 {
                problem("\(at) has a size limit of 0 or less.", fix: "Set maxKeyBytes and maxValueBytes to positive byte counts.")
            }
            if ds.model == .vectors {
                if let d = ds.dimension {
                    if !(1...4096).contains(d) { problem("\(at) has dimension \(d); it must be 1 to 4096.", fix: "Set `dimension:` to the length of your embeddings.") }
                } else {
                    problem("\(at) is a vectors dataset with no `dimension:`.", fix: "Add `dimension:` with the length of your embeddings, e.g. 384.")
                }
            }
            if ds.model == .vectors { checkIndex(ds.index, at: at) }
            if let p = ds.projection(.vectors) { checkIndex(p.index, at: at + ", projection vectors") }
            if ds.model == .table {
                if ds.fields.isEmpty {
                    problem("\(at) is a table with no `columns:`.", fix: "Declare its columns, e.g. `columns: { id: integer!, total: number }`.")
                }
                if let pk = ds.primaryKey, ds.field(pk) == nil {
                    problem("\(at) has primaryKey '\(pk)', which is not among its columns.", fix: "Declare '\(pk)' under `columns:` or pick a declared column.")
                }
                if ds.primaryKey == nil {
                    problem("\(at) is a table with no `primaryKey:`.", fix: "Name the column that identifies a row, e.g. `primaryKey: id`.")
                }
            }
            if ds.model == .documents, ds.fields.contains(where: { $0.name == "id" }) {
                problem("\(at) declares a field named 'id', which is reserved for the document id.", fix: "Rename the field.")
            }
            var seenFields = Set<String>()
            for f in ds.fields {
                if !seenFields.insert(f.name).inserted { problem("\(at) declares field '\(f.name)' twice.", fix: "Keep one declaration.") }
                do { try FieldPath(f.name).validate() } catch {
                    problem("\(at) declares field '\(f.name)', which is not a valid field path.", fix: "Use letters, digits, '_' and '.' only.")
                }
            }
            if ds.capture {
                if ![.documents, .table].contains(ds.model) {
                    problem("\(at) sets `capture: true`, but change capture applies to documents and tables; it is \(ds.model.rawValue).",
                            fix: "Remove `capture:`, or make the dataset documents or a table.")
                } else if let e = self.engine(named: ds.engine), let caps = registry.capabilities(ofKind: e.kind), !caps.contains(.changeCapture) {
                    problems.append(PolyglotError(.missingCapability, "\(at) sets `capture: true`, but engine '\(e.name)' (\(e.kind)) cannot capture changes from its log.",
                                                  fix: "Place the dataset on a postgres engine, or remove `capture:` and write it only through Polyglot."))
                }
            }
            for p in ds.projections {
                validateProjection(p, of: ds, registry: registry, customEmbedders: custom, problem: { problems.append($0) })
            }
        }
        var seenEmbedders = Set<String>()
        for e in embedders {
            let at = "Embedder '\(e.name)'"
            if !seenEmbedders.insert(e.name).inserted { problem("\(at) is declared twice.", fix: "Keep one declaration.") }
            if e.name == EmbedderSpec.hashing { problem("\(at) uses the name of the built-in hashing embedder.", fix: "Pick another name.") }
            switch e.kind {
            case "openai":
                if e.url.flatMap({ URL(string: $0) }).map({ ["http", "https"].contains($0.scheme ?? "") }) != true {
                    problem("\(at) has no http(s) `url:` (got \(e.url.map { "'\($0)'" } ?? "none")).", fix: "Set `url:` to the API base, e.g. https://api.openai.com/v1.")
                }
                if (e.model ?? "").isEmpty { problem("\(at) has no `model:`.", fix: "Name the embedding model, e.g. text-embedding-3-small.") }
            case "hashing":
                break
            default:
                problem("\(at) has kind '\(e.kind)'.", fix: "Use one of: \(EmbedderSpec.kinds.joined(separator: ", ")).")
            }
            if !(1...2048).contains(e.batchSize) { problem("\(at) has batchSize \(e.batchSize); it must be 1 to 2048.", fix: "Use e.g. 64.") }
            if e.maxAttempts < 1 { problem("\(at) has maxAttempts \(e.maxAttempts).", fix: "Use 1 or more, e.g. 5.") }
            if e.timeout <= .zero { problem("\(at) has a timeout that is not positive.", fix: "Use e.g. 30s.") }
        }
        if let store = telemetry.store, engine(named: store) == nil {
            problem(.unknownEngine, "`telemetry.store` names engine '\(store)', which is not declared.", fix: "Name a declared engine, e.g. the primary.")
        }
        if telemetry.flushInterval <= .zero {
            problem("`telemetry.flushInterval` must be positive.", fix: "Use e.g. 60s.")
        }
        problems += advisor.problems()
        guard !problems.isEmpty else { return }
        if problems.count == 1 { throw problems[0] }
        let code = problems.allSatisfy { $0.code == problems[0].code } ? problems[0].code : .invalidDataMap
        throw PolyglotError(code, "The data map has \(problems.count) problems:\n" + problems.map { "- \($0.description)" }.joined(separator: "\n"))
    }

    /// Dataset names become table names and key prefixes: a letter, then letters, digits and single underscores.
    public static func isValidDatasetName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.properties.isAlphabetic, first.isASCII, name.count <= 63 else { return false }
        return !name.contains("__") && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }

    private func validateProjection(_ p: ProjectionSpec, of ds: DatasetSpec, registry: EngineRegistry, customEmbedders custom: Set<String>, problem: (PolyglotError) -> Void) {
        let at = "Dataset '\(ds.name)', projection \(p.kind.rawValue)"
        guard let engine = engine(named: p.engine) else {
            problem(PolyglotError(.unknownEngine, "\(at) is on engine '\(p.engine)', which is not declared.",
                                  fix: "Declare it under `engines:` or name a declared engine."))
            return
        }
        if ds.model == .table, ds.capture {
            // A captured table's rows reach other engines through the relay, as documents keyed by the primary key.
            if p.kind == .cache || (![.analytics, .stream].contains(p.kind) && p.engine == ds.engine) {
                problem(PolyglotError(.invalidDataMap, "\(at): a table's projections are kept by the relay on another engine; this one is \(p.kind == .cache ? "a cache" : "on the table's own engine").",
                                      fix: "Put search, vectors and graph projections of a table on another engine (its rows are copied there as documents), or use analytics and stream."))
            }
        } else if ds.model != .documents {
            problem(PolyglotError(.invalidDataMap, "\(at): projections apply to documents datasets (and to tables with `capture: true`); '\(ds.name)' is \(ds.model.rawValue).",
                                  fix: "Move the projection to a documents dataset, or remove it."))
        }
        if ds.capture, p.kind == .cache, engine.kind == "memory" {
            problem(PolyglotError(.invalidDataMap, "\(at) is an in-process (memory) cache of a dataset with `capture: true`: other writers' changes reach one relay, which cannot invalidate every process's own cache.",
                                  fix: "Use a shared cache (a redis or memcached engine) for a captured dataset."))
        }
        if let name = p.embedder {
            if p.kind != .vectors {
                problem(PolyglotError(.invalidDataMap, "\(at) names an embedder, which only vectors projections use.", fix: "Remove `embedder:`."))
            } else if p.vectorField != nil {
                problem(PolyglotError(.invalidDataMap, "\(at) names both an embedder and a `vectorField:` holding ready-made embeddings.",
                                      fix: "Keep `vectorField:` (you embed) or `embedder:` with `fields:` (Polyglot embeds), not both."))
            } else if name != EmbedderSpec.hashing, embedder(named: name) == nil, !custom.contains(name) {
                problem(PolyglotError(.invalidDataMap, "\(at) names embedder '\(name)', which is not declared under `embedders:`.",
                                      fix: "Declare it (e.g. `embedders: { \(name): { kind: openai, url: ..., model: ... } }`) or use `hashing`."))
            }
            if p.isEmbeddedByRelay, let caps = registry.capabilities(ofKind: engine.kind), !caps.isSuperset(of: [.keyValue, .transactions]) {
                problem(PolyglotError(.missingCapability, "\(at) is embedded by the relay on engine '\(p.engine)' (\(engine.kind)), which needs key-value and transactions for the relay's checkpoint.",
                                      fix: "Put the vectors projection on a sqlite or postgres engine."))
            }
        }
        if let caps = registry.capabilities(ofKind: engine.kind), !caps.contains(Capability.forProjection(p.kind)) {
            problem(PolyglotError(.missingCapability, "\(at) is on engine '\(engine.name)' (\(engine.kind)), which cannot hold a \(p.kind.rawValue) projection.",
                                  fix: p.kind == .cache ? "Put the cache on a `memory` engine." : "Put it on an engine that supports \(p.kind.rawValue), e.g. the sqlite primary."))
        }
        switch p.kind {
        case .cache:
            if let ttl = p.ttl, ttl <= .zero || ttl > DataMap.longestDuration {
                problem(PolyglotError(.invalidDataMap, "\(at) has ttl \(ttl), which is not positive or is longer than 100 years.", fix: "Use a positive duration such as 5m."))
            }
            if !(0...0.5).contains(p.jitter) {
                problem(PolyglotError(.invalidDataMap, "\(at) has jitter \(p.jitter); it must be between 0 and 0.5.", fix: "Use e.g. 0.1 (±10% of the ttl)."))
            }
        case .search:
            if p.fields.isEmpty {
                problem(PolyglotError(.invalidDataMap, "\(at) names no `fields:` to index.", fix: "List the text fields, e.g. `fields: [name, description]`."))
            }
        case .vectors:
            if p.dimension == nil {
                problem(PolyglotError(.invalidDataMap, "\(at) has no `dimension:`.", fix: "Add `dimension:`, e.g. 64 for the built-in hashing embedder."))
            } else if let d = p.dimension, !(1...4096).contains(d) {
                problem(PolyglotError(.invalidDataMap, "\(at) has dimension \(d); it must be 1 to 4096.", fix: "Use the length of your embeddings."))
            }
            if p.fields.isEmpty, p.vectorField == nil {
                problem(PolyglotError(.invalidDataMap, "\(at) says neither which `fields:` to embed nor which `vectorField:` holds the embedding.",
                                      fix: "Add `fields: [name, description]` (built-in embedder) or `vectorField: embedding`."))
            }
        case .graph:
            if p.edgeField == nil {
                problem(PolyglotError(.invalidDataMap, "\(at) has no `edgeField:`.", fix: "Name the document field that lists linked ids, e.g. `edgeField: related`."))
            }
        case .analytics, .stream:
            break
        }
        if p.kind == .analytics, datasets.contains(where: { $0.name == ds.name + "_analytics" }) {
            problem(PolyglotError(.invalidDataMap, "\(at) keeps its rows in a table named '\(ds.name)_analytics', which is also a dataset of the map.",
                                  fix: "Rename the dataset '\(ds.name)_analytics'."))
        }
        if p.kind == .analytics, let caps = registry.capabilities(ofKind: engine.kind), !caps.isSuperset(of: [.table, .transactions]) {
            problem(PolyglotError(.missingCapability, "\(at) is on engine '\(p.engine)' (\(engine.kind)); the relay needs tables and transactions there to append the analytics rows.",
                                  fix: "Put the analytics projection on a sqlite or postgres engine."))
        }
        if ![.cache, .analytics, .stream].contains(p.kind), p.engine != ds.engine, let caps = registry.capabilities(ofKind: engine.kind),
           !caps.isSuperset(of: [.documents, .transactions]) {
            // The relay keeps a copy of the documents on the projection's engine and applies each batch there in
            // one transaction with its checkpoint.
            problem(PolyglotError(.missingCapability, "\(at) is on engine '\(p.engine)' (\(engine.kind)), away from the dataset's engine '\(ds.engine)'; the relay needs documents and transactions there to keep the projection's copy.",
                                  fix: "Put the \(p.kind.rawValue) projection on '\(ds.engine)', or on a sqlite or postgres engine."))
        }
        if p.kind == .stream, let caps = registry.capabilities(ofKind: self.engine(named: ds.engine)?.kind ?? ""), !caps.isSuperset(of: [.keyValue, .transactions]) {
            problem(PolyglotError(.missingCapability, "\(at): the relay keeps a stream's checkpoint on the dataset's engine '\(ds.engine)', which needs key-value and transactions.",
                                  fix: "Keep the dataset on a sqlite or postgres engine."))
        }
    }
}
