import Foundation
import Logging
import NIOCore
import Polyglot

/// The Redis engine (`kind: redis`): keyValue datasets, the cache projection of documents datasets, and, through
/// the engine object, sessions, rate limits and leaderboards.
///
/// ```yaml
/// engines:
///   primary: { kind: postgres, url: "postgres://app@127.0.0.1:5432/shop" }
///   cache:   { kind: redis, url: "redis://127.0.0.1:6379/0", options: { keyPrefix: "shop:", poolSize: 8 } }
/// datasets:
///   products:
///     model: documents
///     engine: primary
///     projections: [{ kind: cache, engine: cache, ttl: 5m, jitter: 0.1 }]
///   counters: { model: keyValue, engine: cache }
/// ```
///
/// ```swift
/// var registry = EngineRegistry.builtIn
/// registry.registerRedis()
/// let db = try await Polyglot(map: map, registry: registry)
/// let redis = try db.engine("cache") as? RedisEngine
/// let limiter = try redis?.rateLimiter("login", limit: 5, per: .seconds(60))
/// ```
///
/// Options: `poolSize` (4), `connectTimeout` (2s), `commandTimeout` (5s), `keyPrefix` (`polyglot:`),
/// `maxValueBytes` (16MB), `lockTimeout` (3s), `waitTimeout` (= lockTimeout), `tombstoneLifetime` (10s),
/// `retryInterval` (1s), `maxPendingInvalidations` (100000). See docs/redis.md.
public final class RedisEngine: Engine, EngineFactory {
    public static let kind = "redis"
    public static let capabilities: Set<Capability> = [.keyValue, .cache, .stream]

    public let spec: EngineSpec
    public var capabilities: Set<Capability> { RedisEngine.capabilities }
    let settings: RedisEngineSettings
    let link: RedisLink
    let logger: Logger
    let cache: RedisCacheBackend

    /// The client the engine uses, for commands the engine does not wrap. Keys you write yourself should stay out
    /// of the engine's `keyPrefix`.
    public var client: RedisClient { link.client }
    /// Prepended to every key the engine writes.
    public var keyPrefix: String { settings.keyPrefix }

    init(spec: EngineSpec, logger: Logger) throws {
        self.spec = spec
        self.logger = logger
        let settings = try RedisEngineSettings(spec)
        self.settings = settings
        let client: RedisClient
        do throws(RedisError) {
            var configuration = try RedisConfiguration(url: settings.url, tls: settings.tlsCA.map { .trusting(caFile: $0) },
                                                       poolSize: settings.poolSize, connectTimeout: settings.connectTimeout,
                                                       commandTimeout: settings.commandTimeout, maxValueBytes: settings.maxValueBytes + 64)
            configuration.logger = logger
            client = try RedisClient(configuration: configuration)
        } catch {
            var p = error.polyglotError
            p.code = .invalidDataMap
            p.message = "Engine '\(spec.name)' (redis): \(error.message)"
            throw p
        }
        link = RedisLink(client: client, engineName: spec.name, address: settings.displayAddress, maxValueBytes: settings.maxValueBytes)
        cache = RedisCacheBackend(link: link, settings: settings, logger: logger, engineName: spec.name)
    }

    public static func open(_ spec: EngineSpec, context: EngineContext) async throws -> any Engine {
        try RedisEngine(spec: spec, logger: context.logger)
    }

    /// Checks that dataset names fit in keys. Redis itself need not be up: a cache that cannot be reached
    /// starts degraded (reads go to the source), and keyValue calls fail with `engineUnavailable` until it is.
    public func prepare(_ datasets: [DatasetSpec]) async throws {
        for d in datasets where d.name.contains(":") || d.name.contains("*") {
            throw PolyglotError(.invalidDataMap, "Dataset '\(d.name)' on Redis engine '\(spec.name)': the name contains ':' or '*', which Redis keys use as separators and patterns.",
                                fix: "Rename the dataset with letters, digits, '_' or '-'.")
        }
        do {
            _ = try await link.sendRaw(RedisCommand("PING"))
        } catch {
            cache.unreachable(error, during: "start-up")
        }
    }

    public func keyValueStore(for dataset: DatasetSpec) throws -> any KeyValueStore {
        RedisKeyValueStore(link: link, dataset: dataset.name, prefix: settings.keyPrefix + "kv:" + dataset.name + ":", engineName: spec.name)
    }

    public func cacheBackend() throws -> any CacheBackend { cache }

    public func ping() async throws {
        _ = try await link.send("PING")
    }

    public func close() async throws {
        await link.close()
    }

    /// Whether the cache is degraded (Redis unreachable), how many invalidations wait for its return, and the
    /// last error seen.
    public var cacheStatus: (degraded: Bool, pendingInvalidations: Int, lastError: String) { cache.status }
}

extension EngineRegistry {
    /// Registers the Redis engine (`kind: redis`).
    public mutating func registerRedis() { register(RedisEngine.self) }
}
