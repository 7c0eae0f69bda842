import Foundation
@testable import Polyglot
import PolyglotPostgres
import PolyglotTesting
import Synchronization
import Testing

/// The relay on PostgreSQL: the source's change feed (snapshot windows, commit order) feeds a copy in another
/// schema, which derives search and vectors; checkpoints and leases live on the target.
@Suite struct PostgresRelayTests {
    static func map() -> DataMap {
        DataMap(engines: [PGServers.freshSchema(EngineSpec(name: "primary", kind: "postgres", url: PGServers.pg18)),
                          PGServers.freshSchema(EngineSpec(name: "index", kind: "postgres", url: PGServers.pg18))],
                datasets: [DatasetSpec(name: "articles", model: .documents, engine: "primary",
                                       projections: [.search(on: "index", fields: ["title"]),
                                                     .vectors(on: "index", fields: ["title"], dimension: 16)])])
    }

    @Test func concurrentWritersAndTwoRelaysConvergeWithOneLeaderAndNoLostEvent() async throws {
        let db = try await Polyglot(map: Self.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        let a = db.relay(RelayOptions(batchSize: 37, idleInterval: .milliseconds(5), holder: "relay-a"))
        let b = db.relay(RelayOptions(batchSize: 37, idleInterval: .milliseconds(5), holder: "relay-b"))
        let relays = Task { await withTaskGroup(of: Void.self) { g in g.addTask { try? await a.run() }; g.addTask { try? await b.run() } } }
        // 8 writers, each rewriting its own keys several times and deleting some, while the relays run.
        try await withThrowingTaskGroup(of: Void.self) { g in
            for w in 0..<8 {
                g.addTask {
                    for round in 0..<5 {
                        for k in 0..<10 {
                            try await articles.put("w\(w)k\(k)", ["title": .string("writer\(w) key\(k) round\(round)")])
                        }
                    }
                    _ = try await articles.delete("w\(w)k9")
                }
            }
            try await g.waitForAll()
        }
        let last = try await articles.put("final", ["title": "final marker"])
        // The read waits for the relay to pass the last write.
        do {
            #expect(try await db.reading(atLeast: last, maxWait: .seconds(30)) { try await articles.search("marker") }.map(\.id) == ["final"])
        } catch {
            Issue.record("\(error)\nrelay-a: \(a.status())\nrelay-b: \(b.status())")
            relays.cancel()
            return
        }
        relays.cancel()
        await relays.value

        // The copy matches the source exactly: same ids, and every title is the last round's.
        let source = try await articles.query(limit: 1000).map { "\($0.id)=\(String(decoding: $0.data, as: UTF8.self))" }.sorted()
        let schema = try #require(Self.schemaOf(db, "index"))
        let copy = try await db.sql(on: "index", "SELECT id, body::text AS body FROM \(schema).articles ORDER BY id")
        #expect(copy.count == 8 * 9 + 1)
        #expect(source.count == copy.count)
        for w in 0..<8 {
            #expect(try await articles.search("writer\(w) round4", limit: 100).count == 9)
            #expect(try await articles.search("writer\(w) round3", limit: 100).isEmpty)
        }
        #expect(try await articles.nearest(text: "writer3 key4 round4", k: 1).first?.id == "w3k4")

        // One relay led; the other never applied anything.
        let applied = [a, b].map { $0.status().first?.applied ?? -1 }
        #expect(applied.contains(0) && applied.reduce(0, +) == 8 * (50 + 1) + 1, "\(applied)")

        // The cancelled relays handed their lease over: a third one leads at once, not after the lease expires.
        _ = try await articles.put("after", ["title": "written after the relays stopped"])
        let c = db.relay(RelayOptions(holder: "relay-c"))
        let caughtUp = try await c.catchUp()
        if caughtUp != 1 || c.status().first?.leader != true {
            let state = try await db.sql(on: "index", "SELECT key, convert_from(value, 'UTF8') AS value FROM \(schema)._polyglot_relay WHERE key LIKE 'lease%'")
            Issue.record("relay-c applied \(caughtUp); relay-a: \(a.status()); relay-b: \(b.status()); relay-c: \(c.status()); leases: \(state)")
        }
        try await db.close()
    }

    /// The relay once stalled for good when a snapshot window held an exact multiple of its batch size.
    @Test func theRelayGoesOnAfterAWindowOfExactlyFullBatches() async throws {
        let db = try await Polyglot(map: Self.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        let relay = db.relay(RelayOptions(batchSize: 5, holder: "pages"))
        for i in 0..<10 { try await articles.put("p\(i)", ["title": .string("page event \(i)")]) }
        #expect(try await relay.catchUp() == 10)
        // Nothing reads a copy's changes, so applying them appended no events to the index engine's outbox.
        let schema = try #require(Self.schemaOf(db, "index"))
        #expect(try await db.sql(on: "index", "SELECT count(*)::int8 AS n FROM \(schema)._polyglot_outbox").first?["n"]?.doubleValue == 0)
        for round in 0..<2 {
            let token = try await articles.put("later\(round)", ["title": .string("written after the full pages \(round)")])
            #expect(try await relay.catchUp() == 1)
            #expect(try await db.reading(atLeast: token, maxWait: .seconds(5)) { try await articles.search("after the full pages", limit: 10) }.count == round + 1)
        }
        try await db.close()
    }

    /// Positions come from a sequence, so a write can hold position 5 while 6 commits and is relayed: the copy's
    /// highest position is then past 5 without having 5. A read with 5's token must wait for 5 itself.
    @Test func aReadWaitsForItsOwnWriteEvenWhenHigherPositionsWereAppliedFirst() async throws {
        let db = try await Polyglot(map: Self.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        // A token of position 0 (a write that appended no event) waits for nothing, even before any relay ran.
        let nothing = ConsistencyToken(engine: "primary", position: 0)
        #expect(try await db.reading(atLeast: nothing, maxWait: .milliseconds(300)) { try await articles.search("late") }.isEmpty)
        let relay = db.relay(RelayOptions(holder: "early"))
        let token = try await Self.commitLateAfterAHigherPositionWasApplied(db, articles, relay).slow
        let error = await #expect(throws: PolyglotError.self) {
            try await db.reading(atLeast: token, maxWait: .milliseconds(300)) { try await articles.search("late") }
        }
        #expect(error?.code == .stale && error?.message.contains("not \(token.position)") == true, "\(String(describing: error))")
        _ = try await relay.catchUp()
        #expect(try await db.reading(atLeast: token, maxWait: .seconds(5)) { try await articles.search("late") }.map(\.id) == ["slow"])
        try await db.close()
    }

    /// Pruning once kept only positions above the copy's highest applied one, so an event whose transaction held a
    /// lower position open while higher ones were applied, and that was older than `outboxRetention` when it
    /// committed, was deleted before the relay read it: the copy never got the write.
    @Test func pruningKeepsAnEventCommittedAfterHigherPositionsWereApplied() async throws {
        let db = try await Polyglot(map: Self.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        let relay = db.relay(RelayOptions(holder: "pruning"))
        let (token, fast) = try await Self.commitLateAfterAHigherPositionWasApplied(db, articles, relay)
        // Both events are past retention (24 h by default) when maintenance runs: "fast" was read and may go,
        // "slow" was not and must stay.
        let later = Date().addingTimeInterval(3 * 86_400)
        try await db.maintain(now: later)
        let schema = try #require(Self.schemaOf(db, "primary"))
        let left = try await db.sql(on: "primary", "SELECT key FROM \(schema)._polyglot_outbox ORDER BY position")
        #expect(left.map { $0["key"] } == [.string("slow")], "\(left)")
        // "fast"'s row is gone although a lower one is left: its token still reads as applied (not stale).
        #expect(try await db.reading(atLeast: fast, maxWait: .milliseconds(500)) { try await articles.search("early") }.map(\.id) == ["fast"])
        _ = try await relay.catchUp()
        #expect(try await db.reading(atLeast: token, maxWait: .seconds(5)) { try await articles.search("late") }.map(\.id) == ["slow"])
        // Once read, it goes too.
        try await db.maintain(now: later)
        #expect(try await db.sql(on: "primary", "SELECT key FROM \(schema)._polyglot_outbox").isEmpty)
        try await db.close()
    }

    @Test func aCommitWakesAnIdleRelayThroughListenNotify() async throws {
        let db = try await Polyglot(map: Self.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        // The relay's fallback poll is an hour away: only the NOTIFY of the commit can wake it.
        let relay = db.relay(RelayOptions(idleInterval: .seconds(3600)))
        let running = Task { try await relay.run() }
        try await Task.sleep(for: .milliseconds(300))   // the relay reads the (empty) feed, then waits
        for i in 0..<3 {
            let token = try await articles.put("n\(i)", ["title": .string("notified \(i)")])
            let hits = try await db.reading(atLeast: token, maxWait: .seconds(20)) { try await articles.search("notified", limit: 10) }
            #expect(hits.count == i + 1)
        }
        running.cancel()
        _ = try? await running.value
        try await db.close()
    }

    /// "slow" takes a position in a transaction held open while "fast" (a higher position) commits and `relay`
    /// applies it; then "slow" commits. Returns "slow"'s token.
    static func commitLateAfterAHigherPositionWasApplied(_ db: Polyglot, _ articles: DocumentCollection, _ relay: Relay) async throws -> (slow: ConsistencyToken, fast: ConsistencyToken) {
        let (tookPosition, tookContinuation) = AsyncStream.makeStream(of: Void.self)
        let (mayCommit, commitContinuation) = AsyncStream.makeStream(of: Void.self)
        let slow = Task {
            try await db.transaction(on: "primary") { () -> ConsistencyToken in
                let token = try await articles.put("slow", ["title": "committed late"])
                tookContinuation.yield()
                for await _ in mayCommit { break }
                return token
            }
        }
        for await _ in tookPosition { break }
        let fast = try await articles.put("fast", ["title": "committed early"])
        _ = try await relay.catchUp()   // applies "fast": the copy's highest position passes "slow"'s
        commitContinuation.yield()
        let token = try await slow.value
        #expect(fast.position > token.position)
        return (token, fast)
    }

    static func schemaOf(_ db: Polyglot, _ engine: String) -> String? {
        db.map.engines.first { $0.name == engine }?.options["schema"]
    }
}

/// Rebuild and relay-embedded vectors on PostgreSQL.
@Suite struct PostgresRebuildTests {
    @Test func aRebuildOnPostgresSwapsTablesAndIndexesWhileTheRelayRuns() async throws {
        let db = try await Polyglot(map: PostgresRelayTests.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        for i in 0..<120 { try await articles.put("a\(i)", ["title": .string("article number \(i)")]) }
        let relay = db.relay(RelayOptions(batchSize: 25, idleInterval: .milliseconds(5), holder: "live"))
        _ = try await relay.catchUp()
        let running = Task { try await relay.run() }
        let writer = Task { for i in 0..<60 { try await articles.put("w\(i)", ["title": .string("written meanwhile \(i)")]) } }
        let report = try await db.relay(RelayOptions(holder: "rebuilder")).rebuild("articles@index", batchSize: 40)
        try await writer.value
        let last = try await articles.put("final", ["title": "final marker"])
        #expect(try await db.reading(atLeast: last, maxWait: .seconds(30)) { try await articles.search("marker") }.map(\.id) == ["final"])
        running.cancel()
        _ = try? await running.value
        #expect(report.documents >= 120, "\(report)")
        #expect(try await db.relay().verify("articles@index").first?.isClean == true)
        #expect(try await articles.nearest(text: "written meanwhile 59", k: 1).first?.id == "w59")
        // The swapped-in tables carry the live names, indexes included, and no shadow is left behind.
        let schema = try #require(PostgresRelayTests.schemaOf(db, "index"))
        let names = try await db.sql(on: "index", "SELECT tablename AS name FROM pg_tables WHERE schemaname = '\(schema)' UNION ALL SELECT indexname FROM pg_indexes WHERE schemaname = '\(schema)'")
            .compactMap { $0["name"]?.stringValue }
        #expect(!names.contains { $0.contains("__rebuild") }, "\(names)")
        #expect(names.contains("articles__search") && names.contains("articles_pkey"), "\(names)")
        try await db.close()
    }

    /// A write whose transaction commits after the rebuild's copy has read past its position, and which the live
    /// relay applies just before the swap, must still reach the swapped-in copy: the swap compares what each side
    /// has read, not positions (a lower position can commit after a higher one).
    @Test func aRebuildSwapsOnlyOnceItsCopyHasEverythingTheLiveOneApplied() async throws {
        let db = try await Polyglot(map: PostgresRelayTests.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        for i in 0..<5 { try await articles.put("a\(i)", ["title": .string("article \(i)")]) }
        let live = db.relay(RelayOptions(holder: "live"))
        _ = try await live.catchUp()
        // "late" takes its position and holds its transaction open; "early" takes a higher one and commits.
        let (tookPosition, tookContinuation) = AsyncStream.makeStream(of: Void.self)
        let (mayCommit, commitContinuation) = AsyncStream.makeStream(of: Void.self)
        defer { commitContinuation.finish() }   // never leave "late" open if the rebuild throws early
        let late = Task {
            try await db.transaction(on: "primary") {
                _ = try await articles.put("late", ["title": "committed late"])
                tookContinuation.yield()
                for await _ in mayCommit { break }
            }
        }
        for await _ in tookPosition { break }
        _ = try await articles.put("early", ["title": "committed early"])
        let once = Mutex(false)
        let report = try await RelayWorker.$beforeSwap.withValue({
            guard once.withLock({ let first = !$0; $0 = true; return first }) else { return }
            // The new copy has read everything committed so far. Now "late" commits and the live relay applies it.
            commitContinuation.yield()
            try await late.value
            // In pages of one, so the live checkpoint stays inside its window ("previous|target|last"): the swap
            // check must read that form too.
            _ = try await db.relay(RelayOptions(batchSize: 1, holder: "live")).catchUp()
        }) {
            try await db.relay(RelayOptions(holder: "rebuilder")).rebuild("articles@index", batchSize: 100)
        }
        #expect(report.rounds >= 2, "\(report)")
        _ = try await live.catchUp()
        #expect(try await articles.search("late").map(\.id) == ["late"])
        #expect(try await db.relay().verify("articles@index").first?.isClean == true)
        try await db.close()
    }

    /// A captured dataset's copy reads the live copy's capture slot, which its relay acknowledges as it goes: a
    /// rebuild could not keep the changes it has not read, so it is refused, saying what to use instead.
    @Test(.makesCaptureSlots) func aCopyOfACapturedDatasetIsNotRebuilt() async throws {
        let map = DataMap(engines: [PGServers.freshSchema(EngineSpec(name: "primary", kind: "postgres", url: PGServers.pg15Capture)),
                                    PGServers.freshSchema(EngineSpec(name: "index", kind: "postgres", url: PGServers.pg15Capture))],
                          datasets: [DatasetSpec(name: "docs", model: .documents, engine: "primary",
                                                 projections: [.search(on: "index", fields: ["title"])], capture: true)])
        let db = try await Polyglot(map: map, registry: PGServers.registry)
        let relay = db.relay()
        do {
            _ = try await relay.rebuild("docs@index")
            Issue.record("a captured copy was rebuilt")
        } catch let e as PolyglotError {
            #expect(e.code == .invalidArgument && e.message.contains("captured") && e.fix?.contains("repair: true") == true, "\(e)")
        }
        for copy in relay.copies { try await (try db.engine("primary") as! PostgresEngine).dropCapture(consumer: copy.name) }
        try await db.close()
    }

    /// Maintenance during a rebuild: events the live copy has applied but the new copy has not read yet must stay,
    /// or the new copy, swapped in, would lack them for good (the swap check finds no row it has not read).
    @Test func aRunningRebuildKeepsTheOutboxEventsItsCopyHasNotRead() async throws {
        let db = try await Polyglot(map: PostgresRelayTests.map(), registry: PGServers.registry)
        let articles = try db.documents("articles")
        for i in 0..<5 { try await articles.put("a\(i)", ["title": .string("article \(i)")]) }
        _ = try await db.relay(RelayOptions(holder: "live")).catchUp()
        let once = Mutex(false)
        let report = try await RelayWorker.$beforeSwap.withValue({
            guard once.withLock({ let first = !$0; $0 = true; return first }) else { return }
            // A write during the rebuild, applied by the live relay, then maintenance with every event past retention.
            _ = try await articles.put("extra", ["title": "written during the rebuild"])
            _ = try await db.relay(RelayOptions(holder: "live")).catchUp()
            try await db.maintain(now: Date().addingTimeInterval(3 * 86_400))
            // The hold is also a claim: a second rebuild of the copy refuses to start meanwhile.
            do {
                _ = try await db.relay(RelayOptions(holder: "second")).rebuild("articles@index")
                Issue.record("a second rebuild ran while the first one held the copy")
            } catch let e as PolyglotError {
                #expect(e.code == .conflict && e.message.contains("Another rebuild"), "\(e)")
            }
        }) {
            try await db.relay(RelayOptions(holder: "rebuilder")).rebuild("articles@index", batchSize: 100)
        }
        #expect(report.rounds >= 2, "\(report)")
        #expect(try await articles.search("rebuild").map(\.id) == ["extra"])
        // Once it is over, the next rebuild may run.
        #expect(try await db.relay(RelayOptions(holder: "third")).rebuild("articles@index").documents == 6)
        #expect(try await db.relay().verify("articles@index").first?.isClean == true)
        // Once the rebuild is over it holds nothing back.
        try await db.maintain(now: Date().addingTimeInterval(3 * 86_400))
        let schema = try #require(PostgresRelayTests.schemaOf(db, "primary"))
        #expect(try await db.sql(on: "primary", "SELECT count(*) AS n FROM \(schema)._polyglot_outbox").first?["n"] == 0)
        try await db.close()
    }

    /// A documents dataset `notes` whose vectors projection (on its own engine) is embedded by the relay through the
    /// test embeddings server, under a model name of its own (the server keeps faults, delays and counts per model).
    static func notesWithRemoteEmbeddings(capture: Bool) async throws -> Polyglot {
        let url = TestServers.value("POLYGLOT_TEST_EMBEDDINGS_URL")
        try #require(!url.isEmpty, Comment(rawValue: TestServers.missing("POLYGLOT_TEST_EMBEDDINGS_URL")))
        setenv("POLYGLOT_TEST_EMBEDDINGS_KEY", TestServers.value("POLYGLOT_TEST_EMBEDDINGS_KEY"), 1)
        let server = capture ? PGServers.pg18Capture : PGServers.pg18
        let map = DataMap(engines: [PGServers.freshSchema(EngineSpec(name: "primary", kind: "postgres", url: server))],
                          datasets: [DatasetSpec(name: "notes", model: .documents, engine: "primary",
                                                 projections: [.vectors(on: "primary", fields: ["title"], dimension: 32, embedder: "model")],
                                                 capture: capture)],
                          embedders: [EmbedderSpec(name: "model", kind: "openai", url: url, model: "test-pg-\(UInt32.random(in: 0 ... .max))z",
                                                   apiKeyEnv: "POLYGLOT_TEST_EMBEDDINGS_KEY")])
        return try await Polyglot(map: map, registry: PGServers.registry)
    }

    /// A captured dataset's snapshot events all have position 0, and one transaction's captured events share its
    /// position: each document must still get its own vector (they were once matched to texts by position).
    @Test(.makesCaptureSlots) func capturedRowsSharingAPositionEachGetTheirOwnEmbedding() async throws {
        let db = try await Self.notesWithRemoteEmbeddings(capture: true)
        let notes = try db.documents("notes")
        // Before the relay's capture slot exists: copied by its snapshot, all at position 0.
        try await notes.put("n1", ["title": "sourdough bread starter"])
        try await notes.put("n2", ["title": "raft consensus protocol"])
        let relay = db.relay(RelayOptions(holder: "captured-embeddings"))
        _ = try await relay.catchUp()
        #expect(try await notes.nearest(text: "bread starter", k: 1).first?.id == "n1")
        #expect(try await notes.nearest(text: "consensus protocol", k: 1).first?.id == "n2")
        // One transaction, two documents: captured changes that share the transaction's position.
        try await db.transaction(on: "primary") {
            try await notes.put("n3", ["title": "espresso grinder settings"])
            try await notes.put("n4", ["title": "vector clock ordering"])
        }
        try await CaptureRelayTests.eventually("the transaction's documents are embedded") {
            _ = try await relay.catchUp()
            return try await notes.nearest(text: "vector clock", k: 1).first?.id == "n4"
        }
        #expect(try await notes.nearest(text: "espresso grinder", k: 1).first?.id == "n3")
        try await db.close()
    }

    @Test func aRemoteEmbedderFillsAPgvectorProjectionThroughTheRelay() async throws {
        let db = try await Self.notesWithRemoteEmbeddings(capture: false)
        let notes = try db.documents("notes")
        try await notes.put("n1", ["title": "sourdough bread starter"])
        try await notes.put("n2", ["title": "raft consensus protocol"])
        #expect(try await notes.nearest(to: [Float](repeating: 0.1, count: 32), k: 5).isEmpty)
        let relay = db.relay()
        _ = try await relay.catchUp()
        #expect(try await notes.nearest(text: "bread starter", k: 1).first?.id == "n1")
        _ = try await notes.delete("n1")
        _ = try await relay.catchUp()
        #expect(try await notes.nearest(text: "bread starter", k: 2).map(\.id) == ["n2"])
        try await db.close()
    }
}
