/*
 * client.c - libdkimd: the client side of the dkimd wire protocol (ipc/PROTOCOL.md).
 *
 * One non-blocking Unix socket per dkd_client, an output queue (a dkd__wbuf drained by
 * send()) and an input buffer cut into frames by the codec. Requests live in a slot table
 * sized by the server's max_inflight; a request id is the slot index in its low 16 bits
 * and a generation in its high 16 bits, so a late answer to an abandoned request can never
 * be taken for the answer to its slot's next occupant. The blocking calls are the async
 * API plus poll().
 *
 * Workload: an MTA process with one client per thread, tens to thousands of requests in
 * flight, messages of a few KB (one frame each) and now and then a large one streamed in
 * chunks. The library never blocks except while (re)connecting, starts no threads and
 * links neither OpenSSL nor the engine.
 */
#include <dkimd/client.h>

#include "wire.h"

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
    DEFAULT_TIMEOUT_MS = 30000,
    /* Answers are small (a RESULT is a few hundred bytes per signature); anything above
     * this is a broken or hostile server, not a reply worth buffering. */
    MAX_REPLY = 16u << 20,
    /* Blocking streaming drains the queue when it grows past this, so a 50 MB message
     * costs the client about this much memory, not 50 MB. */
    STREAM_HIGH_WATER = 1u << 20,
    MAX_SLOTS = 1u << 16,
    /* SHM_ATTACH's request id: slot ids never have generation 0, so none is below 2^16. */
    ATTACH_ID = 1,
};

enum slot_kind { SLOT_FREE = 0, SLOT_VERIFY, SLOT_STATS, SLOT_PING };
enum stream_state { STREAM_NONE = 0, STREAM_OPEN };

typedef void (*stats_done_fn)(void *user, int status, dkd_client_counters *s);

typedef struct slot {
    uint32_t id;
    uint8_t kind;
    uint8_t stream;
    dkd_client_done_fn done; /* SLOT_VERIFY, SLOT_PING; NULL = abandoned */
    stats_done_fn stats_done;
    void *user;
    int32_t shm_pos; /* its place in the region's allocation queue; -1 = none */
} slot;

/* One message's bytes in the shared region, in allocation order. */
typedef struct shm_alloc {
    size_t off, end;
    bool done; /* answered: the daemon no longer reads it */
} shm_alloc;

/*
 * The shared region is a ring: messages are placed one after the other at head and freed
 * from tail, the oldest first. An answer that arrives before an older one's only marks
 * its bytes done; they are reclaimed when everything before them is. Live bytes are
 * [tail, head), or [tail, size) + [0, head) once head has wrapped.
 */
typedef struct shm_ring {
    int fd; /* -1 = not in use */
    uint8_t *base;
    size_t size;
    bool attached; /* to the current connection */
    size_t head, tail;
    shm_alloc *q; /* nslots entries, a circular queue */
    uint32_t q_first, q_count, q_cap;
} shm_ring;

struct dkd_client {
    char *path;
    int fd;
    int timeout_ms;
    int pending_err; /* a send failed outside process(): reported by the next process() */
    bool in_process; /* process() is on the stack: no reentry, no reconnect */
    uint8_t version;
    dkd_client_limits lim;
    dkd__wbuf out;
    size_t out_off;
    uint8_t *in;
    size_t in_len, in_cap;
    slot *slots;
    uint32_t nslots;
    uint32_t *free_ids; /* stack of free slot indexes */
    uint32_t nfree;
    uint16_t gen;
    size_t inflight;
    uint16_t features; /* DKD__WIRE_F_* of the current connection's HELLO_OK */
    shm_ring shm;
};

const char *dkd_client_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case DKD_CLIENT_ERR_BAD_REPLY:
        return "the daemon sent a reply that cannot be decoded";
    case DKD_CLIENT_ERR_CLOSED:
        return "connection to the daemon lost";
    case DKD_CLIENT_ERR_BUSY:
        return "too many requests in flight";
    case DKD_CLIENT_ERR_STATE:
        return "call out of order for this request";
    case DKD_CLIENT_ERR_ARG:
        return "invalid argument";
    case DKD_CLIENT_ERR_UNSUPPORTED:
        return "the daemon does not offer this feature";
    default:
        if (err < DKD_CLIENT_ERR_SERVER_BASE && err > DKD_CLIENT_ERR_SERVER_BASE - 0x10000) {
            return dkd__wire_errcode_name((uint16_t)(DKD_CLIENT_ERR_SERVER_BASE - err));
        }
        if (err < 0 && err > -4096) {
            return strerror(-err);
        }
        return "unknown error";
    }
}

static int server_err(uint16_t code)
{
    /* Unknown codes are treated like "internal", as PROTOCOL.md 4.8 says. */
    if (code < DKD__WIRE_E_MALFORMED || code > DKD__WIRE_E_PROTOCOL) {
        code = DKD__WIRE_E_INTERNAL;
    }
    return DKD_CLIENT_ERR_SERVER_BASE - (int)code;
}

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

static int64_t deadline_of(const dkd_client *c)
{
    return c->timeout_ms < 0 ? -1 : now_ms() + c->timeout_ms;
}

/* ---- slots ---- */

static int slots_init(dkd_client *c, uint32_t n)
{
    if (n > MAX_SLOTS) {
        n = MAX_SLOTS;
    }
    if (n == c->nslots) {
        return 0;
    }
    slot *s = calloc(n, sizeof *s);
    uint32_t *f = calloc(n, sizeof *f);
    shm_alloc *q = calloc(n, sizeof *q);
    if (s == NULL || f == NULL || q == NULL) {
        free(s);
        free(f);
        free(q);
        return -ENOMEM;
    }
    free(c->slots);
    free(c->free_ids);
    free(c->shm.q);
    c->slots = s;
    c->free_ids = f;
    c->nslots = n;
    /* Called with nothing in flight, so nothing lives in the region either. */
    c->shm.q = q;
    c->shm.q_cap = n;
    c->shm.q_first = c->shm.q_count = 0;
    c->shm.head = c->shm.tail = 0;
    /* Hand out low indexes first: stack top is index 0. */
    for (uint32_t k = 0; k < n; k++) {
        f[k] = n - 1 - k;
    }
    c->nfree = n;
    return 0;
}

static slot *slot_alloc(dkd_client *c)
{
    if (c->nfree == 0) {
        return NULL;
    }
    uint32_t idx = c->free_ids[--c->nfree];
    /* Generation 0 is skipped so that no id is ever 0, the connection-level id. */
    if (++c->gen == 0) {
        c->gen = 1;
    }
    slot *s = &c->slots[idx];
    *s = (slot){.id = (uint32_t)c->gen << 16 | idx, .shm_pos = -1};
    c->inflight++;
    return s;
}

/* ---- the shared region's ring ---- */

/* shm_place finds len contiguous free bytes; false when the ring has no such gap now. */
static bool shm_place(shm_ring *r, size_t len, size_t *off)
{
    if (len == 0 || r->q_count == r->q_cap) {
        return false;
    }
    if (r->q_count == 0) {
        r->head = r->tail = 0;
    }
    bool wrapped = r->q_count > 0 && r->head < r->tail;
    if (!wrapped) {
        if (r->size - r->head >= len) {
            *off = r->head;
            return true;
        }
        /* Wrap: the gap before tail (strictly smaller, so head == tail means empty). */
        if (r->tail > len) {
            *off = 0;
            return true;
        }
        return false;
    }
    if (r->tail - r->head > len) {
        *off = r->head;
        return true;
    }
    return false;
}

static int32_t shm_push(shm_ring *r, size_t off, size_t len)
{
    uint32_t pos = (r->q_first + r->q_count) % r->q_cap;
    r->q[pos] = (shm_alloc){.off = off, .end = off + len};
    r->q_count++;
    r->head = off + len;
    return (int32_t)pos;
}

/* shm_free marks one message's bytes done and reclaims the done ones at the tail. */
static void shm_free(shm_ring *r, int32_t pos)
{
    r->q[pos].done = true;
    while (r->q_count > 0 && r->q[r->q_first].done) {
        r->q_first = (r->q_first + 1) % r->q_cap;
        r->q_count--;
    }
    if (r->q_count == 0) {
        r->head = r->tail = 0;
    } else {
        r->tail = r->q[r->q_first].off;
    }
}

static void slot_release(dkd_client *c, slot *s)
{
    uint32_t idx = (uint32_t)(s - c->slots);
    if (s->shm_pos >= 0) {
        shm_free(&c->shm, s->shm_pos);
    }
    *s = (slot){0};
    c->free_ids[c->nfree++] = idx;
    c->inflight--;
}

static slot *slot_find(dkd_client *c, uint32_t id)
{
    uint32_t idx = id & 0xFFFFu;
    if (id == 0 || idx >= c->nslots || c->slots[idx].id != id) {
        return NULL;
    }
    return &c->slots[idx];
}

/* complete frees the slot and then calls its callback (which may reuse the slot). */
static void complete(dkd_client *c, slot *s, int status, dkd_client_result *r,
                     dkd_client_counters *st)
{
    slot copy = *s;
    slot_release(c, s);
    if (copy.kind == SLOT_STATS) {
        if (copy.stats_done != NULL) {
            copy.stats_done(copy.user, status, st);
            return;
        }
    } else if (copy.done != NULL) {
        copy.done(copy.user, status, r);
        return;
    }
    /* Abandoned by a timed-out blocking call: nobody wants the answer. */
    dkd_client_result_free(r);
    dkd_client_counters_free(st);
}

/* ---- connection ---- */

static void disconnect(dkd_client *c)
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

/* fail_all completes every request in flight with status after the connection died. */
static int fail_all(dkd_client *c, int status)
{
    disconnect(c);
    int called = 0;
    for (uint32_t k = 0; k < c->nslots; k++) {
        if (c->slots[k].kind != SLOT_FREE) {
            complete(c, &c->slots[k], status, NULL, NULL);
            called++;
        }
    }
    return called;
}

/* flush writes queued bytes until the socket would block. 0 or a negative code. */
static int flush(dkd_client *c)
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
static int fill(dkd_client *c, size_t want)
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

static int wait_fd(int fd, short events, int64_t deadline)
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
        if ((rc = flush(c)) == 0 && c->out.len > 0) {
            rc = wait_fd(c->fd, POLLOUT, deadline);
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
        int rc = wait_fd(c->fd, POLLIN, deadline);
        if (rc != 0) {
            return rc;
        }
        int n = fill(c, 512);
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
            int rc = wait_fd(c->fd, POLLOUT, deadline);
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
    dkd__wire_put_shm_attach(&b, ATTACH_ID, c->shm.size);
    int rc = send_all(c, deadline);
    if (rc == 0) {
        rc = send_with_fd(c, frame, b.len, c->shm.fd, deadline);
    }
    dkd__wire_header h;
    dkd_span payload, rest;
    if (rc == 0) {
        rc = await_frame(c, c->version, MAX_REPLY, deadline, &h, &payload, &rest);
    }
    if (rc == 0) {
        rc = DKD_CLIENT_ERR_BAD_REPLY;
        dkd__wire_error e;
        if (h.type == DKD__WIRE_SHM_ATTACH_OK && h.request_id == ATTACH_ID && payload.len == 0) {
            rc = 0;
        } else if (h.type == DKD__WIRE_ERROR && h.request_id == ATTACH_ID &&
                   dkd__wire_decode_error(payload, &e) == 0) {
            rc = server_err(e.code); /* refused: the connection goes on */
        } else if (h.type == DKD__WIRE_ERROR && h.request_id == 0) {
            rc = DKD_CLIENT_ERR_CLOSED; /* the server closes after a connection error */
        }
        if (rc != DKD_CLIENT_ERR_BAD_REPLY && rc != DKD_CLIENT_ERR_CLOSED) {
            keep_rest(c, rest);
            c->shm.attached = rc == 0;
            return rc;
        }
    }
    disconnect(c);
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
    int64_t deadline = deadline_of(c);
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
        rc = dkd__wire_decode_error(payload, &e) == 0 ? server_err(e.code)
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
            rc = slots_init(c, ok.max_inflight);
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
    disconnect(c);
    return rc;
}

static int ensure_connected(dkd_client *c)
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
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
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
    disconnect(c);
    if (c->shm.fd >= 0) {
        munmap(c->shm.base, c->shm.size);
        close(c->shm.fd);
    }
    free(c->shm.q);
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
    int rc = ensure_connected(c);
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
    c->shm.size = bytes;
    c->shm.head = c->shm.tail = 0;
    rc = shm_attach(c, deadline_of(c));
    if (rc != 0) {
        munmap(base, bytes);
        close(fd);
        c->shm.fd = -1;
        c->shm.base = NULL;
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

size_t dkd_client_inflight(const dkd_client *c)
{
    return c->inflight;
}

/* ---- results ---- */

void dkd_client_result_free(dkd_client_result *r)
{
    free(r);
}

void dkd_client_counters_free(dkd_client_counters *s)
{
    free(s);
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* copy_str copies a NUL-free span to *pool as a C string and advances the pool. */
static const char *copy_str(char **pool, dkd_span v)
{
    char *s = *pool;
    if (v.len) {
        memcpy(s, v.ptr, v.len);
    }
    s[v.len] = '\0';
    *pool += v.len + 1;
    return s;
}

/* result_from_wire converts a decoded RESULT into one allocation. NULL on ENOMEM. */
static dkd_client_result *result_from_wire(const dkd__wire_result *wr)
{
    size_t n = wr->nsigs;
    size_t chars = wr->authres.len + 1;
    dkd_span cur = wr->sigs;
    dkd__wire_sig w;
    while (dkd__wire_sig_next(&cur, &w)) {
        chars += w.explanation.len + w.detail.len + w.d.len + w.s.len + w.i.len + w.a.len +
                 w.b_prefix.len + 7;
    }
    size_t off_sigs = align_up(sizeof(dkd_client_result), _Alignof(dkd_sig_result));
    size_t off_expl = align_up(off_sigs + n * sizeof(dkd_sig_result), _Alignof(const char *));
    size_t off_chars = off_expl + n * sizeof(const char *);
    uint8_t *mem = calloc(1, off_chars + chars);
    if (mem == NULL) {
        return NULL;
    }
    dkd_client_result *r = (dkd_client_result *)mem;
    r->nsigs = n;
    r->sigs = n ? (dkd_sig_result *)(mem + off_sigs) : NULL;
    r->explanations = n ? (const char **)(mem + off_expl) : NULL;
    char *pool = (char *)mem + off_chars;
    cur = wr->sigs;
    for (size_t k = 0; k < n && dkd__wire_sig_next(&cur, &w); k++) {
        dkd_sig_result *s = &r->sigs[k];
        s->result = (enum dkd_result)w.result;
        s->reason = (enum dkd_reason)w.reason;
        s->key_bits = w.key_bits;
        s->key_testing = (w.flags & DKD__WIRE_SIG_TESTING) != 0;
        s->has_l = (w.flags & DKD__WIRE_SIG_HAS_L) != 0;
        s->key_stale = (w.flags & DKD__WIRE_SIG_STALE) != 0;
        s->dnssec_secure = w.dnssec == DKD__WIRE_DNSSEC_SECURE;
        s->body_signed = w.body_signed;
        s->body_total = w.body_total;
        r->explanations[k] = copy_str(&pool, w.explanation);
        s->detail = copy_str(&pool, w.detail);
        s->d = copy_str(&pool, w.d);
        s->s = copy_str(&pool, w.s);
        s->i = copy_str(&pool, w.i);
        s->a = copy_str(&pool, w.a);
        s->b_prefix = copy_str(&pool, w.b_prefix);
    }
    r->authres = copy_str(&pool, wr->authres);
    return r;
}

static dkd_client_counters *counters_from_wire(const dkd__wire_stats_reply *wr)
{
    size_t chars = 0;
    dkd_span cur = wr->entries;
    dkd__wire_stat st;
    while (dkd__wire_stat_next(&cur, &st)) {
        chars += st.name.len + 1;
    }
    size_t off_v = align_up(sizeof(dkd_client_counters), _Alignof(dkd_client_stat));
    size_t off_chars = off_v + (size_t)wr->count * sizeof(dkd_client_stat);
    uint8_t *mem = calloc(1, off_chars + chars);
    if (mem == NULL) {
        return NULL;
    }
    dkd_client_counters *s = (dkd_client_counters *)mem;
    s->count = wr->count;
    s->v = (dkd_client_stat *)(mem + off_v);
    char *pool = (char *)mem + off_chars;
    cur = wr->entries;
    for (size_t k = 0; k < s->count && dkd__wire_stat_next(&cur, &st); k++) {
        s->v[k].name = copy_str(&pool, st.name);
        s->v[k].value = st.value;
    }
    return s;
}

/* ---- dispatching answers ---- */

/* dispatch handles one frame from the server. 1 if a callback ran, 0 if not, or a
 * negative code that ends the connection. */
static int dispatch(dkd_client *c, const dkd__wire_header *h, dkd_span payload)
{
    if (h->type == DKD__WIRE_ERROR) {
        dkd__wire_error e;
        if (dkd__wire_decode_error(payload, &e) != 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (h->request_id == 0) {
            return server_err(e.code); /* the server closes the connection after this */
        }
        slot *s = slot_find(c, h->request_id);
        if (s == NULL) {
            return 0; /* the answer to a request already given up */
        }
        if (s->stream == STREAM_OPEN) {
            /* PROTOCOL.md 4.4: after an early error the id is free once our END arrives. */
            dkd__wire_put_data(&c->out, DKD__WIRE_VERIFY_END, s->id, dkd__span(NULL, 0));
        }
        complete(c, s, server_err(e.code), NULL, NULL);
        return 1;
    }
    slot *s = slot_find(c, h->request_id);
    if (h->type == DKD__WIRE_RESULT) {
        dkd__wire_result wr;
        if (dkd__wire_decode_result(payload, &wr) != 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (s == NULL || s->kind != SLOT_VERIFY || s->stream == STREAM_OPEN) {
            return s == NULL ? 0 : DKD_CLIENT_ERR_BAD_REPLY;
        }
        dkd_client_result *r = result_from_wire(&wr);
        complete(c, s, r != NULL ? 0 : -ENOMEM, r, NULL);
        return 1;
    }
    if (h->type == DKD__WIRE_STATS_REPLY) {
        dkd__wire_stats_reply wr;
        if (dkd__wire_decode_stats_reply(payload, &wr) != 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (s == NULL || s->kind != SLOT_STATS) {
            return s == NULL ? 0 : DKD_CLIENT_ERR_BAD_REPLY;
        }
        dkd_client_counters *st = counters_from_wire(&wr);
        complete(c, s, st != NULL ? 0 : -ENOMEM, NULL, st);
        return 1;
    }
    if (h->type == DKD__WIRE_PONG) {
        if (s == NULL || s->kind != SLOT_PING) {
            return s == NULL ? 0 : DKD_CLIENT_ERR_BAD_REPLY;
        }
        complete(c, s, 0, NULL, NULL);
        return 1;
    }
    return DKD_CLIENT_ERR_BAD_REPLY;
}

int dkd_client_process(dkd_client *c)
{
    if (c->in_process) {
        return DKD_CLIENT_ERR_STATE;
    }
    if (c->fd < 0) {
        return 0;
    }
    c->in_process = true;
    int called = 0;
    int rc = c->pending_err;
    if (rc == 0) {
        rc = flush(c);
    }
    bool eof = false;
    while (rc == 0 && !eof) {
        int n = fill(c, 4096);
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            break;
        }
        if (n < 0) {
            rc = n;
            break;
        }
        eof = n == 0;
        dkd_span in = dkd__span(c->in, c->in_len);
        for (;;) {
            dkd__wire_header h;
            dkd_span payload;
            int got = dkd__wire_frame_split(&in, c->version, MAX_REPLY, &h, &payload);
            if (got < 0) {
                rc = DKD_CLIENT_ERR_BAD_REPLY;
                break;
            }
            if (got == 0) {
                break;
            }
            int d = dispatch(c, &h, payload);
            if (d < 0) {
                rc = d;
                break;
            }
            called += d;
        }
        if (rc != 0) {
            break;
        }
        memmove(c->in, in.ptr, in.len);
        c->in_len = in.len;
        /* Callbacks may have queued frames (new requests, an END after an early error). */
        rc = flush(c);
    }
    if (rc == 0 && eof) {
        rc = DKD_CLIENT_ERR_CLOSED;
    }
    if (rc != 0) {
        /* The connection is unusable: everything in flight fails with the cause. A reset
         * or broken pipe is the daemon going away, reported as "closed". */
        if (rc == -EPIPE || rc == -ECONNRESET) {
            rc = DKD_CLIENT_ERR_CLOSED;
        }
        called += fail_all(c, rc);
    }
    c->in_process = false;
    return rc != 0 ? rc : called;
}

/* ---- submitting ---- */

static int wire_opts(const dkd_client_opts *o, dkd__wire_verify_opts *w)
{
    *w = (dkd__wire_verify_opts){0};
    if (o == NULL) {
        return 0;
    }
    if (o->authserv_id != NULL) {
        size_t n = strlen(o->authserv_id);
        if (n < 1 || n > DKD__WIRE_MAX_AUTHSERV) {
            return DKD_CLIENT_ERR_ARG;
        }
        for (size_t k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)o->authserv_id[k];
            if (ch < 0x21 || ch > 0x7E) {
                return DKD_CLIENT_ERR_ARG;
            }
        }
        w->has_authserv_id = true;
        w->authserv_id = dkd__span(o->authserv_id, n);
    }
    w->has_time = o->has_time;
    w->time = o->time;
    return 0;
}

/* after_queue checks the builder and tries to send at once (latency); a send error is
 * kept for process(), since callbacks are never called from a submitting call. */
static int after_queue(dkd_client *c, size_t mark, slot *s)
{
    if (dkd__wbuf_ok(&c->out) != 0) {
        c->out.len = mark;
        c->out.err = false;
        if (s != NULL) {
            slot_release(c, s);
        }
        return -ENOMEM;
    }
    if (c->pending_err == 0) {
        c->pending_err = flush(c);
    }
    return 0;
}

size_t dkd_client_max_whole(const dkd_client *c, const dkd_client_opts *opts)
{
    dkd__wire_verify_opts w;
    if (wire_opts(opts, &w) != 0) {
        return 0;
    }
    size_t head = dkd__wire_verify_head_len(&w) - DKD__WIRE_HEADER_LEN;
    size_t max = c->lim.max_frame > head ? c->lim.max_frame - head : 0;
    return c->lim.max_message < max ? (size_t)c->lim.max_message : max;
}

static int submit_verify(dkd_client *c, uint8_t type, const uint8_t *data, size_t len,
                         const dkd_client_opts *opts, dkd_client_done_fn done, void *user,
                         uint32_t *req)
{
    dkd__wire_verify_opts w;
    int rc = wire_opts(opts, &w);
    if (rc != 0) {
        return rc;
    }
    if ((rc = ensure_connected(c)) != 0) {
        return rc;
    }
    /* Through the shared region when it has room (any size up to max_message), else
     * over the socket. */
    size_t shm_off = 0;
    bool via_shm = type == DKD__WIRE_VERIFY && c->shm.attached && len <= c->lim.max_message &&
                   shm_place(&c->shm, len, &shm_off);
    size_t limit =
        type == DKD__WIRE_VERIFY ? dkd_client_max_whole(c, opts) : c->lim.max_header_block;
    if (!via_shm && len > limit) {
        return DKD_CLIENT_ERR_TOO_LARGE;
    }
    slot *s = slot_alloc(c);
    if (s == NULL) {
        return DKD_CLIENT_ERR_BUSY;
    }
    s->kind = SLOT_VERIFY;
    s->stream = type == DKD__WIRE_VERIFY_BEGIN ? STREAM_OPEN : STREAM_NONE;
    s->done = done;
    s->user = user;
    if (req != NULL) {
        *req = s->id;
    }
    size_t mark = c->out.len;
    if (via_shm) {
        memcpy(c->shm.base + shm_off, data, len);
        s->shm_pos = shm_push(&c->shm, shm_off, len);
        dkd__wire_verify_shm m = {.opts = w, .offset = shm_off, .length = len};
        dkd__wire_put_verify_shm(&c->out, s->id, &m);
    } else {
        dkd__wire_put_verify_head(&c->out, type, s->id, &w, len);
        dkd__wbuf_append(&c->out, data, len);
    }
    return after_queue(c, mark, s);
}

int dkd_client_submit(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                      dkd_client_done_fn done, void *user)
{
    return submit_verify(c, DKD__WIRE_VERIFY, msg, len, opts, done, user, NULL);
}

int dkd_client_begin(dkd_client *c, const uint8_t *hdr, size_t len, const dkd_client_opts *opts,
                     dkd_client_done_fn done, void *user, uint32_t *req)
{
    return submit_verify(c, DKD__WIRE_VERIFY_BEGIN, hdr, len, opts, done, user, req);
}

int dkd_client_body(dkd_client *c, uint32_t req, const uint8_t *chunk, size_t len)
{
    slot *s = c->fd >= 0 ? slot_find(c, req) : NULL;
    if (s == NULL || s->stream != STREAM_OPEN) {
        return DKD_CLIENT_ERR_STATE;
    }
    size_t mark = c->out.len;
    size_t max = c->lim.max_chunk;
    do {
        size_t n = len < max ? len : max;
        dkd__wire_put_data(&c->out, DKD__WIRE_VERIFY_BODY, req, dkd__span(chunk, n));
        chunk += n;
        len -= n;
    } while (len > 0);
    return after_queue(c, mark, NULL);
}

int dkd_client_end(dkd_client *c, uint32_t req)
{
    slot *s = c->fd >= 0 ? slot_find(c, req) : NULL;
    if (s == NULL || s->stream != STREAM_OPEN) {
        return DKD_CLIENT_ERR_STATE;
    }
    size_t mark = c->out.len;
    dkd__wire_put_data(&c->out, DKD__WIRE_VERIFY_END, req, dkd__span(NULL, 0));
    int rc = after_queue(c, mark, NULL);
    if (rc == 0) {
        s->stream = STREAM_NONE;
    }
    return rc;
}

static int submit_simple(dkd_client *c, uint8_t type, uint8_t kind, dkd_client_done_fn done,
                         stats_done_fn sdone, void *user, uint32_t *req)
{
    int rc = ensure_connected(c);
    if (rc != 0) {
        return rc;
    }
    slot *s = slot_alloc(c);
    if (s == NULL) {
        return DKD_CLIENT_ERR_BUSY;
    }
    s->kind = kind;
    s->done = done;
    s->stats_done = sdone;
    s->user = user;
    *req = s->id;
    size_t mark = c->out.len;
    /* A PING carries its own id so a PONG can be checked against it by eye in a dump. */
    uint8_t id[4] = {(uint8_t)(s->id >> 24), (uint8_t)(s->id >> 16), (uint8_t)(s->id >> 8),
                     (uint8_t)s->id};
    dkd__wire_put_data(&c->out, type, s->id,
                      type == DKD__WIRE_PING ? dkd__span(id, 4) : dkd__span(NULL, 0));
    return after_queue(c, mark, s);
}

/* ---- blocking calls: the async API plus poll() ---- */

typedef struct waiter {
    bool done;
    int status;
    dkd_client_result *result;
    dkd_client_counters *counters;
} waiter;

static void wait_verify_done(void *user, int status, dkd_client_result *r)
{
    waiter *w = user;
    w->done = true;
    w->status = status;
    w->result = r;
}

static void wait_stats_done(void *user, int status, dkd_client_counters *s)
{
    waiter *w = user;
    w->done = true;
    w->status = status;
    w->counters = s;
}

/* drive waits for the socket once and processes. 0, or a negative code (timeout). */
static int drive(dkd_client *c, int64_t deadline)
{
    if (c->fd < 0) {
        return DKD_CLIENT_ERR_CLOSED;
    }
    int rc = c->pending_err == 0 ? wait_fd(c->fd, dkd_client_events(c), deadline) : 0;
    if (rc != 0) {
        return rc;
    }
    rc = dkd_client_process(c);
    return rc < 0 ? rc : 0;
}

/* wait_for runs the loop until w completes; on timeout the request is abandoned (its
 * late answer is dropped) and -ETIMEDOUT returned. */
static int wait_for(dkd_client *c, waiter *w, uint32_t req, int64_t deadline)
{
    while (!w->done) {
        int rc = drive(c, deadline);
        if (w->done) {
            break;
        }
        if (rc != 0) {
            slot *s = slot_find(c, req);
            if (s != NULL) {
                s->done = NULL;
                s->stats_done = NULL;
            }
            return rc;
        }
    }
    return w->status;
}

static size_t header_block_len(const uint8_t *p, size_t len)
{
    /* The same split as the engine's dkd_split_message (hdr.c), repeated here because
     * libdkimd does not link the engine: the empty line ends the block, either line end
     * being CRLF or bare LF. */
    if (len >= 1 && p[0] == '\n') {
        return 1;
    }
    if (len >= 2 && p[0] == '\r' && p[1] == '\n') {
        return 2;
    }
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *lf = memchr(p + pos, '\n', len - pos);
        if (lf == NULL) {
            break;
        }
        size_t next = (size_t)(lf - p) + 1;
        if (next < len && p[next] == '\n') {
            return next + 1;
        }
        if (next + 1 < len && p[next] == '\r' && p[next + 1] == '\n') {
            return next + 2;
        }
        pos = next;
    }
    return len;
}

static int verify_once(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                       waiter *w)
{
    int64_t deadline = deadline_of(c);
    int rc = ensure_connected(c);
    if (rc != 0) {
        return rc;
    }
    if (len > c->lim.max_message) {
        return DKD_CLIENT_ERR_TOO_LARGE; /* the server would refuse it after the upload */
    }
    uint32_t req = 0;
    bool whole = len <= dkd_client_max_whole(c, opts);
    if (whole || c->shm.attached) {
        rc = submit_verify(c, DKD__WIRE_VERIFY, msg, len, opts, wait_verify_done, w, &req);
        if (whole || rc != DKD_CLIENT_ERR_TOO_LARGE) {
            return rc != 0 ? rc : wait_for(c, w, req, deadline);
        }
        /* too large for one frame and no room in the region now: stream it */
    }
    size_t hlen = header_block_len(msg, len);
    rc = dkd_client_begin(c, msg, hlen, opts, wait_verify_done, w, &req);
    if (rc != 0) {
        return rc;
    }
    size_t off = hlen;
    while (off < len && !w->done) {
        size_t n = len - off < STREAM_HIGH_WATER ? len - off : STREAM_HIGH_WATER;
        if ((rc = dkd_client_body(c, req, msg + off, n)) != 0) {
            break;
        }
        off += n;
        while (rc == 0 && !w->done && dkd_client_queued(c) >= STREAM_HIGH_WATER) {
            rc = drive(c, deadline);
        }
    }
    if (rc == 0 && !w->done) {
        rc = dkd_client_end(c, req);
    }
    if (rc != 0 && !w->done) {
        slot *s = slot_find(c, req);
        if (s != NULL) {
            s->done = NULL;
        }
        return rc;
    }
    return wait_for(c, w, req, deadline);
}

static bool retryable(int rc)
{
    return rc == DKD_CLIENT_ERR_CLOSED || rc == DKD_CLIENT_ERR_SHUTTING_DOWN ||
           rc == -ECONNREFUSED || rc == -ENOENT || rc == -EPIPE || rc == -ECONNRESET;
}

int dkd_client_verify(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                      dkd_client_result **result)
{
    *result = NULL;
    if (c->in_process) {
        return DKD_CLIENT_ERR_STATE;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        waiter w = {0};
        rc = verify_once(c, msg, len, opts, &w);
        if (rc == 0) {
            *result = w.result;
            return 0;
        }
        if (!retryable(rc)) {
            break;
        }
        /* The daemon restarted or is restarting: a fresh connection gets one more try. */
        if (c->fd >= 0 && c->inflight == 0) {
            disconnect(c);
        }
    }
    return rc;
}

static int simple_call(dkd_client *c, uint8_t type, uint8_t kind, waiter *w)
{
    if (c->in_process) {
        return DKD_CLIENT_ERR_STATE;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        *w = (waiter){0};
        int64_t deadline = deadline_of(c);
        uint32_t req;
        rc = submit_simple(c, type, kind, kind == SLOT_PING ? wait_verify_done : NULL,
                           kind == SLOT_STATS ? wait_stats_done : NULL, w, &req);
        if (rc == 0) {
            rc = wait_for(c, w, req, deadline);
        }
        if (rc == 0 || !retryable(rc)) {
            break;
        }
        if (c->fd >= 0 && c->inflight == 0) {
            disconnect(c);
        }
    }
    return rc;
}

int dkd_client_stats(dkd_client *c, dkd_client_counters **out)
{
    waiter w;
    *out = NULL;
    int rc = simple_call(c, DKD__WIRE_STATS, SLOT_STATS, &w);
    if (rc == 0) {
        *out = w.counters;
    }
    return rc;
}

int dkd_client_ping(dkd_client *c)
{
    waiter w;
    return simple_call(c, DKD__WIRE_PING, SLOT_PING, &w);
}
