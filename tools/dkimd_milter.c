/*
 * dkimd_milter.c - the milter front end's set-up (see dkimd_milter.h).
 */
#include "dkimd_milter.h"

#include <stdio.h>
#include <string.h>

bool dkimd_milter_setup(dkimd_milter *m, const dkimd_settings *s, unsigned key_deadline_ms)
{
    memset(m, 0, sizeof *m);
    char err[512];
    bool have_hosts = s->internal_hosts != NULL && s->internal_hosts[0] != '\0';
    if (have_hosts && !dkd__netlist_parse(s->internal_hosts, &m->internal_hosts, err, sizeof err)) {
        fprintf(stderr, "dkimd: internal-hosts: %s\n", err);
        return false;
    }
    dkd__signtab *t =
        dkd__signtab_load((const char *const *)s->sign_keys, s->n_sign_keys, err, sizeof err);
    if (t == NULL) {
        fprintf(stderr, "dkimd: %s\n", err);
        return false;
    }
    dkd__signtab_holder_init(&m->keys, t);
    m->cfg = (dkd__milter_cfg){
        .authserv_id = s->authserv_id,
        .max_header_bytes = (size_t)s->max_header,
        .key_timeout_ms = key_deadline_ms,
        .on_temperror = s->milter_temperror_tempfail ? DKD__MILTER_TEMPFAIL : DKD__MILTER_ACCEPT,
        .on_error = s->milter_error_tempfail ? DKD__MILTER_TEMPFAIL : DKD__MILTER_ACCEPT,
        .internal_hosts = have_hosts ? &m->internal_hosts : NULL,
        .sign_daemons = (const char *const *)s->sign_daemons,
        .n_sign_daemons = s->n_sign_daemons,
        .keys = &m->keys,
    };
    return true;
}

bool dkimd_milter_reload_keys(dkimd_milter *m, const dkimd_settings *s, char *err, size_t err_len)
{
    dkd__signtab *t =
        dkd__signtab_load((const char *const *)s->sign_keys, s->n_sign_keys, err, err_len);
    if (t == NULL) {
        return false;
    }
    dkd__signtab_holder_swap(&m->keys, t);
    return true;
}

void dkimd_milter_free(dkimd_milter *m)
{
    dkd__signtab_holder_destroy(&m->keys);
}
