/*  ops — integration tests of running emq as a service: SIGHUP reloads on
    every daemon, sd_notify readiness and watchdog (a datagram socket of
    the test's own stands in for systemd's), the units as systemd-analyze
    verifies them, and make install into a DESTDIR with libemq's export
    list. Real processes, as every test in tests/.
*/
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

//  Writes text to <dir>/<name>; returns the path (static per call).
static const char *
s_write (h_test_t *t, const char *name, const char *text)
{
    static char path[H_PATH_MAX + 64];
    snprintf (path, sizeof path, "%s/%s", t->dir, name);
    FILE *file = fopen (path, "w");
    REQUIRE_MSG (file, "cannot write %s: %s", path, strerror (errno));
    fputs (text, file);
    fclose (file);
    return path;
}

//  The output of a shell command (caller frees), its exit status in *rc.
static char *
s_shell (const char *command, int *rc)
{
    FILE *pipe = popen (command, "r");
    REQUIRE_MSG (pipe, "popen %s: %s", command, strerror (errno));
    char *out = NULL;
    size_t size = 0;
    FILE *mem = open_memstream (&out, &size);
    char buf[4096];
    size_t n;
    while ((n = fread (buf, 1, sizeof buf, pipe)) > 0)
        fwrite (buf, 1, n, mem);
    fclose (mem);
    int status = pclose (pipe);
    *rc = WIFEXITED (status) ? WEXITSTATUS (status) : -1;
    return out;
}

//  ---------------------------------------------------------------------
//  SIGHUP

//  The router reloads its file: log level and HWM are applied (debug lines
//  appear, STATUS shows the new HWM, a REQUEST past it is refused), a
//  setting that needs a restart is named as such, a broken file keeps the
//  running configuration; three SIGHUPs later it still serves.
static void
test_sighup_router (h_test_t *t)
{
    char conf[H_PATH_MAX + 64];
    snprintf (
        conf, sizeof conf, "%s",
        s_write (t, "router.conf", "[router]\nlog_level = info\nqueue_hwm = 1000\n"));
    const char *args[] = { "--config",    conf,       "--frontend", t->frontend,
                           "--backend",   t->backend, "--admin",    t->admin,
                           "--in-memory", NULL };
    pid_t router = h_spawn (t, "router", true, "emq-router", args);
    json_t *status = NULL;
    REQUIRE_WAIT ((status = h_admin (t, "STATUS")) != NULL, 10000);
    json_decref (status);
    //  Two jobs wait in queue q (no job manager serves it).
    h_cli_t r;
    for (int i = 0; i < 2; i++) {
        h_cli (t, &r, 10000, "submit", "--queue", "q", "exec", "--", "/bin/true", NULL);
        REQUIRE_INT (r.status, ==, 0);
        h_cli_free (&r);
    }
    REQUIRE_INT (h_log_count (t, "router", " D (emq-router)"), ==, 0);

    s_write (t, "router.conf",
             "[router]\nlog_level = debug\nqueue_hwm = 2\nmax_message_size = 4096\n");
    REQUIRE_INT (kill (router, SIGHUP), ==, 0);
    REQUIRE_WAIT (h_log_count (t, "router", "SIGHUP: configuration reloaded") == 1, 5000);
    REQUIRE (h_pid_alive (router));
    REQUIRE_INT (h_log_count (t, "router", "log_level 'info' -> 'debug', applied"), ==,
                 1);
    REQUIRE_INT (h_log_count (t, "router", "queue_hwm '1000' -> '2', applied"), ==, 1);
    REQUIRE_INT (h_log_count (t, "router",
                              "max_message_size '16777216' -> '4096' needs a "
                              "restart"),
                 ==, 1);
    //  Applied: the HWM shows and refuses, debug lines are written.
    status = h_admin (t, "STATUS");
    REQUIRE (status);
    json_t *queues = h_jget (status, "queues", NULL);
    json_t *q = NULL;
    size_t i;
    json_t *item;
    json_array_foreach (
        queues, i,
        item) if (json_is_object (item) && json_is_string (json_object_get (item, "name"))
                  && streq (json_string_value (json_object_get (item, "name")), "q")) q =
        item;
    if (!q && json_is_object (queues))
        q = json_object_get (queues, "q");
    REQUIRE_MSG (q, "no queue q in STATUS");
    REQUIRE_INT (h_jint (q, -1, "hwm", NULL), ==, 2);
    json_decref (status);
    h_cli (t, &r, 10000, "submit", "--queue", "q", "exec", "--", "/bin/true", NULL);
    REQUIRE_INT (r.status, !=, 0);
    h_cli_free (&r);
    //  An accepted job's state changes are debug lines.
    h_cli (t, &r, 10000, "submit", "--queue", "other", "exec", "--", "/bin/true", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    REQUIRE_WAIT (h_log_count (t, "router", " D (emq-router)") > 0, 5000);

    //  A broken file: logged, nothing changes, still serving.
    s_write (t, "router.conf", "[router]\nqueue_hwm = many\n");
    REQUIRE_INT (kill (router, SIGHUP), ==, 0);
    REQUIRE_WAIT (h_log_count (t, "router", "configuration not reloaded") == 1, 5000);
    //  Signals that come together merge into one: one at a time.
    for (size_t n = 2; n <= 4; n++) {
        REQUIRE_INT (kill (router, SIGHUP), ==, 0);
        REQUIRE_WAIT (h_log_count (t, "router", "configuration not reloaded") == n, 5000);
    }
    REQUIRE (h_pid_alive (router));
    status = h_admin (t, "STATUS");
    REQUIRE (status);
    json_decref (status);
    REQUIRE_INT (kill (router, SIGTERM), ==, 0);
    int wstatus = 0;
    REQUIRE (h_proc_wait (t, router, 10000, &wstatus));
    REQUIRE (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0);
}

//  The scheduler and the job manager keep running on SIGHUP and take the
//  new log level (debug lines appear after it, none before).
static void
test_sighup_scheduler_jm (h_test_t *t)
{
    h_router (t, "router", "--in-memory", NULL);
    char sched_conf[H_PATH_MAX + 64], jm_conf[H_PATH_MAX + 64], data[H_PATH_MAX + 16];
    snprintf (sched_conf, sizeof sched_conf, "%s",
              s_write (t, "sched.conf", "[scheduler]\nlog_level = info\n"));
    snprintf (jm_conf, sizeof jm_conf, "%s",
              s_write (t, "jm.conf", "[jobmanager]\nlog_level = info\n"));
    snprintf (data, sizeof data, "%s/sched", t->dir);
    const char *sched_args[] = { "--config",   sched_conf, "--router",
                                 t->frontend,  "--admin",  t->admin,
                                 "--data-dir", data,       "--heartbeat-interval",
                                 "0.2",        NULL };
    pid_t sched = h_spawn (t, "sched", true, "emq-scheduler", sched_args);
    const char *jm_args[] = { "--config",
                              jm_conf,
                              "--backend-addr",
                              t->backend,
                              "--name",
                              "hupjm",
                              "--concurrent-jobs",
                              "1",
                              "--heartbeat-interval",
                              "0.2",
                              NULL };
    pid_t jm = h_spawn (t, "hupjm", true, "emq-jobmanager", jm_args);
    h_wait_jm (t, "hupjm", 10000, NULL);
    REQUIRE_WAIT (h_log_count (t, "sched", "scheduler") > 0, 5000);
    REQUIRE_INT (h_log_count (t, "sched", " D (emq-scheduler)"), ==, 0);
    REQUIRE_INT (h_log_count (t, "hupjm", " D (emq-jobmanager)"), ==, 0);

    s_write (t, "sched.conf", "[scheduler]\nlog_level = debug\nmisfire_grace = 9\n");
    s_write (t, "jm.conf", "[jobmanager]\nlog_level = debug\n");
    REQUIRE_INT (kill (sched, SIGHUP), ==, 0);
    REQUIRE_INT (kill (jm, SIGHUP), ==, 0);
    REQUIRE_WAIT (h_log_count (t, "sched", "SIGHUP: configuration reloaded") == 1, 5000);
    REQUIRE_WAIT (h_log_count (t, "hupjm", "SIGHUP: configuration reloaded") == 1, 5000);
    REQUIRE_INT (h_log_count (t, "sched", "log_level 'info' -> 'debug', applied"), ==, 1);
    REQUIRE_INT (h_log_count (t, "sched", "misfire_grace '5' -> '9', applied"), ==, 1);
    REQUIRE_INT (h_log_count (t, "hupjm", "log_level info -> debug"), ==, 1);
    //  Heartbeats from the router are logged at debug now.
    REQUIRE_WAIT (h_log_count (t, "sched", " D (emq-scheduler)") > 0, 5000);
    REQUIRE_WAIT (h_log_count (t, "hupjm", " D (emq-jobmanager)") > 0, 5000);
    for (size_t n = 2; n <= 4; n++) {
        REQUIRE_INT (kill (sched, SIGHUP), ==, 0);
        REQUIRE_INT (kill (jm, SIGHUP), ==, 0);
        REQUIRE_WAIT (h_log_count (t, "sched", "SIGHUP: configuration reloaded") == n,
                      5000);
        REQUIRE_WAIT (h_log_count (t, "hupjm", "SIGHUP: configuration reloaded") == n,
                      5000);
    }
    REQUIRE (h_pid_alive (sched));
    REQUIRE (h_pid_alive (jm));
    REQUIRE (h_jm_registered (t, "hupjm"));
    REQUIRE_INT (kill (sched, SIGTERM), ==, 0);
    int status = 0;
    REQUIRE (h_proc_wait (t, sched, 10000, &status));
    REQUIRE (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

//  ---------------------------------------------------------------------
//  sd_notify

//  Our stand-in for systemd's notify socket.
static int
s_notify_socket (h_test_t *t, char *path, size_t size)
{
    snprintf (path, size, "%s/notify", t->dir);
    int sock = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE (sock >= 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    size_t len = strlen (path);
    REQUIRE (len < sizeof addr.sun_path);
    memcpy (addr.sun_path, path, len + 1);
    REQUIRE_MSG (bind (sock, (struct sockaddr *) &addr, sizeof addr) == 0, "bind %s: %s",
                 path, strerror (errno));
    return sock;
}

//  Waits up to timeout_ms for a datagram containing want; the datagrams
//  before it are appended to seen (may be NULL).
static bool
s_notified (int sock, const char *want, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (clock_mono_ms () < deadline) {
        char buf[1024];
        ssize_t n = recv (sock, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n > 0) {
            buf[n] = 0;
            if (strstr (buf, want))
                return true;
            continue;
        }
        h_nap ();
    }
    return false;
}

static void
test_notify (h_test_t *t)
{
    char path[H_PATH_MAX + 16];
    int sock = s_notify_socket (t, path, sizeof path);
    setenv ("NOTIFY_SOCKET", path, 1);
    setenv ("WATCHDOG_USEC", "200000", 1);  // a ping every 100 ms
    pid_t router = h_router (t, "router", "--in-memory", NULL);
    REQUIRE_MSG (s_notified (sock, "READY=1", 5000), "the router sent no READY=1");
    REQUIRE_MSG (s_notified (sock, "WATCHDOG=1", 2000), "the router sent no WATCHDOG=1");
    REQUIRE_MSG (s_notified (sock, "WATCHDOG=1", 2000), "only one WATCHDOG=1");
    REQUIRE_INT (kill (router, SIGHUP), ==, 0);
    REQUIRE_MSG (s_notified (sock, "RELOADING=1", 5000), "no RELOADING=1 on SIGHUP");
    REQUIRE_MSG (s_notified (sock, "READY=1", 5000), "no READY=1 after the reload");

    //  The job manager and the scheduler say READY too.
    pid_t jm = h_jm (t, "njm", "[[10,\"default\"]]", 1, NULL);
    REQUIRE_MSG (s_notified (sock, "READY=1\nSTATUS=running", 10000),
                 "the job manager sent no READY=1");
    char data[H_PATH_MAX + 16];
    snprintf (data, sizeof data, "%s/sched", t->dir);
    const char *sched_args[] = { "--router",   t->frontend, "--admin", t->admin,
                                 "--data-dir", data,        NULL };
    h_spawn (t, "sched", true, "emq-scheduler", sched_args);
    REQUIRE_MSG (s_notified (sock, "READY=1\nSTATUS=running", 10000),
                 "the scheduler sent no READY=1");
    REQUIRE_INT (kill (jm, SIGTERM), ==, 0);
    REQUIRE_MSG (s_notified (sock, "STOPPING=1", 5000),
                 "the job manager sent no STOPPING=1");
    REQUIRE_INT (kill (router, SIGTERM), ==, 0);
    REQUIRE_MSG (s_notified (sock, "STOPPING=1", 5000), "the router sent no STOPPING=1");
    unsetenv ("NOTIFY_SOCKET");
    unsetenv ("WATCHDOG_USEC");
    close (sock);
}

//  ---------------------------------------------------------------------
//  Units and install

//  The source tree: the build directory's parent.
static const char *
s_source_dir (void)
{
    static char dir[PATH_MAX];
    snprintf (dir, sizeof dir, "%s", h_build_dir ());
    return dirname (dir);
}

//  The PREFIX this build was made for (emq-paths.h), so that make install
//  rebuilds nothing.
static void
s_build_prefix (char *prefix, size_t size)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/include/emq-paths.h", h_build_dir ());
    FILE *file = fopen (path, "r");
    REQUIRE_MSG (file, "cannot read %s", path);
    char line[1024];
    *prefix = 0;
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "#define EMQ_PREFIX \"%1000[^\"]\"", prefix) == 1)
            break;
    fclose (file);
    REQUIRE_MSG (*prefix == '/', "no EMQ_PREFIX in %s", path);
    (void) size;
}

static void
test_units (h_test_t *t)
{
    int rc;
    free (s_shell ("command -v systemd-analyze >/dev/null 2>&1", &rc));
    if (rc != 0) {
        printf ("    (systemd-analyze not installed: units not verified)\n");
        return;
    }
    //  The units as built, with ExecStart pointing at this build's programs
    //  (verify checks that the command exists).
    char command[4 * PATH_MAX];
    snprintf (command, sizeof command,
              "cd '%s' && for f in '%s'/systemd/*.service; do "
              "sed \"s|^ExecStart=[^ ]*/bin/|ExecStart=%s/bin/|\" \"$f\" > \"$(basename "
              "\"$f\")\"; "
              "done && ls *.service",
              t->dir, h_build_dir (), h_build_dir ());
    char *out = s_shell (command, &rc);
    REQUIRE_INT (rc, ==, 0);
    REQUIRE_CONTAINS (out, "emq-router.service");
    REQUIRE_CONTAINS (out, "emq-jobmanager@.service");
    REQUIRE_CONTAINS (out, "emq-scheduler.service");
    REQUIRE_CONTAINS (out, "emq-pubsub.service");
    free (out);
    snprintf (
        command, sizeof command,
        "cd '%s' && systemd-analyze verify --man=no ./emq-router.service "
        "./emq-scheduler.service ./emq-jobmanager@.service ./emq-pubsub.service 2>&1",
        t->dir);
    out = s_shell (command, &rc);
    //  Warnings do not change verify's status: any output is a finding.
    REQUIRE_MSG (rc == 0 && *out == 0, "systemd-analyze verify (status %d): %s", rc, out);
    free (out);
    //  And verify does find faults: a unit with a bad type is reported.
    snprintf (
        command, sizeof command,
        "cd '%s' && sed 's/^Type=notify/Type=nonsense/' emq-router.service > bad.service"
        " && systemd-analyze verify --man=no ./bad.service 2>&1",
        t->dir);
    out = s_shell (command, &rc);
    REQUIRE_CONTAINS (out, "nonsense");
    free (out);
}

//  Every path make install writes, relative to DESTDIR + PREFIX ("etc/"
//  is SYSCONFDIR: PREFIX/etc, or /etc for PREFIX=/usr).
static const char *s_installed[] = {
    "bin/emq-router",
    "bin/emq-jobmanager",
    "bin/emq-cli",
    "bin/emq-scheduler",
    "bin/emq-pubsub",
    "include/emq/client.h",
    "include/emq/job.h",
    "include/emq/version.h",
    "lib/libemq.so.0.1.0",
    "lib/libemq.so.0",
    "lib/libemq.so",
    "lib/pkgconfig/libemq.pc",
    "lib/emq/plugins/libemq_examples.so",
    "lib/systemd/system/emq-router.service",
    "lib/systemd/system/emq-jobmanager@.service",
    "lib/systemd/system/emq-scheduler.service",
    "lib/systemd/system/emq-pubsub.service",
    "share/man/man1/emq-cli.1",
    "share/man/man1/emq-jobmanager.1",
    "share/man/man1/emq-pubsub.1",
    "share/man/man1/emq-router.1",
    "share/man/man1/emq-scheduler.1",
    "etc/emq/emq.conf.sample",
};

static void
test_install (h_test_t *t)
{
    char prefix[1024];
    s_build_prefix (prefix, sizeof prefix);
    bool usr = streq (prefix, "/usr");
    char destdir[H_PATH_MAX + 16];
    snprintf (destdir, sizeof destdir, "%s/root", t->dir);
    char command[4 * PATH_MAX];
    snprintf (command, sizeof command,
              "make -s -C '%s' BUILD='%s' PREFIX='%s' DESTDIR='%s' install 2>&1",
              s_source_dir (), h_build_dir (), prefix, destdir);
    int rc;
    char *out = s_shell (command, &rc);
    REQUIRE_MSG (rc == 0, "make install failed (%d): %s", rc, out);
    free (out);

    //  Exactly the expected files, nothing else, nothing outside DESTDIR.
    snprintf (command, sizeof command, "cd '%s' && find . ! -type d | sort", destdir);
    out = s_shell (command, &rc);
    REQUIRE_INT (rc, ==, 0);
    size_t expected = sizeof s_installed / sizeof s_installed[0];
    for (size_t i = 0; i < expected; i++) {
        char want[2048];
        if (strncmp (s_installed[i], "etc/", 4) == 0)
            snprintf (want, sizeof want, "./%s%s\n", usr ? "" : prefix + 1,
                      usr ? s_installed[i] : "");
        else
            want[0] = 0;
        if (!*want || !usr)
            snprintf (want, sizeof want, ".%s/%s\n", prefix, s_installed[i]);
        REQUIRE_CONTAINS (out, want);
    }
    size_t lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    REQUIRE_MSG (lines == expected, "%zu files installed, %zu expected:\n%s", lines,
                 expected, out);
    free (out);

    char path[2 * PATH_MAX];
    char link[PATH_MAX];
    snprintf (path, sizeof path, "%s%s/lib/libemq.so.0", destdir, prefix);
    ssize_t n = readlink (path, link, sizeof link - 1);
    REQUIRE (n > 0);
    link[n] = 0;
    REQUIRE_STREQ (link, "libemq.so.0.1.0");
    snprintf (path, sizeof path, "%s%s/lib/libemq.so", destdir, prefix);
    n = readlink (path, link, sizeof link - 1);
    REQUIRE (n > 0);
    link[n] = 0;
    REQUIRE_STREQ (link, "libemq.so.0");

    //  The pc file, the units and the job manager name PREFIX.
    snprintf (command, sizeof command,
              "PKG_CONFIG_PATH='%s%s/lib/pkgconfig' pkg-config --variable=libdir libemq",
              destdir, prefix);
    out = s_shell (command, &rc);
    REQUIRE_INT (rc, ==, 0);
    char want[2048];
    snprintf (want, sizeof want, "%s/lib\n", prefix);
    REQUIRE_STREQ (out, want);
    free (out);
    snprintf (command, sizeof command,
              "grep -h '^ExecStart=' '%s%s'/lib/systemd/system/*.service", destdir,
              prefix);
    out = s_shell (command, &rc);
    snprintf (want, sizeof want, "ExecStart=%s/bin/emq-router ", prefix);
    REQUIRE_CONTAINS (out, want);
    snprintf (want, sizeof want, "ExecStart=%s/bin/emq-jobmanager ", prefix);
    REQUIRE_CONTAINS (out, want);
    free (out);
    snprintf (
        command, sizeof command,
        "EVENTMQ_CONFIG_FILE=/dev/null '%s%s/bin/emq-jobmanager' --help >/dev/null && "
        "'%s%s/bin/emq-router' --version",
        destdir, prefix, destdir, prefix);
    out = s_shell (command, &rc);
    REQUIRE_INT (rc, ==, 0);
    REQUIRE_CONTAINS (out, "emq-router 0.1.0");
    free (out);
    snprintf (command, sizeof command,
              "grep -c 'EMQ_PLUGIN_DIR \"%s/lib/emq/plugins\"' '%s/include/emq-paths.h'",
              prefix, h_build_dir ());
    out = s_shell (command, &rc);
    REQUIRE_MSG (rc == 0, "the plugin directory compiled in is not under %s", prefix);
    free (out);

    //  libemq exports its API and nothing else.
    snprintf (command, sizeof command,
              "nm -D --defined-only '%s%s/lib/libemq.so.0' | awk '{sub(/@.*/, \"\", $3); "
              "print $3}' | sort -u",
              destdir, prefix);
    out = s_shell (command, &rc);
    REQUIRE_INT (rc, ==, 0);
    REQUIRE_CONTAINS (out, "emq_client_new\n");
    REQUIRE_CONTAINS (out, "emq_submit\n");
    size_t exported = 0;
    char *save = NULL;
    for (char *sym = strtok_r (out, "\n", &save); sym;
         sym = strtok_r (NULL, "\n", &save)) {
        //  The version node is an absolute symbol of the library itself.
        if (streq (sym, "LIBEMQ_0"))
            continue;
        REQUIRE_MSG (strncmp (sym, "emq_", 4) == 0, "libemq exports '%s'", sym);
        exported++;
    }
    REQUIRE (exported >= 10);
    free (out);

    //  Another PREFIX reaches every generated file (a separate build dir:
    //  only the generated text files are made there, nothing compiled).
    snprintf (
        command, sizeof command,
        "make -s -C '%s' BUILD='%s/b' PREFIX=/opt/emq-x '%s/b/lib/libemq.pc' "
        "'%s/b/systemd/emq-router.service' '%s/b/etc/emq.conf.sample' 2>&1 && "
        "grep -h '/opt/emq-x' '%s/b/lib/libemq.pc' '%s/b/systemd/emq-router.service' "
        "'%s/b/etc/emq.conf.sample' '%s/b/include/emq-paths.h'",
        s_source_dir (), t->dir, t->dir, t->dir, t->dir, t->dir, t->dir, t->dir, t->dir);
    out = s_shell (command, &rc);
    REQUIRE_MSG (rc == 0, "generated files for PREFIX=/opt/emq-x (%d): %s", rc, out);
    REQUIRE_CONTAINS (out, "libdir=/opt/emq-x/lib");
    REQUIRE_CONTAINS (out, "ExecStart=/opt/emq-x/bin/emq-router");
    REQUIRE_CONTAINS (out, "/opt/emq-x/etc/emq/emq.conf");
    REQUIRE_CONTAINS (out, "EMQ_PLUGIN_DIR \"/opt/emq-x/lib/emq/plugins\"");
    free (out);
}

//  A program linked as docs/client.md says starts from the build tree.
static void
test_build_tree_link (h_test_t *t)
{
    const char *source =
        s_write (t, "prog.c",
                 "#include <emq/client.h>\n#include <stdio.h>\n"
                 "int main (void) {\n"
                 "    emq_client_t *c = emq_client_new (\"ipc:///nonexistent\");\n"
                 "    printf (\"%s\\n\", c ? \"client\" : \"none\");\n"
                 "    emq_client_destroy (&c);\n    return 0;\n}\n");
    char command[4 * PATH_MAX];
    snprintf (command, sizeof command,
              "cd '%s' && cc %s -o '%s/prog' '%s' -Iinclude -L'%s/lib' -lemq 2>&1 && "
              "LD_LIBRARY_PATH='%s/lib' '%s/prog' 2>&1",
              s_source_dir (),
#if defined(__SANITIZE_ADDRESS__)
              "-fsanitize=address,undefined",
#else
              "",
#endif
              t->dir, source, h_build_dir (), h_build_dir (), t->dir);
    int rc;
    char *out = s_shell (command, &rc);
    REQUIRE_MSG (rc == 0, "build-tree link (%d): %s", rc, out);
    REQUIRE_CONTAINS (out, "client\n");
    free (out);
}

//  ---------------------------------------------------------------------
//  emq-cli fixes

static void
test_cli_fixes (h_test_t *t)
{
    //  With a data directory: ended jobs are kept (result_ttl), so a msgid
    //  submitted again is known.
    h_router (t, "router", NULL);
    char plugins[PATH_MAX], data[H_PATH_MAX + 16];
    snprintf (plugins, sizeof plugins, "%s/plugins", h_build_dir ());
    //  --plugin-dirs, the setting's name, is a flag too.
    h_jm (t, "cjm", "[[10,\"default\"]]", 1, "--plugin-dirs", plugins, NULL);
    h_wait_jm (t, "cjm", 10000, NULL);
    snprintf (data, sizeof data, "%s/sched", t->dir);
    const char *sched_args[] = { "--router",
                                 t->frontend,
                                 "--admin",
                                 t->admin,
                                 "--data-dir",
                                 data,
                                 "--heartbeat-interval",
                                 "0.2",
                                 NULL };
    h_spawn (t, "sched", true, "emq-scheduler", sched_args);
    h_cli_t r;
    REQUIRE_WAIT ((h_cli (t, &r, 5000, "schedules", NULL),
                   r.status == 0 && !strstr (r.out, "no scheduler connected"))
                      || (h_cli_free (&r), false),
                  10000);
    h_cli_free (&r);

    //  unschedule of an unknown name is an error (8: no such schedule).
    h_cli (t, &r, 10000, "unschedule", "nosuch", NULL);
    REQUIRE_INT (r.status, ==, 8);
    REQUIRE_CONTAINS (r.err, "no such schedule");
    h_cli_free (&r);
    //  schedules right after schedule shows it; after unschedule, not.
    h_cli (t, &r, 10000, "schedule", "--name", "tick", "--every", "1h", "--nohaste",
           "exec", "--", "/bin/true", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "schedules", "--json", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_CONTAINS (r.out, "\"name\":\"tick\"");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "unschedule", "tick", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "schedules", "--json", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_MSG (!strstr (r.out, "\"tick\""), "tick still listed: %s", r.out);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "unschedule", "tick", NULL);
    REQUIRE_INT (r.status, ==, 8);
    h_cli_free (&r);

    //  A job the job manager refuses (not in its allow-list) exits 4.
    h_cli (t, &r, 10000, "submit", "--wait", "exec", "--", "/usr/bin/env", NULL);
    REQUIRE_INT (r.status, ==, 4);
    h_cli_free (&r);

    //  submit --help is submit's help.
    h_cli (t, &r, 10000, "submit", "--help", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_CONTAINS (r.out, "usage: emq-cli submit");
    REQUIRE_CONTAINS (r.out, "--msgid ID");
    REQUIRE_MSG (!strstr (r.out, "disconnect"), "global help printed: %s", r.out);
    h_cli_free (&r);

    //  --msgid: the caller's id; the same id again is ACKed, not run again
    //  (each run appends a line to a file; one worker runs jobs in order,
    //  so once the job after it is done, a second run would be there).
    char script[2 * H_PATH_MAX];
    snprintf (script, sizeof script, "echo run >> '%s/runs'; echo once", t->dir);
    h_cli (t, &r, 10000, "submit", "--msgid", "nightly-2026-12-02", "--wait", "exec",
           "--", "/bin/sh", "-c", script, NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_STREQ (h_chomp (r.out), "once");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "submit", "--msgid", "nightly-2026-12-02", "exec", "--",
           "/bin/sh", "-c", script, NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_STREQ (h_chomp (r.out), "nightly-2026-12-02");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "submit", "--wait", "exec", "--", "/bin/true", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    char runs_path[H_PATH_MAX + 16];
    snprintf (runs_path, sizeof runs_path, "%s/runs", t->dir);
    FILE *runs = fopen (runs_path, "r");
    REQUIRE (runs);
    char text[256] = "";
    size_t n = fread (text, 1, sizeof text - 1, runs);
    fclose (runs);
    text[n] = 0;
    REQUIRE_STREQ (text, "run\n");
    h_cli (t, &r, 10000, "submit", "--msgid", "has space", "exec", "--", "/bin/true",
           NULL);
    REQUIRE_INT (r.status, ==, 2);
    h_cli_free (&r);

    //  --frontend-addr and --administrative-addr are the settings' flags
    //  (given after h_cli's --addr/--admin-addr, they win).
    h_cli (t, &r, 10000, "--connect-timeout", "0.5", "--administrative-addr",
           "ipc:///nonexistent/admin", "status", NULL);
    REQUIRE_INT (r.status, ==, 3);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "--administrative-addr", t->admin, "--frontend-addr",
           t->frontend, "submit", "--wait", "exec", "--", "/bin/echo", "ok", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_STREQ (h_chomp (r.out), "ok");
    h_cli_free (&r);
}

//  ---------------------------------------------------------------------
//  Job and queue admin

//  emq-cli COMMAND --json ARGS..., parsed (fails the test unless it exits
//  0). Up to five arguments; the first NULL ends them.
static json_t *
s_cli_json (h_test_t *t, const char *command, const char *a1, const char *a2,
            const char *a3, const char *a4, const char *a5)
{
    h_cli_t r;
    h_cli (t, &r, 10000, command, "--json", a1, a2, a3, a4, a5, NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli %s %s: status %d: %s", command, a1 ? a1 : "",
                 r.status, r.err);
    json_t *root = json_loads (r.out, 0, NULL);
    REQUIRE_MSG (root, "emq-cli %s: not JSON: %s", command, r.out);
    h_cli_free (&r);
    return root;
}

//  The number of jobs in a state (and queue), as ADMIN jobs counts them.
static long long
s_jobs_total (h_test_t *t, const char *queue, const char *state)
{
    json_t *root = s_cli_json (t, "jobs", "--queue", queue, "--state", state, NULL);
    long long total = h_jint (root, -1, "total", NULL);
    json_decref (root);
    return total;
}

//  Submits an exec job to queue; returns its msgid (static per call site).
static void
s_submit (h_test_t *t, const char *queue, char *msgid, const char *a1, const char *a2)
{
    h_cli_t r;
    h_cli (t, &r, 10000, "submit", "--queue", queue, "exec", "--", a1, a2, NULL);
    REQUIRE_MSG (r.status == 0, "submit: %d %s", r.status, r.err);
    snprintf (msgid, 64, "%s", h_chomp (r.out));
    h_cli_free (&r);
}

static void
test_admin (h_test_t *t)
{
    pid_t router = h_router (t, "router", NULL);
    h_jm (t, "ajm", "[[10,\"q\"],[10,\"other\"]]", 1, NULL);
    h_wait_jm (t, "ajm", 10000, NULL);
    h_cli_t r;

    //  A paused queue takes jobs and dispatches none.
    h_cli (t, &r, 10000, "queue", "pause", "q", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_STREQ (h_chomp (r.out), "queue q: paused");
    h_cli_free (&r);
    char ids[3][64];
    for (int i = 0; i < 3; i++)
        s_submit (t, "q", ids[i], "/bin/echo", "paused");
    //  The job manager is free and working: a job of another queue runs.
    h_cli (t, &r, 10000, "submit", "--queue", "other", "--wait", "exec", "--",
           "/bin/echo", "flows", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    REQUIRE_INT (s_jobs_total (t, "q", "waiting"), ==, 3);

    //  Paging: in order, limit and offset.
    json_t *page = s_cli_json (t, "jobs", "--queue", "q", "--limit", "2", NULL);
    REQUIRE_INT (json_array_size (json_object_get (page, "jobs")), ==, 2);
    REQUIRE_INT (h_jint (page, -1, "total", NULL), ==, 3);
    REQUIRE_STREQ (
        json_string_value (
            h_jget (json_array_get (json_object_get (page, "jobs"), 0), "msgid", NULL)),
        ids[0]);
    json_decref (page);
    page = s_cli_json (t, "jobs", "--queue", "q", "--offset", "2", NULL);
    REQUIRE_INT (json_array_size (json_object_get (page, "jobs")), ==, 1);
    REQUIRE_STREQ (
        json_string_value (
            h_jget (json_array_get (json_object_get (page, "jobs"), 0), "msgid", NULL)),
        ids[2]);
    json_decref (page);

    //  One job: its state, headers, payload (msgpack shown as JSON).
    json_t *job = s_cli_json (t, "job", ids[1], NULL, NULL, NULL, NULL);
    REQUIRE_STREQ (json_string_value (h_jget (job, "job", "state", NULL)), "waiting");
    REQUIRE_STREQ (json_string_value (h_jget (job, "job", "queue", NULL)), "q");
    REQUIRE_STREQ (json_string_value (h_jget (job, "job", "payload_encoding", NULL)),
                   "msgpack");
    char *payload = json_dumps (h_jget (job, "job", "payload", NULL), JSON_ENCODE_ANY);
    REQUIRE_CONTAINS (payload, "/bin/echo");
    REQUIRE_CONTAINS (payload, "paused");
    free (payload);
    REQUIRE (json_is_array (h_jget (job, "job", "history", NULL)));
    json_decref (job);

    //  The pause survives a restart of the router.
    REQUIRE_INT (kill (router, SIGTERM), ==, 0);
    REQUIRE (h_proc_wait (t, router, 10000, NULL));
    router = h_router (t, "router2", NULL);
    REQUIRE_WAIT (h_jm_registered (t, "ajm"), 10000);
    json_t *status = h_admin (t, "STATUS");
    REQUIRE (status);
    REQUIRE (json_is_true (h_jget (status, "queues", "q", "paused", NULL)));
    json_decref (status);
    REQUIRE_INT (s_jobs_total (t, "q", "waiting"), ==, 3);

    //  Resumed: they run.
    h_cli (t, &r, 10000, "queue", "resume", "q", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_STREQ (h_chomp (r.out), "queue q: running");
    h_cli_free (&r);
    for (int i = 0; i < 3; i++) {
        h_cli (t, &r, 10000, "result", ids[i], "--wait", "--wait-timeout", "10", NULL);
        REQUIRE_INT (r.status, ==, 0);
        REQUIRE_STREQ (h_chomp (r.out), "paused");
        h_cli_free (&r);
    }

    //  Purge cancels what waits.
    h_cli (t, &r, 10000, "queue", "pause", "q", NULL);
    h_cli_free (&r);
    s_submit (t, "q", ids[0], "/bin/echo", "purged");
    s_submit (t, "q", ids[1], "/bin/echo", "purged");
    json_t *purged = s_cli_json (t, "queue", "purge", "q", NULL, NULL, NULL);
    REQUIRE_INT (h_jint (purged, -1, "purged", NULL), ==, 2);
    json_decref (purged);
    REQUIRE_INT (s_jobs_total (t, "q", "waiting"), ==, 0);
    h_cli (t, &r, 10000, "result", ids[0], "--json", NULL);
    REQUIRE_CONTAINS (r.out, "cancelled");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "queue", "resume", "q", NULL);
    h_cli_free (&r);

    //  Quiet: the running job finishes, no new one starts; resume: it does.
    char running[64], next[64];
    s_submit (t, "q", running, "/bin/sleep", "1");
    REQUIRE_WAIT (s_jobs_total (t, "q", "running") == 1, 5000);
    page = s_cli_json (t, "jobs", "--state", "running", NULL, NULL, NULL);
    REQUIRE_STREQ (
        json_string_value (
            h_jget (json_array_get (json_object_get (page, "jobs"), 0), "msgid", NULL)),
        running);
    REQUIRE_CONTAINS (
        json_string_value (h_jget (json_array_get (json_object_get (page, "jobs"), 0),
                                   "jobmanager", NULL)),
        "ajm-");
    json_decref (page);
    h_cli (t, &r, 10000, "jobmanager", "quiet", "ajm", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_CONTAINS (r.out, ": quiet");
    h_cli_free (&r);
    s_submit (t, "q", next, "/bin/echo", "after");
    h_cli (t, &r, 10000, "result", running, "--wait", "--wait-timeout", "10", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    //  Its slot came back with the DONE, in the same turn a dispatch would.
    REQUIRE_INT (s_jobs_total (t, "q", "waiting"), ==, 1);
    json_t *info = h_jm_info (t, "ajm", NULL);
    REQUIRE (info && json_is_true (json_object_get (info, "quiet")));
    json_decref (info);
    h_cli (t, &r, 10000, "jobmanager", "resume", "ajm", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "result", next, "--wait", "--wait-timeout", "10", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_STREQ (h_chomp (r.out), "after");
    h_cli_free (&r);

    //  Dead jobs are listed and shown with their outcome and history.
    //  (Without retries a failed job is just failed; one retry: it backs
    //  off as "retrying", then is dead.)
    char dead[64];
    h_cli (t, &r, 10000, "submit", "--queue", "q", "--retries", "1", "exec", "--",
           "/bin/false", NULL);
    REQUIRE_INT (r.status, ==, 0);
    snprintf (dead, sizeof dead, "%s", h_chomp (r.out));
    h_cli_free (&r);
    REQUIRE_WAIT (s_jobs_total (t, "q", "retrying") == 1, 10000);
    REQUIRE_WAIT (s_jobs_total (t, "q", "dead") == 1, 10000);
    job = s_cli_json (t, "job", dead, NULL, NULL, NULL, NULL);
    REQUIRE_STREQ (json_string_value (h_jget (job, "job", "state", NULL)), "dead");
    REQUIRE_INT (json_array_size (h_jget (job, "job", "history", NULL)), >=, 2);
    REQUIRE (h_jget (job, "job", "error", NULL) != NULL);
    json_decref (job);

    //  Errors: no such job or job manager (8), bad arguments (2), a bad
    //  request on the wire (refused with a reason).
    h_cli (t, &r, 10000, "job", "nosuch", NULL);
    REQUIRE_INT (r.status, ==, 8);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "jobmanager", "quiet", "nosuch", NULL);
    REQUIRE_INT (r.status, ==, 8);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "jobs", "--state", "bogus", NULL);
    REQUIRE_INT (r.status, ==, 2);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "queue", "explode", "q", NULL);
    REQUIRE_INT (r.status, ==, 2);
    h_cli_free (&r);
    char *reply = NULL;
    REQUIRE_INT (
        emq_admin_request (t->admin, "{\"command\":\"nonsense\"}", h_ms (5000), &reply),
        ==, EMQ_ERR_REJECTED);
    REQUIRE_CONTAINS (reply, "BAD_REQUEST");
    free (reply);
    REQUIRE_INT (emq_admin_request (t->admin, "{\"command\":\"jobs\",\"limit\":\"x\"}",
                                    h_ms (5000), &reply),
                 ==, EMQ_ERR_REJECTED);
    free (reply);
    REQUIRE_INT (emq_admin_request (t->admin, "not json", h_ms (5000), &reply), ==,
                 EMQ_ERR_INVALID);
    free (reply);
    REQUIRE (h_pid_alive (router));
}

//  emq-pubsub takes a SIGHUP as the others do: it keeps forwarding, applies
//  the log level, and names an address change as needing a restart.
static void
test_sighup_pubsub (h_test_t *t)
{
    char in[H_PATH_MAX + 16], out[H_PATH_MAX + 16], conf_text[3 * H_PATH_MAX];
    snprintf (in, sizeof in, "ipc://%s/pub-in", t->dir);
    snprintf (out, sizeof out, "ipc://%s/pub-out", t->dir);
    snprintf (conf_text, sizeof conf_text,
              "[publisher]\nlog_level = info\npublisher_incoming_addr = %s\n"
              "publisher_outgoing_addr = %s\n",
              in, out);
    char conf[H_PATH_MAX + 64];
    snprintf (conf, sizeof conf, "%s", s_write (t, "pubsub.conf", conf_text));
    const char *args[] = { "--config", conf, NULL };
    pid_t pubsub = h_spawn (t, "pubsub", true, "emq-pubsub", args);
    REQUIRE_WAIT (h_log_count (t, "pubsub", "pubsub") > 0, 5000);
    snprintf (conf_text, sizeof conf_text,
              "[publisher]\nlog_level = debug\npublisher_incoming_addr = %s-2\n"
              "publisher_outgoing_addr = %s\n",
              in, out);
    s_write (t, "pubsub.conf", conf_text);
    REQUIRE_INT (kill (pubsub, SIGHUP), ==, 0);
    REQUIRE_WAIT (h_log_count (t, "pubsub", "SIGHUP: configuration reloaded") == 1, 5000);
    REQUIRE_INT (h_log_count (t, "pubsub", "log_level 'info' -> 'debug', applied"), ==,
                 1);
    REQUIRE_INT (h_log_count (t, "pubsub", "publisher_incoming_addr"), >=, 1);
    REQUIRE_INT (h_log_count (t, "pubsub", "needs a restart"), ==, 1);
    //  Still forwarding on the old address: a SUB gets what a publisher sends.
    zsock_t *sub = zsock_new_sub (out, "news");
    zsock_t *pub = zsock_new_dealer (in);
    REQUIRE (sub && pub);
    zmsg_t *got = NULL;
    for (int i = 0; i < 50 && !got; i++) {
        zstr_sendx (pub, "", "eMQP/1.0", "PUBLISH", "m1", "news", "hello", NULL);
        zpoller_t *poller = zpoller_new (sub, NULL);
        if (zpoller_wait (poller, 100))
            got = zmsg_recv (sub);
        zpoller_destroy (&poller);
    }
    REQUIRE (got);
    zmsg_destroy (&got);
    zsock_destroy (&pub);
    zsock_destroy (&sub);
    REQUIRE (h_pid_alive (pubsub));
}

const h_testdef_t h_ops_tests[] = {
    { "sighup_router", test_sighup_router,
      "SIGHUP: the router applies log level and HWM, names what needs a restart" },
    { "sighup_scheduler_jm", test_sighup_scheduler_jm,
      "SIGHUP: scheduler and job manager keep running and take the new log level" },
    { "sighup_pubsub", test_sighup_pubsub,
      "SIGHUP: emq-pubsub keeps forwarding, applies the log level" },
    { "notify", test_notify, "sd_notify: READY, WATCHDOG, RELOADING, STOPPING" },
    { "units", test_units, "systemd-analyze verify accepts the units" },
    { "install", test_install,
      "make install DESTDIR: every path, PREFIX everywhere, emq_* exports only" },
    { "cli_fixes", test_cli_fixes,
      "emq-cli: unschedule NOSUCH, schedules at once, exit 4, submit --help, --msgid" },
    { "admin", test_admin,
      "jobs by state with paging, job show, queue pause/resume/purge, quiet" },
    { "build_tree_link", test_build_tree_link,
      "a program linked with -Lbuild/lib -lemq runs from the build tree" },
};

const size_t h_ops_count = sizeof h_ops_tests / sizeof h_ops_tests[0];
