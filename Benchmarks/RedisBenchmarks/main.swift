// RedisBenchmarks: the PolyglotRedis client against redis-benchmark (the C client that ships with Redis), on the
// same server in the same run, then the cache benchmarks (Cache.swift).
//
//     scripts/redis-bench                                       # release build + full run against the test server
//     scripts/redis-bench --quick                               # smaller counts
//     .build-bench/release/RedisBenchmarks --url redis://127.0.0.1:6379 [--only throughput,latency,cache]
//         [--requests N] [--latency-requests N] [--size BYTES] [--clients C] [--pool N] [--pipeline P]
//         [--rounds R] [--latency-rounds R] [--loops 1|all] [--no-pin] [--profile VARIANT]
//
// Throughput: GET and SET with C clients (default 50) each keeping P commands in flight (default 16), vs
// `redis-benchmark -c C -P P -t get,set -d SIZE -n N`. Latency: one connection, one command at a time, p50 and time
// per request vs `redis-benchmark -c 1 -P 1 -t get`, with a bare NIO handler (Floors.swift) and the C client of
// Benchmarks/peers as floors. Each pair is measured R times back to back; the ratio is the median of the per-round
// ratios. Ours runs twice: tasks on Swift's default executor, and tasks on one event loop with all connections
// (RedisEventLoopExecutor). The server is pinned to CPU 0 and the clients to the others (Pinning.swift).
// The server URL comes from --url, else $POLYGLOT_BENCH_REDIS_URL, else $POLYGLOT_TEST_REDIS_URL, else that
// variable in .services/env. Arguments this file does not know are left for the cache benchmarks.
// See docs/redis-client.md ("Benchmarks") for the latest results.
import Foundation
import NIOCore
import NIOPosix

func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("RedisBenchmarks: \(String(reflecting: error))\n".utf8))
    exit(1)
}

let options: ClientBenchOptions
do { options = try ClientBenchOptions(CommandLine.arguments) } catch { fail(error) }

// --nio-global-executor: NIO's event loops become Swift's global executor (an application-wide switch, taken before
// any task runs), so the "default executor" variant runs its tasks on the loops too. Apps can do the same in main.
if options.nioGlobalExecutor && !NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() {
    fail(ClientBenchError("NIO's event loops could not be installed as the global executor"))
}

do {
    if options.runs("throughput") || options.runs("latency") {
        try await runClientBenchmarks(options)
    }
    if options.runs("cache") && options.profile == nil {
        try await runCacheBenchmarks(arguments: CommandLine.arguments)
    }
} catch {
    fail(error)
}
