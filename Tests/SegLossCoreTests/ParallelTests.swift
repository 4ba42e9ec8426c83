// ParallelTests — the chunked parallel driver: every chunk runs exactly once whatever the
// thread count, and reduceInOrder folds the chunks' results in chunk order across its rounds.
@testable import SegLossCore
import Synchronization
import Testing

@Suite("Parallel driver")
struct ParallelTests {
    /// Chunk counts around the parallel threshold and across several rounds of results.
    static let chunkCounts = [1, 3, 4, 5, 64, 1000, ChunkPlan.roundLength + 1, 2 * ChunkPlan.roundLength + 7]

    @Test("forEach(chunksIn:) runs each chunk exactly once", arguments: chunkCounts)
    func eachChunkOnce(chunks: Int) {
        for threads in [1, 2, 3, 8] {
            let plan = ChunkPlan(chunks: chunks, threads: threads)
            let runs = Mutex([Int](repeating: 0, count: chunks))
            plan.forEachChunk { index in runs.withLock { $0[index] += 1 } }
            let counts = runs.withLock { $0 }
            #expect(counts.allSatisfy { $0 == 1 }, "threads \(threads): \(counts.enumerated().filter { $0.1 != 1 }.prefix(5))")
        }
    }

    @Test("reduceInOrder folds every chunk's result once, in chunk order", arguments: chunkCounts)
    func foldInOrder(chunks: Int) {
        for threads in [1, 2, 7] {
            let plan = ChunkPlan(chunks: chunks, threads: threads)
            var folded = [Int]()
            var values = [Int]()
            plan.reduceInOrder({ index in index &* 7919 &+ 3 }) { index, value in
                folded.append(index)
                values.append(value)
            }
            #expect(folded == Array(0..<chunks), "threads \(threads)")
            #expect(values == (0..<chunks).map { $0 &* 7919 &+ 3 }, "threads \(threads)")
        }
    }
}
