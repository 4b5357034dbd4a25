/*  pool — worker processes. See pool.h.

    Records live in a small array (a job manager has tens of workers, not
    thousands), owned by the pool. The pid distribution is a second array of
    (pid, jobs) entries that outlives the workers, trimmed to the most
    recent POOL_DEAD_KEPT dead ones so a long-lived job manager does not
    grow without bound.
*/
#include "pool.h"
#include "log.h"
#include "worker/cgroup.h"
#include "worker/proctree.h"
#include "tests/testutil.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

//  A job handed to a worker that does not read it within this time means
//  the worker is wedged; the job manager then treats it as crashed.
#define S_SEND_TIMEOUT_S 5

typedef struct {
    pid_t pid;
    uint64_t jobs;
    bool alive;
} s_count_t;

struct pool_t {
    pool_child_fn *child;     // what a forked worker runs
    void *arg;                // its argument (borrowed)
    uint64_t generation;      // bumped by pool_set_child_arg
    pool_worker_t **workers;  // owned records
    size_t count;
    size_t capacity;
    size_t cursor;      // for pool_first/pool_next
    s_count_t *counts;  // pid distribution
    size_t counts_size;
    size_t counts_capacity;
    msgpack_sbuffer scratch;  // encodes each JOB message, reused
    pid_t cgroup_left[64];    // reaped workers whose cgroup was still busy
    size_t cgroup_left_count;
};

//  Removes the cgroups of reaped workers, keeping those not empty yet
//  (killed processes leave a moment later) for the next call.
static void
s_cgroups_remove (pool_t *self)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->cgroup_left_count; i++)
        if (cgroup_remove (self->cgroup_left[i]) && errno == EBUSY)
            self->cgroup_left[kept++] = self->cgroup_left[i];
    self->cgroup_left_count = kept;
}

//  Ends whatever is left in a reaped worker's cgroup (unless it left
//  cleanly: then it had ended its jobs' leftovers itself) and queues the
//  cgroup for removal.
static void
s_cgroup_release (pool_t *self, pid_t pid, bool clean)
{
    if (!cgroup_base ())
        return;
    if (!clean && cgroup_kill (pid) && errno != ENOENT)
        log_warning ("pool: worker %d: cgroup.kill: %s", (int) pid, strerror (errno));
    if (self->cgroup_left_count == sizeof self->cgroup_left / sizeof self->cgroup_left[0])
        s_cgroups_remove (self);
    if (self->cgroup_left_count < sizeof self->cgroup_left / sizeof self->cgroup_left[0])
        self->cgroup_left[self->cgroup_left_count++] = pid;
}

static const char *s_state_names[] = { "starting", "idle", "busy", "gone" };

const char *
pool_state_name (pool_state_t state)
{
    return state < POOL_STATE_COUNT ? s_state_names[state] : "?";
}

pool_t *
pool_new (pool_child_fn *child, void *arg)
{
    assert (child);
    pool_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->child = child;
    self->arg = arg;
    self->generation = 1;
    msgpack_sbuffer_init (&self->scratch);
    return self;
}

static void
s_worker_free (pool_worker_t *worker)
{
    if (worker->fd >= 0)
        close (worker->fd);
    wire_reader_destroy (&worker->reader);
    handoff_destroy (&worker->handoff);
    free (worker);
}

void
pool_destroy (pool_t **self_p)
{
    assert (self_p);
    pool_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++) {
        pool_worker_t *worker = self->workers[i];
        pool_kill (self, worker, SIGKILL);
        while (waitpid (worker->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        s_cgroup_release (self, worker->pid, false);
        s_worker_free (worker);
    }
    //  Killed processes leave their cgroups within milliseconds.
    for (int i = 0; i < 50 && self->cgroup_left_count; i++) {
        s_cgroups_remove (self);
        if (self->cgroup_left_count)
            zclock_sleep (2);
    }
    free (self->workers);
    free (self->counts);
    msgpack_sbuffer_destroy (&self->scratch);
    free (self);
    *self_p = NULL;
}

void
pool_set_child_arg (pool_t *self, void *arg)
{
    assert (self);
    self->arg = arg;
    self->generation++;
}

uint64_t
pool_generation (pool_t *self)
{
    assert (self);
    return self->generation;
}

//  Returns the pid's distribution entry, creating it if asked.
static s_count_t *
s_count_require (pool_t *self, pid_t pid, bool create)
{
    for (size_t i = 0; i < self->counts_size; i++)
        if (self->counts[i].pid == pid)
            return &self->counts[i];
    if (!create)
        return NULL;
    if (self->counts_size == self->counts_capacity) {
        size_t capacity = self->counts_capacity ? self->counts_capacity * 2 : 16;
        s_count_t *grown = realloc (self->counts, capacity * sizeof *grown);
        if (!grown)
            return NULL;
        self->counts = grown;
        self->counts_capacity = capacity;
    }
    s_count_t *entry = &self->counts[self->counts_size++];
    *entry = (s_count_t){ .pid = pid, .jobs = 0, .alive = true };
    return entry;
}

//  Marks a pid dead and trims the oldest dead entries past the limit.
static void
s_count_dead (pool_t *self, pid_t pid)
{
    s_count_t *entry = s_count_require (self, pid, false);
    if (entry)
        entry->alive = false;
    size_t dead = 0;
    for (size_t i = 0; i < self->counts_size; i++)
        dead += !self->counts[i].alive;
    //  Entries are in fork order, so the first dead ones are the oldest.
    size_t i = 0;
    while (dead > POOL_DEAD_KEPT && i < self->counts_size) {
        if (!self->counts[i].alive) {
            memmove (&self->counts[i], &self->counts[i + 1],
                     (self->counts_size - i - 1) * sizeof (s_count_t));
            self->counts_size--;
            dead--;
        }
        else
            i++;
    }
}

pool_worker_t *
pool_spawn (pool_t *self)
{
    assert (self);
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 8;
        pool_worker_t **grown = realloc (self->workers, capacity * sizeof *grown);
        if (!grown)
            return NULL;
        self->workers = grown;
        self->capacity = capacity;
    }
    pool_worker_t *worker = calloc (1, sizeof *worker);
    if (!worker)
        return NULL;
    worker->fd = -1;
    worker->reader = wire_reader_new ();
    worker->handoff = handoff_new ();
    int sv[2];
    if (!worker->reader || !worker->handoff
        || socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        int saved = errno;
        s_worker_free (worker);
        errno = saved;
        return NULL;
    }
    //  Block every signal across fork so no handler of ours runs in the
    //  child before worker code has reset them all to the defaults.
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0) {
        //  The other workers' pipes must not stay open in this one, or they
        //  would never see EOF when we close our end.
        //  Nor their shared pages: this worker's jobs must not reach the
        //  words of the others' jobs.
        close (sv[0]);
        for (size_t i = 0; i < self->count; i++) {
            if (self->workers[i]->fd >= 0)
                close (self->workers[i]->fd);
            handoff_destroy (&self->workers[i]->handoff);
        }
        self->child (sv[1], parent, worker->handoff, self->arg);
        _exit (2);  // a child function must not return
    }
    int saved = errno;
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    close (sv[1]);
    if (pid < 0) {
        close (sv[0]);
        s_worker_free (worker);
        errno = saved;
        return NULL;
    }
    //  Also done in the child; doing it here too closes the race in which
    //  we would kill(-pid) before the child got to run.
    if (setpgid (pid, pid) && errno != EACCES && errno != ESRCH && errno != EPERM)
        log_warning ("pool: setpgid %d: %s", (int) pid, strerror (errno));
    struct timeval timeout = { .tv_sec = S_SEND_TIMEOUT_S };
    if (setsockopt (sv[0], SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout))
        log_warning ("pool: worker %d: setsockopt SO_SNDTIMEO: %s", (int) pid,
                     strerror (errno));
    worker->pid = pid;
    worker->fd = sv[0];
    worker->state = POOL_STARTING;
    worker->generation = self->generation;
    worker->started_ms = zclock_mono ();
    self->workers[self->count++] = worker;
    s_count_require (self, pid, true);
    return worker;
}

size_t
pool_size (pool_t *self)
{
    assert (self);
    return self->count;
}

size_t
pool_count (pool_t *self, pool_state_t state)
{
    assert (self);
    size_t count = 0;
    for (size_t i = 0; i < self->count; i++)
        count += self->workers[i]->state == state;
    return count;
}

size_t
pool_live (pool_t *self)
{
    return pool_size (self) - pool_count (self, POOL_GONE);
}

pool_worker_t *
pool_first (pool_t *self)
{
    assert (self);
    self->cursor = 0;
    return pool_next (self);
}

pool_worker_t *
pool_next (pool_t *self)
{
    assert (self);
    return self->cursor < self->count ? self->workers[self->cursor++] : NULL;
}

pool_worker_t *
pool_lookup (pool_t *self, pid_t pid)
{
    assert (self);
    for (size_t i = 0; i < self->count; i++)
        if (self->workers[i]->pid == pid)
            return self->workers[i];
    return NULL;
}

pool_worker_t *
pool_lookup_fd (pool_t *self, int fd)
{
    assert (self);
    for (size_t i = 0; i < self->count; i++)
        if (self->workers[i]->fd == fd)
            return self->workers[i];
    return NULL;
}

pool_worker_t *
pool_idle (pool_t *self)
{
    assert (self);
    for (size_t i = 0; i < self->count; i++)
        if (self->workers[i]->state == POOL_IDLE && !self->workers[i]->retiring)
            return self->workers[i];
    return NULL;
}

bool
pool_may_queue (const pool_worker_t *worker)
{
    assert (worker);
    //  Tickets not yet known read stay below HANDOFF_SLOTS, so that no word
    //  is reused while the worker may still look at it: the current job, at
    //  most POOL_QUEUE_MAX taken back behind the previous one and as many
    //  queued now (unread_from moves on with each OUTCOME).
    return worker->state == POOL_BUSY && worker->fd >= 0 && !worker->retiring
           && !worker->queue_closed && worker->queued_count < POOL_QUEUE_MAX
           && worker->next_ticket - worker->unread_from < HANDOFF_SLOTS - 1;
}

int
pool_send_job (pool_t *self, pool_worker_t *worker, wire_msg_t *job_msg, void *job)
{
    assert (self && worker && job_msg && job);
    bool queue = worker->state == POOL_BUSY;
    assert (queue ? pool_may_queue (worker) : worker->state == POOL_IDLE);
    if (worker->next_ticket - worker->unread_from >= HANDOFF_SLOTS - 1) {
        errno = EAGAIN;  // cannot happen (see pool_may_queue): refuse, not overwrite
        return -1;
    }
    uint32_t ticket = worker->next_ticket;
    job_msg->ticket = ticket;
    handoff_offer (worker->handoff, ticket);
    if (wire_send (worker->fd, job_msg, &self->scratch))
        return -1;
    worker->next_ticket++;
    if (queue) {
        worker->queued[worker->queued_count] = job;
        worker->queued_ticket[worker->queued_count++] = ticket;
    }
    else {
        worker->state = POOL_BUSY;
        worker->job = job;
        worker->job_ticket = ticket;
    }
    return 0;
}

size_t
pool_retract (pool_t *self, pool_worker_t *worker, bool with_head,
              void *out[POOL_QUEUE_MAX + 1])
{
    assert (self && worker && out);
    //  Newest first: the worker takes them in order, so once one is found
    //  taken, every one before it was too.
    void *back[POOL_QUEUE_MAX + 1];
    size_t count = 0;
    while (worker->queued_count > 0
           && handoff_retract (worker->handoff,
                               worker->queued_ticket[worker->queued_count - 1])) {
        back[count++] = worker->queued[--worker->queued_count];
        worker->queue_closed = true;  // its ticket may be unread yet
    }
    if (with_head && worker->queued_count == 0 && worker->job
        && handoff_retract (worker->handoff, worker->job_ticket)) {
        back[count++] = worker->job;
        worker->job = NULL;
        if (worker->state == POOL_BUSY)
            worker->state = POOL_IDLE;
    }
    for (size_t i = 0; i < count; i++)
        out[i] = back[count - 1 - i];
    return count;
}

int
pool_recv (pool_t *self, pool_worker_t *worker, wire_msg_t **msg_p, char *err,
           size_t errlen)
{
    assert (self && worker);
    if (worker->fd < 0) {
        snprintf (err, errlen, "pipe closed");
        return -1;
    }
    return wire_reader_recv (worker->reader, worker->fd, msg_p, err, errlen);
}

int
pool_recv_buffered (pool_t *self, pool_worker_t *worker, wire_msg_t **msg_p, char *err,
                    size_t errlen)
{
    assert (self && worker);
    return wire_reader_next (worker->reader, msg_p, err, errlen);
}

void
pool_job_done (pool_t *self, pool_worker_t *worker, uint32_t ticket)
{
    assert (self && worker);
    worker->jobs_done++;
    s_count_t *entry = s_count_require (self, worker->pid, true);
    if (entry)
        entry->jobs++;
    //  The worker read every ticket up to this one.
    worker->unread_from = ticket + 1;
    worker->queue_closed = false;
    if (worker->queued_count > 0) {
        worker->job = worker->queued[0];
        worker->job_ticket = worker->queued_ticket[0];
        worker->queued_count--;
        memmove (worker->queued, worker->queued + 1,
                 worker->queued_count * sizeof worker->queued[0]);
        memmove (worker->queued_ticket, worker->queued_ticket + 1,
                 worker->queued_count * sizeof worker->queued_ticket[0]);
        return;
    }
    worker->job = NULL;
    if (worker->state == POOL_BUSY)
        worker->state = POOL_IDLE;
}

void
pool_close (pool_t *self, pool_worker_t *worker)
{
    assert (self && worker);
    if (worker->fd >= 0) {
        close (worker->fd);
        worker->fd = -1;
    }
    worker->state = POOL_GONE;
}

int
pool_kill (pool_t *self, pool_worker_t *worker, int sig)
{
    assert (self && worker);
    //  The group outlives a worker that already exited only while something
    //  it started still runs, so the pgid cannot have been reused.
    //  The cgroup also holds what escaped the group (setsid).
    if (sig == SIGKILL && cgroup_base () && cgroup_kill (worker->pid) && errno != ENOENT)
        log_warning ("pool: worker %d: cgroup.kill: %s", (int) worker->pid,
                     strerror (errno));
    if (kill (-worker->pid, sig) == 0)
        return 0;
    if (errno == ESRCH)
        return kill (worker->pid, sig) == 0 || errno == ESRCH ? 0 : -1;
    return -1;
}

static bool
s_is_worker (pid_t pid, void *arg)
{
    return pool_lookup ((pool_t *) arg, pid) != NULL;
}

size_t
pool_reap (pool_t *self, pool_reaped_fn *fn, void *arg)
{
    assert (self);
    size_t reaped = 0;
    bool unclean = false;  // a worker was killed or died: leftovers possible
    while (true) {
        int status;
        struct rusage usage;
        pid_t pid = wait4 (-1, &status, WNOHANG, &usage);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            break;  // 0: children left but none ended; ECHILD: none
        size_t i = 0;
        while (i < self->count && self->workers[i]->pid != pid)
            i++;
        if (i == self->count)
            continue;  // not a worker of ours (cannot happen in the jm)
        pool_worker_t *worker = self->workers[i];
        if (fn)
            fn (worker, status, &usage, arg);
        //  Whatever the worker started dies with it.
        kill (-pid, SIGKILL);
        bool clean = WIFEXITED (status) && WEXITSTATUS (status) == 0;
        unclean = unclean || !clean;
        s_cgroup_release (self, pid, clean);
        s_count_dead (self, pid);
        self->workers[i] = self->workers[--self->count];
        s_worker_free (worker);
        reaped++;
    }
    //  A worker killed in the middle of a job (timeout, cancel, crash) may
    //  have left processes that escaped its group (setsid): as a subreaper
    //  we inherited them once it was reaped. Anything of ours that is not a
    //  worker is such a leftover. (One that left cleanly killed its jobs'
    //  leftovers after each job: no /proc scan for it.)
    if (unclean && proctree_is_subreaper ()) {
        size_t killed = proctree_kill_children (s_is_worker, self);
        if (killed)
            log_info ("pool: killed %zu process(es) left behind by dead workers", killed);
    }
    if (self->cgroup_left_count)
        s_cgroups_remove (self);
    return reaped;
}

void
pool_distribution (pool_t *self, pool_visit_fn *fn, void *arg)
{
    assert (self && fn);
    for (size_t i = 0; i < self->counts_size; i++)
        fn (self->counts[i].pid, self->counts[i].jobs, arg);
}

//  --------------------------------------------------------------------------
//  Self test

//  A trivial worker: says HELLO, answers each JOB it may take with an ok
//  OUTCOME whose value is the msgid, exits at EOF.
static void
s_echo_child (int fd, pid_t parent, handoff_t *handoff, void *arg)
{
    (void) parent;
    (void) arg;
    wire_msg_t *hello = wire_msg_new (WIRE_HELLO);
    hello->pid = getpid ();
    if (wire_write (fd, hello))
        _exit (2);
    wire_msg_destroy (&hello);
    char err[256];
    wire_msg_t *job;
    while ((job = wire_read (fd, err, sizeof err))) {
        if (!handoff_take (handoff, job->ticket)) {
            wire_msg_destroy (&job);
            continue;
        }
        wire_msg_t *outcome = wire_msg_new (WIRE_OUTCOME);
        outcome->ticket = job->ticket;
        wire_msg_set_bytes (&outcome->value, &outcome->value_size, job->msgid,
                            strlen (job->msgid));
        if (wire_write (fd, outcome))
            _exit (2);
        wire_msg_destroy (&outcome);
        wire_msg_destroy (&job);
    }
    _exit (0);
}

typedef struct {
    int count;
    int last_status;
    pid_t last_pid;
} s_reaped_t;

static void
s_on_reaped (pool_worker_t *worker, int status, const struct rusage *usage, void *arg)
{
    (void) usage;
    s_reaped_t *reaped = arg;
    reaped->count++;
    reaped->last_status = status;
    reaped->last_pid = worker->pid;
}

static void
s_count_visit (pid_t pid, uint64_t jobs, void *arg)
{
    (void) pid;
    *(uint64_t *) arg += jobs;
}

//  Receives one message from worker, waiting up to 5 s.
static wire_msg_t *
s_recv_wait (pool_t *pool, pool_worker_t *worker)
{
    char err[256];
    for (int i = 0; i < 500; i++) {
        wire_msg_t *msg = NULL;
        int rc = pool_recv (pool, worker, &msg, err, sizeof err);
        if (rc == 1)
            return msg;
        if (rc < 0)
            return NULL;
        zclock_sleep (10);
    }
    return NULL;
}

//  Reaps until count workers were reaped, waiting up to 5 s.
static void
s_reap_wait (pool_t *pool, s_reaped_t *reaped, int count)
{
    for (int i = 0; i < 500 && reaped->count < count; i++) {
        pool_reap (pool, s_on_reaped, reaped);
        if (reaped->count < count)
            zclock_sleep (10);
    }
}

void
pool_test (bool verbose)
{
    if (verbose)
        printf (" * pool: ");
    pool_t *pool = pool_new (s_echo_child, NULL);
    REQUIRE (pool);
    pool_worker_t *a = pool_spawn (pool);
    pool_worker_t *b = pool_spawn (pool);
    REQUIRE (a && b && a->pid != b->pid);
    REQUIRE (pool_size (pool) == 2 && pool_count (pool, POOL_STARTING) == 2);
    REQUIRE (pool_lookup (pool, b->pid) == b && pool_lookup_fd (pool, a->fd) == a);
    REQUIRE (getpgid (a->pid) == a->pid || errno == ESRCH);
    REQUIRE (pool_idle (pool) == NULL);

    wire_msg_t *msg = s_recv_wait (pool, a);
    REQUIRE (msg && msg->type == WIRE_HELLO && msg->pid == a->pid);
    wire_msg_destroy (&msg);
    a->state = POOL_IDLE;
    REQUIRE (pool_idle (pool) == a);

    //  A job round trip.
    wire_msg_t *job = wire_msg_new (WIRE_JOB);
    job->msgid = strdup ("job-7");
    job->queue = strdup ("q");
    wire_msg_set_bytes (&job->payload, &job->payload_size, "\xc0", 1);
    int token = 0;
    REQUIRE (pool_send_job (pool, a, job, &token) == 0);
    wire_msg_destroy (&job);
    REQUIRE (a->state == POOL_BUSY && a->job == &token);
    msg = s_recv_wait (pool, a);
    REQUIRE (msg && msg->type == WIRE_OUTCOME);
    REQUIRE (msg->value_size == 5 && memcmp (msg->value, "job-7", 5) == 0);
    REQUIRE (msg->ticket == 0);
    wire_msg_destroy (&msg);
    pool_job_done (pool, a, 0);
    REQUIRE (a->state == POOL_IDLE && a->jobs_done == 1 && a->job == NULL);

    //  Pipelined: while the worker is stopped, one job becomes its current
    //  one and two queue behind it; the two are taken back (the worker
    //  cannot have taken them), the current one is not (with_head false).
    //  Resumed, the worker runs the current one only; the next job it gets
    //  has the next ticket.
    REQUIRE (pool_may_queue (a) == false);  // idle: not a queue
    REQUIRE (kill (a->pid, SIGSTOP) == 0);
    int tokens[4] = { 0 };
    const char *ids[4] = { "p-0", "p-1", "p-2", "p-3" };
    for (int i = 0; i < 3; i++) {
        job = wire_msg_new (WIRE_JOB);
        job->msgid = strdup (ids[i]);
        job->queue = strdup ("q");
        wire_msg_set_bytes (&job->payload, &job->payload_size, "\xc0", 1);
        REQUIRE (i == 0 || pool_may_queue (a));
        REQUIRE (pool_send_job (pool, a, job, &tokens[i]) == 0);
        REQUIRE (job->ticket == (uint32_t) (1 + i));
        wire_msg_destroy (&job);
    }
    REQUIRE (a->job == &tokens[0] && a->queued_count == 2 && a->queued[1] == &tokens[2]);
    void *back[POOL_QUEUE_MAX + 1];
    REQUIRE (pool_retract (pool, a, false, back) == 2);
    REQUIRE (back[0] == &tokens[1] && back[1] == &tokens[2]);
    REQUIRE (a->queued_count == 0 && a->job == &tokens[0] && !pool_may_queue (a));
    REQUIRE (kill (a->pid, SIGCONT) == 0);
    msg = s_recv_wait (pool, a);
    REQUIRE (msg && msg->type == WIRE_OUTCOME && msg->ticket == 1);
    REQUIRE (msg->value_size == 3 && memcmp (msg->value, "p-0", 3) == 0);
    wire_msg_destroy (&msg);
    pool_job_done (pool, a, 1);
    REQUIRE (a->state == POOL_IDLE && a->unread_from == 2 && !a->queue_closed);
    job = wire_msg_new (WIRE_JOB);
    job->msgid = strdup (ids[3]);
    job->queue = strdup ("q");
    wire_msg_set_bytes (&job->payload, &job->payload_size, "\xc0", 1);
    REQUIRE (pool_send_job (pool, a, job, &tokens[3]) == 0);
    wire_msg_destroy (&job);
    msg = s_recv_wait (pool, a);
    REQUIRE (msg && msg->type == WIRE_OUTCOME && msg->ticket == 4);
    REQUIRE (msg->value_size == 3 && memcmp (msg->value, "p-3", 3) == 0);
    wire_msg_destroy (&msg);
    pool_job_done (pool, a, 4);
    REQUIRE (a->state == POOL_IDLE && a->jobs_done == 3);

    //  Closing the pipe makes the worker exit 0; it is reaped and stays in
    //  the distribution.
    pid_t a_pid = a->pid;
    pool_close (pool, a);
    REQUIRE (a->state == POOL_GONE && pool_live (pool) == 1);
    s_reaped_t reaped = { 0 };
    s_reap_wait (pool, &reaped, 1);
    REQUIRE (reaped.count == 1 && reaped.last_pid == a_pid);
    REQUIRE (TESTUTIL_CLEAN_EXIT (reaped.last_status));
    REQUIRE (pool_size (pool) == 1 && pool_lookup (pool, a_pid) == NULL);
    uint64_t total = 0;
    pool_distribution (pool, s_count_visit, &total);
    REQUIRE (total == 3);

    //  Killing the group is seen as a signal death.
    pid_t b_pid = b->pid;
    REQUIRE (pool_kill (pool, b, SIGKILL) == 0);
    s_reap_wait (pool, &reaped, 2);
    REQUIRE (reaped.count == 2 && reaped.last_pid == b_pid);
    REQUIRE (WIFSIGNALED (reaped.last_status)
             && WTERMSIG (reaped.last_status) == SIGKILL);
    REQUIRE (pool_size (pool) == 0);

    //  The generation follows the child argument.
    uint64_t generation = pool_generation (pool);
    pool_set_child_arg (pool, &token);
    REQUIRE (pool_generation (pool) == generation + 1);
    pool_worker_t *c = pool_spawn (pool);
    REQUIRE (c && c->generation == generation + 1);
    REQUIRE (pool_first (pool) == c && pool_next (pool) == NULL);
    REQUIRE (strcmp (pool_state_name (POOL_BUSY), "busy") == 0);

    //  Destroy kills and reaps what is left.
    pool_destroy (&pool);
    REQUIRE (pool == NULL);
    if (verbose)
        printf ("OK\n");
}
