/*
 * dkimd_milter.h - the milter front end's settings as the server takes them: the
 * address list, the sign-daemon names and the signing keys, made from dkimd's settings
 * at start and the keys re-read on SIGHUP. Internal to the dkimd executable; main
 * thread.
 */
#ifndef DKIMD_MILTER_H
#define DKIMD_MILTER_H

#include <stdbool.h>

#include "dkimd_config.h"
#include "netmatch.h"
#include "session_milter.h"
#include "signtab.h"

typedef struct dkimd_milter {
    dkd__milter_cfg cfg;
    dkd__netlist internal_hosts;
    dkd__signtab_holder keys;
} dkimd_milter;

/* dkimd_milter_setup fills m (which must stay put: cfg points into it). Returns false
 * after printing why (a bad address list, a key that cannot be used). */
bool dkimd_milter_setup(dkimd_milter *m, const dkimd_settings *s, unsigned key_deadline_ms);

/* dkimd_milter_reload_keys reads every key file again; on any failure the old keys stay
 * and why is written into err. */
bool dkimd_milter_reload_keys(dkimd_milter *m, const dkimd_settings *s, char *err, size_t err_len);

void dkimd_milter_free(dkimd_milter *m);

#endif
