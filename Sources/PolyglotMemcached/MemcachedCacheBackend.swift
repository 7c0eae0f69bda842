import Foundation
import Logging
import Polyglot
import Synchronization

/// The cache projection on memcached. Each entry stores its document version (``StoredValue``); an invalidation
/// replaces the entry with a versioned tombstone kept for ``tombstoneLifetime``. Fills and invalidations are
/// compare-and-set on the item (`mg ... c`, then `ms ... C<cas>`, or `ms ... ME` when absent), so a fill never
/// writes an older version over a newer entry or tombstone, even when several processes share the server.
///
/// Hit, miss, fill, rejected-fill and invalidation counts are this process's; entries, bytes and evictions are
/// the server's (all keys), refreshed on open and by `maintain`.
final class MemcachedCacheBackend: CacheBackend {
    let name: String
    let settings: MemcachedSettings
    let client: MemcachedClient
    let logger: Logger
    let coder: KeyCoder
    private let counters = Mutex(CacheStats())

    /// How long an invalidation is remembered, as in the in-process engine. A fill whose load started longer ago
    /// is refused, so a tombstone that expired (or was evicted by age) cannot let a stale value in.
    static let tombstoneLifetime: Duration = .seconds(10)

    init(name: String, settings: MemcachedSettings, client: MemcachedClient, logger: Logger) {
        self.name = name
        self.settings = settings
        self.client = client
        self.logger = logger
        coder = KeyCoder(keyPrefix: settings.keyPrefix, area: "c", dataset: nil)
    }

    private func call<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as MemcachedError {
            throw MemcachedEngine.translate(e, engine: name, address: client.address, during: what)
        }
    }

    /// What the server holds for `key`: the decoded item (nil when absent, foreign or a hash collision) and its CAS.
    private func current(_ key: String) async throws -> (stored: String, hashed: Bool, value: StoredValue?, cas: UInt64?) {
        let (stored, hashed) = coder.encode(key)
        let r = try await client.metaGet(stored, flags: ["v", "c"])
        guard r.code == "VA", let raw = r.value else { return (stored, hashed, nil, nil) }
        var v = StoredValue.decode(raw)
        if let d = v, d.kind == .value || (hashed && d.originalKey != key) { v = nil }
        return (stored, hashed, v, r.cas)
    }

    func lookup(_ key: String) async throws -> CachedEntry? {
        let hit = try await call("cache lookup") { () -> CachedEntry? in
            let (_, _, v, _) = try await current(key)
            guard let v, v.kind == .entry, v.isLive(now: StoredValue.nowMillis()) else { return nil }
            return CachedEntry(version: v.version, data: v.data)
        }
        counters.withLock { if hit == nil { $0.misses += 1 } else { $0.hits += 1 } }
        return hit
    }

    func fill(_ key: String, _ entry: CachedEntry, ttl: Duration, jitter: Double, loadStartedAt: ContinuousClock.Instant) async throws -> Bool {
        let stored = try await fillNow(key, entry, ttl: ttl, jitter: jitter, loadStartedAt: loadStartedAt)
        counters.withLock { if stored { $0.fills += 1 } else { $0.rejectedFills += 1 } }
        return stored
    }

    private func fillNow(_ key: String, _ entry: CachedEntry, ttl: Duration, jitter: Double, loadStartedAt: ContinuousClock.Instant) async throws -> Bool {
        // A load slower than a tombstone's lifetime may have missed an invalidation that has since expired.
        if ContinuousClock.now - loadStartedAt >= Self.tombstoneLifetime { return false }
        var seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        if jitter > 0 { seconds *= 1 + Double.random(in: -jitter...jitter) }
        let lifetime = Duration.milliseconds(max(1, Int64(min(seconds * 1000, 9e18))))
        let (_, hashed) = coder.encode(key)
        if StoredValue.encodedSize(dataBytes: entry.data.count, originalKey: hashed ? key : nil) > settings.maxValueBytes {
            logger.debug("cache entry too large for memcached; not cached", metadata: ["key": "\(key)", "bytes": "\(entry.data.count)"])
            return false
        }
        return try await call("cache fill") {
            for attempt in 0..<MemcachedEngine.casAttempts {
                let (stored, hashed, existing, cas) = try await current(key)
                // Any entry or tombstone the server still holds guards its version, even past its exact expiry.
                if let existing, existing.version > entry.version { return false }
                let now = StoredValue.nowMillis()
                let v = StoredValue(kind: .entry, expiresAtMillis: StoredValue.expiry(after: lifetime, now: now), version: entry.version,
                                    originalKey: hashed ? key : nil, data: entry.data)
                let flags = ["T\(StoredValue.serverExptime(v.expiresAtMillis, now: now))", cas.map { "C\($0)" } ?? "ME"]
                let r = try await client.metaSet(stored, v.encoded(), flags: flags)
                if r.code == "HD" { return true }
                await MemcachedEngine.backoff(attempt)   // changed since read: look again
            }
            return false
        }
    }

    func invalidate(_ key: String, version: Int64, ttl: Duration) async throws {
        try await call("cache invalidation") {
            for attempt in 0..<MemcachedEngine.casAttempts {
                let (stored, hashed, existing, cas) = try await current(key)
                // A newer entry or tombstone already stands: it guards more than this one would.
                if let existing, existing.version > version { break }
                let now = StoredValue.nowMillis()
                let v = StoredValue(kind: .tombstone, expiresAtMillis: StoredValue.expiry(after: Self.tombstoneLifetime, now: now),
                                    version: version, originalKey: hashed ? key : nil, data: Data())
                let flags = ["T\(StoredValue.serverExptime(v.expiresAtMillis, now: now))", cas.map { "C\($0)" } ?? "ME"]
                let r = try await client.metaSet(stored, v.encoded(), flags: flags)
                if r.code == "HD" { break }
                if attempt == MemcachedEngine.casAttempts - 1 {
                    // Last resort: an unconditional delete still removes the stale entry before the write returns.
                    _ = try await client.metaDelete(stored)
                }
                await MemcachedEngine.backoff(attempt)
            }
        }
        counters.withLock { $0.invalidations += 1 }
    }

    private let server = Mutex<(entries: Int, bytes: Int, evictions: UInt64)>((0, 0, 0))

    /// Reads the server's item count, bytes and evictions (`stats`); keeps the last figures when it cannot.
    func refreshServerStats() async {
        guard let s = try? await client.stats() else { return }
        server.withLock { $0 = (Int(s["curr_items"] ?? "") ?? $0.entries, Int(s["bytes"] ?? "") ?? $0.bytes, UInt64(s["evictions"] ?? "") ?? $0.evictions) }
    }

    func stats() -> CacheStats {
        var s = counters.withLock { $0 }
        let srv = server.withLock { $0 }
        s.entries = srv.entries
        s.bytes = srv.bytes
        s.evictions = srv.evictions
        return s
    }
}
