/*  libemq_examples — example job functions for `run` jobs, and the ones the
    tests and benchmarks use. Each has the emq_job_fn signature from
    emq/job.h; the library links only msgpack-c and libc.

        upper    string -> the string in upper case (ASCII)
        noop     anything -> nil (for benchmarks)
        echo     anything -> its arguments unchanged
        fail     optional string -> fails with that message ("failed on
                 purpose" by default)
        crash    "abort" -> abort(); anything else -> SIGSEGV
        sleep    seconds (integer or float, >= 0) -> the same number
        add      array of numbers -> their sum (integer when all are
                 integers and the sum fits, else float)
        context  anything -> {"msgid", "queue", "attempt"} of the job
        alloc    MiB (integer) -> allocates and touches that much memory,
                 returns the number; fails cleanly when malloc fails (limits)
        spin     seconds -> burns CPU for that long (CPU limits)
        spawn    nil -> forks a child that sleeps for an hour, returns its
                 pid (for the tests: what a job leaves behind must die)
*/
#include "emq/job.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  A job names function F and the worker calls emq_run_F, only if this
//  library defines it (see worker/plugin.h): the prefix is what makes a
//  function callable by jobs. Declared here so -Wextra (missing
//  prototypes) and readers see the whole API.
emq_job_fn emq_run_upper, emq_run_noop, emq_run_echo, emq_run_fail, emq_run_crash,
    emq_run_sleep, emq_run_add, emq_run_context, emq_run_alloc, emq_run_spin,
    emq_run_spawn;

static void
s_pack_str (msgpack_packer *pk, const char *text, size_t size)
{
    msgpack_pack_str (pk, size);
    msgpack_pack_str_body (pk, text, size);
}

int
emq_run_upper (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    //  Accept "text" or ["text"], as callers from EventMQ pass arg lists.
    if (args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 1)
        args = &args->via.array.ptr[0];
    if (args->type != MSGPACK_OBJECT_STR) {
        emq_job_fail (job, "upper: expected a string argument");
        return -1;
    }
    size_t size = args->via.str.size;
    char *copy = malloc (size ? size : 1);
    if (!copy) {
        emq_job_fail (job, "upper: out of memory");
        return -1;
    }
    for (size_t i = 0; i < size; i++)
        copy[i] = (char) toupper ((unsigned char) args->via.str.ptr[i]);
    s_pack_str (result, copy, size);
    free (copy);
    return 0;
}

int
emq_run_noop (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) job;
    (void) args;
    msgpack_pack_nil (result);
    return 0;
}

int
emq_run_echo (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) job;
    msgpack_pack_object (result, *args);
    return 0;
}

int
emq_run_fail (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) result;
    if (args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 1)
        args = &args->via.array.ptr[0];
    if (args->type == MSGPACK_OBJECT_STR)
        emq_job_fail (job, "%.*s", (int) args->via.str.size, args->via.str.ptr);
    else
        emq_job_fail (job, "failed on purpose");
    return -1;
}

int
emq_run_crash (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) job;
    (void) result;
    if (args->type == MSGPACK_OBJECT_STR && args->via.str.size == 5
        && memcmp (args->via.str.ptr, "abort", 5) == 0)
        abort ();
    raise (SIGSEGV);
    //  SIGSEGV blocked or ignored: make sure the worker still dies.
    abort ();
}

//  Reads a number (integer or float); returns 0 or -1.
static int
s_number (const msgpack_object *o, double *out)
{
    switch (o->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            *out = (double) o->via.u64;
            return 0;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            *out = (double) o->via.i64;
            return 0;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            *out = o->via.f64;
            return 0;
        default:
            return -1;
    }
}

int
emq_run_sleep (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 1)
        args = &args->via.array.ptr[0];
    double seconds;
    if (s_number (args, &seconds) || !(seconds >= 0) || seconds > 1e7) {
        emq_job_fail (job, "sleep: expected a number of seconds >= 0");
        return -1;
    }
    struct timespec left = { .tv_sec = (time_t) seconds,
                             .tv_nsec =
                                 (long) ((seconds - (double) (time_t) seconds) * 1e9) };
    while (nanosleep (&left, &left) && errno == EINTR)
        ;
    msgpack_pack_object (result, *args);
    return 0;
}

int
emq_run_add (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_ARRAY) {
        emq_job_fail (job, "add: expected an array of numbers");
        return -1;
    }
    bool integers = true;
    int64_t isum = 0;
    double fsum = 0;
    for (uint32_t i = 0; i < args->via.array.size; i++) {
        const msgpack_object *o = &args->via.array.ptr[i];
        double value;
        if (s_number (o, &value)) {
            emq_job_fail (job, "add: element %u is not a number", i);
            return -1;
        }
        fsum += value;
        if (integers) {
            int64_t v;
            if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
                v = (int64_t) o->via.u64;
            else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                v = o->via.i64;
            else {
                integers = false;
                continue;
            }
            if (__builtin_add_overflow (isum, v, &isum))
                integers = false;
        }
    }
    if (integers)
        msgpack_pack_int64 (result, isum);
    else
        msgpack_pack_double (result, fsum);
    return 0;
}

int
emq_run_context (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) args;
    msgpack_pack_map (result, 3);
    s_pack_str (result, "msgid", 5);
    s_pack_str (result, job->msgid, strlen (job->msgid));
    s_pack_str (result, "queue", 5);
    s_pack_str (result, job->queue, strlen (job->queue));
    s_pack_str (result, "attempt", 7);
    msgpack_pack_uint32 (result, job->attempt);
    return 0;
}

int
emq_run_alloc (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER || args->via.u64 > 1u << 20) {
        emq_job_fail (job, "alloc: expected a number of MiB");
        return -1;
    }
    size_t size = (size_t) args->via.u64 << 20;
    char *block = malloc (size ? size : 1);
    if (!block) {
        emq_job_fail (job, "alloc: out of memory allocating %llu MiB",
                      (unsigned long long) args->via.u64);
        return -1;
    }
    //  Touch every page so the memory is really used.
    for (size_t i = 0; i < size; i += 4096)
        block[i] = (char) i;
    free (block);
    msgpack_pack_uint64 (result, args->via.u64);
    return 0;
}

int
emq_run_spin (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    double seconds;
    if (s_number (args, &seconds) || !(seconds >= 0) || seconds > 1e6) {
        emq_job_fail (job, "spin: expected a number of seconds >= 0");
        return -1;
    }
    //  CPU time, not wall time: a CPU limit must catch it.
    volatile uint64_t counter = 0;
    struct timespec start, now;
    clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &start);
    do {
        for (int i = 0; i < 1000000; i++)
            counter++;
        clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &now);
    } while ((double) (now.tv_sec - start.tv_sec)
                 + (double) (now.tv_nsec - start.tv_nsec) / 1e9
             < seconds);
    msgpack_pack_object (result, *args);
    return 0;
}

int
emq_run_spawn (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) args;
    pid_t pid = fork ();
    if (pid < 0) {
        emq_job_fail (job, "spawn: fork failed");
        return -1;
    }
    if (pid == 0) {
        sleep (3600);
        _exit (0);
    }
    msgpack_pack_int64 (result, (int64_t) pid);
    return 0;
}
