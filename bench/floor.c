/* floor.c — the memory floor of fused BCE+Dice forward+backward.
 *
 * Compiled with -O3 -march=native -fopenmp by bench/run.py. It reads pred and target twice
 * and writes grad once, exactly like segloss_bce_dice_forward_backward (20 bytes per
 * element), but does no real math, so its time is what the memory system allows.
 *
 *   pass 1   every thread sums pred and target over its contiguous range
 *   barrier  (the real call needs every partial sum before its gradient pass)
 *   pass 2   every thread writes grad = pred - target over the same range
 *
 * Nothing can be skipped: the sums are returned (and printed by the caller as a
 * checksum), and grad is memory the caller owns. */
#include <omp.h>

#include "floor.h"

#define MAX_THREADS 256

float floor_fused(const float *pred, const float *target, float *grad, size_t count,
                  int threads)
{
    /* One 64-byte slot per thread, so the partial sums do not share a cache line. */
    float partial[MAX_THREADS][16];
    size_t team_size = 1;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;

#pragma omp parallel num_threads(threads)
    {
        size_t id = (size_t)omp_get_thread_num();
        size_t team = (size_t)omp_get_num_threads();
        size_t lo = count * id / team, hi = count * (id + 1) / team;
        if (id == 0) team_size = team;

        float sum_p = 0.0f, sum_t = 0.0f;
#pragma omp simd reduction(+ : sum_p, sum_t)
        for (size_t i = lo; i < hi; i++) {
            sum_p += pred[i];
            sum_t += target[i];
        }
        partial[id][0] = sum_p + sum_t;

#pragma omp barrier

#pragma omp simd
        for (size_t i = lo; i < hi; i++)
            grad[i] = pred[i] - target[i];
    }

    float total = 0.0f;
    for (size_t id = 0; id < team_size; id++) total += partial[id][0];
    return total;
}
