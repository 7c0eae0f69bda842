/// How fresh the reads of the current task must be.
///
/// Inside ``Polyglot/reading(atLeast:_:)`` every read on the token's engine sees at least the write that
/// produced the token: an engine with read replicas serves it from a replica only once that replica has
/// replayed the write, and otherwise waits up to a bound and then reads the primary.
///
/// ```swift
/// let token = try await orders.put("o1", ["status": "paid"])
/// let order = try await db.reading(atLeast: token) { try await orders.get("o1") }   // never stale
/// ```
public enum ReadConsistency {
    /// The token the current task's reads must have caught up with, if any.
    @TaskLocal public static var atLeast: ConsistencyToken?
}

extension Polyglot {
    /// Runs `body` with reads that see at least the write that produced `token` (read-your-writes across
    /// replicas). Without replicas every read already does.
    public func reading<R: Sendable>(atLeast token: ConsistencyToken?, _ body: @Sendable () async throws -> R) async throws -> R {
        try await ReadConsistency.$atLeast.withValue(token) { try await body() }
    }
}
