// swift-tools-version:6.0
// segloss — segmentation losses (Dice, BCE, BCE+Dice) behind a C ABI.
//
//   include/segloss.h            the public C header (the contract)
//   Sources/SegLossKernels       the hot loops: statistics and gradient kernels, vector math;
//                                compiled once per x86-64 level (the AVX2 and AVX-512 folders
//                                are symlinks to this one) and chosen at load time
//   Sources/SegLossKernelTypes   the values the kernels take and return, shared by every level
//   Sources/CPUFeatures          one C function: which instruction-set level this CPU runs
//   Sources/CVectorMath          static inline C on 16-float vectors for the AVX-512 kernels
//                                (a lane permute Swift cannot spell)
//   Sources/SegLossCore          pure Swift: the passes, the parallel driver, the losses
//   Sources/SegLoss              the ABI: @_cdecl functions only
import PackageDescription

#if arch(x86_64)
// The same kernel sources, compiled for two more CPU levels; the core picks one at load time.
let kernelLevels: [(target: String, flags: [String])] = [
    ("SegLossKernelsAVX2", ["-target-cpu", "haswell"]),
    // LLVM's tuning for this CPU prefers 256-bit vectors; the kernels' loops are throughput-
    // bound arithmetic, twice as fast in 512-bit registers (16 floats).
    // SEGLOSS_AVX512: the kernels use vector_math.h (Sources/CVectorMath) at this level.
    ("SegLossKernelsAVX512", ["-target-cpu", "skylake-avx512", "-Xllvm", "-force-vector-width=16",
                              "-DSEGLOSS_AVX512"]),
]
#else
let kernelLevels: [(target: String, flags: [String])] = []
#endif

let kernelTargets: [Target] = kernelLevels.map { level in
    .target(
        name: level.target,
        dependencies: ["SegLossKernelTypes", "CVectorMath"],
        swiftSettings: [.unsafeFlags(level.flags), .define("SEGLOSS_FMA")]
    )
}

let package = Package(
    name: "segloss",
    products: [
        .library(name: "segloss", type: .dynamic, targets: ["SegLoss"]),
    ],
    targets: kernelTargets + [
        .target(name: "SegLossKernelTypes"),
        .target(name: "SegLossKernels", dependencies: ["SegLossKernelTypes", "CVectorMath"]),
        .target(name: "CVectorMath"),
        .target(name: "CPUFeatures"),
        .target(
            name: "SegLossCore",
            dependencies: ["SegLossKernelTypes", "SegLossKernels", "CPUFeatures"] + kernelLevels.map { .target(name: $0.target) }
        ),
        // The public header as a Clang module, so the Swift exports use its types and are
        // checked against its prototypes at compile time (Sources/SegLoss/HeaderConformance.swift).
        .systemLibrary(name: "CSegLoss", path: "include"),
        .target(
            name: "SegLoss",
            dependencies: ["SegLossCore", "CSegLoss"],
            exclude: ["exports.map"],
            linkerSettings: [
                // A self-contained .so: the Swift runtime linked in, only segloss_* exported.
                // Release only: the debug build links the tests, which need the shared runtime.
                .unsafeFlags(
                    [
                        "-static-stdlib", "-use-ld=lld",
                        "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/SegLoss/exports.map",
                        // Never unmapped by dlclose(): its worker threads run its code.
                        "-Xlinker", "-z", "-Xlinker", "nodelete",
                    ],
                    .when(configuration: .release)
                ),
            ]
        ),
        // The fuzz target over the C ABI: a corpus replayer by default, a libFuzzer binary when
        // built with -sanitize=fuzzer,address -DSEGLOSS_LIBFUZZER (make fuzz).
        .executableTarget(name: "SegLossFuzz", dependencies: ["SegLoss", "CSegLoss"]),
        .testTarget(name: "SegLossCoreTests", dependencies: ["SegLossCore"]),
        .testTarget(name: "SegLossTests", dependencies: ["SegLoss", "CSegLoss"]),
    ]
)
