import Foundation
import PolyglotTesting

/// Addresses of the Redis test servers started by `scripts/services/up redis` (see scripts/services/start-redis.sh).
/// Each is "" when the server was not started; tests `#require` it with `TestServers.missing(...)` as the message,
/// so a missing server fails the test instead of skipping it:
///
/// ```swift
/// let url = try #require(RedisServers.main, TestServers.missing(RedisServers.mainVariable))
/// ```
enum RedisServers {
    static let mainVariable = "POLYGLOT_TEST_REDIS_URL"
    static let faultVariable = "POLYGLOT_TEST_REDISFAULT_URL"
    static let clientFaultVariable = "POLYGLOT_TEST_REDISCLIENTFAULT_URL"
    static let clusterVariable = "POLYGLOT_TEST_REDIS_CLUSTER_URLS"
    static let tlsVariable = "POLYGLOT_TEST_REDIS_TLS_URL"
    static let tlsCAVariable = "POLYGLOT_TEST_REDIS_TLS_CA"

    /// The main server, `redis://127.0.0.1:PORT`; nil when not started.
    static var main: String? { nonEmpty(TestServers.value(mainVariable)) }
    /// A separate server that fault tests stop and restart with `scripts/services/redis-ctl redisfault ...`.
    static var fault: String? { nonEmpty(TestServers.value(faultVariable)) }
    /// Another such server, only for the client's own fault tests (`redis-ctl redisclientfault ...`).
    static var clientFault: String? { nonEmpty(TestServers.value(clientFaultVariable)) }
    /// The cluster masters' URLs; nil when not started.
    static var cluster: [String]? {
        nonEmpty(TestServers.value(clusterVariable)).map { $0.split(separator: ",").map(String.init) }
    }
    /// The main server's TLS port, `rediss://127.0.0.1:PORT`; nil when not started or Redis lacks TLS.
    static var tls: String? { nonEmpty(TestServers.value(tlsVariable)) }
    /// The PEM certificate the TLS server uses (self-signed, so it is also the CA to trust).
    static var tlsCA: String? { nonEmpty(TestServers.value(tlsCAVariable)) }

    /// Runs `scripts/services/redis-ctl NAME ACTION` (start, stop, restart, kill) and waits for it (see
    /// ``TestServers/runScript(_:_:)``: no blocked signals, so the servers it starts can be stopped by SIGTERM).
    static func control(_ name: String, _ action: String) async throws {
        try await TestServers.runScript("redis-ctl", [name, action])
    }

    private static func nonEmpty(_ s: String) -> String? { s.isEmpty ? nil : s }
}
