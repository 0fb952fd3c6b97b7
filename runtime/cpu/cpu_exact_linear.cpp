// CPU exact linear products: the forward output and the input gradient as exact sums of fixed-order float chunks, for deterministic tensor parallelism.
#include <algorithm>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/ordered_products.h"

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
  // Four rows x four outputs per tile share their loads; each chunk's dot product is ordered_dot's.
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    float tile[16];
    std::int64_t r = r0;
    const auto rows_at = [&](auto rows_c, auto outs_c, std::int64_t o) {
      constexpr int R = decltype(rows_c)::value, J = decltype(outs_c)::value;
      ExactSum s[R][J];
      for (int t = 0; t < R; ++t)
        for (int u = 0; u < J; ++u) s[t][u] = bp ? to_exact(bp[o + u]) : 0;
      for (std::int64_t c = 0; c < in; c += chunk) {
        cpu::ordered_dot_tile<R, J>(xp + r * in + c, in, wp + o * in + c, in, chunk, tile);
        for (int t = 0; t < R; ++t)
          for (int u = 0; u < J; ++u) s[t][u] = exact_add(s[t][u], to_exact(tile[t * J + u]));
      }
      for (int t = 0; t < R; ++t)
        for (int u = 0; u < J; ++u) acc[static_cast<std::size_t>((r + t) * out + o + u)] = s[t][u];
    };
    const auto row_tiles = [&](auto rows_c) {
      std::int64_t o = 0;
      for (; o + 4 <= out; o += 4) rows_at(rows_c, std::integral_constant<int, 4>{}, o);
      for (; o < out; ++o) rows_at(rows_c, std::integral_constant<int, 1>{}, o);
    };
    for (; r + 4 <= r1; r += 4) row_tiles(std::integral_constant<int, 4>{});
    for (; r < r1; ++r) row_tiles(std::integral_constant<int, 1>{});
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
  // Each chunk's partial input gradient is the ordered [k, n] product of gemm's deterministic path
  // (ordered_gemm), for four rows at a time; then added to the rows' exact sums.
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    std::vector<float> partial(static_cast<std::size_t>(4 * in));
    for (std::int64_t r = r0; r < r1; r += 4) {
      const std::int64_t r_end = std::min(r + 4, r1);
      std::span<ExactSum> block = acc.subspan(static_cast<std::size_t>(r * in), static_cast<std::size_t>((r_end - r) * in));
      std::fill(block.begin(), block.end(), ExactSum{0});
      for (std::int64_t c = 0; c < out; c += chunk) {
        cpu::ordered_product_kn(0, r_end - r, in, chunk, dyp + r * out + c, out, 1, wp + c * in, in, partial.data(), in);
        for (std::int64_t t = 0; t < r_end - r; ++t)
          add_exact(block.subspan(static_cast<std::size_t>(t * in), static_cast<std::size_t>(in)), partial.data() + t * in);
      }
    }
  }, 4);
}

}  // namespace troupe
