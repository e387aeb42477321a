/*
 * zone_test.c - unit tests for engine/keys/zone.c: loads every keys*.zone of the shared
 * conformance corpora (DKD_SHARED; exit 77 when absent) and checks lookups there
 * (multi-string records, the escaped owner name, the directives, case-insensitivity),
 * then the master-file syntax the corpora do not use ($ORIGIN, relative names,
 * parentheses, escapes, several records at one name) and every load error, on small
 * zones written to a temporary file.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "key.h"

static const char *shared;

/* RFC 8463 A.2 ed25519 key and RFC 6376 C.2 RSA key, for synthetic zones. */
#define ED_P "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define RSA_P                                                                                      \
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOC" \
    "KG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGj" \
    "aNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB"

/* ---- lookups ---- */

typedef struct answer {
    int calls;
    dkd_key *key;
} answer;

static void done(void *arg, dkd_key *key)
{
    answer *a = arg;
    a->calls++;
    dkd_key_unref(a->key);
    a->key = key;
}

/* lookup returns the key for qname (caller unrefs), checking done ran exactly once. */
static dkd_key *lookup(dkd_zone *z, const char *qname)
{
    dkd_keysrc src = dkd_zone_keysrc(z);
    answer a = {0};
    assert_int_equal(src.lookup(src.impl, qname, done, &a), 0);
    assert_int_equal(a.calls, 1);
    assert_non_null(a.key);
    return a.key;
}

static void expect(dkd_zone *z, const char *qname, enum dkd_reason reason, const char *want)
{
    dkd_key *k = lookup(z, qname);
    if (dkd_key_reason(k) != reason) {
        fail_msg("%s: reason %s (%s), want %s", qname, dkd_reason_code(dkd_key_reason(k)),
                 dkd_key_detail(k), dkd_reason_code(reason));
    }
    if (want != NULL && strstr(dkd_key_detail(k), want) == NULL) {
        fail_msg("%s: detail '%s' lacks '%s'", qname, dkd_key_detail(k), want);
    }
    dkd_key_unref(k);
}

static dkd_zone *load_shared(const char *set, const char *file)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/conformance/%s/%s", shared, set, file);
    dkd_zone *z = dkd_zone_load(path, err, sizeof err);
    if (z == NULL) {
        fail_msg("%s", err);
    }
    return z;
}

/* ---- the shared corpora ---- */

static void test_load_every_corpus_zone(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/conformance", shared);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int zones = 0;
    struct dirent *set;
    while ((set = readdir(d)) != NULL) {
        if (set->d_name[0] == '.') {
            continue;
        }
        char sub[4096 + 256];
        snprintf(sub, sizeof sub, "%s/%s", dir, set->d_name);
        DIR *sd = opendir(sub);
        if (sd == NULL) {
            continue;
        }
        struct dirent *f;
        while ((f = readdir(sd)) != NULL) {
            size_t n = strlen(f->d_name);
            if (strncmp(f->d_name, "keys", 4) != 0 || n < 5 ||
                strcmp(f->d_name + n - 5, ".zone") != 0) {
                continue;
            }
            dkd_zone *z = load_shared(set->d_name, f->d_name);
            /* Every corpus zone publishes at least one usable key at a
             * ._domainkey name; spot-check that lookups of unknown names fail. */
            expect(z, "no-such-selector._domainkey.example.invalid", DKD_REASON_KEY_NOT_FOUND,
                   "NXDOMAIN: no record at no-such-selector._domainkey.example.invalid");
            dkd_zone_free(z);
            zones++;
        }
        closedir(sd);
    }
    closedir(d);
    assert_true(zones >= 8);
}

static void test_mailauth_multistring(void **state)
{
    (void)state;
    dkd_zone *z = load_shared("mailauth", "keys.zone");
    /* Three quoted strings concatenated: only then is p= a valid 1024-bit key. */
    dkd_key *k = lookup(z, "test._domainkey.football.example.com");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_type(k), DKD_KEY_RSA);
    assert_int_equal(dkd_key_bits(k), 1024);
    dkd_key_unref(k);
    k = lookup(z, "brisbane._domainkey.football.example.com");
    assert_int_equal(dkd_key_type(k), DKD_KEY_ED25519);
    assert_int_equal(dkd_key_bits(k), 256);
    dkd_key_unref(k);
    dkd_zone_free(z);
}

static void test_dkimpy_escaped_owner(void **state)
{
    (void)state;
    dkd_zone *z = load_shared("dkimpy", "keys.zone");
    /* The file writes test._domainkey.legitimate.com\(.attacker.com. */
    expect(z, "test._domainkey.legitimate.com(.attacker.com", DKD_REASON_OK, NULL);
    expect(z, "test._domainkey.legitimate.com", DKD_REASON_KEY_NOT_FOUND, "NXDOMAIN");
    expect(z, "test._domainkey.legitimate.com\\(.attacker.com", DKD_REASON_KEY_NOT_FOUND, NULL);
    expect(z, "example._domainkey.canonical.com", DKD_REASON_OK, NULL);
    dkd_zone_free(z);

    z = load_shared("dkimpy", "keys-dnsfunc6.zone");
    expect(z, "test._domainkey.football.example.com", DKD_REASON_KEY_SYNTAX, "tag p");
    dkd_zone_free(z);
}

static void test_mail_dkim_directives_and_records(void **state)
{
    (void)state;
    dkd_zone *z = load_shared("mail-dkim", "keys.zone");
    expect(z, "nonexistent._domainkey.messiah.edu", DKD_REASON_KEY_NOT_FOUND,
           "NXDOMAIN: no record at nonexistent._domainkey.messiah.edu");
    expect(z, "test3._domainkey.blackhole.messiah.edu", DKD_REASON_DNS_TIMEOUT,
           "test3._domainkey.blackhole.messiah.edu");
    expect(z, "test3._domainkey.blackhole2.messiah.edu", DKD_REASON_DNS_ERROR,
           "SERVFAIL for test3._domainkey.blackhole2.messiah.edu");
    expect(z, "2023-05-ed25519-does-not-exist._domainkey.wander.science", DKD_REASON_KEY_NOT_FOUND,
           "NXDOMAIN");

    expect(z, "testrevoked._domainkey.messiah.edu", DKD_REASON_KEY_REVOKED, NULL);
    expect(z, "testbad1._domainkey.messiah.edu", DKD_REASON_KEY_VERSION, "DKIM3");
    expect(z, "testbad2._domainkey.messiah.edu", DKD_REASON_KEY_SYNTAX, "syntax error");
    expect(z, "testbad3._domainkey.messiah.edu", DKD_REASON_KEY_TYPE, "foobar");
    expect(z, "testbad4._domainkey.messiah.edu", DKD_REASON_KEY_SERVICE, "chat");
    expect(z, "invalid._domainkey.wander.science", DKD_REASON_KEY_SYNTAX, "got 44");
    /* The record is the two characters "" (escaped quotes in the file). */
    expect(z, "2023-05-ed25519-empty._domainkey.wander.science", DKD_REASON_KEY_SYNTAX, "byte 0");
    expect(z, "2023-05-ed25519._domainkey.wander.science", DKD_REASON_OK, NULL);

    /* Case-insensitive, with or without a trailing dot. */
    dkd_key *k = lookup(z, "TEST1._DomainKey.Messiah.EDU");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_flags(k), DKD_KEY_TESTING);
    assert_int_equal(dkd_key_bits(k), 512);
    dkd_key *k2 = lookup(z, "test1._domainkey.messiah.edu.");
    /* The zone is a cache: both lookups share one parsed key. */
    assert_ptr_equal(k, k2);
    assert_true(atomic_load(&k->refs) >= 3);
    dkd_key_unref(k2);
    dkd_key_unref(k);
    expect(z, "NONEXISTENT._domainkey.MESSIAH.edu", DKD_REASON_KEY_NOT_FOUND,
           "NXDOMAIN: no record at nonexistent._domainkey.messiah.edu");
    expect(z, "TEST3._domainkey.BLACKHOLE2.messiah.edu", DKD_REASON_DNS_ERROR, "SERVFAIL");
    dkd_zone_free(z);
}

/* ---- synthetic zones ---- */

static char tmp_path[64];

static dkd_zone *load_text(const char *text, char *err, size_t err_len)
{
    strcpy(tmp_path, "/tmp/dkd_zone_test_XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    dkd_zone *z = dkd_zone_load(tmp_path, err, err_len);
    unlink(tmp_path);
    return z;
}

static dkd_zone *load_ok(const char *text)
{
    char err[512];
    dkd_zone *z = load_text(text, err, sizeof err);
    if (z == NULL) {
        fail_msg("%s", err);
    }
    return z;
}

/* load_err checks that loading fails with "path:line: " and then want. */
static void load_err(const char *text, unsigned line, const char *want)
{
    char err[512], prefix[128];
    dkd_zone *z = load_text(text, err, sizeof err);
    assert_null(z);
    snprintf(prefix, sizeof prefix, "%s:%u: ", tmp_path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, want) == NULL) {
        fail_msg("error '%s', want '%s%s'", err, prefix, want);
    }
}

static void test_syntax_forms(void **state)
{
    (void)state;
    dkd_zone *z =
        load_ok("$TTL 1h\n"
                "$ORIGIN Example.COM.\n"
                "; relative owner, class before TTL\n"
                "a._domainkey IN 300 TXT \"v=DKIM1; k=ed25519; p=" ED_P "\"\n"
                "; TTL before class, strings split and spread over lines\n"
                "b._domainkey 300 IN TXT ( \"v=DKIM1; k=rsa; \" ; a comment\n"
                "    \"p=" RSA_P "\"\n"
                "    )\n"
                "; neither TTL nor class; a quoted string then an unquoted word\n"
                "c._domainkey TXT \"k=ed25519;\" p=" ED_P "\n"
                "; escapes inside a string: \\\" \\\\ \\DDD\n"
                "d._domainkey TXT \"v=DKIM1; k=\\101d25519; n=\\\"\\\\\\\"; p=" ED_P "\"\n"
                "; the apex, a non-TXT record, a blank-owner continuation\n"
                "@ IN MX 10 mail\n"
                "e._domainkey.other.org. 60 IN A 192.0.2.1\n"
                "\t60 IN TXT \"k=ed25519; p=" ED_P "\"\n"
                "$ORIGIN sub\n"
                "f._domainkey TXT \"k=ed25519; p=" ED_P "\"\n"
                "; @servfail g._domainkey.example.com.\n"
                "; @timeout h._domainkey\n"
                "no-newline-at-end._domainkey TXT \"k=ed25519; p=" ED_P "\"");
    expect(z, "a._domainkey.example.com", DKD_REASON_OK, NULL);
    dkd_key *k = lookup(z, "b._domainkey.example.com");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_bits(k), 1024);
    dkd_key_unref(k);
    expect(z, "c._domainkey.example.com", DKD_REASON_OK, NULL);
    /* \101 is 'e', \" a quote and \\ a backslash (n= is ignored but must parse). */
    k = lookup(z, "d._domainkey.example.com");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_type(k), DKD_KEY_ED25519);
    dkd_key_unref(k);
    expect(z, "example.com", DKD_REASON_KEY_NOT_FOUND, NULL);
    expect(z, "e._domainkey.other.org", DKD_REASON_OK, NULL);
    expect(z, "f._domainkey.sub.example.com", DKD_REASON_OK, NULL);
    expect(z, "g._domainkey.example.com", DKD_REASON_DNS_ERROR, "SERVFAIL");
    /* A relative directive name takes the $ORIGIN in force. */
    expect(z, "h._domainkey.sub.example.com", DKD_REASON_DNS_TIMEOUT, NULL);
    expect(z, "no-newline-at-end._domainkey.sub.example.com", DKD_REASON_OK, NULL);
    dkd_zone_free(z);
}

static void test_owner_escapes(void **state)
{
    (void)state;
    dkd_zone *z = load_ok("s._domainkey.a\\(b\\041c\\;d. TXT \"k=ed25519; p=" ED_P "\"\n"
                          "S2._DOMAINKEY.MiXeD. TXT \"k=ed25519; p=" ED_P "\"\n");
    expect(z, "s._domainkey.a(b)c;d", DKD_REASON_OK, NULL);
    expect(z, "s2._domainkey.mixed", DKD_REASON_OK, NULL);
    expect(z, "S2._domainkey.MIXED.", DKD_REASON_OK, NULL);
    dkd_zone_free(z);
}

static void test_several_records(void **state)
{
    (void)state;
    dkd_zone *z = load_ok("; a stale broken record first, then a good one\n"
                          "x._domainkey.t. TXT \"k=foobar; p=" ED_P "\"\n"
                          "x._domainkey.t. TXT \"k=ed25519; p=" ED_P "\"\n"
                          "; two bad records: the first one's error is reported\n"
                          "y._domainkey.t. TXT \"v=DKIM2; p=" ED_P "\"\n"
                          "y._domainkey.t. TXT \"k=foobar; p=" ED_P "\"\n"
                          "; a directive wins over records at the same name\n"
                          "z._domainkey.t. TXT \"k=ed25519; p=" ED_P "\"\n"
                          "; @servfail z._domainkey.t.\n"
                          "; records for one name need not be adjacent\n"
                          "w._domainkey.t. TXT \"v=DKIM1; p=\"\n"
                          "v._domainkey.t. TXT \"k=ed25519; p=" ED_P "\"\n"
                          "W._domainkey.t. TXT \"v=DKIM1; p=" RSA_P "\"\n");
    dkd_key *k = lookup(z, "x._domainkey.t");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_type(k), DKD_KEY_ED25519);
    dkd_key_unref(k);
    expect(z, "y._domainkey.t", DKD_REASON_KEY_VERSION, "DKIM2");
    expect(z, "z._domainkey.t", DKD_REASON_DNS_ERROR, "SERVFAIL for z._domainkey.t");
    k = lookup(z, "w._domainkey.t");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_bits(k), 1024);
    dkd_key_unref(k);
    expect(z, "v._domainkey.t", DKD_REASON_OK, NULL);
    dkd_zone_free(z);
}

static void test_empty_zone(void **state)
{
    (void)state;
    dkd_zone *z = load_ok("; nothing but comments\n\n   \n$TTL 60\n");
    expect(z, "a._domainkey.b", DKD_REASON_KEY_NOT_FOUND, "NXDOMAIN");
    dkd_zone_free(z);
    z = load_ok("");
    expect(z, "", DKD_REASON_KEY_NOT_FOUND, NULL);
    dkd_zone_free(z);
}

static void test_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(dkd_zone_load("/nonexistent/dir/keys.zone", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/keys.zone"));
    assert_non_null(strstr(err, "No such file"));
    /* A NULL or empty err buffer is allowed. */
    assert_null(dkd_zone_load("/nonexistent/dir/keys.zone", NULL, 0));

    load_err("a. TXT \"ok\"\nb. TXT \"no end\n", 2, "unterminated string");
    load_err("a. TXT \"ok\"\nb. TXT \"no end", 2, "unterminated string");
    load_err("\n\na. TXT ( \"x\"\n\"y\"\n", 3, "'(' never closed");
    load_err("a. TXT \"x\" )\n", 1, "')' without '('");
    load_err("a. TXT \"\\999\"\n", 1, "over 255");
    load_err("a. TXT \"\\12\"\n", 1, "three digits");
    load_err("a. TXT x\\\n", 1, "backslash at end of line");
    load_err("rel TXT \"x\"\n", 1, "relative name 'rel' and no $ORIGIN");
    load_err("@ TXT \"x\"\n", 1, "'@' used before $ORIGIN");
    load_err("\n $TTL 5\n", 2, "record without an owner name");
    load_err("$INCLUDE other.zone\n", 1, "unsupported directive '$INCLUDE'");
    load_err("$TTL\n", 1, "$TTL needs one TTL");
    load_err("$ORIGIN a. b.\n", 1, "$ORIGIN needs one name");
    load_err("a. 300 IN\n", 1, "missing record type");
    load_err("a. IN TXT\n", 1, "TXT record without data");
    load_err("a\\000b. TXT \"x\"\n", 1, "NUL byte in a name");
    load_err("; @nxdomain\n", 1, "@nxdomain needs one name");
    load_err("; @servfail a. b.\n", 1, "@servfail needs one name");
}

int main(void)
{
    shared = getenv("DKD_SHARED");
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/conformance", shared != NULL ? shared : "");
    DIR *d = shared != NULL ? opendir(probe) : NULL;
    if (d == NULL) {
        fprintf(stderr, "DKD_SHARED/conformance not found: skipping\n");
        return 77;
    }
    closedir(d);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_every_corpus_zone),
        cmocka_unit_test(test_mailauth_multistring),
        cmocka_unit_test(test_dkimpy_escaped_owner),
        cmocka_unit_test(test_mail_dkim_directives_and_records),
        cmocka_unit_test(test_syntax_forms),
        cmocka_unit_test(test_owner_escapes),
        cmocka_unit_test(test_several_records),
        cmocka_unit_test(test_empty_zone),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
