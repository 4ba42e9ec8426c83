// GeneralLoss — the general API's three steps (DESIGN §2) on batch × channels × spatial
// tensors: per-segment statistics, finalize, gradient.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SegLossKernelTypes

/// The inputs of one call: pred, target and the optional mask, of `shape`.
public struct TensorInputs: @unchecked Sendable {
    public let shape: TensorShape
    public let pred: UnsafeRawPointer
    public let target: UnsafeRawPointer
    public let mask: UnsafePointer<UInt8>?

    public init(shape: TensorShape, pred: UnsafeRawPointer, target: UnsafeRawPointer, mask: UnsafePointer<UInt8>?) {
        self.shape = shape
        self.pred = pred
        self.target = target
        self.mask = mask
    }

    /// Elements `start ..< start + count` of run `run` (all inside it), for a kernel.
    func kernelInput(run: Int, start: Int, count: Int) -> KernelInput {
        var maskStart: UnsafePointer<UInt8>?
        if let mask {
            if shape.maskPerPixel {
                let sample = run / shape.channels
                maskStart = mask + (sample &* shape.spatial &+ (start &- run &* shape.spatial))
            } else {
                maskStart = mask + start
            }
        }
        return KernelInput(
            pred: pred + start &* shape.predType.size, predType: shape.predType,
            target: target + start &* shape.targetType.size, targetType: shape.targetType,
            mask: maskStart, count: count)
    }
}

/// What finalize returns: the loss, each segment's score, and the gradient's coefficients.
public struct FinalizedLoss: Sendable {
    public var loss: Double
    public var scores: [Double]
    public var coefficients: [KernelCoefficients]
}

/// A validated loss of the general API on tensors of one shape.
public struct GeneralLoss: Sendable {
    public let options: LossOptions
    public let shape: TensorShape
    public let level: KernelLevel
    let threads: Int
    /// Whether the seed's loss may take the flat passes (tests turn it off to compare).
    let allowsSeedPath: Bool
    /// This call's samples are samples sampleOffset ..< sampleOffset + batch of a batch of
    /// totalBatch, split across processes (the split-phase API); 0 and batch otherwise.
    public let sampleOffset: Int
    public let totalBatch: Int

    /// - Throws: `.invalidOptions` when the options break a rule of segloss_options.
    public init(
        options: LossOptions, shape: TensorShape, level: KernelLevel = .active,
        threads: Int? = nil, allowsSeedPath: Bool = true,
        slice: (sampleOffset: Int, totalBatch: Int)? = nil
    ) throws(SegLossError) {
        try options.validate(channels: shape.channels)
        let (offset, total) = slice ?? (0, shape.batch)
        guard total != 0 else { throw .emptyInput }  // a whole batch of no samples
        guard offset >= 0, total >= 0, offset <= total, shape.batch <= total &- offset,
              !total.multipliedReportingOverflow(by: shape.channels).overflow
        else { throw .invalidArgument }
        self.sampleOffset = offset
        self.totalBatch = total
        self.options = options
        self.shape = shape
        self.level = level
        // Read once: another thread may change the setting at any time, and the seed path
        // (which reads it itself) is taken only for calls that use the setting.
        self.threads = threads ?? WorkerThreads.count
        self.allowsSeedPath = allowsSeedPath && level.name == KernelLevel.active.name
            && threads == nil && slice == nil
    }

    // MARK: Segments

    /// 1, N, C or N·C.
    public var segmentCount: Int {
        switch options.segments {
        case .all: return 1
        case .sample: return totalBatch
        case .channel: return shape.channels
        case .sampleChannel: return totalBatch &* shape.channels
        }
    }

    /// The segment of run (sample · C + channel) `run`.
    @inline(__always)
    func segment(ofRun run: Int) -> Int {
        switch options.segments {
        case .all: return 0
        case .sample: return run / shape.channels &+ sampleOffset
        case .channel: return run % shape.channels
        case .sampleChannel: return run &+ sampleOffset &* shape.channels
        }
    }

    /// The channel whose weight a segment's loss takes (channel and sample × channel segments).
    func channel(ofSegment segment: Int) -> Int { segment % shape.channels }

    var usesElementTerm: Bool { options.bce && options.elementWeight != 0 }
    var usesRegionTerm: Bool { options.region != .none && options.regionWeight != 0 }

    func elementOptions(
        bce: Bool, squaredError: Bool = true, findSoftTargets: Bool = false, hardTargets: Bool = false
    ) -> [ElementOptions] {
        (0..<shape.channels).map { channel in
            var element = ElementOptions(
                logits: options.logits, bce: bce, posWeight: options.posWeight?[channel] ?? 1,
                labelSmoothing: options.labelSmoothing, squaredError: squaredError)
            element.findSoftTargets = findSoftTargets
            element.hardTargets = hardTargets
            return element
        }
    }

    /// Whether a fused call's gradient pass would look for soft targets (BCE on
    /// probabilities), which its statistics pass can then find for it.
    var elementTermChecksTargets: Bool { usesElementTerm && !options.logits }

    // MARK: Step 1: statistics

    /// The sums of every segment, in segment order.
    /// - Throws: `.predOutOfRange`, `.targetOutOfRange`.
    /// Without `elementTerms`, the element sums are 0 (a backward call needs no loss); without
    /// `allSums`, SQ is 0 unless the loss is a squared form (nothing else needs it). With
    /// `findSoftTargets`, the sums say whether some valid target is neither 0 nor 1.
    public func statistics(
        _ inputs: TensorInputs, elementTerms: Bool = true, allSums: Bool = true, findSoftTargets: Bool = false
    ) throws(SegLossError) -> [KernelSums] {
        let channelOptions = elementOptions(
            bce: usesElementTerm && elementTerms, squaredError: allSums || options.squared,
            findSoftTargets: findSoftTargets)
        let totals = sumBySegment { run, start, count in
            level.generalStatistics(
                inputs.kernelInput(run: run, start: start, count: count), channelOptions[run % shape.channels])
        }
        if totals.contains(where: { $0.invalidPred }) { throw .predOutOfRange }
        if totals.contains(where: { $0.invalidTarget }) { throw .targetOutOfRange }
        return totals
    }

    /// Runs `span(run, start, count)` for every span of every work item, on the worker
    /// threads, and adds up its results by segment: within an item in span order, then the
    /// items in item order, so the sums do not depend on the thread count. Scratch: one round
    /// of items' records.
    func sumBySegment(_ span: (Int, Int, Int) -> KernelSums) -> [KernelSums] {
        let plan = WorkPlan(shape: shape, sameSegment: { a, b in segment(ofRun: a) == segment(ofRun: b) })
        var totals = [KernelSums](repeating: KernelSums(), count: segmentCount)
        let perItem = plan.maximumRecordsPerItem
        // At most 1024 records (about 64 KB with their segments): glibc serves that from its
        // heap, while a larger block would be mapped and unmapped at every call, its pages
        // faulted in anew each time.
        let roundLength = max(1, min(ChunkPlan.roundLength, 1024 / perItem))
        let records = UnsafeMutablePointer<KernelSums>.allocate(capacity: roundLength * perItem)
        let recordSegments = UnsafeMutablePointer<Int>.allocate(capacity: roundLength * perItem)
        let recordCounts = UnsafeMutablePointer<Int>.allocate(capacity: roundLength)
        defer {
            records.deallocate()
            recordSegments.deallocate()
            recordCounts.deallocate()
        }
        let driver = ChunkPlan(chunks: plan.items, threads: threads)
        var first = 0
        while first < plan.items {
            let round = first..<min(first &+ roundLength, plan.items)
            driver.forEach(chunksIn: round) { item in
                let base = (item &- round.lowerBound) &* perItem
                var n = 0
                plan.forEachSpan(item) { run, start, count in
                    let sums = span(run, start, count)
                    let segment = segment(ofRun: run)
                    if n > 0 && recordSegments[base &+ n &- 1] == segment {
                        records[base &+ n &- 1].add(sums)
                    } else {
                        (records + (base &+ n)).initialize(to: sums)
                        recordSegments[base &+ n] = segment
                        n &+= 1
                    }
                }
                recordCounts[item &- round.lowerBound] = n
            }
            for item in round {
                let base = (item &- round.lowerBound) &* perItem
                for index in base..<(base &+ recordCounts[item &- round.lowerBound]) {
                    totals[recordSegments[index]].add(records[index])
                }
            }
            first = round.upperBound
        }
        return totals
    }

    // MARK: Step 2: finalize

    /// The loss from the segments' sums, their scores, and the gradient coefficients of
    /// `gradLoss` · loss.
    public func finalize(_ sums: [KernelSums], gradLoss: Double = 1) -> FinalizedLoss {
        var loss = 0.0
        var elementScale = 0.0
        if usesElementTerm {
            var elementSum = 0.0, valid = 0.0
            for segment in sums {
                elementSum += segment.elementSum
                valid += segment.validCount
            }
            let scale: Double
            switch options.reduction {
            case .mean: scale = valid > 0 ? 1 / valid : 0
            case .sum: scale = 1
            }
            loss += options.elementWeight * (elementSum * scale)
            elementScale = options.elementWeight * scale * gradLoss
        }
        var scores = [Double](repeating: 0, count: sums.count)
        var terms = [RegionTerms](repeating: RegionTerms(), count: sums.count)
        for (index, segment) in sums.enumerated() {
            terms[index] = regionTerms(segment)
            scores[index] = terms[index].score
        }
        var coefficients = [KernelCoefficients](
            repeating: KernelCoefficients(targetScale: 0, offset: 0, predScale: 0, elementScale: elementScale),
            count: sums.count)
        if usesRegionTerm {
            var counted = 0
            var included = [Bool](repeating: true, count: sums.count)
            for (index, segment) in sums.enumerated() {
                let empty = segment.truePositive + segment.falseNegative == 0
                if empty && options.emptyPolicy == .exclude {
                    included[index] = false
                } else {
                    counted += 1
                    if empty && options.emptyPolicy == .zero { terms[index] = RegionTerms(score: scores[index]) }
                }
            }
            let scale: Double
            switch options.reduction {
            case .mean: scale = counted > 0 ? 1 / Double(counted) : 0
            case .sum: scale = 1
            }
            var region = 0.0
            for index in sums.indices where included[index] {
                let weight = options.channelWeights?[channel(ofSegment: index)] ?? 1
                region += weight * terms[index].loss
                let k = options.regionWeight * scale * weight * gradLoss
                let t = terms[index]
                coefficients[index].targetScale = k * (t.dTruePositive - t.dFalsePositive - t.dFalseNegative - 2 * t.dSquaredError)
                coefficients[index].offset = k * t.dFalsePositive
                coefficients[index].predScale = k * 2 * t.dSquaredError
            }
            loss += options.regionWeight * (region * scale)
        }
        return FinalizedLoss(loss: loss, scores: scores, coefficients: coefficients)
    }

    /// A segment's score, its region loss and the loss's partial derivatives by its sums.
    struct RegionTerms {
        var score = 0.0
        var loss = 0.0
        var dTruePositive = 0.0, dFalsePositive = 0.0, dFalseNegative = 0.0, dSquaredError = 0.0

        init() {}
        /// A segment counted with loss 0 (the zero policy).
        init(score: Double) { self.score = score }
    }

    func regionTerms(_ s: KernelSums) -> RegionTerms {
        var result = RegionTerms()
        let o = options
        // The score is (k·TP + n) / (k·TP + X + d): X from FP and FN, or SQ when squared.
        let k: Double = o.region == .dice || o.region == .none ? 2 : 1
        let (a, b): (Double, Double) = o.region == .tversky ? (o.alpha, o.beta) : (1, 1)
        let x = o.squared ? s.squaredError : a * s.falsePositive + b * s.falseNegative
        let numerator = k * s.truePositive + o.smoothNr
        let denominator = k * s.truePositive + x + o.smoothDr
        var oneMinusScore: Double, dScoreDTruePositive: Double, dScoreDX: Double
        if denominator >= o.denominatorMin {
            result.score = numerator / denominator
            // 1 - score = (D - N) / D with D - N = X + d - n: no cancellation near score 1.
            oneMinusScore = (x + o.smoothDr - o.smoothNr) / denominator
            dScoreDTruePositive = k * oneMinusScore / denominator
            dScoreDX = -numerator / (denominator * denominator)
        } else {
            result.score = numerator / o.denominatorMin
            oneMinusScore = 1 - result.score
            dScoreDTruePositive = k / o.denominatorMin
            dScoreDX = 0
        }
        var dLossDScore: Double
        if o.logLoss {
            if result.score >= o.logMin {
                result.loss = -log1pOf(-oneMinusScore)
                dLossDScore = -1 / result.score
            } else {
                result.loss = -logOf(o.logMin)
                dLossDScore = 0
            }
        } else if o.gamma == 1 {
            result.loss = oneMinusScore
            dLossDScore = -1
        } else {
            let q = max(oneMinusScore, 0)
            result.loss = powOf(q, o.gamma)
            dLossDScore = q > 0 ? -o.gamma * powOf(q, o.gamma - 1) : 0
        }
        result.dTruePositive = dLossDScore * dScoreDTruePositive
        let dX = dLossDScore * dScoreDX
        if o.squared {
            result.dSquaredError = dX
        } else {
            result.dFalsePositive = a * dX
            result.dFalseNegative = b * dX
        }
        return result
    }

    // MARK: Step 3: gradient

    /// Writes every element's gradient into `grad` (pred's type; may be pred's memory).
    /// With `elementSums`, also returns each segment's element-term sum (the statistics
    /// pass's, bit for bit): a fused call takes them from here, where the logs overlap this
    /// pass's memory traffic. `hardTargets` promises that every valid target is 0 or 1 (a
    /// statistics pass asked to find soft ones found none): the element terms skip the check.
    @discardableResult
    public func gradient(
        _ inputs: TensorInputs, _ finalized: FinalizedLoss, into grad: UnsafeMutableRawPointer,
        elementSums: Bool = false, hardTargets: Bool = false
    ) -> [Double] {
        let channelOptions = elementOptions(bce: elementSums && usesElementTerm, hardTargets: hardTargets)
        let size = shape.predType.size
        let span = { (run: Int, start: Int, count: Int) -> Double in
            level.generalGradient(
                inputs.kernelInput(run: run, start: start, count: count), channelOptions[run % shape.channels],
                finalized.coefficients[segment(ofRun: run)], grad + start &* size)
        }
        guard elementSums && usesElementTerm else {
            let plan = WorkPlan(shape: shape, sameSegment: { a, b in segment(ofRun: a) == segment(ofRun: b) })
            ChunkPlan(chunks: plan.items, threads: threads).forEach(chunksIn: 0..<plan.items) { item in
                plan.forEachSpan(item) { _ = span($0, $1, $2) }
            }
            return [Double](repeating: 0, count: segmentCount)
        }
        return sumBySegment { run, start, count in
            var sums = KernelSums()
            sums.elementSum = span(run, start, count)
            return sums
        }.map(\.elementSum)
    }

    // MARK: The calls

    /// Sums, then the loss: a forward call.
    public func forward(
        _ inputs: TensorInputs, allSums: Bool = true
    ) throws(SegLossError) -> (FinalizedLoss, [KernelSums]) {
        let sums = try statistics(inputs, allSums: allSums)
        return (finalize(sums), sums)
    }

    /// Sums, finalize, gradient: a backward call, or with `withLoss` (and gradLoss 1) a
    /// fused one; without it the element terms are not summed and the loss is not complete.
    /// The element sums come from the gradient pass (the coefficients do not need them), and
    /// the loss is finalized again with them.
    public func backward(
        _ inputs: TensorInputs, gradLoss: Double, into grad: UnsafeMutableRawPointer, withLoss: Bool = true,
        allSums: Bool = true
    ) throws(SegLossError) -> (FinalizedLoss, [KernelSums]) {
        // A fused call's statistics pass finds whether any target is soft, which its
        // gradient pass would otherwise check block by block.
        let findSoftTargets = withLoss && elementTermChecksTargets
        var sums = try statistics(inputs, elementTerms: false, allSums: allSums, findSoftTargets: findSoftTargets)
        var finalized = finalize(sums, gradLoss: gradLoss)
        let elementSums = gradient(
            inputs, finalized, into: grad, elementSums: withLoss,
            hardTargets: findSoftTargets && !sums.contains { $0.softTargets })
        if withLoss && usesElementTerm {
            for index in sums.indices { sums[index].elementSum = elementSums[index] }
            finalized.loss = finalize(sums, gradLoss: gradLoss).loss
        }
        return (finalized, sums)
    }
}

/// The fixed split of a call's elements into work items, from the shape alone (never the
/// thread count). A run (one sample's channel, `spatial` elements) of at least a chunk is cut
/// into chunk-long pieces, one item each; shorter runs are grouped, whole, into items of up
/// to a chunk. Each item is a list of spans, each inside one run; consecutive runs of one
/// segment and one channel (a single-channel tensor) make one span.
struct WorkPlan {
    let runs: Int
    let spatial: Int
    /// The call's chunk length (ChunkPlan.chunkLength).
    let chunk: Int
    let singleChannel: Bool
    let piecesPerRun: Int   // > 0 for long runs
    let runsPerItem: Int    // > 0 for short runs
    let items: Int
    let sameSegment: (Int, Int) -> Bool

    init(shape: TensorShape, sameSegment: @escaping (Int, Int) -> Bool) {
        let chunk = ChunkPlan.chunkLength(count: shape.count)
        self.chunk = chunk
        runs = shape.runs
        spatial = shape.spatial
        singleChannel = shape.channels == 1
        self.sameSegment = sameSegment
        if spatial >= chunk {
            piecesPerRun = (spatial &- 1) / chunk &+ 1
            runsPerItem = 0
            items = runs &* piecesPerRun
        } else {
            piecesPerRun = 0
            runsPerItem = chunk / spatial
            items = (runs &- 1) / runsPerItem &+ 1
        }
    }

    /// The most records (segments in a row) an item's statistics can have.
    var maximumRecordsPerItem: Int { piecesPerRun > 0 ? 1 : runsPerItem }

    /// Calls `body(run, start, count)` for each span of item `item`, in element order.
    @inline(__always)
    func forEachSpan(_ item: Int, _ body: (Int, Int, Int) -> Void) {
        if piecesPerRun > 0 {
            let run = item / piecesPerRun
            let piece = item &- run &* piecesPerRun
            let offset = piece &* chunk
            body(run, run &* spatial &+ offset, min(chunk, spatial &- offset))
            return
        }
        let firstRun = item &* runsPerItem
        let lastRun = min(firstRun &+ runsPerItem, runs)
        var spanRun = firstRun
        var run = firstRun &+ 1
        while run <= lastRun {
            if run == lastRun || !(singleChannel && sameSegment(spanRun, run)) {
                body(spanRun, spanRun &* spatial, (run &- spanRun) &* spatial)
                spanRun = run
            }
            run &+= 1
        }
    }
}

// The C library's double functions, for finalize (a handful of calls per segment).
@inline(__always) func logOf(_ x: Double) -> Double { log(x) }
@inline(__always) func log1pOf(_ x: Double) -> Double { log1p(x) }
@inline(__always) func powOf(_ x: Double, _ y: Double) -> Double { pow(x, y) }
