import Logging
import NIOCore
import NIOSSL

/// A Redis client: a small pool of pipelining connections to one server, with reconnects, timeouts, AUTH,
/// SELECT, TLS and scripts. It is `Sendable`; share one per server across the whole program.
///
/// ```swift
/// let client = try RedisClient(url: "redis://127.0.0.1:6379")
/// try await client.set("greeting", "hello", ttl: .seconds(60))
/// let text = try await client.getString("greeting")            // "hello"
/// let reply = try await client.send(["HSET", "user:1", "name", "Ada"])
/// let replies = try await client.pipeline([RedisCommand("INCR", "n"), RedisCommand("GET", "n")])
/// await client.close()
/// ```
///
/// Commands from many tasks share connections: each connection writes whatever commands are waiting in one go
/// and matches replies in order (automatic pipelining). Connections open on first use; a closed one is replaced
/// on the next command, and after a failed connect the client waits (``RedisConfiguration/reconnectBackoff``)
/// before trying again, failing commands at once meanwhile. Every failure is a ``RedisError``.
public final class RedisClient: Sendable, RedisCommandRunner {
    public let configuration: RedisConfiguration
    let pool: RedisPool
    let sslContext: NIOSSLContext?

    /// A client for the server the configuration names. Nothing connects until the first command.
    /// Throws ``RedisError`` (``RedisError/Kind/invalidConfiguration`` or ``RedisError/Kind/tls``) for settings that cannot work.
    public init(configuration: RedisConfiguration) throws(RedisError) {
        try configuration.validate()
        self.configuration = configuration
        sslContext = try RedisConnection.makeSSLContext(configuration)
        pool = RedisPool(configuration: configuration, sslContext: sslContext)
    }

    /// A client from a URL: `redis://[user:password@]host[:port][/db]`, `rediss://...` for TLS.
    public convenience init(url: String) throws(RedisError) {
        try self.init(configuration: RedisConfiguration(url: url))
    }

    nonisolated(nonsending) public func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        try await pool.connection().send(command)
    }

    nonisolated(nonsending) public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        try await pool.connection().pipeline(commands)
    }

    /// A connection of the pool (shared with other tasks: do not change its state, e.g. with `SELECT`).
    nonisolated(nonsending) public func connection() async throws(RedisError) -> RedisConnection {
        try await pool.connection()
    }

    /// Runs `body` with a new connection of its own (for `WATCH`/`MULTI`, blocking commands, `CLIENT` settings),
    /// closed afterwards.
    public func withDedicatedConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await RedisConnection.connect(configuration: configuration, sslContext: sslContext)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    /// Commands (a pipeline counts once) written to the server and waiting for their reply, over all connections.
    /// For diagnostics and tests: it makes a turn on each connection's event loop.
    func waitingCount() async -> Int {
        await pool.waitingCount()
    }

    /// Closes every connection; pending commands fail with ``RedisError/Kind/closed``, later ones too.
    public func close() async {
        await pool.close()
    }
}
