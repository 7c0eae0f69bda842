import Foundation
import Polyglot

/// The Redis engine's settings, read from its `url` and `options` in the data map.
///
/// ```yaml
/// engines:
///   cache:
///     kind: redis
///     url: redis://127.0.0.1:6379/0
///     options: { poolSize: 8, keyPrefix: "shop:", commandTimeout: 2s, maxValueBytes: 4MB }
/// ```
struct RedisEngineSettings: Sendable {
    var url: String
    var poolSize: Int
    var connectTimeout: Duration
    var commandTimeout: Duration
    /// Prepended to every key the engine writes, so several applications (or test runs) share one server.
    var keyPrefix: String
    /// Values larger than this are refused before they are sent.
    var maxValueBytes: Int
    /// How long a single-flight lock lives: the longest a source load may take before another process loads too.
    var lockTimeout: Duration
    /// How long a cache miss waits for another process's load before it loads the source itself.
    var waitTimeout: Duration
    /// How long an invalidation is remembered; fills of loads that took longer are refused.
    var tombstoneLifetime: Duration
    /// While degraded, how often the engine checks whether Redis is back.
    var retryInterval: Duration
    /// Invalidations remembered during an outage; past this, the whole cache namespace is dropped on recovery.
    var maxPendingInvalidations: Int
    var displayAddress: String
    /// A PEM file of the certificate authority to trust for rediss:// (instead of the system's).
    var tlsCA: String?

    static let knownOptions: Set<String> = [
        "poolSize", "connectTimeout", "commandTimeout", "keyPrefix", "maxValueBytes", "lockTimeout", "waitTimeout",
        "tombstoneLifetime", "retryInterval", "maxPendingInvalidations", "tlsCA",
    ]

    init(_ spec: EngineSpec) throws {
        func bad(_ what: String, _ fix: String) -> PolyglotError {
            PolyglotError(.invalidDataMap, "Engine '\(spec.name)' (redis): \(what).", fix: fix)
        }
        guard let url = spec.url, !url.isEmpty else {
            throw bad("no `url:`", "Add `url: redis://127.0.0.1:6379` (or rediss:// for TLS, redis://user:password@host:port/db).")
        }
        guard let u = URLComponents(string: url), ["redis", "rediss"].contains(u.scheme?.lowercased() ?? ""),
              let host = u.host, !host.isEmpty else {
            throw bad("'\(RedisEngineSettings.redact(url))' is not a redis:// URL", "Write redis://[user:password@]host[:port][/db], or rediss:// for TLS.")
        }
        self.url = url
        displayAddress = "\(host):\(u.port ?? 6379)"
        let o = spec.options
        if let unknown = o.keys.filter({ !RedisEngineSettings.knownOptions.contains($0) }).sorted().first {
            throw bad("unknown option '\(unknown)'", "Use one of: \(RedisEngineSettings.knownOptions.sorted().joined(separator: ", ")).")
        }
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let text = o[key] else { return fallback }
            guard let d = DataMap.parseDuration(text), d > .zero else {
                throw bad("option \(key) '\(text)' is not a positive duration", "Write a duration such as 500ms, 10s or 2m.")
            }
            return d
        }
        func integer(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>, _ fix: String) throws -> Int {
            guard let text = o[key] else { return fallback }
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(n) else {
                throw bad("option \(key) '\(text)' is not a whole number from \(range.lowerBound) to \(range.upperBound)", fix)
            }
            return n
        }
        poolSize = try integer("poolSize", 4, 1...1000, "Set poolSize to the connections this process may open to Redis.")
        maxPendingInvalidations = try integer("maxPendingInvalidations", 100_000, 1...10_000_000,
                                              "Set how many invalidations to remember while Redis is down.")
        connectTimeout = try duration("connectTimeout", .seconds(2))
        commandTimeout = try duration("commandTimeout", .seconds(5))
        lockTimeout = try duration("lockTimeout", .seconds(3))
        waitTimeout = try duration("waitTimeout", lockTimeout)
        tombstoneLifetime = try duration("tombstoneLifetime", .seconds(10))
        retryInterval = try duration("retryInterval", .seconds(1))
        tlsCA = o["tlsCA"]
        if let ca = tlsCA, !FileManager.default.fileExists(atPath: ca) {
            throw bad("tlsCA '\(ca)' does not exist", "Give the path of a PEM certificate file.")
        }
        keyPrefix = o["keyPrefix"] ?? "polyglot:"
        if keyPrefix.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" || $0 == "]" || $0 == "\\" }) {
            throw bad("keyPrefix '\(keyPrefix)' contains a glob character (* ? [ ] \\)", "Use letters, digits and separators such as ':' in keyPrefix.")
        }
        if let text = o["maxValueBytes"] {
            guard let n = DataMap.parseSize(text), n > 0, n <= 512 << 20 else {
                throw bad("option maxValueBytes '\(text)' is not a size from 1 byte to 512MB",
                          "Write a whole number of bytes, optionally with KB or MB (Redis stores at most 512MB per value).")
            }
            maxValueBytes = n
        } else {
            maxValueBytes = 16 << 20
        }
    }

    /// The URL without its password, for messages and logs.
    static func redact(_ url: String) -> String {
        guard var u = URLComponents(string: url), u.password != nil else { return url }
        u.password = "***"
        return u.string ?? url
    }
}
