import Foundation
import NIOCore
import Polyglot

extension RedisEngine {
    /// Server-side sessions in `namespace`, each expiring after `ttl` without use (a sliding TTL).
    ///
    /// ```swift
    /// let redis = try db.engine("cache") as! RedisEngine
    /// let sessions = try redis.sessions("web", ttl: .seconds(1800))
    /// let id = try await sessions.create(["user": "42"])
    /// let data = try await sessions.get(id)            // ["user": "42"], and 30 more minutes to live
    /// try await sessions.set(id, ["cart": "3 items"])
    /// try await sessions.destroy(id)
    /// ```
    public func sessions(_ namespace: String = "default", ttl: Duration) throws -> RedisSessions {
        try RedisEngine.checkName(namespace, what: "session namespace")
        guard ttl >= .milliseconds(1) else {
            throw PolyglotError(.invalidArgument, "A session TTL of \(ttl) is not positive.", fix: "Pass a TTL such as .seconds(1800).")
        }
        return RedisSessions(link: link, namespace: namespace, prefix: settings.keyPrefix + "s:" + namespace + ":", ttl: ttl)
    }

    /// Names of sessions namespaces, rate limiters and leaderboards become part of keys: no ':' or glob characters.
    static func checkName(_ name: String, what: String) throws {
        let bad = name.isEmpty || name.utf8.count > 200 || name.contains { ":*?[]\\ \r\n".contains($0) }
        if bad {
            throw PolyglotError(.invalidArgument, "The \(what) name '\(name)' is empty, too long, or contains ':', a space or a glob character.",
                                fix: "Use up to 200 letters, digits, '_', '-' or '.'.")
        }
    }
}

/// Server-side sessions: one Redis hash per session (`<keyPrefix>s:<namespace>:<id>`), whose TTL every read and
/// write resets (sliding expiry). Each call is one atomic script, so a read never sees half a write.
///
/// Field values are bytes (`Data`); `String` overloads store UTF-8. Field names must not be empty or start with
/// a NUL byte (the engine keeps the creation time in a hidden field, so a session with no fields still exists).
public struct RedisSessions: Sendable {
    let link: RedisLink
    public let namespace: String
    let prefix: String
    /// How long a session lives without being used.
    public let ttl: Duration

    static let createdField = "\u{0}created"

    private var ttlMilliseconds: Int64 { RedisKeyValueStore.milliseconds(ttl) }

    private func key(_ id: String) throws -> String {
        guard !id.isEmpty, id.utf8.count <= 512 else {
            throw PolyglotError(.invalidArgument, "A session id must have 1 to 512 bytes (got \(id.utf8.count)).", fix: "Use the id create() returned.")
        }
        return prefix + id
    }

    private func checkFields(_ fields: some Collection<String>) throws {
        if let bad = fields.first(where: { $0.isEmpty || $0.hasPrefix("\u{0}") }) {
            throw PolyglotError(.invalidArgument, "Session field name '\(bad)' is empty or starts with a NUL byte.", fix: "Use a non-empty field name.")
        }
    }

    private func pairs(_ fields: [String: Data]) throws -> [any RedisArgument] {
        try checkFields(fields.keys)
        var out: [any RedisArgument] = []
        var total = 0
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) {
            out.append(k); out.append(v)
            total += v.count
        }
        try link.checkValueSize(total, what: "the session data")
        return out
    }

    /// Creates a session with a new random id (128 bits, hex) and returns the id.
    public func create(_ fields: [String: Data]) async throws -> String {
        var rng = SystemRandomNumberGenerator()
        let id = (0..<4).map { _ in String(format: "%08x", UInt32.random(in: .min ... .max, using: &rng)) }.joined()
        guard try await create(id: id, fields) else {
            throw PolyglotError(.conflict, "A random session id collided with an existing one.", fix: "Retry.", retryable: true)
        }
        return id
    }

    public func create(_ fields: [String: String] = [:]) async throws -> String {
        try await create(fields.mapValues { Data($0.utf8) })
    }

    /// Creates a session with the given id; false (and nothing changed) when it exists already.
    public func create(id: String, _ fields: [String: Data]) async throws -> Bool {
        let k = try key(id)
        let args: [any RedisArgument] = [ttlMilliseconds, "create", RedisSessions.createdField, Int64(Date().timeIntervalSince1970 * 1000)] + (try pairs(fields))
        let reply = try await link.eval(link.scripts.sessionWrite, keys: [k], arguments: args, during: "session create")
        return reply.int == 1
    }

    /// The session's fields, resetting its TTL; nil when it does not exist or has expired.
    public func get(_ id: String) async throws -> [String: Data]? {
        let reply = try await link.eval(link.scripts.sessionGet, keys: [try key(id)], arguments: [ttlMilliseconds], during: "session get")
        guard let pairs = reply.pairs else { return nil }
        var out: [String: Data] = [:]
        for p in pairs {
            guard let name = p.key.string, !name.hasPrefix("\u{0}"), let value = p.value.data else { continue }
            out[name] = value
        }
        return out
    }

    /// One field as UTF-8 text, resetting the session's TTL.
    public func string(_ id: String, _ field: String) async throws -> String? {
        try await get(id)?[field].map { String(decoding: $0, as: UTF8.self) }
    }

    /// Sets fields of an existing session and resets its TTL; false when the session does not exist (nothing is created).
    @discardableResult
    public func set(_ id: String, _ fields: [String: Data]) async throws -> Bool {
        let args: [any RedisArgument] = [ttlMilliseconds, "update"] + (try pairs(fields))
        let reply = try await link.eval(link.scripts.sessionWrite, keys: [try key(id)], arguments: args, during: "session set")
        return reply.int == 1
    }

    @discardableResult
    public func set(_ id: String, _ fields: [String: String]) async throws -> Bool {
        try await set(id, fields.mapValues { Data($0.utf8) })
    }

    /// Removes fields and resets the TTL; returns how many existed, or nil when the session does not exist.
    @discardableResult
    public func remove(_ id: String, fields: [String]) async throws -> Int? {
        try checkFields(fields)
        guard !fields.isEmpty else { return try await touch(id) ? 0 : nil }
        let reply = try await link.eval(link.scripts.sessionRemove, keys: [try key(id)], arguments: [ttlMilliseconds] + fields, during: "session remove")
        guard let n = reply.int, n >= 0 else { return nil }
        return Int(n)
    }

    /// Resets the session's TTL; false when it does not exist.
    @discardableResult
    public func touch(_ id: String) async throws -> Bool {
        try await link.send("PEXPIRE", try key(id), ttlMilliseconds).int == 1
    }

    /// Deletes the session; false when it did not exist.
    @discardableResult
    public func destroy(_ id: String) async throws -> Bool {
        try await link.send("DEL", try key(id)).int == 1
    }

    /// How long the session lives if unused from now on; nil when it does not exist.
    public func expiresIn(_ id: String) async throws -> Duration? {
        let ms = try await link.send("PTTL", try key(id)).int ?? -2
        return ms >= 0 ? .milliseconds(ms) : nil
    }
}
