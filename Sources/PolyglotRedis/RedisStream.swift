import Foundation
import Polyglot

/// The `stream` projection on Redis: each change becomes an entry of the Redis Stream `<keyPrefix>x:<dataset>`
/// with the fields `dataset`, `key`, `version`, `op` and, for puts, `payload` (the document's JSON).
/// Delivery is at least once; consumers (`XREAD`, `XREADGROUP`) drop duplicates by (`key`, `version`).
struct RedisStreamPublisher: StreamPublisher {
    let link: RedisLink
    let prefix: String

    func publish(_ events: [ChangeEvent], to stream: String, maxLength: Int?) async throws {
        let key = prefix + "x:" + stream
        for e in events {
            var args: [any RedisArgument] = [key]
            if let maxLength { args += ["MAXLEN", "~", maxLength] }
            args += ["*", "dataset", e.dataset, "key", e.key, "version", e.position, "op", e.operation]
            if let payload = e.payload { args += ["payload", payload] }
            _ = try await link.send(RedisCommand("XADD", arguments: args, keyIndex: 0))
        }
    }
}

extension RedisEngine {
    public func streamPublisher() throws -> any StreamPublisher { RedisStreamPublisher(link: link, prefix: settings.keyPrefix) }
}
