import NIOCore

/// Anything that sends Redis commands: ``RedisClient`` (a pool), ``RedisConnection`` (one connection) and
/// ``RedisClusterClient``. The typed helpers (`get`, `set`, `incr`, scripts, ...) are written once on top of
/// ``send(_:)-(RedisCommand)`` and ``pipeline(_:)``.
///
/// ```swift
/// func warm(_ redis: some RedisCommandRunner) async throws {
///     try await redis.set("greeting", "hello", ttl: .seconds(60))
///     let v = try await redis.getString("greeting")   // "hello"
/// }
/// ```
public protocol RedisCommandRunner: Sendable {
    /// Sends one command; an error reply is thrown as ``RedisError`` with kind ``RedisError/Kind/server``.
    func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue
    /// Sends commands together and returns their replies in order; error replies stay ``RESPValue/error(_:)`` values.
    func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue]
}

/// How ``RedisCommandRunner/set(_:_:ttl:condition:)`` treats an existing key.
public enum RedisSetCondition: Sendable {
    /// Always set (plain `SET`).
    case always
    /// Only if the key does not exist (`NX`).
    case ifAbsent
    /// Only if the key exists (`XX`).
    case ifExists
}

extension RedisCommandRunner {
    /// Sends a command given as an array whose first element is its name: `try await client.send(["SET", key, value])`.
    public func send(_ arguments: [any RedisArgument]) async throws(RedisError) -> RESPValue {
        guard !arguments.isEmpty else {
            throw RedisError(.invalidArgument, "An empty Redis command; nothing was sent.", fix: "Give the command name first, e.g. [\"GET\", key].")
        }
        return try await send(RedisCommand(arguments))
    }

    /// Sends a command: `try await client.send("HSET", key, "field", value)`.
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws(RedisError) -> RESPValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// `GET`: the value's bytes, or nil when the key does not exist.
    public func get(_ key: some RedisArgument) async throws(RedisError) -> ByteBuffer? {
        let reply = try await send(RedisCommand("GET", key))
        switch reply {
        case .bulkString(let b): return b
        case .null: return nil
        default: throw unexpected(reply, "GET")
        }
    }

    /// `GET` as UTF-8 text, or nil when the key does not exist.
    public func getString(_ key: some RedisArgument) async throws(RedisError) -> String? {
        try await get(key).map { String(buffer: $0) }
    }

    /// `SET`, with an optional time to live (`PX`, in milliseconds) and condition (`NX`/`XX`).
    /// Returns false when the condition kept the value from being set.
    @discardableResult
    public func set(_ key: some RedisArgument, _ value: some RedisArgument, ttl: Duration? = nil,
                    condition: RedisSetCondition = .always) async throws(RedisError) -> Bool {
        var args: [any RedisArgument] = [key, value]
        if let ttl {
            args += ["PX", try milliseconds(ttl, "SET")]
        }
        switch condition {
        case .always: break
        case .ifAbsent: args.append("NX")
        case .ifExists: args.append("XX")
        }
        let reply = try await send(RedisCommand("SET", arguments: args))
        return !reply.isNull
    }

    /// `DEL`: how many of the keys existed.
    @discardableResult
    public func del(_ keys: [any RedisArgument]) async throws(RedisError) -> Int {
        guard !keys.isEmpty else { return 0 }
        let reply = try await send(RedisCommand("DEL", arguments: keys))
        guard let n = reply.int else { throw unexpected(reply, "DEL") }
        return Int(n)
    }

    /// `DEL` of one key: whether it existed.
    @discardableResult
    public func del(_ key: some RedisArgument) async throws(RedisError) -> Bool {
        try await del([key]) > 0
    }

    /// `EXISTS`: whether the key exists.
    public func exists(_ key: some RedisArgument) async throws(RedisError) -> Bool {
        let reply = try await send(RedisCommand("EXISTS", key))
        guard let n = reply.int else { throw unexpected(reply, "EXISTS") }
        return n > 0
    }

    /// `INCRBY`: adds `by` (default 1) to the integer at `key` (0 if absent) and returns the new value.
    @discardableResult
    public func incr(_ key: some RedisArgument, by: Int64 = 1) async throws(RedisError) -> Int64 {
        let reply = by == 1 ? try await send(RedisCommand("INCR", key)) : try await send(RedisCommand("INCRBY", key, by))
        guard case .integer(let n) = reply else { throw unexpected(reply, "INCRBY") }
        return n
    }

    /// `PEXPIRE`: sets a time to live; false when the key does not exist.
    @discardableResult
    public func expire(_ key: some RedisArgument, after ttl: Duration) async throws(RedisError) -> Bool {
        let reply = try await send(RedisCommand("PEXPIRE", key, try milliseconds(ttl, "PEXPIRE")))
        return reply.int == 1
    }

    /// `PTTL`: the time to live left; nil when the key does not exist or has none.
    public func ttl(_ key: some RedisArgument) async throws(RedisError) -> Duration? {
        let reply = try await send(RedisCommand("PTTL", key))
        guard let ms = reply.int else { throw unexpected(reply, "PTTL") }
        return ms >= 0 ? .milliseconds(ms) : nil
    }

    /// `PING`.
    public func ping() async throws(RedisError) {
        _ = try await send(RedisCommand("PING"))
    }

    /// A Lua script run with `EVALSHA` (falling back to `EVAL` when the server does not have it cached).
    ///
    /// ```swift
    /// let bump = client.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    /// let n = try await bump.run(keys: ["counter"], args: [5]).int
    /// ```
    public func script(_ source: String) -> RedisScript {
        RedisScript(source: source, runner: self)
    }
}

func unexpected(_ reply: RESPValue, _ command: String) -> RedisError {
    RedisError(.protocolViolation, "\(command) returned an unexpected reply: \(reply).",
               fix: "Check that the key holds the expected type and the server is a Redis 6+ server.")
}

func milliseconds(_ ttl: Duration, _ command: String) throws(RedisError) -> Int64 {
    let (s, atto) = ttl.components
    guard s < Int64.max / 1000 else {
        throw RedisError(.invalidArgument, "\(command): a time to live of \(ttl) does not fit Redis's 64-bit milliseconds.",
                         fix: "Give a time to live of at most a few hundred million years, or none.")
    }
    let ms = s < 0 ? 0 : s * 1000 + atto / 1_000_000_000_000_000
    guard ms > 0 else {
        throw RedisError(.invalidArgument, "\(command): a time to live of \(ttl) is not positive (Redis counts whole milliseconds).",
                         fix: "Give a time to live of at least 1 millisecond, or none.")
    }
    return ms
}

/// A Lua script bound to a client, run with `EVALSHA` by its SHA-1, and with `EVAL` (which also caches it on the
/// server) when the server answers `NOSCRIPT` (after a restart, `SCRIPT FLUSH`, or on another cluster node).
///
/// ```swift
/// let script = client.script("return {KEYS[1], ARGV[1]}")
/// let reply = try await script.run(keys: ["k"], args: ["v"])
/// ```
public struct RedisScript: Sendable {
    /// The Lua source.
    public let source: String
    /// The SHA-1 of the source, in lower-case hex (what `SCRIPT LOAD` returns).
    public let sha1: String
    let runner: any RedisCommandRunner

    init(source: String, runner: any RedisCommandRunner) {
        self.source = source
        self.sha1 = SHA1.hex(Array(source.utf8))
        self.runner = runner
    }

    /// Runs the script; an error the script raises (`redis.error_reply`, a failed `redis.call`) is thrown as a
    /// ``RedisError`` of kind ``RedisError/Kind/server``.
    public func run(keys: [any RedisArgument] = [], args: [any RedisArgument] = []) async throws(RedisError) -> RESPValue {
        let tail: [any RedisArgument] = [keys.count] + keys + args
        let keyIndex = keys.isEmpty ? nil : 2
        do {
            return try await runner.send(RedisCommand("EVALSHA", arguments: [sha1] + tail, keyIndex: keyIndex))
        } catch where error.serverCode == "NOSCRIPT" {
            return try await runner.send(RedisCommand("EVAL", arguments: [source] + tail, keyIndex: keyIndex))
        }
    }
}

/// SHA-1 (FIPS 180-4), only to name scripts the way Redis does; not for security.
enum SHA1 {
    static func hex(_ message: [UInt8]) -> String {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        var data = message
        let bitLength = UInt64(message.count) * 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for i in (0..<8).reversed() { data.append(UInt8((bitLength >> (UInt64(i) * 8)) & 0xFF)) }
        var w = [UInt32](repeating: 0, count: 80)
        var chunk = 0
        while chunk < data.count {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(data[j]) << 24 | UInt32(data[j + 1]) << 16 | UInt32(data[j + 2]) << 8 | UInt32(data[j + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = (x << 1) | (x >> 31)
            }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let f: UInt32
                let k: UInt32
                switch i {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5A82_7999
                case 20..<40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                default: f = b ^ c ^ d; k = 0xCA62_C1D6
                }
                let t = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = (b << 30) | (b >> 2)
                b = a
                a = t
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
            chunk += 64
        }
        let words = [h.0, h.1, h.2, h.3, h.4]
        let digits = Array("0123456789abcdef")
        var out = ""
        out.reserveCapacity(40)
        for word in words {
            for shift in stride(from: 28, through: 0, by: -4) {
                out.append(digits[Int((word >> UInt32(shift)) & 0xF)])
            }
        }
        return out
    }
}
