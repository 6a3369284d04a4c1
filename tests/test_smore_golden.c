/* SMORE value for value against the official model code: a tiny catalog and SMORE's initial
 * parameters (tests/data/smore-golden, written by `test_smore_golden --export DIR`), and what the
 * official model computes from them (tests/reference/smore_golden.py): the graphs, the spectral
 * filter outputs, the side views, the final user and item vectors, the scores, the loss in parts
 * and the gradient of every parameter. Each must match within 1e-5 (absolute, relative where the
 * golden's magnitude is above 1). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/fusion.h"
#include "vlm4rec/io.h"

#define GOLDEN_DIR V4R_TESTS_DIR "/data/smore-golden"
#define TOLERANCE 1e-5

/* The export's catalog and settings (written into config.json, which the test and the generator read). */
enum { EX_USERS = 12, EX_ITEMS = 20, EX_TEXT = 8, EX_VISION = 6, EX_DIM = 8, EX_KNN = 3, EX_UI_LAYERS = 2,
       EX_II_LAYERS = 1, EX_BATCH = 16, EX_BATCH_SIZE = 20 };
static const double EX_REG = 0.1, EX_CL = 0.2, EX_TEMPERATURE = 0.2;
static const uint64_t EX_SEED = 20250310;

typedef struct {
    size_t n_users, n_items, dim_text, dim_vision, dim, knn_image, knn_text, ui_layers, ii_layers, batch_size;
    double reg_weight, cl_weight, temperature;
    size_t n_inter, n_batch;
    int32_t *user, *item;      /* interactions */
    int32_t *b_user, *b_pos, *b_neg; /* the batch of triples */
    v4r_matrix text, vision;
} golden_inputs;

/* ---- comparison ---- */

static char *path_of(const char *name)
{
    size_t n = strlen(GOLDEN_DIR) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", GOLDEN_DIR, name);
    return p;
}

static v4r_matrix read_npy(const char *name)
{
    char *p = path_of(name);
    v4r_matrix m = {0};
    v4r_err err = {0};
    if (v4r_npy_read(p, &m, &err))
        fail_msg("%s", err.msg);
    free(p);
    return m;
}

/* The largest |got - want| / max(floor, |want|) over n entries; *worst gets the largest |got - want|
 * and *at where the scaled one is. NaN counts as infinitely far. */
static double scaled_diff(const float *got, const float *want, size_t n, double floor, double *worst, size_t *at)
{
    double worst_scaled = 0;
    *worst = 0, *at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]), scale = fabs(want[i]) > floor ? fabs(want[i]) : floor;
        if (isnan(d))
            d = INFINITY;
        if (d > *worst)
            *worst = d;
        if (d / scale > worst_scaled)
            worst_scaled = d / scale, *at = i;
    }
    return worst_scaled;
}

/* Every entry within TOLERANCE x max(floor, |want|): floor 1 for values (absolute below 1, relative
 * above), the tensor's largest |want| for gradients. Prints the largest difference. */
static void compare_at(const char *what, const float *got, const float *want, size_t n, double floor)
{
    double worst;
    size_t at;
    double scaled = scaled_diff(got, want, n, floor, &worst, &at);
    printf("  %-34s %5zu values, max |diff| %.3g\n", what, n, worst);
    if (!(scaled <= TOLERANCE))
        fail_msg("%s: entry %zu is %.9g, the official code gives %.9g", what, at, got[at], want[at]);
}

static void compare(const char *what, const float *got, const float *want, size_t n)
{
    compare_at(what, got, want, n, 1.0);
}

static void compare_npy(const char *name, const float *got, size_t rows, size_t cols)
{
    v4r_matrix want = read_npy(name);
    if (want.rows != rows || want.cols != cols)
        fail_msg("%s: %zu x %zu in the golden, %zu x %zu here", name, want.rows, want.cols, rows, cols);
    compare(name, got, want.data, rows * cols);
    v4r_matrix_free(&want);
}

static float *dense_of(const v4r_spmat *g)
{
    const v4r_csr *a = &g->a;
    float *dense = calloc(a->rows * a->cols + 1, sizeof *dense);
    for (size_t r = 0; r < a->rows; r++)
        for (size_t k = a->ptr[r]; k < a->ptr[r + 1]; k++)
            dense[r * a->cols + (size_t)a->col[k]] += a->val[k];
    return dense;
}

static void compare_graph(const char *name, const v4r_spmat *g)
{
    float *dense = dense_of(g);
    compare_npy(name, dense, g->a.rows, g->a.cols);
    free(dense);
}

/* The scaled difference from a golden of the same shape (for the deviation checks). */
static double diff_npy(const char *name, const float *got, size_t rows, size_t cols)
{
    v4r_matrix want = read_npy(name);
    assert_int_equal(want.rows * want.cols, rows * cols);
    double worst;
    size_t at;
    double scaled = scaled_diff(got, want.data, rows * cols, 1.0, &worst, &at);
    v4r_matrix_free(&want);
    return scaled;
}

/* ---- inputs ---- */

static size_t cfg_size(const json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    assert_non_null(v);
    return (size_t)json_integer_value(v);
}

static double cfg_number(const json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    assert_non_null(v);
    return json_number_value(v);
}

static int32_t *column(const v4r_matrix *m, size_t c)
{
    int32_t *out = malloc((m->rows + 1) * sizeof *out);
    for (size_t i = 0; i < m->rows; i++)
        out[i] = (int32_t)m->data[i * m->cols + c];
    return out;
}

static void load_inputs(golden_inputs *in)
{
    memset(in, 0, sizeof *in);
    char *p = path_of("config.json");
    json_t *cfg = NULL;
    v4r_err err = {0};
    if (v4r_json_read_object(p, &cfg, &err))
        fail_msg("%s", err.msg);
    free(p);
    in->n_users = cfg_size(cfg, "n_users"), in->n_items = cfg_size(cfg, "n_items");
    in->dim_text = cfg_size(cfg, "dim_text"), in->dim_vision = cfg_size(cfg, "dim_vision");
    in->dim = cfg_size(cfg, "embedding_size"), in->knn_image = cfg_size(cfg, "image_knn_k");
    in->knn_text = cfg_size(cfg, "text_knn_k"), in->ui_layers = cfg_size(cfg, "n_ui_layers");
    in->ii_layers = cfg_size(cfg, "n_layers"), in->batch_size = cfg_size(cfg, "train_batch_size");
    in->reg_weight = cfg_number(cfg, "reg_weight"), in->cl_weight = cfg_number(cfg, "cl_loss");
    in->temperature = cfg_number(cfg, "temperature");
    json_decref(cfg);
    v4r_matrix inter = read_npy("interactions.npy"), batch = read_npy("batch.npy");
    assert_int_equal(inter.cols, 2);
    assert_int_equal(batch.cols, 3);
    in->n_inter = inter.rows, in->n_batch = batch.rows;
    in->user = column(&inter, 0), in->item = column(&inter, 1);
    in->b_user = column(&batch, 0), in->b_pos = column(&batch, 1), in->b_neg = column(&batch, 2);
    v4r_matrix_free(&inter);
    v4r_matrix_free(&batch);
    in->text = read_npy("text.npy");
    in->vision = read_npy("vision.npy");
    assert_int_equal(in->text.rows, in->n_items);
    assert_int_equal(in->text.cols, in->dim_text);
    assert_int_equal(in->vision.rows, in->n_items);
    assert_int_equal(in->vision.cols, in->dim_vision);
}

static void free_inputs(golden_inputs *in)
{
    free(in->user), free(in->item);
    free(in->b_user), free(in->b_pos), free(in->b_neg);
    v4r_matrix_free(&in->text);
    v4r_matrix_free(&in->vision);
}

/* Every parameter of m from path, which must hold exactly m's names with m's shapes. */
static void load_params(v4r_params *ps, const char *name)
{
    char *p = path_of(name);
    v4r_safetensors *st = NULL;
    v4r_err err = {0};
    if (v4r_st_open(p, &st, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(v4r_st_count(st), ps->n);
    for (size_t i = 0; i < ps->n; i++) {
        v4r_param *q = ps->p[i];
        float *buf = NULL;
        if (v4r_st_load(st, q->name, q->ndim, q->shape, &buf, &err))
            fail_msg("%s", err.msg);
        memcpy(q->t.val, buf, q->t.rows * q->t.cols * sizeof *buf);
        free(buf);
    }
    v4r_st_close(st);
    free(p);
}

static void build_model(const golden_inputs *in, v4r_smore_model *m)
{
    v4r_smore_init(m, in->n_users, in->n_items, in->user, in->item, in->n_inter, in->text.data, in->dim_text,
                   in->vision.data, in->dim_vision, in->dim, in->knn_image, in->knn_text, in->ui_layers, 1);
    m->ii_layers = in->ii_layers;
    load_params(&m->params, "init.safetensors");
}

/* ---- tests ---- */

static void test_graphs(void **state)
{
    (void)state;
    golden_inputs in;
    load_inputs(&in);
    v4r_smore_model m;
    build_model(&in, &m);
    compare_graph("image_adj.npy", &m.image_adj);
    compare_graph("text_adj.npy", &m.text_adj);
    compare_graph("fusion_adj.npy", &m.fusion_adj);
    compare_graph("norm_adj.npy", &m.ui_adj);
    compare_graph("R.npy", &m.r_norm);
    v4r_smore_free(&m);
    free_inputs(&in);
}

static void test_forward(void **state)
{
    (void)state;
    golden_inputs in;
    load_inputs(&in);
    v4r_smore_model m;
    build_model(&in, &m);
    v4r_ad_tape *t = v4r_ad_tape_new();
    v4r_smore_views v;
    v4r_smore_forward(t, &m, &v);
    size_t nu = m.n_users, ni = m.n_items, d = m.dim, rows = nu + ni;
    const char *conv[3] = {"image_conv.npy", "text_conv.npy", "fusion_conv.npy"};
    const char *view[3] = {"image_embeds.npy", "text_embeds.npy", "fusion_embeds.npy"};
    for (int k = 0; k < 3; k++) {
        compare_npy(conv[k], v.conv[k]->val, ni, d);
        compare_npy(view[k], v.view[k]->val, rows, d);
    }
    compare_npy("content_embeds.npy", v.content->val, rows, d);
    compare_npy("side_embeds.npy", v.side->val, rows, d);
    compare_npy("user_embeddings.npy", v.all->val, nu, d);
    compare_npy("item_embeddings.npy", v.all->val + nu * d, ni, d);
    float *scores = malloc(nu * ni * sizeof *scores); /* full_sort_predict: user . item */
    for (size_t u = 0; u < nu; u++)
        for (size_t j = 0; j < ni; j++) {
            double s = 0;
            for (size_t c = 0; c < d; c++)
                s += (double)v.all->val[u * d + c] * v.all->val[(nu + j) * d + c];
            scores[u * ni + j] = (float)s;
        }
    compare_npy("scores.npy", scores, nu, ni);
    free(scores);
    v4r_ad_tape_free(t);
    v4r_smore_free(&m);
    free_inputs(&in);
}

static float loss_with(v4r_ad_tape *t, const v4r_smore_model *m, const golden_inputs *in, double reg, double cl)
{
    v4r_ad_tape_reset(t);
    return v4r_smore_loss(t, m, in->b_user, in->b_pos, in->b_neg, in->n_batch, in->batch_size, reg, cl,
                          (float)in->temperature)
        ->val[0];
}

/* The parts of the loss from the loss itself, each weight switched on alone: BPR, the weighted L2
 * term, the unweighted InfoNCE sum, and the total with the configured weights. */
static void test_loss(void **state)
{
    (void)state;
    golden_inputs in;
    load_inputs(&in);
    v4r_smore_model m;
    build_model(&in, &m);
    v4r_ad_tape *t = v4r_ad_tape_new();
    float bpr = loss_with(t, &m, &in, 0, 0);
    float parts[4] = {bpr, loss_with(t, &m, &in, in.reg_weight, 0) - bpr, loss_with(t, &m, &in, 0, 1) - bpr,
                      loss_with(t, &m, &in, in.reg_weight, in.cl_weight)};
    v4r_matrix want = read_npy("loss.npy");
    assert_int_equal(want.rows * want.cols, 4);
    const char *names[4] = {"loss: BPR (mf_loss)", "loss: reg (emb_loss)", "loss: InfoNCE items + users",
                            "loss: total (calculate_loss)"};
    for (int k = 0; k < 4; k++)
        compare(names[k], parts + k, want.data + k, 1);
    v4r_matrix_free(&want);
    v4r_ad_tape_free(t);
    v4r_smore_free(&m);
    free_inputs(&in);
}

static void test_gradients(void **state)
{
    (void)state;
    golden_inputs in;
    load_inputs(&in);
    v4r_smore_model m;
    build_model(&in, &m);
    v4r_ad_tape *t = v4r_ad_tape_new();
    v4r_params_zero_grad(&m.params);
    v4r_ad_backward(t, v4r_smore_loss(t, &m, in.b_user, in.b_pos, in.b_neg, in.n_batch, in.batch_size,
                                      in.reg_weight, in.cl_weight, (float)in.temperature));
    char *p = path_of("grads.safetensors");
    v4r_safetensors *st = NULL;
    v4r_err err = {0};
    if (v4r_st_open(p, &st, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(v4r_st_count(st), m.params.n);
    for (size_t i = 0; i < m.params.n; i++) {
        v4r_param *q = m.params.p[i];
        float *want = NULL;
        if (v4r_st_load(st, q->name, q->ndim, q->shape, &want, &err))
            fail_msg("%s", err.msg);
        char what[96];
        snprintf(what, sizeof what, "grad %s", q->name);
        size_t n = q->t.rows * q->t.cols;
        double largest = 0;
        for (size_t k = 0; k < n; k++)
            largest = fabs(want[k]) > largest ? fabs(want[k]) : largest;
        assert_true(largest > 0); /* every parameter takes part in the loss */
        compare_at(what, q->t.grad, want, n, largest);
        free(want);
    }
    v4r_st_close(st);
    free(p);
    v4r_ad_tape_free(t);
    v4r_smore_free(&m);
    free_inputs(&in);
}

/* The comparison sees a deviation from the official computation: one more neighbour, one more
 * user-item layer, one more item-item propagation, a filter coefficient off by 1e-3. */
static double forward_diff(const golden_inputs *in, size_t knn_image, size_t ui_layers, size_t ii_layers,
                           float filter_shift, const char *name, int view)
{
    v4r_smore_model m;
    golden_inputs changed = *in;
    changed.knn_image = knn_image, changed.ui_layers = ui_layers, changed.ii_layers = ii_layers;
    build_model(&changed, &m);
    m.filter_f->val[3] += filter_shift;
    double d;
    if (view < 0) {
        float *dense = dense_of(&m.image_adj);
        d = diff_npy(name, dense, m.n_items, m.n_items);
        free(dense);
    } else {
        v4r_ad_tape *t = v4r_ad_tape_new();
        v4r_smore_views v;
        v4r_smore_forward(t, &m, &v);
        v4r_ad_tensor *x = view == 0 ? v.content : view == 1 ? v.view[0] : v.conv[2];
        d = diff_npy(name, x->val, x->rows, x->cols);
        v4r_ad_tape_free(t);
    }
    v4r_smore_free(&m);
    return d;
}

static void test_detects_deviation(void **state)
{
    (void)state;
    golden_inputs in;
    load_inputs(&in);
    size_t k = in.knn_image, ui = in.ui_layers, ii = in.ii_layers;
    assert_true(forward_diff(&in, k, ui, ii, 0, "image_adj.npy", -1) <= TOLERANCE);
    assert_true(forward_diff(&in, k + 1, ui, ii, 0, "image_adj.npy", -1) > 100 * TOLERANCE);
    assert_true(forward_diff(&in, k, ui + 1, ii, 0, "content_embeds.npy", 0) > 100 * TOLERANCE);
    assert_true(forward_diff(&in, k, ui, ii + 1, 0, "image_embeds.npy", 1) > 100 * TOLERANCE);
    assert_true(forward_diff(&in, k, ui, ii, 1e-3f, "fusion_conv.npy", 2) > 10 * TOLERANCE);
    free_inputs(&in);
}

/* ---- export: the catalog, the batch and the initial parameters the goldens start from ---- */

static int32_t export_catalog(v4r_rng *rng, float *inter)
{
    int32_t n = 0;
    for (int32_t u = 0; u < EX_USERS; u++) { /* 3 to 6 distinct items a user; the last item has none */
        uint8_t taken[EX_ITEMS] = {0};
        for (int32_t k = 0; k < 3 + u % 4;) {
            int32_t j = (int32_t)v4r_rng_below(rng, EX_ITEMS - 1);
            if (!taken[j]) {
                taken[j] = 1, k++;
                inter[2 * n] = (float)u, inter[2 * n + 1] = (float)j, n++;
            }
        }
    }
    return n;
}

static int has_item(const float *inter, int32_t n, int32_t u, int32_t j)
{
    for (int32_t k = 0; k < n; k++)
        if ((int32_t)inter[2 * k] == u && (int32_t)inter[2 * k + 1] == j)
            return 1;
    return 0;
}

static void export_batch(v4r_rng *rng, const float *inter, int32_t n_inter, float *batch)
{
    for (int b = 0; b < EX_BATCH; b++) {
        int32_t k = (int32_t)v4r_rng_below(rng, (uint64_t)n_inter), u = (int32_t)inter[2 * k], neg;
        do
            neg = (int32_t)v4r_rng_below(rng, EX_ITEMS);
        while (has_item(inter, n_inter, u, neg));
        batch[3 * b] = (float)u, batch[3 * b + 1] = inter[2 * k + 1], batch[3 * b + 2] = (float)neg;
    }
}

static void export_config(const char *dir)
{
    char path[4096], text[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(text, sizeof text,
             "{\n  \"n_users\": %d,\n  \"n_items\": %d,\n  \"dim_text\": %d,\n  \"dim_vision\": %d,\n"
             "  \"embedding_size\": %d,\n  \"image_knn_k\": %d,\n  \"text_knn_k\": %d,\n  \"n_ui_layers\": %d,\n"
             "  \"n_layers\": %d,\n  \"train_batch_size\": %d,\n  \"reg_weight\": %g,\n  \"cl_loss\": %g,\n"
             "  \"temperature\": %g,\n  \"dropout_rate\": 0,\n  \"seed\": %llu\n}\n",
             EX_USERS, EX_ITEMS, EX_TEXT, EX_VISION, EX_DIM, EX_KNN, EX_KNN, EX_UI_LAYERS, EX_II_LAYERS,
             EX_BATCH_SIZE, EX_REG, EX_CL, EX_TEMPERATURE, (unsigned long long)EX_SEED);
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(text, fp) < 0 || fclose(fp)) {
        fprintf(stderr, "%s: cannot write\n", path);
        exit(1);
    }
}

static void check(int rc, const v4r_err *err)
{
    if (rc) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
}

static int export_inputs(const char *dir)
{
    v4r_rng rng;
    v4r_rng_seed(&rng, EX_SEED);
    float inter[2 * EX_USERS * 6], batch[3 * EX_BATCH], text[EX_ITEMS * EX_TEXT], vision[EX_ITEMS * EX_VISION];
    int32_t n = export_catalog(&rng, inter);
    export_batch(&rng, inter, n, batch);
    for (size_t i = 0; i < EX_ITEMS * EX_TEXT; i++)
        text[i] = (float)v4r_rng_normal(&rng);
    for (size_t i = 0; i < EX_ITEMS * EX_VISION; i++)
        vision[i] = (float)v4r_rng_normal(&rng);
    int32_t user[2 * EX_USERS * 6], item[2 * EX_USERS * 6];
    for (int32_t k = 0; k < n; k++)
        user[k] = (int32_t)inter[2 * k], item[k] = (int32_t)inter[2 * k + 1];
    v4r_smore_model m;
    v4r_smore_init(&m, EX_USERS, EX_ITEMS, user, item, (size_t)n, text, EX_TEXT, vision, EX_VISION, EX_DIM, EX_KNN,
                   EX_KNN, EX_UI_LAYERS, EX_SEED + 1);
    char path[4096];
    v4r_err err = {0};
    snprintf(path, sizeof path, "%s/interactions.npy", dir);
    check(v4r_npy_write(path, inter, (size_t)n, 2, &err), &err);
    snprintf(path, sizeof path, "%s/batch.npy", dir);
    check(v4r_npy_write(path, batch, EX_BATCH, 3, &err), &err);
    snprintf(path, sizeof path, "%s/text.npy", dir);
    check(v4r_npy_write(path, text, EX_ITEMS, EX_TEXT, &err), &err);
    snprintf(path, sizeof path, "%s/vision.npy", dir);
    check(v4r_npy_write(path, vision, EX_ITEMS, EX_VISION, &err), &err);
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    check(v4r_params_save(&m.params, path, NULL, 0, &err), &err);
    export_config(dir);
    printf("%s: %d users, %d items, %d interactions, a batch of %d triples, %zu parameters\n", dir, EX_USERS,
           EX_ITEMS, n, EX_BATCH, m.params.n);
    v4r_smore_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--export"))
        return export_inputs(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_smore_golden [--export DIR]\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graphs),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_loss),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_detects_deviation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
