import Polyglot

/// An error reply from the server: `-WRONGTYPE Operation against a key holding the wrong kind of value`.
///
/// ``code`` is the first word (`ERR`, `WRONGTYPE`, `NOSCRIPT`, `MOVED`, `ASK`, `NOAUTH`, `READONLY`, ...), and
/// ``message`` the whole text the server sent.
public struct RedisServerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error's code: the first word of the reply when it is upper case (`WRONGTYPE`), else `ERR`.
    public var code: String
    /// The full error text as the server sent it, code included.
    public var message: String

    public init(message: String) {
        self.message = message
        let first = message.prefix { $0 != " " }
        if !first.isEmpty, first.allSatisfy({ $0.isUppercase || $0 == "_" || $0.isNumber }) {
            self.code = String(first)
        } else {
            self.code = "ERR"
        }
    }

    public var description: String { message }
}

/// What the Redis client throws. ``kind`` says what went wrong, ``message`` says it in words naming the server,
/// ``fix`` says what to do, and ``isRetryable`` whether the same call may succeed later.
///
/// ```swift
/// do { _ = try await client.send(["INCR", "a-list"]) }
/// catch let e as RedisError where e.serverCode == "WRONGTYPE" { ... }
/// ```
///
/// ``polyglotError`` turns it into the project's ``PolyglotError``.
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kinds of failure.
    public enum Kind: String, Sendable, Equatable {
        /// The server answered with an error reply; ``RedisError/serverCode`` and ``RedisError/serverError`` carry it.
        case server
        /// A TCP (or TLS) connection could not be made within the connect timeout.
        case connectFailed
        /// The connection closed while the command was pending (server stopped, killed, network): the command
        /// may or may not have run on the server.
        case connectionClosed
        /// No reply within the command timeout; the connection was closed (a RESP connection cannot skip a reply).
        /// The command may or may not have run.
        case timeout
        /// The server could not be reached recently and the client is waiting before it reconnects (backoff);
        /// the command was not sent.
        case unavailable
        /// An argument was larger than ``RedisConfiguration/maxValueBytes``; nothing was sent.
        case valueTooLarge
        /// Bad input to the client (an empty command, a bad key for a cluster); nothing was sent.
        case invalidArgument
        /// The configuration or URL is not usable.
        case invalidConfiguration
        /// The server sent bytes that are not RESP.
        case protocolViolation
        /// Authentication (`AUTH` / `HELLO ... AUTH`) was refused.
        case authenticationFailed
        /// TLS could not be set up (certificate file, handshake).
        case tls
        /// Redis Cluster: no node serves the key's slot, or redirects did not settle.
        case cluster
        /// The client was closed with ``RedisClient/close()``.
        case closed
    }

    public var kind: Kind
    /// What went wrong, naming the server address when it matters.
    public var message: String
    /// What to do about it.
    public var fix: String?
    /// For ``Kind/server``: the error reply.
    public var serverError: RedisServerError?
    /// Whether retrying the same call may succeed.
    public var isRetryable: Bool

    public init(_ kind: Kind, _ message: String, fix: String? = nil, serverError: RedisServerError? = nil, retryable: Bool = false) {
        self.kind = kind
        self.message = message
        self.fix = fix
        self.serverError = serverError
        self.isRetryable = retryable
    }

    /// For ``Kind/server``: the error code (`WRONGTYPE`, `ERR`, `NOSCRIPT`, ...).
    public var serverCode: String? { serverError?.code }

    public var description: String {
        if let fix { return "\(message) Fix: \(fix)" }
        return message
    }

    /// The same failure as a ``PolyglotError`` (server errors are engine failures; outages are retryable
    /// `engineUnavailable`; oversized values are `limitExceeded`).
    public var polyglotError: PolyglotError {
        let code: PolyglotError.Code
        switch kind {
        case .server, .protocolViolation, .cluster: code = .engineFailure
        case .connectFailed, .connectionClosed, .timeout, .unavailable, .tls, .authenticationFailed: code = .engineUnavailable
        case .valueTooLarge: code = .limitExceeded
        case .invalidArgument: code = .invalidArgument
        case .invalidConfiguration: code = .invalidDataMap
        case .closed: code = .closed
        }
        return PolyglotError(code, "Redis: \(message)", fix: fix, retryable: isRetryable)
    }
}

extension RedisError {
    static func server(_ e: RedisServerError, command: String) -> RedisError {
        let fix: String?
        switch e.code {
        case "WRONGTYPE": fix = "The key holds another type; use the command for its type (TYPE key tells which) or another key."
        case "NOAUTH", "WRONGPASS": fix = "Give the user and password in the URL (redis://user:password@host:port)."
        case "NOPERM": fix = "Grant the ACL user this command or key (ACL SETUSER), or connect as another user."
        case "NOSCRIPT": fix = "Run the script through RedisClient.script(_:), which falls back to EVAL."
        case "MOVED", "ASK": fix = "This server is a Redis Cluster node: connect with RedisClusterClient, which follows redirects."
        case "CROSSSLOT": fix = "In Redis Cluster, a multi-key command needs all its keys in one slot: give them a common {hash tag}, or send one command per key."
        case "CLUSTERDOWN": fix = "The cluster does not serve every slot right now (a node is down); retry, or check CLUSTER INFO."
        case "OOM": fix = "The server reached maxmemory; raise it or set an eviction policy."
        case "READONLY": fix = "This node is a replica; send writes to the master."
        case "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN": fix = "The server is busy; retry shortly."
        default: fix = nil
        }
        let retry = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"].contains(e.code)
        return RedisError(.server, "\(command) failed: \(e.message)", fix: fix, serverError: e, retryable: retry)
    }

    static func closed(_ address: String, while what: String) -> RedisError {
        RedisError(.connectionClosed, "The connection to Redis at \(address) closed \(what); the command may or may not have run.",
                   fix: "Check that the server is running; the client reconnects on the next command.", retryable: true)
    }

    static func timeout(_ address: String, after: Duration) -> RedisError {
        RedisError(.timeout, "Redis at \(address) did not reply within \(after) (command timeout); the connection was closed and the command may or may not have run.",
                   fix: "Raise RedisConfiguration.commandTimeout, or check the server's load (SLOWLOG GET).", retryable: true)
    }

    static let clientClosed = RedisError(.closed, "The Redis client was closed.", fix: "Create a new RedisClient.")
}
