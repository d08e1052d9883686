#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex with a condition variable, for the log's I/O threads. (Swift's `Mutex` has no
/// way to wait for a condition.) The shard actor holds it only to hand bytes over; the
/// ledger state itself is never behind a lock.
final class ConditionLock: @unchecked Sendable {
    // @unchecked: the pthread objects live at fixed addresses for the object's life and
    // are only touched through pthread calls, which synchronise.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init failed")
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        precondition(pthread_cond_init(condition, &attributes) == 0, "pthread_cond_init failed")
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (the lock held by the caller, as with `withLock`) until signalled or until
    /// `millis` pass (nil: no time limit). Spurious wake-ups happen: callers re-check.
    func wait(millis: Int? = nil) {
        guard let millis else {
            pthread_cond_wait(condition, mutex)
            return
        }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        var nanos = Int(now.tv_nsec) + (millis % 1_000) * 1_000_000
        var deadline = timespec()
        deadline.tv_sec = now.tv_sec + time_t(millis / 1_000 + nanos / 1_000_000_000)
        nanos %= 1_000_000_000
        deadline.tv_nsec = nanos
        pthread_cond_timedwait(condition, mutex, &deadline)
    }

    func signal() { pthread_cond_broadcast(condition) }
}

/// Starts a thread at the lowest scheduling priority (Linux SCHED_IDLE), for background
/// work such as encoding a snapshot: on a busy machine the shard actors' threads run
/// first, so the debit path is not stalled by it.
package func startBackgroundThread(_ body: @escaping @Sendable () -> Void) {
    startIdleThread(body)
}

/// Starts a thread at the lowest priority (SCHED_IDLE): for work nobody waits on (a
/// periodic snapshot), which must not take CPU from the shards.
func startIdleThread(_ body: @escaping @Sendable () -> Void) {
    startThread {
#if os(Linux)
        var parameters = sched_param()
        _ = pthread_setschedparam(pthread_self(), 5 /* SCHED_IDLE */, &parameters)
#endif
        body()
    }
}

/// Starts a detached OS thread (not one of Swift's cooperative threads: the log writers
/// block in write and fsync, which must never block the pool that runs the shard actors).
package func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { argument in
        let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
}


/// Milliseconds of CLOCK_MONOTONIC, for measuring durations.
func monotonicMillis() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000
}
