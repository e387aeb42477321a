/*
 * zone.c - a key source answering from a DNS master file (RFC 1035 section 5), for
 * tests, the conformance corpora and offline verification with dkimctl.
 *
 * Workload: a file of a few dozen to a few thousand TXT records, read once; then many
 * synchronous lookups from any number of threads. Every key is parsed once at load and
 * the zone hands out references, so it behaves like a warm key cache. After load the
 * zone is immutable, so concurrent lookups need no lock.
 *
 * The reader covers what key zones use: $TTL, $ORIGIN, comments, owner names with
 * escapes (\X, \DDD), absolute and relative names, "@", an optional TTL and class in
 * either order, TXT rdata as quoted strings or bare words, and parentheses spanning
 * lines. Records of other types are skipped. Three directives live in comments:
 * "; @nxdomain NAME", "; @servfail NAME" and "; @timeout NAME". TXT strings longer than
 * 255 bytes are accepted (the corpora write whole 2048-bit keys as one string; on the
 * wire they would be split, and the strings are concatenated anyway).
 *
 * Names are kept as text, lowercased, without the trailing dot, escapes decoded: the
 * qnames we are asked for are text built from d= and s=, so "legitimate.com\(.x" in the
 * file must match the qname "legitimate.com(.x". An escaped dot inside a label (\.)
 * becomes an ordinary dot, which text qnames cannot tell apart anyway.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "span.h"

/* ---- growable byte buffer with sticky failure ---- */

typedef struct buf {
    uint8_t *ptr;
    size_t len, cap;
    bool failed;
} buf;

static void buf_put(buf *b, const void *p, size_t n)
{
    if (b->failed) {
        return;
    }
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *np = realloc(b->ptr, cap);
        if (np == NULL) {
            b->failed = true;
            return;
        }
        b->ptr = np;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->ptr + b->len, p, n);
    }
    b->len += n;
}

static void buf_byte(buf *b, uint8_t c)
{
    buf_put(b, &c, 1);
}

/* ---- what the reader collects ---- */

enum entry_kind { ENTRY_TXT, ENTRY_NXDOMAIN, ENTRY_SERVFAIL, ENTRY_TIMEOUT };

/* One TXT record or directive in file order; sorted by name after reading. */
typedef struct rec {
    char *name;
    enum entry_kind kind;
    uint8_t *txt; /* the record's strings concatenated (ENTRY_TXT) */
    size_t txt_len;
    size_t order; /* position in the file: keeps "first record" stable through qsort */
} rec;

/* One name's answer, computed at load. */
typedef struct zone_name {
    char *name;
    dkd_key *key;
    size_t first, nrecs; /* its records in dkd_zone.recs, for dkd_zone_txt */
} zone_name;

struct dkd_zone {
    zone_name *names; /* sorted by name, unique */
    size_t count;
    rec *recs; /* every record, sorted by name then file order (raw TXT for linting) */
    size_t nrecs;
};

/* ---- the reader ---- */

typedef struct token {
    buf text;    /* decoded bytes */
    bool quoted; /* a "..." string */
    bool abs;    /* a word ending in an unescaped dot */
} token;

typedef struct reader {
    const char *path;
    const uint8_t *p, *end;
    size_t line;
    char *err;
    size_t err_len;
    bool failed;

    char *origin;     /* current $ORIGIN without trailing dot, or NULL */
    char *last_owner; /* owner of the previous record, for lines starting with a blank */

    rec *recs;
    size_t nrecs, caprecs;

    token *toks; /* tokens of the current logical line */
    size_t ntoks, captoks;
} reader;

__attribute__((format(printf, 2, 3))) static void fail(reader *r, const char *fmt, ...)
{
    if (r->failed) {
        return;
    }
    r->failed = true;
    int n = snprintf(r->err, r->err_len, "%s:%zu: ", r->path, r->line);
    if (n >= 0 && (size_t)n < r->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + n, r->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

static void out_of_memory(reader *r)
{
    fail(r, "out of memory");
}

static token *new_token(reader *r)
{
    if (r->ntoks == r->captoks) {
        size_t cap = r->captoks ? r->captoks * 2 : 16;
        token *nt = realloc(r->toks, cap * sizeof *nt);
        if (nt == NULL) {
            out_of_memory(r);
            return NULL;
        }
        memset(nt + r->captoks, 0, (cap - r->captoks) * sizeof *nt);
        r->toks = nt;
        r->captoks = cap;
    }
    token *t = &r->toks[r->ntoks++];
    t->text.len = 0;
    t->text.failed = false;
    t->quoted = false;
    t->abs = false;
    return t;
}

/*
 * read_escape decodes the escape after a backslash (RFC 1035 5.1: \X is X, \DDD is the
 * byte DDD in decimal). Returns false (after fail()) on a bad escape.
 */
static bool read_escape(reader *r, uint8_t *out)
{
    if (r->p == r->end || *r->p == '\n') {
        fail(r, "backslash at end of line");
        return false;
    }
    if (*r->p >= '0' && *r->p <= '9') {
        unsigned v = 0;
        for (int i = 0; i < 3; i++) {
            if (r->p == r->end || *r->p < '0' || *r->p > '9') {
                fail(r, "escape \\DDD needs three digits");
                return false;
            }
            v = v * 10 + (unsigned)(*r->p++ - '0');
        }
        if (v > 255) {
            fail(r, "escape \\%03u is over 255", v);
            return false;
        }
        *out = (uint8_t)v;
        return true;
    }
    *out = *r->p++;
    return true;
}

static void read_quoted(reader *r, token *t)
{
    t->quoted = true;
    r->p++; /* the opening quote */
    while (r->p < r->end && *r->p != '"') {
        uint8_t c = *r->p++;
        if (c == '\n') {
            /* A quote left open runs into the next line: almost always a typo, and
             * reading on would swallow the records below it. */
            r->p--;
            break;
        }
        if (c == '\\' && !read_escape(r, &c)) {
            return;
        }
        buf_byte(&t->text, c);
    }
    if (r->p == r->end || *r->p != '"') {
        fail(r, "unterminated string");
        return;
    }
    r->p++;
    if (t->text.failed) {
        out_of_memory(r);
    }
}

static bool is_delim(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '(' || c == ')' ||
           c == '"';
}

static void read_word(reader *r, token *t)
{
    bool last_dot = false;
    while (r->p < r->end && !is_delim(*r->p)) {
        uint8_t c = *r->p++;
        last_dot = c == '.';
        if (c == '\\') {
            if (!read_escape(r, &c)) {
                return;
            }
            last_dot = false;
        }
        buf_byte(&t->text, c);
    }
    t->abs = last_dot;
    if (t->text.failed) {
        out_of_memory(r);
    }
}

/* ---- names ---- */

/*
 * make_name turns a name token into the stored form: "@" is the origin, a relative name
 * gets the origin appended, the trailing dot goes, ASCII is lowercased. NULL after
 * fail().
 */
static char *make_name(reader *r, const token *t, bool need_origin)
{
    dkd_span s = dkd__span(t->text.ptr, t->text.len);
    buf b = {0};
    if (!t->quoted && dkd__span_eq_str(s, "@")) {
        if (r->origin == NULL) {
            fail(r, "'@' used before $ORIGIN");
            return NULL;
        }
        buf_put(&b, r->origin, strlen(r->origin));
    } else if (t->abs) {
        /* The root "." stays empty. */
        buf_put(&b, s.ptr, s.len - 1);
    } else {
        buf_put(&b, s.ptr, s.len);
        if (r->origin != NULL) {
            if (r->origin[0] != '\0') {
                buf_byte(&b, '.');
                buf_put(&b, r->origin, strlen(r->origin));
            }
        } else if (need_origin) {
            /* Records need an origin; directive names (our own syntax, read by people
             * writing test zones) are taken as written when there is none. */
            free(b.ptr);
            fail(r, "relative name '%.*s' and no $ORIGIN", (int)(s.len > 64 ? 64 : s.len),
                 (const char *)s.ptr);
            return NULL;
        }
    }
    buf_byte(&b, '\0');
    if (b.failed) {
        free(b.ptr);
        out_of_memory(r);
        return NULL;
    }
    for (size_t i = 0; i < b.len; i++) {
        /* A \000 in a name would end the C string early and alias a shorter name. */
        if (b.ptr[i] == '\0' && i + 1 < b.len) {
            free(b.ptr);
            fail(r, "NUL byte in a name");
            return NULL;
        }
        b.ptr[i] = dkd__lower(b.ptr[i]);
    }
    return (char *)b.ptr;
}

static void add_rec(reader *r, char *name, enum entry_kind kind, uint8_t *txt, size_t len)
{
    if (r->nrecs == r->caprecs) {
        size_t cap = r->caprecs ? r->caprecs * 2 : 64;
        rec *nr = realloc(r->recs, cap * sizeof *nr);
        if (nr == NULL) {
            free(name);
            free(txt);
            out_of_memory(r);
            return;
        }
        r->recs = nr;
        r->caprecs = cap;
    }
    r->recs[r->nrecs] = (rec){name, kind, txt, len, r->nrecs};
    r->nrecs++;
}

/* ---- directives in comments ---- */

/* directive reads "; @kind NAME" from the comment text after ';'. */
static void directive(reader *r, dkd_span c)
{
    c = dkd__span_trim_fws(c);
    static const struct {
        const char *word;
        enum entry_kind kind;
    } kinds[] = {
        {"@nxdomain", ENTRY_NXDOMAIN},
        {"@servfail", ENTRY_SERVFAIL},
        {"@timeout", ENTRY_TIMEOUT},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n = strlen(kinds[k].word);
        if (c.len < n || memcmp(c.ptr, kinds[k].word, n) != 0 ||
            (c.len > n && !dkd__is_wsp(c.ptr[n]))) {
            continue;
        }
        dkd_span name = dkd__span_trim_fws(dkd__span(c.ptr + n, c.len - n));
        /* Read the name with the word reader, so escapes work as in owner names. */
        const uint8_t *save_p = r->p, *save_end = r->end;
        r->p = name.ptr;
        r->end = name.ptr + name.len;
        token t = {0};
        read_word(r, &t);
        bool whole = r->p == r->end;
        r->p = save_p;
        r->end = save_end;
        if (!r->failed && (!whole || t.text.len == 0)) {
            fail(r, "%s needs one name", kinds[k].word);
        }
        if (!r->failed) {
            char *stored = make_name(r, &t, false);
            if (stored != NULL) {
                add_rec(r, stored, kinds[k].kind, NULL, 0);
            }
        }
        free(t.text.ptr);
        return;
    }
}

/* ---- one logical line ---- */

static bool tok_is(const token *t, const char *s)
{
    return !t->quoted && dkd__span_eq_str_nocase(dkd__span(t->text.ptr, t->text.len), s);
}

static bool tok_is_ttl(const token *t)
{
    /* Digits, optionally with BIND's unit letters (1h30m): a TTL never starts with a
     * letter, and no class or type starts with a digit. */
    if (t->quoted || t->text.len == 0 || t->text.ptr[0] < '0' || t->text.ptr[0] > '9') {
        return false;
    }
    for (size_t i = 0; i < t->text.len; i++) {
        uint8_t c = dkd__lower(t->text.ptr[i]);
        if (!((c >= '0' && c <= '9') || c == 's' || c == 'm' || c == 'h' || c == 'd' || c == 'w')) {
            return false;
        }
    }
    return true;
}

static bool tok_is_class(const token *t)
{
    return tok_is(t, "IN") || tok_is(t, "CH") || tok_is(t, "HS") || tok_is(t, "CS");
}

static void control_entry(reader *r)
{
    token *t = &r->toks[0];
    if (tok_is(t, "$TTL")) {
        if (r->ntoks != 2 || !tok_is_ttl(&r->toks[1])) {
            fail(r, "$TTL needs one TTL");
        }
    } else if (tok_is(t, "$ORIGIN")) {
        if (r->ntoks != 2) {
            fail(r, "$ORIGIN needs one name");
            return;
        }
        char *o = make_name(r, &r->toks[1], true);
        if (o != NULL) {
            free(r->origin);
            r->origin = o;
        }
    } else {
        fail(r, "unsupported directive '%.*s'", (int)(t->text.len > 32 ? 32 : t->text.len),
             (const char *)t->text.ptr);
    }
}

/* entry handles one logical line; blank_owner: the line began with a blank. */
static void entry(reader *r, bool blank_owner)
{
    if (r->ntoks == 0) {
        return;
    }
    size_t i = 0;
    char *owner;
    if (!blank_owner && !r->toks[0].quoted && r->toks[0].text.len > 0 &&
        r->toks[0].text.ptr[0] == '$') {
        control_entry(r);
        return;
    }
    if (blank_owner) {
        if (r->last_owner == NULL) {
            fail(r, "record without an owner name");
            return;
        }
        owner = strdup(r->last_owner);
        if (owner == NULL) {
            out_of_memory(r);
            return;
        }
    } else {
        owner = make_name(r, &r->toks[i++], true);
        if (owner == NULL) {
            return;
        }
        free(r->last_owner);
        r->last_owner = strdup(owner);
        if (r->last_owner == NULL) {
            free(owner);
            out_of_memory(r);
            return;
        }
    }
    /* [TTL] [class] or [class] [TTL], then the type. */
    for (int k = 0; k < 2 && i < r->ntoks; k++) {
        if (tok_is_ttl(&r->toks[i]) || tok_is_class(&r->toks[i])) {
            i++;
        }
    }
    if (i == r->ntoks) {
        free(owner);
        fail(r, "missing record type");
        return;
    }
    if (!tok_is(&r->toks[i], "TXT")) {
        free(owner); /* other types are not keys */
        return;
    }
    i++;
    if (i == r->ntoks) {
        free(owner);
        fail(r, "TXT record without data");
        return;
    }
    /* RFC 6376 3.6.2.2: the strings of one TXT record are concatenated without
     * separators. */
    buf txt = {0};
    for (; i < r->ntoks; i++) {
        buf_put(&txt, r->toks[i].text.ptr, r->toks[i].text.len);
    }
    if (txt.failed) {
        free(owner);
        free(txt.ptr);
        out_of_memory(r);
        return;
    }
    add_rec(r, owner, ENTRY_TXT, txt.ptr, txt.len);
}

/* read_all splits the file into logical lines of tokens and hands each to entry(). */
static void read_all(reader *r)
{
    int depth = 0; /* open parentheses */
    bool at_start = true;
    bool blank_owner = false;
    size_t paren_line = 0;
    while (!r->failed && r->p < r->end) {
        uint8_t c = *r->p;
        if (at_start) {
            /* A new logical line: it inherits the owner when it starts with a blank. */
            blank_owner = c == ' ' || c == '\t';
            at_start = false;
        }
        if (c == '\n') {
            r->p++;
            if (depth == 0) {
                entry(r, blank_owner);
                r->ntoks = 0;
                at_start = true;
            }
            r->line++;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            r->p++;
        } else if (c == ';') {
            const uint8_t *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
            const uint8_t *stop = nl != NULL ? nl : r->end;
            directive(r, dkd__span(r->p + 1, (size_t)(stop - r->p - 1)));
            r->p = stop;
        } else if (c == '(') {
            if (depth == 0) {
                paren_line = r->line;
            }
            depth++;
            r->p++;
        } else if (c == ')') {
            if (depth == 0) {
                fail(r, "')' without '('");
                return;
            }
            depth--;
            r->p++;
        } else {
            token *t = new_token(r);
            if (t == NULL) {
                return;
            }
            if (c == '"') {
                read_quoted(r, t);
            } else {
                read_word(r, t);
            }
        }
    }
    if (r->failed) {
        return;
    }
    if (depth != 0) {
        r->line = paren_line;
        fail(r, "'(' never closed");
        return;
    }
    entry(r, blank_owner); /* a last line without newline */
    r->ntoks = 0;
}

/* ---- building the zone ---- */

static int rec_cmp(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0) {
        return c;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

static void failure_detail(char *out, size_t cap, const char *what, const char *name)
{
    snprintf(out, cap, "%s for %s", what, name);
}

/*
 * answer computes the key for recs[0..n), all of one name, in file order. A directive
 * wins over records: it says how the lookup fails, whatever else is published there.
 * Several TXT records: RFC 6376 3.6.2.2 calls the result undefined and 6.1.2 lets the
 * verifier choose one or try each; we take the first that parses into a usable key,
 * which lets a key rotate while an old record lingers, else the first record's error
 * (the one an operator reading the file top-down would look at).
 */
static dkd_key *answer(const rec *recs, size_t n)
{
    char detail[sizeof((dkd_key *)0)->detail];
    for (size_t i = 0; i < n; i++) {
        if (recs[i].kind == ENTRY_SERVFAIL) {
            failure_detail(detail, sizeof detail, "SERVFAIL", recs[i].name);
            return dkd_key_from_failure(DKD_REASON_DNS_ERROR, detail);
        }
        if (recs[i].kind == ENTRY_TIMEOUT) {
            failure_detail(detail, sizeof detail, "timeout", recs[i].name);
            return dkd_key_from_failure(DKD_REASON_DNS_TIMEOUT, detail);
        }
        if (recs[i].kind == ENTRY_NXDOMAIN) {
            snprintf(detail, sizeof detail, "NXDOMAIN: no record at %s", recs[i].name);
            return dkd_key_from_failure(DKD_REASON_KEY_NOT_FOUND, detail);
        }
    }
    dkd_key *first = NULL;
    for (size_t i = 0; i < n; i++) {
        dkd_key *k = dkd_key_from_record(recs[i].txt, recs[i].txt_len);
        if (k == NULL) {
            dkd_key_unref(first);
            return NULL;
        }
        if (dkd__key_prefer(&first, k)) {
            break;
        }
    }
    return first;
}

static bool build(dkd_zone *z, rec *recs, size_t n)
{
    if (n > 0) { /* an empty zone has no array: qsort(NULL, 0) is undefined */
        qsort(recs, n, sizeof *recs, rec_cmp);
    }
    z->names = calloc(n ? n : 1, sizeof *z->names);
    if (z->names == NULL) {
        return false;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(recs[j].name, recs[i].name) == 0) {
            j++;
        }
        dkd_key *k = answer(recs + i, j - i);
        if (k == NULL) {
            return false;
        }
        z->names[z->count++] = (zone_name){recs[i].name, k, i, j - i};
        recs[i].name = NULL; /* now owned by the zone */
        i = j;
    }
    return true;
}

static bool read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    buf b = {0};
    uint8_t chunk[16384];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_put(&b, chunk, n);
    }
    bool ok = !ferror(f) && !b.failed;
    int saved = errno;
    fclose(f);
    if (!ok) {
        free(b.ptr);
        errno = b.failed ? ENOMEM : saved;
        return false;
    }
    *data = b.ptr;
    *len = b.len;
    return true;
}

dkd_zone *dkd_zone_load(const char *path, char *err, size_t err_len)
{
    char dummy[1];
    if (err == NULL || err_len == 0) {
        err = dummy;
        err_len = sizeof dummy;
    }
    err[0] = '\0';
    uint8_t *data = NULL;
    size_t len = 0;
    if (!read_file(path, &data, &len)) {
        snprintf(err, err_len, "%s:0: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    reader r = {
        .path = path, .p = data, .end = data + len, .line = 1, .err = err, .err_len = err_len};
    read_all(&r);
    dkd_zone *z = NULL;
    if (!r.failed) {
        z = calloc(1, sizeof *z);
        if (z == NULL || !build(z, r.recs, r.nrecs)) {
            dkd_zone_free(z);
            z = NULL;
            snprintf(err, err_len, "%s: out of memory", path);
        } else {
            z->recs = r.recs; /* kept for dkd_zone_txt */
            z->nrecs = r.nrecs;
            r.recs = NULL;
            r.nrecs = 0;
        }
    }
    for (size_t i = 0; i < r.nrecs; i++) {
        free(r.recs[i].name);
        free(r.recs[i].txt);
    }
    free(r.recs);
    for (size_t i = 0; i < r.captoks; i++) {
        free(r.toks[i].text.ptr);
    }
    free(r.toks);
    free(r.origin);
    free(r.last_owner);
    free(data);
    return z;
}

void dkd_zone_free(dkd_zone *zone)
{
    if (zone == NULL) {
        return;
    }
    for (size_t i = 0; i < zone->count; i++) {
        free(zone->names[i].name);
        dkd_key_unref(zone->names[i].key);
    }
    free(zone->names);
    for (size_t i = 0; i < zone->nrecs; i++) {
        free(zone->recs[i].name);
        free(zone->recs[i].txt);
    }
    free(zone->recs);
    free(zone);
}

/* name_cmp compares a stored (lowercase) name with a qname ASCII-case-insensitively;
 * qname ends at qlen, which excludes a trailing dot. */
static int name_cmp(const char *stored, const char *qname, size_t qlen)
{
    size_t i = 0;
    for (; i < qlen; i++) {
        uint8_t a = (uint8_t)stored[i], b = dkd__lower((uint8_t)qname[i]);
        if (a != b) {
            return a < b ? -1 : 1; /* a == '\0' sorts first, as in strcmp */
        }
    }
    return stored[i] != '\0';
}

/* find_name returns the entry for qname (qlen bytes), or NULL. */
static const zone_name *find_name(const dkd_zone *z, const char *qname, size_t qlen)
{
    size_t lo = 0, hi = z->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(z->names[mid].name, qname, qlen);
        if (c == 0) {
            return &z->names[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int zone_lookup(void *impl, const char *qname, dkd_key_done_fn done, void *done_arg)
{
    const dkd_zone *z = impl;
    size_t qlen = strlen(qname);
    if (qlen > 0 && qname[qlen - 1] == '.') {
        qlen--; /* an absolute name means the same here */
    }
    const zone_name *zn = find_name(z, qname, qlen);
    if (zn != NULL) {
        done(done_arg, dkd_key_ref(zn->key));
        return 0;
    }
    char detail[sizeof((dkd_key *)0)->detail];
    snprintf(detail, sizeof detail, "NXDOMAIN: no record at %.*s", (int)(qlen > 120 ? 120 : qlen),
             qname);
    dkd_key *k = dkd_key_from_failure(DKD_REASON_KEY_NOT_FOUND, detail);
    if (k == NULL) {
        return DKD_ERR_NOMEM;
    }
    done(done_arg, k);
    return 0;
}

dkd_keysrc dkd_zone_keysrc(dkd_zone *zone)
{
    return (dkd_keysrc){zone_lookup, zone};
}

enum dkd_reason dkd_zone_txt(const dkd_zone *zone, const char *qname, dkd_zone_txt_fn each,
                             void *arg)
{
    size_t qlen = strlen(qname);
    if (qlen > 0 && qname[qlen - 1] == '.') {
        qlen--;
    }
    const zone_name *zn = find_name(zone, qname, qlen);
    if (zn == NULL) {
        return DKD_REASON_KEY_NOT_FOUND;
    }
    const rec *recs = zone->recs + zn->first;
    /* A directive decides the answer, as in answer(). */
    for (size_t i = 0; i < zn->nrecs; i++) {
        if (recs[i].kind == ENTRY_SERVFAIL) {
            return DKD_REASON_DNS_ERROR;
        }
        if (recs[i].kind == ENTRY_TIMEOUT) {
            return DKD_REASON_DNS_TIMEOUT;
        }
        if (recs[i].kind == ENTRY_NXDOMAIN) {
            return DKD_REASON_KEY_NOT_FOUND;
        }
    }
    for (size_t i = 0; i < zn->nrecs; i++) {
        each(arg, recs[i].txt, recs[i].txt_len);
    }
    return DKD_REASON_OK;
}
