import Foundation
import Polyglot

extension RedisEngine {
    /// A leaderboard: a Redis sorted set (`<keyPrefix>z:<name>`) of members and scores.
    ///
    /// ```swift
    /// let board = try redis.leaderboard("weekly")
    /// try await board.add("ada", score: 120)
    /// try await board.increment("bob", by: 15)
    /// let podium = try await board.top(3)              // [Entry(rank: 1, member: "ada", score: 120), ...]
    /// let mine = try await board.around("bob", radius: 2)
    /// ```
    public func leaderboard(_ name: String, order: RedisLeaderboard.Order = .highestFirst) throws -> RedisLeaderboard {
        try RedisEngine.checkName(name, what: "leaderboard")
        return RedisLeaderboard(link: link, name: name, key: settings.keyPrefix + "z:" + name, order: order)
    }
}

/// Members ranked by score. Ranks start at 1; members with equal scores are ordered by member name (reversed
/// for ``Order/highestFirst``, as Redis does). Every call is one Redis command or one script.
public struct RedisLeaderboard: Sendable {
    public enum Order: Sendable, Hashable {
        /// Rank 1 is the highest score (points, wins).
        case highestFirst
        /// Rank 1 is the lowest score (lap times, golf).
        case lowestFirst
    }

    /// A member's place.
    public struct Entry: Sendable, Hashable {
        public var rank: Int
        public var member: String
        public var score: Double
        public init(rank: Int, member: String, score: Double) { self.rank = rank; self.member = member; self.score = score }
    }

    let link: RedisLink
    public let name: String
    let key: String
    public let order: Order

    private var descending: Bool { order == .highestFirst }

    private func check(_ member: String) throws {
        guard !member.isEmpty, member.utf8.count <= 1024 else {
            throw PolyglotError(.invalidArgument, "Leaderboard '\(name)': a member must have 1 to 1024 bytes.", fix: "Use a player or item id.")
        }
    }

    private func check(score: Double) throws {
        guard score.isFinite else {
            throw PolyglotError(.invalidArgument, "Leaderboard '\(name)': score \(score) is not a finite number.", fix: "Pass a finite score.")
        }
    }

    /// Sets `member`'s score. With `onlyIfBetter`, keeps the old score when it ranks better (higher for
    /// ``Order/highestFirst``, lower for ``Order/lowestFirst``): a personal best.
    public func add(_ member: String, score: Double, onlyIfBetter: Bool = false) async throws {
        try check(member)
        try check(score: score)
        if onlyIfBetter {
            _ = try await link.send("ZADD", key, descending ? "GT" : "LT", score, member)
        } else {
            _ = try await link.send("ZADD", key, score, member)
        }
    }

    /// Adds `delta` to `member`'s score (a missing member starts at 0) and returns the new score.
    @discardableResult
    public func increment(_ member: String, by delta: Double) async throws -> Double {
        try check(member)
        try check(score: delta)
        let reply = try await link.send("ZINCRBY", key, delta, member)
        guard let score = reply.double else {
            throw PolyglotError(.engineFailure, "Leaderboard '\(name)': ZINCRBY answered \(reply).", fix: "Check the server is Redis 7 or later.")
        }
        return score
    }

    /// The member's score, or nil when it is not on the board.
    public func score(_ member: String) async throws -> Double? {
        try check(member)
        return try await link.send("ZSCORE", key, member).double
    }

    /// The member's rank (1 is first), or nil when it is not on the board.
    public func rank(_ member: String) async throws -> Int? {
        try check(member)
        let reply = try await link.send(descending ? "ZREVRANK" : "ZRANK", key, member)
        return reply.int.map { Int($0) + 1 }
    }

    /// The first `n` entries.
    public func top(_ n: Int) async throws -> [Entry] {
        guard n > 0 else {
            if n == 0 { return [] }
            throw PolyglotError(.invalidArgument, "Leaderboard '\(name)': top(\(n)) needs a count of 0 or more.", fix: "Pass how many entries to return.")
        }
        let reply = try await link.send(descending ? "ZREVRANGE" : "ZRANGE", key, 0, n - 1, "WITHSCORES")
        return entries(reply, firstRank: 1)
    }

    /// The member's entry with up to `radius` entries on either side, in rank order; empty when the member is not
    /// on the board.
    public func around(_ member: String, radius: Int) async throws -> [Entry] {
        try check(member)
        guard radius >= 0 else {
            throw PolyglotError(.invalidArgument, "Leaderboard '\(name)': radius \(radius) is negative.", fix: "Pass how many neighbours to return on each side.")
        }
        let reply = try await link.eval(link.scripts.around, keys: [key], arguments: [member, radius, descending ? "desc" : "asc"],
                                        during: "leaderboard '\(name)' around")
        guard let parts = reply.array, parts.count == 2, let first = parts[0].int else { return [] }
        return entries(parts[1], firstRank: Int(first) + 1)
    }

    /// Removes the member; false when it was not on the board.
    @discardableResult
    public func remove(_ member: String) async throws -> Bool {
        try check(member)
        return try await link.send("ZREM", key, member).int == 1
    }

    /// How many members the board has.
    public func count() async throws -> Int {
        Int(try await link.send("ZCARD", key).int ?? 0)
    }

    /// Removes every member.
    public func reset() async throws {
        _ = try await link.send("DEL", key)
    }

    private func entries(_ reply: RESPValue, firstRank: Int) -> [Entry] {
        // RESP2: a flat [member, score, ...]; RESP3: [[member, score], ...].
        let items = reply.array ?? []
        var out: [Entry] = []
        if let first = items.first, first.array != nil {
            for (i, pair) in items.enumerated() {
                guard let p = pair.array, p.count == 2, let m = p[0].string, let s = p[1].double else { continue }
                out.append(Entry(rank: firstRank + i, member: m, score: s))
            }
            return out
        }
        var i = 0
        while i + 1 < items.count {
            if let m = items[i].string, let s = items[i + 1].double {
                out.append(Entry(rank: firstRank + out.count, member: m, score: s))
            }
            i += 2
        }
        return out
    }
}
