/*
 * client_ring_test.c - libdkimd's shared-region allocator (ipc/client_ring.c): placement,
 * wrap-around, answers out of order, the record limit, and a long random run checked
 * against a naive reference that knows every live message's bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client_ring.h"

static size_t place(const dkd__client_ring *r, size_t len)
{
    size_t off = (size_t)-1;
    assert_true(dkd__client_ring_place(r, len, &off));
    return off;
}

static bool fits(const dkd__client_ring *r, size_t len)
{
    size_t off;
    return dkd__client_ring_place(r, len, &off);
}

static void test_empty(void **state)
{
    (void)state;
    dkd__client_ring_entry q[4];
    dkd__client_ring r;
    dkd__client_ring_init(&r, 100, q, 4);
    assert_false(fits(&r, 0)); /* nothing to place */
    assert_false(fits(&r, 101));
    assert_int_equal(place(&r, 100), 0); /* the whole region, when it is empty */
    assert_int_equal(place(&r, 1), 0);
}

static void test_in_order_and_out_of_order(void **state)
{
    (void)state;
    dkd__client_ring_entry q[4];
    dkd__client_ring r;
    dkd__client_ring_init(&r, 100, q, 4);
    uint32_t a = dkd__client_ring_push(&r, place(&r, 30), 30);
    assert_int_equal(place(&r, 30), 30);
    uint32_t b = dkd__client_ring_push(&r, 30, 30);
    uint32_t c = dkd__client_ring_push(&r, place(&r, 40), 40);
    assert_int_equal(r.head, 100);
    assert_false(fits(&r, 1)); /* full: tail is 0 */

    /* The newer answer first: its bytes stay taken until the older one's are free. */
    dkd__client_ring_free(&r, b);
    assert_int_equal(r.q_count, 3);
    assert_int_equal(r.tail, 0);
    assert_false(fits(&r, 1));

    /* Then the oldest: both are reclaimed at once. */
    dkd__client_ring_free(&r, a);
    assert_int_equal(r.q_count, 1);
    assert_int_equal(r.tail, 60);
    assert_int_equal(place(&r, 59), 0); /* wraps; 60 would make head == tail */
    assert_false(fits(&r, 60));

    /* The last one: the ring is empty and starts over at 0. */
    dkd__client_ring_free(&r, c);
    assert_int_equal(r.q_count, 0);
    assert_int_equal(r.head, 0);
    assert_int_equal(r.tail, 0);
    assert_int_equal(place(&r, 100), 0);
}

static void test_wrapped(void **state)
{
    (void)state;
    dkd__client_ring_entry q[8];
    dkd__client_ring r;
    dkd__client_ring_init(&r, 100, q, 8);
    uint32_t a = dkd__client_ring_push(&r, place(&r, 40), 40);
    dkd__client_ring_push(&r, place(&r, 40), 40);
    dkd__client_ring_free(&r, a); /* live: [40, 80) */
    assert_int_equal(place(&r, 20), 80); /* still fits before the end */
    assert_int_equal(place(&r, 30), 0);  /* does not: wraps to the gap before tail */
    dkd__client_ring_push(&r, 0, 30);    /* live: [40, 80) + [0, 30) */
    assert_int_equal(place(&r, 9), 30);  /* between head and tail, strictly smaller */
    assert_false(fits(&r, 10));
    assert_false(fits(&r, 20)); /* the 20 bytes at the end are not reachable once wrapped */
}

static void test_record_limit(void **state)
{
    (void)state;
    dkd__client_ring_entry q[2];
    dkd__client_ring r;
    dkd__client_ring_init(&r, 1000, q, 2);
    dkd__client_ring_push(&r, place(&r, 10), 10);
    uint32_t b = dkd__client_ring_push(&r, place(&r, 10), 10);
    assert_false(fits(&r, 10)); /* room, but no record left */
    dkd__client_ring_free(&r, b);
    assert_false(fits(&r, 10)); /* b's record waits for the older one */
    dkd__client_ring_free(&r, 0);
    assert_true(fits(&r, 10));
}

/* ---- random run against a reference ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

enum { RSIZE = 4096, RCAP = 16, STEPS = 200000 };

/* The reference: every message placed and not yet reclaimed, oldest first (answered or
 * not), and which bytes of the region they hold. */
typedef struct ref_msg {
    size_t off, len;
    uint32_t pos;
    bool answered;
} ref_msg;

static void test_random_against_reference(void **state)
{
    (void)state;
    dkd__client_ring_entry q[RCAP];
    dkd__client_ring r;
    dkd__client_ring_init(&r, RSIZE, q, RCAP);
    ref_msg live[RCAP];
    size_t nlive = 0;
    size_t placed = 0;
    for (int step = 0; step < STEPS; step++) {
        if (rnd() % 2 == 0) {
            /* Mostly small messages, now and then one of a large part of the region. */
            size_t len = rnd() % 8 == 0 ? 1 + rnd() % RSIZE : 1 + rnd() % 300;
            size_t off;
            if (!dkd__client_ring_place(&r, len, &off)) {
                assert_true(nlive > 0); /* an empty ring takes anything up to its size */
                continue;
            }
            assert_true(off + len <= RSIZE);
            assert_true(nlive < RCAP);
            for (size_t k = 0; k < nlive; k++) {
                /* No overlap with any unreclaimed message, answered or not: the daemon
                 * may still be reading an unanswered one, and an answered one behind an
                 * older message is reclaimed later, not now. */
                bool apart = off + len <= live[k].off || live[k].off + live[k].len <= off;
                assert_true(apart);
            }
            uint32_t pos = dkd__client_ring_push(&r, off, len);
            live[nlive++] = (ref_msg){.off = off, .len = len, .pos = pos};
            placed++;
        } else if (nlive > 0) {
            /* Answers in any order, mostly the oldest ones first. */
            size_t k = rnd() % 4 == 0 ? rnd() % nlive : 0;
            while (k < nlive && live[k].answered) {
                k++;
            }
            if (k == nlive) {
                continue;
            }
            live[k].answered = true;
            dkd__client_ring_free(&r, live[k].pos);
            size_t drop = 0;
            while (drop < nlive && live[drop].answered) {
                drop++;
            }
            memmove(live, live + drop, (nlive - drop) * sizeof live[0]);
            nlive -= drop;
        }
        assert_int_equal(r.q_count, nlive);
        if (nlive > 0) {
            assert_int_equal(r.tail, live[0].off);
            assert_int_equal(r.head, live[nlive - 1].off + live[nlive - 1].len);
        } else {
            assert_int_equal(r.head, 0);
            assert_int_equal(r.tail, 0);
        }
    }
    assert_true(placed > STEPS / 4); /* the run did exercise the ring */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_in_order_and_out_of_order),
        cmocka_unit_test(test_wrapped),
        cmocka_unit_test(test_record_limit),
        cmocka_unit_test(test_random_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
