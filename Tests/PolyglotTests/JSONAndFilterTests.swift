import Foundation
import Polyglot
import Testing

@Suite struct JSONTests {
    @Test func roundTripsEveryType() throws {
        let value: JSON = ["s": "a\"b\\c\n\t\u{1}é😀", "n": -12.5, "i": 42, "t": true, "f": false, "z": nil, "a": [1, [2, ["x": 3]]], "o": [:]]
        let text = value.text
        #expect(try JSON(parsing: text) == value)
        #expect(text.hasPrefix("{\"a\":[1,[2,{\"x\":3}]],\"f\":false"))
    }

    @Test func parsesEscapesAndSurrogates() throws {
        #expect(try JSON(parsing: #""\u00e9\ud83d\ude00\/""#) == "é😀/")
        #expect(try JSON(parsing: " [1e3, -0.5, 0] ") == [1000, -0.5, 0])
    }

    @Test(arguments: ["", "{", "{\"a\":}", "[1,]", "tru", "\"abc", "{\"a\" 1}", "01x", "[1] 2", "\"\\ud800\"", "{'a':1}", "nan"])
    func malformedInputThrowsATypedError(_ text: String) {
        #expect {
            try JSON(parsing: text)
        } throws: { error in
            guard let e = error as? PolyglotError else { return false }
            return e.code == .malformedJSON && e.message.contains("byte") && e.fix != nil
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: PolyglotError.self) { try JSON(parsing: deep) }
    }

    @Test func fieldPathsReachNestedValues() {
        let v: JSON = ["a": ["b": [10, ["c": "deep"]]]]
        #expect(v[FieldPath("a.b.1.c")] == "deep")
        #expect(v[FieldPath("a.x")] == nil)
    }
}

@Suite struct FilterTests {
    let doc: JSON = ["price": 10, "name": "red shoe", "tags": ["a"], "on": true, "none": nil]

    @Test func comparisonsFollowTheDocumentedSemantics() {
        #expect((.field("price") < 20).matches(doc))
        #expect(!(.field("price") < "20").matches(doc), "different types never compare")
        #expect((.field("price") != "10").matches(doc), "!= across types is true")
        #expect((.field("missing") == nil).matches(doc))
        #expect((.field("none") == nil).matches(doc))
        #expect(!Filter.field("none").exists.matches(doc))
        #expect((.field("missing") != 3).matches(doc))
        #expect(!(.field("missing") > 3).matches(doc))
        #expect(Filter.field("name").hasPrefix("red").matches(doc))
        #expect((.field("on") == true && .field("price").isIn([1, 10])).matches(doc))
        #expect((!(.field("price") > 100)).matches(doc))
        #expect((.field("tags.0") == "a").matches(doc))
    }

    @Test func validationRejectsBadPathsAndOperands() {
        #expect(throws: PolyglotError.self) { try (.field("a..b") == 1).validate() }
        #expect(throws: PolyglotError.self) { try (.field("a'; DROP TABLE x") == 1).validate() }
        #expect(throws: PolyglotError.self) { try (.field("a") == [1, 2]).validate() }
        #expect(throws: PolyglotError.self) { try (.field("a") < nil).validate() }
        #expect(throws: Never.self) { try (.field("address.city-name_2") == "x").validate() }
    }
}

@Suite struct HistogramTests {
    @Test func percentilesAreWithinThreePercent() {
        var h = LatencyHistogram()
        for v in 1...100_000 { h.record(nanoseconds: UInt64(v) * 100) }
        for p in [50.0, 95, 99] {
            let exact = p / 100 * 100_000 * 100
            let got = Double(h.percentile(p))
            #expect(abs(got - exact) / exact < 0.03, "p\(p): \(got) vs \(exact)")
        }
        #expect(h.percentile(100) == 10_000_000)
        #expect(h.totalCount == 100_000)
    }

    @Test func encodesAndMerges() throws {
        var a = LatencyHistogram(), b = LatencyHistogram()
        for v in [5, 500, 50_000] as [UInt64] { a.record(nanoseconds: v) }
        for v in [7, 700_000_000] as [UInt64] { b.record(nanoseconds: v) }
        let decoded = try #require(LatencyHistogram(encoded: a.encoded()))
        #expect(decoded == a)
        a.merge(b)
        #expect(a.totalCount == 5 && a.maxValue == 700_000_000 && a.minValue == 5)
        #expect(LatencyHistogram(encoded: "garbage") == nil)
        // Counts whose sum overflows (a corrupt telemetry row) are refused, not a trap when the advisor reads them.
        #expect(LatencyHistogram(encoded: "v1;1;2;3.0;1:18446744073709551615,2:1") == nil)
    }
}

@Suite struct TelemetryTests {
    @Test func recordsAndDrainsIntervals() {
        let t = Telemetry()
        let key = OperationKey(dataset: "d", engine: "e", operation: "get")
        t.record(key, nanoseconds: 1000, rows: 1, bytes: 10)
        t.record(key, nanoseconds: 3000, failed: true)
        let e = t.snapshot().entry(dataset: "d", operation: "get")
        #expect(e?.stats.count == 2 && e?.stats.errors == 1 && e?.stats.bytes == 10)
        let drained = t.drainInterval()
        #expect(drained.count == 1 && drained[0].stats.count == 2)
        #expect(t.drainInterval().isEmpty, "a second drain has nothing new")
        t.restore(drained)
        #expect(t.drainInterval().first?.stats.count == 2, "restored records are flushed again")
        #expect(Telemetry.summarize(drained + drained).first?.stats.count == 4)
    }
}

@Suite struct EmbedderTests {
    @Test func sharedWordsAreCloser() {
        let e = HashingEmbedder(dimension: 64)
        let a = e.embed("red running shoe"), b = e.embed("Red trail shoe"), c = e.embed("woollen winter hat")
        #expect(VectorMath.distance(a, b, metric: .cosine) < VectorMath.distance(a, c, metric: .cosine))
        #expect(abs(a.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
        #expect(e.embed("Shoe") == e.embed("shoe"))
    }
}
