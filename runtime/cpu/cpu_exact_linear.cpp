// CPU exact linear products: the forward output and the input gradient as exact sums of fixed-order float chunks, for deterministic tensor parallelism.
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/vec_math.h"

namespace troupe {

void CpuBackend::linear_forward_exact(const Tensor& x, const Tensor& w, const Tensor& bias, std::int64_t chunk,
                                      std::span<ExactSum> acc) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  TROUPE_CHECK(x.numel() == rows * in && static_cast<std::int64_t>(acc.size()) == rows * out, "exact linear ",
               shape_str(x.shape()), " @ ", shape_str(w.shape()), "^T into ", acc.size());
  TROUPE_CHECK(chunk > 0 && in % chunk == 0, "exact linear: chunks of ", chunk, " in a sum of ", in);
  const float* xp = x.f32();
  const float* wp = w.f32();
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t o = 0; o < out; ++o) {
        ExactSum s = bp ? to_exact(bp[o]) : 0;
        for (std::int64_t c = 0; c < in; c += chunk) s = exact_add(s, to_exact(cpu::ordered_dot(xp + r * in + c, wp + o * in + c, chunk)));
        acc[static_cast<std::size_t>(r * out + o)] = s;
      }
  }, 4);
}

void CpuBackend::linear_input_grad_exact(const Tensor& dy, const Tensor& w, std::int64_t chunk, std::span<ExactSum> acc) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = dy.numel() / out;
  TROUPE_CHECK(dy.numel() == rows * out && static_cast<std::int64_t>(acc.size()) == rows * in,
               "exact input gradient of ", shape_str(dy.shape()), " through ", shape_str(w.shape()), " into ",
               acc.size());
  TROUPE_CHECK(chunk > 0 && out % chunk == 0, "exact input gradient: chunks of ", chunk, " in a sum of ", out);
  const float* dyp = dy.f32();
  const float* wp = w.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    std::vector<float> partial(static_cast<std::size_t>(in));
    for (std::int64_t r = r0; r < r1; ++r) {
      std::span<ExactSum> row = acc.subspan(static_cast<std::size_t>(r * in), static_cast<std::size_t>(in));
      std::fill(row.begin(), row.end(), ExactSum{0});
      for (std::int64_t c = 0; c < out; c += chunk) {
        // The chunk's outputs o in order, vectorised over i: ordered_gemm's loop for b [k, n].
        std::fill(partial.begin(), partial.end(), 0.0f);
        for (std::int64_t o = c; o < c + chunk; ++o) {
          const float d = dyp[r * out + o];
          const float* wo = wp + o * in;
          for (std::int64_t i = 0; i < in; ++i) partial[static_cast<std::size_t>(i)] += d * wo[i];
        }
        add_exact(row, partial.data());
      }
    }
  }, 4);
}

}  // namespace troupe
