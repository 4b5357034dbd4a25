/*  held — jobs waiting for a worker and outcomes waiting to go out. See
    held.h.

    Two zlistx lists that own their items. A held job's handle is its place
    in the FIFO, so taking one out is O(1) wherever it stands; the FIFO is
    in arrival order (a job put back at the head arrived before the rest),
    which makes the first returnable job the oldest one.
*/
#include "held.h"
#include "tests/testutil.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct held_t {
    zlistx_t *fifo;    // jm_job_t, owned, arrival order
    zlistx_t *outbox;  // held_outcome_t, owned, oldest first
};

static void
s_outcome_destroy (held_outcome_t **outcome_p)
{
    held_outcome_t *outcome = *outcome_p;
    if (!outcome)
        return;
    free (outcome->ref);
    free (outcome->value);
    free (outcome->usage);
    free (outcome);
    *outcome_p = NULL;
}

static void
s_outcome_destructor (void **item)
{
    s_outcome_destroy ((held_outcome_t **) item);
}

held_t *
held_new (void)
{
    held_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fifo = zlistx_new ();
    self->outbox = zlistx_new ();
    if (!self->fifo || !self->outbox) {
        held_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->fifo, jm_job_destructor);
    zlistx_set_destructor (self->outbox, s_outcome_destructor);
    return self;
}

void
held_destroy (held_t **self_p)
{
    assert (self_p);
    held_t *self = *self_p;
    if (!self)
        return;
    zlistx_destroy (&self->fifo);
    zlistx_destroy (&self->outbox);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  The FIFO

static int
s_push (held_t *self, jm_job_t **job_p, bool front)
{
    assert (self && job_p && *job_p);
    jm_job_t *job = *job_p;
    *job_p = NULL;
    job->handle =
        front ? zlistx_add_start (self->fifo, job) : zlistx_add_end (self->fifo, job);
    if (job->handle)
        return 0;
    jm_job_destroy (&job);
    return -1;
}

int
held_push (held_t *self, jm_job_t **job_p)
{
    return s_push (self, job_p, false);
}

int
held_push_front (held_t *self, jm_job_t **job_p)
{
    return s_push (self, job_p, true);
}

//  Takes job out of the FIFO; the caller owns it.
static jm_job_t *
s_detach (held_t *self, jm_job_t *job)
{
    zlistx_detach (self->fifo, job->handle);
    job->handle = NULL;
    return job;
}

jm_job_t *
held_pop (held_t *self)
{
    assert (self);
    jm_job_t *job = zlistx_first (self->fifo);
    return job ? s_detach (self, job) : NULL;
}

size_t
held_size (held_t *self)
{
    assert (self);
    return zlistx_size (self->fifo);
}

jm_job_t *
held_cancel (held_t *self, const char *msgid, uint64_t epoch)
{
    assert (self && msgid);
    for (jm_job_t *job = zlistx_first (self->fifo); job; job = zlistx_next (self->fifo))
        if (streq (job->msgid, msgid) && (!epoch || epoch == job->epoch))
            return s_detach (self, job);
    return NULL;
}

//  The oldest job that may go back (see held.h), or NULL.
static jm_job_t *
s_first_returnable (held_t *self, uint64_t connection, size_t skip)
{
    for (jm_job_t *job = zlistx_first (self->fifo); job; job = zlistx_next (self->fifo)) {
        if (skip > 0)
            skip--;
        else if (job->connection == connection)
            return job;
    }
    return NULL;
}

jm_job_t *
held_due (held_t *self, uint64_t connection, size_t skip, int64_t hold_ms, int64_t now_ms)
{
    assert (self);
    if (hold_ms == 0)
        return NULL;
    jm_job_t *job = s_first_returnable (self, connection, skip);
    return job && now_ms - job->received_ms >= hold_ms ? job : NULL;
}

int64_t
held_deadline (held_t *self, uint64_t connection, size_t skip, int64_t hold_ms)
{
    assert (self);
    if (hold_ms == 0)
        return -1;
    jm_job_t *job = s_first_returnable (self, connection, skip);
    return job ? job->received_ms + hold_ms : -1;
}

void
held_drop (held_t *self, jm_job_t *job)
{
    assert (self && job && job->handle);
    zlistx_delete (self->fifo, job->handle);
}

//  --------------------------------------------------------------------------
//  The outbox

int
held_keep_outcome (held_t *self, const char *ref, uint64_t epoch, emqp_status_t status,
                   const char *value, size_t value_size, const char *usage)
{
    assert (self && ref && usage);
    held_outcome_t *outcome = calloc (1, sizeof *outcome);
    if (!outcome)
        return -1;
    outcome->ref = strdup (ref);
    outcome->epoch = epoch;
    outcome->status = status;
    outcome->usage = strdup (usage);
    outcome->value = malloc (value_size ? value_size : 1);
    outcome->value_size = value_size;
    if (outcome->value && value_size)
        memcpy (outcome->value, value, value_size);
    if (!outcome->ref || !outcome->usage || !outcome->value
        || !zlistx_add_end (self->outbox, outcome)) {
        s_outcome_destroy (&outcome);
        return -1;
    }
    return 0;
}

const held_outcome_t *
held_outcome_first (held_t *self)
{
    assert (self);
    return zlistx_first (self->outbox);
}

const held_outcome_t *
held_outcome_next (held_t *self)
{
    assert (self);
    return zlistx_next (self->outbox);
}

void
held_sent (held_t *self)
{
    assert (self);
    if (zlistx_first (self->outbox))
        zlistx_delete (self->outbox, zlistx_cursor (self->outbox));
}

size_t
held_outcomes (held_t *self)
{
    assert (self);
    return zlistx_size (self->outbox);
}

json_t *
held_json (held_t *self)
{
    assert (self);
    //  Jobs waiting here for a worker, and ended ones whose DONE has not
    //  gone out: with jobs_in_flight, every job the router may think we
    //  hold (it requeues one missing from both whose epoch is at most
    //  max_epoch: its REQUEST was lost, not late).
    json_t *held = json_array ();
    for (jm_job_t *job = zlistx_first (self->fifo); held && job;
         job = zlistx_next (self->fifo))
        json_array_append_new (held, json_string (job->msgid));
    for (held_outcome_t *outcome = zlistx_first (self->outbox); held && outcome;
         outcome = zlistx_next (self->outbox))
        json_array_append_new (held, json_string (outcome->ref));
    return held;
}

//  --------------------------------------------------------------------------
//  Self test

//  A job as a REQUEST would make it: msgid, epoch, connection, received_ms.
static jm_job_t *
s_test_job (const char *msgid, uint64_t epoch, uint64_t connection, int64_t received_ms)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    if (!msg)
        return NULL;
    msg->msgid = strdup (msgid);
    msg->epoch = epoch;
    jm_job_t *job = jm_job_new (msg, connection, received_ms);
    emqp_msg_destroy (&msg);
    return job;
}

//  The held list as one string, e.g. "a b c".
static void
s_test_list (held_t *held, char *out, size_t size)
{
    json_t *list = held_json (held);
    size_t index;
    json_t *item;
    out[0] = 0;
    json_array_foreach (list, index, item)
    {
        size_t len = strlen (out);
        snprintf (out + len, size - len, "%s%s", index ? " " : "",
                  json_string_value (item));
    }
    json_decref (list);
}

void
held_test (bool verbose)
{
    if (verbose)
        printf (" * held: ");
    held_t *held = held_new ();
    REQUIRE (held);
    char list[256];

    //  The FIFO: in order, one put back at the head comes first again.
    const char *names[] = { "a", "b", "c", "d" };
    for (int i = 0; i < 4; i++) {
        jm_job_t *job = s_test_job (names[i], 10 + (uint64_t) i, i < 1 ? 1 : 2, 100 * i);
        REQUIRE (job);
        CHECK (held_push (held, &job) == 0 && job == NULL);
    }
    CHECK_EQ (held_size (held), 4);
    s_test_list (held, list, sizeof list);
    CHECK_STREQ (list, "a b c d");
    jm_job_t *job = held_pop (held);
    CHECK (job && streq (job->msgid, "a") && job->handle == NULL);
    CHECK (held_push_front (held, &job) == 0);
    s_test_list (held, list, sizeof list);
    CHECK_STREQ (list, "a b c d");

    //  Cancel: by msgid, with the right epoch or none.
    CHECK (held_cancel (held, "c", 99) == NULL);
    job = held_cancel (held, "c", 12);
    CHECK (job && streq (job->msgid, "c"));
    jm_job_destroy (&job);
    CHECK (held_cancel (held, "nope", 0) == NULL);
    CHECK_EQ (held_size (held), 3);

    //  What may go back: "a" came on connection 1, the others on 2. On
    //  connection 2, "b" (received at 100) is the first, due from 100 + 50.
    CHECK (held_due (held, 2, 0, 50, 149) == NULL);
    job = held_due (held, 2, 0, 50, 150);
    CHECK (job && streq (job->msgid, "b"));
    CHECK_EQ (held_deadline (held, 2, 0, 50), 150);
    //  Skipping the first two in line (workers starting take them): "d".
    job = held_due (held, 2, 2, 50, 1000);
    CHECK (job && streq (job->msgid, "d"));
    CHECK_EQ (held_deadline (held, 2, 2, 50), 350);
    //  Nothing on connection 3, nothing with hold_ms 0, nothing past the end.
    CHECK (held_due (held, 3, 0, 50, 1000) == NULL
           && held_deadline (held, 3, 0, 50) == -1);
    CHECK (held_due (held, 2, 0, 0, 1000) == NULL && held_deadline (held, 2, 0, 0) == -1);
    CHECK (held_deadline (held, 2, 3, 50) == -1);
    //  The oldest due goes first; a too young one ends the returns.
    job = held_due (held, 2, 0, 50, 200);
    REQUIRE (job);
    held_drop (held, job);
    CHECK (held_due (held, 2, 0, 50, 200) == NULL);
    s_test_list (held, list, sizeof list);
    CHECK_STREQ (list, "a d");

    //  The outbox: copies kept in order, listed after the waiting jobs.
    CHECK (held_outcome_first (held) == NULL && held_outcomes (held) == 0);
    CHECK (held_keep_outcome (held, "x", 5, EMQP_STATUS_OK, "\x01\x02", 2, "wall_us=1")
           == 0);
    CHECK (held_keep_outcome (held, "y", 6, EMQP_STATUS_FAILED, "", 0, "wall_us=2") == 0);
    CHECK_EQ (held_outcomes (held), 2);
    s_test_list (held, list, sizeof list);
    CHECK_STREQ (list, "a d x y");
    const held_outcome_t *outcome = held_outcome_first (held);
    CHECK (outcome && streq (outcome->ref, "x") && outcome->epoch == 5);
    CHECK (outcome && outcome->value_size == 2
           && memcmp (outcome->value, "\x01\x02", 2) == 0);
    CHECK (outcome && outcome->status == EMQP_STATUS_OK
           && streq (outcome->usage, "wall_us=1"));
    held_sent (held);
    outcome = held_outcome_first (held);
    CHECK (outcome && streq (outcome->ref, "y") && outcome->value_size == 0);
    held_sent (held);
    CHECK (held_outcome_first (held) == NULL);
    held_sent (held);  // nothing to drop: fine

    //  Destroy frees what is left (valgrind checks it).
    CHECK (held_keep_outcome (held, "z", 7, EMQP_STATUS_OK, "v", 1, "u") == 0);
    held_destroy (&held);
    CHECK (held == NULL);
    held_destroy (&held);
    if (verbose)
        printf ("OK\n");
}
