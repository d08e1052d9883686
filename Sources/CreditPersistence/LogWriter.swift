import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A thread that writes and syncs the logs assigned to it, round after round: first it
/// writes every log's new records, then syncs each log that needs it and wakes the callers
/// waiting on those records. One writer serves many shard logs, so an engine runs as many
/// I/O threads as it has writers (`LogWriter.Pool`), not one per shard: on a small machine
/// a thread per shard spends its time switching between threads instead of writing.
package final class LogWriter: @unchecked Sendable {
    // @unchecked: `logs` is guarded by `lock`; `work` and `sleeping` are atomics.
    private let lock = ConditionLock()
    private var logs: [ShardLog] = []
    /// Set when the last log left: the thread ends.
    private var retired = false
    /// Set by appenders; the writer clears it before looking for work.
    private let work = Atomic<Bool>(false)
    /// The writer is (about to be) blocked on the condition.
    private let sleeping = Atomic<Bool>(false)

    /// See `LogConfiguration.commitDelayMicros`.
    let commitDelayMicros: Int

    package init(commitDelayMicros: Int = 0) {
        self.commitDelayMicros = commitDelayMicros
        startThread { [self] in self.run() }
    }

    func add(_ log: ShardLog) {
        lock.withLock { logs.append(log) }
        wake()
    }

    func remove(_ log: ShardLog) {
        lock.withLock {
            logs.removeAll { $0 === log }
            if logs.isEmpty { retired = true }
        }
        wake()
    }

    /// Tells the writer there is work. Cheap when it is busy: an atomic store and load; the
    /// condition is signalled only when the writer sleeps.
    func wake() {
        work.store(true, ordering: .sequentiallyConsistent)
        if sleeping.load(ordering: .sequentiallyConsistent) {
            lock.withLock { lock.signal() }
        }
    }

    private func run() {
        while true {
            work.store(false, ordering: .sequentiallyConsistent)
            let (current, done) = lock.withLock { (logs, retired) }
            if done { return }
            let now = monotonicMillis()
            var ready: [ShardLog] = []
            var nextDue: Int?
            for log in current {
                let (isReady, due) = log.writerWork(now: now)
                if isReady { ready.append(log) }
                if let due { nextDue = min(nextDue ?? due, due) }
            }
            if ready.isEmpty {
                // Sleep until woken (or until a pending sync comes due). The flag and the
                // re-check under the lock close the gap between "no work" and sleeping.
                lock.withLock {
                    sleeping.store(true, ordering: .sequentiallyConsistent)
                    if !work.load(ordering: .sequentiallyConsistent) && !retired { lock.wait(millis: nextDue) }
                    sleeping.store(false, ordering: .sequentiallyConsistent)
                }
                continue
            }
            // Commit delay (strict mode): a moment for more records to join the sync. On
            // a machine where the callers compete with the writers for the cores, syncing
            // the first record at once makes many small syncs, each costing system time the
            // callers then lack; waiting a little makes fewer, larger groups.
            if commitDelayMicros > 0, ready.contains(where: { $0.configuration.durability == .strict }) {
                usleep(UInt32(commitDelayMicros))
            }
            for log in ready { log.writeRound() }
            for log in ready { log.syncRound() }
        }
    }

    /// A fixed set of writers; logs are assigned round-robin.
    package final class Pool: Sendable {
        package let writers: [LogWriter]

        package init(count: Int, commitDelayMicros: Int = 0) {
            precondition(count >= 1)
            writers = (0 ..< count).map { _ in LogWriter(commitDelayMicros: commitDelayMicros) }
        }

        package func writer(for shard: Int) -> LogWriter { writers[shard % writers.count] }
    }
}
