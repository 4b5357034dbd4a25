/*  harness — process management and helpers for emq's integration tests.
    See harness.h for the model: one forked child per test, leading its own
    process group, in its own temp directory, with a hard timeout enforced by
    the runner, which kills and reaps everything left behind.
*/
#include "harness.h"
#include "numparse.h"

#include <dirent.h>
#include <glob.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

h_test_t *h_current = NULL;

static char s_build[1024] = "build";  // absolute once h_main ran
static double s_scale = 1.0;
static bool s_keep = false;

//  ---------------------------------------------------------------------
//  Time and checks

int
h_ms (int ms)
{
    return (int) (ms * s_scale);
}

double
h_slowness (void)
{
#if defined(__SANITIZE_ADDRESS__)
    return s_scale > 4 ? s_scale : 4;
#else
    return s_scale;
#endif
}

int
h_count (int n)
{
    int count = (int) (n / h_slowness ());
    return count > 0 ? count : 1;
}

void
h_nap (void)
{
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep (&ts, NULL);
}

void
h_log (h_test_t *t, const char *format, ...)
{
    if (!t || !t->verbose)
        return;
    va_list args;
    va_start (args, format);
    printf ("    [%s +%.3fs] ", t->name, (clock_mono_ms () - t->started_ms) / 1000.0);
    vprintf (format, args);
    printf ("\n");
    fflush (stdout);
    va_end (args);
}

static void s_cleanup (h_test_t *t);

//  Says how each process the test started is doing (for failure reports).
static void
s_report_procs (h_test_t *t)
{
    for (size_t i = 0; i < t->nprocs; i++) {
        h_proc_t *proc = &t->procs[i];
        if (strncmp (proc->tag, "cli-", 4) == 0)
            continue;
        int st;
        if (!proc->reaped && waitpid (proc->pid, &st, WNOHANG) == proc->pid) {
            proc->reaped = true;
            proc->status = st;
        }
        if (!proc->reaped)
            printf ("    process %s (pid %d): running\n", proc->tag, (int) proc->pid);
        else if (WIFEXITED (proc->status))
            printf ("    process %s (pid %d): exited with status %d\n", proc->tag,
                    (int) proc->pid, WEXITSTATUS (proc->status));
        else if (WIFSIGNALED (proc->status))
            printf ("    process %s (pid %d): killed by signal %d (%s)\n", proc->tag,
                    (int) proc->pid, WTERMSIG (proc->status),
                    strsignal (WTERMSIG (proc->status)));
    }
    fflush (stdout);
}

void
h_fail (const char *file, int line, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    printf ("    FAIL %s:%d", file, line);
    if (h_current)
        printf (" (%s +%.3fs)", h_current->name,
                (clock_mono_ms () - h_current->started_ms) / 1000.0);
    printf (": ");
    vprintf (format, args);
    printf ("\n");
    fflush (stdout);
    va_end (args);
    if (h_current) {
        s_report_procs (h_current);
        s_cleanup (h_current);
    }
    //  _exit: do not run czmq's atexit shutdown with sockets still open.
    _exit (1);
}

void
h_fail_check (const char *file, int line, const char *expr, const char *format, ...)
{
    char message[2048];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    h_fail (file, line, "REQUIRE(%s) is false: %s", expr, message);
}

//  ---------------------------------------------------------------------
//  Processes

static h_proc_t *
s_proc_lookup (h_test_t *t, pid_t pid)
{
    for (size_t i = 0; i < t->nprocs; i++)
        if (t->procs[i].pid == pid)
            return &t->procs[i];
    return NULL;
}

pid_t
h_spawn (h_test_t *t, const char *tag, bool wrap, const char *program,
         const char *const *args)
{
    const char *argv[256];
    size_t argc = 0;
    char *wrapper = NULL;
    const char *wrap_env = getenv ("EMQ_TEST_WRAPPER");
    if (wrap && wrap_env && *wrap_env) {
        wrapper = strdup (wrap_env);
        char *save = NULL;
        for (char *word = strtok_r (wrapper, " \t", &save); word && argc < 32;
             word = strtok_r (NULL, " \t", &save))
            argv[argc++] = word;
    }
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/bin/%s", s_build, program);
    argv[argc++] = path;
    for (size_t i = 0; args && args[i] && argc < 254; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    char log_path[PATH_MAX], conf_path[PATH_MAX];
    snprintf (log_path, sizeof log_path, "%s/%s.log", t->dir, tag);
    snprintf (conf_path, sizeof conf_path, "%s/empty.conf", t->dir);
    if (t->verbose) {
        char line[2048] = "";
        for (size_t i = 0; i < argc; i++) {
            strncat (line, argv[i], sizeof line - strlen (line) - 2);
            strncat (line, " ", sizeof line - strlen (line) - 1);
        }
        h_log (t, "start %s: %s", tag, line);
    }
    if (t->nprocs == H_MAX_PROCS)
        h_fail (__FILE__, __LINE__, "too many processes in one test");

    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0)
        h_fail (__FILE__, __LINE__, "fork: %s", strerror (errno));
    if (pid == 0) {
        int fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null_fd = open ("/dev/null", O_RDONLY);
        if (fd < 0 || null_fd < 0)
            _exit (126);
        dup2 (null_fd, 0);
        dup2 (fd, 1);
        dup2 (fd, 2);
        if (chdir (t->dir) != 0)
            _exit (126);
        //  A host's /etc/eventmq.conf must not change what the test runs.
        setenv ("EVENTMQ_CONFIG_FILE", conf_path, 1);
        unsetenv ("EMQ_BROKER_ADDR");
        unsetenv ("EMQ_ADMIN_ADDR");
        signal (SIGPIPE, SIG_DFL);
        execvp (argv[0], (char *const *) argv);
        dprintf (2, "harness: exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    free (wrapper);
    h_proc_t *proc = &t->procs[t->nprocs++];
    memset (proc, 0, sizeof *proc);
    proc->pid = pid;
    snprintf (proc->tag, sizeof proc->tag, "%s", tag);
    return pid;
}

static void
s_heartbeat_args (const char **args, size_t *argc)
{
    args[(*argc)++] = "--heartbeat-interval";
    args[(*argc)++] = "0.2";
    args[(*argc)++] = "--heartbeat-timeout";
    args[(*argc)++] = "0.5";
    args[(*argc)++] = "--heartbeat-liveness";
    args[(*argc)++] = "3";
}

static pid_t
s_router_v (h_test_t *t, const char *tag, const char *admin, bool wait, va_list ap)
{
    if (!admin)
        admin = t->admin;
    const char *args[128];
    size_t argc = 0;
    args[argc++] = "--frontend";
    args[argc++] = t->frontend;
    args[argc++] = "--backend";
    args[argc++] = t->backend;
    args[argc++] = "--admin";
    args[argc++] = admin;
    //  Each test's router keeps its jobs in the test's own directory (a
    //  restarted router finds them there); a later --data-dir or
    //  --in-memory among the caller's arguments wins.
    static char data_dir[H_PATH_MAX + 8];
    snprintf (data_dir, sizeof data_dir, "%s/data", t->dir);
    args[argc++] = "--data-dir";
    args[argc++] = data_dir;
    args[argc++] = "--fsync";
    args[argc++] = "off";
    if (h_store_dsn) {
        args[argc++] = "--store";
        args[argc++] = "postgresql";
        args[argc++] = "--store-dsn";
        args[argc++] = h_store_dsn;
    }
    s_heartbeat_args (args, &argc);
    args[argc++] = "--log-level";
    args[argc++] = t->verbose ? "debug" : "info";
    const char *arg;
    while ((arg = va_arg (ap, const char *)) && argc < 126)
        args[argc++] = arg;
    args[argc] = NULL;
    pid_t pid = h_spawn (t, tag, true, "emq-router", args);
    if (!wait)
        return pid;

    //  Up means: answers STATUS on the admin socket.
    int64_t deadline = clock_mono_ms () + h_ms (10000);
    while (true) {
        json_t *status = h_admin_at (t, admin, "STATUS", h_ms (1000));
        if (status) {
            json_decref (status);
            break;
        }
        if (!h_pid_alive (pid))
            h_fail (__FILE__, __LINE__, "%s exited before answering STATUS", tag);
        if (clock_mono_ms () > deadline)
            h_fail (__FILE__, __LINE__, "%s did not answer STATUS within %d ms", tag,
                    h_ms (10000));
        h_nap ();
    }
    h_log (t, "%s up, pid %d", tag, (int) pid);
    return pid;
}

const char *
h_build_dir (void)
{
    return s_build;
}

pid_t
h_router (h_test_t *t, const char *tag, ...)
{
    va_list ap;
    va_start (ap, tag);
    pid_t pid = s_router_v (t, tag, NULL, true, ap);
    va_end (ap);
    return pid;
}

pid_t
h_router_ex (h_test_t *t, const char *tag, const char *admin, bool wait, ...)
{
    va_list ap;
    va_start (ap, wait);
    pid_t pid = s_router_v (t, tag, admin, wait, ap);
    va_end (ap);
    return pid;
}

pid_t
h_jm (h_test_t *t, const char *name, const char *queues, int concurrent, ...)
{
    char concurrent_s[16], plugin_dir[PATH_MAX];
    snprintf (concurrent_s, sizeof concurrent_s, "%d", concurrent);
    snprintf (plugin_dir, sizeof plugin_dir, "%s/plugins", s_build);
    const char *args[128];
    size_t argc = 0;
    args[argc++] = "--backend-addr";
    args[argc++] = t->backend;
    args[argc++] = "--queues";
    args[argc++] = queues;
    args[argc++] = "--concurrent-jobs";
    args[argc++] = concurrent_s;
    args[argc++] = "--plugin-dir";
    args[argc++] = plugin_dir;
    args[argc++] = "--exec-allow";
    args[argc++] = "/bin/*";
    //  Moving a worker into a cgroup can wait for an RCU grace period, tens
    //  of ms on a loaded machine: the timing tests keep the start-up they
    //  were written for. tests/confinement.c turns cgroups on (a later flag
    //  wins).
    args[argc++] = "--job-cgroup";
    args[argc++] = "off";
    args[argc++] = "--name";
    args[argc++] = name;
    args[argc++] = "--log-level";
    args[argc++] = t->verbose ? "debug" : "info";
    s_heartbeat_args (args, &argc);
    va_list ap;
    va_start (ap, concurrent);
    const char *arg;
    while ((arg = va_arg (ap, const char *)) && argc < 126)
        args[argc++] = arg;
    va_end (ap);
    args[argc] = NULL;
    pid_t pid = h_spawn (t, name, true, "emq-jobmanager", args);
    h_log (t, "jm %s started, pid %d", name, (int) pid);
    return pid;
}

bool
h_proc_wait (h_test_t *t, pid_t pid, int timeout_ms, int *status)
{
    h_proc_t *proc = s_proc_lookup (t, pid);
    if (proc && proc->reaped) {
        if (status)
            *status = proc->status;
        return true;
    }
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (true) {
        int st;
        pid_t rc = waitpid (pid, &st, WNOHANG);
        if (rc == pid) {
            if (proc) {
                proc->reaped = true;
                proc->status = st;
            }
            if (status)
                *status = st;
            return true;
        }
        if (rc < 0 && errno != EINTR)
            return false;  // not our child
        if (clock_mono_ms () >= deadline)
            return false;
        h_nap ();
    }
}

bool
h_pid_alive (pid_t pid)
{
    //  Our own children: reap them if they ended.
    int st;
    pid_t rc = waitpid (pid, &st, WNOHANG);
    if (rc == pid) {
        if (h_current) {
            h_proc_t *proc = s_proc_lookup (h_current, pid);
            if (proc) {
                proc->reaped = true;
                proc->status = st;
            }
        }
        return false;
    }
    if (kill (pid, 0) != 0)
        return false;
    //  Someone else's child (a worker): a zombie is not alive.
    char path[64], buf[512];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    size_t n = fread (buf, 1, sizeof buf - 1, file);
    fclose (file);
    buf[n] = 0;
    char *paren = strrchr (buf, ')');
    if (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'))
        return false;
    return true;
}

size_t
h_children (pid_t pid, pid_t *out, size_t max)
{
    size_t count = 0;
    DIR *dir = opendir ("/proc");
    if (!dir)
        return 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) && count < max) {
        uint64_t child;
        if (numparse_uint (entry->d_name, INT32_MAX, &child) || child == 0)
            continue;
        char path[64], buf[512];
        snprintf (path, sizeof path, "/proc/%" PRIu64 "/stat", child);
        FILE *file = fopen (path, "r");
        if (!file)
            continue;
        size_t n = fread (buf, 1, sizeof buf - 1, file);
        fclose (file);
        buf[n] = 0;
        //  Fields after "pid (comm)": state ppid ...
        char *paren = strrchr (buf, ')');
        char state;
        int ppid;
        if (paren && sscanf (paren + 1, " %c %d", &state, &ppid) == 2 && ppid == pid
            && state != 'Z' && state != 'X')
            out[count++] = (pid_t) child;
    }
    closedir (dir);
    return count;
}

void
h_kill (h_test_t *t, pid_t pid, int sig, bool with_children)
{
    //  The parent first: a job manager that saw its workers die first would
    //  still report their jobs as crashed.
    pid_t children[256];
    size_t count = with_children ? h_children (pid, children, 256) : 0;
    h_log (t, "kill -%d %d", sig, (int) pid);
    if (kill (pid, sig) != 0)
        h_log (t, "kill %d: %s", (int) pid, strerror (errno));
    for (size_t i = 0; i < count; i++) {
        h_log (t, "kill -%d child %d of %d", sig, (int) children[i], (int) pid);
        kill (children[i], sig);
    }
}

static char *
s_slurp (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return strdup ("");
    size_t cap = 4096, size = 0;
    char *buf = malloc (cap);
    size_t n;
    while (buf && (n = fread (buf + size, 1, cap - size - 1, file)) > 0) {
        size += n;
        if (cap - size < 2) {
            cap *= 2;
            buf = realloc (buf, cap);
        }
    }
    fclose (file);
    if (!buf)
        return strdup ("");
    buf[size] = 0;
    return buf;
}

void
h_cli (h_test_t *t, h_cli_t *r, int timeout_ms, ...)
{
    memset (r, 0, sizeof *r);
    int run = ++t->cli_runs;
    char out_path[PATH_MAX], err_path[PATH_MAX], exe[PATH_MAX];
    snprintf (out_path, sizeof out_path, "%s/cli-%d.out", t->dir, run);
    snprintf (err_path, sizeof err_path, "%s/cli-%d.log", t->dir, run);
    snprintf (exe, sizeof exe, "%s/bin/emq-cli", s_build);

    const char *argv[128];
    size_t argc = 0;
    argv[argc++] = exe;
    argv[argc++] = "--addr";
    argv[argc++] = t->frontend;
    argv[argc++] = "--admin-addr";
    argv[argc++] = t->admin;
    va_list ap;
    va_start (ap, timeout_ms);
    const char *arg;
    while ((arg = va_arg (ap, const char *)) && argc < 126)
        argv[argc++] = arg;
    va_end (ap);
    argv[argc] = NULL;
    if (t->verbose) {
        char line[2048] = "";
        for (size_t i = 1; i < argc; i++) {
            strncat (line, argv[i], sizeof line - strlen (line) - 2);
            strncat (line, " ", sizeof line - strlen (line) - 1);
        }
        h_log (t, "emq-cli #%d: %s", run, line);
    }
    int64_t start = clock_mono_ms ();
    fflush (stdout);
    pid_t pid = fork ();
    if (pid < 0)
        h_fail (__FILE__, __LINE__, "fork: %s", strerror (errno));
    if (pid == 0) {
        int out = open (out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open (err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null_fd = open ("/dev/null", O_RDONLY);
        if (out < 0 || err < 0 || null_fd < 0)
            _exit (126);
        dup2 (null_fd, 0);
        dup2 (out, 1);
        dup2 (err, 2);
        if (chdir (t->dir) != 0)
            _exit (126);
        char conf_path[PATH_MAX];
        snprintf (conf_path, sizeof conf_path, "%s/empty.conf", t->dir);
        setenv ("EVENTMQ_CONFIG_FILE", conf_path, 1);
        execv (exe, (char *const *) argv);
        dprintf (2, "harness: exec %s: %s\n", exe, strerror (errno));
        _exit (127);
    }
    h_proc_t *proc = &t->procs[t->nprocs < H_MAX_PROCS ? t->nprocs++ : H_MAX_PROCS - 1];
    memset (proc, 0, sizeof *proc);
    proc->pid = pid;
    snprintf (proc->tag, sizeof proc->tag, "cli-%d", run);

    int status;
    if (h_proc_wait (t, pid, timeout_ms, &status)) {
        if (WIFEXITED (status))
            r->status = WEXITSTATUS (status);
        else
            r->status = 128 + WTERMSIG (status);
    }
    else {
        kill (pid, SIGKILL);
        h_proc_wait (t, pid, 5000, NULL);
        r->status = -1;
    }
    r->elapsed_ms = clock_mono_ms () - start;
    r->out = s_slurp (out_path);
    r->err = s_slurp (err_path);
    h_log (t, "emq-cli #%d: exit %d after %lld ms, stdout '%.200s', stderr '%.300s'", run,
           r->status, (long long) r->elapsed_ms, r->out, h_chomp (r->err));
}

void
h_cli_free (h_cli_t *r)
{
    free (r->out);
    free (r->err);
    r->out = r->err = NULL;
}

size_t
h_log_count (h_test_t *t, const char *tag, const char *needle)
{
    char path[H_PATH_MAX + 80];
    snprintf (path, sizeof path, "%s/%s.log", t->dir, tag);
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t count = 0;
    char *line = NULL;
    size_t size = 0;
    while (getline (&line, &size, file) != -1)
        count += strstr (line, needle) != NULL;
    free (line);
    fclose (file);
    return count;
}

char *
h_chomp (char *s)
{
    size_t n = s ? strlen (s) : 0;
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

//  ---------------------------------------------------------------------
//  Router admin

json_t *
h_admin (h_test_t *t, const char *command)
{
    return h_admin_at (t, t->admin, command, h_ms (1000));
}

json_t *
h_admin_at (h_test_t *t, const char *addr, const char *command, int timeout_ms)
{
    char *reply = NULL;
    int rc = emq_admin (addr, command, timeout_ms, &reply);
    if (rc != 0) {
        free (reply);
        return NULL;
    }
    json_error_t error;
    json_t *json = json_loads (reply, 0, &error);
    if (!json)
        h_log (t, "admin %s: reply is not JSON (%s): %.200s", command, error.text, reply);
    free (reply);
    return json;
}

static json_t *
s_jget_v (json_t *root, va_list ap)
{
    const char *key;
    while (root && (key = va_arg (ap, const char *)))
        root = json_object_get (root, key);
    return root;
}

json_t *
h_jget (json_t *root, ...)
{
    va_list ap;
    va_start (ap, root);
    json_t *value = s_jget_v (root, ap);
    va_end (ap);
    return value;
}

long long
h_jint (json_t *root, long long dflt, ...)
{
    va_list ap;
    va_start (ap, dflt);
    json_t *value = s_jget_v (root, ap);
    va_end (ap);
    if (json_is_integer (value))
        return json_integer_value (value);
    if (json_is_real (value))
        return (long long) json_real_value (value);
    return dflt;
}

json_t *
h_jm_info (h_test_t *t, const char *name, char *identity)
{
    json_t *workers = h_admin (t, "ROUTER_SHOW_WORKERS");
    if (!workers)
        return NULL;
    json_t *connected = json_object_get (workers, "connected_workers");
    const char *key;
    json_t *value;
    json_t *found = NULL;
    size_t name_len = strlen (name);
    json_object_foreach (connected, key, value)
    {
        if (strncmp (key, name, name_len) == 0
            && (key[name_len] == '-' || !key[name_len])) {
            found = json_incref (value);
            if (identity)
                snprintf (identity, 256, "%s", key);
            break;
        }
    }
    json_decref (workers);
    return found;
}

bool
h_jm_registered (h_test_t *t, const char *name)
{
    json_t *info = h_jm_info (t, name, NULL);
    json_decref (info);
    return info != NULL;
}

void
h_wait_jm (h_test_t *t, const char *name, int timeout_ms, char *identity)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (true) {
        json_t *info = h_jm_info (t, name, identity);
        if (info) {
            json_decref (info);
            h_log (t, "jm %s registered", name);
            return;
        }
        if (clock_mono_ms () > deadline)
            h_fail (__FILE__, __LINE__,
                    "job manager '%s' not registered with the router within %d ms", name,
                    h_ms (timeout_ms));
        h_nap ();
    }
}

bool
h_jm_has_slots (h_test_t *t, const char *name, int slots)
{
    json_t *info = h_jm_info (t, name, NULL);
    long long avail = h_jint (info, -1, "available_slots", NULL);
    json_decref (info);
    return avail >= slots;
}

int
h_jm_pid_count (h_test_t *t, const char *name)
{
    json_t *info = h_jm_info (t, name, NULL);
    json_t *dist = h_jget (info, "stats", "pid_distribution", NULL);
    int count = json_is_object (dist) ? (int) json_object_size (dist) : -1;
    json_decref (info);
    return count;
}

pid_t
h_jm_job_pid (h_test_t *t, const char *name, const char *msgid)
{
    json_t *info = h_jm_info (t, name, NULL);
    pid_t pid = (pid_t) h_jint (info, 0, "stats", "jobs_in_flight", msgid, "pid", NULL);
    json_decref (info);
    return pid;
}

//  ---------------------------------------------------------------------
//  libemq helpers

static void
s_pack_json (msgpack_packer *pk, json_t *json)
{
    switch (json_typeof (json)) {
        case JSON_OBJECT: {
            msgpack_pack_map (pk, json_object_size (json));
            const char *key;
            json_t *value;
            json_object_foreach (json, key, value)
            {
                msgpack_pack_str (pk, strlen (key));
                msgpack_pack_str_body (pk, key, strlen (key));
                s_pack_json (pk, value);
            }
            break;
        }
        case JSON_ARRAY: {
            msgpack_pack_array (pk, json_array_size (json));
            size_t index;
            json_t *value;
            json_array_foreach (json, index, value) s_pack_json (pk, value);
            break;
        }
        case JSON_STRING:
            msgpack_pack_str (pk, json_string_length (json));
            msgpack_pack_str_body (pk, json_string_value (json),
                                   json_string_length (json));
            break;
        case JSON_INTEGER:
            msgpack_pack_int64 (pk, json_integer_value (json));
            break;
        case JSON_REAL:
            msgpack_pack_double (pk, json_real_value (json));
            break;
        case JSON_TRUE:
            msgpack_pack_true (pk);
            break;
        case JSON_FALSE:
            msgpack_pack_false (pk);
            break;
        case JSON_NULL:
            msgpack_pack_nil (pk);
            break;
    }
}

void
h_payload_run (const char *function, const char *json_args, void **out, size_t *size)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    if (json_args) {
        json_error_t error;
        json_t *json = json_loads (json_args, JSON_DECODE_ANY, &error);
        if (!json)
            h_fail (__FILE__, __LINE__, "bad JSON test argument '%s': %s", json_args,
                    error.text);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        s_pack_json (&pk, json);
        json_decref (json);
    }
    int rc = emq_payload_run (H_PLUGIN, function, json_args ? sbuf.data : NULL,
                              json_args ? sbuf.size : 0, out, size);
    msgpack_sbuffer_destroy (&sbuf);
    if (rc != 0)
        h_fail (__FILE__, __LINE__, "emq_payload_run(%s): %d (%s)", function, rc,
                emq_strerror (rc));
}

void
h_payload_exec (const char *const *argv, void **out, size_t *size)
{
    size_t argc = 0;
    while (argv[argc])
        argc++;
    int rc = emq_payload_exec (argv, argc, NULL, 0, NULL, 0, NULL, out, size);
    if (rc != 0)
        h_fail (__FILE__, __LINE__, "emq_payload_exec(%s): %d (%s)", argv[0], rc,
                emq_strerror (rc));
}

void
h_submit_run (emq_client_t *client, const char *queue, const char *function,
              const char *json_args, uint32_t timeout_s, char msgid[37])
{
    void *payload;
    size_t size;
    h_payload_run (function, json_args, &payload, &size);
    emq_submit_opts_t opts = { .queue = queue, .reply = true, .timeout_s = timeout_s };
    int rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    if (rc != 0)
        h_fail (__FILE__, __LINE__, "emq_submit(%s %s): %d (%s): %s", function,
                json_args ? json_args : "", rc, emq_strerror (rc),
                emq_client_last_error (client));
}

json_t *
h_msgpack_to_json (const msgpack_object *obj)
{
    switch (obj->type) {
        case MSGPACK_OBJECT_NIL:
            return json_null ();
        case MSGPACK_OBJECT_BOOLEAN:
            return json_boolean (obj->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            return json_integer ((json_int_t) obj->via.u64);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return json_integer ((json_int_t) obj->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return json_real (obj->via.f64);
        case MSGPACK_OBJECT_STR:
            return json_stringn_nocheck (obj->via.str.ptr, obj->via.str.size);
        case MSGPACK_OBJECT_BIN:
            return json_stringn_nocheck (obj->via.bin.ptr, obj->via.bin.size);
        case MSGPACK_OBJECT_ARRAY: {
            json_t *array = json_array ();
            for (uint32_t i = 0; i < obj->via.array.size; i++)
                json_array_append_new (array, h_msgpack_to_json (&obj->via.array.ptr[i]));
            return array;
        }
        case MSGPACK_OBJECT_MAP: {
            json_t *map = json_object ();
            for (uint32_t i = 0; i < obj->via.map.size; i++) {
                msgpack_object *key = &obj->via.map.ptr[i].key;
                char name[256] = "?";
                if (key->type == MSGPACK_OBJECT_STR)
                    snprintf (name, sizeof name, "%.*s", (int) key->via.str.size,
                              key->via.str.ptr);
                json_object_set_new (map, name,
                                     h_msgpack_to_json (&obj->via.map.ptr[i].val));
            }
            return map;
        }
        default:
            return json_string ("<unsupported msgpack type>");
    }
}

char *
h_result_text (const emq_event_t *event)
{
    if (event->type != EMQ_EVENT_RESULT || event->status != EMQ_JOB_OK) {
        char *text = malloc (event->size + 1);
        if (event->size)
            memcpy (text, event->data, event->size);
        text[event->size] = 0;
        return text;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    char *text;
    if (msgpack_unpack_next (&unpacked, event->data, event->size, &offset)
        == MSGPACK_UNPACK_SUCCESS) {
        json_t *json = h_msgpack_to_json (&unpacked.data);
        text = json_dumps (json, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref (json);
    }
    else
        text = strdup ("<not msgpack>");
    msgpack_unpacked_destroy (&unpacked);
    return text;
}

//  ---------------------------------------------------------------------
//  Raw eMQP

zsock_t *
h_dealer (const char *endpoint, const char *identity)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    if (identity)
        zsock_set_identity (sock, identity);
    zsock_set_linger (sock, 0);
    zsock_set_sndtimeo (sock, 2000);
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

int
h_send_strs (zsock_t *sock, ...)
{
    zmsg_t *msg = zmsg_new ();
    va_list ap;
    va_start (ap, sock);
    const char *frame;
    while ((frame = va_arg (ap, const char *)))
        zmsg_addstr (msg, frame);
    va_end (ap);
    return zmsg_send (&msg, sock);
}

//  Receives within timeout_ms, not scaled.
static zmsg_t *
s_recv (zsock_t *sock, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    void *which = zpoller_wait (poller, timeout_ms);
    zpoller_destroy (&poller);
    if (which != sock)
        return NULL;
    return zmsg_recv (sock);
}

zmsg_t *
h_recv_raw (zsock_t *sock, int timeout_ms)
{
    return s_recv (sock, h_ms (timeout_ms));
}

emqp_msg_t *
h_recv_msg (h_test_t *t, zsock_t *sock, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (true) {
        int64_t left = deadline - clock_mono_ms ();
        if (left < 0)
            return NULL;
        zmsg_t *zmsg = s_recv (sock, (int) left + 1);
        if (!zmsg)
            return NULL;
        char err[256] = "";
        emqp_msg_t *msg = emqp_decode (&zmsg, false, NULL, NULL, err, sizeof err);
        if (!msg) {
            h_log (t, "received a message the codec rejects: %s", err);
            return NULL;
        }
        if (msg->command == EMQP_HEARTBEAT) {
            emqp_msg_destroy (&msg);
            continue;
        }
        return msg;
    }
}

emqp_msg_t *
h_recv_cmd (h_test_t *t, zsock_t *sock, emqp_command_t command, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (true) {
        int64_t left = deadline - clock_mono_ms ();
        if (left < 0)
            return NULL;
        zmsg_t *zmsg = s_recv (sock, (int) left + 1);
        if (!zmsg)
            return NULL;
        char err[256] = "";
        emqp_msg_t *msg = emqp_decode (&zmsg, false, NULL, NULL, err, sizeof err);
        if (!msg) {
            h_log (t, "received a message the codec rejects: %s", err);
            continue;
        }
        if (msg->command == command)
            return msg;
        h_log (t, "skipping %s while waiting for %s", emqp_command_name (msg->command),
               emqp_command_name (command));
        emqp_msg_destroy (&msg);
    }
}

//  ---------------------------------------------------------------------
//  Runner

//  Kills every process the test started, then every orphan that was
//  reparented to this process (we are a child subreaper), and reaps them.
static void
s_cleanup (h_test_t *t)
{
    h_pg_stop (t);
    for (size_t i = 0; i < t->nprocs; i++)
        if (!t->procs[i].reaped) {
            h_kill (t, t->procs[i].pid, SIGKILL, true);
        }
    int64_t deadline = clock_mono_ms () + 5000;
    while (clock_mono_ms () < deadline) {
        pid_t children[256];
        size_t count = h_children (getpid (), children, 256);
        for (size_t i = 0; i < count; i++)
            kill (children[i], SIGKILL);
        int st;
        pid_t pid;
        bool reaped_any = false;
        while ((pid = waitpid (-1, &st, WNOHANG)) > 0) {
            h_proc_t *proc = s_proc_lookup (t, pid);
            if (proc) {
                proc->reaped = true;
                proc->status = st;
            }
            reaped_any = true;
        }
        if (pid < 0 && errno == ECHILD)
            break;  // no children left at all
        if (!reaped_any)
            h_nap ();
    }
}

//  Prints the last `lines` lines of every log in dir.
static void
s_print_logs (const char *dir, int lines)
{
    DIR *d = opendir (dir);
    if (!d)
        return;
    struct dirent *entry;
    while ((entry = readdir (d))) {
        size_t len = strlen (entry->d_name);
        if (len < 5 || strcmp (entry->d_name + len - 4, ".log") != 0)
            continue;
        char path[PATH_MAX];
        snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        char *text = s_slurp (path);
        size_t n = strlen (text);
        int seen = 0;
        size_t start = n;
        while (start > 0) {
            if (text[start - 1] == '\n' && start != n && ++seen == lines)
                break;
            start--;
        }
        printf ("    --- %s (last %d lines) ---\n", path, lines);
        char *save = NULL;
        for (char *line = strtok_r (text + start, "\n", &save); line;
             line = strtok_r (NULL, "\n", &save))
            printf ("    | %.400s\n", line);
        free (text);
    }
    closedir (d);
    fflush (stdout);
}

//  Unmounts whatever a test mounted under dir (a tmpfs for the disk-full
//  test) and left behind because it failed or timed out.
static void
s_unmount_under (const char *dir)
{
    for (int pass = 0; pass < 8; pass++) {
        FILE *file = fopen ("/proc/self/mounts", "r");
        if (!file)
            return;
        char line[4096], found[PATH_MAX] = "";
        size_t len = strlen (dir);
        while (fgets (line, sizeof line, file)) {
            char device[1024], point[PATH_MAX];
            if (sscanf (line, "%1023s %4095s", device, point) == 2
                && strncmp (point, dir, len) == 0 && point[len] == '/')
                snprintf (found, sizeof found, "%s", point);
        }
        fclose (file);
        if (!*found)
            return;
        if (umount2 (found, MNT_DETACH) != 0) {
            printf ("    umount %s: %s\n", found, strerror (errno));
            return;
        }
        printf ("    unmounted %s left by the test\n", found);
    }
}

static int
s_rm_entry (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove (path);
}

//  Runs one test in a child; returns true when it passed.
static bool
s_run_one (const h_testdef_t *def, bool verbose, int timeout_s)
{
    char dir[] = "/tmp/emq-it-XXXXXX";
    if (!mkdtemp (dir)) {
        printf ("FAIL %s: mkdtemp: %s\n", def->name, strerror (errno));
        return false;
    }
    char conf[PATH_MAX];
    snprintf (conf, sizeof conf, "%s/empty.conf", dir);
    FILE *file = fopen (conf, "w");
    if (file)
        fclose (file);

    int64_t start = clock_mono_ms ();
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0) {
        printf ("FAIL %s: fork: %s\n", def->name, strerror (errno));
        return false;
    }
    if (pid == 0) {
        setpgid (0, 0);
        prctl (PR_SET_CHILD_SUBREAPER, 1);
        signal (SIGPIPE, SIG_IGN);
        static h_test_t test;
        memset (&test, 0, sizeof test);
        test.name = def->name;
        test.verbose = verbose;
        test.started_ms = clock_mono_ms ();
        snprintf (test.dir, sizeof test.dir, "%s", dir);
        snprintf (test.frontend, sizeof test.frontend, "ipc://%s/frontend", dir);
        snprintf (test.backend, sizeof test.backend, "ipc://%s/backend", dir);
        snprintf (test.admin, sizeof test.admin, "ipc://%s/admin", dir);
        h_current = &test;
        if (verbose)
            zsys_set_logstream (stdout);
        def->fn (&test);
        s_cleanup (&test);
        h_current = NULL;
        exit (0);
    }
    setpgid (pid, pid);  // also done by the child; whichever runs first

    int64_t deadline = start + (int64_t) timeout_s * 1000;
    bool timed_out = false;
    int status = 0;
    while (true) {
        pid_t rc = waitpid (pid, &status, WNOHANG);
        if (rc == pid)
            break;
        if (rc < 0 && errno != EINTR) {
            status = -1;
            break;
        }
        if (!timed_out && clock_mono_ms () > deadline) {
            timed_out = true;
            printf (
                "    TIMEOUT: %s still running after %d s, killing its process group\n",
                def->name, timeout_s);
            kill (-pid, SIGKILL);
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep (&ts, NULL);
    }
    //  Sweep: the group, then orphans reparented to us (the runner is a
    //  subreaper too), until no child is left.
    kill (-pid, SIGKILL);
    int64_t sweep_deadline = clock_mono_ms () + 5000;
    while (clock_mono_ms () < sweep_deadline) {
        pid_t children[256];
        size_t count = h_children (getpid (), children, 256);
        for (size_t i = 0; i < count; i++)
            kill (children[i], SIGKILL);
        int st;
        pid_t rc;
        while ((rc = waitpid (-1, &st, WNOHANG)) > 0)
            ;
        if (rc < 0 && errno == ECHILD && kill (-pid, 0) != 0)
            break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep (&ts, NULL);
    }

    bool passed =
        !timed_out && status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0;
    double elapsed = (clock_mono_ms () - start) / 1000.0;
    if (passed)
        printf ("ok   %-22s (%.2f s)\n", def->name, elapsed);
    else {
        if (status != -1 && WIFSIGNALED (status) && !timed_out)
            printf ("    test process killed by signal %d\n", WTERMSIG (status));
        s_print_logs (dir, 25);
        printf ("FAIL %-22s (%.2f s)%s\n", def->name, elapsed,
                timed_out ? " timed out" : "");
    }
    fflush (stdout);
    s_unmount_under (dir);
    if (s_keep)
        printf ("    kept %s\n", dir);
    else
        nftw (dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return passed;
}

static void
s_usage (const h_testdef_t *tests, size_t count)
{
    printf ("usage: integration [-v] [-k] [-l] [-t NAME]...\n"
            "  -t NAME  run only this test (repeatable)\n"
            "  -v       verbose: progress, commands, debug logs of the programs\n"
            "  -k       keep each test's directory\n"
            "  -l       list the tests\n"
            "tests:\n");
    for (size_t i = 0; i < count; i++)
        printf ("  %-22s %s\n", tests[i].name, tests[i].summary);
}

int
h_main (const h_testdef_t *tests, size_t count, int argc, char **argv)
{
    bool verbose = false;
    const char *only[64];
    size_t nonly = 0;
    int opt;
    while ((opt = getopt (argc, argv, "vklht:")) != -1) {
        switch (opt) {
            case 'v':
                verbose = true;
                break;
            case 'k':
                s_keep = true;
                break;
            case 't':
                if (nonly < 64)
                    only[nonly++] = optarg;
                break;
            case 'l':
                for (size_t i = 0; i < count; i++)
                    printf ("%s\n", tests[i].name);
                return 0;
            case 'h':
                s_usage (tests, count);
                return 0;
            default:
                s_usage (tests, count);
                return 2;
        }
    }
    for (size_t j = 0; j < nonly; j++) {
        bool known = false;
        for (size_t i = 0; i < count; i++)
            known = known || strcmp (only[j], tests[i].name) == 0;
        if (!known) {
            fprintf (stderr, "integration: unknown test '%s' (-l lists them)\n", only[j]);
            return 2;
        }
    }

    const char *build = getenv ("BUILD");
    if (!build || !*build)
        build = "build";
    char resolved[PATH_MAX];
    if (!realpath (build, resolved) || strlen (resolved) >= sizeof s_build) {
        fprintf (stderr, "integration: build directory '%s': %s\n", build,
                 strerror (errno ? errno : ENAMETOOLONG));
        return 2;
    }
    memcpy (s_build, resolved, strlen (resolved) + 1);
    const char *wrapper = getenv ("EMQ_TEST_WRAPPER");
    if (wrapper && *wrapper)
        s_scale = 5;
    //  Under valgrind ourselves (make memcheck), everything is slower too.
    const char *preload = getenv ("LD_PRELOAD");
    if (preload && strstr (preload, "vgpreload"))
        s_scale = 5;
    const char *scale = getenv ("EMQ_TEST_SCALE");
    if (scale && atof (scale) > 0)
        s_scale = atof (scale);
    int timeout_s = 60;
    const char *timeout = getenv ("EMQ_TEST_TIMEOUT");
    if (timeout && atoi (timeout) > 0)
        timeout_s = atoi (timeout);
    timeout_s = (int) (timeout_s * s_scale);
    s_keep = s_keep || (getenv ("EMQ_TEST_KEEP") && *getenv ("EMQ_TEST_KEEP"));

    //  Orphans of a test (workers of a killed job manager) come back to us.
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    signal (SIGPIPE, SIG_IGN);
    setvbuf (stdout, NULL, _IOLBF, 0);

    int passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        bool selected = nonly == 0;
        for (size_t j = 0; j < nonly; j++)
            selected = selected || strcmp (only[j], tests[i].name) == 0;
        if (!selected)
            continue;
        if (s_run_one (&tests[i], verbose, timeout_s))
            passed++;
        else
            failed++;
    }
    printf ("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

//  ---------------------------------------------------------------------
//  PostgreSQL

const char *h_store_dsn;

static struct {
    bool running;
    char dir[H_PATH_MAX + 8];  // <test dir>/pg: socket, data/, logs
    char dsn[H_PATH_MAX + 64];
} s_pg;

const char *
h_pg_bin (void)
{
    static char bin[H_PATH_MAX];
    if (*bin)
        return bin;
    glob_t found;
    if (glob ("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &found) == 0
        && found.gl_pathc > 0) {
        snprintf (bin, sizeof bin, "%s", found.gl_pathv[found.gl_pathc - 1]);
        *strrchr (bin, '/') = 0;
    }
    globfree (&found);
    return *bin ? bin : NULL;
}

//  Runs scripts/pg-scratch.sh (next to the build directory) with args;
//  its first line of output into out (may be NULL). Returns its status.
static int
s_pg_script (const char *args, char *out, size_t size)
{
    char command[2 * sizeof s_build + 64], script[sizeof s_build];
    snprintf (script, sizeof script, "%s", s_build);
    char *slash = strrchr (script, '/');
    if (slash)
        *slash = 0;
    snprintf (command, sizeof command, "%s/scripts/pg-scratch.sh %s", script, args);
    FILE *pipe = popen (command, "r");
    if (!pipe)
        return -1;
    char line[H_PATH_MAX + 64] = "";
    if (!fgets (line, sizeof line, pipe))
        line[0] = 0;
    int status = pclose (pipe);
    if (out)
        snprintf (out, size, "%s", h_chomp (line));
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

const char *
h_pg_start (h_test_t *t)
{
    REQUIRE_MSG (h_pg_bin () != NULL, "PostgreSQL is not installed");
    snprintf (s_pg.dir, sizeof s_pg.dir, "%s/pg", t->dir);
    int64_t start = clock_mono_ms ();
    char args[H_PATH_MAX + 32];
    //  No fsync: these tests kill routers, not the server.
    snprintf (args, sizeof args, "start %s --no-fsync", s_pg.dir);
    s_pg.running = true;  // whatever happened, stop it at the end
    REQUIRE_MSG (s_pg_script (args, s_pg.dsn, sizeof s_pg.dsn) == 0 && *s_pg.dsn,
                 "PostgreSQL did not start (see pg/initdb.log, pg/pg_ctl.log, "
                 "pg/server.log)");
    h_log (t, "PostgreSQL up in %s (%lld ms): %s", s_pg.dir,
           (long long) (clock_mono_ms () - start), s_pg.dsn);
    return s_pg.dsn;
}

void
h_pg_stop (h_test_t *t)
{
    (void) t;
    if (!s_pg.running)
        return;
    s_pg.running = false;
    char args[H_PATH_MAX + 32];
    snprintf (args, sizeof args, "stop %s", s_pg.dir);
    s_pg_script (args, NULL, 0);
}

bool
h_pg_restart (h_test_t *t, int down_ms)
{
    (void) t;
    char args[H_PATH_MAX + 48];
    snprintf (args, sizeof args, "restart %s %d", s_pg.dir, down_ms);
    return s_pg_script (args, NULL, 0) == 0;
}

PGconn *
h_pg_connect (h_test_t *t)
{
    (void) t;
    PGconn *conn = PQconnectdb (s_pg.dsn);
    REQUIRE_MSG (conn && PQstatus (conn) == CONNECTION_OK, "cannot connect to %s: %s",
                 s_pg.dsn, conn ? PQerrorMessage (conn) : "out of memory");
    return conn;
}

long long
h_pg_int (PGconn *conn, const char *sql)
{
    PGresult *res = PQexec (conn, sql);
    REQUIRE_MSG (res && PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1,
                 "%s: %s", sql, PQerrorMessage (conn));
    long long value = strtoll (PQgetvalue (res, 0, 0), NULL, 10);
    PQclear (res);
    return value;
}

void
h_slots (h_test_t *t, h_slot_t slot[2])
{
    snprintf (slot[0].frontend, sizeof slot[0].frontend, "%s", t->frontend);
    snprintf (slot[0].backend, sizeof slot[0].backend, "%s", t->backend);
    snprintf (slot[0].admin, sizeof slot[0].admin, "%s", t->admin);
    snprintf (slot[1].frontend, sizeof slot[1].frontend, "ipc://%s/frontend-b", t->dir);
    snprintf (slot[1].backend, sizeof slot[1].backend, "ipc://%s/backend-b", t->dir);
    snprintf (slot[1].admin, sizeof slot[1].admin, "ipc://%s/admin-b", t->dir);
}
