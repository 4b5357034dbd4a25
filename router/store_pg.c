/*  store_pg — the store's PostgreSQL backend. See store_pg.h.

    Every parameter and every result column crosses in libpq's binary
    format (integers and doubles big-endian, bytea and text as their
    bytes), so nothing is escaped or parsed as text. Each statement is
    prepared once per connection, with its parameters' types written in
    the SQL ($1::bigint), and prepared again after a reconnection.

    The writer runs a batch in pipeline mode: BEGIN, the changes, COMMIT,
    then one sync; results are read back every S_PIPELINE_DEPTH statements
    (so that neither side's socket buffer fills while the other waits) and
    at the end. The first error aborts the rest of the pipeline; the
    transaction is rolled back and the batch fails with that error.

    The fsync policy maps to synchronous_commit: always -> on (a commit
    waits for its WAL flush), everysec and off -> off (the WAL writer
    flushes within 3 x wal_writer_delay, 600 ms by default: what a
    PostgreSQL crash can take). A 'guarantee' batch sets it on for its own
    transaction. A kill -9 of the router loses nothing under any policy:
    what was committed is in the server.
*/
#include "store_pg.h"

#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <unistd.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

//  A transaction-scoped advisory lock: two routers starting at once lay
//  the tables out one after the other.
#define S_LOCK_KEY 0x656d712d726f7574LL  // "emq-rout"
//  Statements in a pipeline before their results are read back.
#define S_PIPELINE_DEPTH 256
#define S_EXPIRE_CHUNK 2000
#define S_PURGE_CHUNK 5000
//  Unless the connection string says otherwise, a host that does not
//  answer is given up after this (a batch then fails and is retried).
#define S_CONNECT_TIMEOUT "5"

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  seq bigint PRIMARY KEY,"
    "  msgid bytea NOT NULL UNIQUE,"
    "  queue bytea NOT NULL,"
    "  headers bytea NOT NULL,"
    "  payload bytea NOT NULL,"
    "  client bytea,"
    "  state text NOT NULL,"
    "  attempt bigint NOT NULL DEFAULT 0,"
    "  retries_left bigint NOT NULL DEFAULT 0,"
    "  epoch bigint NOT NULL DEFAULT 0,"
    "  run_at double precision NOT NULL DEFAULT 0,"
    "  created_at double precision NOT NULL,"
    "  ended_at double precision NOT NULL DEFAULT 0,"
    "  status bytea,"
    "  result bytea,"
    "  usage bytea);"
    "CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (state, ended_at) WHERE ended_at > 0;"
    "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL);"
    //  The lead: one row. epoch grows with each router that takes it;
    //  expires is the active router's lease, on the database's clock.
    "CREATE TABLE IF NOT EXISTS emq_leader ("
    "  id int PRIMARY KEY CHECK (id = 1),"
    "  epoch bigint NOT NULL,"
    "  holder text NOT NULL,"
    "  since timestamptz NOT NULL,"
    "  expires timestamptz NOT NULL);"
    //  The routers on this database, the leader and its standbys, each
    //  seen again every few seconds (a standby each time it looks at the
    //  lease, the leader each time it renews it); a row not seen for 3
    //  leases is gone (the leader prunes it), a router that stops cleanly
    //  deletes its own. addrs: JSON, its frontend/backend/admin addresses.
    "CREATE TABLE IF NOT EXISTS emq_routers ("
    "  holder text PRIMARY KEY,"
    "  role text NOT NULL,"
    "  addrs text NOT NULL,"
    "  pid bigint NOT NULL,"
    "  host text NOT NULL,"
    "  seen timestamptz NOT NULL);"
    //  The fence, first in every write transaction: it fails unless the
    //  writer's epoch is the lead's, and holds the row (FOR SHARE) until
    //  the transaction ends, so that a router taking the lead (an UPDATE of
    //  the row) waits for writes under the old epoch to end, and every
    //  write after it fails.
    "CREATE OR REPLACE FUNCTION emq_fence (mine bigint) RETURNS void"
    " LANGUAGE plpgsql AS $$"
    " DECLARE current bigint;"
    " BEGIN"
    "  SELECT epoch INTO current FROM emq_leader WHERE id = 1 FOR SHARE;"
    "  IF current IS DISTINCT FROM mine THEN"
    "   RAISE EXCEPTION USING ERRCODE = 'EM001', MESSAGE = format ("
    "    'fenced: epoch %s is not the lead''s (%s): another router leads',"
    "    mine, current);"
    "  END IF;"
    " END $$;";

//  The lead is taken if it is free (no row yet, or the lease expired);
//  the new epoch comes back, or no row if another router holds it.
static const char *s_campaign_sql =
    "INSERT INTO emq_leader (id, epoch, holder, since, expires)"
    " VALUES (1, 1, $1::text, now (), now () + $2::bigint * interval '1 millisecond')"
    " ON CONFLICT (id) DO UPDATE SET epoch = emq_leader.epoch + 1,"
    " holder = excluded.holder, since = now (), expires = excluded.expires"
    " WHERE emq_leader.expires < now () OR emq_leader.holder = $3::text RETURNING epoch";

//  The holder's name, to see whether it is a dead process of this host.
static const char *s_holder_sql = "SELECT holder FROM emq_leader WHERE id = 1";

//  Who leads, for the message of a router that does not.
static const char *s_leader_info =
    "SELECT holder || ' (epoch ' || epoch || ', lease for '"
    " || round (extract (epoch FROM expires - now ())::numeric, 1) || ' s more)'"
    " FROM emq_leader WHERE id = 1";

//  This router's row in emq_routers ($1 holder, $2 role, $3 addrs, $4 pid,
//  $5 host), written again each time it is seen.
#define S_SEEN_SQL                                                         \
    "INSERT INTO emq_routers (holder, role, addrs, pid, host, seen)"       \
    " VALUES ($1::text, $2::text, $3::text, $4::bigint, $5::text, now ())" \
    " ON CONFLICT (holder) DO UPDATE SET role = excluded.role,"            \
    " addrs = excluded.addrs, seen = now ()"
//  Routers not seen for $2 ms are gone; and only one router leads: the
//  row of the one before this one ($1) says leader no more.
#define S_PRUNE_SQL                                                         \
    "DELETE FROM emq_routers WHERE holder <> $1::text AND (role = 'leader'" \
    " OR seen < now () - $2::bigint * interval '1 millisecond')"
static const char *s_gone_sql = "DELETE FROM emq_routers WHERE holder = $1::text";
//  The other routers, as STATUS lists them ($1 this one, $2 the ms after
//  which a row is gone): seen is how long ago, in seconds.
static const char *s_routers_sql =
    "SELECT holder, role, addrs, pid, host,"
    " extract (epoch FROM now () - seen)::float8 FROM emq_routers"
    " WHERE holder <> $1::text AND seen >= now () - $2::bigint * interval"
    " '1 millisecond' ORDER BY holder";

//  Rows of emq_routers not seen for this many leases are gone.
#define S_ROUTER_GONE_LEASES 3

//  The lease, shared by the loop (which reads it) and the writer (which
//  renews it). until_ms is monotonic, on this host: past it (or at 0, the
//  lead lost) the router must not act any more.
struct store_pg_lease_t {
    int64_t epoch;
    int64_t ttl_ms;
    _Atomic int64_t until_ms;
    char reason[256];  // written before until_ms is set to 0
    char holder[128];  // this router, as the leader row names it
    double since;      // unix seconds, when it took the lead
    char host[64];     // this host's name
    char *addrs;       // JSON: this router's addresses (owned)
};

#define S_COLUMNS                                                                        \
    "seq, msgid, queue, headers, payload, client, state, attempt, retries_left, run_at," \
    " created_at, ended_at, status, result, usage, epoch"

//  A statement: its name on the connection and its SQL.
typedef struct {
    const char *name;
    const char *sql;
} s_statement_t;

enum {
    R_LOAD,
    R_FETCH,
    R_DEAD,
    R_COUNT,
    R_COUNT_ENDED,
    R_COUNT_BY_QUEUE,
    R_META_GET,
    R_META_LIST,
    R_MAX_SEQ,
    R_COUNT_ALL
};

static const s_statement_t s_reads[R_COUNT_ALL] = {
    [R_LOAD] = { "load",
                 "SELECT " S_COLUMNS " FROM jobs"
                 " WHERE state IN ('queued', 'running', 'scheduled') ORDER BY seq" },
    [R_FETCH] = { "fetch", "SELECT " S_COLUMNS " FROM jobs WHERE msgid = $1::bytea" },
    [R_DEAD] = { "dead", "SELECT " S_COLUMNS " FROM jobs"
                         " WHERE state = 'dead' AND ended_at > 0"
                         " AND (ended_at, seq) < ($1::float8, $2::bigint)"
                         " ORDER BY ended_at DESC, seq DESC LIMIT $3::bigint" },
    [R_COUNT] = { "count", "SELECT count(*) FROM jobs WHERE state = $1::text" },
    [R_COUNT_ENDED] = { "count_ended", "SELECT count(*) FROM jobs"
                                       " WHERE state = $1::text AND ended_at > 0" },
    [R_COUNT_BY_QUEUE] = { "count_by_queue",
                           "SELECT queue, count(*) FROM jobs"
                           " WHERE state = $1::text AND ended_at > 0 GROUP BY queue" },
    [R_META_GET] = { "meta_get", "SELECT value FROM meta WHERE key = $1::text" },
    [R_MAX_SEQ] = { "max_seq", "SELECT coalesce(max(seq), 0)::bigint FROM jobs" },
    //  Byte order whatever the database's collation, as SQLite's.
    [R_META_LIST] = { "meta_list", "SELECT key, value FROM meta"
                                   " WHERE starts_with (key, $1::text)"
                                   " ORDER BY key COLLATE \"C\"" },
};

enum {
    W_BEGIN,
    W_FENCE,
    W_RENEW,
    W_COMMIT,
    W_SYNC_ON,
    W_INSERT,
    W_REVIVE,
    W_DISPATCHED,
    W_WAITING,
    W_ENDED,
    W_META,
    W_EXPIRE,
    W_EXPIRE_DEAD,
    W_PURGE,
    W_SEEN,
    W_PRUNE,
    W_COUNT_ALL
};

static const s_statement_t s_writes[W_COUNT_ALL] = {
    [W_BEGIN] = { "begin", "BEGIN" },
    [W_FENCE] = { "fence", "SELECT emq_fence ($1::bigint)" },
    [W_RENEW] = { "renew",
                  "UPDATE emq_leader SET expires = now () + $2::bigint"
                  " * interval '1 millisecond' WHERE id = 1 AND epoch = $1::bigint" },
    [W_COMMIT] = { "commit", "COMMIT" },
    [W_SYNC_ON] = { "sync_on", "SET LOCAL synchronous_commit TO on" },
    //  No conflict target: a seq or a msgid stored already is not stored
    //  again (a duplicate msgid; the command tag says 0 rows).
    [W_INSERT] = { "insert",
                   "INSERT INTO jobs (seq, msgid, queue, headers, payload, client, state,"
                   " attempt, retries_left, run_at, created_at) VALUES ($1::bigint,"
                   " $2::bytea, $3::bytea, $4::bytea, $5::bytea, $6::bytea, $7::text,"
                   " $8::bigint, $9::bigint, $10::float8, $11::float8)"
                   " ON CONFLICT DO NOTHING" },
    //  A dead row back in its queue, or whole again if a purge deleted it
    //  meanwhile, unless its msgid was taken again (the newer job stands).
    [W_REVIVE] = { "revive",
                   "INSERT INTO jobs (seq, msgid, queue, headers, payload, client, state,"
                   " attempt, retries_left, run_at, created_at) SELECT $1::bigint,"
                   " $2::bytea, $3::bytea, $4::bytea, $5::bytea, $6::bytea, 'queued',"
                   " $7::bigint, $8::bigint, 0, $9::float8 WHERE NOT EXISTS (SELECT 1"
                   " FROM jobs WHERE msgid = $2::bytea AND seq <> $1::bigint)"
                   " ON CONFLICT (seq) DO UPDATE SET state = 'queued',"
                   " retries_left = excluded.retries_left, run_at = 0, ended_at = 0" },
    [W_DISPATCHED] = { "dispatched",
                       "UPDATE jobs SET state = 'running', attempt = $1::bigint,"
                       " epoch = $2::bigint WHERE seq = $3::bigint" },
    [W_WAITING] = { "waiting",
                    "UPDATE jobs SET state = $1::text, retries_left = $2::bigint,"
                    " run_at = $3::float8, ended_at = 0,"
                    " attempt = CASE WHEN $4::boolean THEN $5::bigint ELSE attempt END,"
                    " epoch = CASE WHEN $4::boolean THEN $6::bigint ELSE epoch END"
                    " WHERE seq = $7::bigint" },
    [W_ENDED] = { "ended",
                  "UPDATE jobs SET state = $1::text, status = $2::bytea,"
                  " result = $3::bytea, usage = $4::bytea, ended_at = $5::float8,"
                  " payload = CASE WHEN $6::boolean THEN payload ELSE ''::bytea END,"
                  " attempt = CASE WHEN $7::boolean THEN $8::bigint ELSE attempt END,"
                  " epoch = CASE WHEN $7::boolean THEN $9::bigint ELSE epoch END"
                  " WHERE seq = $10::bigint" },
    [W_META] = { "meta", "INSERT INTO meta (key, value) VALUES ($1::text, $2::bigint)"
                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value" },
    [W_EXPIRE] = { "expire",
                   "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state IN"
                   " ('done', 'failed', 'cancelled') AND ended_at > 0"
                   " AND ended_at < $1::float8 LIMIT $2::bigint)" },
    [W_EXPIRE_DEAD] = { "expire_dead",
                        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE"
                        " state = 'dead' AND ended_at > 0 AND ended_at < $1::float8"
                        " LIMIT $2::bigint)" },
    [W_PURGE] = { "purge", "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs"
                           " WHERE state = 'dead' AND ended_at > 0 LIMIT $1::bigint)" },
    [W_SEEN] = { "seen", S_SEEN_SQL },
    [W_PRUNE] = { "prune", S_PRUNE_SQL },
};

//  --------------------------------------------------------------------------
//  Connections

//  libpq's messages span lines ("...failed: No such file\n\tIs the
//  server running..."): one line, for the log and the peer.
static void
s_trim (char *text)
{
    size_t n = strlen (text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = 0;
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' ';
}

//  Opens a connection to dsn (a short connect timeout unless dsn sets
//  one). Returns NULL with the reason in err (libpq's, which names the
//  host; not the connection string, which may hold a password).
static PGconn *
s_connect (const char *dsn, char *err, size_t errlen)
{
    const char *keywords[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *values[] = { S_CONNECT_TIMEOUT, "emq-router", dsn, NULL };
    PGconn *conn = PQconnectdbParams (keywords, values, 1);
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        snprintf (err, errlen, "cannot connect to PostgreSQL: %s",
                  conn ? PQerrorMessage (conn) : "out of memory");
        s_trim (err);
        PQfinish (conn);
        return NULL;
    }
    return conn;
}

static void
s_conn_error (PGconn *conn, const PGresult *res, const char *what, char *err,
              size_t errlen)
{
    const char *message = res ? PQresultErrorMessage (res) : "";
    if (!message || !*message)
        message = conn ? PQerrorMessage (conn) : "no connection";
    snprintf (err, errlen, "%s: %s", what, message && *message ? message : "failed");
    s_trim (err);
}

//  Runs sql (no parameters) outside any pipeline. Returns 0 or -1.
static int
s_exec (PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec (conn, sql);
    ExecStatusType status = res ? PQresultStatus (res) : PGRES_FATAL_ERROR;
    int rc = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        s_conn_error (conn, res, what, err, errlen);
    PQclear (res);
    return rc;
}

static int
s_prepare (PGconn *conn, const s_statement_t *statements, int count, char *err,
           size_t errlen)
{
    for (int i = 0; i < count; i++) {
        PGresult *res = PQprepare (conn, statements[i].name, statements[i].sql, 0, NULL);
        bool ok = res && PQresultStatus (res) == PGRES_COMMAND_OK;
        if (!ok) {
            char what[64];
            snprintf (what, sizeof what, "prepare %s", statements[i].name);
            s_conn_error (conn, res, what, err, errlen);
        }
        PQclear (res);
        if (!ok)
            return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parameters, in binary

#define S_MAX_PARAMS 12

typedef struct {
    const char *values[S_MAX_PARAMS];
    int lengths[S_MAX_PARAMS];
    int formats[S_MAX_PARAMS];
    uint64_t numbers[S_MAX_PARAMS];  // big-endian storage for integers, doubles
    char flags[S_MAX_PARAMS];
    int count;
} s_params_t;

static void
s_param_bytes (s_params_t *p, const void *bytes, size_t size)
{
    int i = p->count++;
    p->values[i] = bytes ? (const char *) bytes : NULL;  // NULL: SQL NULL
    p->lengths[i] = (int) size;
    p->formats[i] = 1;
}

static void
s_param_text (s_params_t *p, const char *text)
{
    s_param_bytes (p, text, text ? strlen (text) : 0);
}

//  Text that must not be NULL (bytea NOT NULL columns).
static void
s_param_bytes_nn (s_params_t *p, const void *bytes, size_t size)
{
    s_param_bytes (p, bytes ? bytes : "", bytes ? size : 0);
}

static void
s_param_int (s_params_t *p, int64_t value)
{
    int i = p->count;
    p->numbers[i] = htobe64 ((uint64_t) value);
    s_param_bytes (p, &p->numbers[i], 8);
}

static void
s_param_double (s_params_t *p, double value)
{
    int i = p->count;
    uint64_t bits;
    memcpy (&bits, &value, 8);
    p->numbers[i] = htobe64 (bits);
    s_param_bytes (p, &p->numbers[i], 8);
}

static void
s_param_bool (s_params_t *p, bool value)
{
    int i = p->count;
    p->flags[i] = value ? 1 : 0;
    s_param_bytes (p, &p->flags[i], 1);
}

//  --------------------------------------------------------------------------
//  Results, in binary

static int64_t
s_get_int (const PGresult *res, int row, int column)
{
    if (PQgetisnull (res, row, column) || PQgetlength (res, row, column) != 8)
        return 0;
    uint64_t value;
    memcpy (&value, PQgetvalue (res, row, column), 8);
    return (int64_t) be64toh (value);
}

static double
s_get_double (const PGresult *res, int row, int column)
{
    if (PQgetisnull (res, row, column) || PQgetlength (res, row, column) != 8)
        return 0;
    uint64_t bits;
    memcpy (&bits, PQgetvalue (res, row, column), 8);
    bits = be64toh (bits);
    double value;
    memcpy (&value, &bits, 8);
    return value;
}

//  Bytes of a column (libpq ends each value with a NUL, so text reads as
//  a C string); NULL for SQL NULL.
static const char *
s_get_bytes (const PGresult *res, int row, int column, size_t *size)
{
    if (PQgetisnull (res, row, column)) {
        if (size)
            *size = 0;
        return NULL;
    }
    if (size)
        *size = (size_t) PQgetlength (res, row, column);
    return PQgetvalue (res, row, column);
}

static store_state_t
s_state_lookup (const char *name)
{
    for (int i = 0; i < STORE_STATE_COUNT; i++)
        if (name && strcmp (name, store_state_name ((store_state_t) i)) == 0)
            return (store_state_t) i;
    return STORE_QUEUED;
}

static void
s_read_row (const PGresult *res, int r, store_row_t *row)
{
    memset (row, 0, sizeof *row);
    row->seq = s_get_int (res, r, 0);
    row->msgid = s_get_bytes (res, r, 1, NULL);
    row->queue = s_get_bytes (res, r, 2, NULL);
    row->headers = s_get_bytes (res, r, 3, NULL);
    row->payload = s_get_bytes (res, r, 4, &row->payload_size);
    row->client = s_get_bytes (res, r, 5, &row->client_size);
    row->state = s_state_lookup (s_get_bytes (res, r, 6, NULL));
    row->attempt = (uint32_t) s_get_int (res, r, 7);
    row->retries_left = (uint32_t) s_get_int (res, r, 8);
    row->run_at = s_get_double (res, r, 9);
    row->created_at = s_get_double (res, r, 10);
    row->ended_at = s_get_double (res, r, 11);
    row->status = s_get_bytes (res, r, 12, NULL);
    row->result = s_get_bytes (res, r, 13, &row->result_size);
    row->usage = s_get_bytes (res, r, 14, NULL);
    row->epoch = (uint64_t) s_get_int (res, r, 15);
    if (!row->headers)
        row->headers = "";
    if (!row->client_size)
        row->client = NULL;
}

//  --------------------------------------------------------------------------
//  The loop's side: reads

struct store_pg_t {
    PGconn *conn;
    char *dsn;
    store_pg_lease_t lease;
    char where[256];
    int64_t retry_ms;  // monotonic: no new connection tried before
};

//  A lost connection (PostgreSQL restarted) is opened again by the next
//  read, at most once a second: a read runs on the router's loop, which
//  must not wait for a server that is down at every STATUS. Returns 0 if
//  the connection is usable.
static int
s_reader_ready (store_pg_t *self, char *err, size_t errlen)
{
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK)
        return 0;
    if (zclock_mono () < self->retry_ms) {
        snprintf (err, errlen, "PostgreSQL cannot be reached (trying again each second)");
        return -1;
    }
    PQfinish (self->conn);
    self->retry_ms = zclock_mono () + 1000;
    self->conn = s_connect (self->dsn, err, errlen);
    if (!self->conn)
        return -1;
    if (s_prepare (self->conn, s_reads, R_COUNT_ALL, err, errlen)) {
        PQfinish (self->conn);
        self->conn = NULL;
        return -1;
    }
    log_info ("store: connected to PostgreSQL again (%s)", self->where);
    return 0;
}

//  Runs a prepared read; returns its result (PGRES_TUPLES_OK) or NULL
//  with the reason in err. A connection found lost is opened again and the
//  read tried once more.
static PGresult *
s_read (store_pg_t *self, int which, const s_params_t *p, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (s_reader_ready (self, err, errlen))
            return NULL;
        PGresult *res = PQexecPrepared (self->conn, s_reads[which].name, p ? p->count : 0,
                                        p ? p->values : NULL, p ? p->lengths : NULL,
                                        p ? p->formats : NULL, 1);
        if (res && PQresultStatus (res) == PGRES_TUPLES_OK)
            return res;
        s_conn_error (self->conn, res, s_reads[which].name, err, errlen);
        PQclear (res);
        if (PQstatus (self->conn) == CONNECTION_OK)
            return NULL;  // the query failed, not the connection
    }
    return NULL;
}

static int
s_rows (store_pg_t *self, int which, const s_params_t *p, store_row_fn *fn, void *arg,
        char *err, size_t errlen)
{
    PGresult *res = s_read (self, which, p, err, errlen);
    if (!res)
        return -1;
    int rows = PQntuples (res);
    for (int r = 0; r < rows; r++) {
        store_row_t row;
        s_read_row (res, r, &row);
        int rc = fn ? fn (&row, arg) : 0;
        if (rc) {
            PQclear (res);
            return rc;
        }
    }
    PQclear (res);
    return rows;
}

//  The leader row names its router "HOST pid PID #RANDOM". A holder of
//  this host whose process is gone cannot write any more: its lead may be
//  taken at once (a router restarted after a crash need not wait out the
//  lease). Returns true and copies the name into dead if so.
static bool
s_holder_dead (store_pg_t *self, char *dead, size_t size)
{
    PGresult *res = PQexec (self->conn, s_holder_sql);
    bool gone = false;
    if (res && PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1) {
        const char *holder = PQgetvalue (res, 0, 0);
        char host[64] = "";
        gethostname (host, sizeof host - 1);
        size_t n = strlen (host);
        long pid = 0;
        if (n && strncmp (holder, host, n) == 0
            && sscanf (holder + n, " pid %ld", &pid) == 1 && pid > 0 && pid != getpid ()
            && kill ((pid_t) pid, 0) == -1 && errno == ESRCH) {
            snprintf (dead, size, "%s", holder);
            gone = true;
        }
    }
    PQclear (res);
    return gone;
}

//  Takes the lead if it is free (or held by dead, if not NULL). Returns 1
//  (won: lease->epoch set), 0 (another router holds it: who, in err) or -1
//  (an error, in err).
static int
s_campaign (store_pg_t *self, const char *dead, char *err, size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_text (&p, self->lease.holder);
    s_param_int (&p, self->lease.ttl_ms);
    s_param_text (&p, dead ? dead : "");
    int64_t sent_ms = zclock_mono ();
    PGresult *res = PQexecParams (self->conn, s_campaign_sql, p.count, NULL, p.values,
                                  p.lengths, p.formats, 1);
    if (!res || PQresultStatus (res) != PGRES_TUPLES_OK) {
        s_conn_error (self->conn, res, "take the lead", err, errlen);
        PQclear (res);
        return -1;
    }
    bool won = PQntuples (res) == 1;
    if (won) {
        self->lease.epoch = s_get_int (res, 0, 0);
        self->lease.since = zclock_time () / 1000.0;
        //  A tenth of the lease kept back: this host's clock and the
        //  database's need not tick alike.
        atomic_store (&self->lease.until_ms, sent_ms + self->lease.ttl_ms * 9 / 10);
        if (dead)
            log_info ("store: took the lead from %s, a process of this host that is gone",
                      dead);
    }
    PQclear (res);
    if (won)
        return 1;
    char gone[128];
    if (!dead && s_holder_dead (self, gone, sizeof gone))
        return s_campaign (self, gone, err, errlen);
    res = PQexec (self->conn, s_leader_info);
    snprintf (err, errlen, "another router leads this database: %s",
              res && PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1
                  ? PQgetvalue (res, 0, 0)
                  : "(unknown)");
    PQclear (res);
    return 0;
}

//  Parameters of S_SEEN_SQL: this router in role.
static void
s_seen_params (const store_pg_lease_t *lease, const char *role, s_params_t *p)
{
    s_param_text (p, lease->holder);
    s_param_text (p, role);
    s_param_text (p, lease->addrs);
    s_param_int (p, (int64_t) getpid ());
    s_param_text (p, lease->host);
}

//  Writes this router's row in emq_routers on the loop's connection (a
//  standby, each time it looks at the lease; the leader once it has it,
//  with the rows that are gone pruned). A failure is only logged: the row
//  is for people to read, nothing depends on it.
static void
s_seen (store_pg_t *self, const char *role)
{
    s_params_t p = { .count = 0 };
    s_seen_params (&self->lease, role, &p);
    PGresult *res = PQexecParams (self->conn, S_SEEN_SQL, p.count, NULL, p.values,
                                  p.lengths, p.formats, 1);
    char err[256];
    if (!res || PQresultStatus (res) != PGRES_COMMAND_OK) {
        s_conn_error (self->conn, res, "note this router in emq_routers", err,
                      sizeof err);
        log_warning ("store: %s", err);
    }
    PQclear (res);
    if (strcmp (role, "leader") != 0)
        return;
    s_params_t prune = { .count = 0 };
    s_param_text (&prune, self->lease.holder);
    s_param_int (&prune, self->lease.ttl_ms * S_ROUTER_GONE_LEASES);
    res = PQexecParams (self->conn, S_PRUNE_SQL, prune.count, NULL, prune.values,
                        prune.lengths, prune.formats, 1);
    if (!res || PQresultStatus (res) != PGRES_COMMAND_OK) {
        s_conn_error (self->conn, res, "prune emq_routers", err, sizeof err);
        log_warning ("store: %s", err);
    }
    PQclear (res);
}

store_pg_t *
store_pg_open (const char *dsn, store_fsync_t policy, const store_pg_options_t *options,
               writer_t **writer, int64_t *max_seq, char *err, size_t errlen)
{
    extern void store_pg_writer_actor (zsock_t * pipe, void *args);
    store_pg_t *self = (store_pg_t *) calloc (1, sizeof (store_pg_t));
    if (!self || !(self->dsn = strdup (dsn))) {
        free (self);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->lease.ttl_ms = (int64_t) (options->lease_ttl_s * 1000);
    if (self->lease.ttl_ms < 100)
        self->lease.ttl_ms = 100;
    char *host = self->lease.host;
    gethostname (host, sizeof self->lease.host - 1);
    snprintf (self->lease.holder, sizeof self->lease.holder, "%s pid %d #%08x", host,
              (int) getpid (), (unsigned) (zclock_time () ^ (int64_t) getpid () << 16));
    if (!(self->lease.addrs = strdup (options->addrs ? options->addrs : "{}"))) {
        snprintf (err, errlen, "out of memory");
        store_pg_close (&self);
        return NULL;
    }
    self->conn = s_connect (dsn, err, errlen);
    if (!self->conn) {
        store_pg_close (&self);
        return NULL;
    }
    snprintf (self->where, sizeof self->where, "database %s on %s:%s", PQdb (self->conn),
              PQhost (self->conn), PQport (self->conn));
    char lock[128];
    snprintf (lock, sizeof lock, "SELECT pg_advisory_xact_lock (%lld)", S_LOCK_KEY);
    if (s_exec (self->conn, "SET client_min_messages TO warning", "set messages", err,
                errlen)
        || s_exec (self->conn, "BEGIN", "begin", err, errlen)
        || s_exec (self->conn, lock, "lock", err, errlen)
        || s_exec (self->conn, s_schema, "create tables", err, errlen)
        || s_exec (self->conn, "COMMIT", "commit", err, errlen)) {
        store_pg_close (&self);
        return NULL;
    }
    //  The lead: taken now, or (standby) waited for, asking a few times per
    //  lease, until it is free or a signal ends the wait.
    int won;
    bool said = false;
    while ((won = s_campaign (self, NULL, err, errlen)) == 0 && options->standby
           && !zsys_interrupted) {
        s_seen (self, "standby");
        if (!said)
            log_info ("store: standby: %s; taking the lead when its lease expires", err);
        said = true;
        int64_t pause = self->lease.ttl_ms / 4;
        zclock_sleep ((int) (pause < 50 ? 50 : pause > 1000 ? 1000 : pause));
    }
    if (won != 1) {
        if (won == 0 && zsys_interrupted)
            snprintf (err, errlen, "stopped while waiting for the lead");
        store_pg_close (&self);
        return NULL;
    }
    log_info ("store: this router leads the database (epoch %" PRId64 ", lease %.1f s)",
              self->lease.epoch, self->lease.ttl_ms / 1000.0);
    s_seen (self, "leader");
    //  The writer renews the lease and fences each write with its epoch.
    *writer =
        writer_start (store_pg_writer_actor, dsn, policy, &self->lease, err, errlen);
    if (!*writer || s_prepare (self->conn, s_reads, R_COUNT_ALL, err, errlen)) {
        writer_destroy (writer);
        store_pg_close (&self);
        return NULL;
    }
    PGresult *res = s_read (self, R_MAX_SEQ, NULL, err, errlen);
    if (!res || PQntuples (res) != 1) {
        if (res)
            snprintf (err, errlen, "cannot read the largest job key");
        PQclear (res);
        writer_destroy (writer);
        store_pg_close (&self);
        return NULL;
    }
    *max_seq = s_get_int (res, 0, 0);
    PQclear (res);
    return self;
}

bool
store_pg_leading (store_pg_t *self)
{
    return zclock_mono () < atomic_load (&self->lease.until_ms);
}

const char *
store_pg_lead_lost (store_pg_t *self)
{
    if (store_pg_leading (self))
        return NULL;
    return atomic_load (&self->lease.until_ms) == 0 && *self->lease.reason
               ? self->lease.reason
               : "its lease expired before it could be renewed";
}

int64_t
store_pg_epoch (store_pg_t *self)
{
    return self->lease.epoch;
}

const char *
store_pg_holder (store_pg_t *self)
{
    return self->lease.holder;
}

double
store_pg_since (store_pg_t *self)
{
    return self->lease.since;
}

//  A router that stops while leading gives its lease back, so that a
//  standby takes the lead at its next look rather than after the lease.
static const char *s_release =
    "UPDATE emq_leader SET expires = now () WHERE id = 1 AND epoch = $1::bigint";

void
store_pg_close (store_pg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_pg_t *self = *self_p;
    if (self->lease.epoch > 0 && store_pg_leading (self) && self->conn
        && PQstatus (self->conn) == CONNECTION_OK) {
        s_params_t p = { .count = 0 };
        s_param_int (&p, self->lease.epoch);
        PGresult *res = PQexecParams (self->conn, s_release, p.count, NULL, p.values,
                                      p.lengths, p.formats, 1);
        if (res && PQresultStatus (res) == PGRES_COMMAND_OK)
            log_info ("store: gave the lead back (epoch %" PRId64 ")", self->lease.epoch);
        PQclear (res);
    }
    //  Leader or standby, a router that stops cleanly leaves the list at
    //  once rather than after 3 leases.
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK) {
        s_params_t p = { .count = 0 };
        s_param_text (&p, self->lease.holder);
        PGresult *res = PQexecParams (self->conn, s_gone_sql, p.count, NULL, p.values,
                                      p.lengths, p.formats, 1);
        if (!res || PQresultStatus (res) != PGRES_COMMAND_OK)
            log_warning ("store: cannot delete this router's row in emq_routers: %s",
                         PQerrorMessage (self->conn));
        PQclear (res);
    }
    PQfinish (self->conn);
    free (self->lease.addrs);
    free (self->dsn);
    free (self);
    *self_p = NULL;
}

const char *
store_pg_where (store_pg_t *self)
{
    return self->where;
}

int
store_pg_routers (store_pg_t *self, store_router_fn *fn, void *arg, char *error,
                  size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_text (&p, self->lease.holder);
    s_param_int (&p, self->lease.ttl_ms * S_ROUTER_GONE_LEASES);
    //  Text results: a handful of short rows, read once per STATUS.
    PGresult *res = PQexecParams (self->conn, s_routers_sql, p.count, NULL, p.values,
                                  p.lengths, p.formats, 0);
    if (!res || PQresultStatus (res) != PGRES_TUPLES_OK) {
        s_conn_error (self->conn, res, "list the routers", error, errlen);
        PQclear (res);
        return -1;
    }
    int rows = PQntuples (res);
    for (int r = 0; r < rows; r++) {
        store_router_t router = {
            .holder = PQgetvalue (res, r, 0),
            .role = PQgetvalue (res, r, 1),
            .addrs = PQgetvalue (res, r, 2),
            .pid = strtoll (PQgetvalue (res, r, 3), NULL, 10),
            .host = PQgetvalue (res, r, 4),
            .seen_ago_s = strtod (PQgetvalue (res, r, 5), NULL),
        };
        if (fn)
            fn (&router, arg);
    }
    PQclear (res);
    return rows;
}

//  store_load reads every live job at start-up: in single-row mode, so that
//  a backlog of a million jobs is not held in one result.
int
store_pg_load (store_pg_t *self, store_row_fn *fn, void *arg, char *err, size_t errlen)
{
    if (s_reader_ready (self, err, errlen))
        return -1;
    if (!PQsendQueryPrepared (self->conn, s_reads[R_LOAD].name, 0, NULL, NULL, NULL, 1)
        || !PQsetSingleRowMode (self->conn)) {
        s_conn_error (self->conn, NULL, "load", err, errlen);
        return -1;
    }
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult (self->conn)) != NULL) {
        ExecStatusType status = PQresultStatus (res);
        if (status == PGRES_SINGLE_TUPLE && rc == 0) {
            store_row_t row;
            s_read_row (res, 0, &row);
            rc = fn ? fn (&row, arg) : 0;
        }
        else if (status != PGRES_TUPLES_OK && status != PGRES_SINGLE_TUPLE && rc == 0) {
            s_conn_error (self->conn, res, "load", err, errlen);
            rc = -1;
        }
        PQclear (res);  // the rest is read and dropped after a stop
    }
    return rc;
}

int
store_pg_fetch (store_pg_t *self, const char *msgid, store_row_fn *fn, void *arg,
                char *err, size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_bytes_nn (&p, msgid, strlen (msgid));
    int rc = s_rows (self, R_FETCH, &p, fn, arg, err, errlen);
    return rc < 0 ? -1 : rc > 0 ? 1 : 0;
}

typedef struct {
    store_cursor_t *cursor;
    store_row_fn *fn;
    void *arg;
} s_page_t;

static int
s_page_row (const store_row_t *row, void *arg)
{
    s_page_t *page = (s_page_t *) arg;
    page->cursor->ended_at = row->ended_at;
    page->cursor->seq = row->seq;
    return page->fn ? page->fn (row, page->arg) : 0;
}

int
store_pg_dead_page (store_pg_t *self, store_cursor_t *cursor, size_t limit,
                    store_row_fn *fn, void *arg, char *err, size_t errlen)
{
    if (cursor->ended_at <= 0) {
        //  From the newest: past any real time (float8 'Infinity' also
        //  works, but a plain number reads the same in both backends).
        cursor->ended_at = 1e300;
        cursor->seq = INT64_MAX;
    }
    s_params_t p = { .count = 0 };
    s_param_double (&p, cursor->ended_at);
    s_param_int (&p, cursor->seq);
    s_param_int (&p, limit ? (int64_t) limit : INT64_MAX);
    s_page_t page = { cursor, fn, arg };
    return s_rows (self, R_DEAD, &p, s_page_row, &page, err, errlen);
}

int
store_pg_meta_get (store_pg_t *self, const char *key, int64_t *value, char *err,
                   size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_text (&p, key);
    PGresult *res = s_read (self, R_META_GET, &p, err, errlen);
    if (!res)
        return -1;
    int rc = PQntuples (res) > 0 ? 0 : 1;
    if (rc == 0)
        *value = s_get_int (res, 0, 0);
    PQclear (res);
    return rc;
}

int
store_pg_meta_list (store_pg_t *self, const char *prefix, store_meta_fn *fn, void *arg,
                    char *err, size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_text (&p, prefix);
    PGresult *res = s_read (self, R_META_LIST, &p, err, errlen);
    if (!res)
        return -1;
    for (int r = 0; r < PQntuples (res); r++)
        fn (s_get_bytes (res, r, 0, NULL), s_get_int (res, r, 1), arg);
    PQclear (res);
    return 0;
}

int64_t
store_pg_count (store_pg_t *self, store_state_t state, char *err, size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_text (&p, store_state_name (state));
    PGresult *res =
        s_read (self, state >= STORE_DONE ? R_COUNT_ENDED : R_COUNT, &p, err, errlen);
    if (!res)
        return -1;
    int64_t count = PQntuples (res) == 1 ? s_get_int (res, 0, 0) : -1;
    PQclear (res);
    return count;
}

int
store_pg_count_by_queue (store_pg_t *self, store_state_t state, store_count_fn *fn,
                         void *arg, char *err, size_t errlen)
{
    s_params_t p = { .count = 0 };
    s_param_text (&p, store_state_name (state));
    PGresult *res = s_read (self, R_COUNT_BY_QUEUE, &p, err, errlen);
    if (!res)
        return -1;
    for (int i = 0; i < PQntuples (res); i++) {
        const char *queue = s_get_bytes (res, i, 0, NULL);
        if (queue)
            fn (queue, s_get_int (res, i, 1), arg);
    }
    PQclear (res);
    return 0;
}

//  --------------------------------------------------------------------------
//  The writer thread

typedef struct {
    zsock_t *pipe;
    writer_setup_t *setup;
    store_pg_lease_t *lease;
    int64_t renew_ms;  // monotonic: the next renewal of the lease
    PGconn *conn;
    bool lost;  // the connection was lost: said once, opened again per batch
    char error[256];
    int task;  // 0 none, 1 expire, 2 purge
    double cutoff_results, cutoff_dead;
    int64_t task_count;
} s_pg_writer_t;

//  Opens the writer's connection: the policy, the statements. Returns 0,
//  or -1 with the reason in self->error.
static int
s_writer_connect (s_pg_writer_t *self)
{
    PQfinish (self->conn);
    self->conn = s_connect (self->setup->location, self->error, sizeof self->error);
    if (!self->conn)
        return -1;
    const char *policy = self->setup->policy == STORE_FSYNC_ALWAYS
                             ? "SET synchronous_commit TO on"
                             : "SET synchronous_commit TO off";
    if (s_exec (self->conn, policy, "set policy", self->error, sizeof self->error)
        || s_exec (self->conn, "SET client_min_messages TO warning", "set messages",
                   self->error, sizeof self->error)
        || s_prepare (self->conn, s_writes, W_COUNT_ALL, self->error,
                      sizeof self->error)) {
        PQfinish (self->conn);
        self->conn = NULL;
        return -1;
    }
    return 0;
}

//  The lead is lost (another router's epoch, seen by a renewal or by the
//  fence): said once; the loop stands down when it next looks.
static void
s_lead_lost (s_pg_writer_t *self, const char *reason)
{
    if (atomic_load (&self->lease->until_ms) == 0)
        return;
    snprintf (self->lease->reason, sizeof self->lease->reason, "%s", reason);
    atomic_store (&self->lease->until_ms, 0);
    log_error ("store: lost the lead of the database: %s", reason);
}

//  A failed statement's result: the fence's own error (SQLSTATE EM001)
//  means the lead is lost.
static void
s_check_fenced (s_pg_writer_t *self, const PGresult *res)
{
    const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp (state, "EM001") == 0) {
        char reason[256];
        snprintf (reason, sizeof reason, "%s",
                  PQresultErrorField (res, PG_DIAG_MESSAGE_PRIMARY));
        s_lead_lost (self, reason);
    }
}

//  The connection for the next transaction; opened again if it was lost.
static int
s_writer_ready (s_pg_writer_t *self)
{
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK)
        return 0;
    if (!self->lost)
        log_warning ("store: lost the connection to PostgreSQL; connecting again");
    self->lost = true;
    if (s_writer_connect (self))
        return -1;
    log_info ("store: connected to PostgreSQL again");
    self->lost = false;
    return 0;
}

static bool
s_send (s_pg_writer_t *self, int which, const s_params_t *p)
{
    return PQsendQueryPrepared (self->conn, s_writes[which].name, p ? p->count : 0,
                                p ? p->values : NULL, p ? p->lengths : NULL,
                                p ? p->formats : NULL, 1)
           == 1;
}

//  Parameters of one change; returns the statement it goes to.
static int
s_op_params (const writer_op_t *op, s_params_t *p)
{
    const char *state = store_state_name (op->state);
    switch (op->type) {
        case WRITER_OP_INSERT:
        case WRITER_OP_REVIVE:
            s_param_int (p, op->seq);
            s_param_bytes_nn (p, op->msgid, strlen (op->msgid));
            s_param_bytes_nn (p, op->queue, strlen (op->queue));
            s_param_bytes_nn (p, op->headers, op->headers ? strlen (op->headers) : 0);
            s_param_bytes_nn (p, op->payload, op->payload_size);
            s_param_bytes (p, op->client, op->client_size);
            if (op->type == WRITER_OP_INSERT) {
                s_param_text (p, state);
                s_param_int (p, op->attempt);
                s_param_int (p, op->retries_left);
                s_param_double (p, op->run_at);
                s_param_double (p, op->created_at);
                return W_INSERT;
            }
            s_param_int (p, op->attempt);
            s_param_int (p, op->retries_left);
            s_param_double (p, op->created_at);
            return W_REVIVE;
        case WRITER_OP_DISPATCHED:
            s_param_int (p, op->attempt);
            s_param_int (p, (int64_t) op->epoch);
            s_param_int (p, op->seq);
            return W_DISPATCHED;
        case WRITER_OP_WAITING:
            s_param_text (p, state);
            s_param_int (p, op->retries_left);
            s_param_double (p, op->run_at);
            s_param_bool (p, op->has_dispatch);
            s_param_int (p, op->attempt);
            s_param_int (p, (int64_t) op->epoch);
            s_param_int (p, op->seq);
            return W_WAITING;
        case WRITER_OP_ENDED:
            s_param_text (p, state);
            s_param_bytes (p, op->status, op->status ? strlen (op->status) : 0);
            s_param_bytes_nn (p, op->result, op->result_size);
            s_param_bytes_nn (p, op->usage, op->usage ? strlen (op->usage) : 0);
            s_param_double (p, op->ended_at);
            s_param_bool (p, op->state == STORE_DEAD);
            s_param_bool (p, op->has_dispatch);
            s_param_int (p, op->attempt);
            s_param_int (p, (int64_t) op->epoch);
            s_param_int (p, op->seq);
            return W_ENDED;
        case WRITER_OP_META:
            s_param_text (p, op->key);
            s_param_int (p, op->value);
            return W_META;
    }
    return W_META;
}

//  What each statement sent in a pipeline was: a change of the batch (its
//  index), or one of ours (-1).
typedef struct {
    long *op;
    size_t head, tail, cap;
} s_pending_t;

static const char *s_op_names[] = { "insert job",  "requeue dead job", "mark job running",
                                    "requeue job", "end job",          "set meta" };

//  Reads back the results of the statements pending, up to `until` of them
//  left. Records the first error in self->error (rc -1).
static int
s_drain (s_pg_writer_t *self, writer_batch_t *batch, s_pending_t *pending, size_t until,
         int rc)
{
    while (pending->tail - pending->head > until) {
        long index = pending->op[pending->head++ % pending->cap];
        PGresult *res = PQgetResult (self->conn);
        if (!res) {
            if (rc == 0)
                s_conn_error (self->conn, NULL, "batch", self->error, sizeof self->error);
            return -1;
        }
        ExecStatusType status = PQresultStatus (res);
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
            if (index >= 0 && rc == 0) {
                writer_op_t op;
                writer_batch_op (batch, (size_t) index, &op);
                if (op.type == WRITER_OP_INSERT && strcmp (PQcmdTuples (res), "0") == 0
                    && writer_batch_add_duplicate (batch, op.seq)) {
                    snprintf (self->error, sizeof self->error,
                              "insert job: out of memory");
                    rc = -1;
                }
            }
        }
        else if (status != PGRES_PIPELINE_ABORTED && rc == 0) {
            s_check_fenced (self, res);
            const char *what = "batch";
            if (index >= 0) {
                writer_op_t op;
                writer_batch_op (batch, (size_t) index, &op);
                what = s_op_names[op.type];
            }
            s_conn_error (self->conn, res, what, self->error, sizeof self->error);
            rc = -1;
        }
        else if (status == PGRES_PIPELINE_ABORTED)
            rc = -1;  // an error before it said why
        PQclear (res);
        //  The NULL that ends each statement's results.
        res = PQgetResult (self->conn);
        PQclear (res);
    }
    return rc;
}

static void
s_pending_add (s_pending_t *pending, long index)
{
    pending->op[pending->tail++ % pending->cap] = index;
}

//  Runs a batch as one transaction, in pipeline mode.
static void
s_apply (s_pg_writer_t *self, writer_batch_t *batch)
{
    writer_batch_begin_run (batch);
    if (writer_batch_doomed (batch))
        return;
    size_t count = writer_batch_size (batch);
    if (count == 0)
        return;
    if (s_writer_ready (self)) {
        writer_batch_settle (batch, -1, self->error);
        return;
    }
    long ring[S_PIPELINE_DEPTH + 8];
    s_pending_t pending = { ring, 0, 0, S_PIPELINE_DEPTH + 8 };
    int rc = 0;
    self->error[0] = 0;
    if (!PQenterPipelineMode (self->conn)) {
        s_conn_error (self->conn, NULL, "pipeline", self->error, sizeof self->error);
        writer_batch_settle (batch, -1, self->error);
        return;
    }
    s_params_t fence = { .count = 0 };
    s_param_int (&fence, self->lease->epoch);
    bool sent = s_send (self, W_BEGIN, NULL);
    if (sent)
        s_pending_add (&pending, -1);
    if (sent && (sent = s_send (self, W_FENCE, &fence)))
        s_pending_add (&pending, -1);
    if (sent && writer_batch_wants_sync (batch)
        && self->setup->policy != STORE_FSYNC_ALWAYS) {
        if ((sent = s_send (self, W_SYNC_ON, NULL)))
            s_pending_add (&pending, -1);
    }
    for (size_t i = 0; sent && i < count; i++) {
        writer_op_t op;
        writer_batch_op (batch, i, &op);
        s_params_t p = { .count = 0 };
        int which = s_op_params (&op, &p);
        if ((sent = s_send (self, which, &p)))
            s_pending_add (&pending, (long) i);
        if (sent && pending.tail - pending.head >= S_PIPELINE_DEPTH) {
            //  Read back the first half: the server answers what it got.
            if (!PQsendFlushRequest (self->conn) || PQflush (self->conn)) {
                sent = false;
                break;
            }
            rc = s_drain (self, batch, &pending, S_PIPELINE_DEPTH / 2, rc);
        }
    }
    if (sent && (sent = s_send (self, W_COMMIT, NULL)))
        s_pending_add (&pending, -1);
    if (!sent) {
        if (rc == 0)
            s_conn_error (self->conn, NULL, "send", self->error, sizeof self->error);
        rc = -1;
    }
    if (PQpipelineSync (self->conn) != 1) {
        if (rc == 0)
            s_conn_error (self->conn, NULL, "sync", self->error, sizeof self->error);
        rc = -1;
    }
    else {
        rc = s_drain (self, batch, &pending, 0, rc);
        PGresult *res = PQgetResult (self->conn);
        if (!res || PQresultStatus (res) != PGRES_PIPELINE_SYNC) {
            if (rc == 0)
                s_conn_error (self->conn, res, "sync", self->error, sizeof self->error);
            rc = -1;
        }
        PQclear (res);
    }
    PQexitPipelineMode (self->conn);
    if (PQstatus (self->conn) == CONNECTION_OK
        && PQtransactionStatus (self->conn) != PQTRANS_IDLE) {
        char ignored[128];
        s_exec (self->conn, "ROLLBACK", "rollback", ignored, sizeof ignored);
    }
    if (PQstatus (self->conn) != CONNECTION_OK && !self->lost) {
        log_warning ("store: lost the connection to PostgreSQL: %s", self->error);
        self->lost = true;
    }
    writer_batch_settle (batch, rc, self->error);
}

//  Runs a prepared statement of the writer's outside a pipeline; its
//  result, or NULL with the reason in self->error (and the lead marked
//  lost if the fence refused it).
static PGresult *
s_writer_exec (s_pg_writer_t *self, int which, const s_params_t *p, const char *what)
{
    PGresult *res = PQexecPrepared (self->conn, s_writes[which].name, p ? p->count : 0,
                                    p ? p->values : NULL, p ? p->lengths : NULL,
                                    p ? p->formats : NULL, 1);
    ExecStatusType status = res ? PQresultStatus (res) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return res;
    s_check_fenced (self, res);
    s_conn_error (self->conn, res, what, self->error, sizeof self->error);
    PQclear (res);
    return NULL;
}

//  One chunk of the task under way, in a fenced transaction of its own.
//  Returns 1 if there is more, 0 if done, -1 if it failed.
static int
s_task_chunk (s_pg_writer_t *self)
{
    if (s_writer_ready (self))
        return -1;
    int64_t deleted = 0;
    bool more = false;
    int64_t left = self->task == 1 ? S_EXPIRE_CHUNK : S_PURGE_CHUNK;
    s_params_t fence = { .count = 0 };
    s_param_int (&fence, self->lease->epoch);
    PGresult *res = s_writer_exec (self, W_BEGIN, NULL, "begin");
    bool ok = res != NULL;
    PQclear (res);
    if (ok) {
        res = s_writer_exec (self, W_FENCE, &fence, "fence");
        ok = res != NULL;
        PQclear (res);
    }
    for (int step = 0; ok && step < (self->task == 1 ? 2 : 1); step++) {
        s_params_t p = { .count = 0 };
        int which = W_PURGE;
        const char *what = "purge dead jobs";
        if (self->task == 1) {
            which = step == 0 ? W_EXPIRE : W_EXPIRE_DEAD;
            s_param_double (&p, step == 0 ? self->cutoff_results : self->cutoff_dead);
            what = step == 0 ? "expire results" : "expire dead jobs";
        }
        s_param_int (&p, left);
        res = s_writer_exec (self, which, &p, what);
        if (!res) {
            ok = false;
            break;
        }
        int64_t n = strtoll (PQcmdTuples (res), NULL, 10);
        PQclear (res);
        deleted += n;
        if (n >= left) {
            more = true;  // maybe: the next chunk finds out
            break;
        }
        left -= n;
    }
    if (ok) {
        res = s_writer_exec (self, W_COMMIT, NULL, "commit");
        ok = res != NULL;
        PQclear (res);
    }
    if (!ok) {
        if (PQstatus (self->conn) == CONNECTION_OK
            && PQtransactionStatus (self->conn) != PQTRANS_IDLE) {
            char ignored[128];
            s_exec (self->conn, "ROLLBACK", "rollback", ignored, sizeof ignored);
        }
        return -1;
    }
    self->task_count += deleted;
    return more ? 1 : 0;
}

//  Renews the lease (between batches, every third of it). A renewal that
//  finds another epoch has lost the lead; one that cannot reach the
//  database leaves the lease to run out (the loop stands down then).
static void
s_renew (s_pg_writer_t *self)
{
    int64_t now = zclock_mono ();
    self->renew_ms = now + self->lease->ttl_ms / 3;
    if (atomic_load (&self->lease->until_ms) == 0 || s_writer_ready (self))
        return;
    s_params_t p = { .count = 0 };
    s_param_int (&p, self->lease->epoch);
    s_param_int (&p, self->lease->ttl_ms);
    PGresult *res = s_writer_exec (self, W_RENEW, &p, "renew the lease");
    if (!res)
        return;
    bool renewed = strcmp (PQcmdTuples (res), "1") == 0;
    PQclear (res);
    if (renewed) {
        //  Only forward: a renewal that took long must not shorten it.
        int64_t until = now + self->lease->ttl_ms * 9 / 10;
        if (until > atomic_load (&self->lease->until_ms))
            atomic_store (&self->lease->until_ms, until);
        //  The leader is seen too, and prunes the routers that are gone.
        s_params_t seen = { .count = 0 };
        s_seen_params (self->lease, "leader", &seen);
        res = s_writer_exec (self, W_SEEN, &seen, "note this router in emq_routers");
        if (res) {
            PQclear (res);
            s_params_t prune = { .count = 0 };
            s_param_text (&prune, self->lease->holder);
            s_param_int (&prune, self->lease->ttl_ms * S_ROUTER_GONE_LEASES);
            res = s_writer_exec (self, W_PRUNE, &prune, "prune emq_routers");
        }
        if (!res)
            log_warning ("store: %s", self->error);
        PQclear (res);
    }
    else
        s_lead_lost (self, "another router took the lead (a newer epoch)");
}

//  Handles one command from the loop. Returns false on $TERM.
static bool
s_command (s_pg_writer_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg)
        return zmq_errno () != ETERM;
    char *command = zmsg_popstr (msg);
    bool go_on = true;
    if (!command || streq (command, "$TERM"))
        go_on = false;
    else if (streq (command, "BATCH")) {
        zframe_t *frame = zmsg_pop (msg);
        void *ptr = NULL;
        if (frame && zframe_size (frame) == sizeof ptr)
            memcpy (&ptr, zframe_data (frame), sizeof ptr);
        zframe_destroy (&frame);
        writer_batch_t *batch = (writer_batch_t *) ptr;
        if (batch) {
            s_apply (self, batch);
            writer_reply_committed (self->pipe, batch);
        }
    }
    else if (streq (command, "EXPIRE") || streq (command, "PURGE")) {
        if (streq (command, "EXPIRE")) {
            char *now = zmsg_popstr (msg), *results = zmsg_popstr (msg),
                 *dead = zmsg_popstr (msg);
            self->cutoff_results =
                atof (now ? now : "0") - atof (results ? results : "0");
            self->cutoff_dead = atof (now ? now : "0") - atof (dead ? dead : "0");
            free (now);
            free (results);
            free (dead);
        }
        if (self->task == 0) {
            self->task = streq (command, "EXPIRE") ? 1 : 2;
            self->task_count = 0;
        }
    }
    else if (streq (command, "RELEASE"))
        malloc_trim (0);
    free (command);
    zmsg_destroy (&msg);
    return go_on;
}

void store_pg_writer_actor (zsock_t *pipe, void *args);

void
store_pg_writer_actor (zsock_t *pipe, void *args)
{
    writer_setup_t *setup = (writer_setup_t *) args;
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
    pthread_setname_np (pthread_self (), "emq-writer");
    s_pg_writer_t self = { .pipe = pipe, .setup = setup, .lease = setup->backend };
    if (s_writer_connect (&self)) {
        setup->failed = true;
        snprintf (setup->error, sizeof setup->error, "%s", self.error);
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    self.renew_ms = zclock_mono () + self.lease->ttl_ms / 3;
    zpoller_t *poller = zpoller_new (pipe, NULL);
    bool running = poller != NULL;
    if (poller)
        zpoller_set_nonstop (poller, true);
    while (running) {
        int64_t wait = self.renew_ms - zclock_mono ();
        if (wait <= 0) {
            s_renew (&self);
            continue;
        }
        void *which = zpoller_wait (poller, self.task ? 0 : (int) wait);
        if (which == pipe)
            running = s_command (&self);
        else if (zpoller_terminated (poller) && zmq_errno () == ETERM)
            running = false;
        else if (self.task && !which && self.renew_ms > zclock_mono ()) {
            int rc = s_task_chunk (&self);
            if (rc <= 0) {
                writer_reply_task (pipe, self.task == 2, rc, self.task_count, self.error);
                self.task = 0;
            }
        }
    }
    zpoller_destroy (&poller);
    PQfinish (self.conn);
}
