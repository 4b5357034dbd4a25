/*  server — emq-web's HTTP side (libmicrohttpd): the dashboard's static
    files, /metrics, and a small JSON API over the router's admin socket
    (docs/operations.md, "Web dashboard"). Reads come from the sampler or
    from one admin command each; actions (retry, delete, cancel) are one
    admin command each, so the router's rules and roles apply to them.
*/
#ifndef EMQ_WEB_SERVER_H
#define EMQ_WEB_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "sampler.h"

typedef struct {
    const char *listen;      // "127.0.0.1:47295"; port 0: any free one
    const char *password;    // basic auth (user "emq"), or "" for none
    const char *static_dir;  // the dashboard's files
    const char *admin;       // the router's admin endpoint
    const char *frontend;    // the router's frontend (FETCH of results)
    int timeout_ms;          // for each admin command
} server_settings_t;

typedef struct server_t server_t;

//  Starts serving (its own threads); sampler is borrowed and must outlive
//  the server. Returns NULL with the reason in err.
server_t *server_new (const server_settings_t *settings, sampler_t *sampler, char *err,
                      size_t errlen);
void server_destroy (server_t **self_p);

//  The port it listens on (the real one when 0 was asked for).
uint16_t server_port (server_t *self);

void server_test (bool verbose);

#endif
