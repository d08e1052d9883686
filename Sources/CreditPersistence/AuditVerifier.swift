@_spi(Plumbing) import CreditCore

/// Where an audit found the first thing wrong (docs/audit.md, "Problems").
@_spi(Plumbing) public struct AuditFinding: Sendable, Equatable, Error {
    @_spi(Plumbing) public var shard: Int?
    @_spi(Plumbing) public var file: String
    @_spi(Plumbing) public var offset: Int
    /// The first LSN that cannot be trusted (0 when the finding is not about a record).
    @_spi(Plumbing) public var lsn: UInt64
    /// A stable snake_case code.
    @_spi(Plumbing) public var problem: String
    @_spi(Plumbing) public var message: String
}

/// What `AuditVerifier.verify` found in a data directory.
@_spi(Plumbing) public struct AuditReport: Sendable, Equatable {
    @_spi(Plumbing) public var ok = true
    @_spi(Plumbing) public var shards = 0
    /// Command records walked, in every shard.
    @_spi(Plumbing) public var records = 0
    /// Seals whose head was recomputed and matched.
    @_spi(Plumbing) public var seals = 0
    /// Checkpoints whose head matched the chain (and, with public keys, whose signature held).
    @_spi(Plumbing) public var checkpoints = 0
    /// Whether checkpoint signatures were checked (public keys were given).
    @_spi(Plumbing) public var checkpointsVerified = false
    /// Records in version 1 segments (written before the audit chain existed): CRC-checked only.
    @_spi(Plumbing) public var unchainedRecords = 0
    /// Records after the last seal (a crash before their seal was written): CRC-checked only.
    @_spi(Plumbing) public var unsealedRecords = 0
    /// Records after the last checkpoint: chained, but no signature vouches for them yet.
    @_spi(Plumbing) public var unsignedRecords = 0
    /// Records before the first seal of a log whose start was pruned.
    @_spi(Plumbing) public var unverifiableRecords = 0
    @_spi(Plumbing) public var firstBad: AuditFinding?
    /// What was not or could not be checked, in words.
    @_spi(Plumbing) public var notes: [String] = []
}

/// Verifies a data directory's audit trail (docs/audit.md): every segment of every shard,
/// archived and live, in log order — headers, CRCs, LSN continuity and the CRC chain as the
/// log reader checks them, then every seal's SHA-256 head recomputed from the record bytes,
/// every checkpoint's head against the chain at its LSN, and (with `publicKeys`) every
/// checkpoint's Ed25519 signature. Read-only; one segment in memory at a time.
@_spi(Plumbing) public enum AuditVerifier {
    @_spi(Plumbing) public static func verify(directory: String, publicKeys: [AuditPublicKey],
                                              fileSystem: (any FileSystem)? = nil) -> AuditReport {
        var report = AuditReport()
        report.checkpointsVerified = !publicKeys.isEmpty
        let storage = StorageConfiguration(directory: directory, fileSystem: fileSystem ?? PosixFileSystem())
        let shardCount: Int
        do {
            guard let count = try ShardStorage.existingShardCount(storage: storage) else {
                report.fail(AuditFinding(shard: nil, file: directory, offset: 0, lsn: 0, problem: "not_a_data_directory",
                                         message: "\(directory) holds no credits.meta"))
                return report
            }
            shardCount = count
        } catch {
            report.fail(AuditFinding(shard: nil, file: storage.metaPath, offset: 0, lsn: 0, problem: error.code,
                                     message: error.description))
            return report
        }
        report.shards = shardCount
        for shard in 0 ..< shardCount {
            do {
                try verifyShard(shard, shardCount: shardCount, storage: storage, publicKeys: publicKeys, report: &report)
            } catch {
                report.fail(error)
                return report
            }
        }
        if publicKeys.isEmpty {
            report.notes.append("no public key given: checkpoint signatures were not verified (the chain and the checkpoints' heads were)")
        }
        if report.unchainedRecords > 0 {
            report.notes.append("\(report.unchainedRecords) records are in version 1 segments, written before the audit chain: only their CRCs were checked")
        }
        if report.unsealedRecords > 0 {
            report.notes.append("\(report.unsealedRecords) records after the last seal (a crash before it was written): only their CRCs were checked; the next start-up seals them")
        }
        if report.unsignedRecords > 0 {
            report.notes.append("\(report.unsignedRecords) records after the last checkpoint: chained but not signed (a cut of them would not be detected)")
        }
        if report.unverifiableRecords > 0 {
            report.notes.append("\(report.unverifiableRecords) records before the first seal of a pruned log could not be verified")
        }
        return report
    }

    /// One shard: its checkpoints, then the walk over its log.
    static func verifyShard(_ shard: Int, shardCount: Int, storage: StorageConfiguration, publicKeys: [AuditPublicKey],
                            report: inout AuditReport) throws(AuditFinding) {
        let checkpoints = try readCheckpoints(shard: shard, shardCount: shardCount, storage: storage, publicKeys: publicKeys,
                                              notes: &report.notes)
        var next = 0
        var matched = 0
        var lastSealLSN: UInt64 = 0
        var firstSeal = true
        /// The run after the last checkpoint that matched: where an unmatched one's damage may start.
        var afterLastGood: (file: String, offset: Int, lsn: UInt64)?
        let options = WALReader.AuditOptions(verifyHeads: true, decodeCommands: false) { event in
            if afterLastGood == nil { afterLastGood = (event.runFile, event.runOffset, event.firstLSN) }
            while next < checkpoints.count, checkpoints[next].lsn < event.lsn {
                // Before the first seal of a pruned log: nothing to check it against.
                if firstSeal, checkpoints[next].lsn < event.firstLSN {
                    next += 1
                    continue
                }
                let bad = afterLastGood ?? (event.runFile, event.runOffset, event.firstLSN)
                throw AuditFinding(shard: shard, file: bad.file, offset: bad.offset, lsn: bad.lsn, problem: "checkpoint_not_at_seal",
                                   message: "checkpoint \(checkpoints[next].sequence) names LSN \(checkpoints[next].lsn), where the log has no seal: records were removed, added or moved")
            }
            firstSeal = false
            lastSealLSN = event.lsn
            if next < checkpoints.count, checkpoints[next].lsn == event.lsn {
                guard checkpoints[next].head == event.head else {
                    let bad = afterLastGood ?? (event.runFile, event.runOffset, event.firstLSN)
                    throw AuditFinding(shard: shard, file: bad.file, offset: bad.offset, lsn: bad.lsn, problem: "checkpoint_head_mismatch",
                                       message: "the chain at LSN \(event.lsn) is not the head checkpoint \(checkpoints[next].sequence) signed: records \(bad.lsn)...\(event.lsn) were changed")
                }
                matched += 1
                next += 1
                afterLastGood = nil
            }
        }
        let walk: WALReader.Report
        do {
            walk = try WALReader.read(directories: [storage.archiveDirectory(shard), storage.walDirectory(shard)],
                                      fileSystem: storage.fileSystem, shard: UInt32(shard), shardCount: UInt32(shardCount),
                                      audit: options) { _ in }
        } catch let finding as AuditFinding {
            throw finding
        } catch let failure as WALReader.Failure {
            throw AuditFinding(shard: shard, file: failure.file, offset: failure.offset, lsn: lsn(of: failure.problem) ?? lastSealLSN + 1,
                               problem: failure.code, message: failure.description)
        } catch {
            throw AuditFinding(shard: shard, file: storage.walDirectory(shard), offset: 0, lsn: lastSealLSN + 1,
                               problem: "log_unreadable", message: "\(error)")
        }
        report.records += walk.recordsVerified
        report.seals += walk.auditSeals
        report.unchainedRecords += walk.unchainedRecords
        report.unverifiableRecords += walk.unverifiableRecords
        if let first = walk.auditCarryFirstLSN { report.unsealedRecords += Int(walk.lastLSN - first + 1) }
        if let because = walk.droppedBecause {
            report.notes.append("shard \(shard): the log ends in a torn tail (a crash): \(because)")
        }
        let tailFile = walk.tailSegment.map { storage.walDirectory(shard) + "/" + $0 } ?? storage.walDirectory(shard)
        if next < checkpoints.count {
            let checkpoint = checkpoints[next]
            if checkpoint.lsn > walk.lastLSN {
                throw AuditFinding(shard: shard, file: tailFile, offset: walk.tailOffset, lsn: walk.lastLSN + 1,
                                   problem: "records_missing_after_checkpoint",
                                   message: "checkpoint \(checkpoint.sequence) signed the log up to LSN \(checkpoint.lsn), but it ends at \(walk.lastLSN): its tail was cut")
            }
            throw AuditFinding(shard: shard, file: tailFile, offset: walk.tailOffset, lsn: checkpoint.lsn, problem: "checkpoint_not_at_seal",
                               message: "checkpoint \(checkpoint.sequence) names LSN \(checkpoint.lsn), where the log has no seal")
        }
        if !publicKeys.isEmpty, checkpoints.isEmpty, walk.auditSeals > 0 {
            throw AuditFinding(shard: shard, file: AuditFiles.checkpointsPath(walDirectory: storage.walDirectory(shard)), offset: 0,
                               lsn: 1, problem: "checkpoints_missing",
                               message: "shard \(shard) has sealed records but no checkpoint: was the log written without a signing key, or the checkpoints removed?")
        }
        report.checkpoints += matched
        let signedUpTo = matched > 0 ? checkpoints[matched - 1].lsn : 0
        let chainedLast = walk.auditCarryFirstLSN.map { $0 - 1 } ?? walk.lastLSN
        if walk.auditSeals > 0, chainedLast > signedUpTo, !checkpoints.isEmpty || !publicKeys.isEmpty {
            report.unsignedRecords += Int(chainedLast - signedUpTo)
        }
    }

    /// The shard's checkpoints, in file order, each whole, of this shard, numbered 1, 2, … and
    /// in LSN order, and (with keys) signed by one of them. A partial last entry (a crash while
    /// it was written) is left out with a note.
    static func readCheckpoints(shard: Int, shardCount: Int, storage: StorageConfiguration, publicKeys: [AuditPublicKey],
                                notes: inout [String]) throws(AuditFinding) -> [AuditCheckpoint] {
        let path = AuditFiles.checkpointsPath(walDirectory: storage.walDirectory(shard))
        guard storage.fileSystem.fileExists(path) else { return [] }
        let bytes: [UInt8]
        do { bytes = try storage.fileSystem.readFile(path, bytesMax: StorageLimits.checkpointsFileBytesMax) } catch {
            throw AuditFinding(shard: shard, file: path, offset: 0, lsn: 0, problem: "checkpoints_unreadable", message: error.description)
        }
        if bytes.count % AuditCheckpoint.size != 0 {
            notes.append("shard \(shard): the last checkpoint was cut short (a crash while it was written) and is ignored")
        }
        var checkpoints: [AuditCheckpoint] = []
        for index in 0 ..< bytes.count / AuditCheckpoint.size {
            let offset = index * AuditCheckpoint.size
            func bad(_ problem: String, _ message: String, lsn: UInt64 = 0) -> AuditFinding {
                AuditFinding(shard: shard, file: path, offset: offset, lsn: lsn, problem: problem, message: message)
            }
            let checkpoint: AuditCheckpoint
            do { checkpoint = try AuditCheckpoint(decoding: bytes, at: offset) } catch {
                throw bad("checkpoint_corrupt", "checkpoint \(index + 1) is not a valid entry (\(error))")
            }
            guard checkpoint.shard == UInt32(shard), checkpoint.shardCount == UInt32(shardCount) else {
                throw bad("checkpoint_wrong_shard", "checkpoint \(index + 1) is of shard \(checkpoint.shard) of \(checkpoint.shardCount)", lsn: checkpoint.lsn)
            }
            guard checkpoint.sequence == UInt64(index + 1) else {
                throw bad("checkpoint_sequence_broken", "entry \(index + 1) is checkpoint \(checkpoint.sequence): checkpoints were removed or reordered", lsn: checkpoint.lsn)
            }
            if let previous = checkpoints.last, checkpoint.lsn <= previous.lsn {
                throw bad("checkpoint_out_of_order", "checkpoint \(index + 1) names LSN \(checkpoint.lsn), not after \(previous.lsn)", lsn: checkpoint.lsn)
            }
            if !publicKeys.isEmpty {
                guard let key = publicKeys.first(where: { $0.fingerprint == checkpoint.fingerprint }) else {
                    throw bad("checkpoint_key_unknown", "checkpoint \(index + 1) was signed by another key than those given", lsn: checkpoint.lsn)
                }
                guard checkpoint.isSigned(by: key) else {
                    throw bad("checkpoint_signature_invalid", "checkpoint \(index + 1)'s signature does not verify: it was forged or altered", lsn: checkpoint.lsn)
                }
            }
            checkpoints.append(checkpoint)
        }
        return checkpoints
    }

    /// The LSN a log problem names, if it names one.
    static func lsn(of problem: WALProblem) -> UInt64? {
        switch problem {
        case .recordCorrupt(_, let lsn, _, _, _), .commandUndecodable(let lsn, _), .timeOutOfOrder(let lsn, _, _): lsn
        case .auditSealMismatch(let first, _): first
        case .auditSealLinkBroken(_, _, let expected, _): expected
        case .recordsMissing(let from, _): from
        case .segmentOutOfOrder(_, let expected): expected
        case .logStartMissing(let needed, _): needed
        default: nil
        }
    }
}

extension AuditReport {
    mutating func fail(_ finding: AuditFinding) {
        ok = false
        if firstBad == nil { firstBad = finding }
    }
}
