/*
 * bench_engine.cc - Google Benchmark microbenchmarks of every verification stage.
 *
 * Each stage is timed alone on realistic input, next to the hardware operation it is
 * bounded by: header splitting, DKIM-Signature tag parsing, key record parsing, header
 * and body canonicalization fed into SHA-256 (bytes/s, beside plain SHA-256 of the same
 * bytes), RSA-2048/4096 and Ed25519 verification with an already parsed key (OpenSSL
 * directly with a reused context = the limit; the way verify.c calls it = the engine
 * path: a fresh context per call), and whole in-process verification of corpus
 * messages per size bucket.
 *
 * The engine-private stages are reached through stages.c (their headers are C only).
 * Inputs are built in set-up, outside the timed loops. Keys come from bench/keys/ *.pem
 * (DKD_BENCH_KEYS, the source dir, set by meson). The whole-message benchmarks read a
 * corpus made by bench/gen-corpus from $DKD_BENCH_CORPUS (default: the build dir's
 * tmp/corpus); without one they report an error instead of a figure.
 *
 * Run with release flags: meson setup --buildtype=release; ninja; bench/bench_engine.
 */
#include <benchmark/benchmark.h>

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <dkimd/engine.h>

#include "sha256_evp_bench.h"
#include "stages.h"

namespace
{

// ---- inputs ----

const char kHeaderBlock[] =
    "Received: from out7.sender0.example (out7.sender0.example [113.224.84.22])\r\n"
    "\tby mx6.receiver.example (Postfix) with ESMTPS id 8D0442E800\r\n"
    "\tfor <user954@receiver.example>; Mon, 24 Nov 2025 16:10:02 +0000\r\n"
    "Received: from smtp16.sender1.example (smtp16.sender1.example [134.3.117.217])\r\n"
    "\tby mx8.receiver.example (Postfix) with ESMTPS id 5CC32BBC02\r\n"
    "\tfor <user50@receiver.example>; Mon, 24 Nov 2025 16:10:16 +0000\r\n"
    "Received: from smtp4.sender2.example (smtp4.sender2.example [31.118.176.4])\r\n"
    "\tby mx4.receiver.example (Postfix) with ESMTPS id 6FA66DF303\r\n"
    "\tfor <user223@receiver.example>; Mon, 24 Nov 2025 16:10:23 +0000\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=bench.example.com;\r\n"
    " i=@bench.example.com; q=dns/txt; s=rsa2048; t=1764000000; h=from : to\r\n"
    " : subject : date : message-id : mime-version : content-type :\r\n"
    " list-unsubscribe; bh=kim6SbQExvAf2tm5W2yG8dqJRe/EU9yQOpI0u0siuyM=;\r\n"
    " b=ayRVAGyk3l80gIG2gcEVAXMysRvHUvhYP0JA0vt+oho/f6W5FML0PhQBoh2xVWqsN0/XJ\r\n"
    " kba/feXvSDSue3XMjyJrVJ4eFLtlwrkrzqLCOayfrAWbK9M2edrsO174RFmkmXrVBRwMSHh\r\n"
    " nG6SlvLomhvi9VSUA/LKlIpMVo3zJ8unt2GrEw5gle1HIenIdj+LRKnDE6tUYlKARKRjfjZ\r\n"
    " 3AMVfxVx8QWlG35M+FvKTDt5poYbIiBYRnmE4K1khnK6g4nPC//AFLkftulDecUlNTcw+BM\r\n"
    " aaFZ8+2rO96IAEiAgiIuQvI71naXmMC0o6NC7gGFAai28hQGTs1oD+2OS/9x8yS1zh1LbA2\r\n"
    " wnlh9+Btec3aYV4uKtNp0OFZU/ni4E/z/ADqBwMXJDl1dFjPBBly7mZufRKLN8Vjyo8bnWw\r\n"
    " rqhs2kkr9pyLU1QjHaSYCeuock7S9eJPZ6e5y05plKphdaZz8gt947y71hBKUFFxF7dv6sW\r\n"
    " Qg/GJdTaIzrtOjCpSBO/keW3VpwvQ4vBfqYDZWr0+C0KXAFKfA9kolFwMayLSH1nJOeyKgN\r\n"
    " 6wA7yS4RR6H+0rQB78u//XoA1eGIN2MNDBg9MiMvlIWGXvMfRlGBxc92LTB5hpudtB/U9eZ\r\n"
    " VBFfaIM/aPBESNsQiK0cr7rrBLdoYSpr+ByjdmvCFGzKGY=\r\n"
    "Return-Path: <bounce-2@bench.example.com>\r\n"
    "From: Heidi Larsen <heidi@bench.example.com>\r\n"
    "To: Frank Ruiz <frank@receiver.example>\r\n"
    "Subject: Quarterly capacity report for the  MX fleet\r\n"
    "Date: Mon, 24 Nov 2025 16:00:02 +0000\r\n"
    "Message-ID: <mixed.2k.2.a156e447bd87@bench.example.com>\r\n"
    "List-Unsubscribe: <mailto:unsub-2@bench.example.com>,\r\n"
    " <https://bench.example.com/unsubscribe?id=5ae3c0ffee0ddba11>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "X-Mailer: Thunderbird 128.4\r\n"
    "\r\n";

// English-like text wrapped at 60-78 columns with some long lines, trailing whitespace
// and doubled spaces (the shapes the relaxed canonicalizer works on), or base64 lines as
// attachments carry; fixed seed, so every run hashes the same bytes.
std::string make_body(size_t size, bool base64)
{
    static const char *const words[] = {
        "the",      "of",     "and",      "to",           "a",        "in",       "is",
        "it",       "you",    "that",     "was",          "for",      "on",       "are",
        "with",     "as",     "capacity", "report",       "quarter",  "invoice",  "meeting",
        "delivery", "server", "customer", "subscription", "December", "forecast", "mail"};
    std::mt19937 rng(42);
    std::string out;
    if (base64) {
        static const char alpha[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        while (out.size() < size) {
            for (int i = 0; i < 76; i++) {
                out += alpha[rng() % 64];
            }
            out += "\r\n";
        }
        return out;
    }
    while (out.size() < size) {
        size_t width = 60 + rng() % 19;
        if (rng() % 12 == 0) {
            width = 200; // a long line, as some clients send
        }
        std::string line;
        while (line.size() < width) {
            line += words[rng() % (sizeof words / sizeof words[0])];
            line += (rng() % 10 == 0) ? "  " : " ";
        }
        line.pop_back();
        if (rng() % 16 == 0) {
            line += " \t";
        }
        out += line + "\r\n";
        if (rng() % 6 == 0) {
            out += "\r\n";
        }
    }
    return out;
}

// ---- header block and tags ----

void BM_HeaderSplit(benchmark::State &state)
{
    std::string block(kHeaderBlock);
    const uint8_t *p = reinterpret_cast<const uint8_t *>(block.data());
    for (auto _ : state) {
        size_t count = bench_hdr_split(p, block.size(), 1000);
        benchmark::DoNotOptimize(count);
    }
    if (bench_hdr_split(p, block.size(), 1000) == 0) {
        state.SkipWithError("the sample header block does not split");
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(block.size()));
}
BENCHMARK(BM_HeaderSplit);

void BM_SigParse(benchmark::State &state)
{
    std::string block(kHeaderBlock);
    bench_sig *sig = bench_sig_new(reinterpret_cast<const uint8_t *>(block.data()), block.size());
    if (sig == nullptr || !bench_sig_parse(sig)) {
        state.SkipWithError("the sample DKIM-Signature does not parse");
        bench_sig_free(sig);
        return;
    }
    for (auto _ : state) {
        bool ok = bench_sig_parse(sig);
        benchmark::DoNotOptimize(ok);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bench_sig_value_len(sig)));
    bench_sig_free(sig);
}
BENCHMARK(BM_SigParse);

// ---- keys ----

struct TestKey {
    EVP_PKEY *pkey = nullptr;
    std::string record; // the DKIM key record publishing its public half
};

std::string b64(const unsigned char *p, size_t n)
{
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(&out[0]), p, int(n));
    out.resize(size_t(len));
    return out;
}

TestKey load_key(const char *name)
{
    TestKey k;
    std::string path = std::string(DKD_BENCH_KEYS) + "/" + name + ".pem";
    FILE *f = fopen(path.c_str(), "r");
    if (f == nullptr) {
        return k;
    }
    k.pkey = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    fclose(f);
    if (k.pkey == nullptr) {
        return k;
    }
    if (EVP_PKEY_is_a(k.pkey, "ED25519")) {
        unsigned char raw[32];
        size_t n = sizeof raw;
        EVP_PKEY_get_raw_public_key(k.pkey, raw, &n);
        k.record = "v=DKIM1; k=ed25519; p=" + b64(raw, n);
    } else {
        unsigned char *der = nullptr;
        int n = i2d_PUBKEY(k.pkey, &der);
        k.record = "v=DKIM1; k=rsa; p=" + b64(der, size_t(n));
        OPENSSL_free(der);
    }
    return k;
}

void BM_KeyRecordParse(benchmark::State &state, const char *name)
{
    TestKey k = load_key(name);
    if (k.pkey == nullptr) {
        state.SkipWithError("cannot read the key under bench/keys");
        return;
    }
    for (auto _ : state) {
        dkd_key *key = dkd_key_from_record(reinterpret_cast<const uint8_t *>(k.record.data()),
                                           k.record.size());
        benchmark::DoNotOptimize(key);
        dkd_key_unref(key);
    }
    EVP_PKEY_free(k.pkey);
}
BENCHMARK_CAPTURE(BM_KeyRecordParse, rsa2048, "rsa2048");
BENCHMARK_CAPTURE(BM_KeyRecordParse, ed25519, "ed25519");

// ---- signature verification with a parsed key ----

struct SignedDigest {
    TestKey k;
    dkd_key *key = nullptr; // parsed from the record, as the cache holds it
    unsigned char digest[32];
    std::vector<unsigned char> sig;
    bool ed25519 = false;
};

bool make_signed(const char *name, SignedDigest *s)
{
    s->k = load_key(name);
    if (s->k.pkey == nullptr) {
        return false;
    }
    s->ed25519 = EVP_PKEY_is_a(s->k.pkey, "ED25519");
    for (size_t i = 0; i < sizeof s->digest; i++) {
        s->digest[i] = static_cast<unsigned char>(i * 7 + 1);
    }
    size_t n = 0;
    bool ok;
    if (s->ed25519) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = EVP_DigestSignInit(md, nullptr, nullptr, nullptr, s->k.pkey) == 1 &&
             EVP_DigestSign(md, nullptr, &n, s->digest, sizeof s->digest) == 1;
        s->sig.resize(n);
        ok = ok && EVP_DigestSign(md, s->sig.data(), &n, s->digest, sizeof s->digest) == 1;
        EVP_MD_CTX_free(md);
    } else {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(s->k.pkey, nullptr);
        ok = EVP_PKEY_sign_init(pc) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
             EVP_PKEY_sign(pc, nullptr, &n, s->digest, sizeof s->digest) == 1;
        s->sig.resize(n);
        ok = ok && EVP_PKEY_sign(pc, s->sig.data(), &n, s->digest, sizeof s->digest) == 1;
        EVP_PKEY_CTX_free(pc);
    }
    s->sig.resize(n);
    s->key = dkd_key_from_record(reinterpret_cast<const uint8_t *>(s->k.record.data()),
                                 s->k.record.size());
    return ok && s->key != nullptr && dkd_key_reason(s->key) == DKD_REASON_OK;
}

void free_signed(SignedDigest *s)
{
    dkd_key_unref(s->key);
    EVP_PKEY_free(s->k.pkey);
}

// The limit: one verify with everything reusable set up once (RSA: a context already
// initialised with padding and digest; Ed25519: one EVP_MD_CTX).
void BM_VerifyLimit(benchmark::State &state, const char *name)
{
    SignedDigest s;
    if (!make_signed(name, &s)) {
        state.SkipWithError("cannot set up the key");
        return;
    }
    EVP_PKEY *pub = bench_key_pkey(s.key);
    if (s.ed25519) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        for (auto _ : state) {
            EVP_MD_CTX_reset(md);
            int ok =
                EVP_DigestVerifyInit_ex(md, nullptr, nullptr, nullptr, nullptr, pub, nullptr) ==
                    1 &&
                EVP_DigestVerify(md, s.sig.data(), s.sig.size(), s.digest, sizeof s.digest) == 1;
            benchmark::DoNotOptimize(ok);
        }
        EVP_MD_CTX_free(md);
    } else {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(nullptr, pub, nullptr);
        EVP_PKEY_verify_init(pc);
        EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING);
        EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256());
        for (auto _ : state) {
            int ok = EVP_PKEY_verify(pc, s.sig.data(), s.sig.size(), s.digest, sizeof s.digest);
            benchmark::DoNotOptimize(ok);
        }
        EVP_PKEY_CTX_free(pc);
    }
    free_signed(&s);
}
BENCHMARK_CAPTURE(BM_VerifyLimit, rsa2048, "rsa2048");
BENCHMARK_CAPTURE(BM_VerifyLimit, rsa4096, "rsa4096");
BENCHMARK_CAPTURE(BM_VerifyLimit, ed25519, "ed25519");

// A fresh EVP_PKEY_CTX per RSA verify (and EVP_DigestVerifyInit_ex per Ed25519 verify):
// what verify.c did per signature before 679b81f. verify.c now keeps RSA contexts for its
// last keys, i.e. BM_VerifyLimit; this one stays to show what a context per call costs.
void BM_VerifyEnginePath(benchmark::State &state, const char *name)
{
    SignedDigest s;
    if (!make_signed(name, &s)) {
        state.SkipWithError("cannot set up the key");
        return;
    }
    EVP_PKEY *pub = bench_key_pkey(s.key);
    EVP_MD *sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    for (auto _ : state) {
        bool ok;
        if (s.ed25519) {
            EVP_MD_CTX_reset(md);
            ok = EVP_DigestVerifyInit_ex(md, nullptr, nullptr, nullptr, nullptr, pub, nullptr) ==
                     1 &&
                 EVP_DigestVerify(md, s.sig.data(), s.sig.size(), s.digest, sizeof s.digest) == 1;
        } else {
            EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(nullptr, pub, nullptr);
            ok = pc != nullptr && EVP_PKEY_verify_init(pc) == 1 &&
                 EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
                 EVP_PKEY_CTX_set_signature_md(pc, sha256) == 1 &&
                 EVP_PKEY_verify(pc, s.sig.data(), s.sig.size(), s.digest, sizeof s.digest) == 1;
            EVP_PKEY_CTX_free(pc);
        }
        benchmark::DoNotOptimize(ok);
    }
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha256);
    free_signed(&s);
}
BENCHMARK_CAPTURE(BM_VerifyEnginePath, rsa2048, "rsa2048");
BENCHMARK_CAPTURE(BM_VerifyEnginePath, rsa4096, "rsa4096");
BENCHMARK_CAPTURE(BM_VerifyEnginePath, ed25519, "ed25519");

// ---- canonicalization + hash ----

void BM_Sha256(benchmark::State &state)
{
    sha256_evp_loop(state, make_body(size_t(state.range(0)), state.range(1) != 0));
}

void body_canon_bench(benchmark::State &state, bool relaxed)
{
    std::string body = make_body(size_t(state.range(0)), state.range(1) != 0);
    EVP_MD *sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[32];
    for (auto _ : state) {
        EVP_DigestInit_ex(md, sha256, nullptr);
        bench_body_canon(reinterpret_cast<const uint8_t *>(body.data()), body.size(), relaxed, md);
        EVP_DigestFinal_ex(md, out, nullptr);
        benchmark::DoNotOptimize(out);
    }
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha256);
    // Input bytes, so the figure compares directly with BM_Sha256 on the same body.
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
}

void BM_BodyRelaxedSha256(benchmark::State &state)
{
    body_canon_bench(state, true);
}

void BM_BodySimpleSha256(benchmark::State &state)
{
    body_canon_bench(state, false);
}

// Args: {body bytes, base64 (1) or text (0)}.
#define BODY_ARGS                                                                                  \
    Args({2048, 0})->Args({20480, 0})->Args({204800, 0})->Args({20480, 1})->Args({204800, 1})
BENCHMARK(BM_Sha256)->BODY_ARGS;
BENCHMARK(BM_BodyRelaxedSha256)->BODY_ARGS;
BENCHMARK(BM_BodySimpleSha256)->BODY_ARGS;

void header_canon_bench(benchmark::State &state, bool relaxed)
{
    std::string block(kHeaderBlock);
    bench_hdr *h = bench_hdr_new(reinterpret_cast<const uint8_t *>(block.data()), block.size());
    EVP_MD *sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[32];
    for (auto _ : state) {
        EVP_DigestInit_ex(md, sha256, nullptr);
        // Every field, as a signature with a long h= list would cover them.
        bench_hdr_canon(h, relaxed, md);
        EVP_DigestFinal_ex(md, out, nullptr);
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bench_hdr_bytes(h)));
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha256);
    bench_hdr_free(h);
}

void BM_HeaderRelaxedSha256(benchmark::State &state)
{
    header_canon_bench(state, true);
}
void BM_HeaderSimpleSha256(benchmark::State &state)
{
    header_canon_bench(state, false);
}
BENCHMARK(BM_HeaderRelaxedSha256);
BENCHMARK(BM_HeaderSimpleSha256);

// ---- whole messages from the corpus ----

struct Corpus {
    std::vector<std::string> msgs;
    size_t bytes = 0;
};

std::string corpus_root()
{
    const char *env = getenv("DKD_BENCH_CORPUS");
    return env != nullptr ? env : DKD_BENCH_DEFAULT_CORPUS;
}

bool load_corpus(const std::string &dir, Corpus *c)
{
    DIR *d = opendir(dir.c_str());
    if (d == nullptr) {
        return false;
    }
    std::vector<std::string> names;
    while (struct dirent *e = readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 4 && n.compare(n.size() - 4, 4, ".eml") == 0) {
            names.push_back(n);
        }
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string &n : names) {
        FILE *f = fopen((dir + "/" + n).c_str(), "rb");
        if (f == nullptr) {
            return false;
        }
        std::string data;
        char buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
            data.append(buf, got);
        }
        fclose(f);
        c->bytes += data.size();
        c->msgs.push_back(std::move(data));
    }
    return !c->msgs.empty();
}

// One iteration verifies every message of the bucket once; the zone source hands out
// keys parsed at load, i.e. a warm key cache.
void BM_VerifyCorpus(benchmark::State &state, const char *set_bucket)
{
    std::string root = corpus_root();
    Corpus c;
    if (!load_corpus(root + "/" + set_bucket, &c)) {
        state.SkipWithError("no corpus: run bench/gen-corpus and set DKD_BENCH_CORPUS");
        return;
    }
    char err[256];
    dkd_zone *zone = dkd_zone_load((root + "/keys.zone").c_str(), err, sizeof err);
    if (zone == nullptr) {
        state.SkipWithError(err);
        return;
    }
    dkd_keysrc src = dkd_zone_keysrc(zone);
    dkd_config cfg;
    dkd_config_init(&cfg);
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_msg *m = dkd_msg_new(eng);
    size_t passes = 0;
    for (auto _ : state) {
        for (const std::string &msg : c.msgs) {
            dkd_msg_reset(m);
            int rc = dkd_verify_message(m, &src, reinterpret_cast<const uint8_t *>(msg.data()),
                                        msg.size(), static_cast<int64_t>(time(nullptr)));
            benchmark::DoNotOptimize(rc);
        }
        passes++;
    }
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    if (n == 0 || r[0].result != DKD_RESULT_PASS) {
        state.SkipWithError("the last corpus message did not pass");
    }
    state.SetBytesProcessed(int64_t(passes * c.bytes));
    state.SetItemsProcessed(int64_t(passes * c.msgs.size()));
    state.counters["msgs"] = double(c.msgs.size());
    dkd_msg_free(m);
    dkd_engine_free(eng);
    dkd_zone_free(zone);
}
BENCHMARK_CAPTURE(BM_VerifyCorpus, rsa2048_2k, "rsa2048/2k")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VerifyCorpus, rsa2048_20k, "rsa2048/20k")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VerifyCorpus, rsa2048_200k, "rsa2048/200k")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VerifyCorpus, mixed_2k, "mixed/2k")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VerifyCorpus, mixed_20k, "mixed/20k")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VerifyCorpus, mixed_200k, "mixed/200k")->Unit(benchmark::kMillisecond);

// Whole-message scaling: threads share one engine and zone, each with its own dkd_msg,
// as daemon workers do. Real time, since the question is messages per wall second.
struct Shared {
    Corpus c;
    dkd_zone *zone = nullptr;
    dkd_engine *eng = nullptr;
    bool ok = false;
};

Shared *shared_20k()
{
    static Shared *s = [] {
        auto *sh = new Shared;
        std::string root = corpus_root();
        char err[256];
        sh->ok = load_corpus(root + "/rsa2048/20k", &sh->c) &&
                 (sh->zone = dkd_zone_load((root + "/keys.zone").c_str(), err, sizeof err));
        dkd_config cfg;
        dkd_config_init(&cfg);
        sh->eng = dkd_engine_new(&cfg);
        return sh;
    }();
    return s;
}

void BM_VerifyThreads20k(benchmark::State &state)
{
    Shared *sh = shared_20k();
    if (!sh->ok) {
        state.SkipWithError("no corpus: run bench/gen-corpus and set DKD_BENCH_CORPUS");
        return;
    }
    dkd_keysrc src = dkd_zone_keysrc(sh->zone);
    dkd_msg *m = dkd_msg_new(sh->eng);
    size_t i = size_t(state.thread_index()) * 7, done = 0;
    for (auto _ : state) {
        const std::string &msg = sh->c.msgs[i++ % sh->c.msgs.size()];
        dkd_msg_reset(m);
        int rc =
            dkd_verify_message(m, &src, reinterpret_cast<const uint8_t *>(msg.data()), msg.size(), static_cast<int64_t>(time(nullptr)));
        benchmark::DoNotOptimize(rc);
        done++;
    }
    state.SetItemsProcessed(int64_t(done));
    dkd_msg_free(m);
}
BENCHMARK(BM_VerifyThreads20k)
    ->ThreadRange(1, int(std::max(2u, std::thread::hardware_concurrency())))
    ->UseRealTime();

} // namespace

BENCHMARK_MAIN();
