/*  service — sd_notify and SIGHUP. See service.h. */
#include "service.h"
#include "log.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

static volatile sig_atomic_t s_hup;

static void
s_on_hup (int sig)
{
    (void) sig;
    s_hup = 1;
}

void
service_hup_install (void)
{
    struct sigaction action = { .sa_handler = s_on_hup, .sa_flags = SA_RESTART };
    sigemptyset (&action.sa_mask);
    if (sigaction (SIGHUP, &action, NULL))
        log_warning ("service: cannot catch SIGHUP: %s", strerror (errno));
}

bool
service_hup_take (void)
{
    if (!s_hup)
        return false;
    s_hup = 0;
    return true;
}

bool
service_hup_pending (void)
{
    return s_hup != 0;
}

//  sd_notify returns 0 when NOTIFY_SOCKET is unset: nothing to say then. A
//  failure to reach the socket is worth one line, never a stop.
static void
s_notify (const char *state)
{
    int rc = sd_notify (0, state);
    if (rc < 0)
        log_warning ("service: sd_notify: %s", strerror (-rc));
}

void
service_ready (const char *status)
{
    char state[512];
    snprintf (state, sizeof state, "READY=1\nSTATUS=%s", status ? status : "running");
    s_notify (state);
}

void
service_reloading (void)
{
    s_notify ("RELOADING=1");
}

void
service_stopping (void)
{
    s_notify ("STOPPING=1");
}

int64_t
service_watchdog_ms (void)
{
    uint64_t usec = 0;
    //  0 keeps WATCHDOG_USEC in the environment: forked workers are not us,
    //  and WATCHDOG_PID tells them apart.
    if (sd_watchdog_enabled (0, &usec) <= 0 || usec == 0)
        return 0;
    int64_t ms = (int64_t) (usec / 2000);
    return ms > 0 ? ms : 1;
}

void
service_watchdog_ping (void)
{
    s_notify ("WATCHDOG=1");
}

//  --------------------------------------------------------------------------
//  Self test: a datagram socket of our own stands in for systemd's.

#include "tests/testutil.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void
s_test_expect (int sock, const char *want)
{
    char buf[512] = "";
    ssize_t n = recv (sock, buf, sizeof buf - 1, 0);
    CHECK (n > 0);
    if (n > 0)
        buf[n] = 0;
    CHECK_CONTAINS (buf, want);
}

void
service_test (bool verbose)
{
    if (verbose)
        printf (" * service: ");
    //  Without a service manager every call is quiet and harmless.
    unsetenv ("NOTIFY_SOCKET");
    unsetenv ("WATCHDOG_USEC");
    unsetenv ("WATCHDOG_PID");
    service_ready ("test");
    service_watchdog_ping ();
    CHECK_EQ (service_watchdog_ms (), 0);

    char dir[] = "/tmp/emq-service-test-XXXXXX";
    REQUIRE (mkdtemp (dir));
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf (addr.sun_path, sizeof addr.sun_path, "%s/notify", dir);
    int sock = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE (sock >= 0);
    REQUIRE (bind (sock, (struct sockaddr *) &addr, sizeof addr) == 0);
    struct timeval tv = { .tv_sec = 2 };
    setsockopt (sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv ("NOTIFY_SOCKET", addr.sun_path, 1);
    setenv ("WATCHDOG_USEC", "300000", 1);
    char pid[32];
    snprintf (pid, sizeof pid, "%d", (int) getpid ());
    setenv ("WATCHDOG_PID", pid, 1);
    CHECK_EQ (service_watchdog_ms (), 150);
    service_ready ("unit test");
    s_test_expect (sock, "READY=1\nSTATUS=unit test");
    service_watchdog_ping ();
    s_test_expect (sock, "WATCHDOG=1");
    service_reloading ();
    s_test_expect (sock, "RELOADING=1");
    service_stopping ();
    s_test_expect (sock, "STOPPING=1");
    //  Another process's watchdog is not ours.
    setenv ("WATCHDOG_PID", "1", 1);
    CHECK_EQ (service_watchdog_ms (), 0);
    unsetenv ("NOTIFY_SOCKET");
    unsetenv ("WATCHDOG_USEC");
    unsetenv ("WATCHDOG_PID");

    //  SIGHUP is caught, counted once, and does not kill us.
    service_hup_install ();
    CHECK (!service_hup_take ());
    raise (SIGHUP);
    CHECK (service_hup_pending ());
    CHECK (service_hup_take ());
    CHECK (!service_hup_take ());
    signal (SIGHUP, SIG_DFL);

    close (sock);
    unlink (addr.sun_path);
    rmdir (dir);
    if (verbose)
        printf ("OK\n");
}
