/*  client_test — emq_client_test: libemq against an in-process fake router.

    The fake router is a zactor holding a ROUTER socket on an inproc
    endpoint. It answers by queue name, which lets each check pick the
    router's behaviour:
        "full"    ERROR QUEUE_FULL
        "silent"  no answer at all
        other     ACK; with reply-requested the job is held until the test
                  says FLUSH, then results go out in reverse order (LIFO),
                  preceded by junk the client must drop. Queue "fail" gives
                  status failed ("boom"), "slow" timeout, "crash" crashed,
                  any other ok with the request's payload as the value.
    It also answers admin commands: STATUS and ROUTER_SHOW_WORKERS with a
    REPLY carrying JSON, DISCONNECT with ACK, ROUTER_SHOW_SCHEDULERS with an
    ERROR.
*/
#include "emq/client.h"
#include "emqp.h"
#include "headers.h"
#include "log.h"
#include "payload.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CHECK(expr) \
    do { if (!(expr)) { fprintf (stderr, "%s:%d: check failed: %s\n", \
                                 __FILE__, __LINE__, #expr); abort (); } } while (0)
#define S_CHECK_RC(rc, expected) \
    do { int s_rc = (rc); if (s_rc != (expected)) { \
        fprintf (stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", \
                 __FILE__, __LINE__, #rc, s_rc, emq_strerror (s_rc), \
                 (int) (expected), emq_strerror (expected)); abort (); } } while (0)

static void
s_send_back (emqp_msg_t *msg, zsock_t *router)
{
    S_CHECK (emqp_send (&msg, router) == 0);
}

static emqp_msg_t *
s_answer (emqp_command_t command, zframe_t *identity, const char *ref)
{
    emqp_msg_t *msg = emqp_msg_new (command);
    S_CHECK (msg);
    msg->identity = zframe_dup (identity);
    if (ref)
        msg->ref = strdup (ref);
    return msg;
}

static void
s_fake_router (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new_router ((const char *) args);
    S_CHECK (router);
    zlistx_t *held = zlistx_new ();         // emqp_msg_t * requests, owned here
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (true) {
        zsock_t *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM")) {
                zstr_free (&command);
                break;
            }
            if (streq (command, "FLUSH")) {
                emqp_msg_t *request;
                while ((request = zlistx_detach (held, zlistx_last (held) ?
                                                  zlistx_cursor (held) : NULL))) {
                    //  Junk first: the client must drop it and keep reading.
                    zmsg_t *junk = zmsg_new ();
                    zmsg_append (junk, &(zframe_t *) { zframe_dup (request->identity) });
                    zmsg_addstr (junk, "");
                    zmsg_addstr (junk, "eMQP/1.0");
                    zmsg_addstr (junk, "RESULT");
                    zmsg_addstr (junk, "x");
                    S_CHECK (zmsg_send (&junk, router) == 0);

                    emqp_msg_t *result = s_answer (EMQP_RESULT, request->identity,
                                                   request->msgid);
                    result->usage = strdup ("wall_us=1 cpu_us=1 maxrss_kb=1");
                    if (streq (request->queue, "fail")) {
                        result->status = EMQP_STATUS_FAILED;
                        result->payload = zframe_new ("boom", 4);
                    }
                    else
                    if (streq (request->queue, "slow")) {
                        result->status = EMQP_STATUS_TIMEOUT;
                        result->payload = zframe_new ("killed after 1 s", 16);
                    }
                    else
                    if (streq (request->queue, "crash")) {
                        result->status = EMQP_STATUS_CRASHED;
                        result->payload = zframe_new ("signal 11", 9);
                    }
                    else {
                        result->status = EMQP_STATUS_OK;
                        result->payload = request->payload;
                        request->payload = NULL;
                    }
                    s_send_back (result, router);
                    emqp_msg_destroy (&request);
                }
                zsock_signal (pipe, 0);
            }
            zstr_free (&command);
            continue;
        }
        if (which != router)
            break;
        zmsg_t *zmsg = zmsg_recv (router);
        if (!zmsg)
            break;
        char err[256];
        zframe_t *identity = NULL;
        emqp_msg_t *msg = emqp_decode (&zmsg, true, NULL, &identity, err, sizeof err);
        zframe_destroy (&identity);
        S_CHECK (msg);      // the client only ever sends well-formed messages
        if (msg->command == EMQP_REQUEST) {
            headers_t headers;
            S_CHECK (headers_parse (msg->headers, &headers, err, sizeof err) == 0);
            if (streq (msg->queue, "full")) {
                emqp_msg_t *error = s_answer (EMQP_ERROR, msg->identity, msg->msgid);
                error->error_code = strdup ("QUEUE_FULL");
                error->error_text = strdup ("queue full has 0 free places");
                s_send_back (error, router);
            }
            else
            if (!streq (msg->queue, "silent")) {
                s_send_back (s_answer (EMQP_ACK, msg->identity, msg->msgid), router);
                if (headers.reply_requested) {
                    zlistx_add_end (held, msg);
                    msg = NULL;
                }
            }
        }
        else
        if (msg->command == EMQP_STATUS || msg->command == EMQP_ROUTER_SHOW_WORKERS) {
            S_CHECK (strncmp (msg->msgid, "admin:", 6) == 0);
            emqp_msg_t *reply = s_answer (EMQP_REPLY, msg->identity, NULL);
            //  A heartbeat first: emq_admin must wait on for the REPLY.
            emqp_msg_t *heartbeat = s_answer (EMQP_HEARTBEAT, msg->identity, NULL);
            heartbeat->heartbeat_ts = 1.0;
            s_send_back (heartbeat, router);
            const char *json = msg->command == EMQP_STATUS
                             ? "{\"waiting_messages_by_queue\":{\"default\":2}}"
                             : "{\"connected_workers\":{}}";
            reply->payload = zframe_new (json, strlen (json));
            s_send_back (reply, router);
        }
        else
        if (msg->command == EMQP_DISCONNECT)
            s_send_back (s_answer (EMQP_ACK, msg->identity, msg->msgid), router);
        else
        if (msg->command == EMQP_ROUTER_SHOW_SCHEDULERS) {
            emqp_msg_t *error = s_answer (EMQP_ERROR, msg->identity, msg->msgid);
            error->error_code = strdup ("NOT_SUPPORTED");
            error->error_text = strdup ("no schedulers here");
            s_send_back (error, router);
        }
        emqp_msg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    //  Held requests own their payloads; destroy them one by one.
    emqp_msg_t *request;
    while ((request = zlistx_detach (held, NULL)))
        emqp_msg_destroy (&request);
    zlistx_destroy (&held);
    zsock_destroy (&router);
}

static void
s_payload_checks (void)
{
    //  run: args are one msgpack value
    void *out = NULL;
    size_t size = 0;
    S_CHECK_RC (emq_payload_run ("libemq_examples.so", "upper", "\xa3" "abc", 4,
                                 &out, &size), 0);
    char err[256];
    payload_t *payload = payload_decode (out, size, err, sizeof err);
    S_CHECK (payload && payload->kind == PAYLOAD_RUN);
    S_CHECK (streq (payload->function, "upper") && payload->args_size == 4);
    payload_destroy (&payload);
    free (out);
    S_CHECK_RC (emq_payload_run ("lib.so", "f", "\x92", 1, &out, &size), EMQ_ERR_INVALID);
    S_CHECK_RC (emq_payload_run ("dir/lib.so", "f", NULL, 0, &out, &size), EMQ_ERR_INVALID);
    S_CHECK_RC (emq_payload_run (NULL, "f", NULL, 0, &out, &size), EMQ_ERR_INVALID);

    //  exec
    const char *argv[] = { "/bin/echo", "hello" };
    const char *env[] = { "LANG=C" };
    S_CHECK_RC (emq_payload_exec (argv, 2, "in", 2, env, 1, "/tmp", &out, &size), 0);
    payload = payload_decode (out, size, err, sizeof err);
    S_CHECK (payload && payload->kind == PAYLOAD_EXEC && payload->argc == 2);
    S_CHECK (streq (payload->env[0], "LANG=C") && streq (payload->cwd, "/tmp"));
    payload_destroy (&payload);
    free (out);
    S_CHECK_RC (emq_payload_exec (argv, 0, NULL, 0, NULL, 0, NULL, &out, &size),
                EMQ_ERR_INVALID);
    const char *bad_env[] = { "NOEQUALS" };
    S_CHECK_RC (emq_payload_exec (argv, 1, NULL, 0, bad_env, 1, NULL, &out, &size),
                EMQ_ERR_INVALID);
}

void
emq_client_test (bool verbose)
{
    printf (" * emq_client: ");
    if (verbose)
        printf ("\n");
    S_CHECK (streq (emq_strerror (EMQ_ERR_UNREACHABLE), "router unreachable"));
    S_CHECK (streq (emq_strerror (42), "unknown error"));
    S_CHECK (streq (emq_job_status_name (EMQ_JOB_CRASHED), "crashed"));
    s_payload_checks ();

    char uuid[37], endpoint[80];
    emqp_msgid_new (uuid);
    snprintf (endpoint, sizeof endpoint, "inproc://emq-client-test-%s", uuid);
    //  The fake router sends junk on purpose; keep its warnings quiet.
    log_level_t saved_level = log_enabled (LOG_LEVEL_DEBUG) ? LOG_LEVEL_DEBUG
                            : log_enabled (LOG_LEVEL_INFO) ? LOG_LEVEL_INFO
                            : log_enabled (LOG_LEVEL_WARNING) ? LOG_LEVEL_WARNING
                            : LOG_LEVEL_ERROR;
    if (!verbose)
        log_set_level (LOG_LEVEL_ERROR);
    zactor_t *router = zactor_new (s_fake_router, endpoint);
    S_CHECK (router);

    emq_client_t *client = emq_client_new (endpoint);
    S_CHECK (client);
    S_CHECK (streq (emq_client_endpoint (client), endpoint));
    const char *payload = "\x81\xa1" "a\x01";      // {"a": 1}
    size_t payload_size = 4;
    char msgid[37];

    //  Accepted, refused, no answer
    S_CHECK_RC (emq_submit (client, NULL, payload, payload_size, msgid, 2000), 0);
    S_CHECK (strlen (msgid) == 36);
    emq_submit_opts_t opts = { .queue = "full" };
    S_CHECK_RC (emq_submit (client, &opts, payload, payload_size, msgid, 2000),
                EMQ_ERR_REJECTED);
    S_CHECK (strstr (emq_client_last_error (client), "QUEUE_FULL"));
    if (verbose)
        printf ("  refused: %s\n", emq_client_last_error (client));
    opts.queue = "silent";
    S_CHECK_RC (emq_submit (client, &opts, payload, payload_size, msgid, 200),
                EMQ_ERR_UNREACHABLE);
    if (verbose)
        printf ("  silent: %s\n", emq_client_last_error (client));

    //  Bad arguments never reach the router
    S_CHECK_RC (emq_submit_async (client, NULL, NULL, 0, msgid), EMQ_ERR_INVALID);
    opts.queue = "";
    S_CHECK_RC (emq_submit_async (client, &opts, payload, payload_size, msgid),
                EMQ_ERR_INVALID);
    emq_submit_opts_t bad_headers = { .extra_headers = "timeout:soon" };
    S_CHECK_RC (emq_submit_async (client, &bad_headers, payload, payload_size, msgid),
                EMQ_ERR_INVALID);
    if (verbose)
        printf ("  bad headers: %s\n", emq_client_last_error (client));

    //  Many in flight: ok, failed, timed out, crashed; results come back in
    //  reverse order, and events for other jobs are kept meanwhile.
    const char *queues[] = { "default", "fail", "slow", "crash" };
    char ids[4][37];
    for (int i = 0; i < 4; i++) {
        emq_submit_opts_t o = { .queue = queues[i], .reply = true, .retries = 1,
                                .timeout_s = 5, .extra_headers = "guarantee" };
        S_CHECK_RC (emq_submit_async (client, &o, payload, payload_size, ids[i]), 0);
    }
    //  A synchronous submit now buffers the four ACKs that come first.
    S_CHECK_RC (emq_submit (client, NULL, payload, payload_size, msgid, 2000), 0);
    S_CHECK (emq_client_pending (client) == 4);
    zstr_send (router, "FLUSH");
    S_CHECK (zsock_wait (router) == 0);

    emq_event_t event;
    S_CHECK_RC (emq_wait_result (client, ids[0], 2000, &event), 0);
    S_CHECK (event.type == EMQ_EVENT_RESULT && event.status == EMQ_JOB_OK);
    S_CHECK (streq (event.msgid, ids[0]));
    S_CHECK (event.size == payload_size && memcmp (event.data, payload, payload_size) == 0);
    S_CHECK (strstr (event.usage, "wall_us=1"));
    //  ids[0]'s ACK was consumed; the others' ACKs and results are kept.
    S_CHECK (emq_client_pending (client) == 6);

    S_CHECK_RC (emq_wait_result (client, ids[1], 2000, &event), EMQ_ERR_JOB_FAILED);
    S_CHECK (event.status == EMQ_JOB_FAILED && event.size == 4);
    S_CHECK (memcmp (event.data, "boom", 4) == 0);
    S_CHECK (strstr (emq_client_last_error (client), "boom"));
    S_CHECK_RC (emq_wait_result (client, ids[2], 2000, &event), EMQ_ERR_JOB_TIMEOUT);
    S_CHECK (event.status == EMQ_JOB_TIMEOUT);
    S_CHECK (emq_client_pending (client) == 2);

    //  What is left comes out of emq_poll in arrival order.
    S_CHECK_RC (emq_poll (client, 0, &event), 0);
    S_CHECK (event.type == EMQ_EVENT_ACK && streq (event.msgid, ids[3]));
    S_CHECK_RC (emq_poll (client, 1000, &event), 0);
    S_CHECK (event.type == EMQ_EVENT_RESULT && event.status == EMQ_JOB_CRASHED);
    S_CHECK (streq (event.msgid, ids[3]));
    S_CHECK_RC (emq_poll (client, 50, &event), EMQ_ERR_TIMEOUT);
    S_CHECK_RC (emq_wait_result (client, "no-such-job", 50, &event), EMQ_ERR_TIMEOUT);
    S_CHECK_RC (emq_wait_result (client, NULL, 50, &event), EMQ_ERR_INVALID);

    //  Refusal seen by emq_wait_result
    opts.queue = "full";
    opts.reply = true;
    S_CHECK_RC (emq_submit_async (client, &opts, payload, payload_size, msgid), 0);
    S_CHECK_RC (emq_wait_result (client, msgid, 2000, &event), EMQ_ERR_REJECTED);
    S_CHECK (event.type == EMQ_EVENT_ERROR && streq (event.code, "QUEUE_FULL"));
    emq_client_destroy (&client);
    S_CHECK (client == NULL);
    emq_client_destroy (&client);

    //  Admin commands
    char *reply = NULL;
    S_CHECK_RC (emq_admin (endpoint, "STATUS", 2000, &reply), 0);
    S_CHECK (reply && strstr (reply, "waiting_messages_by_queue"));
    free (reply);
    S_CHECK_RC (emq_admin (endpoint, "ROUTER_SHOW_WORKERS", 2000, &reply), 0);
    S_CHECK (reply && strstr (reply, "connected_workers"));
    free (reply);
    S_CHECK_RC (emq_admin (endpoint, "ROUTER_SHOW_SCHEDULERS", 2000, &reply),
                EMQ_ERR_REJECTED);
    S_CHECK (reply && strstr (reply, "NOT_SUPPORTED"));
    free (reply);
    S_CHECK_RC (emq_admin (endpoint, "DISCONNECT", 2000, &reply), 0);
    S_CHECK (reply && strncmp (reply, "admin:", 6) == 0);
    free (reply);
    S_CHECK_RC (emq_admin (endpoint, "REQUEST", 2000, &reply), EMQ_ERR_INVALID);
    free (reply);
    zactor_destroy (&router);

    //  Nobody there: sends wait for a connection, then give up. (inproc
    //  does not honour ZMQ_IMMEDIATE, so use a TCP port nobody listens on:
    //  bind one, note it, close it.)
    zsock_t *probe = zsock_new (ZMQ_ROUTER);
    S_CHECK (probe);
    int port = zsock_bind (probe, "tcp://127.0.0.1:*");
    S_CHECK (port > 0);
    zsock_destroy (&probe);
    char nowhere[80];
    snprintf (nowhere, sizeof nowhere, "tcp://127.0.0.1:%d", port);
    client = emq_client_new (nowhere);
    S_CHECK (client);
    emq_client_set_connect_timeout (client, 100);
    int64_t start = zclock_mono ();
    S_CHECK_RC (emq_submit_async (client, NULL, payload, payload_size, msgid),
                EMQ_ERR_UNREACHABLE);
    S_CHECK (zclock_mono () - start >= 90);
    S_CHECK_RC (emq_submit (client, NULL, payload, payload_size, msgid, 100),
                EMQ_ERR_UNREACHABLE);
    if (verbose)
        printf ("  nowhere: %s\n", emq_client_last_error (client));
    emq_client_destroy (&client);
    S_CHECK_RC (emq_admin (nowhere, "STATUS", 100, &reply), EMQ_ERR_UNREACHABLE);
    S_CHECK (reply);
    free (reply);
    S_CHECK (emq_client_new ("bogus://x") == NULL);
    S_CHECK_RC (emq_admin ("bogus://x", "STATUS", 100, &reply), EMQ_ERR_INVALID);
    free (reply);
    log_set_level (saved_level);
    printf ("OK\n");
}
