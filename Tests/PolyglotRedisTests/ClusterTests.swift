import Foundation
import NIOCore
import PolyglotTesting
import Synchronization
import Testing
@testable import PolyglotRedis

/// Redis Cluster against the real 3-master cluster (scripts/services/up redis).
///
/// Serialized: `liveSlotMigrationIsFollowed` moves a slot between masters, and a test running next to it could put
/// a key in that slot (its key count is then off) or read one on the node the slot just left (MOVED). Both
/// happened once in a full run.
@Suite(.serialized) struct ClusterTests {
    func urls() throws -> [String] {
        try #require(RedisServers.cluster, Comment(rawValue: TestServers.missing(RedisServers.clusterVariable)))
    }

    func cluster() throws -> RedisClusterClient {
        try RedisClusterClient(configuration: RedisClusterConfiguration(urls: try urls()))
    }

    @Test func slotsMatchTheServer() async throws {
        #expect(RedisClusterSlots.slot(for: "123456789") == 12739)   // CRC16/XMODEM check value 0x31C3
        #expect(RedisClusterSlots.slot(for: "{user1000}.following") == RedisClusterSlots.slot(for: "{user1000}.followers"))
        #expect(RedisClusterSlots.slot(for: "foo{}{bar}") == RedisClusterSlots.slot(for: Array("foo{}{bar}".utf8)))
        let node = try RedisClient(url: try urls()[0])
        var keys: [[UInt8]] = ["", "a", "foo", "{", "}", "{}", "{}x", "x{}y", "a{b}c", "a{b", "a}b{c}", "{{a}}", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}"].map { Array($0.utf8) }
        for _ in 0..<100 { keys.append((0..<Int.random(in: 0...12)).map { _ in [UInt8(ascii: "{"), UInt8(ascii: "}"), 0, 13, 10, 200, 97].randomElement()! }) }
        for k in keys {
            let server = try await node.send(["CLUSTER", "KEYSLOT", k]).int
            #expect(server.map(Int.init) == RedisClusterSlots.slot(for: k), "key \(k)")
        }
        await node.close()
    }

    @Test func routesKeysToTheirMastersAndPipelinesAcrossThem() async throws {
        let redis = try cluster()
        try await redis.refreshTopology()
        #expect(redis.nodes.count == 3)
        let prefix = "test:cluster:\(UUID().uuidString)"
        let keys = (0..<120).map { "\(prefix):\($0)" }
        for k in keys { try await redis.set(k, k) }
        // Each key is on the master the map names (read it there directly, without redirects).
        var perNode: [String: Int] = [:]
        for k in keys {
            let node = try #require(redis.node(for: k))
            perNode[node, default: 0] += 1
            let direct = try RedisClient(url: "redis://\(node)")
            #expect(try await direct.getString(k) == k)
            await direct.close()
        }
        #expect(perNode.count == 3, "keys spread over every master: \(perNode)")
        // One pipeline spanning all masters keeps the order.
        let replies = try await redis.pipeline(keys.map { RedisCommand("GET", $0) })
        #expect(replies.map(\.string) == keys)
        // Hash tags keep multi-key commands on one slot; without them the server says CROSSSLOT, a typed error.
        let tag = "{\(prefix)}"
        _ = try await redis.send(["MSET", "\(tag):a", "1", "\(tag):b", "2"])
        #expect(try await redis.send(["MGET", "\(tag):a", "\(tag):b"]).array?.map(\.string) == ["1", "2"])
        do {
            _ = try await redis.send(["MSET", keys[0], "x", keys[1], "y", keys[2], "z", keys[3], "w"])
            Issue.record("a cross-slot MSET succeeded")
        } catch {
            #expect(error.serverCode == "CROSSSLOT")
        }
        // Scripts run on the key's node.
        let script = redis.script("return redis.call('GET', KEYS[1])")
        #expect(try await script.run(keys: [keys[7]]).string == keys[7])
        #expect(try await redis.pipeline(keys.map { RedisCommand("DEL", $0) }).allSatisfy { $0 == .integer(1) })
        await redis.close()
    }

    /// A stale slot map: the client is told MOVED, follows it, and updates its map.
    @Test func followsMoved() async throws {
        let redis = try cluster()
        try await redis.refreshTopology()
        let k = "test:cluster:moved:\(UUID().uuidString)"
        let owner = try #require(redis.node(for: k))
        let other = try #require(redis.nodes.first { $0 != owner })
        // Point the slot at the wrong node in the client's map.
        redis.testingSetSlot(RedisClusterSlots.slot(for: k), to: other)
        #expect(redis.node(for: k) == other)
        try await redis.set(k, "v")
        #expect(redis.redirects.moved == 1)
        #expect(redis.node(for: k) == owner)
        #expect(try await redis.getString(k) == "v")
        try await redis.del(k)
        await redis.close()
    }

    /// A slot migrates to another master while tasks keep incrementing its keys through the client:
    /// ASK redirects during the move, MOVED after it, and not one command fails or is lost.
    @Test func liveSlotMigrationIsFollowed() async throws {
        let redis = try cluster()
        try await redis.refreshTopology()
        let tag = "{mig-\(UUID().uuidString)}"
        let keys = (0..<60).map { "\(tag):\($0)" }
        let slot = RedisClusterSlots.slot(for: keys[0])
        let source = try #require(redis.node(for: keys[0]))
        let target = try #require(redis.nodes.first { $0 != source })
        let admin = Dictionary(uniqueKeysWithValues: try redis.nodes.map { ($0, try RedisClient(url: "redis://\($0)")) })
        let src = try #require(admin[source]), dst = try #require(admin[target])
        let sourceID = try #require(try await src.send(["CLUSTER", "MYID"]).string)
        let targetID = try #require(try await dst.send(["CLUSTER", "MYID"]).string)
        for k in keys { try await redis.set(k, "0") }

        let stop = Flag()
        let workload = Task { () -> (counts: [Int], errors: [String]) in
            var counts = [Int](repeating: 0, count: keys.count)
            var errors: [String] = []
            await withTaskGroup(of: (Int, Int, [String]).self) { group in
                for w in 0..<4 {
                    group.addTask {
                        var n = 0
                        var errs: [String] = []
                        var i = w
                        var done = [Int](repeating: 0, count: keys.count)
                        while !stop.isSet || n < 50 {
                            let k = i % keys.count
                            do {
                                _ = try await redis.incr(keys[k])
                                done[k] += 1
                            } catch {
                                errs.append("\(error)")
                            }
                            n += 1
                            i += 4
                        }
                        return (w, 0, errs + done.enumerated().map { "count \($0.offset) \($0.element)" })
                    }
                }
                for await (_, _, out) in group {
                    for line in out {
                        if line.hasPrefix("count ") {
                            let parts = line.split(separator: " ")
                            counts[Int(parts[1])!] += Int(parts[2])!
                        } else {
                            errors.append(line)
                        }
                    }
                }
            }
            return (counts, errors)
        }

        // Move the slot, a few keys at a time, while the workload runs.
        _ = try await dst.send(["CLUSTER", "SETSLOT", slot, "IMPORTING", sourceID])
        _ = try await src.send(["CLUSTER", "SETSLOT", slot, "MIGRATING", targetID])
        let (host, port) = (String(target.split(separator: ":")[0]), Int(target.split(separator: ":")[1])!)
        var moved = 0
        while true {
            let batch = try await src.send(["CLUSTER", "GETKEYSINSLOT", slot, 5]).array ?? []
            if batch.isEmpty { break }
            var args: [any RedisArgument] = [host, port, "", 0, 5000, "KEYS"]
            for b in batch { if let buf = b.buffer { args.append(buf) } }
            _ = try await src.send(RedisCommand("MIGRATE", arguments: args))
            if moved == 0 {
                // Keep the slot half moved until the workload has met a moved key (ASK), however late it starts.
                try await waitUntil(deadline: .seconds(20)) { redis.redirects.ask > 0 }
            }
            moved += batch.count
            try await Task.sleep(for: .milliseconds(30))
        }
        _ = try await dst.send(["CLUSTER", "SETSLOT", slot, "NODE", targetID])
        _ = try await src.send(["CLUSTER", "SETSLOT", slot, "NODE", targetID])
        for (node, c) in admin where node != source && node != target {
            _ = try await c.send(["CLUSTER", "SETSLOT", slot, "NODE", targetID])
        }
        // And until it has met the slot's new owner through a stale map (MOVED).
        try await waitUntil(deadline: .seconds(20)) { redis.redirects.moved > 0 }
        stop.set()
        let (counts, errors) = await workload.value

        #expect(moved >= keys.count)
        // Both kinds of redirect were followed: ASK while keys moved, MOVED once the slot had moved.
        #expect(redis.redirects.ask > 0 && redis.redirects.moved > 0, "\(redis.redirects)")
        #expect(errors.isEmpty, "\(errors.count) commands failed during the migration: \(errors.prefix(3))")
        // Nothing lost: every key holds exactly the number of increments that succeeded.
        let values = try await redis.pipeline(keys.map { RedisCommand("GET", $0) }).map { $0.int.map(Int.init) ?? -1 }
        #expect(values == counts)
        // The map follows: the slot is now on the target.
        try await redis.refreshTopology()
        #expect(redis.node(for: keys[0]) == target)
        #expect(try await dst.send(["CLUSTER", "COUNTKEYSINSLOT", slot]).int == Int64(keys.count))
        _ = try await redis.send(RedisCommand("DEL", arguments: keys))   // one slot: a multi-key DEL is fine
        for c in admin.values { await c.close() }
        await redis.close()
    }
}

/// Polls `condition` every 10 ms until it holds or `deadline` has passed (the test's expectations then say what failed).
func waitUntil(deadline: Duration, _ condition: () -> Bool) async throws {
    let end = ContinuousClock.now + deadline
    while !condition(), ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(10)) }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}
