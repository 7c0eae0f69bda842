import Foundation

/// Turns texts into embeddings for a `vectors` projection that names it (`embedder:`), and for
/// `nearest(text:)` on that projection.
///
/// Polyglot ships two: ``HashingEmbedder`` (`kind: hashing`, offline, deterministic, the default) and
/// ``OpenAIEmbedder`` (`kind: openai`, any OpenAI-compatible `/v1/embeddings` endpoint). Pass your own to
/// `Polyglot(map:registry:embedders:)` under a name the data map uses.
///
/// A projection whose embedder is not the hashing one is embedded by the relay, after the write commits: a slow
/// or failing model endpoint never holds a write or a transaction, and its retries hold back only its own
/// projection. Reads that must see a write's embedding pass its token (`db.reading(atLeast:)`).
public protocol Embedder: Sendable {
    /// The length of every vector it returns.
    var dimension: Int { get }
    /// One embedding per text, in the order given. Throws `PolyglotError` with code `.embedderFailure`;
    /// `isRetryable` says whether the same call may succeed later (rate limited, endpoint down).
    func embed(_ texts: [String]) async throws -> [[Float]]
}

extension HashingEmbedder: Embedder {
    public func embed(_ texts: [String]) async throws -> [[Float]] { texts.map { embed($0) } }
}

/// An embedder declared in the data map, under `embedders:`.
///
/// ```yaml
/// embedders:
///   openai:
///     kind: openai
///     url: https://api.openai.com/v1        # any OpenAI-compatible endpoint: vLLM, Ollama, LiteLLM, ...
///     model: text-embedding-3-small
///     dimension: 256                        # sent as `dimensions` when the projection's dimension differs from the model's
///     apiKeyEnv: OPENAI_API_KEY             # the key is read from this variable, never written in the map
///     batchSize: 64
///     timeout: 30s
///     maxAttempts: 5
/// datasets:
///   articles:
///     model: documents
///     engine: primary
///     projections:
///       - { kind: vectors, engine: primary, fields: [title, body], dimension: 256, embedder: openai }
/// ```
public struct EmbedderSpec: Sendable, Hashable, Codable {
    public var name: String
    /// `openai` or `hashing`.
    public var kind: String
    /// The API base, up to and including `/v1`.
    public var url: String?
    public var model: String?
    /// The environment variable holding the API key (sent as `Authorization: Bearer`).
    public var apiKeyEnv: String?
    /// Whether to ask the endpoint for this many dimensions (`dimensions`, for models that can shorten their
    /// embeddings); by default the projection's dimension is checked against what the model returns.
    public var requestDimensions: Bool
    /// Texts per request.
    public var batchSize: Int
    /// Per request.
    public var timeout: Duration
    /// Attempts per request, with exponential backoff between them, for rate limits (429), server errors (5xx)
    /// and lost connections. Other errors fail at once.
    public var maxAttempts: Int

    public init(name: String, kind: String, url: String? = nil, model: String? = nil, apiKeyEnv: String? = nil,
                requestDimensions: Bool = false, batchSize: Int = 64, timeout: Duration = .seconds(30), maxAttempts: Int = 5) {
        self.name = name; self.kind = kind; self.url = url; self.model = model; self.apiKeyEnv = apiKeyEnv
        self.requestDimensions = requestDimensions; self.batchSize = batchSize; self.timeout = timeout; self.maxAttempts = maxAttempts
    }

    /// The kinds the data map accepts.
    public static let kinds = ["hashing", "openai"]
    /// The name a projection uses for the built-in hashing embedder without declaring it.
    public static let hashing = "hashing"
}

extension ProjectionSpec {
    /// Whether the relay computes this vectors projection's embeddings (an embedder other than the built-in
    /// hashing one), rather than the engine in the write's own transaction.
    public var isEmbeddedByRelay: Bool {
        kind == .vectors && vectorField == nil && embedder != nil && embedder != EmbedderSpec.hashing
    }

    /// The text a vectors projection embeds for a document: its `fields`, as text, joined by spaces.
    public func embeddingText(of body: JSON) -> String {
        fields.map { Self.text(body[FieldPath($0)]) }.joined(separator: " ")
    }
}
