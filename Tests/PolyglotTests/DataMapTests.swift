import Foundation
@testable import Polyglot
import PolyglotTesting
import Synchronization
import Testing

@Suite struct DataMapTests {
    static let yaml = """
    engines:
      primary: { kind: memory }
      cache: { kind: memory, options: { maxEntries: 1000 } }
    datasets:
      sessions:
        model: keyValue
        engine: primary
        ttl: 30m
        maxValueBytes: 4096
      hot:
        model: keyValue
        engine: cache
    telemetry:
      flushInterval: 10s
    """

    @Test func yamlAndSwiftBuildTheSameValue() throws {
        let fromYAML = try DataMap(yaml: Self.yaml)
        let inSwift = DataMap(
            engines: [EngineSpec(name: "primary", kind: "memory"), EngineSpec(name: "cache", kind: "memory", options: ["maxEntries": "1000"])],
            datasets: [DatasetSpec(name: "sessions", model: .keyValue, engine: "primary", ttl: .seconds(1800), maxValueBytes: 4096),
                       DatasetSpec(name: "hot", model: .keyValue, engine: "cache")],
            telemetry: TelemetrySpec(flushInterval: .seconds(10)))
        #expect(fromYAML == inSwift)
        try fromYAML.validate(registry: .builtIn)
    }

    @Test func environmentOverridesEngineLocations() throws {
        let map = try DataMap(yaml: "engines:\n  read-replica: { kind: memory, url: dev }\ndatasets: {}\n")
        let prod = map.applyingEnvironment(["POLYGLOT_ENGINE_READ_REPLICA_URL": "postgres://prod", "POLYGLOT_ENGINE_READ_REPLICA_PATH": "/data/x"])
        #expect(prod.engines[0].url == "postgres://prod" && prod.engines[0].path == "/data/x")
        #expect(map.applyingEnvironment([:]) == map)
    }

    @Test func relativePathsResolveAgainstTheMapsFolder() throws {
        let map = try DataMap(yaml: "engines:\n  primary: { kind: sqlite, path: data/app.sqlite }\n", baseDirectory: "/srv/app")
        #expect(map.engines[0].path == "/srv/app/data/app.sqlite")
    }

    @Test func durationsParse() {
        #expect(DataMap.parseDuration("500ms") == .milliseconds(500))
        #expect(DataMap.parseDuration("2h") == .seconds(7200))
        #expect(DataMap.parseDuration("1.5s") == .milliseconds(1500))
        #expect(DataMap.parseDuration("soon") == nil)
    }

    /// Not-a-number, infinite and huge values are "not a duration", not a trap: the server reads `?window=` with this
    /// parser, and `window=Inf` crashed it (found by schemathesis).
    @Test(arguments: ["Inf", "inf", "-inf", "nan", "NaN", "infs", "nanms", "1e300s", "1e300", "9.3e15", "1e20ms"])
    func durationsThatAreNotFiniteOrTooLargeAreRefusedWithoutATrap(_ text: String) {
        #expect(DataMap.parseDuration(text) == nil)
    }

    @Test func durationsUpToAHundredYearsParse() {
        #expect(DataMap.parseDuration("36600d") == DataMap.longestDuration)
        #expect(DataMap.parseDuration("36601d") == nil)
        #expect(DataMap.parseDuration("1w") == .seconds(604_800))
    }

    /// One size parser for every engine's options; a product beyond Int is "not a size" (it trapped in the memory
    /// and memcached engines' own copies).
    @Test func sizesParseAndOverflowIsRefused() throws {
        #expect(DataMap.parseSize("4096") == 4096)
        #expect(DataMap.parseSize("64KB") == 64 << 10 && DataMap.parseSize("64 KiB") == 64 << 10)
        #expect(DataMap.parseSize("4mb") == 4 << 20 && DataMap.parseSize("1GB") == 1 << 30 && DataMap.parseSize("512B") == 512)
        #expect(DataMap.parseSize("100K", counts: true) == 100_000 && DataMap.parseSize("2M", counts: true) == 2_000_000)
        #expect(DataMap.parseSize("100K") == nil && DataMap.parseSize("2MB", counts: true) == nil, "K/M are counts, KB/MB bytes")
        #expect(DataMap.parseSize("10000000000GB") == nil && DataMap.parseSize("lots") == nil && DataMap.parseSize("KB") == nil)
        #expect(throws: PolyglotError.self) { try MemoryEngine(spec: EngineSpec(name: "c", kind: "memory", options: ["maxBytes": "10000000000GB"])) }
    }

    static func error(_ yaml: String) -> PolyglotError? {
        do {
            try DataMap(yaml: yaml).validate(registry: .builtIn)
            return nil
        } catch { return error as? PolyglotError }
    }

    @Test(arguments: [
        ("engines: [oops", "not valid YAML"),
        ("- just a list", "must be a YAML mapping"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: keyValue, engine: nowhere }", "'nowhere', which is not declared"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  d: { model: documents, engine: p }", "cannot hold documents"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: keyValue, engine: p, ttl: 0s }", "not positive"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: keyValue, engine: p, ttl: -5m }", "not positive"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: keyValue, engine: p, ttl: soon }", "not a duration"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  v: { model: vectors, engine: p }", "no `dimension:`"),
        ("engines:\n  p: { kind: memory }\n  p: { kind: memory }", "duplicated key"),
        ("engines:\n  p: { kind: cassandra }", "no registered engine provides"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: graphs, engine: p }", "Use one of"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: keyValue, engine: p, colour: red }", "unknown setting 'colour'"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { engine: p }", "has no `model:`"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  \"bad\\\"name\": { model: keyValue, engine: p }", "cannot use as a table"),
        ("engines:\n  p: { kind: memory }\ndatasets:\n  a__b: { model: keyValue, engine: p }", "cannot use as a table"),
        // Too long to convert to the engines' nanoseconds without overflow (a trap at first use, before the cap).
        ("engines:\n  p: { kind: memory }\ndatasets:\n  s: { model: keyValue, engine: p, ttl: 1000000000d }", "at most 100 years"),
        // ef beyond 10000 overflowed `ef + 1` / `4 * ef` at the first query (efSearch: Int.max).
        ("engines:\n  p: { kind: sqlite, path: x.sqlite }\ndatasets:\n  v: { model: vectors, engine: p, dimension: 4, index: { efSearch: 9223372036854775807 } }", "ef values from 1 to 10000"),
        ("engines:\n  p: { kind: sqlite, path: x.sqlite }\ndatasets:\n  v: { model: vectors, engine: p, dimension: 4, index: { efConstruction: 20000 } }", "ef values from 1 to 10000"),
    ])
    func badMapsGiveErrorsThatNameTheProblemAndTheFix(_ yaml: String, _ expected: String) throws {
        let e = try #require(Self.error(yaml), "map should be refused: \(yaml)")
        #expect(e.description.contains(expected), "\(e.description)")
        #expect(e.description.contains("Fix:"), "\(e.description)")
    }

    @Test func everyProblemIsListedAtOnce() throws {
        let e = try #require(Self.error("engines:\n  p: { kind: memory }\ndatasets:\n  a: { model: keyValue, engine: x }\n  b: { model: keyValue, engine: p, ttl: 0s }"))
        #expect(e.message.contains("2 problems"))
    }
}

@Suite struct MemoryEngineTests {
    @Test func evictsLeastRecentlyUsedByCountAndBytes() async throws {
        let engine = try MemoryEngine(spec: EngineSpec(name: "c", kind: "memory", options: ["maxEntries": "3", "maxBytes": "1MB"]))
        for k in ["a", "b", "c"] { _ = engine.fillNow(k, CachedEntry(version: 1, data: Data(k.utf8)), ttl: .seconds(60), jitter: 0, loadStartedAt: .now) }
        _ = engine.lookupNow("a")
        _ = engine.fillNow("d", CachedEntry(version: 1, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: .now)
        #expect(engine.lookupNow("b") == nil, "b was least recently used")
        #expect(engine.lookupNow("a") != nil)
        #expect(engine.stats().evictions == 1)

        let small = try MemoryEngine(spec: EngineSpec(name: "c", kind: "memory", options: ["maxBytes": "2KB"]))
        for i in 0..<10 { _ = small.fillNow("k\(i)", CachedEntry(version: 1, data: Data(count: 500)), ttl: .seconds(60), jitter: 0, loadStartedAt: .now) }
        #expect(small.stats().bytes <= 2048 && small.stats().entries < 10)
    }

    @Test func invalidationBlocksOlderFillsAndTombstoneEvictionBlocksEarlierLoads() async throws {
        let engine = try MemoryEngine(spec: EngineSpec(name: "c", kind: "memory", options: ["maxEntries": "2"]))
        let started = ContinuousClock.now
        try await engine.invalidate("k", version: 5, ttl: .seconds(60))
        #expect(!engine.fillNow("k", CachedEntry(version: 4, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: .now))
        #expect(engine.fillNow("k", CachedEntry(version: 5, data: Data("new".utf8)), ttl: .seconds(60), jitter: 0, loadStartedAt: .now))
        try await engine.invalidate("t", version: 9, ttl: .seconds(60))
        _ = engine.fillNow("x", CachedEntry(version: 1, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: .now)
        _ = engine.fillNow("y", CachedEntry(version: 1, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: .now)
        // The tombstone for "t" was evicted; a load that began before that cannot prove it is fresh.
        #expect(!engine.fillNow("t", CachedEntry(version: 1, data: Data()), ttl: .seconds(60), jitter: 0, loadStartedAt: started))
    }

    @Test func fillsSpreadTheirExpiryByTheConfiguredJitter() throws {
        let engine = try MemoryEngine(spec: EngineSpec(name: "c", kind: "memory"))
        for i in 0..<200 { _ = engine.fillNow("k\(i)", CachedEntry(version: 1, data: Data()), ttl: .seconds(100), jitter: 0.2, loadStartedAt: .now) }
        let expiries = (0..<200).compactMap { i in engine.lru.withLock { $0.peek("k\(i)")?.expiresAt } }
        let spread = (expiries.max() ?? 0) - (expiries.min() ?? 0)
        #expect(spread > 20 && spread <= 40, "±20% of 100 s should spread expiries over up to 40 s, got \(spread)")
    }

    @Test func badOptionsAreRefused() {
        #expect(throws: PolyglotError.self) { try MemoryEngine(spec: EngineSpec(name: "c", kind: "memory", options: ["maxEntries": "lots"])) }
    }

    @Test func keyValueConformance() async throws {
        let target = ConformanceTarget(name: "memory", registry: .builtIn, engine: EngineSpec(name: "subject", kind: "memory"))
        for check in ConformanceSuite.checks(for: target) { try await check.run(on: target) }
        #expect(ConformanceSuite.checks(for: target).count == ConformanceSuite.keyValueChecks.count)
    }
}

@Suite struct TimestampTests {
    @Test func isoTextWithOffsetsFractionsOrADateAloneParsesToTheSameTimes() throws {
        #expect(Timestamp.seconds("2023-11-14T22:13:20Z") == 1_700_000_000)
        #expect(Timestamp.seconds("2023-11-14T23:13:20.250+01:00") == 1_700_000_000.25)
        #expect(Timestamp.seconds("2023-11-15") == 1_700_006_400)
        #expect(Timestamp.seconds(.number(1.7e9)) == 1.7e9)
        #expect(Timestamp.seconds("9999-12-31T23:59:59Z") == 253_402_300_799)
        #expect(Timestamp.text(seconds: 1_700_000_000.25) == "2023-11-14T22:13:20.250Z")
        #expect(Timestamp.seconds("2023-11-14T17:43:20.25-0430") == 1_700_000_000.25)
        // Proleptic Gregorian, as PostgreSQL (`extract(epoch from '0001-01-01T00:00:00Z'::timestamptz)`) and SQLite count.
        #expect(Timestamp.seconds("0001-01-01T00:00:00Z") == -62_135_596_800)
        #expect(Timestamp.seconds("1970-01-01") == 0 && Timestamp.seconds("1969-12-31T23:59:59Z") == -1)
        for text in ["0001-01-01T00:00:00.000Z", "1582-10-04T00:00:00.000Z", "1900-02-28T23:59:59.999Z", "2000-02-29T12:34:56.789Z",
                     "2024-12-31T00:00:00.000Z", "9999-12-31T23:59:59.999Z"] {
            let seconds = try #require(Timestamp.seconds(.string(text)), "\(text)")
            #expect(Timestamp.text(seconds: seconds) == text)
        }
    }

    /// Text that is not exactly a date, or a date and time with its zone, is refused: never read as a nearby time
    /// (a parser that stops early read `2023-11-15T10:30:00`, zone-less, as that day's midnight).
    @Test(arguments: ["yesterday", "", "2023-13-01", "14/11/2023", "1700000000", "nan", "2023-11-15T10:30:00", "2023-11-15 10:30:00Z",
                      "2023-11-15T10:30Z", "2023-11-15T25:00:00Z", "2023-11-15junk", "2023-11-15T10:30:00Zjunk", "2023-02-30",
                      "2023-02-29", "2023-11-15T10:30:00+25:00", "2023-11-15T10:30:60Z", "2023-11-15T10:30:00.Z", " 2023-11-15"])
    func textThatIsNotAnISOTimeIsRefused(_ text: String) {
        #expect(Timestamp.seconds(.string(text)) == nil)
    }

    @Test func numbersOutsideTheYears1To9999AreRefused() {
        for n in [1.7e12, -1e12, .infinity, .nan] { #expect(Timestamp.seconds(.number(n)) == nil, "\(n)") }
        #expect(Timestamp.seconds(.number(Date.distantPast.timeIntervalSince1970)) != nil, "Date.distantPast works as a bound")
        #expect(Timestamp.seconds(.bool(true)) == nil)
    }
}
