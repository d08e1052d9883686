// Back-pressure and waiting: an appender waits for room while the writer is behind; callers
// wait (or register an action) for their records to be durable or synced; `close` waits for
// the writer's last flush. Also the log's state and counters read under the lock.

extension ShardLog {
    // MARK: Back-pressure (shard actor)

    /// Whether an append may start now without `waitForRoom`. Shard actor only; no lock.
    package var mayAppend: Bool { roomAfterAppend }

    /// Suspends until fewer than `pendingBytesMax` bytes are pending (or the log stopped, so
    /// the caller finds out). The caller must append before it suspends again, so that each
    /// append starts below the bound and pending bytes never exceed it by more than one append.
    /// Shard actor only (`isolation`: it runs on the caller's actor).
    package func waitForRoom(isolation: isolated (any Actor)? = #isolation) async {
        while !roomAfterAppend {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let ready: Bool = lock.withLock {
                    if pendingBytes < configuration.pendingBytesMax || stopped { return true }
                    roomWaiters.append(continuation)
                    roomWaitCount += 1
                    return false
                }
                // Someone waits for the writer: it writes at once instead of after `writeDelayMillis`.
                if ready { continuation.resume() } else { writer.wake() }
            }
            // Another appender resumed with this one may have filled the room again.
            roomAfterAppend = lock.withLock { pendingBytes < configuration.pendingBytesMax || stopped }
        }
    }

    /// The most bytes ever pending at once, and how often an appender waited for room.
    var pendingStatistics: (bytesHighWater: Int, roomWaits: UInt64) { lock.withLock { (pendingBytesHighWater, roomWaitCount) } }

    /// Returns once the record `lsn` (and all before it) is durable under the configured
    /// mode: synced for `.strict`, written to the log's buffer for the others. Throws
    /// `LogFailure` if the log stopped before that.
    package func waitUntilDurable(_ lsn: UInt64) async throws(LogFailure) {
        if configuration.durability != .strict {
            if let failure = lock.withLock({ failure }) { throw failure }
            return
        }
        try await waitForSync(lsn, requestingOne: false)
    }

    /// Runs `action` once the record `lsn` (and all before it) is durable under the
    /// configured mode — at once, on the caller's thread, when it already is (always for
    /// the modes that do not wait for syncs); otherwise on the writer thread right after
    /// the sync. The action gets nil, or the failure that stopped the log. It must be
    /// short: it delays the writer's next round (resuming waiting tasks is the intended use).
    package func whenDurable(_ lsn: UInt64, _ action: @escaping @Sendable (LogFailure?) -> Void) {
        let ready: LogFailure?? = lock.withLock {
            if let failure { return .some(failure) }
            if configuration.durability != .strict || durableLSN >= lsn { return .some(nil) }
            waiters.append((lsn, .action(action)))
            return nil
        }
        if let ready { action(ready) }
    }

    /// Returns once the record `lsn` is synced, whatever the durability mode (a snapshot
    /// must never be newer than the synced log). Throws if the log stopped.
    ///
    /// With an audit signing key it returns once the writer has also signed a checkpoint of
    /// the synced head (a snapshot is being taken there: docs/audit.md), or found one there.
    package func waitUntilSynced(_ lsn: UInt64) async throws(LogFailure) {
        try await waitForSync(lsn, requestingOne: true)
        guard configuration.auditSigningKey != nil else { return }
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let done: Bool = lock.withLock {
                if stopped { return true }
                checkpointWaiters.append((lsn, continuation))
                return false
            }
            if done { continuation.resume() } else { writer.wake() }
        }
        if let failure = lock.withLock({ failure }) { throw failure }
    }

    /// Suspends until the record `lsn` is synced. `requestingOne`: in the modes that do not
    /// sync on every write, asks the writer for a sync now.
    private func waitForSync(_ lsn: UInt64, requestingOne: Bool) async throws(LogFailure) {
        do {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                let ready: Result<Void, LogFailure>? = lock.withLock {
                    if let failure { return .failure(failure) }
                    if durableLSN >= lsn { return .success(()) }
                    waiters.append((lsn, .task(continuation)))
                    if requestingOne { syncRequested = true }
                    return nil
                }
                if let ready {
                    continuation.resume(with: ready.mapError { $0 as any Error })
                } else if requestingOne {
                    writer.wake()
                }
            }
        } catch let failure as LogFailure {
            throw failure
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    /// The failure that stopped the log, if any.
    package var stoppedBecause: LogFailure? { lock.withLock { failure } }

    /// Syncs performed and records they made durable (for the benchmark's counters).
    package var syncStatistics: (syncs: UInt64, records: UInt64) { lock.withLock { (syncCount, syncedRecords) } }

    /// Writes and syncs everything appended, then stops the writer thread.
    package func close() async {
        let last = lastAppendedLSN
        if configuration.durability == .strict { try? await waitUntilDurable(last) }
        // Suspended until the writer has finished the last flush (it resumes `closeWaiters`).
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let done: Bool = lock.withLock {
                stopping = true
                if stopped { return true }
                closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { writer.wake() }
        }
        writer.remove(self)
    }
}
