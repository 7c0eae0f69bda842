import Foundation
import Synchronization

/// A value with the source version it was read at.
public struct CachedEntry: Sendable, Hashable {
    public var version: Int64
    public var data: Data
    public init(version: Int64, data: Data) { self.version = version; self.data = data }
}

/// An LRU map bounded by entry count and bytes, with per-entry expiry and version tombstones.
/// Not thread-safe on its own; ``MemoryEngine`` guards it with a mutex.
struct LRUStore {
    struct Node {
        var key: String
        var data: Data
        var version: Int64
        /// Expiry in seconds since 1970; `.infinity` for none.
        var expiresAt: Double
        var tombstone: Bool
        var prev: Int
        var next: Int
        var cost: Int { key.utf8.count + data.count + 64 }
    }

    let maxEntries: Int
    let maxBytes: Int
    private var index: [String: Int] = [:]
    private var nodes: [Node] = []
    private var free: [Int] = []
    private var head = -1  // most recent
    private var tail = -1  // least recent
    private(set) var bytes = 0
    var evictions: UInt64 = 0
    /// Hit, miss, fill and invalidation counters, kept under the same lock as the entries.
    var counters = CacheStats()
    /// When a tombstone was last evicted by pressure (monotonic); fills that began earlier are refused.
    var lastTombstoneEviction: ContinuousClock.Instant?

    init(maxEntries: Int, maxBytes: Int) {
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = max(1024, maxBytes)
    }

    var count: Int { index.count }

    private mutating func unlink(_ i: Int) {
        let p = nodes[i].prev, n = nodes[i].next
        if p >= 0 { nodes[p].next = n } else { head = n }
        if n >= 0 { nodes[n].prev = p } else { tail = p }
    }

    private mutating func pushFront(_ i: Int) {
        nodes[i].prev = -1
        nodes[i].next = head
        if head >= 0 { nodes[head].prev = i }
        head = i
        if tail < 0 { tail = i }
    }

    private mutating func remove(at i: Int) {
        unlink(i)
        bytes -= nodes[i].cost
        index[nodes[i].key] = nil
        nodes[i].data = Data()
        nodes[i].key = ""
        free.append(i)
    }

    /// The live entry for `key`, marking it recently used; expired entries are removed.
    mutating func get(_ key: String, now: Double) -> Node? {
        guard let i = index[key] else { return nil }
        if nodes[i].expiresAt <= now { remove(at: i); return nil }
        if head != i { unlink(i); pushFront(i) }
        return nodes[i]
    }

    /// The live entry's version and value, marking it recently used; nil when absent, expired or a tombstone.
    /// Copies only what a cache hit needs.
    mutating func hit(_ key: String, now: Double) -> CachedEntry? {
        guard let i = index[key] else { return nil }
        if nodes[i].expiresAt <= now { remove(at: i); return nil }
        if nodes[i].tombstone { return nil }
        if head != i { unlink(i); pushFront(i) }
        return CachedEntry(version: nodes[i].version, data: nodes[i].data)
    }

    /// Reads without touching recency or removing.
    func peek(_ key: String) -> Node? { index[key].map { nodes[$0] } }

    mutating func set(_ key: String, data: Data, version: Int64, expiresAt: Double, tombstone: Bool = false) {
        if let i = index[key] { remove(at: i) }
        let node = Node(key: key, data: data, version: version, expiresAt: expiresAt, tombstone: tombstone, prev: -1, next: -1)
        let i: Int
        if let f = free.popLast() { nodes[f] = node; i = f } else { nodes.append(node); i = nodes.count - 1 }
        index[key] = i
        bytes += node.cost
        pushFront(i)
        while index.count > maxEntries || bytes > maxBytes, tail >= 0, tail != i {
            if nodes[tail].tombstone { lastTombstoneEviction = .now }
            remove(at: tail)
            evictions += 1
        }
    }

    @discardableResult
    mutating func delete(_ key: String) -> Bool {
        guard let i = index[key] else { return false }
        remove(at: i)
        return true
    }

    /// Live, non-tombstone entries whose key starts with `prefix`, sorted by key.
    mutating func scan(prefix: String, now: Double) -> [Node] {
        var out: [Node] = []
        var expired: [String] = []
        for (key, i) in index where key.hasPrefix(prefix) {
            if nodes[i].expiresAt <= now { expired.append(key) } else if !nodes[i].tombstone { out.append(nodes[i]) }
        }
        for key in expired { delete(key) }
        return out.sorted { $0.key < $1.key }
    }
}
