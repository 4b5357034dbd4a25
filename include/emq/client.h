/*  emq/client.h — libemq, the client library for emq (and EventMQ) routers.

    A client is one DEALER socket connected to a router's frontend. It can
    submit jobs and wait for each one's ACK, or keep many submissions in
    flight and collect ACKs, errors and results as events. Not thread-safe:
    use one client per thread.

    Errors are negative emq_error_t codes; emq_strerror() names them and
    emq_client_last_error() gives the detail of the last failure.

    Reaching the router: the socket only queues messages on a completed
    connection (ZMQ_IMMEDIATE), so a send waits up to the connect timeout
    (emq_client_set_connect_timeout, default 5 s) for the router and then
    fails with EMQ_ERR_UNREACHABLE instead of queueing a job for a router
    that is not there. A router that accepts the connection but does not
    answer shows as EMQ_ERR_UNREACHABLE from emq_submit when no ACK comes.

    Signals: libemq uses czmq, which installs SIGINT/SIGTERM handlers when
    its first socket is made, unless the program calls zsys_handler_set
    (NULL) first or sets ZSYS_SIGHANDLER=false. A wait interrupted by a
    signal returns EMQ_ERR_SYSTEM ("interrupted").
*/
#ifndef EMQ_CLIENT_H
#define EMQ_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emq/version.h"  // EMQ_VERSION, written by the build from its VERSION

#ifdef __cplusplus
extern "C" {
#endif

#define EMQ_DEFAULT_FRONTEND "tcp://127.0.0.1:47291"
#define EMQ_DEFAULT_ADMIN "tcp://127.0.0.1:47293"
#define EMQ_MSGID_MAX 128
#define EMQ_CONNECT_TIMEOUT_MS 5000
//  With several router addresses: how long a REQUEST may stay unACKed
//  before it is sent again, to the next router that takes it.
#define EMQ_FAILOVER_TIMEOUT_MS 2000

typedef enum {
    EMQ_OK = 0,
    EMQ_ERR_INVALID = -1,      // bad argument (empty queue, NULL payload...)
    EMQ_ERR_UNREACHABLE = -2,  // no answer from the router in time
    EMQ_ERR_TIMEOUT = -3,      // the wait for a result ran out
    EMQ_ERR_REJECTED = -4,     // the router refused the job (ERROR frame)
    EMQ_ERR_JOB_FAILED = -5,   // the job ran and failed
    EMQ_ERR_JOB_TIMEOUT = -6,  // the job was killed after its timeout
    EMQ_ERR_PROTOCOL = -7,     // the router sent something we cannot read
    EMQ_ERR_NOMEM = -8,
    EMQ_ERR_SYSTEM = -9,     // a system call failed (see last error)
    EMQ_ERR_NOT_FOUND = -10  // the router knows no such job (FETCH, CANCEL):
                             // never submitted, or its result expired
} emq_error_t;

typedef struct emq_client emq_client_t;

typedef struct {
    const char *queue;          // NULL = "default"
    bool reply;                 // reply-requested: send the result back
    uint32_t retries;           // retry-count:N
    uint32_t timeout_s;         // timeout:N, 0 = none
    const char *extra_headers;  // appended verbatim (e.g. "guarantee"), or NULL
    uint32_t delay_s;           // delay:N, keep the job scheduled N s; 0 = none
    uint32_t eta;               // eta:UNIX_TS, keep it scheduled until then
    const char *msgid;          // NULL: a fresh UUIDv7. Else this id (1..36
                                // printable bytes): resending a REQUEST whose
                                // ACK was lost under its first id makes the
                                // router ACK it again instead of running it
                                // twice
                                // (wall clock, seconds); 0 = none
} emq_submit_opts_t;

typedef enum {
    EMQ_EVENT_ACK,    // the router accepted msgid
    EMQ_EVENT_ERROR,  // the router refused msgid (code, text)
    EMQ_EVENT_RESULT  // msgid finished (status, value or error)
} emq_event_type_t;

typedef enum {
    EMQ_JOB_OK = 0,
    EMQ_JOB_FAILED,
    EMQ_JOB_TIMEOUT,
    EMQ_JOB_CRASHED,
    EMQ_JOB_REJECTED,
    EMQ_JOB_CANCELLED  // cancelled (emq-cli cancel) while running
} emq_job_status_t;

typedef struct {
    emq_event_type_t type;
    char msgid[EMQ_MSGID_MAX + 1];  // the job the event is about
    emq_job_status_t status;        // RESULT
    const void *data;               // RESULT ok: msgpack value; RESULT not ok:
                                    // error text; ERROR: reason. Not
                                    // NUL-terminated; owned by the client and
                                    // valid until its next emq_poll,
                                    // emq_wait_result or destroy
    size_t size;
    char code[64];    // ERROR: e.g. "QUEUE_FULL"
    char usage[256];  // RESULT: "wall_us=N cpu_us=N maxrss_kb=N"
} emq_event_t;

//  Names an error code ("router unreachable").
const char *emq_strerror (int code);
//  Names a job status: "ok", "failed", "timeout", "crashed", "rejected",
//  "cancelled".
const char *emq_job_status_name (emq_job_status_t status);

//  Connects to addr, or to $EMQ_BROKER_ADDR, or to EMQ_DEFAULT_FRONTEND.
//  addr may list several routers, "tcp://r1:47291,tcp://r2:47291" (up to
//  16), of which one leads at a time (docs/operations.md): the client
//  sends to the one that takes messages, reads from all, and when the one
//  it uses stops taking messages or leaves a REQUEST unACKed for the
//  failover timeout, moves to the next, sends the unACKed REQUESTs again
//  under their msgids (stored once) and asks again for the RESULTs it
//  awaits; each ACK and RESULT is handed out once. It keeps a copy of each
//  payload until its ACK.
//  Returns NULL on failure (bad address, errno EINVAL; bad CURVE keys,
//  errno EPERM). Connecting never waits: an absent router shows as
//  EMQ_ERR_UNREACHABLE on the first send or wait. The caller owns the
//  client.
emq_client_t *emq_client_new (const char *addr);

//  CURVE encryption for every socket libemq opens from now on (clients and
//  admin calls), for a router that runs with curve_secret_cert: server_key
//  is its public key (40 Z85 characters, or its public certificate file),
//  client_cert this program's key pair file (NAME_secret of emq-cli keygen)
//  or NULL/"" for a fresh key pair. A NULL or empty server_key turns CURVE
//  off. Until called, both come from $EMQ_CURVE_SERVER_KEY and
//  $EMQ_CURVE_CERT. Call it before creating clients (it is not thread-safe).
//  Returns 0, or EMQ_ERR_INVALID with the reason in err (errlen bytes).
int emq_set_curve (const char *server_key, const char *client_cert, char *err,
                   size_t errlen);
//  Closes the socket (unsent messages are dropped after 100 ms), frees
//  buffered events and nulls *self_p; NULL is fine.
void emq_client_destroy (emq_client_t **self_p);
//  Detail of the last failure on this client (never NULL).
const char *emq_client_last_error (emq_client_t *self);
//  The endpoint of the router the client uses now (borrowed).
const char *emq_client_endpoint (emq_client_t *self);
//  How long emq_submit_async waits for the router connection, or for room
//  in the send queue, before EMQ_ERR_UNREACHABLE. Default
//  EMQ_CONNECT_TIMEOUT_MS; -1 waits forever.
void emq_client_set_connect_timeout (emq_client_t *self, int timeout_ms);
//  Several addresses: how long a REQUEST waits for its ACK before it is
//  sent again, to the next router that takes it (EMQ_FAILOVER_TIMEOUT_MS).
void emq_client_set_failover_timeout (emq_client_t *self, int timeout_ms);
//  Number of events received and kept for emq_poll.
size_t emq_client_pending (emq_client_t *self);

//  Sends a REQUEST without waiting for its ACK (which arrives later as an
//  event); msgid_out (37 bytes) receives the job's id. The payload is
//  copied. Waits only while the router is not connected or the send queue
//  is full (see emq_client_set_connect_timeout). Returns 0,
//  EMQ_ERR_INVALID (empty or too long queue, no payload, bad headers),
//  EMQ_ERR_UNREACHABLE or EMQ_ERR_SYSTEM.
int emq_submit_async (emq_client_t *self, const emq_submit_opts_t *opts,
                      const void *payload, size_t size, char msgid_out[37]);

//  Sends count jobs with the same options (opts->msgid must be NULL) without
//  waiting for their ACKs, like emq_submit_async for each. To an emq router
//  that takes batches (it says so in its first ACK) they travel as few
//  BATCH messages (up to 1,024 jobs or 48 KiB each; a payload over 8 KiB
//  alone), which costs the client, the router and the network far less per
//  job; before that, one REQUEST each. msgids_out (NULL, or count entries)
//  receives their ids, *sent_out (may be NULL) how many were sent. Returns
//  0, or an error as emq_submit_async (the jobs before *sent_out were sent).
int emq_submit_many (emq_client_t *self, const emq_submit_opts_t *opts,
                     const void *const *payloads, const size_t *sizes, size_t count,
                     char (*msgids_out)[37], size_t *sent_out);

//  Sends a REQUEST and waits up to timeout_ms in all (connection and ACK)
//  for its ACK. Returns 0, EMQ_ERR_REJECTED (the router's code and reason in
//  last error, e.g. "QUEUE_FULL: queue default is full"), or
//  EMQ_ERR_UNREACHABLE. Events for other jobs that arrive meanwhile are
//  kept for emq_poll.
int emq_submit (emq_client_t *self, const emq_submit_opts_t *opts, const void *payload,
                size_t size, char msgid_out[37], int timeout_ms);

//  Waits up to timeout_ms (-1 = forever) for the next event. Returns 0 and
//  fills *event (its data is owned by the client and valid until the next
//  call), or EMQ_ERR_TIMEOUT when nothing came.
int emq_poll (emq_client_t *self, int timeout_ms, emq_event_t *event);

//  Waits up to timeout_ms (-1 = forever) for the RESULT of msgid: a job
//  this client submitted with reply set, or any job after emq_fetch (then
//  it may be a job another process submitted, or one submitted before a
//  reconnect). Events for other jobs that arrive meanwhile are kept for
//  emq_poll, and msgid's own ACK is consumed. Returns 0 (job succeeded),
//  EMQ_ERR_JOB_FAILED (failed, crashed, cancelled or refused by the job
//  manager: see event->status), EMQ_ERR_JOB_TIMEOUT (killed after its
//  timeout), EMQ_ERR_REJECTED (the router refused it: event->type is
//  EMQ_EVENT_ERROR), EMQ_ERR_NOT_FOUND (answer to emq_fetch: the router
//  has no such job; event->type is EMQ_EVENT_ERROR, code "NOT_FOUND"), or
//  EMQ_ERR_TIMEOUT. *event holds the result in every case but the last.
int emq_wait_result (emq_client_t *self, const char *msgid, int timeout_ms,
                     emq_event_t *event);

//  Asks the router for the outcome of msgid (FETCH), without waiting. The
//  router answers with a RESULT event at once if the job has ended and its
//  result is still kept (the router's result_ttl), later when it ends if it
//  is still queued, scheduled or running, or with an ERROR event of code
//  "NOT_FOUND" (never submitted, or expired). The job need not have been
//  submitted by this client nor with reply set. Returns 0,
//  EMQ_ERR_INVALID (empty or too long msgid), EMQ_ERR_UNREACHABLE or
//  EMQ_ERR_SYSTEM.
int emq_fetch (emq_client_t *self, const char *msgid);

//  emq_fetch, then emq_wait_result: the stored outcome of msgid, waiting up
//  to timeout_ms (-1 = forever) for a job that has not ended yet. A RESULT
//  or ERROR for msgid already received and kept is used without asking
//  the router again. Returns what emq_wait_result returns (EMQ_ERR_NOT_FOUND
//  for an unknown or expired job, EMQ_ERR_TIMEOUT for one still pending),
//  or emq_fetch's error.
int emq_result (emq_client_t *self, const char *msgid, int timeout_ms,
                emq_event_t *event);

//  Job payloads (msgpack). Each returns 0 and a malloc'd buffer the caller
//  frees, or a negative emq_error_t.
//  run: library file name, function name, msgpack-encoded arguments (may be
//  NULL: nil).
int emq_payload_run (const char *library, const char *function, const void *args,
                     size_t args_size, void **out, size_t *out_size);
//  exec: argv (argc > 0), optional stdin bytes, optional env ("NAME=VALUE",
//  envc entries), optional cwd.
int emq_payload_exec (const char *const *argv, size_t argc, const void *stdin_data,
                      size_t stdin_size, const char *const *env, size_t envc,
                      const char *cwd, void **out, size_t *out_size);

//  Resource limits a job asks for; 0 = not asked. The job manager's own
//  rlimit_* settings cap them: a job can only ask for less.
typedef struct {
    uint64_t as_bytes;  // address space (RLIMIT_AS), bytes
    uint64_t nproc;     // processes of the workers' user (RLIMIT_NPROC)
    uint64_t nofile;    // open files (RLIMIT_NOFILE)
    uint64_t cpu_s;     // CPU seconds (RLIMIT_CPU)
} emq_limits_t;

//  Adds limits to a payload from emq_payload_run / _exec: *payload is
//  replaced by a new malloc'd buffer (the old one freed). Returns 0, or
//  EMQ_ERR_INVALID (not a payload; a limit above INT64_MAX).
int emq_payload_set_limits (void **payload, size_t *size, const emq_limits_t *limits);

//  Sends one admin command (STATUS, ROUTER_SHOW_WORKERS,
//  ROUTER_SHOW_SCHEDULERS, DISCONNECT, DEAD_LIST, DEAD_PURGE, FENCE_SHOW) to the admin
//  socket at addr (NULL = $EMQ_ADMIN_ADDR or EMQ_DEFAULT_ADMIN) and waits up
//  to timeout_ms for the reply (the first REPLY; ACK for DISCONNECT).
//  Returns 0, EMQ_ERR_INVALID (unknown command or bad address),
//  EMQ_ERR_UNREACHABLE, EMQ_ERR_REJECTED (ERROR from the router),
//  EMQ_ERR_PROTOCOL or EMQ_ERR_SYSTEM. On return *reply_out is NULL or a
//  malloc'd string the caller frees: the reply text on success (JSON; for
//  DISCONNECT the acked id), "CODE: reason" or the reason on failure.
int emq_admin (const char *addr, const char *command, int timeout_ms, char **reply_out);

//  Sends one admin command that may name a job, and waits like emq_admin:
//      CANCEL      ref = job msgid   answer ACK: *reply_out = the acked id
//      DEAD_RETRY  ref = job msgid,  answer REPLY {"retried": N}
//                  or "*" for all
//      DEAD_LIST   ref = NULL        answer REPLY {"dead": [...], "total": N}
//      DEAD_PURGE  ref = NULL        answer REPLY {"purged": N}
//      DEAD_DELETE ref = job msgid   answer REPLY {"deleted": 1}; a job that
//                                    is not dead: EMQ_ERR_NOT_FOUND
//      FENCE_RESET ref = fence scope answer ACK: *reply_out = the acked id
//                  ("(legacy)" for the scope of fires without one, "*" all)
//      FENCE_SHOW  ref = NULL        answer REPLY {"fences": [{"scope", "token"}]}
//  and the commands emq_admin takes (ref = NULL). Returns 0, or a negative
//  code: EMQ_ERR_NOT_FOUND (ERROR NOT_FOUND), EMQ_ERR_REJECTED (any other
//  ERROR, e.g. NOT_ALLOWED, BUSY), EMQ_ERR_INVALID (unknown command, ref
//  missing, too long or given where none is taken, bad address), and
//  emq_admin's others. On an ERROR *reply_out is "CODE: reason"; otherwise
//  as emq_admin. The caller frees *reply_out.
int emq_admin_job (const char *addr, const char *command, const char *ref, int timeout_ms,
                   char **reply_out);

//  Job and queue administration (an emq extension: the ADMIN command,
//  docs/protocol.md "Job and queue admin"). Each sends one request to the
//  admin socket at addr (NULL as emq_admin) and waits up to timeout_ms for
//  the router's REPLY, a JSON object in *reply_out (the caller frees it;
//  formats in docs/protocol.md). Returns 0, or EMQ_ERR_NOT_FOUND (no such
//  job, queue or job manager), EMQ_ERR_REJECTED (any other ERROR, e.g.
//  BAD_REQUEST), EMQ_ERR_INVALID (bad arguments) and emq_admin's others;
//  *reply_out is then "CODE: reason".
//
//  Any request, as JSON text: {"command": "...", ...} (at most 4096 bytes).
int emq_admin_request (const char *addr, const char *request_json, int timeout_ms,
                       char **reply_out);
//  Jobs in one state: "waiting", "scheduled" (delayed or retrying),
//  "running", "dead" (NULL: "waiting"); queue NULL for every queue; a page
//  of at most limit jobs (0: 100) from offset. Reply {"jobs": [...],
//  "total": N, "offset": N, "limit": N, "state": "..."}.
int emq_jobs_list (const char *addr, const char *queue, const char *state, size_t offset,
                   size_t limit, int timeout_ms, char **reply_out);
//  One job: {"job": {msgid, queue, state, headers, payload, attempt, ...,
//  "history": [...]}}.
int emq_job_show (const char *addr, const char *msgid, int timeout_ms, char **reply_out);
//  action "pause" (the queue takes jobs but dispatches none; kept across
//  router restarts with a data directory), "resume", or "purge" (its
//  waiting jobs are cancelled). Reply {"queue": Q, "paused": bool} or
//  {"queue": Q, "purged": N}.
int emq_queue_admin (const char *addr, const char *action, const char *queue,
                     int timeout_ms, char **reply_out);
//  quiet true: the job manager (its name, as --name, or its identity) gets
//  no new jobs and finishes the running ones; false: it gets jobs again.
//  Reply {"jobmanager": identity, "quiet": bool}.
int emq_jobmanager_quiet (const char *addr, const char *jobmanager, bool quiet,
                          int timeout_ms, char **reply_out);

//  --------------------------------------------------------------------------
//  Schedules (emq-scheduler; EventMQ's SCHEDULE / UNSCHEDULE)

typedef struct {
    const char *name;           // name:NAME; NULL = named by a hash of the
                                // payload, as EventMQ identifies schedules
    const char *queue;          // NULL = "default"
    int64_t interval_s;         // > 0: run every interval_s seconds
    const char *cron;           // or a cron expression (interval_s = 0)
    bool nohaste;               // interval: first run after one interval,
                                // not at once
    uint32_t runs;              // run_count:N, end after N runs; 0 = no end
    bool misfire_skip;          // misfire:skip: after downtime skip missed
                                // runs (default: run once to catch up)
    const char *timezone;       // tz:NAME for cron; NULL = the scheduler's
    const char *extra_headers;  // headers for each run (e.g. "timeout:60,
                                // retry-count:2"), or NULL
} emq_schedule_opts_t;

//  Sends SCHEDULE (the payload is copied) and waits up to timeout_ms for the
//  router's ACK, which means a scheduler has it. A schedule with the same
//  name is replaced. Returns 0, EMQ_ERR_INVALID (no interval or cron, both,
//  bad name, headers too long), EMQ_ERR_REJECTED (e.g. "NO_SCHEDULER: no
//  scheduler is connected to this router"), or EMQ_ERR_UNREACHABLE. The
//  scheduler checks the cron expression; emq-cli checks it first.
int emq_schedule (emq_client_t *self, const emq_schedule_opts_t *opts,
                  const void *payload, size_t size, int timeout_ms);

//  Sends UNSCHEDULE for the schedule `name` and waits for the router's ACK.
//  kill_running: also cancel the job its last run submitted, if still
//  running. Returns as emq_schedule.
int emq_unschedule (emq_client_t *self, const char *name, bool kill_running,
                    int timeout_ms);

//  Self test against an in-process fake router (client/client_test.c).
void emq_client_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
