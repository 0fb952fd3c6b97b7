// CUDA causal softmax (forward and backward) for attention, and the fused cross-entropy.
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace troupe::cuda {

namespace {
constexpr int kRowThreads = 256;

// Block per (bh, t) row: the first t + 1 entries are scores, the rest are masked.
__global__ void causal_softmax_kernel(float* p, i64 t_len, float scale) {
  const i64 row = blockIdx.x, t = row % t_len;
  float* r = p + row * t_len;
  float mx = -INFINITY;
  for (i64 j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, r[j] * scale);
  mx = block_max(mx);
  float sum = 0.0f;
  for (i64 j = threadIdx.x; j <= t; j += blockDim.x) {
    const float e = expf(r[j] * scale - mx);
    r[j] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum);
  for (i64 j = threadIdx.x; j < t_len; j += blockDim.x) r[j] = j <= t ? r[j] * inv : 0.0f;
}

__global__ void causal_softmax_backward_kernel(const float* p, float* dp, i64 t_len, float scale) {
  const i64 row = blockIdx.x, t = row % t_len;
  const float* pr = p + row * t_len;
  float* d = dp + row * t_len;
  float dot = 0.0f;
  for (i64 j = threadIdx.x; j <= t; j += blockDim.x) dot += pr[j] * d[j];
  dot = block_sum(dot);
  for (i64 j = threadIdx.x; j < t_len; j += blockDim.x) d[j] = j <= t ? pr[j] * (d[j] - dot) * scale : 0.0f;
}

__global__ void cross_entropy_kernel(const float* logits, const std::int32_t* targets, float* probs, float* losses,
                                     i64 vocab, i64* bad) {
  const i64 r = blockIdx.x;
  const float* in = logits + r * vocab;
  float* out = probs + r * vocab;
  const std::int32_t target = targets[r];
  const bool valid = target >= 0 && target < vocab;
  const float target_logit = valid ? in[target] : 0.0f;  // read before probs may overwrite logits
  __syncthreads();
  float mx = -INFINITY;
  for (i64 j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, in[j]);
  mx = block_max(mx);
  float sum = 0.0f;
  for (i64 j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float e = expf(in[j] - mx);
    out[j] = e;
    sum += e;
  }
  sum = block_sum(sum);
  const float inv = 1.0f / sum;
  for (i64 j = threadIdx.x; j < vocab; j += blockDim.x) out[j] *= inv;
  if (threadIdx.x == 0) {
    if (!valid) atomicCAS(reinterpret_cast<unsigned long long*>(bad), 0ull, static_cast<unsigned long long>(r + 1));
    losses[r] = valid ? static_cast<float>(log(static_cast<double>(sum)) + mx - target_logit) : __int_as_float(0x7fc00000);
  }
}

__global__ void cross_entropy_backward_kernel(const float* probs, const std::int32_t* targets, float scale,
                                              float* dlogits, i64 rows, i64 vocab) {
  TROUPE_GRID_STRIDE(i, rows * vocab) {
    const i64 r = i / vocab, j = i % vocab;
    float g = probs[i] * scale;
    if (j == targets[r]) g -= scale;
    dlogits[i] = g;
  }
}
}  // namespace

void causal_softmax(float* p, i64 batch_heads, i64 t, float scale, cudaStream_t s) {
  if (batch_heads * t) causal_softmax_kernel<<<static_cast<unsigned>(batch_heads * t), kRowThreads, 0, s>>>(p, t, scale);
}
void causal_softmax_backward(const float* p, float* dp, i64 batch_heads, i64 t, float scale, cudaStream_t s) {
  if (batch_heads * t)
    causal_softmax_backward_kernel<<<static_cast<unsigned>(batch_heads * t), kRowThreads, 0, s>>>(p, dp, t, scale);
}
void cross_entropy_forward(const float* logits, const std::int32_t* targets, float* probs, float* losses, i64 rows,
                           i64 vocab, i64* bad, cudaStream_t s) {
  if (rows) cross_entropy_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(logits, targets, probs, losses, vocab, bad);
}
void cross_entropy_backward(const float* probs, const std::int32_t* targets, float scale, float* dlogits, i64 rows,
                            i64 vocab, cudaStream_t s) {
  if (rows * vocab)
    cross_entropy_backward_kernel<<<grid_for(rows * vocab), kThreads, 0, s>>>(probs, targets, scale, dlogits, rows, vocab);
}

}  // namespace troupe::cuda
