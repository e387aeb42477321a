/*
 * result.c - names, explanations and fixes for results and reasons (dkimd/result.h,
 * dkimd/reason.h).
 *
 * All tables come from the one X-macro list in dkimd/reason.h, so a code, its
 * explanation and its fix can never drift apart. Pure constant tables and libc's strcmp:
 * the core and libdkimd are both built with this one object (engine/core/meson.build
 * says how), so a client and the daemon explain a reason with the same words.
 * Workload: a lookup per verdict formatted, an index into a table.
 */
#include <string.h>

#include <dkimd/result.h>

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
