/*
 * providers_fuzz.c - libFuzzer target for the provider table parser (providers_parse in
 * tools/dkimctl_check_record.c, compiled here alone with DKIMCTL_PROVIDERS_PARSER_ONLY).
 *
 * Properties: the parser never reads outside the input (the replay driver and libFuzzer's
 * ASan catch it); a table it accepts, written back one line per provider ("-" for an
 * empty field), parses again to the same providers, field for field; a table it refuses
 * names a line that exists.
 */
#define DKIMCTL_PROVIDERS_PARSER_ONLY 1
#include "../../tools/dkimctl_check_record.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static const char *or_dash(const char *s)
{
    return s[0] ? s : "-";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) {
        return 0;
    }
    providers pv;
    char err[128];
    int bad = providers_parse((const char *)data, size, &pv, err, sizeof err);
    if (bad != 0) {
        size_t lines = 1;
        for (size_t i = 0; i + 1 < size; i++) {
            lines += data[i] == '\n';
        }
        CHECK(bad > 0 && (size_t)bad <= lines && strncmp(err, "line ", 5) == 0);
        free(pv.p);
        return 0;
    }
    /* Write the table back and read it again. */
    size_t cap = pv.n * 1400 + 1, len = 0;
    char *text = malloc(cap);
    CHECK(text != NULL);
    bool fits = true;
    for (size_t i = 0; i < pv.n; i++) {
        const provider *p = &pv.p[i];
        int w = snprintf(text + len, cap - len, "%s|%s|%s|%s", p->name, or_dash(p->selectors),
                         or_dash(p->cnames), or_dash(p->enable));
        CHECK(w > 0 && (size_t)w < cap - len);
        fits &= w <= 1023;
        len += (size_t)w;
        text[len++] = '\n';
    }
    if (fits) {
        providers again;
        CHECK(providers_parse(text, len, &again, err, sizeof err) == 0);
        CHECK(again.n == pv.n);
        for (size_t i = 0; i < pv.n; i++) {
            CHECK(strcmp(again.p[i].name, pv.p[i].name) == 0);
            CHECK(strcmp(again.p[i].selectors, pv.p[i].selectors) == 0);
            CHECK(strcmp(again.p[i].cnames, pv.p[i].cnames) == 0);
            CHECK(strcmp(again.p[i].enable, pv.p[i].enable) == 0);
        }
        free(again.p);
    }
    free(text);
    free(pv.p);
    return 0;
}
