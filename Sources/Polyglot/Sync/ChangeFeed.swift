import Foundation

/// One change event from an engine's outbox: what a write did, in the same transaction as the write.
public struct ChangeEvent: Sendable, Hashable {
    /// The event's position in the outbox: the write's token and the version of what it wrote.
    public var position: Int64
    public var dataset: String
    public var key: String
    /// `put`, `delete` or `append`.
    public var operation: String
    /// The written value where the engine keeps it (documents and table rows), as JSON.
    public var payload: Data?
    /// When the write appended the event (the engine's clock).
    public var createdAt: Date?
    /// The event's place among events with the same position: 0 for outbox events (each has its own position);
    /// for captured changes, which share their transaction's commit position, the change's index in the transaction.
    public var sequence: Int

    public init(position: Int64, dataset: String, key: String, operation: String, payload: Data?, createdAt: Date? = nil, sequence: Int = 0) {
        self.position = position; self.dataset = dataset; self.key = key; self.operation = operation; self.payload = payload
        self.createdAt = createdAt; self.sequence = sequence
    }

    /// The event's version for the relay's per-key guard: position, then sequence.
    public var version: EventVersion { EventVersion(position: position, sequence: sequence) }
}

/// Where an event stands in its feed's order, as the relay records it per key: position, then sequence.
public struct EventVersion: Sendable, Hashable, Comparable {
    public var position: Int64
    public var sequence: Int
    public init(position: Int64, sequence: Int = 0) { self.position = position; self.sequence = sequence }
    public static func < (a: EventVersion, b: EventVersion) -> Bool { (a.position, a.sequence) < (b.position, b.sequence) }

    /// `position` or `position.sequence`, as stored in the relay's state.
    public var stored: Data { Data((sequence == 0 ? String(position) : "\(position).\(sequence)").utf8) }
    public init?(stored: Data) {
        let parts = String(decoding: stored, as: UTF8.self).split(separator: ".", maxSplits: 1)
        guard let p = parts.first.flatMap({ Int64($0) }) else { return nil }
        let s = parts.count > 1 ? Int(parts[1]) : 0
        guard let s else { return nil }
        position = p; sequence = s
    }
}

/// A reader of an engine's outbox (a relayed copy), as its checkpoint stands: what maintenance must not prune.
public struct OutboxReader: Sendable, Hashable {
    /// Where the reader continues from.
    public var cursor: ChangeCursor
    /// The highest position it has applied.
    public var highest: Int64
    public init(cursor: ChangeCursor, highest: Int64) { self.cursor = cursor; self.highest = highest }
}

/// Where a reader of a change feed is. Opaque to callers: store it as a checkpoint and pass it back.
public struct ChangeCursor: Sendable, Hashable, Codable {
    /// The engine-specific state (for PostgreSQL: the snapshots that bound the current batch).
    public var state: String
    public init(state: String = "") { self.state = state }
    /// Before the first event.
    public static let start = ChangeCursor()
}

/// Reads an engine's outbox in commit order, never skipping an event and never returning one twice for a
/// cursor. This is what the relay consumes.
///
/// ```swift
/// var cursor = ChangeCursor.start
/// while true {
///     let batch = try await feed.changes(after: cursor, limit: 500)
///     for event in batch.events { try await apply(event) }
///     cursor = batch.next          // persist as the projection's checkpoint
/// }
/// ```
public protocol ChangeFeed: Sendable {
    /// Committed events after `cursor`, at most `limit`, and the cursor to continue from.
    ///
    /// An empty batch must mean that nothing committed after `cursor` was left to read: the relay does not store the
    /// cursor of an empty batch, so it reads from the same cursor again next time.
    func changes(after cursor: ChangeCursor, limit: Int) async throws -> (events: [ChangeEvent], next: ChangeCursor)
    /// Returns when events may have committed since `cursor` was returned by ``changes(after:limit:)``, or after
    /// `timeout`. Engines that are told about commits (PostgreSQL's LISTEN/NOTIFY) return early; the default
    /// just waits `timeout`.
    func waitForChanges(after cursor: ChangeCursor, timeout: Duration) async
    /// Whether a reader whose checkpoint is `cursor`, having applied events up to position `highest`, has applied
    /// the event at `position` (what a read with a consistency token waits for). The default, `highest >= position`,
    /// is exact where positions follow commit order (SQLite); PostgreSQL also asks whether the event's transaction
    /// was in the snapshots the cursor has read, since a lower position can commit after a higher one.
    func hasApplied(_ position: Int64, through cursor: ChangeCursor, highest: Int64) async throws -> Bool
    /// Whether a reader at `cursor` (having read up to position `highest`) has read every event that a reader at
    /// `other` (up to `otherHighest`) has: what a rebuild checks before its copy replaces the live one. The
    /// default, `highest >= otherHighest`, is exact where positions follow commit order.
    func covers(_ cursor: ChangeCursor, highest: Int64, everythingIn other: ChangeCursor, otherHighest: Int64) async throws -> Bool
}

extension ChangeFeed {
    public func waitForChanges(after cursor: ChangeCursor, timeout: Duration) async { try? await Task.sleep(for: timeout) }
    public func hasApplied(_ position: Int64, through cursor: ChangeCursor, highest: Int64) async throws -> Bool { highest >= position }
    public func covers(_ cursor: ChangeCursor, highest: Int64, everythingIn other: ChangeCursor, otherHighest: Int64) async throws -> Bool {
        highest >= otherHighest
    }
}

/// Publishes change events to an event bus (the `stream` projection), e.g. a Redis Stream. Delivery is at least
/// once: each entry carries the dataset, key and version, so consumers drop duplicates by (key, version).
public protocol StreamPublisher: Sendable {
    /// Appends `events`, in order, to the stream named `stream`, keeping about `maxLength` entries when given.
    func publish(_ events: [ChangeEvent], to stream: String, maxLength: Int?) async throws
}

/// An engine that captures changes to its datasets made by anyone, Polyglot or not (another service, psql), from
/// its own log: change data capture. The relay feeds a dataset marked `capture: true` from this feed instead of
/// Polyglot's outbox, so its projections (copies on other engines, analytics, streams, cache invalidation) follow
/// every writer.
///
/// Events of a captured feed:
/// - `position` is the commit's position in the engine's log (PostgreSQL: the commit LSN), so positions follow
///   commit order and every change of one transaction has the same position;
/// - `dataset` is the dataset's name, `key` the document id or the row's primary key as text;
/// - `operation` is `put` (insert or update) or `delete`;
/// - `payload` is the document (documents datasets) or the row as a JSON object of its columns (tables), nil for a delete.
public protocol ChangeCaptureEngine: Engine {
    /// The committed changes of `datasets` (each with `capture: true`, on this engine), read through a capture
    /// slot owned by `consumer` (one per reader, e.g. a relayed copy's name): the engine keeps its log from the
    /// slot's acknowledged position on, so nothing is lost while the reader is down.
    func capturedChanges(of datasets: [DatasetSpec], consumer: String) async throws -> any CapturedChangeFeed
    /// Drops the capture slot of `consumer`, so the engine stops keeping its log for it.
    func dropCapture(consumer: String) async throws
}

/// A change feed over an engine's log. Reading does not consume: the reader acknowledges what it has durably
/// applied, and the engine may then discard its log up to there.
public protocol CapturedChangeFeed: ChangeFeed {
    /// Tells the engine every event up to `cursor` (a cursor this feed returned) is applied and checkpointed.
    func acknowledge(upTo cursor: ChangeCursor) async throws
}
