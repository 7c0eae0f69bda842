import Foundation
import Polyglot

extension RedisEngine {
    /// A rate limiter allowing `limit` requests per `period` for each subject, with bursts of up to `burst`
    /// (default: `limit`) at once.
    ///
    /// ```swift
    /// let logins = try redis.rateLimiter("login", limit: 5, per: .seconds(60))
    /// let decision = try await logins.acquire("user:42")
    /// guard decision.allowed else { throw TooManyRequests(retryAfter: decision.retryAfter) }
    /// ```
    public func rateLimiter(_ name: String, limit: Int, per period: Duration, burst: Int? = nil) throws -> RedisRateLimiter {
        try RedisEngine.checkName(name, what: "rate limiter")
        guard limit >= 1 else {
            throw PolyglotError(.invalidArgument, "Rate limiter '\(name)': limit \(limit) is not positive.", fix: "Allow at least 1 request per period.")
        }
        let micros = Double(period.components.seconds) * 1e6 + Double(period.components.attoseconds) / 1e12
        guard micros >= 1 else {
            throw PolyglotError(.invalidArgument, "Rate limiter '\(name)': period \(period) is not positive.", fix: "Pass a period such as .seconds(60).")
        }
        let burst = burst ?? limit
        guard burst >= 1 else {
            throw PolyglotError(.invalidArgument, "Rate limiter '\(name)': burst \(burst) is not positive.", fix: "Allow a burst of at least 1.")
        }
        return RedisRateLimiter(link: link, name: name, prefix: settings.keyPrefix + "r:" + name + ":", limit: limit, period: period,
                                burst: burst, intervalMicroseconds: micros / Double(limit))
    }
}

/// What ``RedisRateLimiter/acquire(_:cost:)`` decided.
public struct RateLimitDecision: Sendable, Hashable {
    /// Whether the request may proceed.
    public var allowed: Bool
    /// Requests that would still be allowed right now.
    public var remaining: Int
    /// When denied: how long until this request would be allowed. Zero when allowed.
    public var retryAfter: Duration
    /// How long until the subject is back to a full burst.
    public var resetAfter: Duration
}

/// A rate limiter with the generic cell rate algorithm (GCRA), as one Lua script per decision: atomic under any
/// concurrency, one key per subject (`<keyPrefix>r:<name>:<subject>`) holding the theoretical arrival time, and
/// the server's clock (so clients' clocks do not matter). Requests are spaced `period / limit` apart on average,
/// with up to `burst` at once; a denied request costs nothing.
public struct RedisRateLimiter: Sendable {
    let link: RedisLink
    public let name: String
    let prefix: String
    public let limit: Int
    public let period: Duration
    public let burst: Int
    let intervalMicroseconds: Double

    /// Takes `cost` units for `subject` if allowed.
    public func acquire(_ subject: String, cost: Int = 1) async throws -> RateLimitDecision {
        guard !subject.isEmpty, subject.utf8.count <= 512 else {
            throw PolyglotError(.invalidArgument, "Rate limiter '\(name)': a subject must have 1 to 512 bytes.", fix: "Use a user id, an IP address or an API key.")
        }
        guard (1...burst).contains(cost) else {
            throw PolyglotError(.invalidArgument, "Rate limiter '\(name)': cost \(cost) is outside 1...\(burst) (the burst), so it could never be allowed.",
                                fix: "Use a cost between 1 and the burst, or raise the burst.")
        }
        let reply = try await link.eval(link.scripts.gcra, keys: [prefix + subject],
                                        arguments: [String(format: "%.3f", intervalMicroseconds), burst, cost], during: "rate limit '\(name)'")
        guard let r = reply.array, r.count == 4, let allowed = r[0].int, let remaining = r[1].int, let retry = r[2].int, let reset = r[3].int else {
            throw PolyglotError(.engineFailure, "Rate limiter '\(name)': the script answered \(reply).", fix: "Check the server is Redis 7 or later.")
        }
        return RateLimitDecision(allowed: allowed == 1, remaining: Int(max(0, remaining)),
                                 retryAfter: .microseconds(max(0, retry)), resetAfter: .microseconds(max(0, reset)))
    }

    /// Forgets `subject`'s history: it gets a full burst again.
    public func reset(_ subject: String) async throws {
        _ = try await link.send("DEL", prefix + subject)
    }
}
