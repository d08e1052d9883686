/// What the log reader found wrong, or cut off, at a place in a log: one case per kind of
/// damage, carrying what an operator or a program needs (LSNs, checksums, sizes), with a
/// stable machine-readable `code` and a human `description` (docs/operations.md lists them).
public enum WALProblem: Sendable, Equatable, CustomStringConvertible {
    // Files and directories.
    /// A log directory (archive or live) the data directory's layout requires is gone.
    case directoryMissing
    case directoryUnreadable(FileError)
    /// A segment cannot be read: missing, not a regular file, larger than a segment can be.
    case segmentUnreadable(FileError)
    /// The live log directory holds no segment, although records existed: a snapshot covers
    /// `snapshotLSN`, or archived segments hold records (the writer always keeps its current
    /// segment in the live directory).
    case liveSegmentMissing(snapshotLSN: UInt64, archivedSegments: Int)

    // Segments.
    case segmentHeader(SegmentHeader.Problem)
    case segmentOfOtherShard(found: UInt32, expected: UInt32)
    /// A segment written for another shard count: its tenants were routed by another hash.
    case segmentOfOtherLayout(shardCount: UInt32, expected: UInt32)
    case segmentNameMismatch(headerFirstLSN: UInt64, nameFirstLSN: UInt64)
    /// A preallocated segment whose file ends inside a record, before the size its header
    /// gives: cut after it was written (a crash leaves preallocated zeros, never an early end).
    case segmentTruncated(bytes: Int, expected: UInt64)
    /// A segment file longer than its header's size: no writer makes one.
    case segmentOversized(bytes: Int, expected: UInt64)
    /// A segment found empty or all zeros although a snapshot proves records from it were
    /// synced (its first LSN is at or before the snapshot's).
    case segmentEmptied(firstLSN: UInt64, snapshotLSN: UInt64)
    /// Records `from..<to` are in no segment.
    case recordsMissing(from: UInt64, to: UInt64)
    case segmentOutOfOrder(firstLSN: UInt64, expected: UInt64)
    /// A segment header or record names `found` as the previous record's checksum, the log
    /// (or the snapshot it continues) has `expected`.
    case chainBroken(found: UInt32, expected: UInt32)
    /// The oldest segment starts at `found`, recovery needs the log from `needed` (archive
    /// pruned, or the first segment lost).
    case logStartMissing(needed: UInt64, found: UInt64)

    // Records.
    /// A bad record that is not a torn tail: a later record declares it synced, or more was
    /// written after it than a crash can tear.
    case recordCorrupt(WALRecord.Damage, lsn: UInt64, declaredSynced: Bool, bytesAfter: Int, unsyncedBytesMax: UInt64)
    case commandUndecodable(lsn: UInt64, BinaryDecodingError)
    case timeOutOfOrder(lsn: UInt64, time: Timestamp, previous: Timestamp)
    /// A sealed frame (records `lsn...`) whose checksum holds but which does not open: its tag
    /// does not verify, or its contents do not match its clear fields. Corruption or
    /// tampering, never a torn tail (a torn write fails the checksum first).
    case frameUnreadable(WALRecord.Damage, lsn: UInt64)
    /// A sealed segment's frames must be opened and its data key (named by its id) is not in
    /// the ring, or no ring was given. Never cut: nothing changes until the key is supplied.
    case keyUnavailable(keyID: String)

    // The log against its snapshot.
    /// The record at the snapshot's LSN is not the one the snapshot was taken after.
    case snapshotMismatch(lsn: UInt64, recordChecksum: UInt32, snapshotChecksum: UInt32)
    case logBehindSnapshot(snapshotLSN: UInt64, logLSN: UInt64)

    // What a read cuts off without refusing (reported in `WALReader.Report.droppedBecause`).
    /// A bad record within `unsyncedBytesMax` of the end that no later record declares
    /// synced: what a crash leaves.
    case tornTail(WALRecord.Damage, lsn: UInt64)
    /// Records `from..<to` never reached the segment before the next one: a torn tail
    /// across a roll-over.
    case tornAcrossSegments(from: UInt64, to: UInt64)
    /// The last segment was created but its header never reached the disk.
    case segmentNeverWritten

    // The audit chain (docs/audit.md).
    /// A seal that does not continue the audit chain: it names another first covered LSN
    /// than the record after the previous seal, or another previous head than that seal's.
    case auditSealLinkBroken(lsn: UInt64, firstLSN: UInt64, expectedFirstLSN: UInt64, headMatches: Bool)
    /// The command records `firstLSN...lastLSN`, as they are on disk, do not hash to their
    /// seal's head: they were changed after they were written (with their CRCs recomputed).
    case auditSealMismatch(firstLSN: UInt64, lastLSN: UInt64)
    /// A version 1 segment (no seals) after a version 2 one: no writer goes back.
    case auditSegmentDowngraded(version: UInt16)

    /// A stable machine-readable name (snake_case), for programs and HTTP error bodies.
    public var code: String {
        switch self {
        case .directoryMissing: "log_directory_missing"
        case .directoryUnreadable: "log_directory_unreadable"
        case .segmentUnreadable(let error): error.isNotRegularFile ? "segment_not_regular_file"
            : error.isTooLarge ? "segment_too_large" : "segment_unreadable"
        case .liveSegmentMissing: "segment_missing"
        case .segmentHeader(let problem): problem.code
        case .segmentOfOtherShard: "segment_wrong_shard"
        case .segmentOfOtherLayout: "segment_wrong_shard_count"
        case .segmentNameMismatch: "segment_name_mismatch"
        case .segmentTruncated: "segment_truncated"
        case .segmentOversized: "segment_oversized"
        case .segmentEmptied: "segment_emptied"
        case .recordsMissing: "segment_missing"
        case .segmentOutOfOrder: "segment_out_of_order"
        case .chainBroken: "chain_broken"
        case .logStartMissing: "log_start_missing"
        case .recordCorrupt(let damage, _, _, _, _): damage.code
        case .commandUndecodable: "command_undecodable"
        case .frameUnreadable(let damage, _): damage.code
        case .keyUnavailable: "data_key_missing"
        case .timeOutOfOrder: "time_out_of_order"
        case .snapshotMismatch: "snapshot_log_mismatch"
        case .logBehindSnapshot: "log_behind_snapshot"
        case .tornTail, .tornAcrossSegments: "torn_tail"
        case .segmentNeverWritten: "segment_never_written"
        case .auditSealLinkBroken: "audit_seal_link_broken"
        case .auditSealMismatch: "audit_chain_mismatch"
        case .auditSegmentDowngraded: "audit_segment_downgraded"
        }
    }

    public var description: String {
        switch self {
        case .directoryMissing: "the log directory is missing"
        case .directoryUnreadable(let error): "cannot list the log: \(error)"
        case .segmentUnreadable(let error): "cannot read: \(error)"
        case .liveSegmentMissing(let snapshotLSN, let archived):
            "no segment in the live log, but a snapshot covers LSN \(snapshotLSN) and \(archived) segments are archived (a segment is missing)"
        case .segmentHeader(let problem): problem.description
        case .segmentOfOtherShard(let found, let expected): "segment belongs to shard \(found), not \(expected)"
        case .segmentOfOtherLayout(let count, let expected): "segment was written for \(count) shards, the directory has \(expected)"
        case .segmentNameMismatch(let header, let name):
            "header says first LSN \(header), the file name says \(name)"
        case .segmentTruncated(let bytes, let expected):
            "segment file ends at \(bytes) bytes inside a record, its header says \(expected): cut after it was written"
        case .segmentOversized(let bytes, let expected): "segment file has \(bytes) bytes, its header says \(expected)"
        case .segmentEmptied(let first, let snapshotLSN):
            "segment holds no records, but a snapshot covers LSN \(snapshotLSN), which it held from \(first) on"
        case .recordsMissing(let from, let to): "missing log records \(from)..<\(to) (a segment is missing)"
        case .segmentOutOfOrder(let first, let expected): "segment starts at LSN \(first), but \(expected) was expected"
        case .chainBroken(let found, let expected):
            "hash chain broken: names \(WALReader.hex(found)) as the previous record, the log has \(WALReader.hex(expected))"
        case .logStartMissing(let needed, let found):
            "the log starts at LSN \(found) but recovery needs it from \(needed) (records are missing)"
        case .recordCorrupt(let damage, let lsn, let declaredSynced, let bytesAfter, let unsyncedBytesMax):
            "record \(lsn): \(damage) ("
                + [declaredSynced ? "a later record says record \(lsn) had been synced: not a torn write" : nil,
                   UInt64(bytesAfter) > unsyncedBytesMax
                       ? "\(bytesAfter) bytes were written after it, more than the \(unsyncedBytesMax) a crash can tear" : nil]
                .compactMap { $0 }.joined(separator: "; ") + ")"
        case .commandUndecodable(let lsn, let error): "record \(lsn) passed its checksum but its command does not decode: \(error)"
        case .frameUnreadable(let damage, let lsn): "sealed frame from record \(lsn) passed its checksum but cannot be opened: \(damage)"
        case .keyUnavailable(let keyID): "sealed with data key \(keyID), which is not among the keys given (--data-key)"
        case .timeOutOfOrder(let lsn, let time, let previous): "record \(lsn) is stamped \(time), before the previous record (\(previous))"
        case .snapshotMismatch(let lsn, let record, let snapshot):
            "the snapshot does not match the log: record \(lsn) has checksum \(WALReader.hex(record)), the snapshot ends with \(WALReader.hex(snapshot))"
        case .logBehindSnapshot(let snapshotLSN, let logLSN):
            "the snapshot covers LSN \(snapshotLSN) but the log ends at \(logLSN): the snapshot is newer than the log"
        case .tornTail(let damage, let lsn): "torn tail at record \(lsn): \(damage)"
        case .tornAcrossSegments(let from, let to): "torn tail: records \(from)..<\(to) were never synced before the next segment"
        case .segmentNeverWritten: "segment was created but never written"
        case .auditSealLinkBroken(let lsn, let first, let expected, let headMatches):
            "the audit seal after record \(lsn) does not continue the chain: it covers from \(first), \(expected) was expected"
                + (headMatches ? "" : "; its previous head is not the previous seal's")
        case .auditSealMismatch(let first, let last):
            "records \(first)...\(last) do not hash to their audit seal: changed after they were written"
        case .auditSegmentDowngraded(let version):
            "a version \(version) segment (no audit seals) follows version 2 segments: no writer goes back"
        }
    }
}
