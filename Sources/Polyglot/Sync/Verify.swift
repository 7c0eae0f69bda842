import Foundation

/// What ``Relay/verify(_:repair:progress:)`` found for one relayed copy.
public struct VerifyReport: Sendable, Hashable, CustomStringConvertible {
    public var copy: String
    public var sourceDocuments: Int
    public var copyDocuments: Int
    /// In the source, not in the copy.
    public var missing: [String]
    /// In both, with different contents.
    public var stale: [String]
    /// In the copy, not in the source (deleted at the source, the delete never applied).
    public var orphaned: [String]
    /// Whether the differences were repaired from the source.
    public var repaired: Bool

    public var isClean: Bool { missing.isEmpty && stale.isEmpty && orphaned.isEmpty }

    public var description: String {
        func list(_ ids: [String]) -> String { ids.isEmpty ? "" : " (e.g. " + ids.prefix(5).joined(separator: ", ") + ")" }
        if isClean { return "\(copy): clean, \(sourceDocuments) documents in both" }
        return "\(copy): \(missing.count) missing\(list(missing)), \(stale.count) stale\(list(stale)), \(orphaned.count) orphaned\(list(orphaned))"
            + " of \(sourceDocuments) source and \(copyDocuments) copy documents" + (repaired ? "; repaired from the source" : "")
    }
}

extension Relay {
    /// Compares each relayed copy (or only `copyName`, `dataset@engine`) with its source, document by document
    /// (contents compared as JSON values), and reports missing, stale and orphaned documents. With `repair`,
    /// writes the source's documents into the copy and deletes the orphans; the copy's engine re-derives its
    /// projections (search, vectors, graph) as it does for any write.
    ///
    /// Changes still on their way through the relay show up as differences: verify after the relay has caught
    /// up, or run it again. `progress` is called after each page with the documents checked so far and the total.
    public func verify(_ copyName: String? = nil, repair: Bool = false,
                       progress: (@Sendable (_ copy: String, _ checked: Int, _ total: Int) -> Void)? = nil) async throws -> [VerifyReport] {
        let chosen = copies.filter { $0.kind == .documents && $0.dataset.model == .documents && (copyName == nil || $0.name == copyName) }
        if let copyName, chosen.isEmpty {
            throw PolyglotError(.unknownDataset, "The relay has no copy named '\(copyName)' (copies: \(copies.map(\.name).joined(separator: ", "))).",
                                fix: "Name a copy as dataset@engine, for a projection placed on another engine than its dataset.")
        }
        var reports: [VerifyReport] = []
        for copy in chosen {
            let source = try db.engine(copy.dataset.engine).documentStore(for: copy.dataset)
            let target = try db.engine(copy.target).documentStore(for: copy.copySpec)
            let total = try await source.count(.all)
            var inCopy: [String: JSON] = [:]
            try await Self.pages(of: target) { docs in
                for d in docs { inCopy[d.id] = (try? JSON(parsing: d.data)) ?? .null }
            }
            let copyCount = inCopy.count
            var report = VerifyReport(copy: copy.name, sourceDocuments: 0, copyDocuments: copyCount, missing: [], stale: [], orphaned: [], repaired: false)
            var fixes: [(id: String, data: Data, version: Int64)] = []
            try await Self.pages(of: source) { docs in
                for d in docs {
                    report.sourceDocuments += 1
                    let body = (try? JSON(parsing: d.data)) ?? .null
                    switch inCopy.removeValue(forKey: d.id) {
                    case nil: report.missing.append(d.id); fixes.append((d.id, d.data, d.version))
                    case let theirs? where theirs != body: report.stale.append(d.id); fixes.append((d.id, d.data, d.version))
                    default: break
                    }
                }
                progress?(copy.name, report.sourceDocuments, total)
            }
            report.orphaned = inCopy.keys.sorted()
            if repair, !report.isClean {
                // Each fix also records the source version it wrote, so the relay will not put an older event over it.
                let state = try db.engine(copy.target).keyValueStore(for: RelayedCopy.stateSpec(on: copy.target))
                for start in stride(from: 0, to: fixes.count, by: 500) {
                    let page = fixes[start..<min(start + 500, fixes.count)]
                    _ = try await target.put(page.map { ($0.id, $0.data) })
                    for f in page { _ = try await state.set(RelayedCopy.versionKey(copy.name, f.id), Data(String(f.version).utf8), ttl: nil) }
                }
                for id in report.orphaned { _ = try await target.delete(id) }
                report.repaired = true
            }
            reports.append(report)
        }
        return reports
    }

    /// Every document of `store`, a page at a time, in id order.
    static func pages(of store: any DocumentStore, _ body: ([Document]) throws -> Void) async throws {
        var after: String?
        while true {
            let page = try await store.query(DocumentQuery(limit: 1000, after: after))
            try body(page)
            if page.count < 1000 { return }
            after = page.last?.id
        }
    }
}
