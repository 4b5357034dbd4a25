/*  output — how emq-cli shows things to people: job values, aligned tables,
    the demo's progress bar. See cli.h.
*/
#include "cli.h"
#include "json.h"
#include "payload.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
output_value (FILE *stream, const void *data, size_t size)
{
    char err[256];
    if (payload_msgpack_check (data, size, PAYLOAD_DEPTH_MAX, err, sizeof err)) {
        fprintf (stderr, "emq-cli: the job's value is not valid msgpack: %s\n", err);
        return -1;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS)
        fprintf (stderr, "emq-cli: the job's value cannot be unpacked\n");
    else if (unpacked.data.type == MSGPACK_OBJECT_BIN) {
        //  An exec job's stdout: the bytes exactly as the command wrote them.
        size_t n = unpacked.data.via.bin.size;
        rc = n == 0 || fwrite (unpacked.data.via.bin.ptr, 1, n, stream) == n ? 0 : -1;
    }
    else {
        char *text = msgpack_to_json (&unpacked.data, err, sizeof err);
        if (!text)
            fprintf (stderr, "emq-cli: cannot show the job's value: %s\n", err);
        else {
            rc = fprintf (stream, "%s\n", text) < 0 ? -1 : 0;
            free (text);
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    if (fflush (stream) || ferror (stream)) {
        fprintf (stderr, "emq-cli: cannot write the value: %s\n", strerror (errno));
        rc = -1;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Tables

struct output_table_t {
    size_t columns;
    char **headings;  // columns entries, owned
    bool *right;      // right-align column i
    zlistx_t *rows;   // char ** of columns cells, owned
};

static void
s_row_destroy (void **item)
{
    //  The row knows nothing of its width: the first cell is preceded by
    //  the count (see output_table_add).
    char **row = *item;
    if (!row)
        return;
    size_t columns = (size_t) (uintptr_t) row[0];
    for (size_t i = 1; i <= columns; i++)
        free (row[i]);
    free (row);
    *item = NULL;
}

output_table_t *
output_table_new (const char *heading, ...)
{
    output_table_t *self = calloc (1, sizeof (output_table_t));
    if (!self)
        return NULL;
    va_list args;
    va_start (args, heading);
    size_t columns = 0;
    for (const char *h = heading; h; h = va_arg (args, const char *))
        columns++;
    va_end (args);
    self->columns = columns;
    self->headings = calloc (columns ? columns : 1, sizeof (char *));
    self->right = calloc (columns ? columns : 1, sizeof (bool));
    self->rows = zlistx_new ();
    if (!self->headings || !self->right || !self->rows) {
        output_table_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->rows, s_row_destroy);
    va_start (args, heading);
    size_t i = 0;
    for (const char *h = heading; h; h = va_arg (args, const char *))
        self->headings[i++] = strdup (h);
    va_end (args);
    for (i = 0; i < columns; i++)
        if (!self->headings[i]) {
            output_table_destroy (&self);
            return NULL;
        }
    return self;
}

void
output_table_destroy (output_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    output_table_t *self = *self_p;
    if (self->headings)
        for (size_t i = 0; i < self->columns; i++)
            free (self->headings[i]);
    free (self->headings);
    free (self->right);
    zlistx_destroy (&self->rows);
    free (self);
    *self_p = NULL;
}

int
output_table_add (output_table_t *self, const char *cell, ...)
{
    assert (self);
    //  row[0] holds the column count for the destructor; cells follow.
    char **row = calloc (self->columns + 1, sizeof (char *));
    if (!row)
        return -1;
    row[0] = (char *) (uintptr_t) self->columns;
    va_list args;
    va_start (args, cell);
    bool ok = true;
    for (size_t i = 0; i < self->columns; i++) {
        const char *text = i == 0 ? cell : va_arg (args, const char *);
        row[i + 1] = strdup (text && *text ? text : "-");
        ok = ok && row[i + 1];
    }
    va_end (args);
    void *item = row;
    if (!ok || !zlistx_add_end (self->rows, row)) {
        s_row_destroy (&item);
        return -1;
    }
    return 0;
}

void
output_table_align_right (output_table_t *self, size_t column)
{
    assert (self);
    if (column < self->columns)
        self->right[column] = true;
}

size_t
output_table_rows (output_table_t *self)
{
    assert (self);
    return zlistx_size (self->rows);
}

//  Display width of UTF-8 text: counts code points, not bytes.
static size_t
s_width (const char *text)
{
    size_t width = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if ((*p & 0xC0) != 0x80)
            width++;
    return width;
}

static void
s_print_row (output_table_t *self, FILE *stream, char **cells, const size_t *widths)
{
    for (size_t i = 0; i < self->columns; i++) {
        size_t pad = widths[i] - s_width (cells[i]);
        bool last = i + 1 == self->columns;
        if (self->right[i])
            fprintf (stream, "%*s%s", (int) pad, "", cells[i]);
        else
            fprintf (stream, "%s%*s", cells[i], last ? 0 : (int) pad, "");
        fputs (last ? "\n" : "  ", stream);
    }
}

void
output_table_print (output_table_t *self, FILE *stream)
{
    assert (self);
    size_t *widths = calloc (self->columns ? self->columns : 1, sizeof (size_t));
    if (!widths)
        return;
    for (size_t i = 0; i < self->columns; i++)
        widths[i] = s_width (self->headings[i]);
    for (char **row = zlistx_first (self->rows); row; row = zlistx_next (self->rows))
        for (size_t i = 0; i < self->columns; i++)
            if (s_width (row[i + 1]) > widths[i])
                widths[i] = s_width (row[i + 1]);
    s_print_row (self, stream, self->headings, widths);
    for (char **row = zlistx_first (self->rows); row; row = zlistx_next (self->rows))
        s_print_row (self, stream, row + 1, widths);
    free (widths);
}

//  --------------------------------------------------------------------------
//  Progress

struct output_progress_t {
    size_t total;
    bool tty;            // stderr is a terminal: draw a bar
    int64_t started;     // zclock_mono at creation
    int64_t drawn;       // when the bar was last drawn
    size_t last_decile;  // without a tty: last 10% step reported
};

output_progress_t *
output_progress_new (size_t total)
{
    output_progress_t *self = calloc (1, sizeof (output_progress_t));
    if (!self)
        return NULL;
    self->total = total;
    self->tty = isatty (STDERR_FILENO);
    self->started = zclock_mono ();
    return self;
}

void
output_progress_update (output_progress_t *self, size_t done, size_t ok, size_t failed,
                        bool force)
{
    if (!self)
        return;
    int64_t now = zclock_mono ();
    double elapsed = (double) (now - self->started) / 1000.0;
    double rate = elapsed > 0 ? (double) done / elapsed : 0;
    if (self->tty) {
        if (!force && now - self->drawn < 100)
            return;  // 10 frames a second is plenty
        self->drawn = now;
        enum { WIDTH = 30 };
        size_t filled = self->total ? done * WIDTH / self->total : WIDTH;
        char bar[WIDTH + 1];
        for (size_t i = 0; i < WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[WIDTH] = 0;
        fprintf (stderr, "\r[%s] %zu/%zu  ok %zu  failed %zu  %.0f jobs/s ", bar, done,
                 self->total, ok, failed, rate);
        fflush (stderr);
        return;
    }
    size_t decile = self->total ? done * 10 / self->total : 10;
    if (decile > self->last_decile) {
        self->last_decile = decile;
        fprintf (stderr,
                 "emq-cli: %zu/%zu jobs done (%zu%%), ok %zu, failed %zu, %.0f jobs/s\n",
                 done, self->total, decile * 10, ok, failed, rate);
    }
}

void
output_progress_destroy (output_progress_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->tty)
        fputs ("\n", stderr);
    free (*self_p);
    *self_p = NULL;
}
