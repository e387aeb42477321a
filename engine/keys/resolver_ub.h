/*
 * resolver_ub.h - the libunbound context the resolver (resolver.c) runs on: dkimd's
 * built-in options with their reasons, the caller's options, forwarders, resolv.conf
 * and trust anchors. Internal to engine/keys/.
 */
#ifndef DKIMD_KEYS_RESOLVER_UB_H
#define DKIMD_KEYS_RESOLVER_UB_H

#include <stdbool.h>
#include <stddef.h>

#include <dkimd/resolver.h>

struct ub_ctx;

/* The dkimd option (in dkd_resolver_config.options) that turns canaries off. */
#define CANARY_OPTION "dkimd-canary"
/* What a forwarding libunbound needs for canaries to leave the process at all. */
#define CANARY_LOCAL_ZONE "local-zone: \"invalid.\" nodefault"

/*
 * dkd__resolver_ub_new creates and configures an asynchronous libunbound context for
 * cfg; *canary_on says whether the resolver should send canaries (forwarding modes,
 * unless the caller turned them off). NULL on error, with a message in err.
 */
struct ub_ctx *dkd__resolver_ub_new(const dkd_resolver_config *cfg, bool *canary_on, char *err,
                                    size_t err_len);

/* dkd__resolver_err formats a set-up error into err (nothing when err is NULL). */
void dkd__resolver_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
