/*  emq-web — the dashboard and /metrics: command line and settings, then
    the sampler (main thread) and the HTTP server (its own threads). */
#include "config.h"
#include "emq-paths.h"
#include "emq/client.h"
#include "log.h"
#include "program.h"
#include "sampler.h"
#include "server.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: emq-web [OPTIONS]\n"
        "The emq dashboard and Prometheus endpoint: reads the router through its\n"
        "admin socket and serves http://ADDR/ (dashboard) and /metrics.\n"
        "\n"
        "  --listen ADDR:PORT       where to serve (default 127.0.0.1:47295;\n"
        "                           also --web-listen-addr; port 0: any free one)\n"
        "  --admin-addr ADDR        the router's admin socket (default\n"
        "                           tcp://127.0.0.1:47293)\n"
        "  --addr ADDR              the router's frontend, for job results\n"
        "                           (default tcp://127.0.0.1:47291)\n"
        "  --static-dir DIR         the dashboard's files (default " EMQ_WEB_DIR ")\n"
        "  --password-file FILE     require HTTP basic auth, user 'emq', with the\n"
        "                           password on FILE's first line (or setting\n"
        "                           web_password); required with CURVE\n"
        "  --sample-interval S      seconds between samples of the router (1)\n"
        "  --curve-server-key KEY   CURVE: the router's public key or certificate\n"
        "  --curve-cert FILE        CURVE: this program's key pair (needs role admin)\n"
        "  --config FILE            configuration file ([global] and [web])\n"
        "  --log-level LEVEL        error, warning, info (default) or debug\n"
        "  -v, --verbose            same as --log-level debug\n"
        "  --print-config           print the effective settings and exit\n"
        "  -h, --help               this help;  --version  the version\n"
        "\n"
        "Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration\n"
        "(CURVE without a password), 4 could not listen.\n");
}

enum {
    O_LISTEN = 256,
    O_ADMIN,
    O_FRONTEND,
    O_STATIC,
    O_PASSWORD_FILE,
    O_INTERVAL,
    O_CURVE_KEY,
    O_CURVE_CERT
};

static const struct option s_options[] = {
    { "listen", required_argument, NULL, O_LISTEN },
    { "web-listen-addr", required_argument, NULL, O_LISTEN },
    { "admin-addr", required_argument, NULL, O_ADMIN },
    { "addr", required_argument, NULL, O_FRONTEND },
    { "static-dir", required_argument, NULL, O_STATIC },
    { "password-file", required_argument, NULL, O_PASSWORD_FILE },
    { "sample-interval", required_argument, NULL, O_INTERVAL },
    { "curve-server-key", required_argument, NULL, O_CURVE_KEY },
    { "curve-cert", required_argument, NULL, O_CURVE_CERT },
    PROGRAM_OPTIONS
};

static const program_flag_t s_flags[] = {
    { O_LISTEN, "web_listen_addr", NULL },
    { O_ADMIN, "administrative_addr", NULL },
    { O_FRONTEND, "frontend_addr", NULL },
    { O_STATIC, "web_static_dir", NULL },
    { O_INTERVAL, "web_sample_interval", NULL },
    { O_PASSWORD_FILE, "web_password_file", NULL },
    { O_CURVE_KEY, "curve_server_key", NULL },
    { O_CURVE_CERT, "curve_cert", NULL },
};

//  The password: web_password_file's first line, else web_password.
//  Returns 0, or -1 after saying why.
static int
s_password (config_t *config, char *out, size_t size)
{
    const char *file = config_str (config, "web_password_file");
    snprintf (out, size, "%s", config_str (config, "web_password"));
    if (!*file)
        return 0;
    FILE *stream = fopen (file, "r");
    if (!stream || !fgets (out, (int) size, stream)) {
        program_error ("emq-web", PROGRAM_EXIT_CONFIG, "password file %s: %s", file,
                       stream ? "empty" : strerror (errno));
        if (stream)
            fclose (stream);
        return -1;
    }
    fclose (stream);
    out[strcspn (out, "\r\n")] = 0;
    if (!*out) {
        program_error ("emq-web", PROGRAM_EXIT_CONFIG, "password file %s: empty line",
                       file);
        return -1;
    }
    return 0;
}

int
main (int argc, char *argv[])
{
    program_t program = { .name = "emq-web", .section = "web", .usage = s_usage };
    int code;
    if (!program_start (&program, argc, argv, s_options, s_flags,
                        sizeof s_flags / sizeof s_flags[0], &code))
        return code;
    config_t *config = program.config;
    char password[256];
    if (s_password (config, password, sizeof password))
        return program_end (&program, PROGRAM_EXIT_CONFIG);
    const char *curve_key = config_str (config, "curve_server_key");
    char err[512];
    if (*curve_key) {
        if (!*password)
            return program_end (
                &program,
                program_error (program.name, PROGRAM_EXIT_CONFIG,
                               "CURVE is on: set a password (--password-file or "
                               "web_password) so that the dashboard is not open to all"));
        if (emq_set_curve (curve_key, config_str (config, "curve_cert"), err, sizeof err))
            return program_end (
                &program,
                program_error (program.name, PROGRAM_EXIT_CONFIG, "CURVE: %s", err));
    }
    const char *listen = config_str (config, "web_listen_addr");
    if (strncmp (listen, "127.", 4) != 0 && !*password)
        log_warning ("web: listening on %s without a password: anyone who reaches it "
                     "can retry and delete jobs",
                     listen);
    const char *static_dir = config_str (config, "web_static_dir");
    int interval_ms = (int) (config_double (config, "web_sample_interval") * 1000);
    const char *admin = config_str (config, "administrative_addr");
    sampler_t *sampler = sampler_new (admin, 2000);
    server_settings_t settings = { .listen = listen,
                                   .password = password,
                                   .static_dir = *static_dir ? static_dir : EMQ_WEB_DIR,
                                   .admin = admin,
                                   .frontend = config_str (config, "frontend_addr"),
                                   .timeout_ms = 3000 };
    server_t *server = sampler ? server_new (&settings, sampler, err, sizeof err) : NULL;
    if (!server) {
        log_error ("web: %s", sampler ? err : "out of memory");
        sampler_destroy (&sampler);
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_START, "%s",
                                           sampler ? err : "out of memory"));
    }
    char host[64];
    snprintf (host, sizeof host, "%.*s", (int) strcspn (listen, ":"), listen);
    log_info ("web: listening on http://%s:%u/ (router admin %s, files %s%s)", host,
              (unsigned) server_port (server), admin, settings.static_dir,
              *password ? ", password required" : "");
    //  czmq's handler sets zsys_interrupted on SIGINT/SIGTERM.
    while (!zsys_interrupted) {
        sampler_tick (sampler);
        for (int waited = 0; waited < interval_ms && !zsys_interrupted; waited += 50)
            zclock_sleep (50);
    }
    log_info ("web: stopping");
    server_destroy (&server);
    sampler_destroy (&sampler);
    return program_end (&program, 0);
}
