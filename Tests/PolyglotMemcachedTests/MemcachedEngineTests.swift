// The memcached engine through the Polyglot facade: bad input, key encoding, limits, options, the cache.
import Foundation
import Polyglot
import PolyglotMemcached
import PolyglotTesting
import Testing

/// Opens a Polyglot with one keyValue dataset `kv` on a fresh key prefix of the main server.
func openKeyValue(options: [String: String] = [:], maxKeyBytes: Int = 512, maxValueBytes: Int = 1 << 20) async throws -> Polyglot {
    try #require(!MemcachedServers.main.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.mainVariable)))
    let map = DataMap(engines: [MemcachedServers.engine(options: options)],
                      datasets: [DatasetSpec(name: "kv", model: .keyValue, engine: "subject", maxKeyBytes: maxKeyBytes, maxValueBytes: maxValueBytes)])
    return try await Polyglot(map: map, registry: MemcachedServers.registry)
}

@Suite struct MemcachedEngineTests {
    @Test func binaryCRLFAndOddKeysAndValuesRoundTrip() async throws {
        let db = try await openKeyValue(maxKeyBytes: 2048)
        let kv = try db.keyValue("kv")
        let keys = ["plain", "with space", "crlf\r\nEND\r\n", "tab\tnul\u{0}del\u{7F}", "percent%41%", "ünïcødé ✓", "slash/and:colon",
                    String(repeating: "long-", count: 60), String(repeating: "é", count: 400), "k:fake", "h:0000"]
        let values: [Data] = [Data(), Data([0, 13, 10, 0]), Data("\r\nEND\r\n".utf8), Data((0..<256).map { UInt8($0) }), Data("VALUE x 0 3\r\n".utf8)]
        for (i, key) in keys.enumerated() {
            let value = values[i % values.count]
            try await kv.set(key, value)
            #expect(try await kv.get(key) == value, "key \(key.debugDescription)")
        }
        // getMany (one multi-key gets) finds the same, hashed long keys included.
        let store = try db.engine("subject").keyValueStore(for: db.map.datasets[0])
        let many = try await store.getMany(keys + ["absent"])
        #expect(many.count == keys.count, "getMany found \(many.keys.sorted())")
        for (i, key) in keys.enumerated() { #expect(many[key] == values[i % values.count], "getMany of \(key.debugDescription)") }
        let scanned = try await kv.scan(limit: 100)
        #expect(scanned.map(\.key) == keys.sorted(), "scan gave \(scanned.map(\.key))")
        for (i, e) in scanned.enumerated() { #expect(e.value == values[keys.firstIndex(of: e.key)! % values.count], "entry \(i)") }
        // Prefixes of encoded and hashed keys.
        #expect(try await kv.scan(prefix: "long-").map(\.key) == [String(repeating: "long-", count: 60)])
        #expect(try await kv.scan(prefix: "é").count == 1)
        #expect(try await kv.scan(prefix: "crlf\r\n").count == 1)
        for key in keys { #expect(try await kv.delete(key)) }
        #expect(try await kv.scan().isEmpty)
        // Empty keys are refused with a typed error.
        await expectPolyglotError(.invalidArgument) { try await kv.set("", "v") }
        try await db.close()
    }

    @Test func oversizedValuesAreRefusedBeforeSendingAndNothingChanges() async throws {
        let db = try await openKeyValue(options: ["maxValueBytes": "1KB"])
        let kv = try db.keyValue("kv")
        try await kv.set("k", "before")
        let e = await expectPolyglotError(.limitExceeded) { try await kv.set("k", Data(count: 1024)) }
        #expect(e?.message.contains("maxValueBytes") == true)
        #expect(try await kv.getString("k") == "before", "a refused write changed the stored value")
        await expectPolyglotError(.limitExceeded) { try await kv.set("new", Data(count: 5000)) }
        #expect(try await kv.get("new") == nil)
        try await kv.set("fits", Data(count: 1000))
        try await db.close()

        // With the default limit, a 1 MiB value (the dataset's own limit) is refused by the engine, not the server.
        let db2 = try await openKeyValue()
        let kv2 = try db2.keyValue("kv")
        try await kv2.set("k", "before")
        await expectPolyglotError(.limitExceeded) { try await kv2.set("k", Data(count: 1 << 20)) }
        #expect(try await kv2.getString("k") == "before")
        try await kv2.set("k", Data(count: (1 << 20) - 1024 - 24))
        #expect(try await kv2.get("k")?.count == (1 << 20) - 1024 - 24)
        try await db2.close()
    }

    @Test func serverItemLimitIsATypedError() async throws {
        // An engine configured above the server's -I limit gets memcached's SERVER_ERROR as limitExceeded.
        let db = try await openKeyValue(options: ["maxValueBytes": "2MB"], maxValueBytes: 4 << 20)
        let kv = try db.keyValue("kv")
        let e = await expectPolyglotError(.limitExceeded) { try await kv.set("k", Data(count: (1 << 20) + 10)) }
        #expect(e?.message.contains("object too large") == true, "\(String(describing: e))")
        try await db.close()
    }

    @Test func incrementRules() async throws {
        let db = try await openKeyValue()
        let kv = try db.keyValue("kv")
        try await kv.set("text", "12a")
        await expectPolyglotError(.conflict) { _ = try await kv.increment("text") }
        #expect(try await kv.getString("text") == "12a")
        try await kv.set("max", String(Int64.max))
        await expectPolyglotError(.invalidArgument) { _ = try await kv.increment("max") }
        #expect(try await kv.increment("neg", by: -5) == -5)
        // The TTL of an existing key is kept; a new key takes the given one.
        try await kv.set("ttl", "1", ttl: .seconds(100))
        #expect(try await kv.increment("ttl", by: 1, ttl: .seconds(5000)) == 2)
        let entry = try #require(try await kv.scan(prefix: "ttl").first)
        let left = try #require(entry.expiresAt).timeIntervalSinceNow
        #expect(left > 90 && left <= 100, "increment changed the TTL: \(left)s left")
        _ = try await kv.increment("fresh", ttl: .seconds(50))
        let fresh = try #require(try await kv.scan(prefix: "fresh").first?.expiresAt).timeIntervalSinceNow
        #expect(fresh > 40 && fresh <= 50)
        // Concurrent increments from two Polyglot instances on the same keys stay exact.
        let same = DataMap(engines: [try db.engine("subject").spec], datasets: [DatasetSpec(name: "kv", model: .keyValue, engine: "subject")])
        let other = try await Polyglot(map: same, registry: MemcachedServers.registry)
        let kv2 = try other.keyValue("kv")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<100 { group.addTask { _ = try await (i % 3 == 0 ? kv2 : kv).increment("c", by: i % 2 == 0 ? 3 : -1) } }
            try await group.waitForAll()
        }
        #expect(try await kv.getString("c") == "100")
        try await other.close()
        try await db.close()
    }

    @Test func subSecondAndVeryLongTTLs() async throws {
        let db = try await openKeyValue()
        let kv = try db.keyValue("kv")
        // memcached counts whole seconds; the engine's exact expiry hides a 300 ms key after 300 ms.
        try await kv.set("short", "x", ttl: .milliseconds(300))
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await kv.get("short") == nil)
        #expect(try await !kv.delete("short"), "an expired key was reported deleted")
        #expect(try await kv.increment("short") == 1, "an expired key must count as missing")
        // 40 days (memcached's absolute exptime), 20 years (past 2038, no server expiry) and the longest ttl (100 years;
        // longer ones are refused for every engine, below).
        for (key, ttl) in [("days", Duration.seconds(40 * 86_400)), ("years", .seconds(20 * 365 * 86_400)), ("century", DataMap.longestDuration)] {
            try await kv.set(key, "v", ttl: ttl)
            #expect(try await kv.getString(key) == "v", "\(key)")
            let expires = try #require(try await kv.scan(prefix: key).first?.expiresAt)
            #expect(expires.timeIntervalSinceNow > 39 * 86_400, "\(key)")
        }
        await #expect(throws: PolyglotError.self) { try await kv.set("max", "v", ttl: .seconds(Int64.max)) }
        #expect(try await kv.get("max") == nil)
        try await db.close()
    }

    @Test func badOptionsAreClearErrors() async throws {
        let url = MemcachedServers.main
        let cases: [(EngineSpec, String)] = [
            (EngineSpec(name: "m", kind: "memcached"), "url"),
            (EngineSpec(name: "m", kind: "memcached", url: "redis://127.0.0.1:1"), "memcached://"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["poolSize": "0"]), "poolSize"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["poolSize": "many"]), "poolSize"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["commandTimeout": "soon"]), "commandTimeout"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["connectTimeout": "0s"]), "connectTimeout"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["keyPrefix": "has space"]), "keyPrefix"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["maxValueBytes": "-1"]), "maxValueBytes"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["maxValueBytes": "lots"]), "maxValueBytes"),
            (EngineSpec(name: "m", kind: "memcached", url: url, options: ["poolsize": "2"]), "poolsize"),
        ]
        for (spec, mention) in cases {
            let e = await expectPolyglotError(.invalidDataMap) { _ = try await Polyglot(map: DataMap(engines: [spec], datasets: []), registry: MemcachedServers.registry) }
            #expect(e?.message.contains(mention) == true, "\(String(describing: e)) should mention \(mention)")
        }
        // A dataset name too long for memcached keys fails at start-up, not on first use.
        let long = DataMap(engines: [MemcachedServers.engine()], datasets: [DatasetSpec(name: String(repeating: "d", count: 200), model: .keyValue, engine: "subject")])
        await expectPolyglotError(.invalidDataMap) { _ = try await Polyglot(map: long, registry: MemcachedServers.registry) }
        // An unreachable server fails at open with a retryable error.
        let closedPort = EngineSpec(name: "m", kind: "memcached", url: "memcached://127.0.0.1:1", options: ["connectTimeout": "1s"])
        let e = await expectPolyglotError(.engineUnavailable) { _ = try await Polyglot(map: DataMap(engines: [closedPort], datasets: []), registry: MemcachedServers.registry) }
        #expect(e?.isRetryable == true)
    }

    @Test func dataMapFromYAML() throws {
        let yaml = """
        engines:
          primary: { kind: sqlite, path: ":memory:" }
          cache:
            kind: memcached
            url: memcached://127.0.0.1:11211
            options: { poolSize: 4, commandTimeout: 2s, keyPrefix: "myapp:", maxValueBytes: 512KB }
        datasets:
          products: { model: documents, engine: primary, projections: [{ kind: cache, engine: cache, ttl: 5m, jitter: 0.1 }] }
          sessions: { model: keyValue, engine: cache, ttl: 30m }
        """
        let map = try DataMap(yaml: yaml)
        try map.validate(registry: MemcachedServers.registry)
        #expect(map.engines.first { $0.name == "cache" }?.options["keyPrefix"] == "myapp:")
    }
}

@Suite struct MemcachedCacheTests {
    /// Two Polyglot instances (like two processes) sharing one SQLite file and one memcached namespace.
    func openPair() async throws -> (Polyglot, Polyglot, any CacheBackend, URL) {
        try #require(!MemcachedServers.main.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.mainVariable)))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mc-cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let cache = MemcachedServers.engine(name: "cache")
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: folder.appendingPathComponent("db.sqlite").path), cache],
                          datasets: [DatasetSpec(name: "items", model: .documents, engine: "primary", projections: [.cache(on: "cache", ttl: .seconds(60))])])
        let a = try await Polyglot(map: map, registry: MemcachedServers.registry)
        let b = try await Polyglot(map: map, registry: MemcachedServers.registry)
        return (a, b, try a.cacheBackend(for: "items"), folder)
    }

    @Test func anOldFillAfterAnInvalidationNeverLands() async throws {
        let (a, b, backend, folder) = try await openPair()
        defer { try? FileManager.default.removeItem(at: folder) }
        let items = try a.documents("items")
        try await items.put("x", ["v": 1])
        let old = try #require(try await items.get("x"))
        // A slow reader in another instance started loading version 1 ...
        let started = ContinuousClock.now
        // ... meanwhile instance B writes version 2, invalidating before its put returns.
        let t2 = try await b.documents("items").put("x", ["v": 2])
        #expect(try await backend.lookup("doc\u{1F}items\u{1F}x") == nil, "the entry survived the invalidation")
        // The slow fill arrives: refused, and nothing is cached.
        #expect(try await !backend.fill("doc\u{1F}items\u{1F}x", CachedEntry(version: old.version, data: old.data), ttl: .seconds(60), jitter: 0, loadStartedAt: started))
        #expect(try await backend.lookup("doc\u{1F}items\u{1F}x") == nil)
        #expect(try await items.get("x")?.json()["v"] == 2)
        #expect(try await backend.lookup("doc\u{1F}items\u{1F}x")?.version == t2.position, "the new version was not cached")
        // A fill whose load began longer ago than a tombstone lives is refused even without a tombstone.
        #expect(try await !backend.fill("doc\u{1F}items\u{1F}y", CachedEntry(version: 99, data: Data("{}".utf8)), ttl: .seconds(60), jitter: 0,
                                        loadStartedAt: .now - .seconds(11)))
        try await a.close(); try await b.close()
    }

    @Test func concurrentFillsKeepTheNewestVersion() async throws {
        let (a, b, backend, folder) = try await openPair()
        defer { try? FileManager.default.removeItem(at: folder) }
        let backendB = try b.cacheBackend(for: "items")
        for round in 0..<5 {
            let key = "doc\u{1F}items\u{1F}race\(round)"
            let versions = (1...60).map { Int64($0) }.shuffled()
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for (i, v) in versions.enumerated() {
                    let target = i % 2 == 0 ? backend : backendB
                    group.addTask { try await target.fill(key, CachedEntry(version: v, data: Data("v\(v)".utf8)), ttl: .seconds(60), jitter: 0.2, loadStartedAt: .now) }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            let entry = try #require(try await backend.lookup(key))
            #expect(entry.version == 60 && entry.data == Data("v60".utf8), "round \(round): cache holds version \(entry.version)")
            #expect(results.contains(true))
            // An invalidation newer than everything wins over any later fill of the versions seen.
            try await backend.invalidate(key, version: 61, ttl: .seconds(60))
            #expect(try await !backendB.fill(key, CachedEntry(version: 60, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: .now))
            #expect(try await backend.lookup(key) == nil)
            // An older invalidation arriving late does not lower the guard.
            try await backendB.invalidate(key, version: 10, ttl: .seconds(60))
            #expect(try await !backend.fill(key, CachedEntry(version: 60, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: .now))
            #expect(try await backend.fill(key, CachedEntry(version: 61, data: Data("v61".utf8)), ttl: .seconds(60), jitter: 0, loadStartedAt: .now))
        }
        let stats = a.telemetry.snapshot().caches["cache"]
        #expect((stats?.fills ?? 0) > 0 && (stats?.rejectedFills ?? 0) > 0 && (stats?.invalidations ?? 0) > 0, "\(String(describing: stats))")
        try await a.close(); try await b.close()
    }

    @Test func entriesExpireWithJitteredTTL() async throws {
        let (a, b, backend, folder) = try await openPair()
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(try await backend.fill("doc\u{1F}items\u{1F}short", CachedEntry(version: 1, data: Data("s".utf8)), ttl: .milliseconds(300), jitter: 0.1, loadStartedAt: .now))
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await backend.lookup("doc\u{1F}items\u{1F}short") == nil, "entry readable after its TTL")
        try await a.close(); try await b.close()
    }
}

@Suite struct MemcachedScanTests {
    /// Scans list keys with the crawler's hash-table walk on a connection of their own; while 20 other tasks keep
    /// writing and reading on the same server, every scan still finds every key.
    @Test func scansUnderConcurrentTrafficFindEveryKey() async throws {
        let db = try await openKeyValue()
        let kv = try db.keyValue("kv")
        for i in 0..<200 { try await kv.set("k:\(i)", "v") }
        let mc = try MemcachedServers.client(poolSize: 2)
        let load = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<20 {
                    group.addTask {
                        var n = 0
                        while !Task.isCancelled {
                            try await mc.set("load:\(t):\(n % 100)", Data(count: 100))
                            _ = try await mc.get("load:\(t):\((n * 7) % 100)")
                            n += 1
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        for round in 0..<10 {
            let found = try await kv.scan(prefix: "k:", limit: 1000)
            #expect(found.count == 200, "scan \(round) found \(found.count) of 200 keys")
        }
        load.cancel()
        _ = try? await load.value
        await mc.shutdown()
        try await db.close()
    }
}
