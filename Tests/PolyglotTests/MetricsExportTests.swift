import Metrics
import MetricsTestKit
import Polyglot
import Testing

@Suite struct MetricsExportTests {
    @Test func telemetryIsExportedThroughSwiftMetrics() throws {
        let metrics = TestMetrics()
        MetricsSystem.bootstrap(metrics)  // the only test in this process that bootstraps metrics
        let telemetry = Telemetry()
        let key = OperationKey(dataset: "orders", engine: "primary", operation: "select")
        telemetry.record(key, nanoseconds: 2_000, rows: 3, bytes: 120)
        telemetry.record(key, nanoseconds: 4_000, failed: true)
        let dims = [("dataset", "orders"), ("engine", "primary"), ("operation", "select")]
        #expect(try metrics.expectCounter("polyglot_operations_total", dims).totalValue == 2)
        #expect(try metrics.expectCounter("polyglot_operation_errors_total", dims).totalValue == 1)
        #expect(try metrics.expectCounter("polyglot_rows_total", dims).totalValue == 3)
        #expect(try metrics.expectCounter("polyglot_bytes_total", dims).totalValue == 120)
        #expect(try metrics.expectTimer("polyglot_operation_duration", dims).values == [2_000, 4_000])
    }
}
