import Polyglot
import PolyglotVectorIndex
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func makeIndex(_ vectors: [[Float]], metric: VectorMetric, efConstruction: Int = 100, prefix: String = "v") throws -> HNSWIndex {
    let index = try HNSWIndex(HNSWConfiguration(dimension: vectors[0].count, metric: metric, efConstruction: efConstruction))
    try index.upsert(vectors.enumerated().map { (id: "\(prefix)\($0.offset)", vector: $0.element) })
    return index
}

private func meanRecall(_ index: HNSWIndex, queries: [[Float]], k: Int = 10, ef: Int? = nil,
                        filter: (@Sendable (String) -> Bool)? = nil) throws -> Double {
    var total = 0.0
    for q in queries {
        let approx = try index.search(q, k: k, ef: ef, filter: filter)
        let exact = try index.exactSearch(q, k: k, filter: filter)
        total += recall(approx, exact)
    }
    return total / Double(queries.count)
}

private func temporaryPath(_ name: String) -> String {
    "/tmp/polyglot-hnsw-tests-\(getpid())-\(name).hnsw"
}

@Suite("HNSW index")
struct HNSWIndexTests {
    @Test("recall@10 >= 0.95 on seeded Gaussian data (l2)")
    func recallGaussian() throws {
        var data = TestData(seed: 1)
        let vectors = data.gaussianVectors(3000, dimension: 32)
        let queries = data.gaussianVectors(100, dimension: 32)
        let index = try makeIndex(vectors, metric: .l2)
        #expect(index.count == 3000)
        let r = try meanRecall(index, queries: queries, ef: 64)
        #expect(r >= 0.95, "recall \(r)")
    }

    @Test("recall@10 >= 0.95 on seeded clustered data (cosine)")
    func recallClustered() throws {
        var data = TestData(seed: 2)
        let (vectors, queries) = data.clustered(3000, queries: 100, dimension: 48, clusters: 20)
        let index = try makeIndex(vectors, metric: .cosine)
        let r = try meanRecall(index, queries: queries, ef: 64)
        #expect(r >= 0.95, "recall \(r)")
    }

    @Test("recall@10 >= 0.95 with inner product")
    func recallInnerProduct() throws {
        var data = TestData(seed: 3)
        let vectors = data.gaussianVectors(2000, dimension: 32)
        let queries = data.gaussianVectors(50, dimension: 32)
        let index = try makeIndex(vectors, metric: .innerProduct)
        let r = try meanRecall(index, queries: queries, ef: 128)
        #expect(r >= 0.95, "recall \(r)")
    }

    @Test("distances match VectorMath.distance for every metric", arguments: VectorMetric.allCases)
    func distancesMatchCore(metric: VectorMetric) throws {
        var data = TestData(seed: 4)
        let vectors = data.gaussianVectors(300, dimension: 19)
        let index = try makeIndex(vectors, metric: metric)
        let q = data.gaussianVectors(1, dimension: 19)[0]
        let hits = try index.exactSearch(q, k: 5)
        #expect(hits.count == 5)
        for hit in hits {
            let i = Int(hit.id.dropFirst())!
            let expected = VectorMath.distance(q, vectors[i], metric: metric)
            #expect(abs(hit.distance - expected) <= 1e-4 * max(1, abs(expected)), "\(hit.distance) vs \(expected)")
        }
        #expect(zip(hits, hits.dropFirst()).allSatisfy { $0.distance <= $1.distance })
        let approx = try index.search(q, k: 5, ef: 100)
        #expect(approx.map(\.id) == hits.map(\.id))
    }

    @Test("persistence round trip gives identical results")
    func persistenceRoundTrip() throws {
        var data = TestData(seed: 5)
        let vectors = data.gaussianVectors(2000, dimension: 40)
        let queries = data.gaussianVectors(30, dimension: 40)
        let index = try makeIndex(vectors, metric: .cosine)
        index.delete("v7")
        try index.upsert("v8", vectors[9])
        let path = temporaryPath("roundtrip")
        defer { unlink(path) }
        try index.save(to: path)
        let loaded = try HNSWIndex.load(from: path)
        #expect(loaded.configuration == index.configuration)
        #expect(loaded.count == index.count)
        #expect(loaded.deletedCount == index.deletedCount)
        #expect(!loaded.contains("v7"))
        #expect(loaded.vector(for: "v8") == index.vector(for: "v8"))
        for q in queries {
            let a = try index.search(q, k: 10)
            let b = try loaded.search(q, k: 10)
            #expect(a.map(\.id) == b.map(\.id))
            #expect(a.map(\.distance) == b.map(\.distance))
        }
        // The loaded index keeps working, and deterministically: same inserts, same results.
        let extra = data.gaussianVectors(50, dimension: 40)
        for (i, v) in extra.enumerated() {
            try index.upsert("x\(i)", v)
            try loaded.upsert("x\(i)", v)
        }
        for q in queries.prefix(5) {
            #expect(try index.search(q, k: 10).map(\.id) == loaded.search(q, k: 10).map(\.id))
        }
    }

    @Test("an empty index saves and loads")
    func emptyRoundTrip() throws {
        let index = try HNSWIndex(HNSWConfiguration(dimension: 8, metric: .l2))
        let path = temporaryPath("empty")
        defer { unlink(path) }
        try index.save(to: path)
        let loaded = try HNSWIndex.load(from: path)
        #expect(loaded.count == 0)
        #expect(try loaded.search([Float](repeating: 0, count: 8), k: 3).isEmpty)
        try loaded.upsert("a", [Float](repeating: 1, count: 8))
        #expect(try loaded.search([Float](repeating: 1, count: 8), k: 3).map(\.id) == ["a"])
    }

    @Test("corrupt, truncated and foreign files give a clear error")
    func corruptFiles() throws {
        var data = TestData(seed: 6)
        let index = try makeIndex(data.gaussianVectors(300, dimension: 16), metric: .l2)
        let path = temporaryPath("good")
        defer { unlink(path) }
        try index.save(to: path)
        let good = try readFile(path)
        #expect(good.count > 128)

        func expectFailure(_ bytes: [UInt8], _ name: String, code: PolyglotError.Code? = nil, mentions: String) throws {
            let p = temporaryPath(name)
            defer { unlink(p) }
            try writeFile(p, bytes)
            do {
                _ = try HNSWIndex.load(from: p)
                Issue.record("loading \(name) should fail")
            } catch let error as PolyglotError {
                #expect(error.code == .engineFailure || error.code == .invalidArgument)
                if let code { #expect(error.code == code) }
                #expect(error.message.contains(mentions), "\(error.message)")
                #expect(error.fix != nil)
            }
        }
        // Flipped bytes: in the vectors, in the links, in the ids, in the header.
        for offset in [200, good.count / 2, good.count - 3, 20, 60] {
            var flipped = good
            flipped[offset] ^= 0x5A
            try expectFailure(flipped, "flip\(offset)", mentions: "")
        }
        try expectFailure(Array(good.prefix(good.count - 1)), "truncated1", code: .engineFailure, mentions: "truncated")
        try expectFailure(Array(good.prefix(good.count / 2)), "truncated2", code: .engineFailure, mentions: "truncated")
        try expectFailure(Array(good.prefix(50)), "truncated3", code: .engineFailure, mentions: "truncated")
        try expectFailure([], "empty", code: .engineFailure, mentions: "truncated")
        var rng = SeededRandom(seed: 9)
        try expectFailure((0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, "random", code: .invalidArgument,
                          mentions: "not a Polyglot HNSW index")
        var wrongMagic = good
        wrongMagic[0] = UInt8(ascii: "X")
        try expectFailure(wrongMagic, "magic", code: .invalidArgument, mentions: "magic")
        var newer = good
        newer[8] = 99
        try expectFailure(newer, "version", code: .invalidArgument, mentions: "version")
        try expectFailure(good + [0, 1, 2], "trailing", code: .engineFailure, mentions: "unexpected bytes")

        do {
            _ = try HNSWIndex.load(from: temporaryPath("does-not-exist"))
            Issue.record("loading a missing file should fail")
        } catch let error as PolyglotError {
            #expect(error.code == .engineFailure)
        }
        // The original still loads.
        #expect(try HNSWIndex.load(from: path).count == 300)
    }

    @Test("deleted ids never come back: in search, after save/load and after compact")
    func deletes() throws {
        var data = TestData(seed: 7)
        let vectors = data.gaussianVectors(2000, dimension: 32)
        let index = try makeIndex(vectors, metric: .l2)
        var deleted = Set<String>()
        for i in stride(from: 0, to: 2000, by: 5) {
            #expect(index.delete("v\(i)"))
            deleted.insert("v\(i)")
        }
        #expect(!index.delete("v0"))
        #expect(!index.delete("nope"))
        #expect(index.count == 1600)
        #expect(!index.contains("v0") && index.vector(for: "v0") == nil)

        func check(_ idx: HNSWIndex) throws {
            // Query exactly at deleted vectors: their own ids would be the best hits.
            for i in stride(from: 0, to: 2000, by: 50) {
                let hits = try idx.search(vectors[i], k: 10)
                #expect(hits.count == 10)
                #expect(hits.allSatisfy { !deleted.contains($0.id) })
                #expect(try idx.exactSearch(vectors[i], k: 10).allSatisfy { !deleted.contains($0.id) })
                #expect(try idx.search(vectors[i], k: 10, filter: { _ in true }).allSatisfy { !deleted.contains($0.id) })
            }
        }
        try check(index)
        let path = temporaryPath("deletes")
        defer { unlink(path) }
        try index.save(to: path)
        let loaded = try HNSWIndex.load(from: path)
        #expect(loaded.count == 1600)
        try check(loaded)
        try index.compact()
        #expect(index.count == 1600)
        #expect(index.deletedCount == 0)
        try check(index)
        let r = try meanRecall(index, queries: data.gaussianVectors(30, dimension: 32))
        #expect(r >= 0.95, "recall after compact \(r)")
        // Deleting everything leaves an index that answers with nothing.
        for i in 0..<2000 { index.delete("v\(i)") }
        #expect(index.count == 0)
        #expect(try index.search(vectors[1], k: 10).isEmpty)
    }

    @Test("upsert replaces the old vector")
    func upsertReplaces() throws {
        var data = TestData(seed: 8)
        let vectors = data.gaussianVectors(1000, dimension: 24)
        let index = try makeIndex(vectors, metric: .l2)
        let replacement = data.gaussianVectors(1, dimension: 24)[0]
        try index.upsert("v3", replacement)
        #expect(index.count == 1000)
        #expect(index.vector(for: "v3") == replacement)
        let atNew = try index.search(replacement, k: 1)
        #expect(atNew.first?.id == "v3")
        #expect((atNew.first?.distance ?? 1) < 1e-5)
        // Near the old vector, v3 (if returned at all) has its new distance, never 0.
        let atOld = try index.search(vectors[3], k: 10)
        #expect(atOld.allSatisfy { $0.id != "v3" || $0.distance > 1e-3 })
        #expect(try index.exactSearch(vectors[3], k: 1000).filter { $0.id == "v3" }.count == 1)
        // Cosine keeps the caller's vector (up to rounding), not the unit one.
        let cosine = try HNSWIndex(HNSWConfiguration(dimension: 3, metric: .cosine))
        try cosine.upsert("a", [3, 4, 0])
        let back = cosine.vector(for: "a") ?? []
        #expect(back.count == 3 && abs(back[0] - 3) < 1e-5 && abs(back[1] - 4) < 1e-5)
    }

    @Test("wrong dimension, NaN and infinite vectors are rejected; the index is unchanged")
    func rejectsInvalid() throws {
        var data = TestData(seed: 9)
        let index = try makeIndex(data.gaussianVectors(100, dimension: 8), metric: .cosine)
        let before = try index.search([Float](repeating: 1, count: 8), k: 5)
        let bad: [[Float]] = [
            [1, 2, 3],
            [Float](repeating: 0, count: 9),
            [1, 2, 3, 4, 5, 6, 7, .nan],
            [1, 2, 3, 4, .infinity, 6, 7, 8],
            [-.infinity, 2, 3, 4, 5, 6, 7, 8],
            [],
        ]
        for v in bad {
            #expect(throws: PolyglotError.self) { try index.upsert("bad", v) }
            do { try index.upsert("v1", v) } catch let e as PolyglotError { #expect(e.code == .invalidVector) }
            #expect(throws: PolyglotError.self) { try index.search(v, k: 3) }
            #expect(throws: PolyglotError.self) { try index.exactSearch(v, k: 3) }
        }
        // A batch with one bad vector inserts nothing.
        let good = data.gaussianVectors(3, dimension: 8)
        #expect(throws: PolyglotError.self) {
            try index.upsert([(id: "n1", vector: good[0]), (id: "n2", vector: [1, .nan, 0, 0, 0, 0, 0, 0]), (id: "n3", vector: good[2])])
        }
        #expect(index.count == 100)
        #expect(!index.contains("bad") && !index.contains("n1") && !index.contains("n3"))
        #expect(try index.search([Float](repeating: 1, count: 8), k: 5).map(\.id) == before.map(\.id))
        // k and ef must be positive; configuration is checked.
        do { _ = try index.search(good[0], k: 0) } catch let e as PolyglotError { #expect(e.code == .invalidArgument) }
        do { _ = try index.search(good[0], k: 3, ef: 0) } catch let e as PolyglotError { #expect(e.code == .invalidArgument) }
        for dim in [0, 4097] {
            do {
                _ = try HNSWIndex(HNSWConfiguration(dimension: dim, metric: .l2))
                Issue.record("dimension \(dim) accepted")
            } catch let e as PolyglotError { #expect(e.code == .invalidArgument) }
        }
        #expect(throws: PolyglotError.self) { try HNSWIndex(HNSWConfiguration(dimension: 8, metric: .l2, m: 1)) }
    }

    @Test("filtered search keeps recall >= 0.9 at 10% and 1% selectivity", arguments: [10, 100])
    func filteredRecall(modulus: Int) throws {
        var data = TestData(seed: 10)
        let (vectors, queries) = data.clustered(5000, queries: 40, dimension: 32, clusters: 10)
        let index = try makeIndex(vectors, metric: .l2)
        // Selectivity 1/modulus, uncorrelated with the clusters.
        let filter: @Sendable (String) -> Bool = { id in (Int(id.dropFirst()) ?? 0) * 7919 % modulus == 3 }
        var total = 0.0
        for q in queries {
            let approx = try index.search(q, k: 10, filter: filter)
            #expect(approx.allSatisfy { filter($0.id) })
            total += recall(approx, try index.exactSearch(q, k: 10, filter: filter))
        }
        let r = total / Double(queries.count)
        #expect(r >= 0.9, "filtered recall \(r) at 1/\(modulus)")
        // A filter nothing passes returns nothing.
        #expect(try index.search(queries[0], k: 10, filter: { _ in false }).isEmpty)
    }

    @Test("readers run concurrently with a writer")
    func concurrentReadersAndWriter() async throws {
        var data = TestData(seed: 11)
        let initial = data.gaussianVectors(1000, dimension: 16)
        let more = data.gaussianVectors(1000, dimension: 16)
        let queries = data.gaussianVectors(20, dimension: 16)
        let index = try makeIndex(initial, metric: .l2)
        try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask {
                for (i, v) in more.enumerated() {
                    try index.upsert("w\(i)", v)
                    if i % 10 == 0 { index.delete("v\(i)") }
                }
                return more.count
            }
            for reader in 0..<4 {
                group.addTask {
                    var checked = 0
                    for round in 0..<15 {
                        let q = queries[(reader + round) % queries.count]
                        let hits = try index.search(q, k: 10)
                        #expect(hits.count == 10)
                        #expect(zip(hits, hits.dropFirst()).allSatisfy { $0.distance <= $1.distance })
                        #expect(Set(hits.map(\.id)).count == hits.count)
                        let filtered = try index.search(q, k: 5, filter: { $0.hasPrefix("w") })
                        #expect(filtered.allSatisfy { $0.id.hasPrefix("w") })
                        _ = index.vector(for: "v\(round)")
                        checked += 1
                    }
                    return checked
                }
            }
            var total = 0
            for try await n in group { total += n }
            #expect(total == 1000 + 4 * 15)
        }
        #expect(index.count == 2000 - 100)
        let r = try meanRecall(index, queries: queries)
        #expect(r >= 0.95, "recall after concurrent writes \(r)")
    }

    @Test("memory footprint is positive and reasonable")
    func memoryFootprint() throws {
        var data = TestData(seed: 12)
        let index = try makeIndex(data.gaussianVectors(2000, dimension: 64), metric: .l2)
        let bytes = index.memoryFootprint
        #expect(bytes > 2000 * 64 * 4)
        let perVector = index.bytesPerVector
        // The row (256 bytes), 33 layer-0 links (132 bytes), padding, ids, upper layers, capacity slack.
        #expect(perVector > 256 && perVector < 2 * (256 + 132 + 64 + 100), "\(perVector) bytes per vector")
    }

    @Test("tiny and empty indexes")
    func tiny() throws {
        let index = try HNSWIndex(HNSWConfiguration(dimension: 2, metric: .l2))
        #expect(try index.search([0, 0], k: 5).isEmpty)
        try index.upsert("a", [0, 0])
        try index.upsert("b", [1, 0])
        try index.upsert("c", [5, 5])
        let hits = try index.search([0.9, 0], k: 5)
        #expect(hits.map(\.id) == ["b", "a", "c"])
        #expect(abs(hits[0].distance - 0.1) < 1e-5)
        try index.compact()
        #expect(try index.search([0.9, 0], k: 5).map(\.id) == ["b", "a", "c"])
    }
}

private func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw PolyglotError(.engineFailure, "open \(path)") }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65536) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

private func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw PolyglotError(.engineFailure, "create \(path)") }
    defer { close(fd) }
    if !bytes.isEmpty { _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, bytes.count) } }
}
