// Owns the CUDA kernel launchers: plain functions over raw device pointers, queued on a stream (a C++17 header).
//
// CudaBackend (C++20, compiled by the host compiler) checks shapes and calls these; the kernels
// themselves live in the .cu files beside this header, compiled by nvcc, which sees no troupe header
// beyond this one and optim_scalars.h. Every launcher returns at once; errors of a launch are reported by
// the next checked CUDA call. Sizes are element counts; "rows x cols" means row-major.
//
// Parameter-gradient reductions (bias, LayerNorm weights, embedding rows) are deterministic run to run
// (no atomics): column sums add rows in fixed chunks of kRowChunk, each in row order, then the chunks in
// order (a workspace of column_sum_partials() floats holds the chunk sums); embedding rows are added in
// row order, as the CPU does.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/optim_scalars.h"

namespace troupe::cuda {

using i64 = std::int64_t;
using bf16_bits = std::uint16_t;  // __nv_bfloat16's bits on the host side

// Elementwise (cuda_elementwise.cu).
void fill(float* p, float value, i64 n, cudaStream_t s);
void gelu_forward(const float* x, float* y, i64 n, cudaStream_t s);
void gelu_backward(const float* x, const float* dy, float* dx, i64 n, cudaStream_t s);
void relu_forward(const float* x, float* y, i64 n, cudaStream_t s);
void relu_backward(const float* y, const float* dy, float* dx, i64 n, cudaStream_t s);
void add(const float* a, const float* b, float* out, i64 n, cudaStream_t s);  // out may alias a or b
void scale(float* x, float factor, i64 n, cudaStream_t s);
void f32_to_bf16(const float* x, bf16_bits* y, i64 n, cudaStream_t s);  // round to nearest even
void bf16_to_f32(const bf16_bits* x, float* y, i64 n, cudaStream_t s);
// y[r, c] += bias[c] for y f32 or bf16.
void add_bias(float* y, const float* bias, i64 rows, i64 cols, cudaStream_t s);
void add_bias(bf16_bits* y, const float* bias, i64 rows, i64 cols, cudaStream_t s);
// Rows per chunk of a column sum, and the floats of workspace one column sum needs.
constexpr i64 kRowChunk = 128;
inline i64 column_sum_partials(i64 rows, i64 cols) { return (rows + kRowChunk - 1) / kRowChunk * cols; }
// dbias[c] += sum over rows of dy[r, c]; `partials` holds column_sum_partials(rows, cols) floats.
void column_sum_add(const float* dy, float* dbias, i64 rows, i64 cols, float* partials, cudaStream_t s);
void column_sum_add(const bf16_bits* dy, float* dbias, i64 rows, i64 cols, float* partials, cudaStream_t s);
// y[i] = table[ids[i]]; an id outside [0, vocab) sets *bad to 1 + its position (first writer wins).
void embedding_forward(const std::int32_t* ids, const float* table, float* y, i64 n, i64 cols, i64 vocab,
                       i64* bad, cudaStream_t s);
// dtable[ids[i]] += dy[i], in order of i for each table row (the CPU's order): the ids are stably sorted
// (their positions with them), then one thread per (table row, column) adds that row's contributions.
// Ids outside [0, vocab) are skipped. `workspace` holds embedding_backward_workspace(n) bytes.
std::size_t embedding_backward_workspace(i64 n);
void embedding_backward(const std::int32_t* ids, const float* dy, float* dtable, i64 n, i64 cols, i64 vocab,
                        void* workspace, cudaStream_t s);

// Row-wise normalisations (cuda_norm.cu).
void softmax_forward(const float* x, float* y, i64 rows, i64 cols, cudaStream_t s);
void softmax_backward(const float* y, const float* dy, float* dx, i64 rows, i64 cols, cudaStream_t s);
void layernorm_forward(const float* x, const float* w, const float* b, float eps, float* y, float* mean, float* rstd,
                       i64 rows, i64 cols, cudaStream_t s);
// dx overwritten; dw, db accumulated; `partials` holds 2 * column_sum_partials(rows, cols) floats.
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                        float* dx, float* dw, float* db, i64 rows, i64 cols, float* partials, cudaStream_t s);

// Attention and loss pieces (cuda_attention.cu); the products around them go through cuBLAS.
// p[bh, t, :] = softmax over j <= t of p[bh, t, j] * scale, zeros for j > t (in place).
void causal_softmax(float* p, i64 batch_heads, i64 t, float scale, cudaStream_t s);
// ds = p * (dp - rowsum(p * dp)) * scale over j <= t, zeros after (in place on dp).
void causal_softmax_backward(const float* p, float* dp, i64 batch_heads, i64 t, float scale, cudaStream_t s);
// Per row: probs = softmax(logits) (probs may alias logits), losses = logsumexp - logit[target]. A target
// outside [0, vocab) sets *bad to 1 + its row.
void cross_entropy_forward(const float* logits, const std::int32_t* targets, float* probs, float* losses, i64 rows,
                           i64 vocab, i64* bad, cudaStream_t s);
void cross_entropy_backward(const float* probs, const std::int32_t* targets, float scale, float* dlogits, i64 rows,
                            i64 vocab, cudaStream_t s);

// Optimizer updates and gradient norms (cuda_optim.cu): runtime/optim's formulas, op for op, with no
// fused multiply-add (each PyTorch op rounds once), so they match the CPU's results.
void adam_update(float* w, const float* g, float* m, float* v, i64 n, const AdamStep& k, cudaStream_t s);
// buf is used (and may be null otherwise) only when k.momentum.
void sgd_update(float* w, const float* g, float* buf, i64 n, const SgdStep& k, cudaStream_t s);
// grad_avg used when k.centered, buf when k.momentum.
void rmsprop_update(float* w, const float* g, float* square_avg, float* grad_avg, float* buf, i64 n,
                    const RmspropStep& k, cudaStream_t s);
// *out = sum of x[i]^2 in double (deterministic two-pass reduction; `partials` holds 1024 doubles).
void sum_squares(const float* x, i64 n, double* partials, double* out, cudaStream_t s);

}  // namespace troupe::cuda
