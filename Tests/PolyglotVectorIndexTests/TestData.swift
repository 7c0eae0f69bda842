import Polyglot

/// Seeded test data: Gaussian and clustered vectors.
struct TestData {
    var rng: SeededRandom

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    mutating func gaussian() -> Float {
        // Box–Muller on two uniforms in (0, 1].
        let u1 = Double((rng.next() >> 11) + 1) / 9_007_199_254_740_992.0
        let u2 = Double(rng.next() >> 11) / 9_007_199_254_740_992.0
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    mutating func gaussianVectors(_ n: Int, dimension: Int) -> [[Float]] {
        (0..<n).map { _ in (0..<dimension).map { _ in gaussian() } }
    }

    /// `clusters` Gaussian centres, each point a centre plus noise of scale `spread`.
    /// Returns the data and queries drawn from the same centres.
    mutating func clustered(_ n: Int, queries: Int, dimension: Int, clusters: Int,
                            spread: Float = 0.5) -> (data: [[Float]], queries: [[Float]]) {
        let centres = gaussianVectors(clusters, dimension: dimension)
        return (around(centres, n, spread: spread), around(centres, queries, spread: spread))
    }

    mutating func around(_ centres: [[Float]], _ n: Int, spread: Float) -> [[Float]] {
        let clusters = centres.count
        return (0..<n).map { _ in
            let c = centres[Int(rng.next() % UInt64(clusters))]
            return c.map { $0 + spread * gaussian() }
        }
    }
}

/// Libm-free helpers (tests avoid importing Foundation).
func _log(_ x: Double) -> Double {
    // ln via frexp-like decomposition and a series; accurate to ~1e-12 for x in (0, 1].
    var m = x
    var e = 0.0
    while m < 0.5 { m *= 2; e -= 1 }
    while m > 1 { m /= 2; e += 1 }
    let t = (m - 1) / (m + 1)
    let t2 = t * t
    var term = t
    var sum = 0.0
    var k = 1.0
    for _ in 0..<40 {
        sum += term / k
        term *= t2
        k += 2
    }
    return 2 * sum + e * 0.693_147_180_559_945_3
}

func _cos(_ x: Double) -> Double {
    var y = x.truncatingRemainder(dividingBy: 2 * Double.pi)
    if y > Double.pi { y -= 2 * Double.pi }
    var term = 1.0
    var sum = 1.0
    for i in 1..<20 {
        term *= -y * y / Double((2 * i - 1) * (2 * i))
        sum += term
    }
    return sum
}

func recall(_ approximate: [(id: String, distance: Float)], _ exact: [(id: String, distance: Float)]) -> Double {
    guard !exact.isEmpty else { return 1 }
    let truth = Set(exact.map(\.id))
    return Double(approximate.filter { truth.contains($0.id) }.count) / Double(exact.count)
}
