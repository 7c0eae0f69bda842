import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Polyglot
import PolyglotServer
import PolyglotSQLite
import Synchronization

/// A server over a fresh embedded data map in a temporary folder, tested through Hummingbird's router test client
/// (real request parsing, routing, middleware and handlers; no socket).
struct Fixture {
    let dir: String
    let db: Polyglot
    let server: PolyglotServer
    let logs: LogCapture

    static let map = """
    engines:
      primary: { kind: sqlite, path: data.sqlite }
      cache:   { kind: memory }
    datasets:
      products:
        model: documents
        engine: primary
        fields: { price: number, category: string, stock: integer }
        projections:
          - { kind: cache,   engine: cache, ttl: 5m }
          - { kind: search,  engine: primary, fields: [name, description] }
          - { kind: vectors, engine: primary, fields: [name, description], dimension: 16 }
      sessions:   { model: keyValue, engine: primary }
      embeddings: { model: vectors, engine: primary, dimension: 3 }
      links:      { model: graph, engine: primary }
      views:      { model: timeSeries, engine: primary }
    """

    /// - Parameter keys: when given, a key file is created and these keys (name → scopes) are made; their secrets are returned.
    static func make(map: String = Fixture.map, registry: EngineRegistry = .embedded, keys: [String: [String]]? = nil,
                     configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> (Fixture, [String: String]) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("polyglot-server-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try map.write(toFile: dir + "/polyglot.yml", atomically: true, encoding: .utf8)
        var config = ServerConfiguration()
        var secrets: [String: String] = [:]
        if let keys {
            let store = KeyStore(path: dir + "/polyglot-keys.json")
            for (name, scopes) in keys.sorted(by: { $0.key < $1.key }) {
                secrets[name] = try store.create(name: name, scopes: scopes.map(KeyScope.init(parsing:))).secret
            }
            config.keys = store
        }
        configure(&config)
        let logs = LogCapture()
        let logger = Logger(label: "test.server") { label in logs.handler(label) }
        let db = try await Polyglot(map: DataMap(contentsOf: dir + "/polyglot.yml"), registry: registry, logger: logger)
        let server = try PolyglotServer(db: db, configuration: config, logger: logger)
        return (Fixture(dir: dir, db: db, server: server, logs: logs), secrets)
    }

    func test<R: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> R) async throws -> R {
        let app = Application(router: server.router(), logger: Logger(label: "test.app") { label in logs.handler(label) })
        do {
            let r = try await app.test(.router) { client in try await body(client) }
            try await db.close()
            try? FileManager.default.removeItem(atPath: dir)
            return r
        } catch {
            try? await db.close()
            throw error
        }
    }
}

extension TestClientProtocol {
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, json: String? = nil, body: String? = nil, headers: [String: String] = [:]) async throws -> TestResponse {
        var fields = HTTPFields()
        for (k, v) in headers { fields[HTTPField.Name(k)!] = v }
        if json != nil { fields[.contentType] = "application/json" }
        let payload = (json ?? body).map { ByteBuffer(string: $0) }
        return try await execute(uri: uri, method: method, headers: fields, body: payload)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }
    var json: JSON { (try? JSON(parsing: text)) ?? .null }
    var isProblem: Bool { headers[.contentType] == "application/problem+json" }
    var problemCode: String? { json["code"]?.stringValue }
}

/// Collects every log line (message and metadata) so tests can check what is logged.
final class LogCapture: Sendable {
    let lines = Mutex<[String]>([])
    func handler(_ label: String) -> any LogHandler { Handler(capture: self) }
    var all: String { lines.withLock { $0.joined(separator: "\n") } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { _, b in b }
            let error = event.error.map { " error=\($0)" } ?? ""
            capture.lines.withLock { $0.append("\(event.level) \(event.message) \(merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))\(error)") }
        }
    }
}
