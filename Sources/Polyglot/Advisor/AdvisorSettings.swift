import Foundation

/// The advisor's thresholds, set under `advisor:` in the data map. The defaults are the decision framework's.
///
/// ```yaml
/// advisor:
///   readTarget: 10ms          # point reads should finish within this at p99
///   hitRateTarget: 0.8        # a cache below this hit rate is not paying for itself
///   vectorThreshold: 2000000  # past this many vectors, a dedicated vector index
///   vectorTarget: 50ms        # or when nearest-neighbour p99 misses this
///   schemaChangesPerDay: 1    # field paths or columns added or removed per day that mean "documents"
///   scanRatio: 100            # rows examined per row returned that mean "missing index"
///   minRowsExamined: 1000     # ...when a query examines at least this many rows
///   interferenceFactor: 2     # point-read p99 during large scans vs without them
///   largeScan: 50ms           # a scan-like operation this long counts as a large scan
///   readHeavy: 0.9            # share of reads that makes a dataset read-heavy
///   minSamples: 100           # fewer measured operations than this give no latency verdict
///   sampleEvery: 16           # sample one read, and one key, in this many (rounded up to a power of two)
///   maxEngines: 4             # this many engines need a measured reason each
///   keepHistory: 30d          # telemetry and observations older than this are deleted from the telemetry store
/// ```
public struct AdvisorSettings: Sendable, Hashable, Codable {
    public var readTarget: Duration = .milliseconds(10)
    public var hitRateTarget: Double = 0.8
    public var vectorThreshold: Int = 2_000_000
    public var vectorTarget: Duration = .milliseconds(50)
    public var schemaChangesPerDay: Double = 1
    public var scanRatio: Double = 100
    public var minRowsExamined: Int = 1000
    public var interferenceFactor: Double = 2
    public var largeScan: Duration = .milliseconds(50)
    public var readHeavy: Double = 0.9
    public var minSamples: Int = 100
    public var sampleEvery: Int = 16
    public var maxEngines: Int = 4
    /// How long persisted telemetry and advisor observations are kept: each flush (at most once an hour) deletes
    /// what ended longer ago than this, so the history tables do not grow without bound.
    public var keepHistory: Duration = .seconds(30 * 86_400)

    public init() {}

    /// The YAML names of the settings, in the order they are documented.
    public static let keys = ["readTarget", "hitRateTarget", "vectorThreshold", "vectorTarget", "schemaChangesPerDay", "scanRatio",
                              "minRowsExamined", "interferenceFactor", "largeScan", "readHeavy", "minSamples", "sampleEvery", "maxEngines", "keepHistory"]

    /// Every out-of-range threshold, each with what to write instead.
    public func problems() -> [PolyglotError] {
        var out: [PolyglotError] = []
        func bad(_ key: String, _ value: String, _ fix: String) {
            out.append(PolyglotError(.invalidDataMap, "`advisor.\(key)` is \(value), which is out of range.", fix: fix))
        }
        if readTarget <= .zero { bad("readTarget", "\(readTarget)", "Use a positive duration such as 10ms.") }
        if !(hitRateTarget > 0 && hitRateTarget <= 1) { bad("hitRateTarget", "\(hitRateTarget)", "Use a fraction in (0, 1], e.g. 0.8 (or 80%).") }
        if vectorThreshold < 1 { bad("vectorThreshold", "\(vectorThreshold)", "Use a positive vector count such as 2000000.") }
        if vectorTarget <= .zero { bad("vectorTarget", "\(vectorTarget)", "Use a positive duration such as 50ms.") }
        if !(schemaChangesPerDay > 0) { bad("schemaChangesPerDay", "\(schemaChangesPerDay)", "Use a positive number of changes per day, e.g. 1.") }
        if !(scanRatio > 1) { bad("scanRatio", "\(scanRatio)", "Use a ratio above 1, e.g. 100 rows examined per row returned.") }
        if minRowsExamined < 1 { bad("minRowsExamined", "\(minRowsExamined)", "Use a positive row count such as 1000.") }
        if !(interferenceFactor > 1) { bad("interferenceFactor", "\(interferenceFactor)", "Use a factor above 1, e.g. 2.") }
        if largeScan <= .zero { bad("largeScan", "\(largeScan)", "Use a positive duration such as 50ms.") }
        if !(readHeavy > 0 && readHeavy <= 1) { bad("readHeavy", "\(readHeavy)", "Use a fraction in (0, 1], e.g. 0.9.") }
        if minSamples < 1 { bad("minSamples", "\(minSamples)", "Use a positive count such as 100.") }
        if !(1...65536).contains(sampleEvery) { bad("sampleEvery", "\(sampleEvery)", "Use 1 (every access) to 65536; 16 is the default.") }
        if maxEngines < 2 { bad("maxEngines", "\(maxEngines)", "Use 2 or more; 4 is the default.") }
        if keepHistory < .seconds(86_400) {
            bad("keepHistory", "\(keepHistory)", "Use 1d or more (the advisor reads a 24h window by default); 30d is the default.")
        }
        return out
    }
}

extension YAMLReader {
    func advisor(_ node: Node) throws -> AdvisorSettings {
        let path = "advisor"
        guard let m = node.mapping else {
            throw error(path, "must be a mapping of thresholds", line: node.mark, fix: "Write e.g. `advisor: { readTarget: 10ms, hitRateTarget: 0.8 }`.")
        }
        try allowOnly(Set(AdvisorSettings.keys), in: m, at: path)
        var s = AdvisorSettings()
        func fraction(_ v: Node, _ key: String) throws -> Double {
            let text = try string(v, at: "\(path).\(key)").trimmingCharacters(in: .whitespaces)
            if text.hasSuffix("%"), let d = Double(text.dropLast()) { return d / 100 }
            guard let d = Double(text) else {
                throw error("\(path).\(key)", "is '\(text)', which is not a fraction", line: v.mark, fix: "Write e.g. 0.8 or 80%.")
            }
            return d
        }
        func count(_ v: Node, _ key: String) throws -> Int {
            let text = try string(v, at: "\(path).\(key)").replacingOccurrences(of: "_", with: "")
            if let i = Int(text) { return i }
            if let d = Double(text), d.rounded() == d, abs(d) < 1e15 { return Int(d) }
            throw error("\(path).\(key)", "is '\(text)', which is not a whole number", line: v.mark, fix: "Write a whole number such as 2000000.")
        }
        if let v = m["readTarget"] { s.readTarget = try duration(v, at: "\(path).readTarget") }
        if let v = m["hitRateTarget"] { s.hitRateTarget = try fraction(v, "hitRateTarget") }
        if let v = m["vectorThreshold"] { s.vectorThreshold = try count(v, "vectorThreshold") }
        if let v = m["vectorTarget"] { s.vectorTarget = try duration(v, at: "\(path).vectorTarget") }
        if let v = m["schemaChangesPerDay"] { s.schemaChangesPerDay = try double(v, at: "\(path).schemaChangesPerDay") }
        if let v = m["scanRatio"] { s.scanRatio = try double(v, at: "\(path).scanRatio") }
        if let v = m["minRowsExamined"] { s.minRowsExamined = try count(v, "minRowsExamined") }
        if let v = m["interferenceFactor"] { s.interferenceFactor = try double(v, at: "\(path).interferenceFactor") }
        if let v = m["largeScan"] { s.largeScan = try duration(v, at: "\(path).largeScan") }
        if let v = m["readHeavy"] { s.readHeavy = try fraction(v, "readHeavy") }
        if let v = m["minSamples"] { s.minSamples = try count(v, "minSamples") }
        if let v = m["sampleEvery"] { s.sampleEvery = try count(v, "sampleEvery") }
        if let v = m["maxEngines"] { s.maxEngines = try count(v, "maxEngines") }
        if let v = m["keepHistory"] { s.keepHistory = try duration(v, at: "\(path).keepHistory") }
        if let first = s.problems().first { throw first }
        return s
    }
}

import Yams
