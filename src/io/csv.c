/* RFC 4180 CSV records: quoted fields, doubled quotes, delimiters and newlines inside quotes. */
#include "vlm4rec/io.h"

#include <stdlib.h>
#include <string.h>

int v4r_csv_open(v4r_csv *c, const char *path, char delim, v4r_err *err)
{
    memset(c, 0, sizeof *c);
    c->delim = delim;
    return v4r_lines_open(&c->lines, path, err);
}

void v4r_csv_close(v4r_csv *c)
{
    v4r_lines_close(&c->lines);
    free(c->buf);
    free(c->fields);
    memset(c, 0, sizeof *c);
}

static void push_field(v4r_csv *c, size_t *nfields, size_t start)
{
    v4r_grow((void **)&c->fields, &c->fields_cap, *nfields + 1, sizeof *c->fields);
    c->fields[(*nfields)++] = (char *)(uintptr_t)start; /* offsets now, pointers at the end */
}

int v4r_csv_next(v4r_csv *c, v4r_err *err)
{
    int rc = v4r_lines_next(&c->lines, err);
    if (rc <= 0)
        return rc;
    c->record_line = c->lines.lineno;
    size_t w = 0, nfields = 0;
    int in_quotes = 0, was_quoted = 0;
    push_field(c, &nfields, 0);
    for (;;) {
        const char *s = c->lines.line;
        for (size_t i = 0; i < c->lines.len; i++) {
            char ch = s[i];
            v4r_grow((void **)&c->buf, &c->cap, w + 2, 1);
            if (in_quotes) {
                if (ch == '"' && i + 1 < c->lines.len && s[i + 1] == '"') {
                    c->buf[w++] = '"';
                    i++;
                } else if (ch == '"') {
                    in_quotes = 0;
                } else {
                    c->buf[w++] = ch;
                }
            } else if (ch == '"' && !was_quoted && w == (size_t)(uintptr_t)c->fields[nfields - 1]) {
                in_quotes = was_quoted = 1;
            } else if (ch == c->delim) {
                c->buf[w++] = 0;
                push_field(c, &nfields, w);
                was_quoted = 0;
            } else {
                c->buf[w++] = ch;
            }
        }
        if (!in_quotes)
            break;
        rc = v4r_lines_next(&c->lines, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return v4r_fail(err, V4R_EINPUT, "%s:%ld: unterminated quoted field", c->lines.path, c->record_line),
                   -1;
        v4r_grow((void **)&c->buf, &c->cap, w + 2, 1);
        c->buf[w++] = '\n';
    }
    v4r_grow((void **)&c->buf, &c->cap, w + 1, 1);
    c->buf[w] = 0;
    for (size_t i = 0; i < nfields; i++)
        c->fields[i] = c->buf + (size_t)(uintptr_t)c->fields[i];
    return (int)nfields;
}
