// CudaBackend's causal attention: products as strided-batched cuBLAS calls over heads, softmax as a kernel.
//
// Shapes as the CPU backend: qkv [B, T, 3C] (q, k, v), heads of hd = C / n_head, probs [B, H, T, T].
// For one sample the heads of q sit hd floats apart in rows of 3C, so one strided-batched product per
// sample covers every head (batch H, stride hd); probs of consecutive heads are T*T apart.
#include <cuda_runtime_api.h>

#include <cmath>

#include "runtime/attention_dims.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/kernels.h"

namespace troupe {

void CudaBackend::attention_forward(const Tensor& qkv, int n_head, const Tensor& out, const Tensor& probs) {
  for (const Tensor* t : {&qkv, &out, &probs}) check_device(*t, "attention");
  const AttentionDims d = attention_dims(qkv, n_head);
  TROUPE_CHECK(out.numel() == d.batch * d.t * d.c && probs.numel() == d.batch * d.heads * d.t * d.t,
               "attention outputs ", shape_str(out.shape()), " ", shape_str(probs.shape()));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hd));
  const std::int64_t T = d.t, C3 = 3 * d.c, TT = T * T;
  const int H = static_cast<int>(d.heads);
  for (std::int64_t b = 0; b < d.batch; ++b) {
    const float* q = qkv.f32() + b * T * C3;
    float* p = probs.f32() + b * d.heads * TT;
    // S_h = scale * q_h k_h^T   [T, T] per head
    gemm(false, true, T, T, d.hd, scale, q, C3, q + d.c, C3, 0.0f, p, T, DType::f32, DType::f32, H, d.hd, d.hd, TT);
  }
  cuda::causal_softmax(probs.f32(), d.batch * d.heads, T, 1.0f, static_cast<cudaStream_t>(stream_));
  for (std::int64_t b = 0; b < d.batch; ++b) {
    const float* v = qkv.f32() + b * T * C3 + 2 * d.c;
    const float* p = probs.f32() + b * d.heads * TT;
    // out_h = P_h v_h   [T, hd] per head, written into columns h*hd.. of out's rows of C
    gemm(false, false, T, d.hd, T, 1.0f, p, T, v, C3, 0.0f, out.f32() + b * T * d.c, d.c, DType::f32, DType::f32, H,
         TT, d.hd, d.hd);
  }
}

void CudaBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& probs, int n_head,
                                     const Tensor& dqkv) {
  for (const Tensor* t : {&dout, &qkv, &probs, &dqkv}) check_device(*t, "attention backward");
  const AttentionDims d = attention_dims(qkv, n_head);
  TROUPE_CHECK(dqkv.numel() == qkv.numel() && dout.numel() == d.batch * d.t * d.c, "attention backward shapes");
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hd));
  const std::int64_t T = d.t, C3 = 3 * d.c, TT = T * T, C = d.c, hd = d.hd;
  const int H = static_cast<int>(d.heads);
  Tensor ds = empty({d.heads, T, T});  // one sample's dP, then dS, for every head
  for (std::int64_t b = 0; b < d.batch; ++b) {
    const float* q = qkv.f32() + b * T * C3;
    const float* k = q + C;
    const float* v = q + 2 * C;
    float* dq = dqkv.f32() + b * T * C3;
    float* dk = dq + C;
    float* dv = dq + 2 * C;
    const float* p = probs.f32() + b * d.heads * TT;
    const float* dO = dout.f32() + b * T * C;
    // dP = dO v^T; dv = P^T dO; dS = P * (dP - rowsum(P * dP)) * scale; dq = dS k; dk = dS^T q.
    gemm(false, true, T, T, hd, 1.0f, dO, C, v, C3, 0.0f, ds.f32(), T, DType::f32, DType::f32, H, hd, hd, TT);
    gemm(true, false, T, hd, T, 1.0f, p, T, dO, C, 0.0f, dv, C3, DType::f32, DType::f32, H, TT, hd, hd);
    cuda::causal_softmax_backward(p, ds.f32(), d.heads, T, scale, static_cast<cudaStream_t>(stream_));
    gemm(false, false, T, hd, T, 1.0f, ds.f32(), T, k, C3, 0.0f, dq, C3, DType::f32, DType::f32, H, TT, hd, hd);
    gemm(true, false, T, hd, T, 1.0f, ds.f32(), T, q, C3, 0.0f, dk, C3, DType::f32, DType::f32, H, TT, hd, hd);
  }
}

}  // namespace troupe
