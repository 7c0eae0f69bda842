import Foundation

/// A sequence of key accesses: each entry is a stable 64-bit hash of the key (FNV-1a, the same in every process)
/// with the top bit set for writes; its JSON form packs the hashes as base64. ``hash(_:)`` is also what decides
/// which keys the advisor's simulated caches sample (``MiniatureCaches``), and ``LRUSimulation`` replays traces.
public struct KeyTrace: Sendable, Hashable, Codable {
    /// One recorded access in `every` real accesses.
    public var every: Int
    public private(set) var entries: [UInt64]

    static let writeBit: UInt64 = 1 << 63

    public init(every: Int = 1, entries: [UInt64] = []) { self.every = max(1, every); self.entries = entries }

    public init(every: Int, accesses: [(key: UInt64, isWrite: Bool)]) {
        self.init(every: every, entries: accesses.map { $0.isWrite ? ($0.key | KeyTrace.writeBit) : ($0.key & ~KeyTrace.writeBit) })
    }

    /// FNV-1a over the key's UTF-8 bytes, then MurmurHash3's 64-bit finalizer, with the top bit cleared (it marks
    /// writes). The finalizer matters: FNV-1a alone barely changes its high bits for keys that differ in their last
    /// character (`p101`, `p102`), and the simulated caches sample keys by the high bits.
    public static func hash(_ key: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        h ^= h >> 33; h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33; h = h &* 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h & ~writeBit
    }

    public var accesses: [(key: UInt64, isWrite: Bool)] {
        entries.map { ($0 & ~KeyTrace.writeBit, $0 & KeyTrace.writeBit != 0) }
    }

    public var count: Int { entries.count }

    enum CodingKeys: String, CodingKey { case every, entries }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        every = try c.decode(Int.self, forKey: .every)
        let packed = try c.decode(String.self, forKey: .entries)
        guard let data = Data(base64Encoded: packed), data.count % 8 == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .entries, in: c, debugDescription: "key trace is not base64 of 64-bit values")
        }
        entries = data.withUnsafeBytes { raw in
            (0..<(data.count / 8)).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(every, forKey: .every)
        var data = Data(capacity: entries.count * 8)
        for e in entries { withUnsafeBytes(of: e.littleEndian) { data.append(contentsOf: $0) } }
        try c.encode(data.base64EncodedString(), forKey: .entries)
    }
}

/// Rows an engine read to answer queries, against the rows the queries returned, over the queries measured.
public struct ExaminedRows: Sendable, Hashable, Codable {
    /// Operations whose examined rows were measured (engines may measure a sample of them).
    public var measured: UInt64 = 0
    public var examined: UInt64 = 0
    public var returned: UInt64 = 0
    public init(measured: UInt64 = 0, examined: UInt64 = 0, returned: UInt64 = 0) {
        self.measured = measured; self.examined = examined; self.returned = returned
    }
    public mutating func merge(_ o: ExaminedRows) { measured += o.measured; examined += o.examined; returned += o.returned }
    /// Rows examined per row returned (a query that returns nothing counts as returning one).
    public var ratio: Double { measured == 0 ? 0 : Double(examined) / Double(max(returned, measured)) }
}

/// The fields one kind of filtered query filters on, with the rows it examined and returned.
public struct QueryShape: Sendable, Hashable, Codable {
    /// Filtered field paths and the type of value compared with each (`string`, `number`, `boolean`).
    public var fields: [String: String]
    public var rows: ExaminedRows
    public init(fields: [String: String], rows: ExaminedRows) { self.fields = fields; self.rows = rows }
    var signature: String { fields.keys.sorted().joined(separator: ",") }
}

/// One timed operation: when it started (seconds since 1970) and how long it took.
public struct TimedOperation: Sendable, Hashable, Codable {
    public var start: Double
    public var nanoseconds: UInt64
    /// For scans: the operation name and the rows it returned (or examined when measured).
    public var operation: String?
    public var rows: UInt64?
    public init(start: Double, nanoseconds: UInt64, operation: String? = nil, rows: UInt64? = nil) {
        self.start = start; self.nanoseconds = nanoseconds; self.operation = operation; self.rows = rows
    }
    public var end: Double { start + Double(nanoseconds) / 1e9 }
}

/// How much a dataset holds, as its engine reports it.
public struct DatasetSize: Sendable, Hashable, Codable {
    public var rows: Int?
    /// Table and index bytes on disk (or in memory for in-process engines).
    public var bytes: Int?
    public var vectors: Int?
    public var dimension: Int?
    /// Bytes of the dataset's indexes (for vectors, the approximate index).
    public var indexBytes: Int?
    public init(rows: Int? = nil, bytes: Int? = nil, vectors: Int? = nil, dimension: Int? = nil, indexBytes: Int? = nil) {
        self.rows = rows; self.bytes = bytes; self.vectors = vectors; self.dimension = dimension; self.indexBytes = indexBytes
    }
}

/// What the advisor needs beyond per-operation counts, for one dataset over one telemetry interval: a sampled key
/// trace, hot keys, rows examined by queries, field paths written, timings of sampled point reads and of scans,
/// the data size, and how far relayed projections are behind. Persisted next to the telemetry records.
public struct WorkloadObservation: Sendable, Hashable, Codable {
    public var dataset: String
    /// The dataset's source engine.
    public var engine: String
    public var intervalStart: Date
    public var intervalEnd: Date
    public var model: DataModel?
    /// Simulated LRU caches of several sizes on the sampled keys (see ``MiniatureCaches``): lookups and hits.
    public var cacheCurve: [CacheCurvePoint] = []
    /// One key in this many is simulated.
    public var cacheSampleEvery: Int = 1
    /// Point reads of the interval, sampled or not: the sample should have seen `cacheReads / cacheSampleEvery`.
    public var cacheReads: UInt64 = 0
    /// Distinct keys read (since their last write), estimated from the sample; nil when more than the largest simulated cache holds.
    public var workingSet: Int?
    /// Hot keys among the sampled accesses.
    public var hotKeys = SpaceSaving(capacity: 32)
    /// Per operation (`query`, `count`, `select`, ...): rows examined against rows returned.
    public var examined: [String: ExaminedRows] = [:]
    /// Filtered queries by the fields they filter on.
    public var queryShapes: [QueryShape] = []
    /// Field paths seen in sampled written documents (documents) or rows (tables), with how many samples held each.
    public var fieldPaths: [String: UInt64] = [:]
    /// Written documents or rows whose field paths were sampled.
    public var sampledWrites: UInt64 = 0
    /// The fields (documents) or columns (tables) the data map declared during this interval.
    public var declaredFields: [String] = []
    /// Sampled point reads: when they started and how long they took.
    public var pointReads: [TimedOperation] = []
    /// Scan-like operations (queries, counts, selects, aggregates, SQL) of 1 ms or more.
    public var scans: [TimedOperation] = []
    public var size: DatasetSize?
    /// Per projection copy (`dataset@engine`): outbox positions written but not yet applied there.
    public var projectionLag: [String: Int64] = [:]

    public init(dataset: String, engine: String, intervalStart: Date, intervalEnd: Date, model: DataModel? = nil) {
        self.dataset = dataset; self.engine = engine; self.intervalStart = intervalStart; self.intervalEnd = intervalEnd
        self.model = model
    }
}

/// Counts the rows an engine examines while answering the current operation. The facade binds one around the
/// queries it samples; engines add what they read (SQLite: full-scan steps; PostgreSQL: the transaction's tuple
/// counters) with `RowsExamined.current?.add(n)`.
public final class RowsExamined: Sendable {
    @TaskLocal public static var current: RowsExamined?
    private let value = Mutex<Int>(0)
    /// Whether an engine reported anything (an engine that cannot measure leaves it false).
    private let reported = Mutex<Bool>(false)
    public init() {}
    public func add(_ n: Int) {
        value.withLock { $0 += max(0, n) }
        reported.withLock { $0 = true }
    }
    public var count: Int { value.withLock { $0 } }
    public var wasReported: Bool { reported.withLock { $0 } }
}

import Synchronization
