import Foundation
import NIOCore
import Polyglot

/// A keyValue dataset on Redis: one Redis string per key, under `<keyPrefix>kv:<dataset>:`.
///
/// - `set` is `SET ... PX`, `delete` is `DEL`.
/// - `getMany` is one script around `MGET` per 1,000 keys (a key of another Redis type fails, as in `get`).
/// - `setMany` is one `MSET` without a TTL, else `MULTI`, a `SET ... PX` per entry and `EXEC` in one pipeline: one
///   round trip, all or nothing.
/// - `increment` is one script around `INCRBY`: atomic, keeps the key's TTL, and applies `ttl` only to a key it creates.
/// - `scan` walks `SCAN MATCH <prefix>*` (glob characters in the prefix escaped), then sorts by key bytes and pages
///   with `after`/`limit`; values and expiries are read in one script per page.
struct RedisKeyValueStore: KeyValueStore {
    let link: RedisLink
    let dataset: String
    /// `<keyPrefix>kv:<dataset>:`
    let prefix: String
    let engineName: String

    func redisKey(_ key: String) -> String { prefix + key }

    func token() -> ConsistencyToken {
        // Redis keeps no change log; a token from the wall clock in µs orders this process's writes.
        ConsistencyToken(engine: engineName, position: Int64(Date().timeIntervalSince1970 * 1_000_000))
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        // Saturating: a Duration near Int64.max seconds must not trap (the facade refuses over 100 years anyway).
        let (s, atto) = d.components
        guard s >= 0 else { return 1 }
        guard s < Int64.max / 1000 else { return Int64.max }
        return max(1, s * 1000 + atto / 1_000_000_000_000_000)
    }

    func get(_ key: String) async throws -> Data? {
        let reply = try await link.send("GET", redisKey(key))
        return reply.data
    }

    func set(_ key: String, _ value: Data, ttl: Duration?) async throws -> ConsistencyToken {
        try link.checkValueSize(value.count, what: "the value for '\(key)' of '\(dataset)'")
        if let ttl {
            _ = try await link.send("SET", redisKey(key), value, "PX", RedisKeyValueStore.milliseconds(ttl))
        } else {
            _ = try await link.send("SET", redisKey(key), value)
        }
        return token()
    }

    func getMany(_ keys: [String]) async throws -> [String: Data] {
        var unique: [String] = []
        var seen = Set<String>()
        for k in keys where seen.insert(k).inserted { unique.append(k) }
        var out: [String: Data] = [:]
        for start in stride(from: 0, to: unique.count, by: 1000) {
            let chunk = unique[start..<min(unique.count, start + 1000)]
            let reply = try await link.eval(link.scripts.getMany, keys: chunk.map { redisKey($0) }, arguments: [], during: "getMany of '\(dataset)'")
            guard let values = reply.array, values.count == chunk.count else {
                throw PolyglotError(.engineFailure, "Engine '\(engineName)' (redis): getMany's MGET answered \(reply).", fix: "Check the server is Redis 7 or later.")
            }
            for (key, value) in zip(chunk, values) { if let d = value.data { out[key] = d } }
        }
        return out
    }

    func setMany(_ entries: [(key: String, value: Data)], ttl: Duration?) async throws {
        guard !entries.isEmpty else { return }
        for e in entries { try link.checkValueSize(e.value.count, what: "the value for '\(e.key)' of '\(dataset)'") }
        guard let ttl else {
            var arguments: [any RedisArgument] = []
            arguments.reserveCapacity(entries.count * 2)
            for e in entries { arguments.append(redisKey(e.key)); arguments.append(e.value) }
            _ = try await link.send(RedisCommand("MSET", arguments: arguments))
            return
        }
        let ms = RedisKeyValueStore.milliseconds(ttl)
        let commands = [RedisCommand("MULTI")] + entries.map { RedisCommand("SET", redisKey($0.key), $0.value, "PX", ms) } + [RedisCommand("EXEC")]
        let replies: [RESPValue]
        do { replies = try await link.client.pipeline(commands) } catch { throw link.translate(error, during: "setMany of '\(dataset)'") }
        // EXEC's reply holds each SET's; an error anywhere (a refused MULTI, an aborted EXEC) is reported.
        if let failed = replies.first(where: { $0.serverError != nil })?.serverError ?? replies.last?.array?.first(where: { $0.serverError != nil })?.serverError {
            throw link.translate(RedisError.server(failed, command: "SET"), during: "setMany of '\(dataset)'")
        }
        guard let applied = replies.last?.array, applied.count == entries.count else {
            throw PolyglotError(.engineFailure, "Engine '\(engineName)' (redis): setMany's EXEC answered \(replies.last.map { "\($0)" } ?? "nothing").",
                                fix: "Retry; check the server's log.", retryable: true)
        }
    }

    func delete(_ key: String) async throws -> Bool {
        let reply = try await link.send("DEL", redisKey(key))
        return (reply.int ?? 0) > 0
    }

    func increment(_ key: String, by delta: Int64, ttl: Duration?) async throws -> Int64 {
        let k = redisKey(key)
        let ttlArg = ttl.map { String(RedisKeyValueStore.milliseconds($0)) } ?? ""
        for _ in 0..<16 {
            let reply = try await link.eval(link.scripts.increment, keys: [k], arguments: [delta, ttlArg], during: "increment of '\(key)'")
            guard let parts = reply.array, parts.count == 2 else {
                throw PolyglotError(.engineFailure, "Engine '\(engineName)' (redis): increment answered \(reply).", fix: "Check the server is Redis 7 or later.")
            }
            if parts[0].int == 1, let n = parts[1].int { return n }
            let message = parts[1].string ?? ""
            if message.hasPrefix("WRONGTYPE") {
                throw link.translate(RedisError(.server, "INCRBY failed: \(message)", serverError: RedisServerError(message: message)),
                                     during: "increment of '\(key)'")
            }
            // Redis refused: the value is not an integer it parses, or the sum overflows. The shared counter rule
            // decides (and names the error); values it accepts but Redis does not ("+5", "007") are set by compare-and-set.
            let current = try await link.send("GET", k).data
            let next = try KeyValueCounter.increment(current, by: delta, key: key, dataset: dataset)
            guard let current else { continue }
            let swapped = try await link.eval(link.scripts.compareAndSet, keys: [k], arguments: [current, String(next)], during: "increment of '\(key)'")
            if swapped.int == 1 { return next }
        }
        throw PolyglotError(.conflict, "Engine '\(engineName)' (redis): key '\(key)' of '\(dataset)' kept changing during increment.",
                            fix: "Retry the increment.", retryable: true)
    }

    /// Escapes the glob characters of `text` for `SCAN MATCH`.
    static func globEscaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            if c == "*" || c == "?" || c == "[" || c == "]" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    func scan(prefix keyPrefix: String, after: String?, limit: Int) async throws -> [KeyValueEntry] {
        guard limit > 0 else { return [] }
        let pattern = RedisKeyValueStore.globEscaped(prefix + keyPrefix) + "*"
        var names: [[UInt8]] = []
        var cursor = "0"
        let afterBytes = after.map { Array($0.utf8) }
        let strip = prefix.utf8.count
        repeat {
            let reply = try await link.send("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw PolyglotError(.engineFailure, "Engine '\(engineName)' (redis): SCAN answered \(reply).", fix: "Check the server is Redis 7 or later.")
            }
            for k in keys {
                guard let bytes = k.bytes, bytes.count >= strip else { continue }
                let name = Array(bytes[strip...])
                if let afterBytes, !afterBytes.lexicographicallyPrecedes(name) { continue }
                names.append(name)
            }
            cursor = next
        } while cursor != "0"
        // SCAN may return a key twice; sort by bytes, drop duplicates.
        names.sort { $0.lexicographicallyPrecedes($1) }
        var unique: [[UInt8]] = []
        unique.reserveCapacity(names.count)
        for n in names where unique.last != n { unique.append(n) }

        var out: [KeyValueEntry] = []
        var index = 0
        while out.count < limit && index < unique.count {
            let page = unique[index..<min(unique.count, index + (limit - out.count))]
            index += page.count
            let keys: [any RedisArgument] = page.map { Array(prefix.utf8) + $0 }
            let reply = try await link.eval(link.scripts.fetch, keys: keys, arguments: [], during: "scan of '\(dataset)'")
            let flat = reply.array ?? []
            var i = 0
            while i + 2 < flat.count {
                guard let k = flat[i].bytes, k.count >= strip, let v = flat[i + 1].data else { break }
                let expiry = flat[i + 2].int ?? -1
                out.append(KeyValueEntry(key: String(decoding: k[strip...], as: UTF8.self), value: v,
                                         expiresAt: expiry > 0 ? Date(timeIntervalSince1970: Double(expiry) / 1000) : nil))
                i += 3
            }
        }
        return out
    }
}
