// BCEDiceLossTests — the loss definition: validation of its parameters, the finalize step
// (value and gradient coefficients from the sums), and the errors of its entry points.
import Foundation
import SegLossCore
import Testing

@Suite("BCEDiceLoss")
struct BCEDiceLossTests {
    static let invalid: [Float] = [
        -1, -Float.leastNonzeroMagnitude, -Float.greatestFiniteMagnitude, .infinity, -.infinity, .nan, -.nan,
        Float(bitPattern: 0x7F80_0001),
    ]

    @Test("init accepts finite non-negative weights and smooth, -0.0 included")
    func validParameters() throws {
        for (wb, wd, s) in [(Float(0), Float(0), Float(0)), (0.5, 0.5, 1), (-0.0, -0.0, -0.0),
                            (.greatestFiniteMagnitude, .leastNonzeroMagnitude, 1e30)] {
            let loss = try BCEDiceLoss(weightBCE: wb, weightDice: wd, smooth: s)
            #expect(loss.weightBCE == Double(wb) && loss.weightDice == Double(wd) && loss.smooth == Double(s))
        }
        let dice = try BCEDiceLoss.dice(smooth: 2)
        #expect(dice.weightBCE == 0 && dice.weightDice == 1 && dice.smooth == 2)
        #expect(BCEDiceLoss.bce.weightBCE == 1 && BCEDiceLoss.bce.weightDice == 0)
    }

    @Test("init rejects a negative, NaN or infinite weight or smooth", arguments: invalid)
    func invalidParameters(bad: Float) {
        #expect(throws: SegLossError.invalidArgument) { try BCEDiceLoss(weightBCE: bad, weightDice: 0.5, smooth: 1) }
        #expect(throws: SegLossError.invalidArgument) { try BCEDiceLoss(weightBCE: 0.5, weightDice: bad, smooth: 1) }
        #expect(throws: SegLossError.invalidArgument) { try BCEDiceLoss(weightBCE: 0.5, weightDice: 0.5, smooth: bad) }
        #expect(throws: SegLossError.invalidArgument) { try BCEDiceLoss.dice(smooth: bad) }
    }

    /// The worked example's sums: p = [0.9, 0.1, 0.8, 0.7], t = [1, 0, 1, 1] (in double).
    static var workedStatistics: Statistics {
        let p = [0.9, 0.1, 0.8, 0.7], t = [1.0, 0, 1, 1]
        var s = Statistics()
        for i in 0..<4 {
            s.intersection += p[i] * t[i]
            s.predSum += p[i]
            s.targetSum += t[i]
            s.mismatch += p[i] * (1 - t[i]) + t[i] * (1 - p[i])
            s.elementSum += -(t[i] * log(p[i]) + (1 - t[i]) * log1p(-p[i]))
        }
        s.count = 4
        return s
    }

    @Test("value: weighted mean BCE plus Dice from the sums")
    func value() throws {
        let s = Self.workedStatistics
        let loss = try BCEDiceLoss(weightBCE: 0.5, weightDice: 0.5, smooth: 1)
        #expect(abs(loss.value(s) - 0.15266359) < 1e-7)
        #expect(abs(try BCEDiceLoss.dice(smooth: 1).value(s) - 0.10769230) < 1e-7)
        #expect(abs(BCEDiceLoss.bce.value(s) - s.elementSum / 4) < 1e-15)
        // Dice = mismatch / (P + T + s): exactly 1 - (2I + s) / D up to rounding.
        let d = s.predSum + s.targetSum + 3
        #expect(abs(try BCEDiceLoss.dice(smooth: 3).value(s) - (1 - (2 * s.intersection + 3) / d)) < 1e-15)
        #expect(try BCEDiceLoss(weightBCE: 0, weightDice: 0, smooth: 1).value(s) == 0)
    }

    @Test("gradient coefficients: Dice's -2/D and (2I+s)/D^2, BCE's 1/N, scaled by weights and grad_loss")
    func gradientCoefficients() throws {
        let s = Self.workedStatistics
        let loss = try BCEDiceLoss(weightBCE: 0.25, weightDice: 2, smooth: 1)
        let c = loss.gradientCoefficients(s, gradLoss: -3)
        let d = s.predSum + s.targetSum + 1
        #expect(c.targetScale == Float(-2 / d * 2 * -3))
        #expect(abs(Double(c.offset) - (2 * s.intersection + 1) / (d * d) * 2 * -3) <= 1e-6 * abs(Double(c.offset)))
        #expect(c.elementScale == Float(0.25 * -3 / 4.0))
        let bceOnly = BCEDiceLoss.bce.gradientCoefficients(s, gradLoss: 1)
        #expect(bceOnly.targetScale == 0 && bceOnly.offset == 0 && bceOnly.elementScale == 0.25)
    }

    @Test("forward, backward, forwardBackward on the worked example; a non-finite grad_loss throws and writes nothing")
    func entryPoints() throws {
        let pred: [Float] = [0.9, 0.1, 0.8, 0.7], target: [Float] = [1, 0, 1, 1]
        let loss = try BCEDiceLoss(weightBCE: 0.5, weightDice: 0.5, smooth: 1)
        let expectedGradient: [Float] = [-0.22409600, 0.20752795, -0.24145710, -0.26377853]
        try pred.withUnsafeBufferPointer { p in
            try target.withUnsafeBufferPointer { t in
                let value = try loss.forward(pred: p, target: t)
                #expect(abs(value - 0.15266359) <= 2e-7)
                var grad = [Float](repeating: 7, count: 4)
                let fused = try grad.withUnsafeMutableBufferPointer { g in
                    try loss.forwardBackward(pred: p, target: t, into: g.baseAddress!)
                }
                #expect(fused == value)
                for i in 0..<4 { #expect(abs(grad[i] - expectedGradient[i]) <= 1e-5 * abs(expectedGradient[i])) }
                var scaled = [Float](repeating: 7, count: 4)
                try scaled.withUnsafeMutableBufferPointer { g in
                    try loss.backward(pred: p, target: t, gradLoss: 2, into: g.baseAddress!)
                }
                for i in 0..<4 { #expect(abs(scaled[i] - 2 * expectedGradient[i]) <= 2e-5 * abs(expectedGradient[i])) }
                for bad: Float in [.nan, .infinity, -.infinity] {
                    var untouched = [Float](repeating: 7, count: 4)
                    #expect(throws: SegLossError.invalidArgument) {
                        try untouched.withUnsafeMutableBufferPointer { g in
                            try loss.backward(pred: p, target: t, gradLoss: bad, into: g.baseAddress!)
                        }
                    }
                    #expect(untouched == [7, 7, 7, 7])
                }
            }
        }
    }

    @Test("SegLossError: stable raw values, one message each")
    func errors() {
        let all: [SegLossError] = [.nullPointer, .emptyInput, .invalidArgument, .predOutOfRange,
                                   .targetOutOfRange, .countTooLarge]
        #expect(all.map(\.rawValue) == [1, 2, 3, 4, 5, 6])
        #expect(Set(all.map(\.description)).count == all.count)
        #expect(SegLossError(rawValue: 99).description == "unknown segloss status")
        #expect(!all.map(\.description).contains("unknown segloss status"))
    }
}
