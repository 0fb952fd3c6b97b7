// CUDA row-wise normalisations: softmax and LayerNorm, forward and backward, one block per row.
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace troupe::cuda {

namespace {
constexpr int kRowThreads = 256;

__global__ void softmax_kernel(const float* x, float* y, i64 cols) {
  const float* in = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float mx = -INFINITY;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, in[j]);
  mx = block_max(mx);
  float sum = 0.0f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
    const float e = expf(in[j] - mx);
    out[j] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum);
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) out[j] *= inv;
}

__global__ void softmax_backward_kernel(const float* y, const float* dy, float* dx, i64 cols) {
  const float* p = y + blockIdx.x * cols;
  const float* g = dy + blockIdx.x * cols;
  float* out = dx + blockIdx.x * cols;
  float dot = 0.0f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) dot += p[j] * g[j];
  dot = block_sum(dot);
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) out[j] = p[j] * (g[j] - dot);
}

__global__ void layernorm_kernel(const float* x, const float* w, const float* b, float eps, float* y, float* mean,
                                 float* rstd, i64 cols) {
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float sum = 0.0f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) sum += row[j];
  const float m = block_sum(sum) / static_cast<float>(cols);
  float sq = 0.0f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
    const float d = row[j] - m;
    sq += d * d;
  }
  const float s = 1.0f / sqrtf(block_sum(sq) / static_cast<float>(cols) + eps);
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) out[j] = (row[j] - m) * s * w[j] + b[j];
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = m;
    rstd[blockIdx.x] = s;
  }
}

__global__ void layernorm_backward_dx_kernel(const float* dy, const float* x, const float* w, const float* mean,
                                             const float* rstd, float* dx, i64 cols) {
  const i64 r = blockIdx.x;
  const float* g = dy + r * cols;
  const float* row = x + r * cols;
  const float m = mean[r], s = rstd[r];
  float sum_dn = 0.0f, sum_dn_n = 0.0f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
    const float n = (row[j] - m) * s;
    const float dn = g[j] * w[j];
    sum_dn += dn;
    sum_dn_n += dn * n;
  }
  const float mean_dn = block_sum(sum_dn) / static_cast<float>(cols);
  const float mean_dn_n = block_sum(sum_dn_n) / static_cast<float>(cols);
  float* out = dx + r * cols;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
    const float n = (row[j] - m) * s;
    out[j] = (g[j] * w[j] - mean_dn - n * mean_dn_n) * s;
  }
}

// Grid (column blocks, row chunks): the chunk's sums of dy * xhat (for dw) and dy (for db), rows in order.
__global__ void layernorm_params_chunk_kernel(const float* dy, const float* x, const float* mean, const float* rstd,
                                              float* pw, float* pb, i64 rows, i64 cols) {
  const i64 c = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const i64 r0 = static_cast<i64>(blockIdx.y) * kRowChunk;
  const i64 r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
  float aw = 0.0f, ab = 0.0f;
  for (i64 r = r0; r < r1; ++r) {
    const float g = dy[r * cols + c];
    aw = __fadd_rn(aw, __fmul_rn(__fmul_rn(g, __fsub_rn(x[r * cols + c], mean[r])), rstd[r]));
    ab = __fadd_rn(ab, g);
  }
  pw[blockIdx.y * cols + c] = aw;
  pb[blockIdx.y * cols + c] = ab;
}

// dw, db += the chunk sums, in chunk order.
__global__ void layernorm_params_add_kernel(const float* pw, const float* pb, float* dw, float* db, i64 chunks,
                                            i64 cols) {
  TROUPE_GRID_STRIDE(c, cols) {
    float aw = dw[c], ab = db[c];
    for (i64 k = 0; k < chunks; ++k) {
      aw = __fadd_rn(aw, pw[k * cols + c]);
      ab = __fadd_rn(ab, pb[k * cols + c]);
    }
    dw[c] = aw;
    db[c] = ab;
  }
}
}  // namespace

void softmax_forward(const float* x, float* y, i64 rows, i64 cols, cudaStream_t s) {
  if (rows) softmax_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(x, y, cols);
}
void softmax_backward(const float* y, const float* dy, float* dx, i64 rows, i64 cols, cudaStream_t s) {
  if (rows) softmax_backward_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(y, dy, dx, cols);
}
void layernorm_forward(const float* x, const float* w, const float* b, float eps, float* y, float* mean, float* rstd,
                       i64 rows, i64 cols, cudaStream_t s) {
  if (rows) layernorm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(x, w, b, eps, y, mean, rstd, cols);
}
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                        float* dx, float* dw, float* db, i64 rows, i64 cols, float* partials, cudaStream_t s) {
  if (!rows) return;
  layernorm_backward_dx_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(dy, x, w, mean, rstd, dx, cols);
  const i64 chunks = (rows + kRowChunk - 1) / kRowChunk;
  float* pw = partials;
  float* pb = partials + chunks * cols;
  const dim3 grid(static_cast<unsigned>((cols + 127) / 128), static_cast<unsigned>(chunks));
  layernorm_params_chunk_kernel<<<grid, 128, 0, s>>>(dy, x, mean, rstd, pw, pb, rows, cols);
  layernorm_params_add_kernel<<<grid_for(cols, 128), 128, 0, s>>>(pw, pb, dw, db, chunks, cols);
}

}  // namespace troupe::cuda
