/* text: the TF-IDF encoder, the offline fallback when no Sentence-BERT model is available —
 * hashed word unigrams, sublinear tf, smoothed idf, L2-normalized rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/text.h"

static int word_byte(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80; }

/* The buckets of a text's tokens, in order; returns the count (*out grows). */
static size_t token_buckets(const char *text, size_t dim, size_t **out, size_t *cap)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        if (!word_byte(*p)) {
            p++;
            continue;
        }
        uint64_t h = 1469598103934665603ull;
        for (; *p && word_byte(*p); p++) {
            unsigned char c = *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p + 32) : *p;
            h = (h ^ c) * 1099511628211ull;
        }
        v4r_grow((void **)out, cap, n + 1, sizeof **out);
        (*out)[n++] = (size_t)(h % dim);
    }
    return n;
}

/* Adds the text's term counts to row (dim floats); returns the distinct buckets into seen. */
static size_t count_terms(const char *text, size_t dim, float *row, size_t **buf, size_t *cap)
{
    size_t n = token_buckets(text, dim, buf, cap), distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (row[(*buf)[i]] == 0)
            (*buf)[distinct++] = (*buf)[i];
        row[(*buf)[i]] += 1;
    }
    return distinct;
}

int v4r_tfidf_encode(const char *const *texts, size_t n, size_t dim, float *out, v4r_err *err)
{
    if (dim == 0)
        return v4r_fail(err, V4R_EUSAGE, "tfidf: the dimension must be at least 1");
    double *df = v4r_calloc(dim, sizeof *df);
    size_t *buf = NULL, cap = 0;
    memset(out, 0, n * dim * sizeof *out);
    for (size_t t = 0; t < n; t++) {
        size_t distinct = count_terms(texts[t], dim, out + t * dim, &buf, &cap);
        for (size_t i = 0; i < distinct; i++)
            df[buf[i]] += 1;
    }
    for (size_t d = 0; d < dim; d++)
        df[d] = log((1.0 + (double)n) / (1.0 + df[d])) + 1.0; /* now the idf */
    for (size_t t = 0; t < n; t++) {
        float *row = out + t * dim;
        double norm = 0;
        for (size_t d = 0; d < dim; d++)
            if (row[d] > 0) {
                row[d] = (float)((1.0 + log(row[d])) * df[d]);
                norm += (double)row[d] * row[d];
            }
        if (norm > 0)
            for (size_t d = 0; d < dim; d++)
                row[d] = (float)(row[d] / sqrt(norm));
    }
    free(df);
    free(buf);
    return V4R_OK;
}
