import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// How a ``RedisClient`` connects: address, credentials, database, TLS, pool size, timeouts, limits.
///
/// ```swift
/// var config = try RedisConfiguration(url: "redis://app:secret@127.0.0.1:6379/2")
/// config.poolSize = 8
/// config.commandTimeout = .seconds(2)
/// let client = try RedisClient(configuration: config)
/// ```
///
/// URL forms: `redis://host`, `redis://host:port`, `redis://:password@host`, `redis://user:password@host:port/db`,
/// and `rediss://...` for TLS (verified against the system's trust roots unless ``tls`` names a CA file).
/// Query options: `?protocol=3` (RESP3 via `HELLO 3`), `?pool=8`, `?name=client-name`.
public struct RedisConfiguration: Sendable {
    /// The wire protocol version: RESP2 (the default: every Redis understands it), or RESP3 negotiated with `HELLO 3`.
    public enum ProtocolVersion: Int, Sendable {
        case resp2 = 2
        case resp3 = 3
    }

    /// TLS settings (`rediss://`).
    public struct TLS: Sendable {
        /// The NIOSSL configuration used for every connection.
        public var configuration: TLSConfiguration
        /// The name sent as SNI and checked against the certificate; by default the host when it is a name (not an IP).
        public var serverName: String?

        public init(configuration: TLSConfiguration, serverName: String? = nil) {
            self.configuration = configuration
            self.serverName = serverName
        }

        /// Verifies the server against the system's trust roots.
        public static var system: TLS { TLS(configuration: .makeClientConfiguration()) }

        /// Verifies the server against the PEM certificate(s) in `caFile` (e.g. a private CA or a self-signed certificate).
        public static func trusting(caFile: String, serverName: String? = nil) -> TLS {
            var c = TLSConfiguration.makeClientConfiguration()
            c.trustRoots = .file(caFile)
            return TLS(configuration: c, serverName: serverName)
        }

        /// Encrypts without checking the certificate (only for tests; anyone in between can read the traffic).
        public static var noVerification: TLS {
            var c = TLSConfiguration.makeClientConfiguration()
            c.certificateVerification = .none
            return TLS(configuration: c)
        }
    }

    /// Reconnect backoff: after a failed connect, the next attempt waits `initial`, then doubles up to `maximum`.
    /// Commands sent while waiting fail at once with ``RedisError/Kind/unavailable`` (nothing is queued).
    public struct Backoff: Sendable {
        public var initial: Duration
        public var maximum: Duration
        public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(2)) {
            self.initial = initial
            self.maximum = maximum
        }
    }

    public var host: String
    public var port: Int
    /// The ACL user (`AUTH user password`); nil means the `default` user.
    public var username: String?
    /// The password; nil sends no `AUTH`.
    public var password: String?
    /// The database selected on every connection (`SELECT`); 0 by default. Redis Cluster has only database 0.
    public var database: Int
    /// TLS, or nil for plain TCP.
    public var tls: TLS?
    public var protocolVersion: ProtocolVersion
    /// How many connections the client keeps. Each one pipelines any number of concurrent commands, so a few suffice;
    /// more help when many tasks send large values.
    public var poolSize: Int
    /// The longest a TCP (and TLS) connect may take.
    public var connectTimeout: Duration
    /// The longest a command may wait for its reply; nil waits forever. On timeout the connection is closed (its
    /// later replies can no longer be matched) and every command pending on it fails with ``RedisError/Kind/timeout``.
    public var commandTimeout: Duration?
    /// The largest argument (key or value) the client sends; a larger one is refused before anything is sent
    /// (``RedisError/Kind/valueTooLarge``). Redis' own limit is 512 MB.
    public var maxValueBytes: Int
    public var reconnectBackoff: Backoff
    /// Sent with `CLIENT SETNAME` (shows in `CLIENT LIST`).
    public var clientName: String?
    /// The event loops connections run on; by default NIO's shared singleton group.
    public var eventLoopGroup: any EventLoopGroup
    public var logger: Logger

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil,
                database: Int = 0, tls: TLS? = nil, protocolVersion: ProtocolVersion = .resp2, poolSize: Int = 4,
                connectTimeout: Duration = .seconds(5), commandTimeout: Duration? = .seconds(30),
                maxValueBytes: Int = 512 * 1024 * 1024, reconnectBackoff: Backoff = Backoff(), clientName: String? = nil,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "polyglot.redis")) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.protocolVersion = protocolVersion
        self.poolSize = poolSize
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.maxValueBytes = maxValueBytes
        self.reconnectBackoff = reconnectBackoff
        self.clientName = clientName
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// A configuration from a `redis://` or `rediss://` URL; the other settings take their defaults and can be
    /// changed afterwards (or passed here).
    public init(url: String, tls: TLS? = nil, poolSize: Int? = nil, connectTimeout: Duration = .seconds(5),
                commandTimeout: Duration? = .seconds(30), maxValueBytes: Int = 512 * 1024 * 1024) throws(RedisError) {
        func bad(_ why: String) -> RedisError {
            RedisError(.invalidConfiguration, "The Redis URL '\(RedisConfiguration.redact(url))' is not usable: \(why).",
                       fix: "Write it as redis://[user:password@]host[:port][/database] (rediss:// for TLS).")
        }
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased() else { throw bad("it is not a URL") }
        guard scheme == "redis" || scheme == "rediss" else { throw bad("the scheme must be redis or rediss, not \(scheme)") }
        var host = c.host ?? ""
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw bad("it names no host") }
        self.init(host: host, port: c.port ?? 6379)
        if let u = c.user, !u.isEmpty { username = u.removingPercentEncoding ?? u }
        if let p = c.password { password = p.removingPercentEncoding ?? p }
        if username != nil, password == nil { throw bad("it names a user without a password") }
        let path = c.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw bad("the path must be a database number, not '\(path)'") }
            database = db
        }
        for item in c.queryItems ?? [] {
            switch item.name {
            case "protocol":
                guard let v = item.value.flatMap({ Int($0) }).flatMap(ProtocolVersion.init(rawValue:)) else { throw bad("protocol must be 2 or 3") }
                protocolVersion = v
            case "pool":
                guard let v = item.value.flatMap({ Int($0) }), v > 0 else { throw bad("pool must be a positive number") }
                self.poolSize = v
            case "name":
                clientName = item.value
            default:
                throw bad("unknown option '\(item.name)' (known: protocol, pool, name)")
            }
        }
        if scheme == "rediss" { self.tls = tls ?? .system } else if let tls { self.tls = tls }
        if let poolSize { self.poolSize = poolSize }
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.maxValueBytes = maxValueBytes
    }

    /// `host:port` for messages.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    static func redact(_ url: String) -> String {
        guard var c = URLComponents(string: url), c.password != nil else { return url }
        c.password = "***"
        return c.string ?? url
    }

    func validate() throws(RedisError) {
        func bad(_ why: String, _ fix: String) -> RedisError { RedisError(.invalidConfiguration, "RedisConfiguration: \(why).", fix: fix) }
        if poolSize < 1 { throw bad("poolSize is \(poolSize)", "Use at least 1 connection.") }
        if port < 1 || port > 65535 { throw bad("port \(port) is out of range", "Use a port between 1 and 65535.") }
        if database < 0 { throw bad("database is \(database)", "Use database 0 or higher.") }
        if maxValueBytes < 1 { throw bad("maxValueBytes is \(maxValueBytes)", "Use a positive limit (Redis' own is 512 MB).") }
        if connectTimeout <= .zero { throw bad("connectTimeout is not positive", "Use a positive connect timeout, e.g. .seconds(5).") }
        if let t = commandTimeout, t <= .zero { throw bad("commandTimeout is not positive", "Use a positive timeout, or nil to wait forever.") }
        if username != nil, password == nil { throw bad("a username without a password", "Set password too (AUTH needs both).") }
    }
}
