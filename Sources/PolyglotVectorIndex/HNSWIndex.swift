// Placeholder so the target builds; the HNSW index is being written (issue 3).
import Polyglot
