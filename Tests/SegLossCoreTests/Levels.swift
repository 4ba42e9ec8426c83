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

/// One compiled copy of the vector math (Sources/SegLossKernels/VectorMath.swift).
struct MathLevel: Sendable, CustomTestStringConvertible {
    var name: String
    var log: @Sendable (Float) -> Float
    var logOneMinus: @Sendable (Float) -> Float
    var logWithRemainder: @Sendable (Float, Float) -> Float
    var log1p: @Sendable (Float) -> Float
    var exp: @Sendable (Float) -> Float
    var expOfNonPositive: @Sendable (Float) -> Float
    var sigmoid: @Sendable (Float) -> Float
    var log1pOfUnit: @Sendable (Float) -> Float
    var logOfClassPair: @Sendable (Float, Float, Float, Float) -> (log: Float, product: Float)
    /// Whether multiplyAdd is fused at this level (VectorMath claims a tighter log bound then).
    var hasFMA: Bool

    var testDescription: String { name }

    static let all: [MathLevel] = {
        #if arch(arm64)
        let baselineFMA = true
        #else
        let baselineFMA = false
        #endif
        var levels = [MathLevel(
            name: "baseline", log: { SegLossKernels.logApprox($0) },
            logOneMinus: { SegLossKernels.logOneMinusApprox($0) },
            logWithRemainder: { SegLossKernels.logApprox($0, remainder: $1) },
            log1p: { SegLossKernels.log1pApprox($0) }, exp: { SegLossKernels.expApprox($0) },
            expOfNonPositive: { SegLossKernels.expOfNonPositiveApprox($0) },
            sigmoid: { SegLossKernels.sigmoidApprox($0) },
            log1pOfUnit: { SegLossKernels.log1pOfUnitApprox($0) },
            logOfClassPair: { SegLossKernels.logOfClassPairApprox($0, target: $1, $2, target: $3) },
            hasFMA: baselineFMA)]
        #if canImport(SegLossKernelsAVX2)
        levels.append(MathLevel(
            name: "avx2", log: { SegLossKernelsAVX2.logApprox($0) },
            logOneMinus: { SegLossKernelsAVX2.logOneMinusApprox($0) },
            logWithRemainder: { SegLossKernelsAVX2.logApprox($0, remainder: $1) },
            log1p: { SegLossKernelsAVX2.log1pApprox($0) }, exp: { SegLossKernelsAVX2.expApprox($0) },
            expOfNonPositive: { SegLossKernelsAVX2.expOfNonPositiveApprox($0) },
            sigmoid: { SegLossKernelsAVX2.sigmoidApprox($0) },
            log1pOfUnit: { SegLossKernelsAVX2.log1pOfUnitApprox($0) },
            logOfClassPair: { SegLossKernelsAVX2.logOfClassPairApprox($0, target: $1, $2, target: $3) },
            hasFMA: true))
        #endif
        #if canImport(SegLossKernelsAVX512)
        levels.append(MathLevel(
            name: "avx512", log: { SegLossKernelsAVX512.logApprox($0) },
            logOneMinus: { SegLossKernelsAVX512.logOneMinusApprox($0) },
            logWithRemainder: { SegLossKernelsAVX512.logApprox($0, remainder: $1) },
            log1p: { SegLossKernelsAVX512.log1pApprox($0) }, exp: { SegLossKernelsAVX512.expApprox($0) },
            expOfNonPositive: { SegLossKernelsAVX512.expOfNonPositiveApprox($0) },
            sigmoid: { SegLossKernelsAVX512.sigmoidApprox($0) },
            log1pOfUnit: { SegLossKernelsAVX512.log1pOfUnitApprox($0) },
            logOfClassPair: { SegLossKernelsAVX512.logOfClassPairApprox($0, target: $1, $2, target: $3) },
            hasFMA: true))
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
