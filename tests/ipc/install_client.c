/*
 * install_client.c - a libdkimd client built by install_test.py from the installed files
 * only: the installed headers and `pkg-config --cflags --libs libdkimd`, nothing of the
 * source tree. It checks the reason and result functions libdkimd exports and, given a
 * socket and a message, verifies the message through that dkimd and expects pass.
 *
 * usage: install_client [SOCKET MESSAGE]
 */
#include <dkimd/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "install_client: FAILED: %s\n", what);
        failures++;
    }
}

static void check_reasons(void)
{
    check(strcmp(dkd_result_name(DKD_RESULT_PASS), "pass") == 0, "dkd_result_name(PASS)");
    check(strcmp(dkd_result_name(DKD_RESULT_TEMPERROR), "temperror") == 0,
          "dkd_result_name(TEMPERROR)");
    check(strcmp(dkd_reason_code(DKD_REASON_KEY_NOT_FOUND), "key-not-found") == 0,
          "dkd_reason_code(KEY_NOT_FOUND)");
    check(dkd_reason_from_code("body-hash-mismatch") == DKD_REASON_BODY_HASH_MISMATCH,
          "dkd_reason_from_code(body-hash-mismatch)");
    check(dkd_reason_from_code("no-such-code") == -1, "dkd_reason_from_code(unknown)");
    for (int r = 0; r < DKD_REASON__COUNT; r++) {
        enum dkd_reason reason = (enum dkd_reason)r;
        check(dkd_reason_from_code(dkd_reason_code(reason)) == r, "code round trip");
        check(dkd_reason_explanation(reason)[0] != '\0', "explanation not empty");
        check(dkd_reason_fix(reason)[0] != '\0', "fix not empty");
    }
    printf("install_client: %d reasons explained: %s: %s\n", (int)DKD_REASON__COUNT,
           dkd_reason_code(DKD_REASON_BODY_HASH_MISMATCH),
           dkd_reason_fix(DKD_REASON_BODY_HASH_MISMATCH));
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *p = realloc(buf, cap *= 2);
            if (p == NULL) {
                free(buf);
            }
            buf = p;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static void check_verify(const char *sock, const char *path)
{
    size_t len = 0;
    unsigned char *msg = read_file(path, &len);
    if (msg == NULL) {
        check(0, "read the message");
        return;
    }
    dkd_client *c = NULL;
    int rc = dkd_client_connect(sock, &c);
    if (rc != 0) {
        fprintf(stderr, "install_client: connect %s: %s\n", sock, dkd_client_strerror(rc));
        check(0, "dkd_client_connect");
        free(msg);
        return;
    }
    dkd_client_result *r = NULL;
    rc = dkd_client_verify(c, msg, len, NULL, &r);
    if (rc != 0) {
        fprintf(stderr, "install_client: verify: %s\n", dkd_client_strerror(rc));
        check(0, "dkd_client_verify");
    } else {
        check(r->nsigs == 1, "one signature");
        if (r->nsigs >= 1) {
            const dkd_sig_result *s = &r->sigs[0];
            check(s->result == DKD_RESULT_PASS, "the sample passes");
            /* The daemon's words and the library's are the same table. */
            check(strcmp(r->explanations[0], dkd_reason_explanation(s->reason)) == 0,
                  "the daemon's explanation is libdkimd's");
            printf("install_client: %s d=%s s=%s: %s\n", dkd_result_name(s->result), s->d, s->s,
                   r->explanations[0]);
        }
        printf("install_client: %s\n", r->authres);
        dkd_client_result_free(r);
    }
    dkd_client_close(c);
    free(msg);
}

int main(int argc, char **argv)
{
    if (argc != 1 && argc != 3) {
        fprintf(stderr, "usage: install_client [SOCKET MESSAGE]\n");
        return 2;
    }
    check_reasons();
    if (argc == 3) {
        check_verify(argv[1], argv[2]);
    }
    return failures == 0 ? 0 : 1;
}
