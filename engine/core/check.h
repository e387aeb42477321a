/*
 * check.h - dkimd's assert vocabulary, after SQLite's (src/sqliteInt.h): three words for
 * three kinds of belief about a condition. Internal; any layer may include it.
 *
 *   DKD_ASSERT(x)  x is proven true by the code around it (a loop bound, a state the
 *                  caller establishes, a size this file computed). Checked as assert()
 *                  is, and compiled out with it under NDEBUG; never a branch the code
 *                  relies on, so x must have no side effects.
 *
 *   DKD_ALWAYS(x)  x is believed true but not proven, and the code handles false
 *   DKD_NEVER(x)   anyway: `if (DKD_NEVER(n > cap)) return false;`. Debug builds abort
 *                  on the unexpected value, so tests and fuzzers find it; release builds
 *                  (NDEBUG) evaluate to the condition, so the recovery path runs.
 *
 * None of them is ever used on a condition derived from input - mail, DNS answers,
 * wire frames, configuration: malformed input is normal and ends in a verdict or an
 * error, never an abort (STYLE.md, "Errors"). They state what the code guarantees
 * about itself. A layout the code relies on (alignment, sizes, packing) is checked
 * where it is declared with _Static_assert, which costs nothing at run time.
 */
#ifndef DKD_CORE_CHECK_H
#define DKD_CORE_CHECK_H

#include <assert.h>
#include <stdbool.h>

#define DKD_ASSERT(x) assert(x)

#ifdef NDEBUG
#define DKD_ALWAYS(x) ((x) ? true : false)
#define DKD_NEVER(x) ((x) ? true : false)
#else
#define DKD_ALWAYS(x) ((x) ? true : (assert(!"DKD_ALWAYS(" #x ")"), false))
#define DKD_NEVER(x) ((x) ? (assert(!"DKD_NEVER(" #x ")"), true) : false)
#endif

#endif
