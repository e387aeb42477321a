/*
 * dkimd_listen.h - dkimd's listening sockets: the dkimd protocol's Unix socket and the
 * milter's Unix or TCP socket, made from the settings or taken from systemd socket
 * activation. Internal to the dkimd executable; main thread, start-up only.
 */
#ifndef DKIMD_LISTEN_H
#define DKIMD_LISTEN_H

#include <stdbool.h>

#include "dkimd_config.h"

typedef struct dkimd_listeners {
    int native_fd, milter_fd;             /* -1 = not served */
    const char *native_path, *milter_path; /* socket files we made and unlink at exit */
    bool activated;                        /* the sockets came from systemd */
    char describe[512];                    /* "dkimd on PATH, milter on SPEC" for the log */
} dkimd_listeners;

/*
 * dkimd_listen opens what the settings ask for. Under socket activation (LISTEN_FDS)
 * the passed sockets are used: named "milter" or "dkimd" by LISTEN_FDNAMES
 * (FileDescriptorName=), or else the first is the dkimd socket and a second the
 * milter's, a single TCP socket being the milter's. Returns 0, or -1 after printing why.
 */
int dkimd_listen(const dkimd_settings *s, dkimd_listeners *l);

/* dkimd_unlisten closes the sockets and removes the socket files we made. */
void dkimd_unlisten(dkimd_listeners *l);

#endif
