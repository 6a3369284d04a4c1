/* tokenizer Unicode: strict UTF-8 decoding, character classes and the BertNormalizer. The classes,
 * the nonspacing marks, which characters NFD changes and the lowercase map are the reference
 * tokenizer's own (tokenizer_unicode_tables.h, generated from its behaviour); utf8proc supplies the
 * decompositions and combining classes of those characters, and \w for added tokens. */
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_internal.h"

typedef struct {
    int32_t first, last;
} v4r_uc_range;

typedef struct {
    int32_t first, last, delta, step;
} v4r_uc_lower_run;

#include "tokenizer_unicode_tables.h"

#define N_OF(a) (sizeof(a) / sizeof *(a))

/* Whether cp lies in one of the sorted, disjoint ranges r[0..n). */
static int in_ranges(const v4r_uc_range *r, size_t n, int32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first)
            hi = mid;
        else if (cp > r[mid].last)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

#define IN_TABLE(table, cp) in_ranges(table, N_OF(table), cp)

/* ---- UTF-8 ---- */

/* Decodes one multi-byte sequence at s[i] (lead byte c >= 0x80). Returns its length or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t i, int32_t *cp, const char **why)
{
    unsigned c = s[i];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    static const int32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < 0xC0 || c > 0xF7) {
        *why = c < 0xC0 ? "unexpected continuation byte" : "invalid byte";
        return 0;
    }
    int32_t v = (int32_t)(c & (0x7F >> need));
    for (size_t k = 1; k < need; k++) {
        if (i + k >= len || (s[i + k] & 0xC0) != 0x80) {
            *why = "truncated sequence";
            return 0;
        }
        v = v << 6 | (s[i + k] & 0x3F);
    }
    if (v < min_cp[need])
        *why = "overlong encoding";
    else if (v >= 0xD800 && v <= 0xDFFF)
        *why = "encoded surrogate";
    else if (v > 0x10FFFF)
        *why = "code point above U+10FFFF";
    else {
        *cp = v;
        return need;
    }
    return 0;
}

int v4r_utf8_decode(const char *str, size_t len, int32_t *cps, size_t *n, size_t *bad_at, const char **why)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, o = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            cps[o++] = s[i++];
            continue;
        }
        size_t k = utf8_seq(s, len, i, &cps[o], why);
        if (!k) {
            *bad_at = i;
            return -1;
        }
        o++;
        i += k;
    }
    *n = o;
    return 0;
}

size_t v4r_utf8_put(int32_t cp, char *out)
{
    unsigned u = (unsigned)cp;
    if (u < 0x80) {
        out[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        out[0] = (char)(0xC0 | u >> 6);
        out[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        out[0] = (char)(0xE0 | u >> 12);
        out[1] = (char)(0x80 | (u >> 6 & 0x3F));
        out[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | u >> 18);
    out[1] = (char)(0x80 | (u >> 12 & 0x3F));
    out[2] = (char)(0x80 | (u >> 6 & 0x3F));
    out[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

/* ---- character classes ---- */

int v4r_uc_is_whitespace(int32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return IN_TABLE(ref_whitespace, cp);
}

int v4r_uc_is_control(int32_t cp)
{
    if (cp < 0x80)
        return (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F;
    return IN_TABLE(ref_removed, cp);
}

int v4r_uc_is_chinese(int32_t cp) { return cp >= 0x3400 && IN_TABLE(ref_chinese, cp); }

int v4r_uc_is_punct(int32_t cp)
{
    if (cp < 0x80)
        return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
    return IN_TABLE(ref_punct, cp);
}

int v4r_uc_is_word(int32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200C || cp == 0x200D)
        return 1;
    utf8proc_category_t c = utf8proc_category(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_NL) || c == UTF8PROC_CATEGORY_PC;
}

/* ---- BertNormalizer ---- */

void v4r_cpvec_reserve(v4r_cpvec *a, size_t extra)
{
    if (a->n + extra > a->cap)
        v4r_grow((void **)&a->v, &a->cap, a->n + extra, sizeof *a->v);
}

/* clean_text and handle_chinese_chars: in -> out. */
static void clean_and_space(const v4r_tokenizer *t, const int32_t *in, size_t n, v4r_cpvec *out)
{
    out->n = 0;
    v4r_cpvec_reserve(out, 3 * n);
    int32_t *o = out->v;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = in[i];
        if (t->clean_text) {
            if (c == 0 || c == 0xFFFD || v4r_uc_is_control(c))
                continue;
            if (v4r_uc_is_whitespace(c))
                c = ' ';
        }
        if (t->chinese && c >= 0x3400 && v4r_uc_is_chinese(c)) {
            o[k++] = ' ';
            o[k++] = c;
            o[k++] = ' ';
        } else {
            o[k++] = c;
        }
    }
    out->n = k;
}

/* The combining class, 0 for characters the reference's tables give none. */
static int combining_class(int32_t cp)
{
    return IN_TABLE(ref_ccc, cp) ? utf8proc_get_property(cp)->combining_class : 0;
}

/* Canonical ordering: stable sort of each run of non-starters by combining class. */
static void canonical_order(int32_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (v[i] < 0x300)
            continue;
        int ccc = combining_class(v[i]);
        if (ccc == 0)
            continue;
        int32_t c = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] >= 0x300 && combining_class(v[j - 1]) > ccc) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = c;
    }
}

/* strip_accents: NFD, then drop the nonspacing marks (Mn). in -> out. */
static void strip_accents(const int32_t *in, size_t n, v4r_cpvec *out)
{
    out->n = 0;
    v4r_cpvec_reserve(out, n + 16);
    int any_high = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = in[i], buf[32];
        if (c < 0xC0 || !IN_TABLE(ref_decomposes, c)) {
            out->v[out->n++] = c;
            any_high |= c >= 0x300;
            continue;
        }
        utf8proc_ssize_t k = utf8proc_decompose_char(c, buf, 32, UTF8PROC_DECOMPOSE, NULL);
        if (k < 1 || k > 32) {
            buf[0] = c;
            k = 1;
        }
        v4r_cpvec_reserve(out, (size_t)k + n - i);
        memcpy(out->v + out->n, buf, (size_t)k * sizeof *buf);
        out->n += (size_t)k;
        any_high = 1;
    }
    if (!any_high)
        return;
    canonical_order(out->v, out->n);
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i] < 0x300 || !IN_TABLE(ref_nonspacing, out->v[i]))
            out->v[k++] = out->v[i];
    out->n = k;
}

/* Rust's char::to_lowercase of cp other than U+0130: the run holding it, if any. */
static int32_t to_lower(int32_t cp)
{
    size_t lo = 0, hi = N_OF(ref_lower);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const v4r_uc_lower_run *r = &ref_lower[mid];
        if (cp < r->first)
            hi = mid;
        else if (cp > r->last)
            lo = mid + 1;
        else
            return (cp - r->first) % r->step ? cp : cp + r->delta;
    }
    return cp;
}

/* lowercase (Rust's char::to_lowercase: the simple mapping, and U+0130 -> i U+0307). in -> out. */
static void lowercase(const int32_t *in, size_t n, v4r_cpvec *out)
{
    out->n = 0;
    v4r_cpvec_reserve(out, n + 1);
    for (size_t i = 0; i < n; i++) {
        int32_t c = in[i];
        if (c < 0x80) {
            out->v[out->n++] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        } else if (c == 0x130) {
            v4r_cpvec_reserve(out, n - i + 1);
            out->v[out->n++] = 'i';
            out->v[out->n++] = 0x307;
        } else {
            out->v[out->n++] = to_lower(c);
        }
    }
}

static void swap_vec(v4r_cpvec *a, v4r_cpvec *b)
{
    v4r_cpvec t = *a;
    *a = *b;
    *b = t;
}

void v4r_normalize(const v4r_tokenizer *t, const int32_t *in, size_t n, v4r_cpvec *out, v4r_cpvec *tmp)
{
    clean_and_space(t, in, n, out);
    if (t->strip_accents) {
        strip_accents(out->v, out->n, tmp);
        swap_vec(out, tmp);
    }
    if (t->lowercase) {
        lowercase(out->v, out->n, tmp);
        swap_vec(out, tmp);
    }
}
