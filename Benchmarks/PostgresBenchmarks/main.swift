// PostgresBenchmarks: the postgres engine against the raw postgres-nio driver, and pgvector against the embedded
// HNSW index (sqlite engine, PolyglotVectorIndex), on the same server and the same data, in the same run.
//
//     scripts/postgres-bench                                   # release build + full run against the test server
//     scripts/postgres-bench --quick                           # reduced counts
//     .build-bench/release/PostgresBenchmarks --url postgres://postgres@127.0.0.1:5432/postgres \
//         [--only get|bulk|vectors|relay[,...]] [--docs N] [--bulk N] [--batch N] [--seconds S] [--rounds R]
//         [--vectors N] [--queries Q] [--ef 40,100,400]
//         [--relay-events N] [--relay-rewrite N]
//
// The server URL comes from --url, else $POLYGLOT_BENCH_PG_URL, else $POLYGLOT_TEST_PG18_URL, else that variable
// in .services/env (written by scripts/services/up). The vector part needs pgvector (the PostgreSQL 18 server).
// Everything is created in a fresh schema `bench_<random>`, dropped at the end.
//
// See docs/benchmarks.md ("PostgreSQL") for what each benchmark measures and the latest results.
import Foundation

do {
    let options = try BenchOptions(CommandLine.arguments)
    try await runBenchmarks(options)
} catch {
    FileHandle.standardError.write(Data("PostgresBenchmarks: \(String(reflecting: error))\n".utf8))
    exit(1)
}
