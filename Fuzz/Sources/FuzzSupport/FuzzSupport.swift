// libFuzzer's driver, called from each target's main: SwiftPM links an executable's own
// `main`, so the targets hand their one-input function to `LLVMFuzzerRunDriver` (libFuzzer's
// entry point for programs that keep their main) rather than relying on libFuzzer's `main`.

public typealias FuzzInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

@_silgen_name("LLVMFuzzerRunDriver")
private func llvmFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                                 _ callback: FuzzInput) -> CInt

/// Runs libFuzzer with the process's arguments (`-max_total_time=600`, a corpus directory,
/// ...) over `input`; returns its exit status.
public func runFuzzer(_ input: FuzzInput) -> CInt {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    return llvmFuzzerRunDriver(&argc, &argv, input)
}

/// The input as bytes (libFuzzer may pass a null pointer for the empty input).
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}
