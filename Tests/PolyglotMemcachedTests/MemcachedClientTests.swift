// The memcached client against the real server: commands, pipelining, typed server errors.
import Foundation
import PolyglotMemcached
import PolyglotTesting
import Testing

@Suite struct MemcachedClientTests {
    func client(poolSize: Int = 2) throws -> MemcachedClient {
        try #require(!MemcachedServers.main.isEmpty, Comment(rawValue: TestServers.missing(MemcachedServers.mainVariable)))
        return try MemcachedServers.client(poolSize: poolSize)
    }

    func key(_ name: String) -> String { "ct" + UUID().uuidString.prefix(8).lowercased() + ":" + name }

    @Test func classicCommands() async throws {
        let mc = try client()
        defer { Task { await mc.shutdown() } }
        #expect(try await mc.version().hasPrefix("1.6"))
        let k = key("a")
        #expect(try await mc.get(k) == nil)
        #expect(try await mc.set(k, Data("one".utf8), flags: 7) == .stored)
        let item = try #require(try await mc.gets(k))
        #expect(item.value == Data("one".utf8) && item.flags == 7 && item.cas != nil)
        #expect(try await mc.add(k, Data("x".utf8)) == .notStored)
        #expect(try await mc.cas(k, Data("two".utf8), cas: try #require(item.cas)) == .stored)
        #expect(try await mc.cas(k, Data("three".utf8), cas: try #require(item.cas)) == .exists, "a stale CAS must not store")
        #expect(try await mc.get(k)?.value == Data("two".utf8))
        #expect(try await mc.touch(k, exptime: 100))
        #expect(try await mc.delete(k))
        #expect(try await !mc.delete(k))
        #expect(try await !mc.touch(k, exptime: 100))
        #expect(try await mc.cas(k, Data("x".utf8), cas: 1) == .notFound)
        let n = key("n")
        #expect(try await mc.incr(n, by: 1) == nil, "incr of a missing key is NOT_FOUND")
        try await mc.set(n, Data("41".utf8))
        #expect(try await mc.incr(n, by: 1) == 42)
        #expect(try await mc.incr(n, by: -50) == 0, "memcached's decr stops at 0")
        let multi = try await mc.gets([n, k, key("none")])
        #expect(multi.map(\.key) == [n])
        // Binary values with CRLF and empty values round-trip.
        let b = key("bin")
        let bytes = Data([0, 13, 10, 255, 13, 10, 69, 78, 68, 13, 10])
        try await mc.set(b, bytes)
        #expect(try await mc.get(b)?.value == bytes)
        try await mc.set(b, Data())
        #expect(try await mc.get(b)?.value == Data())
    }

    @Test func metaCommands() async throws {
        let mc = try client()
        defer { Task { await mc.shutdown() } }
        let k = key("m")
        #expect(try await mc.metaGet(k, flags: ["v"]).code == "EN")
        let set = try await mc.metaSet(k, Data("v1".utf8), flags: ["T60", "F3", "c"])
        #expect(set.code == "HD" && set.cas != nil)
        let got = try await mc.metaGet(k, flags: ["v", "c", "t", "f"])
        #expect(got.code == "VA" && got.value == Data("v1".utf8) && got.cas == set.cas && got.clientFlags == 3)
        #expect((got.ttl ?? 0) > 50)
        #expect(try await mc.metaSet(k, Data("v2".utf8), flags: ["ME"]).code == "NS", "add mode on an existing key")
        #expect(try await mc.metaSet(k, Data("v2".utf8), flags: ["C\(try #require(set.cas) + 1000)"]).code == "EX")
        #expect(try await mc.metaDelete(k, flags: ["C\(try #require(set.cas))"]).code == "HD")
        #expect(try await mc.metaDelete(k).code == "NF")
    }

    @Test func serverErrorsAreTypedWithTheServersMessage() async throws {
        let mc = try client()
        defer { Task { await mc.shutdown() } }
        let k = key("text")
        try await mc.set(k, Data("hello".utf8))
        await #expect(throws: MemcachedError(.clientError, "cannot increment or decrement non-numeric value")) { _ = try await mc.incr(k, by: 1) }
        await #expect(throws: MemcachedError(.error, "")) { _ = try await mc.send("no_such_command", expect: .line) }
        let big = key("big")
        try await mc.set(big, Data("small".utf8))
        await #expect(throws: MemcachedError(.serverError, "object too large for cache")) { try await mc.set(big, Data(count: 2 << 20)) }
        // The connection stays usable after each error.
        #expect(try await mc.get(k)?.value == Data("hello".utf8))
        // Keys memcached cannot take are refused before sending.
        for bad in ["", "has space", "line\r\nbreak", String(repeating: "k", count: 251)] {
            await #expect(throws: MemcachedError.self) { _ = try await mc.get(bad) }
        }
    }

    @Test func concurrentRequestsPipelineOnOneConnection() async throws {
        let mc = try client(poolSize: 1)
        defer { Task { await mc.shutdown() } }
        let prefix = key("p")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<500 {
                group.addTask {
                    let k = "\(prefix):\(i)"
                    let value = Data(String(repeating: "\(i),", count: i % 50).utf8)
                    try await mc.set(k, value)
                    let back = try await mc.get(k)
                    #expect(back?.value == value, "request \(i) got another request's answer")
                }
            }
            try await group.waitForAll()
        }
        let stats = try await mc.stats()
        #expect(Int(stats["curr_connections"] ?? "") != nil)
    }

    @Test func keyListingFindsWhatWasWritten() async throws {
        let mc = try client()
        defer { Task { await mc.shutdown() } }
        let prefix = key("dump")
        for i in 0..<20 { try await mc.set("\(prefix):\(i)", Data("x".utf8), exptime: i == 0 ? 0 : 600) }
        let keys = try await mc.dumpKeys().filter { $0.key.hasPrefix(prefix) }
        #expect(keys.count == 20)
        #expect(keys.first { $0.key == "\(prefix):0" }?.expiresAt == nil)
        #expect(keys.first { $0.key == "\(prefix):1" }?.expiresAt != nil)
    }
}
