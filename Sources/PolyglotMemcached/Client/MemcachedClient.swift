import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A memcached client for the ASCII protocol, on SwiftNIO: a small pool of connections, each pipelining the
/// requests of many tasks, with connect and command timeouts. A connection that fails is replaced on next use;
/// while the server is unreachable, requests fail at once with a typed ``MemcachedError`` (after one connect
/// attempt per back-off period), and the pool reconnects when it is back.
///
/// ```swift
/// let client = MemcachedClient(configuration: .init(host: "127.0.0.1", port: 11211))
/// try await client.set("greeting", Data("hello".utf8), exptime: 60)
/// let item = try await client.gets("greeting")           // value, flags and CAS unique
/// _ = try await client.cas("greeting", Data("hi".utf8), cas: item!.cas!)
/// await client.shutdown()
/// ```
///
/// Keys must be valid memcached keys: 1 to 250 bytes, no spaces or control characters
/// (``MemcachedKey/isValid(_:)``); the client refuses others before sending.
public final class MemcachedClient: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Connections kept open; requests are spread over them and pipelined on each.
        public var poolSize: Int
        public var connectTimeout: Duration
        /// How long a request may wait for its answer; past it the connection is closed and its requests fail.
        public var commandTimeout: Duration
        /// After a failed connect, requests fail at once for this long before the next attempt (doubling up to 8×).
        public var reconnectBackoff: Duration

        public init(host: String, port: Int = 11211, poolSize: Int = 2, connectTimeout: Duration = .seconds(5),
                    commandTimeout: Duration = .seconds(5), reconnectBackoff: Duration = .milliseconds(100)) {
            self.host = host; self.port = port; self.poolSize = poolSize
            self.connectTimeout = connectTimeout; self.commandTimeout = commandTimeout; self.reconnectBackoff = reconnectBackoff
        }
    }

    private enum Slot {
        case empty
        case connecting(Task<MemcachedConnection, any Error>)
        case ready(MemcachedConnection)
    }

    private struct State {
        var slots: [Slot]
        var next = 0
        var closed = false
        /// The last connect failure and until when requests fail fast with it.
        var lastFailure: MemcachedError?
        var failFastUntil: ContinuousClock.Instant?
        var consecutiveFailures = 0
    }

    public let configuration: Configuration
    private let state: Mutex<State>
    private let group: any EventLoopGroup
    private let logger: Logger
    public var address: String { "\(configuration.host):\(configuration.port)" }

    public init(configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "polyglot.memcached")) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        state = Mutex(State(slots: Array(repeating: .empty, count: max(1, configuration.poolSize))))
    }

    /// Closes every connection; requests afterwards fail with ``MemcachedError/Kind/closed``.
    public func shutdown() async {
        let slots = state.withLock { s -> [Slot] in
            s.closed = true
            defer { s.slots = s.slots.map { _ in .empty } }
            return s.slots
        }
        for slot in slots {
            switch slot {
            case .ready(let c): await c.close()
            case .connecting(let t): if let c = try? await t.value { await c.close() }
            case .empty: break
            }
        }
    }

    // MARK: Connections

    private enum Pick {
        case use(MemcachedConnection)
        case wait(Task<MemcachedConnection, any Error>)
        case fail(MemcachedError)
    }

    /// A live connection, round-robin over the pool, opening one when its slot is empty or dead.
    func connection() async throws -> MemcachedConnection {
        let config = configuration, group = self.group
        let pick = state.withLock { s -> Pick in
            if s.closed { return .fail(MemcachedError(.closed, "the memcached client for \(config.host):\(config.port) was shut down")) }
            let i = s.next % s.slots.count
            s.next &+= 1
            switch s.slots[i] {
            case .ready(let c) where c.isActive:
                return .use(c)
            case .connecting(let t):
                return .wait(t)
            default:
                if let until = s.failFastUntil, ContinuousClock.now < until, let e = s.lastFailure { return .fail(e) }
                let t = Task {
                    try await MemcachedConnection.connect(host: config.host, port: config.port, connectTimeout: config.connectTimeout,
                                                          commandTimeout: config.commandTimeout, group: group)
                }
                s.slots[i] = .connecting(t)
                // Record the outcome in the slot (only if the slot still holds this attempt).
                Task { [weak self] in
                    let result = await t.result
                    self?.settle(slot: i, task: t, result: result)
                }
                return .wait(t)
            }
        }
        switch pick {
        case .use(let c): return c
        case .fail(let e): throw e
        case .wait(let t):
            do { return try await t.value } catch let e as MemcachedError { throw e } catch {
                throw MemcachedError(.connectFailed, "could not connect to memcached at \(address): \(error)")
            }
        }
    }

    private func settle(slot i: Int, task: Task<MemcachedConnection, any Error>, result: Result<MemcachedConnection, any Error>) {
        let backoff = configuration.reconnectBackoff
        let orphan = state.withLock { s -> MemcachedConnection? in
            guard case .connecting(let t) = s.slots[i], t == task else {
                if case .success(let c) = result { return c }
                return nil
            }
            switch result {
            case .success(let c):
                if s.closed { s.slots[i] = .empty; return c }
                s.slots[i] = .ready(c)
                s.consecutiveFailures = 0
                s.failFastUntil = nil
                s.lastFailure = nil
            case .failure(let error):
                s.slots[i] = .empty
                s.consecutiveFailures += 1
                s.lastFailure = (error as? MemcachedError) ?? MemcachedError(.connectFailed, "could not connect to memcached: \(error)")
                s.failFastUntil = ContinuousClock.now + backoff * (1 << min(3, s.consecutiveFailures - 1))
            }
            return nil
        }
        if let orphan { Task { await orphan.close() } }
        if case .failure(let error) = result {
            logger.debug("memcached connect failed", metadata: ["address": "\(address)", "error": "\(error)"])
        }
    }

    // MARK: Raw requests

    /// Sends one request (a command line, plus a data block for storage commands) and returns the parsed answer.
    /// Server errors are thrown as ``MemcachedError``.
    public func send(_ command: String, data: Data? = nil, expect: MemcachedExpect) async throws -> MemcachedResponse {
        guard !command.contains("\r"), !command.contains("\n") else {
            throw MemcachedError(.invalidRequest, "a memcached command line cannot contain CR or LF")
        }
        let bytes = data.map { MemcachedRequest.withData(command, $0) } ?? MemcachedRequest.line(command)
        let connection = try await connection()
        return try await connection.send(bytes, expect: expect)
    }

    private func checkKey(_ key: String) throws {
        guard MemcachedKey.isValid(key) else {
            throw MemcachedError(.invalidRequest, "'\(MemcachedResponseParser.clip(key))' is not a memcached key (1 to 250 bytes, no spaces or control characters)")
        }
    }

    private func line(_ r: MemcachedResponse) throws -> String {
        guard case .line(let l) = r else { throw MemcachedError(.protocolViolation, "unexpected answer \(r)") }
        return l
    }

    private func meta(_ r: MemcachedResponse) throws -> MemcachedMetaResponse {
        guard case .meta(let m) = r else { throw MemcachedError(.protocolViolation, "unexpected answer \(r)") }
        return m
    }

    // MARK: Classic commands

    /// `get`: the item, or nil on a miss.
    public func get(_ key: String) async throws -> MemcachedItem? {
        try checkKey(key)
        guard case .items(let items) = try await send("get \(key)", expect: .items) else { return nil }
        return items.first
    }

    /// `gets`: the items found (with their CAS uniques), for one or more keys.
    public func gets(_ keys: [String]) async throws -> [MemcachedItem] {
        for k in keys { try checkKey(k) }
        guard !keys.isEmpty, case .items(let items) = try await send("gets \(keys.joined(separator: " "))", expect: .items) else { return [] }
        return items
    }

    public func gets(_ key: String) async throws -> MemcachedItem? { try await gets([key]).first }

    /// The outcome of a storage command.
    public enum StoreResult: String, Sendable {
        case stored = "STORED", notStored = "NOT_STORED", exists = "EXISTS", notFound = "NOT_FOUND"
    }

    private func store(_ verb: String, _ key: String, _ value: Data, flags: UInt32, exptime: Int, cas: UInt64? = nil) async throws -> StoreResult {
        try checkKey(key)
        let casPart = cas.map { " \($0)" } ?? ""
        let answer = try line(try await send("\(verb) \(key) \(flags) \(exptime) \(value.count)\(casPart)", data: value, expect: .line))
        guard let r = StoreResult(rawValue: answer) else { throw MemcachedError(.protocolViolation, "unexpected answer '\(answer)' to \(verb)") }
        return r
    }

    /// `set`. `exptime` is seconds from now up to 30 days, a Unix time beyond that, 0 for none.
    @discardableResult
    public func set(_ key: String, _ value: Data, flags: UInt32 = 0, exptime: Int = 0) async throws -> StoreResult {
        try await store("set", key, value, flags: flags, exptime: exptime)
    }

    /// `add`: stores only if the key is absent (`.notStored` otherwise).
    public func add(_ key: String, _ value: Data, flags: UInt32 = 0, exptime: Int = 0) async throws -> StoreResult {
        try await store("add", key, value, flags: flags, exptime: exptime)
    }

    /// `cas`: stores only if the item is unchanged since `gets` returned `cas` (`.exists` if changed, `.notFound` if gone).
    public func cas(_ key: String, _ value: Data, cas: UInt64, flags: UInt32 = 0, exptime: Int = 0) async throws -> StoreResult {
        try await store("cas", key, value, flags: flags, exptime: exptime, cas: cas)
    }

    /// `delete`: whether the key existed.
    public func delete(_ key: String) async throws -> Bool {
        try checkKey(key)
        let answer = try line(try await send("delete \(key)", expect: .line))
        switch answer {
        case "DELETED": return true
        case "NOT_FOUND": return false
        default: throw MemcachedError(.protocolViolation, "unexpected answer '\(answer)' to delete")
        }
    }

    /// `incr` (or `decr` for a negative delta): the new value, or nil when the key is absent. memcached counts
    /// in unsigned 64 bits: `incr` wraps, `decr` stops at 0, and a non-decimal value is a `CLIENT_ERROR`.
    public func incr(_ key: String, by delta: Int64) async throws -> UInt64? {
        try checkKey(key)
        let verb = delta < 0 ? "decr" : "incr"
        let answer = try line(try await send("\(verb) \(key) \(delta.magnitude)", expect: .line))
        if answer == "NOT_FOUND" { return nil }
        guard let n = UInt64(answer) else { throw MemcachedError(.protocolViolation, "unexpected answer '\(answer)' to \(verb)") }
        return n
    }

    /// `touch`: sets a new expiry; whether the key existed.
    public func touch(_ key: String, exptime: Int) async throws -> Bool {
        try checkKey(key)
        let answer = try line(try await send("touch \(key) \(exptime)", expect: .line))
        switch answer {
        case "TOUCHED": return true
        case "NOT_FOUND": return false
        default: throw MemcachedError(.protocolViolation, "unexpected answer '\(answer)' to touch")
        }
    }

    /// `version`: the server's version string.
    public func version() async throws -> String {
        let answer = try line(try await send("version", expect: .line))
        guard answer.hasPrefix("VERSION ") else { throw MemcachedError(.protocolViolation, "unexpected answer '\(answer)' to version") }
        return String(answer.dropFirst(8))
    }

    /// `stats` (or `stats <group>`): name → value.
    public func stats(_ group: String? = nil) async throws -> [String: String] {
        guard case .lines(let lines) = try await send(group.map { "stats \($0)" } ?? "stats", expect: .lines) else { return [:] }
        var out: [String: String] = [:]
        for l in lines {
            let parts = l.split(separator: " ", maxSplits: 2)
            if parts.count == 3, parts[0] == "STAT" { out[String(parts[1])] = String(parts[2]) }
        }
        return out
    }

    // MARK: Meta commands

    /// `mg <key> <flags>`: e.g. flags `["v", "c", "t", "f"]` return the value, CAS, TTL and client flags.
    public func metaGet(_ key: String, flags: [String]) async throws -> MemcachedMetaResponse {
        try checkKey(key)
        return try meta(try await send((["mg", key] + flags).joined(separator: " "), expect: .meta))
    }

    /// `ms <key> <size> <flags>` with the value: e.g. `["T60", "F3", "C<cas>", "ME"]` (mode add), `["c"]` to return the new CAS.
    public func metaSet(_ key: String, _ value: Data, flags: [String]) async throws -> MemcachedMetaResponse {
        try checkKey(key)
        return try meta(try await send((["ms", key, String(value.count)] + flags).joined(separator: " "), data: value, expect: .meta))
    }

    /// `md <key> <flags>`: e.g. `["C<cas>"]` deletes only an unchanged item.
    public func metaDelete(_ key: String, flags: [String] = []) async throws -> MemcachedMetaResponse {
        try checkKey(key)
        return try meta(try await send((["md", key] + flags).joined(separator: " "), expect: .meta))
    }

    /// One line of `lru_crawler metadump`: a key with its expiry.
    public struct DumpedKey: Sendable, Hashable {
        public var key: String
        /// Unix time of expiry, or nil for none.
        public var expiresAt: Int?
    }

    /// Every key the server holds, retrying while the crawler is busy. It walks the hash table
    /// (`lru_crawler metadump hash`, memcached 1.6.9+; `metadump all`, which walks the LRUs, on older servers):
    /// items move between LRUs while they are walked, so an LRU walk misses keys far more often.
    /// Either walk skips an item another request holds locked at that instant, so a listing taken under
    /// concurrent traffic can still miss keys. Its cost grows with the number of items on the server.
    public func dumpKeys(retryFor: Duration = .seconds(5)) async throws -> [DumpedKey] {
        let deadline = ContinuousClock.now + retryFor
        var delay = Duration.milliseconds(5)
        var mode = "hash"
        while true {
            if state.withLock({ $0.closed }) { throw MemcachedError(.closed, "the memcached client for \(address) was shut down") }
            do {
                // On a connection of its own: memcached refuses a metadump with other commands pipelined before it
                // ("cannot pipeline other commands before metadump"), and the dump would hold up the pool meanwhile.
                let connection = try await MemcachedConnection.connect(host: configuration.host, port: configuration.port,
                                                                       connectTimeout: configuration.connectTimeout,
                                                                       commandTimeout: configuration.commandTimeout, group: group)
                let answer: MemcachedResponse
                do {
                    answer = try await connection.send(MemcachedRequest.line("lru_crawler metadump \(mode)"), expect: .lines)
                    await connection.close()
                } catch {
                    await connection.close()
                    throw error
                }
                guard case .lines(let lines) = answer else { return [] }
                var keys: [DumpedKey] = []
                keys.reserveCapacity(lines.count)
                for l in lines {
                    var key: String?
                    var exp: Int?
                    for field in l.split(separator: " ") {
                        if field.hasPrefix("key=") { key = String(field.dropFirst(4)).removingPercentEncoding }
                        else if field.hasPrefix("exp=") { exp = Int(field.dropFirst(4)) }
                    }
                    if let key { keys.append(DumpedKey(key: key, expiresAt: (exp ?? -1) < 0 ? nil : exp)) }
                }
                return keys
            } catch let e as MemcachedError where mode == "hash" && (e.kind == .clientError || (e.kind == .error && e.message.isEmpty)) {
                mode = "all"   // a server older than 1.6.9
            } catch let e as MemcachedError where e.kind == .busy && ContinuousClock.now < deadline {
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(200))
            }
        }
    }
}

/// What makes a valid memcached key.
public enum MemcachedKey {
    public static let maxBytes = 250

    /// 1 to 250 bytes, none of them a space or control character (bytes 0x00–0x20 and 0x7F).
    public static func isValid(_ key: String) -> Bool {
        let bytes = key.utf8
        guard !bytes.isEmpty, bytes.count <= maxBytes else { return false }
        return bytes.allSatisfy { $0 > 0x20 && $0 != 0x7F }
    }
}
