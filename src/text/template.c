/* Text templates (encode --text-template, the index's recorded template): {title} and
 * {description} filled in, {{ and }} for literal braces. */
#include <string.h>

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
