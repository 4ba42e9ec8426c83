// VectorTests — every case of the shared vectors (Tests/vectors/vectors.json) through every
// loss entry point of the C API, against the float64 reference.
//
// Tolerances
//   Loss: relative error <= 1e-6 (the header's promise), for every case, including the
//   near-perfect one whose Dice loss is ~1e-4, and exactly 0 where the reference is 0.
//   Gradient element i: |got - ref| <= 1e-5 |ref| + atol_i with
//       atol_i = 16 * 2^-24 * (|a t_i| + |b| + |c e'_i|),
//   the float32 rounding of the terms the library adds (g_i = a t_i + b + c e'_i, a and b
//   the Dice coefficients -2/D and (2I+s)/D^2 scaled by weight_dice * grad_loss, c e'_i the
//   scaled BCE derivative). The sums P, T, I are accumulated in float32 lanes of 8 terms
//   before widening (StatisticsKernel: below 8 ulp), a and b are then rounded to float32,
//   and e'_i = (p - t) / max(p(1-p), 1e-12) takes about four float32 roundings: 16 ulps of
//   the largest term bounds the sum. The atol matters only where the terms cancel (soft
//   targets near (1 - Dice) / 2, BCE against Dice); everywhere else rtol 1e-5 decides.
import CSegLoss
import SegLoss
import Testing

@Suite("Shared test vectors")
struct VectorTests {
    @Test("vectors.json loads and holds the required cases")
    func fileLoads() throws {
        let cases = try Vectors.loaded.get()
        #expect(cases.count >= 15)
        let names = Set(cases.map(\.name))
        for required in ["worked_example", "single_element", "near_perfect_1000", "extremes_hard_targets",
                         "extremes_soft_targets", "generated_hard_1000003", "generated_soft_1000003"] {
            #expect(names.contains(required), "missing case \(required)")
        }
    }

    /// The worked example of the design, as PyTorch (float32) prints it: an anchor that does
    /// not depend on the generator.
    @Test("worked example matches PyTorch's printed values")
    func workedExample() {
        let pred: [Float] = [0.9, 0.1, 0.8, 0.7], target: [Float] = [1, 0, 1, 1]
        let dice = LossFunction.diceForward.call(pred: pred, target: target, smooth: 1)
        #expect(dice.status == SEGLOSS_OK)
        #expect(abs(dice.loss - 0.10769230) <= 1e-7)
        let both = LossFunction.bceDiceForwardBackward.call(pred: pred, target: target)
        #expect(both.status == SEGLOSS_OK)
        #expect(abs(both.loss - 0.15266359) <= 1e-7)
        let expected: [Float] = [-0.22409600, 0.20752795, -0.24145710, -0.26377853]
        for i in 0..<4 {
            #expect(abs(both.grad[i] - expected[i]) <= 1e-5 * abs(expected[i]), "element \(i)")
        }
    }

    @Test("losses: relative error <= 1e-6", arguments: Vectors.names)
    func losses(name: String) throws {
        let c = try Vectors.named(name)
        let checks: [(LossFunction, Double)] = [
            (.diceForward, c.diceLoss), (.bceForward, c.bceLoss), (.bceDiceForward, c.bceDiceLoss),
            (.bceDiceForwardBackward, c.bceDiceLoss),
        ]
        for (function, expected) in checks {
            let r = function.call(pred: c.pred, target: c.target,
                                  weightBCE: c.weightBCE, weightDice: c.weightDice, smooth: c.smooth)
            #expect(r.status == SEGLOSS_OK, "\(function.rawValue): \(statusName(r.status))")
            let error = relativeError(Double(r.loss), expected)
            #expect(error <= 1e-6, "\(name) \(function.rawValue): got \(r.loss), expected \(expected), relative error \(error)")
        }
    }

    @Test("gradients: rtol 1e-5 plus float32 rounding of the summed terms", arguments: Vectors.names)
    func gradients(name: String) throws {
        let c = try Vectors.named(name)
        let sums = InputSums(pred: c.pred, target: c.target)
        let smooth = Double(c.smooth)
        let denominator = sums.predSum + sums.targetSum + smooth
        let diceOffset = (2 * sums.intersection + smooth) / (denominator * denominator)
        let gl = Double(c.gradLoss)

        struct Check {
            var function: LossFunction
            var expected: [Double]
            var diceScale: Double  // weight_dice * grad_loss of this call
            var bceTerm: [Double]  // |the BCE part| of the expected gradient
        }
        let checks = [
            Check(function: .diceBackward, expected: c.diceGrad, diceScale: abs(gl),
                  bceTerm: c.bceGrad.map { _ in 0 }),
            Check(function: .bceBackward, expected: c.bceGrad, diceScale: 0, bceTerm: c.bceGrad.map(abs)),
            Check(function: .bceDiceBackward, expected: c.bceDiceGrad,
                  diceScale: Double(c.weightDice) * abs(gl),
                  bceTerm: c.bceGrad.map { abs(Double(c.weightBCE) * $0) }),
            // grad_loss = 1 in the fused call: the reference divided by grad_loss.
            Check(function: .bceDiceForwardBackward, expected: c.bceDiceGrad.map { $0 / gl },
                  diceScale: Double(c.weightDice),
                  bceTerm: c.bceGrad.map { abs(Double(c.weightBCE) * $0 / gl) }),
        ]
        for check in checks {
            let r = check.function.call(pred: c.pred, target: c.target, weightBCE: c.weightBCE,
                                        weightDice: c.weightDice, smooth: c.smooth, gradLoss: c.gradLoss)
            #expect(r.status == SEGLOSS_OK, "\(check.function.rawValue): \(statusName(r.status))")
            // Every element written, none NaN.
            let unwritten = r.grad.firstIndex { $0.bitPattern == sentinel.bitPattern || $0.isNaN }
            #expect(unwritten == nil, "\(name) \(check.function.rawValue): element \(unwritten ?? -1) not written or NaN")

            var worst: (excess: Double, index: Int, got: Float, expected: Double, tolerance: Double)?
            for (k, i) in c.gradIndex.enumerated() {
                let t = Double(c.target[i])
                let terms = check.diceScale * (2 * t / denominator + diceOffset) + check.bceTerm[k]
                let tolerance = 1e-5 * abs(check.expected[k]) + 16 * 0x1p-24 * terms
                let error = abs(Double(r.grad[i]) - check.expected[k])
                if !(error <= tolerance), error / tolerance > (worst?.excess ?? 0) {
                    worst = (error / tolerance, i, r.grad[i], check.expected[k], tolerance)
                }
            }
            #expect(worst == nil, """
                \(name) \(check.function.rawValue): element \(worst?.index ?? -1) got \(worst?.got ?? 0), \
                expected \(worst?.expected ?? 0) (tolerance \(worst?.tolerance ?? 0), \
                \(worst?.excess ?? 0)x over)
                """)
        }
    }

    /// The fused call returns the same loss as the forward and the same gradient as the
    /// backward with grad_loss = 1 (within the tolerances above: both are checked there; here
    /// that they agree with each other to a few float32 ulps).
    @Test("forward_backward agrees with forward and backward", arguments: ["soft_1000", "generated_soft_100003"])
    func fusedAgrees(name: String) throws {
        let c = try Vectors.named(name)
        let fused = LossFunction.bceDiceForwardBackward.call(
            pred: c.pred, target: c.target, weightBCE: c.weightBCE, weightDice: c.weightDice, smooth: c.smooth)
        let forward = LossFunction.bceDiceForward.call(
            pred: c.pred, target: c.target, weightBCE: c.weightBCE, weightDice: c.weightDice, smooth: c.smooth)
        let backward = LossFunction.bceDiceBackward.call(
            pred: c.pred, target: c.target, weightBCE: c.weightBCE, weightDice: c.weightDice, smooth: c.smooth,
            gradLoss: 1)
        #expect(fused.status == SEGLOSS_OK && forward.status == SEGLOSS_OK && backward.status == SEGLOSS_OK)
        #expect(abs(fused.loss - forward.loss) <= 2 * forward.loss.ulp)
        let maxDifference = zip(fused.grad, backward.grad).map { abs($0 - $1) / max(abs($1), Float.leastNormalMagnitude) }.max() ?? 0
        #expect(maxDifference <= 4 * Float.ulpOfOne)
    }
}
