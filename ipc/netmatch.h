/*
 * netmatch.h - address lists for --internal-hosts: which SMTP clients are ours, so the
 * milter signs what they send instead of verifying it.
 *
 * A list is parsed once at start-up ("127.0.0.0/8, ::1, 10.1.2.3, 2001:db8::/32") and
 * then only read, so any number of threads may match against it. Every entry lives in
 * the IPv6 address space: an IPv4 prefix a.b.c.d/n is stored as the IPv4-mapped
 * ::ffff:a.b.c.d/(96 + n), so an IPv4 client and an IPv6 socket's mapped form of it
 * match the same entries. Plain data, fixed size: no allocation, nothing to free.
 */
#ifndef DKD_NETMATCH_H
#define DKD_NETMATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most entries a list holds: a handful of networks is the normal case, and a fixed
 * array keeps the list a plain value that needs no free. */
enum { DKD__NETLIST_MAX = 64 };

typedef struct dkd__netlist {
    size_t n;
    struct dkd__net {
        uint8_t addr[16]; /* network address, host bits zero; IPv4 as ::ffff:a.b.c.d */
        uint8_t bits;     /* prefix length in the 128-bit space (an IPv4 /8 is 104) */
    } nets[DKD__NETLIST_MAX];
} dkd__netlist;

/*
 * dkd__netlist_parse reads spec, items separated by spaces, tabs or commas: an address
 * (IPv4 or IPv6), alone (one host: /32 or /128) or with a prefix length. An empty spec is
 * an empty list. Returns true with *out filled, or false with a message in err naming the
 * bad item (an unparsable address, a prefix out of range, host bits set beyond the
 * prefix - "10.0.0.1/8: host bits set; did you mean 10.0.0.0/8?" - or more than
 * DKD__NETLIST_MAX items); *out is then unspecified.
 */
bool dkd__netlist_parse(const char *spec, dkd__netlist *out, char *err, size_t err_len);

/*
 * dkd__netlist_match tells whether addr, as an MTA sends it in a milter CONNECT, lies in
 * one of l's networks: "192.0.2.1", "2001:db8::1", "IPv6:2001:db8::1" (Sendmail), or any
 * of these in brackets ("[192.0.2.1]"). An IPv4-mapped IPv6 address (::ffff:192.0.2.1)
 * matches IPv4 entries. An address that cannot be parsed matches nothing.
 */
bool dkd__netlist_match(const dkd__netlist *l, dkd_span addr);

#ifdef __cplusplus
}
#endif

#endif
