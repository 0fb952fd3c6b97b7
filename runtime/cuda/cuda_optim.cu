// CUDA optimizer updates (Adam/AdamW, SGD, RMSprop) and a deterministic sum of squares for gradient clipping.
//
// Every arithmetic step is written with a round-to-nearest intrinsic (__fmul_rn, __fadd_rn, ...): nvcc
// would otherwise fuse a multiply and an add into one FMA, rounding once where PyTorch's (and
// runtime/optim's) separate tensor ops round twice.
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace troupe::cuda {

namespace {
constexpr int kPartials = 1024;

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, i64 n, AdamStep k) {
  TROUPE_GRID_STRIDE(i, n) {
    float wi = w[i];
    float gi = g[i];
    if (k.l2) gi = __fadd_rn(gi, __fmul_rn(k.weight_decay, wi));
    const float mi = __fadd_rn(__fmul_rn(m[i], k.beta1), __fmul_rn(k.one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(v[i], k.beta2), __fmul_rn(__fmul_rn(k.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    const float d = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bias_correction2_sqrt), k.eps);
    if (k.decoupled) wi = __fmul_rn(wi, k.decay);
    w[i] = __fadd_rn(wi, __fdiv_rn(__fmul_rn(k.neg_step_size, mi), d));
  }
}

__global__ void sgd_kernel(float* w, const float* g, float* buf, i64 n, SgdStep k) {
  TROUPE_GRID_STRIDE(i, n) {
    float d = g[i];
    if (k.decay) d = __fadd_rn(d, __fmul_rn(k.weight_decay, w[i]));
    if (k.momentum) {
      const float b = k.first ? d : __fadd_rn(__fmul_rn(buf[i], k.momentum_value), __fmul_rn(k.one_minus_dampening, d));
      buf[i] = b;
      d = k.nesterov ? __fadd_rn(d, __fmul_rn(k.momentum_value, b)) : b;
    }
    w[i] = __fadd_rn(w[i], __fmul_rn(k.neg_lr, d));
  }
}

__global__ void rmsprop_kernel(float* w, const float* g, float* square_avg, float* grad_avg, float* buf, i64 n,
                               RmspropStep k) {
  TROUPE_GRID_STRIDE(i, n) {
    float gi = g[i];
    if (k.decay) gi = __fadd_rn(gi, __fmul_rn(k.weight_decay, w[i]));
    const float si = __fadd_rn(__fmul_rn(square_avg[i], k.alpha), __fmul_rn(__fmul_rn(k.one_minus_alpha, gi), gi));
    square_avg[i] = si;
    float avg = si;
    if (k.centered) {
      const float ai = __fadd_rn(__fmul_rn(grad_avg[i], k.alpha), __fmul_rn(k.one_minus_alpha, gi));
      grad_avg[i] = ai;
      avg = __fsub_rn(si, __fmul_rn(ai, ai));
    }
    const float a = __fadd_rn(__fsqrt_rn(avg), k.eps);
    if (k.momentum) {
      const float bi = __fadd_rn(__fmul_rn(buf[i], k.momentum_value), __fdiv_rn(gi, a));
      buf[i] = bi;
      w[i] = __fadd_rn(w[i], __fmul_rn(k.neg_lr, bi));
    } else {
      w[i] = __fadd_rn(w[i], __fdiv_rn(__fmul_rn(k.neg_lr, gi), a));
    }
  }
}

__device__ double block_sum_double(double v) {
  __shared__ double partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? partial[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// A fixed grid (kPartials blocks) so every element always lands in the same partial: deterministic.
__global__ void sum_squares_partial_kernel(const float* x, i64 n, double* partials) {
  double acc = 0.0;
  for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<i64>(blockDim.x) * gridDim.x) {
    const double v = x[i];
    acc += v * v;
  }
  acc = block_sum_double(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* partials, double* out) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < kPartials; i += blockDim.x) acc += partials[i];
  acc = block_sum_double(acc);
  if (threadIdx.x == 0) *out = acc;
}
}  // namespace

void adam_update(float* w, const float* g, float* m, float* v, i64 n, const AdamStep& k, cudaStream_t s) {
  if (n) adam_kernel<<<grid_for(n), kThreads, 0, s>>>(w, g, m, v, n, k);
}
void sgd_update(float* w, const float* g, float* buf, i64 n, const SgdStep& k, cudaStream_t s) {
  if (n) sgd_kernel<<<grid_for(n), kThreads, 0, s>>>(w, g, buf, n, k);
}
void rmsprop_update(float* w, const float* g, float* square_avg, float* grad_avg, float* buf, i64 n,
                    const RmspropStep& k, cudaStream_t s) {
  if (n) rmsprop_kernel<<<grid_for(n), kThreads, 0, s>>>(w, g, square_avg, grad_avg, buf, n, k);
}
void sum_squares(const float* x, i64 n, double* partials, double* out, cudaStream_t s) {
  sum_squares_partial_kernel<<<kPartials, kThreads, 0, s>>>(x, n, partials);
  sum_partials_kernel<<<1, kThreads, 0, s>>>(partials, out);
}

}  // namespace troupe::cuda
