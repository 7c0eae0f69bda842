import Foundation
import Logging
import NIOCore
import Polyglot
import Synchronization

/// The cache projection on Redis: read-through entries that carry their source version, single flight across
/// processes, and a degraded mode that keeps reads and writes working while Redis is down.
///
/// Keys (under the engine's `keyPrefix`):
/// - `c:<key>` holds `V<version>\n<bytes>` (a cached value) or `T<version>` (an invalidation, kept `tombstoneLifetime`).
/// - `l:<key>` is the single-flight lock; its value is a fencing token from the counter `fence`.
///
/// A lookup is one `GET`. On a miss, one script either finds the value (it arrived meanwhile), or takes the lock
/// for this caller, or reports that another process holds it; then this process polls (1 ms doubling to 20 ms)
/// until the value lands or the lock is gone, up to `waitTimeout`, and only then loads the source itself.
/// Within one process, concurrent misses of a key share one such wait. A miss within 100 ms after this process's
/// own load of the key ended takes no lock: it reads the entry once more (a second `GET`) and, if that misses
/// too, its caller joins that load in the facade or loads without the lock.
///
/// Fills and invalidations are scripts that compare versions on the server: a fill never replaces a newer version
/// or a newer tombstone; a fill whose load took longer than `tombstoneLifetime` is refused, because it may have
/// missed an invalidation that has expired since.
///
/// Degraded mode: when Redis cannot be reached, lookups miss (the facade reads the source), fills are skipped,
/// and invalidations are remembered (the newest version per key; past `maxPendingInvalidations` the whole cache
/// namespace is dropped instead). Every `retryInterval` one lookup probes Redis; when it answers, the remembered
/// invalidations are delivered first, and only then does the cache serve hits again. The outage and the recovery
/// are logged once each; ``CacheStats/degraded`` and ``CacheStats/pendingInvalidations`` show the state.
final class RedisCacheBackend: CacheBackend {
    let link: RedisLink
    let settings: RedisEngineSettings
    let logger: Logger
    let engineName: String
    let entryPrefix: String
    let lockPrefix: String
    let fenceKey: String

    private struct Counters {
        var stats = CacheStats()
        /// Mean source load time (exponentially weighted), in nanoseconds.
        var loadNanoseconds: Double = 0
    }
    private let counters = Mutex(Counters())

    private struct Health {
        var degraded = false
        var probing = false
        var nextProbe = ContinuousClock.now
        var pending: [String: Int64] = [:]
        var overflowed = false
        var lastError = ""
    }
    private let health = Mutex(Health())
    /// False while degraded or while invalidations are pending: the fast path reads only this.
    private let healthy = Atomic<Bool>(true)

    private struct Flight {
        var id: UInt64
        var startedAt: ContinuousClock.Instant
        /// Set when this process holds the Redis lock and one of its callers is loading the source.
        var token: String?
        var waiters: [UInt64: CheckedContinuation<CachedEntry?, Never>] = [:]
    }
    private let flights = Mutex<[String: Flight]>([:])
    /// When this process's last load of a key ended (filled, refused or abandoned). A miss right after it does not
    /// take the lock: it reads the entry once more (the fill may have landed after its first GET), and if that
    /// misses too, its caller joins that load in the facade or loads without the lock.
    private let finishedLoads = Mutex<[String: ContinuousClock.Instant]>([:])
    static let rejoinWindow: Duration = .milliseconds(100)
    private let ids = Atomic<UInt64>(0)

    init(link: RedisLink, settings: RedisEngineSettings, logger: Logger, engineName: String) {
        self.link = link; self.settings = settings; self.logger = logger; self.engineName = engineName
        entryPrefix = settings.keyPrefix + "c:"
        lockPrefix = settings.keyPrefix + "l:"
        fenceKey = settings.keyPrefix + "fence"
    }

    // MARK: Lookup

    func lookup(_ key: String) async throws -> CachedEntry? {
        let start = ContinuousClock.now
        guard await isServing() else { countMiss(); return nil }
        let reply: RESPValue
        do {
            reply = try await link.sendRaw(RedisCommand("GET", entryPrefix + key))
        } catch {
            failed(error, during: "a cache lookup")
            countMiss()
            return nil
        }
        if let entry = RedisCacheBackend.entry(reply) {
            countHit(since: start)
            return entry
        }
        if let entry = await coordinateMiss(key) {
            countHit(since: start)
            return entry
        }
        countMiss()
        return nil
    }

    /// `V<version>\n<bytes>` → the entry; anything else (nil, a tombstone) → nil.
    static func entry(_ reply: RESPValue) -> CachedEntry? {
        guard case .bulkString(let buffer) = reply else { return nil }
        let view = buffer.readableBytesView
        guard let first = view.first, first == UInt8(ascii: "V") else { return nil }
        var version: Int64 = 0
        var i = view.index(after: view.startIndex)
        var negative = false
        if i < view.endIndex, view[i] == UInt8(ascii: "-") { negative = true; i = view.index(after: i) }
        while i < view.endIndex, view[i] != UInt8(ascii: "\n") {
            let d = view[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            version = version &* 10 &+ Int64(d)
            i = view.index(after: i)
        }
        guard i < view.endIndex else { return nil }
        return CachedEntry(version: negative ? -version : version, data: Data(view[view.index(after: i)...]))
    }

    // MARK: Single flight

    private enum Role { case driver(UInt64), waiter }

    /// After a miss: the value another loader produced, or nil when this caller must load (holding the lock, after
    /// waiting in vain, or, right after this process's own load of the key, without the lock).
    func coordinateMiss(_ key: String) async -> CachedEntry? {
        let now = ContinuousClock.now
        let justFinished = finishedLoads.withLock { map -> Bool in
            guard let at = map[key] else { return false }
            if now - at < RedisCacheBackend.rejoinWindow { return true }
            map[key] = nil
            return false
        }
        if justFinished {
            // That load's fill has most likely landed since this caller's GET: look once more before loading
            // (unless the cache went degraded meanwhile: no hits until pending invalidations are delivered).
            guard healthy.load(ordering: .acquiring) else { return nil }
            do {
                if let entry = RedisCacheBackend.entry(try await link.sendRaw(RedisCommand("GET", entryPrefix + key))) { return entry }
            } catch {
                failed(error, during: "a cache lookup")
            }
            return nil
        }
        let lifetime = settings.lockTimeout
        let id = ids.add(1, ordering: .relaxed).newValue
        let (role, stale) = flights.withLock { map -> (Role, [CheckedContinuation<CachedEntry?, Never>]) in
            if let f = map[key] {
                if now - f.startedAt < lifetime { return (.waiter, []) }
                map[key] = Flight(id: id, startedAt: now)
                return (.driver(id), Array(f.waiters.values))
            }
            map[key] = Flight(id: id, startedAt: now)
            return (.driver(id), [])
        }
        for c in stale { c.resume(returning: nil) }
        switch role {
        case .waiter: return await wait(key)
        case .driver(let id): return await drive(key, flight: id)
        }
    }

    /// Waits for this process's loader of `key`, up to `waitTimeout`.
    private func wait(_ key: String) async -> CachedEntry? {
        let id = ids.add(1, ordering: .relaxed).newValue
        let timeout = settings.waitTimeout
        return await withCheckedContinuation { (c: CheckedContinuation<CachedEntry?, Never>) in
            let registered = flights.withLock { map -> Bool in
                guard map[key] != nil else { return false }
                map[key]!.waiters[id] = c
                return true
            }
            guard registered else { c.resume(returning: nil); return }
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                guard let self else { return }
                let waiter = self.flights.withLock { map in map[key]?.waiters.removeValue(forKey: id) }
                waiter?.resume(returning: nil)
            }
        }
    }

    /// Claims the Redis lock for `key`, or waits for whoever holds it.
    private func drive(_ key: String, flight id: UInt64) async -> CachedEntry? {
        let deadline = ContinuousClock.now + settings.waitTimeout
        let lockMilliseconds = RedisKeyValueStore.milliseconds(settings.lockTimeout)
        var pause = Duration.milliseconds(1)
        while true {
            let reply: RESPValue
            do {
                reply = try await link.evalRaw(link.scripts.claim, keys: [entryPrefix + key, lockPrefix + key, fenceKey],
                                               arguments: [lockMilliseconds])
            } catch {
                failed(error, during: "a cache miss")
                finish(key, flight: id, with: nil)
                return nil
            }
            guard let parts = reply.array, parts.count == 2, let kind = parts[0].int else {
                finish(key, flight: id, with: nil)
                return nil
            }
            switch kind {
            case 1:
                let entry = RedisCacheBackend.entry(parts[1])
                finish(key, flight: id, with: entry)
                return entry
            case 3:
                let token = parts[1].string ?? ""
                let kept = flights.withLock { map -> Bool in
                    guard map[key]?.id == id else { return false }
                    map[key]!.token = token
                    return true
                }
                if !kept {
                    // Our flight was replaced (it outlived lockTimeout): give the lock back rather than strand it.
                    _ = try? await link.evalRaw(link.scripts.release, keys: [lockPrefix + key], arguments: [token])
                }
                return nil
            default:
                if ContinuousClock.now + pause > deadline {
                    finish(key, flight: id, with: nil)
                    return nil
                }
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(20))
            }
        }
    }

    /// Ends the flight `id` of `key` (if it is still the current one), handing `entry` to its waiters.
    private func finish(_ key: String, flight id: UInt64, with entry: CachedEntry?) {
        let waiters = flights.withLock { map -> [CheckedContinuation<CachedEntry?, Never>] in
            guard let f = map[key], f.id == id else { return [] }
            map[key] = nil
            return Array(f.waiters.values)
        }
        for c in waiters { c.resume(returning: entry) }
    }

    /// Ends the flight of `key` whose loader holds the lock in this process.
    private func finishOwned(_ key: String, with entry: CachedEntry?) {
        let waiters = flights.withLock { map -> [CheckedContinuation<CachedEntry?, Never>]? in
            guard let f = map[key], f.token != nil else { return nil }
            map[key] = nil
            return Array(f.waiters.values)
        }
        guard let waiters else { return }
        let now = ContinuousClock.now
        finishedLoads.withLock { map in
            if map.count > 1000 { map = map.filter { now - $0.value < RedisCacheBackend.rejoinWindow } }
            map[key] = now
        }
        for c in waiters { c.resume(returning: entry) }
    }

    func loadAbandoned(_ key: String) async {
        guard let token = flights.withLock({ $0[key]?.token }) else { return }
        _ = try? await link.evalRaw(link.scripts.release, keys: [lockPrefix + key], arguments: [token])
        finishOwned(key, with: nil)
    }

    // MARK: Fill and invalidate

    func fill(_ key: String, _ entry: CachedEntry, ttl: Duration, jitter: Double, loadStartedAt: ContinuousClock.Instant) async throws -> Bool {
        let token = flights.withLock { $0[key]?.token }
        let loadTime = ContinuousClock.now - loadStartedAt
        guard healthy.load(ordering: .acquiring) else {
            finishOwned(key, with: nil)
            return false
        }
        if loadTime >= settings.tombstoneLifetime || entry.data.count > link.maxValueBytes {
            // Too slow to be sure no invalidation was missed, or too large to send: do not cache.
            if let token { _ = try? await link.evalRaw(link.scripts.release, keys: [lockPrefix + key], arguments: [token]) }
            counters.withLock { $0.stats.rejectedFills += 1 }
            finishOwned(key, with: nil)
            return false
        }
        var payload = ByteBufferAllocator().buffer(capacity: entry.data.count + 24)
        payload.writeString("V\(entry.version)\n")
        payload.writeBytes(entry.data)
        var ms = Double(RedisKeyValueStore.milliseconds(ttl))
        if jitter > 0 { ms *= 1 + Double.random(in: -jitter...jitter) }
        let stored: Bool
        do {
            let reply = try await link.evalRaw(link.scripts.fill, keys: [entryPrefix + key, lockPrefix + key],
                                               arguments: [entry.version, payload, max(1, Int64(min(ms, 9e18))), token ?? ""])
            stored = reply.int == 1
        } catch {
            failed(error, during: "a cache fill")
            finishOwned(key, with: nil)
            return false
        }
        counters.withLock { c in
            if stored {
                c.stats.fills += 1
                let ns = Double(loadTime.components.seconds) * 1e9 + Double(loadTime.components.attoseconds) / 1e9
                c.loadNanoseconds = c.loadNanoseconds == 0 ? ns : c.loadNanoseconds * 0.9 + ns * 0.1
            } else {
                c.stats.rejectedFills += 1
            }
        }
        finishOwned(key, with: stored ? entry : nil)
        return stored
    }

    func invalidate(_ key: String, version: Int64, ttl: Duration) async throws {
        var send = healthy.load(ordering: .acquiring)
        while true {
            if send {
                do {
                    try await deliver(key, version: version)
                    counters.withLock { $0.stats.invalidations += 1 }
                    return
                } catch {
                    failed(error, during: "an invalidation", force: true)
                }
            }
            // Remember it; if Redis came back meanwhile, deliver it now instead.
            if remember(key, version: version) { return }
            send = true
        }
    }

    /// Writes the tombstone; when the server refuses the script (out of memory, say), deletes the entry instead.
    private func deliver(_ key: String, version: Int64) async throws {
        let tombstone = RedisKeyValueStore.milliseconds(settings.tombstoneLifetime)
        let failure: RedisError
        do {
            _ = try await link.evalRaw(link.scripts.invalidate, keys: [entryPrefix + key], arguments: [version, tombstone])
            return
        } catch {
            failure = error
        }
        if RedisLink.isOutage(failure) { throw failure }
        logger.warning("cache invalidation script failed; deleting the entry instead",
                       metadata: ["engine": "\(engineName)", "error": "\(failure)"])
        _ = try await link.sendRaw(RedisCommand("DEL", entryPrefix + key))
    }

    /// Queues an undelivered invalidation; false when Redis is healthy again (deliver it directly).
    private func remember(_ key: String, version: Int64) -> Bool {
        health.withLock { h -> Bool in
            guard h.degraded else { return false }
            if h.overflowed { return true }
            if let v = h.pending[key], v >= version { return true }
            if h.pending.count >= settings.maxPendingInvalidations {
                h.pending.removeAll()
                h.overflowed = true
            } else {
                h.pending[key] = version
            }
            return true
        }
    }

    // MARK: Degraded mode

    /// Whether the cache may be asked; while degraded, one caller per `retryInterval` probes Redis and recovers.
    private func isServing() async -> Bool {
        if healthy.load(ordering: .acquiring) { return true }
        let probe = health.withLock { h -> Bool in
            guard h.degraded, !h.probing, ContinuousClock.now >= h.nextProbe else { return false }
            h.probing = true
            return true
        }
        guard probe else { return healthy.load(ordering: .acquiring) }
        return await recover()
    }

    /// Delivers the remembered invalidations (or drops the namespace after an overflow), then leaves degraded mode.
    private func recover() async -> Bool {
        var delivered = 0
        do {
            _ = try await link.sendRaw(RedisCommand("PING"))
            while true {
                let (batch, purge) = health.withLock { h -> ([String: Int64], Bool) in
                    let b = h.pending
                    h.pending.removeAll()
                    let p = h.overflowed
                    h.overflowed = false
                    return (b, p)
                }
                if purge {
                    do { try await purgeAll() } catch {
                        health.withLock { $0.overflowed = true }
                        throw error
                    }
                }
                var remaining = batch
                for (key, version) in batch {
                    do {
                        try await deliver(key, version: version)
                        remaining[key] = nil
                        delivered += 1
                    } catch {
                        let left = remaining
                        health.withLock { h in for (k, v) in left where (h.pending[k] ?? .min) < v { h.pending[k] = v } }
                        throw error
                    }
                }
                let done = health.withLock { h -> Bool in
                    guard h.pending.isEmpty, !h.overflowed else { return false }
                    h.degraded = false
                    h.probing = false
                    healthy.store(true, ordering: .releasing)
                    return true
                }
                if done { break }
            }
        } catch {
            health.withLock { h in
                h.probing = false
                h.nextProbe = ContinuousClock.now + settings.retryInterval
                h.lastError = "\(error)"
            }
            return false
        }
        counters.withLock { $0.stats.invalidations += UInt64(delivered) }
        logger.notice("redis cache recovered: serving hits again", metadata: [
            "engine": "\(engineName)", "address": "\(settings.displayAddress)", "deliveredInvalidations": "\(delivered)",
        ])
        return true
    }

    /// Drops every cache entry of this engine's namespace (after more invalidations than could be remembered).
    private func purgeAll() async throws {
        var cursor = "0"
        let pattern = RedisKeyValueStore.globEscaped(entryPrefix) + "*"
        repeat {
            let reply = try await link.sendRaw(RedisCommand("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { return }
            let keys: [any RedisArgument] = (parts[1].array ?? []).compactMap { $0.buffer }
            if !keys.isEmpty { _ = try await link.sendRaw(RedisCommand("UNLINK", arguments: keys)) }
            cursor = next
        } while cursor != "0"
        logger.notice("redis cache namespace dropped after an outage with too many invalidations to remember",
                      metadata: ["engine": "\(engineName)"])
    }

    /// Marks the cache degraded because Redis could not be reached (at start-up, say).
    func unreachable(_ error: any Error, during what: String) { failed(error, during: what, force: true) }

    /// Records a failed call: an outage switches to degraded mode (logged once); other errors are logged and the
    /// read treated as a miss. `force` marks degraded even for error replies (an invalidation that did not land).
    private func failed(_ error: any Error, during what: String, force: Bool = false) {
        guard RedisLink.isOutage(error) || force else {
            logger.warning("redis cache error; treated as a miss", metadata: ["engine": "\(engineName)", "during": "\(what)", "error": "\(error)"])
            return
        }
        let first = health.withLock { h -> Bool in
            h.lastError = "\(error)"
            healthy.store(false, ordering: .releasing)
            if h.degraded { return false }
            h.degraded = true
            h.nextProbe = ContinuousClock.now + settings.retryInterval
            return true
        }
        if first {
            logger.error("redis cache degraded: reads go to the source of truth until Redis answers again", metadata: [
                "engine": "\(engineName)", "address": "\(settings.displayAddress)", "during": "\(what)", "error": "\(error)",
            ])
        }
    }

    // MARK: Statistics

    private func countHit(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        counters.withLock { c in
            c.stats.hits += 1
            if c.loadNanoseconds > ns { c.stats.latencySavedNanoseconds += UInt64(c.loadNanoseconds - ns) }
        }
    }

    private func countMiss() { counters.withLock { $0.stats.misses += 1 } }

    func stats() -> CacheStats {
        var s = counters.withLock { $0.stats }
        health.withLock { h in
            s.degraded = h.degraded
            s.pendingInvalidations = h.pending.count
        }
        return s
    }

    /// Whether the cache is degraded, and the last error that made it so.
    var status: (degraded: Bool, pendingInvalidations: Int, lastError: String) {
        health.withLock { ($0.degraded, $0.pending.count, $0.lastError) }
    }
}
