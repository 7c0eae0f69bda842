import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Polyglot
import Prometheus
import ServiceLifecycle
import Synchronization

/// The HTTP data API and dashboard over one open ``Polyglot``.
///
/// ```swift
/// let db = try await Polyglot(map: DataMap(contentsOf: "polyglot.yml"), registry: registry)
/// let server = try PolyglotServer(db: db, configuration: ServerConfiguration())
/// try await server.run()            // until SIGTERM/SIGINT; then closes `db`
/// ```
///
/// Routes, auth, limits and the OpenAPI document come from one table (``routes``), so `/openapi.json` always
/// describes exactly what the server serves.
public final class PolyglotServer: Sendable {
    public let db: Polyglot
    public let configuration: ServerConfiguration
    /// Whether requests need an API key (decided at start-up; see ``ServerConfiguration/authenticationRequired()``).
    public let authRequired: Bool
    let relay: Relay
    let sampler: TelemetrySampler
    let limiter: RateLimiter
    let metrics: PrometheusCollectorRegistry
    let logger: Logger
    /// The newest write position this server saw per source engine (for projection lag on the dashboard).
    let lastWrite = Mutex<[String: Int64]>([:])
    /// Serializes conditional writes (If-Match) per document within this process.
    let conditionalLocks = StripedLocks(count: 64)
    let startedAt = Date()
    static let version = "0.7.0"

    /// - Parameters:
    ///   - metrics: the registry `/metrics` exposes; bootstrap swift-metrics with a `PrometheusMetricsFactory`
    ///     on the same registry so the library's telemetry appears there too (`polyglot serve` does).
    ///   - logger: request logs and server events. No secret is ever logged.
    public init(db: Polyglot, configuration: ServerConfiguration, metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                logger: Logger = Logger(label: "polyglot.server")) throws {
        self.db = db
        self.configuration = configuration
        self.authRequired = try configuration.authenticationRequired()
        self.relay = db.relay()
        self.sampler = TelemetrySampler(telemetry: db.telemetry, capacity: configuration.sampleHistory)
        self.limiter = RateLimiter(rate: configuration.rateLimitPerSecond, burst: configuration.rateLimitBurst)
        self.metrics = metrics
        self.logger = logger
    }

    /// The router with every route of ``routes``, request logging and problem responses.
    public func router() -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger, metrics: metrics))
        // A span per request (swift-distributed-tracing; a no-op until the application bootstraps a tracer).
        router.add(middleware: TracingMiddleware())
        for route in routes() {
            router.on(RouterPath(route.path), method: route.method) { request, context in
                try await self.serve(route, request, context)
            }
        }
        return router
    }

    /// The Hummingbird application, with the relay, the telemetry sampler and the library's own service
    /// (telemetry flushes and maintenance) alongside.
    public func application() -> some ApplicationProtocol {
        // Every service runs until graceful shutdown: a service that returns early stops the group.
        var services: [any Service] = [DatabaseService(db: db), SamplerService(sampler: sampler, interval: configuration.sampleInterval)]
        if !relay.copies.isEmpty { services.append(RelayService(relay: relay)) }
        return Application(router: router(),
                           configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "polyglot"),
                           services: services, logger: logger)
    }

    /// Serves until SIGTERM or SIGINT, then finishes in-flight requests, stops the relay, and closes the database.
    public func run() async throws {
        logger.info("polyglot serve", metadata: ["address": "\(configuration.host):\(configuration.port)", "auth": "\(authRequired ? "required" : "off")",
                                                 "datasets": "\(db.map.datasets.count)"])
        do {
            try await application().runService()
        } catch {
            try? await db.close()
            throw error
        }
        try await db.close()
    }

    // MARK: - Serving one route

    func serve(_ route: RouteSpec, _ request: Request, _ context: APIContext) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        var keyId = "-"
        var response: Response
        do {
            let dataset = try context.parameters.get("dataset").map { try Self.decode($0, name: "dataset") }
            if route.access != .open && authRequired {
                let key = try authenticate(request)
                keyId = key.id
                context.key = key
                try authorize(key, route.access, dataset: dataset)
            }
            if route.access != .open {
                let subject = context.key.map { "key:\($0.id)" } ?? "addr:\(context.peer)"
                if let wait = limiter.take(subject) {
                    throw Problem(.tooManyRequests, code: "rate-limited",
                                  detail: "This \(context.key == nil ? "client" : "key") sent more than \(Self.rateText(configuration.rateLimitPerSecond)) (bursts of \(Self.number(configuration.rateLimitBurst))).",
                                  fix: "Retry after the Retry-After header's seconds, or ask for a higher --rate-limit.",
                                  headers: ["Retry-After": "\(max(1, Int(wait.rounded(.up))))"])
                }
            }
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > configuration.maxBodyBytes {
                throw Self.tooLarge(configuration.maxBodyBytes)
            }
            let token = try Self.token(request)
            let handler = route.handler
            let timeout = configuration.requestTimeout
            let ctx = context
            response = try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask {
                    if let token { return try await self.db.reading(atLeast: token) { try await handler(request, ctx) } }
                    return try await handler(request, ctx)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let r = first else {
                    throw Problem(.serviceUnavailable, code: "timeout", detail: "The request took longer than the server's limit of \(timeout).",
                                  fix: "Ask for less (a smaller limit or batch), or raise --timeout.", headers: ["Retry-After": "1"])
                }
                return r
            }
        } catch {
            let problem = Problem.from(error)
            if problem.status == .internalServerError {
                logger.error("request failed", metadata: ["route": "\(route.operationId)", "error": "\(error)"])
            }
            response = problem.response()
        }
        let elapsed = ContinuousClock.now - start
        ProblemMiddleware.record(route: route.path, method: request.method, status: response.status, elapsed: elapsed, metrics: metrics)
        logger.info("request", metadata: [
            "method": "\(request.method)", "path": "\(request.uri.path)", "route": "\(route.operationId)",
            "status": "\(response.status.code)", "ms": "\(String(format: "%.3f", Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000))",
            "key": "\(keyId)",
        ])
        return response
    }

    func authenticate(_ request: Request) throws -> StoredKey {
        var presented = request.headers[HTTPField.Name("X-API-Key")!]
        if presented == nil, let auth = request.headers[.authorization] {
            let parts = auth.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { presented = String(parts[1]).trimmingCharacters(in: .whitespaces) }
        }
        guard let presented, !presented.isEmpty else {
            throw Problem(.unauthorized, code: "missing-key", detail: "This server requires an API key and the request has none.",
                          fix: "Send `Authorization: Bearer <key>` or `X-API-Key: <key>`; create keys with `polyglot keys create`.",
                          headers: ["WWW-Authenticate": "Bearer realm=\"polyglot\""])
        }
        guard let key = configuration.keys?.authenticate(presented) else {
            throw Problem(.unauthorized, code: "invalid-key", detail: "The API key is unknown or revoked.",
                          fix: "Check the key (`polyglot keys list` shows ids and whether each is revoked) or create a new one.",
                          headers: ["WWW-Authenticate": "Bearer realm=\"polyglot\", error=\"invalid_token\""])
        }
        return key
    }

    func authorize(_ key: StoredKey, _ access: Access, dataset: String?) throws {
        switch access {
        case .open, .anyKey: return
        case .dataset(let op):
            if key.allows(op, on: dataset) { return }
            throw Problem(.forbidden, code: "missing-scope", detail: "Key '\(key.id)' (\(key.name)) has no '\(op.rawValue)' scope on dataset '\(dataset ?? "?")' (it has: \(key.scopes.map(\.description).joined(separator: ", "))).",
                          fix: "Use a key with \(dataset ?? "*"):\(op.rawValue), or create one with `polyglot keys create --scope \(dataset ?? "*"):\(op.rawValue)`.")
        case .server(let op):
            if key.allows(op, on: nil) { return }
            throw Problem(.forbidden, code: "missing-scope", detail: "Key '\(key.id)' (\(key.name)) has no '*:\(op.rawValue)' scope, which server-wide figures need (it has: \(key.scopes.map(\.description).joined(separator: ", "))).",
                          fix: "Use a key with *:\(op.rawValue).")
        }
    }

    static func token(_ request: Request) throws -> ConsistencyToken? {
        guard let text = request.headers[HTTPField.Name("Polyglot-Token")!] else { return nil }
        guard let token = ConsistencyToken(text) else {
            throw Problem.badRequest("bad-token", "'\(text)' is not a consistency token.", fix: "Send back the Polyglot-Token header of a write unchanged (engine:position).")
        }
        return token
    }

    /// A request rate as people say it: "20 requests per second", "2.5 requests per second", "one request every 5 s"
    /// (rates under one per second, which `--rate-limit` accepts, read as "0 requests per second" otherwise).
    static func rateText(_ perSecond: Double) -> String {
        perSecond >= 1 ? "\(number(perSecond)) requests per second" : "one request every \(number(1 / perSecond)) s"
    }

    /// A whole number without its ".0", else one decimal.
    static func number(_ x: Double) -> String {
        x.rounded() == x && abs(x) < 1e15 ? String(Int(x)) : String(format: "%.1f", x)
    }

    static func tooLarge(_ max: Int) -> Problem {
        Problem(.contentTooLarge, code: "body-too-large", detail: "The request body is larger than this server's limit of \(max) bytes.",
                fix: "Send a smaller body, split a batch into several requests, or raise --max-body.")
    }

    /// A path parameter, percent-decoded.
    static func decode(_ raw: String, name: String) throws -> String {
        guard let s = raw.removingPercentEncoding, !s.isEmpty else {
            throw Problem.badRequest("bad-path", "The path parameter '\(name)' is not valid percent-encoding.", fix: "Percent-encode ids and keys (e.g. '/' as %2F).")
        }
        return s
    }

    /// Takes a telemetry sample for the dashboard's charts now (the server also does every `sampleInterval`).
    public func sampleTelemetry() { sampler.sample() }

    func noteWrite(_ token: ConsistencyToken?) {
        guard let token else { return }
        lastWrite.withLock { $0[token.engine] = max($0[token.engine] ?? 0, token.position) }
    }
}

/// Turns errors thrown outside routes (no route, oversized bodies) into problems, and logs them.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let logger: Logger
    let metrics: PrometheusCollectorRegistry

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            return try await next(request, context)
        } catch {
            let problem = Problem.from(error)
            let elapsed = ContinuousClock.now - start
            Self.record(route: "unmatched", method: request.method, status: problem.status, elapsed: elapsed, metrics: metrics)
            logger.info("request", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(problem.status.code)", "key": "-"])
            return problem.response()
        }
    }

    static func record(route: String, method: HTTPRequest.Method, status: HTTPResponse.Status, elapsed: Duration, metrics: PrometheusCollectorRegistry) {
        let labels = [("route", route), ("method", method.rawValue), ("status", "\(status.code)")]
        metrics.makeCounter(descriptor: requestsTotal, labels: labels).increment()
        metrics.makeDurationHistogram(descriptor: requestDuration, labels: [("route", route), ("method", method.rawValue)], buckets: durationBuckets)
            .recordNanoseconds(Int64(elapsed.components.seconds) * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }

    static var requestsTotal: MetricNameDescriptor { MetricNameDescriptor(namespace: "polyglot", subsystem: "http", metricName: "requests", unitName: "total",
                                                    helpText: "HTTP requests served, by route, method and status.") }
    static var requestDuration: MetricNameDescriptor { MetricNameDescriptor(namespace: "polyglot", subsystem: "http", metricName: "request_duration", unitName: "seconds",
                                                      helpText: "HTTP request latency inside the server, by route and method.") }
    static let durationBuckets: [Duration] = [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
                                              .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                              .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10)]
}

/// A token bucket per caller.
final class RateLimiter: Sendable {
    private struct Bucket { var tokens: Double; var at: ContinuousClock.Instant }
    private let buckets = Mutex<[String: Bucket]>([:])
    let rate: Double, burst: Double

    init(rate: Double, burst: Double) { self.rate = max(rate, 0.001); self.burst = max(burst, 1) }

    /// Takes one token; nil when allowed, else the seconds until one is available.
    func take(_ subject: String, now: ContinuousClock.Instant = .now) -> Double? {
        buckets.withLock { all in
            var b = all[subject] ?? Bucket(tokens: burst, at: now)
            let elapsed = now - b.at
            b.tokens = min(burst, b.tokens + (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * rate)
            b.at = now
            if all.count > 10_000 { all = all.filter { now - $0.value.at < .seconds(60) } }
            if b.tokens >= 1 {
                b.tokens -= 1
                all[subject] = b
                return nil
            }
            all[subject] = b
            return (1 - b.tokens) / rate
        }
    }
}

/// Async locks by hash, so conditional writes to one document are serialized within this process.
final class StripedLocks: Sendable {
    private final class Slot: Sendable { let state = Mutex<(held: Bool, queue: [CheckedContinuation<Void, Never>])>((false, [])) }
    private let waiters: [Slot]
    init(count: Int) { waiters = (0..<count).map { _ in Slot() } }

    func withLock<R: Sendable>(_ key: String, _ body: () async throws -> R) async throws -> R {
        var h = Hasher()
        h.combine(key)
        let slot = waiters[Int(UInt(bitPattern: h.finalize()) % UInt(waiters.count))]
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let run = slot.state.withLock { s -> Bool in
                if s.held { s.queue.append(c); return false }
                s.held = true
                return true
            }
            if run { c.resume() }
        }
        defer {
            let next = slot.state.withLock { s -> CheckedContinuation<Void, Never>? in
                if s.queue.isEmpty { s.held = false; return nil }
                return s.queue.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}

struct DatabaseService: Service {
    let db: Polyglot
    /// The library's own loop: telemetry flushes and maintenance. The relay runs as its own service.
    func run() async throws { try await cancelWhenGracefulShutdown { try await db.run(relay: nil) } }
}

struct RelayService: Service {
    let relay: Relay
    func run() async throws { try await relay.run() }
}

struct SamplerService: Service {
    let sampler: TelemetrySampler
    let interval: Duration
    func run() async throws { await cancelWhenGracefulShutdown { await sampler.run(every: interval) } }
}
