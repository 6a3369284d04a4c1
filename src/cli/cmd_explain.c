/* `vlm4rec explain`: one user's recent history and the top-K of two representations side by side,
 * the hits (truth items) marked — the case studies of the report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/rec.h"

static const char *explain_help =
    "usage: vlm4rec explain --dataset DIR --user U --a NAME=SPEC --b NAME=SPEC [options]\n"
    "\n"
    "Prints user U's recent history (the items that make the profile, oldest first, with titles and,\n"
    "with --descriptions, descriptions), the truth items, and the top-K of representations A and B\n"
    "side by side; '*' marks a hit (a truth item). The protocol is eval's: history masked, profile\n"
    "from the last L history items.\n"
    "  --dataset DIR          the dataset directory\n"
    "  --user U               the user id\n"
    "  --a NAME=SPEC          the first representation (SPEC as in eval: PATH.npy, concat:..., ...)\n"
    "  --b NAME=SPEC          the second representation\n"
    "  -k N                   list length (default 10)\n"
    "  --descriptions FILE    item<TAB>text lines (a header 'item...' is skipped): shown under titles;\n"
    "                         a relative FILE that does not exist is looked up in the dataset directory\n"
    "  --history SPLITS       train (default) or train+valid\n"
    "  --truth SPLIT          valid (default) or test\n"
    "  --history-length L     items in the profile (default 10; 0 = all)\n"
    "  --covered FILE         candidates restricted to these item ids (covered-subset protocol)\n"
    "  --width N              characters per column (default 44)\n";

typedef struct {
    const char *dataset, *user, *spec[2], *descriptions, *covered;
    size_t k, width;
    v4r_protocol proto;
} explain_args;

/* The top k candidates of one user by cosine to the profile, masked items skipped. */
static void top_k(const v4r_eval_set *es, size_t u, const v4r_matrix *m, size_t L, size_t k, int32_t *out)
{
    float *prof = v4r_malloc(m->cols * sizeof *prof);
    float *best = v4r_malloc(k * sizeof *best);
    v4r_profile(es->hist + es->hist_off[u], es->hist_off[u + 1] - es->hist_off[u], L, m, prof);
    for (size_t i = 0; i < k; i++)
        out[i] = -1;
    size_t mo = es->mask_off[u], me = es->mask_off[u + 1];
    for (size_t c = 0; c < es->n_candidates; c++) {
        int32_t item = es->candidates[c];
        while (mo < me && es->mask[mo] < item)
            mo++;
        if (mo < me && es->mask[mo] == item)
            continue;
        float s = 0;
        for (size_t d = 0; d < m->cols; d++)
            s += prof[d] * m->data[(size_t)item * m->cols + d];
        size_t pos = k;
        while (pos > 0 && (out[pos - 1] < 0 || s > best[pos - 1]))
            pos--;
        if (pos >= k)
            continue;
        memmove(out + pos + 1, out + pos, (k - pos - 1) * sizeof *out);
        memmove(best + pos + 1, best + pos, (k - pos - 1) * sizeof *best);
        out[pos] = item;
        best[pos] = s;
    }
    free(prof);
    free(best);
}

static int load_repr(const char *dataset, const char *spec, const v4r_dataset *ds, v4r_matrix *m, v4r_err *err)
{
    char *resolved = v4r_cli_resolve(dataset, spec);
    int rc = v4r_repr_load(resolved, ds->n_items, m, err);
    if (!rc) {
        uint8_t *needed = v4r_calloc(ds->n_items, 1); /* zero rows only matter where used: checked by eval */
        rc = v4r_repr_normalize(m, needed, resolved, err);
        free(needed);
    }
    free(resolved);
    return rc;
}

/* item<TAB>text per line into a per-item array (NULL where absent). */
static int read_descriptions(const char *path, const v4r_dataset *ds, char ***out, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err), opened = !rc, got = 0;
    char **d = v4r_calloc(ds->n_items, sizeof *d);
    while (!rc && (got = v4r_lines_next(&r, err)) == 1) {
        char *f[3];
        if (v4r_tsv_split(r.line, f, 3) < 2)
            continue;
        v4r_tsv_unescape(f[0]);
        v4r_tsv_unescape(f[1]);
        int64_t i = v4r_strmap_get(&ds->item_index, f[0]);
        if (i >= 0 && !d[i])
            d[i] = v4r_strdup(f[1]);
    }
    if (!rc && got < 0)
        rc = err->code;
    if (opened)
        v4r_lines_close(&r);
    *out = d;
    return rc;
}

static int is_truth(const v4r_eval_set *es, size_t u, int32_t item)
{
    for (size_t t = es->truth_off[u]; t < es->truth_off[u + 1]; t++)
        if (es->truth[t] == item)
            return 1;
    return 0;
}

static void print_cell(const v4r_dataset *ds, const v4r_eval_set *es, size_t u, int32_t item, int width)
{
    if (item < 0) {
        printf("%-*s", width, "");
        return;
    }
    char *cell = v4r_sprintf("%s %s %s", is_truth(es, u, item) ? "*" : " ", ds->item_id[item], ds->item_title[item]);
    printf("%-*.*s", width, width, cell);
    free(cell);
}

static void print_explain(const explain_args *a, const v4r_dataset *ds, const v4r_eval_set *es, size_t u,
                          int32_t *const top[2], char **desc, const char *names[2])
{
    size_t h0 = es->hist_off[u], h1 = es->hist_off[u + 1], L = a->proto.history_length;
    size_t from = L && h1 - h0 > L ? h1 - L : h0, hits[2] = {0, 0};
    printf("user %s: %s vs %s\n", a->user, names[0], names[1]);
    printf("history (the %zu items of the profile, oldest first; %zu in all):\n", h1 - from, h1 - h0);
    for (size_t h = from; h < h1; h++) {
        int32_t it = es->hist[h];
        printf("  %s  %s\n", ds->item_id[it], ds->item_title[it]);
        if (desc && desc[it])
            printf("      %s\n", desc[it]);
    }
    printf("truth (%s):", v4r_split_name(a->proto.truth_split));
    for (size_t t = es->truth_off[u]; t < es->truth_off[u + 1]; t++)
        printf(" %s", ds->item_id[es->truth[t]]);
    printf("\n%4s  %-*.*s  %s\n", "rank", (int)a->width, (int)a->width, names[0], names[1]);
    for (size_t r = 0; r < a->k; r++) {
        printf("%4zu  ", r + 1);
        print_cell(ds, es, u, top[0][r], (int)a->width);
        printf("  ");
        print_cell(ds, es, u, top[1][r], (int)a->width);
        printf("\n");
        for (int s = 0; s < 2; s++)
            hits[s] += top[s][r] >= 0 && is_truth(es, u, top[s][r]);
    }
    printf("hits in the top %zu: %s %zu, %s %zu (* = a truth item)\n", a->k, names[0], hits[0], names[1], hits[1]);
}

static int find_user(const v4r_dataset *ds, const v4r_eval_set *es, const char *user, size_t *u, v4r_err *err)
{
    int64_t idx = v4r_strmap_get(&ds->user_index, user);
    if (idx < 0)
        return v4r_fail(err, V4R_EINPUT, "user '%s' is not in the dataset", user);
    for (size_t i = 0; i < es->n_eval; i++)
        if (es->users[i] == idx) {
            *u = i;
            return V4R_OK;
        }
    return v4r_fail(err, V4R_EINPUT, "user '%s' has no history or no truth item under this protocol", user);
}

static int run_explain(explain_args *a, v4r_err *err)
{
    v4r_dataset ds;
    int rc = v4r_dataset_load(a->dataset, &ds, err);
    if (rc)
        return rc;
    uint8_t *covered = NULL;
    size_t n_cov = 0, u = 0;
    char *cov = a->covered ? v4r_cli_resolve(a->dataset, a->covered) : NULL;
    if (cov)
        rc = v4r_read_covered(&ds, cov, &covered, &n_cov, err);
    a->proto.covered = covered;
    v4r_eval_set es = {0};
    v4r_matrix m[2] = {{0}, {0}};
    char **desc = NULL, *names[2] = {NULL, NULL};
    int32_t *top[2] = {v4r_calloc(a->k, sizeof(int32_t)), v4r_calloc(a->k, sizeof(int32_t))};
    if (!rc)
        rc = v4r_eval_set_build(&ds, &a->proto, &es, err);
    if (!rc)
        rc = find_user(&ds, &es, a->user, &u, err);
    for (int s = 0; s < 2 && !rc; s++) {
        const char *eq = strchr(a->spec[s], '=');
        names[s] = v4r_strndup(a->spec[s], (size_t)(eq - a->spec[s]));
        rc = load_repr(a->dataset, eq + 1, &ds, &m[s], err);
        if (!rc)
            top_k(&es, u, &m[s], a->proto.history_length, a->k, top[s]);
    }
    if (!rc && a->descriptions) {
        char *dpath = v4r_cli_resolve(a->dataset, a->descriptions);
        rc = read_descriptions(dpath, &ds, &desc, err);
        free(dpath);
    }
    if (!rc)
        print_explain(a, &ds, &es, u, top, desc, (const char *[]){names[0], names[1]});
    for (size_t i = 0; desc && i < ds.n_items; i++)
        free(desc[i]);
    for (int s = 0; s < 2; s++) {
        free(names[s]);
        free(top[s]);
        v4r_matrix_free(&m[s]);
    }
    free(desc);
    free(cov);
    free(covered);
    v4r_eval_set_free(&es);
    v4r_dataset_free(&ds);
    return rc;
}

static int parse_proto(int c, const char *val, explain_args *a)
{
    if (c == 'H') {
        if (strcmp(val, "train") && strcmp(val, "train+valid"))
            return v4r_cli_usage_error("explain", "--history must be train or train+valid, not '%s'", val);
        a->proto.history_splits = (1u << V4R_TRAIN) | (strcmp(val, "train") ? 1u << V4R_VALID : 0);
        return 0;
    }
    if (c == 'T') {
        int s = v4r_split_parse(val);
        if (s != V4R_VALID && s != V4R_TEST)
            return v4r_cli_usage_error("explain", "--truth must be valid or test, not '%s'", val);
        a->proto.truth_split = s;
        return 0;
    }
    return v4r_opt_size("explain", "history-length", val, &a->proto.history_length);
}

static int parse_args(int argc, char **argv, explain_args *a)
{
    static const struct option opts[] = {
        {"dataset", required_argument, 0, 'd'}, {"user", required_argument, 0, 'u'},
        {"a", required_argument, 0, 'a'},       {"b", required_argument, 0, 'b'},
        {"descriptions", required_argument, 0, 'D'}, {"history", required_argument, 0, 'H'},
        {"truth", required_argument, 0, 'T'},   {"history-length", required_argument, 0, 'L'},
        {"covered", required_argument, 0, 'c'}, {"width", required_argument, 0, 'w'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': a->dataset = optarg; break;
        case 'u': a->user = optarg; break;
        case 'a': a->spec[0] = optarg; break;
        case 'b': a->spec[1] = optarg; break;
        case 'D': a->descriptions = optarg; break;
        case 'c': a->covered = optarg; break;
        case 'k': rc = v4r_opt_size("explain", "k", optarg, &a->k); break;
        case 'w': rc = v4r_opt_size("explain", "width", optarg, &a->width); break;
        case 'H': case 'T': case 'L': rc = parse_proto(c, optarg, a); break;
        case 'h': fputs(explain_help, stdout); return -1;
        default: return v4r_cli_usage_error("explain", "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error("explain", "unexpected argument '%s'", argv[optind]);
    if (!rc && (!a->dataset || !a->user || !a->spec[0] || !a->spec[1]))
        rc = v4r_cli_usage_error("explain", "--dataset, --user, --a and --b are required");
    for (int s = 0; s < 2 && !rc; s++)
        if (!strchr(a->spec[s], '=') || a->spec[s][0] == '=')
            rc = v4r_cli_usage_error("explain", "--%c must be NAME=SPEC, not '%s'", 'a' + s, a->spec[s]);
    if (!rc && (a->k == 0 || a->k > 1000 || a->width < 8 || a->width > 400))
        rc = v4r_cli_usage_error("explain", "-k must be 1..1000 and --width 8..400");
    return rc;
}

int v4r_cmd_explain(int argc, char **argv)
{
    explain_args a = {0};
    a.k = 10;
    a.width = 44;
    v4r_protocol_defaults(&a.proto);
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    v4r_err err = {0};
    rc = run_explain(&a, &err);
    return rc ? v4r_cli_report(&err) : 0;
}
