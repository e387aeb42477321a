/*
 * bench_canon_simd.cc - body canonicalization (+ SHA-256) per implementation: the scalar
 * reference, SSE2 and AVX2 (issue 7), beside plain SHA-256 over the same input bytes.
 *
 * Bodies (fixed seed, built outside the timed loop), 2 KB / 20 KB / 200 KB:
 *   text   - bench_engine.cc's make_body shape: prose wrapped at 60-78 columns, long
 *            lines, a doubled space every ~10 words, " \t" before 1 line end in 16, a
 *            blank line after 1 line in 6 (many things for relaxed to fix);
 *   clean  - the same prose with single spaces and no trailing WSP (what most clients
 *            send: already canonical);
 *   base64 - 76-column base64 lines (attachments);
 *   lf     - clean prose with bare LF line ends (a body handed over with Unix newlines);
 *   html   - indented markup: runs of 2-12 spaces at line starts.
 * Figures are input bytes/s. Which hash ran is in the row's name:
 *   BM_Sha256Evp          - OpenSSL's EVP SHA-256 alone over the body: the hardware limit,
 *                           the baseline every other row is read against;
 *   BM_Sha256ShaNi        - our SHA-NI SHA-256 (engine/core/sha256.c) alone, same bytes;
 *   BM_CanonSha256Evp     - canonicalization into OpenSSL's SHA-256 (a sink per batch);
 *   BM_CanonSha256ShaNi   - canonicalization into our SHA-256, what verify.c runs for
 *                           sha256 on a SHA-NI CPU: the AVX2/AVX-512 relaxed rewriters
 *                           compress their output inside their loop (fused);
 *   BM_CanonOnly          - a counting sink, no hash: the canonicalization cost alone;
 *   BM_SimpleCanonSha256* - the same for simple.
 * Run from a --buildtype=release build:
 *   taskset -c 1 build-rel/bench/bench_canon_simd --benchmark_min_time=0.1 \
 *       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
 */
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <openssl/evp.h>

#include "canon_fuse_stages.h"
#include "canon_simd_stages.h"
#include "sha256_evp_bench.h"
#include "sha256.h"

namespace
{

enum Kind { kText, kClean, kBase64, kLf, kHtml };

std::string make_body(size_t size, Kind kind)
{
    static const char *const words[] = {
        "the",      "of",     "and",      "to",           "a",        "in",       "is",
        "it",       "you",    "that",     "was",          "for",      "on",       "are",
        "with",     "as",     "capacity", "report",       "quarter",  "invoice",  "meeting",
        "delivery", "server", "customer", "subscription", "December", "forecast", "mail"};
    std::mt19937 rng(42);
    std::string out;
    if (kind == kBase64) {
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
    const char *eol = kind == kLf ? "\n" : "\r\n";
    while (out.size() < size) {
        std::string line;
        if (kind == kHtml) {
            line.assign(2 + rng() % 11, ' ');
            line += "<td class=\"cell\">";
        }
        size_t width = 60 + rng() % 19;
        if (rng() % 12 == 0) {
            width = 200;
        }
        while (line.size() < width) {
            line += words[rng() % (sizeof words / sizeof words[0])];
            line += (kind == kText && rng() % 10 == 0) ? "  " : " ";
        }
        line.pop_back();
        if (kind == kText && rng() % 16 == 0) {
            line += " \t";
        }
        out += line + eol;
        if (rng() % 6 == 0) {
            out += eol;
        }
    }
    return out;
}

void BM_Sha256Evp(benchmark::State &state)
{
    sha256_evp_loop(state, make_body(size_t(state.range(0)), Kind(state.range(1))));
}

void BM_Sha256ShaNi(benchmark::State &state)
{
#ifndef DKD_SHA256_SHANI
    state.SkipWithError("no SHA-NI code on this architecture");
#else
    if (!dkd__sha256_available()) {
        state.SkipWithError("this CPU has no SHA-NI");
        return;
    }
    std::string body = make_body(size_t(state.range(0)), Kind(state.range(1)));
    uint8_t out[32];
    for (auto _ : state) {
        dkd_sha256 s;
        dkd__sha256_init(&s);
        dkd__sha256_update(&s, reinterpret_cast<const uint8_t *>(body.data()), body.size());
        dkd__sha256_final(&s, out);
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
#endif
}

void fused_bench(benchmark::State &state, bool relaxed, int impl)
{
    if (!cfs_supported(impl)) {
        state.SkipWithError("this CPU cannot run this implementation or has no SHA-NI");
        return;
    }
    std::string body = make_body(size_t(state.range(0)), Kind(state.range(1)));
    const uint8_t *p = reinterpret_cast<const uint8_t *>(body.data());
    uint8_t out[32];
    for (auto _ : state) {
        benchmark::DoNotOptimize(cfs_body_sha256(p, body.size(), relaxed, impl, out));
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
}

void canon_bench(benchmark::State &state, bool relaxed, int impl, bool hash)
{
    if (!bcs_supported(impl)) {
        state.SkipWithError("this CPU cannot run this implementation");
        return;
    }
    std::string body = make_body(size_t(state.range(0)), Kind(state.range(1)));
    const uint8_t *p = reinterpret_cast<const uint8_t *>(body.data());
    EVP_MD *sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[32];
    for (auto _ : state) {
        if (hash) {
            EVP_DigestInit_ex(md, sha256, nullptr);
            bcs_body_hash(p, body.size(), relaxed, impl, md);
            EVP_DigestFinal_ex(md, out, nullptr);
            benchmark::DoNotOptimize(out);
        } else {
            benchmark::DoNotOptimize(bcs_body_hash(p, body.size(), relaxed, impl, nullptr));
        }
    }
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha256);
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
}

// Args: {body bytes, kind}.
#define BODY_ARGS ArgsProduct({{2048, 20480, 204800}, {kText, kClean, kBase64, kLf, kHtml}})

#define CANON_CASES(name, relaxed, hash)                                                           \
    BENCHMARK_CAPTURE(name, relaxed_scalar, relaxed, BCS_SCALAR, hash)->BODY_ARGS;                 \
    BENCHMARK_CAPTURE(name, relaxed_sse2, relaxed, BCS_SSE2, hash)->BODY_ARGS;                     \
    BENCHMARK_CAPTURE(name, relaxed_avx2, relaxed, BCS_AVX2, hash)->BODY_ARGS;                     \
    BENCHMARK_CAPTURE(name, relaxed_avx512, relaxed, BCS_AVX512, hash)->BODY_ARGS;

void BM_CanonSha256Evp(benchmark::State &state, bool relaxed, int impl, bool hash)
{
    canon_bench(state, relaxed, impl, hash);
}

void BM_CanonSha256ShaNi(benchmark::State &state, bool relaxed, int impl, bool hash)
{
    (void)hash;
    fused_bench(state, relaxed, impl);
}

void BM_CanonOnly(benchmark::State &state, bool relaxed, int impl, bool hash)
{
    canon_bench(state, relaxed, impl, hash);
}

void BM_SimpleCanonSha256Evp(benchmark::State &state, bool relaxed, int impl, bool hash)
{
    canon_bench(state, relaxed, impl, hash);
}

void BM_SimpleCanonSha256ShaNi(benchmark::State &state, bool relaxed, int impl, bool hash)
{
    (void)hash;
    fused_bench(state, relaxed, impl);
}

BENCHMARK(BM_Sha256Evp)->BODY_ARGS;
BENCHMARK(BM_Sha256ShaNi)->BODY_ARGS;
CANON_CASES(BM_CanonSha256Evp, true, true)
CANON_CASES(BM_CanonSha256ShaNi, true, true)
CANON_CASES(BM_CanonOnly, true, false)
BENCHMARK_CAPTURE(BM_SimpleCanonSha256Evp, simple_scalar, false, BCS_SCALAR, true)->BODY_ARGS;
BENCHMARK_CAPTURE(BM_SimpleCanonSha256Evp, simple_sse2, false, BCS_SSE2, true)->BODY_ARGS;
BENCHMARK_CAPTURE(BM_SimpleCanonSha256Evp, simple_avx2, false, BCS_AVX2, true)->BODY_ARGS;
BENCHMARK_CAPTURE(BM_SimpleCanonSha256Evp, simple_avx512, false, BCS_AVX512, true)->BODY_ARGS;
BENCHMARK_CAPTURE(BM_SimpleCanonSha256ShaNi, simple_avx2, false, BCS_AVX2, true)->BODY_ARGS;
BENCHMARK_CAPTURE(BM_SimpleCanonSha256ShaNi, simple_avx512, false, BCS_AVX512, true)->BODY_ARGS;

} // namespace

BENCHMARK_MAIN();
