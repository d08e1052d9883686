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
        let seal = appendAuditSeal(to: &encoded, covering: recordsEnd, batchFirstLSN: nextLSN - UInt64(encodedEnds.count),
                                   at: time, synced: synced)
        var newChunkStarted = false
        lock.withLock {
            var lsn = appendedLSN
            var start = 0
            encoded.bytes.withUnsafeBufferPointer { bytes in
                for end in encodedEnds {
                    lsn += 1
                    let size = end - start
                    let newSegment = rollOver(ifFull: size, firstLSN: lsn, previous: UInt32(littleEndian:
                        UnsafeRawBufferPointer(bytes).loadUnaligned(fromByteOffset: start + WALFormat.previousChecksumOffset,
                                                                    as: UInt32.self)))
                    if enqueue(UnsafeBufferPointer(rebasing: bytes[start ..< end]), segmentFirstLSN: appendSegmentFirstLSN,
                               newSegment: newSegment, offset: currentOffset, lastLSN: lsn) {
                        newChunkStarted = true
                    }
                    currentOffset += size
                    start = end
                }
                currentOffset += WALFormat.sealRecordSize
                enqueueSeal(UnsafeBufferPointer(rebasing: bytes[recordsEnd ..< bytes.count]), seal)
            }
        }
        return handedOver(newChunkStarted: newChunkStarted)
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
                let newSegment = rollOver(ifFull: length, firstLSN: lsn, previous: previous)
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
        let seal = appendAuditSeal(to: &framed, covering: framesEnd, batchFirstLSN: batchFirstLSN, at: time, synced: synced)
        currentOffset += WALFormat.sealRecordSize
        var newChunkStarted = false
        lock.withLock {
            framed.bytes.withUnsafeBufferPointer { bytes in
                var start = 0
                for placement in framePlacements {
                    if enqueue(UnsafeBufferPointer(rebasing: bytes[start ..< placement.end]), segmentFirstLSN: placement.segmentFirstLSN,
                               newSegment: placement.newSegment, offset: placement.offset, lastLSN: placement.lastLSN) {
                        newChunkStarted = true
                    }
                    start = placement.end
                }
                enqueueSeal(UnsafeBufferPointer(rebasing: bytes[framesEnd ..< bytes.count]), seal)
            }
        }
        return handedOver(newChunkStarted: newChunkStarted)
    }

    /// The header of a new segment when a record or frame of `length` bytes, and a seal after
    /// it (a batch's seal always fits after its last one), does not fit the current segment:
    /// it goes first in the new one, whose header repeats its chain link (`previous`). A sealed
    /// log gives every new segment the next generation, so its nonces are new
    /// (docs/encryption.md). Nil when it fits. Appender state only (the plain path calls it
    /// under `lock`).
    private func rollOver(ifFull length: Int, firstLSN: UInt64, previous: UInt32) -> SegmentHeader? {
        guard !hasSegment || currentOffset + length + WALFormat.sealRecordSize > configuration.segmentSize else { return nil }
        if sealingKeyID != 0 {
            precondition(highestGeneration < UInt32.max, "segment generations of shard \(shard) exhausted: rotate the data key")
            highestGeneration += 1
            segmentGeneration = highestGeneration
        }
        appendSegmentFirstLSN = firstLSN
        currentOffset = WALFormat.segmentHeaderSize
        hasSegment = true
        return SegmentHeader(shardIndex: shard, shardCount: shardCount, firstLSN: firstLSN, previousChecksum: previous,
                             segmentSize: UInt64(configuration.segmentSize), unsyncedBytesMax: UInt64(configuration.unsyncedBytesMax),
                             keyID: sealingKeyID, generation: sealingKeyID == 0 ? 0 : segmentGeneration)
    }

    /// Appends the batch's audit seal to `buffer` after its first `end` bytes — the batch's
    /// records, or its frames, as written — covering them and any records recovery found
    /// unsealed, and moves the audit chain on. Returns what a checkpoint signs once the seal
    /// is synced. Shard actor only.
    private func appendAuditSeal(to buffer: inout ByteWriter, covering end: Int, batchFirstLSN: UInt64, at time: Timestamp,
                                 synced: UInt64) -> SealedHead {
        let head = buffer.withUnsafeBytes { raw in
            AuditChain.head(previous: auditHead, carry: auditCarry, records: UnsafeRawBufferPointer(rebasing: raw[0 ..< end]))
        }
        WALRecord.appendSeal(firstLSN: auditCarryFirstLSN ?? batchFirstLSN, lastLSN: nextLSN - 1, previous: lastChecksum,
                             previousHead: auditHead, head: head, at: time, syncedLSN: synced, to: &buffer)
        auditHead = head
        if !auditCarry.isEmpty { auditCarry = [] }
        auditCarryFirstLSN = nil
        return SealedHead(lsn: nextLSN - 1, time: time, head: head)
    }

    /// Hands one record or frame to the writer: onto the last pending chunk when it continues
    /// that chunk's segment and the chunk is not full, else as a new chunk. Returns whether a
    /// chunk started (a first chunk — the writer may sleep with no timer set — or a full one).
    /// Under `lock`.
    private func enqueue(_ piece: UnsafeBufferPointer<UInt8>, segmentFirstLSN: UInt64, newSegment: SegmentHeader?, offset: Int,
                         lastLSN: UInt64) -> Bool {
        pendingBytes += piece.count
        if newSegment == nil, let last = pending.indices.last, pending[last].segmentFirstLSN == segmentFirstLSN,
           pending[last].bytes.count < configuration.chunkBytesTarget {
            pending[last].bytes.write(bytes: piece)
            pending[last].lastLSN = lastLSN
            return false
        }
        var chunk = ByteWriter(capacity: max(piece.count + WALFormat.sealRecordSize, 4_096))
        chunk.write(bytes: piece)
        pending.append(Chunk(segmentFirstLSN: segmentFirstLSN, newSegment: newSegment, offset: offset, bytes: chunk,
                             lastLSN: lastLSN, seal: nil))
        return true
    }

    /// Puts the batch's seal after its last record or frame, in the same chunk, and records
    /// the batch as appended. Under `lock`.
    private func enqueueSeal(_ bytes: UnsafeBufferPointer<UInt8>, _ seal: SealedHead) {
        let last = pending.count - 1
        pending[last].bytes.write(bytes: bytes)
        pending[last].seal = seal
        pendingBytes += WALFormat.sealRecordSize
        appendedLSN = nextLSN - 1
        pendingBytesHighWater = max(pendingBytesHighWater, pendingBytes)
        roomAfterAppend = pendingBytes < configuration.pendingBytesMax
    }

    /// After a batch's hand-over: wakes the writer when someone waits for the records (strict)
    /// or a chunk started (otherwise it comes by itself, see `writerWork`); returns the last LSN.
    private func handedOver(newChunkStarted: Bool) -> UInt64 {
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
