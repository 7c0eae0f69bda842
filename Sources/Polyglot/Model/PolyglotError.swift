/// The one error type Polyglot throws. Its message says what was wrong; `fix` says what to do.
///
/// ```swift
/// do { _ = try db.documents("prodcts") }
/// catch let error as PolyglotError where error.code == .unknownDataset {
///     print(error)   // Unknown dataset 'prodcts'. Fix: declare it under `datasets:` ... (known: products, ...)
/// }
/// ```
public struct PolyglotError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programmatic handling.
    public enum Code: String, Sendable, Hashable {
        case invalidDataMap
        case unknownDataset
        case unknownEngine
        case unknownEngineKind
        case wrongModel
        case missingCapability
        case malformedJSON
        case invalidFilter
        case invalidVector
        case limitExceeded
        case invalidArgument
        case notFound
        case conflict
        case engineFailure
        case engineUnavailable
        /// An embedder (a model endpoint) refused or failed a request.
        case embedderFailure
        case transactionFailed
        case closed
        /// A read asked for data at least as fresh as a token, and the projection did not catch up in time.
        case stale
    }

    public var code: Code
    /// What went wrong, naming the dataset, field or value involved.
    public var message: String
    /// What to do about it.
    public var fix: String?
    /// Whether retrying the same call may succeed (busy engine, lost connection).
    public var isRetryable: Bool

    public init(_ code: Code, _ message: String, fix: String? = nil, retryable: Bool = false) {
        self.code = code
        self.message = message
        self.fix = fix
        self.isRetryable = retryable
    }

    public var description: String {
        if let fix { return "\(message) Fix: \(fix)" }
        return message
    }
}

extension PolyglotError {
    static func unknownDataset(_ name: String, known: [String]) -> PolyglotError {
        let list = known.isEmpty ? "none declared" : known.sorted().joined(separator: ", ")
        return PolyglotError(.unknownDataset, "Unknown dataset '\(name)' (known: \(list)).",
                             fix: "Declare it under `datasets:` in the data map, or check the spelling.")
    }

    static func wrongModel(_ dataset: String, is actual: DataModel, wanted: DataModel, operation: String) -> PolyglotError {
        PolyglotError(.wrongModel, "Dataset '\(dataset)' is a \(actual.rawValue) dataset; \(operation) needs a \(wanted.rawValue) dataset.",
                      fix: "Use db.\(actual.accessorName)(\"\(dataset)\"), or declare a \(wanted.rawValue) dataset for this data.")
    }
}
