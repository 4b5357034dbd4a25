/*  batching — integration tests of emq/3 batches (docs/protocol.md): real
    routers and job managers, libemq's emq_submit_many, an EventMQ-style
    job manager beside an emq one, and raw BATCHes with bad messages in
    them. Registered in the integration runner (tests/integration.c).
*/
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define S_QUEUES "[[10,\"default\"]]"

//  A STATUS number under traffic (-1: missing).
static long long
s_traffic (h_test_t *t, const char *key)
{
    json_t *status = h_admin (t, "STATUS");
    long long value = h_jint (status, -1, "traffic", key, NULL);
    json_decref (status);
    return value;
}

//  A libemq client that has submitted one no-op job and had its ACK (the
//  router's ACK tells libemq that it takes batches), with count more no-op
//  payloads ready for emq_submit_many (the caller frees *payload).
typedef struct {
    emq_client_t *client;
    void *payload;
    size_t size;
    const void **payloads;
    size_t *sizes;
} s_batcher_t;

static void
s_batcher_start (h_test_t *t, s_batcher_t *b, size_t count)
{
    b->client = emq_client_new (t->frontend);
    REQUIRE (b->client);
    h_payload_run ("noop", NULL, &b->payload, &b->size);
    emq_submit_opts_t opts = { .reply = true };
    char msgid[37];
    int rc = emq_submit (b->client, &opts, b->payload, b->size, msgid, h_ms (5000));
    REQUIRE_MSG (rc == 0, "first submit: %d (%s)", rc, emq_client_last_error (b->client));
    b->payloads = calloc (count, sizeof (void *));
    b->sizes = calloc (count, sizeof (size_t));
    REQUIRE (b->payloads && b->sizes);
    for (size_t i = 0; i < count; i++) {
        b->payloads[i] = b->payload;
        b->sizes[i] = b->size;
    }
}

static void
s_batcher_stop (s_batcher_t *b)
{
    emq_client_destroy (&b->client);
    free (b->payload);
    free (b->payloads);
    free (b->sizes);
}

//  Jobs a batch cannot all hold are refused one by one: with queue_hwm 100
//  and nobody to run them, 1 + 150 submitted give 100 ACKs and 51 errors
//  QUEUE_FULL, whatever batches they travelled in; then every accepted job
//  runs once.
static void
test_batch_mixed (h_test_t *t)
{
    h_router (t, "router", "--queue-hwm", "100", NULL);
    enum { JOBS = 150 };
    s_batcher_t b;
    s_batcher_start (t, &b, JOBS);
    emq_client_t *client = b.client;
    char (*msgids)[37] = calloc (JOBS, 37);
    REQUIRE (msgids);
    emq_submit_opts_t opts = { .reply = true };
    size_t sent = 0;
    int rc = emq_submit_many (client, &opts, b.payloads, b.sizes, JOBS, msgids, &sent);
    REQUIRE_MSG (rc == 0, "emq_submit_many: %d (%s)", rc, emq_client_last_error (client));
    REQUIRE_INT (sent, ==, JOBS);

    zhashx_t *accepted = zhashx_new ();
    int acks = 0, full = 0;
    int64_t deadline = clock_mono_ms () + h_ms (10000);
    while (acks + full < JOBS) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d ACKs and %d QUEUE_FULL of %d", acks,
                     full, JOBS);
        emq_event_t event;
        if (emq_poll (client, 100, &event))
            continue;
        if (event.type == EMQ_EVENT_ACK) {
            REQUIRE_MSG (!zhashx_lookup (accepted, event.msgid), "%s ACKed twice",
                         event.msgid);
            zhashx_insert (accepted, event.msgid, (void *) 1);
            acks++;
        }
        else if (event.type == EMQ_EVENT_ERROR) {
            REQUIRE_STREQ (event.code, "QUEUE_FULL");
            full++;
        }
    }
    h_log (t, "%d ACKed, %d refused QUEUE_FULL", acks, full);
    REQUIRE_INT (acks, ==, 99);
    REQUIRE_INT (full, ==, 51);
    //  They came in batches and were answered in batches.
    REQUIRE_INT (s_traffic (t, "batches_in"), >=, 1);
    REQUIRE_INT (s_traffic (t, "batched_in"), >=, JOBS);
    REQUIRE_INT (s_traffic (t, "batches_out"), >=, 1);

    //  Now a job manager: every accepted job (and the first) runs once.
    h_jm (t, "jm", S_QUEUES, 2, NULL);
    int results = 0, first = 0;
    zhashx_t *ended = zhashx_new ();
    deadline = clock_mono_ms () + h_ms (20000);
    while (results < acks + 1) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d of %d results", results, acks + 1);
        emq_event_t event;
        if (emq_poll (client, 100, &event) || event.type != EMQ_EVENT_RESULT)
            continue;
        REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s ended %s", event.msgid,
                     emq_job_status_name (event.status));
        REQUIRE_MSG (!zhashx_lookup (ended, event.msgid), "two RESULTs for %s",
                     event.msgid);
        zhashx_insert (ended, event.msgid, (void *) 1);
        if (!zhashx_lookup (accepted, event.msgid))
            first++;
        results++;
    }
    REQUIRE_INT (first, ==, 1);
    zhashx_destroy (&ended);
    zhashx_destroy (&accepted);
    free (msgids);
    s_batcher_stop (&b);
}

//  A raw BATCH with bad messages in it: each bad one gets its own ERROR
//  (naming its msgid), the good ones their ACKs; a BATCH that is not one
//  is refused whole, and the router goes on.
static void
test_batch_bad_messages (h_test_t *t)
{
    h_router (t, "router", NULL);
    zsock_t *client = h_dealer (t->frontend, "client-raw");
    REQUIRE (client);
    emqp_batch_t *batch = emqp_batch_new ();
    const char *ids[] = { "good-1", "bad-queue", "good-2", "bad-headers" };
    char long_queue[300];
    memset (long_queue, 'q', sizeof long_queue - 1);
    long_queue[sizeof long_queue - 1] = 0;
    for (int i = 0; i < 4; i++) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
        msg->msgid = strdup (ids[i]);
        msg->queue = strdup (i == 1 ? long_queue : "default");
        msg->headers = strdup (i == 3 ? "timeout:x" : "");
        msg->payload = zframe_new ("\x90", 1);
        emqp_batch_add (batch, &msg);
    }
    REQUIRE_INT (emqp_batch_send (batch, client, NULL), ==, 0);
    char seen[512] = "";
    int64_t deadline = clock_mono_ms () + h_ms (5000);
    int answers = 0;
    while (answers < 4 && clock_mono_ms () < deadline) {
        emqp_msg_t *msg = h_recv_msg (t, client, 200);
        if (!msg)
            continue;
        emqp_msg_t **msgs = &msg;
        size_t count = 1;
        if (msg->command == EMQP_BATCH) {
            char err[256];
            emqp_limits_t limits = { .payload_max = 1 << 20 };
            msgs = emqp_batch_unpack (msg, &limits, &count, err, sizeof err);
            REQUIRE_MSG (msgs, "router's BATCH: %s", err);
            emqp_msg_destroy (&msg);
        }
        for (size_t i = 0; i < count; i++) {
            emqp_msg_t *one = msgs[i];
            if (one->command == EMQP_ACK || one->command == EMQP_ERROR) {
                char item[200];
                snprintf (item, sizeof item, "%s%s:%s%s%s", *seen ? "," : "",
                          emqp_command_name (one->command), one->ref,
                          one->error_code ? "/" : "",
                          one->error_code ? one->error_code : "");
                strncat (seen, item, sizeof seen - strlen (seen) - 1);
                answers++;
            }
            emqp_msg_destroy (&one);
        }
        if (msgs != &msg)
            free (msgs);
    }
    h_log (t, "answers: %s", seen);
    //  Refusals come at once, ACKs after the commit.
    REQUIRE_STREQ (seen, "ERROR:bad-queue/BAD_FRAME,ERROR:bad-headers/BAD_REQUEST,"
                         "ACK:good-1,ACK:good-2");

    //  Not a batch at all: one ERROR BAD_FRAME, and the router serves on.
    h_send_strs (client, "", EMQP_PROTOCOL, "BATCH", "junk-batch", "\xc1", NULL);
    emqp_msg_t *msg = h_recv_cmd (t, client, EMQP_ERROR, 5000);
    REQUIRE (msg);
    REQUIRE_STREQ (msg->ref, "junk-batch");
    REQUIRE_STREQ (msg->error_code, "BAD_FRAME");
    emqp_msg_destroy (&msg);
    json_t *status = h_admin (t, "STATUS");
    REQUIRE_INT (h_jint (status, -1, "queues", "default", "waiting", NULL), ==, 2);
    json_decref (status);
    emqp_batch_destroy (&batch);
    zsock_destroy (&client);
}

//  An EventMQ job manager (plain eMQP/1.0, no agent) and an emq one on one
//  router, fed by a client that submits in batches: the EventMQ one only
//  ever gets plain 7-frame REQUESTs, and every job ends once.
static void
test_batch_mixed_peers (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "emqjm", S_QUEUES, 2, NULL);
    h_wait_jm (t, "emqjm", 10000, NULL);

    //  The EventMQ-style job manager: INFORM without agent, then READY.
    zsock_t *old = h_dealer (t->backend, "eventmq-jm-1");
    REQUIRE (old);
    h_send_strs (old, "", EMQP_PROTOCOL, "INFORM", "inform-old", S_QUEUES, "worker",
                 NULL);
    emqp_msg_t *ack = h_recv_cmd (t, old, EMQP_ACK, 5000);
    REQUIRE (ack);
    REQUIRE_MSG (ack->agent == NULL, "an EventMQ job manager got agent %s", ack->agent);
    emqp_msg_destroy (&ack);
    h_send_strs (old, "", EMQP_PROTOCOL, "READY", "ready-0", NULL);

    enum { JOBS = 300 };
    s_batcher_t b;
    s_batcher_start (t, &b, JOBS);
    emq_client_t *client = b.client;
    emq_submit_opts_t opts = { .reply = true };
    REQUIRE_INT (emq_submit_many (client, &opts, b.payloads, b.sizes, JOBS, NULL, NULL),
                 ==, 0);

    int results = 0, old_jobs = 0, beats = 0;
    zhashx_t *ended = zhashx_new ();
    int64_t deadline = clock_mono_ms () + h_ms (20000);
    while (results < JOBS + 1) {
        REQUIRE_MSG (clock_mono_ms () < deadline,
                     "%d of %d results (%d on the EventMQ one)", results, JOBS + 1,
                     old_jobs);
        //  The EventMQ job manager: plain frames only; REPLY, then READY.
        zmsg_t *raw;
        while ((raw = h_recv_raw (old, 0))) {
            zframe_t *command = zmsg_first (raw);
            command = command ? zmsg_next (raw) : NULL;
            command = command ? zmsg_next (raw) : NULL;
            REQUIRE_MSG (command && !zframe_streq (command, "BATCH"),
                         "the EventMQ job manager got a BATCH");
            if (command && zframe_streq (command, "REQUEST")) {
                REQUIRE_INT (zmsg_size (raw), ==, 7);
                zframe_t *msgid = zmsg_next (raw);
                char *id = zframe_strdup (msgid);
                h_send_strs (old, "", EMQP_PROTOCOL, "REPLY", "reply-x", "{\"value\": 1}",
                             id, NULL);
                h_send_strs (old, "", EMQP_PROTOCOL, "READY", "ready-x", NULL);
                free (id);
                old_jobs++;
            }
            zmsg_destroy (&raw);
        }
        if (beats++ % 20 == 0) {
            char ts[32];
            snprintf (ts, sizeof ts, "%.3f", zclock_time () / 1000.0);
            h_send_strs (old, "", EMQP_PROTOCOL, "HEARTBEAT", "hb-old", ts, NULL);
        }
        emq_event_t event;
        if (emq_poll (client, 10, &event) || event.type != EMQ_EVENT_RESULT)
            continue;
        REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s ended %s", event.msgid,
                     emq_job_status_name (event.status));
        REQUIRE_MSG (!zhashx_lookup (ended, event.msgid), "two RESULTs for %s",
                     event.msgid);
        zhashx_insert (ended, event.msgid, (void *) 1);
        results++;
    }
    h_log (t,
           "%d jobs: %d on the EventMQ job manager, the rest on the emq one; "
           "%lld BATCHes out",
           results, old_jobs, s_traffic (t, "batches_out"));
    REQUIRE_INT (old_jobs, >=, 1);
    REQUIRE_INT (old_jobs, <, results);
    REQUIRE_INT (s_traffic (t, "batches_in"), >=, 1);
    zhashx_destroy (&ended);
    s_batcher_stop (&b);
    zsock_destroy (&old);
}

//  Many jobs in one call: split into BATCHes that every router accepts
//  (bytes, not only count), each job ACKed and run once.
static void
test_batch_many (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", S_QUEUES, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    enum { JOBS = 5000 };
    s_batcher_t b;
    s_batcher_start (t, &b, JOBS);
    emq_submit_opts_t opts = { .reply = true, .extra_headers = "guarantee" };
    size_t sent = 0;
    REQUIRE_INT (
        emq_submit_many (b.client, &opts, b.payloads, b.sizes, JOBS, NULL, &sent), ==, 0);
    REQUIRE_INT (sent, ==, JOBS);
    int acks = 0, results = 0;
    int64_t deadline = clock_mono_ms () + h_ms (30000);
    while (results < JOBS + 1) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d ACKs, %d results of %d", acks,
                     results, JOBS + 1);
        emq_event_t event;
        if (emq_poll (b.client, 100, &event))
            continue;
        REQUIRE_MSG (event.type != EMQ_EVENT_ERROR, "job %s refused: %s", event.msgid,
                     event.code);
        if (event.type == EMQ_EVENT_ACK)
            acks++;
        else {
            REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s ended %s", event.msgid,
                         emq_job_status_name (event.status));
            results++;
        }
    }
    long long batches = s_traffic (t, "batches_in");
    h_log (t, "%d jobs in %lld BATCHes, %d ACKs", JOBS, batches, acks);
    REQUIRE_INT (acks, ==, JOBS);  // the first job's ACK was taken by emq_submit
    REQUIRE_INT (batches, >=, JOBS / EMQP_BATCH_MAX + 1);
    REQUIRE_INT (s_traffic (t, "batched_in"), >=, JOBS);
    s_batcher_stop (&b);
}

const h_testdef_t h_batching_tests[] = {
    { "batch_many", test_batch_many,
      "emq_submit_many of 5,000 jobs: BATCHes within every limit, each job once" },
    { "batch_mixed", test_batch_mixed,
      "emq_submit_many: a batch partly refused (QUEUE_FULL) one by one; the rest run "
      "once" },
    { "batch_bad_messages", test_batch_bad_messages,
      "a raw BATCH: bad messages refused alone, good ones ACKed; a junk BATCH refused" },
    { "batch_mixed_peers", test_batch_mixed_peers,
      "an EventMQ and an emq job manager on one router, a batching client" },
};

const size_t h_batching_count = sizeof h_batching_tests / sizeof h_batching_tests[0];
