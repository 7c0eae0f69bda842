import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// One connection to a Redis server. Concurrent commands from any number of tasks are pipelined automatically:
/// they are written together and their replies matched in order.
///
/// Most code uses ``RedisClient`` (a pool of these, with reconnects). A dedicated connection is for commands that
/// hold connection state: `WATCH`/`MULTI`, blocking pops, `CLIENT` settings.
///
/// ```swift
/// try await client.withDedicatedConnection { conn in
///     _ = try await conn.send(RedisCommand("WATCH", "balance"))
///     ...
/// }
/// ```
public final class RedisConnection: Sendable, RedisCommandRunner {
    let channel: any Channel
    let eventLoop: any EventLoop
    let handler: NIOLoopBound<RedisConnectionHandler>
    /// Commands encoded but not yet written, and their replies; the handler takes them on the event loop.
    let outbox: RedisOutbox
    /// `handler.value.flush()`, made once (scheduling it allocates nothing).
    let flushTask: @Sendable () -> Void
    let allocator: ByteBufferAllocator
    public let address: String
    let maxValueBytes: Int
    /// Commands smaller than this are encoded into one buffer per flush; larger ones are written as they are.
    static let coalesceLimit = 16 * 1024

    init(channel: any Channel, handler: NIOLoopBound<RedisConnectionHandler>, outbox: RedisOutbox, address: String, maxValueBytes: Int) {
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.handler = handler
        self.outbox = outbox
        self.flushTask = { handler.value.flush() }
        self.allocator = channel.allocator
        self.address = address
        self.maxValueBytes = maxValueBytes
    }

    /// Whether the connection is still open (a closed one fails every command; the pool replaces it).
    public var isOpen: Bool { channel.isActive }

    /// Opens a connection and runs the handshake (`HELLO 3`, `AUTH`, `SELECT`, `CLIENT SETNAME` as configured).
    public static func connect(configuration: RedisConfiguration) async throws(RedisError) -> RedisConnection {
        let ssl = try makeSSLContext(configuration)
        return try await connect(configuration: configuration, sslContext: ssl)
    }

    static func connect(configuration: RedisConfiguration, sslContext: NIOSSLContext?,
                        eventLoop: (any EventLoop)? = nil) async throws(RedisError) -> RedisConnection {
        let address = configuration.address
        let timeout = configuration.commandTimeout
        let loop = eventLoop ?? configuration.eventLoopGroup.next()
        let serverName = configuration.tls?.serverName ?? (isIPAddress(configuration.host) ? nil : configuration.host)
        // The handler is made in the channel initializer and handed out through this promise (looking it up
        // after connecting races with a TLS handshake that fails and tears the pipeline down).
        let handlerPromise = loop.makePromise(of: HandlerAndOutbox.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    }
                    let outbox = RedisOutbox()
                    let handler = RedisConnectionHandler(address: address, commandTimeout: timeout, outbox: outbox)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    handlerPromise.succeed(HandlerAndOutbox(handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), outbox: outbox))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            handlerPromise.fail(error)
            let timedOut = "\(error)".contains("connectTimeout") || "\(error)".lowercased().contains("timeout")
            throw RedisError(.connectFailed,
                             timedOut ? "Could not connect to Redis at \(address) within \(configuration.connectTimeout)."
                                      : "Could not connect to Redis at \(address): \(error).",
                             fix: "Check that redis-server runs there (redis-cli -h \(configuration.host) -p \(configuration.port) ping) and the address is right.",
                             retryable: true)
        }
        let handler: HandlerAndOutbox
        do {
            handler = try await handlerPromise.futureResult.get()
        } catch {
            channel.close(promise: nil)
            throw RedisError.closed(address, while: "during set-up")
        }
        let connection = RedisConnection(channel: channel, handler: handler.handler, outbox: handler.outbox, address: address,
                                         maxValueBytes: configuration.maxValueBytes)
        do {
            try await connection.handshake(configuration)
        } catch {
            connection.closeNow()
            throw error
        }
        return connection
    }

    struct HandlerAndOutbox: Sendable {
        var handler: NIOLoopBound<RedisConnectionHandler>
        var outbox: RedisOutbox
    }

    static func makeSSLContext(_ configuration: RedisConfiguration) throws(RedisError) -> NIOSSLContext? {
        guard let tls = configuration.tls else { return nil }
        do { return try NIOSSLContext(configuration: tls.configuration) } catch {
            throw RedisError(.tls, "TLS for Redis at \(configuration.address) could not be set up: \(error).",
                             fix: "Check the CA file path and that it holds PEM certificates.")
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    private func handshake(_ c: RedisConfiguration) async throws(RedisError) {
        var commands: [RedisCommand] = []
        var names: [String] = []
        if c.protocolVersion == .resp3 {
            var args: [any RedisArgument] = ["3"]
            if let password = c.password { args += ["AUTH", c.username ?? "default", password] }
            if let name = c.clientName { args += ["SETNAME", name] }
            commands.append(RedisCommand("HELLO", arguments: args))
            names.append("HELLO 3")
        } else {
            if let password = c.password {
                commands.append(c.username.map { RedisCommand("AUTH", $0, password) } ?? RedisCommand("AUTH", password))
                names.append("AUTH")
            }
            if let name = c.clientName {
                commands.append(RedisCommand("CLIENT", "SETNAME", name))
                names.append("CLIENT SETNAME")
            }
        }
        if c.database != 0 {
            commands.append(RedisCommand("SELECT", c.database))
            names.append("SELECT \(c.database)")
        }
        if commands.isEmpty && c.tls != nil {
            // Surface TLS handshake failures at connect time.
            commands.append(RedisCommand("PING"))
            names.append("PING")
        }
        guard !commands.isEmpty else { return }
        let replies: [RESPValue]
        do {
            replies = try await pipeline(commands)
        } catch where error.kind == .connectionClosed && c.tls != nil {
            throw RedisError(.tls, "TLS with Redis at \(address) failed during the handshake: \(error.message)",
                             fix: "Check that the port serves TLS and that RedisConfiguration.tls trusts its certificate.")
        }
        for (reply, name) in zip(replies, names) {
            guard let e = reply.serverError else { continue }
            switch e.code {
            case "WRONGPASS", "NOAUTH", "NOPERM":
                throw RedisError(.authenticationFailed, "Redis at \(address) refused \(name.hasPrefix("HELLO") ? "HELLO ... AUTH" : name): \(e.message)",
                                 fix: "Check the user and password in the URL (redis://user:password@host:port); the user must exist and be enabled (ACL LIST).",
                                 serverError: e)
            case "NOPROTO":
                throw RedisError(.invalidConfiguration, "Redis at \(address) does not speak RESP3 (\(e.message)).",
                                 fix: "Use protocolVersion .resp2 (Redis 6 or later is needed for RESP3).", serverError: e)
            default:
                if name.hasPrefix("AUTH") || name.hasPrefix("HELLO"), e.message.contains("AUTH") || e.message.contains("password") {
                    throw RedisError(.authenticationFailed, "Redis at \(address) refused \(name): \(e.message)",
                                     fix: "Check the password, or drop it from the URL if the server has none.", serverError: e)
                }
                throw RedisError.server(e, command: name)
            }
        }
    }

    // MARK: Sending

    @inline(__always)
    private func checkSize(_ command: borrowing RedisCommand) throws(RedisError) {
        if command.largestArgument > maxValueBytes {
            throw RedisError(.valueTooLarge,
                             "\(command.name): an argument of \(command.largestArgument) bytes is over the limit of \(maxValueBytes) bytes; nothing was sent.",
                             fix: "Store smaller values (split them), or raise RedisConfiguration.maxValueBytes.")
        }
        if command.name.isEmpty {
            throw RedisError(.invalidArgument, "An empty Redis command; nothing was sent.", fix: "Give the command name first, e.g. [\"GET\", key].")
        }
    }

    /// Sends a command and returns its reply; an error reply is thrown as ``RedisError`` (``RedisError/Kind/server``).
    ///
    /// The sending path (this, ``pipeline(_:)``, ``RedisClient/send(_:)`` and the pool's `connection()`) is
    /// `nonisolated(nonsending)`: it runs on the caller's executor instead of hopping to the generic one at each
    /// call, which cost a runtime executor check per call (`swift_task_switch`, about 0.3-0.5 µs of CPU per GET on
    /// the event loop; `scripts/redis-bench`, docs/benchmarks.md). It only encodes and enqueues, so running on an
    /// actor's executor holds that actor for no longer than a plain function call.
    nonisolated(nonsending) public func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        let value = try await sendRaw(command)
        if case .error(let e) = value { throw RedisError.server(e, command: command.name) }
        return value
    }

    /// Sends a command and returns its reply as it came, error replies included.
    nonisolated(nonsending) func sendRaw(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        try checkSize(command)
        do {
            return try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<RESPValue, any Error>) in
                submit(command, reply: .single(c))
            }
        } catch {
            throw asRedisError(error)
        }
    }

    /// Sends several commands at once (one write) and returns their replies in order. Error replies stay values
    /// (``RESPValue/error(_:)``), so one failed command does not hide the others' replies. The commands run
    /// back to back on this connection; wrap them in `MULTI`/`EXEC` for atomicity.
    nonisolated(nonsending) public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        for i in commands.indices { try checkSize(commands[i]) }
        do {
            return try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<[RESPValue], any Error>) in
                submit(commands, reply: .batch(c, count: commands.count))
            }
        } catch {
            throw asRedisError(error)
        }
    }

    private func asRedisError(_ error: any Error) -> RedisError {
        (error as? RedisError) ?? RedisError.closed(address, while: "(\(error))")
    }

    /// Writes a command whose replies are not matched to it (pub/sub commands: their confirmations arrive as messages).
    func sendWithoutReply(_ command: RedisCommand) throws(RedisError) {
        try checkSize(command)
        submit(command, reply: nil)
    }

    /// Encodes the commands into the outgoing buffer and, for the first commands since the last write, schedules
    /// one write on the event loop (which also registers the reply, before the bytes go out).
    ///
    /// A task already on the connection's loop writes at once, without that scheduled turn, but only when the
    /// connection is idle (no command waits for a reply): one task's round trips, the latency case, then skip a
    /// hop through the loop's task queue. A busy connection keeps the scheduled write, so the tasks the loop
    /// resumes in the same tick add their commands first and all go out in one write: writing at once from every
    /// task on the loop cut GET throughput with 50 tasks sharing 4 connections from 1.64-1.76× redis-benchmark's
    /// to 0.99-1.02× (`RedisBenchmarks --only throughput --pool 4`).
    private func submit(_ commands: [RedisCommand], reply: RedisPendingReply?) {
        let schedule = outbox.state.withLock { o -> Bool in
            commands.withUnsafeBufferPointer { p in
                for i in p.indices { o.append(p[i], allocator: allocator) }
            }
            if let reply { o.replies.append(reply) }
            if o.flushScheduled { return false }
            o.flushScheduled = true
            return true
        }
        if schedule { flushSoon() }
    }

    /// Writes now when on the loop with the connection idle (see `submit`), else schedules the write on the loop.
    @inline(__always)
    private func flushSoon() {
        if eventLoop.inEventLoop, handler.value.isIdle {
            handler.value.flush()
        } else {
            eventLoop.execute(flushTask)
        }
    }

    private func submit(_ command: RedisCommand, reply: RedisPendingReply?) {
        let schedule = outbox.state.withLock { o -> Bool in
            o.append(command, allocator: allocator)
            if let reply { o.replies.append(reply) }
            if o.flushScheduled { return false }
            o.flushScheduled = true
            return true
        }
        if schedule { flushSoon() }
    }

    /// Commands (a pipeline counts once) written to this connection and waiting for their reply.
    func waitingCount() async -> Int {
        let handler = self.handler
        return (try? await channel.eventLoop.submit { handler.value.waitingCount }.get()) ?? 0
    }

    // MARK: Closing

    /// Closes the connection; commands still pending fail with ``RedisError/Kind/closed``.
    public func close() async {
        let loop = channel.eventLoop
        let handler = self.handler
        let channel = self.channel
        try? await loop.submit {
            handler.value.fail(RedisError.clientClosed)
        }.get()
        try? await channel.closeFuture.get()
    }

    func closeNow() {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.fail(RedisError.clientClosed) }
    }

    /// Sets the callback for RESP3 push messages and pub/sub messages (on the event loop).
    func setPushHandler(pubSubMode: Bool, _ body: @escaping @Sendable (RESPValue) -> Void) async {
        let handler = self.handler
        try? await channel.eventLoop.submit {
            handler.value.pubSubMode = pubSubMode
            handler.value.onPush = body
        }.get()
    }
}
