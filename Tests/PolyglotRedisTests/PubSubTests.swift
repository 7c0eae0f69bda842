import Foundation
import NIOCore
import PolyglotTesting
import Testing
@testable import PolyglotRedis

/// Pub/sub against the real server.
@Suite struct PubSubTests {
    func client(_ proto: RedisConfiguration.ProtocolVersion = .resp2) throws -> RedisClient {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        var c = try RedisConfiguration(url: url)
        c.protocolVersion = proto
        return try RedisClient(configuration: c)
    }

    @Test(arguments: [RedisConfiguration.ProtocolVersion.resp2, .resp3])
    func channelsAndPatterns(_ proto: RedisConfiguration.ProtocolVersion) async throws {
        let redis = try client(proto)
        let tag = UUID().uuidString
        let sub = try await redis.subscribe(to: ["news.\(tag)"], patterns: ["alerts.\(tag).*"])
        #expect(sub.subscriptions.channels == ["news.\(tag)"])
        #expect(sub.subscriptions.patterns == ["alerts.\(tag).*"])
        // Subscribed means confirmed: a publish now reaches us.
        #expect(try await redis.publish("hello", to: "news.\(tag)") == 1)
        #expect(try await redis.publish([0, 13, 10, 255] as [UInt8], to: "alerts.\(tag).fire") == 1)
        try await sub.subscribe(to: ["later.\(tag)"])
        #expect(try await redis.publish("", to: "later.\(tag)") == 1)
        try await sub.unsubscribe(from: ["news.\(tag)"])
        #expect(try await redis.publish("unheard", to: "news.\(tag)") == 0)
        // Regular commands still work on the client while subscribed.
        try await redis.ping()

        var got: [RedisPubSubMessage] = []
        for try await m in sub {
            got.append(m)
            if got.count == 3 { break }
        }
        #expect(got[0] == RedisPubSubMessage(channel: "news.\(tag)", pattern: nil, payload: ByteBuffer(string: "hello")))
        #expect(got[1].channel == "alerts.\(tag).fire" && got[1].pattern == "alerts.\(tag).*")
        #expect(Array(got[1].payload.readableBytesView) == [0, 13, 10, 255])
        #expect(got[2].channel == "later.\(tag)" && got[2].payload.readableBytes == 0)
        await sub.close()
        // The server drops the subscriber when it sees the connection close, which can take a moment: wait for it (bounded).
        var receivers = try await redis.publish("after close", to: "later.\(tag)")
        for _ in 0..<200 where receivers != 0 {
            try await Task.sleep(for: .milliseconds(10))
            receivers = try await redis.publish("after close", to: "later.\(tag)")
        }
        #expect(receivers == 0, "the closed subscription still receives messages after 2 s")
        await redis.close()
    }

    /// The subscription's connection is killed: iteration ends with a typed error instead of waiting forever.
    @Test func lostConnectionEndsTheSequenceWithAnError() async throws {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        let tag = UUID().uuidString
        var c = try RedisConfiguration(url: url)
        c.clientName = "sub-\(tag)"
        let redis = try RedisClient(configuration: c)
        let sub = try await redis.subscribe(to: ["kill.\(tag)"])
        // Find the subscriber's connection by its name and kill it (only it: other tests subscribe too).
        let list = try #require(try await redis.send(["CLIENT", "LIST", "TYPE", "pubsub"]).string)
        let line = try #require(list.split(separator: "\n").first { $0.contains("name=sub-\(tag) ") })
        let id = try #require(line.split(separator: " ").first { $0.hasPrefix("id=") }.map { String($0.dropFirst(3)) })
        #expect(try await redis.send(["CLIENT", "KILL", "ID", id]).int == 1)
        do {
            for try await m in sub { Issue.record("unexpected message \(m)") }
            Issue.record("the sequence ended without an error")
        } catch let e as RedisError {
            #expect(e.kind == .connectionClosed)
        }
        await redis.close()
    }
}
