// Owns the factorisation machine's second-order term (Rendle, 2010) over per-field embeddings, the
// interaction part of DeepFM: forward per sample and its gradient into the same embeddings.
//
// For sample b with field embeddings v_{b,f} (f < F, each `dim` wide, stored side by side in columns
// [0, F dim) of a row of x):
//   fm_b = sum_{f < g} <v_f, v_g> = 0.5 * sum_k [ (sum_f v_{f,k})^2 - sum_f v_{f,k}^2 ]
// (the O(F dim) form), and d fm_b / d v_{f,k} = sum_g v_{g,k} - v_{f,k}. Sums run in field order, so a
// pass is deterministic and independent of threads.
#pragma once

#include "runtime/tensor.h"

namespace troupe {

// out[b] = fm_b for x f32 [B, width >= fields * dim] (the first fields * dim columns are the embeddings).
// out must be f32 [B].
void fm_interaction_forward(const Tensor& x, int fields, int dim, const Tensor& out);

// dx[b, f dim + k] += dout[b] * (sum_g x[b, g dim + k] - x[b, f dim + k]) for the embedding columns;
// the other columns of dx are left alone. dout f32 [B] or [B, 1]; dx f32 with x's shape.
void fm_interaction_backward(const Tensor& x, int fields, int dim, const Tensor& dout, const Tensor& dx);

}  // namespace troupe
