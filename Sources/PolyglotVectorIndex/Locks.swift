#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread reader-writer lock. Many readers or one writer.
///
/// Reader preference (the platform default) is kept on purpose: a search filter that reads the index
/// again (a recursive read lock) can never deadlock behind a waiting writer.
final class ReadWriteLock: @unchecked Sendable {
    private let handle: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        handle = .allocate(capacity: 1)
        handle.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(handle, nil)
    }

    deinit {
        pthread_rwlock_destroy(handle)
        handle.deinitialize(count: 1)
        handle.deallocate()
    }

    @inline(__always)
    func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(handle)
        defer { pthread_rwlock_unlock(handle) }
        return try body()
    }

    @inline(__always)
    func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(handle)
        defer { pthread_rwlock_unlock(handle) }
        return try body()
    }
}

/// A plain pthread mutex.
final class PlainMutex: @unchecked Sendable {
    private let handle: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        handle = .allocate(capacity: 1)
        handle.initialize(to: pthread_mutex_t())
        pthread_mutex_init(handle, nil)
    }

    deinit {
        pthread_mutex_destroy(handle)
        handle.deinitialize(count: 1)
        handle.deallocate()
    }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(handle)
        defer { pthread_mutex_unlock(handle) }
        return try body()
    }

    /// For a critical section that does not fit a closure (the parallel build holds the entry-point lock
    /// across an insertion only when the node raises the top level). Prefer `withLock`.
    @inline(__always) func lock() { pthread_mutex_lock(handle) }
    @inline(__always) func unlock() { pthread_mutex_unlock(handle) }
}

/// How graph construction guards a node's neighbour lists. The single-writer paths use `NoNodeLocks`
/// (compiled away); the parallel batch build uses `StripedNodeLocks`.
protocol NodeLocking {
    func lock(_ node: Int32)
    func unlock(_ node: Int32)
}

struct NoNodeLocks: NodeLocking {
    @inline(__always) func lock(_ node: Int32) {}
    @inline(__always) func unlock(_ node: Int32) {}
}

/// A fixed array of pthread mutexes; node `n` uses mutex `n & mask`. A thread holds at most one of
/// them at a time, so sharing a stripe between nodes can slow a thread down but never deadlock it.
/// Not reference counted: the owner calls `destroy()` once every user is done.
struct StripedNodeLocks: NodeLocking, @unchecked Sendable {
    let base: UnsafeMutablePointer<pthread_mutex_t>
    let mask: Int

    init(stripes: Int = 4096) {
        var n = 1
        while n < stripes { n <<= 1 }
        base = .allocate(capacity: n)
        base.initialize(repeating: pthread_mutex_t(), count: n)
        for i in 0..<n { pthread_mutex_init(base + i, nil) }
        mask = n - 1
    }

    func destroy() {
        for i in 0...mask { pthread_mutex_destroy(base + i) }
        base.deinitialize(count: mask + 1)
        base.deallocate()
    }

    @inline(__always) func lock(_ node: Int32) { pthread_mutex_lock(base + (Int(node) & mask)) }
    @inline(__always) func unlock(_ node: Int32) { pthread_mutex_unlock(base + (Int(node) & mask)) }
}
