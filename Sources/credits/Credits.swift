// credits — the command-line front end: the load benchmark, the durable load and recovery
// drill, export, and snapshot/log verification. It drives the engine only through its
// public API.
import ArgumentParser
import CLZ4
import CreditEngine

@main
struct Credits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credits",
        abstract: "Aideon Credits: a credit ledger engine for AI usage.",
        subcommands: [Rekey.self, Bench.self, Load.self, Export.self, StatementCommand.self, Drill.self, Recover.self, SnapshotCommand.self,
                      WALCommand.self, CatalogCommand.self, QuoteCommand.self, MonthEnd.self, AuditCommand.self, Version.self]
    )
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version of the engine and of liblz4.")

    func run() {
        print("credits 0.1.0 (liblz4 \(String(cString: LZ4_versionString())))")
    }
}
