// GeneralLossTests — the general API's engine: bitwise independence of the thread count for
// every kind of work split, the seed's flat path against the general passes, the float64
// gradient against finite differences of the forward, masks, and the kernel levels.
import Foundation
import SegLossCore
import SegLossKernelTypes
import Testing

/// A loss, a shape and the inputs' kinds, for parameterized tests.
struct GeneralCase: Sendable, CustomTestStringConvertible {
    enum Mask: Sendable { case none, perElement, perPixel }

    var name: String
    var options: LossOptions
    var batch: Int
    var channels: Int
    var spatial: Int
    var predType: ElementType = .float32
    var targetType: ElementType = .float32
    var mask: Mask = .none
    var softTargets = false

    var testDescription: String { name }

    var shape: TensorShape {
        try! TensorShape(
            batch: batch, channels: channels, spatial: spatial, predType: predType,
            targetType: targetType, maskPerPixel: mask == .perPixel)
    }
}

/// The raw bytes of a case's pred, target and mask, made from xorshift32. Logits lie in
/// [-8, 8], probabilities in [0, 1) with a few exact 0 and 1, targets 0/1 (about 30 % ones;
/// whole channels empty in sample 0, channel 0) or soft, and about a quarter of a mask is 0.
/// Masked elements hold NaN (pred) and 7 (target): they must not matter.
struct GeneralInputs {
    var pred: [UInt8]
    var target: [UInt8]
    var mask: [UInt8]?

    init(_ c: GeneralCase, seed: UInt32 = 12345) {
        var rng = XorShift32(seed: seed)
        let count = c.batch * c.channels * c.spatial
        var predValues = [Double](repeating: 0, count: count)
        var targetValues = [Double](repeating: 0, count: count)
        var maskValues: [UInt8]? = c.mask == .none ? nil
            : [UInt8](repeating: 1, count: c.mask == .perPixel ? c.batch * c.spatial : count)
        if var m = maskValues {
            for i in m.indices { m[i] = rng.unit() < 0.25 ? 0 : 1 }
            maskValues = m
        }
        for i in 0..<count {
            let u = Double(rng.unit())
            predValues[i] = c.options.logits ? 16 * u - 8 : (i % 997 == 0 ? Double(i % 2) : u)
            let v = Double(rng.unit())
            let run = i / c.spatial
            let emptyRun = run == 0
            targetValues[i] = emptyRun ? 0 : (c.softTargets && c.targetType != .uint8 ? v : (v < 0.3 ? 1 : 0))
            if let m = maskValues {
                let sample = run / c.channels, position = i % c.spatial
                let valid = m[c.mask == .perPixel ? sample * c.spatial + position : i] != 0
                if !valid {
                    predValues[i] = .nan
                    targetValues[i] = 7
                }
            }
        }
        pred = Self.encode(predValues, c.predType)
        target = Self.encode(targetValues, c.targetType)
        mask = maskValues
    }

    static func encode(_ values: [Double], _ type: ElementType) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(values.count * type.size)
        for value in values {
            switch type {
            case .float32: withUnsafeBytes(of: Float(value)) { bytes.append(contentsOf: $0) }
            case .float64: withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
            case .uint8: bytes.append(value.isNaN ? 0 : UInt8(value))
            }
        }
        return bytes
    }

    /// Calls `body` with the inputs as the core takes them.
    func with<R>(_ shape: TensorShape, _ body: (TensorInputs) throws -> R) rethrows -> R {
        try pred.withUnsafeBytes { p in
            try target.withUnsafeBytes { t in
                if let mask {
                    return try mask.withUnsafeBufferPointer { m in
                        try body(TensorInputs(shape: shape, pred: p.baseAddress!, target: t.baseAddress!, mask: m.baseAddress!))
                    }
                }
                return try body(TensorInputs(shape: shape, pred: p.baseAddress!, target: t.baseAddress!, mask: nil))
            }
        }
    }
}

extension [UInt8] {
    /// Writes `value` as the float32 element `index` of these bytes.
    mutating func setFloat(_ value: Float, at index: Int) {
        Swift.withUnsafeBytes(of: value) { replaceSubrange(index * 4 ..< index * 4 + 4, with: $0) }
    }
}

/// Everything a call returns, as bits.
struct GeneralResult: Equatable {
    var loss: UInt64
    var scores: [UInt64]
    var sums: [UInt64]
    var grad: [UInt8]
}

func runGeneral(
    _ c: GeneralCase, _ inputs: GeneralInputs, level: KernelLevel = .active, threads: Int,
    allowsSeedPath: Bool = false
) throws -> GeneralResult {
    let loss = try GeneralLoss(
        options: c.options, shape: c.shape, level: level, threads: threads, allowsSeedPath: allowsSeedPath)
    var scores = [Double](repeating: 0, count: loss.segmentCount)
    var sums = [Double](repeating: 0, count: loss.segmentCount * GeneralLoss.sumsPerSegment)
    var grad = [UInt8](repeating: 0xAB, count: inputs.pred.count)
    let value = try inputs.with(c.shape) { x in
        try grad.withUnsafeMutableBytes { g in
            try loss.forwardBackwardCall(x, into: g.baseAddress!, scores: &scores, sums: &sums)
        }
    }
    return GeneralResult(
        loss: value.bitPattern, scores: scores.map(\.bitPattern), sums: sums.map(\.bitPattern), grad: grad)
}

let generalCases: [GeneralCase] = {
    var cases = [GeneralCase]()
    var o = LossOptions()
    o.logits = true
    o.segments = .channel
    o.posWeight = [2, 0.5, 1]
    o.channelWeights = [1, 2, 0.5]
    cases.append(GeneralCase(name: "logits, batch Dice, pos_weight, per-pixel mask, uint8 target, short runs",
                             options: o, batch: 40, channels: 3, spatial: 700, targetType: .uint8, mask: .perPixel))
    o = LossOptions()
    o.segments = .sampleChannel
    o.region = .jaccard
    o.squared = true
    o.emptyPolicy = .exclude
    o.labelSmoothing = 0.1
    cases.append(GeneralCase(name: "Jaccard squared, sample x channel, long runs, float64 target, soft",
                             options: o, batch: 2, channels: 2, spatial: 40_000, targetType: .float64,
                             softTargets: true))
    o = LossOptions()
    o.segments = .channel
    cases.append(GeneralCase(name: "BCE + batch Dice per channel, soft targets without smoothing",
                             options: o, batch: 3, channels: 2, spatial: 20_000, softTargets: true))
    o = LossOptions()
    o.segments = .sample
    o.region = .tversky
    o.alpha = 0.7
    o.beta = 0.3
    o.gamma = 0.75
    o.emptyPolicy = .zero
    o.reduction = .sum
    cases.append(GeneralCase(name: "focal Tversky, per sample, sum, per-element mask",
                             options: o, batch: 5, channels: 4, spatial: 9_000, mask: .perElement))
    o = LossOptions()
    o.logLoss = true
    o.denominatorMin = 1e-7
    o.segments = .all
    cases.append(GeneralCase(name: "log Dice, whole tensor, one element per run (grouped spans)",
                             options: o, batch: 150_000, channels: 1, spatial: 1))
    o = LossOptions()
    o.logits = true
    o.segments = .sampleChannel
    o.smoothNr = 1e-5
    o.smoothDr = 1e-5
    cases.append(GeneralCase(name: "logits float64, sample x channel, tiny runs over many channels",
                             options: o, batch: 3, channels: 7_000, spatial: 5, predType: .float64))
    // The common logits form (no pos_weight or smoothing) in float32: at the AVX-512 level its
    // whole blocks take the explicit loops (GeneralKernel.swift), its last block the others.
    o = LossOptions()
    o.logits = true
    cases.append(GeneralCase(name: "lean logits float32, whole tensor, per-pixel mask",
                             options: o, batch: 3, channels: 2, spatial: 5_000, mask: .perPixel))
    return cases
}()

/// Cases for the scratch test beside generalCases: the lean logits forms (pos_weight 1, no
/// smoothing) with masks and short runs, whose terms' product reads the valid flags past a
/// block's padding.
let scratchCases: [GeneralCase] = {
    var o = LossOptions()
    o.logits = true
    o.segments = .sampleChannel
    return [
        GeneralCase(name: "lean logits float64, per-pixel mask, uint8 target, runs of 5",
                    options: o, batch: 2, channels: 3, spatial: 5, predType: .float64, targetType: .uint8,
                    mask: .perPixel),
        GeneralCase(name: "lean logits float32, per-element mask, runs of 700",
                    options: o, batch: 2, channels: 2, spatial: 700, mask: .perElement),
        GeneralCase(name: "lean logits float32, no mask, runs of 37", options: o, batch: 3, channels: 2, spatial: 37),
        GeneralCase(name: "lean logits float64, no mask, runs of 600", options: o, batch: 1, channels: 2, spatial: 600,
                    predType: .float64),
    ]
}()

/// Fills the calling thread's kernel scratch with NaN bytes and forgets what it recorded.
func poisonScratch() {
    KernelScratch.with { header, base in
        header.pointee = ScratchHeader()
        base.initializeMemory(as: UInt8.self, repeating: 0xFF, count: KernelScratch.capacity)
    }
}

@Suite struct GeneralLossTests {
    /// The kernels' block buffers are the thread's scratch, kept from call to call: no call
    /// may read there what it did not write. With the scratch filled with NaN bytes first,
    /// every case gives the bits it gives otherwise, twice in a row (the second call finds
    /// the flags the first left), for the fused call and for the forward and backward calls
    /// (the forward sums the element terms in its statistics pass, the backward has no element
    /// sum). One thread: every chunk runs on this one.
    @Test(arguments: generalCases + scratchCases)
    func resultsDoNotDependOnTheScratch(_ c: GeneralCase) throws {
        let inputs = GeneralInputs(c)
        let loss = try GeneralLoss(options: c.options, shape: c.shape, threads: 1, allowsSeedPath: false)
        func forwardAndBackward() throws -> (UInt64, [UInt8]) {
            var grad = [UInt8](repeating: 0xAB, count: inputs.pred.count)
            return try inputs.with(c.shape) { x in
                let value = try loss.forwardCall(x)
                try grad.withUnsafeMutableBytes { try loss.backwardCall(x, gradLoss: 0.75, into: $0.baseAddress!) }
                return (value.bitPattern, grad)
            }
        }
        let clean = try runGeneral(c, inputs, threads: 1)
        let cleanApart = try forwardAndBackward()
        #expect(!Double(bitPattern: clean.loss).isNaN)
        poisonScratch()
        #expect(try runGeneral(c, inputs, threads: 1) == clean, "fused, after the scratch was poisoned")
        #expect(try runGeneral(c, inputs, threads: 1) == clean, "fused, the second call")
        poisonScratch()
        for call in ["after the scratch was poisoned", "the second call"] {
            let apart = try forwardAndBackward()
            #expect(apart.0 == cleanApart.0 && apart.1 == cleanApart.1, "forward and backward, \(call)")
        }
    }

    @Test(arguments: generalCases)
    func threadCountDoesNotChangeBits(_ c: GeneralCase) throws {
        let inputs = GeneralInputs(c)
        let single = try runGeneral(c, inputs, threads: 1)
        #expect(!Double(bitPattern: single.loss).isNaN)
        for threads in [2, 3, 8, 16] {
            #expect(try runGeneral(c, inputs, threads: threads) == single, "threads \(threads)")
        }
    }

    /// The fused call sums the element terms in its gradient pass, the forward call in its
    /// statistics pass: the same kernels' terms, folded the same way, so the same bits.
    @Test(arguments: generalCases)
    func fusedLossIsForwardLoss(_ c: GeneralCase) throws {
        let inputs = GeneralInputs(c)
        let fused = try runGeneral(c, inputs, threads: 2)
        let loss = try GeneralLoss(options: c.options, shape: c.shape, threads: 3, allowsSeedPath: false)
        var sums = [Double](repeating: 0, count: loss.segmentCount * GeneralLoss.sumsPerSegment)
        let forward = try inputs.with(c.shape) { try loss.forwardCall($0, sums: &sums) }
        #expect(forward.bitPattern == fused.loss)
        #expect(sums.map(\.bitPattern) == fused.sums)
    }

    /// At the AVX-512 level the fused call's gradient pass takes one explicit loop for a whole
    /// block of the common logits form and the general loops for a short one (GeneralKernel.swift,
    /// "Explicit loops"): the gradient is elementwise, so the same element must get the same
    /// bits in both. One run of 512 + 100 elements whose last 100 repeat its first 100 (pred,
    /// target and mask), with both region forms (squared: a gradient that depends on p) and
    /// both target kinds. (At the other levels both blocks take the general loops.)
    @Test(arguments: [false, true], [ElementType.float32, .uint8])
    func explicitLoopMatchesGeneralLoops(squared: Bool, targetType: ElementType) throws {
        var o = LossOptions()
        o.logits = true
        o.squared = squared
        for masked in [false, true] {
            let c = GeneralCase(name: "repeated block", options: o, batch: 1, channels: 1, spatial: 612,
                                targetType: targetType, mask: masked ? .perElement : .none)
            var inputs = GeneralInputs(c, seed: 99)
            // Targets 0 and 1 (GeneralInputs leaves the first run empty), and soft in float32.
            var rng = XorShift32(seed: 7)
            let targets = (0..<612).map { _ -> Double in
                let u = Double(rng.unit())
                return targetType == .float32 && u < 0.2 ? Double(rng.unit()) : (u < 0.5 ? 1 : 0)
            }
            inputs.target = GeneralInputs.encode(targets, targetType)
            // Logits beyond the exponential's range, ±0 and small ones among the first 100.
            let extremes: [Float] = [-200, 200, -90, 90, 0, -0.0, 1e-30, -1e-30, 30, -30]
            for (k, x) in extremes.enumerated() where !masked || inputs.mask![k * 7] != 0 {
                inputs.pred.setFloat(x, at: k * 7)
            }
            let predStride = 4, targetStride = targetType.size  // float32 pred
            inputs.pred.replaceSubrange(512 * predStride ..< 612 * predStride, with: inputs.pred[0 ..< 100 * predStride])
            inputs.target.replaceSubrange(
                512 * targetStride ..< 612 * targetStride, with: inputs.target[0 ..< 100 * targetStride])
            if masked { inputs.mask!.replaceSubrange(512 ..< 612, with: inputs.mask![0 ..< 100]) }
            let result = try runGeneral(c, inputs, threads: 1)
            let bits = result.grad.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
            let differing = (0..<100).first { bits[512 + $0] != bits[$0] }
            #expect(differing == nil, "masked \(masked): element \(differing ?? 0) and \(512 + (differing ?? 0))")
            #expect(!Double(bitPattern: result.loss).isNaN)
        }
    }

    /// At the AVX-512 level a whole masked block of the common logits form is staged, checked
    /// and counted in the exponentials' loop (GeneralKernel.swift, "Explicit loops"), a short
    /// one by the general staging. Masked elements hold a NaN logit and the target 7
    /// (GeneralInputs): ignored, and the valid count is the mask's; a bad value where the mask
    /// keeps it, in a whole block and in the short one, is an error.
    @Test(arguments: [ElementType.float32, .uint8])
    func maskedBlocksCheckAndCountKeptElementsOnly(targetType: ElementType) throws {
        var o = LossOptions()
        o.logits = true
        let c = GeneralCase(name: "masked blocks", options: o, batch: 1, channels: 1, spatial: 1024 + 40,
                            targetType: targetType, mask: .perElement)
        let inputs = GeneralInputs(c, seed: 5)
        let mask = inputs.mask!
        let result = try runGeneral(c, inputs, threads: 1)
        #expect(!Double(bitPattern: result.loss).isNaN)
        #expect(Double(bitPattern: result.sums[5]) == Double(mask.filter { $0 != 0 }.count))
        for block in [0..<512, 512..<1024, 1024..<1064] {
            let kept = block.first { mask[$0] != 0 }!
            var badTarget = inputs
            if targetType == .uint8 {
                badTarget.target[kept] = 2
            } else {
                badTarget.target.setFloat(2, at: kept)
            }
            #expect(throws: SegLossError.targetOutOfRange, "block \(block)") { try runGeneral(c, badTarget, threads: 1) }
            var badLogit = inputs
            badLogit.pred.setFloat(.infinity, at: kept)
            #expect(throws: SegLossError.predOutOfRange, "block \(block)") { try runGeneral(c, badLogit, threads: 1) }
        }
    }

    @Test(arguments: generalCases)
    func levelsAgree(_ c: GeneralCase) throws {
        let inputs = GeneralInputs(c)
        let reference = try runGeneral(c, inputs, level: runnableLevels[0], threads: 2)
        let expected = Double(bitPattern: reference.loss)
        for level in runnableLevels.dropFirst() {
            let loss = Double(bitPattern: try runGeneral(c, inputs, level: level, threads: 2).loss)
            #expect(abs(loss - expected) <= 1e-6 * abs(expected), "\(level.name)")
        }
    }

    /// The seed's loss through the flat passes and through the general ones.
    @Test(arguments: [1, 1000, 100_003])
    func seedPathMatchesGeneralPasses(count: Int) throws {
        let c = GeneralCase(name: "seed", options: LossOptions(), batch: 1, channels: 1, spatial: count,
                            softTargets: true)
        let inputs = GeneralInputs(c, seed: 99)
        let threads = WorkerThreads.count
        let flat = try runGeneralLossOnly(c, inputs, allowsSeedPath: true, threads: threads)
        let general = try runGeneralLossOnly(c, inputs, allowsSeedPath: false, threads: threads)
        #expect(abs(flat.loss - general.loss) <= 1e-6 * abs(general.loss))
        let scale = general.grad.map { abs($0) }.max()!
        for i in general.grad.indices {
            #expect(abs(flat.grad[i] - general.grad[i]) <= 1e-5 * abs(general.grad[i]) + 1e-6 * scale, "element \(i)")
        }
    }

    /// d loss / d pred of float64 inputs against central differences of the forward.
    @Test(arguments: gradientCases)
    func float64GradientMatchesFiniteDifferences(_ c: GeneralCase) throws {
        let inputs = GeneralInputs(c, seed: 7)
        let loss = try GeneralLoss(options: c.options, shape: c.shape, threads: 1)
        var grad = [Double](repeating: 0, count: c.batch * c.channels * c.spatial)
        _ = try inputs.with(c.shape) { x in
            try grad.withUnsafeMutableBytes { try loss.backwardCall(x, gradLoss: 1.5, into: $0.baseAddress!) }
        }
        var pred = inputs.pred.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        func forward(_ values: [Double]) throws -> Double {
            var shifted = inputs
            shifted.pred = GeneralInputs.encode(values, .float64)
            return try shifted.with(c.shape) { try loss.forwardCall($0) }
        }
        // Probabilities of exactly 0 or 1 sit on BCE's clamps, where the loss has no derivative.
        for i in stride(from: 1, to: pred.count, by: max(1, pred.count / 23))
        where !pred[i].isNaN && (c.options.logits || (pred[i] > 0 && pred[i] < 1)) {
            let x = pred[i]
            let h = 1e-6 * max(1, abs(x))
            pred[i] = c.options.logits ? x + h : min(x + h, 1)
            let up = try forward(pred), upStep = pred[i] - x
            pred[i] = c.options.logits ? x - h : max(x - h, 0)
            let down = try forward(pred), downStep = x - pred[i]
            pred[i] = x
            let difference = 1.5 * (up - down) / (upStep + downStep)
            #expect(abs(difference - grad[i]) <= 2e-5 * abs(grad[i]) + 1e-8, "element \(i): \(difference) vs \(grad[i])")
        }
    }

    /// Masked elements (NaN pred, target 7 in these inputs) change nothing and get gradient 0;
    /// zeroing them instead gives the same bits.
    @Test func maskedElementsAreIgnored() throws {
        var o = LossOptions()
        o.logits = true
        o.segments = .sampleChannel
        let c = GeneralCase(name: "mask", options: o, batch: 3, channels: 2, spatial: 3000, mask: .perElement)
        let inputs = GeneralInputs(c)
        let result = try runGeneral(c, inputs, threads: 2)
        var zeroed = inputs
        var pred = inputs.pred.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        var target = inputs.target.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        for i in pred.indices where inputs.mask![i] == 0 {
            pred[i] = 0
            target[i] = 0
        }
        zeroed.pred = GeneralInputs.encode(pred.map(Double.init), .float32)
        zeroed.target = GeneralInputs.encode(target.map(Double.init), .float32)
        #expect(try runGeneral(c, zeroed, threads: 2) == result)
        let grad = result.grad.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        for i in grad.indices where inputs.mask![i] == 0 { #expect(grad[i].bitPattern == 0) }
    }
}

let gradientCases: [GeneralCase] = {
    func make(_ name: String, _ change: (inout LossOptions) -> Void, mask: GeneralCase.Mask = .none) -> GeneralCase {
        var o = LossOptions()
        change(&o)
        return GeneralCase(name: name, options: o, batch: 2, channels: 3, spatial: 40, predType: .float64,
                           mask: mask, softTargets: true)
    }
    return [
        make("seed") { _ in },
        make("logits, pos_weight, label smoothing, batch Dice") {
            $0.logits = true; $0.segments = .channel; $0.posWeight = [3, 1, 0.25]; $0.labelSmoothing = 0.2
        },
        make("squared Dice per sample x channel, channel weights") {
            $0.squared = true; $0.segments = .sampleChannel; $0.channelWeights = [1, 0.5, 2]
        },
        make("Jaccard per sample, masked", { $0.region = .jaccard; $0.segments = .sample }, mask: .perPixel),
        make("focal Tversky") { $0.region = .tversky; $0.alpha = 0.3; $0.beta = 0.7; $0.gamma = 1.5 },
        make("log Dice, sum") { $0.logLoss = true; $0.reduction = .sum; $0.segments = .sampleChannel },
        make("logits Dice only, exclude empty") {
            $0.logits = true; $0.bce = false; $0.emptyPolicy = .exclude; $0.segments = .sampleChannel
        },
    ]
}()

private func runGeneralLossOnly(
    _ c: GeneralCase, _ inputs: GeneralInputs, allowsSeedPath: Bool, threads: Int
) throws -> (loss: Double, grad: [Float]) {
    // The seed path is taken only by calls that use the thread setting (threads nil).
    let loss = try GeneralLoss(
        options: c.options, shape: c.shape, threads: allowsSeedPath ? nil : threads, allowsSeedPath: allowsSeedPath)
    #expect((loss.seedForm != nil) == allowsSeedPath)
    var grad = [Float](repeating: 0, count: c.spatial)
    let value = try inputs.with(c.shape) { x in
        try grad.withUnsafeMutableBytes { try loss.forwardBackwardCall(x, into: $0.baseAddress!) }
    }
    return (value, grad)
}

/// The split-phase calls: a batch cut into slices whose sums are added up (the all-reduce of
/// a data-parallel job) gives the loss and gradient of the whole batch, for every segments
/// mode and empty policy.
@Suite struct SplitPhaseTests {
    static let modes: [(Segmentation, EmptyPolicy)] = [
        (.all, .keep), (.sample, .exclude), (.channel, .zero), (.sampleChannel, .keep),
        (.sampleChannel, .exclude), (.sample, .zero),
    ]

    @Test(arguments: 0..<modes.count)
    func slicesAddUpToTheWholeBatch(mode: Int) throws {
        var o = LossOptions()
        o.logits = true
        (o.segments, o.emptyPolicy) = Self.modes[mode]
        let c = GeneralCase(name: "split", options: o, batch: 5, channels: 3, spatial: 900, predType: .float64,
                            mask: .perPixel)
        let inputs = GeneralInputs(c, seed: 31)
        let whole = try GeneralLoss(options: o, shape: c.shape)
        var wholeGrad = [Double](repeating: 0, count: 5 * 3 * 900)
        let wholeLoss = try inputs.with(c.shape) { x in
            try wholeGrad.withUnsafeMutableBytes { try whole.forwardBackwardCall(x, into: $0.baseAddress!) }
        }
        let slices = [0..<2, 2..<3, 3..<5]
        func slice(_ range: Range<Int>) throws -> (GeneralLoss, GeneralInputs) {
            let shape = try TensorShape(batch: range.count, channels: 3, spatial: 900, predType: .float64,
                                        targetType: .float32, maskPerPixel: true)
            let loss = try GeneralLoss(options: o, shape: shape, slice: (range.lowerBound, 5))
            var part = inputs
            part.pred = Array(inputs.pred[(range.lowerBound * 2700 * 8)..<(range.upperBound * 2700 * 8)])
            part.target = Array(inputs.target[(range.lowerBound * 2700 * 4)..<(range.upperBound * 2700 * 4)])
            part.mask = Array(inputs.mask![(range.lowerBound * 900)..<(range.upperBound * 900)])
            return (loss, part)
        }
        let length = whole.segmentCount * GeneralLoss.sumsPerSegment
        var total = [Double](repeating: 0, count: length)
        for range in slices {
            let (loss, part) = try slice(range)
            #expect(loss.segmentCount == whole.segmentCount)
            var sums = [Double](repeating: .nan, count: length)
            try part.with(loss.shape) { x in try loss.sumsCall(x, into: &sums) }
            for i in 0..<length { total[i] += sums[i] }
        }
        for range in slices {
            let (loss, part) = try slice(range)
            let value = try loss.lossFromSumsCall(total, scores: nil)
            #expect(abs(value - wholeLoss) <= 1e-12 * abs(wholeLoss), "\(value) vs \(wholeLoss)")
            var grad = [Double](repeating: .nan, count: range.count * 2700)
            try part.with(loss.shape) { x in
                try grad.withUnsafeMutableBytes {
                    try loss.backwardFromSumsCall(x, sums: total, gradLoss: 1, into: $0.baseAddress!)
                }
            }
            for i in grad.indices {
                let expected = wholeGrad[range.lowerBound * 2700 + i]
                #expect(abs(grad[i] - expected) <= 1e-12 * abs(expected) + 1e-18, "element \(i)")
            }
        }
        // A sum that no slice can have is refused.
        total[0] = -1
        let (loss, _) = try slice(0..<2)
        #expect(throws: SegLossError.invalidArgument) { try loss.lossFromSumsCall(total, scores: nil) }
        #expect(throws: SegLossError.invalidArgument) {
            try GeneralLoss(options: o, shape: c.shape, slice: (1, 5))
        }
        #expect(throws: SegLossError.invalidArgument) { try loss.checkSumsLength(length + 6) }
        // A rank with no samples takes part with sums of 0.
        let none = try TensorShape(batch: 0, channels: 3, spatial: 900, predType: .float64,
                                   targetType: .float32, allowsEmptyBatch: true)
        let empty = try GeneralLoss(options: o, shape: none, slice: (5, 5))
        var sums = [Double](repeating: .nan, count: length)
        try empty.sumsCall(TensorInputs(shape: none, pred: inputs.pred, target: inputs.target, mask: nil), into: &sums)
        #expect(sums.allSatisfy { $0 == 0 })
    }
}

/// -0.0 is a valid probability and means 0: the BCE of -0.0 against t = 1 is the clamped 100,
/// on the flat path and the general one (the vectorized log once read -0.0's sign bit as
/// part of its exponent and gave -73.5).
@Test func negativeZeroPredictionIsZero() throws {
    let target: [Float] = [1, 0, 1, 0]
    for pred: [Float] in [[-0.0, 0.5, 1, 0.25], [0, 0.5, 1, 0.25]] {
        let flat = try pred.withUnsafeBufferPointer { p in
            try target.withUnsafeBufferPointer { t in try BCEDiceLoss.bce.forward(pred: p, target: t) }
        }
        let expected = (100 + -log(0.5) + 0 + -log(0.75)) / 4
        #expect(abs(Double(flat) - expected) <= 1e-6 * expected)
        var o = LossOptions()
        o.elementWeight = 1
        o.regionWeight = 0
        let shape = try TensorShape(batch: 1, channels: 1, spatial: 4, predType: .float32, targetType: .float32)
        let general = try GeneralLoss(options: o, shape: shape, allowsSeedPath: false)
        let value = try pred.withUnsafeBytes { p in
            try target.withUnsafeBytes { t in
                try general.forwardCall(TensorInputs(shape: shape, pred: p.baseAddress!, target: t.baseAddress!, mask: nil))
            }
        }
        #expect(abs(value - expected) <= 1e-6 * expected)
    }
}
