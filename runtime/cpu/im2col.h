// Owns the lowering of a convolution's input to a patch matrix (im2col) and its adjoint (col2im).
#pragma once

#include <cstdint>

#include "runtime/conv_dims.h"

namespace troupe {

// cols[(c k + ky) k + kx, oy wo + ox] = x[c, oy s - p + ky, ox s - p + kx], 0 in the padding: one sample's
// patches, one row per kernel tap (rows ld floats apart), so that y = w[O, C k k] @ cols.
void im2col(const float* x, const ConvDims& d, float* cols, std::int64_t ld);

// The adjoint of im2col: dx (one sample, overwritten) = the sum of every patch entry (rows ld floats apart)
// that read each input, added tap by tap in a fixed order.
void col2im(const float* cols, std::int64_t ld, const ConvDims& d, float* dx);

}  // namespace troupe
