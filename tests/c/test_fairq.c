/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Tests of native/core/fairq.c: the shared helper's queue. Round robin
 * between clients whatever one of them floods, the bound per client with
 * the oldest frame dropped, deadlines (late instead of scored late), and
 * what a client leaves behind when it goes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fairq.h"

static struct fairq_item item_of(uint32_t id, int64_t arrived, int64_t due)
{
    struct fairq_item item = {.id = id, .type = 1, .arrived_ms = arrived, .due_ms = due};

    item.payload = malloc(8);
    item.len = 8;
    memset(item.payload, (int)id, 8);
    return item;
}

/* Pushes, answering (and counting) a dropped item. */
static int push(struct fairq *q, unsigned slot, uint32_t id, int64_t arrived, int64_t due)
{
    struct fairq_item item = item_of(id, arrived, due);
    struct fairq_item dropped;
    bool has_dropped = false;

    CHECK(fairq_push(q, slot, &item, &dropped, &has_dropped) == FAIRQ_OK);
    CHECK(item.payload == NULL); /* the queue owns it now */
    if (!has_dropped)
        return 0;
    fairq_item_clear(&dropped);
    return 1;
}

static void test_round_robin_despite_flood(void)
{
    struct fairq *q = NULL;
    unsigned flood = 0, a = 0, b = 0;
    unsigned served[3] = {0};
    int dropped = 0;

    CHECK(fairq_new(4, &q) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &flood) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &a) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &b) == FAIRQ_OK);
    CHECK(flood != a && a != b && flood != b);
    /* The flooder sends 100 frames; a and b one each. */
    for (uint32_t i = 1; i <= 100; i++)
        dropped += push(q, flood, i, 0, 0);
    CHECK(dropped == 96);
    CHECK(fairq_queued(q, flood) == 4);
    push(q, a, 1000, 0, 0);
    push(q, b, 2000, 0, 0);
    /* a and b are each served within the first three turns. */
    for (int turn = 0; turn < 3; turn++) {
        struct fairq_item item;
        unsigned slot = 99;
        bool late = true;

        CHECK(fairq_next(q, 0, 0, &slot, &item, &late));
        CHECK(!late);
        served[slot == flood ? 0 : slot == a ? 1 : 2]++;
        if (slot == a)
            CHECK(item.id == 1000);
        if (slot == b)
            CHECK(item.id == 2000);
        if (slot == flood)
            CHECK(item.id == 97); /* the oldest four were dropped: 97..100 remain */
        fairq_item_clear(&item);
    }
    CHECK(served[0] == 1 && served[1] == 1 && served[2] == 1);
    CHECK(fairq_total(q) == 3);
    q = fairq_free(q); /* frees what is still queued (ASan checks) */
    CHECK(q == NULL);
}

static void test_turns_alternate(void)
{
    struct fairq *q = NULL;
    unsigned s1 = 0, s2 = 0;
    unsigned last = 99;

    CHECK(fairq_new(8, &q) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &s1) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &s2) == FAIRQ_OK);
    for (uint32_t i = 0; i < 8; i++) {
        push(q, s1, 100 + i, 0, 0);
        push(q, s2, 200 + i, 0, 0);
    }
    /* Strict alternation, each client's items in their order. */
    for (int turn = 0; turn < 16; turn++) {
        struct fairq_item item;
        unsigned slot = 99;
        bool late = true;

        CHECK(fairq_next(q, 0, 0, &slot, &item, &late));
        CHECK(slot != last);
        CHECK(item.id == (slot == s1 ? 100u : 200u) + (uint32_t)(turn / 2));
        last = slot;
        fairq_item_clear(&item);
    }
    {
        struct fairq_item item;
        unsigned slot;
        bool late;
        CHECK(!fairq_next(q, 0, 0, &slot, &item, &late));
    }
    fairq_free(q);
}

static void test_deadlines(void)
{
    struct fairq *q = NULL;
    struct fairq_item item;
    unsigned s = 0, t = 0, slot = 99;
    bool late = false;

    CHECK(fairq_new(4, &q) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &s) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &t) == FAIRQ_OK);
    push(q, s, 1, 0, 1000);   /* due at 1000 */
    push(q, s, 2, 500, 1500); /* due at 1500 */
    push(q, t, 3, 0, 0);      /* a ping: never late */
    CHECK(fairq_earliest_due(q) == 1000);

    /* At 900 with scoring taking 200 ms, frame 1 would be answered at 1100. */
    CHECK(fairq_expire(q, 900, 200, &slot, &item));
    CHECK(slot == s && item.id == 1);
    fairq_item_clear(&item);
    CHECK(!fairq_expire(q, 900, 200, &slot, &item)); /* frame 2 still makes it */
    CHECK(fairq_earliest_due(q) == 1500);

    /* At 1400, frame 2 is handed out as late; its client keeps its turn. */
    CHECK(fairq_next(q, 1400, 200, &slot, &item, &late));
    CHECK(slot == s && item.id == 2 && late);
    fairq_item_clear(&item);
    CHECK(fairq_next(q, 1400, 200, &slot, &item, &late));
    CHECK(slot == t && item.id == 3 && !late);
    fairq_item_clear(&item);
    CHECK(fairq_earliest_due(q) == 0);
    CHECK(fairq_total(q) == 0);

    /* A frame that is on time is served, not expired. */
    push(q, t, 4, 2000, 3000);
    CHECK(!fairq_expire(q, 2500, 100, &slot, &item));
    CHECK(fairq_next(q, 2500, 100, &slot, &item, &late));
    CHECK(item.id == 4 && !late);
    fairq_item_clear(&item);
    fairq_free(q);
}

static void test_client_leaves(void)
{
    struct fairq *q = NULL;
    struct fairq_item item;
    unsigned s = 0, t = 0, again = 99, slot = 99;
    bool late;

    CHECK(fairq_new(2, &q) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &s) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &t) == FAIRQ_OK);
    push(q, s, 1, 0, 0);
    push(q, s, 2, 0, 0);
    push(q, t, 3, 0, 0);
    fairq_remove_client(q, s); /* its frames are freed (ASan checks) */
    CHECK(fairq_total(q) == 1);
    CHECK(fairq_next(q, 0, 0, &slot, &item, &late));
    CHECK(slot == t && item.id == 3);
    fairq_item_clear(&item);
    /* The slot is reused, empty. */
    CHECK(fairq_add_client(q, &again) == FAIRQ_OK);
    CHECK(again == s && fairq_queued(q, again) == 0);
    fairq_free(q);
}

static void test_limits(void)
{
    struct fairq *q = NULL;
    struct fairq_item item = {0};
    struct fairq_item dropped;
    bool has_dropped;
    unsigned slot = 0;

    CHECK(fairq_new(0, &q) == FAIRQ_ERR_INVALID);
    CHECK(fairq_new(FAIRQ_MAX_DEPTH + 1, &q) == FAIRQ_ERR_INVALID);
    CHECK(fairq_new(1, &q) == FAIRQ_OK);
    for (unsigned i = 0; i < FAIRQ_MAX_CLIENTS; i++)
        CHECK(fairq_add_client(q, &slot) == FAIRQ_OK);
    CHECK(fairq_add_client(q, &slot) == FAIRQ_ERR_FULL);
    fairq_remove_client(q, 5);
    CHECK(fairq_push(q, 5, &item, &dropped, &has_dropped) == FAIRQ_ERR_INVALID);
    CHECK(fairq_push(q, FAIRQ_MAX_CLIENTS, &item, &dropped, &has_dropped) ==
          FAIRQ_ERR_INVALID);
    CHECK(fairq_add_client(q, &slot) == FAIRQ_OK && slot == 5);
    fairq_free(q);
    CHECK(fairq_free(NULL) == NULL);
}

int main(void)
{
    RUN_TEST(test_round_robin_despite_flood);
    RUN_TEST(test_turns_alternate);
    RUN_TEST(test_deadlines);
    RUN_TEST(test_client_leaves);
    RUN_TEST(test_limits);
    return CHECK_DONE();
}
