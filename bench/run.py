#!/usr/bin/env python3
"""The segloss speed benchmark: python3 bench/run.py [--quick]   (from the repository root,
after the library is built; `make bench` does both).

One run measures everything its ratios need, in one process tree:

  1. C API (bench/bench_segloss.c, cc -O2, linked to .build/release/libsegloss.so):
     segloss_bce_dice_forward / _backward / _forward_backward for 65,536 ... 16,777,216
     elements, hard (0/1, ~30% ones) and soft (uniform) targets, 1 thread and all threads;
  2. the memory floor (bench/floor.c, -O3 -march=native, OpenMP): a kernel that moves the
     bytes fused forward+backward moves (read pred and target twice, write grad once) and
     does no real math — the fastest any implementation could be;
  3. from this process: the seed's PyTorch code (DiceLoss / BCEDiceLoss, forward +
     .backward()), a plain numpy BCEDice loss+gradient, and segloss through the Python
     binding (segloss.bce_dice_loss_and_grad);
  4. the binding's overhead per call, writing into a preallocated out= as the C call writes
     into the caller's memory, against a direct ctypes call of the same C function;
  5. peak memory: the RSS growth of one fused call, in fresh child processes.

It prints a table and a summary of the performance targets (PASS/MISS; the benchmark always
exits 0 when it could measure). Times are per call: the median (and min) of many calls after
a warm-up. Figures vary between runs on shared machines; compare ratios from one run.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LIB_DIR = ROOT / ".build" / "release"
LIB = LIB_DIR / "libsegloss.so"
OUT = ROOT / ".build" / "bench"
BINARY = OUT / "bench_segloss"

SIZES = [65_536, 1_048_576, 4_194_304, 16_777_216]
QUICK_SIZES = [65_536, 1_048_576]
KINDS = ["hard", "soft"]
W_BCE, W_DICE, SMOOTH = 0.5, 0.5, 1.0

# Seconds of timed calls per measurement (after a warm-up of a tenth of that).
C_BUDGET, C_BUDGET_QUICK = 0.2, 0.05
# The general phase: per size, three layouts (12 calls a round, ~120 ms at 16M elements).
GENERAL_BUDGET, GENERAL_BUDGET_QUICK = 1.5, 0.1
PY_BUDGET, PY_BUDGET_QUICK = 0.6, 0.15
PY_MIN_REPS = 3
# The binding, numpy and torch are timed in turn, in this many rounds, their samples pooled:
# a slow moment of the machine then falls on all three rather than on one of them.
PY_ROUNDS = 4
OVERHEAD_BATCHES = 21


# ----------------------------------------------------------------------------- helpers

def log(message=""):
    print(message, flush=True)


def wait_for_library(timeout_s=300):
    """The library may be rebuilt by someone else right now: wait until it is back."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if LIB.exists():
                ctypes.CDLL(str(LIB))
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"bench: {LIB} is missing or not loadable; build it first (make lib)")
        time.sleep(2)


def build_benchmark():
    OUT.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    floor_obj = OUT / "floor.o"
    commands = [
        [cc, "-O3", "-march=native", "-fopenmp", "-Wall", "-Wextra",
         "-c", str(BENCH / "floor.c"), "-o", str(floor_obj)],
        [cc, "-O2", "-std=c11", "-Wall", "-Wextra", f"-I{ROOT / 'include'}", f"-I{BENCH}",
         str(BENCH / "bench_segloss.c"), str(floor_obj), "-fopenmp",
         f"-L{LIB_DIR}", "-lsegloss", f"-Wl,-rpath,{LIB_DIR}", "-o", str(BINARY)],
    ]
    for command in commands:
        subprocess.run(command, check=True)


def run_binary(*args):
    """Runs bench_segloss and returns its JSON lines as dicts."""
    # The floor's OpenMP threads sleep when a parallel region ends instead of spinning (GNU
    # OpenMP spins by default): the floor and the segloss calls are timed in turn, and a
    # spinning floor thread would hold the core segloss's worker needs, and the other way round.
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    result = subprocess.run([str(BINARY), *map(str, args)], check=True,
                            stdout=subprocess.PIPE, text=True, env=environment)
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def call_samples(fn, budget_s, min_reps=PY_MIN_REPS, max_reps=20_000, warm=True):
    """Nanoseconds of one timed call of fn() after another, for budget_s (and at least
    min_reps calls), after a warm-up unless warm is False."""
    if warm:
        warm_end = time.perf_counter() + 0.1 * budget_s
        fn()
        while time.perf_counter() < warm_end:
            fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < max_reps and (len(samples) < min_reps
                                       or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return samples


def time_calls(fn, budget_s, min_reps=PY_MIN_REPS, max_reps=20_000):
    """Median and min seconds per call of fn(): warm-up, then one timed call after another."""
    samples = call_samples(fn, budget_s, min_reps, max_reps)
    return statistics.median(samples) * 1e-9, min(samples) * 1e-9


def median_and_min(samples):
    return statistics.median(samples) * 1e-9, min(samples) * 1e-9


def time_batch(fn, calls):
    """Seconds per call of a very short fn(), from a batch of `calls` calls after a few."""
    for _ in range(calls // 10 + 1):
        fn()
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - t0) * 1e-9 / calls


def busy_cpu_seconds():
    """CPU seconds all processes have used since boot (steal time counts as used)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = \
            map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """CPU seconds used by this process and the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMonitor:
    """How much of the machine other processes use: they distort every figure here."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.wall, self.busy, self.own = time.monotonic(), busy_cpu_seconds(), own_cpu_seconds()

    def others_share(self):
        """Fraction of all CPUs' time since reset() used by processes not ours."""
        wall = time.monotonic() - self.wall
        others = (busy_cpu_seconds() - self.busy) - (own_cpu_seconds() - self.own)
        return max(0.0, others / (wall * os.cpu_count())) if wall > 0 else 0.0


class Phases:
    """Runs the measurements phase by phase on a machine others share: before each phase it
    waits (from one budget for the whole run) while other processes keep the CPUs busy, and
    it records each phase's wall time and the share of the CPUs others used meanwhile."""

    QUIET = 0.10  # others' share of the CPUs below which the machine counts as quiet

    def __init__(self, wait_budget_s):
        self.wait_left = wait_budget_s
        self.waited = 0.0
        self.done, self.name, self.monitor = [], None, None

    def start(self, name):
        self.stop()
        self.wait_for_quiet()
        log(f"timing {name} ...")
        self.name, self.monitor = name, CpuMonitor()

    def stop(self):
        if self.name:
            wall = time.monotonic() - self.monitor.wall
            self.done.append((self.name, wall, self.monitor.others_share()))
        self.name = None

    def wait_for_quiet(self, sample_s=0.3):
        told = False
        while True:
            monitor = CpuMonitor()
            time.sleep(sample_s)
            share = monitor.others_share()
            if share < self.QUIET or self.wait_left <= 0:
                return
            if not told:
                log(f"  (other processes use {share:.0%} of the CPUs: waiting for a quieter "
                    f"machine, at most {self.wait_left:.0f} s more in this run)")
                told = True
            self.wait_left -= sample_s
            self.waited += sample_s

    def others_share(self):
        """Others' share of the CPUs over all phases, weighted by their wall time."""
        wall = sum(w for _, w, _ in self.done)
        return sum(w * share for _, w, share in self.done) / wall if wall else 0.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- inputs

def _hash(stream, n):
    """splitmix64's finalizer of (stream << 40) ^ index: the same as bench_segloss.c."""
    z = (np.uint64(stream) << np.uint64(40)) ^ np.arange(n, dtype=np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def make_inputs(n):
    """pred in (0, 1), hard 0/1 targets (~30% ones), soft uniform targets — float32."""
    pred = ((_hash(1, n) >> np.uint64(41)).astype(np.float32) + np.float32(0.5)) \
        * np.float32(2.0 ** -23)
    u = (_hash(2, n) >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    hard = (u < np.float32(0.3)).astype(np.float32)
    soft = (_hash(3, n) >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return pred, {"hard": hard, "soft": soft}


# ----------------------------------------------------------------------------- the contenders

def numpy_bce_dice(p, t, weight_bce=W_BCE, weight_dice=W_DICE, smooth=SMOOTH):
    """BCEDice loss and its gradient in plain vectorized numpy, float32 like PyTorch."""
    f32 = np.float32
    n = p.size
    log_p = np.maximum(np.log(p), f32(-100))
    log_1mp = np.maximum(np.log1p(-p), f32(-100))
    bce = -float(np.mean(t * log_p + (f32(1) - t) * log_1mp, dtype=np.float64))
    inter, sum_p, sum_t = float(np.dot(p, t)), float(p.sum()), float(t.sum())
    denom = sum_p + sum_t + smooth
    dice = 1.0 - (2.0 * inter + smooth) / denom
    loss = weight_bce * bce + weight_dice * dice
    grad = (p - t) / np.maximum(p * (f32(1) - p), f32(1e-12))
    grad *= f32(weight_bce / n)
    grad += f32(weight_dice * (2.0 * inter + smooth) / denom ** 2)
    grad -= f32(weight_dice * 2.0 / denom) * t
    return loss, grad


def load_torch():
    """The seed's PyTorch code (the DiceLoss / BCEDiceLoss modules segloss replaces), or None
    with the reason when torch is missing."""
    try:
        import torch
        from torch import nn
    except Exception as error:  # not installed, or broken
        return None, f"torch not importable ({type(error).__name__}: {error})"

    class DiceLoss(nn.Module):
        def __init__(self, smooth=1.0):
            super().__init__()
            self.smooth = smooth

        def forward(self, pred, target):
            p, t = pred.view(-1), target.view(-1)
            intersection = (p * t).sum()
            dice = (2. * intersection + self.smooth) / (p.sum() + t.sum() + self.smooth)
            return 1 - dice

    class BCEDiceLoss(nn.Module):
        def __init__(self, weight_bce=0.5, weight_dice=0.5):
            super().__init__()
            self.weight_bce, self.weight_dice = weight_bce, weight_dice
            self.bce = nn.BCELoss()
            self.dice = DiceLoss()

        def forward(self, pred, target):
            return (self.weight_bce * self.bce(pred, target)
                    + self.weight_dice * self.dice(pred, target))

    return (torch, BCEDiceLoss()), None


def load_binding():
    """The Python binding, or None with the reason when it cannot be imported yet."""
    os.environ.setdefault("SEGLOSS_LIBRARY", str(LIB))  # the build the C rows time
    path = str(ROOT / "bindings" / "python")
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        import segloss
        fn = segloss.bce_dice_loss_and_grad
    except Exception as error:
        return None, f"binding not importable ({type(error).__name__}: {error})"
    return fn, None


def load_raw_c():
    """segloss_bce_dice_forward_backward through ctypes, declared once."""
    lib = ctypes.CDLL(str(LIB))
    fn = lib.segloss_bce_dice_forward_backward
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_float,
                   ctypes.c_float, ctypes.c_float, ctypes.POINTER(ctypes.c_float),
                   ctypes.c_void_p]
    lib.segloss_set_num_threads.argtypes = [ctypes.c_int]
    lib.segloss_set_num_threads.restype = None
    lib.segloss_get_num_threads.restype = ctypes.c_int
    lib.segloss_kernel_name.restype = ctypes.c_char_p
    return lib, fn


def loss_of(result):
    """The loss from the binding's result: (loss, grad), or an object with .loss."""
    if isinstance(result, tuple):
        return float(result[0])
    return float(getattr(result, "loss"))


# ----------------------------------------------------------------------------- formatting

def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def print_table(header, rows, align):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if a == "r" else str(c).ljust(w)
                              for c, w, a in zip(r, widths, align))
    log(fmt(header))
    log("  ".join("-" * w for w in widths))
    for r in rows:
        log(fmt(r))


# ----------------------------------------------------------------------------- main

OVERHEAD_PHASE = "the binding's overhead"


def general_phase(n):
    return f"general API {n:,}"


GENERAL_CASES = {
    "logits": "logits: BCE-with-logits + Dice(sigmoid), whole tensor",
    "per_channel": "probabilities: BCE + batch Dice per channel",
    "logits_uint8_mask": "logits, Dice per sample x channel, uint8 target, mask",
}
# The inputs' layouts (bench_segloss.c, cmd_general): as glibc's malloc, PyTorch's CPU
# allocator and numpy lay out large arrays.
GENERAL_LAYOUTS = {"malloc": "as malloc: 4 KiB pages, 16 bytes past a 64-byte line",
                   "torch": "as PyTorch: 4 KiB pages, on a 64-byte line",
                   "numpy": "as numpy: 2 MiB pages (madvise), 16 bytes past a line"}


def c_phase(n):
    return f"C API and floor, {n:,}"


def python_phase(n):
    return f"binding, numpy, torch, {n:,}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="65,536 and 1,048,576 elements only, short timings")
    parser.add_argument("--max-wait", type=float, default=60, metavar="SECONDS",
                        help="wait at most this long in all for other processes to go quiet "
                             "before a phase (default 60; 0: never wait)")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    c_budget = C_BUDGET_QUICK if args.quick else C_BUDGET
    py_budget = PY_BUDGET_QUICK if args.quick else PY_BUDGET
    started = time.monotonic()

    wait_for_library()
    build_benchmark()
    info = run_binary("info")[0]
    all_threads = info["default_threads"]
    thread_settings = sorted({1, all_threads})

    torch_pack, torch_note = load_torch()
    binding, binding_note = load_binding()
    lib, raw_fb = load_raw_c()
    lib.segloss_set_num_threads(0)

    log("segloss benchmark" + (" (--quick)" if args.quick else ""))
    log(f"date        {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}")
    log(f"cpu         {cpu_model()}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable)")
    log(f"segloss     {info['version']}, kernel {info['kernel']} "
        f"(segloss_kernel_name), all threads = {all_threads}")
    log(f"python      {platform.python_version()}, numpy {np.__version__}, "
        + (f"torch {torch_pack[0].__version__}" if torch_pack else torch_note))
    log(f"binding     " + ("segloss.bce_dice_loss_and_grad" if binding else binding_note))
    log()
    phases = Phases(args.max_wait)

    inputs = {n: make_inputs(n) for n in sizes}  # the same arrays bench_segloss.c makes

    # 1 + 2: the C API and the floor, in a child process while this one idles.
    c = {}  # (op, count, kind, threads) -> (median s, min s)
    for n in sizes:
        phases.start(c_phase(n))
        for record in run_binary("time", c_budget, n):
            if record["type"] == "time":
                key = (record["op"], record["count"], record["target"], record["threads"])
                c[key] = (record["median_ms"] * 1e-3, record["min_ms"] * 1e-3)

    # 3: segloss through the binding (all threads), plain numpy and the seed's PyTorch code
    # (1 thread and all threads), one size after the other, so the ratios between them are
    # timed close together.
    py = {}  # (who, count, kind, threads) -> (median s, min s)
    losses = {}  # (who, count, kind) -> loss, for the cross-check
    if torch_pack:
        torch, criterion = torch_pack
        torch_threads_before = torch.get_num_threads()
    for n in sizes:
        phases.start(python_phase(n))
        pred, targets = inputs[n]
        for kind in KINDS:
            target = targets[kind]
            grad = np.empty(n, np.float32)  # preallocated: a training loop reuses it
            if torch_pack:
                pred_t = torch.from_numpy(pred).requires_grad_()
                target_t = torch.from_numpy(target)

                def step():
                    pred_t.grad = None
                    loss = criterion(pred_t, target_t)
                    loss.backward()
                    return loss

            samples = {}  # who (and torch's threads) -> pooled samples of every round
            share = py_budget / PY_ROUNDS
            for round_index in range(PY_ROUNDS):
                first = round_index == 0
                reps = PY_MIN_REPS if first else 1
                if binding:
                    lib.segloss_set_num_threads(0)
                    samples.setdefault("binding", []).extend(call_samples(
                        lambda: binding(pred, target, out=grad), share, reps, warm=first))
                # numpy's element-wise operations always use one thread: measured once.
                samples.setdefault("numpy", []).extend(call_samples(
                    lambda: numpy_bce_dice(pred, target), share, reps, warm=first))
                if torch_pack:
                    for threads in thread_settings:
                        torch.set_num_threads(threads)
                        samples.setdefault(("torch", threads), []).extend(call_samples(
                            step, share, reps, warm=first))

            if binding:
                py["binding", n, kind, all_threads] = median_and_min(samples["binding"])
                losses["binding", n, kind] = loss_of(binding(pred, target))
            for threads in thread_settings:
                py["numpy", n, kind, threads] = median_and_min(samples["numpy"])
            losses["numpy", n, kind] = numpy_bce_dice(pred, target)[0]
            if torch_pack:
                for threads in thread_settings:
                    py["torch", n, kind, threads] = median_and_min(samples["torch", threads])
                losses["torch", n, kind] = step().item()
    if torch_pack:
        torch.set_num_threads(torch_threads_before)

    # 1b: the general API's cases next to the floor (4M and up, where the floor is memory).
    general = {}  # (case, count, layout) -> (median s, min s)
    general_huge = {}  # (count, layout) -> (KiB in huge pages, KiB of arrays)
    general_budget = GENERAL_BUDGET_QUICK if args.quick else GENERAL_BUDGET
    for n in [n for n in sizes if n >= 4_194_304]:
        phases.start(general_phase(n))
        for record in run_binary("general", general_budget, n):
            if record["type"] == "general":
                general[record["case"], record["count"], record["layout"]] = (
                    record["median_ms"] * 1e-3, record["min_ms"] * 1e-3)
            elif record["type"] == "general_layout":
                general_huge[record["count"], record["layout"]] = (record["huge_kb"],
                                                                   record["array_kb"])

    # 4: the binding's overhead per call against the bare ctypes call, on 1 thread: the
    # overhead does not depend on it, and a 1-thread call varies least from call to call.
    # The binding writes into a preallocated array (out=), as the C call does: the target
    # is about what the binding adds, not about allocating the result. The call that
    # allocates its result is timed beside it, for reference.
    overhead = []  # (count, binding s, raw ctypes s, C program s, binding allocating s)
    if binding:
        phases.start(OVERHEAD_PHASE)
        lib.segloss_set_num_threads(1)
        for n, calls in [(4, 20_000), (65_536, 300)]:
            in_c = run_binary("call", c_budget, n, 1)[0]["median_ms"] * 1e-3
            pred, targets = make_inputs(n)
            target, grad = targets["hard"], np.empty(n, np.float32)
            loss = ctypes.c_float()
            loss_ref = ctypes.byref(loss)
            p_ptr, t_ptr, g_ptr = pred.ctypes.data, target.ctypes.data, grad.ctypes.data
            raw = lambda: raw_fb(p_ptr, t_ptr, n, W_BCE, W_DICE, SMOOTH, loss_ref, g_ptr)
            assert raw() == 0
            out = np.empty(n, np.float32)
            wrapped = lambda: binding(pred, target, out=out)
            allocating = lambda: binding(pred, target)
            # Interleaved, so drift on a shared machine hits both alike; the best batch of
            # each, as other processes can only add time. At 65,536 elements a call takes
            # ~60 µs, so a few µs of the difference is noise unless enough batches are
            # taken for both minimums to be clean.
            t_raw, t_binding, t_allocating = [], [], []
            for _ in range(OVERHEAD_BATCHES):
                t_raw.append(time_batch(raw, calls))
                t_binding.append(time_batch(wrapped, calls))
                t_allocating.append(time_batch(allocating, calls))
            overhead.append((n, min(t_binding), min(t_raw), in_c, min(t_allocating)))
        lib.segloss_set_num_threads(0)

    # 5: peak memory of one fused call, each in a fresh child process.
    phases.start("peak memory")
    rss = []
    rss_sizes = sorted({65_536, max(sizes)})
    for n in rss_sizes:
        for mode in ["cold", "warm"]:
            rss.append(run_binary("rss", n, mode)[0])
    rss_loss = next(r["loss"] for r in rss if r["count"] == 65_536)
    phases.stop()

    # ------------------------------------------------------------------------- report
    log()
    log("Per-call times in ms (median of many calls; the floor and the three C calls timed in "
        "turn, call by call). floor = the memory floor, fwd/bwd/fwd+bwd = segloss C API,")
    log("torch = the seed's PyTorch code (forward + backward), numpy = plain numpy (its "
        "element-wise operations use one thread: measured once, shown in both rows).")
    log("Ratios: fwd+bwd/floor (1.0 = at the memory limit), torch/fwd+bwd and "
        "numpy/fwd+bwd (speed-up of segloss).")
    log()
    header = ["elements", "target", "thr", "floor", "fwd", "bwd", "fwd+bwd", "fb/floor",
              "torch", "torch/fb", "numpy", "numpy/fb"]
    rows = []
    for n in sizes:
        for kind in KINDS:
            for threads in thread_settings:
                get = lambda op: c.get((op, n, kind, threads), (None, None))[0]
                fb = get("forward_backward")
                torch_s = py.get(("torch", n, kind, threads), (None,))[0]
                numpy_s = py.get(("numpy", n, kind, threads), (None,))[0]
                rows.append([f"{n:,}", kind, threads, ms(get("floor")), ms(get("forward")),
                             ms(get("backward")), ms(fb), ratio(fb, get("floor")),
                             ms(torch_s), ratio(torch_s, fb), ms(numpy_s),
                             ratio(numpy_s, fb)])
    print_table(header, rows, "rlrrrrrrrrrr")
    if not torch_pack:
        log(f"(torch columns skipped: {torch_note})")
    log()
    log("Min per call (ms), same rows: floor / fwd / bwd / fwd+bwd")
    for n in sizes:
        for kind in KINDS:
            for threads in thread_settings:
                mins = [ms(c.get((op, n, kind, threads), (None, None))[1])
                        for op in ["floor", "forward", "backward", "forward_backward"]]
                log(f"  {n:>10,} {kind} {threads}:  " + " / ".join(mins))
    log()

    log(f"Python binding, all threads ({all_threads}): segloss.bce_dice_loss_and_grad(pred, "
        "target, out=grad) into a preallocated grad (a training loop reuses its buffers), "
        "overhead included")
    if binding:
        header = ["elements", "target", "binding", "C fwd+bwd", "torch", "torch/binding",
                  "numpy", "numpy/binding"]
        rows = []
        for n in sizes:
            for kind in KINDS:
                b = py["binding", n, kind, all_threads][0]
                fb = c.get(("forward_backward", n, kind, all_threads), (None,))[0]
                torch_s = py.get(("torch", n, kind, all_threads), (None,))[0]
                numpy_s = py["numpy", n, kind, all_threads][0]
                rows.append([f"{n:,}", kind, ms(b), ms(fb), ms(torch_s), ratio(torch_s, b),
                             ms(numpy_s), ratio(numpy_s, b)])
        print_table(header, rows, "rlrrrrrr")
        log()
        log("Binding overhead per call (hard targets, 1 thread), µs: the binding writing into "
            "a preallocated out= vs the same")
        log(f"C function called through ctypes with pre-made pointers, best of {OVERHEAD_BATCHES} "
            "interleaved batches (and, for reference,")
        log("the median call from C, and the binding allocating its result):")
        for n, t_binding, t_raw, in_c, t_allocating in overhead:
            log(f"  {n:>7,} elements: binding {t_binding * 1e6:8.2f}   ctypes direct "
                f"{t_raw * 1e6:8.2f}   difference {(t_binding - t_raw) * 1e6:6.2f}   "
                f"(from C {in_c * 1e6:8.2f}; allocating {t_allocating * 1e6:8.2f})")
    else:
        log(f"  skipped: {binding_note}")
    log()

    log("Loss cross-check, 65,536 elements (bench_segloss.c makes the same inputs as numpy):")
    n0 = 65_536
    pred, targets = make_inputs(n0)
    for kind in KINDS:
        loss, grad = ctypes.c_float(), np.empty(n0, np.float32)
        raw_fb(pred.ctypes.data, targets[kind].ctypes.data, n0, W_BCE, W_DICE, SMOOTH,
               ctypes.byref(loss), grad.ctypes.data)
        parts = [f"ctypes {loss.value:.7f}"]
        if kind == "hard":
            parts.insert(0, f"C program {rss_loss:.7f}")
        parts += [f"{who} {losses[who, n0, kind]:.7f}" for who in ["binding", "numpy", "torch"]
                  if (who, n0, kind) in losses]
        log(f"  {kind}: " + ", ".join(parts))
    log()

    if general:
        log("General API: segloss_forward_backward, 2 x 4 channels x COUNT/8, float32, hard "
            f"targets, {all_threads} threads, next to the floor on the same arrays (ms, median; "
            "x floor), the arrays laid out in three ways, timed in turn:")
        for n in sorted({count for _, count, _ in general}):
            for layout, text in GENERAL_LAYOUTS.items():
                huge_kb, array_kb = general_huge.get((n, layout), (0, 0))
                log(f"  {n:>10,}  {text}: {huge_kb / 1024:.0f} of {array_kb / 1024:.0f} MiB "
                    "in huge pages")
                floor = general.get(("floor", n, layout), (None,))[0]
                for case, text in GENERAL_CASES.items():
                    t = general.get((case, n, layout), (None,))[0]
                    if t and floor:
                        log(f"  {n:>10,}    {text:<55} {ms(t):>8}  {t / floor:5.2f}x")
                if floor:
                    log(f"  {n:>10,}    {'memory floor':<55} {ms(floor):>8}")
        log()

    log("Peak memory of one fused forward+backward call (peak RSS = VmHWM, fresh child process, "
        "buffers pre-touched):")
    for r in rss:
        growth = r["after_kb"] - r["before_kb"]
        label = "first call in process" if not r["warm"] else "after a warm-up call "
        log(f"  {r['count']:>10,} elements, {label}: buffers {r['buffers_kb'] / 1024:7.1f} MiB,"
            f" RSS {r['before_kb'] / 1024:7.1f} -> {r['after_kb'] / 1024:7.1f} MiB, "
            f"growth {growth:6d} KiB")
    log()

    # ------------------------------------------------------------------------- targets
    share = phases.others_share()
    log(f"Other processes used {share:.0%} of the CPUs' time during the measurements"
        + (" — WARNING: the figures are disturbed (OpenMP code such as the floor and torch "
           "with all threads suffers most); compare with a run on a quiet machine."
           if share > Phases.QUIET else "."))
    for name, wall, others in phases.done:
        log(f"  {name:<36} {wall:5.1f} s   other processes {others:4.0%}")
    if phases.waited:
        log(f"  (waited {phases.waited:.0f} s in all for quieter moments)")
    log()

    others_in = {name: others for name, _, others in phases.done}
    checks = []  # (what, measured, target, verdict)

    def check(what, measured, target, ok, timed_in=(), threads=all_threads):
        """ok: True, False, or None when not measured; timed_in: the phases it was timed in,
        with `threads` threads — disturbed when others left fewer CPUs than that free."""
        verdict = "SKIP" if ok is None else "PASS" if ok else "MISS"
        busy = max([others_in.get(name, 0.0) for name in timed_in] + [0.0])
        cpus = os.cpu_count()
        if ok is not None and busy > (cpus - threads) / cpus + Phases.QUIET:
            verdict += f" (disturbed: others used {busy:.0%} of the CPUs)"
        checks.append((what, measured, target, verdict))

    def fb_c(n, kind, threads):
        return c.get(("forward_backward", n, kind, threads), (None,))[0]

    def check_floor_ratio(what, t, fl, phase):
        """A call's time t against the floor's fl, timed in `phase`: at most 1.5x."""
        if t and fl:
            check(what, f"{t / fl:.2f}x ({ms(t)} vs {ms(fl)} ms)", "<= 1.5x",
                  round(t / fl, 2) <= 1.5, [phase])
        else:
            check(what, "not measured", "<= 1.5x", None)

    for n in [4_194_304, 16_777_216]:
        check_floor_ratio(f"fused fwd+bwd / floor, {n:,}, hard, {all_threads} thr",
                          fb_c(n, "hard", all_threads),
                          c.get(("floor", n, "hard", all_threads), (None,))[0], c_phase(n))

    for n in [65_536, 1_048_576, 4_194_304, 16_777_216]:
        goal = 10 if n == 65_536 else 20
        what = f"torch seed / binding, {n:,}, {all_threads} thr"
        keys = [(who, n, k, all_threads) for who in ["torch", "binding"] for k in KINDS]
        if all(k in py for k in keys):
            r = {k: py["torch", n, k, all_threads][0] / py["binding", n, k, all_threads][0]
                 for k in KINDS}
            # The targets are stated for hard targets; soft is shown alongside.
            check(what, f"{r['hard']:.1f}x hard (soft {r['soft']:.1f}x)",
                  f">= {goal}x", round(r["hard"], 1) >= goal,
                  [python_phase(n)])
        else:
            reason = ("binding not importable" if not binding else
                      "torch not installed" if not torch_pack else "not measured")
            check(what, reason, f">= {goal}x", None)

    n = 16_777_216
    for layout in GENERAL_LAYOUTS:
        for case in GENERAL_CASES:
            check_floor_ratio(f"general API {case} / floor, {n:,}, {all_threads} thr, {layout}",
                              general.get((case, n, layout), (None,))[0],
                              general.get(("floor", n, layout), (None,))[0], general_phase(n))

    what = "single-thread fwd+bwd, 65,536 (C API)"
    single = {k: fb_c(65_536, k, 1) for k in KINDS}
    if all(single.values()):
        check(what, f"{single['hard'] * 1e6:.1f} µs hard (soft "
                    f"{single['soft'] * 1e6:.1f})", "<= 150 µs", single["hard"] <= 150e-6,
              [c_phase(65_536)], threads=1)
    else:
        check(what, "not measured", "<= 150 µs", None)

    for n, t_binding, t_raw, _, _ in overhead:
        d = t_binding - t_raw
        check(f"binding overhead per call, {n:,} elements", f"{d * 1e6:.2f} µs", "<= 5 µs",
              d <= 5e-6, [OVERHEAD_PHASE], threads=1)
    if not overhead:
        check("binding overhead per call", "binding not importable", "<= 5 µs", None)

    growth = {(r["count"], r["warm"]): r["after_kb"] - r["before_kb"] for r in rss}
    big, small = max(rss_sizes), min(rss_sizes)
    extra = growth[big, 0] - growth[small, 0]
    check(f"peak memory O(1): growth at {big:,} minus at {small:,}",
          f"{extra} KiB (one float array = {big * 4 // 1024} KiB)", "< 1024 KiB",
          extra < 1024)

    log("Targets")
    widths = [max(len(x[i]) for x in checks) for i in range(3)]
    for what, measured, target, verdict in checks:
        log(f"  {what.ljust(widths[0])}  {measured.ljust(widths[1])}  "
            f"{target.ljust(widths[2])}  {verdict}")
    log()
    log(f"benchmark took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
