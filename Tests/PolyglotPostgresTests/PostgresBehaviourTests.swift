import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Polyglot
import PolyglotPostgres
import PolyglotTesting
import PostgresNIO
import Testing

/// Opens a Polyglot on one PostgreSQL server, in a fresh schema.
func openPostgres(_ url: String, datasets: [DatasetSpec], options: [String: String] = [:]) async throws -> Polyglot {
    let map = DataMap(engines: [PGServers.engine(url, options: options)], datasets: datasets)
    return try await Polyglot(map: map, registry: PGServers.registry)
}

/// Runs scripts/services/postgres-ctl to stop, start or restart one of the test servers.
func postgresCtl(_ server: String, _ action: String) async throws {
    try await TestServers.runScript("postgres-ctl", [server, action])
}

let docs = DatasetSpec(name: "docs", model: .documents, engine: "subject", fields: [FieldSpec("name", .string)])

@Suite struct PostgresBadInput {
    @Test func filterValuesThatLookLikeSQLAreMatchedLiterally() async throws {
        let db = try await openPostgres(PGServers.pg15, datasets: [docs])
        let d = try db.documents("docs")
        let evil = "'; DROP TABLE docs; --"
        try await d.put("a", ["name": .string(evil)])
        try await d.put("b", ["name": "plain"])
        #expect(try await d.query(.field("name") == .string(evil)).map(\.id) == ["a"])
        #expect(try await d.query(.field("name").hasPrefix("';")).map(\.id) == ["a"])
        await #expect(throws: PolyglotError.self, "a field path with quotes is refused, never pasted into SQL") {
            _ = try await d.query(.field("name\"; DROP") == "x")
        }
        #expect(try await d.count() == 2, "the table must still be there")
        let rows = try await db.sql(on: "subject", "SELECT ?::text AS v", [.string(evil)])
        #expect(rows.first?["v"] == .string(evil))
        try await db.close()
    }

    /// An integer column given a whole number beyond int8 once trapped the process (Int64(1e20)); it is refused.
    @Test func anIntegerBeyondInt8IsRefusedNotACrash() async throws {
        let stock = DatasetSpec(name: "stock", model: .table, engine: "subject", fields: [FieldSpec("sku", .string, nullable: false), FieldSpec("qty", .integer)], primaryKey: "sku")
        let db = try await openPostgres(PGServers.pg15, datasets: [stock])
        let t = try db.table("stock")
        for huge in [1e20, -1e19, 9_223_372_036_854_775_808.0] {
            await #expect(throws: PolyglotError.self, "qty \(huge)") { try await t.upsert([["sku": "a", "qty": .number(huge)]]) }
        }
        try await t.upsert([["sku": "a", "qty": .number(9_007_199_254_740_992)]])
        #expect(try await t.get("a")?["qty"] == .number(9_007_199_254_740_992))
        #expect(try await t.count() == 1)
        try await db.close()
    }

    /// PostgresNIO traps encoding a Date whose microseconds since 2000 overflow Int64 (beyond about 9.2e12 s): such a
    /// timestamp, or a key-value ttl that far out, is refused with an error, and nothing is written.
    @Test func aTimestampOrTTLBeyondWhatPostgreSQLHoldsIsRefusedNotACrash() async throws {
        let events = DatasetSpec(name: "events", model: .table, engine: "subject", fields: [FieldSpec("id", .string, nullable: false), FieldSpec("at", .timestamp)], primaryKey: "id")
        let kv = DatasetSpec(name: "kv", model: .keyValue, engine: "subject")
        let db = try await openPostgres(PGServers.pg15, datasets: [events, kv])
        let t = try db.table("events")
        for huge in [1e13, -1e13, 1.7e15] {
            await #expect(throws: PolyglotError.self, "at \(huge)") { try await t.upsert([["id": "a", "at": .number(huge)]]) }
        }
        #expect(try await t.count() == 0)
        try await t.upsert([["id": "a", "at": .number(1.7e9)], ["id": "never", "at": .string("9999-12-31T23:59:59Z")]])
        #expect(try await t.count() == 2, "ISO text up to year 9999 is a timestamp PostgreSQL holds")
        let store = try db.keyValue("kv")
        await #expect(throws: PolyglotError.self) { try await store.set("k", "v", ttl: .seconds(Int64(1) << 40)) }
        #expect(try await store.get("k") == nil)
        try await db.close()
    }

    @Test func jsonWithNulOrInvalidUTF8IsRefusedClearly() async throws {
        let db = try await openPostgres(PGServers.pg15, datasets: [docs])
        let d = try db.documents("docs")
        await #expect(throws: PolyglotError.self) { try await d.put("nul", json: Data(#"{"name": "a\u0000b"}"#.utf8)) }
        do {
            _ = try await d.put("nul", json: Data(#"{"name": "a\u0000b"}"#.utf8))
        } catch let e as PolyglotError {
            #expect(e.code == .malformedJSON && e.message.contains("NUL") && e.fix != nil, "\(e)")
        }
        var bad = Data(#"{"name": ""#.utf8); bad.append(contentsOf: [0xC3, 0x28]); bad.append(contentsOf: Data(#""}"#.utf8))
        await #expect(throws: PolyglotError.self) { try await d.put("utf", json: bad) }
        #expect(try await d.count() == 0, "a refused document was stored")
        try await db.close()
    }

    @Test func vectorsWithoutPgvectorAreRefusedAtStartWithTheFix() async throws {
        let vectors = DatasetSpec(name: "emb", model: .vectors, engine: "subject", dimension: 4)
        do {
            let db = try await openPostgres(PGServers.pg15, datasets: [vectors])
            try await db.close()
            Issue.record("PostgreSQL 15 without pgvector accepted a vectors dataset")
        } catch let e as PolyglotError {
            #expect(e.code == .missingCapability)
            #expect(e.message.contains("pgvector") && e.message.contains("'emb'"), "\(e)")
            #expect(e.fix?.contains("pgvector") == true, "\(e)")
        }
    }

    @Test func unknownSchemaOptionsAndURLsGiveClearErrors() async throws {
        for (options, url) in [(["poolSize": "zero"], PGServers.pg15), (["schema": "bad-name"], PGServers.pg15), ([:], "mysql://x")] {
            do {
                let db = try await Polyglot(map: DataMap(engines: [EngineSpec(name: "subject", kind: "postgres", url: url, options: options)], datasets: []),
                                            registry: PGServers.registry)
                try await db.close()
                Issue.record("accepted \(options) \(url)")
            } catch let e as PolyglotError {
                #expect(e.code == .invalidDataMap && e.fix != nil, "\(e)")
            }
        }
    }

    @Test func aStatementOverTheTimeoutIsATypedErrorThatNamesTheSetting() async throws {
        let db = try await openPostgres(PGServers.pg15, datasets: [], options: ["statementTimeout": "1s", "poolSize": "2"])
        do {
            _ = try await db.sql(on: "subject", "SELECT pg_sleep(5)")
            Issue.record("a 5 s statement ran under a 1 s statement timeout")
        } catch let e as PolyglotError {
            #expect(e.code == .engineFailure && e.isRetryable && e.fix?.contains("statementTimeout") == true, "\(e)")
        }
        // The connection is still usable afterwards.
        #expect(try await db.sql(on: "subject", "SELECT 1 AS one").first?["one"] == 1)
        try await db.close()
    }

    @Test func anUnreachableServerIsATypedRetryableError() async throws {
        let spec = EngineSpec(name: "subject", kind: "postgres", url: "postgres://postgres@127.0.0.1:1/postgres", options: ["connectTimeout": "1s"])
        do {
            let db = try await Polyglot(map: DataMap(engines: [spec], datasets: []), registry: PGServers.registry)
            try await db.close()
            Issue.record("connected to a closed port")
        } catch let e as PolyglotError {
            #expect(e.code == .engineUnavailable && e.isRetryable, "\(e)")
        }
    }
}

/// TLS tests use pgfault too, so they run in the serialized fault suite, never while it is restarting.
extension PostgresFaults {
    @Test func tlsRequireEncryptsTheConnection() async throws {
        // pgfault serves TLS with a throwaway self-signed certificate, so verification is off here.
        let db = try await openPostgres(PGServers.url("POLYGLOT_TEST_PGFAULT_URL"), datasets: [docs], options: ["tls": "require", "tlsVerify": "none"])
        let rows = try await db.sql(on: "subject", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        #expect(rows.first?["ssl"] == true, "the connection is not encrypted: \(rows)")
        try await db.documents("docs").put("a", ["name": "x"])
        #expect(try await db.documents("docs").get("a") != nil)
        try await db.close()
    }

    @Test func tlsWithFullVerificationRefusesAnUntrustedCertificate() async throws {
        do {
            let db = try await openPostgres(PGServers.url("POLYGLOT_TEST_PGFAULT_URL"), datasets: [], options: ["tls": "require", "connectTimeout": "3s"])
            try await db.close()
            Issue.record("connected although the server's certificate is self-signed and verification is on")
        } catch let e as PolyglotError {
            #expect(e.code == .engineUnavailable, "\(e)")
        }
    }

    @Test func tlsRequireFailsAgainstAServerWithoutTLS() async throws {
        do {
            let db = try await openPostgres(PGServers.pg18, datasets: [], options: ["tls": "require", "tlsVerify": "none", "connectTimeout": "3s"])
            try await db.close()
            Issue.record("tls: require connected to a server without TLS")
        } catch let e as PolyglotError {
            #expect(e.code == .engineUnavailable, "\(e)")
        }
    }
}

@Suite(.serialized) struct PostgresFaults {
    @Test func twoProcessesStartingTogetherMigrateOnce() async throws {
        let engine = PGServers.engine(PGServers.pg18)
        let map = DataMap(engines: [engine], datasets: [docs, DatasetSpec(name: "kv", model: .keyValue, engine: "subject")])
        let dbs = try await withThrowingTaskGroup(of: Polyglot.self) { group in
            for _ in 0..<4 { group.addTask { try await Polyglot(map: map, registry: PGServers.registry) } }
            return try await group.reduce(into: [Polyglot]()) { $0.append($1) }
        }
        let rows = try await dbs[0].sql(on: "subject", "SELECT dataset, version FROM \(engine.options["schema"]!)._polyglot_schema ORDER BY dataset")
        #expect(rows.map { $0["dataset"] } == ["docs", "kv"])
        #expect(rows.allSatisfy { $0["version"] == 1 }, "a concurrent start migrated twice: \(rows)")
        for db in dbs { try await db.close() }
        // Adding a field later is a new version, applied once.
        var changed = map
        changed.datasets[0].fields.append(FieldSpec("price", .number))
        let db = try await Polyglot(map: changed, registry: PGServers.registry)
        let after = try await db.sql(on: "subject", "SELECT version FROM \(engine.options["schema"]!)._polyglot_schema WHERE dataset = 'docs'")
        #expect(after.first?["version"] == 2)
        try await db.close()
    }

    @Test func serverKilledMidTransactionLeavesNoPartialWriteAndThePoolRecovers() async throws {
        let db = try await openPostgres(PGServers.url("POLYGLOT_TEST_PGFAULT_URL"), datasets: [docs], options: ["connectTimeout": "2s"])
        let d = try db.documents("docs")
        try await d.put("before", ["name": "kept"])
        do {
            try await db.transaction(on: "subject") {
                try await d.put("inside", ["name": "lost"])
                try await postgresCtl("pgfault", "stop")
                try await d.put("inside2", ["name": "lost"])
            }
            Issue.record("the transaction committed although the server stopped")
        } catch let e as PolyglotError {
            #expect(e.code == .engineUnavailable && e.isRetryable, "expected a typed, retryable error: \(e)")
        }
        try await postgresCtl("pgfault", "start")
        // The pool replaces its dead connections: reads and writes work again without reopening Polyglot.
        var recovered = false
        for _ in 0..<50 {
            if (try? await d.get("before")) != nil { recovered = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(recovered, "the pool did not recover after the server restarted")
        #expect(try await d.get("inside") == nil, "a write from the interrupted transaction survived")
        try await d.put("after", ["name": "new"])
        #expect(try await d.count() == 2)
        try await db.close()
    }

    @Test func readsRetryAcrossAServerRestart() async throws {
        let db = try await openPostgres(PGServers.url("POLYGLOT_TEST_PGFAULT_URL"), datasets: [docs])
        let d = try db.documents("docs")
        try await d.put("a", ["name": "x"])
        try await postgresCtl("pgfault", "restart")
        // The pool's old connections are dead; an idempotent read is retried on a new one.
        var got: Document?
        for _ in 0..<20 {
            got = try? await d.get("a")
            if got != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(got != nil)
        try await db.close()
    }
}

/// Runs one statement on the hot standby with the raw driver (Polyglot refuses a standby as a primary).
/// Runs `body` with the standby's WAL replay paused (so it lags), and resumes replay afterwards, also when `body` throws.
func withReplayPaused(_ body: () async throws -> Void) async throws {
    try await onReplica("SELECT pg_wal_replay_pause()")
    do {
        try await body()
    } catch {
        try? await onReplica("SELECT pg_wal_replay_resume()")
        throw error
    }
    try await onReplica("SELECT pg_wal_replay_resume()")
}

func onReplica(_ sql: String) async throws {
    let u = try #require(URLComponents(string: PGServers.pg15Replica))
    let config = PostgresClient.Configuration(host: u.host ?? "127.0.0.1", port: u.port ?? 5432, username: "postgres", password: nil, database: "postgres", tls: .disable)
    let client = PostgresClient(configuration: config)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        try await client.query(PostgresQuery(unsafeSQL: sql))
        group.cancelAll()
    }
}

@Suite(.serialized) struct PostgresReplicas {
    /// Documents "articles" on pg18 with a search projection on "index", pg15 with `replicas` (replicaWait 300 ms).
    static func openWithSearchOnReplicatedEngine(replicas: [String]) async throws -> Polyglot {
        let target = PGServers.freshSchema(EngineSpec(name: "index", kind: "postgres", url: PGServers.pg15,
                                                      options: ["replicas": replicas.joined(separator: ","), "replicaWait": "300ms"]))
        let map = DataMap(engines: [PGServers.freshSchema(EngineSpec(name: "primary", kind: "postgres", url: PGServers.pg18)), target],
                          datasets: [DatasetSpec(name: "articles", model: .documents, engine: "primary", projections: [.search(on: "index", fields: ["title"])])])
        return try await Polyglot(map: map, registry: PGServers.registry)
    }

    /// The relay keeps its checkpoint on the target. Read from a replica that lags, it was older than the one the
    /// step's fence compares with on the primary, so every step after the first was fenced off and applied nothing
    /// (catchUp returned 0, or with a fenced batch counted as read, never returned). The relay reads it on the
    /// primary now.
    @Test(.timeLimit(.minutes(1))) func aRelayWhoseStateEngineHasALaggingReplicaReadsItsCheckpointOnThePrimary() async throws {
        let db = try await Self.openWithSearchOnReplicatedEngine(replicas: [PGServers.pg15Replica])
        let articles = try db.documents("articles")
        let relay = db.relay(RelayOptions(holder: "lagging-replica"))
        try await withReplayPaused {
            for i in 0..<3 {
                _ = try await articles.put("a\(i)", ["title": .string("round \(i)")])
                #expect(try await relay.catchUp() == 1, "round \(i)")
            }
        }
        try await db.close()
    }

    /// A search projection relayed onto an engine with replicas, some of which (the paused standby, listed twice)
    /// lag far behind. A token read checks the relay's checkpoint on whichever replica it gets; the search then must
    /// not run on a lagging one: it carries the target's read barrier, so it goes to a replica that has replayed
    /// the relay's commit. (The primary is listed as the first "replica": one that is never behind. Three entries
    /// against two reads per search shift the round robin, so some checkpoint reads land on the primary and the
    /// search after them on the standby.)
    @Test func aProjectionReadAfterItsCheckpointDoesNotHitALaggingReplica() async throws {
        let db = try await Self.openWithSearchOnReplicatedEngine(replicas: [PGServers.pg15, PGServers.pg15Replica, PGServers.pg15Replica])
        let articles = try db.documents("articles")
        let relay = db.relay(RelayOptions(idleInterval: .milliseconds(5)))
        let running = Task { try? await relay.run() }
        let first = try await articles.put("a0", ["title": "warm up"])
        #expect(try await db.reading(atLeast: first, maxWait: .seconds(30)) { try await articles.search("warm") }.map(\.id) == ["a0"])
        defer { running.cancel() }
        try await withReplayPaused {
            for i in 1...20 {
                let token = try await articles.put("a\(i)", ["title": .string("marker\(i)")])
                let hits = try await db.reading(atLeast: token, maxWait: .seconds(30)) { try await articles.search("marker\(i)") }
                #expect(hits.map(\.id) == ["a\(i)"], "read \(i) ran on the lagging replica after the checkpoint showed the write")
            }
        }
        running.cancel()
        await running.value
        try await db.close()
    }

    /// A replica that has not replayed a migration lacks its tables: a read without a token went there and failed with
    /// "relation does not exist" (it made `aProjectionReadAfterItsCheckpointDoesNotHitALaggingReplica` flaky, 2 in 9
    /// runs, reading the relay's state right after start). Such a read now goes to the primary.
    @Test func aReadOnAReplicaThatHasNotReplayedTheSchemaGoesToThePrimary() async throws {
        try await withReplayPaused {
            let db = try await openPostgres(PGServers.pg15, datasets: [docs], options: ["replicas": PGServers.pg15Replica])
            let pg = try #require(try db.engine("subject") as? PostgresEngine)
            let d = try db.documents("docs")
            _ = try await d.put("a", ["name": "v1"])
            #expect(try await d.count() == 1, "a read without a token, on the primary since the replica has no table yet")
            #expect(pg.readRouting.schemaFallbacks >= 1 && pg.readRouting.primaryFallbacks == 0, "\(pg.readRouting)")
            try await db.close()
        }
    }

    @Test func readsGoToTheReplicaAndTokensGiveReadYourWrites() async throws {
        let db = try await openPostgres(PGServers.pg15, datasets: [docs], options: ["replicas": PGServers.pg15Replica, "replicaWait": "5s"])
        let pg = try #require(try db.engine("subject") as? PostgresEngine)
        let d = try db.documents("docs")
        // The replica must first replay the schema; a token read waits for it.
        let token = try await d.put("a", ["name": "v1"])
        #expect(token.lsn != nil, "a write's token must carry the commit LSN when there are replicas")
        let read = try await db.reading(atLeast: token) { try await d.get("a") }
        #expect(try read?.json()["name"] == "v1")
        #expect(pg.readRouting.replicaReads >= 1 && pg.readRouting.primaryFallbacks == 0, "\(pg.readRouting)")
        try await db.close()
    }

    /// Table (and key-value, vector, graph, time-series) writes made their token inside the write, before the commit's
    /// WAL position was known, so it carried the previous commit's: a replica that had replayed that one served a
    /// token read without this write.
    @Test func aTableWritesTokenCarriesItsOwnCommitPosition() async throws {
        let stock = DatasetSpec(name: "stock", model: .table, engine: "subject", fields: [FieldSpec("sku", .string, nullable: false), FieldSpec("qty", .integer)], primaryKey: "sku")
        let db = try await openPostgres(PGServers.pg15, datasets: [stock], options: ["replicas": PGServers.pg15Replica, "replicaWait": "300ms"])
        let t = try db.table("stock")
        let first = try await t.upsert([["sku": "a", "qty": 1]])
        // Until the replica has replayed the first write (and the schema), so it would serve a read of the first token.
        // (A read without a token goes to the replica, which may not have the table yet: that is what is waited for.)
        var caughtUp = false
        for _ in 0..<200 where !caughtUp {
            let viaToken = try await db.reading(atLeast: first) { try await t.get("a") }
            let plain = try? await t.get("a")
            caughtUp = viaToken?["qty"] == 1 && plain?["qty"] == 1
            if !caughtUp { try await Task.sleep(for: .milliseconds(50)) }
        }
        try #require(caughtUp, "the replica did not replay the first write within 10 s")
        try await withReplayPaused {
            let second = try await t.upsert([["sku": "a", "qty": 2]])
            #expect(try await db.reading(atLeast: second) { try await t.get("a") }?["qty"] == 2, "a token read returned the row before the write: \(second)")
        }
        try await db.close()
    }

    @Test func aLaggingReplicaSendsTokenReadsToThePrimaryAndSaysSo() async throws {
        let db = try await openPostgres(PGServers.pg15, datasets: [docs], options: ["replicas": PGServers.pg15Replica, "replicaWait": "300ms"])
        let pg = try #require(try db.engine("subject") as? PostgresEngine)
        let d = try db.documents("docs")
        let first = try await d.put("a", ["name": "v1"])
        // Let the replica catch up with the schema and the first write (streaming lag here is a few hundred ms).
        for _ in 0..<50 {
            let before = pg.readRouting.primaryFallbacks
            _ = try await db.reading(atLeast: first) { try await d.get("a") }
            if pg.readRouting.primaryFallbacks == before { break }
        }
        let fallbacks = pg.readRouting.primaryFallbacks
        try await withReplayPaused {
            let token = try await d.put("a", ["name": "v2"])
            let start = ContinuousClock.now
            let read = try await db.reading(atLeast: token) { try await d.get("a") }
            #expect(try read?.json()["name"] == "v2", "a token read returned a stale document")
            #expect(ContinuousClock.now - start >= .milliseconds(250), "the read did not wait for the replica first")
            #expect(pg.readRouting.primaryFallbacks == fallbacks + 1, "the fallback to the primary was not reported: \(pg.readRouting)")
            // Without a token, reads may be stale: they go to the replica.
            let stale = try await d.get("a")
            #expect(try stale?.json()["name"] == "v1")
        }
        try await db.close()
    }
}
