import Foundation
import NIOCore
import Polyglot

/// The engine's scripts, bound to its client (each hashed once; run with EVALSHA, EVAL on NOSCRIPT).
struct RedisEngineScripts: Sendable {
    let fill, invalidate, claim, release, increment, compareAndSet, fetch, getMany: RedisScript
    let sessionGet, sessionWrite, sessionRemove, gcra, around: RedisScript

    init(_ client: RedisClient) {
        fill = client.script(RedisScripts.fill)
        invalidate = client.script(RedisScripts.invalidate)
        claim = client.script(RedisScripts.claim)
        release = client.script(RedisScripts.release)
        increment = client.script(RedisScripts.increment)
        compareAndSet = client.script(RedisScripts.compareAndSet)
        fetch = client.script(RedisScripts.fetch)
        getMany = client.script(RedisScripts.getMany)
        sessionGet = client.script(RedisScripts.sessionGet)
        sessionWrite = client.script(RedisScripts.sessionWrite)
        sessionRemove = client.script(RedisScripts.sessionRemove)
        gcra = client.script(RedisScripts.gcra)
        around = client.script(RedisScripts.around)
    }
}

/// The engine's connection to Redis: the client, its scripts, and the translation of client errors into
/// ``PolyglotError``.
final class RedisLink: Sendable {
    let client: RedisClient
    let scripts: RedisEngineScripts
    let engineName: String
    let address: String
    let maxValueBytes: Int

    init(client: RedisClient, engineName: String, address: String, maxValueBytes: Int) {
        self.client = client; self.engineName = engineName; self.address = address; self.maxValueBytes = maxValueBytes
        scripts = RedisEngineScripts(client)
    }

    /// Sends one command; errors come back as ``PolyglotError``.
    func send(_ name: String, _ arguments: any RedisArgument...) async throws -> RESPValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    func send(_ command: RedisCommand) async throws -> RESPValue {
        do {
            return try await client.send(command)
        } catch {
            throw translate(error, during: command.name)
        }
    }

    /// Sends one command and returns client errors untranslated (the cache backend decides what an outage means).
    func sendRaw(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        try await client.send(command)
    }

    /// Runs a script; errors come back untranslated.
    func evalRaw(_ script: RedisScript, keys: [any RedisArgument], arguments: [any RedisArgument]) async throws(RedisError) -> RESPValue {
        try await script.run(keys: keys, args: arguments)
    }

    /// ``evalRaw(_:keys:arguments:)`` with errors as ``PolyglotError``.
    func eval(_ script: RedisScript, keys: [any RedisArgument], arguments: [any RedisArgument], during what: String) async throws -> RESPValue {
        do {
            return try await evalRaw(script, keys: keys, arguments: arguments)
        } catch {
            throw translate(error, during: what)
        }
    }

    /// Refuses a value over the engine's `maxValueBytes` before anything is sent.
    func checkValueSize(_ n: Int, what: String) throws {
        if n > maxValueBytes {
            throw PolyglotError(.limitExceeded, "Engine '\(engineName)' (redis): \(what) is \(n) bytes; the engine's limit is \(maxValueBytes) (maxValueBytes). Nothing was written.",
                                fix: "Store large blobs elsewhere and keep a reference, or raise the engine option maxValueBytes.")
        }
    }

    /// Client and server errors as ``PolyglotError``: a value of the wrong type (`WRONGTYPE`) is a `conflict`;
    /// outages are retryable `engineUnavailable`.
    func translate(_ error: any Error, during what: String) -> any Error {
        if let e = error as? PolyglotError { return e }
        if error is CancellationError { return error }
        guard let r = error as? RedisError else {
            return PolyglotError(.engineFailure, "Engine '\(engineName)' (redis at \(address)) failed during \(what): \(error).", fix: "Check the server's log.")
        }
        if r.serverCode == "WRONGTYPE" {
            return PolyglotError(.conflict, "Engine '\(engineName)' (redis at \(address)): \(what) found a key of another Redis type: \(r.serverError?.message ?? r.message).",
                                 fix: "Another program wrote this key with another type; use a different keyPrefix, or delete the key.")
        }
        var p = r.polyglotError
        p.message = "Engine '\(engineName)' (redis at \(address)) failed during \(what): \(r.message)"
        return p
    }

    /// Whether a client error means Redis cannot be reached (as opposed to an error reply).
    static func isOutage(_ error: any Error) -> Bool {
        guard let r = error as? RedisError else { return false }
        switch r.kind {
        case .connectFailed, .connectionClosed, .timeout, .unavailable, .tls, .authenticationFailed, .closed: return true
        case .server: return ["LOADING", "MASTERDOWN", "BUSY", "CLUSTERDOWN"].contains(r.serverCode ?? "")
        default: return false
        }
    }

    func close() async { await client.close() }
}

extension RESPValue {
    /// The bulk string's bytes as `Data` (one copy); nil for anything else.
    var data: Data? {
        guard case .bulkString(let b) = self else { return nil }
        return Data(b.readableBytesView)
    }
}
