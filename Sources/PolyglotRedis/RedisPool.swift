import Logging
import NIOCore
import NIOSSL
import Synchronization

/// A fixed number of connection slots, used round-robin. Every connection pipelines, so a slot is shared by any
/// number of concurrent commands; nothing is leased.
///
/// Each slot connects lazily and reconnects when its connection has closed. A failed connect puts the slot in
/// backoff (``RedisConfiguration/Backoff``): until it expires, commands on it fail at once with
/// ``RedisError/Kind/unavailable`` instead of queueing behind a dead server.
final class RedisPool: Sendable {
    let slots: [RedisPoolSlot]
    /// The slots grouped by event loop: a task already running on one of these loops (see
    /// ``RedisEventLoopExecutor``) gets a connection of its own loop, so its command never changes threads.
    private let byLoop: [(loop: any EventLoop, slots: [RedisPoolSlot])]
    private let next = Atomic<Int>(0)
    private let isClosed = Atomic<Bool>(false)

    init(configuration: RedisConfiguration, sslContext: NIOSSLContext?) {
        let slots = (0..<configuration.poolSize).map { i in
            RedisPoolSlot(configuration: configuration, sslContext: sslContext, eventLoop: configuration.eventLoopGroup.next(), index: i)
        }
        var groups: [(loop: any EventLoop, slots: [RedisPoolSlot])] = []
        for s in slots {
            if let i = groups.firstIndex(where: { $0.loop === s.eventLoop }) { groups[i].slots.append(s) } else { groups.append((s.eventLoop, [s])) }
        }
        self.slots = slots
        self.byLoop = groups.count > 1 ? groups : []
    }

    nonisolated(nonsending) func connection() async throws(RedisError) -> RedisConnection {
        if isClosed.load(ordering: .relaxed) { throw RedisError.clientClosed }
        let i = next.add(1, ordering: .relaxed).newValue & Int.max
        for g in byLoop where g.loop.inEventLoop {
            return try await g.slots[i % g.slots.count].connection()
        }
        return try await slots[i % slots.count].connection()
    }

    /// Commands (a pipeline counts once) written to the open connections and waiting for their reply.
    func waitingCount() async -> Int {
        var n = 0
        for s in slots { if let c = s.openConnection { n += await c.waitingCount() } }
        return n
    }

    func close() async {
        isClosed.store(true, ordering: .relaxed)
        for s in slots { await s.close() }
    }
}

final class RedisPoolSlot: Sendable {
    enum State {
        case idle
        case connecting(Task<RedisConnection, any Error>)
        case connected(RedisConnection)
        case backoff(until: ContinuousClock.Instant, error: RedisError, attempt: Int)
        case closed
    }

    let configuration: RedisConfiguration
    let sslContext: NIOSSLContext?
    let eventLoop: any EventLoop
    let index: Int
    private let state = Mutex<State>(.idle)
    /// Consecutive failed connects (for the backoff); reset on success.
    private let failures = Atomic<Int>(0)

    init(configuration: RedisConfiguration, sslContext: NIOSSLContext?, eventLoop: any EventLoop, index: Int) {
        self.configuration = configuration
        self.sslContext = sslContext
        self.eventLoop = eventLoop
        self.index = index
    }

    /// The slot's connection when it has one open.
    var openConnection: RedisConnection? {
        state.withLock { s in
            if case .connected(let c) = s, c.isOpen { return c }
            return nil
        }
    }

    private enum Action {
        case use(RedisConnection)
        case wait(Task<RedisConnection, any Error>)
        case fail(RedisError)
    }

    nonisolated(nonsending) func connection() async throws(RedisError) -> RedisConnection {
        // Fast path: an open connection.
        let action: Action = state.withLock { s in
            switch s {
            case .connected(let c) where c.isOpen:
                return .use(c)
            case .connecting(let t):
                return .wait(t)
            case .closed:
                return .fail(RedisError.clientClosed)
            case .backoff(let until, let error, let attempt) where ContinuousClock.now < until:
                return .fail(RedisError(.unavailable,
                                        "Redis at \(configuration.address) is unreachable (attempt \(attempt) failed: \(error.message)); the client waits before reconnecting, and the command was not sent.",
                                        fix: error.fix ?? "Check that the server is running; the client reconnects by itself.",
                                        retryable: true))
            default:
                let t = Task { try await self.connect() }
                s = .connecting(t)
                return .wait(t)
            }
        }
        switch action {
        case .use(let c): return c
        case .fail(let e): throw e
        case .wait(let t):
            do {
                return try await t.value
            } catch let e as RedisError {
                throw e
            } catch {
                throw RedisError(.connectFailed, "Could not connect to Redis at \(configuration.address): \(error).", retryable: true)
            }
        }
    }

    private func connect() async throws(RedisError) -> RedisConnection {
        do throws(RedisError) {
            let c = try await RedisConnection.connect(configuration: configuration, sslContext: sslContext, eventLoop: eventLoop)
            let keep = state.withLock { s -> Bool in
                if case .closed = s { return false }
                s = .connected(c)
                return true
            }
            if !keep {
                await c.close()
                throw RedisError.clientClosed
            }
            if failures.exchange(0, ordering: .relaxed) > 0 {
                configuration.logger.info("redis reconnected", metadata: ["address": "\(configuration.address)", "slot": "\(index)"])
            }
            return c
        } catch {
            let attempt = failures.add(1, ordering: .relaxed).newValue
            let delay = backoff(attempt: attempt)
            state.withLock { s in
                if case .closed = s { return }
                s = .backoff(until: ContinuousClock.now + delay, error: error, attempt: attempt)
            }
            configuration.logger.warning("redis connect failed", metadata: [
                "address": "\(configuration.address)", "attempt": "\(attempt)", "retryIn": "\(delay)", "error": "\(error.message)",
            ])
            throw error
        }
    }

    func backoff(attempt: Int) -> Duration {
        let b = configuration.reconnectBackoff
        var d = b.initial
        var i = 1
        while i < attempt && d < b.maximum {
            d *= 2
            i += 1
        }
        return min(d, b.maximum)
    }

    func close() async {
        let previous = state.withLock { s -> State in
            let p = s
            s = .closed
            return p
        }
        switch previous {
        case .connected(let c): await c.close()
        case .connecting(let t): if let c = try? await t.value { await c.close() }
        default: break
        }
    }
}
