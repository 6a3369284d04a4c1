/* The autodiff tape: reusable memory (small requests packed in chunks, large ones in blocks of their
 * own, both reused in order after a reset), node records, the backward pass, and the row
 * reductions shared by the operations. */
#include "ad_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK_MIN = 16 << 20, BIG = 1 << 20, ALIGN = 64 };

typedef struct {
    char *base;
    size_t size, used;
} tape_chunk;

struct v4r_ad_tape {
    tape_chunk *chunks; /* requests below BIG, packed */
    size_t n_chunks, cur;
    tape_chunk *big; /* one request of BIG or more each; the i-th after a reset reuses big[i] */
    size_t n_big, big_used;
    tape_chunk *pool; /* large gradients: a block is taken (used = 1) and given back once the node's
                       * backward step has run, so only the gradients in flight hold memory */
    size_t n_pool;
    v4r_ad_tensor **nodes;
    size_t n_nodes, cap_nodes;
};

v4r_ad_tape *v4r_ad_tape_new(void) { return v4r_calloc(1, sizeof(v4r_ad_tape)); }

void v4r_ad_tape_free(v4r_ad_tape *tape)
{
    if (!tape)
        return;
    for (size_t i = 0; i < tape->n_chunks; i++)
        free(tape->chunks[i].base);
    for (size_t i = 0; i < tape->n_big; i++)
        free(tape->big[i].base);
    for (size_t i = 0; i < tape->n_pool; i++)
        free(tape->pool[i].base);
    free(tape->chunks);
    free(tape->big);
    free(tape->pool);
    free(tape->nodes);
    free(tape);
}

void v4r_ad_tape_reset(v4r_ad_tape *tape)
{
    for (size_t i = 0; i < tape->n_chunks; i++)
        tape->chunks[i].used = 0;
    tape->cur = 0;
    tape->big_used = 0;
    for (size_t i = 0; i < tape->n_pool; i++)
        tape->pool[i].used = 0;
    tape->n_nodes = 0;
}

size_t v4r_ad_tape_bytes(const v4r_ad_tape *tape)
{
    size_t n = tape->cap_nodes * sizeof *tape->nodes;
    for (size_t i = 0; i < tape->n_chunks; i++)
        n += tape->chunks[i].size;
    for (size_t i = 0; i < tape->n_big; i++)
        n += tape->big[i].size;
    for (size_t i = 0; i < tape->n_pool; i++)
        n += tape->pool[i].size;
    return n;
}

static char *chunk_alloc(size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, ALIGN, size) != 0 || !p) {
        fprintf(stderr, "vlm4rec: out of memory (%zu bytes for the training tape)\n", size);
        abort();
    }
    return p;
}

/* Moves to the next chunk able to hold bytes, replacing a chunk that is too small. */
static void next_chunk(v4r_ad_tape *tape, size_t bytes)
{
    size_t want = bytes > CHUNK_MIN ? bytes : CHUNK_MIN;
    if (tape->n_chunks && tape->chunks[tape->cur].used)
        tape->cur++;
    if (tape->cur == tape->n_chunks) {
        tape->chunks = v4r_realloc(tape->chunks, (tape->n_chunks + 1) * sizeof *tape->chunks);
        tape->chunks[tape->n_chunks++] = (tape_chunk){chunk_alloc(want), want, 0};
    } else if (tape->chunks[tape->cur].size < bytes) {
        free(tape->chunks[tape->cur].base);
        tape->chunks[tape->cur] = (tape_chunk){chunk_alloc(want), want, 0};
    }
}

/* The next block of its own for a large request (a step makes the same requests every time). */
static void *big_alloc(v4r_ad_tape *tape, size_t bytes)
{
    if (tape->big_used == tape->n_big) {
        tape->big = v4r_realloc(tape->big, (tape->n_big + 1) * sizeof *tape->big);
        tape->big[tape->n_big++] = (tape_chunk){chunk_alloc(bytes), bytes, 0};
    } else if (tape->big[tape->big_used].size < bytes) {
        free(tape->big[tape->big_used].base);
        tape->big[tape->big_used] = (tape_chunk){chunk_alloc(bytes), bytes, 0};
    }
    return tape->big[tape->big_used++].base;
}

void *v4r_ad_alloc(v4r_ad_tape *tape, size_t bytes)
{
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (!bytes)
        bytes = ALIGN;
    if (bytes >= BIG)
        return big_alloc(tape, bytes);
    if (!tape->n_chunks || tape->chunks[tape->cur].size - tape->chunks[tape->cur].used < bytes)
        next_chunk(tape, bytes);
    tape_chunk *c = &tape->chunks[tape->cur];
    void *p = c->base + c->used;
    c->used += bytes;
    return p;
}

static v4r_ad_tensor *push_node(v4r_ad_tape *tape, size_t rows, size_t cols)
{
    v4r_ad_tensor *t = v4r_ad_alloc(tape, sizeof *t);
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = cols;
    t->val = v4r_ad_alloc(tape, rows * cols * sizeof(float));
    v4r_grow((void **)&tape->nodes, &tape->cap_nodes, tape->n_nodes + 1, sizeof *tape->nodes);
    tape->nodes[tape->n_nodes++] = t;
    return t;
}

v4r_ad_tensor *v4r_ad_new(v4r_ad_tape *tape, size_t rows, size_t cols) { return push_node(tape, rows, cols); }

v4r_ad_tensor *v4r_ad_const(v4r_ad_tape *tape, size_t rows, size_t cols, const float *data)
{
    v4r_ad_tensor *t = v4r_ad_alloc(tape, sizeof *t);
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = cols;
    t->val = (float *)data; /* never written: constants have no backward and no gradient */
    return t;
}

v4r_ad_tensor *v4r_ad_node(v4r_ad_tape *tape, size_t rows, size_t cols, v4r_ad_backward_fn backward,
                           v4r_ad_tensor *a, v4r_ad_tensor *b, v4r_ad_tensor *c)
{
    v4r_ad_tensor *t = push_node(tape, rows, cols);
    t->in[0] = a;
    t->in[1] = b;
    t->in[2] = c;
    t->needs_grad = (a && a->needs_grad) || (b && b->needs_grad) || (c && c->needs_grad);
    t->backward = t->needs_grad ? backward : NULL;
    return t;
}

/* The smallest free pool block that holds bytes (the first of equals), or a new one. */
static float *pool_take(v4r_ad_tape *tape, size_t bytes)
{
    size_t best = tape->n_pool;
    for (size_t i = 0; i < tape->n_pool; i++)
        if (!tape->pool[i].used && tape->pool[i].size >= bytes &&
            (best == tape->n_pool || tape->pool[i].size < tape->pool[best].size))
            best = i;
    if (best == tape->n_pool) {
        tape->pool = v4r_realloc(tape->pool, (tape->n_pool + 1) * sizeof *tape->pool);
        tape->pool[tape->n_pool++] = (tape_chunk){chunk_alloc(bytes), bytes, 0};
    }
    tape->pool[best].used = 1;
    return (float *)tape->pool[best].base;
}

static void pool_give_back(v4r_ad_tape *tape, const float *grad)
{
    for (size_t i = 0; i < tape->n_pool; i++)
        if ((const float *)tape->pool[i].base == grad)
            tape->pool[i].used = 0;
}

float *v4r_ad_grad(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    if (!t->grad) {
        size_t bytes = t->rows * t->cols * sizeof(float);
        t->grad = bytes >= BIG ? pool_take(tape, bytes) : v4r_ad_alloc(tape, bytes);
        memset(t->grad, 0, bytes);
    }
    return t->grad;
}

void v4r_ad_check(int cond, const char *op, const v4r_ad_tensor *a, const v4r_ad_tensor *b)
{
    if (cond)
        return;
    fprintf(stderr, "vlm4rec: internal error: %s: shapes %zux%zu", op, a ? a->rows : 0, a ? a->cols : 0);
    if (b)
        fprintf(stderr, " and %zux%zu", b->rows, b->cols);
    fprintf(stderr, " do not agree\n");
    abort();
}

void v4r_ad_backward(v4r_ad_tape *tape, v4r_ad_tensor *loss)
{
    v4r_ad_check(loss->rows == 1 && loss->cols == 1, "backward (the loss must be 1x1)", loss, NULL);
    if (!loss->needs_grad)
        return;
    v4r_ad_grad(tape, loss)[0] += 1.0f;
    for (size_t i = tape->n_nodes; i-- > 0;) {
        v4r_ad_tensor *t = tape->nodes[i];
        if (t->backward && t->grad) {
            t->backward(tape, t);
            if (t->rows * t->cols * sizeof(float) >= BIG) /* nothing reads it any more */
                pool_give_back(tape, t->grad);
        }
    }
}

/* ---- reductions ---- */

enum { SUM_BLOCK = 256 };

void v4r_ad_colsum_acc(const float *x, size_t rows, size_t cols, float *out)
{
    size_t nb = (rows + SUM_BLOCK - 1) / SUM_BLOCK;
    if (nb <= 1) {
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                out[c] += x[r * cols + c];
        return;
    }
    float *part = v4r_calloc(nb * cols, sizeof *part);
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t b = 0; b < nb; b++) {
        size_t r1 = (b + 1) * SUM_BLOCK < rows ? (b + 1) * SUM_BLOCK : rows;
        float *p = part + b * cols;
        for (size_t r = b * SUM_BLOCK; r < r1; r++)
            for (size_t c = 0; c < cols; c++)
                p[c] += x[r * cols + c];
    }
    for (size_t b = 0; b < nb; b++)
        for (size_t c = 0; c < cols; c++)
            out[c] += part[b * cols + c];
    free(part);
}

void v4r_ad_reduce_acc(const float *g, size_t rows, size_t cols, float *dst, size_t xr, size_t xc)
{
    size_t n = rows * cols;
    if (xr == rows && xc == cols) {
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
        for (size_t i = 0; i < n; i++)
            dst[i] += g[i];
    } else if (xr == rows) { /* a column, repeated over the columns */
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
        for (size_t r = 0; r < rows; r++) {
            float s = 0;
            for (size_t c = 0; c < cols; c++)
                s += g[r * cols + c];
            dst[r] += s;
        }
    } else if (xc == cols) { /* a row, repeated over the rows */
        v4r_ad_colsum_acc(g, rows, cols, dst);
    } else { /* a scalar */
        float *col = v4r_calloc(cols, sizeof *col);
        v4r_ad_colsum_acc(g, rows, cols, col);
        float s = 0;
        for (size_t c = 0; c < cols; c++)
            s += col[c];
        dst[0] += s;
        free(col);
    }
}
