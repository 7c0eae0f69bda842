import ArgumentParser
import Foundation
import Polyglot

struct RebuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Rebuild a projection copy on another engine alongside the live one, then swap it in with no downtime.",
        discussion: """
        The new copy is filled from the source's current documents, then catches up with the changes made meanwhile; \
        the swap is one transaction on the copy's engine. Reads and the relay keep using the live copy until then. \
        Use it after changing a projection's definition, or when `polyglot verify` finds a copy that drifted.
        """)
    @OptionGroup var options: ConfigOptions
    @Argument(help: "The copy to rebuild: dataset@engine, or a dataset with one copy.") var target: String
    @Option(help: "Documents per batch.") var batchSize = 1000

    func run() async throws {
        try await reportingErrors {
            let db = try await options.open()
            do {
                let relay = db.relay()
                let name = try relay.copyName(for: target, kinds: [.documents])
                let report = try await relay.rebuild(name, batchSize: batchSize) { phase, done, total in
                    let line = switch phase {
                    case .copying: "\r\(name): copied \(done) of \(total) documents"
                    case .catchingUp: "\r\(name): replayed \(done) later changes      "
                    case .swapped: "\r\(name): swapped in                           \n"
                    }
                    FileHandle.standardError.write(Data(line.utf8))
                }
                try await db.close()
                print(report.description)
            } catch {
                try? await db.close()
                throw error
            }
        }
    }
}
