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
    if data[0] & 0x80 != 0 { return fuzzGeneral(data, size) }
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

// MARK: - The general API and the split phase

// Input layout when byte 0 has its top bit set (missing bytes read as 0): byte 0 & 3 picks
// segloss_forward, _backward, _forward_backward or the split phase (compute_sums,
// loss_from_sums, backward_from_sums, checked against forward_backward); byte 1 the thread
// count; bytes 2-9 the eight int fields of segloss_options (a byte below 0x80 is taken modulo
// the field's valid values, one above is used as it is: mostly invalid); bytes 10-19 the ten
// doubles, each an index into `interestingValues`; byte 20 the struct size (correct, smaller,
// larger with zero or non-zero new bytes), whether pos_weight and channel_weights are given,
// misalignment and tame values; bytes 21-23 N, C and S's high bits; byte 24 the dtypes and mask; bytes 25-26 S's low
// bits; then the element values as raw bytes, repeated.

private let interestingValues: [Double] = [
    0.5, 1, 0, 1e-5, 1e-7, 2, 0.25, 0.7, 3, -1, .nan, .infinity, 1e300, 5e-324, 0.999, 100,
]

private let generalMax = 3 * chunkLength + 4096
nonisolated(unsafe) private let generalPred = UnsafeMutableRawPointer.allocate(byteCount: 8 * generalMax + 1, alignment: 64)
nonisolated(unsafe) private let generalTarget = UnsafeMutableRawPointer.allocate(byteCount: 8 * generalMax + 1, alignment: 64)
nonisolated(unsafe) private let generalMask = UnsafeMutableRawPointer.allocate(byteCount: generalMax, alignment: 64)
nonisolated(unsafe) private let generalGrad = UnsafeMutableRawPointer.allocate(byteCount: 8 * generalMax, alignment: 64)
nonisolated(unsafe) private let generalSecond = UnsafeMutableRawPointer.allocate(byteCount: 8 * generalMax, alignment: 64)

private func fuzzGeneral(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = Input(bytes: UnsafeBufferPointer(start: data, count: size))
    let entry = input.byte() & 3
    let threads = Int32(input.byte() % 17)
    var options = segloss_options()
    _ = segloss_options_init(&options)
    func field(_ valid: UInt8) -> Int32 {
        let b = input.byte()
        return b < 0x80 ? Int32(b % valid) : Int32(b)
    }
    options.input = field(2)
    options.element_term = field(2)
    options.region_term = field(4)
    options.segments = field(4)
    options.empty_policy = field(3)
    options.reduction = field(2)
    options.squared = field(2)
    options.log_loss = field(2)
    func value() -> Double { interestingValues[Int(input.byte()) % interestingValues.count] }
    options.element_weight = value()
    options.region_weight = value()
    options.smooth_nr = value()
    options.smooth_dr = value()
    options.alpha = value()
    options.beta = value()
    options.gamma = value()
    options.denominator_min = value()
    options.log_min = value()
    options.label_smoothing = value()
    let layout = input.byte()
    let n = 1 + Int(input.byte() % 4), c = 1 + Int(input.byte() % 4)
    let sHigh = Int(input.byte() % 4)
    let types = input.byte()
    let sLow = Int(input.byte()) | Int(input.byte()) << 8
    // Up to 4 * 4 * 3 * 16384 / 16 elements: a few chunks at the largest, so threads run.
    let spatial = 1 + (sHigh == 3 ? sLow % 12_288 : sLow % 1024)
    let count = n * c * spatial
    guard count <= generalMax else { return 0 }
    let predType = Int32(types % 3)            // 2 = uint8: INVALID_SHAPE
    let targetType = Int32((types / 3) % 4)    // 3: INVALID_SHAPE
    let maskMode = (types / 12) % 4            // none, per element, per pixel, layout 7
    var shape = segloss_shape(
        batch: n, channels: c, spatial: spatial, pred_dtype: predType, target_dtype: targetType,
        mask_layout: maskMode == 3 ? 7 : (maskMode == 2 ? 1 : 0))
    let predSize = predType == 1 ? 8 : 4
    let targetSize = targetType == 1 ? 8 : (targetType == 2 ? 1 : 4)
    let misaligned = layout & 0x40 != 0 ? 1 : 0
    let pred = generalPred + misaligned, target = generalTarget + misaligned
    let valuesStart = min(input.position, size)
    let pool = UnsafeRawPointer(data + valuesStart)
    let poolBytes = size - valuesStart
    func fill(_ destination: UnsafeMutableRawPointer, _ bytes: Int, _ first: Int) {
        guard poolBytes > 0 else { memset(destination, 0, bytes); return }
        for k in 0..<bytes { destination.storeBytes(of: pool.load(fromByteOffset: (first + k) % poolBytes, as: UInt8.self), toByteOffset: k, as: UInt8.self) }
    }
    fill(pred, count * predSize, 0)
    fill(target, count * targetSize, 7)
    let maskCount = maskMode == 2 ? n * spatial : count
    fill(generalMask, maskCount, 13)
    let mask: UnsafePointer<UInt8>? = maskMode == 0 ? nil : UnsafePointer(generalMask.assumingMemoryBound(to: UInt8.self))
    // Tame values (layout 0x20), so that most inputs get past the range checks into the math:
    // pred and target from one byte each, probabilities and targets in [0, 1], logits in
    // [-8, 8], uint8 targets 0 or 1 (also layout 0x01).
    if layout & 0x20 != 0 {
        for k in 0..<count {
            let b = poolBytes > 0 ? pool.load(fromByteOffset: k % poolBytes, as: UInt8.self) : 0
            let u = Double(b) / 255
            let p = options.input == 1 ? 16 * u - 8 : u
            let t = Double((b &* 37) & 1) * (b & 0x40 != 0 ? u : 1)
            if predType == 1 { pred.storeBytes(of: p, toByteOffset: 8 * k, as: Double.self) }
            else { pred.storeBytes(of: Float(p), toByteOffset: 4 * k, as: Float.self) }
            switch targetType {
            case 1: target.storeBytes(of: t, toByteOffset: 8 * k, as: Double.self)
            case 2: target.storeBytes(of: UInt8(t > 0.5 ? 1 : 0), toByteOffset: k, as: UInt8.self)
            default: target.storeBytes(of: Float(t), toByteOffset: 4 * k, as: Float.self)
            }
        }
    }
    if targetType == 2 && layout & 0x01 != 0 {
        for k in 0..<count { target.storeBytes(of: target.load(fromByteOffset: k, as: UInt8.self) & 1, toByteOffset: k, as: UInt8.self) }
    }
    let weights = [Double](repeating: 0, count: c).enumerated().map { k, _ in interestingValues[(k + Int(layout)) % 8] }
    let structMode = (layout >> 1) & 3
    var bigger = (options, UInt64(0), UInt64(0))
    bigger.0.struct_size = structMode == 0 ? MemoryLayout<segloss_options>.size
        : structMode == 1 ? MemoryLayout<segloss_options>.size - 8 : MemoryLayout.size(ofValue: bigger)
    if structMode == 3 { bigger.2 = 1 }

    let segments = 4 * 4 * 4 + 1
    let sentinelValue = -12345.5
    return weights.withUnsafeBufferPointer { w in
        bigger.0.pos_weight = layout & 0x08 != 0 ? w.baseAddress : nil
        bigger.0.channel_weights = layout & 0x10 != 0 ? w.baseAddress : nil
        return withUnsafePointer(to: &bigger) { big in
            let o = UnsafeRawPointer(big).assumingMemoryBound(to: segloss_options.self)
            var loss = sentinelValue
            var scores = [Double](repeating: sentinelValue, count: segments)
            var sums = [Double](repeating: sentinelValue, count: 6 * segments)
            memset(generalGrad, 0xA5, count * predSize)
            segloss_set_num_threads(threads)
            var status: segloss_status
            switch entry {
            case 0: status = segloss_forward(o, &shape, pred, target, mask, &loss, &scores, &sums)
            case 1: status = segloss_backward(o, &shape, pred, target, mask, 0.75, generalGrad)
            default: status = segloss_forward_backward(o, &shape, pred, target, mask, &loss, generalGrad, &scores, &sums)
            }
            if status.rawValue > 8 { violated("general: unknown status \(status.rawValue)") }
            if status != SEGLOSS_OK {
                if loss != sentinelValue || scores.contains(where: { $0 != sentinelValue })
                    || sums.contains(where: { $0 != sentinelValue }) {
                    violated("general: an output written with status \(status.rawValue)")
                }
                for k in 0..<(count * predSize) where generalGrad.load(fromByteOffset: k, as: UInt8.self) != 0xA5 {
                    violated("general: the gradient written with status \(status.rawValue)")
                }
                segloss_set_num_threads(0)
                return 0
            }
            if entry == 3 || count > chunkLength {
                // The split phase on the whole batch, or the same call with other threads:
                // the same bits (the split phase's loss within rounding of the sums' order).
                memcpy(generalSecond, generalGrad, count * predSize)
                segloss_set_num_threads(threads == 1 ? 3 : 1)
                var again = sentinelValue
                var slice = segloss_slice(sample_offset: 0, total_batch: n)
                var length = 0
                if entry == 3 {
                    _ = segloss_sums_length(o, &shape, &slice, &length)
                    var split = [Double](repeating: 0, count: length)
                    var statuses = [
                        segloss_compute_sums(o, &shape, &slice, pred, target, mask, &split, length),
                        segloss_loss_from_sums(o, &shape, &slice, split, length, &again, nil),
                        segloss_backward_from_sums(o, &shape, &slice, pred, target, mask, split, length, 1, generalGrad),
                    ]
                    statuses.removeAll { $0 == SEGLOSS_OK }
                    if !statuses.isEmpty { violated("split phase: status \(statuses[0].rawValue) where forward_backward succeeded") }
                    let scale = max(abs(loss), 1e-300)
                    if again != loss && !(abs(again - loss) <= 1e-9 * scale) && !(again.isNaN && loss.isNaN) {
                        violated("split phase: loss \(again) vs forward_backward \(loss)")
                    }
                } else {
                    switch entry {
                    case 0: _ = segloss_forward(o, &shape, pred, target, mask, &again, nil, nil)
                    case 1: _ = segloss_backward(o, &shape, pred, target, mask, 0.75, generalGrad)
                    default: _ = segloss_forward_backward(o, &shape, pred, target, mask, &again, generalGrad, nil, nil)
                    }
                    if entry != 1 && again.bitPattern != loss.bitPattern && !(again.isNaN && loss.isNaN) {
                        violated("general: the loss differs between thread counts")
                    }
                    if entry != 0 && memcmp(generalSecond, generalGrad, count * predSize) != 0 {
                        violated("general: the gradient differs between thread counts")
                    }
                }
            }
            segloss_set_num_threads(0)
            return 0
        }
    }
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
