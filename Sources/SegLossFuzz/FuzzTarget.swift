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
// flags, byte 2 the thread count, bytes 3-4 the element count (12 bits), then four raw
// float32 parameters (weight_bce, weight_dice, smooth, grad_loss), then pred and target as
// raw float32 bit patterns (little-endian), repeated to fill the count.
//
// Flags: 0x02 pred and target one byte off alignment, 0x04 the gradient in place (grad_pred =
// pred), 0x08 pred NULL, 0x10 target NULL, 0x20 the outputs (loss and grad_pred) NULL. The
// large mode — flags with all of 0xC1 and byte 4's high nibble 0xF — adds 3 chunks of 16,384
// elements to the count: 49,152 to 53,247 elements, 3 or 4 chunks, so the worker pool runs.
//
// Speed (libFuzzer needs millions of runs): the buffers are made once, at their largest, and
// each input's arrays are placed at their ends, so AddressSanitizer still sees the first byte
// past every array; the inputs are filled by memcpy, not element by element (this file is
// instrumented for coverage, every comparison in a per-element loop is a call); the large mode
// is one input in 128 of random bytes, as a large input costs 20 to 50 small ones; and only an
// input of more than one chunk is run again with another thread count (one chunk is never
// split between threads).
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

private let sentinel: Float = -12345.5

/// The library's chunk: work is split between threads in whole chunks (README, How it works).
private let chunkLength = 16_384
/// The large mode's count: this many elements plus the 12-bit count.
private let largeBase = 3 * chunkLength
private let maxCount = largeBase + 4095

/// One array's memory, made once at the largest count. `array(count:misaligned:)` places an
/// array of `count` floats so that it ends exactly where the allocation ends: a read or write
/// past its end reaches AddressSanitizer's redzone, as with an allocation of its own size.
private struct Area {
    let base: UnsafeMutableRawPointer
    let bytes: Int

    /// `misalignable`: one byte longer, so an array ending at the end starts one byte off.
    init(misalignable: Bool) {
        bytes = 4 * maxCount + (misalignable ? 1 : 0)
        base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    }

    func array(count: Int) -> UnsafeMutablePointer<Float> {
        // Floats at any byte address: the library takes them; only memcpy touches them here.
        (base + (bytes - 4 * count)).assumingMemoryBound(to: Float.self)
    }
}

nonisolated(unsafe) private let predAligned = Area(misalignable: false)
nonisolated(unsafe) private let predMisaligned = Area(misalignable: true)
nonisolated(unsafe) private let targetAligned = Area(misalignable: false)
nonisolated(unsafe) private let targetMisaligned = Area(misalignable: true)
nonisolated(unsafe) private let gradientArea = Area(misalignable: false)
nonisolated(unsafe) private let savedPred = UnsafeMutableRawPointer.allocate(byteCount: 4 * maxCount, alignment: 64)
nonisolated(unsafe) private let firstOutput = UnsafeMutableRawPointer.allocate(byteCount: 4 * maxCount, alignment: 64)
nonisolated(unsafe) private let sentinels: UnsafeMutableRawPointer = {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 4 * maxCount, alignment: 64)
    memory.initializeMemory(as: Float.self, repeating: sentinel, count: maxCount)
    return memory
}()

/// Writes `count` floats into `destination`: element k is pool[(first + k) % poolCount], the
/// pool being `poolCount` raw float32 values; zeros when the pool is empty. Whole periods are
/// copied with memcpy, doubling.
private func fillRepeating(
    _ destination: UnsafeMutableRawPointer, count: Int, pool: UnsafeRawPointer, poolCount: Int, first: Int
) {
    let bytes = 4 * count
    guard poolCount > 0 else {
        memset(destination, 0, bytes)
        return
    }
    let start = first % poolCount
    let head = min(poolCount - start, count)  // the pool from `start` to its end
    memcpy(destination, pool + 4 * start, 4 * head)
    var written = head
    if written < count {  // one whole period, from pool index 0
        let period = min(poolCount, count - written)
        memcpy(destination + 4 * written, pool, 4 * period)
        written += period
    }
    while written < count {  // whole periods from index `head` on, doubling
        let length = min(written - head, count - written)
        memcpy(destination + 4 * written, destination + 4 * head, 4 * length)
        written += length
    }
}

/// Calls `entry` once. `loss` and `gradient` may be nil (to test NULL); `gradient` may be
/// pred's memory (in place).
private func call(
    _ entry: Entry, _ pred: UnsafePointer<Float>?, _ target: UnsafePointer<Float>?, _ count: Int,
    _ parameters: (Float, Float, Float, Float), _ loss: UnsafeMutablePointer<Float>?,
    _ gradient: UnsafeMutablePointer<Float>?
) -> segloss_status {
    let (wb, wd, smooth, gl) = parameters
    switch entry {
    case .diceForward: return segloss_dice_forward(pred, target, count, smooth, loss)
    case .diceBackward: return segloss_dice_backward(pred, target, count, smooth, gl, gradient)
    case .bceForward: return segloss_bce_forward(pred, target, count, loss)
    case .bceBackward: return segloss_bce_backward(pred, target, count, gl, gradient)
    case .bceDiceForward: return segloss_bce_dice_forward(pred, target, count, wb, wd, smooth, loss)
    case .bceDiceBackward:
        return segloss_bce_dice_backward(pred, target, count, wb, wd, smooth, gl, gradient)
    case .bceDiceForwardBackward:
        return segloss_bce_dice_forward_backward(pred, target, count, wb, wd, smooth, loss, gradient)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    var input = Input(bytes: UnsafeBufferPointer(start: data, count: size))
    let entry = Entry(rawValue: input.byte() % UInt8(Entry.allCases.count)) ?? .diceForward
    let flags = input.byte()
    let threads = Int32(input.byte() % 17)  // 0 = the default
    let countLow = input.byte(), countHigh = input.byte()
    var count = Int(countLow) | Int(countHigh & 0x0F) << 8  // up to 4,095
    if flags & 0xC1 == 0xC1 && countHigh & 0xF0 == 0xF0 { count += largeBase }  // the worker pool
    let parameters = (input.float(), input.float(), input.float(), input.float())
    let valuesStart = min(input.position, size)
    let poolCount = (size - valuesStart) / 4  // whole float32 values in the input

    let nullPred = flags & 0x08 != 0, nullTarget = flags & 0x10 != 0, nullOutput = flags & 0x20 != 0
    let inPlace = flags & 0x04 != 0 && entry.writesGradient && !nullPred && !nullOutput
    let misaligned = flags & 0x02 != 0
    let pred = (misaligned ? predMisaligned : predAligned).array(count: count)
    let target = (misaligned ? targetMisaligned : targetAligned).array(count: count)
    let gradientBuffer = gradientArea.array(count: count)
    let pool = UnsafeRawPointer(data + valuesStart)
    fillRepeating(UnsafeMutableRawPointer(pred), count: count, pool: pool, poolCount: poolCount, first: 0)
    fillRepeating(UnsafeMutableRawPointer(target), count: count, pool: pool, poolCount: poolCount, first: count)
    memcpy(savedPred, pred, 4 * count)
    let output: UnsafeMutablePointer<Float> = inPlace ? pred : gradientBuffer
    let gradient: UnsafeMutablePointer<Float>? = !entry.writesGradient || nullOutput ? nil : output

    /// Calls the entry with `threads` workers on fresh inputs and outputs; returns the status
    /// and the loss's bits (the gradient, or pred in place, is left in `output`).
    func run(threads: Int32) -> (status: UInt32, loss: UInt32) {
        segloss_set_num_threads(threads)
        memcpy(pred, savedPred, 4 * count)
        memcpy(gradientBuffer, sentinels, 4 * count)
        var loss = sentinel
        let status = withUnsafeMutablePointer(to: &loss) { lossPointer in
            call(entry, nullPred ? nil : UnsafePointer(pred), nullTarget ? nil : UnsafePointer(target), count,
                 parameters, nullOutput ? nil : lossPointer, gradient)
        }
        return (status.rawValue, loss.bitPattern)
    }

    let first = run(threads: threads)
    if first.status > 6 { violated("unknown status \(first.status)") }
    if first.status != 0 {
        if first.loss != sentinel.bitPattern { violated("loss written with status \(first.status)") }
        if memcmp(output, inPlace ? savedPred : sentinels, 4 * count) != 0 {
            violated("output written with status \(first.status)")
        }
    } else if count > chunkLength {
        // Success on more than one chunk: another thread count gives the same bits.
        memcpy(firstOutput, output, 4 * count)
        let otherThreads: Int32 = threads == 1 ? 3 : 1
        let second = run(threads: otherThreads)
        if second.status != first.status || second.loss != first.loss || memcmp(firstOutput, output, 4 * count) != 0 {
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
