/*  schedules — schedule records and their SQLite file. See schedules.h.

    One table, one row per schedule, written whole on every change (a
    scheduler has few schedules and changes them a few times a second at
    most). The file is in WAL mode with synchronous=NORMAL: a fire's state is
    written before its REQUEST goes out, and the router's msgid dedup covers
    the rest (a fire sent twice is held once).
*/
#include "schedules.h"

#include <inttypes.h>

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sched_t *
sched_new (void)
{
    sched_t *self = calloc (1, sizeof (sched_t));
    if (!self)
        return NULL;
    self->interval_s = -1;
    self->runs_left = -1;
    if (sched_set (&self->name, "") || sched_set (&self->spec, "")
        || sched_set (&self->queue, "default") || sched_set (&self->headers, "")
        || sched_set (&self->cron_text, "") || sched_set (&self->tz, "")
        || sched_set (&self->last_outcome, ""))
        sched_destroy (&self);
    return self;
}

void
sched_destroy (sched_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sched_t *self = *self_p;
    free (self->name);
    free (self->spec);
    free (self->queue);
    free (self->headers);
    free (self->payload);
    free (self->cron_text);
    free (self->tz);
    free (self->last_outcome);
    cron_destroy (&self->cron);
    free (self);
    *self_p = NULL;
}

int
sched_set (char **field, const char *value)
{
    char *copy = strdup (value ? value : "");
    if (!copy)
        return -1;
    free (*field);
    *field = copy;
    return 0;
}

int
sched_compile (sched_t *self, char *err, size_t errlen)
{
    cron_destroy (&self->cron);
    //  Times and intervals come from a SCHEDULE (the codec takes any
    //  int64 interval) or a store: keep the arithmetic on them in range.
    const int64_t times[] = { self->anchor, self->next_fire, self->last_fire,
                              self->acked_fire };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
        if (times[i] < 0 || times[i] > SCHED_TIME_MAX) {
            snprintf (err, errlen, "fire time %" PRId64 " is not in 0..%" PRId64,
                      times[i], (int64_t) SCHED_TIME_MAX);
            return -1;
        }
    if (self->interval_s > CRON_INTERVAL_MAX_S) {
        snprintf (err, errlen, "interval %" PRId64 " s is too long (at most 10 years)",
                  self->interval_s);
        return -1;
    }
    if (self->interval_s > 0)
        return 0;
    self->cron = cron_new (self->cron_text, err, errlen);
    return self->cron ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Base64

static const char s_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
b64_encode (const void *data, size_t size)
{
    const unsigned char *in = data;
    char *out = malloc ((size + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t v = (uint32_t) in[i] << 16;
        if (i + 1 < size)
            v |= (uint32_t) in[i + 1] << 8;
        if (i + 2 < size)
            v |= in[i + 2];
        out[o++] = s_b64[(v >> 18) & 63];
        out[o++] = s_b64[(v >> 12) & 63];
        out[o++] = i + 1 < size ? s_b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < size ? s_b64[v & 63] : '=';
    }
    out[o] = 0;
    return out;
}

void *
b64_decode (const char *text, size_t len, size_t *out_size)
{
    if (len % 4)
        return NULL;
    unsigned char *out = malloc (len / 4 * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = text[i + k];
            const char *pos = c ? strchr (s_b64, c) : NULL;
            if (c == '=' && i + 4 == len && k >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!pos || pad) {
                free (out);
                return NULL;
            }
            v = (v << 6) | (uint32_t) (pos - s_b64);
        }
        out[o++] = (unsigned char) (v >> 16);
        if (pad < 2)
            out[o++] = (unsigned char) (v >> 8);
        if (pad < 1)
            out[o++] = (unsigned char) v;
    }
    *out_size = o;
    return out;
}

//  --------------------------------------------------------------------------
//  JSON

char *
sched_to_json (const sched_t *self)
{
    char *payload = b64_encode (self->payload ? self->payload : "", self->payload_size);
    if (!payload)
        return NULL;
    json_t *root = json_pack (
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:b, s:b, s:f,"
        " s:I, s:I, s:I, s:I, s:I, s:s}",
        "name", self->name, "spec", self->spec, "queue", self->queue, "headers",
        self->headers, "payload", payload, "interval_s", (json_int_t) self->interval_s,
        "cron", self->cron_text, "tz", self->tz, "misfire_skip", self->misfire_skip,
        "nohaste", self->nohaste, "created_at", self->created_at, "runs_left",
        (json_int_t) self->runs_left, "anchor", (json_int_t) self->anchor, "next_fire",
        (json_int_t) self->next_fire, "last_fire", (json_int_t) self->last_fire,
        "acked_fire", (json_int_t) self->acked_fire, "last_outcome", self->last_outcome);
    free (payload);
    if (!root)
        return NULL;
    char *text = json_dumps (root, JSON_COMPACT);
    json_decref (root);
    return text;
}

sched_t *
sched_from_json (const char *text, size_t size, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb (text, size, 0, &jerr);
    if (!root) {
        snprintf (err, errlen, "not JSON: %s", jerr.text);
        return NULL;
    }
    const char *name, *spec, *queue, *headers, *payload, *cron, *tz, *outcome;
    json_int_t interval, runs_left, anchor, next_fire, last_fire, acked_fire;
    int skip, nohaste;
    double created_at;
    if (json_unpack_ex (root, &jerr, 0,
                        "{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:b, s:b, s:F,"
                        " s:I, s:I, s:I, s:I, s:I, s:s}",
                        "name", &name, "spec", &spec, "queue", &queue, "headers",
                        &headers, "payload", &payload, "interval_s", &interval, "cron",
                        &cron, "tz", &tz, "misfire_skip", &skip, "nohaste", &nohaste,
                        "created_at", &created_at, "runs_left", &runs_left, "anchor",
                        &anchor, "next_fire", &next_fire, "last_fire", &last_fire,
                        "acked_fire", &acked_fire, "last_outcome", &outcome)) {
        snprintf (err, errlen, "not a schedule: %s", jerr.text);
        json_decref (root);
        return NULL;
    }
    sched_t *self = sched_new ();
    if (!self || sched_set (&self->name, name) || sched_set (&self->spec, spec)
        || sched_set (&self->queue, queue) || sched_set (&self->headers, headers)
        || sched_set (&self->cron_text, cron) || sched_set (&self->tz, tz)
        || sched_set (&self->last_outcome, outcome)) {
        snprintf (err, errlen, "out of memory");
        sched_destroy (&self);
        json_decref (root);
        return NULL;
    }
    self->payload = b64_decode (payload, strlen (payload), &self->payload_size);
    self->interval_s = interval;
    self->misfire_skip = skip;
    self->nohaste = nohaste;
    self->created_at = created_at;
    self->runs_left = runs_left;
    self->anchor = anchor;
    self->next_fire = next_fire;
    self->last_fire = last_fire;
    self->acked_fire = acked_fire;
    json_decref (root);
    if (!self->payload) {
        snprintf (err, errlen, "payload is not base64");
        sched_destroy (&self);
        return NULL;
    }
    if (sched_compile (self, err, errlen))
        sched_destroy (&self);
    return self;
}

//  --------------------------------------------------------------------------
//  SQLite

struct schedules_t {
    sqlite3 *db;
    sqlite3_stmt *put;
    sqlite3_stmt *del;
    char error[512];
};

static const char *s_schema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS schedules ("
    " name TEXT PRIMARY KEY, spec TEXT NOT NULL, queue TEXT NOT NULL,"
    " headers TEXT NOT NULL, payload BLOB NOT NULL, interval_s INTEGER NOT NULL,"
    " cron TEXT NOT NULL, tz TEXT NOT NULL, misfire_skip INTEGER NOT NULL,"
    " nohaste INTEGER NOT NULL, created_at REAL NOT NULL,"
    " runs_left INTEGER NOT NULL, anchor INTEGER NOT NULL, next_fire INTEGER NOT NULL,"
    " last_fire INTEGER NOT NULL, acked_fire INTEGER NOT NULL,"
    " last_outcome TEXT NOT NULL);";

static int
s_fail (schedules_t *self, const char *what)
{
    snprintf (self->error, sizeof self->error, "%s: %s", what, sqlite3_errmsg (self->db));
    return -1;
}

schedules_t *
schedules_open (const char *path, char *err, size_t errlen)
{
    schedules_t *self = calloc (1, sizeof (schedules_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open (path, &self->db) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout (self->db, 2000);
    if (sqlite3_exec (self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK
        || sqlite3_prepare_v2 (self->db,
                               "INSERT OR REPLACE INTO schedules VALUES "
                               "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               -1, &self->put, NULL)
               != SQLITE_OK
        || sqlite3_prepare_v2 (self->db, "DELETE FROM schedules WHERE name = ?", -1,
                               &self->del, NULL)
               != SQLITE_OK)
        goto fail;
    return self;

fail:
    snprintf (err, errlen, "%s: %s", path,
              self->db ? sqlite3_errmsg (self->db) : "cannot open");
    schedules_destroy (&self);
    return NULL;
}

void
schedules_destroy (schedules_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    schedules_t *self = *self_p;
    sqlite3_finalize (self->put);
    sqlite3_finalize (self->del);
    sqlite3_close (self->db);
    free (self);
    *self_p = NULL;
}

int
schedules_put (schedules_t *self, const sched_t *s)
{
    sqlite3_stmt *st = self->put;
    sqlite3_reset (st);
    sqlite3_bind_text (st, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 2, s->spec, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 3, s->queue, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 4, s->headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob (st, 5, s->payload ? s->payload : "", (int) s->payload_size,
                       SQLITE_STATIC);
    sqlite3_bind_int64 (st, 6, s->interval_s);
    sqlite3_bind_text (st, 7, s->cron_text, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 8, s->tz, -1, SQLITE_STATIC);
    sqlite3_bind_int (st, 9, s->misfire_skip);
    sqlite3_bind_int (st, 10, s->nohaste);
    sqlite3_bind_double (st, 11, s->created_at);
    sqlite3_bind_int64 (st, 12, s->runs_left);
    sqlite3_bind_int64 (st, 13, s->anchor);
    sqlite3_bind_int64 (st, 14, s->next_fire);
    sqlite3_bind_int64 (st, 15, s->last_fire);
    sqlite3_bind_int64 (st, 16, s->acked_fire);
    sqlite3_bind_text (st, 17, s->last_outcome, -1, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    sqlite3_reset (st);
    return rc == SQLITE_DONE ? 0 : s_fail (self, "put");
}

int
schedules_delete (schedules_t *self, const char *name)
{
    sqlite3_reset (self->del);
    sqlite3_bind_text (self->del, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step (self->del);
    sqlite3_reset (self->del);
    return rc == SQLITE_DONE ? 0 : s_fail (self, "delete");
}

int
schedules_load (schedules_t *self, void (*fn) (sched_t *sched, void *arg), void *arg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2 (self->db, "SELECT * FROM schedules ORDER BY created_at", -1,
                            &st, NULL)
        != SQLITE_OK)
        return s_fail (self, "load");
    int count = 0, rc;
    while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
        sched_t *s = sched_new ();
        if (!s)
            break;
        sched_set (&s->name, (const char *) sqlite3_column_text (st, 0));
        sched_set (&s->spec, (const char *) sqlite3_column_text (st, 1));
        sched_set (&s->queue, (const char *) sqlite3_column_text (st, 2));
        sched_set (&s->headers, (const char *) sqlite3_column_text (st, 3));
        s->payload_size = (size_t) sqlite3_column_bytes (st, 4);
        s->payload = malloc (s->payload_size + 1);
        if (s->payload && s->payload_size)
            memcpy (s->payload, sqlite3_column_blob (st, 4), s->payload_size);
        s->interval_s = sqlite3_column_int64 (st, 5);
        sched_set (&s->cron_text, (const char *) sqlite3_column_text (st, 6));
        sched_set (&s->tz, (const char *) sqlite3_column_text (st, 7));
        s->misfire_skip = sqlite3_column_int (st, 8);
        s->nohaste = sqlite3_column_int (st, 9);
        s->created_at = sqlite3_column_double (st, 10);
        s->runs_left = sqlite3_column_int64 (st, 11);
        s->anchor = sqlite3_column_int64 (st, 12);
        s->next_fire = sqlite3_column_int64 (st, 13);
        s->last_fire = sqlite3_column_int64 (st, 14);
        s->acked_fire = sqlite3_column_int64 (st, 15);
        sched_set (&s->last_outcome, (const char *) sqlite3_column_text (st, 16));
        char err[256];
        if (!s->payload || !s->name || !s->last_outcome
            || sched_compile (s, err, sizeof err)) {
            snprintf (self->error, sizeof self->error, "schedule %s cannot be loaded",
                      s->name ? s->name : "?");
            sched_destroy (&s);
            continue;
        }
        fn (s, arg);
        count++;
    }
    sqlite3_finalize (st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return s_fail (self, "load");
    return count;
}

const char *
schedules_error (schedules_t *self)
{
    return self->error;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

static void
s_collect (sched_t *sched, void *arg)
{
    sched_t **slot = (sched_t **) arg;
    sched_destroy (slot);
    *slot = sched;
}

void
schedules_test (bool verbose)
{
    if (verbose)
        printf (" * schedules: ");
    //  Base64 round trips, including every padding length and bad input.
    const char *samples[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    const char *expect[] = { "",         "Zg==",     "Zm8=",    "Zm9v",
                             "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (size_t i = 0; i < 7; i++) {
        char *text = b64_encode (samples[i], strlen (samples[i]));
        CHECK_STREQ (text, expect[i]);
        size_t size = 0;
        void *back = b64_decode (text, strlen (text), &size);
        CHECK_MEMEQ (back, size, samples[i], strlen (samples[i]));
        free (back);
        free (text);
    }
    size_t size;
    CHECK (b64_decode ("Zm9", 3, &size) == NULL);
    CHECK (b64_decode ("Zm=v", 4, &size) == NULL);
    CHECK (b64_decode ("Z!9v", 4, &size) == NULL);

    char dir[] = "/tmp/emq-schedules-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char path[128], err[256];
    snprintf (path, sizeof path, "%s/scheduler.db", dir);
    schedules_t *store = schedules_open (path, err, sizeof err);
    CHECK (store != NULL);

    sched_t *s = sched_new ();
    sched_set (&s->name, "nightly");
    sched_set (&s->spec, "0 2 * * *");
    sched_set (&s->cron_text, "0 2 * * *");
    sched_set (&s->tz, "Europe/Berlin");
    sched_set (&s->headers, "timeout:5");
    s->payload = malloc (3);
    memcpy (s->payload, "\x00\x01\x02", 3);
    s->payload_size = 3;
    s->runs_left = 4;
    s->next_fire = 1711846800;
    s->last_fire = 1711760400;
    s->acked_fire = 1711760400;
    sched_set (&s->last_outcome, "ok");
    CHECK_EQ (sched_compile (s, err, sizeof err), 0);
    CHECK_EQ (schedules_put (store, s), 0);
    s->runs_left = 3;
    CHECK_EQ (schedules_put (store, s), 0);  // replaces by name

    sched_t *loaded = NULL;
    CHECK_EQ (schedules_load (store, s_collect, &loaded), 1);
    CHECK (loaded && loaded->cron);
    if (loaded) {
        CHECK_STREQ (loaded->tz, "Europe/Berlin");
        CHECK_EQ (loaded->runs_left, 3);
        CHECK_EQ (loaded->next_fire, 1711846800);
        CHECK_MEMEQ (loaded->payload, loaded->payload_size, "\x00\x01\x02", 3);
    }
    //  JSON round trip (etcd mode).
    char *json = sched_to_json (s);
    CHECK (json != NULL);
    sched_t *back = sched_from_json (json, strlen (json), err, sizeof err);
    CHECK (back && back->cron);
    if (back) {
        CHECK_STREQ (back->name, "nightly");
        CHECK_EQ (back->last_fire, 1711760400);
        CHECK_MEMEQ (back->payload, back->payload_size, "\x00\x01\x02", 3);
    }
    free (json);
    sched_destroy (&back);
    CHECK (sched_from_json ("{\"name\":1}", 10, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "not a schedule");
    CHECK (sched_from_json ("nope", 4, err, sizeof err) == NULL);
    //  A stored (or sent) interval or fire time that the fire arithmetic
    //  would overflow on is refused: the wire takes any int64 interval.
    sched_t *odd = sched_new ();
    odd->interval_s = INT64_MAX;
    CHECK_EQ (sched_compile (odd, err, sizeof err), -1);
    CHECK_CONTAINS (err, "too long");
    odd->interval_s = CRON_INTERVAL_MAX_S;
    CHECK_EQ (sched_compile (odd, err, sizeof err), 0);
    odd->next_fire = INT64_MAX;
    CHECK_EQ (sched_compile (odd, err, sizeof err), -1);
    CHECK_CONTAINS (err, "not in 0..");
    odd->next_fire = 0;
    odd->last_fire = -5;
    CHECK_EQ (sched_compile (odd, err, sizeof err), -1);
    sched_destroy (&odd);

    CHECK_EQ (schedules_delete (store, "nightly"), 0);
    sched_destroy (&loaded);
    CHECK_EQ (schedules_load (store, s_collect, &loaded), 0);
    sched_destroy (&s);
    schedules_destroy (&store);
    CHECK (store == NULL);
    char cmd[200];
    snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "cannot remove %s\n", dir);
    if (verbose)
        printf ("OK\n");
}
