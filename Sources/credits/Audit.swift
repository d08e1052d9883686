import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditPersistence

/// `credits audit verify --data DIR [--public-key FILE]... [--json]` (docs/audit.md).
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Verify a data directory's tamper-evident audit trail.",
                                                    subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk every archived and live log segment: CRCs, LSNs, the SHA-256 chain and the signed checkpoints.",
            discussion: """
                Read-only. Checks, per shard, every record's CRC and LSN, every audit seal's \
                SHA-256 head recomputed from the record bytes on disk, every checkpoint's head \
                against the chain at its LSN, and with --public-key every checkpoint's Ed25519 \
                signature. Names the first bad record (file, offset, LSN) with a stable problem \
                code; exit status 1 when anything is wrong. Without --public-key the chain is \
                checked alone and the output says the checkpoints' signatures were not verified. \
                docs/audit.md lists what is detected and what is not.
                """)

        @Option(help: "Data directory.") var data: String
        @Option(help: "PEM public key (openssl pkey -pubout) the checkpoints must be signed with; repeat for a rotated key.")
        var publicKey: [String] = []
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            try checkPath("--data", data)
            for path in publicKey { try checkPath("--public-key", path) }
        }

        func run() async throws {
            var keys: [AuditPublicKey] = []
            for path in publicKey {
                do { keys.append(try AuditPublicKey(pemFile: path)) } catch {
                    throw ValidationError("--public-key \(path): \(error) [\(error.code)]")
                }
            }
            let started = monotonicNanos()
            let report = AuditVerifier.verify(directory: data, publicKeys: keys)
            let seconds = Double(monotonicNanos() - started) / 1e9
            if json {
                print(Self.json(report, seconds: seconds))
            } else {
                print(Self.text(report, seconds: seconds))
            }
            if !report.ok { throw ExitCode.failure }
        }

        static func json(_ report: AuditReport, seconds: Double) -> String {
            let firstBad = report.firstBad.map { bad in
                "{\"file\": \(jsonString(bad.file)), \"offset\": \(bad.offset), \"lsn\": \(bad.lsn), "
                    + "\"problem\": \(jsonString(bad.problem)), \"shard\": \(bad.shard.map(String.init) ?? "null"), "
                    + "\"message\": \(jsonString(bad.message))}"
            } ?? "null"
            return "{\"ok\": \(report.ok), \"records\": \(report.records), \"checkpoints\": \(report.checkpoints), "
                + "\"first_bad\": \(firstBad), \"checkpoints_verified\": \(report.checkpointsVerified), "
                + "\"shards\": \(report.shards), \"seals\": \(report.seals), \"unchained_records\": \(report.unchainedRecords), "
                + "\"unsealed_records\": \(report.unsealedRecords), \"unsigned_records\": \(report.unsignedRecords), "
                + "\"unverifiable_records\": \(report.unverifiableRecords), \"seconds\": \(fixed(seconds, 3)), "
                + "\"records_per_sec\": \(Int(Double(report.records) / max(seconds, 1e-9))), "
                + "\"notes\": [\(report.notes.map(jsonString).joined(separator: ", "))]}"
        }

        static func text(_ report: AuditReport, seconds: Double) -> String {
            var lines: [String] = []
            if let bad = report.firstBad {
                lines.append("audit FAILED: \(bad.file) at byte \(bad.offset), LSN \(bad.lsn): \(bad.message) [\(bad.problem)]")
            } else {
                lines.append("audit ok: \(report.records) records in \(report.shards) shards, \(report.seals) seals, "
                    + "\(report.checkpoints) checkpoints" + (report.checkpointsVerified ? " (signatures verified)" : " (signatures NOT verified)")
                    + " in \(fixed(seconds, 2)) s")
            }
            for note in report.notes { lines.append("note: \(note)") }
            return lines.joined(separator: "\n")
        }
    }
}
