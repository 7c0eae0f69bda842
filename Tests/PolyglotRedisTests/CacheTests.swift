import Foundation
import Polyglot
@testable import PolyglotRedis
import PolyglotSQLite
import PolyglotTesting
import Testing

/// Two `Polyglot` instances over one SQLite file, caching in one Redis namespace: two application processes.
struct TwoProcesses {
    let a: Polyglot
    let b: Polyglot
    let folder: URL

    static func open(options: [String: String] = [:]) async throws -> TwoProcesses {
        let url = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("polyglot-redis-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let cache = RedisEngineFixture.engine(url, name: "cache", options: options)
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: folder.appendingPathComponent("db.sqlite").path), cache],
                          datasets: [DatasetSpec(name: "items", model: .documents, engine: "primary",
                                                 projections: [.cache(on: "cache", ttl: .seconds(60))])])
        let a = try await Polyglot(map: map, registry: RedisEngineFixture.registry)
        let b = try await Polyglot(map: map, registry: RedisEngineFixture.registry)
        return TwoProcesses(a: a, b: b, folder: folder)
    }

    func close() async {
        try? await a.close()
        try? await b.close()
        try? FileManager.default.removeItem(at: folder)
    }

    /// Source reads (cache misses that loaded) of `items` in both instances.
    var sourceLoads: Int {
        var n = 0
        for db in [a, b] {
            if let e = db.telemetry.snapshot().entry(dataset: "items", operation: "get") { n += Int(e.stats.count) }
        }
        return n
    }
}

@Suite struct RedisCacheTests {
    @Test func hundredConcurrentMissesFromTwoInstancesLoadTheSourceOnce() async throws {
        // A lock (and wait) of 30 s, not 3 s: a loader paused that long by a loaded machine must not count as lost.
        let p = try await TwoProcesses.open(options: ["lockTimeout": "30s"])
        defer { Task { await p.close() } }
        for round in 0..<3 {
            let id = "hot\(round)"
            try await p.a.documents("items").put(id, ["v": .number(Double(round))])
            let before = p.sourceLoads
            let results = try await withThrowingTaskGroup(of: JSON?.self) { group in
                for i in 0..<100 {
                    let db = i % 2 == 0 ? p.a : p.b
                    group.addTask { try await db.documents("items").get(id)?.json()["v"] }
                }
                var out: [JSON?] = []
                for try await r in group { out.append(r) }
                return out
            }
            #expect(results.count == 100 && results.allSatisfy { $0 == .number(Double(round)) }, "every reader gets the document")
            #expect(p.sourceLoads - before == 1, "100 concurrent misses from two instances loaded the source \(p.sourceLoads - before) times")
            // How many of the 100 found the entry already filled depends on timing; a read after the burst must hit.
            for db in [p.a, p.b] {
                let hits = db.telemetry.snapshot().caches["cache"]?.hits ?? 0
                #expect(try await db.documents("items").get(id)?.json()["v"] == .number(Double(round)))
                #expect(db.telemetry.snapshot().caches["cache"]?.hits == hits + 1)
            }
        }
        let sa = p.a.telemetry.snapshot().caches["cache"], sb = p.b.telemetry.snapshot().caches["cache"]
        #expect((sa?.fills ?? 0) + (sb?.fills ?? 0) == 3)
    }

    /// A caller whose lookup missed just before this process's loader filled the entry reaches the single-flight
    /// step after that load ended: it must find the entry, not load the source again (by then the facade's shared
    /// load may be gone). Under CPU load this made `hundredConcurrentMisses...` load twice (a CI failure); here the
    /// late caller is made directly.
    @Test func aMissRightAfterThisProcessFilledTheEntryGetsTheEntry() async throws {
        let p = try await TwoProcesses.open()
        defer { Task { await p.close() } }
        let backend = try #require(try p.a.cacheBackend(for: "items") as? RedisCacheBackend)
        let key = "doc\u{1F}items\u{1F}late"
        #expect(try await backend.lookup(key) == nil, "a miss; this caller now holds the lock and loads")
        let loaded = CachedEntry(version: 1, data: Data("loaded".utf8))
        #expect(try await backend.fill(key, loaded, ttl: .seconds(60), jitter: 0, loadStartedAt: .now))
        // The late caller, within the rejoin window after the load ended.
        #expect(await backend.coordinateMiss(key)?.data == loaded.data)
    }

    @Test func writesInOneInstanceInvalidateTheOther() async throws {
        let p = try await TwoProcesses.open()
        defer { Task { await p.close() } }
        try await p.a.documents("items").put("x", ["v": 1])
        #expect(try await p.b.documents("items").get("x")?.json()["v"] == 1)
        #expect(try await p.b.documents("items").get("x")?.json()["v"] == 1)
        for v in 2...10 {
            try await p.a.documents("items").put("x", ["v": .number(Double(v))])
            #expect(try await p.b.documents("items").get("x")?.json()["v"] == .number(Double(v)))
        }
        try await p.b.documents("items").delete("x")
        #expect(try await p.a.documents("items").get("x") == nil)
        // A missing document: concurrent misses all answer nil and the lock is released (no waiting it out).
        let misses = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<20 { group.addTask { try await (i % 2 == 0 ? p.a : p.b).documents("items").get("nope") == nil } }
            var all = true
            for try await r in group { all = all && r }
            return all
        }
        #expect(misses)
    }

    @Test func aFillOlderThanAnInvalidationNeverLands() async throws {
        let p = try await TwoProcesses.open()
        defer { Task { await p.close() } }
        let items = try p.a.documents("items")
        try await items.put("a", ["v": 1])
        let old = try #require(try await items.get("a"))
        try await items.put("a", ["v": 2])       // invalidates at version 2; nothing cached yet
        let backend = try p.a.cacheBackend(for: "items")
        let key = "doc\u{1F}items\u{1F}a"
        // A slow reader that loaded version 1 before the write finishes now: refused, in either instance.
        #expect(try await backend.fill(key, CachedEntry(version: old.version, data: old.data), ttl: .seconds(60), jitter: 0, loadStartedAt: .now) == false)
        #expect(try await p.b.cacheBackend(for: "items").fill(key, CachedEntry(version: old.version, data: old.data), ttl: .seconds(60), jitter: 0, loadStartedAt: .now) == false)
        let redis = try #require(try p.a.engine("cache") as? RedisEngine)
        let raw = try await redis.client.send("GET", redis.keyPrefix + "c:" + key).string
        #expect(raw?.hasPrefix("T") == true, "the invalidation left a tombstone, not the old value: \(String(describing: raw))")
        #expect(try await items.get("a")?.json()["v"] == 2)
        #expect(try await p.b.documents("items").get("a")?.json()["v"] == 2)
        // A load that took longer than the tombstone lifetime is refused even with a current version.
        let current = try #require(try await items.get("a"))
        try await items.put("a", ["v": 3])
        let slow = ContinuousClock.now - .seconds(11)
        #expect(try await backend.fill(key, CachedEntry(version: current.version + 1000, data: current.data), ttl: .seconds(60), jitter: 0, loadStartedAt: slow) == false)
        #expect(try await items.get("a")?.json()["v"] == 3)
        // An invalidation older than the cached version does not remove it.
        let fresh = try #require(try await items.get("a"))
        try await backend.invalidate(key, version: fresh.version - 1, ttl: .seconds(60))
        #expect(try await backend.lookup(key)?.version == fresh.version)
        let stats = try #require(p.a.telemetry.snapshot().caches["cache"])
        #expect(stats.rejectedFills >= 2)
    }

    @Test func telemetryCountsHitsMissesAndLatencySaved() async throws {
        let p = try await TwoProcesses.open()
        defer { Task { await p.close() } }
        let items = try p.a.documents("items")
        for i in 0..<10 { try await items.put("k\(i)", ["v": .number(Double(i))]) }
        for _ in 0..<3 { for i in 0..<10 { _ = try await items.get("k\(i)") } }
        let s = try #require(p.a.telemetry.snapshot().caches["cache"])
        #expect(s.misses == 10 && s.hits == 20 && s.fills == 10, "\(s)")
        #expect(s.hitRate.map { abs($0 - 2.0 / 3.0) < 0.001 } == true)
        #expect(!s.degraded && s.pendingInvalidations == 0)
        #expect(s.invalidations >= 10)
        let hit = p.a.telemetry.snapshot().entry(dataset: "items", operation: "cache.hit")
        #expect(hit?.stats.count == 20)
        // latencySavedNanoseconds is an estimate (mean load time minus each hit's time); it only never decreases.
        #expect(s.latencySavedNanoseconds >= 0)
    }

    @Test func cachedValuesRoundTripExactly() async throws {
        let p = try await TwoProcesses.open()
        defer { Task { await p.close() } }
        let items = try p.a.documents("items")
        let text = "line1\r\nline2\n\u{0}end ✓ — 🙂"
        for id in ["crlf\r\nid", "uni ✓ 🙂", "star*?[x]"] {
            try await items.put(id, ["t": .string(text), "e": ""])
            let first = try await items.get(id)
            let second = try await p.b.documents("items").get(id)
            #expect(first?.data == second?.data)
            #expect(try second?.json()["t"] == .string(text))
            #expect(try second?.json()["e"] == .string(""))
        }
    }

    @Test func jitterSpreadsTheTTLs() async throws {
        let p = try await TwoProcesses.open()
        defer { Task { await p.close() } }
        let backend = try p.a.cacheBackend(for: "items")
        let redis = try #require(try p.a.engine("cache") as? RedisEngine)
        var ttls: [Int64] = []
        for i in 0..<20 {
            let key = "doc\u{1F}items\u{1F}j\(i)"
            #expect(try await backend.fill(key, CachedEntry(version: 1, data: Data("{}".utf8)), ttl: .seconds(100), jitter: 0.2, loadStartedAt: .now))
            ttls.append(try await redis.client.send("PTTL", redis.keyPrefix + "c:" + key).int ?? -1)
        }
        #expect(ttls.allSatisfy { (79_000...120_000).contains($0) }, "within ±20% of 100 s: \(ttls)")
        #expect(Set(ttls.map { $0 / 1000 }).count > 3, "entries filled together expire apart: \(ttls)")
    }

    /// Another process holds the single-flight lock and never fills (it crashed mid-load): a miss waits at most
    /// `waitTimeout`, then loads the source itself and answers.
    @Test func aStuckLoaderDelaysOthersOnlyUpToTheWaitTimeout() async throws {
        let p = try await TwoProcesses.open(options: ["waitTimeout": "300ms", "lockTimeout": "300ms"])
        defer { Task { await p.close() } }
        try await p.a.documents("items").put("s", ["v": 7])
        let redis = try #require(try p.a.engine("cache") as? RedisEngine)
        _ = try await redis.client.send("SET", redis.keyPrefix + "l:doc\u{1F}items\u{1F}s", "999999", "PX", 60_000)
        let results = try await withThrowingTaskGroup(of: JSON?.self) { group in
            for i in 0..<10 { group.addTask { try await (i % 2 == 0 ? p.a : p.b).documents("items").get("s")?.json()["v"] } }
            var out: [JSON?] = []
            for try await r in group { out.append(r) }
            return out
        }
        #expect(results.count == 10 && results.allSatisfy { $0 == 7 })
        #expect(p.sourceLoads >= 1)
    }
}
