@_spi(Plumbing) import CreditCore
// Writing (the writer thread): whether this log has work, writing whole chunks to their
// segment files, syncing them and waking the callers they made durable, creating segments,
// and stopping the log for good when a write or sync fails.

extension ShardLog {
    // MARK: Writing (the writer thread serving this log)

    /// Whether the writer has something to do for this log now; if not, in how many ms at
    /// the latest (a sync of written bytes coming due), nil for "only when woken".
    func writerWork(now: Int64) -> (ready: Bool, dueInMillis: Int?) {
        let (chunks, stop, requested, roomWanted, checkpoint) = lock.withLock {
            (pending.count, stopping && !stopped, syncRequested, !roomWaiters.isEmpty,
             checkpointWaiters.contains { $0.lsn <= durableLSN })
        }
        if stopped { return (false, nil) }
        if stop || checkpoint || (requested && (chunks > 0 || unsyncedBytes > 0)) || (roomWanted && chunks > 0) { return (true, nil) }
        if configuration.durability == .strict { return (chunks > 0, nil) }
        // interval and none: nobody waits for these records, so write them in bulk — when a
        // chunk is full or `writeDelayMillis` after the last write — and sync when due.
        var due: Int?
        if chunks > 1 { return (true, nil) }
        if chunks == 1 {
            let waited = Int(now - lastWriteMillis)
            if waited >= Self.writeDelayMillis { return (true, nil) }
            due = Self.writeDelayMillis - waited
        }
        if unsyncedBytes > 0 {
            let period = configuration.durability == .interval ? configuration.syncIntervalMillis : 1_000
            let waited = Int(now - lastSyncMillis)
            if waited >= period { return (true, nil) }
            due = min(due ?? (period - waited), period - waited)
        }
        return (false, due)
    }

    /// How long records of the interval and none modes may wait before they are written.
    static var writeDelayMillis: Int { 2 }

    /// First half of a writer round: takes whole chunks (as many as keep the unsynced
    /// bytes within `unsyncedBytesMax`) and writes them. No sync yet, so that one round
    /// writes every log before it waits for any disk.
    func writeRound() {
        var batch: [Chunk] = []
        var roomMade: [UnsafeContinuation<Void, Never>] = []
        lock.withLock {
            guard !stopped else { return }
            var bytes = unsyncedBytes
            var taken = 0
            while taken < pending.count, bytes + pending[taken].bytes.count <= configuration.unsyncedBytesMax {
                bytes += pending[taken].bytes.count
                taken += 1
            }
            // One removal per round: removing the chunks one at a time from the front was
            // quadratic in the chunks pending.
            batch = Array(pending.prefix(taken))
            pending.removeFirst(taken)
            pendingBytes -= bytes - unsyncedBytes
            assert(pendingBytes >= 0 && (pendingBytes == 0) == pending.isEmpty)
            if pendingBytes < configuration.pendingBytesMax {
                swap(&roomMade, &roomWaiters)
            }
            moreWaitingThisRound = !pending.isEmpty || syncRequested
            syncRequested = false
            closingThisRound = stopping && pending.isEmpty
        }
        for waiter in roomMade { waiter.resume() }
        writtenThisRound = !batch.isEmpty
        if writtenThisRound { lastWriteMillis = monotonicMillis() }
        do {
            for chunk in batch {
                let file = try segmentFile(for: chunk)
                try file.write(chunk.bytes.bytes, at: Int64(chunk.offset))
                unsyncedBytes += chunk.bytes.count
                unsyncedFiles.insert(chunk.segmentFirstLSN)
                unsyncedLastLSN = chunk.lastLSN
                if let seal = chunk.seal { unsyncedSeal = seal }
            }
        } catch {
            stop(because: LogFailure(error: error))
        }
    }

    /// Second half: syncs what is due under the durability mode and wakes the callers
    /// whose records it made durable. Returns false once the log has stopped for good.
    @discardableResult
    func syncRound() -> Bool {
        if lock.withLock({ stopped }) { return false }
        let sinceSync = Int(monotonicMillis() - lastSyncMillis)
        let due = unsyncedBytes > 0 && (configuration.durability == .strict || moreWaitingThisRound || closingThisRound
            || (configuration.durability == .interval && sinceSync >= configuration.syncIntervalMillis)
            || (configuration.durability == .none && (!writtenThisRound || sinceSync >= 1_000)))
        do {
            if due {
                for first in unsyncedFiles.sorted() { try openFiles[first]?.sync() }
                // Segments before the newest are complete: close them.
                if let newest = openFiles.keys.max() {
                    for (first, file) in openFiles where first != newest { file.close(); openFiles[first] = nil }
                }
                unsyncedFiles.removeAll()
                unsyncedBytes = 0
                lastSyncMillis = monotonicMillis()
                let synced = unsyncedLastLSN
                if let seal = unsyncedSeal, seal.lsn <= synced { durableSeal = seal }
                lock.withLock {
                    syncCount += 1
                    syncedRecords += synced - durableLSN
                    durableLSN = synced
                }
                // Before the callers are resumed: once a caller saw its records durable, the
                // checkpoint they were due for is on disk too.
                try writeCheckpointIfDue()
                resumeWaiters(upTo: synced)
            } else {
                try writeCheckpointIfDue()
            }
        } catch {
            stop(because: LogFailure(error: error))
            return false
        }
        if closingThisRound && unsyncedBytes == 0 {
            for file in openFiles.values { file.close() }
            openFiles.removeAll()
            checkpoints?.close()
            for waiter in lock.withLock({ markStopped() }) { waiter.resume() }
            return false
        }
        return true
    }

    /// Signs a checkpoint of the last synced seal when one is due: on close, after a snapshot,
    /// or `auditCheckpointEveryRecords` records after the last one (docs/audit.md). Only what
    /// is synced is signed, so a crash never leaves a checkpoint beyond the log.
    private func writeCheckpointIfDue() throws(FileError) {
        // Snapshots whose LSN is synced: they get a checkpoint now (or the last one covers them).
        let snapshots: [UnsafeContinuation<Void, Never>] = lock.withLock {
            var ready: [UnsafeContinuation<Void, Never>] = []
            checkpointWaiters.removeAll { waiting in
                guard waiting.lsn <= durableLSN else { return false }
                ready.append(waiting.waiter)
                return true
            }
            return ready
        }
        defer { for waiter in snapshots { waiter.resume() } }
        guard let checkpoints, let seal = durableSeal, seal.lsn > checkpoints.lastLSN else { return }
        let reason: CheckpointReason
        if closingThisRound && unsyncedBytes == 0 {
            reason = .close
        } else if !snapshots.isEmpty {
            reason = .snapshot
        } else if seal.lsn - checkpoints.lastLSN >= UInt64(configuration.auditCheckpointEveryRecords) {
            reason = .interval
        } else {
            return
        }
        try checkpoints.write(reason: reason, lsn: seal.lsn, time: seal.time, head: seal.head)
    }

    private func resumeWaiters(upTo lsn: UInt64) {
        // Waiters register outside the shard actor, so their LSNs need not be in order.
        let ready: [Waiter] = lock.withLock {
            var ready: [Waiter] = []
            waiters.removeAll { waiting in
                guard waiting.lsn <= lsn else { return false }
                ready.append(waiting.waiter)
                return true
            }
            return ready
        }
        for waiter in ready { waiter.resume(nil) }
    }

    private func stop(because failure: LogFailure) {
        let (waiting, appenders): ([Waiter], [UnsafeContinuation<Void, Never>]) = lock.withLock {
            self.failure = failure
            defer { waiters.removeAll() }
            return (waiters.map(\.waiter), markStopped())
        }
        for waiter in waiting { waiter.resume(failure) }
        for appender in appenders { appender.resume() }
        for file in openFiles.values { file.close() }
        openFiles.removeAll()
    }

    /// Marks the log stopped (under `lock`) and returns the appenders and `close` callers to
    /// resume, outside the lock: nothing will be written any more.
    private func markStopped() -> [UnsafeContinuation<Void, Never>] {
        stopped = true
        defer {
            roomWaiters.removeAll()
            closeWaiters.removeAll()
            checkpointWaiters.removeAll()
        }
        return roomWaiters + closeWaiters + checkpointWaiters.map(\.waiter)
    }

    /// The open file of a chunk's segment; a new segment is created, preallocated, given
    /// its header and made durable (file and directory) before any record goes into it.
    private func segmentFile(for chunk: Chunk) throws(FileError) -> any WritableFile {
        if let file = openFiles[chunk.segmentFirstLSN] { return file }
        let path = directory + "/" + WALFormat.segmentName(firstLSN: chunk.segmentFirstLSN)
        if let header = chunk.newSegment {
            let file = try fileSystem.open(path, create: true)
            try file.preallocate(Int64(configuration.segmentSize))
            try file.write(header.encoded(), at: 0)
            try file.sync()
            try fileSystem.syncDirectory(directory)
            openFiles[chunk.segmentFirstLSN] = file
            return file
        }
        let file = try fileSystem.open(path, create: false)
        openFiles[chunk.segmentFirstLSN] = file
        return file
    }
}
