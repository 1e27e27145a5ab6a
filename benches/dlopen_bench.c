/*
 * dlopen_bench: the load cost of a PAM module alone, as Linux-PAM pays it for every
 * pam_start/pam_end (sshd loads the stack afresh for each connection): dlopen(RTLD_NOW),
 * dlsym(pam_sm_authenticate), dlclose, in a process that already has libpam and libc loaded
 * (as sshd has), so only what the module itself brings in is counted.
 *
 *   dlopen_bench MODULE N
 *
 * Prints one line: count=N per_s=F p50_us=F p99_us=F
 * Built and run by scripts/bench-load (part of scripts/bench).
 */
#include <dlfcn.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODULE N\n", argv[0]);
        return 2;
    }
    /* Keeps libpam loaded (and linked even with --as-needed), as in sshd. */
    if (!pam_strerror(NULL, PAM_SUCCESS))
        return 2;
    int n = atoi(argv[2]);
    if (n <= 0)
        return 2;
    double *lat = malloc((size_t)n * sizeof *lat);
    double start = now_us();
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen_bench: %s\n", dlerror());
            return 1;
        }
        if (!dlsym(h, "pam_sm_authenticate")) {
            fprintf(stderr, "dlopen_bench: %s has no pam_sm_authenticate\n", argv[1]);
            return 1;
        }
        dlclose(h);
        lat[i] = now_us() - t0;
    }
    double elapsed = (now_us() - start) / 1e6;
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("count=%d per_s=%.1f p50_us=%.1f p99_us=%.1f\n", n, n / elapsed, lat[n / 2],
           lat[(n * 99) / 100]);
    return 0;
}
