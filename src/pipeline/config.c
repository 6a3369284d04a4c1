/* pipeline: the config file format — [section] / [kind NAME], key = value, # comments — and its
 * schema: every section kind and key the pipeline knows (docs/pipeline.md documents each). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/pipeline.h"

typedef struct {
    const char *kind;
    int named;      /* 1: [kind NAME], repeatable with distinct names; 0: [kind] once */
    const char *keys; /* space-separated */
} section_schema;

static const section_schema schema[] = {
    {"run", 0, "dir title threads"},
    {"dataset", 0, "source format path dedupe users items interactions seed images covered_share"},
    {"ground", 0, "enabled endpoint model prompt prompt_file order items limit concurrency max_tokens timeout retries "
                  "seed api_key_env"},
    {"encoder", 0, "model fallback pull dim batch_size text_template precision"},
    {"text", 1, "source model text_template"},
    {"vision", 0, "source"},
    {"fusion", 1, "kind text options covered"},
    {"model", 1, "spec group"},
    {"protocol", 1, "covered models label history truth history_length keep_history k baseline bootstrap seed "
                    "protocol mask profile truth_duplicates sample_users"},
    {"report", 0, "title cases case_a case_b case_k"},
};
enum { N_SCHEMA = sizeof schema / sizeof *schema };

static const section_schema *find_schema(const char *kind)
{
    for (size_t i = 0; i < N_SCHEMA; i++)
        if (!strcmp(schema[i].kind, kind))
            return &schema[i];
    return NULL;
}

static int key_allowed(const section_schema *s, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = s->keys; (p = strstr(p, key)); p += n)
        if ((p == s->keys || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
            return 1;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

static int section_line(v4r_conf *c, char *line, int lineno, v4r_err *err)
{
    char *close = strchr(line, ']');
    if (!close || trim(close + 1)[0])
        return v4r_fail(err, V4R_EINPUT, "%s:%d: a section header is [kind] or [kind NAME]", c->path, lineno);
    *close = 0;
    char *body = trim(line + 1), *sp = body;
    while (*sp && !isspace((unsigned char)*sp))
        sp++;
    char *name = *sp ? trim(sp + 1) : NULL;
    *sp = 0;
    const section_schema *s = find_schema(body);
    if (!s)
        return v4r_fail(err, V4R_EINPUT, "%s:%d: unknown section [%s]", c->path, lineno, body);
    if (s->named && (!name || !*name))
        return v4r_fail(err, V4R_EINPUT, "%s:%d: [%s] needs a name: [%s NAME]", c->path, lineno, body, body);
    if (!s->named && name && *name)
        return v4r_fail(err, V4R_EINPUT, "%s:%d: [%s] takes no name", c->path, lineno, body);
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->sec[i].kind, body) && (!s->named || !strcmp(c->sec[i].name, name)))
            return v4r_fail(err, V4R_EINPUT, "%s:%d: [%s%s%s] again (first at line %d)", c->path, lineno, body,
                            name ? " " : "", name ? name : "", c->sec[i].line);
    c->sec = v4r_realloc(c->sec, (c->n + 1) * sizeof *c->sec);
    c->sec[c->n++] = (v4r_conf_section){v4r_strdup(body), s->named ? v4r_strdup(name) : NULL, lineno, NULL, 0};
    return V4R_OK;
}

static int key_line(v4r_conf *c, char *line, int lineno, v4r_err *err)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return v4r_fail(err, V4R_EINPUT, "%s:%d: expected key = value", c->path, lineno);
    *eq = 0;
    char *key = trim(line), *value = trim(eq + 1);
    if (!c->n)
        return v4r_fail(err, V4R_EINPUT, "%s:%d: '%s' outside a section", c->path, lineno, key);
    v4r_conf_section *s = &c->sec[c->n - 1];
    if (!key_allowed(find_schema(s->kind), key))
        return v4r_fail(err, V4R_EINPUT, "%s:%d: unknown key '%s' in [%s]", c->path, lineno, key, s->kind);
    if (v4r_conf_get(s, key))
        return v4r_fail(err, V4R_EINPUT, "%s:%d: '%s' again in [%s] (first at line %d)", c->path, lineno, key,
                        s->kind, v4r_conf_get(s, key)->line);
    s->kv = v4r_realloc(s->kv, (s->n + 1) * sizeof *s->kv);
    s->kv[s->n++] = (v4r_conf_kv){v4r_strdup(key), v4r_strdup(value), lineno, 0};
    return V4R_OK;
}

int v4r_conf_parse(const char *path, const char *text, v4r_conf *c, v4r_err *err)
{
    memset(c, 0, sizeof *c);
    c->path = v4r_strdup(path);
    char *copy = v4r_strdup(text), *p = copy;
    int rc = V4R_OK, lineno = 0;
    while (*p && !rc) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        lineno++;
        char *line = trim(p);
        if (*line == '[')
            rc = section_line(c, line, lineno, err);
        else if (*line && *line != '#' && *line != ';')
            rc = key_line(c, line, lineno, err);
        p = nl ? nl + 1 : p + strlen(p);
    }
    free(copy);
    return rc;
}

void v4r_conf_free(v4r_conf *c)
{
    for (size_t i = 0; i < c->n; i++) {
        for (size_t k = 0; k < c->sec[i].n; k++) {
            free(c->sec[i].kv[k].key);
            free(c->sec[i].kv[k].value);
        }
        free(c->sec[i].kv);
        free(c->sec[i].kind);
        free(c->sec[i].name);
    }
    free(c->sec);
    free(c->path);
    memset(c, 0, sizeof *c);
}

const v4r_conf_section *v4r_conf_section_get(const v4r_conf *c, const char *kind)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->sec[i].kind, kind))
            return &c->sec[i];
    return NULL;
}

const v4r_conf_kv *v4r_conf_get(const v4r_conf_section *s, const char *key)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->kv[i].key, key))
            return &s->kv[i];
    return NULL;
}
