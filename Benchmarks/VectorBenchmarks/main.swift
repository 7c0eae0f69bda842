print("vector benchmarks: not written yet")
