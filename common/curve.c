/*  curve — CURVE on emq's sockets. See curve.h.
*/
#include "curve.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct curve_server_t {
    zcert_t *cert;   // the server's key pair
    zactor_t *auth;  // zauth, or NULL when any client key is admitted
};

//  Loads a certificate file that must hold a secret key.
static zcert_t *
s_load_secret (const char *path, const char *what, char *err, size_t errlen)
{
    zcert_t *cert = zcert_load (path);
    if (!cert) {
        snprintf (err, errlen,
                  "%s '%s' cannot be read as a certificate (make one with "
                  "'emq-cli keygen NAME' and give NAME_secret)",
                  what, path);
        return NULL;
    }
    static const byte zero[32] = { 0 };
    if (memcmp (zcert_secret_key (cert), zero, sizeof zero) == 0) {
        snprintf (err, errlen,
                  "%s '%s' holds no secret key (give the NAME_secret file, "
                  "not the public one)",
                  what, path);
        zcert_destroy (&cert);
        return NULL;
    }
    return cert;
}

curve_server_t *
curve_server_new (const char *secret_cert, const char *clients_dir, char *err,
                  size_t errlen)
{
    if (!zsys_has_curve ()) {
        snprintf (err, errlen, "this libzmq has no CURVE support");
        return NULL;
    }
    curve_server_t *self = calloc (1, sizeof (curve_server_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->cert = s_load_secret (secret_cert, "curve_secret_cert", err, errlen);
    if (!self->cert) {
        curve_server_destroy (&self);
        return NULL;
    }
    if (curve_server_set_clients (self, clients_dir, err, errlen)) {
        curve_server_destroy (&self);
        return NULL;
    }
    return self;
}

int
curve_server_set_clients (curve_server_t *self, const char *clients_dir, char *err,
                          size_t errlen)
{
    assert (self);
    if (!clients_dir || !*clients_dir) {
        zactor_destroy (&self->auth);  // no ZAP handler: any key
        return 0;
    }
    DIR *dir = opendir (clients_dir);
    if (!dir) {
        snprintf (err, errlen, "curve_clients_dir '%s': %s", clients_dir,
                  strerror (errno));
        return -1;
    }
    closedir (dir);
    //  zauth's CURVE command replaces its certificate store with a fresh
    //  one read from the directory.
    bool created = !self->auth;
    if (created)
        self->auth = zactor_new (zauth, NULL);
    if (!self->auth || zstr_sendx (self->auth, "CURVE", clients_dir, NULL)
        || zsock_wait (self->auth)) {
        snprintf (err, errlen, "the CURVE authenticator did not take '%s'", clients_dir);
        //  A running one keeps its old store: never fall open to any key.
        if (created)
            zactor_destroy (&self->auth);
        return -1;
    }
    return 0;
}

void
curve_server_destroy (curve_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zactor_destroy (&(*self_p)->auth);
    zcert_destroy (&(*self_p)->cert);
    free (*self_p);
    *self_p = NULL;
}

void
curve_server_apply (curve_server_t *self, zsock_t *sock)
{
    zcert_apply (self->cert, sock);
    zsock_set_curve_server (sock, 1);
}

const char *
curve_server_public (curve_server_t *self)
{
    return zcert_public_txt (self->cert);
}

//  True for 40 characters that decode as a Z85 key.
static bool
s_is_z85_key (const char *text)
{
    if (strlen (text) != 40)
        return false;
    uint8_t key[32];
    return zmq_z85_decode (key, text) != NULL;
}

int
curve_client_apply (zsock_t *sock, const char *server_key, const char *client_cert,
                    char *err, size_t errlen)
{
    if (!zsys_has_curve ()) {
        snprintf (err, errlen, "this libzmq has no CURVE support");
        return -1;
    }
    char key[41];
    if (access (server_key, F_OK) == 0) {
        zcert_t *server = zcert_load (server_key);
        if (!server) {
            snprintf (err, errlen,
                      "curve_server_key '%s' cannot be read as a certificate",
                      server_key);
            return -1;
        }
        snprintf (key, sizeof key, "%s", zcert_public_txt (server));
        zcert_destroy (&server);
    }
    else if (s_is_z85_key (server_key))
        snprintf (key, sizeof key, "%s", server_key);
    else {
        snprintf (err, errlen,
                  "curve_server_key '%s' is neither a certificate file nor a "
                  "40-character Z85 public key",
                  server_key);
        return -1;
    }
    zcert_t *cert = client_cert && *client_cert
                        ? s_load_secret (client_cert, "curve_cert", err, errlen)
                        : zcert_new ();
    if (!cert) {
        if (!(client_cert && *client_cert))
            snprintf (err, errlen, "no key pair could be made");
        return -1;
    }
    zcert_apply (cert, sock);
    zcert_destroy (&cert);
    zsock_set_curve_serverkey (sock, key);
    return 0;
}

//  The next item of a comma-separated list at *cursor (its length in *len),
//  or NULL at the end of the list.
static const char *
s_next_item (const char **cursor, size_t *len)
{
    const char *item = *cursor;
    if (!*item)
        return NULL;
    *len = strcspn (item, ",");
    *cursor = item + *len + (item[*len] == ',');
    return item;
}

//  True if token (len bytes) is an item of the comma-separated list.
static bool
s_list_has (const char *list, const char *token, size_t len)
{
    size_t n;
    for (const char *cursor = list, *item; (item = s_next_item (&cursor, &n));)
        if (n == len && strncmp (item, token, len) == 0)
            return true;
    return false;
}

bool
curve_roles_match (const char *have, const char *wanted)
{
    size_t n;
    for (const char *cursor = have, *item; (item = s_next_item (&cursor, &n));)
        if (n > 0 && s_list_has (wanted, item, n))
            return true;
    return false;
}

int
curve_roles_check (const char *roles, char *err, size_t errlen)
{
    if (!roles || !*roles || roles[strlen (roles) - 1] == ',') {
        snprintf (err, errlen, "no role given, or an empty one (roles: %s)", CURVE_ROLES);
        return -1;
    }
    size_t n;
    for (const char *cursor = roles, *item; (item = s_next_item (&cursor, &n));)
        if (n == 0 || !s_list_has (CURVE_ROLES, item, n)) {
            snprintf (err, errlen, "unknown role '%.*s' (roles: %s)", (int) n, item,
                      CURVE_ROLES);
            return -1;
        }
    return 0;
}

int
curve_client_check (const char *server_key, const char *client_cert, char *err,
                    size_t errlen)
{
    //  The keys are tried on a socket that is never connected.
    zsock_t *probe = zsock_new (ZMQ_DEALER);
    if (!probe) {
        snprintf (err, errlen, "cannot create a socket");
        return -1;
    }
    int rc = curve_client_apply (probe, server_key, client_cert ? client_cert : "", err,
                                 errlen);
    zsock_destroy (&probe);
    return rc;
}

int
curve_keygen (const char *path, const char *roles, char *err, size_t errlen)
{
    if (curve_roles_check (roles, err, errlen))
        return -1;
    //  czmq keeps certificate file names in 256 bytes.
    char secret[256];
    if (snprintf (secret, sizeof secret, "%s_secret", path) >= (int) sizeof secret) {
        snprintf (err, errlen, "'%s': path too long (at most %zu bytes)", path,
                  sizeof secret - 8);
        return -1;
    }
    if (access (path, F_OK) == 0 || access (secret, F_OK) == 0) {
        snprintf (err, errlen, "'%s' or '%s' exists already; not overwritten", path,
                  secret);
        return -1;
    }
    zcert_t *cert = zcert_new ();
    if (!cert) {
        snprintf (err, errlen, "no key pair could be made");
        return -1;
    }
    zcert_set_meta (cert, "created-by", "emq-cli keygen");
    zcert_set_meta (cert, CURVE_ROLES_PROPERTY, "%s", roles);
    //  The secret file is readable by its owner only, from its creation.
    mode_t old = umask (077);
    int rc = zcert_save (cert, path);
    umask (old);
    if (rc == 0)
        chmod (path, 0644);
    zcert_destroy (&cert);
    if (rc) {
        snprintf (err, errlen, "cannot write '%s': %s", path, strerror (errno));
        return -1;
    }
    return 0;
}

bool
curve_endpoint_is_local (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) == 0 || strncmp (endpoint, "inproc://", 9) == 0)
        return true;
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return false;
    //  tcp://[interface;]host:port; a source interface does not matter.
    const char *host = endpoint + 6;
    const char *semicolon = strchr (host, ';');
    if (semicolon)
        host = semicolon + 1;
    const char *colon = strrchr (host, ':');
    size_t len = colon ? (size_t) (colon - host) : strlen (host);
    if (len == 9 && strncmp (host, "localhost", 9) == 0)
        return true;
    if (len == 5 && strncmp (host, "[::1]", 5) == 0)
        return true;
    if (len < 4 || strncmp (host, "127.", 4) != 0)
        return false;
    for (size_t i = 4; i < len; i++)
        if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
            return false;
    return true;
}

bool
curve_warn_exposed (const char *who, const char *socket_name, const char *endpoint,
                    bool encrypted)
{
    if (encrypted || curve_endpoint_is_local (endpoint))
        return false;
    log_warning ("%s: %s socket %s reaches beyond this host without CURVE: any peer "
                 "that can connect is trusted and traffic is clear text (see "
                 "docs/operations.md, CURVE)",
                 who, socket_name, endpoint);
    return true;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

//  True if a message sent by client reaches server within timeout_ms.
static bool
s_test_reaches (zsock_t *server, zsock_t *client, int timeout_ms)
{
    zstr_send (client, "hello");
    zpoller_t *poller = zpoller_new (server, NULL);
    bool arrived = zpoller_wait (poller, timeout_ms) != NULL;
    zpoller_destroy (&poller);
    if (arrived) {
        zmsg_t *msg = zmsg_recv (server);
        zmsg_destroy (&msg);
    }
    return arrived;
}

void
curve_test (bool verbose)
{
    if (verbose)
        printf (" * curve: ");
    char dir[] = "/tmp/emq-curve-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char clients[PATH_MAX], server_path[PATH_MAX], good[PATH_MAX], bad[PATH_MAX];
    char server_secret[PATH_MAX + 8], good_secret[PATH_MAX + 8], bad_secret[PATH_MAX + 8];
    snprintf (clients, sizeof clients, "%s/clients", dir);
    snprintf (server_path, sizeof server_path, "%s/router", dir);
    snprintf (good, sizeof good, "%s/clients/good", dir);
    snprintf (bad, sizeof bad, "%s/bad", dir);
    snprintf (server_secret, sizeof server_secret, "%s_secret", server_path);
    snprintf (good_secret, sizeof good_secret, "%s_secret", good);
    snprintf (bad_secret, sizeof bad_secret, "%s_secret", bad);
    CHECK_EQ (mkdir (clients, 0700), 0);
    char err[512];
    //  Roles: known names only; lists match on any common role.
    CHECK_EQ (curve_roles_check ("client,admin", err, sizeof err), 0);
    CHECK_EQ (curve_roles_check ("client,root", err, sizeof err), -1);
    CHECK_CONTAINS (err, "unknown role 'root'");
    CHECK_EQ (curve_roles_check ("", err, sizeof err), -1);
    CHECK_EQ (curve_roles_check ("client,", err, sizeof err), -1);
    CHECK (curve_roles_match ("client,admin", "admin"));
    CHECK (curve_roles_match ("jobmanager", "client,scheduler,jobmanager"));
    CHECK (!curve_roles_match ("client", "admin"));
    CHECK (!curve_roles_match ("adm", "admin"));
    CHECK (!curve_roles_match ("", "admin"));
    //  What counts as staying on this host.
    CHECK (curve_endpoint_is_local ("tcp://127.0.0.1:47291"));
    CHECK (curve_endpoint_is_local ("tcp://127.1.2.3:1"));
    CHECK (curve_endpoint_is_local ("tcp://localhost:1"));
    CHECK (curve_endpoint_is_local ("tcp://[::1]:1"));
    CHECK (curve_endpoint_is_local ("ipc:///tmp/x"));
    CHECK (curve_endpoint_is_local ("inproc://x"));
    CHECK (!curve_endpoint_is_local ("tcp://0.0.0.0:47291"));
    CHECK (!curve_endpoint_is_local ("tcp://*:47291"));
    CHECK (!curve_endpoint_is_local ("tcp://10.0.0.1:47291"));
    CHECK (!curve_endpoint_is_local ("tcp://127.example.com:1"));
    CHECK (!curve_endpoint_is_local ("tcp://eth0:1"));
    CHECK (!curve_warn_exposed ("curve-test", "frontend", "tcp://0.0.0.0:1", true));
    CHECK (!curve_warn_exposed ("curve-test", "frontend", "tcp://127.0.0.1:1", false));
    CHECK_EQ (curve_keygen (server_path, "root", err, sizeof err), -1);
    CHECK_EQ (curve_keygen (server_path, "client", err, sizeof err), 0);
    CHECK_EQ (curve_keygen (good, "client", err, sizeof err), 0);
    CHECK_EQ (curve_keygen (bad, "client", err, sizeof err), 0);
    //  Never overwritten; the secret file is private.
    CHECK_EQ (curve_keygen (good, "client", err, sizeof err), -1);
    CHECK_CONTAINS (err, "exists already");
    struct stat st;
    CHECK (stat (good_secret, &st) == 0 && (st.st_mode & 077) == 0);
    //  The secret of an admitted client must not sit in the clients dir:
    //  zauth reads every file there. Move it out.
    char moved[PATH_MAX + 16];
    snprintf (moved, sizeof moved, "%s/good_secret", dir);
    CHECK_EQ (rename (good_secret, moved), 0);

    //  Bad configuration: clear errors.
    CHECK (curve_server_new ("/nonexistent/cert", "", err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "cannot be read");
    CHECK (curve_server_new (good, "", err, sizeof err) == NULL);  // its secret moved
    CHECK_CONTAINS (err, "no secret key");
    CHECK (curve_server_new (server_secret, "/nonexistent/dir", err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "curve_clients_dir");
    zsock_t *probe = zsock_new (ZMQ_DEALER);
    CHECK_EQ (curve_client_apply (probe, "not-a-key", "", err, sizeof err), -1);
    CHECK_CONTAINS (err, "neither a certificate file nor");
    CHECK_EQ (curve_client_apply (probe, server_path, good, err, sizeof err), -1);
    CHECK_CONTAINS (err, "no secret key");
    zsock_destroy (&probe);

    //  A server that admits only the clients in its directory.
    curve_server_t *server = curve_server_new (server_secret, clients, err, sizeof err);
    CHECK (server != NULL);
    if (!server) {
        fprintf (stderr, "curve_test: %s\n", err);
        return;
    }
    CHECK_EQ (strlen (curve_server_public (server)), 40);
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    curve_server_apply (server, router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    CHECK (port > 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);

    //  Admitted: the server's key given as its public certificate file.
    zsock_t *ok = zsock_new (ZMQ_DEALER);
    CHECK_EQ (curve_client_apply (ok, server_path, moved, err, sizeof err), 0);
    zsock_connect (ok, "%s", endpoint);
    CHECK (s_test_reaches (router, ok, 3000));
    //  Its roles come with every message, from the clients directory's copy.
    zstr_send (ok, "again");
    zpoller_t *poller = zpoller_new (router, NULL);
    CHECK (zpoller_wait (poller, 3000) == router);
    zpoller_destroy (&poller);
    //  (On the frame the peer sent: after a poll, a ROUTER's routing-id
    //  frame carries no connection properties.)
    zmsg_t *again = zmsg_recv (router);
    zframe_t *body = again ? zmsg_next (again) : NULL;
    body = body ? zmsg_next (again) : NULL;
    const char *roles = body ? zframe_meta (body, CURVE_ROLES_PROPERTY) : NULL;
    CHECK_STREQ (roles, "client");
    zmsg_destroy (&again);
    //  Not in the directory, or no CURVE at all, or the wrong server key:
    //  nothing gets through.
    zsock_t *stranger = zsock_new (ZMQ_DEALER);
    CHECK_EQ (curve_client_apply (stranger, curve_server_public (server), bad_secret, err,
                                  sizeof err),
              0);
    zsock_connect (stranger, "%s", endpoint);
    CHECK (!s_test_reaches (router, stranger, 500));
    zsock_t *plain = zsock_new (ZMQ_DEALER);
    zsock_connect (plain, "%s", endpoint);
    CHECK (!s_test_reaches (router, plain, 300));
    zsock_t *wrong = zsock_new (ZMQ_DEALER);
    zcert_t *other = zcert_load (bad);
    CHECK_EQ (
        curve_client_apply (wrong, zcert_public_txt (other), moved, err, sizeof err), 0);
    zcert_destroy (&other);
    zsock_connect (wrong, "%s", endpoint);
    CHECK (!s_test_reaches (router, wrong, 300));
    zsock_destroy (&wrong);
    zsock_destroy (&plain);
    zsock_destroy (&stranger);
    zsock_destroy (&ok);
    zsock_destroy (&router);
    curve_server_destroy (&server);

    //  No directory: any client key, a fresh one included, is admitted.
    server = curve_server_new (server_secret, "", err, sizeof err);
    CHECK (server != NULL);
    router = zsock_new (ZMQ_ROUTER);
    curve_server_apply (server, router);
    port = zsock_bind (router, "tcp://127.0.0.1:*");
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    zsock_t *fresh = zsock_new (ZMQ_DEALER);
    CHECK_EQ (
        curve_client_apply (fresh, curve_server_public (server), "", err, sizeof err), 0);
    zsock_connect (fresh, "%s", endpoint);
    CHECK (s_test_reaches (router, fresh, 3000));
    zsock_destroy (&fresh);
    zsock_destroy (&router);
    curve_server_destroy (&server);

    const char *files[] = { server_path, server_secret, good, moved, bad, bad_secret };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink (files[i]);
    rmdir (clients);
    rmdir (dir);
}
