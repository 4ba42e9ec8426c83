// APITests — version, status strings, kernel name, the process-wide thread setting and the
// determinism it must not affect, thread safety, in-place gradients.
import CSegLoss
import Dispatch
import Foundation
import SegLoss
import Testing

@Suite("Version, status strings, kernel name")
struct InfoTests {
    @Test("version number and string match the header's macros")
    func version() throws {
        let expected = SEGLOSS_VERSION_MAJOR * 10000 + SEGLOSS_VERSION_MINOR * 100 + SEGLOSS_VERSION_PATCH
        #expect(SegLoss.segloss_version_number() == CUnsignedInt(expected))
        let versionString = SegLoss.segloss_version_string()
        let text = try #require(versionString)
        #expect(String(cString: text) == "\(SEGLOSS_VERSION_MAJOR).\(SEGLOSS_VERSION_MINOR).\(SEGLOSS_VERSION_PATCH)")
        #expect(SegLoss.segloss_version_string() == text, "a static string: the same pointer every call")
    }

    static let statuses: [segloss_status] = [
        SEGLOSS_OK, SEGLOSS_ERROR_NULL_POINTER, SEGLOSS_ERROR_EMPTY_INPUT, SEGLOSS_ERROR_INVALID_ARGUMENT,
        SEGLOSS_ERROR_PRED_OUT_OF_RANGE, SEGLOSS_ERROR_TARGET_OUT_OF_RANGE, SEGLOSS_ERROR_COUNT_TOO_LARGE,
        SEGLOSS_ERROR_INVALID_OPTIONS, SEGLOSS_ERROR_INVALID_SHAPE,
    ]

    @Test("status values are the stable numbers of the header")
    func statusValues() {
        #expect(Self.statuses.map(\.rawValue) == [0, 1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test("every status has its own static message; unknown values share one")
    func statusStrings() throws {
        var messages: [String] = []
        for status in Self.statuses {
            let message0 = SegLoss.segloss_status_string(status)
            let pointer = try #require(message0, "\(statusName(status)) gave NULL")
            #expect(SegLoss.segloss_status_string(status) == pointer, "not a static string")
            let message = String(cString: pointer)
            #expect(!message.isEmpty)
            #expect(message != "unknown segloss status", "\(statusName(status)) has no message")
            messages.append(message)
        }
        #expect(Set(messages).count == messages.count, "two statuses share a message: \(messages)")
        #expect(messages[0] == "success")
        #expect(messages[4].contains("pred") && messages[5].contains("target"))
        for raw: UInt32 in [9, 100, 0x7FFF_FFFF, UInt32.max] {
            let unknown = SegLoss.segloss_status_string(segloss_status(rawValue: raw))
            let pointer = try #require(unknown)
            #expect(String(cString: pointer) == "unknown segloss status", "status \(raw)")
        }
    }

    @Test("kernel name is the best level this CPU runs (or the SEGLOSS_KERNEL one)")
    func kernelName() throws {
        let kernel = SegLoss.segloss_kernel_name()
        let pointer = try #require(kernel)
        #expect(SegLoss.segloss_kernel_name() == pointer, "not a static string")
        let name = String(cString: pointer)
        #expect(["avx512", "avx2", "baseline"].contains(name))
        #if arch(x86_64) && os(Linux)
        let requested = ProcessInfo.processInfo.environment["SEGLOSS_KERNEL"]
        if let best = bestKernelFromCPUInfo() {
            let order = ["baseline", "avx2", "avx512"]
            if let requested, let r = order.firstIndex(of: requested), let b = order.firstIndex(of: best), r <= b {
                #expect(name == requested)
            } else {
                #expect(name == best, "/proc/cpuinfo says \(best)")
            }
        }
        #else
        #expect(name == "baseline")
        #endif
    }

    /// The level segloss should pick, from the flags of /proc/cpuinfo (an independent check of
    /// the CPUID detection).
    private func bestKernelFromCPUInfo() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        if ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) { return "avx512" }
        if ["avx2", "fma"].allSatisfy(flags.contains) { return "avx2" }
        return "baseline"
    }
}

// MARK: - The thread setting (process-wide state: one serialized suite touches it)

/// The default the header documents: SEGLOSS_NUM_THREADS when it holds a positive integer,
/// else the CPUs this process may run on (from /proc/self/status), capped at 256.
func documentedDefaultThreads() -> Int? {
    if let text = ProcessInfo.processInfo.environment["SEGLOSS_NUM_THREADS"],
       let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0 {
        return min(value, 256)
    }
    #if os(Linux)
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
    var cpus = 0
    for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
        let bounds = part.split(separator: "-").compactMap { Int($0) }
        if bounds.count == 2 { cpus += bounds[1] - bounds[0] + 1 } else if bounds.count == 1 { cpus += 1 }
    }
    return cpus > 0 ? min(cpus, 256) : nil
    #else
    return nil
    #endif
}

/// The BCE+Dice outputs (forward, backward, fused) on one input, for bitwise comparison.
struct AllOutputs: Equatable {
    var losses: [UInt32]
    var gradients: [[UInt32]]

    init(pred: [Float], target: [Float]) {
        losses = []
        gradients = []
        // The statistics pass with and without the BCE term, and the gradient pass.
        for function in [LossFunction.bceDiceForward, .bceDiceBackward, .bceDiceForwardBackward] {
            let r = function.call(pred: pred, target: target, weightBCE: 0.7, weightDice: 0.3,
                                  smooth: 0.5, gradLoss: -1.5)
            precondition(r.status == SEGLOSS_OK)
            if function.writesLoss { losses.append(r.loss.bitPattern) }
            if function.writesGradient { gradients.append(r.grad.map(\.bitPattern)) }
        }
    }
}

/// ~1M elements, hard targets with every third 256-element block soft, so that both BCE
/// paths of the kernel run; 62 chunks of 16384, the last one short. Half the predictions
/// and the soft targets are scaled by 2^-k, k random in 0..<40: with values that are all
/// multiples of 2^-24 (plain xorshift) every double sum is exact and any summation order
/// gives the same bits, which would hide an order that depends on the thread count.
let determinismInputs: (pred: [Float], target: [Float]) = {
    let count = 1_000_003
    var (pred, target) = generatedInputs(seed: 99, count: count, target: .hard)
    var rng = XorShift32(seed: 12345)
    var i = 0
    while i < count {
        if (i / 256) % 3 == 0 { target[i] = rng.unit() * Float(sign: .plus, exponent: -Int(rng.next() % 40), significand: 1) }
        if i % 2 == 0 { pred[i] *= Float(sign: .plus, exponent: -Int(rng.next() % 40), significand: 1) }
        i += 1
    }
    return (pred, target)
}()

@Suite("Thread setting and determinism", .serialized)
struct ThreadTests {
    @Test("set/get: n <= 0 restores the default, values above 256 are capped")
    func setAndGet() throws {
        defer { SegLoss.segloss_set_num_threads(0) }
        SegLoss.segloss_set_num_threads(0)
        let defaultCount = Int(SegLoss.segloss_get_num_threads())
        #expect(defaultCount >= 1 && defaultCount <= 256)
        if let documented = documentedDefaultThreads() {
            #expect(defaultCount == documented)
        }
        let cases: [(set: CInt, get: Int)] = [
            (1, 1), (2, 2), (3, 3), (17, 17), (255, 255), (256, 256), (257, 256), (1000, 256), (CInt.max, 256),
            (0, defaultCount), (5, 5), (-1, defaultCount), (7, 7), (CInt.min, defaultCount),
        ]
        for (n, expected) in cases {
            SegLoss.segloss_set_num_threads(n)
            #expect(Int(SegLoss.segloss_get_num_threads()) == expected, "after set(\(n))")
        }
    }

    @Test("loss and gradient bitwise identical for 1, 2, 3, 8 and 16 threads (~1M elements)")
    func determinism() {
        defer { SegLoss.segloss_set_num_threads(0) }
        let (pred, target) = determinismInputs
        SegLoss.segloss_set_num_threads(1)
        let reference = AllOutputs(pred: pred, target: target)
        for threads: CInt in [2, 3, 8, 16] {
            SegLoss.segloss_set_num_threads(threads)
            #expect(SegLoss.segloss_get_num_threads() == threads)
            let outputs = AllOutputs(pred: pred, target: target)
            #expect(outputs.losses == reference.losses, "losses differ with \(threads) threads")
            for (k, gradient) in outputs.gradients.enumerated() {
                let first = gradient.indices.first { gradient[$0] != reference.gradients[k][$0] }
                #expect(first == nil, "gradient \(k) differs with \(threads) threads at element \(first ?? -1)")
            }
        }
    }

    /// The setting may change while calls run (the header allows it at any time); results
    /// must not change.
    @Test("changing the thread count during concurrent calls changes no result")
    func setWhileRunning() {
        defer { SegLoss.segloss_set_num_threads(0) }
        let (pred, target) = generatedInputs(seed: 4242, count: 120_000, target: .soft)
        SegLoss.segloss_set_num_threads(1)
        let reference = LossFunction.bceDiceForwardBackward.call(pred: pred, target: target)
        let results = Locked(Array(repeating: false, count: 6))
        DispatchQueue.concurrentPerform(iterations: 7) { worker in
            if worker == 6 {
                for n: CInt in [2, 0, 3, 1, 16, -1, 4, 2] { SegLoss.segloss_set_num_threads(n); usleep(2_000) }
                return
            }
            var same = true
            for _ in 0..<3 {
                let r = LossFunction.bceDiceForwardBackward.call(pred: pred, target: target)
                same = same && r.status == SEGLOSS_OK && r.loss.bitPattern == reference.loss.bitPattern
                    && r.grad.map(\.bitPattern) == reference.grad.map(\.bitPattern)
            }
            results.withLock { $0[worker] = same }
        }
        #expect(results.withLock { $0 } == Array(repeating: true, count: 6))
    }
}

/// A tiny lock for the concurrency tests.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

@Suite("Thread safety and in-place gradients")
struct ConcurrencyAndInPlaceTests {
    @Test("many host threads calling at once get the single-call results")
    func concurrentHostThreads() {
        let inputs = (0..<4).map { generatedInputs(seed: UInt32(1000 + $0), count: 40_000 + 1_001 * $0, target: .soft) }
        let expected = inputs.map { LossFunction.bceDiceForwardBackward.call(pred: $0.pred, target: $0.target) }
        let mismatches = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 12) { k in
            let i = k % inputs.count
            let r = LossFunction.bceDiceForwardBackward.call(pred: inputs[i].pred, target: inputs[i].target)
            if r.status != SEGLOSS_OK || r.loss.bitPattern != expected[i].loss.bitPattern
                || r.grad.map(\.bitPattern) != expected[i].grad.map(\.bitPattern) {
                mismatches.withLock { $0 += 1 }
            }
        }
        #expect(mismatches.withLock { $0 } == 0)
    }

    /// grad_pred == pred: the gradient written over the predictions equals, bit for bit, the
    /// gradient written to a separate buffer.
    @Test("in place (grad_pred == pred) equals out of place bitwise",
          arguments: LossFunction.allCases.filter(\.writesGradient), [257, 70_003])
    func inPlace(function: LossFunction, count: Int) throws {
        var (pred, target) = validInputs(count, seed: 31)
        // Extremes too: the 1e-12 floor and the -100 clamp.
        pred[0] = 0; target[0] = 1
        pred[1] = 1; target[1] = 0
        pred[2] = 0x1p-133; target[2] = 0.5  // subnormal
        let outOfPlace = function.call(pred: pred, target: target, weightBCE: 0.6, weightDice: 1.2,
                                       smooth: 0.25, gradLoss: -2)
        #expect(outOfPlace.status == SEGLOSS_OK)
        var buffer = pred
        var loss = sentinel
        let status = buffer.withUnsafeMutableBufferPointer { b in
            target.withUnsafeBufferPointer { t in
                function.call(UnsafePointer(b.baseAddress!), t.baseAddress!, count, weightBCE: 0.6, weightDice: 1.2,
                              smooth: 0.25, gradLoss: -2, loss: &loss, grad: b.baseAddress!)
            }
        }
        #expect(status == SEGLOSS_OK)
        let first = buffer.indices.first { buffer[$0].bitPattern != outOfPlace.grad[$0].bitPattern }
        #expect(first == nil, "element \(first ?? -1): in place \(first.map { buffer[$0] } ?? 0), out of place \(first.map { outOfPlace.grad[$0] } ?? 0)")
        if function.writesLoss { #expect(loss.bitPattern == outOfPlace.loss.bitPattern) }
    }

    /// An error in place leaves pred itself untouched.
    @Test("an error in place leaves pred untouched", arguments: LossFunction.allCases.filter(\.writesGradient))
    func inPlaceError(function: LossFunction) {
        var (pred, target) = validInputs(20_000, seed: 5)
        target[19_999] = 1.5
        let before = pred.map(\.bitPattern)
        var loss = sentinel
        let status = pred.withUnsafeMutableBufferPointer { b in
            target.withUnsafeBufferPointer { t in
                function.call(UnsafePointer(b.baseAddress!), t.baseAddress!, b.count, loss: &loss, grad: b.baseAddress!)
            }
        }
        #expect(status == SEGLOSS_ERROR_TARGET_OUT_OF_RANGE)
        #expect(pred.map(\.bitPattern) == before)
        #expect(loss.bitPattern == sentinel.bitPattern)
    }
}
