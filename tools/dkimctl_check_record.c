/*
 * dkimctl_check_record.c - `dkimctl check-record`: look a selector's key record up the
 * way verification does, lint every record found there with the engine's parsers, and
 * with --key tell whether the published key is the public half of a private key.
 * Without --selector it discovers the domain's selectors: the provider table's
 * (providers.conf, data shipped with dkimctl) and common ones, all looked up at once
 * through the resolver's asynchronous lookups (a zone answers at once), since a person
 * waits for the answer and each lookup may take a round trip to a distant server.
 */
#include "dkimctl.h"

#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <dkimd/engine.h>
#include <dkimd/sign.h>

/* ---- the provider table (providers.conf; its format is documented at its top) ---- */

typedef struct provider {
    char name[64];
    char selectors[256]; /* blank-separated patterns, "" for none */
    char cnames[512];    /* blank-separated patterns, "" for none */
    char enable[512];
} provider;

typedef struct providers {
    provider *p;
    size_t n;
} providers;

/* field copies [b, e) trimmed into out (cap bytes); "-" becomes "". False if too long. */
static bool field(const char *b, const char *e, char *out, size_t cap)
{
    while (b < e && (*b == ' ' || *b == '\t')) {
        b++;
    }
    while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
        e--;
    }
    size_t n = (size_t)(e - b);
    if (n == 1 && *b == '-') {
        n = 0;
    }
    if (n >= cap) {
        return false;
    }
    memcpy(out, b, n);
    out[n] = '\0';
    return true;
}

/*
 * providers_parse reads the table text[0..len) into out (which it allocates; free
 * out->p). Returns 0, or the 1-based number of the first bad line with the reason in
 * err: not four fields, a field too long, an empty name, a NUL byte, no memory (0 lines
 * were read then: out is empty). Pure: no I/O, for the fuzz target too.
 */
int providers_parse(const char *text, size_t len, providers *out, char *err, size_t err_len);
int providers_parse(const char *text, size_t len, providers *out, char *err, size_t err_len)
{
    out->p = NULL;
    out->n = 0;
    size_t cap = 0;
    int line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *b = text + pos, *nl = memchr(b, '\n', len - pos);
        const char *e = nl != NULL ? nl : text + len;
        pos = (size_t)(e - text) + 1;
        line++;
        const char *t = b;
        while (t < e && (*t == ' ' || *t == '\t' || *t == '\r')) {
            t++;
        }
        if (t == e || *t == '#') {
            continue;
        }
        const char *why = NULL;
        const char *bar[3];
        size_t nbar = 0;
        for (const char *c = b; c < e && why == NULL; c++) {
            if (*c == '\0') {
                why = "a NUL byte";
            } else if (*c == '|' && nbar < 3) {
                bar[nbar++] = c;
            } else if (*c == '|') {
                why = "more than four fields";
            }
        }
        if (why == NULL && (e - b > 1023)) {
            why = "longer than 1023 bytes";
        }
        if (why == NULL && nbar != 3) {
            why = "fewer than four '|'-separated fields";
        }
        if (why == NULL && out->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            provider *np = realloc(out->p, ncap * sizeof *np);
            if (np == NULL) {
                why = "out of memory";
            } else {
                out->p = np;
                cap = ncap;
            }
        }
        provider *pr = why == NULL ? &out->p[out->n] : NULL;
        if (why == NULL && (!field(b, bar[0], pr->name, sizeof pr->name) ||
                            !field(bar[0] + 1, bar[1], pr->selectors, sizeof pr->selectors) ||
                            !field(bar[1] + 1, bar[2], pr->cnames, sizeof pr->cnames) ||
                            !field(bar[2] + 1, e, pr->enable, sizeof pr->enable))) {
            why = "a field too long";
        }
        if (why == NULL && pr->name[0] == '\0') {
            why = "an empty provider name";
        }
        if (why != NULL) {
            snprintf(err, err_len, "line %d: %s", line, why);
            return line;
        }
        out->n++;
    }
    return 0;
}

#ifndef DKIMCTL_PROVIDERS_PARSER_ONLY

#ifndef DKIMCTL_DATADIR
#define DKIMCTL_DATADIR "/usr/share/dkimd" /* meson passes its datadir/dkimd */
#endif

/* Exit statuses: record findings grade 0/1/2; 3 and 64 keep "could not check" and
 * "bad command line" apart from a record with errors. */
enum { CR_OK = 0, CR_WARNINGS = 1, CR_ERRORS = 2, CR_CANNOT = 3, CR_USAGE = 64 };

static const char check_help[] =
    "usage: dkimctl check-record --domain D --selector S [--key PEM] [KEY SOURCE] [--json]\n"
    "       dkimctl check-record --domain D [--providers FILE] [KEY SOURCE] [--json]\n"
    "\n"
    "Without --selector: discover D's selectors. The selectors of the provider table\n"
    "(providers.conf: Microsoft 365, Google Workspace, SendGrid, ...) and common ones are\n"
    "looked up at once; each that exists is listed with its key type and size, or why\n"
    "verifiers cannot use it, and the provider it belongs to.\n"
    "\n"
    "Look up the DKIM key record at S._domainkey.D exactly as verification does and lint\n"
    "it: missing (with the exact name queried), several records, every syntax error with\n"
    "its tag and byte position, v= not first, unknown k=, key size and RFC 8301 weakness,\n"
    "revoked (empty p=), t=y testing mode, h=sha1 only, s= excluding email, DNSSEC status,\n"
    "and the publishing mistakes: literal quotes, PEM armour or spaces in p=, an SPF or\n"
    "DMARC record under _domainkey, k= not matching the key, a key cut at 255 characters or\n"
    "split over two TXT records, the record published at S._domainkey.D.D.\n"
    "With --key, also whether the published key is the public half of that private key\n"
    "(the commonest cause of dkim=fail signature-mismatch).\n"
    "\n"
    "options:\n"
    "  --domain D           signing domain (d= of the signatures)\n"
    "  --selector S         selector (s= of the signatures)\n"
    "  --key PEM            private key the MTA signs with (compared with the record)\n"
    "  --providers FILE     provider table (default: $DKIMCTL_PROVIDERS, providers.conf\n"
    "                       beside dkimctl, then " DKIMCTL_DATADIR "/providers.conf)\n"
DKIMCTL_KEYSRC_HELP
    "  --json               one JSON object: name, status, lookup, records with findings,\n"
    "                       key_match\n"
    "  -h, --help           this text\n"
    "\n"
    "examples:\n"
    "  dkimctl check-record --zone keys.zone --domain example.com --selector mail2026\n"
    "  dkimctl check-record --zone keys.zone --domain example.com --selector mail2026 \\\n"
    "      --key /etc/dkim/mail2026.pem\n"
    "  dkimctl check-record --resolver 192.0.2.53 --domain example.com --selector mail2026\n"
    "  dkimctl check-record --domain example.com          (which selectors exist?)\n"
    "\n"
    "exit status: 0 the record is fine, 1 warnings only, 2 errors (missing, unusable,\n"
    "DNS failure, key mismatch), 3 the check could not run (zone or key file unreadable),\n"
    "64 usage error.\n";

typedef struct finding {
    int record; /* index of the record it is about, or -1 for the lookup as a whole */
    enum dkd_lint_level level;
    char code[32];
    char tag[32];
    size_t offset;
    char message[2048];
} finding;

typedef struct checker {
    finding *f;
    size_t n, cap;
    int worst;
    int current; /* record being linted */
    /* Raw TXT records at the name; those from [ndirect] on were found at the doubled
     * name (S._domainkey.D.D) when the name itself has none. */
    char **txt;
    size_t *txt_len;
    size_t ntxt, ndirect;
    bool oom;
} checker;

static void add(checker *c, int record, enum dkd_lint_level level, const char *code,
                const char *tag, size_t offset, const char *message)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        finding *nf = realloc(c->f, cap * sizeof *nf);
        if (nf == NULL) {
            c->oom = true;
            return;
        }
        c->f = nf;
        c->cap = cap;
    }
    finding *f = &c->f[c->n++];
    f->record = record;
    f->level = level;
    snprintf(f->code, sizeof f->code, "%s", code);
    snprintf(f->tag, sizeof f->tag, "%s", tag);
    f->offset = offset;
    snprintf(f->message, sizeof f->message, "%s", message);
    if ((int)level > c->worst) {
        c->worst = (int)level;
    }
}

static void on_lint(void *arg, const dkd_lint_finding *lf)
{
    checker *c = arg;
    add(c, c->current, lf->level, lf->code, lf->tag, lf->offset, lf->message);
}

static void on_txt(void *arg, const uint8_t *txt, size_t len)
{
    checker *c = arg;
    char **nt = realloc(c->txt, (c->ntxt + 1) * sizeof *nt);
    size_t *nl = nt != NULL ? realloc(c->txt_len, (c->ntxt + 1) * sizeof *nl) : NULL;
    if (nt != NULL) {
        c->txt = nt;
    }
    if (nl != NULL) {
        c->txt_len = nl;
    }
    char *copy = malloc(len + 1);
    if (nt == NULL || nl == NULL || copy == NULL) {
        free(copy);
        c->oom = true;
        return;
    }
    memcpy(copy, txt, len);
    copy[len] = '\0';
    c->txt[c->ntxt] = copy;
    c->txt_len[c->ntxt++] = len;
}

static void on_key(void *arg, dkd_key *key)
{
    *(dkd_key **)arg = key;
}


static bool has_finding(const checker *c, int record, const char *code)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->f[i].record == record && strcmp(c->f[i].code, code) == 0) {
            return true;
        }
    }
    return false;
}

/* looks_dkim: a record that means to be a DKIM key (v=DKIM1 first, or a p= tag). */
static bool looks_dkim(const char *t, size_t n)
{
    while (n > 0 && (*t == ' ' || *t == '\t' || *t == '"')) {
        t++;
        n--;
    }
    return (n >= 7 && strncasecmp(t, "v=DKIM1", 7) == 0) || memmem(t, n, "p=", 2) != NULL;
}

static void on_worst(void *arg, const dkd_lint_finding *f)
{
    int *worst = arg;
    if ((int)f->level > *worst) {
        *worst = (int)f->level;
    }
}

/* joins_clean tells whether records a then b, joined, lint without an error. */
static bool joins_clean(const checker *c, size_t a, size_t b)
{
    size_t n = c->txt_len[a] + c->txt_len[b];
    char *j = malloc(n);
    if (j == NULL) {
        return false;
    }
    memcpy(j, c->txt[a], c->txt_len[a]);
    memcpy(j + c->txt_len[a], c->txt[b], c->txt_len[b]);
    int worst = -1;
    dkd_record_lint((const uint8_t *)j, n, on_worst, &worst);
    free(j);
    return worst < DKD_LINT_ERROR;
}

/*
 * several_records judges several TXT records at one name (after each was linted): a key
 * split into two records (a console that makes one record per 255-byte string), two
 * DKIM records (verifiers pick one, so some mail fails), or a DKIM record beside an
 * unrelated TXT record (harmless for dkimd, confusing for some verifiers).
 */
static void several_records(checker *c, const char *qname)
{
    char msg[1024];
    /* The records at the name, or those at the doubled name when it has none. */
    size_t base = 0, n = c->ndirect > 0 ? c->ndirect : c->ntxt;
    if (n < 2) {
        return;
    }
    if (n == 2 && (has_finding(c, (int)base, "truncated") ||
                   has_finding(c, (int)base + 1, "truncated") ||
                   !looks_dkim(c->txt[base], c->txt_len[base]) ||
                   !looks_dkim(c->txt[base + 1], c->txt_len[base + 1])) &&
        (joins_clean(c, base, base + 1) || joins_clean(c, base + 1, base))) {
        snprintf(msg, sizeof msg,
                 "the key is split over 2 TXT records at %s: verifiers read each record on "
                 "its own, so neither is a whole key. Delete both and publish ONE TXT record "
                 "holding the pieces as several quoted strings (\"v=DKIM1; k=rsa; p=MIIB...\" "
                 "\"...rest\"; dkimctl keygen prints it so)", qname);
        add(c, -1, DKD_LINT_ERROR, "split-records", "", 0, msg);
        return;
    }
    size_t dkim = 0;
    for (size_t i = base; i < base + n; i++) {
        dkim += looks_dkim(c->txt[i], c->txt_len[i]);
    }
    if (dkim >= 2) {
        snprintf(msg, sizeof msg,
                 "%zu DKIM records at %s: RFC 6376 3.6.2.2 leaves the result undefined and "
                 "verifiers differ (dkimd uses the first usable one, others pick one at "
                 "random), so some mail fails; keep exactly one (a new key gets a new "
                 "selector)", dkim, qname);
        add(c, -1, DKD_LINT_ERROR, "several-records", "", 0, msg);
    } else {
        snprintf(msg, sizeof msg,
                 "%zu TXT records at %s, of which %zu is a DKIM record: keep only the DKIM "
                 "record at this name (other TXT records belong elsewhere)", n, qname, dkim);
        add(c, -1, DKD_LINT_WARNING, "several-records", "", 0, msg);
    }
}

static const char *level_name(enum dkd_lint_level l)
{
    return l == DKD_LINT_ERROR ? "error" : l == DKD_LINT_WARNING ? "warning" : "info";
}

static const char *status_name(int worst)
{
    return worst >= DKD_LINT_ERROR ? "errors" : worst == DKD_LINT_WARNING ? "warnings" : "ok";
}

static void print_findings(const checker *c, int record, bool json)
{
    bool first = true;
    for (size_t i = 0; i < c->n; i++) {
        const finding *f = &c->f[i];
        if (f->record != record) {
            continue;
        }
        if (json) {
            printf("%s{\"level\": \"%s\", \"code\": ", first ? "" : ", ", level_name(f->level));
            json_cstring(stdout, f->code);
            printf(", \"tag\": ");
            json_cstring(stdout, f->tag);
            printf(", \"offset\": %zu, \"message\": ", f->offset);
            json_cstring(stdout, f->message);
            printf("}");
        } else {
            printf("    %-7s ", level_name(f->level));
            if (f->tag[0]) {
                printf("%s= (byte %zu): ", f->tag, f->offset);
            }
            printf("%s\n", f->message);
        }
        first = false;
    }
}

/* ---- selector discovery (--domain without --selector) ---- */

/* Selectors seen in the wild beside the table's: tried by every discovery. */
static const char *const common_selectors[] = {
    "default", "selector1", "selector2", "google", "k1", "k2", "k3", "s1", "s2", "mail",
    "dkim", "smtp", "mandrill", "mxvault", "dkim1", "dkim2", "key1", "key2", "sig1", "mx",
    "email", "s1024", "s2048", "everlytickey1", "everlytickey2", "mail1", "mail2",
};

enum { MAX_PROBES = 160 };

typedef struct waitgroup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t left;
} waitgroup;

typedef struct probe {
    char selector[64];
    char qname[600];
    dkd_key *key;
    waitgroup *wg;
} probe;

/* on_probe runs on the resolver's thread (or in ours for a cache hit or a zone). */
static void on_probe(void *arg, dkd_key *key, unsigned flags)
{
    (void)flags;
    probe *p = arg;
    pthread_mutex_lock(&p->wg->mu);
    p->key = key;
    p->wg->left--;
    pthread_cond_signal(&p->wg->cv);
    pthread_mutex_unlock(&p->wg->mu);
}

static void on_probe_sync(void *arg, dkd_key *key)
{
    on_probe(arg, key, 0);
}

/* providers_load reads the table from the first place the file's header lists. The
 * table is optional: without it discovery tries the common selectors only. */
static void providers_load(const char *path, providers *out, char *used, size_t used_len)
{
    char self[4096], guess[4200];
    const char *tries[4];
    size_t nt = 0;
    if (path != NULL) {
        tries[nt++] = path;
    } else {
        const char *env = getenv("DKIMCTL_PROVIDERS");
        if (env != NULL && env[0] != '\0') {
            tries[nt++] = env;
        }
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            char *slash = strrchr(self, '/');
            if (slash != NULL) {
                *slash = '\0';
                snprintf(guess, sizeof guess, "%s/providers.conf", self);
                tries[nt++] = guess;
            }
        }
        tries[nt++] = DKIMCTL_DATADIR "/providers.conf";
    }
    out->p = NULL;
    out->n = 0;
    used[0] = '\0';
    for (size_t i = 0; i < nt; i++) {
        size_t len;
        uint8_t *text = read_file(tries[i], &len);
        if (text == NULL) {
            if (path != NULL || errno != ENOENT) {
                fprintf(stderr, "dkimctl check-record: %s: %s (provider table not used)\n",
                        tries[i], strerror(errno));
            }
            if (path != NULL) {
                return;
            }
            continue;
        }
        char err[128];
        if (providers_parse((const char *)text, len, out, err, sizeof err) != 0) {
            fprintf(stderr, "dkimctl check-record: %s: %s (provider table not used)\n",
                    tries[i], err);
            free(out->p);
            out->p = NULL;
            out->n = 0;
        } else {
            snprintf(used, used_len, "%s", tries[i]);
        }
        free(text);
        return;
    }
}

/* pattern_list_has tells whether one of the blank-separated patterns matches s. */
static bool pattern_list_has(const char *list, const char *s)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok != NULL;
         tok = strtok_r(NULL, " \t", &save)) {
        if (fnmatch(tok, s, FNM_CASEFOLD) == 0) {
            return true;
        }
    }
    return false;
}

static const provider *provider_of(const providers *pv, const char *selector)
{
    for (size_t i = 0; i < pv->n; i++) {
        if (pattern_list_has(pv->p[i].selectors, selector)) {
            return &pv->p[i];
        }
    }
    return NULL;
}

static void add_probe(probe *pr, size_t *n, const char *selector, const char *domain)
{
    if (*n == MAX_PROBES || strlen(selector) >= sizeof pr[0].selector ||
        strpbrk(selector, "*?[") != NULL || !dkimctl_name_valid(selector)) {
        return;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcasecmp(pr[i].selector, selector) == 0) {
            return;
        }
    }
    probe *p = &pr[(*n)++];
    snprintf(p->selector, sizeof p->selector, "%s", selector);
    snprintf(p->qname, sizeof p->qname, "%s._domainkey.%s", selector, domain);
    p->key = NULL;
}

static bool found(const dkd_key *k)
{
    enum dkd_reason r = dkd_key_reason(k);
    return r != DKD_REASON_KEY_NOT_FOUND && r != DKD_REASON_DNS_ERROR &&
           r != DKD_REASON_DNS_TIMEOUT;
}

static const char *type_name(const dkd_key *k)
{
    return dkd_key_type(k) == DKD_KEY_ED25519 ? "ed25519" : "rsa";
}

/*
 * discover looks up every candidate selector of domain at once (the resolver answers
 * them in parallel; a zone answers at once) and reports the ones that exist, with what
 * each holds. Exit status as check-record's: 0 every key found is usable, 1 some are
 * not, 2 none found or none usable, 3 the check could not run.
 */
static int discover(const char *domain, dkimctl_keys *keys, const char *providers_path,
                    bool json)
{
    providers pv;
    char used[4200];
    providers_load(providers_path, &pv, used, sizeof used);
    probe *pr = calloc(MAX_PROBES, sizeof *pr);
    if (pr == NULL) {
        free(pv.p);
        fprintf(stderr, "dkimctl check-record: out of memory\n");
        return CR_CANNOT;
    }
    size_t n = 0;
    for (size_t i = 0; i < pv.n; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", pv.p[i].selectors);
        for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok != NULL;
             tok = strtok_r(NULL, " \t", &save)) {
            add_probe(pr, &n, tok, domain);
        }
    }
    for (size_t i = 0; i < sizeof common_selectors / sizeof common_selectors[0]; i++) {
        add_probe(pr, &n, common_selectors[i], domain);
    }
    waitgroup wg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, n};
    for (size_t i = 0; i < n; i++) {
        pr[i].wg = &wg;
        int rc = keys->zone != NULL
                     ? keys->src.lookup(keys->src.impl, pr[i].qname, on_probe_sync, &pr[i])
                     : dkd_resolver_lookup(keys->resolver, pr[i].qname, on_probe, &pr[i]);
        if (rc != 0) {
            /* The callback is never called after a failed start. */
            pthread_mutex_lock(&wg.mu);
            pr[i].key = dkd_key_from_failure(DKD_REASON_DNS_ERROR, "out of memory");
            wg.left--;
            pthread_mutex_unlock(&wg.mu);
        }
    }
    pthread_mutex_lock(&wg.mu);
    while (wg.left > 0) {
        pthread_cond_wait(&wg.cv, &wg.mu);
    }
    pthread_mutex_unlock(&wg.mu);

    size_t nfound = 0, usable = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (pr[i].key == NULL) {
            continue;
        }
        nfound += found(pr[i].key);
        usable += dkd_key_reason(pr[i].key) == DKD_REASON_OK;
        failed += !found(pr[i].key) && dkd_key_reason(pr[i].key) != DKD_REASON_KEY_NOT_FOUND;
    }
    int status = usable == 0 ? CR_ERRORS : usable < nfound ? CR_WARNINGS : CR_OK;
    if (json) {
        printf("{\"domain\": ");
        json_cstring(stdout, domain);
        printf(", \"status\": \"%s\", \"providers_file\": ",
               status == CR_OK ? "ok" : status == CR_WARNINGS ? "warnings" : "errors");
        if (used[0]) {
            json_cstring(stdout, used);
        } else {
            printf("null");
        }
        printf(", \"tried\": [");
        for (size_t i = 0; i < n; i++) {
            printf("%s", i ? ", " : "");
            json_cstring(stdout, pr[i].selector);
        }
        printf("], \"selectors\": [");
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            const dkd_key *k = pr[i].key;
            if (k == NULL || dkd_key_reason(k) == DKD_REASON_KEY_NOT_FOUND) {
                continue;
            }
            const provider *pv1 = provider_of(&pv, pr[i].selector);
            bool ok = dkd_key_reason(k) == DKD_REASON_OK;
            printf("%s{\"selector\": ", first ? "" : ", ");
            json_cstring(stdout, pr[i].selector);
            printf(", \"name\": ");
            json_cstring(stdout, pr[i].qname);
            printf(", \"exists\": %s, \"reason\": \"%s\", \"detail\": ",
                   found(k) ? "true" : "false", dkd_reason_code(dkd_key_reason(k)));
            json_cstring(stdout, dkd_key_detail(k));
            printf(", \"key_type\": \"%s\", \"key_bits\": %u, \"testing\": %s, \"provider\": ",
                   ok ? type_name(k) : "", dkd_key_bits(k),
                   ok && (dkd_key_flags(k) & DKD_KEY_TESTING) ? "true" : "false");
            if (pv1 != NULL) {
                json_cstring(stdout, pv1->name);
                printf(", \"enable\": ");
                json_cstring(stdout, pv1->enable);
            } else {
                printf("null, \"enable\": null");
            }
            printf("}");
            first = false;
        }
        printf("]}\n");
    } else {
        printf("selectors of %s: %zu tried (the provider table's%s and common ones)\n", domain,
               n, used[0] ? "" : " - none: no providers.conf found -");
        for (size_t i = 0; i < n; i++) {
            const dkd_key *k = pr[i].key;
            if (k == NULL || dkd_key_reason(k) == DKD_REASON_KEY_NOT_FOUND) {
                continue;
            }
            const provider *pv1 = provider_of(&pv, pr[i].selector);
            printf("  %-12s %s: ", pr[i].selector, pr[i].qname);
            if (dkd_key_reason(k) == DKD_REASON_OK) {
                printf("%s %u bits%s", type_name(k), dkd_key_bits(k),
                       (dkd_key_flags(k) & DKD_KEY_TESTING) ? ", t=y" : "");
            } else if (found(k)) {
                printf("UNUSABLE (%s): %s", dkd_reason_code(dkd_key_reason(k)),
                       dkd_key_detail(k));
            } else {
                printf("lookup failed (%s): %s", dkd_reason_code(dkd_key_reason(k)),
                       dkd_key_detail(k));
            }
            printf("\n");
            if (pv1 != NULL) {
                printf("               a %s selector%s%s\n", pv1->name,
                       dkd_key_reason(k) == DKD_REASON_OK ? "" : "; DKIM is set up at: ",
                       dkd_key_reason(k) == DKD_REASON_OK ? "" : pv1->enable);
            }
        }
        if (nfound == 0) {
            printf("  no key record at any of them: the domain does not sign with DKIM, or "
                   "uses a selector not in the list (s= of a DKIM-Signature it wrote names "
                   "it)%s\n", failed ? "; some lookups failed, try again" : "");
        }
        printf("result: %zu found, %zu usable%s\n", nfound, usable,
               nfound ? "; check each with: dkimctl check-record --domain D --selector S" : "");
    }
    for (size_t i = 0; i < n; i++) {
        if (pr[i].key != NULL) {
            dkd_key_unref(pr[i].key);
        }
    }
    free(pr);
    free(pv.p);
    return status;
}

int dkimctl_check_record(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"domain", required_argument, NULL, 'd'},
        {"selector", required_argument, NULL, 's'},
        {"key", required_argument, NULL, 'k'},
        {"providers", required_argument, NULL, 'P'},
        DKIMCTL_KEYSRC_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *domain = NULL, *selector = NULL, *key_path = NULL, *providers_path = NULL;
    dkimctl_keysrc_opts ko;
    dkimctl_keysrc_opts_init(&ko);
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int handled = dkimctl_keysrc_option(&ko, "check-record", c, optarg);
        if (handled < 0) {
            return CR_USAGE;
        }
        if (handled > 0) {
            continue;
        }
        switch (c) {
        case 'd':
            domain = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 'k':
            key_path = optarg;
            break;
        case 'P':
            providers_path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(check_help, stdout);
            return CR_OK;
        default:
            fprintf(stderr, "dkimctl check-record: see 'dkimctl check-record --help'\n");
            return CR_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dkimctl check-record: unexpected argument '%s'\n", argv[optind]);
        return CR_USAGE;
    }
    if (domain != NULL && selector == NULL && key_path == NULL) {
        if (!dkimctl_name_valid(domain)) {
            fprintf(stderr, "dkimctl check-record: invalid --domain '%s'\n", domain);
            return CR_USAGE;
        }
        dkimctl_keys dk;
        if (!dkimctl_keys_open(&ko, "check-record", &dk)) {
            return CR_CANNOT;
        }
        int st = discover(domain, &dk, providers_path, json);
        dkimctl_keys_close(&dk);
        return st;
    }
    if (!dkimctl_check_names("check-record", domain, selector)) {
        return CR_USAGE;
    }
    char err[512];
    dkd_signkey *priv = NULL;
    if (key_path != NULL && (priv = dkd_signkey_load(key_path, err, sizeof err)) == NULL) {
        fprintf(stderr, "dkimctl check-record: %s\n", err);
        return CR_CANNOT;
    }
    dkimctl_keys keys;
    if (!dkimctl_keys_open(&ko, "check-record", &keys)) {
        dkd_signkey_free(priv);
        return CR_CANNOT;
    }
    char qname[600];
    snprintf(qname, sizeof qname, "%s._domainkey.%s", selector, domain);

    /* 1. The verifier's lookup: what a signature with this d= and s= would get. */
    dkd_key *key = NULL;
    if (keys.src.lookup(keys.src.impl, qname, on_key, &key) != 0 || key == NULL) {
        fprintf(stderr, "dkimctl check-record: out of memory\n");
        dkimctl_keys_close(&keys);
        dkd_signkey_free(priv);
        return CR_CANNOT;
    }
    /* 2. The raw records at the name, each linted on its own. */
    checker ck = {.worst = -1, .current = -1};
    enum dkd_reason why = dkd_key_reason(key);
    enum dkd_reason raw = why;
    bool secure = dkd_key_dnssec_secure(key);
    if (keys.zone != NULL) {
        raw = dkd_zone_txt(keys.zone, qname, on_txt, &ck);
    } else if (why != DKD_REASON_DNS_ERROR && why != DKD_REASON_DNS_TIMEOUT &&
               why != DKD_REASON_DNSSEC_BOGUS) {
        /* Only after an answer: a server that timed out would make us wait again. */
        raw = dkd_resolver_txt(keys.resolver, qname, on_txt, &ck, &secure);
    }
    char msg[1536];
    ck.ndirect = ck.ntxt;
    char doubled[900] = "";
    if (raw == DKD_REASON_KEY_NOT_FOUND || (raw == DKD_REASON_OK && ck.ntxt == 0)) {
        /* Consoles that append the zone name to what is typed turn a host name entered
         * as "sel._domainkey.example.com" into sel._domainkey.example.com.example.com. */
        snprintf(doubled, sizeof doubled, "%s.%s", qname, domain);
        bool dsec = false;
        enum dkd_reason dr = keys.zone != NULL
                                 ? dkd_zone_txt(keys.zone, doubled, on_txt, &ck)
                                 : dkd_resolver_txt(keys.resolver, doubled, on_txt, &ck, &dsec);
        if (dr == DKD_REASON_OK && ck.ntxt > ck.ndirect) {
            snprintf(msg, sizeof msg,
                     "no TXT record at %s, but there is one at %s: the DNS console added the "
                     "domain to a host name that already ended in it. Change the host name to "
                     "'%s._domainkey' (or end it with a dot: '%s.')", qname, doubled,
                     selector, qname);
            add(&ck, -1, DKD_LINT_ERROR, "doubled-domain", "", 0, msg);
        } else {
            doubled[0] = '\0';
            snprintf(msg, sizeof msg,
                     "no TXT record at %s (NXDOMAIN or no TXT data): every signature with "
                     "d=%s s=%s gets permerror key-not-found; publish the record "
                     "(dkimctl keygen prints it)", qname, domain, selector);
            add(&ck, -1, DKD_LINT_ERROR, "missing", "", 0, msg);
        }
    } else if (raw == DKD_REASON_DNS_ERROR || raw == DKD_REASON_DNS_TIMEOUT ||
               raw == DKD_REASON_DNSSEC_BOGUS) {
        snprintf(msg, sizeof msg, "lookup of TXT %s failed: %s (%s); %s", qname,
                 dkd_reason_explanation(raw), dkd_key_detail(key), dkd_reason_fix(raw));
        add(&ck, -1, DKD_LINT_ERROR, dkd_reason_code(raw), "", 0, msg);
    }
    for (size_t i = 0; i < ck.ntxt; i++) {
        ck.current = (int)i;
        dkd_record_lint((const uint8_t *)ck.txt[i], ck.txt_len[i], on_lint, &ck);
    }
    several_records(&ck, qname);
    if (raw == DKD_REASON_OK && ck.ntxt > 0 && why != DKD_REASON_OK) {
        snprintf(msg, sizeof msg, "verifiers cannot use this key: %s (%s): %s",
                 dkd_reason_code(why), dkd_key_detail(key), dkd_reason_fix(why));
        add(&ck, -1, DKD_LINT_ERROR, "unusable", "", 0, msg);
    }
    /* 3. The private key, if given. */
    int key_match = -1; /* unknown */
    if (priv != NULL) {
        if (why != DKD_REASON_OK) {
            add(&ck, -1, DKD_LINT_ERROR, "key-unchecked", "", 0,
                "--key: no usable published key to compare with");
        } else if (dkd_signkey_type(priv) != dkd_key_type(key)) {
            key_match = 0;
            snprintf(msg, sizeof msg, "--key %s is an %s key but the record publishes %s",
                     key_path, dkd_signkey_type(priv) == DKD_KEY_ED25519 ? "ed25519" : "rsa",
                     dkd_key_type(key) == DKD_KEY_ED25519 ? "ed25519" : "rsa");
            add(&ck, -1, DKD_LINT_ERROR, "key-mismatch", "", 0, msg);
        } else if (!dkd_signkey_matches(priv, key)) {
            key_match = 0;
            snprintf(msg, sizeof msg,
                     "--key %s is NOT the private half of the published key: signatures made "
                     "with it fail (signature-mismatch); publish this key's record "
                     "(dkimctl keygen output) or sign with the matching key", key_path);
            add(&ck, -1, DKD_LINT_ERROR, "key-mismatch", "", 0, msg);
        } else {
            key_match = 1;
            snprintf(msg, sizeof msg, "--key %s matches the published key", key_path);
            add(&ck, -1, DKD_LINT_INFO, "key-match", "", 0, msg);
        }
    }
    /* Zone answers carry no DNSSEC proof; the resolver's may. */
    const char *dnssec = secure                ? "secure (DNSSEC-validated answer)"
                         : keys.zone != NULL   ? "not validated (zone file)"
                         : why == DKD_REASON_DNSSEC_BOGUS ? "BOGUS: validation failed"
                                               : "insecure (answer not DNSSEC-signed, or no "
                                                 "trust anchor configured)";
    if (!secure && keys.zone == NULL && why != DKD_REASON_DNSSEC_BOGUS) {
        add(&ck, -1, DKD_LINT_INFO, "dnssec-insecure", "", 0,
            "the answer was not DNSSEC-validated: signing the zone protects the key record "
            "from spoofing");
    }

    if (json) {
        printf("{\"name\": ");
        json_cstring(stdout, qname);
        printf(", \"status\": \"%s\", \"lookup\": {\"reason\": \"%s\", \"detail\": ",
               status_name(ck.worst), dkd_reason_code(why));
        json_cstring(stdout, dkd_key_detail(key));
        printf(", \"key_bits\": %u, \"key_type\": \"%s\"}, \"dnssec\": ", dkd_key_bits(key),
               why != DKD_REASON_OK ? "" : dkd_key_type(key) == DKD_KEY_ED25519 ? "ed25519"
                                                                                : "rsa");
        json_cstring(stdout, secure ? "secure"
                             : why == DKD_REASON_DNSSEC_BOGUS ? "bogus"
                                                              : "insecure");
        printf(", \"key_match\": %s, \"findings\": [",
               key_match < 0 ? "null" : key_match ? "true" : "false");
        print_findings(&ck, -1, true);
        printf("], \"records\": [");
        for (size_t i = 0; i < ck.ntxt; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            json_cstring(stdout, i < ck.ndirect ? qname : doubled);
            printf(", \"text\": ");
            json_string(stdout, ck.txt[i], ck.txt_len[i]);
            printf(", \"findings\": [");
            print_findings(&ck, (int)i, true);
            printf("]}");
        }
        printf("]}\n");
    } else {
        printf("TXT %s\n", qname);
        printf("  verifier's reading: %s", why == DKD_REASON_OK ? "usable key" : "unusable");
        if (why == DKD_REASON_OK) {
            printf(", %s %u bits%s\n", dkd_key_type(key) == DKD_KEY_ED25519 ? "ed25519" : "rsa",
                   dkd_key_bits(key), (dkd_key_flags(key) & DKD_KEY_TESTING) ? ", t=y" : "");
        } else {
            printf(" (%s): %s\n", dkd_reason_code(why), dkd_key_detail(key));
        }
        printf("  DNSSEC: %s\n", dnssec);
        print_findings(&ck, -1, false);
        for (size_t i = 0; i < ck.ntxt; i++) {
            if (i == ck.ndirect) {
                printf("  at %s:\n", doubled);
            }
            printf("  record %zu: \"%.*s%s\"\n", i + 1,
                   (int)(ck.txt_len[i] > 72 ? 72 : ck.txt_len[i]), ck.txt[i],
                   ck.txt_len[i] > 72 ? "..." : "");
            print_findings(&ck, (int)i, false);
        }
        printf("result: %s\n", ck.worst >= DKD_LINT_ERROR    ? "ERRORS"
                               : ck.worst == DKD_LINT_WARNING ? "WARNINGS"
                                                              : "OK");
    }
    int status = ck.oom ? CR_CANNOT
                 : ck.worst >= DKD_LINT_ERROR ? CR_ERRORS
                 : ck.worst == DKD_LINT_WARNING ? CR_WARNINGS
                                                : CR_OK;
    for (size_t i = 0; i < ck.ntxt; i++) {
        free(ck.txt[i]);
    }
    free(ck.txt);
    free(ck.txt_len);
    free(ck.f);
    dkd_key_unref(key);
    dkimctl_keys_close(&keys);
    dkd_signkey_free(priv);
    return status;
}

#endif /* DKIMCTL_PROVIDERS_PARSER_ONLY */
