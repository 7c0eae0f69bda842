/// A bounded heavy-hitters sketch (Metwally, Agrawal, El Abbadi: "Efficient computation of frequent and top-k
/// elements in data streams", 2005): at most `capacity` counters; a new key evicts the smallest counter and
/// inherits its count as its error bound. Any key seen more than `total / capacity` times is guaranteed to be held,
/// and a held key's true count lies in `count - error ... count`.
///
/// ```swift
/// var sketch = SpaceSaving(capacity: 64)
/// for key in ["p1", "p1", "p2", "p1"] { sketch.add(key) }
/// sketch.top(1)   // [("p1", count 3, error 0)]
/// ```
///
/// Sketches of different intervals merge (``merge(_:)``), so a window's hot keys come from the persisted history.
public struct SpaceSaving: Sendable, Hashable, Codable {
    public struct Counter: Sendable, Hashable, Codable {
        public var key: String
        /// Overestimate of the key's count: the true count is between `count - error` and `count`.
        public var count: UInt64
        public var error: UInt64
    }

    public let capacity: Int
    /// How many keys were added in all.
    public private(set) var total: UInt64 = 0
    private var counters: [String: Counter] = [:]

    public init(capacity: Int = 64) { self.capacity = max(1, capacity) }

    public mutating func add(_ key: String, count: UInt64 = 1) {
        total &+= count
        if counters[key] != nil { counters[key]!.count &+= count; return }
        if counters.count < capacity {
            counters[key] = Counter(key: key, count: count, error: 0)
            return
        }
        // Evict the smallest counter (any, among ties: the guarantees hold either way); the newcomer inherits its
        // count as error. Comparing counts only keeps this cheap on the sampled read path.
        let smallest = counters.values.min { $0.count < $1.count }!
        counters[smallest.key] = nil
        counters[key] = Counter(key: key, count: smallest.count &+ count, error: smallest.count)
    }

    /// Combines two sketches (Agarwal et al., "Mergeable summaries"): counts add, keys missing from one side are
    /// charged that side's smallest count as error, then the largest `capacity` counters are kept.
    public mutating func merge(_ other: SpaceSaving) {
        let floorA = counters.count < capacity ? 0 : (counters.values.map(\.count).min() ?? 0)
        let floorB = other.counters.count < other.capacity ? 0 : (other.counters.values.map(\.count).min() ?? 0)
        var merged: [String: Counter] = [:]
        for key in Set(counters.keys).union(other.counters.keys) {
            let a = counters[key], b = other.counters[key]
            let count = (a?.count ?? floorA) &+ (b?.count ?? floorB)
            let error = (a?.error ?? floorA) &+ (b?.error ?? floorB)
            merged[key] = Counter(key: key, count: count, error: error)
        }
        let kept = merged.values.sorted { ($0.count, $1.key) > ($1.count, $0.key) }.prefix(capacity)
        counters = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0) })
        total &+= other.total
    }

    /// The `k` keys with the largest counts, largest first.
    public func top(_ k: Int) -> [Counter] {
        Array(counters.values.sorted { ($0.count, $1.key) > ($1.count, $0.key) }.prefix(k))
    }

    /// A lower bound on the share of all additions that went to the `k` hottest keys (their counts minus errors).
    public func guaranteedShare(ofTop k: Int) -> Double {
        guard total > 0 else { return 0 }
        return Double(top(k).reduce(UInt64(0)) { $0 + ($1.count - $1.error) }) / Double(total)
    }

    public var isEmpty: Bool { counters.isEmpty }
}
