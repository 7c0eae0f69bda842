import Foundation

/// What kind of work an operation is, for a dataset's operation mix.
public enum OperationClass: String, Sendable, Hashable, Codable, CaseIterable {
    case pointRead, filteredQuery, aggregateScan, vectorQuery, search, write, other

    public static func of(_ operation: String) -> OperationClass {
        switch operation {
        case "get", "getMany", "cache.hit", "cache.miss", "edges", "neighbors": .pointRead
        case "query", "select": .filteredQuery
        case "count", "aggregate", "range", "scan", "traverse", "shortestPath", "execute", "related": .aggregateScan
        case "nearest": .vectorQuery
        case "search": .search
        case "put", "putMany", "delete", "set", "increment", "upsert", "upsertMany", "addEdges", "removeEdge", "append", "retention": .write
        default: .other
        }
    }

    public var isRead: Bool { self != .write && self != .other }
}

/// Latency percentiles of one operation stream, in milliseconds.
public struct LatencySummary: Sendable, Hashable, Codable {
    public var count: UInt64
    public var p50: Double
    public var p95: Double
    public var p99: Double
    public var max: Double
    public var mean: Double

    public init(_ h: LatencyHistogram) {
        count = h.totalCount
        p50 = Double(h.percentile(50)) / 1e6
        p95 = Double(h.percentile(95)) / 1e6
        p99 = Double(h.percentile(99)) / 1e6
        max = Double(h.maxValue) / 1e6
        mean = h.mean / 1e6
    }

    public init(count: UInt64, p50: Double, p95: Double, p99: Double, max: Double, mean: Double) {
        self.count = count; self.p50 = p50; self.p95 = p95; self.p99 = p99; self.max = max; self.mean = mean
    }
}

/// One operation of a dataset on one engine over the window.
public struct OperationProfile: Sendable, Hashable, Codable {
    public var operation: String
    public var engine: String
    public var kind: OperationClass
    public var count: UInt64
    public var errors: UInt64
    public var rows: UInt64
    public var latency: LatencySummary
}

/// A key that took a large share of the sampled accesses.
public struct HotKey: Sendable, Hashable, Codable {
    public var key: String
    /// Share of sampled accesses (a lower bound: the sketch's error is subtracted).
    public var share: Double
}

/// Field paths or columns added and removed from one day to the next.
public struct SchemaChurn: Sendable, Hashable, Codable {
    public struct Day: Sendable, Hashable, Codable {
        public var day: String
        public var added: [String]
        public var removed: [String]
    }
    /// Days with observations in the window.
    public var daysObserved: Int
    /// Changes (added plus removed paths) per day-to-day transition.
    public var changesPerDay: Double
    public var days: [Day]
    /// For tables: declared columns; for documents: field paths seen in sampled writes.
    public var source: String
}

/// A dataset's cache projection over the window.
public struct CacheProfile: Sendable, Hashable, Codable {
    public var engine: String
    public var engineKind: String
    public var hits: UInt64
    public var misses: UInt64
    public var hitRate: Double?
    public var hitLatency: LatencySummary?
    public var missLatency: LatencySummary?
    /// Mean miss time minus mean hit time, in milliseconds, times the hits: the source time the cache saved.
    public var latencySavedMs: Double
    /// The cache engine's entry limit, when it has one (`maxEntries`).
    public var maxEntries: Int?
}

/// Point-read latency while large scans ran on the same engine, against while none did.
public struct Interference: Sendable, Hashable, Codable {
    public var readsAlone: Int
    public var readsDuringScans: Int
    public var p99AloneMs: Double
    public var p99DuringScansMs: Double
    public var largeScans: Int
    /// Datasets (or `sql`) whose large scans overlapped this dataset's reads, with how many large scans each ran.
    public var scanningDatasets: [String: Int]
    public var factor: Double { p99AloneMs > 0 ? p99DuringScansMs / p99AloneMs : 0 }
}

/// Hit rate an LRU cache of a given entry count reached in simulation on the dataset's sampled keys.
public struct CacheEstimate: Sendable, Hashable, Codable {
    public var entries: Int
    public var hitRate: Double
}

/// The measured workload of one dataset over a window: what the advisor's rules read.
public struct DatasetProfile: Sendable, Hashable, Codable {
    public var dataset: String
    public var model: DataModel?
    public var engine: String
    public var engineKind: String
    public var from: Date
    public var to: Date
    public var operations: [OperationProfile] = []
    /// Operation counts by class.
    public var mix: [String: UInt64] = [:]
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    /// Point reads as the application saw them (cache hits and misses when cached, otherwise source reads).
    public var pointReads: LatencySummary?
    /// Point reads on the source engine.
    public var sourcePointReads: LatencySummary?
    public var filteredQueries: LatencySummary?
    public var vectorQueries: LatencySummary?
    public var hotKeys: [HotKey] = []
    /// Share of sampled accesses that went to the 10 hottest keys (lower bound).
    public var top10Share: Double = 0
    /// Point reads sampled for hot keys.
    public var sampledAccesses: Int = 0
    /// One read (hot keys) and one key (simulated caches) in this many is sampled.
    public var sampleEvery: Int = 1
    public var examined: ExaminedRows?
    public var queryShapes: [QueryShape] = []
    public var size: DatasetSize?
    public var schema: SchemaChurn?
    public var cache: CacheProfile?
    /// Hit rates of simulated LRU caches of growing sizes on the dataset's key stream (see ``MiniatureCaches``).
    public var cacheEstimates: [CacheEstimate] = []
    /// Distinct keys read (since their last write), estimated from the simulated caches' sample; nil when more than they hold.
    public var workingSet: Int?
    public var projectionLag: [String: Int64] = [:]
    public var interference: Interference?
    /// Large scans (at least `advisor.largeScan`) this dataset ran.
    public var largeScans: Int = 0
    public var largeScanP50Ms: Double?

    public var readShare: Double? { reads + writes == 0 ? nil : Double(reads) / Double(reads + writes) }
    public var totalOperations: UInt64 { reads + writes }

    public func operation(_ name: String) -> OperationProfile? { operations.first { $0.operation == name } }

    enum CodingKeys: String, CodingKey {
        case dataset, model, engine, engineKind, from, to, operations, mix, reads, writes, pointReads, sourcePointReads,
             filteredQueries, vectorQueries, hotKeys, top10Share, sampledAccesses, sampleEvery, examined,
             queryShapes, size, schema, cache, cacheEstimates, workingSet, projectionLag, interference, largeScans, largeScanP50Ms
    }
}

/// Builds each dataset's ``DatasetProfile`` from persisted telemetry records and observations.
///
/// ```swift
/// let profiles = WorkloadProfiler(map: db.map).profiles(records: records, observations: observations,
///                                                      from: weekAgo, to: .now)
/// ```
public struct WorkloadProfiler: Sendable {
    public var map: DataMap
    public var settings: AdvisorSettings { map.advisor }

    public init(map: DataMap) { self.map = map }

    /// The longest key trace replayed per dataset.
    public static let maxTrace = 200_000

    /// Profiles of every dataset of the map, in map order.
    public func profiles(records: [TelemetryRecord], observations: [WorkloadObservation], from: Date, to: Date) -> [DatasetProfile] {
        let records = records.filter { $0.intervalEnd > from && $0.intervalStart <= to }
        let observations = observations.filter { $0.intervalEnd > from && $0.intervalStart <= to }
        return map.datasets.map { profile($0, records: records, observations: observations, from: from, to: to) }
    }

    func profile(_ spec: DatasetSpec, records: [TelemetryRecord], observations: [WorkloadObservation], from: Date, to: Date) -> DatasetProfile {
        var p = DatasetProfile(dataset: spec.name, model: spec.model, engine: spec.engine,
                               engineKind: map.engine(named: spec.engine)?.kind ?? "?", from: from, to: to)
        // Operations, merged per (operation, engine).
        var merged: [OperationKey: OperationStats] = [:]
        for r in records where r.key.dataset == spec.name { merged[r.key, default: OperationStats()].merge(r.stats) }
        let cacheSpec = spec.projection(.cache)
        for (key, stats) in merged.sorted(by: { $0.key < $1.key }) {
            let kind = OperationClass.of(key.operation)
            p.operations.append(OperationProfile(operation: key.operation, engine: key.engine, kind: kind, count: stats.count,
                                                 errors: stats.errors, rows: stats.rows, latency: LatencySummary(stats.latency)))
            // With a cache, source gets are the misses' loads: counted once, as cache.miss.
            if cacheSpec != nil, key.operation == "get", key.engine == spec.engine { continue }
            p.mix[kind.rawValue, default: 0] += stats.count
            if kind == .write { p.writes += stats.count } else if kind.isRead { p.reads += stats.count }
        }
        func latency(_ filter: (OperationKey) -> Bool) -> LatencySummary? {
            var h = LatencyHistogram()
            for (k, s) in merged where filter(k) { h.merge(s.latency) }
            return h.totalCount == 0 ? nil : LatencySummary(h)
        }
        p.sourcePointReads = latency { $0.engine == spec.engine && ["get", "getMany"].contains($0.operation) }
        if let c = cacheSpec {
            p.pointReads = latency { $0.engine == c.engine && ($0.operation == "cache.hit" || $0.operation == "cache.miss") }
                ?? p.sourcePointReads
        } else {
            p.pointReads = p.sourcePointReads
        }
        p.filteredQueries = latency { OperationClass.of($0.operation) == .filteredQuery }
        p.vectorQueries = latency { $0.operation == "nearest" }

        // Cache.
        if let c = cacheSpec {
            let hit = merged.filter { $0.key.engine == c.engine && $0.key.operation == "cache.hit" }.values.reduce(into: OperationStats()) { $0.merge($1) }
            let miss = merged.filter { $0.key.engine == c.engine && $0.key.operation == "cache.miss" }.values.reduce(into: OperationStats()) { $0.merge($1) }
            let engineSpec = map.engine(named: c.engine)
            let saved = hit.count > 0 && miss.count > 0 ? max(0, miss.latency.mean - hit.latency.mean) / 1e6 * Double(hit.count) : 0
            p.cache = CacheProfile(engine: c.engine, engineKind: engineSpec?.kind ?? "?", hits: hit.count, misses: miss.count,
                                   hitRate: hit.count + miss.count == 0 ? nil : Double(hit.count) / Double(hit.count + miss.count),
                                   hitLatency: hit.count == 0 ? nil : LatencySummary(hit.latency),
                                   missLatency: miss.count == 0 ? nil : LatencySummary(miss.latency),
                                   latencySavedMs: saved, maxEntries: engineSpec?.options["maxEntries"].flatMap { Int($0) })
        }

        // Observations of this dataset on its source engine.
        let mine = observations.filter { $0.dataset == spec.name && $0.engine == spec.engine }.sorted { $0.intervalStart < $1.intervalStart }
        var sketch = SpaceSaving(capacity: 32)
        var examined = ExaminedRows()
        var shapes: [String: QueryShape] = [:]
        for o in mine {
            sketch.merge(o.hotKeys)
            // Only row-returning filtered queries: a count or an aggregate reads many rows to return one by design.
            for (op, e) in o.examined where op == "query" || op == "select" { examined.merge(e) }
            for s in o.queryShapes {
                if shapes[s.signature] != nil { shapes[s.signature]!.rows.merge(s.rows) } else { shapes[s.signature] = s }
            }
            if let size = o.size { p.size = size }
            for (copy, lag) in o.projectionLag { p.projectionLag[copy] = lag }
        }
        if examined.measured > 0 { p.examined = examined }
        p.queryShapes = shapes.values.sorted { $0.rows.ratio > $1.rows.ratio }
        p.sampleEvery = mine.map(\.cacheSampleEvery).max() ?? settings.sampleEvery
        p.sampledAccesses = Int(sketch.total)
        p.workingSet = mine.last?.workingSet
        if sketch.total > 0 {
            p.hotKeys = sketch.top(10).map { HotKey(key: $0.key, share: Double($0.count - $0.error) / Double(sketch.total)) }
            p.top10Share = sketch.guaranteedShare(ofTop: 10)
        }
        p.cacheEstimates = cacheEstimates(mine)
        p.schema = churn(spec, mine)

        // Scans and interference, against every dataset's scans on the same engine.
        let large = Double(settings.largeScan.components.seconds) + Double(settings.largeScan.components.attoseconds) / 1e18
        let ownScans = mine.flatMap(\.scans).filter { Double($0.nanoseconds) / 1e9 >= large }
        p.largeScans = ownScans.count
        if !ownScans.isEmpty {
            let sorted = ownScans.map { Double($0.nanoseconds) / 1e6 }.sorted()
            p.largeScanP50Ms = sorted[(sorted.count - 1) / 2]
        }
        p.interference = interference(spec, mine, observations, largeSeconds: large)
        return p
    }

    /// Hit rates of the simulated caches over the window. With one key in `every` simulated, a hot key's luck
    /// (in or out of the sample) would swing the estimate, so, as SHARDS-adj does, the difference between the
    /// reads the sample should have seen (the interval's reads / every) and those it saw is counted as hits or
    /// removed from them. Each size is judged over the intervals that simulated it.
    func cacheEstimates(_ mine: [WorkloadObservation]) -> [CacheEstimate] {
        var sums: [Int: (lookups: UInt64, hits: UInt64, expected: Double)] = [:]
        for o in mine {
            for pt in o.cacheCurve {
                var sum = sums[pt.entries] ?? (0, 0, 0)
                sum.lookups += pt.lookups
                sum.hits += pt.hits
                sum.expected += Double(o.cacheReads) / Double(max(1, o.cacheSampleEvery))
                sums[pt.entries] = sum
            }
        }
        return sums.keys.sorted().compactMap { entries in
            let (lookups, hits, expected) = sums[entries]!
            guard lookups > 0 else { return nil }
            var rate = Double(hits) / Double(lookups)
            if expected >= 1 { rate = min(1, max(0, (Double(hits) + expected - Double(lookups)) / expected)) }
            return CacheEstimate(entries: entries, hitRate: rate)
        }
    }

    func churn(_ spec: DatasetSpec, _ mine: [WorkloadObservation]) -> SchemaChurn? {
        let useDeclared = spec.model == .table
        var byDay: [String: (paths: Set<String>, samples: UInt64)] = [:]
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        formatter.timeZone = TimeZone(identifier: "UTC")
        for o in mine {
            let day = formatter.string(from: o.intervalEnd)
            if useDeclared {
                guard !o.declaredFields.isEmpty else { continue }
                byDay[day, default: ([], 0)].paths.formUnion(o.declaredFields)
                byDay[day]!.samples += 1
            } else {
                guard o.sampledWrites > 0 else { continue }
                byDay[day, default: ([], 0)].paths.formUnion(o.fieldPaths.keys)
                byDay[day]!.samples += o.sampledWrites
            }
        }
        let days = byDay.keys.sorted()
        guard days.count >= 1 else { return nil }
        var out: [SchemaChurn.Day] = []
        var changes = 0
        for (a, b) in zip(days, days.dropFirst()) {
            let before = byDay[a]!.paths, after = byDay[b]!
            let added = after.paths.subtracting(before).sorted()
            // A path missing from a day with few sampled documents may just not have been sampled.
            let removed = useDeclared || after.samples >= 10 ? before.subtracting(after.paths).sorted() : []
            changes += added.count + removed.count
            out.append(SchemaChurn.Day(day: b, added: added, removed: removed))
        }
        return SchemaChurn(daysObserved: days.count, changesPerDay: days.count < 2 ? 0 : Double(changes) / Double(days.count - 1),
                           days: out, source: useDeclared ? "declared columns" : "field paths of sampled writes")
    }

    func interference(_ spec: DatasetSpec, _ mine: [WorkloadObservation], _ all: [WorkloadObservation], largeSeconds: Double) -> Interference? {
        let reads = Array(mine.flatMap(\.pointReads).suffix(50_000))
        guard !reads.isEmpty else { return nil }
        var scans: [(start: Double, end: Double, dataset: String)] = []
        for o in all where o.engine == spec.engine {
            for s in o.scans where Double(s.nanoseconds) / 1e9 >= largeSeconds { scans.append((s.start, s.end, o.dataset)) }
        }
        scans.sort { $0.start < $1.start }
        var alone = LatencyHistogram(), during = LatencyHistogram()
        var by: [String: Int] = [:]
        var seen = Set<Int>()
        for r in reads {
            var overlapped = false
            for (i, s) in scans.enumerated() {
                if s.start > r.end { break }
                if s.end >= r.start {
                    overlapped = true
                    if seen.insert(i).inserted { by[s.dataset, default: 0] += 1 }
                }
            }
            if overlapped { during.record(nanoseconds: r.nanoseconds) } else { alone.record(nanoseconds: r.nanoseconds) }
        }
        return Interference(readsAlone: Int(alone.totalCount), readsDuringScans: Int(during.totalCount),
                            p99AloneMs: Double(alone.percentile(99)) / 1e6, p99DuringScansMs: Double(during.percentile(99)) / 1e6,
                            largeScans: scans.count, scanningDatasets: by)
    }
}
