/// Distance kernels over padded float rows (the padded length is a multiple of 16 floats, so the loops
/// have no tail; padding is zero and changes neither a dot product nor an L2 distance).
///
/// Both pointers must be 16-byte aligned (rows start on a 64-byte boundary and the query buffer is 64-byte
/// aligned), so the loads can be folded into the arithmetic as memory operands.
///
/// Internal distances are "smaller is closer": squared L2 for `.l2`, `-dot` for `.innerProduct` and for
/// `.cosine` (whose rows are stored normalized). The public API converts them (see `HNSWIndex.search`).
protocol DistanceKernel {
    static func distance(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, bytes: Int) -> Float
}

enum L2SquaredKernel: DistanceKernel {
    @inline(__always)
    static func distance(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, bytes: Int) -> Float {
        #if DEBUG
        // Unoptimized builds run generic SIMD operations lane by lane through witness tables; a plain
        // loop keeps debug-build tests fast. Release builds never take this path.
        let x = a.assumingMemoryBound(to: Float.self), y = b.assumingMemoryBound(to: Float.self)
        var s: Float = 0
        for i in 0..<(bytes >> 2) { let d = x[i] - y[i]; s += d * d }
        return s
        #else
        var s0 = SIMD16<Float>()
        var s1 = SIMD16<Float>()
        var o = 0
        // Two independent accumulators (8 SSE registers) hide the add latency.
        while o &+ 128 <= bytes {
            let d0 = a.load(fromByteOffset: o, as: SIMD16<Float>.self)
                - b.load(fromByteOffset: o, as: SIMD16<Float>.self)
            let d1 = a.load(fromByteOffset: o &+ 64, as: SIMD16<Float>.self)
                - b.load(fromByteOffset: o &+ 64, as: SIMD16<Float>.self)
            s0 += d0 * d0
            s1 += d1 * d1
            o &+= 128
        }
        if o < bytes {
            let d0 = a.load(fromByteOffset: o, as: SIMD16<Float>.self)
                - b.load(fromByteOffset: o, as: SIMD16<Float>.self)
            s0 += d0 * d0
        }
        return horizontalSum(s0 + s1)
        #endif
    }
}

enum NegativeDotKernel: DistanceKernel {
    @inline(__always)
    static func distance(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, bytes: Int) -> Float {
        #if DEBUG
        let x = a.assumingMemoryBound(to: Float.self), y = b.assumingMemoryBound(to: Float.self)
        var s: Float = 0
        for i in 0..<(bytes >> 2) { s += x[i] * y[i] }
        return -s
        #else
        var s0 = SIMD16<Float>()
        var s1 = SIMD16<Float>()
        var o = 0
        while o &+ 128 <= bytes {
            s0 += a.load(fromByteOffset: o, as: SIMD16<Float>.self)
                * b.load(fromByteOffset: o, as: SIMD16<Float>.self)
            s1 += a.load(fromByteOffset: o &+ 64, as: SIMD16<Float>.self)
                * b.load(fromByteOffset: o &+ 64, as: SIMD16<Float>.self)
            o &+= 128
        }
        if o < bytes {
            s0 += a.load(fromByteOffset: o, as: SIMD16<Float>.self)
                * b.load(fromByteOffset: o, as: SIMD16<Float>.self)
        }
        return -horizontalSum(s0 + s1)
        #endif
    }
}

/// Pairwise reduction (16 → 8 → 4 lanes, then 4 scalars): a short dependency chain instead of the
/// 15-step serial `sum()`.
@inline(__always)
func horizontalSum(_ v: SIMD16<Float>) -> Float {
    let h8 = v.lowHalf + v.highHalf
    let h4 = h8.lowHalf + h8.highHalf
    return (h4[0] + h4[2]) + (h4[1] + h4[3])
}

/// Loads one word from each cache line of a row so the lines are in flight before the distance loop
/// needs them. Swift has no prefetch intrinsic; these are ordinary loads whose results are folded into a
/// value the caller keeps, so the optimizer cannot drop them, and the out-of-order core overlaps their
/// misses with each other and with the arithmetic that follows.
@inline(__always)
func touchRow(_ p: UnsafeRawPointer, bytes: Int, lines: Int) -> UInt32 {
    var sink: UInt32 = 0
    var o = 0
    var i = 0
    while i < lines && o < bytes {
        sink &+= p.load(fromByteOffset: o, as: UInt32.self)
        o &+= 64
        i &+= 1
    }
    return sink
}
