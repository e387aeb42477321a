/*
 * dkimctl.c - the command-line front end: dispatches to subcommands and holds the small
 * helpers they share (file reading, JSON string output).
 */
#include "dkimctl.h"

#include <dkimd/engine.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommands[] = {
    {"verify", dkimctl_verify, "verify the DKIM signatures of message files"},
#ifdef DKIMCTL_HAVE_KEYGEN
    {"keygen", dkimctl_keygen, "make a key pair and print the TXT record to publish"},
#endif
#ifdef DKIMCTL_HAVE_SIGN
    {"sign", dkimctl_sign, "sign a message (prepends a DKIM-Signature)"},
#endif
#ifdef DKIMCTL_HAVE_CHECK_RECORD
    {"check-record", dkimctl_check_record, "look up a selector's key record and lint it"},
#endif
#ifdef DKIMCTL_HAVE_EXPLAIN
    {"explain", dkimctl_explain, "explain in plain words why a message passes or fails"},
#endif
#ifdef DKIMCTL_HAVE_STATS
    {"stats", dkimctl_stats, "show a running dkimd's counters"},
#endif
};

static void usage(FILE *out)
{
    fprintf(out, "usage: dkimctl COMMAND [OPTIONS] ...\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    }
    fprintf(out, "\n'dkimctl COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return DKIMCTL_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return DKIMCTL_OK;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0) {
            return subcommands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "dkimctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return DKIMCTL_USAGE;
}

static uint8_t *read_stream(FILE *f, size_t *len);

uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    uint8_t *buf = read_stream(f, len);
    fclose(f);
    return buf;
}

uint8_t *dkimctl_read_stdin(size_t *len)
{
    return read_stream(stdin, len);
}

bool dkimctl_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

bool dkimctl_name_valid(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63) {
                return false;
            }
        } else {
            return false;
        }
    }
    return label > 0;
}

/* read_stream reads f to its end into a malloc'd buffer (the caller closes f). */
static uint8_t *read_stream(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf != NULL && ferror(f)) {
        free(buf);
        buf = NULL;
        errno = EIO;
    }
    *len = n;
    return buf;
}

/* utf8_len returns the length of the valid UTF-8 sequence at p, or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80) {
        return 1;
    }
    size_t len;
    uint32_t cp;
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

void json_string(FILE *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            i++;
        } else if (c == '\n') {
            fputs("\\n", out);
            i++;
        } else if (c == '\r') {
            fputs("\\r", out);
            i++;
        } else if (c == '\t') {
            fputs("\\t", out);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, out);
            i++;
        } else {
            size_t len = utf8_len(p + i, n - i);
            if (len == 0) {
                fprintf(out, "\\u%04x", c);
                i++;
            } else {
                fwrite(p + i, 1, len, out);
                i += len;
            }
        }
    }
    fputc('"', out);
}

void json_cstring(FILE *out, const char *s)
{
    json_string(out, s, strlen(s));
}

void dkimctl_keysrc_opts_init(dkimctl_keysrc_opts *o)
{
    memset(o, 0, sizeof *o);
    dkd_resolver_config_init(&o->rc);
    /* One command-line run looks each key up once or twice: a small cache will do. */
    o->rc.cache_entries = 1024;
}

int dkimctl_keysrc_option(dkimctl_keysrc_opts *o, const char *cmd, int c, const char *arg)
{
    unsigned long long v;
    switch (c) {
    case 0x100:
        o->zone_path = arg;
        return 1;
    case 0x101:
        if (o->rc.nforwarders == DKD_RESOLVER_MAX_FORWARDERS) {
            fprintf(stderr, "dkimctl %s: at most %d --resolver\n", cmd,
                    DKD_RESOLVER_MAX_FORWARDERS);
            return -1;
        }
        if (o->rc.mode == DKD_RESOLVER_RESOLV_CONF) {
            fprintf(stderr, "dkimctl %s: --resolver and --resolver-conf exclude each other\n",
                    cmd);
            return -1;
        }
        o->rc.forwarders[o->rc.nforwarders++] = arg;
        o->rc.mode = DKD_RESOLVER_FORWARD;
        o->use_dns = true;
        return 1;
    case 0x102:
        if (o->rc.mode == DKD_RESOLVER_FORWARD) {
            fprintf(stderr, "dkimctl %s: --resolver and --resolver-conf exclude each other\n",
                    cmd);
            return -1;
        }
        o->rc.mode = DKD_RESOLVER_RESOLV_CONF;
        o->use_dns = true;
        return 1;
    case 0x103:
        if (o->rc.noptions == DKD_RESOLVER_MAX_OPTIONS || strchr(arg, ':') == NULL) {
            fprintf(stderr, "dkimctl %s: --resolver-option wants 'NAME: VALUE' (at most %d), "
                            "got '%s'\n", cmd, DKD_RESOLVER_MAX_OPTIONS, arg);
            return -1;
        }
        o->rc.options[o->rc.noptions++] = arg;
        return 1;
    case 0x104:
        if (!dkimctl_parse_uint(arg, 600000, &v) || v == 0) {
            fprintf(stderr, "dkimctl %s: --dns-timeout wants milliseconds (1-600000), got "
                            "'%s'\n", cmd, arg);
            return -1;
        }
        o->rc.query_timeout_ms = (unsigned)v;
        return 1;
    default:
        return 0;
    }
}

bool dkimctl_keys_open(const dkimctl_keysrc_opts *o, const char *cmd, dkimctl_keys *k)
{
    memset(k, 0, sizeof *k);
    if (o->zone_path != NULL && o->use_dns) {
        fprintf(stderr, "dkimctl %s: --zone and --resolver/--resolver-conf exclude each other\n",
                cmd);
        return false;
    }
    char err[512];
    if (o->zone_path != NULL) {
        k->zone = dkd_zone_load(o->zone_path, err, sizeof err);
        if (k->zone == NULL) {
            fprintf(stderr, "dkimctl %s: %s\n", cmd, err);
            return false;
        }
        k->src = dkd_zone_keysrc(k->zone);
        return true;
    }
    k->resolver = dkd_resolver_new(&o->rc, err, sizeof err);
    if (k->resolver == NULL) {
        fprintf(stderr, "dkimctl %s: %s\n", cmd, err);
        return false;
    }
    k->src = dkd_resolver_keysrc_blocking(k->resolver);
    return true;
}

void dkimctl_keys_close(dkimctl_keys *k)
{
    dkd_resolver_free(k->resolver);
    dkd_zone_free(k->zone);
    memset(k, 0, sizeof *k);
}

void json_sig_fields(FILE *out, const dkd_sig_result *r)
{
    fprintf(out, "\"d\": ");
    json_cstring(out, r->d);
    fprintf(out, ", \"s\": ");
    json_cstring(out, r->s);
    fprintf(out, ", \"i\": ");
    json_cstring(out, r->i);
    fprintf(out, ", \"a\": ");
    json_cstring(out, r->a);
    fprintf(out, ", \"result\": \"%s\", \"reason\": \"%s\", \"explanation\": ",
            dkd_result_name(r->result), dkd_reason_code(r->reason));
    json_cstring(out, dkd_reason_explanation(r->reason));
    fprintf(out, ", \"detail\": ");
    json_cstring(out, r->detail);
    fprintf(out, ", \"fix\": ");
    json_cstring(out, r->result == DKD_RESULT_PASS ? "" : dkd_reason_fix(r->reason));
    fprintf(out, ", \"key_bits\": %u, \"key_testing\": %s, \"key_stale\": %s, \"dnssec\": \"%s\"",
            r->key_bits, r->key_testing ? "true" : "false", r->key_stale ? "true" : "false",
            r->dnssec_secure ? "secure" : "insecure");
    fprintf(out, ", \"has_l\": %s", r->has_l ? "true" : "false");
    if (r->has_l) {
        fprintf(out, ", \"body_signed\": %" PRIu64 ", \"body_total\": %" PRIu64, r->body_signed,
                r->body_total);
    }
}

bool dkimctl_check_names(const char *cmd, const char *domain, const char *selector)
{
    if (domain == NULL || selector == NULL) {
        fprintf(stderr, "dkimctl %s: --domain and --selector are required\n", cmd);
        return false;
    }
    if (!dkimctl_name_valid(domain) || !dkimctl_name_valid(selector)) {
        fprintf(stderr, "dkimctl %s: '%s' is not a valid name\n", cmd,
                dkimctl_name_valid(domain) ? selector : domain);
        return false;
    }
    return true;
}
