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
*/
#include "emq/job.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Every exported function is a job function; declare them so -Wextra
//  (missing prototypes) and readers see the whole API here.
emq_job_fn upper, noop, echo, fail, crash, add, context;
//  The job function "sleep" is sleep_job in C (libc's sleep() has the name),
//  exported under the symbol name "sleep".
emq_job_fn sleep_job __asm__("sleep");

static void
s_pack_str (msgpack_packer *pk, const char *text, size_t size)
{
    msgpack_pack_str (pk, size);
    msgpack_pack_str_body (pk, text, size);
}

int
upper (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
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
noop (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) job;
    (void) args;
    msgpack_pack_nil (result);
    return 0;
}

int
echo (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
{
    (void) job;
    msgpack_pack_object (result, *args);
    return 0;
}

int
fail (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
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
crash (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
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
sleep_job (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
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
add (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
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
context (emq_job_t *job, const msgpack_object *args, msgpack_packer *result)
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
