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

    /// PostgresNIO's Date encoding traps beyond Int64 microseconds since 2000; PGQuery refuses such dates (one or in
    /// an array, as a time series' append binds them) and keeps the whole timestamptz range up to year 9999 and far beyond.
    @Test func datesOutsideWhatPostgreSQLHoldsFailTheQueryInsteadOfTrapping() throws {
        for seconds in [1e13, -1e13, 1e300] {
            var one = PGQuery()
            one.sql = "SELECT \(one.bind(Date(timeIntervalSince1970: seconds)))"
            #expect(throws: PolyglotError.self, "\(seconds)") { _ = try one.query }
            var many = PGQuery()
            many.sql = "SELECT \(many.bind([Date(), Date(timeIntervalSince1970: seconds)]))"
            #expect(throws: PolyglotError.self, "array with \(seconds)") { _ = try many.query }
        }
        var ok = PGQuery()
        ok.sql = "SELECT \(ok.bind(Date(timeIntervalSince1970: 253_402_300_799))), \(ok.bind([Date(timeIntervalSince1970: -62_135_596_800), Date(timeIntervalSince1970: 9e12)]))"
        #expect(try ok.query.binds.count == 2, "9999-12-31, year 1 and 9e12 s are timestamps PostgreSQL holds")
    }
}
