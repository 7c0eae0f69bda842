import Foundation
import HTTPTypes
import Hummingbird
import Polyglot
import Prometheus
import Synchronization

extension PolyglotServer {
    /// Every route the server serves, in the order /openapi.json lists them.
    func routes() -> [RouteSpec] { operationRoutes() + documentRoutes() + modelRoutes() }

    /// The OpenAPI document of ``routes()``.
    public func openAPIDocument() -> JSON {
        OpenAPI.document(routes: routes(), authRequired: authRequired, version: Self.version)
    }

    func operationRoutes() -> [RouteSpec] {
        let engineHealth = Schema.object(["name": Schema.string, "kind": Schema.string, "ok": Schema.boolean, "latencyMs": Schema.number,
                                          "error": Schema.string], required: ["name", "kind", "ok", "latencyMs"])
        let health = Schema.object(["status": Schema.enumeration(["ok", "degraded"]), "engines": Schema.array(engineHealth)], required: ["status", "engines"])
        let html = ["text/html; charset=utf-8": Schema.string]
        return [
            RouteSpec(method: .get, path: "/", operationId: "dashboard", summary: "The live dashboard (HTML; its script and style are served by this binary).",
                      tag: "dashboard", access: .open, responses: [200: ResponseSpec(description: "The dashboard page.", content: html)],
                      handler: { _, _ in Self.raw(Data(Dashboard.html.utf8), contentType: "text/html; charset=utf-8", headers: Self.noStore) }),
            RouteSpec(method: .get, path: "/dashboard.js", operationId: "dashboardScript", summary: "The dashboard's script.",
                      tag: "dashboard", access: .open, responses: [200: ResponseSpec(description: "JavaScript.", content: ["text/javascript; charset=utf-8": Schema.string])],
                      handler: { _, _ in Self.raw(Data(Dashboard.script.utf8), contentType: "text/javascript; charset=utf-8", headers: Self.noStore) }),
            RouteSpec(method: .get, path: "/dashboard.css", operationId: "dashboardStyle", summary: "The dashboard's style sheet.",
                      tag: "dashboard", access: .open, responses: [200: ResponseSpec(description: "CSS.", content: ["text/css; charset=utf-8": Schema.string])],
                      handler: { _, _ in Self.raw(Data(Dashboard.style.utf8), contentType: "text/css; charset=utf-8", headers: Self.noStore) }),
            RouteSpec(method: .get, path: "/openapi.json", operationId: "openapi", summary: "This document.", tag: "operations", access: .open,
                      responses: [200: R.ok("OpenAPI 3.0.", Schema.anyObject)],
                      handler: { _, _ in Self.json(self.openAPIDocument()) }),
            RouteSpec(method: .get, path: "/health", operationId: "health", summary: "Each engine probed, with the probe's latency. 503 when one is down.",
                      tag: "operations", access: .open,
                      responses: [200: R.ok("Every engine answered.", health), 503: R.ok("An engine is down.", health)],
                      handler: healthHandler),
            RouteSpec(method: .get, path: "/metrics", operationId: "metrics", summary: "Prometheus text exposition: the library's telemetry and the server's HTTP metrics.",
                      tag: "operations", access: .server(.admin),
                      responses: [200: ResponseSpec(description: "Prometheus text format 0.0.4.", content: ["text/plain; version=0.0.4; charset=utf-8": Schema.string])],
                      handler: { _, _ in
                          Self.raw(Data(self.metrics.emitToBuffer()), contentType: "text/plain; version=0.0.4; charset=utf-8")
                      }),
            RouteSpec(method: .get, path: "/v1/datasets", operationId: "listDatasets", summary: "The datasets this key may read: model, engine and projections.",
                      tag: "operations", access: .anyKey,
                      responses: [200: R.ok("Datasets.", Schema.object(["datasets": Schema.array(Schema.object([
                          "name": Schema.string, "model": Schema.string, "engine": Schema.string,
                          "projections": Schema.array(Schema.object(["kind": Schema.string, "engine": Schema.string], required: ["kind", "engine"]))],
                          required: ["name", "model", "engine", "projections"]))], required: ["datasets"]))],
                      handler: listDatasets),
            RouteSpec(method: .get, path: "/v1/status", operationId: "status",
                      summary: "What the dashboard shows: the data map, engine health, telemetry windows, caches and projection lag.",
                      tag: "operations", access: .server(.admin),
                      responses: [200: R.ok("The status.", Schema.object(["map": Schema.anyObject, "engines": Schema.array(engineHealth),
                                                                          "datasets": Schema.array(Schema.anyObject), "caches": Schema.array(Schema.anyObject),
                                                                          "projections": Schema.array(Schema.anyObject), "series": Schema.array(Schema.anyObject),
                                                                          "server": Schema.anyObject],
                                                                         required: ["map", "engines", "datasets", "caches", "projections", "series", "server"]))],
                      handler: statusHandler),
            RouteSpec(method: .get, path: "/v1/advice", operationId: "advice",
                      summary: "The advisor's recommendations for the telemetry of the last `window`, each with its measured evidence, expected effect, confidence and data map diff (what `polyglot advise --json` prints).",
                      tag: "operations", access: .server(.admin),
                      parameters: [P.query("window", "How much telemetry history to read, e.g. 1h, 24h or 7d (default 24h).")],
                      responses: [200: R.ok("Recommendations; \"stay as you are\" ones when nothing is wrong.", Schema.object([
                          "available": Schema.boolean, "window": Schema.string, "recommendations": Schema.array(Schema.anyObject), "note": Schema.string],
                          required: ["available", "recommendations"]))],
                      handler: adviceHandler),
        ]
    }

    static let noStore: [HTTPField.Name: String] = [.cacheControl: "no-store"]

    static func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

    func engineHealth() async -> [JSON] {
        let kinds = Dictionary(db.map.engines.map { ($0.name, $0.kind) }, uniquingKeysWith: { a, _ in a })
        return await db.health().map { h in
            var o: [String: JSON] = ["name": .string(h.engine), "kind": .string(kinds[h.engine] ?? "?"), "ok": .bool(h.ok),
                                     "latencyMs": .number((Self.ms(h.latency) * 1000).rounded() / 1000)]
            if let e = h.error { o["error"] = .string(e) }
            return .object(o)
        }
    }

    @Sendable func healthHandler(_ request: Request, _ context: APIContext) async throws -> Response {
        let engines = await engineHealth()
        let ok = engines.allSatisfy { $0["ok"] == .bool(true) }
        return Self.json(["status": .string(ok ? "ok" : "degraded"), "engines": .array(engines)], status: ok ? .ok : .serviceUnavailable)
    }

    @Sendable func listDatasets(_ request: Request, _ context: APIContext) async throws -> Response {
        let visible = db.map.datasets.filter { ds in !authRequired || (context.key?.allows(.read, on: ds.name) ?? false) }
        return Self.json(["datasets": .array(visible.map(Self.describe))])
    }

    static func describe(_ ds: DatasetSpec) -> JSON {
        ["name": .string(ds.name), "model": .string(ds.model.rawValue), "engine": .string(ds.engine),
         "projections": .array(ds.projections.map { ["kind": .string($0.kind.rawValue), "engine": .string($0.engine)] })]
    }

    @Sendable func adviceHandler(_ request: Request, _ context: APIContext) async throws -> Response {
        let raw = Self.query(request, "window") ?? "24h"
        let window = try Self.duration(raw, name: "window")
        let recommendations = try await Advisor(db: db).advise(window: window)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return Self.json(["available": true, "window": .string(raw), "recommendations": try JSON(parsing: encoder.encode(recommendations))],
                         headers: Self.noStore)
    }

    @Sendable func statusHandler(_ request: Request, _ context: APIContext) async throws -> Response {
        let snap = db.telemetry.snapshot()
        // Per dataset: totals since start, and the last window's figures.
        var totals: [String: (count: UInt64, errors: UInt64, latency: LatencyHistogram, ops: [String: UInt64], engines: Set<String>)] = [:]
        for e in snap.entries {
            var t = totals[e.key.dataset] ?? (0, 0, LatencyHistogram(), [:], [])
            t.count += e.stats.count
            t.errors += e.stats.errors
            t.latency.merge(e.stats.latency)
            t.ops[e.key.operation, default: 0] += e.stats.count
            t.engines.insert(e.key.engine)
            totals[e.key.dataset] = t
        }
        let points = sampler.points
        let datasets: [JSON] = db.map.datasets.map { ds in
            let t = totals[ds.name]
            return ["name": .string(ds.name), "model": .string(ds.model.rawValue), "engine": .string(ds.engine),
                    "count": .number(Double(t?.count ?? 0)), "errors": .number(Double(t?.errors ?? 0)),
                    "p50Ms": .number(Double(t?.latency.percentile(50) ?? 0) / 1e6), "p99Ms": .number(Double(t?.latency.percentile(99) ?? 0) / 1e6),
                    "operations": .object((t?.ops ?? [:]).mapValues { .number(Double($0)) })]
        }
        let caches: [JSON] = snap.caches.keys.sorted().map { name in
            let c = snap.caches[name]!
            return ["engine": .string(name), "hits": .number(Double(c.hits)), "misses": .number(Double(c.misses)),
                    "hitRate": c.hitRate.map { .number($0) } ?? .null, "entries": .number(Double(c.entries)), "bytes": .number(Double(c.bytes)),
                    "evictions": .number(Double(c.evictions)), "invalidations": .number(Double(c.invalidations)), "degraded": .bool(c.degraded)]
        }
        let seen = lastWrite.withLock { $0 }
        var projections: [JSON] = []
        let relayed = Dictionary(relay.status().map { ($0.copy, $0) }, uniquingKeysWith: { a, _ in a })
        for ds in db.map.datasets {
            for p in ds.projections {
                var o: [String: JSON] = ["dataset": .string(ds.name), "kind": .string(p.kind.rawValue), "engine": .string(p.engine)]
                if p.kind == .cache {
                    o["mode"] = "invalidated on write"
                } else if p.engine == ds.engine {
                    o["mode"] = "same transaction"
                    o["lag"] = 0
                } else {
                    let copyName = RelayedCopy(dataset: ds, target: p.engine, kind: p.kind == .analytics ? .analytics : p.kind == .stream ? .stream : .documents).name
                    o["mode"] = "relay"
                    o["copy"] = .string(copyName)
                    if let s = relayed[copyName] {
                        o["checkpoint"] = .number(Double(s.appliedPosition))
                        o["applied"] = .number(Double(s.applied))
                        o["deadLetters"] = .number(Double(s.deadLetters))
                        o["leader"] = .bool(s.leader)
                        if let e = s.lastError { o["lastError"] = .string(e) }
                        if let head = seen[ds.engine] { o["lag"] = .number(Double(max(0, head - s.appliedPosition))) }
                    }
                }
                projections.append(.object(o))
            }
        }
        let series: [JSON] = points.map { p in
            ["time": .string(Self.formatDate(p.time)), "seconds": .number(p.seconds),
             "datasets": .object(p.datasets.mapValues { w in
                 ["count": .number(Double(w.count)), "errors": .number(Double(w.errors)), "p50Ms": .number(Double(w.p50) / 1e6),
                  "p99Ms": .number(Double(w.p99) / 1e6), "operations": .object(w.operations.mapValues { .number(Double($0)) })]
             }),
             "caches": .object(p.caches.mapValues { c in ["hits": .number(Double(c.hits)), "misses": .number(Double(c.misses)), "hitRate": c.hitRate.map { .number($0) } ?? .null] })]
        }
        let map: JSON = [
            "engines": .array(db.map.engines.map { ["name": .string($0.name), "kind": .string($0.kind)] }),
            "datasets": .array(db.map.datasets.map(Self.describe)),
        ]
        return Self.json([
            "map": map, "engines": .array(await engineHealth()), "datasets": .array(datasets), "caches": .array(caches),
            "projections": .array(projections), "series": .array(series),
            "server": ["version": .string(Self.version), "startedAt": .string(Self.formatDate(startedAt)), "auth": .bool(authRequired),
                       "sampleSeconds": .number(Self.ms(configuration.sampleInterval) / 1000)],
        ], headers: Self.noStore)
    }
}
