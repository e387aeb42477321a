/*
 * dkimctl_explain.c - `dkimctl explain`: verify one message and explain each signature
 * to a person: the result, the cause in plain words, the concrete fix, the DNS name
 * that was queried, key sizes, body coverage, DMARC alignment of d= with the From
 * domain, and the Authentication-Results header dkimd would add.
 */
#include "dkimctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dkimd/engine.h>
#include <dkimd/sign.h>
#ifdef DKIMCTL_HAVE_CLIENT
#include <dkimd/client.h>
#endif

static const char explain_help[] =
    "usage: dkimctl explain [KEY SOURCE] [OPTIONS] FILE\n"
    "\n"
    "Verify the message in FILE ('-' for standard input) and explain every\n"
    "DKIM-Signature: its result, the cause in plain words and what to change, the DNS\n"
    "name queried for its key, whether its d= aligns with the From domain as DMARC will\n"
    "judge it, and the Authentication-Results header dkimd would add.\n"
    "\n"
    "key source (as for dkimctl verify):\n" DKIMCTL_KEYSRC_HELP
#ifdef DKIMCTL_HAVE_CLIENT
    "  --socket PATH        ask a running dkimd at this Unix socket instead (its own key\n"
    "                       source and policy decide; the explanation is made here)\n"
#endif
    "\n"
    "options:\n"
    "  --now UNIXTIME       verify as of this time (default: the current time)\n"
    "  --authserv-id ID     authserv-id of the Authentication-Results header (default\n"
    "                       'localhost')\n"
    "  --json               one JSON object (signatures with cause, fix, qname and\n"
    "                       alignment; from_domain; authentication_results)\n"
    "  -h, --help           this text\n"
    "\n"
    "Alignment: strict means d= equals the From domain; relaxed means both have the same\n"
    "organizational domain. Without a public suffix list the organizational domain is\n"
    "approximated by the last two labels (wrong for names under suffixes such as co.uk).\n"
    "\n"
    "examples:\n"
    "  dkimctl explain --zone samples/keys.zone samples/05-fail-wrong-key.eml\n"
    "  dkimctl explain --resolver 127.0.0.1 --json message.eml\n"
#ifdef DKIMCTL_HAVE_CLIENT
    "  dkimctl explain --socket /run/dkimd/dkimd.sock message.eml\n"
#endif
    "\n"
    "exit status: 0 the message was explained (whatever its results), 1 the message or\n"
    "the key source could not be read, 2 usage error.\n";

/*
 * org_domain approximates the organizational domain (RFC 7489 3.2) by the last two
 * labels. A public suffix list would be right for co.uk and the like; we carry none,
 * and the output says so.
 */
static const char *org_domain(const char *d)
{
    size_t n = strlen(d);
    while (n > 0 && d[n - 1] == '.') {
        n--;
    }
    int dots = 0;
    for (size_t i = n; i-- > 0;) {
        if (d[i] == '.' && ++dots == 2) {
            return d + i + 1;
        }
    }
    return d;
}

static bool same_name(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    while (na > 0 && a[na - 1] == '.') {
        na--;
    }
    while (nb > 0 && b[nb - 1] == '.') {
        nb--;
    }
    return na == nb && strncasecmp(a, b, na) == 0;
}

typedef struct alignment {
    bool strict, relaxed;
} alignment;

static alignment align(const char *d, const char *from)
{
    alignment a = {false, false};
    if (d[0] != '\0' && from[0] != '\0') {
        a.strict = same_name(d, from);
        a.relaxed = same_name(org_domain(d), org_domain(from));
    }
    return a;
}

/*
 * cause writes the cause-specific detail of one result: what was looked up, what the
 * numbers were, what to check next. Plain sentences, no trailing newline.
 */
static void cause(char *out, size_t cap, const dkd_sig_result *r, const char *qname)
{
    out[0] = '\0';
    switch (r->reason) {
    case DKD_REASON_OK:
        snprintf(out, cap, "verified with the %u-bit %s key at %s%s", r->key_bits,
                 strncmp(r->a, "ed25519", 7) == 0 ? "ed25519" : "RSA", qname,
                 r->key_testing ? "; the record still says t=y (testing): remove it" : "");
        break;
    case DKD_REASON_KEY_NOT_FOUND:
        snprintf(out, cap,
                 "queried TXT %s: %s. Publish the record for selector '%s' (dkimctl "
                 "keygen prints it) and check it with: dkimctl check-record --domain %s "
                 "--selector %s",
                 qname, r->detail[0] ? r->detail : "no record", r->s, r->d, r->s);
        break;
    case DKD_REASON_KEY_SYNTAX:
    case DKD_REASON_KEY_REVOKED:
    case DKD_REASON_KEY_VERSION:
    case DKD_REASON_KEY_TYPE:
    case DKD_REASON_KEY_HASH:
    case DKD_REASON_KEY_SERVICE:
    case DKD_REASON_KEY_STRICT_IDENTITY:
        snprintf(out, cap,
                 "the record at %s: %s. Every problem in it is listed by: dkimctl "
                 "check-record --domain %s --selector %s",
                 qname, r->detail, r->d, r->s);
        break;
    case DKD_REASON_KEY_TOO_SMALL:
    case DKD_REASON_KEY_TOO_LARGE:
        snprintf(out, cap, "the key at %s has %u bits%s%s", qname, r->key_bits,
                 r->detail[0] ? ": " : "", r->detail);
        break;
    case DKD_REASON_DNS_ERROR:
    case DKD_REASON_DNS_TIMEOUT:
    case DKD_REASON_DNSSEC_BOGUS:
        snprintf(out, cap,
                 "the lookup of TXT %s failed (%s); the result is temporary and "
                 "receivers retry or treat the mail as unauthenticated meanwhile",
                 qname, r->detail[0] ? r->detail : dkd_reason_code(r->reason));
        break;
    case DKD_REASON_SIGNATURE_MISMATCH:
        snprintf(out, cap,
                 "the body hash matched, so the body arrived intact, but the header "
                 "signature does not verify with the %u-bit key at %s. Either the MTA signs "
                 "with a private key whose public half is not the one published (check with: "
                 "dkimctl check-record --domain %s --selector %s --key PRIVATE.pem), or a hop "
                 "changed a signed header such as Subject or From",
                 r->key_bits, qname, r->d, r->s);
        break;
    case DKD_REASON_BODY_HASH_MISMATCH:
        if (r->has_l) {
            snprintf(out, cap,
                     "the first %" PRIu64 " canonical body bytes (l=) no longer hash "
                     "to bh=; the body now has %" PRIu64 " bytes. A hop changed the body: a "
                     "footer, a disclaimer, re-encoding or line wrapping",
                     r->body_signed, r->body_total);
        } else {
            snprintf(out, cap,
                     "the body (%" PRIu64 " canonical bytes as received) does not "
                     "hash to bh=: a hop changed it after signing, e.g. a list footer, an "
                     "antivirus disclaimer, re-encoding or line wrapping",
                     r->body_total);
        }
        break;
    case DKD_REASON_BODY_LENGTH:
        snprintf(out, cap, "l= says %" PRIu64 " bytes were signed but the body has only %" PRIu64,
                 r->body_signed, r->body_total);
        break;
    case DKD_REASON_PARTIAL_BODY:
        snprintf(out, cap,
                 "l= covers %" PRIu64 " of %" PRIu64 " canonical body bytes; the "
                 "rest could have been appended by anyone",
                 r->body_signed, r->body_total);
        break;
    default:
        snprintf(out, cap, "%s", r->detail);
        break;
    }
}

static void json_alignment(alignment a)
{
    printf("{\"strict\": %s, \"relaxed\": %s}", a.strict ? "true" : "false",
           a.relaxed ? "true" : "false");
}

static void explain_json(const char *file, const dkd_sig_result *res, size_t n, const char *from,
                         size_t nfrom, const char *authres)
{
    printf("{\"file\": ");
    json_cstring(stdout, file);
    printf(", \"signed\": %s, \"from_domain\": ", n > 0 ? "true" : "false");
    json_cstring(stdout, from);
    printf(", \"from_count\": %zu, \"org_domain_method\": \"last-two-labels\"", nfrom);
    if (n == 0) {
        printf(", \"explanation\": ");
        json_cstring(stdout, "no DKIM-Signature header: this message was not signed \u2014 "
                             "enable DKIM signing at the sending system");
    }
    bool dmarc = false;
    printf(", \"signatures\": [");
    for (size_t i = 0; i < n; i++) {
        const dkd_sig_result *r = &res[i];
        char qname[600], why[2048];
        snprintf(qname, sizeof qname, "%s._domainkey.%s", r->s, r->d);
        cause(why, sizeof why, r, qname);
        alignment a = align(r->d, from);
        dmarc |= r->result == DKD_RESULT_PASS && a.relaxed;
        printf("%s{", i ? ", " : "");
        json_sig_fields(stdout, r);
        printf(", \"cause\": ");
        json_cstring(stdout, why);
        printf(", \"qname\": ");
        json_cstring(stdout, qname);
        printf(", \"alignment\": ");
        json_alignment(a);
        printf("}");
    }
    printf("], \"dmarc_dkim_aligned_pass\": %s, \"authentication_results\": ",
           dmarc ? "true" : "false");
    json_cstring(stdout, authres != NULL ? authres : "");
    printf("}\n");
}

static void explain_plain(const char *file, const dkd_sig_result *res, size_t n, const char *from,
                          size_t nfrom, const char *authres)
{
    printf("%s\n", file);
    if (nfrom == 1 && from[0]) {
        printf("From domain: %s\n", from);
    } else if (nfrom == 0) {
        printf("From domain: none - the message has no From header; DMARC cannot pass\n");
    } else if (nfrom > 1) {
        printf("From domain: %s (but %zu From headers: DMARC receivers reject such mail)\n",
               from[0] ? from : "?", nfrom);
    } else {
        printf("From domain: unreadable From address\n");
    }
    if (n == 0) {
        printf("\ndkim=none\n  no DKIM-Signature header: this message was not signed \u2014 enable "
               "DKIM signing at the sending system\n  fix: %s\n",
               dkd_reason_fix(DKD_REASON_NO_SIGNATURE));
    }
    bool dmarc = false;
    for (size_t i = 0; i < n; i++) {
        const dkd_sig_result *r = &res[i];
        char qname[600], why[2048];
        snprintf(qname, sizeof qname, "%s._domainkey.%s", r->s[0] ? r->s : "?",
                 r->d[0] ? r->d : "?");
        cause(why, sizeof why, r, qname);
        printf("\nsignature %zu of %zu: d=%s s=%s a=%s\n", i + 1, n, r->d[0] ? r->d : "?",
               r->s[0] ? r->s : "?", r->a[0] ? r->a : "?");
        printf("  result: dkim=%s", dkd_result_name(r->result));
        if (r->result != DKD_RESULT_PASS) {
            printf(" (%s)", dkd_reason_code(r->reason));
        }
        printf("\n  what happened: %s\n", dkd_reason_explanation(r->reason));
        if (why[0]) {
            printf("  cause: %s\n", why);
        }
        if (r->has_l && r->reason == DKD_REASON_OK) {
            printf("  body: l= covers %" PRIu64 " of %" PRIu64 " canonical body bytes%s\n",
                   r->body_signed, r->body_total,
                   r->body_signed < r->body_total ? " - the rest is unsigned: anyone could "
                                                    "have appended it"
                                                  : "");
        }
        if (r->result != DKD_RESULT_PASS) {
            printf("  fix: %s\n", dkd_reason_fix(r->reason));
        }
        alignment a = align(r->d, from);
        dmarc |= r->result == DKD_RESULT_PASS && a.relaxed;
        if (from[0] && r->d[0]) {
            printf("  alignment with From %s: strict %s, relaxed %s%s\n", from,
                   a.strict ? "yes" : "no", a.relaxed ? "yes" : "no",
                   a.relaxed ? "" : " - DMARC will not count this signature for the From domain");
        }
    }
    if (n > 0) {
        printf("\nDMARC (DKIM part): %s\n",
               dmarc ? "passes - a valid signature aligns with the From domain"
                     : "fails - no valid signature aligns with the From domain; sign with "
                       "d= set to the From domain (or its organizational domain)");
    }
    printf("  (organizational domain approximated by the last two labels: no public suffix "
           "list)\n");
    if (authres != NULL) {
        printf("\nAuthentication-Results dkimd would add:\n  ");
        for (const char *p = authres; *p; p++) {
            if (*p != '\r') {
                putchar(*p);
            }
            if (*p == '\n') {
                printf("  ");
            }
        }
        printf("\n");
    }
}

int dkimctl_explain(int argc, char **argv)
{
    static const struct option longopts[] = {
        DKIMCTL_KEYSRC_LONGOPTS,
        {"now", required_argument, NULL, 'n'},
        {"authserv-id", required_argument, NULL, 'A'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *socket_path = NULL;
    bool have_authserv = false;
    dkimctl_keysrc_opts ko;
    dkimctl_keysrc_opts_init(&ko);
    const char *authserv_id = "localhost";
    bool json = false, have_now = false;
    int64_t now = 0;
    unsigned long long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int handled = dkimctl_keysrc_option(&ko, "explain", c, optarg);
        if (handled < 0) {
            return DKIMCTL_USAGE;
        }
        if (handled > 0) {
            continue;
        }
        switch (c) {
        case 'n':
            if (!dkimctl_parse_uint(optarg, INT64_MAX, &v)) {
                fprintf(stderr, "dkimctl explain: --now wants Unix seconds, got '%s'\n", optarg);
                return DKIMCTL_USAGE;
            }
            have_now = true;
            now = (int64_t)v;
            break;
        case 'A':
            authserv_id = optarg;
            have_authserv = true;
            break;
        case 'S':
#ifdef DKIMCTL_HAVE_CLIENT
            socket_path = optarg;
            break;
#else
            fprintf(stderr, "dkimctl explain: --socket: built without the client library\n");
            return DKIMCTL_USAGE;
#endif
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(explain_help, stdout);
            return DKIMCTL_OK;
        default:
            fprintf(stderr, "dkimctl explain: see 'dkimctl explain --help'\n");
            return DKIMCTL_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dkimctl explain: give exactly one message FILE ('-' for stdin)\n");
        return DKIMCTL_USAGE;
    }
    const char *file = argv[optind];
    size_t len;
    uint8_t *msg = strcmp(file, "-") == 0 ? dkimctl_read_stdin(&len) : read_file(file, &len);
    if (msg == NULL) {
        fprintf(stderr, "dkimctl explain: %s: %s\n", file, strerror(errno));
        return DKIMCTL_FAILED;
    }
    if (socket_path != NULL) {
        int st = DKIMCTL_FAILED;
#ifdef DKIMCTL_HAVE_CLIENT
        if (ko.zone_path != NULL || ko.use_dns) {
            fprintf(stderr, "dkimctl explain: --socket excludes --zone and --resolver: the "
                            "daemon looks keys up itself\n");
            free(msg);
            return DKIMCTL_USAGE;
        }
        dkd_client *cl = NULL;
        dkd_client_result *cr = NULL;
        dkd_client_opts copts = {
            .authserv_id = have_authserv ? authserv_id : NULL, .has_time = have_now, .time = now};
        int crc = dkd_client_connect(socket_path, &cl);
        if (crc == 0) {
            crc = dkd_client_verify(cl, msg, len, &copts, &cr);
        }
        if (crc != 0) {
            fprintf(stderr, "dkimctl explain: %s: %s\n", socket_path, dkd_client_strerror(crc));
        } else {
            char from[256];
            size_t nfrom = dkd_from_domain(msg, len, from, sizeof from);
            if (json) {
                explain_json(file, cr->sigs, cr->nsigs, from, nfrom, cr->authres);
            } else {
                explain_plain(file, cr->sigs, cr->nsigs, from, nfrom, cr->authres);
            }
            fflush(stdout);
            st = DKIMCTL_OK;
        }
        dkd_client_result_free(cr);
        dkd_client_close(cl);
#else
        (void)have_authserv;
#endif
        free(msg);
        return st;
    }
    dkimctl_keys keys;
    if (!dkimctl_keys_open(&ko, "explain", &keys)) {
        free(msg);
        return DKIMCTL_FAILED;
    }
    dkd_config cfg;
    dkd_config_init(&cfg);
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_msg *m = dkd_msg_new(eng);
    int status = DKIMCTL_OK;
    int64_t at = have_now ? now : (int64_t)time(NULL);
    int rc = m != NULL ? dkd_verify_message(m, &keys.src, msg, len, at) : DKD_ERR_NOMEM;
    if (rc != 0) {
        fprintf(stderr, "dkimctl explain: %s: %s\n", file, dkd_strerror(rc));
        status = DKIMCTL_FAILED;
    } else {
        char from[256];
        size_t nfrom = dkd_from_domain(msg, len, from, sizeof from);
        size_t n = 0;
        const dkd_sig_result *res = dkd_msg_results(m, &n);
        const char *authres = dkd_msg_authres(m, authserv_id);
        if (json) {
            explain_json(file, res, n, from, nfrom, authres);
        } else {
            explain_plain(file, res, n, from, nfrom, authres);
        }
    }
    fflush(stdout);
    dkd_msg_free(m);
    dkd_engine_free(eng);
    dkimctl_keys_close(&keys);
    free(msg);
    return status;
}
