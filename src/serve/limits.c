/* Admission: a token bucket per client address (rate and burst) and the bearer token check, which
 * compares digests in constant time so the answer time says nothing about the token. */
#include <math.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "serve_internal.h"
#include "vlm4rec/ground.h"

#define MAX_CLIENTS 65536     /* buckets kept before the full ones are dropped */
#define MAX_RETRY_AFTER 86400 /* seconds: what Retry-After says at most */

void limiter_init(rate_limiter *l, double rate, double burst)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->rate = rate;
    l->burst = burst > 0 ? burst : (rate > 1 ? rate : 1);
    v4r_strmap_init(&l->index, 64);
}

void limiter_free(rate_limiter *l)
{
    v4r_strmap_free(&l->index);
    free(l->buckets);
    pthread_mutex_destroy(&l->mu);
}

static double refill(const rate_limiter *l, const token_bucket *b, double now)
{
    double t = b->tokens + (now - b->last) * l->rate;
    return t < l->burst ? t : l->burst;
}

/* Keeps only the clients whose bucket is not full (a full bucket is the same as none). */
static void prune(rate_limiter *l, double now)
{
    v4r_strmap fresh;
    v4r_strmap_init(&fresh, l->n);
    token_bucket *kept = v4r_malloc((l->n + 1) * sizeof *kept);
    size_t n = 0;
    for (size_t i = 0; i < l->index.cap; i++) {
        if (!l->index.keys[i])
            continue;
        const token_bucket *b = &l->buckets[l->index.vals[i]];
        if (refill(l, b, now) >= l->burst)
            continue;
        v4r_strmap_put(&fresh, l->index.keys[i], (int64_t)n);
        kept[n++] = *b;
    }
    v4r_strmap_free(&l->index);
    free(l->buckets);
    l->index = fresh;
    l->buckets = kept;
    l->n = n;
    l->cap = l->n + 1;
    if (l->n >= MAX_CLIENTS) { /* a flood of addresses: forget them all rather than grow */
        v4r_strmap_free(&l->index);
        v4r_strmap_init(&l->index, 64);
        l->n = 0;
    }
}

long limiter_take(rate_limiter *l, const char *client, double now)
{
    if (l->rate <= 0)
        return 0;
    pthread_mutex_lock(&l->mu);
    int64_t at = v4r_strmap_get(&l->index, client);
    if (at < 0) {
        if (l->n >= MAX_CLIENTS)
            prune(l, now);
        v4r_grow((void **)&l->buckets, &l->cap, l->n + 1, sizeof *l->buckets);
        at = (int64_t)l->n++;
        v4r_strmap_put(&l->index, client, at);
        l->buckets[at].tokens = l->burst;
        l->buckets[at].last = now;
    }
    token_bucket *b = &l->buckets[at];
    b->tokens = refill(l, b, now);
    b->last = now;
    long wait = 0;
    if (b->tokens >= 1) {
        b->tokens -= 1;
    } else {
        double secs = ceil((1 - b->tokens) / l->rate);
        wait = secs < 1 ? 1 : secs > MAX_RETRY_AFTER ? MAX_RETRY_AFTER : (long)secs;
    }
    pthread_mutex_unlock(&l->mu);
    return wait;
}

int token_matches(const char *header, const char *token)
{
    if (!header || strncmp(header, "Bearer ", 7))
        return 0;
    const char *given = header + 7;
    while (*given == ' ')
        given++;
    char a[65], b[65];
    v4r_sha256_hex(given, strlen(given), a);
    v4r_sha256_hex(token, strlen(token), b);
    return CRYPTO_memcmp(a, b, 64) == 0;
}
