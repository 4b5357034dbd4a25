/*  settings — the job manager's typed settings. See settings.h. */
#include "settings.h"
#include "curve.h"
#include "tests/testutil.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int64_t
s_seconds_ms (double seconds)
{
    return (int64_t) (seconds * 1000.0 + 0.5);
}

//  Builds the worker configuration from settings. Returns NULL with the
//  reason in err.
static worker_config_t *
s_worker_config (config_t *config, char *err, size_t errlen)
{
    worker_config_t *wconfig = worker_config_new ();
    if (!wconfig) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < config_list_size (config, "plugin_dirs"); i++)
        if (worker_config_add_plugin_dir (wconfig,
                                          config_list_item (config, "plugin_dirs", i)))
            goto oom;
    for (size_t i = 0; i < config_list_size (config, "exec_allow"); i++)
        if (worker_config_add_exec_allow (wconfig,
                                          config_list_item (config, "exec_allow", i)))
            goto oom;
    static const char *hooks[] = { "setup", "job_entry", "job_exit" };
    for (size_t i = 0; i < 3; i++)
        if (worker_config_set_hook (wconfig, hooks[i], config_str (config, hooks[i]), err,
                                    errlen)) {
            worker_config_destroy (&wconfig);
            return NULL;
        }
    wconfig->max_job_count = (uint64_t) config_int (config, "max_job_count");
    wconfig->max_rss_kb = (uint64_t) config_int (config, "max_worker_rss_kb");
    return wconfig;
oom:
    snprintf (err, errlen, "out of memory");
    worker_config_destroy (&wconfig);
    return NULL;
}

//  Checks the queues JSON: an array of [integer weight, "name"].
static int
s_check_queues (const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *queues = json_loads (text, 0, &jerr);
    int rc = -1;
    if (!queues)
        snprintf (err, errlen, "queues: '%s' is not JSON: %s", text, jerr.text);
    else if (!json_is_array (queues) || json_array_size (queues) == 0)
        snprintf (err, errlen, "queues: '%s' is not a non-empty array", text);
    else {
        size_t index;
        json_t *pair;
        rc = 0;
        json_array_foreach (queues, index, pair)
        {
            if (!json_is_array (pair) || json_array_size (pair) != 2
                || !json_is_integer (json_array_get (pair, 0))
                || !json_is_string (json_array_get (pair, 1))
                || !*json_string_value (json_array_get (pair, 1))) {
                snprintf (err, errlen,
                          "queues: item %zu of '%s' is not [weight, \"name\"]", index + 1,
                          text);
                rc = -1;
                break;
            }
        }
    }
    json_decref (queues);
    return rc;
}

//  Copies the strings; returns 0, or -1 when out of memory.
static int
s_copy_strings (jobmanager_settings_t *self, config_t *config)
{
    struct {
        char **field;
        const char *name;
    } strings[] = { { &self->backend_addr, "backend_addr" },
                    { &self->queues, "queues" },
                    { &self->name, "name" },
                    { &self->log_level_name, "log_level" },
                    { &self->log_format, "log_format" },
                    { &self->curve_server_key, "curve_server_key" },
                    { &self->curve_cert, "curve_cert" } };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (!(*strings[i].field = strdup (config_str (config, strings[i].name))))
            return -1;
    self->failover_count = config_list_size (config, "backend_failover_addrs");
    self->failover_addrs = calloc (self->failover_count + 1, sizeof (char *));
    if (!self->failover_addrs)
        return -1;
    for (size_t i = 0; i < self->failover_count; i++)
        if (!(self->failover_addrs[i] =
                  strdup (config_list_item (config, "backend_failover_addrs", i))))
            return -1;
    return 0;
}

jobmanager_settings_t *
jobmanager_settings_new (config_t *config, char *err, size_t errlen)
{
    assert (config);
    jobmanager_settings_t *self = calloc (1, sizeof *self);
    if (!self || s_copy_strings (self, config)) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    if (s_check_queues (self->queues, err, errlen))
        goto fail;
    //  Bad CURVE keys are said now, not at each reconnect.
    char reason[512];
    if (*self->curve_server_key
        && curve_client_check (self->curve_server_key, self->curve_cert, reason,
                               sizeof reason)) {
        snprintf (err, errlen, "CURVE: %s", reason);
        goto fail;
    }
    if (log_level_parse (self->log_level_name, &self->log_level)) {
        snprintf (err, errlen, "log_level: '%s' is not a level", self->log_level_name);
        goto fail;
    }
    if (!(self->worker = s_worker_config (config, err, errlen)))
        goto fail;
    self->concurrent_jobs = (size_t) config_int (config, "concurrent_jobs");
    self->heartbeat_interval_ms =
        s_seconds_ms (config_double (config, "heartbeat_interval"));
    self->heartbeat_timeout_ms =
        s_seconds_ms (config_double (config, "heartbeat_timeout"));
    self->heartbeat_liveness = config_int (config, "heartbeat_liveness");
    self->kill_grace_ms = s_seconds_ms (config_double (config, "kill_grace_period"));
    self->prefetch_hold_ms = config_int (config, "prefetch_hold_ms");
    self->default_timeout_s = (uint32_t) config_int (config, "default_timeout");
    self->payload_max = (size_t) config_int (config, "max_message_size");
    return self;
fail:
    jobmanager_settings_destroy (&self);
    return NULL;
}

void
jobmanager_settings_destroy (jobmanager_settings_t **self_p)
{
    assert (self_p);
    jobmanager_settings_t *self = *self_p;
    if (!self)
        return;
    free (self->backend_addr);
    for (size_t i = 0; self->failover_addrs && i < self->failover_count; i++)
        free (self->failover_addrs[i]);
    free (self->failover_addrs);
    free (self->queues);
    free (self->name);
    free (self->log_level_name);
    free (self->log_format);
    free (self->curve_server_key);
    free (self->curve_cert);
    worker_config_destroy (&self->worker);
    free (self);
    *self_p = NULL;
}

const char *
jobmanager_settings_backend (const jobmanager_settings_t *self, size_t index)
{
    assert (self);
    index %= self->failover_count + 1;
    return index == 0 ? self->backend_addr : self->failover_addrs[index - 1];
}

//  --------------------------------------------------------------------------
//  Self test

//  Settings from the defaults and the NULL-terminated name/value pairs;
//  NULL with the reason in err.
static jobmanager_settings_t *
s_test_settings (const char *const *pairs, char *err, size_t errlen)
{
    config_t *config = config_new ();
    if (!config)
        return NULL;
    jobmanager_settings_t *settings = NULL;
    bool ok = true;
    for (size_t i = 0; ok && pairs && pairs[i]; i += 2)
        ok = config_set (config, pairs[i], pairs[i + 1], err, errlen) == 0;
    if (ok)
        settings = jobmanager_settings_new (config, err, errlen);
    config_destroy (&config);
    return settings;
}

void
jobmanager_settings_test (bool verbose)
{
    if (verbose)
        printf (" * jobmanager_settings: ");
    char err[512];
    CHECK (s_check_queues ("[[10,\"default\"],[5,\"b\"]]", err, sizeof err) == 0);
    CHECK (s_check_queues ("[[10]]", err, sizeof err) == -1);
    CHECK (s_check_queues ("{}", err, sizeof err) == -1);
    CHECK (s_check_queues ("[", err, sizeof err) == -1);

    //  The defaults, typed; the config can go, the settings keep their copies.
    jobmanager_settings_t *settings = s_test_settings (NULL, err, sizeof err);
    REQUIRE (settings);
    CHECK_STREQ (settings->backend_addr, "tcp://127.0.0.1:47290");
    CHECK_STREQ (settings->queues, "[[10,\"default\"]]");
    CHECK_STREQ (settings->name, "");
    CHECK_EQ (settings->concurrent_jobs, 4);
    CHECK_EQ (settings->heartbeat_interval_ms, 3000);
    CHECK_EQ (settings->heartbeat_timeout_ms, 5000);
    CHECK_EQ (settings->heartbeat_liveness, 3);
    CHECK_EQ (settings->kill_grace_ms, 300000);
    CHECK_EQ (settings->prefetch_hold_ms, 100);
    CHECK_EQ (settings->payload_max, 16777216);
    CHECK (settings->log_level == LOG_LEVEL_INFO
           && streq (settings->log_level_name, "info"));
    CHECK (settings->worker && settings->worker->max_job_count == 1024);
    CHECK (settings->worker && settings->worker->exec_allow_count == 0);
    CHECK_EQ (settings->failover_count, 0);
    CHECK_STREQ (jobmanager_settings_backend (settings, 5), "tcp://127.0.0.1:47290");
    jobmanager_settings_destroy (&settings);
    CHECK (settings == NULL);
    jobmanager_settings_destroy (&settings);

    //  Every setting the job manager reads.
    const char *pairs[] = { "backend_addr",
                            "tcp://127.0.0.1:1",
                            "backend_failover_addrs",
                            "tcp://h:2,ipc:///x",
                            "queues",
                            "[[20,\"heavy\"],[10,\"default\"]]",
                            "name",
                            "jm-a",
                            "concurrent_jobs",
                            "7",
                            "heartbeat_interval",
                            "0.2",
                            "heartbeat_timeout",
                            "1.5",
                            "heartbeat_liveness",
                            "4",
                            "kill_grace_period",
                            "0.25",
                            "prefetch_hold_ms",
                            "0",
                            "max_message_size",
                            "1k",
                            "log_level",
                            "debug",
                            "plugin_dirs",
                            "/a:/b",
                            "exec_allow",
                            "/bin/*",
                            "setup",
                            "libx.so:setup",
                            "max_job_count",
                            "0",
                            "max_worker_rss_kb",
                            "1000",
                            "global_timeout",
                            "30",
                            NULL };
    settings = s_test_settings (pairs, err, sizeof err);
    REQUIRE (settings);
    CHECK_EQ (settings->failover_count, 2);
    CHECK_STREQ (jobmanager_settings_backend (settings, 0), "tcp://127.0.0.1:1");
    CHECK_STREQ (jobmanager_settings_backend (settings, 1), "tcp://h:2");
    CHECK_STREQ (jobmanager_settings_backend (settings, 2), "ipc:///x");
    CHECK_STREQ (jobmanager_settings_backend (settings, 3), "tcp://127.0.0.1:1");
    CHECK_STREQ (settings->name, "jm-a");
    CHECK_EQ (settings->concurrent_jobs, 7);
    CHECK_EQ (settings->heartbeat_interval_ms, 200);
    CHECK_EQ (settings->heartbeat_timeout_ms, 1500);
    CHECK_EQ (settings->heartbeat_liveness, 4);
    CHECK_EQ (settings->kill_grace_ms, 250);
    CHECK_EQ (settings->prefetch_hold_ms, 0);
    CHECK_EQ (settings->default_timeout_s, 30);
    CHECK_EQ (settings->payload_max, 1024);
    CHECK_EQ (settings->log_level, LOG_LEVEL_DEBUG);
    CHECK (settings->worker->plugin_dir_count == 2
           && settings->worker->exec_allow_count == 1);
    CHECK_STREQ (settings->worker->setup, "libx.so:setup");
    CHECK (settings->worker->max_job_count == 0 && settings->worker->max_rss_kb == 1000);
    jobmanager_settings_destroy (&settings);

    //  What the config module lets through and the job manager refuses: bad
    //  CURVE keys (checked once, here).
    const char *curve[] = { "curve_server_key", "not-a-key", NULL };
    settings = s_test_settings (curve, err, sizeof err);
    CHECK (settings == NULL);
    CHECK_CONTAINS (err, "CURVE: ");
    if (verbose)
        printf ("OK\n");
}
