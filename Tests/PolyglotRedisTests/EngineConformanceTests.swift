import Foundation
import Polyglot
import PolyglotRedis
import PolyglotSQLite
import PolyglotTesting
import Testing

/// Builds Redis engine specs for tests: each use gets its own key prefix on the shared test server.
enum RedisEngineFixture {
    static var registry: EngineRegistry {
        var r = EngineRegistry.embedded
        r.registerRedis()
        return r
    }

    static func freshPrefix(_ spec: EngineSpec) -> EngineSpec {
        var s = spec
        s.options["keyPrefix"] = "t" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12) + ":"
        return s
    }

    /// A `subject` engine on `url` (the main server by default) with a fresh key prefix.
    static func engine(_ url: String? = RedisServers.main, name: String = "subject", options: [String: String] = [:]) -> EngineSpec {
        freshPrefix(EngineSpec(name: name, kind: "redis", url: url ?? "", options: options))
    }

    static var sqliteSource: EngineSpec { EngineSpec(name: "source", kind: "sqlite", path: ":memory:") }
}

let redisKeyValueTarget = ConformanceTarget(name: "redis", registry: RedisEngineFixture.registry,
                                            engine: EngineSpec(name: "subject", kind: "redis", url: RedisServers.main ?? ""),
                                            isolate: RedisEngineFixture.freshPrefix)
let redisCacheTarget = ConformanceTarget(name: "redis cache over sqlite", registry: RedisEngineFixture.registry,
                                         engine: EngineSpec(name: "subject", kind: "redis", url: RedisServers.main ?? ""),
                                         source: RedisEngineFixture.sqliteSource, isolate: RedisEngineFixture.freshPrefix)

@Suite struct RedisEngineConformance {
    @Test func serverIsRunning() throws {
        _ = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
    }

    @Test(arguments: ConformanceSuite.checks(for: redisCacheTarget))
    func redis(_ check: ConformanceCheck) async throws {
        _ = try #require(RedisServers.main, Comment(rawValue: TestServers.missing(RedisServers.mainVariable)))
        try await check.run(on: redisCacheTarget)
    }

    @Test func everyCapabilityHasChecks() {
        #expect(Set(ConformanceSuite.checks(for: redisCacheTarget).map(\.capability)) == [.keyValue, .cache])
        #expect(Set(ConformanceSuite.checks(for: redisKeyValueTarget).map(\.capability)) == [.keyValue])
    }
}
