/*  curve — CURVE encryption and authentication of emq's sockets, on czmq's
    zcert (key pairs in zcert_save's file format) and zauth (the ZAP
    handler that checks client keys against a directory of public
    certificates).

    The router is the CURVE server on all three of its sockets; clients, job
    managers and schedulers are CURVE clients that must know the router's
    public key. Keys are files: `emq-cli keygen NAME` writes NAME (public)
    and NAME_secret. With CURVE off (no certificate configured) sockets are
    plain ZeroMQ, as EventMQ's are.
*/
#ifndef EMQ_CURVE_H
#define EMQ_CURVE_H

#include <czmq.h>
#include <stdbool.h>

typedef struct curve_server_t curve_server_t;

//  Loads the server's secret certificate and, when clients_dir is not empty,
//  starts the authenticator that admits only clients whose public
//  certificate is in that directory (read again when it changes). With an
//  empty clients_dir any client key is admitted: traffic is still
//  encrypted. NULL with the reason in err.
curve_server_t *curve_server_new (const char *secret_cert, const char *clients_dir,
                                  char *err, size_t errlen);
void curve_server_destroy (curve_server_t **self_p);
//  Makes sock (not yet bound) a CURVE server with the loaded key pair.
void curve_server_apply (curve_server_t *self, zsock_t *sock);
//  Admits the clients of another directory from now on ("" : any key),
//  and reads the directory again even if it is the same (SIGHUP). New
//  connections are checked against it; established ones stay. Returns 0,
//  or -1 with the reason in err (the old admission stays).
int curve_server_set_clients (curve_server_t *self, const char *clients_dir, char *err,
                              size_t errlen);
//  The server's public key, Z85 (40 characters): what peers configure.
const char *curve_server_public (curve_server_t *self);

//  Makes sock (not yet connected) a CURVE client of the server whose public
//  key is server_key: 40 Z85 characters, or the path of its public
//  certificate file. client_cert is this peer's secret certificate file, or
//  "" for a fresh key pair (enough when the server admits any key).
//  Returns 0, or -1 with the reason in err.
int curve_client_apply (zsock_t *sock, const char *server_key, const char *client_cert,
                        char *err, size_t errlen);
//  Checks that curve_client_apply would accept these keys (a program's
//  start-up check). Returns 0, or -1 with the reason in err.
int curve_client_check (const char *server_key, const char *client_cert, char *err,
                        size_t errlen);

//  Roles a key may have, kept as metadata in its certificate: the router's
//  authenticator attaches them to every message on that key's connection
//  (the clients directory's copy counts, not the peer's). A socket serves
//  only its roles: frontend client or scheduler, backend jobmanager, admin
//  admin.
#define CURVE_ROLES_PROPERTY "emq-roles"
#define CURVE_ROLES "client,scheduler,jobmanager,admin"

//  True if the comma-separated lists have a role in common.
bool curve_roles_match (const char *have, const char *wanted);
//  Returns 0 if roles is a non-empty comma-separated list of known roles,
//  else -1 with the reason in err.
int curve_roles_check (const char *roles, char *err, size_t errlen);

//  Writes a new key pair with these roles: path (public) and path_secret
//  (both). Returns 0, or -1 with the reason in err.
int curve_keygen (const char *path, const char *roles, char *err, size_t errlen);

//  True when endpoint stays on this host: ipc://, inproc://, or tcp:// on a
//  loopback address (127.x.x.x, [::1], localhost). "tcp://0.0.0.0:N" and
//  "tcp://*:N" (every interface) and any other host are not local.
bool curve_endpoint_is_local (const char *endpoint);

//  Logs a warning ("<who>: <socket_name> socket <endpoint> reaches beyond
//  this host without CURVE ...") when endpoint is not local and encrypted
//  is false. Returns true when it warned.
bool curve_warn_exposed (const char *who, const char *socket_name, const char *endpoint,
                         bool encrypted);

void curve_test (bool verbose);

#endif
