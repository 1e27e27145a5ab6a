/*
 * The conversation of the C harnesses (pam_login.c, pam_attack.c), as pamtester's: each
 * message goes to stderr; each answer to a hidden or echoed prompt is one line of stdin
 * (without its newline). No answer left on stdin is a conversation error.
 *
 * appdata_ptr: NULL, or a struct stdin_conv_style. pam_login prints prompts without a newline
 * (like pamtester), pam_attack ends every message, prompts included, with one.
 */
#ifndef ECS_MFA_TEST_STDIN_CONV_H
#define ECS_MFA_TEST_STDIN_CONV_H

#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stdin_conv_style {
    int newline_after_prompt;
};

static int stdin_conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
    const struct stdin_conv_style *style = data;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (r == NULL)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "%s", msg[i]->msg);
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON) {
            if (style != NULL && style->newline_after_prompt)
                fprintf(stderr, "\n");
            char line[4096];
            if (fgets(line, sizeof line, stdin) == NULL) {
                free(r);
                return PAM_CONV_ERR;
            }
            line[strcspn(line, "\n")] = '\0';
            r[i].resp = strdup(line);
        } else {
            fprintf(stderr, "\n");
        }
    }
    *resp = r;
    return PAM_SUCCESS;
}

#endif
