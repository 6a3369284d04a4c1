/* Kernel choice: the CPU's AVX-512 support and VLM4REC_KERNEL (auto, blas, avx512); the bf16
 * engine: AVX512_BF16 and AMX from cpuid, the OS's grant of the tile state, VLM4REC_BF16; the fp16
 * engine: AVX512_FP16 from cpuid, VLM4REC_FP16 (auto, none). */
#include "vlm4rec/kernels.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define V4R_X86 1
#endif

int v4r_cpu_has_avx512(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

int v4r_kernel_pick(int *kernel, v4r_err *err)
{
    const char *k = getenv("VLM4REC_KERNEL");
    int have = v4r_cpu_has_avx512();
    *kernel = V4R_KERNEL_BLAS;
    if (!k || !*k || !strcmp(k, "auto")) {
        *kernel = have ? V4R_KERNEL_AVX512 : V4R_KERNEL_BLAS;
    } else if (!strcmp(k, "avx512")) {
        if (!have)
            return v4r_fail(err, V4R_EUSAGE,
                            "VLM4REC_KERNEL=avx512, but this CPU lacks AVX-512 (F, VL, BW, DQ); use blas or auto");
        *kernel = V4R_KERNEL_AVX512;
    } else if (strcmp(k, "blas") != 0) {
        return v4r_fail(err, V4R_EUSAGE, "VLM4REC_KERNEL='%s' is not one of auto, blas, avx512", k);
    }
    return V4R_OK;
}

const char *v4r_kernel_name(int kernel) { return kernel == V4R_KERNEL_AVX512 ? "avx512" : "blas"; }

/* Bit `bit` of register reg (0 EAX .. 3 EDX) of cpuid leaf 7, subleaf sub, on a CPU with AVX-512;
 * 0 elsewhere. */
static int avx512_and_leaf7_bit(unsigned sub, int reg, int bit)
{
#ifdef V4R_X86
    unsigned r[4];
    if (!v4r_cpu_has_avx512() || !__get_cpuid_count(7, sub, &r[0], &r[1], &r[2], &r[3]))
        return 0;
    return (r[reg] >> bit) & 1u;
#else
    (void)sub, (void)reg, (void)bit;
    return 0;
#endif
}

int v4r_cpu_has_avx512_bf16(void) { return avx512_and_leaf7_bit(1, 0, 5); } /* EAX bit 5 */

#ifdef V4R_X86
/* XCR0: the OS saves the tile configuration and data (bits 17, 18). */
static int os_saves_tiles(void)
{
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) /* OSXSAVE */
        return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & (3u << 17)) == (3u << 17);
}

/* Linux keeps the tile data off until a process asks (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). */
static int amx_granted(void)
{
    static int granted = -1;
    int g = __atomic_load_n(&granted, __ATOMIC_ACQUIRE);
    if (g < 0) {
        g = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
        __atomic_store_n(&granted, g, __ATOMIC_RELEASE);
    }
    return g;
}
#endif

int v4r_cpu_has_amx_bf16(void)
{
#ifdef V4R_X86
    unsigned a, b, c, d;
    if (!v4r_cpu_has_avx512_bf16() || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    if (!((d >> 22) & 1u) || !((d >> 24) & 1u) || !os_saves_tiles())
        return 0;
    return amx_granted();
#else
    return 0;
#endif
}

int v4r_bf16_pick(int *engine, v4r_err *err)
{
    const char *k = getenv("VLM4REC_BF16");
    *engine = V4R_BF16_NONE;
    if (!k || !*k || !strcmp(k, "auto"))
        *engine = v4r_cpu_has_amx_bf16() ? V4R_BF16_AMX : v4r_cpu_has_avx512_bf16() ? V4R_BF16_AVX512 : V4R_BF16_NONE;
    else if (!strcmp(k, "avx512"))
        *engine = v4r_cpu_has_avx512_bf16() ? V4R_BF16_AVX512 : V4R_BF16_NONE;
    else if (!strcmp(k, "amx"))
        *engine = v4r_cpu_has_amx_bf16() ? V4R_BF16_AMX : V4R_BF16_NONE;
    else if (strcmp(k, "none") != 0)
        return v4r_fail(err, V4R_EUSAGE, "VLM4REC_BF16='%s' is not one of auto, amx, avx512, none", k);
    return V4R_OK;
}

int v4r_cpu_has_avx512_fp16(void) { return avx512_and_leaf7_bit(0, 3, 23); } /* EDX bit 23 */

static const char *const PRECISION_NAMES[] = {"fp32", "bf16", "fp16"};

const char *v4r_precision_name(int precision)
{
    return precision >= 0 && precision <= V4R_PREC_FP16 ? PRECISION_NAMES[precision] : "?";
}

int v4r_precision_by_name(const char *name)
{
    for (int p = 0; p <= V4R_PREC_FP16; p++)
        if (!strcmp(name, PRECISION_NAMES[p]))
            return p;
    return -1;
}

int v4r_half_pick(int precision, int *engine, v4r_err *err)
{
    *engine = V4R_BF16_NONE;
    if (precision == V4R_PREC_BF16)
        return v4r_bf16_pick(engine, err);
    if (precision != V4R_PREC_FP16)
        return V4R_OK;
    const char *k = getenv("VLM4REC_FP16");
    if (k && *k && strcmp(k, "auto") && strcmp(k, "none"))
        return v4r_fail(err, V4R_EUSAGE, "VLM4REC_FP16='%s' is not one of auto, none", k);
    if ((!k || strcmp(k, "none")) && v4r_cpu_has_avx512_fp16())
        *engine = V4R_FP16_AVX512;
    return V4R_OK;
}

const char *v4r_bf16_name(int engine)
{
    return engine == V4R_BF16_AMX      ? "amx"
           : engine == V4R_BF16_AVX512 ? "avx512_bf16"
           : engine == V4R_FP16_AVX512 ? "avx512_fp16"
                                       : "none";
}
