// KernelLevel — which compiled copy of the kernels runs on this CPU, chosen once at load.
import CPUFeatures
import SegLossKernelTypes
import SegLossKernels
#if canImport(SegLossKernelsAVX2)
import SegLossKernelsAVX2
#endif
#if canImport(SegLossKernelsAVX512)
import SegLossKernelsAVX512
#endif

/// One compiled copy of the kernel sources (Sources/SegLossKernels), for one CPU level.
public struct KernelLevel: Sendable {
    public typealias Statistics = @Sendable (
        UnsafePointer<Float>, UnsafePointer<Float>, Int, Bool, Bool
    ) -> StatisticsPartial
    public typealias Gradient = @Sendable (
        UnsafePointer<Float>, UnsafePointer<Float>, Int, Float, Float, Float,
        UnsafeMutablePointer<Float>, Bool, Bool
    ) -> Double
    public typealias GeneralStatistics = @Sendable (KernelInput, ElementOptions) -> KernelSums
    public typealias GeneralGradient = @Sendable (
        KernelInput, ElementOptions, KernelCoefficients, UnsafeMutableRawPointer
    ) -> Double

    /// "baseline", "avx2" or "avx512".
    public let name: String
    public let statistics: Statistics
    public let gradient: Gradient
    public let generalStatistics: GeneralStatistics
    public let generalGradient: GeneralGradient

    /// Every level this build has, lowest first.
    public static let compiled: [KernelLevel] = {
        var levels = [KernelLevel(
            name: "baseline", statistics: SegLossKernels.statisticsKernel,
            gradient: SegLossKernels.gradientKernel,
            generalStatistics: SegLossKernels.generalStatisticsKernel,
            generalGradient: SegLossKernels.generalGradientKernel)]
        #if canImport(SegLossKernelsAVX2)
        levels.append(KernelLevel(
            name: "avx2", statistics: SegLossKernelsAVX2.statisticsKernel,
            gradient: SegLossKernelsAVX2.gradientKernel,
            generalStatistics: SegLossKernelsAVX2.generalStatisticsKernel,
            generalGradient: SegLossKernelsAVX2.generalGradientKernel))
        #endif
        #if canImport(SegLossKernelsAVX512)
        levels.append(KernelLevel(
            name: "avx512", statistics: SegLossKernelsAVX512.statisticsKernel,
            gradient: SegLossKernelsAVX512.gradientKernel,
            generalStatistics: SegLossKernelsAVX512.generalStatisticsKernel,
            generalGradient: SegLossKernelsAVX512.generalGradientKernel))
        #endif
        return levels
    }()

    /// The highest compiled level this CPU supports, unless SEGLOSS_KERNEL names a lower
    /// one ("baseline", "avx2"), which the tests and the benchmark use to run every level.
    public static let active: KernelLevel = {
        let supported = compiled.prefix(Int(segloss_cpu_level()) + 1)
        if let requested = environmentValue("SEGLOSS_KERNEL"),
           let level = supported.first(where: { $0.name == requested }) {
            return level
        }
        return supported.last ?? compiled[0]
    }()
}
