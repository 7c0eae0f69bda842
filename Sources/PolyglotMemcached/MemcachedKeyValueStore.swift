import Foundation
import Polyglot

/// A `keyValue` dataset on memcached. Values carry a small header (``StoredValue``) with their exact expiry;
/// writes that must see the current value (increment, delete) use compare-and-set (`mg` with `c`, then `ms`/`md`
/// with `C<cas>`, or `ms` in add mode for a new key) and retry when another writer got there first.
struct MemcachedKeyValueStore: KeyValueStore {
    let engine: MemcachedEngine
    let dataset: String
    let coder: KeyCoder

    var client: MemcachedClient { engine.client }

    /// The current item of `key`: its live value (nil when absent or expired), the CAS unique of whatever the
    /// server holds (nil when it holds nothing), and whether that is another key's (a hash collision).
    private func current(_ key: String, _ stored: String, hashed: Bool, now: Int64) async throws -> (StoredValue?, cas: UInt64?, foreign: Bool) {
        let r = try await client.metaGet(stored, flags: ["v", "c"])
        guard r.code == "VA", let raw = r.value else { return (nil, nil, false) }
        let v = StoredValue.decode(raw)
        if hashed, let v, v.originalKey != key { return (nil, r.cas, true) }
        guard let v, v.kind == .value, v.isLive(now: now) else { return (nil, r.cas, false) }
        return (v, r.cas, false)
    }

    func get(_ key: String) async throws -> Data? {
        let (stored, hashed) = coder.encode(key)
        return try await engine.call("get of '\(dataset)'") {
            try await current(key, stored, hashed: hashed, now: StoredValue.nowMillis()).0?.data
        }
    }

    /// One multi-key `gets` per 100 keys (instead of a round trip per key), each item checked as ``get`` checks it.
    func getMany(_ keys: [String]) async throws -> [String: Data] {
        var stored: [String: String] = [:]   // stored key → the key asked for (hashed keys: checked against the value)
        var hashedNames = Set<String>()
        var hashedAsked = Set<String>()
        for key in keys {
            let (s, hashed) = coder.encode(key)
            if hashed { hashedAsked.insert(key); hashedNames.insert(s) }
            stored[s] = key
        }
        let names = Array(stored.keys)
        return try await engine.call("getMany of '\(dataset)'") {
            let now = StoredValue.nowMillis()
            var out: [String: Data] = [:]
            for start in stride(from: 0, to: names.count, by: 100) {
                for item in try await client.gets(Array(names[start..<min(names.count, start + 100)])) {
                    guard let v = StoredValue.decode(item.value), v.kind == .value, v.isLive(now: now) else { continue }
                    // A hashed key's value names its key (as `get` checks): a collision holding another key's value, or a
                    // value without its key under a hashed name, is not this one's.
                    let key: String
                    if hashedNames.contains(item.key) {
                        guard let original = v.originalKey, hashedAsked.contains(original) else { continue }
                        key = original
                    } else {
                        guard v.originalKey == nil, let asked = stored[item.key] else { continue }
                        key = asked
                    }
                    out[key] = v.data
                }
            }
            return out
        }
    }

    func set(_ key: String, _ value: Data, ttl: Duration?) async throws -> ConsistencyToken {
        let (stored, hashed) = coder.encode(key)
        let now = StoredValue.nowMillis()
        let v = StoredValue(kind: .value, expiresAtMillis: StoredValue.expiry(after: ttl, now: now), version: 0,
                            originalKey: hashed ? key : nil, data: value)
        try engine.checkSize(StoredValue.encodedSize(dataBytes: value.count, originalKey: v.originalKey), key: key, dataset: dataset)
        return try await engine.call("set in '\(dataset)'") {
            let r = try await client.metaSet(stored, v.encoded(), flags: ["T\(StoredValue.serverExptime(v.expiresAtMillis, now: now))", "c"])
            guard r.code == "HD" else { throw MemcachedError(.protocolViolation, "memcached answered '\(r.code)' to a set") }
            return ConsistencyToken(engine: engine.spec.name, position: Int64(truncatingIfNeeded: r.cas ?? 0))
        }
    }

    func delete(_ key: String) async throws -> Bool {
        let (stored, hashed) = coder.encode(key)
        return try await engine.call("delete in '\(dataset)'") {
            for attempt in 0..<MemcachedEngine.casAttempts {
                let (live, cas, foreign) = try await current(key, stored, hashed: hashed, now: StoredValue.nowMillis())
                // Nothing there, or a hash collision holding another key's value (left alone).
                guard let cas, !foreign else { return false }
                // An item expired by its exact TTL but not yet by memcached's is removed too, and reported absent.
                let r = try await client.metaDelete(stored, flags: ["C\(cas)"])
                switch r.code {
                case "HD": return live != nil
                case "NF": return false
                default: await MemcachedEngine.backoff(attempt)   // EX: changed since read
                }
            }
            throw contention("delete", key)
        }
    }

    func increment(_ key: String, by delta: Int64, ttl: Duration?) async throws -> Int64 {
        let (stored, hashed) = coder.encode(key)
        return try await engine.call("increment in '\(dataset)'") {
            for attempt in 0..<MemcachedEngine.casAttempts {
                let now = StoredValue.nowMillis()
                let (live, cas, foreign) = try await current(key, stored, hashed: hashed, now: now)
                if foreign {
                    throw PolyglotError(.conflict, "Key '\(key)' of '\(dataset)' collides with another key's hash in memcached.", fix: "Use a shorter key.")
                }
                let next = try KeyValueCounter.increment(live?.data, by: delta, key: key, dataset: dataset)
                // An existing key keeps its expiry; `ttl` applies to a new one.
                let expires = live?.expiresAtMillis ?? StoredValue.expiry(after: ttl, now: now)
                let v = StoredValue(kind: .value, expiresAtMillis: expires, version: 0, originalKey: hashed ? key : nil, data: Data(String(next).utf8))
                var flags = ["T\(StoredValue.serverExptime(expires, now: now))"]
                // Replace exactly what was read, or create only if still absent.
                flags.append(cas.map { "C\($0)" } ?? "ME")
                let r = try await client.metaSet(stored, v.encoded(), flags: flags)
                if r.code == "HD" { return next }
                await MemcachedEngine.backoff(attempt)   // NS, EX, NF: another writer got there first
            }
            throw contention("increment", key)
        }
    }

    private func contention(_ what: String, _ key: String) -> PolyglotError {
        PolyglotError(.conflict, "The \(what) of key '\(key)' in '\(dataset)' lost \(MemcachedEngine.casAttempts) compare-and-set races in a row.",
                      fix: "Retry; spread very hot counters over several keys.", retryable: true)
    }

    static let maxListings = 4

    /// Lists the server's keys (`lru_crawler metadump all`), keeps this dataset's that start with `prefix`,
    /// sorts them and reads their values. memcached has no ordered index: every scan walks the whole cache.
    func scan(prefix: String, after: String?, limit: Int) async throws -> [KeyValueEntry] {
        try await engine.call("scan of '\(dataset)'") {
            // memcached's crawler skips items whose lock is busy at that moment, so one listing can miss keys under
            // concurrent traffic: take the union of listings until one adds nothing new (at least 2, at most 4).
            var seen = Set<String>()
            for round in 0..<Self.maxListings {
                let before = seen.count
                for d in try await client.dumpKeys() where d.key.hasPrefix(coder.namespace) { seen.insert(d.key) }
                if round >= 1, seen.count == before { break }
            }
            func wanted(_ key: String) -> Bool { key.hasPrefix(prefix) && (after.map { key > $0 } ?? true) }
            var candidates: [(key: String, stored: String)] = []
            var hashedKeys: [String] = []
            for stored in seen {
                switch coder.decode(stored) {
                case .plain(let k)?: if wanted(k) { candidates.append((k, stored)) }
                case .hashed?: hashedKeys.append(stored)
                case nil: break
                }
            }
            let now = StoredValue.nowMillis()
            // Hashed keys reveal their original key only in the value.
            var values: [String: StoredValue] = [:]
            for (stored, v) in try await fetch(hashedKeys) where v.kind == .value && v.isLive(now: now) {
                if let k = v.originalKey, wanted(k) { candidates.append((k, stored)); values[stored] = v }
            }
            candidates.sort { $0.key < $1.key }
            var out: [KeyValueEntry] = []
            var index = 0
            while out.count < limit, index < candidates.count {
                let batch = candidates[index..<min(candidates.count, index + max(16, limit - out.count))]
                index += batch.count
                let fetched = try await fetch(batch.filter { values[$0.stored] == nil }.map(\.stored))
                for (stored, v) in fetched { values[stored] = v }
                for c in batch {
                    guard let v = values[c.stored], v.kind == .value, v.isLive(now: now) else { continue }
                    if v.originalKey != nil, v.originalKey != c.key { continue }
                    out.append(KeyValueEntry(key: c.key, value: v.data,
                                             expiresAt: v.expiresAtMillis == 0 ? nil : Date(timeIntervalSince1970: Double(v.expiresAtMillis) / 1000)))
                    if out.count == limit { break }
                }
            }
            return out
        }
    }

    /// The values of these memcached keys (missing ones left out), read concurrently (pipelined on the pool).
    private func fetch(_ keys: [String]) async throws -> [(String, StoredValue)] {
        guard !keys.isEmpty else { return [] }
        let client = self.client
        return try await withThrowingTaskGroup(of: (String, StoredValue?).self) { group in
            var out: [(String, StoredValue)] = []
            var next = 0
            func add() {
                guard next < keys.count else { return }
                let k = keys[next]; next += 1
                group.addTask {
                    let r = try await client.metaGet(k, flags: ["v"])
                    return (k, r.code == "VA" ? r.value.flatMap(StoredValue.decode) : nil)
                }
            }
            for _ in 0..<min(64, keys.count) { add() }
            while let (k, v) = try await group.next() {
                if let v { out.append((k, v)) }
                add()
            }
            return out
        }
    }
}
