import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Polyglot
import PolyglotServer
import Testing

@Suite("HTTP data API on the embedded default")
struct APITests {
    @Test("documents: put, get with ETag, conditional writes, delete, consistency token")
    func documentsCRUD() async throws {
        let (f, _) = try await Fixture.make()
        try await f.test { c in
            let put = try await c.call(.put, "/v1/documents/products/p1", json: #"{"name":"Trail boot","description":"Waterproof leather boot","price":89,"category":"shoes","stock":3}"#)
            #expect(put.status == .ok)
            let token = try #require(put.headers[HTTPField.Name("Polyglot-Token")!])
            #expect(token.hasPrefix("primary:"))
            let etag = try #require(put.headers[.eTag])
            #expect(put.json["version"]?.intValue.map { "\"\($0)\"" } == etag)

            let get = try await c.call(.get, "/v1/documents/products/p1", headers: ["Polyglot-Token": token])
            #expect(get.status == .ok)
            #expect(get.headers[.eTag] == etag)
            #expect(get.json["name"] == "Trail boot")
            #expect(try await c.call(.get, "/v1/documents/products/p1", headers: ["If-None-Match": etag]).status == .notModified)

            // Optimistic concurrency: a stale ETag is refused, the current one accepted.
            let update = try await c.call(.put, "/v1/documents/products/p1", json: #"{"name":"Trail boot","price":79,"category":"shoes"}"#, headers: ["If-Match": etag])
            #expect(update.status == .ok)
            let stale = try await c.call(.put, "/v1/documents/products/p1", json: #"{"name":"lost update","price":1}"#, headers: ["If-Match": etag])
            #expect(stale.status == .preconditionFailed)
            #expect(stale.problemCode == "precondition-failed")
            #expect(try await c.call(.get, "/v1/documents/products/p1").json["price"] == 79)
            // Create-only.
            #expect(try await c.call(.put, "/v1/documents/products/p1", json: #"{"price":1}"#, headers: ["If-None-Match": "*"]).status == .preconditionFailed)
            #expect(try await c.call(.put, "/v1/documents/products/p2", json: #"{"price":2}"#, headers: ["If-None-Match": "*"]).status == .ok)

            #expect(try await c.call(.delete, "/v1/documents/products/p1", headers: ["If-Match": etag]).status == .preconditionFailed)
            let del = try await c.call(.delete, "/v1/documents/products/p1")
            #expect(del.status == .ok)
            #expect(del.headers[HTTPField.Name("Polyglot-Token")!] != nil)
            let gone = try await c.call(.get, "/v1/documents/products/p1")
            #expect(gone.status == .notFound && gone.isProblem)
            #expect(try await c.call(.delete, "/v1/documents/products/p1").status == .notFound)

            // Ids with reserved characters travel percent-encoded.
            #expect(try await c.call(.put, "/v1/documents/products/a%2Fb%20c", json: #"{"price":3}"#).status == .ok)
            #expect(try await c.call(.get, "/v1/documents/products/a%2Fb%20c").json["price"] == 3)
        }
    }

    @Test("documents: batch writes, query with a JSON filter and sort, cursor pagination")
    func documentsQuery() async throws {
        let (f, _) = try await Fixture.make()
        try await f.test { c in
            let items = (1...25).map { #"{"id":"p\#($0)","body":{"name":"item \#($0)","price":\#($0),"category":"\#($0 % 2 == 0 ? "shoes" : "hats")"}}"# }
            let batch = try await c.call(.post, "/v1/documents/products", json: #"{"put":[\#(items.joined(separator: ","))]}"#)
            #expect(batch.status == .ok)
            #expect(batch.json["put"] == 25)

            let filter = #"{"category":"shoes","price":{"$gte":4}}"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            var seen: [String] = []
            var cursor: String? = nil
            repeat {
                let uri = "/v1/documents/products?filter=\(filter)&sort=-price&limit=4" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await c.call(.get, uri)
                #expect(page.status == .ok)
                seen += page.json["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
                cursor = page.json["next"]?.stringValue
            } while cursor != nil
            #expect(seen == stride(from: 24, through: 4, by: -2).map { "p\($0)" })

            // In id order, pages are keyset pages: deleting what was already read does not shift the next page.
            var inOrder: [String] = []
            cursor = nil
            repeat {
                let page = try await c.call(.get, "/v1/documents/products?limit=5" + (cursor.map { "&cursor=\($0)" } ?? ""))
                let ids = page.json["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
                if inOrder.isEmpty { for id in ids { _ = try await c.call(.delete, "/v1/documents/products/\(id)") } }
                inOrder += ids
                cursor = page.json["next"]?.stringValue
            } while cursor != nil
            #expect(inOrder == (1...25).map { "p\($0)" }.sorted(), "\(inOrder)")
            for id in inOrder.prefix(5) {
                let restore = try await c.call(.put, "/v1/documents/products/\(id)", json: #"{"name":"restored","price":\#(id.dropFirst()),"category":"\#(Int(id.dropFirst())! % 2 == 0 ? "shoes" : "hats")"}"#)
                #expect(restore.status == .ok || restore.status == .created)
            }

            // A cursor only fits its own query.
            let first = try await c.call(.get, "/v1/documents/products?limit=2")
            let next = try #require(first.json["next"]?.stringValue)
            #expect(try await c.call(.get, "/v1/documents/products?limit=2&sort=price&cursor=\(next)").problemCode == "bad-cursor")

            // Batch with deletes is one transaction: a bad document rolls back everything.
            let bad = try await c.call(.post, "/v1/documents/products", json: #"{"put":[{"id":"x1","body":{"price":"cheap"}}],"delete":["p1"]}"#)
            #expect(bad.status == .badRequest)
            #expect(try await c.call(.get, "/v1/documents/products/p1").status == .ok)
            let mixed = try await c.call(.post, "/v1/documents/products", json: #"{"put":[{"id":"x1","body":{"price":5}}],"delete":["p1","p2"]}"#)
            #expect(mixed.status == .ok && mixed.json["deleted"] == 2)
            #expect(try await c.call(.get, "/v1/documents/products/p2").status == .notFound)

            let hits = try await c.call(.get, "/v1/search/products?q=item&limit=3")
            #expect(hits.status == .ok)
            #expect(hits.json["hits"]?.arrayValue?.count == 3)
            let near = try await c.call(.post, "/v1/nearest/products", json: #"{"text":"item 7","k":2}"#)
            #expect(near.status == .ok)
            #expect(near.json["hits"]?.arrayValue?.count == 2)
        }
    }

    @Test("key-value with TTL, scan and increment")
    func keyValue() async throws {
        let (f, _) = try await Fixture.make()
        try await f.test { c in
            let set = try await c.call(.put, "/v1/kv/sessions/s%3A1", body: "customer-7", headers: ["Content-Type": "application/octet-stream"])
            #expect(set.status == .ok)
            #expect(set.headers[HTTPField.Name("Polyglot-Token")!] != nil)
            let got = try await c.call(.get, "/v1/kv/sessions/s%3A1")
            #expect(got.status == .ok && got.text == "customer-7")
            // TTL: present while young (checked only if the machine answered within the TTL), gone after it.
            let written = ContinuousClock.now
            #expect(try await c.call(.put, "/v1/kv/sessions/short?ttl=1s", body: "x").status == .ok)
            let stored = ContinuousClock.now    // the TTL started between `written` and now
            let young = try await c.call(.get, "/v1/kv/sessions/short")
            if ContinuousClock.now - written < .milliseconds(900) { #expect(young.status == .ok) }
            try await Task.sleep(until: stored + .milliseconds(1500))
            #expect(try await c.call(.get, "/v1/kv/sessions/short").status == .notFound)
            #expect(try await c.call(.put, "/v1/kv/sessions/k?ttl=soon", body: "x").problemCode == "bad-query")

            #expect(try await c.call(.post, "/v1/kv/sessions/n/increment?by=5").json["value"] == 5)
            #expect(try await c.call(.post, "/v1/kv/sessions/n/increment").json["value"] == 6)
            let scan = try await c.call(.get, "/v1/kv/sessions?prefix=s%3A")
            #expect(scan.json["items"]?.arrayValue?.first?["key"] == "s:1")
            #expect(scan.json["items"]?.arrayValue?.first?["value"] == "customer-7")
            #expect(try await c.call(.delete, "/v1/kv/sessions/s%3A1").json["deleted"] == true)
            #expect(try await c.call(.delete, "/v1/kv/sessions/s%3A1").json["deleted"] == false)
        }
    }

    @Test("vectors, graph and time series")
    func otherModels() async throws {
        let (f, _) = try await Fixture.make()
        try await f.test { c in
            #expect(try await c.call(.put, "/v1/vectors/embeddings/a", json: #"{"vector":[1,0,0],"metadata":{"kind":"x"}}"#).status == .ok)
            let up = try await c.call(.post, "/v1/vectors/embeddings", json: #"{"vectors":[{"id":"b","vector":[0,1,0]},{"id":"c","vector":[0.9,0.1,0],"metadata":{"kind":"x"}}]}"#)
            #expect(up.json["upserted"] == 2)
            let near = try await c.call(.post, "/v1/nearest/embeddings", json: #"{"vector":[1,0,0],"k":2,"exact":true}"#)
            #expect(near.json["hits"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["a", "c"])
            let filtered = try await c.call(.post, "/v1/nearest/embeddings", json: #"{"vector":[0,1,0],"k":3,"filter":{"kind":"x"}}"#)
            #expect(Set(filtered.json["hits"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []) == ["a", "c"])
            #expect(try await c.call(.get, "/v1/vectors/embeddings/a").json["metadata"]?["kind"] == "x")
            #expect(try await c.call(.delete, "/v1/vectors/embeddings/b").json["deleted"] == true)

            let edges = try await c.call(.post, "/v1/graph/links/edges", json: #"{"edges":[{"from":"a","to":"b"},{"from":"b","to":"c","label":"x"},{"from":"c","to":"d"}]}"#)
            #expect(edges.status == .ok && edges.json["added"] == 3)
            #expect(try await c.call(.get, "/v1/graph/links/neighbors/a").json["neighbors"] == ["b"])
            #expect(try await c.call(.get, "/v1/graph/links/neighbors/b?direction=incoming").json["neighbors"] == ["a"])
            let walk = try await c.call(.get, "/v1/graph/links/traverse/a?depth=2")
            #expect(Set(walk.json["steps"]?.arrayValue?.compactMap { $0["node"]?.stringValue } ?? []) == ["b", "c"])

            let t0 = 1_764_460_800.0   // 2025-11-30T00:00:00Z
            let samples = (0..<6).map { #"{"series":"/home","time":\#(t0 + Double($0) * 600),"value":\#($0)}"# }
            #expect(try await c.call(.post, "/v1/timeseries/views", json: #"{"samples":[\#(samples.joined(separator: ","))]}"#).json["appended"] == 6)
            #expect(try await c.call(.post, "/v1/timeseries/views", json: #"{"samples":[{"series":"/home","time":"2025-11-30T00:05:00Z","value":10}]}"#).status == .ok)
            let range = try await c.call(.get, "/v1/timeseries/views/range?series=%2Fhome&from=\(Int(t0))&to=\(Int(t0) + 3600)")
            #expect(range.json["samples"]?.arrayValue?.count == 7)
            let agg = try await c.call(.get, "/v1/timeseries/views/aggregate?series=%2Fhome&from=2025-11-30T00:00:00Z&to=2025-11-30T01:00:00Z&bucket=30m")
            let buckets = try #require(agg.json["buckets"]?.arrayValue)
            #expect(buckets.count == 2)
            #expect(buckets.first?["count"] == 4)   // 00:00, 00:05, 00:10, 00:20
            #expect(buckets.first?["sum"] == 13)
        }
    }

    @Test("health, datasets, status and advice")
    func operations() async throws {
        let (f, _) = try await Fixture.make()
        try await f.test { c in
            let health = try await c.call(.get, "/health")
            #expect(health.status == .ok)
            #expect(Set(health.json["engines"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []) == ["primary", "cache"])
            #expect(health.json["engines"]?.arrayValue?.allSatisfy { $0["latencyMs"]?.doubleValue != nil } == true)
            #expect(try await c.call(.get, "/v1/datasets").json["datasets"]?.arrayValue?.count == 5)
            _ = try await c.call(.put, "/v1/documents/products/p1", json: #"{"price":1}"#)
            f.server.sampleTelemetry()
            for _ in 0..<20 { _ = try await c.call(.get, "/v1/documents/products/p1") }
            f.server.sampleTelemetry()
            let status = try await c.call(.get, "/v1/status")
            #expect(status.status == .ok)
            let products = status.json["datasets"]?.arrayValue?.first { $0["name"] == "products" }
            #expect((products?["count"]?.doubleValue ?? 0) >= 1)
            #expect(status.json["caches"]?.arrayValue?.first?["hits"]?.doubleValue ?? 0 >= 19)
            let last = try #require(status.json["series"]?.arrayValue?.last)
            #expect(last["caches"]?["cache"]?["hits"]?.doubleValue ?? 0 >= 19)
            #expect(status.json["projections"]?.arrayValue?.count == 3)
            // The advisor's verdicts, each with its evidence (at least "stay as you are" for every dataset).
            let advice = try await c.call(.get, "/v1/advice?window=1h")
            #expect(advice.json["available"] == true)
            let recs = advice.json["recommendations"]?.arrayValue ?? []
            #expect(!recs.isEmpty && recs.allSatisfy { $0["dataset"]?.stringValue != nil && $0["rule"]?.stringValue != nil && $0["action"]?.stringValue != nil })
            #expect(try await c.call(.get, "/v1/advice?window=soon").status == .badRequest)
            // Not finite: a 400, not a crash of the server (schemathesis found `window=Inf` trapping it).
            for window in ["Inf", "nan", "1e300s"] {
                #expect(try await c.call(.get, "/v1/advice?window=\(window)").status == .badRequest)
            }
            let metrics = try await c.call(.get, "/metrics")
            #expect(metrics.text.contains("polyglot_http_requests_total"))
            let page = try await c.call(.get, "/")
            #expect(page.status == .ok && page.text.contains("<script src=\"/dashboard.js\">"))
            // Nothing comes from the network: no absolute URL in any asset (the SVG namespace is a name, not a fetch).
            for asset in ["/", "/dashboard.js", "/dashboard.css"] {
                let text = try await c.call(.get, asset).text.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "")
                #expect(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"), "\(asset)")
            }
        }
    }
}
