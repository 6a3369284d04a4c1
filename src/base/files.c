/* Files: atomic output (temporary + rename), mkdir -p, whole-file reads, path joins. */
#include "vlm4rec/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int v4r_out_open(v4r_outfile *out, const char *path, v4r_err *err)
{
    memset(out, 0, sizeof *out);
    out->path = v4r_strdup(path);
    out->tmp_path = v4r_sprintf("%s.tmp.%ld", path, (long)getpid());
    out->fp = fopen(out->tmp_path, "wb");
    if (!out->fp) {
        int e = errno;
        free(out->path);
        free(out->tmp_path);
        memset(out, 0, sizeof *out);
        return v4r_fail(err, V4R_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    return V4R_OK;
}

static void out_release(v4r_outfile *out)
{
    free(out->path);
    free(out->tmp_path);
    memset(out, 0, sizeof *out);
}

int v4r_out_commit(v4r_outfile *out, v4r_err *err)
{
    int bad = ferror(out->fp) || fflush(out->fp) != 0 || fsync(fileno(out->fp)) != 0;
    int e = errno;
    if (fclose(out->fp) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    out->fp = NULL;
    if (bad || rename(out->tmp_path, out->path) != 0) {
        if (!bad)
            e = errno;
        unlink(out->tmp_path);
        int rc = v4r_fail(err, V4R_EIO, "%s: cannot write: %s", out->path, strerror(e));
        out_release(out);
        return rc;
    }
    out_release(out);
    return V4R_OK;
}

void v4r_out_abort(v4r_outfile *out)
{
    if (out->fp)
        fclose(out->fp);
    if (out->tmp_path)
        unlink(out->tmp_path);
    out_release(out);
}

int v4r_mkdir_p(const char *path, v4r_err *err)
{
    char *p = v4r_strdup(path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int e = errno;
                free(p);
                return v4r_fail(err, V4R_EIO, "%s: cannot create directory: %s", path, strerror(e));
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return v4r_fail(err, V4R_EIO, "%s: not a directory", path);
    return V4R_OK;
}

int v4r_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *v4r_path_join(const char *dir, const char *name)
{
    if (!dir || !*dir || name[0] == '/')
        return v4r_strdup(name);
    size_t n = strlen(dir);
    return v4r_sprintf("%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
}

int v4r_read_file(const char *path, char **data, size_t *len, v4r_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    size_t cap = 1 << 16, n = 0;
    if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0)
        cap = (size_t)st.st_size + 2; /* room for the NUL, and one byte to see the end */
    char *buf = v4r_malloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = v4r_realloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return v4r_fail(err, V4R_EIO, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    if (len)
        *len = n;
    return V4R_OK;
}
