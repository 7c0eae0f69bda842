import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Polyglot
import PolyglotServer
import Testing

@Suite("/openapi.json describes exactly what the server serves")
struct OpenAPITests {
    @Test("every route of the router is in the document, and nothing else")
    func routeCoverage() async throws {
        let (f, _) = try await Fixture.make()
        let registered = Set(f.server.router().routes.map { "\($0.method.rawValue) \($0.path.description)" })
        try await f.test { c in
            let doc = try await c.call(.get, "/openapi.json").json
            #expect(doc["openapi"]?.stringValue?.hasPrefix("3.") == true)
            var documented = Set<String>()
            for (path, item) in doc["paths"]?.objectValue ?? [:] {
                for method in (item.objectValue ?? [:]).keys { documented.insert("\(method.uppercased()) \(path)") }
            }
            #expect(documented == registered, "only in the router: \(registered.subtracting(documented).sorted()); only documented: \(documented.subtracting(registered).sorted())")
            #expect(registered.count >= 30)

            // Each documented operation answers through its own route, not the no-route fallback.
            for op in documented.sorted() {
                let parts = op.split(separator: " ", maxSplits: 1)
                let method = HTTPRequest.Method(rawValue: String(parts[0]))!
                let uri = String(parts[1])
                    .replacingOccurrences(of: "{dataset}", with: Self.example(for: String(parts[1])))
                    .replacingOccurrences(of: "{id}", with: "x").replacingOccurrences(of: "{key}", with: "x")
                    .replacingOccurrences(of: "{node}", with: "x")
                let r = try await c.call(method, uri, json: method == .get || method == .delete ? nil : "{}")
                #expect(r.problemCode != "no-route", "\(op) fell through to no-route")
                #expect(r.status != .internalServerError, "\(op): \(r.text)")
                // Every status it gave is documented (or the documented default problem).
                let responses = doc["paths"]?[String(parts[1])]?[method.rawValue.lowercased()]?["responses"]?.objectValue ?? [:]
                #expect(responses["\(r.status.code)"] != nil || (r.isProblem && responses["default"] != nil), "\(op) answered \(r.status.code)")
            }
        }
    }

    static func example(for path: String) -> String {
        if path.hasPrefix("/v1/kv") { return "sessions" }
        if path.hasPrefix("/v1/vectors") || path.hasPrefix("/v1/nearest") { return "embeddings" }
        if path.hasPrefix("/v1/graph") { return "links" }
        if path.hasPrefix("/v1/timeseries") { return "views" }
        return "products"
    }

    @Test("dataset parameters enumerate the data map's datasets of the route's model")
    func enumerations() async throws {
        let (f, _) = try await Fixture.make()
        let doc = f.server.openAPIDocument()
        try await f.test { _ in }
        func datasets(_ path: String, _ method: String) -> [String] {
            let params = doc["paths"]?[path]?[method]?["parameters"]?.arrayValue ?? []
            return params.first { $0["name"] == "dataset" }?["schema"]?["enum"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        #expect(datasets("/v1/documents/{dataset}/{id}", "get") == ["products"])
        #expect(datasets("/v1/kv/{dataset}/{key}", "put") == ["sessions"])
        #expect(datasets("/v1/nearest/{dataset}", "post") == ["embeddings", "products"])
        #expect(datasets("/v1/timeseries/{dataset}", "post") == ["views"])
    }
}
