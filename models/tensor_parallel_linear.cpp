// Row-parallel forward and column-parallel backward: a float product and a float sum over the group, or exact sums in deterministic mode.
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
                          const Tensor& y, std::int64_t row_block, int pieces) {
  if (!be.deterministic()) {
    be.linear_forward(x, w, bias, y, row_block);
    comm::g_forward(group, y.span_f32());
    return;
  }
  std::vector<ExactSum> partial(static_cast<std::size_t>(y.numel()));
  be.linear_forward_exact(x, w, bias, chunk_of(w.dim(1), group, pieces), partial);
  comm::g_forward_exact(group, partial, y.span_f32());
}

void column_parallel_backward(Backend& be, comm::TensorGroup group, const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& dx, const Tensor& dw, const Tensor& dbias, std::int64_t row_block,
                              int pieces) {
  if (!be.deterministic()) {
    be.linear_backward(dy, x, w, dx, dw, dbias, row_block);
    if (dx.defined()) comm::f_backward(group, dx.span_f32());
    return;
  }
  be.linear_backward(dy, x, w, Tensor(), dw, dbias, row_block);
  if (!dx.defined()) return;
  std::vector<ExactSum> partial(static_cast<std::size_t>(dx.numel()));
  be.linear_input_grad_exact(dy, w, chunk_of(w.dim(0), group, pieces), partial);
  comm::f_backward_exact(group, partial, dx.span_f32());
}

}  // namespace troupe
