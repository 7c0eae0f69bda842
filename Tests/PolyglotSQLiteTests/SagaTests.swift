import Foundation
import Polyglot
import PolyglotSQLite
import Testing

/// Sagas across two engines (two SQLite files stand in for, say, an orders database and a payments one),
/// including a real crash: a child process is killed with SIGKILL in the middle of a saga.
@Suite struct SagaTests {
    static func map(_ dir: String) -> DataMap {
        DataMap(engines: [EngineSpec(name: "orders", kind: "sqlite", path: dir + "/orders.db"),
                          EngineSpec(name: "payments", kind: "sqlite", path: dir + "/payments.db")],
                datasets: [DatasetSpec(name: "orders", model: .documents, engine: "orders"),
                           DatasetSpec(name: "charges", model: .keyValue, engine: "payments"),
                           DatasetSpec(name: "sagas", model: .keyValue, engine: "orders")])
    }

    /// reserve (orders) → charge (payments) → confirm (orders). `crashAt` kills the process when that step starts;
    /// `failAt` makes that step throw.
    static func checkout(_ db: Polyglot, recovery: Saga.Recovery = .compensate, crashAt: String? = nil, failAt: String? = nil) throws -> Saga {
        let orders = try db.documents("orders"), charges = try db.keyValue("charges")
        @Sendable func gate(_ step: String) throws {
            if step == crashAt { kill(getpid(), SIGKILL) }
            if step == failAt { throw PolyglotError(.conflict, "card declined", fix: "use another card") }
        }
        return Saga(name: "checkout", log: try db.keyValue("sagas"), onRecovery: recovery)
            .step("reserve", action: { input in
                try gate("reserve")
                try await orders.put(input["id"]!.stringValue!, ["status": "reserved"])
            }, compensation: { input in
                _ = try await orders.delete(input["id"]!.stringValue!)
            })
            .step("charge", action: { input in
                try gate("charge")
                _ = try await charges.set(input["id"]!.stringValue!, "59.00")
            }, compensation: { input in
                _ = try await charges.delete(input["id"]!.stringValue!)
            })
            .step("confirm", action: { input in
                try gate("confirm")
                try await orders.put(input["id"]!.stringValue!, ["status": "paid"])
            })
    }

    @Test func aSagaRunsEveryStepOrCompensatesTheCompletedOnes() async throws {
        let db = try await Polyglot(map: Self.map(tempDir()), registry: .embedded)
        #expect(try await Self.checkout(db).run(id: "o1", input: ["id": "o1"]) == .completed)
        #expect(try await db.documents("orders").get("o1")?.json()["status"] == "paid")
        #expect(try await db.keyValue("charges").getString("o1") == "59.00")

        let outcome = try await Self.checkout(db, failAt: "confirm").run(id: "o2", input: ["id": "o2"])
        guard case .compensated(let step, let error) = outcome else { Issue.record("\(outcome)"); return }
        #expect(step == "confirm" && error.contains("card declined"))
        #expect(try await db.documents("orders").get("o2") == nil)
        #expect(try await db.keyValue("charges").get("o2") == nil)
        #expect(try await Self.checkout(db).state("o2")?.status == .compensated)
        // An id runs once.
        await #expect(throws: PolyglotError.self) { try await Self.checkout(db).run(id: "o1", input: ["id": "o1"]) }
        try await db.close()
    }

    @Test(arguments: [Saga.Recovery.compensate, .resume])
    func aSagaKilledMidwayIsFinishedOrUndoneAfterARestart(_ recovery: Saga.Recovery) async throws {
        let dir = tempDir()
        // The child process runs the saga and is killed (SIGKILL) as the "charge" step starts.
        let status = try Self.runChild(dir: dir)
        #expect(status == SIGKILL, "the child should have died by SIGKILL, got \(status)")

        let db = try await Polyglot(map: Self.map(dir), registry: .embedded)
        let saga = try Self.checkout(db, recovery: recovery)
        let interrupted = try #require(try await saga.state("o9"))
        #expect(interrupted.status == .running && interrupted.completed == ["reserve"] && interrupted.current == "charge")
        #expect(try await db.documents("orders").get("o9")?.json()["status"] == "reserved")

        let settled = try await saga.recover()
        #expect(settled.map(\.id) == ["o9"])
        switch recovery {
        case .compensate:
            #expect(settled.first?.status == .compensated)
            #expect(try await db.documents("orders").get("o9") == nil)
            #expect(try await db.keyValue("charges").get("o9") == nil)
        case .resume:
            #expect(settled.first?.status == .completed)
            #expect(try await db.documents("orders").get("o9")?.json()["status"] == "paid")
            #expect(try await db.keyValue("charges").getString("o9") == "59.00")
        }
        #expect(try await saga.unfinished().isEmpty)
        try await db.close()
    }

    /// Not a test of its own: the body of the child process of the crash test, which sets POLYGLOT_SAGA_CHILD_DIR.
    /// Run normally, it returns at once.
    @Test func childProcessBody() async throws {
        guard let dir = ProcessInfo.processInfo.environment["POLYGLOT_SAGA_CHILD_DIR"] else { return }
        let db = try await Polyglot(map: Self.map(dir), registry: .embedded)
        try await Self.checkout(db, crashAt: "charge").run(id: "o9", input: ["id": "o9"])
        Issue.record("the child process should have been killed")
    }

    /// Runs this test binary again, filtered to ``childProcessBody()``, and returns the signal that ended it (0 if none).
    static func runChild(dir: String) throws -> Int32 {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let args = [exe, "--testing-library", "swift-testing", "--filter", "SagaTests/childProcessBody"]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var env = ProcessInfo.processInfo.environment
        env["POLYGLOT_SAGA_CHILD_DIR"] = dir
        var envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for e in envp { free(e) } }
        var pid: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, exe, &actions, nil, &argv, &envp) == 0 else {
            throw PolyglotError(.engineFailure, "could not start the child test process \(exe)")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFSIGNALED / WTERMSIG by hand (the C macros are not imported).
        let signal = status & 0x7f
        return signal != 0 && signal != 0x7f ? signal : 0
    }
}
