// Faults on a real server (memcachedfault): killed mid-pipeline, stopped, frozen. Every pending request fails
// with a typed error, none hangs, and the pool recovers when the server is back.
import Foundation
import Polyglot
import PolyglotMemcached
import PolyglotTesting
import Testing

@Suite(.serialized) struct MemcachedFaultTests {
    static let server = "memcachedfault"

    func faultURL() throws -> String {
        let url = MemcachedServers.fault
        try #require(!url.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.faultVariable)))
        return url
    }

    @discardableResult
    /// Retries `body` until it succeeds, for at most `seconds` (the server was just restarted).
    func eventually<T>(_ seconds: Int = 15, _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            do { return try await body() } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    @Test(.timeLimit(.minutes(2))) func killedMidPipelineFailsEveryPendingRequestTypedAndThePoolRecovers() async throws {
        let url = try faultURL()
        let mc = try MemcachedServers.client(url, poolSize: 2, commandTimeout: .seconds(10))
        defer { Task { await mc.shutdown() } }
        _ = try await eventually { try await mc.version() }
        let value = Data(count: 64 * 1024)
        // 100 tasks keep requests in flight (pipelined on the 2 connections) until each sees the server die.
        let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
            for t in 0..<100 {
                group.addTask {
                    for i in 0..<100_000 {
                        do {
                            try await mc.set("fault:\(t):\(i % 10)", value)
                            _ = try await mc.get("fault:\(t):\(i % 10)")
                        } catch let e as MemcachedError {
                            return e.isRetryable ? "typed" : "unexpected \(e)"
                        } catch {
                            return "untyped \(error)"
                        }
                    }
                    return "never interrupted"
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            try await MemcachedServers.control(Self.server, "kill")
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(outcomes.count == 100, "some tasks never finished")
        #expect(outcomes.allSatisfy { $0 == "typed" }, "\(Set(outcomes))")
        // While the server is down requests fail fast and typed.
        do {
            _ = try await mc.get("fault:1")
            Issue.record("a request succeeded with the server down")
        } catch let e as MemcachedError {
            #expect([.connectFailed, .connectionClosed].contains(e.kind), "\(e)")
        }
        try await MemcachedServers.control(Self.server, "start")
        _ = try await eventually { try await mc.set("fault:back", Data("1".utf8)) }
        // Every connection of the pool works again.
        for _ in 0..<10 { #expect(try await mc.get("fault:back")?.value == Data("1".utf8)) }
    }

    @Test(.timeLimit(.minutes(2))) func aFrozenServerTimesOutTypedAndThePoolRecovers() async throws {
        let url = try faultURL()
        let mc = try MemcachedServers.client(url, poolSize: 1, commandTimeout: .milliseconds(500))
        defer { Task { await mc.shutdown() } }
        try await eventually { try await mc.set("frozen", Data("x".utf8)) }
        try await MemcachedServers.control(Self.server, "pause")
        let errors = try await withThrowingTaskGroup(of: MemcachedError?.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do { _ = try await mc.get("frozen"); return nil } catch let e as MemcachedError { return e }
                }
            }
            return try await group.reduce(into: [MemcachedError?]()) { $0.append($1) }
        }
        try await MemcachedServers.control(Self.server, "resume")
        #expect(errors.allSatisfy { $0?.kind == .timeout }, "\(errors)")
        #expect(try await eventually { try await mc.get("frozen")?.value } == Data("x".utf8))
    }

    @Test(.timeLimit(.minutes(2))) func theEngineReportsAStoppedServerAndRecoversAfterRestart() async throws {
        let url = try faultURL()
        try await eventually { try await MemcachedServers.client(url).version() }
        let spec = MemcachedServers.engine(url, name: "cache", options: ["commandTimeout": "2s", "connectTimeout": "1s"])
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: ":memory:"), spec],
                          datasets: [DatasetSpec(name: "kv", model: .keyValue, engine: "cache"),
                                     DatasetSpec(name: "items", model: .documents, engine: "primary", projections: [.cache(on: "cache")])])
        let db = try await Polyglot(map: map, registry: MemcachedServers.registry)
        let kv = try db.keyValue("kv")
        try await kv.set("a", "1")
        try await MemcachedServers.control(Self.server, "stop")
        for _ in 0..<3 {
            let e = await expectPolyglotError(.engineUnavailable) { _ = try await kv.get("a") }
            #expect(e?.isRetryable == true)
            #expect(e?.message.contains("memcached") == true)
        }
        await expectPolyglotError(.engineUnavailable) { _ = try await kv.increment("n") }
        await expectPolyglotError(.engineUnavailable) { _ = try await kv.scan() }
        await expectPolyglotError(.engineUnavailable) { try await db.engine("cache").ping() }
        try await MemcachedServers.control(Self.server, "start")
        // memcached keeps nothing on disk: the restarted server is empty, and the engine works again.
        #expect(try await eventually { try await kv.get("a") } == nil)
        try await kv.set("a", "2")
        #expect(try await kv.getString("a") == "2")
        let items = try db.documents("items")
        try await items.put("d", ["v": 1])
        #expect(try await items.get("d")?.json()["v"] == 1)
        try await db.close()
    }
}
