// GradientKernel — the per-chunk gradient pass (DESIGN §2, step 3).

/// g_i = targetScale·t_i + offset + elementScale·(p_i - t_i) / max(p_i(1 - p_i), 1e-12)
///
/// The first two terms are a region term's (Dice's) derivative, the last is the BCE
/// term's. `grad` may be `pred` itself: each block is computed into a stack buffer and
/// then stored, so an in-place call is as fast as any other and reads every input of a
/// block before writing it.
@inline(never)
public func gradientKernel(
    _ pred: UnsafePointer<Float>, _ target: UnsafePointer<Float>, _ count: Int,
    _ targetScale: Float, _ offset: Float, _ elementScale: Float,
    _ grad: UnsafeMutablePointer<Float>
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * kernelBlockLength) { scratch in
        let block = scratch.baseAddress!
        let paddedPred = block + kernelBlockLength
        let paddedTarget = paddedPred + kernelBlockLength
        var start = 0
        while start < count {
            let length = min(kernelBlockLength, count &- start)
            var p = pred + start
            var t = target + start
            if length < kernelBlockLength {
                paddedPred.initialize(repeating: 0, count: kernelBlockLength)
                paddedTarget.initialize(repeating: 0, count: kernelBlockLength)
                paddedPred.update(from: p, count: length)
                paddedTarget.update(from: t, count: length)
                p = UnsafePointer(paddedPred)
                t = UnsafePointer(paddedTarget)
            }
            for k in 0..<kernelBlockLength {
                let pk = p[k], tk = t[k]
                let variance = pk * (1 - pk)
                let bce = (pk - tk) / (variance > 1e-12 ? variance : 1e-12)
                block[k] = multiplyAdd(targetScale, tk, offset) + elementScale * bce
            }
            (grad + start).update(from: block, count: length)
            start &+= length
        }
    }
}
