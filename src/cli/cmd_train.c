/* `vlm4rec train attention|gating|smore`: train a fusion baseline on a dataset's training split and
 * write its item vectors, weights (safetensors) and training log (JSON). */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/fusion.h"
#include "vlm4rec/rec.h"

static const char *train_help =
    "usage: vlm4rec train attention|gating|smore --dataset DIR --text T.npy --vision V.npy -o OUT.npy [options]\n"
    "\n"
    "Trains a fusion baseline on the training split, picks the best epoch on the validation split and\n"
    "writes OUT.npy (one fused vector per item, for 'vlm4rec eval'), OUT.safetensors (the weights) and\n"
    "OUT.log.json (loss, validation Recall@20 and timing per epoch); smore also writes OUT.users.npy.\n"
    "  --dataset DIR          the dataset directory\n"
    "  --text FILE            text vectors (.npy, one row per item), e.g. 384-d descriptions\n"
    "  --vision FILE          vision vectors (.npy, one row per item), e.g. 768-d CLIP vectors\n"
    "                         (a relative FILE that does not exist is looked up in the dataset directory)\n"
    "  -o, --output FILE      the item vectors (.npy); the other outputs are named after it\n"
    "  --covered FILE         train and validate on the covered items only (ids, one a line); the\n"
    "                         other items get zero rows\n"
    "  --objective O          attention, gating: cointeraction (default: InfoNCE, the positive another\n"
    "                         item of the anchor's user) or released: the released training script's\n"
    "                         recipe (each training interaction against 4 negatives drawn for it; sets\n"
    "                         --dim 768 --hidden 512 --batch-size 256 --negatives 4 --temperature 0.07\n"
    "                         --lr 0.001 --clip 1.0 --epochs 15 --patience 0 --lr-schedule plateau:0.5:2\n"
    "                         --keep last, which explicit options override)\n"
    "  --epochs N             the most epochs (default 15; smore 1000)\n"
    "  --patience N           stop once more than N epochs in a row have not improved the best\n"
    "                         epoch (validation loss; smore: its own validation Recall@20); 0 = train\n"
    "                         every epoch (default 0; smore 20)\n"
    "  --batch-size N         default 256 (smore 2048)\n"
    "  --lr X                 Adam's learning rate (default 0.001)\n"
    "  --lr-schedule S        constant (default), exp:G, step:N:G, cosine[:MIN] or, for attention and\n"
    "                         gating, plateau[:G[:N]] (x G once more than N epochs in a row have not\n"
    "                         lowered the validation loss: ReduceLROnPlateau, default 0.1 and 10)\n"
    "                         (smore default exp:0.99918382, x 0.96 every 50 epochs)\n"
    "  --keep best|last       attention, gating: write the best epoch's weights by validation loss\n"
    "                         (default) or the last epoch's (released)\n"
    "  --weight-decay X       L2 penalty added to the gradient (default 0)\n"
    "  --adamw                decoupled weight decay (AdamW) instead\n"
    "  --clip X               gradient norm clipping (default 1.0; smore 0 = none)\n"
    "  --hidden N             attention, gating: projection size (default 512)\n"
    "  --dim N                output size (default 512; smore 64)\n"
    "  --negatives N          attention, gating: sampled negatives a batch besides in-batch (default\n"
    "                         256); released: negatives drawn for each example (4)\n"
    "  --temperature X        attention, gating: InfoNCE temperature (default 0.07)\n"
    "  --knn K                smore: neighbours in both item-item graphs (default 10)\n"
    "  --knn-image K          smore: neighbours in the vision graph only\n"
    "  --knn-text K           smore: neighbours in the text graph only\n"
    "  --layers N             smore: user-item graph layers (default 2)\n"
    "  --item-layers N        smore: propagations over the item-item graphs (default 1)\n"
    "  --reg X                smore: L2 weight on the batch embeddings (default 1e-5)\n"
    "  --cl-weight X          smore: weight of the InfoNCE between views (default 0.01)\n"
    "  --cl-temperature X     smore: its temperature (default 0.2)\n"
    "  --no-recall            skip the per-epoch validation Recall@20\n"
    "  --seed S               random seed (default 0)\n"
    "  --threads N            worker threads (default: all cores); results are reproducible at a\n"
    "                         fixed thread count\n"
    "  -q, --quiet            no progress or log lines\n"
    "A loss that stops being finite ends training with exit code 3; the kept epoch so far is written.\n";

typedef struct {
    const char *dataset, *text, *vision, *output, *covered, *schedule;
    v4r_train_opts o;
    int threads;
} train_args;

static int parse_model(const char *name, int *model)
{
    static const char *const names[] = {"attention", "gating", "smore"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *model = i;
            return 0;
        }
    return v4r_cli_usage_error("train", "the model must be attention, gating or smore, not '%s'", name);
}

static int positive_size(const char *opt, const char *val, size_t *out)
{
    int rc = v4r_opt_size("train", opt, val, out);
    if (!rc && *out == 0)
        rc = v4r_cli_usage_error("train", "--%s must be at least 1", opt);
    return rc;
}

static int parse_option(int c, train_args *a)
{
    v4r_train_opts *o = &a->o;
    size_t n;
    switch (c) {
    case 'd': a->dataset = optarg; return 0;
    case 't': a->text = optarg; return 0;
    case 'v': a->vision = optarg; return 0;
    case 'o': a->output = optarg; return 0;
    case 'c': a->covered = optarg; return 0;
    case 'J': return 0; /* read before the other options (parse_objective) */
    case 'E':
        if (strcmp(optarg, "best") && strcmp(optarg, "last"))
            return v4r_cli_usage_error("train", "--keep must be best or last, not '%s'", optarg);
        o->keep = strcmp(optarg, "last") ? V4R_KEEP_BEST : V4R_KEEP_LAST;
        return 0;
    case 'e': return positive_size("epochs", optarg, &o->epochs);
    case 'P': return v4r_opt_size("train", "patience", optarg, &o->patience);
    case 'b': return positive_size("batch-size", optarg, &o->batch);
    case 'l': return v4r_opt_double("train", "lr", optarg, &o->lr);
    case 'S': a->schedule = optarg; return 0;
    case 'w': return v4r_opt_double("train", "weight-decay", optarg, &o->weight_decay);
    case 'W': o->decoupled = 1; return 0;
    case 'C': return v4r_opt_double("train", "clip", optarg, &o->clip);
    case 'H': return positive_size("hidden", optarg, &o->hidden);
    case 'D': return positive_size("dim", optarg, &o->dim);
    case 'n': return v4r_opt_size("train", "negatives", optarg, &o->negatives);
    case 'T': return v4r_opt_double("train", "temperature", optarg, &o->temperature);
    case 'k':
        if (positive_size("knn", optarg, &o->knn_image))
            return V4R_EUSAGE;
        o->knn_text = o->knn_image;
        return 0;
    case 'K': return positive_size("knn-image", optarg, &o->knn_image);
    case 'X': return positive_size("knn-text", optarg, &o->knn_text);
    case 'L': return v4r_opt_size("train", "layers", optarg, &o->ui_layers);
    case 'I': return v4r_opt_size("train", "item-layers", optarg, &o->ii_layers);
    case 'r': return v4r_opt_double("train", "reg", optarg, &o->reg_weight);
    case 'g': return v4r_opt_double("train", "cl-weight", optarg, &o->cl_weight);
    case 'G': return v4r_opt_double("train", "cl-temperature", optarg, &o->cl_temperature);
    case 'R': o->valid_recall = 0; return 0;
    case 's': return v4r_opt_u64("train", "seed", optarg, &o->seed);
    case 'j':
        if (v4r_opt_size("train", "threads", optarg, &n))
            return V4R_EUSAGE;
        if (n == 0 || n > 1024)
            return v4r_cli_usage_error("train", "--threads must be 1..1024");
        a->threads = (int)n;
        omp_set_num_threads((int)n);
        return 0;
    case 'q': v4r_log_set_level(V4R_LOG_WARN); return 0;
    case 'h': fputs(train_help, stdout); return -1;
    default: return v4r_cli_usage_error("train", "bad option");
    }
}

static int check_args(train_args *a)
{
    const v4r_train_opts *o = &a->o;
    if (!a->dataset || !a->text || !a->vision || !a->output)
        return v4r_cli_usage_error("train", "--dataset, --text, --vision and -o are required");
    if (!(o->lr > 0) || !isfinite(o->lr))
        return v4r_cli_usage_error("train", "--lr must be a positive number");
    if (!(o->weight_decay >= 0) || !(o->clip >= 0) || !(o->reg_weight >= 0) || !(o->cl_weight >= 0))
        return v4r_cli_usage_error("train", "--weight-decay, --clip, --reg and --cl-weight must be >= 0");
    if (!(o->temperature > 0) && o->model != V4R_MODEL_SMORE)
        return v4r_cli_usage_error("train", "--temperature must be positive");
    if (!(o->cl_temperature > 0) && o->model == V4R_MODEL_SMORE)
        return v4r_cli_usage_error("train", "--cl-temperature must be positive");
    if (o->objective == V4R_OBJ_RELEASED && o->negatives == 0)
        return v4r_cli_usage_error("train", "--objective released needs --negatives of at least 1");
    v4r_err err = {0};
    if (a->schedule && v4r_lr_parse(a->schedule, o->epochs, &a->o.schedule, &err))
        return v4r_cli_usage_error("train", "--lr-schedule: %s", err.msg);
    a->o.schedule.epochs = o->epochs;
    if (o->model == V4R_MODEL_SMORE && (o->schedule.kind == V4R_LR_PLATEAU || o->keep != V4R_KEEP_BEST))
        return v4r_cli_usage_error("train", "--lr-schedule plateau and --keep are for attention and gating");
    return 0;
}

/* --objective first, wherever it stands: the released recipe sets defaults that the other options
 * then override. */
static int parse_objective(int argc, char **argv, const struct option *opts, train_args *a)
{
    int c, objective = V4R_OBJ_COINTERACTION;
    v4r_opt_reset();
    opterr = 0; /* the second pass reports bad options */
    while ((c = getopt_long(argc - 1, argv + 1, "o:qh", opts, NULL)) != -1) {
        if (c != 'J')
            continue;
        if (!strcmp(optarg, "cointeraction"))
            objective = V4R_OBJ_COINTERACTION;
        else if (!strcmp(optarg, "released"))
            objective = V4R_OBJ_RELEASED;
        else
            return v4r_cli_usage_error("train", "--objective must be cointeraction or released, not '%s'", optarg);
    }
    if (objective == V4R_OBJ_RELEASED && a->o.model == V4R_MODEL_SMORE)
        return v4r_cli_usage_error("train", "--objective is for attention and gating");
    if (objective == V4R_OBJ_RELEASED)
        v4r_train_released_recipe(&a->o);
    return 0;
}

static int parse_args(int argc, char **argv, train_args *a)
{
    static const struct option opts[] = {
        {"dataset", required_argument, 0, 'd'},     {"text", required_argument, 0, 't'},
        {"vision", required_argument, 0, 'v'},      {"output", required_argument, 0, 'o'},
        {"covered", required_argument, 0, 'c'},     {"objective", required_argument, 0, 'J'},
        {"epochs", required_argument, 0, 'e'},      {"batch-size", required_argument, 0, 'b'},
        {"patience", required_argument, 0, 'P'},    {"knn-image", required_argument, 0, 'K'},
        {"knn-text", required_argument, 0, 'X'},    {"item-layers", required_argument, 0, 'I'},
        {"lr", required_argument, 0, 'l'},          {"lr-schedule", required_argument, 0, 'S'},
        {"weight-decay", required_argument, 0, 'w'}, {"adamw", no_argument, 0, 'W'},
        {"clip", required_argument, 0, 'C'},        {"hidden", required_argument, 0, 'H'},
        {"dim", required_argument, 0, 'D'},         {"negatives", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 'T'}, {"knn", required_argument, 0, 'k'},
        {"layers", required_argument, 0, 'L'},      {"reg", required_argument, 0, 'r'},
        {"cl-weight", required_argument, 0, 'g'},   {"cl-temperature", required_argument, 0, 'G'},
        {"no-recall", no_argument, 0, 'R'},         {"seed", required_argument, 0, 's'},
        {"threads", required_argument, 0, 'j'},     {"quiet", no_argument, 0, 'q'},
        {"keep", required_argument, 0, 'E'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(train_help, stdout);
        return -1;
    }
    if (argc < 2)
        return v4r_cli_usage_error("train", "which model: attention, gating or smore");
    int model = 0, rc = parse_model(argv[1], &model), c;
    if (rc)
        return rc;
    v4r_train_defaults(&a->o, model);
    a->threads = omp_get_max_threads();
    rc = parse_objective(argc, argv, opts, a);
    if (rc)
        return rc;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc - 1, argv + 1, "o:qh", opts, NULL)) != -1)
        rc = parse_option(c, a);
    if (!rc && optind != argc - 1)
        rc = v4r_cli_usage_error("train", "unexpected argument '%s'", argv[optind + 1]);
    return rc ? rc : check_args(a);
}

/* ---- outputs ---- */

typedef struct {
    const train_args *a;
    char *items, *weights, *log, *users;
    double start;
    const char *stop_reason;
} train_run;

static char *sibling(const char *output, const char *suffix)
{
    size_t n = strlen(output);
    if (n > 4 && !strcmp(output + n - 4, ".npy"))
        n -= 4;
    return v4r_sprintf("%.*s%s", (int)n, output, suffix);
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *config_json(const train_args *a)
{
    const v4r_train_opts *o = &a->o;
    char schedule[64];
    v4r_lr_format(&o->schedule, schedule, sizeof schedule);
    json_t *c = json_pack("{s:I, s:I, s:I, s:o, s:s, s:o, s:b, s:o, s:I, s:I}", "epochs", (json_int_t)o->epochs,
                          "patience", (json_int_t)o->patience, "batch_size", (json_int_t)o->batch, "lr", num(o->lr),
                          "lr_schedule", schedule, "weight_decay", num(o->weight_decay), "adamw", o->decoupled, "clip",
                          num(o->clip), "seed", (json_int_t)o->seed, "threads", (json_int_t)a->threads);
    json_object_set_new(c, "dim", json_integer((json_int_t)o->dim));
    if (o->model == V4R_MODEL_SMORE) {
        json_object_set_new(c, "knn_image", json_integer((json_int_t)o->knn_image));
        json_object_set_new(c, "knn_text", json_integer((json_int_t)o->knn_text));
        json_object_set_new(c, "ui_layers", json_integer((json_int_t)o->ui_layers));
        json_object_set_new(c, "item_layers", json_integer((json_int_t)o->ii_layers));
        json_object_set_new(c, "reg_weight", num(o->reg_weight));
        json_object_set_new(c, "cl_weight", num(o->cl_weight));
        json_object_set_new(c, "cl_temperature", num(o->cl_temperature));
    } else {
        json_object_set_new(c, "objective", json_string(o->objective == V4R_OBJ_RELEASED ? "released" : "cointeraction"));
        json_object_set_new(c, "hidden", json_integer((json_int_t)o->hidden));
        json_object_set_new(c, "negatives", json_integer((json_int_t)o->negatives));
        json_object_set_new(c, "temperature", num(o->temperature));
        json_object_set_new(c, "keep", json_string(o->keep == V4R_KEEP_LAST ? "last" : "best"));
    }
    return c;
}

static json_t *epochs_json(const v4r_train_log *log)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < log->n_epochs; i++) {
        const v4r_epoch_log *e = &log->epochs[i];
        json_array_append_new(
            arr, json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "epoch", (json_int_t)e->epoch,
                           "steps", (json_int_t)e->steps, "lr", num(e->lr), "train_loss", num(e->train_loss),
                           "valid_loss", num(e->valid_loss), "valid_recall@20", num(e->valid_recall),
                           "native_recall@20", num(e->native_recall), "grad_norm", num(e->grad_norm), "seconds",
                           num(e->seconds), "cpu_seconds", num(e->cpu_seconds), "eval_seconds", num(e->eval_seconds)));
    }
    return arr;
}

static int write_log(const train_run *run, const v4r_train_log *log, int done, v4r_err *err)
{
    static const char *const names[] = {"attention", "gating", "smore"};
    const train_args *a = run->a;
    double train_s = 0;
    for (size_t i = 0; i < log->n_epochs; i++)
        train_s += log->epochs[i].seconds + log->epochs[i].eval_seconds;
    json_t *stopped = json_null();
    if (log->diverged)
        stopped = json_pack("{s:s, s:I, s:I}", "reason", run->stop_reason ? run->stop_reason : "not finite", "epoch",
                            (json_int_t)log->diverged_epoch, "step", (json_int_t)log->diverged_step);
    int wrote = log->kept_epoch && done;
    json_t *outputs = json_pack("{s:o, s:o, s:o}", "items", str_or_null(wrote ? run->items : NULL), "weights",
                                str_or_null(wrote ? run->weights : NULL), "users", str_or_null(wrote ? run->users : NULL));
    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:o, s:o, s:b, s:o, s:o}", "format", "vlm4rec.train/1", "version",
        V4R_VERSION, "model", names[a->o.model], "dataset", a->dataset, "text", a->text, "vision", a->vision, "covered",
        str_or_null(a->covered), "config", config_json(a), "train_examples", (json_int_t)log->train_pairs, "epochs",
        epochs_json(log), "best_epoch", log->best_epoch ? json_integer((json_int_t)log->best_epoch) : json_null(),
        "complete", done && !log->diverged, "stopped", stopped, "outputs", outputs);
    json_object_set_new(root, "kept_epoch", /* whose weights and vectors the outputs hold */
                        log->kept_epoch ? json_integer((json_int_t)log->kept_epoch) : json_null());
    json_object_set_new(root, "early_stop", /* the epoch after which patience ran out */
                        log->early_stop ? json_integer((json_int_t)log->early_stop) : json_null());
    json_object_set_new(root, "timing",
                        json_pack("{s:o, s:o, s:o}", "setup_s", num(log->setup_seconds), "train_s", num(train_s),
                                  "total_s", num(v4r_now() - run->start)));
    v4r_outfile out;
    int rc = v4r_out_open(&out, run->log, err);
    if (!rc) {
        json_dumpf(root, out.fp, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        fputc('\n', out.fp);
        rc = v4r_out_commit(&out, err);
    }
    json_decref(root);
    return rc;
}

static void on_epoch(void *ctx, const v4r_train_log *log, v4r_params *ps)
{
    const train_run *run = ctx;
    v4r_err err = {0};
    if (write_log(run, log, 0, &err))
        v4r_warn("%s", err.msg);
    (void)ps;
}

static int write_outputs(const train_run *run, const v4r_trained *tr, const v4r_train_log *log, v4r_err *err)
{
    static const char *const names[] = {"attention", "gating", "smore"};
    const train_args *a = run->a;
    char epochs[32], best[32], kept[32];
    snprintf(epochs, sizeof epochs, "%zu", log->n_epochs);
    snprintf(best, sizeof best, "%zu", log->best_epoch);
    snprintf(kept, sizeof kept, "%zu", log->kept_epoch);
    const char *meta[] = {"format", "pt", "vlm4rec.model", names[a->o.model], "vlm4rec.version", V4R_VERSION,
                          "vlm4rec.epochs", epochs, "vlm4rec.best_epoch", best, "vlm4rec.kept_epoch", kept};
    int rc = v4r_npy_write(run->items, tr->items, tr->n_items, tr->dim, err);
    if (!rc && tr->users)
        rc = v4r_npy_write(run->users, tr->users, tr->n_users, tr->dim, err);
    if (!rc)
        rc = v4r_params_save(tr->params, run->weights, meta, 6, err);
    return rc;
}

/* ---- the command ---- */

static int load_vectors(const char *dataset, const char *path, size_t n_items, v4r_matrix *m, v4r_err *err)
{
    char *resolved = v4r_cli_resolve(dataset, path);
    int rc = v4r_repr_load(resolved, n_items, m, err);
    free(resolved);
    return rc;
}

/* The outputs' folder must exist before hours of training, not after. */
static int check_output_dir(const char *output, v4r_err *err)
{
    const char *slash = strrchr(output, '/');
    char *dir = slash ? v4r_strndup(output, slash == output ? 1 : (size_t)(slash - output)) : v4r_strdup(".");
    struct stat st;
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    int rc = ok ? V4R_OK : v4r_fail(err, V4R_EIO, "%s: the folder %s does not exist", output, dir);
    free(dir);
    return rc;
}

static int run_train(train_run *run, v4r_err *err)
{
    train_args *a = (train_args *)run->a;
    v4r_dataset ds;
    int rc = check_output_dir(a->output, err);
    if (rc)
        return rc;
    rc = v4r_dataset_load(a->dataset, &ds, err);
    if (rc)
        return rc;
    v4r_matrix text = {0}, vision = {0};
    uint8_t *covered = NULL;
    rc = load_vectors(a->dataset, a->text, ds.n_items, &text, err);
    if (!rc)
        rc = load_vectors(a->dataset, a->vision, ds.n_items, &vision, err);
    if (!rc && a->covered) {
        char *path = v4r_cli_resolve(a->dataset, a->covered);
        size_t n;
        rc = v4r_read_covered(&ds, path, &covered, &n, err);
        free(path);
    }
    v4r_trained tr = {0};
    v4r_train_log log = {0};
    if (!rc) {
        a->o.text = text.data, a->o.dim_text = text.cols;
        a->o.vision = vision.data, a->o.dim_vision = vision.cols;
        a->o.covered = covered;
        a->o.on_epoch = on_epoch, a->o.ctx = run;
        rc = v4r_train(&ds, &a->o, &tr, &log, err);
        if (rc && log.diverged)
            run->stop_reason = err->msg;
        v4r_err werr = {0};
        int wrc = log.kept_epoch ? write_outputs(run, &tr, &log, &werr) : V4R_OK;
        if (!wrc && log.n_epochs + log.train_pairs)
            wrc = write_log(run, &log, 1, &werr);
        if (wrc && !rc)
            rc = wrc, *err = werr;
        if (!rc)
            v4r_info("best epoch %zu of %zu%s; wrote %s, %s and %s", log.best_epoch, log.n_epochs,
                     log.kept_last ? " (kept the last)" : "", run->items, run->weights, run->log);
    }
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    v4r_matrix_free(&text);
    v4r_matrix_free(&vision);
    free(covered);
    v4r_dataset_free(&ds);
    return rc;
}

int v4r_cmd_train(int argc, char **argv)
{
    train_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    train_run run = {.a = &a, .start = v4r_now()};
    run.items = v4r_strdup(a.output);
    run.weights = sibling(a.output, ".safetensors");
    run.log = sibling(a.output, ".log.json");
    run.users = a.o.model == V4R_MODEL_SMORE ? sibling(a.output, ".users.npy") : NULL;
    v4r_err err = {0};
    rc = run_train(&run, &err);
    free(run.items);
    free(run.weights);
    free(run.log);
    free(run.users);
    return rc ? v4r_cli_report(&err) : 0;
}
