// CPU convolution (im2col + one sgemm per sample) and global average pooling, forward and backward.
//
// Work is split over samples (forward, dx) or over fixed groups of samples (dw), never over anything that
// depends on the thread count, so every value is rounded the same way with 1 thread or 16.
#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/conv_dims.h"
#include "runtime/cpu/cpu_backend.h"

namespace troupe {

namespace {
// Samples whose weight-gradient products are summed into one partial before the partials are added in
// order: fixed, so the sum's rounding does not depend on the thread count.
constexpr std::int64_t kSampleGroup = 4;

// A 1x1 kernel with stride 1 and no padding reads the input as its own patch matrix.
bool pointwise(const ConvDims& d) { return d.k == 1 && d.stride == 1 && d.pad == 0; }

// Output columns ox whose input column ox s - p + kx lies inside [0, w): the range [lo, hi).
struct ColRange {
  std::int64_t lo, hi;
};
ColRange valid_cols(const ConvDims& d, std::int64_t kx) {
  const std::int64_t off = kx - d.pad;  // ix = ox s + off
  std::int64_t lo = off >= 0 ? 0 : (-off + d.stride - 1) / d.stride;
  std::int64_t hi = d.w - 1 - off < 0 ? 0 : (d.w - 1 - off) / d.stride + 1;
  hi = std::min(hi, d.wo);
  lo = std::min(lo, hi);
  return {lo, hi};
}

// cols[(c k + ky) k + kx, oy wo + ox] = x[c, oy s - p + ky, ox s - p + kx], 0 in the padding: one
// sample's patches, one row per kernel tap, so that y = w[O, C k k] @ cols. The bounds are worked out
// once per tap, so the inner loop is a plain (strided) copy.
void im2col(const float* x, const ConvDims& d, float* cols) {
  for (std::int64_t c = 0; c < d.c; ++c)
    for (std::int64_t ky = 0; ky < d.k; ++ky)
      for (std::int64_t kx = 0; kx < d.k; ++kx) {
        float* row = cols + ((c * d.k + ky) * d.k + kx) * d.out_plane();
        const float* plane = x + c * d.in_plane();
        const ColRange r = valid_cols(d, kx);
        const std::int64_t off = kx - d.pad;
        for (std::int64_t oy = 0; oy < d.ho; ++oy) {
          float* out = row + oy * d.wo;
          const std::int64_t iy = oy * d.stride - d.pad + ky;
          // Rows are short (a few dozen values): plain loops, not memcpy/memset calls.
          if (iy < 0 || iy >= d.h) {
            for (std::int64_t ox = 0; ox < d.wo; ++ox) out[ox] = 0.0f;
            continue;
          }
          const float* in = plane + iy * d.w;
          for (std::int64_t ox = 0; ox < r.lo; ++ox) out[ox] = 0.0f;
          if (d.stride == 1) {
            const float* src = in + off;
            for (std::int64_t ox = r.lo; ox < r.hi; ++ox) out[ox] = src[ox];
          } else {
            for (std::int64_t ox = r.lo; ox < r.hi; ++ox) out[ox] = in[ox * d.stride + off];
          }
          for (std::int64_t ox = r.hi; ox < d.wo; ++ox) out[ox] = 0.0f;
        }
      }
}

// The adjoint of im2col: dx (one sample, overwritten) = the sum of every patch entry that read each input,
// added tap by tap in a fixed order.
void col2im(const float* cols, const ConvDims& d, float* dx) {
  std::fill(dx, dx + d.c * d.in_plane(), 0.0f);
  for (std::int64_t c = 0; c < d.c; ++c)
    for (std::int64_t ky = 0; ky < d.k; ++ky)
      for (std::int64_t kx = 0; kx < d.k; ++kx) {
        const float* row = cols + ((c * d.k + ky) * d.k + kx) * d.out_plane();
        float* plane = dx + c * d.in_plane();
        const ColRange r = valid_cols(d, kx);
        const std::int64_t off = kx - d.pad;
        for (std::int64_t oy = 0; oy < d.ho; ++oy) {
          const std::int64_t iy = oy * d.stride - d.pad + ky;
          if (iy < 0 || iy >= d.h) continue;
          const float* in = row + oy * d.wo;
          float* out = plane + iy * d.w;
          if (d.stride == 1) {
            for (std::int64_t ox = r.lo; ox < r.hi; ++ox) out[ox + off] += in[ox];
          } else {
            for (std::int64_t ox = r.lo; ox < r.hi; ++ox) out[ox * d.stride + off] += in[ox];
          }
        }
      }
}

// One sample's patch matrix: x itself for a pointwise kernel, else im2col into scratch.
const float* patches(const float* x, const ConvDims& d, std::vector<float>& scratch) {
  if (pointwise(d)) return x;
  scratch.resize(static_cast<std::size_t>(d.patch() * d.out_plane()));
  im2col(x, d, scratch.data());
  return scratch.data();
}
}  // namespace

void CpuBackend::conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int stride,
                                int pad) {
  const ConvDims d = conv_dims(x, w, stride, pad);
  TROUPE_CHECK(y.numel() == d.n * d.o * d.out_plane(), "conv2d output ", shape_str(y.shape()), " for x ",
               shape_str(x.shape()), " and w ", shape_str(w.shape()));
  const float* xp = x.f32();
  const float* wp = w.f32();
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  float* yp = y.f32();
  pool_->parallel_for(d.n, [&](std::int64_t n0, std::int64_t n1) {
    std::vector<float> scratch;
    for (std::int64_t n = n0; n < n1; ++n) {
      const float* cols = patches(xp + n * d.c * d.in_plane(), d, scratch);
      float* yn = yp + n * d.o * d.out_plane();
      if (bp)
        for (std::int64_t o = 0; o < d.o; ++o) std::fill(yn + o * d.out_plane(), yn + (o + 1) * d.out_plane(), bp[o]);
      // y_n[O, P] = w[O, CKK] @ cols[CKK, P]
      sgemm_serial(false, false, d.o, d.out_plane(), d.patch(), 1.0f, wp, d.patch(), cols, d.out_plane(),
                   bp ? 1.0f : 0.0f, yn, d.out_plane());
    }
  });
}

void CpuBackend::conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,
                                 const Tensor& dw, const Tensor& dbias, int stride, int pad) {
  const ConvDims d = conv_dims(x, w, stride, pad);
  TROUPE_CHECK(dy.numel() == d.n * d.o * d.out_plane() && dw.numel() == w.numel(), "conv2d backward: dy ",
               shape_str(dy.shape()), ", dw ", shape_str(dw.shape()), " for x ", shape_str(x.shape()), " and w ",
               shape_str(w.shape()));
  TROUPE_CHECK(!dx.defined() || dx.numel() == x.numel(), "conv2d backward: dx ", shape_str(dx.shape()));
  const float* dyp = dy.f32();
  const float* xp = x.f32();
  const float* wp = w.f32();
  const std::int64_t wsize = d.o * d.patch(), plane = d.out_plane();

  // dx_n = col2im(w^T @ dy_n), one sample at a time.
  if (dx.defined()) {
    float* dxp = dx.f32();
    pool_->parallel_for(d.n, [&](std::int64_t n0, std::int64_t n1) {
      std::vector<float> dcols(pointwise(d) ? 0 : static_cast<std::size_t>(d.patch() * plane));
      for (std::int64_t n = n0; n < n1; ++n) {
        float* dxn = dxp + n * d.c * d.in_plane();
        float* out = pointwise(d) ? dxn : dcols.data();
        sgemm_serial(true, false, d.patch(), plane, d.o, 1.0f, wp, d.patch(), dyp + n * d.o * plane, plane, 0.0f, out,
                     plane);
        if (!pointwise(d)) col2im(dcols.data(), d, dxn);
      }
    });
  }

  if (deterministic_) {
    // Exact sums (see Backend::set_deterministic): each sample's product goes into the accumulators.
    std::span<ExactSum> acc = exact_grad(dw);
    std::vector<float> scratch, product(static_cast<std::size_t>(wsize));
    for (std::int64_t n = 0; n < d.n; ++n) {
      const float* cols = patches(xp + n * d.c * d.in_plane(), d, scratch);
      gemm(false, true, d.o, d.patch(), plane, 1.0f, dyp + n * d.o * plane, plane, cols, plane, 0.0f, product.data(),
           d.patch());
      add_exact_parallel(acc, product.data());
    }
    if (dbias.defined()) {
      std::span<ExactSum> bacc = exact_grad(dbias);
      pool_->parallel_for(d.o, [&](std::int64_t o0, std::int64_t o1) {
        for (std::int64_t o = o0; o < o1; ++o)
          for (std::int64_t n = 0; n < d.n; ++n) {
            const float* g = dyp + (n * d.o + o) * plane;
            float s = 0.0f;
            for (std::int64_t p = 0; p < plane; ++p) s += g[p];
            bacc[o] = exact_add(bacc[o], to_exact(s));
          }
      });
    }
    return;
  }

  // dw += sum_n dy_n[O, P] @ cols_n^T: a partial per fixed group of samples, then the partials in order.
  const std::int64_t groups = (d.n + kSampleGroup - 1) / kSampleGroup;
  std::vector<float> partial(static_cast<std::size_t>(groups * wsize));
  pool_->parallel_for(groups, [&](std::int64_t g0, std::int64_t g1) {
    std::vector<float> scratch;
    for (std::int64_t g = g0; g < g1; ++g)
      for (std::int64_t n = g * kSampleGroup; n < std::min(d.n, (g + 1) * kSampleGroup); ++n) {
        const float* cols = patches(xp + n * d.c * d.in_plane(), d, scratch);
        sgemm_serial(false, true, d.o, d.patch(), plane, 1.0f, dyp + n * d.o * plane, plane, cols, plane,
                     n == g * kSampleGroup ? 0.0f : 1.0f, partial.data() + g * wsize, d.patch());
      }
  });
  float* dwp = dw.f32();
  pool_->parallel_for(wsize, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const float* src = partial.data() + g * wsize;
      for (std::int64_t i = i0; i < i1; ++i) dwp[i] += src[i];
    }
  }, 1024);

  if (dbias.defined()) {
    float* dbp = dbias.f32();
    pool_->parallel_for(d.o, [&](std::int64_t o0, std::int64_t o1) {
      for (std::int64_t o = o0; o < o1; ++o)
        for (std::int64_t n = 0; n < d.n; ++n) {
          const float* g = dyp + (n * d.o + o) * plane;
          for (std::int64_t p = 0; p < plane; ++p) dbp[o] += g[p];
        }
    });
  }
}

void CpuBackend::avgpool_forward(const Tensor& x, const Tensor& y) {
  TROUPE_CHECK(x.ndim() >= 2 && y.numel() == x.dim(0) * x.dim(1), "avgpool: x ", shape_str(x.shape()), " -> y ",
               shape_str(y.shape()));
  const std::int64_t rows = y.numel(), s = x.numel() / rows;
  const float* xp = x.f32();
  float* yp = y.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      float sum = 0.0f;
      for (std::int64_t i = 0; i < s; ++i) sum += xp[r * s + i];
      yp[r] = sum / static_cast<float>(s);
    }
  }, 64);
}

void CpuBackend::avgpool_backward(const Tensor& dy, const Tensor& dx) {
  TROUPE_CHECK(dx.ndim() >= 2 && dy.numel() == dx.dim(0) * dx.dim(1), "avgpool backward: dy ", shape_str(dy.shape()),
               " -> dx ", shape_str(dx.shape()));
  const std::int64_t rows = dy.numel(), s = dx.numel() / rows;
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) std::fill(dxp + r * s, dxp + (r + 1) * s, dyp[r] / static_cast<float>(s));
  }, 64);
}

}  // namespace troupe
