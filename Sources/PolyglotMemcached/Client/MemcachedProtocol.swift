import Foundation
import NIOCore

/// An error from the memcached client: what the server answered (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`,
/// `BUSY`) with its message, or what happened to the connection.
///
/// ```swift
/// do { _ = try await client.incr("page:views", by: 1) }
/// catch let e as MemcachedError where e.kind == .clientError { print(e.message) }  // cannot increment ... non-numeric value
/// ```
public struct MemcachedError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// The server answered `ERROR`: it does not know the command.
        case error
        /// `CLIENT_ERROR <message>`: the server refused the request as malformed or inapplicable.
        case clientError
        /// `SERVER_ERROR <message>`: the server could not carry out the request (e.g. object too large, out of memory).
        case serverError
        /// `BUSY <message>`: the LRU crawler is serving another request; retry shortly.
        case busy
        /// The connection could not be opened (refused, unreachable, connect timeout).
        case connectFailed
        /// The connection closed before the answer arrived (server stopped or killed, network failure).
        case connectionClosed
        /// No answer within the command timeout; the connection was closed, failing everything pending on it.
        case timeout
        /// The server sent bytes that do not follow the protocol; the connection was closed.
        case protocolViolation
        /// The client was shut down.
        case closed
        /// A request the client refuses before sending (bad key, value too large).
        case invalidRequest
    }

    public var kind: Kind
    /// The server's message, or a description of what happened.
    public var message: String

    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }

    public var description: String {
        switch kind {
        case .error: "memcached answered ERROR (unknown command)\(message.isEmpty ? "" : ": \(message)")"
        case .clientError: "memcached answered CLIENT_ERROR \(message)"
        case .serverError: "memcached answered SERVER_ERROR \(message)"
        case .busy: "memcached answered BUSY \(message)"
        default: message
        }
    }

    /// Whether the same request may succeed when retried (on a new connection, or once the server is back).
    public var isRetryable: Bool { [.busy, .connectFailed, .connectionClosed, .timeout, .protocolViolation].contains(kind) }
}

/// One item of a `get`/`gets` answer.
public struct MemcachedItem: Sendable, Hashable {
    public var key: String
    public var flags: UInt32
    /// The item's CAS unique, present for `gets`.
    public var cas: UInt64?
    public var value: Data

    public init(key: String, flags: UInt32, cas: UInt64?, value: Data) {
        self.key = key; self.flags = flags; self.cas = cas; self.value = value
    }
}

/// The answer to a meta command (`mg`, `ms`, `md`, `ma`, `mn`).
public struct MemcachedMetaResponse: Sendable, Hashable {
    /// `HD` (done), `VA` (value follows), `EN` (miss), `NS` (not stored), `EX` (CAS mismatch), `NF` (not found), `MN`.
    public var code: String
    /// Returned flags by letter, e.g. `c` → the CAS unique, `t` → remaining TTL in seconds (-1 for none), `f` → client flags.
    public var flags: [Character: String]
    /// The value of a `VA` answer.
    public var value: Data?

    public init(code: String, flags: [Character: String], value: Data?) {
        self.code = code; self.flags = flags; self.value = value
    }

    public var cas: UInt64? { flags["c"].flatMap { UInt64($0) } }
    public var clientFlags: UInt32? { flags["f"].flatMap { UInt32($0) } }
    /// Remaining TTL in seconds; -1 means none.
    public var ttl: Int? { flags["t"].flatMap { Int($0) } }
}

/// A parsed answer from the server.
public enum MemcachedResponse: Sendable, Hashable {
    /// `VALUE ...` blocks up to `END` (get, gets).
    case items([MemcachedItem])
    /// One status line: `STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`, `DELETED`, `TOUCHED`, `OK`, `VERSION x`, or a number (incr/decr).
    case line(String)
    /// A meta command's answer.
    case meta(MemcachedMetaResponse)
    /// Lines up to `END` (stats, lru_crawler metadump), without their line endings.
    case lines([String])
}

/// The shape of answer a request expects, which tells the parser how to frame it.
public enum MemcachedExpect: Sendable, Hashable {
    case items, line, meta, lines
}

/// The response state machine: fed the connection's bytes, it cuts them into answers for the requests
/// pending in order. It consumes only complete pieces, so it can be called again whenever more bytes arrive.
/// Server errors (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`, `BUSY`) are answers too, returned as `.failure`;
/// bytes that break the protocol throw, and the connection must then be closed.
struct MemcachedResponseParser {
    /// Items or lines of a multi-part answer gathered so far.
    private var items: [MemcachedItem] = []
    private var lines: [String] = []
    /// The longest line accepted without a line ending; a longer run means the stream is not memcached's.
    static let maxLineBytes = 64 * 1024
    /// The largest data block a reply may announce: memcached's `-I` item size limit cannot exceed 1 GiB.
    static let maxItemBytes = 1 << 30

    init() {}

    /// The next complete answer for a request expecting `expect`, or `nil` until more bytes arrive.
    mutating func next(_ buffer: inout ByteBuffer, expecting expect: MemcachedExpect) throws(MemcachedError) -> Result<MemcachedResponse, MemcachedError>? {
        while true {
            guard let (line, consumed) = try Self.peekLine(buffer) else { return nil }
            let isFirst = items.isEmpty && lines.isEmpty
            if isFirst, let error = Self.serverError(line, allowBusy: expect == .lines) {
                buffer.moveReaderIndex(forwardBy: consumed)
                return .failure(error)
            }
            switch expect {
            case .line:
                buffer.moveReaderIndex(forwardBy: consumed)
                return .success(.line(line))
            case .meta:
                let tokens = line.split(separator: " ", omittingEmptySubsequences: true)
                guard let code = tokens.first.map(String.init), code.count == 2 else {
                    throw MemcachedError(.protocolViolation, "memcached sent '\(Self.clip(line))' where a meta answer was expected")
                }
                var flags: [Character: String] = [:]
                var rest = tokens.dropFirst()
                var size: Int?
                if code == "VA" {
                    guard let n = rest.first.flatMap({ Int($0) }), n >= 0 else {
                        throw MemcachedError(.protocolViolation, "memcached sent a VA answer without a size: '\(Self.clip(line))'")
                    }
                    size = n
                    rest = rest.dropFirst()
                }
                for t in rest { if let c = t.first { flags[c] = String(t.dropFirst()) } }
                if let size {
                    guard let data = try Self.block(buffer, at: consumed, size: size) else { return nil }
                    buffer.moveReaderIndex(forwardBy: consumed + size + 2)
                    return .success(.meta(MemcachedMetaResponse(code: code, flags: flags, value: data)))
                }
                buffer.moveReaderIndex(forwardBy: consumed)
                return .success(.meta(MemcachedMetaResponse(code: code, flags: flags, value: nil)))
            case .items:
                if line == "END" {
                    buffer.moveReaderIndex(forwardBy: consumed)
                    defer { items = [] }
                    return .success(.items(items))
                }
                let tokens = line.split(separator: " ")
                guard tokens.count >= 4, tokens[0] == "VALUE", let flags = UInt32(tokens[2]), let size = Int(tokens[3]), size >= 0 else {
                    throw MemcachedError(.protocolViolation, "memcached sent '\(Self.clip(line))' where VALUE or END was expected")
                }
                let cas = tokens.count >= 5 ? UInt64(tokens[4]) : nil
                guard let data = try Self.block(buffer, at: consumed, size: size) else { return nil }
                buffer.moveReaderIndex(forwardBy: consumed + size + 2)
                items.append(MemcachedItem(key: String(tokens[1]), flags: flags, cas: cas, value: data))
            case .lines:
                buffer.moveReaderIndex(forwardBy: consumed)
                if line == "END" {
                    defer { lines = [] }
                    return .success(.lines(lines))
                }
                lines.append(line)
            }
        }
    }

    /// The first line in `buffer` (without `\n` or `\r\n`) and how many bytes it takes, or nil when incomplete.
    /// Lines end in `\r\n`, except those of `lru_crawler metadump`, which end in `\n`.
    private static func peekLine(_ buffer: ByteBuffer) throws(MemcachedError) -> (String, Int)? {
        let view = buffer.readableBytesView
        guard let nl = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > maxLineBytes {
                throw MemcachedError(.protocolViolation, "memcached sent \(view.count) bytes without a line ending")
            }
            return nil
        }
        var end = nl
        if end > view.startIndex, view[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        let line = String(decoding: view[view.startIndex..<end], as: UTF8.self)
        return (line, nl - view.startIndex + 1)
    }

    /// `size` data bytes after `offset`, followed by `\r\n`, or nil when not all have arrived.
    private static func block(_ buffer: ByteBuffer, at offset: Int, size: Int) throws(MemcachedError) -> Data? {
        // memcached's item size limit (-I) is at most 1 GiB; a larger size is a broken or hostile reply, which would
        // otherwise overflow the sums below (a trap) or wait for ever for data that never comes.
        guard size <= maxItemBytes else {
            throw MemcachedError(.protocolViolation, "memcached announced a data block of \(size) bytes, above the 1 GiB any item can have")
        }
        guard buffer.readableBytes >= offset + size + 2 else { return nil }
        let view = buffer.readableBytesView
        let start = view.startIndex + offset
        guard view[start + size] == UInt8(ascii: "\r"), view[start + size + 1] == UInt8(ascii: "\n") else {
            throw MemcachedError(.protocolViolation, "memcached's data block of \(size) bytes is not followed by CRLF")
        }
        return Data(view[start..<(start + size)])
    }

    static func serverError(_ line: String, allowBusy: Bool) -> MemcachedError? {
        if line == "ERROR" { return MemcachedError(.error, "") }
        if line.hasPrefix("ERROR ") { return MemcachedError(.error, String(line.dropFirst(6))) }
        if line.hasPrefix("CLIENT_ERROR") { return MemcachedError(.clientError, line.dropFirst(12).trimmingCharacters(in: .whitespaces)) }
        if line.hasPrefix("SERVER_ERROR") { return MemcachedError(.serverError, line.dropFirst(12).trimmingCharacters(in: .whitespaces)) }
        if allowBusy, line.hasPrefix("BUSY") { return MemcachedError(.busy, line.dropFirst(4).trimmingCharacters(in: .whitespaces)) }
        return nil
    }

    static func clip(_ s: String) -> String { s.count > 80 ? String(s.prefix(80)) + "…" : s }
}

/// Builds request bytes. Keys must already be valid memcached keys (see ``MemcachedKey``).
enum MemcachedRequest {
    static func line(_ text: String) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(text.utf8.count + 2)
        b.writeString(text)
        b.writeString("\r\n")
        return b
    }

    static func withData(_ text: String, _ data: Data) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(text.utf8.count + data.count + 4)
        b.writeString(text)
        b.writeString("\r\n")
        b.writeBytes(data)
        b.writeString("\r\n")
        return b
    }
}

/// The response state machine over a byte stream you feed: what the connection handler does, without a network.
/// Useful for tests and for tools that read recorded traffic.
///
/// ```swift
/// var stream = MemcachedResponseStream()
/// stream.append(Array("VA 2 c9\r\nhi\r\n".utf8))
/// let answer = try stream.next(expecting: .meta)   // .success(.meta(code: "VA", flags: ["c": "9"], value: "hi"))
/// ```
public struct MemcachedResponseStream: Sendable {
    private var buffer = ByteBuffer()
    private var parser = MemcachedResponseParser()

    public init() {}

    public mutating func append(_ bytes: [UInt8]) { buffer.writeBytes(bytes) }

    /// The next complete answer for a request expecting `expect`, or nil until more bytes arrive. Throws a
    /// ``MemcachedError/Kind/protocolViolation`` when the bytes break the protocol.
    public mutating func next(expecting expect: MemcachedExpect) throws(MemcachedError) -> Result<MemcachedResponse, MemcachedError>? {
        try parser.next(&buffer, expecting: expect)
    }
}
