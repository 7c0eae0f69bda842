import Dispatch
import Polyglot
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A small SplitMix64 whose state can be saved, so levels stay deterministic across save/load.
struct LevelRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    mutating func unit() -> Double { Double((next() >> 11) &+ 1) / 9_007_199_254_740_992.0 }
}

/// The graph and its storage. Not thread-safe by itself: `HNSWIndex` guards it with a reader-writer lock.
///
/// Layout (all raw memory, no ARC on the hot path):
/// - `level0`: one block per node, `nodeStride` bytes, 64-byte aligned:
///   `[paddedDimension floats: the row][Int32 count][2*M Int32 neighbours]`. The row comes first so it
///   starts on a cache line; the layer-0 links sit right after it, so expanding a node whose distance was
///   just computed touches warm memory.
/// - `upper[node]`: for nodes above layer 0, `level * (1 + M)` Int32s: `[count][M neighbours]` per layer.
/// - `levels`, `flags` (bit 0: deleted), `norms` (the original length of cosine rows).
/// - `ids` / `nodeOf`: internal Int32 node numbers to and from the caller's String ids.
final class HNSWGraph {
    static let maxLevelCap = 30
    /// Cache lines per row touched ahead of the distance loop.
    /// At most this many cache lines of each row are touched ahead of its distance computation. Measured
    /// at 100k vectors (rows far larger than the cache): touching every line of a 128-float row is 1.4×
    /// faster than touching one; beyond 16 lines (1 KiB) the hardware prefetcher keeps up by itself.
    static let maxTouchLines = 16

    let dimension: Int
    let paddedDimension: Int
    let rowBytes: Int
    let metric: VectorMetric
    let m: Int
    let m0: Int
    let efConstruction: Int
    let levelMultiplier: Double
    var random: LevelRandom

    let linksOffset: Int
    let nodeStride: Int

    private(set) var capacity: Int
    var nodeCount: Int = 0
    var liveCount: Int = 0
    var deletedCount: Int = 0
    var entryPoint: Int32 = -1
    var maxLevel: Int = -1

    var level0: UnsafeMutableRawPointer
    var levels: UnsafeMutablePointer<Int32>
    var upper: UnsafeMutablePointer<UnsafeMutablePointer<Int32>?>
    var flags: UnsafeMutablePointer<UInt8>
    var norms: UnsafeMutablePointer<Float>
    var ids: [String] = []
    var nodeOf: [String: Int32] = [:]
    /// Bytes held by upper-layer link lists.
    var upperBytes: Int = 0

    /// Writer-only scratch (construction and repair run under the write lock).
    let buildScratch: SearchScratch

    init(dimension: Int, metric: VectorMetric, m: Int, efConstruction: Int, seed: UInt64, capacity: Int = 1024) {
        self.dimension = dimension
        self.paddedDimension = (dimension + 15) / 16 * 16
        self.rowBytes = paddedDimension * 4
        self.metric = metric
        self.m = m
        self.m0 = 2 * m
        self.efConstruction = efConstruction
        self.levelMultiplier = 1.0 / log(Double(max(2, m)))
        self.random = LevelRandom(state: seed)
        self.linksOffset = rowBytes
        self.nodeStride = (rowBytes + 4 * (1 + 2 * m) + 63) / 64 * 64
        self.capacity = max(16, capacity)
        level0 = UnsafeMutableRawPointer.allocate(byteCount: self.capacity * nodeStride, alignment: 64)
        levels = .allocate(capacity: self.capacity)
        upper = .allocate(capacity: self.capacity)
        flags = .allocate(capacity: self.capacity)
        norms = .allocate(capacity: self.capacity)
        buildScratch = SearchScratch(nodes: self.capacity, paddedDimension: paddedDimension)
    }

    deinit {
        for i in 0..<nodeCount { upper[i]?.deallocate() }
        level0.deallocate()
        levels.deallocate()
        upper.deallocate()
        flags.deallocate()
        norms.deallocate()
    }

    // MARK: storage

    @inline(__always) func row(_ node: Int32) -> UnsafeMutableRawPointer {
        level0 + Int(node) &* nodeStride
    }

    @inline(__always) func links0(_ node: Int32) -> UnsafeMutablePointer<Int32> {
        (level0 + (Int(node) &* nodeStride &+ linksOffset)).assumingMemoryBound(to: Int32.self)
    }

    @inline(__always) func links(_ node: Int32, layer: Int) -> UnsafeMutablePointer<Int32> {
        if layer == 0 { return links0(node) }
        return upper[Int(node)].unsafelyUnwrapped + (layer &- 1) &* (m &+ 1)
    }

    @inline(__always) func isDeleted(_ node: Int32) -> Bool { flags[Int(node)] & 1 != 0 }

    @inline(__always) func maxNeighbours(_ layer: Int) -> Int { layer == 0 ? m0 : m }

    func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        let newCapacity = max(needed, capacity * 2)
        let newLevel0 = UnsafeMutableRawPointer.allocate(byteCount: newCapacity * nodeStride, alignment: 64)
        newLevel0.copyMemory(from: level0, byteCount: nodeCount * nodeStride)
        level0.deallocate()
        level0 = newLevel0
        func grow<T>(_ p: inout UnsafeMutablePointer<T>) {
            let q = UnsafeMutablePointer<T>.allocate(capacity: newCapacity)
            q.moveInitialize(from: p, count: nodeCount)
            p.deallocate()
            p = q
        }
        grow(&levels)
        grow(&upper)
        grow(&flags)
        grow(&norms)
        capacity = newCapacity
    }

    /// Bytes held, counted the way a profiler would: raw blocks at their capacity plus an estimate for
    /// the id strings and the id dictionary.
    var memoryFootprint: Int {
        var bytes = capacity * (nodeStride + 4 + 8 + 1 + 4)
        bytes += upperBytes
        bytes += ids.capacity * 16
        var heapStrings = 0
        for id in ids where id.utf8.count > 15 { heapStrings += 32 + id.utf8.count }
        bytes += heapStrings
        // Swift's Dictionary keeps keys and values in separate arrays at a load factor of at most 3/4.
        bytes += nodeOf.capacity * (16 + 4) + nodeOf.capacity / 8
        bytes += buildScratch.visitedCapacity * 2
        return bytes
    }

    /// Copies `vector` into `node`'s row (normalized for cosine), zero-padding the tail.
    func storeRow(_ node: Int32, _ vector: UnsafeBufferPointer<Float>) {
        let dst = row(node).assumingMemoryBound(to: Float.self)
        var norm: Float = 1
        if metric == .cosine {
            var s: Float = 0
            for x in vector { s += x * x }
            norm = s.squareRoot()
        }
        let scale: Float = (metric == .cosine && norm > 0) ? 1 / norm : 1
        for i in 0..<dimension { dst[i] = vector[i] * scale }
        for i in dimension..<paddedDimension { dst[i] = 0 }
        norms[Int(node)] = norm
    }

    /// The caller's vector back (for cosine, the stored unit row times the saved length).
    func originalVector(_ node: Int32) -> [Float] {
        let src = row(node).assumingMemoryBound(to: Float.self)
        let scale: Float = metric == .cosine ? norms[Int(node)] : 1
        return (0..<dimension).map { metric == .cosine && scale == 0 ? 0 : src[$0] * scale }
    }

    /// Writes the query into `scratch.query`, normalized for cosine and zero padded.
    func prepareQuery(_ q: UnsafeBufferPointer<Float>, into scratch: SearchScratch) {
        let dst = scratch.query
        var scale: Float = 1
        if metric == .cosine {
            var s: Float = 0
            for x in q { s += x * x }
            if s > 0 { scale = 1 / s.squareRoot() }
        }
        for i in 0..<dimension { dst[i] = q[i] * scale }
        for i in dimension..<paddedDimension { dst[i] = 0 }
    }

    /// Internal distance → the public one (consistent with `VectorMath.distance`).
    @inline(__always)
    func publicDistance(_ d: Float) -> Float {
        switch metric {
        case .l2: return max(0, d).squareRoot()
        case .cosine: return 1 + d
        case .innerProduct: return d
        }
    }

    // MARK: insertion

    func randomLevel() -> Int {
        let level = Int(-log(random.unit()) * levelMultiplier)
        return min(level, HNSWGraph.maxLevelCap)
    }

    /// Appends a node for `id` and links it into the graph. The id must not be present.
    func insert(id: String, vector: UnsafeBufferPointer<Float>) {
        reserve(nodeCount + 1)
        let node = Int32(nodeCount)
        appendUnlinked(id: id, vector: vector)
        let level = Int(levels[Int(node)])
        switch metric {
        case .l2: link(L2SquaredKernel.self, node: node, level: level, locks: NoNodeLocks(), scratch: buildScratch, global: nil)
        case .cosine, .innerProduct:
            link(NegativeDotKernel.self, node: node, level: level, locks: NoNodeLocks(), scratch: buildScratch, global: nil)
        }
    }

    /// Appends a node for `id` without linking it (the parallel build links it later). The id must not
    /// be present and `reserve` must have made room.
    func appendUnlinked(id: String, vector: UnsafeBufferPointer<Float>) {
        let node = Int32(nodeCount)
        let level = randomLevel()
        storeRow(node, vector)
        links0(node).pointee = 0
        levels[Int(node)] = Int32(level)
        flags[Int(node)] = 0
        if level > 0 {
            let n = level * (m + 1)
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            upper[Int(node)] = p
            upperBytes += n * 4
        } else {
            upper[Int(node)] = nil
        }
        nodeCount += 1
        liveCount += 1
        ids.append(id)
        nodeOf[id] = node
    }

    /// Links the appended, still unlinked nodes `first..<nodeCount` from `threads` threads.
    ///
    /// Concurrency contract (the caller holds the index's write lock, so no reader or other writer runs):
    /// rows, levels, flags, ids and counters were written before the threads start and are only read
    /// here; each node's neighbour lists (every layer) are read and written only under that node's
    /// stripe lock (a thread holds at most one); `entryPoint`/`maxLevel` are read and written under
    /// `global`, which a thread keeps for its whole insertion when its node raises the top level (so
    /// no other thread starts from an entry point that is about to change). Each thread has its own scratch.
    func linkParallel(from first: Int, threads: Int, pool: ScratchPool) {
        var start = first
        guard start < nodeCount else { return }
        if entryPoint < 0 {
            // The first node of an empty graph becomes the entry point; nothing to link it to.
            let node = Int32(start)
            entryPoint = node
            maxLevel = Int(levels[start])
            start += 1
        }
        let end = nodeCount
        guard start < end else { return }
        let workers = max(1, min(threads, end - start))
        if workers == 1 {
            for i in start..<end {
                let node = Int32(i)
                switch metric {
                case .l2: link(L2SquaredKernel.self, node: node, level: Int(levels[i]), locks: NoNodeLocks(),
                               scratch: buildScratch, global: nil)
                case .cosine, .innerProduct:
                    link(NegativeDotKernel.self, node: node, level: Int(levels[i]), locks: NoNodeLocks(),
                         scratch: buildScratch, global: nil)
                }
            }
            return
        }
        let locks = StripedNodeLocks()
        defer { locks.destroy() }
        let global = PlainMutex()
        let work = WorkCounter(next: start, end: end, chunk: 8)
        nonisolated(unsafe) let graph = self
        let nodes = nodeCount
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let scratch = pool.take(nodes: nodes)
            defer { pool.give(scratch) }
            while let range = work.take() {
                for i in range {
                    let node = Int32(i)
                    let level = Int(graph.levels[i])
                    switch graph.metric {
                    case .l2: graph.link(L2SquaredKernel.self, node: node, level: level, locks: locks,
                                         scratch: scratch, global: global)
                    case .cosine, .innerProduct:
                        graph.link(NegativeDotKernel.self, node: node, level: level, locks: locks,
                                   scratch: scratch, global: global)
                    }
                }
            }
        }
    }

    /// Tombstones `node`. It stays in the graph (it still routes searches) but never appears in results.
    func markDeleted(_ node: Int32) {
        guard !isDeleted(node) else { return }
        flags[Int(node)] |= 1
        liveCount -= 1
        deletedCount += 1
    }

    @inline(__always)
    func distance<K: DistanceKernel>(_: K.Type, _ a: Int32, _ b: Int32) -> Float {
        K.distance(row(a), row(b), bytes: rowBytes)
    }

    /// Links `node` (its row, level and empty lists already stored) into the graph. With `global` nil it
    /// is the single-writer path; otherwise see `linkParallel` for the locking.
    private func link<K: DistanceKernel, L: NodeLocking>(_ kernel: K.Type, node: Int32, level: Int, locks: L,
                                                        scratch: SearchScratch, global: PlainMutex?) {
        global?.lock()
        let topEntry = entryPoint
        let top = maxLevel
        var holdingGlobal = global != nil
        if holdingGlobal && level <= top {
            global?.unlock()
            holdingGlobal = false
        }
        defer { if holdingGlobal { global?.unlock() } }
        guard topEntry >= 0 else {
            entryPoint = node
            maxLevel = level
            return
        }
        let q = UnsafeRawPointer(row(node))
        var ep = topEntry
        var epDistance = K.distance(q, row(ep), bytes: rowBytes)
        if level < top {
            for layer in stride(from: top, to: level, by: -1) {
                greedy(kernel, query: q, entry: &ep, entryDistance: &epDistance, layer: layer, locks: locks)
            }
        }
        for layer in stride(from: min(level, top), through: 0, by: -1) {
            searchLayer(kernel, query: q, entry: ep, entryDistance: epDistance, ef: efConstruction,
                        layer: layer, scratch: scratch, skipDeleted: true, filter: nil, locks: locks)
            scratch.results.drainAscending(into: &scratch.sorted)
            // The node itself can never be in the results: no list holds it before this loop adds it.
            if scratch.sorted.isEmpty { continue }
            selectNeighbours(kernel, candidates: scratch.sorted, max: m, into: &scratch.selected)
            let own = links(node, layer: layer)
            locks.lock(node)
            own.pointee = Int32(scratch.selected.count)
            for (i, c) in scratch.selected.enumerated() { own[i + 1] = c.node }
            locks.unlock(node)
            for c in scratch.selected {
                addBackLink(kernel, from: c.node, to: node, layer: layer, locks: locks, scratch: scratch)
            }
            ep = scratch.sorted[0].node
            epDistance = scratch.sorted[0].distance
        }
        if level > top {
            // In the parallel build this thread still holds `global`, so `top` is still the top level.
            entryPoint = node
            maxLevel = level
        }
    }

    /// The Malkov–Yashunin heuristic (keepPrunedConnections off): keep a candidate only if it is closer
    /// to the base than to every neighbour already kept. `candidates` must be sorted closest first.
    func selectNeighbours<K: DistanceKernel>(_: K.Type, candidates: [Candidate], max limit: Int,
                                             into out: inout [Candidate]) {
        out.removeAll(keepingCapacity: true)
        if candidates.count <= limit {
            out.append(contentsOf: candidates)
            return
        }
        for c in candidates {
            if out.count >= limit { break }
            let cr = UnsafeRawPointer(row(c.node))
            var good = true
            for r in out where K.distance(cr, row(r.node), bytes: rowBytes) < c.distance {
                good = false
                break
            }
            if good { out.append(c) }
        }
    }

    private func addBackLink<K: DistanceKernel, L: NodeLocking>(_ kernel: K.Type, from: Int32, to: Int32, layer: Int,
                                                               locks: L, scratch: SearchScratch) {
        locks.lock(from)
        defer { locks.unlock(from) }
        let list = links(from, layer: layer)
        let count = Int(list.pointee)
        let cap = maxNeighbours(layer)
        for i in 0..<count where list[i + 1] == to { return }
        if count < cap {
            list[count + 1] = to
            list.pointee = Int32(count + 1)
            return
        }
        // Full: re-select among the old neighbours plus the new one.
        let base = UnsafeRawPointer(row(from))
        var candidates: [Candidate] = []
        var kept: [Candidate] = []
        swap(&candidates, &scratch.pruneCandidates)
        swap(&kept, &scratch.pruneKept)
        defer {
            swap(&candidates, &scratch.pruneCandidates)
            swap(&kept, &scratch.pruneKept)
        }
        candidates.removeAll(keepingCapacity: true)
        candidates.append(Candidate(distance: K.distance(base, row(to), bytes: rowBytes), node: to))
        for i in 0..<count {
            let n = list[i + 1]
            candidates.append(Candidate(distance: K.distance(base, row(n), bytes: rowBytes), node: n))
        }
        candidates.sort { $0.distance < $1.distance }
        selectNeighbours(kernel, candidates: candidates, max: cap, into: &kept)
        list.pointee = Int32(kept.count)
        for (i, c) in kept.enumerated() { list[i + 1] = c.node }
    }

    // MARK: search

    /// Greedy walk on one upper layer.
    @inline(__always)
    func greedy<K: DistanceKernel, L: NodeLocking>(_: K.Type, query: UnsafeRawPointer, entry: inout Int32,
                                                   entryDistance: inout Float, layer: Int, locks: L) {
        var changed = true
        while changed {
            changed = false
            let current = entry
            locks.lock(current)
            let list = links(current, layer: layer)
            let count = Int(list.pointee)
            var i = 1
            while i <= count {
                let n = list[i]
                i &+= 1
                let d = K.distance(query, row(n), bytes: rowBytes)
                if d < entryDistance {
                    entryDistance = d
                    entry = n
                    changed = true
                }
            }
            locks.unlock(current)
        }
    }

    /// Best-first search on one layer. Leaves up to `ef` admitted nodes in `scratch.results` (a max-heap).
    ///
    /// Deleted nodes (when `skipDeleted`) and nodes the filter rejects are still traversed, so they keep
    /// routing the search, but they are never admitted to the results. While fewer than `ef` nodes are
    /// admitted the search keeps going, so a selective filter widens the search by itself.
    func searchLayer<K: DistanceKernel, L: NodeLocking>(_: K.Type, query: UnsafeRawPointer, entry: Int32,
                                                        entryDistance: Float, ef: Int, layer: Int,
                                                        scratch: SearchScratch, skipDeleted: Bool,
                                                        filter: ((Int32) -> Bool)?, locks: L) {
        let tag = scratch.beginVisit(nodes: nodeCount)
        let visited = scratch.visited
        var results = scratch.results
        var frontier = scratch.frontier
        results.count = 0
        frontier.count = 0
        results.reserve(ef + 1)
        let checkAdmission = (skipDeleted && deletedCount > 0) || filter != nil
        let flags = self.flags
        let rowBytes = self.rowBytes
        let level0 = self.level0
        let nodeStride = self.nodeStride
        let batch = scratch.batch
        let touchLines = min(HNSWGraph.maxTouchLines, rowBytes / 64)
        var sink: UInt32 = 0

        @inline(__always) func admitted(_ n: Int32) -> Bool {
            if skipDeleted && flags[Int(n)] & 1 != 0 { return false }
            if let filter { return filter(n) }
            return true
        }

        var bound = Float.infinity
        if !checkAdmission || admitted(entry) {
            results.pushMax(Candidate(distance: entryDistance, node: entry))
            bound = entryDistance
        }
        frontier.pushMin(Candidate(distance: entryDistance, node: entry))
        visited[Int(entry)] = tag

        while !frontier.isEmpty {
            let current = frontier.top
            if current.distance > bound && (results.count >= ef || !checkAdmission) { break }
            frontier.popMin()
            let list: UnsafeMutablePointer<Int32>
            if layer == 0 {
                list = (level0 + (Int(current.node) &* nodeStride &+ rowBytes)).assumingMemoryBound(to: Int32.self)
            } else {
                list = links(current.node, layer: layer)
            }
            // Gather the unvisited neighbours (under the node's lock while building in parallel), start
            // loading their rows, then compute the distances.
            locks.lock(current.node)
            let count = Int(list.pointee)
            var batchCount = 0
            var i = 1
            while i <= count {
                let n = list[i]
                i &+= 1
                if visited[Int(n)] == tag { continue }
                visited[Int(n)] = tag
                batch[batchCount] = n
                batchCount &+= 1
            }
            locks.unlock(current.node)
            var j = 0
            while j < batchCount {
                sink &+= touchRow(level0 + Int(batch[j]) &* nodeStride, bytes: rowBytes, lines: touchLines)
                j &+= 1
            }
            j = 0
            while j < batchCount {
                let n = batch[j]
                j &+= 1
                let d = K.distance(query, level0 + Int(n) &* nodeStride, bytes: rowBytes)
                if results.count < ef || d < bound {
                    frontier.pushMin(Candidate(distance: d, node: n))
                    if !checkAdmission || admitted(n) {
                        results.pushMax(Candidate(distance: d, node: n))
                        if results.count > ef { results.popMax() }
                        bound = results.top.distance
                    }
                }
            }
        }
        scratch.sink &+= sink
        scratch.results = results
        scratch.frontier = frontier
    }

    /// Approximate k nearest admitted nodes, closest first, in `scratch.sorted`.
    func search<K: DistanceKernel>(_ kernel: K.Type, scratch: SearchScratch, k: Int, ef: Int,
                                   filter: ((Int32) -> Bool)?) {
        scratch.sorted.removeAll(keepingCapacity: true)
        guard entryPoint >= 0 else { return }
        let q = UnsafeRawPointer(scratch.query)
        var ep = entryPoint
        var epDistance = K.distance(q, row(ep), bytes: rowBytes)
        if maxLevel > 0 {
            for layer in stride(from: maxLevel, to: 0, by: -1) {
                greedy(kernel, query: q, entry: &ep, entryDistance: &epDistance, layer: layer, locks: NoNodeLocks())
            }
        }
        searchLayer(kernel, query: q, entry: ep, entryDistance: epDistance, ef: max(ef, k), layer: 0,
                    scratch: scratch, skipDeleted: true, filter: filter, locks: NoNodeLocks())
        while scratch.results.count > k { scratch.results.popMax() }
        scratch.results.drainAscending(into: &scratch.sorted)
    }

    /// Exact k nearest admitted nodes, closest first, in `scratch.sorted`.
    func exactSearch<K: DistanceKernel>(_: K.Type, scratch: SearchScratch, k: Int, filter: ((Int32) -> Bool)?) {
        var results = scratch.results
        results.count = 0
        results.reserve(k + 1)
        let q = UnsafeRawPointer(scratch.query)
        var bound = Float.infinity
        for i in 0..<nodeCount {
            let n = Int32(i)
            if isDeleted(n) { continue }
            if let filter, !filter(n) { continue }
            let d = K.distance(q, row(n), bytes: rowBytes)
            if results.count < k {
                results.pushMax(Candidate(distance: d, node: n))
                bound = results.top.distance
            } else if d < bound {
                results.pushMax(Candidate(distance: d, node: n))
                results.popMax()
                bound = results.top.distance
            }
        }
        scratch.results = results
        scratch.results.drainAscending(into: &scratch.sorted)
    }
}

/// Hands out consecutive chunks of node numbers to the parallel build's threads.
final class WorkCounter: @unchecked Sendable {
    private let mutex = PlainMutex()
    private var next: Int
    private let end: Int
    private let chunk: Int

    init(next: Int, end: Int, chunk: Int) {
        self.next = next
        self.end = end
        self.chunk = chunk
    }

    func take() -> Range<Int>? {
        mutex.withLock {
            guard next < end else { return nil }
            let lo = next
            next = min(end, next + chunk)
            return lo..<next
        }
    }
}
