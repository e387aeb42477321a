/*
 * authres_fuzz.c - libFuzzer target for dkd__authres_servid_is (engine/core/authres.c).
 *
 * Input: the first byte n, then an id of n % 64 bytes (fewer when the input is short),
 * then the field value. Each is copied to a buffer of exactly its size, so a read past
 * either span is an ASan report. Properties:
 *  - folding: the result is the same with every CRLF of the value turned into a bare LF
 *    (a milter may hand us either);
 *  - case: the same with the value's ASCII letters swapped in case (ids compare
 *    case-insensitively and nothing else in the grammar has case);
 *  - a value that is ours stays ours with a comment and a fold put before it, and with
 *    "; dkim=pass" put after it;
 *  - what we write, we read: for an id without control bytes (dkd__authres_format drops
 *    those), the value dkd__authres_format writes is ours.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "authres.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool is_ours(const uint8_t *v, size_t vlen, dkd_span id)
{
    uint8_t *copy = malloc(vlen ? vlen : 1);
    CHECK(copy != NULL);
    if (vlen > 0) {
        memcpy(copy, v, vlen);
    }
    bool r = dkd__authres_servid_is(dkd__span(copy, vlen), id);
    free(copy);
    return r;
}

/* crlf_to_lf writes v with each CRLF as LF into out (room for vlen); returns its length. */
static size_t crlf_to_lf(const uint8_t *v, size_t vlen, uint8_t *out)
{
    size_t w = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (!(v[i] == '\r' && i + 1 < vlen && v[i + 1] == '\n')) {
            out[w++] = v[i];
        }
    }
    return w;
}

static void swap_case(const uint8_t *v, size_t vlen, uint8_t *out)
{
    for (size_t i = 0; i < vlen; i++) {
        uint8_t c = v[i];
        out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? (uint8_t)(c ^ 0x20) : c;
    }
}

static void check_wrapped(const uint8_t *v, size_t vlen, dkd_span id)
{
    static const char pre[] = " (a (nested) comment)\r\n\t", post[] = "; dkim=pass";
    uint8_t *w = malloc(sizeof pre + vlen + sizeof post);
    CHECK(w != NULL);
    memcpy(w, pre, sizeof pre - 1);
    memcpy(w + sizeof pre - 1, v, vlen);
    CHECK(is_ours(w, sizeof pre - 1 + vlen, id));
    memcpy(w + vlen, post, sizeof post - 1);
    memcpy(w, v, vlen);
    CHECK(is_ours(w, vlen + sizeof post - 1, id));
    free(w);
}

static void check_format_round_trip(dkd_span id)
{
    for (size_t i = 0; i < id.len; i++) {
        if (id.ptr[i] < 0x20 || id.ptr[i] == 0x7f) {
            return;
        }
    }
    static dkd_arena arena;
    static bool arena_ready;
    if (!arena_ready) {
        dkd__arena_init(&arena, 1 << 16);
        arena_ready = true;
    }
    char *idz = dkd__arena_strndup(&arena, id.ptr, id.len);
    const char *s = dkd__authres_format(&arena, idz, NULL, 0);
    CHECK(idz != NULL && s != NULL);
    const char *colon = strchr(s, ':');
    CHECK(colon != NULL);
    /* An empty id is written as "localhost", which no empty id names. */
    CHECK(dkd__authres_servid_is(dkd__span_str(colon + 1), id) == (id.len > 0));
    dkd__arena_reset(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096) {
        return 0;
    }
    size_t idlen = data[0] % 64;
    idlen = idlen < size - 1 ? idlen : size - 1;
    uint8_t *id = malloc(idlen ? idlen : 1);
    CHECK(id != NULL);
    if (idlen > 0) {
        memcpy(id, data + 1, idlen);
    }
    dkd_span ids = dkd__span(id, idlen);
    const uint8_t *v = data + 1 + idlen;
    size_t vlen = size - 1 - idlen;

    bool r = is_ours(v, vlen, ids);
    uint8_t *alt = malloc(vlen ? vlen : 1);
    CHECK(alt != NULL);
    CHECK(is_ours(alt, crlf_to_lf(v, vlen, alt), ids) == r);
    swap_case(v, vlen, alt);
    CHECK(is_ours(alt, vlen, ids) == r);
    free(alt);
    if (r) {
        check_wrapped(v, vlen, ids);
    }
    check_format_round_trip(ids);
    free(id);
    return 0;
}
