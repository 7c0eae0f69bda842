// Redis benchmarks against redis-benchmark (issue 5): filled in with the client.
