import Foundation
import Logging

/// An operation that spans engines, as steps with compensations, whose progress is persisted so a restart
/// finishes or undoes what a crash interrupted. There is no cross-engine transaction; a saga is the way to
/// make a multi-engine change all-or-nothing *eventually*.
///
/// Each step's `action` and `compensation` must be idempotent: after a crash the step that was running is run
/// again (forward) or compensated (backward), and it may already have taken effect.
///
/// ```swift
/// let checkout = Saga(name: "checkout", log: try db.keyValue("sagas"))
///     .step("reserve stock", action: { input in try await stock.reserve(input["items"]) },
///                            compensation: { input in try await stock.release(input["items"]) })
///     .step("charge card",   action: { input in try await payments.charge(input["total"]) },
///                            compensation: { input in try await payments.refund(input["total"]) })
///     .step("confirm order", action: { input in try await orders.put(input["id"]!.stringValue!, ["status": "paid"]) })
/// try await checkout.run(id: "order-42", input: ["id": "order-42", "items": [...], "total": 59])
/// // at start-up, after a crash:
/// try await checkout.recover()
/// ```
public struct Saga: Sendable {
    public typealias Action = @Sendable (_ input: JSON) async throws -> Void

    public struct Step: Sendable {
        public var name: String
        var action: Action
        var compensation: Action?
    }

    public let name: String
    public private(set) var steps: [Step] = []
    /// What to do with a saga found running after a restart.
    public var onRecovery: Recovery
    let log: KeyValueCollection
    let logger: Logger

    public enum Recovery: Sendable {
        /// Run the interrupted step again and continue (steps must be idempotent).
        case resume
        /// Undo the completed steps, newest first.
        case compensate
    }

    /// A saga whose state is kept in `log`, a key-value dataset on a durable engine (sqlite, postgres).
    public init(name: String, log: KeyValueCollection, onRecovery: Recovery = .compensate, logger: Logger = Logger(label: "polyglot.saga")) {
        self.name = name; self.log = log; self.onRecovery = onRecovery; self.logger = logger
    }

    public func step(_ name: String, action: @escaping Action, compensation: Action? = nil) -> Saga {
        var s = self
        s.steps.append(Step(name: name, action: action, compensation: compensation))
        return s
    }

    /// Where one run of a saga stands; persisted after every step.
    public struct State: Codable, Sendable, Hashable {
        public enum Status: String, Codable, Sendable { case running, compensating, completed, compensated, failed }
        public var saga: String
        public var id: String
        public var input: JSON
        public var status: Status
        /// Steps whose action finished, in order.
        public var completed: [String]
        /// The step running (or being compensated) now.
        public var current: String?
        public var error: String?
    }

    /// The outcome of ``run(id:input:)``.
    public enum Outcome: Sendable, Hashable {
        case completed
        /// A step failed; the completed steps were compensated.
        case compensated(failedStep: String, error: String)
    }

    /// Runs the saga for `id` (unique per saga): every step in order; if one fails, the completed ones are
    /// compensated newest first and the outcome says which step failed. If a compensation fails too, the state
    /// is left `failed` for an operator (and ``recover()`` retries it), and the error is thrown.
    @discardableResult
    public func run(id: String, input: JSON = .object([:])) async throws -> Outcome {
        try checkNames()
        if let existing = try await state(id) {
            throw PolyglotError(.conflict, "Saga '\(name)' already ran for '\(id)' (status \(existing.status.rawValue)).",
                                fix: "Use a new id for a new run; call recover() to finish interrupted ones.")
        }
        var state = State(saga: name, id: id, input: input, status: .running, completed: [], current: nil, error: nil)
        try await save(state)
        return try await forward(&state)
    }

    /// Finishes every run of this saga that a crash interrupted: resumes it or compensates it (``onRecovery``),
    /// and retries compensations that had failed. Returns the runs it settled, with their final status.
    @discardableResult
    public func recover() async throws -> [(id: String, status: State.Status)] {
        try checkNames()
        var out: [(String, State.Status)] = []
        for var state in try await unfinished() {
            logger.notice("saga: recovering an interrupted run", metadata: ["saga": "\(name)", "id": "\(state.id)", "status": "\(state.status.rawValue)", "step": "\(state.current ?? "-")"])
            switch (state.status, onRecovery) {
            case (.running, .resume):
                _ = try await forward(&state)
            default:
                try await compensate(&state, failedStep: state.current ?? "(recovery)", error: state.error ?? "interrupted")
            }
            out.append((state.id, state.status))
        }
        return out
    }

    /// The persisted state of the run `id`, if any.
    public func state(_ id: String) async throws -> State? {
        guard let raw = try await log.get(key(id)) else { return nil }
        return try JSONDecoder().decode(State.self, from: raw)
    }

    /// Runs not completed or compensated: interrupted ones and those whose compensation failed.
    public func unfinished() async throws -> [State] {
        var out: [State] = []
        var after: String?
        while true {
            let page = try await log.scan(prefix: key(""), after: after, limit: 500)
            for entry in page {
                if let s = try? JSONDecoder().decode(State.self, from: entry.value), [.running, .compensating, .failed].contains(s.status) { out.append(s) }
            }
            guard page.count == 500, let last = page.last else { return out }
            after = last.key
        }
    }

    // MARK: Internals

    private func key(_ id: String) -> String { "saga:\(name):\(id)" }

    private func save(_ state: State) async throws {
        _ = try await log.set(key(state.id), try JSONEncoder().encode(state))
    }

    private func checkNames() throws {
        let names = steps.map(\.name)
        if names.isEmpty || Set(names).count != names.count {
            throw PolyglotError(.invalidArgument, "Saga '\(name)' needs at least one step and unique step names (has: \(names.joined(separator: ", "))).",
                                fix: "Name every step differently; recovery finds steps by name.")
        }
    }

    private func forward(_ state: inout State) async throws -> Outcome {
        for step in steps where !state.completed.contains(step.name) {
            state.current = step.name
            try await save(state)
            do {
                try await step.action(state.input)
            } catch {
                state.error = "\(error)"
                try await compensate(&state, failedStep: step.name, error: "\(error)")
                return .compensated(failedStep: step.name, error: "\(error)")
            }
            state.completed.append(step.name)
            state.current = nil
            try await save(state)
        }
        state.status = .completed
        state.current = nil
        try await save(state)
        return .completed
    }

    private func compensate(_ state: inout State, failedStep: String, error: String) async throws {
        state.status = .compensating
        state.error = "step '\(failedStep)' failed: \(error)"
        try await save(state)
        logger.warning("saga: compensating", metadata: ["saga": "\(name)", "id": "\(state.id)", "failedStep": "\(failedStep)", "error": "\(error)"])
        // The interrupted step may have taken effect before the crash: compensate it too (compensations are idempotent).
        var toUndo = state.completed
        if let current = state.current, !toUndo.contains(current) { toUndo.append(current) }
        for stepName in toUndo.reversed() {
            guard let step = steps.first(where: { $0.name == stepName }) else { continue }
            state.current = stepName
            try await save(state)
            do {
                try await step.compensation?(state.input)
            } catch {
                state.status = .failed
                state.error = "compensation of '\(stepName)' failed: \(error) (after step '\(failedStep)' failed)"
                try await save(state)
                throw PolyglotError(.transactionFailed, "Saga '\(name)' for '\(state.id)': \(state.error!).",
                                    fix: "Fix the cause, then call recover() to retry the compensation.", retryable: true)
            }
            state.completed.removeAll { $0 == stepName }
        }
        state.status = .compensated
        state.current = nil
        try await save(state)
    }
}
