import Foundation
import Polyglot

/// How `polyglot serve` listens and what it allows.
///
/// ```swift
/// var config = ServerConfiguration()
/// config.port = 8080
/// config.keys = KeyStore(path: "polyglot-data/polyglot-keys.json")
/// let server = try PolyglotServer(db: db, configuration: config)
/// ```
public struct ServerConfiguration: Sendable {
    /// Whether requests must carry an API key.
    public enum Authentication: String, Sendable, CaseIterable {
        /// Required when the key file has an active key or the server binds anywhere but loopback (the default).
        case automatic
        /// Always required.
        case required
        /// Never required; refused unless the server binds to loopback.
        case off
    }

    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    public var authentication: Authentication = .automatic
    /// The key file; nil means no keys (only possible with authentication off, on loopback).
    public var keys: KeyStore?
    /// Largest request body accepted, in bytes.
    public var maxBodyBytes: Int = 1 << 20
    /// Requests per second allowed per key (per client address without a key), with bursts of `rateLimitBurst`.
    public var rateLimitPerSecond: Double = 1000
    public var rateLimitBurst: Double = 2000
    /// A request still running after this long is answered 503 and cancelled.
    public var requestTimeout: Duration = .seconds(10)
    /// How far back the dashboard's charts go, and how often the server samples telemetry for them.
    public var sampleInterval: Duration = .seconds(2)
    public var sampleHistory: Int = 90

    public init() {}

    /// Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost).
    public var bindsLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Decides whether keys are required, or throws why the server must not start.
    public func authenticationRequired() throws -> Bool {
        let hasKeys = try keys?.hasActiveKeys() ?? false
        switch authentication {
        case .off:
            if !bindsLoopback {
                throw PolyglotError(.invalidArgument, "Refusing to serve \(host):\(port) without authentication: only loopback addresses may run with --auth off.",
                                    fix: "Bind to 127.0.0.1, or create a key with `polyglot keys create --scope '*:admin'` and drop --auth off.")
            }
            return false
        case .required, .automatic:
            let required = authentication == .required || hasKeys || !bindsLoopback
            if required && !hasKeys {
                throw PolyglotError(.invalidArgument, "Serving \(host):\(port) requires API keys, and \(keys?.path ?? "the key file") has no active key.",
                                    fix: "Create one with `polyglot keys create --name ops --scope '*:admin'` (or bind to 127.0.0.1 for keyless local use).")
            }
            return required
        }
    }
}
