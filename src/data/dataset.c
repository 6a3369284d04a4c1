/* The dataset directory: building in memory, loading with validation, writing atomically. */
#include "vlm4rec/data.h"

#include <stdlib.h>
#include <string.h>

static const char *split_names[V4R_NSPLITS] = {"train", "valid", "test"};

const char *v4r_split_name(int split) { return split >= 0 && split < V4R_NSPLITS ? split_names[split] : "?"; }

int v4r_split_parse(const char *name)
{
    for (int s = 0; s < V4R_NSPLITS; s++)
        if (!strcmp(name, split_names[s]))
            return s;
    if (!strcmp(name, "validation"))
        return V4R_VALID;
    return -1;
}

void v4r_dataset_init(v4r_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    v4r_strmap_init(&ds->item_index, 1024);
    v4r_strmap_init(&ds->user_index, 1024);
}

static void split_free(v4r_split *s)
{
    free(s->user);
    free(s->item);
    free(s->ts);
    free(s->has_ts);
    free(s->line);
    memset(s, 0, sizeof *s);
}

void v4r_dataset_free(v4r_dataset *ds)
{
    v4r_arena_free(&ds->strings);
    free(ds->item_id);
    free(ds->item_title);
    free(ds->item_image);
    free(ds->user_id);
    free(ds->dir);
    v4r_strmap_free(&ds->item_index);
    v4r_strmap_free(&ds->user_index);
    for (int s = 0; s < V4R_NSPLITS; s++)
        split_free(&ds->split[s]);
    memset(ds, 0, sizeof *ds);
}

int32_t v4r_dataset_add_item(v4r_dataset *ds, const char *id, const char *title, const char *image, int *is_new)
{
    int64_t old = v4r_strmap_put(&ds->item_index, id, (int64_t)ds->n_items);
    if (is_new)
        *is_new = old < 0;
    if (old >= 0)
        return (int32_t)old;
    size_t cap = ds->items_cap;
    v4r_grow((void **)&ds->item_id, &cap, ds->n_items + 1, sizeof(char *));
    cap = ds->items_cap;
    v4r_grow((void **)&ds->item_title, &cap, ds->n_items + 1, sizeof(char *));
    v4r_grow((void **)&ds->item_image, &ds->items_cap, ds->n_items + 1, sizeof(char *));
    ds->item_id[ds->n_items] = v4r_arena_strdup(&ds->strings, id);
    ds->item_title[ds->n_items] = v4r_arena_strdup(&ds->strings, title ? title : "");
    ds->item_image[ds->n_items] = v4r_arena_strdup(&ds->strings, image ? image : "");
    return (int32_t)ds->n_items++;
}

int32_t v4r_dataset_add_user(v4r_dataset *ds, const char *id, int *is_new)
{
    int64_t old = v4r_strmap_put(&ds->user_index, id, (int64_t)ds->n_users);
    if (is_new)
        *is_new = old < 0;
    if (old >= 0)
        return (int32_t)old;
    v4r_grow((void **)&ds->user_id, &ds->users_cap, ds->n_users + 1, sizeof(char *));
    ds->user_id[ds->n_users] = v4r_arena_strdup(&ds->strings, id);
    return (int32_t)ds->n_users++;
}

void v4r_split_push(v4r_split *s, int32_t user, int32_t item, int64_t ts, int has_ts, long line)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        s->user = v4r_realloc(s->user, cap * sizeof *s->user);
        s->item = v4r_realloc(s->item, cap * sizeof *s->item);
        s->ts = v4r_realloc(s->ts, cap * sizeof *s->ts);
        s->has_ts = v4r_realloc(s->has_ts, cap * sizeof *s->has_ts);
        s->line = v4r_realloc(s->line, cap * sizeof *s->line);
        s->cap = cap;
    }
    s->user[s->n] = user;
    s->item[s->n] = item;
    s->ts[s->n] = ts;
    s->has_ts[s->n] = (uint8_t)(has_ts != 0);
    s->line[s->n] = line;
    s->n++;
}

/* ---- loading ---- */

static int expect_header(v4r_lines *r, const char *const *names, size_t required, size_t *ncols, v4r_err *err)
{
    int got = v4r_lines_next(r, err);
    if (got < 0)
        return err->code;
    if (got == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: empty file (a header line '%s...' is required)", r->path, names[0]);
    char *fields[8];
    size_t n = v4r_tsv_split(r->line, fields, 8);
    size_t total = 0;
    while (names[total])
        total++;
    if (n < required || n > total)
        return v4r_fail(err, V4R_EINPUT, "%s:1: header has %zu columns, expected %zu to %zu", r->path, n, required, total);
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i], names[i]) != 0)
            return v4r_fail(err, V4R_EINPUT, "%s:1: header column %zu is '%s', expected '%s'", r->path, i + 1,
                            fields[i], names[i]);
    *ncols = n;
    return V4R_OK;
}

/* One data line of a table: its fields (escaped as in the file), where it stands. */
typedef struct {
    char **f;
    size_t n;
    const char *path;
    long lineno;
} table_row;
typedef int (*row_reader)(void *ctx, const table_row *row, v4r_err *err);

/* Reads a TSV table whose header is names[0..] (at least `required` of them); blank lines are
 * skipped; every other line must have the header's field count. */
static int read_table(const char *path, const char *const *names, size_t required, row_reader read, void *ctx,
                      v4r_err *err)
{
    v4r_lines r;
    size_t ncols = 0;
    int rc = v4r_lines_open(&r, path, err);
    if (!rc)
        rc = expect_header(&r, names, required, &ncols, err);
    while (!rc) {
        int got = v4r_lines_next(&r, err);
        if (got <= 0) {
            rc = got < 0 ? err->code : V4R_OK;
            break;
        }
        if (v4r_line_blank(r.line))
            continue;
        char *f[4] = {0};
        table_row row = {f, v4r_tsv_split(r.line, f, 4), path, r.lineno};
        if (row.n != ncols)
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: %zu fields, the header has %zu", path, r.lineno, row.n, ncols);
        else
            rc = read(ctx, &row, err);
    }
    v4r_lines_close(&r);
    return rc;
}

/* Items or users read into a dataset, with the line of each id for "repeats line N" messages. */
typedef struct {
    v4r_dataset *ds;
    long *line;
    size_t cap;
} id_reader;

static int note_id(id_reader *ir, const table_row *row, const char *field, int32_t idx, int is_new, v4r_err *err)
{
    if (!is_new)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: field '%s': '%s' repeats line %ld", row->path, row->lineno, field,
                        row->f[0], ir->line[idx]);
    v4r_grow((void **)&ir->line, &ir->cap, (size_t)idx + 1, sizeof *ir->line);
    ir->line[idx] = row->lineno;
    return V4R_OK;
}

static int item_reader(void *ctx, const table_row *row, v4r_err *err)
{
    for (size_t i = 0; i < row->n; i++)
        v4r_tsv_unescape(row->f[i]);
    if (!*row->f[0])
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'item' is empty", row->path, row->lineno);
    id_reader *ir = ctx;
    int is_new;
    int32_t idx = v4r_dataset_add_item(ir->ds, row->f[0], row->n > 1 ? row->f[1] : "", row->n > 2 ? row->f[2] : "",
                                       &is_new);
    return note_id(ir, row, "item", idx, is_new, err);
}

static int user_reader(void *ctx, const table_row *row, v4r_err *err)
{
    v4r_tsv_unescape(row->f[0]);
    if (!*row->f[0])
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'user' is empty", row->path, row->lineno);
    id_reader *ir = ctx;
    int is_new;
    int32_t idx = v4r_dataset_add_user(ir->ds, row->f[0], &is_new);
    return note_id(ir, row, "user", idx, is_new, err);
}

int v4r_dataset_read_items(v4r_dataset *ds, const char *path, v4r_err *err)
{
    static const char *const names[] = {"item", "title", "image", NULL};
    id_reader ir = {ds, NULL, 0};
    int rc = read_table(path, names, 1, item_reader, &ir, err);
    free(ir.line);
    return rc;
}

int v4r_dataset_read_users(v4r_dataset *ds, const char *path, v4r_err *err)
{
    static const char *const names[] = {"user", NULL};
    id_reader ir = {ds, NULL, 0};
    int rc = read_table(path, names, 1, user_reader, &ir, err);
    free(ir.line);
    return rc;
}

typedef struct {
    v4r_dataset *ds;
    v4r_split *split;
} split_reader;

static int interaction_reader(void *ctx, const table_row *row, v4r_err *err)
{
    split_reader *sr = ctx;
    char **f = row->f;
    v4r_tsv_unescape(f[0]);
    v4r_tsv_unescape(f[1]);
    int64_t user = v4r_strmap_get(&sr->ds->user_index, f[0]);
    if (user < 0)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'user': unknown user '%s' (not in users.tsv)", row->path,
                        row->lineno, f[0]);
    int64_t item = v4r_strmap_get(&sr->ds->item_index, f[1]);
    if (item < 0)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'item': unknown item '%s' (not in items.tsv)", row->path,
                        row->lineno, f[1]);
    int64_t ts = 0;
    int has_ts = row->n > 2 && *f[2];
    if (has_ts && v4r_parse_i64(f[2], &ts) != 0)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'timestamp': '%s' is not an integer", row->path, row->lineno,
                        f[2]);
    v4r_split_push(sr->split, (int32_t)user, (int32_t)item, ts, has_ts, row->lineno);
    return V4R_OK;
}

static int load_split(v4r_dataset *ds, int split, const char *path, v4r_err *err)
{
    static const char *const names[] = {"user", "item", "timestamp", NULL};
    split_reader sr = {ds, &ds->split[split]};
    return read_table(path, names, 2, interaction_reader, &sr, err);
}

typedef struct {
    int32_t user, item;
    size_t pos;
} pair_ref;

static int cmp_pair(const void *a, const void *b)
{
    const pair_ref *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->item != y->item)
        return x->item < y->item ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int v4r_dataset_check_duplicates(const v4r_dataset *ds, const char *const files[V4R_NSPLITS], v4r_err *err)
{
    for (int s = 0; s < V4R_NSPLITS; s++) {
        const v4r_split *sp = &ds->split[s];
        pair_ref *refs = v4r_malloc((sp->n ? sp->n : 1) * sizeof *refs);
        for (size_t i = 0; i < sp->n; i++)
            refs[i] = (pair_ref){sp->user[i], sp->item[i], i};
        qsort(refs, sp->n, sizeof *refs, cmp_pair);
        for (size_t i = 1; i < sp->n; i++) {
            if (refs[i].user != refs[i - 1].user || refs[i].item != refs[i - 1].item)
                continue;
            size_t a = refs[i - 1].pos, b = refs[i].pos;
            int rc = v4r_fail(err, V4R_EINPUT,
                              "%s:%ld: duplicate interaction (user '%s', item '%s'), first at line %ld", files[s],
                              sp->line[b], ds->user_id[refs[i].user],
                              ds->item_id[refs[i].item], sp->line[a]);
            free(refs);
            return rc;
        }
        free(refs);
    }
    return V4R_OK;
}

size_t v4r_dataset_dedupe(v4r_dataset *ds)
{
    size_t dropped = 0;
    for (int s = 0; s < V4R_NSPLITS; s++) {
        v4r_split *sp = &ds->split[s];
        if (sp->n < 2)
            continue;
        pair_ref *refs = v4r_malloc(sp->n * sizeof *refs);
        uint8_t *drop = v4r_calloc(sp->n, 1);
        for (size_t i = 0; i < sp->n; i++)
            refs[i] = (pair_ref){sp->user[i], sp->item[i], i};
        qsort(refs, sp->n, sizeof *refs, cmp_pair); /* equal pairs sort by position: the first stays */
        for (size_t i = 1; i < sp->n; i++)
            if (refs[i].user == refs[i - 1].user && refs[i].item == refs[i - 1].item)
                drop[refs[i].pos] = 1;
        size_t w = 0;
        for (size_t i = 0; i < sp->n; i++) {
            if (drop[i])
                continue;
            sp->user[w] = sp->user[i];
            sp->item[w] = sp->item[i];
            sp->ts[w] = sp->ts[i];
            sp->has_ts[w] = sp->has_ts[i];
            sp->line[w] = sp->line[i];
            w++;
        }
        dropped += sp->n - w;
        sp->n = w;
        free(drop);
        free(refs);
    }
    return dropped;
}

static int load_dir(const char *dir, int allow_repeats, v4r_dataset *ds, v4r_err *err);

int v4r_dataset_load(const char *dir, v4r_dataset *ds, v4r_err *err) { return load_dir(dir, 0, ds, err); }

int v4r_dataset_load_repeats(const char *dir, v4r_dataset *ds, v4r_err *err) { return load_dir(dir, 1, ds, err); }

static int load_dir(const char *dir, int allow_repeats, v4r_dataset *ds, v4r_err *err)
{
    v4r_dataset_init(ds);
    ds->dir = v4r_strdup(dir);
    char *path = v4r_path_join(dir, "items.tsv");
    int rc = v4r_dataset_read_items(ds, path, err);
    free(path);
    if (!rc) {
        path = v4r_path_join(dir, "users.tsv");
        rc = v4r_dataset_read_users(ds, path, err);
        free(path);
    }
    for (int s = 0; s < V4R_NSPLITS && !rc; s++) {
        char *name = v4r_sprintf("%s.tsv", split_names[s]);
        path = v4r_path_join(dir, name);
        rc = load_split(ds, s, path, err);
        free(name);
        free(path);
    }
    if (!rc && ds->n_items == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s/items.tsv: no items", dir);
    if (!rc && !allow_repeats) {
        char *files[V4R_NSPLITS];
        for (int s = 0; s < V4R_NSPLITS; s++) {
            char *name = v4r_sprintf("%s.tsv", split_names[s]);
            files[s] = v4r_path_join(dir, name);
            free(name);
        }
        rc = v4r_dataset_check_duplicates(ds, (const char *const *)files, err);
        for (int s = 0; s < V4R_NSPLITS; s++)
            free(files[s]);
    }
    if (rc)
        v4r_dataset_free(ds);
    return rc;
}

/* ---- writing ---- */

static int write_table(const char *dir, const char *name, const char *header, const v4r_dataset *ds,
                       void (*row)(FILE *, const v4r_dataset *, size_t), size_t nrows, v4r_err *err)
{
    char *path = v4r_path_join(dir, name);
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    free(path);
    if (rc)
        return rc;
    fputs(header, out.fp);
    for (size_t i = 0; i < nrows; i++)
        row(out.fp, ds, i);
    return v4r_out_commit(&out, err);
}

static void item_row(FILE *fp, const v4r_dataset *ds, size_t i)
{
    v4r_tsv_write_field(fp, ds->item_id[i]);
    putc('\t', fp);
    v4r_tsv_write_field(fp, ds->item_title[i]);
    putc('\t', fp);
    v4r_tsv_write_field(fp, ds->item_image[i]);
    putc('\n', fp);
}

static void user_row(FILE *fp, const v4r_dataset *ds, size_t u)
{
    v4r_tsv_write_field(fp, ds->user_id[u]);
    putc('\n', fp);
}

static int write_split(const char *dir, const v4r_dataset *ds, int s, v4r_err *err)
{
    char *name = v4r_sprintf("%s.tsv", split_names[s]);
    char *path = v4r_path_join(dir, name);
    free(name);
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    free(path);
    if (rc)
        return rc;
    const v4r_split *sp = &ds->split[s];
    fputs("user\titem\ttimestamp\n", out.fp);
    for (size_t i = 0; i < sp->n; i++) {
        v4r_tsv_write_field(out.fp, ds->user_id[sp->user[i]]);
        putc('\t', out.fp);
        v4r_tsv_write_field(out.fp, ds->item_id[sp->item[i]]);
        putc('\t', out.fp);
        if (sp->has_ts[i])
            fprintf(out.fp, "%lld", (long long)sp->ts[i]);
        putc('\n', out.fp);
    }
    return v4r_out_commit(&out, err);
}

int v4r_dataset_write(const char *dir, const v4r_dataset *ds, v4r_err *err)
{
    int rc = v4r_mkdir_p(dir, err);
    if (!rc)
        rc = write_table(dir, "items.tsv", "item\ttitle\timage\n", ds, item_row, ds->n_items, err);
    if (!rc)
        rc = write_table(dir, "users.tsv", "user\n", ds, user_row, ds->n_users, err);
    for (int s = 0; s < V4R_NSPLITS && !rc; s++)
        rc = write_split(dir, ds, s, err);
    return rc;
}

/* ---- covered-item lists ---- */

int v4r_read_covered(const v4r_dataset *ds, const char *path, uint8_t **mask, size_t *count, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err);
    if (rc)
        return rc;
    uint8_t *m = v4r_calloc(ds->n_items, 1);
    size_t n = 0;
    for (;;) {
        int got = v4r_lines_next(&r, err);
        if (got <= 0) {
            rc = got < 0 ? err->code : V4R_OK;
            break;
        }
        char *s = r.line;
        while (*s == ' ')
            s++;
        if (!*s || *s == '#')
            continue;
        char *tab = strchr(s, '\t'); /* a TSV's first column is the id */
        if (tab)
            *tab = 0;
        if (r.lineno == 1 && !strcmp(s, "item"))
            continue; /* header */
        v4r_tsv_unescape(s);
        int64_t idx = v4r_strmap_get(&ds->item_index, s);
        if (idx < 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: unknown item '%s' (not in the dataset)", path, r.lineno, s);
            break;
        }
        n += !m[idx];
        m[idx] = 1;
    }
    v4r_lines_close(&r);
    if (rc) {
        free(m);
        return rc;
    }
    *mask = m;
    *count = n;
    return V4R_OK;
}
