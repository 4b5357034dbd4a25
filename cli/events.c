/*  events — `emq-cli events`: follows the router's event stream (a SUB
    socket on its events_listen_addr, docs/protocol.md "Event stream") and
    prints one line per event, or the event's JSON with --json.

    Kinds are filtered by the router (ZeroMQ prefix subscriptions on the
    topic frame), queues here (the queue is a field of the JSON).
*/
#include "addrlist.h"
#include "cli.h"
#include "clock.h"
#include "curve.h"
#include "numparse.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_FILTERS_MAX 32

static const char *s_job_kinds[] = { "queued",   "scheduled", "started", "done",
                                     "failed",   "retried",   "dead",    "cancelled",
                                     "requeued", "returned",  NULL };
static const char *s_jm_kinds[] = { "joined", "left", NULL };

static bool
s_in (const char *const *list, const char *word)
{
    for (size_t i = 0; list[i]; i++)
        if (streq (list[i], word))
            return true;
    return false;
}

//  One line for a person: time, kind, queue, msgid, then the other fields.
static void
s_print_line (json_t *event)
{
    double at = json_number_value (json_object_get (event, "time"));
    time_t secs = (time_t) at;
    struct tm tm;
    char stamp[32] = "-";
    if (localtime_r (&secs, &tm))
        snprintf (stamp + strftime (stamp, sizeof stamp, "%H:%M:%S", &tm),
                  sizeof stamp - 8, ".%03d", (int) ((at - (double) secs) * 1000) % 1000);
    const char *kind = json_string_value (json_object_get (event, "kind"));
    const char *queue = json_string_value (json_object_get (event, "queue"));
    const char *msgid = json_string_value (json_object_get (event, "msgid"));
    const char *jm = json_string_value (json_object_get (event, "jobmanager"));
    printf ("%s  %-9s  %-12s  %s", stamp, kind ? kind : "?",
            queue ? queue : (jm ? "jobmanager" : "-"), msgid ? msgid : (jm ? jm : "-"));
    const char *key;
    json_t *value;
    json_object_foreach (event, key, value)
    {
        if (streq (key, "time") || streq (key, "kind") || streq (key, "queue")
            || streq (key, "msgid") || streq (key, "seq")
            || (msgid == NULL && streq (key, "jobmanager")))
            continue;
        char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text && json_is_string (value))
            printf ("  %s=%s", key, json_string_value (value));
        else if (text)
            printf ("  %s=%s", key, text);
        free (text);
    }
    printf ("\n");
}

int
cli_events (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "queue", required_argument, NULL, 'q' },
                                             { "kind", required_argument, NULL, 'k' },
                                             { "json", no_argument, NULL, 'j' },
                                             { "count", required_argument, NULL, 'n' },
                                             { "for", required_argument, NULL, 'f' },
                                             { "events-addr", required_argument, NULL,
                                               'e' },
                                             CLI_GLOBAL_OPTIONS };
    const char *queues[S_FILTERS_MAX], *kinds[S_FILTERS_MAX];
    size_t nqueues = 0, nkinds = 0;
    bool json_out = false;
    uint64_t count = 0;  // 0: no end
    int for_ms = -1;
    const char *addr = NULL;
    int opt;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
            case 'q':
            case 'k':
                if ((opt == 'q' ? nqueues : nkinds) == S_FILTERS_MAX)
                    return cli_usage_error ("events: at most %d --%s filters",
                                            S_FILTERS_MAX, opt == 'q' ? "queue" : "kind");
                if (opt == 'k' && !s_in (s_job_kinds, optarg)
                    && !s_in (s_jm_kinds, optarg))
                    return cli_usage_error (
                        "events: --kind '%s' is not an event kind (queued, scheduled, "
                        "started, done, failed, retried, dead, cancelled, requeued, "
                        "returned, joined, left)",
                        optarg);
                if (opt == 'q')
                    queues[nqueues++] = optarg;
                else
                    kinds[nkinds++] = optarg;
                break;
            case 'j':
                json_out = true;
                break;
            case 'n':
                if (numparse_uint (optarg, UINT64_MAX, &count) || count == 0)
                    return cli_usage_error ("events: --count '%s' is not a positive "
                                            "whole number",
                                            optarg);
                break;
            case 'f':
                if (cli_parse_seconds (optarg, &for_ms))
                    return cli_usage_error ("events: --for '%s' is not a number of "
                                            "seconds",
                                            optarg);
                break;
            case 'e':
                addr = optarg;
                break;
            default: {
                int rc = cli_other_option (cli, "events", opt, optarg, argv);
                if (rc)
                    return rc >= 100 ? rc - 100 : rc;
            }
        }
    }
    if (optind < argc)
        return cli_usage_error ("events: unexpected argument '%s'", argv[optind]);
    int rc = cli_setup (cli);
    if (rc)
        return rc;
    if (!addr)
        addr = cli->events;

    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub)
        return cli_fail (CLI_EXIT_FAILED, "events: cannot create a socket");
    char err[512];
    if (cli->curve_key
        && curve_client_apply (sub, cli->curve_key, cli->curve_cert, err, sizeof err)) {
        zsock_destroy (&sub);
        return cli_fail (CLI_EXIT_USAGE, "events: CURVE: %s", err);
    }
    //  A list of routers: the one that leads publishes; a standby binds
    //  nothing, so a SUB connected to every address hears the leader.
    size_t naddrs = 0;
    char **addrs = addrlist_parse (addr, &naddrs, err, sizeof err);
    if (!addrs) {
        zsock_destroy (&sub);
        return cli_fail (CLI_EXIT_USAGE, "events: address '%s': expected %s", addr, err);
    }
    for (size_t i = 0; i < naddrs; i++)
        if (zsock_connect (sub, "%s", addrs[i]) == -1) {
            rc = cli_fail (CLI_EXIT_USAGE, "events: cannot connect to '%s': %s", addrs[i],
                           zmq_strerror (zmq_errno ()));
            addrlist_destroy (&addrs);
            zsock_destroy (&sub);
            return rc;
        }
    addrlist_destroy (&addrs);
    if (nkinds == 0)
        zsock_set_subscribe (sub, "");
    for (size_t i = 0; i < nkinds; i++) {
        char topic[64];
        snprintf (topic, sizeof topic, "%s.%s",
                  s_in (s_jm_kinds, kinds[i]) ? "jobmanager" : "job", kinds[i]);
        zsock_set_subscribe (sub, topic);
    }
    if (cli->verbose)
        fprintf (stderr, "emq-cli: events: subscribed to %s\n", addr);

    int64_t deadline = for_ms >= 0 ? clock_mono_ms () + for_ms : -1;
    uint64_t shown = 0, last_seq = 0;
    rc = CLI_EXIT_OK;
    while (count == 0 || shown < count) {
        int wait_ms = 1000;
        if (deadline >= 0) {
            int64_t left = deadline - clock_mono_ms ();
            if (left <= 0)
                break;
            wait_ms = left < wait_ms ? (int) left : wait_ms;
        }
        zsock_set_rcvtimeo (sub, wait_ms);
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg) {
            if (zmq_errno () == EAGAIN)
                continue;
            break;  // interrupted
        }
        zframe_t *topic = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        json_t *event = body ? json_loadb ((const char *) zframe_data (body),
                                           zframe_size (body), 0, NULL)
                             : NULL;
        (void) topic;
        if (!json_is_object (event)) {
            fprintf (stderr,
                     "emq-cli: events: a message that is not an event, ignored\n");
            json_decref (event);
            zmsg_destroy (&msg);
            continue;
        }
        uint64_t seq = (uint64_t) json_integer_value (json_object_get (event, "seq"));
        if (last_seq && seq > last_seq + 1 && nkinds == 0)
            fprintf (stderr, "emq-cli: events: %" PRIu64 " event(s) missed\n",
                     seq - last_seq - 1);
        last_seq = seq;
        const char *queue = json_string_value (json_object_get (event, "queue"));
        bool wanted = nqueues == 0;
        for (size_t i = 0; i < nqueues && !wanted; i++)
            wanted = queue && streq (queue, queues[i]);
        if (wanted) {
            if (json_out) {
                char *text = json_dumps (event, JSON_COMPACT);
                printf ("%s\n", text ? text : "{}");
                free (text);
            }
            else
                s_print_line (event);
            fflush (stdout);
            shown++;
        }
        json_decref (event);
        zmsg_destroy (&msg);
    }
    if (count && shown < count && deadline >= 0) {
        fprintf (stderr, "emq-cli: events: %" PRIu64 " of %" PRIu64 " event(s) in time\n",
                 shown, count);
        rc = CLI_EXIT_WAIT_TIMEOUT;
    }
    zsock_destroy (&sub);
    return rc;
}
