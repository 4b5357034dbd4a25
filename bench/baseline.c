/*  baseline — scenario 1: what ZeroMQ itself allows on this machine.

    Three plain-libzmq setups, each in child processes of emq-bench (this
    program started again with `--child ROLE ...`), driven by a DEALER
    client in the benchmark process over ipc://:

    - lb: a minimal load-balancing broker (zguide's lbbroker, without
      REQ envelopes): frontend ROUTER for clients, backend ROUTER for
      workers; a worker says READY once, each request goes to a ready
      worker, a reply makes its worker ready again and goes back to its
      client. One request in flight per worker, as emq's job manager has one
      job per worker. 2 worker processes that echo.
    - proxy: zmq_proxy between a ROUTER frontend and a DEALER backend, the
      issue's "pipelined ZeroMQ proxy": the DEALER pushes requests to the
      2 workers round robin with no limit, so they are pipelined.
    - direct: the client and one worker (ROUTER) talk directly, one message
      at a time: the round trip emq's latency is compared to.

    Scenario 8 runs lb and proxy again over tcp://127.0.0.1, as emq and
    beanstalkd are measured there, and samples a round trip through the lb
    broker, one request at a time (bench_lb_rtt_new). The children do nothing else and end on SIGTERM.
*/
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define BODY_SIZE 40  // about a `run noop` payload

//  ---------------------------------------------------------------------
//  Children

static void *
s_socket (void *ctx, int type)
{
    void *sock = zmq_socket (ctx, type);
    if (!sock) {
        fprintf (stderr, "emq-bench child: zmq_socket: %s\n", zmq_strerror (errno));
        exit (1);
    }
    int hwm = 100000, linger = 0;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    return sock;
}

static void
s_bind (void *sock, const char *endpoint)
{
    if (zmq_bind (sock, endpoint)) {
        fprintf (stderr, "emq-bench child: bind %s: %s\n", endpoint,
                 zmq_strerror (errno));
        exit (1);
    }
}

static void
s_connect (void *sock, const char *endpoint)
{
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "emq-bench child: connect %s: %s\n", endpoint,
                 zmq_strerror (errno));
        exit (1);
    }
}

//  Receives one frame into msg; returns 1 if more follow, 0 if last, -1.
static int
s_recv_frame (void *sock, zmq_msg_t *msg, int flags)
{
    if (zmq_msg_recv (msg, sock, flags) < 0)
        return -1;
    return zmq_msg_more (msg) ? 1 : 0;
}

//  Echo worker: says READY first when lb, then sends every message back.
static int
s_worker (const char *endpoint, bool lb)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    s_connect (sock, endpoint);
    if (lb && zmq_send (sock, "READY", 5, 0) < 0)
        return 1;
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    while (true) {
        int more = s_recv_frame (sock, &msg, 0);
        if (more < 0)
            return errno == EINTR ? 0 : 1;
        if (zmq_msg_send (&msg, sock, more ? ZMQ_SNDMORE : 0) < 0)
            return 1;
    }
}

//  Direct worker: a ROUTER that echoes [identity, body].
static int
s_direct (const char *endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_ROUTER);
    s_bind (sock, endpoint);
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    while (true) {
        int more = s_recv_frame (sock, &msg, 0);
        if (more < 0)
            return errno == EINTR ? 0 : 1;
        if (zmq_msg_send (&msg, sock, more ? ZMQ_SNDMORE : 0) < 0)
            return 1;
    }
}

#define MAX_WORKERS 64
#define ID_MAX 256

//  The load-balancing broker. Frontend messages: [client, body]. Backend:
//  [worker, "READY"] or [worker, client, body]. Requests are read only
//  while a worker is ready, so the rest wait in the frontend's queue.
static int
s_lb_broker (const char *fe_endpoint, const char *be_endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *frontend = s_socket (ctx, ZMQ_ROUTER);
    void *backend = s_socket (ctx, ZMQ_ROUTER);
    s_bind (frontend, fe_endpoint);
    s_bind (backend, be_endpoint);
    //  Ready workers, a ring of identities (a worker is in it at most once).
    unsigned char ids[MAX_WORKERS][ID_MAX];
    size_t id_size[MAX_WORKERS];
    size_t head = 0, count = 0;
    zmq_msg_t id, client, body;
    zmq_msg_init (&id);
    zmq_msg_init (&client);
    zmq_msg_init (&body);
    while (true) {
        zmq_pollitem_t items[] = { { backend, 0, ZMQ_POLLIN, 0 },
                                   { frontend, 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll (items, count ? 2 : 1, -1) < 0)
            return errno == EINTR ? 0 : 1;
        //  Replies and READYs: everything the backend has.
        while (s_recv_frame (backend, &id, ZMQ_DONTWAIT) == 1) {
            if (count < MAX_WORKERS && zmq_msg_size (&id) <= ID_MAX) {
                size_t slot = (head + count++) % MAX_WORKERS;
                memcpy (ids[slot], zmq_msg_data (&id), zmq_msg_size (&id));
                id_size[slot] = zmq_msg_size (&id);
            }
            if (s_recv_frame (backend, &client, 0) != 1)
                continue;  // READY
            s_recv_frame (backend, &body, 0);
            zmq_msg_send (&client, frontend, ZMQ_SNDMORE);
            zmq_msg_send (&body, frontend, 0);
        }
        //  Requests, as long as a worker is ready.
        while (count && s_recv_frame (frontend, &client, ZMQ_DONTWAIT) == 1) {
            s_recv_frame (frontend, &body, 0);
            zmq_send (backend, ids[head], id_size[head], ZMQ_SNDMORE);
            head = (head + 1) % MAX_WORKERS;
            count--;
            zmq_msg_send (&client, backend, ZMQ_SNDMORE);
            zmq_msg_send (&body, backend, 0);
        }
    }
}

static int
s_proxy_broker (const char *fe_endpoint, const char *be_endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *frontend = s_socket (ctx, ZMQ_ROUTER);
    void *backend = s_socket (ctx, ZMQ_DEALER);
    s_bind (frontend, fe_endpoint);
    s_bind (backend, be_endpoint);
    zmq_proxy (frontend, backend, NULL);
    return 0;
}

int
bench_child (int argc, char **argv)
{
    //  argv: ROLE ARG...
    if (argc >= 3 && strcmp (argv[0], "lb-broker") == 0)
        return s_lb_broker (argv[1], argv[2]);
    if (argc >= 3 && strcmp (argv[0], "proxy-broker") == 0)
        return s_proxy_broker (argv[1], argv[2]);
    if (argc >= 2 && strcmp (argv[0], "lb-worker") == 0)
        return s_worker (argv[1], true);
    if (argc >= 2 && strcmp (argv[0], "proxy-worker") == 0)
        return s_worker (argv[1], false);
    if (argc >= 2 && strcmp (argv[0], "direct") == 0)
        return s_direct (argv[1]);
    if (argc >= 1 && strcmp (argv[0], "beanstalkd-worker") == 0)
        return bench_beanstalkd_child (argc, argv);
    fprintf (stderr, "emq-bench: unknown child role\n");
    return 2;
}

//  ---------------------------------------------------------------------
//  The client side

//  Sends `total` requests keeping `inflight` in flight, waits for all
//  replies; stops sending after cap_us. Returns replies received and sets
//  *elapsed_us (first send to last reply).
static long
s_pipeline (void *sock, long total, int inflight, int64_t cap_us, int64_t *elapsed_us)
{
    char body[BODY_SIZE];
    memset (body, 'x', sizeof body);
    long sent = 0, received = 0;
    int64_t start = bench_now_us (), stop_at = start + cap_us;
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    while (received < sent || sent < total) {
        while (sent < total && sent - received < inflight) {
            if (zmq_send (sock, body, sizeof body, ZMQ_DONTWAIT) < 0)
                break;
            sent++;
            if ((sent & 1023) == 0 && bench_now_us () > stop_at)
                total = sent;
        }
        zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 5000) <= 0) {
            fprintf (stderr, "emq-bench: baseline: no reply in 5 s (%ld of %ld)\n",
                     received, sent);
            break;
        }
        while (zmq_msg_recv (&msg, sock, ZMQ_DONTWAIT) >= 0)
            if (!zmq_msg_more (&msg))
                received++;
    }
    zmq_msg_close (&msg);
    *elapsed_us = bench_now_us () - start;
    return received;
}

//  A broker child with its 2 workers, and a DEALER client connected to it.
typedef struct {
    pid_t broker;
    pid_t workers[2];
    void *ctx;
    void *sock;
} s_rig_t;

static void
s_rig_stop (s_rig_t *rig)
{
    if (rig->sock)
        zmq_close (rig->sock);
    if (rig->ctx)
        zmq_ctx_term (rig->ctx);
    bench_stop (rig->workers[0], 1000);
    bench_stop (rig->workers[1], 1000);
    bench_stop (rig->broker, 1000);
    memset (rig, 0, sizeof *rig);
}

//  Starts broker `kind` (lb, proxy) with 2 workers on ipc, or on
//  tcp://127.0.0.1, and connects the client. Returns 0, or -1 (what was
//  started is stopped).
static int
s_rig_start (s_rig_t *rig, const char *kind, bool tcp)
{
    memset (rig, 0, sizeof *rig);
    char fe[1200], be[1200], broker_role[32], worker_role[32];
    if (tcp) {
        snprintf (fe, sizeof fe, "tcp://127.0.0.1:%d", bench_free_port ());
        snprintf (be, sizeof be, "tcp://127.0.0.1:%d", bench_free_port ());
    }
    else {
        snprintf (fe, sizeof fe, "ipc://%s/%s-fe", bench.dir, kind);
        snprintf (be, sizeof be, "ipc://%s/%s-be", bench.dir, kind);
    }
    snprintf (broker_role, sizeof broker_role, "%s-broker", kind);
    snprintf (worker_role, sizeof worker_role, "%s-worker", kind);
    const char *broker_args[] = { "--child", broker_role, fe, be, NULL };
    const char *worker_args[] = { "--child", worker_role, be, NULL };
    rig->broker = bench_spawn_self ("baseline-broker", broker_args);
    bench_sleep_ms (100);
    rig->workers[0] = bench_spawn_self ("baseline-worker", worker_args);
    rig->workers[1] = bench_spawn_self ("baseline-worker", worker_args);
    rig->ctx = zmq_ctx_new ();
    rig->sock = rig->ctx ? zmq_socket (rig->ctx, ZMQ_DEALER) : NULL;
    if (!rig->sock) {
        s_rig_stop (rig);
        return -1;
    }
    int hwm = 100000, linger = 0, timeout_ms = 5000;
    zmq_setsockopt (rig->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (rig->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (rig->sock, ZMQ_LINGER, &linger, sizeof linger);
    //  Bounds the round trips' blocking send and receive.
    zmq_setsockopt (rig->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt (rig->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    if (rig->broker <= 0 || rig->workers[0] <= 0 || rig->workers[1] <= 0
        || zmq_connect (rig->sock, fe)) {
        s_rig_stop (rig);
        return -1;
    }
    //  Both workers must be connected before timing (a DEALER only
    //  round-robins over connected peers).
    bench_sleep_ms (300);
    return 0;
}

//  Runs broker `kind` with 2 workers on ipc, or tcp://127.0.0.1, for up to
//  cap_s × scale; returns requests/s (NaN on failure), and the broker's
//  CPU per request in *cpu_us.
static double
s_broker_run (const char *kind, bool tcp, double cap_s, double *cpu_us)
{
    double rps = NAN;
    s_rig_t rig;
    if (s_rig_start (&rig, kind, tcp))
        return NAN;
    //  Warm up.
    int64_t elapsed;
    s_pipeline (rig.sock, 2000, bench.inflight, 5000000, &elapsed);
    //  The pipelined proxy moves about a million a second; the LB broker
    //  far fewer. Either stops after cap_s.
    long total = (long) ((strcmp (kind, "proxy") == 0 ? 2000000 : 400000) * bench.scale);
    int64_t cpu0 = bench_cpu_us (rig.broker);
    long done = s_pipeline (rig.sock, total, bench.inflight,
                            (int64_t) (cap_s * 1e6 * bench.scale), &elapsed);
    int64_t cpu1 = bench_cpu_us (rig.broker);
    if (done > 0 && elapsed > 0) {
        rps = done * 1e6 / (double) elapsed;
        *cpu_us = (double) (cpu1 - cpu0) / (double) done;
    }
    bench_log ("%s: %ld requests in %.3f s", kind, done, elapsed / 1e6);
    s_rig_stop (&rig);
    return rps;
}

//  The LB round-trip driver.
static void
s_lb_rtt_destroy (void **self_p)
{
    if (!*self_p)
        return;
    s_rig_stop ((s_rig_t *) *self_p);
    free (*self_p);
    *self_p = NULL;
}

static double
s_lb_rtt_sample (void *self)
{
    s_rig_t *rig = (s_rig_t *) self;
    char body[BODY_SIZE], reply[BODY_SIZE];
    memset (body, 'x', sizeof body);
    int64_t t0 = bench_now_us ();
    if (zmq_send (rig->sock, body, sizeof body, 0) < 0
        || zmq_recv (rig->sock, reply, sizeof reply, 0) < 0)
        return NAN;
    return (double) (bench_now_us () - t0);
}

int
bench_lb_rtt_new (bench_rtt_t *rtt)
{
    s_rig_t *rig = calloc (1, sizeof *rig);
    if (!rig)
        return -1;
    if (s_rig_start (rig, "lb", true)) {
        free (rig);
        return -1;
    }
    *rtt = (bench_rtt_t){ .name = "ZeroMQ LB broker",
                          .self = rig,
                          .sample = s_lb_rtt_sample,
                          .destroy = s_lb_rtt_destroy };
    return 0;
}

//  One request at a time to a direct ROUTER worker; returns p50 (µs).
static double
s_direct_run (double *p99)
{
    char endpoint[1200];
    snprintf (endpoint, sizeof endpoint, "ipc://%s/direct", bench.dir);
    const char *args[] = { "--child", "direct", endpoint, NULL };
    pid_t worker = bench_spawn_self ("baseline-direct", args);
    void *ctx = zmq_ctx_new ();
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    double p50 = NAN;
    size_t max = (size_t) (20000 * bench.scale);
    double *samples = calloc (max ? max : 1, sizeof *samples);
    if (worker > 0 && samples && zmq_connect (sock, endpoint) == 0) {
        char body[BODY_SIZE];
        memset (body, 'x', sizeof body);
        char reply[BODY_SIZE];
        //  The first exchange waits for the connection: not a sample.
        zmq_send (sock, body, sizeof body, 0);
        zmq_recv (sock, reply, sizeof reply, 0);
        size_t count = 0;
        int64_t stop_at = bench_now_us () + (int64_t) (5e6 * bench.scale);
        while (count < max && bench_now_us () < stop_at) {
            int64_t t0 = bench_now_us ();
            if (zmq_send (sock, body, sizeof body, 0) < 0
                || zmq_recv (sock, reply, sizeof reply, 0) < 0)
                break;
            samples[count++] = (double) (bench_now_us () - t0);
        }
        p50 = bench_quantile (samples, count, 0.50);
        *p99 = bench_quantile (samples, count, 0.99);
        bench_figure ("1.direct", "samples", (double) count, NULL);
    }
    free (samples);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    bench_stop (worker, 1000);
    return p50;
}

void
bench_baseline (bench_baseline_t *out)
{
    out->broker_cpu_us = NAN;
    double proxy_cpu = NAN, direct_p99 = NAN;
    out->lb_rps = s_broker_run ("lb", false, 5, &out->broker_cpu_us);
    bench_figure ("1.baseline-lb", "throughput", out->lb_rps, "req_per_s");
    bench_figure ("1.baseline-lb", "broker_cpu_per_req", out->broker_cpu_us, "us");
    bench_line ("1.baseline-lb",
                "%.0f req/s (LB broker, 2 workers, %d in flight); "
                "broker CPU %.2f us/req",
                out->lb_rps, bench.inflight, out->broker_cpu_us);
    out->proxy_rps = s_broker_run ("proxy", false, 5, &proxy_cpu);
    bench_figure ("1.baseline-proxy", "throughput", out->proxy_rps, "req_per_s");
    bench_figure ("1.baseline-proxy", "broker_cpu_per_req", proxy_cpu, "us");
    bench_line ("1.baseline-proxy",
                "%.0f req/s (zmq_proxy ROUTER/DEALER, 2 workers, "
                "pipelined); broker CPU %.2f us/req",
                out->proxy_rps, proxy_cpu);
    out->direct_p50_us = s_direct_run (&direct_p99);
    bench_figure ("1.direct", "p50", out->direct_p50_us, "us");
    bench_figure ("1.direct", "p99", direct_p99, "us");
    bench_line ("1.direct",
                "round trip p50 %.1f us, p99 %.1f us (DEALER <-> ROUTER, "
                "one at a time)",
                out->direct_p50_us, direct_p99);
}

void
bench_baseline_tcp (bench_baseline_tcp_t *out)
{
    *out = (bench_baseline_tcp_t){ NAN, NAN };
    double lb_cpu = NAN, proxy_cpu = NAN;
    out->lb_rps = s_broker_run ("lb", true, 2, &lb_cpu);
    bench_figure ("8.baseline-lb-tcp", "throughput", out->lb_rps, "req_per_s");
    bench_figure ("8.baseline-lb-tcp", "broker_cpu_per_req", lb_cpu, "us");
    bench_line ("8.baseline-lb-tcp",
                "%.0f req/s (LB broker over tcp, 2 workers, %d in "
                "flight); broker CPU %.2f us/req",
                out->lb_rps, bench.inflight, lb_cpu);
    out->proxy_rps = s_broker_run ("proxy", true, 2, &proxy_cpu);
    bench_figure ("8.baseline-proxy-tcp", "throughput", out->proxy_rps, "req_per_s");
    bench_figure ("8.baseline-proxy-tcp", "broker_cpu_per_req", proxy_cpu, "us");
    bench_line ("8.baseline-proxy-tcp",
                "%.0f req/s (zmq_proxy over tcp, 2 workers, "
                "pipelined); broker CPU %.2f us/req",
                out->proxy_rps, proxy_cpu);
}
