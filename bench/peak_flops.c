/* Measures this machine's peak float32 FLOP rate: independent AVX-512 (or AVX2) FMA chains on every
 * thread for a fixed time. Used by bench/encode.sh for "share of peak". Prints GFLOP/s. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* 12 named accumulators so they stay in registers: 12 chains hide the FMA latency on 2 pipes */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx512f"))) static double run512(long iters)
{
    __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#define INIT(i) __m512 a##i = _mm512_set1_ps((float)i);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, b, c);
#define SUM(i) s += _mm512_reduce_add_ps(a##i);
    CHAINS(INIT)
    for (long n = 0; n < iters; n++) {
        CHAINS(STEP)
    }
    float s = 0;
    CHAINS(SUM)
    return s;
#undef INIT
#undef STEP
#undef SUM
}

static double run256(long iters)
{
    __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
#define INIT(i) __m256 a##i = _mm256_set1_ps((float)i);
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
#define SUM(i) _mm256_storeu_ps(t, a##i); for (int j = 0; j < 8; j++) s += t[j];
    CHAINS(INIT)
    for (long n = 0; n < iters; n++) {
        CHAINS(STEP)
    }
    float s = 0, t[8];
    CHAINS(SUM)
    return s;
}

int main(void)
{
    int wide = __builtin_cpu_supports("avx512f");
    long iters = 200000000;
    double sink = 0, t0 = now();
#pragma omp parallel reduction(+ : sink)
    sink += wide ? run512(iters) : run256(iters);
    double secs = now() - t0, lanes = wide ? 16 : 8;
    double flops = (double)omp_get_max_threads() * (double)iters * 12 * lanes * 2;
    printf("%.1f\n", flops / secs / 1e9);
    return sink == 42.0; /* keeps the chains alive */
}
