/* `vlm4rec report` and `vlm4rec explain`: the numbers of report.md and report.html equal the
 * results JSON they are drawn from; names are escaped; groups follow the rule; bad inputs fail. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/report.h"

static const char *weird = "title <b>&amp;\"x\"|y";

static char *make_results(void)
{
    char *dir = tu_tmpdir(), *out = NULL;
    int rc = tu_run(&out, "dataset synth -o '%s/cat' --users 300 --items 500 --interactions 2400 --seed 5", dir);
    assert_int_equal(rc, 0);
    free(out);
    rc = tu_run(&out,
                "eval --dataset '%s/cat' --model '%s=features/title.npy' --model description=features/description.npy "
                "--model 'CLIP (vision only)=features/visual.npy' "
                "--model 'desc+visual concat=concat:features/description.npy,features/visual.npy' "
                "--bootstrap 200 -q -o '%s/full.json'",
                dir, weird, dir);
    if (rc)
        fail_msg("eval: %s", out);
    free(out);
    rc = tu_run(&out,
                "eval --dataset '%s/cat' --covered covered.txt --model 'title (BERT)=features/title.npy' "
                "--model description=features/description.npy --bootstrap 200 -q -o '%s/cov.json'",
                dir, dir);
    assert_int_equal(rc, 0);
    free(out);
    return dir;
}

/* Splits a Markdown table row on unescaped '|' and unescapes the cells. Returns the count. */
static size_t md_cells(const char *line, char cells[][256], size_t max)
{
    size_t n = 0, len = 0;
    for (const char *p = line + 1; *p && n < max; p++) {
        if (*p == '\\' && p[1]) {
            cells[n][len++] = *++p;
        } else if (*p == '|') {
            while (len && cells[n][len - 1] == ' ')
                len--;
            cells[n][len] = 0;
            n++;
            len = 0;
            while (p[1] == ' ')
                p++;
        } else if (len < 255) {
            cells[n][len++] = *p;
        }
    }
    return n;
}

static double cell_number(const char *cell)
{
    while (*cell == '*')
        cell++;
    return strtod(cell, NULL);
}

static json_t *model_of(json_t *root, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach (json_object_get(root, "models"), i, m)
        if (!strcmp(json_string_value(json_object_get(m, "name")), name))
            return m;
    return NULL;
}

static double mean_of(json_t *model, const char *key)
{
    return json_number_value(json_object_get(json_object_get(json_object_get(model, "metrics"), key), "mean"));
}

/* Table 1 of the first section of report.md against the JSON: every value, the improvement and
 * the bold marks. Returns the rows checked. */
static size_t check_markdown(const char *md, json_t *root)
{
    static const char *const keys[] = {"recall@5", "recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10"};
    const char *t = strstr(md, "| Group | Representation |");
    assert_non_null(t);
    t = strchr(strchr(t, '\n') + 1, '\n') + 1;
    size_t rows = 0;
    char cells[16][256];
    while (*t == '|') {
        const char *nl = strchr(t, '\n');
        char *line = v4r_strndup(t, (size_t)(nl - t));
        size_t n = md_cells(line, cells, 16);
        assert_int_equal(n, 9);
        json_t *m = model_of(root, cells[1]);
        if (!m)
            fail_msg("row '%s' is not a model of the JSON", cells[1]);
        for (size_t k = 0; k < 6; k++) {
            double want = mean_of(m, keys[k]);
            assert_true(fabs(cell_number(cells[2 + k]) - want) <= 5.001e-5);
            int best = 1;
            size_t i;
            json_t *o;
            json_array_foreach (json_object_get(root, "models"), i, o)
                if (mean_of(o, keys[k]) > want)
                    best = 0;
            assert_int_equal(best, cells[2 + k][0] == '*');
        }
        json_t *imp = json_object_get(json_object_get(json_object_get(m, "vs_baseline"), "recall@10"), "improvement_pct");
        if (json_is_number(imp))
            assert_true(fabs(strtod(cells[8], NULL) - json_number_value(imp)) <= 0.05001);
        else
            assert_string_equal(cells[8], json_is_null(json_object_get(m, "vs_baseline")) ? "baseline" : "n/a");
        free(line);
        rows++;
        t = nl + 1;
    }
    return rows;
}

/* Every <td data-metric> of Table 1's rows in the HTML against the JSON. */
static size_t check_html(const char *html, json_t *root, const char *table)
{
    size_t cells = 0;
    char *needle = v4r_sprintf("<tr data-table=\"%s\" data-model=\"", table);
    for (const char *p = strstr(html, needle); p; p = strstr(p + 1, needle)) {
        const char *name = p + strlen(needle), *q = strchr(name, '"');
        char *esc = v4r_strndup(name, (size_t)(q - name));
        json_t *m = NULL;
        size_t i;
        json_t *o;
        json_array_foreach (json_object_get(root, "models"), i, o) {
            const char *nm = json_string_value(json_object_get(o, "name"));
            if (!strcmp(nm, esc) || (!strcmp(nm, weird) && !strcmp(esc, "title &lt;b&gt;&amp;amp;&quot;x&quot;|y")))
                m = o;
        }
        if (!m)
            fail_msg("HTML row '%s' is not a model of the JSON", esc);
        const char *end = strstr(p, "</tr>");
        for (const char *c = strstr(p, "data-metric=\""); c && c < end; c = strstr(c + 1, "data-metric=\"")) {
            char key[32];
            sscanf(c + 13, "%31[^\"]", key);
            if (!strcmp(key, "improvement"))
                continue;
            double got = strtod(strchr(c, '>') + 1, NULL);
            assert_true(fabs(got - mean_of(m, key)) <= 5.001e-5);
            cells++;
        }
        free(esc);
    }
    free(needle);
    return cells;
}

static void test_report_matches_json(void **state)
{
    char *dir = make_results(), *out = NULL;
    int rc = tu_run(&out, "report '%s/full.json' '%s/cov.json' -o '%s/rep' --title 'T <1>'", dir, dir, dir);
    if (rc)
        fail_msg("report: %s", out);
    free(out);
    char *full = v4r_path_join(dir, "full.json");
    json_t *root = json_load_file(full, 0, NULL);
    assert_non_null(root);
    char *md = tu_read(dir, "rep/report.md"), *html = tu_read(dir, "rep/report.html");
    assert_non_null(md);
    assert_non_null(html);
    assert_int_equal(check_markdown(md, root), 4);
    assert_int_equal(check_html(html, root, "t1-0"), 4 * 6);
    assert_int_equal(check_html(html, root, "all-0"), 4 * 15);
    /* escaping: the name never appears raw; the title neither */
    assert_null(strstr(html, "<b>&amp;"));
    assert_null(strstr(html, "T <1>"));
    assert_non_null(strstr(html, "T &lt;1&gt;"));
    /* self-contained: no scripts, no external references; every figure present */
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "href="));
    const char *figs[] = {"class=\"heatmap\"", "class=\"profile\"", "class=\"bootstrap\"", "class=\"bars\""};
    for (size_t i = 0; i < 4; i++)
        assert_non_null(strstr(html, figs[i]));
    /* groups by the naming rule */
    assert_non_null(strstr(md, "| Text only | description |"));
    assert_non_null(strstr(md, "| LLaVA-based fusion | desc+visual concat |"));
    assert_non_null(strstr(md, "| Other | CLIP (vision only) |"));
    assert_non_null(strstr(md, "## Covered subset"));
    json_decref(root);
    free(full);
    free(md);
    free(html);
    tu_rmtree(dir);
    free(dir);
}

static void test_groups(void **state)
{
    assert_int_equal(v4r_group_of_name("LLaVA (text only)"), V4R_GROUP_TEXT);
    assert_int_equal(v4r_group_of_name("BERT (title)"), V4R_GROUP_TEXT);
    assert_int_equal(v4r_group_of_name("LLaVA + SMORE"), V4R_GROUP_LLAVA_FUSION);
    assert_int_equal(v4r_group_of_name("BERT attention fusion"), V4R_GROUP_BERT_FUSION);
    assert_int_equal(v4r_group_of_name("Gating fusion"), V4R_GROUP_OTHER);
    assert_int_equal(v4r_group_of_name("CLIP (vision only)"), V4R_GROUP_OTHER);
    assert_int_equal(v4r_group_parse("bert-fusion"), V4R_GROUP_BERT_FUSION);
    assert_int_equal(v4r_group_parse("nope"), -1);
}

static void test_bad_inputs(void **state)
{
    char *dir = tu_tmpdir(), *out = NULL;
    tu_write(dir, "bad.json", "{\"format\": \"other\"}\n");
    tu_write(dir, "broken.json", "{\"format\": \n");
    assert_int_equal(tu_run(&out, "report '%s/missing.json' -o '%s/r'", dir, dir), 4);
    free(out);
    assert_int_equal(tu_run(&out, "report '%s/bad.json' -o '%s/r'", dir, dir), 3);
    assert_non_null(strstr(out, "format"));
    free(out);
    assert_int_equal(tu_run(&out, "report '%s/broken.json' -o '%s/r'", dir, dir), 3);
    assert_non_null(strstr(out, "broken.json:"));
    free(out);
    assert_int_equal(tu_run(&out, "report -o '%s/r'", dir), 2);
    free(out);
    assert_null(tu_read(dir, "r/report.md"));
    tu_rmtree(dir);
    free(dir);
}

static void test_explain(void **state)
{
    char *dir = make_results(), *out = NULL;
    int rc = tu_run(&out,
                    "explain --dataset '%s/cat' --user U00003 --a description=features/description.npy "
                    "--b title=features/title.npy -k 7 --descriptions descriptions.tsv",
                    dir);
    if (rc)
        fail_msg("explain: %s", out);
    assert_non_null(strstr(out, "user U00003: description vs title"));
    assert_non_null(strstr(out, "history ("));
    assert_non_null(strstr(out, "truth (valid):"));
    assert_non_null(strstr(out, "   7  "));
    assert_non_null(strstr(out, "hits in the top 7"));
    free(out);
    /* the top-K equals eval's rankings for that user */
    rc = tu_run(&out,
                "eval --dataset '%s/cat' --model d=features/description.npy --k 7 --bootstrap 0 -q "
                "--rankings '%s/rk.tsv' >/dev/null && grep -P '^d\\tU00003\\t' '%s/rk.tsv' | cut -f4",
                dir, dir, dir);
    assert_int_equal(rc, 0);
    char *ex = NULL;
    tu_run(&ex,
           "explain --dataset '%s/cat' --user U00003 --a d=features/description.npy --b t=features/title.npy -k 7 "
           "| awk '$1 ~ /^[0-9]+$/ && NF > 2 { print ($2 == \"*\") ? $3 : $2 }'",
           dir);
    assert_string_equal(ex, out);
    free(ex);
    free(out);
    assert_int_equal(tu_run(&out, "explain --dataset '%s/cat' --user nobody --a d=features/description.npy "
                                  "--b t=features/title.npy", dir), 3);
    assert_non_null(strstr(out, "nobody"));
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_matches_json),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_explain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
