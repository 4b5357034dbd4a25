/*  worker — the forked worker process. See worker.h.

    Lifetime of a worker process, all inside worker_main():
        detach from the parent (signals, descriptors, process group)
        setup hook -> HELLO (with the error if setup failed, then exit)
        loop: JOB -> run -> OUTCOME, until EOF, max_job_count or max_rss_kb
    Anything that goes wrong with the pipe ends the process; the job manager
    sees the exit and the broken pipe and reports the job as crashed.
*/
#include "worker.h"
#include "clock.h"
#include "tests/testutil.h"
#include "cgroup.h"
#include "command.h"
#include "log.h"
#include "plugin.h"
#include "python.h"
#include "proctree.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  The descriptor a worker talks to its job manager on.
#define S_WORKER_FD 3

//  Set once main() has handed setproctitle its argv (libbsd needs that).
static bool s_title_ready = false;

void
worker_title_init (int argc, char *argv[], char *envp[])
{
    setproctitle_init (argc, argv, envp);
    s_title_ready = true;
}

#define S_TITLE(...)                    \
    do {                                \
        if (s_title_ready)              \
            setproctitle (__VA_ARGS__); \
    } while (0)

worker_config_t *
worker_config_new (void)
{
    return calloc (1, sizeof (worker_config_t));
}

static void
s_free_list (char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free (list[i]);
    free (list);
}

void
worker_config_destroy (worker_config_t **self_p)
{
    assert (self_p);
    worker_config_t *self = *self_p;
    if (!self)
        return;
    s_free_list (self->plugin_dirs, self->plugin_dir_count);
    s_free_list (self->exec_allow, self->exec_allow_count);
    s_free_list (self->env_allow, self->env_allow_count);
    free (self->groups);
    free (self->setup);
    free (self->job_entry);
    free (self->job_exit);
    s_free_list (self->python_path, self->python_path_count);
    s_free_list (self->python_allow, self->python_allow_count);
    free (self->python_setup);
    free (self->python_job_entry);
    free (self->python_job_exit);
    free (self);
    *self_p = NULL;
}

//  Appends a copy of item to a NULL-terminated list.
static int
s_list_add (char ***list, size_t *count, const char *item)
{
    char **grown = realloc (*list, (*count + 2) * sizeof (char *));
    if (!grown)
        return -1;
    *list = grown;
    grown[*count] = strdup (item);
    if (!grown[*count])
        return -1;
    (*count)++;
    grown[*count] = NULL;
    return 0;
}

int
worker_config_add_plugin_dir (worker_config_t *self, const char *dir)
{
    return s_list_add (&self->plugin_dirs, &self->plugin_dir_count, dir);
}

int
worker_config_add_exec_allow (worker_config_t *self, const char *pattern)
{
    return s_list_add (&self->exec_allow, &self->exec_allow_count, pattern);
}

int
worker_config_add_python_path (worker_config_t *self, const char *dir)
{
    return s_list_add (&self->python_path, &self->python_path_count, dir);
}

int
worker_config_add_python_allow (worker_config_t *self, const char *pattern)
{
    return s_list_add (&self->python_allow, &self->python_allow_count, pattern);
}

//  pkg.module.function or pkg.module:function: dotted identifiers.
static bool
s_python_hook_ok (const char *spec)
{
    char path[1100];
    if (strlen (spec) >= sizeof path)
        return false;
    strcpy (path, spec);
    char *colon = strchr (path, ':');
    char *name;
    if (colon) {
        *colon = 0;
        name = colon + 1;
    }
    else {
        char *dot = strrchr (path, '.');
        if (!dot)
            return false;
        *dot = 0;
        name = dot + 1;
    }
    return payload_python_names_check (path, name, NULL, 0) == 0;
}

int
worker_config_set_python_hook (worker_config_t *self, const char *which, const char *spec,
                               char *err, size_t errlen)
{
    char **field = streq (which, "setup")       ? &self->python_setup
                   : streq (which, "job_entry") ? &self->python_job_entry
                   : streq (which, "job_exit")  ? &self->python_job_exit
                                                : NULL;
    assert (field);
    if (spec && *spec && !s_python_hook_ok (spec)) {
        snprintf (err, errlen,
                  "python_%s: '%s' is not a dotted path (pkg.module.function or "
                  "pkg.module:function)",
                  which, spec);
        return -1;
    }
    free (*field);
    *field = NULL;
    if (spec && *spec && !(*field = strdup (spec))) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int
worker_config_add_env_allow (worker_config_t *self, const char *pattern)
{
    return s_list_add (&self->env_allow, &self->env_allow_count, pattern);
}

int
worker_config_set_user (worker_config_t *self, uid_t uid, gid_t gid, const gid_t *groups,
                        size_t group_count)
{
    gid_t *copy = calloc (group_count ? group_count : 1, sizeof (gid_t));
    if (!copy)
        return -1;
    if (group_count)
        memcpy (copy, groups, group_count * sizeof (gid_t));
    free (self->groups);
    self->groups = copy;
    self->group_count = group_count;
    self->uid = uid;
    self->gid = gid;
    self->switch_user = true;
    return 0;
}

//  The lower of two limits, where 0 is "none".
static uint64_t
s_limit_min (uint64_t setting, uint64_t job)
{
    if (setting == 0)
        return job;
    return job && job < setting ? job : setting;
}

worker_limits_t
worker_limits_min (const worker_limits_t *settings, const worker_limits_t *job)
{
    worker_limits_t none = { 0 };
    if (!job)
        job = &none;
    return (worker_limits_t){ .as_bytes = s_limit_min (settings->as_bytes, job->as_bytes),
                              .nproc = s_limit_min (settings->nproc, job->nproc),
                              .nofile = s_limit_min (settings->nofile, job->nofile),
                              .cpu_s = s_limit_min (settings->cpu_s, job->cpu_s) };
}

int
worker_config_set_hook (worker_config_t *self, const char *which, const char *spec,
                        char *err, size_t errlen)
{
    char **field = streq (which, "setup")       ? &self->setup
                   : streq (which, "job_entry") ? &self->job_entry
                   : streq (which, "job_exit")  ? &self->job_exit
                                                : NULL;
    assert (field);
    char lib[256], fn[256];
    if (spec && *spec && plugin_spec_parse (spec, lib, sizeof lib, fn, sizeof fn)) {
        snprintf (err, errlen,
                  "%s: '%s' is not LIB:FN (a library file name in the "
                  "plugin dirs, a colon, a function name)",
                  which, spec);
        return -1;
    }
    free (*field);
    *field = NULL;
    if (spec && *spec && !(*field = strdup (spec))) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static bool
s_str_equal (const char *a, const char *b)
{
    return a == b || (a && b && streq (a, b));
}

static bool
s_list_equal (char **a, size_t a_count, char **b, size_t b_count)
{
    if (a_count != b_count)
        return false;
    for (size_t i = 0; i < a_count; i++)
        if (!streq (a[i], b[i]))
            return false;
    return true;
}

bool
worker_config_equal (const worker_config_t *a, const worker_config_t *b)
{
    return s_list_equal (a->plugin_dirs, a->plugin_dir_count, b->plugin_dirs,
                         b->plugin_dir_count)
           && s_list_equal (a->exec_allow, a->exec_allow_count, b->exec_allow,
                            b->exec_allow_count)
           && s_str_equal (a->setup, b->setup) && s_str_equal (a->job_entry, b->job_entry)
           && s_str_equal (a->job_exit, b->job_exit)
           && a->max_job_count == b->max_job_count && a->max_rss_kb == b->max_rss_kb
           && s_list_equal (a->python_path, a->python_path_count, b->python_path,
                            b->python_path_count)
           && s_list_equal (a->python_allow, a->python_allow_count, b->python_allow,
                            b->python_allow_count)
           && s_str_equal (a->python_setup, b->python_setup)
           && s_str_equal (a->python_job_entry, b->python_job_entry)
           && s_str_equal (a->python_job_exit, b->python_job_exit)
           && s_list_equal (a->env_allow, a->env_allow_count, b->env_allow,
                            b->env_allow_count)
           && memcmp (&a->limits, &b->limits, sizeof a->limits) == 0
           && a->switch_user == b->switch_user && a->uid == b->uid && a->gid == b->gid
           && a->group_count == b->group_count
           && (a->group_count == 0
               || memcmp (a->groups, b->groups, a->group_count * sizeof (gid_t)) == 0);
}

struct worker_t {
    const worker_config_t *config;  // borrowed
    plugin_cache_t *plugins;        // libraries loaded by this worker
    bool reap_all;                  // a real worker: kill what jobs leave behind
    bool tainted;  // a run job failed under a memory limit: retire after it
    emq_python_config_t python_config;  // views into config
    python_t *python;                   // python jobs (loaded on the first)
    bool broken;                        // replace this worker after its job
    bool usage_known;                   // last_cpu_us holds a reading
    bool handlers_touched;              // a run or python job ran here: it may have
                                        // installed signal handlers
    uint64_t last_cpu_us;  // the worker's CPU time at the end of its last job
};

worker_t *
worker_new (const worker_config_t *config)
{
    assert (config);
    worker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->plugins = plugin_cache_new (config->plugin_dirs, config->plugin_dir_count);
    self->python_config =
        (emq_python_config_t){ .path = config->python_path,
                               .path_count = config->python_path_count,
                               .allow = config->python_allow,
                               .allow_count = config->python_allow_count,
                               .setup = config->python_setup,
                               .job_entry = config->python_job_entry,
                               .job_exit = config->python_job_exit };
    self->python = python_new (&self->python_config);
    //  Hooks run in this process and may install signal handlers.
    self->handlers_touched = config->setup || config->job_entry || config->job_exit
                             || config->python_setup || config->python_job_entry
                             || config->python_job_exit;
    if (!self->plugins || !self->python)
        worker_destroy (&self);
    return self;
}

void
worker_destroy (worker_t **self_p)
{
    assert (self_p);
    worker_t *self = *self_p;
    if (!self)
        return;
    plugin_cache_destroy (&self->plugins);
    python_destroy (&self->python);
    free (self);
    *self_p = NULL;
}

//  Looks a hook up from its "LIB:FN" spec.
static void *
s_hook (worker_t *self, const char *which, const char *spec, char *err, size_t errlen)
{
    char lib[256], fn[256], reason[512];
    if (plugin_spec_parse (spec, lib, sizeof lib, fn, sizeof fn)) {
        snprintf (err, errlen, "%s hook '%s' is not LIB:FN", which, spec);
        return NULL;
    }
    void *address = plugin_symbol (self->plugins, lib, fn, reason, sizeof reason);
    if (!address)
        snprintf (err, errlen, "%s hook: %s", which, reason);
    return address;
}

int
worker_setup (worker_t *self, char *err, size_t errlen)
{
    assert (self);
    if (!self->config->setup)
        return 0;
    emq_setup_fn *setup =
        (emq_setup_fn *) s_hook (self, "setup", self->config->setup, err, errlen);
    if (!setup)
        return -1;
    int rc = setup ();
    if (rc != 0) {
        snprintf (err, errlen, "setup hook %s returned %d", self->config->setup, rc);
        return -1;
    }
    return 0;
}

static uint64_t
s_cpu_us (const struct rusage *usage)
{
    return (uint64_t) usage->ru_utime.tv_sec * 1000000
           + (uint64_t) usage->ru_utime.tv_usec
           + (uint64_t) usage->ru_stime.tv_sec * 1000000
           + (uint64_t) usage->ru_stime.tv_usec;
}

static wire_msg_t *
s_outcome_text (wire_msg_t *outcome, emqp_status_t status, const char *text)
{
    outcome->status = status;
    if (wire_msg_set_bytes (&outcome->value, &outcome->value_size, text, strlen (text)))
        wire_msg_destroy (&outcome);
    return outcome;
}

//  Soft limits for a run job, which runs in this process: lowered for the
//  job and raised back after it (the hard limits stay, so raising back
//  needs no privilege). CPU counts from what the worker used so far.
typedef struct {
    struct rlimit saved[4];
    bool set[4];
} s_run_limits_t;

static const int s_resources[4] = { RLIMIT_AS, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CPU };

static void
s_run_limits_apply (s_run_limits_t *state, const worker_limits_t *limits)
{
    uint64_t used_s = 0;
    if (limits->cpu_s) {
        struct rusage usage;
        getrusage (RUSAGE_SELF, &usage);
        used_s = (uint64_t) usage.ru_utime.tv_sec + (uint64_t) usage.ru_stime.tv_sec + 1;
    }
    uint64_t values[4] = { limits->as_bytes, limits->nproc, limits->nofile,
                           limits->cpu_s ? limits->cpu_s + used_s : 0 };
#if defined(__SANITIZE_ADDRESS__)
    //  AddressSanitizer's shadow memory is terabytes of address space: a
    //  worker under RLIMIT_AS could not map anything (exec commands still
    //  get it, they are not instrumented).
    values[0] = 0;
#endif
    for (int i = 0; i < 4; i++) {
        state->set[i] = false;
        if (!values[i] || getrlimit (s_resources[i], &state->saved[i]))
            continue;
        struct rlimit lower = state->saved[i];
        if (lower.rlim_max != RLIM_INFINITY && (rlim_t) values[i] > lower.rlim_max)
            continue;  // already lower than the job's limit
        lower.rlim_cur = (rlim_t) values[i];
        if (setrlimit (s_resources[i], &lower) == 0)
            state->set[i] = true;
        else
            log_warning ("worker %d: setrlimit: %s", getpid (), strerror (errno));
    }
}

static void
s_run_limits_restore (s_run_limits_t *state)
{
    for (int i = 0; i < 4; i++)
        if (state->set[i] && setrlimit (s_resources[i], &state->saved[i]))
            log_warning ("worker %d: setrlimit: %s", getpid (), strerror (errno));
}

wire_msg_t *
worker_run_job (worker_t *self, const wire_msg_t *job)
{
    assert (self && job && job->type == WIRE_JOB);
    uint64_t started_us = (uint64_t) clock_mono_us ();
    //  One getrusage per job: the reading at the end of the previous job is
    //  this one's start (what the worker did in between, reading this job,
    //  is counted with it).
    struct rusage after;
    if (!self->usage_known) {
        getrusage (RUSAGE_SELF, &after);
        self->last_cpu_us = s_cpu_us (&after);
        self->usage_known = true;
    }
    uint64_t before_cpu_us = self->last_cpu_us;
    wire_msg_t *outcome = wire_msg_new (WIRE_OUTCOME);
    if (!outcome)
        return NULL;

    char err[1024];
    emq_job_t context = { .msgid = job->msgid,
                          .queue = job->queue,
                          .attempt = job->attempt,
                          .timeout_s = job->timeout_s };
    payload_t *payload =
        payload_decode (job->payload, job->payload_size, err, sizeof err);
    if (!payload) {
        char text[1100];
        snprintf (text, sizeof text, "bad payload: %s", err);
        outcome = s_outcome_text (outcome, EMQP_STATUS_REJECTED, text);
        goto usage;
    }
    emq_hook_fn *entry = NULL, *exit_ = NULL;
    if (self->config->job_entry
        && !(entry = (emq_hook_fn *) s_hook (self, "job_entry", self->config->job_entry,
                                             err, sizeof err))) {
        outcome = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
        goto done;
    }
    if (self->config->job_exit
        && !(exit_ = (emq_hook_fn *) s_hook (self, "job_exit", self->config->job_exit,
                                             err, sizeof err))) {
        outcome = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
        goto done;
    }
    if (entry)
        entry (&context);
    int rc;
    worker_limits_t limits = worker_limits_min (&self->config->limits, &payload->limits);
    if (payload->kind == PAYLOAD_RUN || payload->kind == PAYLOAD_PYTHON) {
        //  Both run inside this process: the job's limits are the worker's
        //  while it runs.
        s_run_limits_t state;
        s_run_limits_apply (&state, &limits);
        self->handlers_touched = true;
        rc = payload->kind == PAYLOAD_RUN
                 ? plugin_run (self->plugins, payload, &context, outcome)
                 : python_run (self->python, payload, outcome, &self->broken);
        s_run_limits_restore (&state);
        //  An allocation that failed may have left the function's library
        //  or malloc in a state we cannot trust: a fresh worker takes over.
        if (limits.as_bytes && outcome->status != EMQP_STATUS_OK)
            self->tainted = true;
    }
    else {
        command_policy_t policy = { .allow = self->config->exec_allow,
                                    .allow_count = self->config->exec_allow_count,
                                    .env_allow = self->config->env_allow,
                                    .env_allow_count = self->config->env_allow_count,
                                    .limits = limits,
                                    .reap_all = self->reap_all,
                                    .handlers_default =
                                        self->reap_all && !self->handlers_touched };
        rc = command_run (payload, &policy, outcome);
    }
    //  Every process a job started ends with it: what a run job forked, or
    //  an exec job's command left behind and came to us (subreaper).
    if (self->reap_all && proctree_has_children ()) {
        size_t killed = proctree_kill_children (NULL, NULL);
        if (killed)
            log_info ("worker %d: job %s left %zu process(es) behind; killed", getpid (),
                      job->msgid, killed);
    }
    if (exit_)
        exit_ (&context);
    if (rc)
        wire_msg_destroy (&outcome);
done:
    payload_destroy (&payload);
usage:
    if (outcome) {
        getrusage (RUSAGE_SELF, &after);
        self->last_cpu_us = s_cpu_us (&after);
        outcome->wall_us = (uint64_t) clock_mono_us () - started_us;
        //  exec: the command's own use came from wait4; add the worker's.
        outcome->cpu_us += self->last_cpu_us - before_cpu_us;
        if ((uint64_t) after.ru_maxrss > outcome->maxrss_kb)
            outcome->maxrss_kb = (uint64_t) after.ru_maxrss;
    }
    return outcome;
}

bool
worker_is_broken (const worker_t *self)
{
    assert (self);
    return self->broken;
}

//  Current resident set size in KiB, from /proc; 0 if unknown.
static uint64_t
s_rss_kb (void)
{
    FILE *file = fopen ("/proc/self/statm", "r");
    if (!file)
        return 0;
    unsigned long size = 0, resident = 0;
    int fields = fscanf (file, "%lu %lu", &size, &resident);
    fclose (file);
    if (fields != 2)
        return 0;
    return (uint64_t) resident * (uint64_t) sysconf (_SC_PAGESIZE) / 1024;
}

void
worker_main (int fd, pid_t parent, handoff_t *handoff, const worker_config_t *config)
{
    //  The job manager blocked every signal around fork() and has handlers
    //  of its own; a worker starts from the defaults, with SIGPIPE ignored so
    //  a vanished parent shows up as EPIPE.
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal (sig, SIG_DFL);
    signal (SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);

    //  Into a cgroup of our own (when the job manager has one) before any
    //  job, while we may still write to the cgroup tree: whatever our jobs
    //  start is then in there too, setsid() or not (worker/cgroup.h). Done
    //  here, not by the job manager, whose loop must not wait for it.
    if (cgroup_base () && cgroup_join (getpid ()))
        log_warning ("worker %d: cannot join a cgroup under %s: %s", getpid (),
                     cgroup_base (), strerror (errno));
    //  Credentials first: switching them clears the parent-death signal.
    //  Only system calls (the job manager resolved the names before fork).
    //  A worker that cannot switch says why in HELLO and leaves (below).
    char switch_err[256] = "";
    if (config->switch_user
        && (setgroups (config->group_count, config->groups) || setgid (config->gid)
            || setuid (config->uid)))
        snprintf (switch_err, sizeof switch_err, "cannot switch to uid %d gid %d: %s",
                  (int) config->uid, (int) config->gid, strerror (errno));
    else if (config->switch_user && config->uid != 0 && setuid (0) == 0)
        snprintf (switch_err, sizeof switch_err,
                  "could switch back to root after setuid");
    if (prctl (PR_SET_PDEATHSIG, SIGKILL) || getppid () != parent)
        _exit (0);  // the parent is already gone
    //  What a job leaves behind comes to us, not to init (see proctree.h).
    bool subreaper = proctree_subreaper () == 0;
    if (!subreaper)
        log_warning ("worker %d: PR_SET_CHILD_SUBREAPER: %s", getpid (),
                     strerror (errno));
    //  The pool also does this from the parent; whichever runs first wins.
    if (setpgid (0, 0) && errno != EPERM)
        log_warning ("worker %d: setpgid: %s", getpid (), strerror (errno));

    //  Keep stdio (for the log) and our pipe, moved to fd 3; drop all else,
    //  the ZeroMQ sockets and the other workers' pipes above all.
    if (fd != S_WORKER_FD) {
        if (dup2 (fd, S_WORKER_FD) < 0)
            _exit (2);
        if (fd > S_WORKER_FD)
            close (fd);
    }
    closefrom (S_WORKER_FD + 1);
    //  Commands run by exec jobs must not inherit the pipe to the job manager.
    if (fcntl (S_WORKER_FD, F_SETFD, FD_CLOEXEC) < 0)
        _exit (2);

    prctl (PR_SET_NAME, "emq-worker");
    S_TITLE ("-emq-worker: idle");

    char err[1024];
    worker_t *self = worker_new (config);
    if (!self)
        _exit (2);
    self->reap_all = subreaper;
    int setup_rc = -1;
    if (*switch_err)
        snprintf (err, sizeof err, "%s", switch_err);
    else
        setup_rc = worker_setup (self, err, sizeof err);
    wire_msg_t *hello = wire_msg_new (WIRE_HELLO);
    if (!hello)
        _exit (2);
    hello->pid = getpid ();
    if (setup_rc)
        hello->error = strdup (err);
    if (wire_write (S_WORKER_FD, hello))
        _exit (2);
    wire_msg_destroy (&hello);
    if (setup_rc)
        _exit (3);

    //  One read per job when it comes in one piece, one write per outcome
    //  from a buffer kept for the worker's life (it leaves with _exit).
    wire_reader_t *reader = wire_reader_new ();
    msgpack_sbuffer scratch;
    msgpack_sbuffer_init (&scratch);
    if (!reader)
        _exit (2);
    uint64_t jobs_done = 0;
    while (true) {
        wire_msg_t *job = NULL;
        int rc = wire_reader_wait (reader, S_WORKER_FD, &job, err, sizeof err);
        if (rc != 1) {
            if (rc == -1 && streq (err, "end of file"))
                _exit (0);  // the job manager closed our pipe: leave
            log_warning ("worker %d: bad message from the job manager: %s", getpid (),
                         err);
            _exit (2);
        }
        if (job->type != WIRE_JOB) {
            log_warning ("worker %d: unexpected message type %d", getpid (), job->type);
            _exit (2);
        }
        //  A job handed while we ran the previous one may have been taken
        //  back since (cancel, hold, retire): the job manager has it.
        if (!handoff_take (handoff, job->ticket)) {
            wire_msg_destroy (&job);
            continue;
        }
        uint32_t ticket = job->ticket;
        S_TITLE ("-emq-worker: %s %s", job->queue, job->msgid);
        wire_msg_t *outcome = worker_run_job (self, job);
        wire_msg_destroy (&job);
        if (!outcome)
            _exit (2);  // out of memory: the job manager reports a crash
        jobs_done++;
        uint64_t rss_kb = config->max_rss_kb ? s_rss_kb () : 0;
        outcome->retiring = (config->max_job_count && jobs_done >= config->max_job_count)
                            || (config->max_rss_kb && rss_kb > config->max_rss_kb)
                            || worker_is_broken (self) || self->tainted;
        outcome->ticket = ticket;
        if (wire_send (S_WORKER_FD, outcome, &scratch))
            _exit (2);
        bool retiring = outcome->retiring;
        wire_msg_destroy (&outcome);
        if (retiring)
            _exit (0);
        S_TITLE ("-emq-worker: idle");
    }
}

//  --------------------------------------------------------------------------
//  Self test

//  Builds a JOB message around an encoded payload (caller owns it).
static wire_msg_t *
s_job (const payload_t *payload, const char *msgid)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    REQUIRE_OR_NULL (payload_encode (payload, &sbuf) == 0);
    wire_msg_t *job = wire_msg_new (WIRE_JOB);
    job->msgid = strdup (msgid);
    job->queue = strdup ("default");
    job->attempt = 1;
    REQUIRE_OR_NULL (
        wire_msg_set_bytes (&job->payload, &job->payload_size, sbuf.data, sbuf.size)
        == 0);
    msgpack_sbuffer_destroy (&sbuf);
    return job;
}

void
worker_test (bool verbose)
{
    if (verbose)
        printf (" * worker: ");
    char err[256];

    //  Configuration.
    worker_config_t *config = worker_config_new ();
    REQUIRE (config);
    REQUIRE (worker_config_add_exec_allow (config, "/bin/*") == 0);
    REQUIRE (worker_config_set_hook (config, "setup", "nolib", err, sizeof err) == -1);
    REQUIRE (strstr (err, "LIB:FN"));
    REQUIRE (worker_config_set_hook (config, "setup", "", err, sizeof err) == 0);
    REQUIRE (config->setup == NULL);
    worker_config_t *other = worker_config_new ();
    REQUIRE (!worker_config_equal (config, other));
    REQUIRE (worker_config_add_exec_allow (other, "/bin/*") == 0);
    REQUIRE (worker_config_equal (config, other));
    //  Python hooks are dotted paths; the python settings count in equality.
    REQUIRE (worker_config_set_python_hook (other, "setup", "nodots", err, sizeof err)
             == -1);
    REQUIRE (strstr (err, "dotted path"));
    REQUIRE (worker_config_set_python_hook (other, "job_entry", "a.b()", err, sizeof err)
             == -1);
    REQUIRE (
        worker_config_set_python_hook (other, "setup", "app.hooks.init", err, sizeof err)
        == 0);
    REQUIRE (worker_config_set_python_hook (other, "job_exit", "app.hooks:done", err,
                                            sizeof err)
             == 0);
    REQUIRE (streq (other->python_setup, "app.hooks.init"));
    REQUIRE (!worker_config_equal (config, other));
    REQUIRE (worker_config_set_python_hook (other, "setup", "", err, sizeof err) == 0);
    REQUIRE (worker_config_set_python_hook (other, "job_exit", NULL, err, sizeof err)
             == 0);
    REQUIRE (worker_config_equal (config, other));
    REQUIRE (worker_config_add_python_allow (other, "app.*") == 0);
    REQUIRE (!worker_config_equal (config, other));
    worker_config_destroy (&other);
    REQUIRE (other == NULL);

    //  One exec job in-process, one with a bad payload.
    worker_t *worker = worker_new (config);
    REQUIRE (worker);
    REQUIRE (worker_setup (worker, err, sizeof err) == 0);
    char *argv[] = { "/bin/echo", "hi", NULL };
    payload_t payload = { .kind = PAYLOAD_EXEC, .argv = argv, .argc = 2 };
    wire_msg_t *job = s_job (&payload, "job-1");
    wire_msg_t *outcome = worker_run_job (worker, job);
    REQUIRE (outcome && outcome->status == EMQP_STATUS_OK);
    REQUIRE (outcome->value_size == 5 && memcmp (outcome->value + 2, "hi\n", 3) == 0);
    REQUIRE (outcome->wall_us > 0);
    wire_msg_destroy (&outcome);
    free (job->payload);
    job->payload = strdup ("\xc1");
    job->payload_size = 1;
    outcome = worker_run_job (worker, job);
    REQUIRE (outcome && outcome->status == EMQP_STATUS_REJECTED);
    REQUIRE (memmem (outcome->value, outcome->value_size, "bad payload", 11));
    wire_msg_destroy (&outcome);
    wire_msg_destroy (&job);
    worker_destroy (&worker);

    //  A real worker process: HELLO, two jobs, retires after max_job_count.
    //  A job taken back before the worker read it (ticket 1) is dropped
    //  unrun: no outcome, and it does not count.
    config->max_job_count = 2;
    handoff_t *handoff = handoff_new ();
    REQUIRE (handoff);
    int sv[2];
    REQUIRE (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    REQUIRE (pid >= 0);
    if (pid == 0) {
        close (sv[0]);
        worker_main (sv[1], parent, handoff, config);
    }
    close (sv[1]);
    wire_msg_t *msg = wire_read (sv[0], err, sizeof err);
    REQUIRE (msg && msg->type == WIRE_HELLO && msg->pid == pid && !msg->error);
    wire_msg_destroy (&msg);
    //  The last one shows the command's ignored signals: not SIGPIPE, which
    //  the worker ignores (it resets only that one, having run no in-process
    //  job or hook; exec resets caught ones by itself).
    char *sig_argv[] = { "/bin/grep", "-E", "^Sig(Ign|Cgt)", "/proc/self/status", NULL };
    payload_t sig_payload = { .kind = PAYLOAD_EXEC, .argv = sig_argv, .argc = 4 };
    for (uint32_t ticket = 0; ticket < 3; ticket++) {
        job = s_job (ticket == 2 ? &sig_payload : &payload, "job-2");
        REQUIRE (job);
        job->ticket = ticket;
        handoff_offer (handoff, ticket);
        if (ticket == 1)
            REQUIRE (handoff_retract (handoff, ticket));
        REQUIRE (wire_write (sv[0], job) == 0);
        wire_msg_destroy (&job);
        if (ticket == 1)
            continue;
        msg = wire_read (sv[0], err, sizeof err);
        REQUIRE (msg && msg->type == WIRE_OUTCOME && msg->status == EMQP_STATUS_OK);
        REQUIRE (msg->ticket == ticket && msg->retiring == (ticket == 2));
        REQUIRE (handoff_taken (handoff, ticket));
        if (ticket == 2) {
            //  SIGPIPE, which the worker ignores, is not ignored in the
            //  command. (Only that bit: what else is ignored is inherited.)
            char text[512] = "";
            snprintf (text, sizeof text, "%.*s", (int) msg->value_size, msg->value);
            const char *line = strstr (text, "SigIgn:\t");
            unsigned long long ignored = line ? strtoull (line + 8, NULL, 16) : ~0ULL;
            if (ignored & (1ULL << (SIGPIPE - 1)))
                fprintf (stderr, "worker test: the command said: %s\n", text);
            CHECK (!(ignored & (1ULL << (SIGPIPE - 1))));
        }
        wire_msg_destroy (&msg);
    }
    REQUIRE (!handoff_taken (handoff, 1));
    int status;
    REQUIRE (waitpid (pid, &status, 0) == pid);
    REQUIRE (TESTUTIL_CLEAN_EXIT (status));
    close (sv[0]);

    //  A failing setup hook is reported in HELLO, then the worker exits 3.
    REQUIRE (worker_config_set_hook (config, "setup", "missing.so:setup", err, sizeof err)
             == 0);
    REQUIRE (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    pid = fork ();
    REQUIRE (pid >= 0);
    if (pid == 0) {
        close (sv[0]);
        worker_main (sv[1], parent, handoff, config);
    }
    close (sv[1]);
    msg = wire_read (sv[0], err, sizeof err);
    REQUIRE (msg && msg->type == WIRE_HELLO && msg->error);
    REQUIRE (strstr (msg->error, "setup hook"));
    wire_msg_destroy (&msg);
    REQUIRE (waitpid (pid, &status, 0) == pid);
    REQUIRE (WIFEXITED (status)
             && (WEXITSTATUS (status) == 3
                 || (testutil_under_valgrind () && WEXITSTATUS (status) == 99)));
    close (sv[0]);

    //  A worker that cannot switch to its user says so in HELLO and exits 3
    //  (here: an unprivileged process asked to become root).
    if (geteuid () == 0) {
        REQUIRE (worker_config_set_hook (config, "setup", "", err, sizeof err) == 0);
        gid_t none = 0;
        REQUIRE (worker_config_set_user (config, 0, 0, &none, 1) == 0);
        REQUIRE (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        pid = fork ();
        REQUIRE (pid >= 0);
        if (pid == 0) {
            close (sv[0]);
            if (setgid (65534) || setuid (65534))
                _exit (9);
            worker_main (sv[1], parent, handoff, config);
        }
        close (sv[1]);
        msg = wire_read (sv[0], err, sizeof err);
        REQUIRE (msg && msg->type == WIRE_HELLO && msg->error);
        CHECK_CONTAINS (msg->error, "cannot switch to uid 0");
        wire_msg_destroy (&msg);
        REQUIRE (waitpid (pid, &status, 0) == pid);
        //  (Under valgrind with --error-exitcode, what _exit leaves counts.)
        CHECK (WIFEXITED (status)
               && (WEXITSTATUS (status) == 3
                   || (testutil_under_valgrind () && WEXITSTATUS (status) == 99)));
        close (sv[0]);
    }

    handoff_destroy (&handoff);
    worker_config_destroy (&config);
    if (verbose)
        printf ("OK\n");
}
