import Foundation
import NIOCore
import PolyglotTesting
import Testing
@testable import PolyglotRedis

/// TLS against the main server's TLS port (a throwaway self-signed certificate made by start-redis.sh).
@Suite struct TLSTests {
    func tlsURL() throws -> (url: String, ca: String) {
        let url = try #require(RedisServers.tls, Comment(rawValue: TestServers.missing(RedisServers.tlsVariable)))
        let ca = try #require(RedisServers.tlsCA, Comment(rawValue: TestServers.missing(RedisServers.tlsCAVariable)))
        return (url, ca)
    }

    @Test func verifiedTLS() async throws {
        let (url, ca) = try tlsURL()
        let redis = try RedisClient(configuration: RedisConfiguration(url: url, tls: .trusting(caFile: ca)))
        let k = "test:tls:\(UUID().uuidString)"
        try await redis.set(k, [0, 13, 10] as [UInt8])
        #expect(try await redis.get(k).map { Array($0.readableBytesView) } == [0, 13, 10])
        // The TLS port and the plain port are the same server.
        let plain = try RedisClient(url: try #require(RedisServers.main))
        #expect(try await plain.get(k) != nil)
        try await redis.del(k)
        // RESP3 and pub/sub over TLS too.
        var c3 = try RedisConfiguration(url: url, tls: .trusting(caFile: ca))
        c3.protocolVersion = .resp3
        let r3 = try RedisClient(configuration: c3)
        try await r3.ping()
        let sub = try await r3.subscribe(to: ["tls.\(k)"])
        #expect(try await plain.publish("m", to: "tls.\(k)") == 1)
        for try await m in sub { #expect(m.text == "m"); break }
        await sub.close()
        await r3.close()
        await plain.close()
        await redis.close()
    }

    @Test func untrustedCertificateIsRefused() async throws {
        let (url, _) = try tlsURL()
        // rediss:// alone trusts the system roots, which do not include the test certificate.
        let redis = try RedisClient(url: url)
        do {
            try await redis.ping()
            Issue.record("an untrusted certificate was accepted")
        } catch {
            #expect(error.kind == .tls, "\(error)")
        }
        await redis.close()
    }

    /// By host name: the certificate names `localhost` (and 127.0.0.1), and SNI carries the name.
    @Test func verifiedByHostName() async throws {
        let (url, ca) = try tlsURL()
        let byName = url.replacingOccurrences(of: "127.0.0.1", with: "localhost")
        let redis = try RedisClient(configuration: RedisConfiguration(url: byName, tls: .trusting(caFile: ca)))
        try await redis.ping()
        await redis.close()
    }

    @Test func plainClientOnTheTLSPortFailsTyped() async throws {
        let (url, _) = try tlsURL()
        let plainURL = url.replacingOccurrences(of: "rediss://", with: "redis://")
        let redis = try RedisClient(configuration: RedisConfiguration(url: plainURL, commandTimeout: .seconds(3)))
        do {
            try await redis.ping()
            Issue.record("plain RESP worked on a TLS port")
        } catch {
            #expect([.connectionClosed, .protocolViolation, .timeout].contains(error.kind), "\(error)")
        }
        await redis.close()
    }
}
