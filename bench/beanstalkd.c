/*  beanstalkd — scenario 8's peer: a real beanstalkd, driven by a small
    client of ours that speaks its text protocol (protocol.txt in the
    beanstalkd package: use, watch, ignore, put, reserve, delete,
    stats-tube) over TCP loopback.

    The benchmark starts `beanstalkd -l 127.0.0.1 -p PORT` (found in PATH or
    named by $EMQ_BENCH_BEANSTALKD) in three modes, each with its own temp
    dir under the benchmark's: in memory (no -b), with a binlog (-b DIR:
    beanstalkd's default, an fsync at most every 50 ms) and with -b DIR -f0
    (an fsync on every binlog write). Against each runs the workload emq
    runs: one producer in this process, two worker processes (this program
    again, `--child beanstalkd-worker ...`) that reserve and delete no-op
    jobs, 64-byte bodies, a fixed number of jobs.

    Throughput: the producer pipelines puts, batched into one write per
    turn, and keeps at most `inflight` jobs put but not yet deleted — the
    pipelined emq client keeps as many submitted without a RESULT. The
    workers count their deletions in a shared page (a file in the temp dir
    that all of them map): the producer reads it to hold that bound and to
    learn when the last job was deleted, without any traffic through
    beanstalkd. A worker answers each job with one write ("delete ID" and
    the next "reserve").

    Round trip, in memory (a driver, bench_rtt_t, that scenario 8 samples
    in alternation with emq's and the LB broker's): one job at a time. The producer puts a job and
    asks for a reply ("reserve-with-timeout" on a reply tube it watches) in
    one write; a worker reserves the job, deletes it and puts a small reply
    into the reply tube, again in one write; the sample ends when the
    producer has the reply. It deletes the reply after the sample. That is
    emq's submit -> RESULT: the client learns the job is done.

    Every wait has a deadline; every process started here is stopped by pid
    before the function that started it returns, and dies with the
    benchmark if that goes first (PR_SET_PDEATHSIG).
*/
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BODY_SIZE 64  // job bodies, as emq's 64-byte payloads
#define IN_MAX 65536  // receive buffer of a connection
#define TUBE "bench"
#define RT_TUBE "rt"              // round trip: jobs ...
#define RT_REPLY_TUBE "rt-reply"  // ... and their replies
#define WORKERS 2
#define STALL_US 10000000LL         // a run with no progress this long has stalled
#define WORKER_IDLE_US 600000000LL  // a worker left waiting this long gives up

//  ---------------------------------------------------------------------
//  A connection: a non-blocking TCP socket with a receive buffer and a
//  send buffer. Lines returned point into the receive buffer and stay
//  valid until the next s_conn_read.

typedef struct {
    int fd;
    char in[IN_MAX + 1];  // received: in[head..tail) not consumed yet
    size_t head, tail;
    char *out;  // to send: out[0..out_len)
    size_t out_len, out_cap;
} s_conn_t;

static void
s_conn_destroy (s_conn_t **self_p)
{
    if (!*self_p)
        return;
    s_conn_t *self = *self_p;
    if (self->fd >= 0)
        close (self->fd);
    free (self->out);
    free (self);
    *self_p = NULL;
}

//  Connects to 127.0.0.1:port, retrying until timeout_ms has passed (the
//  server may still be starting); quiet: says nothing when it cannot.
//  Returns a connection the caller owns, or NULL.
static s_conn_t *
s_conn_new (int port, int timeout_ms, bool quiet)
{
    s_conn_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = -1;
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    int64_t deadline = bench_now_us () + (int64_t) timeout_ms * 1000;
    while (true) {
        self->fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (self->fd < 0) {
            fprintf (stderr, "emq-bench: beanstalkd: socket: %s\n", strerror (errno));
            break;
        }
        if (connect (self->fd, (struct sockaddr *) &addr, sizeof addr) == 0) {
            //  Small commands must not wait for Nagle.
            int one = 1;
            if (setsockopt (self->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)
                || fcntl (self->fd, F_SETFL, fcntl (self->fd, F_GETFL) | O_NONBLOCK)) {
                fprintf (stderr, "emq-bench: beanstalkd: socket options: %s\n",
                         strerror (errno));
                break;
            }
            return self;
        }
        int error = errno;
        close (self->fd);
        self->fd = -1;
        if (bench_now_us () >= deadline) {
            if (!quiet)
                fprintf (stderr, "emq-bench: beanstalkd: connect 127.0.0.1:%d: %s\n",
                         port, strerror (error));
            break;
        }
        bench_sleep_ms (20);
    }
    s_conn_destroy (&self);
    return NULL;
}

//  Milliseconds left until deadline_us, at least 0.
static int
s_left_ms (int64_t deadline_us)
{
    int64_t left = (deadline_us - bench_now_us () + 999) / 1000;
    return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int) left;
}

//  Appends to the send buffer. Returns 0 or -1 (no memory).
static int
s_conn_append (s_conn_t *self, const void *data, size_t size)
{
    if (self->out_len + size > self->out_cap) {
        size_t cap = self->out_cap ? self->out_cap * 2 : 65536;
        while (cap < self->out_len + size)
            cap *= 2;
        char *out = realloc (self->out, cap);
        if (!out)
            return -1;
        self->out = out;
        self->out_cap = cap;
    }
    memcpy (self->out + self->out_len, data, size);
    self->out_len += size;
    return 0;
}

static int s_conn_printf (s_conn_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_conn_printf (s_conn_t *self, const char *format, ...)
{
    char line[256];
    va_list args;
    va_start (args, format);
    int len = vsnprintf (line, sizeof line, format, args);
    va_end (args);
    if (len < 0 || (size_t) len >= sizeof line)
        return -1;
    return s_conn_append (self, line, (size_t) len);
}

//  Appends a put of body (size bytes) to the send buffer.
static int
s_conn_put (s_conn_t *self, const char *body, size_t size)
{
    if (s_conn_printf (self, "put 0 0 60 %zu\r\n", size)
        || s_conn_append (self, body, size) || s_conn_append (self, "\r\n", 2))
        return -1;
    return 0;
}

//  Sends the whole send buffer by deadline_us. Returns 0 or -1.
static int
s_conn_flush (s_conn_t *self, int64_t deadline_us)
{
    size_t sent = 0;
    while (sent < self->out_len) {
        ssize_t n = send (self->fd, self->out + sent, self->out_len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            fprintf (stderr, "emq-bench: beanstalkd: send: %s\n", strerror (errno));
            return -1;
        }
        struct pollfd item = { self->fd, POLLOUT, 0 };
        int rc = poll (&item, 1, s_left_ms (deadline_us));
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc == 0) {
            fprintf (stderr, "emq-bench: beanstalkd: send blocked past its deadline\n");
            return -1;
        }
    }
    self->out_len = 0;
    return 0;
}

//  Waits up to timeout_ms for data and reads what there is. Returns the
//  bytes read, 0 when nothing came, -1 on error or when the peer closed.
static int
s_conn_read (s_conn_t *self, int timeout_ms)
{
    if (self->head > 0) {
        memmove (self->in, self->in + self->head, self->tail - self->head);
        self->tail -= self->head;
        self->head = 0;
    }
    if (self->tail >= IN_MAX) {
        fprintf (stderr, "emq-bench: beanstalkd: a reply longer than %d bytes\n", IN_MAX);
        return -1;
    }
    struct pollfd item = { self->fd, POLLIN, 0 };
    int rc = poll (&item, 1, timeout_ms);
    if (rc < 0)
        return errno == EINTR ? 0 : -1;
    if (rc == 0)
        return 0;
    ssize_t n = recv (self->fd, self->in + self->tail, IN_MAX - self->tail, 0);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    self->tail += (size_t) n;
    return (int) n;
}

//  The next whole line already received (without its CRLF, NUL-ended),
//  or NULL.
static char *
s_conn_line (s_conn_t *self)
{
    char *start = self->in + self->head;
    char *eol = memchr (start, '\n', self->tail - self->head);
    if (!eol)
        return NULL;
    self->head = (size_t) (eol + 1 - self->in);
    if (eol > start && eol[-1] == '\r')
        eol--;
    *eol = 0;
    return start;
}

//  The next line, waiting for it until deadline_us; NULL on timeout or
//  error.
static char *
s_conn_wait_line (s_conn_t *self, int64_t deadline_us)
{
    while (true) {
        char *line = s_conn_line (self);
        if (line)
            return line;
        if (bench_now_us () >= deadline_us)
            return NULL;
        if (s_conn_read (self, s_left_ms (deadline_us)) < 0)
            return NULL;
    }
}

//  Consumes a data chunk of `bytes` bytes and its CRLF, waiting for it
//  until deadline_us. Returns the chunk (NUL-ended in place) or NULL.
static char *
s_conn_chunk (s_conn_t *self, size_t bytes, int64_t deadline_us)
{
    if (bytes + 2 > IN_MAX)
        return NULL;
    while (self->tail - self->head < bytes + 2) {
        if (bench_now_us () >= deadline_us
            || s_conn_read (self, s_left_ms (deadline_us)) < 0)
            return NULL;
    }
    char *chunk = self->in + self->head;
    if (chunk[bytes] != '\r' || chunk[bytes + 1] != '\n')
        return NULL;
    chunk[bytes] = 0;
    self->head += bytes + 2;
    return chunk;
}

//  Strict unsigned decimal (beanstalkd's own read_u64 is as strict): the
//  number at *text, which must end at a space or the end; *text moves past
//  it. Returns 0 or -1.
static int
s_parse_u64 (const char **text, uint64_t *value)
{
    const char *c = *text;
    if (*c < '0' || *c > '9')
        return -1;
    uint64_t v = 0;
    for (; *c >= '0' && *c <= '9'; c++) {
        if (v > (UINT64_MAX - (uint64_t) (*c - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t) (*c - '0');
    }
    if (*c && *c != ' ')
        return -1;
    *value = v;
    *text = *c ? c + 1 : c;
    return 0;
}

//  Parses "RESERVED <id> <bytes>". Returns 0 or -1.
static int
s_parse_reserved (const char *line, uint64_t *id, uint64_t *bytes)
{
    if (strncmp (line, "RESERVED ", 9) != 0)
        return -1;
    const char *c = line + 9;
    if (s_parse_u64 (&c, id) || s_parse_u64 (&c, bytes) || *c)
        return -1;
    return 0;
}

//  Shows up to 60 characters of a reply in a message, unprintable bytes
//  replaced.
static const char *
s_show (const char *line, char *buf, size_t size)
{
    size_t i = 0;
    for (; line && line[i] && i < 60 && i + 1 < size; i++)
        buf[i] = line[i] >= 32 && line[i] < 127 ? line[i] : '?';
    buf[i] = 0;
    return line ? buf : "(none: timeout or connection closed)";
}

//  Sends one command line and waits for its one-line reply, which must
//  start with `expect`. Returns 0 or -1 (says what came instead).
static int
s_command (s_conn_t *self, const char *command, const char *expect, int64_t deadline_us)
{
    if (s_conn_printf (self, "%s\r\n", command) || s_conn_flush (self, deadline_us))
        return -1;
    char *line = s_conn_wait_line (self, deadline_us);
    if (line && strncmp (line, expect, strlen (expect)) == 0)
        return 0;
    char shown[64];
    fprintf (stderr, "emq-bench: beanstalkd: '%s': expected %s, got %s\n", command,
             expect, s_show (line, shown, sizeof shown));
    return -1;
}

//  Asks `command` (stats or stats-tube TUBE) and finds `key: N` in the
//  YAML it answers. Returns 0 or -1.
static int
s_stat (s_conn_t *self, const char *command, const char *key, uint64_t *value,
        int64_t deadline_us)
{
    if (s_conn_printf (self, "%s\r\n", command) || s_conn_flush (self, deadline_us))
        return -1;
    char *line = s_conn_wait_line (self, deadline_us);
    uint64_t bytes;
    const char *c = line && strncmp (line, "OK ", 3) == 0 ? line + 3 : NULL;
    if (!c || s_parse_u64 (&c, &bytes) || *c)
        return -1;
    char *yaml = s_conn_chunk (self, (size_t) bytes, deadline_us);
    if (!yaml)
        return -1;
    size_t key_len = strlen (key);
    for (char *at = yaml; (at = strstr (at, key)) != NULL; at += key_len) {
        if ((at == yaml || at[-1] == '\n') && at[key_len] == ':'
            && at[key_len + 1] == ' ') {
            const char *number = at + key_len + 2;
            char *end;
            errno = 0;
            unsigned long long v = strtoull (number, &end, 10);
            if (errno || end == number || (*end && *end != '\n'))
                return -1;
            *value = v;
            return 0;
        }
    }
    return -1;
}

//  ---------------------------------------------------------------------
//  What the workers share with the producer: a page of a file in the temp
//  dir, mapped by every process of a run. Only atomics are in it.

typedef struct {
    atomic_long deleted;   // jobs the workers have deleted (DELETED seen)
    atomic_long errors;    // replies a worker did not expect
    atomic_llong last_us;  // bench_now_us of the latest DELETED
} s_shared_t;

//  Maps path (created, sized and zeroed when create). Returns the mapping
//  or NULL.
static s_shared_t *
s_shared_map (const char *path, bool create)
{
    int fd = open (
        path, create ? O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf (stderr, "emq-bench: open %s: %s\n", path, strerror (errno));
        return NULL;
    }
    if (create && ftruncate (fd, (off_t) sizeof (s_shared_t))) {
        fprintf (stderr, "emq-bench: ftruncate %s: %s\n", path, strerror (errno));
        close (fd);
        return NULL;
    }
    void *map =
        mmap (NULL, sizeof (s_shared_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close (fd);
    if (map == MAP_FAILED) {
        fprintf (stderr, "emq-bench: mmap %s: %s\n", path, strerror (errno));
        return NULL;
    }
    return (s_shared_t *) map;
}

static void
s_shared_unmap (s_shared_t **shared_p)
{
    if (*shared_p)
        munmap (*shared_p, sizeof (s_shared_t));
    *shared_p = NULL;
}

//  ---------------------------------------------------------------------
//  The worker child: argv = beanstalkd-worker PORT TUBE REPLY_TUBE|- SHARED.
//  Reserves from TUBE; for each job sends, in one write, "delete ID", with
//  a reply tube a put of a small reply into it, and the next "reserve".

int
bench_beanstalkd_child (int argc, char **argv)
{
    if (argc != 5 || strcmp (argv[0], "beanstalkd-worker") != 0) {
        fprintf (stderr, "emq-bench: beanstalkd-worker PORT TUBE REPLY_TUBE|- SHARED\n");
        return 2;
    }
    int port = atoi (argv[1]);
    const char *tube = argv[2];
    const char *reply_tube = strcmp (argv[3], "-") == 0 ? NULL : argv[3];
    s_shared_t *shared = s_shared_map (argv[4], false);
    s_conn_t *conn = shared ? s_conn_new (port, 10000, false) : NULL;
    if (!conn) {
        s_shared_unmap (&shared);
        return 1;
    }
    char command[256];
    int64_t deadline = bench_now_us () + 10000000;
    snprintf (command, sizeof command, "watch %s", tube);
    int rc = s_command (conn, command, "WATCHING", deadline)
             || s_command (conn, "ignore default", "WATCHING", deadline);
    if (!rc && reply_tube) {
        snprintf (command, sizeof command, "use %s", reply_tube);
        rc = s_command (conn, command, "USING", deadline);
    }
    if (!rc)
        rc = s_conn_printf (conn, "reserve\r\n") || s_conn_flush (conn, deadline);
    while (!rc) {
        //  The benchmark stops us with SIGTERM; this bound only keeps a
        //  forgotten worker from waiting forever.
        deadline = bench_now_us () + WORKER_IDLE_US;
        char *line = s_conn_wait_line (conn, deadline);
        uint64_t id, bytes;
        if (!line || s_parse_reserved (line, &id, &bytes)
            || !s_conn_chunk (conn, (size_t) bytes, deadline)) {
            char shown[64];
            fprintf (stderr, "emq-bench: beanstalkd-worker: expected RESERVED, got %s\n",
                     s_show (line, shown, sizeof shown));
            atomic_fetch_add (&shared->errors, 1);
            break;
        }
        //  The job is a no-op: done at once.
        rc = s_conn_printf (conn, "delete %llu\r\n", (unsigned long long) id);
        if (!rc && reply_tube)
            rc = s_conn_put (conn, "done", 4);
        if (!rc)
            rc = s_conn_printf (conn, "reserve\r\n") || s_conn_flush (conn, deadline);
        line = rc ? NULL : s_conn_wait_line (conn, deadline);
        if (!line || strcmp (line, "DELETED") != 0) {
            //  Out of step with the server: nothing after this is reliable.
            char shown[64];
            fprintf (stderr, "emq-bench: beanstalkd-worker: expected DELETED, got %s\n",
                     s_show (line, shown, sizeof shown));
            atomic_fetch_add (&shared->errors, 1);
            break;
        }
        atomic_fetch_add (&shared->deleted, 1);
        long long now = (long long) bench_now_us ();
        long long last = atomic_load (&shared->last_us);
        while (last < now && !atomic_compare_exchange_weak (&shared->last_us, &last, now))
            ;
        if (reply_tube) {
            line = s_conn_wait_line (conn, deadline);
            if (!line || strncmp (line, "INSERTED ", 9) != 0) {
                atomic_fetch_add (&shared->errors, 1);
                break;
            }
        }
    }
    s_conn_destroy (&conn);
    s_shared_unmap (&shared);
    return 1;
}

//  ---------------------------------------------------------------------
//  The server

typedef struct {
    pid_t pid;         // our child: beanstalkd, or its wrapper
    pid_t server_pid;  // beanstalkd itself (its stats say), or 0
    int port;
    char dir[1200];  // this mode's own temp dir
    char tag[64];    // its log: bench.dir/<tag>.log
} s_server_t;

//  beanstalkd's path: $EMQ_BENCH_BEANSTALKD, else the first in PATH (then
//  /usr/sbin and /usr/bin, which a non-root PATH may lack). Returns 0 or -1.
static int
s_find (char *path, size_t size)
{
    const char *given = getenv ("EMQ_BENCH_BEANSTALKD");
    if (given && *given) {
        snprintf (path, size, "%s", given);
        return access (path, X_OK);
    }
    char dirs[4096];
    snprintf (dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin",
              getenv ("PATH") ? getenv ("PATH") : "");
    char *save = NULL;
    for (char *dir = strtok_r (dirs, ":", &save); dir;
         dir = strtok_r (NULL, ":", &save)) {
        if (!*dir)
            continue;
        snprintf (path, size, "%s/beanstalkd", dir);
        if (access (path, X_OK) == 0)
            return 0;
    }
    return -1;
}

static void
s_server_stop (s_server_t *server)
{
    bench_stop (server->pid, 3000);
    //  A wrapper (strace -f, perf) may leave beanstalkd running: not our
    //  child, so it cannot be reaped here, only signalled until it is gone.
    if (server->server_pid > 0 && server->server_pid != server->pid
        && kill (server->server_pid, SIGTERM) == 0) {
        int64_t deadline = bench_now_us () + 3000000;
        while (kill (server->server_pid, 0) == 0 && bench_now_us () < deadline)
            bench_sleep_ms (10);
        kill (server->server_pid, SIGKILL);
    }
    server->pid = server->server_pid = 0;
}

//  How a server keeps its jobs.
typedef enum {
    S_IN_MEMORY,    // no -b
    S_BINLOG,       // -b DIR: fsync at most every 50 ms
    S_BINLOG_FSYNC  // -b DIR -f0: fsync on every write
} s_mode_t;

//  Starts beanstalkd at path in `mode`, named `name` (its dir and log),
//  and waits until it answers stats with its own pid (so the port is
//  really ours). Up to 3 tries with other ports. Returns 0 or -1.
static int
s_server_start (s_server_t *server, const char *path, const char *name, s_mode_t mode)
{
    memset (server, 0, sizeof *server);
    snprintf (server->dir, sizeof server->dir, "%s/beanstalkd-%s-XXXXXX", bench.dir,
              name);
    if (!mkdtemp (server->dir)) {
        fprintf (stderr, "emq-bench: mkdtemp %s: %s\n", server->dir, strerror (errno));
        return -1;
    }
    char binlog[1300];
    snprintf (binlog, sizeof binlog, "%s/binlog", server->dir);
    if (mode != S_IN_MEMORY && mkdir (binlog, 0700)) {
        fprintf (stderr, "emq-bench: mkdir %s: %s\n", binlog, strerror (errno));
        return -1;
    }
    snprintf (server->tag, sizeof server->tag, "beanstalkd-%s", name);
    for (int attempt = 0; attempt < 3; attempt++) {
        server->port = bench_free_port ();
        if (server->port < 0)
            return -1;
        char port[16];
        snprintf (port, sizeof port, "%d", server->port);
        const char *args[10] = { "-l", "127.0.0.1", "-p", port };
        size_t argc = 4;
        if (mode != S_IN_MEMORY) {
            args[argc++] = "-b";
            args[argc++] = binlog;
        }
        if (mode == S_BINLOG_FSYNC)
            args[argc++] = "-f0";
        args[argc] = NULL;
        server->pid = bench_spawn_path (server->tag, path, args);
        if (server->pid < 0)
            return -1;
        int64_t deadline = bench_now_us () + 10000000;
        while (bench_now_us () < deadline) {
            int status;
            if (waitpid (server->pid, &status, WNOHANG) == server->pid) {
                server->pid = 0;
                break;  // the port was taken: try another
            }
            s_conn_t *conn = s_conn_new (server->port, 0, true);
            uint64_t pid = 0;
            int rc = conn ? s_stat (conn, "stats", "pid", &pid, bench_now_us () + 2000000)
                          : -1;
            s_conn_destroy (&conn);
            //  Ours, or the child of our wrapper (EMQ_BENCH_WRAP_BEANSTALKD_*).
            if (rc == 0
                && (pid == (uint64_t) server->pid
                    || bench_parent_of ((pid_t) pid) == server->pid)) {
                server->server_pid = (pid_t) pid;
                return 0;
            }
            bench_sleep_ms (20);
        }
        if (server->pid > 0) {
            fprintf (stderr, "emq-bench: %s did not answer on port %d in 10 s\n", path,
                     server->port);
            s_server_stop (server);
            return -1;
        }
    }
    fprintf (stderr, "emq-bench: %s exited at start three times (see %s/%s.log)\n", path,
             bench.dir, server->tag);
    return -1;
}

//  ---------------------------------------------------------------------
//  A run: the server's two workers and the producer's connection.

typedef struct {
    s_shared_t *shared;
    pid_t workers[WORKERS];
    s_conn_t *conn;  // the producer's
} s_rig_t;

static void
s_rig_stop (s_rig_t *rig)
{
    for (int i = 0; i < WORKERS; i++) {
        bench_stop (rig->workers[i], 1000);
        rig->workers[i] = 0;
    }
    s_conn_destroy (&rig->conn);
    s_shared_unmap (&rig->shared);
}

//  Starts the workers on `tube` (replying into reply_tube unless NULL),
//  connects the producer, which uses `use` and watches reply_tube, and
//  waits until both workers are waiting on a reserve. Returns 0 or -1.
static int
s_rig_start (s_rig_t *rig, const s_server_t *server, const char *tube,
             const char *reply_tube)
{
    memset (rig, 0, sizeof *rig);
    char shared_path[1300], port[16];
    snprintf (shared_path, sizeof shared_path, "%s/shared", server->dir);
    snprintf (port, sizeof port, "%d", server->port);
    rig->shared = s_shared_map (shared_path, true);
    if (!rig->shared)
        return -1;
    const char *args[] = { "--child", "beanstalkd-worker",           port,
                           tube,      reply_tube ? reply_tube : "-", shared_path,
                           NULL };
    for (int i = 0; i < WORKERS; i++)
        if ((rig->workers[i] = bench_spawn_self ("beanstalkd-worker", args)) < 0)
            return -1;
    rig->conn = s_conn_new (server->port, 5000, false);
    if (!rig->conn)
        return -1;
    int64_t deadline = bench_now_us () + 10000000;
    char command[256];
    snprintf (command, sizeof command, "use %s", tube);
    if (s_command (rig->conn, command, "USING", deadline))
        return -1;
    if (reply_tube) {
        snprintf (command, sizeof command, "watch %s", reply_tube);
        if (s_command (rig->conn, command, "WATCHING", deadline)
            || s_command (rig->conn, "ignore default", "WATCHING", deadline))
            return -1;
    }
    snprintf (command, sizeof command, "stats-tube %s", tube);
    while (bench_now_us () < deadline) {
        uint64_t waiting = 0;
        if (s_stat (rig->conn, command, "current-waiting", &waiting, deadline) == 0
            && waiting >= WORKERS)
            return 0;
        bench_sleep_ms (20);
    }
    fprintf (
        stderr,
        "emq-bench: beanstalkd workers did not start (see %s/beanstalkd-worker.log)\n",
        bench.dir);
    return -1;
}

//  What a pipelined run saw.
typedef struct {
    long put;            // puts sent
    long inserted;       // INSERTED replies
    long deleted;        // deletions the workers counted
    long errors;         // other replies, to the producer or the workers
    int64_t elapsed_us;  // first put to the last deletion
    bool stalled;
} s_run_t;

//  Pipelines `total` puts (fewer if cap_us passes first) keeping at most
//  bench.inflight jobs put and not deleted, and waits until all are
//  deleted. Returns 0, or -1 on a connection error.
static int
s_pipeline (s_rig_t *rig, long total, int64_t cap_us, s_run_t *run)
{
    memset (run, 0, sizeof *run);
    char body[BODY_SIZE];
    memset (body, 'x', sizeof body);
    long base = atomic_load (&rig->shared->deleted);
    long errors_base = atomic_load (&rig->shared->errors);
    int64_t start = bench_now_us (), stop_at = start + cap_us, progress_at = start;
    while (true) {
        long deleted = atomic_load (&rig->shared->deleted) - base;
        bool queued = false;
        while (run->put < total && run->put - deleted < bench.inflight) {
            if (s_conn_put (rig->conn, body, sizeof body))
                return -1;
            run->put++;
            queued = true;
            if ((run->put & 255) == 0 && bench_now_us () > stop_at)
                total = run->put;
        }
        if (queued && s_conn_flush (rig->conn, bench_now_us () + STALL_US))
            return -1;
        if (run->put >= total && run->inserted + run->errors >= run->put
            && deleted >= run->put)
            break;
        //  1 ms: the workers' deletions show in the shared page, not here.
        int n = s_conn_read (rig->conn, 1);
        if (n < 0) {
            fprintf (stderr, "emq-bench: beanstalkd: connection lost\n");
            return -1;
        }
        char *line;
        while ((line = s_conn_line (rig->conn)) != NULL) {
            if (strncmp (line, "INSERTED ", 9) == 0)
                run->inserted++;
            else {
                char shown[64];
                if (run->errors++ == 0)
                    fprintf (stderr, "emq-bench: beanstalkd: put answered %s\n",
                             s_show (line, shown, sizeof shown));
            }
        }
        int64_t now = bench_now_us ();
        if (n > 0 || atomic_load (&rig->shared->deleted) - base > deleted)
            progress_at = now;
        else if (now - progress_at > STALL_US) {
            fprintf (stderr,
                     "emq-bench: beanstalkd: nothing for 10 s (%ld put, %ld deleted)\n",
                     run->put, deleted);
            run->stalled = true;
            break;
        }
    }
    run->deleted = atomic_load (&rig->shared->deleted) - base;
    run->errors += atomic_load (&rig->shared->errors) - errors_base;
    int64_t last = (int64_t) atomic_load (&rig->shared->last_us);
    run->elapsed_us = (last > start ? last : bench_now_us ()) - start;
    return 0;
}

//  Throughput of one mode; NaN when it could not run. *cpu_per_job (if
//  not NULL): µs of CPU per job of beanstalkd, its workers and the producer.
static double
s_throughput (const char *path, const char *name, s_mode_t mode, const char *what,
              double *cpu_per_job)
{
    char scenario[64];
    snprintf (scenario, sizeof scenario, "8.beanstalkd-%s", name);
    double jps = NAN;
    if (cpu_per_job)
        *cpu_per_job = NAN;
    s_server_t server = { 0 };
    s_rig_t rig;
    memset (&rig, 0, sizeof rig);
    if (s_server_start (&server, path, name, mode)
        || s_rig_start (&rig, &server, TUBE, NULL)) {
        bench_line (scenario, "could not start (see logs in %s)", bench.dir);
        goto done;
    }
    s_run_t run;
    if (s_pipeline (&rig, 2000, 10000000, &run))
        goto done;
    long total = (long) (300000 * bench.scale);
    int64_t cpu_server = bench_cpu_us (server.server_pid);
    int64_t cpu_workers = bench_cpu_us (rig.workers[0]) + bench_cpu_us (rig.workers[1]);
    bench_proc_t procs[3] = {
        { .name = "beanstalkd", .pids = { server.server_pid }, .npids = 1 },
        { .name = "workers", .pids = { rig.workers[0], rig.workers[1] }, .npids = 2 },
        { .name = "producer", .pids = { getpid () }, .npids = 1 },
    };
    for (int i = 0; i < 3; i++)
        bench_proc_begin (&procs[i]);
    bench_proc_settle ();
    int64_t cpu_producer = bench_cpu_us (getpid ());
    if (s_pipeline (&rig, total, (int64_t) (4e6 * bench.scale), &run))
        goto done;
    for (int i = 0; i < 3; i++)
        bench_proc_end (&procs[i], run.deleted);
    cpu_server = bench_cpu_us (server.server_pid) - cpu_server;
    cpu_workers =
        bench_cpu_us (rig.workers[0]) + bench_cpu_us (rig.workers[1]) - cpu_workers;
    cpu_producer = bench_cpu_us (getpid ()) - cpu_producer;
    long jobs = run.deleted;
    if (jobs > 0 && !run.stalled)
        jps = jobs * 1e6 / (double) run.elapsed_us;
    double server_us = jobs ? (double) cpu_server / (double) jobs : NAN;
    double workers_us = jobs ? (double) cpu_workers / (double) jobs : NAN;
    double producer_us = jobs ? (double) cpu_producer / (double) jobs : NAN;
    if (cpu_per_job)
        *cpu_per_job = server_us + workers_us + producer_us;
    bench_figure (scenario, "jobs", (double) jobs, NULL);
    bench_figure (scenario, "throughput", jps, "jobs_per_s");
    bench_figure (scenario, "beanstalkd_cpu_per_job", server_us, "us");
    bench_figure (scenario, "workers_cpu_per_job", workers_us, "us");
    bench_figure (scenario, "producer_cpu_per_job", producer_us, "us");
    bench_figure (scenario, "errors", (double) run.errors, NULL);
    bench_line (scenario,
                "%.0f jobs/s (%s; %ld jobs in %.2f s, %d in flight, %ld errors); "
                "CPU/job: beanstalkd %.1f us, workers %.1f us, producer %.1f us%s",
                jps, what, jobs, run.elapsed_us / 1e6, bench.inflight, run.errors,
                server_us, workers_us, producer_us, run.stalled ? " [STALLED]" : "");
    if (jobs > 0)
        bench_proc_report (scenario, procs, 3);
done:
    s_rig_stop (&rig);
    s_server_stop (&server);
    return jps;
}

//  The round-trip driver: a server in memory, its 2 replying workers, the
//  producer.
typedef struct {
    s_server_t server;
    s_rig_t rig;
} s_rtt_t;

static void
s_rtt_destroy (void **self_p)
{
    s_rtt_t *self = (s_rtt_t *) *self_p;
    if (!self)
        return;
    s_rig_stop (&self->rig);
    s_server_stop (&self->server);
    free (self);
    *self_p = NULL;
}

//  Put and "reserve-with-timeout" on the reply tube in one write; the
//  sample ends when the reply is in. The reply is deleted after.
static double
s_rtt_sample (void *arg)
{
    s_rtt_t *self = (s_rtt_t *) arg;
    s_conn_t *conn = self->rig.conn;
    char body[BODY_SIZE];
    memset (body, 'x', sizeof body);
    int64_t t0 = bench_now_us (), deadline = t0 + 10000000;
    if (s_conn_put (conn, body, sizeof body)
        || s_conn_printf (conn, "reserve-with-timeout 10\r\n")
        || s_conn_flush (conn, deadline))
        return NAN;
    char *line = s_conn_wait_line (conn, deadline), shown[64];
    if (!line || strncmp (line, "INSERTED ", 9) != 0) {
        fprintf (stderr, "emq-bench: beanstalkd: put answered %s\n",
                 s_show (line, shown, sizeof shown));
        return NAN;
    }
    line = s_conn_wait_line (conn, deadline);
    uint64_t id, bytes;
    if (!line || s_parse_reserved (line, &id, &bytes)
        || !s_conn_chunk (conn, (size_t) bytes, deadline)) {
        fprintf (stderr, "emq-bench: beanstalkd: expected the reply, got %s\n",
                 s_show (line, shown, sizeof shown));
        return NAN;
    }
    int64_t t1 = bench_now_us ();
    if (s_conn_printf (conn, "delete %llu\r\n", (unsigned long long) id)
        || s_conn_flush (conn, deadline))
        return NAN;
    line = s_conn_wait_line (conn, deadline);
    if (!line || strcmp (line, "DELETED") != 0)
        return NAN;
    return (double) (t1 - t0);
}

int
bench_beanstalkd_rtt_new (bench_rtt_t *rtt, const char *path)
{
    s_rtt_t *self = calloc (1, sizeof *self);
    if (!self)
        return -1;
    *rtt = (bench_rtt_t){ .name = "beanstalkd",
                          .self = self,
                          .sample = s_rtt_sample,
                          .destroy = s_rtt_destroy };
    if (s_server_start (&self->server, path, "rtt", S_IN_MEMORY)
        || s_rig_start (&self->rig, &self->server, RT_TUBE, RT_REPLY_TUBE)) {
        fprintf (stderr,
                 "emq-bench: beanstalkd round trip could not start (see logs in %s)\n",
                 bench.dir);
        bench_rtt_destroy (rtt);
        return -1;
    }
    return 0;
}

void
bench_beanstalkd (bench_beanstalkd_t *out)
{
    *out = (bench_beanstalkd_t){
        .mem_jps = NAN, .binlog_jps = NAN, .fsync_jps = NAN, .mem_cpu_per_job = NAN
    };
    char *path = out->path;
    if (s_find (path, sizeof out->path)) {
        bench_line ("8.beanstalkd",
                    "beanstalkd not found (%s); its rows are skipped. "
                    "Install it with: sudo apt-get install beanstalkd",
                    getenv ("EMQ_BENCH_BEANSTALKD")
                        ? "$EMQ_BENCH_BEANSTALKD is not executable"
                        : "not in PATH");
        bench_note ("8.beanstalkd", "beanstalkd not installed: skipped");
        return;
    }
    out->installed = true;
    out->mem_jps =
        s_throughput (path, "mem", S_IN_MEMORY, "in memory", &out->mem_cpu_per_job);
    out->binlog_jps =
        s_throughput (path, "binlog", S_BINLOG, "-b, fsync at most every 50 ms", NULL);
    out->fsync_jps = s_throughput (path, "fsync", S_BINLOG_FSYNC,
                                   "-b -f0, fsync on every write", NULL);
}
