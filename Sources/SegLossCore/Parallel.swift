// Parallel — the worker-thread count and the deterministic chunked driver.
import CPUFeatures
import Synchronization

/// The process-wide worker-thread setting: the only global state of the library.
public enum WorkerThreads {
    /// The most workers a call uses.
    public static let maximum = 256

    private static let setting = Atomic<Int>(0)  // 0: the default

    /// SEGLOSS_NUM_THREADS when it is a positive integer, else the CPUs this process may use.
    public static let defaultCount: Int = {
        if let text = environmentValue("SEGLOSS_NUM_THREADS"),
           let value = Int(text.trimmingSpaces), value > 0 {
            return min(value, maximum)
        }
        return min(Int(segloss_available_cpus()), maximum)
    }()

    /// The count calls use now, at least 1.
    public static var count: Int {
        let value = setting.load(ordering: .relaxed)
        return value > 0 ? value : defaultCount
    }

    /// Sets the count; n <= 0 restores the default, values above `maximum` are capped.
    public static func set(_ n: Int) {
        setting.store(n > 0 ? min(n, maximum) : 0, ordering: .relaxed)
    }
}

extension String {
    fileprivate var trimmingSpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }),
              let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return self[first...last]
    }
}

/// Splits `count` elements into chunks whose boundaries depend on `count` alone, never on
/// the thread count, so each chunk's result is the same whichever thread computes it.
struct ChunkPlan {
    /// Elements per chunk (a multiple of the kernels' block length) of a call over `count`
    /// elements: 16,384, and 65,536 from `longChunksFrom` elements up. Work per chunk beyond
    /// its elements costs little in cache but more at 16M elements, where fewer, longer chunks
    /// made the general logits and batch Dice per channel calls 4-6% faster on two threads
    /// (×0.938-0.960 and ×0.935-0.957 on the benchmark's three layouts, in rounds whose floor
    /// ran fast; 1.5-4% at 4M), while at 1M elements 65,536 left too few chunks to share
    /// (logits 4% slower). From the count alone, so a call's chunks, and so its bits, never
    /// depend on the thread count.
    static func chunkLength(count: Int) -> Int { count >= longChunksFrom ? 65_536 : 16_384 }
    static let longChunksFrom = 1 << 22
    /// Below this many chunks a call stays on the calling thread: waking workers would cost
    /// more than they save.
    static let minimumParallelChunks = 4
    /// Chunk results a parallel statistics pass holds before folding them (bounded scratch:
    /// 1024 partials of a few doubles, tens of kilobytes). Each round is one job of the
    /// worker pool, which ends when its slowest thread does: 16M elements take one round.
    static let roundLength = 1024

    let count: Int
    /// 0 in a plan made over the caller's work items (`init(chunks:)`), which has no ranges.
    let chunkLength: Int
    let chunks: Int
    let workers: Int

    init(count: Int, threads: Int = WorkerThreads.count) {
        self.count = count
        self.chunkLength = Self.chunkLength(count: count)
        self.chunks = (count &+ (chunkLength &- 1)) / chunkLength
        self.workers = chunks < Self.minimumParallelChunks ? 1 : min(threads, chunks)
    }

    /// A plan over `chunks` work items of about a chunk's elements each, made by the caller.
    init(chunks: Int, threads: Int = WorkerThreads.count) {
        self.count = 0
        self.chunkLength = 0
        self.chunks = chunks
        self.workers = chunks < Self.minimumParallelChunks ? 1 : min(threads, chunks)
    }

    /// The element range of chunk `index`.
    func range(_ index: Int) -> Range<Int> {
        let start = index &* chunkLength
        return start..<min(start &+ chunkLength, count)
    }

    /// Computes `chunk(i)` for every chunk on up to `workers` threads and hands each result
    /// to `fold` in chunk order, on the calling thread: whatever the thread count, the fold
    /// sees the same values in the same order. Results wait in a round of `roundLength`
    /// slots on the stack, so the scratch is bounded whatever the count.
    func reduceInOrder<Partial>(_ chunk: (Int) -> Partial, _ fold: (Int, Partial) -> Void) {
        withUnsafeTemporaryAllocation(of: Partial.self, capacity: Self.roundLength) { slots in
            let base = slots.baseAddress!
            var first = 0
            while first < chunks {
                let round = first..<min(first &+ Self.roundLength, chunks)
                forEach(chunksIn: round) { index in
                    (base + (index &- round.lowerBound)).initialize(to: chunk(index))
                }
                for index in round {
                    fold(index, (base + (index &- round.lowerBound)).move())
                }
                first = round.upperBound
            }
        }
    }

    /// Calls `body` once per chunk, on up to `workers` threads, in no particular order.
    func forEachChunk(_ body: (Int) -> Void) {
        forEach(chunksIn: 0..<chunks, body)
    }

    /// Calls `body(i)` for every chunk index in `indices`, on up to `workers` threads, in no
    /// particular order; which thread runs a chunk never changes the chunk's result.
    ///
    /// Chunks are handed out from an atomic counter in runs of consecutive chunks, a run
    /// being a share of what is left (guided scheduling): large runs at first, so that each
    /// thread streams through contiguous memory, which the CPU's prefetchers follow across
    /// chunk boundaries (one chunk at a time, two threads would take turns and each would
    /// skip ahead every chunk); single chunks at the end, so a thread that starts late or runs
    /// slow takes fewer and the threads finish together.
    ///
    /// Always in ascending order. Handing out one pass's chunks from the top down, so that
    /// the gradient pass starts on chunks the statistics pass left in the L3 cache (bits
    /// unchanged, as results are folded by index), was slower at 16M elements on two threads
    /// in the rounds whose floor ran fast, on each of the benchmark's three layouts: the
    /// logits call 1-4%, batch Dice per channel 2-3% (either pass reversed; 300 rounds
    /// interleaved with the code before; within 1% in the other rounds).
    func forEach(chunksIn indices: Range<Int>, _ body: (Int) -> Void) {
        let workerCount = min(workers, indices.count)
        if workerCount <= 1 {
            withDefaultFloatingPoint {
                for index in indices { body(index) }
            }
            return
        }
        let next = Atomic<Int>(indices.lowerBound)
        let end = indices.upperBound
        WorkerPool.shared.run(participants: workerCount) {
            withDefaultFloatingPoint {
                while true {
                    // Another thread may claim chunks between the load and the add: the run's
                    // length is only a heuristic, and the add alone decides which chunks are
                    // this thread's.
                    let left = end &- next.load(ordering: .relaxed)
                    let length = max(1, left / (Self.runShare &* workerCount))
                    let first = next.wrappingAdd(length, ordering: .relaxed).oldValue
                    guard first < end else { return }
                    for index in first..<min(first &+ length, end) { body(index) }
                }
            }
        }
    }

    /// A thread claims 1 / (runShare × threads) of the chunks left at a time (at least one).
    static let runShare = 2
}

/// Runs `body` with the thread's floating-point control (MXCSR / FPCR) at the IEEE default,
/// then restores the thread's own. Each thread has its own control state and a host may have
/// changed it (flush-to-zero from torch.set_flush_denormal or -Ofast code): without this, a
/// subnormal input's terms would depend on which thread, with whose settings, ran its chunk.
@inline(__always)
func withDefaultFloatingPoint(_ body: () -> Void) {
    let saved = segloss_fp_state_get()
    segloss_fp_state_set(segloss_fp_state_default())
    body()
    segloss_fp_state_set(saved)
}
