/*
 * taglist.h - RFC 6376 section 3.2 tag=value lists, shared by DKIM-Signature and key
 * records.
 *
 *   tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
 *   tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
 *   tag-name  =  ALPHA *ALNUMPUNC          ; ALNUMPUNC = ALPHA / DIGIT / "_"
 *   tag-value =  [ tval *( 1*(WSP / FWS) tval ) ]
 *   tval      =  1*VALCHAR                 ; VALCHAR = %x21-3A / %x3C-7E
 *
 * Bytes >= 0x80 are accepted in values (RFC 8616: UTF-8 in i= and d=) and kept as they
 * are. Whitespace (and a trailing ";") after the last tag is allowed; an empty tag-spec
 * between two ";" is a syntax error.
 */
#ifndef DKD_TAGLIST_H
#define DKD_TAGLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "span.h"

enum { DKD_TAGLIST_MAX = 64 }; /* more tags than this is a syntax error */

typedef struct dkd_tag {
    dkd_span name;  /* tag-name, exact bytes */
    dkd_span value; /* tag-value with surrounding FWS removed; may be empty */
    size_t value_off; /* offset of the first byte after '=' in the input */
    size_t value_end; /* offset of the ';' ending the tag-spec, or the input length */
} dkd_tag;

typedef struct dkd_taglist {
    dkd_tag tags[DKD_TAGLIST_MAX];
    size_t count;
    /* On failure: byte offset of the problem and a static description. */
    size_t err_off;
    const char *err;
    /* On a duplicate tag: the index of the second occurrence in tags[] is not kept;
     * dup names the repeated tag. */
    dkd_span dup;
} dkd_taglist;

typedef enum dkd_taglist_status {
    DKD_TAGLIST_OK = 0,
    DKD_TAGLIST_SYNTAX,    /* err and err_off say what and where */
    DKD_TAGLIST_DUPLICATE, /* dup names the tag (RFC 6376 3.2: duplicates are an error) */
} dkd_taglist_status;

/* dkd__taglist_parse splits in into tags. tl is filled even on failure up to the error. */
dkd_taglist_status dkd__taglist_parse(dkd_span in, dkd_taglist *tl);

/* dkd__taglist_find returns the tag named name (exact, case-sensitive), or NULL. */
const dkd_tag *dkd__taglist_find(const dkd_taglist *tl, const char *name);

#endif
