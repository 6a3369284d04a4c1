/* Helpers for the semantic cache tests: keys, results, raw SQL on a cache file. */
#ifndef V4R_CACHE_TESTUTIL_H
#define V4R_CACHE_TESTUTIL_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vlm4rec/ground.h"

#define PH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define PH2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static inline v4r_cache_key ckey(const char *item) { return (v4r_cache_key){item, "img", PH, "m"}; }

static inline v4r_cache_result done_result(const char *desc, int attempts)
{
    v4r_cache_result r = {desc, NULL, 0, attempts, 1.5, 10, 20, "http://e/v1"};
    return r;
}

static inline v4r_cache_result failed_result(const char *error, int permanent, int attempts)
{
    v4r_cache_result r = {NULL, error, permanent, attempts, -1, -1, -1, NULL};
    return r;
}

static inline v4r_cache *copen(const char *path)
{
    v4r_cache *c = NULL;
    v4r_err err = {0};
    if (v4r_cache_open(path, &c, &err) != 0)
        fail_msg("open %s: %s", path, err.msg);
    return c;
}

/* Runs SQL on its own connection to the file. */
static inline void raw_sql(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *q = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char *msg = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg);
    sqlite3_free(q);
    sqlite3_close(db);
}

/* The first column of the first row as text (NULL for none or NULL); caller frees. */
static inline char *raw_text(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *q = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(db));
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = v4r_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    sqlite3_free(q);
    return out;
}

static inline long long raw_int(const char *path, const char *q)
{
    char *t = raw_text(path, "%s", q);
    long long v = t ? atoll(t) : -1;
    free(t);
    return v;
}

/* Reads a whole stream written by a function under test. */
static inline char *slurp(FILE *fp)
{
    long len = ftell(fp);
    assert_true(len >= 0);
    rewind(fp);
    char *buf = v4r_malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = 0;
    return buf;
}

#endif
