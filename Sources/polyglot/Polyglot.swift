import ArgumentParser
import Foundation
import Logging
import Polyglot
import PolyglotSQLite
import ServiceLifecycle
import UnixSignals

@main
struct PolyglotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "polyglot",
        abstract: "Polyglot: one application, many specialized databases.",
        subcommands: [Serve.self, Keys.self, Quickstart.self, MapCommand.self, Stats.self, Health.self, RelayCommand.self, VerifyCommand.self,
                      RebuildCommand.self, AdviseCommand.self, PlanCommand.self, AuditCommand.self],
        defaultSubcommand: nil
    )
}

struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The data map. Defaults to ./polyglot.yml, then ./polyglot-data/polyglot.yml.")
    var config: String?

    @Flag(name: .shortAndLong, help: "Log engine activity to standard error.")
    var verbose = false

    func path() throws -> String {
        if let config { return config }
        for candidate in ["polyglot.yml", "polyglot-data/polyglot.yml"] where FileManager.default.fileExists(atPath: candidate) {
            return candidate
        }
        throw ValidationError("No data map found (looked for ./polyglot.yml and ./polyglot-data/polyglot.yml). Run `polyglot quickstart` to create one, or pass --config.")
    }

    func bootstrapLogging() { Self.bootstrapLogging(verbose: verbose) }

    static func bootstrapLogging(verbose: Bool) {
        let level: Logger.Level = verbose ? .debug : .warning
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }

    func open() async throws -> Polyglot {
        bootstrapLogging()
        return try await Polyglot(map: DataMap(contentsOf: try path()), registry: .cli)
    }
}

/// Runs `body` and turns a PolyglotError into a clean message and exit code instead of a stack of types.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do { try await body() } catch let e as PolyglotError {
        FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
        throw ExitCode(2)
    }
}

struct MapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "map", abstract: "Print the data map: datasets, models, engines and projections.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        try await reportingErrors {
            let path = try options.path()
            let map = try DataMap(contentsOf: path)
            try map.validate(registry: .cli)
            print("Data map \(path)\n")
            print(TextTable.render(header: ["engine", "kind", "location"], rows: map.engines.map {
                [$0.name, $0.kind, $0.path ?? $0.url ?? "in-process"]
            }))
            print("")
            print(TextTable.render(header: ["dataset", "model", "engine", "projections"], rows: map.datasets.map { ds in
                [ds.name, ds.model.rawValue, ds.engine,
                 ds.projections.isEmpty ? "-" : ds.projections.map { "\($0.kind.rawValue)→\($0.engine)" }.joined(separator: ", ")]
            }))
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the telemetry history persisted in the data map's primary engine.")
    @OptionGroup var options: ConfigOptions
    @Option(help: "Only the last N minutes.") var minutes: Int?

    func run() async throws {
        try await reportingErrors {
            let db = try await options.open()
            let since = minutes.map { Date().addingTimeInterval(-Double($0) * 60) } ?? .distantPast
            let records = try await db.telemetryHistory(since: since)
            let relay = db.relay()
            let backlog: [RelayBacklog]
            do { backlog = try await relay.backlog() } catch {
                try? await db.close()
                throw error
            }
            try await db.close()
            if records.isEmpty {
                print("No telemetry recorded yet. Run `polyglot quickstart`, or use the data map from your application.")
            } else {
                let first = records.map(\.intervalStart).min()!, last = records.map(\.intervalEnd).max()!
                print("Telemetry from \(first.formatted(date: .abbreviated, time: .standard)) to \(last.formatted(date: .abbreviated, time: .standard)) (\(records.count) intervals)\n")
                print(TelemetryTable.render(Telemetry.summarize(records)))
            }
            if !backlog.isEmpty {
                print("\nProjections kept by the relay\n")
                print(TextTable.render(header: ["copy", "checkpoint", "pending events", "dead letters"], rows: backlog.map {
                    [$0.copy, String($0.appliedPosition), ($0.pendingAtLeast ? "≥ " : "") + String($0.pendingEvents), String($0.deadLetters)]
                }, rightAligned: [1, 2, 3]))
            }
        }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open every engine of the data map and probe it.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        try await reportingErrors {
            let db = try await options.open()
            let report = await db.health()
            try await db.close()
            print(TextTable.render(header: ["engine", "status", "latency"], rows: report.map {
                [$0.engine, $0.ok ? "ok" : "DOWN: \($0.error ?? "")", TelemetryTable.format($0.latency)]
            }))
            if report.contains(where: { !$0.ok }) { throw ExitCode(1) }
        }
    }
}

struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Apply the outbox to projections placed on other engines than their datasets', until interrupted (or once).",
        discussion: "Several relays may run at once (in applications and as this command): a lease per copy decides which one applies it.")
    @OptionGroup var options: ConfigOptions
    @Flag(help: "Apply everything committed so far, print where each copy stands, and exit.") var once = false
    @Option(help: "This relay's identity in leases (default: host:pid:random).") var holder: String?
    @Option(help: "Seconds between progress lines while running.") var every: Int = 10

    func run() async throws {
        try await reportingErrors {
            let db = try await options.open()
            var relayOptions = RelayOptions()
            if let holder { relayOptions.holder = holder }
            let relay = db.relay(relayOptions)
            if relay.copies.isEmpty {
                print("Nothing to relay: no dataset has a projection on another engine than its own.")
                try await db.close()
                return
            }
            print("Relaying \(relay.copies.map(\.name).joined(separator: ", ")) as \(relayOptions.holder)")
            if once {
                let n = try await relay.catchUp()
                print("Read \(n) events.\n")
                printStatus(relay)
                await relay.release()
                try await db.close()
                return
            }
            let logger = Logger(label: "polyglot.relay")
            let progress = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(max(1, every)))
                    let s = relay.status()
                    print(s.map { "\($0.copy): position \($0.appliedPosition), \($0.applied) applied, \($0.deadLetters) dead letters\($0.leader ? "" : " (another relay leads)")\($0.lastError.map { ", last error: \($0)" } ?? "")" }.joined(separator: "; "))
                }
            }
            let group = ServiceGroup(configuration: .init(services: [relay], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            progress.cancel()
            printStatus(relay)
            try await db.close()
        }
    }

    func printStatus(_ relay: Relay) {
        print(TextTable.render(header: ["copy", "leader", "applied position", "applied", "dead letters", "last error"], rows: relay.status().map {
            [$0.copy, $0.leader ? "yes" : "no", "\($0.appliedPosition)", "\($0.applied)", "\($0.deadLetters)", $0.lastError ?? "-"]
        }, rightAligned: [2, 3, 4]))
    }
}

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare each projection copy on another engine with its source: missing, stale and orphaned documents.",
        discussion: "Changes still on their way through the relay show up as differences; verify after `polyglot relay --once`, or run it twice.")
    @OptionGroup var options: ConfigOptions
    @Argument(help: "Only this copy (dataset@engine) or dataset.") var target: String?
    @Flag(help: "Fix the differences from the source.") var repair = false

    func run() async throws {
        try await reportingErrors {
            let db = try await options.open()
            let relay = db.relay()
            let name: String?
            do { name = try target.map { try relay.copyName(for: $0, kinds: [.documents]) } } catch {
                try await db.close()
                throw error
            }
            let reports = try await relay.verify(name, repair: repair) { copy, checked, total in
                FileHandle.standardError.write(Data("\r\(copy): checked \(checked) of \(total)".utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            try await db.close()
            if reports.isEmpty { print("Nothing to verify: no dataset has a projection on another engine than its own.") }
            for r in reports { print(r.description) }
            if reports.contains(where: { !$0.isClean && !$0.repaired }) { throw ExitCode(1) }
        }
    }
}

enum TextTable {
    static func render(header: [String], rows: [[String]], rightAligned: Set<Int> = []) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return rightAligned.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ")
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line)).joined(separator: "\n")
    }
}

enum TelemetryTable {
    static func format(_ d: Duration) -> String {
        let ns = Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9
        if ns < 1_000 { return String(format: "%.0f ns", ns) }
        if ns < 1_000_000 { return String(format: "%.1f µs", ns / 1e3) }
        if ns < 1_000_000_000 { return String(format: "%.2f ms", ns / 1e6) }
        return String(format: "%.2f s", ns / 1e9)
    }

    static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n) B" }
        if n < 1 << 20 { return String(format: "%.1f KiB", Double(n) / 1024) }
        return String(format: "%.1f MiB", Double(n) / Double(1 << 20))
    }

    static func render(_ entries: [TelemetrySnapshot.Entry]) -> String {
        var out = TextTable.render(
            header: ["dataset", "engine", "operation", "count", "errors", "p50", "p95", "p99", "max", "rows", "bytes"],
            rows: entries.map { e in
                [e.key.dataset, e.key.engine, e.key.operation, "\(e.stats.count)", "\(e.stats.errors)",
                 format(e.p50), format(e.p95), format(e.p99), format(e.max), "\(e.stats.rows)", bytes(e.stats.bytes)]
            },
            rightAligned: Set(3...10))
        let datasets = Set(entries.map(\.key.dataset)).sorted()
        var cacheLines: [String] = []
        for ds in datasets {
            let hits = entries.filter { $0.key.dataset == ds && $0.key.operation == "cache.hit" }.reduce(0) { $0 + $1.stats.count }
            let misses = entries.filter { $0.key.dataset == ds && $0.key.operation == "cache.miss" }.reduce(0) { $0 + $1.stats.count }
            guard hits + misses > 0 else { continue }
            let rate = Double(hits) / Double(hits + misses) * 100
            cacheLines.append(String(format: "  %@: %.1f%% of %llu reads hit the cache%@", ds, rate, hits + misses,
                                     rate < 80 ? " (below the 80% target: revisit the TTL or what is cached)" : ""))
        }
        if !cacheLines.isEmpty { out += "\n\nCache hit rate\n" + cacheLines.joined(separator: "\n") }
        return out
    }
}
