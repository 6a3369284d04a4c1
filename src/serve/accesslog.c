/* The access log: one JSON line per answered request (time in ISO-8601 UTC, client, method, path,
 * status, body bytes, duration, batch size, index version, user or history length). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve_internal.h"

int access_log_open(access_log *a, const char *path, v4r_err *err)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    if (!path)
        return V4R_OK;
    if (!strcmp(path, "-")) {
        a->fp = stderr;
        return V4R_OK;
    }
    a->fp = fopen(path, "a");
    if (!a->fp)
        return v4r_fail(err, V4R_EIO, "%s: cannot open the access log: %s", path, strerror(errno));
    a->owned = 1;
    return V4R_OK;
}

void access_log_close(access_log *a)
{
    if (a->owned)
        fclose(a->fp);
    a->fp = NULL;
    pthread_mutex_destroy(&a->mu);
}

static void iso_time(char out[32])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", now.tv_nsec / 1000000L);
}

void access_log_write(access_log *a, const serve_request *r, size_t bytes, double seconds, const char *version)
{
    if (!a->fp)
        return;
    char when[32];
    iso_time(when);
    char *path = utf8_clean(r->path, strlen(r->path)), *method = utf8_clean(r->method, strlen(r->method));
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:I,s:f,s:I}", "time", when, "remote", r->remote, "method", method,
                          "path", path, "status", (int)r->status, "bytes", (json_int_t)bytes, "duration_ms",
                          seconds * 1e3, "batch", (json_int_t)r->batch);
    free(path);
    free(method);
    if (version)
        json_object_set_new(o, "index_version", json_string(version));
    if (r->user)
        json_object_set_new(o, "user", json_string(r->user));
    else if (r->history_length)
        json_object_set_new(o, "history_length", json_integer((json_int_t)r->history_length));
    if (r->item) {
        char *item = utf8_clean(r->item, strlen(r->item));
        json_object_set_new(o, "item", json_string(item));
        free(item);
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!line)
        return;
    pthread_mutex_lock(&a->mu);
    fputs(line, a->fp);
    fputc('\n', a->fp);
    fflush(a->fp);
    pthread_mutex_unlock(&a->mu);
    free(line);
}
