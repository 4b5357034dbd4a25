/*  emq/job.h — the signature of a job function that emq workers run.

    A `run` job names a shared library (found only in the job manager's
    plugin directories), a function in it, and msgpack arguments. The worker
    loads the library once, looks up the symbol EMQ_RUN_PREFIX + the name
    (job function "upper" is the symbol emq_run_upper), refuses it unless
    the library itself defines it (not one of its dependencies), and calls
    it:

        int emq_run_upper (emq_job_t *job, const msgpack_object *args,
                           msgpack_packer *result);

    Only functions with the prefix can be called by jobs: a library's other
    exports, and everything it links (libc's fork, abort...), cannot. Use
    EMQ_RUN (upper) to name one.

    The function packs exactly one msgpack object into `result` and returns
    0, or calls emq_job_fail() and returns non-zero. Whatever it packed is
    then discarded and the job fails with that message (retried if the job
    has retries left). `args` and everything in `job` are borrowed and valid
    only during the call.

    Optional hooks, named in the job manager's configuration:
        int  setup (void);                 once per worker, before any job
        void entry (const emq_job_t *job); before every job
        void exit_ (const emq_job_t *job); after every job
*/
#ifndef EMQ_JOB_H
#define EMQ_JOB_H

#include <msgpack.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#define EMQ_JOB_API_VERSION 2
//  The symbol prefix that makes a function callable by run jobs.
#define EMQ_RUN_PREFIX "emq_run_"
//  The C name of job function `name`: int EMQ_RUN (upper) (emq_job_t *...).
#define EMQ_RUN(name) emq_run_##name
#define EMQ_JOB_ERROR_MAX 1024

typedef struct {
    const char *msgid;              // the job's message id
    const char *queue;              // the queue it was submitted to
    uint32_t attempt;               // 1 on the first run, 2 on the first retry...
    uint32_t timeout_s;             // the job's timeout, 0 = none
    char error[EMQ_JOB_ERROR_MAX];  // set by emq_job_fail
} emq_job_t;

typedef int emq_job_fn (emq_job_t *job, const msgpack_object *args,
                        msgpack_packer *result);
typedef int emq_setup_fn (void);
typedef void emq_hook_fn (const emq_job_t *job);

//  Records why the job failed; the function should then return non-zero.
static inline void emq_job_fail (emq_job_t *job, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static inline void
emq_job_fail (emq_job_t *job, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (job->error, sizeof job->error, format, args);
    va_end (args);
}

#endif
