import Foundation
import Polyglot
import Synchronization

/// Samples the library's telemetry at a fixed interval and keeps the recent windows, so the dashboard can chart
/// per-dataset p50/p99 and the operation mix over time. Windows are differences of cumulative snapshots, so
/// sampling never disturbs the telemetry the library persists.
final class TelemetrySampler: Sendable {
    struct DatasetWindow: Sendable {
        var count: UInt64
        var errors: UInt64
        var p50: UInt64
        var p99: UInt64
        var operations: [String: UInt64]
    }
    struct CacheWindow: Sendable {
        var hits: UInt64
        var misses: UInt64
        var hitRate: Double?
    }
    struct Point: Sendable {
        var time: Date
        var seconds: Double
        var datasets: [String: DatasetWindow]
        var caches: [String: CacheWindow]
    }

    private struct State {
        var previous: TelemetrySnapshot?
        var points: [Point] = []
    }
    private let state = Mutex(State())
    let telemetry: Telemetry
    let capacity: Int

    init(telemetry: Telemetry, capacity: Int) {
        self.telemetry = telemetry
        self.capacity = max(2, capacity)
    }

    /// Takes one sample: the window since the previous call.
    func sample(now: Date = Date()) {
        let snap = telemetry.snapshot()
        state.withLock { s in
            defer { s.previous = snap }
            guard let prev = s.previous else { return }
            let before = Dictionary(prev.entries.map { ($0.key, $0.stats) }, uniquingKeysWith: { a, _ in a })
            var latency: [String: LatencyHistogram] = [:]
            var windows: [String: DatasetWindow] = [:]
            for e in snap.entries {
                let old = before[e.key]
                let count = e.stats.count - min(e.stats.count, old?.count ?? 0)
                let errors = e.stats.errors - min(e.stats.errors, old?.errors ?? 0)
                var w = windows[e.key.dataset] ?? DatasetWindow(count: 0, errors: 0, p50: 0, p99: 0, operations: [:])
                w.count += count
                w.errors += errors
                if count > 0 {
                    w.operations[e.key.operation, default: 0] += count
                    let window = old.map { e.stats.latency.subtracting($0.latency) } ?? e.stats.latency
                    latency[e.key.dataset, default: LatencyHistogram()].merge(window)
                }
                windows[e.key.dataset] = w
            }
            for (name, h) in latency {
                windows[name]?.p50 = h.percentile(50)
                windows[name]?.p99 = h.percentile(99)
            }
            var caches: [String: CacheWindow] = [:]
            for (name, c) in snap.caches {
                let old = prev.caches[name]
                let hits = c.hits - min(c.hits, old?.hits ?? 0)
                let misses = c.misses - min(c.misses, old?.misses ?? 0)
                caches[name] = CacheWindow(hits: hits, misses: misses, hitRate: hits + misses == 0 ? nil : Double(hits) / Double(hits + misses))
            }
            let seconds = snap.takenAt.timeIntervalSince(prev.takenAt)
            s.points.append(Point(time: now, seconds: seconds, datasets: windows, caches: caches))
            if s.points.count > capacity { s.points.removeFirst(s.points.count - capacity) }
        }
    }

    var points: [Point] { state.withLock { $0.points } }

    /// Samples every `interval` until cancelled.
    func run(every interval: Duration) async {
        sample()
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            sample()
        }
    }
}
