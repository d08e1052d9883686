#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where shards get the timestamps they stamp on commands. Injectable so tests and
/// simulations can move time by months in milliseconds.
public protocol LedgerClock: Sendable {
    func now() -> Timestamp
}

/// Wall-clock time (CLOCK_REALTIME). Shards never let it go backwards: they stamp
/// max(now, last stamp).
public struct SystemClock: LedgerClock {
    public init() {}
    public func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(millisSinceEpoch: Int64(spec.tv_sec) * 1_000 + Int64(spec.tv_nsec) / 1_000_000)
    }
}

/// A clock that moves only when told to.
public final class ManualClock: LedgerClock {
    private let millis: Mutex<Int64>

    public init(_ start: Timestamp = Timestamp(millisSinceEpoch: 1_767_225_600_000)) {
        millis = Mutex(start.millisSinceEpoch)
    }

    public func now() -> Timestamp { Timestamp(millisSinceEpoch: millis.withLock { $0 }) }

    public func advance(millis delta: Int64) {
        precondition(delta >= 0, "a ledger clock never goes back")
        millis.withLock { $0 += delta }
    }

    public func set(_ time: Timestamp) {
        millis.withLock {
            precondition(time.millisSinceEpoch >= $0, "a ledger clock never goes back")
            $0 = time.millisSinceEpoch
        }
    }
}

/// The processor count without Foundation.
enum ProcessInfoLite {
    static var activeProcessorCount: Int {
        Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }
}
