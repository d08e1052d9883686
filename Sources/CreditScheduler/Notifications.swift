// The scheduler's notices as an asynchronous sequence of single notices that travels in
// batches: a hand-over through the stream per notice (a lock, and a wake-up of the
// consumer) cost about 15 % of a month-end renewal's CPU; one per scheduler step costs
// nothing measurable.

/// The notices a `Scheduler` publishes, in the order it made them, for one consumer
/// (`for await notice in scheduler.notifications`). Ends when the scheduler finishes.
public struct CreditNotifications: AsyncSequence, Sendable {
    public typealias Element = CreditNotification
    public typealias Failure = Never

    let batches: AsyncStream<[CreditNotification]>

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(batches: batches.makeAsyncIterator()) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var batches: AsyncStream<[CreditNotification]>.AsyncIterator
        var batch: [CreditNotification] = []
        var position = 0

        public mutating func next() async -> CreditNotification? {
            await next(isolation: nil)
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async -> CreditNotification? {
            while position == batch.count {
                guard let more = await batches.next(isolation: actor) else { return nil }
                batch = more
                position = 0
            }
            position += 1
            return batch[position - 1]
        }
    }
}
