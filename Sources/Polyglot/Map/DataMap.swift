import Foundation

/// The data model of a dataset. Its source of truth lives on exactly one engine.
public enum DataModel: String, Sendable, Hashable, CaseIterable, Codable {
    case documents, table, keyValue, vectors, timeSeries, graph

    /// The `Polyglot` accessor that opens a dataset of this model.
    public var accessorName: String {
        switch self {
        case .documents: "documents"
        case .table: "table"
        case .keyValue: "keyValue"
        case .vectors: "vectors"
        case .timeSeries: "timeSeries"
        case .graph: "graph"
        }
    }
}

/// The kind of a derived, read-optimized copy of a dataset.
public enum ProjectionKind: String, Sendable, Hashable, CaseIterable, Codable {
    case cache, search, vectors, graph, analytics, stream
}

/// What an engine can hold or serve.
public enum Capability: String, Sendable, Hashable, CaseIterable, Codable {
    case documents, table, keyValue, vectors, timeSeries, graph
    case search, cache, analytics, stream
    /// ACID transactions across the datasets of the engine.
    case transactions
    /// Can persist telemetry history.
    case telemetryHistory
    /// Captures changes made outside Polyglot (another service, psql) from the engine's own log, for datasets
    /// marked `capture: true` (PostgreSQL logical decoding). See ``ChangeCaptureEngine``.
    case changeCapture

    static func forModel(_ m: DataModel) -> Capability {
        switch m {
        case .documents: .documents
        case .table: .table
        case .keyValue: .keyValue
        case .vectors: .vectors
        case .timeSeries: .timeSeries
        case .graph: .graph
        }
    }

    static func forProjection(_ p: ProjectionKind) -> Capability {
        switch p {
        case .cache: .cache
        case .search: .search
        case .vectors: .vectors
        case .graph: .graph
        case .analytics: .analytics
        case .stream: .stream
        }
    }
}

/// The distance used by a vector dataset or projection.
public enum VectorMetric: String, Sendable, Hashable, CaseIterable, Codable {
    /// 1 - cosine similarity; smaller is closer.
    case cosine
    /// Euclidean distance.
    case l2
    /// Negative inner product; smaller is closer.
    case innerProduct
}

/// Approximate nearest-neighbour index settings (HNSW) of a vectors dataset or projection.
public struct VectorIndexSpec: Sendable, Hashable, Codable {
    /// The ef values (construction and search) an index takes: beyond 10000 a search list costs more than an exact
    /// scan, and products such as `4 * ef` must not overflow.
    public static let efRange = 1...10_000

    /// Neighbours per node; more gives better recall and more memory.
    public var m: Int
    /// Candidate list size while building; more gives a better graph and slower inserts.
    public var efConstruction: Int
    /// Candidate list size while searching, unless a query passes its own `ef`.
    public var efSearch: Int
    public init(m: Int = 16, efConstruction: Int = 200, efSearch: Int = 64) {
        self.m = m; self.efConstruction = efConstruction; self.efSearch = efSearch
    }
}

/// The type of a declared document field or table column.
public enum FieldType: String, Sendable, Hashable, CaseIterable, Codable {
    case string, integer, number, boolean, timestamp, json

    /// The times a timestamp field takes, in seconds since 1970: the years 1 to 9999 of ISO 8601 (from
    /// `Date.distantPast`, two days before year 1, so that sentinel works as a bound), which every engine's
    /// timestamp type holds (PostgreSQL's microseconds since 2000 overflow near 9.2e12 s). Epoch milliseconds
    /// (1.7e12 today) are outside it, on purpose: they would be read as the year 55,000.
    public static let epochSeconds: ClosedRange<Double> = -62_135_769_600 ... 253_402_300_799.999

    /// Whether a JSON value fits this type (null always fits; nullability is checked separately).
    public func accepts(_ value: JSON) -> Bool {
        switch (self, value) {
        case (_, .null), (.json, _): true
        case (.string, .string): true
        case (.integer, .number(let d)): d.rounded() == d
        case (.number, .number): true
        case (.boolean, .bool): true
        case (.timestamp, .number), (.timestamp, .string): Timestamp.seconds(value) != nil
        default: false
        }
    }
}

/// A declared field of a documents dataset (indexed) or a column of a table.
public struct FieldSpec: Sendable, Hashable, Codable {
    public var name: String
    public var type: FieldType
    public var nullable: Bool
    public init(_ name: String, _ type: FieldType, nullable: Bool = true) {
        self.name = name; self.type = type; self.nullable = nullable
    }
}

/// One engine of the data map: a running database Polyglot talks to.
public struct EngineSpec: Sendable, Hashable, Codable {
    /// The name datasets refer to, e.g. `primary`.
    public var name: String
    /// The registered kind, e.g. `sqlite`, `memory`, `postgres`.
    public var kind: String
    public var url: String?
    public var path: String?
    /// Kind-specific settings, e.g. `maxEntries` for `memory`.
    public var options: [String: String]

    public init(name: String, kind: String, url: String? = nil, path: String? = nil, options: [String: String] = [:]) {
        self.name = name; self.kind = kind; self.url = url; self.path = path; self.options = options
    }

    public static func sqlite(_ name: String = "primary", path: String) -> EngineSpec {
        EngineSpec(name: name, kind: "sqlite", path: path)
    }
    public static func memory(_ name: String = "cache", maxEntries: Int = 100_000, maxBytes: Int = 64 << 20) -> EngineSpec {
        EngineSpec(name: name, kind: "memory", options: ["maxEntries": String(maxEntries), "maxBytes": String(maxBytes)])
    }
}

/// A derived copy of a dataset on some engine, fed from the source and never written directly.
public struct ProjectionSpec: Sendable, Hashable, Codable {
    public var kind: ProjectionKind
    public var engine: String
    /// Cache entry lifetime.
    public var ttl: Duration?
    /// Fraction of `ttl` added or removed at random so entries do not expire together (cache).
    public var jitter: Double
    /// Fields copied into the projection: the text fields of a `search` projection,
    /// the fields embedded by a `vectors` projection.
    public var fields: [String]
    /// A `vectors` projection can read a ready-made embedding from this document field.
    public var vectorField: String?
    public var dimension: Int?
    public var metric: VectorMetric
    /// Graph projection: the document field holding the ids this document links to.
    public var edgeField: String?
    public var edgeLabel: String?
    /// A `vectors` projection's index settings.
    public var index: VectorIndexSpec
    /// A `vectors` projection's embedder: the name of one under `embedders:` (see ``EmbedderSpec``), or nil for the
    /// built-in hashing embedder. Any other than the hashing one is run by the relay, after the write commits.
    public var embedder: String?

    public init(kind: ProjectionKind, engine: String, ttl: Duration? = nil, jitter: Double = 0.1, fields: [String] = [],
                vectorField: String? = nil, dimension: Int? = nil, metric: VectorMetric = .cosine,
                edgeField: String? = nil, edgeLabel: String? = nil, index: VectorIndexSpec = VectorIndexSpec(), embedder: String? = nil) {
        self.index = index
        self.embedder = embedder
        self.kind = kind; self.engine = engine; self.ttl = ttl; self.jitter = jitter; self.fields = fields
        self.vectorField = vectorField; self.dimension = dimension; self.metric = metric
        self.edgeField = edgeField; self.edgeLabel = edgeLabel
    }

    public static func cache(on engine: String, ttl: Duration = .seconds(300), jitter: Double = 0.1) -> ProjectionSpec {
        ProjectionSpec(kind: .cache, engine: engine, ttl: ttl, jitter: jitter)
    }
    public static func search(on engine: String, fields: [String]) -> ProjectionSpec {
        ProjectionSpec(kind: .search, engine: engine, fields: fields)
    }
    /// Vectors embedded from `fields` with the built-in hashing embedder (or the one named `embedder`), or read from `vectorField`.
    public static func vectors(on engine: String, fields: [String] = [], vectorField: String? = nil,
                               dimension: Int, metric: VectorMetric = .cosine, embedder: String? = nil) -> ProjectionSpec {
        ProjectionSpec(kind: .vectors, engine: engine, fields: fields, vectorField: vectorField, dimension: dimension, metric: metric, embedder: embedder)
    }
}

/// A named collection with one data model, whose source of truth is on one engine.
public struct DatasetSpec: Sendable, Hashable, Codable {
    public var name: String
    public var model: DataModel
    public var engine: String
    /// Documents: fields to index and type-check in filters. Tables: the columns.
    public var fields: [FieldSpec]
    /// Tables: the primary-key column.
    public var primaryKey: String?
    /// Vectors: the dimension every vector must have.
    public var dimension: Int?
    public var metric: VectorMetric
    /// Key-value: default lifetime of a key.
    public var ttl: Duration?
    /// Time series: samples older than this are deleted by retention.
    public var retention: Duration?
    public var maxKeyBytes: Int
    public var maxValueBytes: Int
    public var projections: [ProjectionSpec]
    /// Vectors: the approximate index's settings.
    public var index: VectorIndexSpec
    /// Documents and tables also written outside Polyglot (another service, psql): the relay reads the dataset's
    /// changes from the engine's own log (change data capture) instead of Polyglot's outbox, so its projections
    /// follow every writer. Needs an engine with the `changeCapture` capability (postgres).
    public var capture: Bool
    /// Whether writes append change events to the engine's outbox (the default). Polyglot's own bookkeeping
    /// (the relay's checkpoints, leases and versions) does not: the relay must never read its own writes. Nor do
    /// relayed copies (``RelayedCopy/copySpec``, ``RelayedCopy/analyticsSpec``): their relay reads the source's
    /// outbox, and nothing reads theirs.
    public var changeEvents: Bool = true

    public init(name: String, model: DataModel, engine: String, fields: [FieldSpec] = [], primaryKey: String? = nil,
                dimension: Int? = nil, metric: VectorMetric = .cosine, ttl: Duration? = nil, retention: Duration? = nil,
                maxKeyBytes: Int = 512, maxValueBytes: Int = 1 << 20, projections: [ProjectionSpec] = [],
                index: VectorIndexSpec = VectorIndexSpec(), capture: Bool = false) {
        self.index = index
        self.capture = capture
        self.name = name; self.model = model; self.engine = engine; self.fields = fields; self.primaryKey = primaryKey
        self.dimension = dimension; self.metric = metric; self.ttl = ttl; self.retention = retention
        self.maxKeyBytes = maxKeyBytes; self.maxValueBytes = maxValueBytes; self.projections = projections
    }

    public func projection(_ kind: ProjectionKind) -> ProjectionSpec? { projections.first { $0.kind == kind } }
    public func field(_ name: String) -> FieldSpec? { fields.first { $0.name == name } }
}

/// Telemetry settings of a data map.
public struct TelemetrySpec: Sendable, Hashable, Codable {
    /// How often snapshots are persisted into the `store` engine.
    public var flushInterval: Duration
    /// The engine that keeps telemetry history; defaults to the first engine that can.
    public var store: String?
    public init(flushInterval: Duration = .seconds(60), store: String? = nil) {
        self.flushInterval = flushInterval; self.store = store
    }
}

/// Engines, datasets and projections: everything Polyglot needs to open an application's data.
///
/// Built in Swift or loaded from `polyglot.yml`; both produce the same value.
///
/// ```swift
/// let map = DataMap(
///     engines: [.sqlite(path: "data/app.sqlite"), .memory()],
///     datasets: [
///         DatasetSpec(name: "products", model: .documents, engine: "primary",
///                     fields: [FieldSpec("price", .number)],
///                     projections: [.cache(on: "cache"), .search(on: "primary", fields: ["name"])]),
///         DatasetSpec(name: "sessions", model: .keyValue, engine: "primary", ttl: .seconds(1800)),
///     ])
/// let same = try DataMap(yaml: String(contentsOfFile: "polyglot.yml"))
/// ```
public struct DataMap: Sendable, Hashable, Codable {
    public var engines: [EngineSpec]
    public var datasets: [DatasetSpec]
    public var telemetry: TelemetrySpec
    /// Embedders the vectors projections name (see ``EmbedderSpec``).
    public var embedders: [EmbedderSpec]
    /// The advisor's thresholds (`advisor:` in YAML); the defaults are the decision framework's.
    public var advisor: AdvisorSettings

    public init(engines: [EngineSpec], datasets: [DatasetSpec], telemetry: TelemetrySpec = TelemetrySpec(),
                embedders: [EmbedderSpec] = [], advisor: AdvisorSettings = AdvisorSettings()) {
        self.engines = engines; self.datasets = datasets; self.telemetry = telemetry; self.embedders = embedders; self.advisor = advisor
    }

    public func engine(named name: String) -> EngineSpec? { engines.first { $0.name == name } }
    public func embedder(named name: String) -> EmbedderSpec? { embedders.first { $0.name == name } }
    public func dataset(named name: String) -> DatasetSpec? { datasets.first { $0.name == name } }

    /// Applies `POLYGLOT_ENGINE_<NAME>_URL` and `POLYGLOT_ENGINE_<NAME>_PATH` overrides,
    /// so one file serves development and production. `<NAME>` is the engine name in upper case,
    /// with every character other than a letter or digit replaced by `_`.
    public func applyingEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> DataMap {
        var copy = self
        for i in copy.engines.indices {
            let key = DataMap.environmentKey(for: copy.engines[i].name)
            if let url = environment["POLYGLOT_ENGINE_\(key)_URL"] { copy.engines[i].url = url }
            if let path = environment["POLYGLOT_ENGINE_\(key)_PATH"] { copy.engines[i].path = path }
        }
        return copy
    }

    public static func environmentKey(for engineName: String) -> String {
        String(engineName.uppercased().unicodeScalars.map { scalar in
            (("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)) ? Character(scalar) : "_"
        })
    }
}
