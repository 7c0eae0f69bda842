/// One candidate: an internal node number and its internal distance to the query.
struct Candidate {
    var distance: Float
    var node: Int32
}

/// A binary heap of `Candidate`s on a raw, growable buffer: no ARC, no bounds checks, no allocation
/// once warmed up. `isMax` picks a max-heap (the current results, worst on top) or a min-heap (the
/// frontier, best on top). It does not own its memory; `SearchScratch` does.
struct CandidateHeap {
    var base: UnsafeMutablePointer<Candidate>
    var count: Int = 0
    var capacity: Int

    init(capacity: Int) {
        self.capacity = max(16, capacity)
        base = .allocate(capacity: self.capacity)
    }

    func free() { base.deallocate() }

    @inline(__always) var isEmpty: Bool { count == 0 }
    @inline(__always) var top: Candidate { base[0] }

    @inline(__always)
    mutating func reserve(_ n: Int) {
        if n > capacity { grow(to: n) }
    }

    @inline(never)
    mutating func grow(to n: Int) {
        let newCapacity = max(n, capacity &* 2)
        let newBase = UnsafeMutablePointer<Candidate>.allocate(capacity: newCapacity)
        newBase.moveInitialize(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    // MARK: max-heap (largest distance on top)

    @inline(__always)
    mutating func pushMax(_ c: Candidate) {
        if count == capacity { grow(to: count &+ 1) }
        var i = count
        count &+= 1
        while i > 0 {
            let parent = (i &- 1) >> 1
            let p = base[parent]
            if p.distance >= c.distance { break }
            base[i] = p
            i = parent
        }
        base[i] = c
    }

    @inline(__always)
    mutating func popMax() {
        count &-= 1
        if count == 0 { return }
        let last = base[count]
        var i = 0
        let n = count
        while true {
            let l = 2 &* i &+ 1
            if l >= n { break }
            let r = l &+ 1
            var child = l
            if r < n && base[r].distance > base[l].distance { child = r }
            if base[child].distance <= last.distance { break }
            base[i] = base[child]
            i = child
        }
        base[i] = last
    }

    // MARK: min-heap (smallest distance on top)

    @inline(__always)
    mutating func pushMin(_ c: Candidate) {
        if count == capacity { grow(to: count &+ 1) }
        var i = count
        count &+= 1
        while i > 0 {
            let parent = (i &- 1) >> 1
            let p = base[parent]
            if p.distance <= c.distance { break }
            base[i] = p
            i = parent
        }
        base[i] = c
    }

    @inline(__always)
    mutating func popMin() {
        count &-= 1
        if count == 0 { return }
        let last = base[count]
        var i = 0
        let n = count
        while true {
            let l = 2 &* i &+ 1
            if l >= n { break }
            let r = l &+ 1
            var child = l
            if r < n && base[r].distance < base[l].distance { child = r }
            if base[child].distance >= last.distance { break }
            base[i] = base[child]
            i = child
        }
        base[i] = last
    }

    /// Empties a max-heap into `out`, closest first.
    mutating func drainAscending(into out: inout [Candidate]) {
        out.removeAll(keepingCapacity: true)
        out.reserveCapacity(count)
        while count > 0 {
            out.append(base[0])
            popMax()
        }
        out.reverse()
    }
}

/// Per-search working memory: a visited set with a generation counter (no clearing between searches),
/// the two heaps, and an aligned, padded copy of the query. Scratches are pooled so that concurrent
/// readers each use their own without allocating.
final class SearchScratch {
    private(set) var visited: UnsafeMutablePointer<UInt16>
    private(set) var visitedCapacity: Int
    private var generation: UInt16 = 0
    var results: CandidateHeap
    var frontier: CandidateHeap
    /// Aligned to 64 bytes, `paddedDimension` floats, padding zeroed.
    let query: UnsafeMutablePointer<Float>
    let paddedDimension: Int
    /// Unvisited neighbours of the node being expanded (at most 2*M).
    let batch: UnsafeMutablePointer<Int32>
    /// Where touch-loads are folded (see `touchRow`).
    var sink: UInt32 = 0
    var sorted: [Candidate] = []
    var selected: [Candidate] = []
    /// Working lists of the neighbour re-selection when a link list overflows (construction only).
    var pruneCandidates: [Candidate] = []
    var pruneKept: [Candidate] = []

    init(nodes: Int, paddedDimension: Int) {
        visitedCapacity = max(1024, nodes)
        visited = .allocate(capacity: visitedCapacity)
        visited.initialize(repeating: 0, count: visitedCapacity)
        results = CandidateHeap(capacity: 256)
        frontier = CandidateHeap(capacity: 256)
        self.paddedDimension = paddedDimension
        query = UnsafeMutableRawPointer.allocate(byteCount: paddedDimension * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: paddedDimension)
        query.initialize(repeating: 0, count: paddedDimension)
        batch = .allocate(capacity: 2 * 256 + 1)
    }

    deinit {
        visited.deallocate()
        results.free()
        frontier.free()
        UnsafeMutableRawPointer(query).deallocate()
        batch.deallocate()
    }

    /// Starts a new visited generation sized for `nodes` nodes; returns the tag that marks "visited".
    @inline(__always)
    func beginVisit(nodes: Int) -> UInt16 {
        if nodes > visitedCapacity {
            let newCapacity = max(nodes, visitedCapacity &* 2)
            visited.deallocate()
            visited = .allocate(capacity: newCapacity)
            visited.initialize(repeating: 0, count: newCapacity)
            visitedCapacity = newCapacity
            generation = 0
        }
        generation &+= 1
        if generation == 0 {
            visited.update(repeating: 0, count: visitedCapacity)
            generation = 1
        }
        return generation
    }
}

/// A pool of scratches for concurrent readers.
final class ScratchPool: @unchecked Sendable {
    private let mutex = PlainMutex()
    private var free: [SearchScratch] = []
    let paddedDimension: Int

    init(paddedDimension: Int) { self.paddedDimension = paddedDimension }

    func take(nodes: Int) -> SearchScratch {
        if let s = mutex.withLock({ free.popLast() }) { return s }
        return SearchScratch(nodes: nodes, paddedDimension: paddedDimension)
    }

    func give(_ s: SearchScratch) {
        mutex.withLock {
            if free.count < 64 { free.append(s) }
        }
    }
}
