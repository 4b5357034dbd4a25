/*  config — settings for every emq program, EventMQ-compatible.

    A setting has a lowercase name (concurrent_jobs), a type, a default and
    the INI sections where it may appear. Values are applied in this order,
    later wins:
        1. built-in defaults
        2. the config file: EVENTMQ_CONFIG_FILE, else /etc/eventmq.conf (a
           missing default file is fine; a missing named file is a warning,
           as in EventMQ; an unreadable or malformed one is an error);
           [global] then the program's own section. EventMQ's names are
           aliases (frontend_addr is the router's frontend_listen_addr)
        3. environment variables EVENTMQ_<NAME> (EVENTMQ_CONCURRENT_JOBS)
        4. command-line flags (--concurrent-jobs), applied by the program
           through config_set
    Every value is validated when set; errors name the setting, the source
    and what was expected. The object owns all its strings.
*/
#ifndef EMQ_CONFIG_H
#define EMQ_CONFIG_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct config_t config_t;

//  Creates a config holding the defaults. Caller owns it.
config_t *config_new (void);
void config_destroy (config_t **self_p);

//  Loads file then environment as described above, for one program section
//  ("router", "jobmanager", "scheduler", "cli", "publisher"). path: a file named on the
//  command line (--config), or NULL. Unknown keys in the file are logged as
//  warnings and ignored. Returns 0, or -1 with the reason in err.
int config_load (config_t *self, const char *section, const char *path, char *err,
                 size_t errlen);

//  The same with the file's text in memory (size bytes, NUL not needed);
//  name stands for the file in messages. For tests and the fuzz target.
int config_load_text (config_t *self, const char *section, const char *name,
                      const char *text, size_t size, char *err, size_t errlen);

//  For a program's main: finds --config (the option whose getopt code is
//  config_opt) among argv without complaining about the other flags (they
//  are applied later, over the file), then creates a config and loads the
//  file and environment for section. Returns it (caller owns it), or NULL
//  after printing "<program>: <reason>" on stderr. Leaves getopt to be
//  restarted by the caller (optind = 1).
config_t *config_from_args (const char *program, const char *section, int argc,
                            char **argv, const char *optstring,
                            const struct option *options, int config_opt);

//  Sets one setting from text (a flag's value), validating it. Returns 0, or
//  -1 with the reason in err (unknown name, bad number, out of range).
int config_set (config_t *self, const char *name, const char *value, char *err,
                size_t errlen);

//  Typed getters. Asking for an unknown name or the wrong type is a bug
//  (assert). Strings are borrowed and valid until the next set/load.
const char *config_str (config_t *self, const char *name);
int64_t config_int (config_t *self, const char *name);
double config_double (config_t *self, const char *name);
bool config_bool (config_t *self, const char *name);
//  For list settings (plugin_dirs, exec_allow): the number of items and
//  one item. Lists are ':'-separated in files, env and flags given once;
//  a repeated flag appends (config_append).
size_t config_list_size (config_t *self, const char *name);
const char *config_list_item (config_t *self, const char *name, size_t index);
int config_append (config_t *self, const char *name, const char *value, char *err,
                   size_t errlen);

//  Writes every setting with its current value and source as "name = value"
//  lines (for --print-config and the docs).
void config_print (config_t *self, FILE *stream);

//  Called by config_diff for each setting whose text differs (borrowed).
typedef void (config_diff_fn) (const char *name, const char *before, const char *after,
                               void *arg);
//  Compares self (the running configuration) with fresh (reloaded for the
//  same program section): calls fn for every setting of that section whose
//  value changed. Returns how many changed.
size_t config_diff (config_t *self, config_t *fresh, config_diff_fn *fn, void *arg);

void config_test (bool verbose);

#endif
