import Foundation
import NIOCore

/// A value that can be one argument of a Redis command: strings (UTF-8), bytes (`[UInt8]`, `ByteBuffer`, `Data`)
/// and numbers (sent as decimal text, as Redis expects).
public protocol RedisArgument: Sendable {
    /// The number of bytes ``writeRedisArgument(into:)`` writes.
    var redisArgumentLength: Int { get }
    /// Writes the argument's bytes (without the RESP header).
    func writeRedisArgument(into buffer: inout ByteBuffer)
}

extension String: RedisArgument {
    public var redisArgumentLength: Int { utf8.count }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeString(self) }
}

extension Substring: RedisArgument {
    public var redisArgumentLength: Int { utf8.count }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeSubstring(self) }
}

extension Array: RedisArgument where Element == UInt8 {
    public var redisArgumentLength: Int { count }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeBytes(self) }
}

extension ArraySlice: RedisArgument where Element == UInt8 {
    public var redisArgumentLength: Int { count }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeBytes(self) }
}

extension ByteBuffer: RedisArgument {
    public var redisArgumentLength: Int { readableBytes }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeImmutableBuffer(self) }
}

extension Data: RedisArgument {
    public var redisArgumentLength: Int { count }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeBytes(self) }
}

extension Int: RedisArgument {
    public var redisArgumentLength: Int { RESPEncoding.decimalLength(Int64(self)) }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { RESPEncoding.writeDecimal(Int64(self), into: &buffer) }
}

extension Int64: RedisArgument {
    public var redisArgumentLength: Int { RESPEncoding.decimalLength(self) }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { RESPEncoding.writeDecimal(self, into: &buffer) }
}

extension Int32: RedisArgument {
    public var redisArgumentLength: Int { RESPEncoding.decimalLength(Int64(self)) }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { RESPEncoding.writeDecimal(Int64(self), into: &buffer) }
}

extension Double: RedisArgument {
    var redisText: String {
        if self == .infinity { return "+inf" }
        if self == -.infinity { return "-inf" }
        return description
    }
    public var redisArgumentLength: Int { redisText.utf8.count }
    public func writeRedisArgument(into buffer: inout ByteBuffer) { buffer.writeString(redisText) }
}

enum RESPEncoding {
    static func decimalLength(_ v: Int64) -> Int {
        if v == .min { return 20 }
        var n = v < 0 ? 2 : 1
        var x = v < 0 ? -v : v
        while x >= 10 { x /= 10; n += 1 }
        return n
    }

    static func writeDecimal(_ v: Int64, into buffer: inout ByteBuffer) {
        if v >= 0 && v < 10 {
            buffer.writeInteger(UInt8(48 + v))
            return
        }
        if v >= 10 && v < 100 {
            buffer.writeInteger(UInt16(48 + v / 10) << 8 | UInt16(48 + v % 10))
            return
        }
        buffer.writeString(String(v))
    }

    /// Writes `type`, the decimal `n` (not negative) and CRLF at `p`; returns how many bytes that took (at most 22).
    @inline(__always)
    static func putHeader(_ type: UInt8, _ n: Int, at p: UnsafeMutableRawPointer) -> Int {
        p.storeBytes(of: type, as: UInt8.self)
        var digits = 1
        var x = n
        while x >= 10 { x /= 10; digits += 1 }
        x = n
        var i = digits
        while i > 0 {
            p.storeBytes(of: UInt8(48 + x % 10), toByteOffset: i, as: UInt8.self)
            x /= 10
            i -= 1
        }
        p.storeBytes(of: 13, toByteOffset: digits + 1, as: UInt8.self)
        p.storeBytes(of: 10, toByteOffset: digits + 2, as: UInt8.self)
        return digits + 3
    }

    /// Writes a command's framing up to its first argument's bytes, in one write: `*count`, the name as a bulk
    /// string, then `$firstLength` (when `firstLength` is not nil).
    @inline(__always)
    static func writeCommandStart(count: Int, name: String, firstLength: Int?, into buffer: inout ByteBuffer) {
        var name = name
        name.withUTF8 { n in
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 3 * 22 + n.count) { out in
                let p = out.baseAddress!
                var i = putHeader(UInt8(ascii: "*"), count, at: p)
                i += putHeader(UInt8(ascii: "$"), n.count, at: p + i)
                if let base = n.baseAddress { (p + i).copyMemory(from: base, byteCount: n.count) }
                i += n.count
                (p + i).storeBytes(of: 13, as: UInt8.self)
                (p + i + 1).storeBytes(of: 10, as: UInt8.self)
                i += 2
                if let firstLength { i += putHeader(UInt8(ascii: "$"), firstLength, at: p + i) }
                return i
            }
        }
    }

    /// Writes CRLF (ending the previous argument) and, when `nextLength` is not nil, `$nextLength` CRLF.
    @inline(__always)
    static func writeArgumentEnd(nextLength: Int?, into buffer: inout ByteBuffer) {
        guard let nextLength else {
            buffer.writeInteger(UInt16(0x0D0A))
            return
        }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 24) { out in
            let p = out.baseAddress!
            p.storeBytes(of: 13, as: UInt8.self)
            p.storeBytes(of: 10, toByteOffset: 1, as: UInt8.self)
            return 2 + putHeader(UInt8(ascii: "$"), nextLength, at: p + 2)
        }
    }

    /// `*N\r\n` or `$N\r\n`; one write for the common small lengths.
    @inline(__always)
    static func writeHeader(_ type: UInt8, _ n: Int, into buffer: inout ByteBuffer) {
        if n >= 0 && n < 10 {
            buffer.writeInteger(UInt32(type) << 24 | UInt32(48 + n) << 16 | 0x0D0A)
        } else if n >= 10 && n < 100 {
            buffer.writeInteger(UInt8(type))
            buffer.writeInteger(UInt32(48 + n / 10) << 24 | UInt32(48 + n % 10) << 16 | 0x0D0A)
        } else {
            buffer.writeInteger(type)
            writeDecimal(Int64(n), into: &buffer)
            buffer.writeInteger(UInt16(0x0D0A))
        }
    }
}

/// One Redis command: a RESP array of bulk strings. Binary-safe: arguments are bytes.
///
/// ```swift
/// let set = RedisCommand("SET", "user:1", [0x00, 0x0D, 0x0A] as [UInt8], "EX", 60)
/// let reply = try await client.send(set)
/// let replies = try await client.pipeline([RedisCommand("INCR", "n"), RedisCommand("GET", "n")])
/// ```
///
/// A command of up to two arguments (`GET key`, `SET key value`, the helpers' commands) keeps its arguments as
/// given and is encoded straight into the connection's outgoing buffer when it is sent: building one allocates
/// nothing. Longer commands are encoded once, when built.
public struct RedisCommand: Sendable {
    /// The command's name, for error messages (`GET`).
    public let name: String
    /// How many arguments, the name included.
    public let argumentCount: Int
    /// The size of the largest argument, checked against ``RedisConfiguration/maxValueBytes`` before sending.
    let largestArgument: Int
    let storage: Storage

    enum Storage: Sendable {
        /// The name alone.
        case none
        /// One argument and its length in bytes.
        case one(any RedisArgument, Int)
        /// Two arguments and their lengths in bytes.
        case two(any RedisArgument, Int, any RedisArgument, Int)
        /// Encoded when built, with where its first arguments (and an explicit key) are inside the bytes.
        case encoded(Encoded)
    }

    struct Encoded: Sendable {
        var bytes: ByteBuffer
        /// Where, inside `bytes`, the first three arguments after the name are (for cluster routing).
        var firstArguments: ArgumentRanges
        /// An explicit key's range (`.none`: not given; `.noKey`: given as "no key").
        var explicitKey: ArgumentRange
    }

    /// A byte range as two 32-bit offsets; `start == -1` means absent.
    struct ArgumentRange: Sendable {
        var start: Int32 = -1
        var end: Int32 = -1
        static let none = ArgumentRange()
        /// "No key" given explicitly.
        static let noKey = ArgumentRange(start: -2, end: -2)
        init() {}
        init(start: Int32, end: Int32) {
            self.start = start
            self.end = end
        }
        init(_ r: Range<Int>?) {
            if let r { start = Int32(truncatingIfNeeded: r.lowerBound); end = Int32(truncatingIfNeeded: r.upperBound) }
        }
        var range: Range<Int>? { start >= 0 ? Int(start)..<Int(end) : nil }
    }

    struct ArgumentRanges: Sendable {
        var a0 = ArgumentRange.none, a1 = ArgumentRange.none, a2 = ArgumentRange.none
    }

    /// Writes a command: header, name, then each argument.
    struct Writer {
        var buffer: ByteBuffer
        var largest = 0
        var index = 0
        let count: Int
        var firstArguments = ArgumentRanges()
        var keyIndex: Int?
        var keyRange: Range<Int>?

        init(name: String, count: Int, capacity: Int) {
            self.count = count
            buffer = ByteBufferAllocator().buffer(capacity: capacity + 16 + name.utf8.count + 16 * count)
            RESPEncoding.writeHeader(UInt8(ascii: "*"), count + 1, into: &buffer)
            RESPEncoding.writeHeader(UInt8(ascii: "$"), name.utf8.count, into: &buffer)
            buffer.writeString(name)
            buffer.writeInteger(UInt16(0x0D0A))
        }

        @inline(__always)
        mutating func append<A: RedisArgument>(_ a: A) {
            let n = a.redisArgumentLength
            if n > largest { largest = n }
            RESPEncoding.writeHeader(UInt8(ascii: "$"), n, into: &buffer)
            let start = buffer.writerIndex
            a.writeRedisArgument(into: &buffer)
            let range = start..<buffer.writerIndex
            switch index {
            case 0: firstArguments.a0 = ArgumentRange(range)
            case 1: firstArguments.a1 = ArgumentRange(range)
            case 2: firstArguments.a2 = ArgumentRange(range)
            default: break
            }
            if index == keyIndex { keyRange = range }
            index += 1
            buffer.writeInteger(UInt16(0x0D0A))
        }

        mutating func append(existential a: any RedisArgument) { append(a) }
    }

    /// A command with no arguments: `RedisCommand("PING")`.
    public init(_ name: String) {
        self.name = name
        self.argumentCount = 1
        self.largestArgument = 0
        self.storage = .none
    }

    /// A command with one argument: `RedisCommand("GET", key)`.
    public init<A: RedisArgument>(_ name: String, _ a: A) {
        let n = a.redisArgumentLength
        self.name = name
        self.argumentCount = 2
        self.largestArgument = n
        self.storage = .one(a, n)
    }

    /// A command with two arguments: `RedisCommand("SET", key, value)`.
    public init<A: RedisArgument, B: RedisArgument>(_ name: String, _ a: A, _ b: B) {
        let n = a.redisArgumentLength, m = b.redisArgumentLength
        self.name = name
        self.argumentCount = 3
        self.largestArgument = Swift.max(n, m)
        self.storage = .two(a, n, b, m)
    }

    /// A command from its name and arguments: `RedisCommand("SET", key, value, "PX", 1000)`.
    public init(_ name: String, _ arguments: any RedisArgument...) {
        self.init(name, arguments: arguments)
    }

    /// A command from its name and arguments.
    /// - Parameter keyIndex: which argument (0 = the first after the name) is the key that routes the command in a
    ///   cluster; by default the first one, or for `EVAL`/`EVALSHA`/`FCALL` the first key after `numkeys`, and none
    ///   for commands without keys (`PING`, `INFO`, ...).
    public init(_ name: String, arguments: [any RedisArgument], keyIndex: Int? = nil) {
        var size = 0
        for a in arguments { size += a.redisArgumentLength }
        var w = Writer(name: name, count: arguments.count, capacity: size)
        w.keyIndex = keyIndex
        for a in arguments { w.append(existential: a) }
        self.name = name
        self.argumentCount = arguments.count + 1
        self.largestArgument = w.largest
        self.storage = .encoded(Encoded(bytes: w.buffer, firstArguments: w.firstArguments,
                                        explicitKey: keyIndex == nil ? .none : (w.keyRange.map { ArgumentRange($0) } ?? .noKey)))
    }

    /// A command from an array whose first element is the name: `RedisCommand(["SET", key, value])`.
    /// An empty array makes a command the client refuses to send (``RedisError/Kind/invalidArgument``).
    public init(_ array: [any RedisArgument]) {
        guard let first = array.first else {
            self.init("")
            return
        }
        var nameBuffer = ByteBuffer()
        first.writeRedisArgument(into: &nameBuffer)
        self.init(String(buffer: nameBuffer), arguments: Array(array.dropFirst()))
    }

    /// How many bytes ``write(into:)`` writes at most, for commands kept unencoded (an upper bound; exact for
    /// arguments under 100 000 bytes).
    var encodedLengthEstimate: Int {
        switch storage {
        case .none: return 24 + name.utf8.count
        case .one(_, let n): return 48 + name.utf8.count + n
        case .two(_, let n, _, let m): return 72 + name.utf8.count + n + m
        case .encoded(let e): return e.bytes.readableBytes
        }
    }

    /// Appends the command's RESP bytes to `buffer`.
    @inline(__always)
    func write(into buffer: inout ByteBuffer) {
        // Framing is written with raw stores (one capacity check each), the arguments by their own writers.
        switch storage {
        case .none:
            RESPEncoding.writeCommandStart(count: 1, name: name, firstLength: nil, into: &buffer)
        case .one(let a, let n):
            RESPEncoding.writeCommandStart(count: 2, name: name, firstLength: n, into: &buffer)
            a.writeRedisArgument(into: &buffer)
            RESPEncoding.writeArgumentEnd(nextLength: nil, into: &buffer)
        case .two(let a, let n, let b, let m):
            RESPEncoding.writeCommandStart(count: 3, name: name, firstLength: n, into: &buffer)
            a.writeRedisArgument(into: &buffer)
            RESPEncoding.writeArgumentEnd(nextLength: m, into: &buffer)
            b.writeRedisArgument(into: &buffer)
            RESPEncoding.writeArgumentEnd(nextLength: nil, into: &buffer)
        case .encoded(let e):
            buffer.writeImmutableBuffer(e.bytes)
        }
    }

    /// The encoded bytes of this command (a RESP array of bulk strings).
    public var encoded: ByteBuffer {
        if case .encoded(let e) = storage { return e.bytes }
        var buffer = ByteBufferAllocator().buffer(capacity: encodedLengthEstimate)
        write(into: &buffer)
        return buffer
    }

    /// The bytes of the key that routes this command in a cluster (nil: no key).
    var routingKey: ByteBuffer? {
        switch storage {
        case .none:
            return nil
        case .one(let a, let n), .two(let a, let n, _, _):
            // With at most two arguments, EVAL-like commands have no key (it would follow script and numkeys).
            guard RedisCommand.routing(of: name) == .firstArgument else { return nil }
            var b = ByteBufferAllocator().buffer(capacity: n)
            a.writeRedisArgument(into: &b)
            return b
        case .encoded(let e):
            guard let r = e.keyRange(name: name) else { return nil }
            return e.bytes.getSlice(at: r.lowerBound, length: r.count)
        }
    }

    enum Routing { case firstArgument, afterNumkeys, none }

    static func routing(of name: String) -> Routing {
        switch name.uppercased() {
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            return .afterNumkeys
        case "PING", "INFO", "ECHO", "SCRIPT", "CLUSTER", "CONFIG", "CLIENT", "DBSIZE", "FLUSHALL", "FLUSHDB",
             "TIME", "HELLO", "AUTH", "SELECT", "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "SCAN", "KEYS", "RANDOMKEY",
             "ACL", "DEBUG", "COMMAND", "MULTI", "EXEC", "DISCARD", "READONLY", "READWRITE", "ASKING", "WAIT", "LASTSAVE",
             "FUNCTION", "MEMORY", "SLOWLOG", "LATENCY", "MODULE", "SWAPDB", "SAVE", "BGSAVE", "SHUTDOWN":
            return .none
        default:
            return .firstArgument
        }
    }

    /// The bytes of the routing key, if the command has one.
    public var key: [UInt8]? {
        routingKey.map { Array($0.readableBytesView) }
    }
}

extension RedisCommand.Encoded {
    /// Where the key that routes this command in a cluster is, inside `bytes` (nil: no key).
    func keyRange(name: String) -> Range<Int>? {
        if explicitKey.start == -2 { return nil }
        if let explicit = explicitKey.range { return explicit }
        guard let first = firstArguments.a0.range else { return nil }
        switch RedisCommand.routing(of: name) {
        case .firstArgument: return first
        case .none: return nil
        case .afterNumkeys:
            // EVAL script numkeys key ...: the first key, if numkeys > 0.
            guard let r = firstArguments.a1.range, let numkeys = bytes.getString(at: r.lowerBound, length: r.count).flatMap({ Int($0) }),
                  numkeys > 0 else { return nil }
            return firstArguments.a2.range
        }
    }
}
