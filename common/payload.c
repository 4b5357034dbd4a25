/*  payload — encode and strictly decode emq's msgpack job payloads.
    See payload.h for the format.

    Decoding runs in two steps. payload_msgpack_check walks the raw bytes
    first, so that truncated input, a reserved type byte, a container that
    claims more items than there are bytes left, or nesting past the limit is
    named precisely (msgpack-c would only say "parse error", or "out of
    memory" for deep nesting, and would reserve memory for any claimed
    count). Then msgpack-c unpacks the value and s_decode_* check the map's
    keys and types. A decoded payload_t owns every string and buffer in it.
*/
#include "payload.h"
#include "errbuf.h"

#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
payload_kind_name (payload_kind_t kind)
{
    return kind == PAYLOAD_RUN ? "run" : kind == PAYLOAD_EXEC ? "exec" : "unknown";
}

//  --------------------------------------------------------------------------
//  Raw msgpack validation

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
    int max_depth;
    char *err;
    size_t errlen;
} s_walker_t;

//  Reads an n-byte big-endian unsigned number at the cursor.
static int
s_read_be (s_walker_t *w, size_t n, uint64_t *value)
{
    if (w->size - w->pos < n)
        return errbuf_set (w->err, w->errlen, "msgpack truncated at byte %zu", w->pos);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | w->data[w->pos + i];
    w->pos += n;
    *value = v;
    return 0;
}

static int
s_skip (s_walker_t *w, uint64_t n)
{
    if ((uint64_t) (w->size - w->pos) < n)
        return errbuf_set (w->err, w->errlen,
                           "msgpack truncated: %" PRIu64
                           " bytes claimed at byte %zu, %zu left",
                           n, w->pos, w->size - w->pos);
    w->pos += (size_t) n;
    return 0;
}

static int s_walk (s_walker_t *w, int depth);

//  Walks a container of count items (a map passes 2 * its entries).
static int
s_walk_items (s_walker_t *w, uint64_t count, int depth, const char *what)
{
    if (depth > w->max_depth)
        return errbuf_set (w->err, w->errlen, "msgpack nested deeper than %d levels",
                           w->max_depth);
    //  Each item takes at least one byte: refuse impossible counts before
    //  anyone reserves memory for them.
    if (count > (uint64_t) (w->size - w->pos))
        return errbuf_set (w->err, w->errlen,
                           "msgpack %s claims %" PRIu64
                           " items but only %zu bytes are left",
                           what, count, w->size - w->pos);
    for (uint64_t i = 0; i < count; i++)
        if (s_walk (w, depth))
            return -1;
    return 0;
}

static int
s_walk (s_walker_t *w, int depth)
{
    if (w->pos >= w->size)
        return errbuf_set (w->err, w->errlen, "msgpack truncated at byte %zu", w->pos);
    uint8_t b = w->data[w->pos++];
    uint64_t n;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;  // fixint, nil, bool
    if (b >= 0x80 && b <= 0x8f)
        return s_walk_items (w, 2 * (uint64_t) (b & 0x0f), depth + 1, "map");
    if (b >= 0x90 && b <= 0x9f)
        return s_walk_items (w, b & 0x0f, depth + 1, "array");
    if (b >= 0xa0 && b <= 0xbf)
        return s_skip (w, b & 0x1f);  // fixstr
    switch (b) {
        case 0xc4:
        case 0xc5:
        case 0xc6:  // bin 8/16/32
            if (s_read_be (w, (size_t) 1 << (b - 0xc4), &n))
                return -1;
            return s_skip (w, n);
        case 0xc7:
        case 0xc8:
        case 0xc9:  // ext 8/16/32
            if (s_read_be (w, (size_t) 1 << (b - 0xc7), &n))
                return -1;
            return s_skip (w, n + 1);
        case 0xca:
            return s_skip (w, 4);  // float 32
        case 0xcb:
            return s_skip (w, 8);  // float 64
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:  // uint 8..64
            return s_skip (w, (uint64_t) 1 << (b - 0xcc));
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3:  // int 8..64
            return s_skip (w, (uint64_t) 1 << (b - 0xd0));
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:  // fixext
            return s_skip (w, 1 + ((uint64_t) 1 << (b - 0xd4)));
        case 0xd9:
        case 0xda:
        case 0xdb:  // str 8/16/32
            if (s_read_be (w, (size_t) 1 << (b - 0xd9), &n))
                return -1;
            return s_skip (w, n);
        case 0xdc:
        case 0xdd:  // array 16/32
            if (s_read_be (w, b == 0xdc ? 2 : 4, &n))
                return -1;
            return s_walk_items (w, n, depth + 1, "array");
        case 0xde:
        case 0xdf:  // map 16/32
            if (s_read_be (w, b == 0xde ? 2 : 4, &n))
                return -1;
            return s_walk_items (w, 2 * n, depth + 1, "map");
        default:  // 0xc1: never used
            return errbuf_set (w->err, w->errlen,
                               "msgpack has reserved type byte 0x%02x at byte %zu", b,
                               w->pos - 1);
    }
}

int
payload_msgpack_check (const void *data, size_t size, int max_depth, char *err,
                       size_t errlen)
{
    if (!data || size == 0)
        return errbuf_set (err, errlen, "msgpack is empty");
    if (max_depth > PAYLOAD_DEPTH_MAX || max_depth < 0)
        max_depth = PAYLOAD_DEPTH_MAX;
    s_walker_t w = { data, size, 0, max_depth, err, errlen };
    if (s_walk (&w, 0))
        return -1;
    if (w.pos != size)
        return errbuf_set (err, errlen, "%zu unexpected bytes after the msgpack value",
                           size - w.pos);
    return 0;
}

zframe_t *
payload_pack_str (const void *data, size_t size)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    zframe_t *frame = NULL;
    //  msgpack_sbuffer_write returns -1 when realloc fails.
    if (msgpack_pack_str (&pk, size) == 0 && msgpack_pack_str_body (&pk, data, size) == 0)
        frame = zframe_new (sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy (&sbuf);
    return frame;
}

//  --------------------------------------------------------------------------
//  Decoding

void
payload_destroy (payload_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    payload_t *self = *self_p;
    free (self->library);
    free (self->function);
    free (self->args);
    if (self->argv)
        for (size_t i = 0; i < self->argc; i++)
            free (self->argv[i]);
    free (self->argv);
    free (self->stdin_data);
    if (self->env)
        for (size_t i = 0; i < self->envc; i++)
            free (self->env[i]);
    free (self->env);
    free (self->cwd);
    free (self);
    *self_p = NULL;
}

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
           && memcmp (key->via.str.ptr, name, len) == 0;
}

//  Copies a msgpack string into a new C string. Refuses other types, NUL
//  bytes (they would silently cut the string) and, unless allowed, "".
static int
s_string (const msgpack_object *obj, const char *field, bool may_be_empty, char **out,
          char *err, size_t errlen)
{
    if (obj->type != MSGPACK_OBJECT_STR)
        return errbuf_set (err, errlen, "payload: %s is not a string", field);
    size_t size = obj->via.str.size;
    if (size == 0 && !may_be_empty)
        return errbuf_set (err, errlen, "payload: %s is empty", field);
    if (memchr (obj->via.str.ptr, 0, size))
        return errbuf_set (err, errlen, "payload: %s contains a NUL byte", field);
    *out = malloc (size + 1);
    if (!*out)
        return errbuf_set (err, errlen, "payload: out of memory");
    memcpy (*out, obj->via.str.ptr, size);
    (*out)[size] = 0;
    return 0;
}

//  The library is looked up inside the job manager's plugin directories, so
//  it must be a plain file name.
static bool
s_library_name_ok (const char *name)
{
    return name && *name && !strchr (name, '/') && strcmp (name, ".")
           && strcmp (name, "..");
}

static int
s_decode_run (payload_t *self, const msgpack_object *key, const msgpack_object *val,
              char *err, size_t errlen)
{
    if (s_key_is (key, "library")) {
        if (s_string (val, "run: library", false, &self->library, err, errlen))
            return -1;
        if (!s_library_name_ok (self->library))
            return errbuf_set (err, errlen,
                               "payload: run: library must be a file name, not a path");
        return 0;
    }
    if (s_key_is (key, "function"))
        return s_string (val, "run: function", false, &self->function, err, errlen);
    if (s_key_is (key, "args")) {
        //  Keep the arguments as msgpack bytes: the worker unpacks them again
        //  into its own zone right before the call.
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        if (msgpack_pack_object (&pk, *val) || sbuf.size == 0) {
            msgpack_sbuffer_destroy (&sbuf);
            return errbuf_set (err, errlen, "payload: run: cannot copy args");
        }
        self->args = sbuf.data;  // malloc'd by the sbuffer, now ours
        self->args_size = sbuf.size;
        return 0;
    }
    return -2;
}

static int
s_decode_exec (payload_t *self, const msgpack_object *key, const msgpack_object *val,
               char *err, size_t errlen)
{
    char field[64];
    if (s_key_is (key, "argv")) {
        if (val->type != MSGPACK_OBJECT_ARRAY)
            return errbuf_set (err, errlen, "payload: exec: argv is not an array");
        size_t argc = val->via.array.size;
        if (argc == 0)
            return errbuf_set (err, errlen, "payload: exec: argv is empty");
        if (argc > PAYLOAD_ARGC_MAX)
            return errbuf_set (err, errlen, "payload: exec: argv has %zu items, max %d",
                               argc, PAYLOAD_ARGC_MAX);
        self->argv = calloc (argc + 1, sizeof (char *));
        if (!self->argv)
            return errbuf_set (err, errlen, "payload: out of memory");
        for (size_t i = 0; i < argc; i++) {
            snprintf (field, sizeof field, "exec: argv[%zu]", i);
            //  argv[0] names the program; later arguments may be "".
            if (s_string (&val->via.array.ptr[i], field, i > 0, &self->argv[i], err,
                          errlen))
                return -1;
            self->argc = i + 1;
        }
        return 0;
    }
    if (s_key_is (key, "stdin")) {
        const char *ptr;
        size_t size;
        if (val->type == MSGPACK_OBJECT_BIN) {
            ptr = val->via.bin.ptr;
            size = val->via.bin.size;
        }
        else if (val->type == MSGPACK_OBJECT_STR) {
            ptr = val->via.str.ptr;
            size = val->via.str.size;
        }
        else if (val->type == MSGPACK_OBJECT_NIL)
            return 0;
        else
            return errbuf_set (err, errlen, "payload: exec: stdin is not bytes");
        self->stdin_data = malloc (size ? size : 1);
        if (!self->stdin_data)
            return errbuf_set (err, errlen, "payload: out of memory");
        memcpy (self->stdin_data, ptr, size);
        self->stdin_size = size;
        return 0;
    }
    if (s_key_is (key, "env")) {
        if (val->type == MSGPACK_OBJECT_NIL)
            return 0;
        if (val->type != MSGPACK_OBJECT_MAP)
            return errbuf_set (err, errlen, "payload: exec: env is not a map");
        size_t envc = val->via.map.size;
        if (envc > PAYLOAD_ENVC_MAX)
            return errbuf_set (err, errlen, "payload: exec: env has %zu items, max %d",
                               envc, PAYLOAD_ENVC_MAX);
        if (envc == 0)
            return 0;
        self->env = calloc (envc + 1, sizeof (char *));
        if (!self->env)
            return errbuf_set (err, errlen, "payload: out of memory");
        for (size_t i = 0; i < envc; i++) {
            char *name = NULL, *value = NULL;
            snprintf (field, sizeof field, "exec: env name #%zu", i);
            if (s_string (&val->via.map.ptr[i].key, field, false, &name, err, errlen))
                return -1;
            if (strchr (name, '=')) {
                free (name);
                return errbuf_set (err, errlen,
                                   "payload: exec: env name #%zu contains '='", i);
            }
            snprintf (field, sizeof field, "exec: env value of %.32s", name);
            if (s_string (&val->via.map.ptr[i].val, field, true, &value, err, errlen)) {
                free (name);
                return -1;
            }
            size_t len = strlen (name) + 1 + strlen (value) + 1;
            self->env[i] = malloc (len);
            if (self->env[i])
                snprintf (self->env[i], len, "%s=%s", name, value);
            free (name);
            free (value);
            if (!self->env[i])
                return errbuf_set (err, errlen, "payload: out of memory");
            self->envc = i + 1;
        }
        return 0;
    }
    if (s_key_is (key, "cwd")) {
        if (val->type == MSGPACK_OBJECT_NIL)
            return 0;
        return s_string (val, "exec: cwd", false, &self->cwd, err, errlen);
    }
    return -2;
}

//  "limits": a map of known names to positive integers, each once.
static int
s_decode_limits (payload_limits_t *limits, const msgpack_object *val, char *err,
                 size_t errlen)
{
    if (val->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (val->type != MSGPACK_OBJECT_MAP)
        return errbuf_set (err, errlen, "payload: limits is not a map");
    static const char *names[] = { "as", "nproc", "nofile", "cpu" };
    uint64_t *fields[] = { &limits->as_bytes, &limits->nproc, &limits->nofile,
                           &limits->cpu_s };
    for (uint32_t i = 0; i < val->via.map.size; i++) {
        const msgpack_object *key = &val->via.map.ptr[i].key;
        const msgpack_object *value = &val->via.map.ptr[i].val;
        size_t k = 0;
        while (k < 4 && !s_key_is (key, names[k]))
            k++;
        if (k == 4)
            return errbuf_set (err, errlen,
                               "payload: limits: unknown limit (as, nproc, nofile, cpu)");
        if (*fields[k])
            return errbuf_set (err, errlen, "payload: limits: '%s' given twice",
                               names[k]);
        if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER || value->via.u64 == 0
            || value->via.u64 > (uint64_t) INT64_MAX)
            return errbuf_set (
                err, errlen, "payload: limits: '%s' is not a positive integer", names[k]);
        *fields[k] = value->via.u64;
    }
    return 0;
}

//  The number of limits set (for the encoder).
static size_t
s_limits_count (const payload_limits_t *limits)
{
    return (limits->as_bytes != 0) + (limits->nproc != 0) + (limits->nofile != 0)
           + (limits->cpu_s != 0);
}

static int s_pack_str (msgpack_packer *pk, const char *s);

static int
s_encode_limits (msgpack_packer *pk, const payload_limits_t *limits)
{
    size_t count = s_limits_count (limits);
    if (count == 0)
        return 0;
    int rc = s_pack_str (pk, "limits") || msgpack_pack_map (pk, count);
    const char *names[] = { "as", "nproc", "nofile", "cpu" };
    uint64_t values[] = { limits->as_bytes, limits->nproc, limits->nofile,
                          limits->cpu_s };
    for (size_t i = 0; !rc && i < 4; i++)
        if (values[i])
            rc = s_pack_str (pk, names[i]) || msgpack_pack_uint64 (pk, values[i]);
    return rc;
}

payload_t *
payload_decode (const void *data, size_t size, char *err, size_t errlen)
{
    char reason[200];
    if (payload_msgpack_check (data, size, PAYLOAD_DEPTH_MAX, reason, sizeof reason)) {
        errbuf_set (err, errlen, "payload: %s", reason);
        return NULL;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    payload_t *self = NULL;
    int rc = msgpack_unpack_next (&unpacked, data, size, &offset);
    if (rc != MSGPACK_UNPACK_SUCCESS) {
        errbuf_set (err, errlen, "payload: msgpack cannot be unpacked (%s)",
                    rc == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory" : "parse error");
        goto fail;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        errbuf_set (err, errlen, "payload: not a msgpack map");
        goto fail;
    }
    //  The kind decides which other keys are allowed, so find it first.
    const msgpack_object *kind = NULL;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        if (s_key_is (&root->via.map.ptr[i].key, "kind")) {
            if (kind) {
                errbuf_set (err, errlen, "payload: key 'kind' given twice");
                goto fail;
            }
            kind = &root->via.map.ptr[i].val;
        }
    }
    if (!kind) {
        errbuf_set (err, errlen, "payload: no 'kind' key");
        goto fail;
    }
    self = calloc (1, sizeof (payload_t));
    if (!self) {
        errbuf_set (err, errlen, "payload: out of memory");
        goto fail;
    }
    if (s_key_is (kind, "run"))
        self->kind = PAYLOAD_RUN;
    else if (s_key_is (kind, "exec"))
        self->kind = PAYLOAD_EXEC;
    else {
        errbuf_set (err, errlen, "payload: kind is not \"run\" or \"exec\"");
        goto fail;
    }
    //  Duplicates are found by comparing each key with the earlier ones. A
    //  valid payload has at most 6 keys, and any key past those is either
    //  unknown or a duplicate, so the loop stops early on hostile maps.
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *key = &root->via.map.ptr[i].key;
        const msgpack_object *val = &root->via.map.ptr[i].val;
        char shown[48];
        if (key->type != MSGPACK_OBJECT_STR) {
            errbuf_set (err, errlen, "payload: a map key is not a string");
            goto fail;
        }
        snprintf (shown, sizeof shown, "%.*s",
                  (int) (key->via.str.size > 32 ? 32 : key->via.str.size),
                  key->via.str.ptr);
        for (size_t k = 0; shown[k]; k++)
            if ((unsigned char) shown[k] < 0x20 || (unsigned char) shown[k] >= 0x7f)
                shown[k] = '?';
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object *prior = &root->via.map.ptr[j].key;
            if (prior->type == MSGPACK_OBJECT_STR
                && prior->via.str.size == key->via.str.size
                && memcmp (prior->via.str.ptr, key->via.str.ptr, key->via.str.size)
                       == 0) {
                errbuf_set (err, errlen, "payload: key '%s' given twice", shown);
                goto fail;
            }
        }
        if (s_key_is (key, "kind"))
            continue;
        if (s_key_is (key, "limits")) {
            if (s_decode_limits (&self->limits, val, err, errlen))
                goto fail;
            continue;
        }
        rc = self->kind == PAYLOAD_RUN ? s_decode_run (self, key, val, err, errlen)
                                       : s_decode_exec (self, key, val, err, errlen);
        if (rc == -2) {
            errbuf_set (err, errlen, "payload: unknown key '%s' in a %s payload", shown,
                        payload_kind_name (self->kind));
            goto fail;
        }
        if (rc)
            goto fail;
    }
    if (self->kind == PAYLOAD_RUN) {
        if (!self->library || !self->function) {
            errbuf_set (err, errlen, "payload: run: missing '%s'",
                        self->library ? "function" : "library");
            goto fail;
        }
        if (!self->args) {
            //  No args given: the function gets nil.
            self->args = malloc (1);
            if (!self->args) {
                errbuf_set (err, errlen, "payload: out of memory");
                goto fail;
            }
            self->args[0] = (char) 0xc0;
            self->args_size = 1;
        }
    }
    else if (!self->argv) {
        errbuf_set (err, errlen, "payload: exec: missing 'argv'");
        goto fail;
    }
    msgpack_unpacked_destroy (&unpacked);
    return self;

fail:
    payload_destroy (&self);
    msgpack_unpacked_destroy (&unpacked);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Encoding

static int
s_pack_str (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    if (msgpack_pack_str (pk, len))
        return -1;
    return msgpack_pack_str_body (pk, s, len);
}

int
payload_encode (const payload_t *self, msgpack_sbuffer *sbuf)
{
    assert (self && sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    //  Validate everything first so that nothing is appended on failure.
    if (self->kind == PAYLOAD_RUN) {
        if (!s_library_name_ok (self->library) || !self->function || !*self->function)
            return -1;
        if (self->args
            && payload_msgpack_check (self->args, self->args_size, PAYLOAD_DEPTH_MAX - 1,
                                      NULL, 0))
            return -1;
        int rc = msgpack_pack_map (&pk, 4 + (s_limits_count (&self->limits) ? 1 : 0))
                 || s_encode_limits (&pk, &self->limits) || s_pack_str (&pk, "kind")
                 || s_pack_str (&pk, "run") || s_pack_str (&pk, "library")
                 || s_pack_str (&pk, self->library) || s_pack_str (&pk, "function")
                 || s_pack_str (&pk, self->function) || s_pack_str (&pk, "args");
        if (!rc)
            rc = self->args ? msgpack_sbuffer_write (sbuf, self->args, self->args_size)
                            : msgpack_pack_nil (&pk);
        return rc ? -1 : 0;
    }
    if (self->kind != PAYLOAD_EXEC || !self->argv || self->argc == 0
        || self->argc > PAYLOAD_ARGC_MAX || self->envc > PAYLOAD_ENVC_MAX)
        return -1;
    for (size_t i = 0; i < self->argc; i++)
        if (!self->argv[i] || (i == 0 && !*self->argv[i]))
            return -1;
    for (size_t i = 0; i < self->envc; i++) {
        const char *eq = self->env && self->env[i] ? strchr (self->env[i], '=') : NULL;
        if (!eq || eq == self->env[i])
            return -1;
    }
    if (self->cwd && !*self->cwd)
        return -1;
    size_t entries = 2 + (self->stdin_data ? 1 : 0) + (self->envc ? 1 : 0)
                     + (self->cwd ? 1 : 0) + (s_limits_count (&self->limits) ? 1 : 0);
    int rc = msgpack_pack_map (&pk, entries) || s_encode_limits (&pk, &self->limits)
             || s_pack_str (&pk, "kind") || s_pack_str (&pk, "exec")
             || s_pack_str (&pk, "argv") || msgpack_pack_array (&pk, self->argc);
    for (size_t i = 0; !rc && i < self->argc; i++)
        rc = s_pack_str (&pk, self->argv[i]);
    if (!rc && self->stdin_data)
        rc = s_pack_str (&pk, "stdin") || msgpack_pack_bin (&pk, self->stdin_size)
             || msgpack_pack_bin_body (&pk, self->stdin_data, self->stdin_size);
    if (!rc && self->envc) {
        rc = s_pack_str (&pk, "env") || msgpack_pack_map (&pk, self->envc);
        for (size_t i = 0; !rc && i < self->envc; i++) {
            const char *eq = strchr (self->env[i], '=');
            size_t name_len = (size_t) (eq - self->env[i]);
            rc = msgpack_pack_str (&pk, name_len)
                 || msgpack_pack_str_body (&pk, self->env[i], name_len)
                 || s_pack_str (&pk, eq + 1);
        }
    }
    if (!rc && self->cwd)
        rc = s_pack_str (&pk, "cwd") || s_pack_str (&pk, self->cwd);
    return rc ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Self test

#define s_streq(a, b) (strcmp ((a), (b)) == 0)
#include "tests/testutil.h"

//  Decodes bytes that must be refused, and checks the reason mentions what.
static void
s_expect_bad (const void *data, size_t size, const char *what, bool verbose)
{
    char err[256] = "";
    payload_t *p = payload_decode (data, size, err, sizeof err);
    emq_test_checks++;
    if (p || !strstr (err, what)) {
        TESTUTIL_FAIL_ ("payload_test: expected rejection mentioning '%s', got %s '%s'",
                        what, p ? "success" : "error", err);
        payload_destroy (&p);
        return;
    }
    if (verbose)
        printf ("  refused: %s\n", err);
}

//  Packs a map from alternating key/value C strings; "" values stay strings.
static void
s_pack_pairs (msgpack_sbuffer *sbuf, size_t n, const char **pairs)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, n);
    for (size_t i = 0; i < 2 * n; i++)
        s_pack_str (&pk, pairs[i]);
}

void
payload_test (bool verbose)
{
    printf (" * payload: ");
    if (verbose)
        printf ("\n");
    char err[256];

    //  Round trip: run
    payload_t run = { .kind = PAYLOAD_RUN,
                      .library = "libemq_examples.so",
                      .function = "upper",
                      .args = "\xa3"
                              "abc",
                      .args_size = 4 };
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    CHECK (payload_encode (&run, &sbuf) == 0);
    payload_t *p = payload_decode (sbuf.data, sbuf.size, err, sizeof err);
    CHECK (p);
    CHECK (p && p->kind == PAYLOAD_RUN);
    CHECK (p && s_streq (p->library, "libemq_examples.so"));
    CHECK (p && s_streq (p->function, "upper"));
    CHECK (p && p->args_size == 4
           && memcmp (p->args,
                      "\xa3"
                      "abc",
                      4)
                  == 0);
    payload_destroy (&p);
    CHECK (p == NULL);
    payload_destroy (&p);  // NULL is fine

    //  Limits, either kind: round trip, and refusals.
    run.limits = (payload_limits_t){ .as_bytes = 1 << 28, .cpu_s = 2 };
    msgpack_sbuffer_clear (&sbuf);
    CHECK (payload_encode (&run, &sbuf) == 0);
    p = payload_decode (sbuf.data, sbuf.size, err, sizeof err);
    CHECK (p && p->limits.as_bytes == 1 << 28 && p->limits.cpu_s == 2
           && p->limits.nproc == 0 && p->limits.nofile == 0);
    payload_destroy (&p);
    run.limits = (payload_limits_t){ 0 };
    //  {"kind":"exec","argv":["x"],"limits":{...}}
    const char exec_head[] = "\x83\xa4"
                             "kind"
                             "\xa4"
                             "exec"
                             "\xa4"
                             "argv"
                             "\x91\xa1"
                             "x"
                             "\xa6"
                             "limits";
    struct {
        const char *limits;
        size_t size;
        const char *what;
    } bad_limits[] = {
        { "\x81\xa2"
          "as"
          "\x00",
          5, "positive integer" },
        { "\x81\xa2"
          "as"
          "\xff",
          5, "positive integer" },
        { "\x81\xa3"
          "mem"
          "\x01",
          6, "unknown limit" },
        { "\x82\xa3"
          "cpu"
          "\x01\xa3"
          "cpu"
          "\x02",
          11, "given twice" },
        { "\x91\x01", 2, "not a map" },
    };
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
        char bytes[64];
        memcpy (bytes, exec_head, sizeof exec_head - 1);
        memcpy (bytes + sizeof exec_head - 1, bad_limits[i].limits, bad_limits[i].size);
        s_expect_bad (bytes, sizeof exec_head - 1 + bad_limits[i].size,
                      bad_limits[i].what, verbose);
    }
    {
        char bytes[64];
        memcpy (bytes, exec_head, sizeof exec_head - 1);
        memcpy (bytes + sizeof exec_head - 1,
                "\x81\xa6"
                "nofile"
                "\x10",
                9);
        p = payload_decode (bytes, sizeof exec_head - 1 + 9, err, sizeof err);
        CHECK (p && p->limits.nofile == 16);
        payload_destroy (&p);
    }
    msgpack_sbuffer_clear (&sbuf);

    //  run without args gets nil
    run.args = NULL;
    run.args_size = 0;
    CHECK (payload_encode (&run, &sbuf) == 0);
    p = payload_decode (sbuf.data, sbuf.size, err, sizeof err);
    CHECK (p && p->args_size == 1 && (uint8_t) p->args[0] == 0xc0);
    payload_destroy (&p);
    msgpack_sbuffer_clear (&sbuf);

    //  Encoding refuses what decoding would refuse
    run.library = "../evil.so";
    CHECK (payload_encode (&run, &sbuf) == -1);
    run.library = "lib.so";
    run.args = "\x92\x01";  // array of 2 with one item
    run.args_size = 2;
    CHECK (payload_encode (&run, &sbuf) == -1);
    CHECK (sbuf.size == 0);

    //  Round trip: exec with everything
    char *argv[] = { "/bin/echo", "hello", "", NULL };
    char *env[] = { "A=1", "EMPTY=", "B=x=y", NULL };
    payload_t exec = { .kind = PAYLOAD_EXEC,
                       .argv = argv,
                       .argc = 3,
                       .stdin_data = "in\0put",
                       .stdin_size = 6,
                       .env = env,
                       .envc = 3,
                       .cwd = "/tmp" };
    CHECK (payload_encode (&exec, &sbuf) == 0);
    p = payload_decode (sbuf.data, sbuf.size, err, sizeof err);
    CHECK (p);
    CHECK (p && p->kind == PAYLOAD_EXEC && p->argc == 3);
    CHECK (p && s_streq (p->argv[0], "/bin/echo") && s_streq (p->argv[2], "")
           && !p->argv[3]);
    CHECK (p && p->stdin_size == 6 && memcmp (p->stdin_data, "in\0put", 6) == 0);
    CHECK (p && p->envc == 3 && s_streq (p->env[1], "EMPTY=")
           && s_streq (p->env[2], "B=x=y"));
    CHECK (p && !p->env[3]);
    CHECK (p && s_streq (p->cwd, "/tmp"));
    payload_destroy (&p);

    //  Every malformed case is refused with a reason. Truncations of a valid
    //  payload first: every prefix must fail cleanly.
    for (size_t cut = 0; cut < sbuf.size; cut++) {
        p = payload_decode (sbuf.data, cut, err, sizeof err);
        CHECK (p == NULL);
    }
    //  Trailing bytes
    char *longer = malloc (sbuf.size + 1);
    CHECK (longer);
    memcpy (longer, sbuf.data, sbuf.size);
    longer[sbuf.size] = (char) 0xc0;
    s_expect_bad (longer, sbuf.size + 1, "unexpected bytes", verbose);
    free (longer);
    msgpack_sbuffer_clear (&sbuf);

    //  Minimal exec
    exec.stdin_data = NULL;
    exec.env = NULL;
    exec.envc = 0;
    exec.cwd = NULL;
    exec.argc = 1;
    CHECK (payload_encode (&exec, &sbuf) == 0);
    p = payload_decode (sbuf.data, sbuf.size, err, sizeof err);
    CHECK (p && p->argc == 1 && !p->env && !p->cwd && !p->stdin_data);
    payload_destroy (&p);
    msgpack_sbuffer_clear (&sbuf);
    exec.argc = 0;
    CHECK (payload_encode (&exec, &sbuf) == -1);

    s_expect_bad (NULL, 0, "empty", verbose);
    s_expect_bad ("\xc1", 1, "reserved type byte", verbose);
    s_expect_bad ("\x93\x01", 2, "claims 3 items", verbose);
    s_expect_bad ("\xdd\xff\xff\xff\xff", 5, "claims 4294967295 items", verbose);
    s_expect_bad ("\xdb\x7f\xff\xff\xff"
                  "ab",
                  7, "truncated", verbose);
    s_expect_bad ("\xa5"
                  "abc",
                  4, "truncated", verbose);
    s_expect_bad ("\x01", 1, "not a msgpack map", verbose);
    s_expect_bad ("\x80", 1, "no 'kind'", verbose);

    //  Nesting 40 deep
    char deep[41];
    memset (deep, 0x91, 40);
    deep[40] = (char) 0xc0;
    s_expect_bad (deep, sizeof deep, "nested deeper", verbose);

    const char *bad_kind[] = { "kind", "shell" };
    s_pack_pairs (&sbuf, 1, bad_kind);
    s_expect_bad (sbuf.data, sbuf.size, "kind is not", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *two_kinds[] = { "kind", "run", "kind", "run" };
    s_pack_pairs (&sbuf, 2, two_kinds);
    s_expect_bad (sbuf.data, sbuf.size, "given twice", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *dup[] = { "kind",    "run",  "library",  "a.so",
                          "library", "b.so", "function", "f" };
    s_pack_pairs (&sbuf, 4, dup);
    s_expect_bad (sbuf.data, sbuf.size, "'library' given twice", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *no_function[] = { "kind", "run", "library", "a.so" };
    s_pack_pairs (&sbuf, 2, no_function);
    s_expect_bad (sbuf.data, sbuf.size, "missing 'function'", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *path_lib[] = { "kind", "run", "library", "/lib/x.so", "function", "f" };
    s_pack_pairs (&sbuf, 3, path_lib);
    s_expect_bad (sbuf.data, sbuf.size, "not a path", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *unknown[] = { "kind",     "run", "library", "a.so",
                              "function", "f",   "argv",    "x" };
    s_pack_pairs (&sbuf, 4, unknown);
    s_expect_bad (sbuf.data, sbuf.size, "unknown key 'argv' in a run", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *argv_str[] = { "kind", "exec", "argv", "/bin/true" };
    s_pack_pairs (&sbuf, 2, argv_str);
    s_expect_bad (sbuf.data, sbuf.size, "argv is not an array", verbose);
    msgpack_sbuffer_clear (&sbuf);

    const char *no_argv[] = { "kind", "exec", "cwd", "/" };
    s_pack_pairs (&sbuf, 2, no_argv);
    s_expect_bad (sbuf.data, sbuf.size, "missing 'argv'", verbose);
    msgpack_sbuffer_clear (&sbuf);

    //  Hand-built: exec with argv [1], with a NUL inside argv[0], with an
    //  env value that is not a string, with an '=' in an env name, with a
    //  non-string key.
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    s_pack_str (&pk, "kind");
    s_pack_str (&pk, "exec");
    s_pack_str (&pk, "argv");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_int (&pk, 1);
    s_expect_bad (sbuf.data, sbuf.size, "argv[0] is not a string", verbose);
    msgpack_sbuffer_clear (&sbuf);

    msgpack_pack_map (&pk, 2);
    s_pack_str (&pk, "kind");
    s_pack_str (&pk, "exec");
    s_pack_str (&pk, "argv");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_str (&pk, 3);
    msgpack_pack_str_body (&pk, "a\0b", 3);
    s_expect_bad (sbuf.data, sbuf.size, "NUL", verbose);
    msgpack_sbuffer_clear (&sbuf);

    msgpack_pack_map (&pk, 3);
    s_pack_str (&pk, "kind");
    s_pack_str (&pk, "exec");
    s_pack_str (&pk, "argv");
    msgpack_pack_array (&pk, 1);
    s_pack_str (&pk, "x");
    s_pack_str (&pk, "env");
    msgpack_pack_map (&pk, 1);
    s_pack_str (&pk, "A");
    msgpack_pack_true (&pk);
    s_expect_bad (sbuf.data, sbuf.size, "env value of A is not a string", verbose);
    msgpack_sbuffer_clear (&sbuf);

    msgpack_pack_map (&pk, 3);
    s_pack_str (&pk, "kind");
    s_pack_str (&pk, "exec");
    s_pack_str (&pk, "argv");
    msgpack_pack_array (&pk, 1);
    s_pack_str (&pk, "x");
    s_pack_str (&pk, "env");
    msgpack_pack_map (&pk, 1);
    s_pack_str (&pk, "A=B");
    s_pack_str (&pk, "c");
    s_expect_bad (sbuf.data, sbuf.size, "contains '='", verbose);
    msgpack_sbuffer_clear (&sbuf);

    msgpack_pack_map (&pk, 2);
    s_pack_str (&pk, "kind");
    s_pack_str (&pk, "exec");
    msgpack_pack_int (&pk, 7);
    s_pack_str (&pk, "x");
    s_expect_bad (sbuf.data, sbuf.size, "key is not a string", verbose);
    msgpack_sbuffer_clear (&sbuf);

    msgpack_pack_map (&pk, 3);
    s_pack_str (&pk, "kind");
    s_pack_str (&pk, "exec");
    s_pack_str (&pk, "argv");
    msgpack_pack_array (&pk, 1);
    s_pack_str (&pk, "x");
    s_pack_str (&pk, "stdin");
    msgpack_pack_int (&pk, 5);
    s_expect_bad (sbuf.data, sbuf.size, "stdin is not bytes", verbose);
    msgpack_sbuffer_clear (&sbuf);

    //  Fuzz: random bytes and random mutations of a valid payload never
    //  crash and never leak (run under valgrind / ASan).
    exec.argc = 2;
    exec.env = env;
    exec.envc = 2;
    CHECK (payload_encode (&exec, &sbuf) == 0);
    uint8_t buf[256];
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t size;
        if (round % 2 && sbuf.size <= sizeof buf) {
            size = sbuf.size;
            memcpy (buf, sbuf.data, size);
            for (int k = 0; k < 3; k++) {
                seed = seed * 1103515245 + 12345;
                buf[(seed >> 8) % size] = (uint8_t) (seed >> 16);
            }
        }
        else {
            seed = seed * 1103515245 + 12345;
            size = (seed >> 8) % 64;
            for (size_t k = 0; k < size; k++) {
                seed = seed * 1103515245 + 12345;
                buf[k] = (uint8_t) (seed >> 16);
            }
        }
        p = payload_decode (buf, size, err, sizeof err);
        CHECK (p || *err);
        payload_destroy (&p);
    }
    msgpack_sbuffer_destroy (&sbuf);
    CHECK (s_streq (payload_kind_name (PAYLOAD_EXEC), "exec"));

    //  payload_pack_str: text (EventMQ's JSON reply) as one msgpack str.
    const char *reply = "{\"value\": 5}";
    zframe_t *frame = payload_pack_str (reply, strlen (reply));
    CHECK (frame != NULL);
    if (frame) {
        CHECK (payload_msgpack_check (zframe_data (frame), zframe_size (frame), 1, err,
                                      sizeof err)
               == 0);
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        CHECK (msgpack_unpack_next (&unpacked, (const char *) zframe_data (frame),
                                    zframe_size (frame), NULL)
               == MSGPACK_UNPACK_SUCCESS);
        msgpack_object *object = &unpacked.data;
        CHECK (object->type == MSGPACK_OBJECT_STR);
        CHECK_MEMEQ (object->via.str.ptr, object->via.str.size, reply, strlen (reply));
        msgpack_unpacked_destroy (&unpacked);
        zframe_destroy (&frame);
    }
    //  Empty and long (str 32 header) texts, and bytes that are not UTF-8.
    frame = payload_pack_str ("", 0);
    CHECK (frame && zframe_size (frame) == 1 && zframe_data (frame)[0] == 0xa0);
    zframe_destroy (&frame);
    char *long_text = malloc (70000);
    REQUIRE (long_text);
    memset (long_text, 0xff, 70000);
    frame = payload_pack_str (long_text, 70000);
    CHECK (frame && zframe_size (frame) == 70005 && zframe_data (frame)[0] == 0xdb);
    CHECK (frame && memcmp (zframe_data (frame) + 5, long_text, 70000) == 0);
    zframe_destroy (&frame);
    free (long_text);
    printf ("OK\n");
}
