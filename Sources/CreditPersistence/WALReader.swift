import Crypto
@_spi(Plumbing) import CreditCore
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
    @_spi(Plumbing) public struct Entry: Sendable {
        package var lsn: UInt64
        package var time: Timestamp
        package var command: Command
    }

    @_spi(Plumbing) public struct Report: Sendable, Equatable {
        package var segments: [String] = []
        /// Records handed to the visitor (those after `afterLSN`).
        @_spi(Plumbing) public var recordsVisited = 0
        /// Records verified, including those at or before `afterLSN`.
        package var recordsVerified = 0
        /// LSN and checksum of the last good record (`afterLSN` and the expected chain
        /// value when the log has none after it).
        package var lastLSN: UInt64 = 0
        package var lastChecksum: UInt32 = 0
        /// Where the next record goes: the segment holding the last good record (nil
        /// when there is no segment) and the offset after it.
        package var tailSegment: String?
        package var tailOffset = 0
        /// The torn (or, in point-in-time mode, corrupt) tail that was cut off.
        package var droppedBytes = 0
        package var droppedRecords = 0
        /// Segments after the cut that hold nothing to keep (point-in-time mode, or a last
        /// segment whose header was never written).
        package var droppedSegments: [String] = []
        /// Why bytes were dropped, and where: a torn tail, a segment never written, or (in
        /// point-in-time mode) the damage the read stopped at.
        package var droppedBecause: Failure?

        // The audit chain (docs/audit.md), as far as the read went.
        /// The head of the last seal read (nil: none; then the chain continues from the seed).
        package var auditHead: [UInt8]?
        /// The last seal's LSN and time (nil: no seal read).
        package var auditHeadLSN: UInt64?
        package var auditHeadTime = Timestamp(millisSinceEpoch: 0)
        /// The bytes of the version 2 command records after the last seal, in order (a crash
        /// came before their seal was written): the next seal covers them first.
        package var auditCarry: [UInt8] = []
        /// The first LSN those cover (nil: none).
        package var auditCarryFirstLSN: UInt64?
        /// Seal records read.
        package var auditSeals = 0
        /// Records read in version 1 segments, which the audit chain does not cover.
        package var unchainedRecords = 0
        /// Records read before the first seal of a log whose start was pruned: their
        /// predecessor's head is gone, so they cannot be verified.
        package var unverifiableRecords = 0
        /// The format version of the segment holding the last good record (a writer starts a
        /// new segment rather than append seals to a version 1 one).
        package var tailVersion: UInt16 = WALFormat.version
    }

    /// A seal the read verified (the audit verifier's view of the walk).
    package struct SealEvent {
        /// The segment and offset of the first record the seal covers, and its LSN.
        package var runFile: String
        package var runOffset: Int
        package var firstLSN: UInt64
        /// The seal: its LSN (the last covered record's), time, head, and where it is.
        package var lsn: UInt64
        package var time: Timestamp
        package var head: [UInt8]
        package var file: String
        package var offset: Int
    }

    /// How a read treats the audit chain.
    package struct AuditOptions {
        /// Hash every version 2 command record and check each seal's head (the verifier);
        /// otherwise only the seals' links are checked (recovery).
        package var verifyHeads: Bool
        /// Skip decoding commands and visiting records (the verifier needs only the bytes).
        package var decodeCommands: Bool
        /// Called for each seal once it is verified.
        package var onSeal: ((SealEvent) throws -> Void)?

        package init(verifyHeads: Bool, decodeCommands: Bool, onSeal: ((SealEvent) throws -> Void)?) {
            self.verifyHeads = verifyHeads
            self.decodeCommands = decodeCommands
            self.onSeal = onSeal
        }
    }

    /// Where the log is damaged, and how.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var offset: Int
        public var problem: WALProblem

        package init(file: String, offset: Int, problem: WALProblem) {
            self.file = file
            self.offset = offset
            self.problem = problem
        }

        /// The problem's stable machine-readable name.
        public var code: String { problem.code }
        /// The log's first records were pruned (archive retention): recovery from an older
        /// point, e.g. the log's start, is impossible, not the log damaged.
        public var logStartPruned: Bool { if case .logStartMissing = problem { true } else { false } }
        public var description: String { "\(file) at byte \(offset): \(problem)" }
    }

    /// Reads the segments in `directory` (files named by `WALFormat.segmentName`), verifies
    /// them, and calls `visit` for each record with an LSN above `afterLSN`, in order.
    ///
    /// - Parameters:
    ///   - afterLSN: the LSN a snapshot covers (0 for none); `chain` is that record's
    ///     checksum, which the next record must name as its previous (nil: not checked,
    ///     e.g. when no snapshot is used).
    ///   - shard: the shard index every segment header must carry; `shardCount` the shard
    ///     count (nil: not checked, for a bare directory of segments).
    @_spi(Plumbing) public static func read(directory: String, fileSystem: any FileSystem, shard: UInt32, shardCount: UInt32? = nil,
                            afterLSN: UInt64 = 0, chain: UInt32? = nil, mode: Mode = .strict,
                            keys: EncryptionKeyRing? = nil,
                            visit: (Entry) throws -> Void) throws -> Report {
        try read(directories: [directory], fileSystem: fileSystem, shard: shard, shardCount: shardCount, afterLSN: afterLSN,
                 chain: chain, mode: mode, keys: keys, visit: visit)
    }

    /// A segment file and the directory it was found in.
    struct Located {
        var name: String
        var directory: String
        var path: String { directory + "/" + name }
    }

    /// The segments of `directories`, in log order, each once. Every directory must exist;
    /// the last one is the live log, which always holds the writer's current segment once
    /// anything was written: with none there, a snapshot above LSN 0 or archived segments
    /// prove records are missing.
    static func locateSegments(_ directories: [String], fileSystem: any FileSystem, afterLSN: UInt64,
                               mode: Mode, report: inout Report) throws(Failure) -> [Located] {
        var located: [Located] = []
        var liveCount = 0
        for (index, directory) in directories.enumerated() {
            guard fileSystem.fileExists(directory) else { throw Failure(file: directory, offset: 0, problem: .directoryMissing) }
            let names: [String]
            do { names = try fileSystem.contentsOfDirectory(directory) } catch {
                throw Failure(file: directory, offset: 0, problem: .directoryUnreadable(error))
            }
            for name in names where WALFormat.firstLSN(ofSegmentNamed: name) != nil {
                located.append(Located(name: name, directory: directory))
                if index == directories.count - 1 { liveCount += 1 }
            }
        }
        located.sort { $0.name < $1.name }
        // A power cut between the two directory syncs of an archive move can leave a
        // segment under both names (the same file): keep one.
        located = located.enumerated().filter { $0.offset == 0 || located[$0.offset - 1].name != $0.element.name }.map(\.element)
        if liveCount == 0, afterLSN > 0 || !located.isEmpty, let live = directories.last {
            let failure = Failure(file: live, offset: 0, problem: .liveSegmentMissing(snapshotLSN: afterLSN, archivedSegments: located.count))
            guard mode == .pointInTime else { throw failure }
            report.droppedBecause = failure
        }
        return located
    }

    /// `read(directory:...)` over the segments of several directories (the archive and the
    /// live log), taken together in LSN order.
    package static func read(directories: [String], fileSystem: any FileSystem, shard: UInt32, shardCount: UInt32? = nil,
                            afterLSN: UInt64 = 0, chain: UInt32? = nil, mode: Mode = .strict,
                            audit: AuditOptions? = nil, keys: EncryptionKeyRing? = nil,
                            visit: (Entry) throws -> Void) throws -> Report {
        var walk = SegmentWalk(fileSystem: fileSystem, shard: shard, shardCount: shardCount, afterLSN: afterLSN,
                               chain: chain, mode: mode)
        walk.keys = keys
        walk.track.options = audit ?? AuditOptions(verifyHeads: false, decodeCommands: true, onSeal: nil)
        let located = try locateSegments(directories, fileSystem: fileSystem, afterLSN: afterLSN, mode: mode, report: &walk.report)
        walk.report.segments = located.map(\.name)
        for index in located.indices {
            if walk.cut {
                walk.report.droppedSegments.append(located[index].name)
                continue
            }
            try walk.readSegment(index, of: located, visit: visit)
        }
        if walk.report.lastLSN < afterLSN {
            throw Failure(file: directories.last ?? "", offset: 0,
                          problem: .logBehindSnapshot(snapshotLSN: afterLSN, logLSN: walk.report.lastLSN))
        }
        walk.track.finish(into: &walk.report)
        return walk.report
    }

    /// One read going through the segments in log order: what it was asked, and what it has
    /// found so far. `read(directories:...)` hands it each segment in turn until it is cut.
    private struct SegmentWalk {
        let fileSystem: any FileSystem
        let shard: UInt32
        let shardCount: UInt32?
        let afterLSN: UInt64
        let chain: UInt32?
        let mode: Mode
        var report = Report()
        /// The LSN the next record must have (nil until the first segment sets it) and the
        /// checksum it must name as its previous (`chain` until then).
        var position: ChainPosition
        /// The read stopped: the segments after the cut hold nothing to keep.
        var cut = false
        /// The `unsyncedBytesMax` of the segment read last: how much of its tail a crash can tear.
        var previousUnsyncedBytesMax: UInt64 = 0
        /// The audit chain so far.
        var track = AuditTrack()
        /// The data keys sealed segments are opened with (nil: none given).
        var keys: EncryptionKeyRing?
        /// Log subkeys already derived, by data key id (one derivation per key, not per segment).
        var logKeys: [UInt64: SymmetricKey] = [:]

        init(fileSystem: any FileSystem, shard: UInt32, shardCount: UInt32?, afterLSN: UInt64, chain: UInt32?, mode: Mode) {
            self.fileSystem = fileSystem
            self.shard = shard
            self.shardCount = shardCount
            self.afterLSN = afterLSN
            self.chain = chain
            self.mode = mode
            position = ChainPosition(expectedLSN: nil, expectedPrevious: chain)
            report.lastLSN = afterLSN
            report.lastChecksum = chain ?? 0
        }

        /// Reads segment `index` of `located`: checks its header, its identity, its size and
        /// that it continues the log, then verifies its records and visits those above
        /// `afterLSN`. A segment that fails a check is refused, or cut (point-in-time mode),
        /// or set aside when it holds nothing to keep.
        mutating func readSegment(_ index: Int, of located: [Located], visit: (Entry) throws -> Void) throws {
            let segment = located[index]
            let nameFirstLSN = WALFormat.firstLSN(ofSegmentNamed: segment.name)!
            let isLast = index == located.count - 1
            guard let loaded = try load(segment, nameFirstLSN: nameFirstLSN, isLast: isLast) else { return }
            let (bytes, header) = loaded
            try checkIdentity(header, path: segment.path, nameFirstLSN: nameFirstLSN, shard: shard, shardCount: shardCount)
            if UInt64(bytes.count) > header.segmentSize {
                try refuse(segment, Int(header.segmentSize), .segmentOversized(bytes: bytes.count, expected: header.segmentSize))
                if cut { return }
            }
            guard try continuesLog(header, segment: segment, withLater: located[index...]) else { return }
            previousUnsyncedBytesMax = header.unsyncedBytesMax
            try track.enter(header, path: segment.path, isFirst: index == 0 || track.segments == 0, report: &report)
            // A sealed segment's key is looked up here but needed only when a frame must be
            // opened (frames a snapshot covers are verified by their checksums alone): after a
            // rekey, the old key is needed for the audit trail, not for start-up.
            var opener: FrameOpener?
            if header.isSealed {
                let keyID = header.keyID
                let known = logKeys[keyID] ?? keys?.bytes(of: keyID).map { Sealing.logKey($0, shard: header.shardIndex) }
                if let known { logKeys[keyID] = known }
                opener = FrameOpener(key: known, keyID: keyID, generation: header.generation)
            }
            cut = try readRecords(bytes, header: header, segment: segment, later: isLast ? [] : located[(index + 1)...].map(\.path),
                                  afterLSN: afterLSN, chain: chain, fileSystem: fileSystem, mode: mode, opener: opener,
                                  position: &position, report: &report, track: &track, visit: visit)
        }

        /// The header check: `segment`'s bytes and decoded header, or nil when the read does
        /// not go into it (refused or cut, or a last segment whose header was never written,
        /// set aside).
        mutating func load(_ segment: Located, nameFirstLSN: UInt64,
                           isLast: Bool) throws(Failure) -> (bytes: [UInt8], header: SegmentHeader)? {
            let bytes: [UInt8]
            do { bytes = try fileSystem.readFile(segment.path, bytesMax: StorageLimits.segmentBytesMax) } catch {
                try refuse(segment, 0, .segmentUnreadable(error))
                return nil
            }
            let header: SegmentHeader
            do {
                header = try SegmentHeader(decoding: bytes)
            } catch {
                // A last segment whose header never reached the disk (the crash came right
                // after it was created) holds nothing: dropped, like a torn tail. Unless a
                // snapshot covers records it held: then they were synced, and are lost.
                if isLast, error == .allZero || error == .tooShort, bytes.allSatisfy({ $0 == 0 }) {
                    if nameFirstLSN <= afterLSN {
                        try refuse(segment, 0, .segmentEmptied(firstLSN: nameFirstLSN, snapshotLSN: afterLSN))
                        return nil
                    }
                    report.droppedSegments.append(segment.name)
                    report.droppedBecause = Failure(file: segment.path, offset: 0, problem: .segmentNeverWritten)
                    return nil
                }
                try refuse(segment, 0, .segmentHeader(error))
                return nil
            }
            return (bytes, header)
        }

        /// Whether `segment` (its `header`) continues the log where the segment before ended:
        /// the next LSN, the last record's checksum as its link. If not, the tail decision:
        /// a gap after a tail written but never synced is a torn tail across segments (cut
        /// and reported); any other break is refused. `withLater`: this segment and those after.
        mutating func continuesLog(_ header: SegmentHeader, segment: Located,
                                   withLater rest: ArraySlice<Located>) throws(Failure) -> Bool {
            guard let expected = position.expectedLSN else {
                try startChain(header, path: segment.path)
                return true
            }
            guard header.firstLSN == expected else {
                // Records missing before this segment. If the previous segment's tail
                // was written but never synced when the power failed (one write batch
                // can span a roll-over), this segment and those after it hold only
                // unsynced records too: a torn tail across segments.
                let later = laterSegmentsEvidence(rest.map(\.path), fileSystem: fileSystem, after: report.lastLSN)
                if header.firstLSN > expected, UInt64(later.writtenBytes) <= previousUnsyncedBytesMax,
                   later.maxSyncedLSN < expected {
                    report.droppedSegments.append(segment.name)
                    report.droppedBytes = later.writtenBytes
                    report.droppedRecords = later.records
                    report.droppedBecause = Failure(file: segment.path, offset: 24,
                                                    problem: .tornAcrossSegments(from: expected, to: header.firstLSN))
                    cut = true
                    return false
                }
                try refuse(segment, 24, header.firstLSN > expected
                    ? .recordsMissing(from: expected, to: header.firstLSN)
                    : .segmentOutOfOrder(firstLSN: header.firstLSN, expected: expected))
                return false
            }
            if let previous = position.expectedPrevious, header.previousChecksum != previous {
                try refuse(segment, 20, .chainBroken(found: header.previousChecksum, expected: previous))
                return false
            }
            return true
        }

        /// The first segment (earlier ones may be archived): it must reach back to the
        /// snapshot, and its link is where the chain starts.
        mutating func startChain(_ header: SegmentHeader, path: String) throws(Failure) {
            guard header.firstLSN <= afterLSN + 1 else {
                throw Failure(file: path, offset: 24, problem: .logStartMissing(needed: afterLSN + 1, found: header.firstLSN))
            }
            if header.firstLSN == afterLSN + 1, let chain, header.previousChecksum != chain {
                throw Failure(file: path, offset: 20, problem: .chainBroken(found: header.previousChecksum, expected: chain))
            }
            position = ChainPosition(expectedLSN: header.firstLSN, expectedPrevious: header.previousChecksum)
        }

        /// Stops the read at `offset` of `segment`; in point-in-time mode keeps what came
        /// before and sets this segment and the later ones aside.
        mutating func refuse(_ segment: Located, _ offset: Int, _ problem: WALProblem) throws(Failure) {
            let failure = Failure(file: segment.path, offset: offset, problem: problem)
            guard mode == .pointInTime else { throw failure }
            report.droppedSegments.append(segment.name)
            report.droppedBecause = failure
            cut = true
        }
    }

    /// The segment is this shard's, of this directory's shard count, under its own name.
    private static func checkIdentity(_ header: SegmentHeader, path: String, nameFirstLSN: UInt64, shard: UInt32,
                                      shardCount: UInt32?) throws(Failure) {
        guard header.shardIndex == shard else {
            throw Failure(file: path, offset: 12, problem: .segmentOfOtherShard(found: header.shardIndex, expected: shard))
        }
        if let shardCount, header.shardCount != shardCount {
            throw Failure(file: path, offset: 16, problem: .segmentOfOtherLayout(shardCount: header.shardCount, expected: shardCount))
        }
        guard nameFirstLSN == header.firstLSN else {
            throw Failure(file: path, offset: 24, problem: .segmentNameMismatch(headerFirstLSN: header.firstLSN, nameFirstLSN: nameFirstLSN))
        }
    }

    /// How a sealed segment's frames are opened: the shard's log subkey under the segment's
    /// data key (nil: the key is not in the ring) and the segment's generation.
    struct FrameOpener {
        var key: SymmetricKey?
        var keyID: UInt64
        var generation: UInt32
    }

    /// The LSN and predecessor checksum the next record must have (nil: not known yet).
    struct ChainPosition {
        var expectedLSN: UInt64?
        var expectedPrevious: UInt32?

        /// How `record` (a command record or a frame) breaks the chain here: another LSN than
        /// the next, or a link to another checksum; nil when it follows.
        func breach(by record: WALRecord.Header) -> WALRecord.Damage? {
            if record.lsn != expectedLSN { return .unexpectedLSN(found: record.lsn, expected: expectedLSN ?? 0) }
            return linkBreach(by: record)
        }

        /// How `record`'s link breaks the chain (a seal takes no LSN of its own but still links).
        func linkBreach(by record: WALRecord.Header) -> WALRecord.Damage? {
            guard let expectedPrevious, record.previous != expectedPrevious else { return nil }
            return .chainBroken(found: record.previous, expected: expectedPrevious)
        }
    }

    /// Verifies one segment's records from byte 64 on, visiting those above `afterLSN`, and
    /// advances `position` and `report` past each good one. Returns whether the read stops
    /// in this segment (a torn tail cut, or damage cut in point-in-time mode); throws on
    /// damage otherwise.
    private static func readRecords(_ bytes: [UInt8], header: SegmentHeader, segment: Located, later: [String],
                                    afterLSN: UInt64, chain: UInt32?, fileSystem: any FileSystem, mode: Mode,
                                    opener: FrameOpener?, position: inout ChainPosition, report: inout Report,
                                    track: inout AuditTrack, visit: (Entry) throws -> Void) throws -> Bool {
        let (name, path) = (segment.name, segment.path)
        let end = min(bytes.count, Int(header.segmentSize))
        var offset = WALFormat.segmentHeaderSize
        report.tailSegment = name
        report.tailOffset = offset
        report.tailVersion = header.version
        let chained = header.version >= 2
        return try bytes.withUnsafeBytes { raw in
            // The records after the last seal in this segment go into the running hash (or the
            // carry) when the segment is left, however the walk leaves it.
            defer { track.leaveSegment(raw, upTo: report.tailOffset) }
            while offset < end {
                let damage: WALRecord.Damage
                switch WALRecord.scan(raw, at: offset, end: end) {
                case .end:
                    if lastNonZero(raw, from: offset, to: end) == nil { return false } // clean end of this segment's records
                    damage = .dataAfterEnd
                case .invalid(let why):
                    damage = why
                case .record(let record, let length) where record.isSeal:
                    guard chained else {
                        damage = .sealInVersion1
                        break
                    }
                    if record.lsn != report.lastLSN || position.expectedLSN == nil {
                        damage = .unexpectedLSN(found: record.lsn, expected: report.lastLSN)
                        break
                    }
                    if let broken = position.linkBreach(by: record) {
                        damage = broken
                        break
                    }
                    try track.seal(record, WALRecord.Seal(raw, at: offset), raw, at: offset, path: path, mode: mode, report: &report)
                    offset += length
                    report.tailOffset = offset
                    continue
                case .record(let record, let length) where record.isFrame:
                    guard let opener else {
                        damage = .kindOutOfPlace(kind: record.kind, version: header.version)
                        break
                    }
                    if let broken = position.breach(by: record) {
                        damage = broken
                        break
                    }
                    if record.lastLSN == afterLSN, let chain, record.lastChecksum != chain {
                        throw Failure(file: path, offset: offset, problem: .snapshotMismatch(
                            lsn: record.lastLSN, recordChecksum: record.lastChecksum, snapshotChecksum: chain))
                    }
                    // Opened only when its commands are wanted, or when the snapshot's LSN lies
                    // inside it (its inner record's checksum is the one to compare).
                    let wanted = record.lastLSN > afterLSN && track.options.decodeCommands
                    let snapshotInside = chain != nil && record.lsn <= afterLSN && afterLSN < record.lastLSN
                    if wanted || snapshotInside {
                        guard let key = opener.key else {
                            // Never cut, whatever the mode: a missing key is the operator's to
                            // supply, and nothing may change before it is.
                            throw Failure(file: path, offset: offset,
                                          problem: .keyUnavailable(keyID: EncryptionKeyRing.describe(opener.keyID)))
                        }
                        let frameDamage: WALRecord.Damage?
                        switch WALFrame.open(raw, at: offset, length: length, header: record, key: key, generation: opener.generation) {
                        case .damaged(let why):
                            frameDamage = why
                        case .plain(let plain):
                            frameDamage = try walkFrame(plain, frame: record, at: offset, path: path, afterLSN: afterLSN, chain: chain,
                                                        visit: wanted, version: header.commandEncodingVersion,
                                                        report: &report, visitor: visit)
                        }
                        if let damage = frameDamage {
                            guard mode == .pointInTime else {
                                throw Failure(file: path, offset: offset, problem: .frameUnreadable(damage, lsn: record.lsn))
                            }
                            try judgeBadSpot(raw, at: offset, end: end, damage: damage, badLSN: record.lsn, header: header,
                                             later: later, path: path, fileSystem: fileSystem, mode: mode, report: &report)
                            return true
                        }
                    }
                    track.command(lsn: record.lsn, records: record.recordCount, at: offset, path: path)
                    report.recordsVerified += record.recordCount
                    report.lastLSN = record.lastLSN
                    report.lastChecksum = record.lastChecksum
                    position.expectedLSN = record.lastLSN + 1
                    position.expectedPrevious = record.lastChecksum
                    offset += length
                    report.tailOffset = offset
                    continue
                case .record(let record, let length):
                    if opener != nil {
                        damage = .kindOutOfPlace(kind: record.kind, version: header.version)
                        break
                    }
                    if let broken = position.breach(by: record) {
                        damage = broken
                        break
                    }
                    if record.lsn == afterLSN, let chain, record.checksum != chain {
                        throw Failure(file: path, offset: offset,
                                      problem: .snapshotMismatch(lsn: record.lsn, recordChecksum: record.checksum, snapshotChecksum: chain))
                    }
                    if record.lsn > afterLSN, track.options.decodeCommands {
                        try visit(Entry(lsn: record.lsn, time: record.time,
                                        command: try decodeCommand(bytes, record: record, at: offset, length: length, path: path,
                                                                 version: header.commandEncodingVersion)))
                        report.recordsVisited += 1
                    }
                    if chained {
                        track.command(lsn: record.lsn, records: 1, at: offset, path: path)
                    } else {
                        report.unchainedRecords += 1
                    }
                    report.recordsVerified += 1
                    report.lastLSN = record.lsn
                    report.lastChecksum = record.checksum
                    position.expectedLSN = record.lsn + 1
                    position.expectedPrevious = record.checksum
                    offset += length
                    report.tailOffset = offset
                    continue
                }
                // A preallocated segment never ends inside a record: a crash leaves its
                // zeros, so an early end of file is a cut made after the fact.
                if case .cutShort = damage, fileSystem.preallocatesFiles, end == bytes.count,
                   UInt64(bytes.count) < header.segmentSize, mode == .strict {
                    throw Failure(file: path, offset: offset, problem: .segmentTruncated(bytes: bytes.count, expected: header.segmentSize))
                }
                try judgeBadSpot(raw, at: offset, end: end, damage: damage, badLSN: position.expectedLSN ?? 0, header: header,
                                 later: later, path: path, fileSystem: fileSystem, mode: mode, report: &report)
                return true // later segments hold nothing to keep
            }
            return false
        }
    }

    /// The inner records of an opened frame (`plain`, the frame at file `offset`): each a
    /// command record whose checksum holds, continuing the LSNs and the CRC chain from the
    /// frame's first LSN and link and ending at its clear last LSN and checksum. Visits those
    /// above `afterLSN` when `visit`. Returns the damage when the contents do not fit.
    private static func walkFrame(_ plain: [UInt8], frame: WALRecord.Header, at offset: Int, path: String, afterLSN: UInt64,
                                  chain: UInt32?, visit: Bool, version: UInt16, report: inout Report,
                                  visitor: (Entry) throws -> Void) throws -> WALRecord.Damage? {
        var expectedLSN = frame.lsn
        var expectedPrevious = frame.previous
        var inner = 0
        let damage: WALRecord.Damage? = try plain.withUnsafeBytes { raw in
            while inner < raw.count {
                guard case .record(let record, let length) = WALRecord.scan(raw, at: inner, end: raw.count),
                      record.kind == WALFormat.commandRecordKind else {
                    return .frameContents("no valid command record at plain byte \(inner)")
                }
                guard record.lsn == expectedLSN, record.previous == expectedPrevious, record.lsn <= frame.lastLSN else {
                    return .frameContents("record \(record.lsn) at plain byte \(inner) does not continue the frame's records")
                }
                if record.lsn == afterLSN, let chain, record.checksum != chain {
                    throw Failure(file: path, offset: offset,
                                  problem: .snapshotMismatch(lsn: record.lsn, recordChecksum: record.checksum, snapshotChecksum: chain))
                }
                if visit && record.lsn > afterLSN {
                    try visitor(Entry(lsn: record.lsn, time: record.time,
                                      command: try decodeCommand(plain, record: record, at: inner, length: length, path: path,
                                                                 reportedOffset: offset, version: version)))
                    report.recordsVisited += 1
                }
                expectedLSN = record.lsn + 1
                expectedPrevious = record.checksum
                inner += length
            }
            return nil
        }
        if let damage { return damage }
        guard expectedLSN == frame.lastLSN + 1, expectedPrevious == frame.lastChecksum else {
            return .frameContents("its records end at \(expectedLSN - 1), the frame says \(frame.lastLSN)")
        }
        return nil
    }

    /// The command of a record whose checksum held (`reportedOffset`: where a failure is
    /// reported, the frame's offset for a record inside one).
    private static func decodeCommand(_ bytes: [UInt8], record: WALRecord.Header, at offset: Int, length: Int,
                                      path: String, reportedOffset: Int? = nil, version: UInt16) throws(Failure) -> Command {
        var reader = ByteReader(bytes, from: offset + WALFormat.recordHeaderSize, to: offset + length)
        do {
            let command = try Command(decoding: &reader, version: version)
            try reader.expectEnd("the command")
            return command
        } catch {
            throw Failure(file: path, offset: reportedOffset ?? offset, problem: .commandUndecodable(lsn: record.lsn, error))
        }
    }

    /// A bad spot at `offset`: a torn tail (cut and reported), or corruption. It is
    /// corruption if data was written beyond what a crash can tear (counting later segments
    /// too: one write batch may span a roll-over), or if a valid record after it declares it
    /// synced (it was on disk before the crash). Point-in-time mode cuts either.
    private static func judgeBadSpot(_ raw: UnsafeRawBufferPointer, at offset: Int, end: Int, damage: WALRecord.Damage,
                                     badLSN: UInt64, header: SegmentHeader, later: [String], path: String,
                                     fileSystem: any FileSystem, mode: Mode, report: inout Report) throws(Failure) {
        let lastWritten = lastNonZero(raw, from: offset, to: end) ?? offset
        var span = lastWritten - offset + 1
        let here = evidence(raw, from: offset + 1, through: lastWritten, end: end, after: report.lastLSN)
        var syncedAfter = here.maxSyncedLSN
        var laterRecords = 0
        if !later.isEmpty {
            let evidence = laterSegmentsEvidence(later, fileSystem: fileSystem, after: report.lastLSN)
            span += evidence.writtenBytes
            syncedAfter = max(syncedAfter, evidence.maxSyncedLSN)
            laterRecords = evidence.records
        }
        let mayBeTorn = UInt64(span) <= header.unsyncedBytesMax
        let declaredSynced = syncedAfter >= badLSN
        let torn = mayBeTorn && !declaredSynced
        let corrupt = WALProblem.recordCorrupt(damage, lsn: badLSN, declaredSynced: declaredSynced, bytesAfter: span,
                                               unsyncedBytesMax: header.unsyncedBytesMax)
        guard torn || mode == .pointInTime else { throw Failure(file: path, offset: offset, problem: corrupt) }
        report.droppedBytes = span
        report.droppedRecords = 1 + laterRecords + here.records
        report.droppedBecause = Failure(file: path, offset: offset, problem: torn ? .tornTail(damage, lsn: badLSN) : corrupt)
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

    /// What the valid records starting in `from...through` say: how many have an LSN above
    /// `after` (what a cut drops besides the damaged record itself) and the highest synced
    /// LSN those declare (0 if none). `through` is the last non-zero byte; a record may end
    /// in zero bytes after it, up to `end`.
    ///
    /// One walk, whatever `after` is: every valid record is stepped over whole, and a byte is
    /// checksummed as a record candidate only when its kind and reserved bytes fit, so the
    /// work is about the region's size (`checksummedBytes` says how much), never the region
    /// times the record lengths that random length fields would claim.
    static func evidence(_ raw: UnsafeRawBufferPointer, from: Int, through: Int, end: Int, after: UInt64) -> Evidence {
        var found = Evidence()
        var offset = from
        while offset <= through {
            guard isRecordCandidate(raw, at: offset, end: end) else {
                offset += 1
                continue
            }
            let scan = WALRecord.scan(raw, at: offset, end: end)
            found.checksummedBytes += Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            guard case .record(let header, let length) = scan else {
                offset += 1
                continue
            }
            if header.lsn > after {
                found.records += header.recordCount
                found.maxSyncedLSN = max(found.maxSyncedLSN, header.syncedLSN)
            }
            offset += length
        }
        return found
    }

    /// What `evidence` found.
    struct Evidence: Equatable {
        var records = 0
        var maxSyncedLSN: UInt64 = 0
        /// Bytes handed to the checksum (the work done), for tests that bound it.
        var checksummedBytes = 0
    }

    /// Whether a record may start at `offset`: its length field in range and fitting, its
    /// kind known and its reserved bytes zero. Cheap, so a resynchronising walk checksums
    /// only what could be a record.
    static func isRecordCandidate(_ raw: UnsafeRawBufferPointer, at offset: Int, end: Int) -> Bool {
        guard end - offset >= WALFormat.recordHeaderSize else { return false }
        let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let kind = raw[offset + 20]
        return length >= WALFormat.recordHeaderSize
            && length <= min(kind == WALFormat.frameRecordKind ? WALFormat.frameSizeMax : WALFormat.recordSizeMax, end - offset)
            && (kind == WALFormat.commandRecordKind || kind == WALFormat.sealRecordKind || kind == WALFormat.frameRecordKind)
            && raw[offset + 21] == 0 && raw[offset + 22] == 0 && raw[offset + 23] == 0
    }

    /// What later segments hold, for deciding whether a bad spot before them is a torn
    /// tail: their written bytes after the header (all of a file whose header is bad),
    /// how many valid records they hold, and the highest synced LSN those declare. A file
    /// that cannot be read counts as all its bytes written: never evidence of a torn tail.
    static func laterSegmentsEvidence(_ paths: [String], fileSystem: any FileSystem, after: UInt64)
        -> (writtenBytes: Int, records: Int, maxSyncedLSN: UInt64) {
        var written = 0
        var records = 0
        var synced: UInt64 = 0
        for path in paths {
            guard let bytes = try? fileSystem.readFile(path, bytesMax: StorageLimits.segmentBytesMax) else {
                written += StorageLimits.segmentBytesMax
                continue
            }
            let start = (try? SegmentHeader(decoding: bytes)) == nil ? 0 : WALFormat.segmentHeaderSize
            bytes.withUnsafeBytes { raw in
                guard let last = lastNonZero(raw, from: start, to: raw.count) else { return }
                written += last - start + 1
                let found = evidence(raw, from: start, through: last, end: raw.count, after: after)
                records += found.records
                synced = max(synced, found.maxSyncedLSN)
            }
        }
        return (written, records, synced)
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
