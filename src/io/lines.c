/* Line-by-line reading with line numbers, and TSV field splitting and escaping. */
#include "vlm4rec/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int v4r_lines_open(v4r_lines *r, const char *path, v4r_err *err)
{
    memset(r, 0, sizeof *r);
    r->fp = fopen(path, "rb");
    if (!r->fp)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    r->path = v4r_strdup(path);
    return V4R_OK;
}

int v4r_lines_next(v4r_lines *r, v4r_err *err)
{
    r->len = 0;
    int c, any = 0;
    while ((c = getc(r->fp)) != EOF) {
        any = 1;
        if (c == '\n')
            break;
        v4r_grow((void **)&r->line, &r->cap, r->len + 2, 1);
        r->line[r->len++] = (char)c;
    }
    if (ferror(r->fp))
        return v4r_fail(err, V4R_EIO, "%s:%ld: read error", r->path, r->lineno + 1), -1;
    if (!any)
        return 0;
    if (r->len && r->line[r->len - 1] == '\r')
        r->len--;
    v4r_grow((void **)&r->line, &r->cap, r->len + 1, 1);
    r->line[r->len] = 0;
    r->lineno++;
    return 1;
}

void v4r_lines_close(v4r_lines *r)
{
    if (r->fp)
        fclose(r->fp);
    free(r->line);
    free(r->path);
    memset(r, 0, sizeof *r);
}

int v4r_line_blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == 0;
}

size_t v4r_tsv_split(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *s = line;
    for (;;) {
        char *tab = strchr(s, '\t');
        if (n < max)
            fields[n] = s;
        n++;
        if (!tab)
            break;
        *tab = 0;
        s = tab + 1;
    }
    return n;
}

void v4r_tsv_unescape(char *field)
{
    char *w = field;
    for (char *r = field; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

void v4r_tsv_write_field(FILE *fp, const char *field)
{
    for (const char *s = field; *s; s++) {
        switch (*s) {
        case '\t': fputs("\\t", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\\': fputs("\\\\", fp); break;
        default: putc(*s, fp);
        }
    }
}
