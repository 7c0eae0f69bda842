import Testing
@testable import PolyglotPostgres

/// Runs each test it marks alone among the tests it marks, whatever suite they are in: the tests that make capture
/// slots in `polyglot_capture`.
///
/// PostgreSQL can make a slot that cannot decode changes to a table created by a transaction that was running
/// while the slot was being made (`XX000 could not map filenumber`; docs/postgres.md, "Limits"). These tests create
/// their tables (migrations) and their slots in one database, so run side by side, one test's migration could
/// spoil another's slot. One at a time, no migration runs while a slot is made. The other PostgreSQL tests keep
/// running in parallel with them, in other databases.
struct CaptureSlotLock: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    /// A scope for each test case (the code that runs), none for suites: a suite holding the lock while its tests
    /// wait for it would deadlock.
    func scopeProvider(for test: Test, testCase: Test.Case?) -> CaptureSlotLock? {
        testCase == nil ? nil : self
    }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await Self.lock.withLock { try await function() }
    }

    private static let lock = AsyncLock()
}

extension Trait where Self == CaptureSlotLock {
    /// See ``CaptureSlotLock``.
    static var makesCaptureSlots: CaptureSlotLock { CaptureSlotLock() }
}
