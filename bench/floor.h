/* floor.h — the memory-floor kernel timed next to segloss (see floor.c). */
#ifndef BENCH_FLOOR_H
#define BENCH_FLOOR_H

#include <stddef.h>

/* Moves the bytes a fused BCE+Dice forward+backward must move and does no real math:
 * pass 1 sums pred and target, pass 2 writes grad = pred - target. `threads` OpenMP
 * threads each take one contiguous range of the elements. Returns sum(pred) + sum(target). */
float floor_fused(const float *pred, const float *target, float *grad, size_t count,
                  int threads);

#endif
