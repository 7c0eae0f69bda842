import Foundation
import HTTPTypes
import Hummingbird
import Polyglot

extension PolyglotServer {
    static let documentItem = Schema.object(["id": Schema.string, "version": Schema.integer, "body": Schema.anyValue], required: ["id", "version", "body"])

    func documentRoutes() -> [RouteSpec] {
        let names = self.names(of: .documents)
        let ds = P.dataset(names, "documents")
        let id = P.path("id", "The document id.")
        return [
            RouteSpec(method: .get, path: "/v1/documents/{dataset}", operationId: "queryDocuments",
                      summary: "Query documents with a JSON filter, sorted, one page at a time (cursor pagination).", tag: "documents",
                      access: .dataset(.read),
                      parameters: [ds, P.filter,
                                   P.query("sort", "Comma-separated field paths; '-' for descending: price,-name."),
                                   P.query("limit", "Page size (1-1000, default 50).", Schema.integer(min: 1, max: 1000)),
                                   P.query("cursor", "The `next` value of the previous page.")],
                      responses: [200: R.ok("One page of documents; `next` is null on the last page.",
                                            Schema.object(["items": Schema.array(Self.documentItem), "next": ["type": "string", "nullable": true]],
                                                          required: ["items", "next"]))],
                      handler: queryDocuments),
            RouteSpec(method: .post, path: "/v1/documents/{dataset}", operationId: "batchDocuments",
                      summary: "Write many documents (and delete some) in one local transaction: all or nothing.", tag: "documents",
                      access: .dataset(.write), parameters: [ds],
                      requestBody: ("application/json", Schema.object([
                          "put": Schema.array(Schema.object(["id": ["type": "string", "minLength": 1], "body": Schema.anyObject], required: ["id", "body"]), maxItems: 1000),
                          "delete": Schema.array(["type": "string", "minLength": 1], maxItems: 1000),
                      ]), true),
                      responses: [200: R.ok("Written; the token covers every change.",
                                            Schema.object(["token": ["type": "string", "nullable": true], "put": Schema.integer, "deleted": Schema.integer],
                                                          required: ["token", "put", "deleted"]), headers: R.token)],
                      handler: batchDocuments),
            RouteSpec(method: .get, path: "/v1/documents/{dataset}/{id}", operationId: "getDocument",
                      summary: "One document, through the cache projection when there is one. ETag is its version.", tag: "documents",
                      access: .dataset(.read),
                      parameters: [ds, id, P.header("If-None-Match", "An ETag: answers 304 if the document still has that version.")],
                      responses: [200: R.ok("The document's JSON body.", Schema.anyValue, headers: ["ETag"]),
                                  304: ResponseSpec(description: "Not modified since the given ETag.", headers: ["ETag"])],
                      handler: getDocument),
            RouteSpec(method: .put, path: "/v1/documents/{dataset}/{id}", operationId: "putDocument",
                      summary: "Insert or replace a document. If-Match makes it conditional on the version; If-None-Match: * on absence.", tag: "documents",
                      access: .dataset(.write),
                      parameters: [ds, id, P.header("If-Match", "Replace only if the document's ETag is this (or `*`: exists)."),
                                   P.header("If-None-Match", "`*`: create only, fail if the document exists.")],
                      requestBody: ("application/json", Schema.anyObject, true),
                      responses: [200: R.ok("Stored.", Schema.object(["id": Schema.string, "version": Schema.integer, "token": Schema.string],
                                                                     required: ["id", "version", "token"]), headers: ["Polyglot-Token", "ETag"])],
                      handler: putDocument),
            RouteSpec(method: .delete, path: "/v1/documents/{dataset}/{id}", operationId: "deleteDocument",
                      summary: "Delete a document. If-Match makes it conditional on the version.", tag: "documents",
                      access: .dataset(.write),
                      parameters: [ds, id, P.header("If-Match", "Delete only if the document's ETag is this.")],
                      responses: [200: R.ok("Deleted.", Schema.object(["id": Schema.string, "token": Schema.string], required: ["id", "token"]), headers: R.token)],
                      handler: deleteDocument),
            RouteSpec(method: .get, path: "/v1/search/{dataset}", operationId: "search",
                      summary: "Full-text search over a documents dataset's search projection, best first.", tag: "search",
                      access: .dataset(.read),
                      parameters: [P.dataset(db.map.datasets.filter { $0.projection(.search) != nil }.map(\.name).sorted(), "searchable documents"),
                                   P.query("q", "The words to search for.", ["type": "string", "minLength": 1], required: true),
                                   P.query("limit", "At most this many hits (1-1000, default 10).", Schema.integer(min: 1, max: 1000)), P.filter],
                      responses: [200: R.ok("Hits, best first.", Schema.object(["hits": Schema.array(Schema.object(
                          ["id": Schema.string, "score": Schema.number, "snippet": Schema.string], required: ["id", "score", "snippet"]))], required: ["hits"]))],
                      handler: search),
        ]
    }

    // MARK: handlers

    func documents(_ context: APIContext) throws -> DocumentCollection {
        try db.documents(try Self.path(context, "dataset"))
    }

    /// A page cursor: in id order (no sort) the last id of the page, so writes between pages shift nothing
    /// (keyset paging); with sort keys, an offset. It also carries a fingerprint of the filter and sort.
    struct Cursor {
        enum Position: Equatable { case after(String), offset(Int) }
        var position: Position
        var fingerprint: UInt64

        static func fingerprint(_ filter: String, _ sort: String) -> UInt64 {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in (filter + "\u{1}" + sort).utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            return h
        }
        var text: String {
            let where_: String
            switch position {
            case .after(let id): where_ = "k" + id
            case .offset(let o): where_ = "o" + String(o)
            }
            return Data("c2|\(String(fingerprint, radix: 16))|\(where_)".utf8).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        init(_ position: Position, fingerprint: UInt64) { self.position = position; self.fingerprint = fingerprint }
        init(_ text: String, expected: UInt64) throws {
            var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while b64.count % 4 != 0 { b64 += "=" }
            guard let data = Data(base64Encoded: b64), let s = String(data: data, encoding: .utf8) else { throw Self.bad }
            let parts = s.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "c2", let f = UInt64(parts[1], radix: 16), let kind = parts[2].first else { throw Self.bad }
            guard f == expected else {
                throw Problem.badRequest("bad-cursor", "This cursor belongs to a query with another filter or sort.",
                                         fix: "Pass the same filter and sort as the request that returned the cursor.")
            }
            let rest = String(parts[2].dropFirst())
            switch kind {
            case "k" where !rest.isEmpty: position = .after(rest)
            case "o": guard let o = Int(rest), o >= 0 else { throw Self.bad }; position = .offset(o)
            default: throw Self.bad
            }
            fingerprint = f
        }
        static let bad = Problem.badRequest("bad-cursor", "The cursor is not one this server issued.", fix: "Pass the `next` value of the previous page unchanged.")
    }

    @Sendable func queryDocuments(_ request: Request, _ context: APIContext) async throws -> Response {
        let docs = try documents(context)
        let filter = try Self.queryFilter(request)
        let sortText = Self.query(request, "sort") ?? ""
        let sort = try FilterJSON.sort(sortText)
        let limit = try Self.queryInt(request, "limit", default: 50, in: 1...1000)
        let fingerprint = Cursor.fingerprint(Self.query(request, "filter") ?? "", sortText)
        let position = try Self.query(request, "cursor").map { try Cursor($0, expected: fingerprint).position } ?? (sort.isEmpty ? nil : .offset(0))
        let page: [Document]
        switch position {
        case .after(let id)?: page = try await docs.query(filter, limit: limit + 1, after: id)
        case .offset(let o)?: page = try await docs.query(filter, sort: sort, limit: limit + 1, offset: o)
        case nil: page = try await docs.query(filter, limit: limit + 1)
        }
        var out = Data("{\"items\":[".utf8)
        for (i, d) in page.prefix(limit).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: Data("{\"id\":".utf8))
            out.append(JSON.string(d.id).serialized())
            out.append(contentsOf: Data(",\"version\":\(d.version),\"body\":".utf8))
            out.append(d.data)
            out.append(UInt8(ascii: "}"))
        }
        var next = JSON.null
        if page.count > limit {
            // In id order the next page starts after this page's last id; sorted pages go by offset.
            let following: Cursor.Position
            if sort.isEmpty, let last = page.prefix(limit).last {
                following = .after(last.id)
            } else if case .offset(let o)? = position {
                following = .offset(o + limit)
            } else {
                following = .offset(limit)
            }
            next = .string(Cursor(following, fingerprint: fingerprint).text)
        }
        out.append(contentsOf: Data("],\"next\":".utf8))
        out.append(next.serialized())
        out.append(UInt8(ascii: "}"))
        return Self.raw(out)
    }

    @Sendable func batchDocuments(_ request: Request, _ context: APIContext) async throws -> Response {
        let docs = try documents(context)
        let body = try await jsonBody(request)
        var puts: [(id: String, body: JSON)] = []
        for (i, item) in (try body.array("put") ?? []).enumerated() {
            guard case .object(let o) = item else { throw JSONBody.wrongType("put[\(i)]", "an object {id, body}", item) }
            guard case .string(let id)? = o["id"], !id.isEmpty else { throw Problem.badRequest("bad-field", "'put[\(i)].id' must be a non-empty string.") }
            guard let b = o["body"], case .object = b else { throw Problem.badRequest("bad-field", "'put[\(i)].body' must be a JSON object.") }
            puts.append((id, b))
        }
        var deletes: [String] = []
        for (i, item) in (try body.array("delete") ?? []).enumerated() {
            guard case .string(let id) = item, !id.isEmpty else { throw Problem.badRequest("bad-field", "'delete[\(i)]' must be a non-empty string.") }
            deletes.append(id)
        }
        guard !puts.isEmpty || !deletes.isEmpty else {
            throw Problem.badRequest("empty-batch", "The batch has nothing to put or delete.", fix: #"Send {"put":[{"id":"p1","body":{...}}],"delete":["p2"]}."#)
        }
        guard puts.count + deletes.count <= 1000 else {
            throw Problem(.contentTooLarge, code: "batch-too-large", detail: "A batch holds at most 1000 changes; this one has \(puts.count + deletes.count).", fix: "Split it.")
        }
        let token: ConsistencyToken?
        if deletes.isEmpty {
            token = try await docs.putMany(puts)
        } else {
            let engine = try spec(docs.name).engine
            let p = puts, d = deletes
            token = try await db.transaction(on: engine) {
                var latest: ConsistencyToken? = p.isEmpty ? nil : try await docs.putMany(p)
                for id in d { if let t = try await docs.delete(id) { latest = max(latest ?? t, t) } }
                return latest
            }
        }
        noteWrite(token)
        return Self.json(["token": token.map { .string($0.description) } ?? .null, "put": .number(Double(puts.count)), "deleted": .number(Double(deletes.count))], token: token)
    }

    static func etag(_ version: Int64) -> String { "\"\(version)\"" }

    static func etagMatches(_ header: String, version: Int64?) -> Bool {
        let list = header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if list.contains("*") { return version != nil }
        guard let version else { return false }
        return list.contains { $0 == etag(version) || $0 == "W/" + etag(version) }
    }

    @Sendable func getDocument(_ request: Request, _ context: APIContext) async throws -> Response {
        let docs = try documents(context)
        let id = try Self.path(context, "id")
        guard let doc = try await docs.get(id) else {
            throw Problem(.notFound, code: "not-found", detail: "Dataset '\(docs.name)' has no document '\(id)'.")
        }
        if let inm = request.headers[.ifNoneMatch], Self.etagMatches(inm, version: doc.version) {
            return Response(status: .notModified, headers: [.eTag: Self.etag(doc.version)])
        }
        return Self.raw(doc.data, headers: [.eTag: Self.etag(doc.version)])
    }

    /// Runs a conditional write: reads the current version in the write's transaction (and under a per-document
    /// lock, for engines whose transactions do not lock the row), checks the preconditions, then writes.
    func conditional<R: Sendable>(_ docs: DocumentCollection, _ id: String, ifMatch: String?, ifNoneMatch: String?,
                                  _ write: @escaping @Sendable () async throws -> R) async throws -> R {
        guard ifMatch != nil || ifNoneMatch != nil else { return try await write() }
        let engine = try spec(docs.name).engine
        return try await conditionalLocks.withLock("\(docs.name)\u{1}\(id)") {
            try await db.transaction(on: engine) {
                let current = try await docs.get(id)?.version
                if let ifMatch, !Self.etagMatches(ifMatch, version: current) {
                    throw Problem(.preconditionFailed, code: "precondition-failed",
                                  detail: current.map { "Document '\(id)' is at version \(Self.etag($0)), not \(ifMatch)." } ?? "Document '\(id)' does not exist.",
                                  fix: "GET it again, apply your change to the new version, and retry with its ETag.")
                }
                if let ifNoneMatch, Self.etagMatches(ifNoneMatch, version: current) {
                    throw Problem(.preconditionFailed, code: "precondition-failed",
                                  detail: "Document '\(id)' already exists (version \(Self.etag(current ?? 0))).", fix: "Update it with If-Match, or choose another id.")
                }
                return try await write()
            }
        }
    }

    @Sendable func putDocument(_ request: Request, _ context: APIContext) async throws -> Response {
        let docs = try documents(context)
        let id = try Self.path(context, "id")
        let data = Data(try await body(request).readableBytesView)
        let token = try await conditional(docs, id, ifMatch: request.headers[.ifMatch], ifNoneMatch: request.headers[.ifNoneMatch]) {
            do { return try await docs.put(id, json: data) } catch let e as PolyglotError where e.code == .malformedJSON {
                throw Problem.badRequest("bad-json", "The document is not valid JSON: \(e.message)", fix: "Send a JSON object as the body.")
            }
        }
        noteWrite(token)
        return Self.json(["id": .string(id), "version": .number(Double(token.position)), "token": .string(token.description)],
                         token: token, headers: [.eTag: Self.etag(token.position)])
    }

    @Sendable func deleteDocument(_ request: Request, _ context: APIContext) async throws -> Response {
        let docs = try documents(context)
        let id = try Self.path(context, "id")
        let token = try await conditional(docs, id, ifMatch: request.headers[.ifMatch], ifNoneMatch: nil) { try await docs.delete(id) }
        guard let token else {
            throw Problem(.notFound, code: "not-found", detail: "Dataset '\(docs.name)' has no document '\(id)'.")
        }
        noteWrite(token)
        return Self.json(["id": .string(id), "token": .string(token.description)], token: token)
    }

    @Sendable func search(_ request: Request, _ context: APIContext) async throws -> Response {
        let docs = try documents(context)
        guard let q = Self.query(request, "q"), !q.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw Problem.badRequest("bad-query", "'q' is required: the words to search for.", fix: "GET /v1/search/products?q=waterproof+boot")
        }
        let limit = try Self.queryInt(request, "limit", default: 10, in: 1...1000)
        let hits = try await docs.search(q, filter: try Self.queryFilter(request), limit: limit)
        return Self.json(["hits": .array(hits.map { ["id": .string($0.id), "score": .number($0.score.isFinite ? $0.score : 0), "snippet": .string($0.snippet)] })])
    }
}
