/*
 * client_ring.c - the allocator of libdkimd's shared-memory region (see client_ring.h).
 *
 * Workload: one place + push per message sent through the region and one free per
 * answer, thousands per second per client; all O(1) except the reclaim loop, which in
 * total runs once per message. A gap must be strictly larger than the message when it
 * ends at tail, so that head == tail always means empty and never full.
 */
#include "client_ring.h"

#include "check.h" /* DKD_ASSERT: the ring's own state, never input */


void dkd__client_ring_init(dkd__client_ring *r, size_t size, dkd__client_ring_entry *q,
                           uint32_t cap)
{
    *r = (dkd__client_ring){.size = size, .q = q, .q_cap = cap};
}

bool dkd__client_ring_place(const dkd__client_ring *r, size_t len, size_t *off)
{
    if (len == 0 || r->q_count == r->q_cap) {
        return false;
    }
    /* Freeing the last message resets head and tail, so an empty ring starts at 0. */
    DKD_ASSERT(r->q_count > 0 || (r->head == 0 && r->tail == 0));
    bool wrapped = r->q_count > 0 && r->head < r->tail;
    if (!wrapped) {
        if (r->size - r->head >= len) {
            *off = r->head;
            return true;
        }
        /* Wrap: the gap before tail. */
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

uint32_t dkd__client_ring_push(dkd__client_ring *r, size_t off, size_t len)
{
    DKD_ASSERT(r->q_count < r->q_cap && off + len <= r->size);
    uint32_t pos = (r->q_first + r->q_count) % r->q_cap;
    r->q[pos] = (dkd__client_ring_entry){.off = off, .end = off + len};
    if (r->q_count == 0) {
        r->tail = off;
    }
    r->q_count++;
    r->head = off + len;
    return pos;
}

void dkd__client_ring_free(dkd__client_ring *r, uint32_t pos)
{
    DKD_ASSERT(pos < r->q_cap && !r->q[pos].done);
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
