import Foundation
import Logging
import Polyglot
import PolyglotRedis
import PolyglotSQLite
import PolyglotTesting
import Synchronization
import Testing

/// Keeps every log message, to count how often something was logged.
struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        recorder.store.withLock { $0.append(event.message.description) }
    }
}

final class LogRecorder: Sendable {
    let store = Mutex<[String]>([])
    var logger: Logger { Logger(label: "test") { _ in RecordingLogHandler(recorder: self) } }
    func count(_ text: String) -> Int { store.withLock { $0.filter { $0.contains(text) }.count } }
}

/// Degraded mode against the real `redisfault` server, which these tests stop and restart (no other suite uses it).
@Suite(.serialized) struct RedisDegradedModeTests {
    static let server = "redisfault"

    /// The cache is stopped mid-run: reads go to the source without error, writes succeed, telemetry and one log
    /// line say the cache is degraded. The server comes back with the entry it held before the outage (saved with
    /// SAVE, reloaded at start): the invalidation remembered during the outage is delivered before any hit, so
    /// the stale entry is never served.
    @Test func noStaleEntrySurvivesAnOutage() async throws {
        let url = try #require(RedisServers.fault, Comment(rawValue: TestServers.missing(RedisServers.faultVariable)))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("polyglot-degraded-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let logs = LogRecorder()
        let cache = RedisEngineFixture.engine(url, name: "cache", options: ["retryInterval": "100ms", "connectTimeout": "500ms", "commandTimeout": "2s"])
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: folder.appendingPathComponent("db.sqlite").path), cache],
                          datasets: [DatasetSpec(name: "items", model: .documents, engine: "primary", projections: [.cache(on: "cache", ttl: .seconds(600))])])
        let db = try await Polyglot(map: map, registry: RedisEngineFixture.registry, logger: logs.logger)
        let redis = try #require(try db.engine("cache") as? RedisEngine)
        let items = try db.documents("items")
        let entryKey = redis.keyPrefix + "c:doc\u{1F}items\u{1F}a"
        var restarted = false
        defer {
            if !restarted { try? TestServers.runScriptBlocking("redis-ctl", [Self.server, "start"]) }
            Task { try? await db.close() }
        }

        try await items.put("a", ["v": 1])
        try await items.put("b", ["v": 1])
        #expect(try await items.get("a")?.json()["v"] == 1)
        #expect(try await items.get("a")?.json()["v"] == 1)
        #expect(try await items.get("b")?.json()["v"] == 1)
        let cachedV1 = try await redis.client.send("GET", entryKey).string
        #expect(cachedV1?.hasPrefix("V") == true, "v1 is cached before the outage")
        // Persist the cache as it is now, so the restarted server comes back holding v1.
        let dir = try await redis.client.send("CONFIG", "GET", "dir").array?.last?.string ?? ""
        _ = try await redis.client.send("SAVE")

        try await RedisServers.control(Self.server, "stop")
        for _ in 0..<20 { #expect(try await items.get("a")?.json()["v"] == 1) }
        var stats = try #require(db.telemetry.snapshot().caches["cache"])
        #expect(stats.degraded)
        // Writes succeed; their invalidations wait.
        try await items.put("a", ["v": 2])
        try await items.delete("b")
        stats = try #require(db.telemetry.snapshot().caches["cache"])
        #expect(stats.pendingInvalidations == 2)
        for _ in 0..<20 {
            #expect(try await items.get("a")?.json()["v"] == 2)
            #expect(try await items.get("b") == nil)
        }

        try await RedisServers.control(Self.server, "start")
        restarted = true
        defer { try? FileManager.default.removeItem(atPath: dir + "/dump.rdb") }
        // The restarted server holds the stale v1 entry (a fresh client reads it directly).
        let probe = try RedisClient(url: url)
        let stale = try await probe.send("GET", entryKey).string
        #expect(stale == cachedV1, "the restarted server reloaded the old entry")
        // Every read during and after the recovery returns v2; none serves the stale entry.
        var recovered = false
        for _ in 0..<200 {
            #expect(try await items.get("a")?.json()["v"] == 2)
            #expect(try await items.get("b") == nil)
            if let s = db.telemetry.snapshot().caches["cache"], !s.degraded { recovered = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(recovered, "the cache did not leave degraded mode")
        let after = try await probe.send("GET", entryKey).string ?? ""
        #expect(after.hasPrefix("T") || after.hasPrefix("V"), "\(after)")
        #expect(after != cachedV1, "the stale entry was replaced")
        stats = try #require(db.telemetry.snapshot().caches["cache"])
        #expect(stats.pendingInvalidations == 0)
        // Hits again, with the new value.
        let hitsBefore = stats.hits
        for _ in 0..<3 { #expect(try await items.get("a")?.json()["v"] == 2) }
        #expect((db.telemetry.snapshot().caches["cache"]?.hits ?? 0) >= hitsBefore + 2)
        // One line for the outage and one for the recovery, not one per read.
        #expect(logs.count("redis cache degraded") == 1)
        #expect(logs.count("redis cache recovered") == 1)
        _ = try await probe.send("FLUSHALL")
        await probe.close()
    }

    /// Polyglot starts while the cache server is down: it opens, serves reads from the source, and uses the
    /// cache once the server is up.
    @Test func startsWhileTheCacheIsDown() async throws {
        let url = try #require(RedisServers.fault, Comment(rawValue: TestServers.missing(RedisServers.faultVariable)))
        try await RedisServers.control(Self.server, "stop")
        var started = false
        defer { if !started { try? TestServers.runScriptBlocking("redis-ctl", [Self.server, "start"]) } }
        let cache = RedisEngineFixture.engine(url, name: "cache", options: ["retryInterval": "100ms", "connectTimeout": "500ms"])
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: ":memory:"), cache],
                          datasets: [DatasetSpec(name: "items", model: .documents, engine: "primary", projections: [.cache(on: "cache", ttl: .seconds(60))])])
        let db = try await Polyglot(map: map, registry: RedisEngineFixture.registry)
        defer { Task { try? await db.close() } }
        let items = try db.documents("items")
        try await items.put("a", ["v": 1])
        #expect(try await items.get("a")?.json()["v"] == 1)
        #expect(db.telemetry.snapshot().caches["cache"]?.degraded == true)
        try await RedisServers.control(Self.server, "start")
        started = true
        var hits: UInt64 = 0
        for _ in 0..<200 {
            #expect(try await items.get("a")?.json()["v"] == 1)
            hits = db.telemetry.snapshot().caches["cache"]?.hits ?? 0
            if hits > 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(hits > 0, "the cache never served a hit after the server came up")
    }

    /// More invalidations than `maxPendingInvalidations` during an outage: the cache namespace is dropped on
    /// recovery, so nothing stale can be served.
    @Test func tooManyInvalidationsDropTheWholeNamespace() async throws {
        let url = try #require(RedisServers.fault, Comment(rawValue: TestServers.missing(RedisServers.faultVariable)))
        let cache = RedisEngineFixture.engine(url, name: "cache", options: ["retryInterval": "100ms", "connectTimeout": "500ms", "maxPendingInvalidations": "2"])
        let map = DataMap(engines: [EngineSpec(name: "primary", kind: "sqlite", path: ":memory:"), cache],
                          datasets: [DatasetSpec(name: "items", model: .documents, engine: "primary", projections: [.cache(on: "cache", ttl: .seconds(600))])])
        let db = try await Polyglot(map: map, registry: RedisEngineFixture.registry)
        defer { Task { try? await db.close() } }
        let redis = try #require(try db.engine("cache") as? RedisEngine)
        let items = try db.documents("items")
        for i in 0..<5 {
            try await items.put("k\(i)", ["v": 1])
            _ = try await items.get("k\(i)")
        }
        // Stand-ins for entries the outage will make stale: the restart below keeps the data (SAVE + reload).
        let dir = try await redis.client.send("CONFIG", "GET", "dir").array?.last?.string ?? ""
        _ = try await redis.client.send("SAVE")
        try await RedisServers.control(Self.server, "stop")
        var restarted = false
        defer { if !restarted { try? TestServers.runScriptBlocking("redis-ctl", [Self.server, "start"]) } }
        for i in 0..<5 { try await items.put("k\(i)", ["v": 2]) }
        let during = try #require(db.telemetry.snapshot().caches["cache"])
        #expect(during.degraded && during.pendingInvalidations <= 2)
        try await RedisServers.control(Self.server, "start")
        restarted = true
        defer { try? FileManager.default.removeItem(atPath: dir + "/dump.rdb") }
        let probe = try RedisClient(url: url)
        let stale = try await probe.send("GET", redis.keyPrefix + "c:doc\u{1F}items\u{1F}k0").string
        #expect(stale?.hasPrefix("V") == true, "the restarted server holds the pre-outage entries")
        var recovered = false
        for _ in 0..<200 {
            for i in 0..<5 { #expect(try await items.get("k\(i)")?.json()["v"] == 2) }
            if db.telemetry.snapshot().caches["cache"]?.degraded == false { recovered = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(recovered)
        for i in 0..<5 { #expect(try await items.get("k\(i)")?.json()["v"] == 2) }
        _ = try await probe.send("FLUSHALL")
        await probe.close()
    }
}
