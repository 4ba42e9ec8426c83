// StatusTests — every error status through every loss entry point, and the contract that
// outputs are written only on SEGLOSS_OK (every output is pre-filled with a sentinel and
// must still hold it, bit for bit, after an error).
import CSegLoss
import SegLoss
import Testing

/// Scalars that are no valid weight or smooth: negative, NaN (several encodings), infinite.
let invalidNonNegativeScalars: [Float] = [
    -1, -Float.leastNonzeroMagnitude, -Float.greatestFiniteMagnitude, -.infinity, .infinity, .nan, -.nan,
    Float(bitPattern: 0x7F80_0001),  // signaling NaN
]
/// Scalars that are no valid grad_loss: NaN or infinite.
let invalidFiniteScalars: [Float] = [.infinity, -.infinity, .nan, -.nan, Float(bitPattern: 0x7F80_0001)]
/// Elements outside [0, 1] or NaN.
let outOfRangeElements: [Float] = [
    -Float.leastNonzeroMagnitude, -1, Float(1).nextUp, 2, .infinity, -.infinity, .nan, -.nan,
    Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC0_1234),
]

/// A valid input of `count` elements (soft targets, so every code path of the kernels runs).
func validInputs(_ count: Int, seed: UInt32 = 7) -> (pred: [Float], target: [Float]) {
    generatedInputs(seed: seed, count: count, target: .soft)
}

@Suite("Error statuses leave outputs untouched")
struct StatusTests {
    static let small = validInputs(16)

    @Test("NULL pointers give SEGLOSS_ERROR_NULL_POINTER", arguments: LossFunction.allCases)
    func nullPointers(function: LossFunction) {
        var (pred, target) = Self.small
        var loss = sentinel
        var grad = [Float](repeating: sentinel, count: pred.count)
        let n = pred.count
        pred.withUnsafeMutableBufferPointer { p in
            target.withUnsafeMutableBufferPointer { t in
                grad.withUnsafeMutableBufferPointer { g in
                    let pp = UnsafePointer(p.baseAddress!), tp = UnsafePointer(t.baseAddress!)
                    var calls: [(String, segloss_status)] = [
                        ("pred NULL", function.call(nil, tp, n, loss: &loss, grad: g.baseAddress)),
                        ("target NULL", function.call(pp, nil, n, loss: &loss, grad: g.baseAddress)),
                        ("both inputs NULL", function.call(nil, nil, n, loss: &loss, grad: g.baseAddress)),
                    ]
                    if function.writesLoss {
                        calls.append(("loss NULL", function.call(pp, tp, n, loss: nil, grad: g.baseAddress)))
                    }
                    if function.writesGradient {
                        calls.append(("grad_pred NULL", function.call(pp, tp, n, loss: &loss, grad: nil)))
                    }
                    calls.append(("everything NULL", function.call(nil, nil, n, loss: nil, grad: nil)))
                    for (what, status) in calls {
                        #expect(status == SEGLOSS_ERROR_NULL_POINTER, "\(what): \(statusName(status))")
                    }
                }
            }
        }
        #expect(loss.bitPattern == sentinel.bitPattern)
        #expect(grad.allSatisfy { $0.bitPattern == sentinel.bitPattern })
        // Sanity: the same call with every pointer valid succeeds and writes.
        let ok = function.call(pred: pred, target: target)
        #expect(ok.status == SEGLOSS_OK)
        #expect(function.writesLoss ? !ok.lossUntouched : ok.lossUntouched)
        #expect(function.writesGradient ? !ok.gradUntouched : ok.gradUntouched)
    }

    @Test("count 0 gives SEGLOSS_ERROR_EMPTY_INPUT", arguments: LossFunction.allCases)
    func emptyInput(function: LossFunction) {
        let (pred, target) = Self.small
        let r = function.call(pred: pred, target: target, count: 0)
        #expect(r.status == SEGLOSS_ERROR_EMPTY_INPUT, "\(statusName(r.status))")
        #expect(r.lossUntouched && r.gradUntouched)
    }

    /// A size_t no buffer can have: SIZE_MAX, PTRDIFF_MAX, PTRDIFF_MAX / 4 + 1 (the first count
    /// whose byte size exceeds PTRDIFF_MAX), 2^63. The buffers passed are small: the library
    /// must reject the count before touching them.
    @Test("a count too large for any buffer gives SEGLOSS_ERROR_COUNT_TOO_LARGE", arguments: LossFunction.allCases)
    func countTooLarge(function: LossFunction) {
        let (pred, target) = Self.small
        for count in [Int(bitPattern: UInt.max), Int.max, Int.max / 4 + 1, Int.min, Int(bitPattern: UInt.max - 3)] {
            let r = function.call(pred: pred, target: target, count: count)
            #expect(r.status == SEGLOSS_ERROR_COUNT_TOO_LARGE, "count \(UInt(bitPattern: count)): \(statusName(r.status))")
            #expect(r.lossUntouched && r.gradUntouched)
        }
    }

    @Test("negative, NaN or infinite smooth and weights give SEGLOSS_ERROR_INVALID_ARGUMENT",
          arguments: LossFunction.allCases.filter(\.takesSmooth))
    func invalidSmoothAndWeights(function: LossFunction) {
        let (pred, target) = Self.small
        for bad in invalidNonNegativeScalars {
            var attempts: [(String, CallResult)] = [("smooth \(bad)", function.call(pred: pred, target: target, smooth: bad))]
            if function.takesWeights {
                attempts.append(("weight_bce \(bad)", function.call(pred: pred, target: target, weightBCE: bad)))
                attempts.append(("weight_dice \(bad)", function.call(pred: pred, target: target, weightDice: bad)))
            }
            for (what, r) in attempts {
                #expect(r.status == SEGLOSS_ERROR_INVALID_ARGUMENT, "\(function.rawValue) \(what): \(statusName(r.status))")
                #expect(r.lossUntouched && r.gradUntouched, "\(function.rawValue) \(what) wrote an output")
            }
        }
    }

    @Test("a NaN or infinite grad_loss gives SEGLOSS_ERROR_INVALID_ARGUMENT",
          arguments: LossFunction.allCases.filter(\.takesGradLoss))
    func invalidGradLoss(function: LossFunction) {
        let (pred, target) = Self.small
        for bad in invalidFiniteScalars {
            let r = function.call(pred: pred, target: target, gradLoss: bad)
            #expect(r.status == SEGLOSS_ERROR_INVALID_ARGUMENT, "grad_loss \(bad): \(statusName(r.status))")
            #expect(r.gradUntouched)
        }
    }

    /// The edges of the scalar domains are valid: 0, -0.0 (>= 0 in IEEE), the largest finite
    /// float, a negative or zero grad_loss. -0.0 gives the same result as 0.
    @Test("edge scalars are valid", arguments: LossFunction.allCases)
    func edgeScalarsValid(function: LossFunction) {
        let (pred, target) = Self.small
        let reference = function.call(pred: pred, target: target, weightBCE: 0.5, weightDice: 0.5, smooth: 0, gradLoss: 1)
        #expect(reference.status == SEGLOSS_OK)
        let negativeZero = function.call(pred: pred, target: target, weightBCE: 0.5, weightDice: 0.5, smooth: -0.0, gradLoss: 1)
        #expect(negativeZero.status == SEGLOSS_OK)
        #expect(negativeZero.loss == reference.loss && negativeZero.grad == reference.grad)
        let variants: [(String, CallResult)] = [
            ("weights 0", function.call(pred: pred, target: target, weightBCE: 0, weightDice: 0)),
            ("weights -0", function.call(pred: pred, target: target, weightBCE: -0.0, weightDice: -0.0)),
            ("huge smooth", function.call(pred: pred, target: target, smooth: .greatestFiniteMagnitude)),
            ("grad_loss 0", function.call(pred: pred, target: target, gradLoss: 0)),
            ("grad_loss -0", function.call(pred: pred, target: target, gradLoss: -0.0)),
            ("grad_loss -1e30", function.call(pred: pred, target: target, gradLoss: -1e30)),
        ]
        for (what, r) in variants {
            #expect(r.status == SEGLOSS_OK, "\(what): \(statusName(r.status))")
            if function.writesLoss { #expect(r.loss.isFinite, "\(what): loss \(r.loss)") }
        }
    }

    /// Out-of-range and NaN elements, each alone in an otherwise valid 65_537-element buffer
    /// (5 chunks of 16384, so the parallel path, and a one-element last chunk), at the first
    /// position, block and chunk boundaries, the middle and the last position. (Every
    /// out-of-range value is tried in the short buffers below.)
    @Test("pred/target outside [0, 1] or NaN give PRED/TARGET_OUT_OF_RANGE", arguments: LossFunction.allCases)
    func outOfRange(function: LossFunction) {
        let count = 65_537
        let (pred, target) = validInputs(count)
        for position in [0, 256, 16_383, 16_384, 32_768, count - 1] {
            for value in [Float.nan, Float(1).nextUp] {
                for inTarget in [false, true] {
                    var p = pred, t = target
                    if inTarget { t[position] = value } else { p[position] = value }
                    let r = function.call(pred: p, target: t)
                    let expected = inTarget ? SEGLOSS_ERROR_TARGET_OUT_OF_RANGE : SEGLOSS_ERROR_PRED_OUT_OF_RANGE
                    let what = "\(inTarget ? "target" : "pred")[\(position)] = \(value)"
                    #expect(r.status == expected, "\(what): \(statusName(r.status))")
                    #expect(r.lossUntouched && r.gradUntouched, "\(what): an output was written")
                }
            }
        }
    }

    /// Every out-of-range value (negative tiny, -1, just above 1, 2, +-inf, NaNs of both signs,
    /// a signaling NaN, a NaN payload) in short buffers: count 1, and counts 257 and 300 with
    /// the bad element in the zero-padded last block.
    @Test("out-of-range elements in short buffers and padded blocks", arguments: LossFunction.allCases)
    func outOfRangeShort(function: LossFunction) {
        for (count, position) in [(1, 0), (257, 256), (257, 0), (300, 299)] {
            let (pred, target) = validInputs(count)
            for value in outOfRangeElements {
                for inTarget in [false, true] {
                    var p = pred, t = target
                    if inTarget { t[position] = value } else { p[position] = value }
                    let r = function.call(pred: p, target: t)
                    let expected = inTarget ? SEGLOSS_ERROR_TARGET_OUT_OF_RANGE : SEGLOSS_ERROR_PRED_OUT_OF_RANGE
                    #expect(r.status == expected, "count \(count), \(inTarget ? "target" : "pred")[\(position)] = \(value): \(statusName(r.status))")
                    #expect(r.lossUntouched && r.gradUntouched)
                }
            }
        }
    }

    @Test("pred and target both out of range: one of the two statuses, outputs untouched",
          arguments: LossFunction.allCases)
    func bothOutOfRange(function: LossFunction) {
        var (pred, target) = validInputs(20_000)
        pred[19_999] = .nan
        target[3] = -1
        let r = function.call(pred: pred, target: target)
        #expect(r.status == SEGLOSS_ERROR_PRED_OUT_OF_RANGE || r.status == SEGLOSS_ERROR_TARGET_OUT_OF_RANGE,
                "\(statusName(r.status))")
        #expect(r.lossUntouched && r.gradUntouched)
    }

    /// -0.0 is in [0, 1]: valid anywhere, and it gives the same result as +0.0.
    @Test("-0.0 in pred or target is valid, at the first, a middle and the last position",
          arguments: LossFunction.allCases)
    func negativeZeroIsValid(function: LossFunction) {
        let count = 70_003
        var (pred, target) = validInputs(count)
        let positions = [0, 16_384, 35_001, count - 1]
        for i in positions { pred[i] = 0; target[i] = 0 }
        let reference = function.call(pred: pred, target: target)
        #expect(reference.status == SEGLOSS_OK)
        for inTarget in [false, true] {
            var p = pred, t = target
            for i in positions {
                if inTarget { t[i] = -0.0 } else { p[i] = -0.0 }
            }
            let r = function.call(pred: p, target: t)
            #expect(r.status == SEGLOSS_OK, "-0.0 in \(inTarget ? "target" : "pred"): \(statusName(r.status))")
            if function.writesLoss { #expect(r.loss == reference.loss) }
            if function.writesGradient { #expect(r.grad == reference.grad) }
        }
    }

    /// Several errors at once: never SEGLOSS_OK, never an output written.
    @Test("combined errors never succeed", arguments: LossFunction.allCases)
    func combinedErrors(function: LossFunction) {
        var (pred, target) = Self.small
        pred[0] = .nan
        let attempts: [CallResult] = [
            function.call(pred: pred, target: target, count: 0, smooth: .nan, gradLoss: .nan),
            function.call(pred: pred, target: target, count: Int(bitPattern: UInt.max), smooth: -1),
            function.call(pred: pred, target: target, weightBCE: -1, smooth: .infinity, gradLoss: .infinity),
        ]
        for r in attempts {
            #expect(r.status != SEGLOSS_OK)
            #expect(r.lossUntouched && r.gradUntouched)
        }
        var loss = sentinel
        let status = function.call(nil, nil, 0, smooth: .nan, gradLoss: .nan, loss: &loss, grad: nil)
        #expect(status != SEGLOSS_OK)
        #expect(loss.bitPattern == sentinel.bitPattern)
    }

    /// The header: a term whose weight is 0 is left out, not multiplied by 0, so weight_dice = 0
    /// keeps the loss and gradient finite where the Dice ratio is 0/0.
    @Test("a zero weight leaves its term out (Dice 0/0 with weight_dice = 0 stays finite)")
    func zeroWeightLeavesTermOut() {
        let zeros = [Float](repeating: 0, count: 9)
        for function in [LossFunction.bceDiceForward, .bceDiceBackward, .bceDiceForwardBackward] {
            let r = function.call(pred: zeros, target: zeros, weightBCE: 0.5, weightDice: 0, smooth: 0)
            #expect(r.status == SEGLOSS_OK)
            if function.writesLoss { #expect(r.loss == 0, "\(function.rawValue): loss \(r.loss)") }
            if function.writesGradient {
                #expect(r.grad.allSatisfy { $0 == 0 }, "\(function.rawValue): gradient \(r.grad)")
            }
        }
        // And the Dice part alone is still NaN there: the zero weight is what saves it.
        let nan = LossFunction.bceDiceForward.call(pred: zeros, target: zeros, weightBCE: 0.5, weightDice: 0.5, smooth: 0)
        #expect(nan.status == SEGLOSS_OK && nan.loss.isNaN)
    }

    /// smooth 0 with pred and target all zero is 0/0: the loss is NaN, as the header says
    /// (and as PyTorch gives), with status OK.
    @Test("Dice with smooth 0 on all-zero inputs is NaN with SEGLOSS_OK")
    func diceZeroOverZero() {
        let zeros = [Float](repeating: 0, count: 5)
        let r = LossFunction.diceForward.call(pred: zeros, target: zeros, smooth: 0)
        #expect(r.status == SEGLOSS_OK)
        #expect(r.loss.isNaN)
    }
}
