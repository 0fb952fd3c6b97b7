// Owns the 2-D convolution's shape contract every backend checks: x [N, C, H, W], w [O, C, k, k], y [N, O, Ho, Wo].
#pragma once

#include <cstdint>

#include "runtime/error.h"
#include "runtime/tensor.h"

namespace troupe {

// A square kernel with the same stride and zero padding on both axes (torch.nn.Conv2d's common case).
struct ConvDims {
  std::int64_t n, c, h, w;       // input
  std::int64_t o, k;             // output channels, kernel size
  std::int64_t stride, pad;
  std::int64_t ho, wo;           // output: (h + 2 pad - k) / stride + 1, likewise for w
  std::int64_t patch() const { return c * k * k; }  // inputs feeding one output value
  std::int64_t in_plane() const { return h * w; }
  std::int64_t out_plane() const { return ho * wo; }
};

// The dimensions of a convolution of x by w; a wrong rank, mismatched channels, a non-square kernel or an
// empty output fails TROUPE_CHECK with the shapes.
inline ConvDims conv_dims(const Tensor& x, const Tensor& w, int stride, int pad) {
  TROUPE_CHECK(x.ndim() == 4 && w.ndim() == 4, "conv2d needs x [N, C, H, W] and w [O, C, k, k], got ",
               shape_str(x.shape()), " and ", shape_str(w.shape()));
  TROUPE_CHECK(w.dim(1) == x.dim(1) && w.dim(2) == w.dim(3), "conv2d: w ", shape_str(w.shape()), " for x ",
               shape_str(x.shape()));
  TROUPE_CHECK(stride >= 1 && pad >= 0, "conv2d: stride ", stride, ", padding ", pad);
  ConvDims d{x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0), w.dim(2), stride, pad, 0, 0};
  d.ho = (d.h + 2 * d.pad - d.k) / d.stride + 1;
  d.wo = (d.w + 2 * d.pad - d.k) / d.stride + 1;
  TROUPE_CHECK(d.h + 2 * d.pad >= d.k && d.w + 2 * d.pad >= d.k, "conv2d: kernel ", d.k, " larger than the padded input ",
               shape_str(x.shape()));
  return d;
}

}  // namespace troupe
