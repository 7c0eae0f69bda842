import Foundation
import NIOCore
import Polyglot
@testable import PolyglotPostgres
import PostgresNIO
import Testing

/// A value whose encoding fails, as a PostgresEncodable may.
private struct Unencodable: PostgresEncodable {
    struct Refused: Error, CustomStringConvertible { var description: String { "refused on purpose" } }
    static var psqlType: PostgresDataType { .text }
    static var psqlFormat: PostgresFormat { .binary }
    func encode<E: PostgresJSONEncoder>(into byteBuffer: inout ByteBuffer, context: PostgresEncodingContext<E>) throws {
        throw Refused()
    }
}

/// Statement building, no server needed.
@Suite struct PGQueryTests {
    @Test func aValueThatCannotBeEncodedFailsTheQueryWithItsPlaceholderInsteadOfBeingDropped() throws {
        var q = PGQuery()
        let a = q.bind("fine")
        let b = q.bind(Unencodable())
        let c = q.bind(Int64(3))
        q.sql = "SELECT \(a), \(b), \(c)"
        #expect([a, b, c] == ["$1", "$2", "$3"], "placeholders keep counting past the failed value")
        do {
            _ = try q.query
            Issue.record("the query was built despite a value that could not be encoded")
        } catch let e as PolyglotError {
            #expect(e.code == .invalidArgument && e.message.contains("$2") && e.message.contains("refused on purpose"), "\(e)")
        }
        var ok = PGQuery()
        ok.sql = "SELECT \(ok.bind("x"))"
        #expect(try ok.query.binds.count == 1)
    }
}
