import Foundation
import HTTPTypes
import Hummingbird
import Polyglot

extension PolyglotServer {
    func modelRoutes() -> [RouteSpec] {
        let kvNames = names(of: .keyValue), vecNames = names(of: .vectors), graphNames = names(of: .graph), tsNames = names(of: .timeSeries)
        let nearestNames = (vecNames + db.map.datasets.filter { $0.model == .documents && $0.projection(.vectors) != nil }.map(\.name)).sorted()
        let kvDs = P.dataset(kvNames, "keyValue"), vecDs = P.dataset(vecNames, "vectors"), gDs = P.dataset(graphNames, "graph"), tsDs = P.dataset(tsNames, "timeSeries")
        let key = P.path("key", "The key.")
        let vectorSchema = Schema.array(Schema.number, minItems: 1)
        let vectorRecord = Schema.object(["id": ["type": "string", "minLength": 1], "vector": vectorSchema, "metadata": Schema.anyObject], required: ["id", "vector"])
        let series = P.query("series", "The series name, e.g. /home.", ["type": "string", "minLength": 1], required: true)
        let from = P.query("from", "Start (inclusive): ISO 8601 or seconds since 1970. Default: 24 h before `to`.")
        let to = P.query("to", "End (exclusive): ISO 8601 or seconds since 1970. Default: now.")
        return [
            // key-value
            RouteSpec(method: .get, path: "/v1/kv/{dataset}", operationId: "scanKeys", summary: "Entries by key prefix, in key order, one page at a time.",
                      tag: "keyValue", access: .dataset(.read),
                      parameters: [kvDs, P.query("prefix", "Only keys starting with this."), P.query("after", "Start after this key (the `next` of the previous page)."),
                                   P.query("limit", "Page size (1-1000, default 100).", Schema.integer(min: 1, max: 1000))],
                      responses: [200: R.ok("Entries; `value` is UTF-8 text, or base64 when `encoding` says so.", Schema.object([
                          "items": Schema.array(Schema.object(["key": Schema.string, "value": Schema.string, "encoding": Schema.enumeration(["utf8", "base64"]),
                                                               "expiresAt": ["type": "string", "nullable": true]], required: ["key", "value", "encoding", "expiresAt"])),
                          "next": ["type": "string", "nullable": true]], required: ["items", "next"]))],
                      handler: scanKeys),
            RouteSpec(method: .get, path: "/v1/kv/{dataset}/{key}", operationId: "getKey", summary: "The value stored at a key, as bytes.",
                      tag: "keyValue", access: .dataset(.read), parameters: [kvDs, key],
                      responses: [200: ResponseSpec(description: "The value.", content: ["application/octet-stream": ["type": "string", "format": "binary"]])],
                      handler: getKey),
            RouteSpec(method: .put, path: "/v1/kv/{dataset}/{key}", operationId: "setKey", summary: "Store the body's bytes at a key, with an optional TTL.",
                      tag: "keyValue", access: .dataset(.write),
                      parameters: [kvDs, key, P.query("ttl", "Time to live: 30s, 5m, 1h, 250ms. Default: the dataset's ttl, else none.")],
                      requestBody: ("application/octet-stream", ["type": "string", "format": "binary"], true),
                      responses: [200: R.ok("Stored.", R.writeResult, headers: R.token)],
                      handler: setKey),
            RouteSpec(method: .delete, path: "/v1/kv/{dataset}/{key}", operationId: "deleteKey", summary: "Delete a key.",
                      tag: "keyValue", access: .dataset(.write), parameters: [kvDs, key],
                      responses: [200: R.ok("Whether the key existed.", Schema.object(["deleted": Schema.boolean], required: ["deleted"]))],
                      handler: deleteKey),
            RouteSpec(method: .post, path: "/v1/kv/{dataset}/{key}/increment", operationId: "incrementKey",
                      summary: "Add to the integer stored at a key (0 when absent) and return the result.",
                      tag: "keyValue", access: .dataset(.write),
                      parameters: [kvDs, key, P.query("by", "The amount (default 1).", Schema.integer(min: -1_000_000_000_000, max: 1_000_000_000_000)),
                                   P.query("ttl", "Time to live when the key is created.")],
                      responses: [200: R.ok("The new value.", Schema.object(["value": Schema.integer], required: ["value"]))],
                      handler: incrementKey),
            // vectors
            RouteSpec(method: .post, path: "/v1/vectors/{dataset}", operationId: "upsertVectors", summary: "Insert or replace many vectors in one transaction.",
                      tag: "vectors", access: .dataset(.write), parameters: [vecDs],
                      requestBody: ("application/json", Schema.object(["vectors": Schema.array(vectorRecord, maxItems: 1000, minItems: 1)], required: ["vectors"]), true),
                      responses: [200: R.ok("Stored.", Schema.object(["token": Schema.string, "upserted": Schema.integer], required: ["token", "upserted"]), headers: R.token)],
                      handler: upsertVectors),
            RouteSpec(method: .get, path: "/v1/vectors/{dataset}/{id}", operationId: "getVector", summary: "One vector and its metadata.",
                      tag: "vectors", access: .dataset(.read), parameters: [vecDs, P.path("id", "The vector id.")],
                      responses: [200: R.ok("The vector.", Schema.object(["id": Schema.string, "vector": Schema.array(Schema.number), "metadata": ["nullable": true]],
                                                                        required: ["id", "vector", "metadata"]))],
                      handler: getVector),
            RouteSpec(method: .put, path: "/v1/vectors/{dataset}/{id}", operationId: "putVector", summary: "Insert or replace one vector.",
                      tag: "vectors", access: .dataset(.write), parameters: [vecDs, P.path("id", "The vector id.")],
                      requestBody: ("application/json", Schema.object(["vector": vectorSchema, "metadata": Schema.anyObject], required: ["vector"]), true),
                      responses: [200: R.ok("Stored.", R.writeResult, headers: R.token)],
                      handler: putVector),
            RouteSpec(method: .delete, path: "/v1/vectors/{dataset}/{id}", operationId: "deleteVector", summary: "Delete one vector.",
                      tag: "vectors", access: .dataset(.write), parameters: [vecDs, P.path("id", "The vector id.")],
                      responses: [200: R.ok("Whether it existed.", Schema.object(["deleted": Schema.boolean], required: ["deleted"]))],
                      handler: deleteVector),
            RouteSpec(method: .post, path: "/v1/nearest/{dataset}", operationId: "nearest",
                      summary: "The k nearest neighbours of a vector (or of a text, embedded by the dataset's vectors projection), optionally filtered.",
                      tag: "vectors", access: .dataset(.read), parameters: [P.dataset(nearestNames, "vectors (or documents with a vectors projection)")],
                      requestBody: ("application/json", Schema.object([
                          "vector": vectorSchema, "text": ["type": "string", "minLength": 1],
                          "k": Schema.integer(min: 1, max: 1000), "filter": Schema.anyObject, "exact": Schema.boolean]), true),
                      responses: [200: R.ok("Nearest first.", Schema.object(["hits": Schema.array(Schema.object(
                          ["id": Schema.string, "distance": Schema.number, "metadata": ["nullable": true]], required: ["id", "distance"]))], required: ["hits"]))],
                      handler: nearest),
            // graph
            RouteSpec(method: .post, path: "/v1/graph/{dataset}/edges", operationId: "addEdges", summary: "Add (or replace) edges in one transaction.",
                      tag: "graph", access: .dataset(.write), parameters: [gDs],
                      requestBody: ("application/json", Schema.object(["edges": Schema.array(Schema.object([
                          "from": ["type": "string", "minLength": 1], "to": ["type": "string", "minLength": 1], "label": Schema.string,
                          "weight": Schema.number, "properties": Schema.anyObject], required: ["from", "to"]), maxItems: 1000, minItems: 1)], required: ["edges"]), true),
                      responses: [200: R.ok("Stored.", Schema.object(["token": Schema.string, "added": Schema.integer], required: ["token", "added"]), headers: R.token)],
                      handler: addEdges),
            RouteSpec(method: .get, path: "/v1/graph/{dataset}/neighbors/{node}", operationId: "neighbors", summary: "The nodes one edge away.",
                      tag: "graph", access: .dataset(.read), parameters: [gDs, P.path("node", "The node."), P.direction, P.label],
                      responses: [200: R.ok("Neighbours.", Schema.object(["node": Schema.string, "neighbors": Schema.array(Schema.string)], required: ["node", "neighbors"]))],
                      handler: neighbors),
            RouteSpec(method: .get, path: "/v1/graph/{dataset}/traverse/{node}", operationId: "traverse", summary: "Every node within `depth` hops, with its distance.",
                      tag: "graph", access: .dataset(.read),
                      parameters: [gDs, P.path("node", "The start node."), P.query("depth", "Hops (1-10, default 2).", Schema.integer(min: 1, max: 10)), P.direction, P.label],
                      responses: [200: R.ok("Reached nodes.", Schema.object(["node": Schema.string, "steps": Schema.array(Schema.object(
                          ["node": Schema.string, "depth": Schema.integer], required: ["node", "depth"]))], required: ["node", "steps"]))],
                      handler: traverse),
            // time series
            RouteSpec(method: .post, path: "/v1/timeseries/{dataset}", operationId: "appendSamples", summary: "Append samples (time defaults to now).",
                      tag: "timeSeries", access: .dataset(.write), parameters: [tsDs],
                      requestBody: ("application/json", Schema.object(["samples": Schema.array(Schema.object([
                          "series": ["type": "string", "minLength": 1], "value": Schema.number,
                          "time": ["description": "ISO 8601 string or seconds since 1970.", "oneOf": [Schema.string, Schema.number]]],
                          required: ["series", "value"]), maxItems: 10_000, minItems: 1)], required: ["samples"]), true),
                      responses: [200: R.ok("Stored.", Schema.object(["token": Schema.string, "appended": Schema.integer], required: ["token", "appended"]), headers: R.token)],
                      handler: appendSamples),
            RouteSpec(method: .get, path: "/v1/timeseries/{dataset}/range", operationId: "rangeSamples", summary: "Samples of one series in [from, to), oldest first.",
                      tag: "timeSeries", access: .dataset(.read),
                      parameters: [tsDs, series, from, to, P.query("limit", "At most this many (1-100000, default 10000).", Schema.integer(min: 1, max: 100_000))],
                      responses: [200: R.ok("Samples.", Schema.object(["series": Schema.string, "samples": Schema.array(Schema.object(
                          ["time": Schema.string, "value": Schema.number], required: ["time", "value"]))], required: ["series", "samples"]))],
                      handler: rangeSamples),
            RouteSpec(method: .get, path: "/v1/timeseries/{dataset}/aggregate", operationId: "aggregateSamples",
                      summary: "Count, sum, min, max and average of one series per time bucket.",
                      tag: "timeSeries", access: .dataset(.read),
                      parameters: [tsDs, series, from, to, P.query("bucket", "Bucket width: 1m, 1h, 1d ... (default 1h).")],
                      responses: [200: R.ok("Buckets, oldest first.", Schema.object(["series": Schema.string, "buckets": Schema.array(Schema.object(
                          ["start": Schema.string, "count": Schema.integer, "sum": Schema.number, "min": Schema.number, "max": Schema.number, "avg": Schema.number],
                          required: ["start", "count", "sum", "min", "max", "avg"]))], required: ["series", "buckets"]))],
                      handler: aggregateSamples),
        ]
    }

    // MARK: key-value

    func keyValue(_ context: APIContext) throws -> KeyValueCollection { try db.keyValue(try Self.path(context, "dataset")) }

    static func ttl(_ request: Request) throws -> Duration? { try query(request, "ttl").map { try duration($0, name: "ttl") } }

    @Sendable func scanKeys(_ request: Request, _ context: APIContext) async throws -> Response {
        let kv = try keyValue(context)
        let limit = try Self.queryInt(request, "limit", default: 100, in: 1...1000)
        let entries = try await kv.scan(prefix: Self.query(request, "prefix") ?? "", after: Self.query(request, "after"), limit: limit + 1)
        let page = entries.prefix(limit)
        let items: [JSON] = page.map { e in
            let text = String(data: e.value, encoding: .utf8)
            return ["key": .string(e.key), "value": .string(text ?? e.value.base64EncodedString()), "encoding": .string(text == nil ? "base64" : "utf8"),
                    "expiresAt": e.expiresAt.map { .string(Self.formatDate($0)) } ?? .null]
        }
        let next: JSON = entries.count > limit ? .string(page.last!.key) : .null
        return Self.json(["items": .array(items), "next": next])
    }

    @Sendable func getKey(_ request: Request, _ context: APIContext) async throws -> Response {
        let kv = try keyValue(context)
        let key = try Self.path(context, "key")
        guard let value = try await kv.get(key) else {
            throw Problem(.notFound, code: "not-found", detail: "Dataset '\(kv.name)' has no key '\(key)' (or it expired).")
        }
        return Self.raw(value, contentType: "application/octet-stream")
    }

    @Sendable func setKey(_ request: Request, _ context: APIContext) async throws -> Response {
        let kv = try keyValue(context)
        let key = try Self.path(context, "key")
        let ttl = try Self.ttl(request)
        let value = Data(try await body(request).readableBytesView)
        let token = try await kv.set(key, value, ttl: ttl)
        noteWrite(token)
        return Self.json(["token": .string(token.description)], token: token)
    }

    @Sendable func deleteKey(_ request: Request, _ context: APIContext) async throws -> Response {
        let kv = try keyValue(context)
        let existed = try await kv.delete(try Self.path(context, "key"))
        return Self.json(["deleted": .bool(existed)])
    }

    @Sendable func incrementKey(_ request: Request, _ context: APIContext) async throws -> Response {
        let kv = try keyValue(context)
        let by = try Self.queryInt(request, "by", default: 1, in: -1_000_000_000_000...1_000_000_000_000)
        let value = try await kv.increment(try Self.path(context, "key"), by: Int64(by), ttl: try Self.ttl(request))
        return Self.json(["value": .number(Double(value))])
    }

    // MARK: vectors

    func vectors(_ context: APIContext) throws -> VectorCollection { try db.vectors(try Self.path(context, "dataset")) }

    static func metadata(_ json: JSON?, field: String) throws -> JSON? {
        guard let json, !json.isNull else { return nil }
        guard case .object = json else { throw JSONBody.wrongType(field, "an object", json) }
        return json
    }

    @Sendable func upsertVectors(_ request: Request, _ context: APIContext) async throws -> Response {
        let vs = try vectors(context)
        let body = try await jsonBody(request)
        guard let items = try body.array("vectors"), !items.isEmpty else { throw JSONBody.missing("vectors", "a non-empty array of {id, vector, metadata}") }
        guard items.count <= 1000 else { throw Problem(.contentTooLarge, code: "batch-too-large", detail: "At most 1000 vectors per request; got \(items.count).", fix: "Split it.") }
        var records: [VectorRecord] = []
        for (i, item) in items.enumerated() {
            guard case .object(let o) = item else { throw JSONBody.wrongType("vectors[\(i)]", "an object", item) }
            guard case .string(let id)? = o["id"], !id.isEmpty else { throw Problem.badRequest("bad-field", "'vectors[\(i)].id' must be a non-empty string.") }
            guard let v = o["vector"] else { throw JSONBody.missing("vectors[\(i)].vector", "an array of numbers") }
            records.append(VectorRecord(id: id, vector: try JSONBody.vector(v, field: "vectors[\(i)].vector"),
                                        metadata: try Self.metadata(o["metadata"], field: "vectors[\(i)].metadata")))
        }
        let token = try await vs.upsert(records)
        noteWrite(token)
        return Self.json(["token": .string(token.description), "upserted": .number(Double(records.count))], token: token)
    }

    @Sendable func getVector(_ request: Request, _ context: APIContext) async throws -> Response {
        let vs = try vectors(context)
        let id = try Self.path(context, "id")
        guard let r = try await vs.get(id) else { throw Problem(.notFound, code: "not-found", detail: "Dataset '\(vs.name)' has no vector '\(id)'.") }
        return Self.json(["id": .string(r.id), "vector": .array(r.vector.map { .number(Double($0)) }), "metadata": r.metadata ?? .null])
    }

    @Sendable func putVector(_ request: Request, _ context: APIContext) async throws -> Response {
        let vs = try vectors(context)
        let id = try Self.path(context, "id")
        let body = try await jsonBody(request)
        guard let v = body["vector"] else { throw JSONBody.missing("vector", "an array of numbers") }
        let token = try await vs.upsert(id, vector: try JSONBody.vector(v, field: "vector"), metadata: try Self.metadata(body["metadata"], field: "metadata"))
        noteWrite(token)
        return Self.json(["token": .string(token.description)], token: token)
    }

    @Sendable func deleteVector(_ request: Request, _ context: APIContext) async throws -> Response {
        let vs = try vectors(context)
        return Self.json(["deleted": .bool(try await vs.delete(try Self.path(context, "id")))])
    }

    @Sendable func nearest(_ request: Request, _ context: APIContext) async throws -> Response {
        let name = try Self.path(context, "dataset")
        let ds = try spec(name)
        let body = try await jsonBody(request)
        let k = try body.integer("k", in: 1...1000) ?? 10
        let filter = try body["filter"].map { try FilterJSON.parse($0) } ?? .all
        let exact: Bool
        switch body["exact"] { case nil: exact = false; case .bool(let b)?: exact = b; case let v?: throw JSONBody.wrongType("exact", "true or false", v) }
        let vector = try body["vector"].map { try JSONBody.vector($0, field: "vector") }
        let text = try body.string("text")
        guard (vector == nil) != (text == nil) else {
            throw Problem.badRequest("bad-field", "Send exactly one of 'vector' (an array of numbers) and 'text'.")
        }
        let hits: [VectorHit]
        switch ds.model {
        case .vectors:
            guard let vector else {
                throw Problem.badRequest("bad-field", "Dataset '\(name)' holds vectors without an embedder: send 'vector', not 'text'.")
            }
            hits = try await db.vectors(name).nearest(to: vector, k: k, where: filter, exact: exact)
        case .documents:
            let docs = try db.documents(name)
            if let vector { hits = try await docs.nearest(to: vector, k: k, where: filter, exact: exact) }
            else { hits = try await docs.nearest(text: text!, k: k, where: filter) }
        default:
            throw Problem.badRequest("wrong-model", "Dataset '\(name)' is a \(ds.model.rawValue) dataset; nearest needs a vectors dataset or documents with a vectors projection.")
        }
        return Self.json(["hits": .array(hits.map { ["id": .string($0.id), "distance": .number(Double($0.distance).isFinite ? Double($0.distance) : 0), "metadata": $0.metadata ?? .null] })])
    }

    // MARK: graph

    func graph(_ context: APIContext) throws -> GraphCollection { try db.graph(try Self.path(context, "dataset")) }

    @Sendable func addEdges(_ request: Request, _ context: APIContext) async throws -> Response {
        let g = try graph(context)
        let body = try await jsonBody(request)
        guard let items = try body.array("edges"), !items.isEmpty else { throw JSONBody.missing("edges", "a non-empty array of {from, to, label, weight}") }
        guard items.count <= 1000 else { throw Problem(.contentTooLarge, code: "batch-too-large", detail: "At most 1000 edges per request; got \(items.count).", fix: "Split it.") }
        var edges: [Edge] = []
        for (i, item) in items.enumerated() {
            guard case .object(let o) = item else { throw JSONBody.wrongType("edges[\(i)]", "an object", item) }
            let e = JSONBody(value: o)
            let from = try e.requiredString("from"), to = try e.requiredString("to")
            guard !from.isEmpty, !to.isEmpty else { throw Problem.badRequest("bad-field", "'edges[\(i)]' needs non-empty 'from' and 'to'.") }
            edges.append(Edge(from: from, to: to, label: try e.string("label") ?? "", weight: try e.number("weight") ?? 1,
                              properties: try Self.metadata(o["properties"], field: "edges[\(i)].properties")))
        }
        let token = try await g.addEdges(edges)
        noteWrite(token)
        return Self.json(["token": .string(token.description), "added": .number(Double(edges.count))], token: token)
    }

    @Sendable func neighbors(_ request: Request, _ context: APIContext) async throws -> Response {
        let g = try graph(context)
        let node = try Self.path(context, "node")
        let out = try await g.neighbors(of: node, direction: try Self.direction(request), label: Self.query(request, "label"))
        return Self.json(["node": .string(node), "neighbors": .array(out.map { .string($0) })])
    }

    @Sendable func traverse(_ request: Request, _ context: APIContext) async throws -> Response {
        let g = try graph(context)
        let node = try Self.path(context, "node")
        let depth = try Self.queryInt(request, "depth", default: 2, in: 1...10)
        let steps = try await g.traverse(from: node, depth: depth, direction: try Self.direction(request), label: Self.query(request, "label"))
        return Self.json(["node": .string(node), "steps": .array(steps.map { ["node": .string($0.node), "depth": .number(Double($0.depth))] })])
    }

    // MARK: time series

    func timeSeries(_ context: APIContext) throws -> TimeSeriesCollection { try db.timeSeries(try Self.path(context, "dataset")) }

    @Sendable func appendSamples(_ request: Request, _ context: APIContext) async throws -> Response {
        let ts = try timeSeries(context)
        let body = try await jsonBody(request)
        guard let items = try body.array("samples"), !items.isEmpty else { throw JSONBody.missing("samples", "a non-empty array of {series, value, time}") }
        guard items.count <= 10_000 else { throw Problem(.contentTooLarge, code: "batch-too-large", detail: "At most 10000 samples per request; got \(items.count).", fix: "Split it.") }
        let now = Date()
        var samples: [Sample] = []
        for (i, item) in items.enumerated() {
            guard case .object(let o) = item else { throw JSONBody.wrongType("samples[\(i)]", "an object", item) }
            let s = JSONBody(value: o)
            let series = try s.requiredString("series")
            guard !series.isEmpty else { throw Problem.badRequest("bad-field", "'samples[\(i)].series' must not be empty.") }
            guard let value = try s.number("value") else { throw JSONBody.missing("samples[\(i)].value", "a number") }
            let time = try s["time"].map { try Self.date($0, name: "samples[\(i)].time") } ?? now
            samples.append(Sample(series: series, time: time, value: value))
        }
        let token = try await ts.append(samples)
        noteWrite(token)
        return Self.json(["token": .string(token.description), "appended": .number(Double(samples.count))], token: token)
    }

    static func window(_ request: Request) throws -> (series: String, from: Date, to: Date) {
        guard let series = query(request, "series"), !series.isEmpty else {
            throw Problem.badRequest("bad-query", "'series' is required.", fix: "GET /v1/timeseries/page_views/range?series=/home")
        }
        let to = try query(request, "to").map { try date($0, name: "to") } ?? Date()
        let from = try query(request, "from").map { try date($0, name: "from") } ?? to.addingTimeInterval(-86_400)
        guard from <= to else { throw Problem.badRequest("bad-query", "'from' is after 'to'.") }
        return (series, from, to)
    }

    @Sendable func rangeSamples(_ request: Request, _ context: APIContext) async throws -> Response {
        let ts = try timeSeries(context)
        let w = try Self.window(request)
        let limit = try Self.queryInt(request, "limit", default: 10_000, in: 1...100_000)
        let samples = try await ts.range(w.series, from: w.from, to: w.to, limit: limit)
        return Self.json(["series": .string(w.series), "samples": .array(samples.map { ["time": .string(Self.formatDate($0.time)), "value": .number($0.value)] })])
    }

    @Sendable func aggregateSamples(_ request: Request, _ context: APIContext) async throws -> Response {
        let ts = try timeSeries(context)
        let w = try Self.window(request)
        let bucket = try Self.query(request, "bucket").map { try Self.duration($0, name: "bucket") } ?? .seconds(3600)
        let span = w.to.timeIntervalSince(w.from)
        let width = Double(bucket.components.seconds) + Double(bucket.components.attoseconds) / 1e18
        guard width >= 1 else { throw Problem.badRequest("bad-query", "'bucket' must be at least 1s.") }
        guard span / width <= 100_000 else {
            throw Problem.badRequest("bad-query", "That asks for \(Int(span / width)) buckets; at most 100000.", fix: "Use a wider bucket or a shorter range.")
        }
        let buckets = try await ts.aggregate(w.series, from: w.from, to: w.to, bucket: bucket)
        return Self.json(["series": .string(w.series), "buckets": .array(buckets.map {
            ["start": .string(Self.formatDate($0.start)), "count": .number(Double($0.count)), "sum": .number($0.sum),
             "min": .number($0.count == 0 ? 0 : $0.min), "max": .number($0.count == 0 ? 0 : $0.max), "avg": .number($0.average)]
        })])
    }
}
