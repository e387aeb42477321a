/*
 * client_conn.c - libdkimd's connection: one non-blocking Unix socket per dkd_client, an
 * output queue (a dkd__wbuf drained by send()) and an input buffer cut into frames by
 * the codec; connecting and the HELLO exchange; the shared-memory region (a sealed
 * memfd, handed over with SHM_ATTACH; client_ring.c places messages in it).
 *
 * Workload: sends and receives on every dkd_client_process, which never block; the only
 * blocking exchanges are (re)connecting and attaching the region, each bounded by the
 * client's timeout and answered at once by a local daemon.
 */
#include "client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
    /* SHM_ATTACH's request id: slot ids never have generation 0, so none is below 2^16. */
    ATTACH_ID = 1,
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline for poll(); -1 = forever. */
static int left_ms(int64_t deadline)
{
    if (deadline < 0) {
        return -1;
    }
    int64_t left = deadline - now_ms();
    return left <= 0 ? 0 : (left > 1000000 ? 1000000 : (int)left);
}

int64_t dkd__client_deadline(const dkd_client *c)
{
    return c->timeout_ms < 0 ? -1 : now_ms() + c->timeout_ms;
}

/* ---- connection ---- */

void dkd__client_disconnect(dkd_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    dkd__wbuf_reset(&c->out);
    c->out_off = 0;
    c->in_len = 0;
    c->pending_err = 0;
    c->shm.attached = false;
    c->features = 0;
}


int dkd__client_flush(dkd_client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -errno;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        c->out.len = 0;
        c->out_off = 0;
    } else if (c->out_off > (c->out.len >> 1)) {
        /* Reclaim the sent front so the queue does not grow without bound. */
        memmove(c->out.ptr, c->out.ptr + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    return 0;
}

/* fill reads what the socket has into the input buffer. >0 bytes, 0 EOF, -EAGAIN, -errno. */
int dkd__client_fill(dkd_client *c, size_t want)
{
    if (c->in_cap - c->in_len < want) {
        size_t cap = c->in_cap ? c->in_cap : 65536;
        while (cap - c->in_len < want) {
            cap *= 2;
        }
        uint8_t *p = realloc(c->in, cap);
        if (p == NULL) {
            return -ENOMEM;
        }
        c->in = p;
        c->in_cap = cap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        c->in_len += (size_t)n;
        return n > 0 ? 1 : 0;
    }
}

int dkd__client_wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, left_ms(deadline));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        return n == 0 ? -ETIMEDOUT : 0;
    }
}

/* send_all writes the whole output queue, waiting (until deadline) while the socket is
 * full. Used by the blocking exchanges of (re)connecting. */
static int send_all(dkd_client *c, int64_t deadline)
{
    int rc = 0;
    while (rc == 0 && c->out.len > 0) {
        if ((rc = dkd__client_flush(c)) == 0 && c->out.len > 0) {
            rc = dkd__client_wait_fd(c->fd, POLLOUT, deadline);
        }
    }
    return rc;
}

/* await_frame waits (until deadline) for one whole frame in the input buffer: 0 with *h
 * and *payload set and *rest the bytes after it (all borrowing c->in; keep_rest then
 * drops the frame), or a negative code. */
static int await_frame(dkd_client *c, uint8_t version, uint32_t max, int64_t deadline,
                       dkd__wire_header *h, dkd_span *payload, dkd_span *rest)
{
    for (;;) {
        *rest = dkd__span(c->in, c->in_len);
        int got = dkd__wire_frame_split(rest, version, max, h, payload);
        if (got < 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (got == 1) {
            return 0;
        }
        int rc = dkd__client_wait_fd(c->fd, POLLIN, deadline);
        if (rc != 0) {
            return rc;
        }
        int n = dkd__client_fill(c, 512);
        if (n == 0) {
            return DKD_CLIENT_ERR_CLOSED;
        }
        if (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK) {
            return n;
        }
    }
}

/* keep_rest keeps the bytes after an awaited frame for process(). */
static void keep_rest(dkd_client *c, dkd_span rest)
{
    memmove(c->in, rest.ptr, rest.len);
    c->in_len = rest.len;
}

/* send_with_fd sends one whole frame with a descriptor attached (SCM_RIGHTS). The queue
 * is empty when this runs, so the frame cannot interleave with another. */
static int send_with_fd(dkd_client *c, const uint8_t *p, size_t len, int fd, int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        struct iovec iov = {.iov_base = (void *)(p + off), .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        _Alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
        if (off == 0) {
            /* The descriptor rides with the frame's first byte. */
            memset(ctl, 0, sizeof ctl);
            mh.msg_control = ctl;
            mh.msg_controllen = sizeof ctl;
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &fd, sizeof fd);
        }
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return -errno;
            }
            int rc = dkd__client_wait_fd(c->fd, POLLOUT, deadline);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        off += (size_t)n;
    }
    return 0;
}

/*
 * shm_attach hands the region to the daemon on the current connection and waits for its
 * answer (nothing else is in flight: it runs right after HELLO or with no request open).
 * 0 once attached; a server error code when refused; other codes when the connection
 * failed (then it is closed).
 */
static int shm_attach(dkd_client *c, int64_t deadline)
{
    c->shm.attached = false;
    if (!(c->features & DKD__WIRE_F_SHM)) {
        return DKD_CLIENT_ERR_UNSUPPORTED;
    }
    uint8_t frame[DKD__WIRE_HEADER_LEN + 8];
    dkd__wbuf b;
    dkd__wbuf_init_fixed(&b, frame, sizeof frame);
    dkd__wire_put_shm_attach(&b, ATTACH_ID, c->shm.ring.size);
    int rc = send_all(c, deadline);
    if (rc == 0) {
        rc = send_with_fd(c, frame, b.len, c->shm.fd, deadline);
    }
    dkd__wire_header h;
    dkd_span payload, rest;
    if (rc == 0) {
        rc = await_frame(c, c->version, DKD__CLIENT_MAX_REPLY, deadline, &h, &payload, &rest);
    }
    if (rc == 0) {
        rc = DKD_CLIENT_ERR_BAD_REPLY;
        dkd__wire_error e;
        if (h.type == DKD__WIRE_SHM_ATTACH_OK && h.request_id == ATTACH_ID && payload.len == 0) {
            rc = 0;
        } else if (h.type == DKD__WIRE_ERROR && h.request_id == ATTACH_ID &&
                   dkd__wire_decode_error(payload, &e) == 0) {
            rc = dkd__client_server_err(e.code); /* refused: the connection goes on */
        } else if (h.type == DKD__WIRE_ERROR && h.request_id == 0) {
            rc = DKD_CLIENT_ERR_CLOSED; /* the server closes after a connection error */
        }
        if (rc != DKD_CLIENT_ERR_BAD_REPLY && rc != DKD_CLIENT_ERR_CLOSED) {
            keep_rest(c, rest);
            c->shm.attached = rc == 0;
            return rc;
        }
    }
    dkd__client_disconnect(c);
    return rc;
}

static int do_connect(dkd_client *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strlen(c->path);
    if (plen >= sizeof sa.sun_path) {
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, c->path, plen);
    int64_t deadline = dkd__client_deadline(c);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        /* A Unix socket whose listen backlog is full says EAGAIN: wait a little and try
         * again until the deadline rather than fail a daemon that is merely busy. */
        int e = errno;
        if (e == EINTR) {
            continue;
        }
        if (e != EAGAIN || left_ms(deadline) == 0) {
            close(fd);
            return -e;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    c->fd = fd;
    c->in_len = 0;
    dkd__wbuf_reset(&c->out);
    c->out_off = 0;

    static const char name[] = "libdkimd/0.1.0";
    dkd__wire_hello h = {.min_version = 1,
                        .max_version = DKD__WIRE_VERSION,
                        .client_name = dkd__span(name, sizeof name - 1)};
    dkd__wire_put_hello(&c->out, 0, &h);
    int rc = dkd__wbuf_ok(&c->out) ? -ENOMEM : 0;
    if (rc == 0) {
        rc = send_all(c, deadline);
    }
    dkd__wire_header hdr;
    dkd_span payload, rest;
    if (rc == 0) {
        rc = await_frame(c, 0, DKD__WIRE_PRE_HELLO_MAX, deadline, &hdr, &payload, &rest);
    }
    dkd__wire_hello_ok ok;
    if (rc == 0 && hdr.type == DKD__WIRE_ERROR) {
        dkd__wire_error e;
        rc = dkd__wire_decode_error(payload, &e) == 0 ? dkd__client_server_err(e.code)
                                                     : DKD_CLIENT_ERR_BAD_REPLY;
    } else if (rc == 0 &&
               (hdr.type != DKD__WIRE_HELLO_OK || dkd__wire_decode_hello_ok(payload, &ok) != 0 ||
                ok.version != DKD__WIRE_VERSION || hdr.version != DKD__WIRE_VERSION)) {
        rc = DKD_CLIENT_ERR_BAD_REPLY;
    }
    if (rc == 0) {
        c->version = ok.version;
        c->features = hdr.flags; /* HELLO_OK's header flags announce features */
        c->lim = (dkd_client_limits){.max_frame = ok.max_frame,
                                     .max_header_block = ok.max_header_block,
                                     .max_inflight = ok.max_inflight,
                                     .max_chunk = ok.max_chunk,
                                     .max_message = ok.max_message};
        keep_rest(c, rest); /* anything the server sent after HELLO_OK, for process() */
        if (c->inflight == 0) {
            rc = dkd__client_slots_init(c, ok.max_inflight);
        }
    }
    if (rc == 0 && c->shm.fd >= 0) {
        /* A refusal leaves the socket path in use; only a dead connection fails. */
        rc = shm_attach(c, deadline);
        if (c->fd >= 0) {
            rc = 0;
        }
    }
    if (rc == 0) {
        return 0;
    }
    dkd__client_disconnect(c);
    return rc;
}

int dkd__client_ensure_connected(dkd_client *c)
{
    if (c->fd >= 0) {
        return 0;
    }
    if (c->in_process) {
        /* From a callback of a connection that just died: reconnecting (blocking) here
         * would surprise an event loop; the next call outside process() does it. */
        return DKD_CLIENT_ERR_CLOSED;
    }
    return do_connect(c);
}

int dkd_client_connect(const char *path, dkd_client **out)
{
    *out = NULL;
    dkd_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->fd = -1;
    c->shm.fd = -1;
    c->timeout_ms = DKD__CLIENT_DEFAULT_TIMEOUT_MS;
    dkd__wbuf_init(&c->out);
    c->path = strdup(path);
    if (c->path == NULL) {
        free(c);
        return -ENOMEM;
    }
    int rc = do_connect(c);
    if (rc != 0) {
        dkd_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void dkd_client_close(dkd_client *c)
{
    if (c == NULL) {
        return;
    }
    dkd__client_disconnect(c);
    if (c->shm.fd >= 0) {
        munmap(c->shm.base, c->shm.ring.size);
        close(c->shm.fd);
    }
    free(c->shm.ring.q);
    dkd__wbuf_free(&c->out);
    free(c->in);
    free(c->slots);
    free(c->free_ids);
    free(c->path);
    free(c);
}

void dkd_client_set_timeout(dkd_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

dkd_client_limits dkd_client_get_limits(const dkd_client *c)
{
    return c->lim;
}

int dkd_client_use_shm(dkd_client *c, size_t bytes)
{
    if (c->in_process || c->inflight > 0 || c->shm.fd >= 0) {
        return DKD_CLIENT_ERR_STATE;
    }
    if (bytes == 0 || bytes > (size_t)1 << 40) {
        return DKD_CLIENT_ERR_ARG;
    }
    int rc = dkd__client_ensure_connected(c);
    if (rc != 0) {
        return rc;
    }
    if (!(c->features & DKD__WIRE_F_SHM)) {
        return DKD_CLIENT_ERR_UNSUPPORTED;
    }
    /* Sealed so the daemon can map it without fearing SIGBUS: the size can never drop
     * under the mapping (PROTOCOL.md 4.9). */
    int fd = memfd_create("libdkimd-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return -errno;
    }
    void *base = MAP_FAILED;
    if (ftruncate(fd, (off_t)bytes) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
        (base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        rc = -errno;
        close(fd);
        return rc;
    }
    c->shm.fd = fd;
    c->shm.base = base;
    /* Nothing is in flight, so the ring starts empty over the whole region. */
    dkd__client_ring_init(&c->shm.ring, bytes, c->shm.ring.q, c->nslots);
    rc = shm_attach(c, dkd__client_deadline(c));
    if (rc != 0) {
        munmap(base, bytes);
        close(fd);
        c->shm.fd = -1;
        c->shm.base = NULL;
        dkd__client_ring_init(&c->shm.ring, 0, c->shm.ring.q, c->nslots);
    }
    return rc;
}

int dkd_client_fd(const dkd_client *c)
{
    return c->fd;
}

short dkd_client_events(const dkd_client *c)
{
    if (c->fd < 0) {
        return 0;
    }
    return (short)(POLLIN | (c->out_off < c->out.len ? POLLOUT : 0));
}

size_t dkd_client_queued(const dkd_client *c)
{
    return c->out.len - c->out_off;
}
