import Foundation

/// What the engine stores in a memcached item: a small header, then the bytes.
///
/// Layout (big-endian): `P` `G` `1` (magic and format), kind (1 byte), expiry in Unix milliseconds (8 bytes,
/// 0 for none), version (8 bytes), original-key length (4 bytes, 0 when the memcached key is not a hash),
/// the original key, the data. 24 bytes plus the key for hashed keys.
///
/// The header exists because memcached's own expiry has one-second resolution (Polyglot TTLs are exact to the
/// millisecond: the engine also gives memcached a slightly longer expiry so the server frees the item), a cache
/// entry must carry its version, and a hashed key must carry the original key.
struct StoredValue: Equatable {
    enum Kind: UInt8 {
        /// A key-value dataset's value.
        case value = 1
        /// A cache entry (a document version).
        case entry = 2
        /// A cache invalidation: no entry older than `version` may be stored.
        case tombstone = 3
    }

    var kind: Kind
    /// Unix milliseconds; 0 for no expiry.
    var expiresAtMillis: Int64
    var version: Int64
    /// The Polyglot key, kept when the memcached key is its hash.
    var originalKey: String?
    var data: Data

    static let magic: [UInt8] = [UInt8(ascii: "P"), UInt8(ascii: "G"), 1]
    static let fixedHeaderBytes = 24

    static func nowMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    static func expiry(after ttl: Duration?, now: Int64 = nowMillis()) -> Int64 {
        guard let ttl else { return 0 }
        let (s, atto) = ttl.components
        // Capped at ~31,700 years, so the arithmetic cannot overflow.
        let ms = min(s, 1_000_000_000_000) * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000
        return now + max(1, ms)
    }

    func isLive(now: Int64) -> Bool { expiresAtMillis == 0 || now < expiresAtMillis }

    /// The `exptime` to give memcached: a little after the exact expiry (the server counts whole seconds), or 0.
    /// Up to 30 days it is relative; beyond, memcached reads it as a Unix time, which it parses as a 32-bit
    /// integer: an expiry past 2038 gets 0 (the server keeps the item until evicted; reads still honour the exact expiry).
    static func serverExptime(_ expiresAtMillis: Int64, now: Int64 = nowMillis()) -> Int {
        guard expiresAtMillis > 0 else { return 0 }
        let remaining = max(0, expiresAtMillis - now)
        let seconds = Int((remaining + 999) / 1000) + 1
        if seconds <= 30 * 86_400 { return seconds }
        let absolute = Int(expiresAtMillis / 1000) + 2
        return absolute < Int(Int32.max) ? absolute : 0
    }

    func encoded() -> Data {
        let key = originalKey.map { Array($0.utf8) } ?? []
        var out = Data(capacity: Self.fixedHeaderBytes + key.count + data.count)
        out.append(contentsOf: Self.magic)
        out.append(kind.rawValue)
        Self.append(UInt64(bitPattern: expiresAtMillis), 8, to: &out)
        Self.append(UInt64(bitPattern: version), 8, to: &out)
        Self.append(UInt64(key.count), 4, to: &out)
        out.append(contentsOf: key)
        out.append(data)
        return out
    }

    /// How many bytes `encoded()` produces for a value of `count` bytes.
    static func encodedSize(dataBytes count: Int, originalKey: String?) -> Int {
        fixedHeaderBytes + (originalKey?.utf8.count ?? 0) + count
    }

    /// The stored value, or nil when the bytes were not written by this engine.
    static func decode(_ raw: Data) -> StoredValue? {
        guard raw.count >= fixedHeaderBytes else { return nil }
        return raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) -> StoredValue? in
            guard p[0] == magic[0], p[1] == magic[1], p[2] == magic[2], let kind = Kind(rawValue: p[3]) else { return nil }
            func read(_ at: Int, _ n: Int) -> UInt64 { (0..<n).reduce(UInt64(0)) { $0 << 8 | UInt64(p[at + $1]) } }
            let expires = Int64(bitPattern: read(4, 8))
            let version = Int64(bitPattern: read(12, 8))
            let keyCount = Int(read(20, 4))
            guard raw.count >= fixedHeaderBytes + keyCount else { return nil }
            var key: String?
            if keyCount > 0 {
                guard let k = String(validating: p[fixedHeaderBytes..<(fixedHeaderBytes + keyCount)], as: UTF8.self) else { return nil }
                key = k
            }
            let data = Data(p[(fixedHeaderBytes + keyCount)...])
            return StoredValue(kind: kind, expiresAtMillis: expires, version: version, originalKey: key, data: data)
        }
    }

    private static func append(_ v: UInt64, _ n: Int, to out: inout Data) {
        for i in (0..<n).reversed() { out.append(UInt8(truncatingIfNeeded: v >> (UInt64(i) * 8))) }
    }
}
