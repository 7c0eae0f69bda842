import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging

/// An ``Embedder`` for any OpenAI-compatible `POST /v1/embeddings` endpoint: OpenAI itself, Azure OpenAI's
/// compatible route, vLLM, Ollama, LiteLLM, text-embeddings-inference.
///
/// - Texts are sent `batchSize` at a time, as `input: [...]`; the reply's `data[i].index` puts them back in order.
/// - Rate limits (429), server errors (5xx), timeouts and lost connections are retried up to `maxAttempts` times,
///   waiting 0.5 s, 1 s, 2 s, ... (with jitter, at most 30 s), or what `Retry-After` asks. Any other error (a bad
///   key, an unknown model, an input too long) fails at once with the endpoint's own message.
/// - Every vector is checked against `dimension` before it is returned.
/// - The API key is never logged.
///
/// ```swift
/// let embedder = OpenAIEmbedder(url: URL(string: "https://api.openai.com/v1")!, model: "text-embedding-3-small",
///                               dimension: 1536, apiKey: ProcessInfo.processInfo.environment["OPENAI_API_KEY"])
/// let vectors = try await embedder.embed(["red running shoe", "trail boot"])
/// ```
public struct OpenAIEmbedder: Embedder {
    public let url: URL
    public let model: String
    public let dimension: Int
    public let batchSize: Int
    public let timeout: Duration
    public let maxAttempts: Int
    /// Whether requests carry `dimensions: dimension` (models that can shorten their output, such as text-embedding-3-*).
    public let requestDimensions: Bool
    private let apiKey: String?
    private let session: URLSession
    private let logger: Logger

    public init(url: URL, model: String, dimension: Int, apiKey: String? = nil, requestDimensions: Bool = false,
                batchSize: Int = 64, timeout: Duration = .seconds(30), maxAttempts: Int = 5,
                logger: Logger = Logger(label: "polyglot.embedder")) {
        self.url = url; self.model = model; self.dimension = dimension; self.apiKey = apiKey
        self.requestDimensions = requestDimensions; self.batchSize = max(1, batchSize); self.timeout = timeout
        self.maxAttempts = max(1, maxAttempts); self.logger = logger
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = Self.seconds(timeout)
        config.timeoutIntervalForResource = Self.seconds(timeout) * Double(self.maxAttempts) + 60
        session = URLSession(configuration: config)
    }

    /// The embedder a data map declares, for a projection of `dimension`; the API key is read from `apiKeyEnv`.
    public init(spec: EmbedderSpec, dimension: Int, environment: [String: String] = ProcessInfo.processInfo.environment,
                logger: Logger = Logger(label: "polyglot.embedder")) throws {
        guard let raw = spec.url, let url = URL(string: raw), let model = spec.model else {
            throw PolyglotError(.invalidDataMap, "Embedder '\(spec.name)' needs `url:` and `model:`.", fix: "Set both under `embedders: { \(spec.name): ... }`.")
        }
        var key: String?
        if let variable = spec.apiKeyEnv {
            guard let value = environment[variable], !value.isEmpty else {
                throw PolyglotError(.invalidDataMap, "Embedder '\(spec.name)' reads its API key from $\(variable), which is not set.",
                                    fix: "Export \(variable) before starting, or remove `apiKeyEnv:` for an endpoint that needs no key.")
            }
            key = value
        }
        self.init(url: url, model: model, dimension: dimension, apiKey: key, requestDimensions: spec.requestDimensions,
                  batchSize: spec.batchSize, timeout: spec.timeout, maxAttempts: spec.maxAttempts, logger: logger)
    }

    public func embed(_ texts: [String]) async throws -> [[Float]] {
        // The API refuses empty strings; an empty text embeds to nothing, which callers treat as "no vector".
        let nonEmpty = texts.indices.filter { !texts[$0].isEmpty }
        var out = texts.map { _ in [Float]() }
        for start in stride(from: 0, to: nonEmpty.count, by: batchSize) {
            let slots = nonEmpty[start..<min(start + batchSize, nonEmpty.count)]
            let vectors = try await embedBatch(slots.map { texts[$0] })
            for (i, v) in zip(slots, vectors) { out[i] = v }
        }
        return out
    }

    private var endpoint: URL { url.appendingPathComponent("embeddings") }

    /// Embeddings of non-empty `texts`, in order.
    private func embedBatch(_ texts: [String]) async throws -> [[Float]] {
        var body: [String: Any] = ["model": model, "input": texts, "encoding_format": "float"]
        if requestDimensions { body["dimensions"] = dimension }
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try JSONSerialization.data(withJSONObject: body)

        var attempt = 0
        while true {
            attempt += 1
            let failure: PolyglotError
            var wait: Duration?
            do {
                let (data, response) = try await session.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                if (200..<300).contains(status) { return try decode(data, expected: texts.count) }
                let retryable = status == 429 || status == 408 || status >= 500
                failure = PolyglotError(.embedderFailure, "Embedder \(endpoint.absoluteString) (model \(model)) answered HTTP \(status): \(Self.message(in: data)).",
                                        fix: Self.fix(status: status), retryable: retryable)
                if let header = (response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Retry-After"), let s = Double(header), s.isFinite, s >= 0 {
                    wait = .milliseconds(Int64(min(s, 60) * 1000))
                }
            } catch let error as PolyglotError {
                throw error
            } catch {
                failure = PolyglotError(.embedderFailure, "Embedder \(endpoint.absoluteString) could not be reached: \(error.localizedDescription).",
                                        fix: "Check that the endpoint is up and the url is right; the call is retried.", retryable: true)
            }
            guard failure.isRetryable, attempt < maxAttempts else {
                if attempt > 1 { throw PolyglotError(failure.code, failure.message + " (after \(attempt) attempts)", fix: failure.fix, retryable: failure.isRetryable) }
                throw failure
            }
            let backoff = wait ?? Self.backoff(attempt: attempt)
            logger.warning("embedder request failed; retrying", metadata: ["endpoint": "\(endpoint.absoluteString)", "attempt": "\(attempt)",
                                                                           "error": "\(failure.message)", "retryIn": "\(backoff)"])
            try await Task.sleep(for: backoff)
        }
    }

    private func decode(_ data: Data, expected: Int) throws -> [[Float]] {
        struct Reply: Decodable {
            struct Item: Decodable { var index: Int; var embedding: [Float] }
            var data: [Item]
        }
        let reply: Reply
        do { reply = try JSONDecoder().decode(Reply.self, from: data) } catch {
            throw PolyglotError(.embedderFailure, "Embedder \(endpoint.absoluteString) answered with a body that is not an embeddings reply: \(String(decoding: data.prefix(200), as: UTF8.self)).",
                                fix: "Point `url:` at an OpenAI-compatible API base (ending in /v1).")
        }
        var out = [[Float]](repeating: [], count: expected)
        for item in reply.data {
            guard out.indices.contains(item.index), out[item.index].isEmpty else {
                throw PolyglotError(.embedderFailure, "Embedder \(endpoint.absoluteString) answered with embedding index \(item.index) for \(expected) inputs.",
                                    fix: "Check that the endpoint is OpenAI-compatible.")
            }
            guard item.embedding.count == dimension else {
                throw PolyglotError(.invalidVector, "Embedder \(endpoint.absoluteString) (model \(model)) returns \(item.embedding.count)-dimensional embeddings; the projection holds \(dimension).",
                                    fix: "Set the projection's `dimension:` to \(item.embedding.count), or `requestDimensions: true` on the embedder if the model can shorten its output.")
            }
            out[item.index] = item.embedding
        }
        if let missing = out.firstIndex(where: \.isEmpty) {
            throw PolyglotError(.embedderFailure, "Embedder \(endpoint.absoluteString) answered without an embedding for input \(missing) of \(expected).",
                                fix: "Check that the endpoint is OpenAI-compatible.", retryable: true)
        }
        return out
    }

    /// The endpoint's own error message (`{"error": {"message": ...}}`), or the start of the body.
    static func message(in data: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let error = object["error"] as? [String: Any], let m = error["message"] as? String { return m }
            if let m = object["error"] as? String { return m }
            if let m = object["detail"] as? String { return m }
        }
        let text = String(decoding: data.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "no body" : text
    }

    static func fix(status: Int) -> String {
        switch status {
        case 401, 403: "Check the API key (the variable named by `apiKeyEnv:`) and its permissions."
        case 404: "Check `url:` (the API base, ending in /v1) and `model:`."
        case 400, 413, 422: "The endpoint refused the input (too long, or a bad setting); shorten the embedded fields or check `model:` and `requestDimensions:`."
        case 429: "The endpoint is rate limiting; requests are retried with backoff. Lower `batchSize:` or raise your quota."
        default: status >= 500 ? "The endpoint failed; requests are retried with backoff." : "Check the embedder settings."
        }
    }

    static func backoff(attempt: Int) -> Duration {
        let base = min(30.0, 0.5 * pow(2.0, Double(attempt - 1)))
        return .milliseconds(Int64(base * Double.random(in: 0.8...1.2) * 1000))
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
