import Foundation
import Polyglot
#if canImport(Glibc)
import Glibc
#endif

extension TestServers {
    /// Runs `scripts/services/<script> <arguments...>` from this checkout and waits for it; throws if it fails.
    ///
    /// It uses posix_spawn and waitpid, not Foundation's `Process`, for two reasons: `Process.waitUntilExit` can
    /// hang when the child leaves a daemon behind, and a child spawned from a test process would inherit its
    /// blocked signals, so a server started by `redis-ctl start` would ignore SIGTERM and every stop would wait
    /// for the SIGKILL fallback. Here the child starts with no blocked signals and default handlers.
    ///
    /// The spawn and the wait run on a thread of their own: a blocking `waitpid` on one of the concurrency pool's
    /// threads (two on a 2-core machine) would stall every other test of the process while a server starts.
    ///
    /// ```swift
    /// try await TestServers.runScript("postgres-ctl", ["pgfault", "restart"])
    /// ```
    public static func runScript(_ script: String, _ arguments: [String]) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            Thread.detachNewThread {
                do {
                    try runScriptBlocking(script, arguments)
                    c.resume()
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }

    /// ``runScript(_:_:)`` on the calling thread, for the one place an `await` cannot go: a `defer` that puts a
    /// server back after a failed test.
    public static func runScriptBlocking(_ script: String, _ arguments: [String]) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("scripts/services/" + script).path
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        guard posix_spawn(&pid, path, nil, &attributes, &argv, environ) == 0 else {
            throw PolyglotError(.engineFailure, "Could not run \(path).", fix: "Check that the checkout's scripts are executable.")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        guard status == 0 else {
            throw PolyglotError(.engineFailure, "scripts/services/\(script) \(arguments.joined(separator: " ")) failed (wait status \(status)).",
                                fix: "Run it by hand to see its output.")
        }
    }
}
