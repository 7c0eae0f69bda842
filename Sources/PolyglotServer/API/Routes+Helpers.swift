import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Polyglot

extension PolyglotServer {
    static let tokenHeader = HTTPField.Name("Polyglot-Token")!

    func body(_ request: Request) async throws -> ByteBuffer {
        try await request.body.collect(upTo: configuration.maxBodyBytes)
    }

    func jsonBody(_ request: Request) async throws -> JSONBody {
        try JSONBody(try await body(request))
    }

    static func json(_ value: JSON, status: HTTPResponse.Status = .ok, token: ConsistencyToken? = nil, headers: [HTTPField.Name: String] = [:]) -> Response {
        raw(value.serialized(), status: status, token: token, headers: headers)
    }

    static func raw(_ data: Data, contentType: String = "application/json", status: HTTPResponse.Status = .ok,
                    token: ConsistencyToken? = nil, headers: [HTTPField.Name: String] = [:]) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = contentType
        if let token { fields[tokenHeader] = token.description }
        for (k, v) in headers { fields[k] = v }
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func path(_ context: APIContext, _ name: String) throws -> String {
        guard let raw = context.parameters.get(name) else {
            throw Problem.badRequest("bad-path", "The path has no '\(name)'.")
        }
        return try decode(raw, name: name)
    }

    static func query(_ request: Request, _ name: String) -> String? {
        request.uri.queryParameters.get(name)
    }

    static func queryInt(_ request: Request, _ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = query(request, name) else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw Problem.badRequest("bad-query", "'\(name)' must be an integer from \(range.lowerBound) to \(range.upperBound); it is '\(text)'.")
        }
        return n
    }

    static func queryFilter(_ request: Request) throws -> Filter {
        guard let text = query(request, "filter"), !text.isEmpty else { return .all }
        let json: JSON
        do { json = try JSON(parsing: text) } catch {
            throw FilterJSON.bad("The filter is not valid JSON: \((error as? PolyglotError)?.message ?? "\(error)")")
        }
        return try FilterJSON.parse(json)
    }

    static func direction(_ request: Request) throws -> EdgeDirection {
        guard let text = query(request, "direction") else { return .outgoing }
        guard let d = EdgeDirection(rawValue: text) else {
            throw Problem.badRequest("bad-query", "'direction' must be one of \(EdgeDirection.allCases.map(\.rawValue).joined(separator: ", ")); it is '\(text)'.")
        }
        return d
    }

    /// `30s`, `5m`, `1h`, `250ms`, `2d`, `1w`, or a number of seconds (the data map's `DataMap.parseDuration`), positive
    /// and at most 366 days; anything else is a 400 naming the parameter.
    static func duration(_ text: String, name: String) throws -> Duration {
        guard let d = DataMap.parseDuration(text), d > .zero, d <= .seconds(366 * 86_400) else {
            throw Problem.badRequest("bad-query", "'\(name)' must be a positive duration like 30s, 5m, 1h or 250ms (at most 366d); it is '\(text)'.",
                                     fix: "Pass e.g. \(name)=1h, 24h or 7d.")
        }
        return d
    }

    static func formatDate(_ d: Date) -> String { Timestamp.text(d) }

    /// An ISO 8601 time or seconds since 1970, in the years 1 to 9999 (`Timestamp`).
    static func date(_ text: String, name: String) throws -> Date {
        // `nan` and `inf` parse as Doubles but are no JSON number (they would be reported as "null"): keep the text.
        if let seconds = Double(text), seconds.isFinite { return try date(.number(seconds), name: name) }
        return try date(.string(text), name: name)
    }

    static func date(_ json: JSON, name: String) throws -> Date {
        guard let seconds = Timestamp.seconds(json) else {
            throw Problem.badRequest("bad-time", "'\(name)' must be an ISO 8601 time (2026-11-30T05:00:00Z) or seconds since 1970, in the years 1 to 9999; it is \(json.text).")
        }
        return Date(timeIntervalSince1970: seconds)
    }

    func spec(_ dataset: String) throws -> DatasetSpec {
        guard let ds = db.map.dataset(named: dataset) else {
            throw Problem(.notFound, code: "unknown-dataset",
                          detail: "Unknown dataset '\(dataset)' (known: \(db.map.datasets.map(\.name).sorted().joined(separator: ", "))).",
                          fix: "Declare it under `datasets:` in the data map, or check the spelling.")
        }
        return ds
    }

    func names(of model: DataModel) -> [String] { db.map.datasets.filter { $0.model == model }.map(\.name).sorted() }
}

enum P {
    static func dataset(_ names: [String], _ what: String) -> ParamSpec {
        ParamSpec(name: "dataset", location: .path, required: true, description: "A \(what) dataset of the data map.",
                  schema: names.isEmpty ? Schema.string : Schema.enumeration(names))
    }
    static func path(_ name: String, _ description: String) -> ParamSpec {
        ParamSpec(name: name, location: .path, required: true, description: description + " Percent-encode '/' and other reserved characters.",
                  schema: ["type": "string", "minLength": 1])
    }
    static func query(_ name: String, _ description: String, _ schema: JSON = Schema.string, required: Bool = false) -> ParamSpec {
        ParamSpec(name: name, location: .query, required: required, description: description, schema: schema)
    }
    static func header(_ name: String, _ description: String) -> ParamSpec {
        ParamSpec(name: name, location: .header, required: false, description: description, schema: Schema.string)
    }
    static let filter = query("filter", #"A JSON filter: {"category":"shoes","price":{"$lt":100}}. Operators: $eq $ne $lt $lte $gt $gte $in $exists $prefix $and $or $not."#)
    static let direction = query("direction", "Edge direction.", Schema.enumeration(EdgeDirection.allCases.map(\.rawValue)))
    static let label = query("label", "Only edges with this label.")
}

/// Shared response shapes.
enum R {
    static func ok(_ description: String, _ schema: JSON, headers: [String] = []) -> ResponseSpec {
        ResponseSpec(description: description, content: ["application/json": schema], headers: headers)
    }
    static let writeResult = Schema.object(["token": Schema.string], required: ["token"])
    static let token = ["Polyglot-Token"]
}
