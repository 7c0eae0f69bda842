import Polyglot
import Testing

/// `ProgressSignal`: what wakes a read waiting for a relayed copy, and the relay waiting for a PostgreSQL commit.
/// A waiter that is never resumed hangs, so every test has a time limit.
@Suite(.timeLimit(.minutes(1))) struct ProgressSignalTests {
    @Test func advanceResumesTheWaitersItSatisfiesAndNoOthers() async throws {
        let signal = ProgressSignal<String>()
        let resumed = Resumed()
        let near = Task { await signal.wait("copy", atLeast: 5, timeout: .seconds(3600)); await resumed.add("near") }
        let far = Task { await signal.wait("copy", atLeast: 9, timeout: .seconds(3600)); await resumed.add("far") }
        let other = Task { await signal.wait("other", atLeast: 1, timeout: .seconds(3600)); await resumed.add("other") }
        try await Task.sleep(for: .milliseconds(50))   // let the three register
        signal.advance("copy", to: 5)
        await near.value
        #expect(await resumed.names == ["near"])
        #expect(signal.position("copy") == 5)
        signal.advance("copy", to: 3)   // positions only grow
        #expect(signal.position("copy") == 5)
        signal.advance("copy", to: 12)
        await far.value
        other.cancel()   // cancellation resumes a waiter too
        await other.value
        #expect(await resumed.names == ["near", "far", "other"])
        #expect(signal.position("other") == 0)
    }

    @Test func aReachedPositionOrAnElapsedTimeoutReturnsAtOnce() async {
        let signal = ProgressSignal<Int>()
        #expect(signal.increment(0) == 1)
        #expect(signal.increment(0) == 2)
        await signal.wait(0, atLeast: 2, timeout: .seconds(3600))   // already there
        await signal.wait(0, atLeast: 3, timeout: .milliseconds(10))   // never reached: the timeout ends it
        #expect(signal.position(0) == 2)
        let cancelled = Task { await signal.wait(0, atLeast: 3, timeout: .seconds(3600)) }
        cancelled.cancel()
        await cancelled.value
    }
}

private actor Resumed {
    var names: [String] = []
    func add(_ name: String) { names.append(name) }
}
