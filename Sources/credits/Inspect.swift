import ArgumentParser
import CreditEngine

/// `credits snapshot verify FILE`
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Inspect snapshot files.",
                                                    subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a snapshot file: header checksum, LZ4 checksums, the state's structure and invariants.")

        @Argument(help: "The snapshot file (DIR/shard-NN/snapshots/<lsn>.snap).") var file: String
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws { try checkPath("FILE", file) }

        func run() async throws {
            let fileSystem = PosixFileSystem()
            do {
                let header = try SnapshotHeader(decoding: try readRegularFilePrefix(file, bytesMax: SnapshotHeader.size))
                let configuration = EngineConfiguration(shardCount: Int(header.shardCount)).shardLedgerConfiguration
                let (_, ledger) = try SnapshotFile.read(path: file, fileSystem: fileSystem, configuration: configuration)
                let ratio = Double(header.stateBytes) / Double(max(1, header.frameBytes))
                if json {
                    print("{\"ok\": true, \"file\": \(jsonString(file)), \"shard\": \(header.shardIndex), "
                        + "\"shards\": \(header.shardCount), \"lsn\": \(header.lsn), \"state_bytes\": \(header.stateBytes), "
                        + "\"compressed_bytes\": \(header.frameBytes), \"lz4_ratio\": \(fixed(ratio, 2)), "
                        + "\"accounts\": \(ledger.accountCount), \"tenants\": \(ledger.tenantCount)}")
                } else {
                    print("\(file): ok — shard \(header.shardIndex) of \(header.shardCount), LSN \(header.lsn), "
                        + "\(ledger.accountCount) accounts, \(header.stateBytes) bytes of state in \(header.frameBytes) "
                        + "compressed (LZ4 ratio \(fixed(ratio, 2)))")
                }
            } catch {
                if json {
                    print("{\"ok\": false, \"file\": \(jsonString(file)), \"problem\": \(jsonString("\(error)"))}")
                } else {
                    printError("\(file): \(error)")
                }
                throw ExitCode.failure
            }
        }
    }
}

/// `credits wal verify DIR`
struct WALCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wal", abstract: "Inspect write-ahead logs.",
                                                    subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a log: segment headers, record checksums, LSN continuity and the hash chain.",
            discussion: """
                DIR is a data directory (every shard's archive and live log are checked) or one \
                log directory holding .wal segments. A torn tail is reported, not an error; \
                anything else wrong is named with its file and byte offset and makes the exit \
                status non-zero.
                """)

        @Argument(help: "A data directory, or a directory of .wal segments.") var directory: String
        @Flag(help: "Print one JSON object per shard or log directory.") var json = false

        func validate() throws { try checkPath("DIR", directory) }

        func run() async throws {
            let fileSystem = PosixFileSystem()
            let storage = StorageConfiguration(directory: directory, fileSystem: fileSystem)
            var targets: [(label: String, directories: [String], shard: UInt32)] = []
            if let shardCount = try ShardStorage.existingShardCount(storage: storage) {
                for shard in 0 ..< shardCount {
                    targets.append(("shard \(shard)", [storage.archiveDirectory(shard), storage.walDirectory(shard)], UInt32(shard)))
                }
            } else {
                let names = try fileSystem.contentsOfDirectory(directory).filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }
                guard let first = names.first else { throw ValidationError("\(directory) holds no data directory and no .wal segments") }
                let header = try SegmentHeader(decoding: try readRegularFilePrefix(directory + "/" + first,
                                                                                    bytesMax: WALFormat.segmentHeaderSize))
                targets.append((directory, [directory], header.shardIndex))
            }
            var failed = false
            for target in targets {
                do {
                    let report = try WALReader.read(directories: target.directories, fileSystem: fileSystem, shard: target.shard) { _ in }
                    if json {
                        print("{\"ok\": true, \"log\": \(jsonString(target.label)), \"segments\": \(report.segments.count), "
                            + "\"records\": \(report.recordsVerified), \"last_lsn\": \(report.lastLSN), "
                            + "\"torn_bytes\": \(report.droppedBytes), \"torn_records\": \(report.droppedRecords)"
                            + (report.droppedBecause.map { ", \"torn\": \(jsonString($0))" } ?? "") + "}")
                    } else {
                        print("\(target.label): ok — \(report.segments.count) segments, \(report.recordsVerified) records, last LSN \(report.lastLSN)"
                            + (report.droppedBecause.map { "; \($0) (\(report.droppedBytes) bytes, \(report.droppedRecords) records would be cut)" } ?? ""))
                    }
                } catch {
                    failed = true
                    if json {
                        print("{\"ok\": false, \"log\": \(jsonString(target.label)), \"problem\": \(jsonString("\(error)"))}")
                    } else {
                        printError("\(target.label): \(error)")
                    }
                }
            }
            if failed { throw ExitCode.failure }
        }
    }
}
