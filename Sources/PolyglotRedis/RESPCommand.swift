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
        buffer.writeString(String(v))
    }

    static func writeHeader(_ type: UInt8, _ n: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        writeDecimal(Int64(n), into: &buffer)
        buffer.writeInteger(UInt16(0x0D0A))
    }
}

/// One Redis command, encoded once as a RESP array of bulk strings. Binary-safe: arguments are bytes.
///
/// ```swift
/// let set = RedisCommand("SET", "user:1", [0x00, 0x0D, 0x0A] as [UInt8], "EX", 60)
/// let reply = try await client.send(set)
/// let replies = try await client.pipeline([RedisCommand("INCR", "n"), RedisCommand("GET", "n")])
/// ```
public struct RedisCommand: Sendable {
    /// The command's name, for error messages (`GET`).
    public let name: String
    /// How many arguments, the name included.
    public let argumentCount: Int
    /// The encoded bytes.
    var bytes: ByteBuffer
    /// The size of the largest argument, checked against ``RedisConfiguration/maxValueBytes`` before sending.
    let largestArgument: Int
    /// Where, inside `bytes`, the key that decides the cluster slot is (nil: the command has no key).
    let keyRange: Range<Int>?

    /// A command from its name and arguments: `RedisCommand("SET", key, value)`.
    public init(_ name: String, _ arguments: any RedisArgument...) {
        self.init(name, arguments: arguments)
    }

    /// A command from its name and arguments.
    /// - Parameter keyIndex: which argument (0 = the first after the name) is the key that routes the command in a
    ///   cluster; by default the first one, or for `EVAL`/`EVALSHA`/`FCALL` the first key after `numkeys`.
    public init(_ name: String, arguments: [any RedisArgument], keyIndex: Int? = nil) {
        self.name = name
        self.argumentCount = arguments.count + 1
        var size = 16 + name.utf8.count
        for a in arguments { size += a.redisArgumentLength + 16 }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        RESPEncoding.writeHeader(UInt8(ascii: "*"), arguments.count + 1, into: &buffer)
        RESPEncoding.writeHeader(UInt8(ascii: "$"), name.utf8.count, into: &buffer)
        buffer.writeString(name)
        buffer.writeInteger(UInt16(0x0D0A))
        var largest = 0
        var range: Range<Int>? = nil
        let routing = keyIndex ?? RedisCommand.defaultKeyIndex(name: name, arguments: arguments)
        for (i, a) in arguments.enumerated() {
            let n = a.redisArgumentLength
            largest = Swift.max(largest, n)
            RESPEncoding.writeHeader(UInt8(ascii: "$"), n, into: &buffer)
            let start = buffer.writerIndex
            a.writeRedisArgument(into: &buffer)
            if i == routing { range = start..<buffer.writerIndex }
            buffer.writeInteger(UInt16(0x0D0A))
        }
        self.bytes = buffer
        self.largestArgument = largest
        self.keyRange = range
    }

    /// A command from an array whose first element is the name: `RedisCommand(["SET", key, value])`.
    /// An empty array makes a command the server rejects; ``RedisClient/send(_:)-([any RedisArgument])`` refuses it first.
    public init(_ array: [any RedisArgument]) {
        guard let first = array.first else {
            self.init("", arguments: [])
            return
        }
        var nameBuffer = ByteBuffer()
        first.writeRedisArgument(into: &nameBuffer)
        self.init(String(buffer: nameBuffer), arguments: Array(array.dropFirst()))
    }

    static func defaultKeyIndex(name: String, arguments: [any RedisArgument]) -> Int? {
        guard !arguments.isEmpty else { return nil }
        switch name.uppercased() {
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            // EVAL script numkeys key...: the first key, if any.
            guard arguments.count >= 3, let numkeys = arguments[1] as? Int ?? (arguments[1] as? String).flatMap({ Int($0) }),
                  numkeys > 0 else { return nil }
            return 2
        case "PING", "INFO", "ECHO", "SCRIPT", "CLUSTER", "CONFIG", "CLIENT", "DBSIZE", "FLUSHALL", "FLUSHDB",
             "TIME", "HELLO", "AUTH", "SELECT", "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "SCAN", "KEYS", "RANDOMKEY",
             "ACL", "DEBUG", "COMMAND", "MULTI", "EXEC", "DISCARD", "READONLY", "READWRITE", "ASKING", "WAIT", "LASTSAVE":
            return nil
        default:
            return 0
        }
    }

    /// The encoded bytes of this command (a RESP array of bulk strings).
    public var encoded: ByteBuffer { bytes }

    /// The bytes of the routing key, if the command has one.
    public var key: [UInt8]? {
        guard let r = keyRange else { return nil }
        return bytes.getBytes(at: r.lowerBound, length: r.count)
    }
}
