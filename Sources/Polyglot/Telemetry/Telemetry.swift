import Foundation
import Metrics
import Synchronization

/// Identifies one measured operation stream: dataset × engine × operation.
public struct OperationKey: Sendable, Hashable, Codable, Comparable {
    public var dataset: String
    public var engine: String
    public var operation: String
    public init(dataset: String, engine: String, operation: String) {
        self.dataset = dataset; self.engine = engine; self.operation = operation
    }
    public static func < (a: OperationKey, b: OperationKey) -> Bool {
        (a.dataset, a.engine, a.operation) < (b.dataset, b.engine, b.operation)
    }
}

/// Accumulated figures of one operation stream.
public struct OperationStats: Sendable, Hashable {
    public var count: UInt64 = 0
    public var errors: UInt64 = 0
    public var rows: UInt64 = 0
    public var bytes: UInt64 = 0
    public var latency = LatencyHistogram()
    public init() {}

    mutating func add(nanoseconds: UInt64, rows: Int, bytes: Int, failed: Bool) {
        count += 1
        if failed { errors += 1 }
        self.rows += UInt64(max(rows, 0))
        self.bytes += UInt64(max(bytes, 0))
        latency.record(nanoseconds: nanoseconds)
    }

    public mutating func merge(_ o: OperationStats) {
        // Wrapping, not trapping: merged records come from the telemetry store, which a bad row must not crash.
        count &+= o.count; errors &+= o.errors; rows &+= o.rows; bytes &+= o.bytes
        latency.merge(o.latency)
    }
}

/// Counters of a cache engine.
public struct CacheStats: Sendable, Hashable, Codable {
    public var hits: UInt64 = 0
    public var misses: UInt64 = 0
    public var fills: UInt64 = 0
    public var rejectedFills: UInt64 = 0
    public var evictions: UInt64 = 0
    public var invalidations: UInt64 = 0
    public var entries: Int = 0
    public var bytes: Int = 0
    /// A remote cache that cannot be reached: reads go to the source of truth until it is back.
    public var degraded: Bool = false
    /// Invalidations a degraded cache could not deliver yet; it delivers them before it serves hits again.
    public var pendingInvalidations: Int = 0
    /// Source latency the hits avoided: for each hit, the recent mean load time minus the hit's own time.
    public var latencySavedNanoseconds: UInt64 = 0
    public init() {}
    /// Hits over lookups, 0...1; `nil` before the first lookup.
    public var hitRate: Double? { hits + misses == 0 ? nil : Double(hits) / Double(hits + misses) }
}

/// A point-in-time copy of every figure Polyglot measures.
public struct TelemetrySnapshot: Sendable {
    public struct Entry: Sendable, Hashable {
        public var key: OperationKey
        public var stats: OperationStats
        public var p50: Duration { .nanoseconds(Int64(clamping: stats.latency.percentile(50))) }
        public var p95: Duration { .nanoseconds(Int64(clamping: stats.latency.percentile(95))) }
        public var p99: Duration { .nanoseconds(Int64(clamping: stats.latency.percentile(99))) }
        public var max: Duration { .nanoseconds(Int64(clamping: stats.latency.maxValue)) }
    }
    public var takenAt: Date
    public var entries: [Entry]
    /// Cache engines' counters, by engine name.
    public var caches: [String: CacheStats]

    public func entry(dataset: String, operation: String) -> Entry? {
        entries.first { $0.key.dataset == dataset && $0.key.operation == operation }
    }
}

/// One persisted telemetry interval of one operation stream.
public struct TelemetryRecord: Sendable, Hashable {
    public var intervalStart: Date
    public var intervalEnd: Date
    public var key: OperationKey
    public var stats: OperationStats
    public init(intervalStart: Date, intervalEnd: Date, key: OperationKey, stats: OperationStats) {
        self.intervalStart = intervalStart; self.intervalEnd = intervalEnd; self.key = key; self.stats = stats
    }
}

/// Keeps telemetry history on an engine, so that it survives restarts and the advisor can read it.
public protocol TelemetryHistoryStore: Sendable {
    func append(_ records: [TelemetryRecord]) async throws
    func records(since: Date) async throws -> [TelemetryRecord]
    /// Persists the advisor's per-dataset observations of an interval (see ``WorkloadObservation``).
    func appendObservations(_ observations: [WorkloadObservation]) async throws
    /// Observations whose interval ended at or after `since`, oldest first.
    func observations(since: Date) async throws -> [WorkloadObservation]
    /// Deletes the telemetry records and observations whose interval ended before `cutoff`
    /// (``AdvisorSettings/keepHistory``).
    func deleteHistory(before cutoff: Date) async throws
}

extension TelemetryHistoryStore {
    /// A store that keeps no observations: the advisor then works from operation counts and latencies alone.
    public func appendObservations(_ observations: [WorkloadObservation]) async throws {}
    public func observations(since: Date) async throws -> [WorkloadObservation] { [] }
    /// A store that cannot delete keeps everything.
    public func deleteHistory(before cutoff: Date) async throws {}
}

/// Records every store call per dataset × engine × operation: count, errors, latency, rows and bytes.
/// Also exports to swift-metrics (`polyglot_operations_total`, `polyglot_operation_errors_total`,
/// `polyglot_operation_duration`, `polyglot_rows_total`, `polyglot_bytes_total`, with dimensions dataset, engine, operation).
public final class Telemetry: Sendable {
    /// The recorder of one operation stream; hold it to skip the lookup on hot paths.
    public final class Recorder: Sendable {
        /// Everything since start, and what is not yet persisted: one lock for both.
        let state = Mutex((total: OperationStats(), unflushed: OperationStats()))
        let timer: Metrics.Timer
        let counter: Counter
        let errorCounter: Counter
        let rowCounter: Counter
        let byteCounter: Counter
        init(_ key: OperationKey) {
            let dims = [("dataset", key.dataset), ("engine", key.engine), ("operation", key.operation)]
            timer = Metrics.Timer(label: "polyglot_operation_duration", dimensions: dims)
            counter = Counter(label: "polyglot_operations_total", dimensions: dims)
            errorCounter = Counter(label: "polyglot_operation_errors_total", dimensions: dims)
            rowCounter = Counter(label: "polyglot_rows_total", dimensions: dims)
            byteCounter = Counter(label: "polyglot_bytes_total", dimensions: dims)
        }

        /// Records one finished operation.
        public func record(nanoseconds: UInt64, rows: Int = 0, bytes: Int = 0, failed: Bool = false) {
            state.withLock {
                $0.total.add(nanoseconds: nanoseconds, rows: rows, bytes: bytes, failed: failed)
                $0.unflushed.add(nanoseconds: nanoseconds, rows: rows, bytes: bytes, failed: failed)
            }
            timer.recordNanoseconds(Int64(clamping: nanoseconds))
            counter.increment()
            if failed { errorCounter.increment() }
            if rows > 0 { rowCounter.increment(by: rows) }
            if bytes > 0 { byteCounter.increment(by: bytes) }
        }

        /// Times `body` and records it; `size` tells how many rows and bytes the result holds.
        public func measure<R>(_ body: () async throws -> R, size: (R) -> (rows: Int, bytes: Int) = { _ in (0, 0) }) async throws -> R {
            let start = ContinuousClock.now
            do {
                let result = try await body()
                let (rows, bytes) = size(result)
                record(nanoseconds: Telemetry.nanoseconds(since: start), rows: rows, bytes: bytes)
                return result
            } catch {
                record(nanoseconds: Telemetry.nanoseconds(since: start), failed: true)
                throw error
            }
        }
    }

    private let streams = Mutex<[OperationKey: Recorder]>([:])
    private let cacheSources = Mutex<[String: @Sendable () -> CacheStats]>([:])
    private let lastFlush = Mutex(Date())
    private let observers = Mutex<[String: DatasetObserver]>([:])
    let observationClock = ObservationClock()

    public init() {}

    /// The advisor's sampler for `dataset`, created on first use.
    public func observer(dataset: String, engine: String, model: DataModel? = nil, sampleEvery: Int = 16,
                         declaredFields: [String] = [], cacheSizes: [Int] = []) -> DatasetObserver {
        let key = dataset + "\u{1F}" + engine
        return observers.withLock { map in
            if let o = map[key] { return o }
            let o = DatasetObserver(dataset: dataset, engine: engine, model: model, sampleEvery: sampleEvery,
                                    declaredFields: declaredFields, clock: observationClock, cacheSizes: cacheSizes)
            map[key] = o
            return o
        }
    }

    /// Every dataset sampler of this process.
    public var datasetObservers: [DatasetObserver] { observers.withLock { Array($0.values) }.sorted { $0.dataset < $1.dataset } }

    /// Takes the observations recorded since the previous call: one per dataset that recorded anything, plus one
    /// for each dataset named in `always` (so quiet datasets still report their declared schema and size).
    public func drainObservations(now: Date = Date(), always: Set<String> = []) -> [WorkloadObservation] {
        datasetObservers.compactMap { o in
            let touched = o.touched
            let observation = o.drain(now: now)
            return touched || always.contains(o.dataset) ? observation : nil
        }
    }

    /// The recorder for `key`, created on first use.
    public func recorder(_ key: OperationKey) -> Recorder {
        streams.withLock { map in
            if let s = map[key] { return s }
            let s = Recorder(key)
            map[key] = s
            return s
        }
    }

    /// Records one finished operation.
    public func record(_ key: OperationKey, nanoseconds: UInt64, rows: Int = 0, bytes: Int = 0, failed: Bool = false) {
        recorder(key).record(nanoseconds: nanoseconds, rows: rows, bytes: bytes, failed: failed)
    }

    @inlinable
    public static func nanoseconds(since start: ContinuousClock.Instant) -> UInt64 {
        let d = ContinuousClock.now - start
        let (s, atto) = d.components
        return UInt64(max(0, s)) &* 1_000_000_000 &+ UInt64(max(0, atto / 1_000_000_000))
    }

    /// Makes a cache engine's counters part of every snapshot.
    public func registerCache(_ name: String, stats: @escaping @Sendable () -> CacheStats) {
        cacheSources.withLock { $0[name] = stats }
    }

    /// Everything measured since this process opened the data map.
    public func snapshot() -> TelemetrySnapshot {
        let all = streams.withLock { $0 }
        let entries = all.map { key, s in TelemetrySnapshot.Entry(key: key, stats: s.state.withLock { $0.total }) }.sorted { $0.key < $1.key }
        let caches = cacheSources.withLock { $0 }.mapValues { $0() }
        return TelemetrySnapshot(takenAt: Date(), entries: entries, caches: caches)
    }

    /// Takes the figures recorded since the previous call, as records ready to persist.
    public func drainInterval(now: Date = Date()) -> [TelemetryRecord] {
        let start = lastFlush.withLock { last in defer { last = now }; return last }
        let all = streams.withLock { $0 }
        var out: [TelemetryRecord] = []
        for (key, s) in all {
            let stats = s.state.withLock { state in defer { state.unflushed = OperationStats() }; return state.unflushed }
            if stats.count > 0 { out.append(TelemetryRecord(intervalStart: start, intervalEnd: now, key: key, stats: stats)) }
        }
        return out.sorted { $0.key < $1.key }
    }

    /// Puts records back after a failed flush, so no interval is lost.
    public func restore(_ records: [TelemetryRecord]) {
        for r in records { recorder(r.key).state.withLock { $0.unflushed.merge(r.stats) } }
    }

    /// Merges persisted records into one entry per stream, as `polyglot stats` shows history.
    public static func summarize(_ records: [TelemetryRecord]) -> [TelemetrySnapshot.Entry] {
        var merged: [OperationKey: OperationStats] = [:]
        for r in records { merged[r.key, default: OperationStats()].merge(r.stats) }
        return merged.map { TelemetrySnapshot.Entry(key: $0.key, stats: $0.value) }.sorted { $0.key < $1.key }
    }
}
