import Foundation
import Polyglot
import Testing

/// The cache rule on a remote cache, whose size is not in the data map: fed with observations as an engine
/// would persist them, through the same profiler.
@Suite struct AdvisorCacheRuleTests {
    let now = Date()

    func record(_ op: String, count: Int, nanoseconds: UInt64) -> TelemetryRecord {
        var stats = OperationStats()
        for _ in 0..<count { stats.latency.record(nanoseconds: nanoseconds) }
        stats.count = UInt64(count)
        return TelemetryRecord(intervalStart: now.addingTimeInterval(-60), intervalEnd: now,
                               key: OperationKey(dataset: "products", engine: "cache", operation: op), stats: stats)
    }

    func advice(curve: [CacheCurvePoint]) async throws -> Recommendation? {
        let map = try DataMap(yaml: """
        engines:
          primary: { kind: sqlite, path: app.sqlite }
          cache: { kind: redis, url: "redis://127.0.0.1:6379" }
        datasets:
          products: { model: documents, engine: primary, projections: [ { kind: cache, engine: cache } ] }
        """)
        var o = WorkloadObservation(dataset: "products", engine: "primary", intervalStart: now.addingTimeInterval(-60), intervalEnd: now, model: .documents)
        o.cacheCurve = curve
        o.cacheReads = 1000
        let records = [record("cache.hit", count: 300, nanoseconds: 200_000), record("cache.miss", count: 700, nanoseconds: 900_000)]
        return try await Advisor(map: map, records: records, observations: [o]).advise(window: .seconds(3600), now: now)
            .first { $0.rule == "cache-hit-rate" }
    }

    @Test func aRemoteCacheThatWouldReachTheTargetIsGivenRoom() async throws {
        let r = try #require(try await advice(curve: [CacheCurvePoint(entries: 100, lookups: 1000, hits: 310),
                                                      CacheCurvePoint(entries: 10_000, lookups: 1000, hits: 900)]))
        #expect(r.action.hasPrefix("Give the cache of 'products' on 'cache' room for 10,000 entries"), "\(r.action)")
        #expect(r.dataMapDiff == nil, "a Redis memory limit is not in the data map")
        #expect(r.evidence.first { $0.metric == "cache hit rate" }?.value == "30.0%")
    }

    @Test func aRemoteCacheNoSizeWouldSaveIsRemoved() async throws {
        let r = try #require(try await advice(curve: [CacheCurvePoint(entries: 100, lookups: 1000, hits: 300),
                                                      CacheCurvePoint(entries: 1_000_000, lookups: 1000, hits: 420)]))
        #expect(r.action.hasPrefix("Remove the cache of 'products'"), "\(r.action)")
        let diff = try #require(r.dataMapDiff)
        #expect(diff.contains("-   cache: { kind: redis"), "nothing else uses the engine, so it goes too:\n\(diff)")
        #expect(diff.contains("-     projections:"), "\(diff)")
    }
}
