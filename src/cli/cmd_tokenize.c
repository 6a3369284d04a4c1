/* `vlm4rec tokenize`: the WordPiece ids and tokens of texts (JSONL or plain text), one JSON line each. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/io.h"
#include "vlm4rec/text.h"

static const char *tokenize_help =
    "usage: vlm4rec tokenize --model DIR|ORG/NAME --input FILE [options]\n"
    "\n"
    "Tokenizes each text as the model's BERT WordPiece tokenizer does ([CLS] ... [SEP]) and prints\n"
    "one JSON object a line: {\"id\": ..., \"ids\": [...], \"tokens\": [...]}.\n"
    "\n"
    "  --model DIR          the model directory (vocab.txt and/or tokenizer.json, tokenizer_config.json),\n"
    "                       or a Hugging Face id resolved through the model cache (see 'vlm4rec pull')\n"
    "  --input FILE         JSONL ({\"text\": ..., \"id\": ...} a line; \"id\" is optional and carried\n"
    "                       through, else the record's index from 0) or plain text (one text a line;\n"
    "                       the id is the line's index from 0); - reads standard input\n"
    "  --format F           jsonl or text (default: jsonl when the first non-blank character is '{')\n"
    "  --max-length N       tokens in all, [CLS] and [SEP] included (default: max_seq_length of\n"
    "                       sentence_bert_config.json, else 512; 0 = no limit)\n"
    "  -o, --output FILE    write there instead of standard output\n"
    "\n"
    "Exit codes: 0 done, 2 usage error, 3 bad input (invalid UTF-8, malformed JSON, no \"text\":\n"
    "the message names the file and line), 4 a file could not be read or written.\n";

enum { FMT_AUTO = 0, FMT_JSONL, FMT_TEXT };

typedef struct {
    const char *model, *input, *output;
    int format;
    size_t max_len;
    int has_max;
} tok_args;

static int parse_args(int argc, char **argv, tok_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"input", required_argument, 0, 'i'},
        {"format", required_argument, 0, 'f'},     {"max-length", required_argument, 0, 'L'},
        {"output", required_argument, 0, 'o'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'i': a->input = optarg; break;
        case 'f':
            a->format = !strcmp(optarg, "jsonl") ? FMT_JSONL : !strcmp(optarg, "text") ? FMT_TEXT : -1;
            if (a->format < 0)
                rc = v4r_cli_usage_error("tokenize", "--format must be jsonl or text, not '%s'", optarg);
            break;
        case 'L':
            rc = v4r_opt_size("tokenize", "max-length", optarg, &a->max_len);
            if (!rc && a->max_len == 1)
                rc = v4r_cli_usage_error("tokenize", "--max-length must be 0 or at least 2");
            a->has_max = 1;
            break;
        case 'o': a->output = optarg; break;
        case 'h': fputs(tokenize_help, stdout); return -1;
        default: return v4r_cli_usage_error("tokenize", "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error("tokenize", "unexpected argument '%s'", argv[optind]);
    if (!rc && !a->model)
        rc = v4r_cli_usage_error("tokenize", "--model is required");
    if (!rc && !a->input)
        rc = v4r_cli_usage_error("tokenize", "--input is required");
    return rc;
}

/* max_seq_length of sentence_bert_config.json, else 512. */
static size_t default_max_len(const char *dir)
{
    char *path = v4r_path_join(dir, "sentence_bert_config.json");
    json_t *cfg = v4r_file_exists(path) ? json_load_file(path, 0, NULL) : NULL;
    const json_t *v = json_object_get(cfg, "max_seq_length");
    size_t n = json_is_integer(v) && json_integer_value(v) >= 2 ? (size_t)json_integer_value(v) : 512;
    json_decref(cfg);
    free(path);
    return n;
}

static void put_json_string(FILE *fp, const char *s)
{
    putc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", fp);
        else if (*p == '\t')
            fputs("\\t", fp);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            putc(*p, fp);
    }
    putc('"', fp);
}

/* One output line; id_json is the id already as JSON. */
static void write_record(FILE *fp, const v4r_tokenizer *t, const char *id_json, const int32_t *ids, size_t n)
{
    fprintf(fp, "{\"id\": %s, \"ids\": [", id_json);
    for (size_t i = 0; i < n; i++)
        fprintf(fp, i ? ", %d" : "%d", (int)ids[i]);
    fputs("], \"tokens\": [", fp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", fp);
        const char *tok = v4r_tokenizer_token(t, ids[i]);
        put_json_string(fp, tok ? tok : "");
    }
    fputs("]}\n", fp);
}

/* Removes NUL bytes in place (the tokenizer's clean_text drops U+0000 anyway). */
static void drop_nuls(char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i])
            s[k++] = s[i];
    s[k] = 0;
}

typedef struct {
    const v4r_tokenizer *t;
    FILE *out;
    size_t max_len;
    const char *path;
    size_t records;
} tok_run;

static int emit_text(tok_run *r, long lineno, char *text, const char *id_json, v4r_err *err)
{
    int32_t *ids;
    size_t n;
    int rc = v4r_tokenize(r->t, text, r->max_len, &ids, &n, err);
    if (rc)
        return v4r_err_prefix(err, "%s:%ld: ", r->path, lineno);
    write_record(r->out, r->t, id_json, ids, n);
    free(ids);
    r->records++;
    return V4R_OK;
}

static int do_text_line(tok_run *r, long lineno, char *line, size_t len, v4r_err *err)
{
    char id[32];
    snprintf(id, sizeof id, "%ld", lineno - 1);
    drop_nuls(line, len);
    return emit_text(r, lineno, line, id, err);
}

/* The "text" of a JSONL record, NUL bytes dropped (caller frees). */
static int record_text(const json_t *obj, char **text)
{
    const json_t *v = json_object_get(obj, "text");
    if (!json_is_string(v))
        return -1;
    size_t n = json_string_length(v);
    *text = v4r_strndup(json_string_value(v), n);
    drop_nuls(*text, n);
    return 0;
}

static int do_json_line(tok_run *r, long lineno, const char *line, size_t len, v4r_err *err)
{
    json_error_t je;
    json_t *obj = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    char *text = NULL;
    if (!obj)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: malformed JSON: %s", r->path, lineno, je.text);
    int rc = V4R_OK;
    if (!json_is_object(obj) || record_text(obj, &text))
        rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: the record has no \"text\" string", r->path, lineno);
    const json_t *idv = json_object_get(obj, "id");
    char *id = idv ? json_dumps(idv, JSON_ENCODE_ANY | JSON_COMPACT) : v4r_sprintf("%zu", r->records);
    if (!rc)
        rc = emit_text(r, lineno, text, id, err);
    free(id);
    free(text);
    json_decref(obj);
    return rc;
}

static int is_blank(const char *s)
{
    return s[strspn(s, " \t")] == 0;
}

/* Reads every line; in auto mode the first non-blank line decides (leading blank lines are
 * empty texts in text mode). */
static int run_lines(tok_run *r, v4r_lines *in, int format, v4r_err *err)
{
    int got, rc = V4R_OK;
    long pending = 0;
    while (!rc && (got = v4r_lines_next(in, err)) == 1) {
        char *line = in->line;
        size_t len = in->len;
        if (in->lineno == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3))
            line += 3, len -= 3;
        if (format == FMT_AUTO && is_blank(line)) {
            pending++;
            continue;
        }
        if (format == FMT_AUTO)
            format = line[strspn(line, " \t")] == '{' ? FMT_JSONL : FMT_TEXT;
        for (long k = 1; format == FMT_TEXT && k <= pending && !rc; k++)
            rc = do_text_line(r, k, (char[1]){0}, 0, err);
        pending = 0;
        if (!rc && format == FMT_TEXT)
            rc = do_text_line(r, in->lineno, line, len, err);
        else if (!rc && !is_blank(line))
            rc = do_json_line(r, in->lineno, line, len, err);
    }
    return rc ? rc : got < 0 ? err->code : V4R_OK;
}

static int tokenize_file(const tok_args *a, const char *model_dir, const v4r_tokenizer *t, FILE *out, v4r_err *err)
{
    const char *path = strcmp(a->input, "-") ? a->input : "/dev/stdin";
    v4r_lines in;
    int rc = v4r_lines_open(&in, path, err);
    if (rc)
        return rc;
    tok_run r = {.t = t, .out = out, .path = a->input};
    r.max_len = a->has_max ? a->max_len : default_max_len(model_dir);
    rc = run_lines(&r, &in, a->format, err);
    v4r_lines_close(&in);
    if (!rc && ferror(out))
        rc = v4r_fail(err, V4R_EIO, "write error");
    return rc;
}

static int run(const tok_args *a, v4r_err *err)
{
    v4r_tokenizer *t;
    char *model_dir = NULL;
    int rc = v4r_cli_resolve_model(a->model, 0, &model_dir, err);
    if (!rc)
        rc = v4r_tokenizer_load(model_dir, &t, err);
    if (rc) {
        free(model_dir);
        return rc;
    }
    v4r_outfile of = {0};
    if (a->output)
        rc = v4r_out_open(&of, a->output, err);
    if (!rc)
        rc = tokenize_file(a, model_dir, t, a->output ? of.fp : stdout, err);
    if (a->output && !rc)
        rc = v4r_out_commit(&of, err);
    else if (a->output && of.fp)
        v4r_out_abort(&of);
    if (!rc && !a->output && fflush(stdout))
        rc = v4r_fail(err, V4R_EIO, "write error on standard output");
    v4r_tokenizer_free(t);
    free(model_dir);
    return rc;
}

int v4r_cmd_tokenize(int argc, char **argv)
{
    tok_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        return 0; /* --help */
    if (rc)
        return rc;
    v4r_err err = {0};
    rc = run(&a, &err);
    return rc ? v4r_cli_report(&err) : 0;
}
