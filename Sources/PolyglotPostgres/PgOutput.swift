import Foundation
import NIOCore
import Polyglot

/// A decoder for PostgreSQL's built-in logical replication output plugin, `pgoutput`, protocol version 1, as
/// `pg_logical_slot_peek_binary_changes` returns it: one message per row (Begin, Relation, Insert, Update, Delete,
/// Commit, and a few this decoder reads past). Only whole transactions come out of a slot (the reorder buffer
/// emits a transaction at its commit), so the decoder collects each Begin … Commit into one ``Transaction``.
///
/// Pure: it turns bytes into values and is tested without a server.
struct PgOutputDecoder {
    /// A column of a relation, as its Relation message describes it.
    struct Column: Sendable, Hashable {
        var name: String
        var typeOID: UInt32
        var isKey: Bool
    }

    /// A table, as its Relation message describes it. pgoutput sends one before the first change of each table in
    /// every decoding session, and again when the table's definition changed.
    struct Relation: Sendable, Hashable {
        var id: UInt32
        var namespace: String
        var name: String
        /// `d` default (primary key), `f` full, `i` index, `n` nothing.
        var replicaIdentity: UInt8
        var columns: [Column]
    }

    /// A value in a tuple: SQL NULL, a TOASTed value the change did not touch (and so did not log), or text.
    enum Value: Sendable, Hashable {
        case null
        case unchangedToast
        case text(String)
    }

    enum Change: Sendable, Hashable {
        case insert(relation: UInt32, new: [Value])
        /// `old` is the old row (REPLICA IDENTITY FULL), the old key (a changed key), or nil.
        case update(relation: UInt32, old: [Value]?, new: [Value])
        case delete(relation: UInt32, old: [Value])
    }

    struct Transaction: Sendable {
        var xid: UInt32
        /// The LSN of the commit record: the transaction's position in commit order.
        var commitLSN: UInt64
        /// The LSN just past the commit record: a slot confirmed up to here no longer returns the transaction.
        var endLSN: UInt64
        /// Microseconds since 2000-01-01 UTC.
        var commitTime: Int64
        var changes: [Change] = []
    }

    /// Every Relation message seen so far, by relation id (kept across batches of one feed).
    var relations: [UInt32: Relation] = [:]
    private(set) var transactions: [Transaction] = []
    private var open: Transaction?

    /// Feeds one message.
    mutating func feed(_ message: ByteBuffer) throws {
        var b = message
        guard let kind: UInt8 = b.readInteger() else { throw Self.malformed("an empty message") }
        switch kind {
        case UInt8(ascii: "B"):
            guard let final: UInt64 = b.readInteger(), let time: Int64 = b.readInteger(), let xid: UInt32 = b.readInteger() else {
                throw Self.malformed("a short Begin message")
            }
            open = Transaction(xid: xid, commitLSN: final, endLSN: 0, commitTime: time)
        case UInt8(ascii: "C"):
            guard let _: UInt8 = b.readInteger(), let commit: UInt64 = b.readInteger(), let end: UInt64 = b.readInteger(),
                  let time: Int64 = b.readInteger() else {
                throw Self.malformed("a short Commit message")
            }
            guard var t = open else { throw Self.malformed("a Commit without a Begin") }
            t.commitLSN = commit; t.endLSN = end; t.commitTime = time
            transactions.append(t)
            open = nil
        case UInt8(ascii: "R"):
            guard let id: UInt32 = b.readInteger(), let ns = b.readCString(), let name = b.readCString(),
                  let identity: UInt8 = b.readInteger(), let count: Int16 = b.readInteger() else {
                throw Self.malformed("a short Relation message")
            }
            var columns: [Column] = []
            for _ in 0..<max(0, Int(count)) {
                guard let flags: UInt8 = b.readInteger(), let column = b.readCString(), let oid: UInt32 = b.readInteger(),
                      let _: Int32 = b.readInteger() else {
                    throw Self.malformed("a short column in the Relation message of \(name)")
                }
                columns.append(Column(name: column, typeOID: oid, isKey: flags & 1 == 1))
            }
            relations[id] = Relation(id: id, namespace: ns, name: name, replicaIdentity: identity, columns: columns)
        case UInt8(ascii: "I"):
            guard let id: UInt32 = b.readInteger(), b.readInteger(as: UInt8.self) == UInt8(ascii: "N") else {
                throw Self.malformed("a short Insert message")
            }
            try append(.insert(relation: id, new: try Self.tuple(&b)))
        case UInt8(ascii: "U"):
            guard let id: UInt32 = b.readInteger(), var tag: UInt8 = b.readInteger() else { throw Self.malformed("a short Update message") }
            var old: [Value]?
            if tag == UInt8(ascii: "K") || tag == UInt8(ascii: "O") {
                old = try Self.tuple(&b)
                guard let next: UInt8 = b.readInteger() else { throw Self.malformed("an Update message without a new row") }
                tag = next
            }
            guard tag == UInt8(ascii: "N") else { throw Self.malformed("an Update message with tag \(tag)") }
            try append(.update(relation: id, old: old, new: try Self.tuple(&b)))
        case UInt8(ascii: "D"):
            guard let id: UInt32 = b.readInteger(), let tag: UInt8 = b.readInteger(), tag == UInt8(ascii: "K") || tag == UInt8(ascii: "O") else {
                throw Self.malformed("a short Delete message")
            }
            try append(.delete(relation: id, old: try Self.tuple(&b)))
        case UInt8(ascii: "O"), UInt8(ascii: "Y"), UInt8(ascii: "T"), UInt8(ascii: "M"):
            // Origin and Type messages carry nothing a change needs; truncates are not published (see capturedChanges);
            // logical messages are off unless asked for.
            break
        default:
            throw Self.malformed("a message of unknown kind \(kind)")
        }
    }

    private mutating func append(_ change: Change) throws {
        guard open != nil else { throw Self.malformed("a change outside a transaction") }
        open?.changes.append(change)
    }

    static func tuple(_ b: inout ByteBuffer) throws -> [Value] {
        guard let count: Int16 = b.readInteger() else { throw malformed("a tuple without a column count") }
        var values: [Value] = []
        values.reserveCapacity(Int(count))
        for _ in 0..<max(0, Int(count)) {
            guard let kind: UInt8 = b.readInteger() else { throw malformed("a short tuple") }
            switch kind {
            case UInt8(ascii: "n"): values.append(.null)
            case UInt8(ascii: "u"): values.append(.unchangedToast)
            case UInt8(ascii: "t"):
                guard let length: Int32 = b.readInteger(), length >= 0, let text = b.readString(length: Int(length)) else {
                    throw malformed("a short text value")
                }
                values.append(.text(text))
            default:
                throw malformed("a tuple value of kind \(kind)")
            }
        }
        return values
    }

    static func malformed(_ what: String) -> PolyglotError {
        PolyglotError(.engineFailure, "The pgoutput stream of a capture slot has \(what), which Polyglot cannot decode.",
                      fix: "Check that the slot uses the pgoutput plugin (protocol version 1); drop the capture (dropCapture) and capture again.")
    }
}

extension ByteBuffer {
    /// Reads a NUL-terminated string.
    mutating func readCString() -> String? {
        guard let end = readableBytesView.firstIndex(of: 0) else { return nil }
        let s = readString(length: end - readerIndex)
        moveReaderIndex(forwardBy: 1)
        return s
    }
}

/// Text values from logical decoding (the output functions' text, read with `TimeZone = UTC` and
/// `DateStyle = ISO`) as JSON, the same way the engine's own reads turn cells into JSON (``PGValue/json(_:)``):
/// numbers, booleans and JSON as themselves, timestamps as ISO 8601 text (epoch seconds for a table's
/// `timestamp` columns, as ``PostgresTableStore`` reads them), bytea as base64, everything else as text.
enum PGText {
    static func json(_ text: String, typeOID: UInt32, fieldType: FieldType? = nil) throws -> JSON {
        switch typeOID {
        case 16: // bool
            return .bool(text == "t" || text == "true")
        case 20, 21, 23, 26, 700, 701, 1700: // int8, int2, int4, oid, float4, float8, numeric
            if let d = Double(text), d.isFinite { return .number(d) }
            return .string(text)   // NaN, Infinity: JSON has no such numbers
        case 114, 3802: // json, jsonb
            return try JSON(parsing: text)
        case 1184, 1114, 1082: // timestamptz, timestamp, date
            guard let date = timestamp(text) else { return .string(text) }   // infinity, BC dates
            return fieldType == .timestamp ? .number(date.timeIntervalSince1970) : .string(Timestamp.text(date))
        case 17: // bytea, hex output
            guard text.hasPrefix("\\x"), let data = hex(text.dropFirst(2)) else { return .string(text) }
            return .string(data.base64EncodedString())
        default:
            return .string(text)
        }
    }

    /// `2026-11-30 04:45:23.123456+00`, `2026-11-30 04:45:23` or `2026-11-30` (ISO DateStyle, UTC) as a date.
    static func timestamp(_ text: String) -> Date? {
        if text.hasSuffix(" BC") { return nil }
        let u = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= u.count else { return nil }
            var n = 0
            for b in u[from..<(from + count)] {
                guard b >= 48, b <= 57 else { return nil }
                n = n * 10 + Int(b - 48)
            }
            return n
        }
        guard u.count >= 10, u[4] == 45, u[7] == 45, let year = number(0, 4), let month = number(5, 2), let day = number(8, 2) else { return nil }
        var hour = 0, minute = 0, second = 0.0, offset = 0
        var i = 10
        if u.count > 10 {
            guard u.count >= 19, u[10] == 32, let h = number(11, 2), let m = number(14, 2), let s = number(17, 2) else { return nil }
            hour = h; minute = m; second = Double(s)
            i = 19
            if i < u.count, u[i] == 46 {   // fraction
                var j = i + 1, scale = 0.1, fraction = 0.0
                while j < u.count, u[j] >= 48, u[j] <= 57 { fraction += Double(u[j] - 48) * scale; scale /= 10; j += 1 }
                second += fraction
                i = j
            }
            if i < u.count {   // +HH[:MM[:SS]] or -HH…
                guard u[i] == 43 || u[i] == 45, let oh = number(i + 1, 2) else { return nil }
                var seconds = oh * 3600
                if i + 3 < u.count, u[i + 3] == 58, let om = number(i + 4, 2) { seconds += om * 60 }
                offset = u[i] == 43 ? seconds : -seconds
            }
        }
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        let seconds = Double(days * 86400 + hour * 3600 + minute * 60 - offset) + second
        return Date(timeIntervalSince1970: seconds)
    }

    static func hex(_ s: Substring) -> Data? {
        var out = Data(capacity: s.utf8.count / 2)
        var high: UInt8?
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case 48...57: v = c - 48
            case 97...102: v = c - 87
            case 65...70: v = c - 55
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }
}
