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

/* The floating-point control state of the calling thread (x86 MXCSR, arm64 FPCR): rounding
 * mode, flush-to-zero, denormals-are-zero. Each thread has its own, and a host program may
 * change it (torch.set_flush_denormal, code built with -Ofast), so segloss runs every pass
 * under the IEEE default on every thread and restores the caller's state afterwards. */
static inline unsigned long segloss_fp_state_get(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_stmxcsr();
#elif defined(__aarch64__)
    unsigned long fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
#else
    return 0;
#endif
}

static inline void segloss_fp_state_set(unsigned long state) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_ldmxcsr((unsigned)state);
#elif defined(__aarch64__)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(state));
#else
    (void)state;
#endif
}

/* The IEEE default: round to nearest, no flush-to-zero, all exceptions masked. */
static inline unsigned long segloss_fp_state_default(void) {
#if defined(__x86_64__) || defined(__i386__)
    return 0x1F80;
#else
    return 0;
#endif
}

/* Blocks every signal in the calling thread: pool threads leave signals to the host's own. */
void segloss_block_signals(void) __attribute__((visibility("hidden")));

/* Registers `child` to run in the child process after fork() (pthread_atfork); 0 on success. */
int segloss_at_fork_child(void (*child)(void)) __attribute__((visibility("hidden")));

#endif
