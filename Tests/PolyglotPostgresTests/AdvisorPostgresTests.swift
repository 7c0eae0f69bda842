import Foundation
import Polyglot
import PolyglotPostgres
import PolyglotTesting
import Testing

/// Workload scenarios on a real PostgreSQL 15 server, each with the advice it must get. Latency targets are set in
/// the data map (`advisor.readTarget`) below what loopback reads take, so the reads really miss them.
@Suite(.serialized) struct AdvisorPostgresTests {
    struct LCG { var s: UInt64; mutating func next(_ n: Int) -> Int { s = s &* 6364136223846793005 &+ 1442695040888963407; return Int((s >> 33) % UInt64(n)) } }

    func open(_ datasets: [DatasetSpec], advisor: AdvisorSettings, engine: EngineSpec? = nil, extra: [EngineSpec] = []) async throws -> Polyglot {
        let map = DataMap(engines: [engine ?? PGServers.engine(PGServers.pg15)] + extra, datasets: datasets, advisor: advisor)
        return try await Polyglot(map: map, registry: PGServers.registry)
    }

    func settings(_ change: (inout AdvisorSettings) -> Void) -> AdvisorSettings {
        var s = AdvisorSettings()
        s.sampleEvery = 1
        change(&s)
        return s
    }

    func load(_ d: DocumentCollection, count: Int, body: (Int) -> JSON) async throws {
        for start in stride(from: 0, to: count, by: 2000) {
            try await d.putMany((start..<min(count, start + 2000)).map { ("d\($0)", body($0)) })
        }
    }

    /// Telemetry and observations older than `advisor.keepHistory` are deleted from PostgreSQL by a later flush.
    @Test func historyOlderThanKeepHistoryIsDeleted() async throws {
        let spec = DatasetSpec(name: "history_\(UInt32.random(in: 0...UInt32.max))", model: .documents, engine: "subject")
        let engine = PGServers.engine(PGServers.pg15)
        let db = try await open([spec], advisor: settings { $0.keepHistory = .seconds(7 * 86_400) }, engine: engine)
        let docs = try db.documents(spec.name)
        let now = Date()
        try await docs.put("a", ["n": 1])
        _ = try await docs.get("a")
        try await db.flushTelemetry(now: now.addingTimeInterval(-10 * 86_400))
        let mine = { (records: [TelemetryRecord]) in records.filter { $0.key.dataset == spec.name } }
        #expect(!mine(try await db.telemetryHistory()).isEmpty)
        #expect(try await db.observationHistory().contains { $0.dataset == spec.name })

        _ = try await docs.get("a")
        try await db.flushTelemetry(now: now.addingTimeInterval(-2 * 86_400))
        let cutoff = now.addingTimeInterval(-9 * 86_400)
        let records = mine(try await db.telemetryHistory())
        let observations = try await db.observationHistory().filter { $0.dataset == spec.name }
        try await db.close()
        #expect(!records.isEmpty && !observations.isEmpty, "the interval of 2 days ago is kept")
        #expect(records.allSatisfy { $0.intervalEnd >= cutoff }, "\(records.map(\.intervalEnd))")
        #expect(observations.allSatisfy { $0.intervalEnd >= cutoff }, "\(observations.map(\.intervalEnd))")
    }

    @Test func hotKeyReadsMissingTheTargetGetACacheWithAnEstimatedHitRate() async throws {
        let spec = DatasetSpec(name: "products", model: .documents, engine: "subject")
        let engine = PGServers.engine(PGServers.pg15)
        let advisor = settings { $0.readTarget = .microseconds(20) }
        var db = try await open([spec], advisor: advisor, engine: engine)
        var products = try db.documents("products")
        try await load(products, count: 2000) { ["name": .string("product \($0)"), "price": .number(Double($0 % 100))] }
        try await db.flushTelemetry(now: Date().addingTimeInterval(-7200))   // the bulk load is not the workload
        var rng = LCG(s: 5)
        func workload(_ products: DocumentCollection) async throws {
            for _ in 0..<3000 {
                let id = rng.next(10) < 9 ? "d\(rng.next(10))" : "d\(rng.next(2000))"   // 90% of reads on 10 keys
                _ = try await products.get(id)
            }
        }
        try await workload(products)
        try await db.flushTelemetry()
        let report = try await Advisor(db: db).report(window: .seconds(3600))
        try await db.close()

        let r = try #require(report.recommendations.first { $0.dataset == "products" })
        #expect(r.rule == "add-cache" && r.kind == .add, "\(r.rule): \(r.action)")
        #expect(r.evidence.contains { $0.metric == "point-read p99" && $0.crossed == true })
        let profile = try #require(report.profiles.first)
        #expect(profile.hotKeys.count == 10 && profile.top10Share > 0.8, "\(profile.hotKeys)")
        let estimate = try #require(profile.cacheEstimates.first { $0.hitRate >= 0.8 })
        #expect(r.action.contains("about \(String(format: "%.1f%%", estimate.hitRate * 100))"), "\(r.action)")
        #expect(r.dataMapDiff?.contains("+       - { kind: cache, engine: cache, ttl: 5m }") == true, "\(r.dataMapDiff ?? "")")

        // Apply it and replay the same reads: the measured hit rate is what the replay estimated.
        let entries = max(100, estimate.entries)
        var cached = spec
        cached.projections = [.cache(on: "cache")]
        db = try await open([cached], advisor: advisor, engine: engine, extra: [.memory(maxEntries: entries)])
        products = try db.documents("products")
        rng = LCG(s: 5)
        try await workload(products)
        // One instant for the flush and the report: a slow flush must not move the window past what it wrote.
        let later = Date().addingTimeInterval(1)
        try await db.flushTelemetry(now: later)
        let after = try await Advisor(db: db).report(window: .milliseconds(900), now: later)
        try await db.close()
        let measured = try #require(after.profiles.first?.cache?.hitRate)
        #expect(abs(measured - estimate.hitRate) < 0.08, "estimated \(estimate.hitRate), measured \(measured)")
        #expect(after.recommendations.first?.rule == "stay", "\(after.recommendations.map(\.action))")
    }

    @Test func uniformSlowReadsOnAReadHeavyPostgresGetReplicasNotACache() async throws {
        let spec = DatasetSpec(name: "accounts", model: .documents, engine: "subject")
        let db = try await open([spec], advisor: settings { $0.readTarget = .microseconds(20) })
        let accounts = try db.documents("accounts")
        try await load(accounts, count: 4000) { ["owner": .string("o\($0)")] }
        try await db.flushTelemetry(now: Date().addingTimeInterval(-7200))
        var rng = LCG(s: 11)
        for _ in 0..<2000 { _ = try await accounts.get("d\(rng.next(4000))") }
        try await db.flushTelemetry()
        let advice = try await Advisor(db: db).advise(window: .seconds(3600))
        try await db.close()
        let r = try #require(advice.first { $0.dataset == "accounts" })
        #expect(r.rule == "read-replicas" && r.kind == .optimize, "\(r.rule): \(r.action)")
        #expect(r.dataMapDiff?.contains("replicas:") == true)
        #expect(!advice.contains { $0.rule == "add-cache" }, "keys this spread out would not hit a cache")
    }

    @Test func aFilteredQueryScanningThousandsOfRowsGetsAnIndexOnPostgres() async throws {
        let spec = DatasetSpec(name: "events", model: .documents, engine: "subject")
        let db = try await open([spec], advisor: settings { _ in })
        let events = try db.documents("events")
        try await load(events, count: 5000) { ["group": .number(Double($0 / 5))] }
        try await db.flushTelemetry(now: Date().addingTimeInterval(-7200))
        for g in 0..<20 { #expect(try await events.query(.field("group") == .number(Double(g * 13))).count == 5) }
        try await db.flushTelemetry()
        let report = try await Advisor(db: db).report(window: .seconds(3600))
        try await db.close()
        let examined = try #require(report.profiles.first?.examined, "PostgreSQL reports the tuples each sampled query read")
        #expect(examined.measured == 20 && examined.ratio >= 900, "\(examined)")
        let r = try #require(report.recommendations.first { $0.dataset == "events" })
        #expect(r.rule == "missing-index", "\(r.rule): \(r.action)")
        #expect(r.dataMapDiff?.contains("fields: { group: number }") == true, "\(r.dataMapDiff ?? "")")
    }

    @Test func largeScansThatRaisePointReadLatencyGetAnAnalyticsProjection() async throws {
        let spec = DatasetSpec(name: "orders", model: .documents, engine: "subject")
        // A pool of four connections, as a small service would have: the reports compete with the point reads for
        // connections and CPU, as they do in production.
        let db = try await open([spec], advisor: settings { $0.largeScan = .milliseconds(5) },
                                engine: PGServers.engine(PGServers.pg15, options: ["poolSize": "4"]))
        let orders = try db.documents("orders")
        try await load(orders, count: 60_000) { ["amount": .number(Double($0 % 1000)), "customer": .string("c\($0 % 977)"), "note": .string(String(repeating: "n", count: 80))] }
        var rng = LCG(s: 13)
        for _ in 0..<200 { _ = try await orders.get("d\(rng.next(60_000))") }   // warm the pool and caches
        try await db.flushTelemetry(now: Date().addingTimeInterval(-7200))

        for _ in 0..<600 { _ = try await orders.get("d\(rng.next(60_000))") }   // point reads alone
        let stop = ContinuousClock.now + .seconds(6)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {   // reporting scans, four per core of this machine
                group.addTask { while ContinuousClock.now < stop { _ = try await orders.count(.field("amount") > 500) } }
            }
            group.addTask {
                var r = LCG(s: 17)
                while ContinuousClock.now < stop { _ = try await orders.get("d\(r.next(60_000))") }
            }
            try await group.waitForAll()
        }
        try await db.flushTelemetry()
        let report = try await Advisor(db: db).report(window: .seconds(3600))
        try await db.close()

        let interference = try #require(report.profiles.first?.interference)
        #expect(interference.readsAlone >= 200 && interference.readsDuringScans >= 30, "\(interference)")
        let r = try #require(report.recommendations.first { $0.rule == "analytics-projection" },
                             "p99 \(interference.p99DuringScansMs) ms during scans vs \(interference.p99AloneMs) ms without: \(report.recommendations.map(\.rule))")
        #expect(r.dataset == "orders" && r.kind == .add)
        #expect(interference.factor >= 2, "\(interference)")
        #expect(r.dataMapDiff?.contains("kind: analytics") == true, "\(r.dataMapDiff ?? "")")
        #expect(report.plan.phases[4].status == "triggered")
    }
}
