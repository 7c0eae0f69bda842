import Foundation
import HTTPTypes
import Hummingbird
import Polyglot

/// Who may call a route.
enum Access: Sendable, Equatable {
    /// No key needed (health, the OpenAPI document, the dashboard's static files).
    case open
    /// A key with this operation on the route's `{dataset}`.
    case dataset(KeyOperation)
    /// A key with this operation on `*` (server-wide figures).
    case server(KeyOperation)
    /// Any valid key; the handler shows only what the key's scopes allow.
    case anyKey
}

/// A parameter in the OpenAPI sense.
struct ParamSpec: Sendable {
    enum Location: String, Sendable { case path, query, header }
    var name: String
    var location: Location
    var required: Bool
    var description: String
    var schema: JSON
}

/// One route: how it is served and how /openapi.json describes it. The router and the OpenAPI document are both
/// built from the same list, so the contract cannot drift from what the server does.
struct RouteSpec: Sendable {
    typealias Handler = @Sendable (Request, APIContext) async throws -> Response
    var method: HTTPRequest.Method
    var path: String
    var operationId: String
    var summary: String
    var tag: String
    var access: Access
    var parameters: [ParamSpec] = []
    /// media type → schema
    var requestBody: (mediaType: String, schema: JSON, required: Bool)? = nil
    /// status → (description, media type → schema, headers)
    var responses: [Int: ResponseSpec]
    var handler: Handler
}

struct ResponseSpec: Sendable {
    var description: String
    var content: [String: JSON] = [:]
    var headers: [String] = []
}

/// JSON Schema builders for the OpenAPI document.
enum Schema {
    static let string: JSON = ["type": "string"]
    static let number: JSON = ["type": "number"]
    static let integer: JSON = ["type": "integer"]
    static let boolean: JSON = ["type": "boolean"]
    static let anyValue: JSON = [:]
    static let anyObject: JSON = ["type": "object"]
    static func array(_ items: JSON, maxItems: Int? = nil, minItems: Int? = nil) -> JSON {
        var o: [String: JSON] = ["type": "array", "items": items]
        if let maxItems { o["maxItems"] = .number(Double(maxItems)) }
        if let minItems { o["minItems"] = .number(Double(minItems)) }
        return .object(o)
    }
    static func object(_ properties: [String: JSON], required: [String] = [], additional: Bool = true) -> JSON {
        var o: [String: JSON] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { o["required"] = .array(required.map { .string($0) }) }
        if !additional { o["additionalProperties"] = false }
        return .object(o)
    }
    static func ref(_ name: String) -> JSON { ["$ref": .string("#/components/schemas/\(name)")] }
    static func enumeration(_ values: [String]) -> JSON { ["type": "string", "enum": .array(values.map { .string($0) })] }
    static func integer(min: Int, max: Int) -> JSON { ["type": "integer", "minimum": .number(Double(min)), "maximum": .number(Double(max))] }
    static func string(description: String) -> JSON { ["type": "string", "description": .string(description)] }
}

extension RouteSpec {
    /// The response every route may give instead of its result.
    static let problem = ResponseSpec(description: "A problem (RFC 9457): what was wrong and how to fix it.",
                                      content: ["application/problem+json": Schema.ref("Problem")])
}

enum OpenAPI {
    /// The OpenAPI 3.0 document for these routes.
    static func document(routes: [RouteSpec], authRequired: Bool, version: String) -> JSON {
        var paths: [String: [String: JSON]] = [:]
        for r in routes {
            var op: [String: JSON] = [
                "operationId": .string(r.operationId),
                "summary": .string(r.summary),
                "tags": [.string(r.tag)],
            ]
            var params: [JSON] = r.parameters.map { p in
                [
                    "name": .string(p.name), "in": .string(p.location.rawValue), "required": .bool(p.required),
                    "description": .string(p.description), "schema": p.schema,
                ]
            }
            if r.access != .open {
                params.append(["$ref": "#/components/parameters/ConsistencyToken"])
            }
            if !params.isEmpty { op["parameters"] = .array(params) }
            if let body = r.requestBody {
                op["requestBody"] = ["required": .bool(body.required), "content": [body.mediaType: ["schema": body.schema]]]
            }
            var responses: [String: JSON] = [:]
            for (status, spec) in r.responses {
                var resp: [String: JSON] = ["description": .string(spec.description)]
                if !spec.content.isEmpty { resp["content"] = .object(spec.content.mapValues { ["schema": $0] }) }
                if !spec.headers.isEmpty {
                    resp["headers"] = .object(Dictionary(uniqueKeysWithValues: spec.headers.map { ($0, ["$ref": .string("#/components/headers/\($0)")]) }))
                }
                responses[String(status)] = .object(resp)
            }
            responses["default"] = ["description": .string(RouteSpec.problem.description),
                                    "content": ["application/problem+json": ["schema": Schema.ref("Problem")]]]
            op["responses"] = .object(responses)
            switch r.access {
            case .open: if authRequired { op["security"] = [] }
            case .dataset(let o): op["description"] = .string("Needs a key with `\(o.rawValue)` on the dataset (or on `*`) when the server requires keys.")
            case .server(let o): op["description"] = .string("Needs a key with `*:\(o.rawValue)` when the server requires keys.")
            case .anyKey: op["description"] = .string("Needs any valid key when the server requires keys; answers with what its scopes allow.")
            }
            paths[r.path, default: [:]][r.method.rawValue.lowercased()] = .object(op)
        }
        var doc: [String: JSON] = [
            "openapi": "3.0.3",
            "info": [
                "title": "Polyglot data API",
                "version": .string(version),
                "description": "One API over every dataset of a Polyglot data map: documents, key-value, vectors, search, graph and time series. Writes return their consistency token in the `Polyglot-Token` header; reads accept it back to see at least that write.",
            ],
            "paths": .object(paths.mapValues { .object($0) }),
            "components": components,
        ]
        // Only when this server requires keys: an open loopback server accepts requests without one.
        if authRequired { doc["security"] = [["apiKey": []], ["bearer": []]] }
        return .object(doc)
    }

    static let components: JSON = [
        "securitySchemes": [
            "apiKey": ["type": "apiKey", "in": "header", "name": "X-API-Key"],
            "bearer": ["type": "http", "scheme": "bearer"],
        ],
        "parameters": [
            "ConsistencyToken": [
                "name": "Polyglot-Token", "in": "header", "required": false,
                "description": "A consistency token from an earlier write (engine:position): the read sees at least that write, waiting up to 5 s for a projection fed by the relay.",
                "schema": ["type": "string", "pattern": "^[A-Za-z0-9_.-]+:[0-9]+(@[0-9a-f]+)?$"],
            ],
        ],
        "headers": [
            "Polyglot-Token": ["description": "The write's consistency token.", "schema": ["type": "string"]],
            "ETag": ["description": "The document's version, for If-Match and If-None-Match.", "schema": ["type": "string"]],
            "Retry-After": ["description": "Seconds to wait before retrying.", "schema": ["type": "string"]],
        ],
        "schemas": [
            "Problem": [
                "type": "object",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": [
                    "type": ["type": "string"], "title": ["type": "string"], "status": ["type": "integer"],
                    "detail": ["type": "string"], "code": ["type": "string"], "fix": ["type": "string"],
                ],
            ],
        ],
    ]
}
