/*  json — msgpack <-> JSON conversion with jansson. See json.h for the
    mapping. Both directions recurse, bounded by JSON_DEPTH_MAX; jansson
    itself parses at most 2048 levels, which we never reach because the
    conversion stops first.
*/
#include "json.h"
#include "payload.h"
#include "errbuf.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
json_base64 (const void *data, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (size > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    const unsigned char *in = data;
    char *out = malloc ((size + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    char *p = out;
    size_t i = 0;
    for (; i + 2 < size; i += 3) {
        uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = alphabet[(v >> 6) & 63];
        *p++ = alphabet[v & 63];
    }
    if (i < size) {
        uint32_t v =
            (uint32_t) in[i] << 16 | (i + 1 < size ? (uint32_t) in[i + 1] << 8 : 0);
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p = 0;
    return out;
}

//  --------------------------------------------------------------------------
//  JSON -> msgpack

static int
s_pack_json (msgpack_packer *pk, json_t *value, int depth, char *err, size_t errlen)
{
    switch (json_typeof (value)) {
        case JSON_NULL:
            return msgpack_pack_nil (pk);
        case JSON_TRUE:
            return msgpack_pack_true (pk);
        case JSON_FALSE:
            return msgpack_pack_false (pk);
        case JSON_INTEGER:
            return msgpack_pack_int64 (pk, (int64_t) json_integer_value (value));
        case JSON_REAL:
            return msgpack_pack_double (pk, json_real_value (value));
        case JSON_STRING: {
            size_t len = json_string_length (value);
            return msgpack_pack_str (pk, len)
                   || msgpack_pack_str_body (pk, json_string_value (value), len);
        }
        case JSON_ARRAY: {
            if (depth >= JSON_DEPTH_MAX)
                return errbuf_set (err, errlen, "JSON nested deeper than %d levels",
                                   JSON_DEPTH_MAX);
            size_t n = json_array_size (value);
            if (msgpack_pack_array (pk, n))
                return -1;
            for (size_t i = 0; i < n; i++)
                if (s_pack_json (pk, json_array_get (value, i), depth + 1, err, errlen))
                    return -1;
            return 0;
        }
        case JSON_OBJECT: {
            if (depth >= JSON_DEPTH_MAX)
                return errbuf_set (err, errlen, "JSON nested deeper than %d levels",
                                   JSON_DEPTH_MAX);
            if (msgpack_pack_map (pk, json_object_size (value)))
                return -1;
            const char *key;
            size_t key_len;
            json_t *item;
            json_object_keylen_foreach (value, key, key_len, item)
            {
                if (msgpack_pack_str (pk, key_len)
                    || msgpack_pack_str_body (pk, key, key_len)
                    || s_pack_json (pk, item, depth + 1, err, errlen))
                    return -1;
            }
            return 0;
        }
    }
    return errbuf_set (err, errlen, "JSON value of unknown type");
}

int
json_to_msgpack (const char *json_text, msgpack_sbuffer *sbuf, char *err, size_t errlen)
{
    if (!json_text || !sbuf)
        return errbuf_set (err, errlen, "no JSON text");
    json_error_t error;
    json_t *root = json_loads (
        json_text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &error);
    if (!root)
        return errbuf_set (err, errlen, "invalid JSON at line %d, column %d: %s",
                           error.line, error.column, error.text);
    size_t saved = sbuf->size;
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    *err = 0;
    int rc = s_pack_json (&pk, root, 0, err, errlen);
    json_decref (root);
    if (rc) {
        sbuf->size = saved;  // drop whatever was half written
        if (!*err)
            errbuf_set (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  msgpack -> JSON

//  A JSON string if the bytes are UTF-8, else {"$base64": ...}.
static json_t *
s_bytes (const char *ptr, size_t size)
{
    json_t *value = json_stringn (ptr, size);  // NULL when not valid UTF-8
    if (value)
        return value;
    char *text = json_base64 (ptr, size);
    if (!text)
        return NULL;
    value = json_pack ("{s:s}", "$base64", text);
    free (text);
    return value;
}

static json_t *s_to_json (const msgpack_object *obj, int depth, char *err, size_t errlen);

//  Sets key -> item in object; the key is the string itself when the
//  msgpack key is a UTF-8 string, else the key's compact JSON text.
static int
s_object_set (json_t *object, const msgpack_object *key, json_t *item, int depth,
              char *err, size_t errlen)
{
    if (key->type == MSGPACK_OBJECT_STR || key->type == MSGPACK_OBJECT_BIN) {
        const char *ptr =
            key->type == MSGPACK_OBJECT_STR ? key->via.str.ptr : key->via.bin.ptr;
        size_t size =
            key->type == MSGPACK_OBJECT_STR ? key->via.str.size : key->via.bin.size;
        //  json_object_setn_new refuses invalid UTF-8 and then frees item.
        json_incref (item);
        if (json_object_setn_new (object, ptr, size, item) == 0) {
            json_decref (item);
            return 0;
        }
    }
    json_t *key_json = s_to_json (key, depth, err, errlen);
    if (!key_json) {
        json_decref (item);
        return -1;
    }
    char *text = json_dumps (key_json, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (key_json);
    if (!text) {
        json_decref (item);
        return errbuf_set (err, errlen, "out of memory");
    }
    int rc = json_object_set_new (object, text, item);
    free (text);
    return rc ? errbuf_set (err, errlen, "out of memory") : 0;
}

static json_t *
s_to_json (const msgpack_object *obj, int depth, char *err, size_t errlen)
{
    json_t *value = NULL;
    switch (obj->type) {
        case MSGPACK_OBJECT_NIL:
            value = json_null ();
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            value = json_boolean (obj->via.boolean);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            value = obj->via.u64 <= INT64_MAX ? json_integer ((json_int_t) obj->via.u64)
                                              : json_real ((double) obj->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            value = json_integer ((json_int_t) obj->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            value = isfinite (obj->via.f64) ? json_real (obj->via.f64) : json_null ();
            break;
        case MSGPACK_OBJECT_STR:
            value = s_bytes (obj->via.str.ptr, obj->via.str.size);
            break;
        case MSGPACK_OBJECT_BIN:
            value = s_bytes (obj->via.bin.ptr, obj->via.bin.size);
            break;
        case MSGPACK_OBJECT_EXT: {
            char *text = json_base64 (obj->via.ext.ptr, obj->via.ext.size);
            if (text)
                value = json_pack ("{s:i,s:s}", "$ext", (int) obj->via.ext.type,
                                   "$base64", text);
            free (text);
            break;
        }
        case MSGPACK_OBJECT_ARRAY:
            if (depth >= JSON_DEPTH_MAX) {
                errbuf_set (err, errlen, "msgpack nested deeper than %d levels",
                            JSON_DEPTH_MAX);
                return NULL;
            }
            value = json_array ();
            for (uint32_t i = 0; value && i < obj->via.array.size; i++) {
                json_t *item = s_to_json (&obj->via.array.ptr[i], depth + 1, err, errlen);
                if (!item || json_array_append_new (value, item)) {
                    json_decref (value);
                    return NULL;
                }
            }
            break;
        case MSGPACK_OBJECT_MAP:
            if (depth >= JSON_DEPTH_MAX) {
                errbuf_set (err, errlen, "msgpack nested deeper than %d levels",
                            JSON_DEPTH_MAX);
                return NULL;
            }
            value = json_object ();
            for (uint32_t i = 0; value && i < obj->via.map.size; i++) {
                const msgpack_object_kv *kv = &obj->via.map.ptr[i];
                json_t *item = s_to_json (&kv->val, depth + 1, err, errlen);
                if (!item
                    || s_object_set (value, &kv->key, item, depth + 1, err, errlen)) {
                    json_decref (value);
                    return NULL;
                }
            }
            break;
        default:
            errbuf_set (err, errlen, "msgpack value of unknown type %d", (int) obj->type);
            return NULL;
    }
    if (!value)
        errbuf_set (err, errlen, "out of memory");
    return value;
}

char *
msgpack_to_json (const msgpack_object *obj, char *err, size_t errlen)
{
    if (!obj) {
        errbuf_set (err, errlen, "no msgpack value");
        return NULL;
    }
    if (err && errlen)
        *err = 0;
    json_t *value = s_to_json (obj, 0, err, errlen);
    if (!value)
        return NULL;
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (value);
    if (!text)
        errbuf_set (err, errlen, "out of memory");
    return text;
}

char *
json_from_msgpack (const void *data, size_t size, char *err, size_t errlen)
{
    if (payload_msgpack_check (data, size, PAYLOAD_DEPTH_MAX, err, errlen))
        return NULL;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    char *text = NULL;
    if (msgpack_unpack_next (&unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS)
        errbuf_set (err, errlen, "msgpack cannot be unpacked");
    else
        text = msgpack_to_json (&unpacked.data, err, errlen);
    msgpack_unpacked_destroy (&unpacked);
    return text;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

//  JSON text -> msgpack -> JSON text must give expect.
static void
s_round_trip (const char *input, const char *expect, bool verbose)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    char err[256];
    emq_test_checks++;
    if (json_to_msgpack (input, &sbuf, err, sizeof err)) {
        TESTUTIL_FAIL_ ("json_test: '%s' refused: %s", input, err);
        msgpack_sbuffer_destroy (&sbuf);
        return;
    }
    char *output = json_from_msgpack (sbuf.data, sbuf.size, err, sizeof err);
    emq_test_checks++;
    if (!output || strcmp (output, expect))
        TESTUTIL_FAIL_ ("json_test: '%s' -> '%s', expected '%s' (%s)", input,
                        output ? output : "NULL", expect, output ? "" : err);
    if (verbose)
        printf ("  %s -> %s\n", input, output ? output : "NULL");
    free (output);
    msgpack_sbuffer_destroy (&sbuf);
}

static char *
s_msgpack_json (msgpack_sbuffer *sbuf)
{
    char err[256];
    char *text = json_from_msgpack (sbuf->data, sbuf->size, err, sizeof err);
    msgpack_sbuffer_clear (sbuf);
    return text;
}

void
json_test (bool verbose)
{
    printf (" * json: ");
    if (verbose)
        printf ("\n");

    s_round_trip ("\"abc\"", "\"abc\"", verbose);
    s_round_trip ("null", "null", verbose);
    s_round_trip ("[1, -2, 3.5, true, false, null]", "[1,-2,3.5,true,false,null]",
                  verbose);
    s_round_trip ("{\"a\": {\"b\": [1, {\"c\": \"\\u00e9\"}]}}",
                  "{\"a\":{\"b\":[1,{\"c\":\"\xc3\xa9\"}]}}", verbose);
    s_round_trip ("9223372036854775807", "9223372036854775807", verbose);
    s_round_trip ("-9223372036854775808", "-9223372036854775808", verbose);
    s_round_trip ("\"a\\u0000b\"", "\"a\\u0000b\"", verbose);
    s_round_trip ("{}", "{}", verbose);

    //  Invalid JSON and duplicate keys are refused with a position.
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    char err[256];
    CHECK (json_to_msgpack ("[1, 2", &sbuf, err, sizeof err) == -1);
    CHECK (strstr (err, "invalid JSON at line 1"));
    if (verbose)
        printf ("  refused: %s\n", err);
    CHECK (json_to_msgpack ("{\"a\":1,\"a\":2}", &sbuf, err, sizeof err) == -1);
    CHECK (json_to_msgpack ("", &sbuf, err, sizeof err) == -1);
    CHECK (json_to_msgpack ("abc", &sbuf, err, sizeof err) == -1);
    CHECK (sbuf.size == 0);

    //  Depth limit, both directions, and the buffer is left as it was.
    char deep[200];
    memset (deep, '[', 40);
    memset (deep + 40, ']', 40);
    deep[80] = 0;
    CHECK (json_to_msgpack ("7", &sbuf, err, sizeof err) == 0);
    CHECK (json_to_msgpack (deep, &sbuf, err, sizeof err) == -1);
    CHECK (strstr (err, "deeper"));
    CHECK (sbuf.size == 1);
    msgpack_sbuffer_clear (&sbuf);
    //  Exactly JSON_DEPTH_MAX levels is fine.
    memset (deep, '[', JSON_DEPTH_MAX);
    memset (deep + JSON_DEPTH_MAX, ']', JSON_DEPTH_MAX);
    deep[2 * JSON_DEPTH_MAX] = 0;
    CHECK (json_to_msgpack (deep, &sbuf, err, sizeof err) == 0);
    msgpack_sbuffer_clear (&sbuf);

    msgpack_object nested[JSON_DEPTH_MAX + 2];
    for (int i = 0; i < JSON_DEPTH_MAX + 2; i++) {
        nested[i].type = MSGPACK_OBJECT_ARRAY;
        nested[i].via.array.size = i + 1 < JSON_DEPTH_MAX + 2 ? 1 : 0;
        nested[i].via.array.ptr = i + 1 < JSON_DEPTH_MAX + 2 ? &nested[i + 1] : NULL;
    }
    CHECK (msgpack_to_json (&nested[0], err, sizeof err) == NULL);
    CHECK (strstr (err, "deeper"));

    //  bin: UTF-8 -> string, other bytes -> base64; ext; odd keys; floats.
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_bin (&pk, 6);
    msgpack_pack_bin_body (&pk, "hello\n", 6);
    char *text = s_msgpack_json (&sbuf);
    CHECK (text && strcmp (text, "\"hello\\n\"") == 0);
    free (text);

    msgpack_pack_bin (&pk, 4);
    msgpack_pack_bin_body (&pk, "\xff\x00\x01\x02", 4);
    text = s_msgpack_json (&sbuf);
    CHECK (text && strcmp (text, "{\"$base64\":\"/wABAg==\"}") == 0);
    free (text);

    msgpack_pack_str (&pk, 2);
    msgpack_pack_str_body (&pk, "\xc3\x28", 2);  // invalid UTF-8 in a str
    text = s_msgpack_json (&sbuf);
    CHECK (text && strcmp (text, "{\"$base64\":\"wyg=\"}") == 0);
    free (text);

    msgpack_pack_ext (&pk, 3, 5);
    msgpack_pack_ext_body (&pk, "abc", 3);
    text = s_msgpack_json (&sbuf);
    CHECK (text && strcmp (text, "{\"$ext\":5,\"$base64\":\"YWJj\"}") == 0);
    free (text);

    msgpack_pack_map (&pk, 3);
    msgpack_pack_int (&pk, 1);
    msgpack_pack_str (&pk, 1);
    msgpack_pack_str_body (&pk, "x", 1);
    msgpack_pack_nil (&pk);
    msgpack_pack_double (&pk, NAN);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    msgpack_pack_float (&pk, 0.5f);
    text = s_msgpack_json (&sbuf);
    if (verbose)
        printf ("  map: %s\n", text ? text : "NULL");
    fflush (stdout);
    CHECK (text
           && strcmp (text, "{\"1\":\"x\",\"null\":null,\"1.8446744073709552e19\":0.5}")
                  == 0);
    free (text);

    //  Raw bytes are checked strictly before unpacking.
    CHECK (json_from_msgpack ("\x92\x01", 2, err, sizeof err) == NULL);
    CHECK (strstr (err, "claims"));
    CHECK (json_from_msgpack ("\x01\x02", 2, err, sizeof err) == NULL);
    CHECK (strstr (err, "unexpected bytes"));
    CHECK (json_from_msgpack (NULL, 0, err, sizeof err) == NULL);

    //  base64 padding
    const char *b64[][2] = { { "", "" },
                             { "f", "Zg==" },
                             { "fo", "Zm8=" },
                             { "foo", "Zm9v" },
                             { "foob", "Zm9vYg==" } };
    for (size_t i = 0; i < sizeof b64 / sizeof b64[0]; i++) {
        text = json_base64 (b64[i][0], strlen (b64[i][0]));
        CHECK (text && strcmp (text, b64[i][1]) == 0);
        free (text);
    }

    //  Fuzz: random msgpack bytes never crash the converter.
    unsigned seed = 777;
    uint8_t buf[64];
    for (int round = 0; round < 20000; round++) {
        seed = seed * 1103515245 + 12345;
        size_t size = 1 + (seed >> 8) % sizeof buf;
        for (size_t k = 0; k < size; k++) {
            seed = seed * 1103515245 + 12345;
            buf[k] = (uint8_t) (seed >> 16);
        }
        text = json_from_msgpack (buf, size, err, sizeof err);
        free (text);
    }
    msgpack_sbuffer_destroy (&sbuf);
    printf ("OK\n");
}
