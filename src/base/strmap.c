/* String arena, and the string -> integer map with open addressing (FNV-1a, linear probing). */
#include "vlm4rec/base.h"

#include <stdlib.h>
#include <string.h>

enum { ARENA_BLOCK = 1 << 16 };

char *v4r_arena_strdup(v4r_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    if (a->used + n > a->size) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        v4r_grow((void **)&a->blocks, &a->cap_blocks, a->n_blocks + 1, sizeof *a->blocks);
        a->blocks[a->n_blocks++] = v4r_malloc(size);
        a->used = 0;
        a->size = size;
    }
    char *d = a->blocks[a->n_blocks - 1] + a->used;
    memcpy(d, s, n);
    a->used += n;
    return d;
}

void v4r_arena_free(v4r_arena *a)
{
    for (size_t i = 0; i < a->n_blocks; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
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
    memset(&m->arena, 0, sizeof m->arena);
}

void v4r_strmap_free(v4r_strmap *m)
{
    v4r_arena_free(&m->arena);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t slot_of(const char **keys, size_t cap, const char *key)
{
    size_t i = hash_str(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static void rehash(v4r_strmap *m)
{
    size_t cap = m->cap * 2;
    const char **keys = v4r_calloc(cap, sizeof *keys);
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
    m->keys[i] = v4r_arena_strdup(&m->arena, key);
    m->vals[i] = val;
    m->count++;
    return -1;
}

int64_t v4r_strmap_get(const v4r_strmap *m, const char *key)
{
    size_t i = slot_of(m->keys, m->cap, key);
    return m->keys[i] ? m->vals[i] : -1;
}

int64_t v4r_strmap_getn(const v4r_strmap *m, const char *key, size_t len)
{
    if (memchr(key, 0, len))
        return -1; /* no stored key holds a NUL */
    size_t i = hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[i] && (strncmp(m->keys[i], key, len) != 0 || m->keys[i][len] != 0))
        i = (i + 1) & (m->cap - 1);
    return m->keys[i] ? m->vals[i] : -1;
}
