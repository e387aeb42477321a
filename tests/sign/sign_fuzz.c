/*
 * sign_fuzz.c - libFuzzer target for the signer (engine/sign/). The first byte picks the property:
 *
 *  - even: the input after it is a message. Signed with an Ed25519 key (fast, so the
 *    fuzzer spends its time in the parsers) under the canonicalization the byte's bits
 *    choose, it must verify with the engine; and with the first body letter changed it
 *    must fail with body-hash-mismatch. dkd_sign may refuse (no From, too many fields),
 *    never crash. The streaming signer, fed the header block and then the body in
 *    chunks whose sizes come from the body's own bytes, writes the same field byte for
 *    byte (Ed25519 signatures are deterministic), and refuses exactly what dkd_sign
 *    refuses.
 *  - odd: the input after it is a key record. dkd_record_lint never calls a record
 *    "fine" (no error) when the key parser refuses it, every finding's offset lies in
 *    the record, and it reports nothing at all only never.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dkimd/engine.h>
#include <dkimd/sign.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static dkd_signkey *key;
static dkd_zone *zone;
static dkd_engine *eng;
static dkd_msg *msg;

static void init(void)
{
    char err[256], path[] = "/tmp/sign_fuzz.XXXXXX";
    key = dkd_signkey_generate(DKD_KEY_ED25519, 0, err, sizeof err);
    CHECK(key != NULL);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    char *rec = dkd_signkey_record(key);
    FILE *f = fdopen(fd, "w");
    CHECK(f != NULL && rec != NULL);
    fprintf(f, "fz._domainkey.example.com. IN TXT \"%s\"\n", rec);
    fclose(f);
    free(rec);
    zone = dkd_zone_load(path, err, sizeof err);
    unlink(path);
    CHECK(zone != NULL);
    dkd_config cfg;
    dkd_config_init(&cfg);
    eng = dkd_engine_new(&cfg);
    msg = dkd_msg_new(eng);
    CHECK(msg != NULL);
}

/* verify_first returns the first signature's reason (our signature is on top). */
static enum dkd_reason verify_first(const uint8_t *m, size_t len)
{
    dkd_keysrc src = dkd_zone_keysrc(zone);
    dkd_msg_reset(msg);
    int rc = dkd_verify_message(msg, &src, m, len, (int64_t)time(NULL));
    if (rc != 0) {
        return DKD_REASON__COUNT; /* too large for the engine's limits: no verdict */
    }
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(msg, &n);
    CHECK(n >= 1);
    return r[0].reason;
}

/* sign_streamed is dkd_sign through dkd_signer, the body cut where its bytes say. */
static int sign_streamed(const dkd_sign_opts *o, const uint8_t *data, size_t size, char **out)
{
    char err[256];
    size_t hlen = dkd_split_message(data, size);
    dkd_signer *s = NULL;
    int rc = dkd_signer_begin(key, o, data, hlen, &s, err, sizeof err);
    if (rc != 0) {
        CHECK(s == NULL);
        return rc;
    }
    for (size_t pos = hlen; pos < size;) {
        size_t n = 1 + data[pos] % 13; /* short pieces, so CRLFs and WSP runs get cut */
        n = n < size - pos ? n : size - pos;
        CHECK(dkd_signer_body(s, data + pos, n) == 0);
        pos += n;
    }
    rc = dkd_signer_end(s, out, err, sizeof err);
    CHECK(dkd_signer_body(s, data, 0) == DKD_ERR_STATE);
    dkd_signer_free(s);
    return rc;
}

static void sign_property(uint8_t mode, const uint8_t *data, size_t size)
{
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    o.domain = "example.com";
    o.selector = "fz";
    o.timestamp = 1700000000;
    o.header_relaxed = (mode & 2) != 0;
    o.body_relaxed = (mode & 4) != 0;
    o.body_length = (mode & 8) != 0;
    char err[256], *hdr = NULL, *streamed = NULL;
    int rc = dkd_sign(key, &o, data, size, &hdr, err, sizeof err);
    CHECK(sign_streamed(&o, data, size, &streamed) == rc);
    if (rc != 0) {
        CHECK(hdr == NULL && streamed == NULL);
        return;
    }
    CHECK(strcmp(hdr, streamed) == 0);
    free(streamed);
    size_t hl = strlen(hdr);
    uint8_t *m = malloc(hl + size + 1);
    CHECK(m != NULL);
    memcpy(m, hdr, hl);
    memcpy(m + hl, data, size);
    enum dkd_reason why = verify_first(m, hl + size);
    if (why != DKD_REASON__COUNT) {
        /* A header block the verifier cannot use whole (a malformed line before From,
         * more fields than it takes) may still fail; everything else must pass. */
        CHECK(why == DKD_REASON_OK || why == DKD_REASON_SIG_SYNTAX ||
              why == DKD_REASON_FROM_NOT_SIGNED);
        size_t body = hl + dkd_split_message(data, size);
        for (size_t i = body; why == DKD_REASON_OK && i < hl + size; i++) {
            if (m[i] >= 'a' && m[i] <= 'y') {
                m[i]++;
                CHECK(verify_first(m, hl + size) == DKD_REASON_BODY_HASH_MISMATCH);
                break;
            }
        }
    }
    free(m);
    free(hdr);
}

typedef struct lint_seen {
    size_t len, count;
    int errors;
} lint_seen;

static void on_finding(void *arg, const dkd_lint_finding *f)
{
    lint_seen *s = arg;
    CHECK(f->offset <= s->len);
    CHECK(f->code != NULL && f->code[0] != '\0' && f->message != NULL && f->tag != NULL);
    s->count++;
    s->errors += f->level == DKD_LINT_ERROR;
}

static void lint_property(const uint8_t *data, size_t size)
{
    lint_seen s = {size, 0, 0};
    int worst = dkd_record_lint(data, size, on_finding, &s);
    CHECK(s.count > 0 && worst >= DKD_LINT_INFO);
    CHECK((worst == DKD_LINT_ERROR) == (s.errors > 0));
    dkd_key *k = dkd_key_from_record(data, size);
    CHECK(k != NULL);
    if (dkd_key_reason(k) != DKD_REASON_OK) {
        CHECK(s.errors > 0);
    }
    dkd_key_unref(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (key == NULL) {
        init();
    }
    if (size == 0 || size > 65536) {
        return 0;
    }
    if (data[0] & 1) {
        lint_property(data + 1, size - 1);
    } else {
        sign_property(data[0], data + 1, size - 1);
    }
    return 0;
}
