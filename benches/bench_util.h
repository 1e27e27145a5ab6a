/* Helpers shared by the C benchmark harnesses (pam_bench.c, dlopen_bench.c). */
#ifndef ECS_MFA_BENCH_UTIL_H
#define ECS_MFA_BENCH_UTIL_H

#include <time.h>

/* Monotonic time in microseconds. */
static inline double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* qsort comparator for latencies. */
static inline int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
