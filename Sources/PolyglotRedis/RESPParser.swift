import NIOCore

/// An incremental RESP2/RESP3 parser: feed it the bytes received so far; ``next(_:)`` returns one complete
/// value and consumes its bytes, or nil (consuming nothing) when the value is not complete yet.
///
/// ```swift
/// var parser = RESPParser()
/// var buffer = ByteBuffer(string: "+OK\r\n:4")
/// try parser.next(&buffer)   // .simpleString("OK")
/// try parser.next(&buffer)   // nil: ":4" lacks its CRLF
/// ```
public struct RESPParser: Sendable {
    /// Deepest nesting of arrays/maps accepted (a guard against hostile input).
    public var maxDepth: Int = 512
    /// Longest bulk string accepted (Redis' own limit, proto-max-bulk-len, defaults to 512 MB).
    public var maxBulkLength: Int = 512 * 1024 * 1024

    public init() {}

    /// Parses one value from the front of `buffer`, or returns nil if more bytes are needed.
    /// Throws ``RedisError`` (``RedisError/Kind/protocolViolation``) on bytes that are not RESP.
    public func next(_ buffer: inout ByteBuffer) throws(RedisError) -> RESPValue? {
        guard buffer.readableBytes > 0 else { return nil }
        let view = buffer
        let base = view.readerIndex
        let result: Result<(RESPValue, Int)?, RedisError> = view.withUnsafeReadableBytes { bytes in
            var cursor = Cursor(bytes: bytes, view: view, base: base, parser: self)
            do throws(RedisError) {
                guard let value = try cursor.value(depth: 0) else { return .success(nil) }
                return .success((value, cursor.index))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(.some(let (value, consumed))):
            buffer.moveReaderIndex(forwardBy: consumed)
            return value
        case .success(.none):
            return nil
        case .failure(let e):
            throw e
        }
    }

    /// Parses every complete value at the front of `buffer`, in order, handing each to `body`, and consumes their
    /// bytes; an incomplete value at the end stays in the buffer. `body` returns false to stop after a value.
    /// (One pass over the bytes for a whole read, where ``next(_:)`` starts over for each value.)
    func parseAll(_ buffer: inout ByteBuffer, _ body: (RESPValue) -> Bool) throws(RedisError) {
        guard buffer.readableBytes > 0 else { return }
        let view = buffer
        let base = view.readerIndex
        var consumed = 0
        var failure: RedisError?
        view.withUnsafeReadableBytes { bytes in
            var cursor = Cursor(bytes: bytes, view: view, base: base, parser: self)
            do throws(RedisError) {
                while cursor.index < bytes.count {
                    guard let value = try cursor.value(depth: 0) else { break }
                    consumed = cursor.index
                    if !body(value) { break }
                }
            } catch {
                failure = error
            }
        }
        buffer.moveReaderIndex(forwardBy: consumed)
        if let failure { throw failure }
    }

    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        let view: ByteBuffer
        let base: Int
        let parser: RESPParser
        var index = 0

        init(bytes: UnsafeRawBufferPointer, view: ByteBuffer, base: Int, parser: RESPParser) {
            self.bytes = bytes
            self.view = view
            self.base = base
            self.parser = parser
        }

        static func violation(_ what: String) -> RedisError {
            RedisError(.protocolViolation, "The server sent bytes that are not RESP: \(what).",
                       fix: "Check that the address is a Redis server (not TLS-only, not another protocol).")
        }

        /// The end (index of CR) of the line starting at `index`, or nil when the CRLF has not arrived.
        func lineEnd(from start: Int) -> Int? {
            var i = start
            let n = bytes.count
            while i + 1 < n {
                if bytes[i] == 13, bytes[i + 1] == 10 { return i }
                i += 1
            }
            return nil
        }

        func integer(_ start: Int, _ end: Int) throws(RedisError) -> Int64 {
            var i = start
            var negative = false
            if i < end, bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 }
            else if i < end, bytes[i] == UInt8(ascii: "+") { i += 1 }
            guard i < end else { throw Cursor.violation("an empty integer") }
            var v: Int64 = 0
            while i < end {
                let d = bytes[i] &- 48
                guard d < 10 else { throw Cursor.violation("a malformed integer") }
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(d))
                guard !o1, !o2 else { throw Cursor.violation("an integer out of range") }
                v = a
                i += 1
            }
            return negative ? -v : v
        }

        func text(_ start: Int, _ end: Int) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }

        /// Reads a line after the type byte; returns its [start, end) or nil if incomplete. Advances past CRLF.
        mutating func line() -> (Int, Int)? {
            let start = index + 1
            guard let end = lineEnd(from: start) else { return nil }
            index = end + 2
            return (start, end)
        }

        /// Reads `length` bytes plus CRLF at `index`; returns the start or nil if incomplete.
        mutating func blob(_ length: Int) throws(RedisError) -> Int? {
            let start = index
            guard bytes.count - start >= length + 2 else { return nil }
            guard bytes[start + length] == 13, bytes[start + length + 1] == 10 else {
                throw Cursor.violation("a bulk string not followed by CRLF")
            }
            index = start + length + 2
            return start
        }

        mutating func length(_ start: Int, _ end: Int, allowNull: Bool) throws(RedisError) -> Int? {
            if end - start == 1, bytes[start] == UInt8(ascii: "?") {
                throw Cursor.violation("a streamed RESP3 aggregate (not supported)")
            }
            let n = try integer(start, end)
            if n == -1, allowNull { return -1 }
            guard n >= 0 else { throw Cursor.violation("a negative length \(n)") }
            guard n <= Int64(parser.maxBulkLength) else { throw Cursor.violation("a length of \(n) (over the limit)") }
            return Int(n)
        }

        mutating func value(depth: Int) throws(RedisError) -> RESPValue? {
            guard index < bytes.count else { return nil }
            guard depth <= parser.maxDepth else { throw Cursor.violation("nesting deeper than \(parser.maxDepth)") }
            let type = bytes[index]
            switch type {
            case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
                guard let (s, e) = line() else { return nil }
                guard let n = try length(s, e, allowNull: type == UInt8(ascii: "$")) else { return nil }
                if n == -1 { return .null }
                guard let start = try blob(n) else { return nil }
                if type == UInt8(ascii: "$") {
                    guard let slice = view.getSlice(at: base + start, length: n) else { throw Cursor.violation("a truncated bulk string") }
                    return .bulkString(slice)
                }
                if type == UInt8(ascii: "!") {
                    return .error(RedisServerError(message: text(start, start + n)))
                }
                guard n >= 4, bytes[start + 3] == UInt8(ascii: ":") else { throw Cursor.violation("a verbatim string without a format") }
                return .verbatimString(format: text(start, start + 3), text: text(start + 4, start + n))
            case UInt8(ascii: "+"):
                guard let (s, e) = line() else { return nil }
                if e - s == 2, bytes[s] == UInt8(ascii: "O"), bytes[s + 1] == UInt8(ascii: "K") { return .simpleString("OK") }
                return .simpleString(text(s, e))
            case UInt8(ascii: "-"):
                guard let (s, e) = line() else { return nil }
                return .error(RedisServerError(message: text(s, e)))
            case UInt8(ascii: ":"):
                guard let (s, e) = line() else { return nil }
                return .integer(try integer(s, e))
            case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
                guard let (s, e) = line() else { return nil }
                guard let n = try length(s, e, allowNull: type == UInt8(ascii: "*")) else { return nil }
                if n == -1 { return .null }
                var items: [RESPValue] = []
                items.reserveCapacity(Swift.min(n, 1024))
                for _ in 0..<n {
                    guard let v = try value(depth: depth + 1) else { return nil }
                    items.append(v)
                }
                switch type {
                case UInt8(ascii: "*"): return .array(items)
                case UInt8(ascii: "~"): return .set(items)
                default: return .push(items)
                }
            case UInt8(ascii: "%"), UInt8(ascii: "|"):
                guard let (s, e) = line() else { return nil }
                guard let n = try length(s, e, allowNull: false) else { return nil }
                var pairs: [RESPValue.Pair] = []
                pairs.reserveCapacity(Swift.min(n, 1024))
                for _ in 0..<n {
                    guard let k = try value(depth: depth + 1) else { return nil }
                    guard let v = try value(depth: depth + 1) else { return nil }
                    pairs.append(RESPValue.Pair(key: k, value: v))
                }
                if type == UInt8(ascii: "|") {
                    // Attributes describe the value that follows; we return that value.
                    return try value(depth: depth)
                }
                return .map(pairs)
            case UInt8(ascii: "_"):
                guard let (s, e) = line() else { return nil }
                guard s == e else { throw Cursor.violation("a null with a payload") }
                return .null
            case UInt8(ascii: "#"):
                guard let (s, e) = line() else { return nil }
                guard e - s == 1 else { throw Cursor.violation("a malformed boolean") }
                switch bytes[s] {
                case UInt8(ascii: "t"): return .boolean(true)
                case UInt8(ascii: "f"): return .boolean(false)
                default: throw Cursor.violation("a malformed boolean")
                }
            case UInt8(ascii: ","):
                guard let (s, e) = line() else { return nil }
                let t = text(s, e)
                switch t {
                case "inf", "+inf": return .double(.infinity)
                case "-inf": return .double(-.infinity)
                case "nan", "-nan": return .double(.nan)
                default:
                    guard let d = Double(t) else { throw Cursor.violation("a malformed double '\(t)'") }
                    return .double(d)
                }
            case UInt8(ascii: "("):
                guard let (s, e) = line() else { return nil }
                return .bigNumber(text(s, e))
            default:
                throw Cursor.violation("an unknown type byte 0x\(String(type, radix: 16))")
            }
        }
    }
}
