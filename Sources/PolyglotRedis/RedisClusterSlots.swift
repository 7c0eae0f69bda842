/// Redis Cluster's key → slot mapping: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384.
///
/// ```swift
/// RedisClusterSlots.slot(for: Array("user:{42}:cart".utf8)) == RedisClusterSlots.slot(for: Array("42".utf8))
/// ```
public enum RedisClusterSlots {
    public static let count = 16384

    /// The slot of a key; keys sharing a non-empty `{...}` tag share a slot (so multi-key commands work).
    public static func slot(for key: some Collection<UInt8>) -> Int {
        let bytes = Array(key)
        return bytes.withUnsafeBufferPointer { Int(crc16(hashPart($0)) & 0x3FFF) }
    }

    /// The slot of a text key.
    public static func slot(for key: String) -> Int { slot(for: Array(key.utf8)) }

    static func hashPart(_ key: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key }
        guard let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 else { return key }
        return UnsafeBufferPointer(rebasing: key[(open + 1)..<close])
    }

    static func crc16(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for b in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ b)]
        }
        return crc
    }

    static let table: [UInt16] = (0..<256).map { i -> UInt16 in
        var c = UInt16(i) << 8
        for _ in 0..<8 { c = (c & 0x8000) != 0 ? (c << 1) ^ 0x1021 : c << 1 }
        return c
    }
}
