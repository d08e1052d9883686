#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CreditPersistence

/// Hands a statement's lines from its replay thread to the task iterating it, in chunks,
/// with back-pressure: the thread waits (on a condition variable: it is its own OS thread,
/// never one of Swift's cooperative threads) while `chunksMax` chunks are unread, so a slow
/// consumer holds the replay back instead of letting lines pile up. The consumer never
/// blocks: it suspends on a continuation. Dropping the last iterator, or cancelling the task
/// waiting in `receive`, stops the replay at its next record.
final class StatementStream: @unchecked Sendable {
    // @unchecked: every mutable field is read and written under `mutex` only; the pthread
    // objects live at fixed addresses for the object's life.
    static let linesPerChunk = 512
    static let chunksMax = 4

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var chunks: [[Statement.Line]] = []
    private var waiter: CheckedContinuation<[Statement.Line]?, any Error>?
    private var ended: Result<Void, StatementError>?
    private var stopped = false

    /// Starts the replay of `statement` on a thread of its own.
    init(_ statement: Statement) {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        precondition(pthread_mutex_init(mutex, nil) == 0 && pthread_cond_init(condition, nil) == 0, "pthread init failed")
        startThread { [self] in produce(statement) }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    private func locked<Value>(_ body: () -> Value) -> Value {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Thrown through the replay when the consumer went away.
    private struct Stopped: Error {}

    /// The replay thread: runs the statement, sending a chunk whenever one fills.
    private func produce(_ statement: Statement) {
        var chunk: [Statement.Line] = []
        chunk.reserveCapacity(Self.linesPerChunk)
        let result: Result<Void, StatementError>
        do {
            try statement.run(emit: { line in
                chunk.append(line)
                if chunk.count == Self.linesPerChunk {
                    guard send(chunk) else { throw Stopped() }
                    chunk.removeAll(keepingCapacity: true)
                }
            }, poll: { [self] in
                if locked({ stopped }) { throw Stopped() }
            })
            if !chunk.isEmpty { _ = send(chunk) }
            result = .success(())
        } catch let error as StatementError {
            result = .failure(error)
        } catch {
            // `run` throws StatementError, or what `emit` and `poll` throw: Stopped, when
            // nobody is listening any more.
            assert(error is Stopped, "unexpected error from a statement's replay: \(error)")
            result = .success(())
        }
        let waiting: CheckedContinuation<[Statement.Line]?, any Error>? = locked {
            ended = result
            guard chunks.isEmpty, let waiting = waiter else { return nil }
            waiter = nil
            return waiting
        }
        waiting?.resume(with: result.map { nil })
    }

    /// Hands `chunk` over: straight to a waiting consumer, else into the queue once it has
    /// room. false when the consumer is gone.
    private func send(_ chunk: [Statement.Line]) -> Bool {
        pthread_mutex_lock(mutex)
        while chunks.count >= Self.chunksMax && !stopped { pthread_cond_wait(condition, mutex) }
        if stopped {
            pthread_mutex_unlock(mutex)
            return false
        }
        if let waiting = waiter {
            waiter = nil
            pthread_mutex_unlock(mutex)
            waiting.resume(returning: chunk)
            return true
        }
        chunks.append(chunk)
        pthread_mutex_unlock(mutex)
        return true
    }

    /// The next chunk, nil after the last; the replay's error once the lines before it are read.
    func receive() async throws -> [Statement.Line]? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[Statement.Line]?, any Error>) in
                enum Answer { case chunk([Statement.Line]), end(Result<Void, StatementError>), cancelled, wait }
                let answer: Answer = locked {
                    if !chunks.isEmpty {
                        pthread_cond_broadcast(condition)
                        return .chunk(chunks.removeFirst())
                    }
                    if let ended { return .end(ended) }
                    if stopped { return .cancelled }
                    waiter = continuation
                    return .wait
                }
                switch answer {
                case .chunk(let chunk): continuation.resume(returning: chunk)
                case .end(let result): continuation.resume(with: result.map { nil })
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            stop()
        }
    }

    /// The consumer is gone: wake the replay thread so it ends, and any waiting receive.
    func stop() {
        let waiting: CheckedContinuation<[Statement.Line]?, any Error>? = locked {
            stopped = true
            pthread_cond_broadcast(condition)
            defer { waiter = nil }
            return waiter
        }
        waiting?.resume(throwing: CancellationError())
    }
}

/// Owned by an iterator: stops the replay when the iterator is dropped.
final class StatementStreamOwner: Sendable {
    let stream: StatementStream
    init(_ statement: Statement) { stream = StatementStream(statement) }
    deinit { stream.stop() }
}
