/*
 * dkimctl_keygen.c - `dkimctl keygen`: make a DKIM key pair, write the private key (PEM,
 * mode 0600, never over an existing file) and print the TXT record to publish.
 */
#include "dkimctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <dkimd/sign.h>

static const char keygen_help[] =
    "usage: dkimctl keygen --domain D --selector S [OPTIONS]\n"
    "\n"
    "Make a key pair for signing mail as D with selector S. The private key is written\n"
    "as PEM to a new file of mode 0600 (an existing file is never overwritten); the TXT\n"
    "record to publish at S._domainkey.D is printed twice: as a zone-file line (the value\n"
    "split into quoted strings of at most 255 bytes) and as the bare value to paste into\n"
    "a DNS provider's form.\n"
    "\n"
    "options:\n"
    "  --domain D           signing domain (d=)\n"
    "  --selector S         selector (s=)\n"
    "  --type rsa|ed25519   key type (default rsa)\n"
    "  --bits N             RSA key size (default 2048; less than 1024 is refused)\n"
    "  --out FILE           private key file (default S.D.pem)\n"
    "  --ttl SECONDS        TTL written in the zone-file line (default 3600)\n"
    "  --json               print one JSON object: private_key, name, record, zone_line\n"
    "  -h, --help           this text\n"
    "\n"
    "examples:\n"
    "  dkimctl keygen --domain example.com --selector mail2026\n"
    "  dkimctl keygen --domain example.com --selector ed1 --type ed25519 --out ed1.pem\n"
    "\n"
    "exit status: 0 done, 1 the key could not be made or written (the file exists, ...),\n"
    "2 usage error.\n";

/* zone_line formats "NAME. TTL IN TXT "..." "..."" with strings of at most 255 bytes. */
static char *zone_line(const char *qname, unsigned long ttl, const char *value)
{
    size_t n = strlen(value);
    size_t cap = strlen(qname) + 64 + n + 4 * (n / 255 + 1);
    char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    size_t w = (size_t)snprintf(out, cap, "%s. %lu IN TXT", qname, ttl);
    for (size_t off = 0; off < n || off == 0; off += 255) {
        size_t take = n - off < 255 ? n - off : 255;
        w += (size_t)snprintf(out + w, cap - w, " \"%.*s\"", (int)take, value + off);
        if (take == 0) {
            break;
        }
    }
    return out;
}

int dkimctl_keygen(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"domain", required_argument, NULL, 'd'},
        {"selector", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},
        {"bits", required_argument, NULL, 'b'},
        {"out", required_argument, NULL, 'o'},
        {"ttl", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *domain = NULL, *selector = NULL, *out = NULL;
    enum dkd_key_type type = DKD_KEY_RSA;
    unsigned long long bits = 2048, ttl = 3600;
    bool json = false, have_bits = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            domain = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 't':
            if (strcmp(optarg, "rsa") == 0) {
                type = DKD_KEY_RSA;
            } else if (strcmp(optarg, "ed25519") == 0) {
                type = DKD_KEY_ED25519;
            } else {
                fprintf(stderr, "dkimctl keygen: --type is rsa or ed25519, not '%s'\n", optarg);
                return DKIMCTL_USAGE;
            }
            break;
        case 'b':
            if (!dkimctl_parse_uint(optarg, 1u << 20, &bits)) {
                fprintf(stderr, "dkimctl keygen: --bits wants a number, got '%s'\n", optarg);
                return DKIMCTL_USAGE;
            }
            have_bits = true;
            break;
        case 'o':
            out = optarg;
            break;
        case 'T':
            if (!dkimctl_parse_uint(optarg, INT32_MAX, &ttl)) {
                fprintf(stderr, "dkimctl keygen: --ttl wants seconds, got '%s'\n", optarg);
                return DKIMCTL_USAGE;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(keygen_help, stdout);
            return DKIMCTL_OK;
        default:
            fprintf(stderr, "dkimctl keygen: see 'dkimctl keygen --help'\n");
            return DKIMCTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dkimctl keygen: unexpected argument '%s'\n", argv[optind]);
        return DKIMCTL_USAGE;
    }
    if (!dkimctl_check_names("keygen", domain, selector)) {
        return DKIMCTL_USAGE;
    }
    if (type == DKD_KEY_RSA && (bits < 1024 || bits > 8192)) {
        fprintf(stderr,
                "dkimctl keygen: RSA keys must be 1024..8192 bits (RFC 8301; 2048 advised), "
                "not %llu\n", bits);
        return DKIMCTL_USAGE;
    }
    if (type == DKD_KEY_ED25519 && have_bits) {
        fprintf(stderr, "dkimctl keygen: --bits applies to rsa keys only\n");
        return DKIMCTL_USAGE;
    }
    char path[1024];
    if (out == NULL) {
        snprintf(path, sizeof path, "%s.%s.pem", selector, domain);
        out = path;
    }
    char err[256];
    dkd_signkey *key = dkd_signkey_generate(type, (unsigned)bits, err, sizeof err);
    if (key == NULL) {
        fprintf(stderr, "dkimctl keygen: %s\n", err);
        return DKIMCTL_FAILED;
    }
    int rc = dkd_signkey_write_pem(key, out);
    if (rc != 0) {
        fprintf(stderr, "dkimctl keygen: %s: %s%s\n", out, strerror(-rc),
                rc == -EEXIST ? " (never overwritten: choose another --out)" : "");
        dkd_signkey_free(key);
        return DKIMCTL_FAILED;
    }
    char *record = dkd_signkey_record(key);
    char qname[512];
    snprintf(qname, sizeof qname, "%s._domainkey.%s", selector, domain);
    char *line = record != NULL ? zone_line(qname, (unsigned long)ttl, record) : NULL;
    if (line == NULL) {
        fprintf(stderr, "dkimctl keygen: out of memory\n");
        free(record);
        dkd_signkey_free(key);
        return DKIMCTL_FAILED;
    }
    if (json) {
        printf("{\"private_key\": ");
        json_cstring(stdout, out);
        printf(", \"type\": \"%s\", \"bits\": %u, \"name\": ",
               type == DKD_KEY_ED25519 ? "ed25519" : "rsa", dkd_signkey_bits(key));
        json_cstring(stdout, qname);
        printf(", \"record\": ");
        json_cstring(stdout, record);
        printf(", \"zone_line\": ");
        json_cstring(stdout, line);
        printf("}\n");
    } else {
        printf("private key (%s %u bits) written to %s (mode 0600)\n\n",
               type == DKD_KEY_ED25519 ? "ed25519" : "rsa", dkd_signkey_bits(key), out);
        printf("publish this TXT record (zone-file line):\n%s\n\n", line);
        printf("or, in a DNS provider's form: name %s, type TXT, value:\n%s\n", qname, record);
    }
    free(line);
    free(record);
    dkd_signkey_free(key);
    return DKIMCTL_OK;
}
