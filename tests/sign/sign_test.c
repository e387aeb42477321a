/*
 * sign_test.c - the signer API (dkimd/sign.h): signatures the verifier accepts for both
 * key types and every canonicalization; a round-trip property over random messages
 * (sign -> pass; one body byte changed -> body-hash-mismatch; one signed header byte
 * changed -> signature-mismatch); the default header list; folding; l=; key files;
 * key pair matching; the daemon's key loader refusing files others may read or change;
 * the record linter's findings; the From domain reader; the streaming
 * signer (dkd_signer), against signatures the whole-message signer wrote before it was
 * built on it and against dkd_sign for random messages cut into random chunks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <dkimd/engine.h>
#include <dkimd/sign.h>

#include "guard.h"

static dkd_signkey *rsa_key, *ed_key, *other_rsa;
static dkd_zone *zone;
static char tmpdir[256];

/* ---- helpers ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sign_test.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        return -1;
    }
    rsa_key = dkd_signkey_generate(DKD_KEY_RSA, 2048, err, sizeof err);
    other_rsa = dkd_signkey_generate(DKD_KEY_RSA, 1024, err, sizeof err);
    ed_key = dkd_signkey_generate(DKD_KEY_ED25519, 0, err, sizeof err);
    if (rsa_key == NULL || ed_key == NULL || other_rsa == NULL) {
        return -1;
    }
    char *r1 = dkd_signkey_record(rsa_key), *r2 = dkd_signkey_record(ed_key);
    char zonetext[4096], path[512];
    snprintf(zonetext, sizeof zonetext,
             "rsa._domainkey.example.com. IN TXT \"%s\"\n"
             "ed._domainkey.example.com. IN TXT \"%s\"\n",
             r1, r2);
    free(r1);
    free(r2);
    snprintf(path, sizeof path, "%s/keys.zone", tmpdir);
    write_file(path, zonetext);
    zone = dkd_zone_load(path, err, sizeof err);
    unlink(path);
    return zone != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    dkd_zone_free(zone);
    dkd_signkey_free(rsa_key);
    dkd_signkey_free(ed_key);
    dkd_signkey_free(other_rsa);
    rmdir(tmpdir);
    return 0;
}

/* signed_msg returns header + msg, malloc'd. */
static uint8_t *signed_msg(const char *hdr, const uint8_t *msg, size_t len, size_t *out_len)
{
    size_t hl = strlen(hdr);
    uint8_t *out = malloc(hl + len + 1);
    assert_non_null(out);
    memcpy(out, hdr, hl);
    memcpy(out + hl, msg, len);
    *out_len = hl + len;
    return out;
}

/* verify_one verifies m and returns its single result (reason), failing otherwise. */
static enum dkd_reason verify_one(const uint8_t *m, size_t len, enum dkd_result *result)
{
    dkd_config cfg;
    dkd_config_init(&cfg);
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_msg *msg = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(zone);
    assert_int_equal(dkd_verify_message(msg, &src, m, len, (int64_t)time(NULL)), 0);
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(msg, &n);
    assert_int_equal(n, 1);
    enum dkd_reason reason = r[0].reason;
    *result = r[0].result;
    dkd_msg_free(msg);
    dkd_engine_free(eng);
    return reason;
}

static char *sign_ok(const dkd_signkey *k, const char *sel, const dkd_sign_opts *base,
                     const uint8_t *m, size_t len)
{
    dkd_sign_opts o = *base;
    o.domain = "example.com";
    o.selector = sel;
    char err[256] = "", *hdr = NULL;
    int rc = dkd_sign(k, &o, m, len, &hdr, err, sizeof err);
    if (rc != 0) {
        fail_msg("dkd_sign: %s", err);
    }
    return hdr;
}

static const char sample[] = "From: Alice <alice@example.com>\r\n"
                             "To: bob@example.net\r\n"
                             "Subject:  Hello   there \r\n"
                             "Date: Mon, 24 Nov 2025 16:00:00 +0000\r\n"
                             "Message-ID: <1@example.com>\r\n"
                             "X-Unsigned: yes\r\n"
                             "\r\n"
                             "Body line one  \r\n"
                             "\tindented\r\n"
                             "\r\n"
                             "\r\n";

/* ---- signing ---- */

static void test_sign_verify_all_canons(void **state)
{
    (void)state;
    static const bool canons[4][2] = {{true, true}, {true, false}, {false, true}, {false, false}};
    for (int k = 0; k < 2; k++) {
        for (int c = 0; c < 4; c++) {
            dkd_sign_opts o;
            dkd_sign_opts_init(&o);
            o.header_relaxed = canons[c][0];
            o.body_relaxed = canons[c][1];
            size_t len = strlen(sample), slen;
            char *hdr =
                sign_ok(k ? ed_key : rsa_key, k ? "ed" : "rsa", &o, (const uint8_t *)sample, len);
            assert_non_null(strstr(hdr, k ? "a=ed25519-sha256" : "a=rsa-sha256"));
            uint8_t *m = signed_msg(hdr, (const uint8_t *)sample, len, &slen);
            enum dkd_result res;
            assert_int_equal(verify_one(m, slen, &res), DKD_REASON_OK);
            assert_int_equal(res, DKD_RESULT_PASS);
            free(m);
            free(hdr);
        }
    }
}

static void test_default_headers_and_folding(void **state)
{
    (void)state;
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    o.timestamp = 1700000000;
    o.expire_after = 3600;
    char *hdr = sign_ok(rsa_key, "rsa", &o, (const uint8_t *)sample, strlen(sample));
    /* Unfold h= to check the list: present defaults, From twice, X-Unsigned never. */
    char flat[4096];
    size_t w = 0;
    for (const char *p = hdr; *p && w + 1 < sizeof flat; p++) {
        if (*p != '\r' && *p != '\n' && *p != '\t') {
            flat[w++] = *p;
        }
    }
    flat[w] = '\0';
    assert_non_null(strstr(flat, "h=from:from:to:subject:date:message-id;"));
    assert_null(strstr(flat, "x-unsigned"));
    assert_non_null(strstr(flat, "t=1700000000;"));
    assert_non_null(strstr(flat, "x=1700003600;"));
    assert_non_null(strstr(flat, "c=relaxed/relaxed;"));
    assert_null(strstr(flat, "l="));
    /* b= is the last tag, and every line is at most 78 columns (tab counted as 8). */
    const char *b = strstr(flat, " b=");
    assert_non_null(b);
    assert_null(strchr(b, ';'));
    size_t col = 0;
    for (const char *p = hdr; *p; p++) {
        if (*p == '\n') {
            col = 0;
        } else if (*p != '\r') {
            col += *p == '\t' ? 8 : 1;
            assert_true(col <= 78);
        }
    }
    assert_int_equal(strcmp(hdr + strlen(hdr) - 2, "\r\n"), 0);
    free(hdr);
}

static void test_custom_headers_and_errors(void **state)
{
    (void)state;
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    o.domain = "example.com";
    o.selector = "rsa";
    char err[256], *hdr = NULL;
    o.headers = "to:subject";
    assert_int_equal(
        dkd_sign(rsa_key, &o, (const uint8_t *)sample, strlen(sample), &hdr, err, sizeof err),
        DKD_ERR_SYNTAX);
    assert_null(hdr);
    assert_non_null(strstr(err, "From"));
    o.headers = "from:subject:x-unsigned:x-absent";
    assert_int_equal(
        dkd_sign(rsa_key, &o, (const uint8_t *)sample, strlen(sample), &hdr, err, sizeof err), 0);
    size_t slen;
    uint8_t *m = signed_msg(hdr, (const uint8_t *)sample, strlen(sample), &slen);
    enum dkd_result res;
    assert_int_equal(verify_one(m, slen, &res), DKD_REASON_OK);
    free(m);
    free(hdr);
    hdr = NULL;
    o.headers = NULL;
    o.domain = "bad domain";
    assert_int_equal(
        dkd_sign(rsa_key, &o, (const uint8_t *)sample, strlen(sample), &hdr, err, sizeof err),
        DKD_ERR_SYNTAX);
    o.domain = "example.com";
    static const char nofrom[] = "To: x@example.net\r\n\r\nhi\r\n";
    assert_int_equal(
        dkd_sign(rsa_key, &o, (const uint8_t *)nofrom, strlen(nofrom), &hdr, err, sizeof err),
        DKD_ERR_SYNTAX);
    assert_null(hdr);
}

static void test_body_length_and_lf(void **state)
{
    (void)state;
    /* A bare-LF message: the signature (with CRLF folds) still verifies. */
    static const char lf[] = "From: a@example.com\nSubject: x\n\nline\n\n";
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    o.body_length = true;
    o.body_relaxed = false;
    char *hdr = sign_ok(rsa_key, "rsa", &o, (const uint8_t *)lf, strlen(lf));
    assert_non_null(strstr(hdr, "l=6;")); /* "line\r\n" */
    size_t slen;
    uint8_t *m = signed_msg(hdr, (const uint8_t *)lf, strlen(lf), &slen);
    enum dkd_result res;
    assert_int_equal(verify_one(m, slen, &res), DKD_REASON_OK);
    free(m);
    free(hdr);
}

/* ---- the round-trip property ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* random_message makes headers (some folded, with odd spacing) and a body of random
 * lines mixing WSP runs, blank lines, CRLF and bare LF. */
static size_t random_message(char *buf, size_t cap)
{
    static const char *names[] = {"To",           "Cc",        "Subject", "Date",
                                  "Message-ID",   "Reply-To",  "X-Other", "MIME-Version",
                                  "Content-Type", "References"};
    size_t w = (size_t)snprintf(buf, cap, "From: R <r%u@example.com>\r\n", next_rand() % 100);
    unsigned nh = next_rand() % 8;
    for (unsigned i = 0; i < nh; i++) {
        w += (size_t)snprintf(buf + w, cap - w, "%s:%s v%u%s\r\n", names[next_rand() % 10],
                              next_rand() % 2 ? " " : "\t ", next_rand(),
                              next_rand() % 3 == 0 ? "\r\n\tcontinued  " : "");
    }
    w += (size_t)snprintf(buf + w, cap - w, "\r\n");
    unsigned lines = next_rand() % 12;
    for (unsigned i = 0; i < lines && w + 200 < cap; i++) {
        unsigned len = next_rand() % 60;
        for (unsigned k = 0; k < len; k++) {
            uint32_t r = next_rand() % 10;
            buf[w++] = r == 0 ? ' ' : r == 1 ? '\t' : (char)('a' + next_rand() % 26);
        }
        if (next_rand() % 4 == 0) {
            buf[w++] = '\n';
        } else {
            buf[w++] = '\r';
            buf[w++] = '\n';
        }
    }
    return w;
}

static void test_round_trip_property(void **state)
{
    (void)state;
    char buf[8192];
    for (int iter = 0; iter < 120; iter++) {
        size_t len = random_message(buf, sizeof buf);
        dkd_sign_opts o;
        dkd_sign_opts_init(&o);
        o.header_relaxed = next_rand() % 2;
        o.body_relaxed = next_rand() % 2;
        bool ed = next_rand() % 2;
        const uint8_t *g = guard_copy(buf, len); /* the signer must not read past the end */
        char *hdr = sign_ok(ed ? ed_key : rsa_key, ed ? "ed" : "rsa", &o, g, len);
        size_t slen;
        uint8_t *m = signed_msg(hdr, (const uint8_t *)buf, len, &slen);
        enum dkd_result res;
        enum dkd_reason why = verify_one(m, slen, &res);
        if (why != DKD_REASON_OK) {
            fail_msg("iteration %d: %s\n%.*s", iter, dkd_reason_code(why), (int)slen, m);
        }
        /* Change one body byte to a letter that is none of the bytes canonicalization
         * may rewrite: the body hash must now fail. */
        size_t body = strlen(hdr) + (size_t)(strstr(buf, "\r\n\r\n") - buf) + 4;
        for (size_t i = body; i < slen; i++) {
            if (m[i] >= 'a' && m[i] <= 'z') {
                m[i] = m[i] == 'z' ? 'a' : (uint8_t)(m[i] + 1);
                assert_int_equal(verify_one(m, slen, &res), DKD_REASON_BODY_HASH_MISMATCH);
                assert_int_equal(res, DKD_RESULT_FAIL);
                break;
            }
        }
        /* On a fresh copy, change the From local part: the header signature fails. */
        free(m);
        m = signed_msg(hdr, (const uint8_t *)buf, len, &slen);
        uint8_t *from = (uint8_t *)strstr((char *)m + strlen(hdr), "<r");
        assert_non_null(from);
        from[1] = 'R';
        assert_int_equal(verify_one(m, slen, &res), DKD_REASON_SIGNATURE_MISMATCH);
        free(m);
        free(hdr);
    }
}

/* ---- streaming (dkd_signer) ---- */

/* Test-only keys, never published: with them and a fixed t= the signatures below are
 * the exact bytes dkd_sign wrote before it was rebuilt on the streaming signer (RSA
 * PKCS#1 v1.5 and Ed25519 are both deterministic), so "same output" is checked against
 * the old code and not only against itself. */
static const char golden_ed_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIKtw25GB0z8XI1tOJcxDn0Dye5Na1E8h3lAFnrh32GU7\n"
    "-----END PRIVATE KEY-----\n";

static const char golden_rsa_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAM0O7iqfm3SBswS3\n"
    "Vnpa6h8IbU0G1rRHfOXQSrdVn7srsLrOlnULiwsU6ts/awy9ZmZej4adFv0Cs7tj\n"
    "AOGCjZau3tKdz3fIgv1KXcu21+/5eHEz9KQXhxon5SazTudOATGJtFM/8WGmL1v+\n"
    "bhIoN84e0fbIfOa5m+iZuYe+JnCPAgMBAAECgYBdRB0vZcjfBN7XlkvO+urhkoOk\n"
    "NSgSdzFnlYVmPZuZFhYb4TqtocJsF+d6MS4PbVXV2cyN/YUnLsNwx2bvKuIahpuH\n"
    "Nl2OnvOmJzw0T2YdxtEveY7arZKJ5QpRFQHc8l4X74ccUm+V4d2OJt24taMZ2+kE\n"
    "nPmSFwYzVPljdphqAQJBAOkGbg4SoX7YNtv7lp07j2yRf36nRqIiGOwGwBjkMxkS\n"
    "TjB+DPGOibRH7sSROcKVJlRyRypzelCHsxwWuStaz18CQQDhRp3YqbGg55rqT0hg\n"
    "Jsasp0Sc/pdXDNvuDpSBPrcOXN4Cg0LtIgz5S3aIOTC5fj7QzrYGNhc1nYhkYVNz\n"
    "o1zRAkB7WhAAGxSqFMJViMSdzt2JVyvqW5okUXBn4NrnUkVKTEpfmRo49H8ok7tt\n"
    "CoNM4a88nJHXgvGIl4zUnaK/tH55AkAZPoCRtvJgxZNmjlvd6np4/oWB0kXDS32Z\n"
    "v6iEkzKQOXfncC4fxKEPjpVJzp7XKn5/h6p+J7GSIIUYOo/PdY8BAkEAg+Z4YNQL\n"
    "3g9M5wM07LBuppGFXcf7MCpcUG6SjtQ6YYQc+QfB99E2ShwmBVK6EcnE7YzhCXoc\n"
    "fLZQnE9fOJGu7g==\n"
    "-----END PRIVATE KEY-----\n";

typedef struct golden_case {
    const char *msg;
    bool ed, header_relaxed, body_relaxed, body_length;
    const char *identity, *headers;
    uint64_t expire_after;
} golden_case;

static const golden_case golden[] = {
    {"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject:  Hello   there \r\n"
     "Date: Mon, 24 Nov 2025 16:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
     "X-Unsigned: yes\r\n\r\nBody line one  \r\n\tindented\r\n\r\n\r\n",
     true, true, true, false, NULL, NULL, 0},
    {"From: a@example.com\nSubject: x\nTo: b@example.net,\n c@example.net\n\n"
     "line  one\n\n  two\t\n\n\n",
     false, false, false, true, "@example.com", NULL, 3600},
    {"Received: from x\r\n\tby y\r\nFROM:  B <b@example.com>\r\nSubject: folded\r\n"
     "  subject\r\nFrom: second@example.com\r\n\r\na \t b\r\n\nmixed\r\n \r\n\t\r\n",
     false, true, false, false, NULL, "from:subject:x-absent", 0},
    {"From: only@example.com\r\nSubject: no body", true, false, true, true, NULL, NULL, 0},
};

/* golden_want[i] is what dkd_sign wrote for golden[i] before dkd_signer existed. */
static const char *const golden_want[] = {
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=ed;\r\n"
    "\tt=1700000000; h=from:from:to:subject:date:message-id; bh=hoNqMfjMCy1G8\r\n"
    "\t4brrACfNXddupS77x0bceRb9kSHEB0=; b=Oga3wZL5t8QU9H4rjG3ciht1neEjppstnPK\r\n"
    "\tnp18O9HTsohG0EF4UI4O6KBJFDOfDyq02l9ZdD1Jd2QfpGhx2AQ==\r\n",
    "DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.com; s=rsa;\r\n"
    "\ti=@example.com; t=1700000000; x=1700003600; l=21; h=from:from:to\r\n"
    "\t:subject; bh=JzALuGiTLrrODAmB/3yBKNxQlznQazJcUiQeCC+2Ja0=; b=nnh7kjQFc\r\n"
    "\tyakmpp/51/6Jero2AIwPBnA1L5cCjBmedOrKsVmNIFg99kMgvEp7dli7YRL6/0wD9ic92B\r\n"
    "\tx7iQO0P3PFb1nNBz5vIlKo+AJYP1Rmz8GFQ4NMeB8rw/EZuCu/L3MXOpHyL1O5Skdl4CEt\r\n"
    "\t55ji/aAs8c+95NZO9bdCIM=\r\n",
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=rsa;\r\n"
    "\tt=1700000000; h=from:subject:x-absent; bh=lGKLc3E6UeGDLM4/rBjFqHmY6Kwp\r\n"
    "\t+2exS37OhivQwHM=; b=r5luH/a9b+Zwwzrb7Z4mGJcynzTm1OOScTWiELOTiVN6u9A5vn\r\n"
    "\t9YGlYcg0rSMfpfrzc1ebKLHciIHG69dQlfHhLMgs3fthSBUBf4yz6RtZHDzydXzerm3v8I\r\n"
    "\t915I3zUMCM0ih4QSUsXE6WM4DafGmpBpqM32JKjPw1D4UHqYk+0=\r\n",
    "DKIM-Signature: v=1; a=ed25519-sha256; c=simple/relaxed; d=example.com; s=ed;\r\n"
    "\tt=1700000000; l=0; h=from:from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeR\r\n"
    "\tkm5NMpJWZG3hSuFU=; b=BhNIsHI0n8LPTcmYX6mCZrs9xlofWFmJN4iDON3DrjiFSDsIl\r\n"
    "\t2mUZm00PyKzAk4k5ciwTkB0UXk0Blz7+zlXDQ==\r\n",
};

static dkd_signkey *load_pem_text(const char *name, const char *pem)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    write_file(path, pem);
    dkd_signkey *k = dkd_signkey_load(path, err, sizeof err);
    unlink(path);
    if (k == NULL) {
        fail_msg("%s", err);
    }
    return k;
}

/* fields_len is the header block without its empty line, when it has one. */
static size_t fields_len(const uint8_t *m, size_t hlen)
{
    if (hlen >= 3 && memcmp(m + hlen - 3, "\n\r\n", 3) == 0) {
        return hlen - 2;
    }
    if (hlen >= 2 && m[hlen - 2] == '\n' && m[hlen - 1] == '\n') {
        return hlen - 1;
    }
    return hlen;
}

/* sign_streamed signs m with the streaming signer: the header block given with or
 * without its empty line, the body cut at random points, or at every CR when cut_at_cr
 * (so each CRLF is split across two calls); each piece at a guard page. */
static char *sign_streamed(const dkd_signkey *k, const dkd_sign_opts *o, const uint8_t *m,
                           size_t len, bool with_blank, bool cut_at_cr)
{
    size_t hlen = dkd_split_message(m, len);
    size_t give = with_blank ? hlen : fields_len(m, hlen);
    char err[256] = "", *out = NULL;
    dkd_signer *s = NULL;
    int rc = dkd_signer_begin(k, o, guard_copy(m, give), give, &s, err, sizeof err);
    if (rc != 0) {
        fail_msg("dkd_signer_begin: %s", err);
    }
    size_t pos = hlen;
    while (pos < len) {
        size_t n = 1 + next_rand() % 97;
        if (cut_at_cr) {
            const uint8_t *cr = memchr(m + pos, '\r', len - pos);
            n = cr != NULL ? (size_t)(cr - (m + pos)) + 1 : len - pos;
        } else if (next_rand() % 8 == 0) {
            n = 0; /* empty chunks are allowed too */
        }
        n = n < len - pos ? n : len - pos;
        assert_int_equal(dkd_signer_body(s, guard_copy(m + pos, n), n), 0);
        pos += n;
    }
    rc = dkd_signer_end(s, &out, err, sizeof err);
    if (rc != 0) {
        fail_msg("dkd_signer_end: %s", err);
    }
    dkd_signer_free(s);
    return out;
}

static void golden_opts(const golden_case *g, dkd_sign_opts *o)
{
    dkd_sign_opts_init(o);
    o->domain = "example.com";
    o->selector = g->ed ? "ed" : "rsa";
    o->identity = g->identity;
    o->headers = g->headers;
    o->header_relaxed = g->header_relaxed;
    o->body_relaxed = g->body_relaxed;
    o->body_length = g->body_length;
    o->timestamp = 1700000000;
    o->expire_after = g->expire_after;
}

static void test_signer_golden(void **state)
{
    (void)state;
    dkd_signkey *ed = load_pem_text("ed.pem", golden_ed_pem);
    dkd_signkey *rsa = load_pem_text("rsa.pem", golden_rsa_pem);
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        const golden_case *g = &golden[i];
        dkd_sign_opts o;
        golden_opts(g, &o);
        const uint8_t *m = (const uint8_t *)g->msg;
        size_t len = strlen(g->msg);
        char err[256], *whole = NULL;
        assert_int_equal(dkd_sign(g->ed ? ed : rsa, &o, m, len, &whole, err, sizeof err), 0);
        assert_string_equal(whole, golden_want[i]);
        for (int v = 0; v < 4; v++) {
            char *part = sign_streamed(g->ed ? ed : rsa, &o, m, len, v & 1, v & 2);
            assert_string_equal(part, golden_want[i]);
            free(part);
        }
        free(whole);
    }
    dkd_signkey_free(ed);
    dkd_signkey_free(rsa);
}

/* lf_only turns every CRLF of buf into a bare LF, in place; returns the new length. */
static size_t lf_only(char *buf, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (!(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')) {
            buf[w++] = buf[i];
        }
    }
    return w;
}

static void test_signer_random_splits(void **state)
{
    (void)state;
    char buf[8192];
    for (int iter = 0; iter < 200; iter++) {
        size_t len = random_message(buf, sizeof buf);
        if (iter % 3 == 1) {
            len = lf_only(buf, len);
        }
        dkd_sign_opts o;
        dkd_sign_opts_init(&o);
        o.domain = "example.com";
        o.header_relaxed = next_rand() % 2;
        o.body_relaxed = next_rand() % 2;
        o.body_length = next_rand() % 4 == 0;
        o.timestamp = 1700000000 + iter;
        bool ed = next_rand() % 2;
        o.selector = ed ? "ed" : "rsa";
        const dkd_signkey *k = ed ? ed_key : rsa_key;
        char err[256], *whole = NULL;
        assert_int_equal(dkd_sign(k, &o, (const uint8_t *)buf, len, &whole, err, sizeof err), 0);
        char *part = sign_streamed(k, &o, (const uint8_t *)buf, len, iter % 2, iter % 5 == 0);
        if (strcmp(part, whole) != 0) {
            fail_msg("iteration %d differs:\n%s\n%s", iter, whole, part);
        }
        free(part);
        free(whole);
    }
}

static void test_signer_errors_and_state(void **state)
{
    (void)state;
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    o.domain = "example.com";
    o.selector = "ed";
    char err[256], *out = NULL;
    dkd_signer *s = (dkd_signer *)&o; /* must be overwritten with NULL on failure */
    static const char nofrom[] = "To: x@example.net\r\nSubject: s\r\n";
    assert_int_equal(dkd_signer_begin(ed_key, &o, guard_str(nofrom), strlen(nofrom), &s, err,
                                      sizeof err),
                     DKD_ERR_SYNTAX);
    assert_null(s);
    assert_non_null(strstr(err, "From"));
    static const char hdr[] = "From: a@example.com\r\nSubject: s\r\n";
    o.domain = "bad domain";
    assert_int_equal(
        dkd_signer_begin(ed_key, &o, guard_str(hdr), strlen(hdr), &s, err, sizeof err),
        DKD_ERR_SYNTAX);
    assert_null(s);
    assert_non_null(strstr(err, "d="));
    o.domain = "example.com";
    o.selector = "";
    assert_int_equal(
        dkd_signer_begin(ed_key, &o, guard_str(hdr), strlen(hdr), &s, err, sizeof err),
        DKD_ERR_SYNTAX);
    o.selector = "ed";
    /* A whole message is not a header block: its body would go unhashed. */
    static const char whole[] = "From: a@example.com\r\n\r\nbody\r\n";
    assert_int_equal(
        dkd_signer_begin(ed_key, &o, guard_str(whole), strlen(whole), &s, err, sizeof err),
        DKD_ERR_SYNTAX);
    assert_null(s);
    static const char folded[] = " x\r\nFrom: a@example.com\r\n";
    assert_int_equal(
        dkd_signer_begin(ed_key, &o, guard_str(folded), strlen(folded), &s, err, sizeof err),
        DKD_ERR_SYNTAX);

    /* Body after end, end twice: DKD_ERR_STATE, and *out stays NULL. */
    assert_int_equal(
        dkd_signer_begin(ed_key, &o, guard_str(hdr), strlen(hdr), &s, err, sizeof err), 0);
    assert_non_null(s);
    assert_int_equal(dkd_signer_body(s, (const uint8_t *)"hi\r\n", 4), 0);
    assert_int_equal(dkd_signer_end(s, &out, err, sizeof err), 0);
    assert_non_null(out);
    free(out);
    assert_int_equal(dkd_signer_body(s, (const uint8_t *)"more\r\n", 6), DKD_ERR_STATE);
    out = (char *)err;
    assert_int_equal(dkd_signer_end(s, &out, err, sizeof err), DKD_ERR_STATE);
    assert_null(out);
    dkd_signer_free(s);
    dkd_signer_free(NULL);

    /* The options' strings are copied: o may change after begin. */
    char domain[] = "example.com";
    o.domain = domain;
    assert_int_equal(
        dkd_signer_begin(ed_key, &o, guard_str(hdr), strlen(hdr), &s, err, sizeof err), 0);
    memcpy(domain, "EXAMPLE.ORG", sizeof domain);
    assert_int_equal(dkd_signer_end(s, &out, err, sizeof err), 0);
    assert_non_null(strstr(out, "d=example.com;"));
    free(out);
    dkd_signer_free(s);
}

/* ---- keys ---- */

static void test_key_files_and_matching(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/k.pem", tmpdir);
    assert_int_equal(dkd_signkey_write_pem(ed_key, path), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Never overwritten. */
    assert_int_equal(dkd_signkey_write_pem(rsa_key, path), -EEXIST);
    dkd_signkey *back = dkd_signkey_load(path, err, sizeof err);
    assert_non_null(back);
    assert_int_equal(dkd_signkey_type(back), DKD_KEY_ED25519);
    char *rec = dkd_signkey_record(back);
    dkd_key *pub = dkd_key_from_record((const uint8_t *)rec, strlen(rec));
    assert_int_equal(dkd_key_reason(pub), DKD_REASON_OK);
    assert_true(dkd_signkey_matches(back, pub));
    assert_true(dkd_signkey_matches(ed_key, pub));
    assert_false(dkd_signkey_matches(rsa_key, pub));
    dkd_key_unref(pub);
    free(rec);
    rec = dkd_signkey_record(rsa_key);
    pub = dkd_key_from_record((const uint8_t *)rec, strlen(rec));
    assert_int_equal(dkd_key_bits(pub), 2048);
    assert_true(dkd_signkey_matches(rsa_key, pub));
    assert_false(dkd_signkey_matches(other_rsa, pub));
    dkd_key_unref(pub);
    free(rec);
    dkd_signkey_free(back);
    unlink(path);
    assert_null(dkd_signkey_load(path, err, sizeof err));
    assert_null(dkd_signkey_generate(DKD_KEY_RSA, 512, err, sizeof err));
}

/* load_private_mode writes a key file of the given mode and loads it as the daemon does. */
static dkd_signkey *load_private_mode(const char *path, mode_t mode, char *err, size_t err_len)
{
    unlink(path);
    assert_int_equal(dkd_signkey_write_pem(ed_key, path), 0);
    assert_int_equal(chmod(path, mode), 0);
    return dkd_signkey_load_private(path, err, err_len);
}

static void test_load_private_modes(void **state)
{
    (void)state;
    char path[512], err[512], want[600];
    snprintf(path, sizeof path, "%s/private.pem", tmpdir);
    static const mode_t good[] = {0600, 0400, 0640, 0440, 0700};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        dkd_signkey *k = load_private_mode(path, good[i], err, sizeof err);
        if (k == NULL) {
            fail_msg("mode %04o: %s", (unsigned)good[i], err);
        }
        assert_int_equal(dkd_signkey_type(k), DKD_KEY_ED25519);
        dkd_signkey_free(k);
    }
    static const mode_t bad[] = {0644, 0604, 0620, 0660, 0601, 0602, 0666};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_null(load_private_mode(path, bad[i], err, sizeof err));
        snprintf(want, sizeof want, "%s: mode %04o", path, (unsigned)bad[i]);
        assert_non_null(strstr(err, want));
        snprintf(want, sizeof want, "chmod 600 %s", path);
        assert_non_null(strstr(err, want));
        /* The plain loader, for dkimctl, does not care. */
        dkd_signkey *k = dkd_signkey_load(path, err, sizeof err);
        assert_non_null(k);
        dkd_signkey_free(k);
    }
    unlink(path);
    /* Missing, a directory, a FIFO (refused without waiting for a writer), not a key. */
    assert_null(dkd_signkey_load_private(path, err, sizeof err));
    assert_non_null(strstr(err, path));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/keydir", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_null(dkd_signkey_load_private(dir, err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    rmdir(dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(dkd_signkey_load_private(path, err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    unlink(path);
    write_file(path, "not a key\n");
    assert_int_equal(chmod(path, 0600), 0);
    assert_null(dkd_signkey_load_private(path, err, sizeof err));
    assert_non_null(strstr(err, "no PEM private key"));
    unlink(path);
}

/* ---- lint ---- */

typedef struct got {
    char codes[1024];
    size_t offsets[32];
    size_t n;
} got;

static char last_message[4096]; /* every finding's message of the last lint() call */

static void collect(void *arg, const dkd_lint_finding *f)
{
    got *g = arg;
    strncat(last_message, f->message, sizeof last_message - strlen(last_message) - 2);
    strcat(last_message, "\n");
    strncat(g->codes, f->code, sizeof g->codes - strlen(g->codes) - 2);
    strncat(g->codes, " ", sizeof g->codes - strlen(g->codes) - 1);
    if (g->n < 32) {
        g->offsets[g->n++] = f->offset;
    }
}

static int lint(const char *rec, got *g)
{
    memset(g, 0, sizeof *g);
    last_message[0] = '\0';
    return dkd_record_lint(guard_str(rec), strlen(rec), collect, g);
}

static void test_lint(void **state)
{
    (void)state;
    got g;
    char *good = dkd_signkey_record(rsa_key);
    assert_int_equal(lint(good, &g), DKD_LINT_INFO);
    assert_string_equal(g.codes, "key ");
    free(good);

    /* Two broken tags: both reported, each at its own position. */
    assert_int_equal(lint("v=DKIM1; k rsa; p=AAAA; =x", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "syntax syntax"));
    assert_true(g.offsets[0] >= 9 && g.offsets[0] < 15);
    assert_true(g.offsets[1] >= 24);

    assert_int_equal(lint("k=rsa; v=DKIM1; p=", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "v-not-first"));
    assert_non_null(strstr(g.codes, "revoked"));
    assert_int_equal(lint("v=DKIM1; k=foo; p=AAAA", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "unknown-k"));
    assert_int_equal(lint("v=DKIM1; h=sha1; p=", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "sha1-only"));
    assert_int_equal(lint("v=DKIM1; s=tlsrpt; p=", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "service"));
    assert_int_equal(lint("v=DKIM1; p=AAAA; p=BBBB", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "duplicate"));
    assert_int_equal(lint("v=DKIM1; k=rsa", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "missing-p"));
    assert_int_equal(lint("v=DKIM1; p=A!A", &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "p-base64"));
    assert_int_equal(lint("  ", &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "empty ");

    /* t=y alone is a warning; a 1024-bit key is a warning (RFC 8301 wants 2048). */
    char *weak = dkd_signkey_record(other_rsa), rec[1024];
    snprintf(rec, sizeof rec, "%s; t=y", weak);
    assert_int_equal(lint(rec, &g), DKD_LINT_WARNING);
    assert_non_null(strstr(g.codes, "testing"));
    assert_non_null(strstr(g.codes, "weak-key"));
    free(weak);
}

/* p_of returns the base64 after "p=" in a record dkd_signkey_record made. */
static const char *p_of(const char *rec)
{
    const char *p = strstr(rec, "p=");
    assert_non_null(p);
    return p + 2;
}

/* The publishing mistakes found in the wild: each has its own code and the right fix. */
static void test_lint_mistakes(void **state)
{
    (void)state;
    got g;
    char *rsa = dkd_signkey_record(rsa_key), *ed = dkd_signkey_record(ed_key);
    const char *rp = p_of(rsa), *ep = p_of(ed);
    char rec[4096];

    /* Literal quotes around the record, and around each of two strings. Both are
     * linted again without the quotes, so the key itself is still judged. */
    snprintf(rec, sizeof rec, "\"%s\"", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "quoted key ");
    snprintf(rec, sizeof rec, "\"v=DKIM1; k=rsa; \" \"p=%s\"", rp);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "quoted key ");
    snprintf(rec, sizeof rec, "\\\"%s\\\"", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "quoted key ");
    snprintf(rec, sizeof rec, "'%s'", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "quoted key ");

    /* SPF and DMARC records under _domainkey: one finding, no tag noise. */
    assert_int_equal(lint("v=spf1 include:_spf.google.com ~all", &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "spf-record ");
    assert_int_equal(lint("v=DMARC1; p=reject; rua=mailto:d@example.com", &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "dmarc-record ");
    assert_int_equal(lint("\"v=spf1 -all\"", &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "quoted spf-record ");

    /* PEM armour in p=, and a private key. */
    snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=-----BEGIN PUBLIC KEY-----%s-----END PUBLIC KEY-----",
             rp);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "pem-armour ");
    assert_int_equal(lint("v=DKIM1; p=-----BEGIN PRIVATE KEY----- MIIEvQ -----END PRIVATE KEY-----",
                          &g), DKD_LINT_ERROR);
    assert_non_null(strstr(g.codes, "private-key"));

    /* Blanks and line breaks in p= are read by dkimd: a warning that others may not. */
    size_t rl = strlen(rp);
    snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=%.64s %.64s\r\n %s", rp, rp + 64, rp + 128);
    assert_int_equal(lint(rec, &g), DKD_LINT_WARNING);
    assert_string_equal(g.codes, "p-whitespace key ");
    snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=%.64s\n%s", rp, rp + 64);
    assert_int_equal(lint(rec, &g), DKD_LINT_WARNING);
    assert_string_equal(g.codes, "p-whitespace key ");
    assert_non_null(strstr(last_message, "line breaks"));

    /* k= that does not match the key: RSA under k=ed25519, 32 bytes under k=rsa or no
     * k=, an Ed25519 SubjectPublicKeyInfo under either. */
    snprintf(rec, sizeof rec, "v=DKIM1; k=ed25519; p=%s", rp);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "k-mismatch ");
    snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=%s", ep);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "k-mismatch ");
    snprintf(rec, sizeof rec, "v=DKIM1; p=%s", ep);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "k-default k-mismatch ");
    /* MCowBQYDK2VwAyEA is the base64 of the 12-byte Ed25519 SPKI prefix. */
    snprintf(rec, sizeof rec, "v=DKIM1; k=ed25519; p=MCowBQYDK2VwAyEA%s", ep);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "ed25519-spki ");
    snprintf(rec, sizeof rec, "v=DKIM1; k=rsa; p=MCowBQYDK2VwAyEA%s", ep);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "k-mismatch ");

    /* A key cut at 255 characters (the whole record is one full TXT string), and one cut
     * elsewhere; both in the middle of a base64 quantum and on its boundary. */
    assert_true(rl > 300);
    snprintf(rec, sizeof rec, "%.255s", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "truncated ");
    assert_non_null(strstr(last_message, "cut at 255 characters"));
    snprintf(rec, sizeof rec, "%.200s", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "truncated ");
    assert_null(strstr(last_message, "255"));
    snprintf(rec, sizeof rec, "%.201s", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "truncated ");
    /* A stray character is a typo, not a cut. */
    snprintf(rec, sizeof rec, "%.200s!", rsa);
    assert_int_equal(lint(rec, &g), DKD_LINT_ERROR);
    assert_string_equal(g.codes, "p-base64 ");
    free(rsa);
    free(ed);
}

static void test_from_domain(void **state)
{
    (void)state;
    char d[64];
    static const char m1[] = "To: x@y\r\nFROM: \"A, B\" <A@Sub.Example.COM>\r\n\r\nbody";
    assert_int_equal(dkd_from_domain(guard_str(m1), strlen(m1), d, sizeof d), 1);
    assert_string_equal(d, "sub.example.com");
    static const char m2[] = "From: a@one.example\nFrom: b@two.example\n\n";
    assert_int_equal(dkd_from_domain(guard_str(m2), strlen(m2), d, sizeof d), 2);
    assert_string_equal(d, "one.example");
    static const char m3[] = "Subject: none\r\n\r\n";
    assert_int_equal(dkd_from_domain(guard_str(m3), strlen(m3), d, sizeof d), 0);
    assert_string_equal(d, "");
    static const char m4[] = "From: no address here\r\n\r\n";
    assert_int_equal(dkd_from_domain(guard_str(m4), strlen(m4), d, sizeof d), 1);
    assert_string_equal(d, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_all_canons),
        cmocka_unit_test(test_default_headers_and_folding),
        cmocka_unit_test(test_custom_headers_and_errors),
        cmocka_unit_test(test_body_length_and_lf),
        cmocka_unit_test(test_round_trip_property),
        cmocka_unit_test(test_signer_golden),
        cmocka_unit_test(test_signer_random_splits),
        cmocka_unit_test(test_signer_errors_and_state),
        cmocka_unit_test(test_key_files_and_matching),
        cmocka_unit_test(test_load_private_modes),
        cmocka_unit_test(test_lint),
        cmocka_unit_test(test_lint_mistakes),
        cmocka_unit_test(test_from_domain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
