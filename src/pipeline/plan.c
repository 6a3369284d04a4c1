/* pipeline: the plan's first stages from the config — dataset (synth or import), grounding,
 * text encoders (model or the TF-IDF fallback), vision vectors, fusion models — and the helpers
 * that build steps and read values. */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline_internal.h"
#include "vlm4rec/ground.h"
#include "vlm4rec/hub.h"
#include "vlm4rec/text.h"

pl_step *pl_step_new(pl_plan *p, int stage, const char *id)
{
    p->steps = v4r_realloc(p->steps, (p->n_steps + 1) * sizeof *p->steps);
    pl_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->stage = stage;
    s->id = v4r_strdup(id);
    s->protocol = -1;
    pl_arg(s, p->o->exe);
    return s;
}

void pl_arg(pl_step *s, const char *arg)
{
    v4r_grow((void **)&s->argv, &s->argcap, s->argc + 2, sizeof *s->argv);
    s->argv[s->argc++] = v4r_strdup(arg);
    s->argv[s->argc] = NULL;
}

void pl_argf(pl_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pl_arg(s, buf);
}

void pl_in(pl_step *s, const char *path)
{
    s->in = v4r_realloc(s->in, (s->n_in + 1) * sizeof *s->in);
    s->in[s->n_in++] = v4r_strdup(path);
}

void pl_out(pl_step *s, const char *path)
{
    s->out = v4r_realloc(s->out, (s->n_out + 1) * sizeof *s->out);
    s->out[s->n_out++] = v4r_strdup(path);
}

int pl_conf_fail(const pl_plan *p, int line, v4r_err *err, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return v4r_fail(err, V4R_EINPUT, "%s:%d: %s", p->conf.path, line, msg);
}

const char *pl_str(const v4r_conf_section *s, const char *key, const char *def)
{
    const v4r_conf_kv *kv = v4r_conf_get(s, key);
    return kv && *kv->value ? kv->value : def;
}

int pl_size(const pl_plan *p, const v4r_conf_section *s, const char *key, size_t def, size_t *out, v4r_err *err)
{
    const v4r_conf_kv *kv = v4r_conf_get(s, key);
    int64_t v;
    *out = def;
    if (!kv)
        return V4R_OK;
    if (v4r_parse_i64(kv->value, &v) || v < 0)
        return pl_conf_fail(p, kv->line, err, "%s: '%s' is not a non-negative integer", key, kv->value);
    *out = (size_t)v;
    return V4R_OK;
}

int pl_bool(const pl_plan *p, const v4r_conf_section *s, const char *key, int def, int *out, v4r_err *err)
{
    const v4r_conf_kv *kv = v4r_conf_get(s, key);
    *out = def;
    if (!kv)
        return V4R_OK;
    if (!strcmp(kv->value, "yes") || !strcmp(kv->value, "true") || !strcmp(kv->value, "1"))
        *out = 1;
    else if (!strcmp(kv->value, "no") || !strcmp(kv->value, "false") || !strcmp(kv->value, "0"))
        *out = 0;
    else
        return pl_conf_fail(p, kv->line, err, "%s: '%s' is not yes or no", key, kv->value);
    return V4R_OK;
}

char *pl_slug(const char *name)
{
    char *s = v4r_strdup(name);
    for (char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
              *c == '_' || *c == '.'))
            *c = '_';
    return s;
}

static char *in_dataset(const pl_plan *p, const char *name) { return v4r_path_join(p->dataset, name); }

/* ---- dataset ---- */

static int plan_synth(pl_plan *p, const v4r_conf_section *s, pl_step *st, v4r_err *err)
{
    size_t users, items, inter, seed;
    int images, rc = pl_size(p, s, "users", 2000, &users, err);
    if (!rc)
        rc = pl_size(p, s, "items", 3000, &items, err);
    if (!rc)
        rc = pl_size(p, s, "interactions", 16000, &inter, err);
    if (!rc)
        rc = pl_size(p, s, "seed", 1, &seed, err);
    if (!rc)
        rc = pl_bool(p, s, "images", 1, &images, err);
    if (rc)
        return rc;
    pl_arg(st, "dataset");
    pl_arg(st, "synth");
    pl_argf(st, "--users=%zu", users);
    pl_argf(st, "--items=%zu", items);
    pl_argf(st, "--interactions=%zu", inter);
    pl_argf(st, "--seed=%zu", seed);
    if (pl_str(s, "covered_share", NULL))
        pl_argf(st, "--covered=%s", pl_str(s, "covered_share", NULL));
    if (images)
        pl_arg(st, "--images");
    p->dataset_desc = v4r_sprintf("synthetic catalog: %zu users, %zu items, %zu interactions, seed %zu%s", users,
                                  items, inter, seed, images ? ", images" : "");
    return V4R_OK;
}

/* The files directly in an import directory are the step's inputs too: a source whose files change
 * in place (rows added, changed or removed) is imported again. */
static void import_inputs(pl_step *st, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *path = v4r_path_join(dir, e->d_name);
        struct stat sb;
        if (e->d_name[0] != '.' && stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            pl_in(st, path);
        free(path);
    }
    if (d)
        closedir(d);
}

static int plan_import(pl_plan *p, const v4r_conf_section *s, pl_step *st, v4r_err *err)
{
    const v4r_conf_kv *path = v4r_conf_get(s, "path");
    const char *format = pl_str(s, "format", "kaggle");
    int dedupe, rc = pl_bool(p, s, "dedupe", 0, &dedupe, err);
    if (rc)
        return rc;
    if (!path)
        return pl_conf_fail(p, s->line, err, "[dataset] source = import needs path = DIR");
    struct stat sb;
    int exists = stat(path->value, &sb) == 0; /* a directory (v4r_file_exists is for files) */
    if (!exists && !p->o->dry_run)
        return pl_conf_fail(p, path->line, err, "path: '%s' does not exist", path->value);
    if (!exists)
        printf("note: %s:%d: path: '%s' does not exist; a run stops here (this dry run goes on)\n", p->conf.path,
               path->line, path->value);
    if (strcmp(format, "kaggle") && strcmp(format, "mmrec") && strcmp(format, "tsv"))
        return pl_conf_fail(p, v4r_conf_get(s, "format")->line, err, "format: '%s' is not kaggle, mmrec or tsv",
                            format);
    pl_arg(st, "dataset");
    pl_arg(st, "import");
    pl_argf(st, "--format=%s", format);
    pl_arg(st, path->value);
    if (dedupe)
        pl_arg(st, "--dedupe");
    pl_in(st, path->value);
    import_inputs(st, path->value);
    p->dataset_desc = v4r_sprintf("imported (%s layout) from %s", format, path->value);
    return V4R_OK;
}

static int plan_dataset(pl_plan *p, v4r_err *err)
{
    const v4r_conf_section *s = v4r_conf_section_get(&p->conf, "dataset");
    if (!s)
        return v4r_fail(err, V4R_EINPUT, "%s: no [dataset] section", p->conf.path);
    const char *src = pl_str(s, "source", "synth");
    pl_step *st = pl_step_new(p, V4R_STAGE_DATASET, "dataset");
    int rc;
    if (!strcmp(src, "synth"))
        rc = plan_synth(p, s, st, err);
    else if (!strcmp(src, "import"))
        rc = plan_import(p, s, st, err);
    else
        return pl_conf_fail(p, v4r_conf_get(s, "source")->line, err, "source: '%s' is not synth or import", src);
    pl_argf(st, "--output=%s", p->dataset);
    static const char *const files[] = {"items.tsv", "users.tsv", "train.tsv", "valid.tsv", "test.tsv"};
    for (size_t i = 0; i < 5; i++) {
        char *f = in_dataset(p, files[i]);
        pl_out(st, f);
        free(f);
    }
    return rc;
}

/* ---- grounding ---- */

static void ground_options(pl_plan *p, const v4r_conf_section *s, pl_step *st)
{
    static const char *const opts[][2] = {{"order", "--order"},        {"limit", "--limit"},
                                          {"concurrency", "--concurrency"}, {"max_tokens", "--max-tokens"},
                                          {"timeout", "--timeout"},    {"retries", "--retries"},
                                          {"seed", "--seed"},          {"api_key_env", "--api-key-env"}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (pl_str(s, opts[i][0], NULL))
            pl_argf(st, "%s=%s", opts[i][1], pl_str(s, opts[i][0], NULL));
    const char *items = pl_str(s, "items", NULL);
    if (items) {
        char *alt = in_dataset(p, items);
        const char *use = v4r_file_exists(items) ? items : alt;
        pl_argf(st, "--items=%s", use);
        pl_in(st, use);
        free(alt);
    }
}

static int ground_prompt(pl_plan *p, const v4r_conf_section *s, pl_step *st, v4r_err *err)
{
    const v4r_conf_kv *file = v4r_conf_get(s, "prompt_file");
    if (file) {
        char *text = NULL;
        size_t len;
        if (v4r_read_file(file->value, &text, &len, NULL))
            return pl_conf_fail(p, file->line, err, "prompt_file: cannot read '%s'", file->value);
        pl_argf(st, "--prompt-file=%s", file->value);
        pl_in(st, file->value);
        p->ground_prompt = text;
        return V4R_OK;
    }
    const char *name = pl_str(s, "prompt", "paper");
    if (!v4r_prompt_preset(name))
        return pl_conf_fail(p, v4r_conf_get(s, "prompt")->line, err, "prompt: no preset '%s' (paper or script)", name);
    pl_argf(st, "--prompt=%s", name);
    p->ground_prompt = v4r_strdup(v4r_prompt_preset(name));
    return V4R_OK;
}

static int plan_ground(pl_plan *p, v4r_err *err)
{
    const v4r_conf_section *s = v4r_conf_section_get(&p->conf, "ground");
    int enabled, rc = pl_bool(p, s, "enabled", s != NULL, &enabled, err);
    if (rc || !enabled)
        return rc;
    const v4r_conf_kv *ep = v4r_conf_get(s, "endpoint");
    const char *env = getenv("VLM4REC_LVLM_URL");
    p->ground = 1;
    p->endpoint_line = ep ? ep->line : s->line;
    p->standin = !ep || !strcmp(ep->value, "standin");
    if (p->standin && env && *env)
        p->standin = 0, p->ground_endpoint = v4r_strdup(env);
    else
        p->ground_endpoint = v4r_strdup(p->standin ? "standin" : ep->value);
    p->ground_model = v4r_strdup(pl_str(s, "model", p->standin ? "vlm4rec-standin" : "llava"));
    p->cache = v4r_path_join(p->run_dir, "ground/semantic-cache.sqlite");
    pl_step *st = pl_step_new(p, V4R_STAGE_GROUND, "ground");
    st->standin = p->standin;
    pl_arg(st, "ground");
    pl_argf(st, "--dataset=%s", p->dataset);
    char *list = v4r_strdup(p->standin ? "@STANDIN@" : p->ground_endpoint), *save = NULL;
    for (char *e = strtok_r(list, ", ", &save); e; e = strtok_r(NULL, ", ", &save))
        pl_argf(st, "--endpoint=%s", e);
    free(list);
    pl_argf(st, "--model=%s", p->ground_model);
    pl_argf(st, "--cache=%s", p->cache);
    pl_arg(st, "--quiet");
    st->stdout_path = v4r_path_join(p->run_dir, "ground/summary.txt"); /* the counts of the run facts */
    st->counts = v4r_strdup(st->stdout_path);
    rc = ground_prompt(p, s, st, err);
    ground_options(p, s, st);
    char *items = in_dataset(p, "items.tsv");
    pl_in(st, items);
    pl_out(st, p->cache);
    free(items);
    return rc;
}

/* ---- text encoders ---- */

/* The encoder for a model id: the model directory when cached or pullable, else the fallback. */
static int resolve_encoder(pl_plan *p, const char *model, int line, int said, char **dir, char **name, v4r_err *err)
{
    const v4r_conf_section *enc = v4r_conf_section_get(&p->conf, "encoder");
    int pull, rc = pl_bool(p, enc, "pull", 1, &pull, err);
    const char *fallback = pl_str(enc, "fallback", "tfidf");
    if (rc)
        return rc;
    v4r_hub_opts ho;
    memset(&ho, 0, sizeof ho);
    ho.offline = 1;
    v4r_err e = {0};
    *dir = NULL;
    if (v4r_hub_resolve(model, &ho, dir, &e) != 0 && pull && p->o->dry_run) {
        if (!said)
            printf("note: %s is not in the model cache; a run pulls it first and passes its directory (this dry run "
               "does not; encode resolves the id itself), and uses the TF-IDF fallback if the pull fails\n",
               model);
        *dir = v4r_strdup(model);
        *name = v4r_strdup(model);
        return V4R_OK;
    }
    if (!*dir && pull) {
        ho.offline = 0;
        e.code = 0;
        v4r_hub_resolve(model, &ho, dir, &e);
    }
    if (*dir) {
        *name = v4r_strdup(model);
        return V4R_OK;
    }
    if (strcmp(fallback, "tfidf"))
        return pl_conf_fail(p, line, err, "encoder model '%s' is not available (%s) and fallback is %s", model, e.msg,
                            fallback);
    if (!said)
        printf("encode: %s is not in the model cache and could not be pulled (%s); using the TF-IDF encoder, "
               "the offline fallback (not Sentence-BERT)\n", model, e.msg);
    *name = v4r_strdup(V4R_TFIDF_NAME);
    return V4R_OK;
}

static int text_input(pl_plan *p, const pl_text *t, const char *source, int line, pl_step *st, v4r_err *err)
{
    if (!strcmp(source, "titles")) {
        pl_arg(st, "--titles");
        return V4R_OK;
    }
    if (!strcmp(source, "grounded")) {
        if (!p->ground)
            return pl_conf_fail(p, line, err, "[text %s]: source = grounded needs grounding ([ground])", t->name);
        pl_argf(st, "--input=%s", p->cache);
        pl_argf(st, "--cache-model=%s", p->ground_model);
        pl_in(st, p->cache);
        return V4R_OK;
    }
    if (strncmp(source, "file:", 5))
        return pl_conf_fail(p, line, err, "[text %s]: source '%s' is not titles, grounded, file:PATH or feature:PATH",
                            t->name, source);
    char *alt = in_dataset(p, source + 5);
    const char *use = v4r_file_exists(source + 5) ? source + 5 : alt;
    pl_argf(st, "--input=%s", use);
    pl_in(st, use);
    free(alt);
    return V4R_OK;
}

/* text_template: [text NAME]'s, else [encoder]'s for the sources that have descriptions (not titles). */
static int text_template(pl_plan *p, const v4r_conf_section *s, const char *source, pl_step *st, v4r_err *err)
{
    const v4r_conf_kv *own = v4r_conf_get(s, "text_template");
    const v4r_conf_kv *def = v4r_conf_get(v4r_conf_section_get(&p->conf, "encoder"), "text_template");
    if (own && (!strcmp(source, "titles") || !strncmp(source, "feature:", 8)))
        return pl_conf_fail(p, own->line, err, "[text %s]: text_template applies to grounded and file: sources",
                            s->name);
    const v4r_conf_kv *use = own ? own : def;
    if (use && *use->value && strcmp(source, "titles"))
        pl_argf(st, "--text-template=%s", use->value);
    return V4R_OK;
}

/* The model of an encoded [text] section (NULL for feature: vectors). */
static const char *text_model(const pl_plan *p, const v4r_conf_section *s)
{
    const v4r_conf_kv *src = v4r_conf_get(s, "source");
    if (!src || !strncmp(src->value, "feature:", 8))
        return NULL;
    return pl_str(s, "model", pl_str(v4r_conf_section_get(&p->conf, "encoder"), "model",
                                     "sentence-transformers/all-MiniLM-L6-v2"));
}

/* 1 when an earlier [text] section resolved the same model (what it printed is not said again). */
static int model_said(const pl_plan *p, const v4r_conf_section *s, const char *model)
{
    for (const v4r_conf_section *o = p->conf.sec; o < s; o++)
        if (!strcmp(o->kind, "text") && text_model(p, o) && !strcmp(text_model(p, o), model))
            return 1;
    return 0;
}

static int plan_text(pl_plan *p, const v4r_conf_section *s, v4r_err *err)
{
    const v4r_conf_section *enc = v4r_conf_section_get(&p->conf, "encoder");
    const v4r_conf_kv *src = v4r_conf_get(s, "source");
    p->texts = v4r_realloc(p->texts, (p->n_texts + 1) * sizeof *p->texts);
    pl_text *t = &p->texts[p->n_texts++];
    memset(t, 0, sizeof *t);
    t->name = v4r_strdup(s->name);
    if (!src)
        return pl_conf_fail(p, s->line, err, "[text %s] needs source =", s->name);
    if (!strncmp(src->value, "feature:", 8)) {
        if (v4r_conf_get(s, "text_template"))
            return text_template(p, s, src->value, NULL, err);
        t->path = in_dataset(p, src->value + 8);
        t->encoder = v4r_sprintf("precomputed (%s)", src->value + 8);
        return V4R_OK;
    }
    const v4r_conf_kv *mkv = v4r_conf_get(s, "model") ? v4r_conf_get(s, "model") : v4r_conf_get(enc, "model");
    const char *model = mkv ? mkv->value : "sentence-transformers/all-MiniLM-L6-v2";
    char *dir = NULL, *slug = pl_slug(s->name), *id = v4r_sprintf("encode.%s", slug);
    char *rel = v4r_sprintf("vectors/%s.npy", slug);
    int rc = resolve_encoder(p, model, mkv ? mkv->line : s->line, model_said(p, s, model), &dir, &t->encoder, err);
    t->path = v4r_path_join(p->run_dir, rel);
    t->covered = v4r_sprintf("%.*s.covered.txt", (int)strlen(t->path) - 4, t->path);
    pl_step *st = pl_step_new(p, V4R_STAGE_ENCODE, id);
    pl_arg(st, "encode");
    if (!rc && dir) {
        pl_argf(st, "--model=%s", dir);
        pl_argf(st, "--batch-size=%s", pl_str(enc, "batch_size", "32"));
        if (pl_str(enc, "precision", NULL)) /* fp32, bf16 or fp16, checked by encode */
            pl_argf(st, "--precision=%s", pl_str(enc, "precision", NULL));
    } else if (!rc) {
        pl_arg(st, "--tfidf");
        pl_argf(st, "--dim=%s", pl_str(enc, "dim", "1024"));
    }
    pl_argf(st, "--dataset=%s", p->dataset);
    pl_argf(st, "--output=%s", t->path);
    pl_arg(st, "--quiet");
    pl_arg(st, "--incremental"); /* only new or changed items are encoded */
    st->counts = v4r_strdup(t->path);
    if (!rc)
        rc = text_input(p, t, src->value, src->line, st, err);
    if (!rc)
        rc = text_template(p, s, src->value, st, err);
    if (!rc && !strcmp(src->value, "grounded")) {
        char *e = v4r_sprintf("%s, of the descriptions by %s", t->encoder,
                              p->standin ? "the stand-in server (not a vision-language model)" : p->ground_model);
        free(t->encoder);
        t->encoder = e;
    }
    char *items = in_dataset(p, "items.tsv");
    pl_in(st, items);
    pl_out(st, t->path);
    pl_out(st, t->covered);
    char *keys = v4r_reuse_keys_path(t->path);
    pl_out(st, keys);
    free(keys);
    free(items);
    free(dir);
    free(slug);
    free(id);
    free(rel);
    return rc;
}

/* ---- vision ---- */

static int plan_vision(pl_plan *p, v4r_err *err)
{
    const v4r_conf_section *s = v4r_conf_section_get(&p->conf, "vision");
    const v4r_conf_kv *src = v4r_conf_get(s, "source");
    if (!src)
        return V4R_OK;
    if (!strncmp(src->value, "feature:", 8)) {
        p->vision_path = in_dataset(p, src->value + 8);
        p->vision_encoder = v4r_sprintf("precomputed (%s)", src->value + 8);
        return V4R_OK;
    }
    if (strncmp(src->value, "clip:", 5))
        return pl_conf_fail(p, src->line, err, "source: '%s' is not feature:PATH or clip:MODEL", src->value);
    v4r_hub_opts ho;
    memset(&ho, 0, sizeof ho);
    char *dir = NULL;
    v4r_err e = {0};
    ho.offline = p->o->dry_run; /* a dry run pulls nothing */
    if (v4r_hub_resolve(src->value + 5, &ho, &dir, &e) && p->o->dry_run) {
        printf("note: %s is not in the model cache; a run pulls it first and passes its directory\n",
               src->value + 5);
        dir = v4r_strdup(src->value + 5);
    } else if (!dir)
        return pl_conf_fail(p, src->line, err, "source: CLIP model '%s' is not available: %s", src->value + 5, e.msg);
    p->vision_path = v4r_path_join(p->run_dir, "vectors/vision.npy");
    p->vision_encoder = v4r_sprintf("CLIP vision encoder %s", src->value + 5);
    pl_step *st = pl_step_new(p, V4R_STAGE_VISION, "vision");
    pl_arg(st, "embed-images");
    pl_argf(st, "--model=%s", dir);
    pl_argf(st, "--dataset=%s", p->dataset);
    pl_argf(st, "--output=%s", p->vision_path);
    pl_arg(st, "--quiet");
    pl_arg(st, "--incremental"); /* only new or changed images are embedded */
    st->counts = v4r_strdup(p->vision_path);
    char *items = in_dataset(p, "items.tsv"), *keys = v4r_reuse_keys_path(p->vision_path);
    pl_in(st, items);
    pl_out(st, p->vision_path);
    pl_out(st, keys);
    free(keys);
    free(items);
    free(dir);
    return V4R_OK;
}

/* ---- fusion ---- */

const pl_text *pl_find_text(const pl_plan *p, const char *name);
const pl_text *pl_find_text(const pl_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n_texts; i++)
        if (!strcmp(p->texts[i].name, name))
            return &p->texts[i];
    return NULL;
}

/* The items a fusion trains on: covered = auto (default: the text's covered list when it has one,
 * i.e. its vectors come from encoding descriptions or titles; none for feature: vectors), yes (the
 * text's list, which must exist), no (the whole catalog), or a file of item ids. */
static int fusion_covered(pl_plan *p, const v4r_conf_section *s, const pl_text *t, pl_step *st, v4r_err *err)
{
    const v4r_conf_kv *kv = v4r_conf_get(s, "covered");
    const char *v = kv && *kv->value ? kv->value : "auto";
    if (!strcmp(v, "no"))
        return V4R_OK;
    if (!strcmp(v, "yes") && !t->covered)
        return pl_conf_fail(p, kv->line, err,
                            "[fusion %s]: covered = yes, but [text %s] has no covered list (its vectors are given, "
                            "not encoded); give covered = FILE or no", s->name, t->name);
    if (!strcmp(v, "auto") || !strcmp(v, "yes")) {
        if (t->covered) {
            pl_argf(st, "--covered=%s", t->covered);
            pl_in(st, t->covered);
        }
        return V4R_OK;
    }
    char *alt = in_dataset(p, v);
    const char *use = v4r_file_exists(v) ? v : alt;
    pl_argf(st, "--covered=%s", use);
    pl_in(st, use);
    free(alt);
    return V4R_OK;
}

static int plan_fusion(pl_plan *p, const v4r_conf_section *s, v4r_err *err)
{
    const char *kind = pl_str(s, "kind", NULL), *text = pl_str(s, "text", NULL);
    if (!kind || (strcmp(kind, "attention") && strcmp(kind, "gating") && strcmp(kind, "smore")))
        return pl_conf_fail(p, s->line, err, "[fusion %s]: kind must be attention, gating or smore", s->name);
    const pl_text *t = text ? pl_find_text(p, text) : NULL;
    if (!t)
        return pl_conf_fail(p, v4r_conf_get(s, "text") ? v4r_conf_get(s, "text")->line : s->line, err,
                            "[fusion %s]: text must name a [text NAME] section", s->name);
    if (!p->vision_path)
        return pl_conf_fail(p, s->line, err, "[fusion %s]: fusion needs [vision] source", s->name);
    if (!p->train_available)
        return V4R_OK;
    char *slug = pl_slug(s->name), *id = v4r_sprintf("fusion.%s", slug), *rel = v4r_sprintf("fusion/%s.npy", slug);
    char *out = v4r_path_join(p->run_dir, rel), *train = in_dataset(p, "train.tsv");
    pl_step *st = pl_step_new(p, V4R_STAGE_FUSION, id);
    pl_arg(st, "train");
    pl_arg(st, kind);
    pl_argf(st, "--dataset=%s", p->dataset);
    pl_argf(st, "--text=%s", t->path);
    pl_argf(st, "--vision=%s", p->vision_path);
    pl_argf(st, "--output=%s", out);
    pl_arg(st, "--quiet");
    int rc = fusion_covered(p, s, t, st, err);
    char *opts = v4r_strdup(pl_str(s, "options", "")), *save = NULL;
    for (char *a = strtok_r(opts, " \t", &save); a; a = strtok_r(NULL, " \t", &save))
        pl_arg(st, a);
    pl_in(st, t->path);
    pl_in(st, p->vision_path);
    pl_in(st, train);
    pl_out(st, out);
    free(opts);
    free(slug);
    free(id);
    free(rel);
    free(out);
    free(train);
    return rc;
}

static int plan_sections(pl_plan *p, const char *kind, int (*fn)(pl_plan *, const v4r_conf_section *, v4r_err *),
                         v4r_err *err)
{
    int rc = V4R_OK;
    for (size_t i = 0; i < p->conf.n && !rc; i++)
        if (!strcmp(p->conf.sec[i].kind, kind))
            rc = fn(p, &p->conf.sec[i], err);
    return rc;
}

/* 1 when `vlm4rec train` exists in this build. */
static int train_available(const pl_plan *p)
{
    char *argv[] = {(char *)p->o->exe, "train", "--help", NULL};
    return pl_spawn(argv, NULL, 1) == 0;
}

int pl_plan_build(pl_plan *p, const v4r_run_opts *o, v4r_err *err)
{
    memset(p, 0, sizeof *p);
    p->o = o;
    int rc = v4r_conf_parse(o->config_path, o->config_text, &p->conf, err);
    if (rc)
        return rc;
    const v4r_conf_section *run = v4r_conf_section_get(&p->conf, "run");
    p->run_dir = v4r_strdup(o->run_dir ? o->run_dir : pl_str(run, "dir", "vlm4rec-run"));
    p->dataset = v4r_path_join(p->run_dir, "dataset");
    p->state_dir = v4r_path_join(p->run_dir, ".state");
    rc = plan_dataset(p, err);
    if (!rc)
        rc = plan_ground(p, err);
    if (!rc)
        rc = plan_sections(p, "text", plan_text, err);
    if (!rc)
        rc = plan_vision(p, err);
    p->train_available = v4r_conf_section_get(&p->conf, "fusion") && train_available(p);
    if (!rc && v4r_conf_section_get(&p->conf, "fusion") && !p->train_available)
        p->fusion_note = v4r_strdup("skipped: 'vlm4rec train' is not in this build");
    if (!rc)
        rc = plan_sections(p, "fusion", plan_fusion, err);
    if (!rc)
        rc = pl_plan_models(p, err);
    return rc;
}
