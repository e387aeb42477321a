/*
 * taglist_fuzz.c - libFuzzer target for engine/core/taglist.c.
 *
 * Properties checked on every input, whatever the status:
 *  - tags come out in input order with non-empty names, each name made only of tag-name
 *    bytes and followed (after FWS) by '=' at value_off - 1;
 *  - each value lies within [value_off, value_end), has no FWS at either end, and
 *    value_end is the input length or the offset of a ';';
 *  - on success, re-joining "name=raw-value;" reproduces every tag when parsed again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "taglist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_list(const uint8_t *data, size_t size, const dkd_taglist *tl)
{
    CHECK(tl->count <= DKD_TAGLIST_MAX);
    size_t prev_end = 0;
    for (size_t t = 0; t < tl->count; t++) {
        const dkd_tag *tag = &tl->tags[t];
        CHECK(tag->name.len > 0);
        CHECK(tag->name.ptr >= data && tag->name.ptr + tag->name.len <= data + size);
        size_t name_off = (size_t)(tag->name.ptr - data);
        CHECK(t == 0 || name_off > prev_end);
        CHECK(tag->value_off > name_off + tag->name.len - 1);
        CHECK(data[tag->value_off - 1] == '=');
        CHECK(tag->value_off <= tag->value_end && tag->value_end <= size);
        CHECK(tag->value_end == size || data[tag->value_end] == ';');
        if (tag->value.len > 0) {
            size_t voff = (size_t)(tag->value.ptr - data);
            CHECK(voff >= tag->value_off && voff + tag->value.len <= tag->value_end);
            CHECK(!dkd__is_fws(tag->value.ptr[0]));
            CHECK(!dkd__is_fws(tag->value.ptr[tag->value.len - 1]));
            CHECK(memchr(tag->value.ptr, ';', tag->value.len) == NULL);
        }
        prev_end = tag->value_end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dkd_taglist tl, again;
    dkd_taglist_status st = dkd__taglist_parse(dkd__span(data, size), &tl);
    check_list(data, size, &tl);
    if (st == DKD_TAGLIST_SYNTAX) {
        CHECK(tl.err != NULL && tl.err_off <= size);
        return 0;
    }
    if (st == DKD_TAGLIST_DUPLICATE) {
        CHECK(tl.dup.len > 0);
        return 0;
    }
    /* Round trip: rebuild the list from names and trimmed values; it must parse to the
     * same tags. */
    uint8_t *buf = malloc(size + tl.count * 2 + 1);
    CHECK(buf != NULL);
    size_t n = 0;
    for (size_t t = 0; t < tl.count; t++) {
        memcpy(buf + n, tl.tags[t].name.ptr, tl.tags[t].name.len);
        n += tl.tags[t].name.len;
        buf[n++] = '=';
        if (tl.tags[t].value.len > 0) {
            memcpy(buf + n, tl.tags[t].value.ptr, tl.tags[t].value.len);
            n += tl.tags[t].value.len;
        }
        buf[n++] = ';';
    }
    CHECK(dkd__taglist_parse(dkd__span(buf, n), &again) == DKD_TAGLIST_OK);
    CHECK(again.count == tl.count);
    for (size_t t = 0; t < tl.count; t++) {
        CHECK(again.tags[t].name.len == tl.tags[t].name.len &&
              memcmp(again.tags[t].name.ptr, tl.tags[t].name.ptr, tl.tags[t].name.len) == 0);
        CHECK(again.tags[t].value.len == tl.tags[t].value.len);
        CHECK(again.tags[t].value.len == 0 ||
              memcmp(again.tags[t].value.ptr, tl.tags[t].value.ptr, tl.tags[t].value.len) == 0);
    }
    free(buf);
    return 0;
}
