import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Polyglot
import PolyglotSQLite
import PolyglotTesting
import Testing

/// The OpenAI-compatible embedder and relay-embedded vectors projections, against the OpenAI-compatible test
/// endpoint `scripts/services/up embeddings` starts (scripts/services/embeddings-server.py). Each test uses its own
/// model name, so faults injected for one never reach another.
@Suite struct RemoteEmbedderTests {
    static var base: String {
        let url = TestServers.value("POLYGLOT_TEST_EMBEDDINGS_URL")
        precondition(!url.isEmpty, TestServers.missing("POLYGLOT_TEST_EMBEDDINGS_URL"))
        return url
    }
    static var key: String { TestServers.value("POLYGLOT_TEST_EMBEDDINGS_KEY") }

    static func embedder(_ model: String, dimension: Int = 32, key: String? = RemoteEmbedderTests.key, batchSize: Int = 64,
                         maxAttempts: Int = 5, requestDimensions: Bool = false, url: String = RemoteEmbedderTests.base) -> OpenAIEmbedder {
        OpenAIEmbedder(url: URL(string: url)!, model: model, dimension: dimension, apiKey: key, requestDimensions: requestDimensions,
                       batchSize: batchSize, timeout: .seconds(10), maxAttempts: maxAttempts)
    }

    /// Tells the test endpoint to fail the next `count` requests for `model` with `status`.
    static func inject(_ model: String, fail count: Int, status: Int = 503, retryAfter: Double? = nil) async throws {
        var body: [String: Any] = ["model": model, "fail": count, "status": status]
        if let retryAfter { body["retry_after"] = retryAfter }
        var request = URLRequest(url: URL(string: base.replacingOccurrences(of: "/v1", with: "/_control"))!)
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        _ = try await URLSession.shared.data(for: request)
    }

    /// How many requests (and inputs) the endpoint received for `model`.
    static func requests(_ model: String) async throws -> (requests: Int, inputs: Int) {
        let url = URL(string: base.replacingOccurrences(of: "/v1", with: "/_stats") + "?model=\(model)")!
        let (data, _) = try await URLSession.shared.data(from: url)
        let o = try JSONSerialization.jsonObject(with: data) as! [String: Int]
        return (o["requests"] ?? 0, o["inputs"] ?? 0)
    }

    /// A model name of its own per test run (the endpoint counts requests per model, across runs).
    static func model(_ name: String, dimension: Int? = nil) -> String {
        "test-\(name)-\(UInt32.random(in: 0 ... .max))z" + (dimension.map { "-\($0)" } ?? "")
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    // MARK: The client

    @Test func embeddingsComeBackInInputOrderInBatchesWithTheRightDimension() async throws {
        let model = Self.model("order")
        let e = Self.embedder(model, batchSize: 3)
        let texts = ["red running shoe", "trail boot", "", "red shoe", "blue kettle", "running shoe", "trail running"]
        let vectors = try await e.embed(texts)
        #expect(vectors.count == 7)
        // The endpoint returns items in reverse order; the client puts them back by index.
        #expect(vectors[2].isEmpty, "an empty text is not sent and has no embedding")
        for (i, v) in vectors.enumerated() where i != 2 { #expect(v.count == 32) }
        #expect(Self.cosine(vectors[0], vectors[3]) > Self.cosine(vectors[0], vectors[4]))
        #expect(try await e.embed(["red running shoe"]) == [vectors[0]], "deterministic and order-independent")
        // 6 non-empty texts in batches of 3: 2 requests, plus the single one above.
        #expect(try await Self.requests(model) == (3, 7))
    }

    @Test func rateLimitsAndServerErrorsAreRetriedWithBackoff() async throws {
        let model = Self.model("retry")
        let e = Self.embedder(model, maxAttempts: 4)
        try await Self.inject(model, fail: 2, status: 503)
        #expect(try await e.embed(["hello world"]).first?.count == 32)
        #expect(try await Self.requests(model).requests == 3)
        // 429 with Retry-After: waited as asked, then served.
        try await Self.inject(model, fail: 1, status: 429, retryAfter: 0.2)
        let start = ContinuousClock.now
        #expect(try await e.embed(["again"]).count == 1)
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        // Past maxAttempts the error is typed, retryable, and says what happened.
        try await Self.inject(model, fail: 10, status: 502)
        do {
            _ = try await Self.embedder(model, maxAttempts: 2).embed(["x"])
            Issue.record("an endpoint failing every attempt did not throw")
        } catch let error as PolyglotError {
            #expect(error.code == .embedderFailure && error.isRetryable, "\(error)")
            #expect(error.message.contains("HTTP 502") && error.message.contains("after 2 attempts"), "\(error)")
        }
    }

    @Test func refusalsFailAtOnceWithTheEndpointsMessage() async throws {
        // A wrong key: 401, not retried, the endpoint's message and what to check.
        let model = Self.model("refuse")
        do {
            _ = try await Self.embedder(model, key: "wrong").embed(["x"])
            Issue.record("a wrong key was accepted")
        } catch let error as PolyglotError {
            #expect(error.code == .embedderFailure && !error.isRetryable, "\(error)")
            #expect(error.message.contains("HTTP 401") && error.message.contains("Incorrect API key") && error.fix?.contains("apiKeyEnv") == true, "\(error)")
        }
        #expect(try await Self.requests(model).requests == 0, "a 401 is answered before the model is counted")
        // An unknown model: 404 with the endpoint's message.
        await #expect(throws: PolyglotError.self) { _ = try await Self.embedder("gpt-unknown").embed(["x"]) }
        // An input the model refuses: 400, not retried.
        do {
            _ = try await Self.embedder(model).embed(["fine", "this is poison"])
            Issue.record("a refused input did not throw")
        } catch let error as PolyglotError {
            #expect(!error.isRetryable && error.message.contains("HTTP 400") && error.message.contains("refuses"), "\(error)")
        }
        #expect(try await Self.requests(model).requests == 1)
        // A model whose embeddings have another dimension than the projection.
        do {
            _ = try await Self.embedder(Self.model("wide", dimension: 48), dimension: 32).embed(["x"])
            Issue.record("a 48-dimensional reply was accepted for a 32-dimensional projection")
        } catch let error as PolyglotError {
            #expect(error.code == .invalidVector && error.message.contains("48-dimensional") && error.fix?.contains("requestDimensions") == true, "\(error)")
        }
        // ...which a model that can shorten its output serves when asked.
        #expect(try await Self.embedder(Self.model("wide", dimension: 48), dimension: 16, requestDimensions: true).embed(["x"]).first?.count == 16)
    }

    @Test func anUnreachableEndpointIsARetryableErrorNotAHang() async throws {
        do {
            _ = try await Self.embedder("test-down", maxAttempts: 2, url: "http://127.0.0.1:1/v1").embed(["x"])
            Issue.record("an unreachable endpoint did not throw")
        } catch let error as PolyglotError {
            #expect(error.code == .embedderFailure && error.isRetryable && error.message.contains("could not be reached"), "\(error)")
        }
    }

    // MARK: The data map

    @Test func theDataMapDeclaresEmbeddersAndRefusesBadOnes() throws {
        let yaml = """
        engines:
          primary: { kind: sqlite, path: app.db }
        embedders:
          model: { kind: openai, url: "http://127.0.0.1:9/v1", model: test-embed, apiKeyEnv: EMBED_KEY, batchSize: 16, timeout: 5s, maxAttempts: 3 }
        datasets:
          notes:
            model: documents
            engine: primary
            projections:
              - { kind: vectors, engine: primary, fields: [text], dimension: 32, embedder: model }
        """
        let map = try DataMap(yaml: yaml)
        #expect(map.embedders == [EmbedderSpec(name: "model", kind: "openai", url: "http://127.0.0.1:9/v1", model: "test-embed", apiKeyEnv: "EMBED_KEY",
                                               batchSize: 16, timeout: .seconds(5), maxAttempts: 3)])
        #expect(map.datasets[0].projections[0].isEmbeddedByRelay)
        try map.validate(registry: .embedded)

        let bad = yaml.replacingOccurrences(of: "embedder: model", with: "embedder: nope")
            .replacingOccurrences(of: "url: \"http://127.0.0.1:9/v1\", ", with: "")
        do {
            try DataMap(yaml: bad).validate(registry: .embedded)
            Issue.record("a map naming an undeclared embedder was accepted")
        } catch let error as PolyglotError {
            #expect(error.message.contains("embedder 'nope', which is not declared") && error.message.contains("has no http(s) `url:`"), "\(error)")
        }
        #expect(throws: PolyglotError.self) { try DataMap(yaml: yaml.replacingOccurrences(of: "batchSize: 16", with: "batchSize: x")) }
    }

    @Test func aMissingAPIKeyVariableStopsTheOpenWithTheVariablesName() async throws {
        let dir = tempDir()
        let map = DataMap(engines: [.sqlite(path: dir + "/p.db")],
                          datasets: [DatasetSpec(name: "notes", model: .documents, engine: "primary",
                                                 projections: [.vectors(on: "primary", fields: ["text"], dimension: 32, embedder: "model")])],
                          embedders: [EmbedderSpec(name: "model", kind: "openai", url: Self.base, model: "test-x", apiKeyEnv: "POLYGLOT_UNSET_VARIABLE_FOR_TEST")])
        do {
            _ = try await Polyglot(map: map, registry: .embedded)
            Issue.record("opened with an API key variable that is not set")
        } catch let error as PolyglotError {
            #expect(error.message.contains("$POLYGLOT_UNSET_VARIABLE_FOR_TEST") && error.fix?.contains("Export") == true, "\(error)")
        }
    }

    // MARK: Relay-embedded projections

    static func map(_ dir: String, model: String, maxAttempts: Int = 3, onOtherEngine: Bool = false) -> DataMap {
        var engines = [EngineSpec.sqlite(path: dir + "/primary.db")]
        if onOtherEngine { engines.append(EngineSpec(name: "index", kind: "sqlite", path: dir + "/index.db")) }
        return DataMap(engines: engines,
                       datasets: [DatasetSpec(name: "notes", model: .documents, engine: "primary", fields: [FieldSpec("topic", .string)],
                                              projections: [.vectors(on: onOtherEngine ? "index" : "primary", fields: ["title", "body"],
                                                                     dimension: 32, embedder: "model")]),
                                  DatasetSpec(name: "pages", model: .documents, engine: "primary",
                                              projections: [.search(on: onOtherEngine ? "index" : "primary", fields: ["title"])])],
                       embedders: [EmbedderSpec(name: "model", kind: "openai", url: base, model: model, apiKeyEnv: "POLYGLOT_TEST_EMBEDDINGS_KEY",
                                                batchSize: 8, timeout: .seconds(5), maxAttempts: maxAttempts)])
    }

    static func open(_ map: DataMap) async throws -> Polyglot {
        // The key comes from the variable the map names (scripts/services/up writes it to .services/env).
        setenv("POLYGLOT_TEST_EMBEDDINGS_KEY", key, 1)
        return try await Polyglot(map: map, registry: .embedded)
    }

    @Test(arguments: [false, true])
    func theRelayEmbedsAfterCommitAndFollowsUpdatesAndDeletes(onOtherEngine: Bool) async throws {
        let model = Self.model("relay")
        let db = try await Self.open(Self.map(tempDir(), model: model, onOtherEngine: onOtherEngine))
        let notes = try db.documents("notes")
        try await notes.put("n1", ["title": "Raft consensus", "body": "leader election and log replication", "topic": "dist"])
        try await notes.put("n2", ["title": "Sourdough bread", "body": "flour water salt", "topic": "food"])
        try await notes.put("n3", ["title": "Paxos", "body": "proposers acceptors consensus", "topic": "dist"])
        // The write committed without calling the model: nothing is embedded until the relay runs.
        #expect(try await Self.requests(model).requests == 0)
        #expect(try await notes.nearest(to: [Float](repeating: 0.1, count: 32), k: 3).isEmpty)
        let relay = db.relay()
        #expect(relay.copies.map(\.name).contains("notes.embeddings@\(onOtherEngine ? "index" : "primary")"))
        _ = try await relay.catchUp()
        // One request for the batch of three puts (batchSize 8), then one per nearest(text:) query.
        #expect(try await Self.requests(model) == (1, 3))
        #expect(try await notes.nearest(text: "flour bread", k: 1).first?.id == "n2")
        #expect(try await notes.nearest(text: "consensus", k: 3, where: .field("topic") == "dist").map(\.id).sorted() == ["n1", "n3"])

        // An update re-embeds; a delete removes the vector; only the last put of a key in a batch is embedded.
        try await notes.put("n2", ["title": "Rye bread", "body": "dark crumb", "topic": "food"])
        try await notes.put("n2", ["title": "Spelt bread", "body": "nutty crumb", "topic": "food"])
        _ = try await notes.delete("n3")
        let before = try await Self.requests(model).inputs
        _ = try await relay.catchUp()
        #expect(try await Self.requests(model).inputs == before + 1)
        #expect(try await notes.nearest(text: "spelt nutty", k: 1).first?.id == "n2")
        #expect(try await notes.nearest(text: "proposers acceptors", k: 3).allSatisfy { $0.id != "n3" })

        // A token read waits for the relay's embedding (the relay above hands its lease over first).
        await relay.release()
        let running = Task { try await db.relay(RelayOptions(idleInterval: .milliseconds(10))).run() }
        let token = try await notes.put("n4", ["title": "Kettle descaling", "body": "citric acid", "topic": "home"])
        #expect(try await db.reading(atLeast: token, maxWait: .seconds(60)) { try await notes.nearest(text: "kettle citric", k: 1) }.first?.id == "n4")
        running.cancel()
        _ = try? await running.value
        try await db.close()
    }

    @Test func aDocumentTheModelRefusesIsADeadLetterAndTheOthersAreEmbedded() async throws {
        let db = try await Self.open(Self.map(tempDir(), model: Self.model("poison")))
        let notes = try db.documents("notes")
        try await notes.put("ok1", ["title": "good text", "body": "plain"])
        try await notes.put("bad", ["title": "poison", "body": "the model refuses this"])
        try await notes.put("ok2", ["title": "another good text", "body": "fine"])
        let relay = db.relay()
        _ = try await relay.catchUp()
        let dead = try await relay.deadLetters(of: "notes.embeddings@primary")
        #expect(dead.map(\.key) == ["bad"])
        #expect(dead.first?.error.contains("HTTP 400") == true, "\(dead)")
        #expect(try await notes.nearest(text: "good text", k: 5).map(\.id).sorted() == ["ok1", "ok2"])
        #expect(relay.status().first { $0.copy == "notes.embeddings@primary" }?.deadLetters == 1)
        try await db.close()
    }

    @Test func aFailingEndpointHoldsBackOnlyItsOwnProjectionAndCatchesUpWhenItRecovers() async throws {
        let model = Self.model("outage")
        let db = try await Self.open(Self.map(tempDir(), model: model, maxAttempts: 1, onOtherEngine: true))
        try await Self.inject(model, fail: 1000, status: 503)
        let relay = db.relay(RelayOptions(idleInterval: .milliseconds(20), maxBackoff: .milliseconds(100)))
        let running = Task { try await relay.run() }
        try await db.documents("notes").put("n1", ["title": "Raft consensus", "body": "logs"])
        let token = try await db.documents("pages").put("p1", ["title": "Welcome page"])
        // The other dataset's projection keeps up while the model is down...
        #expect(try await db.reading(atLeast: token, maxWait: .seconds(60)) { try await db.documents("pages").search("welcome") }.map(\.id) == ["p1"])
        // ...and the embeddings copy reports the outage and retries.
        let deadline = ContinuousClock.now + .seconds(10)
        while relay.status().first(where: { $0.copy == "notes.embeddings@index" })?.lastError == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let status = try #require(relay.status().first { $0.copy == "notes.embeddings@index" })
        #expect(status.lastError?.contains("HTTP 503") == true, "\(status)")
        // (nearest(text:) would need the model too: query with a vector.)
        #expect(try await db.documents("notes").nearest(to: [Float](repeating: 0.1, count: 32), k: 1).isEmpty)
        // The endpoint recovers: the retried step embeds the document.
        try await Self.inject(model, fail: 0)
        let notes = try db.documents("notes")
        while try await notes.nearest(text: "raft consensus", k: 1).isEmpty, ContinuousClock.now < deadline + .seconds(10) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await notes.nearest(text: "raft consensus", k: 1).first?.id == "n1")
        running.cancel()
        _ = try? await running.value
        try await db.close()
    }

    @Test func theRelaysOwnStateWritesNeverReachTheOutboxItReads() async throws {
        // The embeddings copy keeps its checkpoint on the dataset's own engine, whose outbox it reads. Were its
        // state writes outbox events, batches full of them would hold the relay back for ever.
        let db = try await Self.open(Self.map(tempDir(), model: Self.model("state")))
        let notes = try db.documents("notes")
        for i in 0..<12 { try await notes.put("n\(i)", ["title": .string("note \(i)")]) }
        let relay = db.relay(RelayOptions(batchSize: 5))
        _ = try await relay.catchUp()
        try await notes.put("late", ["title": "a late note about kettles"])
        _ = try await relay.catchUp()
        #expect(try await notes.nearest(text: "kettles", k: 1).first?.id == "late")
        let events = try await db.sql(on: "primary", "SELECT count(*) AS n FROM _polyglot_outbox WHERE dataset = '_polyglot_relay'")
        #expect(events.first?["n"] == .number(0))
        try await db.close()
    }
}
