// GradientCheckTests — the library's gradients against central finite differences of a
// float64 loss written here from the definitions (torch.nn.BCELoss and the Dice loss), so
// the gradient formula itself is checked, not only its implementation.
import CSegLoss
import Foundation
import SegLoss
import Testing

/// weight_bce * mean BCE + weight_dice * Dice, in float64, straight from the definitions.
func float64Loss(_ p: [Double], _ t: [Double], weightBCE: Double, weightDice: Double, smooth: Double) -> Double {
    var intersection = 0.0, predSum = 0.0, targetSum = 0.0, bce = 0.0
    for i in p.indices {
        intersection += p[i] * t[i]
        predSum += p[i]
        targetSum += t[i]
        bce += -(t[i] * max(Foundation.log(p[i]), -100) + (1 - t[i]) * max(Foundation.log1p(-p[i]), -100))
    }
    let dice = 1 - (2 * intersection + smooth) / (predSum + targetSum + smooth)
    return weightBCE * bce / Double(p.count) + weightDice * dice
}

@Suite("Finite differences")
struct GradientCheckTests {
    struct Setting: Sendable, CustomTestStringConvertible {
        var function: LossFunction
        var weightBCE: Float, weightDice: Float, smooth: Float, gradLoss: Float
        var testDescription: String {
            "\(function.rawValue) wb=\(weightBCE) wd=\(weightDice) s=\(smooth) gl=\(gradLoss)"
        }
        /// The weights the function actually applies.
        var effectiveWeights: (bce: Double, dice: Double) {
            switch function {
            case .diceBackward: return (0, 1)
            case .bceBackward: return (1, 0)
            default: return (Double(weightBCE), Double(weightDice))
            }
        }
        var effectiveGradLoss: Double { function == .bceDiceForwardBackward ? 1 : Double(gradLoss) }
    }

    static let settings: [Setting] = [
        Setting(function: .diceBackward, weightBCE: 0, weightDice: 0, smooth: 1, gradLoss: 1),
        Setting(function: .diceBackward, weightBCE: 0, weightDice: 0, smooth: 0, gradLoss: -2.5),
        Setting(function: .bceBackward, weightBCE: 0, weightDice: 0, smooth: 0, gradLoss: 1),
        Setting(function: .bceBackward, weightBCE: 0, weightDice: 0, smooth: 0, gradLoss: 3),
        Setting(function: .bceDiceBackward, weightBCE: 0.5, weightDice: 0.5, smooth: 1, gradLoss: 1),
        Setting(function: .bceDiceBackward, weightBCE: 0.6, weightDice: 0.9, smooth: 0.5, gradLoss: -1.7),
        Setting(function: .bceDiceForwardBackward, weightBCE: 0.3, weightDice: 1.4, smooth: 2, gradLoss: 1),
    ]

    /// Central differences with step h = 1e-6 on 40 float32 predictions in [0.05, 0.95]
    /// (soft targets, a few hard ones). In float64 the truncation error h^2/6 |L'''| and the
    /// rounding error ~1e-16 |L| / h are below 1e-8 of the gradient. The library computes in
    /// float32: |lib - fd| <= 1e-5 |fd| + 1e-6 max|fd|, where the 1e-6 max|fd| absorbs the
    /// float32 rounding of the Dice coefficients where the terms of an element cancel.
    @Test("library gradient equals float64 central differences", arguments: settings)
    func centralDifferences(setting: Setting) {
        let count = 40
        var rng = XorShift32(seed: 2024)
        var pred = [Float](), target = [Float]()
        for i in 0..<count {
            pred.append(0.05 + 0.9 * rng.unit())
            target.append(i % 7 == 0 ? Float(i % 2) : rng.unit())
        }
        let r = setting.function.call(pred: pred, target: target, weightBCE: setting.weightBCE,
                                      weightDice: setting.weightDice, smooth: setting.smooth,
                                      gradLoss: setting.gradLoss)
        #expect(r.status == SEGLOSS_OK)

        let p = pred.map(Double.init), t = target.map(Double.init)
        let (wb, wd) = setting.effectiveWeights
        let s = Double(setting.smooth), gl = setting.effectiveGradLoss
        let h = 1e-6
        var differences = [Double]()
        for i in 0..<count {
            var up = p, down = p
            up[i] += h
            down[i] -= h
            let lossUp = float64Loss(up, t, weightBCE: wb, weightDice: wd, smooth: s)
            let lossDown = float64Loss(down, t, weightBCE: wb, weightDice: wd, smooth: s)
            differences.append(gl * (lossUp - lossDown) / (2 * h))
        }
        let scale = differences.map(abs).max() ?? 0
        #expect(scale > 0)
        for i in 0..<count {
            let error = abs(Double(r.grad[i]) - differences[i])
            #expect(error <= 1e-5 * abs(differences[i]) + 1e-6 * scale,
                    "element \(i) (p \(pred[i]), t \(target[i])): library \(r.grad[i]), finite difference \(differences[i])")
        }
        if setting.function == .bceDiceForwardBackward {
            let expected = float64Loss(p, t, weightBCE: wb, weightDice: wd, smooth: s)
            #expect(relativeError(Double(r.loss), expected) <= 1e-6)
        }
    }
}
