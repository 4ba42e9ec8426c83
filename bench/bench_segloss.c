/* bench_segloss.c — times segloss's BCE+Dice calls through the C API next to the memory
 * floor (floor.c). bench/run.py compiles it (cc -O2, linked to .build/release/libsegloss.so
 * with an rpath), runs it and parses its output: one JSON object per line.
 *
 *   bench_segloss info
 *       library version, kernel name, default thread count
 *   bench_segloss time BUDGET_SECONDS COUNT...
 *       for every COUNT, hard and soft targets, 1 thread and all threads: the floor,
 *       segloss_bce_dice_forward, _backward and _forward_backward, each timed call by call
 *       (warm-up, then repetitions for about BUDGET_SECONDS), median and min per call
 *   bench_segloss general BUDGET_SECONDS COUNT...
 *       the general API's fused segloss_forward_backward in three cases (logits; batch Dice
 *       per channel; logits with a uint8 target and a mask) next to the floor, all threads,
 *       on arrays laid out as malloc, PyTorch and numpy lay out theirs (pages, offset)
 *   bench_segloss call BUDGET_SECONDS COUNT THREADS
 *       only segloss_bce_dice_forward_backward, hard targets (the cost of a bare C call on
 *       small arrays, next to the Python binding's)
 *   bench_segloss rss COUNT cold|warm
 *       peak RSS (VmHWM) before and after one fused forward+backward call of COUNT
 *       elements, with
 *       the buffers already touched; "warm" makes one small call first, so one-time
 *       library set-up (worker threads, runtime) is not counted
 *
 * Inputs are deterministic (a counter-based hash; run.py makes the same arrays in numpy):
 *   pred    (k + 0.5) / 2^23, k uniform in [0, 2^23)  — strictly inside (0, 1)
 *   hard    1 where a uniform u in [0, 1) is < 0.3, else 0  (~30% ones)
 *   soft    uniform in [0, 1)
 */
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "floor.h"
#include "segloss.h"

#define W_BCE 0.5f
#define W_DICE 0.5f
#define SMOOTH 1.0f

#define MIN_REPS 5
#define MAX_REPS 20000

/*---------------------------------------------------------------------- inputs */

static uint64_t mix64(uint64_t z) /* splitmix64's finalizer */
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash(uint64_t stream, size_t i) { return mix64((stream << 40) ^ (uint64_t)i); }

static void fill_inputs(float *pred, float *hard, float *soft, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pred[i] = ((float)(hash(1, i) >> 41) + 0.5f) * 0x1p-23f;
        if (hard) hard[i] = (float)(hash(2, i) >> 40) * 0x1p-24f < 0.3f ? 1.0f : 0.0f;
        if (soft) soft[i] = (float)(hash(3, i) >> 40) * 0x1p-24f;
    }
}

/* Memory for the flat phases' inputs: malloc's. Out of memory ends the program. */
static float *alloc_floats(size_t n)
{
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_segloss: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

/* The general phase's inputs may be in transparent huge pages (see its section below). */
#define HUGE_PAGE ((size_t)2 << 20)

/* The bytes an allocation of `bytes` takes: whole 2 MiB pages with `huge`. */
static size_t page_bytes(size_t bytes, int huge)
{
    return huge ? (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE : bytes;
}

/*---------------------------------------------------------------------- timing */

enum op { OP_FLOOR, OP_FORWARD, OP_BACKWARD, OP_FORWARD_BACKWARD, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"floor", "forward", "backward", "forward_backward"};

static double checksum; /* every result lands here, and is printed */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(segloss_status status, const char *what)
{
    if (status != SEGLOSS_OK) {
        fprintf(stderr, "bench_segloss: %s failed: %s\n", what, segloss_status_string(status));
        exit(1);
    }
}

static void run_op(enum op op, const float *pred, const float *target, float *grad, size_t n,
                   int threads)
{
    float loss = 0.0f;
    switch (op) {
    case OP_FLOOR:
        checksum += floor_fused(pred, target, grad, n, threads);
        return;
    case OP_FORWARD:
        check(segloss_bce_dice_forward(pred, target, n, W_BCE, W_DICE, SMOOTH, &loss),
              "segloss_bce_dice_forward");
        break;
    case OP_BACKWARD:
        check(segloss_bce_dice_backward(pred, target, n, W_BCE, W_DICE, SMOOTH, 1.0f, grad),
              "segloss_bce_dice_backward");
        break;
    case OP_FORWARD_BACKWARD:
        check(segloss_bce_dice_forward_backward(pred, target, n, W_BCE, W_DICE, SMOOTH, &loss,
                                                grad),
              "segloss_bce_dice_forward_backward");
        break;
    default:
        return;
    }
    checksum += loss;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_time(enum op op, const char *kind, size_t n, int threads, double *samples,
                       int reps)
{
    qsort(samples, (size_t)reps, sizeof(double), compare_doubles);
    double median = reps % 2 ? samples[reps / 2]
                             : 0.5 * (samples[reps / 2 - 1] + samples[reps / 2]);
    printf("{\"type\":\"time\",\"op\":\"%s\",\"count\":%zu,\"target\":\"%s\",\"threads\":%d,"
           "\"median_ms\":%.6f,\"min_ms\":%.6f,\"reps\":%d}\n",
           op_names[op], n, kind, threads, median * 1e3, samples[0] * 1e3, reps);
    fflush(stdout);
}

/* Times every op (the floor and the three segloss calls) on the same inputs, interleaved
 * call by call, so that all of them, and so their ratios, see the same machine: these are
 * shared machines whose memory bandwidth drifts within seconds. Warm-up (at least 3 rounds
 * and a tenth of the budget), then rounds until the budget is spent (at least MIN_REPS, at
 * most MAX_REPS rounds). `samples` holds OP_COUNT * MAX_REPS doubles. */
static void time_ops(const char *kind, const float *pred, const float *target, float *grad,
                     size_t n, int threads, double budget, double *samples)
{
    segloss_set_num_threads(threads);
    double warm_end = now_seconds() + 0.1 * budget;
    for (int i = 0; i < 3 || now_seconds() < warm_end; i++)
        for (int op = 0; op < OP_COUNT; op++) run_op((enum op)op, pred, target, grad, n, threads);

    int reps = 0;
    double start = now_seconds();
    while (reps < MAX_REPS && (reps < MIN_REPS || now_seconds() - start < budget)) {
        for (int op = 0; op < OP_COUNT; op++) {
            double t0 = now_seconds();
            run_op((enum op)op, pred, target, grad, n, threads);
            samples[op * MAX_REPS + reps] = now_seconds() - t0;
        }
        reps++;
    }
    for (int op = 0; op < OP_COUNT; op++)
        print_time((enum op)op, kind, n, threads, samples + op * MAX_REPS, reps);
}

/* One op alone, timed the same way (for the single-call mode). */
static void time_op(enum op op, const char *kind, const float *pred, const float *target,
                    float *grad, size_t n, int threads, double budget, double *samples)
{
    if (op != OP_FLOOR) segloss_set_num_threads(threads);
    double warm_end = now_seconds() + 0.1 * budget;
    for (int i = 0; i < 3 || now_seconds() < warm_end; i++)
        run_op(op, pred, target, grad, n, threads);
    int reps = 0;
    double start = now_seconds();
    while (reps < MAX_REPS && (reps < MIN_REPS || now_seconds() - start < budget)) {
        double t0 = now_seconds();
        run_op(op, pred, target, grad, n, threads);
        samples[reps++] = now_seconds() - t0;
    }
    print_time(op, kind, n, threads, samples, reps);
}

static int default_threads(void)
{
    segloss_set_num_threads(0);
    return segloss_get_num_threads();
}

static int cmd_info(void)
{
    printf("{\"type\":\"info\",\"version\":\"%s\",\"version_number\":%u,"
           "\"header_version_number\":%d,\"kernel\":\"%s\",\"default_threads\":%d}\n",
           segloss_version_string(), segloss_version_number(), SEGLOSS_VERSION_NUMBER,
           segloss_kernel_name(), default_threads());
    return 0;
}

static int cmd_time(int argc, char **argv)
{
    double budget = atof(argv[0]);
    size_t max_n = 0;
    for (int i = 1; i < argc; i++) {
        size_t n = (size_t)strtoull(argv[i], NULL, 10);
        if (n > max_n) max_n = n;
    }
    if (budget <= 0.0 || max_n == 0) {
        fprintf(stderr, "usage: bench_segloss time BUDGET_SECONDS COUNT...\n");
        return 2;
    }

    /* One set of buffers, sized for the largest count; smaller counts use a prefix. */
    float *pred = alloc_floats(max_n), *hard = alloc_floats(max_n), *soft = alloc_floats(max_n);
    float *grad = alloc_floats(max_n);
    double *samples = malloc(OP_COUNT * MAX_REPS * sizeof(double));
    if (!samples) return 1;
    fill_inputs(pred, hard, soft, max_n);
    memset(grad, 0, max_n * sizeof(float));

    int all = default_threads();
    int thread_counts[2] = {1, all};
    int settings = all > 1 ? 2 : 1;

    for (int i = 1; i < argc; i++) {
        size_t n = (size_t)strtoull(argv[i], NULL, 10);
        for (int k = 0; k < 2; k++) {
            const char *kind = k == 0 ? "hard" : "soft";
            const float *target = k == 0 ? hard : soft;
            for (int s = 0; s < settings; s++)
                time_ops(kind, pred, target, grad, n, thread_counts[s], OP_COUNT * budget,
                         samples);
        }
    }
    segloss_set_num_threads(0);
    printf("{\"type\":\"checksum\",\"value\":%.6e}\n", checksum);
    free(samples);
    free(grad);
    free(soft);
    free(hard);
    free(pred);
    return 0;
}

/*---------------------------------------------------------------------- general API */

/* The general API's cases, each a fused segloss_forward_backward on batch 2 x 4 channels x
 * COUNT/8 pixels, float32, hard targets:
 *   logits       BCE-with-logits + Dice of sigmoid(logits) over the whole tensor
 *   per_channel  probabilities, BCE + Dice of each channel over the batch (batch Dice)
 *   logits_uint8_mask  logits, per sample x channel Dice, uint8 target, per-pixel mask */
enum { GENERAL_CASES = 3 };
static const char *const general_names[GENERAL_CASES] = {"logits", "per_channel",
                                                         "logits_uint8_mask"};

static void general_setup(int which, size_t n, segloss_options *o, segloss_shape *shape)
{
    segloss_options_init(o);
    shape->batch = 2;
    shape->channels = 4;
    shape->spatial = n / 8;
    shape->pred_dtype = SEGLOSS_FLOAT32;
    shape->target_dtype = which == 2 ? SEGLOSS_UINT8 : SEGLOSS_FLOAT32;
    shape->mask_layout = SEGLOSS_MASK_PER_PIXEL;
    o->input = which == 1 ? SEGLOSS_INPUT_PROBABILITIES : SEGLOSS_INPUT_LOGITS;
    o->segments = which == 0 ? SEGLOSS_SEGMENT_ALL
                  : which == 1 ? SEGLOSS_SEGMENT_CHANNEL : SEGLOSS_SEGMENT_SAMPLE_CHANNEL;
}

/* Where the caller's arrays live changes what the general calls cost far more than what the
 * floor costs, in two ways. Pages: in 4 KiB pages each page is a new TLB entry (a two-level
 * walk in a virtual machine) and a place where the hardware prefetchers stop, which the
 * floor's loads, issued back to back, overlap and segloss's, between their arithmetic, partly
 * do not. And the start: an array 16 bytes past a 64-byte line has every 16-float vector of
 * it span two cache lines. So the cases run on three copies of the inputs, in turn, laid out
 * as the three common allocators lay out large arrays (checked on this machine, glibc 2.36,
 * numpy 2.4, torch 2.15, transparent huge pages in the common "madvise" mode):
 *   malloc  4 KiB pages, 16 bytes past a line (glibc's malloc: C programs)
 *   torch   4 KiB pages, on a line (PyTorch's CPU allocator, by default)
 *   numpy   2 MiB pages, advised with madvise(MADV_HUGEPAGE), 16 bytes past a line
 * Each is made the same way here (page-aligned memory, that offset into it), whatever the C
 * library's malloc does. */
enum { LAYOUTS = 3 };
static const struct layout {
    const char *name;
    int huge;
    size_t offset;
} layouts[LAYOUTS] = {{"malloc", 0, 16}, {"torch", 0, 64}, {"numpy", 1, 16}};

/* The memory alloc_layout takes for `bytes`. */
static size_t layout_bytes(size_t bytes, const struct layout *l)
{
    return page_bytes(bytes + l->offset, l->huge);
}

/* `bytes` at `offset` past the start of memory of its own, in huge pages where asked and
 * granted; free with free_layout. */
static void *alloc_layout(size_t bytes, const struct layout *l)
{
    void *p = NULL;
    size_t align = l->huge ? HUGE_PAGE : 4096, rounded = layout_bytes(bytes, l);
    if (posix_memalign(&p, align, rounded) != 0) {
        fprintf(stderr, "bench_segloss: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (l->huge) (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: refused where THP is off */
#endif
    return (char *)p + l->offset;
}

static void free_layout(void *p, const struct layout *l) { free((char *)p - l->offset); }

struct general_arrays {
    float *pred, *hard, *logits, *grad;
    unsigned char *hard8, *mask;
};

/* The process's anonymous memory in transparent huge pages, KiB (0 where unknown). */
static long anon_huge_kb(void)
{
    char line[256];
    long kb = 0;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "AnonHugePages:", 14) == 0) kb = strtol(line + 14, NULL, 10);
    fclose(f);
    return kb;
}

static struct general_arrays general_arrays(size_t n, const struct layout *l)
{
    struct general_arrays a;
    a.pred = alloc_layout(n * sizeof(float), l);
    a.hard = alloc_layout(n * sizeof(float), l);
    a.logits = alloc_layout(n * sizeof(float), l);
    a.grad = alloc_layout(n * sizeof(float), l);
    a.hard8 = alloc_layout(n, l);
    a.mask = alloc_layout(n / 4, l);
    fill_inputs(a.pred, a.hard, NULL, n);
    for (size_t k = 0; k < n; k++) {
        a.logits[k] = 16.0f * a.pred[k] - 8.0f;
        a.hard8[k] = (unsigned char)a.hard[k];
    }
    for (size_t k = 0; k < n / 4; k++) a.mask[k] = (hash(4, k) & 15) != 0; /* 1/16 ignored */
    memset(a.grad, 0, n * sizeof(float));
    return a;
}

static void free_general_arrays(struct general_arrays *a, const struct layout *l)
{
    free_layout(a->mask, l);
    free_layout(a->hard8, l);
    free_layout(a->grad, l);
    free_layout(a->logits, l);
    free_layout(a->hard, l);
    free_layout(a->pred, l);
}

/* Times the floor and each general case on every copy of the inputs, interleaved call by
 * call, with all threads. */
static int cmd_general(int argc, char **argv)
{
    double budget = atof(argv[0]);
    int threads = default_threads();
    enum { SLOTS = LAYOUTS * (GENERAL_CASES + 1) };
    for (int i = 1; i < argc; i++) {
        size_t n = (size_t)strtoull(argv[i], NULL, 10) / 8 * 8;
        double *samples = malloc(SLOTS * MAX_REPS * sizeof(double));
        if (!samples || n == 0) return 1;
        struct general_arrays arrays[LAYOUTS];
        for (int l = 0; l < LAYOUTS; l++) {
            long huge_before = anon_huge_kb();
            arrays[l] = general_arrays(n, &layouts[l]);
            size_t bytes = 4 * layout_bytes(n * sizeof(float), &layouts[l]) +
                           layout_bytes(n, &layouts[l]) + layout_bytes(n / 4, &layouts[l]);
            printf("{\"type\":\"general_layout\",\"count\":%zu,\"layout\":\"%s\","
                   "\"offset\":%zu,\"array_kb\":%zu,\"huge_kb\":%ld}\n",
                   n, layouts[l].name, layouts[l].offset, bytes / 1024,
                   anon_huge_kb() - huge_before);
        }
        segloss_options o[GENERAL_CASES];
        segloss_shape shape[GENERAL_CASES];
        for (int c = 0; c < GENERAL_CASES; c++) general_setup(c, n, &o[c], &shape[c]);
        segloss_set_num_threads(threads);

        int reps = 0;
        double warm_end = now_seconds() + 0.1 * budget, start = 0.0;
        for (int round = 0;; round++) {
            int warm = round < 3 || now_seconds() < warm_end;
            if (!warm && start == 0.0) start = now_seconds();
            if (!warm && (reps >= MAX_REPS || (reps >= MIN_REPS && now_seconds() - start >= budget)))
                break;
            for (int l = 0; l < LAYOUTS; l++) {
                const struct general_arrays *a = &arrays[l];
                for (int c = 0; c <= GENERAL_CASES; c++) {
                    double loss = 0.0, t0 = now_seconds();
                    if (c == GENERAL_CASES) {
                        checksum += floor_fused(a->pred, a->hard, a->grad, n, threads);
                    } else {
                        const void *p = c == 1 ? (const void *)a->pred : (const void *)a->logits;
                        const void *t = c == 2 ? (const void *)a->hard8 : (const void *)a->hard;
                        check(segloss_forward_backward(&o[c], &shape[c], p, t,
                                                       c == 2 ? a->mask : NULL, &loss, a->grad,
                                                       NULL, NULL),
                              "segloss_forward_backward");
                        checksum += loss;
                    }
                    if (!warm)
                        samples[(l * (GENERAL_CASES + 1) + c) * MAX_REPS + reps] =
                            now_seconds() - t0;
                }
            }
            if (!warm) reps++;
        }
        for (int l = 0; l < LAYOUTS; l++) {
            for (int c = 0; c <= GENERAL_CASES; c++) {
                double *x = samples + (l * (GENERAL_CASES + 1) + c) * MAX_REPS;
                qsort(x, (size_t)reps, sizeof(double), compare_doubles);
                double median = reps % 2 ? x[reps / 2] : 0.5 * (x[reps / 2 - 1] + x[reps / 2]);
                printf("{\"type\":\"general\",\"case\":\"%s\",\"layout\":\"%s\",\"count\":%zu,"
                       "\"threads\":%d,\"median_ms\":%.6f,\"min_ms\":%.6f,\"reps\":%d}\n",
                       c == GENERAL_CASES ? "floor" : general_names[c], layouts[l].name, n,
                       threads, median * 1e3, x[0] * 1e3, reps);
            }
        }
        fflush(stdout);
        free(samples);
        for (int l = 0; l < LAYOUTS; l++) free_general_arrays(&arrays[l], &layouts[l]);
    }
    segloss_set_num_threads(0);
    printf("{\"type\":\"checksum\",\"value\":%.6e}\n", checksum);
    return 0;
}

/* Peak resident memory of this process in KiB: VmHWM from /proc/self/status. (getrusage's
 * ru_maxrss would do, but Linux carries it over exec from the parent: a child of a big
 * Python process starts with the parent's peak.) */
static int cmd_call(double budget, size_t n, int threads)
{
    float *pred = alloc_floats(n), *target = alloc_floats(n), *grad = alloc_floats(n);
    double *samples = malloc(MAX_REPS * sizeof(double));
    if (!samples || budget <= 0.0 || n == 0) return 2;
    fill_inputs(pred, target, NULL, n);
    time_op(OP_FORWARD_BACKWARD, "hard", pred, target, grad, n, threads, budget, samples);
    free(samples);
    free(grad);
    free(target);
    free(pred);
    return 0;
}

static long peak_rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static int cmd_rss(size_t n, int warm)
{
    float *pred = alloc_floats(n), *target = alloc_floats(n), *grad = alloc_floats(n);
    fill_inputs(pred, target, NULL, n); /* writes every page of pred and target */
    memset(grad, 0, n * sizeof(float));
    float loss = 0.0f;
    if (warm) {
        size_t small = n < 65536 ? n : 65536;
        check(segloss_bce_dice_forward_backward(pred, target, small, W_BCE, W_DICE, SMOOTH,
                                                &loss, grad),
              "segloss_bce_dice_forward_backward");
    }
    long before = peak_rss_kb();
    check(segloss_bce_dice_forward_backward(pred, target, n, W_BCE, W_DICE, SMOOTH, &loss, grad),
          "segloss_bce_dice_forward_backward");
    long after = peak_rss_kb();
    printf("{\"type\":\"rss\",\"count\":%zu,\"warm\":%d,\"buffers_kb\":%zu,"
           "\"before_kb\":%ld,\"after_kb\":%ld,\"loss\":%.8g,\"threads\":%d}\n",
           n, warm, 3 * n * sizeof(float) / 1024, before, after, loss,
           segloss_get_num_threads());
    free(grad);
    free(target);
    free(pred);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "info") == 0) return cmd_info();
    if (argc >= 4 && strcmp(argv[1], "time") == 0) return cmd_time(argc - 2, argv + 2);
    if (argc >= 4 && strcmp(argv[1], "general") == 0) return cmd_general(argc - 2, argv + 2);
    if (argc == 5 && strcmp(argv[1], "call") == 0)
        return cmd_call(atof(argv[2]), (size_t)strtoull(argv[3], NULL, 10), atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "rss") == 0)
        return cmd_rss((size_t)strtoull(argv[2], NULL, 10), strcmp(argv[3], "warm") == 0);
    fprintf(stderr, "usage: bench_segloss info | time BUDGET_SECONDS COUNT... | "
                    "general BUDGET_SECONDS COUNT... | call BUDGET_SECONDS COUNT THREADS | "
                    "rss COUNT cold|warm\n");
    return 2;
}
