/*
 * netmatch_fuzz.c - libFuzzer target for the --internal-hosts lists (ipc/netmatch.c).
 *
 * Input: a spec, a NUL, then addresses one per line. Properties:
 *  - a parsed list has at most DKD__NETLIST_MAX entries, prefixes of at most 128 bits
 *    and no host bits set; written back as text ("a.b.c.d/n" or "x::/n") it parses to
 *    the same list, and each entry's own network address matches it;
 *  - widening: an address that entry A/n matches is matched by A/m, for every m < n;
 *  - forms: an address matches the same with brackets around it; an IPv4 address
 *    matches the same as its IPv4-mapped IPv6 form.
 * Every address is copied to a buffer of exactly its length (ASan catches a read past
 * it); a failed parse must still leave a NUL-terminated message.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netmatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool match(const dkd__netlist *l, const void *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    CHECK(copy != NULL);
    if (n > 0) {
        memcpy(copy, p, n);
    }
    bool r = dkd__netlist_match(l, dkd__span(copy, n));
    free(copy);
    return r;
}

static bool is_v4(const struct dkd__net *e)
{
    return e->bits >= 96 && memcmp(e->addr, v4_mapped, 12) == 0;
}

/* net_text writes an entry as the text an operator would give: its address alone when
 * asked (for matching), else with its prefix in its own family. */
static void net_text(const struct dkd__net *e, bool with_prefix, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    bool v4 = is_v4(e);
    CHECK(inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? e->addr + 12 : e->addr, a, sizeof a));
    if (with_prefix) {
        snprintf(buf, cap, "%s/%u", a, v4 ? e->bits - 96u : e->bits);
    } else {
        snprintf(buf, cap, "%s", a);
    }
}

static void mask_to(uint8_t addr[16], unsigned bits)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits > 8 * i ? bits - 8 * i : 0;
        if (keep < 8) {
            addr[i] &= (uint8_t)(0xff << (8 - keep));
        }
    }
}

static void check_list(const dkd__netlist *l)
{
    CHECK(l->n <= DKD__NETLIST_MAX);
    char spec[DKD__NETLIST_MAX * 64] = "";
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct dkd__net *e = &l->nets[i];
        CHECK(e->bits <= 128);
        uint8_t m[16];
        memcpy(m, e->addr, 16);
        mask_to(m, e->bits);
        CHECK(memcmp(m, e->addr, 16) == 0);
        char t[64];
        net_text(e, false, t, sizeof t);
        CHECK(match(l, t, strlen(t)));
        net_text(e, true, t, sizeof t);
        w += (size_t)snprintf(spec + w, sizeof spec - w, "%s%s", i ? ", " : "", t);
    }
    dkd__netlist back;
    char err[256];
    CHECK(dkd__netlist_parse(spec, &back, err, sizeof err));
    CHECK(back.n == l->n);
    for (size_t i = 0; i < l->n; i++) {
        CHECK(back.nets[i].bits == l->nets[i].bits);
        CHECK(memcmp(back.nets[i].addr, l->nets[i].addr, 16) == 0);
    }
}

/* check_widening: for each entry that matches addr alone, every shorter prefix of it
 * matches addr too. */
static void check_widening(const dkd__netlist *l, const uint8_t *addr, size_t n)
{
    for (size_t i = 0; i < l->n; i++) {
        dkd__netlist one = {.n = 1, .nets = {l->nets[i]}};
        if (!match(&one, addr, n)) {
            continue;
        }
        for (unsigned m = 0; m < l->nets[i].bits; m++) {
            dkd__netlist wide = one;
            wide.nets[0].bits = (uint8_t)m;
            mask_to(wide.nets[0].addr, m);
            CHECK(match(&wide, addr, n));
        }
    }
}

static void check_forms(const dkd__netlist *l, const uint8_t *addr, size_t n, bool r)
{
    char buf[96];
    struct in_addr a4;
    if (n + 16 > sizeof buf || memchr(addr, '\0', n) != NULL) {
        return;
    }
    if (n == 0 || addr[0] != '[') {
        buf[0] = '[';
        memcpy(buf + 1, addr, n);
        buf[n + 1] = ']';
        CHECK(match(l, buf, n + 2) == r);
    }
    memcpy(buf, addr, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        int k = snprintf(buf, sizeof buf, "::ffff:%.*s", (int)n, (const char *)addr);
        CHECK(match(l, buf, (size_t)k) == r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) {
        return 0;
    }
    const uint8_t *nul = memchr(data, '\0', size);
    size_t spec_len = nul != NULL ? (size_t)(nul - data) : size;
    char *spec = malloc(spec_len + 1);
    CHECK(spec != NULL);
    memcpy(spec, data, spec_len);
    spec[spec_len] = '\0';
    dkd__netlist l;
    char err[128];
    err[0] = 'x';
    bool ok = dkd__netlist_parse(spec, &l, err, sizeof err);
    free(spec);
    if (!ok) {
        CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
        return 0;
    }
    check_list(&l);
    const uint8_t *p = nul != NULL ? nul + 1 : data + size, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        bool r = match(&l, p, n);
        check_widening(&l, p, n);
        check_forms(&l, p, n, r);
        p += n + 1;
    }
    return 0;
}
