import Foundation
import Polyglot
import PolyglotPostgres
import PolyglotTesting
import Testing

/// The PostgreSQL servers scripts/services/up starts (scripts/test does it); their URLs come from the environment.
enum PGServers {
    static func url(_ variable: String) -> String { TestServers.value(variable) }
    static var pg15: String { url("POLYGLOT_TEST_PG15_URL") }
    static var pg15Replica: String { url("POLYGLOT_TEST_PG15_REPLICA_URL") }
    static var pg18: String { url("POLYGLOT_TEST_PG18_URL") }
    /// A database of its own on pg15 / pg18 for tests that make capture slots: PostgreSQL cannot decode a slot made
    /// while another session creates tables and writes to them (docs/postgres.md, "Limits"), and the other tests'
    /// migrations and partitions run in `postgres` all the time.
    static var pg15Capture: String { url("POLYGLOT_TEST_PG15_CAPTURE_URL") }
    static var pg18Capture: String { url("POLYGLOT_TEST_PG18_CAPTURE_URL") }

    static var registry: EngineRegistry {
        var r = EngineRegistry.builtIn
        r.registerPostgres()
        return r
    }

    /// A fresh schema per use, so checks that reuse dataset names never see each other's rows.
    static func freshSchema(_ spec: EngineSpec) -> EngineSpec {
        var s = spec
        s.options["schema"] = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        return s
    }

    static func engine(_ url: String, options: [String: String] = [:]) -> EngineSpec {
        freshSchema(EngineSpec(name: "subject", kind: "postgres", url: url, options: options))
    }
}

let pg15Target = ConformanceTarget(name: "postgres 15", registry: PGServers.registry,
                                   engine: EngineSpec(name: "subject", kind: "postgres", url: PGServers.pg15),
                                   excluding: [.vectors], isolate: PGServers.freshSchema)
let pg18Target = ConformanceTarget(name: "postgres 18 + pgvector", registry: PGServers.registry,
                                   engine: EngineSpec(name: "subject", kind: "postgres", url: PGServers.pg18),
                                   isolate: PGServers.freshSchema)

@Suite struct PostgresConformance {
    @Test func serversAreRunning() {
        for (name, url) in [("POLYGLOT_TEST_PG15_URL", PGServers.pg15), ("POLYGLOT_TEST_PG18_URL", PGServers.pg18),
                            ("POLYGLOT_TEST_PG15_REPLICA_URL", PGServers.pg15Replica),
                            ("POLYGLOT_TEST_PG15_CAPTURE_URL", PGServers.pg15Capture), ("POLYGLOT_TEST_PG18_CAPTURE_URL", PGServers.pg18Capture)] {
            #expect(!url.isEmpty, Comment(rawValue: TestServers.missing(name)))
        }
    }

    @Test(arguments: ConformanceSuite.checks(for: pg15Target))
    func postgres15(_ check: ConformanceCheck) async throws { try await check.run(on: pg15Target) }

    @Test(arguments: ConformanceSuite.checks(for: pg18Target))
    func postgres18(_ check: ConformanceCheck) async throws { try await check.run(on: pg18Target) }

    @Test func everyCapabilityHasChecks() {
        #expect(Set(ConformanceSuite.checks(for: pg18Target).map(\.capability)) == [.documents, .keyValue, .vectors, .search, .graph, .timeSeries, .table, .transactions])
        #expect(!ConformanceSuite.checks(for: pg15Target).contains { $0.capability == .vectors })
    }
}
