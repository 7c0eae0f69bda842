import Foundation
import Polyglot

extension ConformanceSuite {
    static func docs(_ fields: [FieldSpec] = []) -> @Sendable () -> [DatasetSpec] {
        { [DatasetSpec(name: "items", model: .documents, engine: "subject", fields: fields)] }
    }

    /// A fixed sample exercising every JSON type, missing fields and nesting.
    static let sample: [(String, JSON)] = [
        ("a", ["n": 1, "s": "apple", "b": true, "tags": ["x", "y"], "nested": ["k": 10]]),
        ("b", ["n": 2.5, "s": "banana", "b": false, "nested": ["k": 20]]),
        ("c", ["n": -3, "s": "cherry", "nested": ["k": nil]]),
        ("d", ["n": "7", "s": "apricot", "b": true]),
        ("e", ["s": "Apple", "n": nil]),
        ("f", ["n": 100, "s": "", "b": false, "extra": 1]),
    ]

    static let sampleFilters: [Filter] = [
        .all,
        .field("n") == 1, .field("n") != 1, .field("n") < 2, .field("n") <= 2.5, .field("n") > 0, .field("n") >= 100,
        .field("n") == "7", .field("s") > "b", .field("s") < "apricot", .field("b") == true, .field("b") != true,
        .field("n") == nil, .field("n") != nil, .field("missing") == nil, .field("missing") != 3,
        .field("s").isIn(["apple", "cherry", "nope"]), .field("n").isIn([1, "7"]), .field("n").isIn([]),
        .field("b").exists, .field("nested.k").exists, .field("nested.k") >= 20,
        .field("s").hasPrefix("ap"), .field("s").hasPrefix(""), .field("n").hasPrefix("7"),
        .field("n") > 0 && .field("b") == true, .field("n") < 0 || .field("s") == "banana",
        !(.field("n") > 1), !(.field("missing") == 1), .not(.and([])), .or([]),
        .field("tags.0") == "x",
    ]

    public static let documentChecks: [ConformanceCheck] = [
        ConformanceCheck(.documents, "put then get returns the same JSON and increasing versions", datasets: docs()) { db in
            let items = try db.documents("items")
            let t1 = try await items.put("a", ["name": "first", "n": 1, "nested": ["x": [1, 2, nil]], "u": "ünïcødé ✓ \"q\""])
            let doc = try await items.get("a")
            try expect(doc != nil, "get after put returned nil")
            let body = try doc!.json()
            try expect(body == ["name": "first", "n": 1, "nested": ["x": [1, 2, nil]], "u": "ünïcødé ✓ \"q\""], "round trip changed the document: \(body)")
            try expect(doc!.version == t1.position, "document version \(doc!.version) is not the put's token \(t1)")
            let t2 = try await items.put("a", ["name": "second"])
            try expect(t2 > t1, "second write's token \(t2) is not after \(t1)")
            try expect(try await items.get("a")?.json() == ["name": "second"], "put did not replace the document")
            try expect(try await items.get("zzz") == nil, "get of a missing id returned a document")
        },
        ConformanceCheck(.documents, "delete removes and reports absence", datasets: docs()) { db in
            let items = try db.documents("items")
            let t1 = try await items.put("a", ["v": 1])
            let t2 = try await items.delete("a")
            try expect(t2 != nil && t2! > t1, "delete of an existing id must return a later token")
            try expect(try await items.get("a") == nil, "deleted document still readable")
            try expect(try await items.delete("a") == nil, "delete of a missing id must return nil")
            try expect(try await items.count() == 0, "count after delete is not 0")
        },
        ConformanceCheck(.documents, "query filters agree with the reference semantics of Filter.matches", datasets: docs()) { db in
            let items = try db.documents("items")
            try await items.putMany(sample)
            for filter in sampleFilters {
                let expected = Set(sample.filter { filter.matches($0.1) }.map(\.0))
                let got = Set(try await items.query(filter).map(\.id))
                try expect(got == expected, "filter \(filter): engine returned \(got.sorted()), expected \(expected.sorted())")
                let n = try await items.count(filter)
                try expect(n == expected.count, "count(\(filter)) = \(n), expected \(expected.count)")
            }
        },
        ConformanceCheck(.documents, "sort, limit and offset", datasets: docs()) { db in
            let items = try db.documents("items")
            var batch: [(id: String, body: JSON)] = []
            for i in 0..<20 {
                let body: JSON = .object(["rank": .number(Double((i * 7) % 20)), "group": .string(i % 2 == 0 ? "even" : "odd")])
                batch.append(("k\(i)", body))
            }
            try await items.putMany(batch)
            let top = try await items.query(.field("group") == "even", sort: [.descending("rank")], limit: 3)
            let ranks = try top.map { try $0.json()["rank"]?.intValue ?? -1 }
            try expect(ranks == [18, 16, 14], "descending sort with limit gave \(ranks)")
            let page2 = try await items.query(sort: [.ascending("rank")], limit: 5, offset: 5)
            let r2 = try page2.map { try $0.json()["rank"]?.intValue ?? -1 }
            try expect(r2 == [5, 6, 7, 8, 9], "offset paging gave \(r2)")
            try expect(try await items.query(limit: 0).isEmpty, "limit 0 should return nothing")
        },
        ConformanceCheck(.documents, "keyset paging with after: visits every document once, whatever is deleted meanwhile", datasets: docs()) { db in
            let items = try db.documents("items")
            try await items.putMany((0..<25).map { (id: "d\(100 + $0)", body: .object(["n": .number(Double($0))])) })
            var seen: [String] = []
            var after: String?
            while true {
                let page = try await items.query(.field("n") >= 0, limit: 4, after: after)
                if page.isEmpty { break }
                seen += page.map(\.id)
                after = page.last?.id
                // Deleting what was already read would shift an offset page; it cannot shift a keyset page.
                if seen.count == 8 { for id in seen.prefix(4) { _ = try await items.delete(id) } }
            }
            try expect(seen == (0..<25).map { "d\(100 + $0)" }, "keyset pages gave \(seen)")
            try await expectError(.invalidArgument, "after: with sort keys") { _ = try await items.query(sort: [.ascending("n")], after: "d100") }
        },
        ConformanceCheck(.documents, "get many returns the existing ids", datasets: docs()) { db in
            let items = try db.documents("items")
            try await items.putMany([("a", ["v": 1]), ("b", ["v": 2]), ("c", ["v": 3])])
            let got = Set(try await items.get(["a", "c", "nope"]).map(\.id))
            try expect(got == ["a", "c"], "get([a, c, nope]) returned \(got.sorted())")
        },
        ConformanceCheck(.documents, "declared fields are type-checked on write and in filters", datasets: docs([FieldSpec("price", .number), FieldSpec("sku", .string, nullable: false)])) { db in
            let items = try db.documents("items")
            try await items.put("a", ["price": 10, "sku": "A-1"])
            try await expectError(.invalidArgument, "a string in a number field") { try await items.put("b", ["price": "ten", "sku": "B"]) }
            try await expectError(.invalidArgument, "a missing required field") { try await items.put("c", ["price": 1]) }
            try await expectError(.invalidFilter, "a filter comparing a number field with a string") { _ = try await items.query(.field("price") < "cheap") }
            try await expectError(.invalidFilter, "a filter on an undeclared field") { _ = try await items.query(.field("colour") == "red") }
            try expect(try await items.query(.field("price") < 20).map(\.id) == ["a"], "typed query on a declared field failed")
            try expect(try await items.count() == 1, "a refused write left a document behind")
        },
        ConformanceCheck(.documents, "bad input: malformed JSON, non-object, oversized, empty batch", datasets: {
            [DatasetSpec(name: "items", model: .documents, engine: "subject", maxKeyBytes: 16, maxValueBytes: 64)]
        }) { db in
            let items = try db.documents("items")
            try await expectError(.malformedJSON, "malformed JSON") { try await items.put("a", json: Data("{\"a\": 1,".utf8)) }
            try await expectError(.invalidArgument, "a JSON array as a document") { try await items.put("a", [1, 2]) }
            try await expectError(.limitExceeded, "an id over maxKeyBytes") { try await items.put(String(repeating: "k", count: 17), ["v": 1]) }
            try await expectError(.limitExceeded, "a value over maxValueBytes") { try await items.put("a", ["v": .string(String(repeating: "x", count: 100))]) }
            try await expectError(.invalidArgument, "an empty id") { try await items.put("", ["v": 1]) }
            try await expectError(.invalidArgument, "an empty batch") { try await items.putMany([]) }
            try await expectError(.limitExceeded, "one oversized document in a batch") {
                try await items.putMany([("ok", ["v": 1]), ("big", ["v": .string(String(repeating: "x", count: 100))])])
            }
            let left = try await items.count()
            try expect(left == 0, "refused writes left \(left) documents behind")
        },
    ]

    public static let transactionChecks: [ConformanceCheck] = [
        ConformanceCheck(.transactions, "a transaction commits all writes together, and a failure rolls all back", datasets: {
            [DatasetSpec(name: "items", model: .documents, engine: "subject"), DatasetSpec(name: "kv", model: .keyValue, engine: "subject")]
        }) { db in
            struct Boom: Error {}
            try await db.transaction(on: "subject") {
                try await db.documents("items").put("a", ["v": 1])
                try await db.keyValue("kv").set("k", "v")
            }
            let committedDoc = try await db.documents("items").get("a")
            let committedKey = try await db.keyValue("kv").getString("k")
            try expect(committedDoc != nil && committedKey == "v", "committed writes are missing")
            do {
                try await db.transaction(on: "subject") {
                    try await db.documents("items").put("b", ["v": 2])
                    try await db.documents("items").delete("a")
                    try await db.keyValue("kv").set("k", "changed")
                    throw Boom()
                }
                throw ConformanceFailure(description: "the transaction body's error was swallowed")
            } catch is Boom {}
            try expect(try await db.documents("items").get("b") == nil, "a rolled-back put is visible")
            try expect(try await db.documents("items").get("a") != nil, "a rolled-back delete took effect")
            try expect(try await db.keyValue("kv").getString("k") == "v", "a rolled-back set took effect")
        },
    ]
}
