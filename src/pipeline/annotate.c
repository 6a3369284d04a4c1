/* pipeline: what the results JSON of a protocol gains from the run — its label, each model's
 * group and encoder, and the run facts (dataset, grounding server and prompt, encoders, fusion,
 * step timings) that the report shows. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_internal.h"

static const pl_model *model_named(const pl_plan *p, const char *name)
{
    for (size_t i = 0; name && i < p->n_models; i++)
        if (!strcmp(p->models[i].name, name))
            return &p->models[i];
    return NULL;
}

static json_t *ground_facts(const pl_plan *p)
{
    if (!p->ground)
        return json_string("not part of this run");
    const char *server = p->standin ? "the stand-in server, in-process (NOT a vision-language model: descriptions "
                                      "from pixel statistics)"
                                    : "a vision-language model server (OpenAI-compatible API)";
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "server", server, "endpoint", p->ground_endpoint, "model",
                     p->ground_model, "prompt", p->ground_prompt ? p->ground_prompt : "", "cache", p->cache);
}

/* Seconds of every step that has run so far (this run or an earlier one). */
static json_t *step_facts(const pl_plan *p)
{
    json_t *o = json_object();
    for (size_t i = 0; i < p->n_steps; i++) {
        char *name = v4r_sprintf("%s.seconds", p->steps[i].id), *path = v4r_path_join(p->state_dir, name);
        char *text = NULL;
        size_t len;
        if (v4r_read_file(path, &text, &len, NULL) == 0)
            json_object_set_new(o, p->steps[i].id, json_real(atof(text)));
        free(text);
        free(name);
        free(path);
    }
    return o;
}

/* Grounding's counts from the summary it printed: described now, found described, failed. */
static char *ground_counts(const char *path)
{
    char *text = NULL, *out = NULL;
    size_t len, done, failed, skipped_done, skipped_failed, busy;
    if (v4r_read_file(path, &text, &len, NULL) == 0 &&
        sscanf(text, "ground: %zu described, %zu failed; skipped %zu already done, %zu failed before, %zu held",
               &done, &failed, &skipped_done, &skipped_failed, &busy) == 5)
        out = v4r_sprintf("%zu new, %zu reused, %zu failed%s", done, skipped_done, failed + skipped_failed,
                          busy ? " (some held by another process)" : "");
    free(text);
    return out;
}

char *pl_item_counts(const pl_step *s)
{
    v4r_reuse_counts c;
    if (!s->counts)
        return NULL;
    if (s->stage == V4R_STAGE_GROUND)
        return ground_counts(s->counts);
    return v4r_reuse_read_counts(s->counts, &c) ? NULL : v4r_reuse_counts_text(&c);
}

/* Each per-item step's counts of its last run (new, changed, reused, removed, failed items). */
static json_t *item_facts(const pl_plan *p)
{
    json_t *o = json_object();
    for (size_t i = 0; i < p->n_steps; i++) {
        char *counts = pl_item_counts(&p->steps[i]);
        if (counts)
            json_object_set_new(o, p->steps[i].id, json_string(counts));
        free(counts);
    }
    return o;
}

static json_t *run_facts(const pl_plan *p)
{
    json_t *enc = json_object();
    for (size_t i = 0; i < p->n_texts; i++)
        json_object_set_new(enc, p->texts[i].name, json_string(p->texts[i].encoder));
    json_t *run = json_pack("{s:s,s:s,s:s,s:o,s:o}", "config", p->conf.path, "run_dir", p->run_dir, "dataset",
                            p->dataset_desc ? p->dataset_desc : "", "grounding", ground_facts(p), "text_encoders", enc);
    json_object_set_new(run, "vision", json_string(p->vision_encoder ? p->vision_encoder : "none"));
    if (v4r_conf_section_get(&p->conf, "fusion"))
        json_object_set_new(run, "fusion", json_string(p->fusion_note ? p->fusion_note : "trained by vlm4rec train"));
    json_object_set_new(run, "step_seconds", step_facts(p));
    json_object_set_new(run, "items", item_facts(p));
    return run;
}

int pl_annotate(const pl_plan *p, size_t protocol, v4r_err *err)
{
    const pl_protocol *pr = &p->protos[protocol];
    json_error_t je;
    json_t *root = json_load_file(pr->json, 0, &je);
    if (!root)
        return v4r_fail(err, V4R_EINPUT, "%s:%d: %s", pr->json, je.line, je.text);
    json_object_set_new(root, "label", json_string(pr->label));
    size_t i;
    json_t *m;
    json_array_foreach (json_object_get(root, "models"), i, m) {
        const pl_model *pm = model_named(p, json_string_value(json_object_get(m, "name")));
        if (pm && pm->group)
            json_object_set_new(m, "group", json_string(pm->group));
        if (pm && pm->encoder)
            json_object_set_new(m, "encoder", json_string(pm->encoder));
    }
    json_object_set_new(root, "run", run_facts(p));
    v4r_outfile out;
    int rc = v4r_out_open(&out, pr->json, err);
    if (!rc && json_dumpf(root, out.fp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
        v4r_out_abort(&out);
        rc = v4r_fail(err, V4R_EIO, "%s: cannot write", pr->json);
    } else if (!rc) {
        fputc('\n', out.fp);
        rc = v4r_out_commit(&out, err);
    }
    json_decref(root);
    return rc;
}
