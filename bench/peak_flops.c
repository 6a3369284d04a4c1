/* Measures this machine's peak float32 FLOP rate: independent AVX-512 (or AVX2) FMA chains on every
 * thread for a fixed time. Used by bench/encode.sh for "share of peak". Prints GFLOP/s.
 * `peak_flops fp16` and `peak_flops bf16` measure the same way the half-precision instructions the
 * encoder's --precision uses: vfmadd231ph (32 fp16 multiply-adds, 64 FLOPs) and vdpbf16ps (32 bf16
 * products summed pairwise into 16 floats, 64 FLOPs); 0 on a CPU without them.
 * `peak_flops tile` measures instead the rate of the encoder GEMM's 14 x 32 register tile (per depth
 * step: two vector loads, 14 broadcast loads, 28 FMAs) on operands that stay in L1: what a GEMM fed
 * from memory at that ratio of loads to FMAs can reach here, with no cache miss at all. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* 12 named accumulators so they stay in registers: 12 chains hide the FMA latency on 2 pipes */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
/* The body of a run: the chains made (INIT), stepped iters times (STEP) and summed (SUM) into s of
 * type sum_t (the caller defines INIT, STEP and SUM, and declares what SUM needs besides s). */
#define RUN_CHAINS(iters, sum_t)                                                                                  \
    CHAINS(INIT)                                                                                                   \
    for (long n = 0; n < (iters); n++) {                                                                           \
        CHAINS(STEP)                                                                                               \
    }                                                                                                              \
    sum_t s = 0;                                                                                                   \
    CHAINS(SUM)                                                                                                    \
    return s;

__attribute__((target("avx512f"))) static double run512(long iters)
{
    __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#define INIT(i) __m512 a##i = _mm512_set1_ps((float)i);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, b, c);
#define SUM(i) s += _mm512_reduce_add_ps(a##i);
    RUN_CHAINS(iters, float)
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
    float t[8];
    RUN_CHAINS(iters, float)
#undef INIT
#undef STEP
#undef SUM
}

/* The half-precision chains: the same 12 accumulators; 64 FLOPs an instruction. */
__attribute__((target("avx512fp16,avx512vl,avx512bw"))) static double run_fp16(long iters)
{
    __m512h b = _mm512_set1_ph((_Float16)0.999f), c = _mm512_set1_ph((_Float16)1e-3f);
#define INIT(i) __m512h a##i = _mm512_set1_ph((_Float16)i);
#define STEP(i) a##i = _mm512_fmadd_ph(a##i, b, c);
#define SUM(i) s += (double)_mm512_reduce_add_ph(a##i);
    RUN_CHAINS(iters, double)
#undef INIT
#undef STEP
#undef SUM
}

__attribute__((target("avx512bf16,avx512f"))) static double run_bf16(long iters)
{
    __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3380); /* 1, ~6e-8 */
#define INIT(i) __m512 a##i = _mm512_set1_ps((float)i);
#define STEP(i) a##i = _mm512_dpbf16_ps(a##i, b, c);
#define SUM(i) s += _mm512_reduce_add_ps(a##i);
    RUN_CHAINS(iters, float)
#undef INIT
#undef STEP
#undef SUM
}

static int run_half(int fp16)
{
    if (fp16 ? !__builtin_cpu_supports("avx512fp16") : !__builtin_cpu_supports("avx512bf16")) {
        printf("0\n");
        return 0;
    }
    long iters = 100000000;
    double sink = 0, t0 = now();
#pragma omp parallel reduction(+ : sink)
    sink += fp16 ? run_fp16(iters) : run_bf16(iters);
    double secs = now() - t0;
    double flops = (double)omp_get_max_threads() * (double)iters * 12 * 64;
    printf("%.1f\n", flops / secs / 1e9);
    return sink == 42.0;
}

/* The GEMM tile over TILE_PASSES x kc depth steps of a (kc x 14) and b (kc x 32) (the same slice
 * again each pass: it stays in L1), repeated; returns a sum. The sums are zeroed and reduced once a
 * repetition, every 2048 depth steps: work outside the tile's loop, kept rare so that it is not
 * what is timed. */
enum { TILE_MR = 14, TILE_KC = 128, TILE_PASSES = 16 };
__attribute__((target("avx512f"), noinline)) static float tile512(const float *a, const float *b, long reps)
{
    float s = 0;
    for (long n = 0; n < reps; n++) {
        __m512 c0[TILE_MR], c1[TILE_MR];
#pragma GCC unroll 14
        for (int r = 0; r < TILE_MR; r++)
            c0[r] = c1[r] = _mm512_setzero_ps();
        for (int pass = 0; pass < TILE_PASSES; pass++)
        for (int k = 0; k < TILE_KC; k++) {
            __m512 b0 = _mm512_load_ps(b + k * 32), b1 = _mm512_load_ps(b + k * 32 + 16);
#pragma GCC unroll 14
            for (int r = 0; r < TILE_MR; r++) {
                __m512 av = _mm512_set1_ps(a[k * TILE_MR + r]);
                c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
            }
        }
#pragma GCC unroll 14
        for (int r = 0; r < TILE_MR; r++)
            s += _mm512_reduce_add_ps(_mm512_add_ps(c0[r], c1[r]));
    }
    return s;
}

static int run_tile(void)
{
    if (!__builtin_cpu_supports("avx512f")) {
        printf("0\n"); /* the tile is the AVX-512 kernel's */
        return 0;
    }
    long reps = 1000000 / TILE_PASSES;
    double sink = 0, t0 = now();
#pragma omp parallel reduction(+ : sink)
    {
        static float a[TILE_KC * TILE_MR] __attribute__((aligned(64))), b[TILE_KC * 32] __attribute__((aligned(64)));
        sink += tile512(a, b, reps);
    }
    double secs = now() - t0;
    double flops = (double)omp_get_max_threads() * (double)reps * TILE_PASSES * TILE_KC * TILE_MR * 32 * 2;
    printf("%.1f\n", flops / secs / 1e9);
    return sink == 42.0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "tile") == 0)
        return run_tile();
    if (argc > 1 && (strcmp(argv[1], "fp16") == 0 || strcmp(argv[1], "bf16") == 0))
        return run_half(strcmp(argv[1], "fp16") == 0);
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
