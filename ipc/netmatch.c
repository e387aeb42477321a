/*
 * netmatch.c - address lists for --internal-hosts (netmatch.h): parsed once from the
 * command line, matched once per milter connection against the address in its CONNECT.
 *
 * Workload: a list of a few entries and one match per SMTP connection, so a linear scan
 * is all it needs. What matters is what counts as a match: IPv4 lives in the IPv6 space
 * as ::ffff:a.b.c.d, so "10.0.0.0/8" matches both "10.1.2.3" and the "::ffff:10.1.2.3"
 * a dual-stack MTA reports; and a prefix with host bits set is refused at start-up
 * rather than silently widened, since "10.0.0.1/8" usually means a typo.
 *
 * Addresses are read by inet_pton, which wants a NUL-terminated string: the span is
 * copied into a stack buffer sized for the longest address text first.
 */
#include "netmatch.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* The longest item: an IPv6 address with an embedded IPv4 part (INET6_ADDRSTRLEN counts
 * the NUL) and "/128". */
enum { ADDR_TEXT_MAX = INET6_ADDRSTRLEN, ITEM_MAX = INET6_ADDRSTRLEN + 4 };

/* How much of a bad item an error message quotes. */
enum { QUOTE_MAX = 80 };

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* parse_addr reads text as IPv4 or IPv6 into the 128-bit space; *v4 says which it was. */
static bool parse_addr(const char *text, uint8_t out[16], bool *v4)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        memcpy(out, v4_mapped, sizeof v4_mapped);
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        memcpy(out, &a6, 16);
        *v4 = false;
        return true;
    }
    return false;
}

/* prefix_eq tells whether a and b agree in their first bits bits (0..128). */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a[full] ^ b[full]) & mask) == 0;
}

/* mask_to clears every bit of addr past the first bits. */
static void mask_to(uint8_t addr[16], unsigned bits)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits > 8 * i ? bits - 8 * i : 0;
        if (keep < 8) {
            addr[i] &= (uint8_t)(0xff << (8 - keep));
        }
    }
}

/* parse_prefix reads 1-3 decimal digits no larger than max. */
static bool parse_prefix(const char *s, unsigned max, unsigned *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 3 || strspn(s, "0123456789") != n) {
        return false;
    }
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return v <= max;
}

/* suggest writes "NET/LEN" for the masked network into buf, in the item's own family. */
static void suggest(const uint8_t addr[16], bool v4, unsigned len, char *buf, size_t cap)
{
    char text[ADDR_TEXT_MAX];
    if (v4) {
        inet_ntop(AF_INET, addr + 12, text, sizeof text);
    } else {
        inet_ntop(AF_INET6, addr, text, sizeof text);
    }
    snprintf(buf, cap, "%s/%u", text, len);
}

/* parse_item reads one item, item[0..len), into *net; false with a message in err. */
static bool parse_item(const char *item, size_t len, struct dkd__net *net, char *err,
                       size_t err_len)
{
    int q = (int)(len < QUOTE_MAX ? len : QUOTE_MAX);
    char buf[ITEM_MAX + 1];
    if (len > ITEM_MAX) {
        snprintf(err, err_len, "%.*s: too long for an address", q, item);
        return false;
    }
    memcpy(buf, item, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    bool v4;
    if (!parse_addr(buf, net->addr, &v4)) {
        snprintf(err, err_len, "%.*s: not an IPv4 or IPv6 address", q, item);
        return false;
    }
    unsigned max = v4 ? 32 : 128, plen = max;
    if (slash != NULL && !parse_prefix(slash + 1, max, &plen)) {
        snprintf(err, err_len, "%.*s: the prefix length must be a number from 0 to %u", q, item,
                 max);
        return false;
    }
    net->bits = (uint8_t)(v4 ? 96 + plen : plen);
    uint8_t masked[16];
    memcpy(masked, net->addr, 16);
    mask_to(masked, net->bits);
    if (memcmp(masked, net->addr, 16) != 0) {
        char fix[ITEM_MAX + 1];
        suggest(masked, v4, plen, fix, sizeof fix);
        snprintf(err, err_len, "%.*s: host bits set; did you mean %s?", q, item, fix);
        return false;
    }
    return true;
}

static bool is_sep(char c)
{
    return c == ' ' || c == '\t' || c == ',' || c == '\r' || c == '\n';
}

bool dkd__netlist_parse(const char *spec, dkd__netlist *out, char *err, size_t err_len)
{
    char scratch[1];
    if (err == NULL || err_len == 0) {
        err = scratch; /* so the messages below need no check */
        err_len = sizeof scratch;
    }
    out->n = 0;
    const char *p = spec;
    for (;;) {
        while (is_sep(*p)) {
            p++;
        }
        if (*p == '\0') {
            return true;
        }
        size_t len = 0;
        while (p[len] != '\0' && !is_sep(p[len])) {
            len++;
        }
        if (out->n == DKD__NETLIST_MAX) {
            snprintf(err, err_len, "%.*s: more than %d networks",
                     (int)(len < QUOTE_MAX ? len : QUOTE_MAX), p, DKD__NETLIST_MAX);
            return false;
        }
        if (!parse_item(p, len, &out->nets[out->n], err, err_len)) {
            return false;
        }
        out->n++;
        p += len;
    }
}

/* strip_literal takes off what MTAs put around an address: "[...]" (an SMTP address
 * literal) and Sendmail's "IPv6:" tag; *tagged says the tag was there. */
static dkd_span strip_literal(dkd_span a, bool *tagged)
{
    if (a.len >= 2 && a.ptr[0] == '[' && a.ptr[a.len - 1] == ']') {
        a = dkd__span(a.ptr + 1, a.len - 2);
    }
    *tagged = a.len >= 5 && dkd__span_eq_str_nocase(dkd__span(a.ptr, 5), "IPv6:");
    if (*tagged) {
        a = dkd__span(a.ptr + 5, a.len - 5);
    }
    return a;
}

bool dkd__netlist_match(const dkd__netlist *l, dkd_span addr)
{
    bool tagged, v4;
    dkd_span a = strip_literal(addr, &tagged);
    char text[ADDR_TEXT_MAX];
    /* A NUL inside would end the text early, and "10.0.0.1\0junk" is not an address. */
    if (a.len >= sizeof text || (a.len > 0 && memchr(a.ptr, '\0', a.len) != NULL)) {
        return false;
    }
    if (a.len > 0) {
        memcpy(text, a.ptr, a.len);
    }
    text[a.len] = '\0';
    uint8_t bin[16];
    if (!parse_addr(text, bin, &v4) || (tagged && v4)) {
        return false; /* "IPv6:" before an IPv4 address is no form an MTA sends */
    }
    for (size_t i = 0; i < l->n; i++) {
        if (prefix_eq(l->nets[i].addr, bin, l->nets[i].bits)) {
            return true;
        }
    }
    return false;
}
