// CPU convolution and global average pooling. The convolution runs on runtime/cpu/conv_packed.h (products
// over groups of samples on the packed AVX-512 kernel) where the CPU has AVX-512 and the mode is not
// deterministic; otherwise here, lowered to one OpenBLAS sgemm per sample (im2col, or a padded image for
// stride 1), which deterministic mode keeps so that its bits stay what they were.
//
// Work is split over samples (forward, dx) or over fixed groups of samples (dw), never over anything that
// depends on the thread count, so every value is rounded the same way with 1 thread or 16.
#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/conv_dims.h"
#include "runtime/cpu/conv_packed.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/im2col.h"

namespace troupe {

namespace {
// Samples whose weight-gradient products are summed into one partial before the partials are added in
// order: fixed, so the sum's rounding does not depend on the thread count.
constexpr std::int64_t kSampleGroup = 4;

// A 1x1 kernel with stride 1 and no padding reads the input as its own patch matrix.
bool pointwise(const ConvDims& d) { return d.k == 1 && d.stride == 1 && d.pad == 0; }

// One thread's scratch for lowering one convolution's samples to matrix products, in one of three forms:
//  - pointwise (1x1, stride 1, no padding): the sample is its own patch matrix [C, H W];
//  - stride 1 ("padded width"): the sample is copied once into a zero-padded image [C, Hp, Wp] and outputs
//    are computed at every padded column, ho rows of Wp values whose last k - 1 are junk and dropped. Each
//    patch row is then one contiguous run of the padded image (one memcpy, no bounds per value); dy is
//    widened the same way with zeros in the junk columns, so they add nothing to dw or dx;
//  - otherwise (stride 2): im2col / col2im over [C k k, ho wo].
// cols() is the patch matrix [C k k, width()] of a sample; wide_dy() its dy [O, width()]; y_scratch() an
// [O, width()] (or [C k k, width()]) buffer whose rows store_y() / add_dx() bring back to the tensor's shape.
class Lowering {
 public:
  explicit Lowering(const ConvDims& d)
      : d_(d), hp_(d.h + 2 * d.pad), wp_(d.w + 2 * d.pad),
        form_(pointwise(d) ? Form::pointwise : d.stride == 1 ? Form::padded : Form::im2col) {}

  std::int64_t width() const { return form_ == Form::padded ? d_.ho * wp_ : d_.out_plane(); }
  bool direct() const { return form_ == Form::pointwise; }  // tensors are used as they are

  const float* cols(const float* x) {
    if (form_ == Form::pointwise) return x;
    cols_.resize(static_cast<std::size_t>(d_.patch() * width()));
    if (form_ == Form::im2col) {
      im2col(x, d_, cols_.data(), d_.out_plane());
      return cols_.data();
    }
    pad(x);
    const std::int64_t len = width();
    for (std::int64_t c = 0; c < d_.c; ++c)
      for (std::int64_t ky = 0; ky < d_.k; ++ky)
        for (std::int64_t kx = 0; kx < d_.k; ++kx) {
          const float* src = image_.data() + c * hp_ * wp_ + ky * wp_ + kx;
          std::copy(src, src + len, cols_.data() + ((c * d_.k + ky) * d_.k + kx) * len);
        }
    return cols_.data();
  }

  // dy_n [O, ho, wo] with the patch matrix's columns.
  const float* wide_dy(const float* dy) {
    if (form_ != Form::padded) return dy;
    wide_.assign(static_cast<std::size_t>(d_.o * width()), 0.0f);
    for (std::int64_t o = 0; o < d_.o; ++o)
      for (std::int64_t oy = 0; oy < d_.ho; ++oy)
        std::copy(dy + (o * d_.ho + oy) * d_.wo, dy + (o * d_.ho + oy + 1) * d_.wo,
                  wide_.data() + (o * d_.ho + oy) * wp_);
    return wide_.data();
  }

  // A product's destination: the output itself when no reshaping is needed.
  float* y_scratch(float* y) {
    if (form_ != Form::padded) return y;
    out_.resize(static_cast<std::size_t>(d_.o * width()));
    return out_.data();
  }
  // Copies the valid columns of y_scratch() into y_n [O, ho, wo] (no-op when the product went there).
  void store_y(float* y) const {
    if (form_ != Form::padded) return;
    for (std::int64_t o = 0; o < d_.o; ++o)
      for (std::int64_t oy = 0; oy < d_.ho; ++oy) {
        const float* src = out_.data() + (o * d_.ho + oy) * wp_;
        std::copy(src, src + d_.wo, y + (o * d_.ho + oy) * d_.wo);
      }
  }

  float* dcols_scratch(float* dx) {
    if (form_ == Form::pointwise) return dx;
    dcols_.resize(static_cast<std::size_t>(d_.patch() * width()));
    return dcols_.data();
  }
  // dx_n (overwritten) = the adjoint of cols() applied to dcols_scratch().
  void add_dx(float* dx) {
    if (form_ == Form::pointwise) return;
    if (form_ == Form::im2col) {
      col2im(dcols_.data(), d_.out_plane(), d_, dx);
      return;
    }
    image_.assign(static_cast<std::size_t>(d_.c * hp_ * wp_ + d_.k), 0.0f);
    const std::int64_t len = width();
    for (std::int64_t c = 0; c < d_.c; ++c)
      for (std::int64_t ky = 0; ky < d_.k; ++ky)
        for (std::int64_t kx = 0; kx < d_.k; ++kx) {
          float* dst = image_.data() + c * hp_ * wp_ + ky * wp_ + kx;
          const float* src = dcols_.data() + ((c * d_.k + ky) * d_.k + kx) * len;
          for (std::int64_t i = 0; i < len; ++i) dst[i] += src[i];
        }
    for (std::int64_t c = 0; c < d_.c; ++c)
      for (std::int64_t iy = 0; iy < d_.h; ++iy) {
        const float* src = image_.data() + (c * hp_ + iy + d_.pad) * wp_ + d_.pad;
        std::copy(src, src + d_.w, dx + (c * d_.h + iy) * d_.w);
      }
  }

 private:
  enum class Form { pointwise, padded, im2col };

  // image_ = x zero-padded to [C, Hp, Wp], plus k values past the end that the last channel's junk
  // columns read.
  void pad(const float* x) {
    image_.assign(static_cast<std::size_t>(d_.c * hp_ * wp_ + d_.k), 0.0f);
    for (std::int64_t c = 0; c < d_.c; ++c)
      for (std::int64_t iy = 0; iy < d_.h; ++iy) {
        const float* src = x + (c * d_.h + iy) * d_.w;
        std::copy(src, src + d_.w, image_.data() + (c * hp_ + iy + d_.pad) * wp_ + d_.pad);
      }
  }

  ConvDims d_;
  std::int64_t hp_, wp_;
  Form form_;
  std::vector<float> image_, cols_, wide_, out_, dcols_;
};
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
  if (packed_conv(d)) {
    conv2d_forward_packed(*pool_, d, xp, wp, bp, yp);
    return;
  }
  pool_->parallel_for(d.n, [&](std::int64_t n0, std::int64_t n1) {
    Lowering low(d);
    const std::int64_t width = low.width();
    for (std::int64_t n = n0; n < n1; ++n) {
      const float* cols = low.cols(xp + n * d.c * d.in_plane());
      float* yn = yp + n * d.o * d.out_plane();
      float* out = low.y_scratch(yn);
      if (bp)
        for (std::int64_t o = 0; o < d.o; ++o) std::fill(out + o * width, out + (o + 1) * width, bp[o]);
      // y_n[O, width] = w[O, CKK] @ cols[CKK, width]
      sgemm_serial(false, false, d.o, width, d.patch(), 1.0f, wp, d.patch(), cols, width, bp ? 1.0f : 0.0f, out,
                   width);
      low.store_y(yn);
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
  if (packed_conv(d)) {
    conv2d_backward_packed(*pool_, d, dyp, xp, wp, dx.defined() ? dx.f32() : nullptr, dw.f32());
    if (dbias.defined()) add_bias_grad(d, dyp, dbias.f32());
    return;
  }

  // dx_n = adjoint of the lowering applied to w^T @ dy_n, one sample at a time.
  if (dx.defined()) {
    float* dxp = dx.f32();
    pool_->parallel_for(d.n, [&](std::int64_t n0, std::int64_t n1) {
      Lowering low(d);
      const std::int64_t width = low.width();
      for (std::int64_t n = n0; n < n1; ++n) {
        float* dxn = dxp + n * d.c * d.in_plane();
        sgemm_serial(true, false, d.patch(), width, d.o, 1.0f, wp, d.patch(), low.wide_dy(dyp + n * d.o * plane),
                     width, 0.0f, low.dcols_scratch(dxn), width);
        low.add_dx(dxn);
      }
    });
  }

  if (deterministic_) {
    // Exact sums (see Backend::set_deterministic): each sample's product goes into the accumulators.
    std::span<ExactSum> acc = exact_grad(dw);
    std::vector<float> product(static_cast<std::size_t>(wsize));
    Lowering low(d);
    const std::int64_t width = low.width();
    for (std::int64_t n = 0; n < d.n; ++n) {
      const float* cols = low.cols(xp + n * d.c * d.in_plane());
      gemm(false, true, d.o, d.patch(), width, 1.0f, low.wide_dy(dyp + n * d.o * plane), width, cols, width, 0.0f,
           product.data(), d.patch());
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

  // dw += sum_n dy_n[O, width] @ cols_n^T: a partial per fixed group of samples, then the partials in order.
  const std::int64_t groups = (d.n + kSampleGroup - 1) / kSampleGroup;
  std::vector<float> partial(static_cast<std::size_t>(groups * wsize));
  pool_->parallel_for(groups, [&](std::int64_t g0, std::int64_t g1) {
    Lowering low(d);
    const std::int64_t width = low.width();
    for (std::int64_t g = g0; g < g1; ++g)
      for (std::int64_t n = g * kSampleGroup; n < std::min(d.n, (g + 1) * kSampleGroup); ++n) {
        const float* cols = low.cols(xp + n * d.c * d.in_plane());
        sgemm_serial(false, true, d.o, d.patch(), width, 1.0f, low.wide_dy(dyp + n * d.o * plane), width, cols,
                     width, n == g * kSampleGroup ? 0.0f : 1.0f, partial.data() + g * wsize, d.patch());
      }
  });
  float* dwp = dw.f32();
  pool_->parallel_for(wsize, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const float* src = partial.data() + g * wsize;
      for (std::int64_t i = i0; i < i1; ++i) dwp[i] += src[i];
    }
  }, 1024);

  if (dbias.defined()) add_bias_grad(d, dyp, dbias.f32());
}

bool CpuBackend::packed_conv(const ConvDims& d) const {
  return !deterministic_ && f32_kernel_ == F32Kernel::packed && conv2d_packed_fits(d);
}

void CpuBackend::add_bias_grad(const ConvDims& d, const float* dy, float* dbias) {
  const std::int64_t plane = d.out_plane();
  pool_->parallel_for(d.o, [&](std::int64_t o0, std::int64_t o1) {
    for (std::int64_t o = o0; o < o1; ++o)
      for (std::int64_t n = 0; n < d.n; ++n) {
        const float* g = dy + (n * d.o + o) * plane;
        for (std::int64_t p = 0; p < plane; ++p) dbias[o] += g[p];
      }
  });
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
