/// Estimates the hit rate an LRU cache of a given number of entries would reach on a recorded access trace,
/// by replaying the trace through an exact LRU. A write in the trace invalidates its key (the relay and the facade
/// do that to a real cache), so the next read of that key misses.
///
/// The trace is a time-sampled subset of the real accesses (every n-th one). Under the independent reference model
/// thinning keeps each key's share of accesses, so an LRU of the *same* entry count sees about the same hit rate on
/// the sample as on the full stream; what the sample exaggerates is cold misses (a short trace has seen fewer
/// repeats). The estimate therefore errs low, never high, which is the safe direction for advice.
///
/// ```swift
/// let trace = KeyTrace(every: 1, accesses: [(KeyTrace.hash("a"), false), (KeyTrace.hash("a"), false)])
/// LRUSimulation.hitRate(trace.accesses, capacity: 100)   // 0.5: one cold miss, one hit
/// ```
public enum LRUSimulation {
    /// The hit rate of an LRU cache holding `capacity` entries over `accesses` (key hash, isWrite), counting reads
    /// after the first `warmup` fraction of the trace. `nil` when no read is counted.
    public static func hitRate(_ accesses: [(key: UInt64, isWrite: Bool)], capacity: Int, warmup: Double = 0) -> Double? {
        guard capacity > 0 else { return accesses.contains { !$0.isWrite } ? 0 : nil }
        var lru = LRU(capacity: capacity)
        let skip = Int(Double(accesses.count) * min(max(warmup, 0), 0.9))
        var reads = 0, hits = 0
        for (i, a) in accesses.enumerated() {
            if a.isWrite { lru.remove(a.key); continue }
            let hit = lru.touch(a.key)
            if i >= skip { reads += 1; if hit { hits += 1 } }
        }
        return reads == 0 ? nil : Double(hits) / Double(reads)
    }

    /// The share of counted reads (after `warmup`) that read a key for the first time in the trace: misses no
    /// cache size avoids within the trace, and the ceiling of every estimate on it.
    public static func firstTimeShare(_ accesses: [(key: UInt64, isWrite: Bool)], warmup: Double = 0) -> Double? {
        let skip = Int(Double(accesses.count) * min(max(warmup, 0), 0.9))
        var seen = Set<UInt64>()
        var reads = 0, first = 0
        for (i, a) in accesses.enumerated() {
            let new = seen.insert(a.key).inserted
            if a.isWrite || i < skip { continue }
            reads += 1
            if new { first += 1 }
        }
        return reads == 0 ? nil : Double(first) / Double(reads)
    }

    /// Hit rates for several capacities at once, in the order given.
    public static func curve(_ accesses: [(key: UInt64, isWrite: Bool)], capacities: [Int], warmup: Double = 0) -> [(capacity: Int, hitRate: Double)] {
        capacities.compactMap { c in hitRate(accesses, capacity: c, warmup: warmup).map { (c, $0) } }
    }

    /// An exact LRU over key hashes: a dictionary into a doubly linked list kept in arrays.
    struct LRU {
        let capacity: Int
        var slot: [UInt64: Int] = [:]
        var keys: [UInt64] = []
        var prev: [Int] = []
        var next: [Int] = []
        var free: [Int] = []
        var head = -1, tail = -1   // head: most recent

        init(capacity: Int) { self.capacity = capacity }

        var count: Int { slot.count }

        private mutating func unlink(_ i: Int) {
            if prev[i] >= 0 { next[prev[i]] = next[i] } else { head = next[i] }
            if next[i] >= 0 { prev[next[i]] = prev[i] } else { tail = prev[i] }
        }

        private mutating func pushFront(_ i: Int) {
            prev[i] = -1; next[i] = head
            if head >= 0 { prev[head] = i }
            head = i
            if tail < 0 { tail = i }
        }

        /// Reads `key`: true on a hit; a miss inserts it, evicting the least recently used entry when full.
        mutating func touch(_ key: UInt64) -> Bool {
            if let i = slot[key] { unlink(i); pushFront(i); return true }
            if slot.count >= capacity, tail >= 0 {
                let victim = tail
                unlink(victim)
                slot[keys[victim]] = nil
                free.append(victim)
            }
            let i: Int
            if let f = free.popLast() { i = f; keys[i] = key } else {
                i = keys.count; keys.append(key); prev.append(-1); next.append(-1)
            }
            slot[key] = i
            pushFront(i)
            return false
        }

        mutating func remove(_ key: UInt64) {
            guard let i = slot.removeValue(forKey: key) else { return }
            unlink(i)
            free.append(i)
        }
    }
}

/// Simulated hits and lookups of one cache size over an interval.
public struct CacheCurvePoint: Sendable, Hashable, Codable {
    /// The real cache size simulated, in entries.
    public var entries: Int
    public var lookups: UInt64
    public var hits: UInt64
    public init(entries: Int, lookups: UInt64, hits: UInt64) { self.entries = entries; self.lookups = lookups; self.hits = hits }
}

/// Miniature LRU caches on a spatially sampled key stream (Waldspurger et al., "Efficient MRC construction with
/// SHARDS", FAST '15, and "Cache modeling and optimization using miniature simulations", ATC '17): only keys whose
/// hash falls under a threshold (one key in `every`) are simulated, each size `C` by an LRU of `C / every`
/// entries. Because a sampled key keeps *all* its accesses, reuse distances keep their shape (bursts and
/// temporal locality included), and the caches stay warm across telemetry intervals.
///
/// ```swift
/// var caches = MiniatureCaches(every: 1, sizes: [100, 1000])
/// caches.read(KeyTrace.hash("p1")); caches.read(KeyTrace.hash("p1"))
/// caches.takeCounts()   // [100 entries: 2 lookups, 1 hit; 1000 entries: 2 lookups, 1 hit]
/// ```
public struct MiniatureCaches: Sendable {
    public let every: Int
    let threshold: UInt64
    public let sizes: [Int]
    var lrus: [LRUSimulation.LRU]
    var lookups: [UInt64]
    var hits: [UInt64]

    /// The largest simulated cache holds this many sampled entries at most.
    static let maxSampledEntries = 131_072
    /// The sizes simulated by default, in entries.
    public static let ladder = [100, 1_000, 10_000, 100_000, 1_000_000]

    public init(every: Int, sizes: [Int] = MiniatureCaches.ladder) {
        let e = max(1, every)
        self.every = e
        threshold = (UInt64(1) << 63) / UInt64(e)
        // A simulated cache of fewer than 8 sampled entries says little about the real one: such sizes are left out.
        let kept = Set(sizes).filter { $0 / e >= min(8, max(1, 100 / e)) && $0 / e <= MiniatureCaches.maxSampledEntries }.sorted()
        self.sizes = kept
        lrus = kept.map { LRUSimulation.LRU(capacity: max(1, $0 / e)) }
        lookups = Array(repeating: 0, count: kept.count)
        hits = Array(repeating: 0, count: kept.count)
    }

    /// Whether the key with this hash is in the sample.
    @inline(__always)
    public func samples(_ hash: UInt64) -> Bool { hash < threshold }

    public mutating func read(_ hash: UInt64) {
        for i in lrus.indices {
            lookups[i] &+= 1
            if lrus[i].touch(hash) { hits[i] &+= 1 }
        }
    }

    /// A write invalidates the key, as the facade and the relay do to a real cache.
    public mutating func write(_ hash: UInt64) {
        for i in lrus.indices { lrus[i].remove(hash) }
    }

    /// The counts since the previous call; the simulated caches keep their contents.
    public mutating func takeCounts() -> [CacheCurvePoint] {
        defer { for i in lookups.indices { lookups[i] = 0; hits[i] = 0 } }
        return sizes.indices.map { CacheCurvePoint(entries: sizes[$0], lookups: lookups[$0], hits: hits[$0]) }
    }

    /// Distinct keys the sample saw, scaled up, while the largest simulated cache has not evicted (else nil).
    public var workingSetEstimate: Int? {
        guard let last = lrus.last, last.count < last.capacity else { return nil }
        return last.count * every
    }
}
