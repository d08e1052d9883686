import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// `credits snapshot verify FILE`
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Inspect snapshot files.",
                                                    subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a snapshot file: header checksum, LZ4 checksums, the state's structure and invariants.")

        @Argument(help: "The snapshot file (DIR/shard-NN/snapshots/<lsn>.snap).") var file: String
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var keys: DataKeyOptions

        func validate() throws { try checkPath("FILE", file) }

        func run() async throws {
            let fileSystem = PosixFileSystem()
            // The data directory the file lies in (DIR/shard-NN/snapshots/FILE): no key may lie there.
            var components = file.split(separator: "/", omittingEmptySubsequences: false)
            components.removeLast(min(3, components.count))
            let dataDirectory = components.isEmpty ? "." : (components == [""] ? "/" : components.joined(separator: "/"))
            let ring = try keys.ring(dataDirectory: dataDirectory)
            do throws(SnapshotProblem) {
                let bytes = try SnapshotFile.readBytes(path: file, fileSystem: fileSystem)
                // The header's shard count is range-checked before it configures anything.
                let header = try SnapshotHeader(decoding: bytes)
                let configuration = EngineConfiguration(shardCount: Int(header.shardCount)).shardLedgerConfiguration
                let (_, ledger) = try SnapshotFile.decode(bytes, configuration: configuration, keys: ring)
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
                    print("{\"ok\": false, \"file\": \(jsonString(file)), \"code\": \(jsonString(error.code)), "
                        + "\"problem\": \(jsonString(error.description))}")
                } else {
                    printError("\(file): \(error) [\(error.code)]")
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
        @OptionGroup var keys: DataKeyOptions

        func validate() throws { try checkPath("DIR", directory) }

        func run() async throws {
            let fileSystem = PosixFileSystem()
            var storage = StorageConfiguration(directory: directory, fileSystem: fileSystem)
            storage.encryption = try keys.ring(dataDirectory: directory)
            let shardCount: Int?
            do throws(RecoveryError) { shardCount = try ShardStorage.existingShardCount(storage: storage) } catch {
                reportFailure(code: error.code, problem: error.description, label: directory)
                throw ExitCode.failure
            }
            if let shardCount {
                var failed = false
                for shard in 0 ..< shardCount {
                    let label = "shard \(shard)"
                    do throws(RecoveryError) {
                        report(try ShardStorage.verifyLog(shard: shard, shardCount: shardCount, storage: storage), label: label)
                    } catch {
                        failed = true
                        reportFailure(code: error.code, problem: error.description, label: label)
                    }
                }
                if failed { throw ExitCode.failure }
                return
            }
            try verifySegmentDirectory(fileSystem: fileSystem, keys: storage.encryption)
        }

        /// DIR is a bare directory of segments: the shard is the one its first segment names.
        private func verifySegmentDirectory(fileSystem: PosixFileSystem, keys ring: EncryptionKeyRing?) throws {
            let names = try fileSystem.contentsOfDirectory(directory).filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }
            guard let first = names.first else { throw ValidationError("\(directory) holds no data directory and no .wal segments") }
            do {
                // The header alone: the reader checks the whole segment.
                let bytes: [UInt8]
                do { bytes = try readRegularFilePrefix(directory + "/" + first, bytesMax: WALFormat.segmentHeaderSize) } catch {
                    reportFailure(code: error.code, problem: "\(directory)/\(first): \(error)", label: directory)
                    throw ExitCode.failure
                }
                let header: SegmentHeader
                do { header = try SegmentHeader(decoding: bytes) } catch {
                    throw WALReader.Failure(file: directory + "/" + first, offset: 0, problem: .segmentHeader(error))
                }
                report(try WALReader.read(directories: [directory], fileSystem: fileSystem, shard: header.shardIndex, keys: ring) { _ in },
                       label: directory)
            } catch let failure as WALReader.Failure {
                reportFailure(code: failure.code, problem: failure.description, label: directory)
                throw ExitCode.failure
            } catch let error as FileError {
                let failure = WALReader.Failure(file: directory + "/" + first, offset: 0, problem: .segmentUnreadable(error))
                reportFailure(code: failure.code, problem: failure.description, label: directory)
                throw ExitCode.failure
            }
        }

        private func report(_ report: WALReader.Report, label: String) {
            if json {
                print("{\"ok\": true, \"log\": \(jsonString(label)), \"segments\": \(report.segments.count), "
                    + "\"records\": \(report.recordsVerified), \"last_lsn\": \(report.lastLSN), "
                    + "\"torn_bytes\": \(report.droppedBytes), \"torn_records\": \(report.droppedRecords)"
                    + (report.droppedBecause.map { ", \"torn_code\": \(jsonString($0.code)), \"torn\": \(jsonString($0.description))" } ?? "")
                    + "}")
            } else {
                print("\(label): ok — \(report.segments.count) segments, \(report.recordsVerified) records, last LSN \(report.lastLSN)"
                    + (report.droppedBecause.map { "; \($0) (\(report.droppedBytes) bytes, \(report.droppedRecords) records would be cut)" } ?? ""))
            }
        }

        private func reportFailure(code: String, problem: String, label: String) {
            if json {
                print("{\"ok\": false, \"log\": \(jsonString(label)), \"code\": \(jsonString(code)), \"problem\": \(jsonString(problem))}")
            } else {
                printError("\(label): \(problem) [\(code)]")
            }
        }
    }
}
