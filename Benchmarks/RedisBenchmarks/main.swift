// RedisBenchmarks: the PolyglotRedis client against redis-benchmark (the C client that ships with Redis), on the
// same server in the same run, then the cache benchmarks (Cache.swift).
//
//     scripts/redis-bench                                       # release build + full run against the test server
//     scripts/redis-bench --quick                               # smaller counts
//     .build-bench/release/RedisBenchmarks --url redis://127.0.0.1:6379 [--only throughput,latency,cache]
//         [--requests N] [--latency-requests N] [--size BYTES] [--clients C] [--pipeline P] [--rounds R]
//
// Throughput: GET and SET with C connections (default 50) each keeping P commands in flight (default 16), vs
// `redis-benchmark -c C -P P -t get,set -d SIZE -n N`. Latency: one connection, one command at a time, round-trip
// p50 vs `redis-benchmark -c 1 -P 1 -t get`. Each pair is measured R times back to back; the ratio is the median of
// the per-round ratios. Ours runs twice: tasks on Swift's default executor, and tasks on the connections' event
// loops (RedisEventLoopExecutor).
// The server URL comes from --url, else $POLYGLOT_BENCH_REDIS_URL, else $POLYGLOT_TEST_REDIS_URL, else that
// variable in .services/env. Arguments this file does not know are left for the cache benchmarks.
// See docs/redis-client.md ("Benchmarks") for the latest results.
import Foundation

do {
    let options = try ClientBenchOptions(CommandLine.arguments)
    if options.runs("throughput") || options.runs("latency") {
        try await runClientBenchmarks(options)
    }
    if options.runs("cache") && options.profile == nil {
        try await runCacheBenchmarks(arguments: CommandLine.arguments)
    }
} catch {
    FileHandle.standardError.write(Data("RedisBenchmarks: \(String(reflecting: error))\n".utf8))
    exit(1)
}
