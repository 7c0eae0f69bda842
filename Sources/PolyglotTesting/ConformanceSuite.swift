import Foundation
import Polyglot

/// A failed conformance expectation, with what was expected and what the engine did.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public var description: String
}

func expect(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) throws {
    if !condition { throw ConformanceFailure(description: "\(message()) (\(file):\(line))") }
}

func expectError(_ code: PolyglotError.Code, _ what: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as PolyglotError {
        try expect(e.code == code, "\(what): expected error \(code), got \(e.code): \(e)")
        try expect(e.fix != nil, "\(what): the error should say what to do: \(e)")
        return
    }
    throw ConformanceFailure(description: "\(what): expected error \(code), but the call succeeded")
}

/// The engine a conformance run tests: how to create it, and (for cache checks) the source engine behind the cache.
public struct ConformanceTarget: Sendable, CustomStringConvertible {
    public var name: String
    public var registry: EngineRegistry
    /// The engine under test; its name must be `subject`.
    public var engine: EngineSpec
    /// For cache checks: an engine with the documents capability that the cache sits in front of; its name must be `source`.
    public var source: EngineSpec?
    /// Capabilities the kind declares that this server lacks (e.g. `vectors` on PostgreSQL without pgvector).
    public var excluding: Set<Capability>
    /// Gives each check a clean engine, e.g. a fresh schema or key prefix on a shared server.
    public var isolate: @Sendable (EngineSpec) -> EngineSpec

    public init(name: String, registry: EngineRegistry, engine: EngineSpec, source: EngineSpec? = nil,
                excluding: Set<Capability> = [], isolate: @escaping @Sendable (EngineSpec) -> EngineSpec = { $0 }) {
        self.name = name; self.registry = registry; self.engine = engine; self.source = source
        self.excluding = excluding; self.isolate = isolate
    }
    public var description: String { name }
    public var capabilities: Set<Capability> { (registry.capabilities(ofKind: engine.kind) ?? []).subtracting(excluding) }
}

/// One named check of the conformance suite.
public struct ConformanceCheck: Sendable, CustomStringConvertible {
    public var capability: Capability
    public var name: String
    let datasets: @Sendable () -> [DatasetSpec]
    let body: @Sendable (Polyglot) async throws -> Void
    public var description: String { "\(capability.rawValue): \(name)" }

    init(_ capability: Capability, _ name: String, datasets: @escaping @Sendable () -> [DatasetSpec],
         _ body: @escaping @Sendable (Polyglot) async throws -> Void) {
        self.capability = capability; self.name = name; self.datasets = datasets; self.body = body
    }

    /// Opens a fresh `Polyglot` on the target with this check's datasets, runs the check, and closes it.
    public func run(on target: ConformanceTarget) async throws {
        var engines = [target.isolate(target.engine)]
        if let s = target.source { engines.append(s) }
        let db = try await Polyglot(map: DataMap(engines: engines, datasets: datasets()), registry: target.registry)
        do {
            try await body(db)
            try await db.close()
        } catch {
            try? await db.close()
            throw error
        }
    }
}

/// The one conformance suite every engine runs for each capability it claims. A third-party engine passes
/// it by building a ``ConformanceTarget`` and running every check in ``checks(for:)``.
///
/// ```swift
/// @Test(arguments: ConformanceSuite.checks(for: target))
/// func conformance(_ check: ConformanceCheck) async throws { try await check.run(on: target) }
/// ```
public enum ConformanceSuite {
    public static var all: [ConformanceCheck] {
        documentChecks + keyValueChecks + vectorChecks + searchChecks + graphChecks + timeSeriesChecks + tableChecks + cacheChecks + transactionChecks
    }

    /// The checks for every capability the target's engine declares.
    public static func checks(for target: ConformanceTarget) -> [ConformanceCheck] {
        let caps = target.capabilities
        return all.filter { check in
            if check.capability == .cache { return caps.contains(.cache) && target.source != nil }
            return caps.contains(check.capability)
        }
    }
}
