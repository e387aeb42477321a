/*
 * strerror.c - dkd_strerror, the text of the engine's error codes (dkimd/engine.h).
 *
 * Separate from the result and reason tables (result.c) because those are shared with
 * libdkimd and these codes are the engine's own. Called on error paths only.
 */
#include <string.h>

#include <dkimd/engine.h>

const char *dkd_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case DKD_ERR_NOMEM:
        return "out of memory or over a per-message limit";
    case DKD_ERR_STATE:
        return "call out of order for this message";
    case DKD_ERR_TOO_LARGE:
        return "header block larger than the configured limit";
    case DKD_ERR_PENDING:
        return "a key lookup has not completed";
    case DKD_ERR_SYNTAX:
        return "input is not a message";
    case DKD_ERR_IO:
        return "file could not be read";
    default:
        if (err < 0 && err > -4096) {
            return strerror(-err);
        }
        return "unknown error";
    }
}
