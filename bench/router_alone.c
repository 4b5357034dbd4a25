/*  router_alone — scenario 4: the router's own cost per job.

    A real emq-router, a real libemq client pipelining jobs, and in place of
    job managers a thread of simulated ones: DEALER sockets that speak eMQP
    through common/emqp (INFORM with agent "emq/2", READY once per slot, on
    each REQUEST a DONE ok at once, which also frees the slot, a HEARTBEAT
    every second).
    Nothing forks and nothing runs, so what is left is the router's work per
    job: its CPU time (utime + stime from /proc/<pid>/stat) over the jobs.
*/
#include "bench.h"
#include "emqp.h"

#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define FAKE_JMS 4
#define FAKE_SLOTS 16

typedef struct {
    const bench_router_t *router;
    atomic_bool stop;
    atomic_int registered;  // job managers that got their ACK
    long done;              // DONEs sent
    long refused;           // messages the codec refused
} s_fake_t;

static int
s_send (zsock_t *sock, emqp_command_t command)
{
    emqp_msg_t *msg = emqp_msg_new (command);
    if (!msg)
        return -1;
    if (command == EMQP_HEARTBEAT) {
        struct timeval tv;
        gettimeofday (&tv, NULL);
        msg->heartbeat_ts = (double) tv.tv_sec + tv.tv_usec / 1e6;
    }
    else if (command == EMQP_INFORM) {
        msg->queues = strdup ("[[10,\"default\"]]");
        msg->peer_type = strdup ("worker");
        msg->agent = strdup ("emq/2");
    }
    return emqp_send (&msg, sock);
}

//  Answers a REQUEST: DONE ok with a nil value (as an emq/2 job manager,
//  the DONE also frees the slot: no READY).
static void
s_answer (s_fake_t *fake, zsock_t *sock, emqp_msg_t *request)
{
    emqp_msg_t *done = emqp_msg_new (EMQP_DONE);
    if (!done)
        return;
    done->ref = strdup (request->msgid);
    done->epoch = request->epoch;
    done->status = EMQP_STATUS_OK;
    done->payload = zframe_new ("\xc0", 1);
    done->usage = strdup ("wall_us=1 cpu_us=1 maxrss_kb=1000");
    if (emqp_send (&done, sock) == 0)
        fake->done++;
}

static void *
s_fake_thread (void *arg)
{
    s_fake_t *fake = (s_fake_t *) arg;
    zsock_t *socks[FAKE_JMS];
    zmq_pollitem_t items[FAKE_JMS];
    bool ready[FAKE_JMS] = { false };
    emqp_limits_t limits = { .payload_max = 16 * 1024 * 1024 };
    for (int i = 0; i < FAKE_JMS; i++) {
        socks[i] = zsock_new (ZMQ_DEALER);
        char identity[64];
        snprintf (identity, sizeof identity, "fake-jm-%d-%d", i, (int) getpid ());
        zsock_set_identity (socks[i], identity);
        zsock_set_sndhwm (socks[i], 100000);
        zsock_set_rcvhwm (socks[i], 100000);
        zsock_set_linger (socks[i], 0);
        zsock_connect (socks[i], "%s", fake->router->backend);
        s_send (socks[i], EMQP_INFORM);
        items[i] = (zmq_pollitem_t){ zsock_resolve (socks[i]), 0, ZMQ_POLLIN, 0 };
    }
    int64_t next_heartbeat = bench_now_us () + 1000000;
    while (!atomic_load (&fake->stop)) {
        if (zmq_poll (items, FAKE_JMS, 100) < 0)
            break;
        for (int i = 0; i < FAKE_JMS; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            //  Everything this socket has now.
            while (zsock_events (socks[i]) & ZMQ_POLLIN) {
                zmsg_t *zmsg = zmsg_recv (socks[i]);
                if (!zmsg)
                    break;
                char err[256];
                emqp_msg_t *msg =
                    emqp_decode (&zmsg, false, &limits, NULL, err, sizeof err);
                if (!msg) {
                    fake->refused++;
                    continue;
                }
                if (msg->command == EMQP_ACK && !ready[i]) {
                    ready[i] = true;
                    for (int slot = 0; slot < FAKE_SLOTS; slot++)
                        s_send (socks[i], EMQP_READY);
                    atomic_fetch_add (&fake->registered, 1);
                }
                else if (msg->command == EMQP_REQUEST)
                    s_answer (fake, socks[i], msg);
                emqp_msg_destroy (&msg);
            }
        }
        if (bench_now_us () >= next_heartbeat) {
            for (int i = 0; i < FAKE_JMS; i++)
                s_send (socks[i], EMQP_HEARTBEAT);
            next_heartbeat += 1000000;
        }
    }
    for (int i = 0; i < FAKE_JMS; i++) {
        s_send (socks[i], EMQP_KBYE);
        zsock_destroy (&socks[i]);
    }
    return NULL;
}

//  Pipelines `total` jobs (stopping after cap_us) with `inflight` in flight;
//  returns results received and the elapsed time.
static long
s_pipeline (emq_client_t *client, const void *payload, size_t size, long total,
            int64_t cap_us, int64_t *elapsed_us)
{
    emq_submit_opts_t opts = { .queue = "default", .reply = true };
    char msgid[37];
    emq_event_t event;
    long submitted = 0, done = 0;
    int64_t start = bench_now_us (), stop_at = start + cap_us;
    while (done < submitted || submitted < total) {
        while (submitted < total && submitted - done < bench.inflight) {
            if (emq_submit_async (client, &opts, payload, size, msgid)) {
                total = submitted;
                break;
            }
            submitted++;
            if ((submitted & 255) == 0 && bench_now_us () > stop_at)
                total = submitted;
        }
        if (done >= submitted)
            break;
        int timeout = 10000;
        while (emq_poll (client, timeout, &event) == 0) {
            timeout = 0;
            if (event.type != EMQ_EVENT_ACK)
                done++;
        }
        if (timeout == 10000) {
            fprintf (stderr, "emq-bench: router alone: no event for 10 s\n");
            break;
        }
    }
    *elapsed_us = bench_now_us () - start;
    return done;
}

void
bench_router_alone (void)
{
    const char *scenario = "4.router-alone";
    bench_router_t router;
    if (bench_router_start (&router, "alone", NULL, NULL)) {
        bench_line (scenario, "could not start the router");
        return;
    }
    s_fake_t fake = { .router = &router };
    atomic_init (&fake.stop, false);
    atomic_init (&fake.registered, 0);
    pthread_t thread;
    emq_client_t *client = emq_client_new (router.frontend);
    void *payload = NULL;
    size_t size = 0;
    bool started = false;
    if (client && bench_noop_payload (0, &payload, &size) == 0
        && pthread_create (&thread, NULL, s_fake_thread, &fake) == 0) {
        started = true;
        emq_client_set_connect_timeout (client, 10000);
        int64_t deadline = bench_now_us () + 10000000;
        while (atomic_load (&fake.registered) < FAKE_JMS && bench_now_us () < deadline)
            bench_sleep_ms (10);
        int64_t elapsed;
        s_pipeline (client, payload, size, 2000, 10000000, &elapsed);
        long total = (long) (400000 * bench.scale);
        int64_t cpu0 = bench_cpu_us (router.pid);
        long jobs = s_pipeline (client, payload, size, total,
                                (int64_t) (8e6 * bench.scale), &elapsed);
        int64_t cpu1 = bench_cpu_us (router.pid);
        double rate = jobs ? jobs * 1e6 / (double) elapsed : NAN;
        double cpu_us = jobs ? (double) (cpu1 - cpu0) / (double) jobs : NAN;
        double busy = elapsed ? (double) (cpu1 - cpu0) * 100 / (double) elapsed : NAN;
        bench_figure (scenario, "jobs", (double) jobs, NULL);
        bench_figure (scenario, "dispatches", rate, "per_s");
        bench_figure (scenario, "router_cpu_per_job", cpu_us, "us");
        bench_figure (scenario, "router_cpu_busy", busy, "percent");
        bench_line (scenario,
                    "%.0f dispatches/s (%ld jobs, %d simulated jms x %d slots); "
                    "router CPU %.2f us/job, router busy %.0f %% of one core",
                    rate, jobs, FAKE_JMS, FAKE_SLOTS, cpu_us, busy);
        bench_target (scenario, "router CPU per job", cpu_us, 5, false, "us");
    }
    else
        bench_line (scenario, "could not start");
    if (started) {
        atomic_store (&fake.stop, true);
        pthread_join (thread, NULL);
    }
    free (payload);
    emq_client_destroy (&client);
    bench_router_stop (&router);
}
