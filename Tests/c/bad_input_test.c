/* bad_input_test — README's table "Bad input: what each status means", row by row.
 *
 * Each row of the table has an id (null-pred, count-overflow, unaligned, ...); this program
 * walks the rows in the table's order, calls every flat entry point the row applies to with
 * that input, and prints one line per row: its id, the status it expects, how many calls and
 * checks it made, and PASS or FAIL. On every error status it checks that the outputs are
 * bitwise untouched: the loss and the gradient buffer are filled with a sentinel byte, with a
 * guard float on each side, and must hold every sentinel byte afterwards; the inputs must not
 * change either. Rows that expect success check that the outputs were written and, where
 * the row says so, that they equal (bitwise) the result of a reference call.
 *
 * The general API's statuses (7, 8) have rows in the table too; their inputs are the general
 * API's (segloss_forward & co.), which this program does not call: it checks only their
 * messages. Exit status 0 when every row passes. */
#include <segloss.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*-------------------------------------------------------------------------------------------
 * Rows and checks
 *-----------------------------------------------------------------------------------------*/

static int row_checks, row_failures, row_calls;
static int rows_passed, rows_failed;

#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        ++row_checks;                                                    \
        if (!(cond)) {                                                   \
            if (++row_failures <= 8) {                                   \
                fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);   \
                fprintf(stderr, __VA_ARGS__);                            \
                fprintf(stderr, "\n");                                   \
            }                                                            \
        }                                                                \
    } while (0)

static void row_begin(void) {
    row_checks = row_failures = row_calls = 0;
}

/* One line per row: "<id>  <expected status>  <calls> calls, <checks> checks  PASS|FAIL". */
static void row_end(const char *id, const char *expects) {
    printf("%-16s %-34s %6d calls %8d checks  %s\n", id, expects, row_calls, row_checks,
           row_failures == 0 ? "PASS" : "FAIL");
    fflush(stdout);
    if (row_failures == 0) ++rows_passed; else ++rows_failed;
}

static float from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint32_t to_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/*-------------------------------------------------------------------------------------------
 * The seven flat entry points, behind one call
 *-----------------------------------------------------------------------------------------*/

enum {
    DICE_F, DICE_B, BCE_F, BCE_B, BD_F, BD_B, BD_FB, ENTRIES
};
enum {
    ALL = 0x7F,
    WITH_LOSS = 1 << DICE_F | 1 << BCE_F | 1 << BD_F | 1 << BD_FB,  /* have a loss output */
    WITH_GRAD = 1 << DICE_B | 1 << BCE_B | 1 << BD_B | 1 << BD_FB,  /* have grad_pred */
    WEIGHTED = 1 << BD_F | 1 << BD_B | 1 << BD_FB,                   /* weight_bce, weight_dice */
    SMOOTHED = 1 << DICE_F | 1 << DICE_B | WEIGHTED,                 /* smooth */
    GRAD_LOSS = 1 << DICE_B | 1 << BCE_B | 1 << BD_B                 /* grad_loss */
};
static const char *const entry_names[ENTRIES] = {
    "segloss_dice_forward", "segloss_dice_backward", "segloss_bce_forward", "segloss_bce_backward",
    "segloss_bce_dice_forward", "segloss_bce_dice_backward", "segloss_bce_dice_forward_backward"};

/* Scalar arguments of a call. */
typedef struct {
    float weight_bce, weight_dice, smooth, grad_loss;
} scalars;
static const scalars usual = {0.5f, 0.5f, 1.0f, 1.0f};

static segloss_status call(int e, const float *p, const float *t, size_t n, scalars a,
                           float *loss, float *grad) {
    ++row_calls;
    switch (e) {
    case DICE_F: return segloss_dice_forward(p, t, n, a.smooth, loss);
    case DICE_B: return segloss_dice_backward(p, t, n, a.smooth, a.grad_loss, grad);
    case BCE_F: return segloss_bce_forward(p, t, n, loss);
    case BCE_B: return segloss_bce_backward(p, t, n, a.grad_loss, grad);
    case BD_F: return segloss_bce_dice_forward(p, t, n, a.weight_bce, a.weight_dice, a.smooth, loss);
    case BD_B:
        return segloss_bce_dice_backward(p, t, n, a.weight_bce, a.weight_dice, a.smooth,
                                         a.grad_loss, grad);
    default:
        return segloss_bce_dice_forward_backward(p, t, n, a.weight_bce, a.weight_dice, a.smooth,
                                                 loss, grad);
    }
}

/*-------------------------------------------------------------------------------------------
 * Sentinel-filled outputs with guards
 *-----------------------------------------------------------------------------------------*/

enum { SENTINEL_BYTE = 0xA5 };  /* float 0xA5A5A5A5 = -2.87e-16: no loss or gradient here */

/* An output area: `count` floats with one guard float before and after, all sentinel bytes. */
typedef struct {
    unsigned char *raw;  /* count + 2 floats (+ 3 spare bytes for an unaligned start) */
    float *data;         /* raw + 4 + offset bytes */
    size_t count;
} output;

static output output_make(size_t count, size_t byte_offset) {
    output o;
    o.count = count;
    o.raw = (unsigned char *)malloc((count + 2) * sizeof(float) + 3);
    if (o.raw == NULL) { fprintf(stderr, "out of memory\n"); exit(2); }
    memset(o.raw, SENTINEL_BYTE, (count + 2) * sizeof(float) + 3);
    o.data = (float *)(void *)(o.raw + sizeof(float) + byte_offset);
    return o;
}

static void output_reset(output *o) {
    memset(o->raw, SENTINEL_BYTE, (o->count + 2) * sizeof(float) + 3);
}

/* Every byte of the area (guards included) still the sentinel. */
static int output_untouched(const output *o) {
    size_t k, bytes = (o->count + 2) * sizeof(float) + 3;
    for (k = 0; k < bytes; ++k)
        if (o->raw[k] != SENTINEL_BYTE) return 0;
    return 1;
}

/* The guards untouched and every float of the data written (none still all sentinel bytes). */
static int output_written(const output *o) {
    const unsigned char *data = (const unsigned char *)o->data;
    size_t k, j;
    for (k = 0; k < sizeof(float); ++k)
        if (o->raw[k] != SENTINEL_BYTE || data[o->count * sizeof(float) + k] != SENTINEL_BYTE)
            return 0;
    for (k = 0; k < o->count; ++k) {
        int all_sentinel = 1;
        for (j = 0; j < sizeof(float); ++j)
            all_sentinel = all_sentinel && data[k * sizeof(float) + j] == SENTINEL_BYTE;
        if (all_sentinel) return 0;
    }
    return 1;
}

static void output_free(output *o) {
    free(o->raw);
}

/*-------------------------------------------------------------------------------------------
 * Inputs
 *-----------------------------------------------------------------------------------------*/

static uint32_t rng_state = 12345u;
static uint32_t rng(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* Valid pred in (0, 1) and targets: hard (0/1) or soft. */
static void fill_valid(float *p, float *t, size_t n, int soft) {
    size_t k;
    for (k = 0; k < n; ++k) {
        p[k] = (float)(rng() % 1000000u + 1u) / 1000002.0f;
        t[k] = soft ? (float)(rng() % 1001u) / 1000.0f : (float)(rng() & 1u);
    }
}

static float *floats(size_t n) {
    float *f = (float *)malloc((n ? n : 1) * sizeof(float));
    if (f == NULL) { fprintf(stderr, "out of memory\n"); exit(2); }
    return f;
}

/* Sizes a data row runs at: one element, a short tail, past one 16,384-element chunk, and
 * past four chunks (the worker pool's share). */
static const size_t data_sizes[] = {1, 7, 16384 + 37, 70001};
enum { DATA_SIZES = sizeof data_sizes / sizeof data_sizes[0] };

/*-------------------------------------------------------------------------------------------
 * The one check behind most rows
 *-----------------------------------------------------------------------------------------*/

enum {
    NULL_PRED = 1, NULL_TARGET = 2, NULL_LOSS = 4, NULL_GRAD = 8
};

/* Calls every entry point in `entries` on pred/target (`len` real elements each, `n` passed
 * as count), with `nulls` replacing pointers by NULL, and expects `want` from each. On an
 * error, loss and gradient (sentinel-filled, guarded) must be untouched; on success, written.
 * pred and target must never change. */
static void expect(int entries, const float *p, const float *t, size_t len, size_t n, scalars a,
                   int nulls, segloss_status want, const char *what) {
    output loss = output_make(1, 0), grad = output_make(len ? len : 4, 0);
    float *p_copy = floats(len), *t_copy = floats(len);
    int e;
    if (len) { memcpy(p_copy, p, len * sizeof(float)); memcpy(t_copy, t, len * sizeof(float)); }
    for (e = 0; e < ENTRIES; ++e) {
        segloss_status got;
        if (!(entries & (1 << e))) continue;
        output_reset(&loss);
        output_reset(&grad);
        got = call(e, (nulls & NULL_PRED) ? NULL : p, (nulls & NULL_TARGET) ? NULL : t, n, a,
                   (nulls & NULL_LOSS) ? NULL : loss.data, (nulls & NULL_GRAD) ? NULL : grad.data);
        CHECK(got == want, "%s: %s returned %d (%s), want %d", what, entry_names[e], (int)got,
              segloss_status_string(got), (int)want);
        if (want != SEGLOSS_OK) {
            CHECK(output_untouched(&loss), "%s: %s wrote the loss on error", what, entry_names[e]);
            CHECK(output_untouched(&grad), "%s: %s wrote the gradient on error", what, entry_names[e]);
        } else {
            if ((1 << e) & WITH_LOSS)
                CHECK(output_written(&loss), "%s: %s: loss not written on OK", what, entry_names[e]);
            else
                CHECK(output_untouched(&loss), "%s: %s wrote a loss it has not", what, entry_names[e]);
            if ((1 << e) & WITH_GRAD)
                CHECK(output_written(&grad), "%s: %s: gradient not written on OK", what, entry_names[e]);
            else
                CHECK(output_untouched(&grad), "%s: %s wrote a gradient it has not", what, entry_names[e]);
        }
        if (len)
            CHECK(memcmp(p, p_copy, len * sizeof(float)) == 0 && memcmp(t, t_copy, len * sizeof(float)) == 0,
                  "%s: %s changed an input", what, entry_names[e]);
    }
    free(p_copy);
    free(t_copy);
    output_free(&loss);
    output_free(&grad);
}

/*-------------------------------------------------------------------------------------------
 * The rows, in the README table's order
 *-----------------------------------------------------------------------------------------*/

static float small_pred[16], small_target[16];

static void row_null_pointers(void) {
    static const size_t counts[] = {4, 16};
    size_t k;
    row_begin();
    for (k = 0; k < 2; ++k)
        expect(ALL, small_pred, small_target, 16, counts[k], usual, NULL_PRED, SEGLOSS_ERROR_NULL_POINTER, "pred NULL");
    row_end("null-pred", "1 SEGLOSS_ERROR_NULL_POINTER");

    row_begin();
    for (k = 0; k < 2; ++k)
        expect(ALL, small_pred, small_target, 16, counts[k], usual, NULL_TARGET, SEGLOSS_ERROR_NULL_POINTER, "target NULL");
    row_end("null-target", "1 SEGLOSS_ERROR_NULL_POINTER");

    row_begin();
    for (k = 0; k < 2; ++k)
        expect(WITH_LOSS, small_pred, small_target, 16, counts[k], usual, NULL_LOSS, SEGLOSS_ERROR_NULL_POINTER, "loss NULL");
    row_end("null-loss", "1 SEGLOSS_ERROR_NULL_POINTER");

    row_begin();
    for (k = 0; k < 2; ++k)
        expect(WITH_GRAD, small_pred, small_target, 16, counts[k], usual, NULL_GRAD, SEGLOSS_ERROR_NULL_POINTER, "grad_pred NULL");
    row_end("null-grad", "1 SEGLOSS_ERROR_NULL_POINTER");

    row_begin();
    expect(ALL, small_pred, small_target, 16, 16, usual, NULL_PRED | NULL_TARGET | NULL_LOSS | NULL_GRAD,
           SEGLOSS_ERROR_NULL_POINTER, "every pointer NULL");
    expect(ALL, small_pred, small_target, 16, 16, usual, NULL_PRED | NULL_TARGET, SEGLOSS_ERROR_NULL_POINTER,
           "pred and target NULL");
    row_end("null-all", "1 SEGLOSS_ERROR_NULL_POINTER");
}

/* NULL is checked before the count: a NULL pointer with count 0 (or a count too large) is
 * NULL_POINTER, not EMPTY_INPUT. */
static void row_null_count0(void) {
    static const int nulls[] = {NULL_PRED, NULL_TARGET, NULL_LOSS, NULL_GRAD, NULL_PRED | NULL_TARGET,
                                NULL_PRED | NULL_TARGET | NULL_LOSS | NULL_GRAD};
    size_t k;
    row_begin();
    for (k = 0; k < sizeof nulls / sizeof nulls[0]; ++k) {
        int entries = ALL;
        if (nulls[k] == NULL_LOSS) entries = WITH_LOSS;
        if (nulls[k] == NULL_GRAD) entries = WITH_GRAD;
        expect(entries, small_pred, small_target, 16, 0, usual, nulls[k], SEGLOSS_ERROR_NULL_POINTER, "NULL, count 0");
        expect(entries, small_pred, small_target, 16, SIZE_MAX, usual, nulls[k], SEGLOSS_ERROR_NULL_POINTER,
               "NULL, count SIZE_MAX");
    }
    row_end("null-count0", "1 SEGLOSS_ERROR_NULL_POINTER");
}

static void row_count0(void) {
    row_begin();
    expect(ALL, small_pred, small_target, 16, 0, usual, 0, SEGLOSS_ERROR_EMPTY_INPUT, "count 0");
    row_end("count0", "2 SEGLOSS_ERROR_EMPTY_INPUT");
}

/* Counts whose byte size (4 * count) exceeds PTRDIFF_MAX, with real 16-float buffers: the
 * library must answer from the count alone (reading that far would crash). */
static void row_count_overflow(void) {
    const size_t counts[] = {
        (size_t)PTRDIFF_MAX / 4 + 1,  /* the smallest: 4 * count = PTRDIFF_MAX + 1 (or 4 more) */
        (size_t)PTRDIFF_MAX / 2, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1,
        SIZE_MAX / 4, SIZE_MAX / 4 + 1, SIZE_MAX / 2, SIZE_MAX - 1, SIZE_MAX};
    size_t k;
    row_begin();
    for (k = 0; k < sizeof counts / sizeof counts[0]; ++k)
        expect(ALL, small_pred, small_target, 16, counts[k], usual, 0, SEGLOSS_ERROR_COUNT_TOO_LARGE,
               "count too large");
    row_end("count-overflow", "6 SEGLOSS_ERROR_COUNT_TOO_LARGE");
}

/* Scalars that are no weight or smooth: negative (down to -denorm_min), NaN (quiet, negative,
 * signaling, with payload), infinite. */
static const uint32_t bad_nonnegative_bits[] = {
    0xBF800000u /* -1 */, 0x80000001u /* -denorm_min */, 0x80800000u /* -FLT_MIN */,
    0xFF7FFFFFu /* -FLT_MAX */, 0x7F800000u /* +inf */, 0xFF800000u /* -inf */,
    0x7FC00000u /* NaN */, 0xFFC00000u /* -NaN */, 0x7F800001u /* signaling NaN */,
    0x7FFFFFFFu /* NaN, full payload */};
enum { BAD_NONNEGATIVE = sizeof bad_nonnegative_bits / sizeof bad_nonnegative_bits[0] };

static void row_bad_scalars(void) {
    size_t k;
    const size_t sizes[] = {16, 0};
    row_begin();
    for (k = 0; k < BAD_NONNEGATIVE; ++k) {
        scalars a = usual;
        a.weight_bce = from_bits(bad_nonnegative_bits[k]);
        expect(WEIGHTED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_ERROR_INVALID_ARGUMENT, "weight_bce");
        a = usual;
        a.weight_dice = from_bits(bad_nonnegative_bits[k]);
        expect(WEIGHTED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_ERROR_INVALID_ARGUMENT, "weight_dice");
    }
    row_end("weight-bad", "3 SEGLOSS_ERROR_INVALID_ARGUMENT");

    row_begin();
    for (k = 0; k < BAD_NONNEGATIVE; ++k) {
        scalars a = usual;
        a.smooth = from_bits(bad_nonnegative_bits[k]);
        expect(SMOOTHED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_ERROR_INVALID_ARGUMENT, "smooth");
    }
    row_end("smooth-bad", "3 SEGLOSS_ERROR_INVALID_ARGUMENT");

    row_begin();
    for (k = 0; k < BAD_NONNEGATIVE; ++k) {
        scalars a = usual;
        float value = from_bits(bad_nonnegative_bits[k]);
        a.grad_loss = value;
        if (isfinite(value)) {
            /* A negative finite grad_loss is valid. */
            expect(GRAD_LOSS, small_pred, small_target, 16, sizes[0], a, 0, SEGLOSS_OK, "grad_loss finite < 0");
        } else {
            expect(GRAD_LOSS, small_pred, small_target, 16, sizes[0], a, 0, SEGLOSS_ERROR_INVALID_ARGUMENT,
                   "grad_loss");
        }
    }
    row_end("grad-loss-bad", "3 SEGLOSS_ERROR_INVALID_ARGUMENT");
}

/* Weights, smooth and grad_loss at the edges of their domains are valid. */
static void row_scalar_edges(void) {
    static const uint32_t edges_bits[] = {0x00000000u /* 0 */, 0x80000000u /* -0.0 */,
                                          0x00000001u /* denorm_min */, 0x00800000u /* FLT_MIN */,
                                          0x7F7FFFFFu /* FLT_MAX */};
    size_t k;
    row_begin();
    for (k = 0; k < sizeof edges_bits / sizeof edges_bits[0]; ++k) {
        float v = from_bits(edges_bits[k]);
        scalars a = usual;
        a.weight_bce = v;
        expect(WEIGHTED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_OK, "weight_bce edge");
        a = usual;
        a.weight_dice = v;
        expect(WEIGHTED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_OK, "weight_dice edge");
        a = usual;
        a.smooth = v;
        expect(SMOOTHED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_OK, "smooth edge");
        a = usual;
        a.grad_loss = v;
        expect(GRAD_LOSS, small_pred, small_target, 16, 16, a, 0, SEGLOSS_OK, "grad_loss edge");
        a.grad_loss = -v;
        expect(GRAD_LOSS, small_pred, small_target, 16, 16, a, 0, SEGLOSS_OK, "grad_loss edge");
    }
    {
        scalars a = usual;
        a.weight_bce = a.weight_dice = 0.0f;  /* both terms left out: loss 0 */
        expect(WEIGHTED, small_pred, small_target, 16, 16, a, 0, SEGLOSS_OK, "both weights 0");
    }
    row_end("scalar-edges", "0 SEGLOSS_OK");
}

/* One bad element in otherwise valid pred (or target) at the first, a middle and the last
 * position, at every data size, on 1 and 4 threads. */
static void data_row(const char *id, const char *expects, const uint32_t *values, size_t nvalues,
                     int in_target, segloss_status want) {
    static const int threads[] = {1, 4};
    size_t s, v, pos;
    int th;
    row_begin();
    for (th = 0; th < 2; ++th) {
        segloss_set_num_threads(threads[th]);
        for (s = 0; s < DATA_SIZES; ++s) {
            size_t n = data_sizes[s];
            size_t positions[3];
            float *p = floats(n), *t = floats(n);
            positions[0] = 0;
            positions[1] = n / 2;
            positions[2] = n - 1;
            fill_valid(p, t, n, (int)(s & 1));
            for (v = 0; v < nvalues; ++v) {
                for (pos = 0; pos < 3; ++pos) {
                    float *buffer = in_target ? t : p, saved = buffer[positions[pos]];
                    if (pos > 0 && positions[pos] == positions[pos - 1]) continue;
                    buffer[positions[pos]] = from_bits(values[v]);
                    expect(ALL, p, t, n, n, usual, 0, want, id);
                    buffer[positions[pos]] = saved;
                }
            }
            free(p);
            free(t);
        }
    }
    segloss_set_num_threads(0);
    row_end(id, expects);
}

static const uint32_t nan_bits[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u /* signaling */,
                                    0x7FFFFFFFu, 0xFFC01234u};
static const uint32_t inf_bits[] = {0x7F800000u, 0xFF800000u};
static const uint32_t outside_bits[] = {
    0x80000001u /* -denorm_min */, 0x807FFFFFu /* largest negative subnormal */,
    0x80800000u /* -FLT_MIN */, 0xBF800000u /* -1 */, 0x3F800001u /* nextafter(1, 2) */,
    0x40000000u /* 2 */, 0x7F7FFFFFu /* FLT_MAX */, 0xFF7FFFFFu /* -FLT_MAX */};

static void row_data(void) {
    data_row("pred-nan", "4 SEGLOSS_ERROR_PRED_OUT_OF_RANGE", nan_bits, 5, 0, SEGLOSS_ERROR_PRED_OUT_OF_RANGE);
    data_row("pred-inf", "4 SEGLOSS_ERROR_PRED_OUT_OF_RANGE", inf_bits, 2, 0, SEGLOSS_ERROR_PRED_OUT_OF_RANGE);
    data_row("pred-range", "4 SEGLOSS_ERROR_PRED_OUT_OF_RANGE", outside_bits, 8, 0,
             SEGLOSS_ERROR_PRED_OUT_OF_RANGE);
    data_row("target-nan", "5 SEGLOSS_ERROR_TARGET_OUT_OF_RANGE", nan_bits, 5, 1,
             SEGLOSS_ERROR_TARGET_OUT_OF_RANGE);
    data_row("target-inf", "5 SEGLOSS_ERROR_TARGET_OUT_OF_RANGE", inf_bits, 2, 1,
             SEGLOSS_ERROR_TARGET_OUT_OF_RANGE);
    data_row("target-range", "5 SEGLOSS_ERROR_TARGET_OUT_OF_RANGE", outside_bits, 8, 1,
             SEGLOSS_ERROR_TARGET_OUT_OF_RANGE);
}

/* Values at the edges of [0, 1] are valid: ±0.0, subnormals, FLT_MIN, 1 and just below it,
 * at the first and the last position. */
static void row_value_edges(void) {
    static const uint32_t edge_bits[] = {0x00000000u, 0x80000000u /* -0.0 */, 0x00000001u,
                                         0x007FFFFFu, 0x00800000u, 0x3F800000u /* 1 */,
                                         0x3F7FFFFFu /* nextafter(1, 0) */};
    size_t s, v, pos;
    int side;
    row_begin();
    for (s = 0; s < DATA_SIZES; ++s) {
        size_t n = data_sizes[s];
        float *p = floats(n), *t = floats(n);
        fill_valid(p, t, n, (int)(s & 1));
        for (side = 0; side < 2; ++side) {
            float *buffer = side ? t : p;
            for (v = 0; v < sizeof edge_bits / sizeof edge_bits[0]; ++v) {
                for (pos = 0; pos < 2; ++pos) {
                    size_t at = pos ? n - 1 : 0;
                    float saved = buffer[at];
                    buffer[at] = from_bits(edge_bits[v]);
                    expect(ALL, p, t, n, n, usual, 0, SEGLOSS_OK, "edge value");
                    buffer[at] = saved;
                }
            }
        }
        free(p);
        free(t);
    }
    row_end("value-edges", "0 SEGLOSS_OK");
}

/* -0.0 is +0.0: in pred or in target, at the first and the last position, hard and soft
 * targets, it gives bitwise the same loss and the same gradient values (compared with ==,
 * so only the sign of a zero gradient may differ) as +0.0. */
static void row_negative_zero(void) {
    size_t s, k, pos;
    int side, e;
    row_begin();
    for (s = 0; s < DATA_SIZES; ++s) {
        size_t n = data_sizes[s];
        float *p = floats(n), *t = floats(n), *g_pos = floats(n), *g_neg = floats(n);
        fill_valid(p, t, n, (int)(s & 1));
        for (side = 0; side < 2; ++side) {
            float *buffer = side ? t : p;
            for (pos = 0; pos < 2; ++pos) {
                size_t at = pos ? n - 1 : 0;
                float saved = buffer[at];
                for (e = 0; e < ENTRIES; ++e) {
                    float loss_pos = 0, loss_neg = 0;
                    segloss_status a, b;
                    int same = 1;
                    buffer[at] = 0.0f;
                    a = call(e, p, t, n, usual, &loss_pos, g_pos);
                    buffer[at] = -0.0f;
                    b = call(e, p, t, n, usual, &loss_neg, g_neg);
                    CHECK(a == SEGLOSS_OK && b == SEGLOSS_OK, "%s: status %d/%d", entry_names[e], (int)a, (int)b);
                    if ((1 << e) & WITH_LOSS)
                        CHECK(to_bits(loss_pos) == to_bits(loss_neg),
                              "%s: %s[%zu] = -0.0 gives loss %.9g, +0.0 gives %.9g (%zu elements)", entry_names[e],
                              side ? "target" : "pred", at, loss_neg, loss_pos, n);
                    if ((1 << e) & WITH_GRAD) {
                        for (k = 0; k < n; ++k) same = same && g_pos[k] == g_neg[k];
                        CHECK(same, "%s: %s[%zu] = -0.0 changes the gradient", entry_names[e],
                              side ? "target" : "pred", at);
                    }
                }
                buffer[at] = saved;
            }
        }
        free(p);
        free(t);
        free(g_pos);
        free(g_neg);
    }
    row_end("negative-zero", "0 SEGLOSS_OK, as +0.0");
}

/* The result of entry e into fresh aligned buffers: loss bits and gradient. */
static segloss_status reference(int e, const float *p, const float *t, size_t n, float *loss, float *grad) {
    *loss = 0;
    return call(e, p, t, n, usual, loss, grad);
}

/* pred, target and grad_pred at byte offsets 0-3 from an aligned address (every combination):
 * the same status and the same bits as from aligned copies. */
static void row_unaligned(void) {
    static const size_t sizes[] = {7, 70001};
    size_t s, k;
    int e, op, ot, og;
    row_begin();
    for (s = 0; s < 2; ++s) {
        size_t n = sizes[s], bytes = n * sizeof(float);
        float *p = floats(n), *t = floats(n), *want_grad = floats(n);
        fill_valid(p, t, n, 1);
        for (e = 0; e < ENTRIES; ++e) {
            float want_loss;
            CHECK(reference(e, p, t, n, &want_loss, want_grad) == SEGLOSS_OK, "aligned reference");
            for (op = 0; op < 4; ++op)
                for (ot = 0; ot < 4; ++ot)
                    for (og = 0; og < 4; ++og) {
                        unsigned char *pb = (unsigned char *)malloc(bytes + 4);
                        unsigned char *tb = (unsigned char *)malloc(bytes + 4);
                        output grad = output_make(n, (size_t)og), loss = output_make(1, 0);
                        float *pu = (float *)(void *)(pb + op), *tu = (float *)(void *)(tb + ot);
                        segloss_status got;
                        if (op + ot + og == 0) { free(pb); free(tb); output_free(&grad); output_free(&loss); continue; }
                        memcpy(pb + op, p, bytes);
                        memcpy(tb + ot, t, bytes);
                        got = call(e, pu, tu, n, usual, loss.data, grad.data);
                        CHECK(got == SEGLOSS_OK, "%s: offsets %d/%d/%d: status %d", entry_names[e], op, ot, og, (int)got);
                        if ((1 << e) & WITH_LOSS)
                            CHECK(memcmp(loss.data, &want_loss, sizeof(float)) == 0,
                                  "%s: offsets %d/%d/%d: loss differs from aligned", entry_names[e], op, ot, og);
                        if ((1 << e) & WITH_GRAD)
                            CHECK(memcmp(grad.data, want_grad, bytes) == 0 && output_written(&grad),
                                  "%s: offsets %d/%d/%d: gradient differs from aligned", entry_names[e], op, ot, og);
                        else
                            CHECK(output_untouched(&grad), "%s wrote a gradient", entry_names[e]);
                        CHECK(memcmp(pb + op, p, bytes) == 0 && memcmp(tb + ot, t, bytes) == 0,
                              "%s changed an input", entry_names[e]);
                        /* An error from an unaligned buffer leaves the unaligned outputs untouched. */
                        if (og == 1 || og == 3) {
                            float bad = from_bits(0x7FC00000u);
                            output_reset(&grad);
                            output_reset(&loss);
                            memcpy(pb + op + (n - 1) * sizeof(float), &bad, sizeof bad);
                            got = call(e, pu, tu, n, usual, loss.data, grad.data);
                            CHECK(got == SEGLOSS_ERROR_PRED_OUT_OF_RANGE, "unaligned NaN pred: %d", (int)got);
                            CHECK(output_untouched(&grad) && output_untouched(&loss),
                                  "%s: unaligned outputs written on error", entry_names[e]);
                        }
                        free(pb);
                        free(tb);
                        output_free(&grad);
                        output_free(&loss);
                    }
        }
        free(p);
        free(t);
        free(want_grad);
    }
    (void)k;
    row_end("unaligned", "0 SEGLOSS_OK, bits as aligned");
}

/* grad_pred == pred: the same loss and gradient bits as out of place; aligned and at an odd
 * address; on 1 and 4 threads. */
static void row_in_place(void) {
    static const size_t sizes[] = {1, 7, 70001, 262147};
    static const int threads[] = {1, 4};
    size_t s;
    int e, th, offset;
    row_begin();
    for (th = 0; th < 2; ++th) {
        segloss_set_num_threads(threads[th]);
        for (s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
            size_t n = sizes[s], bytes = n * sizeof(float);
            float *p = floats(n), *t = floats(n), *want_grad = floats(n);
            fill_valid(p, t, n, (int)(s & 1));
            for (e = 0; e < ENTRIES; ++e) {
                float want_loss;
                if (!((1 << e) & WITH_GRAD)) continue;
                CHECK(reference(e, p, t, n, &want_loss, want_grad) == SEGLOSS_OK, "out-of-place reference");
                for (offset = 0; offset < 2; ++offset) {
                    output inplace = output_make(n, (size_t)offset), loss = output_make(1, 0);
                    segloss_status got;
                    memcpy(inplace.data, p, bytes);
                    got = call(e, inplace.data, t, n, usual, loss.data, inplace.data);
                    CHECK(got == SEGLOSS_OK, "%s in place: status %d", entry_names[e], (int)got);
                    CHECK(memcmp(inplace.data, want_grad, bytes) == 0,
                          "%s in place (offset %d, %zu elements): gradient differs", entry_names[e], offset, n);
                    if ((1 << e) & WITH_LOSS)
                        CHECK(memcmp(loss.data, &want_loss, sizeof(float)) == 0, "%s in place: loss differs",
                              entry_names[e]);
                    output_free(&inplace);
                    output_free(&loss);
                }
            }
            free(p);
            free(t);
            free(want_grad);
        }
    }
    segloss_set_num_threads(0);
    row_end("in-place", "0 SEGLOSS_OK, bits as out of place");
}

/* In place with an error: pred (the output too) bitwise untouched. */
static void row_in_place_error(void) {
    static const size_t sizes[] = {7, 70001};
    size_t s;
    int e, c;
    row_begin();
    for (s = 0; s < 2; ++s) {
        size_t n = sizes[s], bytes = n * sizeof(float);
        float *p = floats(n), *t = floats(n);
        fill_valid(p, t, n, 1);
        for (e = 0; e < ENTRIES; ++e) {
            if (!((1 << e) & WITH_GRAD)) continue;
            for (c = 0; c < 5; ++c) {
                output inplace = output_make(n, (size_t)(c & 1)), loss = output_make(1, 0);
                unsigned char *before = (unsigned char *)malloc(bytes);
                scalars a = usual;
                segloss_status want, got;
                float saved_t = t[n - 1];
                memcpy(inplace.data, p, bytes);
                switch (c) {
                case 0: inplace.data[n - 1] = 1.5f; want = SEGLOSS_ERROR_PRED_OUT_OF_RANGE; break;
                case 1: t[n - 1] = -1.0f; want = SEGLOSS_ERROR_TARGET_OUT_OF_RANGE; break;
                case 2: a.smooth = -1.0f; want = ((1 << e) & SMOOTHED) ? SEGLOSS_ERROR_INVALID_ARGUMENT : SEGLOSS_OK; break;
                case 3: a.grad_loss = (float)NAN; want = ((1 << e) & GRAD_LOSS) ? SEGLOSS_ERROR_INVALID_ARGUMENT : SEGLOSS_OK; break;
                default: inplace.data[0] = (float)NAN; t[n - 1] = 2.0f; want = SEGLOSS_ERROR_PRED_OUT_OF_RANGE; break;
                }
                memcpy(before, inplace.data, bytes);
                got = call(e, inplace.data, t, n, a, loss.data, inplace.data);
                t[n - 1] = saved_t;
                CHECK(got == want, "%s in place, case %d: status %d, want %d", entry_names[e], c, (int)got, (int)want);
                if (want != SEGLOSS_OK) {
                    CHECK(memcmp(before, inplace.data, bytes) == 0, "%s in place, case %d: pred changed on error",
                          entry_names[e], c);
                    CHECK(output_untouched(&loss), "%s in place, case %d: loss written on error", entry_names[e], c);
                }
                free(before);
                output_free(&inplace);
                output_free(&loss);
            }
        }
        free(p);
        free(t);
    }
    row_end("in-place-error", "4/5/3, pred untouched");
}

/* Several things wrong at once: the first check in the order NULL, count, scalars, pred,
 * target decides. */
static void row_order(void) {
    enum { N = 70001 };
    float *p = floats(N), *t = floats(N);
    scalars bad = usual;
    bad.weight_bce = bad.weight_dice = bad.smooth = bad.grad_loss = (float)NAN;
    fill_valid(p, t, N, 1);
    row_begin();
    /* NULL before count 0 and before a count too large: row null-count0. */
    /* count 0 and count too large before bad scalars and bad data. */
    p[0] = 2.0f;
    t[0] = -1.0f;
    expect(ALL, p, t, N, 0, bad, 0, SEGLOSS_ERROR_EMPTY_INPUT, "count 0, scalars and data bad");
    expect(ALL, p, t, N, SIZE_MAX, bad, 0, SEGLOSS_ERROR_COUNT_TOO_LARGE, "count SIZE_MAX, scalars and data bad");
    /* a bad scalar before bad data. */
    expect(SMOOTHED | GRAD_LOSS, p, t, N, N, bad, 0, SEGLOSS_ERROR_INVALID_ARGUMENT, "scalars and data bad");
    /* a bad pred anywhere before a bad target anywhere (pred's at the end, target's first;
     * 70,001 elements: in different chunks, on different threads). */
    p[0] = 0.5f;
    p[N - 1] = (float)NAN;
    segloss_set_num_threads(4);
    expect(ALL, p, t, N, N, usual, 0, SEGLOSS_ERROR_PRED_OUT_OF_RANGE, "pred and target bad");
    segloss_set_num_threads(1);
    expect(ALL, p, t, N, N, usual, 0, SEGLOSS_ERROR_PRED_OUT_OF_RANGE, "pred and target bad");
    segloss_set_num_threads(0);
    /* a NULL output before everything else. */
    expect(WITH_LOSS, p, t, N, N, bad, NULL_LOSS, SEGLOSS_ERROR_NULL_POINTER, "loss NULL, the rest bad");
    expect(WITH_GRAD, p, t, N, N, bad, NULL_GRAD, SEGLOSS_ERROR_NULL_POINTER, "grad NULL, the rest bad");
    free(p);
    free(t);
    row_end("order", "first of 1, 2/6, 3, 4, 5");
}

/* segloss_status_string: a static, non-empty message for every status (the README table
 * quotes those of 0-6), "unknown segloss status" for values no status has. */
static void row_messages(void) {
    static const char *const messages[7] = {
        "success",
        "a pointer argument is NULL",
        "count is 0: the loss of no elements is undefined",
        "invalid argument: weights and smooth must be finite and >= 0, grad_loss finite",
        "all elements of pred should be between 0 and 1 (and not NaN)",
        "all elements of target should be between 0 and 1 (and not NaN)",
        "count is too large: count * sizeof(float) exceeds PTRDIFF_MAX"};
    static const int unknown[] = {9, 100, 0x7FFFFFFF};
    int s;
    row_begin();
    for (s = 0; s <= 8; ++s) {
        const char *m = segloss_status_string((segloss_status)s);
        CHECK(m != NULL && m[0] != '\0', "status %d: no message", s);
        CHECK(m == segloss_status_string((segloss_status)s), "status %d: message not static", s);
        if (s <= 6 && m != NULL)
            CHECK(strcmp(m, messages[s]) == 0, "status %d: message \"%s\", README says \"%s\"", s, m, messages[s]);
    }
    for (s = 0; s < 3; ++s) {
        const char *m = segloss_status_string((segloss_status)unknown[s]);
        CHECK(m != NULL && strcmp(m, "unknown segloss status") == 0, "status %d: \"%s\"", unknown[s],
              m ? m : "(NULL)");
    }
    row_end("messages", "segloss_status_string");
    printf("  (status 7: \"%s\"; status 8: \"%s\")\n", segloss_status_string((segloss_status)7),
           segloss_status_string((segloss_status)8));
}

int main(void) {
    fill_valid(small_pred, small_target, 16, 1);
    printf("bad_input_test: README's bad-input table, row by row (kernel %s)\n", segloss_kernel_name());
    row_null_pointers();
    row_null_count0();
    row_count0();
    row_count_overflow();
    row_bad_scalars();
    row_scalar_edges();
    row_data();
    row_value_edges();
    row_negative_zero();
    row_unaligned();
    row_in_place();
    row_in_place_error();
    row_order();
    row_messages();
    printf("bad_input_test: %d passed, %d failed\n", rows_passed, rows_failed);
    return rows_failed == 0 ? 0 : 1;
}
