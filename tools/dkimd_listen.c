/*
 * dkimd_listen.c - dkimd's listening sockets (see dkimd_listen.h).
 *
 * A milter SPEC is written as the MTAs write it: Sendmail's unix:/path, local:/path,
 * inet:PORT@ADDR, inet6:PORT@ADDR, and Postfix's inet:ADDR:PORT. The socket mode, owner
 * and group settings apply to every Unix socket we make.
 */
#include "dkimd_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum { BACKLOG = 4096 }; /* an MTA restart opens hundreds of connections at once */

/* set_owner_mode applies socket-owner, socket-group and socket-mode to path. */
static bool set_owner_mode(const dkimd_settings *s, const char *path)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    if (s->socket_owner != NULL && !dkimd_parse_uid(s->socket_owner, &uid)) {
        fprintf(stderr, "dkimd: unknown socket owner %s\n", s->socket_owner);
        return false;
    }
    if (s->socket_group != NULL && !dkimd_parse_gid(s->socket_group, &gid)) {
        fprintf(stderr, "dkimd: unknown socket group %s\n", s->socket_group);
        return false;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) != 0) {
        fprintf(stderr, "dkimd: chown %s: %s\n", path, strerror(errno));
        return false;
    }
    if (chmod(path, s->socket_mode) != 0) {
        fprintf(stderr, "dkimd: chmod %s: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

/* unix_socket makes a listening Unix socket at path. A stale socket file from a previous
 * run is replaced, but a live daemon is not: connecting tells the two apart. */
static int unix_socket(const dkimd_settings *s, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "dkimd: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "dkimd: %s exists and is not a socket\n", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0) {
            close(probe);
        }
        if (live) {
            fprintf(stderr, "dkimd: another daemon is listening on %s\n", path);
            return -1;
        }
        unlink(path);
    }
    /* The default /run/dkimd/ lives on a tmpfs emptied at boot: create it (one level)
     * when missing, as systemd's RuntimeDirectory= would. */
    char dir[sizeof sa.sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "dkimd: cannot create %s: %s\n", dir, strerror(errno));
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "dkimd: socket: %s\n", strerror(errno));
        return -1;
    }
    /* Bind under a umask that leaves the socket closed until its mode is set. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0) {
        fprintf(stderr, "dkimd: bind %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!set_owner_mode(s, path)) {
        goto fail;
    }
    if (listen(fd, BACKLOG) != 0) {
        fprintf(stderr, "dkimd: listen %s: %s\n", path, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    unlink(path);
    close(fd);
    return -1;
}

/* inet_socket binds "PORT@ADDR" (Sendmail) or "ADDR:PORT" (Postfix); an empty ADDR is
 * every address of the family. */
static int inet_socket(const char *spec, bool v6)
{
    char host[256] = "", port[16] = "";
    const char *at = strchr(spec, '@');
    const char *colon = strrchr(spec, ':');
    if (at != NULL) {
        snprintf(port, sizeof port, "%.*s", (int)(at - spec), spec);
        snprintf(host, sizeof host, "%s", at + 1);
    } else if (colon != NULL) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
        snprintf(port, sizeof port, "%s", colon + 1);
    } else {
        snprintf(port, sizeof port, "%s", spec);
    }
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = v6 ? AF_INET6 : AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai != 0 || port[0] == '\0') {
        fprintf(stderr, "dkimd: milter %s: %s\n", spec,
                gai != 0 ? gai_strerror(gai) : "no port (inet:PORT@ADDR)");
        if (ai != NULL) {
            freeaddrinfo(ai);
        }
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, BACKLOG) != 0) {
        fprintf(stderr, "dkimd: milter %s: %s\n", spec, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int milter_socket(const dkimd_settings *s, const char **path)
{
    const char *m = s->milter;
    if (strncmp(m, "unix:", 5) == 0 || strncmp(m, "local:", 6) == 0) {
        *path = strchr(m, ':') + 1;
        return unix_socket(s, *path);
    }
    if (strncmp(m, "inet6:", 6) == 0) {
        return inet_socket(m + 6, true);
    }
    return inet_socket(m + 5, false);
}

/* activated_fds takes the sockets systemd passed: 0 when none, -1 on a bad one. */
static int activated_fds(const dkimd_settings *s, dkimd_listeners *l)
{
    const char *pid = getenv("LISTEN_PID");
    const char *fds = getenv("LISTEN_FDS");
    uint64_t p, n;
    if (pid == NULL || fds == NULL || !dkimd_parse_u64(pid, INT32_MAX, &p) ||
        !dkimd_parse_u64(fds, 64, &n) || (pid_t)p != getpid() || n < 1) {
        return 0;
    }
    char names[512];
    snprintf(names, sizeof names, "%s", getenv("LISTEN_FDNAMES") ? getenv("LISTEN_FDNAMES") : "");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (n > 2) {
        fprintf(stderr, "dkimd: LISTEN_FDS: %llu sockets; at most two (dkimd and milter)\n",
                (unsigned long long)n);
        return -1;
    }
    char *save = NULL, *name = strtok_r(names, ":", &save);
    for (int fd = 3; fd < 3 + (int)n; fd++, name = strtok_r(NULL, ":", &save)) {
        int type = 0, domain = 0;
        socklen_t tl = sizeof type, dl = sizeof domain;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) != 0) {
            fprintf(stderr, "dkimd: LISTEN_FDS: fd %d is not a stream socket\n", fd);
            return -1;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        bool milter;
        if (name != NULL && (!strcmp(name, "milter") || !strcmp(name, "dkimd"))) {
            milter = !strcmp(name, "milter");
        } else {
            /* Unnamed: the second is the milter's, and so is a lone TCP socket or a lone
             * socket when only a milter is configured. */
            milter = fd == 4 || domain != AF_UNIX ||
                     (n == 1 && (s->socket_path == NULL || s->socket_path[0] == '\0'));
        }
        int *slot = milter ? &l->milter_fd : &l->native_fd;
        if (*slot >= 0) {
            fprintf(stderr, "dkimd: LISTEN_FDS: two %s sockets\n", milter ? "milter" : "dkimd");
            return -1;
        }
        *slot = fd;
    }
    l->activated = true;
    return 1;
}

int dkimd_listen(const dkimd_settings *s, dkimd_listeners *l)
{
    *l = (dkimd_listeners){.native_fd = -1, .milter_fd = -1};
    int act = activated_fds(s, l);
    if (act < 0) {
        return -1;
    }
    bool want_native = s->socket_path != NULL && s->socket_path[0] != '\0';
    bool want_milter = s->milter != NULL && s->milter[0] != '\0';
    if (act == 0 && want_native) {
        l->native_fd = unix_socket(s, s->socket_path);
        if (l->native_fd < 0) {
            return -1;
        }
        l->native_path = s->socket_path;
    }
    if (act == 0 && want_milter) {
        l->milter_fd = milter_socket(s, &l->milter_path);
        if (l->milter_fd < 0) {
            dkimd_unlisten(l);
            return -1;
        }
    }
    snprintf(l->describe, sizeof l->describe, "%s%s%s%s%s%s",
             l->native_fd >= 0 ? "dkimd protocol on " : "",
             l->native_fd >= 0 ? (act ? "an activated socket" : s->socket_path) : "",
             l->native_fd >= 0 && l->milter_fd >= 0 ? ", " : "",
             l->milter_fd >= 0 ? "milter on " : "",
             l->milter_fd >= 0 ? (act ? "an activated socket" : s->milter) : "",
             act ? " (socket activation)" : "");
    return 0;
}

void dkimd_unlisten(dkimd_listeners *l)
{
    if (l->native_fd >= 0) {
        close(l->native_fd);
    }
    if (l->milter_fd >= 0) {
        close(l->milter_fd);
    }
    if (l->native_path != NULL) {
        unlink(l->native_path);
    }
    if (l->milter_path != NULL) {
        unlink(l->milter_path);
    }
    *l = (dkimd_listeners){.native_fd = -1, .milter_fd = -1};
}
