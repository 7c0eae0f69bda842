import Foundation
import NIOCore
import Polyglot
import PolyglotRedis
import PolyglotSQLite
import PolyglotTesting
import Testing

/// The `stream` projection: the relay publishes each change of a SQLite dataset to a Redis Stream, at least once,
/// with the key and version consumers de-duplicate by.
@Suite struct RedisStreamTests {
    @Test func theRelayPublishesEveryChangeToARedisStreamInOrder() async throws {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        let dir = NSTemporaryDirectory() + "polyglot-stream-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let prefix = "t\(UInt32.random(in: 0 ... .max)):"
        var registry = EngineRegistry.embedded
        registry.registerRedis()
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: dir + "/p.db"),
                                    EngineSpec(name: "bus", kind: "redis", url: url, options: ["keyPrefix": prefix])],
                          datasets: [DatasetSpec(name: "orders", model: .documents, engine: "primary",
                                                 projections: [ProjectionSpec(kind: .stream, engine: "bus")])])
        let db = try await Polyglot(map: map, registry: registry)
        let orders = try db.documents("orders")
        let t1 = try await orders.put("o1", ["total": 10])
        let t2 = try await orders.put("o1", ["total": 12])
        let t3 = try #require(try await orders.delete("o1"))
        let relay = db.relay()
        #expect(relay.copies.map(\.name) == ["orders.stream@bus"])
        #expect(try await relay.catchUp() == 3)
        #expect(try await relay.catchUp() == 0)   // the checkpoint (on the source) moved past them

        let redis = try #require(try db.engine("bus") as? RedisEngine)
        let reply = try await redis.client.send(["XRANGE", prefix + "x:orders", "-", "+"])
        guard case .array(let entries) = reply else { Issue.record("XRANGE returned \(reply)"); return }
        var seen: [[String: String]] = []
        for entry in entries {
            guard case .array(let pair) = entry, pair.count == 2, case .array(let fields) = pair[1] else { continue }
            var f: [String: String] = [:]
            for i in stride(from: 0, to: fields.count - 1, by: 2) {
                if case .bulkString(let k) = fields[i], case .bulkString(let v) = fields[i + 1] { f[String(buffer: k)] = String(buffer: v) }
            }
            seen.append(f)
        }
        #expect(seen.map { $0["op"] } == ["put", "put", "delete"])
        #expect(seen.map { $0["version"] } == [t1, t2, t3].map { String($0.position) })
        #expect(seen.allSatisfy { $0["dataset"] == "orders" && $0["key"] == "o1" })
        #expect(try JSON(parsing: Data((seen[1]["payload"] ?? "").utf8))["total"] == 12)
        #expect(seen[2]["payload"] == nil)
        _ = try await redis.client.send(["DEL", prefix + "x:orders"])
        try await db.close()
    }
}
