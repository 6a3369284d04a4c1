/* Helpers for the index file tests: raw bytes of an index file, little-endian fields, the header's
 * own checksum, and the check that damaged bytes are refused. */
#ifndef V4R_INDEX_TESTUTIL_H
#define V4R_INDEX_TESTUTIL_H

#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "vlm4rec/index.h"
#include "vlm4rec/io.h"

enum { IX_SHA_AT = 448 }; /* where the header's hex sha256 of bytes 0..447 starts */

static inline unsigned char *read_bytes(const char *path, size_t *n)
{
    char *data = NULL;
    assert_int_equal(v4r_read_file(path, &data, n, NULL), 0);
    return (unsigned char *)data;
}

static inline void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static inline uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the header's own checksum, so that only the edited field is wrong. */
static inline void reseal(unsigned char *b)
{
    char hex[65];
    v4r_sha256_hex(b, IX_SHA_AT, hex);
    memcpy(b + IX_SHA_AT, hex, 64);
}

/* Opening bytes b (n) written to path fails, the message naming the path and one of needle's
 * alternatives (separated by '|'). */
static inline void expect_refused(const char *path, const unsigned char *b, size_t n, int verify, const char *needle)
{
    write_bytes(path, b, n);
    v4r_index *ix = NULL;
    v4r_err err = {0};
    int rc = v4r_index_open(path, verify, &ix, &err);
    if (rc == 0)
        fail_msg("opened a damaged index (verify %d), wanted '%s'", verify, needle);
    assert_null(ix);
    int found = 0;
    for (const char *p = needle; !found; p += strcspn(p, "|") + 1) {
        char one[128];
        snprintf(one, sizeof one, "%.*s", (int)strcspn(p, "|"), p);
        found = strstr(err.msg, one) != NULL;
        if (!p[strcspn(p, "|")])
            break;
    }
    if (!found || !strstr(err.msg, path))
        fail_msg("message lacks '%s' or the path: %s", needle, err.msg);
}

#endif
