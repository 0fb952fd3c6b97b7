// CPU LSTM recurrence: the step-by-step part of one torch.nn.LSTM layer, forward and backward. The layer
// forms the input projection and the weight gradients itself, as products over all steps at once.
#include <algorithm>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/row_order_gemm.h"
#include "runtime/cpu/vec_math.h"

namespace troupe {

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + cpu::fast_exp(-x)); }

// c[rows, n] (row stride ldc) = a[rows, k] (row stride lda) @ b[k, n] (row stride ldb), each element one
// multiply-add chain over k (runtime/cpu/row_order_gemm.h): a row's result does not depend on how many
// sequences share the call (micro-batches, data-parallel replicas), in every mode. A step's product is
// small (batch x 4H x H): a BLAS call's fixed cost (and packing W_hh every step) outweighed its work.
void rows_product(CpuBackend& be, std::int64_t rows, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
                  const float* b, std::int64_t ldb, float* c, std::int64_t ldc) {
  be.pool().parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    cpu::row_order_gemm(r1 - r0, n, k, a + r0 * lda, lda, 1, b, cpu::BRows{ldb}, c + r0 * ldc, ldc, false);
  }, std::max<std::int64_t>(4, 16384 / (n * k)));
}

// One step of one sequence. On entry z holds h_{t-1} W_hh^T (ignored at t = 0, kFirst: zero state); on exit
// the activations i, f, g, o. Restrict pointers and no branch in the loop, so that it vectorises (as a
// scalar loop it took a fifth of a small LSTM's step).
template <bool kFirst>
void step_forward(const float* __restrict xg, const float* __restrict b_hh, float* __restrict z,
                  const float* __restrict c_prev, float* __restrict c, float* __restrict h, std::int64_t hidden) {
  float* __restrict zi = z;
  float* __restrict zf = z + hidden;
  float* __restrict zg = z + 2 * hidden;
  float* __restrict zo = z + 3 * hidden;
  for (std::int64_t j = 0; j < hidden; ++j) {
    const float ri = kFirst ? 0.0f : zi[j], rf = kFirst ? 0.0f : zf[j], rg = kFirst ? 0.0f : zg[j],
                ro = kFirst ? 0.0f : zo[j];
    const float i = sigmoid(ri + xg[j] + b_hh[j]);
    const float f = sigmoid(rf + xg[hidden + j] + b_hh[hidden + j]);
    const float g = cpu::fast_tanh(rg + xg[2 * hidden + j] + b_hh[2 * hidden + j]);
    const float o = sigmoid(ro + xg[3 * hidden + j] + b_hh[3 * hidden + j]);
    const float cj = (kFirst ? 0.0f : f * c_prev[j]) + i * g;
    zi[j] = i;
    zf[j] = f;
    zg[j] = g;
    zo[j] = o;
    c[j] = cj;
    h[j] = o * cpu::fast_tanh(cj);
  }
}

// One step back: dh (from the output at t) plus dh_rec (from step t+1 through W_hh), and dc (from t+1,
// replaced by the gradient for c_{t-1}), give dz, the gradient of the step's pre-activations.
template <bool kFirst>
void step_backward(const float* __restrict dh, const float* __restrict dh_rec, const float* __restrict a,
                   const float* __restrict c, const float* __restrict c_prev, float* __restrict dc,
                   float* __restrict dz, std::int64_t hidden) {
  for (std::int64_t j = 0; j < hidden; ++j) {
    const float i = a[j], f = a[hidden + j], g = a[2 * hidden + j], o = a[3 * hidden + j];
    const float dht = dh[j] + dh_rec[j];
    const float tc = cpu::fast_tanh(c[j]);
    const float dct = dc[j] + dht * o * (1.0f - tc * tc);
    const float cp = kFirst ? 0.0f : c_prev[j];
    dz[j] = dct * g * i * (1.0f - i);
    dz[hidden + j] = dct * cp * f * (1.0f - f);
    dz[2 * hidden + j] = dct * i * (1.0f - g * g);
    dz[3 * hidden + j] = dht * tc * o * (1.0f - o);
    dc[j] = dct * f;
  }
}

struct Dims {
  std::int64_t b, t, h;
};

Dims check_dims(const Tensor& h, const Tensor& c, const Tensor& acts, const Tensor& w_hh) {
  TROUPE_CHECK(h.ndim() == 3, "lstm: h must be [B, T, H], got ", shape_str(h.shape()));
  const Dims d{h.dim(0), h.dim(1), h.dim(2)};
  TROUPE_CHECK(c.numel() == d.b * d.t * d.h && acts.numel() == 4 * c.numel(), "lstm: c ", shape_str(c.shape()),
               ", gates ", shape_str(acts.shape()), " for h ", shape_str(h.shape()));
  TROUPE_CHECK(w_hh.ndim() == 2 && w_hh.dim(0) == 4 * d.h && w_hh.dim(1) == d.h, "lstm: weight_hh ",
               shape_str(w_hh.shape()), " for hidden size ", d.h);
  return d;
}

// Rows of the pointwise loops per task: small batches stay on one thread (a step is short).
std::int64_t grain(std::int64_t hidden) { return std::max<std::int64_t>(1, 8192 / hidden); }

}  // namespace

void CpuBackend::lstm_forward(const Tensor& xg, const Tensor& w_hh, const Tensor& b_hh, const Tensor& h,
                              const Tensor& c, const Tensor& acts) {
  const Dims d = check_dims(h, c, acts, w_hh);
  TROUPE_CHECK(xg.numel() == acts.numel() && b_hh.numel() == 4 * d.h, "lstm: input projection ",
               shape_str(xg.shape()), ", bias ", shape_str(b_hh.shape()));
  const std::int64_t H = d.h, T = d.t, G = 4 * H;
  const float* xp = xg.f32();
  const float* wp = w_hh.f32();
  const float* bp = b_hh.f32();
  float* hp = h.f32();
  float* cp = c.f32();
  float* ap = acts.f32();
  // W_hh^T [H, 4H], so that a step's product runs along W_hh's rows.
  std::vector<float> wt(static_cast<std::size_t>(G * H));
  for (std::int64_t g = 0; g < G; ++g)
    for (std::int64_t k = 0; k < H; ++k) wt[static_cast<std::size_t>(k * G + g)] = wp[g * H + k];
  for (std::int64_t t = 0; t < T; ++t) {
    // z_t's recurrent part, straight into the gate rows of step t (row stride T*4H); nothing at t = 0.
    if (t > 0) rows_product(*this, d.b, G, H, hp + (t - 1) * H, T * H, wt.data(), G, ap + t * G, T * G);
    pool_->parallel_for(d.b, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const std::int64_t r = b * T + t;
        float* z = ap + r * G;
        if (t == 0) step_forward<true>(xp + r * G, bp, z, nullptr, cp + r * H, hp + r * H, H);
        else step_forward<false>(xp + r * G, bp, z, cp + (r - 1) * H, cp + r * H, hp + r * H, H);
      }
    }, grain(H));
  }
}

void CpuBackend::lstm_backward(const Tensor& dh, const Tensor& w_hh, const Tensor& c, const Tensor& acts,
                               const Tensor& dz) {
  const Dims d = check_dims(dh, c, acts, w_hh);
  TROUPE_CHECK(dz.numel() == acts.numel(), "lstm backward: dz ", shape_str(dz.shape()));
  const std::int64_t H = d.h, T = d.t, G = 4 * H;
  const float* dhp = dh.f32();
  const float* wp = w_hh.f32();
  const float* cp = c.f32();
  const float* ap = acts.f32();
  float* dzp = dz.f32();
  std::vector<float> dh_rec(static_cast<std::size_t>(d.b * H), 0.0f), dc(dh_rec.size(), 0.0f);
  float* dhr = dh_rec.data();
  float* dcp = dc.data();
  for (std::int64_t t = T; t-- > 0;) {
    pool_->parallel_for(d.b, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const std::int64_t r = b * T + t;
        if (t == 0) step_backward<true>(dhp + r * H, dhr + b * H, ap + r * G, cp + r * H, nullptr, dcp + b * H, dzp + r * G, H);
        else step_backward<false>(dhp + r * H, dhr + b * H, ap + r * G, cp + r * H, cp + (r - 1) * H, dcp + b * H, dzp + r * G, H);
      }
    }, grain(H));
    // dh_{t-1} from this step: dz_t @ W_hh.
    if (t > 0) rows_product(*this, d.b, H, G, dzp + t * G, T * G, wp, H, dhr, H);
  }
}

}  // namespace troupe
