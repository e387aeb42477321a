/*
 * sig_fuzz.c - libFuzzer target for engine/core/sig.c.
 *
 * Besides "no crash, no over-read", checks on every input:
 *  - failure always carries a reason other than OK and a non-empty detail;
 *  - a, d, s, i_raw, b_raw point into the input (or are empty), success or not;
 *  - on success the required fields are set and consistent: a known algorithm with its
 *    hash, valid d= and s=, at least one h= name and one equal to "from", non-empty b
 *    and bh, an identity holding '@', x >= t, and a b= range that is the b tag's raw
 *    value (so emptying it leaves "b=" followed by ';' or the end).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_inside(dkd_span s, const uint8_t *data, size_t size)
{
    if (s.len > 0) {
        CHECK(s.ptr >= data && s.ptr + s.len <= data + size);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dkd_sig sig;
    dkd_sig_error err;
    dkd_arena arena;
    dkd__arena_init(&arena, 1 << 20);
    bool ok = dkd__sig_parse(dkd__span(data, size), &sig, &arena, &err);
    check_inside(sig.a, data, size);
    check_inside(sig.d, data, size);
    check_inside(sig.s, data, size);
    check_inside(sig.i_raw, data, size);
    check_inside(sig.b_raw, data, size);
    CHECK(memchr(err.detail, '\0', sizeof err.detail) != NULL);
    if (!ok) {
        CHECK(err.reason != DKD_REASON_OK && err.reason < DKD_REASON__COUNT);
        CHECK(err.detail[0] != '\0');
        dkd__arena_destroy(&arena);
        return 0;
    }
    CHECK(err.reason == DKD_REASON_OK);
    CHECK(sig.alg >= DKD_ALG_RSA_SHA1 && sig.alg <= DKD_ALG_ED25519_SHA256);
    CHECK(sig.hash == (sig.alg == DKD_ALG_RSA_SHA1 ? DKD_HASH_SHA1 : DKD_HASH_SHA256));
    CHECK(dkd__domain_valid(sig.d) && dkd__domain_valid(sig.s));
    CHECK(sig.h_count >= 1 && sig.h_count <= DKD_SIG_MAX_H);
    bool from = false;
    for (size_t k = 0; k < sig.h_count; k++) {
        CHECK(sig.h_names[k].len > 0);
        check_inside(sig.h_names[k], data, size);
        from = from || dkd__span_eq_str_nocase(sig.h_names[k], "from");
    }
    CHECK(from);
    CHECK(sig.b_len > 0 && sig.b_len <= DKD_SIG_MAX_B);
    CHECK(sig.bh_len > 0 && sig.bh_len <= sizeof sig.bh);
    CHECK(sig.identity.len > 0 && memchr(sig.identity.ptr, '@', sig.identity.len) != NULL);
    CHECK(!(sig.has_t && sig.has_x) || sig.x >= sig.t);
    CHECK(sig.b_value_off <= sig.b_value_end && sig.b_value_end <= size);
    CHECK(sig.b_value_off >= 2 && data[sig.b_value_off - 1] == '=');
    CHECK(sig.b_value_end == size || data[sig.b_value_end] == ';');
    CHECK(sig.b_raw.ptr >= data + sig.b_value_off &&
          sig.b_raw.ptr + sig.b_raw.len <= data + sig.b_value_end);
    dkd__arena_destroy(&arena);
    return 0;
}
