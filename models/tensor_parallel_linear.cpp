// Row-parallel forward and column-parallel backward: a float product and a float sum (or reduce-scatter) over the group, or exact sums in deterministic mode; and sequence parallelism's gather.
#include "models/tensor_parallel_linear.h"

#include <vector>

#include "runtime/comm/tensor_parallel_ops.h"

namespace troupe {

namespace {
// Terms per piece: this shard's `local` terms hold pieces / T whole pieces.
std::int64_t chunk_of(std::int64_t local, comm::TensorGroup group, int pieces) {
  TROUPE_CHECK(pieces % group.size() == 0 && local % (pieces / group.size()) == 0, "a sum of ", local,
               " terms on each of ", group.size(), " shards in ", pieces, " exact pieces");
  return local / (pieces / group.size());
}
}  // namespace

void row_parallel_forward(Backend& be, comm::TensorGroup group, const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Tensor& y, std::int64_t row_block, int pieces, std::int64_t sequence_samples) {
  const std::int64_t whole = x.dim(0) * w.dim(0);  // every token's outputs
  if (!be.deterministic()) {
    if (!sequence_samples) {
      be.linear_forward(x, w, bias, y, row_block);
      comm::g_forward(group, y.span_f32());
      return;
    }
    Tensor partial = be.empty({x.dim(0), w.dim(0)});
    be.linear_forward(x, w, bias, partial, row_block);
    comm::scatter_forward(group, partial.span_f32(), y.span_f32(), sequence_samples);
    return;
  }
  std::vector<ExactSum> partial(static_cast<std::size_t>(whole));
  be.linear_forward_exact(x, w, bias, chunk_of(w.dim(1), group, pieces), partial);
  if (sequence_samples) comm::scatter_forward_exact(group, partial, y.span_f32(), sequence_samples);
  else comm::g_forward_exact(group, partial, y.span_f32());
}

void column_parallel_backward(Backend& be, comm::TensorGroup group, const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& dx, const Tensor& dw, const Tensor& dbias, std::int64_t row_block,
                              int pieces, std::int64_t sequence_samples) {
  if (!be.deterministic()) {
    if (!sequence_samples || !dx.defined()) {
      be.linear_backward(dy, x, w, dx, dw, dbias, row_block);
      if (dx.defined()) comm::f_backward(group, dx.span_f32());
      return;
    }
    Tensor partial = be.empty({x.dim(0), x.dim(1)});
    be.linear_backward(dy, x, w, partial, dw, dbias, row_block);
    comm::gather_backward(group, partial.span_f32(), dx.span_f32(), sequence_samples);
    return;
  }
  be.linear_backward(dy, x, w, Tensor(), dw, dbias, row_block);
  if (!dx.defined()) return;
  std::vector<ExactSum> partial(static_cast<std::size_t>(x.numel()));  // every token's input gradient
  be.linear_input_grad_exact(dy, w, chunk_of(w.dim(0), group, pieces), partial);
  if (sequence_samples) comm::gather_backward_exact(group, partial, dx.span_f32(), sequence_samples);
  else comm::f_backward_exact(group, partial, dx.span_f32());
}

Tensor gather_sequence(Backend& be, comm::TensorGroup group, const Tensor& local, std::int64_t samples) {
  Tensor out = be.empty({local.dim(0) * group.size(), local.dim(1)});
  comm::gather_forward(group, local.span_f32(), out.span_f32(), samples);
  return out;
}

}  // namespace troupe
