/* CPU level detection. __builtin_cpu_supports checks CPUID and that the OS saves the wide
 * registers (XCR0), so a level reported here is one that can run. */
#define _GNU_SOURCE
#include "cpu_features.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

int segloss_cpu_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

int segloss_available_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0)
            return count;
    }
#endif
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

void segloss_block_signals(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

int segloss_at_fork_child(void (*child)(void)) {
    return pthread_atfork(NULL, NULL, child);
}
