import Foundation

/// The decision framework as rules over measured ``DatasetProfile``s. Pure: the same profiles always give the same
/// advice, so the rules are tested without servers and the server can render what they return.
public struct AdvisorRules: Sendable {
    public var map: DataMap
    public var profiles: [DatasetProfile]
    /// Operations per engine in the window (any dataset), for the "too many engines" check.
    public var engineTraffic: [String: UInt64]
    /// Large scans per engine, by the dataset (or `sql`) that ran them.
    public var largeScansByEngine: [String: [String: Int]]

    var s: AdvisorSettings { map.advisor }
    var readTargetMs: Double { Fmt.seconds(s.readTarget) * 1000 }
    var thresholdRead: String { "\(Fmt.ms(s.readTarget)) (advisor.readTarget)" }
    var thresholdHit: String { "\(Fmt.pct(s.hitRateTarget)) (advisor.hitRateTarget)" }

    static let volatileKinds: Set<String> = ["memory", "memcached", "redis"]
    static let durableKinds: Set<String> = ["sqlite", "postgres"]

    public init(map: DataMap, profiles: [DatasetProfile], engineTraffic: [String: UInt64] = [:], largeScansByEngine: [String: [String: Int]] = [:]) {
        self.map = map; self.profiles = profiles; self.engineTraffic = engineTraffic; self.largeScansByEngine = largeScansByEngine
    }

    /// Every recommendation, anti-patterns and "optimize first" before additions, "stay as you are" last.
    public func recommendations() -> [Recommendation] {
        var out: [Recommendation] = []
        out += cacheAsSourceOfTruth()
        out += tooManyEngines()
        for p in profiles {
            guard let spec = map.dataset(named: p.dataset) else { continue }
            out += missingIndex(p, spec)
            out += readLatency(p, spec)
            out += cacheHitRate(p, spec)
            out += schemaChurn(p, spec)
            out += vectors(p, spec)
        }
        out += interference()
        out += reportsOnSource(excluding: Set(out.filter { $0.rule == "analytics-projection" }.compactMap { map.dataset(named: $0.dataset)?.engine }))
        let advised = Set(out.map(\.dataset))
        for p in profiles where !advised.contains(p.dataset) { out.append(stay(p)) }
        let order = Dictionary(uniqueKeysWithValues: map.datasets.enumerated().map { ($1.name, $0) })
        return out.enumerated().sorted { a, b in
            (a.element.rank, order[a.element.dataset] ?? -1, a.offset) < (b.element.rank, order[b.element.dataset] ?? -1, b.offset)
        }.map(\.element)
    }

    // MARK: Helpers

    func confidence(samples: Int, strong: Int, weak: Int, clear: Bool) -> (Recommendation.Confidence, String) {
        if samples >= strong && clear { return (.high, "\(Fmt.count(samples)) measured samples, well past the threshold") }
        if samples >= weak { return (.medium, "\(Fmt.count(samples)) measured samples\(clear ? "" : "; the margin over the threshold is small")") }
        return (.low, "only \(Fmt.count(samples)) measured samples")
    }

    /// The durable engine datasets move to: the telemetry store, else the first sqlite or postgres engine.
    var primaryEngine: EngineSpec? {
        if let name = map.telemetry.store, let e = map.engine(named: name) { return e }
        return map.engines.first { Self.durableKinds.contains($0.kind) }
    }

    func kind(of engine: String) -> String { map.engine(named: engine)?.kind ?? "?" }

    func usedEngines(_ m: DataMap) -> Set<String> {
        var used = Set<String>()
        for d in m.datasets { used.insert(d.engine); for p in d.projections { used.insert(p.engine) } }
        if let t = m.telemetry.store { used.insert(t) }
        return used
    }

    // MARK: Anti-patterns

    func cacheAsSourceOfTruth() -> [Recommendation] {
        var out: [Recommendation] = []
        for spec in map.datasets {
            let kind = kind(of: spec.engine)
            guard Self.volatileKinds.contains(kind) else { continue }
            let p = profiles.first { $0.dataset == spec.name }
            let writes = p?.writes ?? 0
            let durable = primaryEngine
            var diff: String?
            if let durable {
                diff = YAMLDiff.change(map) { m in
                    if let i = m.datasets.firstIndex(where: { $0.name == spec.name }) { m.datasets[i].engine = durable.name }
                }.diff
            }
            let (confidence, reason): (Recommendation.Confidence, String) = switch (kind, spec.ttl == nil) {
            case ("redis", true): (.medium, "Redis can persist (AOF, RDB), but that is configured outside the data map; with appendfsync everysec a crash still loses up to a second of writes")
            case ("redis", false): (.low, "keys expire after \(spec.ttl.map(Fmt.ms) ?? "?"), so the data may be meant to be disposable (sessions); Redis persistence is configured outside the map")
            case (_, true): (.high, "a \(kind) engine keeps nothing across a restart, and the keys have no TTL, so they are meant to last")
            default: (.medium, "a \(kind) engine keeps nothing across a restart; the keys expire after \(spec.ttl.map(Fmt.ms) ?? "?"), so losing them may be acceptable")
            }
            out.append(Recommendation(
                dataset: spec.name, rule: "cache-as-source-of-truth", kind: .antiPattern,
                action: "Keep '\(spec.name)' on a durable engine\(durable.map { " ('\($0.name)', \($0.kind))" } ?? ""); if it must be fast, read it through a cache projection instead of storing it only in a cache.",
                evidence: [Evidence("source of truth", "engine '\(spec.engine)' (\(kind)), which is a cache"),
                           Evidence("writes in the window", Fmt.count(writes)),
                           Evidence("key TTL", spec.ttl.map(Fmt.ms) ?? "none: keys are meant to last")],
                expectedEffect: "No data loss when the \(kind) engine restarts or evicts; reads stay fast through a cache projection where the dataset is documents.",
                confidence: confidence, confidenceReason: reason, dataMapDiff: diff))
        }
        return out
    }

    func tooManyEngines() -> [Recommendation] {
        let used = usedEngines(map)
        guard map.engines.count >= s.maxEngines else { return [] }
        var unneeded: [(String, String)] = []
        var evidence = [Evidence("engines", "\(map.engines.count)", threshold: "\(s.maxEngines) (advisor.maxEngines)", crossed: true)]
        for e in map.engines {
            let ops = engineTraffic[e.name] ?? 0
            if !used.contains(e.name) { unneeded.append((e.name, "nothing is placed on it")); continue }
            if ops == 0 { unneeded.append((e.name, "no operation in the window")); continue }
            let caches = profiles.compactMap(\.cache).filter { $0.engine == e.name }
            let onlyCache = !map.datasets.contains { $0.engine == e.name || $0.projections.contains { $0.engine == e.name && $0.kind != .cache } }
            if onlyCache, !caches.isEmpty, caches.allSatisfy({ ($0.hitRate ?? 0) < s.hitRateTarget }) {
                unneeded.append((e.name, "its caches hit \(caches.map { Fmt.pct($0.hitRate ?? 0) }.joined(separator: ", ")), under \(thresholdHit)"))
                continue
            }
            evidence.append(Evidence("engine '\(e.name)' (\(e.kind))", "\(Fmt.count(ops)) operations"))
        }
        guard !unneeded.isEmpty else { return [] }
        for (name, why) in unneeded { evidence.append(Evidence("engine '\(name)'", "no measured need: \(why)")) }
        let names = Set(unneeded.map(\.0))
        let primary = primaryEngine?.name
        let diff = YAMLDiff.change(map) { m in
            for i in m.datasets.indices {
                if names.contains(m.datasets[i].engine), let primary, !names.contains(primary) { m.datasets[i].engine = primary }
                m.datasets[i].projections.removeAll { names.contains($0.engine) }
            }
            if let t = m.telemetry.store, names.contains(t) { m.telemetry.store = nil }
            m.engines.removeAll { e in names.contains(e.name) && !m.datasets.contains { d in d.engine == e.name } }
        }.diff
        return [Recommendation(
            dataset: "*", rule: "too-many-engines", kind: .antiPattern,
            action: "Remove \(unneeded.map { "'\($0.0)'" }.joined(separator: ", ")): \(map.engines.count) engines, and the measurements show no need for \(unneeded.count == 1 ? "this one" : "these").",
            evidence: evidence,
            expectedEffect: "Fewer engines to run, secure, back up and keep consistent, with no measured loss: nothing measured depends on \(unneeded.count == 1 ? "it" : "them").",
            confidence: unneeded.allSatisfy { $0.1 == "nothing is placed on it" } ? .high : .medium,
            confidenceReason: "an engine without traffic in this window may still serve rare jobs (monthly reports, backfills); check before removing",
            dataMapDiff: diff)]
    }

    /// Large scans on an engine that also serves point reads, when no interference was measured (yet).
    func reportsOnSource(excluding engines: Set<String>) -> [Recommendation] {
        var out: [Recommendation] = []
        for (engine, byDataset) in largeScansByEngine.sorted(by: { $0.key < $1.key }) where !engines.contains(engine) {
            let readers = profiles.filter { $0.engine == engine && ($0.pointReads?.count ?? 0) > 0 }
            guard !readers.isEmpty else { continue }
            let scans = byDataset.values.reduce(0, +)
            let scanners = byDataset.filter { name, _ in map.dataset(named: name)?.projection(.analytics) == nil }
            guard !scanners.isEmpty else { continue }
            var evidence = [Evidence("large scans on '\(engine)'", "\(scans) (\(byDataset.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))",
                                     threshold: "≥ \(Fmt.ms(s.largeScan)) each (advisor.largeScan)", crossed: true)]
            var measured = false
            for r in readers {
                if let i = r.interference, i.readsDuringScans > 0 {
                    measured = true
                    evidence.append(Evidence("'\(r.dataset)' point-read p99 during scans vs without", "\(Fmt.ms(i.p99DuringScansMs)) vs \(Fmt.ms(i.p99AloneMs)) (\(Fmt.ratio(i.factor)), \(i.readsDuringScans) vs \(i.readsAlone) sampled reads)",
                                             threshold: "\(Fmt.ratio(s.interferenceFactor)) (advisor.interferenceFactor)", crossed: false))
                } else {
                    evidence.append(Evidence("'\(r.dataset)' point reads", "\(Fmt.count(r.pointReads?.count ?? 0)) on the same engine"))
                }
            }
            let target = scanners.keys.sorted().first!
            out.append(Recommendation(
                dataset: map.dataset(named: target) != nil ? target : "*", rule: "reports-on-source", kind: .antiPattern,
                action: "Reporting scans (\(scanners.keys.sorted().joined(separator: ", "))) run on '\(engine)', the engine that serves point reads. Watch the point-read p99; move the reports to an analytics projection when it degrades.",
                evidence: evidence,
                expectedEffect: measured ? "None measured yet: point reads are not slowed past the threshold while the scans run." : "Unknown: no sampled point read overlapped a large scan in this window.",
                confidence: .medium, confidenceReason: "the scans are measured; their harm is not (yet)"))
        }
        return out
    }

    // MARK: Optimize first

    func missingIndex(_ p: DatasetProfile, _ spec: DatasetSpec) -> [Recommendation] {
        guard let e = p.examined, e.measured >= 3 else { return [] }
        let perQuery = Double(e.examined) / Double(e.measured)
        let returned = Double(e.returned) / Double(e.measured)
        guard e.ratio >= s.scanRatio, perQuery >= Double(s.minRowsExamined) else { return [] }
        let bad = p.queryShapes.filter { $0.rows.ratio >= s.scanRatio }
        var evidence = [
            Evidence("rows examined per row returned", Fmt.ratio(e.ratio), threshold: "\(Fmt.ratio(s.scanRatio)) (advisor.scanRatio)", crossed: true),
            Evidence("rows examined per query", Fmt.count(Int(perQuery)), threshold: "\(Fmt.count(s.minRowsExamined)) (advisor.minRowsExamined)", crossed: true),
            Evidence("rows returned per query", String(format: "%.1f", returned)),
            Evidence("queries measured", Fmt.count(e.measured)),
        ]
        if let q = p.filteredQueries { evidence.append(Evidence("filtered-query p99", Fmt.ms(q.p99))) }
        for shape in bad.prefix(3) {
            evidence.append(Evidence("filter on \(shape.fields.keys.sorted().joined(separator: ", "))", "\(Fmt.ratio(shape.rows.ratio)) over \(shape.rows.measured) queries"))
        }
        let declared = Set(spec.fields.map(\.name))
        let wanted = bad.flatMap { $0.fields.keys }.filter { !declared.contains($0) }
        var diff: String?
        var action: String
        if spec.model == .documents, !wanted.isEmpty {
            // Declaring one field makes filters on undeclared fields an error, so declare every field the measured
            // queries filter or sort on.
            var all: [String: String] = [:]
            for shape in p.queryShapes { for (f, t) in shape.fields where !declared.contains(f) && f != "id" { all[f] = all[f] ?? t } }
            diff = YAMLDiff.change(map) { m in
                guard let i = m.datasets.firstIndex(where: { $0.name == spec.name }) else { return }
                for f in all.keys.sorted() {
                    let type: FieldType = switch all[f]! { case "string": .string; case "boolean": .boolean; case "integer", "number": .number; default: .json }
                    m.datasets[i].fields.append(FieldSpec(f, type))
                }
            }.diff
            action = "Index \(Set(wanted).sorted().map { "'\($0)'" }.joined(separator: ", ")) of '\(spec.name)' by declaring \(all.count == 1 ? "it" : "them") under `fields:` (each declared field gets an index) before adding any engine."
        } else if spec.model == .table, !bad.isEmpty {
            let cols = Array(Set(bad.flatMap { $0.fields.keys })).sorted()
            action = "Add an index on \(cols.joined(separator: ", ")) of table '\(spec.name)' (CREATE INDEX ON \(spec.name) (\(cols.joined(separator: ", ")))) before adding any engine; the data map has no index setting for tables."
        } else {
            action = "The queries of '\(spec.name)' read far more rows than they return although their fields are declared: check their plans (EXPLAIN) for filters the indexes cannot serve (or, not, functions) before adding any engine."
        }
        let (c, why) = confidence(samples: Int(e.measured), strong: 20, weak: 5, clear: e.ratio >= 5 * s.scanRatio)
        return [Recommendation(
            dataset: p.dataset, rule: "missing-index", kind: .optimize, action: action, evidence: evidence,
            expectedEffect: String(format: "Queries examine about the rows they return (~%.0f instead of ~%@ per query), so their latency falls roughly in proportion; declared fields are also type-checked on write.", max(returned, 1), Fmt.count(Int(perQuery))),
            confidence: c, confidenceReason: why, dataMapDiff: diff)]
    }

    func readLatency(_ p: DatasetProfile, _ spec: DatasetSpec) -> [Recommendation] {
        guard spec.projection(.cache) == nil, [.documents, .keyValue, .table].contains(spec.model),
              !Self.volatileKinds.contains(p.engineKind) else { return [] }
        // Point reads first; a read-heavy dataset whose filtered queries are slow is a replica case too.
        let reads = p.pointReads.flatMap { Int($0.count) >= s.minSamples ? $0 : nil }
        let queries = p.filteredQueries.flatMap { Int($0.count) >= s.minSamples ? $0 : nil }
        let slowReads = reads.map { $0.p99 > readTargetMs } ?? false
        let slowQueries = queries.map { $0.p99 > readTargetMs } ?? false
        guard slowReads || slowQueries else { return [] }
        var evidence: [Evidence] = []
        if let r = reads { evidence.append(Evidence("point-read p99", Fmt.ms(r.p99), threshold: thresholdRead, crossed: r.p99 > readTargetMs)) }
        if let r = reads { evidence.append(Evidence("point reads", "\(Fmt.count(r.count)), p50 \(Fmt.ms(r.p50)), mean \(Fmt.ms(r.mean))")) }
        if let q = queries { evidence.append(Evidence("filtered-query p99", Fmt.ms(q.p99), threshold: thresholdRead, crossed: q.p99 > readTargetMs)) }
        if let share = p.readShare { evidence.append(Evidence("reads", Fmt.pct(share) + " of operations")) }
        let best = p.cacheEstimates.first { $0.hitRate >= s.hitRateTarget }
        let bestSeen = p.cacheEstimates.max { $0.hitRate < $1.hitRate }
        if p.sampledAccesses > 0 {
            evidence.append(Evidence("key skew", "\(Fmt.pct(p.top10Share)) of \(Fmt.count(p.sampledAccesses)) sampled accesses hit the 10 hottest keys (\(p.hotKeys.prefix(3).map { "\($0.key) \(Fmt.pct($0.share))" }.joined(separator: ", ")))"))
            evidence.append(Evidence("simulated LRU hit rate", p.cacheEstimates.map { "\(Fmt.count($0.entries)) entries: \(Fmt.pct($0.hitRate))" }.joined(separator: "; "),
                                     threshold: thresholdHit, crossed: best != nil))
        }
        let samples = Int(reads?.count ?? queries?.count ?? 0)

        if slowReads, spec.model == .documents, let best, let r = reads {
            let cacheEngine = map.engines.first { e in e.kind == "memory" && !map.datasets.contains { d in d.engine == e.name } }
            let entries = max(100, best.entries)
            let (newMap, diff) = YAMLDiff.change(map) { m in
                var name = cacheEngine?.name ?? "cache"
                if cacheEngine == nil {
                    while m.engine(named: name) != nil { name += "_2" }
                    m.engines.append(EngineSpec(name: name, kind: "memory", options: ["maxEntries": String(entries)]))
                } else if let i = m.engines.firstIndex(where: { $0.name == name }), let current = Int(m.engines[i].options["maxEntries"] ?? ""), current < entries {
                    m.engines[i].options["maxEntries"] = String(entries)
                }
                if let i = m.datasets.firstIndex(where: { $0.name == spec.name }) { m.datasets[i].projections.append(.cache(on: name)) }
            }
            _ = newMap
            let h = best.hitRate
            let hitMs = 0.002
            let mean = h * hitMs + (1 - h) * r.mean
            let p99Text = (1 - h) < 0.01 ? "p99 falls to about the hit time" : "p99 stays near \(Fmt.ms(r.p99)) (more than 1% of reads still miss), so the gain is in the mean and the median"
            let (c, why) = confidence(samples: Int(r.count), strong: 1000, weak: s.minSamples, clear: h >= s.hitRateTarget + 0.05)
            return [Recommendation(
                dataset: p.dataset, rule: "add-cache", kind: .add,
                action: "Add a cache projection to '\(spec.name)' with \(Fmt.count(entries)) entries: its reads miss the \(Fmt.ms(s.readTarget)) target and a cache that size would serve about \(Fmt.pct(h)) of them.",
                evidence: evidence,
                expectedEffect: "Estimated hit rate \(Fmt.pct(h)) at \(Fmt.count(entries)) entries (simulated LRU caches on one key in \(p.sampleEvery), all their reads and writes); mean read from \(Fmt.ms(r.mean)) to about \(Fmt.ms(mean)) with an in-process cache; \(p99Text). Writes invalidate entries, which the simulation includes. For several application processes use a redis engine for the cache instead (hits then cost a network round trip).",
                confidence: c, confidenceReason: why + "; a simulated cache starts cold when the process starts, so short histories err low", dataMapDiff: diff)]
        }
        let noCache = best == nil && bestSeen != nil
        let spreadText = "its keys are too spread out for a cache (best simulated hit rate \(Fmt.pct(bestSeen?.hitRate ?? 0)))"
        if p.engineKind == "postgres", let share = p.readShare, share >= s.readHeavy,
           (map.engine(named: spec.engine)?.options["replicas"] ?? "").isEmpty {
            let diff = YAMLDiff.change(map) { m in
                if let i = m.engines.firstIndex(where: { $0.name == spec.engine }) { m.engines[i].options["replicas"] = "postgres://USER:PASSWORD@STANDBY-HOST:5432/DATABASE" }
            }.diff
            evidence.append(Evidence("read share", Fmt.pct(share), threshold: "\(Fmt.pct(s.readHeavy)) (advisor.readHeavy)", crossed: true))
            let (c, why) = confidence(samples: samples, strong: 1000, weak: s.minSamples, clear: true)
            return [Recommendation(
                dataset: p.dataset, rule: "read-replicas", kind: .optimize,
                action: "Serve the reads of '\(spec.name)' from PostgreSQL read replicas before adding another database: it is read-heavy\(noCache ? " and " + spreadText : "") and its reads miss the target.",
                evidence: evidence,
                expectedEffect: "Reads spread over the standbys, so the primary's load and queueing fall; reads that carry a consistency token still wait for their write (replicaWait). Single-read latency only falls if it came from load, not from the query itself.",
                confidence: c == .high ? .medium : c, confidenceReason: why + "; whether the latency comes from load is inferred, not measured", dataMapDiff: diff)]
        }
        let spread = bestSeen.map { "the keys are too spread out for a cache (best simulated hit rate \(Fmt.pct($0.hitRate)))" }
            ?? "no cache simulation was recorded to size a cache"
        return [Recommendation(
            dataset: p.dataset, rule: "slow-reads", kind: .optimize,
            action: "Reads of '\(spec.name)' miss the \(Fmt.ms(s.readTarget)) target, and no cheap fix is measured: \(spread). Check the engine's query plans, pool size and hardware first.",
            evidence: evidence,
            expectedEffect: "None promised: a cache or another engine would not fix what the measurements show.",
            confidence: .low, confidenceReason: "the advisor sees the symptom, not the cause")]
    }

    func cacheHitRate(_ p: DatasetProfile, _ spec: DatasetSpec) -> [Recommendation] {
        guard let c = p.cache, let h = c.hitRate, Int(c.hits + c.misses) >= s.minSamples, h < s.hitRateTarget,
              let projection = spec.projection(.cache) else { return [] }
        var evidence = [
            Evidence("cache hit rate", Fmt.pct(h), threshold: thresholdHit, crossed: true),
            Evidence("lookups", "\(Fmt.count(c.hits + c.misses)) (\(Fmt.count(c.hits)) hits, \(Fmt.count(c.misses)) misses)"),
            Evidence("latency saved", String(format: "%@ in all; hit p50 %@, miss p50 %@", Fmt.ms(c.latencySavedMs),
                                            c.hitLatency.map { Fmt.ms($0.p50) } ?? "-", c.missLatency.map { Fmt.ms($0.p50) } ?? "-")),
        ]
        if let w = p.readShare { evidence.append(Evidence("writes (each invalidates its key)", Fmt.pct(1 - w) + " of operations")) }
        if let m = c.maxEntries { evidence.append(Evidence("cache size", "\(Fmt.count(m)) entries (maxEntries of '\(c.engine)')")) }
        if !p.cacheEstimates.isEmpty {
            evidence.append(Evidence("simulated LRU hit rate", p.cacheEstimates.map { "\(Fmt.count($0.entries)) entries: \(Fmt.pct($0.hitRate))" }.joined(separator: "; ")))
        }
        let grow = p.cacheEstimates.first { $0.hitRate >= s.hitRateTarget && $0.entries > (c.maxEntries ?? 0) }
        let (conf, why) = confidence(samples: Int(c.hits + c.misses), strong: 1000, weak: s.minSamples, clear: h < s.hitRateTarget - 0.1)
        if let grow, c.engineKind == "memory", c.maxEntries != nil {
            let diff = YAMLDiff.change(map) { m in
                if let i = m.engines.firstIndex(where: { $0.name == c.engine }) { m.engines[i].options["maxEntries"] = String(grow.entries) }
            }.diff
            return [Recommendation(
                dataset: p.dataset, rule: "cache-hit-rate", kind: .antiPattern,
                action: "Grow the cache of '\(spec.name)' to \(Fmt.count(grow.entries)) entries: at \(Fmt.pct(h)) it is under the \(Fmt.pct(s.hitRateTarget)) target, and a simulated cache of that size reaches \(Fmt.pct(grow.hitRate)).",
                evidence: evidence,
                expectedEffect: "Hit rate from \(Fmt.pct(h)) to about \(Fmt.pct(grow.hitRate)) (simulated), at the cost of the memory those entries take.",
                confidence: conf, confidenceReason: why, dataMapDiff: diff)]
        }
        if let grow, c.engineKind != "memory" || c.maxEntries == nil {
            // A Redis or memcached cache is sized outside the data map (maxmemory, -m): say how much room it needs.
            return [Recommendation(
                dataset: p.dataset, rule: "cache-hit-rate", kind: .antiPattern,
                action: "Give the cache of '\(spec.name)' on '\(c.engine)' room for \(Fmt.count(grow.entries)) entries (its \(c.engineKind) memory limit, outside the data map): at \(Fmt.pct(h)) it is under the \(Fmt.pct(s.hitRateTarget)) target, and a simulated cache of that size reaches \(Fmt.pct(grow.hitRate)).",
                evidence: evidence,
                expectedEffect: "Hit rate from \(Fmt.pct(h)) to about \(Fmt.pct(grow.hitRate)) (simulated), if evictions are what keeps it low; a TTL shorter than the keys' reuse interval would also keep it low, which the simulation does not model.",
                confidence: conf == .high ? .medium : conf, confidenceReason: why + "; the cache's real size is not in the data map")]
        }
        let best = p.cacheEstimates.max { $0.hitRate < $1.hitRate }
        let diff = YAMLDiff.change(map) { m in
            if let i = m.datasets.firstIndex(where: { $0.name == spec.name }) { m.datasets[i].projections.removeAll { $0.kind == .cache } }
            let used = usedEngines(m)
            m.engines.removeAll { $0.name == projection.engine && !used.contains($0.name) }
        }.diff
        return [Recommendation(
            dataset: p.dataset, rule: "cache-hit-rate", kind: .antiPattern,
            action: "Remove the cache of '\(spec.name)' (or cache only its hot keys): it hits \(Fmt.pct(h)), under the \(Fmt.pct(s.hitRateTarget)) target, and \(best.map { "no simulated size does better than \(Fmt.pct($0.hitRate))" } ?? "no cache simulation was recorded").",
            evidence: evidence,
            expectedEffect: "Misses stop paying a cache lookup on top of the source read (\(c.missLatency.map { "miss p50 \(Fmt.ms($0.p50))" } ?? "-")), one engine less to run; the \(Fmt.pct(h)) of reads that hit go back to the source (\(p.sourcePointReads.map { "source get p50 \(Fmt.ms($0.p50))" } ?? "source latency")).",
            confidence: conf, confidenceReason: why, dataMapDiff: diff)]
    }

    // MARK: Add a database

    func schemaChurn(_ p: DatasetProfile, _ spec: DatasetSpec) -> [Recommendation] {
        guard spec.model == .table, let churn = p.schema, churn.daysObserved >= 2, churn.changesPerDay >= s.schemaChangesPerDay else { return [] }
        var evidence = [
            Evidence("column changes per day", String(format: "%.1f", churn.changesPerDay), threshold: "\(YAMLText.number(s.schemaChangesPerDay)) (advisor.schemaChangesPerDay)", crossed: true),
            Evidence("days observed", "\(churn.daysObserved)"),
        ]
        for d in churn.days.suffix(5) where !d.added.isEmpty || !d.removed.isEmpty {
            evidence.append(Evidence(d.day, (d.added.map { "+\($0)" } + d.removed.map { "-\($0)" }).joined(separator: " ")))
        }
        let diff = YAMLDiff.change(map) { m in
            guard let i = m.datasets.firstIndex(where: { $0.name == spec.name }) else { return }
            m.datasets[i].model = .documents
            m.datasets[i].fields.removeAll { $0.name == spec.primaryKey || $0.name == "id" }
            m.datasets[i].primaryKey = nil
        }.diff
        let (c, why) = confidence(samples: churn.daysObserved, strong: 5, weak: 3, clear: churn.changesPerDay >= 2 * s.schemaChangesPerDay)
        return [Recommendation(
            dataset: p.dataset, rule: "move-to-documents", kind: .change,
            action: "Store '\(spec.name)' as documents (JSON\(p.engineKind == "postgres" ? "B" : "") on the same engine): its columns change \(String(format: "%.1f", churn.changesPerDay)) times a day, faster than a table migration per deploy keeps up with.",
            evidence: evidence,
            expectedEffect: "New fields need no migration or deploy; the columns the queries filter on stay declared (indexed and type-checked). Rows keep their primary key as the document id.",
            confidence: c, confidenceReason: why.replacingOccurrences(of: "measured samples", with: "days of history"), dataMapDiff: diff)]
    }

    func vectors(_ p: DatasetProfile, _ spec: DatasetSpec) -> [Recommendation] {
        let projection = spec.projection(.vectors)
        guard spec.model == .vectors || projection != nil else { return [] }
        let engineName = projection?.engine ?? spec.engine
        let engineKind = kind(of: engineName)
        let count = p.size?.vectors
        let dimension = p.size?.dimension ?? spec.dimension ?? projection?.dimension
        let past = count.map { $0 >= s.vectorThreshold } ?? false
        let q = p.vectorQueries.flatMap { Int($0.count) >= s.minSamples ? $0 : nil }
        let targetMs = Fmt.seconds(s.vectorTarget) * 1000
        let slow = q.map { $0.p99 > targetMs } ?? false
        guard past || slow else { return [] }
        var evidence: [Evidence] = []
        if let count { evidence.append(Evidence("vectors", Fmt.count(count), threshold: "\(Fmt.count(s.vectorThreshold)) (advisor.vectorThreshold)", crossed: past)) }
        if let dimension { evidence.append(Evidence("dimension", "\(dimension)")) }
        if let q { evidence.append(Evidence("nearest p99", Fmt.ms(q.p99), threshold: "\(Fmt.ms(s.vectorTarget)) (advisor.vectorTarget)", crossed: slow)) }
        if let count, let dimension {
            let m = (projection?.index ?? spec.index).m
            let bytes = Double(count) * Double(dimension * 4 + m * 2 * 4)
            evidence.append(Evidence("HNSW memory (vectors + graph)", String(format: "%.1f GiB", bytes / Double(1 << 30))))
        }
        if let b = p.size?.indexBytes { evidence.append(Evidence("index size reported by the engine", String(format: "%.1f MiB", Double(b) / Double(1 << 20)))) }
        let (c, why) = confidence(samples: q.map { Int($0.count) } ?? (past ? 1000 : 0), strong: 1000, weak: s.minSamples, clear: true)
        if !past, slow, engineKind == "postgres" {
            // pgvector first, then the embedded HNSW index, then a dedicated vector database.
            let sqlite = map.engines.first { $0.kind == "sqlite" }
            let diff = YAMLDiff.change(map) { m in
                var name = sqlite?.name ?? "vectors"
                if sqlite == nil {
                    while m.engine(named: name) != nil { name += "_2" }
                    m.engines.append(EngineSpec(name: name, kind: "sqlite", path: "vectors.sqlite"))
                }
                guard let i = m.datasets.firstIndex(where: { $0.name == spec.name }) else { return }
                if spec.model == .vectors { m.datasets[i].engine = name } else if let j = m.datasets[i].projections.firstIndex(where: { $0.kind == .vectors }) {
                    m.datasets[i].projections[j].engine = name
                }
            }.diff
            return [Recommendation(
                dataset: p.dataset, rule: "embedded-vector-index", kind: .change,
                action: "Move the vectors of '\(spec.name)' from pgvector to the embedded HNSW index (a sqlite engine): nearest-neighbour p99 misses \(Fmt.ms(s.vectorTarget)) below the size that calls for a dedicated vector database.",
                evidence: evidence,
                expectedEffect: "In-process HNSW searches avoid the round trip and pgvector's filtered-scan costs; see docs/benchmarks.md for pgvector vs the embedded index on this machine.",
                confidence: c == .high ? .medium : c, confidenceReason: why, dataMapDiff: diff)]
        }
        let diff = YAMLDiff.change(map) { m in
            var name = "vectordb"
            while m.engine(named: name) != nil { name += "_2" }
            m.engines.append(EngineSpec(name: name, kind: "chroma", url: "http://VECTOR-DB-HOST:8000"))
            guard let i = m.datasets.firstIndex(where: { $0.name == spec.name }) else { return }
            if spec.model == .vectors { m.datasets[i].engine = name } else if let j = m.datasets[i].projections.firstIndex(where: { $0.kind == .vectors }) {
                m.datasets[i].projections[j].engine = name
            }
        }.diff
        return [Recommendation(
            dataset: p.dataset, rule: "dedicated-vector-index", kind: .add,
            action: "Move the vectors of '\(spec.name)' to a dedicated vector database: \(past ? "\(Fmt.count(count ?? 0)) vectors are past the \(Fmt.count(s.vectorThreshold)) where pgvector and an in-process HNSW index stop fitting in memory" : "nearest-neighbour p99 misses \(Fmt.ms(s.vectorTarget)) on \(engineKind)"). Polyglot has no engine module for one yet: the diff names the kind (chroma) to register.",
            evidence: evidence,
            expectedEffect: "The index lives on a server sized and sharded for it, so its memory no longer competes with \(engineKind == "postgres" ? "PostgreSQL's buffers" : "the application process"); queries keep their filters through the vectors projection.",
            confidence: c, confidenceReason: why, dataMapDiff: diff)]
    }

    func interference() -> [Recommendation] {
        var out: [Recommendation] = []
        let minReads = 30
        for p in profiles {
            guard let i = p.interference, i.readsAlone >= minReads, i.readsDuringScans >= minReads, i.largeScans > 0,
                  i.factor >= s.interferenceFactor else { continue }
            let scanners = i.scanningDatasets.keys.sorted()
            let documents = scanners.compactMap { map.dataset(named: $0) }.filter { $0.model == .documents && $0.projection(.analytics) == nil }
            let target = map.engines.first { Self.durableKinds.contains($0.kind) && $0.name != p.engine }
            let diff: String? = documents.isEmpty ? nil : YAMLDiff.change(map) { m in
                var name = target?.name ?? "analytics"
                if target == nil {
                    while m.engine(named: name) != nil { name += "_2" }
                    m.engines.append(EngineSpec(name: name, kind: "sqlite", path: "analytics.sqlite"))
                }
                for d in documents {
                    if let j = m.datasets.firstIndex(where: { $0.name == d.name }) {
                        m.datasets[j].projections.append(ProjectionSpec(kind: .analytics, engine: name))
                    }
                }
            }.diff
            let evidence = [
                Evidence("point-read p99 during large scans", Fmt.ms(i.p99DuringScansMs)),
                Evidence("point-read p99 without them", Fmt.ms(i.p99AloneMs)),
                Evidence("slowdown", Fmt.ratio(i.factor), threshold: "\(Fmt.ratio(s.interferenceFactor)) (advisor.interferenceFactor)", crossed: true),
                Evidence("sampled reads", "\(i.readsDuringScans) during scans, \(i.readsAlone) without"),
                Evidence("large scans on '\(p.engine)'", "\(i.largeScans) of ≥ \(Fmt.ms(s.largeScan)) (\(i.scanningDatasets.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))"),
            ]
            let (c, why) = confidence(samples: min(i.readsAlone, i.readsDuringScans), strong: 300, weak: minReads, clear: i.factor >= 2 * s.interferenceFactor)
            out.append(Recommendation(
                dataset: p.dataset, rule: "analytics-projection", kind: .add,
                action: "Move the large scans of \(scanners.map { "'\($0)'" }.joined(separator: ", ")) off '\(p.engine)' with an analytics projection\(target.map { " on '\($0.name)'" } ?? " on a separate engine"): they raise the point-read p99 of '\(p.dataset)' \(Fmt.ratio(i.factor)).\(documents.isEmpty ? " (SQL reports and tables: point the report queries at a replica or an analytics copy; the data map cannot do it for them.)" : "")",
                evidence: evidence,
                expectedEffect: "Point reads on '\(p.engine)' return to about \(Fmt.ms(i.p99AloneMs)) at p99 while reports run; reports read the analytics copy, behind the source by the relay's lag.",
                confidence: c, confidenceReason: why, dataMapDiff: diff))
        }
        return out
    }

    // MARK: Stay as you are

    func stay(_ p: DatasetProfile) -> Recommendation {
        guard p.totalOperations > 0 else {
            return Recommendation(dataset: p.dataset, rule: "stay", kind: .stay,
                                  action: "Stay as you are: no operation on '\(p.dataset)' was recorded in the window, so nothing calls for a change.",
                                  evidence: [Evidence("operations", "0")], expectedEffect: "None.",
                                  confidence: .low, confidenceReason: "nothing was measured")
        }
        var evidence = [Evidence("operations", "\(Fmt.count(p.totalOperations)) (\(p.readShare.map(Fmt.pct) ?? "-") reads)")]
        if let r = p.pointReads { evidence.append(Evidence("point-read p99", Fmt.ms(r.p99), threshold: thresholdRead, crossed: false)) }
        if let q = p.filteredQueries { evidence.append(Evidence("filtered-query p99", Fmt.ms(q.p99), threshold: thresholdRead, crossed: q.p99 > readTargetMs)) }
        if let c = p.cache, let h = c.hitRate { evidence.append(Evidence("cache hit rate", Fmt.pct(h), threshold: thresholdHit, crossed: false)) }
        if let e = p.examined { evidence.append(Evidence("rows examined per row returned", Fmt.ratio(e.ratio), threshold: "\(Fmt.ratio(s.scanRatio)) (advisor.scanRatio)", crossed: false)) }
        if let c = p.schema, c.daysObserved >= 2 { evidence.append(Evidence("schema changes per day", String(format: "%.1f", c.changesPerDay))) }
        if let v = p.size?.vectors { evidence.append(Evidence("vectors", Fmt.count(v), threshold: "\(Fmt.count(s.vectorThreshold)) (advisor.vectorThreshold)", crossed: false)) }
        if let i = p.interference, i.readsDuringScans > 0 {
            evidence.append(Evidence("point-read p99 during large scans", "\(Fmt.ms(i.p99DuringScansMs)) vs \(Fmt.ms(i.p99AloneMs)) without", threshold: "\(Fmt.ratio(s.interferenceFactor))", crossed: false))
        }
        for (copy, lag) in p.projectionLag.sorted(by: { $0.key < $1.key }) { evidence.append(Evidence("projection lag of \(copy)", "\(Fmt.count(lag)) outbox positions")) }
        let samples = Int(p.pointReads?.count ?? 0) + Int(p.filteredQueries?.count ?? 0)
        let enough = samples >= s.minSamples
        return Recommendation(
            dataset: p.dataset, rule: "stay", kind: .stay,
            action: "Stay as you are: nothing measured on '\(p.dataset)' crosses a threshold.",
            evidence: evidence, expectedEffect: "None: adding an engine here would add cost without a measured problem to solve.",
            confidence: enough ? .high : .low,
            confidenceReason: enough ? "\(Fmt.count(samples)) measured reads" : "only \(samples) measured reads (advisor.minSamples is \(s.minSamples))")
    }
}
