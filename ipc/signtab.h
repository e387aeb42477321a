/*
 * signtab.h - the signing keys of the milter's outbound path: `--sign-key
 * DOMAIN:SELECTOR:KEYFILE`, each key read once, looked up by the From domain.
 *
 * A table is immutable once loaded and reference-counted, so SIGHUP can load a new one
 * while workers still sign with the old: a session takes a reference for the message it
 * signs (dkd__signtab_holder_get) and drops it at the message's end. The holder swaps
 * the current table under a mutex taken once per signed message and once per reload.
 *
 * Internal to dkimd (dkd__ prefix). Threads: a table may be read from any thread; the
 * holder's functions may be called from any thread.
 */
#ifndef DKIMD_IPC_SIGNTAB_H
#define DKIMD_IPC_SIGNTAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <dkimd/sign.h>

#include "span.h"

typedef struct dkd__signtab_entry {
    char *domain; /* lowercase, no trailing dot */
    char *selector;
    char *path;
    dkd_signkey *key;
} dkd__signtab_entry;

typedef struct dkd__signtab {
    atomic_uint refs;
    size_t n;
    dkd__signtab_entry *e;
} dkd__signtab;

/*
 * dkd__signtab_load reads every spec ("DOMAIN:SELECTOR:KEYFILE"; the file is the rest, so
 * a path may hold ':'). A key file others may read, a duplicate domain, a bad domain or
 * selector, or a key that cannot be read fails the whole load with a message naming the
 * spec: a daemon that signs with half its keys would send unsigned mail silently. An
 * empty list gives an empty table. NULL on failure. The caller owns one reference.
 */
dkd__signtab *dkd__signtab_load(const char *const *specs, size_t n, char *err, size_t err_len);

/* dkd__signtab_find returns the entry for a From domain (ASCII-case-insensitive, exact:
 * a key for example.com does not sign mail from sub.example.com), or NULL. */
const dkd__signtab_entry *dkd__signtab_find(const dkd__signtab *t, dkd_span domain);

dkd__signtab *dkd__signtab_ref(dkd__signtab *t);
void dkd__signtab_unref(dkd__signtab *t);

/* The current table, replaced on reload. */
typedef struct dkd__signtab_holder {
    pthread_mutex_t mu;
    dkd__signtab *cur;
} dkd__signtab_holder;

/* init takes over the caller's reference to t (which may be NULL: nothing to sign). */
void dkd__signtab_holder_init(dkd__signtab_holder *h, dkd__signtab *t);
/* get returns a reference to the current table (NULL if none); drop it with unref. */
dkd__signtab *dkd__signtab_holder_get(dkd__signtab_holder *h);
/* swap installs t (taking the caller's reference) and drops the holder's old one. */
void dkd__signtab_holder_swap(dkd__signtab_holder *h, dkd__signtab *t);
void dkd__signtab_holder_destroy(dkd__signtab_holder *h);

#endif
