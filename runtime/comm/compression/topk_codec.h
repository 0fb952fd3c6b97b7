// Owns top-k sparsification with error feedback (DGC-style): choose the k largest-magnitude entries of gradient + residual, keep the rest as the next residual.
//
// One step on one rank (Lin et al., "Deep Gradient Compression", 2018; Stich et al. 2018):
//   acc      = grad + residual                  (what this rank owes the others so far)
//   sent     = the k entries of acc with the largest |value| (indices ascending, values exact)
//   residual = acc with the sent entries set to 0
// Invariant: Σ_steps sent + residual == Σ_steps grad (up to float rounding of the additions), so
// nothing is ever lost, only delayed: a coordinate whose gradient is constant c is sent at the latest
// once its accumulated |acc| overtakes the others, which for a constant gradient everywhere is within
// ceil(1/fraction) steps.
// Ties in |value| go to the lower index, so the selection is a pure function of acc. NaN counts as
// larger than every number (it is sent, and so becomes visible) rather than hiding in the residual;
// inf/NaN entries beyond the k sent are dropped from the residual, so one broken step does not
// poison the later ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace troupe::comm {

// From this many values on, select_topk first narrows the search with a sampled threshold (same result).
inline constexpr std::size_t kTopKSampledFrom = 65536;

// k for `n` values at `fraction` in (0, 1]: ceil(fraction · n), at least 1 and at most n (0 when n = 0).
std::size_t topk_count(std::size_t n, double fraction);

// A sparse vector: values[i] belongs at indices[i]; indices strictly increasing.
struct SparseGrad {
  std::vector<std::uint32_t> indices;
  std::vector<float> values;
};

// The indices of the k largest |acc[i]| (ties to the lower index), ascending. k <= acc.size().
// `scratch` is reused between calls to avoid allocation.
void select_topk(std::span<const float> acc, std::size_t k, std::vector<std::uint32_t>& scratch,
                 std::vector<std::uint32_t>& out);

// One error-feedback step (see above): residual += grad; out = top-k of residual; those entries of
// residual become 0. `residual` and `grad` have the same size, < 2^32.
void topk_with_feedback(std::span<const float> grad, std::span<float> residual, std::size_t k,
                        std::vector<std::uint32_t>& scratch, SparseGrad& out);

}  // namespace troupe::comm
