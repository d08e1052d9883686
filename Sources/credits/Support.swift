import CreditEngine
import CSystemStats
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds, for measuring durations.
func monotonicNanos() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Resident set size of this process, from /proc/self/statm.
func residentBytes() -> Int {
    let descriptor = open("/proc/self/statm", O_RDONLY)
    guard descriptor >= 0 else { return 0 }
    defer { close(descriptor) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let count = read(descriptor, &buffer, buffer.count)
    guard count > 0 else { return 0 }
    let fields = buffer[..<count].split(separator: UInt8(ascii: " "))
    guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Bytes the allocator has handed out and not got back (all arenas): live heap, without
/// the freed-but-kept pages that resident size also counts.
func heapBytesInUse() -> Int { Int(system_stats_heap_bytes_in_use()) }

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// `value` with `digits` decimals, without Foundation's formatter.
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0 ..< digits { scale *= 10 }
    let scaled = (value * scale).rounded()
    let negative = scaled < 0
    let magnitude = UInt64(abs(scaled))
    let whole = magnitude / UInt64(scale)
    let fraction = magnitude % UInt64(scale)
    var text = (negative ? "-" : "") + String(whole)
    if digits > 0 {
        let raw = String(fraction)
        text += "." + String(repeating: "0", count: digits - raw.count) + raw
    }
    return text
}

struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    /// splitmix64's step: the state advances by the golden ratio and the output is the
    /// state passed through its finaliser, which is `StableHasher.mix`.
    mutating func next() -> UInt64 {
        defer { state &+= 0x9E37_79B9_7F4A_7C15 }
        return StableHasher.mix(state)
    }
}

/// Latency counts in log-linear buckets (16 per power of two, under 7% error), merged
/// across tasks; no per-sample storage.
struct LatencyHistogram {
    private static let subBucketBits = 4
    private var counts = [UInt64](repeating: 0, count: 64 << subBucketBits)
    private(set) var total: UInt64 = 0
    private(set) var maximum: Double = 0

    private static func bucket(_ nanos: UInt64) -> Int {
        if nanos < (1 << subBucketBits) { return Int(nanos) }
        let exponent = 63 - nanos.leadingZeroBitCount
        let mantissa = Int((nanos >> (exponent - subBucketBits)) & ((1 << subBucketBits) - 1))
        return ((exponent - subBucketBits + 1) << subBucketBits) + mantissa
    }

    /// The upper edge of a bucket, in nanoseconds.
    private static func upperEdge(_ bucket: Int) -> Double {
        if bucket < (1 << subBucketBits) { return Double(bucket) }
        let exponent = (bucket >> subBucketBits) + subBucketBits - 1
        let mantissa = bucket & ((1 << subBucketBits) - 1)
        return Double((UInt64(1 << subBucketBits) + UInt64(mantissa) + 1) << UInt64(exponent - subBucketBits))
    }

    mutating func record(_ nanos: UInt64) {
        counts[Self.bucket(nanos)] += 1
        total += 1
        maximum = max(maximum, Double(nanos))
    }

    mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        total += other.total
        maximum = max(maximum, other.maximum)
    }

    /// Nanoseconds at or below which `fraction` of the samples fall.
    func percentile(_ fraction: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = UInt64((Double(total) * fraction).rounded(.up))
        var seen: UInt64 = 0
        for (bucket, count) in counts.enumerated() where count > 0 {
            seen += count
            if seen >= rank { return min(Self.upperEdge(bucket), maximum) }
        }
        return maximum
    }
}
