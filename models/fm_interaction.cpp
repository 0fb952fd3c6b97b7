// fm_interaction_forward/backward: the FM second-order term in its O(F dim) form, in field order.
#include "models/fm_interaction.h"

#include <algorithm>
#include <vector>

#include "runtime/error.h"

namespace troupe {

namespace {

void check_shapes(const Tensor& x, int fields, int dim, const Tensor& per_sample, const char* what) {
  TROUPE_CHECK(x.dtype() == DType::f32 && x.shape().size() == 2 && x.dim(1) >= static_cast<std::int64_t>(fields) * dim,
               "fm interaction: x is ", shape_str(x.shape()), " for ", fields, " fields of width ", dim);
  TROUPE_CHECK(per_sample.dtype() == DType::f32 && per_sample.numel() == x.dim(0), "fm interaction: ", what, " is ",
               shape_str(per_sample.shape()), " for ", x.dim(0), " samples");
}

}  // namespace

void fm_interaction_forward(const Tensor& x, int fields, int dim, const Tensor& out) {
  check_shapes(x, fields, dim, out, "out");
  const std::int64_t B = x.dim(0), width = x.dim(1);
  std::vector<float> sum(static_cast<std::size_t>(dim)), squares(static_cast<std::size_t>(dim));
  for (std::int64_t b = 0; b < B; ++b) {
    const float* row = x.f32() + b * width;
    std::fill(sum.begin(), sum.end(), 0.0f);
    std::fill(squares.begin(), squares.end(), 0.0f);
    for (int f = 0; f < fields; ++f)
      for (int k = 0; k < dim; ++k) {
        const float v = row[f * dim + k];
        sum[static_cast<std::size_t>(k)] += v;
        squares[static_cast<std::size_t>(k)] += v * v;
      }
    float fm = 0.0f;
    for (int k = 0; k < dim; ++k) fm += sum[static_cast<std::size_t>(k)] * sum[static_cast<std::size_t>(k)] - squares[static_cast<std::size_t>(k)];
    out.f32()[b] = 0.5f * fm;
  }
}

void fm_interaction_backward(const Tensor& x, int fields, int dim, const Tensor& dout, const Tensor& dx) {
  check_shapes(x, fields, dim, dout, "dout");
  TROUPE_CHECK(dx.dtype() == DType::f32 && dx.shape() == x.shape(), "fm interaction: dx is ", shape_str(dx.shape()),
               ", x ", shape_str(x.shape()));
  const std::int64_t B = x.dim(0), width = x.dim(1);
  std::vector<float> sum(static_cast<std::size_t>(dim));
  for (std::int64_t b = 0; b < B; ++b) {
    const float* row = x.f32() + b * width;
    float* grad = dx.f32() + b * width;
    const float g = dout.f32()[b];
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int f = 0; f < fields; ++f)
      for (int k = 0; k < dim; ++k) sum[static_cast<std::size_t>(k)] += row[f * dim + k];
    for (int f = 0; f < fields; ++f)
      for (int k = 0; k < dim; ++k) grad[f * dim + k] += g * (sum[static_cast<std::size_t>(k)] - row[f * dim + k]);
  }
}

}  // namespace troupe
