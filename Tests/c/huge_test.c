/* A forward and a fused call over more than 2^31 elements, with no 2^31-element buffers: each
 * input is one 2 MiB pattern (a memfd) mapped again and again at consecutive addresses, so
 * 8 GiB of address space needs 2 MiB of memory. Any 32-bit count or index inside the library
 * would lose elements and show in the loss, which is checked against a float64 reference of
 * the same sums (the pattern's sums times the repetitions). Only the forward: a gradient
 * would need 8 GiB of writable memory. Linux only; skips elsewhere or where the mappings
 * cannot be made. */
#define _GNU_SOURCE
#include <segloss.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { PERIOD = 1 << 19 }; /* floats in one 2 MiB pattern */

/* Maps the pattern `repeats` times in a row; NULL when the system refuses. */
static float *map_repeated(const float *pattern, size_t repeats) {
    const size_t bytes = PERIOD * sizeof(float);
    int fd = memfd_create("segloss-huge-test", 0);
    char *base;
    size_t r;
    if (fd < 0) return NULL;
    if (ftruncate(fd, (off_t)bytes) != 0 || write(fd, pattern, bytes) != (ssize_t)bytes) {
        close(fd);
        return NULL;
    }
    base = mmap(NULL, bytes * repeats, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0);
    if (base == MAP_FAILED) {
        close(fd);
        return NULL;
    }
    for (r = 0; r < repeats; ++r) {
        if (mmap(base + r * bytes, bytes, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
            munmap(base, bytes * repeats);
            close(fd);
            return NULL;
        }
    }
    close(fd);
    return (float *)base;
}

int main(void) {
    /* 8193 repetitions: 2^32 + 2^19 elements, past every 32-bit boundary (a count cut to 32
     * bits would keep one repetition). A large smooth makes the Dice depend on the number of
     * repetitions, not only on their ratio. */
    const size_t repeats = 8193, count = repeats * (size_t)PERIOD;
    const float smooth = 1e5f;
    static float pred_pattern[PERIOD], target_pattern[PERIOD];
    double i_sum = 0, p_sum = 0, t_sum = 0, e_sum = 0, dice, bce, want;
    float *pred, *target, loss = 0;
    size_t k;
    int failures = 0;

    for (k = 0; k < PERIOD; ++k) {
        pred_pattern[k] = (float)((k * 2654435761u) % 1000 + 1) / 1002.0f;
        target_pattern[k] = (k % 5 == 0) ? 1.0f : 0.0f;
        i_sum += (double)pred_pattern[k] * target_pattern[k];
        p_sum += pred_pattern[k];
        t_sum += target_pattern[k];
        e_sum -= target_pattern[k] ? log(pred_pattern[k]) : log1p(-(double)pred_pattern[k]);
    }
    pred = map_repeated(pred_pattern, repeats);
    target = map_repeated(target_pattern, repeats);
    if (!pred || !target) {
        printf("huge_test: skipped (the mappings could not be made)\n");
        return 0;
    }
    dice = 1 - (2 * i_sum * repeats + smooth) / ((p_sum + t_sum) * repeats + smooth);
    bce = e_sum / PERIOD; /* the mean over all repetitions is the mean over one */
    want = 0.5 * bce + 0.5 * dice;

    if (segloss_bce_dice_forward(pred, target, count, 0.5f, 0.5f, smooth, &loss) != SEGLOSS_OK ||
        fabs(loss - want) > 1e-6 * want) {
        fprintf(stderr, "FAIL forward over %zu elements: %.9g, want %.9g\n", count, loss, want);
        ++failures;
    }
    printf("huge_test (%zu elements): %d passed, %d failed\n", count, 1 - failures, failures);
    return failures == 0 ? 0 : 1;
}
#else
#include <stdio.h>
int main(void) {
    printf("huge_test: skipped (Linux on x86-64 or arm64 only)\n");
    return 0;
}
#endif
