/*  server — emq-web's HTTP requests. See server.h.

    libmicrohttpd runs a thread per connection; each request either reads
    the sampler (under its lock) or sends one admin command on a socket of
    its own (libemq's emq_admin opens one per call), so requests never share
    a ZeroMQ socket. Nothing here holds job state.

    Every input is untrusted: paths are checked against a strict pattern
    before any file is opened, msgids are checked by libemq, POST actions
    need the X-EMQ-Request header (a page of another origin cannot send it
    without a CORS preflight, which we never grant), and with a password
    every request needs HTTP basic auth.
*/
#include "server.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emq/client.h"
#include "json.h"
#include "log.h"
#include "numparse.h"

#define S_USER "emq"

struct server_t {
    struct MHD_Daemon *daemon;
    sampler_t *sampler;  // borrowed
    char *password;
    char *static_dir;
    char *admin;
    char *frontend;
    int timeout_ms;
    uint16_t port;
};

//  Queues a response with the body (taken: malloc'd) and the house headers.
static enum MHD_Result
s_reply (struct MHD_Connection *conn, unsigned status, const char *type, char *body,
         size_t size)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer (size, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (body);
        return MHD_NO;
    }
    MHD_add_response_header (response, "Content-Type", type);
    MHD_add_response_header (response, "Cache-Control", "no-store");
    MHD_add_response_header (response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header (response, "Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:");
    enum MHD_Result rc = MHD_queue_response (conn, status, response);
    MHD_destroy_response (response);
    return rc;
}

//  Replies with JSON (taken; NULL: out of memory, 500).
static enum MHD_Result
s_json (struct MHD_Connection *conn, unsigned status, json_t *root)
{
    char *text = root ? json_dumps (root, JSON_COMPACT) : NULL;
    json_decref (root);
    if (!text)
        return s_reply (conn, 500, "text/plain", strdup ("out of memory\n"), 14);
    return s_reply (conn, status, "application/json", text, strlen (text));
}

static enum MHD_Result
s_error (struct MHD_Connection *conn, unsigned status, const char *message)
{
    return s_json (conn, status, json_pack ("{s:s}", "error", message));
}

//  The HTTP status for a libemq error of an admin command.
static unsigned
s_status_for (int rc)
{
    switch (rc) {
        case EMQ_OK:
            return 200;
        case EMQ_ERR_NOT_FOUND:
            return 404;
        case EMQ_ERR_INVALID:
            return 400;
        case EMQ_ERR_REJECTED:
            return 409;
        default:
            return 502;  // the router did not answer, or answered nonsense
    }
}

//  One admin command; its JSON reply (or {"error"}) goes to the browser.
static enum MHD_Result
s_admin (server_t *self, struct MHD_Connection *conn, const char *command,
         const char *ref)
{
    char *reply = NULL;
    int rc = emq_admin_job (self->admin, command, ref, self->timeout_ms, &reply);
    json_t *root =
        rc == 0 ? json_loads (reply ? reply : "", JSON_DECODE_ANY, NULL) : NULL;
    if (rc == 0 && !root)
        //  CANCEL answers with the acked id, not JSON.
        root = json_pack ("{s:b}", "ok", true);
    if (rc) {
        log_info ("web: %s %s: %s", command, ref ? ref : "",
                  reply ? reply : emq_strerror (rc));
        root = json_pack ("{s:s}", "error", reply ? reply : emq_strerror (rc));
    }
    else if (strcmp (command, "DEAD_LIST") != 0)
        log_info ("web: %s %s done", command, ref ? ref : "");
    free (reply);
    //  The router answers a retry of a job it does not hold as dead with
    //  "retried": 0; for one job, the browser is better told why.
    if (rc == 0 && streq (command, "DEAD_RETRY") && ref && !streq (ref, "*")
        && json_integer_value (json_object_get (root, "retried")) == 0) {
        json_decref (root);
        return s_error (conn, 404, "no such dead job (retried already, or expired)");
    }
    return s_json (conn, s_status_for (rc), root);
}

//  The answer of one of libemq's typed admin calls (emq_jobs_list,
//  emq_queue_admin, ...): its JSON as it came, or {"error"} with the HTTP
//  status for rc. reply is taken.
static enum MHD_Result
s_typed (struct MHD_Connection *conn, const char *what, int rc, char *reply)
{
    json_t *root = rc == 0 ? json_loads (reply ? reply : "", 0, NULL) : NULL;
    if (rc == 0 && !root)
        rc = EMQ_ERR_PROTOCOL;
    if (rc) {
        log_info ("web: %s: %s", what, reply ? reply : emq_strerror (rc));
        root = json_pack ("{s:s}", "error", reply ? reply : emq_strerror (rc));
    }
    else if (strncmp (what, "jobs", 4) != 0)
        log_info ("web: %s done", what);
    free (reply);
    return s_json (conn, s_status_for (rc), root);
}

//  A page of jobs in one state: ?state=waiting|scheduled|running|dead
//  &queue=Q&offset=N&limit=N (at most 500).
static enum MHD_Result
s_jobs (server_t *self, struct MHD_Connection *conn)
{
    const char *state =
        MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "state");
    const char *queue =
        MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "queue");
    const char *offset_text =
        MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "offset");
    const char *limit_text =
        MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "limit");
    uint64_t offset = 0, limit = 100;
    if ((offset_text && numparse_uint (offset_text, 1000000000, &offset))
        || (limit_text && (numparse_uint (limit_text, 500, &limit) || limit == 0)))
        return s_error (conn, 400, "offset and limit: whole numbers (limit 1..500)");
    char *reply = NULL;
    int rc = emq_jobs_list (self->admin, queue && *queue ? queue : NULL,
                            state && *state ? state : NULL, (size_t) offset,
                            (size_t) limit, self->timeout_ms, &reply);
    return s_typed (conn, "jobs", rc, reply);
}

//  The job's page: what the router says about msgid, from what it shows
//  (in flight on a job manager, dead) and its stored outcome (FETCH).
static enum MHD_Result
s_job (server_t *self, struct MHD_Connection *conn, const char *msgid)
{
    if (!msgid || !*msgid || strlen (msgid) > 128)
        return s_error (conn, 400, "id: a job msgid of 1..128 bytes is needed");
    json_t *job = json_pack ("{s:s}", "msgid", msgid);
    //  The router's own account of it (state, headers, attempts, history).
    char *shown = NULL;
    if (emq_job_show (self->admin, msgid, self->timeout_ms, &shown) == 0) {
        json_t *root = json_loads (shown, 0, NULL);
        json_t *record = json_object_get (root, "job");
        if (json_is_object (record))
            json_object_update (job, record);
        json_decref (root);
    }
    free (shown);
    //  Running? The job managers' heartbeats list their jobs in flight.
    json_t *overview = sampler_overview_json (self->sampler);
    const char *jm_id;
    json_t *jm;
    json_object_foreach (
        json_object_get (json_object_get (overview, "workers"), "connected_workers"),
        jm_id, jm)
    {
        json_t *running = json_object_get (
            json_object_get (json_object_get (jm, "stats"), "jobs_in_flight"), msgid);
        if (running) {
            json_object_set_new (job, "state", json_string ("running"));
            json_object_set_new (job, "jobmanager", json_string (jm_id));
            json_object_set (job, "worker", running);
        }
    }
    json_decref (overview);
    //  Dead? The dead list has its error and attempts.
    char *reply = NULL;
    if (emq_admin_job (self->admin, "DEAD_LIST", NULL, self->timeout_ms, &reply) == 0) {
        json_t *dead = json_loads (reply, 0, NULL);
        size_t i;
        json_t *item;
        json_array_foreach (json_object_get (dead, "dead"), i, item)
        {
            const char *id = json_string_value (json_object_get (item, "msgid"));
            if (id && streq (id, msgid)) {
                json_object_set_new (job, "state", json_string ("dead"));
                json_object_set (job, "dead", item);
            }
        }
        json_decref (dead);
    }
    free (reply);
    //  Its outcome, if it ended and the router keeps it (result_ttl).
    emq_client_t *client = emq_client_new (self->frontend);
    if (client) {
        emq_event_t event;
        int rc = emq_result (client, msgid, 700, &event);
        if (rc == 0 || rc == EMQ_ERR_JOB_FAILED || rc == EMQ_ERR_JOB_TIMEOUT) {
            json_t *outcome =
                json_pack ("{s:s,s:s}", "status", emq_job_status_name (event.status),
                           "usage", event.usage);
            if (rc == 0) {
                char err[128];
                char *value = json_from_msgpack (event.data, event.size, err, sizeof err);
                json_t *parsed = value ? json_loads (value, JSON_DECODE_ANY, NULL) : NULL;
                json_object_set_new (outcome, "value",
                                     parsed ? parsed : json_string ("(not JSON)"));
                free (value);
            }
            else
                json_object_set_new (
                    outcome, "error",
                    json_stringn_nocheck ((const char *) event.data,
                                          event.size < 4096 ? event.size : 4096));
            json_object_set_new (job, "outcome", outcome);
            if (!json_object_get (job, "state"))
                json_object_set_new (job, "state", json_string ("ended"));
        }
        else if (rc == EMQ_ERR_TIMEOUT && !json_object_get (job, "state"))
            //  Known and not ended: queued, scheduled or backing off.
            json_object_set_new (job, "state", json_string ("waiting"));
        else if (rc == EMQ_ERR_NOT_FOUND && !json_object_get (job, "state")) {
            json_decref (job);
            emq_client_destroy (&client);
            return s_error (conn, 404,
                            "the router holds no such job (or its result "
                            "expired)");
        }
        emq_client_destroy (&client);
    }
    return s_json (conn, 200, job);
}

//  A static file's name: letters, digits, '-', '_', '.', not starting with
//  '.', one level. Its content type, or NULL if refused.
static const char *
s_static_type (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 64 || name[0] == '.')
        return NULL;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
            return NULL;
    const char *dot = strrchr (name, '.');
    if (!dot)
        return NULL;
    if (streq (dot, ".html"))
        return "text/html; charset=utf-8";
    if (streq (dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (streq (dot, ".css"))
        return "text/css; charset=utf-8";
    if (streq (dot, ".svg"))
        return "image/svg+xml";
    if (streq (dot, ".png"))
        return "image/png";
    return NULL;
}

static enum MHD_Result
s_static (server_t *self, struct MHD_Connection *conn, const char *name)
{
    const char *type = s_static_type (name);
    if (!type)
        return s_error (conn, 404, "no such page");
    char path[4200];
    snprintf (path, sizeof path, "%s/%s", self->static_dir, name);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd == -1 || fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        if (fd != -1)
            close (fd);
        return s_error (conn, 404, "no such page");
    }
    struct MHD_Response *response =
        MHD_create_response_from_fd ((uint64_t) st.st_size, fd);
    if (!response) {
        close (fd);
        return MHD_NO;
    }
    MHD_add_response_header (response, "Content-Type", type);
    MHD_add_response_header (response, "Cache-Control", "no-cache");
    MHD_add_response_header (response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header (response, "Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:");
    enum MHD_Result rc = MHD_queue_response (conn, 200, response);
    MHD_destroy_response (response);
    return rc;
}

//  True when the request carries the password (or none is set); compared
//  in constant time.
static bool
s_authorised (server_t *self, struct MHD_Connection *conn)
{
    if (!*self->password)
        return true;
    char *password = NULL;
    char *user = MHD_basic_auth_get_username_password (conn, &password);
    bool ok = false;
    if (user && password && streq (user, S_USER)) {
        size_t a = strlen (password), b = strlen (self->password);
        unsigned char diff = (unsigned char) (a != b);
        for (size_t i = 0; i < a && i < b; i++)
            diff |= (unsigned char) (password[i] ^ self->password[i]);
        ok = diff == 0;
    }
    MHD_free (user);
    MHD_free (password);
    return ok;
}

static enum MHD_Result
s_handle (void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_size,
          void **con_cls)
{
    (void) version;
    (void) upload_data;
    server_t *self = (server_t *) cls;
    //  The first call only announces the request; bodies are not used.
    if (!*con_cls) {
        *con_cls = self;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (!s_authorised (self, conn)) {
        char *body = strdup ("a password is needed (user " S_USER ")\n");
        struct MHD_Response *response = MHD_create_response_from_buffer (
            body ? strlen (body) : 0, body, MHD_RESPMEM_MUST_FREE);
        if (!response)
            return MHD_NO;
        enum MHD_Result rc = MHD_queue_basic_auth_fail_response (conn, "emq", response);
        MHD_destroy_response (response);
        return rc;
    }
    const char *id = MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "id");
    bool get = streq (method, "GET") || streq (method, "HEAD");
    if (get) {
        if (streq (url, "/"))
            return s_static (self, conn, "index.html");
        if (strncmp (url, "/static/", 8) == 0)
            return s_static (self, conn, url + 8);
        if (streq (url, "/metrics")) {
            char *text = sampler_metrics_text (self->sampler);
            if (!text)
                return s_error (conn, 500, "out of memory");
            return s_reply (conn, 200, "text/plain; version=0.0.4; charset=utf-8", text,
                            strlen (text));
        }
        if (streq (url, "/api/overview")) {
            //  What this emq-web can ask the router for (the dashboard
            //  draws the matching buttons).
            json_t *overview = sampler_overview_json (self->sampler);
            json_object_set_new (overview, "capabilities",
                                 json_pack ("{s:b,s:b,s:b}", "queue_admin", true,
                                            "job_admin", true, "jobmanager_quiet", true));
            return s_json (conn, 200, overview);
        }
        if (streq (url, "/api/jobs"))
            return s_jobs (self, conn);
        if (streq (url, "/api/dead"))
            return s_admin (self, conn, "DEAD_LIST", NULL);
        if (streq (url, "/api/job"))
            return s_job (self, conn, id);
        return s_error (conn, 404, "no such page");
    }
    if (!streq (method, "POST"))
        return s_error (conn, 405, "only GET and POST");
    if (!MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "X-EMQ-Request"))
        return s_error (conn, 403, "actions need the X-EMQ-Request header");
    if (streq (url, "/api/dead/retry"))
        return s_admin (self, conn, "DEAD_RETRY", id);
    if (streq (url, "/api/dead/delete"))
        return s_admin (self, conn, "DEAD_DELETE", id);
    if (streq (url, "/api/dead/purge"))
        return s_admin (self, conn, "DEAD_PURGE", NULL);
    if (streq (url, "/api/cancel"))
        return s_admin (self, conn, "CANCEL", id);
    const char *name = MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "name");
    if (strncmp (url, "/api/queue/", 11) == 0) {
        const char *action = url + 11;
        if (!streq (action, "pause") && !streq (action, "resume")
            && !streq (action, "purge"))
            return s_error (conn, 404, "no such action");
        if (!name || !*name)
            return s_error (conn, 400, "name: a queue name is needed");
        char *reply = NULL;
        int rc = emq_queue_admin (self->admin, action, name, self->timeout_ms, &reply);
        return s_typed (conn, action, rc, reply);
    }
    if (streq (url, "/api/jobmanager/quiet") || streq (url, "/api/jobmanager/resume")) {
        if (!id || !*id)
            return s_error (conn, 400, "id: a job manager is needed");
        char *reply = NULL;
        int rc =
            emq_jobmanager_quiet (self->admin, id, streq (url, "/api/jobmanager/quiet"),
                                  self->timeout_ms, &reply);
        return s_typed (conn, url + 15, rc, reply);
    }
    return s_error (conn, 404, "no such action");
}

server_t *
server_new (const server_settings_t *settings, sampler_t *sampler, char *err,
            size_t errlen)
{
    unsigned a, b, c, d, port;
    if (sscanf (settings->listen, "%u.%u.%u.%u:%u", &a, &b, &c, &d, &port) != 5 || a > 255
        || b > 255 || c > 255 || d > 255 || port > 65535) {
        snprintf (err, errlen, "web_listen_addr '%s' is not an IPv4 address:port",
                  settings->listen);
        return NULL;
    }
    server_t *self = calloc (1, sizeof (server_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->sampler = sampler;
    self->password = strdup (settings->password ? settings->password : "");
    self->static_dir = strdup (settings->static_dir);
    self->admin = strdup (settings->admin);
    self->frontend = strdup (settings->frontend);
    self->timeout_ms = settings->timeout_ms;
    if (!self->password || !self->static_dir || !self->admin || !self->frontend) {
        snprintf (err, errlen, "out of memory");
        server_destroy (&self);
        return NULL;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr =
                                    htonl ((uint32_t) (a << 24 | b << 16 | c << 8 | d)) };
    self->daemon = MHD_start_daemon (
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION
            | MHD_USE_ERROR_LOG,
        0, NULL, NULL, s_handle, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 30, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int) 64, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf (err, errlen, "cannot listen on %s: %s", settings->listen,
                  errno ? strerror (errno) : "libmicrohttpd refused");
        server_destroy (&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : (uint16_t) port;
    return self;
}

void
server_destroy (server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_t *self = *self_p;
    if (self->daemon)
        MHD_stop_daemon (self->daemon);
    free (self->password);
    free (self->static_dir);
    free (self->admin);
    free (self->frontend);
    free (self);
    *self_p = NULL;
}

uint16_t
server_port (server_t *self)
{
    return self->port;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
server_test (bool verbose)
{
    if (verbose)
        printf (" * server: ");
    CHECK_STREQ (s_static_type ("index.html"), "text/html; charset=utf-8");
    CHECK_STREQ (s_static_type ("app.js"), "text/javascript; charset=utf-8");
    CHECK (s_static_type ("../etc/passwd") == NULL);
    CHECK (s_static_type (".htaccess") == NULL);
    CHECK (s_static_type ("a/b.js") == NULL);
    CHECK (s_static_type ("noext") == NULL);
    CHECK (s_static_type ("x.exe") == NULL);
    CHECK (s_static_type ("") == NULL);
    CHECK_EQ (s_status_for (EMQ_ERR_NOT_FOUND), 404);
    CHECK_EQ (s_status_for (EMQ_ERR_UNREACHABLE), 502);
    char err[256];
    server_settings_t settings = { .listen = "300.1.1.1:80",
                                   .password = "",
                                   .static_dir = ".",
                                   .admin = "ipc://@x",
                                   .frontend = "ipc://@y",
                                   .timeout_ms = 100 };
    CHECK (server_new (&settings, NULL, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "not an IPv4 address:port");
    settings.listen = "127.0.0.1:0";
    sampler_t *sampler = sampler_new ("ipc://@nowhere", 100);
    server_t *server = server_new (&settings, sampler, err, sizeof err);
    REQUIRE (server);
    CHECK (server_port (server) > 0);
    server_destroy (&server);
    server_destroy (&server);
    sampler_destroy (&sampler);
    if (verbose)
        printf ("OK\n");
}
