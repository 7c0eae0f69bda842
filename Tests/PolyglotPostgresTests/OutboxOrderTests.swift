import Foundation
import Polyglot
import PolyglotPostgres
import PolyglotTesting
import Testing

/// The outbox must be read in commit order: a sequence position taken by a transaction that commits later must
/// still be delivered, exactly once, even after higher positions were read.
@Suite struct PostgresOutboxOrder {
    /// A relay keeps no cursor from an empty batch, so an empty batch must mean "nothing left": a snapshot window
    /// that ends exactly on a full page must not hide the commits after it behind an empty last page.
    @Test func aWindowEndingOnAFullPageStillLeadsToLaterCommits() async throws {
        let db = try await openPostgres(PGServers.pg18, datasets: [docs])
        let feed = try #require(try db.engine("subject") as? PostgresEngine).changeFeed()
        let d = try db.documents("docs")
        for i in 0..<10 { try await d.put("k\(i)", ["name": .string("first \(i)")]) }
        var cursor = ChangeCursor.start
        for page in 0..<2 {
            let batch = try await feed.changes(after: cursor, limit: 5)
            #expect(batch.events.map(\.key) == (0..<5).map { "k\(page * 5 + $0)" })
            cursor = batch.next
        }
        try await d.put("later", ["name": "after the window"])
        // The same cursor, read twice, as a relay does when it stored nothing in between.
        for _ in 0..<2 {
            #expect(try await feed.changes(after: cursor, limit: 5).events.map(\.key) == ["later"])
        }
        let after = try await feed.changes(after: cursor, limit: 5).next
        #expect(try await feed.changes(after: after, limit: 5).events.isEmpty)
        try await db.close()
    }

    @Test func eightConcurrentWritersWithTransactionsHeldOpenLoseNothing() async throws {
        let db = try await openPostgres(PGServers.pg18, datasets: [docs], options: ["poolSize": "20"])
        let feed = try #require(try db.engine("subject") as? PostgresEngine).changeFeed()
        let d = try db.documents("docs")
        let committed = Committed()   // key -> last committed version
        let writers = 8, writesPerWriter = 25

        // A reader that polls the feed the whole time, in small batches.
        let reader = Task { () -> [ChangeEvent] in
            var cursor = ChangeCursor.start
            var seen: [ChangeEvent] = []
            var quietRounds = 0
            while quietRounds < 40 {
                let batch = try await feed.changes(after: cursor, limit: 7)
                seen += batch.events
                cursor = batch.next
                let finished = await committed.finished
                quietRounds = batch.events.isEmpty && finished ? quietRounds + 1 : 0
                if batch.events.isEmpty { try? await Task.sleep(for: .milliseconds(5)) }
            }
            return seen
        }

        // The naive reader the feed replaces: it remembers only the highest position it has seen.
        let schema = db.map.engines[0].options["schema"]!
        let naive = Task { () -> Set<Int64> in
            var last: Int64 = 0
            var seen = Set<Int64>()
            var quietRounds = 0
            while quietRounds < 40 {
                let rows = try await db.sql(on: "subject", "SELECT position FROM \(schema)._polyglot_outbox WHERE position > ? ORDER BY position LIMIT 7", [.number(Double(last))])
                for r in rows { if let p = r["position"]?.doubleValue { seen.insert(Int64(p)); last = max(last, Int64(p)) } }
                let finished = await committed.finished
                quietRounds = rows.isEmpty && finished ? quietRounds + 1 : 0
                if rows.isEmpty { try? await Task.sleep(for: .milliseconds(5)) }
            }
            return seen
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    for i in 0..<writesPerWriter {
                        let key = "k\((w * 7 + i) % 20)"   // keys shared across writers
                        if i % 5 == 0 {
                            // Take a position, then hold the transaction open while others commit higher ones.
                            let v = try await db.transaction(on: "subject") { () -> Int64 in
                                let t = try await d.put(key, ["w": .number(Double(w)), "i": .number(Double(i))])
                                try await Task.sleep(for: .milliseconds(30))
                                return t.position
                            }
                            await committed.record(key, v)
                        } else {
                            let t = try await d.put(key, ["w": .number(Double(w)), "i": .number(Double(i))])
                            await committed.record(key, t.position)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        await committed.finish()   // the reader drains what is left, then stops
        let seen = try await reader.value
        let naiveSeen = try await naive.value

        let positions = seen.map(\.position)
        #expect(positions.count == writers * writesPerWriter, "the feed delivered \(positions.count) events for \(writers * writesPerWriter) writes")
        #expect(Set(positions).count == positions.count, "an event was delivered twice")
        // Higher positions were delivered before lower ones at least once: the held-open transactions happened.
        let outOfOrder = zip(positions, positions.dropFirst()).filter { $0 > $1 }.count
        #expect(outOfOrder > 0, "the test never produced a lower position committing after a higher one")
        // The workload is one where reading by position loses events, so the feed's guarantee is really tested.
        #expect(naiveSeen.count < positions.count, "a position-only reader lost nothing, so this run did not exercise the hazard")
        // Per key, events arrive in increasing version, and the last one is the committed state.
        var lastByKey: [String: Int64] = [:]
        for e in seen {
            #expect(e.position > (lastByKey[e.key] ?? 0), "key \(e.key): version \(e.position) arrived after \(lastByKey[e.key] ?? 0)")
            lastByKey[e.key] = e.position
        }
        #expect(lastByKey == (await committed.versions), "the feed's last version per key differs from what was committed")
        for (key, version) in lastByKey { #expect(try await d.get(key)?.version == version) }
        try await db.close()
    }
}

actor Committed {
    var versions: [String: Int64] = [:]
    var finished = false
    func finish() { finished = true }
    func record(_ key: String, _ version: Int64) { versions[key] = max(versions[key] ?? 0, version) }
}
