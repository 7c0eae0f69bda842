import Foundation
import Polyglot

/// Reads `_polyglot_outbox` in commit order. SQLite has one writer, and positions are assigned under it
/// (`AUTOINCREMENT`), so position order is commit order and the cursor is the last position read. A relay waiting
/// for changes is woken by this process's commits; another process's are found when the wait times out.
struct SQLiteChangeFeed: ChangeFeed {
    let engine: SQLiteEngine

    func changes(after cursor: ChangeCursor, limit: Int) async throws -> (events: [ChangeEvent], next: ChangeCursor) {
        let last = Int64(cursor.state) ?? 0
        let events = try engine.read { c in
            try c.query("SELECT position, dataset, key, op, payload, created_at FROM _polyglot_outbox WHERE position > ? ORDER BY position LIMIT ?",
                        [.integer(last), .integer(Int64(limit))]).map { r in
                ChangeEvent(position: r[0].int ?? 0, dataset: r[1].string ?? "", key: r[2].string ?? "", operation: r[3].string ?? "", payload: r[4].data,
                            createdAt: r[5].double.map { Date(timeIntervalSince1970: $0) })
            }
        }
        return (events, ChangeCursor(state: String(events.last?.position ?? last)))
    }

    /// Returns when this process commits an outbox event after the cursor's position, or after `timeout`.
    func waitForChanges(after cursor: ChangeCursor, timeout: Duration) async {
        await engine.committedOutbox.wait(0, atLeast: (Int64(cursor.state) ?? 0) + 1, timeout: timeout)
    }
}

extension SQLiteEngine: ChangeFeedEngine {
    public func changeFeed() -> any ChangeFeed { SQLiteChangeFeed(engine: self) }
}
