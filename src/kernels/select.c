/* Kernel choice: the CPU's AVX-512 support and VLM4REC_KERNEL (auto, blas, avx512). */
#include "vlm4rec/kernels.h"

#include <stdlib.h>
#include <string.h>

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
