import Foundation
import HTTPTypes
import Hummingbird
import Polyglot

/// An RFC 9457 problem: what the server answers instead of a result, as `application/problem+json`.
///
/// ```swift
/// throw Problem(.badRequest, code: "bad-filter", detail: "The filter is not JSON.", fix: "Send ?filter={\"price\":{\"$lt\":100}}")
/// ```
public struct Problem: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    /// A stable, machine-readable name: `unknown-dataset`, `bad-json`, `precondition-failed`, ...
    public var code: String
    public var detail: String
    public var fix: String?
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`).
    public var headers: [String: String]

    public init(_ status: HTTPResponse.Status, code: String, detail: String, fix: String? = nil, headers: [String: String] = [:]) {
        self.status = status; self.code = code; self.detail = detail; self.fix = fix; self.headers = headers
    }

    static func badRequest(_ code: String, _ detail: String, fix: String? = nil) -> Problem {
        Problem(.badRequest, code: code, detail: detail, fix: fix)
    }

    /// The problem for an error a handler threw: a ``PolyglotError`` maps its code to a status; anything else is
    /// a 500 whose detail does not leak internals.
    static func from(_ error: any Error) -> Problem {
        switch error {
        case let p as Problem: return p
        case let e as PolyglotError: return from(e)
        case let e as any HTTPResponseError:
            switch e.status {
            case .notFound: return Problem(.notFound, code: "no-route", detail: "No route matches this method and path.",
                                           fix: "See /openapi.json for the routes this server has.")
            case .contentTooLarge: return Problem(.contentTooLarge, code: "body-too-large", detail: "The request body is larger than this server accepts.",
                                                  fix: "Send a smaller body, or split a batch into several requests.")
            default: return Problem(e.status, code: "http-\(e.status.code)", detail: e.status.reasonPhrase)
            }
        default:
            return Problem(.internalServerError, code: "internal", detail: "The server failed to handle this request; the server log has the error.")
        }
    }

    static func from(_ e: PolyglotError) -> Problem {
        let status: HTTPResponse.Status
        switch e.code {
        case .unknownDataset, .notFound, .unknownEngine: status = .notFound
        case .wrongModel, .missingCapability, .malformedJSON, .invalidFilter, .invalidVector, .invalidArgument, .unknownEngineKind:
            status = .badRequest
        case .limitExceeded: status = .contentTooLarge
        case .conflict, .transactionFailed: status = .conflict
        case .stale, .engineUnavailable, .closed: status = .serviceUnavailable
        case .invalidDataMap, .engineFailure: status = .internalServerError
        // The model endpoint behind an embedder failed: a gateway error, retryable when the endpoint may recover.
        case .embedderFailure: status = e.isRetryable ? .serviceUnavailable : .badGateway
        }
        let slug = e.code.rawValue.reduce(into: "") { out, c in
            if c.isUppercase { out += "-" + c.lowercased() } else { out.append(c) }
        }
        var headers: [String: String] = [:]
        if status == .serviceUnavailable { headers["Retry-After"] = "1" }
        return Problem(status, code: slug, detail: e.message, fix: e.fix, headers: headers)
    }

    /// The JSON body.
    var json: JSON {
        var o: [String: JSON] = [
            "type": .string("urn:polyglot:problem:\(code)"),
            "title": .string(status.reasonPhrase),
            "status": .number(Double(status.code)),
            "code": .string(code),
            "detail": .string(detail),
        ]
        if let fix { o["fix"] = .string(fix) }
        return .object(o)
    }

    func response() -> Response {
        var fields = HTTPFields()
        fields[.contentType] = "application/problem+json"
        for (k, v) in headers { if let name = HTTPField.Name(k) { fields[name] = v } }
        let data = json.serialized()
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
