// The function attributes of the AVX-512 kernels. The *_avx512.cpp files
// compile for the baseline ISA and mark their kernels with these; callers
// run them only where the CPU has the instructions. *_KERNEL: a kernel;
// the others: helpers inlined into the kernels (a helper's target must be
// a subset of its caller's).
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#define FUSEDRNN_AVX512 __attribute__((target("avx512f"), always_inline)) inline
#define FUSEDRNN_AVX512_KERNEL __attribute__((target("avx512f")))
#define FUSEDRNN_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bf16"), always_inline)) inline
#define FUSEDRNN_AVX512_BF16_KERNEL \
  __attribute__((target("avx512f,avx512bf16")))
#define FUSEDRNN_AVX512_BF16_BW \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif
