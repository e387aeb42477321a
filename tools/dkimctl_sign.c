/*
 * dkimctl_sign.c - `dkimctl sign`: sign a message file and print it with a
 * DKIM-Signature prepended, using the engine's signer (the verifier's canonicalization).
 */
#include "dkimctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <dkimd/sign.h>

static const char sign_help[] =
    "usage: dkimctl sign --key PEM --domain D --selector S [OPTIONS] FILE\n"
    "\n"
    "Sign the message in FILE ('-' for standard input) and print it with a\n"
    "DKIM-Signature header prepended. The signature uses the line ends of the message\n"
    "(CRLF or LF). The default signed headers are those present of from, to, cc,\n"
    "subject, date, message-id, reply-to, in-reply-to, references, mime-version,\n"
    "content-type, content-transfer-encoding and list-id, with From over-signed (listed\n"
    "once more than it appears) so that a From added later breaks the signature.\n"
    "\n"
    "options:\n"
    "  --key PEM            private key (RSA or Ed25519 PEM, e.g. from dkimctl keygen)\n"
    "  --domain D           signing domain (d=)\n"
    "  --selector S         selector (s=): the key is published at S._domainkey.D\n"
    "  --algorithm A        rsa-sha256 or ed25519-sha256; must match the key (default:\n"
    "                       the key's)\n"
    "  --canon H/B          canonicalization, each relaxed or simple (default\n"
    "                       relaxed/relaxed; 'simple' alone means simple/simple)\n"
    "  --headers LIST       colon-separated header names to sign instead of the default\n"
    "                       (must include from; list a name twice to over-sign it)\n"
    "  --identity I         i= (an address at D or a subdomain of D)\n"
    "  --body-length        add l= covering the whole body (not advised: it lets others\n"
    "                       append text)\n"
    "  --timestamp T        t= in Unix seconds (default: now)\n"
    "  --expire SECONDS     add x= this long after t=\n"
    "  --signature-only     print only the DKIM-Signature header, not the message\n"
    "  -h, --help           this text\n"
    "\n"
    "examples:\n"
    "  dkimctl sign --key mail2026.example.com.pem --domain example.com \\\n"
    "      --selector mail2026 message.eml > signed.eml\n"
    "  dkimctl sign --key ed1.pem --domain example.com --selector ed1 \\\n"
    "      --canon simple/simple --expire 604800 message.eml\n"
    "\n"
    "exit status: 0 signed, 1 the key or message could not be read or signed, 2 usage\n"
    "error.\n";

static bool parse_canon(const char *s, bool *hrel, bool *brel)
{
    const char *slash = strchr(s, '/');
    size_t hn = slash != NULL ? (size_t)(slash - s) : strlen(s);
    const char *b = slash != NULL ? slash + 1 : "simple";
    if (hn == 7 && strncmp(s, "relaxed", 7) == 0) {
        *hrel = true;
    } else if (hn == 6 && strncmp(s, "simple", 6) == 0) {
        *hrel = false;
    } else {
        return false;
    }
    if (strcmp(b, "relaxed") == 0) {
        *brel = true;
    } else if (strcmp(b, "simple") == 0) {
        *brel = false;
    } else {
        return false;
    }
    return true;
}

/* uses_bare_lf tells whether the message's first line ends in LF without CR. */
static bool uses_bare_lf(const uint8_t *msg, size_t len)
{
    const uint8_t *nl = len ? memchr(msg, '\n', len) : NULL;
    return nl != NULL && (nl == msg || nl[-1] != '\r');
}

int dkimctl_sign(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"domain", required_argument, NULL, 'd'},
        {"selector", required_argument, NULL, 's'},
        {"algorithm", required_argument, NULL, 'a'},
        {"canon", required_argument, NULL, 'c'},
        {"headers", required_argument, NULL, 'H'},
        {"identity", required_argument, NULL, 'i'},
        {"body-length", no_argument, NULL, 'l'},
        {"timestamp", required_argument, NULL, 't'},
        {"expire", required_argument, NULL, 'x'},
        {"signature-only", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    const char *key_path = NULL, *alg = NULL;
    bool sig_only = false;
    unsigned long long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key_path = optarg;
            break;
        case 'd':
            o.domain = optarg;
            break;
        case 's':
            o.selector = optarg;
            break;
        case 'a':
            if (strcmp(optarg, "rsa-sha256") != 0 && strcmp(optarg, "ed25519-sha256") != 0) {
                fprintf(stderr, "dkimctl sign: --algorithm is rsa-sha256 or ed25519-sha256%s\n",
                        strcmp(optarg, "rsa-sha1") == 0 ? " (rsa-sha1 is refused: RFC 8301)"
                                                        : "");
                return DKIMCTL_USAGE;
            }
            alg = optarg;
            break;
        case 'c':
            if (!parse_canon(optarg, &o.header_relaxed, &o.body_relaxed)) {
                fprintf(stderr, "dkimctl sign: --canon wants relaxed|simple[/relaxed|simple], "
                                "got '%s'\n", optarg);
                return DKIMCTL_USAGE;
            }
            break;
        case 'H':
            o.headers = optarg;
            break;
        case 'i':
            o.identity = optarg;
            break;
        case 'l':
            o.body_length = true;
            break;
        case 't':
        case 'x':
            if (!dkimctl_parse_uint(optarg, (unsigned long long)INT64_MAX / 2, &v)) {
                fprintf(stderr, "dkimctl sign: '%s' is not a number of seconds\n", optarg);
                return DKIMCTL_USAGE;
            }
            if (c == 't') {
                o.timestamp = (int64_t)v;
            } else {
                o.expire_after = v;
            }
            break;
        case 'S':
            sig_only = true;
            break;
        case 'h':
            fputs(sign_help, stdout);
            return DKIMCTL_OK;
        default:
            fprintf(stderr, "dkimctl sign: see 'dkimctl sign --help'\n");
            return DKIMCTL_USAGE;
        }
    }
    if (key_path == NULL || o.domain == NULL || o.selector == NULL) {
        fprintf(stderr, "dkimctl sign: --key, --domain and --selector are required\n");
        return DKIMCTL_USAGE;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dkimctl sign: give exactly one message FILE ('-' for stdin)\n");
        return DKIMCTL_USAGE;
    }
    const char *file = argv[optind];
    char err[512];
    dkd_signkey *key = dkd_signkey_load(key_path, err, sizeof err);
    if (key == NULL) {
        fprintf(stderr, "dkimctl sign: %s\n", err);
        return DKIMCTL_FAILED;
    }
    const char *key_alg = dkd_signkey_type(key) == DKD_KEY_ED25519 ? "ed25519-sha256"
                                                                    : "rsa-sha256";
    if (alg != NULL && strcmp(alg, key_alg) != 0) {
        fprintf(stderr, "dkimctl sign: --algorithm %s does not fit %s, which signs %s\n", alg,
                key_path, key_alg);
        dkd_signkey_free(key);
        return DKIMCTL_USAGE;
    }
    size_t len;
    uint8_t *msg = strcmp(file, "-") == 0 ? dkimctl_read_stdin(&len) : read_file(file, &len);
    if (msg == NULL) {
        fprintf(stderr, "dkimctl sign: %s: %s\n", file, strerror(errno));
        dkd_signkey_free(key);
        return DKIMCTL_FAILED;
    }
    char *hdr = NULL;
    int rc = dkd_sign(key, &o, msg, len, &hdr, err, sizeof err);
    int status = DKIMCTL_OK;
    if (rc != 0) {
        fprintf(stderr, "dkimctl sign: %s: %s\n", file, err);
        status = DKIMCTL_FAILED;
    } else {
        /* Match the message's line ends: a bare-LF file gets a bare-LF header (the
         * verifier reads bare LF as CRLF, so the signature holds either way). */
        bool lf = uses_bare_lf(msg, len);
        for (const char *p = hdr; *p; p++) {
            if (!(lf && p[0] == '\r' && p[1] == '\n')) {
                putchar(*p);
            }
        }
        if (!sig_only) {
            fwrite(msg, 1, len, stdout);
        }
        if (fflush(stdout) != 0) {
            fprintf(stderr, "dkimctl sign: write: %s\n", strerror(errno));
            status = DKIMCTL_FAILED;
        }
    }
    free(hdr);
    free(msg);
    dkd_signkey_free(key);
    return status;
}
