// Owns the fast CPU convolution: lowered products over groups of samples on the packed AVX-512 kernel.
//
// The per-sample products of cpu_conv.cpp are small (16 x 224 x 144 for a 16-channel 14x14 layer) and
// OpenBLAS runs them at a tenth of the core's peak. Here the patch matrices of a group of samples sit side
// by side as the columns of one product, written straight into packed_sgemm's packed layout (no patch
// matrix in between), so one product covers the group. The data gradient of a stride-1 convolution is
// itself a convolution (of dy by the flipped, transposed kernel), so it needs no col2im.
//
// Bits: packed_sgemm rounds each element by its own row, column and k only, so y and dx do not depend on
// the thread count or on which samples share a product; dw sums each group's samples in one product and
// the groups in order, with the group size a function of the shape alone, so dw does not depend on the
// thread count either (it does on the batch's split into micro-batches: deterministic mode keeps
// cpu_conv.cpp's per-sample exact sums).
#pragma once

#include "runtime/conv_dims.h"
#include "runtime/thread_pool.h"

namespace troupe {

// Whether the functions below take this convolution: any stride, and a padding below the kernel's size
// for stride 1 (the data gradient's convolution pads by k - 1 - pad).
bool conv2d_packed_fits(const ConvDims& d);

// y [N, O, ho, wo] = conv(x, w), plus bias[o] on channel o when bias is not null. Needs cpu_has_avx512f().
void conv2d_forward_packed(ThreadPool& pool, const ConvDims& d, const float* x, const float* w, const float* bias,
                           float* y);

// For y = conv(x, w) and its gradient dy: dx = the input's gradient (overwritten; skipped when null) and
// dw += the weight's. Needs cpu_has_avx512f() and conv2d_packed_fits(d).
void conv2d_backward_packed(ThreadPool& pool, const ConvDims& d, const float* dy, const float* x, const float* w,
                            float* dx, float* dw);

}  // namespace troupe
