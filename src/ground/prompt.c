/* Prompts: the preset templates and filling in {title}. */
#include <string.h>

#include "vlm4rec/ground.h"

const char *v4r_prompt_preset(const char *name)
{
    if (!name)
        return NULL;
    if (!strcmp(name, "paper")) /* the released README.md */
        return "Describe this product image in detail, focusing on visual attributes like color, style, material, "
               "and what occasion it might be suitable for.";
    if (!strcmp(name, "script")) /* the released generate_llava_next_summaries.py, byte for byte */
        return "Describe this product in detail for an e-commerce recommendation system. \n"
               "Include: visual appearance, style, color, materials, design features, and any notable characteristics.\n"
               "Product title: {title}\n"
               "Provide a concise but informative description (2-3 sentences).";
    return NULL;
}

char *v4r_prompt_fill(const char *tmpl, const char *title)
{
    static const char key[] = "{title}";
    size_t tl = title ? strlen(title) : 0, n = 0, cap = strlen(tmpl) + 1;
    for (const char *p = strstr(tmpl, key); p; p = strstr(p + 1, key))
        cap += tl;
    char *out = v4r_malloc(cap);
    for (const char *p = tmpl; *p;) {
        if (!strncmp(p, key, sizeof key - 1)) {
            memcpy(out + n, title ? title : "", tl);
            n += tl;
            p += sizeof key - 1;
        } else if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            out[n++] = p[0];
            p += 2;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return out;
}
