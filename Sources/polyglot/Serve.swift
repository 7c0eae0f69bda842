import ArgumentParser
import Foundation
import Logging
import Metrics
import Polyglot
import PolyglotServer
import Prometheus

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the HTTP data API, /openapi.json, /health, /metrics and the live dashboard.",
        discussion: """
        With no --config it serves ./polyglot.yml, else ./polyglot-data/polyglot.yml, creating that example shop (empty) \
        when neither exists, on 127.0.0.1:8080. API keys live beside the data map (polyglot-keys.json); once one exists, \
        every data request needs one. Binding anywhere but loopback requires keys. SIGINT/SIGTERM finish in-flight requests \
        and stop cleanly.
        """)

    @Option(name: .shortAndLong, help: "The data map.") var config: String?
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(name: .shortAndLong, help: "Port to bind.") var port = 8080
    @Option(help: "The API key file (default: polyglot-keys.json beside the data map).") var keys: String?
    @Option(help: "Authentication: automatic (keys required once one exists, or off loopback), required, or off (loopback only).")
    var auth: String = "automatic"
    @Option(help: "Largest request body in bytes.") var maxBody = 1 << 20
    @Option(help: "Requests per second per key (per client address without keys).") var rateLimit: Double = 1000
    @Option(help: "Seconds before a request is answered 503 and cancelled.") var timeout: Double = 10
    @Option(help: "Log level for requests and engines: trace, debug, info, notice, warning, error.") var logLevel = "info"

    func validate() throws {
        guard timeout.isFinite, timeout > 0, timeout <= 86_400 else {
            throw ValidationError("--timeout must be a number of seconds above 0 and at most 86400; it is \(timeout).")
        }
        guard rateLimit.isFinite, rateLimit > 0, rateLimit <= 1e9 else {
            throw ValidationError("--rate-limit must be a number of requests per second above 0 and at most 1e9; it is \(rateLimit).")
        }
        guard maxBody > 0 else { throw ValidationError("--max-body must be a positive number of bytes; it is \(maxBody).") }
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error.") }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        try await reportingErrors {
            let mapPath = try Self.resolveMap(config)
            var configuration = ServerConfiguration()
            configuration.host = host
            configuration.port = port
            guard let mode = ServerConfiguration.Authentication(rawValue: auth) else {
                throw ValidationError("--auth must be automatic, required or off.")
            }
            configuration.authentication = mode
            configuration.keys = KeyStore(path: keys ?? Self.defaultKeyPath(forMap: mapPath))
            configuration.maxBodyBytes = maxBody
            configuration.rateLimitPerSecond = rateLimit
            configuration.rateLimitBurst = max(1, rateLimit * 2)
            configuration.requestTimeout = .milliseconds(Int64(timeout * 1000))
            // Refuse to start before opening anything when auth is impossible.
            _ = try configuration.authenticationRequired()
            let db = try await Polyglot(map: DataMap(contentsOf: mapPath), registry: .cli, logger: Logger(label: "polyglot"))
            let server: PolyglotServer
            do { server = try PolyglotServer(db: db, configuration: configuration, metrics: registry) } catch {
                try? await db.close()
                throw error
            }
            FileHandle.standardError.write(Data("polyglot: serving \(mapPath) on http://\(host):\(port)/ (dashboard at /, API under /v1, contract at /openapi.json)\n".utf8))
            try await server.run()
        }
    }

    /// --config, else ./polyglot.yml, else ./polyglot-data/polyglot.yml (created as the example shop if missing).
    static func resolveMap(_ config: String?) throws -> String {
        if let config { return config }
        for candidate in ["polyglot.yml", "polyglot-data/polyglot.yml"] where FileManager.default.fileExists(atPath: candidate) {
            return candidate
        }
        try FileManager.default.createDirectory(atPath: "polyglot-data", withIntermediateDirectories: true)
        try Quickstart.exampleMap.write(toFile: "polyglot-data/polyglot.yml", atomically: true, encoding: .utf8)
        FileHandle.standardError.write(Data("polyglot: created polyglot-data/polyglot.yml (the example shop on the embedded default; `polyglot quickstart` loads a sample).\n".utf8))
        return "polyglot-data/polyglot.yml"
    }

    static func defaultKeyPath(forMap mapPath: String) -> String {
        ((mapPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("polyglot-keys.json")
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the API keys of `polyglot serve`: create, list, revoke. Keys are stored hashed (SHA-256).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Location: ParsableArguments {
        @Option(name: .shortAndLong, help: "The data map (the key file lives beside it).") var config: String?
        @Option(help: "The key file (overrides --config).") var keys: String?
        func store() throws -> KeyStore {
            if let keys { return KeyStore(path: keys) }
            let map = try config ?? ["polyglot.yml", "polyglot-data/polyglot.yml"].first { FileManager.default.fileExists(atPath: $0) }
                ?? { throw ValidationError("No data map found; pass --config or --keys.") }()
            return KeyStore(path: Serve.defaultKeyPath(forMap: map))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key and print its secret once.")
        @OptionGroup var location: Location
        @Option(help: "A name to recognise the key by.") var name = "key"
        @Option(name: .customLong("scope"), help: "dataset:operation, operation read|write|admin, dataset a name or *. Repeatable.")
        var scopes: [String] = []

        func run() async throws {
            try await reportingErrors {
                let store = try location.store()
                let (key, secret) = try store.create(name: name, scopes: try scopes.map(KeyScope.init(parsing:)))
                FileHandle.standardError.write(Data("Created key \(key.id) (\(key.name)) with \(key.scopes.map(\.description).joined(separator: ", ")) in \(store.path).\nThe secret is shown only now; send it as `Authorization: Bearer <secret>`:\n".utf8))
                print(secret)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys: id, name, scopes, created, revoked. Secrets are never stored.")
        @OptionGroup var location: Location
        func run() async throws {
            try await reportingErrors {
                let keys = try location.store().list()
                if keys.isEmpty { print("No keys. Create one with `polyglot keys create --name NAME --scope '*:read'`."); return }
                print(TextTable.render(header: ["id", "name", "scopes", "created", "status"], rows: keys.map {
                    [$0.id, $0.name, $0.scopes.map(\.description).joined(separator: " "), $0.createdAt.formatted(.iso8601),
                     $0.revokedAt.map { "revoked \($0.formatted(.iso8601))" } ?? "active"]
                }))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id; a running server stops accepting it within a second.")
        @OptionGroup var location: Location
        @Argument(help: "The key id (from `polyglot keys list`).") var id: String
        func run() async throws {
            try await reportingErrors {
                guard try location.store().revoke(id) else { throw ValidationError("No key with id '\(id)'.") }
                print("Revoked \(id).")
            }
        }
    }
}
