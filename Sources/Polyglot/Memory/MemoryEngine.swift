import Foundation
import Synchronization

/// What a cache projection needs from the engine that holds it.
public protocol CacheBackend: Sendable {
    /// The cached entry for `key`, or `nil` on a miss (absent, expired or invalidated).
    func lookup(_ key: String) async throws -> CachedEntry?
    /// Stores `entry` unless the cache already holds a newer version or a newer invalidation of `key`,
    /// or the load began before an invalidation the cache can no longer see. Returns whether it stored.
    /// `jitter` is the fraction of `ttl` added or removed at random, so entries filled together expire apart.
    func fill(_ key: String, _ entry: CachedEntry, ttl: Duration, jitter: Double, loadStartedAt: ContinuousClock.Instant) async throws -> Bool
    /// Drops `key` and remembers `version`, so no fill older than it can land afterwards.
    func invalidate(_ key: String, version: Int64, ttl: Duration) async throws
    func stats() -> CacheStats
    /// An in-process backend answers here without suspending, which keeps a cache hit under a microsecond;
    /// a remote one returns `.notLocal` (the default) and is asked through ``lookup(_:)``.
    func localLookup(_ key: String) -> LocalLookup
    /// Called when a load that followed a miss of `key` found nothing or failed, so no ``fill(_:_:ttl:jitter:loadStartedAt:)``
    /// follows. A backend that coordinates loads across processes releases its claim here; the default does nothing.
    func loadAbandoned(_ key: String) async
}

/// The answer of ``CacheBackend/localLookup(_:)``.
public enum LocalLookup: Sendable {
    case hit(CachedEntry)
    case miss
    case notLocal
}

extension CacheBackend {
    public func localLookup(_ key: String) -> LocalLookup { .notLocal }
    public func loadAbandoned(_ key: String) async {}
}

/// The in-process engine (`kind: memory`): an LRU bounded by entries and bytes, with TTLs.
/// It serves the `cache` projection and `keyValue` datasets whose loss on restart is acceptable.
///
/// Options: `maxEntries` (default 100000), `maxBytes` (default 64 MiB).
///
/// ```yaml
/// engines:
///   cache: { kind: memory, options: { maxEntries: 50000, maxBytes: 32MB } }
/// ```
public final class MemoryEngine: Engine, EngineFactory, CacheBackend {
    public static let kind = "memory"
    public static let capabilities: Set<Capability> = [.keyValue, .cache]

    public let spec: EngineSpec
    public var capabilities: Set<Capability> { MemoryEngine.capabilities }
    let lru: Mutex<LRUStore>
    private let sequence = Atomic<Int64>(0)

    public init(spec: EngineSpec) throws {
        self.spec = spec
        let maxEntries = try MemoryEngine.intOption(spec, "maxEntries", default: 100_000, counts: true)
        let maxBytes = try MemoryEngine.intOption(spec, "maxBytes", default: 64 << 20, counts: false)
        lru = Mutex(LRUStore(maxEntries: maxEntries, maxBytes: maxBytes))
    }

    /// A positive whole option: a count (`counts`, optionally with K or M) or a number of bytes (with KB, MB or GB).
    static func intOption(_ spec: EngineSpec, _ name: String, default value: Int, counts: Bool) throws -> Int {
        guard let text = spec.options[name] else { return value }
        guard let n = DataMap.parseSize(text, counts: counts), n > 0 else {
            throw PolyglotError(.invalidDataMap, "Engine '\(spec.name)': option \(name) is '\(text)', which is not a positive \(counts ? "count" : "size") (or does not fit 64 bits).",
                                fix: counts ? "Write a positive whole number, optionally with K or M (thousands, millions)." : "Write a positive whole number of bytes, optionally with KB, MB or GB.")
        }
        return n
    }

    public static func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine {
        try MemoryEngine(spec: spec)
    }

    public func prepare(_ datasets: [DatasetSpec]) async throws {}
    public func close() async throws { lru.withLock { $0 = LRUStore(maxEntries: $0.maxEntries, maxBytes: $0.maxBytes) } }

    /// How long an invalidation is remembered. Fills of loads that took longer are refused, so an expired
    /// tombstone can never let a stale value in; it is short so a rolled-back write blocks fills only briefly.
    static let tombstoneLifetime: Duration = .seconds(10)

    func nextVersion() -> Int64 { sequence.add(1, ordering: .relaxed).newValue }

    static func now() -> Double { Date().timeIntervalSince1970 }

    static func expiry(_ ttl: Duration?, jitter: Double = 0, now: Double) -> Double {
        guard let ttl else { return .infinity }
        var seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        if jitter > 0 { seconds *= 1 + Double.random(in: -jitter...jitter) }
        return now + seconds
    }

    // MARK: Cache backend

    public func cacheBackend() throws -> any CacheBackend { self }

    public func lookup(_ key: String) async throws -> CachedEntry? { lookupNow(key) }

    public func localLookup(_ key: String) -> LocalLookup {
        if let entry = lookupNow(key) { return .hit(entry) }
        return .miss
    }

    /// The synchronous lookup behind ``lookup(_:)``.
    public func lookupNow(_ key: String) -> CachedEntry? {
        let now = MemoryEngine.now()
        return lru.withLock { lru -> CachedEntry? in
            guard let entry = lru.hit(key, now: now) else {
                lru.counters.misses += 1
                return nil
            }
            lru.counters.hits += 1
            return entry
        }
    }

    public func fill(_ key: String, _ entry: CachedEntry, ttl: Duration, jitter: Double, loadStartedAt: ContinuousClock.Instant) async throws -> Bool {
        fillNow(key, entry, ttl: ttl, jitter: jitter, loadStartedAt: loadStartedAt)
    }

    /// The synchronous fill behind ``fill(_:_:ttl:jitter:loadStartedAt:)``.
    public func fillNow(_ key: String, _ entry: CachedEntry, ttl: Duration, jitter: Double, loadStartedAt: ContinuousClock.Instant) -> Bool {
        let now = MemoryEngine.now()
        let stored = lru.withLock { lru -> Bool in
            if let evicted = lru.lastTombstoneEviction, evicted >= loadStartedAt { return false }
            // A load slower than a tombstone's lifetime may have missed an invalidation that has since expired.
            if ContinuousClock.now - loadStartedAt >= MemoryEngine.tombstoneLifetime { return false }
            // A live entry or tombstone with a newer version wins: never write an older version over a newer one.
            if let existing = lru.peek(key), existing.expiresAt > now, existing.version > entry.version { return false }
            lru.set(key, data: entry.data, version: entry.version, expiresAt: MemoryEngine.expiry(ttl, jitter: jitter, now: now))
            return true
        }
        lru.withLock { if stored { $0.counters.fills += 1 } else { $0.counters.rejectedFills += 1 } }
        return stored
    }

    public func invalidate(_ key: String, version: Int64, ttl: Duration) async throws {
        let now = MemoryEngine.now()
        // A tombstone outlives any load that `fill` still accepts (see `maxLoadDuration`).
        let keep = MemoryEngine.tombstoneLifetime
        lru.withLock { lru in
            if let existing = lru.peek(key), existing.expiresAt > now, existing.version > version { return }
            lru.set(key, data: Data(), version: version, expiresAt: MemoryEngine.expiry(keep, now: now), tombstone: true)
            lru.counters.invalidations += 1
        }
    }

    public func stats() -> CacheStats {
        lru.withLock { lru in
            var s = lru.counters
            s.entries = lru.count
            s.bytes = lru.bytes
            s.evictions = lru.evictions
            return s
        }
    }

    // MARK: Key-value

    public func keyValueStore(for dataset: DatasetSpec) throws -> any KeyValueStore {
        MemoryKeyValueStore(engine: self, dataset: dataset.name, prefix: "kv\u{1F}\(dataset.name)\u{1F}")
    }
}

struct MemoryKeyValueStore: KeyValueStore {
    let engine: MemoryEngine
    let dataset: String
    let prefix: String

    func token() -> ConsistencyToken { ConsistencyToken(engine: engine.spec.name, position: engine.nextVersion()) }

    func get(_ key: String) async throws -> Data? {
        let now = MemoryEngine.now()
        return engine.lru.withLock { $0.get(prefix + key, now: now) }.flatMap { $0.tombstone ? nil : $0.data }
    }

    func set(_ key: String, _ value: Data, ttl: Duration?) async throws -> ConsistencyToken {
        let t = token()
        let expires = MemoryEngine.expiry(ttl, now: MemoryEngine.now())
        engine.lru.withLock { $0.set(prefix + key, data: value, version: t.position, expiresAt: expires) }
        return t
    }

    func delete(_ key: String) async throws -> Bool {
        let now = MemoryEngine.now()
        return engine.lru.withLock { lru in
            guard lru.get(prefix + key, now: now) != nil else { return false }
            return lru.delete(prefix + key)
        }
    }

    func increment(_ key: String, by delta: Int64, ttl: Duration?) async throws -> Int64 {
        let now = MemoryEngine.now()
        let version = engine.nextVersion()
        return try engine.lru.withLock { lru in
            let existing = lru.get(prefix + key, now: now)
            let next = try KeyValueCounter.increment(existing?.data, by: delta, key: key, dataset: dataset)
            let expires = existing?.expiresAt ?? MemoryEngine.expiry(ttl, now: now)
            lru.set(prefix + key, data: Data(String(next).utf8), version: version, expiresAt: expires)
            return next
        }
    }

    func scan(prefix keyPrefix: String, after: String?, limit: Int) async throws -> [KeyValueEntry] {
        let now = MemoryEngine.now()
        let nodes = engine.lru.withLock { $0.scan(prefix: prefix + keyPrefix, now: now) }
        var out: [KeyValueEntry] = []
        for node in nodes {
            let key = String(node.key.dropFirst(prefix.count))
            if let after, key <= after { continue }
            out.append(KeyValueEntry(key: key, value: node.data,
                                     expiresAt: node.expiresAt.isFinite ? Date(timeIntervalSince1970: node.expiresAt) : nil))
            if out.count >= limit { break }
        }
        return out
    }
}
