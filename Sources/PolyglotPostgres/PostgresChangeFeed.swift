import Foundation
import Polyglot
import PostgresNIO
import Synchronization

/// Reads `_polyglot_outbox` in commit order although positions come from a sequence.
///
/// A sequence hands out positions when a write runs, not when it commits: a transaction can hold position 5
/// open while position 6 commits. A reader that remembered "up to 6" would skip 5 forever. So the cursor is a
/// pair of snapshots instead (the way PgQ does it): a batch is every event whose writer is visible in the newer
/// snapshot and was not in the older one. Each committed transaction becomes visible in exactly one such window,
/// so no event is skipped and none is read twice; inside a window events come in position order, which for one
/// key is its commit order (a second write to a key waits for the first one's row lock).
struct PostgresChangeFeed: ChangeFeed {
    let engine: PostgresEngine

    struct State {
        var previous: String   // the snapshot every returned event was invisible in ("" = none yet)
        var target: String     // the snapshot the current window reads up to ("" = take a new one)
        var last: Int64        // the last position returned from the current window
        var notified: Int?     // this process's outbox notification count before the batch was read

        init(_ text: String) {
            let parts = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            previous = parts.count > 0 ? parts[0] : ""
            target = parts.count > 1 ? parts[1] : ""
            last = parts.count > 2 ? Int64(parts[2]) ?? 0 : 0
            notified = parts.count > 3 ? Int(parts[3]) : nil
        }
        var text: String { "\(previous)|\(target)|\(last)" + (notified.map { "|\($0)" } ?? "") }
    }

    /// Returns when a write to the outbox was notified (LISTEN on the engine's channel) since `cursor` was
    /// returned, or after `timeout`. The cursor carries the notification count seen before its batch was read,
    /// so a commit notified between that read and this wait is not missed.
    func waitForChanges(after cursor: ChangeCursor, timeout: Duration) async {
        let seen = State(cursor.state).notified ?? engine.notifications.listen()
        await engine.notifications.wait(after: seen, timeout: timeout)
    }

    func changes(after cursor: ChangeCursor, limit: Int) async throws -> (events: [ChangeEvent], next: ChangeCursor) {
        var state = State(cursor.state)
        // Noted before the snapshot: a commit notified after this is waited for by waitForChanges(after:).
        state.notified = engine.notifications.listen()
        // On the primary: replicas replay at different speeds, and a cursor's snapshots must come from one timeline.
        return try await engine.readOnPrimary { c in
            while true {
                let continuing = !state.target.isEmpty
                if !continuing {
                    let q = PGQuery("SELECT pg_current_snapshot()::text")
                    state.target = try await engine.fetch(c, q) { try $0.decode(String.self) }.first ?? ""
                    state.last = 0
                }
                var q = PGQuery()
                let target = q.bind(state.target)
                var conditions = ["pg_visible_in_snapshot(xid, \(target)::pg_snapshot)", "position > \(q.bind(state.last))"]
                if !state.previous.isEmpty {
                    let previous = q.bind(state.previous)
                    conditions.append("xid >= pg_snapshot_xmin(\(previous)::pg_snapshot)")
                    conditions.append("NOT pg_visible_in_snapshot(xid, \(previous)::pg_snapshot)")
                }
                q.sql = "SELECT position, dataset, key, op, payload::text, created_at FROM \(engine.outbox) WHERE \(conditions.joined(separator: " AND ")) ORDER BY position LIMIT \(q.bind(limit))"
                let events = try await engine.fetch(c, q) { row in
                    let (p, d, k, op, payload, at) = try row.decode((Int64, String, String, String, String?, Date?).self)
                    return ChangeEvent(position: p, dataset: d, key: k, operation: op, payload: payload.map { Data($0.utf8) }, createdAt: at)
                }
                if events.count < limit {
                    // The window is read to its end: the next batch starts where this snapshot left off.
                    let notified = state.notified
                    state = State("\(state.target)||0")
                    state.notified = notified
                } else {
                    state.last = events.last?.position ?? state.last
                }
                // A window whose last page was full can have nothing left. Returning that empty batch would say the
                // feed is idle while commits after the window wait, and the relay, which keeps no cursor from an
                // empty batch, would read the same empty tail forever: go on to the next window at once.
                if events.isEmpty && continuing { continue }
                return (events, ChangeCursor(state: state.text))
            }
        }
    }
}

extension PostgresChangeFeed {
    /// A reader that has applied position `highest` may still lack a lower `position` whose transaction committed
    /// after the window that held `highest`: the event is applied when the reader has read its row (``read(by:_:)``).
    func hasApplied(_ position: Int64, through cursor: ChangeCursor, highest: Int64) async throws -> Bool {
        // Position 0: a write that appended no event (an empty batch, a dataset without change events).
        if position <= 0 { return true }
        guard highest >= position else { return false }
        let state = State(cursor.state)
        guard !state.previous.isEmpty || !state.target.isEmpty else { return false }
        var q = PGQuery()
        let p = q.bind(position)
        let visible = Self.read(by: state, &q) ?? "false"
        // The event's row. A token comes from a committed write, so its row was there when the token was made; if it
        // is gone, maintenance pruned it, and pruning deletes only rows every copy's cursor has read
        // (`PostgresEngine.maintain(now:outboxReaders:)`): applied. (Pruning can leave gaps, so "below the oldest row
        // left" would not tell.)
        q.sql = "SELECT \(visible) FROM \(engine.outbox) WHERE position = \(p)"
        // On the primary, where the token's write certainly is (a replica may not have replayed it yet).
        let answer = try await engine.readOnPrimary { c in
            try await engine.fetch(c, q) { try $0.decode(Bool.self) }.first
        }
        return answer ?? true
    }

    /// An SQL condition on an outbox row: whether a reader at `state` has read it (nil: it has read nothing). Read
    /// are the rows visible in the last window read to its end (`previous`), and in the window being read, those at
    /// or below the last position read.
    static func read(by state: State, _ q: inout PGQuery) -> String? {
        var visible: [String] = []
        if !state.previous.isEmpty { visible.append("pg_visible_in_snapshot(xid, \(q.bind(state.previous))::pg_snapshot)") }
        if !state.target.isEmpty {
            visible.append("(pg_visible_in_snapshot(xid, \(q.bind(state.target))::pg_snapshot) AND position <= \(q.bind(state.last)))")
        }
        return visible.isEmpty ? nil : "(" + visible.joined(separator: " OR ") + ")"
    }

    /// No outbox row read by `other` is unread by `cursor`. Rows older than the oldest transaction `cursor`'s last
    /// finished window saw running are read by it, so only the newer ones are looked at (the xid index).
    func covers(_ cursor: ChangeCursor, highest: Int64, everythingIn other: ChangeCursor, otherHighest: Int64) async throws -> Bool {
        let mine = State(cursor.state), theirs = State(other.state)
        var q = PGQuery()
        guard let theirRows = Self.read(by: theirs, &q) else { return true }
        let myRows = Self.read(by: mine, &q) ?? "false"
        let recent = mine.previous.isEmpty ? "" : " AND xid >= pg_snapshot_xmin(\(q.bind(mine.previous))::pg_snapshot)"
        q.sql = "SELECT NOT EXISTS (SELECT 1 FROM \(engine.outbox) WHERE \(theirRows) AND NOT \(myRows)\(recent))"
        return try await engine.readOnPrimary { c in try await engine.fetch(c, q) { try $0.decode(Bool.self) }.first ?? false }
    }
}

extension PostgresEngine: ChangeFeedEngine {
    public func changeFeed() -> any ChangeFeed { PostgresChangeFeed(engine: self) }
}

/// A LISTEN connection on the engine's outbox channel, opened the first time someone waits, and kept (reconnecting
/// after errors) until the engine closes. It counts notifications; a waiter is resumed by the next one.
final class OutboxNotifications: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let counter = ProgressSignal<Int>()
    private let start: @Sendable (OutboxNotifications) -> Task<Void, Never>

    init(start: @escaping @Sendable (OutboxNotifications) -> Task<Void, Never>) { self.start = start }

    var count: Int { Int(counter.position(0)) }
    func bump() { counter.increment(0) }

    /// Starts listening if nobody did yet; returns the current count.
    func listen() -> Int {
        task.withLock { t in
            if t == nil { t = start(self) }
        }
        return count
    }

    /// Returns at the first notification counted after `seen`, or after `timeout`.
    func wait(after seen: Int, timeout: Duration) async {
        await counter.wait(0, atLeast: Int64(seen) + 1, timeout: timeout)
    }

    func stop() { task.withLock { $0?.cancel() } }
}
