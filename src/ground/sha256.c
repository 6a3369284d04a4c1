/* The cache's tools: a file's sha256, file identity and timestamps. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cache_internal.h"

int cache_sha256_file(const char *path, char hex[65])
{
    v4r_err err = {0};
    return v4r_sha256_file(path, hex, &err) == V4R_OK ? 0 : -1;
}

void cache_iso8601(double t, char out[32])
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int cache_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
