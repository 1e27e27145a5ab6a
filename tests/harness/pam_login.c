/*
 * A PAM application for the tier-2 tests that pamtester cannot play: it authenticates like
 * pamtester (answers to hidden and echoed prompts are read from stdin, one line each; prompts
 * and messages go to stderr), then, like sshd, login and su, calls
 * pam_setcred(PAM_ESTABLISH_CRED) only if authentication succeeded.
 *
 *   pam_login SERVICE USER [setcred]
 *
 * Environment: PAM_LOGIN_SERVICE overrides SERVICE; PAM_LOGIN_RHOST and PAM_LOGIN_RUSER set
 * those items. Exit 0 and "pam_login: authenticated" on success, 1 with PAM's error otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stdin_conv.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pam_login SERVICE USER [setcred]\n");
        return 2;
    }
    const char *service = getenv("PAM_LOGIN_SERVICE") ? getenv("PAM_LOGIN_SERVICE") : argv[1];
    struct pam_conv c = {stdin_conv, NULL};
    pam_handle_t *pamh = NULL;
    int rc = pam_start(service, argv[2], &c, &pamh);
    if (rc != PAM_SUCCESS) {
        fprintf(stderr, "pam_login: pam_start: %d\n", rc);
        return 1;
    }
    if (getenv("PAM_LOGIN_RHOST"))
        pam_set_item(pamh, PAM_RHOST, getenv("PAM_LOGIN_RHOST"));
    if (getenv("PAM_LOGIN_RUSER"))
        pam_set_item(pamh, PAM_RUSER, getenv("PAM_LOGIN_RUSER"));
    rc = pam_authenticate(pamh, 0);
    if (rc == PAM_SUCCESS && argc > 3 && strcmp(argv[3], "setcred") == 0)
        rc = pam_setcred(pamh, PAM_ESTABLISH_CRED);
    if (rc == PAM_SUCCESS)
        fprintf(stderr, "pam_login: authenticated\n");
    else
        fprintf(stderr, "pam_login: %s\n", pam_strerror(pamh, rc));
    pam_end(pamh, rc);
    return rc == PAM_SUCCESS ? 0 : 1;
}
