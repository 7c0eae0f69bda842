import Synchronization

/// Positions that only grow, one per key, that tasks can wait on: a task asks for a key to reach a position and is
/// resumed the moment it does, or when its timeout passes or it is cancelled.
///
/// The relay reports what it applied per copy here, so a read waiting for a copy (inside
/// ``Polyglot/reading(atLeast:maxWait:_:)``) is woken when the relay commits instead of at its next look at the
/// checkpoint; engines use it for their own wake-ups (PostgreSQL counts outbox notifications with it).
public final class ProgressSignal<Key: Hashable & Sendable>: Sendable {
    private struct Waiter {
        let key: Key
        let position: Int64
        let continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var positions: [Key: Int64] = [:]
        var waiters: [UInt64: Waiter] = [:]
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// The position `key` has reached (0 before any).
    public func position(_ key: Key) -> Int64 { state.withLock { $0.positions[key] ?? 0 } }

    /// Moves `key` to `position` if that is further, and resumes the tasks waiting for it to get there.
    public func advance(_ key: Key, to position: Int64) {
        move(key) { $0 < position ? position : nil }
    }

    /// Moves `key` one position further; returns the new position.
    @discardableResult
    public func increment(_ key: Key) -> Int64 {
        move(key) { $0 + 1 }
    }

    /// Sets `key` to `next(current)` unless that is nil, and resumes the tasks waiting for it to get there; returns
    /// the position after.
    @discardableResult
    private func move(_ key: Key, _ next: (Int64) -> Int64?) -> Int64 {
        let (position, ready) = state.withLock { s -> (Int64, [CheckedContinuation<Void, Never>]) in
            let current = s.positions[key, default: 0]
            guard let p = next(current) else { return (current, []) }
            s.positions[key] = p
            let due = s.waiters.filter { $0.value.key == key && $0.value.position <= p }.map(\.key)
            return (p, due.compactMap { s.waiters.removeValue(forKey: $0)?.continuation })
        }
        for c in ready { c.resume() }
        return position
    }

    /// Returns once `key` has reached `position`, after `timeout`, or when the task is cancelled, whichever comes
    /// first. The caller checks the position again: returning says nothing about which happened.
    public func wait(_ key: Key, atLeast position: Int64, timeout: Duration) async {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.positions[key, default: 0] >= position || Task.isCancelled { return true }
                    s.waiters[id] = Waiter(key: key, position: position, continuation: c)
                    return false
                }
                if now {
                    c.resume()
                    return
                }
                Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    self?.resume(id)
                }
            }
        } onCancel: {
            resume(id)
        }
    }

    private func resume(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
    }
}

/// What the relays of one ``Polyglot`` instance have applied, per copy name (`dataset@engine`).
typealias RelayProgress = ProgressSignal<String>
