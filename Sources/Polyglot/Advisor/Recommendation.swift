import Foundation

/// One measured fact behind a recommendation, with the threshold it was judged against.
public struct Evidence: Sendable, Hashable, Codable {
    /// What was measured, e.g. `point-read p99`.
    public var metric: String
    /// The measured value, formatted with its unit.
    public var value: String
    /// The threshold and where it is configured, e.g. `10 ms (advisor.readTarget)`; nil for context figures.
    public var threshold: String?
    /// Whether the value crossed the threshold (nil for context figures).
    public var crossed: Bool?

    public init(_ metric: String, _ value: String, threshold: String? = nil, crossed: Bool? = nil) {
        self.metric = metric; self.value = value; self.threshold = threshold; self.crossed = crossed
    }

    public var text: String {
        guard let threshold else { return "\(metric): \(value)" }
        let verdict = crossed == true ? "crosses" : "within"
        return "\(metric): \(value) (\(verdict) \(threshold))"
    }
}

/// The advisor's verdict on one dataset (or on the whole map, with dataset `*`), with its evidence.
///
/// ```swift
/// let advice = try await Advisor(db: db).advise(window: .seconds(7 * 86_400))
/// for r in advice where r.kind != .stay { print(r.dataset, r.action, r.dataMapDiff ?? "") }
/// let json = try JSONEncoder().encode(advice)   // what `polyglot advise --json` prints
/// ```
public struct Recommendation: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A misuse to undo (cache as source of truth, a cache under its hit-rate target, too many engines, reports on the source).
        case antiPattern
        /// Make the current engine do better first: an index, read replicas.
        case optimize
        /// Add an engine or projection the measurements call for.
        case add
        /// Change how an existing engine or projection is set up, or move the dataset.
        case change
        /// Nothing measured is wrong.
        case stay
    }

    public enum Confidence: String, Sendable, Hashable, Codable, Comparable {
        case low, medium, high
        public static func < (a: Confidence, b: Confidence) -> Bool {
            let order: [Confidence] = [.low, .medium, .high]
            return order.firstIndex(of: a)! < order.firstIndex(of: b)!
        }
    }

    /// The dataset it is about, or `*` for the whole map.
    public var dataset: String
    /// Stable rule identifier, e.g. `add-cache`, `missing-index`, `stay`.
    public var rule: String
    public var kind: Kind
    /// What to do, in one sentence.
    public var action: String
    public var evidence: [Evidence]
    /// What applying it should change, with numbers where the measurements give them.
    public var expectedEffect: String
    public var confidence: Confidence
    /// Why the confidence is what it is (sample sizes, what was not measured).
    public var confidenceReason: String
    /// The data map change that applies it, as a diff of `polyglot.yml` (nil when no map setting does it).
    public var dataMapDiff: String?

    public init(dataset: String, rule: String, kind: Kind, action: String, evidence: [Evidence], expectedEffect: String,
                confidence: Confidence, confidenceReason: String, dataMapDiff: String? = nil) {
        self.dataset = dataset; self.rule = rule; self.kind = kind; self.action = action; self.evidence = evidence
        self.expectedEffect = expectedEffect; self.confidence = confidence; self.confidenceReason = confidenceReason
        self.dataMapDiff = dataMapDiff
    }

    /// Order: anti-patterns, then "optimize first", then additions and changes, then "stay as you are".
    var rank: Int {
        switch kind {
        case .antiPattern: 0
        case .optimize: 1
        case .add: 2
        case .change: 3
        case .stay: 4
        }
    }
}

/// Formatting shared by the advisor's texts.
enum Fmt {
    static func ms(_ v: Double) -> String {
        if v < 0.001 { return String(format: "%.0f ns", v * 1e6) }
        if v < 1 { return String(format: "%.0f µs", v * 1e3) }
        if v < 1000 { return String(format: "%.2f ms", v) }
        return String(format: "%.2f s", v / 1000)
    }
    static func ms(_ d: Duration) -> String { ms(seconds(d) * 1000) }
    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
    static func pct(_ v: Double) -> String { String(format: "%.1f%%", v * 100) }
    static func count<T: BinaryInteger>(_ n: T) -> String {
        let s = String(n)
        var out = ""
        for (i, c) in s.reversed().enumerated() {
            if i > 0, i % 3 == 0, c != "-" { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }
    static func ratio(_ v: Double) -> String { v >= 100 ? String(format: "%.0f×", v) : String(format: "%.1f×", v) }
}
