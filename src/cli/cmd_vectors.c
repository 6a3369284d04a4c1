/* `vlm4rec vectors merge`: joins the parts that encode / embed-images --shard I/N write into the
 * vectors, coverage list (and failures list) the unsharded command writes, after checking that the
 * parts come from the same dataset, model and options and cover every item exactly once. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/data.h"
#include "vlm4rec/ground.h"
#include "vlm4rec/io.h"

static const char *vectors_help =
    "usage: vlm4rec vectors merge --dataset DIR PART.npy... -o OUT.npy [options]\n"
    "\n"
    "Joins the parts of 'encode --shard I/N' or 'embed-images --shard I/N' (each PART.npy with its\n"
    "manifest PART.part.json) into OUT.npy, one row per dataset item, and the lists the unsharded\n"
    "command writes beside it: OUT.covered.txt, and for image vectors OUT.failures.tsv. The result is\n"
    "byte for byte the unsharded run's. Refused, naming the part: parts of another dataset (item\n"
    "count and sha256 of items.tsv), of another model or options, of another shard count, a shard\n"
    "missing or given twice, an item in no part or in two, a part whose vectors do not match its\n"
    "manifest (a shard stopped while writing: run it again).\n"
    "  --dataset DIR      the dataset the parts were made from\n"
    "  -o, --output FILE  the merged vectors (.npy, float32, items x dim)\n"
    "  --covered-out FILE the ids of the items that got a vector (default: OUT with .covered.txt in\n"
    "                     place of .npy)\n"
    "  -q, --quiet        no log lines\n";

typedef struct {
    const char *dataset, *output, *covered_out;
    char **parts;
    size_t n_parts;
} merge_args;

/* Every part read, and for each dataset item the part and row that hold it. */
typedef struct {
    v4r_dataset ds;
    v4r_vecpart *part;
    size_t n;
    int64_t *owner, *owner_row; /* per item: part index and row, -1 when none yet */
} merge_job;

/* ---- the checks ---- */

/* The first option whose value differs between the first part's options and this part's, as
 * "'name' is THIS, but FIRST in". */
static char *option_diff(json_t *first, json_t *mine)
{
    const char *key;
    json_t *v;
    for (int pass = 0; pass < 2; pass++) {
        json_object_foreach(pass ? mine : first, key, v)
        {
            json_t *f = json_object_get(first, key), *m = json_object_get(mine, key);
            if (f && m && json_equal(f, m))
                continue;
            char *sf = f ? json_dumps(f, JSON_ENCODE_ANY) : NULL, *sm = m ? json_dumps(m, JSON_ENCODE_ANY) : NULL;
            char *msg = v4r_sprintf("option '%s' is %s, but %s in", key, sm ? sm : "absent", sf ? sf : "absent");
            free(sf), free(sm);
            return msg;
        }
    }
    return NULL;
}

/* Part k against the dataset and against the first part. */
static int check_same(const merge_args *a, merge_job *j, size_t k, const char *items_sha, v4r_err *err)
{
    const v4r_vecpart *p = &j->part[k], *f = &j->part[0];
    const char *pk = a->parts[k], *p0 = a->parts[0];
    if (p->n_items != j->ds.n_items || strcmp(p->items_sha256, items_sha))
        return v4r_fail(err, V4R_EINPUT, "%s: made from another dataset: %zu items, items.tsv sha256 %.12s..., but %s "
                                         "has %zu items, items.tsv sha256 %.12s...",
                        pk, p->n_items, p->items_sha256, a->dataset, j->ds.n_items, items_sha);
    if (strcmp(p->command, f->command))
        return v4r_fail(err, V4R_EINPUT, "%s: written by '%s', but %s by '%s'", pk, p->command, p0, f->command);
    if (strcmp(p->model_sha256, f->model_sha256))
        return v4r_fail(err, V4R_EINPUT, "%s: another model: %s (sha256 %.12s...), but %s used %s (sha256 %.12s...)",
                        pk, p->model_id, p->model_sha256, p0, f->model_id, f->model_sha256);
    char *diff = option_diff(f->options, p->options);
    if (diff) {
        int rc = v4r_fail(err, V4R_EINPUT, "%s: %s %s (parts of other options cannot be merged)", pk, diff, p0);
        free(diff);
        return rc;
    }
    if (p->dim != f->dim)
        return v4r_fail(err, V4R_EINPUT, "%s: vectors of %zu, but %s of %zu", pk, p->dim, p0, f->dim);
    if (p->shard_count != f->shard_count)
        return v4r_fail(err, V4R_EINPUT, "%s: shard %d/%d, but %s is of %d shards", pk, p->shard_index, p->shard_count,
                        p0, f->shard_count);
    for (size_t e = 0; e < k; e++)
        if (j->part[e].shard_index == p->shard_index)
            return v4r_fail(err, V4R_EINPUT, "shard %d/%d is given twice: %s and %s", p->shard_index, p->shard_count,
                            a->parts[e], pk);
    return V4R_OK;
}

/* Each row of part k: an item of the dataset, of the part's shard, in no other row. */
static int claim_rows(const merge_args *a, merge_job *j, size_t k, v4r_err *err)
{
    const v4r_vecpart *p = &j->part[k];
    for (size_t r = 0; r < p->rows; r++) {
        int64_t i = v4r_strmap_get(&j->ds.item_index, p->item[r]);
        if (i < 0)
            return v4r_fail(err, V4R_EINPUT, "%s: row %zu: item '%s' is not in the dataset %s", a->parts[k], r + 1,
                            p->item[r], a->dataset);
        int shard = v4r_plan_shard_of(p->item[r], p->shard_count);
        if (shard != p->shard_index)
            return v4r_fail(err, V4R_EINPUT, "%s: row %zu: item '%s' belongs to shard %d/%d, not %d", a->parts[k],
                            r + 1, p->item[r], shard, p->shard_count, p->shard_index);
        if (j->owner[i] >= 0)
            return v4r_fail(err, V4R_EINPUT, "item '%s' is in two rows: %s row %lld and %s row %zu", p->item[r],
                            a->parts[j->owner[i]], (long long)j->owner_row[i] + 1, a->parts[k], r + 1);
        j->owner[i] = (int64_t)k;
        j->owner_row[i] = (int64_t)r;
    }
    return V4R_OK;
}

/* Every shard 1..N given and every item in a row. */
static int check_complete(const merge_args *a, const merge_job *j, v4r_err *err)
{
    int count = j->part[0].shard_count;
    uint8_t *given = v4r_calloc((size_t)count + 1, 1);
    for (size_t k = 0; k < j->n; k++)
        given[j->part[k].shard_index] = 1;
    char *missing = v4r_strdup("");
    size_t n_missing = 0;
    for (int s = 1; s <= count; s++)
        if (!given[s]) {
            char *next = v4r_sprintf("%s%s%d/%d", missing, n_missing++ ? ", " : "", s, count);
            free(missing);
            missing = next;
        }
    int rc = V4R_OK;
    if (n_missing)
        rc = v4r_fail(err, V4R_EINPUT, "shard%s %s missing: no part given for %s (run %s and give %s part%s)",
                      n_missing > 1 ? "s" : "", missing, n_missing > 1 ? "them" : "it", n_missing > 1 ? "them" : "it",
                      n_missing > 1 ? "their" : "its", n_missing > 1 ? "s" : "");
    for (size_t i = 0; i < j->ds.n_items && !rc; i++)
        if (j->owner[i] < 0) {
            int s = v4r_plan_shard_of(j->ds.item_id[i], count);
            size_t k = 0;
            while (j->part[k].shard_index != s)
                k++;
            rc = v4r_fail(err, V4R_EINPUT, "item '%s' is in no part: %s (shard %d/%d) lacks it", j->ds.item_id[i],
                          a->parts[k], s, count);
        }
    free(missing), free(given);
    return rc;
}

static int read_parts(const merge_args *a, merge_job *j, v4r_err *err)
{
    char *items = v4r_path_join(a->dataset, "items.tsv"), items_sha[65];
    int rc = v4r_sha256_file(items, items_sha, err);
    free(items);
    j->part = v4r_calloc(a->n_parts, sizeof *j->part);
    j->owner = v4r_malloc((j->ds.n_items ? j->ds.n_items : 1) * sizeof *j->owner);
    j->owner_row = v4r_malloc((j->ds.n_items ? j->ds.n_items : 1) * sizeof *j->owner_row);
    for (size_t i = 0; i < j->ds.n_items; i++)
        j->owner[i] = j->owner_row[i] = -1;
    for (size_t k = 0; k < a->n_parts && !rc; k++) {
        char *manifest = v4r_cli_beside(a->parts[k], ".part.json");
        rc = v4r_vecpart_read(manifest, a->parts[k], &j->part[k], err);
        free(manifest);
        if (!rc)
            j->n = k + 1;
        if (!rc)
            rc = check_same(a, j, k, items_sha, err);
        if (!rc)
            rc = claim_rows(a, j, k, err);
    }
    return rc ? rc : check_complete(a, j, err);
}

/* ---- the outputs ---- */

/* OUT.npy: the header, then each part's rows written at their items' places. */
static int write_vectors(const merge_args *a, const merge_job *j, v4r_err *err)
{
    size_t dim = j->part[0].dim;
    char head[V4R_NPY_HEADER_MAX];
    size_t hlen = v4r_npy_header_f32(j->ds.n_items, dim, head);
    v4r_outfile out;
    int rc = v4r_out_open(&out, a->output, err);
    if (rc)
        return rc;
    fwrite(head, 1, hlen, out.fp);
    for (size_t k = 0; k < j->n && !rc; k++) {
        v4r_matrix m;
        rc = v4r_npy_read(a->parts[k], &m, err);
        for (size_t r = 0; r < m.rows && !rc; r++) {
            int64_t i = v4r_strmap_get(&j->ds.item_index, j->part[k].item[r]);
            if (fseeko(out.fp, (off_t)(hlen + (size_t)i * dim * sizeof(float)), SEEK_SET) != 0 ||
                fwrite(m.data + r * dim, sizeof(float), dim, out.fp) != dim)
                rc = v4r_fail(err, V4R_EIO, "%s: write failed", a->output);
        }
        v4r_matrix_free(&m);
    }
    if (rc) {
        v4r_out_abort(&out);
        return rc;
    }
    return v4r_out_commit(&out, err);
}

/* The coverage list (ids in dataset order), and for image vectors the failures list. */
static int write_lists(const merge_args *a, const merge_job *j, v4r_err *err)
{
    int images = !strcmp(j->part[0].command, "embed-images");
    char *cov = a->covered_out ? v4r_strdup(a->covered_out) : v4r_cli_beside(a->output, ".covered.txt");
    char *fail = v4r_cli_beside(a->output, ".failures.tsv");
    v4r_outfile co, fo;
    int rc = v4r_out_open(&co, cov, err);
    if (!rc && images && (rc = v4r_out_open(&fo, fail, err)) != 0)
        v4r_out_abort(&co);
    if (!rc && images)
        fputs("item\treason\n", fo.fp);
    for (size_t i = 0; i < j->ds.n_items && !rc; i++) {
        const v4r_vecpart *p = &j->part[j->owner[i]];
        size_t r = (size_t)j->owner_row[i];
        FILE *fp = p->covered[r] ? co.fp : images ? fo.fp : NULL;
        if (!fp)
            continue;
        v4r_tsv_write_field(fp, j->ds.item_id[i]);
        if (!p->covered[r]) {
            fputc('\t', fp);
            v4r_tsv_write_field(fp, p->reason[r] ? p->reason[r] : "no vector");
        }
        fputc('\n', fp);
    }
    if (!rc && images && (rc = v4r_out_commit(&fo, err)) != 0)
        v4r_out_abort(&co);
    if (!rc)
        rc = v4r_out_commit(&co, err);
    size_t covered = 0;
    for (size_t k = 0; k < j->n; k++)
        for (size_t r = 0; r < j->part[k].rows; r++)
            covered += j->part[k].covered[r];
    if (!rc)
        v4r_info("merged %zu parts (%d shards) into %s: %zu of %zu items have a vector; their ids are in %s%s%s", j->n,
                 j->part[0].shard_count, a->output, covered, j->ds.n_items, cov, images ? ", the others in " : "",
                 images ? fail : "");
    free(cov), free(fail);
    return rc;
}

/* ---- the command ---- */

static int parse_merge(int argc, char **argv, merge_args *a)
{
    static const struct option opts[] = {
        {"dataset", required_argument, 0, 'd'}, {"output", required_argument, 0, 'o'},
        {"covered-out", required_argument, 0, 'c'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': a->dataset = optarg; break;
        case 'o': a->output = optarg; break;
        case 'c': a->covered_out = optarg; break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(vectors_help, stdout); return -1;
        default: return v4r_cli_usage_error("vectors merge", "bad option");
        }
    }
    a->parts = argv + optind;
    a->n_parts = (size_t)(argc - optind);
    if (!a->dataset || !a->output)
        return v4r_cli_usage_error("vectors merge", "--dataset and -o are required");
    if (!a->n_parts)
        return v4r_cli_usage_error("vectors merge", "give the parts (PART.npy, one per shard)");
    return 0;
}

static int run_merge(const merge_args *a, v4r_err *err)
{
    merge_job j = {0};
    int rc = v4r_dataset_load(a->dataset, &j.ds, err), have_ds = !rc;
    if (!rc)
        rc = read_parts(a, &j, err);
    if (!rc)
        rc = write_vectors(a, &j, err);
    if (!rc)
        rc = write_lists(a, &j, err);
    for (size_t k = 0; k < j.n; k++)
        v4r_vecpart_free(&j.part[k]);
    free(j.part), free(j.owner), free(j.owner_row);
    if (have_ds)
        v4r_dataset_free(&j.ds);
    return rc;
}

int v4r_cmd_vectors(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(vectors_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? V4R_EUSAGE : 0;
    }
    if (strcmp(argv[1], "merge"))
        return v4r_cli_usage_error("vectors", "unknown subcommand '%s' (there is: merge)", argv[1]);
    merge_args a = {0};
    int rc = parse_merge(argc - 1, argv + 1, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    v4r_err err = {0};
    rc = run_merge(&a, &err);
    return rc ? v4r_cli_report(&err) : 0;
}
