/* A C consumer of libsegloss.so: the header included twice, compiled with -Wall -Wextra
 * -Werror -pedantic as C99 and C11. Checks the worked example against PyTorch's own float32
 * results, that every status comes back for its input with the outputs untouched, and that
 * an in-place gradient equals an out-of-place one. Exit status 0 only when all pass. */
#include <segloss.h>
#include <segloss.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        ++checks;                                          \
        if (!(cond)) {                                     \
            ++failures;                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, "\n");                         \
        }                                                  \
    } while (0)

static int close_to(double got, double want, double rtol) {
    return fabs(got - want) <= rtol * fabs(want) + 1e-7;
}

/* PyTorch 2.x, float32, on the worked example. */
static const float pred[4] = {0.9f, 0.1f, 0.8f, 0.7f};
static const float target[4] = {1.0f, 0.0f, 1.0f, 1.0f};
static const double torch_dice = 0.10769230;
static const double torch_bce_dice = 0.15266359;
static const double torch_bce_dice_grad[4] = {-0.22409600, 0.20752795, -0.24145710, -0.26377853};

static void test_worked_example(void) {
    float dice = 0, loss = 0, loss2 = 0, grad[4], grad2[4];
    int i;
    CHECK(segloss_dice_forward(pred, target, 4, 1.0f, &dice) == SEGLOSS_OK, "dice forward");
    CHECK(close_to(dice, torch_dice, 1e-5), "dice %.8f", dice);
    CHECK(segloss_bce_dice_forward(pred, target, 4, 0.5f, 0.5f, 1.0f, &loss) == SEGLOSS_OK, "forward");
    CHECK(close_to(loss, torch_bce_dice, 1e-5), "bce+dice %.8f", loss);
    CHECK(segloss_bce_dice_backward(pred, target, 4, 0.5f, 0.5f, 1.0f, 1.0f, grad) == SEGLOSS_OK,
          "backward");
    CHECK(segloss_bce_dice_forward_backward(pred, target, 4, 0.5f, 0.5f, 1.0f, &loss2, grad2) ==
              SEGLOSS_OK, "forward_backward");
    CHECK(loss2 == loss, "fused loss %.8f != %.8f", loss2, loss);
    for (i = 0; i < 4; ++i) {
        CHECK(close_to(grad[i], torch_bce_dice_grad[i], 1e-5), "grad[%d] %.8f", i, grad[i]);
        CHECK(grad2[i] == grad[i], "fused grad[%d] differs", i);
    }
}

static void test_version(void) {
    char expected[32];
    CHECK(segloss_version_number() == SEGLOSS_VERSION_NUMBER, "version number %u",
          segloss_version_number());
    sprintf(expected, "%d.%d.%d", SEGLOSS_VERSION_MAJOR, SEGLOSS_VERSION_MINOR,
            SEGLOSS_VERSION_PATCH);
    CHECK(strcmp(segloss_version_string(), expected) == 0, "version %s", segloss_version_string());
    CHECK(strlen(segloss_kernel_name()) > 0, "kernel name");
}

/* Entry points, as bits: which ones a bad parameter concerns. */
enum {
    DICE_F = 1, DICE_B = 2, BCE_F = 4, BCE_B = 8, BD_F = 16, BD_B = 32, BD_FB = 64,
    ALL = 127,
    WEIGHTED = BD_F | BD_B | BD_FB,           /* take weight_bce, weight_dice */
    SMOOTHED = DICE_F | DICE_B | WEIGHTED,    /* take smooth */
    BACKWARD = DICE_B | BCE_B | BD_B          /* take grad_loss */
};

/* Calls the entry points in `entries` with one bad input and expects `want` from each, with
 * the outputs left at their sentinel values. */
static void expect_entries(int entries, const float *p, const float *t, size_t n, float wb,
                           float wd, float s, float gl, segloss_status want, const char *what) {
    const float sentinel = 12345.0f;
    int entry, k;
    for (entry = 0; entry < 7; ++entry) {
        float loss = sentinel, grad[4] = {sentinel, sentinel, sentinel, sentinel};
        segloss_status got = SEGLOSS_OK;
        if (!(entries & (1 << entry))) continue;
        switch (entry) {
        case 0: got = segloss_dice_forward(p, t, n, s, &loss); break;
        case 1: got = segloss_dice_backward(p, t, n, s, gl, grad); break;
        case 2: got = segloss_bce_forward(p, t, n, &loss); break;
        case 3: got = segloss_bce_backward(p, t, n, gl, grad); break;
        case 4: got = segloss_bce_dice_forward(p, t, n, wb, wd, s, &loss); break;
        case 5: got = segloss_bce_dice_backward(p, t, n, wb, wd, s, gl, grad); break;
        default: got = segloss_bce_dice_forward_backward(p, t, n, wb, wd, s, &loss, grad); break;
        }
        CHECK(got == want, "%s: entry %d returned %d (%s), want %d", what, entry, (int)got,
              segloss_status_string(got), (int)want);
        CHECK(loss == sentinel, "%s: entry %d wrote the loss on error", what, entry);
        for (k = 0; k < 4; ++k)
            CHECK(grad[k] == sentinel, "%s: entry %d wrote the gradient on error", what, entry);
    }
}

static void test_statuses(void) {
    const float nan = (float)NAN, inf = (float)INFINITY;
    const float bad_pred[4] = {0.9f, 1.5f, 0.8f, 0.7f};
    const float nan_pred[4] = {0.9f, 0.1f, 0.8f, nan};
    const float bad_target[4] = {1.0f, -0.5f, 1.0f, 1.0f};
    const float nan_target[4] = {nan, 0.0f, 1.0f, 1.0f};
    float loss = 0;
    expect_entries(ALL, NULL, target, 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_NULL_POINTER, "NULL pred");
    expect_entries(ALL, pred, NULL, 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_NULL_POINTER, "NULL target");
    CHECK(segloss_dice_forward(pred, target, 4, 1, NULL) == SEGLOSS_ERROR_NULL_POINTER, "NULL loss");
    CHECK(segloss_bce_dice_forward_backward(pred, target, 4, .5f, .5f, 1, &loss, NULL) ==
              SEGLOSS_ERROR_NULL_POINTER, "NULL grad");
    expect_entries(ALL, pred, target, 0, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_EMPTY_INPUT, "count 0");
    expect_entries(ALL, pred, target, (size_t)-1, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_COUNT_TOO_LARGE, "SIZE_MAX");
    expect_entries(ALL, pred, target, ((size_t)-1) / 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_COUNT_TOO_LARGE,
               "SIZE_MAX / 4");
    expect_entries(WEIGHTED, pred, target, 4, -0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_INVALID_ARGUMENT, "weight < 0");
    expect_entries(WEIGHTED, pred, target, 4, 0.5f, nan, 1, 1, SEGLOSS_ERROR_INVALID_ARGUMENT, "weight NaN");
    expect_entries(SMOOTHED, pred, target, 4, 0.5f, 0.5f, inf, 1, SEGLOSS_ERROR_INVALID_ARGUMENT, "smooth inf");
    expect_entries(SMOOTHED, pred, target, 4, 0.5f, 0.5f, -1, 1, SEGLOSS_ERROR_INVALID_ARGUMENT, "smooth < 0");
    expect_entries(BACKWARD, pred, target, 4, 0.5f, 0.5f, 1, nan, SEGLOSS_ERROR_INVALID_ARGUMENT,
                   "grad_loss NaN");
    expect_entries(BACKWARD, pred, target, 4, 0.5f, 0.5f, 1, -inf, SEGLOSS_ERROR_INVALID_ARGUMENT,
                   "grad_loss -inf");
    expect_entries(ALL, bad_pred, target, 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_PRED_OUT_OF_RANGE, "pred 1.5");
    expect_entries(ALL, nan_pred, target, 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_PRED_OUT_OF_RANGE, "pred NaN");
    expect_entries(ALL, pred, bad_target, 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_TARGET_OUT_OF_RANGE, "target -0.5");
    expect_entries(ALL, pred, nan_target, 4, 0.5f, 0.5f, 1, 1, SEGLOSS_ERROR_TARGET_OUT_OF_RANGE, "target NaN");
    CHECK(strcmp(segloss_status_string(SEGLOSS_OK), "success") == 0, "OK message");
    CHECK(strstr(segloss_status_string((segloss_status)99), "unknown") != NULL, "unknown status");
}

static void test_in_place(void) {
    enum { N = 70001 };
    static float p[N], t[N], g[N];
    float loss1 = 0, loss2 = 0;
    int i, same = 1;
    for (i = 0; i < N; ++i) {
        p[i] = (float)((i * 7919) % 1000) / 1000.0f;
        t[i] = (i % 3 == 0) ? 1.0f : 0.0f;
    }
    CHECK(segloss_bce_dice_forward_backward(p, t, N, 0.5f, 0.5f, 1, &loss1, g) == SEGLOSS_OK, "out");
    CHECK(segloss_bce_dice_forward_backward(p, t, N, 0.5f, 0.5f, 1, &loss2, p) == SEGLOSS_OK, "in");
    for (i = 0; i < N; ++i) same = same && (p[i] == g[i]);
    CHECK(same && loss1 == loss2, "in-place gradient differs from out-of-place");
}

static void test_threads(void) {
    int initial = segloss_get_num_threads();
    CHECK(initial >= 1, "threads %d", initial);
    segloss_set_num_threads(3);
    CHECK(segloss_get_num_threads() == 3, "set 3");
    segloss_set_num_threads(100000);
    CHECK(segloss_get_num_threads() == 256, "cap 256");
    segloss_set_num_threads(0);
    CHECK(segloss_get_num_threads() == initial, "0 restores the default");
}

/* Inputs big enough that a call uses the worker threads. */
enum { BIG = 200003 };
static float big_pred[BIG], big_target[BIG], big_grad[BIG];

static void fill_big(void) {
    int i;
    for (i = 0; i < BIG; ++i) {
        big_pred[i] = (float)((i * 7919) % 1000) / 1000.0f;
        big_target[i] = (i % 3 == 0) ? 1.0f : 0.0f;
    }
    big_pred[18] = 1e-40f; /* subnormal, target 1: flush-to-zero would change its log */
}

/* After fork() the child has none of the parent's worker threads; its calls must still
 * return, with the parent's result. */
static void test_fork(void) {
#if defined(__unix__)
    float parent_loss = 0;
    pid_t child;
    int status = 0;
    /* qemu-user (the portability test) cannot run fork() in a threaded guest. */
    if (getenv("SEGLOSS_TEST_NO_FORK") != NULL) return;
    segloss_set_num_threads(2);
    CHECK(segloss_bce_dice_forward_backward(big_pred, big_target, BIG, .5f, .5f, 1, &parent_loss,
                                            big_grad) == SEGLOSS_OK, "parent call");
    fflush(stdout);
    child = fork();
    if (child == 0) {
        float child_loss = 0;
        alarm(20); /* a hang is a failure, not a stuck test run */
        if (segloss_bce_dice_forward_backward(big_pred, big_target, BIG, .5f, .5f, 1, &child_loss,
                                              big_grad) != SEGLOSS_OK)
            _exit(2);
        _exit(child_loss == parent_loss ? 0 : 3);
    }
    CHECK(child > 0, "fork");
    if (child > 0) {
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child after fork: %s %d", WIFEXITED(status) ? "exit" : "signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    segloss_set_num_threads(0);
#endif
}

/* A host thread with flush-to-zero / denormals-are-zero set (torch.set_flush_denormal, -Ofast
 * code) gets the same bits as with the IEEE default, for any thread count. */
static void test_host_floating_point_state(void) {
#if defined(__x86_64__) || defined(__i386__)
    float reference = 0, loss = 0;
    unsigned saved = _mm_getcsr();
    int threads;
    /* valgrind (make valgrind-test) does not emulate MXCSR's flush-to-zero bits. */
    if (getenv("SEGLOSS_TEST_NO_FP_STATE") != NULL) return;
    segloss_set_num_threads(1);
    CHECK(segloss_bce_dice_forward(big_pred, big_target, BIG, .5f, .5f, 1, &reference) ==
              SEGLOSS_OK, "reference");
    _mm_setcsr(saved | 0x8040); /* FTZ | DAZ */
    for (threads = 1; threads <= 4; ++threads) {
        segloss_set_num_threads(threads);
        CHECK(segloss_bce_dice_forward(big_pred, big_target, BIG, .5f, .5f, 1, &loss) ==
                  SEGLOSS_OK && loss == reference,
              "FTZ/DAZ host, %d threads: %.9g != %.9g", threads, loss, reference);
        CHECK((_mm_getcsr() & 0x8040) == 0x8040, "the host's FTZ/DAZ setting was not restored");
    }
    _mm_setcsr(saved);
    segloss_set_num_threads(0);
#endif
}

/* The general API from C: the options struct's version rule, the seed's loss through the
 * general call, a logits loss with a uint8 target and a per-pixel mask, and statuses 7 and 8
 * with every output untouched. */
static void test_general_api(void) {
    const float pred[4] = {0.9f, 0.1f, 0.8f, 0.7f};
    const float target[4] = {1.0f, 0.0f, 1.0f, 1.0f};
    const float logits[8] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f, 0.0f, -0.5f};
    const unsigned char labels[8] = {1, 0, 1, 1, 0, 0, 1, 0};
    const unsigned char valid[4] = {1, 1, 0, 1};
    segloss_shape flat = {1, 1, 4, SEGLOSS_FLOAT32, SEGLOSS_FLOAT32, SEGLOSS_MASK_PER_ELEMENT};
    segloss_shape shape = {2, 2, 2, SEGLOSS_FLOAT32, SEGLOSS_UINT8, SEGLOSS_MASK_PER_PIXEL};
    segloss_options o;
    double loss = -1.0, scores[4] = {-1, -1, -1, -1};
    float grad[8];
    size_t segments = 0;
    float flat_loss = 0.0f;
    int k;
    /* A newer header's larger struct: accepted when the bytes this library does not know are
     * zero, refused otherwise; a smaller one is refused. */
    struct { segloss_options o; unsigned char newer[16]; } bigger;

    CHECK(segloss_options_init(&o) == SEGLOSS_OK && o.struct_size == sizeof o, "options_init");
    CHECK(segloss_options_init(NULL) == SEGLOSS_ERROR_NULL_POINTER, "options_init(NULL)");
    CHECK(segloss_forward(&o, &flat, pred, target, NULL, &loss, NULL, NULL) == SEGLOSS_OK, "forward");
    segloss_bce_dice_forward(pred, target, 4, 0.5f, 0.5f, 1.0f, &flat_loss);
    CHECK(close_to(loss, flat_loss, 1e-6), "seed loss %.9g vs flat %.9g", loss, (double)flat_loss);

    o.input = SEGLOSS_INPUT_LOGITS;
    o.segments = SEGLOSS_SEGMENT_SAMPLE_CHANNEL;
    CHECK(segloss_segment_count(&o, &shape, &segments) == SEGLOSS_OK && segments == 4, "segments");
    CHECK(segloss_forward_backward(&o, &shape, logits, labels, valid, &loss, grad, scores, NULL) ==
              SEGLOSS_OK, "logits, uint8 target, mask");
    CHECK(loss > 0.0 && loss < 2.0 && scores[0] > 0.0 && scores[0] <= 1.0, "loss %g", loss);
    CHECK(grad[4] == 0.0f && grad[6] == 0.0f && grad[0] != 0.0f, "masked pixels get gradient 0");

    bigger.o = o;
    memset(bigger.newer, 0, sizeof bigger.newer);
    bigger.o.struct_size = sizeof bigger;
    CHECK(segloss_forward(&bigger.o, &shape, logits, labels, valid, &loss, NULL, NULL) == SEGLOSS_OK,
          "a larger options struct whose new bytes are 0");
    bigger.newer[3] = 1;
    loss = -1.0;
    CHECK(segloss_forward(&bigger.o, &shape, logits, labels, valid, &loss, NULL, NULL) ==
              SEGLOSS_ERROR_INVALID_OPTIONS && loss == -1.0, "unknown non-zero option bytes");
    o.struct_size = sizeof o - 8;
    CHECK(segloss_forward(&o, &shape, logits, labels, valid, &loss, NULL, NULL) ==
              SEGLOSS_ERROR_INVALID_OPTIONS && loss == -1.0, "a smaller options struct");
    o.struct_size = sizeof o;
    o.region_term = 9;
    CHECK(segloss_forward(&o, &shape, logits, labels, valid, &loss, NULL, NULL) ==
              SEGLOSS_ERROR_INVALID_OPTIONS && loss == -1.0, "unknown region term");
    o.region_term = SEGLOSS_REGION_TVERSKY;
    o.squared = 1;
    CHECK(segloss_forward(&o, &shape, logits, labels, valid, &loss, NULL, NULL) ==
              SEGLOSS_ERROR_INVALID_OPTIONS && loss == -1.0, "squared Tversky");
    o.squared = 0;
    shape.pred_dtype = SEGLOSS_UINT8;
    for (k = 0; k < 8; ++k) grad[k] = 7.0f;
    CHECK(segloss_backward(&o, &shape, logits, labels, valid, 1.0, grad) ==
              SEGLOSS_ERROR_INVALID_SHAPE, "uint8 pred");
    for (k = 0; k < 8; ++k) CHECK(grad[k] == 7.0f, "gradient written on error");
    shape.pred_dtype = SEGLOSS_FLOAT32;
    shape.channels = 0;
    CHECK(segloss_forward(&o, &shape, logits, labels, valid, &loss, NULL, NULL) ==
              SEGLOSS_ERROR_EMPTY_INPUT && loss == -1.0, "no channels");
}

int main(void) {
    fill_big();
    test_version();
    test_worked_example();
    test_statuses();
    test_in_place();
    test_general_api();
    test_threads();
    test_host_floating_point_state();
    test_fork();
    printf("abi_test (C, kernel %s): %d passed, %d failed\n", segloss_kernel_name(),
           checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
