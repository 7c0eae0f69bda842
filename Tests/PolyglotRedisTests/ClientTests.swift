import Foundation
import NIOCore
import NIOPosix
import Polyglot
import PolyglotTesting
import Testing
@testable import PolyglotRedis

/// The client against the real Redis server (scripts/services/up redis).
@Suite struct ClientTests {
    func client(_ configure: (inout RedisConfiguration) -> Void = { _ in }) throws -> RedisClient {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        var c = try RedisConfiguration(url: url)
        configure(&c)
        return try RedisClient(configuration: c)
    }

    func key(_ name: String = #function) -> String { "test:client:\(name):\(UUID().uuidString)" }

    @Test func getSetDelIncrTTL() async throws {
        let redis = try client()
        let k = key()
        #expect(try await redis.get(k) == nil)
        #expect(try await redis.set(k, "hello"))
        #expect(try await redis.getString(k) == "hello")
        #expect(try await redis.set(k, "other", condition: .ifAbsent) == false)
        #expect(try await redis.getString(k) == "hello")
        try await redis.set(k, "v", ttl: .seconds(100))
        let ttl = try #require(try await redis.ttl(k))
        #expect(ttl > .seconds(90) && ttl <= .seconds(100))
        #expect(try await redis.del(k))
        #expect(try await redis.exists(k) == false)
        #expect(try await redis.incr(k) == 1)
        #expect(try await redis.incr(k, by: 41) == 42)
        #expect(try await redis.send(["GET", k]).int == 42)
        try await redis.del(k)
        await redis.close()
    }

    @Test func binaryKeysAndValuesRoundTripExactly() async throws {
        let redis = try client()
        let values: [[UInt8]] = [[], [0], [13, 10], Array("\r\n$3\r\nGET\r\n".utf8), (0...255).map { UInt8($0) }, [UInt8](repeating: 0xFF, count: 100_000)]
        for (i, value) in values.enumerated() {
            let k: [UInt8] = Array(key().utf8) + [0, 13, 10, UInt8(i)]
            try await redis.set(k, value)
            let got = try #require(try await redis.get(k))
            #expect(Array(got.readableBytesView) == value, "value \(i)")
            try await redis.del(k)
        }
        // An empty key is a key too.
        try await redis.set("", "empty-key")
        #expect(try await redis.getString("") == "empty-key")
        try await redis.del("")
        await redis.close()
    }

    @Test func pipelinesMixSmallAndLargeCommandsInOrder() async throws {
        // Small commands are encoded into one shared buffer per write, large ones (over 16 KB) go out as buffers
        // of their own: the order on the wire must stay the order of the pipeline, round after round.
        let redis = try client()
        let k = key()
        let big = [UInt8](repeating: 0xAB, count: 40_000)
        let bigText = String(repeating: "z", count: 20_000)
        let commands = [
            RedisCommand("SET", k + ":a", "small"),
            RedisCommand("SET", k + ":b", big),
            RedisCommand("GET", k + ":a"),
            RedisCommand("SET", arguments: [k + ":c", bigText, "PX", 60_000]),
            RedisCommand("GET", k + ":b"),
            RedisCommand("GET", k + ":c"),
            RedisCommand("PING"),
        ]
        for round in 0..<5 {
            let replies = try await redis.pipeline(commands)
            #expect(replies.count == commands.count)
            #expect(replies[0].string == "OK" && replies[1].string == "OK" && replies[3].string == "OK", "round \(round)")
            #expect(replies[2].string == "small", "round \(round)")
            #expect(replies[4].bytes == big, "round \(round)")
            #expect(replies[5].string == bigText, "round \(round)")
            #expect(replies[6].string == "PONG", "round \(round)")
        }
        #expect(try await redis.del([k + ":a", k + ":b", k + ":c"]) == 3)
        await redis.close()
    }

    @Test func serverErrorsAreTyped() async throws {
        let redis = try client()
        let k = key()
        _ = try await redis.send(["LPUSH", k, "x"])
        do {
            _ = try await redis.send(["INCR", k])
            Issue.record("INCR on a list succeeded")
        } catch {
            #expect(error.kind == .server)
            #expect(error.serverCode == "WRONGTYPE")
            #expect(error.serverError?.message.hasPrefix("WRONGTYPE") == true)
            #expect(error.fix != nil)
            #expect(error.polyglotError.code == .engineFailure)
        }
        await #expect(throws: RedisError.self) { try await redis.send(["NOSUCHCOMMAND"]) }
        await #expect(throws: RedisError.self) { try await redis.send([]) }
        // The connection is still good after errors.
        #expect(try await redis.del(k))
        await redis.close()
    }

    @Test func valueOverTheLimitIsRefusedBeforeSending() async throws {
        let redis = try client { $0.maxValueBytes = 1024 }
        let k = key()
        do {
            try await redis.set(k, [UInt8](repeating: 1, count: 1025))
            Issue.record("an oversized value was sent")
        } catch {
            #expect(error.kind == .valueTooLarge)
            #expect(error.polyglotError.code == .limitExceeded)
        }
        // In a pipeline too: nothing of it is sent.
        await #expect(throws: RedisError.self) {
            try await redis.pipeline([RedisCommand("SET", k, "small"), RedisCommand("SET", k, [UInt8](repeating: 1, count: 2000))])
        }
        #expect(try await redis.exists(k) == false)
        try await redis.set(k, [UInt8](repeating: 1, count: 1024))
        #expect(try await redis.get(k)?.readableBytes == 1024)
        try await redis.del(k)
        await redis.close()
    }

    @Test func pipelineKeepsOrderAndErrorsStayValues() async throws {
        let redis = try client()
        let k = key()
        let replies = try await redis.pipeline([
            RedisCommand("SET", k, "1"), RedisCommand("INCR", k), RedisCommand("LPUSH", k, "x"), RedisCommand("GET", k), RedisCommand("DEL", k),
        ])
        #expect(replies.count == 5)
        #expect(replies[0] == .simpleString("OK"))
        #expect(replies[1] == .integer(2))
        #expect(replies[2].serverError?.code == "WRONGTYPE")
        #expect(replies[3].int == 2)
        #expect(replies[4] == .integer(1))
        await redis.close()
    }

    /// Many tasks on one connection: every reply reaches the task that sent its command.
    @Test func concurrentCommandsOnOneConnectionArePipelined() async throws {
        let redis = try client { $0.poolSize = 1 }
        let prefix = key()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<50 {
                group.addTask {
                    for i in 0..<40 {
                        let k = "\(prefix):\(t):\(i)"
                        try await redis.set(k, "\(t)-\(i)")
                        let v = try await redis.getString(k)
                        #expect(v == "\(t)-\(i)")
                        let batch = try await redis.pipeline([RedisCommand("GET", k), RedisCommand("DEL", k)])
                        #expect(batch == [.bulkString(ByteBuffer(string: "\(t)-\(i)")), .integer(1)])
                    }
                }
            }
            try await group.waitForAll()
        }
        await redis.close()
    }

    /// Tasks running on the connections' event loop (``RedisEventLoopExecutor``): many of them sharing two connections
    /// get every reply in order (their commands are coalesced into one write per loop tick), and a connection the
    /// server closed fails a command sent on it with a typed error, without hanging.
    @Test func tasksOnTheConnectionsEventLoop() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let redis = try client {
            $0.eventLoopGroup = loop
            $0.poolSize = 2
        }
        let executor = RedisEventLoopExecutor(eventLoop: loop)
        let prefix = key()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<20 {
                group.addTask(executorPreference: executor) {
                    for i in 0..<30 {
                        #expect(loop.inEventLoop)
                        let k = "\(prefix):\(t):\(i)"
                        try await redis.set(k, "\(t)-\(i)")
                        #expect(try await redis.getString(k) == "\(t)-\(i)")
                        let batch = try await redis.pipeline([RedisCommand("INCR", "\(k):n"), RedisCommand("GET", k), RedisCommand("DEL", k, "\(k):n")])
                        #expect(batch == [.integer(1), .bulkString(ByteBuffer(string: "\(t)-\(i)")), .integer(2)])
                    }
                }
            }
            try await group.waitForAll()
        }

        // A connection the server kills: a command sent on it from the loop fails typed, it does not hang.
        try await withTaskExecutorPreference(executor) {
            let conn = try await redis.connection()
            let id = try #require(try await conn.send(["CLIENT", "ID"]).int)
            let other = try client()
            _ = try await other.send(["CLIENT", "KILL", "ID", "\(id)"])
            await other.close()
            let deadline = ContinuousClock.now + .seconds(10)
            while conn.isOpen && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(!conn.isOpen)
            do {
                _ = try await conn.send(["PING"])
                Issue.record("a killed connection answered")
            } catch let error as RedisError {
                #expect(error.kind == .connectionClosed || error.kind == .closed)
            }
            // The pool replaces it on the next command.
            try await redis.ping()
        }
        await redis.close()
    }

    /// MULTI/EXEC in one pipeline is atomic even while other tasks send on the same connection: their commands
    /// never land between MULTI and EXEC.
    @Test func multiExecInAPipelineIsNotInterleaved() async throws {
        let redis = try client { $0.poolSize = 1 }
        let k = key()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask { for _ in 0..<20 { _ = try await redis.send(["GET", k + ":other"]) } }
            }
            for i in 0..<50 {
                let replies = try await redis.pipeline([RedisCommand("MULTI"), RedisCommand("INCR", k), RedisCommand("INCR", k), RedisCommand("EXEC")])
                #expect(replies[0] == .simpleString("OK"))
                #expect(replies[1] == .simpleString("QUEUED") && replies[2] == .simpleString("QUEUED"))
                #expect(replies[3] == .array([.integer(Int64(2 * i + 1)), .integer(Int64(2 * i + 2))]))
            }
            try await group.waitForAll()
        }
        try await redis.del(k)
        await redis.close()
    }

    @Test func scriptsUseEvalshaAndFallBackToEval() async throws {
        let redis = try client()
        let k = key()
        let source = "return redis.call('INCRBY', KEYS[1], ARGV[1]) -- \(UUID().uuidString)"
        let script = redis.script(source)
        // The server computes the same SHA-1.
        #expect(try await redis.send(["SCRIPT", "EXISTS", script.sha1]).array == [.integer(0)])
        #expect(try await script.run(keys: [k], args: [5]).int == 5)   // NOSCRIPT, then EVAL
        #expect(try await redis.send(["SCRIPT", "EXISTS", script.sha1]).array == [.integer(1)])
        #expect(try await script.run(keys: [k], args: [2]).int == 7)   // EVALSHA
        let loaded = try await redis.send(["SCRIPT", "LOAD", source]).string
        #expect(loaded == script.sha1)
        // An error the script raises is a typed server error.
        let failing = redis.script("return redis.error_reply('BADTHING it broke')")
        do {
            _ = try await failing.run()
            Issue.record("the script's error was not thrown")
        } catch {
            #expect(error.serverCode == "BADTHING")
        }
        try await redis.del(k)
        await redis.close()
    }

    @Test func aclUserAuthAndSelect() async throws {
        let admin = try client()
        let user = "polyglot_test_\(UInt32.random(in: 0...UInt32.max))"
        _ = try await admin.send(["ACL", "SETUSER", user, "on", ">s3cret pass", "~*", "+@all"])
        let url = try #require(RedisServers.main)
        let host = url.replacingOccurrences(of: "redis://", with: "")
        let k = key()
        for proto in ["2", "3"] {
            let authed = try RedisClient(url: "redis://\(user):s3cret%20pass@\(host)/5?protocol=\(proto)")
            try await authed.set(k, "in db 5")
            #expect(try await authed.send(["ACL", "WHOAMI"]).string == user)
            #expect(try await admin.get(k) == nil)   // db 0
            let db5 = try RedisClient(url: "redis://\(host)/5")
            #expect(try await db5.getString(k) == "in db 5")
            try await authed.del(k)
            await authed.close()
            await db5.close()

            let wrong = try RedisClient(url: "redis://\(user):wrong@\(host)?protocol=\(proto)")
            do {
                try await wrong.ping()
                Issue.record("a wrong password was accepted")
            } catch {
                #expect(error.kind == .authenticationFailed)
                #expect(error.serverCode == "WRONGPASS")
            }
            await wrong.close()
        }
        _ = try await admin.send(["ACL", "DELUSER", user])
        await admin.close()
    }

    @Test func resp3Replies() async throws {
        let redis = try client { $0.protocolVersion = .resp3 }
        let k = key()
        _ = try await redis.send(["HSET", k, "a", "1", "b", "2"])
        let all = try await redis.send(["HGETALL", k])
        guard case .map = all else { Issue.record("HGETALL in RESP3 is not a map: \(all)"); return }
        let pairs = try #require(all.pairs)
        #expect(Dictionary(uniqueKeysWithValues: pairs.map { ($0.key.string ?? "", $0.value.string ?? "") }) == ["a": "1", "b": "2"])
        _ = try await redis.send(["ZADD", k + "z", "1.5", "m"])
        #expect(try await redis.send(["ZSCORE", k + "z", "m"]) == .double(1.5))
        #expect(try await redis.get(k + "missing") == nil)
        try await redis.del([k, k + "z"])
        await redis.close()

        // RESP2 gives the same data as a flat array.
        let resp2 = try client()
        _ = try await resp2.send(["HSET", k, "a", "1"])
        #expect(try await resp2.send(["HGETALL", k]).pairs?.first?.value.string == "1")
        #expect(try await resp2.send(["ZADD", k + "z", "2.5", "m"]).int == 1)
        #expect(try await resp2.send(["ZSCORE", k + "z", "m"]).double == 2.5)
        try await resp2.del([k, k + "z"])
        await resp2.close()
    }

    @Test func badConfigurationIsATypedError() throws {
        #expect(throws: RedisError.self) { try RedisClient(configuration: RedisConfiguration(poolSize: 0)) }
        #expect(throws: RedisError.self) { try RedisClient(configuration: RedisConfiguration(port: 70000)) }
        #expect(throws: RedisError.self) { try RedisClient(url: "memcached://x") }
        #expect(throws: RedisError.self) {
            try RedisClient(configuration: RedisConfiguration(tls: .trusting(caFile: "/nonexistent/ca.pem")))
        }
    }

    @Test func connectFailureIsTypedAndFast() async throws {
        // A port nothing listens on (bound and closed, so it is free).
        let redis = try RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: 1, connectTimeout: .seconds(2)))
        do {
            try await redis.ping()
            Issue.record("connected to port 1")
        } catch {
            #expect(error.kind == .connectFailed)
            #expect(error.isRetryable)
        }
        // Within the backoff the client does not try again; it fails at once.
        do {
            try await redis.ping()
            Issue.record("connected to port 1")
        } catch {
            #expect(error.kind == .unavailable || error.kind == .connectFailed)
        }
        await redis.close()
        do {
            try await redis.ping()
            Issue.record("a closed client sent a command")
        } catch {
            #expect(error.kind == .closed)
        }
    }
}
