// WorkerPool — persistent worker threads that run one pass's chunks beside the caller.
import CPUFeatures
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs `body` on the calling thread and on up to `participants - 1` pool threads at once,
/// and returns when every copy has returned. The body shares out its work itself (the chunk
/// driver hands out chunk indices from an atomic counter), so it is correct whatever number
/// of threads actually joins.
///
/// Why not Dispatch's concurrentPerform: its workers are woken per call, which took 30–100 µs
/// here, as long as a whole pass over 65,536 elements; and a call whose second worker came
/// late ran at one thread's speed. Pool threads spin briefly after a job (a call's statistics
/// pass is followed at once by its gradient pass, and training steps call back to back) and
/// then sleep on a condition variable, so an idle library costs no CPU.
///
/// A job is posted as one atomic ticket holding its generation and its number of helpers, so
/// a thread reads both consistently: pool thread k may help with a job when k <= helpers. A
/// helper must enter the job through a second atomic word (the job's generation, a closed
/// bit and the count of helpers inside) before it touches it. When the caller has run out of
/// work it closes the job and waits only for the helpers inside: a helper that wakes late
/// finds the job closed and goes back to sleep, and the caller never waits for a thread
/// that has not started. Threads beyond a job's helpers go back to sleep without spinning.
///
/// One job runs at a time; a host thread that finds the pool busy runs its body alone. After
/// fork() the child has none of the pool's threads: a fork handler forgets them.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// How long a helper spins for the next job, or the caller for its helpers to leave,
    /// before it sleeps: long enough to catch a call's gradient pass right after its
    /// statistics pass, short enough not to hold a core the host's own threads want.
    private static let spinNanoseconds: UInt64 = 20_000

    /// (generation << 16) | helpers of the job last posted.
    private let ticket = Atomic<UInt64>(0)
    /// The job: written by the caller before it opens `entry`, read by a helper only after
    /// it has entered, and not written again until the job is closed and every helper that
    /// entered has left.
    private var job: (() -> Void)?
    /// (generation << 32) | closed << 31 | helpers inside the job.
    private let entry = Atomic<UInt64>(0)
    private static let closedBit: UInt64 = 1 << 31
    private static let insideMask: UInt64 = (1 << 31) - 1
    private let busy = Atomic<Bool>(false)

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let jobPosted = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let jobDone = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Pool threads started so far (guarded by `mutex`); thread k is helper number k.
    private var threads = 0

    private init() {
        initializeLocks()
        // The child of a fork() has only the forking thread: forget the pool's threads and
        // any job or lock that was in flight.
        _ = segloss_at_fork_child {
            WorkerPool.shared.forgetThreadsAfterFork()
        }
    }

    private func initializeLocks() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(jobPosted, nil)
        pthread_cond_init(jobDone, nil)
    }

    private func forgetThreadsAfterFork() {
        initializeLocks()
        threads = 0
        job = nil
        entry.store(0, ordering: .relaxed)
        busy.store(false, ordering: .relaxed)
    }

    func run(participants n: Int, _ body: () -> Void) {
        guard n > 1, !busy.exchange(true, ordering: .acquiring) else {
            body()
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        let helpers = min(startThreads(upTo: n &- 1), n &- 1)
        guard helpers > 0 else {
            body()
            return
        }
        withoutActuallyEscaping(body) { body in
            job = body
            pthread_mutex_lock(mutex)
            let generation = (ticket.load(ordering: .relaxed) >> 16) &+ 1
            entry.store((generation & 0xFFFF_FFFF) << 32, ordering: .releasing)
            ticket.store(generation << 16 | UInt64(helpers), ordering: .releasing)
            pthread_cond_broadcast(jobPosted)
            pthread_mutex_unlock(mutex)
            body()
            // No new helper may enter now; wait for those inside.
            entry.bitwiseOr(Self.closedBit, ordering: .acquiringAndReleasing)
            waitForHelpersInside()
            job = nil
        }
    }

    private func helpersInside() -> UInt64 {
        entry.load(ordering: .acquiring) & Self.insideMask
    }

    private func waitForHelpersInside() {
        if Self.spin(until: { helpersInside() == 0 }) { return }
        pthread_mutex_lock(mutex)
        while helpersInside() != 0 {
            pthread_cond_wait(jobDone, mutex)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Enters the job of `generation` unless it is closed (or already replaced).
    private func enter(generation: UInt64) -> Bool {
        var current = entry.load(ordering: .acquiring)
        while current >> 32 == generation & 0xFFFF_FFFF && current & Self.closedBit == 0 {
            let (exchanged, original) = entry.compareExchange(
                expected: current, desired: current &+ 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Leaves the job; the last helper out of a closed job wakes the caller.
    private func leave() {
        let after = entry.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue
        if after & Self.insideMask == 0 && after & Self.closedBit != 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_signal(jobDone)
            pthread_mutex_unlock(mutex)
        }
    }

    /// Starts threads until there are `wanted` (or thread creation fails); returns how many
    /// threads there are in all, which may be more than wanted.
    private func startThreads(upTo wanted: Int) -> Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while threads < wanted {
            // The thread starts from the job before the one about to be posted, which it
            // must not miss however late it begins to run.
            let context = Unmanaged.passRetained(WorkerContext(
                pool: self, index: threads &+ 1, ticket: ticket.load(ordering: .acquiring)))
            var thread = pthread_t()
            let started = pthread_create(&thread, nil, { raw in
                #if canImport(Darwin)
                let context = Unmanaged<WorkerContext>.fromOpaque(raw).takeRetainedValue()
                #else
                let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                #endif
                segloss_block_signals()
                context.pool.workerLoop(index: context.index, startingAfter: context.ticket)
                return nil
            }, context.toOpaque())
            guard started == 0 else {
                context.release()
                break
            }
            pthread_detach(thread)
            threads &+= 1
        }
        return threads
    }

    private func workerLoop(index: Int, startingAfter start: UInt64) {
        var seen = start
        var helped = false
        while true {
            // Spin for the next job only after helping with one: a thread the last job did
            // not need is unlikely to be needed by the next.
            seen = waitForTicket(after: seen, spinning: helped)
            helped = UInt64(index) <= seen & 0xFFFF && enter(generation: seen >> 16)
            guard helped else { continue }
            runJob()
            leave()
        }
    }

    /// Calls the posted job. Its own function, so that this thread's reference to the
    /// closure ends here, before the acknowledgement lets the caller's scope end.
    @inline(never)
    private func runJob() {
        job?()
    }

    /// Waits (spinning first if asked) until the ticket moves past `seen`; returns the new one.
    private func waitForTicket(after seen: UInt64, spinning: Bool) -> UInt64 {
        if spinning, Self.spin(until: { ticket.load(ordering: .acquiring) != seen }) {
            return ticket.load(ordering: .acquiring)
        }
        pthread_mutex_lock(mutex)
        var current = ticket.load(ordering: .acquiring)
        while current == seen {
            pthread_cond_wait(jobPosted, mutex)
            current = ticket.load(ordering: .acquiring)
        }
        pthread_mutex_unlock(mutex)
        return current
    }

    /// Spins until `condition` holds (true) or `spinNanoseconds` have passed (false).
    private static func spin(until condition: () -> Bool) -> Bool {
        let start = monotonicNanoseconds()
        var spins: UInt32 = 0
        while !condition() {
            segloss_spin_pause()
            spins &+= 1
            if spins & 63 == 0 && monotonicNanoseconds() &- start > spinNanoseconds { return false }
        }
        return true
    }

    private static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(truncatingIfNeeded: now.tv_sec) &* 1_000_000_000
            &+ UInt64(truncatingIfNeeded: now.tv_nsec)
    }
}

private final class WorkerContext {
    let pool: WorkerPool
    let index: Int
    let ticket: UInt64
    init(pool: WorkerPool, index: Int, ticket: UInt64) {
        self.pool = pool
        self.index = index
        self.ticket = ticket
    }
}
