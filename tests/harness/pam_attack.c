/*
 * A hostile PAM application for tests/attack_login_surface.rs: runs a script of PAM calls on ONE handle,
 * in the order given, whatever the results (unlike sshd, login and su, it may call
 * pam_setcred after a failure, authenticate twice, or change PAM_USER in between).
 *
 *   pam_attack SERVICE USER OP...
 *   OP: auth | setcred | reinit | delete | user=NAME | rhost=ADDR | ruser=NAME
 *
 * Answers to prompts are read from stdin, one line each (as pamtester). Each call's result is
 * written to stderr as "pam_attack: OP rc=N". Exit 0 once the script ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stdin_conv.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pam_attack SERVICE USER OP...\n");
        return 2;
    }
    static const struct stdin_conv_style style = {.newline_after_prompt = 1};
    struct pam_conv c = {stdin_conv, (void *)&style};
    pam_handle_t *pamh = NULL;
    int rc = pam_start(argv[1], argv[2], &c, &pamh);
    if (rc != PAM_SUCCESS) {
        fprintf(stderr, "pam_attack: pam_start rc=%d\n", rc);
        return 1;
    }
    if (getenv("PAM_LOGIN_RHOST"))
        pam_set_item(pamh, PAM_RHOST, getenv("PAM_LOGIN_RHOST"));
    for (int i = 3; i < argc; i++) {
        const char *op = argv[i];
        if (strcmp(op, "auth") == 0)
            rc = pam_authenticate(pamh, 0);
        else if (strcmp(op, "setcred") == 0)
            rc = pam_setcred(pamh, PAM_ESTABLISH_CRED);
        else if (strcmp(op, "reinit") == 0)
            rc = pam_setcred(pamh, PAM_REINITIALIZE_CRED);
        else if (strcmp(op, "delete") == 0)
            rc = pam_setcred(pamh, PAM_DELETE_CRED);
        else if (strncmp(op, "user=", 5) == 0)
            rc = pam_set_item(pamh, PAM_USER, op + 5);
        else if (strncmp(op, "rhost=", 6) == 0)
            rc = pam_set_item(pamh, PAM_RHOST, op + 6);
        else if (strncmp(op, "ruser=", 6) == 0)
            rc = pam_set_item(pamh, PAM_RUSER, op + 6);
        else {
            fprintf(stderr, "pam_attack: unknown op %s\n", op);
            return 2;
        }
        fprintf(stderr, "pam_attack: %s rc=%d\n", op, rc);
    }
    pam_end(pamh, rc);
    return 0;
}
