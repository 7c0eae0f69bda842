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
    /// How many key ranges were digested on each side, and in how many the digests differed (only those were
    /// compared document by document).
    public var keyRanges: Int = 0
    public var differingKeyRanges: Int = 0

    public var isClean: Bool { missing.isEmpty && stale.isEmpty && orphaned.isEmpty }

    public var description: String {
        func list(_ ids: [String]) -> String { ids.isEmpty ? "" : " (e.g. " + ids.prefix(5).joined(separator: ", ") + ")" }
        if isClean { return "\(copy): clean, \(sourceDocuments) documents in both (the digests of all \(keyRanges) key ranges agree)" }
        return "\(copy): \(missing.count) missing\(list(missing)), \(stale.count) stale\(list(stale)), \(orphaned.count) orphaned\(list(orphaned))"
            + " of \(sourceDocuments) source and \(copyDocuments) copy documents, found in \(differingKeyRanges) of \(keyRanges) key ranges"
            + (repaired ? "; repaired from the source" : "")
    }
}

extension Relay {
    /// Compares each relayed copy (or only `copyName`, `dataset@engine`) with its source and reports missing, stale
    /// and orphaned documents: first a digest of each key range on both sides, then, in the ranges whose digests
    /// differ, document by document (contents compared as JSON values). With `repair`,
    /// writes the source's documents into the copy and deletes the orphans; the copy's engine re-derives its
    /// projections (search, vectors, graph) as it does for any write.
    ///
    /// Changes still on their way through the relay show up as differences: verify after the relay has caught
    /// up, or run it again. `progress` is called after each page with the documents checked so far and the total.
    public func verify(_ copyName: String? = nil, repair: Bool = false,
                       progress: (@Sendable (_ copy: String, _ checked: Int, _ total: Int) -> Void)? = nil) async throws -> [VerifyReport] {
        // On the primary of engines with replicas: a repair must not copy what a lagging replica still shows.
        try await ReadConsistency.$fromPrimary.withValue(true) { try await verifyOnPrimary(copyName, repair: repair, progress: progress) }
    }

    private func verifyOnPrimary(_ copyName: String?, repair: Bool,
                                 progress: (@Sendable (_ copy: String, _ checked: Int, _ total: Int) -> Void)?) async throws -> [VerifyReport] {
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
            // 1. A digest of every key range on each side: ids are spread over `KeyRangeDigest.ranges` ranges by a
            //    hash of the id (so both engines agree whatever their collation), and each range's digest sums a
            //    hash of (id, contents as canonical JSON). Memory stays constant however large the dataset.
            var sourceDigest = KeyRangeDigest(), copyDigest = KeyRangeDigest()
            var checked = 0
            try await Self.pages(of: source) { docs in
                for d in docs { sourceDigest.add(d) }
                checked += docs.count
                progress?(copy.name, checked, total)
            }
            try await Self.pages(of: target) { docs in for d in docs { copyDigest.add(d) } }
            let differing = Set(sourceDigest.differingRanges(from: copyDigest))
            var report = VerifyReport(copy: copy.name, sourceDocuments: sourceDigest.documents, copyDocuments: copyDigest.documents,
                                      missing: [], stale: [], orphaned: [], repaired: false,
                                      keyRanges: KeyRangeDigest.ranges, differingKeyRanges: differing.count)
            var fixes: [(id: String, data: Data, version: Int64)] = []
            if !differing.isEmpty {
                // 2. Drill down: only the documents of the ranges that differ are compared one by one.
                var inCopy: [String: JSON] = [:]
                try await Self.pages(of: target) { docs in
                    for d in docs where differing.contains(KeyRangeDigest.range(of: d.id)) { inCopy[d.id] = (try? JSON(parsing: d.data)) ?? .null }
                }
                try await Self.pages(of: source) { docs in
                    for d in docs where differing.contains(KeyRangeDigest.range(of: d.id)) {
                        let body = (try? JSON(parsing: d.data)) ?? .null
                        switch inCopy.removeValue(forKey: d.id) {
                        case nil: report.missing.append(d.id); fixes.append((d.id, d.data, d.version))
                        case let theirs? where theirs != body: report.stale.append(d.id); fixes.append((d.id, d.data, d.version))
                        default: break
                        }
                    }
                }
                report.orphaned = inCopy.keys.sorted()
            }
            if repair, !report.isClean {
                // Each fix also records the source version it wrote, so the relay will not put an older event over it.
                let state = try db.engine(copy.target).keyValueStore(for: RelayedCopy.stateSpec(on: copy.target))
                for start in stride(from: 0, to: fixes.count, by: 500) {
                    let page = fixes[start..<min(start + 500, fixes.count)]
                    _ = try await target.put(page.map { ($0.id, $0.data) })
                    for f in page { _ = try await state.set(RelayedCopy.versionKey(copy.name, f.id), EventVersion(position: f.version).stored, ttl: nil) }
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

/// Digests of a documents set over key ranges: ids are spread over ``ranges`` ranges by a hash of the id, and each
/// range keeps its count and the wrapping sum of a 64-bit hash of (id, canonical JSON contents). Sums do not
/// depend on the order documents are read in, so two engines with different id orderings compare equal.
struct KeyRangeDigest {
    static let ranges = 256
    private(set) var counts = [Int](repeating: 0, count: ranges)
    private(set) var sums = [UInt64](repeating: 0, count: ranges)
    private(set) var documents = 0

    static func fnv(_ bytes: some Sequence<UInt8>, _ seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    static func range(of id: String) -> Int { Int(fnv(id.utf8) % UInt64(ranges)) }

    mutating func add(_ d: Document) {
        // Contents are hashed as canonical JSON (sorted keys, one number form), so SQLite text and jsonb agree.
        let canonical = ((try? JSON(parsing: d.data)) ?? .null).serialized()
        let h = Self.fnv(canonical, Self.fnv(d.id.utf8 + [0]))
        let r = Self.range(of: d.id)
        counts[r] += 1
        sums[r] = sums[r] &+ h
        documents += 1
    }

    func differingRanges(from other: KeyRangeDigest) -> [Int] {
        (0..<Self.ranges).filter { counts[$0] != other.counts[$0] || sums[$0] != other.sums[$0] }
    }
}
