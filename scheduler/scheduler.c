/*  scheduler — the emq-scheduler object. See scheduler.h and
    docs/scheduler.md.

    The object owns its schedules (self->scheds, name -> sched_t, with a
    destructor), its store (SQLite, local mode) or its etcd actor (etcd
    mode), the DEALER to the router and the zloop. Everything runs on the
    loop: a 50 ms tick fires due schedules and resends fires the router has
    not acknowledged; the heartbeat timer sends HEARTBEAT (with the stats
    JSON that `emq-cli schedules` shows), INFORMs again while the router has
    not acknowledged us, and reconnects when it has been silent too long.

    A fire's state (last_fire, next_fire, runs_left) is written before its
    REQUEST goes out. A crash between the two leaves last_fire > acked_fire,
    and the fire is sent again with the same msgid after the restart: the
    router holds each msgid at most once, so nothing fires twice and
    nothing acknowledged is forgotten.

    Router connection states: not registered (INFORM sent, no ACK yet) ->
    registered (ACK) -> not registered (silent for heartbeat_timeout, or
    KBYE) ... Fires happen only while registered and leading.

    Several routers (scheduler_addr a list: routers on one PostgreSQL
    database, one leading): the scheduler talks to one at a time. When the
    one it uses is silent for heartbeat_timeout x liveness it makes its
    DEALER again on the next address of the list (round robin) and INFORMs
    there; fires that router has not acknowledged go again under the same
    msgids, which the database holds at most once.
*/
#include "scheduler.h"
#include "addrlist.h"
#include "cron.h"
#include "etcd.h"
#include "schedules.h"

#include "clock.h"
#include "curve.h"
#include "emqp.h"
#include "headers.h"
#include "log.h"
#include "numparse.h"
#include "service.h"
#include "emq/client.h"

#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_TICK_MS 50
#define S_RESEND_MS 1000
#define S_NAME_MAX 100
#define S_STATS_LISTED 200
#define S_PUBLISH_MS 5000
//  A step of the wall clock against the monotonic one larger than this,
//  between two ticks, is logged (cron follows the wall clock, intervals
//  do not).
#define S_CLOCK_JUMP_MS 3000

struct scheduler_t {
    //  Settings (strings owned)
    char **routers, **admins;  // the routers' frontends and admin sockets
    size_t router_count, admin_count;
    size_t router_index;  // into routers: the one in use
    const char *router;   // routers[router_index]
    char *db_path, *timezone, *etcd_endpoint, *etcd_prefix;
    char *curve_server_key, *curve_cert;  // "" when CURVE is off
    int64_t hb_interval_ms, hb_timeout_ms;
    uint32_t liveness;
    double misfire_grace_s;
    double etcd_ttl_s;
    char id[256];  // this instance
    char host[256];
    bool verbose;

    zloop_t *loop;
    zsock_t *sock;       // DEALER to the router's frontend
    zhashx_t *scheds;    // name -> sched_t *, owned
    schedules_t *store;  // local mode
    etcd_t *etcd;        // etcd mode

    bool registered;  // the router ACKed our INFORM
    bool fenced_off;  // the router fenced us: lead again only
                      // on a new leadership (etcd LEADER)
    char inform_msgid[40];
    bool inform_refused;    // the router refused our INFORM (said once)
    int64_t inform_ms;      // monotonic: last INFORM that went out, 0 = none
    int64_t last_heard_ms;  // monotonic: any message from the router
    int64_t connected_ms;   // monotonic: socket (re)made

    bool leader;                              // we may fire
    uint64_t fence;                           // token sent with every fire
    char fence_scope[HEADERS_SCOPE_MAX + 1];  // where the token comes from:
                                              // "local:<host>", "etcd:<cluster>"
    int64_t leader_until_ms;      // monotonic deadline (etcd), INT64_MAX local
    bool led_once;                // @reboot schedules fired this run
    int64_t last_publish_ms;      // etcd member record
    bool stop;                    // DISCONNECT received
    uint64_t fires;               // REQUESTs submitted (new fire times)
    scheduler_reload_fn *reload;  // SIGHUP's settings, or NULL
    void *reload_arg;
    int heartbeat_timer;      // zloop timer id, re-armed when the interval changes
    int64_t clock_offset_ms;  // wall - monotonic at the last tick, 0 = none yet
};

static void s_reload (scheduler_t *self);
static int s_on_heartbeat (zloop_t *loop, int timer_id, void *arg);

static void s_trace (scheduler_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_trace (scheduler_t *self, const char *format, ...)
{
    if (!self->verbose)
        return;
    char line[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    log_info ("scheduler %s: %s", self->id, line);
}

static void
s_sched_destructor (void **item)
{
    sched_destroy ((sched_t **) item);
}

//  --------------------------------------------------------------------------
//  Persistence: SQLite (local) or etcd

static void
s_persist (scheduler_t *self, sched_t *sched)
{
    if (self->store) {
        if (schedules_put (self->store, sched))
            log_error ("scheduler: schedule %s not saved: %s", sched->name,
                       schedules_error (self->store));
    }
    else if (self->etcd) {
        char *json = sched_to_json (sched);
        if (json)
            etcd_put_schedule (self->etcd, sched->name, json);
        else
            log_error ("scheduler: schedule %s not saved: out of memory", sched->name);
        free (json);
    }
}

static void
s_forget (scheduler_t *self, const char *name)
{
    if (self->store) {
        if (schedules_delete (self->store, name))
            log_error ("scheduler: schedule %s not deleted: %s", name,
                       schedules_error (self->store));
    }
    else if (self->etcd)
        etcd_delete_schedule (self->etcd, name);
}

//  --------------------------------------------------------------------------
//  Talking to the router

static int s_on_router (zloop_t *loop, zsock_t *reader, void *arg);

static int
s_send (scheduler_t *self, emqp_msg_t **msg_p)
{
    if (!self->sock) {
        emqp_msg_destroy (msg_p);
        errno = ENOTCONN;
        return -1;
    }
    return emqp_send (msg_p, self->sock);
}

static void
s_send_inform (scheduler_t *self)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_INFORM);
    emqp_msgid_new (self->inform_msgid);
    msg->msgid = strdup (self->inform_msgid);
    msg->queues = strdup ("");
    msg->peer_type = strdup ("scheduler");
    if (s_send (self, &msg)) {
        //  Not connected yet (ZMQ_IMMEDIATE): the tick tries again.
        s_trace (self, "INFORM not sent: %s", zmq_strerror (errno));
        self->inform_ms = 0;
    }
    else
        self->inform_ms = clock_mono_ms ();
}

//  Makes a fresh DEALER (a new identity, as EventMQ's peers do on reconnect)
//  and INFORMs the router.
static int
s_connect (scheduler_t *self)
{
    if (self->sock) {
        zloop_reader_end (self->loop, self->sock);
        zsock_destroy (&self->sock);
    }
    self->registered = false;
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return -1;
    //  A new identity per connection, random: a msgid's first characters
    //  are its time (UUIDv7), the same for a minute, and a router that still
    //  holds our previous connection refuses a second one under its name.
    char identity[300];
    snprintf (identity, sizeof identity, "%.200s-%08x", self->id, arc4random ());
    zsock_set_identity (sock, identity);
    zsock_set_linger (sock, 200);
    zsock_set_immediate (sock, 1);
    zsock_set_maxmsgsize (sock, 256 * 1024 * 1024);
    char err[512];
    if (self->curve_server_key && *self->curve_server_key
        && curve_client_apply (sock, self->curve_server_key, self->curve_cert, err,
                               sizeof err)) {
        log_error ("scheduler: CURVE: %s", err);
        zsock_destroy (&sock);
        return -1;
    }
    if (zsock_connect (sock, "%s", self->router)) {
        log_error ("scheduler: cannot connect to %s", self->router);
        zsock_destroy (&sock);
        return -1;
    }
    self->sock = sock;
    self->connected_ms = self->last_heard_ms = clock_mono_ms ();
    zloop_reader (self->loop, sock, s_on_router, self);
    zloop_reader_set_tolerant (self->loop, sock);
    s_send_inform (self);
    return 0;
}

static void
s_send_error (scheduler_t *self, const char *ref, const char *code, const char *text)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_ERROR);
    msg->ref = strdup (ref ? ref : "");
    msg->error_code = strdup (code);
    msg->error_text = strdup (text);
    s_send (self, &msg);
}

static void
s_send_ack (scheduler_t *self, const char *ref)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_ACK);
    msg->ref = strdup (ref ? ref : "");
    s_send (self, &msg);
}

//  --------------------------------------------------------------------------
//  Stats (HEARTBEAT and etcd member record)

static json_t *
s_stats (scheduler_t *self)
{
    json_t *list = json_array ();
    size_t listed = 0;
    for (sched_t *s = zhashx_first (self->scheds); s; s = zhashx_next (self->scheds)) {
        if (listed++ == S_STATS_LISTED)
            break;
        json_array_append_new (
            list,
            json_pack ("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:s}", "name", s->name,
                       "spec", s->spec, "queue", s->queue, "next_fire",
                       (json_int_t) s->next_fire, "last_fire", (json_int_t) s->last_fire,
                       "last_outcome", s->last_outcome, "runs_left",
                       (json_int_t) s->runs_left, "tz", *s->tz ? s->tz : self->timezone));
    }
    return json_pack ("{s:s, s:s, s:i, s:b, s:s, s:s, s:I, s:s, s:I, s:i, s:o}", "id",
                      self->id, "host", self->host, "pid", (int) getpid (), "leader",
                      self->leader, "mode", self->etcd ? "etcd" : "local", "router",
                      self->router, "fence", (json_int_t) self->fence, "fence_scope",
                      self->fence_scope, "fires", (json_int_t) self->fires, "total",
                      (int) zhashx_size (self->scheds), "schedules", list);
}

static void
s_send_heartbeat (scheduler_t *self)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_HEARTBEAT);
    msg->heartbeat_ts = clock_wall_s ();
    json_t *stats = s_stats (self);
    msg->stats = stats ? json_dumps (stats, JSON_COMPACT) : NULL;
    json_decref (stats);
    if (msg->stats && strlen (msg->stats) > EMQP_STATS_MAX) {
        free (msg->stats);
        msg->stats = NULL;
    }
    s_send (self, &msg);
}

static void
s_publish (scheduler_t *self)
{
    if (!self->etcd)
        return;
    json_t *stats = s_stats (self);
    json_object_del (stats, "schedules");
    char *text = json_dumps (stats, JSON_COMPACT);
    json_decref (stats);
    if (text)
        etcd_publish (self->etcd, text);
    free (text);
    self->last_publish_ms = clock_mono_ms ();
}

//  --------------------------------------------------------------------------
//  Firing

//  The first fire time of s strictly after t, or 0 when none.
static int64_t
s_next_after (scheduler_t *self, sched_t *s, int64_t t)
{
    if (s->interval_s > 0)
        return cron_interval_next (s->anchor, s->interval_s, t);
    if (!s->cron || cron_is_reboot (s->cron))
        return 0;
    int64_t next = cron_next (s->cron, t, *s->tz ? s->tz : self->timezone);
    return next > 0 ? next : 0;
}

static void
s_fire_msgid (const sched_t *s, int64_t fire, char *buf, size_t size)
{
    snprintf (buf, size, "sched:%s:%" PRId64, s->name, fire);
}

//  Sends (or sends again) the REQUEST for s->last_fire.
static void
s_send_fire (scheduler_t *self, sched_t *s)
{
    char msgid[EMQP_MSGID_MAX + 1], headers[EMQP_HEADERS_MAX + 1];
    s_fire_msgid (s, s->last_fire, msgid, sizeof msgid);
    int n =
        snprintf (headers, sizeof headers, "%s%sreply-requested,fence:%" PRIu64 "%s%s",
                  s->headers, *s->headers ? "," : "", self->fence,
                  *self->fence_scope ? ",fence-scope:" : "", self->fence_scope);
    if (n < 0 || (size_t) n >= sizeof headers) {
        log_error ("schedule %s: headers too long; fire %" PRId64 " dropped", s->name,
                   s->last_fire);
        s->acked_fire = s->last_fire;
        return;
    }
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    msg->msgid = strdup (msgid);
    msg->queue = strdup (s->queue);
    msg->headers = strdup (headers);
    msg->payload = zframe_new (s->payload, s->payload_size);
    s->sent_ms = clock_mono_ms ();
    if (s_send (self, &msg))
        s_trace (self, "fire %s not sent (%s); will retry", msgid, zmq_strerror (errno));
    else
        s_trace (self, "fired %s", msgid);
}

//  Submits fire time `fire` of s and moves it on.
static void
s_fire (scheduler_t *self, sched_t *s, int64_t fire)
{
    s->last_fire = fire;
    s->running = true;
    if (s->runs_left > 0)
        s->runs_left--;
    //  An interval's fire times are on its grid whatever the wall clock
    //  says (s_interval_due): the next one is the next grid point.
    s->next_fire = s->runs_left == 0   ? 0
                   : s->interval_s > 0 ? fire + s->interval_s
                                       : s_next_after (self, s, fire);
    if (s->runs_left == 0)
        log_info ("schedule %s: last run submitted; schedule ended", s->name);
    self->fires++;
    s_persist (self, s);  // before the send: see the top of the file
    s_send_fire (self, s);
}

//  An interval schedule's pace is the monotonic clock: its fire times
//  (next_fire, the msgid's timestamp) stay on the anchor's grid and are
//  due interval_s apart by the monotonic clock, so a step of the wall
//  clock neither stalls them (a step back) nor makes them burst or
//  misfire (a step forward). The wall clock only places next_fire when
//  the schedule is new or loaded (restart, etcd, takeover): due in
//  next_fire - now, but never more than one interval ahead, since a
//  next_fire that far ahead means the wall clock went back since it was
//  written. Returns the fire time due now, or 0; *late_s and *missed say
//  how late it is and how many fire times it stands for beyond itself.
static int64_t
s_interval_due (sched_t *s, double now, int64_t now_ms, double *late_s, int64_t *missed)
{
    int64_t interval_ms = s->interval_s * 1000;
    if (!s->due_known) {
        double ahead_ms = ((double) s->next_fire - now) * 1000.0;
        if (ahead_ms > (double) interval_ms)
            ahead_ms = (double) interval_ms;
        s->due_ms = now_ms + (int64_t) floor (ahead_ms);
        s->due_known = true;
    }
    if (now_ms < s->due_ms)
        return 0;
    //  Behind (we, or the router, were down): the latest grid point due.
    *missed = (now_ms - s->due_ms) / interval_ms;
    *late_s = (double) (now_ms - s->due_ms - *missed * interval_ms) / 1000.0;
    return s->next_fire + *missed * s->interval_s;
}

//  After fire time `fire` of an interval schedule was fired or skipped.
static void
s_interval_done (sched_t *s, int64_t fire)
{
    s->due_ms += (fire - s->next_fire + s->interval_s) * 1000;
}

//  Fires what is due. A schedule that missed fire times (we, or the router,
//  were down) runs once for the latest of them (misfire once), or not at all
//  if that one is older than the grace (misfire skip): never a burst.
static void
s_fire_due (scheduler_t *self)
{
    double now = clock_wall_s ();
    int64_t now_s = (int64_t) floor (now);
    int64_t now_ms = clock_mono_ms ();
    for (sched_t *s = zhashx_first (self->scheds); s; s = zhashx_next (self->scheds)) {
        if (s->next_fire <= 0)
            continue;
        int64_t fire = s->next_fire;
        int64_t missed = 0;
        double late = 0;
        if (s->interval_s > 0) {
            fire = s_interval_due (s, now, now_ms, &late, &missed);
            if (!fire)
                continue;
            if (fire <= s->last_fire) {
                //  Only a schedule whose state was set by hand (or a store
                //  that went back) gets here: never fire a time twice, go
                //  on from the last fire.
                s->next_fire = s_next_after (self, s, s->last_fire);
                s->due_known = false;
                continue;
            }
        }
        else {
            if (s->next_fire > now_s)
                continue;
            for (int i = 0; i < 100000; i++) {
                int64_t next = s_next_after (self, s, fire);
                if (next <= 0 || next > now_s)
                    break;
                fire = next;
                missed++;
            }
            if (fire <= s->last_fire) {
                //  Cannot happen unless the clock went back: never fire a
                //  time twice.
                s->next_fire = s_next_after (self, s, s->last_fire);
                continue;
            }
            late = now - (double) fire;
        }
        if (missed > 0 || late > self->misfire_grace_s)
            log_warning ("schedule %s: %" PRId64 " fire time(s) missed; latest %" PRId64
                         " is %.0f s late: %s",
                         s->name, missed + (late > self->misfire_grace_s), fire, late,
                         s->misfire_skip && late > self->misfire_grace_s
                             ? "skipped (misfire:skip)"
                             : "running it once");
        if (s->misfire_skip && late > self->misfire_grace_s) {
            if (s->interval_s > 0) {
                s_interval_done (s, fire);
                s->next_fire = fire + s->interval_s;
            }
            else
                s->next_fire = s_next_after (self, s, fire);
            s_persist (self, s);
            continue;
        }
        if (s->interval_s > 0)
            s_interval_done (s, fire);
        s_fire (self, s, fire);
    }
}

//  Logs a step of the wall clock (settimeofday, NTP stepping, a VM
//  resumed): cron schedules follow the wall clock, so what they do next
//  changes; intervals go on at their pace.
static void
s_watch_clock (scheduler_t *self)
{
    int64_t offset_ms = (int64_t) floor (clock_wall_s () * 1000.0) - clock_mono_ms ();
    int64_t step_ms = offset_ms - self->clock_offset_ms;
    if (self->clock_offset_ms && llabs (step_ms) > S_CLOCK_JUMP_MS) {
        size_t crons = 0;
        for (sched_t *s = zhashx_first (self->scheds); s; s = zhashx_next (self->scheds))
            crons += s->interval_s <= 0;
        log_warning ("scheduler %s: wall clock jumped %s by %.1f s; interval schedules "
                     "keep their pace (monotonic clock), %zu cron schedule(s) follow the "
                     "wall clock: %s",
                     self->id, step_ms < 0 ? "back" : "forward", llabs (step_ms) / 1000.0,
                     crons,
                     step_ms < 0 ? "times they already fired do not fire again"
                                 : "a time they missed fires once (misfire rules)");
    }
    self->clock_offset_ms = offset_ms;
}

//  Sends again fires the router has not acknowledged (lost on the way, or
//  sent while it was down).
static void
s_resend (scheduler_t *self)
{
    int64_t now = clock_mono_ms ();
    for (sched_t *s = zhashx_first (self->scheds); s; s = zhashx_next (self->scheds))
        if (s->last_fire > s->acked_fire && now - s->sent_ms >= S_RESEND_MS)
            s_send_fire (self, s);
}

//  @reboot schedules fire once each time a scheduler process starts leading.
static void
s_fire_reboot (scheduler_t *self)
{
    int64_t now_s = (int64_t) floor (clock_wall_s ());
    for (sched_t *s = zhashx_first (self->scheds); s; s = zhashx_next (self->scheds))
        if (s->cron && cron_is_reboot (s->cron) && s->runs_left != 0)
            s_fire (self, s, now_s);
}

static void
s_set_leader (scheduler_t *self, bool leader, const char *why)
{
    if (leader == self->leader)
        return;
    self->leader = leader;
    log_info ("scheduler %s: %s (%s, fence %" PRIu64 ")", self->id,
              leader ? "leading" : "not leading", why, self->fence);
    s_publish (self);
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    scheduler_t *self = (scheduler_t *) arg;
    //  A SIGHUP that came while a handler ran did not interrupt poll().
    if (service_hup_take ())
        s_reload (self);
    //  Our own deadline, before anything else: after a SIGSTOP this is the
    //  first thing that runs, and we must not fire on a lease that may be
    //  gone.
    if (self->leader && clock_mono_ms () >= self->leader_until_ms)
        s_set_leader (self, false, "lease deadline passed without renewal");
    s_watch_clock (self);
    if (!self->registered
        && (!self->inform_ms
            || clock_mono_ms () - self->inform_ms >= self->hb_interval_ms))
        s_send_inform (self);
    if (!self->leader || !self->registered)
        return 0;
    if (!self->led_once) {
        self->led_once = true;
        s_fire_reboot (self);
    }
    s_resend (self);
    s_fire_due (self);
    return 0;
}

static int
s_on_heartbeat (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    scheduler_t *self = (scheduler_t *) arg;
    int64_t now = clock_mono_ms ();
    int64_t silent = now - self->last_heard_ms;
    if (silent > self->hb_timeout_ms * (int64_t) self->liveness) {
        if (self->router_count > 1) {
            const char *lost = self->router;
            self->router_index = (self->router_index + 1) % self->router_count;
            self->router = self->routers[self->router_index];
            log_warning ("scheduler %s: router %s silent for %.1f s; trying router %s "
                         "(%zu of %zu)",
                         self->id, lost, silent / 1000.0, self->router,
                         self->router_index + 1, self->router_count);
        }
        else
            log_warning ("scheduler %s: router %s silent for %.1f s; reconnecting",
                         self->id, self->router, silent / 1000.0);
        if (s_connect (self))
            //  The next heartbeat tries again (the next address, if any).
            self->last_heard_ms = now;
        return 0;
    }
    if (self->registered && silent > self->hb_timeout_ms) {
        log_info ("scheduler %s: router silent for %.1f s; registering again", self->id,
                  silent / 1000.0);
        self->registered = false;
    }
    s_send_heartbeat (self);
    if (self->etcd && now - self->last_publish_ms >= S_PUBLISH_MS)
        s_publish (self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Admin calls

//  An ADMIN job command at the router's admin socket: the one paired with
//  the router in use when the lists pair up (as many admin addresses as
//  routers), else the whole list at once (libemq asks every address and
//  takes the first answer: only the leader binds its admin socket), so the
//  wait is bounded once, not once per address. Returns emq_admin_job's
//  code; *reply as it says (the caller frees it).
static int
s_admin_job (scheduler_t *self, const char *command, const char *msgid, char **reply)
{
    if (self->admin_count == self->router_count)
        return emq_admin_job (self->admins[self->router_index], command, msgid, 2000,
                              reply);
    char *all = addrlist_join (self->admins, self->admin_count);
    if (!all)
        return emq_admin_job (self->admins[0], command, msgid, 2000, reply);
    int rc = emq_admin_job (all, command, msgid, 2000, reply);
    free (all);
    return rc;
}

//  --------------------------------------------------------------------------
//  SCHEDULE and UNSCHEDULE

typedef struct {
    char name[S_NAME_MAX + 1];
    char tz[128];
    bool nohaste, skip, kill_running, has_misfire;
    uint32_t runs;
    char passthrough[EMQP_HEADERS_MAX + 1];
} s_sched_headers_t;

static bool
s_name_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > S_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (*p <= ' ' || *p == ',' || *p == 0x7f)
            return false;
    return true;
}

//  Splits SCHEDULE's headers into ours and those each REQUEST carries.
static int
s_parse_headers (const char *text, s_sched_headers_t *out, char *err, size_t errlen)
{
    memset (out, 0, sizeof *out);
    headers_t parsed;
    if (headers_parse (text, &parsed, err, errlen))
        return -1;
    out->nohaste = parsed.nohaste;
    out->runs = parsed.run_count;
    char copy[EMQP_HEADERS_MAX + 1];
    snprintf (copy, sizeof copy, "%s", text);
    char *save = NULL;
    size_t used = 0;
    for (char *h = strtok_r (copy, ",", &save); h; h = strtok_r (NULL, ",", &save)) {
        while (*h == ' ')
            h++;
        if (strncmp (h, "name:", 5) == 0) {
            if (!s_name_ok (h + 5)) {
                snprintf (err, errlen,
                          "name '%.120s' must be 1..%d printable characters "
                          "without spaces or commas",
                          h + 5, S_NAME_MAX);
                return -1;
            }
            snprintf (out->name, sizeof out->name, "%s", h + 5);
        }
        else if (strncmp (h, "misfire:", 8) == 0) {
            if (strcmp (h + 8, "skip") && strcmp (h + 8, "once")) {
                snprintf (err, errlen, "misfire: '%.60s' is not skip or once", h + 8);
                return -1;
            }
            out->skip = strcmp (h + 8, "skip") == 0;
            out->has_misfire = true;
        }
        else if (strncmp (h, "tz:", 3) == 0) {
            if (cron_tz_check (h + 3, err, errlen))
                return -1;
            snprintf (out->tz, sizeof out->tz, "%s", h + 3);
        }
        else if (strcmp (h, "kill-running") == 0)
            out->kill_running = true;
        else if (strcmp (h, "nohaste") == 0 || strncmp (h, "run_count:", 10) == 0
                 || strcmp (h, "reply-requested") == 0 || strncmp (h, "fence:", 6) == 0
                 || *h == 0)
            ;  // ours, or added to every fire anyway
        else {
            int n = snprintf (out->passthrough + used, sizeof out->passthrough - used,
                              "%s%s", used ? "," : "", h);
            if (n > 0)
                used += (size_t) n;
        }
    }
    return 0;
}

//  EventMQ names a schedule by its job: a hash of the payload (FNV-1a).
static void
s_default_name (const emqp_msg_t *msg, char *name, size_t size)
{
    uint64_t hash = 1469598103934665603ULL;
    const unsigned char *p = msg->payload ? zframe_data (msg->payload) : NULL;
    size_t len = msg->payload ? zframe_size (msg->payload) : 0;
    for (size_t i = 0; i < len; i++) {
        hash ^= p[i];
        hash *= 1099511628211ULL;
    }
    snprintf (name, size, "job-%016" PRIx64, hash);
}

//  Builds a schedule from a SCHEDULE message. NULL with the reason in err.
static sched_t *
s_sched_from_msg (scheduler_t *self, emqp_msg_t *msg, char *err, size_t errlen)
{
    s_sched_headers_t h;
    if (s_parse_headers (msg->headers, &h, err, errlen))
        return NULL;
    if (!h.name[0])
        s_default_name (msg, h.name, sizeof h.name);
    bool has_cron = msg->cron && *msg->cron;
    if (has_cron == (msg->interval_s > 0)) {
        snprintf (err, errlen,
                  has_cron ? "give either an interval or a cron expression, "
                             "not both"
                           : "no interval (seconds > 0) and no cron expression");
        return NULL;
    }
    if (!msg->payload || zframe_size (msg->payload) == 0) {
        snprintf (err, errlen, "no payload");
        return NULL;
    }
    sched_t *s = sched_new ();
    if (!s || sched_set (&s->name, h.name) || sched_set (&s->queue, msg->queue)
        || sched_set (&s->headers, h.passthrough) || sched_set (&s->tz, h.tz)
        || sched_set (&s->cron_text, has_cron ? msg->cron : "")) {
        snprintf (err, errlen, "out of memory");
        sched_destroy (&s);
        return NULL;
    }
    s->payload_size = zframe_size (msg->payload);
    s->payload = malloc (s->payload_size);
    if (!s->payload) {
        snprintf (err, errlen, "out of memory");
        sched_destroy (&s);
        return NULL;
    }
    memcpy (s->payload, zframe_data (msg->payload), s->payload_size);
    s->interval_s = has_cron ? -1 : msg->interval_s;
    s->misfire_skip = h.skip;
    s->nohaste = h.nohaste;
    s->runs_left = h.runs ? (int64_t) h.runs : -1;
    s->created_at = clock_wall_s ();
    if (sched_compile (s, err, errlen)) {
        sched_destroy (&s);
        return NULL;
    }
    char spec[400];
    if (has_cron)
        snprintf (spec, sizeof spec, "%s%s%s", msg->cron, *h.tz ? " " : "", h.tz);
    else
        snprintf (spec, sizeof spec, "every %" PRId64 "s", msg->interval_s);
    sched_set (&s->spec, spec);

    int64_t now_s = (int64_t) floor (clock_wall_s ());
    if (s->interval_s > 0) {
        //  Fire times are anchored: now (+ interval with nohaste), then
        //  every interval after that, whatever the lateness of each fire.
        s->anchor = now_s;
        s->next_fire = h.nohaste ? now_s + s->interval_s : now_s;
    }
    else if (!cron_is_reboot (s->cron)) {
        s->next_fire = cron_next (s->cron, now_s, *s->tz ? s->tz : self->timezone);
        if (s->next_fire <= 0) {
            snprintf (err, errlen, "cron expression '%.200s' never fires", msg->cron);
            sched_destroy (&s);
            return NULL;
        }
    }
    return s;
}

static void
s_on_schedule (scheduler_t *self, emqp_msg_t *msg)
{
    char err[512];
    sched_t *s = s_sched_from_msg (self, msg, err, sizeof err);
    if (!s) {
        log_warning ("scheduler %s: SCHEDULE %s refused: %s", self->id, msg->msgid, err);
        s_send_error (self, msg->msgid, "BAD_REQUEST", err);
        return;
    }
    sched_t *old = zhashx_lookup (self->scheds, s->name);
    if (old) {
        //  Same name: the new definition replaces the old one. Keep what it
        //  fired, so a fire still on its way is recognised.
        s->last_fire = old->last_fire;
        s->acked_fire = old->acked_fire;
        s->running = old->running;
        sched_set (&s->last_outcome, old->last_outcome);
        log_info ("schedule %s: replaced (%s -> %s)", s->name, old->spec, s->spec);
    }
    else
        log_info ("schedule %s: added (%s, queue %s%s%s)", s->name, s->spec, s->queue,
                  s->runs_left > 0 ? ", limited runs" : "",
                  s->nohaste ? ", nohaste" : "");
    s_persist (self, s);
    zhashx_update (self->scheds, s->name, s);
    s_send_ack (self, msg->msgid);
    //  An interval's first fire time is now: fire it now, not at the next
    //  tick, which may come after the grid's next point and log a miss.
    if (self->leader && self->registered)
        s_fire_due (self);
}

static void
s_on_unschedule (scheduler_t *self, emqp_msg_t *msg)
{
    s_sched_headers_t h;
    char err[512];
    if (s_parse_headers (msg->headers, &h, err, sizeof err)) {
        log_warning ("scheduler %s: UNSCHEDULE %s refused: %s", self->id, msg->msgid,
                     err);
        s_send_error (self, msg->msgid, "BAD_REQUEST", err);
        return;
    }
    if (!h.name[0])
        s_default_name (msg, h.name, sizeof h.name);
    sched_t *s = zhashx_lookup (self->scheds, h.name);
    //  In etcd mode every member gets UNSCHEDULE and the store is shared:
    //  delete even what we do not hold in memory.
    s_forget (self, h.name);
    if (!s) {
        log_info ("schedule %s: UNSCHEDULE for a schedule this scheduler does not hold",
                  h.name);
        return;
    }
    if (h.kill_running && s->running && s->last_fire) {
        //  emq_admin_job waits for the router's answer (a short, bounded wait
        //  on the loop; UNSCHEDULE with kill-running is rare).
        char msgid[EMQP_MSGID_MAX + 1];
        s_fire_msgid (s, s->last_fire, msgid, sizeof msgid);
        char *reply = NULL;
        int rc = s_admin_job (self, "CANCEL", msgid, &reply);
        if (rc == 0)
            log_info ("schedule %s: running job %s cancelled", s->name, msgid);
        else
            log_warning ("schedule %s: cannot cancel %s: %s", s->name, msgid,
                         reply ? reply : emq_strerror (rc));
        free (reply);
    }
    log_info ("schedule %s: removed", s->name);
    zhashx_delete (self->scheds, h.name);
}

//  --------------------------------------------------------------------------
//  Fire outcomes

//  The schedule a fire msgid belongs to, if it is the fire we last sent.
static sched_t *
s_fire_lookup (scheduler_t *self, const char *msgid, int64_t *fire)
{
    if (!msgid || strncmp (msgid, "sched:", 6))
        return NULL;
    const char *colon = strrchr (msgid, ':');
    if (!colon || colon <= msgid + 6)
        return NULL;
    char name[S_NAME_MAX + 1];
    size_t len = (size_t) (colon - (msgid + 6));
    if (len > S_NAME_MAX)
        return NULL;
    memcpy (name, msgid + 6, len);
    name[len] = 0;
    if (numparse_int (colon + 1, INT64_MIN, INT64_MAX, fire))
        return NULL;
    return zhashx_lookup (self->scheds, name);
}

static void
s_on_ack (scheduler_t *self, emqp_msg_t *msg)
{
    if (msg->ref && streq (msg->ref, self->inform_msgid)) {
        if (!self->registered)
            log_info ("scheduler %s: registered with router %s", self->id, self->router);
        self->registered = true;
        self->inform_refused = false;
        s_send_heartbeat (self);
        return;
    }
    int64_t fire = 0;
    sched_t *s = s_fire_lookup (self, msg->ref, &fire);
    if (s && fire > s->acked_fire && fire <= s->last_fire) {
        s->acked_fire = fire;
        s_persist (self, s);
    }
}

static void
s_on_error (scheduler_t *self, emqp_msg_t *msg)
{
    if (streq (msg->error_code, "UNKNOWN_PEER")) {
        //  The router restarted and does not know us: INFORM on the next tick.
        if (self->registered)
            log_info ("scheduler %s: router does not know us; registering again",
                      self->id);
        self->registered = false;
        return;
    }
    if (msg->ref && streq (msg->ref, self->inform_msgid)) {
        //  Not admitted as a scheduler (its key's roles, the router's
        //  scheduler_identities, or our address): we INFORM again each
        //  heartbeat in case that changes, and say so once.
        if (!self->inform_refused)
            log_error (
                "scheduler %s: the router does not admit us as a scheduler: %s: %s",
                self->id, msg->error_code, msg->error_text);
        self->inform_refused = true;
        return;
    }
    int64_t fire = 0;
    sched_t *s = s_fire_lookup (self, msg->ref, &fire);
    if (!s) {
        log_warning ("scheduler %s: router refused %s: %s: %s", self->id,
                     msg->ref ? msg->ref : "?", msg->error_code, msg->error_text);
        return;
    }
    if (streq (msg->error_code, "FENCED")) {
        //  Another scheduler leads with a newer token: stand down.
        log_error ("scheduler %s: fire %s fenced off: %s", self->id, msg->ref,
                   msg->error_text);
        s_set_leader (self, false, "fenced by the router");
        self->leader_until_ms = 0;
        self->fenced_off = true;  // until a new LEADER event
    }
    else
        log_warning ("schedule %s: fire %" PRId64 " refused: %s: %s", s->name, fire,
                     msg->error_code, msg->error_text);
    if (fire == s->last_fire) {
        char outcome[300];
        snprintf (outcome, sizeof outcome, "refused: %s", msg->error_code);
        sched_set (&s->last_outcome, outcome);
        s->acked_fire = fire;  // not sent again
        s->running = false;
        s_persist (self, s);
    }
}

static void
s_on_result (scheduler_t *self, emqp_msg_t *msg)
{
    int64_t fire = 0;
    sched_t *s = s_fire_lookup (self, msg->ref, &fire);
    if (!s || fire != s->last_fire)
        return;
    char outcome[300];
    if (msg->status == EMQP_STATUS_OK || !msg->payload)
        snprintf (outcome, sizeof outcome, "%s", emqp_status_name (msg->status));
    else {
        char text[200];
        emqp_printable (zframe_data (msg->payload), zframe_size (msg->payload), text,
                        sizeof text);
        snprintf (outcome, sizeof outcome, "%s: %s", emqp_status_name (msg->status),
                  text);
    }
    sched_set (&s->last_outcome, outcome);
    s->running = false;
    if (fire > s->acked_fire)
        s->acked_fire = fire;  // a RESULT means the router had it
    s_persist (self, s);
    s_trace (self, "schedule %s: fire %" PRId64 " ended %s", s->name, fire, outcome);
}

static int
s_on_router (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    scheduler_t *self = (scheduler_t *) arg;
    zmsg_t *zmsg = zmsg_recv (reader);
    if (!zmsg)
        return zsys_interrupted ? -1 : 0;
    char err[256];
    emqp_limits_t limits = { .payload_max = 256 * 1024 * 1024 };
    emqp_msg_t *msg = emqp_decode (&zmsg, false, &limits, NULL, err, sizeof err);
    self->last_heard_ms = clock_mono_ms ();
    if (!msg) {
        log_warning ("scheduler %s: malformed message from router dropped: %s", self->id,
                     err);
        return 0;
    }
    s_trace (self, "router sent %s", emqp_command_name (msg->command));
    log_debug ("scheduler %s: %s from router", self->id,
               emqp_command_name (msg->command));
    int rc = 0;
    switch (msg->command) {
        case EMQP_ACK:
            s_on_ack (self, msg);
            break;
        case EMQP_ERROR:
            s_on_error (self, msg);
            break;
        case EMQP_RESULT:
            s_on_result (self, msg);
            break;
        //  The heartbeat carries our schedules: sent at once, the router's
        //  ROUTER_SHOW_SCHEDULERS shows the change without waiting for the
        //  next interval (emq-cli schedule/unschedule wait for it there).
        case EMQP_SCHEDULE:
            s_on_schedule (self, msg);
            s_send_heartbeat (self);
            break;
        case EMQP_UNSCHEDULE:
            s_on_unschedule (self, msg);
            s_send_heartbeat (self);
            break;
        case EMQP_HEARTBEAT:
            //  A router that restarted heartbeats only peers it knows: a
            //  heartbeat means we are registered.
            break;
        case EMQP_KBYE:
            log_info ("scheduler %s: router said KBYE; waiting for it to come back",
                      self->id);
            self->registered = false;
            break;
        case EMQP_DISCONNECT: {
            log_info ("scheduler %s: router asked us to stop (DISCONNECT)", self->id);
            emqp_msg_t *bye = emqp_msg_new (EMQP_KBYE);
            s_send (self, &bye);
            self->stop = true;
            rc = -1;
            break;
        }
        default:
            log_warning ("scheduler %s: unexpected %s from router dropped", self->id,
                         emqp_command_name (msg->command));
    }
    emqp_msg_destroy (&msg);
    return rc;
}

//  --------------------------------------------------------------------------
//  etcd events

//  The fence scope "<kind>:<name>", in the characters a scope may hold.
static void
s_set_scope (scheduler_t *self, const char *kind, const char *name)
{
    snprintf (self->fence_scope, sizeof self->fence_scope, "%s:%s", kind,
              *name ? name : "-");
    for (char *c = self->fence_scope; *c; c++)
        if (!isalnum ((unsigned char) *c) && !strchr ("._:/-", *c))
            *c = '_';
}

static void
s_take_schedule (sched_t *sched, void *arg)
{
    scheduler_t *self = (scheduler_t *) arg;
    zhashx_update (self->scheds, sched->name, sched);
}

static int
s_on_etcd (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    (void) reader;
    scheduler_t *self = (scheduler_t *) arg;
    etcd_event_t *ev = etcd_recv (self->etcd);
    if (!ev)
        return zsys_interrupted ? -1 : 0;
    switch (ev->type) {
        case ETCD_EV_LEADER:
            self->fence = (uint64_t) ev->revision;
            //  Revisions of another etcd cluster (rebuilt, or replaced) are
            //  not comparable with these: the router keeps them apart.
            s_set_scope (self, "etcd", ev->cluster ? ev->cluster : "");
            self->leader_until_ms = ev->deadline_ms;
            self->fenced_off = false;
            s_set_leader (self, true, "won the etcd leader key");
            break;
        case ETCD_EV_RENEWED:
            //  Sent only while the etcd thread leads. Our tick may have
            //  stood down on the old deadline just before this renewal
            //  (made in time) arrived: then lead again, same key, same fence.
            if (ev->deadline_ms > self->leader_until_ms)
                self->leader_until_ms = ev->deadline_ms;
            if (!self->leader && !self->fenced_off
                && clock_mono_ms () < self->leader_until_ms)
                s_set_leader (self, true, "lease renewed in time");
            break;
        case ETCD_EV_LOST:
            self->leader_until_ms = 0;
            s_set_leader (self, false,
                          ev->reason ? ev->reason : "lost the etcd leader key");
            break;
        case ETCD_EV_SCHEDULES: {
            //  The full set from etcd replaces ours, except the state of a
            //  fire we sent and etcd has not caught up with yet.
            zhashx_t *fresh = zhashx_new ();
            zhashx_set_destructor (fresh, s_sched_destructor);
            for (char *json = zlist_first (ev->items); json;
                 json = zlist_next (ev->items)) {
                char err[256];
                sched_t *s = sched_from_json (json, strlen (json), err, sizeof err);
                if (!s) {
                    log_warning ("scheduler %s: a schedule in etcd is unreadable: %s",
                                 self->id, err);
                    continue;
                }
                sched_t *mine = zhashx_lookup (self->scheds, s->name);
                if (mine && mine->last_fire > s->last_fire) {
                    s->last_fire = mine->last_fire;
                    s->next_fire = mine->next_fire;
                    s->runs_left = mine->runs_left;
                    s->sent_ms = mine->sent_ms;
                }
                //  The same next fire: keep its monotonic due time (our own
                //  writes come back this way).
                if (mine && mine->due_known && mine->next_fire == s->next_fire
                    && mine->interval_s == s->interval_s) {
                    s->due_known = true;
                    s->due_ms = mine->due_ms;
                }
                if (mine && mine->acked_fire > s->acked_fire)
                    s->acked_fire = mine->acked_fire;
                if (mine)
                    s->running = mine->running;
                zhashx_update (fresh, s->name, s);
            }
            zhashx_destroy (&self->scheds);
            self->scheds = fresh;
            break;
        }
    }
    etcd_event_destroy (&ev);
    return 0;
}

//  --------------------------------------------------------------------------
//  Object

scheduler_t *
scheduler_new (const scheduler_settings_t *settings, char *err, size_t errlen)
{
    scheduler_t *self = calloc (1, sizeof (scheduler_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    char why[256];
    self->routers =
        addrlist_parse (settings->router ? settings->router : EMQ_DEFAULT_FRONTEND,
                        &self->router_count, why, sizeof why);
    if (!self->routers) {
        snprintf (err, errlen, "router address: expected %s", why);
        goto fail;
    }
    self->router = self->routers[0];
    self->admins = addrlist_parse (settings->admin ? settings->admin : EMQ_DEFAULT_ADMIN,
                                   &self->admin_count, why, sizeof why);
    if (!self->admins) {
        snprintf (err, errlen, "admin address: expected %s", why);
        goto fail;
    }
    self->curve_server_key =
        strdup (settings->curve_server_key ? settings->curve_server_key : "");
    self->curve_cert = strdup (settings->curve_cert ? settings->curve_cert : "");
    self->db_path = settings->db_path ? strdup (settings->db_path) : NULL;
    self->timezone =
        strdup (settings->timezone && *settings->timezone ? settings->timezone : "UTC");
    self->etcd_endpoint = settings->etcd ? strdup (settings->etcd) : NULL;
    self->etcd_prefix = strdup (settings->etcd_prefix ? settings->etcd_prefix : "/emq");
    self->hb_interval_ms =
        settings->heartbeat_interval_ms > 0 ? settings->heartbeat_interval_ms : 3000;
    self->hb_timeout_ms =
        settings->heartbeat_timeout_ms > 0 ? settings->heartbeat_timeout_ms : 5000;
    self->liveness = settings->heartbeat_liveness ? settings->heartbeat_liveness : 3;
    self->misfire_grace_s = settings->misfire_grace_s;
    self->etcd_ttl_s = settings->etcd_ttl_s > 0 ? settings->etcd_ttl_s : 15;
    if (gethostname (self->host, sizeof self->host))
        snprintf (self->host, sizeof self->host, "localhost");
    self->host[sizeof self->host - 1] = 0;
    if (settings->id && *settings->id)
        snprintf (self->id, sizeof self->id, "%s", settings->id);
    else
        snprintf (self->id, sizeof self->id, "sched-%.100s-%d", self->host,
                  (int) getpid ());
    self->scheds = zhashx_new ();
    self->loop = zloop_new ();
    if (!self->timezone || !self->etcd_prefix || !self->scheds || !self->loop) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    zhashx_set_destructor (self->scheds, s_sched_destructor);
    if (cron_tz_check (self->timezone, err, errlen))
        goto fail;

    if (self->etcd_endpoint) {
        self->etcd = etcd_new (self->etcd_endpoint, self->etcd_prefix, self->id,
                               self->etcd_ttl_s, err, errlen);
        if (!self->etcd)
            goto fail;
        zloop_reader (self->loop, etcd_socket (self->etcd), s_on_etcd, self);
        self->leader_until_ms = 0;
    }
    else {
        self->store =
            schedules_open (self->db_path ? self->db_path : "scheduler.db", err, errlen);
        if (!self->store)
            goto fail;
        int loaded = schedules_load (self->store, s_take_schedule, self);
        if (loaded < 0) {
            snprintf (err, errlen, "%s", schedules_error (self->store));
            goto fail;
        }
        log_info ("scheduler %s: %d schedule(s) loaded from %s", self->id, loaded,
                  self->db_path);
        self->fence = settings->fence;
        s_set_scope (self, "local", self->host);
        self->leader = true;
        self->leader_until_ms = INT64_MAX;
    }
    if (s_connect (self)) {
        snprintf (err, errlen, "cannot connect to %s", self->router);
        goto fail;
    }
    zloop_timer (self->loop, S_TICK_MS, 0, s_on_tick, self);
    self->heartbeat_timer =
        zloop_timer (self->loop, (size_t) self->hb_interval_ms, 0, s_on_heartbeat, self);
    return self;

fail:
    scheduler_destroy (&self);
    return NULL;
}

void
scheduler_set_verbose (scheduler_t *self, bool verbose)
{
    self->verbose = verbose;
}

void
scheduler_set_reload (scheduler_t *self, scheduler_reload_fn *fn, void *arg)
{
    assert (self);
    self->reload = fn;
    self->reload_arg = arg;
}

void
scheduler_apply (scheduler_t *self, const scheduler_settings_t *fresh)
{
    assert (self && fresh);
    if (fresh->heartbeat_interval_ms > 0
        && fresh->heartbeat_interval_ms != self->hb_interval_ms) {
        self->hb_interval_ms = fresh->heartbeat_interval_ms;
        zloop_timer_end (self->loop, self->heartbeat_timer);
        self->heartbeat_timer = zloop_timer (self->loop, (size_t) self->hb_interval_ms, 0,
                                             s_on_heartbeat, self);
    }
    if (fresh->heartbeat_timeout_ms > 0)
        self->hb_timeout_ms = fresh->heartbeat_timeout_ms;
    if (fresh->heartbeat_liveness)
        self->liveness = fresh->heartbeat_liveness;
    self->misfire_grace_s = fresh->misfire_grace_s;
}

static void
s_reload (scheduler_t *self)
{
    if (!self->reload) {
        log_warning ("scheduler %s: SIGHUP: reloading is not available", self->id);
        return;
    }
    service_reloading ();
    scheduler_settings_t fresh;
    char err[512];
    if (self->reload (self->reload_arg, &fresh, err, sizeof err))
        log_error ("scheduler %s: SIGHUP: configuration not reloaded: %s", self->id, err);
    else {
        scheduler_apply (self, &fresh);
        log_info ("scheduler %s: SIGHUP: configuration reloaded", self->id);
    }
    service_ready ("reloaded");
}

static int
s_on_watchdog (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    service_watchdog_ping ();
    return 0;
}

int
scheduler_run (scheduler_t *self)
{
    log_info ("scheduler %s: %s mode, router %s%s, zone %s", self->id,
              self->etcd ? "etcd" : "local", self->router,
              self->router_count > 1 ? " (first of the list)" : "", self->timezone);
    service_hup_install ();
    int64_t watchdog_ms = service_watchdog_ms ();
    int watchdog_timer = -1;
    if (watchdog_ms > 0)
        watchdog_timer =
            zloop_timer (self->loop, (size_t) watchdog_ms, 0, s_on_watchdog, self);
    service_ready ("running");
    //  A signal's interrupted poll() returns 0 from zloop_start: SIGHUP
    //  reloads and the loop goes on; -1 is a handler's stop (DISCONNECT).
    while (true) {
        errno = 0;
        int rc = zloop_start (self->loop);
        if (rc == -1 || zsys_interrupted || self->stop)
            break;
        if (service_hup_take ())
            s_reload (self);
        else if (errno != EINTR) {
            log_error ("scheduler %s: event loop failed: %s", self->id,
                       zmq_strerror (errno));
            break;
        }
    }
    service_stopping ();
    if (watchdog_timer != -1)
        zloop_timer_end (self->loop, watchdog_timer);
    if (!self->stop && self->sock) {
        //  Interrupted: tell the router we are leaving.
        emqp_msg_t *bye = emqp_msg_new (EMQP_KBYE);
        s_send (self, &bye);
    }
    log_info ("scheduler %s: stopped", self->id);
    return 0;
}

void
scheduler_destroy (scheduler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    scheduler_t *self = *self_p;
    if (self->loop && self->sock)
        zloop_reader_end (self->loop, self->sock);
    zsock_destroy (&self->sock);
    if (self->etcd && self->loop)
        zloop_reader_end (self->loop, etcd_socket (self->etcd));
    etcd_destroy (&self->etcd);
    zloop_destroy (&self->loop);
    zhashx_destroy (&self->scheds);
    schedules_destroy (&self->store);
    addrlist_destroy (&self->routers);
    addrlist_destroy (&self->admins);
    free (self->curve_server_key);
    free (self->curve_cert);
    free (self->db_path);
    free (self->timezone);
    free (self->etcd_endpoint);
    free (self->etcd_prefix);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Self test: SCHEDULE parsing, firing and misfires, against an in-process
//  ROUTER socket standing in for the router.

#include "tests/testutil.h"

static emqp_msg_t *
s_test_recv (zsock_t *router, emqp_command_t command, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + timeout_ms;
    zpoller_t *poller = zpoller_new (router, NULL);
    emqp_msg_t *found = NULL;
    while (!found && clock_mono_ms () < deadline) {
        if (!zpoller_wait (poller, 50))
            continue;
        zmsg_t *zmsg = zmsg_recv (router);
        char err[256];
        emqp_limits_t limits = { .payload_max = 1 << 20 };
        emqp_msg_t *msg = emqp_decode (&zmsg, true, &limits, NULL, err, sizeof err);
        if (msg && msg->command == command)
            found = msg;
        else
            emqp_msg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    return found;
}

//  The latest INFORM from self's current socket (one left by a socket it
//  closed is skipped), ticking self so that it sends one when none is on
//  its way; NULL if none comes within a few seconds.
static emqp_msg_t *
s_test_inform (scheduler_t *self, zsock_t *router)
{
    char *identity = zsock_identity (self->sock);
    emqp_msg_t *inform = NULL;
    for (int i = 0; i < 40 && !inform; i++) {
        for (emqp_msg_t *got; (got = s_test_recv (router, EMQP_INFORM, 100));) {
            if (zframe_streq (got->identity, identity)) {
                emqp_msg_destroy (&inform);
                inform = got;
            }
            else
                emqp_msg_destroy (&got);
        }
        if (!inform) {
            self->inform_ms = 0;
            s_on_tick (self->loop, 0, self);
        }
    }
    zstr_free (&identity);
    return inform;
}

//  ACKs INFORMs from self until it is registered (only the latest INFORM
//  registers, and on a loaded machine a later one may still be on its way).
//  Returns whether it is.
static bool
s_test_register (scheduler_t *self, zsock_t *router)
{
    for (int round = 0; round < 20 && !self->registered; round++) {
        emqp_msg_t *inform = s_test_inform (self, router);
        if (!inform)
            break;
        emqp_msg_t *ack = emqp_msg_new (EMQP_ACK);
        ack->identity = zframe_dup (inform->identity);
        ack->ref = strdup (inform->msgid);
        emqp_send (&ack, router);
        emqp_msg_destroy (&inform);
        zpoller_t *p = zpoller_new (self->sock, NULL);
        while (!self->registered && zpoller_wait (p, 200))
            s_on_router (self->loop, self->sock, self);
        zpoller_destroy (&p);
    }
    return self->registered;
}

//  Two fake routers in a list: the scheduler uses the first, moves to the
//  second when the first is silent, INFORMs there and sends again the fire
//  the first did not acknowledge, under the same msgid; then round robin.
static void
s_test_router_list (const char *dir)
{
    char err[512], db[256], a[256], b[256], list[600], admins[600];
    snprintf (db, sizeof db, "%s/list.db", dir);
    snprintf (a, sizeof a, "ipc://%s/frontend-a", dir);
    snprintf (b, sizeof b, "ipc://%s/frontend-b", dir);
    snprintf (list, sizeof list, " %s , %s", a, b);
    snprintf (admins, sizeof admins, "ipc://%s/admin-a,ipc://%s/admin-b", dir, dir);
    scheduler_settings_t settings = {
        .router = "ipc://x,,ipc://y",
        .admin = admins,
        .db_path = db,
        .timezone = "UTC",
        .id = "list",
        .heartbeat_interval_ms = 100,
        .heartbeat_timeout_ms = 1000,
        .heartbeat_liveness = 3,
        .fence = 7,
    };
    //  Bad lists are refused, with the reason.
    CHECK (scheduler_new (&settings, err, sizeof err) == NULL);
    CHECK_CONTAINS (err,
                    "router address: expected ENDPOINT[,ENDPOINT]... (item 2 is empty)");
    settings.router = list;
    settings.admin = "ipc://ok,nope";
    CHECK (scheduler_new (&settings, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "admin address: expected a tcp://, ipc:// or inproc:// endpoint "
                         "as item 2, not 'nope'");
    settings.admin = admins;

    zsock_t *router_a = zsock_new_router (a), *router_b = zsock_new_router (b);
    CHECK (router_a && router_b);
    scheduler_t *self = scheduler_new (&settings, err, sizeof err);
    CHECK (self != NULL);
    if (!self || !router_a || !router_b) {
        scheduler_destroy (&self);
        zsock_destroy (&router_a);
        zsock_destroy (&router_b);
        return;
    }
    CHECK_EQ (self->router_count, 2);
    CHECK_EQ (self->admin_count, 2);
    CHECK_STREQ (self->router, a);
    CHECK (s_test_register (self, router_a));
    emqp_msg_t *sched = emqp_msg_new (EMQP_SCHEDULE);
    sched->msgid = strdup ("s-2");
    sched->queue = strdup ("q");
    sched->headers = strdup ("name:every");
    sched->interval_s = 60;
    sched->payload = zframe_new ("job", 3);
    sched->cron = strdup ("");
    s_on_schedule (self, sched);
    emqp_msg_destroy (&sched);
    sched_t *s = zhashx_lookup (self->scheds, "every");
    CHECK (s != NULL);
    //  An interval fires its first time as it is added, with no tick.
    emqp_msg_t *req = s_test_recv (router_a, EMQP_REQUEST, 1000);
    CHECK (req != NULL);
    //  Router a falls silent (it never ACKs the fire): the next one.
    self->last_heard_ms -= self->hb_timeout_ms * self->liveness + 1;
    s_on_heartbeat (self->loop, 0, self);
    CHECK_EQ (self->router_index, 1);
    CHECK_STREQ (self->router, b);
    CHECK (!self->registered);
    CHECK (s_test_register (self, router_b));
    if (s)
        s->sent_ms = 0;  // due for a resend now
    s_on_tick (self->loop, 0, self);
    emqp_msg_t *again = s_test_recv (router_b, EMQP_REQUEST, 1000);
    CHECK (again != NULL);
    CHECK_STREQ (again ? again->msgid : NULL, req ? req->msgid : "");
    emqp_msg_destroy (&again);
    emqp_msg_destroy (&req);
    //  Round robin: silent again, back to the first.
    self->last_heard_ms -= self->hb_timeout_ms * self->liveness + 1;
    s_on_heartbeat (self->loop, 0, self);
    CHECK_EQ (self->router_index, 0);
    CHECK_STREQ (self->router, a);
    CHECK (s_test_register (self, router_a));
    scheduler_destroy (&self);
    zsock_destroy (&router_a);
    zsock_destroy (&router_b);
}

void
scheduler_test (bool verbose)
{
    if (verbose)
        printf (" * scheduler: ");
    char err[512];
    //  Headers: ours are taken out, the rest passes through.
    s_sched_headers_t h;
    CHECK_EQ (s_parse_headers ("name:nightly,nohaste,run_count:3,misfire:skip,timeout:5,"
                               "reply-requested,guarantee,tz:Europe/Berlin",
                               &h, err, sizeof err),
              0);
    CHECK_STREQ (h.name, "nightly");
    CHECK (h.nohaste && h.skip && h.runs == 3);
    CHECK_STREQ (h.tz, "Europe/Berlin");
    CHECK_STREQ (h.passthrough, "timeout:5,guarantee");
    CHECK_EQ (s_parse_headers ("misfire:sometimes", &h, err, sizeof err), -1);
    CHECK_CONTAINS (err, "not skip or once");
    CHECK_EQ (s_parse_headers ("name:a b", &h, err, sizeof err), -1);
    CHECK_EQ (s_parse_headers ("tz:Nowhere/Special", &h, err, sizeof err), -1);
    CHECK_EQ (s_parse_headers ("run_count:x", &h, err, sizeof err), -1);

    //  A scheduler against a fake router.
    char dir[] = "/tmp/emq-scheduler-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char endpoint[256], db[256];
    snprintf (endpoint, sizeof endpoint, "ipc://%s/frontend", dir);
    snprintf (db, sizeof db, "%s/scheduler.db", dir);
    zsock_t *router = zsock_new_router (endpoint);
    CHECK (router != NULL);
    scheduler_settings_t settings = {
        .router = endpoint,
        .db_path = db,
        .timezone = "UTC",
        .id = "test",
        .heartbeat_interval_ms = 100,
        .heartbeat_timeout_ms = 1000,
        .heartbeat_liveness = 3,
        .misfire_grace_s = 5,
        .fence = 42,
    };
    scheduler_t *self = scheduler_new (&settings, err, sizeof err);
    CHECK (self != NULL);
    if (!self) {
        fprintf (stderr, "scheduler_new: %s\n", err);
        zsock_destroy (&router);
        return;
    }
    //  Drive the loop by hand: one pass at a time.
    emqp_msg_t *inform = NULL;
    for (int i = 0; i < 40 && !inform; i++) {
        self->inform_ms = 0;
        s_on_tick (self->loop, 0, self);
        inform = s_test_recv (router, EMQP_INFORM, 50);
    }
    //  On a busy machine a tick may have sent a second INFORM before the
    //  first arrived here: answer the latest, as a router would be heard.
    for (emqp_msg_t *later; inform && (later = s_test_recv (router, EMQP_INFORM, 100));) {
        emqp_msg_destroy (&inform);
        inform = later;
    }
    CHECK (inform && streq (inform->peer_type, "scheduler"));
    if (inform) {
        emqp_msg_t *ack = emqp_msg_new (EMQP_ACK);
        ack->identity = zframe_dup (inform->identity);
        ack->ref = strdup (inform->msgid);
        emqp_send (&ack, router);
        zpoller_t *p = zpoller_new (self->sock, NULL);
        zpoller_wait (p, 1000);
        zpoller_destroy (&p);
        s_on_router (self->loop, self->sock, self);
        CHECK (self->registered);

        //  SCHEDULE every 1 s, at once (no nohaste), 2 runs.
        emqp_msg_t *sched = emqp_msg_new (EMQP_SCHEDULE);
        sched->msgid = strdup ("s-1");
        sched->queue = strdup ("q");
        sched->headers = strdup ("name:tick,run_count:2,timeout:9");
        sched->interval_s = 1;
        sched->payload = zframe_new ("job", 3);
        sched->cron = strdup ("");
        s_on_schedule (self, sched);
        emqp_msg_destroy (&sched);
        sched_t *s = zhashx_lookup (self->scheds, "tick");
        CHECK (s != NULL);
        s_fire_due (self);
        emqp_msg_t *req = s_test_recv (router, EMQP_REQUEST, 1000);
        CHECK (req != NULL);
        if (req && s) {
            char expect[64];
            snprintf (expect, sizeof expect, "sched:tick:%" PRId64, s->last_fire);
            CHECK_STREQ (req->msgid, expect);
            CHECK_STREQ (req->queue, "q");
            //  The token's scope: this host's local lock.
            char headers[128];
            snprintf (headers, sizeof headers,
                      "timeout:9,reply-requested,fence:42,fence-scope:%s",
                      self->fence_scope);
            CHECK (strncmp (self->fence_scope, "local:", 6) == 0);
            CHECK_STREQ (req->headers, headers);
            CHECK_EQ (s->runs_left, 1);
            //  Not ACKed: sent again with the same msgid.
            s->sent_ms -= S_RESEND_MS;
            s_resend (self);
            emqp_msg_t *again = s_test_recv (router, EMQP_REQUEST, 1000);
            CHECK (again && streq (again->msgid, expect));
            emqp_msg_destroy (&again);
        }
        emqp_msg_destroy (&req);
        //  A bad cron is refused with a reason.
        sched = emqp_msg_new (EMQP_SCHEDULE);
        sched->msgid = strdup ("s-2");
        sched->queue = strdup ("q");
        sched->headers = strdup ("");
        sched->interval_s = -1;
        sched->payload = zframe_new ("job", 3);
        sched->cron = strdup ("61 * * * *");
        s_on_schedule (self, sched);
        emqp_msg_destroy (&sched);
        emqp_msg_t *error = s_test_recv (router, EMQP_ERROR, 1000);
        CHECK (error && streq (error->ref, "s-2"));
        if (error)
            CHECK_CONTAINS (error->error_text, "out of range 0..59");
        emqp_msg_destroy (&error);
        //  So is an interval the fire arithmetic would overflow on (the
        //  codec takes any int64).
        sched = emqp_msg_new (EMQP_SCHEDULE);
        sched->msgid = strdup ("s-3");
        sched->queue = strdup ("q");
        sched->headers = strdup ("name:huge");
        sched->interval_s = INT64_MAX;
        sched->payload = zframe_new ("job", 3);
        sched->cron = strdup ("");
        s_on_schedule (self, sched);
        emqp_msg_destroy (&sched);
        error = s_test_recv (router, EMQP_ERROR, 1000);
        CHECK (error && streq (error->ref, "s-3"));
        if (error)
            CHECK_CONTAINS (error->error_text, "too long");
        emqp_msg_destroy (&error);
        CHECK (zhashx_lookup (self->scheds, "huge") == NULL);

        //  Misfire once: an interval schedule 100 s behind fires once, for
        //  the latest fire time.
        if (s) {
            int64_t now_s = (int64_t) floor (clock_wall_s ());
            s->runs_left = -1;
            s->anchor = now_s - 100;
            s->next_fire = now_s - 99;
            s->due_known = false;  // placed from next_fire again, as after a load
            s->last_fire = s->acked_fire;
            s_fire_due (self);
            CHECK_EQ (s->last_fire, now_s);
            CHECK_EQ (s->next_fire, now_s + 1);
            //  Misfire skip: the latest fire time is 30 s late (past the
            //  grace): nothing fires, next is in the future.
            s->misfire_skip = true;
            s->interval_s = 60;
            s->anchor = now_s - 630;
            s->next_fire = now_s - 90;
            s->due_known = false;
            int64_t before = s->last_fire;
            s_fire_due (self);
            CHECK_EQ (s->last_fire, before);
            CHECK_EQ (s->next_fire, now_s + 30);
            //  A fire time at or before the last one fired never fires again.
            s->misfire_skip = false;
            s->next_fire = s->last_fire;
            s->due_known = false;
            s_fire_due (self);
            CHECK_EQ (s->last_fire, before);
            CHECK_EQ (s->next_fire, now_s + 30);  // the next grid point

            //  The monotonic clock sets the pace of intervals, the wall clock
            //  does not. A stored next_fire 10 minutes ahead of the wall (the
            //  clock went back since): due within one interval, at its own
            //  fire time, not in 10 minutes.
            s->interval_s = 1;
            s->anchor = now_s + 600;
            s->next_fire = now_s + 600;
            s->last_fire = s->acked_fire = now_s + 599;
            s->due_known = false;
            s_fire_due (self);
            CHECK_EQ (s->last_fire, now_s + 599);  // not yet: one interval
            CHECK (s->due_known && s->due_ms <= clock_mono_ms () + 1000);
            s->due_ms -= 1000;  // one second later by the monotonic clock
            s_fire_due (self);
            CHECK_EQ (s->last_fire, now_s + 600);
            CHECK_EQ (s->next_fire, now_s + 601);
            //  Due times follow the monotonic clock whatever next_fire says:
            //  a fire time an hour behind the wall (the clock went forward)
            //  is neither a misfire nor a burst; it fires when due.
            s->next_fire = now_s - 3600;
            s->last_fire = s->acked_fire = now_s - 3601;
            s->due_ms = clock_mono_ms () + 500;
            s_fire_due (self);
            CHECK_EQ (s->last_fire, now_s - 3601);
            s->due_ms -= 500;
            s_fire_due (self);
            CHECK_EQ (s->last_fire, now_s - 3600);
            CHECK_EQ (s->next_fire, now_s - 3599);
            s_fire_due (self);
            CHECK_EQ (s->last_fire, now_s - 3600);  // one fire, not 3600
            //  A step of the wall clock against the monotonic one is noticed.
            self->clock_offset_ms -= 600 * 1000;
            int64_t stepped = self->clock_offset_ms;
            s_watch_clock (self);
            CHECK (self->clock_offset_ms != stepped);
        }
        //  Persisted: a second scheduler on the same file has the schedule.
        scheduler_destroy (&self);
        self = scheduler_new (&settings, err, sizeof err);
        CHECK (self && zhashx_lookup (self->scheds, "tick"));
    }
    emqp_msg_destroy (&inform);
    scheduler_destroy (&self);
    CHECK (self == NULL);
    zsock_destroy (&router);
    s_test_router_list (dir);
    char cmd[300];
    snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "cannot remove %s\n", dir);
    if (verbose)
        printf ("OK\n");
}
