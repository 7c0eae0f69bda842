import Foundation
import Polyglot
import PolyglotRedis
import PolyglotTesting
import Testing

@Suite struct RedisLeaderboardTests {
    @Test func addIncrementRankTopAndAround() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let board = try redis.leaderboard("weekly")
        for (i, name) in ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"].enumerated() {
            try await board.add(name, score: Double(i * 10))
        }
        #expect(try await board.count() == 10)
        #expect(try await board.top(3).map(\.member) == ["p9", "p8", "p7"])
        #expect(try await board.top(1).first == .init(rank: 1, member: "p9", score: 90))
        #expect(try await board.rank("p0") == 10)
        #expect(try await board.increment("p0", by: 95) == 95)
        #expect(try await board.rank("p0") == 1)
        let around = try await board.around("p5", radius: 2)
        #expect(around.map(\.member) == ["p7", "p6", "p5", "p4", "p3"])
        #expect(around.map(\.rank) == [4, 5, 6, 7, 8], "p0 moved to the top, so p5 is 6th")
        #expect(try await board.around("p0", radius: 2).map(\.rank) == [1, 2, 3], "clipped at the top")
        #expect(try await board.around("nobody", radius: 2).isEmpty)
        #expect(try await board.rank("nobody") == nil)
        #expect(try await board.score("nobody") == nil)
        try await board.add("p9", score: 10, onlyIfBetter: true)
        #expect(try await board.score("p9") == 90, "a worse score does not replace a personal best")
        try await board.add("p9", score: 200, onlyIfBetter: true)
        #expect(try await board.score("p9") == 200)
        #expect(try await board.remove("p9"))
        #expect(try await !board.remove("p9"))
        #expect(try await board.top(0).isEmpty)
        _ = await expectPolyglotError(.invalidArgument) { try await board.add("x", score: .nan) }
        _ = await expectPolyglotError(.invalidArgument) { try await board.add("", score: 1) }
    }

    @Test func lowestFirstAndConcurrentIncrements() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let laps = try redis.leaderboard("laps", order: .lowestFirst)
        try await laps.add("ada", score: 61.5)
        try await laps.add("bob", score: 59.25)
        #expect(try await laps.top(2).map(\.member) == ["bob", "ada"])
        try await laps.add("bob", score: 70, onlyIfBetter: true)
        #expect(try await laps.score("bob") == 59.25)
        let points = try redis.leaderboard("points")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<100 { group.addTask { try await points.increment("team", by: 1.5) } }
            try await group.waitForAll()
        }
        #expect(try await points.score("team") == 150)
    }
}
