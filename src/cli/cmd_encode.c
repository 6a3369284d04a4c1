/* `vlm4rec encode`: embed texts (a JSONL or TSV of item and text, the descriptions of a semantic
 * cache, or a dataset's titles) with a Sentence-BERT / BERT model into a .npy, in the dataset's item
 * order when a dataset is given. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/data.h"
#include "vlm4rec/ground.h"
#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/pipeline.h"
#include "vlm4rec/text.h"

static const char *encode_help =
    "usage: vlm4rec encode (--model DIR|ORG/NAME | --tfidf) (--input FILE | --dataset DIR --titles) -o OUT.npy [options]\n"
    "\n"
    "Embeds every text with the model (tokenized and truncated to its max_seq_length, pooled and\n"
    "normalized as its sentence-transformers files say).\n"
    "  --model M          a model directory, or a Hugging Face id resolved through the model cache\n"
    "                     (see 'vlm4rec pull')\n"
    "  --input FILE       JSONL ({\"item\": ID, \"text\": ...} a line; \"id\" is accepted for \"item\",\n"
    "                     \"description\" for \"text\", as 'cache export' writes) or TSV\n"
    "                     (item<TAB>text a line, an optional header 'item<TAB>text' or\n"
    "                     'item<TAB>description'); by extension\n"
    "                     .jsonl/.json or .tsv/.txt, or --format; or a semantic cache (an SQLite file,\n"
    "                     told by its first bytes): each item's most recent description\n"
    "  --format F         jsonl, tsv or cache\n"
    "  --cache-model M    with a cache: only the descriptions written by model M\n"
    "  --cache-prompt-hash H  with a cache: only those of the prompt whose sha256 starts with H\n"
    "                     (6 to 64 hex digits)\n"
    "  --dataset DIR      rows follow the dataset's item order; items without text get zero rows\n"
    "  --titles           with --dataset and no --input: encode the dataset's titles\n"
    "  -o, --output FILE  the vectors (.npy, float32)\n"
    "  --covered-out FILE with --dataset: the ids of the items that got a vector (default:\n"
    "                     OUT with .covered.txt in place of .npy); use it with 'eval --covered'.\n"
    "                     Cache items that are not in the dataset are skipped (and counted)\n"
    "  --batch-size N     sequences per forward batch (default 32; at most 1024 tokens)\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --precision P      fp32 (default), bf16 or fp16: the linear layers' weights and inputs\n"
    "                     rounded to bfloat16, products summed in float32 (AMX or AVX512_BF16),\n"
    "                     or to IEEE half, summed in fp16 over runs of 64 and those in float32\n"
    "                     (AVX512_FP16); on a CPU without the instructions, a warning and fp32.\n"
    "                     Not with --tfidf\n"
    "  --offline          never touch the network to resolve --model\n"
    "  -q, --quiet        no progress or log lines\n"
    "  --tfidf            instead of --model: the built-in TF-IDF encoder, the OFFLINE FALLBACK (hashed\n"
    "                     word unigrams, sublinear tf, idf fitted on this input, L2-normalized; not\n"
    "                     Sentence-BERT: label its vectors \"" V4R_TFIDF_NAME "\")\n"
    "  --dim N            with --tfidf: hash buckets = vector size (default 1024)\n"
    "  --text-template T  with --input: encode T filled in for each item instead of its text;\n"
    "                     {description} is the input's text, {title} the item's title in the\n"
    "                     dataset's items.tsv (needs --dataset; an empty title fills in as nothing),\n"
    "                     {{ and }} are braces. E.g. '{title}. {description}'. An item whose text is\n"
    "                     empty stays empty (no vector)\n"
    "  --empty zero|reference  an empty or all-blank text: zero (default) counts as no text (a zero\n"
    "                     row, not covered); reference gives it the vector sentence-transformers\n"
    "                     gives it (of [CLS] [SEP]; the item counts as covered). Not with --tfidf\n"
    "  --shard I/N        with --dataset: only the items of shard I of N (1-based; the hash split of\n"
    "                     'ground --shard'); OUT is a part: the shard's rows and OUT with .part.json\n"
    "                     in place of .npy, which 'vlm4rec vectors merge' joins (docs/cluster.md).\n"
    "                     Not with --tfidf (its idf is fitted on the whole input)\n"
    "  --reuse PREV.npy   with --dataset: copy the rows of PREV (an earlier output, with its\n"
    "                     PREV.keys.tsv) whose key is unchanged, encode only the other items. A key\n"
    "                     is the sha256 of the exact text encoded (after the template), the model's\n"
    "                     files and --empty; with --tfidf also --dim and every text (the idf is\n"
    "                     fitted on all of them, so any change recomputes all). The keys go to\n"
    "                     OUT.keys.tsv; the log says how many items were new, changed, reused, removed\n"
    "  --incremental      --reuse OUT when OUT and its keys exist (else encode everything)\n"
    "Invalid UTF-8 is an error naming the line.\n";

enum { IN_TSV, IN_JSONL, IN_CACHE };

typedef struct {
    const char *model, *input, *format, *dataset, *output, *covered_out;
    const char *cache_model, *cache_prompt_hash, *text_template, *reuse;
    int titles, offline, kind, tfidf, empty_reference, incremental, precision;
    size_t batch, dim;
    int shard_index, shard_count; /* --shard I/N; count 0: no shard */
    struct encode_shard *shard;   /* the shard's items, while a part is made */
    struct encode_reuse *ru;      /* with a dataset: the keys, and the earlier rows to copy */
} encode_args;

/* A shard: its items (dataset indices, in dataset order; row k of the part is item[k]). */
typedef struct encode_shard {
    size_t n;
    int64_t *item;
    const char *model_dir;
} encode_shard;

/* Per output row (dataset item): its key ("-" without a vector) and the earlier row to copy. */
typedef struct encode_reuse {
    v4r_reuse prev;
    char **key;
    const float **copy;
    v4r_reuse_counts c;
} encode_reuse;

typedef struct {
    size_t n, cap;
    char **item; /* NULL when the input has no ids */
    char **text;
    long *line;
    int by_item;   /* messages name items, not lines (a cache) */
    uint8_t *skip; /* texts whose row is copied from an earlier output (NULL: none) */
} text_list;

static void list_push(text_list *l, const char *item, const char *text, long line)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->item = v4r_realloc(l->item, l->cap * sizeof *l->item);
        l->text = v4r_realloc(l->text, l->cap * sizeof *l->text);
        l->line = v4r_realloc(l->line, l->cap * sizeof *l->line);
    }
    l->item[l->n] = item ? v4r_strdup(item) : NULL;
    l->text[l->n] = v4r_strdup(text);
    l->line[l->n] = line;
    l->n++;
}

static void list_free(text_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->item[i]);
        free(l->text[i]);
    }
    free(l->item);
    free(l->text);
    free(l->line);
    free(l->skip);
    memset(l, 0, sizeof *l);
}

static int jsonl_line(text_list *l, const char *path, long lineno, const char *line, v4r_err *err)
{
    json_error_t je;
    json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!obj || !json_is_object(obj)) {
        json_decref(obj);
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: not a JSON object (%s)", path, lineno, obj ? "" : je.text);
    }
    json_t *text = json_object_get(obj, "text"), *id = json_object_get(obj, "item");
    if (!id)
        id = json_object_get(obj, "id");
    if (!text) /* the lines of 'cache export' */
        text = json_object_get(obj, "description");
    int rc = V4R_OK;
    char num[32];
    const char *id_str = NULL;
    if (json_is_string(id))
        id_str = json_string_value(id);
    else if (json_is_integer(id))
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(id)), id_str = num;
    else if (id && !json_is_null(id))
        rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'item' must be a string or an integer", path, lineno);
    if (!rc && !json_is_string(text))
        rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'text' missing or not a string", path, lineno);
    if (!rc) { /* a C string cannot hold U+0000; the tokenizer drops it anyway */
        char *t = v4r_strndup(json_string_value(text), json_string_length(text));
        size_t w = 0;
        for (size_t i = 0; i < json_string_length(text); i++)
            if (t[i])
                t[w++] = t[i];
        t[w] = 0;
        list_push(l, id_str, t, lineno);
        free(t);
    }
    json_decref(obj);
    return rc;
}

static int tsv_line(text_list *l, const char *path, long lineno, char *line, v4r_err *err)
{
    char *f[3];
    size_t n = v4r_tsv_split(line, f, 3);
    if (lineno == 1 && n == 2 && !strcmp(f[0], "item") && (!strcmp(f[1], "text") || !strcmp(f[1], "description")))
        return V4R_OK; /* header (the synthetic catalog's descriptions.tsv has item, description) */
    if (n != 2)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: %zu fields, expected item<TAB>text", path, lineno, n);
    v4r_tsv_unescape(f[0]);
    v4r_tsv_unescape(f[1]);
    list_push(l, f[0], f[1], lineno);
    return V4R_OK;
}

static int read_texts(const char *path, int jsonl, text_list *l, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err);
    while (!rc) {
        int got = v4r_lines_next(&r, err);
        if (got <= 0) {
            rc = got < 0 ? err->code : V4R_OK;
            break;
        }
        if (!r.line[strspn(r.line, " \t")])
            continue;
        rc = jsonl ? jsonl_line(l, path, r.lineno, r.line, err) : tsv_line(l, path, r.lineno, r.line, err);
    }
    if (r.fp)
        v4r_lines_close(&r);
    if (!rc && l->n == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: no texts", path);
    return rc;
}

static int is_blank(const char *s) { return s[strspn(s, " \t\r\n")] == 0; }

/* Maps each text to its output row: the dataset's item index, or its own position. */
static int assign_rows(const text_list *l, const v4r_dataset *ds, const char *path, int64_t *row, v4r_err *err)
{
    if (!ds) {
        for (size_t i = 0; i < l->n; i++)
            row[i] = (int64_t)i;
        return V4R_OK;
    }
    long *seen = v4r_calloc(ds->n_items, sizeof *seen);
    int rc = V4R_OK;
    for (size_t i = 0; i < l->n && !rc; i++) {
        if (!l->item[i])
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: no item id (needed with --dataset)", path, l->line[i]);
        else if ((row[i] = v4r_strmap_get(&ds->item_index, l->item[i])) < 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'item': unknown item '%s' (not in the dataset)", path,
                          l->line[i], l->item[i]);
        else if (seen[row[i]])
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: item '%s' already has a text at line %ld", path, l->line[i],
                          l->item[i], seen[row[i]]);
        else
            seen[row[i]] = l->line[i] ? l->line[i] : -1;
    }
    free(seen);
    return rc;
}

/* Prefixes err with where text i of the list came from: its line, else its item. */
static int prefix_text(v4r_err *err, const text_list *l, const char *path, size_t i)
{
    if (l->line[i])
        return v4r_err_prefix(err, "%s:%ld: ", path, l->line[i]);
    if (l->by_item)
        return v4r_err_prefix(err, "%s: item '%s': ", path, l->item[i]);
    return v4r_err_prefix(err, "item %zu: ", i);
}

/* Tokenizes every non-blank text (in parallel); fails on the first invalid one in input order. */
static int tokenize_all(const v4r_encoder *enc, const text_list *l, const char *path, int keep_blank, int32_t **ids,
                        size_t *lens, v4r_err *err)
{
    const v4r_tokenizer *tok = v4r_encoder_tokenizer(enc);
    size_t max_len = v4r_encoder_max_seq_length(enc), bad = l->n;
    v4r_err first = {0};
#pragma omp parallel for schedule(dynamic, 64)
    for (size_t i = 0; i < l->n; i++) {
        ids[i] = NULL;
        lens[i] = 0;
        if ((is_blank(l->text[i]) && !keep_blank) || (l->skip && l->skip[i]))
            continue;
        v4r_err e = {0};
        if (v4r_tokenize(tok, l->text[i], max_len, &ids[i], &lens[i], &e) != 0) {
#pragma omp critical(v4r_encode_bad)
            if (i < bad) {
                bad = i;
                first = e;
            }
        }
    }
    if (bad == l->n)
        return V4R_OK;
    *err = first;
    return prefix_text(err, l, path, bad);
}

static int write_covered(const char *path, const v4r_dataset *ds, const uint8_t *has, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < ds->n_items; i++)
        if (has[i]) {
            v4r_tsv_write_field(out.fp, ds->item_id[i]);
            putc('\n', out.fp);
        }
    return v4r_out_commit(&out, err);
}

/* An encoder error names a sequence of the chunk ("sequence K: ..."): name the input text instead. */
static int locate_sequence(v4r_err *err, const text_list *l, const char *path, const size_t *seq_of, size_t c0)
{
    size_t k;
    int used = 0;
    if (sscanf(err->msg, "sequence %zu: %n", &k, &used) != 1 || used == 0)
        return err->code;
    memmove(err->msg, err->msg + used, strlen(err->msg + used) + 1);
    return prefix_text(err, l, path, seq_of[c0 + k]);
}

/* Encodes in chunks so a terminal sees progress; the vectors do not depend on the chunking. */
static int encode_chunks(v4r_encoder *enc, const int32_t **seq, const size_t *len, size_t n, size_t batch, float *out,
                         const text_list *l, const char *path, const size_t *seq_of, v4r_err *err)
{
    enum { CHUNK = 2048 };
    size_t dim = v4r_encoder_dim(enc);
    v4r_progress prog;
    v4r_progress_start(&prog, "encoding", n);
    int rc = V4R_OK;
    for (size_t c0 = 0; c0 < n && !rc; c0 += CHUNK) {
        size_t m = n - c0 < CHUNK ? n - c0 : CHUNK;
        rc = v4r_encoder_encode_ids(enc, seq + c0, len + c0, m, batch, out + c0 * dim, err);
        if (rc)
            rc = locate_sequence(err, l, path, seq_of, c0);
        v4r_progress_add(&prog, m);
    }
    v4r_progress_end(&prog);
    return rc;
}

/* ---- --shard: the shard's items and the part ---- */

/* What changes the numbers besides the model: parts must agree on it to be merged. */
static json_t *part_options(const encode_args *a)
{
    return json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s}", "source", a->titles ? "titles" : "texts", "text_template",
                     a->text_template, "empty", a->empty_reference ? "reference" : "zero", "cache_model",
                     a->cache_model, "cache_prompt_hash", a->cache_prompt_hash, "precision",
                     v4r_precision_name(a->precision));
}

/* OUT.npy (the shard's rows), then its manifest OUT.part.json. */
static int write_part(const encode_args *a, const float *vec, const uint8_t *has, size_t dim, const v4r_dataset *ds,
                      v4r_err *err)
{
    const encode_shard *sh = a->shard;
    v4r_vecpart p = {.command = "encode", .shard_index = a->shard_index, .shard_count = a->shard_count,
                     .n_items = ds->n_items, .model_id = (char *)a->model, .rows = sh->n, .dim = dim,
                     .covered = (uint8_t *)has};
    char *items = v4r_path_join(ds->dir, "items.tsv"), *manifest = v4r_cli_beside(a->output, ".part.json");
    char input_sha[65];
    int rc = v4r_sha256_file(items, p.items_sha256, err);
    if (!rc)
        rc = v4r_model_fingerprint(sh->model_dir, p.model_sha256, err);
    if (!rc && a->input && !(rc = v4r_sha256_file(a->input, input_sha, err)))
        p.input = json_pack("{s:s, s:s}", "path", a->input, "sha256", input_sha);
    p.item = v4r_malloc((sh->n ? sh->n : 1) * sizeof *p.item);
    for (size_t k = 0; k < sh->n; k++)
        p.item[k] = ds->item_id[sh->item[k]];
    p.options = part_options(a);
    if (!rc)
        rc = v4r_npy_write(a->output, vec, sh->n, dim, err);
    if (!rc)
        rc = v4r_vecpart_write(manifest, a->output, &p, err);
    if (!rc)
        v4r_info("shard %d/%d: %zu items; part %s and %s", a->shard_index, a->shard_count, sh->n, a->output, manifest);
    json_decref(p.options);
    json_decref(p.input);
    free(p.item), free(items), free(manifest);
    return rc;
}

/* Keeps the texts of the shard's items; rows become positions in the shard. */
static void keep_shard(const encode_args *a, text_list *l, const v4r_dataset *ds, int64_t *row, encode_shard *sh)
{
    int64_t *pos = v4r_malloc((ds->n_items ? ds->n_items : 1) * sizeof *pos);
    sh->item = v4r_malloc((ds->n_items ? ds->n_items : 1) * sizeof *sh->item);
    sh->n = 0;
    for (size_t i = 0; i < ds->n_items; i++)
        if (v4r_plan_shard_of(ds->item_id[i], a->shard_count) == a->shard_index) {
            pos[i] = (int64_t)sh->n;
            sh->item[sh->n++] = (int64_t)i;
        } else
            pos[i] = -1;
    size_t kept = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (pos[row[i]] < 0) {
            free(l->item[i]), free(l->text[i]);
            continue;
        }
        l->item[kept] = l->item[i], l->text[kept] = l->text[i], l->line[kept] = l->line[i];
        row[kept++] = pos[row[i]];
    }
    l->n = kept;
    free(pos);
}

/* The vectors (earlier rows copied bit for bit with --reuse), and with a dataset the ids of the
 * items that got one (with --shard: a part). */
static int write_outputs(const encode_args *a, float *vec, uint8_t *has, size_t n_rows, size_t dim,
                         size_t n_seq, size_t n_texts, const v4r_dataset *ds, v4r_err *err)
{
    for (size_t r = 0; a->ru && r < n_rows; r++)
        if (a->ru->copy[r]) { /* bit for bit */
            memcpy(vec + r * dim, a->ru->copy[r], dim * sizeof *vec);
            has[r] = 1;
            n_seq++;
        }
    int rc = a->shard ? write_part(a, vec, has, dim, ds, err) : v4r_npy_write(a->output, vec, n_rows, dim, err);
    if (!rc && ds && !a->shard) {
        char *cov = a->covered_out ? v4r_strdup(a->covered_out) : v4r_cli_beside(a->output, ".covered.txt");
        rc = write_covered(cov, ds, has, err);
        if (!rc)
            v4r_info("%zu of %zu items have a vector; their ids are in %s", n_seq, n_rows, cov);
        free(cov);
    }
    if (!rc && n_seq < n_texts)
        v4r_warn("%zu empty texts got no vector", n_texts - n_seq);
    if (!rc && a->ru) {
        for (size_t r = 0; r < n_rows; r++)
            if (!has[r] && strcmp(a->ru->key[r], "-")) { /* a text without a single word (TF-IDF) */
                free(a->ru->key[r]);
                a->ru->key[r] = v4r_strdup("-");
                a->ru->c.n_failed++;
            }
        a->ru->c.n_empty = n_rows - a->ru->c.n_new - a->ru->c.n_changed - a->ru->c.n_reused;
        v4r_reuse_count_removed(&a->ru->prev, &ds->item_index, &a->ru->c);
        rc = v4r_reuse_write(a->output, ds->item_id, a->ru->key, n_rows, &a->ru->c, err);
        char *counts = v4r_reuse_counts_text(&a->ru->c);
        if (!rc)
            v4r_info("items: %s (%zu without text)", counts, a->ru->c.n_empty);
        free(counts);
    }
    return rc;
}

static int blank_text(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v')
            return 0;
    return 1;
}

/* The TF-IDF fallback: the idf is fitted on the non-blank texts of this input. */
static int encode_rows_tfidf(const encode_args *a, const text_list *l, const int64_t *row, size_t n_rows,
                             const v4r_dataset *ds, v4r_err *err)
{
    const char **texts = v4r_malloc((l->n ? l->n : 1) * sizeof *texts);
    size_t *of = v4r_malloc((l->n ? l->n : 1) * sizeof *of), n = 0, n_seq = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!blank_text(l->text[i]) && !(l->skip && l->skip[i])) {
            texts[n] = l->text[i];
            of[n++] = i;
        }
    float *tmp = v4r_malloc((n ? n : 1) * a->dim * sizeof *tmp), *vec = v4r_calloc(n_rows * a->dim, sizeof *vec);
    uint8_t *has = v4r_calloc(n_rows ? n_rows : 1, 1);
    int rc = n ? v4r_tfidf_encode(texts, n, a->dim, tmp, err) : V4R_OK;
    for (size_t t = 0; t < n && !rc; t++) {
        float norm = 0;
        for (size_t d = 0; d < a->dim; d++)
            norm += tmp[t * a->dim + d] * tmp[t * a->dim + d];
        if (norm == 0)
            continue; /* no word at all: no vector */
        memcpy(vec + (size_t)row[of[t]] * a->dim, tmp + t * a->dim, a->dim * sizeof *vec);
        has[row[of[t]]] = 1;
        n_seq++;
    }
    if (!rc)
        rc = write_outputs(a, vec, has, n_rows, a->dim, n_seq, l->n, ds, err);
    free(texts);
    free(of);
    free(tmp);
    free(vec);
    free(has);
    return rc;
}

/* Encodes the non-blank texts and writes the rows; returns the count encoded in *done. */
static int encode_rows(v4r_encoder *enc, const encode_args *a, const text_list *l, const int64_t *row, size_t n_rows,
                       const v4r_dataset *ds, v4r_err *err)
{
    size_t dim = v4r_encoder_dim(enc);
    int32_t **ids = v4r_calloc(l->n, sizeof *ids);
    size_t *lens = v4r_calloc(l->n, sizeof *lens), n_seq = 0;
    const char *path = a->input ? a->input : "titles";
    int rc = tokenize_all(enc, l, path, a->empty_reference, ids, lens, err);
    const int32_t **seq = v4r_malloc(l->n * sizeof *seq);
    size_t *seq_len = v4r_malloc(l->n * sizeof *seq_len), *seq_of = v4r_malloc(l->n * sizeof *seq_of);
    for (size_t i = 0; i < l->n && !rc; i++)
        if (ids[i]) {
            seq[n_seq] = ids[i];
            seq_len[n_seq] = lens[i];
            seq_of[n_seq++] = i;
        }
    float *vec = v4r_calloc(n_rows * dim, sizeof *vec), *tmp = v4r_malloc((n_seq ? n_seq : 1) * dim * sizeof *tmp);
    uint8_t *has = v4r_calloc(n_rows, 1);
    if (!rc && n_seq)
        rc = encode_chunks(enc, seq, seq_len, n_seq, a->batch, tmp, l, path, seq_of, err);
    for (size_t s = 0; s < n_seq && !rc; s++) {
        memcpy(vec + (size_t)row[seq_of[s]] * dim, tmp + s * dim, dim * sizeof *vec);
        has[row[seq_of[s]]] = 1;
    }
    if (!rc)
        rc = write_outputs(a, vec, has, n_rows, dim, n_seq, l->n, ds, err);
    for (size_t i = 0; i < l->n; i++)
        free(ids[i]);
    free(ids);
    free(lens);
    free(seq);
    free(seq_len);
    free(seq_of);
    free(vec);
    free(tmp);
    free(has);
    return rc;
}

/* --format, else a semantic cache by its first bytes, else JSONL or TSV by the extension. */
static int input_kind(const encode_args *a)
{
    if (a->format)
        return !strcmp(a->format, "cache") ? IN_CACHE : !strcmp(a->format, "jsonl") ? IN_JSONL : IN_TSV;
    static const char magic[16] = "SQLite format 3";
    char head[16];
    FILE *fp = fopen(a->input, "rb");
    int cache = fp && fread(head, 1, sizeof head, fp) == sizeof head && !memcmp(head, magic, sizeof head);
    if (fp)
        fclose(fp);
    if (cache)
        return IN_CACHE;
    const char *dot = strrchr(a->input, '.');
    return dot && (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json")) ? IN_JSONL : IN_TSV;
}

typedef struct {
    text_list *l;
    const v4r_dataset *ds;
    size_t skipped;
} cache_read;

static int cache_text(const char *item, const char *description, void *ctx)
{
    cache_read *r = ctx;
    if (r->ds && v4r_strmap_get(&r->ds->item_index, item) < 0)
        r->skipped++;
    else
        list_push(r->l, item, description, 0);
    return 0;
}

/* Each item's most recent description in a semantic cache (id order); with a dataset, its items only. */
static int read_cache(const encode_args *a, const v4r_dataset *ds, text_list *l, v4r_err *err)
{
    v4r_cache *c = NULL;
    int rc = v4r_cache_open_readonly(a->input, &c, err);
    v4r_cache_filter f = {a->cache_model, a->cache_prompt_hash};
    cache_read r = {l, ds, 0};
    l->by_item = 1;
    if (!rc)
        rc = v4r_cache_foreach_text(c, &f, cache_text, &r, err);
    v4r_cache_close(c);
    if (!rc && r.skipped)
        v4r_warn("%s: %zu described item%s not in the dataset %s: skipped", a->input, r.skipped,
                 r.skipped == 1 ? " is" : "s are", a->dataset);
    if (!rc && l->n == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: no descriptions%s", a->input,
                      a->cache_model || a->cache_prompt_hash || r.skipped ? " (of the chosen model, prompt and dataset)"
                                                                          : "");
    return rc;
}

/* ---- --text-template ---- */

/* Replaces every non-blank text by the template filled in (titles from the dataset's rows). */
static void apply_template(const encode_args *a, text_list *l, const v4r_dataset *ds, const int64_t *row)
{
    for (size_t i = 0; i < l->n; i++) {
        if (blank_text(l->text[i]))
            continue; /* no description: stays no text */
        char *filled = v4r_text_template_fill(a->text_template, ds ? ds->item_title[row[i]] : "", l->text[i]);
        free(l->text[i]);
        l->text[i] = filled;
    }
}

static int check_args(encode_args *a)
{
    int rc = 0, uses_title = 0;
    if (a->text_template)
        rc = v4r_cli_check_text_template("encode", a->text_template, &uses_title);
    if (!rc && a->text_template && !a->input)
        rc = v4r_cli_usage_error("encode", "--text-template applies to --input texts, not --titles");
    if (!rc && uses_title && !a->dataset)
        rc = v4r_cli_usage_error("encode", "--text-template: {title} needs --dataset (the titles are in its items.tsv)");
    if (!rc && a->shard_count && (!a->dataset || a->tfidf || a->covered_out))
        rc = v4r_cli_usage_error("encode", "--shard needs --dataset, and not --tfidf (its idf is fitted on the whole "
                                           "input) nor --covered-out (the part's manifest lists its covered items)");
    if (!rc && (a->reuse || a->incremental) && !a->dataset)
        rc = v4r_cli_usage_error("encode", "--%s needs --dataset (rows are kept by item id)",
                                 a->reuse ? "reuse" : "incremental");
    if (!rc && a->reuse && !v4r_file_exists(a->reuse))
        rc = v4r_cli_usage_error("encode", "--reuse: '%s' does not exist", a->reuse);
    if (!rc && a->shard_count && (a->reuse || a->incremental))
        rc = v4r_cli_usage_error("encode", "--shard makes a part; --reuse and --incremental apply to whole outputs");
    if (!rc && a->empty_reference && a->tfidf)
        rc = v4r_cli_usage_error("encode", "--empty reference needs --model (the TF-IDF encoder has no vector for an "
                                           "empty text)");
    return rc;
}

static int parse_args(int argc, char **argv, encode_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"input", required_argument, 0, 'i'},
        {"format", required_argument, 0, 'f'},  {"dataset", required_argument, 0, 'd'},
        {"titles", no_argument, 0, 't'},        {"output", required_argument, 0, 'o'},
        {"covered-out", required_argument, 0, 'c'}, {"batch-size", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'j'}, {"offline", no_argument, 0, 'O'},
        {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
        {"cache-model", required_argument, 0, 'M'}, {"cache-prompt-hash", required_argument, 0, 'H'},
        {"tfidf", no_argument, 0, 'T'},         {"dim", required_argument, 0, 'D'},
        {"text-template", required_argument, 0, 'X'}, {"empty", required_argument, 0, 'E'},
        {"shard", required_argument, 0, 'S'},
        {"reuse", required_argument, 0, 'R'},   {"incremental", no_argument, 0, 'I'},
        {"precision", required_argument, 0, 'P'}, {0, 0, 0, 0}};
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'i': a->input = optarg; break;
        case 'f': a->format = optarg; break;
        case 'd': a->dataset = optarg; break;
        case 't': a->titles = 1; break;
        case 'o': a->output = optarg; break;
        case 'c': a->covered_out = optarg; break;
        case 'b': rc = v4r_opt_size("encode", "batch-size", optarg, &a->batch); break;
        case 'j': rc = v4r_opt_threads("encode", optarg); break;
        case 'O': a->offline = 1; break;
        case 'T': a->tfidf = 1; break;
        case 'D': rc = v4r_opt_size("encode", "dim", optarg, &a->dim); break;
        case 'M': a->cache_model = optarg; break;
        case 'H': a->cache_prompt_hash = optarg; break;
        case 'X': a->text_template = optarg; break;
        case 'S': rc = v4r_cli_parse_shard("encode", optarg, 1000000, &a->shard_index, &a->shard_count); break;
        case 'R': a->reuse = optarg; break;
        case 'I': a->incremental = 1; break;
        case 'E':
            if (strcmp(optarg, "zero") && strcmp(optarg, "reference"))
                return v4r_cli_usage_error("encode", "--empty must be zero or reference, not '%s'", optarg);
            a->empty_reference = !strcmp(optarg, "reference");
            break;
        case 'P':
            a->precision = v4r_precision_by_name(optarg);
            if (a->precision < 0)
                return v4r_cli_usage_error("encode", "--precision must be fp32, bf16 or fp16, not '%s'", optarg);
            break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(encode_help, stdout); return -1;
        default: return v4r_cli_usage_error("encode", "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error("encode", "unexpected argument '%s'", argv[optind]);
    if (!rc && (!a->model == !a->tfidf || !a->output))
        rc = v4r_cli_usage_error("encode", "-o and one of --model or --tfidf are required");
    if (!rc && a->tfidf && a->precision != V4R_PREC_FP32)
        rc = v4r_cli_usage_error("encode", "--precision applies to --model, not --tfidf");
    if (!rc && a->tfidf && (a->dim == 0 || a->dim > 1000000))
        rc = v4r_cli_usage_error("encode", "--dim must be 1..1000000");
    if (!rc && !a->input == !a->titles)
        rc = v4r_cli_usage_error("encode", "give either --input FILE or --titles (with --dataset)");
    if (!rc && a->titles && !a->dataset)
        rc = v4r_cli_usage_error("encode", "--titles needs --dataset");
    if (!rc && a->format && strcmp(a->format, "jsonl") && strcmp(a->format, "tsv") && strcmp(a->format, "cache"))
        rc = v4r_cli_usage_error("encode", "--format must be jsonl, tsv or cache, not '%s'", a->format);
    if (!rc && a->input)
        a->kind = input_kind(a);
    if (!rc && a->kind != IN_CACHE && (a->cache_model || a->cache_prompt_hash))
        rc = v4r_cli_usage_error("encode", "--%s applies only to a cache input",
                                 a->cache_model ? "cache-model" : "cache-prompt-hash");
    const char *h = a->cache_prompt_hash;
    if (!rc && h && (strlen(h) < 6 || strlen(h) > 64 || strspn(h, "0123456789abcdefABCDEF") != strlen(h)))
        rc = v4r_cli_usage_error("encode", "--cache-prompt-hash '%s': give 6 to 64 hex digits", h);
    return rc ? rc : check_args(a);
}

static void titles_of(const v4r_dataset *ds, text_list *l)
{
    for (size_t i = 0; i < ds->n_items; i++)
        list_push(l, ds->item_id[i], ds->item_title[i], 0);
}

/* What identifies the numbers besides each text: the model's files, --empty and --precision, or for TF-IDF its
 * size and the whole corpus it is fitted on. */
static int reuse_identity(const encode_args *a, const text_list *l, const char *model_dir, char *ident, size_t n,
                          v4r_err *err)
{
    char hex[65];
    if (!a->tfidf) {
        int rc = v4r_model_fingerprint(model_dir, hex, err);
        /* bf16 and fp16 give other numbers: their rows never stand in for fp32's (fp32 keys stay as
         * they were) */
        snprintf(ident, n, "encode/1 model=%s empty=%s%s%s", hex, a->empty_reference ? "reference" : "zero",
                 a->precision != V4R_PREC_FP32 ? " precision=" : "",
                 a->precision != V4R_PREC_FP32 ? v4r_precision_name(a->precision) : "");
        return rc;
    }
    size_t total = 0, at = 0;
    for (size_t i = 0; i < l->n; i++)
        total += strlen(l->text[i]) + 1;
    char *all = v4r_malloc(total + 1);
    for (size_t i = 0; i < l->n; i++)
        if (!blank_text(l->text[i])) { /* the texts the idf is fitted on, each ended by a NUL */
            memcpy(all + at, l->text[i], strlen(l->text[i]) + 1);
            at += strlen(l->text[i]) + 1;
        }
    v4r_sha256_hex(all, at, hex);
    free(all);
    snprintf(ident, n, "encode/1 tfidf dim=%zu corpus=%s", a->dim, hex);
    return V4R_OK;
}

/* --reuse / --incremental: every row's key, and the earlier rows whose key is unchanged (their
 * texts are not encoded again). */
static int plan_reuse(const encode_args *a, text_list *l, const v4r_dataset *ds, const int64_t *row,
                      const char *model_dir, size_t dim, v4r_err *err)
{
    encode_reuse *ru = a->ru;
    char ident[256], hex[65];
    int rc = reuse_identity(a, l, model_dir, ident, sizeof ident, err);
    if (rc)
        return rc;
    v4r_reuse_prepare(&ru->prev, a->reuse, a->output, dim, "encoding every item");
    ru->key = v4r_calloc(ds->n_items ? ds->n_items : 1, sizeof *ru->key);
    ru->copy = v4r_calloc(ds->n_items ? ds->n_items : 1, sizeof *ru->copy);
    l->skip = v4r_calloc(l->n ? l->n : 1, 1);
    for (size_t r = 0; r < ds->n_items; r++)
        ru->key[r] = v4r_strdup("-");
    for (size_t i = 0; i < l->n; i++) {
        if (a->tfidf ? blank_text(l->text[i]) : is_blank(l->text[i]) && !a->empty_reference)
            continue; /* no vector: nothing to keep */
        v4r_reuse_key(ident, l->text[i], strlen(l->text[i]), hex);
        free(ru->key[row[i]]);
        ru->key[row[i]] = v4r_strdup(hex);
        ru->copy[row[i]] = v4r_reuse_lookup(&ru->prev, ds->item_id[row[i]], hex, &ru->c);
        l->skip[i] = ru->copy[row[i]] != NULL;
    }
    return V4R_OK;
}

static void reuse_free(encode_reuse *ru, size_t n_rows)
{
    for (size_t r = 0; ru->key && r < n_rows; r++)
        free(ru->key[r]);
    free(ru->key);
    free(ru->copy);
    v4r_reuse_free(&ru->prev);
}

static int run_encode(const encode_args *a, v4r_err *err)
{
    v4r_dataset ds;
    text_list l = {0};
    v4r_encoder *enc = NULL;
    int have_ds = 0;
    if (a->shard_count) { /* a part being rewritten is unfinished until its new manifest is there */
        char *manifest = v4r_cli_beside(a->output, ".part.json");
        unlink(manifest);
        free(manifest);
    }
    int rc = a->dataset ? v4r_dataset_load(a->dataset, &ds, err) : V4R_OK;
    have_ds = a->dataset && !rc;
    if (!rc && a->input && a->kind == IN_CACHE)
        rc = read_cache(a, have_ds ? &ds : NULL, &l, err);
    else if (!rc && a->input)
        rc = read_texts(a->input, a->kind == IN_JSONL, &l, err);
    else if (!rc)
        titles_of(&ds, &l);
    char *model_dir = NULL;
    if (!rc && !a->tfidf)
        rc = v4r_cli_resolve_model(a->model, a->offline, &model_dir, err);
    if (!rc && !a->tfidf)
        rc = v4r_encoder_load_precision(model_dir, a->precision, &enc, err);
    if (!rc && enc)
        v4r_encoder_warn_fallback(enc, a->precision, "--precision");
    int64_t *row = v4r_malloc((l.n ? l.n : 1) * sizeof *row);
    if (!rc)
        rc = assign_rows(&l, have_ds ? &ds : NULL, a->input ? a->input : "titles", row, err);
    if (!rc && a->text_template)
        apply_template(a, &l, have_ds ? &ds : NULL, row);
    encode_shard shard = {.model_dir = model_dir};
    encode_args with_shard = *a;
    if (!rc && a->shard_count) {
        keep_shard(a, &l, &ds, row, &shard);
        with_shard.shard = &shard;
        a = &with_shard;
    }
    size_t n_rows = a->shard ? shard.n : have_ds ? ds.n_items : l.n;
    if (!rc && a->ru)
        rc = plan_reuse(a, &l, &ds, row, model_dir, a->tfidf ? a->dim : v4r_encoder_dim(enc), err);
    if (!rc) {
        double t0 = v4r_now();
        if (a->tfidf)
            rc = encode_rows_tfidf(a, &l, row, n_rows, have_ds ? &ds : NULL, err);
        else
            rc = encode_rows(enc, a, &l, row, n_rows, have_ds ? &ds : NULL, err);
        size_t kept = 0;
        for (size_t i = 0; l.skip && i < l.n; i++)
            kept += l.skip[i];
        if (!rc)
            v4r_info("encoded %zu texts in %.1fs into %s%s", l.n - kept, v4r_now() - t0, a->output,
                     a->tfidf ? " with " V4R_TFIDF_NAME ", not Sentence-BERT" : "");
    }
    if (a->ru)
        reuse_free(a->ru, have_ds ? ds.n_items : 0);
    free(row);
    free(shard.item);
    free(model_dir);
    v4r_encoder_free(enc);
    list_free(&l);
    if (have_ds)
        v4r_dataset_free(&ds);
    return rc;
}

int v4r_cmd_encode(int argc, char **argv)
{
    encode_args a = {0};
    encode_reuse ru = {0};
    a.dim = 1024;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (a.reuse || a.incremental)
        a.ru = &ru;
    v4r_err err = {0};
    rc = run_encode(&a, &err);
    return rc ? v4r_cli_report(&err) : 0;
}
