/* What the core asks of the platform that Swift cannot: the CPU's instruction-set level
 * and the CPUs this process may run on. Internal: not exported from libsegloss.so. */
#ifndef SEGLOSS_CPU_FEATURES_H
#define SEGLOSS_CPU_FEATURES_H

/* 0: baseline (SSE2, or any non-x86 CPU); 1: AVX2 and FMA; 2: also AVX-512 F/BW/DQ/VL. */
int segloss_cpu_level(void) __attribute__((visibility("hidden")));

/* The number of CPUs in this process's affinity mask (at least 1). */
int segloss_available_cpus(void) __attribute__((visibility("hidden")));

/* A hint inside a spin-wait loop (x86 PAUSE, arm64 YIELD): Swift has none. Static inline,
 * so Swift code that imports this header inlines it. */
static inline void segloss_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
