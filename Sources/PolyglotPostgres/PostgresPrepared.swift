import Foundation
import Logging
import PostgresNIO
import Synchronization

/// Statements prepared once per connection and then run with Bind/Execute only, so the server neither parses
/// nor plans them again. postgres-nio's own prepared statements need the SQL as a static property of a type;
/// ours is built at run time (it names the dataset's table), so this keeps the prepared handles itself,
/// per connection. Used for the hot single-row reads (document get by id).
final class PreparedStatements: Sendable {
    private struct Entry: @unchecked Sendable {
        // PreparedQuery holds its connection, so an entry keeps the connection object (and its
        // ObjectIdentifier) alive: an identifier is never reused while its entry exists.
        let connection: PostgresConnection
        var statements: [String: PreparedQuery]
    }
    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    /// The rows of `sql` run with `binds` on `connection`, preparing it there the first time.
    func rows(_ sql: String, _ binds: [PostgresData], on connection: PostgresConnection) async throws -> [PostgresRow] {
        do {
            return try await prepared(sql, on: connection).execute(binds).get()
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "0A000" || error.serverInfo?[.sqlState] == "26000" {
            // "cached plan must not change result type" (the table changed) or the statement is gone: prepare again, once.
            forget(sql, on: connection)
            return try await prepared(sql, on: connection).execute(binds).get()
        }
    }

    private func prepared(_ sql: String, on connection: PostgresConnection) async throws -> PreparedQuery {
        let id = ObjectIdentifier(connection)
        if let hit = entries.withLock({ $0[id]?.statements[sql] }) { return hit }
        let statement = try await connection.prepare(query: sql).get()
        entries.withLock { all in
            // Drop the handles of connections the pool has closed (after a server restart, say).
            if all[id] == nil { all = all.filter { !$0.value.connection.isClosed } }
            all[id, default: Entry(connection: connection, statements: [:])].statements[sql] = statement
        }
        return statement
    }

    private func forget(_ sql: String, on connection: PostgresConnection) {
        _ = entries.withLock { $0[ObjectIdentifier(connection)]?.statements.removeValue(forKey: sql) }
    }
}
