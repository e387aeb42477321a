/*
 * verify_test.c - the verifier end to end, in-process: the sample messages give the
 * result and reason they were made for; results never depend on how the header block
 * and body are chunked or when keys arrive; the policy options do what they say.
 *
 * Inputs: samples/ (signed by python3-dkim) and ../shared/conformance messages.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <dkimd/engine.h>

static char samples_dir[1024];
static char shared_dir[1024];

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint8_t *sample(const char *name, size_t *len)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", samples_dir, name);
    uint8_t *m = slurp(path, len);
    assert_non_null(m);
    return m;
}

static dkd_zone *sample_zone(void)
{
    char path[2048], err[256];
    snprintf(path, sizeof path, "%s/keys.zone", samples_dir);
    dkd_zone *z = dkd_zone_load(path, err, sizeof err);
    if (z == NULL) {
        fail_msg("zone: %s", err);
    }
    return z;
}

typedef struct verdict {
    enum dkd_result result;
    enum dkd_reason reason;
    unsigned key_bits;
    uint64_t body_total;
} verdict;

/* The verification time the tests pass: now, or a fixed time for the x= checks. */
static int64_t fixed_now;

static int64_t at(void)
{
    return fixed_now != 0 ? fixed_now : (int64_t)time(NULL);
}

/* verify_whole runs dkd_verify_message and copies the verdicts out. */
static size_t verify_whole(dkd_engine *eng, dkd_zone *zone, const uint8_t *msg, size_t len,
                           verdict *out, size_t max)
{
    dkd_msg *m = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(zone);
    assert_int_equal(dkd_verify_message(m, &src, msg, len, at()), 0);
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    for (size_t i = 0; i < n && i < max; i++) {
        out[i] = (verdict){r[i].result, r[i].reason, r[i].key_bits, r[i].body_total};
    }
    assert_non_null(dkd_msg_authres(m, "test"));
    dkd_msg_free(m);
    return n;
}

typedef struct lookup_box {
    dkd_key *key;
} lookup_box;

static void box_done(void *arg, dkd_key *key)
{
    ((lookup_box *)arg)->key = key;
}

/*
 * verify_streamed: header block first, body in chunks of random sizes (1 byte up to 300),
 * keys delivered at a random point (before, during or after the body).
 */
static size_t verify_streamed(dkd_msg *m, dkd_zone *zone, const uint8_t *msg, size_t len,
                              unsigned seed, verdict *out, size_t max)
{
    dkd_keysrc src = dkd_zone_keysrc(zone);
    size_t hlen = dkd_split_message(msg, len);
    assert_int_equal(dkd_msg_begin(m, msg, hlen, at()), 0);
    size_t nkeys = dkd_msg_key_count(m);
    dkd_key *keys[64] = {0};
    assert_true(nkeys < 64);
    for (size_t k = 0; k < nkeys; k++) {
        lookup_box box = {0};
        assert_int_equal(src.lookup(src.impl, dkd_msg_key_name(m, k), box_done, &box), 0);
        assert_non_null(box.key);
        keys[k] = box.key;
    }
    srand(seed);
    size_t body_len = len - hlen;
    size_t key_at = body_len ? (size_t)rand() % (body_len + 1) : 0;
    bool keys_given = false;
    for (size_t off = 0; off <= body_len;) {
        if (!keys_given && off >= key_at) {
            for (size_t k = 0; k < nkeys; k++) {
                dkd_msg_key_ready(m, k, keys[k]);
            }
            keys_given = true;
        }
        if (off == body_len) {
            break;
        }
        size_t chunk = (size_t)(rand() % 4 == 0 ? 1 : 1 + rand() % 300);
        if (chunk > body_len - off) {
            chunk = body_len - off;
        }
        assert_int_equal(dkd_msg_body(m, msg + hlen + off, chunk), 0);
        off += chunk;
    }
    assert_int_equal(dkd_msg_end(m), 0);
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    for (size_t i = 0; i < n && i < max; i++) {
        out[i] = (verdict){r[i].result, r[i].reason, r[i].key_bits, r[i].body_total};
    }
    dkd_msg_reset(m);
    return n;
}

static void test_samples_give_their_cause(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        enum dkd_result result;
        enum dkd_reason reason;
    } cases[] = {
        {"01-pass-rsa2048.eml", DKD_RESULT_PASS, DKD_REASON_OK},
        {"02-pass-ed25519.eml", DKD_RESULT_PASS, DKD_REASON_OK},
        {"04-fail-body-altered.eml", DKD_RESULT_FAIL, DKD_REASON_BODY_HASH_MISMATCH},
        {"05-fail-wrong-key.eml", DKD_RESULT_FAIL, DKD_REASON_SIGNATURE_MISMATCH},
        {"06-permerror-key-missing.eml", DKD_RESULT_PERMERROR, DKD_REASON_KEY_NOT_FOUND},
        {"07-permerror-key-revoked.eml", DKD_RESULT_PERMERROR, DKD_REASON_KEY_REVOKED},
        {"08-permerror-key-syntax.eml", DKD_RESULT_PERMERROR, DKD_REASON_KEY_SYNTAX},
        {"09-temperror-dns.eml", DKD_RESULT_TEMPERROR, DKD_REASON_DNS_ERROR},
        {"10-permerror-rsa-sha1.eml", DKD_RESULT_PERMERROR, DKD_REASON_INSECURE_ALGORITHM},
        {"11-fail-key-too-small.eml", DKD_RESULT_FAIL, DKD_REASON_KEY_TOO_SMALL},
    };
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_zone *zone = sample_zone();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t len;
        uint8_t *msg = sample(cases[c].file, &len);
        verdict v[4];
        size_t n = verify_whole(eng, zone, msg, len, v, 4);
        if (n != 1 || v[0].result != cases[c].result || v[0].reason != cases[c].reason) {
            fail_msg("%s: got %zu sigs, %s/%s", cases[c].file, n,
                     n ? dkd_result_name(v[0].result) : "-",
                     n ? dkd_reason_code(v[0].reason) : "-");
        }
        free(msg);
    }
    size_t len;
    uint8_t *msg = sample("03-none-unsigned.eml", &len);
    verdict v[1];
    assert_int_equal(verify_whole(eng, zone, msg, len, v, 1), 0);
    free(msg);
    dkd_zone_free(zone);
    dkd_engine_free(eng);
}

static void test_policy_options(void **state)
{
    (void)state;
    dkd_config cfg;
    dkd_config_init(&cfg);
    cfg.allow_sha1 = true;
    cfg.min_rsa_bits = 512;
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_zone *zone = sample_zone();
    const char *now_pass[] = {"10-permerror-rsa-sha1.eml", "11-fail-key-too-small.eml"};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        uint8_t *msg = sample(now_pass[i], &len);
        verdict v[1];
        assert_int_equal(verify_whole(eng, zone, msg, len, v, 1), 1);
        assert_int_equal(v[0].result, DKD_RESULT_PASS);
        free(msg);
    }
    dkd_engine_free(eng);

    /* A maximum below the key's size refuses it. */
    dkd_config_init(&cfg);
    cfg.max_rsa_bits = 1024;
    eng = dkd_engine_new(&cfg);
    size_t len;
    uint8_t *msg = sample("01-pass-rsa2048.eml", &len);
    verdict v[1];
    assert_int_equal(verify_whole(eng, zone, msg, len, v, 1), 1);
    assert_int_equal(v[0].result, DKD_RESULT_PERMERROR);
    assert_int_equal(v[0].reason, DKD_REASON_KEY_TOO_LARGE);
    free(msg);
    dkd_engine_free(eng);
    dkd_zone_free(zone);
}

/* Bare LF input is taken as CRLF: the LF form of a CRLF-signed message still passes. */
static void test_bare_lf_is_crlf(void **state)
{
    (void)state;
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_zone *zone = sample_zone();
    size_t len;
    uint8_t *msg = sample("01-pass-rsa2048.eml", &len);
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        if (!(msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n')) {
            msg[j++] = msg[i];
        }
    }
    verdict v[1];
    assert_int_equal(verify_whole(eng, zone, msg, j, v, 1), 1);
    assert_int_equal(v[0].result, DKD_RESULT_PASS);
    free(msg);
    dkd_zone_free(zone);
    dkd_engine_free(eng);
}

/* The signature cap: 20 copies of one signature, 8 evaluated, one key lookup. */
static void test_signature_cap(void **state)
{
    (void)state;
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_zone *zone = sample_zone();
    size_t len;
    uint8_t *msg = sample("01-pass-rsa2048.eml", &len);
    size_t sig_len = 0;
    /* The DKIM-Signature field is first and ends where "From:" starts. */
    const char *from = strstr((const char *)msg, "\r\nFrom:");
    assert_non_null(from);
    sig_len = (size_t)(from - (const char *)msg) + 2;
    size_t big_len = sig_len * 20 + (len - sig_len);
    uint8_t *big = malloc(big_len);
    for (size_t i = 0; i < 20; i++) {
        memcpy(big + i * sig_len, msg, sig_len);
    }
    memcpy(big + 20 * sig_len, msg + sig_len, len - sig_len);

    dkd_msg *m = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(zone);
    assert_int_equal(dkd_verify_message(m, &src, big, big_len, at()), 0);
    assert_int_equal(dkd_msg_key_count(m), 1);
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    assert_int_equal(n, 20);
    for (size_t i = 0; i < n; i++) {
        if (i < 8) {
            /* Bottom-up selection: the other copies are not in h=, so each passes. */
            assert_int_equal(r[i].result, DKD_RESULT_PASS);
        } else {
            assert_int_equal(r[i].result, DKD_RESULT_NEUTRAL);
            assert_int_equal(r[i].reason, DKD_REASON_NOT_EVALUATED);
        }
    }
    dkd_msg_free(m);
    free(big);
    free(msg);
    dkd_zone_free(zone);
    dkd_engine_free(eng);
}

static void test_call_order_is_checked(void **state)
{
    (void)state;
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_zone *zone = sample_zone();
    dkd_msg *m = dkd_msg_new(eng);
    assert_int_equal(dkd_msg_body(m, (const uint8_t *)"x", 1), DKD_ERR_STATE);
    assert_int_equal(dkd_msg_end(m), DKD_ERR_STATE);

    size_t len;
    uint8_t *msg = sample("01-pass-rsa2048.eml", &len);
    size_t hlen = dkd_split_message(msg, len);
    assert_int_equal(dkd_msg_begin(m, msg, hlen, at()), 0);
    assert_int_equal(dkd_msg_begin(m, msg, hlen, at()), DKD_ERR_STATE);
    assert_int_equal(dkd_msg_key_count(m), 1);
    assert_string_equal(dkd_msg_key_name(m, 0), "rsa2048._domainkey.example.com");
    assert_int_equal(dkd_msg_body(m, msg + hlen, len - hlen), 0);
    /* The key has not arrived: end says so, and can be called again once it has. */
    assert_int_equal(dkd_msg_end(m), DKD_ERR_PENDING);
    assert_int_equal(dkd_msg_body(m, msg, 1), DKD_ERR_STATE);
    dkd_keysrc src = dkd_zone_keysrc(zone);
    lookup_box box = {0};
    assert_int_equal(src.lookup(src.impl, dkd_msg_key_name(m, 0), box_done, &box), 0);
    dkd_msg_key_ready(m, 0, box.key);
    assert_int_equal(dkd_msg_end(m), 0);
    size_t n;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].result, DKD_RESULT_PASS);
    assert_int_equal(r[0].key_bits, 2048);
    assert_string_equal(r[0].d, "example.com");
    assert_string_equal(r[0].s, "rsa2048");
    assert_string_equal(r[0].a, "rsa-sha256");
    assert_int_equal(strlen(r[0].b_prefix), 8);
    dkd_msg_reset(m);
    assert_int_equal(dkd_msg_results(m, &n), NULL);
    assert_int_equal(n, 0);

    /* A header block over the limit is refused without harm to the next message. */
    dkd_config cfg;
    dkd_config_init(&cfg);
    cfg.max_header_bytes = 64;
    dkd_engine *small = dkd_engine_new(&cfg);
    dkd_msg *m2 = dkd_msg_new(small);
    assert_int_equal(dkd_msg_begin(m2, msg, hlen, at()), DKD_ERR_TOO_LARGE);
    dkd_msg_free(m2);
    dkd_engine_free(small);

    free(msg);
    dkd_msg_free(m);
    dkd_zone_free(zone);
    dkd_engine_free(eng);
}

/* Chunking and key timing never change a verdict: every sample and every corpus
 * message, verified whole and streamed with several random splits. */
static void check_chunking_dir(dkd_engine *eng, dkd_msg *m, const char *dir, dkd_zone *zone,
                               size_t *checked)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".eml") != 0) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *msg = slurp(path, &len);
        assert_non_null(msg);
        verdict whole[32], part[32];
        size_t n = verify_whole(eng, zone, msg, len, whole, 32);
        for (unsigned seed = 1; seed <= 5; seed++) {
            size_t n2 = verify_streamed(m, zone, msg, len, seed, part, 32);
            assert_int_equal(n, n2);
            for (size_t i = 0; i < n && i < 32; i++) {
                if (whole[i].result != part[i].result || whole[i].reason != part[i].reason ||
                    whole[i].key_bits != part[i].key_bits ||
                    whole[i].body_total != part[i].body_total) {
                    fail_msg("%s sig %zu seed %u: whole %s/%s/%u/%llu, streamed %s/%s/%u/%llu",
                             path, i, seed, dkd_result_name(whole[i].result),
                             dkd_reason_code(whole[i].reason), whole[i].key_bits,
                             (unsigned long long)whole[i].body_total,
                             dkd_result_name(part[i].result), dkd_reason_code(part[i].reason),
                             part[i].key_bits, (unsigned long long)part[i].body_total);
                }
            }
        }
        (*checked)++;
        free(msg);
    }
    closedir(d);
}

static void test_chunking_never_changes_results(void **state)
{
    (void)state;
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_msg *m = dkd_msg_new(eng);
    size_t checked = 0;
    dkd_zone *zone = sample_zone();
    check_chunking_dir(eng, m, samples_dir, zone, &checked);
    dkd_zone_free(zone);
    static const char *sets[] = {"mail-dkim",          "dkimpy",   "dkimpy-derived", "go-msgauth",
                                 "stalwart-mail-auth", "mailauth", "rfc-examples"};
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        char zpath[2048], mdir[2048], err[256];
        snprintf(zpath, sizeof zpath, "%s/conformance/%s/keys.zone", shared_dir, sets[s]);
        snprintf(mdir, sizeof mdir, "%s/conformance/%s/messages", shared_dir, sets[s]);
        dkd_zone *z = dkd_zone_load(zpath, err, sizeof err);
        if (z == NULL) {
            continue; /* corpus not present here: the samples still ran */
        }
        check_chunking_dir(eng, m, mdir, z, &checked);
        dkd_zone_free(z);
    }
    assert_true(checked >= 11);
    dkd_msg_free(m);
    dkd_engine_free(eng);
}

/* x= against an injected clock, with the configured skew. */
static void test_expiry_uses_injected_clock(void **state)
{
    (void)state;
    char path[2048], zpath[2048], err[256];
    snprintf(path, sizeof path, "%s/conformance/mail-dkim/messages/ignore_7.eml", shared_dir);
    snprintf(zpath, sizeof zpath, "%s/conformance/mail-dkim/keys.zone", shared_dir);
    size_t len;
    uint8_t *msg = slurp(path, &len);
    dkd_zone *zone = dkd_zone_load(zpath, err, sizeof err);
    if (msg == NULL || zone == NULL) {
        free(msg);
        skip();
    }
    const int64_t x = 1193229946;
    dkd_config cfg;
    dkd_config_init(&cfg);
    cfg.allow_sha1 = true;
    cfg.min_rsa_bits = 384;
    dkd_engine *eng = dkd_engine_new(&cfg);
    verdict v[1];
    fixed_now = x + cfg.clock_skew + 1;
    assert_int_equal(verify_whole(eng, zone, msg, len, v, 1), 1);
    assert_int_equal(v[0].reason, DKD_REASON_EXPIRED);
    fixed_now = x + cfg.clock_skew; /* within the skew: not expired */
    assert_int_equal(verify_whole(eng, zone, msg, len, v, 1), 1);
    assert_int_not_equal(v[0].reason, DKD_REASON_EXPIRED);
    fixed_now = 0;
    free(msg);
    dkd_zone_free(zone);
    dkd_engine_free(eng);
}

/* l= with text appended after the signed part: pass by default, policy on request. */
static void test_partial_body_policy(void **state)
{
    (void)state;
    char path[2048], zpath[2048], err[256];
    snprintf(path, sizeof path, "%s/conformance/dkimpy-derived/messages/rsa-l-tag-appended.eml",
             shared_dir);
    snprintf(zpath, sizeof zpath, "%s/conformance/dkimpy-derived/keys.zone", shared_dir);
    size_t len;
    uint8_t *msg = slurp(path, &len);
    dkd_zone *zone = dkd_zone_load(zpath, err, sizeof err);
    if (msg == NULL || zone == NULL) {
        free(msg);
        skip();
    }
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_msg *m = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(zone);
    assert_int_equal(dkd_verify_message(m, &src, msg, len, at()), 0);
    size_t n;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].result, DKD_RESULT_PASS);
    assert_true(r[0].has_l);
    assert_true(r[0].body_signed < r[0].body_total);
    dkd_msg_free(m);
    dkd_engine_free(eng);

    dkd_config cfg;
    dkd_config_init(&cfg);
    cfg.refuse_partial_body = true;
    eng = dkd_engine_new(&cfg);
    verdict v[1];
    assert_int_equal(verify_whole(eng, zone, msg, len, v, 1), 1);
    assert_int_equal(v[0].result, DKD_RESULT_POLICY);
    assert_int_equal(v[0].reason, DKD_REASON_PARTIAL_BODY);
    dkd_engine_free(eng);
    free(msg);
    dkd_zone_free(zone);
}

/* RFC 6376 Appendix A.2 and RFC 8463 Appendix A.3, with exactly the RFCs' keys. */
static void test_rfc_examples(void **state)
{
    (void)state;
    char zpath[2048], err[256];
    snprintf(zpath, sizeof zpath, "%s/conformance/rfc-examples/keys.zone", shared_dir);
    dkd_zone *zone = dkd_zone_load(zpath, err, sizeof err);
    if (zone == NULL) {
        skip();
    }
    static const struct {
        const char *file;
        size_t sigs;
        const char *alg[2];
    } cases[] = {
        {"rfc6376-appendix-a2.eml", 1, {"rsa-sha256", NULL}},
        {"rfc8463-appendix-a3.eml", 2, {"ed25519-sha256", "rsa-sha256"}},
    };
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_msg *m = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(zone);
    for (size_t c = 0; c < 2; c++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/conformance/rfc-examples/messages/%s", shared_dir,
                 cases[c].file);
        size_t len;
        uint8_t *msg = slurp(path, &len);
        assert_non_null(msg);
        assert_int_equal(dkd_verify_message(m, &src, msg, len, at()), 0);
        size_t n;
        const dkd_sig_result *r = dkd_msg_results(m, &n);
        assert_int_equal(n, cases[c].sigs);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(r[i].result, DKD_RESULT_PASS);
            assert_string_equal(r[i].a, cases[c].alg[i]);
        }
        dkd_msg_reset(m);
        free(msg);
    }
    dkd_msg_free(m);
    dkd_engine_free(eng);
    dkd_zone_free(zone);
}

/* Garbage never crashes and never passes. */
/*
 * dkd_verify_message finds the end of the header block while indexing it (one pass);
 * the split and the header limit must be exactly those of dkd_split_message followed by
 * dkd_msg_begin: the limit at, just below and just above the block's length (the
 * empty line's CRLF straddling it), for a signed sample with CRLF and bare-LF line ends.
 */
static void test_split_and_limit_match_begin(void **state)
{
    (void)state;
    dkd_zone *zone = sample_zone();
    dkd_keysrc src = dkd_zone_keysrc(zone);
    size_t len = 0;
    uint8_t *crlf = sample("01-pass-rsa2048.eml", &len);
    /* The same message with bare LF line ends (the signature passes either way). */
    uint8_t *lf = malloc(len);
    assert_non_null(lf);
    size_t lf_len = 0;
    for (size_t i = 0; i < len; i++) {
        if (!(crlf[i] == '\r' && i + 1 < len && crlf[i + 1] == '\n')) {
            lf[lf_len++] = crlf[i];
        }
    }
    const struct {
        const uint8_t *msg;
        size_t len;
    } msgs[] = {
        {crlf, len},
        {lf, lf_len},
        {(const uint8_t *)"\r\nbody", 6},
        {(const uint8_t *)"From: a\r\nTo: b", 14},
        {(const uint8_t *)"From: a\r\r\n\r\n", 12},
    };
    for (size_t k = 0; k < sizeof msgs / sizeof msgs[0]; k++) {
        size_t hlen = dkd_split_message(msgs[k].msg, msgs[k].len);
        for (size_t limit = hlen > 3 ? hlen - 3 : 0; limit <= hlen + 2; limit++) {
            dkd_config cfg;
            dkd_config_init(&cfg);
            cfg.max_header_bytes = limit;
            dkd_engine *eng = dkd_engine_new(&cfg);
            dkd_msg *whole = dkd_msg_new(eng);
            dkd_msg *split = dkd_msg_new(eng);
            int want = hlen > limit ? DKD_ERR_TOO_LARGE : 0;
            assert_int_equal(dkd_msg_begin(split, msgs[k].msg, hlen, at()), want);
            assert_int_equal(dkd_verify_message(whole, &src, msgs[k].msg, msgs[k].len, at()), want);
            if (want == 0) {
                size_t n = 0;
                const dkd_sig_result *r = dkd_msg_results(whole, &n);
                for (size_t i = 0; i < n; i++) {
                    assert_int_equal(r[i].body_total, r[i].body_signed);
                    if (k < 2) {
                        assert_int_equal(r[i].result, DKD_RESULT_PASS);
                    }
                }
            }
            dkd_msg_free(whole);
            dkd_msg_free(split);
            dkd_engine_free(eng);
        }
    }
    free(lf);
    free(crlf);
    dkd_zone_free(zone);
}

static void test_garbage_input(void **state)
{
    (void)state;
    dkd_engine *eng = dkd_engine_new(NULL);
    dkd_zone *zone = sample_zone();
    static const char *inputs[] = {
        "",
        "\r\n\r\n",
        "no colon line\r\nDKIM-Signature: v=1; a=rsa-sha256\r\n\r\nbody",
        "DKIM-Signature:\r\n\r\n",
        "DKIM-Signature: ;;;\r\nFrom: a@b\r\n",
        " leading continuation\r\nFrom: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        verdict v[4];
        size_t n = verify_whole(eng, zone, (const uint8_t *)inputs[i], strlen(inputs[i]), v, 4);
        for (size_t s = 0; s < n && s < 4; s++) {
            assert_int_equal(v[s].result, DKD_RESULT_PERMERROR);
        }
    }
    dkd_zone_free(zone);
    dkd_engine_free(eng);
}

int main(void)
{
    const char *src = getenv("DKD_SOURCE_ROOT");
    const char *shared = getenv("DKD_SHARED");
    snprintf(samples_dir, sizeof samples_dir, "%s/samples", src ? src : ".");
    snprintf(shared_dir, sizeof shared_dir, "%s", shared ? shared : "../shared");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_give_their_cause),
        cmocka_unit_test(test_policy_options),
        cmocka_unit_test(test_bare_lf_is_crlf),
        cmocka_unit_test(test_signature_cap),
        cmocka_unit_test(test_call_order_is_checked),
        cmocka_unit_test(test_chunking_never_changes_results),
        cmocka_unit_test(test_expiry_uses_injected_clock),
        cmocka_unit_test(test_partial_body_policy),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_garbage_input),
        cmocka_unit_test(test_split_and_limit_match_begin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
