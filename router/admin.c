/*  admin — JSON for the router's admin commands. See admin.h.

    EventMQ's keys are kept as they are so its emq-cli can read ours; emq adds
    "queues" (one object per queue), "job_managers" and, per job manager,
    "inflight", "processed", "emq" and the job manager's own "stats".
*/
#include "admin.h"

#include "json.h"

#include <czmq.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static char *
s_dump (json_t *root)
{
    char *text = root ? json_dumps (root, JSON_COMPACT) : NULL;
    json_decref (root);
    return text;
}

char *
admin_status_json (queues_t *queues, peers_t *job_managers,
                   const admin_storage_t *storage, const admin_traffic_t *traffic,
                   json_t *extra)
{
    json_t *root = json_object ();
    json_t *inflight = json_object (), *latency = json_object (),
           *max_latency = json_object (), *waiting = json_object (),
           *processed = json_object (), *by_worker = json_object (),
           *detail = json_object ();
    for (queue_t *queue = queues_first (queues); queue; queue = queues_next (queues)) {
        if (queue->counts.inflight)
            json_object_set_new (inflight, queue->name,
                                 json_integer ((json_int_t) queue->counts.inflight));
        if (queue->counts.dispatched) {
            json_object_set_new (latency, queue->name, json_integer (queue->latency_ms));
            json_object_set_new (max_latency, queue->name,
                                 json_integer (queue->max_latency_ms));
        }
        if (queue_waiting (queue))
            json_object_set_new (waiting, queue->name,
                                 json_integer ((json_int_t) queue_waiting (queue)));
        if (queue->counts.processed)
            json_object_set_new (processed, queue->name,
                                 json_integer ((json_int_t) queue->counts.processed));
        json_object_set_new (detail, queue->name,
                             json_pack ("{s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "waiting",
                                        (json_int_t) queue_waiting (queue), "inflight",
                                        (json_int_t) queue->counts.inflight, "processed",
                                        (json_int_t) queue->counts.processed, "failed",
                                        (json_int_t) queue->counts.failed, "hwm",
                                        (json_int_t) queues_hwm (queues), "servers",
                                        (json_int_t) zlistx_size (queue->servers),
                                        "paused", queue->paused));
    }
    zlistx_t *list = peers_list (job_managers);
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list))
        json_object_set_new (by_worker, peer->id,
                             json_integer ((json_int_t) peer->processed));
    zlistx_destroy (&list);
    json_object_set_new (root, "inflight_messages_by_queue", inflight);
    json_object_set_new (root, "latency_messages_by_queue", latency);
    json_object_set_new (root, "max_latency_messages_by_queue", max_latency);
    json_object_set_new (root, "waiting_messages_by_queue", waiting);
    json_object_set_new (root, "processed_messages_by_queue", processed);
    json_object_set_new (root, "processed_messages_by_worker", by_worker);
    json_object_set_new (root, "queues", detail);
    json_object_set_new (root, "job_managers",
                         json_integer ((json_int_t) peers_size (job_managers)));
    json_object_set_new (root, "jobs",
                         json_integer ((json_int_t) queues_job_count (queues)));
    json_object_set_new (root, "storage", json_string (storage->kind));
    json_object_set_new (root, "store",
                         json_pack ("{s:s,s:s?,s:s,s:I,s:I,s:b}", "kind", storage->kind,
                                    "path", storage->path, "fsync", storage->fsync,
                                    "dead", (json_int_t) storage->dead, "scheduled",
                                    (json_int_t) storage->scheduled, "failing",
                                    storage->failing));
    if (storage->lead_epoch > 0)
        json_object_set_new (json_object_get (root, "store"), "lead",
                             json_pack ("{s:I,s:s,s:f}", "epoch",
                                        (json_int_t) storage->lead_epoch, "holder",
                                        storage->lead_holder ? storage->lead_holder : "",
                                        "since", storage->lead_since));
    if (storage->lead_epoch > 0 && storage->routers)
        json_object_set (json_object_get (root, "store"), "routers", storage->routers);
    if (traffic)
        json_object_set_new (root, "traffic",
                             json_pack ("{s:I,s:I,s:I,s:I,s:I}", "batches_in",
                                        (json_int_t) traffic->batches_in, "batched_in",
                                        (json_int_t) traffic->batched_in, "batches_out",
                                        (json_int_t) traffic->batches_out, "batched_out",
                                        (json_int_t) traffic->batched_out,
                                        "undeliverable",
                                        (json_int_t) traffic->undeliverable));
    if (extra) {
        json_t *per_queue = json_object_get (extra, "queues");
        const char *name;
        json_t *more;
        json_object_foreach (per_queue, name, more)
        {
            json_t *queue = json_object_get (detail, name);
            if (queue)
                json_object_update (queue, more);
        }
        json_object_del (extra, "queues");
        json_object_update_missing (root, extra);
        json_decref (extra);
    }
    return s_dump (root);
}

char *
admin_workers_json (peers_t *job_managers, int64_t now_mono_ms)
{
    (void) now_mono_ms;
    json_t *root = json_object ();
    json_t *workers = json_object (), *by_queue = json_object ();
    zlistx_t *list = peers_list (job_managers);
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list)) {
        json_t *queues = json_array ();
        for (size_t i = 0; i < peer->queue_count; i++) {
            const char *name = peer->queues[i].queue->name;
            json_array_append_new (
                queues, json_pack ("[I,s]", (json_int_t) peer->queues[i].weight, name));
            json_t *members = json_object_get (by_queue, name);
            if (!members) {
                members = json_array ();
                json_object_set_new (by_queue, name, members);
            }
            json_array_append_new (
                members,
                json_pack ("[I,s]", (json_int_t) peer->queues[i].weight, peer->id));
        }
        json_t *item = json_pack (
            "{s:o,s:f,s:I,s:I,s:I,s:I,s:b,s:b}", "queues", queues, "hb",
            (double) peer->last_heard_ms / 1000.0, "available_slots",
            (json_int_t) peer->slots, "prefetched", (json_int_t) peer->prefetched,
            "inflight", (json_int_t) zhashx_size (peer->inflight), "processed",
            (json_int_t) peer->processed, "emq", peer->emq, "quiet", peer->quiet);
        json_t *stats = peer->stats ? json_loads (peer->stats, 0, NULL) : NULL;
        if (stats)
            json_object_set_new (item, "stats", stats);
        json_object_set_new (workers, peer->id, item);
    }
    zlistx_destroy (&list);
    json_object_set_new (root, "connected_workers", workers);
    json_object_set_new (root, "connected_queues", by_queue);
    return s_dump (root);
}

char *
admin_schedulers_json (peers_t *schedulers, int64_t now_mono_ms)
{
    (void) now_mono_ms;
    json_t *root = json_object ();
    json_t *list_json = json_object ();
    zlistx_t *list = peers_list (schedulers);
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list)) {
        json_t *item = json_pack ("{s:f}", "hb", (double) peer->last_heard_ms / 1000.0);
        json_t *stats = peer->stats ? json_loads (peer->stats, 0, NULL) : NULL;
        if (stats)
            json_object_set_new (item, "stats", stats);
        json_object_set_new (list_json, peer->id, item);
    }
    zlistx_destroy (&list);
    json_object_set_new (root, "connected_schedulers", list_json);
    return s_dump (root);
}

//  --------------------------------------------------------------------------
//  Job and queue admin

//  A payload as a person can read it: emq's msgpack as JSON, EventMQ's
//  JSON text as that value, anything else as base64.
static void
s_payload_set (json_t *obj, const char *key, const void *data, size_t size)
{
    char err[128], encoding_key[64];
    snprintf (encoding_key, sizeof encoding_key, "%s_encoding", key);
    char *text = size ? json_from_msgpack (data, size, err, sizeof err) : NULL;
    json_t *value = text ? json_loads (text, JSON_DECODE_ANY, NULL) : NULL;
    free (text);
    const char *encoding = "msgpack";
    if (!value && size) {
        //  EventMQ payloads are JSON text; an error text is text.
        value = json_loadb (data, size, JSON_DECODE_ANY, NULL);
        if (!value)
            value = json_stringn (data, size);  // NULL unless UTF-8
        encoding = "text";
    }
    if (!value && size) {
        char *b64 = json_base64 (data, size);
        value = b64 ? json_string (b64) : NULL;
        free (b64);
        encoding = "base64";
    }
    json_object_set_new (obj, key, value ? value : json_null ());
    json_object_set_new (obj, encoding_key, json_string (size ? encoding : "none"));
}

const char *
admin_job_state (const job_t *job)
{
    switch (job->state) {
        case JOB_QUEUED:
            return "waiting";
        case JOB_SCHEDULED:
            return job->attempt > 0 ? "retrying" : "scheduled";
        case JOB_RUNNING:
            return "running";
        case JOB_PENDING:
            return "pending";
        default:
            return "ended";
    }
}

json_t *
admin_job_json (const job_t *job, const char *running_on, bool full)
{
    json_t *obj = json_object ();
    json_object_set_new (obj, "msgid", json_string (JOB_MSGID (job)));
    json_object_set_new (obj, "queue", json_string (job->queue->name));
    json_object_set_new (obj, "state", json_string (admin_job_state (job)));
    json_object_set_new (obj, "attempt", json_integer (job->attempt));
    json_object_set_new (obj, "retries_left", json_integer (job->retries_left));
    json_object_set_new (obj, "payload_size", json_integer (job->payload_size));
    if (job->state == JOB_SCHEDULED && job->more)
        json_object_set_new (obj, "run_at", json_real (job->more->run_at));
    if (running_on)
        json_object_set_new (obj, "jobmanager", json_string (running_on));
    if (full) {
        json_object_set_new (obj, "headers", json_string (job_headers (job)));
        s_payload_set (obj, "payload", job_payload (job), job->payload_size);
    }
    return obj;
}

json_t *
admin_row_json (const store_row_t *row, bool full)
{
    json_t *obj = json_object ();
    json_object_set_new (obj, "msgid", json_string (row->msgid));
    json_object_set_new (obj, "queue", json_string (row->queue));
    const char *state = store_state_name (row->state);
    json_object_set_new (obj, "state",
                         json_string (streq (state, "queued") ? "waiting" : state));
    json_object_set_new (obj, "attempt", json_integer (row->attempt));
    json_object_set_new (obj, "retries_left", json_integer (row->retries_left));
    json_object_set_new (obj, "payload_size",
                         json_integer ((json_int_t) row->payload_size));
    json_object_set_new (obj, "created_at", json_real (row->created_at));
    if (row->run_at > 0)
        json_object_set_new (obj, "run_at", json_real (row->run_at));
    if (row->ended_at > 0) {
        json_object_set_new (obj, "ended_at", json_real (row->ended_at));
        json_object_set_new (obj, "status", json_string (row->status ? row->status : ""));
    }
    if (!full)
        return obj;
    json_object_set_new (obj, "headers", json_string (row->headers ? row->headers : ""));
    s_payload_set (obj, "payload", row->payload, row->payload_size);
    if (row->ended_at > 0) {
        bool ok = row->status && streq (row->status, "ok");
        s_payload_set (obj, ok ? "result" : "error", row->result, row->result_size);
        json_object_set_new (obj, "usage", json_string (row->usage ? row->usage : ""));
    }
    //  What the store keeps of the job's life: when it came, how often it
    //  was dispatched, when it waits until, how it ended.
    json_t *history = json_array ();
    json_array_append_new (
        history, json_pack ("{s:f, s:s}", "at", row->created_at, "event", "submitted"));
    if (row->attempt > 0)
        json_array_append_new (history, json_pack ("{s:s, s:i}", "event", "dispatched",
                                                   "attempts", (int) row->attempt));
    if (row->run_at > 0 && row->ended_at <= 0)
        json_array_append_new (history,
                               json_pack ("{s:f, s:s}", "at", row->run_at, "event",
                                          row->attempt > 0 ? "retry_due" : "due"));
    if (row->ended_at > 0)
        json_array_append_new (history, json_pack ("{s:f, s:s, s:s}", "at", row->ended_at,
                                                   "event", state, "status",
                                                   row->status ? row->status : ""));
    json_object_set_new (obj, "history", history);
    return obj;
}
