import Crypto
import Foundation
import Polyglot
import Synchronization

/// What a key may do to a dataset. `admin` implies `write`, which implies `read`.
public enum KeyOperation: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case read, write, admin
    var rank: Int { switch self { case .read: 0; case .write: 1; case .admin: 2 } }
    public static func < (a: KeyOperation, b: KeyOperation) -> Bool { a.rank < b.rank }
}

/// One grant: an operation on a dataset, or on every dataset (`*`). Written `dataset:operation`, e.g. `products:write`.
public struct KeyScope: Sendable, Hashable, Codable, CustomStringConvertible {
    public var dataset: String
    public var operation: KeyOperation
    public init(dataset: String, operation: KeyOperation) { self.dataset = dataset; self.operation = operation }

    /// Parses `dataset:operation` (`*:read`, `orders:admin`).
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let op = KeyOperation(rawValue: String(parts[1])) else {
            throw PolyglotError(.invalidArgument, "'\(text)' is not a scope.",
                                fix: "Write a scope as dataset:operation with operation read, write or admin, e.g. products:write or *:read.")
        }
        self.init(dataset: String(parts[0]), operation: op)
    }

    public var description: String { "\(dataset):\(operation.rawValue)" }

    func allows(_ op: KeyOperation, on dataset: String?) -> Bool {
        guard operation >= op else { return false }
        if self.dataset == "*" { return true }
        guard let dataset else { return false }   // server-wide operations need a `*` scope
        return self.dataset == dataset
    }
}

/// A stored API key: its public id, the SHA-256 of its secret (never the secret), and its scopes.
public struct StoredKey: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    /// Lower-case hex SHA-256 of the secret part.
    public var secretSHA256: String
    public var scopes: [KeyScope]
    public var createdAt: Date
    public var revokedAt: Date?
    public var isActive: Bool { revokedAt == nil }

    public func allows(_ op: KeyOperation, on dataset: String?) -> Bool {
        isActive && scopes.contains { $0.allows(op, on: dataset) }
    }
}

/// API keys in a JSON file (`polyglot-keys.json` beside the data map by default), stored hashed.
///
/// A key reads `pk_<id>_<secret>`: the 12-character id finds the entry, and the SHA-256 of the 43-character
/// secret (256 random bits, so a plain hash suffices: there is nothing to brute-force) is compared in constant
/// time. The file never holds a secret; `create` returns it once.
///
/// ```swift
/// let store = KeyStore(path: "polyglot-data/polyglot-keys.json")
/// let (key, secret) = try store.create(name: "notebook", scopes: [KeyScope(parsing: "products:read")])
/// // send `Authorization: Bearer <secret>`
/// ```
public final class KeyStore: Sendable {
    public let path: String
    private struct Cache { var keys: [String: StoredKey] = [:]; var modified: Date?; var checkedAt: ContinuousClock.Instant? }
    private let cache = Mutex(Cache())

    public init(path: String) { self.path = path }

    /// Every key in the file, revoked ones included, oldest first.
    public func list() throws -> [StoredKey] {
        try load().sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Whether any key is active (then the server requires one on every data request).
    public func hasActiveKeys() throws -> Bool { try load().contains { $0.isActive } }

    /// Creates a key and returns it with its secret, which is shown this once and stored only as a hash.
    public func create(name: String, scopes: [KeyScope]) throws -> (key: StoredKey, secret: String) {
        guard !scopes.isEmpty else {
            throw PolyglotError(.invalidArgument, "A key needs at least one scope.", fix: "Pass --scope dataset:operation, e.g. --scope products:read.")
        }
        let id = Self.randomString(count: 12, alphabet: Array("abcdefghijklmnopqrstuvwxyz0123456789"))
        let secretPart = Self.randomString(count: 43, alphabet: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
        let key = StoredKey(id: id, name: name, secretSHA256: Self.sha256Hex(secretPart), scopes: scopes, createdAt: Date(), revokedAt: nil)
        var keys = try load()
        keys.append(key)
        try save(keys)
        return (key, "pk_\(id)_\(secretPart)")
    }

    /// Revokes the key with this id (or its full secret); returns false when there is none.
    @discardableResult
    public func revoke(_ idOrSecret: String) throws -> Bool {
        let id = Self.split(idOrSecret)?.id ?? idOrSecret
        var keys = try load()
        guard let i = keys.firstIndex(where: { $0.id == id }) else { return false }
        if keys[i].revokedAt == nil { keys[i].revokedAt = Date() }
        try save(keys)
        return true
    }

    /// The active key whose secret this is, or nil. Re-reads the file when it changed (at most once a second),
    /// so `polyglot keys revoke` takes effect on a running server.
    public func authenticate(_ presented: String) -> StoredKey? {
        guard let (id, secretPart) = Self.split(presented) else { return nil }
        let keys = (try? cachedKeys()) ?? [:]
        guard let key = keys[id], key.isActive else { return nil }
        let presentedHash = Array(SHA256.hash(data: Data(secretPart.utf8)))
        guard let stored = Self.hexBytes(key.secretSHA256), stored.count == presentedHash.count else { return nil }
        var diff: UInt8 = 0
        for i in stored.indices { diff |= stored[i] ^ presentedHash[i] }
        return diff == 0 ? key : nil
    }

    private func cachedKeys() throws -> [String: StoredKey] {
        let now = ContinuousClock.now
        if let keys = cache.withLock({ c -> [String: StoredKey]? in
            if let at = c.checkedAt, now - at < .seconds(1) { return c.keys }
            return nil
        }) { return keys }
        let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        let unchanged = cache.withLock { $0.modified == modified && $0.checkedAt != nil }
        if unchanged {
            return cache.withLock { $0.checkedAt = now; return $0.keys }
        }
        let keys = Dictionary(try load().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        cache.withLock { $0 = Cache(keys: keys, modified: modified, checkedAt: now) }
        return keys
    }

    private func load() throws -> [StoredKey] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode(File.self, from: data).keys } catch {
            throw PolyglotError(.invalidArgument, "The key file \(path) is not a Polyglot key file: \(error).",
                                fix: "Restore it from a backup, or move it away and create keys anew with `polyglot keys create`.")
        }
    }

    private func save(_ keys: [StoredKey]) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(File(keys: keys))
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        // Only hashes are inside, but there is no reason for others to read it.
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        cache.withLock { $0 = Cache() }
    }

    private struct File: Codable { var format = "polyglot-keys/1"; var keys: [StoredKey] }

    static func split(_ presented: String) -> (id: String, secret: String)? {
        let parts = presented.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "pk", parts[1].count == 12, parts[2].count == 43 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    static func sha256Hex(_ s: String) -> String {
        SHA256.hash(data: Data(s.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func hexBytes(_ hex: String) -> [UInt8]? {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let b = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
            i += 2
        }
        return out
    }

    static func randomString(count: Int, alphabet: [Character]) -> String {
        var rng = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in alphabet[Int(rng.next(upperBound: UInt64(alphabet.count)))] })
    }
}
