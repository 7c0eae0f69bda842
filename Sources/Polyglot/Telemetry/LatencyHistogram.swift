/// A mergeable log-linear latency histogram in nanoseconds: 32 buckets per power of two,
/// so any reported percentile is within about 3% of the true value. Up to ~2.4 hours.
///
/// Chosen over HdrHistogram because histograms must be merged across flush intervals and
/// persisted compactly, which ``encoded()`` and ``init(encoded:)`` do in a few bytes.
public struct LatencyHistogram: Sendable, Hashable {
    static let subBits = 5
    static let subCount = 1 << subBits           // 32
    static let maxExponent = 43
    static let bucketCount = (maxExponent - subBits + 2) * subCount

    private(set) var counts: [UInt64]
    public private(set) var totalCount: UInt64 = 0
    public private(set) var maxValue: UInt64 = 0
    public private(set) var minValue: UInt64 = .max
    public private(set) var sum: Double = 0

    public init() { counts = [UInt64](repeating: 0, count: LatencyHistogram.bucketCount) }

    static func index(_ value: UInt64) -> Int {
        if value < UInt64(subCount) { return Int(value) }
        let exponent = min(63 - value.leadingZeroBitCount, maxExponent)
        let sub = Int((value >> UInt64(exponent - subBits)) & UInt64(subCount - 1))
        return (exponent - subBits + 1) * subCount + sub
    }

    static func representative(_ index: Int) -> UInt64 {
        if index < subCount { return UInt64(index) }
        let exponent = index / subCount + subBits - 1
        let sub = UInt64(index % subCount)
        let shift = UInt64(exponent - subBits)
        let lower = (UInt64(subCount) + sub) << shift
        return lower + ((1 << shift) >> 1)
    }

    public mutating func record(nanoseconds value: UInt64) {
        counts[LatencyHistogram.index(value)] &+= 1
        totalCount &+= 1
        sum += Double(value)
        if value > maxValue { maxValue = value }
        if value < minValue { minValue = value }
    }

    public mutating func merge(_ other: LatencyHistogram) {
        for i in other.counts.indices where other.counts[i] != 0 { counts[i] &+= other.counts[i] }
        totalCount &+= other.totalCount
        sum += other.sum
        maxValue = max(maxValue, other.maxValue)
        minValue = min(minValue, other.minValue)
    }

    /// What was recorded after `earlier`, a snapshot of this same histogram taken before: the window between two
    /// cumulative snapshots (as the server's dashboard charts them). The window's maximum is bounded by the later
    /// snapshot's, its minimum is not known and is left as the smallest non-empty bucket's value.
    ///
    /// ```swift
    /// let window = now.latency.subtracting(before.latency)
    /// let p99 = window.percentile(99)
    /// ```
    public func subtracting(_ earlier: LatencyHistogram) -> LatencyHistogram {
        var out = LatencyHistogram()
        for i in counts.indices {
            let c = counts[i] &- min(counts[i], earlier.counts[i])
            if c != 0 {
                out.counts[i] = c
                out.totalCount &+= c
                out.minValue = min(out.minValue, LatencyHistogram.representative(i))
            }
        }
        out.sum = max(0, sum - earlier.sum)
        out.maxValue = out.totalCount == 0 ? 0 : maxValue
        return out
    }

    /// The value at percentile `p` (0...100), in nanoseconds; 0 when empty.
    public func percentile(_ p: Double) -> UInt64 {
        guard totalCount > 0 else { return 0 }
        if p >= 100 { return maxValue }
        let rank = max(1, UInt64((p / 100 * Double(totalCount)).rounded(.up)))
        var seen: UInt64 = 0
        for i in counts.indices where counts[i] != 0 {
            seen &+= counts[i]
            if seen >= rank { return min(LatencyHistogram.representative(i), maxValue) }
        }
        return maxValue
    }

    public var mean: Double { totalCount == 0 ? 0 : sum / Double(totalCount) }

    /// A compact text form: `index:count` pairs of the non-empty buckets, then the extremes and sum.
    public func encoded() -> String {
        var parts: [String] = []
        for i in counts.indices where counts[i] != 0 { parts.append("\(i):\(counts[i])") }
        return "v1;\(minValue == .max ? 0 : minValue);\(maxValue);\(sum);" + parts.joined(separator: ",")
    }

    public init?(encoded: String) {
        self.init()
        let fields = encoded.split(separator: ";", omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0] == "v1", let lo = UInt64(fields[1]), let hi = UInt64(fields[2]),
              let s = Double(fields[3]) else { return nil }
        for pair in fields[4].split(separator: ",") {
            let kv = pair.split(separator: ":")
            guard kv.count == 2, let i = Int(kv[0]), let c = UInt64(kv[1]), counts.indices.contains(i) else { return nil }
            counts[i] = c
            // A corrupt or hostile row must not trap the reader (the advisor reads these from the telemetry store).
            let (total, overflow) = totalCount.addingReportingOverflow(c)
            guard !overflow else { return nil }
            totalCount = total
        }
        minValue = totalCount == 0 ? .max : lo
        maxValue = hi
        sum = s
    }
}
