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
    /// How long a read of a relayed projection waits for the relay to reach ``atLeast`` before it throws `.stale`.
    @TaskLocal public static var maxWait: Duration = .seconds(5)
    /// Reads of the current task go to the primary of an engine with read replicas (no replica, however fresh).
    /// The relay reads its own state this way: a checkpoint read from a lagging replica would make every step
    /// find its batch fenced off by a checkpoint that, on the primary, has already moved.
    @TaskLocal public static var fromPrimary = false
}

extension Polyglot {
    /// Runs `body` with reads that see at least the write that produced `token` (read-your-writes across
    /// replicas). Without replicas every read already does.
    /// Projections the relay keeps on other engines (search, vectors, graph) wait up to `maxWait` for the relay to
    /// apply the token's write, then throw `.stale` with how far behind they are.
    public func reading<R: Sendable>(atLeast token: ConsistencyToken?, maxWait: Duration = .seconds(5),
                                     _ body: @Sendable () async throws -> R) async throws -> R {
        try await ReadConsistency.$maxWait.withValue(maxWait) {
            try await ReadConsistency.$atLeast.withValue(token) { try await body() }
        }
    }
}
