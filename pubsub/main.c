/*  emq-pubsub — command line: settings, then run the forwarder object. */
#include "config.h"
#include "curve.h"
#include "log.h"
#include "program.h"
#include "pubsub.h"
#include "service.h"

#include <czmq.h>
#include <stdio.h>

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: emq-pubsub [OPTIONS]\n"
        "EventMQ's pub/sub forwarder: PUBLISH messages in, topic-first\n"
        "messages out to plain ZeroMQ SUB clients.\n"
        "\n"
        "  --incoming ADDR            where publishers send PUBLISH (ROUTER; default\n"
        "                             tcp://127.0.0.1:47298; also\n"
        "                             --publisher-incoming-addr)\n"
        "  --outgoing ADDR            where subscribers connect (PUB; default\n"
        "                             tcp://127.0.0.1:47299; also\n"
        "                             --publisher-outgoing-addr)\n"
        "  --max-message-size BYTES   largest message accepted (16777216)\n"
        "  -C, --config FILE          configuration file (default "
        "$EVENTMQ_CONFIG_FILE\n"
        "                             or /etc/eventmq.conf), sections [global],\n"
        "                             [publisher]\n"
        "  --log-level LEVEL          error, warning, info (default) or debug\n"
        "  -v, --verbose              same as --log-level debug\n"
        "  --print-config             print the effective settings and exit\n"
        "  -h, --help                 this help;  --version  the version\n"
        "\n"
        "Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration,\n"
        "4 could not bind a socket.\n");
}

enum { O_INCOMING = 256, O_OUTGOING, O_MAXMSG };

static const struct option s_options[] = {
    { "incoming", required_argument, NULL, O_INCOMING },
    { "outgoing", required_argument, NULL, O_OUTGOING },
    { "publisher-incoming-addr", required_argument, NULL, O_INCOMING },
    { "publisher-outgoing-addr", required_argument, NULL, O_OUTGOING },
    { "max-message-size", required_argument, NULL, O_MAXMSG },
    PROGRAM_OPTIONS
};

static const program_flag_t s_flags[] = {
    { O_INCOMING, "publisher_incoming_addr", NULL },
    { O_OUTGOING, "publisher_outgoing_addr", NULL },
    { O_MAXMSG, "max_message_size", NULL },
};

//  SIGHUP: the log's settings apply; the addresses need a restart.
static void
s_reload (void *arg)
{
    static const char *const reloadable[] = { "log_level", "log_format", NULL };
    char err[512];
    if (program_reload ((program_t *) arg, reloadable, err, sizeof err) < 0)
        log_error ("pubsub: SIGHUP: %s (the running settings stay)", err);
    else
        log_info ("pubsub: SIGHUP: configuration reloaded");
}

int
main (int argc, char *argv[])
{
    service_hup_install ();  // first: an early SIGHUP must not kill it
    program_t program = { .name = "emq-pubsub",
                          .section = "publisher",
                          .usage = s_usage };
    int code;
    if (!program_start (&program, argc, argv, s_options, s_flags,
                        sizeof s_flags / sizeof s_flags[0], &code))
        return code;
    pubsub_settings_t settings = {
        .incoming = config_str (program.config, "publisher_incoming_addr"),
        .outgoing = config_str (program.config, "publisher_outgoing_addr"),
        .message_max = (size_t) config_int (program.config, "max_message_size"),
        .reload = s_reload,
        .reload_arg = &program,
    };
    //  EventMQ's pub/sub has no CURVE, nor has ours: say so beyond loopback.
    curve_warn_exposed ("pubsub", "incoming", settings.incoming, false);
    curve_warn_exposed ("pubsub", "outgoing", settings.outgoing, false);
    char err[512];
    pubsub_t *pubsub = pubsub_new (&settings, err, sizeof err);
    if (!pubsub) {
        log_error ("pubsub: %s", err);
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_START, "%s", err));
    }
    int rc = pubsub_run (pubsub);
    pubsub_destroy (&pubsub);
    return program_end (&program, rc == 0 ? PROGRAM_EXIT_OK : PROGRAM_EXIT_START);
}
