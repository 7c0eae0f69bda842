import Polyglot
import PolyglotVectorIndex
import Testing

private func parallelIndex(_ vectors: [[Float]], metric: VectorMetric, threads: Int = 2,
                           prefix: String = "v") throws -> HNSWIndex {
    let index = try HNSWIndex(HNSWConfiguration(dimension: vectors[0].count, metric: metric, efConstruction: 100))
    try index.upsert(vectors.enumerated().map { (id: "\(prefix)\($0.offset)", vector: $0.element) }, threads: threads)
    return index
}

private func meanRecall(_ index: HNSWIndex, queries: [[Float]], k: Int = 10, ef: Int) throws -> Double {
    var total = 0.0
    for q in queries {
        total += recall(try index.search(q, k: k, ef: ef), try index.exactSearch(q, k: k))
    }
    return total / Double(queries.count)
}

@Suite("HNSW parallel batch build")
struct HNSWParallelBuildTests {
    @Test("parallel build: recall@10 >= 0.95 on seeded Gaussian data (l2)")
    func recallGaussian() throws {
        var data = TestData(seed: 1)
        let vectors = data.gaussianVectors(3000, dimension: 32)
        let queries = data.gaussianVectors(100, dimension: 32)
        let index = try parallelIndex(vectors, metric: .l2)
        #expect(index.count == 3000)
        #expect(index.deletedCount == 0)
        let r = try meanRecall(index, queries: queries, ef: 64)
        #expect(r >= 0.95, "recall \(r)")
        // Every id is stored with its own vector.
        for i in stride(from: 0, to: 3000, by: 97) { #expect(index.vector(for: "v\(i)") == vectors[i]) }
    }

    @Test("parallel build: recall@10 >= 0.95 on seeded clustered data (cosine), 4 threads on top of a serial start")
    func recallClustered() throws {
        var data = TestData(seed: 2)
        let (vectors, queries) = data.clustered(3000, queries: 100, dimension: 48, clusters: 20)
        let index = try HNSWIndex(HNSWConfiguration(dimension: 48, metric: .cosine, efConstruction: 100))
        // A non-empty graph first (serial), then the rest in parallel with more threads than cores.
        try index.upsert(vectors[0..<200].enumerated().map { (id: "v\($0.offset)", vector: $0.element) })
        try index.upsert(vectors[200...].enumerated().map { (id: "v\($0.offset + 200)", vector: $0.element) }, threads: 4)
        #expect(index.count == 3000)
        let r = try meanRecall(index, queries: queries, ef: 64)
        #expect(r >= 0.95, "recall \(r)")
    }

    @Test("parallel build replaces ids already present and keeps the last duplicate")
    func replaces() throws {
        var data = TestData(seed: 5)
        let vectors = data.gaussianVectors(1000, dimension: 16)
        let index = try parallelIndex(vectors, metric: .l2)
        let fresh = data.gaussianVectors(300, dimension: 16)
        // Replace v0..v299 with new vectors; v0 appears twice (the last one wins); v500 is unchanged.
        var batch = fresh.enumerated().map { (id: "v\($0.offset)", vector: $0.element) }
        batch.insert((id: "v0", vector: vectors[999]), at: 0)
        batch.append((id: "v500", vector: vectors[500]))
        batch.append((id: "new", vector: fresh[7]))
        try index.upsert(batch, threads: 2)
        #expect(index.count == 1001)
        #expect(index.deletedCount == 300)
        #expect(index.vector(for: "v0") == fresh[0])
        #expect(index.vector(for: "v299") == fresh[299])
        #expect(index.vector(for: "v500") == vectors[500])
        for i in [0, 1, 150, 299] {
            let hits = try index.search(fresh[i], k: 2, ef: 64)
            #expect(hits.first?.distance == 0)
            #expect(hits.contains { $0.id == "v\(i)" })
        }
        // The old vectors are gone from results.
        for i in [1, 150, 299] {
            let hits = try index.exactSearch(vectors[i], k: 5)
            #expect(!hits.contains { $0.id == "v\(i)" && $0.distance == 0 })
        }
        let queries = data.gaussianVectors(50, dimension: 16)
        let r = try meanRecall(index, queries: queries, ef: 64)
        #expect(r >= 0.95, "recall \(r)")
    }

    @Test("an invalid vector in a parallel batch throws and leaves the index unchanged")
    func rejectsInvalid() throws {
        var data = TestData(seed: 6)
        let vectors = data.gaussianVectors(200, dimension: 8)
        let index = try parallelIndex(vectors, metric: .l2)
        let before = (index.count, index.deletedCount, index.memoryFootprint)
        let q = data.gaussianVectors(1, dimension: 8)[0]
        let hitsBefore = try index.search(q, k: 5)
        for bad: [Float] in [[1, 2, 3], [1, 2, 3, 4, 5, 6, 7, .nan], [.infinity, 0, 0, 0, 0, 0, 0, 0]] {
            var batch = data.gaussianVectors(50, dimension: 8).enumerated().map { (id: "n\($0.offset)", vector: $0.element) }
            batch[10] = (id: "v3", vector: bad)
            do {
                try index.upsert(batch, threads: 2)
                Issue.record("expected an error")
            } catch let e as PolyglotError {
                #expect(e.code == .invalidVector)
            }
            #expect((index.count, index.deletedCount, index.memoryFootprint) == before)
            #expect(!index.contains("n0"))
            #expect(index.vector(for: "v3") == vectors[3])
            #expect(try index.search(q, k: 5).map(\.id) == hitsBefore.map(\.id))
        }
        // Empty batches and thread counts out of range are fine.
        try index.upsert([], threads: 2)
        try index.upsert([(id: "one", vector: q)], threads: 0)
        #expect(index.count == 201)
    }

    @Test("repeated parallel builds never crash and stay consistent")
    func repeatedBuilds() throws {
        var data = TestData(seed: 7)
        let vectors = data.gaussianVectors(1500, dimension: 16)
        let queries = data.gaussianVectors(20, dimension: 16)
        for round in 0..<5 {
            let index = try parallelIndex(vectors, metric: round % 2 == 0 ? .l2 : .innerProduct, threads: 2 + round % 3)
            #expect(index.count == 1500)
            let r = try meanRecall(index, queries: queries, ef: 128)
            #expect(r >= 0.9, "round \(round): recall \(r)")
            // Stored vectors are reachable: searching for one finds it among its 10 nearest. Approximate search
            // gives no guarantee per query, so allow one miss in ten (L2 rounds; inner product is not a metric).
            if round % 2 == 0 {
                var misses = 0
                for i in stride(from: 0, to: 1500, by: 151) where !(try index.search(vectors[i], k: 10, ef: 200).contains { $0.id == "v\(i)" }) {
                    misses += 1
                }
                #expect(misses <= 1, "round \(round): \(misses) of 10 stored vectors not found")
            }
        }
    }
}
