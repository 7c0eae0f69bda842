import Foundation
import Polyglot
import PolyglotSQLite
import PolyglotTesting
import Testing

let sqliteTarget = ConformanceTarget(name: "sqlite", registry: .embedded, engine: EngineSpec(name: "subject", kind: "sqlite", path: ":memory:"))
let memoryCacheTarget = ConformanceTarget(name: "memory cache over sqlite", registry: .embedded,
                                          engine: EngineSpec(name: "subject", kind: "memory"),
                                          source: EngineSpec(name: "source", kind: "sqlite", path: ":memory:"))

@Suite struct SQLiteConformance {
    @Test(arguments: ConformanceSuite.checks(for: sqliteTarget))
    func sqlite(_ check: ConformanceCheck) async throws { try await check.run(on: sqliteTarget) }

    @Test(arguments: ConformanceSuite.checks(for: memoryCacheTarget))
    func memory(_ check: ConformanceCheck) async throws { try await check.run(on: memoryCacheTarget) }

    @Test func everyCapabilityHasChecks() {
        let covered = Set(ConformanceSuite.checks(for: sqliteTarget).map(\.capability))
        #expect(covered == [.documents, .keyValue, .vectors, .search, .graph, .timeSeries, .table, .transactions])
        #expect(Set(ConformanceSuite.checks(for: memoryCacheTarget).map(\.capability)) == [.keyValue, .cache])
    }
}
