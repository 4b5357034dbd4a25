/*  etcd — leadership and shared schedules through etcd's JSON gateway. See
    etcd.h.

    The actor thread owns one libcurl easy handle, the member's lease and
    the queue of writes not yet done. It wakes every 100 ms (or on a
    command), and in turn: does queued writes (in order; a failed one stays
    at the head and is tried again), grants a lease if it has none, keeps
    the lease alive every TTL/3, campaigns for the leader key every second
    when not leading, and when leading checks every second that the key is
    still its own and polls the schedules for changes.

    gRPC-gateway JSON: keys and values are base64, 64-bit numbers are
    strings; fields with a zero value are left out of answers.
*/
#include "etcd.h"
#include "schedules.h"

#include "log.h"
#include "numparse.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *endpoint;
    char *prefix;
    char *id;
    double ttl_s;
} s_args_t;

struct etcd_t {
    zactor_t *actor;
    s_args_t *args;  // read by the thread; freed after it ends
};

//  The thread's state.
typedef struct {
    s_args_t *args;
    zsock_t *pipe;
    CURL *curl;
    char *body;  // last response
    size_t body_size;
    int64_t lease;  // 0 = none
    int64_t ttl_ms;
    int64_t lease_ok_ms;  // mono time before the last successful grant/keepalive
    int64_t deadline_ms;  // lease_ok_ms + ttl - margin
    int64_t next_keepalive_ms;
    bool leading;
    int64_t revision;       // leader key's create revision while leading
    int64_t next_check_ms;  // campaign / leadership check / schedules poll
    char sched_sig[64];     // signature of the last schedules sent
    zlist_t *ops;           // queued writes: zmsg_t * (op, key, value)
    char *member;           // JSON to publish
    bool member_dirty;
    CURLM *multi;         // runs the watch without blocking
    CURL *watch;          // the leader key's watch, or NULL
    char *watch_request;  // its POST body (must outlive the transfer)
    char *watch_buf;      // stream received, not yet a whole line
    size_t watch_size;
    bool leader_deleted;    // the watch saw the leader key go
    int64_t next_watch_ms;  // when to open the watch again
} s_etcd_t;

static size_t
s_write (char *data, size_t size, size_t nmemb, void *arg)
{
    s_etcd_t *self = (s_etcd_t *) arg;
    size_t n = size * nmemb;
    char *grown = realloc (self->body, self->body_size + n + 1);
    if (!grown)
        return 0;
    self->body = grown;
    memcpy (self->body + self->body_size, data, n);
    self->body_size += n;
    self->body[self->body_size] = 0;
    return n;
}

//  POSTs request (taken) to /v3/<path>. Returns the parsed answer (caller
//  decrefs) or NULL (logged at debug: etcd down is an expected state).
static json_t *
s_post (s_etcd_t *self, const char *path, json_t *request)
{
    char *text = json_dumps (request, JSON_COMPACT);
    json_decref (request);
    if (!text)
        return NULL;
    char url[1024];
    snprintf (url, sizeof url, "%s/v3/%s", self->args->endpoint, path);
    free (self->body);
    self->body = NULL;
    self->body_size = 0;
    struct curl_slist *headers =
        curl_slist_append (NULL, "Content-Type: application/json");
    curl_easy_setopt (self->curl, CURLOPT_URL, url);
    curl_easy_setopt (self->curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt (self->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (self->curl, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt (self->curl, CURLOPT_WRITEDATA, self);
    long timeout_ms = (long) (self->ttl_ms / 4);
    curl_easy_setopt (self->curl, CURLOPT_TIMEOUT_MS,
                      timeout_ms < 500 ? 500L : timeout_ms);
    curl_easy_setopt (self->curl, CURLOPT_CONNECTTIMEOUT_MS, 500L);
    curl_easy_setopt (self->curl, CURLOPT_NOSIGNAL, 1L);
    int64_t started = zclock_mono ();
    CURLcode rc = curl_easy_perform (self->curl);
    int64_t took = zclock_mono () - started;
    if (took > 2 * (timeout_ms < 500 ? 500 : timeout_ms))
        log_warning ("etcd: %s took %" PRId64 " ms (timeout %ld ms)", path, took,
                     timeout_ms);
    curl_slist_free_all (headers);
    free (text);
    long status = 0;
    curl_easy_getinfo (self->curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
        log_debug ("etcd: %s: %s (HTTP %ld)", path,
                   rc != CURLE_OK ? curl_easy_strerror (rc)
                                  : (self->body ? self->body : ""),
                   status);
        return NULL;
    }
    json_t *answer = json_loadb (self->body ? self->body : "", self->body_size, 0, NULL);
    if (!answer)
        log_warning ("etcd: %s: answer is not JSON", path);
    return answer;
}

//  A gateway int64 (a decimal string) in buf (32 bytes).
static const char *
s_num (int64_t value, char *buf)
{
    snprintf (buf, 32, "%" PRId64, value);
    return buf;
}

static json_t *
s_b64 (const char *text)
{
    char *b = b64_encode (text, strlen (text));
    json_t *value = json_string (b ? b : "");
    free (b);
    return value;
}

//  Reads a gateway int64 (a string, or absent or not a number = 0).
static int64_t
s_int (json_t *obj, const char *key)
{
    json_t *value = json_object_get (obj, key);
    int64_t number;
    if (json_is_string (value))
        return numparse_int (json_string_value (value), INT64_MIN, INT64_MAX, &number)
                   ? 0
                   : number;
    if (json_is_integer (value))
        return json_integer_value (value);
    return 0;
}

//  A kv's value, decoded (caller frees), or NULL.
static char *
s_kv_value (json_t *kv)
{
    const char *value = json_string_value (json_object_get (kv, "value"));
    if (!value)
        return strdup ("");
    size_t size = 0;
    char *bytes = b64_decode (value, strlen (value), &size);
    if (!bytes)
        return NULL;
    bytes[size] = 0;  // b64_decode leaves room for one more byte
    return bytes;
}

static void
s_key (s_etcd_t *self, char *buf, size_t size, const char *what, const char *name)
{
    snprintf (buf, size, "%s/%s%s%s", self->args->prefix, what, name ? "/" : "",
              name ? name : "");
}

static void
s_event3 (s_etcd_t *self, const char *type, const char *a, const char *b, const char *c)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, type);
    if (a)
        zmsg_addstr (msg, a);
    if (b)
        zmsg_addstr (msg, b);
    if (c)
        zmsg_addstr (msg, c);
    if (zmsg_send (&msg, self->pipe)) {
        log_warning ("etcd: event %s not delivered to the scheduler loop", type);
        zmsg_destroy (&msg);
    }
}

static void
s_event (s_etcd_t *self, const char *type, const char *a, const char *b)
{
    s_event3 (self, type, a, b, NULL);
}

static void
s_lost (s_etcd_t *self, const char *why)
{
    if (!self->leading)
        return;
    self->leading = false;
    self->sched_sig[0] = 0;
    log_warning ("etcd: leadership lost: %s", why);
    s_event (self, "LOST", why, NULL);
}

static void
s_set_deadline (s_etcd_t *self, int64_t t0, int64_t ttl_ms)
{
    self->ttl_ms = ttl_ms;
    self->lease_ok_ms = t0;
    //  Stop acting before etcd can expire the lease: it counts the TTL from
    //  when it received our request, which is after t0.
    int64_t margin = ttl_ms / 10 > 1000 ? ttl_ms / 10 : 1000;
    self->deadline_ms = t0 + ttl_ms - margin;
    self->next_keepalive_ms = t0 + ttl_ms / 3;
}

static void
s_grant (s_etcd_t *self)
{
    int64_t t0 = zclock_mono ();
    json_t *answer = s_post (self, "lease/grant",
                             json_pack ("{s:I}", "TTL", (json_int_t) self->args->ttl_s));
    int64_t id = answer ? s_int (answer, "ID") : 0;
    int64_t ttl = answer ? s_int (answer, "TTL") : 0;
    json_decref (answer);
    if (id && ttl > 0) {
        self->lease = id;
        s_set_deadline (self, t0, ttl * 1000);
        self->member_dirty = true;
        log_info ("etcd: lease %" PRIx64 " granted (TTL %" PRId64 " s)", (uint64_t) id,
                  ttl);
    }
}

static void
s_keepalive (s_etcd_t *self)
{
    char id_text[32];
    int64_t t0 = zclock_mono ();
    json_t *answer = s_post (self, "lease/keepalive",
                             json_pack ("{s:s}", "ID", s_num (self->lease, id_text)));
    if (!answer) {
        //  Unreachable: try again soon; the deadline stands.
        self->next_keepalive_ms = t0 + 500;
        if (self->leading && t0 >= self->deadline_ms)
            s_lost (self, "etcd unreachable; lease could not be renewed in time");
        return;
    }
    json_t *result = json_object_get (answer, "result");
    int64_t ttl = s_int (result, "TTL");
    json_decref (answer);
    if (ttl <= 0) {
        log_warning ("etcd: lease %" PRIx64 " expired", (uint64_t) self->lease);
        self->lease = 0;
        s_lost (self, "lease expired");
        return;
    }
    s_set_deadline (self, t0, ttl * 1000);
    log_debug ("etcd: lease %" PRIx64 " kept alive (TTL %" PRId64 " s)",
               (uint64_t) self->lease, ttl);
    if (self->leading) {
        char deadline[32];
        snprintf (deadline, sizeof deadline, "%" PRId64, self->deadline_ms);
        s_event (self, "RENEWED", deadline, NULL);
    }
}

static void
s_lead (s_etcd_t *self, int64_t revision, json_t *header)
{
    //  The gateway writes the cluster id as a decimal string.
    json_t *cluster = json_object_get (header, "cluster_id");
    char cluster_id[32] = "";
    if (json_is_string (cluster))
        snprintf (cluster_id, sizeof cluster_id, "%.20s", json_string_value (cluster));
    else if (json_is_integer (cluster))
        snprintf (cluster_id, sizeof cluster_id, "%" PRIu64,
                  (uint64_t) json_integer_value (cluster));
    self->leading = true;
    self->revision = revision;
    self->sched_sig[0] = 0;
    self->member_dirty = true;
    char rev[32], deadline[32];
    snprintf (rev, sizeof rev, "%" PRId64, revision);
    snprintf (deadline, sizeof deadline, "%" PRId64, self->deadline_ms);
    log_info ("etcd: leading (revision %" PRId64 ")", revision);
    s_event3 (self, "LEADER", rev, deadline, cluster_id);
}

//  Not leading: try to create the leader key; if it exists and is ours (our
//  lease survived an etcd restart), we lead again.
static void
s_campaign (s_etcd_t *self)
{
    char id_text[32];
    char key[600];
    s_key (self, key, sizeof key, "leader", NULL);
    json_t *answer = s_post (
        self, "kv/txn",
        json_pack ("{s:[{s:o, s:s, s:s, s:s}], s:[{s:{s:o, s:o, s:s}}], s:[{s:{s:o}}]}",
                   "compare", "key", s_b64 (key), "target", "CREATE", "result", "EQUAL",
                   "create_revision", "0", "success", "request_put", "key", s_b64 (key),
                   "value", s_b64 (self->args->id), "lease", s_num (self->lease, id_text),
                   "failure", "request_range", "key", s_b64 (key)));
    if (!answer)
        return;
    if (json_is_true (json_object_get (answer, "succeeded"))) {
        json_t *header = json_object_get (answer, "header");
        int64_t rev = s_int (header, "revision");
        if (zclock_mono () < self->deadline_ms)
            s_lead (self, rev, header);
        json_decref (answer);
        return;
    }
    json_t *responses = json_object_get (answer, "responses");
    json_t *range = json_object_get (json_array_get (responses, 0), "response_range");
    json_t *kv = json_array_get (json_object_get (range, "kvs"), 0);
    char *holder = kv ? s_kv_value (kv) : NULL;
    log_debug ("etcd: campaign lost: %s holds the leader key (lease %" PRIx64 ")",
               holder ? holder : "?", (uint64_t) s_int (kv, "lease"));
    if (kv && holder && streq (holder, self->args->id)
        && s_int (kv, "lease") == self->lease && zclock_mono () < self->deadline_ms)
        s_lead (self, s_int (kv, "create_revision"), json_object_get (answer, "header"));
    free (holder);
    json_decref (answer);
}

//  Leading: the key must still be ours.
static void
s_check_leader (s_etcd_t *self)
{
    char key[600];
    s_key (self, key, sizeof key, "leader", NULL);
    json_t *answer = s_post (self, "kv/range", json_pack ("{s:o}", "key", s_b64 (key)));
    if (!answer)
        return;  // unreachable: the deadline decides
    json_t *kv = json_array_get (json_object_get (answer, "kvs"), 0);
    char *holder = kv ? s_kv_value (kv) : NULL;
    if (!kv || !holder || !streq (holder, self->args->id)
        || s_int (kv, "lease") != self->lease)
        s_lost (self, "the leader key is gone or another member's");
    free (holder);
    json_decref (answer);
}

//  Leading: sends the schedules when they changed.
static void
s_poll_schedules (s_etcd_t *self)
{
    char key[600], end[600];
    s_key (self, key, sizeof key, "schedules/", NULL);
    snprintf (end, sizeof end, "%s", key);
    end[strlen (end) - 1]++;  // prefix range: '/' + 1 = '0'
    json_t *answer =
        s_post (self, "kv/range",
                json_pack ("{s:o, s:o}", "key", s_b64 (key), "range_end", s_b64 (end)));
    if (!answer)
        return;
    json_t *kvs = json_object_get (answer, "kvs");
    int64_t sum = 0, max = 0;
    size_t index;
    json_t *kv;
    json_array_foreach (kvs, index, kv)
    {
        int64_t mod = s_int (kv, "mod_revision");
        sum += mod;
        if (mod > max)
            max = mod;
    }
    char sig[64];
    snprintf (sig, sizeof sig, "%zu:%" PRId64 ":%" PRId64, json_array_size (kvs), sum,
              max);
    if (strcmp (sig, self->sched_sig)) {
        snprintf (self->sched_sig, sizeof self->sched_sig, "%s", sig);
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "SCHEDULES");
        json_array_foreach (kvs, index, kv)
        {
            char *value = s_kv_value (kv);
            if (value)
                zmsg_addstr (msg, value);
            free (value);
        }
        if (zmsg_send (&msg, self->pipe)) {
            log_warning ("etcd: schedules not delivered to the scheduler loop");
            zmsg_destroy (&msg);
            self->sched_sig[0] = 0;  // try again next time
        }
    }
    json_decref (answer);
}

//  Does queued writes in order. Returns when one fails (kept for later).
static void
s_do_ops (s_etcd_t *self)
{
    zmsg_t *op;
    while ((op = (zmsg_t *) zlist_first (self->ops))) {
        char *verb = zmsg_popstr (op);
        char *key = zmsg_popstr (op);
        char *value = zmsg_popstr (op);
        char full[600];
        s_key (self, full, sizeof full, key, NULL);
        json_t *answer = streq (verb, "PUT")
                             ? s_post (self, "kv/put",
                                       json_pack ("{s:o, s:o}", "key", s_b64 (full),
                                                  "value", s_b64 (value ? value : "")))
                             : s_post (self, "kv/deleterange",
                                       json_pack ("{s:o}", "key", s_b64 (full)));
        if (!answer) {
            //  Put the frames back for the next try.
            zmsg_pushstr (op, value ? value : "");
            zmsg_pushstr (op, key);
            zmsg_pushstr (op, verb);
            free (verb);
            free (key);
            free (value);
            return;
        }
        json_decref (answer);
        free (verb);
        free (key);
        free (value);
        zlist_remove (self->ops, op);
        zmsg_destroy (&op);
    }
}

static void
s_publish_member (s_etcd_t *self)
{
    char id_text[32];
    if (!self->member || !self->lease)
        return;
    char key[600];
    s_key (self, key, sizeof key, "members", self->args->id);
    json_t *answer =
        s_post (self, "kv/put",
                json_pack ("{s:o, s:o, s:s}", "key", s_b64 (key), "value",
                           s_b64 (self->member), "lease", s_num (self->lease, id_text)));
    if (answer)
        self->member_dirty = false;
    json_decref (answer);
}

//  The watch stream: one JSON object per line; a DELETE event on the
//  leader key means it is free.
static size_t
s_watch_write (char *data, size_t size, size_t nmemb, void *arg)
{
    s_etcd_t *self = (s_etcd_t *) arg;
    size_t n = size * nmemb;
    if (self->watch_size + n > 1 << 20)
        return 0;  // a line this long is not etcd: drop the stream
    char *grown = realloc (self->watch_buf, self->watch_size + n + 1);
    if (!grown)
        return 0;
    self->watch_buf = grown;
    memcpy (self->watch_buf + self->watch_size, data, n);
    self->watch_size += n;
    self->watch_buf[self->watch_size] = 0;
    char *line = self->watch_buf, *end;
    while ((end = strchr (line, '\n'))) {
        *end = 0;
        json_t *answer = json_loads (line, 0, NULL);
        json_t *events = json_object_get (json_object_get (answer, "result"), "events");
        for (size_t i = 0; i < json_array_size (events); i++) {
            const char *type =
                json_string_value (json_object_get (json_array_get (events, i), "type"));
            if (type && streq (type, "DELETE"))
                self->leader_deleted = true;
        }
        json_decref (answer);
        line = end + 1;
    }
    //  Keep the unfinished line for the next chunk.
    self->watch_size = strlen (line);
    memmove (self->watch_buf, line, self->watch_size + 1);
    return n;
}

static void
s_watch_stop (s_etcd_t *self)
{
    if (!self->watch)
        return;
    curl_multi_remove_handle (self->multi, self->watch);
    curl_easy_cleanup (self->watch);
    self->watch = NULL;
    free (self->watch_request);
    self->watch_request = NULL;
    self->watch_size = 0;
}

static void
s_watch_start (s_etcd_t *self)
{
    char key[600];
    s_key (self, key, sizeof key, "leader", NULL);
    json_t *request = json_pack ("{s:{s:o}}", "create_request", "key", s_b64 (key));
    self->watch_request = request ? json_dumps (request, JSON_COMPACT) : NULL;
    json_decref (request);
    self->watch = curl_easy_init ();
    if (!self->watch || !self->watch_request) {
        s_watch_stop (self);
        return;
    }
    char url[1024];
    snprintf (url, sizeof url, "%s/v3/watch", self->args->endpoint);
    curl_easy_setopt (self->watch, CURLOPT_URL, url);
    curl_easy_setopt (self->watch, CURLOPT_POSTFIELDS, self->watch_request);
    curl_easy_setopt (self->watch, CURLOPT_WRITEFUNCTION, s_watch_write);
    curl_easy_setopt (self->watch, CURLOPT_WRITEDATA, self);
    curl_easy_setopt (self->watch, CURLOPT_CONNECTTIMEOUT_MS, 500L);
    curl_easy_setopt (self->watch, CURLOPT_NOSIGNAL, 1L);
    //  A stream that says nothing for a while may be dead: start over.
    curl_easy_setopt (self->watch, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt (self->watch, CURLOPT_LOW_SPEED_TIME, 60L);
    if (curl_multi_add_handle (self->multi, self->watch) != CURLM_OK)
        s_watch_stop (self);
}

//  Advances the watch without blocking; opens it when not leading, closes
//  it when leading or when it ended (to be opened again a second later).
static void
s_watch_turn (s_etcd_t *self, int64_t now)
{
    if (!self->multi)
        return;
    if (self->leading || !self->lease) {
        s_watch_stop (self);
        return;
    }
    if (!self->watch && now >= self->next_watch_ms)
        s_watch_start (self);
    if (!self->watch)
        return;
    int running = 0;
    curl_multi_perform (self->multi, &running);
    if (!running) {
        s_watch_stop (self);
        self->next_watch_ms = now + 1000;
    }
}

static void
s_actor (zsock_t *pipe, void *arg)
{
    s_etcd_t state = { .args = (s_args_t *) arg, .pipe = pipe };
    s_etcd_t *self = &state;
    self->curl = curl_easy_init ();
    self->multi = curl_multi_init ();
    self->ops = zlist_new ();
    self->ttl_ms = (int64_t) (self->args->ttl_s * 1000);
    zsock_signal (pipe, self->curl && self->ops ? 0 : 1);
    if (!self->curl || !self->ops)
        goto done;
    //  Events to the loop never block this thread for long (the loop reads
    //  them at once; a full pipe means it is stuck, and its own deadline
    //  keeps it safe).
    zsock_set_sndtimeo (pipe, 1000);
    zpoller_t *poller = zpoller_new (pipe, NULL);
    bool stop = false;
    while (!stop) {
        //  Take every command waiting, not one per turn: a turn can spend
        //  seconds on HTTP while etcd is slow.
        int wait_ms = 100;
        while (zpoller_wait (poller, wait_ms)) {
            wait_ms = 0;
            zmsg_t *cmd = zmsg_recv (pipe);
            if (!cmd) {
                stop = true;
                break;
            }
            char *verb = zmsg_popstr (cmd);
            if (!verb || streq (verb, "$TERM")) {
                free (verb);
                zmsg_destroy (&cmd);
                stop = true;
                break;
            }
            if (streq (verb, "PUB")) {
                free (self->member);
                self->member = zmsg_popstr (cmd);
                self->member_dirty = true;
                zmsg_destroy (&cmd);
            }
            else {
                zmsg_pushstr (cmd, verb);
                zlist_append (self->ops, cmd);
            }
            free (verb);
        }
        if (stop || zpoller_terminated (poller))
            break;
        int64_t now = zclock_mono ();
        //  Same rule as the scheduler's tick: past the deadline we do not
        //  lead, whatever etcd says later (then we campaign again, and win
        //  at once if our lease and the key survived, e.g. an etcd restart).
        if (self->leading && now >= self->deadline_ms)
            s_lost (self, "lease not renewed before the deadline");
        s_do_ops (self);
        if (!self->lease) {
            if (now >= self->next_check_ms) {
                s_grant (self);
                self->next_check_ms = now + 1000;
            }
            continue;
        }
        if (now >= self->next_keepalive_ms)
            s_keepalive (self);
        if (!self->lease)
            continue;
        if (self->member_dirty)
            s_publish_member (self);
        s_watch_turn (self, zclock_mono ());
        if (self->leader_deleted && !self->leading) {
            //  The key is free: campaign now, not at the next check.
            self->leader_deleted = false;
            log_debug ("etcd: the leader key was deleted; campaigning");
            self->next_check_ms = 0;
        }
        if (zclock_mono () >= self->next_check_ms) {
            self->next_check_ms = zclock_mono () + 1000;
            if (!self->leading)
                s_campaign (self);
            else {
                s_check_leader (self);
                if (self->leading)
                    s_poll_schedules (self);
            }
        }
    }
    zpoller_destroy (&poller);
    //  Leaving: give the key up at once so another member need not wait
    //  for the TTL.
    if (self->lease) {
        char id_text[32];
        json_t *answer = s_post (self, "lease/revoke",
                                 json_pack ("{s:s}", "ID", s_num (self->lease, id_text)));
        json_decref (answer);
    }
done:
    if (self->ops) {
        zmsg_t *op;
        while ((op = (zmsg_t *) zlist_pop (self->ops)))
            zmsg_destroy (&op);
        zlist_destroy (&self->ops);
    }
    s_watch_stop (self);
    if (self->multi)
        curl_multi_cleanup (self->multi);
    free (self->watch_buf);
    if (self->curl)
        curl_easy_cleanup (self->curl);
    free (self->body);
    free (self->member);
}

etcd_t *
etcd_new (const char *endpoint, const char *prefix, const char *id, double ttl_s,
          char *err, size_t errlen)
{
    if (strncmp (endpoint, "http://", 7) && strncmp (endpoint, "https://", 8)) {
        snprintf (err, errlen,
                  "etcd endpoint '%.200s' must start with http:// or https://", endpoint);
        return NULL;
    }
    static bool curl_ready = false;
    if (!curl_ready) {
        if (curl_global_init (CURL_GLOBAL_DEFAULT)) {
            snprintf (err, errlen, "libcurl cannot start");
            return NULL;
        }
        curl_ready = true;
    }
    etcd_t *self = calloc (1, sizeof (etcd_t));
    s_args_t *args = calloc (1, sizeof (s_args_t));
    if (!self || !args) {
        free (self);
        free (args);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    args->endpoint = strdup (endpoint);
    size_t len = strlen (args->endpoint);
    while (len && args->endpoint[len - 1] == '/')
        args->endpoint[--len] = 0;
    args->prefix = strdup (prefix);
    len = strlen (args->prefix);
    while (len && args->prefix[len - 1] == '/')
        args->prefix[--len] = 0;
    args->id = strdup (id);
    args->ttl_s = ttl_s < 2 ? 2 : ttl_s;
    //  The args live as long as the actor; freed in etcd_destroy.
    self->actor = zactor_new (s_actor, args);
    if (!self->actor) {
        snprintf (err, errlen, "cannot start the etcd thread");
        self->args = args;
        etcd_destroy (&self);
        return NULL;
    }
    //  Commands never block the scheduler's loop for long.
    zsock_set_sndtimeo (self->actor, 100);
    self->args = args;
    return self;
}

void
etcd_destroy (etcd_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    etcd_t *self = *self_p;
    zactor_destroy (&self->actor);
    if (self->args) {
        free (self->args->endpoint);
        free (self->args->prefix);
        free (self->args->id);
        free (self->args);
    }
    free (self);
    *self_p = NULL;
}

zsock_t *
etcd_socket (etcd_t *self)
{
    return zactor_sock (self->actor);
}

etcd_event_t *
etcd_recv (etcd_t *self)
{
    zmsg_t *msg = zmsg_recv (self->actor);
    if (!msg)
        return NULL;
    char *type = zmsg_popstr (msg);
    etcd_event_t *ev = calloc (1, sizeof (etcd_event_t));
    if (!ev || !type) {
        free (ev);
        free (type);
        zmsg_destroy (&msg);
        return NULL;
    }
    if (streq (type, "LEADER")) {
        ev->type = ETCD_EV_LEADER;
        char *rev = zmsg_popstr (msg), *deadline = zmsg_popstr (msg);
        ev->cluster = zmsg_popstr (msg);
        ev->revision = rev ? strtoll (rev, NULL, 10) : 0;
        ev->deadline_ms = deadline ? strtoll (deadline, NULL, 10) : 0;
        free (rev);
        free (deadline);
    }
    else if (streq (type, "RENEWED")) {
        ev->type = ETCD_EV_RENEWED;
        char *deadline = zmsg_popstr (msg);
        ev->deadline_ms = deadline ? strtoll (deadline, NULL, 10) : 0;
        free (deadline);
    }
    else if (streq (type, "LOST")) {
        ev->type = ETCD_EV_LOST;
        ev->reason = zmsg_popstr (msg);
    }
    else {
        ev->type = ETCD_EV_SCHEDULES;
        ev->items = zlist_new ();
        zlist_autofree (ev->items);
        char *item;
        while ((item = zmsg_popstr (msg))) {
            zlist_append (ev->items, item);
            free (item);
        }
    }
    free (type);
    zmsg_destroy (&msg);
    return ev;
}

void
etcd_event_destroy (etcd_event_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zlist_destroy (&(*self_p)->items);
    free ((*self_p)->reason);
    free ((*self_p)->cluster);
    free (*self_p);
    *self_p = NULL;
}

static void
s_command (etcd_t *self, const char *verb, const char *key, const char *value)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, verb);
    if (key)
        zmsg_addstr (msg, key);
    if (value)
        zmsg_addstr (msg, value);
    if (zmsg_send (&msg, self->actor))
        log_warning ("etcd: %s not queued", verb);
}

void
etcd_put_schedule (etcd_t *self, const char *name, const char *json)
{
    char key[600];
    snprintf (key, sizeof key, "schedules/%s", name);
    s_command (self, "PUT", key, json);
}

void
etcd_delete_schedule (etcd_t *self, const char *name)
{
    char key[600];
    snprintf (key, sizeof key, "schedules/%s", name);
    s_command (self, "DEL", key, NULL);
}

void
etcd_publish (etcd_t *self, const char *json)
{
    s_command (self, "PUB", json, NULL);
}

#include "tests/testutil.h"

void
etcd_test (bool verbose)
{
    if (verbose)
        printf (" * etcd: ");
    char err[256];
    //  The endpoint must be a URL; the thread starts and stops cleanly even
    //  when nothing listens there.
    CHECK (etcd_new ("localhost:2379", "/emq", "t", 15, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "http://");
    etcd_t *etcd = etcd_new ("http://127.0.0.1:1", "/emq/", "t", 3, err, sizeof err);
    CHECK (etcd != NULL);
    etcd_put_schedule (etcd, "x", "{}");
    zclock_sleep (200);
    etcd_destroy (&etcd);
    CHECK (etcd == NULL);
    if (verbose)
        printf ("OK\n");
}
