import Foundation
import Logging

/// What ``Relay/rebuild(_:progress:)`` did.
public struct RebuildReport: Sendable, Hashable, CustomStringConvertible {
    public var copy: String
    /// Documents copied from the source's current state.
    public var documents: Int
    /// Change events applied after the copy was taken, up to the swap.
    public var eventsReplayed: Int
    /// Catch-up rounds before the new copy was at least as fresh as the live one.
    public var rounds: Int
    public var duration: Duration

    public var description: String {
        "\(copy): rebuilt from \(documents) documents and \(eventsReplayed) later changes, swapped in after \(rounds) catch-up round\(rounds == 1 ? "" : "s") (\(duration.formatted(.units(allowed: [.seconds, .milliseconds], width: .narrow))))"
    }
}

/// One step of a rebuild, for progress output.
public enum RebuildPhase: String, Sendable {
    /// Copying the source's documents into the new copy: `done` of `total` documents.
    case copying
    /// Applying the changes made since the copy started: `done` events so far.
    case catchingUp
    /// The new copy replaced the live one.
    case swapped
}

extension Relay {
    /// Rebuilds the documents copy `copyName` (`dataset@engine`) alongside the live one, then swaps it in, with no
    /// downtime: reads keep using the live copy (and the relay keeps applying to it) until the swap, which is one
    /// transaction on the copy's engine.
    ///
    /// 1. A new copy (`<dataset>__rebuild` tables) is created on the engine and filled from the source's current
    ///    documents, recording each document's source version.
    /// 2. Every change committed since the live copy's checkpoint is applied to it, in order, guarded by version,
    ///    until it has caught up with the live copy.
    /// 3. In one transaction holding the copy's relay lock: the live tables are dropped, the new ones take their
    ///    names, and the live checkpoint moves to the new copy's. A relay step that read its batch before the swap
    ///    finds the checkpoint moved and reads again (the checkpoint fence), so nothing lands on the wrong copy.
    ///
    /// Use it after changing a projection's definition (search fields, vector dimension) or when verify finds a
    /// copy that drifted. `progress` is called as documents are copied and changes replayed.
    @discardableResult
    public func rebuild(_ copyName: String, batchSize: Int = 1000,
                        progress: (@Sendable (_ phase: RebuildPhase, _ done: Int, _ total: Int) -> Void)? = nil) async throws -> RebuildReport {
        guard let w = workers.first(where: { $0.copy.name == copyName }) else {
            throw PolyglotError(.unknownDataset, "The relay has no copy named '\(copyName)' (copies: \(copies.map(\.name).joined(separator: ", "))).",
                                fix: "Name a copy as dataset@engine, for a search, vectors or graph projection placed on another engine than its dataset.")
        }
        guard w.copy.kind == .documents, w.copy.dataset.model == .documents else {
            throw PolyglotError(.invalidArgument, "'\(copyName)' is \(w.copy.kind == .documents ? "a copy of a table" : "an \(w.copy.kind.rawValue) projection"); rebuild replaces documents copies.",
                                fix: "Rebuild a dataset@engine copy of a documents dataset (see `polyglot relay --once` for the copies).")
        }
        guard !w.copy.dataset.capture else {
            // Its feed is the live copy's capture slot, which the live relay acknowledges as it goes: a rebuild
            // replaying from that slot could not keep the changes it has not read.
            throw PolyglotError(.invalidArgument, "'\(copyName)' follows a captured dataset; rebuild replaces copies of datasets Polyglot writes through its outbox.",
                                fix: "Use `verify(\"\(copyName)\", repair: true)` to fix a captured copy in place.")
        }
        // On the primary of engines with replicas: the copy phase must not read documents older than the live
        // checkpoint it starts from (a replica may not have replayed what the checkpoint says is applied).
        return try await ReadConsistency.$fromPrimary.withValue(true) {
            try await w.rebuild(batchSize: max(1, batchSize), progress: progress)
        }
    }
}

extension RelayWorker {
    /// For tests: runs after a rebuild's copy has caught up and before each swap attempt.
    @TaskLocal static var beforeSwap: (@Sendable () async throws -> Void)?

    func rebuild(batchSize: Int, progress: (@Sendable (RebuildPhase, Int, Int) -> Void)?) async throws -> RebuildReport {
        let started = ContinuousClock.now
        let live = copy.copySpec
        let shadow = { var s = live; s.name = live.name + "__rebuild"; return s }()
        let shadowName = copy.name + "#rebuild"
        let kv = try stateHolder.keyValueStore(for: RelayedCopy.stateSpec(on: copy.stateEngine))
        let feed = try await feed()

        // Where the live copy stands: the changes after it are replayed into the new copy once it is filled.
        let liveCheckpoint = try await RelayCheckpoint.load(copy, from: kv)
        // Maintenance must keep the events the new copy has not read (however long the rebuild takes): say where
        // it stands, renewed as it goes, and withdrawn at the end whether it swapped or failed.
        // The hold is also the rebuild's claim on the copy: a second rebuild of it refuses to start while the first
        // one's hold is alive, and each renewal checks the hold is still this rebuild's (it lapses after
        // `rebuildTTL` without renewal; the events it held back may have been pruned since). An older cursor holds
        // back more, never less, so the hold is renewed only when a quarter of its time to live has passed, and
        // before each swap attempt (which must know the hold did not lapse).
        let rebuildKey = RelayCheckpoint.rebuildKey(copy)
        let me = options.holder + "#" + UUID().uuidString
        let copyName = copy.name
        let holdOutbox = { (cursor: ChangeCursor, position: Int64, first: Bool) async throws in
            try await self.stateHolder.withTransaction {
                try await self.lock(kv)
                let current = try await RelayCheckpoint.loadRebuild(self.copy, from: kv)
                if first, let current, current.holder != me {
                    throw PolyglotError(.conflict, "Another rebuild of '\(copyName)' is running (\(current.holder ?? "unknown")).",
                                        fix: "Wait for it to finish; if it died, its hold expires within \(RelayCheckpoint.rebuildTTL) (or delete key '\(rebuildKey)' of _polyglot_relay on '\(self.copy.target)').",
                                        retryable: true)
                }
                if !first, current?.holder != me {
                    throw PolyglotError(.conflict, "The rebuild of '\(copyName)' lost its hold on the outbox (not renewed within \(RelayCheckpoint.rebuildTTL), or taken by another rebuild); events it had not read may have been pruned. The live copy was kept.",
                                        fix: "Run the rebuild again.", retryable: true)
                }
                _ = try await kv.set(rebuildKey, try JSONEncoder().encode(RelayCheckpoint(cursor: cursor.state, position: position, holder: me)), ttl: RelayCheckpoint.rebuildTTL)
            }
        }
        try await holdOutbox(ChangeCursor(state: liveCheckpoint.cursor), liveCheckpoint.position, true)
        var held = ContinuousClock.now
        let renewHold = { (cursor: ChangeCursor, position: Int64, beforeSwap: Bool) async throws in
            guard beforeSwap || ContinuousClock.now - held >= RelayCheckpoint.rebuildTTL / 4 else { return }
            try await holdOutbox(cursor, position, false)
            held = ContinuousClock.now
        }
        let report: RebuildReport
        do {
            // A rebuild that stopped half-way left its shadow: start clean (only now that this one holds the copy).
            try await target.dropDataset(shadow)
            try await deleteKeys(prefix: RelayedCopy.versionKey(shadowName, ""), in: kv)
            try await target.prepare([shadow])
            report = try await rebuild(from: liveCheckpoint, batchSize: batchSize, progress: progress, started: started, live: live, shadow: shadow,
                                       shadowName: shadowName, kv: kv, feed: feed, renewHold: renewHold)
        } catch {
            await releaseHold(rebuildKey, of: me, in: kv)
            throw error
        }
        await releaseHold(rebuildKey, of: me, in: kv)
        return report
    }

    /// Withdraws this rebuild's hold (best effort: it expires anyway), leaving another rebuild's alone.
    private func releaseHold(_ key: String, of me: String, in kv: any KeyValueStore) async {
        do {
            try await stateHolder.withTransaction {
                try await self.lock(kv)
                if try await RelayCheckpoint.loadRebuild(self.copy, from: kv)?.holder == me { _ = try await kv.delete(key) }
            }
        } catch {
            logger.warning("relay: could not withdraw a rebuild's hold on the outbox; it expires on its own", metadata: ["copy": "\(copy.name)", "error": "\(error)"])
        }
    }

    private func rebuild(from liveCheckpoint: RelayCheckpoint, batchSize: Int, progress: (@Sendable (RebuildPhase, Int, Int) -> Void)?,
                         started: ContinuousClock.Instant, live: DatasetSpec, shadow: DatasetSpec, shadowName: String, kv: any KeyValueStore,
                         feed: any ChangeFeed, renewHold: (ChangeCursor, Int64, _ beforeSwap: Bool) async throws -> Void) async throws -> RebuildReport {
        var cursor = ChangeCursor(state: liveCheckpoint.cursor)
        var position = liveCheckpoint.position
        let sourceDocs = try source.documentStore(for: copy.dataset)
        let shadowDocs = try target.documentStore(for: shadow)

        // 1. The source's current documents, with their versions.
        let total = try await sourceDocs.count(.all)
        var copied = 0
        progress?(.copying, 0, total)
        var after: String?
        while true {
            // Keyset pages: writers keep inserting and deleting while the copy is taken.
            let page = try await sourceDocs.query(DocumentQuery(limit: batchSize, after: after))
            if page.isEmpty { break }
            after = page.last?.id
            try await stateHolder.withTransaction {
                _ = try await shadowDocs.put(page.map { ($0.id, $0.data) })
                try await kv.setMany(page.map { (RelayedCopy.versionKey(shadowName, $0.id), Data(String($0.version).utf8)) }, ttl: nil)
            }
            copied += page.count
            progress?(.copying, copied, total)
            try await renewHold(cursor, position, false)
            if page.count < batchSize { break }
        }

        // 2 and 3: catch up, then swap once the new copy has read everything the live one has applied.
        var replayed = 0
        var rounds = 0
        while true {
            rounds += 1
            while true {
                let batch = try await feed.changes(after: cursor, limit: batchSize)
                let mine = batch.events.filter { $0.dataset == copy.dataset.name }
                if !mine.isEmpty {
                    // As a relay step applies a batch (per key its last event, over an older version only), except
                    // that a change the new copy refuses fails the rebuild instead of becoming a dead letter.
                    let copyName = copy.name
                    try await stateHolder.withTransaction {
                        let (due, _) = try await Self.newerThanHeld(Self.latestPerKey(mine), copy: shadowName, in: kv)
                        let done = try await Self.apply(due, to: shadowDocs) { event, error in
                            throw PolyglotError(.engineFailure, "The rebuild of '\(copyName)' could not apply change \(event.position) ('\(event.key)'): \(error)",
                                                fix: "Fix the cause and run the rebuild again; the live copy was kept.")
                        }
                        try await kv.setMany(done.map { (RelayedCopy.versionKey(shadowName, $0.key), $0.version.stored) }, ttl: nil)
                    }
                    replayed += mine.count
                    progress?(.catchingUp, replayed, 0)
                }
                position = max(position, batch.events.map(\.position).max() ?? position)
                cursor = batch.next
                try await renewHold(cursor, position, false)
                if batch.events.isEmpty { break }
            }
            let (shadowCursor, shadowPosition) = (cursor, position)
            try await renewHold(shadowCursor, shadowPosition, true)
            try await RelayWorker.beforeSwap?()
            let done = try await stateHolder.withTransaction { () async throws -> Bool in
                try await self.lock(kv)
                let now = try await RelayCheckpoint.load(self.copy, from: kv)
                // The live copy has applied something the new one has not: catch up again. (Comparing positions is
                // not enough on PostgreSQL, where a lower position can commit after a higher one.)
                if try await !feed.covers(shadowCursor, highest: shadowPosition, everythingIn: ChangeCursor(state: now.cursor), otherHighest: now.position) {
                    return false
                }
                try await self.target.replaceDataset(live, with: shadow)
                _ = try await kv.set(self.checkpointKey, try JSONEncoder().encode(RelayCheckpoint(cursor: shadowCursor.state, position: shadowPosition)), ttl: nil)
                return true
            }
            if done {
                self.progress.advance(copy.name, to: shadowPosition)
                break
            }
            if rounds >= 50 {
                throw PolyglotError(.conflict, "The rebuild of '\(copy.name)' could not catch up with the live copy in \(rounds) rounds; the live copy was kept.",
                                    fix: "Run it when writes are lighter, or with a larger batch size.", retryable: true)
            }
        }
        // The new copy's version records: the live copy's applied versions are older than anything to come.
        try await deleteKeys(prefix: RelayedCopy.versionKey(shadowName, ""), in: kv)
        progress?(.swapped, copied, total)
        logger.info("relay: rebuilt copy swapped in", metadata: ["copy": "\(copy.name)", "documents": "\(copied)", "replayed": "\(replayed)"])
        return RebuildReport(copy: copy.name, documents: copied, eventsReplayed: replayed, rounds: rounds, duration: ContinuousClock.now - started)
    }

    private func deleteKeys(prefix: String, in kv: any KeyValueStore) async throws {
        while true {
            let page = try await kv.scan(prefix: prefix, after: nil, limit: 1000)
            if page.isEmpty { return }
            try await stateHolder.withTransaction { for entry in page { _ = try await kv.delete(entry.key) } }
        }
    }
}
