import Foundation
import Polyglot
import Testing

/// A deterministic Zipf-like key stream: key i with weight 1/(i+1)^s.
func zipfKeys(count: Int, keys: Int, s: Double = 1.1, seed: UInt64 = 42) -> [String] {
    var weights = (0..<keys).map { 1 / pow(Double($0 + 1), s) }
    let total = weights.reduce(0, +)
    for i in weights.indices { weights[i] /= total }
    var cumulative: [Double] = []
    var acc = 0.0
    for w in weights { acc += w; cumulative.append(acc) }
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        let u = Double(state >> 11) / Double(1 << 53)
        var lo = 0, hi = cumulative.count - 1
        while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] < u { lo = mid + 1 } else { hi = mid } }
        return "k\(lo)"
    }
}

@Suite struct SpaceSavingTests {
    @Test func holdsEveryHeavyHitterWithBoundedError() {
        let stream = zipfKeys(count: 50_000, keys: 5_000)
        var exact: [String: UInt64] = [:]
        for k in stream { exact[k, default: 0] += 1 }
        var sketch = SpaceSaving(capacity: 64)
        for k in stream { sketch.add(k) }
        #expect(sketch.total == 50_000)
        let top = sketch.top(64)
        // Every key above total/capacity is guaranteed to be held, with count - error <= true <= count.
        for (key, n) in exact where n > 50_000 / 64 {
            let c = top.first { $0.key == key }
            #expect(c != nil, "heavy hitter \(key) (\(n)) missing")
            if let c { #expect(c.count - c.error <= n && n <= c.count, "\(key): true \(n), sketch \(c.count)±\(c.error)") }
        }
        #expect(sketch.top(3).map(\.key) == ["k0", "k1", "k2"])
        #expect(sketch.guaranteedShare(ofTop: 10) > 0.2 && sketch.guaranteedShare(ofTop: 10) <= 1)
    }

    @Test func mergedSketchesKeepTheHotKeys() {
        let stream = zipfKeys(count: 20_000, keys: 2_000, seed: 7)
        var a = SpaceSaving(capacity: 32), b = SpaceSaving(capacity: 32), whole = SpaceSaving(capacity: 32)
        for (i, k) in stream.enumerated() { if i % 2 == 0 { a.add(k) } else { b.add(k) }; whole.add(k) }
        a.merge(b)
        #expect(a.total == whole.total)
        #expect(a.top(5).map(\.key) == whole.top(5).map(\.key))
        let data = try! JSONEncoder().encode(a)
        #expect(try! JSONDecoder().decode(SpaceSaving.self, from: data) == a)
    }
}

@Suite struct LRUSimulationTests {
    func trace(_ keys: [String], writes: Set<Int> = []) -> [(key: UInt64, isWrite: Bool)] {
        keys.enumerated().map { (KeyTrace.hash($0.element), writes.contains($0.offset)) }
    }

    @Test func replaysAnExactLRU() {
        // a b a c b with 2 entries: miss miss hit miss(evicts b) miss(b was evicted) -> 1 hit of 5.
        #expect(LRUSimulation.hitRate(trace(["a", "b", "a", "c", "b"]), capacity: 2) == 0.2)
        // With 3 entries b stays: 2 hits of 5.
        #expect(LRUSimulation.hitRate(trace(["a", "b", "a", "c", "b"]), capacity: 3) == 0.4)
        #expect(LRUSimulation.hitRate(trace(["a", "a", "a", "a"]), capacity: 1) == 0.75)
        #expect(LRUSimulation.hitRate([], capacity: 10) == nil)
    }

    @Test func writesInvalidateTheirKey() {
        // a a(write) a a: the write removes a, so the third access misses again.
        let t = trace(["a", "a", "a", "a"], writes: [1])
        #expect(LRUSimulation.hitRate(t, capacity: 10) == 1.0 / 3.0)
    }

    @Test func uniformKeysHitInProportionToTheCacheSize() {
        var state: UInt64 = 1
        let keys = (0..<60_000).map { _ -> String in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return "u\((state >> 33) % 1000)"
        }
        let h = LRUSimulation.hitRate(trace(keys), capacity: 300, warmup: 0.2)!
        #expect(abs(h - 0.3) < 0.03, "uniform over 1000 keys with 300 entries should hit about 30%, got \(h)")
        let all = LRUSimulation.hitRate(trace(keys), capacity: 1000, warmup: 0.2)!
        #expect(all == 1.0)
    }

    @Test func skewedKeysReachHighHitRatesWithSmallCaches() {
        let keys = zipfKeys(count: 30_000, keys: 10_000)
        let curve = LRUSimulation.curve(trace(keys), capacities: [10, 100, 1000], warmup: 0.1)
        #expect(curve.count == 3)
        #expect(curve[0].hitRate < curve[1].hitRate && curve[1].hitRate < curve[2].hitRate)
        #expect(curve[2].hitRate > 0.6)
    }

    @Test func keyTracesRoundTripAndDecimate() throws {
        var t = KeyTrace(every: 4, accesses: [(KeyTrace.hash("a"), false), (KeyTrace.hash("b"), true), (KeyTrace.hash("c"), false)])
        let back = try JSONDecoder().decode(KeyTrace.self, from: JSONEncoder().encode(t))
        #expect(back == t)
        #expect(back.accesses.map(\.isWrite) == [false, true, false])
        #expect(KeyTrace.hash("a") == 0x02a2_a958_a9be_ce5b, "the hash must be the same in every process")
        // Keys that differ in their last character must spread over the sampling threshold (1 in 8 here).
        let sampled = (0..<8000).filter { KeyTrace.hash("p\($0)") < (UInt64(1) << 63) / 8 }.count
        #expect(abs(sampled - 1000) < 100, "\(sampled) of 8000 sequential keys sampled at 1 in 8")
        t = KeyTrace(every: 1, entries: Array(0..<10))
        #expect(t.count == 10 && t.every == 1)
    }
}

@Suite struct MiniatureCacheTests {
    @Test func fullSamplingMatchesAnExactLRU() {
        let keys = zipfKeys(count: 20_000, keys: 3_000, seed: 3)
        var caches = MiniatureCaches(every: 1, sizes: [100, 1000])
        for k in keys { caches.read(KeyTrace.hash(k)) }
        let counts = caches.takeCounts()
        let exact = keys.map { (key: KeyTrace.hash($0), isWrite: false) }
        #expect(counts.map(\.entries) == [100, 1000])
        #expect(counts[0].lookups == 20_000)
        #expect(Double(counts[0].hits) / 20_000 == LRUSimulation.hitRate(exact, capacity: 100))
        #expect(Double(counts[1].hits) / 20_000 == LRUSimulation.hitRate(exact, capacity: 1000))
        #expect(caches.takeCounts()[0].lookups == 0, "counts reset per interval; contents stay warm")
    }

    @Test func oneKeyInEightEstimatesTheFullCurve() {
        // Bursty, skewed reads: each chosen key is read three times in a row (temporal locality).
        var keys: [String] = []
        for k in zipfKeys(count: 30_000, keys: 20_000, s: 0.9, seed: 5) { keys += [k, k, k] }
        let exact = keys.map { (key: KeyTrace.hash($0), isWrite: false) }
        var caches = MiniatureCaches(every: 8, sizes: [1000, 10_000])
        for h in exact.map(\.key) where caches.samples(h) { caches.read(h) }
        for (i, point) in caches.takeCounts().enumerated() {
            let truth = LRUSimulation.hitRate(exact, capacity: point.entries)!
            // SHARDS-adj, as the profiler applies it: the sample should have seen reads / 8.
            let expected = Double(keys.count) / 8
            let estimate = (Double(point.hits) + expected - Double(point.lookups)) / expected
            #expect(abs(estimate - truth) < 0.05, "size \(point.entries) (#\(i)): estimated \(estimate), exact \(truth)")
        }
    }

    @Test func writesInvalidateSimulatedEntries() {
        var caches = MiniatureCaches(every: 1, sizes: [100])
        let a = KeyTrace.hash("a")
        caches.read(a); caches.read(a); caches.write(a); caches.read(a)
        #expect(caches.takeCounts()[0].hits == 1)
    }
}

@Suite struct AdvisorSettingsTests {
    let base = """
    engines:
      primary: { kind: memory }
    datasets:
      kv: { model: keyValue, engine: primary }
    """

    @Test func thresholdsParseFromTheDataMap() throws {
        let map = try DataMap(yaml: base + "\nadvisor: { readTarget: 5ms, hitRateTarget: 90%, vectorThreshold: 3_000_000, sampleEvery: 1, keepHistory: 7d }\n")
        #expect(map.advisor.readTarget == .milliseconds(5))
        #expect(map.advisor.keepHistory == .seconds(7 * 86_400))
        #expect(AdvisorSettings().keepHistory == .seconds(30 * 86_400))
        #expect(map.advisor.hitRateTarget == 0.9)
        #expect(map.advisor.vectorThreshold == 3_000_000)
        #expect(map.advisor.sampleEvery == 1)
        #expect(map.advisor.scanRatio == 100, "unset thresholds keep the framework's defaults")
        #expect(try DataMap(yaml: map.yaml()) == map, "the rendered map parses back to the same value")
    }

    @Test func badThresholdsSayWhatToWrite() {
        for (text, needle) in [("hitRateTarget: 1.5", "advisor.hitRateTarget"), ("readTarget: fast", "advisor.readTarget"),
                               ("colour: red", "unknown setting 'colour'"), ("sampleEvery: 0", "advisor.sampleEvery"),
                               ("scanRatio: 1", "advisor.scanRatio"), ("keepHistory: 2h", "advisor.keepHistory")] {
            do {
                _ = try DataMap(yaml: base + "\nadvisor: { \(text) }\n")
                Issue.record("'\(text)' was accepted")
            } catch let e as PolyglotError {
                #expect(e.description.contains(needle) && e.fix != nil, "\(e)")
            } catch { Issue.record("\(error)") }
        }
        var map = try! DataMap(yaml: base)
        map.advisor.interferenceFactor = 0.5
        #expect(throws: PolyglotError.self) { try map.validate(registry: .builtIn) }
    }
}

@Suite struct DataMapRenderTests {
    @Test func renderedMapsParseBackEqual() throws {
        let yaml = """
        engines:
          primary: { kind: sqlite, path: /tmp/x/shop.sqlite }
          pg: { kind: postgres, url: "postgres://app:s3cret@db:5432/shop", options: { poolSize: 20, replicas: "postgres://a@r1:5432/shop,postgres://a@r2:5432/shop" } }
          cache: { kind: memory, options: { maxEntries: 10000, maxBytes: 16MB } }
        datasets:
          products:
            model: documents
            engine: primary
            fields: { price: number, category: string, stock: integer! }
            projections:
              - { kind: cache, engine: cache, ttl: 5m, jitter: 0.2 }
              - { kind: search, engine: primary, fields: [name, description] }
              - { kind: vectors, engine: primary, fields: [name], dimension: 64, index: { m: 8, efConstruction: 100, efSearch: 32 } }
          orders: { model: table, engine: pg, primaryKey: id, columns: { id: integer!, total: number } }
          sessions: { model: keyValue, engine: primary, ttl: 30m }
          views: { model: timeSeries, engine: primary, retention: 7d }
        telemetry: { flushInterval: 30s, store: primary }
        """
        let map = try DataMap(yaml: yaml)
        #expect(try DataMap(yaml: map.yaml()) == map, "\(map.yaml())")
    }

    @Test func diffsShowTheChangeInItsPlace() throws {
        let map = try DataMap(yaml: """
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          a: { model: documents, engine: primary }
          b: { model: documents, engine: primary, fields: { x: string } }
        """)
        let (_, diff) = YAMLDiff.change(map) { m in
            m.engines.append(.memory(maxEntries: 500))
            m.datasets[1].projections.append(.cache(on: "cache"))
        }
        #expect(diff.contains("+   cache: { kind: memory, options: { maxBytes: 67108864, maxEntries: 500 } }"), "\(diff)")
        #expect(diff.contains("+     projections:") && diff.contains("+       - { kind: cache, engine: cache, ttl: 5m }"), "\(diff)")
        #expect(diff.contains("  b:"), "a hunk names the dataset it changes:\n\(diff)")
        #expect(YAMLDiff.change(map) { _ in }.diff.isEmpty)
    }
}

/// Rules that need no server: fed with observations as an engine would persist them, through the same profiler.
@Suite struct AdvisorRuleTests {
    let now = Date()

    func record(_ dataset: String, _ engine: String, _ op: String, count: Int, nanoseconds: UInt64) -> TelemetryRecord {
        var stats = OperationStats()
        for _ in 0..<count { stats.latency.record(nanoseconds: nanoseconds) }
        stats.count = UInt64(count)
        return TelemetryRecord(intervalStart: now.addingTimeInterval(-60), intervalEnd: now, key: OperationKey(dataset: dataset, engine: engine, operation: op), stats: stats)
    }

    @Test func aVolatileEngineAsSourceOfTruthIsFlagged() async throws {
        let map = try DataMap(yaml: """
        engines:
          primary: { kind: sqlite, path: app.sqlite }
          cache: { kind: memory }
        datasets:
          carts: { model: keyValue, engine: cache }
        """)
        let advice = try await Advisor(map: map, records: [record("carts", "cache", "set", count: 500, nanoseconds: 2_000)], observations: [])
            .advise(window: .seconds(3600), now: now)
        let r = try #require(advice.first { $0.rule == "cache-as-source-of-truth" })
        #expect(r.kind == .antiPattern && r.confidence == .high)
        #expect(r.dataMapDiff?.contains("+     engine: primary") == true, "\(r.dataMapDiff ?? "")")
    }

    @Test func fourEnginesWithoutMeasuredNeedAreFlagged() async throws {
        let map = try DataMap(yaml: """
        engines:
          primary: { kind: sqlite, path: app.sqlite }
          cache: { kind: memory }
          search: { kind: sqlite, path: search.sqlite }
          spare: { kind: memory }
        datasets:
          products: { model: documents, engine: primary, projections: [ { kind: cache, engine: cache } ] }
        """)
        let records = [record("products", "cache", "cache.hit", count: 900, nanoseconds: 1_000),
                       record("products", "cache", "cache.miss", count: 100, nanoseconds: 90_000),
                       record("products", "primary", "get", count: 100, nanoseconds: 80_000)]
        let advice = try await Advisor(map: map, records: records, observations: []).advise(window: .seconds(3600), now: now)
        let r = try #require(advice.first { $0.rule == "too-many-engines" })
        #expect(r.dataset == "*" && r.action.contains("'search'") && r.action.contains("'spare'") && !r.action.contains("'cache'"), "\(r.action)")
        #expect(r.dataMapDiff?.contains("-   spare: { kind: memory }") == true, "\(r.dataMapDiff ?? "")")
        #expect(advice.first { $0.dataset == "products" }?.rule == "stay", "a cache hitting 90% is fine")
    }

    @Test func aBadWindowIsRefusedWithTheFix() async throws {
        let map = try DataMap(yaml: "engines:\n  primary: { kind: memory }\ndatasets:\n  kv: { model: keyValue, engine: primary }\n")
        await #expect(throws: PolyglotError.self) { _ = try await Advisor(map: map, records: [], observations: []).advise(window: .zero) }
    }

    @Test func nothingMeasuredMeansStayWithLowConfidence() async throws {
        let map = try DataMap(yaml: "engines:\n  primary: { kind: sqlite, path: a.sqlite }\ndatasets:\n  d: { model: documents, engine: primary }\n")
        let advice = try await Advisor(map: map, records: [], observations: []).advise(window: .seconds(60), now: now)
        #expect(advice.count == 1 && advice[0].rule == "stay" && advice[0].confidence == .low)
        let report = try await Advisor(map: map, records: [], observations: []).report(window: .seconds(60), now: now)
        #expect(report.plan.current == 1 && report.plan.next == 2, "documents are in place, but the path stops at the missing cache")
        #expect(report.audit.first?.belongsIn.first?.contains("document store") == true)
    }
}
