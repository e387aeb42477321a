/*
 * config.c - dkd_config's defaults (dkd_config_init) and the names of the
 * implementation choices it offers (dkd_canon_impl_name, dkd_sha256_impl_name).
 *
 * Workload: once per engine at start-up, and when a tool prints which implementation
 * runs. Pure: what the CPU can run is asked in dkd_engine_new (verify.c), not here.
 */
#include <dkimd/engine.h>

#include <string.h>

#include "canon.h"

void dkd_config_init(dkd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_signatures = 8;
    cfg->min_rsa_bits = 1024;
    cfg->max_rsa_bits = 8192;
    cfg->allow_sha1 = false;
    cfg->refuse_partial_body = false;
    cfg->clock_skew = 300;
    cfg->max_header_bytes = 1u << 20;
    cfg->max_header_fields = 1000;
    cfg->canon_impl = DKD_CANON_IMPL_AUTO;
    cfg->sha256_impl = DKD_SHA256_IMPL_AUTO;
}

const char *dkd_canon_impl_name(enum dkd_canon_impl impl)
{
    return dkd__canon_impl_name(impl);
}

const char *dkd_sha256_impl_name(enum dkd_sha256_impl impl)
{
    switch (impl) {
    case DKD_SHA256_IMPL_AUTO:
        return "auto";
    case DKD_SHA256_IMPL_OPENSSL:
        return "openssl";
    case DKD_SHA256_IMPL_SHANI:
        return "shani";
    }
    return "?";
}
