import Crypto
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
        if let key = sealKey { return appendFramed(key: key, time: time, synced: synced) }
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

    /// The sealed path of `append` (version 3, docs/encryption.md): the batch's records, just
    /// encoded into `encoded` exactly as a version 2 log holds them, become one sealed frame
    /// (several only past `framePlainBytesTarget` plain bytes, or at a segment roll-over), then
    /// the batch's audit seal over the frames' bytes as written. Each frame's segment is chosen
    /// before it is sealed: its nonce names the segment's generation.
    private func appendFramed(key: SymmetricKey, time: Timestamp, synced: UInt64) -> UInt64 {
        framed.removeAll(keepingCapacity: true)
        framePlacements.removeAll(keepingCapacity: true)
        let count = encodedEnds.count
        let batchFirstLSN = nextLSN - UInt64(count)
        encoded.bytes.withUnsafeBytes { raw in
            var index = 0
            var start = 0
            var lsn = batchFirstLSN
            while index < count {
                var last = index
                while last + 1 < count, encodedEnds[last + 1] - start <= WALFormat.framePlainBytesTarget { last += 1 }
                let end = encodedEnds[last]
                let lastStart = last == 0 ? 0 : encodedEnds[last - 1]
                let lastLSN = lsn + UInt64(last - index)
                let previous = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start + WALFormat.previousChecksumOffset,
                                                                      as: UInt32.self))
                let lastChecksum = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: lastStart + 4, as: UInt32.self))
                let compressedCount = WALFrame.compress(UnsafeRawBufferPointer(rebasing: raw[start ..< end]), into: &compressed)
                let length = WALFrame.length(compressed: compressedCount)
                var newSegment: SegmentHeader?
                // Room for the frame and a seal after it, so the batch's seal always fits.
                if !hasSegment || currentOffset + length + WALFormat.sealRecordSize > configuration.segmentSize {
                    precondition(highestGeneration < UInt32.max, "segment generations of shard \(shard) exhausted: rotate the data key")
                    highestGeneration += 1
                    segmentGeneration = highestGeneration
                    newSegment = SegmentHeader(shardIndex: shard, shardCount: shardCount, firstLSN: lsn, previousChecksum: previous,
                                               segmentSize: UInt64(configuration.segmentSize),
                                               unsyncedBytesMax: UInt64(configuration.unsyncedBytesMax),
                                               keyID: sealingKeyID, generation: segmentGeneration)
                    appendSegmentFirstLSN = lsn
                    currentOffset = WALFormat.segmentHeaderSize
                    hasSegment = true
                }
                let offset = currentOffset
                WALFrame.append(compressed: compressed, count: compressedCount, plainCount: end - start, firstLSN: lsn,
                                lastLSN: lastLSN, previous: previous, lastChecksum: lastChecksum, time: time, syncedLSN: synced,
                                key: key, generation: segmentGeneration, to: &framed)
                currentOffset += length
                framePlacements.append(FramePlacement(segmentFirstLSN: appendSegmentFirstLSN, offset: offset,
                                                      newSegment: newSegment, end: framed.count, lastLSN: lastLSN))
                start = end
                lsn = lastLSN + 1
                index = last + 1
            }
        }
        // The audit seal covers the frames as written (ciphertext): verifiable without the key.
        let framesEnd = framed.count
        let sealFirstLSN = auditCarryFirstLSN ?? batchFirstLSN
        let head = framed.bytes.withUnsafeBytes { raw in
            AuditChain.head(previous: auditHead, carry: auditCarry, records: UnsafeRawBufferPointer(rebasing: raw[0 ..< framesEnd]))
        }
        WALRecord.appendSeal(firstLSN: sealFirstLSN, lastLSN: nextLSN - 1, previous: lastChecksum, previousHead: auditHead,
                             head: head, at: time, syncedLSN: synced, to: &framed)
        auditHead = head
        if !auditCarry.isEmpty { auditCarry = [] }
        auditCarryFirstLSN = nil
        currentOffset += WALFormat.sealRecordSize
        let seal = SealedHead(lsn: nextLSN - 1, time: time, head: head)
        var newChunkStarted = false
        lock.withLock {
            framed.bytes.withUnsafeBufferPointer { bytes in
                var start = 0
                for placement in framePlacements {
                    let frame = UnsafeBufferPointer(rebasing: bytes[start ..< placement.end])
                    if placement.newSegment == nil, let last = pending.indices.last,
                       pending[last].segmentFirstLSN == placement.segmentFirstLSN,
                       pending[last].bytes.count < configuration.chunkBytesTarget {
                        pending[last].bytes.write(bytes: frame)
                        pending[last].lastLSN = placement.lastLSN
                    } else {
                        var chunk = ByteWriter(capacity: max(frame.count + WALFormat.sealRecordSize, 4_096))
                        chunk.write(bytes: frame)
                        pending.append(Chunk(segmentFirstLSN: placement.segmentFirstLSN, newSegment: placement.newSegment,
                                             offset: placement.offset, bytes: chunk, lastLSN: placement.lastLSN, seal: nil))
                        newChunkStarted = true
                    }
                    pendingBytes += frame.count
                    start = placement.end
                }
                let last = pending.count - 1
                pending[last].bytes.write(bytes: UnsafeBufferPointer(rebasing: bytes[framesEnd ..< bytes.count]))
                pending[last].seal = seal
                pendingBytes += WALFormat.sealRecordSize
            }
            appendedLSN = nextLSN - 1
            pendingBytesHighWater = max(pendingBytesHighWater, pendingBytes)
            roomAfterAppend = pendingBytes < configuration.pendingBytesMax
        }
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
