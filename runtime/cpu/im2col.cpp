// im2col and col2im over one sample, rows of the patch matrix a given stride apart.
#include "runtime/cpu/im2col.h"

#include <algorithm>

namespace troupe {

namespace {
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

}  // namespace

// The bounds are worked out once per tap, so the inner loop is a plain (strided) copy.
void im2col(const float* x, const ConvDims& d, float* cols, std::int64_t ld) {
  for (std::int64_t c = 0; c < d.c; ++c)
    for (std::int64_t ky = 0; ky < d.k; ++ky)
      for (std::int64_t kx = 0; kx < d.k; ++kx) {
        float* row = cols + ((c * d.k + ky) * d.k + kx) * ld;
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

void col2im(const float* cols, std::int64_t ld, const ConvDims& d, float* dx) {
  std::fill(dx, dx + d.c * d.in_plane(), 0.0f);
  for (std::int64_t c = 0; c < d.c; ++c)
    for (std::int64_t ky = 0; ky < d.k; ++ky)
      for (std::int64_t kx = 0; kx < d.k; ++kx) {
        const float* row = cols + ((c * d.k + ky) * d.k + kx) * ld;
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

}  // namespace troupe
