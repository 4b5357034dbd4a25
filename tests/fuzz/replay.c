/*  replay — a main for a fuzz target without libFuzzer: reads each file
    named on the command line (a directory: each regular file in it, sorted)
    and passes it to the target's LLVMFuzzerTestOneInput once.

        fuzz-<target> FILE|DIR...

    A target that crashes or trips a sanitizer ends this process, so the
    "1 passed, 0 failed" summary line tests/run looks for is missing and the
    suite fails; a signal handler (and the sanitizers' death callback) names
    the file being replayed on stderr first. An unreadable file or an empty
    corpus fails too. FUZZ_REPLAY_VERBOSE=1 names every file.
*/
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

//  The sanitizers' hook, present only when they are linked in.
void __sanitizer_set_death_callback (void (*callback) (void)) __attribute__ ((weak));

static int s_replayed;
static int s_failed;
static const char *s_current;  // the file being replayed, for a crash report

static void
s_name_current (void)
{
    if (!s_current)
        return;
    //  Only async-signal-safe calls: this runs in a signal handler.
    const char *lead = "replay: crashed on ";
    ssize_t ignored = write (STDERR_FILENO, lead, strlen (lead));
    ignored = write (STDERR_FILENO, s_current, strlen (s_current));
    ignored = write (STDERR_FILENO, "\n", 1);
    (void) ignored;
}

static void
s_on_crash (int sig)
{
    s_name_current ();
    signal (sig, SIG_DFL);
    raise (sig);
}

static void
s_replay_file (const char *path, bool verbose)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "replay: cannot read %s: %s\n", path, strerror (errno));
        s_failed++;
        return;
    }
    size_t cap = 4096, size = 0;
    uint8_t *data = malloc (cap);
    size_t got;
    while (data && (got = fread (data + size, 1, cap - size, file)) > 0) {
        size += got;
        if (size == cap) {
            uint8_t *bigger = realloc (data, cap *= 2);
            if (!bigger)
                free (data);
            data = bigger;
        }
    }
    bool bad = !data || ferror (file);
    fclose (file);
    if (bad) {
        fprintf (stderr, "replay: cannot read %s\n", path);
        free (data);
        s_failed++;
        return;
    }
    if (verbose)
        fprintf (stderr, "replay: %s (%zu bytes)\n", path, size);
    //  A copy of exactly size bytes, so that reading past the input is an
    //  error the sanitizers see, as under libFuzzer.
    uint8_t *exact = malloc (size ? size : 1);
    if (!exact)
        abort ();
    memcpy (exact, data, size);
    free (data);
    s_current = path;
    LLVMFuzzerTestOneInput (exact, size);
    s_current = NULL;
    free (exact);
    s_replayed++;
}

static int
s_by_name (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
s_replay_dir (const char *path, bool verbose)
{
    DIR *dir = opendir (path);
    if (!dir) {
        fprintf (stderr, "replay: cannot open %s: %s\n", path, strerror (errno));
        s_failed++;
        return;
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name[0] == '.')
            continue;
        char **more = realloc (names, (count + 1) * sizeof *names);
        if (!more)
            abort ();
        names = more;
        if (asprintf (&names[count], "%s/%s", path, entry->d_name) < 0)
            abort ();
        count++;
    }
    closedir (dir);
    qsort (names, count, sizeof *names, s_by_name);
    for (size_t i = 0; i < count; i++) {
        struct stat st;
        if (stat (names[i], &st) == 0 && S_ISREG (st.st_mode))
            s_replay_file (names[i], verbose);
        free (names[i]);
    }
    free (names);
}

int
main (int argc, char **argv)
{
    bool verbose = getenv ("FUZZ_REPLAY_VERBOSE") != NULL;
    const int signals[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL };
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        signal (signals[i], s_on_crash);
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback (s_name_current);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat (argv[i], &st) == 0 && S_ISDIR (st.st_mode))
            s_replay_dir (argv[i], verbose);
        else
            s_replay_file (argv[i], verbose);
    }
    if (s_replayed == 0 && s_failed == 0) {
        fprintf (stderr, "replay: no input files\n");
        s_failed++;
    }
    //  One test per target, whatever the number of files.
    printf ("replay %s: %d files, %d unreadable\n", argv[0], s_replayed, s_failed);
    printf ("%d passed, %d failed\n", s_failed ? 0 : 1, s_failed ? 1 : 0);
    return s_failed ? 1 : 0;
}
