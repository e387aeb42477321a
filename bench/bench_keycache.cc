// bench_keycache.cc - the key cache hit path and the resolver miss path.
//
// BM_CacheHit: dkd_resolver_lookup on names already cached (32 names, round robin), from
// 1 and 2 threads: hash, shard lock, LRU splice, key ref, callback, unref. The entries are
// filled through the resolver itself. With DKD_BENCH_DNS=ADDR@PORT (a server answering
// the samples' keys, e.g. unbound serving samples/keys.zone) they are real parsed keys;
// without it they are the cached outcome of a failed lookup against an unused port
// (temporary-failure entries, kept for an hour here), which takes the identical path.
//
// BM_Miss: one cold name per iteration through the blocking key source: the queue, the
// resolver thread, libunbound and a round trip to DKD_BENCH_DNS. Skipped without it.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <dkimd/engine.h>
#include <dkimd/resolver.h>

namespace
{

const char *bench_dns()
{
    const char *v = std::getenv("DKD_BENCH_DNS");
    return v != nullptr && v[0] != '\0' ? v : nullptr;
}

dkd_resolver *make_resolver(const char *fwd, uint32_t tempfail_ttl, unsigned timeout_ms)
{
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.mode = DKD_RESOLVER_FORWARD;
    rc.forwarders[rc.nforwarders++] = fwd;
    rc.options[rc.noptions++] = "do-not-query-localhost: no";
    rc.tempfail_ttl = tempfail_ttl;
    rc.query_timeout_ms = timeout_ms;
    char err[256];
    dkd_resolver *r = dkd_resolver_new(&rc, err, sizeof err);
    if (r == nullptr) {
        std::fprintf(stderr, "bench_keycache: %s\n", err);
        std::abort();
    }
    return r;
}

void keep(void *arg, dkd_key *key)
{
    *static_cast<dkd_key **>(arg) = key;
}

dkd_key *lookup_blocking(dkd_resolver *r, const char *name)
{
    dkd_keysrc src = dkd_resolver_keysrc_blocking(r);
    dkd_key *k = nullptr;
    if (src.lookup(src.impl, name, keep, &k) != 0) {
        std::abort();
    }
    return k;
}

std::vector<std::string> hit_names;
dkd_resolver *hit_resolver;
std::once_flag hit_once;

void hit_setup()
{
    const char *dns = bench_dns();
    hit_resolver = make_resolver(dns != nullptr ? dns : "127.0.0.1@9", 3600, 100);
    static const char *sels[] = {"rsa2048", "ed25519", "rotated", "revoked"};
    for (int i = 0; i < 32; i++) {
        char name[96];
        if (dns != nullptr && i < 4) {
            std::snprintf(name, sizeof name, "%s._domainkey.example.com", sels[i]);
        } else {
            std::snprintf(name, sizeof name, "s%d._domainkey.bench%d.example", i, i);
        }
        hit_names.emplace_back(name);
        dkd_key_unref(lookup_blocking(hit_resolver, name));
    }
}

void count_hit(void *arg, dkd_key *key, unsigned flags)
{
    if (!(flags & DKD_RESOLVER_HIT)) {
        std::abort(); // the bench would be measuring something else
    }
    benchmark::DoNotOptimize(key);
    dkd_key_unref(key);
    ++*static_cast<uint64_t *>(arg);
}

void BM_CacheHit(benchmark::State &state)
{
    std::call_once(hit_once, hit_setup);
    uint64_t done = 0;
    size_t i = static_cast<size_t>(state.thread_index()) * 7;
    for (auto _ : state) {
        const std::string &n = hit_names[i++ % hit_names.size()];
        dkd_resolver_lookup(hit_resolver, n.c_str(), count_hit, &done);
    }
    if (done != static_cast<uint64_t>(state.iterations())) {
        state.SkipWithError("a lookup was not a hit");
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CacheHit)->Threads(1)->Threads(2)->UseRealTime();

void BM_Miss(benchmark::State &state)
{
    const char *dns = bench_dns();
    if (dns == nullptr) {
        state.SkipWithError("set DKD_BENCH_DNS=ADDR@PORT to a DNS server to measure misses");
        return;
    }
    dkd_resolver *r = make_resolver(dns, 5, 2000);
    static std::atomic<unsigned> serial{0};
    unsigned run = serial.fetch_add(1);
    uint64_t n = 0;
    for (auto _ : state) {
        char name[96];
        // A new name each time: cold in our cache and in libunbound's.
        std::snprintf(name, sizeof name, "r%u-%llu._domainkey.example.com", run,
                      static_cast<unsigned long long>(n++));
        dkd_key *k = lookup_blocking(r, name);
        benchmark::DoNotOptimize(k);
        dkd_key_unref(k);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
    dkd_resolver_free(r);
}
BENCHMARK(BM_Miss)->UseRealTime()->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
