/* What the importers share: the import in progress, column lookup, timestamps, and the final
 * validate-everything-then-write step (OUT is created only once the whole source checked out). */
#include "import_common.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void v4r_imp_init(v4r_importer *im, const char *format, const char *src)
{
    memset(im, 0, sizeof *im);
    im->format = format;
    im->src = src;
    v4r_dataset_init(&im->ds);
}

void v4r_imp_free(v4r_importer *im)
{
    v4r_dataset_free(&im->ds);
    for (int s = 0; s < V4R_NSPLITS; s++)
        free(im->split_file[s]);
    for (size_t i = 0; i < im->nfeat; i++) {
        free(im->feat[i].name);
        free(im->feat[i].src_path);
        v4r_matrix_free(&im->feat[i].m);
    }
    free(im->feat);
    memset(im, 0, sizeof *im);
}

int v4r_imp_add_feature(v4r_importer *im, const char *src_path, const char *name, v4r_err *err)
{
    v4r_matrix m = {0};
    int rc = v4r_npy_read(src_path, &m, err);
    if (rc)
        return rc;
    v4r_grow((void **)&im->feat, &im->feat_cap, im->nfeat + 1, sizeof *im->feat);
    im->feat[im->nfeat++] = (v4r_imp_feature){v4r_strdup(name), v4r_strdup(src_path), m};
    return V4R_OK;
}

/* Warns about .npy files in OUT/features that this import did not write (left from an earlier
 * import into the same directory; they may not match the new item order). */
static void warn_stale_features(const v4r_importer *im, const char *fdir)
{
    DIR *d = opendir(fdir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".npy") != 0)
            continue;
        int ours = 0;
        for (size_t i = 0; i < im->nfeat && !ours; i++)
            ours = !strcmp(im->feat[i].name, e->d_name);
        if (!ours)
            v4r_warn("%s/%s: left from before, not written by this import (check it matches the items)", fdir,
                     e->d_name);
    }
    closedir(d);
}

int v4r_imp_finish(v4r_importer *im, const char *out, const v4r_import_opts *o, v4r_err *err)
{
    v4r_dataset *ds = &im->ds;
    if (ds->split[V4R_TRAIN].n == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: no interactions (the train split must not be empty)",
                        im->split_file[V4R_TRAIN]);
    for (size_t i = 0; i < im->nfeat; i++) {
        const v4r_imp_feature *f = &im->feat[i];
        if (f->m.rows != ds->n_items)
            return v4r_fail(err, V4R_EINPUT, "%s: %zu rows, but the dataset has %zu items (row i must be item i)",
                            f->src_path, f->m.rows, ds->n_items);
    }
    if (o && o->dedupe) {
        size_t before[V4R_NSPLITS];
        for (int s = 0; s < V4R_NSPLITS; s++)
            before[s] = ds->split[s].n;
        size_t dropped = v4r_dataset_dedupe(ds);
        for (int s = 0; s < V4R_NSPLITS; s++)
            if (before[s] != ds->split[s].n)
                v4r_warn("%s: dropped %zu duplicate interaction%s (kept the first of each)", im->split_file[s],
                         before[s] - ds->split[s].n, before[s] - ds->split[s].n == 1 ? "" : "s");
        if (dropped)
            v4r_warn("--dedupe: dropped %zu duplicate interaction%s in all", dropped, dropped == 1 ? "" : "s");
    } else {
        int rc = v4r_dataset_check_duplicates(ds, (const char *const *)im->split_file, err);
        if (rc) {
            size_t len = strlen(err->msg);
            snprintf(err->msg + len, sizeof err->msg - len, " (--dedupe keeps the first)");
            return rc;
        }
    }
    struct stat st;
    if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
        return v4r_fail(err, V4R_EIO, "%s: exists and is not a directory", out);

    int rc = v4r_dataset_write(out, ds, err);
    if (rc || im->nfeat == 0)
        return rc;
    char *fdir = v4r_path_join(out, "features");
    rc = v4r_mkdir_p(fdir, err);
    for (size_t i = 0; i < im->nfeat && !rc; i++) {
        char *path = v4r_path_join(fdir, im->feat[i].name);
        rc = v4r_npy_write(path, im->feat[i].m.data, im->feat[i].m.rows, im->feat[i].m.cols, err);
        free(path);
    }
    if (!rc)
        warn_stale_features(im, fdir);
    free(fdir);
    return rc;
}

/* Compares a header cell with a name: case-insensitive, blanks around and a UTF-8 BOM ignored. */
static int header_is(const char *cell, const char *name)
{
    if (!strncmp(cell, "\xEF\xBB\xBF", 3))
        cell += 3;
    while (*cell == ' ' || *cell == '\t')
        cell++;
    size_t n = strlen(cell);
    while (n && (cell[n - 1] == ' ' || cell[n - 1] == '\t'))
        n--;
    return n == strlen(name) && !strncasecmp(cell, name, n);
}

int v4r_imp_find_column(char *const *fields, size_t n, const char *const *names)
{
    for (size_t k = 0; names[k]; k++)
        for (size_t i = 0; i < n; i++)
            if (header_is(fields[i], names[k]))
                return (int)i;
    return -1;
}

const char *v4r_imp_name_list(const char *const *names)
{
    static char buf[512];
    size_t w = 0;
    buf[0] = 0;
    for (size_t k = 0; names[k] && w < sizeof buf; k++)
        w += (size_t)snprintf(buf + w, sizeof buf - w, "%s%s", k ? ", " : "", names[k]);
    return buf;
}

int v4r_imp_parse_ts(const char *s, int64_t *ts, int *has)
{
    *has = 0;
    *ts = 0;
    if (!*s)
        return 0;
    if (v4r_parse_i64(s, ts) == 0) {
        *has = 1;
        return 0;
    }
    const char *dot = strchr(s, '.');
    if (!dot || dot == s)
        return -1;
    for (const char *p = dot + 1; *p; p++)
        if (*p != '0')
            return -1;
    for (const char *p = s + (*s == '-'); p < dot; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    char *head = v4r_strndup(s, (size_t)(dot - s));
    int rc = v4r_parse_i64(head, ts);
    free(head);
    if (rc)
        return -1;
    *has = 1;
    return 0;
}

int v4r_imp_require(const v4r_importer *im, const char *dir, const char *name, const char *alt, char **path,
                    v4r_err *err)
{
    char *p = v4r_path_join(dir, name);
    if (v4r_file_exists(p)) {
        *path = p;
        return V4R_OK;
    }
    free(p);
    if (alt) {
        p = v4r_path_join(dir, alt);
        if (v4r_file_exists(p)) {
            *path = p;
            return V4R_OK;
        }
        free(p);
        return v4r_fail(err, V4R_EINPUT, "%s: no %s or %s (the %s layout needs it)", dir, name, alt, im->format);
    }
    return v4r_fail(err, V4R_EINPUT, "%s: no %s (the %s layout needs it)", dir, name, im->format);
}

int v4r_imp_check_dir(const char *dir, v4r_err *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return v4r_fail(err, V4R_EINPUT, "%s: not a directory", dir);
    return V4R_OK;
}
