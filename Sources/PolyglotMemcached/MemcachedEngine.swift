import Foundation
import Logging
import NIOCore
import Polyglot
import Synchronization

/// The memcached engine (`kind: memcached`), over the ASCII protocol: `keyValue` datasets and the `cache`
/// projection of documents datasets. memcached keeps nothing on disk and evicts under memory pressure, so put
/// here only data whose loss is acceptable.
///
/// ```yaml
/// engines:
///   primary: { kind: sqlite, path: app.sqlite }
///   cache:
///     kind: memcached
///     url: memcached://127.0.0.1:11211
///     options: { poolSize: 4, commandTimeout: 2s, keyPrefix: "myapp:" }
/// datasets:
///   products: { model: documents, engine: primary, projections: [{ kind: cache, engine: cache, ttl: 5m, jitter: 0.1 }] }
///   sessions: { model: keyValue, engine: cache, ttl: 30m }
/// ```
///
/// ```swift
/// var registry = EngineRegistry.builtIn
/// registry.registerMemcached()
/// let db = try await Polyglot(map: map, registry: registry)
/// ```
///
/// Options: `poolSize` (2), `connectTimeout` (5s), `commandTimeout` (5s), `keyPrefix` (`polyglot:`),
/// `maxValueBytes` (1 MiB − 1 KiB). See docs/memcached.md for key encoding, scans and limits.
public final class MemcachedEngine: Engine, EngineFactory {
    public static let kind = "memcached"
    public static let capabilities: Set<Capability> = [.keyValue, .cache]

    public let spec: EngineSpec
    public var capabilities: Set<Capability> { MemcachedEngine.capabilities }
    /// The client, for memcached commands the engine does not wrap.
    public let client: MemcachedClient
    let settings: MemcachedSettings
    let logger: Logger
    let cache: MemcachedCacheBackend

    init(spec: EngineSpec, settings: MemcachedSettings, logger: Logger) {
        self.spec = spec
        self.settings = settings
        self.logger = logger
        client = MemcachedClient(configuration: .init(host: settings.host, port: settings.port, poolSize: settings.poolSize,
                                                      connectTimeout: settings.connectTimeout, commandTimeout: settings.commandTimeout),
                                 logger: logger)
        cache = MemcachedCacheBackend(name: spec.name, settings: settings, client: client, logger: logger)
    }

    /// Opens the engine and checks that the server answers and supports meta commands (memcached 1.6 or later).
    public static func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine {
        let settings = try MemcachedSettings(spec)
        let engine = MemcachedEngine(spec: spec, settings: settings, logger: context.logger)
        do {
            try await engine.ping()
        } catch {
            await engine.client.shutdown()
            throw error
        }
        await engine.cache.refreshServerStats()
        return engine
    }

    public func prepare(_ datasets: [DatasetSpec]) async throws {
        for d in datasets where d.model == .keyValue {
            _ = try keyCoder(for: d)
        }
    }

    func keyCoder(for dataset: DatasetSpec) throws -> KeyCoder {
        let coder = KeyCoder(keyPrefix: settings.keyPrefix, area: "v", dataset: dataset.name)
        // A hashed key is the namespace, `h:` and 64 hex digits.
        guard coder.namespace.utf8.count + 66 <= MemcachedKey.maxBytes else {
            throw PolyglotError(.invalidDataMap, "Dataset '\(dataset.name)' on memcached engine '\(spec.name)': keyPrefix and dataset name take \(coder.namespace.utf8.count) bytes of the 250 a memcached key allows.",
                                fix: "Use a shorter dataset name or keyPrefix (together under 180 bytes).")
        }
        return coder
    }

    public func keyValueStore(for dataset: DatasetSpec) throws -> any KeyValueStore {
        MemcachedKeyValueStore(engine: self, dataset: dataset.name, coder: try keyCoder(for: dataset))
    }

    public func cacheBackend() throws -> any CacheBackend { cache }

    /// Sends `version`; fails when the server is unreachable or older than 1.6 (no meta commands).
    public func ping() async throws {
        try await call("ping") {
            _ = try await client.version()
            let probe = try await client.metaGet(settings.keyPrefix.isEmpty ? "polyglot:ping" : settings.keyPrefix + "ping", flags: ["v"])
            guard probe.code == "EN" || probe.code == "VA" else {
                throw MemcachedError(.protocolViolation, "memcached answered '\(probe.code)' to a meta get")
            }
        }
    }

    public func maintain(now: Date) async throws {
        await cache.refreshServerStats()
    }

    public func close() async throws {
        await client.shutdown()
    }

    /// Runs a client call, translating ``MemcachedError`` to ``PolyglotError``.
    func call<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let e as MemcachedError {
            throw MemcachedEngine.translate(e, engine: spec.name, address: client.address, during: what)
        }
    }

    /// Maps a client error to a ``PolyglotError`` that carries the server's message and says what to do.
    public static func translate(_ e: MemcachedError, engine: String, address: String, during what: String) -> PolyglotError {
        switch e.kind {
        case .connectFailed, .connectionClosed, .timeout, .protocolViolation:
            return PolyglotError(.engineUnavailable, "memcached engine '\(engine)' (\(address)) failed during \(what): \(e.message).",
                                 fix: "Check that memcached is running and reachable at \(address); the operation can be retried once it is.", retryable: true)
        case .busy:
            return PolyglotError(.engineUnavailable, "memcached engine '\(engine)' was busy during \(what): \(e).",
                                 fix: "Retry shortly; another key listing (lru_crawler) was running.", retryable: true)
        case .closed:
            return PolyglotError(.closed, "memcached engine '\(engine)' is closed (\(what)).", fix: "Open a new Polyglot instance.")
        case .invalidRequest:
            return PolyglotError(.invalidArgument, "memcached engine '\(engine)' refused \(what): \(e.message).", fix: "Check the key and value passed.")
        case .serverError where e.message.contains("too large"):
            return PolyglotError(.limitExceeded, "memcached engine '\(engine)' refused \(what): \(e). memcached also drops the key's previous value when it refuses an item.",
                                 fix: "Lower the engine's maxValueBytes to the server's item size limit (-I, 1 MiB by default), or store smaller values.")
        case .serverError where e.message.contains("out of memory"):
            return PolyglotError(.engineFailure, "memcached engine '\(engine)' ran out of memory during \(what): \(e).",
                                 fix: "Give memcached more memory (-m), or let it evict (do not run it with -M).", retryable: true)
        case .serverError:
            return PolyglotError(.engineFailure, "memcached engine '\(engine)' failed during \(what): \(e).", fix: "Check memcached's log.")
        case .clientError:
            return PolyglotError(.engineFailure, "memcached engine '\(engine)' rejected the request of \(what): \(e).",
                                 fix: "This is a bug in the engine or an incompatible server; report it with the message.")
        case .error:
            return PolyglotError(.engineFailure, "memcached engine '\(engine)' does not know a command used by \(what): \(e).",
                                 fix: "Use memcached 1.6 or later (the engine uses meta commands and lru_crawler).")
        }
    }

    /// Refuses, before sending, an item larger than `maxValueBytes` (memcached would refuse it and drop the old value).
    func checkSize(_ bytes: Int, key: String, dataset: String?) throws {
        guard bytes > settings.maxValueBytes else { return }
        let which = dataset.map { "Dataset '\($0)': the value for '\(key)'" } ?? "The cache entry '\(key)'"
        throw PolyglotError(.limitExceeded, "\(which) takes \(bytes) bytes in memcached (the value and Polyglot's header); memcached engine '\(spec.name)' accepts at most \(settings.maxValueBytes) (maxValueBytes). Nothing was written.",
                            fix: "Store large values elsewhere and keep a reference here, or raise the server's -I limit and the engine's maxValueBytes together.")
    }

    /// How many times a compare-and-set loop retries under contention before giving up.
    static let casAttempts = 500

    /// A short random pause after a lost compare-and-set race, so contending writers spread out.
    static func backoff(_ attempt: Int) async {
        if attempt < 3 { await Task.yield(); return }
        try? await Task.sleep(for: .microseconds(Int.random(in: 50...(200 * min(attempt, 20)))))
    }
}

extension EngineRegistry {
    /// Registers the memcached engine (`kind: memcached`).
    public mutating func registerMemcached() { register(MemcachedEngine.self) }
}
