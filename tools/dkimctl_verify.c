/*
 * dkimctl_verify.c - `dkimctl verify`: verify message files in-process and print each
 * signature's result, reason and fix (or one JSON object per message with --json).
 */
#include "dkimctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dkimd/engine.h>
#include <dkimd/resolver.h>
#ifdef DKIMCTL_HAVE_CLIENT
#include <dkimd/client.h>
#endif

static const char verify_help[] =
    "usage: dkimctl verify [OPTIONS] FILE...\n"
    "\n"
    "Verify every DKIM-Signature of each message file and print the result, the reason\n"
    "and what to fix. Files may use CRLF or bare LF line ends.\n"
    "\n"
    "options:\n"
    "  --zone FILE          answer key lookups from a DNS master file of TXT records\n"
    "                       (directives '; @nxdomain|@servfail|@timeout NAME' honoured)\n"
    "  --resolver ADDR[@PORT]  look keys up through this DNS server (repeatable: several\n"
    "                       forwarders); IPv4 or IPv6, port 53 by default\n"
    "  --resolver-conf      look keys up through the servers in /etc/resolv.conf\n"
    "  --resolver-option 'NAME: VALUE'  pass an option to libunbound (repeatable), e.g.\n"
    "                       'do-not-query-localhost: no' for a server on 127.0.0.1, or\n"
    "                       'local-zone: test. nodefault' to resolve names under .test\n"
    "  --dns-timeout MS     give up on one DNS query after MS milliseconds and report\n"
    "                       temperror/dns-timeout (default 2000)\n"
    "  (no --zone, --resolver or --resolver-conf: full recursion from the root hints,\n"
    "   DNSSEC-validated when a trust anchor is installed at /var/lib/unbound/root.key\n"
    "   or /usr/share/dns/root.key)\n"
    "  --now UNIXTIME       verify as of this time (default: the current time)\n"
    "  --allow-sha1         verify rsa-sha1 signatures instead of refusing them (RFC 8301)\n"
    "  --min-rsa-bits N     RSA keys shorter than N bits never pass (default 1024)\n"
    "  --max-rsa-bits N     RSA keys longer than N bits are refused (default 8192)\n"
    "  --max-signatures N   evaluate at most N signatures per message (default 8)\n"
    "  --refuse-partial-body  l= that leaves part of the body unsigned gives 'policy'\n"
    "  --authserv-id ID     authserv-id of the Authentication-Results header (default\n"
    "                       'localhost')\n"
    "  --json               one JSON object per message, one per line\n"
    "  --socket PATH        verify through the dkimd listening at this Unix socket: its\n"
    "                       key source and policy apply; the output is the same\n"
    "  --shm                with --socket: send the messages through a shared memory\n"
    "                       region (what dkd_client_use_shm gives an MTA) instead of the\n"
    "                       socket, to check that path end to end\n"
    "  -h, --help           this text\n"
    "\n"
    "examples:\n"
    "  dkimctl verify --zone samples/keys.zone samples/*.eml\n"
    "  dkimctl verify --json --zone keys.zone --now 1700000000 message.eml\n"
    "  dkimctl verify --resolver 127.0.0.1@5353 \\\n"
    "      --resolver-option 'do-not-query-localhost: no' message.eml\n"
    "\n"
    "exit status: 0 when every file was processed (whatever the DKIM results),\n"
    "1 when a file could not be read or the key source could not be loaded, 2 on usage\n"
    "errors.\n";

typedef struct verify_opts {
    dkimctl_keysrc_opts keys; /* --zone, --resolver, ... (shared with other commands) */
    const char *authserv_id;
    const char *socket_path; /* --socket: verify through a running dkimd */
    bool shm;                /* --shm: through the daemon's shared memory transport */
    bool json;
    bool have_now;
    int64_t now;
} verify_opts;

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* The printers take a results array so that verdicts from a running dkimd (--socket,
 * converted by libdkimd into the same dkd_sig_result) print exactly like in-process ones. */
static void print_json(const char *file, const dkd_sig_result *res, size_t n, const char *authres)
{
    printf("{\"file\": ");
    json_cstring(stdout, file);
    printf(", \"signatures\": [");
    for (size_t i = 0; i < n; i++) {
        const dkd_sig_result *r = &res[i];
        printf("%s{", i ? ", " : "");
        json_sig_fields(stdout, r);
        printf("}");
    }
    printf("], \"authentication_results\": ");
    json_cstring(stdout, authres != NULL ? authres : "");
    printf("}\n");
}

static void print_plain(const char *file, const dkd_sig_result *res, size_t n, const char *authres)
{
    if (n == 0) {
        printf("%s: dkim=none: %s\n    fix: %s\n", file,
               dkd_reason_explanation(DKD_REASON_NO_SIGNATURE),
               dkd_reason_fix(DKD_REASON_NO_SIGNATURE));
    } else {
        printf("%s: %zu signature%s\n", file, n, n == 1 ? "" : "s");
    }
    for (size_t i = 0; i < n; i++) {
        const dkd_sig_result *r = &res[i];
        printf("  [%zu] dkim=%s", i + 1, dkd_result_name(r->result));
        if (r->result != DKD_RESULT_PASS) {
            printf(" (%s)", dkd_reason_code(r->reason));
        }
        printf("  d=%s s=%s a=%s", r->d[0] ? r->d : "?", r->s[0] ? r->s : "?",
               r->a[0] ? r->a : "?");
        if (r->key_bits) {
            printf("  %u-bit key%s", r->key_bits, r->key_testing ? ", testing (t=y)" : "");
        }
        printf("\n      %s", dkd_reason_explanation(r->reason));
        if (r->detail[0]) {
            printf(": %s", r->detail);
        }
        printf("\n");
        if (r->has_l) {
            printf("      l= covers %" PRIu64 " of %" PRIu64 " canonical body bytes\n",
                   r->body_signed, r->body_total);
        }
        if (r->result != DKD_RESULT_PASS) {
            printf("      fix: %s\n", dkd_reason_fix(r->reason));
        }
    }
    if (authres != NULL) {
        /* Unfold for the terminal: one result per line, indented. */
        printf("  ");
        for (const char *p = authres; *p; p++) {
            if (*p == '\r') {
                continue;
            }
            putchar(*p == '\t' ? ' ' : *p);
            if (*p == '\n') {
                printf("  ");
            }
        }
        printf("\n");
    }
}

/* --shm's region: messages larger than this still go, over the socket. */
enum { SHM_REGION = 16u << 20 };

/*
 * verify_socket verifies every file through the dkimd at o->socket_path. Key source and
 * policy are the daemon's, so the flags that set them here are refused rather than
 * silently ignored; --now and --authserv-id travel with each request.
 */
static int verify_socket(const verify_opts *o, const dkd_config *cfg, int argc, char **argv)
{
#ifdef DKIMCTL_HAVE_CLIENT
    dkd_config def;
    dkd_config_init(&def);
    if (o->keys.zone_path != NULL || o->keys.use_dns || cfg->allow_sha1 != def.allow_sha1 ||
        cfg->min_rsa_bits != def.min_rsa_bits || cfg->max_rsa_bits != def.max_rsa_bits ||
        cfg->max_signatures != def.max_signatures ||
        cfg->refuse_partial_body != def.refuse_partial_body) {
        fprintf(stderr, "dkimctl verify: --socket excludes the key source and policy options: "
                        "the daemon's own configuration applies\n");
        return DKIMCTL_USAGE;
    }
    dkd_client *cl;
    int rc = dkd_client_connect(o->socket_path, &cl);
    if (rc != 0) {
        fprintf(stderr, "dkimctl verify: %s: %s\n", o->socket_path, dkd_client_strerror(rc));
        return DKIMCTL_FAILED;
    }
    if (o->shm && (rc = dkd_client_use_shm(cl, SHM_REGION)) != 0) {
        fprintf(stderr, "dkimctl verify: %s: shared memory: %s%s\n", o->socket_path,
                dkd_client_strerror(rc),
                rc == DKD_CLIENT_ERR_UNSUPPORTED ? " (is dkimd running with --max-shm 0?)" : "");
        dkd_client_close(cl);
        return DKIMCTL_FAILED;
    }
    dkd_client_opts copts = {
        .authserv_id = o->authserv_id, .has_time = o->have_now, .time = o->now};
    int status = DKIMCTL_OK;
    for (int i = optind; i < argc; i++) {
        size_t len;
        uint8_t *msg = read_file(argv[i], &len);
        if (msg == NULL) {
            fprintf(stderr, "dkimctl verify: %s: %s\n", argv[i], strerror(errno));
            status = DKIMCTL_FAILED;
            continue;
        }
        dkd_client_result *r;
        rc = dkd_client_verify(cl, msg, len, &copts, &r);
        if (rc != 0) {
            fprintf(stderr, "dkimctl verify: %s: %s\n", argv[i], dkd_client_strerror(rc));
            status = DKIMCTL_FAILED;
        } else if (o->json) {
            print_json(argv[i], r->sigs, r->nsigs, r->authres);
        } else {
            print_plain(argv[i], r->sigs, r->nsigs, r->authres);
        }
        dkd_client_result_free(r);
        free(msg);
    }
    fflush(stdout);
    dkd_client_close(cl);
    return status;
#else
    (void)o, (void)cfg, (void)argc, (void)argv;
    fprintf(stderr, "dkimctl verify: --socket: built without the client library\n");
    return DKIMCTL_USAGE;
#endif
}

int dkimctl_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        DKIMCTL_KEYSRC_LONGOPTS,
        {"now", required_argument, NULL, 'n'},
        {"allow-sha1", no_argument, NULL, '1'},
        {"min-rsa-bits", required_argument, NULL, 'm'},
        {"max-rsa-bits", required_argument, NULL, 'M'},
        {"max-signatures", required_argument, NULL, 'S'},
        {"refuse-partial-body", no_argument, NULL, 'P'},
        {"authserv-id", required_argument, NULL, 'A'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 'K'},
        {"shm", no_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    verify_opts o = {.authserv_id = "localhost"};
    dkimctl_keysrc_opts_init(&o.keys);
    dkd_config cfg;
    dkd_config_init(&cfg);
    unsigned long long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int keysrc = dkimctl_keysrc_option(&o.keys, "verify", c, optarg);
        if (keysrc < 0) {
            return DKIMCTL_USAGE;
        }
        if (keysrc > 0) {
            continue;
        }
        switch (c) {
        case 'n':
            if (!parse_uint(optarg, INT64_MAX, &v)) {
                fprintf(stderr, "dkimctl verify: --now wants Unix seconds, got '%s'\n", optarg);
                return DKIMCTL_USAGE;
            }
            o.have_now = true;
            o.now = (int64_t)v;
            break;
        case '1':
            cfg.allow_sha1 = true;
            break;
        case 'm':
        case 'M':
        case 'S':
            if (!parse_uint(optarg, 1u << 20, &v)) {
                fprintf(stderr, "dkimctl verify: '%s' is not a valid number\n", optarg);
                return DKIMCTL_USAGE;
            }
            if (c == 'm') {
                cfg.min_rsa_bits = (unsigned)v;
            } else if (c == 'M') {
                cfg.max_rsa_bits = (unsigned)v;
            } else {
                cfg.max_signatures = (unsigned)v;
            }
            break;
        case 'P':
            cfg.refuse_partial_body = true;
            break;
        case 'A':
            o.authserv_id = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case 'K':
            o.socket_path = optarg;
            break;
        case 'H':
            o.shm = true;
            break;
        case 'h':
            fputs(verify_help, stdout);
            return DKIMCTL_OK;
        default:
            fprintf(stderr, "dkimctl verify: see 'dkimctl verify --help'\n");
            return DKIMCTL_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "dkimctl verify: no message files given\n");
        return DKIMCTL_USAGE;
    }
    if (o.shm && o.socket_path == NULL) {
        fprintf(stderr, "dkimctl verify: --shm needs --socket\n");
        return DKIMCTL_USAGE;
    }
    if (o.socket_path != NULL) {
        return verify_socket(&o, &cfg, argc, argv);
    }
    /* --zone keeps the offline zone source; anything else goes through the resolver
     * (forwarders, resolv.conf, or the embedded recursive default). */
    dkimctl_keys keys;
    if (!dkimctl_keys_open(&o.keys, "verify", &keys)) {
        return DKIMCTL_FAILED;
    }
    dkd_keysrc src = keys.src;
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_msg *m = dkd_msg_new(eng);
    if (m == NULL) {
        fprintf(stderr, "dkimctl verify: out of memory\n");
        return DKIMCTL_FAILED;
    }
    int status = DKIMCTL_OK;
    for (int i = optind; i < argc; i++) {
        size_t len;
        uint8_t *msg = read_file(argv[i], &len);
        if (msg == NULL) {
            fprintf(stderr, "dkimctl verify: %s: %s\n", argv[i], strerror(errno));
            status = DKIMCTL_FAILED;
            continue;
        }
        int rc = dkd_verify_message(m, &src, msg, len, o.have_now ? o.now : (int64_t)time(NULL));
        if (rc != 0) {
            fprintf(stderr, "dkimctl verify: %s: %s\n", argv[i], dkd_strerror(rc));
            status = DKIMCTL_FAILED;
        } else {
            const char *authres = dkd_msg_authres(m, o.authserv_id);
            size_t n = 0;
            const dkd_sig_result *res = dkd_msg_results(m, &n);
            if (o.json) {
                print_json(argv[i], res, n, authres);
            } else {
                print_plain(argv[i], res, n, authres);
            }
        }
        free(msg);
        dkd_msg_reset(m);
    }
    fflush(stdout);
    dkd_msg_free(m);
    dkd_engine_free(eng);
    dkimctl_keys_close(&keys);
    return status;
}
