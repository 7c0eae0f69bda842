import Foundation

extension DataMap {
    /// The map as `polyglot.yml` text in a canonical layout: one line per engine and projection, settings at
    /// their defaults left out. `DataMap(yaml: map.yaml())` gives back an equal map.
    ///
    /// ```swift
    /// print(try DataMap(contentsOf: "polyglot.yml").yaml())
    /// ```
    public func yaml() -> String {
        var lines: [String] = ["engines:"]
        for e in engines {
            var parts = ["kind: \(YAMLText.scalar(e.kind))"]
            if let u = e.url { parts.append("url: \(YAMLText.scalar(u))") }
            if let p = e.path { parts.append("path: \(YAMLText.scalar(p))") }
            if !e.options.isEmpty {
                parts.append("options: { " + e.options.keys.sorted().map { "\(YAMLText.scalar($0)): \(YAMLText.scalar(e.options[$0]!))" }.joined(separator: ", ") + " }")
            }
            lines.append("  \(YAMLText.scalar(e.name)): { \(parts.joined(separator: ", ")) }")
        }
        lines.append("datasets:")
        for d in datasets {
            lines.append("  \(YAMLText.scalar(d.name)):")
            lines.append("    model: \(d.model.rawValue)")
            lines.append("    engine: \(YAMLText.scalar(d.engine))")
            if !d.fields.isEmpty {
                let key = d.model == .table ? "columns" : "fields"
                lines.append("    \(key): { " + d.fields.map { "\(YAMLText.scalar($0.name)): \($0.type.rawValue)\($0.nullable ? "" : "!")" }.joined(separator: ", ") + " }")
            }
            if let pk = d.primaryKey { lines.append("    primaryKey: \(YAMLText.scalar(pk))") }
            if let dim = d.dimension { lines.append("    dimension: \(dim)") }
            if d.metric != .cosine { lines.append("    metric: \(d.metric.rawValue)") }
            if let t = d.ttl { lines.append("    ttl: \(YAMLText.duration(t))") }
            if let r = d.retention { lines.append("    retention: \(YAMLText.duration(r))") }
            if d.maxKeyBytes != 512 { lines.append("    maxKeyBytes: \(d.maxKeyBytes)") }
            if d.maxValueBytes != 1 << 20 { lines.append("    maxValueBytes: \(d.maxValueBytes)") }
            if d.index != VectorIndexSpec() { lines.append("    index: \(YAMLText.index(d.index))") }
            if !d.projections.isEmpty {
                lines.append("    projections:")
                for p in d.projections { lines.append("      - \(YAMLText.projection(p))") }
            }
        }
        if telemetry != TelemetrySpec() {
            var parts: [String] = []
            if telemetry.flushInterval != TelemetrySpec().flushInterval { parts.append("flushInterval: \(YAMLText.duration(telemetry.flushInterval))") }
            if let s = telemetry.store { parts.append("store: \(YAMLText.scalar(s))") }
            lines.append("telemetry: { \(parts.joined(separator: ", ")) }")
        }
        if advisor != AdvisorSettings() { lines.append("advisor: { \(YAMLText.advisor(advisor)) }") }
        return lines.joined(separator: "\n") + "\n"
    }
}

enum YAMLText {
    static func scalar(_ s: String) -> String {
        let plain = !s.isEmpty && s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "_./-".unicodeScalars.contains($0) }
            && !["true", "false", "yes", "no", "null", "on", "off", "~"].contains(s.lowercased()) && s.first != "-"
        if plain { return s }
        let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return "\"\(escaped)\""
    }

    static func duration(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] where ms >= size && ms % size == 0 {
            return "\(ms / size)\(unit)"
        }
        return "\(ms)ms"
    }

    static func number(_ d: Double) -> String {
        d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d)
    }

    static func index(_ i: VectorIndexSpec) -> String { "{ m: \(i.m), efConstruction: \(i.efConstruction), efSearch: \(i.efSearch) }" }

    static func projection(_ p: ProjectionSpec) -> String {
        var parts = ["kind: \(p.kind.rawValue)", "engine: \(scalar(p.engine))"]
        if let t = p.ttl { parts.append("ttl: \(duration(t))") }
        if p.jitter != 0.1 { parts.append("jitter: \(number(p.jitter))") }
        if !p.fields.isEmpty { parts.append("fields: [\(p.fields.map(scalar).joined(separator: ", "))]") }
        if let v = p.vectorField { parts.append("vectorField: \(scalar(v))") }
        if let d = p.dimension { parts.append("dimension: \(d)") }
        if p.metric != .cosine { parts.append("metric: \(p.metric.rawValue)") }
        if let e = p.edgeField { parts.append("edgeField: \(scalar(e))") }
        if let l = p.edgeLabel { parts.append("edgeLabel: \(scalar(l))") }
        if p.index != VectorIndexSpec() { parts.append("index: \(index(p.index))") }
        return "{ \(parts.joined(separator: ", ")) }"
    }

    static func advisor(_ a: AdvisorSettings) -> String {
        let d = AdvisorSettings()
        var parts: [String] = []
        if a.readTarget != d.readTarget { parts.append("readTarget: \(duration(a.readTarget))") }
        if a.hitRateTarget != d.hitRateTarget { parts.append("hitRateTarget: \(number(a.hitRateTarget))") }
        if a.vectorThreshold != d.vectorThreshold { parts.append("vectorThreshold: \(a.vectorThreshold)") }
        if a.vectorTarget != d.vectorTarget { parts.append("vectorTarget: \(duration(a.vectorTarget))") }
        if a.schemaChangesPerDay != d.schemaChangesPerDay { parts.append("schemaChangesPerDay: \(number(a.schemaChangesPerDay))") }
        if a.scanRatio != d.scanRatio { parts.append("scanRatio: \(number(a.scanRatio))") }
        if a.minRowsExamined != d.minRowsExamined { parts.append("minRowsExamined: \(a.minRowsExamined)") }
        if a.interferenceFactor != d.interferenceFactor { parts.append("interferenceFactor: \(number(a.interferenceFactor))") }
        if a.largeScan != d.largeScan { parts.append("largeScan: \(duration(a.largeScan))") }
        if a.readHeavy != d.readHeavy { parts.append("readHeavy: \(number(a.readHeavy))") }
        if a.minSamples != d.minSamples { parts.append("minSamples: \(a.minSamples)") }
        if a.sampleEvery != d.sampleEvery { parts.append("sampleEvery: \(a.sampleEvery)") }
        if a.maxEngines != d.maxEngines { parts.append("maxEngines: \(a.maxEngines)") }
        if a.keepHistory != d.keepHistory { parts.append("keepHistory: \(duration(a.keepHistory))") }
        return parts.joined(separator: ", ")
    }
}

/// A line diff of two YAML texts in unified form, each hunk led by the lines that hold its place in the tree
/// (the dataset and section it is in), so a hunk can be applied by hand to a file laid out differently.
public enum YAMLDiff {
    public static func diff(_ old: String, _ new: String, oldName: String = "polyglot.yml", newName: String = "polyglot.yml (advised)") -> String {
        let a = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let b = new.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Longest common subsequence table (maps are small).
        let n = a.count, m = b.count
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        enum Op { case same(String, Int), del(String, Int), add(String) }
        var ops: [Op] = []
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, a[i] == b[j] { ops.append(.same(a[i], i)); i += 1; j += 1 }
            else if i < n, j == m || lcs[i + 1][j] >= lcs[i][j + 1] { ops.append(.del(a[i], i)); i += 1 }   // removals first
            else { ops.append(.add(b[j])); j += 1 }
        }
        func indent(_ s: String) -> Int { s.prefix { $0 == " " }.count }
        var out = ["--- \(oldName)", "+++ \(newName)"]
        var k = 0
        var lastShown = -1   // index in `a` of the last context line printed
        while k < ops.count {
            guard case .same = ops[k] else {
                // A hunk: the changed run plus one line of context after it.
                var end = k
                while end < ops.count { if case .same = ops[end] { break }; end += 1 }
                // Position in `a` where the hunk starts, and the parents of that position.
                var pos = 0
                for q in stride(from: k - 1, through: 0, by: -1) {
                    if case .same(_, let ai) = ops[q] { pos = ai + 1; break }
                    if case .del(_, let ai) = ops[q] { pos = ai + 1; break }
                }
                let firstChanged: String = { switch ops[k] { case .same(let s, _), .del(let s, _), .add(let s): return s } }()
                var level = indent(firstChanged)
                var parents: [Int] = []
                var q = pos - 1
                // The line just before, then each enclosing line.
                if q >= 0 { parents.append(q) }
                while q >= 0, level > 0 {
                    if indent(a[q]) < level, !a[q].trimmingCharacters(in: .whitespaces).isEmpty { parents.append(q); level = indent(a[q]) }
                    q -= 1
                }
                let context = Array(Set(parents.filter { $0 > lastShown })).sorted()
                out.append("@@ line \(pos + 1) @@")
                var prev = -2
                for c in context {
                    if prev >= 0, c > prev + 1 { out.append("  ...") }
                    out.append("  " + a[c]); prev = c
                }
                for o in ops[k..<end] {
                    switch o {
                    case .del(let s, _): out.append("- " + s)
                    case .add(let s): out.append("+ " + s)
                    case .same: break
                    }
                }
                if end < ops.count, case .same(let s, let ai) = ops[end], !s.isEmpty { out.append("  " + s); lastShown = ai; end += 1 }
                k = end
                continue
            }
            k += 1
        }
        return out.count == 2 ? "" : out.joined(separator: "\n")
    }

    /// The diff between `map` and `map` changed by `change`, both rendered by ``DataMap/yaml()``.
    public static func change(_ map: DataMap, _ change: (inout DataMap) -> Void) -> (map: DataMap, diff: String) {
        var changed = map
        change(&changed)
        return (changed, diff(map.yaml(), changed.yaml()))
    }
}
