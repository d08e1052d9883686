/// The bounds every value read from a data directory is checked against before it is used
/// in arithmetic, an allocation or a loop (docs/formats.md, "Limits"). A value outside them
/// is damage or a hostile file: refused with a typed error, never trusted, never a trap.
/// Writers stay inside the same bounds, so the check holds on both sides of the disk.
public enum StorageLimits {
    /// The highest LSN a header may name: far beyond any real log (2^62 records), and low
    /// enough that `lsn + 1` can never overflow however many records follow.
    public static let lsnMax: UInt64 = 1 << 62
    /// The latest time a record may carry: the end of year 9999, in ms since 1970. A record
    /// time is never before 1970. (Outside this range, time arithmetic downstream could
    /// overflow; no clock produces such a time.)
    public static let recordTimeMillisMax: Int64 = 253_402_300_799_999
    /// Shards of one data directory (`credits.meta`, segment and snapshot headers).
    public static let shardCountMax = 1_024
    /// The smallest segment a writer makes: a header and two largest records.
    public static let segmentBytesMin = WALFormat.segmentHeaderSize + 2 * WALFormat.recordSizeMax
    /// The largest segment a writer makes, and the most a reader loads of one file.
    public static let segmentBytesMax = 1 << 30
    /// Bounds of a segment header's `unsyncedBytesMax`: at least two largest records (as
    /// `LogConfiguration` requires), at most a segment's largest size. The field decides what
    /// counts as a torn tail, so a crafted huge value must not turn corruption into a cut.
    public static let unsyncedBytesMaxLowest = 2 * WALFormat.recordSizeMax
    public static let unsyncedBytesMaxHighest = segmentBytesMax
    /// The largest uncompressed ledger state of one shard's snapshot (about 100 million
    /// accounts at the measured ~170 bytes each).
    public static let snapshotStateBytesMax = 1 << 34
    /// The largest LZ4 frame of a snapshot: the state's size plus LZ4's worst-case growth
    /// (incompressible data grows by 1/255, plus block and frame headers).
    public static let snapshotFrameBytesMax = snapshotStateBytesMax + snapshotStateBytesMax / 128
    /// The largest `credits.meta` (two short lines).
    public static let metaBytesMax = 4_096
    /// The largest audit checkpoints file a reader loads (about 365,000 checkpoints of 184
    /// bytes: at the default interval, tens of billions of records).
    package static let checkpointsFileBytesMax = 64 << 20
}
