/*  job — the router's job record and its state machine. See job.h and
    docs/job-states.md (the same table as s_next below; job_test reads the
    document and checks every cell against it).
*/
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_state_names[JOB_STATE_COUNT] = { "pending", "queued", "running",
                                                      "scheduled", "ended" };

static const char *s_event_names[JOB_EV_COUNT] = { "accept",   "delay",   "due",
                                                   "dispatch", "resume",  "requeue",
                                                   "return",   "succeed", "retry",
                                                   "fail",     "cancel" };

#define S_NONE -1
#define P JOB_PENDING
#define Q JOB_QUEUED
#define R JOB_RUNNING
#define S JOB_SCHEDULED
#define E JOB_ENDED
#define _ S_NONE

//  state x event -> next state. A pending job has no row yet: only its
//  commit moves it (a refused one is deleted, never moved). An ended job
//  moves no more: its record only waits for the store.
// clang-format off
static const signed char s_next[JOB_STATE_COUNT][JOB_EV_COUNT] = {
    //          accept delay due dispatch resume requeue return succeed retry fail cancel
    [JOB_PENDING]   = { Q, S, _, _, _, _, _, _, _, _, _ },
    [JOB_QUEUED]    = { _, _, _, R, R, _, _, _, _, _, E },
    [JOB_RUNNING]   = { _, _, _, _, _, Q, Q, E, S, E, E },
    [JOB_SCHEDULED] = { _, _, Q, _, _, _, _, _, _, _, E },
    [JOB_ENDED]     = { _, _, _, _, _, _, _, _, _, _, _ },
};
// clang-format on

#undef P
#undef Q
#undef R
#undef S
#undef E
#undef _

int
job_next (job_state_t state, job_event_t event)
{
    if ((unsigned) state >= JOB_STATE_COUNT || (unsigned) event >= JOB_EV_COUNT)
        return S_NONE;
    return s_next[state][event];
}

int
job_fire (job_t *job, job_event_t event, job_counts_t *counts)
{
    assert (job);
    int next = job_next ((job_state_t) job->state, event);
    if (next == S_NONE)
        return -1;
    job_counts_t spare = { 0 };
    if (!counts)
        counts = &spare;
    //  In flight is "in RUNNING": whatever leaves or enters it counts.
    if (job->state == JOB_RUNNING && counts->inflight > 0)
        counts->inflight--;
    if (next == JOB_RUNNING)
        counts->inflight++;
    switch (event) {
        case JOB_EV_DISPATCH:
            job->attempt++;
            counts->dispatched++;
            job_set_flag (job, JOB_RETURNED, false);
            break;
        case JOB_EV_RETURN:
            //  Never started: the attempt does not count.
            if (job->attempt > 0)
                job->attempt--;
            job_set_flag (job, JOB_RETURNED, true);
            break;
        case JOB_EV_SUCCEED:
            counts->processed++;
            break;
        case JOB_EV_FAIL:
            counts->failed++;
            break;
        default:
            break;
    }
    job->state = (uint8_t) next;
    return 0;
}

const char *
job_state_name (int state)
{
    return state >= 0 && state < JOB_STATE_COUNT ? s_state_names[state] : "?";
}

const char *
job_event_name (int event)
{
    return event >= 0 && event < JOB_EV_COUNT ? s_event_names[event] : "?";
}

//  --------------------------------------------------------------------------
//  Msgids: a canonical lowercase UUID (what libemq and EventMQ generate) is
//  kept as its 16 bytes; anything else as text.

static int
s_hex (char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

//  Packs text into out (16 bytes) if it is a canonical UUID; returns true.
static bool
s_uuid_pack (const char *text, size_t size, uint8_t out[16])
{
    if (size != 36)
        return false;
    for (size_t i = 0, n = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i++] != '-')
                return false;
            continue;
        }
        int hi = s_hex (text[i]), lo = s_hex (text[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[n++] = (uint8_t) (hi << 4 | lo);
        i += 2;
    }
    return true;
}

static void
s_uuid_format (const uint8_t in[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[in[i] >> 4];
        *p++ = hex[in[i] & 15];
    }
    *p = 0;
}

size_t
job_msgid_size (const char *msgid)
{
    size_t size = strlen (msgid);
    if (size > EMQP_MSGID_MAX)
        return 0;
    uint8_t uuid[16];
    return s_uuid_pack (msgid, size, uuid) ? 16 : size + 1;
}

size_t
job_msgid_store (job_t *job, const char *msgid)
{
    size_t size = strlen (msgid);
    if (size > EMQP_MSGID_MAX)
        return 0;
    if (s_uuid_pack (msgid, size, (uint8_t *) job->data)) {
        job->flags |= JOB_MSGID_UUID;
        job->msgid_size = 16;
    }
    else {
        memcpy (job->data, msgid, size + 1);
        job->msgid_size = (uint8_t) (size + 1);
    }
    return job->msgid_size;
}

const char *
job_msgid (const job_t *job, job_msgid_t *buf)
{
    if (!job_flag (job, JOB_MSGID_UUID))
        return job->data;
    s_uuid_format ((const uint8_t *) job->data, buf->text);
    return buf->text;
}

const void *
job_payload (const job_t *job)
{
    return job->data + job->msgid_size;
}

uint64_t
job_epoch (const job_t *job)
{
    if (!job_flag (job, JOB_LINKED))
        return job->epoch;
    return job->more ? job->more->prior_epoch : 0;
}

job_more_t *
job_more (job_t *job)
{
    if (!job->more)
        job->more = calloc (1, sizeof (job_more_t));
    return job->more;
}

void
job_free (job_t *job)
{
    if (!job)
        return;
    if (job->more) {
        zlistx_destroy (&job->more->watchers);
        zframe_destroy (&job->more->end_value);
        free (job->more->end_usage);
        free (job->more);
    }
    free (job);
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

//  Finds docs/job-states.md: $EMQ_DOCS/job-states.md, else docs/ under the
//  working directory (tests/run runs from the top of the tree).
static FILE *
s_open_doc (void)
{
    char path[1024];
    const char *dir = getenv ("EMQ_DOCS");
    snprintf (path, sizeof path, "%s/job-states.md", dir && *dir ? dir : "docs");
    return fopen (path, "r");
}

//  Splits a markdown table row "| a | b |" into trimmed cells (in place);
//  returns the number of cells.
static int
s_cells (char *line, char **cells, int max)
{
    int count = 0;
    char *p = strchr (line, '|');
    while (p && count < max) {
        char *start = p + 1;
        char *end = strchr (start, '|');
        if (!end)
            break;
        *end = 0;
        while (*start == ' ' || *start == '`')
            start++;
        char *last = end - 1;
        while (last >= start && (*last == ' ' || *last == '`'))
            *last-- = 0;
        cells[count++] = start;
        p = end;
    }
    return count;
}

static int
s_state_lookup (const char *name)
{
    for (int i = 0; i < JOB_STATE_COUNT; i++)
        if (streq (name, s_state_names[i]))
            return i;
    return S_NONE;
}

//  The table of docs/job-states.md (the one whose header starts with
//  "state \ event") must hold exactly what job_next says.
static void
s_test_doc_table (void)
{
    FILE *doc = s_open_doc ();
    CHECK (doc != NULL);
    if (!doc)
        return;
    char line[1024];
    int events[JOB_EV_COUNT + 1];
    int columns = 0, rows = 0;
    bool seen[JOB_STATE_COUNT] = { false };
    while (fgets (line, sizeof line, doc)) {
        char *cells[JOB_EV_COUNT + 2];
        int count = s_cells (line, cells, JOB_EV_COUNT + 2);
        if (count < 2)
            continue;
        if (strncmp (cells[0], "state \\ event", 13) == 0) {
            columns = count - 1;
            CHECK_EQ (columns, JOB_EV_COUNT);
            for (int i = 1; i < count && i <= JOB_EV_COUNT; i++) {
                events[i - 1] = S_NONE;
                for (int e = 0; e < JOB_EV_COUNT; e++)
                    if (streq (cells[i], s_event_names[e]))
                        events[i - 1] = e;
                CHECK (events[i - 1] != S_NONE);
            }
            continue;
        }
        int state = columns ? s_state_lookup (cells[0]) : S_NONE;
        if (state == S_NONE)
            continue;
        CHECK_EQ (count - 1, columns);
        seen[state] = true;
        rows++;
        for (int i = 1; i < count && i <= columns; i++) {
            int want = job_next ((job_state_t) state, (job_event_t) events[i - 1]);
            int got = streq (cells[i], "-") || streq (cells[i], "—")
                          ? S_NONE
                          : s_state_lookup (cells[i]);
            if (got != want)
                printf ("job_test: docs/job-states.md says %s + %s -> %s; the code: %s\n",
                        s_state_names[state], s_event_names[events[i - 1]], cells[i],
                        want == S_NONE ? "-" : s_state_names[want]);
            CHECK_EQ (got, want);
        }
    }
    fclose (doc);
    CHECK_EQ (rows, JOB_STATE_COUNT);
    for (int i = 0; i < JOB_STATE_COUNT; i++)
        CHECK (seen[i]);
}

void
job_test (bool verbose)
{
    if (verbose)
        printf (" * job: ");
    job_t *job = calloc (1, sizeof (job_t) + 64);
    CHECK (job != NULL);
    job_counts_t counts = { 0 };

    //  A job's life: committed, dispatched, returned, dispatched, retried,
    //  due, dispatched, ended well.
    CHECK_EQ (job->state, JOB_PENDING);
    CHECK_EQ (job_fire (job, JOB_EV_DISPATCH, &counts), -1);  // no row yet
    CHECK_EQ (job->state, JOB_PENDING);
    CHECK_EQ (job_fire (job, JOB_EV_ACCEPT, &counts), 0);
    CHECK_EQ (job->state, JOB_QUEUED);
    CHECK_EQ (job_fire (job, JOB_EV_DISPATCH, &counts), 0);
    CHECK (job->state == JOB_RUNNING && job->attempt == 1);
    CHECK (counts.inflight == 1 && counts.dispatched == 1);
    CHECK_EQ (job_fire (job, JOB_EV_RETURN, &counts), 0);
    CHECK (job->state == JOB_QUEUED && job->attempt == 0 && job_flag (job, JOB_RETURNED));
    CHECK_EQ (counts.inflight, 0);
    CHECK_EQ (job_fire (job, JOB_EV_DISPATCH, &counts), 0);
    CHECK (!job_flag (job, JOB_RETURNED) && job->attempt == 1 && counts.dispatched == 2);
    CHECK_EQ (job_fire (job, JOB_EV_RETRY, &counts), 0);
    CHECK (job->state == JOB_SCHEDULED && counts.inflight == 0 && counts.failed == 0);
    CHECK_EQ (job_fire (job, JOB_EV_DISPATCH, &counts), -1);  // not due yet
    CHECK_EQ (job_fire (job, JOB_EV_DUE, &counts), 0);
    CHECK_EQ (job_fire (job, JOB_EV_DISPATCH, &counts), 0);
    CHECK_EQ (job->attempt, 2);
    CHECK_EQ (job_fire (job, JOB_EV_SUCCEED, &counts), 0);
    CHECK (job->state == JOB_ENDED && counts.processed == 1 && counts.inflight == 0);
    //  Ended is final: every event is refused and nothing changes.
    for (int e = 0; e < JOB_EV_COUNT; e++)
        CHECK_EQ (job_fire (job, (job_event_t) e, &counts), -1);
    CHECK (counts.processed == 1 && counts.dispatched == 3 && counts.failed == 0);

    //  A job running before a restart resumes on its old dispatch's DONE;
    //  a failure for good counts as failed; a cancel ends a waiting job.
    job->state = JOB_QUEUED;
    CHECK_EQ (job_fire (job, JOB_EV_RESUME, &counts), 0);
    CHECK (job->state == JOB_RUNNING && counts.inflight == 1 && counts.dispatched == 3);
    CHECK_EQ (job_fire (job, JOB_EV_FAIL, &counts), 0);
    CHECK (counts.failed == 1 && counts.inflight == 0);
    job->state = JOB_SCHEDULED;
    CHECK_EQ (job_fire (job, JOB_EV_CANCEL, NULL), 0);
    CHECK_EQ (job->state, JOB_ENDED);

    //  Every pair: a move lands on a real state, a refusal changes nothing.
    for (int s = 0; s < JOB_STATE_COUNT; s++)
        for (int e = 0; e < JOB_EV_COUNT; e++) {
            job->state = (uint8_t) s;
            int next = job_next ((job_state_t) s, (job_event_t) e);
            CHECK (next == S_NONE || (next >= 0 && next < JOB_STATE_COUNT));
            CHECK_EQ (job_fire (job, (job_event_t) e, NULL), next == S_NONE ? -1 : 0);
            CHECK_EQ (job->state, next == S_NONE ? s : next);
        }
    CHECK_EQ (job_next (JOB_STATE_COUNT, JOB_EV_ACCEPT), S_NONE);
    CHECK_EQ (job_next (JOB_QUEUED, JOB_EV_COUNT), S_NONE);
    CHECK_STREQ (job_state_name (JOB_SCHEDULED), "scheduled");
    CHECK_STREQ (job_event_name (JOB_EV_REQUEUE), "requeue");
    CHECK_STREQ (job_state_name (99), "?");

    //  Msgids: a canonical UUID is packed into 16 bytes.
    const char *uuid = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
    CHECK_EQ (job_msgid_size (uuid), 16);
    CHECK_EQ (job_msgid_store (job, uuid), 16);
    CHECK (job_flag (job, JOB_MSGID_UUID));
    CHECK_STREQ (JOB_MSGID (job), uuid);
    CHECK_EQ (job_msgid_size ("m1"), 3);
    job_free (job);

    s_test_doc_table ();
    if (verbose)
        printf ("OK\n");
}
