/* Row operations with a fixed summation order (LayerNorm, softmax) and activations: portable C
 * (AVX2 exp and GELU where the build has it), dispatching to the AVX-512 versions when asked. */
#include "internal.h"
#include "vmath_avx2.h"

#include <math.h>
#include <string.h>

/* Applies f8 to x[0..n) 8 at a time; the tail goes through a padded copy, so every element gets
 * the same arithmetic wherever it sits. */
#ifdef V4R_HAVE_AVX2
static void map8(float *x, size_t n, __m256 (*f8)(__m256))
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, f8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof *t);
        _mm256_storeu_ps(t, f8(_mm256_loadu_ps(t)));
        memcpy(x + i, t, (n - i) * sizeof *t);
    }
}
#endif

/* Sum of x[0..n) in 16 lanes (lane l takes x[l], x[l+16], ...), then the lanes pairwise, then the
 * tail: the same order whatever the vector width the compiler picks. */
static float sum16(const float *x, size_t n)
{
    float s[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++)
            s[l] += x[i + l];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            s[l] += s[l + w];
    float t = s[0];
    for (; i < n; i++)
        t += x[i];
    return t;
}

/* Sum of (x - m)^2 in the same order as sum16. */
static float sumsq16(const float *x, size_t n, float m)
{
    float s[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            float d = x[i + l] - m;
            s[l] += d * d;
        }
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            s[l] += s[l + w];
    float t = s[0];
    for (; i < n; i++) {
        float d = x[i] - m;
        t += d * d;
    }
    return t;
}

static void layernorm_row(float *x, size_t n, const float *gamma, const float *beta, float eps)
{
    float mean = sum16(x, n) / (float)n;
    float var = sumsq16(x, n, mean) / (float)n;
    float rstd = 1.0f / sqrtf(var + eps);
    for (size_t i = 0; i < n; i++)
        x[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
}

void v4r_layernorm_rows(float *x, size_t rows, size_t n, const v4r_norm *norm)
{
    for (size_t r = 0; r < rows; r++)
        layernorm_row(x + r * n, n, norm->gamma, norm->beta, norm->eps);
}

void v4r_layernorm(float *x, size_t rows, size_t n, const float *gamma, const float *beta, float eps)
{
#pragma omp parallel for schedule(static) if (rows * n > 32768)
    for (size_t r = 0; r < rows; r++)
        layernorm_row(x + r * n, n, gamma, beta, eps);
}

static void softmax_ref(float *x, size_t n, const uint8_t *mask)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if ((!mask || mask[i]) && x[i] > mx)
            mx = x[i];
    if (mx == -INFINITY) {
        for (size_t i = 0; i < n; i++)
            x[i] = 0;
        return;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = !mask || mask[i] ? x[i] - mx : -INFINITY;
#ifdef V4R_HAVE_AVX2
    map8(x, n, v4r_exp8); /* exp(-inf) = 0 */
#else
    for (size_t i = 0; i < n; i++)
        x[i] = expf(x[i]);
#endif
    float inv = 1.0f / sum16(x, n);
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

void v4r_softmax(float *x, size_t n, const uint8_t *mask, int kernel)
{
    if (kernel == V4R_KERNEL_AVX512)
        v4r_avx512_softmax(x, n, mask);
    else
        softmax_ref(x, n, mask);
}

float v4r_gelu_ref(float x) { return x * 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)); }

float v4r_gelu_tanh_ref(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

float v4r_quick_gelu_ref(float x) { return x * (1.0f / (1.0f + expf(-1.702f * x))); }

#ifdef V4R_HAVE_AVX2
static __m256 quick_gelu8(__m256 x) { return v4r_quick_gelu8(x); }
#endif

static void quick_gelu(float *x, size_t n)
{
#ifdef V4R_HAVE_AVX2
    map8(x, n, quick_gelu8);
#else
    for (size_t i = 0; i < n; i++)
        x[i] = v4r_quick_gelu_ref(x[i]);
#endif
}

static void gelu(float *x, size_t n)
{
#ifdef V4R_HAVE_AVX2
    map8(x, n, v4r_gelu8);
#else
    for (size_t i = 0; i < n; i++)
        x[i] = v4r_gelu_ref(x[i]);
#endif
}

void v4r_activate_generic(float *x, size_t n, int act)
{
    if (act == V4R_ACT_GELU)
        gelu(x, n);
    else if (act == V4R_ACT_GELU_TANH)
        for (size_t i = 0; i < n; i++)
            x[i] = v4r_gelu_tanh_ref(x[i]);
    else if (act == V4R_ACT_RELU)
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > 0 ? x[i] : 0.0f;
    else if (act == V4R_ACT_QUICK_GELU)
        quick_gelu(x, n);
}

int v4r_act_by_name(const char *name)
{
    if (!strcmp(name, "quick_gelu"))
        return V4R_ACT_QUICK_GELU;
    if (!strcmp(name, "gelu") || !strcmp(name, "gelu_python"))
        return V4R_ACT_GELU;
    if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_fast"))
        return V4R_ACT_GELU_TANH;
    if (!strcmp(name, "relu"))
        return V4R_ACT_RELU;
    return -1;
}

void v4r_activate(float *x, size_t n, int act, int kernel)
{
    if (kernel == V4R_KERNEL_AVX512)
        v4r_avx512_activate(x, n, act);
    else
        v4r_activate_generic(x, n, act);
}
