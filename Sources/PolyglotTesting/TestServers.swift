import Foundation

/// Where the real servers started by `scripts/services/up` listen. Reads the environment first, then the
/// `.services/env` file the script writes, so `swift test` works right after `scripts/services/up`.
public enum TestServers {
    /// The value of `variable` (e.g. `POLYGLOT_TEST_PG15_URL`), or "" when no server was started.
    public static func value(_ variable: String) -> String {
        if let v = ProcessInfo.processInfo.environment[variable], !v.isEmpty { return v }
        return fileValues[variable] ?? ""
    }

    /// The first of `variables` that is set in the environment, else the first set in `.services/env`; nil if none.
    /// Benchmarks use it to find their server (e.g. `["POLYGLOT_BENCH_PG_URL", "POLYGLOT_TEST_PG18_URL"]`).
    public static func first(_ variables: [String]) -> String? {
        let env = ProcessInfo.processInfo.environment
        for v in variables { if let value = env[v], !value.isEmpty { return value } }
        for v in variables { if let value = fileValues[v], !value.isEmpty { return value } }
        return nil
    }

    /// The message a test shows when a server is missing.
    public static func missing(_ variable: String) -> String {
        "\(variable) is not set: start the servers with `scripts/services/up` (scripts/test does it for you)"
    }

    static let fileValues: [String: String] = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard let text = try? String(contentsOf: root.appendingPathComponent(".services/env"), encoding: .utf8) else { return [:] }
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            // Lines are `export NAME=value` with shell quoting (printf %q); URLs need no unquoting beyond backslashes.
            let body = line.hasPrefix("export ") ? line.dropFirst(7) : line[...]
            guard let eq = body.firstIndex(of: "=") else { continue }
            out[String(body[..<eq])] = String(body[body.index(after: eq)...]).replacingOccurrences(of: "\\", with: "")
        }
        return out
    }()
}
