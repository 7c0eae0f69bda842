import NIOCore

/// One value of the Redis serialization protocol (RESP2 and RESP3), as the server sent it.
///
/// Bulk strings stay bytes (`ByteBuffer`): keys and values are binary-safe, and nothing is decoded unless asked.
/// A null bulk string, a null array (RESP2) and the RESP3 null all read as ``null``.
///
/// ```swift
/// let reply = try await client.send(["GET", "greeting"])
/// if let text = reply.string { print(text) }       // "hello"
/// let bytes: [UInt8]? = reply.bytes                 // the exact bytes
/// ```
public enum RESPValue: Sendable, Equatable {
    /// `+OK` and other status replies.
    case simpleString(String)
    /// An error reply (`-ERR ...`, `!...` in RESP3). ``RedisClient/send(_:)`` throws these as ``RedisError``;
    /// inside arrays (pipelines, `EXEC`) they stay values.
    case error(RedisServerError)
    /// `:123`.
    case integer(Int64)
    /// `$5\r\nhello`: exact bytes.
    case bulkString(ByteBuffer)
    /// `$-1`, `*-1` (RESP2) or `_` (RESP3).
    case null
    /// `*N`.
    case array([RESPValue])
    /// RESP3 `,3.14`.
    case double(Double)
    /// RESP3 `#t` / `#f`.
    case boolean(Bool)
    /// RESP3 `(12345678901234567890`, kept as its decimal text.
    case bigNumber(String)
    /// RESP3 `=15\r\ntxt:Some string`: the format (`txt`, `mkd`) and the text.
    case verbatimString(format: String, text: String)
    /// RESP3 `%N`: key/value pairs in the order the server sent them.
    case map([Pair])
    /// RESP3 `~N`.
    case set([RESPValue])
    /// RESP3 `>N`: an out-of-band message (pub/sub, client tracking).
    case push([RESPValue])

    /// A key/value pair of a RESP3 map.
    public struct Pair: Sendable, Equatable {
        public var key: RESPValue
        public var value: RESPValue
        public init(key: RESPValue, value: RESPValue) {
            self.key = key
            self.value = value
        }
    }
}

extension RESPValue {
    /// The value as text (UTF-8), for bulk, simple and verbatim strings, integers, doubles and big numbers; nil otherwise.
    public var string: String? {
        switch self {
        case .bulkString(let b): return String(buffer: b)
        case .simpleString(let s): return s
        case .verbatimString(_, let t): return t
        case .integer(let i): return String(i)
        case .double(let d): return String(d)
        case .bigNumber(let s): return s
        default: return nil
        }
    }

    /// The exact bytes of a bulk or simple string; nil otherwise.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let b): return Array(b.readableBytesView)
        case .simpleString(let s): return Array(s.utf8)
        case .verbatimString(_, let t): return Array(t.utf8)
        default: return nil
        }
    }

    /// The bytes of a bulk string without copying; nil otherwise.
    public var buffer: ByteBuffer? {
        if case .bulkString(let b) = self { return b }
        return nil
    }

    /// The value as an integer: `:N`, or a string holding a decimal integer (`GET` of a counter); nil otherwise.
    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulkString, .simpleString, .bigNumber: return string.flatMap { Int64($0) }
        case .boolean(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// The value as a double: RESP3 doubles, integers, or strings holding a number (`ZSCORE` in RESP2).
    public var double: Double? {
        switch self {
        case .double(let d): return d
        case .integer(let i): return Double(i)
        case .bulkString, .simpleString, .bigNumber:
            guard let s = string else { return nil }
            switch s {
            case "inf", "+inf": return .infinity
            case "-inf": return -.infinity
            default: return Double(s)
            }
        default: return nil
        }
    }

    /// The elements of an array, set or push; nil otherwise (including ``null``).
    public var array: [RESPValue]? {
        switch self {
        case .array(let a), .set(let a), .push(let a): return a
        default: return nil
        }
    }

    /// Key/value pairs from a RESP3 map, or from a RESP2 flat array `[k1, v1, k2, v2, ...]` (`HGETALL`, `CONFIG GET`).
    public var pairs: [Pair]? {
        switch self {
        case .map(let p): return p
        case .array(let a):
            guard a.count % 2 == 0 else { return nil }
            var out: [Pair] = []
            out.reserveCapacity(a.count / 2)
            var i = 0
            while i < a.count {
                out.append(Pair(key: a[i], value: a[i + 1]))
                i += 2
            }
            return out
        default: return nil
        }
    }

    /// Whether this is ``null``.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The server error this value carries, if it is an error reply.
    public var serverError: RedisServerError? {
        if case .error(let e) = self { return e }
        return nil
    }
}

extension RESPValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let s): return "+\(s)"
        case .error(let e): return "-\(e.message)"
        case .integer(let i): return ":\(i)"
        case .bulkString(let b):
            if let s = b.getString(at: b.readerIndex, length: b.readableBytes), s.utf8.count == b.readableBytes {
                return "\"\(s)\""
            }
            return "<\(b.readableBytes) bytes>"
        case .null: return "(nil)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .double(let d): return ",\(d)"
        case .boolean(let b): return b ? "#t" : "#f"
        case .bigNumber(let s): return "(\(s)"
        case .verbatimString(let f, let t): return "\(f):\(t)"
        case .map(let p): return "{" + p.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .set(let a): return "~[" + a.map(\.description).joined(separator: ", ") + "]"
        case .push(let a): return ">[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
