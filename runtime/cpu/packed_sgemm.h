// Owns troupe's f32 matrix product on AVX-512: B packed once per call, an 8 x 32 register micro-kernel.
//
// Why not OpenBLAS alone: troupe cuts every product into fixed 128-row BLAS calls so that an element's
// rounding does not depend on the thread count or on how a batch is cut into micro-batches (BLAS picks its
// kernel by the call's shape), and each of those calls packs the whole of B again: about 15% of the GPT's
// step went to OpenBLAS's packing routines. Here B is packed once per product and shared by the threads,
// and every output element is summed by the same code whatever the shape: its terms added in k order into
// one register accumulator, in chunks of kPackedKc (a chunk's sum is added to c, chunks in order). So an
// element's bits depend on its row of op(a), its column of op(b), k, alpha and beta only: not on m, n, the
// thread count, or which other rows share the call.
#pragma once

#include <cstdint>

#include "runtime/thread_pool.h"

namespace troupe {

// Terms of k summed in one register accumulator before the chunk's sum is added to c.
inline constexpr std::int64_t kPackedKc = 256;

// Whether this CPU (cpuid) and its OS (saved zmm state) can run AVX-512F.
bool cpu_has_avx512f();

// Columns of op(b) per panel of the packed layout.
inline constexpr std::int64_t kPackedNr = 32;

// Floats of op(b) (k x n) packed: panels of kPackedNr columns, the last one zero-padded.
inline std::int64_t packed_b_floats(std::int64_t k, std::int64_t n) {
  return (n + kPackedNr - 1) / kPackedNr * kPackedNr * k;
}

// Which code runs the CPU backend's f32 products: packed_sgemm below, or OpenBLAS's sgemm in fixed blocks.
enum class F32Kernel { packed, blas };

// packed where the CPU has AVX-512F, else blas.
inline F32Kernel best_f32_kernel() { return cpu_has_avx512f() ? F32Kernel::packed : F32Kernel::blas; }

// c[m, n] = alpha * op(a) @ op(b) + beta * c, row major (c is not read when beta is 0), over the pool.
// op(a) is a (m x k, row stride lda) or a transposed (a stored k x m); likewise op(b) is k x n.
// Needs cpu_has_avx512f().
void packed_sgemm(ThreadPool& pool, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                  float* c, std::int64_t ldc);

// packed_sgemm with op(b) already packed by the caller (who can write it straight from where its values
// lie, as the lowered convolutions do): element p of column j of op(b) at
// packed_b[((j / kPackedNr) * k + p) * kPackedNr + j % kPackedNr], zero in the columns past n of the
// last panel. Every element's bits are those packed_sgemm gives.
void packed_sgemm_prepacked(ThreadPool& pool, bool trans_a, std::int64_t m, std::int64_t n, std::int64_t k,
                            float alpha, const float* a, std::int64_t lda, const float* packed_b, float beta, float* c,
                            std::int64_t ldc);

// packed_sgemm_prepacked on the calling thread alone, same bits: for callers that split their work over
// the pool themselves (one barrier per call rather than one per product).
void packed_sgemm_prepacked_serial(bool trans_a, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                                   const float* a, std::int64_t lda, const float* packed_b, float beta, float* c,
                                   std::int64_t ldc);

}  // namespace troupe
