/*  service — what a daemon tells its service manager, and the SIGHUP it
    gets back. Readiness, reloading, stopping and watchdog pings go to
    systemd through libsystemd's sd_notify; without systemd (NOTIFY_SOCKET
    unset) every call is a cheap no-op, so programs call them unconditionally.

    SIGHUP only sets a flag here (async-signal-safe); the program's loop
    takes it with service_hup_take and reloads on its own stack. Installing
    the handler is what keeps SIGHUP from killing the process.

        service_hup_install ();
        service_ready ("listening");
        int64_t ping_ms = service_watchdog_ms ();   // 0: no watchdog
        ...
        if (service_hup_take ()) { service_reloading (); reload...; service_ready (..); }
        service_stopping ();
*/
#ifndef EMQ_SERVICE_H
#define EMQ_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

//  Catches SIGHUP (SA_RESTART) into a flag. Call once, before the loop.
void service_hup_install (void);
//  True once per SIGHUP received since the last call.
bool service_hup_take (void);
//  True if a SIGHUP is pending (does not clear it).
bool service_hup_pending (void);

//  READY=1 with a STATUS= line (status may be NULL).
void service_ready (const char *status);
//  RELOADING=1: a reload started; call service_ready when it is done.
void service_reloading (void);
//  STOPPING=1: a graceful stop started.
void service_stopping (void);
//  How often to ping the watchdog, in ms (half of WATCHDOG_USEC), or 0 when
//  the service manager set no watchdog for this process.
int64_t service_watchdog_ms (void);
//  WATCHDOG=1: the loop is alive.
void service_watchdog_ping (void);

void service_test (bool verbose);

#endif
