import NIOCore
import NIOSSL
import Synchronization

/// One message received on a subscription.
public struct RedisPubSubMessage: Sendable, Equatable {
    /// The channel it was published to.
    public var channel: String
    /// The pattern that matched, for `PSUBSCRIBE` subscriptions; nil for plain channel subscriptions.
    public var pattern: String?
    /// The published bytes.
    public var payload: ByteBuffer

    /// The payload as UTF-8 text.
    public var text: String { String(buffer: payload) }
}

/// A pub/sub subscription on a connection of its own: an `AsyncSequence` of ``RedisPubSubMessage``.
///
/// ```swift
/// let sub = try await client.subscribe(to: ["news"], patterns: ["alerts.*"])
/// for try await message in sub {
///     print(message.channel, message.text)
/// }
/// ```
///
/// ``subscribe(to:patterns:)`` and ``unsubscribe(from:patterns:)`` return once the server has confirmed. The
/// sequence ends (throwing ``RedisError``, kind ``RedisError/Kind/connectionClosed``) if the connection is lost;
/// subscribe again then. ``close()`` ends it normally.
public final class RedisSubscription: AsyncSequence, Sendable {
    public typealias Element = RedisPubSubMessage
    public typealias AsyncIterator = AsyncThrowingStream<RedisPubSubMessage, any Error>.Iterator

    struct Waiter {
        var remaining: Set<String>
        var continuation: CheckedContinuation<Void, any Error>
    }

    struct State {
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
        var failure: RedisError?
        var channels: Set<String> = []
        var patterns: Set<String> = []
    }

    let connection: RedisConnection
    let stream: AsyncThrowingStream<RedisPubSubMessage, any Error>
    let continuation: AsyncThrowingStream<RedisPubSubMessage, any Error>.Continuation
    private let state = Mutex(State())

    init(connection: RedisConnection, bufferLimit: Int) {
        self.connection = connection
        (stream, continuation) = AsyncThrowingStream.makeStream(of: RedisPubSubMessage.self, bufferingPolicy: .bufferingNewest(bufferLimit))
    }

    static func open(configuration: RedisConfiguration, sslContext: NIOSSLContext?, bufferLimit: Int) async throws(RedisError) -> RedisSubscription {
        var c = configuration
        c.commandTimeout = nil   // a subscription waits for messages as long as it takes
        let connection = try await RedisConnection.connect(configuration: c, sslContext: sslContext)
        let sub = RedisSubscription(connection: connection, bufferLimit: bufferLimit)
        await connection.setPushHandler(pubSubMode: true) { [weak sub] value in sub?.received(value) }
        connection.channel.closeFuture.whenComplete { [weak sub] _ in
            sub?.connectionClosed()
        }
        return sub
    }

    deinit {
        continuation.finish()
        connection.closeNow()
    }

    public func makeAsyncIterator() -> AsyncIterator { stream.makeAsyncIterator() }

    /// The channels and patterns subscribed to now.
    public var subscriptions: (channels: Set<String>, patterns: Set<String>) {
        state.withLock { ($0.channels, $0.patterns) }
    }

    /// Subscribes to more channels and patterns; returns when the server confirmed each.
    public func subscribe(to channels: [String], patterns: [String] = []) async throws(RedisError) {
        try await run(channels.isEmpty ? nil : RedisCommand("SUBSCRIBE", arguments: channels),
                      patterns.isEmpty ? nil : RedisCommand("PSUBSCRIBE", arguments: patterns),
                      expect: Set(channels.map { "subscribe:" + $0 } + patterns.map { "psubscribe:" + $0 }))
    }

    /// Unsubscribes; returns when the server confirmed each.
    public func unsubscribe(from channels: [String], patterns: [String] = []) async throws(RedisError) {
        try await run(channels.isEmpty ? nil : RedisCommand("UNSUBSCRIBE", arguments: channels),
                      patterns.isEmpty ? nil : RedisCommand("PUNSUBSCRIBE", arguments: patterns),
                      expect: Set(channels.map { "unsubscribe:" + $0 } + patterns.map { "punsubscribe:" + $0 }))
    }

    private func run(_ a: RedisCommand?, _ b: RedisCommand?, expect: Set<String>) async throws(RedisError) {
        guard !expect.isEmpty else { return }
        do {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
                let failure: RedisError? = state.withLock { s in
                    if let f = s.failure { return f }
                    s.waiters[s.nextWaiter] = Waiter(remaining: expect, continuation: cont)
                    s.nextWaiter += 1
                    return nil
                }
                if let failure {
                    cont.resume(throwing: failure)
                    return
                }
                do throws(RedisError) {
                    if let a { try connection.sendWithoutReply(a) }
                    if let b { try connection.sendWithoutReply(b) }
                } catch {
                    fail(error)
                }
            }
        } catch let e as RedisError {
            throw e
        } catch {
            throw RedisError(.connectionClosed, "The subscription failed: \(error).", retryable: true)
        }
    }

    /// On the event loop: a message or a confirmation.
    func received(_ value: RESPValue) {
        guard let parts = value.array, let kind = parts.first?.string?.lowercased() else { return }
        switch kind {
        case "message", "smessage":
            guard parts.count == 3, let channel = parts[1].string, let payload = parts[2].buffer else { return }
            continuation.yield(RedisPubSubMessage(channel: channel, pattern: nil, payload: payload))
        case "pmessage":
            guard parts.count == 4, let pattern = parts[1].string, let channel = parts[2].string, let payload = parts[3].buffer else { return }
            continuation.yield(RedisPubSubMessage(channel: channel, pattern: pattern, payload: payload))
        case "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ssubscribe", "sunsubscribe":
            guard parts.count >= 2 else { return }
            let name = parts[1].string ?? ""
            let done: [CheckedContinuation<Void, any Error>] = state.withLock { s in
                switch kind {
                case "subscribe", "ssubscribe": s.channels.insert(name)
                case "psubscribe": s.patterns.insert(name)
                case "unsubscribe", "sunsubscribe": s.channels.remove(name)
                default: s.patterns.remove(name)
                }
                let tag = kind + ":" + name
                var finished: [CheckedContinuation<Void, any Error>] = []
                for (id, var w) in s.waiters where w.remaining.contains(tag) {
                    w.remaining.remove(tag)
                    if w.remaining.isEmpty {
                        finished.append(w.continuation)
                        s.waiters[id] = nil
                    } else {
                        s.waiters[id] = w
                    }
                    break
                }
                return finished
            }
            for c in done { c.resume() }
        default:
            if let e = value.serverError { fail(RedisError.server(e, command: "SUBSCRIBE")) }
        }
    }

    private func fail(_ error: RedisError) {
        let waiters: [Waiter] = state.withLock { s in
            if s.failure == nil { s.failure = error }
            let w = Array(s.waiters.values)
            s.waiters = [:]
            return w
        }
        for w in waiters { w.continuation.resume(throwing: error) }
    }

    func connectionClosed() {
        let closedByUs = state.withLock { $0.failure?.kind == .closed }
        if closedByUs {
            continuation.finish()
        } else {
            let error = RedisError.closed(connection.address, while: "during the subscription")
            fail(error)
            continuation.finish(throwing: error)
        }
    }

    /// Ends the subscription and closes its connection; iteration ends without an error.
    public func close() async {
        fail(RedisError.clientClosed)
        continuation.finish()
        await connection.close()
    }
}

extension RedisClient {
    /// Subscribes to channels and/or patterns on a new connection of its own; returns once the server confirmed.
    /// - Parameter bufferLimit: messages kept while nobody iterates; the oldest are dropped beyond it.
    public func subscribe(to channels: [String], patterns: [String] = [], bufferLimit: Int = 10_000) async throws(RedisError) -> RedisSubscription {
        let sub = try await RedisSubscription.open(configuration: configuration, sslContext: sslContext, bufferLimit: bufferLimit)
        do {
            try await sub.subscribe(to: channels, patterns: patterns)
        } catch {
            await sub.close()
            throw error
        }
        return sub
    }

    /// `PUBLISH`: how many subscribers received the message.
    @discardableResult
    public func publish(_ message: some RedisArgument, to channel: String) async throws(RedisError) -> Int {
        let reply = try await send(RedisCommand("PUBLISH", channel, message))
        guard let n = reply.int else { throw unexpected(reply, "PUBLISH") }
        return Int(n)
    }
}
