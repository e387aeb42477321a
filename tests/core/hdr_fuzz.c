/*
 * hdr_fuzz.c - fuzz target for the header block splitter. Beyond "no crash" it checks
 * the properties the verifier relies on: fields are contiguous from the start of the
 * block and in order, a name is a printable prefix of its raw without ':', each value
 * lies inside its raw, what follows the last field is an empty line (or nothing) when
 * parsing succeeded, and the block length is consistent with the parse.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"

enum { MAXF = 64 };

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static bool inside(dkd_span inner, dkd_span outer)
{
    return inner.ptr >= outer.ptr && inner.len <= outer.len &&
           (size_t)(inner.ptr - outer.ptr) <= outer.len - inner.len;
}

static void check_parse(const uint8_t *data, size_t size, size_t max)
{
    dkd_field f[MAXF];
    size_t count = SIZE_MAX, err_off = SIZE_MAX;
    dkd_hdr_status st = dkd__hdr_parse(dkd__span(data, size), f, max, &count, &err_off);
    CHECK(count <= max);

    const uint8_t *next = data;
    for (size_t i = 0; i < count; i++) {
        CHECK(f[i].raw.ptr == next); /* contiguous, in order, from the block start */
        CHECK(f[i].raw.len > 0);
        CHECK(inside(f[i].raw, dkd__span(data, size)));
        CHECK(f[i].name.ptr == f[i].raw.ptr);
        CHECK(f[i].name.len > 0);
        for (size_t k = 0; k < f[i].name.len; k++) {
            uint8_t c = f[i].name.ptr[k];
            CHECK(c >= 0x21 && c <= 0x7e && c != ':');
        }
        CHECK(inside(f[i].value, f[i].raw));
        /* The value starts right after the colon (WSP allowed between name and it). */
        CHECK(f[i].value.ptr > f[i].name.ptr + f[i].name.len);
        CHECK(f[i].value.ptr[-1] == ':');
        /* Raw ends with a line end, unless it is the last bytes of the block. */
        const uint8_t *end = f[i].raw.ptr + f[i].raw.len;
        CHECK(end[-1] == '\n' || end == data + size);
        /* What lies between the value and the end of raw is just the line end. */
        size_t tail = (size_t)(end - (f[i].value.ptr + f[i].value.len));
        CHECK(tail <= 2);
        if (i + 1 < count) {
            CHECK(tail >= 1);
        }
        next = end;
    }
    size_t used = (size_t)(next - data);
    if (st == DKD_HDR_OK) {
        /* Parsing stopped at the end or at an empty line. */
        size_t rest = size - used;
        const uint8_t *r = data + used;
        CHECK(rest == 0 || r[0] == '\n' || (rest >= 2 && r[0] == '\r' && r[1] == '\n'));
    } else {
        CHECK(err_off == used);
        CHECK(err_off <= size);
        if (st == DKD_HDR_TOO_MANY) {
            CHECK(count == max);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse(data, size, MAXF);
    check_parse(data, size, 3);

    size_t bl = dkd__hdr_block_len(dkd__span(data, size));
    CHECK(bl <= size);
    if (bl < size || (bl > 0 && data[bl - 1] == '\n')) {
        /* When an empty line was found, the block ends with one line end... */
        CHECK(bl > 0 && data[bl - 1] == '\n');
    }
    /* ...and parsing the block stops at the same place as parsing the whole input. */
    dkd_field a[MAXF], b[MAXF];
    size_t na = 0, nb = 0, ea = 0, eb = 0;
    dkd_hdr_status sa = dkd__hdr_parse(dkd__span(data, size), a, MAXF, &na, &ea);
    dkd_hdr_status sb = dkd__hdr_parse(dkd__span(data, bl), b, MAXF, &nb, &eb);
    if (sa == DKD_HDR_OK && sb == DKD_HDR_OK) {
        CHECK(na == nb);
        for (size_t i = 0; i < na; i++) {
            CHECK(a[i].raw.ptr == b[i].raw.ptr && a[i].raw.len == b[i].raw.len);
        }
    }
    return 0;
}
