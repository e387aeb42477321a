/*
 * guard.h - test inputs placed right before an inaccessible page, so a parser that reads
 * one byte past its span crashes instead of passing (picohttpparser's test trick).
 */
#ifndef DKD_TEST_GUARD_H
#define DKD_TEST_GUARD_H

#include <stddef.h>
#include <stdint.h>

/* guard_copy copies n bytes so they end exactly at a PROT_NONE page. The copy stays
 * valid until the next guard_copy call (one slot, reused). Aborts on mmap failure. */
const uint8_t *guard_copy(const void *p, size_t n);

/* guard_str is guard_copy of a C string without its NUL. */
const uint8_t *guard_str(const char *s);

#endif
