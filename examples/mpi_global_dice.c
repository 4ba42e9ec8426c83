/* Global Dice across MPI ranks with segloss's split-phase API, checked against one process.
 *
 * Every rank makes the same whole batch (a deterministic generator), takes its own slice of
 * samples (uneven splits: 7 samples over 2 ranks are 4 + 3, over 4 ranks 2 + 2 + 2 + 1), and
 *
 *   1. segloss_compute_sums        the sums of its slice,
 *   2. MPI_Allreduce(MPI_SUM)      adds them up across ranks,
 *   3. segloss_loss_from_sums      the loss of the whole batch (the same on every rank),
 *      segloss_backward_from_sums  the gradient of that loss w.r.t. its own elements.
 *
 * Rank 0 gathers the ranks' losses and gradient slices and compares them with
 * segloss_forward_backward on the whole batch in one process: loss within 1e-6 relative,
 * gradient elementwise within 1e-5 relative plus 1e-6 * max|grad|. The cases: every segments
 * mode x probabilities and logits x every empty policy, each without and with a mask (per
 * element or per pixel, in turn; masked-out pred elements hold out-of-range values, which
 * the library must ignore); BCE + Dice (0.5 + 0.5), float32 pred, and float64 pred with
 * uint8 target in the masked cases. One line per case; the exit status is non-zero on any
 * mismatch (every rank's).
 *
 *   mpicc -std=c99 -Wall -Wextra -Werror -Iinclude examples/mpi_global_dice.c \
 *       -L.build/release -lsegloss -Wl,-rpath,$PWD/.build/release -lm -o mpi_global_dice
 *   mpirun -np 4 ./mpi_global_dice          (make mpi-test runs it on 1, 2 and 4 ranks)
 */
#include <segloss.h>

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 7, C = 3, H = 6, W = 8, S = H * W, ELEMENTS = N * C * S };

static const double LOSS_RTOL = 1e-6, GRAD_RTOL = 1e-5, GRAD_ATOL_OF_MAX = 1e-6;

/* ---- the whole batch, the same on every rank ---------------------------------------- */

static unsigned long long rng_state;

static double uniform(void) { /* [0, 1), 53 bits, xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* A small-object batch: each (sample, channel) has a small rectangle of foreground or none;
 * sample 3 is empty in every channel and channel 2 in every sample (so the empty policy
 * matters for every segments mode but ALL, whose one segment is not empty), sample 6 has
 * one-pixel objects. */
static float target_all[ELEMENTS];
static double prob_all[ELEMENTS];
static unsigned char mask_element_all[ELEMENTS], mask_pixel_all[N * S];

static void make_batch(void) {
    rng_state = 0x5E6105511ULL;
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            int empty = n == 3 || c == 2 || (n == 1 && c == 1);
            int h = n == 6 ? 1 : 1 + (int)(uniform() * 3), w = n == 6 ? 1 : 1 + (int)(uniform() * 4);
            int top = (int)(uniform() * (H - h + 1)), left = (int)(uniform() * (W - w + 1));
            for (int s = 0; s < S; s++) {
                int y = s / W, x = s % W;
                size_t i = ((size_t)n * C + c) * S + s;
                int inside = !empty && y >= top && y < top + h && x >= left && x < left + w;
                target_all[i] = inside ? 1.0f : 0.0f;
                /* a fair prediction: high on the object, low elsewhere, with some misses */
                prob_all[i] = inside ? 0.35 + 0.6 * uniform() : 0.45 * uniform() * uniform();
                mask_element_all[i] = uniform() < 0.8;
            }
        }
        for (int s = 0; s < S; s++) mask_pixel_all[n * S + s] = uniform() < 0.8;
    }
}

/* ---- one case ---------------------------------------------------------------------- */

typedef struct {
    int segments, input, empty_policy, mask; /* mask: 0 none, 1 per element, 2 per pixel */
} test_case;

static const char *SEGMENTS_NAMES[] = {"all", "sample", "channel", "sample_channel"};
static const char *INPUT_NAMES[] = {"probabilities", "logits"};
static const char *EMPTY_NAMES[] = {"keep", "zero", "exclude"};
static const char *MASK_NAMES[] = {"none", "per-element", "per-pixel"};

static int rank, size;

static void check(segloss_status status, const char *function) {
    if (status != SEGLOSS_OK) {
        fprintf(stderr, "rank %d: %s: %s\n", rank, function, segloss_status_string(status));
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
}

/* Samples [*offset, *offset + *count) of N are this rank's: the first N % size ranks have
 * one more. (Every rank needs at least one sample: shape.batch must be >= 1.) */
static void my_slice(int r, int *offset, int *count) {
    int base = N / size, extra = N % size;
    *count = base + (r < extra);
    *offset = r * base + (r < extra ? r : extra);
}

/* The pred buffer of the whole batch for this case: probabilities or their logits, float32
 * or float64; masked-out elements hold values out of range (the library must not look). */
static void make_pred(const test_case *tc, int pred_dtype, const unsigned char *mask_of_element,
                      void *pred) {
    for (size_t i = 0; i < ELEMENTS; i++) {
        double p = prob_all[i], v;
        if (tc->input == SEGLOSS_INPUT_LOGITS)
            v = log(fmax(p, 1e-6)) - log1p(-fmin(p, 1 - 1e-6));
        else
            v = p;
        if (mask_of_element && !mask_of_element[i]) v = tc->input == SEGLOSS_INPUT_LOGITS ? NAN : 7.5;
        if (pred_dtype == SEGLOSS_FLOAT64)
            ((double *)pred)[i] = v;
        else
            ((float *)pred)[i] = (float)v;
    }
}

static double grad_at(const void *grad, int dtype, size_t i) {
    return dtype == SEGLOSS_FLOAT64 ? ((const double *)grad)[i] : (double)((const float *)grad)[i];
}

/* Runs one case on every rank; rank 0 returns 1 when it passed (other ranks return the
 * broadcast verdict). */
static int run_case(int index, const test_case *tc) {
    const int pred_dtype = tc->mask ? SEGLOSS_FLOAT64 : SEGLOSS_FLOAT32;
    const int target_dtype = tc->mask ? SEGLOSS_UINT8 : SEGLOSS_FLOAT32;
    const size_t pred_size = pred_dtype == SEGLOSS_FLOAT64 ? sizeof(double) : sizeof(float);
    const size_t target_size = target_dtype == SEGLOSS_UINT8 ? 1 : sizeof(float);
    static double pred_all[ELEMENTS], grad_mine[ELEMENTS], grad_gathered[ELEMENTS],
        grad_ref[ELEMENTS];
    static float target_f32[ELEMENTS];
    static unsigned char target_u8[ELEMENTS], element_valid[ELEMENTS];
    const unsigned char *mask_all = NULL, *valid = NULL;
    const void *target_buf;
    segloss_options options;
    segloss_shape shape;
    segloss_slice slice;
    int offset, count, passed = 1;
    size_t length = 0, per_sample_mask;
    double *sums;
    double loss = 0, loss_ref = 0, local_loss = 0;

    if (tc->mask == 1) {
        mask_all = mask_element_all;
        valid = mask_element_all;
    } else if (tc->mask == 2) {
        mask_all = mask_pixel_all;
        for (size_t i = 0; i < ELEMENTS; i++)
            element_valid[i] = mask_pixel_all[(i / (C * S)) * S + i % S];
        valid = element_valid;
    }
    per_sample_mask = tc->mask == 2 ? S : (size_t)C * S;
    make_pred(tc, pred_dtype, valid, pred_all);
    for (size_t i = 0; i < ELEMENTS; i++) {
        target_f32[i] = target_all[i];
        target_u8[i] = (unsigned char)target_all[i];
    }
    target_buf = target_dtype == SEGLOSS_UINT8 ? (const void *)target_u8 : (const void *)target_f32;

    check(segloss_options_init(&options), "segloss_options_init");
    options.segments = tc->segments;
    options.input = tc->input;
    options.empty_policy = tc->empty_policy;

    /* This rank's slice: its samples, and where they sit in the whole batch. */
    my_slice(rank, &offset, &count);
    shape.batch = (size_t)count;
    shape.channels = C;
    shape.spatial = S;
    shape.pred_dtype = pred_dtype;
    shape.target_dtype = target_dtype;
    shape.mask_layout = tc->mask == 2 ? SEGLOSS_MASK_PER_PIXEL : SEGLOSS_MASK_PER_ELEMENT;
    slice.sample_offset = (size_t)offset;
    slice.total_batch = N;
    {
        const size_t first = (size_t)offset * C * S;
        const char *pred = (const char *)pred_all + first * pred_size;
        const char *target = (const char *)target_buf + first * target_size;
        const unsigned char *mask = mask_all ? mask_all + (size_t)offset * per_sample_mask : NULL;

        check(segloss_sums_length(&options, &shape, &slice, &length), "segloss_sums_length");
        sums = malloc(length * sizeof *sums);
        if (!sums) MPI_Abort(MPI_COMM_WORLD, 3);
        /* 1. this slice's sums (zeros in other ranks' per-sample segments) */
        check(segloss_compute_sums(&options, &shape, &slice, pred, target, mask, sums, length),
              "segloss_compute_sums");
        /* 2. the sums of the whole batch, on every rank */
        MPI_Allreduce(MPI_IN_PLACE, sums, (int)length, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        /* 3. the loss of the whole batch, and the gradient of this rank's elements */
        check(segloss_loss_from_sums(&options, &shape, &slice, sums, length, &loss, NULL),
              "segloss_loss_from_sums");
        check(segloss_backward_from_sums(&options, &shape, &slice, pred, target, mask, sums, length, 1.0,
                                         grad_mine),
              "segloss_backward_from_sums");
        free(sums);
        /* For contrast: what averaging the ranks' own losses would give. */
        check(segloss_forward(&options, &shape, pred, target, mask, &local_loss, NULL, NULL),
              "segloss_forward");
        MPI_Allreduce(MPI_IN_PLACE, &local_loss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        local_loss /= size;
    }

    /* Rank 0 collects every rank's loss and gradient slice. */
    {
        double losses[64];
        int counts[64], displs[64];
        for (int r = 0; r < size; r++) {
            int o, k;
            my_slice(r, &o, &k);
            counts[r] = k * C * S * (int)pred_size;
            displs[r] = o * C * S * (int)pred_size;
        }
        MPI_Gather(&loss, 1, MPI_DOUBLE, losses, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        MPI_Gatherv(grad_mine, counts[rank], MPI_BYTE, grad_gathered, counts, displs, MPI_BYTE, 0,
                    MPI_COMM_WORLD);
        if (rank == 0) {
            segloss_shape whole = shape;
            double loss_err = 0, grad_err = 0, grad_max = 0, loss_spread = 0;
            whole.batch = N;
            check(segloss_forward_backward(&options, &whole, pred_all, target_buf, mask_all,
                                           &loss_ref, grad_ref, NULL, NULL),
                  "segloss_forward_backward");
            for (int r = 0; r < size; r++) {
                double e = fabs(losses[r] - loss_ref);
                if (!(e <= LOSS_RTOL * fabs(loss_ref))) passed = 0;
                if (e > loss_err) loss_err = e;
                if (fabs(losses[r] - losses[0]) > loss_spread) loss_spread = fabs(losses[r] - losses[0]);
            }
            for (size_t i = 0; i < ELEMENTS; i++)
                if (fabs(grad_at(grad_ref, pred_dtype, i)) > grad_max)
                    grad_max = fabs(grad_at(grad_ref, pred_dtype, i));
            for (size_t i = 0; i < ELEMENTS; i++) {
                double g = grad_at(grad_gathered, pred_dtype, i), ref = grad_at(grad_ref, pred_dtype, i);
                double e = fabs(g - ref);
                /* relative to the tolerance: <= 1 passes */
                double scaled = e / (GRAD_RTOL * fabs(ref) + GRAD_ATOL_OF_MAX * grad_max);
                if (!(scaled <= 1)) passed = 0;
                if (!(scaled <= grad_err)) grad_err = scaled;
            }
            printf("ranks %d case %2d %-14s %-13s empty %-7s mask %-11s %s: loss %.9f, "
                   "one process %.9f (rel diff %.1e, spread over ranks %.1e), grad err/tol %.3f; "
                   "rank-average loss %.6f  %s\n",
                   size, index, SEGMENTS_NAMES[tc->segments], INPUT_NAMES[tc->input],
                   EMPTY_NAMES[tc->empty_policy], MASK_NAMES[tc->mask],
                   pred_dtype == SEGLOSS_FLOAT64 ? "f64" : "f32", losses[0], loss_ref,
                   loss_err / fabs(loss_ref), loss_spread, grad_err, local_loss,
                   passed ? "ok" : "MISMATCH");
            fflush(stdout);
        }
    }
    MPI_Bcast(&passed, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return passed;
}

int main(int argc, char **argv) {
    int failed = 0, cases = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > N || size > 64) {
        if (rank == 0) fprintf(stderr, "mpi_global_dice: run it on 1 to %d ranks\n", N);
        MPI_Finalize();
        return 2;
    }
    if (segloss_version_number() != SEGLOSS_VERSION_NUMBER) {
        if (rank == 0) fprintf(stderr, "header %d and library %u differ\n", SEGLOSS_VERSION_NUMBER,
                               segloss_version_number());
        MPI_Finalize();
        return 2;
    }
    make_batch();
    for (int segments = 0; segments < 4; segments++)
        for (int input = 0; input < 2; input++)
            for (int empty = 0; empty < 3; empty++)
                for (int masked = 0; masked < 2; masked++) {
                    test_case tc;
                    tc.segments = segments;
                    tc.input = input;
                    tc.empty_policy = empty;
                    tc.mask = masked ? 1 + (segments + input + empty) % 2 : 0;
                    if (!run_case(cases, &tc)) failed++;
                    cases++;
                }
    if (rank == 0)
        printf("mpi_global_dice on %d rank%s: %d cases, %d passed, %d failed\n", size,
               size == 1 ? "" : "s", cases, cases - failed, failed);
    MPI_Finalize();
    return failed ? 1 : 0;
}
