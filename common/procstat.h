/*  procstat — a process's own figures from /proc: resident and virtual
    memory, CPU time, open file descriptors, start time. The router reports
    its own (STATUS "metrics"), emq-web its own (/metrics), a job manager
    its workers' (status "jobs_in_flight").
*/
#ifndef EMQ_PROCSTAT_H
#define EMQ_PROCSTAT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    int64_t rss_bytes;    // resident memory
    int64_t vsize_bytes;  // virtual memory
    double cpu_s;         // user + system time
    int64_t open_fds;     // -1 unless pid is 0 (this process), or unreadable
    int64_t max_fds;      // RLIMIT_NOFILE's soft limit; -1 as open_fds
    double start_time_s;  // unix seconds, -1 if unknown
} procstat_t;

//  Reads the figures of process pid (0: this one). Returns 0, or -1 when
//  /proc/PID/stat cannot be read or parsed (the process is gone); fields
//  not read are -1.
int procstat_read (pid_t pid, procstat_t *out);

void procstat_test (bool verbose);

#endif
