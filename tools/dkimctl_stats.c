/*
 * dkimctl_stats.c - `dkimctl stats`: ask a running dkimd for its counters (connections,
 * requests in flight and served, errors, key cache and engine counters) and print them,
 * one "name value" line each or one JSON object.
 */
#include "dkimctl.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#ifdef DKIMCTL_HAVE_CLIENT
#include <dkimd/client.h>
#endif

static const char stats_help[] =
    "usage: dkimctl stats --socket PATH [--json]\n"
    "\n"
    "Show the counters of the dkimd listening at PATH, in the daemon's order. The set of\n"
    "names grows with the daemon; scripts should look names up, not count lines.\n"
    "\n"
    "options:\n"
    "  --socket PATH        the daemon's Unix socket\n"
    "  --json               one JSON object {\"name\": value, ...}\n"
    "  -h, --help           this text\n"
    "\n"
    "example:\n"
    "  dkimctl stats --socket /run/dkimd/dkimd.sock\n"
    "\n"
    "exit status: 0 on success, 1 when the daemon could not be asked, 2 on usage errors.\n";

int dkimctl_stats(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *socket_path = NULL;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'S':
            socket_path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(stats_help, stdout);
            return DKIMCTL_OK;
        default:
            fprintf(stderr, "dkimctl stats: see 'dkimctl stats --help'\n");
            return DKIMCTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dkimctl stats: unexpected argument '%s'\n", argv[optind]);
        return DKIMCTL_USAGE;
    }
    if (socket_path == NULL) {
        fprintf(stderr, "dkimctl stats: give the daemon's socket with --socket PATH\n");
        return DKIMCTL_USAGE;
    }
#ifdef DKIMCTL_HAVE_CLIENT
    dkd_client *cl;
    int rc = dkd_client_connect(socket_path, &cl);
    dkd_client_counters *st = NULL;
    if (rc == 0) {
        rc = dkd_client_stats(cl, &st);
        dkd_client_close(cl);
    }
    if (rc != 0) {
        fprintf(stderr, "dkimctl stats: %s: %s\n", socket_path, dkd_client_strerror(rc));
        return DKIMCTL_FAILED;
    }
    size_t width = 0;
    for (size_t k = 0; k < st->count; k++) {
        size_t n = strlen(st->v[k].name);
        width = n > width ? n : width;
    }
    if (json) {
        printf("{");
        for (size_t k = 0; k < st->count; k++) {
            printf("%s", k ? ", " : "");
            json_cstring(stdout, st->v[k].name);
            printf(": %" PRIu64, st->v[k].value);
        }
        printf("}\n");
    } else {
        for (size_t k = 0; k < st->count; k++) {
            printf("%-*s %" PRIu64 "\n", (int)width, st->v[k].name, st->v[k].value);
        }
    }
    dkd_client_counters_free(st);
    return DKIMCTL_OK;
#else
    (void)json;
    fprintf(stderr, "dkimctl stats: built without the client library\n");
    return DKIMCTL_FAILED;
#endif
}
