/*
 * signtab.c - the table of signing keys (see signtab.h).
 *
 * Workload: loaded at start and on SIGHUP; looked up once per outbound message with a
 * linear scan, since a platform signing for thousands of domains would want a hash and
 * one signing for a handful is served faster by the scan.
 */
#include "signtab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void entry_free(dkd__signtab_entry *e)
{
    free(e->domain);
    free(e->selector);
    free(e->path);
    dkd_signkey_free(e->key);
}

static void table_free(dkd__signtab *t)
{
    for (size_t i = 0; i < t->n; i++) {
        entry_free(&t->e[i]);
    }
    free(t->e);
    free(t);
}

/* label_ok: the characters of a domain name or selector (LDH, dots, underscores). */
static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_';
        if (!ok || (c == '.' && s[i + 1] == '.')) {
            return false;
        }
    }
    return true;
}

static char *dup_lower(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        for (size_t i = 0; i < n; i++) {
            d[i] = (char)dkd__lower((uint8_t)s[i]);
        }
        d[n] = '\0';
    }
    return d;
}

/* parse_spec fills e from "DOMAIN:SELECTOR:KEYFILE" and loads the key. */
static bool parse_spec(const char *spec, dkd__signtab_entry *e, char *err, size_t err_len)
{
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL || c2[1] == '\0') {
        snprintf(err, err_len, "sign-key '%s': expected DOMAIN:SELECTOR:KEYFILE", spec);
        return false;
    }
    size_t dlen = (size_t)(c1 - spec), slen = (size_t)(c2 - c1 - 1);
    if (!label_ok(spec, dlen)) {
        snprintf(err, err_len, "sign-key '%s': '%.*s' is not a domain name", spec, (int)dlen, spec);
        return false;
    }
    if (!label_ok(c1 + 1, slen)) {
        snprintf(err, err_len, "sign-key '%s': '%.*s' is not a selector", spec, (int)slen, c1 + 1);
        return false;
    }
    e->domain = dup_lower(spec, dlen);
    e->selector = dup_lower(c1 + 1, slen);
    e->path = strdup(c2 + 1);
    if (e->domain == NULL || e->selector == NULL || e->path == NULL) {
        snprintf(err, err_len, "out of memory");
        return false;
    }
    char why[256];
    e->key = dkd_signkey_load_private(e->path, why, sizeof why);
    if (e->key == NULL) {
        snprintf(err, err_len, "sign-key %s: %s", spec, why);
        return false;
    }
    return true;
}

dkd__signtab *dkd__signtab_load(const char *const *specs, size_t n, char *err, size_t err_len)
{
    dkd__signtab *t = calloc(1, sizeof *t);
    if (t == NULL || (n > 0 && (t->e = calloc(n, sizeof *t->e)) == NULL)) {
        free(t);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    atomic_init(&t->refs, 1);
    for (size_t i = 0; i < n; i++) {
        dkd__signtab_entry *e = &t->e[t->n++];
        if (!parse_spec(specs[i], e, err, err_len)) {
            table_free(t);
            return NULL;
        }
        for (size_t j = 0; j + 1 < t->n; j++) {
            if (strcmp(t->e[j].domain, e->domain) == 0) {
                snprintf(err, err_len, "sign-key %s: a second key for %s (one key per domain)",
                         specs[i], e->domain);
                table_free(t);
                return NULL;
            }
        }
    }
    return t;
}

const dkd__signtab_entry *dkd__signtab_find(const dkd__signtab *t, dkd_span domain)
{
    if (t == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (dkd__span_eq_nocase(dkd__span_str(t->e[i].domain), domain)) {
            return &t->e[i];
        }
    }
    return NULL;
}

dkd__signtab *dkd__signtab_ref(dkd__signtab *t)
{
    if (t != NULL) {
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    }
    return t;
}

void dkd__signtab_unref(dkd__signtab *t)
{
    if (t != NULL && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        table_free(t);
    }
}

void dkd__signtab_holder_init(dkd__signtab_holder *h, dkd__signtab *t)
{
    pthread_mutex_init(&h->mu, NULL);
    h->cur = t;
}

dkd__signtab *dkd__signtab_holder_get(dkd__signtab_holder *h)
{
    pthread_mutex_lock(&h->mu);
    dkd__signtab *t = dkd__signtab_ref(h->cur);
    pthread_mutex_unlock(&h->mu);
    return t;
}

void dkd__signtab_holder_swap(dkd__signtab_holder *h, dkd__signtab *t)
{
    pthread_mutex_lock(&h->mu);
    dkd__signtab *old = h->cur;
    h->cur = t;
    pthread_mutex_unlock(&h->mu);
    dkd__signtab_unref(old);
}

void dkd__signtab_holder_destroy(dkd__signtab_holder *h)
{
    dkd__signtab_unref(h->cur);
    h->cur = NULL;
    pthread_mutex_destroy(&h->mu);
}
