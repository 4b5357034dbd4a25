/*  queuespec — the queue list of a job manager. See queuespec.h. */
#include "queuespec.h"
#include "errbuf.h"
#include "numparse.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

//  EventMQ's job manager started with -Q sends "": the default queue.
#define S_DEFAULT_LIST "[[10,\"default\"]]"

//  A list being built; specs has room for QUEUESPEC_COUNT_MAX.
typedef struct {
    queuespec_t *specs;
    size_t count;
} s_list_t;

int
queuespec_name_check (const char *name, char *err, size_t errlen)
{
    size_t len = strlen (name);
    bool ok = len > 0 && len <= QUEUESPEC_NAME_MAX;
    for (const char *p = name; ok && *p; p++)
        ok = (unsigned char) *p > 0x20 && *p != 0x7F && *p != '"' && *p != ',';
    return ok ? 0 : errbuf_set (err, errlen, "a queue name has " QUEUESPEC_NAME_RULE);
}

//  Adds the item-th queue (1-based, for messages) after checking it against
//  the rules and the queues before it.
static int
s_add (s_list_t *list, size_t item, int64_t weight, const char *name, char *err,
       size_t errlen)
{
    if (list->count == QUEUESPEC_COUNT_MAX)
        return errbuf_set (err, errlen, "more than %d queues", QUEUESPEC_COUNT_MAX);
    if (weight < 0 || weight > QUEUESPEC_WEIGHT_MAX)
        return errbuf_set (err, errlen,
                           "queue item %zu: weights are whole numbers in "
                           "0..%d",
                           item, QUEUESPEC_WEIGHT_MAX);
    char why[128];
    if (queuespec_name_check (name, why, sizeof why))
        return errbuf_set (err, errlen, "queue item %zu: %s", item, why);
    for (size_t i = 0; i < list->count; i++)
        if (strcmp (list->specs[i].name, name) == 0)
            return errbuf_set (err, errlen, "queue \"%s\" is repeated (each queue once)",
                               name);
    queuespec_t *spec = &list->specs[list->count++];
    spec->weight = (uint32_t) weight;
    strcpy (spec->name, name);  // length checked above
    return 0;
}

//  [[weight,"name"] or "name", ...], in the order written.
static int
s_parse_json (s_list_t *list, const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads (text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return errbuf_set (err, errlen,
                           "queues are not JSON [[weight,\"name\"],...] (%s)", jerr.text);
    int rc = 0;
    if (!json_is_array (root))
        rc = errbuf_set (err, errlen,
                         "queues are not a JSON array [[weight,\"name\"],...]");
    size_t index;
    json_t *item;
    json_array_foreach (root, index, item)
    {
        if (rc)
            break;
        json_t *name = item;
        json_int_t weight = QUEUESPEC_WEIGHT_DEFAULT;
        if (json_is_array (item)) {
            name = json_array_get (item, 1);
            weight = json_integer_value (json_array_get (item, 0));
            if (json_array_size (item) != 2
                || !json_is_integer (json_array_get (item, 0)))
                name = NULL;
        }
        if (!json_is_string (name))
            rc = errbuf_set (err, errlen,
                             "queue item %zu is not [weight, \"name\"] or "
                             "\"name\"",
                             index + 1);
        else
            rc = s_add (list, index + 1, weight, json_string_value (name), err, errlen);
    }
    json_decref (root);
    return rc;
}

//  "weight,name name ..." (EventMQ's -Q flag), in the order written.
static int
s_parse_words (s_list_t *list, const char *text, char *err, size_t errlen)
{
    char *copy = strdup (text);
    if (!copy)
        return errbuf_set (err, errlen, "out of memory");
    int rc = 0;
    size_t item = 0;
    char *save = NULL;
    for (char *word = strtok_r (copy, " \t", &save); word && rc == 0;
         word = strtok_r (NULL, " \t", &save)) {
        int64_t weight = QUEUESPEC_WEIGHT_DEFAULT;
        char *name = word;
        char *comma = strchr (word, ',');
        if (comma) {
            name = comma + 1;
            if (numparse_int_n (word, (size_t) (comma - word), INT64_MIN, INT64_MAX,
                                &weight)) {
                rc = errbuf_set (err, errlen,
                                 "queue item %zu: \"weight,name ...\" with a "
                                 "whole-number weight",
                                 item + 1);
                break;
            }
        }
        rc = s_add (list, ++item, weight, name, err, errlen);
    }
    free (copy);
    return rc;
}

//  Parses JSON or words into a new list, in the order written.
static queuespec_t *
s_parse (const char *text, bool words_ok, size_t *count, char *err, size_t errlen)
{
    *count = 0;
    s_list_t list = { calloc (QUEUESPEC_COUNT_MAX, sizeof (queuespec_t)), 0 };
    if (!list.specs) {
        errbuf_set (err, errlen, "out of memory");
        return NULL;
    }
    const char *start = text;
    while (isspace ((unsigned char) *start))
        start++;
    int rc = words_ok && *start != '[' ? s_parse_words (&list, text, err, errlen)
                                       : s_parse_json (&list, text, err, errlen);
    if (rc == 0 && list.count == 0)
        rc = errbuf_set (err, errlen, "at least one queue is needed");
    if (rc) {
        free (list.specs);
        return NULL;
    }
    *count = list.count;
    return list.specs;
}

queuespec_t *
queuespec_parse (const char *text, size_t *count, char *err, size_t errlen)
{
    queuespec_t *specs =
        s_parse (*text ? text : S_DEFAULT_LIST, false, count, err, errlen);
    //  Highest weight first, stable (insertion sort: lists are short).
    for (size_t i = 1; specs && i < *count; i++) {
        queuespec_t key = specs[i];
        size_t j = i;
        for (; j > 0 && specs[j - 1].weight < key.weight; j--)
            specs[j] = specs[j - 1];
        specs[j] = key;
    }
    return specs;
}

char *
queuespec_setting (const char *text, char *err, size_t errlen)
{
    size_t count;
    queuespec_t *specs = s_parse (text, true, &count, err, errlen);
    if (!specs)
        return NULL;
    json_t *array = json_array ();
    int rc = array ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = json_array_append_new (
            array, json_pack ("[Is]", (json_int_t) specs[i].weight, specs[i].name));
    char *json = rc == 0 ? json_dumps (array, JSON_COMPACT) : NULL;
    if (!json)
        errbuf_set (err, errlen, "out of memory");
    json_decref (array);
    free (specs);
    return json;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
queuespec_test (bool verbose)
{
    if (verbose)
        printf (" * queuespec: ");
    char err[256];
    size_t count = 99;
    //  Highest weight first; ties keep their order; bare names weigh 10.
    queuespec_t *specs =
        queuespec_parse ("[[10, \"default\"], [20, \"heavy\"], \"plain\", "
                         "[0, \"idle\"]]",
                         &count, err, sizeof err);
    REQUIRE (specs && count == 4);
    CHECK_STREQ (specs[0].name, "heavy");
    CHECK_EQ (specs[0].weight, 20);
    CHECK_STREQ (specs[1].name, "default");
    CHECK_STREQ (specs[2].name, "plain");
    CHECK_EQ (specs[2].weight, 10);
    CHECK_STREQ (specs[3].name, "idle");
    CHECK_EQ (specs[3].weight, 0);
    free (specs);
    //  "" is EventMQ's default list.
    specs = queuespec_parse ("", &count, err, sizeof err);
    REQUIRE (specs && count == 1);
    CHECK_STREQ (specs[0].name, "default");
    CHECK_EQ (specs[0].weight, 10);
    free (specs);
    //  The limits themselves are fine.
    char longest[QUEUESPEC_NAME_MAX + 16];
    snprintf (longest, sizeof longest, "[[1000000, \"%0*d\"]]", QUEUESPEC_NAME_MAX, 7);
    specs = queuespec_parse (longest, &count, err, sizeof err);
    CHECK (specs && count == 1 && specs[0].weight == 1000000
           && strlen (specs[0].name) == QUEUESPEC_NAME_MAX);
    free (specs);
    char *many = NULL;
    size_t many_size = 0;
    FILE *stream = open_memstream (&many, &many_size);
    for (int i = 0; i < QUEUESPEC_COUNT_MAX + 1; i++)
        fprintf (stream, "%sq%d", i ? "\",\"" : "[\"", i);
    fprintf (stream, "\"]");
    fclose (stream);
    specs = queuespec_parse (many, &count, err, sizeof err);
    CHECK (specs == NULL && count == 0);
    CHECK_CONTAINS (err, "more than 256 queues");
    //  256 fit: cut the last item off.
    char *comma = strrchr (many, ',');
    comma[0] = ']';
    comma[1] = 0;
    specs = queuespec_parse (many, &count, err, sizeof err);
    CHECK (specs && count == QUEUESPEC_COUNT_MAX);
    free (specs);
    free (many);

    struct {
        const char *text;
        const char *reason;
    } bad[] = {
        { "nope", "not JSON" },
        { "[[10, default]]", "not JSON" },
        { "{}", "not a JSON array" },
        { "[]", "at least one queue" },
        { "[[1]]", "item 1 is not" },
        { "[[\"default\", 10]]", "item 1 is not" },
        { "[[1, 2]]", "item 1 is not" },
        { "[[1.5, \"a\"]]", "item 1 is not" },
        { "[[1, \"a\", 3]]", "item 1 is not" },
        { "[\"a\", 7]", "item 2 is not" },
        { "[[-1, \"x\"]]", "weights are whole numbers in 0..1000000" },
        { "[[1000001, \"x\"]]", "weights are whole numbers" },
        { "[[1, \"\"]]", QUEUESPEC_NAME_RULE },
        { "[[1, \"a b\"]]", QUEUESPEC_NAME_RULE },
        { "[\"a,b\"]", QUEUESPEC_NAME_RULE },
        { "[\"a\\\"b\"]", QUEUESPEC_NAME_RULE },
        { "[\"a\\u0001\"]", QUEUESPEC_NAME_RULE },
        { "[[1, \"a\"], [2, \"a\"]]", "\"a\" is repeated" },
        { "[\"a\", [2, \"a\"]]", "\"a\" is repeated" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        count = 99;
        specs = queuespec_parse (bad[i].text, &count, err, sizeof err);
        CHECK (specs == NULL);
        CHECK_EQ (count, 0);
        CHECK_CONTAINS (err, bad[i].reason);
        free (specs);
    }
    snprintf (longest, sizeof longest, "[\"%0*d\"]", QUEUESPEC_NAME_MAX + 1, 7);
    CHECK (queuespec_parse (longest, &count, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "item 1: a queue name has");

    //  The setting: JSON or words, in the order written, as compact JSON.
    char *json =
        queuespec_setting ("[[10, \"default\"], [20, \"heavy\"]]", err, sizeof err);
    CHECK_STREQ (json, "[[10,\"default\"],[20,\"heavy\"]]");
    free (json);
    json = queuespec_setting ("  [\"solo\"]", err, sizeof err);
    CHECK_STREQ (json, "[[10,\"solo\"]]");
    free (json);
    json = queuespec_setting ("20,heavy 10,default\tlight +5,five", err, sizeof err);
    CHECK_STREQ (json, "[[20,\"heavy\"],[10,\"default\"],[10,\"light\"],[5,\"five\"]]");
    free (json);
    struct {
        const char *text;
        const char *reason;
    } bad_setting[] = {
        { "", "at least one queue" },
        { "   ", "at least one queue" },
        { "x,default", "item 1: \"weight,name ...\" with a whole-number weight" },
        { "a ,b", "item 2: \"weight,name" },
        { "10,", "item 1: a queue name" },
        { "-1,a", "weights are whole numbers" },
        { "a a", "\"a\" is repeated" },
        { "[[10, default]]", "not JSON" },
    };
    for (size_t i = 0; i < sizeof bad_setting / sizeof bad_setting[0]; i++) {
        err[0] = 0;
        json = queuespec_setting (bad_setting[i].text, err, sizeof err);
        CHECK (json == NULL);
        CHECK_CONTAINS (err, bad_setting[i].reason);
        free (json);
    }

    CHECK_EQ (queuespec_name_check ("default", err, sizeof err), 0);
    CHECK_EQ (queuespec_name_check ("a\x7f", err, sizeof err), -1);
    CHECK_CONTAINS (err, QUEUESPEC_NAME_RULE);
    if (verbose)
        printf ("OK\n");
}
