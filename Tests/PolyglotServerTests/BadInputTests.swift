import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Polyglot
import PolyglotServer
import Testing

@Suite("Bad input is a 4xx problem, never a 500")
struct BadInputTests {
    @Test("malformed JSON, wrong types, unknown dataset or route, bad filter, wrong vector dimension, oversized body")
    func badInput() async throws {
        let (f, _) = try await Fixture.make { $0.maxBodyBytes = 4096 }
        try await f.test { c in
            func expectProblem(_ r: TestResponse, _ status: HTTPResponse.Status, _ code: String, _ sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(r.status == status, "\(r.text)", sourceLocation: sourceLocation)
                #expect(r.isProblem, sourceLocation: sourceLocation)
                #expect(r.problemCode == code, "\(r.text)", sourceLocation: sourceLocation)
                #expect((r.json["detail"]?.stringValue ?? "").count > 10, sourceLocation: sourceLocation)
                #expect(r.json["status"]?.intValue == Int(status.code), sourceLocation: sourceLocation)
            }
            // Malformed JSON.
            expectProblem(try await c.call(.put, "/v1/documents/products/p1", json: #"{"price": 1"#), .badRequest, "bad-json")
            expectProblem(try await c.call(.post, "/v1/documents/products", json: "not json"), .badRequest, "bad-json")
            expectProblem(try await c.call(.post, "/v1/documents/products", json: "[1,2]"), .badRequest, "bad-json")
            expectProblem(try await c.call(.post, "/v1/vectors/embeddings", json: ""), .badRequest, "empty-body")
            // Wrong types.
            expectProblem(try await c.call(.put, "/v1/documents/products/p1", json: #"{"price":"cheap"}"#), .badRequest, "invalid-argument")
            expectProblem(try await c.call(.put, "/v1/documents/products/p1", json: #"[1]"#), .badRequest, "invalid-argument")
            expectProblem(try await c.call(.post, "/v1/documents/products", json: #"{"put":"p1"}"#), .badRequest, "bad-field")
            expectProblem(try await c.call(.post, "/v1/documents/products", json: #"{"put":[{"id":5,"body":{}}]}"#), .badRequest, "bad-field")
            expectProblem(try await c.call(.post, "/v1/nearest/embeddings", json: #"{"vector":[1,"a",0]}"#), .badRequest, "bad-vector")
            expectProblem(try await c.call(.post, "/v1/nearest/embeddings", json: #"{"vector":[1,0,0],"k":0}"#), .badRequest, "bad-field")
            expectProblem(try await c.call(.post, "/v1/timeseries/views", json: #"{"samples":[{"series":"a","value":"x"}]}"#), .badRequest, "bad-field")
            expectProblem(try await c.call(.post, "/v1/timeseries/views", json: #"{"samples":[{"series":"a","value":1,"time":"yesterday"}]}"#), .badRequest, "bad-time")
            let nan = try await c.call(.get, "/v1/timeseries/views/range?series=a&from=nan")
            expectProblem(nan, .badRequest, "bad-time")
            #expect(nan.json["detail"]?.stringValue?.contains("it is \"nan\"") == true, "the value as sent: \(nan.text)")
            expectProblem(try await c.call(.get, "/v1/documents/products?limit=abc"), .badRequest, "bad-query")
            expectProblem(try await c.call(.get, "/v1/graph/links/traverse/a?depth=99"), .badRequest, "bad-query")
            // Unknown dataset, wrong model, unknown route.
            expectProblem(try await c.call(.get, "/v1/documents/nope/p1"), .notFound, "unknown-dataset")
            expectProblem(try await c.call(.get, "/v1/kv/products/k"), .badRequest, "wrong-model")
            expectProblem(try await c.call(.get, "/v1/nothing/here"), .notFound, "no-route")
            expectProblem(try await c.call(.patch, "/v1/documents/products/p1"), .notFound, "no-route")
            // Bad filters.
            let enc = { (s: String) in s.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
            expectProblem(try await c.call(.get, "/v1/documents/products?filter=\(enc("{price"))"), .badRequest, "bad-filter")
            expectProblem(try await c.call(.get, "/v1/documents/products?filter=\(enc(#"{"price":{"$near":1}}"#))"), .badRequest, "bad-filter")
            expectProblem(try await c.call(.get, "/v1/documents/products?filter=\(enc(#"{"a b":1}"#))"), .badRequest, "bad-filter")
            expectProblem(try await c.call(.get, "/v1/documents/products?filter=\(enc(#"{"colour":"red"}"#))"), .badRequest, "invalid-filter")
            expectProblem(try await c.call(.get, "/v1/documents/products?sort=\(enc("price,,"))&filter=\(enc("[]"))"), .badRequest, "bad-filter")
            // Wrong vector dimension.
            expectProblem(try await c.call(.put, "/v1/vectors/embeddings/v1", json: #"{"vector":[1,2]}"#), .badRequest, "invalid-vector")
            expectProblem(try await c.call(.post, "/v1/nearest/embeddings", json: #"{"vector":[1,2,3,4]}"#), .badRequest, "invalid-vector")
            // Oversized body (declared and streamed).
            let big = String(repeating: "x", count: 5000)
            expectProblem(try await c.call(.put, "/v1/kv/sessions/big", body: big), .contentTooLarge, "body-too-large")
            // A bad consistency token.
            expectProblem(try await c.call(.get, "/v1/documents/products/p1", headers: ["Polyglot-Token": "soon"]), .badRequest, "bad-token")
            // Nothing above was a 500, and nothing was logged as an error.
            #expect(!f.logs.all.contains("error request failed"))
        }
    }

    @Test("missing, invalid and revoked keys, and keys without the scope")
    func keys() async throws {
        let (f, secrets) = try await Fixture.make(keys: ["reader": ["products:read"], "writer": ["products:write", "sessions:write"], "ops": ["*:admin"]])
        let reader = try #require(secrets["reader"]), writer = try #require(secrets["writer"]), ops = try #require(secrets["ops"])
        #expect(f.server.authRequired)
        try await f.test { c in
            let auth = { (k: String) in ["Authorization": "Bearer \(k)"] }
            let missing = try await c.call(.get, "/v1/documents/products/p1")
            #expect(missing.status == .unauthorized && missing.problemCode == "missing-key")
            #expect(missing.headers[.wwwAuthenticate] != nil)
            #expect(try await c.call(.get, "/v1/documents/products/p1", headers: auth("pk_aaaaaaaaaaaa_" + String(repeating: "b", count: 43))).problemCode == "invalid-key")
            // The reader's key with its last character changed (a random key may already end in "Z").
            let tampered = String(reader.dropLast()) + (reader.hasSuffix("Z") ? "Y" : "Z")
            #expect(try await c.call(.get, "/v1/documents/products/p1", headers: auth(tampered)).problemCode == "invalid-key")

            #expect(try await c.call(.put, "/v1/documents/products/p1", json: #"{"price":1}"#, headers: auth(writer)).status == .ok)
            #expect(try await c.call(.get, "/v1/documents/products/p1", headers: auth(reader)).status == .ok)
            #expect(try await c.call(.get, "/v1/documents/products/p1", headers: ["X-API-Key": reader]).status == .ok)
            // write implies read; read does not imply write; a scope is per dataset.
            #expect(try await c.call(.get, "/v1/documents/products/p1", headers: auth(writer)).status == .ok)
            let denied = try await c.call(.put, "/v1/documents/products/p1", json: #"{"price":2}"#, headers: auth(reader))
            #expect(denied.status == .forbidden && denied.problemCode == "missing-scope")
            #expect(try await c.call(.get, "/v1/kv/sessions/x", headers: auth(reader)).status == .forbidden)
            // Server-wide figures need *:admin.
            #expect(try await c.call(.get, "/v1/status", headers: auth(writer)).status == .forbidden)
            #expect(try await c.call(.get, "/metrics", headers: auth(reader)).status == .forbidden)
            #expect(try await c.call(.get, "/v1/status", headers: auth(ops)).status == .ok)
            #expect(try await c.call(.get, "/metrics", headers: auth(ops)).status == .ok)
            // Open routes stay open.
            #expect(try await c.call(.get, "/health").status == .ok)
            #expect(try await c.call(.get, "/openapi.json").status == .ok)
            // /v1/datasets lists only what the key may read.
            #expect(try await c.call(.get, "/v1/datasets", headers: auth(reader)).json["datasets"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["products"])

            // Revoking takes effect on the running server (the key file is re-read within a second).
            let store = KeyStore(path: f.dir + "/polyglot-keys.json")
            let readerId = try #require(try store.list().first { $0.name == "reader" }?.id)
            #expect(try store.revoke(readerId))
            try await Task.sleep(for: .milliseconds(1100))
            let revoked = try await c.call(.get, "/v1/documents/products/p1", headers: auth(reader))
            #expect(revoked.status == .unauthorized && revoked.problemCode == "invalid-key")

            // No secret ever reaches the logs, though every request above was logged.
            let logs = f.logs.all
            #expect(logs.contains("request"))
            for secret in [reader, writer, ops] {
                #expect(!logs.contains(secret))
                #expect(!logs.contains(String(secret.suffix(43))))
            }
            // The key file holds hashes only.
            let file = try String(contentsOfFile: f.dir + "/polyglot-keys.json", encoding: .utf8)
            for secret in [reader, writer, ops] { #expect(!file.contains(String(secret.suffix(43)))) }
            #expect(file.contains("secretSHA256"))
        }
    }

    @Test("refuses to start off loopback without keys, and with --auth off")
    func startupRules() async throws {
        var config = ServerConfiguration()
        config.host = "0.0.0.0"
        #expect(throws: PolyglotError.self) { try config.authenticationRequired() }
        config.authentication = .off
        #expect(throws: PolyglotError.self) { try config.authenticationRequired() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)").path
        config.keys = KeyStore(path: dir + "/k.json")
        _ = try config.keys!.create(name: "ops", scopes: [KeyScope(parsing: "*:admin")])
        #expect(throws: PolyglotError.self) { try config.authenticationRequired() }   // still off: refused
        config.authentication = .automatic
        #expect(try config.authenticationRequired() == true)
        config.host = "127.0.0.1"
        #expect(try config.authenticationRequired() == true)   // a key exists: required on loopback too
        config.keys = nil
        #expect(try config.authenticationRequired() == false)
        #expect(throws: PolyglotError.self) { try KeyScope(parsing: "products:delete") }
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("per-key rate limit and request timeout")
    func limits() async throws {
        // A burst of 3, then one request per 100 s: the 4th request is refused however slow the machine (with one
        // per 5 s, a full suite under CPU load once took longer than that over these four requests).
        let (f, _) = try await Fixture.make { $0.rateLimitPerSecond = 0.01; $0.rateLimitBurst = 3 }
        try await f.test { c in
            for _ in 0..<3 { #expect(try await c.call(.get, "/v1/kv/sessions/x").status == .notFound) }
            let limited = try await c.call(.get, "/v1/kv/sessions/x")
            #expect(limited.status == .tooManyRequests && limited.problemCode == "rate-limited", "\(limited.text)")
            #expect(limited.headers[.retryAfter] != nil)
            #expect(limited.json["detail"]?.stringValue?.contains("one request every 100 s (bursts of 3)") == true, "\(limited.text)")
            #expect(try await c.call(.get, "/health").status == .ok)   // open routes are not limited
        }
        // A search on a projection the relay keeps on another engine waits for the token's write; nobody relays here,
        // so the request timeout answers first.
        let relayed = """
        engines:
          primary: { kind: sqlite, path: data.sqlite }
          other:   { kind: sqlite, path: other.sqlite }
        datasets:
          products:
            model: documents
            engine: primary
            projections:
              - { kind: search, engine: other, fields: [name] }
        """
        let (slow, _) = try await Fixture.make(map: relayed) { $0.requestTimeout = .milliseconds(200) }
        try await slow.test { c in
            let start = ContinuousClock.now
            let r = try await c.call(.get, "/v1/search/products?q=boot", headers: ["Polyglot-Token": "primary:999999"])
            #expect(r.status == .serviceUnavailable && r.problemCode == "timeout", "\(r.text)")
            #expect(r.headers[.retryAfter] != nil)
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }
}
