/*
 * dkimctl_check_record.c - `dkimctl check-record`: look a selector's key record up the
 * way verification does, lint every record found there with the engine's parsers, and
 * with --key tell whether the published key is the public half of a private key.
 */
#include "dkimctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dkimd/engine.h>
#include <dkimd/sign.h>

/* Exit statuses: record findings grade 0/1/2; 3 and 64 keep "could not check" and
 * "bad command line" apart from a record with errors. */
enum { CR_OK = 0, CR_WARNINGS = 1, CR_ERRORS = 2, CR_CANNOT = 3, CR_USAGE = 64 };

static const char check_help[] =
    "usage: dkimctl check-record --domain D --selector S [--key PEM] [KEY SOURCE] [--json]\n"
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

int dkimctl_check_record(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"domain", required_argument, NULL, 'd'},
        {"selector", required_argument, NULL, 's'},
        {"key", required_argument, NULL, 'k'},
        DKIMCTL_KEYSRC_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *domain = NULL, *selector = NULL, *key_path = NULL;
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
