import Synchronization

/// Single-command calls waiting for their shard, with the tasks to resume.
///
/// A single call does not visit the shard actor itself: it leaves its command here and
/// suspends once. The first caller to find the queue idle starts a drain on the actor,
/// which takes everything queued, applies it as one batch, appends it to the log and
/// resumes the callers once their records are durable (see `Shard.drain`). So a call costs
/// one suspension instead of three (to the actor, back, and the wait for the sync), and
/// the callers that arrive while a sync is under way form the next group commit.
///
/// Bounded: at most `commandsMax` commands are queued for the next drain round. A caller
/// that finds the queue full waits in line (still suspended once, in arrival order); each
/// round the drain takes moves the head of the line up into the queue. So one round, and
/// so one append to the log, holds at most `commandsMax` commands, and while the log is
/// full (`ShardLog`'s `pendingBytesMax`) the callers wait here instead of growing it.
final class SubmissionQueue: Sendable {
    typealias Waiting = (command: Command, continuation: UnsafeContinuation<Outcome, Never>)

    struct Pending: ~Copyable {
        var commands: [Command] = []
        var continuations: [UnsafeContinuation<Outcome, Never>] = []
        /// Callers that found the queue full, oldest first from `waitingHead` (the entries
        /// before it have moved up). Only while `commands` is full does anyone wait here.
        var waiting: [Waiting] = []
        var waitingHead = 0
        /// A drain is scheduled or running: new commands will be taken by it.
        var draining = false
    }

    /// Most commands queued for one drain round.
    let commandsMax: Int
    private let state = Mutex(Pending())

    init(commandsMax: Int) {
        precondition(commandsMax >= 1)
        self.commandsMax = commandsMax
    }

    /// Queues a command (or lines it up behind a full queue); true when the caller must start
    /// a drain (none was running).
    func push(_ command: Command, _ continuation: UnsafeContinuation<Outcome, Never>) -> Bool {
        state.withLock { pending in
            // Nobody waits in line unless the queue is full, so this one compare keeps the order.
            if pending.commands.count < commandsMax {
                pending.commands.append(command)
                pending.continuations.append(continuation)
            } else {
                pending.waiting.append((command, continuation))
            }
            if pending.draining { return false }
            pending.draining = true
            return true
        }
    }

    /// Swaps everything queued into the (empty) buffers given, and moves the head of the
    /// line up into the queue. When nothing is queued the drain is over: the next push
    /// starts a new one.
    func take(commands: inout [Command], continuations: inout [UnsafeContinuation<Outcome, Never>]) {
        assert(commands.isEmpty && continuations.isEmpty)
        state.withLock { pending in
            swap(&commands, &pending.commands)
            swap(&continuations, &pending.continuations)
            if commands.isEmpty { pending.draining = false }
            if pending.waitingHead < pending.waiting.count { Self.moveUp(&pending, commandsMax: commandsMax) }
            assert(commands.count <= commandsMax && pending.commands.count <= commandsMax)
            assert(pending.waitingHead == pending.waiting.count || pending.commands.count == commandsMax,
                   "callers wait in line while the queue has room")
        }
    }

    /// Moves waiting callers into the (just emptied) queue, oldest first, as many as fit.
    private static func moveUp(_ pending: inout Pending, commandsMax: Int) {
        let end = min(pending.waiting.count, pending.waitingHead + commandsMax - pending.commands.count)
        for index in pending.waitingHead ..< end {
            pending.commands.append(pending.waiting[index].command)
            pending.continuations.append(pending.waiting[index].continuation)
        }
        pending.waitingHead = end
        // Drop the moved entries once they are half the line: amortized O(1) per caller
        // (removing each from the front was quadratic).
        if pending.waitingHead == pending.waiting.count {
            pending.waiting.removeAll(keepingCapacity: true)
            pending.waitingHead = 0
        } else if pending.waitingHead * 2 >= pending.waiting.count {
            pending.waiting.removeFirst(pending.waitingHead)
            pending.waitingHead = 0
        }
    }
}
