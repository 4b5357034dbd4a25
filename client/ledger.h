/*  ledger — what a libemq client with several router addresses must be
    able to send again after a failover: the REQUESTs the router has not
    ACKed (with copies of their payloads), and the jobs ACKed with a reply
    requested whose RESULT has not come. It also knows which answers are
    the second copy of one already handed out (the ACK of a REQUEST sent
    twice, the RESULT of a job fetched again), so that the program sees
    each once.

    Pure bookkeeping: it sends nothing and keeps no clock (callers pass
    `now`, monotonic milliseconds).
*/
#ifndef EMQ_LEDGER_H
#define EMQ_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ledger ledger_t;

//  A REQUEST as it is sent again (every field borrowed from the ledger).
typedef struct {
    const char *msgid, *queue, *headers;
    const void *payload;
    size_t size;
} ledger_request_t;

//  Sends one request again; returns 0, or -1 to stop (the socket is full).
typedef int ledger_resend_fn (const ledger_request_t *request, void *arg);
//  Asks again for the result of msgid; returns 0, or -1 to stop.
typedef int ledger_fetch_fn (const char *msgid, void *arg);

typedef enum {
    LEDGER_DELIVER,    // hand the answer to the program
    LEDGER_DUPLICATE,  // a second copy of one handed out: drop it
} ledger_verdict_t;

//  A duplicate is recognised for keep_ms after the first copy.
ledger_t *ledger_new (int64_t keep_ms);
void ledger_destroy (ledger_t **self_p);

//  A REQUEST was sent. Returns 0, or -1 without memory.
int ledger_sent (ledger_t *self, const char *msgid, const char *queue,
                 const char *headers, const void *payload, size_t size, bool reply,
                 int64_t now);
//  The router ACKed msgid / refused it (ERROR about it) / sent its RESULT.
//  A RESULT that comes before any ACK leaves the request unACKed: its ACK
//  is handed out when it comes, and the request sent again until it does.
//  results: the router sends RESULTs (an emq router); else a reply job is
//  not awaited. An ERROR about a job whose result we fetched ourselves is
//  the answer to our FETCH, not the program's: LEDGER_DUPLICATE.
//  ledger_acked sets *fetch when the caller should FETCH the job's result
//  now: a reply job sent again across a failover, whose RESULT the router
//  that ran it may have lost.
ledger_verdict_t ledger_acked (ledger_t *self, const char *msgid, int64_t now,
                               bool results, bool *fetch);
ledger_verdict_t ledger_refused (ledger_t *self, const char *msgid);
ledger_verdict_t ledger_result (ledger_t *self, const char *msgid, int64_t now);

//  When the oldest unACKed REQUEST was (last) sent; -1 if there is none.
int64_t ledger_oldest (ledger_t *self);
size_t ledger_unacked (ledger_t *self);
size_t ledger_awaiting (ledger_t *self);

//  Sends every unACKed REQUEST last sent at or before sent_before again,
//  oldest first, until fn says stop; each sent one counts as sent at now
//  (and its ACK may come once more). Returns how many were sent.
size_t ledger_resend (ledger_t *self, ledger_resend_fn *fn, void *arg, int64_t now,
                      int64_t sent_before);
//  Asks again for every awaited RESULT until fn says stop; the first
//  RESULT of each is then delivered and a second one dropped. Returns how
//  many were asked for.
size_t ledger_refetch (ledger_t *self, ledger_fetch_fn *fn, void *arg, int64_t now);

//  The program asks for msgid's result itself: its answer is no copy.
void ledger_forget_result (ledger_t *self, const char *msgid);

//  Forgets duplicates older than keep_ms.
void ledger_expire (ledger_t *self, int64_t now);

void ledger_test (bool verbose);

#endif
