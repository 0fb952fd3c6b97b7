// Owns clip_grad_norm: gradient clipping by global 2-norm, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <vector>

#include "runtime/param.h"

namespace troupe {

// torch.nn.utils.clip_grad_norm_(params, max_norm) with norm_type 2 and error_if_nonfinite False
// (PyTorch 1.13 / 2.x):
//   total     = sqrt(sum over parameters p with a gradient of ||p.grad||_2^2)
//               (PyTorch's "2-norm of the per-parameter 2-norms": the same number)
//   clip_coef = min(max_norm / (total + 1e-6), 1)
//   every gradient *= clip_coef
// Returns `total`, the norm before clipping (0 when no parameter has a gradient, and then nothing is
// touched). Sums of squares are accumulated in double, so the result is at least as accurate as
// PyTorch's float32 one and agrees with it to float precision.
//
// Like PyTorch, a non-finite total is not an error here: it is returned, and the gradients are
// multiplied by the coefficient it gives (0 for an infinite norm, NaN for a NaN one). A trainer
// should check the returned value and skip the step when it is not finite.
//
// PyTorch multiplies even when clip_coef is 1; troupe skips that pass, whose result is bit-identical
// (x * 1.0f == x for every float), to save a sweep over all gradients.
double clip_grad_norm(std::vector<Param*>& params, double max_norm);

// The global 2-norm alone (the `total` above), without clipping: for logging.
double grad_norm(const std::vector<Param*>& params);

// The pieces of clip_grad_norm, for parameters spread over several actors (pipeline stages): each
// actor reports the sum of squares of each of its parameters' gradients, in registration order; the
// coordinator adds them in global parameter order (the same additions, in the same order, as
// grad_norm on one device), takes the square root, and has every actor scale by clip_coefficient.
std::vector<double> grad_sum_squares(const std::vector<Param*>& params);
double clip_coefficient(double total_norm, double max_norm);  // min(max_norm / (total + 1e-6), 1)
void scale_grads(std::vector<Param*>& params, double coefficient);

}  // namespace troupe
