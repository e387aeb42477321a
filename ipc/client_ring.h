/*
 * client_ring.h - the allocator of libdkimd's shared-memory region.
 *
 * dkd_client_use_shm gives a client one region the daemon maps; each message sent through
 * it needs len contiguous bytes there until the daemon answers. Answers come in any
 * order but most come in the order sent, so the region is a ring: messages are placed
 * one after the other at head and reclaimed from tail, oldest first. An answer that
 * arrives before an older one's only marks its bytes done; they are reclaimed once
 * everything placed before them is. Live bytes are [tail, head), or [tail, size) +
 * [0, head) once head has wrapped.
 *
 * The ring knows offsets only: no memory, no descriptor, no I/O, so it is tested alone
 * (tests/ipc/client_ring_test.c). One allocation record per request in flight, in an
 * array the caller owns (sized to the daemon's max_inflight).
 */
#ifndef DKD_CLIENT_RING_H
#define DKD_CLIENT_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One message's bytes in the region, in placement order. */
typedef struct dkd__client_ring_entry {
    size_t off, end;
    bool done; /* answered: the daemon no longer reads it */
} dkd__client_ring_entry;

typedef struct dkd__client_ring {
    size_t size; /* bytes in the region */
    size_t head, tail;
    dkd__client_ring_entry *q; /* q_cap entries, a circular queue; borrowed */
    uint32_t q_first, q_count, q_cap;
} dkd__client_ring;

/*
 * dkd__client_ring_init makes r an empty ring over size bytes, with q[0..cap) (borrowed,
 * kept until the next init) as its allocation records: at most cap messages live at once.
 */
void dkd__client_ring_init(dkd__client_ring *r, size_t size, dkd__client_ring_entry *q,
                           uint32_t cap);

/*
 * dkd__client_ring_place finds len (> 0) contiguous free bytes: true with *off where they
 * start, false when the ring has no such gap now (or no free record). Changes nothing:
 * dkd__client_ring_push takes the place.
 */
bool dkd__client_ring_place(const dkd__client_ring *r, size_t len, size_t *off);

/* dkd__client_ring_push takes the len bytes at off that dkd__client_ring_place just
 * found, and returns the record's position for dkd__client_ring_free. */
uint32_t dkd__client_ring_push(dkd__client_ring *r, size_t off, size_t len);

/* dkd__client_ring_free marks the message at pos done and reclaims the done messages at
 * the tail. */
void dkd__client_ring_free(dkd__client_ring *r, uint32_t pos);

#endif
