// CPU LSTM recurrence: the step-by-step part of one torch.nn.LSTM layer, forward and backward. The layer
// forms the input projection and the weight gradients itself, as products over all steps at once.
#include <algorithm>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/vec_math.h"

namespace troupe {

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + cpu::fast_exp(-x)); }

// c[rows, n] (row stride ldc) = a[rows, k] (row stride lda) @ op(b). In deterministic mode one BLAS call
// per row: BLAS picks kernels by shape, and a row's result must not depend on how many sequences share
// the call (micro-batches, data-parallel replicas).
void rows_product(CpuBackend& be, bool trans_b, std::int64_t rows, std::int64_t n, std::int64_t k, const float* a,
                  std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc) {
  if (!be.deterministic()) {
    be.gemm(false, trans_b, rows, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    return;
  }
  be.pool().parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) sgemm_serial(false, trans_b, 1, n, k, 1.0f, a + r * lda, lda, b, ldb, 0.0f, c + r * ldc, ldc);
  });
}

// One step of one sequence. On entry z holds h_{t-1} W_hh^T (or zeros at t = 0); on exit the activations
// i, f, g, o. c_prev is null at t = 0 (zero state). Pointers as arguments so the loop vectorises.
void step_forward(const float* xg, const float* b_hh, float* z, const float* c_prev, float* c, float* h,
                  std::int64_t hidden) {
  float* zi = z;
  float* zf = z + hidden;
  float* zg = z + 2 * hidden;
  float* zo = z + 3 * hidden;
  for (std::int64_t j = 0; j < hidden; ++j) {
    const float i = sigmoid(zi[j] + xg[j] + b_hh[j]);
    const float f = sigmoid(zf[j] + xg[hidden + j] + b_hh[hidden + j]);
    const float g = cpu::fast_tanh(zg[j] + xg[2 * hidden + j] + b_hh[2 * hidden + j]);
    const float o = sigmoid(zo[j] + xg[3 * hidden + j] + b_hh[3 * hidden + j]);
    const float cj = (c_prev ? f * c_prev[j] : 0.0f) + i * g;
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
void step_backward(const float* dh, const float* dh_rec, const float* a, const float* c, const float* c_prev,
                   float* dc, float* dz, std::int64_t hidden) {
  for (std::int64_t j = 0; j < hidden; ++j) {
    const float i = a[j], f = a[hidden + j], g = a[2 * hidden + j], o = a[3 * hidden + j];
    const float dht = dh[j] + dh_rec[j];
    const float tc = cpu::fast_tanh(c[j]);
    const float dct = dc[j] + dht * o * (1.0f - tc * tc);
    const float cp = c_prev ? c_prev[j] : 0.0f;
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
  for (std::int64_t t = 0; t < T; ++t) {
    // z_t's recurrent part, straight into the gate rows of step t (row stride T*4H); nothing at t = 0.
    if (t > 0) rows_product(*this, true, d.b, G, H, hp + (t - 1) * H, T * H, wp, H, ap + t * G, T * G);
    pool_->parallel_for(d.b, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const std::int64_t r = b * T + t;
        float* z = ap + r * G;
        if (t == 0) std::fill(z, z + G, 0.0f);
        step_forward(xp + r * G, bp, z, t > 0 ? cp + (r - 1) * H : nullptr, cp + r * H, hp + r * H, H);
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
        step_backward(dhp + r * H, dhr + b * H, ap + r * G, cp + r * H, t > 0 ? cp + (r - 1) * H : nullptr,
                      dcp + b * H, dzp + r * G, H);
      }
    }, grain(H));
    // dh_{t-1} from this step: dz_t @ W_hh.
    if (t > 0) rows_product(*this, false, d.b, H, G, dzp + t * G, T * G, wp, H, dhr, H);
  }
}

}  // namespace troupe
