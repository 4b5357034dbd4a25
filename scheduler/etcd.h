/*  etcd — leadership and shared schedules through etcd's JSON gateway
    (/v3/...), for emq-scheduler's etcd mode.

    All HTTP (libcurl, blocking, with timeouts) runs in a helper thread (a
    czmq actor), so the scheduler's event loop never waits on etcd. The loop
    sends commands (put or delete a schedule, publish this member) and reads
    events from the actor's pipe:

      ETCD_EV_LEADER     we won <prefix>/leader: revision = fencing token
                         (the key's create revision), deadline_ms = our own
                         monotonic limit for acting as leader
      ETCD_EV_RENEWED    the lease was kept alive: a later deadline_ms
      ETCD_EV_LOST       we no longer lead (lease gone, key taken or etcd
                         unreachable past the deadline)
      ETCD_EV_SCHEDULES  the full set of schedules under
                         <prefix>/schedules/ (JSON texts in `items`), sent
                         when leading begins and whenever it changed

    The deadline is measured from before the keepalive request was sent,
    minus a margin, so it passes before etcd can expire the lease: a leader
    that is stopped (SIGSTOP) or cut off stops firing by its own clock.

    Campaign: grant a lease (TTL), then a transaction that puts
    <prefix>/leader = id with the lease only if its create_revision is 0.
    Not leading, the thread polls the key every second and campaigns again
    when it is gone. Members: <prefix>/members/<id> on the same lease (or
    its own while not leading) holds the JSON the scheduler publishes.
*/
#ifndef EMQ_SCHEDULER_ETCD_H
#define EMQ_SCHEDULER_ETCD_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    ETCD_EV_LEADER,
    ETCD_EV_RENEWED,
    ETCD_EV_LOST,
    ETCD_EV_SCHEDULES,
} etcd_event_type_t;

typedef struct {
    etcd_event_type_t type;
    int64_t revision;     // LEADER: fencing token
    char *cluster;        // LEADER: the etcd cluster id (its revisions'
                          // scope), or NULL
    int64_t deadline_ms;  // LEADER, RENEWED: zclock_mono limit
    zlist_t *items;       // SCHEDULES: char * JSON texts (owned)
    char *reason;         // LOST: why
} etcd_event_t;

typedef struct etcd_t etcd_t;

//  Starts the helper thread for endpoint (http://host:port), key prefix
//  (e.g. "/emq"), this member's id and the lease TTL in seconds. Returns
//  it, or NULL with the reason in err. It campaigns at once.
etcd_t *etcd_new (const char *endpoint, const char *prefix, const char *id, double ttl_s,
                  char *err, size_t errlen);
//  Stops the thread (revoking a lease it holds, so another member takes
//  over at once) and nulls the pointer; NULL is fine.
void etcd_destroy (etcd_t **self_p);
//  The socket to poll for events (for zloop_reader).
zsock_t *etcd_socket (etcd_t *self);
//  Reads one event (caller destroys it), or NULL.
etcd_event_t *etcd_recv (etcd_t *self);
void etcd_event_destroy (etcd_event_t **self_p);

//  Commands, queued to the thread (never block):
//  stores a schedule's JSON under <prefix>/schedules/<name>
void etcd_put_schedule (etcd_t *self, const char *name, const char *json);
//  removes it
void etcd_delete_schedule (etcd_t *self, const char *name);
//  sets <prefix>/members/<id> to json
void etcd_publish (etcd_t *self, const char *json);

void etcd_test (bool verbose);

#endif
