func runCacheBenchmarks(arguments: [String]) async throws {}
