// Owns the CPU's bf16 matrix product: f32 operands rounded to bf16, products summed in f32.
//
// This is the arithmetic of torch.autocast(device_type="cpu", dtype=torch.bfloat16) for a Linear layer's
// products: each operand is rounded to bf16 (round to nearest, ties to even, as c10::BFloat16), the
// product of two bf16 values is exact in f32, and the sum runs in f32. Two implementations:
//  - avx512: the AVX512-BF16 instruction vdpbf16ps (two bf16 products added into an f32 lane per
//    instruction). B is packed once per call into bf16 pairs along k (the layout vdpbf16ps reads), A is
//    rounded into a bf16 copy; every output element is one register accumulator running over k in order,
//    so a row's result depends neither on the other rows in the call nor on the thread count.
//  - portable: the operands rounded into f32 copies, then the f32 sgemm. Same rounding, f32 sums in
//    OpenBLAS's order; for CPUs without AVX512-BF16 (cpu_has_avx512_bf16() says which).
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

#include "runtime/thread_pool.h"

namespace troupe {

// The bf16 bit pattern nearest to x (ties to even); NaN becomes the quiet NaN 0x7fc0, as c10::BFloat16.
inline std::uint16_t bf16_bits(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// x rounded to bf16, as an f32.
inline float round_to_bf16(float x) { return std::bit_cast<float>(static_cast<std::uint32_t>(bf16_bits(x)) << 16); }

// Whether this CPU (cpuid) and its OS (saved zmm state) can run AVX512-BF16 instructions.
bool cpu_has_avx512_bf16();

// x (rows x cols, leading dimension ld) rounded to bf16, as a dense f32 copy (rows x cols), over the pool.
std::vector<float> bf16_rounded_copy(ThreadPool& pool, const float* x, std::int64_t rows, std::int64_t cols,
                                     std::int64_t ld);

enum class Bf16Kernel { avx512, portable };

// avx512 where the CPU has it, else portable.
Bf16Kernel best_bf16_kernel();

// c[m, n] = alpha * op(a) @ op(b) + beta * c (row major; c is overwritten when beta is 0) with a and b
// rounded to bf16, over the pool. kernel = avx512 needs cpu_has_avx512_bf16().
// `f32_gemm` is the product the portable kernel calls on its rounded copies (the caller's threaded sgemm).
using F32Gemm = void (*)(void* ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                         float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                         float* c, std::int64_t ldc);
void gemm_bf16(Bf16Kernel kernel, ThreadPool& pool, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
               std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
               float beta, float* c, std::int64_t ldc, F32Gemm f32_gemm, void* f32_ctx);

}  // namespace troupe
