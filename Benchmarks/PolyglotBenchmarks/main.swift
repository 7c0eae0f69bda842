// PolyglotBenchmarks: Polyglot against the raw SQLite C API and its in-process cache.
//
//     swift run -c release PolyglotBenchmarks            # full run (about 30 s after the build)
//     swift run -c release PolyglotBenchmarks --quick    # reduced counts
//     swift run -c release PolyglotBenchmarks --only get|bulk|cache
//
// One side alone, for `perf record` (`--ops N` sets the number of calls):
//     swift run -c release PolyglotBenchmarks --only get-poly-typed|get-raw-typed|get-poly|get-raw [--ops N]
//     swift run -c release PolyglotBenchmarks --only cache-facade|cache-typed|cache-lookup [--ops N]
//
// `--readers N` sets the sqlite engine's reader-connection count.
//
// See docs/benchmarks.md for what each benchmark measures and the latest results.

let config = BenchConfig(arguments: CommandLine.arguments)
try await runBenchmarks(config)
