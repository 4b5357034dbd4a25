/*  command — `exec` jobs. See command.h.

    One vfork + execve per job (s_spawn). The worker feeds stdin and drains stdout and
    stderr in one poll() loop, so a command that writes a lot to both pipes
    while we write to its stdin cannot deadlock against us. stdout past the
    cap kills the command (a result that large could not travel anyway).
*/
#include "command.h"
#include "proctree.h"
#include "tests/testutil.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

//  Removes '.', '..' and repeated '/' from an absolute path, in place.
static void
s_normalise (char *path)
{
    assert (path[0] == '/');
    char *out = path;  // write position; path[0] stays '/'
    const char *in = path;
    size_t len = 0;
    while (*in) {
        while (*in == '/')
            in++;
        const char *start = in;
        while (*in && *in != '/')
            in++;
        size_t size = (size_t) (in - start);
        if (size == 0 || (size == 1 && start[0] == '.'))
            continue;
        if (size == 2 && start[0] == '.' && start[1] == '.') {
            //  Drop the last component and its '/'; '..' at the root stays there.
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
            continue;
        }
        out[len++] = '/';
        memmove (out + len, start, size);
        len += size;
    }
    if (len == 0)
        len = 1;
    out[0] = '/';
    out[len] = 0;
}

static bool
s_is_executable (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 && S_ISREG (st.st_mode) && access (path, X_OK) == 0;
}

int
command_resolve (const char *argv0, const char *cwd, char *path, size_t pathlen,
                 char *err, size_t errlen)
{
    char joined[PATH_MAX * 4];
    if (!argv0 || !*argv0) {
        snprintf (err, errlen, "argv[0] is empty");
        return -1;
    }
    if (argv0[0] == '/') {
        if (snprintf (joined, sizeof joined, "%s", argv0) >= (int) sizeof joined) {
            snprintf (err, errlen, "command path too long");
            return -1;
        }
    }
    else if (strchr (argv0, '/')) {
        //  Relative to the job's cwd, itself relative to ours if need be.
        char base[PATH_MAX * 2], here[PATH_MAX];
        int size;
        if (cwd && cwd[0] == '/')
            size = snprintf (base, sizeof base, "%s", cwd);
        else {
            if (!getcwd (here, sizeof here)) {
                snprintf (err, errlen, "getcwd: %s", strerror (errno));
                return -1;
            }
            size = cwd && *cwd ? snprintf (base, sizeof base, "%s/%s", here, cwd)
                               : snprintf (base, sizeof base, "%s", here);
        }
        if (size >= (int) sizeof base
            || snprintf (joined, sizeof joined, "%s/%s", base, argv0)
                   >= (int) sizeof joined) {
            snprintf (err, errlen, "command path too long");
            return -1;
        }
    }
    else {
        //  PATH search with the worker's own PATH (not the job's env): the
        //  allow-list then judges the program that actually runs.
        const char *search = getenv ("PATH");
        if (!search || !*search)
            search = "/usr/local/bin:/usr/bin:/bin";
        bool found = false;
        while (*search && !found) {
            const char *end = strchr (search, ':');
            size_t size = end ? (size_t) (end - search) : strlen (search);
            //  Only absolute PATH entries: '.' or '' would make the result
            //  depend on the job's cwd.
            if (size > 0 && search[0] == '/') {
                if (snprintf (joined, sizeof joined, "%.*s/%s", (int) size, search, argv0)
                    < (int) sizeof joined)
                    found = s_is_executable (joined);
            }
            search += size + (end ? 1 : 0);
        }
        if (!found) {
            snprintf (err, errlen, "command '%s' not found in PATH", argv0);
            return -1;
        }
    }
    if (strlen (joined) + 1 > pathlen || strlen (joined) >= PATH_MAX) {
        snprintf (err, errlen, "command path too long");
        return -1;
    }
    s_normalise (joined);
    strcpy (path, joined);
    return 0;
}

bool
command_is_allowed (const char *path, char *const *patterns, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (fnmatch (patterns[i], path, FNM_PATHNAME) == 0)
            return true;
    return false;
}

bool
command_env_is_loader (const char *name)
{
    //  glibc's own list of variables it drops for setuid programs, the
    //  shells' start-up hooks, and the interpreters' code and module paths.
    static const char *loader[] = {
        "LD_*",
        "GCONV_PATH",
        "GETCONF_DIR",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_*",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TMPDIR",
        "TZDIR",
        "GLIBC_TUNABLES",
        "BASH_ENV",
        "ENV",
        "BASH_FUNC_*",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "CDPATH",
        "PYTHON*",
        "PERL5*",
        "PERLLIB",
        "PERLIO*",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "LUA_INIT*",
        "LUA_PATH*",
        "LUA_CPATH*",
    };
    for (size_t i = 0; i < sizeof loader / sizeof loader[0]; i++)
        if (fnmatch (loader[i], name, 0) == 0)
            return true;
    return false;
}

bool
command_env_is_allowed (const char *name, char *const *patterns, size_t count)
{
    bool loader = command_env_is_loader (name);
    for (size_t i = 0; i < count; i++) {
        //  A wildcard never lets a loader variable through: only its name.
        if (loader ? streq (patterns[i], name) : fnmatch (patterns[i], name, 0) == 0)
            return true;
    }
    return false;
}

//  Checks every name of the job's env map. Returns 0, or -1 with the
//  refusal in err.
static int
s_env_check (const payload_t *payload, const command_policy_t *policy, char *err,
             size_t errlen)
{
    for (size_t i = 0; i < payload->envc; i++) {
        const char *entry = payload->env[i];
        const char *eq = strchr (entry, '=');
        char name[256];
        size_t len = eq ? (size_t) (eq - entry) : strlen (entry);
        snprintf (name, sizeof name, "%.*s", (int) (len < 200 ? len : 200), entry);
        for (char *c = name; *c; c++)
            if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                *c = '?';
        if (len >= 200
            || !command_env_is_allowed (name, policy->env_allow,
                                        policy->env_allow_count)) {
            snprintf (err, errlen, "env: '%s'%s is not allowed by exec_env_allow%s", name,
                      len >= 200 ? "..." : "",
                      command_env_is_loader (name)
                          ? " (a loader or interpreter variable: only passes when "
                            "named exactly)"
                          : "");
            return -1;
        }
    }
    return 0;
}

static int
s_outcome_text (wire_msg_t *outcome, emqp_status_t status, const char *text)
{
    outcome->status = status;
    return wire_msg_set_bytes (&outcome->value, &outcome->value_size, text,
                               strlen (text));
}

//  The stderr tail: a ring of the last COMMAND_STDERR_TAIL bytes.
typedef struct {
    char data[COMMAND_STDERR_TAIL];
    size_t start;  // oldest byte
    size_t size;
} s_tail_t;

static void
s_tail_add (s_tail_t *tail, const char *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        size_t at = (tail->start + tail->size) % COMMAND_STDERR_TAIL;
        tail->data[at] = data[i];
        if (tail->size < COMMAND_STDERR_TAIL)
            tail->size++;
        else
            tail->start = (tail->start + 1) % COMMAND_STDERR_TAIL;
    }
}

//  Copies the tail into buf as text without trailing newlines.
static void
s_tail_text (const s_tail_t *tail, char *buf, size_t buflen)
{
    size_t size = 0;
    for (size_t i = 0; i < tail->size && size + 1 < buflen; i++) {
        char c = tail->data[(tail->start + i) % COMMAND_STDERR_TAIL];
        buf[size++] = c ? c : '?';
    }
    while (size > 0 && (buf[size - 1] == '\n' || buf[size - 1] == '\r'))
        size--;
    buf[size] = 0;
}

//  Says in the child, on its stderr (already the pipe), why it could not
//  run the command: "emq: <what> '<name>': <reason>\n". No stdio and no
//  locale: the child shares the worker's memory (see s_spawn).
static void __attribute__ ((no_sanitize_address))
s_child_say (const char *what, const char *name, int error)
{
    const char *reason = strerrordesc_np (error);
    const char *parts[] = { "emq: ", what,  " '",
                            name,    "': ", reason ? reason : "Unknown error",
                            "\n" };
    char line[PATH_MAX + 512];
    size_t size = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t len = strnlen (parts[i], sizeof line - size);
        memcpy (line + size, parts[i], len);
        size += len;
    }
    if (write (2, line, size) < 0) {
        //  Nowhere else to say it; the exit status tells.
    }
}

//  Runs in the child until execve: wire the pipes, then execve. Never
//  returns. Only system calls here: until execve this process runs on the
//  worker's memory and stack (vfork), so it must not change anything the
//  worker keeps, and no handler of the worker's may run in it. ASan must
//  not poison that stack either.
static void s_child (const payload_t *payload, const payload_limits_t *limits,
                     bool handlers_default, const char *path, int in_fd, int out_fd,
                     int err_fd) __attribute__ ((noreturn, no_sanitize_address));

//  Sets soft and hard limit (the command cannot raise it again); 0 = leave.
static int __attribute__ ((no_sanitize_address))
s_child_limit (int resource, uint64_t soft, uint64_t hard)
{
    if (soft == 0)
        return 0;
    struct rlimit limit = { .rlim_cur = (rlim_t) soft, .rlim_max = (rlim_t) hard };
    return setrlimit (resource, &limit);
}

static void
s_child (const payload_t *payload, const payload_limits_t *limits, bool handlers_default,
         const char *path, int in_fd, int out_fd, int err_fd)
{
    //  Die with the worker. Signals are all blocked (s_spawn): handlers go
    //  back to the defaults before any is let through, so that none runs on
    //  the shared memory; the worker's SIGPIPE=ignore must not leak into
    //  the command; then the command gets a clean signal mask.
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigemptyset (&dfl.sa_mask);
    if (handlers_default)
        sigaction (SIGPIPE, &dfl, NULL);
    for (int sig = 1; sig < NSIG && !handlers_default; sig++) {
        struct sigaction now;
        if (sig == SIGKILL || sig == SIGSTOP || sigaction (sig, NULL, &now))
            continue;
        if (now.sa_handler != SIG_DFL && (now.sa_handler != SIG_IGN || sig == SIGPIPE))
            sigaction (sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    if (dup2 (in_fd, 0) < 0 || dup2 (out_fd, 1) < 0 || dup2 (err_fd, 2) < 0)
        _exit (127);
    if (payload->cwd && chdir (payload->cwd)) {
        s_child_say ("cannot chdir to", payload->cwd, errno);
        _exit (127);
    }
    //  CPU: SIGXCPU at the limit, SIGKILL a second later if it is caught.
    if (s_child_limit (RLIMIT_AS, limits->as_bytes, limits->as_bytes)
        || s_child_limit (RLIMIT_NPROC, limits->nproc, limits->nproc)
        || s_child_limit (RLIMIT_NOFILE, limits->nofile, limits->nofile)
        || s_child_limit (RLIMIT_CPU, limits->cpu_s, limits->cpu_s + 1)) {
        s_child_say ("cannot set resource limits for", path, errno);
        _exit (127);
    }
    execve (path, payload->argv, payload->env ? payload->env : environ);
    s_child_say ("cannot execute", path, errno);
    _exit (127);
}

//  Starts the command with vfork: the worker is suspended until the child
//  has called execve (or exited), and no page table is copied, where fork
//  copied the worker's ~180 mappings for every job. (posix_spawn does the
//  same, but cannot set PR_SET_PDEATHSIG in the child.) Every signal is
//  blocked meanwhile, as posix_spawn does. Returns the pid, or -1 (errno).
static pid_t
s_spawn (const payload_t *payload, const payload_limits_t *limits, bool handlers_default,
         const char *path, int in_fd, int out_fd, int err_fd)
{
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    pid_t pid = vfork ();
    if (pid == 0)
        s_child (payload, limits, handlers_default, path, in_fd, out_fd, err_fd);
    int saved = errno;
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}

//  Ends the command (SIGKILL) and collects its status, once.
static void
s_end_command (pid_t pid, bool *reaped, int *status, struct rusage *usage)
{
    if (*reaped)
        return;
    kill (pid, SIGKILL);
    while (wait4 (pid, status, 0, usage) < 0 && errno == EINTR)
        ;
    *reaped = true;
}

int
command_run (const payload_t *payload, const command_policy_t *policy,
             wire_msg_t *outcome)
{
    assert (payload && policy && outcome);
    char *const *patterns = policy->allow;
    size_t count = policy->allow_count;
    char err[PATH_MAX + 256], path[PATH_MAX];
    if (count == 0)
        return s_outcome_text (
            outcome, EMQP_STATUS_REJECTED,
            "exec jobs are disabled: no exec_allow patterns configured");
    if (payload->argc == 0 || !payload->argv || !payload->argv[0])
        return s_outcome_text (outcome, EMQP_STATUS_REJECTED, "exec: argv is empty");
    if (command_resolve (payload->argv[0], payload->cwd, path, sizeof path, err,
                         sizeof err))
        return s_outcome_text (outcome, EMQP_STATUS_REJECTED, err);
    if (!command_is_allowed (path, patterns, count)) {
        snprintf (err, sizeof err, "command '%s' is not allowed by exec_allow", path);
        return s_outcome_text (outcome, EMQP_STATUS_REJECTED, err);
    }
    if (s_env_check (payload, policy, err, sizeof err))
        return s_outcome_text (outcome, EMQP_STATUS_REJECTED, err);

    //  Writing to a command that quit must give EPIPE, not kill the worker.
    struct sigaction ignore = { .sa_handler = SIG_IGN }, saved_pipe;
    sigemptyset (&ignore.sa_mask);
    sigaction (SIGPIPE, &ignore, &saved_pipe);

    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, errp[2] = { -1, -1 };
    char *stdout_buf = NULL;
    size_t stdout_size = 0, stdout_capacity = 0;
    bool too_big = false;
    s_tail_t *tail = calloc (1, sizeof *tail);
    int result = -1;
    if (!tail)
        goto done;
    if (pipe2 (out, O_CLOEXEC) || pipe2 (errp, O_CLOEXEC)) {
        snprintf (err, sizeof err, "pipe: %s", strerror (errno));
        result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
        goto done;
    }
    if (payload->stdin_data) {
        if (pipe2 (in, O_CLOEXEC)) {
            snprintf (err, sizeof err, "pipe: %s", strerror (errno));
            result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
            goto done;
        }
    }
    else {
        in[0] = open ("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in[0] < 0) {
            snprintf (err, sizeof err, "open /dev/null: %s", strerror (errno));
            result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
            goto done;
        }
    }
    pid_t pid = s_spawn (payload, &policy->limits, policy->handlers_default, path, in[0],
                         out[1], errp[1]);
    if (pid < 0) {
        snprintf (err, sizeof err, "vfork: %s", strerror (errno));
        result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
        goto done;
    }

    close (in[0]);
    close (out[1]);
    close (errp[1]);
    in[0] = out[1] = errp[1] = -1;
    if (in[1] >= 0 && fcntl (in[1], F_SETFL, O_NONBLOCK) < 0) {
        close (in[1]);  // cannot feed it safely: the command sees EOF
        in[1] = -1;
    }
    size_t stdin_done = 0;
    if (in[1] >= 0 && payload->stdin_size == 0) {
        close (in[1]);
        in[1] = -1;
    }
    //  The command's end is an event of its own: a background child that
    //  keeps stdout open must not keep the job running after it. Without a
    //  pidfd (kernels before 5.3) the job ends when the pipes close.
    int pidfd = policy->reap_all ? pidfd_open (pid, 0) : -1;
    bool reaped = false;
    int status = 0;
    struct rusage usage = { 0 };
    char chunk[65536];
    while (out[0] >= 0 || errp[0] >= 0 || in[1] >= 0) {
        struct pollfd fds[4] = {
            { .fd = out[0], .events = POLLIN },
            { .fd = errp[0], .events = POLLIN },
            { .fd = in[1], .events = POLLOUT },
            { .fd = pidfd, .events = POLLIN },
        };
        if (poll (fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            //  Cannot happen with valid fds; stop feeding and reading.
            break;
        }
        if (fds[3].revents) {
            //  The command ended: collect it, then end what it left behind,
            //  so the pipes they held close and the loop finishes.
            while (wait4 (pid, &status, 0, &usage) < 0 && errno == EINTR)
                ;
            reaped = true;
            close (pidfd);
            pidfd = -1;
            //  (Only if there is a child left: the scan reads all of /proc,
            //  about 120 files here, which was most of an exec job's cost.)
            if (proctree_has_children ())
                proctree_kill_children (NULL, NULL);
        }
        if (fds[2].revents) {
            ssize_t n = write (in[1], payload->stdin_data + stdin_done,
                               payload->stdin_size - stdin_done);
            if (n > 0)
                stdin_done += (size_t) n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR)
                || stdin_done == payload->stdin_size) {
                close (in[1]);  // EPIPE: the command stopped reading
                in[1] = -1;
            }
        }
        for (int i = 0; i < 2; i++) {
            int *fd = i == 0 ? &out[0] : &errp[0];
            if (*fd < 0 || !fds[i].revents)
                continue;
            ssize_t n = read (*fd, chunk, sizeof chunk);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0) {
                close (*fd);
                *fd = -1;
                continue;
            }
            if (i == 1) {
                s_tail_add (tail, chunk, (size_t) n);
                continue;
            }
            bool grown_ok = stdout_size + (size_t) n <= COMMAND_STDOUT_MAX;
            if (grown_ok && stdout_size + (size_t) n > stdout_capacity) {
                size_t capacity = stdout_capacity ? stdout_capacity * 2 : 65536;
                while (capacity < stdout_size + (size_t) n)
                    capacity *= 2;
                char *grown = realloc (stdout_buf, capacity);
                grown_ok = grown != NULL;
                if (grown) {
                    stdout_buf = grown;
                    stdout_capacity = capacity;
                }
            }
            if (!grown_ok) {
                //  The output limit stops the writers, not only our reading:
                //  the command and everything it started are killed, and
                //  stdout is closed so a writer we missed gets EPIPE.
                too_big = true;
                s_end_command (pid, &reaped, &status, &usage);
                if (policy->reap_all)
                    proctree_kill_children (NULL, NULL);
                close (out[0]);
                out[0] = -1;
                continue;
            }
            memcpy (stdout_buf + stdout_size, chunk, (size_t) n);
            stdout_size += (size_t) n;
        }
    }
    if (pidfd >= 0)
        close (pidfd);
    if (!reaped) {
        while (wait4 (pid, &status, 0, &usage) < 0) {
            if (errno != EINTR) {
                snprintf (err, sizeof err, "wait4: %s", strerror (errno));
                result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
                goto done;
            }
        }
    }
    //  What the command left running that closed its pipes (a daemon).
    if (policy->reap_all && proctree_has_children ())
        proctree_kill_children (NULL, NULL);
    outcome->cpu_us =
        (uint64_t) usage.ru_utime.tv_sec * 1000000 + (uint64_t) usage.ru_utime.tv_usec
        + (uint64_t) usage.ru_stime.tv_sec * 1000000 + (uint64_t) usage.ru_stime.tv_usec;
    outcome->maxrss_kb = (uint64_t) usage.ru_maxrss;

    char tail_text[COMMAND_STDERR_TAIL + 1];
    s_tail_text (tail, tail_text, sizeof tail_text);
    const char *sep = tail_text[0] ? ": " : "";
    if (too_big) {
        snprintf (err, sizeof err,
                  "output limit: stdout passed %u bytes; the command and every "
                  "process it started were killed",
                  COMMAND_STDOUT_MAX);
        result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
    }
    else if (WIFEXITED (status) && WEXITSTATUS (status) == 0) {
        //  The result is stdout as one msgpack bin.
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_bin (&pk, stdout_size);
        if (stdout_size)
            msgpack_pack_bin_body (&pk, stdout_buf, stdout_size);
        outcome->status = EMQP_STATUS_OK;
        result = wire_msg_set_bytes (&outcome->value, &outcome->value_size, sbuf.data,
                                     sbuf.size);
        msgpack_sbuffer_destroy (&sbuf);
    }
    else {
        size_t size = 128 + strlen (tail_text);
        char *text = malloc (size);
        if (!text)
            goto done;
        if (WIFEXITED (status))
            snprintf (text, size, "exit status %d%s%s", WEXITSTATUS (status), sep,
                      tail_text);
        else {
            int sig = WIFSIGNALED (status) ? WTERMSIG (status) : 0;
            const char *name = sigabbrev_np (sig);
            bool cpu = policy->limits.cpu_s
                       && (sig == SIGXCPU
                           || (sig == SIGKILL
                               && outcome->cpu_us >= policy->limits.cpu_s * 1000000));
            char why[64] = "";
            if (cpu)
                snprintf (why, sizeof why, ", CPU limit of %llu s reached",
                          (unsigned long long) policy->limits.cpu_s);
            snprintf (text, size, "killed by signal %d (SIG%s)%s%s%s", sig,
                      name ? name : "?", why, sep, tail_text);
        }
        result = s_outcome_text (outcome, EMQP_STATUS_FAILED, text);
        free (text);
    }
done:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close (in[i]);
        if (out[i] >= 0)
            close (out[i]);
        if (errp[i] >= 0)
            close (errp[i]);
    }
    free (stdout_buf);
    free (tail);
    sigaction (SIGPIPE, &saved_pipe, NULL);
    return result;
}

//  --------------------------------------------------------------------------
//  Self test

//  Runs argv with the allow-list; returns the outcome (caller owns it).
static wire_msg_t *
s_run (char **argv, const char *stdin_data, char **patterns, size_t count)
{
    payload_t payload = { .kind = PAYLOAD_EXEC, .argv = argv };
    while (argv[payload.argc])
        payload.argc++;
    if (stdin_data) {
        payload.stdin_data = (char *) stdin_data;
        payload.stdin_size = strlen (stdin_data);
    }
    wire_msg_t *outcome = wire_msg_new (WIRE_OUTCOME);
    REQUIRE_OR_NULL (outcome);
    command_policy_t policy = { .allow = patterns, .allow_count = count };
    REQUIRE_OR_NULL (command_run (&payload, &policy, outcome) == 0);
    return outcome;
}

static bool
s_value_has (const wire_msg_t *outcome, const char *text)
{
    return memmem (outcome->value, outcome->value_size, text, strlen (text)) != NULL;
}

void
command_test (bool verbose)
{
    if (verbose)
        printf (" * command: ");
    char path[PATH_MAX], err[512];

    //  Normalisation and resolution.
    REQUIRE (
        command_resolve ("/bin/../bin/./sh", NULL, path, sizeof path, err, sizeof err)
        == 0);
    REQUIRE (streq (path, "/bin/sh"));
    REQUIRE (
        command_resolve ("/bin/../../../tmp//x", NULL, path, sizeof path, err, sizeof err)
        == 0);
    REQUIRE (streq (path, "/tmp/x"));
    REQUIRE (command_resolve ("/", NULL, path, sizeof path, err, sizeof err) == 0);
    REQUIRE (streq (path, "/"));
    REQUIRE (command_resolve ("sh", NULL, path, sizeof path, err, sizeof err) == 0);
    REQUIRE (path[0] == '/' && strstr (path, "/sh"));
    REQUIRE (command_resolve ("./tool", "/opt/x", path, sizeof path, err, sizeof err)
             == 0);
    REQUIRE (streq (path, "/opt/x/tool"));
    REQUIRE (
        command_resolve ("no-such-command-emq", NULL, path, sizeof path, err, sizeof err)
        == -1);
    REQUIRE (strstr (err, "not found"));
    REQUIRE (command_resolve ("", NULL, path, sizeof path, err, sizeof err) == -1);

    //  Allow-list matching.
    char *allow[] = { "/bin/*", "/usr/bin/env" };
    REQUIRE (command_is_allowed ("/bin/sh", allow, 2));
    REQUIRE (command_is_allowed ("/usr/bin/env", allow, 2));
    REQUIRE (!command_is_allowed ("/bin/sub/sh", allow, 2));
    REQUIRE (!command_is_allowed ("/usr/bin/python3", allow, 2));
    REQUIRE (!command_is_allowed ("/bin/sh", allow, 0));

    //  Disabled, not allowed, empty argv: rejected.
    char *sh_true[] = { "/bin/sh", "-c", "true", NULL };
    wire_msg_t *outcome = s_run (sh_true, NULL, allow, 0);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_REJECTED
             && s_value_has (outcome, "disabled"));
    wire_msg_destroy (&outcome);
    char *only_env[] = { "/usr/bin/env" };
    outcome = s_run (sh_true, NULL, only_env, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_REJECTED
             && s_value_has (outcome, "not allowed"));
    wire_msg_destroy (&outcome);
    char *sneaky[] = { "/usr/bin/../../bin/sh", "-c", "true", NULL };
    outcome = s_run (sneaky, NULL, only_env, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_REJECTED);
    wire_msg_destroy (&outcome);

    //  stdout becomes a msgpack bin; stdin is fed.
    char *echo[] = { "/bin/sh", "-c", "printf hello; cat", NULL };
    outcome = s_run (echo, " world", allow, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_OK);
    REQUIRE (outcome->value_size == 2 + 11);
    REQUIRE ((unsigned char) outcome->value[0] == 0xc4 && outcome->value[1] == 11);
    REQUIRE (memcmp (outcome->value + 2, "hello world", 11) == 0);
    wire_msg_destroy (&outcome);

    //  Non-zero exit: failed with the status and stderr's tail.
    char *fails[] = { "/bin/sh", "-c", "echo partial; echo oops >&2; exit 3", NULL };
    outcome = s_run (fails, NULL, allow, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_FAILED);
    REQUIRE (outcome->value_size == strlen ("exit status 3: oops"));
    REQUIRE (s_value_has (outcome, "exit status 3: oops"));
    wire_msg_destroy (&outcome);

    //  Killed by a signal.
    char *killed[] = { "/bin/sh", "-c", "echo bye >&2; kill -9 $$", NULL };
    outcome = s_run (killed, NULL, allow, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_FAILED);
    REQUIRE (s_value_has (outcome, "killed by signal 9 (SIGKILL): bye"));
    wire_msg_destroy (&outcome);

    //  Lots of output on both pipes while stdin is large: no deadlock, and
    //  only the stderr tail is kept.
    char *big = malloc (300000);
    REQUIRE (big);
    memset (big, 'x', 299999);
    big[299999] = 0;
    char *both[] = {
        "/bin/sh", "-c",
        "cat; i=0; while [ $i -lt 2000 ]; do echo line$i >&2; i=$((i+1)); done", NULL
    };
    outcome = s_run (both, big, allow, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_OK);
    REQUIRE (outcome->value_size == 5 + 299999);
    wire_msg_destroy (&outcome);
    char *both_fail[] = {
        "/bin/sh", "-c",
        "cat >/dev/null; i=0; while [ $i -lt 2000 ]; do echo line$i >&2; "
        "i=$((i+1)); done; exit 1",
        NULL
    };
    outcome = s_run (both_fail, big, allow, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_FAILED);
    REQUIRE (s_value_has (outcome, "line1999"));
    REQUIRE (!s_value_has (outcome, "line1\n"));
    REQUIRE (outcome->value_size < COMMAND_STDERR_TAIL + 64);
    wire_msg_destroy (&outcome);
    free (big);

    //  A command that stops reading stdin early does not hurt the worker.
    char *no_read[] = { "/bin/sh", "-c", "exit 0", NULL };
    big = malloc (1 << 20);
    REQUIRE (big);
    memset (big, 'y', (1 << 20) - 1);
    big[(1 << 20) - 1] = 0;
    outcome = s_run (no_read, big, allow, 1);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_OK);
    wire_msg_destroy (&outcome);
    free (big);

    //  The command starts from the default signal dispositions but the
    //  ignored ones (SIGPIPE excepted: the worker ignores it for itself)
    //  and with no signal blocked, whatever the worker had.
    struct sigaction ignore_usr1 = { .sa_handler = SIG_IGN }, saved_usr1;
    sigemptyset (&ignore_usr1.sa_mask);
    sigaction (SIGUSR1, &ignore_usr1, &saved_usr1);
    sigset_t usr2, saved_mask;
    sigemptyset (&usr2);
    sigaddset (&usr2, SIGUSR2);
    pthread_sigmask (SIG_BLOCK, &usr2, &saved_mask);
    char *status[] = { "/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL };
    outcome = s_run (status, NULL, allow, 1);
    pthread_sigmask (SIG_SETMASK, &saved_mask, NULL);
    sigaction (SIGUSR1, &saved_usr1, NULL);
    REQUIRE (outcome);
    REQUIRE (outcome->status == EMQP_STATUS_OK);
    REQUIRE (s_value_has (outcome, "SigBlk:\t0000000000000000\n"));
    //  (What the test runner ignored, e.g. SIGINT in a background job,
    //  stays ignored too: only SIGUSR1 and SIGPIPE are ours to check.)
    const char *ign = memmem (outcome->value, outcome->value_size, "SigIgn:\t", 8);
    REQUIRE (ign);
    unsigned long long ignored = strtoull (ign + 8, NULL, 16);
    CHECK (ignored & (1ull << (SIGUSR1 - 1)));
    CHECK (!(ignored & (1ull << (SIGPIPE - 1))));
    wire_msg_destroy (&outcome);

    //  env and cwd.
    char *pwd[] = { "/bin/sh", "-c", "pwd; echo $EMQ_TEST_VAR", NULL };
    char *env[] = { "EMQ_TEST_VAR=42", NULL };
    payload_t payload = {
        .kind = PAYLOAD_EXEC, .argv = pwd, .argc = 3, .env = env, .envc = 1, .cwd = "/"
    };
    outcome = wire_msg_new (WIRE_OUTCOME);
    char *env_allow[] = { "EMQ_*" };
    command_policy_t policy = {
        .allow = allow, .allow_count = 1, .env_allow = env_allow, .env_allow_count = 1
    };
    REQUIRE (command_run (&payload, &policy, outcome) == 0);
    REQUIRE (outcome->status == EMQP_STATUS_OK);
    REQUIRE (s_value_has (outcome, "/\n42\n"));
    payload.cwd = "/nonexistent-emq-dir";
    REQUIRE (command_run (&payload, &policy, outcome) == 0);
    REQUIRE (outcome->status == EMQP_STATUS_FAILED);
    //  (Under valgrind the child's exit status is valgrind's: see testutil.h.)
    REQUIRE (s_value_has (outcome, "emq: cannot chdir"));
    REQUIRE (s_value_has (outcome, testutil_under_valgrind () ? "exit status"
                                                              : "exit status 127"));
    wire_msg_destroy (&outcome);

    //  The env allow-list: wildcards, and loader variables only by name.
    char *env_patterns[] = { "LC_*", "TZ", "*_OK", "LD_LIBRARY_PATH" };
    CHECK (command_env_is_allowed ("LC_ALL", env_patterns, 4));
    CHECK (command_env_is_allowed ("TZ", env_patterns, 4));
    CHECK (!command_env_is_allowed ("TZX", env_patterns, 4));
    CHECK (!command_env_is_allowed ("HOME", env_patterns, 0));
    CHECK (command_env_is_loader ("LD_PRELOAD") && command_env_is_loader ("GCONV_PATH"));
    CHECK (command_env_is_loader ("MALLOC_CHECK_") && command_env_is_loader ("BASH_ENV"));
    CHECK (!command_env_is_loader ("LANG"));
    CHECK (!command_env_is_allowed ("LD_PRELOAD", env_patterns, 4));  // not by "*_OK"
    char *star[] = { "*" };
    CHECK (!command_env_is_allowed ("LD_PRELOAD", star, 1));
    CHECK (!command_env_is_allowed ("MALLOC_OK", env_patterns, 4));
    CHECK (command_env_is_allowed ("LD_LIBRARY_PATH", env_patterns, 4));
    CHECK (command_env_is_allowed ("ANYTHING", star, 1));
    //  A refused name rejects the job, naming the variable.
    char *preload[] = { "LD_PRELOAD=/tmp/evil.so", NULL };
    payload = (payload_t){
        .kind = PAYLOAD_EXEC, .argv = sh_true, .argc = 3, .env = preload, .envc = 1
    };
    policy = (command_policy_t){
        .allow = allow, .allow_count = 1, .env_allow = star, .env_allow_count = 1
    };
    outcome = wire_msg_new (WIRE_OUTCOME);
    REQUIRE (outcome && command_run (&payload, &policy, outcome) == 0);
    CHECK (outcome->status == EMQP_STATUS_REJECTED);
    CHECK (s_value_has (outcome, "env: 'LD_PRELOAD' is not allowed by exec_env_allow"));
    wire_msg_destroy (&outcome);

    //  Resource limits reach the command, soft and hard.
    char *ulimits[] = { "/bin/sh", "-c", "ulimit -n; ulimit -Hn; ulimit -t", NULL };
    payload = (payload_t){ .kind = PAYLOAD_EXEC, .argv = ulimits, .argc = 3 };
    policy = (command_policy_t){ .allow = allow,
                                 .allow_count = 1,
                                 .limits = { .nofile = 17, .cpu_s = 5 } };
    outcome = wire_msg_new (WIRE_OUTCOME);
    REQUIRE (outcome && command_run (&payload, &policy, outcome) == 0);
    CHECK (outcome->status == EMQP_STATUS_OK);
    CHECK (s_value_has (outcome, "17\n17\n5\n"));
    wire_msg_destroy (&outcome);

    //  An endless writer behind a shell: the output limit ends it (before,
    //  only the shell was killed and `yes` wrote on forever).
    char *endless[] = { "/bin/sh", "-c", "/bin/yes; echo not reached", NULL };
    outcome = s_run (endless, NULL, allow, 1);
    REQUIRE (outcome);
    CHECK (outcome->status == EMQP_STATUS_FAILED);
    CHECK (s_value_has (outcome, "output limit"));
    wire_msg_destroy (&outcome);

    if (verbose)
        printf ("OK\n");
}
