import Synchronization

/// Single-command calls waiting for their shard, with the tasks to resume.
///
/// A single call does not visit the shard actor itself: it leaves its command here and
/// suspends once. The first caller to find the queue idle starts a drain on the actor,
/// which takes everything queued, applies it as one batch, appends it to the log and
/// resumes the callers once their records are durable (see `Shard.drain`). So a call costs
/// one suspension instead of three (to the actor, back, and the wait for the sync), and
/// the callers that arrive while a sync is under way form the next group commit.
final class SubmissionQueue: Sendable {
    struct Pending: ~Copyable {
        var commands: [Command] = []
        var continuations: [UnsafeContinuation<Outcome, Never>] = []
        /// A drain is scheduled or running: new commands will be taken by it.
        var draining = false
    }

    private let state = Mutex(Pending())

    /// Queues a command; true when the caller must start a drain (none was running).
    func push(_ command: Command, _ continuation: UnsafeContinuation<Outcome, Never>) -> Bool {
        state.withLock { pending in
            pending.commands.append(command)
            pending.continuations.append(continuation)
            if pending.draining { return false }
            pending.draining = true
            return true
        }
    }

    /// Swaps everything queued into the (empty) buffers given. When nothing is queued the
    /// drain is over: the next push starts a new one.
    func take(commands: inout [Command], continuations: inout [UnsafeContinuation<Outcome, Never>]) {
        assert(commands.isEmpty && continuations.isEmpty)
        state.withLock { pending in
            swap(&commands, &pending.commands)
            swap(&continuations, &pending.continuations)
            if commands.isEmpty { pending.draining = false }
        }
    }
}
