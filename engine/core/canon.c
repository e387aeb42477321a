/*
 * canon.c - RFC 6376 section 3.4 canonicalization (simple and relaxed), header fields
 * one at a time and the body as a stream, fed to a sink that hashes (see canon.h).
 *
 * Workload: the body is the bulk of the bytes (tens of KiB per message, sometimes
 * MiB) and mostly already canonical (CRLF lines, single spaces). dkd__body_update lets
 * a SIMD scanner (canon_simd.c) find how far the input is canonical as it stands and
 * passes such runs to the sink straight from the caller's chunk — no copy, one sink
 * call per run. In relaxed, text that needs fixing (WSP runs, trailing WSP, HTAB, bare
 * LF) is rewritten 64 bytes at a time into the batch by a block rewriter (canon_simd.c,
 * AVX2 or AVX-512) rather than stopping at each fix. When the body hashes itself on
 * SHA-NI (dkd__body_set_sha256, verify.c's sha256 groups), bytes go into that context
 * instead of the sink, and the rewriter, fused with the hash, takes relaxed bodies
 * first (see body_update_fast). Only the bytes around rarer things
 * (lone CR, blank lines at a chunk end, a chunk's first and last byte) go to the scalar
 * state machine, one byte at a time. Header fields are short (a few hundred bytes, h= names at most
 * ~100 of them), so the header path is a byte loop through a small stack batch that copies runs of
 * ordinary bytes as blocks (no CR/LF; in relaxed values no HTAB, CR/LF or doubled WSP),
 * their ends found 16 bytes at a time with SSE2.
 *
 * dkd__body_update_scalar is the reference: the fast path must produce the same bytes,
 * and tests/core/canon_test.c checks every implementation against a naive
 * whole-buffer version written from the RFC text, and against each other.
 *
 * Decisions, written down because the RFC leaves them open:
 *  - a bare LF is a line end (taken as CRLF); a CR not followed by LF is an ordinary
 *    byte, in bodies and headers alike, so "a\r\r\n" is the line "a\r";
 *  - relaxed body of an empty body (or of blank lines only) is empty, per RFC 6376
 *    erratum 3758; simple body of an empty body is a single CRLF (RFC 6376 3.4.3);
 *  - relaxed header: every line end inside the field is dropped (unfolding; in a
 *    field from dkd__hdr_parse each one is a fold or the final one), WSP runs become
 *    one SP, WSP around the first colon and at the end is dropped, and only the
 *    bytes before the first colon are lowercased.
 */
#include "canon.h"

#include <stdlib.h>
#include <string.h>

#include "canon_simd.h"
#include "scan.h"

/* ---- header fields ---- */

/* Byte classes: which bytes end a run of ordinary content (headers and body). */
enum { CL_SIMPLE_STOP = 1, CL_RELAXED_STOP = 2 };

static const uint8_t body_class[256] = {
    ['\r'] = CL_SIMPLE_STOP | CL_RELAXED_STOP,
    ['\n'] = CL_SIMPLE_STOP | CL_RELAXED_STOP,
    [' '] = CL_RELAXED_STOP,
    ['\t'] = CL_RELAXED_STOP,
};

/* A small output batch on the stack, so the sink (a hash update) sees a few calls per
 * field rather than one per byte. */
typedef struct hdr_out {
    dkd_canon_sink_fn sink;
    void *sink_arg;
    size_t len;
    uint8_t buf[1024];
} hdr_out;

static void out_flush(hdr_out *o)
{
    if (o->len > 0) {
        o->sink(o->sink_arg, o->buf, o->len);
        o->len = 0;
    }
}

/* out_bytes writes a run of n bytes as they are. */
static void out_bytes(hdr_out *o, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (o->len == sizeof o->buf) {
            out_flush(o);
        }
        size_t room = sizeof o->buf - o->len;
        size_t take = n < room ? n : room;
        memcpy(o->buf + o->len, p, take);
        o->len += take;
        p += take;
        n -= take;
    }
}

/*
 * The header path spends most of its bytes in two run finders, scan.h's run scanners
 * (SSE2 on x86-64, NEON on AArch64, byte loops elsewhere): dkd__scan_eol for a simple
 * field, one run per line (~70 bytes), and dkd__scan_relaxed_run for a relaxed value,
 * one run per stretch without a fold or a doubled WSP.
 */

static void out_byte(hdr_out *o, uint8_t c)
{
    if (o->len == sizeof o->buf) {
        out_flush(o);
    }
    o->buf[o->len++] = c;
}

/* Header state carried from the part before the skipped range to the part after. */
typedef struct hdr_state {
    bool cr_pending;    /* a CR was seen; whether it is a line end depends on the next byte */
    bool eol_pending;   /* simple: a line end was seen; dropped if it is the last thing */
    bool wsp_pending;   /* relaxed: WSP seen, to become one SP if content follows */
    bool seen_colon;    /* relaxed: past the colon ending the name */
    bool value_started; /* relaxed: a value byte after the colon was written */
} hdr_state;

/* simple: bytes as they are, a bare LF written as CRLF, and the final line end held
 * back so the caller decides whether the field ends with CRLF. */
static void simple_hdr_feed(hdr_state *st, hdr_out *o, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (!st->eol_pending && !st->cr_pending && !(body_class[c] & CL_SIMPLE_STOP)) {
            /* nothing pending and no line end: the run goes out as it is */
            size_t j = dkd__scan_eol(p, i + 1, n);
            out_bytes(o, p + i, j - i);
            i = j - 1;
            continue;
        }
        if (st->eol_pending) {
            out_byte(o, '\r');
            out_byte(o, '\n');
            st->eol_pending = false;
        }
        if (st->cr_pending) {
            st->cr_pending = false;
            if (c == '\n') {
                st->eol_pending = true;
                continue;
            }
            out_byte(o, '\r'); /* a lone CR is content */
        }
        if (c == '\r') {
            st->cr_pending = true;
        } else if (c == '\n') {
            st->eol_pending = true;
        } else {
            out_byte(o, c);
        }
    }
}

/* out_lower writes a run of n bytes with A-Z lowercased. */
static void out_lower(hdr_out *o, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (o->len == sizeof o->buf) {
            out_flush(o);
        }
        size_t room = sizeof o->buf - o->len;
        size_t take = n < room ? n : room;
        uint8_t *d = o->buf + o->len;
        for (size_t k = 0; k < take; k++) {
            d[k] = dkd__lower(p[k]);
        }
        o->len += take;
        p += take;
        n -= take;
    }
}

/* relaxed: one content byte (anything but WSP and line ends). */
static void relaxed_hdr_content(hdr_state *st, hdr_out *o, uint8_t c)
{
    if (st->wsp_pending) {
        st->wsp_pending = false;
        /* WSP right after the colon is dropped; elsewhere a run becomes one SP. */
        if (!st->seen_colon || st->value_started) {
            out_byte(o, ' ');
        }
    }
    if (st->seen_colon) {
        st->value_started = true;
        out_byte(o, c);
    } else {
        out_byte(o, dkd__lower(c));
    }
}

static void relaxed_hdr_feed(hdr_state *st, hdr_out *o, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (st->cr_pending) {
            st->cr_pending = false;
            if (c == '\n') {
                continue; /* CRLF: unfolded away (or the final one, re-added later) */
            }
            relaxed_hdr_content(st, o, '\r');
        }
        if (c == '\r') {
            st->cr_pending = true;
        } else if (c == '\n') {
            /* bare LF: same as CRLF, dropped */
        } else if (dkd__is_wsp(c)) {
            st->wsp_pending = true;
        } else if (c == ':' && !st->seen_colon) {
            st->wsp_pending = false; /* WSP before the colon */
            st->seen_colon = true;
            out_byte(o, ':');
        } else if (st->seen_colon) {
            /* In the value, once this byte is written (with the SP of a WSP run before
             * it), the bytes up to the next fold, HTAB or WSP run go out as they are. */
            relaxed_hdr_content(st, o, c);
            size_t j = dkd__scan_relaxed_run(p, i + 1, n);
            out_bytes(o, p + i + 1, j - i - 1);
            i = j - 1;
        } else {
            /* In the name: this byte and the rest up to a WSP, line end or the colon go
             * out lowercased as a run (names are ~10 bytes, each once per signature). */
            relaxed_hdr_content(st, o, c);
            size_t j = i + 1;
            while (j < n && !(body_class[p[j]] & CL_RELAXED_STOP) && p[j] != ':') {
                j++;
            }
            out_lower(o, p + i + 1, j - i - 1);
            i = j - 1;
        }
    }
}

void dkd__canon_header(enum dkd_canon canon, dkd_span raw, size_t skip_off, size_t skip_end,
                       bool with_crlf, dkd_canon_sink_fn sink, void *sink_arg)
{
    /* The range comes from our own tag parser, but clamp it rather than trust it. */
    if (skip_end > raw.len) {
        skip_end = raw.len;
    }
    if (skip_off > skip_end) {
        skip_off = skip_end;
    }

    hdr_out o;
    o.sink = sink;
    o.sink_arg = sink_arg;
    o.len = 0;
    hdr_state st = {0};

    /* The field is hashed as if the skipped bytes were not there: feed the two parts
     * through the same state, so a WSP run or a CRLF spanning the gap is one run. */
    if (canon == DKD_CANON_RELAXED) {
        relaxed_hdr_feed(&st, &o, raw.ptr, skip_off);
        relaxed_hdr_feed(&st, &o, raw.ptr + skip_end, raw.len - skip_end);
        if (st.cr_pending) {
            relaxed_hdr_content(&st, &o, '\r'); /* a CR at the very end is content */
        }
        /* Pending WSP at the end is trailing WSP: dropped. */
    } else {
        simple_hdr_feed(&st, &o, raw.ptr, skip_off);
        simple_hdr_feed(&st, &o, raw.ptr + skip_end, raw.len - skip_end);
        if (st.cr_pending) {
            out_byte(&o, '\r');
        }
        /* A pending line end is the field's last one: written below if wanted. */
    }
    if (with_crlf) {
        out_byte(&o, '\r');
        out_byte(&o, '\n');
    }
    out_flush(&o);
}

/* ---- body ---- */

/* body_sink passes n > 0 canonical bytes on: into our SHA-256 when the body hashes
 * itself (fused), else to the sink. */
static void body_sink(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
#ifdef DKD_SHA256_SHANI
    if (bc->sha != NULL) {
        dkd__sha256_update(bc->sha, p, n);
        return;
    }
#endif
    bc->sink(bc->sink_arg, p, n);
}

static void body_flush(dkd_body_canon *bc)
{
    if (bc->buf_len > 0) {
        body_sink(bc, bc->buf, bc->buf_len);
        bc->buf_len = 0;
    }
}

/* body_count counts n canonical bytes and returns how many of them fall within l=. */
static size_t body_count(dkd_body_canon *bc, size_t n)
{
    uint64_t before = bc->emitted;
    bc->emitted += n;
    if (before >= bc->limit) {
        return 0;
    }
    if ((uint64_t)n > bc->limit - before) {
        n = (size_t)(bc->limit - before);
    }
    return n;
}

/* body_batch copies n bytes (already counted) into the batch, flushing when it fills. */
static void body_batch(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t room = sizeof bc->buf - bc->buf_len;
        if (room == 0) {
            body_flush(bc);
            room = sizeof bc->buf;
        }
        size_t take = n < room ? n : room;
        memcpy(bc->buf + bc->buf_len, p, take);
        bc->buf_len += take;
        p += take;
        n -= take;
    }
}

/* body_put counts n canonical bytes and batches those that fall within l=. */
static void body_put(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
    body_batch(bc, p, body_count(bc, n));
}

static const uint8_t crlf[2] = {'\r', '\n'};

/* Blank lines held back are written only when text follows them. There may be very
 * many (a body of a million empty lines); past l= they are only counted. */
static void body_put_blank_lines(dkd_body_canon *bc)
{
    while (bc->blank_lines > 0 && bc->emitted < bc->limit) {
        body_put(bc, crlf, 2);
        bc->blank_lines--;
    }
    bc->emitted += 2 * bc->blank_lines;
    bc->blank_lines = 0;
}

/* body_content writes n > 0 content bytes of the current line (in relaxed, non-WSP). */
static void body_content(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
    if (!bc->line_has_data) {
        body_put_blank_lines(bc);
        bc->line_has_data = true;
    }
    if (bc->wsp_pending) {
        /* relaxed: a WSP run inside the line (or leading it) becomes one SP */
        bc->wsp_pending = false;
        body_put(bc, (const uint8_t *)" ", 1);
    }
    body_put(bc, p, n);
}

static void body_line_end(dkd_body_canon *bc)
{
    bc->wsp_pending = false; /* relaxed: WSP at the end of a line is dropped */
    if (bc->line_has_data) {
        body_put(bc, crlf, 2);
        bc->line_has_data = false;
    } else {
        bc->blank_lines++;
    }
}

void dkd__body_init(dkd_body_canon *bc, enum dkd_canon canon, uint64_t limit,
                    dkd_canon_sink_fn sink, void *sink_arg)
{
    dkd__body_init_impl(bc, canon, limit, dkd__canon_impl_best(), sink, sink_arg);
}

void dkd__body_init_impl(dkd_body_canon *bc, enum dkd_canon canon, uint64_t limit,
                         enum dkd_canon_impl impl, dkd_canon_sink_fn sink, void *sink_arg)
{
    bc->canon = canon;
    bc->impl = impl;
    bc->cr_pending = false;
    bc->wsp_pending = false;
    bc->line_has_data = false;
    bc->blank_lines = 0;
    bc->limit = limit;
    bc->emitted = 0;
    bc->sink = sink;
    bc->sink_arg = sink_arg;
    bc->sha = NULL;
    bc->buf_len = 0;
}

bool dkd__body_set_sha256(dkd_body_canon *bc, dkd_sha256 *sha)
{
    if (!dkd__sha256_available()) {
        return false;
    }
    dkd__body_use_sha256(bc, sha);
    return true;
}

void dkd__body_use_sha256(dkd_body_canon *bc, dkd_sha256 *sha)
{
    bc->sha = sha;
}

void dkd__body_update_scalar(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
    bool relaxed = bc->canon == DKD_CANON_RELAXED;
    uint8_t stop = relaxed ? CL_RELAXED_STOP : CL_SIMPLE_STOP;
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        if (bc->cr_pending) {
            /* The CR may have ended the previous chunk: only now do we know whether it
             * starts a CRLF or is a content byte. */
            bc->cr_pending = false;
            if (c == '\n') {
                body_line_end(bc);
                i++;
                continue;
            }
            body_content(bc, (const uint8_t *)"\r", 1);
        }
        if (c == '\r') {
            bc->cr_pending = true;
            i++;
        } else if (c == '\n') {
            body_line_end(bc); /* bare LF */
            i++;
        } else if (relaxed && dkd__is_wsp(c)) {
            bc->wsp_pending = true;
            i++;
        } else {
            size_t j = i + 1;
            while (j < n && !(body_class[p[j]] & stop)) {
                j++;
            }
            body_content(bc, p + i, j - i);
            i = j;
        }
    }
}

/* ---- body: the SIMD-assisted path ---- */

/* A run at least this long goes to the sink from the caller's chunk; a shorter one is
 * copied into the batch, where it is cheaper than a hash update call of its own. */
enum { DIRECT_MIN = 256 };

/* Chunk tails shorter than this go to the scalar code in one call: the scanners need a
 * whole block plus a byte of look-ahead (17 for SSE2, 33 for AVX2). */
enum { FAST_MIN = 34 };

/* The state in which the next bytes, if the scanner accepts them, are canonical as they
 * are: nothing pending, and no blank lines held back that content would release. */
static bool body_clean(const dkd_body_canon *bc)
{
    return !bc->cr_pending && !bc->wsp_pending && (bc->line_has_data || bc->blank_lines == 0);
}

/* body_verbatim takes n > 0 bytes the scanner found canonical as they stand. It leaves
 * the state the reference would: the run never ends on CR, a pending SP or a blank
 * line, so the only thing that changes is whether the current line has data (no if
 * the run ended in LF). */
static void body_verbatim(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
    bc->line_has_data = p[n - 1] != '\n';
    size_t take = body_count(bc, n);
    if (take >= DIRECT_MIN) {
        body_flush(bc);
        body_sink(bc, p, take);
    } else {
        body_batch(bc, p, take);
    }
}

/* blank_tail steps back from e over blank lines (CRLF right after LF) that end the run
 * [i, e): they are written only if content follows, which is not known yet, so they
 * go to the state machine. p[i - 1] is readable (the scanner's contract). */
static size_t blank_tail(const uint8_t *p, size_t i, size_t e)
{
    while (e >= i + 2 && p[e - 1] == '\n' && p[e - 2] == '\r' && p[e - 3] == '\n') {
        e -= 2;
    }
    return e;
}

typedef size_t (*scan_fn)(const uint8_t *p, size_t i, size_t n);
typedef size_t (*blocks_fn)(const uint8_t *p, size_t i, size_t n, bool *line_has_data, uint8_t *out,
                            size_t *out_len, size_t out_cap);
/* The rewriter fused with our SHA-256 (dkd__canon_relaxed_blocks_*_sha). */
typedef size_t (*fused_fn)(const uint8_t *p, size_t i, size_t n, bool *line_has_data, uint8_t *out,
                           size_t *out_len, size_t out_cap, dkd_sha256 *sha);

/* The rewriters an implementation has: none, plain, or plain and fused with SHA-256. */
typedef struct rewriters {
    blocks_fn plain;
    fused_fn fused;
} rewriters;

/* body_blocks hands the bytes from i on to a block rewriter (dkd__canon_relaxed_blocks_*)
 * that writes into the batch, and returns where it stopped (i when it could not start).
 * It bypasses body_count, so it runs only while l= is out of reach of what it can write
 * (2 bytes per input byte at most). When the body hashes itself, the fused rewriter
 * takes the batch (emptied into the hash first) as scratch and hashes all it writes. */
static size_t body_blocks(dkd_body_canon *bc, const uint8_t *p, size_t i, size_t n, rewriters rw)
{
    if (n - i < 65 || bc->emitted > bc->limit || bc->limit - bc->emitted < 2 * (uint64_t)(n - i) ||
        p[i - 1] == '\r' || dkd__is_wsp(p[i - 1])) {
        return i;
    }
    bool data = bc->line_has_data;
    size_t e;
    if (bc->sha != NULL && rw.fused != NULL) {
        body_flush(bc);
        size_t written = 0;
        e = rw.fused(p, i, n, &data, bc->buf, &written, sizeof bc->buf, bc->sha);
        bc->emitted += written;
    } else {
        if (sizeof bc->buf - bc->buf_len < 400) {
            body_flush(bc);
        }
        size_t before = bc->buf_len;
        e = rw.plain(p, i, n, &data, bc->buf, &bc->buf_len, sizeof bc->buf);
        bc->emitted += bc->buf_len - before;
    }
    bc->line_has_data = data;
    return e;
}

/*
 * body_update_fast: the scanner finds runs that are canonical as they stand. Where it
 * stops, the block rewriter (relaxed, when the CPU has one) takes over from there for as
 * many 64-byte blocks as it can, then hands back to the scanner. Without it, or where it
 * cannot start, the commonest stops are fixed here without leaving the clean state, so
 * the run goes on (its pieces are batched; a long piece goes to the sink directly):
 *  - relaxed, a WSP run (or an HTAB) inside a line followed by content: one SP;
 *  - relaxed, WSP at the end of a line with content: dropped;
 *  - a bare LF ending a line with content: CRLF.
 * Anything else (lone CR, WSP-only lines, a bare LF after a blank line, the end of the
 * chunk) goes to the scalar reference byte by byte until the state is clean again.
 * When the body hashes itself (fused), the rewriter goes first and the scanner only
 * where it cannot start: inside the fused loop the rewrite of a block runs beside the
 * SHA-256 rounds of an earlier one and costs almost nothing, less than the scanner's
 * pass before a hash update (clean text and base64 at 20 KB: 1.57 and 1.55 GB/s
 * scanning first, 1.60 and 1.61 rewriting first; SHA-256 alone 1.67).
 */
static void body_update_fast(dkd_body_canon *bc, const uint8_t *p, size_t n, scan_fn scan,
                             rewriters rw)
{
    bool relaxed = bc->canon == DKD_CANON_RELAXED;
    bool fused = bc->sha != NULL && rw.fused != NULL;
    size_t i = 0;
    while (i < n) {
        if (n - i < FAST_MIN) {
            dkd__body_update_scalar(bc, p + i, n - i);
            return;
        }
        /* The scanner looks at p[i - 1], so the chunk's first byte always goes through
         * the state machine, which also settles a CR or WSP run from the last chunk. */
        if (i == 0 || !body_clean(bc)) {
            dkd__body_update_scalar(bc, p + i, 1);
            i++;
            continue;
        }
        size_t vs = i; /* start of the run not yet written */
        size_t k;
        for (;;) {
            if (fused) {
                size_t e = body_blocks(bc, p, i, n, rw);
                if (e > i) {
                    vs = i = e;
                    if (n - i < FAST_MIN) {
                        k = i;
                        break;
                    }
                    continue;
                }
            }
            k = scan(p, i, n);
            uint8_t c = p[k];
            /* p[k - 1] is LF when k starts a line; k >= 1 and p[k - 1] is in the chunk */
            bool line_has_data = p[k - 1] != '\n';
            if (rw.plain != NULL && c != '\r') {
                /* Blank lines ending the run go to the rewriter too: it writes them
                 * only if content follows. */
                size_t cut = blank_tail(p, vs, k);
                if (cut > vs) {
                    body_verbatim(bc, p + vs, cut - vs);
                    vs = cut;
                }
                size_t e = body_blocks(bc, p, cut, n, rw);
                if (e > cut) {
                    vs = i = e;
                    if (n - i < FAST_MIN) {
                        k = i;
                        break;
                    }
                    continue;
                }
            }
            if (relaxed && dkd__is_wsp(c)) {
                size_t r = k + 1;
                while (r < n && dkd__is_wsp(p[r])) {
                    r++;
                }
                if (r == n) {
                    break; /* the run may go on in the next chunk */
                }
                if (p[r] != '\r' && p[r] != '\n') {
                    if (c == ' ') {
                        /* the run's first SP is the one SP written: keep it in place */
                        body_verbatim(bc, p + vs, k + 1 - vs);
                    } else {
                        if (k > vs) {
                            body_verbatim(bc, p + vs, k - vs);
                        }
                        body_content(bc, (const uint8_t *)" ", 1);
                        bc->line_has_data = true;
                    }
                    vs = i = r;
                    continue;
                }
                if (line_has_data && (p[r] == '\n' || (r + 1 < n && p[r + 1] == '\n'))) {
                    if (k > vs) {
                        body_verbatim(bc, p + vs, k - vs);
                    }
                    vs = i = r; /* trailing WSP dropped; the line end is scanned next */
                    continue;
                }
                break;
            }
            if (c == '\n' && line_has_data && p[k - 1] != '\r') {
                if (k > vs) {
                    body_verbatim(bc, p + vs, k - vs);
                }
                body_put(bc, crlf, 2);
                bc->line_has_data = false;
                vs = i = k + 1;
                if (n - i < FAST_MIN) {
                    k = i;
                    break;
                }
                continue;
            }
            break;
        }
        /* Write the run up to k, less any blank lines it ends with; the state machine
         * takes over from there, up to and including p[k]. */
        size_t cut = blank_tail(p, vs, k);
        if (cut > vs) {
            body_verbatim(bc, p + vs, cut - vs);
        }
        size_t stop = k < n ? k + 1 : n;
        dkd__body_update_scalar(bc, p + cut, stop - cut);
        i = stop;
    }
}

bool dkd__canon_impl_supported(enum dkd_canon_impl impl)
{
    switch (impl) {
    case DKD_CANON_IMPL_SCALAR:
        return true;
#ifdef DKD_CANON_HAVE_X86
    case DKD_CANON_IMPL_SSE2:
        return true; /* part of x86-64 */
    case DKD_CANON_IMPL_AVX2:
        return dkd__cpu_has_avx2();
    case DKD_CANON_IMPL_AVX512:
        return dkd__cpu_has_avx2() && dkd__cpu_has_avx512_vbmi2();
#endif
#ifdef DKD_SCAN_HAVE_NEON
    case DKD_CANON_IMPL_NEON:
        return true; /* part of AArch64 */
#endif
    default:
        return false;
    }
}

/* Asked of the CPU on each call, with no state kept: __builtin_cpu_supports reads what
 * libgcc (compiler-rt) found at program start-up, a few loads. The engine asks once, at
 * dkd_engine_new, and keeps the answer (with dkd_config.canon_impl) for its messages. */
enum dkd_canon_impl dkd__canon_impl_best(void)
{
    return dkd__canon_impl_supported(DKD_CANON_IMPL_AVX512) ? DKD_CANON_IMPL_AVX512
           : dkd__canon_impl_supported(DKD_CANON_IMPL_AVX2) ? DKD_CANON_IMPL_AVX2
           : dkd__canon_impl_supported(DKD_CANON_IMPL_SSE2) ? DKD_CANON_IMPL_SSE2
           : dkd__canon_impl_supported(DKD_CANON_IMPL_NEON) ? DKD_CANON_IMPL_NEON
                                                            : DKD_CANON_IMPL_SCALAR;
}

const char *dkd__canon_impl_name(enum dkd_canon_impl impl)
{
    switch (impl) {
    case DKD_CANON_IMPL_AUTO:
        return "auto";
    case DKD_CANON_IMPL_SCALAR:
        return "scalar";
    case DKD_CANON_IMPL_SSE2:
        return "sse2";
    case DKD_CANON_IMPL_AVX2:
        return "avx2";
    case DKD_CANON_IMPL_AVX512:
        return "avx512";
    case DKD_CANON_IMPL_NEON:
        return "neon";
    }
    return "?";
}

bool dkd__body_set_impl(dkd_body_canon *bc, enum dkd_canon_impl impl)
{
    if (impl == DKD_CANON_IMPL_AUTO) {
        impl = dkd__canon_impl_best();
    }
    if (!dkd__canon_impl_supported(impl)) {
        return false;
    }
    bc->impl = impl;
    return true;
}

void dkd__body_update(dkd_body_canon *bc, const uint8_t *p, size_t n)
{
    bool relaxed = bc->canon == DKD_CANON_RELAXED;
    switch (bc->impl) {
#ifdef DKD_CANON_HAVE_X86
    case DKD_CANON_IMPL_SSE2:
        body_update_fast(bc, p, n,
                         relaxed ? dkd__scan_body_relaxed_sse2 : dkd__scan_body_simple_sse2,
                         (rewriters){NULL, NULL});
        return;
    case DKD_CANON_IMPL_AVX2:
        body_update_fast(
            bc, p, n, relaxed ? dkd__scan_body_relaxed_avx2 : dkd__scan_body_simple_avx2,
            relaxed
                ? (rewriters){dkd__canon_relaxed_blocks_avx2, dkd__canon_relaxed_blocks_avx2_sha}
                : (rewriters){dkd__canon_simple_blocks_avx2, dkd__canon_simple_blocks_avx2_sha});
        return;
    case DKD_CANON_IMPL_AVX512:
        body_update_fast(bc, p, n,
                         relaxed ? dkd__scan_body_relaxed_avx2 : dkd__scan_body_simple_avx2,
                         relaxed ? (rewriters){dkd__canon_relaxed_blocks_avx512,
                                               dkd__canon_relaxed_blocks_avx512_sha}
                                 : (rewriters){dkd__canon_simple_blocks_avx512,
                                               dkd__canon_simple_blocks_avx512_sha});
        return;
#endif
#ifdef DKD_SCAN_HAVE_NEON
    case DKD_CANON_IMPL_NEON:
        /* Scanners only: the block rewriters build on x86 mask registers and PSHUFB
         * tables, and no AArch64 machine was at hand to measure a port. */
        body_update_fast(bc, p, n,
                         relaxed ? dkd__scan_body_relaxed_neon : dkd__scan_body_simple_neon,
                         (rewriters){NULL, NULL});
        return;
#endif
    default:
        dkd__body_update_scalar(bc, p, n);
        return;
    }
}

void dkd__body_final(dkd_body_canon *bc)
{
    if (bc->cr_pending) {
        bc->cr_pending = false;
        body_content(bc, (const uint8_t *)"\r", 1); /* a CR ending the body is content */
    }
    bc->wsp_pending = false; /* trailing WSP of a last line without line end */
    if (bc->line_has_data) {
        /* the body did not end with a line end: one is added */
        body_put(bc, crlf, 2);
        bc->line_has_data = false;
    }
    /* Trailing blank lines are never written. An empty simple body is one CRLF; an
     * empty relaxed body stays empty (erratum 3758). */
    bc->blank_lines = 0;
    if (bc->canon != DKD_CANON_RELAXED && bc->emitted == 0) {
        body_put(bc, crlf, 2);
    }
    body_flush(bc);
}
