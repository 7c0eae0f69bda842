// memcached engine tests: conformance, the client against a real server, bad input, settings.
import Foundation
import Polyglot
import PolyglotMemcached
import PolyglotSQLite
import PolyglotTesting
import Testing

/// The memcached servers `scripts/services/up memcached` starts (scripts/services/start-memcached.sh).
enum MemcachedServers {
    static let mainVariable = "POLYGLOT_TEST_MEMCACHED_URL"
    static let faultVariable = "POLYGLOT_TEST_MEMCACHEDFAULT_URL"
    static var main: String { TestServers.value(mainVariable) }
    static var fault: String { TestServers.value(faultVariable) }

    static var registry: EngineRegistry {
        var r = EngineRegistry.embedded
        r.registerMemcached()
        return r
    }

    /// A fresh key prefix, so checks sharing the server never see each other's keys.
    static func freshPrefix(_ spec: EngineSpec) -> EngineSpec {
        var s = spec
        s.options["keyPrefix"] = "t" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased() + ":"
        return s
    }

    static func engine(_ url: String = main, name: String = "subject", options: [String: String] = [:]) -> EngineSpec {
        freshPrefix(EngineSpec(name: name, kind: "memcached", url: url, options: options))
    }

    /// host and port of a memcached:// URL.
    static func hostPort(_ url: String) throws -> (String, Int) {
        let u = try #require(URLComponents(string: url))
        return (try #require(u.host), try #require(u.port))
    }

    static func client(_ url: String = main, poolSize: Int = 2, commandTimeout: Duration = .seconds(5)) throws -> MemcachedClient {
        let (host, port) = try hostPort(url)
        return MemcachedClient(configuration: .init(host: host, port: port, poolSize: poolSize, connectTimeout: .seconds(2), commandTimeout: commandTimeout))
    }

    /// Runs `scripts/services/memcached-ctl NAME ACTION` and waits for it.
    static func control(_ name: String, _ action: String) async throws {
        try await TestServers.runScript("memcached-ctl", [name, action])
    }
}

let memcachedTarget = ConformanceTarget(name: "memcached (cache over sqlite)", registry: MemcachedServers.registry,
                                        engine: EngineSpec(name: "subject", kind: "memcached", url: MemcachedServers.main),
                                        source: EngineSpec(name: "source", kind: "sqlite", path: ":memory:"),
                                        isolate: MemcachedServers.freshPrefix)

/// Expects a `PolyglotError` with `code` and a fix; returns it.
@discardableResult
func expectPolyglotError(_ code: PolyglotError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> PolyglotError? {
    do {
        try await body()
        Issue.record("expected a \(code) error, but the call succeeded", sourceLocation: sourceLocation)
    } catch let e as PolyglotError {
        #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
        #expect(e.fix != nil, "the error should say what to do: \(e)", sourceLocation: sourceLocation)
        return e
    } catch {
        Issue.record("expected a PolyglotError \(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

@Suite struct MemcachedConformance {
    @Test func serversAreRunning() {
        #expect(!MemcachedServers.main.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.mainVariable)))
        #expect(!MemcachedServers.fault.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.faultVariable)))
    }

    @Test(arguments: ConformanceSuite.checks(for: memcachedTarget))
    func memcached(_ check: ConformanceCheck) async throws {
        try #require(!MemcachedServers.main.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.mainVariable)))
        try await check.run(on: memcachedTarget)
    }

    @Test func everyCapabilityHasChecks() {
        #expect(Set(ConformanceSuite.checks(for: memcachedTarget).map(\.capability)) == [.keyValue, .cache])
    }
}

/// The response parser alone, fed bytes in pieces.
@Suite struct MemcachedParserTests {
    @Test func answersSplitAnywhereParseTheSame() throws {
        let wire = "VALUE k 5 3 77\r\nab\n\r\nVALUE k2 0 7\r\nEND\r\n\r\n\r\nEND\r\nSTORED\r\nVA 2 c9 t-1\r\nhi\r\nEN\r\nkey=a%25b exp=-1 la=1 cas=2\nkey=c exp=9 la=1 cas=3\nEND\r\nSERVER_ERROR object too large for cache\r\n"
        let expects: [MemcachedExpect] = [.items, .line, .meta, .meta, .lines, .line]
        for split in 0...wire.utf8.count {
            let bytes = Array(wire.utf8)
            var stream = MemcachedResponseStream()
            var results: [Result<MemcachedResponse, MemcachedError>] = []
            for chunk in [Array(bytes[..<split]), Array(bytes[split...])] {
                stream.append(chunk)
                while results.count < expects.count, let r = try stream.next(expecting: expects[results.count]) { results.append(r) }
            }
            try #require(results.count == expects.count, "split at \(split)")
            #expect(results[0] == .success(.items([MemcachedItem(key: "k", flags: 5, cas: 77, value: Data("ab\n".utf8)),
                                                   MemcachedItem(key: "k2", flags: 0, cas: nil, value: Data("END\r\n\r\n".utf8))])))
            #expect(results[1] == .success(.line("STORED")))
            #expect(results[2] == .success(.meta(MemcachedMetaResponse(code: "VA", flags: ["c": "9", "t": "-1"], value: Data("hi".utf8)))))
            #expect(results[3] == .success(.meta(MemcachedMetaResponse(code: "EN", flags: [:], value: nil))))
            #expect(results[4] == .success(.lines(["key=a%25b exp=-1 la=1 cas=2", "key=c exp=9 la=1 cas=3"])))
            #expect(results[5] == .failure(MemcachedError(.serverError, "object too large for cache")))
        }
    }

    @Test func serverErrorsAreTyped() throws {
        for (line, kind, message) in [("ERROR", MemcachedError.Kind.error, ""), ("CLIENT_ERROR bad data chunk", .clientError, "bad data chunk"),
                                      ("SERVER_ERROR out of memory storing object", .serverError, "out of memory storing object")] {
            var stream = MemcachedResponseStream()
            stream.append(Array((line + "\r\n").utf8))
            #expect(try stream.next(expecting: .meta) == .failure(MemcachedError(kind, message)))
        }
        var stream = MemcachedResponseStream()
        stream.append(Array("BUSY currently processing crawler request\r\n".utf8))
        #expect(try stream.next(expecting: .lines) == .failure(MemcachedError(.busy, "currently processing crawler request")))
    }

    @Test func brokenStreamsAreProtocolViolations() throws {
        for (wire, expect) in [("VALUE k 0 3\r\nabcd\r\n", MemcachedExpect.items), ("HELLO\r\n", .items), ("VA x\r\n", .meta), ("TOOLONG\r\n", .meta),
                                    // Sizes no item can have: an error, not a trap on `offset + size + 2`, nor a wait for ever.
                                    ("VA 9223372036854775807\r\nab\r\n", .meta), ("VALUE k 0 9223372036854775807\r\nab\r\n", .items),
                                    ("VA 1073741825\r\nab\r\n", .meta)] {
            var stream = MemcachedResponseStream()
            stream.append(Array(wire.utf8))
            #expect(throws: MemcachedError.self, "\(wire)") { _ = try stream.next(expecting: expect) }
        }
    }
}
