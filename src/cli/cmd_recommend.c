/* `vlm4rec recommend`: top-K items from a serving index for known users or a given history. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/index.h"

static const char *recommend_help =
    "usage: vlm4rec recommend --index ITEMS.idx (--user ID | --history ID,ID,... | --users FILE|-) [options]\n"
    "\n"
    "Prints the top-K items by cosine to the profile (the normalized mean of the last items of the\n"
    "history, as the index was built), history items left out. TSV (user, rank, item, score) or,\n"
    "with --json, one JSON object a line: {\"user\", \"items\": [{\"item\", \"score\"}], \"unknown\"}.\n"
    "Scores print with 9 significant digits. Unknown item ids are reported and skipped; an unknown\n"
    "user is an error (exit 3).\n"
    "  --index FILE           the index (vlm4rec index build)\n"
    "  --user ID              a known user: the history stored in the index\n"
    "  --history ID,ID,...    a history of item ids, oldest first\n"
    "  --users FILE|-         user ids, one a line (blank lines skipped), answered in batches\n"
    "  -k N                   list length (default 10)\n"
    "  --exclude ID,...       items never returned\n"
    "  --candidates ID,...|@FILE  only these items (@FILE: ids one a line)\n"
    "  --keep-history         history items may be returned\n"
    "  --json                 JSON lines\n"
    "  --verify               check the index's checksum at open\n"
    "  --threads N            worker threads for --users (default: all cores)\n"
    "  --nprobe N             an IVF index (index build --ivf): lists probed (default: the index's\n"
    "                         own, chosen at build; N >= nlist gives the exact lists)\n"
    "  --exact                the exact scan of every item, also on an IVF index\n";

typedef struct {
    const char *index, *user, *history, *users, *exclude, *candidates;
    size_t k, nprobe;
    int json, verify, keep_history;
} rec_args;

static int parse_args(int argc, char **argv, rec_args *a)
{
    static const struct option opts[] = {
        {"index", required_argument, 0, 'i'},  {"user", required_argument, 0, 'u'},
        {"history", required_argument, 0, 'H'}, {"users", required_argument, 0, 'U'},
        {"exclude", required_argument, 0, 'x'}, {"candidates", required_argument, 0, 'c'},
        {"keep-history", no_argument, 0, 'K'},  {"json", no_argument, 0, 'J'},
        {"verify", no_argument, 0, 'V'},        {"threads", required_argument, 0, 'j'},
        {"nprobe", required_argument, 0, 'N'},  {"exact", no_argument, 0, 'E'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    a->k = 10;
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': a->index = optarg; break;
        case 'u': a->user = optarg; break;
        case 'H': a->history = optarg; break;
        case 'U': a->users = optarg; break;
        case 'x': a->exclude = optarg; break;
        case 'c': a->candidates = optarg; break;
        case 'K': a->keep_history = 1; break;
        case 'J': a->json = 1; break;
        case 'V': a->verify = 1; break;
        case 'k': rc = v4r_opt_size("recommend", "k", optarg, &a->k); break;
        case 'j': rc = v4r_opt_threads("recommend", optarg); break;
        case 'N':
            rc = v4r_opt_size("recommend", "nprobe", optarg, &a->nprobe);
            if (!rc && a->nprobe == 0)
                rc = v4r_cli_usage_error("recommend", "--nprobe must be at least 1");
            break;
        case 'E': a->nprobe = V4R_INDEX_EXACT; break;
        case 'h': fputs(recommend_help, stdout); return -1;
        default: return v4r_cli_usage_error("recommend", "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error("recommend", "unexpected argument '%s'", argv[optind]);
    if (!rc && !a->index)
        rc = v4r_cli_usage_error("recommend", "--index is required");
    if (!rc && (!!a->user + !!a->history + !!a->users) != 1)
        rc = v4r_cli_usage_error("recommend", "give exactly one of --user, --history, --users");
    if (!rc && (a->k == 0 || a->k > 100000))
        rc = v4r_cli_usage_error("recommend", "-k must be 1..100000");
    return rc;
}

/* Item ids resolved against the index; unknown ones collected (not fatal). */
typedef struct {
    int32_t *items;
    size_t n, cap;
    char **unknown;
    size_t n_unknown, cap_unknown;
} id_list;

static void id_list_add(id_list *l, const v4r_index *ix, const char *id, size_t len)
{
    int32_t item = v4r_index_find_item(ix, id, len);
    if (item >= 0) {
        v4r_grow((void **)&l->items, &l->cap, l->n + 1, sizeof *l->items);
        l->items[l->n++] = item;
    } else {
        v4r_grow((void **)&l->unknown, &l->cap_unknown, l->n_unknown + 1, sizeof *l->unknown);
        l->unknown[l->n_unknown++] = v4r_strndup(id, len);
    }
}

static void id_list_split(id_list *l, const v4r_index *ix, const char *csv)
{
    for (const char *p = csv; *p;) {
        size_t len = strcspn(p, ",");
        if (len)
            id_list_add(l, ix, p, len);
        p += len + (p[len] == ',');
    }
}

static int id_list_file(id_list *l, const v4r_index *ix, const char *path, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err), got;
    if (rc)
        return rc;
    while ((got = v4r_lines_next(&r, err)) == 1)
        if (!v4r_line_blank(r.line))
            id_list_add(l, ix, r.line, r.len);
    v4r_lines_close(&r);
    return got < 0 ? V4R_EIO : V4R_OK;
}

static void id_list_free(id_list *l)
{
    for (size_t i = 0; i < l->n_unknown; i++)
        free(l->unknown[i]);
    free(l->unknown);
    free(l->items);
}

/* The options shared by every query: exclusions, candidates, unknown ids among them. */
typedef struct {
    id_list exclude, candidates, history;
    int has_candidates;
} shared_lists;

static int read_shared(const rec_args *a, const v4r_index *ix, shared_lists *s, v4r_err *err)
{
    if (a->exclude)
        id_list_split(&s->exclude, ix, a->exclude);
    if (a->history)
        id_list_split(&s->history, ix, a->history);
    if (!a->candidates)
        return V4R_OK;
    s->has_candidates = 1;
    if (a->candidates[0] == '@')
        return id_list_file(&s->candidates, ix, a->candidates + 1, err);
    id_list_split(&s->candidates, ix, a->candidates);
    return V4R_OK;
}

static void warn_unknown(const id_list *l, const char *what)
{
    for (size_t i = 0; i < l->n_unknown; i++)
        fprintf(stderr, "vlm4rec recommend: warning: unknown item '%s' in %s (skipped)\n", l->unknown[i], what);
}

/* ---- output ---- */

static void print_tsv(const v4r_index *ix, const char *user, const int32_t *items, const float *scores, size_t k)
{
    for (size_t r = 0; r < k && items[r] >= 0; r++) {
        v4r_tsv_write_field(stdout, user);
        printf("\t%zu\t", r + 1);
        v4r_tsv_write_field(stdout, v4r_index_item_id(ix, items[r]));
        printf("\t%.9g\n", (double)scores[r]);
    }
}

static void print_json(const v4r_index *ix, const char *user, const int32_t *items, const float *scores, size_t k,
                       const shared_lists *s)
{
    json_t *list = json_array(), *unknown = json_array();
    for (size_t r = 0; r < k && items[r] >= 0; r++)
        json_array_append_new(list, json_pack("{s:s,s:f}", "item", v4r_index_item_id(ix, items[r]), "score",
                                              (double)scores[r]));
    const id_list *lists[3] = {&s->history, &s->exclude, &s->candidates};
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < lists[l]->n_unknown; i++)
            json_array_append_new(unknown, json_string(lists[l]->unknown[i]));
    json_t *o = json_pack("{s:o,s:o,s:o}", "user", user ? json_string(user) : json_null(), "items", list, "unknown",
                          unknown);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    puts(text);
    free(text);
    json_decref(o);
}

static void print_one(const rec_args *a, const v4r_index *ix, const char *user, const int32_t *items,
                      const float *scores, const shared_lists *s)
{
    if (a->json)
        print_json(ix, user, items, scores, a->k, s);
    else
        print_tsv(ix, user ? user : "-", items, scores, a->k);
}

/* ---- queries ---- */

static v4r_index_query base_query(const rec_args *a, const shared_lists *s)
{
    v4r_index_query q;
    memset(&q, 0, sizeof q);
    q.exclude = s->exclude.items;
    q.n_exclude = s->exclude.n;
    if (s->has_candidates) {
        static const int32_t none = 0; /* candidates given, none known: nothing to return */
        q.candidates = s->candidates.items ? s->candidates.items : &none;
        q.n_candidates = s->candidates.n;
    }
    q.keep_history = a->keep_history;
    q.k = a->k;
    q.nprobe = a->nprobe;
    return q;
}

static int user_query(const rec_args *a, const v4r_index *ix, const shared_lists *s, const char *user,
                      const char *where, v4r_index_query *q, v4r_err *err)
{
    int32_t u = v4r_index_find_user(ix, user, strlen(user));
    if (u < 0)
        return v4r_fail(err, V4R_EINPUT, "%sunknown user '%s' (not in the index %s)", where, user, a->index);
    *q = base_query(a, s);
    q->n_history = v4r_index_user_history(ix, u, &q->history);
    if (q->n_history == 0)
        return v4r_fail(err, V4R_EINPUT, "%suser '%s' has no history in the index %s", where, user, a->index);
    return V4R_OK;
}

static int answer_one(const rec_args *a, const v4r_index *ix, const shared_lists *s, v4r_err *err)
{
    v4r_index_query q;
    int rc = V4R_OK;
    if (a->user) {
        rc = user_query(a, ix, s, a->user, "", &q, err);
    } else {
        q = base_query(a, s);
        q.history = s->history.items;
        q.n_history = s->history.n;
        if (q.n_history == 0)
            rc = v4r_fail(err, V4R_EINPUT, "--history: no known item (of %zu given)", s->history.n_unknown);
    }
    int32_t *items = v4r_malloc(a->k * sizeof *items);
    float *scores = v4r_malloc(a->k * sizeof *scores);
    if (!rc)
        rc = v4r_index_search(ix, &q, 1, a->k, items, scores, err);
    if (!rc) {
        if (!a->json)
            puts("user\trank\titem\tscore");
        print_one(a, ix, a->user, items, scores, s);
    }
    free(items);
    free(scores);
    return rc;
}

enum { USER_BATCH = 64 };

/* The user ids of FILE (or stdin), resolved; an unknown one is an error naming its line. */
static int read_users(const rec_args *a, const v4r_index *ix, const shared_lists *s, char ***ids,
                      v4r_index_query **qs, size_t *n, v4r_err *err)
{
    const char *path = strcmp(a->users, "-") ? a->users : "/dev/stdin";
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err), got = 0;
    size_t cap = 0, qcap = 0;
    *n = 0;
    if (rc)
        return rc;
    while (!rc && (got = v4r_lines_next(&r, err)) == 1) {
        if (v4r_line_blank(r.line))
            continue;
        char where[300];
        snprintf(where, sizeof where, "%.256s:%ld: ", a->users, r.lineno);
        v4r_grow((void **)qs, &qcap, *n + 1, sizeof **qs);
        rc = user_query(a, ix, s, r.line, where, &(*qs)[*n], err);
        v4r_grow((void **)ids, &cap, *n + 1, sizeof **ids);
        if (!rc)
            (*ids)[(*n)++] = v4r_strdup(r.line);
    }
    v4r_lines_close(&r);
    return rc ? rc : got < 0 ? V4R_EIO : V4R_OK;
}

static int answer_users(const rec_args *a, const v4r_index *ix, const shared_lists *s, v4r_err *err)
{
    char **ids = NULL;
    v4r_index_query *qs = NULL;
    size_t n = 0, k = a->k;
    int rc = read_users(a, ix, s, &ids, &qs, &n, err);
    int32_t *items = v4r_malloc((n ? n : 1) * k * sizeof *items);
    float *scores = v4r_malloc((n ? n : 1) * k * sizeof *scores);
    int failed = 0;
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
        for (size_t b = 0; b < n; b += USER_BATCH) {
            v4r_err e = {0};
            size_t nb = n - b < USER_BATCH ? n - b : USER_BATCH;
            failed |= v4r_index_search(ix, qs + b, nb, k, items + b * k, scores + b * k, &e) != 0;
        }
        if (failed)
            rc = v4r_fail(err, V4R_EINTERNAL, "a search failed");
    }
    if (!rc && !a->json)
        puts("user\trank\titem\tscore");
    for (size_t i = 0; !rc && i < n; i++)
        print_one(a, ix, ids[i], items + i * k, scores + i * k, s);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(qs);
    free(items);
    free(scores);
    return rc;
}

/* The service's live additions (INDEX.log) are not applied here: say so when there are some. */
static void warn_live_log(const char *index)
{
    char *log = v4r_live_log_path(index);
    struct stat sb;
    if (stat(log, &sb) == 0 && sb.st_size > 0)
        v4r_warn("%s: the service's live changes in %s are not applied by recommend (it answers from the index "
                 "file alone); 'vlm4rec index compact %s' folds them into the index", index, log, index);
    free(log);
}

int v4r_cmd_recommend(int argc, char **argv)
{
    rec_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    v4r_err err = {0};
    v4r_index *ix;
    if (v4r_index_open(a.index, a.verify, &ix, &err))
        return v4r_cli_report(&err);
    warn_live_log(a.index);
    shared_lists s;
    memset(&s, 0, sizeof s);
    rc = read_shared(&a, ix, &s, &err);
    if (!rc) {
        warn_unknown(&s.history, "--history");
        warn_unknown(&s.exclude, "--exclude");
        warn_unknown(&s.candidates, "--candidates");
        rc = a.users ? answer_users(&a, ix, &s, &err) : answer_one(&a, ix, &s, &err);
    }
    id_list_free(&s.exclude);
    id_list_free(&s.candidates);
    id_list_free(&s.history);
    v4r_index_close(ix);
    return rc ? v4r_cli_report(&err) : 0;
}
