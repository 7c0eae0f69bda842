import Foundation
import Polyglot
import PolyglotSQLite
import Testing

/// Workload scenarios on the embedded engine (SQLite + the in-process cache), each with the advice it must get.
/// Every figure the rules read is measured by the real engines through the facade, except where a test says it
/// injects one (volumes this machine cannot hold).
@Suite struct AdvisorScenarioTests {
    func open(_ yaml: String, dir: String = tempDir()) async throws -> Polyglot {
        try await Polyglot(map: DataMap(yaml: yaml, baseDirectory: dir), registry: .embedded)
    }

    // Scenarios that must get "stay" raise the latency targets (10 ms reads, 50 ms nearest by default) to 100 ms
    // and 500 ms: latency is wall-clock time, and on a loaded CI machine 1% of reads can wait 10 ms for a thread;
    // these tests check the rules, not the machine's speed.

    /// A deterministic generator, so scenarios do the same work on every run.
    struct LCG { var s: UInt64; mutating func next(_ n: Int) -> Int { s = s &* 6364136223846793005 &+ 1442695040888963407; return Int((s >> 33) % UInt64(n)) } }

    @Test func uniformFastReadsGetNoChange() async throws {
        let db = try await open("""
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          products: { model: documents, engine: primary, fields: { category: string } }
        advisor: { sampleEvery: 1, readTarget: 100ms, vectorTarget: 500ms }
        """)
        let products = try db.documents("products")
        try await products.putMany((0..<1000).map { ("p\($0)", ["name": .string("product \($0)"), "category": .string("c\($0 % 10)")]) })
        var rng = LCG(s: 1)
        for _ in 0..<2000 { _ = try await products.get("p\(rng.next(1000))") }
        for i in 0..<40 { _ = try await products.query(.field("category") == .string("c\(i % 10)")) }
        try await db.flushTelemetry()
        let report = try await Advisor(db: db).report(window: .seconds(3600))
        try await db.close()

        let mine = report.recommendations.filter { $0.dataset == "products" }
        #expect(mine.map(\.rule) == ["stay"], "\(mine.map(\.action))")
        #expect(mine.first?.confidence == .high)
        #expect(mine.first?.evidence.contains { $0.metric == "point-read p99" && $0.crossed == false } == true)
        let profile = try #require(report.profiles.first { $0.dataset == "products" })
        #expect(profile.pointReads?.count == 2000)
        #expect(profile.sampledAccesses == 2000 && profile.sampleEvery == 1)
        #expect((800...1000).contains(profile.workingSet ?? 0), "2000 uniform reads of 1000 keys read about 865 of them: \(String(describing: profile.workingSet))")
        let examined = try #require(profile.examined, "SQLite reports rows examined")
        #expect(examined.ratio < 2, "an indexed filter examines about what it returns: \(examined)")
        #expect(profile.size?.rows == 1000)
    }

    /// Telemetry and observations older than `advisor.keepHistory` are deleted by a later flush; newer ones stay.
    @Test func historyOlderThanKeepHistoryIsDeleted() async throws {
        let db = try await open("""
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          products: { model: documents, engine: primary }
        advisor: { sampleEvery: 1, keepHistory: 7d }
        """)
        let products = try db.documents("products")
        let now = Date()
        try await products.put("a", ["n": 1])
        _ = try await products.get("a")
        try await db.flushTelemetry(now: now.addingTimeInterval(-10 * 86_400))   // an interval that ended 10 days ago
        let oldRecords = try await db.telemetryHistory()
        let oldObservations = try await db.observationHistory()
        #expect(!oldRecords.isEmpty && !oldObservations.isEmpty, "the first flush persisted both")

        _ = try await products.get("a")
        try await db.flushTelemetry(now: now.addingTimeInterval(-2 * 86_400))    // prunes what ended before 9 days ago
        let cutoff = now.addingTimeInterval(-9 * 86_400)
        let records = try await db.telemetryHistory()
        let observations = try await db.observationHistory()
        try await db.close()
        #expect(!records.isEmpty && !observations.isEmpty, "the interval of 2 days ago is kept")
        #expect(records.allSatisfy { $0.intervalEnd >= cutoff }, "\(records.map(\.intervalEnd))")
        #expect(observations.allSatisfy { $0.intervalEnd >= cutoff }, "\(observations.map(\.intervalEnd))")
    }

    @Test func aFilterScanningAThousandTimesWhatItReturnsGetsAnIndexFirst() async throws {
        let dir = tempDir()
        let yaml = """
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          events: { model: documents, engine: primary }
        advisor: { sampleEvery: 1, readTarget: 100ms, vectorTarget: 500ms }
        """
        var db = try await open(yaml, dir: dir)
        var events = try db.documents("events")
        for batch in 0..<10 {
            try await events.putMany((0..<1000).map { i in
                let n = batch * 1000 + i
                return ("e\(n)", ["group": .number(Double(n / 10)), "payload": .string(String(repeating: "x", count: 40))])
            })
        }
        for g in 0..<30 { #expect(try await events.query(.field("group") == .number(Double(g * 7))).count == 10) }
        let before = Date().addingTimeInterval(-7200)
        try await db.flushTelemetry(now: before)
        let advice = try await Advisor(db: db).advise(window: .seconds(3 * 3600))
        try await db.close()

        let r = try #require(advice.first { $0.dataset == "events" })
        #expect(r.rule == "missing-index" && r.kind == .optimize, "\(r.rule): \(r.action)")
        #expect(r.confidence == .high, "\(r.confidenceReason)")
        let ratio = try #require(r.evidence.first { $0.metric == "rows examined per row returned" })
        #expect(ratio.crossed == true && (ratio.value == "1000×" || ratio.value == "1001×"), "\(ratio.text)")
        #expect(r.dataMapDiff?.contains("+     fields: { group: number }") == true, "\(r.dataMapDiff ?? "")")

        // Apply the advice and run the same queries: the index is used and the finding goes away.
        var fixed = try DataMap(yaml: yaml, baseDirectory: dir)
        fixed.datasets[0].fields = [FieldSpec("group", .number)]
        db = try await Polyglot(map: fixed, registry: .embedded)
        events = try db.documents("events")
        for g in 0..<30 { #expect(try await events.query(.field("group") == .number(Double(g * 7))).count == 10) }
        try await db.flushTelemetry()
        let after = try await Advisor(db: db).report(window: .seconds(3600))
        try await db.close()
        #expect(after.recommendations.first { $0.dataset == "events" }?.rule == "stay")
        let examined = try #require(after.profiles.first?.examined)
        #expect(examined.ratio < 2, "with the index the engine examines what it returns: \(examined)")
    }

    @Test func aCacheHittingThirtyPercentIsChangedOrRemoved() async throws {
        let db = try await open("""
        engines:
          primary: { kind: sqlite, path: app.sqlite }
          cache: { kind: memory, options: { maxEntries: 300 } }
        datasets:
          products:
            model: documents
            engine: primary
            projections: [ { kind: cache, engine: cache, ttl: 5m } ]
        advisor: { sampleEvery: 1 }
        """)
        let products = try db.documents("products")
        try await products.putMany((0..<1000).map { ("p\($0)", ["name": .string("product \($0)")]) })
        var rng = LCG(s: 3)
        for _ in 0..<6000 { _ = try await products.get("p\(rng.next(1000))") }
        try await db.flushTelemetry()
        let report = try await Advisor(db: db).report(window: .seconds(3600))
        try await db.close()

        let profile = try #require(report.profiles.first { $0.dataset == "products" })
        let measured = try #require(profile.cache?.hitRate)
        #expect(measured > 0.2 && measured < 0.4, "300 entries over 1000 uniform keys hit about 30%: \(measured)")
        let at300 = try #require(profile.cacheEstimates.first { $0.entries == 300 }?.hitRate)
        #expect(abs(at300 - measured) < 0.05, "the simulated cache of the real one's size predicts what it measured: \(at300) vs \(measured)")
        let r = try #require(report.recommendations.first { $0.dataset == "products" })
        #expect(r.rule == "cache-hit-rate" && r.kind == .antiPattern, "\(r.rule): \(r.action)")
        #expect(r.action.hasPrefix("Grow") || r.action.hasPrefix("Remove"))
        #expect(r.evidence.first { $0.metric == "cache hit rate" }?.crossed == true)
        #expect(r.dataMapDiff?.isEmpty == false)
    }

    @Test func aTableWhoseColumnsChangeDailyMovesToDocuments() async throws {
        let dir = tempDir()
        let columns = ["kind: string", "source: string", "campaign: string", "device: string"]
        let today = Date()
        for day in 0..<4 {
            let cols = columns.prefix(day + 1).joined(separator: ", ")
            let db = try await open("""
            engines:
              primary: { kind: sqlite, path: app.sqlite }
            datasets:
              events: { model: table, engine: primary, primaryKey: id, columns: { id: integer!, \(cols) } }
            """, dir: dir)
            let events = try db.table("events")
            for i in 0..<20 {
                var row: Row = ["id": .number(Double(day * 100 + i)), "kind": "click"]
                if day >= 1 { row["source"] = "ad" }
                if day >= 2 { row["campaign"] = "spring" }
                if day >= 3 { row["device"] = "phone" }
                try await events.upsert(row)
            }
            // Each process's interval is laid on its own day.
            try await db.flushTelemetry(now: today.addingTimeInterval(Double(day - 3) * 86_400))
            try await db.close()
        }
        let db = try await open("""
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          events: { model: table, engine: primary, primaryKey: id, columns: { id: integer!, \(columns.joined(separator: ", ")) } }
        """, dir: dir)
        let report = try await Advisor(db: db).report(window: .seconds(7 * 86_400), now: today.addingTimeInterval(60))
        try await db.close()
        let churn = try #require(report.profiles.first?.schema)
        #expect(churn.daysObserved == 4 && churn.changesPerDay == 1, "\(churn)")
        let r = try #require(report.recommendations.first { $0.dataset == "events" })
        #expect(r.rule == "move-to-documents" && r.kind == .change, "\(r.rule): \(r.action)")
        #expect(r.dataMapDiff?.contains("+     model: documents") == true, "\(r.dataMapDiff ?? "")")
        #expect(r.dataMapDiff?.contains("-     primaryKey: id") == true)
        #expect(report.plan.phases[2].status == "triggered")
    }

    @Test func vectorsPastTheThresholdGetADedicatedIndex() async throws {
        let db = try await open("""
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          chunks: { model: vectors, engine: primary, dimension: 8 }
        advisor: { sampleEvery: 1, readTarget: 100ms, vectorTarget: 500ms }
        """)
        let chunks = try db.vectors("chunks")
        var rng = LCG(s: 9)
        func vector() -> [Float] { (0..<8).map { _ in Float(rng.next(1000)) / 1000 } }
        try await chunks.upsert((0..<300).map { VectorRecord(id: "c\($0)", vector: vector(), metadata: nil) })
        for _ in 0..<200 { _ = try await chunks.nearest(to: vector(), k: 5) }
        try await db.flushTelemetry()
        let measured = try await Advisor(db: db).report(window: .seconds(3600))
        let profile = try #require(measured.profiles.first)
        #expect(profile.size?.vectors == 300 && profile.size?.dimension == 8, "the engine reports the vector count: \(String(describing: profile.size))")
        #expect(profile.vectorQueries?.count == 200)
        #expect(measured.recommendations.first?.rule == "stay", "300 vectors answered fast need nothing")

        // Three million 768-dimensional vectors do not fit this machine: the size is injected as an engine would
        // persist it, and read back through the same profile code.
        var big = WorkloadObservation(dataset: "chunks", engine: "primary", intervalStart: Date(), intervalEnd: Date().addingTimeInterval(1), model: .vectors)
        big.size = DatasetSize(rows: 3_000_000, bytes: 9_400_000_000, vectors: 3_000_000, dimension: 768)
        try await db.recordObservations([big])
        let report = try await Advisor(db: db).report(window: .seconds(3600), now: Date().addingTimeInterval(2))
        try await db.close()
        let r = try #require(report.recommendations.first { $0.dataset == "chunks" })
        #expect(r.rule == "dedicated-vector-index" && r.kind == .add, "\(r.rule): \(r.action)")
        #expect(r.evidence.contains { $0.metric == "vectors" && $0.value == "3,000,000" && $0.crossed == true })
        #expect(r.dataMapDiff?.contains("kind: chroma") == true)
    }
}

/// Reads that examine many rows by design are not missing an index.
@Suite struct AdvisorNoFalseIndexTests {
    @Test func countsAndAggregatesOverManyRowsAreNotMissingAnIndex() async throws {
        let db = try await Polyglot(map: DataMap(yaml: """
        engines:
          primary: { kind: sqlite, path: app.sqlite }
        datasets:
          events: { model: documents, engine: primary, fields: { kind: string } }
          views: { model: timeSeries, engine: primary }
        advisor: { sampleEvery: 1 }
        """, baseDirectory: tempDir()), registry: .embedded)
        let events = try db.documents("events")
        try await events.putMany((0..<5000).map { ("e\($0)", ["kind": .string($0 % 2 == 0 ? "click" : "view")]) })
        let views = try db.timeSeries("views")
        let start = Date().addingTimeInterval(-3600)
        try await views.append((0..<5000).map { Sample(series: "home", time: start.addingTimeInterval(Double($0) * 0.5), value: 1) })
        for _ in 0..<10 {
            _ = try await events.count()
            _ = try await events.count(.field("kind") == "click")
            _ = try await events.query(.all, limit: 20)
            _ = try await views.aggregate("home", from: start, to: Date(), bucket: .seconds(600))
        }
        try await db.flushTelemetry()
        let advice = try await Advisor(db: db).advise(window: .seconds(3600))
        try await db.close()
        #expect(!advice.contains { $0.rule == "missing-index" }, "\(advice.map { "\($0.dataset): \($0.rule)" })")
    }
}
