/*
 * pam_bench: drives Linux-PAM the way sshd does, one pam_start/pam_authenticate/pam_end per
 * authentication, with a scripted conversation, and reports throughput and latency.
 *
 *   pam_bench CONFDIR SERVICE CODE < users
 *
 * Reads one user name per line from stdin and authenticates each once, answering every
 * prompt with CODE. Prints one line:
 *   count=N ok=N elapsed_s=F per_s=F p50_us=F p99_us=F maxrss_kb=N
 * Uses pam_start_confdir (Linux-PAM >= 1.4) so the service file comes from CONFDIR and the
 * host's /etc/pam.d is never touched. Built and run by scripts/bench.
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

static const char *answer;

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
    (void)data;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
            r[i].resp = strdup(answer);
    }
    *resp = r;
    return PAM_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s CONFDIR SERVICE CODE < users\n", argv[0]);
        return 2;
    }
    answer = argv[3];
    struct pam_conv pc = {conv, NULL};
    size_t cap = 1024, n = 0, ok = 0;
    double *lat = malloc(cap * sizeof *lat);
    char user[256];
    double start = now_us();
    while (fgets(user, sizeof user, stdin)) {
        user[strcspn(user, "\n")] = 0;
        if (!*user)
            continue;
        double t0 = now_us();
        pam_handle_t *ph = NULL;
        int rc = pam_start_confdir(argv[2], user, &pc, argv[1], &ph);
        if (rc == PAM_SUCCESS)
            rc = pam_authenticate(ph, PAM_SILENT);
        if (ph)
            pam_end(ph, rc);
        if (n == cap)
            lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[n++] = now_us() - t0;
        ok += rc == PAM_SUCCESS;
    }
    double elapsed = (now_us() - start) / 1e6;
    qsort(lat, n, sizeof *lat, cmp);
    /* VmHWM, not getrusage: ru_maxrss keeps the forking shell's peak across execve. */
    long hwm = -1;
    char line[256];
    FILE *st = fopen("/proc/self/status", "r");
    while (st && fgets(line, sizeof line, st))
        if (sscanf(line, "VmHWM: %ld kB", &hwm) == 1)
            break;
    if (st)
        fclose(st);
    printf("count=%zu ok=%zu elapsed_s=%.4f per_s=%.1f p50_us=%.1f p99_us=%.1f maxrss_kb=%ld\n",
           n, ok, elapsed, n / elapsed, n ? lat[n / 2] : 0, n ? lat[(n * 99) / 100] : 0, hwm);
    return 0;
}
