/// What the micro-benchmarks start from: funded ledgers, keys that look like clients' keys,
/// and a place to keep a ledger between a benchmark's iterations. Setup only: nothing here
/// runs inside a measurement.
@_spi(Plumbing) import CreditCore

public enum Fixtures {
    /// The time every benchmark applies its commands at (2026-01-01T00:00:00Z). Time only has
    /// to be non-decreasing; a fixed one keeps every key inside the idempotency window.
    public static let now = Timestamp(millisSinceEpoch: 1_767_225_600_000)
    public static let dayMillis: Int64 = 86_400_000

    /// Commands that open `count` individual tenants (numbered from 1), each with its
    /// account 0 and no credits.
    public static func openAccounts(_ count: Int, keys: inout KeySequence) -> (accounts: [AccountID], commands: [Command]) {
        precondition(count > 0)
        var accounts: [AccountID] = []
        var commands: [Command] = []
        accounts.reserveCapacity(count)
        commands.reserveCapacity(2 * count)
        for number in 1 ... count {
            let account = AccountID(tenant: TenantID(UInt64(number)), number: 0)
            accounts.append(account)
            commands.append(Command(key: keys.next(), .openTenant(account.tenant, .individual)))
            commands.append(Command(key: keys.next(), .openAccount(account, .standard)))
        }
        return (accounts, commands)
    }

    /// `openAccounts`, each account with one never-expiring purchase grant of `creditsEach` credits.
    public static func fundedAccounts(_ count: Int, creditsEach: Int64, keys: inout KeySequence)
        -> (accounts: [AccountID], commands: [Command]) {
        precondition(creditsEach > 0)
        var (accounts, commands) = openAccounts(count, keys: &keys)
        for account in accounts {
            commands.append(Command(key: keys.next(), .grant(account, GrantTerms(
                kind: .purchase, amount: Millicredits(creditsEach * Millicredits.perCredit)))))
        }
        return (accounts, commands)
    }

    /// A ledger (default configuration) holding `fundedAccounts(count, creditsEach:keys:)`.
    package static func fundedLedger(accounts count: Int, creditsEach: Int64, keys: inout KeySequence)
        -> (ledger: Ledger, accounts: [AccountID]) {
        let (accounts, commands) = fundedAccounts(count, creditsEach: creditsEach, keys: &keys)
        var ledger = Ledger()
        apply(commands, to: &ledger)
        return (ledger, accounts)
    }

    /// Applies setup commands at `now`; a rejected one means the fixture is wrong.
    package static func apply(_ commands: [Command], to ledger: inout Ledger, at time: Timestamp = now) {
        for command in commands {
            if case .failure(let error) = ledger.record(command, at: time).outcome {
                fatalError("setup command \(command.action) was rejected: \(error)")
            }
        }
    }
}

/// Idempotency keys that look random, as clients' UUIDs do, and are the same in every run:
/// SplitMix64 over a counter, one stream per use so that no two streams share a key.
public struct KeySequence: Sendable {
    private var state: UInt64

    public init(stream: UInt64) { state = stream &* 0xD1B5_4A32_D192_ED03 }

    @inline(__always)
    public mutating func next() -> IdempotencyKey {
        let high = step()
        return IdempotencyKey(high: high, low: step())
    }

    @inline(__always)
    private mutating func step() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// A value a benchmark keeps between its iterations (a ledger, a buffer).
///
/// The measured code works on the value moved out into a local (`take`) and moves it back
/// afterwards (`put`): used in place through a class property, every mutation would pay
/// for a run-time exclusivity check, and a copy would share the ledger's pages, so each
/// first write to a page would copy it.
public final class Stash<Value> {
    private var stored: Value?

    public init(_ value: Value) { stored = value }

    public func take() -> Value {
        guard let value = stored.take() else { fatalError("the value was taken and not put back") }
        return value
    }

    public func put(_ value: Value) {
        precondition(stored == nil, "the value is already there")
        stored = value
    }
}
