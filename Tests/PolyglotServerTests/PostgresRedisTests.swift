import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Polyglot
import PolyglotPostgres
import PolyglotRedis
import PolyglotServer
import PolyglotSQLite
import PolyglotTesting
import Testing

@Suite("HTTP data API on PostgreSQL + Redis")
struct PostgresRedisTests {
    static let pgVariable = "POLYGLOT_TEST_PG18_URL"
    static let redisVariable = "POLYGLOT_TEST_REDIS_URL"

    @Test("documents through a Redis cache, key-value and time series on PostgreSQL")
    func roundTrip() async throws {
        let pg = try #require(TestServers.first([Self.pgVariable, "POLYGLOT_TEST_PG15_URL"]), Comment(rawValue: TestServers.missing(Self.pgVariable)))
        let redis = try #require(Optional(TestServers.value(Self.redisVariable)).flatMap { $0.isEmpty ? nil : $0 }, Comment(rawValue: TestServers.missing(Self.redisVariable)))
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let map = """
        engines:
          primary: { kind: postgres, url: "\(pg)", options: { schema: srv_\(suffix) } }
          cache:   { kind: redis, url: "\(redis)", options: { keyPrefix: "srvtest-\(suffix):" } }
        datasets:
          products_\(suffix):
            model: documents
            engine: primary
            fields: { price: number, category: string }
            projections:
              - { kind: cache, engine: cache, ttl: 5m }
              - { kind: search, engine: primary, fields: [name] }
          sessions_\(suffix): { model: keyValue, engine: primary }
          views_\(suffix):    { model: timeSeries, engine: primary }
        """
        var registry = EngineRegistry.embedded
        registry.registerPostgres()
        registry.registerRedis()
        let (f, secrets) = try await Fixture.make(map: map, registry: registry, keys: ["app": ["*:write"], "ops": ["*:admin"]])
        let app: [String: String] = ["Authorization": "Bearer \(secrets["app"]!)"]
        let ops: [String: String] = ["Authorization": "Bearer \(secrets["ops"]!)"]
        let products = "products_\(suffix)"
        try await f.test { c in
            let put = try await c.call(.put, "/v1/documents/\(products)/p1", json: #"{"name":"Trail boot","price":89,"category":"shoes"}"#, headers: app)
            #expect(put.status == .ok, "\(put.text)")
            let token = try #require(put.headers[HTTPField.Name("Polyglot-Token")!])
            let etag = try #require(put.headers[.eTag])
            for _ in 0..<5 {
                let get = try await c.call(.get, "/v1/documents/\(products)/p1", headers: app.merging(["Polyglot-Token": token]) { a, _ in a })
                #expect(get.status == .ok && get.headers[.eTag] == etag && get.json["price"] == 89)
            }
            let stale = try await c.call(.put, "/v1/documents/\(products)/p1", json: #"{"price":1}"#, headers: app.merging(["If-Match": "\"0\""]) { a, _ in a })   // versions start at 1
            #expect(stale.status == .preconditionFailed, "\(stale.text)")
            let update = try await c.call(.put, "/v1/documents/\(products)/p1", json: #"{"name":"Trail boot","price":79}"#, headers: app.merging(["If-Match": etag]) { a, _ in a })
            #expect(update.status == .ok, "\(update.text)")
            // The write invalidated the Redis entry: the next read sees the new version.
            #expect(try await c.call(.get, "/v1/documents/\(products)/p1", headers: app).json["price"] == 79)
            let filter = #"{"price":{"$lt":100}}"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            #expect(try await c.call(.get, "/v1/documents/\(products)?filter=\(filter)", headers: app).json["items"]?.arrayValue?.count == 1)
            let hits = try await c.call(.get, "/v1/search/\(products)?q=boot", headers: app)
            #expect(hits.json["hits"]?.arrayValue?.count == 1, "\(hits.text)")
            #expect(try await c.call(.put, "/v1/kv/sessions_\(suffix)/s1?ttl=5m", body: "v", headers: app).status == .ok)
            #expect(try await c.call(.get, "/v1/kv/sessions_\(suffix)/s1", headers: app).text == "v")
            #expect(try await c.call(.post, "/v1/timeseries/views_\(suffix)", json: #"{"samples":[{"series":"/","value":1}]}"#, headers: app).status == .ok)
            #expect(try await c.call(.get, "/v1/timeseries/views_\(suffix)/range?series=%2F", headers: app).json["samples"]?.arrayValue?.count == 1)

            let health = try await c.call(.get, "/health")
            #expect(health.status == .ok)
            #expect(Set(health.json["engines"]?.arrayValue?.compactMap { $0["kind"]?.stringValue } ?? []) == ["postgres", "redis"])
            let status = try await c.call(.get, "/v1/status", headers: ops)
            let cache = try #require(status.json["caches"]?.arrayValue?.first)
            #expect((cache["hits"]?.doubleValue ?? 0) >= 4)
            #expect(try await c.call(.delete, "/v1/documents/\(products)/p1", headers: app).status == .ok)
        }
    }
}
