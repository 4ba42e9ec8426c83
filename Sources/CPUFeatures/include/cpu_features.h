/* What the core asks of the platform that Swift cannot: the CPU's instruction-set level
 * and the CPUs this process may run on. Internal: not exported from libsegloss.so. */
#ifndef SEGLOSS_CPU_FEATURES_H
#define SEGLOSS_CPU_FEATURES_H

/* 0: baseline (SSE2, or any non-x86 CPU); 1: AVX2 and FMA; 2: also AVX-512 F/BW/DQ/VL. */
int segloss_cpu_level(void) __attribute__((visibility("hidden")));

/* The number of CPUs in this process's affinity mask (at least 1). */
int segloss_available_cpus(void) __attribute__((visibility("hidden")));

#endif
