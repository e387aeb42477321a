/*
 * hdr_test.c - unit tests for the header block splitter (engine/core/hdr.c). Every input is
 * placed against a guard page, so a read past the block crashes the test. The SSE2
 * scans of hdr.c are checked against ref_parse, the byte-loop parser they replaced, on
 * random blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "hdr.h"

enum { MAXF = 16 };

typedef struct parsed {
    dkd_hdr_status st;
    size_t count;
    size_t err_off;
    const uint8_t *base;
    dkd_field f[MAXF];
} parsed;

static void parse(const char *s, size_t max, parsed *out)
{
    size_t n = strlen(s);
    out->base = guard_copy(s, n);
    out->count = 999;
    out->err_off = 999;
    out->st = dkd__hdr_parse(dkd__span(out->base, n), out->f, max, &out->count, &out->err_off);
}

static void assert_span(dkd_span sp, const char *want)
{
    size_t n = strlen(want);
    assert_int_equal(sp.len, n);
    assert_memory_equal(sp.ptr, want, n);
}

/* Checks field i: raw as bytes, and name and value. */
static void assert_field(const parsed *p, size_t i, const char *raw, const char *name,
                         const char *value)
{
    assert_true(i < p->count);
    assert_span(p->f[i].raw, raw);
    assert_span(p->f[i].name, name);
    assert_span(p->f[i].value, value);
}

static void test_simple_crlf(void **state)
{
    parsed p;
    parse("From: a@example.com\r\nTo: b@example.com\r\n\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    assert_field(&p, 0, "From: a@example.com\r\n", "From", " a@example.com");
    assert_field(&p, 1, "To: b@example.com\r\n", "To", " b@example.com");
    assert_ptr_equal(p.f[0].raw.ptr, p.base);
}

static void test_bare_lf_and_mixed(void **state)
{
    parsed p;
    parse("A:1\nB:2\r\nC:3\n\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 3);
    assert_field(&p, 0, "A:1\n", "A", "1");
    assert_field(&p, 1, "B:2\r\n", "B", "2");
    assert_field(&p, 2, "C:3\n", "C", "3");
}

static void test_folding(void **state)
{
    parsed p;
    parse("Subject: one\r\n two\r\n\tthree\r\nX: y\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    assert_field(&p, 0, "Subject: one\r\n two\r\n\tthree\r\n", "Subject",
                 " one\r\n two\r\n\tthree");
    assert_field(&p, 1, "X: y\r\n", "X", " y");
}

static void test_fold_bare_lf(void **state)
{
    parsed p;
    parse("S: a\n b\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 1);
    assert_field(&p, 0, "S: a\n b\n", "S", " a\n b");
}

static void test_wsp_before_colon(void **state)
{
    parsed p;
    /* RFC 6376 3.4.5's example header, which uses the obsolete "B :" form. */
    parse("A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    assert_field(&p, 0, "A: X\r\n", "A", " X");
    assert_field(&p, 1, "B : Y\t\r\n\tZ  \r\n", "B", " Y\t\r\n\tZ  ");

    parse("Name \t :v\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_field(&p, 0, "Name \t :v\r\n", "Name", "v");
}

static void test_no_terminating_empty_line(void **state)
{
    parsed p;
    parse("A: 1\r\nB: 2\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    assert_field(&p, 1, "B: 2\r\n", "B", " 2");
}

static void test_last_field_without_line_end(void **state)
{
    parsed p;
    parse("A: 1\r\nB: 2", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    assert_field(&p, 1, "B: 2", "B", " 2");

    parse("A: 1\r\n cont", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 1);
    assert_field(&p, 0, "A: 1\r\n cont", "A", " 1\r\n cont");

    parse("A:", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 1);
    assert_field(&p, 0, "A:", "A", "");
}

static void test_stops_at_empty_line(void **state)
{
    parsed p;
    parse("A: 1\r\n\r\nbody: not a header\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 1);
    parse("A: 1\n\nno colon here\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 1);
    parse("\r\nA: 1\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 0);
    parse("", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 0);
}

static void test_eight_bit_and_cr_in_value(void **state)
{
    parsed p;
    parse("Subject: caf\xc3\xa9\r\x80\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 1);
    assert_field(&p, 0, "Subject: caf\xc3\xa9\r\x80\r\n", "Subject", " caf\xc3\xa9\r\x80");
}

static void test_empty_value_and_colons(void **state)
{
    parsed p;
    parse("A:\r\nB::c:\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    assert_field(&p, 0, "A:\r\n", "A", "");
    assert_field(&p, 1, "B::c:\r\n", "B", ":c:");
}

static void test_malformed_no_colon(void **state)
{
    parsed p;
    parse("A: 1\r\nnocolon\r\nB: 2\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    assert_int_equal(p.err_off, 6);
    assert_int_equal(p.count, 1);
    assert_field(&p, 0, "A: 1\r\n", "A", " 1");

    /* A colon after the line end does not count. */
    parse("nocolon\r\n :x\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    assert_int_equal(p.err_off, 0);
    assert_int_equal(p.count, 0);

    /* Nor does a final partial line without one. */
    parse("A: 1\r\nxyz", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    assert_int_equal(p.err_off, 6);
}

static void test_malformed_leading_continuation(void **state)
{
    parsed p;
    parse(" A: 1\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    assert_int_equal(p.err_off, 0);
    assert_int_equal(p.count, 0);
    parse("\tA: 1\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
}

static void test_malformed_names(void **state)
{
    parsed p;
    parse(":value\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    assert_int_equal(p.err_off, 0);
    parse("A: 1\r\n  \t:value\r\n", MAXF, &p); /* WSP-only line: a continuation */
    assert_int_equal(p.st, DKD_HDR_OK);
    parse("Sub ject: x\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    parse("Subj\xc3\xa9: x\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    parse("A\x7f: x\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    parse("A\rB: x\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    parse("!~: x\r\n", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_field(&p, 0, "!~: x\r\n", "!~", " x");
    /* A line of only a CR is not an empty line (CR alone is not a line end). */
    parse("A: 1\r\n\r", MAXF, &p);
    assert_int_equal(p.st, DKD_HDR_MALFORMED);
    assert_int_equal(p.err_off, 6);
}

static void test_too_many(void **state)
{
    parsed p;
    parse("A:1\r\nB:2\r\nC:3\r\n", 2, &p);
    assert_int_equal(p.st, DKD_HDR_TOO_MANY);
    assert_int_equal(p.count, 2);
    assert_field(&p, 1, "B:2\r\n", "B", "2");
    parse("A:1\r\nB:2\r\n b\r\n\r\nC:3\r\n", 2, &p);
    assert_int_equal(p.st, DKD_HDR_OK);
    assert_int_equal(p.count, 2);
    parse("A:1\r\n", 0, &p);
    assert_int_equal(p.st, DKD_HDR_TOO_MANY);
    assert_int_equal(p.count, 0);
}

static size_t block_len(const char *s)
{
    size_t n = strlen(s);
    return dkd__hdr_block_len(dkd__span(guard_copy(s, n), n));
}

static void test_block_len(void **state)
{
    assert_int_equal(block_len("A: 1\r\nB: 2\r\n\r\nbody\r\n"), 14);
    assert_int_equal(block_len("A: 1\nB: 2\n\nbody\n"), 11);
    assert_int_equal(block_len("A: 1\r\n\nbody"), 7);
    assert_int_equal(block_len("A: 1\n\r\nbody"), 7);
    assert_int_equal(block_len("A: 1\r\n\r\n"), 8);
    assert_int_equal(block_len("\r\nbody\r\n\r\n"), 2);
    assert_int_equal(block_len("\nbody\n\n"), 1);
    assert_int_equal(block_len("A: 1\r\nB: 2\r\n"), 12);
    assert_int_equal(block_len("A: 1\r\n\r"), 7);
    assert_int_equal(block_len("A: 1\r\r\nB\r\n"), 10);
    assert_int_equal(block_len(""), 0);
    assert_int_equal(block_len("\r"), 1);
    /* "\r\r\n" is not an empty line: the first CR is content. */
    assert_int_equal(block_len("A: 1\r\n\r\r\nx"), 10);
}

static void test_block_then_parse(void **state)
{
    const char *msg = "From: a\r\nSubject: s\r\n t\r\n\r\nBody: x\r\n";
    size_t n = strlen(msg);
    const uint8_t *m = guard_copy(msg, n);
    size_t bl = dkd__hdr_block_len(dkd__span(m, n));
    assert_int_equal(bl, 27);
    dkd_field f[4];
    size_t count = 0, off = 0;
    assert_int_equal(dkd__hdr_parse(dkd__span(m, bl), f, 4, &count, &off), DKD_HDR_OK);
    assert_int_equal(count, 2);
    assert_int_equal(f[1].raw.ptr + f[1].raw.len - m, 25);
}

/* dkd__hdr_index_more resumed after TOO_MANY with a larger array (the verifier grows its
 * index this way) gives the same fields as one call with room for all, malformed lines
 * skipped either way, whatever the first array size. */
static void test_index_resume(void **state)
{
    (void)state;
    const char *s = "A: 1\r\nFrom bob Mon\r\nB: 2\r\n  fold\r\nbad line\r\n fold of bad\r\n"
                    "C:3\nD : 4\r\nE: 5\r\n\r\nbody: no\r\n";
    size_t n = strlen(s);
    const uint8_t *m = guard_copy(s, n);
    dkd_field whole[MAXF];
    size_t wn = 0;
    assert_int_equal(dkd__hdr_index(dkd__span(m, n), whole, MAXF, &wn), DKD_HDR_OK);
    assert_int_equal(wn, 5);
    assert_span(whole[1].name, "B");
    assert_span(whole[1].value, " 2\r\n  fold");
    assert_span(whole[3].name, "D");
    for (size_t first = 0; first <= 5; first++) {
        dkd_field f[MAXF];
        size_t pos = 0, count = 0, cap = first;
        dkd_hdr_status st;
        while ((st = dkd__hdr_index_more(dkd__span(m, n), &pos, f, cap, &count)) ==
               DKD_HDR_TOO_MANY) {
            assert_int_equal(count, cap);
            cap++;
        }
        assert_int_equal(st, DKD_HDR_OK);
        assert_int_equal(count, wn);
        for (size_t i = 0; i < wn; i++) {
            assert_ptr_equal(f[i].raw.ptr, whole[i].raw.ptr);
            assert_int_equal(f[i].raw.len, whole[i].raw.len);
            assert_int_equal(f[i].name.len, whole[i].name.len);
            assert_ptr_equal(f[i].value.ptr, whole[i].value.ptr);
            assert_int_equal(f[i].value.len, whole[i].value.len);
        }
    }
}

/* ---- reference: the byte-at-a-time parser (name checked byte by byte, memchr for the
 * line end), kept here to check the SSE2 scans against ---- */

static bool ref_ftext(uint8_t c)
{
    return c >= 0x21 && c <= 0x7e && c != ':';
}

static dkd_hdr_status ref_parse(dkd_span block, dkd_field *fields, size_t max, size_t *count,
                                size_t *err_off)
{
    const uint8_t *p = block.ptr;
    size_t len = block.len, pos = 0, n = 0;
    dkd_field *cur = NULL;
    dkd_hdr_status st = DKD_HDR_OK;
    while (pos < len) {
        const uint8_t *line = p + pos;
        size_t rest = len - pos;
        if (line[0] == '\n' || (line[0] == '\r' && rest > 1 && line[1] == '\n')) {
            break;
        }
        size_t from;
        if (line[0] == ' ' || line[0] == '\t') {
            if (cur == NULL) {
                st = DKD_HDR_MALFORMED;
                break;
            }
            from = 1;
        } else {
            size_t i = 0;
            while (i < rest && ref_ftext(line[i])) {
                i++;
            }
            size_t name_len = i;
            while (i < rest && (line[i] == ' ' || line[i] == '\t')) {
                i++;
            }
            if (name_len == 0 || i == rest || line[i] != ':') {
                st = DKD_HDR_MALFORMED;
                break;
            }
            if (n == max) {
                st = DKD_HDR_TOO_MANY;
                break;
            }
            cur = &fields[n++];
            cur->name = dkd__span(line, name_len);
            cur->value.ptr = line + i + 1;
            cur->raw.ptr = line;
            cur->raw.len = 0;
            from = i + 1;
        }
        const uint8_t *lf = from < rest ? memchr(line + from, '\n', rest - from) : NULL;
        size_t line_len = lf != NULL ? (size_t)(lf - line) + 1 : rest;
        size_t text = line_len;
        if (lf != NULL) {
            text--;
            if (text > 0 && line[text - 1] == '\r') {
                text--;
            }
        }
        cur->value.len = (size_t)(line + text - cur->value.ptr);
        cur->raw.len += line_len;
        pos += line_len;
    }
    *count = n;
    if (st != DKD_HDR_OK) {
        *err_off = pos;
    }
    return st;
}

/* Random blocks of field-like lines: names of 1-40 bytes (sometimes with a bad byte:
 * 8-bit, DEL, control, SP), WSP before the colon, values of 0-120 bytes with CR, LF,
 * folds and 8-bit bytes, CRLF or bare LF line ends, sometimes no final line end, an
 * empty line, or a continuation first. */
static size_t random_block(uint8_t *b, size_t cap)
{
    static const uint8_t odd[] = {0x80, 0xff, 0x7f, 0x00, 0x1f, ' ', '\t', ':', '\r', '\n'};
    size_t n = 0;
    size_t lines = (size_t)(rand() % 12);
    for (size_t l = 0; l < lines && n + 200 < cap; l++) {
        int kind = rand() % 10;
        if (kind == 0) {
            b[n++] = rand() % 2 ? ' ' : '\t'; /* a continuation line */
        } else {
            size_t nl = 1 + (size_t)(rand() % 40);
            for (size_t i = 0; i < nl; i++) {
                b[n++] = (uint8_t)('A' + rand() % 26);
            }
            if (rand() % 8 == 0) {
                b[n - 1 - (size_t)rand() % nl] = odd[rand() % (int)sizeof odd];
            }
            if (rand() % 8 == 0) {
                b[n++] = ' ';
            }
            if (rand() % 16 != 0) {
                b[n++] = ':';
            }
        }
        size_t vl = (size_t)(rand() % 121);
        for (size_t i = 0; i < vl; i++) {
            b[n++] = rand() % 24 == 0 ? odd[rand() % (int)sizeof odd] : (uint8_t)('a' + rand() % 26);
        }
        int end = rand() % 8;
        if (end != 0 || l + 1 < lines) {
            if (end != 1) {
                b[n++] = '\r';
            }
            b[n++] = '\n';
        }
    }
    if (rand() % 3 == 0) {
        b[n++] = '\r';
        b[n++] = '\n';
        b[n++] = 'x';
    }
    return n;
}

static void test_random_against_reference(void **state)
{
    (void)state;
    srand(9001);
    static uint8_t buf[4096];
    for (int it = 0; it < 30000; it++) {
        size_t n = random_block(buf, sizeof buf);
        const uint8_t *g = guard_copy(buf, n);
        size_t max = (size_t)(rand() % (MAXF + 1));
        dkd_field a[MAXF], b[MAXF];
        size_t ca = 0, cb = 0, ea = 0, eb = 0;
        dkd_hdr_status sa = dkd__hdr_parse(dkd__span(g, n), a, max, &ca, &ea);
        dkd_hdr_status sb = ref_parse(dkd__span(g, n), b, max, &cb, &eb);
        assert_int_equal(sa, sb);
        assert_int_equal(ca, cb);
        if (sa != DKD_HDR_OK) {
            assert_int_equal(ea, eb);
        }
        for (size_t i = 0; i < ca; i++) {
            assert_ptr_equal(a[i].raw.ptr, b[i].raw.ptr);
            assert_int_equal(a[i].raw.len, b[i].raw.len);
            assert_int_equal(a[i].name.len, b[i].name.len);
            assert_ptr_equal(a[i].value.ptr, b[i].value.ptr);
            assert_int_equal(a[i].value.len, b[i].value.len);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_simple_crlf),
        cmocka_unit_test(test_bare_lf_and_mixed),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_fold_bare_lf),
        cmocka_unit_test(test_wsp_before_colon),
        cmocka_unit_test(test_no_terminating_empty_line),
        cmocka_unit_test(test_last_field_without_line_end),
        cmocka_unit_test(test_stops_at_empty_line),
        cmocka_unit_test(test_eight_bit_and_cr_in_value),
        cmocka_unit_test(test_empty_value_and_colons),
        cmocka_unit_test(test_malformed_no_colon),
        cmocka_unit_test(test_malformed_leading_continuation),
        cmocka_unit_test(test_malformed_names),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_block_len),
        cmocka_unit_test(test_block_then_parse),
        cmocka_unit_test(test_index_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
