// FuzzTarget — drives every entry point of the C ABI with fuzzed counts, values, parameters,
// thread counts and pointer layouts, and stops on any broken contract.
//
// Built two ways (see the Makefile):
//   make fuzz         libFuzzer + AddressSanitizer (-sanitize=fuzzer,address and the define
//                     SEGLOSS_LIBFUZZER): libFuzzer's driver calls LLVMFuzzerTestOneInput;
//   make fuzz-replay  a plain executable that runs the files named on its command line
//                     (Tests/fuzz/corpus) through the same function: the corpus as a test.
//
// Input layout (missing bytes read as 0): byte 0 picks the entry point, byte 1 the layout
// flags, byte 2 the thread count, bytes 3-4 the element count (12 bits, times 16 with flags
// 0xC1), then four raw float32 parameters (weight_bce, weight_dice, smooth, grad_loss), then
// pred and target as raw float32 bit patterns, repeated to fill the count.
import CSegLoss  // the C declarations; the target links SegLoss, whose @_cdecl functions they name

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A broken contract: stops the process so libFuzzer (or the replay) reports the input.
private func violated(_ what: String) -> Never {
    let message = "segloss fuzz: contract broken: \(what)\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    abort()
}

private struct Input {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    mutating func byte() -> UInt8 {
        defer { position += 1 }
        return position < bytes.count ? bytes[position] : 0
    }

    mutating func float() -> Float {
        var bits: UInt32 = 0
        for shift in stride(from: 0, to: 32, by: 8) { bits |= UInt32(byte()) << UInt32(shift) }
        return Float(bitPattern: bits)
    }
}

private enum Entry: UInt8, CaseIterable {
    case diceForward, diceBackward, bceForward, bceBackward
    case bceDiceForward, bceDiceBackward, bceDiceForwardBackward

    var writesGradient: Bool {
        switch self {
        case .diceBackward, .bceBackward, .bceDiceBackward, .bceDiceForwardBackward: return true
        default: return false
        }
    }
}

/// What one call produced: its status, its loss and its gradient, as bit patterns.
private struct Outcome: Equatable {
    var status: UInt32
    var loss: UInt32
    var gradient: [UInt32]
}

private let sentinel: Float = -12345.5

/// Calls `entry` once. `gradient` may be nil (to test NULL) or pred's memory (in place).
private func call(
    _ entry: Entry, _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ parameters: (Float, Float, Float, Float), _ gradient: UnsafeMutablePointer<Float>?
) -> segloss_status {
    var loss = sentinel
    let (wb, wd, smooth, gl) = parameters
    let status: segloss_status
    switch entry {
    case .diceForward: status = segloss_dice_forward(pred, target, count, smooth, &loss)
    case .diceBackward: status = segloss_dice_backward(pred, target, count, smooth, gl, gradient)
    case .bceForward: status = segloss_bce_forward(pred, target, count, &loss)
    case .bceBackward: status = segloss_bce_backward(pred, target, count, gl, gradient)
    case .bceDiceForward:
        status = segloss_bce_dice_forward(pred, target, count, wb, wd, smooth, &loss)
    case .bceDiceBackward:
        status = segloss_bce_dice_backward(pred, target, count, wb, wd, smooth, gl, gradient)
    case .bceDiceForwardBackward:
        status = segloss_bce_dice_forward_backward(pred, target, count, wb, wd, smooth, &loss, gradient)
    }
    lastLoss = loss
    return status
}

/// The loss the last call wrote (or the sentinel).
nonisolated(unsafe) private var lastLoss: Float = 0

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    var input = Input(bytes: UnsafeBufferPointer(start: data, count: size))
    let entry = Entry(rawValue: input.byte() % UInt8(Entry.allCases.count)) ?? .diceForward
    let flags = input.byte()
    let threads = Int32(input.byte() % 17)  // 0 = the default
    var count = Int(input.byte()) | Int(input.byte() & 0x0F) << 8  // up to 4,095
    if flags & 0xC1 == 0xC1 { count &*= 16 }  // up to 65,520: 4 chunks, the worker pool
    let parameters = (input.float(), input.float(), input.float(), input.float())
    let valuesStart = input.position

    let nullPred = flags & 0x08 != 0, nullTarget = flags & 0x10 != 0, nullOutput = flags & 0x20 != 0
    let inPlace = flags & 0x04 != 0 && entry.writesGradient && !nullPred && !nullOutput
    // pred and target in one allocation, starting one byte off alignment with flag 0x02.
    let misalignment = flags & 0x02 != 0 ? 1 : 0
    let raw = UnsafeMutableRawPointer.allocate(byteCount: 8 * count + 16, alignment: 16)
    defer { raw.deallocate() }
    let pred = (raw + misalignment).bindMemory(to: Float.self, capacity: 2 * count)
    let target = pred + count
    let values = max(size - valuesStart, 0) / 4  // whole float32 values in the input
    for index in 0..<(2 * count) {
        var bits: UInt32 = 0
        if values > 0 {
            let offset = valuesStart + (index % values) * 4
            for k in 0..<4 { bits |= UInt32(data[offset + k]) << UInt32(8 * k) }
        }
        (pred + index).initialize(to: Float(bitPattern: bits))
    }
    let predValues = Array(UnsafeBufferPointer(start: pred, count: count))
    let gradientBuffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    defer { gradientBuffer.deallocate() }

    func run(threads: Int32) -> Outcome {
        segloss_set_num_threads(threads)
        pred.update(from: predValues, count: count)
        gradientBuffer.update(repeating: sentinel, count: count)
        let gradient: UnsafeMutablePointer<Float>? =
            !entry.writesGradient || nullOutput ? nil : inPlace ? pred : gradientBuffer
        let status = call(entry, nullPred ? nil : UnsafePointer(pred),
                          nullTarget ? nil : UnsafePointer(target), count, parameters, gradient)
        let written = UnsafeBufferPointer(start: inPlace ? pred : gradientBuffer, count: count)
        return Outcome(status: status.rawValue, loss: lastLoss.bitPattern, gradient: written.map(\.bitPattern))
    }

    let first = run(threads: threads)
    if first.status > 6 { violated("unknown status \(first.status)") }
    if first.status != 0 {
        if first.loss != sentinel.bitPattern { violated("loss written with status \(first.status)") }
        let untouched = inPlace ? predValues.map(\.bitPattern) : [UInt32](repeating: sentinel.bitPattern, count: count)
        if first.gradient != untouched { violated("output written with status \(first.status)") }
    } else {
        // Success: another thread count gives the same bits.
        let otherThreads: Int32 = threads == 1 ? 3 : 1
        if run(threads: otherThreads) != first {
            violated("results differ between \(threads) and \(otherThreads) threads")
        }
    }
    segloss_set_num_threads(0)
    if segloss_status_string(segloss_status(rawValue: UInt32(flags))) == nil {
        violated("no message for status \(flags)")
    }
    return 0
}

#if SEGLOSS_LIBFUZZER
/// libFuzzer's driver (FuzzerDriver.cpp): argc, argv and the target. Declared by symbol name,
/// as this executable target has no C header; pointers and an int pass the same way in both
/// calling conventions.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ target: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The executable's entry point under SwiftPM (which names it <target>_main): hands control to
/// libFuzzer's driver with the target above.
@_cdecl("SegLossFuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, { fuzzOne($0, $1) })
}
#else
/// Replays the inputs in the files named on the command line (the committed corpus).
@main
struct Replay {
    static func main() {
        var replayed = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { violated("cannot open \(path)") }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let read = fread(&buffer, 1, buffer.count, file)
                if read == 0 { break }
                bytes += buffer[0..<read]
            }
            fclose(file)
            bytes.withUnsafeBufferPointer { _ = fuzzOne($0.baseAddress, $0.count) }
            replayed += 1
        }
        print("fuzz-replay: \(replayed) passed, 0 failed")
    }
}
#endif
