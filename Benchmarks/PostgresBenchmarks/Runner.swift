import Foundation
import Logging
import Polyglot
import PolyglotPostgres
import PolyglotSQLite
import PostgresNIO

/// The raw postgres-nio client for the same server, with the same pool size as the engine's.
func rawClient(_ o: BenchOptions) throws -> PostgresClient {
    guard let u = URLComponents(string: o.url), let host = u.host else { throw BenchError("cannot parse the URL '\(o.url)'") }
    var config = PostgresClient.Configuration(host: host, port: u.port ?? 5432, username: u.percentEncodedUser?.removingPercentEncoding ?? "postgres",
                                              password: u.percentEncodedPassword?.removingPercentEncoding,
                                              database: u.path.count > 1 ? String(u.path.dropFirst()) : nil, tls: .disable)
    config.options.maximumConnections = o.poolSize
    return PostgresClient(configuration: config)
}

func runBenchmarks(_ o: BenchOptions) async throws {
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    var registry = EngineRegistry.embedded
    registry.registerPostgres()

    let raw = try rawClient(o)
    let rawTask = Task { await raw.run() }
    defer { rawTask.cancel() }
    let version = try await raw.query("SHOW server_version").collect().first?.decode(String.self) ?? "?"
    let host = URLComponents(string: o.url).map { "\($0.host ?? ""):\($0.port ?? 5432)" } ?? ""
    print("PostgresBenchmarks: PostgreSQL \(version) at \(host), schema \(benchSchema), pool \(o.poolSize) connections per side")
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores (shared with the server and other work), load average at start \(loadAverage())")

    var datasets = [DatasetSpec(name: "docs", model: .documents, engine: "pg", fields: [FieldSpec("price", .number), FieldSpec("category", .string)])]
    if o.runs("vectors") {
        datasets.append(DatasetSpec(name: "vecs", model: .vectors, engine: "pg", dimension: 128, metric: .l2,
                                    index: VectorIndexSpec(m: 16, efConstruction: 64, efSearch: 40)))
    }
    let engine = EngineSpec(name: "pg", kind: "postgres", url: o.url, options: ["schema": benchSchema, "poolSize": String(o.poolSize)])
    let db = try await Polyglot(map: DataMap(engines: [engine], datasets: datasets), registry: registry, logger: logger)
    do {
        let docs = try db.documents("docs")
        if o.runs("bulk") { try await bulkBenchmark(o, docs, raw) }
        if o.runs("get") { try await getBenchmark(o, docs, raw) }
        if o.runs("vectors") { try await vectorBenchmark(o, db, raw, registry: registry, logger: logger) }
        if o.runs("relay") { try await relayBenchmark(o, registry: registry, logger: logger, raw) }
        print("\nload average at end \(loadAverage())")
    } catch {
        try? await db.close()
        _ = try? await raw.query("DROP SCHEMA IF EXISTS \(unescaped: benchSchema) CASCADE")
        throw error
    }
    try await db.close()
    try await raw.query("DROP SCHEMA IF EXISTS \(unescaped: benchSchema) CASCADE")
}
