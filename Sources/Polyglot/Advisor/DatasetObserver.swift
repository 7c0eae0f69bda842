import Foundation
import Synchronization

/// Records, for one dataset, the samples the advisor needs (see ``WorkloadObservation``). A point read pays a
/// relaxed atomic increment and a hash of its key (FNV-1a); only one read in `sampleEvery` (for hot keys and
/// timings) and the reads of one key in `sampleEvery` (for the simulated caches) take the lock.
public final class DatasetObserver: Sendable {
    public let dataset: String
    public let engine: String
    public let model: DataModel?
    /// Sampling period, rounded up to a power of two so the check is a mask.
    public let sampleEvery: Int
    let mask: UInt64
    let declaredFields: [String]
    let clock: ObservationClock
    private let ticks = Atomic<UInt64>(0)
    private let writeTicks = Atomic<UInt64>(0)
    private let queryTicks = Atomic<UInt64>(0)
    private let lastWrite = Atomic<Int64>(0)
    private let state: Mutex<State>
    private let cacheThreshold: UInt64

    static let readCap = 1024
    static let scanCap = 256
    static let pathCap = 256
    static let shapeCap = 32

    struct State {
        var start: Date
        var caches: MiniatureCaches
        var ticksAtDrain: UInt64 = 0
        var hotKeys = SpaceSaving(capacity: 32)
        var examined: [String: ExaminedRows] = [:]
        var shapes: [String: QueryShape] = [:]
        var paths: [String: UInt64] = [:]
        var sampledWrites: UInt64 = 0
        var reads: [TimedOperation] = []
        var readsSeen: UInt64 = 0
        var scans: [TimedOperation] = []
        var random: UInt64 = 0x9E37_79B9_7F4A_7C15
        var touched = false
        /// Only the simulated caches' counters reset per interval; their contents stay warm.
        mutating func reset(start: Date) {
            self.start = start
            hotKeys = SpaceSaving(capacity: 32); examined = [:]; shapes = [:]; paths = [:]; sampledWrites = 0
            reads = []; readsSeen = 0; scans = []; touched = false
        }
        mutating func nextRandom() -> UInt64 {
            random ^= random << 13; random ^= random >> 7; random ^= random << 17
            return random
        }
    }

    init(dataset: String, engine: String, model: DataModel?, sampleEvery: Int, declaredFields: [String], clock: ObservationClock,
         cacheSizes: [Int] = []) {
        self.dataset = dataset; self.engine = engine; self.model = model
        var p = 1
        while p < max(1, sampleEvery) { p <<= 1 }
        self.sampleEvery = p
        mask = UInt64(p - 1)
        self.declaredFields = declaredFields
        self.clock = clock
        state = Mutex(State(start: Date(), caches: MiniatureCaches(every: p, sizes: MiniatureCaches.ladder + cacheSizes)))
        cacheThreshold = (UInt64(1) << 63) / UInt64(p)
    }

    // MARK: Hot path

    /// Whether to sample this key access (one in `sampleEvery`).
    @inline(__always)
    public func tick() -> Bool {
        ticks.wrappingAdd(1, ordering: .relaxed).newValue & mask == 0
    }

    /// Feeds a point read of `key` to the simulated caches when the key is in their sample. Call for every read.
    @inline(__always)
    public func simulateRead(_ key: String) {
        let h = KeyTrace.hash(key)
        guard h < cacheThreshold else { return }
        state.withLock { s in s.touched = true; s.caches.read(h) }
    }

    /// Records a sampled point read of `key` that started at `start` and took `nanoseconds`.
    public func recordRead(_ key: String, start: ContinuousClock.Instant, nanoseconds: UInt64) {
        let at = clock.epochSeconds(start)
        state.withLock { s in
            s.touched = true
            s.hotKeys.add(key)
            s.readsSeen += 1
            let op = TimedOperation(start: at, nanoseconds: nanoseconds)
            if s.reads.count < DatasetObserver.readCap { s.reads.append(op) } else {
                // Reservoir sampling keeps a uniform sample of the interval's sampled reads.
                let j = Int(s.nextRandom() % s.readsSeen)
                if j < DatasetObserver.readCap { s.reads[j] = op }
            }
        }
    }

    /// Records writes of `keys` (sampled like reads) and the highest outbox position written.
    public func recordWrites(_ keys: [String], position: Int64? = nil) {
        if let position { lastWrite.max(position, ordering: .relaxed) }
        let sampled = keys.map(KeyTrace.hash).filter { $0 < cacheThreshold }
        guard !sampled.isEmpty else { return }
        state.withLock { s in
            s.touched = true
            for h in sampled { s.caches.write(h) }
        }
    }

    /// Whether to sample the field paths of this written document or row.
    @inline(__always)
    public func tickWrite() -> Bool { writeTicks.wrappingAdd(1, ordering: .relaxed).newValue & mask == 0 }

    /// Records the field paths of a sampled written document or row.
    public func recordFieldPaths(_ json: JSON) {
        var paths: [String] = []
        DatasetObserver.collectPaths(json, prefix: "", depth: 0, into: &paths)
        state.withLock { s in
            s.touched = true
            s.sampledWrites += 1
            for p in paths where s.paths[p] != nil || s.paths.count < DatasetObserver.pathCap { s.paths[p, default: 0] += 1 }
        }
    }

    static func collectPaths(_ json: JSON, prefix: String, depth: Int, into out: inout [String]) {
        guard case .object(let fields) = json, depth < 4, out.count < pathCap else { return }
        for (k, v) in fields {
            let p = prefix.isEmpty ? k : prefix + "." + k
            out.append(p)
            collectPaths(v, prefix: p, depth: depth + 1, into: &out)
        }
    }

    /// Whether to measure rows examined for this query (one in `sampleEvery`).
    @inline(__always)
    public func tickQuery() -> Bool { queryTicks.wrappingAdd(1, ordering: .relaxed).newValue & mask == 0 }

    /// Records a measured query: the rows the engine examined and the rows it returned.
    public func recordExamined(_ operation: String, filter: Filter?, examined: Int, returned: Int) {
        let rows = ExaminedRows(measured: 1, examined: UInt64(max(examined, returned)), returned: UInt64(returned))
        var fields: [String: String] = [:]
        if let filter { DatasetObserver.filterFields(filter, into: &fields) }
        state.withLock { s in
            s.touched = true
            s.examined[operation, default: ExaminedRows()].merge(rows)
            guard !fields.isEmpty, operation == "query" || operation == "select" else { return }
            let sig = fields.keys.sorted().joined(separator: ",")
            if s.shapes[sig] != nil { s.shapes[sig]!.rows.merge(rows) } else if s.shapes.count < DatasetObserver.shapeCap {
                s.shapes[sig] = QueryShape(fields: fields, rows: rows)
            }
        }
    }

    static func filterFields(_ f: Filter, into out: inout [String: String]) {
        func type(_ v: JSON) -> String {
            switch v {
            case .string: "string"
            case .number(let d): d.rounded() == d ? "integer" : "number"
            case .bool: "boolean"
            default: "json"
            }
        }
        switch f {
        case .all: return
        case .and(let fs), .or(let fs): for x in fs { filterFields(x, into: &out) }
        case .not(let x): filterFields(x, into: &out)
        case .exists(let p): out[p.description] = out[p.description] ?? "json"
        case .hasPrefix(let p, _): out[p.description] = "string"
        case .compare(let p, _, let v): out[p.description] = type(v)
        case .isIn(let p, let vs): out[p.description] = vs.first.map(type) ?? "json"
        }
    }

    /// Records a scan-like operation (query, count, select, aggregate, SQL) of 1 ms or more; the longest are kept.
    public func recordScan(_ operation: String, start: ContinuousClock.Instant, nanoseconds: UInt64, rows: Int) {
        guard nanoseconds >= 1_000_000 else { return }
        let op = TimedOperation(start: clock.epochSeconds(start), nanoseconds: nanoseconds, operation: operation, rows: UInt64(max(0, rows)))
        state.withLock { s in
            s.touched = true
            if s.scans.count < DatasetObserver.scanCap { s.scans.append(op); return }
            if let i = s.scans.indices.min(by: { s.scans[$0].nanoseconds < s.scans[$1].nanoseconds }), s.scans[i].nanoseconds < nanoseconds {
                s.scans[i] = op
            }
        }
    }

    /// The highest outbox position this process wrote to the dataset.
    public var lastWritePosition: Int64 { lastWrite.load(ordering: .relaxed) }

    /// Takes what was recorded since the previous drain. Always returns an observation when the dataset declares
    /// fields (so schema changes are seen even in quiet intervals) or something was recorded.
    func drain(now: Date) -> WorkloadObservation {
        let (s, curve, workingSet, reads) = state.withLock { s -> (State, [CacheCurvePoint], Int?, UInt64) in
            let taken = s
            let curve = s.caches.takeCounts()
            let ticks = self.ticks.load(ordering: .relaxed)
            let reads = ticks &- s.ticksAtDrain
            s.ticksAtDrain = ticks
            s.reset(start: now)
            return (taken, curve, s.caches.workingSetEstimate, reads)
        }
        var o = WorkloadObservation(dataset: dataset, engine: engine, intervalStart: s.start, intervalEnd: now, model: model)
        o.cacheCurve = curve.contains { $0.lookups > 0 } ? curve : []
        o.cacheSampleEvery = sampleEvery
        o.cacheReads = reads
        o.workingSet = workingSet
        o.hotKeys = s.hotKeys
        o.examined = s.examined
        o.queryShapes = s.shapes.keys.sorted().map { s.shapes[$0]! }
        o.fieldPaths = s.paths
        o.sampledWrites = s.sampledWrites
        o.declaredFields = declaredFields
        o.pointReads = s.reads.sorted { $0.start < $1.start }
        o.scans = s.scans.sorted { $0.start < $1.start }
        return o
    }

    var touched: Bool { state.withLock { $0.touched } }
}

/// Converts monotonic instants to wall-clock seconds, so samples of different datasets (and processes) line up.
final class ObservationClock: Sendable {
    let base: ContinuousClock.Instant
    let baseDate: Date
    init() { base = .now; baseDate = Date() }
    func epochSeconds(_ instant: ContinuousClock.Instant) -> Double {
        let d = instant - base
        return baseDate.timeIntervalSince1970 + Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
