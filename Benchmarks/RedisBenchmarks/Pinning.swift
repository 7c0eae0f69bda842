import Foundation
import PolyglotRedis

/// CPU placement for the client benchmarks: the Redis server on CPU 0, the clients (this process and the
/// redis-benchmark it starts, which inherits the mask) on the other CPUs.
///
/// Why: on a small machine the server, the client under test and the scheduler's choices share two cores. Whether a
/// client thread wakes on the server's core (a cheap switch) or the other one (a cross-core wake-up, much dearer in
/// a VM) then decides a round trip's latency more than either client does, and a client with more threads than
/// redis-benchmark's one loses CPU to the server. Pinning gives both clients the same CPUs and the server a core of
/// its own, as a server on another machine would have. `--no-pin` measures without it.
struct CPUPinning {
    let serverPID: Int
    let previousServerCPUs: String
    let clientCPUs: String

    /// Pins, or returns nil with the reason printed (remote server, one CPU, no `taskset`, not permitted).
    static func apply(url: String) async -> CPUPinning? {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        guard cpus >= 2 else { return skip("one CPU") }
        guard let taskset = which("taskset") else { return skip("taskset is missing (util-linux)") }
        guard let config = try? RedisConfiguration(url: url),
              ["127.0.0.1", "localhost", "::1"].contains(config.host) else { return skip("the server is not on this machine") }
        guard let pid = await serverPID(url) else { return skip("INFO server gave no process_id") }
        guard let before = run(taskset, ["-p", "-c", "\(pid)"])?.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) else {
            return skip("cannot read the server's CPU affinity")
        }
        let clients = cpus == 2 ? "1" : "1-\(cpus - 1)"
        guard run(taskset, ["-a", "-p", "-c", "0", "\(pid)"]) != nil else { return skip("cannot pin the server (pid \(pid))") }
        guard run(taskset, ["-a", "-p", "-c", clients, "\(getpid())"]) != nil else {
            _ = run(taskset, ["-a", "-p", "-c", before, "\(pid)"])
            return skip("cannot pin this process")
        }
        print("CPU pinning: the server (pid \(pid)) on CPU 0, this process and redis-benchmark on CPU \(clients) (--no-pin to measure without)")
        print("  (restored at the end; if this run is killed, restore it with: taskset -a -p -c \(before) \(pid))")
        return CPUPinning(serverPID: pid, previousServerCPUs: before, clientCPUs: clients)
    }

    /// Gives the server its CPUs back.
    func restore() {
        if let taskset = which("taskset") { _ = CPUPinning.run(taskset, ["-a", "-p", "-c", previousServerCPUs, "\(serverPID)"]) }
    }

    private static func skip(_ reason: String) -> CPUPinning? {
        print("CPU pinning: off (\(reason)); the server and both clients share every CPU")
        return nil
    }

    private static func serverPID(_ url: String) async -> Int? {
        guard let c = try? RedisClient(url: url) else { return nil }
        let info = (try? await c.send(["INFO", "server"]).string) ?? ""
        await c.close()
        return info.split(separator: "\r\n").first { $0.hasPrefix("process_id:") }.flatMap { Int($0.dropFirst("process_id:".count)) }
    }

    /// Runs a tool; its standard output, or nil if it failed.
    private static func run(_ tool: String, _ args: [String]) -> String? {
        guard let r = try? runTool(tool, args), r.status == 0 else { return nil }
        return r.output
    }
}
