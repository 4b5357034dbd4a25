/*  harness — process management and helpers for emq's integration tests.

    The runner (h_main) runs each test in a forked child that leads its own
    process group and is a child subreaper, inside a fresh mkdtemp directory
    under /tmp. Every process a test starts (emq-router, emq-jobmanager,
    emq-cli) is a member of that group, runs with the directory as its cwd
    and writes stdout and stderr to <dir>/<tag>.log. The runner enforces a
    hard timeout per test; whatever happens, it kills the group with SIGKILL,
    kills and reaps every orphan left behind (workers run in process groups
    of their own), prints the logs' tails when the test failed, and removes
    the directory (kept with -k or EMQ_TEST_KEEP=1).

    Tests never sleep to synchronise: they poll for the expected state with
    a deadline (H_WAIT, REQUIRE_WAIT). A failing REQUIRE prints the
    expression and both values, then ends the test at once (the runner
    cleans up). The names say so, as in tests/testutil.h, where CHECK counts
    a failure and goes on and REQUIRE ends the test function.

    Environment:
        BUILD              build directory (default "build"): binaries in
                           $BUILD/bin, plugins in $BUILD/plugins
        EMQ_TEST_WRAPPER   command prefix for emq-router and emq-jobmanager,
                           e.g. "valgrind --error-exitcode=99 -q"
        EMQ_TEST_TIMEOUT   hard timeout per test in seconds (default 60;
                           multiplied by the scale)
        EMQ_TEST_SCALE     multiplier for every deadline (default 1, or 5
                           when a wrapper is set)
        EMQ_TEST_KEEP      keep the test directories
*/
#ifndef EMQ_TESTS_HARNESS_H
#define EMQ_TESTS_HARNESS_H

#include <czmq.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "emqp.h"
#include "emq/client.h"

#define H_MAX_PROCS 64
#define H_PATH_MAX 512

//  The example plugin, as job payloads and emq-cli name it.
#define H_PLUGIN "libemq_examples.so"

typedef struct {
    pid_t pid;
    char tag[64];  // log file is <dir>/<tag>.log
    bool reaped;   // waitpid has collected it
    int status;    // its wait status once reaped
} h_proc_t;

typedef struct {
    const char *name;  // test name
    bool verbose;
    char dir[H_PATH_MAX];       // the test's own temp directory
    char frontend[H_PATH_MAX];  // ipc://<dir>/frontend
    char backend[H_PATH_MAX];   // ipc://<dir>/backend
    char admin[H_PATH_MAX];     // ipc://<dir>/admin
    int64_t started_ms;         // monotonic
    h_proc_t procs[H_MAX_PROCS];
    size_t nprocs;
    int cli_runs;  // numbers emq-cli log files
} h_test_t;

typedef void (h_test_fn) (h_test_t *t);

typedef struct {
    const char *name;
    h_test_fn *fn;
    const char *summary;
} h_testdef_t;

//  Runs the tests named by -t (all when none), prints one line per test and
//  a last line "N passed, N failed". Returns the process exit code.
int h_main (const h_testdef_t *tests, size_t count, int argc, char **argv);

//  The durability tests (durability.c), run after integration.c's own.
extern const h_testdef_t h_durability_tests[];
extern const size_t h_durability_count;
extern const h_testdef_t h_batching_tests[];  // tests/batching.c
extern const size_t h_batching_count;
//  The durable path's tests (durable_path.c): the writer thread.
extern const h_testdef_t h_observe_tests[];  // tests/observe.c
extern const size_t h_observe_count;
extern const h_testdef_t h_durable_path_tests[];
extern const size_t h_durable_path_count;
//  Job confinement (confinement.c): hostile jobs against a real job manager.
extern const h_testdef_t h_confinement_tests[];
extern const size_t h_confinement_count;
//  Hostile clients against the router (hostile.c): issue 11.
extern const h_testdef_t h_hostile_tests[];
extern const size_t h_hostile_count;
//  Running as a service (ops.c): SIGHUP, sd_notify, units, make install.
extern const h_testdef_t h_ops_tests[];
extern const size_t h_ops_count;
//  EventMQ drop-in tests (dropin.c): settings, flags, shell, pub/sub.
extern const h_testdef_t h_dropin_tests[];
extern const size_t h_dropin_count;
//  Python jobs in the embedded interpreter (python_jobs.c).
extern const h_testdef_t h_python_tests[];
extern const size_t h_python_count;
//  The store's promises on each backend, in process (store_contract.c).
extern const h_testdef_t h_store_contract_tests[];
extern const size_t h_store_contract_count;
//  Several routers on one PostgreSQL database (ha.c): peers follow the
//  lead, STATUS lists the standbys (issue 14).
extern const h_testdef_t h_ha_tests[];
extern const size_t h_ha_count;

//  ---------------------------------------------------------------------
//  Time and checks

//  The build directory in use (absolute): bin/, plugins/, tests/.
const char *h_build_dir (void);
//  A timeout in ms multiplied by the scale (slow wrappers need longer).
int h_ms (int ms);
//  How much slower than a plain build this run is: the scale, or at least 4
//  when the tests are built with AddressSanitizer (make sanitize).
double h_slowness (void);
//  A job count for load tests: n divided by the slowness (at least 1).
int h_count (int n);
//  Pause between two polls of a condition (never used to synchronise).
void h_nap (void);
//  Prints a progress line with the test's elapsed time when verbose.
void h_log (h_test_t *t, const char *format, ...) __attribute__ ((format (printf, 2, 3)));
//  Prints "FAIL at file:line: message" and ends the test (does not return).
void h_fail (const char *file, int line, const char *format, ...)
    __attribute__ ((format (printf, 3, 4), noreturn));

//  Prints "FAIL at file:line: REQUIRE(expr) is false: message" and ends the test.
void h_fail_check (const char *file, int line, const char *expr, const char *format, ...)
    __attribute__ ((format (printf, 4, 5), noreturn));

//  The test running in this process (set by the runner).
extern h_test_t *h_current;

#define REQUIRE(cond)                                                   \
    do {                                                                \
        if (!(cond))                                                    \
            h_fail (__FILE__, __LINE__, "REQUIRE(%s) is false", #cond); \
    } while (0)

#define REQUIRE_MSG(cond, ...)                                     \
    do {                                                           \
        if (!(cond))                                               \
            h_fail_check (__FILE__, __LINE__, #cond, __VA_ARGS__); \
    } while (0)

//  Integer comparison: REQUIRE_INT (rc, ==, 0).
#define REQUIRE_INT(a, op, b)                                                          \
    do {                                                                               \
        long long h_a_ = (long long) (a), h_b_ = (long long) (b);                      \
        if (!(h_a_ op h_b_))                                                           \
            h_fail (__FILE__, __LINE__, "REQUIRE_INT(%s %s %s): %s = %lld, %s = %lld", \
                    #a, #op, #b, #a, h_a_, #b, h_b_);                                  \
    } while (0)

#define REQUIRE_STREQ(a, b)                                                            \
    do {                                                                               \
        const char *h_a_ = (a), *h_b_ = (b);                                           \
        if (!h_a_ || !h_b_ || strcmp (h_a_, h_b_) != 0)                                \
            h_fail (__FILE__, __LINE__, "REQUIRE_STREQ(%s, %s): \"%s\" != \"%s\"", #a, \
                    #b, h_a_ ? h_a_ : "(null)", h_b_ ? h_b_ : "(null)");               \
    } while (0)

#define REQUIRE_CONTAINS(hay, needle)                                                 \
    do {                                                                              \
        const char *h_h_ = (hay), *h_n_ = (needle);                                   \
        if (!h_h_ || !h_n_ || !strstr (h_h_, h_n_))                                   \
            h_fail (__FILE__, __LINE__,                                               \
                    "REQUIRE_CONTAINS(%s, %s): \"%s\" does not contain \"%s\"", #hay, \
                    #needle, h_h_ ? h_h_ : "(null)", h_n_ ? h_n_ : "(null)");         \
    } while (0)

//  True when expr became true before timeout_ms (scaled) ran out.
#define H_WAIT(expr, timeout_ms)                                    \
    __extension__({                                                 \
        int64_t h_deadline_ = clock_mono_ms () + h_ms (timeout_ms); \
        bool h_ok_;                                                 \
        while (!(h_ok_ = (expr)) && clock_mono_ms () < h_deadline_) \
            h_nap ();                                               \
        h_ok_;                                                      \
    })

//  Fails the test when expr has not become true within timeout_ms.
#define REQUIRE_WAIT(expr, timeout_ms)                                          \
    do {                                                                        \
        if (!H_WAIT (expr, timeout_ms))                                         \
            h_fail (__FILE__, __LINE__, "timed out after %d ms waiting for %s", \
                    h_ms (timeout_ms), #expr);                                  \
    } while (0)

//  ---------------------------------------------------------------------
//  Processes

//  Starts BUILD/bin/<program> with the NULL-terminated argv after it
//  (args[0] is the first argument, not the program), output to <tag>.log,
//  prefixed with EMQ_TEST_WRAPPER when wrap is set. Fails the test if fork
//  fails. Returns the pid.
pid_t h_spawn (h_test_t *t, const char *tag, bool wrap, const char *program,
               const char *const *args);

//  Starts emq-router on the test's addresses with short heartbeats, the extra
//  arguments given (NULL-terminated), and waits until it answers STATUS.
pid_t h_router (h_test_t *t, const char *tag, ...) __attribute__ ((sentinel));
//  The same with another admin address (NULL: the test's), and without
//  waiting for STATUS when wait is false (a router that must not serve yet:
//  --standby, --takeover). The test's data directory is <dir>/data.
//  The addresses of one router, for tests with two: slot 0 is the test's
//  own (t->frontend, ...), slot 1 a second set in the test's directory.
typedef struct {
    char frontend[H_PATH_MAX + 32], backend[H_PATH_MAX + 32], admin[H_PATH_MAX + 32];
} h_slot_t;
void h_slots (h_test_t *t, h_slot_t slot[2]);

pid_t h_router_ex (h_test_t *t, const char *tag, const char *admin, bool wait, ...)
    __attribute__ ((sentinel));

//  Starts emq-jobmanager named `name` on the backend with queues (JSON) and
//  concurrent jobs, plugin dir and exec allow-list '/bin/*', no cgroups
//  (--job-cgroup off; pass --job-cgroup auto to have them), short
//  heartbeats and extra arguments (NULL-terminated). Does not wait.
pid_t h_jm (h_test_t *t, const char *name, const char *queues, int concurrent, ...)
    __attribute__ ((sentinel));

//  Waits for pid (a process this test started) to exit for up to
//  timeout_ms. Returns true and sets *status (may be NULL) when it did.
bool h_proc_wait (h_test_t *t, pid_t pid, int timeout_ms, int *status);
//  True while pid exists and is not a zombie.
bool h_pid_alive (pid_t pid);
//  Kills pid with sig; when with_children, its child processes first (a
//  job manager's workers).
void h_kill (h_test_t *t, pid_t pid, int sig, bool with_children);
//  Collects up to max direct children of pid; returns the count.
size_t h_children (pid_t pid, pid_t *out, size_t max);

//  Result of one emq-cli run.
typedef struct {
    int status;  // exit code; 128+N for signal N; -1 timed out
    char *out;   // stdout (owned)
    char *err;   // stderr (owned)
    int64_t elapsed_ms;
} h_cli_t;

//  Runs emq-cli --addr <frontend> --admin-addr <admin> ARGS... (NULL-
//  terminated) and waits up to timeout_ms. Fills *r; free with h_cli_free.
void h_cli (h_test_t *t, h_cli_t *r, int timeout_ms, ...) __attribute__ ((sentinel));
void h_cli_free (h_cli_t *r);
//  Removes trailing newlines in place; returns s.
char *h_chomp (char *s);
//  The number of lines of <dir>/<tag>.log (a process this test started)
//  that contain needle; 0 when there is no such log yet.
size_t h_log_count (h_test_t *t, const char *tag, const char *needle);

//  ---------------------------------------------------------------------
//  Router admin

//  Sends an admin command and parses the JSON reply; NULL on failure.
//  Caller owns the result (json_decref).
json_t *h_admin (h_test_t *t, const char *command);
//  The same on another admin address, waiting up to timeout_ms (not scaled).
json_t *h_admin_at (h_test_t *t, const char *addr, const char *command, int timeout_ms);
//  Looks up nested keys (NULL-terminated); borrowed, or NULL.
json_t *h_jget (json_t *root, ...) __attribute__ ((sentinel));
//  The integer at the keys, or dflt when missing or not a number.
long long h_jint (json_t *root, long long dflt, ...) __attribute__ ((sentinel));

//  The connected_workers entry of the job manager named `name` (its
//  identity starts with "name-"), with a new reference, or NULL. When
//  identity is not NULL it receives the identity (up to 256 bytes).
json_t *h_jm_info (h_test_t *t, const char *name, char *identity);
//  True when a job manager named `name` is registered with the router.
bool h_jm_registered (h_test_t *t, const char *name);
//  Waits until the job manager `name` is registered; fails the test if not
//  within timeout_ms. Returns its identity (static storage per call site
//  is not needed: written to identity, 256 bytes, may be NULL).
void h_wait_jm (h_test_t *t, const char *name, int timeout_ms, char *identity);
//  True once `name` is registered and announces at least `slots` free slots.
bool h_jm_has_slots (h_test_t *t, const char *name, int slots);
//  Number of keys in the job manager's stats.pid_distribution, -1 if absent.
int h_jm_pid_count (h_test_t *t, const char *name);
//  The worker pid running msgid according to the job manager's stats, or 0.
pid_t h_jm_job_pid (h_test_t *t, const char *name, const char *msgid);

//  ---------------------------------------------------------------------
//  libemq helpers

//  Encodes a `run` payload for H_PLUGIN's function with msgpack args built
//  from JSON text (NULL = nil). Caller frees *out. Fails the test on error.
void h_payload_run (const char *function, const char *json_args, void **out,
                    size_t *size);
//  Encodes an `exec` payload for argv (NULL-terminated).
void h_payload_exec (const char *const *argv, void **out, size_t *size);
//  Submits a run job with reply-requested and waits for its ACK; fails the
//  test when it is not acknowledged. Writes the msgid.
void h_submit_run (emq_client_t *client, const char *queue, const char *function,
                   const char *json_args, uint32_t timeout_s, char msgid[37]);
//  Renders a RESULT's value as JSON text (malloc'd) for ok results, or the
//  error text for the others.
char *h_result_text (const emq_event_t *event);
//  Converts a msgpack value to a jansson value (bin/str as strings).
json_t *h_msgpack_to_json (const msgpack_object *obj);

//  ---------------------------------------------------------------------
//  Raw eMQP (for protocol tests)

//  A DEALER connected to endpoint, with identity (NULL: a random one).
//  Caller destroys it.
zsock_t *h_dealer (const char *endpoint, const char *identity);
//  Sends text frames (NULL-terminated). Returns 0 or -1.
int h_send_strs (zsock_t *sock, ...) __attribute__ ((sentinel));
//  Receives one multipart message within timeout_ms, or NULL.
zmsg_t *h_recv_raw (zsock_t *sock, int timeout_ms);
//  Receives and decodes the next message within timeout_ms, skipping
//  HEARTBEATs; NULL on timeout or when it cannot be decoded (reason logged).
emqp_msg_t *h_recv_msg (h_test_t *t, zsock_t *sock, int timeout_ms);
//  Receives messages until one with this command arrives (others are
//  skipped) or timeout_ms runs out.
emqp_msg_t *h_recv_cmd (h_test_t *t, zsock_t *sock, emqp_command_t command,
                        int timeout_ms);

//  ---------------------------------------------------------------------
//  PostgreSQL: a server of the test's own (initdb into <dir>/pg, a unix
//  socket there, run as the postgres user when the tests run as root).

//  The server's bin directory (/usr/lib/postgresql/N/bin), or NULL when
//  PostgreSQL is not installed (the test then says so and skips).
const char *h_pg_bin (void);
//  Starts the server, creates database "emq", returns its connection
//  string; fails the test if it cannot. Stopped by h_pg_stop or when the
//  test ends.
const char *h_pg_start (h_test_t *t);
void h_pg_stop (h_test_t *t);
//  Stops the server (fast), waits down_ms, starts it again.
bool h_pg_restart (h_test_t *t, int down_ms);
//  When set (to h_pg_start's string), every router h_router starts keeps
//  its jobs there (--store postgresql --store-dsn).
extern const char *h_store_dsn;
//  A connection to the test's database (fails the test if it cannot), and
//  a query's one integer.
PGconn *h_pg_connect (h_test_t *t);
long long h_pg_int (PGconn *conn, const char *sql);

#endif
