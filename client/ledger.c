/*  ledger — requests to send again after a failover. See ledger.h.

    The unACKed requests are a list in the order they were (last) sent,
    indexed by msgid: the head is the oldest, which is what the failover
    check looks at, and a request sent again moves to the tail. Awaited
    results and recent duplicates are hashes of msgids.
*/
#include "ledger.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char msgid[37];
    char *queue, *headers;
    void *payload;
    size_t size;
    bool reply;        // a RESULT is expected once it is ACKed
    bool resent;       // sent more than once: a second ACK may come
    bool result_seen;  // its RESULT came before any ACK: none is awaited
    unsigned copies;   // how many times it was sent
    int64_t sent_ms;   // when last sent
    void *handle;      // in self->requests
} s_request_t;

//  A duplicate to expect: how many more copies, and until when.
typedef struct {
    int64_t until;
    unsigned left;
} s_dup_t;

static void
s_dup_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

//  Values of self->awaiting (never NULL: zhashx keeps no NULL value).
#define S_AWAITING ((void *) 1)
#define S_FETCHED ((void *) 2)  // asked for again: its result may come twice

struct ledger {
    int64_t keep_ms;
    zlistx_t *requests;  // s_request_t *, owned, oldest sent first
    zhashx_t *index;     // msgid -> s_request_t * in requests
    zhashx_t *awaiting;  // msgid -> S_AWAITING or S_FETCHED
    zhashx_t *dup_acks;  // msgid -> s_dup_t: the copies still to come
    zhashx_t *dup_results;
};

static void
s_request_destroy (void **item)
{
    s_request_t *request = (s_request_t *) *item;
    if (!request)
        return;
    free (request->queue);
    free (request->headers);
    free (request->payload);
    free (request);
    *item = NULL;
}

ledger_t *
ledger_new (int64_t keep_ms)
{
    ledger_t *self = calloc (1, sizeof (ledger_t));
    if (!self)
        return NULL;
    self->keep_ms = keep_ms;
    self->requests = zlistx_new ();
    self->index = zhashx_new ();
    self->awaiting = zhashx_new ();
    self->dup_acks = zhashx_new ();
    self->dup_results = zhashx_new ();
    if (!self->requests || !self->index || !self->awaiting || !self->dup_acks
        || !self->dup_results) {
        ledger_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->requests, s_request_destroy);
    zhashx_set_destructor (self->dup_acks, s_dup_destroy);
    zhashx_set_destructor (self->dup_results, s_dup_destroy);
    return self;
}

void
ledger_destroy (ledger_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ledger_t *self = *self_p;
    zhashx_destroy (&self->index);
    zlistx_destroy (&self->requests);
    zhashx_destroy (&self->awaiting);
    zhashx_destroy (&self->dup_acks);
    zhashx_destroy (&self->dup_results);
    free (self);
    *self_p = NULL;
}

int
ledger_sent (ledger_t *self, const char *msgid, const char *queue, const char *headers,
             const void *payload, size_t size, bool reply, int64_t now)
{
    if (strlen (msgid) >= sizeof ((s_request_t *) 0)->msgid)
        return -1;
    //  The same msgid again (the program resubmits it): one entry, sent now.
    s_request_t *request = (s_request_t *) zhashx_lookup (self->index, msgid);
    if (request) {
        request->sent_ms = now;
        request->resent = true;
        request->copies++;
        zlistx_move_end (self->requests, request->handle);
        return 0;
    }
    request = calloc (1, sizeof (s_request_t));
    if (!request)
        return -1;
    strcpy (request->msgid, msgid);
    request->queue = strdup (queue ? queue : "");
    request->headers = strdup (headers ? headers : "");
    request->payload = malloc (size ? size : 1);
    if (!request->queue || !request->headers || !request->payload) {
        s_request_destroy ((void **) &request);
        return -1;
    }
    if (size)
        memcpy (request->payload, payload, size);
    request->size = size;
    request->reply = reply;
    request->copies = 1;
    request->sent_ms = now;
    request->handle = zlistx_add_end (self->requests, request);
    if (!request->handle) {
        s_request_destroy ((void **) &request);
        return -1;
    }
    if (zhashx_insert (self->index, msgid, request)) {
        zlistx_delete (self->requests, request->handle);
        return -1;
    }
    return 0;
}

//  Expects `left` more copies of an answer about msgid until `until`.
//  Losing the record (no memory) only lets a duplicate through.
static void
s_remember (zhashx_t *hash, const char *msgid, int64_t until, unsigned left)
{
    if (left == 0)
        return;
    s_dup_t *dup = (s_dup_t *) malloc (sizeof (s_dup_t));
    if (!dup)
        return;
    dup->until = until;
    dup->left = left;
    zhashx_update (hash, msgid, dup);
}

//  True if an answer about msgid is a copy expected in hash (counted off).
static bool
s_expected_copy (zhashx_t *hash, const char *msgid)
{
    s_dup_t *dup = (s_dup_t *) zhashx_lookup (hash, msgid);
    if (!dup)
        return false;
    if (--dup->left == 0)
        zhashx_delete (hash, msgid);
    return true;
}

//  Takes msgid's request off the unACKed list; true if it was there, with
//  *reply true when its RESULT is still to come.
static bool
s_settle (ledger_t *self, const char *msgid, int64_t now, bool *reply)
{
    s_request_t *request = (s_request_t *) zhashx_lookup (self->index, msgid);
    if (!request)
        return false;
    //  Each copy sent may be ACKed (the router ACKs a msgid it holds).
    s_remember (self->dup_acks, msgid, now + self->keep_ms, request->copies - 1);
    *reply = request->reply && !request->result_seen;
    zhashx_delete (self->index, msgid);
    zlistx_delete (self->requests, request->handle);
    return true;
}

ledger_verdict_t
ledger_acked (ledger_t *self, const char *msgid, int64_t now, bool results, bool *fetch)
{
    *fetch = false;
    s_request_t *request = (s_request_t *) zhashx_lookup (self->index, msgid);
    bool resent = request && request->resent;
    bool reply = false;
    if (s_settle (self, msgid, now, &reply)) {
        //  Sent again across a failover: the router that ACKs it may be
        //  the one that had already run it and lost its RESULT on the
        //  way, and one FETCH now makes sure it comes. (A router that
        //  sends no RESULTs, EventMQ's, is awaited for nothing.)
        reply = reply && results;
        if (reply)
            zhashx_insert (self->awaiting, msgid, resent ? S_FETCHED : S_AWAITING);
        *fetch = reply && resent;
        return LEDGER_DELIVER;
    }
    return s_expected_copy (self->dup_acks, msgid) ? LEDGER_DUPLICATE : LEDGER_DELIVER;
}

ledger_verdict_t
ledger_refused (ledger_t *self, const char *msgid)
{
    //  The answer to a FETCH we sent ourselves (NOT_FOUND, STORAGE: the new
    //  leader could not say yet): not the program's; asked again at the
    //  next failover.
    if (!zhashx_lookup (self->index, msgid)
        && zhashx_lookup (self->awaiting, msgid) == S_FETCHED) {
        zhashx_update (self->awaiting, msgid, S_AWAITING);
        return LEDGER_DUPLICATE;
    }
    bool reply = false;
    s_settle (self, msgid, 0, &reply);
    zhashx_delete (self->dup_acks, msgid);
    zhashx_delete (self->awaiting, msgid);
    return LEDGER_DELIVER;
}

void
ledger_forget_result (ledger_t *self, const char *msgid)
{
    zhashx_delete (self->dup_results, msgid);
}

ledger_verdict_t
ledger_result (ledger_t *self, const char *msgid, int64_t now)
{
    //  A RESULT before the ACK (a new leader ran a job it loaded before
    //  our REQUEST sent again reached it): the request stays unACKed, so
    //  that its ACK is still handed out (and asked for again if lost).
    s_request_t *request = (s_request_t *) zhashx_lookup (self->index, msgid);
    if (request) {
        request->result_seen = true;
        return LEDGER_DELIVER;
    }
    void *state = zhashx_lookup (self->awaiting, msgid);
    if (state) {
        if (state == S_FETCHED)
            s_remember (self->dup_results, msgid, now + self->keep_ms, 1);
        zhashx_delete (self->awaiting, msgid);
        return LEDGER_DELIVER;
    }
    return s_expected_copy (self->dup_results, msgid) ? LEDGER_DUPLICATE : LEDGER_DELIVER;
}

int64_t
ledger_oldest (ledger_t *self)
{
    s_request_t *request = (s_request_t *) zlistx_first (self->requests);
    return request ? request->sent_ms : -1;
}

size_t
ledger_unacked (ledger_t *self)
{
    return zlistx_size (self->requests);
}

size_t
ledger_awaiting (ledger_t *self)
{
    return zhashx_size (self->awaiting);
}

size_t
ledger_resend (ledger_t *self, ledger_resend_fn *fn, void *arg, int64_t now,
               int64_t sent_before)
{
    //  Each one sent moves to the tail: take the head as many times as
    //  there were requests, while it is old enough (the list is in the
    //  order of sending).
    size_t count = zlistx_size (self->requests), sent = 0;
    for (size_t i = 0; i < count; i++) {
        s_request_t *request = (s_request_t *) zlistx_first (self->requests);
        if (request->sent_ms > sent_before)
            break;
        ledger_request_t out = { request->msgid, request->queue, request->headers,
                                 request->payload, request->size };
        if (fn (&out, arg))
            break;
        request->sent_ms = now;
        request->resent = true;
        request->copies++;
        zlistx_move_end (self->requests, request->handle);
        sent++;
    }
    return sent;
}

size_t
ledger_refetch (ledger_t *self, ledger_fetch_fn *fn, void *arg, int64_t now)
{
    (void) now;
    zlistx_t *keys = zhashx_keys (self->awaiting);
    if (!keys)
        return 0;
    size_t asked = 0;
    for (const char *msgid = (const char *) zlistx_first (keys); msgid;
         msgid = (const char *) zlistx_next (keys)) {
        if (fn (msgid, arg))
            break;
        zhashx_update (self->awaiting, msgid, S_FETCHED);
        asked++;
    }
    zlistx_destroy (&keys);
    return asked;
}

static void
s_expire (zhashx_t *hash, int64_t now)
{
    if (zhashx_size (hash) == 0)
        return;
    zlistx_t *keys = zhashx_keys (hash);
    if (!keys)
        return;
    for (const char *msgid = (const char *) zlistx_first (keys); msgid;
         msgid = (const char *) zlistx_next (keys))
        if (((s_dup_t *) zhashx_lookup (hash, msgid))->until <= now)
            zhashx_delete (hash, msgid);
    zlistx_destroy (&keys);
}

void
ledger_expire (ledger_t *self, int64_t now)
{
    s_expire (self->dup_acks, now);
    s_expire (self->dup_results, now);
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

typedef struct {
    char sent[8][37];
    size_t count, room;
} s_sink_t;

static int
s_sink_request (const ledger_request_t *request, void *arg)
{
    s_sink_t *sink = (s_sink_t *) arg;
    if (sink->count == sink->room)
        return -1;
    snprintf (sink->sent[sink->count++], 37, "%s", request->msgid);
    return 0;
}

static int
s_sink_fetch (const char *msgid, void *arg)
{
    s_sink_t *sink = (s_sink_t *) arg;
    if (sink->count == sink->room)
        return -1;
    snprintf (sink->sent[sink->count++], 37, "%s", msgid);
    return 0;
}

void
ledger_test (bool verbose)
{
    if (verbose)
        printf (" * ledger: ");
    ledger_t *ledger = ledger_new (1000);
    CHECK (ledger);
    CHECK_EQ (ledger_oldest (ledger), -1);
    CHECK_EQ (ledger_sent (ledger, "a", "q", "", "pa", 2, true, 10), 0);
    CHECK_EQ (ledger_sent (ledger, "b", "q", "", "pb", 2, false, 20), 0);
    CHECK_EQ (ledger_sent (ledger, "c", "q", "", "pc", 2, true, 30), 0);
    CHECK_EQ (ledger_unacked (ledger), 3);
    CHECK_EQ (ledger_oldest (ledger), 10);

    //  A first ACK is delivered; a reply job then awaits its result.
    bool fetch = true;
    CHECK_EQ (ledger_acked (ledger, "a", 40, true, &fetch), LEDGER_DELIVER);
    CHECK (!fetch);  // sent once: its RESULT comes by itself
    CHECK_EQ (ledger_unacked (ledger), 2);
    CHECK_EQ (ledger_awaiting (ledger), 1);
    CHECK_EQ (ledger_oldest (ledger), 20);
    //  An ACK for what the ledger never held (a SCHEDULE's) goes through.
    CHECK_EQ (ledger_acked (ledger, "sched-1", 40, true, &fetch), LEDGER_DELIVER);

    //  Failover: b and c sent again, oldest first; room for one, then more.
    s_sink_t sink = { .room = 1 };
    CHECK_EQ (ledger_resend (ledger, s_sink_request, &sink, 50, INT64_MAX), 1);
    CHECK_STREQ (sink.sent[0], "b");
    CHECK_EQ (ledger_oldest (ledger), 30);  // c is now the oldest
    sink = (s_sink_t){ .room = 8 };
    CHECK_EQ (ledger_resend (ledger, s_sink_request, &sink, 60, INT64_MAX), 2);
    CHECK_STREQ (sink.sent[0], "c");
    CHECK_STREQ (sink.sent[1], "b");
    //  ... and a's result asked for again.
    sink = (s_sink_t){ .room = 8 };
    CHECK_EQ (ledger_refetch (ledger, s_sink_fetch, &sink, 60), 1);
    CHECK_STREQ (sink.sent[0], "a");

    //  b ACKed by both routers: the second copy is dropped, once.
    CHECK_EQ (ledger_acked (ledger, "b", 70, true, &fetch), LEDGER_DELIVER);
    CHECK (!fetch);  // no reply asked
    //  b went out three times (sent, then in both resends): two more ACKs.
    CHECK_EQ (ledger_acked (ledger, "b", 71, true, &fetch), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_acked (ledger, "b", 72, true, &fetch), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_acked (ledger, "b", 73, true, &fetch), LEDGER_DELIVER);
    //  a's RESULT, natural and fetched: one delivered.
    CHECK_EQ (ledger_result (ledger, "a", 80), LEDGER_DELIVER);
    CHECK_EQ (ledger_result (ledger, "a", 81), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_awaiting (ledger), 0);
    //  c's RESULT before its ACK (a new leader ran it before our copy came):
    //  its first ACK is still delivered, a second one dropped, and no
    //  result is awaited for it any more.
    CHECK_EQ (ledger_result (ledger, "c", 90), LEDGER_DELIVER);
    CHECK_EQ (ledger_unacked (ledger), 1);
    CHECK_EQ (ledger_acked (ledger, "c", 91, true, &fetch), LEDGER_DELIVER);
    CHECK (!fetch);  // its RESULT is in
    CHECK_EQ (ledger_unacked (ledger), 0);
    CHECK_EQ (ledger_oldest (ledger), -1);
    CHECK_EQ (ledger_acked (ledger, "c", 92, true, &fetch), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_awaiting (ledger), 0);

    //  A refused request is forgotten; its ERROR is delivered.
    CHECK_EQ (ledger_sent (ledger, "d", "q", "", "pd", 2, true, 100), 0);
    CHECK_EQ (ledger_refused (ledger, "d"), LEDGER_DELIVER);
    CHECK_EQ (ledger_unacked (ledger), 0);
    CHECK_EQ (ledger_awaiting (ledger), 0);

    //  Duplicates are remembered for keep_ms only.
    CHECK_EQ (ledger_sent (ledger, "e", "q", "", "pe", 2, false, 200), 0);
    CHECK_EQ (ledger_sent (ledger, "e", "q", "", "pe", 2, false, 210), 0);  // again
    CHECK_EQ (ledger_unacked (ledger), 1);
    CHECK_EQ (ledger_acked (ledger, "e", 220, true, &fetch), LEDGER_DELIVER);
    ledger_expire (ledger, 220 + 1000);
    CHECK_EQ (ledger_acked (ledger, "e", 1300, true, &fetch), LEDGER_DELIVER);

    //  A reply job sent again and ACKed after the failover: its RESULT may
    //  have been lost with the old router, so it is fetched once, and the
    //  router's own RESULT and the fetched one make one delivery.
    CHECK_EQ (ledger_sent (ledger, "f", "q", "", "pf", 2, true, 400), 0);
    sink = (s_sink_t){ .room = 8 };
    CHECK_EQ (ledger_resend (ledger, s_sink_request, &sink, 410, INT64_MAX), 1);
    CHECK_EQ (ledger_acked (ledger, "f", 420, true, &fetch), LEDGER_DELIVER);
    CHECK (fetch);
    CHECK_EQ (ledger_awaiting (ledger), 1);
    //  The new leader cannot say yet (NOT_FOUND, STORAGE): that answers our
    //  own FETCH, not the program; f is asked for again at the next switch.
    CHECK_EQ (ledger_refused (ledger, "f"), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_awaiting (ledger), 1);
    CHECK_EQ (ledger_refetch (ledger, s_sink_fetch, &sink, 425), 1);
    CHECK_EQ (ledger_result (ledger, "f", 430), LEDGER_DELIVER);
    CHECK_EQ (ledger_result (ledger, "f", 431), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_awaiting (ledger), 0);
    //  The program's own FETCH of g after the failover's: its answer is not
    //  taken for a copy.
    CHECK_EQ (ledger_sent (ledger, "g", "q", "", "pg", 2, true, 500), 0);
    CHECK_EQ (ledger_resend (ledger, s_sink_request, &sink, 510, INT64_MAX), 1);
    CHECK_EQ (ledger_acked (ledger, "g", 520, true, &fetch), LEDGER_DELIVER);
    CHECK_EQ (ledger_result (ledger, "g", 530), LEDGER_DELIVER);
    ledger_forget_result (ledger, "g");
    CHECK_EQ (ledger_result (ledger, "g", 540), LEDGER_DELIVER);

    //  Sent again only when old enough; a router that sends no RESULTs
    //  (EventMQ's) leaves nothing awaited.
    CHECK_EQ (ledger_sent (ledger, "h", "q", "", "ph", 2, true, 600), 0);
    CHECK_EQ (ledger_sent (ledger, "i", "q", "", "pi", 2, true, 700), 0);
    sink = (s_sink_t){ .room = 8 };
    CHECK_EQ (ledger_resend (ledger, s_sink_request, &sink, 800, 650), 1);
    CHECK_STREQ (sink.sent[0], "h");
    CHECK_EQ (ledger_oldest (ledger), 700);
    CHECK_EQ (ledger_acked (ledger, "i", 810, false, &fetch), LEDGER_DELIVER);
    CHECK (!fetch);
    CHECK_EQ (ledger_awaiting (ledger), 0);
    CHECK_EQ (ledger_acked (ledger, "h", 820, false, &fetch), LEDGER_DELIVER);
    CHECK_EQ (ledger_acked (ledger, "h", 821, false, &fetch), LEDGER_DUPLICATE);
    CHECK_EQ (ledger_unacked (ledger), 0);
    //  A msgid too long for eMQP is not kept.
    CHECK_EQ (ledger_sent (ledger, "0123456789012345678901234567890123456789", "q", "",
                           "p", 1, false, 300),
              -1);
    ledger_destroy (&ledger);
    ledger_destroy (&ledger);
    CHECK (ledger == NULL);
    if (verbose)
        printf ("OK\n");
}
