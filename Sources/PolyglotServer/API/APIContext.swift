import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Polyglot

/// The request context of the data API: who is calling (the key, or nobody on an open loopback server) and
/// from where.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The authenticated key, set by the route wrapper.
    public var key: StoredKey?
    /// The peer address, for rate limits of keyless callers.
    public var peer: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress ?? "local"
    }
}

/// A request's JSON body, with accessors whose errors name the field and the expected type.
struct JSONBody {
    let value: [String: JSON]

    init(value: [String: JSON]) { self.value = value }

    init(_ data: ByteBuffer, required: Bool = true) throws {
        guard data.readableBytes > 0 else {
            throw Problem.badRequest("empty-body", "This request needs a JSON object body and got none.", fix: "Send a JSON object with Content-Type: application/json.")
        }
        let parsed: JSON
        do { parsed = try JSON(parsing: Data(data.readableBytesView)) } catch {
            throw Problem.badRequest("bad-json", "The request body is not valid JSON: \((error as? PolyglotError)?.message ?? "\(error)")",
                                     fix: "Send a JSON object with Content-Type: application/json.")
        }
        guard case .object(let o) = parsed else {
            throw Problem.badRequest("bad-json", "The request body must be a JSON object; it is \(parsed.typeName).", fix: "Wrap the data in an object, as /openapi.json describes.")
        }
        value = o
    }

    subscript(_ key: String) -> JSON? { value[key].flatMap { $0.isNull ? nil : $0 } }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else { throw Self.wrongType(key, "a string", v) }
        return s
    }
    func requiredString(_ key: String) throws -> String {
        guard let s = try string(key) else { throw Self.missing(key, "a string") }
        return s
    }
    func number(_ key: String) throws -> Double? {
        guard let v = self[key] else { return nil }
        guard case .number(let d) = v, d.isFinite else { throw Self.wrongType(key, "a number", v) }
        return d
    }
    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let d = try number(key) else { return nil }
        guard d == d.rounded(), d >= Double(range.lowerBound), d <= Double(range.upperBound) else {
            throw Problem.badRequest("bad-field", "'\(key)' must be an integer from \(range.lowerBound) to \(range.upperBound); it is \(JSON.number(d).text).")
        }
        return Int(d)
    }
    func array(_ key: String) throws -> [JSON]? {
        guard let v = self[key] else { return nil }
        guard case .array(let a) = v else { throw Self.wrongType(key, "an array", v) }
        return a
    }
    func object(_ key: String) throws -> [String: JSON]? {
        guard let v = self[key] else { return nil }
        guard case .object(let o) = v else { throw Self.wrongType(key, "an object", v) }
        return o
    }

    static func wrongType(_ key: String, _ expected: String, _ got: JSON) -> Problem {
        .badRequest("bad-field", "'\(key)' must be \(expected); it is \(got.typeName).", fix: "See the request schema in /openapi.json.")
    }
    static func missing(_ key: String, _ expected: String) -> Problem {
        .badRequest("missing-field", "The body has no '\(key)' (\(expected)).", fix: "See the request schema in /openapi.json.")
    }

    /// `[Float]` from a JSON array of numbers, naming the field and position of a bad element.
    static func vector(_ json: JSON, field: String) throws -> [Float] {
        guard case .array(let a) = json else { throw wrongType(field, "an array of numbers", json) }
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for (i, e) in a.enumerated() {
            guard case .number(let d) = e, d.isFinite, abs(d) <= Double(Float.greatestFiniteMagnitude) else {
                throw Problem.badRequest("bad-vector", "'\(field)[\(i)]' must be a finite number; it is \(e.typeName == "number" ? e.text : e.typeName).")
            }
            out.append(Float(d))
        }
        return out
    }
}

extension JSON {
    var compactText: String { text }
}
