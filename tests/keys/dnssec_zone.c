/*
 * dnssec_zone.c - writes a small DNSSEC-signed key zone for the resolver tests.
 *
 * usage: dnssec_zone OUTDIR
 * writes OUTDIR/sec.zone (zone sec.example., Ed25519 / algorithm 15 per RFC 8080) and
 * OUTDIR/sec.anchor (its DNSKEY, a trust anchor for libunbound). Debian's signing tools
 * (ldns-signzone, dnssec-signzone) are not build dependencies, and Python's standard
 * library has no Ed25519, so the few RRSIGs are made here with OpenSSL (RFC 4034 3.1.8.1
 * signing input, canonical order and form). In the zone:
 *   good._domainkey.sec.example  TXT  a usable key, correctly signed  -> secure
 *   bad._domainkey.sec.example   TXT  a usable key whose RRSIG covers other data -> bogus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define ZONE "sec.example."
#define KEYREC "v=DKIM1; k=ed25519; p=2fZ87ldu4Iw2BkvY4osaII5uJf31kXDb0ccMyE/cH/o="
enum { T_SOA = 6, T_NS = 2, T_TXT = 16, T_DNSKEY = 48, TTL = 3600 };

typedef struct bytes {
    uint8_t b[4096];
    size_t n;
} bytes;

static void put(bytes *o, const void *p, size_t n)
{
    if (o->n + n > sizeof o->b) {
        abort();
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put8(bytes *o, unsigned v)
{
    uint8_t c = (uint8_t)v;
    put(o, &c, 1);
}
static void put16(bytes *o, unsigned v)
{
    put8(o, v >> 8);
    put8(o, v);
}
static void put32(bytes *o, uint32_t v)
{
    put16(o, v >> 16);
    put16(o, v & 0xffff);
}

/* name_wire writes a lowercase absolute name ("a.b.") in wire form. */
static void name_wire(bytes *o, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        put8(o, (unsigned)(dot - name));
        put(o, name, (size_t)(dot - name));
        name = dot + 1;
    }
    put8(o, 0);
}

static unsigned labels(const char *name)
{
    unsigned n = 0;
    for (; *name; name++) {
        n += *name == '.';
    }
    return n;
}

static void b64(FILE *f, const uint8_t *p, size_t n)
{
    unsigned char out[8192];
    EVP_EncodeBlock(out, p, (int)n);
    fputs((const char *)out, f);
}

static EVP_PKEY *key;
static uint8_t dnskey_rd[64];
static size_t dnskey_len;
static unsigned keytag;

/* sign writes an RRSIG over the one-record RRset (owner, type, rdata); when lie is set,
 * the signature covers lie's rdata instead (a bogus RRSIG). */
static void sign(FILE *f, const char *owner, unsigned type, const bytes *rdata, const bytes *lie)
{
    bytes in = {.n = 0};
    put16(&in, type);
    put8(&in, 15);
    put8(&in, labels(owner));
    put32(&in, TTL);
    put32(&in, 2051222400u); /* expiration 2035-01-01 */
    put32(&in, 1577836800u); /* inception 2020-01-01 */
    put16(&in, keytag);
    name_wire(&in, ZONE);
    const bytes *rd = lie != NULL ? lie : rdata;
    name_wire(&in, owner);
    put16(&in, type);
    put16(&in, 1);
    put32(&in, TTL);
    put16(&in, (unsigned)rd->n);
    put(&in, rd->b, rd->n);
    uint8_t sig[64];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, in.b, in.n) != 1) {
        abort();
    }
    EVP_MD_CTX_free(ctx);
    static const char *names[] = {
        [T_SOA] = "SOA", [T_NS] = "NS", [T_TXT] = "TXT", [T_DNSKEY] = "DNSKEY"};
    fprintf(f, "%s %d IN RRSIG %s 15 %u %d 20350101000000 20200101000000 %u %s ", owner, TTL,
            names[type], labels(owner), TTL, keytag, ZONE);
    b64(f, sig, siglen);
    fputc('\n', f);
}

static void txt_rdata(bytes *o, const char *s)
{
    put8(o, (unsigned)strlen(s));
    put(o, s, strlen(s));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dnssec_zone OUTDIR\n");
        return 2;
    }
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (kc == NULL || EVP_PKEY_keygen_init(kc) != 1 || EVP_PKEY_keygen(kc, &key) != 1) {
        abort();
    }
    EVP_PKEY_CTX_free(kc);
    uint8_t pub[32];
    size_t publen = sizeof pub;
    EVP_PKEY_get_raw_public_key(key, pub, &publen);
    /* DNSKEY rdata: flags 257 (zone key, SEP), protocol 3, algorithm 15, key. */
    bytes dk = {.n = 0};
    put16(&dk, 257);
    put8(&dk, 3);
    put8(&dk, 15);
    put(&dk, pub, publen);
    memcpy(dnskey_rd, dk.b, dk.n);
    dnskey_len = dk.n;
    uint32_t ac = 0; /* RFC 4034 appendix B */
    for (size_t i = 0; i < dnskey_len; i++) {
        ac += (i & 1) ? dnskey_rd[i] : (uint32_t)dnskey_rd[i] << 8;
    }
    ac += (ac >> 16) & 0xffff;
    keytag = ac & 0xffff;

    char path[1024];
    snprintf(path, sizeof path, "%s/sec.anchor", argv[1]);
    FILE *a = fopen(path, "w");
    snprintf(path, sizeof path, "%s/sec.zone", argv[1]);
    FILE *z = fopen(path, "w");
    if (a == NULL || z == NULL) {
        perror(path);
        return 1;
    }
    fprintf(a, "%s %d IN DNSKEY 257 3 15 ", ZONE, TTL);
    b64(a, pub, publen);
    fputc('\n', a);
    fclose(a);

    fprintf(z, "$ORIGIN %s\n", ZONE);
    bytes soa = {.n = 0};
    name_wire(&soa, "ns." ZONE);
    name_wire(&soa, "hostmaster." ZONE);
    put32(&soa, 1);
    put32(&soa, 3600);
    put32(&soa, 600);
    put32(&soa, 86400);
    put32(&soa, 300);
    fprintf(z, "%s %d IN SOA ns.%s hostmaster.%s 1 3600 600 86400 300\n", ZONE, TTL, ZONE, ZONE);
    sign(z, ZONE, T_SOA, &soa, NULL);
    bytes ns = {.n = 0};
    name_wire(&ns, "ns." ZONE);
    fprintf(z, "%s %d IN NS ns.%s\n", ZONE, TTL, ZONE);
    sign(z, ZONE, T_NS, &ns, NULL);
    fprintf(z, "ns.%s %d IN A 127.0.0.1\n", ZONE, TTL);
    fprintf(z, "%s %d IN DNSKEY 257 3 15 ", ZONE, TTL);
    b64(z, pub, publen);
    fputc('\n', z);
    sign(z, ZONE, T_DNSKEY, &dk, NULL);

    bytes txt = {.n = 0}, other = {.n = 0};
    txt_rdata(&txt, KEYREC);
    txt_rdata(&other, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    fprintf(z, "good._domainkey.%s %d IN TXT \"%s\"\n", ZONE, TTL, KEYREC);
    sign(z, "good._domainkey." ZONE, T_TXT, &txt, NULL);
    fprintf(z, "bad._domainkey.%s %d IN TXT \"%s\"\n", ZONE, TTL, KEYREC);
    sign(z, "bad._domainkey." ZONE, T_TXT, &txt, &other);
    fclose(z);
    EVP_PKEY_free(key);
    return 0;
}
