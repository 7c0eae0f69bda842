import Foundation
import Logging
import NIOSSL
import Polyglot
import PostgresNIO
import Synchronization

/// The engine's settings, read from its `url` and `options` in the data map.
struct PostgresSettings: Sendable {
    var primary: PostgresClient.Configuration
    var replicas: [PostgresClient.Configuration]
    var schema: String
    var connectTimeout: Duration
    var statementTimeout: Duration?
    var replicaWait: Duration
    var textSearch: String
    var unloggedKeyValue: Bool
    var outboxRetention: Duration
    var displayAddress: String

    init(_ spec: EngineSpec) throws {
        func bad(_ what: String, _ fix: String) -> PolyglotError {
            PolyglotError(.invalidDataMap, "Engine '\(spec.name)' (postgres): \(what).", fix: fix)
        }
        guard let url = spec.url, !url.isEmpty else {
            throw bad("no `url:`", "Add `url: postgres://user:password@host:5432/database`.")
        }
        let o = spec.options
        func duration(_ key: String, _ fallback: Duration?) throws -> Duration? {
            guard let text = o[key] else { return fallback }
            guard let d = DataMap.parseDuration(text), d > .zero else {
                throw bad("option \(key) '\(text)' is not a duration", "Write a duration such as 500ms, 10s or 2m.")
            }
            return d
        }
        connectTimeout = try duration("connectTimeout", .seconds(10))!
        statementTimeout = try duration("statementTimeout", nil)
        replicaWait = try duration("replicaWait", .seconds(2))!
        outboxRetention = try duration("outboxRetention", .seconds(86_400))!
        schema = o["schema"] ?? "public"
        guard schema.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,62}$", options: .regularExpression) != nil else {
            throw bad("schema '\(schema)' is not a plain identifier", "Use letters, digits and underscores, starting with a letter.")
        }
        textSearch = o["textSearch"] ?? "english"
        guard textSearch.range(of: "^[A-Za-z_][A-Za-z0-9_.]*$", options: .regularExpression) != nil else {
            throw bad("textSearch '\(textSearch)' is not a text-search configuration name", "Use a name such as english, simple or german.")
        }
        unloggedKeyValue = ["true", "yes", "1"].contains(o["unloggedKeyValue"]?.lowercased() ?? "")
        var poolSize = 20
        if let text = o["poolSize"] {
            guard let n = Int(text), (1...1000).contains(n) else { throw bad("poolSize '\(text)' is not a number from 1 to 1000", "Set poolSize to the connections this process may open.") }
            poolSize = n
        }
        let tls = o["tls"]?.lowercased() ?? "disable"
        guard ["disable", "prefer", "require"].contains(tls) else { throw bad("tls '\(tls)' is unknown", "Use disable, prefer or require.") }
        let verify = o["tlsVerify"]?.lowercased() ?? "full"
        guard ["full", "none"].contains(verify) else { throw bad("tlsVerify '\(verify)' is unknown", "Use full (check the certificate and host name) or none.") }

        let connectTimeout = self.connectTimeout, statementTimeout = self.statementTimeout
        func configuration(_ text: String) throws -> (PostgresClient.Configuration, String) {
            guard let u = URLComponents(string: text), ["postgres", "postgresql"].contains(u.scheme ?? ""), let host = u.host, !host.isEmpty else {
                throw bad("'\(PostgresSettings.redact(text))' is not a postgres:// URL", "Write postgres://user:password@host:5432/database.")
            }
            var tlsConfig = TLSConfiguration.makeClientConfiguration()
            if verify == "none" { tlsConfig.certificateVerification = .none }
            if let ca = o["tlsCA"] { tlsConfig.trustRoots = .file(ca) }
            let mode: PostgresClient.Configuration.TLS = switch tls {
            case "require": .require(tlsConfig)
            case "prefer": .prefer(tlsConfig)
            default: .disable
            }
            let database = u.path.count > 1 ? String(u.path.dropFirst()) : nil
            var c = PostgresClient.Configuration(host: host, port: u.port ?? 5432, username: u.user ?? "postgres",
                                                 password: u.password, database: database, tls: mode)
            c.options.maximumConnections = poolSize
            c.options.connectTimeout = connectTimeout
            c.options.keepAliveBehavior = .init(frequency: .seconds(30))
            var startup: [(String, String)] = [("application_name", "polyglot")]
            if let st = statementTimeout { startup.append(("statement_timeout", "\(max(1, Int(min(st.seconds * 1000, 9e18))))")) }
            c.options.additionalStartupParameters = startup
            return (c, "\(host):\(u.port ?? 5432)")
        }
        let (p, address) = try configuration(url)
        primary = p
        displayAddress = address
        replicas = try (o["replicas"] ?? "").split(separator: ",").map { try configuration($0.trimmingCharacters(in: .whitespaces)).0 }
    }

    /// The URL without its password, for messages and logs.
    static func redact(_ url: String) -> String {
        guard var u = URLComponents(string: url), u.password != nil else { return url }
        u.password = "***"
        return u.string ?? url
    }
}

extension PostgresEngine {
    /// Driver and server errors as ``PolyglotError``; the application's own errors (thrown inside a transaction) pass through.
    static func mapped(_ error: any Error, engine: String, during what: String) -> any Error {
        error is PSQLError || error is PostgresDecodingError ? translate(error, engine: engine, during: what) : error
    }

    /// "a write" → "A write", to start a message.
    private static func sentence(_ what: String) -> String { what.prefix(1).uppercased() + what.dropFirst() }

    /// Maps a driver or server error to a ``PolyglotError`` whose message says what happened and what to do.
    /// Connection loss, server shutdown, serialization failures and deadlocks are marked retryable.
    static func translate(_ error: any Error, engine: String, during what: String) -> PolyglotError {
        if let e = error as? PolyglotError { return e }
        if error is CancellationError {
            return PolyglotError(.engineUnavailable, "\(sentence(what)) on '\(engine)' was cancelled.", fix: "Retry the operation.", retryable: true)
        }
        guard let p = error as? PSQLError else {
            return PolyglotError(.engineFailure, "Engine '\(engine)' failed during \(what): \(error).", fix: "Check the server's log.")
        }
        let state = p.serverInfo?[.sqlState] ?? ""
        let message = p.serverInfo?[.message] ?? "\(p.code)"
        let detail = p.serverInfo?[.detail].map { " (\($0))" } ?? ""
        switch p.code {
        case .connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection, .poolClosed:
            let why = p.underlying.map { ": \($0)" } ?? ""
            return PolyglotError(.engineUnavailable, "Engine '\(engine)' lost or could not open its connection during \(what) (\(p.code)\(why)).",
                                 fix: "Check that PostgreSQL is running and reachable; the operation can be retried once it is.", retryable: true)
        case .queryCancelled:
            return PolyglotError(.engineFailure, "\(sentence(what)) on '\(engine)' was cancelled.", fix: "Retry it, or raise statementTimeout if it ran out of time.", retryable: true)
        case .server:
            break
        default:
            return PolyglotError(.engineFailure, "Engine '\(engine)' failed during \(what): \(p.code).", fix: "Check the server's log.")
        }
        switch state {
        case "40001", "40P01":
            return PolyglotError(.transactionFailed, "A \(what) on '\(engine)' conflicted with a concurrent transaction: \(message).",
                                 fix: "Retry the transaction.", retryable: true)
        case "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004", "53300":
            return PolyglotError(.engineUnavailable, "PostgreSQL '\(engine)' is unavailable (\(state)): \(message).",
                                 fix: "Wait for the server to come back (or raise max_connections); the operation can be retried.", retryable: true)
        case "57014":
            return PolyglotError(.engineFailure, "\(sentence(what)) on '\(engine)' was cancelled: \(message).",
                                 fix: "Raise the engine's statementTimeout, or add an index so the statement runs faster.", retryable: true)
        case "23505":
            return PolyglotError(.conflict, "A \(what) on '\(engine)' violates a unique constraint: \(message)\(detail).", fix: "Use a different key, or update the existing row.")
        case "23502", "23514", "23503":
            return PolyglotError(.invalidArgument, "A \(what) on '\(engine)' violates a constraint: \(message)\(detail).", fix: "Supply every required value.")
        case "22P02", "22P05", "22007", "22008", "22003", "22023", "2202E", "22021", "22025", "22032":
            return PolyglotError(.invalidArgument, "PostgreSQL '\(engine)' refused a value during \(what): \(message)\(detail).", fix: "Check the values passed to the operation.")
        case "54000", "54001":
            return PolyglotError(.limitExceeded, "A value was too large for PostgreSQL '\(engine)': \(message).", fix: "Store smaller values.")
        case "42601", "42P01", "42703", "42883", "42804", "42P02", "42P18":
            return PolyglotError(.invalidArgument, "PostgreSQL '\(engine)' rejected the SQL of \(what): \(message)\(detail).", fix: "Fix the statement (placeholders are ? or $1).")
        case "25P02":
            return PolyglotError(.transactionFailed, "The transaction on '\(engine)' was already aborted by an earlier error.", fix: "Roll back and retry the transaction.")
        default:
            return PolyglotError(.engineFailure, "PostgreSQL '\(engine)' failed during \(what) (\(state)): \(message)\(detail).", fix: "Check the server's log.")
        }
    }
}

/// Routes reads to replicas and keeps read-your-writes: a write's token carries the LSN of its commit, and a read
/// that carries a token goes to a replica only when `pg_last_wal_replay_lsn()` there has reached it; otherwise it
/// waits up to `replicaWait`, then reads the primary and says so (a log line and ``stats``).
public final class ReplicaRouting: Sendable {
    public struct Stats: Sendable, Equatable {
        public var replicaReads = 0
        public var primaryReads = 0
        /// Reads that carried a token no replica had replayed in time, so the primary served them.
        public var primaryFallbacks = 0
        /// Reads a replica answered "no such table, schema or column" (it had not replayed a migration), which the
        /// primary then served; counted here instead of in `replicaReads`.
        public var schemaFallbacks = 0
    }
    private let state = Mutex<(next: Int, stats: Stats)>((0, Stats()))
    private let lsn = Atomic<UInt64>(0)

    var lastCommitLSN: UInt64? { let v = lsn.load(ordering: .relaxed); return v == 0 ? nil : v }
    var stats: Stats { state.withLock { $0.stats } }

    /// After a commit on the primary: remembers the WAL position, so tokens made from now on carry it.
    func committed(on c: PostgresConnection, engine: PostgresEngine) async {
        guard !engine.replicas.isEmpty else { return }
        do {
            if let v = try await Self.insertLSN(on: c, engine: engine) { _ = lsn.max(v, ordering: .relaxed) }
        } catch {
            engine.logger.debug("could not read the commit LSN", metadata: ["error": "\(error)"])
        }
    }

    /// The WAL insert position on `c`'s server (the primary): past every commit made so far.
    static func insertLSN(on c: PostgresConnection, engine: PostgresEngine) async throws -> UInt64? {
        for try await text in try await c.query("SELECT pg_current_wal_insert_lsn()::text", logger: engine.logger).decode(String.self) {
            return parseLSN(text)
        }
        return nil
    }

    /// `16/B374D848` → its 64-bit value.
    static func parseLSN(_ text: String) -> UInt64? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        return hi << 32 | lo
    }

    func client(for engine: PostgresEngine) async throws -> PostgresClient {
        let replicas = engine.replicas
        guard !replicas.isEmpty else { return engine.primary }
        if ReadConsistency.fromPrimary {
            state.withLock { $0.stats.primaryReads += 1 }
            return engine.primary
        }
        let start = state.withLock { s -> Int in s.next &+= 1; return s.next }
        guard let token = ReadConsistency.atLeast, token.engine == engine.spec.name, let needed = token.lsn else {
            state.withLock { $0.stats.replicaReads += 1 }
            return replicas[start % replicas.count]
        }
        let deadline = ContinuousClock.now + engine.settings.replicaWait
        var lastSeen: UInt64 = 0
        while true {
            for i in 0..<replicas.count {
                let r = replicas[(start + i) % replicas.count]
                guard let replayed = try? await replayLSN(r, engine) else { continue }
                if replayed >= needed {
                    state.withLock { $0.stats.replicaReads += 1 }
                    return r
                }
                lastSeen = max(lastSeen, replayed)
            }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        state.withLock { $0.stats.primaryFallbacks += 1; $0.stats.primaryReads += 1 }
        engine.logger.notice("read served by the primary: no replica replayed the token in time", metadata: [
            "engine": "\(engine.spec.name)", "needed": "\(String(needed, radix: 16))", "replayed": "\(String(lastSeen, radix: 16))",
            "lagBytes": "\(needed > lastSeen ? needed - lastSeen : 0)", "waited": "\(engine.settings.replicaWait)",
        ])
        return engine.primary
    }

    /// A replica lacked a relation or column (SQLSTATE `sqlState`): it has not replayed a migration yet, and the read
    /// goes to the primary instead.
    func fellBackForSchema(engine: PostgresEngine, sqlState: String) {
        state.withLock { $0.stats.schemaFallbacks += 1; $0.stats.replicaReads -= 1; $0.stats.primaryReads += 1 }
        engine.logger.debug("read served by the primary: a replica lacks a relation or column (not replayed yet?)", metadata: [
            "engine": "\(engine.spec.name)", "sqlState": "\(sqlState)",
        ])
    }

    private func replayLSN(_ client: PostgresClient, _ engine: PostgresEngine) async throws -> UInt64? {
        try await client.withConnection { c in
            for try await text in try await c.query("SELECT COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text", logger: engine.logger).decode(String.self) {
                return ReplicaRouting.parseLSN(text)
            }
            return nil
        }
    }
}
