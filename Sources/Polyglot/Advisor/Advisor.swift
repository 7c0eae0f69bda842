import Foundation

/// Turns the persisted telemetry of a data map into recommendations, each with its evidence, following the
/// decision framework: add a database only for a measured problem, optimize first, and otherwise stay as you are.
///
/// ```swift
/// let db = try await Polyglot(map: DataMap(contentsOf: "polyglot.yml"), registry: registry)
/// let report = try await Advisor(db: db).report(window: .seconds(7 * 86_400))
/// for r in report.recommendations {
///     print(r.dataset, r.kind, r.action)
///     for e in r.evidence { print("  ", e.text) }
///     if let diff = r.dataMapDiff { print(diff) }
/// }
/// ```
///
/// Everything it returns is `Codable`, so a server can send it as JSON and a dashboard can render it.
public struct Advisor: Sendable {
    public let map: DataMap
    let load: @Sendable (Date) async throws -> (records: [TelemetryRecord], observations: [WorkloadObservation])

    /// Reads the history `db` persisted (flush first to include the current interval: ``Polyglot/flushTelemetry(now:)``).
    public init(db: Polyglot) {
        map = db.map
        load = { since in (try await db.telemetryHistory(since: since), try await db.observationHistory(since: since)) }
    }

    /// Advises on history given directly (for instance exported from another system).
    public init(map: DataMap, records: [TelemetryRecord], observations: [WorkloadObservation]) {
        self.map = map
        load = { _ in (records, observations) }
    }

    /// The recommendations for the window that ends at `now`, anti-patterns and "optimize first" findings before
    /// additions, and "stay as you are" (with its numbers) for every dataset nothing is wrong with.
    public func advise(window: Duration, now: Date = Date()) async throws -> [Recommendation] {
        try await report(window: window, now: now).recommendations
    }

    /// Profiles, recommendations, the rollout plan and the five-question audit for the window ending at `now`.
    public func report(window: Duration, now: Date = Date()) async throws -> AdvisorReport {
        let seconds = Fmt.seconds(window)
        guard seconds > 0, seconds.isFinite else {
            throw PolyglotError(.invalidArgument, "The advisor's window \(window) is not positive.",
                                fix: "Pass a window such as 1h, 24h or 7d.")
        }
        let from = now.addingTimeInterval(-seconds)
        let (records, observations) = try await load(from)
        return AdvisorReport.build(map: map, records: records, observations: observations, from: from, to: now)
    }
}

/// Everything the advisor concluded for one window.
public struct AdvisorReport: Sendable, Hashable, Codable {
    public var from: Date
    public var to: Date
    /// Telemetry intervals read.
    public var intervals: Int
    public var profiles: [DatasetProfile]
    public var recommendations: [Recommendation]
    public var plan: RolloutPlan
    public var audit: [DatasetAudit]

    public static func build(map: DataMap, records: [TelemetryRecord], observations: [WorkloadObservation], from: Date, to: Date) -> AdvisorReport {
        let inWindow = records.filter { $0.intervalEnd > from && $0.intervalStart <= to }
        let obs = observations.filter { $0.intervalEnd > from && $0.intervalStart <= to }
        let profiles = WorkloadProfiler(map: map).profiles(records: inWindow, observations: obs, from: from, to: to)
        var traffic: [String: UInt64] = [:]
        for r in inWindow where r.key.dataset != "*" { traffic[r.key.engine, default: 0] += r.stats.count }
        let large = Fmt.seconds(map.advisor.largeScan)
        var scans: [String: [String: Int]] = [:]
        for o in obs {
            let n = o.scans.filter { Double($0.nanoseconds) / 1e9 >= large }.count
            if n > 0 { scans[o.engine, default: [:]][o.dataset, default: 0] += n }
        }
        let rules = AdvisorRules(map: map, profiles: profiles, engineTraffic: traffic, largeScansByEngine: scans)
        let recommendations = rules.recommendations()
        let transactions = inWindow.filter { $0.key.dataset == "*" && $0.key.operation == "transaction" }
            .reduce(into: [String: UInt64]()) { $0[$1.key.engine, default: 0] += $1.stats.count }
        return AdvisorReport(from: from, to: to, intervals: Set(inWindow.map(\.intervalEnd)).count, profiles: profiles,
                             recommendations: recommendations,
                             plan: RolloutPlan.build(map: map, profiles: profiles, recommendations: recommendations),
                             audit: DatasetAudit.build(map: map, profiles: profiles, transactions: transactions))
    }
}

/// The rollout path of the framework, with where this system stands and what measurement starts the next phase.
public struct RolloutPlan: Sendable, Hashable, Codable {
    public struct Phase: Sendable, Hashable, Codable {
        public var number: Int
        public var name: String
        /// `in place`, `triggered` (measured need, not in place), or `not needed yet`.
        public var status: String
        /// The measured trigger and today's value.
        public var trigger: String
        /// Datasets whose measurements trigger it.
        public var datasets: [String]
    }
    public var phases: [Phase]
    /// The last phase of the unbroken run of phases in place from phase 1 (later phases may be in place too).
    public var current: Int
    /// The first phase not in place, if any.
    public var next: Int?

    static func build(map: DataMap, profiles: [DatasetProfile], recommendations: [Recommendation]) -> RolloutPlan {
        let s = map.advisor
        func triggered(_ rules: Set<String>) -> [String] {
            Array(Set(recommendations.filter { rules.contains($0.rule) }.map(\.dataset))).sorted()
        }
        let durable = map.engines.contains { AdvisorRules.durableKinds.contains($0.kind) }
        let hasCache = map.datasets.contains { $0.projection(.cache) != nil }
        let hasDocuments = map.datasets.contains { $0.model == .documents }
        let hasVectors = map.datasets.contains { $0.model == .vectors || $0.projection(.vectors) != nil }
        let hasAnalytics = map.datasets.contains { $0.projection(.analytics) != nil }
        let worstRead = profiles.compactMap { p in p.pointReads.map { (p.dataset, $0.p99) } }.max { $0.1 < $1.1 }
        let worstChurn = profiles.compactMap { p in p.schema.flatMap { $0.daysObserved >= 2 ? (p.dataset, $0.changesPerDay) : nil } }.max { $0.1 < $1.1 }
        let vectorCount = profiles.compactMap { p in p.size?.vectors.map { (p.dataset, $0) } }.max { $0.1 < $1.1 }
        let worstInterference = profiles.compactMap { p in p.interference.flatMap { $0.readsDuringScans > 0 ? (p.dataset, $0.factor) : nil } }.max { $0.1 < $1.1 }
        func status(_ inPlace: Bool, _ t: [String]) -> String { inPlace ? "in place" : (t.isEmpty ? "not needed yet" : "triggered") }
        let cacheT = triggered(["add-cache"]), docT = triggered(["move-to-documents"]), vecT = triggered(["dedicated-vector-index", "embedded-vector-index"])
        let anaT = triggered(["analytics-projection"])
        let phases = [
            Phase(number: 1, name: "One general-purpose database (SQLite embedded, PostgreSQL in production)", status: durable ? "in place" : "triggered",
                  trigger: "always the start", datasets: []),
            Phase(number: 2, name: "Cache", status: status(hasCache, cacheT),
                  trigger: "point-read p99 over \(Fmt.ms(s.readTarget)) with keys a cache would serve at ≥ \(Fmt.pct(s.hitRateTarget)); now: "
                    + (worstRead.map { "worst p99 \(Fmt.ms($0.1)) ('\($0.0)')" } ?? "no point reads measured"), datasets: cacheT),
            Phase(number: 3, name: "Document store", status: status(hasDocuments && docT.isEmpty, docT),
                  trigger: "schema changes ≥ \(YAMLText.number(s.schemaChangesPerDay))/day on a table; now: "
                    + (worstChurn.map { String(format: "%.1f/day ('%@')", $0.1, $0.0) } ?? "under two days of schema history"), datasets: docT),
            Phase(number: 4, name: "Vectors (pgvector first, embedded HNSW, dedicated past a few million)", status: hasVectors ? (vecT.isEmpty ? "in place" : "triggered") : "not needed yet",
                  trigger: "an AI feature needs embeddings; dedicated index past \(Fmt.count(s.vectorThreshold)) vectors or nearest p99 over \(Fmt.ms(s.vectorTarget)); now: "
                    + (vectorCount.map { "\(Fmt.count($0.1)) vectors ('\($0.0)')" } ?? (hasVectors ? "no size measured yet" : "no vectors")), datasets: vecT),
            Phase(number: 5, name: "Analytics store fed by the outbox", status: status(hasAnalytics, anaT),
                  trigger: "point-read p99 during large scans ≥ \(Fmt.ratio(s.interferenceFactor)) of without; now: "
                    + (worstInterference.map { "\(Fmt.ratio($0.1)) ('\($0.0)')" } ?? "no reads overlapped a large scan"), datasets: anaT),
        ]
        // The current phase is the end of the path walked so far: every phase up to it is in place.
        let current = phases.prefix { $0.status == "in place" }.last?.number ?? 0
        let next = phases.first { $0.status != "in place" }?.number
        return RolloutPlan(phases: phases, current: current, next: next)
    }
}

/// The framework's five questions answered for one dataset, and the kinds of engine its data belongs in.
public struct DatasetAudit: Sendable, Hashable, Codable {
    public struct Answer: Sendable, Hashable, Codable {
        public var question: String
        public var answer: String
        /// Whether the answer is yes (the engine kind applies).
        public var yes: Bool
        public var engineKind: String
    }
    public var dataset: String
    public var model: String
    public var engine: String
    public var answers: [Answer]
    /// The engine kinds the answers point to, the relational or document store first.
    public var belongsIn: [String]

    static func build(map: DataMap, profiles: [DatasetProfile], transactions: [String: UInt64]) -> [DatasetAudit] {
        let s = map.advisor
        return profiles.map { p in
            let spec = map.dataset(named: p.dataset)
            var answers: [Answer] = []
            let tx = transactions[p.engine] ?? 0
            let acid = (p.model == .table || tx > 0) && p.writes > 0
            answers.append(Answer(question: "Needs ACID transactions?",
                                  answer: tx > 0 ? "\(Fmt.count(tx)) transactions on '\(p.engine)' in the window" : (p.model == .table ? "a table with \(Fmt.count(p.writes)) writes; no multi-statement transaction measured" : "no transaction measured"),
                                  yes: acid, engineKind: "relational (PostgreSQL / SQLite)"))
            let churn = p.schema.flatMap { $0.daysObserved >= 2 ? $0.changesPerDay : nil }
            answers.append(Answer(question: "Schema changes faster than deploys?",
                                  answer: churn.map { String(format: "%.1f changes/day (%@) vs %@/day", $0, p.schema!.source, YAMLText.number(s.schemaChangesPerDay)) } ?? "under two days of schema history",
                                  yes: (churn ?? 0) >= s.schemaChangesPerDay || p.model == .documents && (churn ?? 0) > 0,
                                  engineKind: "document store (JSONB / JSON documents)"))
            let target = Fmt.seconds(s.readTarget) * 1000
            let readsSlow = (p.pointReads.map { Int($0.count) >= s.minSamples && $0.p99 > target } ?? false)
            answers.append(Answer(question: "Read latency must be < \(Fmt.ms(s.readTarget)) and is not?",
                                  answer: (spec?.projection(.cache) != nil && !readsSlow ? "served through a cache: " : "")
                                    + (p.pointReads.map { "point-read p99 \(Fmt.ms($0.p99)) over \(Fmt.count($0.count)) reads" + (p.cache?.hitRate.map { ", cache hit rate \(Fmt.pct($0))" } ?? "") } ?? "no point reads measured"),
                                  yes: readsSlow || spec?.projection(.cache) != nil, engineKind: "cache layer (in-process, Redis, memcached)"))
            let vectorOps = p.vectorQueries?.count ?? 0
            answers.append(Answer(question: "Semantic / similarity search?",
                                  answer: vectorOps > 0 ? "\(Fmt.count(vectorOps)) nearest-neighbour queries" + (p.size?.vectors.map { ", \(Fmt.count($0)) vectors" } ?? "") : "no vector queries measured",
                                  yes: vectorOps > 0 || p.model == .vectors, engineKind: "vector index (pgvector, embedded HNSW, dedicated past a few million)"))
            let scans = p.mix[OperationClass.aggregateScan.rawValue] ?? 0
            let reads = p.reads
            let share = reads == 0 ? 0 : Double(scans) / Double(reads)
            answers.append(Answer(question: "Analytics, not operations?",
                                  answer: reads == 0 ? "no reads measured" : "\(Fmt.pct(share)) of reads are aggregates or scans; \(p.largeScans) large scans",
                                  yes: share >= 0.5 || spec?.projection(.analytics) != nil, engineKind: "analytics store fed by the outbox"))
            var kinds = answers.filter(\.yes).map(\.engineKind)
            if kinds.isEmpty || !(answers[0].yes || answers[1].yes) {
                kinds.insert(p.model == .documents ? "document store (JSONB / JSON documents)" : "relational (PostgreSQL / SQLite)", at: 0)
            }
            var seen = Set<String>()
            return DatasetAudit(dataset: p.dataset, model: p.model?.rawValue ?? "?", engine: "\(p.engine) (\(p.engineKind))",
                                answers: answers, belongsIn: kinds.filter { seen.insert($0).inserted })
        }
    }
}
