@_spi(Plumbing) import CreditCore
// Appending (the shard actor): records are encoded into a reused buffer and handed to the
// writer in chunks under one lock, rolling over to a new segment when one is full; and the
// appender's position (last LSN, chain checksum, current segment).

extension ShardLog {
    // MARK: Appending (shard actor)

    /// Appends a record for `command` applied at `time`; returns its LSN. The record is
    /// durable once `waitUntilDurable(lsn)` returns.
    @discardableResult
    package func append(_ command: Command, at time: Timestamp) -> UInt64 {
        append([command], at: time)
    }

    /// Appends one record per command of `commands` (those at `indices` when given), in
    /// order, all applied at `time`; returns the last LSN (the last appended before, when
    /// there is none). The records are encoded into a buffer the appender reuses, and
    /// handed to the writer under one lock.
    @discardableResult
    package func append(_ commands: [Command], at time: Timestamp, indices: [Int]? = nil) -> UInt64 {
        let synced = lock.withLock { durableLSN }
        encoded.removeAll(keepingCapacity: true)
        encodedEnds.removeAll(keepingCapacity: true)
        func encode(_ command: Command) {
            lastChecksum = WALRecord.append(command, at: time, lsn: nextLSN, previous: lastChecksum,
                                            syncedLSN: synced, to: &encoded)
            nextLSN += 1
            encodedEnds.append(encoded.count)
        }
        if let indices {
            for index in indices { encode(commands[index]) }
        } else {
            for command in commands { encode(command) }
        }
        if encodedEnds.isEmpty { return nextLSN - 1 }
        // The audit seal of this batch (and of any records recovery found unsealed).
        let recordsEnd = encoded.count
        let sealFirstLSN = auditCarryFirstLSN ?? (nextLSN - UInt64(encodedEnds.count))
        let head = encoded.bytes.withUnsafeBytes { raw in
            AuditChain.head(previous: auditHead, carry: auditCarry, records: UnsafeRawBufferPointer(rebasing: raw[0 ..< recordsEnd]))
        }
        WALRecord.appendSeal(firstLSN: sealFirstLSN, lastLSN: nextLSN - 1, previous: lastChecksum, previousHead: auditHead,
                             head: head, at: time, syncedLSN: synced, to: &encoded)
        auditHead = head
        if !auditCarry.isEmpty { auditCarry = [] }
        auditCarryFirstLSN = nil
        let seal = SealedHead(lsn: nextLSN - 1, time: time, head: head)
        var newChunkStarted = false
        lock.withLock {
            var lsn = appendedLSN
            var start = 0
            encoded.bytes.withUnsafeBufferPointer { bytes in
                for end in encodedEnds {
                    lsn += 1
                    let size = end - start
                    var newSegment: SegmentHeader?
                    // Room for the record and a seal after it, so the batch's seal always
                    // fits after its last record.
                    if !hasSegment || currentOffset + size + WALFormat.sealRecordSize > configuration.segmentSize {
                        // Roll over: the record goes first in a new segment, whose header
                        // repeats the record's chain link (the previous record's checksum).
                        let previous = UInt32(littleEndian: UnsafeRawBufferPointer(bytes).loadUnaligned(
                            fromByteOffset: start + WALFormat.previousChecksumOffset, as: UInt32.self))
                        newSegment = SegmentHeader(shardIndex: shard, shardCount: shardCount, firstLSN: lsn,
                                                   previousChecksum: previous,
                                                   segmentSize: UInt64(configuration.segmentSize),
                                                   unsyncedBytesMax: UInt64(configuration.unsyncedBytesMax))
                        appendSegmentFirstLSN = lsn
                        currentOffset = WALFormat.segmentHeaderSize
                        hasSegment = true
                    }
                    let record = UnsafeBufferPointer(rebasing: bytes[start ..< end])
                    if newSegment == nil, let last = pending.indices.last, pending[last].segmentFirstLSN == appendSegmentFirstLSN,
                       pending[last].bytes.count < configuration.chunkBytesTarget {
                        pending[last].bytes.write(bytes: record)
                        pending[last].lastLSN = lsn
                    } else {
                        var chunk = ByteWriter(capacity: max(size, 4_096))
                        chunk.write(bytes: record)
                        pending.append(Chunk(segmentFirstLSN: appendSegmentFirstLSN, newSegment: newSegment,
                                             offset: currentOffset, bytes: chunk, lastLSN: lsn, seal: nil))
                        // A first chunk (the writer may sleep with no timer set) or a full one.
                        newChunkStarted = true
                    }
                    pendingBytes += size
                    currentOffset += size
                    start = end
                }
                // The seal goes after the last record, in the same chunk.
                let last = pending.count - 1
                pending[last].bytes.write(bytes: UnsafeBufferPointer(rebasing: bytes[recordsEnd ..< bytes.count]))
                pending[last].seal = seal
                pendingBytes += WALFormat.sealRecordSize
                currentOffset += WALFormat.sealRecordSize
            }
            appendedLSN = lsn
            pendingBytesHighWater = max(pendingBytesHighWater, pendingBytes)
            roomAfterAppend = pendingBytes < configuration.pendingBytesMax
        }
        // Strict: someone waits for these records. Otherwise the writer comes by itself (see
        // writerWork) once it knows there is a chunk: it is told when one starts.
        if configuration.durability == .strict || newChunkStarted { writer.wake() }
        return nextLSN - 1
    }

    /// The LSN of the last appended record.
    package var lastAppendedLSN: UInt64 { lock.withLock { appendedLSN } }

    /// First LSN of the segment records are appended to now. Shard actor only.
    package var currentSegmentFirstLSN: UInt64 { appendSegmentFirstLSN }

    /// The checksum of the last appended record (the chain value a snapshot taken now
    /// records). Shard actor only.
    package var lastAppendedChecksum: UInt32 { lastChecksum }
}
