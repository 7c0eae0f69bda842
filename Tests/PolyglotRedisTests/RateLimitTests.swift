import Foundation
import Polyglot
import PolyglotRedis
import PolyglotTesting
import Testing

@Suite struct RedisRateLimitTests {
    @Test func exactlyTheAllowedNumberPassUnderConcurrency() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        // 25 per hour: nothing refills during the test, so exactly 25 of 200 concurrent callers pass.
        let limiter = try redis.rateLimiter("api", limit: 25, per: .seconds(3600))
        let other = try redis.rateLimiter("api", limit: 25, per: .seconds(3600))   // a second "process"
        let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 { group.addTask { try await (i % 2 == 0 ? limiter : other).acquire("user-1").allowed } }
            var n = 0
            for try await ok in group where ok { n += 1 }
            return n
        }
        #expect(allowed == 25)
        let denied = try await limiter.acquire("user-1")
        #expect(!denied.allowed && denied.remaining == 0)
        #expect(denied.retryAfter > .seconds(100) && denied.retryAfter <= .seconds(144), "one request per 144 s: \(denied.retryAfter)")
        #expect(try await limiter.acquire("user-2").allowed, "subjects are independent")
        try await limiter.reset("user-1")
        let fresh = try await limiter.acquire("user-1")
        #expect(fresh.allowed && fresh.remaining == 24)
    }

    @Test func burstAndCost() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        let limiter = try redis.rateLimiter("upload", limit: 10, per: .seconds(3600), burst: 3)
        #expect(try await limiter.acquire("u", cost: 2).remaining == 1)
        #expect(try await !limiter.acquire("u", cost: 2).allowed, "a denied request costs nothing")
        #expect(try await limiter.acquire("u", cost: 1).allowed)
        #expect(try await !limiter.acquire("u").allowed)
        _ = await expectPolyglotError(.invalidArgument) { _ = try await limiter.acquire("u", cost: 4) }
        _ = await expectPolyglotError(.invalidArgument) { _ = try await limiter.acquire("") }
        _ = await expectPolyglotError(.invalidArgument) { _ = try redis.rateLimiter("x", limit: 0, per: .seconds(1)) }
        _ = await expectPolyglotError(.invalidArgument) { _ = try redis.rateLimiter("x", limit: 1, per: .zero) }
    }

    @Test func requestsRefillAtTheRate() async throws {
        let (db, redis) = try await openRedisKeyValue()
        defer { Task { try? await db.close() } }
        // One request refills per 2 s: the third call is denied when the three calls run within that (with 200 ms a
        // slow start let a request refill before the third call, and the test failed). The denial is checked only
        // when they did; the refill after the wait it names is checked whenever there was a denial.
        let limiter = try redis.rateLimiter("fast", limit: 2, per: .seconds(4))
        let start = ContinuousClock.now
        #expect(try await limiter.acquire("s").allowed)
        #expect(try await limiter.acquire("s").allowed)
        let denied = try await limiter.acquire("s")
        if ContinuousClock.now - start < .milliseconds(1900) {
            #expect(!denied.allowed && denied.retryAfter > .zero && denied.retryAfter <= .seconds(2), "\(denied)")
        }
        if !denied.allowed {
            try await Task.sleep(for: denied.retryAfter + .milliseconds(50))
            #expect(try await limiter.acquire("s").allowed)
        }
    }
}
