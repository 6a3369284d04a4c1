/* String -> integer map with open addressing (FNV-1a hash, linear probing). */
#include "vlm4rec/base.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void v4r_strmap_init(v4r_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    m->keys = v4r_calloc(cap, sizeof *m->keys);
    m->vals = v4r_calloc(cap, sizeof *m->vals);
    m->cap = cap;
    m->count = 0;
}

void v4r_strmap_free(v4r_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t slot_of(char **keys, size_t cap, const char *key)
{
    size_t i = hash_str(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static void rehash(v4r_strmap *m)
{
    size_t cap = m->cap * 2;
    char **keys = v4r_calloc(cap, sizeof *keys);
    int64_t *vals = v4r_calloc(cap, sizeof *vals);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = slot_of(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
}

int64_t v4r_strmap_put(v4r_strmap *m, const char *key, int64_t val)
{
    if ((m->count + 1) * 2 > m->cap)
        rehash(m);
    size_t i = slot_of(m->keys, m->cap, key);
    if (m->keys[i])
        return m->vals[i];
    m->keys[i] = v4r_strdup(key);
    m->vals[i] = val;
    m->count++;
    return -1;
}

int64_t v4r_strmap_get(const v4r_strmap *m, const char *key)
{
    size_t i = slot_of(m->keys, m->cap, key);
    return m->keys[i] ? m->vals[i] : -1;
}
