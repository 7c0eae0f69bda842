import Foundation

extension Relay {
    /// The copy `name` designates: a copy's own name (`dataset@engine`, `dataset.analytics@engine`), or a dataset
    /// that has exactly one copy of `kinds`. For command-line arguments.
    public func copyName(for name: String, kinds: Set<RelayedCopy.Kind> = [.documents]) throws -> String {
        if copies.contains(where: { $0.name == name }) { return name }
        let matching = copies.filter { $0.dataset.name == name && kinds.contains($0.kind) }
        guard matching.count == 1 else {
            let all = copies.map(\.name).joined(separator: ", ")
            throw PolyglotError(.unknownDataset, "'\(name)' names \(matching.count) copies (copies: \(all.isEmpty ? "none" : all)).",
                                fix: matching.isEmpty ? "Name a copy as dataset@engine; copies exist for projections placed on another engine than their dataset."
                                                      : "Name one copy as dataset@engine.")
        }
        return matching[0].name
    }
}

/// Where a relayed copy stands, read from the engines (not from one relay's memory): for `polyglot stats`,
/// dashboards and alerts.
public struct RelayBacklog: Sendable, Hashable, Codable {
    public var copy: String
    /// The highest source position the copy has applied (its checkpoint).
    public var appliedPosition: Int64
    /// Events of the dataset committed after the checkpoint, counted up to ``RelayBacklog/countLimit``.
    public var pendingEvents: Int
    /// Whether there are more pending events than were counted.
    public var pendingAtLeast: Bool
    /// Events set aside as dead letters, in total.
    public var deadLetters: Int
    public static let countLimit = 10_000

    public init(copy: String, appliedPosition: Int64, pendingEvents: Int, pendingAtLeast: Bool, deadLetters: Int) {
        self.copy = copy; self.appliedPosition = appliedPosition; self.pendingEvents = pendingEvents
        self.pendingAtLeast = pendingAtLeast; self.deadLetters = deadLetters
    }
}

extension Relay {
    /// Each copy's checkpoint, how many of its dataset's events wait behind it, and its dead letters. Reads the
    /// checkpoint and the source's change feed; it applies nothing. (For a captured dataset, reading its log
    /// creates the copy's capture slot if it does not exist yet.)
    public func backlog() async throws -> [RelayBacklog] {
        var out: [RelayBacklog] = []
        for w in workers {
            let kv = try w.stateHolder.keyValueStore(for: RelayedCopy.stateSpec(on: w.copy.stateEngine))
            let checkpoint = try await RelayCheckpoint.load(w.copy, from: kv)
            let feed = try await w.feed()
            var cursor = ChangeCursor(state: checkpoint.cursor)
            var pending = 0
            var more = false
            while pending < RelayBacklog.countLimit {
                let batch = try await feed.changes(after: cursor, limit: 1000)
                pending += batch.events.count { $0.dataset == w.copy.dataset.name }
                if batch.events.isEmpty { break }
                cursor = batch.next
            }
            if pending >= RelayBacklog.countLimit { more = true }
            let dead = try await w.deadLetters().count
            out.append(RelayBacklog(copy: w.copy.name, appliedPosition: checkpoint.position, pendingEvents: min(pending, RelayBacklog.countLimit),
                                    pendingAtLeast: more, deadLetters: dead))
        }
        return out
    }
}
