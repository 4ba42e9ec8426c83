// Levels — the compiled kernel levels this machine can run, for parameterized tests.
import CPUFeatures
import SegLossCore
import SegLossKernels
import Testing
#if canImport(SegLossKernelsAVX2)
import SegLossKernelsAVX2
#endif
#if canImport(SegLossKernelsAVX512)
import SegLossKernelsAVX512
#endif

/// The kernel levels compiled into this build that this CPU can execute (a level built for
/// AVX-512 would fault on a CPU without it), lowest first.
let runnableLevels: [KernelLevel] = Array(KernelLevel.compiled.prefix(Int(segloss_cpu_level()) + 1))

/// Names of the compiled levels this CPU cannot run (reported, not tested).
let skippedLevels: [String] = KernelLevel.compiled.dropFirst(runnableLevels.count).map(\.name)

/// One compiled copy of the vector math, with the accuracy VectorMath.swift claims for it.
struct MathLevel: Sendable, CustomTestStringConvertible {
    var name: String
    var log: @Sendable (Float) -> Float
    var logOneMinus: @Sendable (Float) -> Float
    /// Claimed bound of logApprox over (0, 1], in ulps of the float32 result.
    var logBound: Double
    /// Claimed bound of logOneMinusApprox over [0, 1).
    var logOneMinusBound: Double

    var testDescription: String { name }

    static let all: [MathLevel] = {
        #if arch(arm64)
        let baselineLogBound = 1.0  // arm64 always has FMA
        #else
        let baselineLogBound = 2.0
        #endif
        var levels = [MathLevel(name: "baseline", log: { SegLossKernels.logApprox($0) },
                                logOneMinus: { SegLossKernels.logOneMinusApprox($0) },
                                logBound: baselineLogBound, logOneMinusBound: 2)]
        #if canImport(SegLossKernelsAVX2)
        levels.append(MathLevel(name: "avx2", log: { SegLossKernelsAVX2.logApprox($0) },
                                logOneMinus: { SegLossKernelsAVX2.logOneMinusApprox($0) },
                                logBound: 1, logOneMinusBound: 2))
        #endif
        #if canImport(SegLossKernelsAVX512)
        levels.append(MathLevel(name: "avx512", log: { SegLossKernelsAVX512.logApprox($0) },
                                logOneMinus: { SegLossKernelsAVX512.logOneMinusApprox($0) },
                                logBound: 1, logOneMinusBound: 2))
        #endif
        return levels
    }()

    /// The levels this CPU can run.
    static var runnable: [MathLevel] {
        let names = Set(runnableLevels.map(\.name))
        return all.filter { names.contains($0.name) }
    }
}

/// xorshift32 (the generator of Tests/vectors/generate.py), for random test data.
struct XorShift32 {
    var state: UInt32
    init(seed: UInt32) { state = seed }
    mutating func next() -> UInt32 {
        state ^= state &<< 13
        state ^= state &>> 17
        state ^= state &<< 5
        return state
    }
    /// An exact float32 in [0, 1).
    mutating func unit() -> Float { Float(next() &>> 8) * 0x1p-24 }
}
