/*
 * result.c - names, explanations and fixes for results, reasons and error codes.
 *
 * All tables come from the one X-macro list in dkimd/reason.h, so a code, its
 * explanation and its fix can never drift apart.
 */
#include <string.h>

#include <dkimd/engine.h>
#include <dkimd/reason.h>

static const char *const result_names[] = {
    [DKD_RESULT_NONE] = "none",           [DKD_RESULT_PASS] = "pass",
    [DKD_RESULT_FAIL] = "fail",           [DKD_RESULT_NEUTRAL] = "neutral",
    [DKD_RESULT_POLICY] = "policy",       [DKD_RESULT_PERMERROR] = "permerror",
    [DKD_RESULT_TEMPERROR] = "temperror",
};

static const struct reason_text {
    const char *code, *explanation, *fix;
} reason_texts[] = {
#define REASON_TEXT(name, code, expl, fix) [DKD_REASON_##name] = {code, expl, fix},
    DKD_REASONS(REASON_TEXT)
#undef REASON_TEXT
};

const char *dkd_result_name(enum dkd_result result)
{
    if ((unsigned)result < sizeof result_names / sizeof result_names[0] &&
        result_names[result] != NULL) {
        return result_names[result];
    }
    return "permerror";
}

static const struct reason_text *reason_text(enum dkd_reason reason)
{
    if ((unsigned)reason < DKD_REASON__COUNT) {
        return &reason_texts[reason];
    }
    return &reason_texts[DKD_REASON_INTERNAL];
}

const char *dkd_reason_code(enum dkd_reason reason)
{
    return reason_text(reason)->code;
}

const char *dkd_reason_explanation(enum dkd_reason reason)
{
    return reason_text(reason)->explanation;
}

const char *dkd_reason_fix(enum dkd_reason reason)
{
    return reason_text(reason)->fix;
}

int dkd_reason_from_code(const char *code)
{
    for (int r = 0; r < DKD_REASON__COUNT; r++) {
        if (strcmp(reason_texts[r].code, code) == 0) {
            return r;
        }
    }
    return -1;
}

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
