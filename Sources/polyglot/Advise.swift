import ArgumentParser
import Foundation
import Polyglot

/// Options shared by `advise`, `plan` and `audit`.
struct AdvisorOptions: ParsableArguments {
    @Option(help: "How much history to read, ending now: e.g. 30m, 24h, 7d.") var window = "7d"
    @Option(help: "Only this dataset.") var dataset: String?
    @Flag(help: "Print JSON instead of text.") var json = false

    func duration() throws -> Duration {
        guard let d = DataMap.parseDuration(window), d > .zero else {
            throw ValidationError("--window '\(window)' is not a positive duration. Write it as 30m, 24h or 7d.")
        }
        return d
    }

    /// Opens the map, persists what this process measured, and builds the report for the window.
    func report(_ config: ConfigOptions) async throws -> (AdvisorReport, String) {
        let window = try duration()
        let path = try config.path()
        let db = try await config.open()
        do {
            if let dataset, db.map.dataset(named: dataset) == nil {
                throw PolyglotError(.unknownDataset, "Unknown dataset '\(dataset)' (known: \(db.map.datasets.map(\.name).sorted().joined(separator: ", "))).",
                                    fix: "Pass one of the datasets of \(path), or leave out --dataset.")
            }
            var report = try await Advisor(db: db).report(window: window)
            try await db.close()
            if let dataset {
                report.profiles = report.profiles.filter { $0.dataset == dataset }
                report.recommendations = report.recommendations.filter { $0.dataset == dataset || $0.dataset == "*" }
                report.audit = report.audit.filter { $0.dataset == dataset }
            }
            return (report, path)
        } catch {
            try? await db.close()
            throw error
        }
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func header(_ report: AdvisorReport, _ path: String) -> String {
        let f = ISO8601DateFormatter()
        return "Data map \(path); telemetry from \(f.string(from: report.from)) to \(f.string(from: report.to)) (\(report.intervals) interval\(report.intervals == 1 ? "" : "s"))"
    }
}

struct AdviseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "advise",
        abstract: "Recommend what to change, from the measured workload: optimize first, add a database only for a measured problem.",
        discussion: "Reads the telemetry history the data map's engines persisted (run your application, or `polyglot quickstart`, first). Thresholds come from `advisor:` in the data map.")
    @OptionGroup var options: ConfigOptions
    @OptionGroup var advisor: AdvisorOptions

    func run() async throws {
        try await reportingErrors {
            let (report, path) = try await advisor.report(options)
            if advisor.json { try AdvisorOptions.printJSON(report); return }
            print(AdvisorOptions.header(report, path) + "\n")
            print(Self.render(report.recommendations))
        }
    }

    static func render(_ recommendations: [Recommendation]) -> String {
        var out = TextTable.render(header: ["#", "dataset", "kind", "rule", "confidence", "action"], rows: recommendations.enumerated().map { i, r in
            let action = r.action.count > 90 ? String(r.action.prefix(89)) + "…" : r.action
            return ["\(i + 1)", r.dataset, r.kind.rawValue, r.rule, r.confidence.rawValue, action]
        }, rightAligned: [0])
        for (i, r) in recommendations.enumerated() {
            out += "\n\n\(i + 1). \(r.dataset): \(r.rule) (\(r.kind.rawValue), confidence \(r.confidence.rawValue))\n"
            out += "   \(r.action)\n   Evidence:\n"
            out += r.evidence.map { "     - \($0.text)" }.joined(separator: "\n")
            out += "\n   Expected effect: \(r.expectedEffect)\n   Confidence: \(r.confidence.rawValue): \(r.confidenceReason)"
            if let diff = r.dataMapDiff, !diff.isEmpty {
                out += "\n   Data map change:\n" + diff.split(separator: "\n", omittingEmptySubsequences: false).map { "     " + $0 }.joined(separator: "\n")
            }
        }
        return out
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show the phased rollout: which phase the system is in, and which measured trigger starts the next.")
    @OptionGroup var options: ConfigOptions
    @OptionGroup var advisor: AdvisorOptions

    func run() async throws {
        try await reportingErrors {
            let (report, path) = try await advisor.report(options)
            if advisor.json { try AdvisorOptions.printJSON(report.plan); return }
            let plan = report.plan
            print(AdvisorOptions.header(report, path) + "\n")
            print(TextTable.render(header: ["phase", "", "status", "trigger (measured now)"], rows: plan.phases.map { p in
                ["\(p.number)", p.name, p.status + (p.datasets.isEmpty ? "" : " (\(p.datasets.joined(separator: ", ")))"), p.trigger]
            }, rightAligned: [0]))
            print("")
            print("Current phase: \(plan.current).")
            if let next = plan.next, let phase = plan.phases.first(where: { $0.number == next }) {
                print("Next: phase \(next), \(phase.name): \(phase.status == "triggered" ? "triggered now" : "starts when") \(phase.trigger).")
            } else {
                print("Every phase is in place.")
            }
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Answer the framework's five questions per dataset, from the data map and the telemetry: which data belongs in which kind of engine.")
    @OptionGroup var options: ConfigOptions
    @OptionGroup var advisor: AdvisorOptions

    func run() async throws {
        try await reportingErrors {
            let (report, path) = try await advisor.report(options)
            if advisor.json { try AdvisorOptions.printJSON(report.audit); return }
            print(AdvisorOptions.header(report, path) + "\n")
            print(TextTable.render(header: ["dataset", "model", "engine", "belongs in"], rows: report.audit.map {
                [$0.dataset, $0.model, $0.engine, $0.belongsIn.joined(separator: "; ")]
            }))
            for a in report.audit {
                print("\n\(a.dataset) (\(a.model) on \(a.engine))")
                for q in a.answers { print("  \(q.yes ? "yes" : "no ")  \(q.question) \(q.answer)\(q.yes ? " → \(q.engineKind)" : "")") }
            }
        }
    }
}
