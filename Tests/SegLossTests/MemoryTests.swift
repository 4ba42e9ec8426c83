// MemoryTests — no call reads or writes outside its `count` elements. Every buffer is put
// against an inaccessible (PROT_NONE) page, once ending exactly at it and once starting
// exactly after one, so that any access past either end faults (and fails the run).
#if os(Linux)
import CSegLoss
import Glibc
import SegLoss
import Testing

/// `count` floats ending exactly at (or starting exactly after) an inaccessible page.
final class GuardedFloats {
    let base: UnsafeMutableRawPointer
    let mappedBytes: Int
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init?(count: Int, againstEnd: Bool) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let dataPages = (count * MemoryLayout<Float>.stride + page - 1) / page
        mappedBytes = (dataPages + 2) * page
        guard let mapped = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapped != MAP_FAILED else { return nil }
        base = mapped
        // [guard page][data pages][guard page]
        guard mprotect(base, page, PROT_NONE) == 0,
              mprotect(base + (dataPages + 1) * page, page, PROT_NONE) == 0 else {
            munmap(base, mappedBytes)
            return nil
        }
        let start = againstEnd
            ? base + (dataPages + 1) * page - count * MemoryLayout<Float>.stride
            : base + page
        pointer = start.bindMemory(to: Float.self, capacity: count)
        self.count = count
    }

    deinit { munmap(base, mappedBytes) }

    func fill(_ values: [Float]) { for i in 0..<count { pointer[i] = values[i] } }
    var values: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

@Suite("Memory bounds")
struct MemoryTests {
    @Test("no access outside [0, count) of pred, target or grad_pred",
          arguments: [1, 5, 255, 256, 257, 16_385, 70_003])
    func guardedBuffers(count: Int) throws {
        let (pred, target) = validInputs(count, seed: 77)
        for againstEnd in [true, false] {
            let p = try #require(GuardedFloats(count: count, againstEnd: againstEnd))
            let t = try #require(GuardedFloats(count: count, againstEnd: againstEnd))
            let g = try #require(GuardedFloats(count: count, againstEnd: againstEnd))
            p.fill(pred)
            t.fill(target)
            for function in LossFunction.allCases {
                var loss = sentinel
                let status = function.call(p.pointer, t.pointer, count, loss: &loss, grad: g.pointer)
                #expect(status == SEGLOSS_OK, "\(function.rawValue): \(statusName(status))")
                if function.writesGradient {
                    #expect(g.values == function.call(pred: pred, target: target).grad)
                    // In place, against the guard page too.
                    p.fill(pred)
                    let inPlace = function.call(p.pointer, t.pointer, count, loss: &loss, grad: p.pointer)
                    #expect(inPlace == SEGLOSS_OK)
                    p.fill(pred)
                }
            }
        }
    }
}
#endif
