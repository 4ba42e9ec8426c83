/* stress_test — many host threads calling every entry point at once, while another thread
 * keeps changing segloss_set_num_threads.
 *
 * First, single-threaded (segloss_set_num_threads(1)), every case is computed once: each of
 * the seven flat entry points, the general API's three and the split phase (with two option
 * sets: logits, Jaccard, pos_weight and label smoothing; probabilities, focal Tversky) on a
 * few elements, tens of thousands and about a million, hard and
 * soft targets, two sets of scalars, and a few error cases (a NaN in pred, a bad target, a
 * bad scalar). Then 16 host threads (STRESS_THREADS) call random cases until the time is up
 * — in place (grad_pred = a private copy of pred) or out of place, at an aligned or an odd
 * address — while one more thread sets the worker count to 1, 2, 3, 8, 16, 0 (the default)
 * in turn, every few hundred microseconds. Every result must be bitwise the single-threaded
 * one: the status, the loss, every gradient float; on an error the outputs must be untouched.
 *
 * Run time: SEGLOSS_STRESS_SECONDS (default 15), or the first argument. Exit status 0 when
 * every call matched. */
#define _POSIX_C_SOURCE 200809L
#include <segloss.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DICE_F, DICE_B, BCE_F, BCE_B, BD_F, BD_B, BD_FB, GEN_F, GEN_B, GEN_FB, SPLIT, ENTRIES };
static const char *const entry_names[ENTRIES] = {
    "dice_forward", "dice_backward", "bce_forward", "bce_backward",
    "bce_dice_forward", "bce_dice_backward", "bce_dice_forward_backward",
    "forward", "backward", "forward_backward", "split phase"};
static int has_loss(int e) {
    return e == DICE_F || e == BCE_F || e == BD_F || e == BD_FB || e == GEN_F || e == GEN_FB || e == SPLIT;
}
static int has_grad(int e) {
    return e == DICE_B || e == BCE_B || e == BD_B || e == BD_FB || e == GEN_B || e == GEN_FB || e == SPLIT;
}

typedef struct {
    float weight_bce, weight_dice, smooth, grad_loss;
} scalars;
static const scalars scalar_sets[2] = {{0.5f, 0.5f, 1.0f, 1.0f}, {0.3f, 1.7f, 0.0f, -2.5f}};

/* Inputs, shared read-only by every thread: pred, hard and soft targets; and a few spoilt
 * copies for the error cases. */
static const size_t sizes[] = {3, 17, 1000, 40000, 70001, 1048576 + 13};
enum { SIZES = sizeof sizes / sizeof sizes[0] };
static float *pred[SIZES], *target_hard[SIZES], *target_soft[SIZES];
static float *pred_nan[SIZES], *target_bad[SIZES];

enum { OK_INPUT, PRED_NAN, TARGET_BAD, SCALAR_BAD };

typedef struct {
    int entry, size, soft, scalars, input;
    /* The single-threaded result. */
    segloss_status status;
    uint64_t loss_bits; /* the loss as a double (the flat functions' float, widened) */
    float *grad;  /* count floats, or NULL */
} test_case;

static test_case *cases;
static int case_count;

static uint32_t bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static uint64_t dbits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double from_dbits(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* The general API's two option sets (made in make_inputs), and a shape of one sample and
 * one channel. Set 0: logits, Jaccard, pos_weight 2, label smoothing 0.1, per sample x
 * channel; set 1: probabilities, focal Tversky (alpha 0.7, beta 0.3, gamma 0.75), sum. */
static segloss_options general_options[2];
static const double pos_weight_two[1] = {2.0};

static uint32_t next_random(uint32_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "stress_test: out of memory\n");
        exit(2);
    }
    return p;
}

/* The general API's calls: the option set by the scalars' index, made invalid (gamma < 0)
 * for a bad scalar; the split phase runs its three steps on the whole batch. */
static segloss_status call_general(int e, const float *p, const float *t, size_t n, int set,
                                   int bad, double gl, double *loss, float *grad) {
    segloss_options o = general_options[set];
    segloss_shape shape = {1, 1, 0, SEGLOSS_FLOAT32, SEGLOSS_FLOAT32, SEGLOSS_MASK_PER_ELEMENT};
    segloss_slice slice = {0, 1};
    double sums[SEGLOSS_SUMS_PER_SEGMENT], value;
    segloss_status status;
    shape.spatial = n;
    if (bad) o.gamma = -1.0;
    switch (e) {
    case GEN_F: return segloss_forward(&o, &shape, p, t, NULL, loss, NULL, NULL);
    case GEN_B: return segloss_backward(&o, &shape, p, t, NULL, gl, grad);
    case GEN_FB: return segloss_forward_backward(&o, &shape, p, t, NULL, loss, grad, NULL, NULL);
    default:
        status = segloss_compute_sums(&o, &shape, &slice, p, t, NULL, sums, SEGLOSS_SUMS_PER_SEGMENT);
        if (status != SEGLOSS_OK) return status;
        status = segloss_loss_from_sums(&o, &shape, &slice, sums, SEGLOSS_SUMS_PER_SEGMENT, &value, NULL);
        if (status != SEGLOSS_OK) return status;
        status = segloss_backward_from_sums(&o, &shape, &slice, p, t, NULL, sums, SEGLOSS_SUMS_PER_SEGMENT,
                                            gl, grad);
        if (status == SEGLOSS_OK) *loss = value;
        return status;
    }
}

static segloss_status call(int e, const float *p, const float *t, size_t n, scalars a, int set,
                           int bad, double *loss_out, float *grad) {
    float flat_loss;
    segloss_status status;
    memcpy(&flat_loss, loss_out, sizeof flat_loss); /* the sentinel's bytes, for an error */
    if (e >= GEN_F) return call_general(e, p, t, n, set, bad, a.grad_loss, loss_out, grad);
    status = SEGLOSS_OK;
    switch (e) {
    case DICE_F: status = segloss_dice_forward(p, t, n, a.smooth, &flat_loss); break;
    case DICE_B: return segloss_dice_backward(p, t, n, a.smooth, a.grad_loss, grad);
    case BCE_F: status = segloss_bce_forward(p, t, n, &flat_loss); break;
    case BCE_B: return segloss_bce_backward(p, t, n, a.grad_loss, grad);
    case BD_F:
        status = segloss_bce_dice_forward(p, t, n, a.weight_bce, a.weight_dice, a.smooth, &flat_loss);
        break;
    case BD_B:
        return segloss_bce_dice_backward(p, t, n, a.weight_bce, a.weight_dice, a.smooth, a.grad_loss, grad);
    default:
        status = segloss_bce_dice_forward_backward(p, t, n, a.weight_bce, a.weight_dice, a.smooth,
                                                   &flat_loss, grad);
        break;
    }
    if (status == SEGLOSS_OK) *loss_out = flat_loss;
    return status;
}

static void case_inputs(const test_case *c, const float **p, const float **t, scalars *a) {
    *p = c->input == PRED_NAN ? pred_nan[c->size] : pred[c->size];
    *t = c->input == TARGET_BAD ? target_bad[c->size] : c->soft ? target_soft[c->size] : target_hard[c->size];
    *a = scalar_sets[c->scalars];
    if (c->input == SCALAR_BAD) {
        a->smooth = -1.0f;
        a->grad_loss = (float)NAN;
    }
}

static void make_inputs(void) {
    uint32_t state = 0x9E3779B9u;
    int s;
    size_t k;
    segloss_options_init(&general_options[0]);
    general_options[0].input = SEGLOSS_INPUT_LOGITS;
    general_options[0].region_term = SEGLOSS_REGION_JACCARD;
    general_options[0].segments = SEGLOSS_SEGMENT_SAMPLE_CHANNEL;
    general_options[0].label_smoothing = 0.1;
    general_options[0].pos_weight = pos_weight_two;
    segloss_options_init(&general_options[1]);
    general_options[1].region_term = SEGLOSS_REGION_TVERSKY;
    general_options[1].alpha = 0.7;
    general_options[1].beta = 0.3;
    general_options[1].gamma = 0.75;
    general_options[1].reduction = SEGLOSS_REDUCTION_SUM;
    for (s = 0; s < SIZES; ++s) {
        size_t n = sizes[s];
        pred[s] = (float *)xmalloc(n * sizeof(float));
        target_hard[s] = (float *)xmalloc(n * sizeof(float));
        target_soft[s] = (float *)xmalloc(n * sizeof(float));
        pred_nan[s] = (float *)xmalloc(n * sizeof(float));
        target_bad[s] = (float *)xmalloc(n * sizeof(float));
        for (k = 0; k < n; ++k) {
            pred[s][k] = (float)(next_random(&state) % 1000000u + 1u) / 1000002.0f;
            target_hard[s][k] = (float)(next_random(&state) & 1u);
            target_soft[s][k] = (float)(next_random(&state) % 1001u) / 1000.0f;
        }
        pred[s][0] = 0.0f;       /* the clamped log */
        pred[s][n - 1] = 1.0f;
        memcpy(pred_nan[s], pred[s], n * sizeof(float));
        pred_nan[s][n - 1 - n / 3] = (float)NAN;
        memcpy(target_bad[s], target_soft[s], n * sizeof(float));
        target_bad[s][n / 2] = 1.5f;
    }
}

/* Every case, computed on one worker thread. */
static void make_cases(void) {
    int e, s, soft, sc, input;
    cases = (test_case *)xmalloc(ENTRIES * SIZES * 2 * 2 * 4 * sizeof(test_case));
    segloss_set_num_threads(1);
    for (e = 0; e < ENTRIES; ++e)
        for (s = 0; s < SIZES; ++s)
            for (soft = 0; soft < 2; ++soft)
                for (sc = 0; sc < 2; ++sc)
                    for (input = 0; input < 4; ++input) {
                        test_case *c = &cases[case_count];
                        const float *p, *t;
                        scalars a;
                        double loss = 0;
                        /* Error cases: one per entry point and size. */
                        if (input != OK_INPUT && (soft || sc)) continue;
                        c->entry = e;
                        c->size = s;
                        c->soft = soft;
                        c->scalars = sc;
                        c->input = input;
                        c->grad = has_grad(e) ? (float *)xmalloc(sizes[s] * sizeof(float)) : NULL;
                        case_inputs(c, &p, &t, &a);
                        c->status = call(e, p, t, sizes[s], a, sc, input == SCALAR_BAD, &loss, c->grad);
                        c->loss_bits = dbits(loss);
                        if ((input == OK_INPUT) != (c->status == SEGLOSS_OK) ||
                            (input == SCALAR_BAD && e == BCE_F)) {
                            /* bce_forward has no smooth or grad_loss: its "bad scalar" case is valid. */
                            if (!(input == SCALAR_BAD && e == BCE_F && c->status == SEGLOSS_OK)) {
                                fprintf(stderr, "stress_test: reference %s case %d: status %d\n", entry_names[e],
                                        input, (int)c->status);
                                exit(1);
                            }
                        }
                        ++case_count;
                    }
    segloss_set_num_threads(0);
}

/*-------------------------------------------------------------------------------------------
 * The threads
 *-----------------------------------------------------------------------------------------*/

static int stop_flag; /* set by main when the time is up; read under stop_lock */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;

static int stopped(void) {
    int s;
    pthread_mutex_lock(&stop_lock);
    s = stop_flag;
    pthread_mutex_unlock(&stop_lock);
    return s;
}

enum { SENTINEL_BYTE = 0x5A };

typedef struct {
    int index;
    long calls, large_calls, in_place_calls, failures;
    unsigned char *scratch;  /* the biggest size's floats + 8 bytes: gradient or in-place pred */
} worker;

static int check(worker *w, const test_case *c, int in_place, int offset, segloss_status got,
                 double loss, const float *grad, const float *p_original) {
    size_t n = sizes[c->size];
    const char *how = in_place ? "in place" : "out of place";
    if (got != c->status) {
        fprintf(stderr, "thread %d: %s, %zu elements, %s: status %d, single-threaded %d\n", w->index,
                entry_names[c->entry], n, how, (int)got, (int)c->status);
        return 0;
    }
    if (c->status == SEGLOSS_OK) {
        if (has_loss(c->entry) && dbits(loss) != c->loss_bits) {
            fprintf(stderr, "thread %d: %s, %zu elements, %s: loss %.17g, single-threaded %.17g\n", w->index,
                    entry_names[c->entry], n, how, loss, from_dbits(c->loss_bits));
            return 0;
        }
        if (has_grad(c->entry) && memcmp(grad, c->grad, n * sizeof(float)) != 0) {
            size_t k, first = n, last = 0, differ = 0;
            for (k = 0; k < n; ++k)
                if (memcmp(&grad[k], &c->grad[k], sizeof(float)) != 0) {
                    if (first == n) first = k;
                    last = k;
                    ++differ;
                }
            fprintf(stderr,
                    "thread %d: %s, %zu elements, %s (offset %d): gradient differs from single-threaded "
                    "at %zu of them, [%zu] to [%zu]; [%zu] = %.9g (0x%08x), single-threaded %.9g\n",
                    w->index, entry_names[c->entry], n, how, offset, differ, first, last, first,
                    (double)grad[first], (unsigned)bits(grad[first]), (double)c->grad[first]);
            return 0;
        }
    } else {
        size_t k;
        if (dbits(loss) != 0x5A5A5A5A5A5A5A5Aull) {
            fprintf(stderr, "thread %d: %s: loss written with status %d\n", w->index, entry_names[c->entry],
                    (int)got);
            return 0;
        }
        if (in_place) {
            if (memcmp(grad, p_original, n * sizeof(float)) != 0) {
                fprintf(stderr, "thread %d: %s in place: pred changed with status %d\n", w->index,
                        entry_names[c->entry], (int)got);
                return 0;
            }
        } else if (has_grad(c->entry)) {
            const unsigned char *g = (const unsigned char *)grad;
            for (k = 0; k < n * sizeof(float); ++k)
                if (g[k] != SENTINEL_BYTE) {
                    fprintf(stderr, "thread %d: %s: gradient written with status %d\n", w->index,
                            entry_names[c->entry], (int)got);
                    return 0;
                }
        }
    }
    return 1;
}

static void *worker_main(void *arg) {
    worker *w = (worker *)arg;
    uint32_t state = 0x12345u + 7919u * (uint32_t)w->index;
    while (!stopped()) {
        const test_case *c = &cases[next_random(&state) % (uint32_t)case_count];
        size_t n = sizes[c->size];
        int in_place = has_grad(c->entry) && (next_random(&state) & 1u);
        int offset = (next_random(&state) & 3u) == 0 ? 1 : 0; /* an odd address, one call in four */
        float *out = (float *)(void *)(w->scratch + offset);
        const float *p, *t;
        scalars a;
        double loss;
        segloss_status got;
        memset(&loss, 0x5A, sizeof loss);
        case_inputs(c, &p, &t, &a);
        if (in_place) {
            memcpy(out, p, n * sizeof(float));
            got = call(c->entry, out, t, n, a, c->scalars, c->input == SCALAR_BAD, &loss, out);
        } else {
            if (has_grad(c->entry) && c->status != SEGLOSS_OK) memset(out, SENTINEL_BYTE, n * sizeof(float));
            got = call(c->entry, p, t, n, a, c->scalars, c->input == SCALAR_BAD, &loss, out);
        }
        ++w->calls;
        if (n > 100000) ++w->large_calls;
        if (in_place) ++w->in_place_calls;
        if (!check(w, c, in_place, offset, got, loss, out, p)) ++w->failures;
    }
    return NULL;
}

static long thread_changes;

static void *changer_main(void *arg) {
    static const int counts[] = {1, 2, 3, 8, 16, 0};
    uint32_t state = 0xC0FFEEu;
    int k = 0;
    (void)arg;
    while (!stopped()) {
        struct timespec pause;
        segloss_set_num_threads(counts[k]);
        k = (k + 1) % 6;
        ++thread_changes;
        if (segloss_get_num_threads() < 1) {
            fprintf(stderr, "segloss_get_num_threads() < 1\n");
            exit(1);
        }
        pause.tv_sec = 0;
        pause.tv_nsec = (long)(next_random(&state) % 500u) * 1000L; /* 0-500 µs */
        nanosleep(&pause, NULL);
    }
    segloss_set_num_threads(0);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *env_seconds = getenv("SEGLOSS_STRESS_SECONDS");
    const char *env_threads = getenv("STRESS_THREADS");
    double seconds = argc > 1 ? atof(argv[1]) : env_seconds ? atof(env_seconds) : 15.0;
    int threads = env_threads ? atoi(env_threads) : 16;
    worker *workers;
    pthread_t *ids, changer;
    long calls = 0, large = 0, in_place = 0, failures = 0;
    double start;
    struct timespec slice;
    int i;
    if (seconds <= 0) seconds = 15.0;
    if (threads < 1) threads = 16;

    start = now();
    make_inputs();
    make_cases();
    printf("stress_test: %d cases computed single-threaded in %.1f s (kernel %s)\n", case_count,
           now() - start, segloss_kernel_name());
    fflush(stdout);

    workers = (worker *)xmalloc((size_t)threads * sizeof(worker));
    ids = (pthread_t *)xmalloc((size_t)threads * sizeof(pthread_t));
    start = now();
    for (i = 0; i < threads; ++i) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].index = i;
        workers[i].scratch = (unsigned char *)xmalloc(sizes[SIZES - 1] * sizeof(float) + 8);
        if (pthread_create(&ids[i], NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "stress_test: pthread_create failed\n");
            return 2;
        }
    }
    if (pthread_create(&changer, NULL, changer_main, NULL) != 0) {
        fprintf(stderr, "stress_test: pthread_create failed\n");
        return 2;
    }
    slice.tv_sec = 0;
    slice.tv_nsec = 50 * 1000000L;
    while (now() - start < seconds) nanosleep(&slice, NULL);
    pthread_mutex_lock(&stop_lock);
    stop_flag = 1;
    pthread_mutex_unlock(&stop_lock);
    for (i = 0; i < threads; ++i) {
        pthread_join(ids[i], NULL);
        calls += workers[i].calls;
        large += workers[i].large_calls;
        in_place += workers[i].in_place_calls;
        failures += workers[i].failures;
        free(workers[i].scratch);
    }
    pthread_join(changer, NULL);
    printf("stress_test: %d host threads, %.1f s: %ld calls (%ld on ~1M elements, %ld in place), "
           "%ld thread-count changes\n",
           threads, now() - start, calls, large, in_place, thread_changes);
    printf("stress_test: %ld passed, %ld failed\n", calls - failures, failures);
    return failures == 0 && calls > 0 ? 0 : 1;
}
