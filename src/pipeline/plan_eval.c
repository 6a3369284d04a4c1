/* pipeline: the plan's last stages — representations ([model NAME] specs translated into eval's
 * specs), protocols (one eval step each) and the report (case studies, then report) — and freeing
 * the plan. */
#include <stdlib.h>
#include <string.h>

#include "pipeline_internal.h"

const pl_text *pl_find_text(const pl_plan *p, const char *name);

typedef struct {
    char *spec, *encoder;
    int skipped;
} translated;

static int fusion_known(const pl_plan *p, const char *name)
{
    for (size_t i = 0; i < p->conf.n; i++)
        if (!strcmp(p->conf.sec[i].kind, "fusion") && !strcmp(p->conf.sec[i].name, name))
            return 1;
    return 0;
}

static void append(char **s, const char *sep, const char *more)
{
    char *n = *s ? v4r_sprintf("%s%s%s", *s, sep, more) : v4r_strdup(more);
    free(*s);
    *s = n;
}

/* One atom of a spec: text:NAME, vision, fusion:NAME or file:PATH. */
static int atom(const pl_plan *p, const char *a, int line, translated *t, v4r_err *err)
{
    if (!strncmp(a, "text:", 5)) {
        const pl_text *x = pl_find_text(p, a + 5);
        if (!x)
            return pl_conf_fail(p, line, err, "spec: no [text %s]", a + 5);
        append(&t->spec, ",", x->path);
        append(&t->encoder, " + ", x->encoder);
    } else if (!strcmp(a, "vision")) {
        if (!p->vision_path)
            return pl_conf_fail(p, line, err, "spec: 'vision' needs [vision] source");
        append(&t->spec, ",", p->vision_path);
        append(&t->encoder, " + ", p->vision_encoder);
    } else if (!strncmp(a, "fusion:", 7)) {
        if (!fusion_known(p, a + 7))
            return pl_conf_fail(p, line, err, "spec: no [fusion %s]", a + 7);
        char *slug = pl_slug(a + 7), *rel = v4r_sprintf("fusion/%s.npy", slug), *path = v4r_path_join(p->run_dir, rel);
        append(&t->spec, ",", path);
        char *enc = v4r_sprintf("fusion model '%s' trained in C", a + 7);
        append(&t->encoder, " + ", enc);
        t->skipped |= !p->train_available;
        free(enc);
        free(slug);
        free(rel);
        free(path);
    } else if (!strncmp(a, "file:", 5)) {
        char *alt = v4r_path_join(p->dataset, a + 5);
        append(&t->spec, ",", v4r_file_exists(a + 5) || a[5] == '/' ? a + 5 : alt);
        free(alt);
        append(&t->encoder, " + ", "given file");
    } else {
        return pl_conf_fail(p, line, err, "spec: '%s' is not text:NAME, vision, fusion:NAME or file:PATH", a);
    }
    return V4R_OK;
}

static int translate(const pl_plan *p, const char *spec, int line, translated *t, v4r_err *err)
{
    static const char *const kinds[] = {"concat:", "mean-pad:", "mean:", "concat-raw:", "mean-raw:"};
    memset(t, 0, sizeof *t);
    const char *rest = spec;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strncmp(spec, kinds[i], strlen(kinds[i]))) {
            t->spec = v4r_strndup(kinds[i], strlen(kinds[i]) - 1);
            rest = spec + strlen(kinds[i]);
        }
    char *prefix = t->spec;
    t->spec = NULL;
    char *list = v4r_strdup(rest), *save = NULL;
    int rc = V4R_OK;
    for (char *a = strtok_r(list, ",", &save); a && !rc; a = strtok_r(NULL, ",", &save)) {
        while (*a == ' ')
            a++;
        rc = atom(p, a, line, t, err);
    }
    if (!rc && prefix) {
        char *s = v4r_sprintf("%s:%s", prefix, t->spec ? t->spec : "");
        free(t->spec);
        t->spec = s;
        char *e = v4r_sprintf("%s of %s", prefix, t->encoder);
        free(t->encoder);
        t->encoder = e;
    }
    free(prefix);
    free(list);
    return rc;
}

static int plan_model(pl_plan *p, const v4r_conf_section *s, v4r_err *err)
{
    const v4r_conf_kv *spec = v4r_conf_get(s, "spec");
    if (!spec)
        return pl_conf_fail(p, s->line, err, "[model %s] needs spec =", s->name);
    if (strchr(s->name, '='))
        return pl_conf_fail(p, s->line, err, "[model %s]: a name cannot hold '='", s->name);
    const char *group = pl_str(s, "group", NULL);
    if (group && strcmp(group, "text") && strcmp(group, "llava-fusion") && strcmp(group, "bert-fusion") &&
        strcmp(group, "other"))
        return pl_conf_fail(p, v4r_conf_get(s, "group")->line, err,
                            "group: '%s' is not text, llava-fusion, bert-fusion or other", group);
    translated t;
    int rc = translate(p, spec->value, spec->line, &t, err);
    p->models = v4r_realloc(p->models, (p->n_models + 1) * sizeof *p->models);
    p->models[p->n_models++] = (pl_model){v4r_strdup(s->name), t.spec, group ? v4r_strdup(group) : NULL, t.encoder,
                                          t.skipped};
    return rc;
}

static int find_model(const pl_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n_models; i++)
        if (!strcmp(p->models[i].name, name))
            return (int)i;
    return -1;
}

static int protocol_models(pl_plan *p, const v4r_conf_section *s, pl_protocol *pr, v4r_err *err)
{
    const v4r_conf_kv *kv = v4r_conf_get(s, "models");
    pr->models = v4r_malloc((p->n_models ? p->n_models : 1) * sizeof *pr->models);
    if (!kv || !strcmp(kv->value, "all")) {
        for (size_t i = 0; i < p->n_models; i++)
            if (!p->models[i].skipped)
                pr->models[pr->n_models++] = i;
        return V4R_OK;
    }
    char *list = v4r_strdup(kv->value), *save = NULL;
    int rc = V4R_OK;
    for (char *n = strtok_r(list, ",", &save); n && !rc; n = strtok_r(NULL, ",", &save)) {
        while (*n == ' ')
            n++;
        size_t len = strlen(n);
        while (len && n[len - 1] == ' ')
            n[--len] = 0;
        int m = find_model(p, n);
        if (m < 0)
            rc = pl_conf_fail(p, kv->line, err, "models: no [model %s]", n);
        else if (!p->models[m].skipped && pr->n_models < p->n_models)
            pr->models[pr->n_models++] = (size_t)m;
    }
    free(list);
    return rc;
}

static int protocol_covered(pl_plan *p, const v4r_conf_section *s, pl_step *st, v4r_err *err)
{
    const v4r_conf_kv *kv = v4r_conf_get(s, "covered");
    if (!kv || !strcmp(kv->value, "none"))
        return V4R_OK;
    if (!strncmp(kv->value, "text:", 5)) {
        const pl_text *t = pl_find_text(p, kv->value + 5);
        if (!t || !t->covered)
            return pl_conf_fail(p, kv->line, err, "covered: '%s' is not an encoded [text NAME]", kv->value);
        pl_argf(st, "--covered=%s", t->covered);
        pl_in(st, t->covered);
        return V4R_OK;
    }
    char *alt = v4r_path_join(p->dataset, kv->value);
    const char *use = v4r_file_exists(kv->value) ? kv->value : alt;
    pl_argf(st, "--covered=%s", use);
    pl_in(st, use);
    free(alt);
    return V4R_OK;
}

static void protocol_options(const v4r_conf_section *s, pl_step *st)
{
    static const char *const opts[][2] = {{"protocol", "--protocol"},
                                          {"history", "--history"},
                                          {"truth", "--truth"},
                                          {"history_length", "--history-length"},
                                          {"mask", "--mask"},
                                          {"profile", "--profile"},
                                          {"truth_duplicates", "--truth-duplicates"},
                                          {"sample_users", "--sample-users"},
                                          {"k", "--k"},
                                          {"bootstrap", "--bootstrap"},
                                          {"seed", "--seed"}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (pl_str(s, opts[i][0], NULL))
            pl_argf(st, "%s=%s", opts[i][1], pl_str(s, opts[i][0], NULL));
    if (!strcmp(pl_str(s, "keep_history", "no"), "yes"))
        pl_arg(st, "--keep-history");
}

/* The files of an eval spec, comma-separated (the kind: prefix dropped). Caller frees. */
static char *spec_files(const char *spec)
{
    static const char *const kinds[] = {"concat:", "mean-pad:", "mean:", "concat-raw:", "mean-raw:"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strncmp(spec, kinds[i], strlen(kinds[i])))
            return v4r_strdup(spec + strlen(kinds[i]));
    return v4r_strdup(spec);
}

static int plan_protocol(pl_plan *p, const v4r_conf_section *s, v4r_err *err)
{
    p->protos = v4r_realloc(p->protos, (p->n_protos + 1) * sizeof *p->protos);
    pl_protocol *pr = &p->protos[p->n_protos++];
    memset(pr, 0, sizeof *pr);
    pr->name = v4r_strdup(s->name);
    char *slug = pl_slug(s->name), *rel = v4r_sprintf("results/%s.json", slug), *id = v4r_sprintf("eval.%s", slug);
    pr->json = v4r_path_join(p->run_dir, rel);
    const v4r_conf_kv *cov = v4r_conf_get(s, "covered");
    int covered = cov && strcmp(cov->value, "none");
    pr->label = v4r_strdup(pl_str(s, "label", covered ? "covered subset" : "full catalog"));
    int rc = protocol_models(p, s, pr, err);
    if (!rc && pr->n_models == 0)
        rc = pl_conf_fail(p, s->line, err, "[protocol %s]: no representation to evaluate", s->name);
    const char *base = pl_str(s, "baseline", NULL);
    if (!rc && base && find_model(p, base) < 0)
        rc = pl_conf_fail(p, v4r_conf_get(s, "baseline")->line, err, "baseline: no [model %s]", base);
    pl_step *st = pl_step_new(p, V4R_STAGE_EVAL, id);
    st->protocol = (int)(p->n_protos - 1);
    pl_arg(st, "eval");
    pl_argf(st, "--dataset=%s", p->dataset);
    for (size_t i = 0; i < pr->n_models && !rc; i++) {
        const pl_model *m = &p->models[pr->models[i]];
        pl_argf(st, "--model=%s=%s", m->name, m->spec);
        char *files = spec_files(m->spec), *save = NULL;
        for (char *f = strtok_r(files, ",", &save); f; f = strtok_r(NULL, ",", &save))
            pl_in(st, f);
        free(files);
    }
    if (!rc && base)
        pl_argf(st, "--baseline=%s", base);
    if (!rc)
        rc = protocol_covered(p, s, st, err);
    protocol_options(s, st);
    pl_argf(st, "--output=%s", pr->json);
    pl_arg(st, "--quiet");
    char *items = v4r_path_join(p->dataset, "train.tsv");
    pl_in(st, items);
    pl_out(st, pr->json);
    free(items);
    free(slug);
    free(rel);
    free(id);
    return rc;
}

static int plan_cases(pl_plan *p, const v4r_conf_section *s, pl_step *report, v4r_err *err)
{
    const char *cases = pl_str(s, "cases", NULL);
    if (!cases || !p->n_models)
        return V4R_OK;
    const char *an = pl_str(s, "case_a", p->models[0].name), *bn = pl_str(s, "case_b", NULL);
    int a = find_model(p, an), b = bn ? find_model(p, bn) : (p->n_models > 1 ? 1 : 0);
    if (a < 0 || b < 0 || p->models[a].skipped || p->models[b].skipped)
        return pl_conf_fail(p, s->line, err, "[report]: case_a and case_b must name evaluated [model] sections");
    char *list = v4r_strdup(cases), *save = NULL;
    for (char *u = strtok_r(list, ", ", &save); u; u = strtok_r(NULL, ", ", &save)) {
        char *slug = pl_slug(u), *id = v4r_sprintf("report.case.%s", slug), *rel = v4r_sprintf("report/case-%s.txt", slug);
        pl_step *st = pl_step_new(p, V4R_STAGE_REPORT, id);
        st->stdout_path = v4r_path_join(p->run_dir, rel);
        pl_arg(st, "explain");
        pl_argf(st, "--dataset=%s", p->dataset);
        pl_argf(st, "--user=%s", u);
        pl_argf(st, "--a=%s=%s", p->models[a].name, p->models[a].spec);
        pl_argf(st, "--b=%s=%s", p->models[b].name, p->models[b].spec);
        pl_argf(st, "-k%s", pl_str(s, "case_k", "10"));
        if (!strcmp(pl_str(v4r_conf_section_get(&p->conf, "dataset"), "source", "synth"), "synth"))
            pl_argf(st, "--descriptions=%s/descriptions.tsv", p->dataset); /* the synthetic catalog has them */
        for (size_t i = 0; i < p->n_protos; i++)
            pl_in(st, p->protos[i].json);
        pl_out(st, st->stdout_path);
        pl_in(report, st->stdout_path);
        pl_argf(report, "--case=%s", st->stdout_path);
        free(slug);
        free(id);
        free(rel);
    }
    free(list);
    return V4R_OK;
}

static int plan_report(pl_plan *p, v4r_err *err)
{
    const v4r_conf_section *s = v4r_conf_section_get(&p->conf, "report");
    if (!p->n_protos)
        return V4R_OK;
    pl_step tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = plan_cases(p, s, &tmp, err);
    pl_step *st = pl_step_new(p, V4R_STAGE_REPORT, "report");
    pl_arg(st, "report");
    for (size_t i = 0; i < p->n_protos; i++) {
        pl_arg(st, p->protos[i].json);
        pl_in(st, p->protos[i].json);
    }
    char *dir = v4r_path_join(p->run_dir, "report");
    pl_argf(st, "--output=%s", dir);
    pl_argf(st, "--title=%s", pl_str(s, "title", "vlm4rec report"));
    for (size_t i = 0; i < tmp.argc; i++) /* the --case options */
        pl_arg(st, tmp.argv[i]);
    for (size_t i = 0; i < tmp.n_in; i++)
        pl_in(st, tmp.in[i]);
    char *md = v4r_path_join(dir, "report.md"), *html = v4r_path_join(dir, "report.html");
    pl_out(st, md);
    pl_out(st, html);
    for (size_t i = 0; i < tmp.argc; i++)
        free(tmp.argv[i]);
    for (size_t i = 0; i < tmp.n_in; i++)
        free(tmp.in[i]);
    free(tmp.argv);
    free(tmp.in);
    free(dir);
    free(md);
    free(html);
    return rc;
}

static int plan_all(pl_plan *p, const char *kind, int (*fn)(pl_plan *, const v4r_conf_section *, v4r_err *),
                    v4r_err *err)
{
    int rc = V4R_OK;
    for (size_t i = 0; i < p->conf.n && !rc; i++)
        if (!strcmp(p->conf.sec[i].kind, kind))
            rc = fn(p, &p->conf.sec[i], err);
    return rc;
}

int pl_plan_models(pl_plan *p, v4r_err *err)
{
    int rc = plan_all(p, "model", plan_model, err);
    if (!rc)
        rc = plan_all(p, "protocol", plan_protocol, err);
    if (!rc)
        rc = plan_report(p, err);
    return rc;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void pl_plan_free(pl_plan *p)
{
    for (size_t i = 0; i < p->n_steps; i++) {
        pl_step *s = &p->steps[i];
        free_list(s->argv, s->argc);
        free_list(s->in, s->n_in);
        free_list(s->out, s->n_out);
        free(s->id);
        free(s->stdout_path);
        free(s->counts);
    }
    for (size_t i = 0; i < p->n_texts; i++) {
        free(p->texts[i].name);
        free(p->texts[i].path);
        free(p->texts[i].encoder);
        free(p->texts[i].covered);
    }
    for (size_t i = 0; i < p->n_models; i++) {
        free(p->models[i].name);
        free(p->models[i].spec);
        free(p->models[i].group);
        free(p->models[i].encoder);
    }
    for (size_t i = 0; i < p->n_protos; i++) {
        free(p->protos[i].name);
        free(p->protos[i].label);
        free(p->protos[i].json);
        free(p->protos[i].models);
    }
    free(p->steps);
    free(p->texts);
    free(p->models);
    free(p->protos);
    free(p->run_dir);
    free(p->dataset);
    free(p->state_dir);
    free(p->vision_path);
    free(p->vision_encoder);
    free(p->ground_endpoint);
    free(p->ground_model);
    free(p->ground_prompt);
    free(p->cache);
    free(p->dataset_desc);
    free(p->fusion_note);
    v4r_conf_free(&p->conf);
}
