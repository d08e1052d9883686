import Foundation

// Each of N tasks loops: suspend on a continuation that a "writer" thread resumes, as the
// engine's log writer resumes its callers after an fdatasync (here with no sync at all,
// and no ledger work). What it measures is the least one strict single call costs in
// suspending and resuming its caller. Mode "yield" suspends with Task.yield() instead.
final class Waiting: @unchecked Sendable {
    private let lock = NSLock()
    private var continuations: [UnsafeContinuation<Void, Never>] = []
    private var stopped = false

    func push(_ continuation: UnsafeContinuation<Void, Never>) {
        lock.lock(); continuations.append(continuation); lock.unlock()
    }

    func takeAll() -> [UnsafeContinuation<Void, Never>]? {
        lock.lock(); defer { lock.unlock() }
        if stopped { return nil }
        defer { continuations.removeAll(keepingCapacity: true) }
        return continuations
    }

    func stop() { lock.lock(); stopped = true; lock.unlock() }
}

let arguments = CommandLine.arguments
guard arguments.count == 4, let tasks = Int(arguments[1]), let perTask = Int(arguments[2]),
      ["thread", "yield"].contains(arguments[3]) else {
    print("usage: floor TASKS CYCLES-PER-TASK thread|yield")
    exit(2)
}
let viaThread = arguments[3] == "thread"
let waiting = Waiting()
if viaThread {
    Thread {
        while let group = waiting.takeAll() {
            if group.isEmpty { usleep(20) }
            for continuation in group { continuation.resume() }
        }
    }.start()
}
let start = DispatchTime.now().uptimeNanoseconds
await withTaskGroup(of: Void.self) { group in
    for _ in 0 ..< tasks {
        group.addTask {
            for _ in 0 ..< perTask {
                if viaThread { await withUnsafeContinuation { waiting.push($0) } } else { await Task.yield() }
            }
        }
    }
}
let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
waiting.stop()
print("\(arguments[3]), \(tasks) tasks: \(Int(Double(tasks * perTask) / seconds)) suspend-resume cycles/s")
