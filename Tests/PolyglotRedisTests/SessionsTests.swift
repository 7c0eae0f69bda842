import Foundation
import Polyglot
import PolyglotRedis
import PolyglotTesting
import Testing

@Suite struct RedisSessionsTests {
    @Test func createReadUpdateRemoveDestroy() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let sessions = try redis.sessions("web", ttl: .seconds(60))
        let id = try await sessions.create(["user": "42", "crlf": "a\r\nb"])
        #expect(id.count == 32)
        #expect(try await sessions.get(id) == ["user": Data("42".utf8), "crlf": Data("a\r\nb".utf8)])
        #expect(try await sessions.set(id, ["cart": "3 items"]))
        #expect(try await sessions.string(id, "cart") == "3 items")
        #expect(try await sessions.remove(id, fields: ["cart", "missing"]) == 1)
        #expect(try await sessions.get(id)?.keys.sorted() == ["crlf", "user"])
        #expect(try await sessions.destroy(id))
        #expect(try await sessions.get(id) == nil)
        #expect(try await !sessions.set(id, ["user": "x"]), "set does not create a session")
        #expect(try await sessions.get(id) == nil)
        #expect(try await sessions.remove(id, fields: ["user"]) == nil)
        let empty = try await sessions.create()
        #expect(try await sessions.get(empty) == [:], "a session without fields still exists")
        #expect(try await !sessions.create(id: empty, [:]), "create never overwrites")
    }

    @Test func readsAndWritesSlideTheTTL() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let sessions = try redis.sessions("web", ttl: .seconds(100))
        let id = try await sessions.create(["a": "1"])
        // Shorten the TTL behind the engine's back, then see each kind of use restore it.
        for use in ["get", "set", "remove", "touch"] {
            _ = try await redis.client.send("PEXPIRE", redis.keyPrefix + "s:web:" + id, 5000)
            switch use {
            case "get": _ = try await sessions.get(id)
            case "set": try await sessions.set(id, ["b": "2"])
            case "remove": try await sessions.remove(id, fields: ["b"])
            default: try await sessions.touch(id)
            }
            let left = try #require(try await sessions.expiresIn(id))
            #expect(left > .seconds(90), "\(use) did not slide the TTL: \(left)")
        }
    }

    @Test func sessionsExpireWhenUnused() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let sessions = try redis.sessions("short", ttl: .milliseconds(300))
        let id = try await sessions.create(["a": "1"])
        try await Task.sleep(for: .milliseconds(700))
        #expect(try await sessions.get(id) == nil)
    }

    @Test func badInputIsRefused() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        _ = await expectPolyglotError(.invalidArgument) { _ = try redis.sessions("a:b", ttl: .seconds(1)) }
        _ = await expectPolyglotError(.invalidArgument) { _ = try redis.sessions("web", ttl: .zero) }
        let sessions = try redis.sessions("web", ttl: .seconds(10))
        _ = await expectPolyglotError(.invalidArgument) { _ = try await sessions.get("") }
        _ = await expectPolyglotError(.invalidArgument) { _ = try await sessions.create(["": "x"]) }
        _ = await expectPolyglotError(.invalidArgument) { _ = try await sessions.create(["\u{0}created": "x"]) }
    }
}
