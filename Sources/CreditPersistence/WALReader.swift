/// Reads and verifies a shard's write-ahead log: segment headers, record checksums, LSN
/// continuity and the hash chain, and tells a torn tail from corruption.
///
/// The tail rule (docs/formats.md): a crash can only damage bytes the writer had not yet
/// synced, and the writer never has more than `unsyncedBytesMax` of them (it is in every
/// segment header). So a bad record in the last segment is a torn tail when every byte
/// written after it lies within `unsyncedBytesMax` of it; the tail is then cut off and
/// reported. Anything else — a bad record with data beyond that distance, a bad record in
/// an earlier segment, a gap in LSNs, a broken chain — is corruption and stops the read
/// with the file and offset, unless the caller chose point-in-time recovery.
public enum WALReader {
    /// What to do on corruption that is not a torn tail.
    public enum Mode: Sendable, Equatable {
        /// Stop with an error (the default: an operator decides).
        case strict
        /// Keep every record before the first bad one and report the rest as dropped,
        /// like RocksDB's point-in-time recovery. For an operator who accepts losing them.
        case pointInTime
    }

    /// One verified record.
    public struct Entry: Sendable {
        public var lsn: UInt64
        public var time: Timestamp
        public var command: Command
    }

    public struct Report: Sendable, Equatable {
        public var segments: [String] = []
        /// Records handed to the visitor (those after `afterLSN`).
        public var recordsVisited = 0
        /// Records verified, including those at or before `afterLSN`.
        public var recordsVerified = 0
        /// LSN and checksum of the last good record (`afterLSN` and the expected chain
        /// value when the log has none after it).
        public var lastLSN: UInt64 = 0
        public var lastChecksum: UInt32 = 0
        /// Where the next record goes: the segment holding the last good record (nil
        /// when there is no segment) and the offset after it.
        public var tailSegment: String?
        public var tailOffset = 0
        /// The torn (or, in point-in-time mode, corrupt) tail that was cut off.
        public var droppedBytes = 0
        public var droppedRecords = 0
        /// Segments after the cut that hold nothing to keep (point-in-time mode, or a last
        /// segment whose header was never written).
        public var droppedSegments: [String] = []
        /// Why bytes were dropped, for the recovery report.
        public var droppedBecause: String?
    }

    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var offset: Int
        public var problem: String
        /// The log's first records were pruned (archive retention): recovery from an older
        /// point, e.g. the log's start, is impossible, not the log damaged.
        public var logStartPruned = false
        public var description: String { "\(file) at byte \(offset): \(problem)" }
    }

    /// Reads the segments in `directory` (files named by `WALFormat.segmentName`), verifies
    /// them, and calls `visit` for each record with an LSN above `afterLSN`, in order.
    ///
    /// - Parameters:
    ///   - afterLSN: the LSN a snapshot covers (0 for none); `chain` is that record's
    ///     checksum, which the next record must name as its previous (nil: not checked,
    ///     e.g. when no snapshot is used).
    ///   - shard: the shard index every segment header must carry.
    public static func read(directory: String, fileSystem: any FileSystem, shard: UInt32, afterLSN: UInt64 = 0,
                            chain: UInt32? = nil, mode: Mode = .strict,
                            visit: (Entry) throws -> Void) throws -> Report {
        try read(directories: [directory], fileSystem: fileSystem, shard: shard, afterLSN: afterLSN, chain: chain,
                 mode: mode, visit: visit)
    }

    /// `read(directory:...)` over the segments of several directories (the archive and the
    /// live log), taken together in LSN order.
    public static func read(directories: [String], fileSystem: any FileSystem, shard: UInt32, afterLSN: UInt64 = 0,
                            chain: UInt32? = nil, mode: Mode = .strict,
                            visit: (Entry) throws -> Void) throws -> Report {
        var report = Report()
        report.lastLSN = afterLSN
        report.lastChecksum = chain ?? 0
        var located: [(name: String, directory: String)] = []
        for directory in directories where fileSystem.fileExists(directory) {
            do {
                for name in try fileSystem.contentsOfDirectory(directory) where WALFormat.firstLSN(ofSegmentNamed: name) != nil {
                    located.append((name, directory))
                }
            } catch {
                throw Failure(file: directory, offset: 0, problem: "cannot list the log: \(error)")
            }
        }
        located.sort { $0.name < $1.name }
        // A power cut between the two directory syncs of an archive move can leave a
        // segment under both names (the same file): keep one.
        located = located.enumerated().filter { $0.offset == 0 || located[$0.offset - 1].name != $0.element.name }.map(\.element)
        let names = located.map(\.name)
        report.segments = names
        var expectedLSN: UInt64? = nil  // LSN the next record must have; nil until the first segment sets it
        var expectedPrevious: UInt32? = chain
        var cut = false
        var previousUnsyncedBytesMax: UInt64 = 0

        for (index, name) in names.enumerated() {
            let path = located[index].directory + "/" + name
            let isLast = index == names.count - 1
            if cut {
                report.droppedSegments.append(name)
                continue
            }
            let bytes: [UInt8]
            do { bytes = try fileSystem.readFile(path) } catch {
                throw Failure(file: path, offset: 0, problem: "cannot read: \(error)")
            }
            let header: SegmentHeader
            do {
                header = try SegmentHeader(decoding: bytes)
            } catch {
                // A last segment whose header never reached the disk (the crash came right
                // after it was created) holds nothing: dropped, like a torn tail.
                if isLast, error == .allZero || error == .tooShort,
                   bytes.allSatisfy({ $0 == 0 }) {
                    report.droppedSegments.append(name)
                    report.droppedBecause = "segment \(name) was created but never written"
                    continue
                }
                if mode == .pointInTime {
                    report.droppedSegments.append(name)
                    report.droppedBecause = "\(path): \(error)"
                    cut = true
                    continue
                }
                throw Failure(file: path, offset: 0, problem: error.description)
            }
            guard header.shardIndex == shard else {
                throw Failure(file: path, offset: 12, problem: "segment belongs to shard \(header.shardIndex), not \(shard)")
            }
            guard WALFormat.firstLSN(ofSegmentNamed: name) == header.firstLSN else {
                throw Failure(file: path, offset: 24, problem: "header says first LSN \(header.firstLSN), the file name does not")
            }
            if let expected = expectedLSN {
                guard header.firstLSN == expected else {
                    // Records missing before this segment. If the previous segment's tail
                    // was written but never synced when the power failed (one write batch
                    // can span a roll-over), this segment and those after it hold only
                    // unsynced records too: a torn tail across segments.
                    let later = laterSegmentsEvidence(located[index...].map { $0.directory + "/" + $0.name },
                                                      fileSystem: fileSystem, after: report.lastLSN)
                    if header.firstLSN > expected, UInt64(later.writtenBytes) <= previousUnsyncedBytesMax,
                       later.maxSyncedLSN < expected {
                        report.droppedSegments.append(name)
                        report.droppedBytes = later.writtenBytes
                        report.droppedRecords = later.records
                        report.droppedBecause = "torn tail: records \(expected)..<\(header.firstLSN) were never synced before segment \(name)"
                        cut = true
                        continue
                    }
                    let problem = header.firstLSN > expected
                        ? "missing log records \(expected)..<\(header.firstLSN) (a segment is missing)"
                        : "segment starts at LSN \(header.firstLSN), but \(expected) was expected"
                    if mode == .pointInTime { report.droppedSegments.append(name); report.droppedBecause = problem; cut = true; continue }
                    throw Failure(file: path, offset: 24, problem: problem)
                }
                if let previous = expectedPrevious, header.previousChecksum != previous {
                    let problem = "hash chain broken: segment names \(hex(header.previousChecksum)) as the previous record, the log has \(hex(previous))"
                    if mode == .pointInTime { report.droppedSegments.append(name); report.droppedBecause = problem; cut = true; continue }
                    throw Failure(file: path, offset: 20, problem: problem)
                }
            } else {
                // The first segment (earlier ones may be archived): it must reach back to
                // the snapshot, and its link is where the chain starts.
                guard header.firstLSN <= afterLSN + 1 else {
                    throw Failure(file: path, offset: 24,
                                  problem: "the log starts at LSN \(header.firstLSN) but recovery needs it from \(afterLSN + 1) (records are missing)",
                                  logStartPruned: true)
                }
                if header.firstLSN == afterLSN + 1, let chain, header.previousChecksum != chain {
                    throw Failure(file: path, offset: 20,
                                  problem: "hash chain broken: segment names \(hex(header.previousChecksum)) as the previous record, the snapshot ends with \(hex(chain))")
                }
                expectedLSN = header.firstLSN
                expectedPrevious = header.previousChecksum
            }
            previousUnsyncedBytesMax = header.unsyncedBytesMax
            let end = min(bytes.count, Int(clamping: header.segmentSize))
            var offset = WALFormat.segmentHeaderSize
            report.tailSegment = name
            report.tailOffset = offset

            try bytes.withUnsafeBytes { raw in
                while offset < end {
                    let scan = WALRecord.scan(raw, at: offset, end: end)
                    var problem: String?
                    switch scan {
                    case .end:
                        let lastWritten = lastNonZero(raw, from: offset, to: end)
                        if lastWritten == nil { return } // clean end of this segment's records
                        problem = "a zero length field with data after it"
                    case .invalid(let why):
                        problem = why
                    case .record(let record, let length):
                        if record.lsn != expectedLSN {
                            problem = "record has LSN \(record.lsn), \(expectedLSN.map(String.init) ?? "?") was expected"
                        } else if let previous = expectedPrevious, record.previous != previous {
                            problem = "hash chain broken: record names \(hex(record.previous)) as the previous record, the log has \(hex(previous))"
                        } else {
                            if record.lsn == afterLSN, let chain, record.checksum != chain {
                                throw Failure(file: path, offset: offset,
                                              problem: "the snapshot does not match the log: record \(record.lsn) has checksum \(hex(record.checksum)), the snapshot ends with \(hex(chain))")
                            }
                            if record.lsn > afterLSN {
                                var reader = ByteReader(bytes, from: offset + WALFormat.recordHeaderSize, to: offset + length)
                                let command: Command
                                do {
                                    command = try Command(decoding: &reader)
                                    try reader.expectEnd("the command")
                                } catch {
                                    throw Failure(file: path, offset: offset, problem: "record \(record.lsn) passed its checksum but its command does not decode: \(error)")
                                }
                                try visit(Entry(lsn: record.lsn, time: record.time, command: command))
                                report.recordsVisited += 1
                            }
                            report.recordsVerified += 1
                            report.lastLSN = record.lsn
                            report.lastChecksum = record.checksum
                            expectedLSN = record.lsn + 1
                            expectedPrevious = record.checksum
                            offset += length
                            report.tailOffset = offset
                            continue
                        }
                    }
                    // A bad spot at `offset`: a torn tail, or corruption. It is corruption
                    // if data was written beyond what a crash can tear (counting later
                    // segments too: one write batch may span a roll-over), or if a valid
                    // record after it declares it synced (it was on disk before the crash).
                    let problemText = problem ?? "bad record"
                    let lastWritten = lastNonZero(raw, from: offset, to: end) ?? offset
                    var span = lastWritten - offset + 1
                    let badLSN = expectedLSN ?? 0
                    var syncedAfter = maxSyncedLSN(raw, from: offset + 1, through: lastWritten, end: end, after: report.lastLSN)
                    var laterRecords = 0
                    if !isLast {
                        let later = laterSegmentsEvidence(located[(index + 1)...].map { $0.directory + "/" + $0.name },
                                                          fileSystem: fileSystem, after: report.lastLSN)
                        span += later.writtenBytes
                        syncedAfter = max(syncedAfter, later.maxSyncedLSN)
                        laterRecords = later.records
                    }
                    let mayBeTorn = UInt64(span) <= header.unsyncedBytesMax
                    let declaredSynced = syncedAfter >= badLSN
                    if (mayBeTorn && !declaredSynced) || mode == .pointInTime {
                        report.droppedBytes = span
                        report.droppedRecords = 1 + laterRecords
                            + countRecords(raw, from: offset + 1, through: lastWritten, end: end, after: report.lastLSN)
                        report.droppedBecause = mayBeTorn && !declaredSynced
                            ? "torn tail in \(name) at byte \(offset): \(problemText)"
                            : "\(path) at byte \(offset): \(problemText)"
                        cut = true // later segments hold nothing to keep
                        return
                    }
                    var reasons: [String] = []
                    if declaredSynced { reasons.append("a later record says record \(badLSN) had been synced: not a torn write") }
                    if !mayBeTorn { reasons.append("\(span) bytes were written after it, more than the \(header.unsyncedBytesMax) a crash can tear") }
                    throw Failure(file: path, offset: offset, problem: problemText + " (" + reasons.joined(separator: "; ") + ")")
                }
            }
        }
        if report.lastLSN < afterLSN {
            throw Failure(file: directories.last ?? "", offset: 0,
                          problem: "the snapshot covers LSN \(afterLSN) but the log ends at \(report.lastLSN): the snapshot is newer than the log")
        }
        return report
    }

    /// Offset of the last non-zero byte in `from..<to`, nil if all are zero.
    static func lastNonZero(_ raw: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        var index = to - 1
        // Word at a time while aligned 8-byte words are all zero.
        while index >= from + 7 && (index + 1) % 8 == 0 {
            if raw.loadUnaligned(fromByteOffset: index - 7, as: UInt64.self) != 0 { break }
            index -= 8
        }
        while index >= from {
            if raw[index] != 0 { return index }
            index -= 1
        }
        return nil
    }

    /// How many valid records (LSN above `after`) start in `from...through`: what a cut
    /// drops besides the damaged record itself. `through` is the last non-zero byte; a
    /// record may end in zero bytes after it, up to `end`.
    static func countRecords(_ raw: UnsafeRawBufferPointer, from: Int, through: Int, end: Int, after: UInt64) -> Int {
        var count = 0
        var offset = from
        while offset <= through {
            if case .record(let header, let length) = WALRecord.scan(raw, at: offset, end: end), header.lsn > after {
                count += 1
                offset += length
            } else {
                offset += 1
            }
        }
        return count
    }

    /// What later segments hold, for deciding whether a bad spot before them is a torn
    /// tail: their written bytes after the header (all of a file whose header is bad),
    /// how many valid records they hold, and the highest synced LSN those declare.
    static func laterSegmentsEvidence(_ paths: [String], fileSystem: any FileSystem, after: UInt64)
        -> (writtenBytes: Int, records: Int, maxSyncedLSN: UInt64) {
        var written = 0
        var records = 0
        var synced: UInt64 = 0
        for path in paths {
            guard let bytes = try? fileSystem.readFile(path) else { continue }
            let start = (try? SegmentHeader(decoding: bytes)) == nil ? 0 : WALFormat.segmentHeaderSize
            bytes.withUnsafeBytes { raw in
                guard let last = lastNonZero(raw, from: start, to: raw.count) else { return }
                written += last - start + 1
                records += countRecords(raw, from: start, through: last, end: raw.count, after: after)
                synced = max(synced, maxSyncedLSN(raw, from: start, through: last, end: raw.count, after: after))
            }
        }
        return (written, records, synced)
    }

    /// The highest synced LSN that valid records starting in `from...through` declare (0
    /// if none).
    static func maxSyncedLSN(_ raw: UnsafeRawBufferPointer, from: Int, through: Int, end: Int, after: UInt64) -> UInt64 {
        var synced: UInt64 = 0
        var offset = from
        while offset <= through {
            if case .record(let header, let length) = WALRecord.scan(raw, at: offset, end: end), header.lsn > after {
                synced = max(synced, header.syncedLSN)
                offset += length
            } else {
                offset += 1
            }
        }
        return synced
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
