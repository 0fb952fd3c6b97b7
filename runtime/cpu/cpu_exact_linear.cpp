// CPU exact linear products: the forward output and the input gradient as exact sums of their terms, for deterministic tensor parallelism.
#include "runtime/cpu/cpu_backend.h"

namespace troupe {

void CpuBackend::linear_forward_exact(const Tensor& x, const Tensor& w, const Tensor& bias, std::span<ExactSum> acc) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  TROUPE_CHECK(x.numel() == rows * in && static_cast<std::int64_t>(acc.size()) == rows * out, "exact linear ",
               shape_str(x.shape()), " @ ", shape_str(w.shape()), "^T into ", acc.size());
  const float* xp = x.f32();
  const float* wp = w.f32();
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t o = 0; o < out; ++o) {
        ExactSum s = exact_dot(xp + r * in, wp + o * in, static_cast<std::size_t>(in));
        if (bp) s = exact_add(s, to_exact(bp[o]));
        acc[static_cast<std::size_t>(r * out + o)] = s;
      }
  }, 4);
}

void CpuBackend::linear_input_grad_exact(const Tensor& dy, const Tensor& w, std::span<ExactSum> acc) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = dy.numel() / out;
  TROUPE_CHECK(dy.numel() == rows * out && static_cast<std::int64_t>(acc.size()) == rows * in,
               "exact input gradient of ", shape_str(dy.shape()), " through ", shape_str(w.shape()), " into ",
               acc.size());
  const float* dyp = dy.f32();
  const float* wp = w.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t i = 0; i < in; ++i)
        acc[static_cast<std::size_t>(r * in + i)] =
            exact_dot_strided(dyp + r * out, wp + i, static_cast<std::size_t>(in), static_cast<std::size_t>(out));
  }, 4);
}

}  // namespace troupe
