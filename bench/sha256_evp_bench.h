/*
 * sha256_evp_bench.h - the "SHA-256 alone" baseline both microbenchmark programs set
 * beside their canonicalization rows: OpenSSL's EVP SHA-256 over the same bytes, the
 * hardware limit of the body hash. One definition, so the two programs' ratios are
 * taken against the same loop.
 */
#ifndef DKD_BENCH_SHA256_EVP_BENCH_H
#define DKD_BENCH_SHA256_EVP_BENCH_H

#include <benchmark/benchmark.h>

#include <string>

#include <openssl/evp.h>

/* sha256_evp_loop hashes body once per iteration and reports bytes per second. */
static inline void sha256_evp_loop(benchmark::State &state, const std::string &body)
{
    EVP_MD *sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[32];
    for (auto _ : state) {
        EVP_DigestInit_ex(md, sha256, nullptr);
        EVP_DigestUpdate(md, body.data(), body.size());
        EVP_DigestFinal_ex(md, out, nullptr);
        benchmark::DoNotOptimize(out);
    }
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha256);
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
}

#endif
