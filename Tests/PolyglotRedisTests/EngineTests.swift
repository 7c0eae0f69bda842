import Foundation
import Polyglot
import PolyglotRedis
import PolyglotTesting
import Testing

/// Opens a `Polyglot` with one Redis engine named `redis` (fresh key prefix) and a keyValue dataset `kv` on it.
func openRedisKeyValue(options: [String: String] = [:], dataset: DatasetSpec? = nil) async throws -> (Polyglot, RedisEngine) {
    let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
    let map = DataMap(engines: [RedisEngineFixture.engine(url, name: "redis", options: options)],
                      datasets: [dataset ?? DatasetSpec(name: "kv", model: .keyValue, engine: "redis")])
    let db = try await Polyglot(map: map, registry: RedisEngineFixture.registry)
    let engine = try #require(try db.engine("redis") as? RedisEngine)
    return (db, engine)
}

func expectPolyglotError(_ code: PolyglotError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> PolyglotError? {
    do {
        try await body()
        Issue.record("expected a \(code) error, but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let e as PolyglotError {
        #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
        #expect(e.fix != nil, "the error should say what to do: \(e)", sourceLocation: sourceLocation)
        return e
    } catch {
        Issue.record("expected a PolyglotError \(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite struct RedisEngineTests {
    @Test func keysAndValuesRoundTripExactly() async throws {
        let (db, _) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let kv = try db.keyValue("kv")
        let values: [Data] = [Data(), Data("\r\n".utf8), Data([0, 13, 10, 0, 255, 254]), Data("a\r\nb\r\n$3\r\n*1\r\n".utf8),
                              Data((0..<70_000).map { UInt8($0 % 256) })]
        let keys = ["plain", "crlf\r\nkey", "nul\u{0}key", "uni ✓ 🙂", "glob*?[]\\", " spaced "]
        for key in keys {
            for value in values {
                try await kv.set(key, value)
                #expect(try await kv.get(key) == value, "key \(key.debugDescription), \(value.count) bytes")
            }
        }
        let all = try await kv.scan(limit: 100)
        #expect(Set(all.map(\.key)) == Set(keys))
        #expect(all.allSatisfy { $0.value == values.last })
    }

    @Test func scanEscapesGlobCharactersAndPagesInByteOrder() async throws {
        let (db, _) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let kv = try db.keyValue("kv")
        for k in ["a*b:1", "a*b:2", "axb:1", "a?b", "a[b]", "a\\b", "b", "é", "z"] { try await kv.set(k, k) }
        #expect(try await kv.scan(prefix: "a*b").map(\.key) == ["a*b:1", "a*b:2"])
        #expect(try await kv.scan(prefix: "a?").map(\.key) == ["a?b"])
        #expect(try await kv.scan(prefix: "a[").map(\.key) == ["a[b]"])
        #expect(try await kv.scan(prefix: "a\\").map(\.key) == ["a\\b"])
        let all = try await kv.scan().map(\.key)
        #expect(all == ["a*b:1", "a*b:2", "a?b", "a[b]", "a\\b", "axb:1", "b", "z", "é"], "byte order: \(all)")
        let page = try await kv.scan(after: "b", limit: 2).map(\.key)
        #expect(page == ["z", "é"])
    }

    @Test func incrementKeepsTheTTLAndFollowsTheCounterRules() async throws {
        let (db, engine) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let kv = try db.keyValue("kv")
        #expect(try await kv.increment("n", by: 5, ttl: .seconds(100)) == 5)
        #expect(try await kv.increment("n", by: 5, ttl: .seconds(1)) == 10)
        let ttl = try await engine.client.send("PTTL", engine.keyPrefix + "kv:kv:n").int ?? -1
        #expect(ttl > 50_000, "the TTL set at creation is kept, not replaced: \(ttl)")
        try await kv.set("plus", "+5")
        #expect(try await kv.increment("plus") == 6, "the shared counter rule accepts +5")
        try await kv.set("max", String(Int64.max))
        _ = await expectPolyglotError(.invalidArgument) { _ = try await kv.increment("max") }
        #expect(try await kv.getString("max") == String(Int64.max))
        try await kv.set("text", "hello")
        _ = await expectPolyglotError(.conflict) { _ = try await kv.increment("text") }
        #expect(try await kv.getString("text") == "hello")
    }

    @Test func anOversizedValueIsRefusedBeforeItIsSent() async throws {
        let (db, engine) = try await openRedisKeyValue(options: ["maxValueBytes": "1KB"],
                                                       dataset: DatasetSpec(name: "kv", model: .keyValue, engine: "redis", maxValueBytes: 1 << 20))
        defer { Task { try? await db.close() } }
        let kv = try db.keyValue("kv")
        try await kv.set("ok", Data(count: 1024))
        let e = await expectPolyglotError(.limitExceeded) { try await kv.set("big", Data(count: 1025)) }
        #expect(e?.message.contains("1024") == true && e?.message.contains("maxValueBytes") == true, "\(String(describing: e))")
        #expect(try await kv.get("big") == nil)
        #expect(try await engine.client.send("EXISTS", engine.keyPrefix + "kv:kv:big").int == 0, "nothing was written")
        #expect(try await kv.scan().map(\.key) == ["ok"])
    }

    /// getMany reads in MGET chunks of 1,000 keys; setMany is all or nothing: an oversized value among the entries
    /// refuses the whole call before anything is sent, and with a TTL every entry gets it.
    @Test func getManyAndSetManyGoInBulkAndAllOrNothing() async throws {
        let (db, engine) = try await openRedisKeyValue(options: ["maxValueBytes": "1KB"])
        defer { Task { try? await db.close() } }
        let store = try engine.keyValueStore(for: db.map.datasets[0])
        // The server's own command counts (other tests share it, so at least, not exactly).
        func calls(_ command: String) async throws -> Int {
            let info = try #require(try await engine.client.send("INFO", "commandstats").string)
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_\(command):calls=") }
            return line.flatMap { Int($0.dropFirst("cmdstat_\(command):calls=".count).prefix { $0.isNumber }) } ?? 0
        }
        let (msetBefore, mgetBefore) = (try await calls("mset"), try await calls("mget"))
        let entries = (0..<2500).map { (key: "k\($0)", value: Data("v\($0)".utf8)) }
        try await store.setMany(entries, ttl: nil)
        let all = try await store.getMany(entries.map(\.key) + ["missing"])
        #expect(all.count == 2500 && all["k0"] == Data("v0".utf8) && all["k2499"] == Data("v2499".utf8) && all["missing"] == nil)
        let (msets, mgets) = (try await calls("mset") - msetBefore, try await calls("mget") - mgetBefore)
        #expect(msets >= 1 && mgets >= 3, "setMany and getMany did not go in bulk: \(msets) MSET, \(mgets) MGET")
        let e = await expectPolyglotError(.limitExceeded) {
            try await store.setMany([("fits", Data(count: 10)), ("big", Data(count: 1025))], ttl: .seconds(60))
        }
        #expect(e?.message.contains("'big'") == true, "\(String(describing: e))")
        #expect(try await store.getMany(["fits", "big"]).isEmpty, "a refused setMany wrote something")
        try await store.setMany([("t1", Data("a".utf8)), ("t2", Data("b".utf8))], ttl: .seconds(60))
        for k in ["t1", "t2"] {
            let ms = try #require(try await engine.client.send("PTTL", engine.keyPrefix + "kv:kv:" + k).int)
            #expect(ms > 50_000 && ms <= 60_000, "\(k): PTTL \(ms)")
        }
    }

    @Test func wrongTypeIsATypedConflict() async throws {
        let (db, engine) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let kv = try db.keyValue("kv")
        _ = try await engine.client.send("HSET", engine.keyPrefix + "kv:kv:h", "field", "value")
        let e = await expectPolyglotError(.conflict) { _ = try await kv.get("h") }
        #expect(e?.message.contains("WRONGTYPE") == true, "the server's message is carried: \(String(describing: e))")
        _ = await expectPolyglotError(.conflict) { _ = try await kv.increment("h") }
        // The store's getMany too (MGET alone answers nil for such a key, as for a missing one), and scan.
        let store = try engine.keyValueStore(for: db.map.datasets[0])
        try await kv.set("s", Data("string".utf8))
        let many = await expectPolyglotError(.conflict) { _ = try await store.getMany(["s", "missing", "h"]) }
        #expect(many?.message.contains("kv:kv:h is a hash") == true, "the key and its type are named: \(String(describing: many))")
        #expect(try await store.getMany(["s", "missing"]) == ["s": Data("string".utf8)])
        _ = await expectPolyglotError(.conflict) { _ = try await kv.scan(prefix: "") }
        #expect(try await engine.client.send("TYPE", engine.keyPrefix + "kv:kv:h").string == "hash", "a failed call changed nothing")
    }

    @Test func badOptionsAreClearErrors() async throws {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        let cases: [(String?, [String: String], String)] = [
            (nil, [:], "url"),
            ("http://127.0.0.1:1", [:], "redis://"),
            (url, ["poolSize": "0"], "poolSize"),
            (url, ["poolSize": "many"], "poolSize"),
            (url, ["lockTimeout": "soon"], "lockTimeout"),
            (url, ["maxValueBytes": "1TB"], "maxValueBytes"),
            (url, ["keyPrefix": "a*"], "keyPrefix"),
            (url, ["poolsize": "4"], "poolsize"),
            (url, ["tlsCA": "/nonexistent/ca.pem"], "tlsCA"),
        ]
        for (u, options, word) in cases {
            let map = DataMap(engines: [EngineSpec(name: "redis", kind: "redis", url: u, options: options)], datasets: [])
            let e = await expectPolyglotError(.invalidDataMap) { _ = try await Polyglot(map: map, registry: RedisEngineFixture.registry) }
            #expect(e?.message.contains(word) == true, "\(String(describing: e))")
        }
    }

    @Test func datasetNamesWithSeparatorsAreRefused() async throws {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        let map = DataMap(engines: [RedisEngineFixture.engine(url, name: "redis")],
                          datasets: [DatasetSpec(name: "a:b", model: .keyValue, engine: "redis")])
        _ = await expectPolyglotError(.invalidDataMap) { _ = try await Polyglot(map: map, registry: RedisEngineFixture.registry) }
    }

    @Test func anUnreachableServerIsARetryableUnavailableError() async throws {
        let (db, _) = try await openRedisKeyValue()
        try await db.close()
        // A port nothing listens on.
        let map = DataMap(engines: [EngineSpec(name: "redis", kind: "redis", url: "redis://127.0.0.1:1", options: ["connectTimeout": "500ms"])],
                          datasets: [DatasetSpec(name: "kv", model: .keyValue, engine: "redis")])
        let down = try await Polyglot(map: map, registry: RedisEngineFixture.registry)
        defer { Task { try? await down.close() } }
        let e = await expectPolyglotError(.engineUnavailable) { _ = try await down.keyValue("kv").get("a") }
        #expect(e?.isRetryable == true)
    }
}
