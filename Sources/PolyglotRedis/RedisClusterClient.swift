import Logging
import NIOCore
import Synchronization

/// How a ``RedisClusterClient`` finds and talks to a Redis Cluster.
///
/// ```swift
/// let config = try RedisClusterConfiguration(urls: ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
/// let cluster = try RedisClusterClient(configuration: config)
/// ```
public struct RedisClusterConfiguration: Sendable {
    /// Nodes to ask for the slot map (any of them will do; more survive one being down).
    public var seeds: [(host: String, port: Int)]
    /// Settings for each node's client (credentials, TLS, pool size, timeouts, limits); host and port are
    /// replaced per node. Cluster nodes only have database 0.
    public var node: RedisConfiguration
    /// How many `MOVED`/`ASK`/`TRYAGAIN` redirects one command may follow before failing with
    /// ``RedisError/Kind/cluster``.
    public var maxRedirects: Int = 8

    public init(seeds: [(host: String, port: Int)], node: RedisConfiguration = RedisConfiguration()) {
        self.seeds = seeds
        self.node = node
    }

    /// Seeds from URLs (`redis://user:pass@host:port`, `rediss://` for TLS); the first URL's credentials, TLS and
    /// options are used for every node.
    public init(urls: [String], tls: RedisConfiguration.TLS? = nil) throws(RedisError) {
        guard let first = urls.first else {
            throw RedisError(.invalidConfiguration, "A Redis Cluster configuration needs at least one seed URL.",
                             fix: "Give one or more node URLs, e.g. redis://127.0.0.1:7000.")
        }
        var seeds: [(host: String, port: Int)] = []
        for u in urls {
            let c = try RedisConfiguration(url: u)
            seeds.append((c.host, c.port))
        }
        var node = try RedisConfiguration(url: first, tls: tls)
        node.poolSize = 2
        self.init(seeds: seeds, node: node)
    }
}

/// A Redis Cluster client: routes each command to the master that serves its key's slot (CRC16 of the key, or
/// of its `{hash tag}`), follows `MOVED` (updating its slot map and refreshing it from `CLUSTER SHARDS`) and
/// `ASK` (sending `ASKING` first) redirects, so a resharding or failover during a run is followed, not failed.
///
/// ```swift
/// let cluster = try RedisClusterClient(configuration: .init(urls: ["redis://127.0.0.1:7000"]))
/// try await cluster.set("user:{42}:name", "Ada")
/// let replies = try await cluster.pipeline([RedisCommand("INCR", "{42}:visits"), RedisCommand("GET", "other")])
/// ```
///
/// Multi-key commands must keep their keys in one slot (use a hash tag), as Redis Cluster requires; commands
/// without a key (`PING`, `INFO`) go to any node. Only database 0 exists in a cluster.
public final class RedisClusterClient: Sendable, RedisCommandRunner {
    /// One snapshot of the cluster's layout.
    final class Topology: Sendable {
        /// For each slot, an index into `nodes`, or -1 when no node serves it.
        let slots: [Int16]
        let nodes: [String]
        init(slots: [Int16], nodes: [String]) {
            self.slots = slots
            self.nodes = nodes
        }
        func node(forSlot slot: Int) -> String? {
            let i = slots[slot]
            return i >= 0 ? nodes[Int(i)] : nil
        }
    }

    struct State {
        var topology: Topology
        var clients: [String: RedisClient] = [:]
        var refreshing: Task<Void, Never>?
        var closed = false
    }

    public let configuration: RedisClusterConfiguration
    private let state: Mutex<State>
    private let movedCount = Atomic<Int>(0)
    private let askCount = Atomic<Int>(0)

    /// How many `MOVED` and `ASK` redirects this client has followed (a resharding shows here).
    public var redirects: (moved: Int, ask: Int) { (movedCount.load(ordering: .relaxed), askCount.load(ordering: .relaxed)) }
    private var logger: Logger { configuration.node.logger }

    /// A client for the cluster; the slot map is loaded on the first command (or with ``refreshTopology()``).
    public init(configuration: RedisClusterConfiguration) throws(RedisError) {
        guard !configuration.seeds.isEmpty else {
            throw RedisError(.invalidConfiguration, "A Redis Cluster configuration needs at least one seed node.",
                             fix: "Give one or more node addresses.")
        }
        var node = configuration.node
        node.database = 0
        try node.validate()
        self.configuration = configuration
        state = Mutex(State(topology: Topology(slots: [], nodes: [])))
    }

    // MARK: Topology

    /// The `host:port` of the master serving `key`'s slot, per the current map (nil before it is loaded).
    public func node(for key: String) -> String? {
        let t = state.withLock { $0.topology }
        return t.slots.isEmpty ? nil : t.node(forSlot: RedisClusterSlots.slot(for: key))
    }

    /// The masters in the current map.
    public var nodes: [String] { state.withLock { $0.topology.nodes } }

    /// Reloads the slot map now, from `CLUSTER SHARDS` (or `CLUSTER SLOTS` on servers before Redis 7) of the first
    /// node that answers, known nodes first, then the seeds.
    public func refreshTopology() async throws(RedisError) {
        var candidates = state.withLock { $0.topology.nodes }
        for s in configuration.seeds {
            let a = address(s.host, s.port)
            if !candidates.contains(a) { candidates.append(a) }
        }
        var lastError: RedisError?
        for a in candidates {
            do {
                let t = try await loadTopology(from: a)
                state.withLock { $0.topology = t }
                logger.debug("redis cluster map loaded", metadata: ["from": "\(a)", "masters": "\(t.nodes)"])
                return
            } catch {
                lastError = error
            }
        }
        throw RedisError(.cluster, "No Redis Cluster node answered for the slot map (tried \(candidates.joined(separator: ", "))): \(lastError?.message ?? "no nodes").",
                         fix: "Check the seed addresses and that the nodes run with cluster-enabled yes.", retryable: true)
    }

    /// Starts a refresh in the background unless one is running (after a `MOVED`).
    private func refreshSoon() {
        state.withLock { s in
            guard s.refreshing == nil, !s.closed else { return }
            s.refreshing = Task {
                try? await self.refreshTopology()
                self.state.withLock { $0.refreshing = nil }
            }
        }
    }

    private func topology() async throws(RedisError) -> Topology {
        let t = state.withLock { $0.topology }
        if !t.slots.isEmpty { return t }
        try await refreshTopology()
        return state.withLock { $0.topology }
    }

    private func loadTopology(from node: String) async throws(RedisError) -> Topology {
        let c = try client(for: node)
        let shards: RESPValue
        do {
            shards = try await c.send(RedisCommand("CLUSTER", "SHARDS"))
        } catch where error.kind == .server {
            return try Self.parseSlots(try await c.send(RedisCommand("CLUSTER", "SLOTS")), via: node)
        }
        return try Self.parseShards(shards, via: node)
    }

    /// `CLUSTER SHARDS`: per shard, `slots` [start, end, ...] and `nodes` with ip/endpoint, port, role, health.
    static func parseShards(_ reply: RESPValue, via node: String) throws(RedisError) -> Topology {
        guard let shards = reply.array else { throw unexpected(reply, "CLUSTER SHARDS") }
        var ranges: [(Int, Int, String)] = []
        for shard in shards {
            guard let fields = shard.pairs else { throw unexpected(shard, "CLUSTER SHARDS") }
            var slotList: [Int] = []
            var master: String?
            for f in fields {
                switch f.key.string {
                case "slots": slotList = (f.value.array ?? []).compactMap { $0.int.map(Int.init) }
                case "nodes":
                    for n in f.value.array ?? [] {
                        var info: [String: RESPValue] = [:]
                        for p in n.pairs ?? [] { if let k = p.key.string { info[k] = p.value } }
                        guard info["role"]?.string == "master", info["health"]?.string != "fail" else { continue }
                        let host = [info["endpoint"]?.string, info["ip"]?.string].compactMap { $0 }.first { !$0.isEmpty && $0 != "?" }
                        let port = info["port"]?.int ?? info["tls-port"]?.int
                        if let host, let port { master = address(host, Int(port)) }
                    }
                default: break
                }
            }
            guard let master, slotList.count % 2 == 0 else { continue }
            var i = 0
            while i < slotList.count {
                ranges.append((slotList[i], slotList[i + 1], master))
                i += 2
            }
        }
        return try build(ranges, via: node)
    }

    /// `CLUSTER SLOTS`: [start, end, [host, port, id], replicas...].
    static func parseSlots(_ reply: RESPValue, via node: String) throws(RedisError) -> Topology {
        guard let entries = reply.array else { throw unexpected(reply, "CLUSTER SLOTS") }
        var ranges: [(Int, Int, String)] = []
        for e in entries {
            guard let parts = e.array, parts.count >= 3, let start = parts[0].int, let end = parts[1].int,
                  let m = parts[2].array, m.count >= 2, let host = m[0].string, let port = m[1].int else { continue }
            ranges.append((Int(start), Int(end), address(host.isEmpty ? String(node.split(separator: ":").first ?? "") : host, Int(port))))
        }
        return try build(ranges, via: node)
    }

    static func build(_ ranges: [(Int, Int, String)], via node: String) throws(RedisError) -> Topology {
        var nodes: [String] = []
        var index: [String: Int16] = [:]
        var slots = [Int16](repeating: -1, count: RedisClusterSlots.count)
        for (start, end, master) in ranges {
            guard start >= 0, end < RedisClusterSlots.count, start <= end else { continue }
            let i: Int16
            if let known = index[master] { i = known } else {
                i = Int16(nodes.count)
                index[master] = i
                nodes.append(master)
            }
            for s in start...end { slots[s] = i }
        }
        guard !nodes.isEmpty else {
            throw RedisError(.cluster, "Redis at \(node) reported no slots served (is the cluster created?).",
                             fix: "Create the cluster (redis-cli --cluster create ...) and wait for cluster_state:ok.", retryable: true)
        }
        return Topology(slots: slots, nodes: nodes)
    }

    static func address(_ host: String, _ port: Int) -> String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    private func address(_ host: String, _ port: Int) -> String { Self.address(host, port) }

    /// The pooled client of one node, created on first use.
    private func client(for node: String) throws(RedisError) -> RedisClient {
        if let c = state.withLock({ $0.clients[node] }) { return c }
        guard let colon = node.lastIndex(of: ":"), let port = Int(node[node.index(after: colon)...]) else {
            throw RedisError(.cluster, "The cluster named a node '\(node)' that is not host:port.")
        }
        var host = String(node[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var c = configuration.node
        c.host = host
        c.port = port
        c.database = 0
        let fresh = try RedisClient(configuration: c)
        let (client, closed) = state.withLock { s -> (RedisClient, Bool) in
            if let existing = s.clients[node] { return (existing, s.closed) }
            s.clients[node] = fresh
            return (fresh, s.closed)
        }
        if closed { throw RedisError.clientClosed }
        return client
    }

    // MARK: Sending

    public func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        let value = try await sendRaw(command)
        if case .error(let e) = value { throw RedisError.server(e, command: command.name) }
        return value
    }

    private func slot(of command: RedisCommand) -> Int? {
        guard let key = command.routingKey else { return nil }
        return key.withUnsafeReadableBytes { raw in
            Int(RedisClusterSlots.crc16(RedisClusterSlots.hashPart(raw.bindMemory(to: UInt8.self))) & 0x3FFF)
        }
    }

    /// Sends a command to the node serving its slot and follows redirects; returns the final reply, error replies
    /// other than redirects included.
    func sendRaw(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        if state.withLock({ $0.closed }) { throw RedisError.clientClosed }
        let topology = try await topology()
        let slot = slot(of: command)
        var target: String = slot.flatMap { topology.node(forSlot: $0) } ?? topology.nodes[0]
        var asking = false
        var lastError: RedisError?
        for attempt in 0...configuration.maxRedirects {
            let reply: RESPValue
            do {
                let c = try client(for: target)
                if asking {
                    let conn = try await c.connection()
                    let replies = try await conn.pipeline([RedisCommand("ASKING"), command])
                    reply = replies[1]
                } else {
                    reply = try await c.pipelineOne(command)
                }
            } catch where error.isConnectionFailure {
                // The node may have failed over: reload the map and try where it now says.
                lastError = error
                if attempt == configuration.maxRedirects { break }
                try? await Task.sleep(for: .milliseconds(min(50 * (attempt + 1), 500)))
                try? await refreshTopology()
                let t = state.withLock { $0.topology }
                target = slot.flatMap { t.node(forSlot: $0) } ?? t.nodes.first ?? target
                asking = false
                continue
            }
            guard case .error(let e) = reply else { return reply }
            switch e.code {
            case "MOVED", "ASK":
                // "MOVED 3999 127.0.0.1:6381"
                let parts = e.message.split(separator: " ")
                guard parts.count >= 3, let movedSlot = Int(parts[1]) else { return reply }
                let node = String(parts[2])
                let host = node.hasPrefix(":") ? String(target.split(separator: ":").first ?? "") + node : node
                if e.code == "MOVED" {
                    movedCount.add(1, ordering: .relaxed)
                    update(slot: movedSlot, to: host)
                    refreshSoon()
                    asking = false
                } else {
                    askCount.add(1, ordering: .relaxed)
                    asking = true
                }
                target = host
            case "TRYAGAIN", "CLUSTERDOWN":
                // A multi-key command during a migration, or the cluster settling: wait a moment.
                lastError = RedisError.server(e, command: command.name)
                try? await Task.sleep(for: .milliseconds(min(20 * (attempt + 1), 200)))
                if e.code == "CLUSTERDOWN" { try? await refreshTopology() }
                asking = false
                let t = state.withLock { $0.topology }
                target = slot.flatMap { t.node(forSlot: $0) } ?? target
            default:
                return reply
            }
        }
        throw RedisError(.cluster, "\(command.name) did not settle after \(configuration.maxRedirects) redirects or retries\(lastError.map { " (last: \($0.message))" } ?? "").",
                         fix: "The cluster is resharding or failing over; retry, or check CLUSTER INFO.", retryable: true)
    }

    /// For tests: points a slot at a node in the client's map (to make it stale on purpose).
    func testingSetSlot(_ slot: Int, to node: String) { update(slot: slot, to: node) }

    private func update(slot: Int, to node: String) {
        state.withLock { s in
            var slots = s.topology.slots
            var nodes = s.topology.nodes
            guard slot >= 0, slot < slots.count else { return }
            let i: Int16
            if let known = nodes.firstIndex(of: node) { i = Int16(known) } else {
                i = Int16(nodes.count)
                nodes.append(node)
            }
            slots[slot] = i
            s.topology = Topology(slots: slots, nodes: nodes)
        }
    }

    /// Sends commands grouped by node (one pipeline per node, concurrently) and returns the replies in the
    /// original order. A command redirected by `MOVED`/`ASK` is resent on its own. Error replies stay values.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let topology = try await topology()
        var groups: [String: [Int]] = [:]
        for (i, c) in commands.enumerated() {
            let node = slot(of: c).flatMap { topology.node(forSlot: $0) } ?? topology.nodes[0]
            groups[node, default: []].append(i)
        }
        var results = [RESPValue](repeating: .null, count: commands.count)
        let outcome: Result<[(Int, RESPValue)], RedisError> = await withTaskGroup(of: Result<[(Int, RESPValue)], RedisError>.self) { group in
            for (node, indexes) in groups {
                group.addTask {
                    do throws(RedisError) {
                        let c = try self.client(for: node)
                        var replies: [RESPValue]
                        do throws(RedisError) {
                            replies = try await c.pipeline(indexes.map { commands[$0] })
                        } catch where error.isConnectionFailure {
                            // Resend each through the redirect-following path.
                            replies = []
                            for i in indexes { replies.append(try await self.sendRaw(commands[i])) }
                        }
                        var out: [(Int, RESPValue)] = []
                        for (k, i) in indexes.enumerated() {
                            var r = replies[k]
                            if let code = r.serverError?.code, ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"].contains(code) {
                                r = try await self.sendRaw(commands[i])
                            }
                            out.append((i, r))
                        }
                        return .success(out)
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [(Int, RESPValue)] = []
            for await r in group {
                switch r {
                case .success(let part): all += part
                case .failure(let e): return .failure(e)
                }
            }
            return .success(all)
        }
        switch outcome {
        case .success(let all): for (i, r) in all { results[i] = r }
        case .failure(let e): throw e
        }
        return results
    }

    /// Closes every node's connections.
    public func close() async {
        let (clients, refreshing) = state.withLock { s -> ([RedisClient], Task<Void, Never>?) in
            s.closed = true
            return (Array(s.clients.values), s.refreshing)
        }
        refreshing?.cancel()
        for c in clients { await c.close() }
    }
}

extension RedisError {
    /// Whether the server could not be reached or the connection dropped (as opposed to a reply).
    var isConnectionFailure: Bool { kind == .connectFailed || kind == .connectionClosed || kind == .unavailable }
}

extension RedisClient {
    /// Sends one command and returns its reply as it came (error replies as values), for redirect handling.
    func pipelineOne(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        try await pool.connection().sendRaw(command)
    }
}
