import Testing
@testable import PolyglotSQLite
@Test func version() { #expect(sqliteVersion().hasPrefix("3.")) }
