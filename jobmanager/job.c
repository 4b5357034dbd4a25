/*  job — the job manager's job record. See job.h. */
#include "job.h"
#include "tests/testutil.h"

#include <stdlib.h>
#include <string.h>

jm_job_t *
jm_job_new (emqp_msg_t *request, uint64_t connection, int64_t now_ms)
{
    jm_job_t *job = calloc (1, sizeof *job);
    if (!job)
        return NULL;
    job->msgid = request->msgid;
    request->msgid = NULL;
    job->queue = request->queue;
    request->queue = NULL;
    job->payload = request->payload;
    request->payload = NULL;
    job->epoch = request->epoch;
    job->attempt = request->attempt ? request->attempt : 1;
    job->received_ms = now_ms;
    job->connection = connection;
    return job;
}

void
jm_job_destroy (jm_job_t **job_p)
{
    jm_job_t *job = *job_p;
    if (!job)
        return;
    free (job->msgid);
    free (job->queue);
    free (job->crash_reason);
    zframe_destroy (&job->payload);
    free (job);
    *job_p = NULL;
}

void
jm_job_destructor (void **item)
{
    jm_job_destroy ((jm_job_t **) item);
}

uint64_t
jm_job_wall_us (const jm_job_t *job, int64_t now_ms)
{
    return job->started_ms ? (uint64_t) (now_ms - job->started_ms) * 1000 : 0;
}

void
jm_job_test (bool verbose)
{
    if (verbose)
        printf (" * jm_job: ");
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    REQUIRE (msg);
    msg->msgid = strdup ("m-1");
    msg->queue = strdup ("q");
    msg->payload = zframe_new ("\xc0", 1);
    msg->epoch = 9;
    jm_job_t *job = jm_job_new (msg, 3, 1000);
    REQUIRE (job);
    //  The job took the strings and the payload; attempt 0 means the first.
    CHECK (msg->msgid == NULL && msg->queue == NULL && msg->payload == NULL);
    CHECK_STREQ (job->msgid, "m-1");
    CHECK_STREQ (job->queue, "q");
    CHECK (zframe_size (job->payload) == 1);
    CHECK_EQ (job->epoch, 9);
    CHECK_EQ (job->attempt, 1);
    CHECK_EQ (job->connection, 3);
    CHECK_EQ (job->received_ms, 1000);
    CHECK_EQ (jm_job_wall_us (job, 5000), 0);
    job->started_ms = 1200;
    CHECK_EQ (jm_job_wall_us (job, 1500), 300000);
    emqp_msg_destroy (&msg);

    //  The list destructor frees a job; destroy takes NULL.
    zlistx_t *list = zlistx_new ();
    REQUIRE (list);
    zlistx_set_destructor (list, jm_job_destructor);
    job->crash_reason = strdup ("x");
    zlistx_add_end (list, job);
    zlistx_destroy (&list);
    job = NULL;
    jm_job_destroy (&job);
    if (verbose)
        printf ("OK\n");
}
