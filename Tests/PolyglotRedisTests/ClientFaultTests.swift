import Foundation
import NIOCore
import Polyglot
import PolyglotTesting
import Testing
@testable import PolyglotRedis

/// Faults against a real server that these tests kill, stop and restart (`redisclientfault`, used by no other
/// suite), and connection kills on the main server. Serialized: they share that server.
@Suite(.serialized) struct ClientFaultTests {
    static let server = "redisclientfault"

    func client(_ configure: (inout RedisConfiguration) -> Void = { _ in }) throws -> RedisClient {
        let url = try #require(RedisServers.clientFault, Comment(rawValue: TestServers.missing(RedisServers.clientFaultVariable)))
        var c = try RedisConfiguration(url: url)
        c.reconnectBackoff = .init(initial: .milliseconds(20), maximum: .milliseconds(200))
        configure(&c)
        return try RedisClient(configuration: c)
    }

    /// Pings until the client answers again (the server restarted); returns how many attempts it took.
    /// Pings until `inARow` pings in a row succeed. The pool takes its slots in turn, so `inARow` = the pool size
    /// means every slot has reconnected (a slot still in its reconnect backoff fails at once with `unavailable`).
    func waitUntilAnswering(_ redis: RedisClient, attempts: Int = 200, inARow: Int = 1) async throws -> Int {
        var run = 0
        for i in 1...attempts {
            do {
                try await redis.ping()
                run += 1
                if run == inARow { return i }
            } catch {
                run = 0
                #expect(error.isRetryable, "not retryable: \(error)")
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        Issue.record("the client did not recover after \(attempts) attempts")
        return attempts
    }

    /// Waits until `count` commands (a pipeline counts once) wait for their reply on `redis`'s connections: the
    /// order of the steps below is then a fact, not a guess from sleeps that a loaded machine can outlast.
    func waitUntilWaiting(_ redis: RedisClient, count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while await redis.waitingCount() < count {
            guard ContinuousClock.now < deadline else {
                Issue.record("only \(await redis.waitingCount()) of \(count) commands reached the server within 30 s")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// The server is killed (SIGKILL) while a pipeline of commands waits behind a `DEBUG SLEEP`: every pending
    /// command fails with a typed connection error (none hangs, none times out instead), and after a restart on
    /// the same port the pool reconnects by itself.
    @Test func serverKilledMidPipeline() async throws {
        let redis = try client { $0.poolSize = 2; $0.commandTimeout = .seconds(60) }
        // Both pool connections open before the server blocks.
        try await redis.ping()
        try await redis.ping()
        try await redis.set("fault:k", "v")
        let results = try await withThrowingTaskGroup(of: Result<RESPValue, RedisError>.self) { group in
            // The kill ends the sleep; its length only has to outlast the steps before the kill.
            group.addTask {
                await attempt { () async throws(RedisError) in try await redis.send(["DEBUG", "SLEEP", "30"]) }
            }
            try await waitUntilWaiting(redis, count: 1)
            for t in 0..<100 {
                group.addTask {
                    await attempt { () async throws(RedisError) in
                        if t % 2 == 0 { return try await redis.send(["GET", "fault:k"]) }
                        return .array(try await redis.pipeline((0..<16).map { _ in RedisCommand("INCR", "fault:n") }))
                    }
                }
            }
            // Every command waits for its reply (the server sleeps); then crash the server.
            try await waitUntilWaiting(redis, count: 101)
            try await RedisServers.control(Self.server, "kill")
            var out: [Result<RESPValue, RedisError>] = []
            for try await r in group { out.append(r) }
            return out
        }
        #expect(results.count == 101)
        for r in results {
            switch r {
            case .success(let v): Issue.record("a command pending on a killed server succeeded: \(v)")
            case .failure(let e):
                #expect(e.kind == RedisError.Kind.connectionClosed, "\(e)")
                #expect(e.isRetryable)
            }
        }
        // While the server is down: typed, fast failures.
        do {
            try await redis.ping()
            Issue.record("ping succeeded with the server down")
        } catch {
            #expect([.connectFailed, .unavailable].contains(error.kind), "\(error)")
        }
        try await RedisServers.control(Self.server, "start")
        _ = try await waitUntilAnswering(redis)
        // Every slot of the pool works again.
        for _ in 0..<6 { try await redis.ping() }
        #expect(try await redis.send(["DBSIZE"]).int != nil)
        await redis.close()
    }

    /// A stopped server (SIGTERM) and a restart: commands fail typed while it is down, and the client reconnects
    /// with backoff when it is back.
    @Test func stopAndRestartWithBackoff() async throws {
        let redis = try client { $0.poolSize = 3 }
        try await redis.set("fault:restart", "before")
        try await RedisServers.control(Self.server, "stop")
        var kinds: Set<RedisError.Kind> = []
        // Until the backoff shows (each slot backs off after its failed connect; on a loaded machine a backoff
        // window can pass before the next ping reaches that slot, so the count is generous, not a timing).
        for _ in 0..<200 where !kinds.contains(.unavailable) {
            do {
                try await redis.ping()
                Issue.record("ping succeeded with the server stopped")
            } catch {
                kinds.insert(error.kind)
                #expect(error.isRetryable)
                #expect(error.polyglotError.isRetryable)
            }
        }
        #expect(kinds.isSubset(of: [.connectionClosed, .connectFailed, .unavailable]), "\(kinds)")
        #expect(kinds.contains(.unavailable), "backoff never kicked in: \(kinds)")
        try await RedisServers.control(Self.server, "start")
        _ = try await waitUntilAnswering(redis, inARow: 3)
        // The restarted server is empty (no persistence): the client sees the new server.
        #expect(try await redis.get("fault:restart") == nil)
        await redis.close()
    }

    /// No reply within the command timeout: the command and everything pending on that connection fail with
    /// `timeout`, the connection is dropped, and the client works again once the server answers.
    @Test func commandTimeout() async throws {
        let timeout = Duration.seconds(2)
        let redis = try client { $0.poolSize = 1; $0.commandTimeout = timeout }
        try await redis.ping()
        let start = ContinuousClock.now
        async let sleeping = attempt { () async throws(RedisError) in try await redis.send(["DEBUG", "SLEEP", "5"]) }
        // GET queues behind the sleep on the one connection, once the sleep is sent.
        try await waitUntilWaiting(redis, count: 1)
        async let queued = { () async -> (sentAt: ContinuousClock.Instant, result: Result<RESPValue, RedisError>) in
            let sentAt = ContinuousClock.now
            return (sentAt, await attempt { () async throws(RedisError) in try await redis.send(["GET", "x"]) })
        }()
        let (a, b) = await (sleeping, queued)
        // The sleep always times out. GET shares its fate when it was sent before the sleep's timeout dropped the
        // connection, which is sure when it went out within `timeout` of `start` (a GET sent later, by a paused
        // task, goes over a new connection: not what this test is about).
        var results = [a]
        if b.sentAt - start < timeout - .milliseconds(200) { results.append(b.result) }
        for r in results {
            guard case .failure(let e) = r else { Issue.record("a command outlived its timeout"); continue }
            #expect(e.kind == .timeout, "\(e)")
            #expect(e.message.contains("did not reply within"))
        }
        _ = try await waitUntilAnswering(redis)
        await redis.close()
    }

    /// The server closes our connection (`CLIENT KILL`): the pool notices and reconnects; at most the command in
    /// flight at that moment fails, with a retryable error.
    @Test func connectionKilledByTheServer() async throws {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        let redis = try RedisClient(configuration: RedisConfiguration(url: url, poolSize: 1))
        let admin = try RedisClient(url: url)
        let id = try #require(try await redis.send(["CLIENT", "ID"]).int)
        #expect(try await admin.send(["CLIENT", "KILL", "ID", id]).int == 1)
        var answered = false
        for _ in 0..<5 {
            do {
                let newID = try await redis.send(["CLIENT", "ID"]).int
                #expect(newID != id)
                answered = true
                break
            } catch {
                #expect(error.kind == .connectionClosed && error.isRetryable, "\(error)")
            }
        }
        #expect(answered)
        await redis.close()
        await admin.close()
    }
}

/// The outcome of a command as a value, for tests that collect many.
func attempt(_ body: @Sendable () async throws(RedisError) -> RESPValue) async -> Result<RESPValue, RedisError> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}
