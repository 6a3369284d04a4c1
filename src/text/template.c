/* Text templates (encode --text-template, the index's recorded template): {title} and
 * {description} filled in, {{ and }} for literal braces. */
#include <string.h>

#include "vlm4rec/base.h"

#include "vlm4rec/text.h"

char *v4r_text_template_fill(const char *tpl, const char *title, const char *description)
{
    size_t cap = strlen(tpl) + 1, n = 0;
    for (const char *c = tpl; *c; c++)
        if (*c == '{')
            cap += strlen(title) + strlen(description);
    char *out = v4r_malloc(cap);
    for (const char *c = tpl; *c;) {
        if ((c[0] == '{' && c[1] == '{') || (c[0] == '}' && c[1] == '}')) {
            out[n++] = *c;
            c += 2;
        } else if (!strncmp(c, "{title}", 7) || !strncmp(c, "{description}", 13)) {
            const char *put = c[1] == 't' ? title : description;
            memcpy(out + n, put, strlen(put));
            n += strlen(put);
            c += c[1] == 't' ? 7 : 13;
        } else {
            out[n++] = *c++;
        }
    }
    out[n] = 0;
    return out;
}

/* The placeholder at t ('{'): 'd' for {description}, 't' for {title}; *end just past its '}'.
 * 0 when it is not closed, '?' when the name is unknown. */
static int placeholder(const char *t, const char **end)
{
    const char *close = strchr(t, '}');
    if (!close)
        return 0;
    *end = close + 1;
    size_t n = (size_t)(close - t - 1);
    if (n == 5 && !strncmp(t + 1, "title", 5))
        return 't';
    if (n == 11 && !strncmp(t + 1, "description", 11))
        return 'd';
    return '?';
}

int v4r_text_template_check(const char *tpl, int *uses_title, v4r_err *err)
{
    *uses_title = 0;
    for (const char *c = tpl; *c;) {
        const char *end = c + 1;
        if ((c[0] == '{' && c[1] == '{') || (c[0] == '}' && c[1] == '}')) {
            c += 2;
            continue;
        }
        if (*c == '}')
            return v4r_fail(err, V4R_EINPUT, "a lone '}' at character %d (write }} for a brace)", (int)(c - tpl) + 1);
        if (*c == '{') {
            int kind = placeholder(c, &end);
            if (!kind)
                return v4r_fail(err, V4R_EINPUT, "'{' at character %d is not closed (write {{ for a brace)",
                                (int)(c - tpl) + 1);
            if (kind == '?')
                return v4r_fail(err, V4R_EINPUT,
                                "unknown placeholder '%.*s' (the placeholders are {title} and {description}; {{ and "
                                "}} are braces)",
                                (int)(end - c), c);
            *uses_title |= kind == 't';
        }
        c = end;
    }
    return V4R_OK;
}
