import NIOCore
import Testing
@testable import PolyglotRedis

/// The RESP parser and encoder, fed bytes directly (no server).
@Suite struct RESPTests {
    func parseAll(_ text: String) throws -> [RESPValue] {
        var buffer = ByteBuffer(string: text)
        var out: [RESPValue] = []
        let parser = RESPParser()
        while let v = try parser.next(&buffer) { out.append(v) }
        #expect(buffer.readableBytes == 0)
        return out
    }

    @Test func resp2Types() throws {
        let values = try parseAll("+OK\r\n-WRONGTYPE Operation against a key\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n:1\r\n")
        #expect(values == [
            .simpleString("OK"),
            .error(RedisServerError(message: "WRONGTYPE Operation against a key")),
            .integer(42), .integer(-7),
            .bulkString(ByteBuffer(string: "hello")), .bulkString(ByteBuffer()),
            .null, .null,
            .array([.bulkString(ByteBuffer(string: "a")), .integer(1)]),
        ])
        #expect(values[1].serverError?.code == "WRONGTYPE")
    }

    @Test func resp3Types() throws {
        let values = try parseAll("_\r\n#t\r\n#f\r\n,3.5\r\n,inf\r\n,-inf\r\n(3492890328409238509324850943850943825024385\r\n!21\r\nSYNTAX invalid syntax\r\n=15\r\ntxt:Some string\r\n%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n~2\r\n+x\r\n+y\r\n>3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n|1\r\n+ttl\r\n:3600\r\n:99\r\n")
        #expect(values == [
            .null, .boolean(true), .boolean(false), .double(3.5), .double(.infinity), .double(-.infinity),
            .bigNumber("3492890328409238509324850943850943825024385"),
            .error(RedisServerError(message: "SYNTAX invalid syntax")),
            .verbatimString(format: "txt", text: "Some string"),
            .map([.init(key: .simpleString("a"), value: .integer(1)), .init(key: .simpleString("b"), value: .integer(2))]),
            .set([.simpleString("x"), .simpleString("y")]),
            .push([.simpleString("message"), .simpleString("ch"), .bulkString(ByteBuffer(string: "hi"))]),
            .integer(99),  // the attribute is skipped; the value after it is returned
        ])
        #expect(values[7].serverError?.code == "SYNTAX")
    }

    @Test func binaryBulkStringsKeepEveryByte() throws {
        let payload: [UInt8] = [0, 13, 10, 255, 36, 13, 10, 42]
        var buffer = ByteBuffer(string: "$8\r\n")
        buffer.writeBytes(payload)
        buffer.writeString("\r\n")
        let v = try RESPParser().next(&buffer)
        #expect(v?.bytes == payload)
    }

    /// Every split point of a stream of replies: the parser returns nil until a value is complete, and never
    /// consumes a partial value.
    @Test func incrementalAtEverySplit() throws {
        let text = "*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n$-1\r\n:12\r\n+OK\r\n$4\r\nab\r\n\r\n"
        let expected = try parseAll(text)
        let bytes = Array(text.utf8)
        for split in 0...bytes.count {
            var buffer = ByteBuffer()
            var got: [RESPValue] = []
            let parser = RESPParser()
            buffer.writeBytes(bytes[..<split])
            while let v = try parser.next(&buffer) { got.append(v) }
            buffer.writeBytes(bytes[split...])
            while let v = try parser.next(&buffer) { got.append(v) }
            #expect(got == expected, "split at \(split)")
            #expect(buffer.readableBytes == 0)
        }
    }

    /// The connection's one-pass parse of a read (`parseAll`) gives the same values at every split point, keeps a
    /// partial value's bytes, and stops where its callback says.
    @Test func onePassParseAtEverySplit() throws {
        let text = "*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n$-1\r\n:12\r\n+OK\r\n$4\r\nab\r\n\r\n"
        let expected = try parseAll(text)
        let bytes = Array(text.utf8)
        let parser = RESPParser()
        for split in 0...bytes.count {
            var buffer = ByteBuffer()
            var got: [RESPValue] = []
            buffer.writeBytes(bytes[..<split])
            try parser.parseAll(&buffer) { got.append($0); return true }
            buffer.writeBytes(bytes[split...])
            try parser.parseAll(&buffer) { got.append($0); return true }
            #expect(got == expected, "split at \(split)")
            #expect(buffer.readableBytes == 0)
        }
        var buffer = ByteBuffer(string: text)
        var first: [RESPValue] = []
        try parser.parseAll(&buffer) { first.append($0); return false }
        #expect(first == [expected[0]])
        #expect(try parser.next(&buffer) == expected[1])
        var bad = ByteBuffer(string: ":1\r\n:x\r\n")
        var before: [RESPValue] = []
        #expect(throws: RedisError.self) { try parser.parseAll(&bad) { before.append($0); return true } }
        #expect(before == [.integer(1)])
    }

    @Test func malformedInputIsAProtocolError() {
        for bad in ["?x\r\n", ":12a\r\n", "$3\r\nabcd\r\n", "#x\r\n", "$-5\r\n", "*?\r\n"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: RedisError.self, "\(bad.debugDescription)") { try RESPParser().next(&buffer) }
            do {
                _ = try RESPParser().next(&buffer)
            } catch {
                #expect(error.kind == .protocolViolation)
            }
        }
    }

    @Test func nestingIsBounded() {
        var parser = RESPParser()
        parser.maxDepth = 8
        var buffer = ByteBuffer(string: String(repeating: "*1\r\n", count: 20) + ":1\r\n")
        #expect(throws: RedisError.self) { try parser.next(&buffer) }
    }

    @Test func encodesCommandsAsArraysOfBulkStrings() {
        let c = RedisCommand("SET", "k", [0, 13, 10] as [UInt8], 42, "")
        #expect(String(buffer: c.encoded) == "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\0\r\n\r\n$2\r\n42\r\n$0\r\n\r\n")
        #expect(c.key == Array("k".utf8))
        #expect(c.argumentCount == 5)
        let eval = RedisCommand("EVALSHA", arguments: ["abc", 1, "thekey", "arg"])
        #expect(eval.key == Array("thekey".utf8))
        #expect(RedisCommand("EVAL", arguments: ["return 1", 0]).key == nil)
        #expect(RedisCommand("PING").key == nil)
    }

    @Test func encodesShortCommandsKeptUnencoded() {
        // Commands of up to two arguments are encoded when sent; their bytes must be the same RESP.
        #expect(String(buffer: RedisCommand("PING").encoded) == "*1\r\n$4\r\nPING\r\n")
        #expect(String(buffer: RedisCommand("GET", "k").encoded) == "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        let long = String(repeating: "v", count: 1234)
        #expect(String(buffer: RedisCommand("SET", "key:12345678", long).encoded)
                == "*3\r\n$3\r\nSET\r\n$12\r\nkey:12345678\r\n$1234\r\n\(long)\r\n")
        #expect(String(buffer: RedisCommand("GET", [0, 13, 10] as [UInt8]).encoded) == "*2\r\n$3\r\nGET\r\n$3\r\n\0\r\n\r\n")
        #expect(String(buffer: RedisCommand("INCRBY", "n", 42).encoded) == "*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n$2\r\n42\r\n")
        #expect(String(buffer: RedisCommand("CLIENTNAMEX", "").encoded) == "*2\r\n$11\r\nCLIENTNAMEX\r\n$0\r\n\r\n")
        #expect(RedisCommand("GET", "user:{42}").key == Array("user:{42}".utf8))
        #expect(RedisCommand("PING", "hello").key == nil)
        #expect(RedisCommand("EVALSHA", "abc", 0).key == nil)
        #expect(RedisCommand("SET", "k", "v").argumentCount == 3)
    }

    @Test func sha1MatchesKnownDigests() {
        #expect(SHA1.hex([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(SHA1.hex(Array(String(repeating: "a", count: 1000).utf8)) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }

    @Test func urls() throws {
        let c = try RedisConfiguration(url: "redis://app:s%40cret@10.0.0.1:6380/3?protocol=3&pool=7&name=svc")
        #expect(c.host == "10.0.0.1" && c.port == 6380 && c.username == "app" && c.password == "s@cret" && c.database == 3)
        #expect(c.protocolVersion == .resp3 && c.poolSize == 7 && c.clientName == "svc" && c.tls == nil)
        let p = try RedisConfiguration(url: "redis://:pw@localhost")
        #expect(p.username == nil && p.password == "pw" && p.port == 6379)
        let t = try RedisConfiguration(url: "rediss://[::1]:7000")
        #expect(t.tls != nil && t.host == "::1" && t.port == 7000)
        for bad in ["http://x", "redis://", "redis://h/abc", "redis://u@h", "redis://h?nope=1", "not a url"] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisConfiguration(url: bad) }
        }
    }
}
