import Foundation
import Polyglot

/// The engine's settings, read from its `url` and `options` in the data map.
struct MemcachedSettings: Sendable, Equatable {
    var host: String
    var port: Int
    var poolSize: Int
    var connectTimeout: Duration
    var commandTimeout: Duration
    /// Put before every key this engine writes, so several applications (or test runs) can share a server.
    var keyPrefix: String
    /// The largest item this engine sends: Polyglot's header plus the value. memcached refuses items over its
    /// `-I` limit (1 MiB by default) and, when it does, also drops the key's previous value, so the engine
    /// refuses larger writes itself, before sending anything.
    var maxValueBytes: Int

    static let knownOptions: Set<String> = ["poolSize", "connectTimeout", "commandTimeout", "keyPrefix", "maxValueBytes"]
    /// 1 MiB minus room for memcached's item header and a 250-byte key: the largest value the default `-I 1m` accepts.
    static let defaultMaxValueBytes = (1 << 20) - 1024

    init(_ spec: EngineSpec) throws {
        func bad(_ what: String, _ fix: String) -> PolyglotError {
            PolyglotError(.invalidDataMap, "Engine '\(spec.name)' (memcached): \(what).", fix: fix)
        }
        guard let url = spec.url, !url.isEmpty else {
            throw bad("no `url:`", "Add `url: memcached://host:11211`.")
        }
        guard let u = URLComponents(string: url), u.scheme == "memcached", let host = u.host, !host.isEmpty,
              u.path.isEmpty || u.path == "/", u.user == nil, u.query == nil else {
            throw bad("'\(url)' is not a memcached:// URL", "Write memcached://host:port, e.g. memcached://127.0.0.1:11211.")
        }
        self.host = host
        port = u.port ?? 11211
        guard (1...65535).contains(port) else { throw bad("port \(port) is out of range", "Use a port from 1 to 65535.") }
        let o = spec.options
        if let unknown = o.keys.filter({ !Self.knownOptions.contains($0) }).sorted().first {
            throw bad("unknown option '\(unknown)'", "Use only \(Self.knownOptions.sorted().joined(separator: ", ")).")
        }
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let text = o[key] else { return fallback }
            guard let d = DataMap.parseDuration(text), d > .zero else {
                throw bad("option \(key) '\(text)' is not a positive duration", "Write a duration such as 500ms, 5s or 1m.")
            }
            return d
        }
        connectTimeout = try duration("connectTimeout", .seconds(5))
        commandTimeout = try duration("commandTimeout", .seconds(5))
        poolSize = 2
        if let text = o["poolSize"] {
            guard let n = Int(text), (1...64).contains(n) else {
                throw bad("poolSize '\(text)' is not a number from 1 to 64", "Set poolSize to the connections to keep open (each pipelines many requests); 2 to 8 is typical.")
            }
            poolSize = n
        }
        keyPrefix = o["keyPrefix"] ?? "polyglot:"
        guard keyPrefix.utf8.count <= 64, keyPrefix.isEmpty || MemcachedKey.isValid(keyPrefix) else {
            throw bad("keyPrefix '\(keyPrefix)' is not usable in memcached keys",
                      "Use at most 64 printable ASCII characters without spaces, e.g. myapp:.")
        }
        maxValueBytes = Self.defaultMaxValueBytes
        if let text = o["maxValueBytes"] {
            guard let n = DataMap.parseSize(text), n >= 64, n <= 1 << 30 else {
                throw bad("maxValueBytes '\(text)' is not a size from 64 bytes to 1GB",
                          "Write a size such as 512KB or 1048000; keep it below the server's -I item size limit (1 MiB by default).")
            }
            maxValueBytes = n
        }
    }
}
