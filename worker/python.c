/*  python — the worker's side of python jobs. See python.h.

    State per worker: not loaded -> loaded and started (every later job goes
    straight to the interpreter) or failed (the reason is kept, each python
    job fails with it, and the worker asks to be replaced once).
*/
#include "python.h"
#include "emq-paths.h"
#include "log.h"
#include "tests/testutil.h"

#include <assert.h>
#include <dlfcn.h>
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct python_t {
    const emq_python_config_t *config;  // borrowed
    emq_python_call_fn *call;           // set once started
    char failure[1024];                 // set when starting failed
};

python_t *
python_new (const emq_python_config_t *config)
{
    assert (config);
    python_t *self = calloc (1, sizeof *self);
    if (self)
        self->config = config;
    return self;
}

void
python_destroy (python_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

void
python_plugin_path (char *path, size_t pathlen)
{
    const char *forced = getenv ("EMQ_PYTHON_PLUGIN");
    if (forced && *forced) {
        snprintf (path, pathlen, "%s", forced);
        return;
    }
    //  Next to the program (the build tree, or an install with the default
    //  LIBDIR), else where make install put it.
    char exe[PATH_MAX];
    ssize_t size = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (size > 0) {
        exe[size] = 0;
        char *slash = strrchr (exe, '/');
        if (slash)
            *slash = 0;
        snprintf (path, pathlen, "%s/../lib/emq/emq_python.so", exe);
        if (access (path, R_OK) == 0)
            return;
    }
    snprintf (path, pathlen, "%s/emq/emq_python.so", EMQ_LIBDIR);
}

//  Loads the plugin and starts the interpreter; on failure keeps the reason.
static void
s_start (python_t *self)
{
    char path[PATH_MAX + 64];
    python_plugin_path (path, sizeof path);
    //  RTLD_LOCAL: the plugin's own symbols stay out of the way of C jobs.
    void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *reason = dlerror ();
        snprintf (self->failure, sizeof self->failure, "cannot load %.400s: %.500s", path,
                  reason ? reason : "?");
        return;
    }
    emq_python_init_fn *init = (emq_python_init_fn *) dlsym (handle, "emq_python_init");
    emq_python_call_fn *call = (emq_python_call_fn *) dlsym (handle, "emq_python_call");
    if (!init || !call) {
        snprintf (self->failure, sizeof self->failure,
                  "%.400s is not emq's python plugin", path);
        return;
    }
    char err[sizeof self->failure - 16], warning[4096];
    if (init (self->config, err, sizeof err, warning, sizeof warning)) {
        snprintf (self->failure, sizeof self->failure, "python: %s", err);
        return;
    }
    if (*warning)
        log_warning ("worker %d: python_setup %s raised, going on without it (as "
                     "EventMQ does): %s",
                     getpid (), self->config->setup, warning);
    self->call = call;
}

static int
s_text (wire_msg_t *outcome, emqp_status_t status, const char *text, size_t size)
{
    outcome->status = status;
    return wire_msg_set_bytes (&outcome->value, &outcome->value_size, text, size);
}

int
python_run (python_t *self, const payload_t *payload, wire_msg_t *outcome, bool *broken)
{
    assert (self && payload && payload->kind == PAYLOAD_PYTHON && outcome && broken);
    if (self->config->allow_count == 0) {
        const char *text = "python jobs are disabled: python_allow is empty";
        return s_text (outcome, EMQP_STATUS_REJECTED, text, strlen (text));
    }
    if (!self->call && !*self->failure) {
        s_start (self);
        //  A half-started interpreter is not to be trusted with more jobs.
        if (*self->failure)
            *broken = true;
    }
    if (!self->call)
        return s_text (outcome, EMQP_STATUS_FAILED, self->failure,
                       strlen (self->failure));

    emq_python_call_t call = { .path = payload->py_path,
                               .callable = payload->py_callable,
                               .args = payload->py_args };
    self->call (&call);
    if (!call.text)
        return -1;
    int rc;
    if (call.status == EMQP_STATUS_OK) {
        //  The value is EventMQ's reply JSON, as a msgpack str: what an emq
        //  client also gets from an EventMQ job manager's REPLY.
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        rc = msgpack_pack_str (&pk, call.size)
                     || msgpack_pack_str_body (&pk, call.text, call.size)
                 ? -1
                 : s_text (outcome, EMQP_STATUS_OK, sbuf.data, sbuf.size);
        msgpack_sbuffer_destroy (&sbuf);
    }
    else
        rc = s_text (outcome, (emqp_status_t) call.status, call.text, call.size);
    free (call.text);
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test: the plugin from the build tree, run in a forked child (an
//  interpreter, once started, stays in the process).

void
python_test (bool verbose)
{
    if (verbose)
        printf (" * python: ");
    char path[PATH_MAX + 64];
    python_plugin_path (path, sizeof path);
    REQUIRE (strstr (path, "emq_python.so"));

    //  Disabled: nothing is loaded, the job is refused.
    emq_python_config_t none = { 0 };
    python_t *python = python_new (&none);
    REQUIRE (python);
    payload_t payload = { .kind = PAYLOAD_PYTHON,
                          .py_path = "json",
                          .py_callable = "dumps",
                          .py_args = "{\"args\":[[1,2]],\"kwargs\":{},\"class_args\":[],"
                                     "\"class_kwargs\":{}}" };
    wire_msg_t *outcome = wire_msg_new (WIRE_OUTCOME);
    bool broken = false;
    REQUIRE (python_run (python, &payload, outcome, &broken) == 0);
    REQUIRE (outcome->status == EMQP_STATUS_REJECTED && !broken);
    REQUIRE (memmem (outcome->value, outcome->value_size, "disabled", 8));
    python_destroy (&python);
    REQUIRE (python == NULL);

    //  A missing plugin fails the job and marks the worker broken.
    setenv ("EMQ_PYTHON_PLUGIN", "/nonexistent/emq_python.so", 1);
    char *all[] = { "*" };
    emq_python_config_t config = { .allow = all, .allow_count = 1 };
    python = python_new (&config);
    REQUIRE (python_run (python, &payload, outcome, &broken) == 0);
    REQUIRE (outcome->status == EMQP_STATUS_FAILED && broken);
    REQUIRE (memmem (outcome->value, outcome->value_size, "cannot load", 11));
    python_destroy (&python);
    unsetenv ("EMQ_PYTHON_PLUGIN");
    wire_msg_destroy (&outcome);
    if (verbose)
        printf ("OK\n");
}
