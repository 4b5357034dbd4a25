/*  plugin — `run` jobs. See plugin.h.

    The cache is a short list (a worker loads a handful of libraries), one
    entry per library name a job gave. A name is resolved (and checked to
    stay inside the plugin dirs) the first time only: the worker keeps what
    it loaded then, as it keeps the handle, so later jobs cost no system
    call. Two names for one file get one dlopen reference each.
*/
#include "plugin.h"
#include "tests/testutil.h"

#include <assert.h>
#include <ctype.h>
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct s_library_t {
    char *name;    // the name jobs use
    char *path;    // real path
    void *handle;  // from dlopen
    struct s_library_t *next;
} s_library_t;

struct plugin_cache_t {
    char *const *dirs;  // borrowed
    size_t dir_count;
    s_library_t *libraries;  // owned list
};

plugin_cache_t *
plugin_cache_new (char *const *dirs, size_t dir_count)
{
    plugin_cache_t *self = calloc (1, sizeof *self);
    if (self) {
        self->dirs = dirs;
        self->dir_count = dir_count;
    }
    return self;
}

void
plugin_cache_destroy (plugin_cache_t **self_p)
{
    assert (self_p);
    plugin_cache_t *self = *self_p;
    if (!self)
        return;
    while (self->libraries) {
        s_library_t *library = self->libraries;
        self->libraries = library->next;
        dlclose (library->handle);
        free (library->name);
        free (library->path);
        free (library);
    }
    free (self);
    *self_p = NULL;
}

int
plugin_resolve (char *const *dirs, size_t dir_count, const char *library, char *path,
                size_t pathlen, char *err, size_t errlen)
{
    if (!library || !*library || strchr (library, '/') || streq (library, ".")
        || streq (library, "..")) {
        snprintf (err, errlen, "library '%s' must be a plain file name (no '/')",
                  library ? library : "");
        return -1;
    }
    if (dir_count == 0) {
        snprintf (err, errlen, "run jobs are disabled: no plugin_dirs configured");
        return -1;
    }
    for (size_t i = 0; i < dir_count; i++) {
        char real_dir[PATH_MAX];
        if (!realpath (dirs[i], real_dir))
            continue;  // a missing directory is skipped, as PATH does
        char candidate[PATH_MAX];
        if (snprintf (candidate, sizeof candidate, "%s/%s", real_dir, library)
            >= (int) sizeof candidate)
            continue;
        char real[PATH_MAX];
        if (!realpath (candidate, real))
            continue;
        size_t dirlen = strlen (real_dir);
        //  The root directory as a plugin dir is silly but consistent.
        bool inside = streq (real_dir, "/")
                          ? real[0] == '/'
                          : strncmp (real, real_dir, dirlen) == 0 && real[dirlen] == '/';
        if (!inside) {
            snprintf (err, errlen,
                      "library '%s' resolves to '%s', outside plugin dir '%s'", library,
                      real, dirs[i]);
            return -1;
        }
        struct stat st;
        if (stat (real, &st) || !S_ISREG (st.st_mode)) {
            snprintf (err, errlen, "library '%s' is not a regular file", real);
            return -1;
        }
        if (strlen (real) + 1 > pathlen) {
            snprintf (err, errlen, "library path too long");
            return -1;
        }
        strcpy (path, real);
        return 0;
    }
    snprintf (err, errlen, "library '%s' not found in the plugin dirs", library);
    return -1;
}

void *
plugin_symbol (plugin_cache_t *self, const char *library, const char *symbol, char *err,
               size_t errlen)
{
    assert (self);
    s_library_t *entry = self->libraries;
    while (entry && library && !streq (entry->name, library))
        entry = entry->next;
    char path[PATH_MAX];
    if (!entry
        && plugin_resolve (self->dirs, self->dir_count, library, path, sizeof path, err,
                           errlen))
        return NULL;
    if (!entry) {
        void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            const char *reason = dlerror ();
            snprintf (err, errlen, "cannot load '%s': %s", path, reason ? reason : "?");
            return NULL;
        }
        entry = calloc (1, sizeof *entry);
        if (!entry || !(entry->path = strdup (path))
            || !(entry->name = strdup (library))) {
            if (entry)
                free (entry->path);
            free (entry);
            dlclose (handle);
            snprintf (err, errlen, "out of memory");
            return NULL;
        }
        entry->handle = handle;
        entry->next = self->libraries;
        self->libraries = entry;
    }
    if (!symbol || !*symbol) {
        snprintf (err, errlen, "no function name given");
        return NULL;
    }
    dlerror ();
    void *address = dlsym (entry->handle, symbol);
    if (!address) {
        snprintf (err, errlen, "function '%s' not found in '%s'", symbol, library);
        return NULL;
    }
    //  dlsym on a handle also searches the library's dependencies (libc's
    //  fork, abort...): only a symbol defined in the library itself counts.
    struct link_map *own = NULL, *found = NULL;
    Dl_info info;
    if (dlinfo (entry->handle, RTLD_DI_LINKMAP, &own) || !own
        || !dladdr1 (address, &info, (void **) &found, RTLD_DL_LINKMAP) || found != own) {
        snprintf (
            err, errlen, "function '%s' is not defined in '%s' (%s)", symbol, library,
            found && found->l_name && *found->l_name ? found->l_name
                                                     : "resolved from another object");
        return NULL;
    }
    return address;
}

//  A job function name: a C identifier, at most PLUGIN_FUNCTION_MAX bytes.
static bool
s_is_function_name (const char *name)
{
    if (!name || !*name || strlen (name) > PLUGIN_FUNCTION_MAX
        || !(isalpha ((unsigned char) name[0]) || name[0] == '_'))
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && *p != '_')
            return false;
    return true;
}

void *
plugin_job_function (plugin_cache_t *self, const char *library, const char *function,
                     char *err, size_t errlen)
{
    assert (self);
    if (!s_is_function_name (function)) {
        snprintf (err, errlen,
                  "function name is not a C identifier of at most %d characters",
                  PLUGIN_FUNCTION_MAX);
        return NULL;
    }
    char symbol[sizeof PLUGIN_JOB_PREFIX + PLUGIN_FUNCTION_MAX];
    snprintf (symbol, sizeof symbol, "%s%s", PLUGIN_JOB_PREFIX, function);
    void *address = plugin_symbol (self, library, symbol, err, errlen);
    if (!address && strstr (err, "not found in"))
        snprintf (err, errlen,
                  "'%s' exports no job function '%s' (no symbol " PLUGIN_JOB_PREFIX "%s)",
                  library, function, function);
    return address;
}

int
plugin_spec_parse (const char *spec, char *lib, size_t liblen, char *fn, size_t fnlen)
{
    const char *colon = spec ? strrchr (spec, ':') : NULL;
    if (!colon || colon == spec || !colon[1])
        return -1;
    size_t size = (size_t) (colon - spec);
    if (size + 1 > liblen || strlen (colon + 1) + 1 > fnlen)
        return -1;
    memcpy (lib, spec, size);
    lib[size] = 0;
    strcpy (fn, colon + 1);
    if (strchr (lib, '/'))
        return -1;
    return 0;
}

//  Sets the outcome to status with a text value.
static int
s_outcome_text (wire_msg_t *outcome, emqp_status_t status, const char *text)
{
    outcome->status = status;
    return wire_msg_set_bytes (&outcome->value, &outcome->value_size, text,
                               strlen (text));
}

int
plugin_run (plugin_cache_t *self, const payload_t *payload, emq_job_t *job,
            wire_msg_t *outcome)
{
    assert (self && payload && job && outcome);
    char err[512];
    emq_job_fn *fn = (emq_job_fn *) plugin_job_function (
        self, payload->library, payload->function, err, sizeof err);
    if (!fn)
        return s_outcome_text (outcome, EMQP_STATUS_REJECTED, err);

    msgpack_unpacked args;
    msgpack_unpacked_init (&args);
    msgpack_object nil = { .type = MSGPACK_OBJECT_NIL };
    const msgpack_object *argp = &nil;
    if (payload->args_size) {
        size_t offset = 0;
        if (msgpack_unpack_next (&args, payload->args, payload->args_size, &offset)
                != MSGPACK_UNPACK_SUCCESS
            || offset != payload->args_size) {
            msgpack_unpacked_destroy (&args);
            return s_outcome_text (outcome, EMQP_STATUS_REJECTED,
                                   "arguments are not one msgpack value");
        }
        argp = &args.data;
    }
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    job->error[0] = 0;
    int rc = fn (job, argp, &pk);
    msgpack_unpacked_destroy (&args);

    int result;
    if (rc != 0) {
        if (job->error[0])
            result = s_outcome_text (outcome, EMQP_STATUS_FAILED, job->error);
        else {
            snprintf (err, sizeof err, "%s:%s returned %d", payload->library,
                      payload->function, rc);
            result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
        }
    }
    else {
        //  Exactly one object: count what the function packed.
        size_t offset = 0, count = 0;
        msgpack_unpacked check;
        msgpack_unpacked_init (&check);
        while (offset < sbuf.size
               && msgpack_unpack_next (&check, sbuf.data, sbuf.size, &offset)
                      == MSGPACK_UNPACK_SUCCESS)
            count++;
        msgpack_unpacked_destroy (&check);
        if (count != 1 || offset != sbuf.size) {
            snprintf (err, sizeof err, "%s:%s packed %zu objects%s, expected exactly one",
                      payload->library, payload->function, count,
                      offset != sbuf.size ? " and an incomplete one" : "");
            result = s_outcome_text (outcome, EMQP_STATUS_FAILED, err);
        }
        else {
            outcome->status = EMQP_STATUS_OK;
            result = wire_msg_set_bytes (&outcome->value, &outcome->value_size, sbuf.data,
                                         sbuf.size);
        }
    }
    msgpack_sbuffer_destroy (&sbuf);
    return result;
}

//  --------------------------------------------------------------------------
//  Self test

void
plugin_test (bool verbose)
{
    if (verbose)
        printf (" * plugin: ");
    char err[512], path[PATH_MAX];

    //  A plugin dir with one library, a symlink inside, one pointing out.
    char base[] = "/tmp/emq-plugin-test-XXXXXX";
    REQUIRE (mkdtemp (base));
    char dir[256], outside[256], file[PATH_MAX], link[PATH_MAX];
    snprintf (dir, sizeof dir, "%s/plugins", base);
    snprintf (outside, sizeof outside, "%s/evil.so", base);
    REQUIRE (mkdir (dir, 0700) == 0);
    FILE *f = fopen (outside, "w");
    REQUIRE (f && fclose (f) == 0);
    snprintf (file, sizeof file, "%s/good.so", dir);
    f = fopen (file, "w");
    REQUIRE (f && fclose (f) == 0);
    snprintf (link, sizeof link, "%s/escape.so", dir);
    REQUIRE (symlink ("../evil.so", link) == 0);
    snprintf (link, sizeof link, "%s/alias.so", dir);
    REQUIRE (symlink ("good.so", link) == 0);

    char *dirs[] = { "/nonexistent-emq-dir", dir };
    REQUIRE (plugin_resolve (dirs, 2, "good.so", path, sizeof path, err, sizeof err)
             == 0);
    REQUIRE (strstr (path, "/plugins/good.so"));
    REQUIRE (plugin_resolve (dirs, 2, "alias.so", path, sizeof path, err, sizeof err)
             == 0);
    REQUIRE (strstr (path, "/plugins/good.so"));
    REQUIRE (plugin_resolve (dirs, 2, "../evil.so", path, sizeof path, err, sizeof err)
             == -1);
    REQUIRE (strstr (err, "plain file name"));
    REQUIRE (plugin_resolve (dirs, 2, outside, path, sizeof path, err, sizeof err) == -1);
    REQUIRE (plugin_resolve (dirs, 2, "..", path, sizeof path, err, sizeof err) == -1);
    REQUIRE (plugin_resolve (dirs, 2, "", path, sizeof path, err, sizeof err) == -1);
    REQUIRE (plugin_resolve (dirs, 2, "escape.so", path, sizeof path, err, sizeof err)
             == -1);
    REQUIRE (strstr (err, "outside"));
    REQUIRE (plugin_resolve (dirs, 2, "missing.so", path, sizeof path, err, sizeof err)
             == -1);
    REQUIRE (strstr (err, "not found"));
    REQUIRE (plugin_resolve (dirs, 0, "good.so", path, sizeof path, err, sizeof err)
             == -1);
    REQUIRE (strstr (err, "disabled"));

    //  Hook specs.
    char lib[64], fn[64];
    REQUIRE (plugin_spec_parse ("libx.so:setup", lib, sizeof lib, fn, sizeof fn) == 0);
    REQUIRE (streq (lib, "libx.so") && streq (fn, "setup"));
    REQUIRE (plugin_spec_parse ("libx.so", lib, sizeof lib, fn, sizeof fn) == -1);
    REQUIRE (plugin_spec_parse (":fn", lib, sizeof lib, fn, sizeof fn) == -1);
    REQUIRE (plugin_spec_parse ("lib:", lib, sizeof lib, fn, sizeof fn) == -1);
    REQUIRE (plugin_spec_parse ("a/b.so:fn", lib, sizeof lib, fn, sizeof fn) == -1);

    //  An empty file is not a loadable library: rejected with dlopen's reason.
    plugin_cache_t *cache = plugin_cache_new (dirs, 2);
    REQUIRE (cache);
    REQUIRE (plugin_symbol (cache, "good.so", "x", err, sizeof err) == NULL);
    REQUIRE (strstr (err, "cannot load"));

    //  The example plugin, when built (make builds it before the tests).
    const char *build = getenv ("BUILD") ? getenv ("BUILD") : "build";
    char plugdir[256];
    snprintf (plugdir, sizeof plugdir, "%.200s/plugins", build);
    snprintf (path, sizeof path, "%s/libemq_examples.so", plugdir);
    if (access (path, R_OK) == 0) {
        char *exdirs[] = { plugdir };
        plugin_cache_t *examples = plugin_cache_new (exdirs, 1);
        emq_job_t job = { .msgid = "m1", .queue = "q", .attempt = 1 };
        payload_t payload = { .kind = PAYLOAD_RUN,
                              .library = "libemq_examples.so",
                              .function = "upper",
                              .args = "\xa3"
                                      "abc",
                              .args_size = 4 };
        wire_msg_t *outcome = wire_msg_new (WIRE_OUTCOME);
        REQUIRE (plugin_run (examples, &payload, &job, outcome) == 0);
        REQUIRE (outcome->status == EMQP_STATUS_OK);
        REQUIRE (outcome->value_size == 4
                 && memcmp (outcome->value,
                            "\xa3"
                            "ABC",
                            4)
                        == 0);
        payload.function = "fail";
        REQUIRE (plugin_run (examples, &payload, &job, outcome) == 0);
        REQUIRE (outcome->status == EMQP_STATUS_FAILED);
        payload.function = "no_such_function";
        REQUIRE (plugin_run (examples, &payload, &job, outcome) == 0);
        REQUIRE (outcome->status == EMQP_STATUS_REJECTED);
        REQUIRE (memmem (outcome->value, outcome->value_size, "no job function", 15));
        payload.function = "add";
        payload.args = "\x93\x01\x02\x03";
        REQUIRE (plugin_run (examples, &payload, &job, outcome) == 0);
        REQUIRE (outcome->status == EMQP_STATUS_OK);
        REQUIRE (outcome->value_size == 1 && outcome->value[0] == 6);
        payload.args = "\x93\x01";  // truncated arguments
        payload.args_size = 2;
        REQUIRE (plugin_run (examples, &payload, &job, outcome) == 0);
        REQUIRE (outcome->status == EMQP_STATUS_REJECTED);

        //  Only what the library exports as jobs: not libc's functions it
        //  resolves (fork would duplicate the worker, abort kill it), not
        //  a full symbol name, not a name that is no identifier.
        const char *refused[] = { "fork",   "abort",    "getpid", "emq_run_upper",
                                  "upper;", "../upper", "" };
        payload.args = "\xc0";
        payload.args_size = 1;
        for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
            payload.function = (char *) refused[i];
            REQUIRE (plugin_run (examples, &payload, &job, outcome) == 0);
            CHECK (outcome->status == EMQP_STATUS_REJECTED);
        }
        //  The lookup itself refuses a symbol from a dependency.
        CHECK (plugin_symbol (examples, "libemq_examples.so", "getpid", err, sizeof err)
               == NULL);
        CHECK_CONTAINS (err, "is not defined in 'libemq_examples.so'");
        CHECK (plugin_symbol (examples, "libemq_examples.so", "emq_run_noop", err,
                              sizeof err)
               != NULL);
        wire_msg_destroy (&outcome);
        plugin_cache_destroy (&examples);

        //  A name is resolved once per cache: a copy loaded as "copy.so"
        //  keeps serving after the file is gone (no lookup per job).
        char copy[PATH_MAX];
        snprintf (copy, sizeof copy, "%s/copy.so", dir);
        FILE *in = fopen (path, "rb"), *out = fopen (copy, "wb");
        REQUIRE (in && out);
        char block[4096];
        size_t n;
        while ((n = fread (block, 1, sizeof block, in)) > 0)
            REQUIRE (fwrite (block, 1, n, out) == n);
        REQUIRE (fclose (in) == 0 && fclose (out) == 0);
        plugin_cache_t *copies = plugin_cache_new (dirs, 2);
        void *first = plugin_symbol (copies, "copy.so", "emq_run_upper", err, sizeof err);
        REQUIRE (first);
        REQUIRE (unlink (copy) == 0);
        REQUIRE (plugin_symbol (copies, "copy.so", "emq_run_upper", err, sizeof err)
                 == first);
        REQUIRE (plugin_symbol (copies, "copy.so", "no_such", err, sizeof err) == NULL);
        REQUIRE (strstr (err, "not found"));
        plugin_cache_destroy (&copies);
    }
    else if (verbose)
        printf ("(%s not built, example calls skipped) ", path);

    plugin_cache_destroy (&cache);
    REQUIRE (cache == NULL);
    snprintf (link, sizeof link, "%s/escape.so", dir);
    unlink (link);
    snprintf (link, sizeof link, "%s/alias.so", dir);
    unlink (link);
    unlink (file);
    unlink (outside);
    rmdir (dir);
    rmdir (base);
    if (verbose)
        printf ("OK\n");
}
