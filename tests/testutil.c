/* Test helpers: temporary directories, small files, running the vlm4rec binary. */
#include "testutil.h"

#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = v4r_sprintf("%s/v4rtest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        abort();
    }
    return tmpl;
}

void tu_rmtree(const char *dir)
{
    char *cmd = v4r_sprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
    free(cmd);
}

void tu_write(const char *dir, const char *name, const char *text)
{
    char *path = v4r_path_join(dir, name);
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = 0;
        v4r_mkdir_p(path, NULL);
        *slash = '/';
    }
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    free(path);
}

char *tu_read(const char *dir, const char *name)
{
    char *path = v4r_path_join(dir, name), *data = NULL;
    if (v4r_read_file(path, &data, NULL, NULL) != 0)
        data = NULL;
    free(path);
    return data;
}

int tu_run(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char args[8192];
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *cmd = v4r_sprintf("VLM4REC_LOG=warn '%s' %s 2>&1", V4R_BINARY, args);
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    size_t cap = 4096, n = 0;
    char *buf = v4r_malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap)
            buf = v4r_realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

const char *tu_shared(void) { return V4R_SHARED_DIR; }

void tu_catalog_make(tu_catalog *c, size_t users, size_t items, size_t interactions)
{
    c->dir = tu_tmpdir();
    v4r_synth_opts so;
    v4r_synth_defaults(&so);
    so.users = users, so.items = items, so.interactions = interactions;
    v4r_err err = {0};
    assert_int_equal(v4r_synth(c->dir, &so, &err), 0);
    assert_int_equal(v4r_dataset_load(c->dir, &c->ds, &err), 0);
    char *p = v4r_path_join(c->dir, "features/description.npy");
    assert_int_equal(v4r_npy_read(p, &c->desc, &err), 0);
    free(p);
    p = v4r_path_join(c->dir, "features/visual.npy");
    assert_int_equal(v4r_npy_read(p, &c->visual, &err), 0);
    free(p);
}

void tu_catalog_free(tu_catalog *c)
{
    v4r_dataset_free(&c->ds);
    v4r_matrix_free(&c->desc);
    v4r_matrix_free(&c->visual);
    tu_rmtree(c->dir);
    free(c->dir);
}

void tu_tokens_load(tu_tokens *t)
{
    char *path = v4r_sprintf("%s/fixtures/text/tokens.bert-base-uncased.jsonl", tu_shared());
    v4r_lines r;
    v4r_err err = {0};
    assert_int_equal(v4r_lines_open(&r, path, &err), 0);
    size_t cap = 0;
    while (v4r_lines_next(&r, &err) == 1) {
        json_t *o = json_loads(r.line, 0, NULL), *a = json_object_get(o, "ids_256");
        assert_non_null(a);
        v4r_grow((void **)&t->ids, &cap, t->n + 1, sizeof *t->ids);
        t->lens = v4r_realloc(t->lens, cap * sizeof *t->lens);
        t->lens[t->n] = json_array_size(a);
        t->ids[t->n] = v4r_malloc(json_array_size(a) * sizeof(int32_t));
        for (size_t i = 0; i < json_array_size(a); i++)
            t->ids[t->n][i] = (int32_t)json_integer_value(json_array_get(a, i));
        t->n++;
        json_decref(o);
    }
    v4r_lines_close(&r);
    free(path);
}

void tu_tokens_free(tu_tokens *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->ids[i]);
    free(t->ids);
    free(t->lens);
    memset(t, 0, sizeof *t);
}

float *tu_encode(v4r_encoder *e, const tu_tokens *t, size_t n, size_t batch)
{
    float *out = v4r_malloc(n * v4r_encoder_dim(e) * sizeof *out);
    v4r_err err = {0};
    if (v4r_encoder_encode_ids(e, (const int32_t *const *)t->ids, t->lens, n, batch, out, &err))
        fail_msg("%s", err.msg);
    return out;
}

void tu_same_across_batches(v4r_encoder *e, const tu_tokens *t, size_t n)
{
    size_t bytes = n * v4r_encoder_dim(e) * sizeof(float);
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    float *a = tu_encode(e, t, n, 32), *b1 = tu_encode(e, t, n, 1), *b7 = tu_encode(e, t, n, 7);
    assert_int_equal(omp_get_max_threads(), 2); /* batches side by side leave the caller's setting */
    omp_set_num_threads(1);
    float *t1 = tu_encode(e, t, n, 32);
    omp_set_num_threads(saved);
    assert_memory_equal(a, b1, bytes);
    assert_memory_equal(a, b7, bytes);
    assert_memory_equal(a, t1, bytes);
    free(a), free(b1), free(b7), free(t1);
}
