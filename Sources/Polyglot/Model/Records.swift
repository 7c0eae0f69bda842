import Foundation

/// What a write returns: its position in the source engine's change log.
/// Positions on one engine grow with commit order, so a later write has a larger token.
///
/// ```swift
/// let t1 = try await products.put("p1", ["price": 10])
/// let t2 = try await products.put("p1", ["price": 12])
/// assert(t2 > t1)
/// ```
public struct ConsistencyToken: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The engine whose log the position belongs to.
    public var engine: String
    public var position: Int64
    /// Where the write's commit ends in the engine's write-ahead log, when the engine has read replicas
    /// (PostgreSQL's commit LSN). A read that carries the token is served by a replica only once the replica
    /// has replayed this far.
    public var lsn: UInt64?

    public init(engine: String, position: Int64, lsn: UInt64? = nil) { self.engine = engine; self.position = position; self.lsn = lsn }

    public static func < (a: ConsistencyToken, b: ConsistencyToken) -> Bool {
        (a.engine, a.position) < (b.engine, b.position)
    }
    /// `engine:position` (with `@lsn` in hex when there is one), the form used in HTTP headers and logs.
    public var description: String { lsn.map { "\(engine):\(position)@\(String($0, radix: 16))" } ?? "\(engine):\(position)" }

    /// Parses ``description``'s form.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let rest = text[text.index(after: colon)...]
        let parts = rest.split(separator: "@", maxSplits: 1)
        guard let position = parts.first.flatMap({ Int64($0) }) else { return nil }
        var lsn: UInt64?
        if parts.count == 2 { guard let l = UInt64(parts[1], radix: 16) else { return nil }; lsn = l }
        self.init(engine: String(text[..<colon]), position: position, lsn: lsn)
    }
}

/// A stored document: its id, the version of the write that produced it, and its JSON bytes.
///
/// ```swift
/// if let doc = try await products.get("p1") {
///     let price = try doc.json()["price"]?.doubleValue
///     let typed = try doc.decode(as: Product.self)
/// }
/// ```
public struct Document: Sendable, Hashable {
    public var id: String
    /// The position of the write that produced this state; grows with every write to the id.
    public var version: Int64
    /// The document as compact UTF-8 JSON (an object).
    public var data: Data

    public init(id: String, version: Int64, data: Data) { self.id = id; self.version = version; self.data = data }

    /// The document parsed as a JSON value.
    public func json() throws -> JSON { try JSON(parsing: data) }

    /// The document decoded as a Codable type.
    public func decode<T: Decodable>(as type: T.Type = T.self, using decoder: JSONDecoder = JSONDecoder()) throws -> T {
        do { return try decoder.decode(T.self, from: data) } catch {
            throw PolyglotError(.malformedJSON, "Document '\(id)' does not decode as \(T.self): \(error).",
                                fix: "Make \(T.self)'s properties match the stored fields (make new fields optional).")
        }
    }
}

/// A query over a documents dataset.
public struct DocumentQuery: Sendable, Hashable {
    public var filter: Filter
    public var sort: [SortKey]
    public var limit: Int?
    public var offset: Int
    /// Keyset paging: only documents whose id sorts after this one, in the engine's id order. With no `sort`,
    /// results come in id order, so passing the last id of a page gets the next page, unaffected by concurrent
    /// inserts and deletes (which shift `offset` pages).
    public var after: String?
    public init(filter: Filter = .all, sort: [SortKey] = [], limit: Int? = nil, offset: Int = 0, after: String? = nil) {
        self.filter = filter; self.sort = sort; self.limit = limit; self.offset = offset; self.after = after
    }
}

/// One key-value entry, as returned by a scan.
public struct KeyValueEntry: Sendable, Hashable {
    public var key: String
    public var value: Data
    /// When the key expires, if it has a TTL.
    public var expiresAt: Date?
    public init(key: String, value: Data, expiresAt: Date?) { self.key = key; self.value = value; self.expiresAt = expiresAt }
}

/// A vector search result. Smaller `distance` is closer for every metric.
public struct VectorHit: Sendable, Hashable {
    public var id: String
    public var distance: Float
    public var metadata: JSON?
    public init(id: String, distance: Float, metadata: JSON?) { self.id = id; self.distance = distance; self.metadata = metadata }
}

/// A stored vector with its metadata.
public struct VectorRecord: Sendable, Hashable {
    public var id: String
    public var vector: [Float]
    public var metadata: JSON?
    public init(id: String, vector: [Float], metadata: JSON? = nil) { self.id = id; self.vector = vector; self.metadata = metadata }
}

/// A full-text search result. Larger `score` is more relevant.
public struct SearchHit: Sendable, Hashable {
    public var id: String
    public var score: Double
    /// A short excerpt with the matched terms wrapped in `[` and `]`.
    public var snippet: String
    public init(id: String, score: Double, snippet: String) { self.id = id; self.score = score; self.snippet = snippet }
}

/// A directed, labelled edge of a graph dataset.
public struct Edge: Sendable, Hashable {
    public var from: String
    public var to: String
    public var label: String
    public var weight: Double
    public var properties: JSON?
    public init(from: String, to: String, label: String = "", weight: Double = 1, properties: JSON? = nil) {
        self.from = from; self.to = to; self.label = label; self.weight = weight; self.properties = properties
    }
}

/// Which edges a graph walk follows.
public enum EdgeDirection: String, Sendable, Hashable, CaseIterable {
    case outgoing, incoming, both
}

/// A node reached by a traversal, with its hop distance from the start.
public struct TraversalStep: Sendable, Hashable {
    public var node: String
    public var depth: Int
    public init(node: String, depth: Int) { self.node = node; self.depth = depth }
}

/// One time-series sample.
public struct Sample: Sendable, Hashable {
    public var series: String
    public var time: Date
    public var value: Double
    public init(series: String, time: Date, value: Double) { self.series = series; self.time = time; self.value = value }
}

/// The aggregates of one time bucket.
public struct Bucket: Sendable, Hashable {
    public var start: Date
    public var count: Int
    public var sum: Double
    public var min: Double
    public var max: Double
    public var average: Double { count == 0 ? 0 : sum / Double(count) }
    public init(start: Date, count: Int, sum: Double, min: Double, max: Double) {
        self.start = start; self.count = count; self.sum = sum; self.min = min; self.max = max
    }
}

/// A table row: column name to value.
public typealias Row = [String: JSON]
