/// The audit chain as a log read goes through it (`WALReader`, docs/audit.md): where the
/// current run of unsealed records started, the head it continues, and — when verifying —
/// the running SHA-256 over the run's bytes, checked against each seal.
///
/// Records are hashed a run at a time (from the first unsealed record to the seal, or to
/// the end of the segment), not one call per record.
struct AuditTrack {
    var options = WALReader.AuditOptions(verifyHeads: false, decodeCommands: true, onSeal: nil)
    /// Segments entered.
    var segments = 0
    /// Whether a version 2 segment was read (a version 1 one after it is refused).
    var chainStarted = false
    /// The head the next seal must name as its previous: the last seal's, or the seed.
    /// Nil only before the first seal of a log whose start was pruned.
    var head: [UInt8]?
    /// Verifying: SHA-256 over `head` and the run's bytes so far.
    var hasher: AuditHasher?
    /// Where the unsealed run starts in the current segment (nil: not in this one).
    var unsealedStart: Int?
    /// The first LSN of the unsealed run, and its segment and offset (nil: no run).
    var runFirstLSN: UInt64?
    var runFile = ""
    var runOffset = 0
    /// Not verifying: the run's bytes from earlier segments (the next writer's seal covers them).
    var carry: [UInt8] = []
    var seals = 0
    /// The last seal's LSN and time.
    var sealLSN: UInt64?
    var sealTime = Timestamp(millisSinceEpoch: 0)
    /// Records before the first seal of a pruned log (no head to check them against).
    var unverifiable = 0

    /// A segment passed its header and continuity checks and its records are next.
    mutating func enter(_ header: SegmentHeader, path: String, isFirst: Bool, report: inout WALReader.Report) throws(WALReader.Failure) {
        segments += 1
        guard header.version >= 2 else {
            if chainStarted {
                // A writer never goes back to version 1: the segment was replaced to escape the chain.
                throw WALReader.Failure(file: path, offset: 8, problem: .auditSegmentDowngraded(version: header.version))
            }
            return
        }
        guard !chainStarted else { return }
        chainStarted = true
        if isFirst && header.firstLSN > 1 {
            head = nil // the archive was pruned: the chain is picked up at the first seal
        } else {
            head = AuditChain.seed(shard: header.shardIndex, shardCount: header.shardCount)
            if options.verifyHeads, let head { hasher = AuditHasher(previous: head) }
        }
    }

    /// A command record (or a sealed frame of `records` of them, version 3) at `offset` of a
    /// version 2 or 3 segment. A frame is hashed as written (its ciphertext), so the chain is
    /// verified without the data key.
    mutating func command(lsn: UInt64, records: Int, at offset: Int, path: String) {
        if unsealedStart == nil { unsealedStart = offset }
        if runFirstLSN == nil {
            runFirstLSN = lsn
            runFile = path
            runOffset = offset
        }
        if head == nil { unverifiable += records }
    }

    /// A seal record at `offset` whose CRC, LSN and CRC link already held.
    mutating func seal(_ record: WALRecord.Header, _ seal: WALRecord.Seal, _ raw: UnsafeRawBufferPointer, at offset: Int,
                       path: String, mode: WALReader.Mode, report: inout WALReader.Report) throws {
        let linked: Bool
        if let head {
            linked = runFirstLSN == seal.firstLSN && seal.previousHead == head
        } else {
            linked = runFirstLSN.map { seal.firstLSN <= $0 } ?? false
        }
        guard linked else {
            throw WALReader.Failure(file: path, offset: offset, problem: .auditSealLinkBroken(
                lsn: record.lsn, firstLSN: seal.firstLSN, expectedFirstLSN: runFirstLSN ?? record.lsn + 1,
                headMatches: head == nil || seal.previousHead == head))
        }
        if options.verifyHeads, var running = hasher {
            if let start = unsealedStart, start < offset {
                running.update(UnsafeRawBufferPointer(rebasing: raw[start ..< offset]))
            }
            guard running.finalize() == seal.head else {
                throw WALReader.Failure(file: runFile, offset: runOffset,
                                        problem: .auditSealMismatch(firstLSN: seal.firstLSN, lastLSN: record.lsn))
            }
        }
        let event = WALReader.SealEvent(runFile: runFile, runOffset: runOffset, firstLSN: seal.firstLSN, lsn: record.lsn,
                                        time: record.time, head: seal.head, file: path, offset: offset)
        head = seal.head
        hasher = options.verifyHeads ? AuditHasher(previous: seal.head) : nil
        carry.removeAll()
        unsealedStart = nil
        runFirstLSN = nil
        seals += 1
        sealLSN = record.lsn
        sealTime = record.time
        try options.onSeal?(event)
    }

    /// The walk leaves the current segment after the record ending at `tailOffset`: the
    /// unsealed records in it go into the running hash, or the carry.
    mutating func leaveSegment(_ raw: UnsafeRawBufferPointer, upTo tailOffset: Int) {
        defer { unsealedStart = nil }
        guard let start = unsealedStart, start < tailOffset else { return }
        let run = UnsafeRawBufferPointer(rebasing: raw[start ..< tailOffset])
        if options.verifyHeads {
            hasher?.update(run)
        } else {
            carry.append(contentsOf: run)
        }
    }

    /// What the report keeps of the chain once the read is done.
    func finish(into report: inout WALReader.Report) {
        report.auditHead = head
        report.auditCarry = carry
        report.auditCarryFirstLSN = runFirstLSN
        report.auditSeals = seals
        report.auditHeadLSN = sealLSN
        report.auditHeadTime = sealTime
        report.unverifiableRecords = unverifiable
    }
}
