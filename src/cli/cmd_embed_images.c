/* `vlm4rec embed-images`: CLIP image vectors of a dataset's items into a .npy in item order, with a
 * coverage list and a failures list; chunks checkpointed in OUT.partial/ so that a killed run
 * resumes at the first unfinished chunk. */
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/data.h"
#include "vlm4rec/ground.h"
#include "vlm4rec/io.h"
#include "vlm4rec/pipeline.h"
#include "vlm4rec/vision.h"

static const char *embed_help =
    "usage: vlm4rec embed-images --model DIR|ORG/NAME --dataset DIR -o OUT.npy [options]\n"
    "\n"
    "Embeds every item's image with a CLIP vision model (image_embeds, as transformers'\n"
    "CLIPVisionModelWithProjection / CLIPModel.get_image_features after the model's own\n"
    "preprocessing). Row i of OUT is item i; an item whose image is missing, unreadable or not an\n"
    "image gets a zero row and a line in OUT.failures.tsv.\n"
    "  --model M          a model directory, or a Hugging Face id resolved through the model cache\n"
    "                     (see 'vlm4rec pull'; e.g. openai/clip-vit-large-patch14)\n"
    "  --dataset DIR      the dataset; items.tsv's image field is a path relative to DIR (or absolute)\n"
    "  -o, --output FILE  the vectors (.npy, float32, items x projection_dim)\n"
    "  --covered-out FILE the ids of the items that got a vector (default: OUT with .covered.txt in\n"
    "                     place of .npy); use it with 'eval --covered'\n"
    "  --batch-size N     images per forward batch (default 16)\n"
    "  --chunk-size N     images per checkpoint in OUT.partial/ (default 1024); a run that stops\n"
    "                     resumes at the first unfinished chunk when run again the same way\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --offline          never touch the network to resolve --model\n"
    "  -q, --quiet        no progress or log lines\n"
    "  --shard I/N        only the items of shard I of N (1-based; the hash split of 'ground --shard');\n"
    "                     OUT is a part: the shard's rows and OUT with .part.json in place of .npy\n"
    "                     (its items, which got a vector, why the others did not), which\n"
    "                     'vlm4rec vectors merge' joins (docs/cluster.md)\n"
    "  --reuse PREV.npy   copy the rows of PREV (an earlier output, with its PREV.keys.tsv) whose\n"
    "                     key is unchanged and embed only the other items; a key is the sha256 of\n"
    "                     the model's files and the image file's bytes. The keys go to OUT.keys.tsv;\n"
    "                     the log says how many items were new, changed, reused, removed, failed\n"
    "  --incremental      --reuse OUT when OUT and its keys exist (else embed everything)\n"
    "Batch size, chunk size and threads change the speed, never the numbers.\n";

typedef struct {
    const char *model, *dataset, *output, *covered_out, *reuse;
    int offline, incremental;
    size_t batch, chunk;
    int shard_index, shard_count; /* --shard I/N; count 0: no shard */
} embed_args;

/* One run: the dataset, the model, where each item's image is, the checkpoint folder. */
typedef struct {
    const embed_args *a;
    v4r_dataset ds;
    v4r_vision *v;
    char *model_dir, *partial;
    size_t n, dim, n_chunks;
    size_t *sel;    /* per row: the dataset index of its item (all items, or the shard's) */
    char **path;    /* per item: the file to read, or NULL */
    char **pre_why; /* per item without a file: why */
    int reusing;    /* --reuse or --incremental: per item its key and the earlier row to copy */
    v4r_reuse prev;
    char **key;
    const float **copy;
    v4r_reuse_counts c;
} embed_job;

/* ---- small helpers ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static char *chunk_file(const embed_job *j, size_t c, const char *ext)
{
    return v4r_sprintf("%s/chunk-%06zu.%s", j->partial, c, ext);
}

static size_t chunk_rows(const embed_job *j, size_t c)
{
    size_t r0 = c * j->a->chunk;
    return j->n - r0 < j->a->chunk ? j->n - r0 : j->a->chunk;
}

/* ---- where the images are ---- */

static int is_url(const char *s) { return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8); }

/* Each item's image file (relative paths against the dataset directory), or why it has none. */
static void locate_images(embed_job *j)
{
    j->path = v4r_calloc(j->n ? j->n : 1, sizeof *j->path);
    j->pre_why = v4r_calloc(j->n ? j->n : 1, sizeof *j->pre_why);
    for (size_t i = 0; i < j->n; i++) {
        const char *img = j->ds.item_image[j->sel[i]];
        if (!img[0])
            j->pre_why[i] = v4r_strdup("no image");
        else if (is_url(img))
            j->pre_why[i] = v4r_sprintf("%s: image URLs are not supported yet; download the images and give "
                                        "their paths",
                                        img);
        else
            j->path[i] = img[0] == '/' ? v4r_strdup(img) : v4r_path_join(j->a->dataset, img);
    }
}

/* ---- the checkpoint ---- */

/* FNV-1a of config.json, preprocessor_config.json and the weights' size and time. */
static uint64_t model_hash(const char *dir)
{
    static const char *const files[] = {"config.json", "preprocessor_config.json", "model.safetensors",
                                        "model.safetensors.index.json"};
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 4; i++) {
        char *path = v4r_path_join(dir, files[i]), *data = NULL;
        size_t len;
        struct stat sb;
        if (i < 2 && v4r_read_file(path, &data, &len, NULL) == 0)
            h = fnv(h, data, len);
        else if (i >= 2 && stat(path, &sb) == 0) {
            long long meta[2] = {(long long)sb.st_size, (long long)sb.st_mtime};
            h = fnv(h, meta, sizeof meta);
        }
        free(data);
        free(path);
    }
    return h;
}

/* What a checkpoint must match to be resumed. */
static json_t *manifest_of(const embed_job *j)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < j->n; i++) {
        const char *where = j->path[i] ? j->path[i] : j->pre_why[i];
        const char *id = j->ds.item_id[j->sel[i]];
        h = fnv(fnv(h, id, strlen(id) + 1), where, strlen(where) + 1);
    }
    char dh[17], mh[17];
    snprintf(dh, sizeof dh, "%016llx", (unsigned long long)h);
    snprintf(mh, sizeof mh, "%016llx", (unsigned long long)model_hash(j->model_dir));
    return json_pack("{s:s, s:I, s:I, s:I, s:s, s:s}", "format", "vlm4rec.embed-images.partial/1", "items",
                     (json_int_t)j->n, "dim", (json_int_t)j->dim, "chunk_size", (json_int_t)j->a->chunk, "dataset",
                     dh, "model", mh);
}

/* Removes the files of the checkpoint folder (it holds only this command's files), then the
 * folder when gone is set. */
static void clear_partial(const char *dir, int gone)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = v4r_path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    if (gone)
        rmdir(dir);
}

static int write_manifest(const char *path, json_t *m, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    json_dumpf(m, out.fp, JSON_INDENT(1) | JSON_SORT_KEYS);
    fputc('\n', out.fp);
    return v4r_out_commit(&out, err);
}

/* Opens OUT.partial/: kept when its manifest matches this run, else emptied and started anew. */
static int open_partial(embed_job *j, v4r_err *err)
{
    j->partial = v4r_sprintf("%s.partial", j->a->output);
    char *mpath = v4r_path_join(j->partial, "manifest.json");
    json_t *want = manifest_of(j), *have = json_load_file(mpath, 0, NULL);
    int rc = V4R_OK;
    struct stat sb;
    if (!have || !json_equal(have, want)) {
        if (stat(j->partial, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            v4r_warn("%s holds a run of another model, dataset or chunk size: starting over", j->partial);
            clear_partial(j->partial, 0);
        }
        rc = v4r_mkdir_p(j->partial, err);
        if (!rc)
            rc = write_manifest(mpath, want, err);
    }
    json_decref(want);
    json_decref(have);
    free(mpath);
    return rc;
}

/* A chunk is done when its failures list and its vectors (of the right shape) are there. */
static int chunk_done(const embed_job *j, size_t c)
{
    char *tsv = chunk_file(j, c, "tsv"), *npy = chunk_file(j, c, "npy");
    size_t rows, cols;
    int done = v4r_file_exists(tsv) && v4r_npy_shape(npy, &rows, &cols, NULL) == 0 && rows == chunk_rows(j, c) &&
               cols == j->dim;
    free(tsv);
    free(npy);
    return done;
}

/* ---- one chunk ---- */

/* chunk-N.tsv: "index<TAB>reason" of each failed item. */
static int write_chunk_failures(const embed_job *j, size_t c, const uint8_t *ok, char **why, v4r_err *err)
{
    char *path = chunk_file(j, c, "tsv");
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    for (size_t i = 0; !rc && i < chunk_rows(j, c); i++)
        if (!ok[i]) {
            fprintf(out.fp, "%zu\t", c * j->a->chunk + i);
            v4r_tsv_write_field(out.fp, why[i]);
            fputc('\n', out.fp);
        }
    if (!rc)
        rc = v4r_out_commit(&out, err);
    free(path);
    return rc;
}

/* The test suite's stand-in for a crash: VLM4REC_TEST_KILL_AFTER_CHUNKS=K kills the process with
 * SIGKILL once K chunks are written. */
static void maybe_die(size_t written)
{
    const char *k = getenv("VLM4REC_TEST_KILL_AFTER_CHUNKS");
    if (k && *k && (size_t)strtoul(k, NULL, 10) == written)
        raise(SIGKILL);
}

static int run_chunk(embed_job *j, size_t c, v4r_progress *prog, v4r_err *err)
{
    size_t r0 = c * j->a->chunk, m = chunk_rows(j, c);
    float *emb = v4r_malloc((m ? m : 1) * j->dim * sizeof *emb);
    uint8_t *ok = v4r_malloc(m ? m : 1);
    char **why = v4r_calloc(m ? m : 1, sizeof *why);
    v4r_vision_embed_files(j->v, (const char *const *)j->path + r0, m, j->a->batch, emb, ok, why, prog);
    for (size_t i = 0; i < m; i++)
        if (j->pre_why[r0 + i]) { /* no file to read: say why */
            free(why[i]);
            why[i] = v4r_strdup(j->pre_why[r0 + i]);
        }
    int rc = write_chunk_failures(j, c, ok, why, err);
    char *npy = chunk_file(j, c, "npy");
    if (!rc)
        rc = v4r_npy_write(npy, emb, m, j->dim, err);
    for (size_t i = 0; i < m; i++)
        free(why[i]);
    free(why), free(ok), free(emb), free(npy);
    return rc;
}

static int run_chunks(embed_job *j, v4r_err *err)
{
    size_t done = 0, written = 0;
    v4r_progress prog;
    for (size_t c = 0; c < j->n_chunks; c++)
        done += chunk_done(j, c);
    if (done)
        v4r_warn("resuming from %s: %zu of %zu chunks already done", j->partial, done, j->n_chunks);
    v4r_progress_start(&prog, "embedding images", j->n);
    int rc = V4R_OK;
    for (size_t c = 0; c < j->n_chunks && !rc; c++) {
        if (chunk_done(j, c)) {
            v4r_progress_add(&prog, chunk_rows(j, c));
            continue;
        }
        rc = run_chunk(j, c, &prog, err);
        if (!rc)
            maybe_die(++written);
    }
    v4r_progress_end(&prog);
    return rc;
}

/* ---- the outputs ---- */

/* The chunks' vectors one after another into OUT, one chunk in memory at a time. */
static int write_vectors(const embed_job *j, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, j->a->output, err);
    if (rc)
        return rc;
    char head[V4R_NPY_HEADER_MAX];
    fwrite(head, 1, v4r_npy_header_f32(j->n, j->dim, head), out.fp);
    for (size_t c = 0; c < j->n_chunks && !rc; c++) {
        char *npy = chunk_file(j, c, "npy");
        v4r_matrix m;
        rc = v4r_npy_read(npy, &m, err);
        for (size_t r = 0; !rc && j->copy && r < m.rows; r++)
            if (j->copy[c * j->a->chunk + r]) /* an unchanged item: its earlier row, bit for bit */
                memcpy(m.data + r * m.cols, j->copy[c * j->a->chunk + r], m.cols * sizeof *m.data);
        if (!rc)
            fwrite(m.data, sizeof(float), m.rows * m.cols, out.fp);
        if (!rc)
            v4r_matrix_free(&m);
        free(npy);
    }
    if (rc) {
        v4r_out_abort(&out);
        return rc;
    }
    return v4r_out_commit(&out, err);
}

/* Reads the chunks' failure lists into why[] (item order). */
static int read_failures(const embed_job *j, char **why, v4r_err *err)
{
    int rc = V4R_OK;
    for (size_t c = 0; c < j->n_chunks && !rc; c++) {
        char *path = chunk_file(j, c, "tsv");
        v4r_lines r;
        rc = v4r_lines_open(&r, path, err);
        int got;
        while (!rc && (got = v4r_lines_next(&r, err)) != 0) {
            if (got < 0) {
                rc = err->code;
                break;
            }
            char *f[2];
            int64_t idx;
            if (v4r_tsv_split(r.line, f, 2) != 2 || v4r_parse_i64(f[0], &idx) || idx < 0 || (size_t)idx >= j->n) {
                rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: malformed (remove %s and run again)", path, r.lineno,
                              j->partial);
                break;
            }
            v4r_tsv_unescape(f[1]);
            free(why[idx]);
            why[idx] = v4r_strdup(f[1]);
        }
        if (r.fp)
            v4r_lines_close(&r);
        free(path);
    }
    return rc;
}

/* OUT.failures.tsv (item, reason) and the coverage list: item ids in dataset order. */
static int write_lists(const embed_job *j, char **why, const char *fail_path, const char *cov_path, v4r_err *err)
{
    v4r_outfile fo, co;
    int rc = v4r_out_open(&fo, fail_path, err);
    if (rc)
        return rc;
    if ((rc = v4r_out_open(&co, cov_path, err)) != 0) {
        v4r_out_abort(&fo);
        return rc;
    }
    fputs("item\treason\n", fo.fp);
    for (size_t i = 0; i < j->n; i++) {
        FILE *fp = why[i] ? fo.fp : co.fp;
        v4r_tsv_write_field(fp, j->ds.item_id[j->sel[i]]);
        if (why[i]) {
            fputc('\t', fp);
            v4r_tsv_write_field(fp, why[i]);
        }
        fputc('\n', fp);
    }
    rc = v4r_out_commit(&fo, err);
    if (rc)
        v4r_out_abort(&co);
    return rc ? rc : v4r_out_commit(&co, err);
}

/* Says how many items failed and the first few reasons. */
static void report(const embed_job *j, char **why, const char *fail_path, double seconds)
{
    size_t failed = 0, shown = 0;
    for (size_t i = 0; i < j->n; i++)
        failed += why[i] != NULL;
    v4r_info("embedded %zu of %zu images in %.1fs into %s", j->n - failed, j->n, seconds, j->a->output);
    if (!failed)
        return;
    v4r_warn("%zu of %zu items got no vector (zero rows, left out of the coverage list); all in %s:", failed, j->n,
             fail_path);
    for (size_t i = 0; i < j->n && shown < 5; i++)
        if (why[i]) {
            v4r_warn("  %s: %s", j->ds.item_id[j->sel[i]], why[i]);
            shown++;
        }
    if (failed > shown)
        v4r_warn("  ... and %zu more", failed - shown);
}

/* ---- --shard ---- */

/* The shard's items (dataset indices in dataset order), or every item. */
static void select_items(embed_job *j)
{
    const embed_args *a = j->a;
    j->sel = v4r_malloc((j->ds.n_items ? j->ds.n_items : 1) * sizeof *j->sel);
    j->n = 0;
    for (size_t i = 0; i < j->ds.n_items; i++)
        if (!a->shard_count || v4r_plan_shard_of(j->ds.item_id[i], a->shard_count) == a->shard_index)
            j->sel[j->n++] = i;
}

/* OUT.part.json for the shard's vectors in OUT: its items, which got a vector, why the others not. */
static int write_part(const embed_job *j, char **why, v4r_err *err)
{
    const embed_args *a = j->a;
    v4r_vecpart p = {.command = "embed-images", .shard_index = a->shard_index, .shard_count = a->shard_count,
                     .n_items = j->ds.n_items, .model_id = (char *)a->model, .rows = j->n, .dim = j->dim,
                     .reason = why};
    char *items = v4r_path_join(a->dataset, "items.tsv"), *manifest = v4r_cli_beside(a->output, ".part.json");
    int rc = v4r_sha256_file(items, p.items_sha256, err);
    if (!rc)
        rc = v4r_model_fingerprint(j->model_dir, p.model_sha256, err);
    p.item = v4r_malloc((j->n ? j->n : 1) * sizeof *p.item);
    p.covered = v4r_malloc(j->n ? j->n : 1);
    for (size_t k = 0; k < j->n; k++) {
        p.item[k] = j->ds.item_id[j->sel[k]];
        p.covered[k] = why[k] == NULL;
    }
    p.options = json_object(); /* batch size, chunk size and threads do not change the numbers */
    if (!rc)
        rc = v4r_vecpart_write(manifest, a->output, &p, err);
    if (!rc)
        v4r_info("shard %d/%d: %zu items; part %s and %s", a->shard_index, a->shard_count, j->n, a->output, manifest);
    json_decref(p.options);
    free(p.item), free(p.covered), free(items), free(manifest);
    return rc;
}

/* OUT.keys.tsv: failed items keep no key (they are tried again); the counts go to the log. */
static int write_keys(embed_job *j, char **why, v4r_err *err)
{
    for (size_t i = 0; i < j->n; i++)
        if (why[i]) {
            free(j->key[i]);
            j->key[i] = v4r_strdup("-");
            j->c.n_failed++;
        }
    v4r_reuse_count_removed(&j->prev, &j->ds.item_index, &j->c);
    int rc = v4r_reuse_write(j->a->output, j->ds.item_id, j->key, j->n, &j->c, err);
    char *counts = v4r_reuse_counts_text(&j->c);
    if (!rc)
        v4r_info("items: %s", counts);
    free(counts);
    return rc;
}

static int finish(embed_job *j, double t0, v4r_err *err)
{
    char **why = v4r_calloc(j->n ? j->n : 1, sizeof *why);
    char *fail_path = v4r_cli_beside(j->a->output, ".failures.tsv");
    char *cov_path = j->a->covered_out ? v4r_strdup(j->a->covered_out) : v4r_cli_beside(j->a->output, ".covered.txt");
    int rc = read_failures(j, why, err);
    for (size_t i = 0; j->copy && i < j->n; i++)
        if (j->copy[i]) { /* reused: not a failure */
            free(why[i]);
            why[i] = NULL;
        }
    if (!rc)
        rc = write_vectors(j, err);
    if (!rc && j->a->shard_count)
        rc = write_part(j, why, err);
    else if (!rc)
        rc = write_lists(j, why, fail_path, cov_path, err);
    if (!rc && j->reusing)
        rc = write_keys(j, why, err);
    if (!rc) {
        clear_partial(j->partial, 1);
        report(j, why, fail_path, v4r_now() - t0);
    }
    for (size_t i = 0; i < j->n; i++)
        free(why[i]);
    free(why), free(fail_path), free(cov_path);
    return rc;
}

/* ---- the command ---- */

static int parse_args(int argc, char **argv, embed_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"dataset", required_argument, 0, 'd'},
        {"output", required_argument, 0, 'o'},     {"covered-out", required_argument, 0, 'c'},
        {"batch-size", required_argument, 0, 'b'}, {"chunk-size", required_argument, 0, 'k'},
        {"threads", required_argument, 0, 'j'},    {"offline", no_argument, 0, 'O'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {"shard", required_argument, 0, 'S'},      {"reuse", required_argument, 0, 'R'},
        {"incremental", no_argument, 0, 'I'},      {0, 0, 0, 0}};
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'd': a->dataset = optarg; break;
        case 'o': a->output = optarg; break;
        case 'c': a->covered_out = optarg; break;
        case 'b': rc = v4r_opt_size("embed-images", "batch-size", optarg, &a->batch); break;
        case 'k': rc = v4r_opt_size("embed-images", "chunk-size", optarg, &a->chunk); break;
        case 'j': rc = v4r_opt_threads("embed-images", optarg); break;
        case 'O': a->offline = 1; break;
        case 'S': rc = v4r_cli_parse_shard("embed-images", optarg, 1000000, &a->shard_index, &a->shard_count); break;
        case 'R': a->reuse = optarg; break;
        case 'I': a->incremental = 1; break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(embed_help, stdout); return -1;
        default: return v4r_cli_usage_error("embed-images", "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error("embed-images", "unexpected argument '%s'", argv[optind]);
    if (!rc && (!a->model || !a->dataset || !a->output))
        rc = v4r_cli_usage_error("embed-images", "--model, --dataset and -o are required");
    if (!rc && a->reuse && !v4r_file_exists(a->reuse))
        rc = v4r_cli_usage_error("embed-images", "--reuse: '%s' does not exist", a->reuse);
    if (!rc && (a->batch == 0 || a->chunk == 0))
        rc = v4r_cli_usage_error("embed-images", "--batch-size and --chunk-size must be at least 1");
    if (!rc && a->shard_count && (a->reuse || a->incremental))
        rc = v4r_cli_usage_error("embed-images", "--shard makes a part; --reuse and --incremental apply to whole "
                                                 "outputs");
    if (!rc && a->shard_count && a->covered_out)
        rc = v4r_cli_usage_error("embed-images", "--covered-out does not apply with --shard (the part's manifest lists "
                                                 "its covered items; 'vectors merge' writes the list)");
    return rc;
}

/* --reuse / --incremental: each item's key (model and image bytes); an item whose earlier row is
 * kept gets no file to read (its chunk row is replaced by that row when the vectors are written). */
static int plan_reuse(embed_job *j, v4r_err *err)
{
    char model[65], ident[128], hex[65];
    int rc = v4r_model_fingerprint(j->model_dir, model, err);
    if (rc)
        return rc;
    snprintf(ident, sizeof ident, "embed-images/1 model=%s", model);
    v4r_reuse_prepare(&j->prev, j->a->reuse, j->a->output, j->dim, "embedding every image");
    j->key = v4r_calloc(j->n ? j->n : 1, sizeof *j->key);
    j->copy = v4r_calloc(j->n ? j->n : 1, sizeof *j->copy);
    for (size_t i = 0; i < j->n; i++) {
        v4r_err unread = {0};
        if (!j->path[i] || v4r_sha256_file(j->path[i], hex, &unread)) {
            j->key[i] = v4r_strdup("-"); /* it fails below, and is tried again next time */
            v4r_reuse_lookup(&j->prev, j->ds.item_id[i], "-", &j->c);
            continue;
        }
        v4r_reuse_key(ident, hex, 64, hex);
        j->key[i] = v4r_strdup(hex);
        j->copy[i] = v4r_reuse_lookup(&j->prev, j->ds.item_id[i], hex, &j->c);
        if (j->copy[i]) {
            free(j->path[i]);
            j->path[i] = NULL;
            j->pre_why[i] = v4r_strdup("kept from the earlier output");
        }
    }
    return V4R_OK;
}

static void job_free(embed_job *j, int have_ds)
{
    for (size_t i = 0; j->path && i < j->n; i++) {
        free(j->path[i]);
        free(j->pre_why[i]);
    }
    for (size_t i = 0; j->key && i < j->n; i++)
        free(j->key[i]);
    free(j->key), free(j->copy);
    v4r_reuse_free(&j->prev);
    free(j->path), free(j->pre_why), free(j->model_dir), free(j->partial), free(j->sel);
    v4r_vision_free(j->v);
    if (have_ds)
        v4r_dataset_free(&j->ds);
}

static int run_embed(const embed_args *a, v4r_err *err)
{
    embed_job j = {0};
    j.a = a;
    double t0 = v4r_now();
    if (a->shard_count) { /* a part being rewritten is unfinished until its new manifest is there */
        char *manifest = v4r_cli_beside(a->output, ".part.json");
        unlink(manifest);
        free(manifest);
    }
    int rc = v4r_dataset_load(a->dataset, &j.ds, err), have_ds = !rc;
    if (!rc)
        rc = v4r_cli_resolve_model(a->model, a->offline, &j.model_dir, err);
    if (!rc)
        rc = v4r_vision_load(j.model_dir, &j.v, err);
    if (!rc) {
        select_items(&j);
        j.dim = v4r_vision_dim(j.v);
        j.n_chunks = (j.n + a->chunk - 1) / a->chunk;
        locate_images(&j);
        j.reusing = a->reuse || a->incremental;
        if (j.reusing)
            rc = plan_reuse(&j, err);
    }
    if (!rc) {
        rc = open_partial(&j, err);
    }
    if (!rc)
        rc = run_chunks(&j, err);
    if (!rc)
        rc = finish(&j, t0, err);
    job_free(&j, have_ds);
    return rc;
}

int v4r_cmd_embed_images(int argc, char **argv)
{
    embed_args a = {.batch = 16, .chunk = 1024};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    v4r_err err = {0};
    rc = run_embed(&a, &err);
    return rc ? v4r_cli_report(&err) : 0;
}
