// CUDA elementwise kernels: fill, GELU, ReLU, add, scale, casts, bias, column sums, embedding forward.
#include <cuda_bf16.h>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace troupe::cuda {

namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoef = 0.044715f;

__device__ inline float load(const float* p, i64 i) { return p[i]; }
__device__ inline float load(const bf16_bits* p, i64 i) {
  return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[i]);
}

__global__ void fill_kernel(float* p, float v, i64 n) { TROUPE_GRID_STRIDE(i, n) p[i] = v; }

__global__ void gelu_kernel(const float* x, float* y, i64 n) {
  TROUPE_GRID_STRIDE(i, n) {
    const float v = x[i];
    const float u = kSqrt2OverPi * (v + kGeluCoef * v * v * v);
    y[i] = 0.5f * v * (1.0f + tanhf(u));
  }
}

__global__ void gelu_backward_kernel(const float* x, const float* dy, float* dx, i64 n) {
  TROUPE_GRID_STRIDE(i, n) {
    const float v = x[i];
    const float u = kSqrt2OverPi * (v + kGeluCoef * v * v * v);
    const float t = tanhf(u);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCoef * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
  }
}

__global__ void relu_kernel(const float* x, float* y, i64 n) { TROUPE_GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f; }

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, i64 n) {
  TROUPE_GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void add_kernel(const float* a, const float* b, float* out, i64 n) {
  TROUPE_GRID_STRIDE(i, n) out[i] = __fadd_rn(a[i], b[i]);
}

__global__ void scale_kernel(float* x, float f, i64 n) { TROUPE_GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], f); }

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, i64 n) { TROUPE_GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]); }

__global__ void to_f32_kernel(const __nv_bfloat16* x, float* y, i64 n) { TROUPE_GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]); }

__global__ void add_bias_kernel(float* y, const float* bias, i64 rows, i64 cols) {
  TROUPE_GRID_STRIDE(i, rows * cols) y[i] = __fadd_rn(y[i], bias[i % cols]);
}

__global__ void add_bias_bf16_kernel(__nv_bfloat16* y, const float* bias, i64 rows, i64 cols) {
  TROUPE_GRID_STRIDE(i, rows * cols) y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + bias[i % cols]);
}

// Grid (column blocks, row chunks): partials[chunk, c] = sum of the chunk's rows in order.
template <class T>
__global__ void column_chunk_sum_kernel(const T* dy, float* partials, i64 rows, i64 cols) {
  const i64 c = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const i64 r0 = static_cast<i64>(blockIdx.y) * kRowChunk;
  const i64 r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
  float acc = 0.0f;
  for (i64 r = r0; r < r1; ++r) acc = __fadd_rn(acc, load(dy, r * cols + c));
  partials[blockIdx.y * cols + c] = acc;
}

// dbias[c] += the chunk sums, in chunk order.
__global__ void add_chunks_kernel(const float* partials, float* dbias, i64 chunks, i64 cols) {
  TROUPE_GRID_STRIDE(c, cols) {
    float acc = dbias[c];
    for (i64 k = 0; k < chunks; ++k) acc = __fadd_rn(acc, partials[k * cols + c]);
    dbias[c] = acc;
  }
}

template <class T>
void column_sum(const T* dy, float* dbias, i64 rows, i64 cols, float* partials, cudaStream_t s) {
  if (!cols || !rows) return;
  const i64 chunks = (rows + kRowChunk - 1) / kRowChunk;
  const dim3 grid(static_cast<unsigned>((cols + 127) / 128), static_cast<unsigned>(chunks));
  column_chunk_sum_kernel<<<grid, 128, 0, s>>>(dy, partials, rows, cols);
  add_chunks_kernel<<<grid_for(cols, 128), 128, 0, s>>>(partials, dbias, chunks, cols);
}

__global__ void embedding_kernel(const std::int32_t* ids, const float* table, float* y, i64 n, i64 cols, i64 vocab,
                                 i64* bad) {
  TROUPE_GRID_STRIDE(i, n * cols) {
    const i64 row = i / cols, c = i % cols;
    const std::int32_t id = ids[row];
    if (id < 0 || id >= vocab) {
      if (c == 0) atomicCAS(reinterpret_cast<unsigned long long*>(bad), 0ull, static_cast<unsigned long long>(row + 1));
      y[i] = __int_as_float(0x7fc00000);
      continue;
    }
    y[i] = table[static_cast<i64>(id) * cols + c];
  }
}

}  // namespace

void fill(float* p, float value, i64 n, cudaStream_t s) {
  if (n) fill_kernel<<<grid_for(n), kThreads, 0, s>>>(p, value, n);
}
void gelu_forward(const float* x, float* y, i64 n, cudaStream_t s) {
  if (n) gelu_kernel<<<grid_for(n), kThreads, 0, s>>>(x, y, n);
}
void gelu_backward(const float* x, const float* dy, float* dx, i64 n, cudaStream_t s) {
  if (n) gelu_backward_kernel<<<grid_for(n), kThreads, 0, s>>>(x, dy, dx, n);
}
void relu_forward(const float* x, float* y, i64 n, cudaStream_t s) {
  if (n) relu_kernel<<<grid_for(n), kThreads, 0, s>>>(x, y, n);
}
void relu_backward(const float* y, const float* dy, float* dx, i64 n, cudaStream_t s) {
  if (n) relu_backward_kernel<<<grid_for(n), kThreads, 0, s>>>(y, dy, dx, n);
}
void add(const float* a, const float* b, float* out, i64 n, cudaStream_t s) {
  if (n) add_kernel<<<grid_for(n), kThreads, 0, s>>>(a, b, out, n);
}
void scale(float* x, float factor, i64 n, cudaStream_t s) {
  if (n) scale_kernel<<<grid_for(n), kThreads, 0, s>>>(x, factor, n);
}
void f32_to_bf16(const float* x, bf16_bits* y, i64 n, cudaStream_t s) {
  if (n) to_bf16_kernel<<<grid_for(n), kThreads, 0, s>>>(x, reinterpret_cast<__nv_bfloat16*>(y), n);
}
void bf16_to_f32(const bf16_bits* x, float* y, i64 n, cudaStream_t s) {
  if (n) to_f32_kernel<<<grid_for(n), kThreads, 0, s>>>(reinterpret_cast<const __nv_bfloat16*>(x), y, n);
}
void add_bias(float* y, const float* bias, i64 rows, i64 cols, cudaStream_t s) {
  if (rows * cols) add_bias_kernel<<<grid_for(rows * cols), kThreads, 0, s>>>(y, bias, rows, cols);
}
void add_bias(bf16_bits* y, const float* bias, i64 rows, i64 cols, cudaStream_t s) {
  if (rows * cols)
    add_bias_bf16_kernel<<<grid_for(rows * cols), kThreads, 0, s>>>(reinterpret_cast<__nv_bfloat16*>(y), bias, rows, cols);
}
void column_sum_add(const float* dy, float* dbias, i64 rows, i64 cols, float* partials, cudaStream_t s) {
  column_sum(dy, dbias, rows, cols, partials, s);
}
void column_sum_add(const bf16_bits* dy, float* dbias, i64 rows, i64 cols, float* partials, cudaStream_t s) {
  column_sum(dy, dbias, rows, cols, partials, s);
}
void embedding_forward(const std::int32_t* ids, const float* table, float* y, i64 n, i64 cols, i64 vocab, i64* bad,
                       cudaStream_t s) {
  if (n * cols) embedding_kernel<<<grid_for(n * cols), kThreads, 0, s>>>(ids, table, y, n, cols, vocab, bad);
}
}  // namespace troupe::cuda
