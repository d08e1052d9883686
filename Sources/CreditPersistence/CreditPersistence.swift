/// Durable storage for the ledger: the write-ahead log, snapshots, recovery, and the file
/// layer they share. See docs/formats.md and docs/operations.md.
@_exported import CreditCore
