/*  fences — the schedulers' fencing tokens, one per scope. See fences.h.

    A zhashx by scope owns one uint64_t per scope. A token of 0 means
    "forgotten" in the store (FENCE_RESET writes 0 rather than deleting the
    row, so a reset joins the ordinary write batch).
*/
#include "fences.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "log.h"

struct fences_t {
    store_t *store;      // borrowed
    zhashx_t *by_scope;  // scope -> uint64_t * (owned)
};

//  The meta key of a scope: "fence" for the legacy scope (what routers
//  before scopes wrote), "fence:<scope>" for the others.
static void
s_key (const char *scope, char *buf, size_t size)
{
    snprintf (buf, size, *scope ? "fence:%s" : "fence", scope);
}

static int
s_keep (fences_t *self, const char *scope, uint64_t token)
{
    uint64_t *held = (uint64_t *) zhashx_lookup (self->by_scope, scope);
    if (held) {
        *held = token;
        return 0;
    }
    held = (uint64_t *) malloc (sizeof *held);
    if (!held)
        return -1;
    *held = token;
    zhashx_update (self->by_scope, scope, held);
    return 0;
}

static void
s_load_one (const char *key, int64_t value, void *arg)
{
    fences_t *self = (fences_t *) arg;
    const char *scope = NULL;
    if (streq (key, "fence"))
        scope = "";
    else if (strncmp (key, "fence:", 6) == 0)
        scope = key + 6;
    //  Forgotten scopes (0) and other keys sharing the prefix are not ours.
    if (!scope || value <= 0 || zhashx_size (self->by_scope) >= FENCES_SCOPES_MAX)
        return;
    if (s_keep (self, scope, (uint64_t) value))
        log_error ("fences: out of memory loading scope '%s'", scope);
}

fences_t *
fences_new (store_t *store, char *err, size_t errlen)
{
    assert (store);
    fences_t *self = (fences_t *) calloc (1, sizeof (fences_t));
    if (!self || !(self->by_scope = zhashx_new ())) {
        snprintf (err, errlen, "out of memory");
        fences_destroy (&self);
        return NULL;
    }
    self->store = store;
    zhashx_set_destructor (self->by_scope, (zhashx_destructor_fn *) zstr_free);
    if (store_meta_list (store, "fence", s_load_one, self)) {
        snprintf (err, errlen, "cannot read the fencing tokens: %s", store_error (store));
        fences_destroy (&self);
        return NULL;
    }
    return self;
}

void
fences_destroy (fences_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fences_t *self = *self_p;
    zhashx_destroy (&self->by_scope);
    free (self);
    *self_p = NULL;
}

fences_verdict_t
fences_check (fences_t *self, const char *scope, uint64_t token, uint64_t *held)
{
    assert (self && scope && held);
    uint64_t *current = (uint64_t *) zhashx_lookup (self->by_scope, scope);
    *held = current ? *current : 0;
    if (token > INT64_MAX)
        return FENCES_TOO_LARGE;
    if (!current && zhashx_size (self->by_scope) >= FENCES_SCOPES_MAX)
        return FENCES_FULL;
    if (token < *held)
        return FENCES_STALE;
    if (token > *held) {
        char key[HEADERS_SCOPE_MAX + 16];
        s_key (scope, key, sizeof key);
        if (s_keep (self, scope, token))
            log_error ("fences: out of memory keeping scope '%s'", scope);
        else if (store_meta_set (self->store, key, (int64_t) token))
            log_error ("store: %s", store_error (self->store));
    }
    return FENCES_OK;
}

size_t
fences_reset (fences_t *self, const char *scope)
{
    assert (self && scope);
    zlistx_t *names = zhashx_keys (self->by_scope);
    size_t count = 0;
    for (const char *name = names ? (const char *) zlistx_first (names) : NULL; name;
         name = (const char *) zlistx_next (names)) {
        if (!streq (scope, "*") && !streq (scope, name))
            continue;
        char key[HEADERS_SCOPE_MAX + 16];
        s_key (name, key, sizeof key);
        if (store_meta_set (self->store, key, 0))
            log_error ("store: %s", store_error (self->store));
        zhashx_delete (self->by_scope, name);
        count++;
    }
    zlistx_destroy (&names);
    return count;
}

char *
fences_json (fences_t *self)
{
    assert (self);
    json_t *list = json_array ();
    zlistx_t *names = zhashx_keys (self->by_scope);
    if (!list || !names) {
        json_decref (list);
        zlistx_destroy (&names);
        return NULL;
    }
    zlistx_set_comparator (names, (zlistx_comparator_fn *) strcmp);
    zlistx_sort (names);
    for (const char *name = (const char *) zlistx_first (names); name;
         name = (const char *) zlistx_next (names)) {
        uint64_t token = *(uint64_t *) zhashx_lookup (self->by_scope, name);
        json_array_append_new (
            list, json_pack ("{s:s, s:I}", "scope", name, "token", (json_int_t) token));
    }
    zlistx_destroy (&names);
    json_t *root = json_pack ("{s:o}", "fences", list);
    char *text = root ? json_dumps (root, JSON_COMPACT) : NULL;
    json_decref (root);
    return text;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
fences_test (bool verbose)
{
    if (verbose)
        printf (" * fences: ");
    char err[256];
    store_t *store = store_open (":memory:", STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    //  A store of a router from before scopes: its token is the legacy scope's.
    CHECK_EQ (store_meta_set (store, "fence", 1700000000000000LL), 0);
    fences_t *fences = fences_new (store, err, sizeof err);
    CHECK (fences != NULL);
    uint64_t held = 0;
    CHECK_EQ (fences_check (fences, "", 5, &held), FENCES_STALE);
    CHECK_EQ (held, 1700000000000000ULL);
    //  The local lock's microseconds do not fence etcd's small revisions.
    CHECK_EQ (fences_check (fences, "etcd:abc", 5, &held), FENCES_OK);
    CHECK_EQ (held, 0);
    CHECK_EQ (fences_check (fences, "etcd:abc", 4, &held), FENCES_STALE);
    CHECK_EQ (held, 5);
    CHECK_EQ (fences_check (fences, "etcd:abc", 5, &held), FENCES_OK);
    //  A rebuilt etcd (a new cluster id) starts its own scope.
    CHECK_EQ (fences_check (fences, "etcd:def", 2, &held), FENCES_OK);
    CHECK_EQ (fences_check (fences, "etcd:def", (uint64_t) INT64_MAX + 1, &held),
              FENCES_TOO_LARGE);
    char *json = fences_json (fences);
    CHECK_STREQ (json, "{\"fences\":[{\"scope\":\"\",\"token\":1700000000000000},"
                       "{\"scope\":\"etcd:abc\",\"token\":5},"
                       "{\"scope\":\"etcd:def\",\"token\":2}]}");
    free (json);
    //  Kept in the store: a new fences_t (a restarted router) has them.
    fences_destroy (&fences);
    fences = fences_new (store, err, sizeof err);
    CHECK_EQ (fences_check (fences, "etcd:abc", 4, &held), FENCES_STALE);
    //  Reset: one scope, then all; a reset scope takes any token again.
    CHECK_EQ (fences_reset (fences, "etcd:abc"), 1);
    CHECK_EQ (fences_reset (fences, "etcd:abc"), 0);
    CHECK_EQ (fences_check (fences, "etcd:abc", 1, &held), FENCES_OK);
    CHECK_EQ (fences_reset (fences, "*"), 3);
    CHECK_EQ (fences_check (fences, "", 1, &held), FENCES_OK);
    fences_destroy (&fences);
    fences = fences_new (store, err, sizeof err);
    CHECK_EQ (fences_check (fences, "etcd:def", 1, &held), FENCES_OK);
    CHECK_EQ (held, 0);
    //  Scopes are capped.
    char scope[32];
    for (int i = 0; i < FENCES_SCOPES_MAX + 1; i++) {
        snprintf (scope, sizeof scope, "s%d", i);
        fences_verdict_t v = fences_check (fences, scope, 1, &held);
        //  Two scopes ("" and etcd:def) are held already.
        CHECK_EQ (v, i < FENCES_SCOPES_MAX - 2 ? FENCES_OK : FENCES_FULL);
    }
    fences_destroy (&fences);
    CHECK (fences == NULL);
    store_close (&store);
    if (verbose)
        printf ("OK\n");
}
