// KernelScratch — the kernels' block buffers, one set per thread, kept from call to call.
//
// In this module, compiled once, so that the kernel levels (each its own module) share one
// per-thread block rather than one each.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a scratch block records about its own contents, at its start.
public struct ScratchHeader {
    /// The address and byte count of a run of ones (of the type the byte count's kernel
    /// computes in) that the block holds: the general kernels' valid flags of an unmasked
    /// block, which they then need not write again. 0 and 0: none.
    public var onesAddress: Int
    public var onesBytes: Int

    public init(onesAddress: Int = 0, onesBytes: Int = 0) {
        self.onesAddress = onesAddress
        self.onesBytes = onesBytes
    }
}

/// A thread's scratch: allocated on its first kernel call, reused by every later one, freed
/// when the thread exits.
///
/// Why not a buffer per call: a call is one chunk (then always 16,384 elements), and each
/// took its buffers from the heap (Swift's temporary allocation puts more than 1 KB there)
/// and wrote its valid flags anew (2 KB of stores). At 16M elements that cost more than its arithmetic
/// suggests (in cache, under 1%): measured in one process against the per-call buffers,
/// 16M elements, calls interleaved with the builds' order rotated, the logits call took
/// ×0.958–0.968 the time on two threads in the rounds whose floor ran fast (on the three
/// layouts the benchmark times), 3–3.5% less on one thread; batch Dice per channel
/// ×0.954–0.975 and 3.5–5.5% less. (Likely the flags' stores waiting behind the gradient's,
/// whose lines come from memory; without the flags' stores at all, a timing-only build, one
/// thread saved 2% more.)
public enum KernelScratch {
    /// Bytes of buffer space after the header: the general kernels' seven buffers of 512
    /// (generalBlockLength) doubles and a page to place them in (see forEachRunBlock, which
    /// asserts that they fit); the flat kernels use less.
    public static let capacity = 7 * 512 * MemoryLayout<Double>.stride + 4096

    /// The header's place before the buffer space (which starts on a 64-byte line).
    @usableFromInline static let headerBytes = 64

    /// Runs `body` with the calling thread's header and buffer space (`capacity` bytes,
    /// 64-byte aligned). Where the thread cannot have a block of its own (no thread-specific
    /// key left in the process), `body` gets a temporary one with an empty header.
    @inlinable @inline(__always)
    public static func with<Result>(
        _ body: (UnsafeMutablePointer<ScratchHeader>, UnsafeMutableRawPointer) -> Result
    ) -> Result {
        if let block = threadBlock() {
            return body(block.assumingMemoryBound(to: ScratchHeader.self), block + headerBytes)
        }
        return withUnsafeTemporaryAllocation(byteCount: headerBytes &+ capacity, alignment: 64) { storage in
            let block = storage.baseAddress!
            let header = block.bindMemory(to: ScratchHeader.self, capacity: 1)
            header.initialize(to: ScratchHeader())
            return body(header, block + headerBytes)
        }
    }

    /// The calling thread's block, allocated on first use; nil without a key.
    @usableFromInline @inline(never)
    static func threadBlock() -> UnsafeMutableRawPointer? {
        guard let key = scratchKey else { return nil }
        if let block = pthread_getspecific(key) { return block }
        let block = UnsafeMutableRawPointer.allocate(byteCount: headerBytes &+ capacity, alignment: 64)
        block.bindMemory(to: ScratchHeader.self, capacity: 1).initialize(to: ScratchHeader())
        guard pthread_setspecific(key, block) == 0 else {
            block.deallocate()
            return nil
        }
        return block
    }
}

/// The key of the threads' blocks: its destructor frees a thread's block when the thread
/// exits. nil if the process has no key left (then every call takes a temporary block).
private let scratchKey: pthread_key_t? = {
    var key = pthread_key_t()
    #if canImport(Darwin)
    let status = pthread_key_create(&key) { $0.deallocate() }
    #else
    let status = pthread_key_create(&key) { $0?.deallocate() }
    #endif
    return status == 0 ? key : nil
}()
