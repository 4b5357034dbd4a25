/*  config — settings for every emq program. See config.h and
    docs/configuration.md.

    One static table (s_settings) describes every setting: its name, type,
    default, limits, the program sections it belongs to, and a line of text.
    A config_t holds one value per table row; each value keeps its canonical
    text (for config_print) and where it came from. Defaults go through the
    same parser as everything else, so a bad default fails the self test.

    config_load is atomic: it builds a fresh set of values (defaults, file,
    environment), then keeps the values set on the command line, and only
    replaces the current values if everything validated. A reload (SIGHUP)
    that fails leaves the running configuration untouched.

    EventMQ's names are kept. Older or EventMQ-only spellings are aliases
    (s_aliases); EventMQ settings that emq does not use are accepted with a
    warning (s_ignored) so that an existing eventmq.conf loads.
*/
#include "config.h"
#include "addrlist.h"
#include "errbuf.h"
#include "log.h"
#include "numparse.h"
#include "payload.h"
#include "queuespec.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include "emq-paths.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

//  Program sections, as bits. A setting in S_ANY belongs to every program.
#define S_GLOBAL (1u << 0)
#define S_ROUTER (1u << 1)
#define S_JM (1u << 2)
#define S_SCHED (1u << 3)
#define S_CLI (1u << 4)
#define S_PUB (1u << 5)
#define S_WEB (1u << 6)
#define S_ANY (S_GLOBAL | S_ROUTER | S_JM | S_SCHED | S_CLI | S_PUB | S_WEB)

static const struct {
    const char *name;
    unsigned bit;
} s_sections[] = {
    { "global", S_GLOBAL },   { "router", S_ROUTER }, { "jobmanager", S_JM },
    { "scheduler", S_SCHED }, { "cli", S_CLI },       { "publisher", S_PUB },
    { "web", S_WEB },
};
#define S_SECTION_COUNT (sizeof s_sections / sizeof s_sections[0])

typedef enum {
    S_TYPE_STRING,
    S_TYPE_INT,
    S_TYPE_SECONDS,  // double, seconds
    S_TYPE_BOOL,
    S_TYPE_LIST,  // ':'-separated strings
} s_type_t;

//  A checker validates (and may normalise) a string or list item. Returns 0,
//  possibly with *canonical set to a malloc'd replacement text, or -1 after
//  writing what was expected to why.
typedef int (s_check_fn) (const char *value, char **canonical, char *why, size_t whylen);

typedef struct {
    const char *name;
    s_type_t type;
    const char *default_text;  // parsed like any other value
    int64_t min, max;          // S_TYPE_INT
    double dmin, dmax;         // S_TYPE_SECONDS
    bool bytes;                // S_TYPE_INT: accepts k/M/G suffixes
    char sep;                  // S_TYPE_LIST: item separator, 0 = ':'
    const char *choices;       // S_TYPE_STRING: "a|b|c", or NULL
    s_check_fn *check;         // S_TYPE_STRING and list items, or NULL
    unsigned list_sections;    // S_TYPE_STRING: in these programs, a ','-
                               // separated list of endpoints (addrlist.h)
    size_t max_len;            // S_TYPE_STRING: 0 = no limit
    unsigned sections;
    const char *description;
} s_setting_t;

static s_check_fn s_check_endpoint;
static s_check_fn s_check_endpoint_list;
static s_check_fn s_check_endpoint_or_empty;
static s_check_fn s_check_host_port;
static s_check_fn s_check_hook;
static s_check_fn s_check_python_hook;
static s_check_fn s_check_env_pattern;
static s_check_fn s_check_queues;
static s_check_fn s_check_queue_name;

#define S_ENDPOINTS "tcp://, ipc:// or inproc:// endpoint"

static const s_setting_t s_settings[] = {
    //  [global] and every program
    { .name = "name",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 255,
      .sections = S_ANY,
      .description = "unique name of this node; empty: the program makes one up" },
    { .name = "log_level",
      .type = S_TYPE_STRING,
      .default_text = "info",
      .choices = "error|warning|info|debug",
      .sections = S_ANY,
      .description = "least important log messages shown" },
    { .name = "log_format",
      .type = S_TYPE_STRING,
      .default_text = "auto",
      .choices = "auto|plain|journal",
      .sections = S_ANY,
      .description = "log lines: plain (ISO 8601 time), journal (syslog priority "
                     "prefix, no time), auto (journal when stdout is journald's "
                     "stream, JOURNAL_STREAM)" },
    { .name = "heartbeat_interval",
      .type = S_TYPE_SECONDS,
      .default_text = "3",
      .dmin = 0.01,
      .dmax = 3600,
      .sections = S_ANY,
      .description = "seconds between the HEARTBEATs a peer sends" },
    { .name = "heartbeat_timeout",
      .type = S_TYPE_SECONDS,
      .default_text = "5",
      .dmin = 0.01,
      .dmax = 3600,
      .sections = S_ANY,
      .description =
          "seconds of silence from a peer that count as one missed heartbeat" },
    { .name = "heartbeat_liveness",
      .type = S_TYPE_INT,
      .default_text = "3",
      .min = 1,
      .max = 1000,
      .sections = S_ANY,
      .description = "missed heartbeats after which a peer is declared dead" },
    { .name = "max_message_size",
      .type = S_TYPE_INT,
      .default_text = "16777216",
      .min = 64,
      .max = INT32_MAX,
      .bytes = true,
      .sections = S_ANY,
      .description =
          "largest payload or result frame accepted, in bytes (k/M/G suffixes)" },
    { .name = "default_queue_name",
      .type = S_TYPE_STRING,
      .default_text = "default",
      .check = s_check_queue_name,
      .sections = S_ANY,
      .description = "queue emq-cli submits and schedules to when --queue is not given" },

    //  [router]
    { .name = "frontend_listen_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47291",
      .check = s_check_endpoint,
      .sections = S_ROUTER,
      .description = "where the router listens for clients and schedulers" },
    { .name = "backend_listen_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47290",
      .check = s_check_endpoint,
      .sections = S_ROUTER,
      .description = "where the router listens for job managers" },
    { .name = "administrative_listen_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47293",
      .check = s_check_endpoint,
      .sections = S_ROUTER,
      .description = "where the router listens for administrative commands" },
    { .name = "events_listen_addr",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_endpoint_or_empty,
      .sections = S_ROUTER,
      .description = "where the router publishes its event stream (PUB), e.g. "
                     "tcp://127.0.0.1:47294; empty: no stream" },
    { .name = "queue_hwm",
      .type = S_TYPE_INT,
      .default_text = "100000",
      .min = 1,
      .max = 1000000000,
      .sections = S_ROUTER,
      .description = "most jobs waiting in one queue; past it REQUEST gets an ERROR" },
    { .name = "data_dir",
      .type = S_TYPE_STRING,
      .default_text = "/var/lib/emq",
      .max_len = 4000,
      .sections = S_ROUTER | S_SCHED,
      .description = "directory for the job database and the pidfile lock; "
                     "empty: keep jobs in memory only" },
    { .name = "store",
      .type = S_TYPE_STRING,
      .default_text = "sqlite",
      .choices = "sqlite|postgresql",
      .sections = S_ROUTER,
      .description = "where jobs are kept: sqlite (emq.db in data_dir) or postgresql "
                     "(the database store_dsn names)" },
    { .name = "store_dsn",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_ROUTER,
      .description = "store = postgresql: a libpq connection string (keywords or a "
                     "postgresql:// URI); keep passwords in ~/.pgpass, not here" },
    { .name = "store_lease_ttl",
      .type = S_TYPE_SECONDS,
      .default_text = "10",
      .dmin = 0.1,
      .dmax = 3600,
      .sections = S_ROUTER,
      .description = "store = postgresql: seconds the leading router's lease lasts; a "
                     "standby takes the lead once it expires" },
    { .name = "fsync",
      .type = S_TYPE_STRING,
      .default_text = "everysec",
      .choices = "always|everysec|off",
      .sections = S_ROUTER,
      .description = "when the job database is synced to disk: every batch, "
                     "once a second, or left to the OS" },
    { .name = "result_ttl",
      .type = S_TYPE_SECONDS,
      .default_text = "3600",
      .dmin = 0,
      .dmax = 31536000,
      .sections = S_ROUTER,
      .description = "seconds a job's outcome is kept for fetching by msgid" },
    { .name = "dead_ttl",
      .type = S_TYPE_SECONDS,
      .default_text = "604800",
      .dmin = 0,
      .dmax = 31536000,
      .sections = S_ROUTER,
      .description = "seconds a dead job (retries exhausted) is kept for inspection" },
    { .name = "retry_backoff",
      .type = S_TYPE_SECONDS,
      .default_text = "1",
      .dmin = 0,
      .dmax = 86400,
      .sections = S_ROUTER,
      .description = "first retry delay; doubles per attempt, with jitter" },
    { .name = "retry_backoff_max",
      .type = S_TYPE_SECONDS,
      .default_text = "300",
      .dmin = 0,
      .dmax = 86400,
      .sections = S_ROUTER,
      .description = "longest retry delay" },
    { .name = "curve_secret_cert",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_ROUTER,
      .description = "CURVE: the router's key pair (the NAME_secret file of "
                     "'emq-cli keygen NAME'); empty: no encryption" },
    { .name = "curve_clients_dir",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_ROUTER,
      .description = "CURVE: directory of the public certificates of the clients, "
                     "job managers and schedulers admitted; empty: any key" },
    { .name = "scheduler_identities",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_ROUTER,
      .description = "without CURVE roles: comma-separated names of the schedulers "
                     "(identity NAME or NAME-*) that may register; empty: any, from "
                     "loopback or ipc:// only; '*': any from anywhere" },
    { .name = "client_queues_max",
      .type = S_TYPE_INT,
      .default_text = "100",
      .min = 1,
      .max = 10000,
      .sections = S_ROUTER,
      .description = "most queues one client connection may hold in use (jobs in "
                     "them); past it REQUEST gets ERROR QUEUE_LIMIT" },
    { .name = "prefetch",
      .type = S_TYPE_INT,
      .default_text = "32",
      .min = 0,
      .max = 1024,
      .sections = S_ROUTER,
      .description = "at most this many jobs sent to an emq/2 job manager beyond its "
                     "free slots: about 25 ms of its work, at least 2 (it gives back "
                     "one it cannot start within prefetch_hold_ms); 0 = none" },

    //  [jobmanager]
    { .name = "backend_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47290",
      .check = s_check_endpoint,
      .sections = S_JM,
      .description = "the router's backend to connect to" },
    { .name = "backend_failover_addrs",
      .type = S_TYPE_LIST,
      .default_text = "",
      .sep = ',',
      .check = s_check_endpoint,
      .sections = S_JM,
      .description = "more router backends, tried in turn when the current one is "
                     "lost (','-separated: endpoints contain ':')" },
    { .name = "queues",
      .type = S_TYPE_STRING,
      .default_text = "[[10,\"default\"]]",
      .check = s_check_queues,
      .sections = S_JM,
      .description = "queues served, with weights: JSON [[weight,\"name\"],...] "
                     "or \"weight,name weight,name\"" },
    { .name = "concurrent_jobs",
      .type = S_TYPE_INT,
      .default_text = "4",
      .min = 1,
      .max = 1024,
      .sections = S_JM,
      .description = "worker processes, i.e. jobs run at once" },
    { .name = "max_job_count",
      .type = S_TYPE_INT,
      .default_text = "1024",
      .min = 0,
      .max = INT32_MAX,
      .sections = S_JM,
      .description = "jobs a worker runs before it is replaced; 0: never replaced" },
    { .name = "kill_grace_period",
      .type = S_TYPE_SECONDS,
      .default_text = "300",
      .dmin = 0,
      .dmax = 86400,
      .sections = S_JM,
      .description = "seconds running jobs get to finish after SIGTERM before "
                     "their workers are killed" },
    { .name = "plugin_dirs",
      .type = S_TYPE_LIST,
      .default_text = EMQ_PLUGIN_DIR,
      .sections = S_JM,
      .description = "directories searched for job libraries (run jobs); nothing "
                     "outside them is loaded" },
    { .name = "exec_allow",
      .type = S_TYPE_LIST,
      .default_text = "",
      .sections = S_JM,
      .description = "commands exec jobs may run (absolute paths); empty: no exec jobs" },
    { .name = "setup",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_hook,
      .sections = S_JM,
      .description = "LIB:FN run once in each new worker" },
    { .name = "job_entry",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_hook,
      .sections = S_JM,
      .description = "LIB:FN run before every job" },
    { .name = "job_exit",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_hook,
      .sections = S_JM,
      .description = "LIB:FN run after every job" },
    { .name = "python_path",
      .type = S_TYPE_LIST,
      .default_text = "",
      .sections = S_JM,
      .description = "directories put first on the module search path of python "
                     "jobs ($PYTHONPATH is honoured too)" },
    { .name = "python_allow",
      .type = S_TYPE_LIST,
      .default_text = "*",
      .sections = S_JM,
      .description = "modules python jobs may name, as fnmatch patterns (e.g. "
                     "myapp:myapp.*); '*' (EventMQ's behaviour): any importable "
                     "module; empty: no python jobs" },
    { .name = "python_setup",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_python_hook,
      .sections = S_JM,
      .description = "pkg.module.function run once in each worker, when it starts "
                     "Python for its first python job" },
    { .name = "python_job_entry",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_python_hook,
      .sections = S_JM,
      .description = "pkg.module.function run before every python job" },
    { .name = "python_job_exit",
      .type = S_TYPE_STRING,
      .default_text = "",
      .check = s_check_python_hook,
      .sections = S_JM,
      .description = "pkg.module.function run after every python job" },
    { .name = "max_worker_rss_kb",
      .type = S_TYPE_INT,
      .default_text = "0",
      .min = 0,
      .max = INT64_MAX / 1024,
      .sections = S_JM,
      .description = "replace a worker after a job that left it above this RSS "
                     "(KiB); 0: no limit" },
    { .name = "exec_env_allow",
      .type = S_TYPE_LIST,
      .default_text = "LANG:LANGUAGE:LC_*:TZ",
      .check = s_check_env_pattern,
      .sections = S_JM,
      .description = "names an exec job's env map may set (fnmatch patterns); loader "
                     "and interpreter variables (LD_*, GCONV_PATH, MALLOC_*, BASH_ENV, "
                     "...) pass only when named exactly; empty: no env map allowed" },
    { .name = "job_cgroup",
      .type = S_TYPE_STRING,
      .default_text = "auto",
      .choices = "auto|off",
      .sections = S_JM,
      .description = "auto: a cgroup v2 per worker where the job manager can make one "
                     "(what a job starts is killed with it, setsid or not); off: "
                     "the subreaper alone. Read at start only" },
    { .name = "user",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 255,
      .sections = S_JM,
      .description = "user the workers run as (name or uid); empty: the job "
                     "manager's own" },
    { .name = "group",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 255,
      .sections = S_JM,
      .description = "group the workers run as (name or gid); empty: the user's "
                     "primary group" },
    { .name = "rlimit_as",
      .type = S_TYPE_INT,
      .default_text = "0",
      .min = 0,
      .max = INT64_MAX / 2,
      .bytes = true,
      .sections = S_JM,
      .description = "address space a job may use, in bytes (k/M/G); 0: no limit" },
    { .name = "rlimit_nproc",
      .type = S_TYPE_INT,
      .default_text = "0",
      .min = 0,
      .max = INT32_MAX,
      .sections = S_JM,
      .description = "processes the workers' user may have while a job runs "
                     "(RLIMIT_NPROC, per user; not enforced for root); 0: no limit" },
    { .name = "rlimit_nofile",
      .type = S_TYPE_INT,
      .default_text = "0",
      .min = 0,
      .max = INT32_MAX,
      .sections = S_JM,
      .description = "open files a job may have; 0: no limit" },
    { .name = "rlimit_cpu",
      .type = S_TYPE_INT,
      .default_text = "0",
      .min = 0,
      .max = INT32_MAX,
      .sections = S_JM,
      .description = "CPU seconds a job may use; 0: no limit" },
    { .name = "default_timeout",
      .type = S_TYPE_INT,
      .default_text = "0",
      .min = 0,
      .max = 31536000,
      .sections = S_JM,
      .description = "seconds after which a job that names no timeout:N is killed, "
                     "as timeout:N would (EventMQ's global_timeout); 0: never" },
    { .name = "prefetch_hold_ms",
      .type = S_TYPE_INT,
      .default_text = "100",
      .min = 0,
      .max = 3600000,
      .sections = S_JM,
      .description = "milliseconds a job prefetched by the router may wait for a free "
                     "worker before it is given back (RETURN) to run elsewhere; 0: never "
                     "given back" },

    //  CURVE, for every program that connects to the router
    { .name = "curve_server_key",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_JM | S_SCHED | S_CLI | S_WEB,
      .description = "CURVE: the router's public key (40 Z85 characters, or its "
                     "public certificate file); empty: no encryption" },
    { .name = "curve_cert",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_JM | S_SCHED | S_CLI | S_WEB,
      .description = "CURVE: this program's key pair (a NAME_secret file); empty: "
                     "a fresh one (admitted only by a router that admits any key)" },

    //  [scheduler]
    { .name = "scheduler_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47291",
      .check = s_check_endpoint_list,
      .sections = S_SCHED,
      .description = "the router's frontend the scheduler connects to; a ','-separated "
                     "list: routers on one database, the next one tried when the one in "
                     "use is lost" },
    { .name = "timezone",
      .type = S_TYPE_STRING,
      .default_text = "UTC",
      .max_len = 128,
      .sections = S_SCHED,
      .description = "time zone of cron schedules (an IANA name such as Europe/Berlin); "
                     "a schedule's tz:NAME header overrides it" },
    { .name = "misfire_grace",
      .type = S_TYPE_SECONDS,
      .default_text = "5",
      .dmin = 0,
      .dmax = 86400,
      .sections = S_SCHED,
      .description = "seconds a fire may be late and still count as on time; a later "
                     "one is a misfire (run once, or skipped with misfire:skip)" },
    { .name = "etcd_endpoint",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 1000,
      .sections = S_SCHED,
      .description =
          "etcd's client URL (http://host:2379); empty: local mode (pidfile lock "
          "and SQLite in data_dir)" },
    { .name = "etcd_prefix",
      .type = S_TYPE_STRING,
      .default_text = "/emq",
      .max_len = 200,
      .sections = S_SCHED,
      .description = "etcd key prefix: <prefix>/leader, <prefix>/members/, "
                     "<prefix>/schedules/" },
    { .name = "etcd_lease_ttl",
      .type = S_TYPE_SECONDS,
      .default_text = "15",
      .dmin = 2,
      .dmax = 3600,
      .sections = S_SCHED,
      .description =
          "seconds of the etcd lease behind leadership; kept alive every third "
          "of it" },

    //  [cli] (and libemq clients)
    { .name = "frontend_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47291",
      .check = s_check_endpoint,
      .list_sections = S_CLI | S_WEB,
      .sections = S_CLI | S_WEB,
      .description = "the router's frontend, for submitting jobs (a ','-separated list: "
                     "several routers, one leading)" },
    { .name = "administrative_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47293",
      .check = s_check_endpoint,
      .list_sections = S_CLI | S_SCHED | S_WEB,
      .sections = S_CLI | S_SCHED | S_WEB,
      .description = "the router's admin socket, for status and administration (a "
                     "','-separated list: several routers, one leading; emq-scheduler: "
                     "in scheduler_addr's order)" },
    { .name = "events_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47294",
      .check = s_check_endpoint,
      .list_sections = S_CLI | S_WEB,
      .sections = S_CLI | S_WEB,
      .description = "the router's event stream (its events_listen_addr; a ','-separated "
                     "list: several routers)" },
    //  [web]
    { .name = "web_listen_addr",
      .type = S_TYPE_STRING,
      .default_text = "127.0.0.1:47295",
      .check = s_check_host_port,
      .sections = S_WEB,
      .description = "where emq-web serves the dashboard and /metrics (IPv4 "
                     "address:port)" },
    { .name = "web_password",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 255,
      .sections = S_WEB,
      .description = "HTTP basic auth password (user emq) for every page; required "
                     "when CURVE is on; empty: no password" },
    { .name = "web_password_file",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_WEB,
      .description = "a file whose first line is the web password (instead of "
                     "web_password, so that it stays out of the config and ps)" },
    { .name = "web_static_dir",
      .type = S_TYPE_STRING,
      .default_text = "",
      .max_len = 4000,
      .sections = S_WEB,
      .description = "the dashboard's files; empty: the installed share/emq/web" },
    { .name = "web_sample_interval",
      .type = S_TYPE_SECONDS,
      .default_text = "1",
      .dmin = 0.1,
      .dmax = 60,
      .sections = S_WEB,
      .description = "seconds between emq-web's samples of the router's STATUS" },

    //  [publisher] (emq-pubsub, EventMQ's pub/sub forwarder)
    { .name = "publisher_incoming_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47298",
      .check = s_check_endpoint,
      .sections = S_PUB,
      .description = "where emq-pubsub listens (ROUTER) for PUBLISH messages" },
    { .name = "publisher_outgoing_addr",
      .type = S_TYPE_STRING,
      .default_text = "tcp://127.0.0.1:47299",
      .check = s_check_endpoint,
      .sections = S_PUB,
      .description = "where emq-pubsub publishes (PUB) to subscribers, topic first" },
};
#define S_SETTING_COUNT (sizeof s_settings / sizeof s_settings[0])

//  Other spellings. An alias applies in the sections given (a program whose
//  section is not among them does not read it). part: 0 = the whole value;
//  1 / 2 = the module / function half of the python setup hook (EventMQ's
//  setup_path and setup_callable), combined when both are known. EventMQ's
//  hooks are Python dotted paths, so they alias the python_* hooks.
typedef struct {
    const char *alias;
    unsigned sections;
    const char *target;
    int part;
} s_alias_t;

//  An alias may share the name of a setting of other programs: EventMQ's
//  router binds frontend_addr, which is the client's address in emq.
static const s_alias_t s_aliases[] = {
    { "frontend_addr", S_ROUTER, "frontend_listen_addr", 0 },
    { "backend_addr", S_ROUTER, "backend_listen_addr", 0 },
    { "administrative_addr", S_ROUTER, "administrative_listen_addr", 0 },
    { "high_water_mark", S_ANY, "queue_hwm", 0 },
    { "global_timeout", S_ANY, "default_timeout", 0 },
    { "worker_addr", S_ANY, "backend_addr", 0 },
    { "connect_addr", S_JM, "backend_addr", 0 },
    { "connect_addr", S_SCHED, "scheduler_addr", 0 },
    { "worker_addr_failover", S_ANY, "backend_failover_addrs", 0 },
    { "workers", S_ANY, "concurrent_jobs", 0 },
    { "hwm", S_ANY, "queue_hwm", 0 },
    { "subprocess_setup_func", S_ANY, "python_setup", 0 },
    { "job_entry_func", S_ANY, "python_job_entry", 0 },
    { "job_exit_func", S_ANY, "python_job_exit", 0 },
    { "setup_path", S_ANY, "python_setup", 1 },
    { "setup_callable", S_ANY, "python_setup", 2 },
};
#define S_ALIAS_COUNT (sizeof s_aliases / sizeof s_aliases[0])

//  EventMQ settings that emq accepts and does not use.
static const char *s_ignored[] = {
    "super_debug",
    "hide_heartbeat_logs",
    "max_sockets",
    "disable_heartbeats",
    "default_encoding",
    "default_queue_weight",
    "wal",
    "wal_enabled",
    "rq_host",
    "rq_port",
    "rq_db",
    "rq_password",
    "redis_host",
    "redis_port",
    "redis_db",
    "redis_password",
    "redis_client_class",
    "redis_client_class_kwargs",
    "redis_startup_error_hard_kill",
    "reconnect_timeout",
    "worker_addr_default",
    "config_file",
};
#define S_IGNORED_COUNT (sizeof s_ignored / sizeof s_ignored[0])

//  Where a value came from, in precedence order.
typedef enum { S_FROM_DEFAULT, S_FROM_FILE, S_FROM_ENV, S_FROM_FLAG } s_origin_t;

typedef struct {
    char *text;    // canonical text, as printed
    int64_t i;     // S_TYPE_INT
    double d;      // S_TYPE_SECONDS
    bool b;        // S_TYPE_BOOL
    char **items;  // S_TYPE_LIST
    size_t count;  // S_TYPE_LIST
    char *source;  // "default", "/etc/eventmq.conf:3 [router]", ...
    s_origin_t origin;
} s_value_t;

//  The two halves of a hook given as setup_path / setup_callable.
typedef struct {
    char *part[3];  // [1] = LIB, [2] = FN
    char *source;
    s_origin_t origin;
} s_split_t;

struct config_t {
    s_value_t values[S_SETTING_COUNT];
    unsigned section;  // program section bit of the last config_load
    size_t warnings;   // warnings logged so far (for the self test)
};

//  The default file; the self test points it elsewhere.
static const char *s_default_path = "/etc/eventmq.conf";

//  --------------------------------------------------------------------------
//  Small helpers

//  Renders untrusted text for messages: capped, unprintable bytes as '?'.
static const char *
s_shown (const char *value, char *buf, size_t buflen)
{
    size_t out = 0;
    for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
        if (out + 4 >= buflen) {
            memcpy (buf + out, "...", 3);
            out += 3;
            break;
        }
        buf[out++] = (*p >= 0x20 && *p != 0x7F) ? (char) *p : '?';
    }
    buf[out] = 0;
    return buf;
}

static int
s_setting_index (const char *name)
{
    for (size_t i = 0; i < S_SETTING_COUNT; i++)
        if (strcmp (s_settings[i].name, name) == 0)
            return (int) i;
    return -1;
}

static const s_alias_t *
s_alias_lookup (const char *name, unsigned section)
{
    for (size_t i = 0; i < S_ALIAS_COUNT; i++)
        if (strcmp (s_aliases[i].alias, name) == 0 && (s_aliases[i].sections & section))
            return &s_aliases[i];
    return NULL;
}

//  The setting that name sets in section: itself when it is a setting of
//  that section (or of no section in particular), else the target of an
//  alias of that section. Returns its index, or -1 when name is no setting
//  or alias there; *alias_p says whether an alias was followed.
static int
s_resolve (const char *name, unsigned section, const s_alias_t **alias_p)
{
    *alias_p = NULL;
    int index = s_setting_index (name);
    const s_alias_t *alias = s_alias_lookup (name, section);
    if (index >= 0 && (!alias || (s_settings[index].sections & section)))
        return index;
    if (alias) {
        *alias_p = alias;
        return s_setting_index (alias->target);
    }
    return index;
}

static bool
s_is_alias (const char *name)
{
    for (size_t i = 0; i < S_ALIAS_COUNT; i++)
        if (strcmp (s_aliases[i].alias, name) == 0)
            return true;
    return false;
}

static bool
s_is_ignored (const char *name)
{
    for (size_t i = 0; i < S_IGNORED_COUNT; i++)
        if (strcmp (s_ignored[i], name) == 0)
            return true;
    return false;
}

static const char *
s_section_name (unsigned bit)
{
    for (size_t i = 0; i < S_SECTION_COUNT; i++)
        if (s_sections[i].bit == bit)
            return s_sections[i].name;
    return "global";
}

static void
s_value_clear (s_value_t *value)
{
    free (value->text);
    for (size_t i = 0; i < value->count; i++)
        free (value->items[i]);
    free (value->items);
    free (value->source);
    memset (value, 0, sizeof *value);
}

static int
s_value_copy (s_value_t *dest, const s_value_t *src)
{
    memset (dest, 0, sizeof *dest);
    *dest = *src;
    dest->text = strdup (src->text);
    dest->source = strdup (src->source);
    dest->items = src->count ? calloc (src->count, sizeof (char *)) : NULL;
    dest->count = 0;
    if (!dest->text || !dest->source || (src->count && !dest->items))
        goto fail;
    for (size_t i = 0; i < src->count; i++) {
        if (!(dest->items[i] = strdup (src->items[i])))
            goto fail;
        dest->count++;
    }
    return 0;
fail:
    s_value_clear (dest);
    return -1;
}

//  --------------------------------------------------------------------------
//  Checkers for strings and list items

static int
s_check_endpoint (const char *value, char **canonical, char *why, size_t whylen)
{
    (void) canonical;
    if (!addrlist_is_endpoint (value)) {
        errbuf_set (why, whylen, "a " S_ENDPOINTS);
        return -1;
    }
    return 0;
}

//  One endpoint or several, ','-separated (spaces around the commas
//  allowed); canonical: the items joined by ',' alone.
static int
s_check_endpoint_list (const char *value, char **canonical, char *why, size_t whylen)
{
    size_t count;
    char **items = addrlist_parse (value, &count, why, whylen);
    if (!items)
        return -1;
    *canonical = addrlist_join (items, count);
    addrlist_destroy (&items);
    if (!*canonical) {
        errbuf_set (why, whylen, "memory for the list");
        return -1;
    }
    return 0;
}

static int
s_check_endpoint_or_empty (const char *value, char **canonical, char *why, size_t whylen)
{
    return *value ? s_check_endpoint (value, canonical, why, whylen) : 0;
}

//  An IPv4 address and a port, "127.0.0.1:47295".
static int
s_check_host_port (const char *value, char **canonical, char *why, size_t whylen)
{
    (void) canonical;
    unsigned a, b, c, d, port;
    char end;
    if (sscanf (value, "%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &end) != 5 || a > 255
        || b > 255 || c > 255 || d > 255 || port > 65535) {
        errbuf_set (why, whylen, "an IPv4 address and a port, e.g. 127.0.0.1:47295");
        return -1;
    }
    return 0;
}

static bool
s_is_identifier (const char *s)
{
    if (!(isalpha ((unsigned char) *s) || *s == '_'))
        return false;
    for (; *s; s++)
        if (!(isalnum ((unsigned char) *s) || *s == '_'))
            return false;
    return true;
}

//  "" (no hook) or LIB:FN, FN a C identifier.
static int
s_check_hook (const char *value, char **canonical, char *why, size_t whylen)
{
    (void) canonical;
    if (!*value)
        return 0;
    const char *colon = strchr (value, ':');
    if (!colon || colon == value || strchr (colon + 1, ':')
        || !s_is_identifier (colon + 1)) {
        errbuf_set (why, whylen,
                    "LIB:FN (a library name, ':', a C function name), or empty");
        return -1;
    }
    for (const char *p = value; p < colon; p++)
        if ((unsigned char) *p <= 0x20 || *p == 0x7F) {
            errbuf_set (why, whylen, "LIB:FN without spaces or control characters");
            return -1;
        }
    return 0;
}

//  "" (no hook), pkg.module.function or pkg.module:function.
static int
s_check_python_hook (const char *value, char **canonical, char *why, size_t whylen)
{
    (void) canonical;
    if (!*value)
        return 0;
    char module[1024];
    const char *colon = strchr (value, ':');
    const char *cut = colon ? colon : strrchr (value, '.');
    size_t len = cut ? (size_t) (cut - value) : 0;
    if (cut && len < sizeof module) {
        memcpy (module, value, len);
        module[len] = 0;
        if (payload_python_names_check (module, cut + 1, NULL, 0) == 0)
            return 0;
    }
    errbuf_set (why, whylen,
                "a Python dotted path (pkg.module.function or pkg.module:function), "
                "or empty");
    return -1;
}

//  An environment name pattern: no '=', no spaces or control characters.
static int
s_check_env_pattern (const char *value, char **canonical, char *why, size_t whylen)
{
    (void) canonical;
    for (const char *p = value; *p; p++)
        if ((unsigned char) *p <= 0x20 || *p == 0x7F || *p == '=')
            return errbuf_set (why, whylen,
                               "variable name patterns without '=', spaces or "
                               "control characters");
    if (!*value)
        return errbuf_set (why, whylen, "a non-empty variable name pattern");
    return 0;
}

static int
s_check_queue_name (const char *value, char **canonical, char *why, size_t whylen)
{
    (void) canonical;
    if (queuespec_name_check (value, NULL, 0))
        return errbuf_set (why, whylen, "a queue name of " QUEUESPEC_NAME_RULE);
    return 0;
}

//  JSON [[weight,"name"],...] (EventMQ), or "weight,name weight,name" (its
//  -Q flag), or bare names (weight 10). Normalised to compact JSON.
static int
s_check_queues (const char *value, char **canonical, char *why, size_t whylen)
{
    char reason[200];
    *canonical = queuespec_setting (value, reason, sizeof reason);
    if (!*canonical)
        return errbuf_set (why, whylen,
                           "JSON [[weight,\"name\"],...] or \"weight,name "
                           "...\" (%s)",
                           reason);
    return 0;
}

//  --------------------------------------------------------------------------
//  Parsing one value

static int
s_parse_bool (const char *text, bool *value)
{
    static const char *yes[] = { "1", "true", "yes", "on" };
    static const char *no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp (text, yes[i]) == 0) {
            *value = true;
            return 0;
        }
        if (strcasecmp (text, no[i]) == 0) {
            *value = false;
            return 0;
        }
    }
    return -1;
}

static int
s_parse_int (const s_setting_t *setting, const char *text, int64_t *value)
{
    //  The number, then (byte sizes) a unit.
    size_t sign = *text == '+' || *text == '-';
    const char *end = text + sign + strspn (text + sign, "0123456789");
    int64_t v;
    if (numparse_int_n (text, (size_t) (end - text), INT64_MIN, INT64_MAX, &v))
        return -1;
    if (setting->bytes && *end) {
        int shift = 0;
        switch (*end) {
            case 'k':
            case 'K':
                shift = 10;
                break;
            case 'm':
            case 'M':
                shift = 20;
                break;
            case 'g':
            case 'G':
                shift = 30;
                break;
            default:
                return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I')  // "16MiB" as well as "16M"
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (v < 0 || v > (INT64_MAX >> shift))
            return -1;
        v <<= shift;
    }
    if (*end)
        return -1;
    *value = v;
    return 0;
}

static char
s_sep (const s_setting_t *setting)
{
    return setting->sep ? setting->sep : ':';
}

//  Splits a ':'-separated list, skipping empty items and checking each.
static int
s_parse_list (const s_setting_t *setting, const char *text, s_value_t *out, char *why,
              size_t whylen)
{
    const char *p = text;
    while (*p) {
        const char *colon = strchr (p, s_sep (setting));
        size_t len = colon ? (size_t) (colon - p) : strlen (p);
        if (len > 0) {
            char *item = strndup (p, len);
            char **items =
                item ? realloc (out->items, (out->count + 1) * sizeof (char *)) : NULL;
            if (!items) {
                free (item);
                errbuf_set (why, whylen, "memory for the list");
                return -1;
            }
            out->items = items;
            out->items[out->count++] = item;
            char *canonical = NULL;
            if (setting->check && setting->check (item, &canonical, why, whylen))
                return -1;
            free (canonical);
        }
        p += len;
        if (*p)
            p++;
    }
    return 0;
}

//  Rebuilds a list's canonical text from its items.
static int
s_list_text (s_value_t *value, char sep)
{
    size_t size = 1;
    for (size_t i = 0; i < value->count; i++)
        size += strlen (value->items[i]) + 1;
    char *text = malloc (size);
    if (!text)
        return -1;
    text[0] = 0;
    for (size_t i = 0; i < value->count; i++) {
        if (i)
            strncat (text, &sep, 1);
        strcat (text, value->items[i]);
    }
    free (value->text);
    value->text = text;
    return 0;
}

//  Describes what a setting accepts, for error messages.
static void
s_expected (const s_setting_t *setting, char *buf, size_t buflen)
{
    switch (setting->type) {
        case S_TYPE_INT:
            errbuf_set (buf, buflen, "an integer in %" PRId64 "..%" PRId64 "%s",
                        setting->min, setting->max,
                        setting->bytes ? " (bytes; k/M/G suffixes allowed)" : "");
            break;
        case S_TYPE_SECONDS:
            errbuf_set (buf, buflen, "a number of seconds in %g..%g", setting->dmin,
                        setting->dmax);
            break;
        case S_TYPE_BOOL:
            errbuf_set (buf, buflen, "true/false, yes/no, on/off or 1/0");
            break;
        case S_TYPE_STRING:
            if (setting->choices)
                errbuf_set (buf, buflen, "one of %s", setting->choices);
            else
                errbuf_set (buf, buflen, "text of at most %zu bytes", setting->max_len);
            break;
        case S_TYPE_LIST:
            errbuf_set (buf, buflen, "a '%c'-separated list", s_sep (setting));
            break;
    }
}

//  Parses text for a setting into *out (cleared first). On failure writes
//  "<source>: <name> = '<text>': expected ..." to err.
static int
s_parse (const s_setting_t *setting, const char *text, const char *source,
         s_origin_t origin, unsigned section, s_value_t *out, char *err, size_t errlen)
{
    memset (out, 0, sizeof *out);
    char why[256] = "";
    char *canonical = NULL;
    int rc = -1;
    switch (setting->type) {
        case S_TYPE_INT: {
            int64_t v;
            if (s_parse_int (setting, text, &v) || v < setting->min || v > setting->max)
                break;
            out->i = v;
            if (asprintf (&canonical, "%" PRId64, v) < 0)
                canonical = NULL;
            rc = canonical ? 0 : -1;
            break;
        }
        case S_TYPE_SECONDS: {
            char *end;
            errno = 0;
            double v = strtod (text, &end);
            if (errno || end == text || *end || !isfinite (v)
                || isspace ((unsigned char) *text) || v < setting->dmin
                || v > setting->dmax)
                break;
            out->d = v;
            if (asprintf (&canonical, "%g", v) < 0)
                canonical = NULL;
            rc = canonical ? 0 : -1;
            break;
        }
        case S_TYPE_BOOL:
            if (s_parse_bool (text, &out->b))
                break;
            canonical = strdup (out->b ? "true" : "false");
            rc = canonical ? 0 : -1;
            break;
        case S_TYPE_STRING:
            if (setting->choices) {
                //  Exact match against "a|b|c".
                size_t len = strlen (text);
                const char *c = setting->choices;
                while (c && *c) {
                    const char *bar = strchr (c, '|');
                    size_t clen = bar ? (size_t) (bar - c) : strlen (c);
                    if (clen == len && len && strncasecmp (c, text, len) == 0) {
                        canonical = strndup (c, clen);
                        rc = canonical ? 0 : -1;
                        break;
                    }
                    c = bar ? bar + 1 : NULL;
                }
                break;
            }
            if (setting->max_len && strlen (text) > setting->max_len)
                break;
            s_check_fn *check = (setting->list_sections & section) ? s_check_endpoint_list
                                                                   : setting->check;
            if (check && check (text, &canonical, why, sizeof why))
                break;
            if (!canonical)
                canonical = strdup (text);
            rc = canonical ? 0 : -1;
            break;
        case S_TYPE_LIST:
            if (s_parse_list (setting, text, out, why, sizeof why))
                break;
            rc = s_list_text (out, s_sep (setting));
            break;
    }
    if (rc == 0 && canonical)
        out->text = canonical;
    else
        free (canonical);
    if (rc == 0) {
        out->source = strdup (source);
        out->origin = origin;
        if (!out->source)
            rc = -1;
    }
    if (rc) {
        if (!*why)
            s_expected (setting, why, sizeof why);
        char shown[96];
        errbuf_set (err, errlen, "%s: %s = '%s': expected %s", source, setting->name,
                    s_shown (text, shown, sizeof shown), why);
        s_value_clear (out);
    }
    return rc;
}

//  Parses and stores a value into values[index]; the old value is kept if
//  the new one is bad.
static int
s_apply (s_value_t *values, int index, const char *text, const char *source,
         s_origin_t origin, unsigned section, char *err, size_t errlen)
{
    s_value_t fresh;
    if (s_parse (&s_settings[index], text, source, origin, section, &fresh, err, errlen))
        return -1;
    s_value_clear (&values[index]);
    values[index] = fresh;
    return 0;
}

//  --------------------------------------------------------------------------
//  Loading

typedef struct {
    char *section;  // lowercased
    char *name;     // lowercased
    char *value;
    int line;
} s_entry_t;

typedef struct {
    FILE *file;
    const char *path;
    int line;       // lines read so far
    int long_line;  // first line longer than inih takes, or 0
    s_entry_t *entries;
    size_t count;
    bool out_of_memory;
} s_reader_t;

//  fgets-like reader for inih that counts lines and catches lines longer
//  than inih's buffer (INI_MAX_LINE), which it would otherwise split.
static char *
s_read_line (char *str, int num, void *stream)
{
    s_reader_t *reader = stream;
    if (!fgets (str, num, reader->file))
        return NULL;
    reader->line++;
    size_t len = strlen (str);
    if (len > 0 && str[len - 1] != '\n' && !feof (reader->file)) {
        //  Too long: swallow the rest of the line, hand inih a comment.
        int c;
        while ((c = fgetc (reader->file)) != EOF && c != '\n')
            ;
        if (!reader->long_line)
            reader->long_line = reader->line;
        snprintf (str, (size_t) num, ";\n");
    }
    return str;
}

static char *
s_lowered (const char *s)
{
    char *copy = strdup (s);
    for (char *p = copy; p && *p; p++)
        *p = (char) tolower ((unsigned char) *p);
    return copy;
}

static int
s_on_entry (void *user, const char *section, const char *name, const char *value)
{
    s_reader_t *reader = user;
    s_entry_t *entries =
        realloc (reader->entries, (reader->count + 1) * sizeof (s_entry_t));
    if (!entries) {
        reader->out_of_memory = true;
        return 0;
    }
    reader->entries = entries;
    s_entry_t *entry = &entries[reader->count];
    entry->section = s_lowered (section);
    entry->name = s_lowered (name);
    entry->value = strdup (value);
    entry->line = reader->line;
    if (!entry->section || !entry->name || !entry->value) {
        free (entry->section);
        free (entry->name);
        free (entry->value);
        reader->out_of_memory = true;
        return 0;
    }
    reader->count++;
    return 1;
}

static void
s_reader_clear (s_reader_t *reader)
{
    for (size_t i = 0; i < reader->count; i++) {
        free (reader->entries[i].section);
        free (reader->entries[i].name);
        free (reader->entries[i].value);
    }
    free (reader->entries);
    reader->entries = NULL;
    reader->count = 0;
}

static void s_warn (config_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_warn (config_t *self, const char *format, ...)
{
    char line[512];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    log_warning ("config: %s", line);
    self->warnings++;
}

//  Applies one name = value from file or environment to values[]. split
//  collects setup_path / setup_callable. Returns -1 only for a bad value.
static int
s_apply_named (config_t *self, s_value_t *values, s_split_t *split, const char *name,
               const char *text, const char *source, s_origin_t origin, unsigned section,
               bool in_section, char *err, size_t errlen)
{
    const s_alias_t *alias;
    int index = s_resolve (name, section, &alias);
    if (index >= 0 && !alias) {
        //  A setting of another program in our own section is a mistake
        //  worth a warning; [global] may hold anything.
        if (in_section && !(s_settings[index].sections & section)) {
            s_warn (self, "%s: %s is not a %s setting, ignored", source, name,
                    s_section_name (section));
            return 0;
        }
        return s_apply (values, index, text, source, origin, section, err, errlen);
    }
    if (alias) {
        char alias_source[600];
        snprintf (alias_source, sizeof alias_source, "%s (as %s)", source, name);
        index = s_setting_index (alias->target);
        assert (index >= 0);
        if (alias->part == 0)
            return s_apply (values, index, text, alias_source, origin, section, err,
                            errlen);
        //  One half of a LIB:FN hook; checked when both halves are in.
        char **part = &split->part[alias->part];
        free (*part);
        *part = strdup (text);
        free (split->source);
        split->source = strdup (alias_source);
        split->origin = origin;
        if (!*part || !split->source) {
            errbuf_set (err, errlen, "%s: out of memory", source);
            return -1;
        }
        return 0;
    }
    if (s_is_ignored (name)) {
        if (origin != S_FROM_ENV)
            s_warn (self, "%s: EventMQ setting %s is not used by emq, ignored", source,
                    name);
        return 0;
    }
    if (s_is_alias (name)) {
        if (origin != S_FROM_ENV)
            s_warn (self, "%s: %s is not a %s setting, ignored", source, name,
                    s_section_name (section));
        return 0;
    }
    if (origin != S_FROM_ENV)
        s_warn (self, "%s: unknown setting %s, ignored", source, name);
    return 0;
}

//  Combines setup_path + setup_callable into python_setup, unless
//  python_setup itself was given (the canonical name wins over EventMQ's
//  split form).
static int
s_apply_split (s_value_t *values, s_split_t *split, char *err, size_t errlen)
{
    if (!split->part[1] && !split->part[2])
        return 0;
    if (!split->part[1] || !split->part[2]) {
        errbuf_set (err, errlen,
                    "%s: setup_path and setup_callable must be given together",
                    split->source);
        return -1;
    }
    int index = s_setting_index ("python_setup");
    if (values[index].origin != S_FROM_DEFAULT)
        return 0;
    char *text;
    if (asprintf (&text, "%s:%s", split->part[1], split->part[2]) < 0) {
        errbuf_set (err, errlen, "out of memory");
        return -1;
    }
    int rc = s_apply (values, index, text, split->source, split->origin, 0, err, errlen);
    free (text);
    return rc;
}

static void
s_split_clear (s_split_t *split)
{
    free (split->part[1]);
    free (split->part[2]);
    free (split->source);
    memset (split, 0, sizeof *split);
}

static void
s_values_clear (s_value_t *values)
{
    for (size_t i = 0; i < S_SETTING_COUNT; i++)
        s_value_clear (&values[i]);
}

static int
s_values_defaults (s_value_t *values, char *err, size_t errlen)
{
    for (size_t i = 0; i < S_SETTING_COUNT; i++)
        if (s_apply (values, (int) i, s_settings[i].default_text, "default",
                     S_FROM_DEFAULT, 0, err, errlen))
            return -1;
    return 0;
}

//  Reads the file into values: [global] first, then the program's section;
//  within each, aliases before canonical names so the canonical name wins.
static int
s_load_stream (config_t *self, s_value_t *values, s_split_t *split, FILE *file,
               const char *path, unsigned section, char *err, size_t errlen)
{
    s_reader_t reader = { .file = file, .path = path };
    int line = ini_parse_stream (s_read_line, &reader, s_on_entry, &reader);
    int rc = -1;
    if (reader.out_of_memory) {
        errbuf_set (err, errlen, "%s: out of memory", path);
        goto done;
    }
    if (reader.long_line && (line == 0 || reader.long_line < line)) {
        errbuf_set (err, errlen, "%s:%d: line too long (max %d characters)", path,
                    reader.long_line, INI_MAX_LINE - 2);
        goto done;
    }
    if (line != 0) {
        errbuf_set (err, errlen,
                    "%s:%d: syntax error (expected [section] or name = value)", path,
                    line);
        goto done;
    }
    const char *own = s_section_name (section);
    for (int pass = 0; pass < 4; pass++) {
        //  pass 0/1: [global] aliases/names; pass 2/3: own section.
        const char *wanted = pass < 2 ? "global" : own;
        if (pass >= 2 && section == S_GLOBAL)
            break;
        for (size_t i = 0; i < reader.count; i++) {
            s_entry_t *entry = &reader.entries[i];
            if (strcmp (entry->section, wanted) != 0)
                continue;
            const s_alias_t *alias;
            bool canonical = s_resolve (entry->name, section, &alias) >= 0 && !alias;
            if (canonical != (pass % 2 == 1))
                continue;
            char source[512];
            snprintf (source, sizeof source, "%s:%d [%s]", path, entry->line, wanted);
            if (s_apply_named (self, values, split, entry->name, entry->value, source,
                               S_FROM_FILE, section, pass >= 2, err, errlen))
                goto done;
        }
    }
    //  Entries before any [section] header: inih reports section "".
    for (size_t i = 0; i < reader.count; i++)
        if (!*reader.entries[i].section) {
            s_warn (self, "%s:%d: %s outside any [section], ignored", path,
                    reader.entries[i].line, reader.entries[i].name);
        }
    rc = 0;
done:
    s_reader_clear (&reader);
    return rc;
}

static int
s_load_file (config_t *self, s_value_t *values, s_split_t *split, const char *path,
             bool must_exist, unsigned section, char *err, size_t errlen)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        if (errno == ENOENT && !must_exist) {
            log_debug ("config: no %s, using defaults", path);
            return 0;
        }
        //  EventMQ goes on without a named file that is not there (its own
        //  tests point EVENTMQ_CONFIG_FILE at one); so do we, loudly.
        if (errno == ENOENT) {
            //  Once per file and process: emq-cli's shell loads per command.
            static char warned[4096];
            if (strcmp (warned, path) != 0) {
                s_warn (self, "config file %s not found, going on without it", path);
                snprintf (warned, sizeof warned, "%s", path);
            }
            return 0;
        }
        errbuf_set (err, errlen, "cannot read config file %s: %s", path,
                    strerror (errno));
        return -1;
    }
    struct stat st;
    if (fstat (fileno (file), &st) == 0 && S_ISDIR (st.st_mode)) {
        fclose (file);
        errbuf_set (err, errlen, "cannot read config file %s: %s", path,
                    strerror (EISDIR));
        return -1;
    }
    int rc = s_load_stream (self, values, split, file, path, section, err, errlen);
    fclose (file);
    return rc;
}

//  Reads EVENTMQ_<NAME> for every setting and alias; aliases first.
static int
s_load_env (config_t *self, s_value_t *values, s_split_t *split, unsigned section,
            char *err, size_t errlen)
{
    for (int pass = 0; pass < 2; pass++) {
        size_t count = pass == 0 ? S_ALIAS_COUNT : S_SETTING_COUNT;
        for (size_t i = 0; i < count; i++) {
            const char *name = pass == 0 ? s_aliases[i].alias : s_settings[i].name;
            if (pass == 0 && !(s_aliases[i].sections & section))
                continue;
            //  A setting's name that is an alias here was read in pass 0.
            const s_alias_t *alias;
            if (pass == 1 && s_resolve (name, section, &alias) >= 0 && alias)
                continue;
            char var[128] = "EVENTMQ_";
            size_t len = strlen (var);
            for (const char *p = name; *p && len + 1 < sizeof var; p++)
                var[len++] = (char) toupper ((unsigned char) *p);
            var[len] = 0;
            const char *text = getenv (var);
            if (!text)
                continue;
            char source[160];
            snprintf (source, sizeof source, "env %s", var);
            if (s_apply_named (self, values, split, name, text, source, S_FROM_ENV,
                               section, false, err, errlen))
                return -1;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Public API

config_t *
config_new (void)
{
    config_t *self = calloc (1, sizeof (config_t));
    if (!self)
        return NULL;
    self->section = S_GLOBAL;
    char err[256];
    if (s_values_defaults (self->values, err, sizeof err)) {
        //  Defaults are ours; only memory can fail here.
        log_error ("config: %s", err);
        config_destroy (&self);
    }
    return self;
}

void
config_destroy (config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    config_t *self = *self_p;
    s_values_clear (self->values);
    free (self);
    *self_p = NULL;
}

//  config_load and config_load_text: the file is read from path, or from
//  stream (named path in messages) when stream is set.
static int
s_load (config_t *self, const char *section, const char *path, FILE *stream, char *err,
        size_t errlen)
{
    assert (self);
    unsigned bit = S_GLOBAL;
    if (section) {
        bit = 0;
        for (size_t i = 0; i < S_SECTION_COUNT; i++)
            if (strcmp (s_sections[i].name, section) == 0)
                bit = s_sections[i].bit;
        assert (bit);  // the program names its own section
    }
    bool must_exist = true;
    if (!path && !stream) {
        path = getenv ("EVENTMQ_CONFIG_FILE");
        if (path && !*path)
            path = NULL;  // EVENTMQ_CONFIG_FILE="": no file at all
        else if (!path) {
            path = s_default_path;
            must_exist = false;
        }
    }
    s_value_t fresh[S_SETTING_COUNT];
    memset (fresh, 0, sizeof fresh);
    s_split_t split;
    memset (&split, 0, sizeof split);
    int rc = -1;
    if (s_values_defaults (fresh, err, errlen))
        goto done;
    if (stream) {
        if (s_load_stream (self, fresh, &split, stream, path, bit, err, errlen))
            goto done;
    }
    else if (path
             && s_load_file (self, fresh, &split, path, must_exist, bit, err, errlen))
        goto done;
    if (s_load_env (self, fresh, &split, bit, err, errlen))
        goto done;
    if (s_apply_split (fresh, &split, err, errlen))
        goto done;
    //  Values set on the command line outrank everything loaded.
    for (size_t i = 0; i < S_SETTING_COUNT; i++)
        if (self->values[i].origin == S_FROM_FLAG) {
            s_value_t copy;
            if (s_value_copy (&copy, &self->values[i])) {
                errbuf_set (err, errlen, "out of memory");
                goto done;
            }
            s_value_clear (&fresh[i]);
            fresh[i] = copy;
        }
    if (fresh[s_setting_index ("heartbeat_interval")].d
        >= fresh[s_setting_index ("heartbeat_timeout")].d)
        s_warn (self,
                "heartbeat_interval (%g s) should be below heartbeat_timeout (%g s)",
                fresh[s_setting_index ("heartbeat_interval")].d,
                fresh[s_setting_index ("heartbeat_timeout")].d);
    s_values_clear (self->values);
    memcpy (self->values, fresh, sizeof fresh);
    memset (fresh, 0, sizeof fresh);
    self->section = bit;
    rc = 0;
done:
    s_values_clear (fresh);
    s_split_clear (&split);
    return rc;
}

int
config_load (config_t *self, const char *section, const char *path, char *err,
             size_t errlen)
{
    return s_load (self, section, path, NULL, err, errlen);
}

int
config_load_text (config_t *self, const char *section, const char *name, const char *text,
                  size_t size, char *err, size_t errlen)
{
    assert (self && name);
    //  fmemopen may refuse a zero-sized buffer: an empty file is one empty line.
    FILE *stream = fmemopen (size ? (void *) text : (void *) "\n", size ? size : 1, "r");
    if (!stream) {
        errbuf_set (err, errlen, "%s: cannot read: %s", name, strerror (errno));
        return -1;
    }
    int rc = s_load (self, section, name, stream, err, errlen);
    fclose (stream);
    return rc;
}

//  Finds a setting by name for config_set/config_append: '-' may stand for
//  '_' (flag spelling) and aliases of the loaded section are followed.
static int
s_lookup_flag (config_t *self, const char *name, const s_alias_t **alias_p)
{
    char key[128];
    size_t len = 0;
    for (const char *p = name; *p && len + 1 < sizeof key; p++)
        key[len++] = *p == '-' ? '_' : (char) tolower ((unsigned char) *p);
    key[len] = 0;
    const s_alias_t *alias;
    int index =
        s_resolve (key, self->section == S_GLOBAL ? S_ANY : self->section, &alias);
    if (alias && alias->part != 0)
        return -1;
    *alias_p = alias;
    return index;
}

config_t *
config_from_args (const char *program, const char *section, int argc, char **argv,
                  const char *optstring, const struct option *options, int config_opt)
{
    //  Flags are read twice: first for --config, then applied over the file.
    const char *path = NULL;
    int opt;
    opterr = 0;
    while ((opt = getopt_long (argc, argv, optstring, options, NULL)) != -1)
        if (opt == config_opt)
            path = optarg;
    config_t *self = config_new ();
    if (!self) {
        fprintf (stderr, "%s: out of memory\n", program);
        return NULL;
    }
    char err[512];
    if (config_load (self, section, path, err, sizeof err)) {
        fprintf (stderr, "%s: %s\n", program, err);
        config_destroy (&self);
    }
    return self;
}

int
config_set (config_t *self, const char *name, const char *value, char *err, size_t errlen)
{
    assert (self && name && value);
    const s_alias_t *alias;
    int index = s_lookup_flag (self, name, &alias);
    if (index < 0) {
        char shown[80];
        errbuf_set (err, errlen, "unknown setting '%s'",
                    s_shown (name, shown, sizeof shown));
        return -1;
    }
    char source[160];
    snprintf (source, sizeof source, alias ? "command line (as %s)" : "command line",
              alias ? alias->alias : "");
    return s_apply (self->values, index, value, source, S_FROM_FLAG, self->section, err,
                    errlen);
}

int
config_append (config_t *self, const char *name, const char *value, char *err,
               size_t errlen)
{
    assert (self && name && value);
    const s_alias_t *alias;
    int index = s_lookup_flag (self, name, &alias);
    if (index < 0 || s_settings[index].type != S_TYPE_LIST) {
        char shown[80];
        errbuf_set (err, errlen, "'%s' is not a list setting",
                    s_shown (name, shown, sizeof shown));
        return -1;
    }
    const s_setting_t *setting = &s_settings[index];
    char why[256] = "";
    char *canonical = NULL;
    if (!*value || strchr (value, s_sep (setting))
        || (setting->check && setting->check (value, &canonical, why, sizeof why))) {
        char shown[96];
        errbuf_set (err, errlen, "command line: %s += '%s': expected %s", setting->name,
                    s_shown (value, shown, sizeof shown),
                    *why ? why : "one non-empty item without the list separator");
        return -1;
    }
    free (canonical);
    s_value_t *current = &self->values[index];
    char *item = strdup (value);
    char *source = strdup ("command line");
    char **items = realloc (current->items, (current->count + 1) * sizeof (char *));
    if (items)
        current->items = items;
    if (!item || !source || !items) {
        free (item);
        free (source);
        errbuf_set (err, errlen, "out of memory");
        return -1;
    }
    current->items[current->count++] = item;
    free (current->source);
    current->source = source;
    current->origin = S_FROM_FLAG;
    if (s_list_text (current, s_sep (setting))) {
        errbuf_set (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static const s_value_t *
s_get (config_t *self, const char *name, s_type_t type)
{
    assert (self && name);
    int index = s_setting_index (name);
    assert (index >= 0);                      // unknown setting: our bug
    assert (s_settings[index].type == type);  // wrong getter: our bug
    return &self->values[index];
}

const char *
config_str (config_t *self, const char *name)
{
    return s_get (self, name, S_TYPE_STRING)->text;
}

int64_t
config_int (config_t *self, const char *name)
{
    return s_get (self, name, S_TYPE_INT)->i;
}

double
config_double (config_t *self, const char *name)
{
    return s_get (self, name, S_TYPE_SECONDS)->d;
}

bool
config_bool (config_t *self, const char *name)
{
    return s_get (self, name, S_TYPE_BOOL)->b;
}

size_t
config_list_size (config_t *self, const char *name)
{
    return s_get (self, name, S_TYPE_LIST)->count;
}

const char *
config_list_item (config_t *self, const char *name, size_t index)
{
    const s_value_t *value = s_get (self, name, S_TYPE_LIST);
    return index < value->count ? value->items[index] : NULL;
}

void
config_print (config_t *self, FILE *stream)
{
    assert (self && stream);
    for (size_t i = 0; i < S_SETTING_COUNT; i++) {
        if (self->section != S_GLOBAL && !(s_settings[i].sections & self->section))
            continue;  // another program's setting
        fprintf (stream, "%s = %s  # %s\n", s_settings[i].name, self->values[i].text,
                 self->values[i].source);
    }
}

size_t
config_diff (config_t *self, config_t *fresh, config_diff_fn *fn, void *arg)
{
    assert (self && fresh && fn);
    size_t changed = 0;
    for (size_t i = 0; i < S_SETTING_COUNT; i++) {
        if (fresh->section != S_GLOBAL && !(s_settings[i].sections & fresh->section))
            continue;
        const char *before = self->values[i].text ? self->values[i].text : "";
        const char *after = fresh->values[i].text ? fresh->values[i].text : "";
        if (strcmp (before, after) == 0)
            continue;
        fn (s_settings[i].name, before, after, arg);
        changed++;
    }
    return changed;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

#include <unistd.h>

//  Writes text to a fresh file in dir; returns its path (static buffer).
static const char *
s_test_file (const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (text, file);
    fclose (file);
    return path;
}

//  Every EVENTMQ_ variable a test might set, cleared between cases.
static void
s_test_clear_env (void)
{
    static const char *vars[] = {
        "EVENTMQ_CONFIG_FILE",         "EVENTMQ_CONCURRENT_JOBS",
        "EVENTMQ_HEARTBEAT_INTERVAL",  "EVENTMQ_WORKER_ADDR",
        "EVENTMQ_BACKEND_ADDR",        "EVENTMQ_SUPER_DEBUG",
        "EVENTMQ_NOT_A_SETTING",       "EVENTMQ_QUEUES",
        "EVENTMQ_PLUGIN_DIRS",         "EVENTMQ_LOG_LEVEL",
        "EVENTMQ_DISABLE_HEARTBEATS",  "EVENTMQ_SETUP_PATH",
        "EVENTMQ_SETUP_CALLABLE",      "EVENTMQ_MAX_MESSAGE_SIZE",
        "EVENTMQ_FRONTEND_ADDR",       "EVENTMQ_FRONTEND_LISTEN_ADDR",
        "EVENTMQ_ADMINISTRATIVE_ADDR",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv (vars[i]);
}

//  Loads text as the config file for section; returns config_load's rc.
static int
s_test_load (config_t *config, const char *dir, const char *section, const char *text,
             char *err, size_t errlen)
{
    const char *path = s_test_file (dir, "test.conf", text);
    return config_load (config, section, path, err, errlen);
}

void
config_test (bool verbose)
{
    if (verbose)
        printf (" * config: ");
    char err[512];
    char dir[] = "/tmp/emq-config-test-XXXXXX";
    assert (mkdtemp (dir));
    s_test_clear_env ();
    char missing[600];
    snprintf (missing, sizeof missing, "%s/missing.conf", dir);
    const char *saved_default = s_default_path;
    s_default_path = missing;
    //  Quiet the expected warnings unless verbose.
    if (!verbose)
        log_set_level (LOG_LEVEL_ERROR);

    //  Defaults, and every default parses as its own type.
    config_t *config = config_new ();
    assert (config);
    CHECK_NEAR (config_double (config, "heartbeat_interval"), 3.0, 1e-9);
    CHECK_NEAR (config_double (config, "heartbeat_timeout"), 5.0, 1e-9);
    CHECK_EQ (config_int (config, "heartbeat_liveness"), 3);
    CHECK_STREQ (config_str (config, "log_level"), "info");
    CHECK_EQ (config_int (config, "max_message_size"), 16 * 1024 * 1024);
    CHECK_STREQ (config_str (config, "frontend_listen_addr"), "tcp://127.0.0.1:47291");
    CHECK_STREQ (config_str (config, "backend_listen_addr"), "tcp://127.0.0.1:47290");
    CHECK_STREQ (config_str (config, "administrative_listen_addr"),
                 "tcp://127.0.0.1:47293");
    CHECK_EQ (config_int (config, "queue_hwm"), 100000);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://127.0.0.1:47290");
    CHECK_STREQ (config_str (config, "queues"), "[[10,\"default\"]]");
    CHECK_EQ (config_int (config, "concurrent_jobs"), 4);
    CHECK_EQ (config_int (config, "max_job_count"), 1024);
    CHECK_NEAR (config_double (config, "kill_grace_period"), 300, 1e-9);
    CHECK_EQ (config_list_size (config, "exec_allow"), 0);
    CHECK_EQ (config_list_size (config, "plugin_dirs"), 1);
    CHECK_STREQ (config_str (config, "setup"), "");
    CHECK_EQ (config_int (config, "max_worker_rss_kb"), 0);
    CHECK_STREQ (config_str (config, "frontend_addr"), "tcp://127.0.0.1:47291");
    CHECK_STREQ (config_str (config, "administrative_addr"), "tcp://127.0.0.1:47293");
    CHECK_STREQ (config_str (config, "scheduler_addr"), "tcp://127.0.0.1:47291");
    for (size_t i = 0; i < S_SETTING_COUNT; i++) {
        CHECK_STREQ (config->values[i].source, "default");
        CHECK (s_settings[i].description && *s_settings[i].description);
        CHECK (config->values[i].text != NULL);
    }
    //  Every alias targets a real setting; no alias or ignored name shadows one.
    for (size_t i = 0; i < S_ALIAS_COUNT; i++) {
        int target = s_setting_index (s_aliases[i].target);
        int named = s_setting_index (s_aliases[i].alias);
        CHECK (target >= 0);
        CHECK (named < 0 || !(s_settings[named].sections & s_aliases[i].sections));
        CHECK (target < 0 || (s_settings[target].sections & s_aliases[i].sections));
    }
    for (size_t i = 0; i < S_IGNORED_COUNT; i++) {
        CHECK (s_setting_index (s_ignored[i]) < 0);
        CHECK (!s_is_alias (s_ignored[i]));
    }

    //  Missing default file is fine; a missing named file is a warning (as
    //  in EventMQ); a directory is an error.
    size_t warnings = config->warnings;
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_EQ (config->warnings, warnings);
    CHECK_EQ (config_load (config, "jobmanager", missing, err, sizeof err), 0);
    CHECK_EQ (config->warnings, warnings + 1);
    setenv ("EVENTMQ_CONFIG_FILE", missing, 1);
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_EQ (config->warnings, warnings + 1);  // said once is enough
    CHECK_EQ (config_load (config, "jobmanager", dir, err, sizeof err), -1);
    CHECK_CONTAINS (err, "Is a directory");
    unsetenv ("EVENTMQ_CONFIG_FILE");

    //  The default file is read when it exists; EVENTMQ_CONFIG_FILE="" means
    //  no file at all.
    s_default_path =
        s_test_file (dir, "default.conf", "[global]\nheartbeat_liveness = 0\n");
    CHECK_EQ (config_load (config, "cli", NULL, err, sizeof err), -1);
    CHECK_CONTAINS (err, "default.conf:2 [global]: heartbeat_liveness = '0'");
    setenv ("EVENTMQ_CONFIG_FILE", "", 1);
    CHECK_EQ (config_load (config, "cli", NULL, err, sizeof err), 0);
    CHECK_EQ (config_int (config, "heartbeat_liveness"), 3);
    unsetenv ("EVENTMQ_CONFIG_FILE");
    unlink (s_default_path);
    s_default_path = missing;
    //  No section: [global] only.
    CHECK_EQ (s_test_load (config, dir, NULL, "[global]\nname = n1\n[cli]\nname = n2\n",
                           err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "name"), "n1");
    CHECK_EQ (s_test_load (config, dir, "cli", "[global]\nname = n1\n[cli]\nname = n2\n",
                           err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "name"), "n2");

    //  File parsing, section precedence: [global] then [jobmanager]; other
    //  programs' sections are not read; comments and case are handled.
    const char *text = "; EventMQ style file\n"
                       "[global]\n"
                       "concurrent_jobs = 2\n"
                       "heartbeat_interval = 1.5\n"
                       "LOG_LEVEL = Debug\n"
                       "\n"
                       "[router]\n"
                       "concurrent_jobs = 99\n"
                       "queue_hwm = 7\n"
                       "\n"
                       "[JobManager]\n"
                       "# a comment\n"
                       "concurrent_jobs = 8   ; inline comment\n"
                       "queues = [[20, \"heavy\"], [10, \"default\"]]\n"
                       "plugin_dirs = /opt/a::/opt/b\n"
                       "max_message_size = 1M\n";
    CHECK_EQ (s_test_load (config, dir, "jobmanager", text, err, sizeof err), 0);
    CHECK_EQ (config_int (config, "concurrent_jobs"), 8);
    CHECK_NEAR (config_double (config, "heartbeat_interval"), 1.5, 1e-9);
    CHECK_STREQ (config_str (config, "log_level"), "debug");
    CHECK_EQ (config_int (config, "queue_hwm"), 100000);  // [router] not read
    CHECK_STREQ (config_str (config, "queues"), "[[20,\"heavy\"],[10,\"default\"]]");
    CHECK_EQ (config_list_size (config, "plugin_dirs"), 2);
    CHECK_STREQ (config_list_item (config, "plugin_dirs", 0), "/opt/a");
    CHECK_STREQ (config_list_item (config, "plugin_dirs", 1), "/opt/b");
    CHECK (config_list_item (config, "plugin_dirs", 2) == NULL);
    CHECK_EQ (config_int (config, "max_message_size"), 1024 * 1024);
    CHECK_CONTAINS (config->values[s_setting_index ("concurrent_jobs")].source,
                    "test.conf:13 [jobmanager]");
    //  The router reads [global] and [router] from the same file.
    CHECK_EQ (s_test_load (config, dir, "router", text, err, sizeof err), 0);
    CHECK_EQ (config_int (config, "queue_hwm"), 7);
    //  concurrent_jobs under [router] is not a router setting: [global] holds.
    CHECK_EQ (config_int (config, "concurrent_jobs"), 2);
    //  A reload starts from the defaults: a removed key falls back.
    CHECK_EQ (s_test_load (config, dir, "router", "[router]\n", err, sizeof err), 0);
    CHECK_EQ (config_int (config, "queue_hwm"), 100000);
    CHECK_STREQ (config->values[s_setting_index ("queue_hwm")].source, "default");

    //  Unknown keys, ignored EventMQ keys, keys of another program in our
    //  section, keys before any section: warnings, not errors.
    warnings = config->warnings;
    CHECK_EQ (s_test_load (config, dir, "jobmanager",
                           "top = 1\n"
                           "[global]\nsuper_debug = true\nhide_heartbeat_logs = false\n"
                           "max_sockets = 10\nrq_host = redis\nwal = /x\n"
                           "[jobmanager]\nno_such_setting = 1\nqueue_hwm = 5\n"
                           "[publisher]\nfrontend_listen_addr = tcp://1.2.3.4:1\n",
                           err, sizeof err),
              0);
    CHECK_EQ (config->warnings - warnings, 8);
    CHECK_EQ (config_int (config, "queue_hwm"), 100000);

    //  Syntax errors and overlong lines name file and line.
    CHECK_EQ (s_test_load (config, dir, "jobmanager", "[global]\nthis is not ini\n", err,
                           sizeof err),
              -1);
    CHECK_CONTAINS (err, "test.conf:2");
    char longline[400];
    memset (longline, 'x', sizeof longline);
    memcpy (longline, "[global]\nname = ", 16);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = 0;
    CHECK_EQ (s_test_load (config, dir, "jobmanager", longline, err, sizeof err), -1);
    CHECK_CONTAINS (err, "test.conf:2: line too long");

    //  Bad values in the file: each error names setting, value, source and
    //  what was expected.
    static const struct {
        const char *text;
        const char *expect[3];
    } bad[] = {
        { "[jobmanager]\nconcurrent_jobs = abc\n",
          { "concurrent_jobs = 'abc'", "test.conf:2 [jobmanager]",
            "integer in 1..1024" } },
        { "[jobmanager]\nconcurrent_jobs = 0\n", { "'0'", "1..1024", NULL } },
        { "[jobmanager]\nconcurrent_jobs = 1025\n", { "'1025'", "1..1024", NULL } },
        { "[jobmanager]\nconcurrent_jobs = 4x\n", { "'4x'", NULL, NULL } },
        { "[jobmanager]\nconcurrent_jobs = 99999999999999999999\n",
          { "1..1024", NULL, NULL } },
        { "[global]\nheartbeat_interval = fast\n",
          { "heartbeat_interval = 'fast'", "test.conf:2 [global]",
            "seconds in 0.01..3600" } },
        { "[global]\nheartbeat_timeout = -1\n", { "seconds", NULL, NULL } },
        { "[global]\nheartbeat_timeout = nan\n", { "seconds", NULL, NULL } },
        { "[global]\nheartbeat_timeout = inf\n", { "seconds", NULL, NULL } },
        { "[global]\nlog_level = loud\n",
          { "one of error|warning|info|debug", NULL, NULL } },
        { "[global]\nmax_message_size = 12Q\n", { "k/M/G", NULL, NULL } },
        { "[global]\nmax_message_size = 10\n", { "64..", NULL, NULL } },
        { "[jobmanager]\nbackend_addr = localhost:47290\n", { S_ENDPOINTS, NULL, NULL } },
        { "[jobmanager]\nbackend_addr = http://x\n", { S_ENDPOINTS, NULL, NULL } },
        { "[jobmanager]\nqueues = [[10, default]]\n", { "JSON", NULL, NULL } },
        { "[jobmanager]\nqueues = [[\"default\", 10]]\n", { "item 1", NULL, NULL } },
        { "[jobmanager]\nqueues = [[-1, \"x\"]]\n",
          { "weights are whole numbers in 0..", NULL, NULL } },
        { "[jobmanager]\nqueues = [[1, \"x\"], [2, \"x\"]]\n",
          { "repeated", NULL, NULL } },
        { "[jobmanager]\nqueues = []\n", { "at least one queue", NULL, NULL } },
        { "[jobmanager]\nqueues = [[1, \"\"]]\n", { "1..128", NULL, NULL } },
        { "[jobmanager]\nqueues = x,default\n", { "whole-number weight", NULL, NULL } },
        { "[jobmanager]\nsetup = libfoo.so\n", { "LIB:FN", NULL, NULL } },
        { "[jobmanager]\njob_entry = lib:not-an-identifier\n", { "LIB:FN", NULL, NULL } },
        { "[jobmanager]\njob_exit = :fn\n", { "LIB:FN", NULL, NULL } },
        { "[jobmanager]\npython_setup = nodots\n", { "dotted path", NULL, NULL } },
        { "[jobmanager]\njob_exit_func = a.b()\n", { "dotted path", NULL, NULL } },
        { "[jobmanager]\nbackend_failover_addrs = tcp://a:1,nope\n",
          { S_ENDPOINTS, NULL, NULL } },
        { "[router]\nfsync = sometimes\n", { "always|everysec|off", NULL, NULL } },
        { "[global]\ndefault_queue_name = a b\n", { "queue name", NULL, NULL } },
        { "[jobmanager]\nsetup_path = libx\n",
          { "setup_path and setup_callable", NULL, NULL } },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *section = strstr (bad[i].text, "[router]") ? "router" : "jobmanager";
        err[0] = 0;
        int rc = s_test_load (config, dir, section, bad[i].text, err, sizeof err);
        CHECK_EQ (rc, -1);
        for (int k = 0; k < 3 && bad[i].expect[k]; k++)
            CHECK_CONTAINS (err, bad[i].expect[k]);
        if (verbose && rc == -1)
            printf ("\n   rejected: %s", err);
    }
    //  A failed load leaves the previous values in place.
    CHECK_EQ (s_test_load (config, dir, "jobmanager",
                           "[jobmanager]\nconcurrent_jobs = 6\n", err, sizeof err),
              0);
    CHECK_EQ (s_test_load (config, dir, "jobmanager",
                           "[jobmanager]\nconcurrent_jobs = 7\n"
                           "max_job_count = -5\n",
                           err, sizeof err),
              -1);
    CHECK_EQ (config_int (config, "concurrent_jobs"), 6);

    //  Environment beats the file; bad env values are errors; EVENTMQ_*
    //  names that are not settings are ignored silently.
    const char *envfile = "[jobmanager]\nconcurrent_jobs = 6\nbackend_addr = tcp://h:1\n";
    setenv ("EVENTMQ_CONCURRENT_JOBS", "12", 1);
    setenv ("EVENTMQ_NOT_A_SETTING", "whatever", 1);
    setenv ("EVENTMQ_SUPER_DEBUG", "yes", 1);
    warnings = config->warnings;
    CHECK_EQ (s_test_load (config, dir, "jobmanager", envfile, err, sizeof err), 0);
    CHECK_EQ (config->warnings, warnings);
    CHECK_EQ (config_int (config, "concurrent_jobs"), 12);
    CHECK_STREQ (config->values[s_setting_index ("concurrent_jobs")].source,
                 "env EVENTMQ_CONCURRENT_JOBS");
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://h:1");
    setenv ("EVENTMQ_CONCURRENT_JOBS", "many", 1);
    CHECK_EQ (s_test_load (config, dir, "jobmanager", envfile, err, sizeof err), -1);
    CHECK_CONTAINS (err, "env EVENTMQ_CONCURRENT_JOBS: concurrent_jobs = 'many'");
    CHECK_CONTAINS (err, "1..1024");
    setenv ("EVENTMQ_CONCURRENT_JOBS", "12", 1);
    //  EVENTMQ_CONFIG_FILE names the file.
    setenv ("EVENTMQ_CONFIG_FILE",
            s_test_file (dir, "env.conf", "[jobmanager]\nmax_job_count = 3\n"), 1);
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_EQ (config_int (config, "max_job_count"), 3);
    unsetenv ("EVENTMQ_CONFIG_FILE");

    //  config_set beats env and file, survives a reload, accepts the flag
    //  spelling, and validates.
    CHECK_EQ (config_set (config, "concurrent_jobs", "20", err, sizeof err), 0);
    CHECK_EQ (config_int (config, "concurrent_jobs"), 20);
    CHECK_EQ (s_test_load (config, dir, "jobmanager", envfile, err, sizeof err), 0);
    CHECK_EQ (config_int (config, "concurrent_jobs"), 20);
    CHECK_STREQ (config->values[s_setting_index ("concurrent_jobs")].source,
                 "command line");
    CHECK_EQ (config_set (config, "max-job-count", "9", err, sizeof err), 0);
    CHECK_EQ (config_int (config, "max_job_count"), 9);
    CHECK_EQ (config_set (config, "concurrent_jobs", "2000", err, sizeof err), -1);
    CHECK_CONTAINS (
        err, "command line: concurrent_jobs = '2000': expected an integer in 1..1024");
    CHECK_EQ (config_int (config, "concurrent_jobs"), 20);
    CHECK_EQ (config_set (config, "no_such", "1", err, sizeof err), -1);
    CHECK_CONTAINS (err, "unknown setting 'no_such'");
    CHECK_EQ (config_set (config, "heartbeat_timeout", "0.5", err, sizeof err), 0);
    CHECK_NEAR (config_double (config, "heartbeat_timeout"), 0.5, 1e-9);
    CHECK_EQ (config_set (config, "queues", "20,heavy 10,default light", err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "queues"),
                 "[[20,\"heavy\"],[10,\"default\"],[10,\"light\"]]");
    unsetenv ("EVENTMQ_CONCURRENT_JOBS");
    unsetenv ("EVENTMQ_NOT_A_SETTING");
    unsetenv ("EVENTMQ_SUPER_DEBUG");
    config_destroy (&config);
    CHECK (config == NULL);
    config_destroy (&config);  // NULL is fine

    //  Lists: ':'-separated, empty items skipped, config_append adds one.
    config = config_new ();
    CHECK_EQ (
        config_set (config, "exec_allow", "/bin/echo::/usr/bin/env:", err, sizeof err),
        0);
    CHECK_EQ (config_list_size (config, "exec_allow"), 2);
    CHECK_EQ (config_append (config, "exec_allow", "/bin/true", err, sizeof err), 0);
    CHECK_EQ (config_list_size (config, "exec_allow"), 3);
    CHECK_STREQ (config_list_item (config, "exec_allow", 2), "/bin/true");
    CHECK_STREQ (config->values[s_setting_index ("exec_allow")].text,
                 "/bin/echo:/usr/bin/env:/bin/true");
    CHECK_EQ (config_append (config, "exec_allow", "a:b", err, sizeof err), -1);
    CHECK_EQ (config_append (config, "concurrent_jobs", "1", err, sizeof err), -1);
    CHECK_CONTAINS (err, "not a list setting");
    CHECK_EQ (config_append (config, "backend_failover_addrs", "nope", err, sizeof err),
              -1);
    CHECK_CONTAINS (err, S_ENDPOINTS);
    CHECK_EQ (
        config_append (config, "backend-failover-addrs", "tcp://b:2", err, sizeof err),
        0);
    CHECK_EQ (config_set (config, "plugin_dirs", "", err, sizeof err), 0);
    CHECK_EQ (config_list_size (config, "plugin_dirs"), 0);
    setenv ("EVENTMQ_PLUGIN_DIRS", "/p1:/p2", 1);
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_EQ (config_list_size (config, "plugin_dirs"), 0);  // flag wins
    config_destroy (&config);
    config = config_new ();
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_EQ (config_list_size (config, "plugin_dirs"), 2);
    CHECK_STREQ (config_list_item (config, "plugin_dirs", 1), "/p2");
    unsetenv ("EVENTMQ_PLUGIN_DIRS");

    //  Booleans (no bool setting of ours yet: exercise the parser).
    bool flag = false;
    CHECK_EQ (s_parse_bool ("Yes", &flag), 0);
    CHECK (flag);
    CHECK_EQ (s_parse_bool ("off", &flag), 0);
    CHECK (!flag);
    CHECK_EQ (s_parse_bool ("maybe", &flag), -1);

    //  Aliases: EventMQ spellings, in file and env; the canonical name wins
    //  when both are given; connect_addr depends on the program.
    CHECK_EQ (s_test_load (config, dir, "jobmanager",
                           "[jobmanager]\nworker_addr = tcp://w:1\nworkers = 3\nhwm = 5\n"
                           "job_entry_func = hooks.enter\n"
                           "setup_path = myapp.hooks\nsetup_callable = init\n",
                           err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://w:1");
    CHECK_CONTAINS (config->values[s_setting_index ("backend_addr")].source,
                    "(as worker_addr)");
    CHECK_EQ (config_int (config, "concurrent_jobs"), 3);
    CHECK_EQ (config_int (config, "queue_hwm"), 5);
    CHECK_STREQ (config_str (config, "python_job_entry"), "hooks.enter");
    CHECK_STREQ (config_str (config, "python_setup"), "myapp.hooks:init");
    CHECK_STREQ (config_str (config, "job_entry"), "");
    CHECK_EQ (
        s_test_load (config, dir, "jobmanager",
                     "[jobmanager]\nbackend_addr = tcp://c:1\nworker_addr = tcp://w:1\n"
                     "python_setup = a.a\nsetup_path = b\nsetup_callable = b\n",
                     err, sizeof err),
        0);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://c:1");
    CHECK_STREQ (config_str (config, "python_setup"), "a.a");
    CHECK_EQ (s_test_load (config, dir, "jobmanager",
                           "[jobmanager]\nconnect_addr = tcp://j:1\n", err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://j:1");
    CHECK_EQ (s_test_load (config, dir, "scheduler",
                           "[scheduler]\nconnect_addr = tcp://s:1\n", err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "scheduler_addr"), "tcp://s:1");
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://127.0.0.1:47290");
    //  The scheduler's routers and admin sockets: lists, spaces around the
    //  commas dropped; an empty item or a bad one is refused, named.
    CHECK_EQ (s_test_load (config, dir, "scheduler",
                           "[scheduler]\nscheduler_addr = tcp://r1:1 , tcp://r2:1\n"
                           "administrative_addr = tcp://r1:3,ipc:///tmp/r2-admin\n",
                           err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "scheduler_addr"), "tcp://r1:1,tcp://r2:1");
    CHECK_STREQ (config_str (config, "administrative_addr"),
                 "tcp://r1:3,ipc:///tmp/r2-admin");
    CHECK_EQ (s_test_load (config, dir, "scheduler",
                           "[scheduler]\nscheduler_addr = tcp://r1:1,,tcp://r2:1\n", err,
                           sizeof err),
              -1);
    CHECK_CONTAINS (err, "scheduler_addr = 'tcp://r1:1,,tcp://r2:1': expected "
                         "ENDPOINT[,ENDPOINT]... (item 2 is empty)");
    CHECK_EQ (s_test_load (config, dir, "scheduler",
                           "[scheduler]\nadministrative_addr = tcp://a:3,\n", err,
                           sizeof err),
              -1);
    CHECK_CONTAINS (err, "(item 2 is empty)");
    CHECK_EQ (s_test_load (config, dir, "scheduler",
                           "[scheduler]\nconnect_addr = tcp://a:1,nope\n", err,
                           sizeof err),
              -1);
    CHECK_CONTAINS (err, "endpoint as item 2, not 'nope'");
    setenv ("EVENTMQ_SCHEDULER_ADDR", "tcp://e1:1, tcp://e2:1", 1);
    CHECK_EQ (config_load (config, "scheduler", NULL, err, sizeof err), 0);
    CHECK_STREQ (config_str (config, "scheduler_addr"), "tcp://e1:1,tcp://e2:1");
    CHECK_EQ (config_set (config, "router", "tcp://f1:1,tcp://f2:1", err, sizeof err),
              -1);  // "router" is the flag's name, not the setting's
    CHECK_EQ (
        config_set (config, "scheduler-addr", "tcp://f1:1,\ttcp://f2:1", err, sizeof err),
        0);
    CHECK_STREQ (config_str (config, "scheduler_addr"), "tcp://f1:1,tcp://f2:1");
    CHECK_EQ (config_set (config, "administrative-addr", " ,", err, sizeof err), -1);
    CHECK_CONTAINS (err, "(item 1 is empty)");
    unsetenv ("EVENTMQ_SCHEDULER_ADDR");
    //  emq-cli's (and libemq's) addresses take lists too; a router's
    //  listening address stays one endpoint.
    CHECK_EQ (s_test_load (config, dir, "cli",
                           "[cli]\nadministrative_addr = tcp://a:3, tcp://b:3\n"
                           "frontend_addr = tcp://a:1,tcp://b:1\n"
                           "events_addr = tcp://a:4, tcp://b:4\n",
                           err, sizeof err),
              0);
    CHECK_STREQ (config_str (config, "administrative_addr"), "tcp://a:3,tcp://b:3");
    CHECK_STREQ (config_str (config, "frontend_addr"), "tcp://a:1,tcp://b:1");
    CHECK_STREQ (config_str (config, "events_addr"), "tcp://a:4,tcp://b:4");
    CHECK_EQ (s_test_load (config, dir, "cli", "[cli]\nfrontend_addr = tcp://a:1,,\n",
                           err, sizeof err),
              -1);
    CHECK_CONTAINS (err, "(item 2 is empty)");
    CHECK_EQ (s_test_load (config, dir, "router",
                           "[router]\nadministrative_addr = tcp://a:3, tcp://b:3\n", err,
                           sizeof err),
              -1);
    CHECK_CONTAINS (err, S_ENDPOINTS);
    setenv ("EVENTMQ_WORKER_ADDR", "tcp://envw:1", 1);
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://envw:1");
    setenv ("EVENTMQ_BACKEND_ADDR", "tcp://envb:1", 1);
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), 0);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://envb:1");
    setenv ("EVENTMQ_WORKER_ADDR", "bad", 1);
    CHECK_EQ (config_load (config, "jobmanager", NULL, err, sizeof err), -1);
    CHECK_CONTAINS (err,
                    "env EVENTMQ_WORKER_ADDR (as worker_addr): backend_addr = 'bad'");
    unsetenv ("EVENTMQ_WORKER_ADDR");
    unsetenv ("EVENTMQ_BACKEND_ADDR");
    CHECK_EQ (config_set (config, "worker_addr", "tcp://flag:1", err, sizeof err), 0);
    CHECK_STREQ (config_str (config, "backend_addr"), "tcp://flag:1");

    //  EventMQ's router addresses: frontend_addr, backend_addr and
    //  administrative_addr are what emq-router binds, in [global] or
    //  [router] and in the environment; emq's own names win over them.
    const char *emq_file =
        "[global]\nfrontend_addr = tcp://0.0.0.0:5001\n"
        "[router]\nbackend_addr = tcp://0.0.0.0:5002\n"
        "administrative_addr = tcp://127.0.0.1:5003\n"
        "[publisher]\npublisher_incoming_addr = tcp://127.0.0.1:5008\n";
    config_t *eq = config_new ();
    warnings = eq->warnings;
    CHECK_EQ (s_test_load (eq, dir, "router", emq_file, err, sizeof err), 0);
    CHECK_EQ (eq->warnings, warnings);
    CHECK_STREQ (config_str (eq, "frontend_listen_addr"), "tcp://0.0.0.0:5001");
    CHECK_CONTAINS (eq->values[s_setting_index ("frontend_listen_addr")].source,
                    "test.conf:2 [global] (as frontend_addr)");
    CHECK_STREQ (config_str (eq, "backend_listen_addr"), "tcp://0.0.0.0:5002");
    CHECK_STREQ (config_str (eq, "administrative_listen_addr"), "tcp://127.0.0.1:5003");
    CHECK_EQ (s_test_load (eq, dir, "router",
                           "[router]\nfrontend_listen_addr = tcp://127.0.0.1:6001\n"
                           "frontend_addr = tcp://0.0.0.0:5001\n",
                           err, sizeof err),
              0);
    CHECK_STREQ (config_str (eq, "frontend_listen_addr"), "tcp://127.0.0.1:6001");
    setenv ("EVENTMQ_FRONTEND_ADDR", "tcp://127.0.0.1:7001", 1);
    setenv ("EVENTMQ_ADMINISTRATIVE_ADDR", "tcp://127.0.0.1:7003", 1);
    CHECK_EQ (s_test_load (eq, dir, "router", emq_file, err, sizeof err), 0);
    CHECK_STREQ (config_str (eq, "frontend_listen_addr"), "tcp://127.0.0.1:7001");
    CHECK_STREQ (eq->values[s_setting_index ("frontend_listen_addr")].source,
                 "env EVENTMQ_FRONTEND_ADDR (as frontend_addr)");
    CHECK_STREQ (config_str (eq, "administrative_listen_addr"), "tcp://127.0.0.1:7003");
    setenv ("EVENTMQ_FRONTEND_LISTEN_ADDR", "tcp://127.0.0.1:7101", 1);
    CHECK_EQ (s_test_load (eq, dir, "router", emq_file, err, sizeof err), 0);
    CHECK_STREQ (config_str (eq, "frontend_listen_addr"), "tcp://127.0.0.1:7101");
    unsetenv ("EVENTMQ_FRONTEND_LISTEN_ADDR");
    //  The client reads the same names as its own (where to connect).
    CHECK_EQ (s_test_load (eq, dir, "cli", emq_file, err, sizeof err), 0);
    CHECK_STREQ (config_str (eq, "frontend_addr"), "tcp://127.0.0.1:7001");
    CHECK_STREQ (config_str (eq, "administrative_addr"), "tcp://127.0.0.1:7003");
    unsetenv ("EVENTMQ_FRONTEND_ADDR");
    unsetenv ("EVENTMQ_ADMINISTRATIVE_ADDR");
    CHECK_EQ (s_test_load (eq, dir, "publisher", emq_file, err, sizeof err), 0);
    CHECK_STREQ (config_str (eq, "publisher_incoming_addr"), "tcp://127.0.0.1:5008");
    CHECK_STREQ (config_str (eq, "publisher_outgoing_addr"), "tcp://127.0.0.1:47299");
    config_destroy (&eq);
    config_t *router_config = config_new ();
    CHECK_EQ (s_test_load (router_config, dir, "router", "[router]\n", err, sizeof err),
              0);
    CHECK_EQ (config_set (router_config, "frontend-addr", "tcp://127.0.0.1:8001", err,
                          sizeof err),
              0);
    CHECK_STREQ (config_str (router_config, "frontend_listen_addr"),
                 "tcp://127.0.0.1:8001");
    CHECK_EQ (config_set (router_config, "high_water_mark", "9", err, sizeof err), 0);
    CHECK_EQ (config_int (router_config, "queue_hwm"), 9);
    config_destroy (&router_config);

    //  config_print: one "name = value  # source" line per setting of the
    //  program.
    char *printed = NULL;
    size_t printed_size = 0;
    FILE *stream = open_memstream (&printed, &printed_size);
    assert (stream);
    config_print (config, stream);
    fclose (stream);
    CHECK_CONTAINS (printed,
                    "backend_addr = tcp://flag:1  # command line (as worker_addr)\n");
    CHECK_CONTAINS (printed, "concurrent_jobs = 4  # default\n");
    CHECK_CONTAINS (printed, "heartbeat_interval = 3  # default\n");
    CHECK (strstr (printed, "frontend_listen_addr") == NULL);  // router's
    if (verbose)
        printf ("\n%s", printed);
    free (printed);
    config_destroy (&config);

    s_test_clear_env ();
    s_default_path = saved_default;
    unlink (s_test_file (dir, "test.conf", ""));
    unlink (s_test_file (dir, "env.conf", ""));
    rmdir (dir);
    if (!verbose)
        log_set_level (LOG_LEVEL_INFO);
    if (verbose)
        printf ("OK\n");
}
